/*
 * grpc.test.mjs: the gRPC listener (--otlp-grpc) against real gRPC clients.
 *
 * 1. An Envoy access-log service client (@grpc/grpc-js + @grpc/proto-loader on our own .proto
 *    files) streams a Bookinfo-like mesh: one stream per sidecar, its node naming the proxy.
 *    /api/logs holds every entry; istio_requests_total on /metrics matches the stream exactly;
 *    TCP entries are stored but are not HTTP requests.
 *    (The OTLP/gRPC SDK exporter round trip is in otlp_roundtrip.test.mjs.)
 *    OTLP logs and metrics through the SDK's gRPC exporters, and Envoy's metrics service stream
 *    (Prometheus-model families) re-exposed on /metrics with the node as job/instance.
 * 2. Bad cases: unknown method, garbage message, oversize message, wrong token, garbage bytes on
 *    the port, a client that sends and never reads, a stream faster than storage (tiny queue):
 *    the documented status codes, and the daemon stays up, bounded and answering.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { bookinfoSpans } from '../lib/bookinfo.mjs';
import { startDaemon, withStderr, sleep } from '../lib/daemon.mjs';
import { getJson, poll, request } from '../lib/http.mjs';
import { pbRequest } from '../lib/proto.mjs';
import { spawnSync } from 'node:child_process';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-grpc';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { client, grpc, httpEntry, istioNode, openAccessLogStream, openMetricsStream, rawUnary, services, tcpEntry } from '../lib/grpc.mjs';

const { AccessLogService, EnvoyMetricsService, TraceService } = services();
const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const NS = 'bookinfo';
const IP = { productpage: '10.1.0.1', details: '10.1.0.2', reviews: '10.1.0.3', ratings: '10.1.0.4' };

const daemons = [];
after(async () => {
  for (const d of daemons) await d.cleanup();
});

function sample(metrics, name, labels) {
  const lines = metrics.split('\n').filter((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
  return lines.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

/** A valid one-span ExportTraceServiceRequest. */
function oneSpan(service = 'grpc-test') {
  const now = BigInt(Date.now()) * 1_000_000n;
  return pbRequest([{ resource: [['service.name', { s: service }]], scopes: [{ name: 't', version: '1', spans: [{
    traceId: randomBytes(16), spanId: randomBytes(8), name: 'op', kind: 2, start: now, end: now + 1000n, attrs: [] }] }] }]);
}

const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

async function healthy(d) {
  assert.ok(d.alive(), 'daemon still running');
  const res = await request(`${d.httpUrl}/readyz`);
  assert.equal(res.status, 200);
  const c = client(TraceService, d.grpcAddr);
  try {
    const r = await rawUnary(c, EXPORT, oneSpan());
    assert.equal(r.err, null, `a valid Export still succeeds: ${r.err?.message}`);
  } finally {
    c.close();
  }
}

/*
 * The mesh: page view i at t0 gives, per call, an outbound entry on the caller's sidecar and an
 * inbound entry on the callee's; productpage's own request is inbound only. reviews fails (503 UF
 * on both sides, productpage then 500) on every 4th view. Returns entries per sidecar, each with
 * what the test expects of it.
 */
function meshEntries(views, t0) {
  const per = { productpage: [], details: [], reviews: [], ratings: [] };
  const traces = [];
  for (let i = 0; i < views; i++) {
    const fail = i % 4 === 0;
    const spans = bookinfoSpans(t0 + i * 50, {
      timing: { root: 40, details: { at: 1, ms: 10 }, reviews: { at: 14, ms: 20 }, ratings: { at: 16, ms: 10 } },
      codes: { root: fail ? 500 : 200, reviews: fail ? 503 : 200 },
    });
    const traceId = randomBytes(16).toString('hex');
    traces.push(traceId);
    for (const s of spans) {
      const inbound = s.kind === 'SERVER';
      per[s.service].push({
        start: s.start, ms: s.end - s.start, code: s.code, flags: s.code === 503 ? { upstream_connection_failure: true } : {},
        inbound, self: s.service, peer: s.peer, ns: NS, path: inbound ? `/${s.service}/${i}` : `/${s.peer}/${i}`,
        traceId, spanId: randomBytes(8).toString('hex'), requestId: `req-${i}-${s.call}-${s.kind}`,
        received: 17, sent: inbound ? 100 : 101,
      });
    }
  }
  return { per, traces };
}

