#!/usr/bin/env bash
# The cost of observability: the same load (S1 shape: 100 WebSocket connections, 16 messages in
# flight each, 64-byte payloads) against the CLI server twice,
#   off: --metrics false --log-level silent, no OTLP endpoint
#   on:  metrics on (and scraped: /metrics + /metrics/design once a second, like Prometheus),
#        logs at info (JSON to a file), OTEL_EXPORTER_OTLP_ENDPOINT set to a local sink and
#        --trace-sample-ratio 0.01
# interleaved (off, on, off, on, ...), server pinned to one CPU and the load generator to
# another (taskset). Prints msgs/s and p99 per run, the medians and the on/off ratio. It never
# asserts: figures depend on the machine and on whatever else runs on it (see other_cpu_pct).
#
#   bash bench/observability.sh                (2 rounds, 5 s measured + 2 s warm-up per run)
#   ROUNDS=3 DURATION=10 bash bench/observability.sh
# Environment: ROUNDS, DURATION (s), WARMUP (s), SERVER_CPU (0), LG_CPU (1), SCRAPE (1 = scrape
# in "on" and "metrics" runs), LOADGEN (default /tmp/echoserver-perf/bin/loadgen, built by
# bench/run.sh -B), MODES (default "off on"; to find where a cost comes from, add any of
# "metrics" (metrics + scrape only), "logs" (info logs only), "trace" (OTLP at 1% only),
# "trace0" (OTLP endpoint set, ratio 0): e.g. MODES="off trace trace0 metrics logs").
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
LG_CPU=${LG_CPU:-1}
SCRAPE=${SCRAPE:-1}
MODES=${MODES:-off on}
LOADGEN=${LOADGEN:-${BENCH_WORK_DIR:-/tmp/echoserver-perf}/bin/loadgen}
CLI=$PROJECT_DIR/dist/cli.js

say() { printf '[obs-bench] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ -x "$LOADGEN" ] || die "no load generator at $LOADGEN (build it: bash bench/run.sh -B, or set LOADGEN)"
[ -f "$CLI" ] || die "no $CLI (npm run build)"
for t in node taskset curl flock; do command -v $t >/dev/null || die "$t not found"; done

# One benchmark at a time on this machine: the same lock as bench/run.sh.
LOCK=${BENCH_WORK_DIR:-/tmp/echoserver-perf}.lock
exec 9>"$LOCK" || die "cannot create $LOCK"
if ! flock -n 9; then
  say "another benchmark holds $LOCK; waiting for it (two at once would disturb both)"
  flock 9
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/echo-obs-bench.XXXXXX")
SERVER_PID="" SINK_PID="" SCRAPER_PID=""
cleanup() {
  for p in $SCRAPER_PID $SERVER_PID $SINK_PID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port pid
  local i
  for i in $(seq 150); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# An OTLP/HTTP sink: accepts and counts POSTs to /v1/traces (and the spans' bytes), on the load
# generator's CPU so the server's CPU measures the server only.
SINK_PORT=$(free_port)
taskset -c "$LG_CPU" node -e '
  let posts = 0, bytes = 0;
  const s = require("http").createServer((req, res) => {
    req.on("data", (c) => (bytes += c.length));
    req.on("end", () => { posts++; res.writeHead(200, { "content-type": "application/json" }); res.end("{}"); });
  }).listen(+process.argv[1], "127.0.0.1");
  process.on("SIGTERM", () => { console.error(`sink: ${posts} export(s), ${bytes} bytes`); process.exit(0); });
' "$SINK_PORT" 2>"$WORK/sink.log" &
SINK_PID=$!
wait_port "$SINK_PORT" "$SINK_PID" || die "OTLP sink did not start"

RESULTS=$WORK/results.jsonl
: >"$RESULTS"

run_one() { # mode round
  local mode=$1 round=$2 port args env_args=() out
  port=$(free_port)
  args=(serve --insecure --host 127.0.0.1 --ws-port "$port" --tcp-port off --instance bench)
  local no_otel=(-u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
  local otel=(-u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT")
  local scrape=0
  case $mode in
    off) args+=(--metrics false --log-level silent); env_args=("${no_otel[@]}") ;;
    on) args+=(--log-level info --log-format json --trace-sample-ratio 0.01); env_args=("${otel[@]}"); scrape=$SCRAPE ;;
    metrics) args+=(--log-level silent); env_args=("${no_otel[@]}"); scrape=$SCRAPE ;;
    logs) args+=(--metrics false --log-level info --log-format json); env_args=("${no_otel[@]}") ;;
    trace) args+=(--metrics false --log-level silent --trace-sample-ratio 0.01); env_args=("${otel[@]}") ;;
    trace0) args+=(--metrics false --log-level silent --trace-sample-ratio 0); env_args=("${otel[@]}") ;;
    *) die "unknown mode $mode (off on metrics logs trace trace0)" ;;
  esac
  # exec chain keeps one PID (the one loadgen watches): taskset -> env -> node.
  taskset -c "$SERVER_CPU" env "${env_args[@]}" node "$CLI" "${args[@]}" >>"$WORK/server-$mode.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$port" "$SERVER_PID" || die "server ($mode) did not start; see $WORK/server-$mode.log: $(tail -5 "$WORK/server-$mode.log")"
  if [ "$scrape" = 1 ]; then
    (while :; do
      curl -s -o /dev/null "http://127.0.0.1:$port/metrics" || true
      curl -s -o /dev/null "http://127.0.0.1:$port/metrics/design" || true
      sleep 1
    done) &
    SCRAPER_PID=$!
  fi
  out=$(taskset -c "$LG_CPU" "$LOADGEN" --url "ws://127.0.0.1:$port/" --proto ws --conns 100 --window 16 --size 64 \
    --duration "${DURATION}s" --warmup "${WARMUP}s" --server-pid "$SERVER_PID" 2>>"$WORK/loadgen.log") || true
  if [ -n "$SCRAPER_PID" ]; then kill "$SCRAPER_PID" 2>/dev/null || true; wait "$SCRAPER_PID" 2>/dev/null || true; SCRAPER_PID=""; fi
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  if [[ $out != "{"*"}" ]]; then
    say "round $round $mode: loadgen failed: $(tail -c 300 "$WORK/loadgen.log")"
    return 0
  fi
  echo "{\"config\":\"$mode\",\"round\":$round,${out#\{}" >>"$RESULTS"
  node -e 'const r=JSON.parse(process.argv[1]);console.error(`[obs-bench] round ${r.round} ${r.config.padEnd(7)}: ${Math.round(r.msgs_per_s)} msgs/s, p99 ${r.p99_us} us, server CPU ${r.srv_cpu_pct ?? "?"}%, other CPU ${r.other_cpu_pct}%, errors ${r.errors}`)' "$(tail -1 "$RESULTS")"
}

