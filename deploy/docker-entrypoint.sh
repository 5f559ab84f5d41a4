#!/bin/sh
# The image's entry point, run by tini: the command names the role (see the Dockerfile).
set -eu
app="${APP_DIR:-/app}"
case "${1:-api}" in
  api)
    shift $(($# > 0 ? 1 : 0))
    exec node "$app/dist/api/main.js" "$@"
    ;;
  worker)
    shift
    if [ $# -gt 0 ]; then
      RUNBOAT_WORKER_ROLES="$1"
      export RUNBOAT_WORKER_ROLES
      shift
    fi
    exec node "$app/dist/worker/main.js" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
