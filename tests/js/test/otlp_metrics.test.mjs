/*
 * otlp_metrics.test.mjs: OTLP metrics from the real OpenTelemetry JS SDK (sdk-metrics and its
 * OTLP/HTTP metric exporters, protobuf and JSON) re-exposed on /metrics.
 *
 * Two services: "shop/checkout" exports cumulative temporality over protobuf, "payments" delta
 * temporality over JSON (gzip). Each records a Counter, an UpDownCounter, a Histogram (explicit
 * buckets) and an ObservableGauge, in two collection cycles. /metrics must show the exact values
 * under the OpenTelemetry-to-Prometheus names (unit suffixes, _total, job/instance,
 * otel_scope_*, target_info), pass promtool and the strict OpenMetrics parser, and a real
 * Prometheus scraping meshscope must return the sent values through PromQL. Series expire after
 * --metrics-expiry; malformed bodies get 400 and the daemon stays healthy.
 *
 * Needs prometheus, promtool and /usr/bin/python3 with prometheus_client (.ci/deps installs them).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ExportResultCode } from '@opentelemetry/core';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { AggregationTemporalityPreference, OTLPMetricExporter as JsonExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtoExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { startDaemon, withStderr } from '../lib/daemon.mjs';
import { poll, request } from '../lib/http.mjs';
import { startPrometheus } from '../lib/prometheus.mjs';

const PYTHON = '/usr/bin/python3'; /* Debian's, where python3-prometheus-client lives */

/* Wraps an exporter to keep every export result: the reader swallows failures otherwise. */
class Recording {
  constructor(inner) {
    this.inner = inner;
    this.results = [];
  }
  export(metrics, cb) {
    this.inner.export(metrics, (r) => {
      this.results.push(r);
      cb(r);
    });
  }
  forceFlush() {
    return this.inner.forceFlush();
  }
  shutdown() {
    return this.inner.shutdown();
  }
  selectAggregationTemporality(k) {
    return this.inner.selectAggregationTemporality(k);
  }
  selectAggregation(k) {
    return this.inner.selectAggregation?.(k);
  }
  assertAllOk(what) {
    assert.ok(this.results.length > 0, `${what}: nothing exported`);
    for (const r of this.results) assert.equal(r.code, ExportResultCode.SUCCESS, `${what}: ${r.error?.stack ?? r.error}`);
  }
}

/** One service's SDK: provider, its instruments, and a flush that runs one export. */
function service({ otlpUrl, attrs, format, temporality }) {
  const config = {
    url: `${otlpUrl}/v1/metrics`,
    temporalityPreference: temporality,
    compression: format === 'json' ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE,
    timeoutMillis: 10_000,
  };
  const exporter = new Recording(format === 'json' ? new JsonExporter(config) : new ProtoExporter(config));
  /* A long interval: the test triggers each collection itself (forceFlush). */
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const provider = new MeterProvider({
    resource: defaultResource().merge(resourceFromAttributes(attrs)),
    readers: [reader],
  });
  const meter = provider.getMeter('shop.app', '1.0.0');
  let gaugeValue = 0.42;
  const inst = {
    requests: meter.createCounter('http.server.requests', { unit: '{request}', description: 'HTTP requests served' }),
    queue: meter.createUpDownCounter('queue.items', { unit: '{item}', description: 'Items waiting' }),
    duration: meter.createHistogram('http.server.duration', {
      unit: 's',
      description: 'HTTP request duration',
      advice: { explicitBucketBoundaries: [0.1, 0.5, 1] },
    }),
    cpu: meter.createObservableGauge('cpu.utilization', { unit: '1', description: 'CPU busy share' }),
  };
  inst.cpu.addCallback((r) => r.observe(gaugeValue, { cpu: '0' }));
  return {
    exporter,
    inst,
    setGauge: (v) => (gaugeValue = v),
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}

/* What both services record, in two collection cycles. */
async function record(s) {
  s.inst.requests.add(3, { route: '/a' });
  s.inst.requests.add(2, { route: '/b' });
  s.inst.queue.add(5);
  for (const v of [0.05, 0.3, 0.3, 2]) s.inst.duration.record(v, { route: '/a' });
  await s.flush();
  s.inst.requests.add(4, { route: '/a' });
  s.inst.queue.add(-2);
  s.inst.duration.record(0.7, { route: '/a' });
  s.setGauge(0.25);
  await s.flush();
}

let d;
let prom;
let tmp;
let checkout;
let payments;

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'meshscope-otlpm-'));
  d = await startDaemon({ logLevel: 'info' });
  checkout = service({
    otlpUrl: d.otlpUrl,
    attrs: { 'service.name': 'checkout', 'service.namespace': 'shop', 'service.instance.id': 'co-1', 'deployment.environment': 'test' },
    format: 'proto',
    temporality: AggregationTemporalityPreference.CUMULATIVE,
  });
  payments = service({
    otlpUrl: d.otlpUrl,
    attrs: { 'service.name': 'payments', 'service.instance.id': 'pay-1' },
    format: 'json',
    temporality: AggregationTemporalityPreference.DELTA,
  });
  await record(checkout);
  await record(payments);
  checkout.exporter.assertAllOk('checkout (protobuf, cumulative)');
  payments.exporter.assertAllOk('payments (JSON, delta)');
});