say "server CPU $SERVER_CPU, loadgen CPU $LG_CPU; $ROUNDS round(s) of off/on, ${DURATION}s + ${WARMUP}s warm-up each; S1 shape (ws, 100 conns, window 16, 64 B)"
say "load on the machine before starting: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), $(nproc) CPU(s)"
for r in $(seq "$ROUNDS"); do
  for m in $MODES; do run_one "$m" "$r"; done
done
kill -TERM "$SINK_PID" 2>/dev/null || true
wait "$SINK_PID" 2>/dev/null || true
SINK_PID=""
say "$(cat "$WORK/sink.log")"
say "on: $(cat "$WORK"/server-on.log | wc -l) log line(s) written at info over $ROUNDS run(s)"

node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
  const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
  const pick = (mode, k) => rows.filter((r) => r.config === mode).map((r) => r[k]);
  const names = { off: "off: --metrics false, logs silent, no OTLP", on: "on: metrics (scraped 1/s), logs info, OTLP 1%", metrics: "metrics only (scraped 1/s)", logs: "info logs only", trace: "OTLP at 1% only", trace0: "OTLP endpoint, ratio 0" };
  const modes = process.argv[2].split(/\s+/).filter(Boolean);
  const base = { tput: med(pick("off", "msgs_per_s")), p99: med(pick("off", "p99_us")) };
  console.log("");
  console.log("| config | runs | msgs/s (median) | p99 us (median) | vs off: msgs/s | vs off: p99 | other CPU % (max) |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const m of modes) {
    const t = med(pick(m, "msgs_per_s")), p = med(pick(m, "p99_us"));
    console.log(`| ${names[m] ?? m} | ${pick(m, "msgs_per_s").length} | ${Math.round(t)} | ${Math.round(p)} | ${(t / base.tput).toFixed(3)} | ${(p / base.p99).toFixed(3)} | ${Math.max(...pick(m, "other_cpu_pct"))} |`);
  }
  console.log("");
  console.log("ratios are medians of this run vs off; not asserted. other CPU % is CPU used by other processes while measuring:");
  console.log("above ~10 the machine was busy and the figures are noisy; rerun with more ROUNDS on a quiet machine.");
' "$RESULTS" "$MODES"
