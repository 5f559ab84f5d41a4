#!/bin/sh
# The image's entry point, run by tini: the command names the role (see the Dockerfile).
set -eu
app="${APP_DIR:-/app}"
# glibc's allocator: hand freed memory back to the system and keep two arenas, not one per busy
# thread (docs/operations.md, "Memory"). An operator's own GLIBC_TUNABLES wins.
GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.trim_threshold=1048576:glibc.malloc.arena_max=2}"
export GLIBC_TUNABLES
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
