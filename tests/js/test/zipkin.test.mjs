/*
 * zipkin.test.mjs: Zipkin v2 compatibility, end to end against the real daemon.
 *
 *  - the real zipkin-js tracer (HttpLogger, JSON_V2) and @opentelemetry/exporter-zipkin send
 *    spans to POST /api/v2/spans; every field comes back from GET /api/v2/trace/{id} as a Zipkin
 *    server would return it (tests/js/lib/zipkin.mjs expectedZipkinSpan), what the clients sent
 *    captured by a recording proxy;
 *  - proto3 bodies built with protobufjs from proto/zipkin/zipkin.proto are stored equal to the
 *    same spans sent as JSON (gzip, zstd and identity);
 *  - a trace whose spans arrive half over OTLP and half over Zipkin reads back whole through the
 *    Jaeger and the Zipkin APIs, 128-bit and 64-bit ids alike;
 *  - the names, search, dependencies and autocomplete routes see the traffic;
 *  - a malformed-input table (400 with messages, 415, 413 bomb, partial acceptance) and the query
 *    API's parameter errors.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import zipkin from 'zipkin';
import { HttpLogger } from 'zipkin-transport-http';
import { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { startDaemon, withStderr } from '../lib/daemon.mjs';
import { fetchTrace, getJson, poll, request, waitForTrace } from '../lib/http.mjs';
import { zstdRawFrame } from '../lib/proto.mjs';
import { makeProvider } from '../lib/sdk.mjs';
import {
  assertZipkinTrace, encodeListOfSpans, expectedZipkinSpan, normTraceId, recordingProxy,
} from '../lib/zipkin.mjs';

const { Tracer, BatchRecorder, ExplicitContext, Annotation, InetAddress, jsonEncoder } = zipkin;

const MAX_BODY = 4 * 1024 * 1024;
let d;
before(async () => {
  d = await startDaemon({ args: ['--max-body', '4MiB'] });
});
after(async () => {
  if (!d) return;
  try {
    await d.stop();
  } finally {
    await d.cleanup();
  }
});
const it = (name, fn) => test(name, (t) => withStderr(() => d, () => fn(t)));

const run = randomBytes(3).toString('hex');
const hex = (n) => randomBytes(n).toString('hex');
const NOW_US = (Date.now() - 60_000) * 1000;
const JSON_CT = 'application/json';
const PB = 'application/x-protobuf';

function post(body, { ct = JSON_CT, enc, url = d.zipkinUrl } = {}) {
  const headers = { 'content-type': ct };
  if (enc) headers['content-encoding'] = enc;
  return request(`${url}/api/v2/spans`, { method: 'POST', headers, body: typeof body === 'string' ? body : Buffer.isBuffer(body) ? body : JSON.stringify(body) });
}

async function zget(path, { status = 200 } = {}) {
  const res = await request(`${d.httpUrl}/api/v2/${path}`);
  const text = res.body.toString('utf8');
  assert.equal(res.status, status, `GET /api/v2/${path}: ${res.status} ${text.slice(0, 300)}`);
  if (status !== 200) return text;
  assert.match(String(res.headers['content-type']), /^application\/json/);
  return JSON.parse(text);
}

/** A full Zipkin JSON span for service svc (every field set). */
function fullSpan(svc, over = {}) {
  return {
    traceId: hex(16),
    parentId: hex(8),
    id: hex(8),
    kind: 'SERVER',
    name: 'GET /Orders/{id}',
    timestamp: NOW_US,
    duration: 2345,
    localEndpoint: { serviceName: `Svc-${svc}`, ipv4: '10.1.0.7', port: 8080 },
    remoteEndpoint: { serviceName: `Caller-${svc}`, ipv4: '10.1.0.9', port: 41000 },
    annotations: [{ timestamp: NOW_US + 20, value: 'wr' }, { timestamp: NOW_US + 10, value: 'ws' }],
    tags: {
      'http.method': 'GET',
      'http.status_code': '503',
      'istio.canonical_service': `svc-${svc}`,
      'istio.namespace': 'shop',
      upstream_cluster: 'inbound|8080||',
      response_flags: 'UF',
      node_id: 'sidecar~10.1.0.7~svc-1.shop~shop.svc.cluster.local',
      'guid:x-request-id': '0c3b5f1e-5d0e-4b44-a7b1-b83d1fd9b3a1',
      error: 'upstream connect error',
    },
    debug: true,
    shared: true,
    ...over,
  };
}

