/*
 * red_prometheus.test.mjs: the RED metrics as a real Prometheus sees them.
 *
 * Istio's Bookinfo (productpage -> details, productpage -> reviews -> ratings), recorded with the
 * OpenTelemetry JS SDK (one provider per service, SERVER and CLIENT spans, k8s resources) and
 * exported over OTLP/HTTP; every 5th request fails with 503 at reviews, every 4th ratings call
 * takes 1.5 s. A real Prometheus (Debian's package, loopback, exemplar storage on) scrapes
 * meshscope every second; PromQL must give back exactly what was sent. The same scrapes must pass
 * promtool (text) and the strict OpenMetrics parser of python3-prometheus-client; the series
 * limit flag must fold new label sets into otel_metric_overflow="true".
 *
 * Needs prometheus, promtool and /usr/bin/python3 with prometheus_client (.ci/deps installs them).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { freePorts, sleep, startDaemon, withStderr } from '../lib/daemon.mjs';
import { poll, request } from '../lib/http.mjs';
import { makeProvider } from '../lib/sdk.mjs';

const REQUESTS = 20; /* productpage requests */
const FAIL_EVERY = 5; /* reviews answers 503 to every 5th */
const SLOW_EVERY = 4; /* every 4th ratings call takes 1.5 s */
const PROM_READY_MS = 30_000;
const PYTHON = '/usr/bin/python3'; /* Debian's, where python3-prometheus-client lives */

let d; /* meshscope */
let prom; /* {proc, url, dir, log()} */
let tmp;

