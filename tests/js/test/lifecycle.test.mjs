/*
 * lifecycle.test.mjs: flag errors, graceful shutdown with a full queue, restart on the same
 * database, the three listeners, and the self-metrics counters.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { runBinary, startDaemon, withStderr } from '../lib/daemon.mjs';
import { fetchTrace, poll, request, searchTraces } from '../lib/http.mjs';
import { decodeExportResponse, decodeStatus, jsonRequest, pbRequest } from '../lib/proto.mjs';

const run = randomBytes(3).toString('hex');
const NOW_NS = BigInt(Date.now() - 60_000) * 1_000_000n;

describe('command line', () => {
  /* [flags, the flag the one-line error must name] */
  const bad = [
    [['--bogus'], '--bogus'],
    [['--retention', 'xyz'], '--retention'],
    [['--max-body', 'lots'], '--max-body'],
    [['--log-level', 'loud'], '--log-level'],
    [['--http', 'not-an-address'], '--http'],
    [['--http'], '--http'], /* missing value */
  ];
  for (const [args, flag] of bad) {
    test(`${args.join(' ')} -> exit 2 naming ${flag}`, async () => {
      const r = await runBinary(['--db', '/nonexistent-dir/x.db', ...args], { timeoutMs: 5000 });
      assert.equal(r.timedOut, false, 'did not exit');
      assert.equal(r.code, 2, `exit code ${r.code} (signal ${r.signal}); stderr: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `want a one-line error, got:\n${r.stderr}`);
      assert.ok(lines[0].includes(flag), `error does not name ${flag}: ${lines[0]}`);
      assert.equal(r.stdout, '', 'nothing on stdout');
    });
  }
});

/** Builds `spans` spans in traces of `perTrace`, for service; returns {body, traces: [hex...]}. */
function batch(service, traces, perTrace, format) {
  const ids = [];
  const spans = [];
  for (let t = 0; t < traces; t++) {
    const traceId = randomBytes(16);
    ids.push(traceId.toString('hex'));
    const root = randomBytes(8);
    for (let i = 0; i < perTrace; i++) {
      spans.push({
        traceId,
        spanId: i === 0 ? root : randomBytes(8),
        ...(i === 0 ? {} : { parentSpanId: root }),
        name: `op-${i % 7}`,
        kind: i === 0 ? 2 : 3,
        start: NOW_NS + BigInt(i) * 1000n,
        end: NOW_NS + BigInt(i) * 1000n + 500_000n,
        attrs: [['i', { i: BigInt(i) }], ['payload', { s: 'p'.repeat(64) }]],
      });
    }
  }
  const r = [{ resource: [['service.name', { s: service }]], scopes: [{ name: 'lifecycle', spans }] }];
  const body = format === 'json' ? Buffer.from(JSON.stringify(jsonRequest(r))) : pbRequest(r);
  return { body, traces: ids, contentType: format === 'json' ? 'application/json' : 'application/x-protobuf' };
}

describe('daemon lifecycle', () => {
  test('SIGTERM drains acknowledged spans; a restart serves them all', async (t) => {
    const service = `drain-${run}`;
    /* A 10 s group-commit window: the writer holds a small tail batch (below its commit threshold)
     * for up to 10 s, so SIGTERM arrives while acknowledged spans are still uncommitted. */
    const first = await startDaemon({ args: ['--flush-interval', '10s'] });
    let second;
    try {
      await withStderr(() => first, async () => {
        /* 5000 spans: 10 requests of 10 traces x 49 spans sent concurrently, alternating
         * encodings, then a 100-span tail (10 traces x 10). */
        const reqs = Array.from({ length: 10 }, (_, k) => batch(service, 10, 49, k % 2 ? 'json' : 'proto'));
        const send = (b) => request(`${first.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': b.contentType }, body: b.body });
        const responses = await Promise.all(reqs.map(send));
        const tail = batch(service, 10, 10, 'proto');
        reqs.push(tail);
        responses.push(await send(tail));
        const acked = [];
        for (const [k, res] of responses.entries()) {
          const perTrace = k < 10 ? 49 : 10;
          if (res.status === 200) {
            if (reqs[k].contentType === 'application/x-protobuf') {
              assert.equal(decodeExportResponse(res.body).partialSuccess?.rejectedSpans ?? 0, 0, 'no span rejected');
            } else {
              assert.ok(!Number(JSON.parse(res.body.toString('utf8') || '{}').partialSuccess?.rejectedSpans), 'no span rejected');
            }
            acked.push(...reqs[k].traces.map((id) => [id, perTrace]));
          } else {
            /* A full queue may refuse, but only with back-pressure statuses and Retry-After. */
            assert.ok([429, 503].includes(res.status), `request ${k}: status ${res.status} ${res.body.toString('utf8').slice(0, 200)}`);
            assert.ok(res.headers['retry-after'], `request ${k}: ${res.status} without Retry-After`);
          }
        }
        assert.ok(acked.length >= 10, `only ${acked.length} traces acknowledged`);
        const m = parseProm((await request(`${first.httpUrl}/metrics`)).body.toString('utf8')).samples;
        t.diagnostic(`at SIGTERM: ${total(m, 'meshscope_spans_stored_total')} of ${acked.reduce((a, [, n]) => a + n, 0)} acknowledged spans committed`);
        /* Stop at once: the writer still holds queued batches, and must drain them. */
        await first.stop();

        second = await startDaemon({ dir: first.dir, db: first.db });
        const missing = [];
        for (const [id, n] of acked) {
          const tr = await fetchTrace(second.httpUrl, id);
          if (!tr || tr.spans.length !== n) missing.push(`${id}: ${tr ? tr.spans.length : 0}/${n} spans`);
        }
        assert.deepEqual(missing, [], `acknowledged traces lost across SIGTERM + restart (${acked.length} acknowledged)`);
        const found = await searchTraces(second.httpUrl, [['service', service], ['limit', '1000']]);
        assert.equal(found.length, acked.length, 'search by service after restart');
      });
      if (second) await withStderr(() => second, () => second.stop());
    } finally {
      if (second) await second.cleanup();
      await first.cleanup();
      await rm(first.dir, { recursive: true, force: true });
    }
  });

  test('a full queue answers 503/429 + Retry-After; what was acknowledged survives SIGTERM', async () => {
    /* A 1 MiB queue and a 10 s group-commit window: the writer holds the first small batches while
     * it waits for more spans, so a burst of large batches (2,000 spans: ~0.4 MiB each once
     * compacted in the queue) overflows the queue. --ack=received so
     * requests are answered when queued (under the default, each burst would wait for the 10 s
     * window); a clean stop must still store everything acknowledged. */
    const service = `backpressure-${run}`;
    const first = await startDaemon({ args: ['--queue-size', '1MiB', '--flush-interval', '10s', '--ack', 'received'] });
    let second;
    try {
      await withStderr(() => first, async () => {
        const acked = [];
        const refused = [];
        let refusedSpans = 0;
        for (let round = 0; round < 30 && !(round >= 14 && refused.length > 0); round++) {
          const perTrace = round < 14 ? 5 : 2000;
          const reqs = Array.from({ length: 20 }, () => batch(service, 1, perTrace, 'proto'));
          const responses = await Promise.all(reqs.map((b) =>
            request(`${first.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': b.contentType }, body: b.body })));
          for (const [k, res] of responses.entries()) {
            if (res.status === 200) {
              acked.push([reqs[k].traces[0], perTrace]);
              continue;
            }
            assert.ok([429, 503].includes(res.status), `status ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`);
            const ra = String(res.headers['retry-after'] ?? '');
            assert.ok(/^\d+$/.test(ra) || !Number.isNaN(Date.parse(ra)), `${res.status} with Retry-After ${JSON.stringify(ra)}`);
            refused.push(reqs[k].traces[0]);
            refusedSpans += perTrace;
          }
        }
        assert.ok(refused.length > 0, 'the queue never filled: no 503/429 in 30 bursts');
        const m = parseProm((await request(`${first.httpUrl}/metrics`)).body.toString('utf8')).samples;
        assert.equal(total(m, 'meshscope_ingest_requests_rejected_total{protocol="otlp_http_protobuf",reason="queue_full"}'), refused.length, 'requests refused for a full queue');
        assert.equal(total(m, 'meshscope_spans_rejected_total{protocol="otlp_http_protobuf",reason="queue_full"}'), refusedSpans, 'spans refused for a full queue');
        await first.stop();

        second = await startDaemon({ dir: first.dir, db: first.db });
        const lost = [];
        for (const [id, n] of acked) {
          const t = await fetchTrace(second.httpUrl, id);
          if (!t || t.spans.length !== n) lost.push(`${id}: ${t ? t.spans.length : 0}/${n}`);
        }
        assert.deepEqual(lost, [], `acknowledged spans lost (${acked.length} requests acknowledged)`);
        const stored = [];
        for (const id of refused) if (await fetchTrace(second.httpUrl, id)) stored.push(id);
        assert.deepEqual(stored, [], 'refused requests must store nothing');
      });
      if (second) await withStderr(() => second, () => second.stop());
    } finally {
      if (second) await second.cleanup();
      await first.cleanup();
      await rm(first.dir, { recursive: true, force: true });
    }
  });

  test('a request that decodes to more than the whole queue is 413, not a 503 retried for ever', async () => {
    const d = await startDaemon({ args: ['--queue-size', '1MiB'] });
    try {
      await withStderr(() => d, async () => {
        const huge = batch(`huge-${run}`, 1, 6000, 'proto');
        const res = await request(`${d.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': huge.contentType }, body: huge.body });
        assert.equal(res.status, 413, `status ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`);
        assert.match(decodeStatus(res.body).message, /more than the whole ingest queue/);
        assert.equal(await fetchTrace(d.httpUrl, huge.traces[0]), null, 'nothing of it stored');
        const small = batch(`huge-${run}`, 1, 5, 'proto');
        const ok = await request(`${d.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': small.contentType }, body: small.body });
        assert.equal(ok.status, 200, 'a smaller request after it is accepted');
        const m = parseProm((await request(`${d.httpUrl}/metrics`)).body.toString('utf8')).samples;
        assert.equal(total(m, 'meshscope_ingest_requests_rejected_total{protocol="otlp_http_protobuf",reason="too_large"}'), 1);
      });
      await d.stop();
    } finally {
      await d.cleanup();
    }
  });

  test('every listener serves every route', async () => {
    const d = await startDaemon();
    try {
      await withStderr(() => d, async () => {
        for (const base of [d.httpUrl, d.otlpUrl, d.zipkinUrl]) {
          for (const path of ['/healthz', '/readyz', '/metrics', '/api/services']) {
            const res = await request(`${base}${path}`);
            assert.equal(res.status, 200, `GET ${base}${path}: ${res.status}`);
          }
          const b = batch(`listeners-${run}`, 1, 1, 'proto');
          const res = await request(`${base}/v1/traces`, { method: 'POST', headers: { 'content-type': b.contentType }, body: b.body });
          assert.equal(res.status, 200, `POST ${base}/v1/traces: ${res.status}`);
        }
        const notFound = await request(`${d.httpUrl}/no/such/route`);
        assert.equal(notFound.status, 404);
      });
      await d.stop();
    } finally {
      await d.cleanup();
    }
  });
});

/* ---------------------------------------------------------------------------------------------
 * /metrics: Prometheus text exposition.
 * ------------------------------------------------------------------------------------------- */

/** Parses Prometheus text format into {samples: Map(series -> value), types: Map(name -> type)}. */
function parseProm(text) {
  const samples = new Map();
  const types = new Map();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const m = /^# TYPE (\S+) (\S+)/.exec(line);
    if (m) {
      types.set(m[1], m[2]);
      continue;
    }
    if (line.startsWith('#')) continue;
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    assert.ok(s, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const value = Number(s[3] === '+Inf' ? Infinity : s[3] === '-Inf' ? -Infinity : s[3]);
    assert.ok(!Number.isNaN(value) || s[3] === 'NaN', `bad value in ${line}`);
    samples.set(s[1] + (s[2] ?? ''), value);
  }
  return { samples, types };
}

async function scrape(url) {
  const res = await request(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain/, 'Prometheus text content type');
  return parseProm(res.body.toString('utf8'));
}

/** The total over all series of metric `name` (all label sets). */
function total(samples, name) {
  let sum = 0;
  let seen = false;
  for (const [series, v] of samples) {
    if (series === name || series.startsWith(`${name}{`)) {
      sum += v;
      seen = true;
    }
  }
  return seen ? sum : undefined;
}

/* The span counters of collector/selfmetrics.c: received (in decodable requests) = accepted +
 * rejected (labelled by protocol and reason). */
const METRICS = {
  received: 'meshscope_spans_received_total',
  accepted: 'meshscope_spans_accepted_total',
  rejected: 'meshscope_spans_rejected_total',
};

test('/metrics counts received, accepted and rejected spans', async () => {
  const d = await startDaemon({ args: ['--max-body', '64KiB'] });
  try {
    await withStderr(() => d, async () => {
      const before = await scrape(d.httpUrl);
      for (const [what, name] of Object.entries(METRICS)) {
        assert.equal(before.types.get(name), 'counter', `${what}: ${name} missing or not a counter; metrics: ${[...before.types.keys()].join(', ')}`);
      }
      const v0 = Object.fromEntries(Object.entries(METRICS).map(([k, n]) => [k, total(before.samples, n)]));

      /* 30 valid spans, then 4 valid + 3 invalid (zero trace id). */
      const good = batch(`metrics-${run}`, 3, 10, 'proto');
      let res = await request(`${d.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': good.contentType }, body: good.body });
      assert.equal(res.status, 200);
      const goodTrace = randomBytes(16);
      const spans = [];
      for (let i = 0; i < 7; i++) {
        spans.push({ traceId: i < 4 ? goodTrace : Buffer.alloc(16), spanId: randomBytes(8), name: `m${i}`, start: NOW_NS, end: NOW_NS + 1000n });
      }
      res = await request(`${d.otlpUrl}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: pbRequest([{ resource: [['service.name', { s: `metrics-${run}` }]], scopes: [{ name: 'm', spans }] }]),
      });
      assert.equal(res.status, 200);
      assert.equal(decodeExportResponse(res.body).partialSuccess?.rejectedSpans, 3);

      /* Refused whole: one undecodable request, one above --max-body. Their spans are not counted
       * (an undecodable request has no countable spans); the request counters move. */
      const trunc = batch(`metrics-${run}`, 1, 3, 'proto').body;
      res = await request(`${d.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: trunc.subarray(0, trunc.length - 5) });
      assert.equal(res.status, 400);
      res = await request(`${d.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ pad: 'x'.repeat(70 * 1024) })) });
      assert.equal(res.status, 413);

      const after = await scrape(d.httpUrl);
      const v1 = Object.fromEntries(Object.entries(METRICS).map(([k, n]) => [k, total(after.samples, n)]));
      const delta = (series) => (total(after.samples, series) ?? NaN) - (total(before.samples, series) ?? NaN);
      assert.equal(delta('meshscope_spans_rejected_total{protocol="otlp_http_protobuf",reason="invalid_span"}'), 3, 'invalid_span');
      assert.equal(delta('meshscope_ingest_requests_total{protocol="otlp_http_protobuf"}'), 3, 'protobuf requests');
      assert.equal(delta('meshscope_ingest_requests_total{protocol="otlp_http_json"}'), 1, 'json requests');
      assert.equal(delta('meshscope_ingest_requests_rejected_total{protocol="otlp_http_protobuf",reason="decode_error"}'), 1, 'decode_error requests');
      assert.equal(delta('meshscope_ingest_requests_rejected_total{protocol="otlp_http_json",reason="too_large"}'), 1, 'too_large requests');
      await poll('spans stored counter', async () =>
        total((await scrape(d.httpUrl)).samples, 'meshscope_spans_stored_total') - (total(before.samples, 'meshscope_spans_stored_total') ?? 0) === 34);
      assert.deepEqual(
        { received: v1.received - v0.received, accepted: v1.accepted - v0.accepted, rejected: v1.rejected - v0.rejected },
        { received: 37, accepted: 34, rejected: 3 },
        `counter deltas (before ${JSON.stringify(v0)}, after ${JSON.stringify(v1)})`,
      );
    });
    await d.stop();
  } finally {
    await d.cleanup();
  }
});
