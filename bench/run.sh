#!/usr/bin/env bash
# Benchmark the project's server against the shared echo-server harness (../shared/perf).
#
#   npm run bench -- [harness run.sh options] [SCENARIO...]      (from the repo root)
#   bash bench/run.sh -r 1 -d 5 -w 2 S1 S4                        (same thing)
#
# Steps: copy the harness to a writable, cached work dir and apply bench/loadgen-tls.patch to
# the copy (wss:// and tls:// in the load generator); install its Debian build
# dependencies if missing (root only); add the project's servers (bench/servers.conf) to the
# copy's servers.conf; build dist/ if src/ is newer; run the harness; keep the report, raw
# results and logs in bench/out/DATE-TIME/. It prints figures and never asserts on them.
#
# Defaults, put before your arguments (so yours win, e.g. -r 1 or -s seed-ws,project):
#   -r 3 -d 10 -s seed-ws,go-gorilla,node-net-len,c-epoll-len,project,project-len
# Environment:
#   PERF_DIR          harness source (default: <git top>/../shared/perf)
#   BENCH_WORK_DIR    writable copy, reused between runs (default: /tmp/echoserver-perf)
#   BENCH_NO_DEFAULTS=1  pass only your arguments (e.g. to run every configured server)
#   BENCH_SKIP_BUILD=1   don't run `npm run build` (measure dist/ as it is)
#   BENCH_NO_PATCH=1     use the harness unpatched (no wss:// / tls://, so no project-tls)
#   plus the harness's own: BENCH_SERVER_CPU, BENCH_LG_CPU, BENCH_PORT_BASE, GOCODE.
set -euo pipefail

DEFAULT_ARGS=(-r 3 -d 10 -s seed-ws,go-gorilla,node-net-len,c-epoll-len,project,project-len)
HARNESS_OPTS=":r:d:w:n:s:b:c:a:o:O:I:q:R:Bih" # the harness's getopts string (see its usage)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
GIT_TOP=$(git -C "$PROJECT_DIR" rev-parse --show-toplevel 2>/dev/null || echo "$PROJECT_DIR")
PERF_DIR=${PERF_DIR:-$GIT_TOP/../shared/perf}
WORK=${BENCH_WORK_DIR:-/tmp/echoserver-perf}
GOCODE=${GOCODE:-/usr/share/gocode}
OUT_ROOT=$SCRIPT_DIR/out
# Our patch to the harness copy (never to $PERF_DIR): wss:// and tls:// in the load generator.
PATCH=$SCRIPT_DIR/loadgen-tls.patch
[ "${BENCH_NO_PATCH:-0}" = 1 ] && PATCH=""

q() { # shell-quote only where needed, for a readable command line
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_,./:=@%+-]+$ ]]; then out+=("$a"); else out+=("$(printf '%q' "$a")"); fi
  done
  printf '%s' "${out[*]}"
}
say() { printf '[bench] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ -f "$PERF_DIR/run.sh" ] || die "no harness at $PERF_DIR (set PERF_DIR=/path/to/shared/perf)"
PERF_DIR=$(cd "$PERF_DIR" && pwd)
# The harness expands $PROJECT_DIR unquoted inside `bash -c "exec COMMAND"`.
[[ $PROJECT_DIR != *[[:space:]]* ]] || die "the harness cannot handle a project path with spaces: $PROJECT_DIR"
export PROJECT_DIR

# ------------------------------------------------------------ arguments

ARGS=("$@")
[ "${BENCH_NO_DEFAULTS:-0}" = 1 ] || ARGS=("${DEFAULT_ARGS[@]}" "$@")

# Read the options the wrapper cares about (last occurrence wins, as in the harness).
SEL="" USER_OUT_DIR="" CONF_GIVEN=0 BUILD_ONLY=0 HELP=0
OPTIND=1
while getopts "$HARNESS_OPTS" opt "${ARGS[@]}"; do
  case $opt in
    s) SEL=$OPTARG ;; O) USER_OUT_DIR=$OPTARG ;; c) CONF_GIVEN=1 ;; B) BUILD_ONLY=1 ;; h) HELP=1 ;;
    *) ;;
  esac
done