describe('ingest', () => {
  it('zipkin-js tracer (HttpLogger, JSON_V2): every field round-trips through /api/v2/trace/{id}', async () => {
    const proxy = await recordingProxy(d.zipkinUrl);
    try {
      const errors = [];
      const logger = new HttpLogger({ endpoint: `${proxy.url}/api/v2/spans`, jsonEncoder: jsonEncoder.JSON_V2, httpInterval: 50 });
      logger.on('error', (e) => errors.push(e));
      let successes = 0;
      logger.on('success', () => successes++);
      const recorder = new BatchRecorder({ logger });
      const mk = (svc) => new Tracer({ ctxImpl: new ExplicitContext(), recorder, localServiceName: svc, traceId128Bit: true });
      const front = mk(`ZipkinJS-Front-${run}`);
      const back = mk(`zipkinjs-back-${run}`);

      const rootId = front.createRootId();
      let clientId;
      front.letId(rootId, () => {
        front.recordServiceName(`ZipkinJS-Front-${run}`);
        front.recordRpc('GET /Checkout');
        front.recordAnnotation(new Annotation.ServerRecv());
        front.recordAnnotation(new Annotation.LocalAddr({ host: new InetAddress('10.9.0.1'), port: 8080 }));
        front.recordBinary('http.path', '/checkout');
        front.recordBinary('istio.namespace', 'shop');
        front.recordMessage('cache miss');
        clientId = front.createChildId();
        front.letId(clientId, () => {
          front.recordServiceName(`ZipkinJS-Front-${run}`);
          front.recordRpc('call payments');
          front.recordAnnotation(new Annotation.ClientSend());
          front.recordAnnotation(new Annotation.ServerAddr({ serviceName: `zipkinjs-back-${run}`, host: new InetAddress('10.9.0.2'), port: 9000 }));
          front.recordBinary('error', 'payment declined');
          front.recordAnnotation(new Annotation.ClientRecv());
        });
        front.recordAnnotation(new Annotation.ServerSend());
      });
      back.letId(clientId, () => {
        back.recordServiceName(`zipkinjs-back-${run}`);
        back.recordRpc('pay');
        back.recordAnnotation(new Annotation.ServerRecv());
        back.recordBinary('http.status_code', '500');
        back.recordAnnotation(new Annotation.ServerSend());
      });
      /* Finished spans go out every httpInterval; wait until all three were answered. */
      await poll('zipkin-js to send 3 spans', () => errors.length || (proxy.spans().length >= 3 && successes === proxy.requests.length));
      assert.deepEqual(errors, []);
      const spans = proxy.spans();
      assert.ok(spans.length >= 3, `zipkin-js sent ${spans.length} spans`);
      assert.equal(proxy.requests[0].headers['content-type'], 'application/json');
      const traceId = spans[0].traceId;
      const got = await zget(`trace/${traceId}`);
      assertZipkinTrace(got, spans, 'zipkin-js trace');
      assert.equal(got[0].traceId.length, 32, '128-bit ids stay 32 digits');
      /* The shared server half (same span id as the client) was kept apart from the client. */
      assert.ok(got.some((s) => s.kind === 'CLIENT') && got.some((s) => s.kind === 'SERVER' && s.id === clientId.spanId));
      /* ... and Jaeger shows the same trace. */
      const jt = await waitForTrace(d.httpUrl, traceId, spans.length);
      assert.equal(jt.spans.length, spans.length);
    } finally {
      await proxy.close();
    }
  });

  it('@opentelemetry/exporter-zipkin: SDK spans round-trip', async () => {
    const proxy = await recordingProxy(d.zipkinUrl);
    try {
      const exporter = new ZipkinExporter({ url: `${proxy.url}/api/v2/spans` });
      const provider = new BasicTracerProvider({
        resource: resourceFromAttributes({ 'service.name': `OtelZipkin-${run}`, 'deployment.environment': 'test' }),
        spanProcessors: [new SimpleSpanProcessor(exporter)],
      });
      const tr = provider.getTracer('zipkin-test', '1.0.0');
      const root = tr.startSpan('HTTP GET', { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'GET', 'http.response.status_code': 200, retry: true, ratio: 0.5 } }, ROOT_CONTEXT);
      root.addEvent('received');
      const ctx = trace.setSpan(ROOT_CONTEXT, root);
      const child = tr.startSpan('SELECT', { kind: SpanKind.CLIENT, attributes: { 'peer.service': 'postgres', 'db.system': 'postgresql' } }, ctx);
      child.setStatus({ code: SpanStatusCode.ERROR, message: 'deadlock' });
      child.end();
      const internal = tr.startSpan('compute', { kind: SpanKind.INTERNAL }, ctx);
      internal.setStatus({ code: SpanStatusCode.OK });
      internal.end();
      root.end();
      await provider.forceFlush();
      await provider.shutdown();
      const spans = proxy.spans();
      assert.equal(spans.length, 3);
      for (const r of proxy.requests) assert.equal(r.headers['content-type'], 'application/json');
      const got = await zget(`trace/${spans[0].traceId}`);
      assertZipkinTrace(got, spans, 'exporter-zipkin trace');
      const c = got.find((s) => s.kind === 'CLIENT');
      assert.equal(c.remoteEndpoint.serviceName, 'postgres');
      assert.equal(c.tags.error, 'deadlock');
    } finally {
      await proxy.close();
    }
  });

  it('proto3 (protobufjs) bodies are stored equal to the same spans as JSON; gzip, zstd, identity', async () => {
    const svc = `proto-${run}`;
    const base = fullSpan(svc);
    const asJson = { ...base, traceId: hex(16) };
    let res = await post([asJson]);
    assert.equal(res.status, 202, res.body.toString());
    const want = await zget(`trace/${asJson.traceId}`);
    for (const enc of [undefined, 'gzip', 'zstd']) {
      const asPb = { ...base, traceId: hex(16) };
      let body = await encodeListOfSpans([asPb]);
      if (enc === 'gzip') body = gzipSync(body);
      if (enc === 'zstd') body = zstdRawFrame(body);
      res = await post(body, { ct: PB, enc });
      assert.equal(res.status, 202, `${enc}: ${res.body.toString()}`);
      assert.equal(res.body.length, 0);
      const got = await zget(`trace/${asPb.traceId}`);
      assert.deepEqual(got, want.map((s) => ({ ...s, traceId: asPb.traceId })), `proto (${enc ?? 'identity'})`);
    }
    /* The JSON path itself: every field of the full span. */
    assertZipkinTrace(want, [asJson], 'full span');
  });

  it('Istio proxy tags are kept, searchable and feed the error flag', async () => {
    const s = fullSpan(`istio-${run}`);
    assert.equal((await post([s])).status, 202);
    const jt = await fetchTrace(d.httpUrl, s.traceId);
    const tags = Object.fromEntries(jt.spans[0].tags.map((t) => [t.key, t.value]));
    for (const k of ['istio.canonical_service', 'istio.namespace', 'upstream_cluster', 'response_flags', 'http.status_code', 'node_id', 'guid:x-request-id'])
      assert.equal(tags[k], s.tags[k], k);
    assert.equal(tags.error, true);
    assert.equal(tags['otel.status_description'], 'upstream connect error');
    const proc = jt.processes[jt.spans[0].processID];
    assert.equal(proc.serviceName, `svc-istio-${run}`);
    const found = await zget(`traces?serviceName=svc-istio-${run}&annotationQuery=${encodeURIComponent(`istio.namespace=shop and response_flags=UF and error`)}`);
    assert.equal(found.length, 1);
  });
});