describe('Envoy access-log service: a Bookinfo mesh', () => {
  let d;
  before(async () => {
    d = await startDaemon({ logLevel: 'info' });
    daemons.push(d);
  });
  test('every entry stored; istio_requests_total matches the stream', () => withStderr(() => d, async () => {
    const { per, traces } = meshEntries(12, Date.now() - 60_000);
    const als = client(AccessLogService, d.grpcAddr);
    let tcp = 0;
    try {
      const streams = Object.entries(per).map(([svc, entries]) => {
        const { call, done } = openAccessLogStream(als);
        /* The identifier comes with the first message only; entries in messages of 5. */
        for (let k = 0; k < entries.length; k += 5) {
          const msg = { http_logs: { log_entry: entries.slice(k, k + 5).map(httpEntry) } };
          if (k === 0) msg.identifier = { node: istioNode(svc, NS, IP[svc]), log_name: 'als' };
          call.write(msg);
        }
        if (svc === 'reviews') {
          /* reviews also talks to a database over TCP */
          call.write({ tcp_logs: { log_entry: [0, 1, 2].map((i) => tcpEntry({ start: Date.now() - 1000 + i, ms: 5, received: 300, sent: 4000, peer: 'mysql', ns: NS })) } });
          tcp = 3;
        }
        call.end();
        return done;
      });
      for (const r of await Promise.all(streams)) assert.equal(r.err, null, `stream status: ${r.err?.message}`);
    } finally {
      als.close();
    }
    const http = Object.values(per).reduce((n, e) => n + e.length, 0);

    /* /api/logs: every entry, under its sidecar's service (from the node), joined to its trace. */
    for (const [svc, entries] of Object.entries(per)) {
      const want = entries.length + (svc === 'reviews' ? tcp : 0);
      const got = await poll(`${svc} logs`, async () => {
        const r = await getJson(`${d.httpUrl}/api/logs?service=${svc}&limit=1000`);
        return r.total === want ? r : null;
      });
      assert.equal(got.data.length, want);
      const byReq = new Map(got.data.filter((x) => x.request_id).map((x) => [x.request_id, x]));
      for (const e of entries) {
        const x = byReq.get(e.requestId);
        assert.ok(x, `entry ${e.requestId} stored`);
        assert.equal(x.response_code, e.code);
        assert.equal(x.traceID, e.traceId);
        assert.equal(x.spanID, e.spanId);
        assert.equal(x.direction, e.inbound ? 'inbound' : 'outbound');
        assert.equal(x.duration_ms, e.ms);
        assert.equal(x.response_flags, e.code === 503 ? 'UF' : '-');
        const line = JSON.parse(x.line);
        assert.equal(line.method, 'GET');
        assert.equal(line.path, e.path);
        assert.equal(line.protocol, 'HTTP/1.1');
        assert.equal(line.upstream_host, '10.0.0.7:9080');
        assert.equal(line.bytes_sent, e.sent);
      }
      if (svc === 'reviews') {
        const t = got.data.filter((x) => JSON.parse(x.line).protocol === 'TCP');
        assert.equal(t.length, tcp, 'TCP entries stored');
      }
    }
    const one = await getJson(`${d.httpUrl}/api/logs?traceID=${traces[1]}`);
    assert.equal(one.total, 7, 'a page view: 1 + 2 x 3 entries');

    const metrics = (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');
    const istio = metrics.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n');
    assert.equal(sample(metrics, 'istio_requests_total', []), http, `one sample per HTTP entry, none per TCP entry\n${istio}`);
    const expect = (pred) => Object.values(per).flat().filter(pred).length;
    assert.equal(sample(metrics, 'istio_requests_total', ['reporter="destination"']), expect((e) => e.inbound));
    assert.equal(sample(metrics, 'istio_requests_total', ['reporter="source"']), expect((e) => !e.inbound));
    assert.equal(sample(metrics, 'istio_requests_total', ['reporter="destination"', 'destination_workload="reviews"', 'response_code="503"', 'response_flags="UF"']),
      expect((e) => e.inbound && e.self === 'reviews' && e.code === 503), istio);
    assert.equal(sample(metrics, 'istio_requests_total', ['reporter="source"', 'destination_service_name="reviews"', `destination_service_namespace="${NS}"`, 'response_code="200"']),
      expect((e) => !e.inbound && e.peer === 'reviews' && e.code === 200), istio);
    assert.equal(sample(metrics, 'istio_requests_total', ['reporter="destination"', 'destination_workload="productpage"', 'response_code="500"']),
      expect((e) => e.inbound && e.self === 'productpage' && e.code === 500), istio);
    assert.equal(sample(metrics, 'meshscope_spans_accepted_total', ['protocol="envoy_als_grpc"']), http + tcp);
    assert.equal(sample(metrics, 'meshscope_ingest_requests_total', ['protocol="envoy_als_grpc"']), 4, 'one per stream');
  }));
  after(async () => {
    await d.stop();
  });
});

describe('bad input and hostile clients', () => {
  let d;
  let token;
  before(async () => {
    token = randomBytes(24).toString('hex');
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(path.join(tmpdir(), 'meshscope-grpc-'));
    const file = path.join(dir, 'tokens');
    await writeFile(file, `ingest=${token}\n`);
    d = await startDaemon({ dir, logLevel: 'info', args: ['--auth-token-file', file, '--max-body', '64KiB', '--idle-timeout', '4s'] });
    daemons.push(d);
  });
  const auth = (t = token) => {
    const m = new grpc.Metadata();
    m.set('authorization', `Bearer ${t}`);
    return m;
  };
  const it = (name, fn) => test(name, () => withStderr(() => d, fn));

  it('unknown method: UNIMPLEMENTED', async () => {
    const c = client(TraceService, d.grpcAddr);
    try {
      const r = await rawUnary(c, '/opentelemetry.proto.collector.trace.v1.TraceService/Nope', oneSpan(), auth());
      assert.equal(r.err?.code, grpc.status.UNIMPLEMENTED, r.err?.message);
      assert.match(r.err.details, /unknown method/);
    } finally {
      c.close();
    }
  });

  it('wrong or missing token: UNAUTHENTICATED; the right one: OK', async () => {
    const c = client(TraceService, d.grpcAddr);
    try {
      let r = await rawUnary(c, EXPORT, oneSpan(), auth('x'.repeat(48)));
      assert.equal(r.err?.code, grpc.status.UNAUTHENTICATED, r.err?.message);
      r = await rawUnary(c, EXPORT, oneSpan());
      assert.equal(r.err?.code, grpc.status.UNAUTHENTICATED, r.err?.message);
      r = await rawUnary(c, EXPORT, oneSpan('authed'), auth());
      assert.equal(r.err, null, r.err?.message);
      assert.equal(r.resp.length, 0, 'ExportTraceServiceResponse without partial_success');
    } finally {
      c.close();
    }
  });

  it('garbage message: INVALID_ARGUMENT naming the problem', async () => {
    const c = client(TraceService, d.grpcAddr);
    try {
      const r = await rawUnary(c, EXPORT, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]), auth());
      assert.equal(r.err?.code, grpc.status.INVALID_ARGUMENT, r.err?.message);
      assert.match(r.err.details, /ExportTraceServiceRequest|protobuf|truncated|length/i);
      const als = client(AccessLogService, d.grpcAddr);
      const { call, done } = openAccessLogStream(als, auth());
      call.write({ http_logs: { log_entry: [{ common_properties: {} }] } }); /* no start_time: refused alone */
      call.end();
      const rs = await done;
      assert.equal(rs.err, null, 'a refused entry does not fail the stream');
      als.close();
      const bad = await rawUnary(c, '/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs', Buffer.from([0x12, 0x05, 0x0a]), auth());
      assert.equal(bad.err?.code, grpc.status.INVALID_ARGUMENT, bad.err?.message);
    } finally {
      c.close();
    }
  });

  it('oversize message: RESOURCE_EXHAUSTED before it is read', async () => {
    const c = client(TraceService, d.grpcAddr);
    try {
      const r = await rawUnary(c, EXPORT, Buffer.alloc(100 * 1024, 0x0a), auth());
      assert.equal(r.err?.code, grpc.status.RESOURCE_EXHAUSTED, r.err?.message);
      assert.match(r.err.details, /--max-body/);
      await healthyAuthed();
    } finally {
      c.close();
    }
  });

  it('unsupported grpc-encoding: UNIMPLEMENTED', async () => {
    const c = client(TraceService, d.grpcAddr, { 'grpc.default_compression_algorithm': 2 /* gzip */ });
    try {
      /* gzip works ... */
      const r = await rawUnary(c, EXPORT, oneSpan(), auth());
      assert.equal(r.err, null, r.err?.message);
    } finally {
      c.close();
    }
    /* ... an unknown encoding does not: a raw HTTP/2 request */
    const http2 = await import('node:http2');
    const session = http2.connect(`http://${d.grpcAddr}`);
    try {
      const body = oneSpan();
      const frame = Buffer.concat([Buffer.from([1, 0, 0, 0, 0]), body]);
      frame.writeUInt32BE(body.length, 1);
      const req = session.request({ ':method': 'POST', ':path': EXPORT, 'content-type': 'application/grpc', te: 'trailers',
        'grpc-encoding': 'snappy', authorization: `Bearer ${token}` });
      const headers = await new Promise((resolve, reject) => {
        req.on('response', resolve);
        req.on('error', reject);
        req.end(frame);
      });
      assert.equal(headers['grpc-status'], String(grpc.status.UNIMPLEMENTED));
      assert.match(decodeURIComponent(headers['grpc-message']), /grpc-encoding 'snappy'/);
      /* A wrong content type is HTTP 415. */
      const req2 = session.request({ ':method': 'POST', ':path': EXPORT, 'content-type': 'application/json' });
      const h2 = await new Promise((resolve, reject) => {
        req2.on('response', resolve);
        req2.on('error', reject);
        req2.end('{}');
      });
      assert.equal(h2[':status'], 415);
    } finally {
      session.close();
    }
  });

  async function healthyAuthed() {
    assert.ok(d.alive(), 'daemon still running');
    assert.equal((await request(`${d.httpUrl}/readyz`)).status, 200);
    const c = client(TraceService, d.grpcAddr);
    try {
      const r = await rawUnary(c, EXPORT, oneSpan(), auth());
      assert.equal(r.err, null, `a valid Export still succeeds: ${r.err?.message}`);
    } finally {
      c.close();
    }
  }

  it('garbage bytes on the port: connection closed, daemon healthy', async () => {
    for (const junk of [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), randomBytes(4096),
      Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), randomBytes(512)])]) {
      const closed = await new Promise((resolve) => {
        const s = net.connect(Number(d.grpcAddr.split(':')[1]), '127.0.0.1', () => s.write(junk));
        const timer = setTimeout(() => {
          s.destroy();
          resolve(false);
        }, 5000);
        s.on('data', () => {});
        s.on('error', () => {});
        s.on('close', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      assert.ok(closed, 'the server closed the connection');
    }
    await healthyAuthed();
  });

  it('a client that sends and never reads: cut off, daemon healthy', async () => {
    /* Preface, SETTINGS, then PINGs (each owes an ACK) while never reading the answers. */
    const ping = Buffer.from([0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    const s = net.connect(Number(d.grpcAddr.split(':')[1]), '127.0.0.1');
    s.on('error', () => {});
    await new Promise((r) => s.on('connect', r));
    s.pause();
    s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), settings]));
    let closedEarly = false;
    s.on('close', () => (closedEarly = true));
    const rss0 = rssKiB(d.pid);
    for (let i = 0; i < 200 && !closedEarly; i++) {
      s.write(Buffer.concat(Array(1000).fill(ping)));
      await sleep(5);
    }
    await healthyAuthed();
    assert.ok(rssKiB(d.pid) - rss0 < 64 * 1024, 'RSS grew by less than 64 MiB');
    s.destroy();
  });
  after(async () => {
    await d.stop();
  });
});

