/*
 * otlp_logs.test.mjs: OTLP logs (POST /v1/logs) end to end against the real daemon, sent by the
 * OpenTelemetry JS SDK's own log exporters (@opentelemetry/exporter-logs-otlp-proto and
 * -otlp-http, 0.223.1), protobuf and JSON, gzip on and off.
 *
 * 1. Per (format, compression): application logs (one inside a span's context, one without, one
 *    with a status code but no method) and Envoy-style access-log records (the resource of
 *    Envoy's OpenTelemetry access logger: log_name, zone_name, cluster_name, node_name; the
 *    attributes operators configure with command operators, all strings; the request's trace
 *    context; Istio's default text line as body), one in semantic-convention names, one without
 *    trace context that shares an x-request-id with a span. Every record comes back from
 *    /api/logs field by field; /api/logs?traceId= and /api/traces/{id} ("accessLogs") list the
 *    trace's records; istio_requests_total grows by exactly the access-log records sent.
 * 2. Malformed /v1/logs bodies: 400 with a message (or 200 with partial success for a bad id),
 *    nothing stored, the daemon healthy.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { context, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPLogExporter as HttpJsonLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as ProtoLogExporter } from '@opentelemetry/exporter-logs-otlp-proto';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { startDaemon } from '../lib/daemon.mjs';
import { getJson, request } from '../lib/http.mjs';
import { fBytes, fMessage, pbKeyValue } from '../lib/proto.mjs';
import { makeProvider } from '../lib/sdk.mjs';

const daemons = [];
after(async () => {
  for (const d of daemons) await d.cleanup();
});

function sample(metrics, name, labels = []) {
  const lines = metrics.split('\n').filter((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
  return lines.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

const metricsText = async (d) => (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');

/** A LoggerProvider exporting through the real OTLP log exporter; every export result kept. */
function logProvider(otlpUrl, format, compression, resourceAttrs) {
  const config = {
    url: `${otlpUrl}/v1/logs`,
    compression: compression === 'gzip' ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE,
    timeoutMillis: 10_000,
  };
  const inner = format === 'proto' ? new ProtoLogExporter(config) : new HttpJsonLogExporter(config);
  const results = [];
  const exporter = {
    export: (records, cb) =>
      inner.export(records, (r) => {
        results.push(r);
        cb(r);
      }),
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush(),
  };
  const provider = new LoggerProvider({
    resource: resourceFromAttributes(resourceAttrs),
    /* One request per flush (forceFlush exports and waits; the simple processor's does not wait). */
    processors: [new BatchLogRecordProcessor({ exporter, maxQueueSize: 1024, maxExportBatchSize: 512, scheduledDelayMillis: 600_000 })],
  });
  return {
    logger: provider.getLogger('otlp-logs-test', '1.0.0'),
    async flush(what) {
      await provider.forceFlush();
      assert.ok(results.length > 0, `${what}: nothing exported`);
      for (const r of results) assert.equal(r.code, ExportResultCode.SUCCESS, `${what}: ${r.error?.stack ?? r.error}`);
      return results.length;
    },
    shutdown: () => provider.shutdown(),
  };
}

/* The attributes an operator gives Envoy's OpenTelemetry access logger (command operators: every
 * value a string), named like Istio's JSON access-log fields. */
function envoyAttributes({ code, flags, ms, requestId, inbound, i }) {
  return {
    start_time: new Date().toISOString(),
    method: 'GET',
    path: `/reviews/${i}?q=${i}`,
    protocol: 'HTTP/1.1',
    response_code: String(code),
    response_flags: flags,
    response_code_details: code === 200 ? 'via_upstream' : 'upstream_reset_before_response_started',
    bytes_received: '17',
    bytes_sent: '295',
    duration: String(ms),
    upstream_service_time: String(ms - 1),
    x_forwarded_for: '-',
    user_agent: 'node-test',
    request_id: requestId,
    authority: 'reviews:9080',
    upstream_host: '10.0.0.7:9080',
    upstream_cluster: inbound ? 'inbound|9080||' : 'outbound|9080||reviews.default.svc.cluster.local',
    downstream_remote_address: '10.0.0.5:51234',
    route_name: 'default',
  };
}

const COMBOS = [
  ['proto', 'none'],
  ['proto', 'gzip'],
  ['json', 'none'],
  ['json', 'gzip'],
];

