#!/usr/bin/env bash
# make bench: measures, in one run on this machine, with a Release build:
#   1. storage only: spans/s through store_put_batches (no HTTP, no decoding) and bytes/span
#   2. end to end at the maximum accepted rate (meshscope-loadgen, Bookinfo traces, 200 spans
#      per request, $BENCH_CONNECTIONS connections): OTLP/HTTP protobuf, OTLP JSON, Zipkin v2 JSON
#      under --ack=committed (the default), OTLP protobuf under --ack=received; each with its
#      ratio to (1), peak RSS, spans stored; the OTLP protobuf run lasts
#      $BENCH_SUSTAINED_SECONDS (default 60) and reports whether nothing was dropped
#   3. ingest request latency p50/p99/p99.9 at 50% of the maximum OTLP protobuf rate, in steady
#      state (after $BENCH_WARMUP_SECONDS, default 15, at that rate; reported too: the cold start)
#   4. query latency with $BENCH_QUERY_SPANS (default 10 million) spans stored (bench_query, in
#      process through query_handle; the database is cached in BUILD_DIR/bench-10m.db and only
#      refilled when its generator version or span count changes)
#   5. /metrics render time with the RED families at their 10,000-series limit (HTTP GET after a
#      wide 200-service mesh, and bench_red in process)
#   6. peak RSS during (2), bytes/span on disk
# Prints a table and writes BUILD_DIR/bench-results.json. Every step is bounded in time.
# `make test` runs it as the bench_smoke test (BENCH_SMOKE=1: 1 s runs, a 20,000-span query
# store, results in BUILD_DIR/bench-smoke-results.json): it checks the plumbing, never a figure.
# Usage: tests/bench/run.sh BUILD_DIR [SECONDS]   (BENCH_SECONDS, BENCH_SUSTAINED_SECONDS, BENCH_WARMUP_SECONDS,
# BENCH_CONNECTIONS, BENCH_QUERY_SPANS, BENCH_SMOKE=1 for a few-second smoke that checks the plumbing only)
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR [SECONDS]}
secs=${2:-${BENCH_SECONDS:-15}}
# The OTLP protobuf run at the maximum rate lasts this long (the issue's "sustained for 60 s").
sustained_secs=${BENCH_SUSTAINED_SECONDS:-60}
conns=${BENCH_CONNECTIONS:-64}
query_spans=${BENCH_QUERY_SPANS:-10000000}
query_db=$build/bench-10m.db
metrics_feed=8 metrics_threads=24
warm_secs=${BENCH_WARMUP_SECONDS:-15}
results=$build/bench-results.json
if [[ -n ${BENCH_SMOKE:-} ]]; then
  secs=1 sustained_secs=2 warm_secs=1 conns=4 query_spans=20000 query_db=$build/bench-smoke.db metrics_feed=1 metrics_threads=2
  results=$build/bench-smoke-results.json
