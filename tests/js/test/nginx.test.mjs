/*
 * nginx.test.mjs: a real nginx (Debian's nginx-light) in front of two node backends logs every
 * request in the README's JSON log_format to meshscope's syslog receiver (UDP), end to end.
 *
 * A known mix goes through nginx: reviews answers 200, 503 and slow (300 ms) 200s, ratings
 * answers 200 and 500; one request carries its own X-Request-Id and a traceparent. Then:
 * - every line is stored (count equal; each response's X-Request-ID finds exactly its record
 *   through /api/logs?requestId=, with the right path, status, duration, upstream and trace id);
 * - /metrics istio_requests_total counts exactly that traffic by response_code and
 *   destination_service, and istio_request_duration_milliseconds counts each request once, the
 *   slow ones above 250 ms;
 * - /api/graph shows the frontend -> reviews / ratings edges with those requests and errors;
 * - the syslog self metrics count the messages as accepted over UDP, none rejected.
 * UDP on loopback can in principle lose a datagram: arrival is polled (bounded) until every line
 * is there, so the equality assertions stay exact.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import { createServer } from 'node:http';
import { startDaemon, sleep } from '../lib/daemon.mjs';
import { getJson, poll, request } from '../lib/http.mjs';
import { NGINX_BIN, startNginx } from '../lib/nginx.mjs';

const SERVICE = 'frontend';
const SLOW_MS = 300;
/* [upstream, path, backend status, count] */
const MIX = [
  ['reviews', 'ok', 200, 20],
  ['reviews', 'fail', 503, 5],
  ['reviews', 'slow', 200, 3],
  ['ratings', 'ok', 200, 8],
  ['ratings', 'fail', 500, 4],
];
const TOTAL = MIX.reduce((n, m) => n + m[3], 0);

let d;
let nginx;
const backends = [];