describe('a stream faster than storage (--queue-size 1MiB)', () => {
  let d;
  before(async () => {
    d = await startDaemon({ logLevel: 'debug', args: ['--queue-size', '1MiB', '--flush-interval', '50ms'] });
    daemons.push(d);
  });
  test('bounded: RSS stays low, OK or UNAVAILABLE, whatever was acknowledged is stored', () => withStderr(() => d, async () => {
    const als = client(AccessLogService, d.grpcAddr);
    const N = 100; /* messages of 200 entries (~25 MiB decoded): 25 times what the queue holds */
    const start = Date.now() - 3_600_000; /* message m's entries start at start + m s + k ms */
    const msgs = [];
    for (let m = 0; m < N; m++) {
      msgs.push({ http_logs: { log_entry: Array.from({ length: 200 }, (_, k) => httpEntry({
        start: start + m * 1000 + k, ms: 3, code: 200, inbound: true, self: 'flood', ns: NS, path: `/flood/${m}/${k}`.padEnd(200, 'x'),
        requestId: `f-${m}-${k}`, received: 1, sent: 2 })) } });
    }
    const { call, done } = openAccessLogStream(als);
    let stalls = 0;
    let maxRss = 0;
    let i = 0;
    const node = { identifier: { node: istioNode('flood', NS, '10.9.9.9') } };
    await new Promise((resolve) => {
      const pump = () => {
        while (i < N) {
          const ok = call.write(i === 0 ? { ...node, ...msgs[i] } : msgs[i]);
          i++;
          if (!ok) {
            stalls++;
            maxRss = Math.max(maxRss, rssKiB(d.pid));
            call.once('drain', pump);
            return;
          }
        }
        call.end();
        resolve();
      };
      call.on('error', () => resolve());
      pump();
    });
    const r = await done;
    als.close();
    maxRss = Math.max(maxRss, rssKiB(d.pid));
    /* Whether the queue filled (the server then held the stream: debug log) depends on how fast
     * storage is on this machine (under ASan decoding is the slower side): reported, not
     * asserted. test_grpc holds a stream against a full queue deterministically. */
    const held = /stream held by flow control/.test(d.stderr());
    console.log(`flood: server held the stream: ${held}; client writes refused: ${stalls}; status ${r.err?.code ?? 'OK'}`);
    assert.ok(r.err === null || r.err.code === grpc.status.UNAVAILABLE, `status: ${r.err?.message}`);
    assert.ok(maxRss < 512 * 1024, `RSS stayed bounded: ${maxRss} KiB`);
    if (r.err === null) {
      /* Acknowledged (OK) means every entry was taken: all of them end up stored. Counted in
       * windows of 50 messages (10,000 entries, /api/logs's largest page). */
      for (let w = 0; w < N / 50; w++) {
        const from = (start + w * 50_000) * 1000;
        const to = (start + (w + 1) * 50_000) * 1000 - 1;
        await poll(`flood window ${w} stored`, async () => {
          const got = await getJson(`${d.httpUrl}/api/logs?service=flood&start=${from}&end=${to}&limit=10000`);
          return got.total === 50 * 200 ? got : null;
        }, { timeoutMs: 30_000, attempts: 300, intervalMs: 100 });
      }
    }
    await healthy(d);
  }));
  after(async () => {
    await d.stop();
  });
});