if [ "$HELP" = 1 ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
  echo "---- harness options ($PERF_DIR/run.sh -h):"
  exec bash "$PERF_DIR/run.sh" -h
fi

# ------------------------------------------------------------ one benchmark at a time

mkdir -p "$(dirname "$WORK")"
exec 9>"$WORK.lock" || die "cannot create $WORK.lock (set BENCH_WORK_DIR)"
if ! flock -n 9; then
  say "another benchmark is using $WORK; waiting for it (two at once would disturb both)"
  flock 9
fi

# ------------------------------------------------------------ prerequisites

missing=()
command -v go >/dev/null || missing+=(go)
[ -d "$GOCODE/src/github.com/gorilla/websocket" ] || missing+=(gorilla/websocket)
command -v gcc >/dev/null || missing+=(gcc)
if [ ${#missing[@]} -gt 0 ]; then
  PKGS=(golang-go golang-github-gorilla-websocket-dev gcc)
  if [ "$(id -u)" = 0 ]; then
    say "missing ${missing[*]}: installing ${PKGS[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${PKGS[@]}"
  else
    die "missing ${missing[*]}; as root run: apt-get update && apt-get install -y ${PKGS[*]}"
  fi
fi
for t in node npm taskset flock sha256sum ${PATCH:+patch}; do command -v $t >/dev/null || die "$t not found"; done

# ------------------------------------------------------------ writable copy of the harness

# Fingerprint of the harness sources (build outputs excluded).
src_stamp() {
  (cd "$PERF_DIR" && find . -type f ! -path './bin/*' ! -path './peers/node/node_modules/*' \
    ! -path './peers/rust/target/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}
# The copy is patched: $PERF_DIR (read-only) is the pristine source, and the copy's stamp
# covers the harness sources *and* the patch, so a changed harness or a changed patch gives a
# fresh copy with the patch applied once (never twice: a reused copy is not patched again).
HARNESS_STAMP=$(src_stamp)
PATCH_STAMP=none
[ -z "$PATCH" ] || PATCH_STAMP=$(sha256sum "$PATCH" | cut -d' ' -f1)
STAMP="$HARNESS_STAMP patch:$PATCH_STAMP"
patched_ok() { # the copy holds exactly the patched files (the patch reverses cleanly)
  [ -z "$PATCH" ] || patch -d "$WORK" -p1 -R --dry-run --batch --force --quiet <"$PATCH" >/dev/null 2>&1
}
if [ -d "$WORK" ] && [ ! -w "$WORK" ]; then die "$WORK is not writable by you (set BENCH_WORK_DIR)"; fi
if [ -f "$WORK/.echoserver-stamp" ] && [ "$(cat "$WORK/.echoserver-stamp")" = "$STAMP" ] && patched_ok; then
  say "reusing $WORK (harness and patch unchanged; builds cached)"
else
  say "copying $PERF_DIR -> $WORK"
  NEW=$(mktemp -d "$WORK.new.XXXXXX")
  chmod 755 "$NEW"
  cp -r "$PERF_DIR/." "$NEW/"
  chmod -R u+w "$NEW" # the shared copy is read-only and cp keeps the modes
  rm -rf "$NEW/bin" "$NEW/peers/node/node_modules" "$NEW/peers/rust/target"
  if [ -n "$PATCH" ]; then
    say "applying $(basename "$PATCH") to the copy"
    if ! patch -d "$NEW" -p1 --forward --batch --no-backup-if-mismatch --quiet <"$PATCH"; then
      rm -rf "$NEW"
      die "$PATCH does not apply to $PERF_DIR (the harness changed?): refresh the patch, or run with BENCH_NO_PATCH=1 (no TLS servers)"
    fi
  fi
  if [ -d "$WORK" ]; then # keep build outputs: the harness rebuilds what is stale
    [ -d "$WORK/bin" ] && mv "$WORK/bin" "$NEW/bin"
    [ -d "$WORK/peers/rust/target" ] && mv "$WORK/peers/rust/target" "$NEW/peers/rust/target"
    if [ -d "$WORK/peers/node/node_modules" ] &&
      cmp -s "$WORK/peers/node/package-lock.json" "$NEW/peers/node/package-lock.json"; then
      mv "$WORK/peers/node/node_modules" "$NEW/peers/node/node_modules"
    fi
    rm -rf "$WORK"
  fi
  mv "$NEW" "$WORK"
  echo "$STAMP" >"$WORK/.echoserver-stamp"
fi
# servers.conf = the harness's own + the project's lines, regenerated on every run.
{
  cat "$PERF_DIR/servers.conf"
  printf '\n# ---- appended by %s/bench/run.sh from bench/servers.conf\n' "$PROJECT_DIR"
  cat "$SCRIPT_DIR/servers.conf"
} >"$WORK/servers.conf"
[ "$CONF_GIVEN" = 0 ] || say "note: -c given, so the project's servers (bench/servers.conf) are not included unless your file has them"

# ------------------------------------------------------------ build the project if needed

wants_project() { # no -s: all servers; else: any selected name starting with "project"
  [ -z "$SEL" ] && return 0
  [[ ",$SEL," == *",project"* ]]
}
newest() { # newest mtime (epoch seconds) of the files under the existing paths given; empty if none
  local p paths=()
  for p in "$@"; do [ -e "$p" ] && paths+=("$p"); done
  [ ${#paths[@]} -gt 0 ] || return 0
  find "${paths[@]}" -type f -printf '%T@\n' | sort -n | tail -1
}

if [ "$BUILD_ONLY" = 0 ] && wants_project && [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  src_t=$(newest "$PROJECT_DIR/src" "$PROJECT_DIR"/tsconfig*.json)
  dist_t=$(newest "$PROJECT_DIR/dist")
  if [ ! -f "$PROJECT_DIR/dist/cli.js" ] || [ -z "$dist_t" ] ||
    awk -v s="${src_t:-0}" -v d="$dist_t" 'BEGIN { exit !(s > d) }'; then
    say "dist/ is missing or older than src/: npm run build"
    (cd "$PROJECT_DIR" && npm run build) ||
      die "npm run build failed; fix it, or measure the existing dist/ with BENCH_SKIP_BUILD=1, or leave the project out (-s seed-ws,go-gorilla,...)"
  fi
  if [ ! -f "$PROJECT_DIR/dist/cli.js" ]; then
    say "warning: $PROJECT_DIR/dist/cli.js does not exist; the project's servers will show as FAILED: server did not start"
  fi
fi

# ------------------------------------------------------------ run

CMD=(bash "$WORK/run.sh" "${ARGS[@]}")
if [ "$BUILD_ONLY" = 1 ]; then
  say "running: PROJECT_DIR=$PROJECT_DIR $(q "${CMD[@]}")"
  "${CMD[@]}" 9>&-
  exit
fi

if [ -n "$USER_OUT_DIR" ]; then
  case $USER_OUT_DIR in /*) OUT=$USER_OUT_DIR ;; *) OUT=$WORK/$USER_OUT_DIR ;; esac # harness cds to its dir
else
  OUT=$OUT_ROOT/$(date +%Y%m%d-%H%M%S)
  CMD=(bash "$WORK/run.sh" -O "$OUT" "${ARGS[@]}")
fi
mkdir -p "$OUT"

{
  echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "invoked:    bench/run.sh $(q "$@")"
  echo "harness:    PROJECT_DIR=$PROJECT_DIR $(q "${CMD[@]}")"
  echo "harness src: $PERF_DIR (sha256 of sources $HARNESS_STAMP)"
  echo "patch:      ${PATCH:-none (BENCH_NO_PATCH=1)} (sha256 $PATCH_STAMP)"
  echo "project:    $(git -C "$PROJECT_DIR" rev-parse --short HEAD 2>/dev/null || echo 'no commit'), $(git -C "$PROJECT_DIR" status --porcelain 2>/dev/null | wc -l) uncommitted path(s)"
  echo "node:       $(node --version)"
} >"$OUT/command.txt"

say "project:  $PROJECT_DIR"
say "harness:  $WORK (from $PERF_DIR)"
say "command:  PROJECT_DIR=$PROJECT_DIR $(q "${CMD[@]}")"
say "output:   $OUT"

set +e
"${CMD[@]}" 9>&- 2>&1 | tee "$OUT/console.log"
rc=${PIPESTATUS[0]}
set -e

if [ -f "$OUT/report.md" ]; then
  [ -n "$USER_OUT_DIR" ] || ln -sfn "$(basename "$OUT")" "$OUT_ROOT/latest"
  say "report:   $OUT/report.md"
  say "raw:      $OUT/results.jsonl, server/loadgen logs in $OUT/logs/, console in $OUT/console.log"
else
  say "no report written (harness exit code $rc); console output in $OUT/console.log"
fi
exit "$rc"
