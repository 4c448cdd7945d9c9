/*
 * otlp_roundtrip.test.mjs: spans recorded with the real OpenTelemetry JS SDK, exported through the
 * real OTLP/HTTP exporters (protobuf and JSON, gzip and uncompressed) and the OTLP/gRPC exporter, must come back from the
 * Jaeger query API field for field; searches, services, operations and dependencies must see them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { startDaemon, withStderr } from '../lib/daemon.mjs';
import { envelope, getJson, poll, request, searchTraces, services, waitForTrace } from '../lib/http.mjs';
import { assertTags, assertTraceMatches } from '../lib/jaeger.mjs';
import { jsonRequest, pbRequest, zstdRawFrame, decodeExportResponse } from '../lib/proto.mjs';
import { diagMessages, makeProvider } from '../lib/sdk.mjs';

let d;
before(async () => {
  d = await startDaemon();
});
after(async () => {
  if (!d) return;
  try {
    await d.stop();
  } finally {
    await d.cleanup();
  }
});
const it = (name, fn) => test(name, () => withStderr(() => d, fn));

const uniq = () => randomBytes(4).toString('hex');
const BASE_SEC = Math.floor(Date.now() / 1000) - 60;
/* An explicit hrTime: ms after BASE_SEC plus sub-millisecond nanoseconds, so µs truncation shows. */
const at = (ms, ns = 0) => [BASE_SEC + Math.floor(ms / 1000), (ms % 1000) * 1_000_000 + ns];

/* Every attribute type the SDK can send. Array elements are chosen so that JSON.stringify and Go's
 * encoding/json (the contrib translator's AsString) print them identically. */
const RICH_ATTRS = {
  'http.request.method': 'GET',
  'url.path': '/checkout',
  'http.response.status_code': 200,
  'retry.enabled': true,
  'cache.hit': false,
  'sample.ratio': 0.125,
  'neg.int': -42,
  'max.safe.int': Number.MAX_SAFE_INTEGER,
  'neg.double': -3.75,
  'frac.double': 123456.789,
  'str.array': ['alpha', 'beta', 'gamma'],
  'int.array': [1, 2, 3],
  'double.array': [0.5, 1.25],
  'mixed.number.array': [1, 2.5],
  'bool.array': [true, false, true],
  'empty.array': [],
  'empty.string': '',
  'unicode.string': 'grüße 🚀 日本語',
  'escapes.string': 'line1\nline2\t"quoted" back\\slash',
};

/**
 * Records a rich trace on provider p and a second single-span trace it links to.
 * Returns {traceId, linkedTraceId}.
 */
