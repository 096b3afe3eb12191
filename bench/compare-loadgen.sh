#!/usr/bin/env bash
# Compare the two load generators on the same server: the shared harness's Go loadgen and
# `echoserver bench`, same scenario shape, one after the other, each against a fresh server.
#
#   bash bench/compare-loadgen.sh [-r ROUNDS] [-d SECONDS] [-w SECONDS] [-t THREADS] [-R RATE] [SCENARIO...]
#
# Scenarios (default: S1 S4):
#   S1  WebSocket, 100 connections x window 16, 64 B          (the harness's S1 shape)
#   S4  TCP framing v1, 100 connections x window 16, 64 B     (the harness's S4 shape, tcp-v1)
#   S6  S1's shape at a fixed total rate (-R, default 20000 msg/s): latency under load. The Go
#       loadgen's p99 is measured from the actual write; its sched_p99 and our p99 are both
#       measured from the intended send time (coordinated omission corrected).
# Options: -r rounds (default 1), -d measured seconds (default 5), -w warm-up seconds
# (default 2), -t `echoserver bench --threads` (default 1: the load generator has one CPU).
#
# The server (dist/cli.js serve --insecure) is pinned to CPU 0 and the load generator to CPU 1
# with taskset, as in the harness. The Go loadgen comes from the harness copy that
# bench/run.sh builds (/tmp/echoserver-perf/bin/loadgen; built with `bash bench/run.sh -B -s
# project` if missing). Prints a Markdown table; never asserts. Raw JSON lines go to
# bench/out/compare-DATE/results.jsonl.
set -euo pipefail

ROUNDS=1 DURATION=5 WARMUP=2 THREADS=1 RATE=20000
while getopts "r:d:w:t:R:h" opt; do
  case $opt in
    r) ROUNDS=$OPTARG ;; d) DURATION=$OPTARG ;; w) WARMUP=$OPTARG ;; t) THREADS=$OPTARG ;; R) RATE=$OPTARG ;;
    h) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(S1 S4)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
WORK=${BENCH_WORK_DIR:-/tmp/echoserver-perf}
LOADGEN=$WORK/bin/loadgen
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LG_CPU=${BENCH_LG_CPU:-1}
WS_PORT=${BENCH_PORT_BASE:-19300}
TCP_PORT=$((WS_PORT + 1))
OUT=$SCRIPT_DIR/out/compare-$(date +%Y%m%d-%H%M%S)
say() { printf '[compare] %s\n' "$*" >&2; }

[ -x "$LOADGEN" ] || { say "building the harness's loadgen"; bash "$SCRIPT_DIR/run.sh" -B -s project >&2; }
[ -f "$PROJECT_DIR/dist/cli.js" ] || (cd "$PROJECT_DIR" && npm run build >&2)
mkdir -p "$OUT"

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_server() {
  (exec taskset -c "$SERVER_CPU" node "$PROJECT_DIR/dist/cli.js" serve --insecure --host 127.0.0.1 \
    --ws-port "$WS_PORT" --tcp-port "$TCP_PORT" --log-level warn) >>"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    port_open "$WS_PORT" && port_open "$TCP_PORT" && return 0
    sleep 0.1
  done
  say "server did not open its ports; see $OUT/server.log"
  exit 1
}
# CPU seconds (user + system) the server has used so far, from /proc/PID/stat.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

run_one() { # scenario round tool
  local sc=$1 round=$2 tool=$3 url proto rate_go="" rate_es="" line t0 c0 t1 c1
  case $sc in
    S1) url=ws://127.0.0.1:$WS_PORT/ proto=ws ;;
    S4) url=tcp://127.0.0.1:$TCP_PORT proto=tcp-v1 ;;
    S6) url=ws://127.0.0.1:$WS_PORT/ proto=ws rate_go="--rate $RATE" rate_es="--rate $RATE" ;;
    *) say "unknown scenario $sc"; exit 2 ;;
  esac
  start_server
  c0=$(cpu_s "$SERVER_PID") t0=$(date +%s.%N)
  if [ "$tool" = go ]; then
    # shellcheck disable=SC2086
    line=$(taskset -c "$LG_CPU" "$LOADGEN" --url "$url" --proto "$proto" --conns 100 --window 16 --size 64 \
      --duration "${DURATION}s" --warmup "${WARMUP}s" --server-pid "$SERVER_PID" $rate_go 2>>"$OUT/loadgen.log" | tail -1)
  else
    # shellcheck disable=SC2086
    line=$(taskset -c "$LG_CPU" node "$PROJECT_DIR/dist/cli.js" bench "$url" --connections 100 --window 16 --size 64 \
      --duration "${DURATION}s" --warmup "${WARMUP}s" --threads "$THREADS" $rate_es --json 2>>"$OUT/loadgen.log" || true)
  fi
  c1=$(cpu_s "$SERVER_PID") t1=$(date +%s.%N)
  stop_server
  node -e '
    const [sc, round, tool, raw, c0, c1, t0, t1] = process.argv.slice(1);
    const j = JSON.parse(raw);
    // Server CPU over the whole run (connect + warm-up + measured + drain), both tools alike.
    const srv = Math.round(((c1 - c0) / (t1 - t0)) * 100);
    const r = tool === "go"
      ? { msgs: j.msgs_per_s, mb: j.mb_per_s, p50: j.p50_us, p99: j.p99_us, sched99: j.sched_p99_us ?? null, max: j.max_us, errors: j.errors, sent: null, echoed: j.received }
      : { msgs: j.messagesPerS, mb: j.mbPerS, p50: Math.round(j.latencyMs.p50 * 1000), p99: Math.round(j.latencyMs.p99 * 1000),
          sched99: j.rate === null ? null : Math.round(j.latencyMs.p99 * 1000), max: Math.round(j.latencyMs.max * 1000), errors: j.errors.total, sent: j.sent, echoed: j.echoed };
    console.log(JSON.stringify({ scenario: sc, round: Number(round), tool, srvCpuPct: srv, ...r }));
  ' "$sc" "$round" "$tool" "$line" "$c0" "$c1" "$t0" "$t1" | tee -a "$OUT/results.jsonl" >&2
}

say "output: $OUT"
for round in $(seq 1 "$ROUNDS"); do
  for sc in "${SCENARIOS[@]}"; do
    for tool in go echoserver-bench; do run_one "$sc" "$round" "$tool"; done
  done
done

node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const f = (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US"));
  console.log("| scenario | round | load generator | msgs/s | MB/s | p50 µs | p99 µs | p99 from intended send µs | max µs | errors | server CPU % |");
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.scenario} | ${r.round} | ${r.tool === "go" ? "Go loadgen" : "echoserver bench"} | ${f(r.msgs)} | ${r.mb.toFixed(2)} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.sched99)} | ${f(r.max)} | ${r.errors} | ${r.srvCpuPct} |`);
' "$OUT/results.jsonl" | tee "$OUT/report.md"
