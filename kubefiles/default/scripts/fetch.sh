#!/bin/sh
# fetch.sh DEST — puts exactly the build's commit (RUNBOAT_GIT_SHA of RUNBOAT_GIT_REPO) into DEST,
# emptied first, and writes the sha to DEST/.runboat-commit. The environment it reads is described
# in kubefiles/README.md, "Scripts of default/". POSIX sh (dash, busybox ash): no bashisms.
#
# Every value from outside arrives in the environment and is only ever passed as one argument:
# nothing here is eval'ed. The clone token never reaches a command line or a log line: git gets it
# through GIT_CONFIG_* variables, curl through a config read on stdin, GNU wget through a wgetrc in
# a private directory.
set -eu

tmp=

# The text, with the credentials of any URL and the token itself taken out.
clean() {
  _s=$(printf '%s\n' "$1" | sed 's#\(://\)[^/@[:space:]]*@#\1#g')
  _t=${RUNBOAT_GIT_TOKEN:-}
  if [ -n "$_t" ]; then
    _out=
    while :; do
      case $_s in
        *"$_t"*)
          _out=$_out${_s%%"$_t"*}'<token>'
          _s=${_s#*"$_t"}
          ;;
        *) break ;;
      esac
    done
    _s=$_out$_s
  fi
  printf '%s' "$_s"
}

# One line on stderr, then exit 1: the last line of the log, which the build shows as its reason.
fail() {
  printf 'runboat: error: %s\n' "$(clean "$*")" >&2
  exit 1
}

say() {
  printf 'runboat: %s\n' "$(clean "$*")"
}

# The first line of a tool's stderr worth showing: its first error, else its first line.
first_error() {
  _l=$(grep -E '^(fatal|error|curl):' "$1" | head -n 1) || true
  [ -n "$_l" ] || _l=$(grep -v '^[[:space:]]*$' "$1" | head -n 1) || true
  printf '%s' "${_l:-no message}"
}

cleanup() {
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ $# -eq 1 ] || fail "usage: fetch.sh DEST"
dest=$1
case $dest in
  '' | / | . | ..) fail "fetch.sh: refusing to empty '$dest'" ;;
esac