function recordRichTrace(p, label) {
  const http = p.provider.getTracer('checkout-http', '1.2.3');
  const db = p.provider.getTracer('pg-driver', '0.9.0');
  const queue = p.provider.getTracer('queue-consumer'); /* no version: no otel.scope.version tag */

  const origin = http.startSpan(`batch.origin ${label}`, { kind: SpanKind.INTERNAL, startTime: at(10, 1) }, ROOT_CONTEXT);
  origin.end(at(11, 999));

  const root = http.startSpan(`GET /checkout ${label}`, { kind: SpanKind.SERVER, startTime: at(100, 123_456), attributes: RICH_ATTRS }, ROOT_CONTEXT);
  root.addEvent('request.received', { 'client.address': '10.1.2.3', 'body.bytes': 512 }, at(100, 500_999));
  root.setStatus({ code: SpanStatusCode.OK });
  const rootCtx = trace.setSpan(ROOT_CONTEXT, root);

  const query = db.startSpan('SELECT orders', {
    kind: SpanKind.CLIENT,
    startTime: at(101, 1),
    attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT * FROM orders WHERE id = $1', 'db.response.returned_rows': 0 },
  }, rootCtx);
  query.addEvent('retry', { attempt: 2, 'backoff.seconds': 0.25, stale: true, ids: [7, 8] }, at(150, 999_999));
  const err = new Error('connection reset by peer');
  err.name = 'PgConnectionError';
  query.recordException(err, at(180, 42));
  query.addEvent('custom-name', { event: 'attribute wins', n: 1 }, at(181));
  query.setStatus({ code: SpanStatusCode.ERROR, message: 'deadline exceeded after 250ms' });
  query.end(at(351, 999));

  const compute = http.startSpan('price.compute', { kind: SpanKind.INTERNAL, startTime: at(352, 500) }, rootCtx);
  compute.addEvent('cache.miss', at(353));
  compute.addEvent('cache.fill', { 'cache.key': 'user:42', 'latency.ms': 12.5, 'fill.ok': true, tags: ['a', 'b'] }, at(354, 1));
  const computeCtx = trace.setSpan(rootCtx, compute);

  const publish = http.startSpan('orders.publish', {
    kind: SpanKind.PRODUCER,
    startTime: at(360),
    attributes: { 'messaging.system': 'kafka', 'messaging.destination.name': 'orders', 'messaging.batch.message_count': 3 },
    links: [
      { context: query.spanContext(), attributes: { 'link.reason': 'caused-by' } },
      { context: origin.spanContext() },
    ],
  }, computeCtx);
  /* The consumer sits behind a remote boundary that carried a W3C tracestate. */
  const remoteCtx = trace.setSpanContext(ROOT_CONTEXT, {
    ...publish.spanContext(),
    isRemote: true,
    traceState: new TraceState('vendorx=opaque-1,rojo=00f067aa0ba902b7'),
  });
  const consume = queue.startSpan('orders.consume', {
    kind: SpanKind.CONSUMER,
    startTime: at(400, 7),
    attributes: { 'messaging.operation.type': 'process' },
  }, remoteCtx);
  consume.end(at(420, 7));
  publish.end(at(361));
  compute.end(at(370));
  root.end(at(500, 999_999));
  return { traceId: root.spanContext().traceId, linkedTraceId: origin.spanContext().traceId };
}

const COMBINATIONS = [
  ['proto', 'none'],
  ['proto', 'gzip'],
  ['json', 'none'],
  ['json', 'gzip'],
  ['grpc', 'none'], /* OTLP/gRPC (--otlp-grpc): the same data must round-trip */
  ['grpc', 'gzip'],
];

describe('rich trace round trip through the SDK exporters', () => {
  for (const [format, compression] of COMBINATIONS) {
    it(`${format} exporter, compression ${compression}`, async () => {
      const service = `rt-${format}-${compression}-${uniq()}`;
      const p = makeProvider({
        otlpUrl: format === 'grpc' ? `http://${d.grpcAddr}` : d.otlpUrl,
        format,
        compression,
        resourceAttrs: {
          'service.name': service,
          'service.version': '4.2.0',
          'service.namespace': 'shop',
          'deployment.environment.name': 'integration',
          'host.cpu.count': 2,
          'custom.canary': true,
          'custom.weight': 0.75,
          'custom.zones': ['eu-1', 'eu-2'],
        },
      });
      const diagBefore = diagMessages.length;
      const { traceId, linkedTraceId } = recordRichTrace(p, `${format}/${compression}`);
      const all = await p.flush(`${format}/${compression}`);
      await p.shutdown();
      assert.deepEqual(diagMessages.slice(diagBefore), [], 'the exporter logged warnings (partial success?)');

      const mainSpans = all.filter((s) => s.spanContext().traceId === traceId);
      const linkedSpans = all.filter((s) => s.spanContext().traceId === linkedTraceId);
      assert.equal(mainSpans.length, 5);
      assert.equal(linkedSpans.length, 1);

      const main = await waitForTrace(d.httpUrl, traceId, mainSpans.length);
      assertTraceMatches(main, mainSpans, `${format}/${compression} main trace`);
      const linked = await waitForTrace(d.httpUrl, linkedTraceId, 1);
      assertTraceMatches(linked, linkedSpans, `${format}/${compression} linked trace`);
      /* All spans of one resource share one process entry. */
      assert.equal(Object.keys(main.processes).length, 1, `processes: ${JSON.stringify(main.processes)}`);
      /* Trace ids are case-insensitive on the way in. */
      const upper = await getJson(`${d.httpUrl}/api/traces/${traceId.toUpperCase()}`);
      assert.equal(envelope(upper, 'upper-case id')[0]?.traceID, traceId);
    });
  }
});

