/*
 * demo.test.mjs: the README's demo command works. meshscope-loadgen --scenario bookinfo
 * --access-logs sends Bookinfo spans and, on the same connection after each span request, the
 * server hops' Envoy access-log lines; the graph then shows the four Bookinfo services and a
 * reviews trace has access-log lines whose trace and span ids match its spans.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { startDaemon } from '../lib/daemon.mjs';
import { getJson, poll, request } from '../lib/http.mjs';

const LOADGEN = path.join(process.env.MESHSCOPE_BUILD ?? path.resolve(import.meta.dirname, '../../../build'), 'tests/meshscope-loadgen');

function runLoadgen(args, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const lg = spawn(LOADGEN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    lg.stdout.on('data', (b) => (out += b));
    lg.stderr.on('data', (b) => (err += b));
    const timer = setTimeout(() => lg.kill('SIGKILL'), timeoutMs);
    lg.on('error', reject);
    lg.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

test('loadgen --scenario bookinfo --access-logs: graph, traces and joined access logs', async () => {
  const d = await startDaemon({ logLevel: 'info' });
  try {
    const r = await runLoadgen(['--target', new URL(d.otlpUrl).host, '--scenario', 'bookinfo', '--access-logs',
      '--threads', '1', '--spans-per-request', '20', '--requests', '20', '--duration', '20', '--json']);
    assert.equal(r.code, 0, `loadgen failed: ${r.out} ${r.err}`);
    const res = JSON.parse(r.out);
    assert.equal(res.accepted, 20, r.out);
    /* the new keys come with the flag; the old ones are all still there */
    for (const k of ['sent', 'rejected', 'retried', 'errors', 'spans_accepted', 'latency_ms_p99']) assert.ok(k in res, k);
    assert.equal(res.access_log_requests, 20, r.out);
    assert.equal(res.access_log_accepted, 20, r.out);
    assert.equal(res.access_log_rejected, 0, r.out);
    assert.ok(res.access_log_lines_accepted >= 20 * 4, r.out);

    const now = Date.now() * 1000;
    const graph = await getJson(`${d.httpUrl}/api/graph?start=${now - 3600e6}&end=${now + 60e6}`);
    const names = new Set(graph.nodes.map((n) => n.service ?? n.name ?? n.id));
    for (const s of ['productpage', 'details', 'reviews', 'ratings']) assert.ok([...names].some((n) => String(n).includes(s)), `${s} in ${[...names]}`);

    const traces = (await getJson(`${d.httpUrl}/api/traces?service=reviews&limit=5`)).data;
    assert.ok(traces.length > 0, 'reviews traces');
    const t = traces[0];
    const logs = await poll('access-log lines of a reviews trace', async () => {
      const body = await getJson(`${d.httpUrl}/api/logs?traceID=${t.traceID}`);
      return body.data.length ? body.data : null;
    });
    const spanIds = new Set(t.spans.map((s) => s.spanID));
    const servers = t.spans.filter((s) => s.tags.some((g) => g.key === 'span.kind' && g.value === 'server'));
    assert.equal(logs.length, servers.length, 'one line per server span');
    for (const l of logs) {
      assert.equal(l.traceID, t.traceID);
      assert.ok(spanIds.has(l.spanID), `log span ${l.spanID} is a span of the trace`);
      assert.equal(l.direction, 'inbound');
      assert.match(l.upstream_cluster, /^inbound\|9080\|\|[a-z]+\.[a-z]+\.svc\.cluster\.local$/);
      const span = t.spans.find((s) => s.spanID === l.spanID);
      const code = span.tags.find((g) => g.key === 'http.response.status_code')?.value;
      assert.equal(Number(l.response_code), Number(code), 'response_code matches the span');
      const rid = span.tags.find((g) => g.key === 'guid:x-request-id')?.value;
      assert.equal(l.request_id, rid, 'request_id matches the span');
    }
    assert.ok(logs.some((l) => l.service === 'reviews'), 'a line of reviews');
    /* The trace view joins lines by x-request-id too: 20 sends of the same template within a
     * minute must not bring the other sends' lines (every send has its own request ids). */
    const view = (await getJson(`${d.httpUrl}/api/traces/${t.traceID}`)).data[0];
    assert.equal(view.accessLogs.length, servers.length, 'the trace view lists its own lines only');
    for (const l of view.accessLogs) assert.equal(l.traceID, t.traceID);
    assert.equal(new Set(logs.map((l) => l.request_id)).size, logs.length, 'one request id per line');

    /* Each request once on the graph: the lines' requests are already counted by their spans
     * (same trace and span ids), so none of them is a request of its own (no unknown -> reviews
     * beside productpage -> reviews) and none waits. */
    assert.ok(!graph.nodes.some((n) => n.id === 'virtual:unknown'), JSON.stringify(graph.nodes));
    const metrics = (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');
    const count = (name) => Number(metrics.split('\n').find((l) => l.startsWith(name))?.split(' ').pop());
    assert.equal(count('meshscope_service_graph_records_total{outcome="traced"}'), res.access_log_lines_accepted, 'every line traced');
    assert.equal(count('meshscope_service_graph_pending_records'), 0);
    assert.ok(!metrics.includes('traces_service_graph_request_total{client="unknown"'), 'no unknown -> service edge');
  } finally {
    await d.stop();
  }
});
