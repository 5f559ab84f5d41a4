#!/bin/sh
# start.sh [odoo args…] — the command of an Odoo build's Deployment: runs odoo on the checkout that
# init.sh left in the build's volume, with the addons path and Python path it recorded. The
# environment it reads is described in kubefiles/README.md, "Scripts of default/".
set -eu

fail() {
  printf 'runboat: error: %s\n' "$*" >&2
  exit 1
}

data=${RUNBOAT_DATA_DIR:-/var/lib/odoo}
state=$data/runboat
db=${PGDATABASE:-the build}
for _file in "$state/addons-path" "$state/pythonpath" "$data/src/.runboat-commit"; do
  [ -f "$_file" ] || fail "$db is not initialized: $_file is missing (init.sh writes it)"
done
addons_path=$(cat "$state/addons-path")
python=$(cat "$state/pythonpath")
commit=$(cat "$data/src/.runboat-commit")
# The volume of a build holds its own commit; another one means a volume mixed up between builds.
if [ -n "${RUNBOAT_GIT_SHA:-}" ] && [ "$commit" != "$RUNBOAT_GIT_SHA" ]; then
  fail "$db holds commit $commit, not $RUNBOAT_GIT_SHA: reset the build"
fi
printf 'runboat: starting %s at %s\n' "${RUNBOAT_GIT_REPO:-the checkout}" "$commit"
export PYTHONPATH="$python${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "$addons_path" ]; then
  exec "${RUNBOAT_ODOO_BIN:-odoo}" --addons-path="$addons_path" "$@"
fi
exec "${RUNBOAT_ODOO_BIN:-odoo}" "$@"