/* Value types the SDK cannot produce (bytes, kvlist, nested arrays, int64 extremes, empty
 * AnyValue), sent as hand-built requests in both encodings, plus the zstd Content-Encoding. */
describe('value types beyond the SDK', () => {
  const cases = [
    ['protobuf', 'application/x-protobuf', (r) => pbRequest(r)],
    ['json', 'application/json', (r) => Buffer.from(JSON.stringify(jsonRequest(r)))],
  ];
  for (const [name, contentType, encode] of cases) {
    it(`${name} body, zstd-encoded`, async () => {
      const traceId = randomBytes(16);
      const spanId = randomBytes(8);
      const service = `types-${name}-${uniq()}`;
      const start = BigInt(BASE_SEC) * 1_000_000_000n + 5_123_456_789n;
      const req = [{
        resource: [['service.name', { s: service }], ['res.bytes', { bytes: Buffer.from([0, 1, 254, 255]) }]],
        scopes: [{ name: 'hand-built', version: '0', spans: [{
          traceId, spanId, name: 'types', kind: 2, start, end: start + 2_000_999n,
          attrs: [
            ['bytes', { bytes: Buffer.from('hello\0world') }],
            ['kv', { kv: [['b', { s: 'x' }], ['a', { i: 1n }]] }],
            ['nested', { arr: [{ arr: [{ s: 'a' }] }, { arr: [{ i: 1n }] }] }],
            ['i64.max', { i: 9223372036854775807n }],
            ['i64.min', { i: -9223372036854775808n }],
            ['empty.value', {}],
          ],
        }] }],
      }];
      const res = await request(`${d.otlpUrl}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': contentType, 'content-encoding': 'zstd' },
        body: zstdRawFrame(encode(req)),
      });
      assert.equal(res.status, 200, `status ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
      if (name === 'protobuf') assert.equal(decodeExportResponse(res.body).partialSuccess?.rejectedSpans ?? 0, 0);

      const hex = traceId.toString('hex');
      await waitForTrace(d.httpUrl, hex, 1);
      const raw = (await request(`${d.httpUrl}/api/traces/${hex}`)).body.toString('utf8');
      /* int64 extremes must be printed exactly (JSON.parse would round them). */
      assert.match(raw, /9223372036854775807/, 'int64 max not printed exactly');
      assert.match(raw, /-9223372036854775808/, 'int64 min not printed exactly');
      const t = envelope(JSON.parse(raw), 'types')[0];
      const span = t.spans[0];
      const tags = span.tags.filter((x) => !['i64.max', 'i64.min'].includes(x.key));
      assertTags(tags, [
        { key: 'otel.scope.name', type: 'string', value: 'hand-built' },
        { key: 'otel.scope.version', type: 'string', value: '0' },
        { key: 'span.kind', type: 'string', value: 'server' },
        { key: 'bytes', type: 'binary', value: Buffer.from('hello\0world').toString('base64') },
        /* Go's encoding/json sorts map keys. */
        { key: 'kv', type: 'string', value: '{"a":1,"b":"x"}' },
        { key: 'nested', type: 'string', value: '[["a"],[1]]' },
        /* The contrib translator maps an empty AnyValue to an empty string tag. */
        { key: 'empty.value', type: 'string', value: '' },
      ], 'hand-built span');
      for (const k of ['i64.max', 'i64.min']) {
        assert.equal(span.tags.find((x) => x.key === k)?.type, 'int64', `${k} type`);
      }
      assert.equal(span.startTime, Number(start / 1000n));
      assert.equal(span.duration, 2000);
      const proc = t.processes[span.processID];
      assert.equal(proc.serviceName, service);
      assertTags(proc.tags, [{ key: 'res.bytes', type: 'binary', value: Buffer.from([0, 1, 254, 255]).toString('base64') }], 'process');
    });
  }
});

/* Records one two-span trace: root (SERVER, optional status/attrs) and a CLIENT child. */
function recordSmallTrace(tracer, { rootStatus, rootAttrs, childStatus, childAttrs, offsetMs }) {
  const root = tracer.startSpan('handle', { kind: SpanKind.SERVER, startTime: at(offsetMs), attributes: rootAttrs }, ROOT_CONTEXT);
  if (rootStatus) root.setStatus(rootStatus);
  const child = tracer.startSpan('call-db', { kind: SpanKind.CLIENT, startTime: at(offsetMs + 1), attributes: childAttrs }, trace.setSpan(ROOT_CONTEXT, root));
  if (childStatus) child.setStatus(childStatus);
  child.end(at(offsetMs + 5));
  root.end(at(offsetMs + 10));
  return root.spanContext().traceId;
}

describe('search, services, operations, dependencies', () => {
  it('error search returns exactly the failed traces', async () => {
    const service = `errsearch-${uniq()}`;
    const p = makeProvider({ otlpUrl: d.otlpUrl, format: 'proto', resourceAttrs: { 'service.name': service } });
    const tracer = p.provider.getTracer('search-test', '1');
    const healthy = [
      recordSmallTrace(tracer, { offsetMs: 1000 }),
      recordSmallTrace(tracer, { offsetMs: 1100, rootStatus: { code: SpanStatusCode.OK }, rootAttrs: { 'http.response.status_code': 200 } }),
      recordSmallTrace(tracer, { offsetMs: 1200, childAttrs: { 'http.response.status_code': 201, error_count: 0 } }),
    ];
    const failed = [
      recordSmallTrace(tracer, { offsetMs: 1300, childStatus: { code: SpanStatusCode.ERROR, message: 'timeout' } }),
      recordSmallTrace(tracer, { offsetMs: 1400, rootStatus: { code: SpanStatusCode.ERROR } }),
      recordSmallTrace(tracer, { offsetMs: 1500, rootAttrs: { 'http.response.status_code': 503 } }),
    ];
    await p.flush('error search');
    await p.shutdown();
    for (const id of [...healthy, ...failed]) await waitForTrace(d.httpUrl, id, 2);

    const window = [['start', String((BASE_SEC - 3600) * 1_000_000)], ['end', String((BASE_SEC + 3600) * 1_000_000)], ['limit', '100']];
    const ids = (data) => data.map((t) => t.traceID).sort();
    const all = await searchTraces(d.httpUrl, [['service', service], ...window]);
    assert.deepEqual(ids(all), [...healthy, ...failed].sort(), 'search by service alone');
    for (const t of all) assert.equal(t.spans.length, 2, `search results carry whole traces (${t.traceID})`);

    const byTags = await searchTraces(d.httpUrl, [['service', service], ['tags', JSON.stringify({ error: 'true' })], ...window]);
    assert.deepEqual(ids(byTags), [...failed].sort(), 'tags={"error":"true"}');
    const byTag = await searchTraces(d.httpUrl, [['service', service], ['tag', 'error:true'], ...window]);
    assert.deepEqual(ids(byTag), [...failed].sort(), 'tag=error:true');
    const byOp = await searchTraces(d.httpUrl, [['service', service], ['operation', 'call-db'], ['tag', 'error:true'], ...window]);
    assert.deepEqual(ids(byOp), [failed[0]], 'operation=call-db&tag=error:true');
  });

  it('search parameters: duration bounds, time window, tags, operation, limit', async () => {
    const service = `params-${uniq()}`;
    const p = makeProvider({ otlpUrl: d.otlpUrl, format: 'proto', resourceAttrs: { 'service.name': service } });
    const tracer = p.provider.getTracer('params');
    /* Single-span traces: [operation, start offset ms, duration ms, attributes]. */
    const specs = [
      ['GET /a', 10_000, 1, { 'http.route': '/a', shard: 1 }],
      ['GET /a', 20_000, 5, { 'http.route': '/a', shard: 2 }],
      ['GET /b', 30_000, 20, { 'http.route': '/b', shard: 1, region: 'eu' }],
      ['GET /b', 40_000, 100, { 'http.route': '/b', shard: 2, region: 'eu' }],
      ['GET /c', 50_000, 1000, { 'http.route': '/c', shard: 3, region: 'us', cached: true }],
    ];
    const ids = specs.map(([name, off, dur, attributes]) => {
      const sp = tracer.startSpan(name, { kind: SpanKind.SERVER, startTime: at(off), attributes }, ROOT_CONTEXT);
      sp.end(at(off + dur));
      return sp.spanContext().traceId;
    });
    await p.flush('params');
    await p.shutdown();
    for (const id of ids) await waitForTrace(d.httpUrl, id, 1);

    const us = (ms) => String((BASE_SEC * 1000 + ms) * 1000);
    const window = [['start', us(0)], ['end', us(60_000)]];
    const q = async (params) => (await searchTraces(d.httpUrl, [['service', service], ...params])).map((t) => t.traceID).sort();
    const pick = (...i) => i.map((k) => ids[k]).sort();
    assert.deepEqual(await q([...window, ['minDuration', '10ms']]), pick(2, 3, 4), 'minDuration=10ms');
    assert.deepEqual(await q([...window, ['maxDuration', '10ms']]), pick(0, 1), 'maxDuration=10ms');
    assert.deepEqual(await q([...window, ['minDuration', '5ms'], ['maxDuration', '0.5s']]), pick(1, 2, 3), 'minDuration=5ms&maxDuration=0.5s');
    assert.deepEqual(await q([['start', us(15_000)], ['end', us(45_000)]]), pick(1, 2, 3), 'start/end window');
    assert.deepEqual(await q([...window, ['operation', 'GET /b']]), pick(2, 3), 'operation');
    assert.deepEqual(await q([...window, ['tag', 'http.route:/a']]), pick(0, 1), 'tag=http.route:/a');
    assert.deepEqual(await q([...window, ['tag', 'region:eu'], ['tag', 'shard:2']]), pick(3), 'two tag= parameters AND');
    assert.deepEqual(await q([...window, ['tags', JSON.stringify({ region: 'eu', shard: '1' })]]), pick(2), 'tags JSON with an int tag');
    assert.deepEqual(await q([...window, ['tags', JSON.stringify({ cached: 'true' })]]), pick(4), 'bool tag');
    assert.deepEqual(await q([...window, ['tag', 'region:nowhere']]), [], 'no match');
    const limited = await q([...window, ['limit', '2']]);
    assert.equal(limited.length, 2, 'limit=2');
    for (const id of limited) assert.ok(ids.includes(id));
  });

  it('services and operations list what was sent', async () => {
    const service = `ops-${uniq()}`;
    const p = makeProvider({ otlpUrl: d.otlpUrl, format: 'json', resourceAttrs: { 'service.name': service } });
    const id = recordSmallTrace(p.provider.getTracer('ops'), { offsetMs: 2000 });
    await p.flush('ops');
    await p.shutdown();
    await waitForTrace(d.httpUrl, id, 2);

    const svcs = await services(d.httpUrl);
    assert.ok(svcs.includes(service), `services: ${JSON.stringify(svcs)}`);
    assert.equal(new Set(svcs).size, svcs.length, 'services are unique');

    const opsJson = await getJson(`${d.httpUrl}/api/services/${encodeURIComponent(service)}/operations`);
    const ops = envelope(opsJson, 'service operations');
    assert.deepEqual([...ops].sort(), ['call-db', 'handle']);
    assert.equal(opsJson.total, 2);

    const kinds = envelope(await getJson(`${d.httpUrl}/api/operations?service=${encodeURIComponent(service)}`), 'operations');
    const byName = (a, b) => (a.name < b.name ? -1 : 1);
    assert.deepEqual([...kinds].sort(byName), [{ name: 'call-db', spanKind: 'client' }, { name: 'handle', spanKind: 'server' }]);
    const servers = envelope(await getJson(`${d.httpUrl}/api/operations?service=${encodeURIComponent(service)}&spanKind=server`), 'server operations');
    assert.deepEqual(servers, [{ name: 'handle', spanKind: 'server' }]);
  });

  it('dependencies show the cross-service edge', async () => {
    const r = uniq();
    const frontend = `deps-frontend-${r}`;
    const backend = `deps-backend-${r}`;
    const pf = makeProvider({ otlpUrl: d.otlpUrl, format: 'proto', compression: 'gzip', resourceAttrs: { 'service.name': frontend } });
    const pb = makeProvider({ otlpUrl: d.otlpUrl, format: 'json', resourceAttrs: { 'service.name': backend } });
    const ft = pf.provider.getTracer('frontend');
    const bt = pb.provider.getTracer('backend');
    const root = ft.startSpan('GET /', { kind: SpanKind.SERVER, startTime: at(3000) }, ROOT_CONTEXT);
    const client = ft.startSpan('GET /api/items', { kind: SpanKind.CLIENT, startTime: at(3001) }, trace.setSpan(ROOT_CONTEXT, root));
    const remote = trace.setSpanContext(ROOT_CONTEXT, { ...client.spanContext(), isRemote: true, traceFlags: TraceFlags.SAMPLED });
    const server = bt.startSpan('GET /api/items', { kind: SpanKind.SERVER, startTime: at(3002) }, remote);
    const inner = bt.startSpan('load', { kind: SpanKind.INTERNAL, startTime: at(3003) }, trace.setSpan(ROOT_CONTEXT, server));
    inner.end(at(3004));
    server.end(at(3005));
    client.end(at(3006));
    root.end(at(3007));
    const all = [...(await pf.flush('frontend')), ...(await pb.flush('backend'))];
    await pf.shutdown();
    await pb.shutdown();

    const traceId = root.spanContext().traceId;
    const t = await waitForTrace(d.httpUrl, traceId, 4);
    assertTraceMatches(t, all, 'cross-service trace');
    assert.equal(Object.keys(t.processes).length, 2, 'two processes');

    const endTs = Date.now() + 60_000;
    const deps = await poll('dependency edge', async () => {
      const data = envelope(await getJson(`${d.httpUrl}/api/dependencies?endTs=${endTs}&lookback=${3 * 3600 * 1000}`), 'dependencies');
      const mine = data.filter((e) => [frontend, backend].includes(e.parent) || [frontend, backend].includes(e.child));
      return mine.length ? mine : null;
    });
    for (const e of deps) assert.deepEqual(Object.keys(e).sort(), ['callCount', 'child', 'parent'], `edge shape ${JSON.stringify(e)}`);
    assert.deepEqual(deps, [{ parent: frontend, child: backend, callCount: 1 }]);
    /* A window that ends before the trace started holds no edge of ours. */
    const early = envelope(await getJson(`${d.httpUrl}/api/dependencies?endTs=${(BASE_SEC - 3600) * 1000}&lookback=3600000`), 'early dependencies');
    assert.deepEqual(early.filter((e) => e.parent === frontend || e.child === backend), [], 'edge outside the window');
  });
});

/* A compressed body the exporter did not make: gzip with a content type carrying parameters. */
it('json with charset parameter and gzip is accepted', async () => {
  const service = `charset-${uniq()}`;
  const traceId = randomBytes(16);
  const start = BigInt(BASE_SEC) * 1_000_000_000n;
  const body = gzipSync(JSON.stringify(jsonRequest([{ resource: [['service.name', { s: service }]], scopes: [{ name: 's', spans: [
    { traceId, spanId: randomBytes(8), name: 'x', start, end: start + 1000n },
  ] }] }])));
  const res = await request(`${d.otlpUrl}/v1/traces`, {
    method: 'POST',
    headers: { 'content-type': 'application/json; charset=utf-8', 'content-encoding': 'gzip' },
    body,
  });
  assert.equal(res.status, 200, res.body.toString('utf8'));
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const parsed = JSON.parse(res.body.toString('utf8') || '{}');
  assert.ok(!parsed.partialSuccess || !Number(parsed.partialSuccess.rejectedSpans), JSON.stringify(parsed));
  await waitForTrace(d.httpUrl, traceId.toString('hex'), 1);
});