/** A backend answering /NAME/ok 200, /NAME/fail with its fail status, /NAME/slow 200 late. */
async function backend(name, failStatus) {
  const srv = createServer((req, res) => {
    const kind = req.url.split('/')[2]?.split('?')[0];
    const send = (status) => {
      res.writeHead(status, { 'content-type': 'text/plain', 'x-seen-request-id': String(req.headers['x-request-id'] ?? '') });
      res.end(`${name} ${kind}\n`);
    };
    if (kind === 'slow') setTimeout(() => send(200), SLOW_MS);
    else send(kind === 'fail' ? failStatus : 200);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  backends.push(srv);
  return srv.address().port;
}

function syslogPort(daemon) {
  const m = /syslog: listening on \S+ \(port (\d+)/.exec(daemon.stderr());
  assert.ok(m, `no syslog listening line in the daemon's log:\n${daemon.stderr().slice(-2000)}`);
  return Number(m[1]);
}

/** Sum of the samples of a metric whose line holds every label in labels. */
function sample(metrics, name, labels = []) {
  return metrics
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

before(async () => {
  await access(NGINX_BIN); /* nginx-light is in .ci/deps: its absence is a failure, not a skip */
  /* Lines with a request id wait --service-graph-wait on the graph for the backend's proxy's
   * line of the same call (README "Access logs"); 1 s keeps the graph poll short. */
  d = await startDaemon({ logLevel: 'info', args: ['--syslog', `127.0.0.1:0,service=${SERVICE}`, '--service-graph-wait', '1s'] });
  const upstreams = { reviews: await backend('reviews', 503), ratings: await backend('ratings', 500) };
  nginx = await startNginx({ syslogPort: syslogPort(d), upstreams });
});

after(async () => {
  await nginx?.stop();
  for (const s of backends) await new Promise((r) => s.close(r));
  if (d) {
    await d.stop();
    await d.cleanup();
  }
});

test('nginx access logs over syslog: every line stored, counted in RED metrics and the graph', async () => {
  const t0 = Date.now();
  const ownId = `syslog-e2e-${randomBytes(6).toString('hex')}`;
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  /* Every request, in a fixed shuffled order; its response's X-Request-ID and what we expect. */
  const sent = [];
  for (const [up, kind, status, n] of MIX) for (let i = 0; i < n; i++) sent.push({ up, kind, status, path: `/${up}/${kind}?i=${i}` });
  for (let i = sent.length - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1);
    [sent[i], sent[j]] = [sent[j], sent[i]];
  }
  sent[0].headers = { 'x-request-id': ownId, traceparent: `00-${traceId}-${spanId}-01` };
  sent[0].own = true;
  /* Two at a time: a slow request does not hold the others up, and the order stays known. */
  for (let i = 0; i < sent.length; i += 2) {
    await Promise.all(
      sent.slice(i, i + 2).map(async (s) => {
        const res = await request(`${nginx.url}${s.path}`, { headers: s.headers ?? {} });
        assert.equal(res.status, s.status, `${s.path}: status ${res.status}`);
        s.requestId = res.headers['x-request-id'];
        assert.ok(s.requestId, `${s.path}: no X-Request-ID in the answer`);
        assert.equal(res.headers['x-seen-request-id'], s.requestId, `${s.path}: the backend saw another id`);
      }),
    );
  }
  assert.equal(sent[0].requestId, ownId, 'nginx keeps the client-supplied X-Request-Id');
  assert.equal(new Set(sent.map((s) => s.requestId)).size, TOTAL, 'request ids are unique');

  await withDaemonLog(async () => {
    /* Every line arrives (bounded poll), and no more than that. */
    const logs = await poll(`${TOTAL} stored access-log records`, async () => {
      const json = await getJson(`${d.httpUrl}/api/logs?limit=1000&start=${(t0 - 60_000) * 1000}`);
      return json.data.length >= TOTAL ? json.data : null;
    });
    assert.equal(logs.length, TOTAL, 'one stored record per request');
    const metrics = (await request(`${d.httpUrl}/metrics`)).body.toString('utf8');
    assert.equal(sample(metrics, 'meshscope_syslog_messages_total', ['transport="udp"', 'outcome="accepted"']), TOTAL);
    assert.equal(sample(metrics, 'meshscope_syslog_messages_total', ['outcome="rejected"']), 0);
    assert.equal(sample(metrics, 'meshscope_syslog_messages_total', ['outcome="dropped"']), 0);

    /* The request id leads from each request to its record: /api/logs?requestId= finds
     * exactly that one (an indexed lookup). */
    for (const s of sent) {
      const found = await getJson(`${d.httpUrl}/api/logs?requestId=${encodeURIComponent(s.requestId)}`);
      assert.equal(found.total, 1, `request id ${s.requestId} (${s.path}): ${found.total} records`);
      const r = found.data[0];
      assert.equal(r.request_id, s.requestId);
      assert.equal(r.destination_service, s.up, 'upstream_name -> destination_service');
      assert.equal(r.path, s.path);
      assert.equal(r.method, 'GET');
      assert.equal(r.response_code, s.status, `${s.path}: stored status`);
      assert.equal(r.service, SERVICE, 'the listener names the reporting service');
      assert.equal(r.direction, 'outbound');
      assert.ok(r.duration_ms !== null && r.duration_ms >= 0, `${s.path}: duration ${r.duration_ms}`);
      if (s.kind === 'slow') assert.ok(r.duration_ms >= SLOW_MS - 1, `${s.path}: duration ${r.duration_ms} ms`);
      const line = JSON.parse(r.line);
      assert.equal(line.upstream_name, s.up, 'the raw line is the nginx JSON line');
      if (s.own) {
        assert.equal(r.traceID, traceId, 'traceparent -> trace id');
        assert.equal(r.spanID, spanId);
      } else {
        assert.equal(r.traceID, null);
      }
    }
    const byTrace = await getJson(`${d.httpUrl}/api/logs?traceID=${traceId}`);
    assert.deepEqual(byTrace.data.map((r) => r.request_id), [ownId]);

    /* RED: exactly the mix, by destination and code. */
    for (const up of ['reviews', 'ratings']) {
      const dest = `destination_service="${up}"`;
      for (const [u, , status] of MIX.filter((m) => m[0] === up)) {
        const want = MIX.filter((m) => m[0] === u && m[2] === status).reduce((n, m) => n + m[3], 0);
        assert.equal(
          sample(metrics, 'istio_requests_total', ['reporter="source"', `source_workload="${SERVICE}"`, dest, `response_code="${status}"`]),
          want,
          `istio_requests_total ${up} ${status}`,
        );
      }
      const n = MIX.filter((m) => m[0] === up).reduce((s, m) => s + m[3], 0);
      assert.equal(sample(metrics, 'istio_requests_total', [dest]), n, `istio_requests_total ${up}`);
      assert.equal(sample(metrics, 'istio_request_duration_milliseconds_count', [dest]), n, `duration count ${up}`);
    }
    assert.equal(sample(metrics, 'istio_requests_total', ['reporter=']), TOTAL, 'no other Istio sample');
    /* The slow requests took at least SLOW_MS: none of them is under the 250 ms bucket. */
    const slow = MIX.filter((m) => m[1] === 'slow').reduce((s, m) => s + m[3], 0);
    const reviews = MIX.filter((m) => m[0] === 'reviews').reduce((s, m) => s + m[3], 0);
    assert.ok(
      sample(metrics, 'istio_request_duration_milliseconds_bucket', ['destination_service="reviews"', 'le="250"']) <= reviews - slow,
      'slow requests are above 250 ms',
    );

    /* The service graph: frontend -> reviews and frontend -> ratings, exactly. */
    const now = Date.now();
    const g = await poll('the graph edges', async () => {
      const json = await getJson(`${d.httpUrl}/api/graph?start=${(t0 - 60_000) * 1000}&end=${(now + 60_000) * 1000}`);
      const total = json.edges.reduce((n, e) => n + e.requests, 0);
      return total >= TOTAL ? json : null;
    });
    const edge = (t) => g.edges.find((e) => e.source === `service:${SERVICE}` && e.target === `service:${t}`);
    assert.equal(edge('reviews')?.requests, reviews, JSON.stringify(g.edges));
    assert.equal(edge('reviews').errors, 5);
    assert.equal(edge('ratings')?.requests, TOTAL - reviews);
    assert.equal(edge('ratings').errors, 4);
    assert.equal(g.edges.reduce((n, e) => n + e.requests, 0), TOTAL, JSON.stringify(g.edges));

    /* No late duplicate. */
    await sleep(200);
    const again = await getJson(`${d.httpUrl}/api/logs?limit=1000&start=${(t0 - 60_000) * 1000}`);
    assert.equal(again.data.length, TOTAL);
  });
});

async function withDaemonLog(fn) {
  try {
    await fn();
  } catch (e) {
    e.message += `\n--- meshscope stderr (tail) ---\n${d.stderr().slice(-3000)}\n--- nginx error.log ---\n${await nginx.errorLog()}`;
    throw e;
  }
}