async function startPrometheus(target) {
  const [port] = await freePorts(1);
  const dir = path.join(tmp, 'prom');
  const config = path.join(tmp, 'prometheus.yml');
  await writeFile(
    config,
    `global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: meshscope\n    static_configs:\n      - targets: ['${target}']\n`,
  );
  const proc = spawn(
    'prometheus',
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${dir}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--enable-feature=exemplar-storage',
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (s) => (log = (log + s).slice(-16_000)));
  let exited = null;
  proc.on('exit', (code, signal) => (exited = { code, signal }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + PROM_READY_MS;
  for (;;) {
    if (exited) throw new Error(`prometheus exited (${JSON.stringify(exited)}):\n${log}`);
    try {
      if ((await request(`${url}/-/ready`, { timeoutMs: 1000 })).status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`prometheus not ready within ${PROM_READY_MS} ms:\n${log}`);
    await sleep(200);
  }
  return { proc, url, log: () => log, exited: () => exited };
}

async function promQuery(q) {
  const res = await request(`${prom.url}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = JSON.parse(res.body.toString('utf8'));
  assert.equal(body.status, 'success', `query ${q}: ${res.body}`);
  return body.data.result;
}

/* Polls a PromQL query until check(result) holds (scrapes land once a second). */
async function promUntil(q, check, what) {
  let last;
  try {
    return await poll(
      what,
      async () => {
        last = await promQuery(q);
        return check(last) ? last : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500, attempts: 100 },
    );
  } catch (e) {
    e.message += `\nlast result of ${q}: ${JSON.stringify(last)}`;
    throw e;
  }
}

const scalar = (r) => (r.length === 1 ? Number(r[0].value[1]) : NaN);

/* ----- Bookinfo traffic ----------------------------------------------------------------------- */

const SERVICES = ['productpage', 'details', 'reviews', 'ratings'];
const providers = {};

function resourceOf(svc) {
  return {
    'service.name': svc,
    'service.version': 'v1',
    'k8s.namespace.name': 'bookinfo',
    'k8s.deployment.name': `${svc}-v1`,
  };
}

const msAgo = (ms) => Date.now() - ms;

/* One productpage request at time t0 (ms since epoch). Returns the trace id. */
function bookinfoRequest(i, t0) {
  const tr = (svc) => providers[svc].provider.getTracer('bookinfo');
  const fail = i % FAIL_EVERY === 0;
  const slow = i % SLOW_EVERY === 0;
  const ratingsMs = slow ? 1500 : 20;

  const root = tr('productpage').startSpan('GET /productpage', {
    kind: SpanKind.SERVER,
    startTime: t0,
    attributes: { 'http.request.method': 'GET', 'http.route': '/productpage', 'server.address': 'productpage' },
  }, ROOT_CONTEXT);
  const rootCtx = trace.setSpan(ROOT_CONTEXT, root);

  /* productpage -> details */
  const dc = tr('productpage').startSpan('GET', {
    kind: SpanKind.CLIENT, startTime: t0 + 1,
    attributes: { 'http.request.method': 'GET', 'server.address': 'details', 'server.port': 9080, 'url.full': `http://details:9080/details/${i}` },
  }, rootCtx);
  const ds = tr('details').startSpan('GET /details/{id}', {
    kind: SpanKind.SERVER, startTime: t0 + 2,
    attributes: { 'http.request.method': 'GET', 'http.response.status_code': 200 },
  }, trace.setSpan(ROOT_CONTEXT, dc));
  ds.end(t0 + 12);
  dc.setAttribute('http.response.status_code', 200);
  dc.end(t0 + 13);

  /* productpage -> reviews -> ratings */
  const rc = tr('productpage').startSpan('GET', {
    kind: SpanKind.CLIENT, startTime: t0 + 14,
    attributes: { 'http.request.method': 'GET', 'server.address': 'reviews', 'server.port': 9080 },
  }, rootCtx);
  const rs = tr('reviews').startSpan('GET /reviews/{id}', {
    kind: SpanKind.SERVER, startTime: t0 + 15,
    attributes: { 'http.request.method': 'GET' },
  }, trace.setSpan(ROOT_CONTEXT, rc));
  const tc = tr('reviews').startSpan('GET', {
    kind: SpanKind.CLIENT, startTime: t0 + 16,
    attributes: { 'http.request.method': 'GET', 'server.address': 'ratings', 'server.port': 9080 },
  }, trace.setSpan(ROOT_CONTEXT, rs));
  const ts = tr('ratings').startSpan('GET /ratings/{id}', {
    kind: SpanKind.SERVER, startTime: t0 + 17,
    attributes: { 'http.request.method': 'GET', 'http.response.status_code': 200 },
  }, trace.setSpan(ROOT_CONTEXT, tc));
  ts.end(t0 + 17 + ratingsMs);
  tc.setAttribute('http.response.status_code', 200);
  tc.end(t0 + 18 + ratingsMs);
  const code = fail ? 503 : 200;
  rs.setAttribute('http.response.status_code', code);
  if (fail) rs.setStatus({ code: SpanStatusCode.ERROR });
  rs.end(t0 + 20 + ratingsMs);
  rc.setAttribute('http.response.status_code', code);
  if (fail) rc.setStatus({ code: SpanStatusCode.ERROR });
  rc.end(t0 + 21 + ratingsMs);

  root.setAttribute('http.response.status_code', fail ? 500 : 200);
  root.end(t0 + 25 + ratingsMs);
  return root.spanContext().traceId;
}

const traceIds = [];

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'meshscope-red-'));
  d = await startDaemon({ logLevel: 'info' });
  prom = await startPrometheus(new URL(d.httpUrl).host);
  for (const svc of SERVICES) providers[svc] = makeProvider({ otlpUrl: d.otlpUrl, resourceAttrs: resourceOf(svc) });
  const start = msAgo(30_000);
  for (let i = 0; i < REQUESTS; i++) traceIds.push(bookinfoRequest(i, start + i * 1000));
  /* Servers first, then the callers: the halves meet in either order. */
  for (const svc of ['ratings', 'details', 'reviews', 'productpage']) await providers[svc].flush(svc);
});

