/*
 * graph.test.mjs: the service-graph API (GET /api/graph) against the real daemon. A Bookinfo-like
 * mesh (productpage -> details, productpage -> reviews -> ratings, with 5xx and known latencies)
 * is sent as OTLP by the OpenTelemetry JS SDK, one provider per service, servers flushed before
 * their callers so the halves of each call meet across requests. The test checks the graph's
 * counts, error rates and percentiles (within the rollup histogram's bucket precision), restarts
 * the daemon on the same database and checks the graph answers the same, and that
 * /api/dependencies (Jaeger) agrees with the graph's service-to-service edges.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { bookinfoProviders, bookinfoSpans } from '../lib/bookinfo.mjs';
import { startDaemon } from '../lib/daemon.mjs';
import { getJson, poll } from '../lib/http.mjs';

const REQUESTS = 40;
const DETAILS_FAIL_EVERY = 8; /* details answers 503 on i % 8 == 7 */
const RATINGS_FAIL_EVERY = 10; /* ratings answers 500 on i % 10 == 9 */

let d;
let dir;
let mesh; /* lib/bookinfo.mjs providers */
const t0 = Date.now() - 5 * 60_000; /* five minutes ago, one request a second */
const window = { start: (t0 - 60_000) * 1000, end: (t0 + 120_000) * 1000 }; /* µs */

/* The rollup histogram's bucket around a latency (ms): upper bounds 0.1 ms * 2^(i/4), rounded
 * to whole µs (storage/rollup.c); an interpolated percentile of equal latencies lies inside. */
function bucketOf(ms) {
  const us = ms * 1000;
  let lo = 0;
  for (let i = 0; i < 102; i++) {
    const hi = Math.round(100 * 2 ** (i / 4));
    if (hi >= us) return [lo / 1000, hi / 1000];
    lo = hi;
  }
  throw new Error('out of range');
}

function assertInBucket(v, ms, what) {
  const [lo, hi] = bucketOf(ms);
  assert.ok(v >= lo && v <= hi, `${what} = ${v}, want within [${lo}, ${hi}] (true ${ms} ms)`);
}

/* Page view i, one a second from t0: details answers 10 ms after the call, reviews 30 ms, ratings
 * 5 ms; only the failing servers are ERROR; the root has no attributes. */
function bookinfoRequest(i) {
  const spans = bookinfoSpans(t0 + i * 1000, {
    timing: { root: 60, details: { at: 1, ms: 10 }, reviews: { at: 20, ms: 30 }, ratings: { at: 22, ms: 5 } },
    codes: {
      details: i % DETAILS_FAIL_EVERY === DETAILS_FAIL_EVERY - 1 ? 503 : 200,
      ratings: i % RATINGS_FAIL_EVERY === RATINGS_FAIL_EVERY - 1 ? 500 : 200,
    },
    names: { server: (to) => `GET /${to}` },
  });
  mesh.send(spans, {
    attributes: (s) => {
      if (s.call === 'root') return {};
      return s.kind === 'CLIENT' ? { 'server.address': s.peer, 'http.response.status_code': s.code } : { 'http.response.status_code': s.code };
    },
    error: (s) => s.kind === 'SERVER' && s.code >= 500,
  });
}

const graphUrl = () => `${d.httpUrl}/api/graph?start=${window.start}&end=${window.end}`;
const edgeOf = (g, s, t) => g.edges.find((e) => e.source === `service:${s}` && e.target === `service:${t}`);

before(async () => {
  d = await startDaemon({ logLevel: 'info' });
  dir = d.dir;
  mesh = await bookinfoProviders(d.otlpUrl, (svc) => ({ 'service.name': svc, 'k8s.namespace.name': 'bookinfo' }));
  for (let i = 0; i < REQUESTS; i++) bookinfoRequest(i);
  await mesh.flush();
});

after(async () => {
  await mesh?.shutdown();
  if (d) {
    await d.stop().catch(() => {});
    await d.cleanup();
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

let before_restart;

test('graph: counts, error rates and percentiles of the mesh', async () => {
  const g = await poll('the full graph', async () => {
    const json = await getJson(graphUrl());
    const e = edgeOf(json, 'productpage', 'details');
    return e && e.requests === REQUESTS && edgeOf(json, 'reviews', 'ratings')?.requests === REQUESTS ? json : null;
  });
  assert.equal(g.start, window.start);
  assert.equal(g.end, window.end);
  const seconds = (window.end - window.start) / 1e6;
  const det = edgeOf(g, 'productpage', 'details');
  assert.equal(det.errors, REQUESTS / DETAILS_FAIL_EVERY);
  assert.equal(det.error_rate, 1 / DETAILS_FAIL_EVERY);
  assert.ok(Math.abs(det.rps - REQUESTS / seconds) < 1e-9);
  assertInBucket(det.p50_ms, 10, 'details p50');
  assertInBucket(det.p99_ms, 10, 'details p99');
  const rat = edgeOf(g, 'reviews', 'ratings');
  assert.equal(rat.errors, REQUESTS / RATINGS_FAIL_EVERY);
  assertInBucket(rat.p95_ms, 5, 'ratings p95');
  const rev = edgeOf(g, 'productpage', 'reviews');
  assert.equal(rev.requests, REQUESTS);
  assert.equal(rev.errors, 0);
  assertInBucket(rev.p50_ms, 30, 'reviews p50');
  const user = g.edges.find((e) => e.source === 'user' && e.target === 'service:productpage');
  assert.equal(user?.requests, REQUESTS);
  assertInBucket(user.p99_ms, 60, 'productpage p99');
  assert.equal(g.edges.length, 4, JSON.stringify(g.edges));
  const pp = g.nodes.find((n) => n.id === 'service:productpage');
  assert.equal(pp.namespace, 'bookinfo');
  assert.equal(pp.kind, 'service');
  assert.equal(pp.requests, REQUESTS);
  const ratings = g.nodes.find((n) => n.id === 'service:ratings');
  assert.equal(ratings.errors, REQUESTS / RATINGS_FAIL_EVERY);
  assert.equal(g.nodes.find((n) => n.id === 'user')?.kind, 'user');
  /* The namespace filter. */
  const none = await getJson(`${graphUrl()}&namespace=elsewhere`);
  assert.deepEqual([none.nodes.length, none.edges.length], [0, 0]);
  const same = await getJson(`${graphUrl()}&namespace=bookinfo`);
  assert.deepEqual(same, g);
  /* A bad parameter: 400 naming it. */
  const bad = await getJson(`${d.httpUrl}/api/graph?start=soon`, { expectStatus: 400 });
  assert.match(bad.errors[0].msg, /start/);
  before_restart = g;
});

test('graph: survives a restart with the same numbers; /api/dependencies agrees', async () => {
  assert.ok(before_restart, 'the first test ran');
  await d.stop();
  d = await startDaemon({ logLevel: 'info', dir, db: d.db });
  const g = await getJson(graphUrl());
  assert.deepEqual(g, before_restart);
  const endMs = Math.floor(window.end / 1000);
  const lookback = endMs - Math.floor(window.start / 1000);
  const deps = await getJson(`${d.httpUrl}/api/dependencies?endTs=${endMs}&lookback=${lookback}`);
  const links = deps.data.map((l) => `${l.parent}->${l.child}:${l.callCount}`).sort();
  const edges = g.edges
    .filter((e) => e.source.startsWith('service:') && e.target.startsWith('service:'))
    .map((e) => `${e.source.slice(8)}->${e.target.slice(8)}:${e.requests}`)
    .sort();
  assert.deepEqual(links, edges);
  assert.equal(links.length, 3);
});