after(async () => {
  await checkout?.shutdown();
  await payments?.shutdown();
  await prom?.stop();
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

async function metricsText(headers = {}) {
  const res = await request(`${d.httpUrl}/metrics`, { headers });
  assert.equal(res.status, 200);
  return res.body.toString('utf8');
}

/* The sample lines of a family, as a map from their label text to the value. */
function samples(text, name) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/);
    if (m && m[1] === name) out[m[2] ?? ''] = Number(m[3]);
  }
  return out;
}

const scope = 'otel_scope_name="shop.app",otel_scope_version="1.0.0"';
const CO = `instance="co-1",job="shop/checkout",${scope}`;
const PAY = `instance="pay-1",job="payments",${scope}`;

it('counters, up-down counters, histograms and gauges carry the sent values (cumulative and delta)', async () => {
  const text = await metricsText();
  for (const [who, labels] of [['checkout', CO], ['payments', PAY]]) {
    const req = samples(text, 'http_server_requests_total');
    assert.equal(req[`{${labels},route="/a"}`], 7, `${who} /a\n${JSON.stringify(req)}`);
    assert.equal(req[`{${labels},route="/b"}`], 2, `${who} /b`);
    assert.equal(samples(text, 'queue_items')[`{${labels}}`], 3, `${who} queue`);
    assert.equal(samples(text, 'cpu_utilization_ratio')[`{cpu="0",${labels}}`], 0.25, `${who} gauge`);
    const b = samples(text, 'http_server_duration_seconds_bucket');
    const want = { 0.1: 1, 0.5: 3, 1: 4, '+Inf': 5 };
    for (const [le, n] of Object.entries(want)) assert.equal(b[`{${labels},route="/a",le="${le}"}`], n, `${who} le=${le}\n${JSON.stringify(b)}`);
    assert.equal(samples(text, 'http_server_duration_seconds_count')[`{${labels},route="/a"}`], 5);
    const sum = samples(text, 'http_server_duration_seconds_sum')[`{${labels},route="/a"}`];
    assert.ok(Math.abs(sum - 3.35) < 1e-9, `${who} sum ${sum}`);
  }
  /* One HELP and one TYPE per family, whatever the number of senders. */
  for (const [fam, type] of [['http_server_requests_total', 'counter'], ['queue_items', 'gauge'], ['http_server_duration_seconds', 'histogram'], ['cpu_utilization_ratio', 'gauge']]) {
    assert.equal(text.split('\n').filter((l) => l === `# TYPE ${fam} ${type}`).length, 1, fam);
    assert.equal(text.split('\n').filter((l) => l.startsWith(`# HELP ${fam} `)).length, 1, fam);
  }
  assert.match(text, /\n# HELP http_server_requests_total HTTP requests served\n/);
});

it('resource attributes: job/instance on every series, the rest on one target_info per resource', async () => {
  const text = await metricsText();
  const ti = text.split('\n').filter((l) => l.startsWith('target_info{'));
  const co = ti.filter((l) => l.includes('job="shop/checkout"'));
  assert.equal(co.length, 1, ti.join('\n'));
  assert.match(co[0], /deployment_environment="test"/);
  assert.match(co[0], /instance="co-1"/);
  assert.match(co[0], /telemetry_sdk_language="nodejs"/);
  assert.match(co[0], / 1$/);
  assert.doesNotMatch(co[0], /service_name=/);
  assert.equal(ti.filter((l) => l.includes('job="payments"')).length, 1);
  assert.match(text, /\nmeshscope_ingest_requests_total\{protocol="otlp_metrics_protobuf"\} [1-9]/);
  assert.match(text, /\nmeshscope_ingest_requests_total\{protocol="otlp_metrics_json"\} [1-9]/);
});

it('text passes promtool (only the documented Istio base-unit lint) and OpenMetrics the strict parser', async () => {
  const text = await metricsText();
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  const findings = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter(Boolean);
  const other = findings.filter((l) => !/^istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"$/.test(l));
  assert.deepEqual(other, [], `promtool findings:\n${findings.join('\n')}`);

  const om = await metricsText({ accept: 'application/openmetrics-text;version=1.0.0' });
  assert.match(om, /\n# TYPE http_server_requests counter\n/);
  assert.ok(om.endsWith('# EOF\n'));
  const py = spawnSync(PYTHON, ['-c', [
    'import sys',
    'from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse',
    'fams = {f.name: f for f in parse(sys.stdin.read())}',
    'print(fams["http_server_requests"].type, fams["http_server_duration_seconds"].type, len(fams["target_info"].samples))',
  ].join('\n')], { input: om, encoding: 'utf8' });
  assert.equal(py.status, 0, `strict OpenMetrics parse failed:\n${py.stderr}`);
  assert.equal(py.stdout.trim(), 'counter histogram 2');
});

it('a real Prometheus scrapes the series and PromQL returns the sent values', async () => {
  prom = await startPrometheus({ dir: tmp, target: new URL(d.httpUrl).host });
  /* The scrape job's own job/instance win; ours become exported_job / exported_instance. */
  const one = (r) => (r.length === 1 ? Number(r[0].value[1]) : NaN);
  await prom.until('http_server_requests_total{exported_job="shop/checkout",route="/a"}', (r) => one(r) === 7, 'checkout counter scraped');
  assert.equal(one(await prom.query('sum(http_server_requests_total{exported_job="payments"})')), 9);
  assert.equal(one(await prom.query('queue_items{exported_instance="pay-1"}')), 3);
  assert.equal(one(await prom.query('http_server_duration_seconds_bucket{exported_job="shop/checkout",le="0.5"}')), 3);
  const p50 = one(await prom.query('histogram_quantile(0.5, sum by (le) (http_server_duration_seconds_bucket{exported_job="payments"}))'));
  assert.ok(p50 > 0.1 && p50 <= 0.5, `p50 ${p50}`);
  assert.equal(one(await prom.query('count(target_info)')), 2);
});

it('partial success for exponential histograms; malformed bodies get 400; the daemon stays healthy', async () => {
  const post = (body, type, extra = {}) => request(`${d.otlpUrl}/v1/metrics`, { method: 'POST', headers: { 'content-type': type, ...extra }, body });
  const exp = JSON.stringify({ resourceMetrics: [{ scopeMetrics: [{ metrics: [
    { name: 'e', exponentialHistogram: { aggregationTemporality: 2, dataPoints: [{ count: '1' }] } },
    { name: 'kept.gauge', gauge: { dataPoints: [{ asDouble: 1.5 }] } },
  ] }] }] });
  let res = await post(exp, 'application/json');
  assert.equal(res.status, 200);
  const ps = JSON.parse(res.body.toString('utf8')).partialSuccess;
  assert.equal(ps.rejectedDataPoints, '1');
  assert.match(ps.errorMessage, /exponential histograms are not supported/);
  assert.equal(samples(await metricsText(), 'kept_gauge')[''], 1.5);

  res = await post('{"resourceMetrics": [', 'application/json');
  assert.equal(res.status, 400);
  assert.match(JSON.parse(res.body.toString('utf8')).message, /invalid JSON/);
  res = await post(JSON.stringify({ resourceMetrics: [{ scopeMetrics: [{ metrics: [{ name: 'x', sum: { aggregationTemporality: 2, dataPoints: [{ asInt: 'ten' }] } }] }] }] }), 'application/json');
  assert.equal(res.status, 400);
  assert.match(JSON.parse(res.body.toString('utf8')).message, /asInt: expected a 64-bit integer/);
  res = await post(Buffer.from([0x0a, 0x05, 0x01]), 'application/x-protobuf');
  assert.equal(res.status, 400);
  res = await post('{}', 'text/plain');
  assert.equal(res.status, 415);
  res = await post(Buffer.from('not gzip'), 'application/json', { 'content-encoding': 'gzip' });
  assert.equal(res.status, 400);
  res = await request(`${d.otlpUrl}/v1/metrics`);
  assert.equal(res.status, 405);
  /* More than 100,000 data points in one request: 413, nothing applied. */
  const many = `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"too.many","gauge":{"dataPoints":[${'{"asInt":1},'.repeat(100_000)}{"asInt":1}]}}]}]}]}`;
  res = await post(many, 'application/json');
  assert.equal(res.status, 413);
  assert.match(JSON.parse(res.body.toString('utf8')).message, /more than 100000 data points/);
  assert.equal(Object.keys(samples(await metricsText(), 'too_many')).length, 0);
  /* Nothing of the refused requests reached the store. */
  assert.equal(Object.keys(samples(await metricsText(), 'x_total')).length, 0);
  assert.equal((await request(`${d.httpUrl}/healthz`)).status, 200);
});

test('series not updated for --metrics-expiry disappear', async () => {
  const short = await startDaemon({ args: ['--metrics-expiry', '2s', '--max-body', '4KiB'], logLevel: 'info' });
  try {
    await withStderr(() => short, async () => {
      const s = service({
        otlpUrl: short.otlpUrl,
        attrs: { 'service.name': 'brief' },
        format: 'proto',
        temporality: AggregationTemporalityPreference.CUMULATIVE,
      });
      s.inst.requests.add(1, { route: '/x' });
      await s.flush();
      s.exporter.assertAllOk('brief');
      const text = (await request(`${short.httpUrl}/metrics`)).body.toString('utf8');
      assert.equal(samples(text, 'http_server_requests_total')[`{job="brief",${scope},route="/x"}`], 1);
      /* --max-body holds for metrics too. */
      const big = await request(`${short.otlpUrl}/v1/metrics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: ' '.repeat(5000) });
      assert.equal(big.status, 413);
      await poll('series expired', async () => {
        const t = (await request(`${short.httpUrl}/metrics`)).body.toString('utf8');
        return !t.includes('http_server_requests_total{') && !t.includes('target_info{') ? t : undefined;
      }, { timeoutMs: 15_000, intervalMs: 250, attempts: 60 });
      const t = (await request(`${short.httpUrl}/metrics`)).body.toString('utf8');
      assert.match(t, /\nmeshscope_otlp_metric_series 0\n/);
      await s.shutdown().catch(() => {});
    });
    await short.stop();
  } finally {
    await short.cleanup();
  }
});

test('POST /v1/metrics needs the ingest scope when tokens are configured', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'meshscope-otlpm-auth-'));
  const ingest = randomBytes(24).toString('hex');
  const read = randomBytes(24).toString('hex');
  await writeFile(path.join(dir, 'tokens'), `ingest=${ingest}\nread=${read}\n`);
  const a = await startDaemon({ args: ['--auth-token-file', path.join(dir, 'tokens')], logLevel: 'info' });
  try {
    await withStderr(() => a, async () => {
      const body = JSON.stringify({ resourceMetrics: [{ scopeMetrics: [{ metrics: [{ name: 'authed', gauge: { dataPoints: [{ asInt: '5' }] } }] }] }] });
      const post = (token) => request(`${a.otlpUrl}/v1/metrics`, {
        method: 'POST', body, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      });
      assert.equal((await post(null)).status, 401);
      assert.equal((await post(read)).status, 401);
      assert.equal((await post(ingest)).status, 200);
      const m = await request(`${a.httpUrl}/metrics`, { headers: { authorization: `Bearer ${read}` } });
      assert.equal(samples(m.body.toString('utf8'), 'authed')[''], 5);
    });
    await a.stop();
  } finally {
    await a.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
});