after(async () => {
  for (const p of Object.values(providers)) await p.shutdown().catch(() => {});
  if (prom && !prom.exited()) {
    prom.proc.kill('SIGTERM');
    await Promise.race([new Promise((r) => prom.proc.once('exit', r)), sleep(10_000)]);
    if (!prom.exited()) prom.proc.kill('SIGKILL');
  }
  if (d) {
    try {
      await d.stop();
    } finally {
      await d.cleanup();
    }
  }
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const it = (name, fn) => test(name, () => withStderr(() => d, fn));

const failures = Array.from({ length: REQUESTS }, (_, i) => i).filter((i) => i % FAIL_EVERY === 0).length;
const slows = Array.from({ length: REQUESTS }, (_, i) => i).filter((i) => i % SLOW_EVERY === 0).length;

it('Istio request counts per reporter, workload and response code', async () => {
  const dest = 'istio_requests_total{reporter="destination"';
  await promUntil(`sum(${dest}})`, (r) => scalar(r) === 4 * REQUESTS, 'all destination samples scraped');
  assert.equal(scalar(await promQuery(`sum(istio_requests_total{reporter="source"})`)), 3 * REQUESTS);
  const r503 = await promQuery(`sum(${dest},destination_canonical_service="reviews",response_code="503"})`);
  assert.equal(scalar(r503), failures);
  const src503 = await promQuery(`sum(istio_requests_total{reporter="source",source_workload="productpage-v1",destination_service="reviews",response_code="503"})`);
  assert.equal(scalar(src503), failures);
  /* Grouped the way Kiali's graph queries group. */
  const by = await promQuery(`sum by (source_workload, destination_service) (${dest}})`);
  const got = Object.fromEntries(by.map((s) => [`${s.metric.source_workload}->${s.metric.destination_service}`, Number(s.value[1])]));
  assert.deepEqual(got, {
    'unknown->productpage': REQUESTS,
    'productpage-v1->details': REQUESTS,
    'productpage-v1->reviews': REQUESTS,
    'reviews-v1->ratings': REQUESTS,
  });
  /* rate() needs two scrapes of each series in its window. */
  const rate = await promUntil(`sum by (source_workload, destination_service) (rate(${dest}}[1m]))`, (r) => r.length === 4, 'rate over two scrapes');
  for (const s of rate) assert.ok(Number(s.value[1]) >= 0, JSON.stringify(s));
  const ns = await promQuery(`count by (destination_workload_namespace, destination_canonical_revision, source_cluster) (${dest}})`);
  assert.deepEqual(ns.map((s) => s.metric), [{ destination_workload_namespace: 'bookinfo', destination_canonical_revision: 'v1', source_cluster: 'unknown' }]);
});

it('latency histograms: Istio ms buckets and service-graph quantiles match the slow calls', async () => {
  const q = 'histogram_quantile(0.99, sum by (le, server) (traces_service_graph_request_server_seconds_bucket))';
  const res = await promUntil(q, (r) => r.some((s) => s.metric.server === 'ratings'), 'service-graph histogram scraped');
  const ratings = Number(res.find((s) => s.metric.server === 'ratings').value[1]);
  assert.ok(ratings > 0.8 && ratings <= 1.6, `p99 of ratings ${ratings}: ${slows} of ${REQUESTS} calls took 1.5 s`);
  const details = Number(res.find((s) => s.metric.server === 'details').value[1]);
  assert.ok(details <= 0.1, `p99 of details ${details}`);
  /* The rate() form of the issue's query answers for the same servers. */
  await promUntil('histogram_quantile(0.99, sum by (le, server) (rate(traces_service_graph_request_server_seconds_bucket[1m])))',
    (r) => r.some((s) => s.metric.server === 'ratings'), 'rate() form of the quantile');
  /* 1.5 s lands in Istio's 2500 ms bucket, not in 1000. */
  const le1000 = await promQuery('sum(istio_request_duration_milliseconds_bucket{reporter="destination",destination_canonical_service="ratings",le="1000"})');
  const le2500 = await promQuery('sum(istio_request_duration_milliseconds_bucket{reporter="destination",destination_canonical_service="ratings",le="2500"})');
  assert.equal(scalar(le1000), REQUESTS - slows);
  assert.equal(scalar(le2500), REQUESTS);
});

it('service graph edges, failures and virtual user node', async () => {
  const res = await promUntil('sum by (client, server, connection_type) (traces_service_graph_request_total)', (r) => r.length >= 4, 'edges scraped');
  const got = Object.fromEntries(res.map((s) => [`${s.metric.client}->${s.metric.server}${s.metric.connection_type ? ` (${s.metric.connection_type})` : ''}`, Number(s.value[1])]));
  assert.deepEqual(got, {
    'user->productpage (virtual_node)': REQUESTS,
    'productpage->details': REQUESTS,
    'productpage->reviews': REQUESTS,
    'reviews->ratings': REQUESTS,
  });
  assert.equal(scalar(await promQuery('sum(traces_service_graph_request_failed_total{client="productpage",server="reviews"})')), failures);
  assert.equal(scalar(await promQuery('sum(traces_spanmetrics_calls_total{service="reviews",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR"})')), failures);
});

it('exemplars from Prometheus resolve to traces in meshscope', async () => {
  const end = Math.ceil(Date.now() / 1000) + 60;
  const start = end - 3600;
  let data;
  await poll('exemplars stored', async () => {
    const res = await request(`${prom.url}/api/v1/query_exemplars?query=${encodeURIComponent('traces_service_graph_request_server_seconds_bucket')}&start=${start}&end=${end}`);
    data = JSON.parse(res.body.toString('utf8')).data;
    return data && data.length > 0 && data.some((s) => s.exemplars.length > 0) ? data : undefined;
  }, { timeoutMs: 30_000, intervalMs: 500, attempts: 100 });
  const ids = new Set(data.flatMap((s) => s.exemplars.map((e) => e.labels.trace_id)));
  assert.ok(ids.size > 0);
  for (const id of ids) {
    assert.ok(traceIds.includes(id), `exemplar trace ${id} is not one the test sent`);
    const res = await request(`${d.httpUrl}/api/traces/${id}`);
    assert.equal(res.status, 200, `GET /api/traces/${id}: ${res.status}`);
    const t = JSON.parse(res.body.toString('utf8'));
    assert.equal(t.data[0].traceID, id);
  }
});

it('text format passes promtool except the base-unit lint on Istio names', async () => {
  const res = await request(`${d.httpUrl}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  const text = res.body.toString('utf8');
  assert.match(text, /\nistio_requests_total\{reporter="destination",/);
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  const findings = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter(Boolean);
  const other = findings.filter((l) => !/^istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"$/.test(l));
  assert.deepEqual(other, [], `promtool findings:\n${findings.join('\n')}`);
});

it('OpenMetrics scrape passes the strict parser, with exemplars and # EOF; gzip when asked', async () => {
  const res = await request(`${d.httpUrl}/metrics`, {
    headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5', 'accept-encoding': 'gzip' },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], 'application/openmetrics-text; version=1.0.0; charset=utf-8');
  assert.equal(res.headers['content-encoding'], 'gzip');
  const text = gunzipSync(res.body).toString('utf8');
  assert.ok(text.endsWith('# EOF\n'));
  assert.match(text, /# TYPE istio_requests counter\n/);
  assert.match(text, /_bucket\{[^\n]*\} \d+ # \{trace_id="[0-9a-f]{32}",span_id="[0-9a-f]{16}"\} [0-9.e+-]+ \d+\.\d{3}\n/);
  const py = spawnSync(PYTHON, ['-c', [
    'import sys',
    'from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse',
    'fams = list(parse(sys.stdin.read()))',
    'ex = sum(1 for f in fams for s in f.samples if s.exemplar)',
    'print(len(fams), ex)',
  ].join('\n')], { input: text, encoding: 'utf8' });
  assert.equal(py.status, 0, `strict OpenMetrics parse failed:\n${py.stderr}`);
  const [families, exemplars] = py.stdout.trim().split(' ').map(Number);
  assert.ok(families > 20 && exemplars > 0, py.stdout);
});

test('series limit folds new label sets into otel_metric_overflow="true"', async () => {
  const small = await startDaemon({ args: ['--metrics-series-limit', '3'], logLevel: 'info' });
  try {
    await withStderr(() => small, async () => {
      const p = makeProvider({ otlpUrl: small.otlpUrl, resourceAttrs: { 'service.name': 'overflow-svc' } });
      const tr = p.provider.getTracer('t');
      for (let i = 0; i < 10; i++) tr.startSpan(`op-${i}`, { kind: SpanKind.INTERNAL }, ROOT_CONTEXT).end();
      await p.flush('overflow');
      await p.shutdown();
      const text = (await request(`${small.httpUrl}/metrics`)).body.toString('utf8');
      const lines = text.split('\n').filter((l) => l.startsWith('traces_spanmetrics_calls_total{'));
      assert.equal(lines.length, 4, lines.join('\n'));
      assert.ok(lines.includes('traces_spanmetrics_calls_total{otel_metric_overflow="true"} 7'), lines.join('\n'));
      assert.match(text, /\nmeshscope_metrics_overflow_total\{metric="traces_spanmetrics_calls_total"\} 7\n/);
    });
    await small.stop();
  } finally {
    await small.cleanup();
  }
});
