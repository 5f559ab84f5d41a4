#!/bin/sh
# init.sh — the init Job of an Odoo build: starts over from nothing (database, filestore, checkout,
# installed Python packages), fetches the build's commit into the build's volume, installs what the
# checkout needs, creates the database and installs the addons. The environment it reads is
# described in kubefiles/README.md, "Scripts of default/". POSIX sh (dash, busybox ash).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=

fail() {
  printf 'runboat: error: %s\n' "$*" >&2
  exit 1
}

say() {
  printf 'runboat: %s\n' "$*"
}

cleanup() {
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

db=${PGDATABASE:-}
case $db in
  '' | . | .. | */*) fail "PGDATABASE must be the build's database name, not '$db'" ;;
esac
data=${RUNBOAT_DATA_DIR:-/var/lib/odoo}
case $data in
  '' | /) fail "RUNBOAT_DATA_DIR must be the build's volume, not '$data'" ;;
esac
install=${RUNBOAT_INSTALL:-addons-path}
case $install in
  addons-path | pip | none) ;;
  *) fail "RUNBOAT_INSTALL must be addons-path, pip or none, not '$install'" ;;
esac
odoo=${RUNBOAT_ODOO_BIN:-odoo}
src=$data/src
python=$data/python
state=$data/runboat
tmp=$(mktemp -d "${TMPDIR:-/tmp}/runboat-init.XXXXXX")

# A re-run (a reset) starts from nothing: nothing of the previous commit may survive.
say "dropping database $db and the previous checkout"
dropdb --if-exists "$db"
rm -rf "$data/filestore/$db" "$src" "$python" "$state"

sh "$here/fetch.sh" "$src"
repo=${RUNBOAT_GIT_REPO:-}
short=$(cut -c 1-12 "$src/.runboat-commit")

# Does the directory directly hold an addon (a subdirectory with a __manifest__.py)?
holds_addons() {
  for _manifest in "$1"/*/__manifest__.py; do
    if [ -f "$_manifest" ]; then return 0; fi
  done
  return 1
}

# The addons directories of the checkout: its root when it directly holds addons (the layout of
# OCA repositories), then addons/ and <dir>/addons/ when they do (the layout of Odoo's own).
: >"$tmp/dirs"
for _dir in "$src" "$src/addons" "$src"/*/addons; do
  if [ -d "$_dir" ] && holds_addons "$_dir"; then printf '%s\n' "$_dir" >>"$tmp/dirs"; fi
done
: >"$tmp/found"
while IFS= read -r _dir; do
  for _manifest in "$_dir"/*/__manifest__.py; do
    _addon=${_manifest%/__manifest__.py}
    printf '%s\n' "${_addon##*/}" >>"$tmp/found"
  done
done <"$tmp/dirs"
sort -u -o "$tmp/found" "$tmp/found"

addons_path=$(paste -s -d , "$tmp/dirs")
extra=${RUNBOAT_EXTRA_ADDONS_PATH:-}
if [ -n "$extra" ]; then addons_path=${addons_path:+$addons_path,}$extra; fi

# The addons to install: those named in RUNBOAT_ADDONS (each must be in the checkout or the extra
# addons path), else the legacy ADDONS as it is, else every addon of the checkout.
if [ -n "${RUNBOAT_ADDONS:-}" ]; then
  cp "$tmp/found" "$tmp/known"
  printf '%s\n' "$extra" | tr ',' '\n' >"$tmp/extra"
  while IFS= read -r _dir; do
    [ -n "$_dir" ] || continue
    for _manifest in "$_dir"/*/__manifest__.py; do
      _addon=${_manifest%/__manifest__.py}
      if [ -f "$_manifest" ]; then printf '%s\n' "${_addon##*/}" >>"$tmp/known"; fi
    done
  done <"$tmp/extra"
  printf '%s\n' "$RUNBOAT_ADDONS" | tr ',' '\n' | tr -d ' \t\r' | grep -v '^$' >"$tmp/named" || true
  addons=
  while IFS= read -r _addon; do
    case $_addon in
      *[!A-Za-z0-9_]*) fail "RUNBOAT_ADDONS names '$_addon', which is no addon name" ;;
    esac
    grep -qxF "$_addon" "$tmp/known" ||
      fail "addon $_addon is not in $repo at $short (found: $(paste -s -d , "$tmp/found"))"
    addons=${addons:+$addons,}$_addon
  done <"$tmp/named"