fi
bin=$build/collector/meshscope
loadgen=$build/tests/meshscope-loadgen
store_bench=$build/tests/bench_store
query_bench=$build/tests/bench_query
red_bench=$build/tests/bench_red
work=$(mktemp -d /tmp/meshscope-bench.XXXXXX)
pid=
t_start=$(date +%s)
cleanup() {
  [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { echo "bench: $*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
metric() { # $1 = metric name prefix; sums the samples
  curl -s --max-time 30 "http://127.0.0.1:$http/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {printf "%d\n", s}'
}

# 1. storage only
say "storage only"
spans=400000
[[ -n ${BENCH_SMOKE:-} ]] && spans=20000
out=$("$store_bench" "$spans" "$work/store.db" 4096)
store_sps=$(sed -n 's/^store_put_batches: \([0-9]*\) spans\/s.*/\1/p' <<<"$out")
store_bps=$(sed -n 's/.*bytes, \([0-9.]*\) bytes\/span.*/\1/p' <<<"$out")

# 2/3. end to end through the real daemon
run_daemon() { # $1 = extra flags; sets pid, http, otlp
  http=$(free_port); otlp=$(free_port)
  rm -f "$work"/e2e.db*
  # shellcheck disable=SC2086
  "$bin" --db "$work/e2e.db" --http "127.0.0.1:$http" --otlp-http "127.0.0.1:$otlp" --zipkin off --otlp-grpc off \
    --log-level warn $1 2>"$work/daemon.log" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && return 0; sleep 0.1; done
  say "daemon did not become ready"; cat "$work/daemon.log" >&2; exit 1
}
stop_daemon() { # SIGTERM drains the queue into SQLite; bounded to 120 s
  kill -TERM "$pid"
  for _ in $(seq 1200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" || true
  pid=
}
peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$pid/status"; }

# measure NAME DAEMON_FLAGS LOADGEN_FLAGS [SECONDS]: writes $work/NAME.json
# {"loadgen":..., "peak_rss_kb":..., "spans_stored":..., "db_bytes":...}
measure() {
  say "end to end: $1"
  run_daemon "$2"
  local res rss stored size warm=null
  if [[ -n ${5:-} ]]; then # $5 = seconds of the same load first, reported apart as "warmup"
    # shellcheck disable=SC2086
    warm=$("$loadgen" --target "127.0.0.1:$otlp" --threads "$conns" --spans-per-request 200 \
           --duration "$5" --json $3)
  fi
  # shellcheck disable=SC2086
  res=$("$loadgen" --target "127.0.0.1:$otlp" --threads "$conns" --spans-per-request 200 \
        --duration "${4:-$secs}" --json $3)
  rss=$(peak_rss_kb)
  stop_daemon
  # Stored is read from the file after the drain (the counter dies with the daemon): spans in
  # chunks, through sqlite3 when present, else the loadgen's accepted count.
  size=$(( $(stat -c %s "$work/e2e.db") + $(stat -c %s "$work/e2e.db-wal" 2>/dev/null || echo 0) ))
  stored=$(sqlite3 "file:$work/e2e.db?mode=ro" 'select coalesce(sum(n_spans),0) from chunks' 2>/dev/null ||
           json_field "$res" spans_accepted)
  echo "{\"loadgen\":$res,\"warmup\":$warm,\"peak_rss_kb\":$rss,\"spans_stored\":$stored,\"db_bytes\":$size}" >"$work/$1.json"
}

measure otlp_proto_committed "" "--protocol otlp-proto" "$sustained_secs"
measure otlp_json_committed "" "--protocol otlp-json"
measure zipkin_json_committed "" "--protocol zipkin-json"
measure otlp_proto_received "--ack received" "--protocol otlp-proto"
# OTLP/gRPC unary Export (issue 10, reported beside HTTP): 4 streams per connection.
g=$(free_port); say "end to end: otlp_grpc_committed"; run_daemon "--otlp-grpc 127.0.0.1:$g"
grpc_res=$("$build/tests/meshscope-grpc-loadgen" --target "127.0.0.1:$g" --threads "$conns" --streams 4 \
  --spans-per-request 200 --duration "$secs" --json)
grpc_rss=$(peak_rss_kb)
stop_daemon
grpc_stored=$(sqlite3 "file:$work/e2e.db?mode=ro" 'select coalesce(sum(n_spans),0) from chunks' 2>/dev/null ||
              json_field "$grpc_res" spans_accepted)
echo "{\"loadgen\":$grpc_res,\"peak_rss_kb\":$grpc_rss,\"spans_stored\":$grpc_stored}" >"$work/otlp_grpc_committed.json"
say "otlp_grpc_committed: $(json_field "$grpc_res" spans_per_second) spans/s (${grpc_res})"
max_sps=$(python3 -c "import json; print(json.load(open('$work/otlp_proto_committed.json'))['loadgen']['spans_per_second'])")
half=$(python3 -c "print(max(int($max_sps/2), 1000))")
# Latency in steady state: the same daemon first takes $warm_secs at that rate on its fresh
# database (dictionary training, the first WAL passes, caches and maps filling), reported
# apart as the cold start; BENCHMARKS.md "Latency at half rate" has why.
measure otlp_proto_half_rate "" "--protocol otlp-proto --rate $half" "$secs" "$warm_secs"

# 4. query latency on the cached (or freshly filled) store
say "queries with $query_spans spans stored ($query_db; the first run fills it)"
"$query_bench" --db "$query_db" --spans "$query_spans" >"$work/query.json"

# 5. /metrics with the RED families at their series limit: a wide mesh (200 services, up to 60
# span names each, CLIENT and SERVER, two status classes) from 24 different request templates
# yields more span-metrics label sets than the 10,000 limit.
say "/metrics at the series limit"
run_daemon "--ack received"
"$loadgen" --target "127.0.0.1:$otlp" --threads "$metrics_threads" --scenario wide --services 200 \
  --spans-per-request 2000 --duration "$metrics_feed" --json >"$work/metrics_feed.json"
curl -s --max-time 30 -o "$work/metrics.txt" "http://127.0.0.1:$http/metrics"
python3 - "$http" "$work/metrics.txt" >"$work/metrics.json" <<'EOF'
import json, subprocess, sys
port, path = sys.argv[1], sys.argv[2]
text = open(path).read()
samples = sum(1 for l in text.splitlines() if l and not l.startswith('#'))
series = {}
for l in text.splitlines():
    if l.startswith('meshscope_metrics_series{'):
        series[l.split('metric="')[1].split('"')[0]] = int(float(l.split()[-1]))
times = []
for _ in range(10):  # bounded: 10 scrapes
    out = subprocess.run(['curl', '-s', '--max-time', '30', '-o', '/dev/null', '-w', '%{time_total}',
                          f'http://127.0.0.1:{port}/metrics'], capture_output=True, text=True).stdout
    times.append(float(out) * 1000)
times.sort()
print(json.dumps({"samples": samples, "bytes": len(text), "series_per_family": series,
                  "scrape_ms_p50": round(times[len(times) // 2], 2), "scrape_ms_max": round(times[-1], 2)}))
EOF
stop_daemon
red_line=$("$red_bench" 1 1 2>/dev/null | grep '^render:' || true)

# Table and JSON.
python3 - "$work" "$results" "$store_sps" "$store_bps" "$secs" "$conns" "$red_line" \
  "$(( $(date +%s) - t_start ))" "$sustained_secs" <<'EOF'
import json, os, platform, re, sys, datetime
work, out, store_sps, store_bps, secs, conns, red_line, elapsed, sustained = sys.argv[1:10]
store_sps, store_bps = float(store_sps), float(store_bps)
load = lambda n: json.load(open(os.path.join(work, n + '.json')))
runs = {n: load(n) for n in ['otlp_proto_committed', 'otlp_json_committed', 'zipkin_json_committed',
                             'otlp_proto_received', 'otlp_proto_half_rate']}
q, m = load('query'), load('metrics')
red = {}
mm = re.search(r'text ([0-9.]+) ms, OpenMetrics ([0-9.]+) ms', red_line)
if mm: red = {"text_ms": float(mm.group(1)), "openmetrics_ms": float(mm.group(2))}
res = {
  "date": datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%MZ'),
  "cpus": os.cpu_count(), "machine": platform.platform(), "seconds": int(secs), "connections": int(conns),
  "sustained_seconds": int(sustained),
  "storage_only": {"spans_per_second": store_sps, "bytes_per_span": store_bps},
  "end_to_end": {},
  "latency_at_half_rate": runs['otlp_proto_half_rate'],
  "query": q, "metrics_render": dict(m, bench_red_in_process=red),
  "bench_seconds": int(elapsed),
}
for n in ['otlp_proto_committed', 'otlp_json_committed', 'zipkin_json_committed', 'otlp_proto_received']:
  r = runs[n]
  r['ratio_to_storage_only'] = round(r['loadgen']['spans_per_second'] / store_sps, 3)
  r['bytes_per_span'] = round(r['db_bytes'] / max(r['spans_stored'], 1), 1)
  res['end_to_end'][n] = r
g = load('otlp_grpc_committed')
g['ratio_to_storage_only'] = round(g['loadgen']['spans_per_second'] / store_sps, 3)
res['end_to_end']['otlp_grpc_committed'] = g
# Nothing dropped: every request sent was answered 2xx or 429/503 (which the sender retries),
# none refused otherwise or lost in transport, and every accepted span is in the database.
c = res['end_to_end']['otlp_proto_committed']; cl = c['loadgen']
c['nothing_dropped'] = (cl['sent'] == cl['accepted'] + cl['retried'] and cl['rejected'] == 0 and
                        cl['errors'] == 0 and c['spans_stored'] == cl['spans_accepted'])
json.dump(res, open(out, 'w'), indent=1)

rows = []
row = lambda k, v: rows.append((k, v))
row('storage only: spans/s (store_put_batches, 8-span traces, 4096-span commits)', f'{store_sps:,.0f}')
row('storage only: bytes/span on disk', f'{store_bps:.0f}')
row(f"OTLP/HTTP protobuf sustained {sustained} s at the maximum rate: nothing dropped (sent = accepted + retried, stored = accepted)",
    f"{'yes' if c['nothing_dropped'] else 'NO'}: sent {cl['sent']:,}, accepted {cl['accepted']:,}, retried {cl['retried']:,}, rejected {cl['rejected']:,}, errors {cl['errors']:,}; {c['spans_stored']:,} spans stored of {cl['spans_accepted']:,} accepted; peak RSS {c['peak_rss_kb'] // 1024} MiB")
names = {'otlp_proto_committed': f'OTLP/HTTP protobuf ({sustained} s)', 'otlp_json_committed': 'OTLP/HTTP JSON',
         'zipkin_json_committed': 'Zipkin v2 JSON', 'otlp_proto_received': 'OTLP/HTTP protobuf, --ack=received'}
for n, label in names.items():
  r = res['end_to_end'][n]; l = r['loadgen']
  row(f'{label}: spans/s accepted (ratio to storage only)',
      f"{l['spans_per_second']:,.0f} ({r['ratio_to_storage_only']:.2f}); stored {r['spans_stored']:,} of {l['spans_accepted']:,} accepted; 503s {l['retried']}")
gl = g['loadgen']
row(f"OTLP/gRPC unary Export ({gl['threads']} connections x {gl['streams']} streams): spans/s accepted (ratio to storage only)",
    f"{gl['spans_per_second']:,.0f} ({g['ratio_to_storage_only']:.2f}); stored {g['spans_stored']:,} of {gl['spans_accepted']:,} accepted; failed calls {gl['calls_failed']:,}; peak RSS {g['peak_rss_kb'] // 1024} MiB")
for n, label in names.items():
  r = res['end_to_end'][n]
  row(f'{label}: peak RSS', f"{r['peak_rss_kb'] // 1024} MiB")
h, hw = runs['otlp_proto_half_rate']['loadgen'], runs['otlp_proto_half_rate']['warmup']
row(f"OTLP protobuf request latency at 50% rate ({h['spans_per_second']:,.0f} spans/s), steady state (after {hw['seconds']:.0f} s at that rate): p50 / p99 / p99.9",
    f"{h['latency_ms_p50']:.1f} / {h['latency_ms_p99']:.1f} / {h['latency_ms_p999']:.1f} ms")
row(f"the same, first {hw['seconds']:.0f} s of a fresh daemon and database (cold start): p50 / p99 / p99.9",
    f"{hw['latency_ms_p50']:.1f} / {hw['latency_ms_p99']:.1f} / {hw['latency_ms_p999']:.1f} ms")
lab = f"{q['spans'] / 1e6:.1f}M spans stored"
for k, label in [('trace_by_id', 'trace by id'), ('error_search_1h', 'error traces of one service, last hour'),
                 ('dependencies_1h', '/api/dependencies 1 h'), ('dependencies_24h', '/api/dependencies 24 h'),
                 ('graph_1h', '/api/graph 1 h'), ('graph_24h', '/api/graph 24 h')]:
  row(f'{lab}: {label}, p50 / p99', f"{q[k]['p50_ms']:.2f} / {q[k]['p99_ms']:.2f} ms (n={q[k]['n']})")
row(f'{lab}: bytes/span on disk (indexes and rollups included)', f"{q['bytes_per_span']:.0f}")
row('fill of the query dataset', 'cached' if q['cached'] else f"{q['fill_seconds']:.0f} s")
row('end to end (OTLP protobuf): bytes/span on disk, WAL included', f"{res['end_to_end']['otlp_proto_committed']['bytes_per_span']:.0f}")
sm = m['series_per_family'].get('traces_spanmetrics_calls_total', 0)
row(f"GET /metrics: {sm:,} span-metrics series, {m['samples']:,} samples, {m['bytes'] / 2**20:.1f} MiB",
    f"{m['scrape_ms_p50']:.1f} ms p50, {m['scrape_ms_max']:.1f} ms max")
if red:
  row('red_render at the 10,000 span-metrics series limit (bench_red, in process)',
      f"{red['text_ms']:.1f} ms text, {red['openmetrics_ms']:.1f} ms OpenMetrics")
w = max(len(k) for k, _ in rows)
print(f"\nmeshscope benchmark ({res['date']}, {res['cpus']} CPUs, {secs}s runs ({sustained}s for OTLP protobuf at the maximum rate), Bookinfo traces, 200 spans/request, {conns} connections)")
print(f"| {'measure'.ljust(w)} | value |\n|{'-' * (w + 2)}|-------|")
for k, v in rows: print(f'| {k.ljust(w)} | {v} |')
print(f'\nmake bench took {elapsed} s; written: {out}')
EOF

# 7. Access logs over NDJSON (POST /api/v1/accesslogs, --ack=committed: decode, RED and storage
# included): lines/s end to end for Envoy/Istio lines (loadgen's Bookinfo template, fresh ids per
# request) and for nginx lines in the README log_format (a generated file, 1,000 lines per
# request); the per-stage cost in process (bench_accesslog); and mtail (Debian's) turning the same
# nginx file into request counts and a latency histogram (tests/bench/nginx.mtail, --one_shot;
# its start-up, timed on a one-line file, is subtracted). Adds "access_logs" to the JSON.
say "access logs: NDJSON end to end, in process, and mtail on the same nginx lines"
alog_lines=300000
[[ -n ${BENCH_SMOKE:-} ]] && alog_lines=5000
"$build/tests/bench_accesslog" --gen "$work/nginx.log" "$alog_lines"
run_daemon ""
"$loadgen" --target "127.0.0.1:$otlp" --protocol accesslog-ndjson --spans-per-request 2000 \
  --threads 4 --duration "$secs" --json >"$work/alog_envoy.json"
stop_daemon
run_daemon ""
"$loadgen" --target "127.0.0.1:$otlp" --protocol accesslog-ndjson --logs-file "$work/nginx.log" \
  --spans-per-request 1000 --threads 4 --duration "$secs" --json >"$work/alog_nginx.json"
# the daemon's CPU seconds (utime + stime) for the run: less sensitive to a shared machine
alog_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$pid/stat")
stop_daemon
alog_stored=$(sqlite3 "file:$work/e2e.db?mode=ro" 'select coalesce(sum(n), 0) from access_log_blocks' 2>/dev/null || echo -1)
"$build/tests/bench_accesslog" "$alog_lines" nginx "$work/alog-inproc.db" >"$work/alog_inproc.txt" 2>/dev/null
mkdir -p "$work/mtail-progs"
cp "$(dirname "$0")/nginx.mtail" "$work/mtail-progs/"
head -1 "$work/nginx.log" >"$work/nginx-one.log"
python3 - "$work" "$results" "$alog_lines" "$alog_stored" "$alog_cpu" <<'PYEOF'
import json, re, resource, subprocess, sys, time
work, out, n, stored = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
daemon_cpu = float(sys.argv[5])
def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
def mtail(log):
    c0 = cpu()
    t0 = time.monotonic()
    p = subprocess.run(['mtail', '--one_shot', '--one_shot_format', 'prometheus', '--progs',
                        f'{work}/mtail-progs', '--logs', log, '--logtostderr'],
                       capture_output=True, text=True, timeout=600)
    dt = time.monotonic() - t0
    counted = sum(float(l.split()[-1]) for l in p.stdout.splitlines() if l.startswith('nginx_requests_total{'))
    return dt, int(counted), cpu() - c0
t1, _, c1 = mtail(f'{work}/nginx-one.log')
tn, counted, cn = mtail(f'{work}/nginx.log')
mtail_cpu_us = (cn - c1) * 1e6 / n
mtail_lps = n / max(tn - t1, 1e-6)
envoy, nginx = (json.load(open(f'{work}/alog_{k}.json')) for k in ('envoy', 'nginx'))
inproc = open(f'{work}/alog_inproc.txt').read()
stage = {k: float(v) for k, v in re.findall(r'^(decode|red|store): (\d+) ns/line', inproc, re.M)}
res = json.load(open(out))
res['access_logs'] = {
    'envoy_ndjson_committed': envoy,
    'nginx_ndjson_committed': dict(nginx, lines_stored=stored, daemon_cpu_seconds=daemon_cpu,
                                   daemon_cpu_us_per_line=round(daemon_cpu * 1e6 / max(nginx['spans_accepted'], 1), 2)),
    'in_process_ns_per_line': stage,
    'mtail': {'lines': n, 'seconds': round(tn, 3), 'startup_seconds': round(t1, 3),
              'lines_per_second': round(mtail_lps), 'requests_counted': counted,
              'cpu_us_per_line': round(mtail_cpu_us, 2)},
    'meshscope_to_mtail_ratio': round(nginx['spans_per_second'] / mtail_lps, 2),
}
json.dump(res, open(out, 'w'), indent=1)
print('\naccess logs (NDJSON, --ack=committed, decode + RED + storage; 4 connections)')
print('| measure | value |\n|---|---|')
print(f"| Envoy/Istio JSON lines/s end to end ({envoy['spans_per_request']} lines/request) | {envoy['spans_per_second']:,.0f} |")
print(f"| nginx JSON lines/s end to end (README log_format, 1,000 lines/request) | {nginx['spans_per_second']:,.0f} ({stored:,} stored) |")
if stage:
    print(f"| in process, one thread: decode / RED / store, ns per nginx line | {stage.get('decode', 0):,.0f} / {stage.get('red', 0):,.0f} / {stage.get('store', 0):,.0f} |")
print(f"| mtail {n:,} nginx lines (--one_shot, start-up {t1:.2f} s subtracted): lines/s | {mtail_lps:,.0f} ({counted:,} counted) |")
print(f"| meshscope / mtail (nginx lines/s) | {res['access_logs']['meshscope_to_mtail_ratio']:.2f} |")
print(f"| CPU per nginx line: meshscope daemon (HTTP, decode, RED, SQLite) / mtail | {res['access_logs']['nginx_ndjson_committed']['daemon_cpu_us_per_line']:.1f} / {mtail_cpu_us:.1f} µs |")
PYEOF
