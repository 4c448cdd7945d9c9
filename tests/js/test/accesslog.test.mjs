/*
 * accesslog.test.mjs: Envoy/Istio JSON access logs over HTTP (POST /api/v1/accesslogs), end to
 * end against the real daemon.
 *
 * 1. Records in Istio's default JSON format (NDJSON, plain and gzipped; a JSON array) whose
 *    trace ids match spans sent over OTLP: /api/logs?traceID= returns each line verbatim, and
 *    /metrics istio_requests_total counts them with the labels the README maps (the spans are
 *    INTERNAL, so every Istio sample comes from the records).
 * 1b. Records alone (Envoy, nginx and HAProxy fields, no spans) draw the service graph:
 *    /api/graph edges, /api/dependencies links and the traces_service_graph_* metrics.
 * 1c. Both sidecars log each call (outbound at the caller, inbound at the callee, either order,
 *    one x-request-id over two hops): /api/graph, /api/dependencies and traces_service_graph_*
 *    count each call once, after --service-graph-wait; Istio keeps one sample per reporter.
 * 2. A malformed-input table: the documented status and {"accepted","rejected","error"} body.
 * 3. --ack=committed: kill -9 right after the 200 keeps the lines.
 * 4. /api/logs filters: requestId=, status= (a code or a class), minDuration=/maxDuration=
 *    return exactly the matching records; destination_service is rendered; bad values are
 *    400s naming the parameter.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { startDaemon } from '../lib/daemon.mjs';
import { getJson, poll, request } from '../lib/http.mjs';
import { pbRequest } from '../lib/proto.mjs';

const NDJSON = 'application/x-ndjson';
const daemons = [];
after(async () => {
  for (const d of daemons) await d.cleanup();
});

/** One Istio default-format record (Envoy's typed JSON: numbers as numbers, absent as null). */
function record({ traceId, spanId, inbound = false, code = 200, flags = '-', ms = 12, sent = 295, received = 17, i = 0 }) {
  return {
    start_time: new Date(Date.now() - 1000 + i).toISOString(),
    route_name: 'default',
    method: 'GET',
    path: `/reviews/${i}?q=${i}`,
    protocol: 'HTTP/1.1',
    response_code: code,
    response_flags: flags,
    response_code_details: code === 200 ? 'via_upstream' : 'upstream_reset_before_response_started',
    connection_termination_details: null,
    upstream_transport_failure_reason: null,
    bytes_received: received,
    bytes_sent: sent,
    duration: ms,
    upstream_service_time: String(ms - 1),
    x_forwarded_for: null,
    user_agent: 'node-test',
    request_id: `req-${i}`,
    authority: 'reviews:9080',
    upstream_host: '10.0.0.7:9080',
    upstream_cluster: inbound ? 'inbound|9080||' : 'outbound|9080||reviews.default.svc.cluster.local',
    upstream_local_address: '10.0.0.5:40000',
    downstream_local_address: '10.96.0.10:9080',
    downstream_remote_address: '10.0.0.5:51234',
    requested_server_name: null,
    traceparent: `00-${traceId}-${spanId}-01`,
  };
}

async function postLogs(url, body, { contentType = NDJSON, gzip = false } = {}) {
  const headers = { 'content-type': contentType };
  if (gzip) headers['content-encoding'] = 'gzip';
  const res = await request(`${url}/api/v1/accesslogs`, { method: 'POST', headers, body: gzip ? gzipSync(body) : body });
  const text = res.body.toString('utf8');
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* plain-text error answers */
  }
  return { status: res.status, text, json, headers: res.headers };
}