elif [ -n "${ADDONS:-}" ]; then
  addons=$ADDONS
else
  addons=$(paste -s -d , "$tmp/found")
fi
[ -n "$addons" ] || fail "no addons to install: $repo at $short has no directory with a __manifest__.py"

mkdir -p "$state" "$python"
printf '%s\n' "$addons_path" >"$state/addons-path"
printf '%s\n' "$python" >"$state/pythonpath"

# Splits a variable of extra arguments on spaces, never on anything else, and never expands them.
split_args() {
  printf '%s\n' "$1" | tr ' ' '\n' | grep -v '^$' || true
}

# Runs pip install --target with the extra arguments of RUNBOAT_PIP_ARGS, then the given ones.
pip_install() {
  _pip=pip
  command -v pip >/dev/null 2>&1 || _pip=pip3
  command -v "$_pip" >/dev/null 2>&1 ||
    fail "RUNBOAT_INSTALL=$install needs pip on the PATH (or RUNBOAT_INSTALL=none)"
  split_args "${RUNBOAT_PIP_ARGS:-}" >"$tmp/pipargs"
  for _arg in "$@"; do printf '%s\n' "$_arg" >>"$tmp/pipargs"; done
  set -- install --target "$python"
  while IFS= read -r _arg; do set -- "$@" "$_arg"; done <"$tmp/pipargs"
  "$_pip" "$@" || fail "pip install failed for $repo at $short (see above)"
}

if [ "$install" != none ] && [ -f "$src/requirements.txt" ]; then
  say "installing $src/requirements.txt"
  pip_install -r "$src/requirements.txt"
fi
if [ "$install" = pip ]; then
  # One pip call for every package of the checkout, so that addons depending on each other are
  # taken from this commit, not from an index.
  : >"$tmp/packages"
  if [ -f "$src/pyproject.toml" ] || [ -f "$src/setup.py" ]; then
    printf '%s\n' "$src" >>"$tmp/packages"
  fi
  while IFS= read -r _addon; do
    if [ -f "$src/setup/$_addon/setup.py" ]; then
      printf '%s\n' "$src/setup/$_addon" >>"$tmp/packages"
    fi
    while IFS= read -r _dir; do
      if [ -f "$_dir/$_addon/pyproject.toml" ]; then
        printf '%s\n' "$_dir/$_addon" >>"$tmp/packages"
      fi
    done <"$tmp/dirs"
  done <"$tmp/found"
  if [ -s "$tmp/packages" ]; then
    say "installing the Python packages of $repo at $short"
    set --
    while IFS= read -r _package; do set -- "$@" "$_package"; done <"$tmp/packages"
    pip_install "$@"
  else
    say "no Python package in $repo at $short: its addons are on the addons path only"
  fi
fi

say "creating database $db"
createdb "$db"

split_args "${RUNBOAT_ODOO_ARGS:-}" >"$tmp/odooargs"
set -- --data-dir="$data"
if [ -n "$addons_path" ]; then set -- "$@" --addons-path="$addons_path"; fi
set -- "$@" -d "$db" -i "$addons" --stop-after-init --without-demo=False
while IFS= read -r _arg; do set -- "$@" "$_arg"; done <"$tmp/odooargs"
say "installing $addons"
PYTHONPATH=$python${PYTHONPATH:+:$PYTHONPATH} "$odoo" "$@" ||
  fail "odoo could not install $addons of $repo at $short (see above)"
say "initialized $db with $repo at $short"