describe('OTLP logs and metrics over gRPC; Envoy metrics service', () => {
  let d;
  before(async () => {
    d = await startDaemon({ logLevel: 'info' });
    daemons.push(d);
  });
  const it = (name, fn) => test(name, () => withStderr(() => d, fn));
  const metricsText = async () => (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');

  it('OTLP logs through the gRPC log exporter land in /api/logs', async () => {
    const results = [];
    const inner = new OTLPLogExporter({ url: `http://${d.grpcAddr}`, timeoutMillis: 10_000 });
    const exporter = { export: (r, cb) => inner.export(r, (x) => { results.push(x); cb(x); }), shutdown: () => inner.shutdown(), forceFlush: () => inner.forceFlush() };
    const svc = `logsvc-${randomBytes(3).toString('hex')}`;
    const provider = new LoggerProvider({ resource: resourceFromAttributes({ 'service.name': svc }),
      processors: [new BatchLogRecordProcessor({ exporter, scheduledDelayMillis: 600_000 })] });
    const logger = provider.getLogger('grpc-test');
    for (let i = 0; i < 5; i++) logger.emit({ severityNumber: SeverityNumber.WARN, severityText: 'WARN', body: `line ${i}`, attributes: { i } });
    await provider.forceFlush();
    await provider.shutdown();
    assert.ok(results.length > 0 && results.every((r) => r.code === ExportResultCode.SUCCESS), JSON.stringify(results));
    const got = await getJson(`${d.httpUrl}/api/logs?service=${svc}`);
    assert.equal(got.total, 5, 'acknowledged means committed: all five at once');
    assert.deepEqual(got.data.map((x) => x.body).sort(), [0, 1, 2, 3, 4].map((i) => `line ${i}`));
  });

  it('OTLP metrics through the gRPC metric exporter appear on /metrics', async () => {
    const results = [];
    const inner = new OTLPMetricExporter({ url: `http://${d.grpcAddr}`, timeoutMillis: 10_000 });
    const exporter = {
      export: (m, cb) => inner.export(m, (x) => { results.push(x); cb(x); }),
      forceFlush: () => inner.forceFlush(),
      shutdown: () => inner.shutdown(),
      selectAggregationTemporality: (k) => inner.selectAggregationTemporality(k),
    };
    const provider = new MeterProvider({ resource: resourceFromAttributes({ 'service.name': 'grpcmeter' }),
      readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })] });
    const counter = provider.getMeter('grpc-test').createCounter('grpc.test.requests', { description: 'test requests' });
    counter.add(7, { route: '/x' });
    await provider.forceFlush();
    await provider.shutdown();
    assert.ok(results.length > 0 && results.every((r) => r.code === ExportResultCode.SUCCESS), JSON.stringify(results));
    const text = await metricsText();
    assert.equal(sample(text, 'grpc_test_requests_total', ['job="grpcmeter"', 'route="/x"']), 7, text.split('\n').filter((l) => l.includes('grpc_test')).join('\n'));
  });

  it('Envoy StreamMetrics families are re-exposed with the node as job/instance, and pass promtool', async () => {
    const ms = client(EnvoyMetricsService, d.grpcAddr);
    const node = istioNode('reviews', NS, IP.reviews);
    const now = String(Date.now());
    const families = (rq) => [
      { name: 'envoy_cluster_upstream_rq', help: 'upstream requests', type: 'COUNTER',
        metric: [{ label: [{ name: 'envoy_cluster_name', value: 'outbound|9080||ratings' }, { name: 'envoy_response_code', value: '200' }], counter: { value: rq }, timestamp_ms: now }] },
      { name: 'envoy_server_live', type: 'GAUGE', metric: [{ gauge: { value: 1 } }] },
      { name: 'envoy_cluster_upstream_rq_time', help: 'upstream latency', type: 'HISTOGRAM',
        metric: [{ label: [{ name: 'envoy_cluster_name', value: 'outbound|9080||ratings' }],
          histogram: { sample_count: '10', sample_sum: 123, bucket: [{ cumulative_count: '2', upper_bound: 5 }, { cumulative_count: '9', upper_bound: 25 }, { cumulative_count: '10', upper_bound: Infinity }] } }] },
      { name: 'envoy_bad', type: 'GAUGE_HISTOGRAM', metric: [{}] },
    ];
    try {
      const { call, done } = openMetricsStream(ms);
      call.write({ identifier: { node }, envoy_metrics: families(41) });
      call.write({ envoy_metrics: families(42) }); /* the next flush: cumulative, the latest wins */
      call.end();
      const r = await done;
      assert.equal(r.err, null, r.err?.message);
    } finally {
      ms.close();
    }
    const text = await metricsText();
    const envoy = text.split('\n').filter((l) => l.startsWith('envoy_')).join('\n');
    const who = [`job="${node.cluster}"`, `instance="${node.id}"`];
    assert.equal(sample(text, 'envoy_cluster_upstream_rq_total', [...who, 'envoy_response_code="200"']), 42, envoy);
    assert.equal(sample(text, 'envoy_server_live', who), 1, envoy);
    assert.equal(sample(text, 'envoy_cluster_upstream_rq_time_bucket', [...who, 'le="25"']), 9, envoy);
    assert.equal(sample(text, 'envoy_cluster_upstream_rq_time_bucket', [...who, 'le="+Inf"']), 10, envoy);
    assert.equal(sample(text, 'envoy_cluster_upstream_rq_time_count', who), 10, envoy);
    assert.ok(!/envoy_bad/.test(text), 'a GAUGE_HISTOGRAM family is refused');
    assert.equal(sample(text, 'meshscope_spans_rejected_total', ['protocol="envoy_metrics_grpc"']), 2, 'one refused metric per message');
    const pt = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    const findings = `${pt.stdout}\n${pt.stderr}`.split('\n').map((l) => l.trim()).filter(Boolean);
    const other = findings.filter((l) => !/use base unit "seconds" instead of "milliseconds"$/.test(l));
    assert.deepEqual(other, [], `promtool findings:\n${findings.join('\n')}`);
  });
  after(async () => {
    await d.stop();
  });
});