describe('cross-protocol', () => {
  for (const bits of [128, 64]) {
    it(`a ${bits}-bit trace half over OTLP, half over Zipkin reads back whole from Jaeger and Zipkin`, async () => {
      const p = makeProvider({ otlpUrl: d.otlpUrl, resourceAttrs: { 'service.name': `otlp-front-${bits}-${run}` } });
      const traceId = bits === 128 ? hex(16) : `0000000000000000${hex(8)}`;
      /* A remote parent context makes the SDK use our trace id. */
      const parentCtx = trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: hex(8), traceFlags: TraceFlags.SAMPLED, isRemote: true });
      const tr = p.provider.getTracer('xproto');
      const root = tr.startSpan('GET /front', { kind: SpanKind.SERVER }, parentCtx);
      const client = tr.startSpan('call back', { kind: SpanKind.CLIENT }, trace.setSpan(parentCtx, root));
      client.end();
      root.end();
      const otlpSpans = await p.flush('otlp half');
      await p.shutdown();
      const clientId = client.spanContext().spanId;
      const zTrace = bits === 128 ? traceId : traceId.slice(16);
      const zSpans = [
        { traceId: zTrace, parentId: clientId, id: hex(8), kind: 'SERVER', name: 'get /back', timestamp: NOW_US + 100, duration: 500, localEndpoint: { serviceName: `zipkin-back-${bits}-${run}` } },
      ];
      zSpans.push({ traceId: zTrace, parentId: zSpans[0].id, id: hex(8), name: 'db', timestamp: NOW_US + 200, duration: 100, localEndpoint: { serviceName: `zipkin-back-${bits}-${run}` } });
      assert.equal((await post(zSpans)).status, 202);

      const jt = await waitForTrace(d.httpUrl, traceId, 4);
      assert.equal(jt.spans.length, 4);
      assert.ok(jt.spans.every((s) => s.traceID === traceId), 'one trace id in Jaeger');
      const services = new Set(Object.values(jt.processes).map((x) => x.serviceName));
      assert.deepEqual([...services].sort(), [`otlp-front-${bits}-${run}`, `zipkin-back-${bits}-${run}`].sort());

      const zt = await zget(`trace/${traceId}`);
      assert.equal(zt.length, 4);
      const want = normTraceId(traceId);
      assert.equal(want.length, bits === 128 ? 32 : 16);
      assert.ok(zt.every((s) => s.traceId === want), `Zipkin trace ids ${zt.map((s) => s.traceId)}`);
      assert.deepEqual(await zget(`trace/${zTrace}`), zt);
      const zc = zt.find((s) => s.id === clientId);
      assert.equal(zc.kind, 'CLIENT');
      assert.equal(zc.localEndpoint.serviceName, `otlp-front-${bits}-${run}`);
      assert.equal(zc.timestamp, Number(BigInt(otlpSpans.find((s) => s.spanContext().spanId === clientId).startTime[0]) * 1_000_000n + BigInt(Math.trunc(otlpSpans.find((s) => s.spanContext().spanId === clientId).startTime[1] / 1000))));
      for (const z of zSpans) assert.deepEqual(zt.find((s) => s.id === z.id), expectedZipkinSpan({ ...z, traceId: want }));
      /* A 64-bit id also reads back from Jaeger by its short form. */
      if (bits === 64) assert.equal((await fetchTrace(d.httpUrl, zTrace)).spans.length, 4);
    });
  }
});

