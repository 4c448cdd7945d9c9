#!/usr/bin/env bash
# make bench: measures, in one run on this machine, with a Release build:
#   1. storage only: spans/s through store_put_batches (no HTTP, no decoding) and bytes/span
#   2. end to end: OTLP/HTTP protobuf at the maximum accepted rate (--ack=committed, the default,
#      and --ack=received), its ratio to (1), peak RSS, bytes/span on disk
#   3. ingest request latency p50/p99 at 50% of the maximum rate
# Prints a table and writes bench-results.json in the build directory. Every run is bounded in
# time. Usage: tests/bench/run.sh BUILD_DIR [SECONDS]
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR [SECONDS]}
secs=${2:-${BENCH_SECONDS:-15}}
bin=$build/collector/meshscope
loadgen=$build/tests/meshscope-loadgen
store_bench=$build/tests/bench_store
work=$(mktemp -d /tmp/meshscope-bench.XXXXXX)
pid=
cleanup() {
  [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# 1. storage only
spans=400000
out=$("$store_bench" "$spans" "$work/store.db" 4096)
store_sps=$(sed -n 's/^store_put_batches: \([0-9]*\) spans\/s.*/\1/p' <<<"$out")
store_bps=$(sed -n 's/.*bytes, \([0-9.]*\) bytes\/span.*/\1/p' <<<"$out")

# 2/3. end to end through the real daemon
run_daemon() { # $1 = extra flags; sets pid, otlp, http
  http=$(free_port); otlp=$(free_port)
  rm -f "$work"/e2e.db*
  # shellcheck disable=SC2086
  "$bin" --db "$work/e2e.db" --http "127.0.0.1:$http" --otlp-http "127.0.0.1:$otlp" --zipkin off \
    --log-level warn $1 2>"$work/daemon.log" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.1; done
}
stop_daemon() {
  kill -TERM "$pid"; wait "$pid" || true; pid=
}
peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$pid/status"; }

measure_max() { # $1 = daemon flags; writes loadgen JSON, rss, stored, size to $work/measure
  run_daemon "$1"
  local res rss stored size
  res=$("$loadgen" --target "127.0.0.1:$otlp" --threads 16 --spans-per-request 200 --duration "$secs" --json)
  rss=$(peak_rss_kb)
  sleep 1
  stored=$(curl -s "http://127.0.0.1:$http/metrics" | awk '/^meshscope_spans_stored_total/ {print $2}')
  stop_daemon
  size=$(( $(stat -c %s "$work/e2e.db") + $(stat -c %s "$work/e2e.db-wal" 2>/dev/null || echo 0) ))
  echo "$res $rss $stored $size" >"$work/measure"
}

measure_max ""
read -r e2e_json e2e_rss e2e_stored e2e_size <"$work/measure"
measure_max "--ack received"
read -r recv_json recv_rss _ _ <"$work/measure"
e2e_sps=$(json_field "$e2e_json" spans_per_second)
recv_sps=$(json_field "$recv_json" spans_per_second)

half=$(python3 -c "print(int($e2e_sps/2))")
run_daemon ""
half_json=$("$loadgen" --target "127.0.0.1:$otlp" --threads 16 --spans-per-request 200 --duration "$secs" --rate "$half" --json)
stop_daemon

ratio=$(python3 -c "print(f'{$e2e_sps/$store_sps:.2f}')")
e2e_bps=$(python3 -c "print(f'{$e2e_size/max($e2e_stored,1):.1f}')")
cores=$(nproc)
cat <<EOF

meshscope benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $cores CPUs, ${secs}s runs, 200 spans/request, 16 connections)
| measure                                             | value |
|-----------------------------------------------------|-------|
| storage only: spans/s (store_put_batches)           | $store_sps |
| storage only: bytes/span on disk                    | $store_bps |
| OTLP/HTTP protobuf, --ack=committed: spans/s        | $e2e_sps (ratio to storage only: $ratio) |
| OTLP/HTTP protobuf, --ack=received: spans/s         | $recv_sps |
| request latency at 50% rate ($half spans/s): p50/p99 ms | $(json_field "$half_json" latency_ms_p50) / $(json_field "$half_json" latency_ms_p99) |
| peak RSS at max rate (committed / received), MiB    | $((e2e_rss / 1024)) / $((recv_rss / 1024)) |
| end-to-end bytes/span on disk (WAL included)        | $e2e_bps |
EOF
cat >"$build/bench-results.json" <<EOF
{"cpus":$cores,"seconds":$secs,"storage_spans_per_second":$store_sps,"storage_bytes_per_span":$store_bps,
 "otlp_protobuf_committed":$e2e_json,"otlp_protobuf_received":$recv_json,"latency_at_half_rate":$half_json,
 "peak_rss_kb_committed":$e2e_rss,"peak_rss_kb_received":$recv_rss,"e2e_bytes_per_span":$e2e_bps}
EOF
echo "written: $build/bench-results.json"