test('TLS (--tls-cert/--tls-key): ALPN h2, a grpc-js TLS client exports; a cleartext one cannot', async () => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { execFileSync, spawn } = await import('node:child_process');
  const { freePorts, MESHSCOPE_BIN } = await import('../lib/daemon.mjs');
  const dir = await mkdtemp(path.join(tmpdir(), 'meshscope-grpc-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const [port] = await freePorts(1);
  const child = spawn(MESHSCOPE_BIN, ['--db', path.join(dir, 'db'), '--http', 'off', '--otlp-http', 'off', '--zipkin', 'off',
    '--otlp-grpc', `127.0.0.1:${port}`, '--tls-cert', cert, '--tls-key', key], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b) => (stderr += b));
  const exited = new Promise((r) => child.on('exit', (code) => r(code)));
  try {
    await poll('TLS listener up', () => /otlp-grpc listening on .* TLS/.test(stderr), { timeoutMs: 10_000, intervalMs: 50 });
    const tls = new TraceService(`127.0.0.1:${port}`, grpc.credentials.createSsl(readFileSync(cert)));
    const r = await rawUnary(tls, EXPORT, oneSpan('tls-client'));
    tls.close();
    assert.equal(r.err, null, `${r.err?.message}\n${stderr}`);
    const plain = client(TraceService, `127.0.0.1:${port}`);
    const p = await rawUnary(plain, EXPORT, oneSpan(), new grpc.Metadata(), { deadline: Date.now() + 3000 });
    plain.close();
    assert.notEqual(p.err, null, 'a cleartext client gets no answer');
    process.kill(child.pid, 'SIGTERM');
    assert.equal(await exited, 0, stderr);
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