describe('query API', () => {
  const front = `q-front-${run}`;
  const back = `q-back-${run}`;
  const t1 = hex(8);
  const t2 = hex(8);
  before(async () => {
    const c1 = hex(8);
    const c2 = hex(8);
    const spans = [
      { traceId: t1, id: c1, kind: 'CLIENT', name: 'Call Back', timestamp: NOW_US, duration: 900, localEndpoint: { serviceName: front }, remoteEndpoint: { serviceName: back }, tags: { 'http.method': 'GET', 'q.run': run } },
      { traceId: t1, parentId: c1, id: hex(8), kind: 'SERVER', name: 'handle', timestamp: NOW_US + 10, duration: 800, localEndpoint: { serviceName: back }, tags: { 'http.status_code': '200' } },
      { traceId: t2, id: c2, kind: 'CLIENT', name: 'call back', timestamp: NOW_US + 1000, duration: 50_000, localEndpoint: { serviceName: front }, remoteEndpoint: { serviceName: back } },
      { traceId: t2, parentId: c2, id: hex(8), kind: 'SERVER', name: 'handle', timestamp: NOW_US + 1010, duration: 40_000, localEndpoint: { serviceName: back }, tags: { 'http.status_code': '503' }, annotations: [{ timestamp: NOW_US + 1020, value: 'retrying' }] },
    ];
    const res = await post(spans);
    assert.equal(res.status, 202);
  });

  it('services, span names, remote services, autocomplete', async () => {
    const svcs = await zget('services');
    assert.ok(svcs.includes(front) && svcs.includes(back));
    assert.deepEqual(svcs, [...svcs].sort());
    assert.deepEqual(await zget(`spans?serviceName=${front}`), ['call back']);
    assert.deepEqual(await zget(`spans?serviceName=${front.toUpperCase()}`), ['call back']);
    assert.deepEqual(await zget(`remoteServices?serviceName=${front}`), [back]);
    assert.ok((await zget('autocompleteKeys')).includes('http.status_code'));
    const values = await zget('autocompleteValues?key=http.status_code');
    assert.ok(values.includes('200') && values.includes('503'), JSON.stringify(values));
  });

  it('trace search: every parameter', async () => {
    const ids = (ts) => ts.map((t) => t[0].traceId).sort();
    assert.deepEqual(ids(await zget(`traces?serviceName=${front}`)), [t1, t2].sort());
    assert.deepEqual(ids(await zget(`traces?serviceName=${front}&limit=1`)), [t2]);
    assert.deepEqual(ids(await zget(`traces?serviceName=${front}&remoteServiceName=${back}`)), [t1, t2].sort());
    assert.deepEqual(ids(await zget(`traces?serviceName=${back}&remoteServiceName=${front}`)), []);
    assert.deepEqual(ids(await zget(`traces?serviceName=${front}&spanName=CALL%20BACK`)), [t1, t2].sort());
    assert.deepEqual(ids(await zget(`traces?serviceName=${back}&annotationQuery=error`)), [t2]);
    assert.deepEqual(ids(await zget(`traces?serviceName=${back}&annotationQuery=retrying`)), [t2]);
    assert.deepEqual(ids(await zget(`traces?serviceName=${back}&annotationQuery=${encodeURIComponent('http.status_code=200')}`)), [t1]);
    /* Terms may be met by different spans; serviceName confines them to its spans. */
    assert.deepEqual(ids(await zget(`traces?serviceName=${front}&annotationQuery=${encodeURIComponent(`q.run=${run} and http.status_code`)}`)), []);
    assert.deepEqual(ids(await zget(`traces?annotationQuery=${encodeURIComponent(`q.run=${run} and http.status_code`)}`)), [t1]);
    assert.deepEqual(ids(await zget(`traces?serviceName=${front}&minDuration=10000`)), [t2]);
    assert.deepEqual(ids(await zget(`traces?serviceName=${front}&minDuration=100&maxDuration=1000`)), [t1]);
    const endTs = Math.floor(NOW_US / 1000);
    assert.deepEqual(ids(await zget(`traces?serviceName=${front}&endTs=${endTs - 60_000}&lookback=60000`)), []);
    assert.deepEqual(ids(await zget(`traces?serviceName=${front}&endTs=${endTs + 60_000}&lookback=120000`)), [t1, t2].sort());
    const many = await zget(`traceMany?traceIds=${t1},${t2},${hex(8)}`);
    assert.deepEqual(ids(many), [t1, t2].sort());
  });

  it('dependencies match the traffic', async () => {
    const deps = await zget(`dependencies?endTs=${Date.now() + 60_000}&lookback=600000`);
    const link = deps.find((l) => l.parent === front && l.child === back);
    assert.deepEqual(link, { parent: front, child: back, callCount: 2, errorCount: 1 });
    const jdeps = (await getJson(`${d.httpUrl}/api/dependencies?endTs=${Date.now() + 60_000}&lookback=600000`)).data;
    assert.equal(jdeps.find((l) => l.parent === front && l.child === back).callCount, 2);
  });

  it('parameter errors: 400 naming the parameter; 404 for an unknown trace', async () => {
    const cases = [
      ['spans', 'serviceName'],
      ['remoteServices', 'serviceName'],
      ['autocompleteValues', 'key'],
      ['traces?limit=0', 'limit'],
      ['traces?limit=x', 'limit'],
      ['traces?endTs=-5', 'endTs'],
      ['traces?lookback=0', 'lookback'],
      ['traces?minDuration=1ms', 'minDuration'],
      ['traces?maxDuration=10', 'minDuration'],
      ['traces?minDuration=10&maxDuration=5', 'maxDuration'],
      ['trace/not-hex', 'traceId'],
      ['traceMany', 'traceIds'],
      ['traceMany?traceIds=zz', 'traceIds'],
      ['dependencies', 'endTs'],
      ['dependencies?endTs=1&lookback=-1', 'lookback'],
    ];
    for (const [path, param] of cases) {
      const text = await zget(path, { status: 400 });
      assert.match(text, new RegExp(param), `${path}: ${text}`);
    }
    const unknown = hex(16);
    assert.equal(await zget(`trace/${unknown}`, { status: 404 }), `${unknown} not found\n`);
  });
});