test('OTLP logs from the JS SDK: stored field by field, joined to their trace, only access logs in RED', async () => {
  const d = await startDaemon({ logLevel: 'info' });
  daemons.push(d);
  let accessSent = 0;
  for (const [format, compression] of COMBOS) {
    const what = `${format}/${compression}`;
    const tag = `${format}-${compression}`;
    const app = `app-${tag}`;
    const before = sample(await metricsText(d), 'istio_requests_total');

    /* A real span (trace SDK, OTLP trace exporter) carrying Envoy's x-request-id tag. */
    const requestId = `rid-${randomBytes(6).toString('hex')}`;
    const tp = makeProvider({ otlpUrl: d.otlpUrl, format, compression, resourceAttrs: { 'service.name': app } });
    const span = tp.provider.getTracer('t').startSpan('checkout', { attributes: { 'guid:x-request-id': requestId } });
    const traceId = span.spanContext().traceId;
    const spanId = span.spanContext().spanId;
    const inSpan = trace.setSpan(context.active(), span);

    /* Application logs, from the app's own resource. */
    const appLogs = logProvider(d.otlpUrl, format, compression, { 'service.name': app, 'deployment.environment': 'test' });
    const t0 = Date.now() - 5000;
    appLogs.logger.emit({
      timestamp: t0,
      severityNumber: SeverityNumber.INFO,
      severityText: 'INFO',
      body: `order placed ${tag}`,
      attributes: { 'order.id': 42, tag },
      context: inSpan,
    });
    appLogs.logger.emit({
      timestamp: t0 + 1,
      severityNumber: SeverityNumber.WARN2,
      body: { msg: 'slow', ms: 1500 },
      attributes: { tag },
    });
    appLogs.logger.emit({
      timestamp: t0 + 2,
      severityNumber: SeverityNumber.ERROR,
      body: 'upstream said 500',
      attributes: { 'http.response.status_code': 500, upstream_name: 'ghost', tag },
    });
    await appLogs.flush(`${what} app logs`);

    /* Envoy access-log records: Envoy's node in the resource, Istio's node cluster
     * "<workload>.<namespace>", so the records' service is the app's. */
    const envoy = logProvider(d.otlpUrl, format, compression, {
      log_name: 'otel_envoy_access_log',
      zone_name: 'zone-a',
      cluster_name: `${app}.default`,
      node_name: `sidecar~10.0.0.5~${app}-v1-abc.default~default.svc.cluster.local`,
    });
    const access = [
      { code: 200, flags: '-', ms: 12, inbound: false },
      { code: 200, flags: '-', ms: 14, inbound: false },
      { code: 503, flags: 'UF', ms: 3, inbound: true },
    ].map((r, i) => ({ ...r, i, requestId: `${requestId}-${i}`, time: t0 + 10 + i }));
    for (const r of access) {
      envoy.logger.emit({
        timestamp: r.time,
        body: `[${new Date(r.time).toISOString()}] "GET /reviews/${r.i} HTTP/1.1" ${r.code} ${r.flags}`,
        attributes: envoyAttributes(r),
        context: inSpan,
      });
    }
    /* No trace context, but the span's x-request-id. */
    envoy.logger.emit({
      timestamp: t0 + 20,
      body: 'inbound request',
      attributes: envoyAttributes({ code: 204, flags: '-', ms: 7, requestId, inbound: true, i: 9 }),
    });
    /* Semantic-convention names (typed values), its own service. */
    envoy.logger.emit({
      timestamp: t0 + 21,
      attributes: {
        'service.name': `gw-${tag}`,
        'http.request.method': 'POST',
        'url.path': '/cart',
        'http.response.status_code': 201,
        'upstream_cluster': 'outbound|80||cart.default.svc.cluster.local',
        'user_agent.original': 'semconv-ua',
        'server.address': 'cart',
        'http.request.header.x-request-id': [`${requestId}-s`],
      },
    });
    await envoy.flush(`${what} access logs`);
    span.end();
    const bare = tp.provider.getTracer('t').startSpan('no-logs'); /* a trace with no records */
    bare.end();
    await tp.flush(`${what} span`);
    const accessHere = access.length + 2;
    accessSent += accessHere;

    /* Acknowledged means committed: readable at once. */
    const all = (await getJson(`${d.httpUrl}/api/logs?service=${app}&limit=100`)).data;
    assert.equal(all.length, 3 + access.length + 1, `${what}: ${JSON.stringify(all)}`);
    const byBody = (b) => all.find((x) => x.body === b);

    const a0 = byBody(`order placed ${tag}`);
    assert.ok(a0, `${what}: app log in span`);
    assert.equal(a0.time, t0 * 1000);
    assert.equal(a0.traceID, traceId);
    assert.equal(a0.spanID, spanId);
    assert.equal(a0.severity, 'INFO');
    assert.equal(a0.severity_number, 9);
    assert.equal(a0.line, `order placed ${tag}`);
    assert.deepEqual(a0.attributes, { 'order.id': 42, tag });
    assert.equal(a0.response_code, null);
    assert.equal(a0.direction, 'unknown');

    const a1 = all.find((x) => x.severity === 'WARN2');
    assert.ok(a1, `${what}: app log without span`);
    assert.equal(a1.time, (t0 + 1) * 1000);
    assert.equal(a1.traceID, null);
    assert.equal(a1.spanID, null);
    assert.equal(a1.severity_number, 14);
    assert.deepEqual(JSON.parse(a1.body), { msg: 'slow', ms: 1500 });
    assert.equal(a1.response_code, null);

    const a2 = byBody('upstream said 500');
    assert.equal(a2.severity, 'ERROR');
    assert.equal(a2.response_code, null, 'a status code alone does not make an access log');
    assert.deepEqual(a2.attributes, { 'http.response.status_code': 500, upstream_name: 'ghost', tag });

    for (const r of access) {
      const x = all.find((y) => y.request_id === r.requestId);
      assert.ok(x, `${what}: access record ${r.i}`);
      assert.equal(x.time, r.time * 1000);
      assert.equal(x.service, app);
      assert.equal(x.traceID, traceId);
      assert.equal(x.spanID, spanId);
      assert.equal(x.response_code, r.code);
      assert.equal(x.response_flags, r.flags);
      assert.equal(x.method, 'GET');
      assert.equal(x.path, `/reviews/${r.i}?q=${r.i}`);
      assert.equal(x.authority, 'reviews:9080');
      assert.equal(x.upstream_cluster, r.inbound ? 'inbound|9080||' : 'outbound|9080||reviews.default.svc.cluster.local');
      assert.equal(x.direction, r.inbound ? 'inbound' : 'outbound');
      assert.equal(x.duration_ms, r.ms);
      assert.equal(x.severity, null);
      assert.match(x.line, new RegExp(`^\\[.*\\] "GET /reviews/${r.i} HTTP/1.1" ${r.code}`));
      assert.equal(x.attributes.response_code, String(r.code));
      assert.equal(x.attributes.x_forwarded_for, '-');
    }
    const joined = all.find((y) => y.request_id === requestId);
    assert.ok(joined, `${what}: access record by request id`);
    assert.equal(joined.traceID, null);
    assert.equal(joined.response_code, 204);
    assert.equal(joined.direction, 'inbound');

    const sem = (await getJson(`${d.httpUrl}/api/logs?service=gw-${tag}`)).data;
    assert.equal(sem.length, 1, `${what}: ${JSON.stringify(sem)}`);
    assert.equal(sem[0].method, 'POST');
    assert.equal(sem[0].path, '/cart');
    assert.equal(sem[0].response_code, 201);
    assert.equal(sem[0].authority, 'cart');
    assert.equal(sem[0].request_id, `${requestId}-s`);
    assert.equal(sem[0].direction, 'outbound');

    /* The trace's records by trace id: the app log in the span and the three access records. */
    const byTrace = (await getJson(`${d.httpUrl}/api/logs?traceId=${traceId}`)).data;
    assert.deepEqual(
      byTrace.map((x) => x.time),
      [t0, t0 + 10, t0 + 11, t0 + 12].map((t) => t * 1000),
      `${what}: oldest first`,
    );
    /* The trace view: spans, plus "accessLogs" (trace id, then the request-id join). */
    const tr = await getJson(`${d.httpUrl}/api/traces/${traceId}`);
    assert.equal(tr.data.length, 1);
    assert.equal(tr.data[0].spans.length, 1);
    assert.equal(tr.data[0].spans[0].spanID, spanId);
    assert.deepEqual(
      tr.data[0].accessLogs.map((x) => x.time),
      [t0, t0 + 10, t0 + 11, t0 + 12, t0 + 20].map((t) => t * 1000),
      `${what}: accessLogs ${JSON.stringify(tr.data[0].accessLogs)}`,
    );
    assert.equal(tr.data[0].accessLogs[4].request_id, requestId);
    assert.deepEqual(tr.data[0].accessLogs[1], all.find((y) => y.request_id === access[0].requestId), 'same JSON as /api/logs');
    const bareTrace = await getJson(`${d.httpUrl}/api/traces/${bare.spanContext().traceId}`);
    assert.deepEqual(Object.keys(bareTrace.data[0]).sort(), ['processes', 'spans', 'traceID', 'warnings'], 'no accessLogs member without records');

    /* RED: exactly the access-log records of this round. */
    const metrics = await metricsText(d);
    assert.equal(sample(metrics, 'istio_requests_total') - before, accessHere, `${what}: istio_requests_total`);
    await Promise.all([appLogs.shutdown(), envoy.shutdown(), tp.shutdown()]);
  }
  const metrics = await metricsText(d);
  assert.equal(sample(metrics, 'istio_requests_total', ['response_flags="UF"', 'response_code="503"', 'reporter="destination"']), COMBOS.length);
  assert.equal(sample(metrics, 'istio_requests_total'), accessSent);
  /* Application logs draw no service-graph edge either (the third names an upstream). */
  assert.ok(!metrics.includes('ghost'), 'no metric from an application log');
  const now = Date.now();
  const g = await getJson(`${d.httpUrl}/api/graph?start=${(now - 3600_000) * 1000}&end=${(now + 60_000) * 1000}`);
  assert.ok(!JSON.stringify(g).includes('ghost'), `graph: ${JSON.stringify(g).slice(0, 500)}`);
  const received =
    sample(metrics, 'meshscope_spans_accepted_total', ['protocol="otlp_logs_http_protobuf"']) +
    sample(metrics, 'meshscope_spans_accepted_total', ['protocol="otlp_logs_http_json"']);
  assert.equal(received, COMBOS.length * (3 + 5));
  await d.stop();
});