repo=${RUNBOAT_GIT_REPO:-}
sha=${RUNBOAT_GIT_SHA:-}
pr=${RUNBOAT_GIT_PR:-}
branch=${RUNBOAT_GIT_BRANCH:-}
[ -n "$repo" ] || fail "RUNBOAT_GIT_REPO is not set (owner/name of the repository)"
case $repo in
  */*) ;;
  *) fail "RUNBOAT_GIT_REPO must be owner/name, not '$repo'" ;;
esac
case $sha in
  *[!0-9a-f]* | '') fail "RUNBOAT_GIT_SHA of $repo must be a commit's 40 hex digits, not '$sha'" ;;
esac
[ ${#sha} -eq 40 ] || fail "RUNBOAT_GIT_SHA of $repo must be a commit's 40 hex digits, not '$sha'"
case $pr in
  *[!0-9]*) fail "RUNBOAT_GIT_PR of $repo must be a pull request number or empty, not '$pr'" ;;
esac
token=${RUNBOAT_GIT_TOKEN:-}
case $token in
  *[[:space:]\"\\]*) fail "RUNBOAT_GIT_TOKEN of $repo holds whitespace, a quote or a backslash" ;;
esac
short=${sha%"${sha#????????????}"}
git_url=${RUNBOAT_GIT_URL:-https://github.com/$repo.git}
tarball_url=${RUNBOAT_TARBALL_URL:-https://api.github.com/repos/$repo/tarball/$sha}

method=${RUNBOAT_FETCH:-auto}
case $method in
  auto)
    if command -v git >/dev/null 2>&1; then method=git; else method=tarball; fi
    ;;
  git | tarball) ;;
  *) fail "RUNBOAT_FETCH must be git, tarball or auto, not '$method'" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/runboat-fetch.XXXXXX")
rm -rf "$dest"
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

not_found() {
  fail "commit $sha not found in $repo ($1)"
}

# git: a shallow fetch of the sha itself, which servers speaking protocol v2 (GitHub's) allow for
# any commit they hold. A server that refuses unadvertised objects gets the pull request's ref
# (or the branch's) instead, deepened until the sha is in it.
fetch_git() {
  command -v git >/dev/null 2>&1 || fail "RUNBOAT_FETCH=git but git is not on the PATH"
  export GIT_TERMINAL_PROMPT=0
  if [ -n "$token" ]; then
    command -v base64 >/dev/null 2>&1 || fail "base64 is needed to pass the token of $repo to git"
    _n=${GIT_CONFIG_COUNT:-0}
    case $_n in *[!0-9]* | '') _n=0 ;; esac
    _basic=$(printf 'x-access-token:%s' "$token" | base64 | tr -d '\n')
    export "GIT_CONFIG_KEY_$_n=http.extraHeader"
    export "GIT_CONFIG_VALUE_$_n=Authorization: Basic $_basic"
    export GIT_CONFIG_COUNT=$((_n + 1))
  fi
  say "fetching $repo at $sha from $git_url (git)"
  git init -q "$dest"
  cd "$dest"
  git remote add origin "$git_url"
  _via=
  if ! git fetch -q --no-tags --depth 1 origin "$sha" 2>"$tmp/err"; then
    _ref=
    if [ -n "$pr" ]; then
      _ref=refs/pull/$pr/head
    elif [ -n "$branch" ]; then
      _ref=refs/heads/$branch
    fi
    # Tell an unreachable repository from a missing commit: ask for the refs.
    if ! git ls-remote origin "${_ref:-HEAD}" >"$tmp/refs" 2>"$tmp/lserr"; then
      fail "cannot reach $git_url: $(first_error "$tmp/lserr")"
    fi
    if [ -z "$_ref" ]; then
      not_found "branch deleted or force-pushed?"
    fi
    _found=
    while read -r _oid _name; do
      if [ "$_name" = "$_ref" ]; then _found=$_oid; fi
    done <"$tmp/refs"
    [ -n "$_found" ] || not_found "the server refused it by its sha and has no $_ref"
    say "the server refused $short by its sha; fetching $_ref"
    if ! git fetch -q --no-tags --depth 1 origin "+$_ref:refs/runboat/fetched" 2>"$tmp/err"; then
      fail "cannot reach $git_url: $(first_error "$tmp/err")"
    fi
    for _deepen in 10 100 1000 all; do
      git cat-file -e "$sha^{commit}" 2>/dev/null && break
      [ "$(git rev-parse --is-shallow-repository)" = true ] || break
      if [ "$_deepen" = all ]; then
        set -- --unshallow
      else
        set -- "--deepen=$_deepen"
      fi
      if ! git fetch -q --no-tags "$@" origin "+$_ref:refs/runboat/fetched" 2>"$tmp/err"; then
        fail "cannot reach $git_url: $(first_error "$tmp/err")"
      fi
    done
    git cat-file -e "$sha^{commit}" 2>/dev/null ||
      not_found "not on $_ref either: force-pushed since the build was asked for?"
    _via=", via $_ref"
  fi
  git -c advice.detachedHead=false checkout -q --detach "$sha" 2>"$tmp/err" ||
    fail "cannot check out $sha of $repo: $(first_error "$tmp/err")"
  _head=$(git rev-parse HEAD)
  [ "$_head" = "$sha" ] || fail "checked out $_head instead of $sha of $repo"
  say "fetched $repo at $short (git$_via)"
}

# tarball: GitHub's archive of the sha (or any URL serving a .tar.gz of it with one top directory).
fetch_tarball() {
  command -v tar >/dev/null 2>&1 || fail "RUNBOAT_FETCH=tarball but tar is not on the PATH"
  say "fetching $repo at $sha from $tarball_url (tarball)"
  _archive=$tmp/source.tar.gz
  if command -v curl >/dev/null 2>&1; then
    # The header reaches curl in a config on stdin, never on its command line.
    if ! { [ -z "$token" ] || printf 'header = "Authorization: Bearer %s"\n' "$token"; } |
      curl -sS -L -K - -o "$_archive" -w '%{http_code}' -- "$tarball_url" >"$tmp/code" 2>"$tmp/err"; then
      fail "cannot reach $tarball_url: $(first_error "$tmp/err")"
    fi
    _code=$(cat "$tmp/code")
  elif command -v wget >/dev/null 2>&1; then
    # GNU wget shows its errors only without -q and reads a wgetrc; busybox wget does neither.
    _gnu=
    if wget --version >/dev/null 2>&1; then _gnu=1; fi
    if [ -n "$token" ]; then
      [ -n "$_gnu" ] ||
        fail "the token of $repo needs curl or GNU wget: busybox wget takes headers only on its command line"
      (
        umask 077
        printf 'header = Authorization: Bearer %s\n' "$token" >"$tmp/wgetrc"
      )
      export WGETRC="$tmp/wgetrc"
    fi
    _quiet=-q
    if [ -n "$_gnu" ]; then _quiet=-nv; fi
    _code=200
    if ! wget "$_quiet" -O "$_archive" -- "$tarball_url" 2>"$tmp/err"; then
      # GNU wget says "ERROR 404: Not Found.", busybox "server returned error: HTTP/1.1 404 …".
      _code=$(sed -n -e 's/.*ERROR \([0-9][0-9][0-9]\).*/\1/p' \
        -e 's/.*HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' "$tmp/err" | head -n 1)
      [ -n "$_code" ] || fail "cannot reach $tarball_url: $(first_error "$tmp/err")"
    fi
  else
    fail "RUNBOAT_FETCH=tarball needs curl or wget on the PATH"
  fi
  case $_code in
    200) ;;
    404 | 422) not_found "HTTP $_code from $tarball_url: a private repository needs RUNBOAT_GIT_TOKEN" ;;
    *) fail "cannot reach $tarball_url: HTTP $_code" ;;
  esac
  _first=$(tar -tzf "$_archive" 2>"$tmp/err" | head -n 1) || true
  [ -n "$_first" ] || fail "the download of $repo at $short is not a .tar.gz: $(first_error "$tmp/err")"
  # GitHub names the top directory owner-repo-<short sha>: a tarball of another commit is refused.
  _top=${_first%%/*}
  _tag=${_top##*-}
  case $_tag in
    *[!0-9a-f]* | '') ;;
    *)
      if [ ${#_tag} -ge 7 ]; then
        case $sha in
          "$_tag"*) ;;
          *) fail "the tarball of $repo is of commit $_tag, not $sha" ;;
        esac
      fi
      ;;
  esac
  tar -xzf "$_archive" -C "$dest" --strip-components=1 2>"$tmp/err" ||
    fail "cannot extract the tarball of $repo at $short: $(first_error "$tmp/err")"
  say "fetched $repo at $short (tarball)"
}

"fetch_$method"
printf '%s\n' "$sha" >"$dest/.runboat-commit"