describe('malformed input', () => {
  const good = () => ({ traceId: hex(8), id: hex(8), name: 'ok', timestamp: NOW_US, localEndpoint: { serviceName: `malformed-${run}` } });
  const rows = [
    { name: 'not JSON', body: '[{', status: 400, msg: /invalid JSON/ },
    { name: 'object, not array', body: '{"spans":[]}', status: 400, msg: /expected an array of spans/ },
    { name: 'timestamp as string', body: () => JSON.stringify([{ ...good(), timestamp: '1' }]), status: 400, msg: /spans\[0\]\.timestamp: expected a number/ },
    { name: 'tag value object', body: () => JSON.stringify([{ ...good(), tags: { a: {} } }]), status: 400, msg: /spans\[0\]\.tags\.a/ },
    { name: 'port as string', body: () => JSON.stringify([{ ...good(), localEndpoint: { port: '80' } }]), status: 400, msg: /localEndpoint\.port/ },
    { name: 'truncated protobuf', ct: PB, body: Buffer.from([0x0a, 0x05, 0x0a]), status: 400, msg: /malformed protobuf/ },
    { name: 'protobuf wire type 7', ct: PB, body: Buffer.from([0x0f]), status: 400, msg: /malformed protobuf/ },
    { name: 'corrupt gzip', enc: 'gzip', body: Buffer.from('not gzip'), status: 400, msg: /gzip/ },
    { name: 'text/plain', ct: 'text/plain', body: '[]', status: 415, msg: /content type/ },
    { name: 'Content-Encoding br', enc: 'br', body: '[]', status: 415, msg: /Content-Encoding/ },
    { name: 'body over --max-body', body: () => Buffer.alloc(MAX_BODY + 1, 0x20), status: 413, msg: /max-body/ },
    {
      name: 'gzip bomb (50 MB of JSON)', enc: 'gzip', status: 413, msg: /max-body/,
      body: () => gzipSync(Buffer.concat([Buffer.from('['), Buffer.alloc(50_000_000, 0x20), Buffer.from(']')]), { level: 9 }),
    },
  ];
  for (const r of rows) {
    it(`${r.name}: ${r.status}`, async () => {
      const body = typeof r.body === 'function' ? r.body() : r.body;
      const res = await post(body, { ct: r.ct ?? JSON_CT, enc: r.enc });
      const text = res.body.toString('utf8');
      assert.equal(res.status, r.status, text);
      assert.match(text, r.msg);
    });
  }

  it('an invalid span is refused alone: 202, the valid ones stored', async () => {
    const ok = good();
    const bad = [{ ...good(), traceId: 'xyz' }, { ...good(), id: undefined }, { ...good(), traceId: '0000000000000000' }, { ...good(), id: '01' }];
    const res = await post([bad[0], ok, ...bad.slice(1)]);
    assert.equal(res.status, 202);
    assert.equal((await zget(`trace/${ok.traceId}`)).length, 1);
    for (const b of bad) if (/^[0-9a-f]+$/.test(b.traceId ?? '') && !/^0+$/.test(b.traceId)) await zget(`trace/${b.traceId}`, { status: 404 });
    const metrics = (await request(`${d.httpUrl}/metrics`)).body.toString();
    assert.match(metrics, /meshscope_spans_rejected_total\{protocol="zipkin[^"]*",reason="invalid_span"\} [1-9]/);
  });

  it('still healthy afterwards', async () => {
    assert.equal((await request(`${d.httpUrl}/healthz`)).status, 200);
    assert.equal((await post([good()])).status, 202);
  });
});