test('malformed /v1/logs bodies: 400 with a message, nothing stored, daemon healthy', async () => {
  const d = await startDaemon({ logLevel: 'info' });
  daemons.push(d);
  const JSONT = 'application/json';
  const PB = 'application/x-protobuf';
  const good = JSON.stringify({ resourceLogs: [{ scopeLogs: [{ logRecords: [{ body: { stringValue: 'ok' } }] }] }] });
  const cases = [
    { what: 'invalid JSON', ct: JSONT, body: '{"resourceLogs":[', status: 400, msg: /invalid JSON/ },
    { what: 'JSON array', ct: JSONT, body: '[]', status: 400, msg: /expected an object/ },
    { what: 'wrong type', ct: JSONT, body: '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityText":7}]}]}]}', status: 400, msg: /logRecords\[0\]\.severityText: expected a string/ },
    { what: 'bad time', ct: JSONT, body: '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"-1"}]}]}]}', status: 400, msg: /timeUnixNano/ },
    { what: 'garbage protobuf', ct: PB, body: Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]), status: 400 },
    { what: 'truncated protobuf', ct: PB, body: fMessage(1, fMessage(2, fMessage(2, pbKeyValue('k', { s: 'v' })))).subarray(0, 7), status: 400 },
    { what: 'corrupt gzip', ct: JSONT, body: good, headers: { 'content-encoding': 'gzip' }, status: 400, msg: /cannot decompress/ },
    { what: 'text/plain', ct: 'text/plain', body: good, status: 415 },
  ];
  for (const c of cases) {
    const res = await request(`${d.otlpUrl}/v1/logs`, { method: 'POST', headers: { 'content-type': c.ct, ...(c.headers ?? {}) }, body: c.body });
    const text = res.body.toString('utf8');
    assert.equal(res.status, c.status, `${c.what}: ${res.status} ${text}`);
    if (c.ct === JSONT && c.status === 400) {
      const st = JSON.parse(text);
      assert.equal(st.code, 3, c.what);
      assert.match(st.message, c.msg, c.what);
    } else if (c.status === 400) {
      assert.ok(res.body.length > 4, `${c.what}: a google.rpc.Status with a message`);
    }
  }
  /* A bad trace id refuses that record alone: 200 with partial success. */
  const bad = {
    resourceLogs: [{ scopeLogs: [{ logRecords: [{ traceId: 'abcd', body: { stringValue: 'x' } }, { body: { stringValue: 'kept' } }] }] }],
  };
  let res = await request(`${d.otlpUrl}/v1/logs`, { method: 'POST', headers: { 'content-type': JSONT, 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify(bad)) });
  assert.equal(res.status, 200, res.body.toString());
  const ps = JSON.parse(res.body.toString());
  assert.equal(ps.partialSuccess.rejectedLogRecords, '1');
  assert.match(ps.partialSuccess.errorMessage, /logRecords\[0\]\.traceId: length 2, want 16/);
  /* protobuf: a span_id of 3 bytes (LogRecord field 10) */
  const pbBad = fMessage(1, fMessage(2, fMessage(2, fBytes(10, randomBytes(3)))));
  res = await request(`${d.otlpUrl}/v1/logs`, { method: 'POST', headers: { 'content-type': PB }, body: pbBad });
  assert.equal(res.status, 200);
  assert.ok(res.body.length > 0, 'ExportLogsServiceResponse with partial_success');

  const stored = await getJson(`${d.httpUrl}/api/logs`);
  assert.deepEqual(stored.data.map((x) => x.body), ['kept'], 'only the valid record of the partial request');
  assert.equal((await request(`${d.httpUrl}/healthz`)).status, 200);
  const metrics = await metricsText(d);
  assert.ok(sample(metrics, 'meshscope_ingest_requests_rejected_total', ['protocol="otlp_logs_http_json"', 'reason="decode_error"']) >= 5);
  assert.equal(sample(metrics, 'meshscope_spans_rejected_total', ['reason="invalid_span"']), 2);
  await d.stop();
});