function sample(metrics, name, labels) {
  const lines = metrics.split('\n').filter((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
  return lines.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

test('access logs join their trace, read back verbatim, and feed istio_requests_total', async () => {
  const d = await startDaemon({ logLevel: 'info' });
  daemons.push(d);
  /* Two traces over OTLP (INTERNAL spans: no Istio samples of their own). */
  const traces = [randomBytes(16), randomBytes(16)];
  const spans = traces.map((traceId) => ({
    traceId,
    spanId: randomBytes(8),
    name: 'work',
    kind: 1,
    start: BigInt(Date.now()) * 1_000_000n,
    end: BigInt(Date.now()) * 1_000_000n + 1_000_000n,
    attrs: [],
  }));
  const otlp = await request(`${d.otlpUrl}/v1/traces`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf' },
    body: pbRequest([{ resource: [['service.name', { s: 'productpage' }]], scopes: [{ name: 't', version: '1', spans }] }]),
  });
  assert.equal(otlp.status, 200);

  const t0 = traces[0].toString('hex');
  const t1 = traces[1].toString('hex');
  /* Trace 0: 3 outbound 200s (plain NDJSON). Trace 1: 2 inbound 503 UF (gzip) + 1 outbound 200
   * in a JSON array. */
  const lines0 = [0, 1, 2].map((i) => JSON.stringify(record({ traceId: t0, spanId: randomBytes(8).toString('hex'), i })));
  let r = await postLogs(d.otlpUrl, lines0.join('\n') + '\n');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { accepted: 3, rejected: 0, error: null });
  const lines1 = [3, 4].map((i) =>
    JSON.stringify(record({ traceId: t1, spanId: randomBytes(8).toString('hex'), inbound: true, code: 503, flags: 'UF', ms: 3, sent: 91, i })),
  );
  r = await postLogs(d.otlpUrl, lines1.join('\r\n'), { gzip: true });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { accepted: 2, rejected: 0, error: null });
  const arrayRec = record({ traceId: t1, spanId: randomBytes(8).toString('hex'), i: 5 });
  r = await postLogs(d.otlpUrl, JSON.stringify([arrayRec]), { contentType: 'application/json' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.accepted, 1);
  /* Any listener serves the route (the Zipkin one too). */
  r = await postLogs(d.zipkinUrl, '', {});
  assert.equal(r.status, 200);

  /* Acknowledged means committed: readable at once. */
  const got0 = await getJson(`${d.httpUrl}/api/logs?traceID=${t0}`);
  assert.equal(got0.total, 3);
  assert.deepEqual(got0.data.map((x) => x.line), lines0, 'lines verbatim, oldest first');
  for (const x of got0.data) {
    assert.equal(x.traceID, t0);
    assert.equal(x.response_code, 200);
    assert.equal(x.direction, 'outbound');
    assert.equal(x.upstream_cluster, 'outbound|9080||reviews.default.svc.cluster.local');
    assert.equal(x.duration_ms, 12);
  }
  const got1 = await getJson(`${d.httpUrl}/api/logs?traceID=${t1}`);
  assert.equal(got1.total, 3);
  assert.deepEqual(got1.data.slice(0, 2).map((x) => x.line), lines1);
  assert.deepEqual(JSON.parse(got1.data[2].line), arrayRec);
  const errs = await getJson(`${d.httpUrl}/api/logs?service=reviews&errors=true`);
  assert.equal(errs.total, 2, JSON.stringify(errs));
  assert.ok(errs.data.every((x) => x.response_code === 503 && x.response_flags === 'UF' && x.service === 'reviews'));
  /* The trace is still there, beside its lines. */
  const trace = await getJson(`${d.httpUrl}/api/traces/${t0}`);
  assert.equal(trace.data[0].spans.length, 1);

  const metrics = (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');
  const out200 = sample(metrics, 'istio_requests_total', [
    'reporter="source"',
    'destination_service="reviews.default.svc.cluster.local"',
    'destination_service_name="reviews"',
    'destination_service_namespace="default"',
    'request_protocol="http"',
    'response_code="200"',
    'response_flags="-"',
  ]);
  assert.equal(out200, 4, metrics.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n'));
  const in503 = sample(metrics, 'istio_requests_total', [
    'reporter="destination"',
    'destination_workload="reviews"',
    'response_code="503"',
    'response_flags="UF"',
  ]);
  assert.equal(in503, 2);
  assert.equal(sample(metrics, 'istio_requests_total', []), 6, 'one sample per record, none from the INTERNAL spans');
  assert.equal(sample(metrics, 'istio_response_bytes_sum', ['reporter="source"']), 4 * 295);
  assert.equal(sample(metrics, 'istio_request_bytes_sum', ['reporter="destination"']), 2 * 17);
  assert.equal(sample(metrics, 'istio_request_duration_milliseconds_sum', ['reporter="destination"']), 2 * 3);
  assert.equal(sample(metrics, 'meshscope_spans_accepted_total', ['protocol="accesslog_json"']), 6);
  await d.stop();
});

test('access logs alone draw the service graph: /api/graph, /api/dependencies, traces_service_graph_*', async () => {
  const d = await startDaemon({ logLevel: 'info' });
  daemons.push(d);
  const now = Date.now();
  const iso = (i) => new Date(now - 5000 + i).toISOString();
  /* A mesh with no tracing: Envoy outbound productpage -> reviews (3, one 503), Envoy inbound at
   * reviews (2), nginx "edge" -> upstream "shop:8080" (2, retries summed), HAProxy fe_web ->
   * be_app (4, one sD), and an nginx line it served itself (no edge). */
  const lines = [];
  for (let i = 0; i < 3; i++)
    lines.push({ start_time: iso(i), service: 'productpage', upstream_cluster: 'outbound|9080||reviews.default.svc.cluster.local', response_code: i === 2 ? 503 : 200, duration: 20 });
  for (let i = 0; i < 2; i++)
    lines.push({ start_time: iso(10 + i), upstream_cluster: 'inbound|9080||', authority: 'reviews:9080', response_code: 200, duration: 15 });
  for (let i = 0; i < 2; i++)
    lines.push({ msec: ((now - 4000 + i) / 1000).toFixed(3), request_time: '0.120', upstream_response_time: '0.050, 0.060', service: 'edge', upstream_name: 'shop:8080', response_code: '200' });
  lines.push({ msec: ((now - 3000) / 1000).toFixed(3), request_time: '0.000', upstream_response_time: '', service: 'edge', upstream_name: '', response_code: '304' });
  for (let i = 0; i < 4; i++)
    lines.push({ start_time_ms: now - 2000 + i, frontend_name: 'fe_web', backend_name: 'be_app', duration: 40, upstream_service_time: i === 3 ? -1 : 30, response_code: i === 3 ? 504 : 200, response_flags: i === 3 ? 'sD' : '--' });
  const r = await postLogs(d.otlpUrl, lines.map((l) => JSON.stringify(l)).join('\n'));
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { accepted: 12, rejected: 0, error: null });

  const g = await getJson(`${d.httpUrl}/api/graph?start=${(now - 3600_000) * 1000}&end=${(now + 60_000) * 1000}`);
  const edges = Object.fromEntries(g.edges.map((e) => [`${e.source} ${e.target} ${e.connection_type}`, [e.requests, e.errors]]));
  assert.deepEqual(edges, {
    'service:productpage service:reviews ': [3, 1],
    'virtual:unknown service:reviews virtual_node': [2, 0],
    'service:edge service:shop ': [2, 0],
    'service:fe_web service:be_app ': [4, 1],
  }, JSON.stringify(g.edges));
  const p50 = g.edges.find((e) => e.source === 'service:edge').p50_ms;
  assert.ok(p50 > 100 && p50 < 145, `nginx request_time 120 ms: p50 ${p50}`);

  const deps = await getJson(`${d.httpUrl}/api/dependencies?endTs=${now + 60_000}&lookback=3600000`);
  const links = Object.fromEntries(deps.data.map((x) => [`${x.parent} ${x.child}`, x.callCount]));
  assert.equal(links['productpage reviews'], 3, JSON.stringify(deps.data));
  assert.equal(links['fe_web be_app'], 4);
  assert.equal(links['edge shop'], 2);

  const metrics = (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');
  const total = (labels) => sample(metrics, 'traces_service_graph_request_total', labels);
  const failed = (labels) => sample(metrics, 'traces_service_graph_request_failed_total', labels);
  assert.equal(total(['client="productpage"', 'server="reviews"', 'connection_type=""']), 3);
  assert.equal(failed(['client="productpage"', 'server="reviews"']), 1);
  assert.equal(total(['client="unknown"', 'server="reviews"', 'connection_type="virtual_node"']), 2);
  assert.equal(total(['client="edge"', 'server="shop"']), 2);
  assert.equal(total(['client="fe_web"', 'server="be_app"']), 4);
  assert.equal(failed(['client="fe_web"', 'server="be_app"']), 1);
  assert.equal(total([]), 11, 'one request per record that names both ends, none for the self-served line');
  assert.equal(sample(metrics, 'traces_service_graph_request_client_seconds_count', ['client="fe_web"']), 4);
  await d.stop();
});

test('both proxies log each call: the service graph counts each request once', async () => {
  /* --service-graph-wait 1s: records with a request id wait that long for the other proxy's. */
  const d = await startDaemon({ logLevel: 'info', args: ['--service-graph-wait', '1s'] });
  daemons.push(d);
  const now = Date.now();
  const iso = (i) => new Date(now - 5000 + i).toISOString();
  const out = (rid, code, extra = {}) => ({ start_time: iso(0), service: 'productpage', upstream_cluster: 'outbound|9080||reviews.default.svc.cluster.local',
    request_id: rid, response_code: code, response_flags: code >= 500 ? 'UT' : '-', duration: 40, ...extra });
  const inb = (rid, code, extra = {}) => ({ start_time: iso(1), upstream_cluster: 'inbound|9080||', authority: 'reviews:9080',
    request_id: rid, response_code: code, duration: 30, ...extra });
  /* Four calls productpage -> reviews logged by both sidecars, sent in either order and in
   * separate posts (the caller saw a 504 timeout on the 4th while reviews answered 200); one
   * more hop of the same request id (reviews -> ratings, both sides); one inbound record whose
   * caller did not log; one outbound record to details whose callee did not log. */
  const first = [out('a', 200), inb('b', 200), out('c', 200), out('d', 504), out('a', 200, { service: 'reviews', upstream_cluster: 'outbound|9080||ratings.default.svc.cluster.local' }),
    inb('x', 200), out('y', 200, { upstream_cluster: 'outbound|9080||details.default.svc.cluster.local' })];
  const second = [inb('a', 200), out('b', 200), inb('c', 503), inb('d', 200), inb('a', 200, { authority: 'ratings:9080' })];
  for (const lines of [first, second]) {
    const r = await postLogs(d.otlpUrl, lines.map((l) => JSON.stringify(l)).join('\n'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.accepted, lines.length);
  }
  const window = `start=${(now - 3600_000) * 1000}&end=${(now + 60_000) * 1000}`;
  const g = await poll('the graph after the wait', async () => {
    const json = await getJson(`${d.httpUrl}/api/graph?${window}`);
    return json.edges.reduce((n, e) => n + e.requests, 0) >= 7 ? json : null;
  });
  const edges = Object.fromEntries(g.edges.map((e) => [`${e.source} ${e.target} ${e.connection_type}`, [e.requests, e.errors]]));
  assert.deepEqual(edges, {
    'service:productpage service:reviews ': [4, 1],
    'service:reviews service:ratings ': [1, 0],
    'virtual:unknown service:reviews virtual_node': [1, 0],
    'service:productpage service:details ': [1, 0],
  }, JSON.stringify(g.edges));
  /* The pair's latency is the caller's (40 ms), not the sum of both records. */
  const pr = g.edges.find((e) => e.source === 'service:productpage' && e.target === 'service:reviews');
  assert.ok(pr.p50_ms > 30 && pr.p50_ms < 50, `p50 ${pr.p50_ms}`);
  const deps = await getJson(`${d.httpUrl}/api/dependencies?endTs=${now + 60_000}&lookback=3600000`);
  const links = Object.fromEntries(deps.data.map((x) => [`${x.parent} ${x.child}`, x.callCount]));
  assert.deepEqual(links, { 'productpage reviews': 4, 'reviews ratings': 1, 'productpage details': 1 }, JSON.stringify(deps.data));

  const metrics = (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');
  const total = (labels) => sample(metrics, 'traces_service_graph_request_total', labels);
  assert.equal(total(['client="productpage"', 'server="reviews"', 'connection_type=""']), 4);
  assert.equal(sample(metrics, 'traces_service_graph_request_failed_total', ['client="productpage"', 'server="reviews"']), 1);
  assert.equal(total(['client="unknown"', 'server="reviews"']), 1);
  assert.equal(total(['client="reviews"', 'server="ratings"']), 1);
  assert.equal(total(['client="productpage"', 'server="details"']), 1);
  assert.equal(total([]), 7, 'one request per call');
  assert.equal(sample(metrics, 'meshscope_service_graph_records_total', ['outcome="paired"']), 10);
  assert.equal(sample(metrics, 'meshscope_service_graph_records_total', ['outcome="unpaired"']), 2);
  /* Istio keeps both reporters: one sample per record. */
  assert.equal(sample(metrics, 'istio_requests_total', ['reporter="source"']), 6);
  assert.equal(sample(metrics, 'istio_requests_total', ['reporter="destination"']), 6);
  await d.stop();
});

test('malformed access-log input gets the documented answers', async () => {
  const d = await startDaemon({ logLevel: 'info', args: ['--max-body', '128KiB'] });
  daemons.push(d);
  const ok = JSON.stringify({ start_time: new Date().toISOString(), method: 'GET' });
  const cases = [
    { what: 'not JSON at all', body: 'hello world\n', status: 400, text: /not NDJSON or JSON/ },
    { what: 'broken JSON array', body: '[{"start_time":', ct: 'application/json', status: 400, text: /invalid JSON array/ },
    { what: 'text/plain', body: ok, ct: 'text/plain', status: 415, text: /unsupported content type/ },
    { what: 'protobuf', body: ok, ct: 'application/x-protobuf', status: 415, text: /unsupported content type/ },
    { what: 'corrupt gzip', body: ok, headers: { 'content-encoding': 'gzip' }, status: 400, text: /cannot decompress/ },
    { what: 'unknown encoding', body: ok, headers: { 'content-encoding': 'br' }, status: 415, text: /Content-Encoding/ },
    { what: 'too large', body: `${ok}\n`.repeat(4000), status: 413, text: /max-body/ },
    { what: 'one bad line among good', body: `${ok}\nnot json\n${ok}\n`, status: 200, json: { accepted: 2, rejected: 1 }, error: /^line 2: invalid JSON/ },
    { what: 'missing start_time', body: '{"method":"GET"}', status: 200, json: { accepted: 0, rejected: 1 }, error: /^line 1: start_time: missing/ },
    { what: 'wrong type', body: `${ok}\n{"start_time":"${new Date().toISOString()}","response_code":"abc"}`, status: 200, json: { accepted: 1, rejected: 1 }, error: /^line 2: response_code/ },
    { what: 'invalid UTF-8', body: Buffer.concat([Buffer.from('{"start_time":"2026-01-01T00:00:00Z","path":"'), Buffer.from([0xff]), Buffer.from('"}\n' + ok)]), status: 200, json: { accepted: 1, rejected: 1 }, error: /^line 1: invalid JSON/ },
    { what: 'oversize line', body: `{"start_time":"2026-01-01T00:00:00Z","pad":"${'x'.repeat(70000)}"}\n${ok}`, gzip: true, status: 200, json: { accepted: 1, rejected: 1 }, error: /^line 1: line of \d+ bytes, max 65536/ },
    { what: 'array element not an object', body: `[${ok},7]`, ct: 'application/json', status: 200, json: { accepted: 1, rejected: 1 }, error: /^record 2: not a JSON object/ },
    { what: 'empty body', body: '', status: 200, json: { accepted: 0, rejected: 0 } },
  ];
  for (const c of cases) {
    const headers = { 'content-type': c.ct ?? NDJSON, ...(c.headers ?? {}) };
    if (c.gzip) headers['content-encoding'] = 'gzip';
    const res = await request(`${d.otlpUrl}/api/v1/accesslogs`, { method: 'POST', headers, body: c.gzip ? gzipSync(c.body) : c.body });
    const text = res.body.toString('utf8');
    assert.equal(res.status, c.status, `${c.what}: status ${res.status}: ${text}`);
    if (c.text) assert.match(text, c.text, c.what);
    if (c.json) {
      const j = JSON.parse(text);
      assert.equal(j.accepted, c.json.accepted, `${c.what}: ${text}`);
      assert.equal(j.rejected, c.json.rejected, `${c.what}: ${text}`);
      if (c.error) assert.match(j.error, c.error, c.what);
      else assert.equal(j.error, null, c.what);
    }
  }
  const get = await request(`${d.otlpUrl}/api/v1/accesslogs`, { method: 'PUT', headers: { 'content-type': NDJSON }, body: ok });
  assert.equal(get.status, 405);
  /* Still serving; the refusals are counted. */
  const metrics = (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');
  assert.ok(sample(metrics, 'meshscope_spans_rejected_total', ['protocol="accesslog_json"', 'reason="invalid_span"']) >= 6);
  assert.ok(sample(metrics, 'meshscope_ingest_requests_rejected_total', ['protocol="accesslog_json"', 'reason="decode_error"']) >= 3);
  const all = await getJson(`${d.httpUrl}/api/logs?limit=100`);
  assert.equal(all.total, 6);
  await d.stop();
});

test('--ack=committed: lines acknowledged with 200 survive kill -9', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'meshscope-alog-'));
  const db = path.join(dir, 'meshscope.db');
  try {
    const traceId = randomBytes(16).toString('hex');
    const lines = [];
    let d = await startDaemon({ dir, db, logLevel: 'info', args: ['--ack', 'committed', '--flush-interval', '50ms'] });
    for (let batch = 0; batch < 5; batch++) {
      const body = [0, 1, 2, 3].map((i) => JSON.stringify(record({ traceId, spanId: randomBytes(8).toString('hex'), i: batch * 4 + i })));
      const r = await postLogs(d.otlpUrl, body.join('\n'), { gzip: batch % 2 === 1 });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.accepted, 4);
      lines.push(...body);
    }
    process.kill(d.pid, 'SIGKILL'); /* right after the last 200 */
    await d.cleanup();
    d = await startDaemon({ dir, db, logLevel: 'info' });
    daemons.push(d);
    const got = await poll('acknowledged lines after kill -9', async () => {
      const j = await getJson(`${d.httpUrl}/api/logs?traceID=${traceId}&limit=1000`);
      return j.total === lines.length ? j : null;
    });
    assert.deepEqual(got.data.map((x) => x.line).sort(), [...lines].sort());
    await d.stop();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('/api/logs filters by requestId, status and duration; bad values are 400s', async () => {
  const d = await startDaemon({ logLevel: 'info' });
  daemons.push(d);
  const run = randomBytes(4).toString('hex');
  /* 8 records: codes 200/201/404/500/503 and durations 1..400 ms; plus one nginx line whose
   * upstream_name is its destination_service. */
  const specs = [
    { code: 200, ms: 1 },
    { code: 201, ms: 50 },
    { code: 503, ms: 99 },
    { code: 503, ms: 100 },
    { code: 500, ms: 250 },
    { code: 404, ms: 400 },
    { code: 200, ms: 100 },
    { code: 503, ms: 7 },
  ];
  const recs = specs.map((s, i) => ({
    ...record({ traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), code: s.code, ms: s.ms, i }),
    request_id: `${run}-req-${i}`,
  }));
  const nginx = {
    msec: (Date.now() / 1000).toFixed(3),
    request_time: '0.020',
    method: 'GET',
    path: '/api/items',
    response_code: '502',
    upstream_name: 'payments',
    request_id: `${run}-nginx`,
  };
  const lines = [...recs, nginx].map((x) => JSON.stringify(x));
  const r = await postLogs(d.otlpUrl, lines.join('\n') + '\n');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { accepted: 9, rejected: 0, error: null });

  /* Each query: the set of request ids it must return, exactly. */
  const ids = (pred) => recs.filter((x, i) => pred(specs[i])).map((x) => x.request_id);
  const cases = [
    { qs: `requestId=${run}-req-3`, want: [`${run}-req-3`] },
    { qs: `requestId=${run}-req-33`, want: [] },
    { qs: `requestId=${run}-nginx`, want: [`${run}-nginx`] },
    { qs: `requestId=${run}-req-3&status=200`, want: [] },
    { qs: 'status=503', want: ids((s) => s.code === 503) },
    { qs: 'status=5xx', want: [...ids((s) => s.code >= 500), `${run}-nginx`] },
    { qs: 'status=2xx', want: ids((s) => s.code < 300) },
    { qs: 'status=404', want: ids((s) => s.code === 404) },
    { qs: 'minDuration=100ms', want: ids((s) => s.ms >= 100) },
    { qs: 'minDuration=0.1s&maxDuration=250ms', want: ids((s) => s.ms >= 100 && s.ms <= 250) },
    { qs: 'maxDuration=20ms', want: [...ids((s) => s.ms <= 20), `${run}-nginx`] }, /* nginx: 20 ms */
    { qs: 'maxDuration=19ms', want: ids((s) => s.ms <= 19) },
    { qs: 'minDuration=100ms&status=503', want: ids((s) => s.ms >= 100 && s.code === 503) },
    { qs: 'minDuration=1ms&limit=2', count: 2 },
  ];
  for (const c of cases) {
    const j = await getJson(`${d.httpUrl}/api/logs?${c.qs}`);
    if (c.count !== undefined) {
      assert.equal(j.total, c.count, c.qs);
      continue;
    }
    assert.deepEqual(j.data.map((x) => x.request_id).sort(), [...c.want].sort(), `${c.qs}: ${JSON.stringify(j.data.map((x) => x.request_id))}`);
    assert.equal(j.total, c.want.length, c.qs);
  }
  /* The nginx record's upstream, and the exact line back by request id. */
  const ng = await getJson(`${d.httpUrl}/api/logs?requestId=${run}-nginx`);
  assert.equal(ng.data[0].destination_service, 'payments');
  assert.equal(ng.data[0].line, lines[8]);
  assert.equal(ng.data[0].response_code, 502);
  assert.equal(ng.data[0].duration_ms, 20);
  const istio = await getJson(`${d.httpUrl}/api/logs?requestId=${run}-req-0`);
  /* An outbound Istio record: the service its upstream_cluster names. */
  assert.equal(istio.data[0].destination_service, 'reviews');

  const bad = [
    ['status=600', 'status'],
    ['status=5x', 'status'],
    ['status=abc', 'status'],
    ['minDuration=100', 'minDuration'],
    ['minDuration=-1s', 'minDuration'],
    ['maxDuration=soon', 'maxDuration'],
    ['minDuration=2s&maxDuration=1s', 'maxDuration'],
  ];
  for (const [qs, param] of bad) {
    const j = await getJson(`${d.httpUrl}/api/logs?${qs}`, { expectStatus: 400 });
    assert.equal(j.errors[0].code, 400, qs);
    assert.ok(j.errors[0].msg.includes(`'${param}'`), `${qs}: ${j.errors[0].msg}`);
  }
  await d.stop();
});
