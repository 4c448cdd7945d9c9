#!/usr/bin/env bash
# Step 3 of run.sh on its own, for iterating on the writer: the release daemon (default flags,
# --ack=committed) on a fresh database, fed OTLP protobuf Bookinfo traces at a fixed rate by
# meshscope-loadgen (after BENCH_WARMUP_SECONDS, default 15, of the same load: steady state), then
# prints the loadgen's JSON, the writer's commit-duration histogram
# (meshscope_batch_commit_duration_seconds), the WAL and writer-checkpoint counters, the daemon's
# CPU seconds and the largest WAL size seen (sampled every 0.2 s).
# Usage: tests/bench/latency.sh BUILD_DIR RATE_SPANS_PER_S [SECONDS] [CONNECTIONS]
set -euo pipefail
build=${1:?usage: latency.sh BUILD_DIR RATE [SECONDS] [CONNECTIONS]}
rate=${2:?rate in spans/s}
secs=${3:-15}
conns=${4:-64}
# As make bench: the same load for this long first (printed as "warmup ..."), then the measure.
warm=${BENCH_WARMUP_SECONDS:-15}
work=$(mktemp -d /tmp/meshscope-lat.XXXXXX)
pid= sampler=
cleanup() {
  [[ -n $sampler ]] && kill "$sampler" 2>/dev/null || true
  [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
http=$(free_port); otlp=$(free_port)
"$build/collector/meshscope" --db "$work/e2e.db" --http "127.0.0.1:$http" --otlp-http "127.0.0.1:$otlp" \
  --zipkin off --otlp-grpc off --log-level warn 2>"$work/daemon.log" &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.1; done
# Bounded sampler: at most 5 samples/s for the run plus 10 s.
( for _ in $(seq $(( (secs + 10) * 5 ))); do stat -c %s "$work/e2e.db-wal" 2>/dev/null || echo 0; sleep 0.2; done ) \
  >"$work/wal.txt" &
sampler=$!
if (( warm > 0 )); then
  echo -n "warmup "
  "$build/tests/meshscope-loadgen" --target "127.0.0.1:$otlp" --threads "$conns" --spans-per-request 200 \
    --duration "$warm" --rate "$rate" --json
fi
"$build/tests/meshscope-loadgen" --target "127.0.0.1:$otlp" --threads "$conns" --spans-per-request 200 \
  --duration "$secs" --rate "$rate" --json
curl -s --max-time 30 "http://127.0.0.1:$http/metrics" | grep -E '^(meshscope_batch_commit_duration_seconds|meshscope_store_)' |
  awk '{printf "%s %s\n", $1, $2}'
# The daemon's CPU seconds (utime + stime) for the run: less sensitive to a shared machine.
awk -v hz="$(getconf CLK_TCK)" '{printf "daemon_cpu_seconds %.2f\n", ($14 + $15) / hz}' "/proc/$pid/stat"
kill "$sampler" 2>/dev/null || true; sampler=
echo "wal_max_bytes $(sort -n "$work/wal.txt" | tail -1)"
kill -TERM "$pid"
for _ in $(seq 1200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
wait "$pid" || true
pid=
grep -v "^$" "$work/daemon.log" | tail -5 || true
