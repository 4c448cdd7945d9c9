/*
 * grpc.test.mjs: the gRPC listener (--otlp-grpc) against real gRPC clients.
 *
 * 1. An Envoy access-log service client (@grpc/grpc-js + @grpc/proto-loader on our own .proto
 *    files) streams a Bookinfo-like mesh: one stream per sidecar, its node naming the proxy.
 *    /api/logs holds every entry; istio_requests_total on /metrics matches the stream exactly;
 *    TCP entries are stored but are not HTTP requests.
 *    (The OTLP/gRPC SDK exporter round trip is in otlp_roundtrip.test.mjs.)
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
import { client, grpc, httpEntry, istioNode, openAccessLogStream, rawUnary, services, tcpEntry } from '../lib/grpc.mjs';

const { AccessLogService, TraceService } = services();
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
