/*
 * dashboards.test.mjs: dashboards/ against a real Prometheus scraping a real meshscope.
 *
 * meshscope gets a steady Istio Bookinfo load (productpage -> details, productpage -> reviews ->
 * ratings; the OpenTelemetry JS SDK over OTLP/HTTP, one wave of 5 page views a second): every 5th
 * reviews call answers 503, every 4th ratings call takes 1.5 s, every 7th details call answers 404.
 * A real Prometheus (Debian's package, loopback, exemplar storage on) scrapes it every second and
 * evaluates dashboards/rules/recording.yml and alerts.yml every second. Then:
 *   - every rule loads and evaluates without error; every recording rule returns data;
 *   - the alert expressions parse; the mesh alerts see the failing and slow services; meshscope's
 *     own health alerts stay silent; every alert has its annotations and a runbook anchor;
 *   - every PromQL expression of every Grafana dashboard (template variables filled in) parses
 *     and returns data; the template variables list the mesh; the exemplar panels give exemplars
 *     whose trace ids resolve in meshscope;
 *   - the PromQL of Istio's own dashboards (tests/data/istio_dashboard_queries.json) returns data,
 *     except exactly the queries documented there as unsupported.
 * A query that returns nothing is a failure, not a warning.
 *
 * Needs prometheus (.ci/deps installs it).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bookinfoProviders, istioPageView, istioResource } from '../lib/bookinfo.mjs';
import { sleep, startDaemon, withStderr } from '../lib/daemon.mjs';
import { poll, request } from '../lib/http.mjs';
import { startPrometheus } from '../lib/prometheus.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SRC = process.env.MESHSCOPE_SRC || path.resolve(here, '../../..');
const DASH = path.join(SRC, 'dashboards');
const FIXTURE = path.join(SRC, 'tests/data/istio_dashboard_queries.json');

const WAVE = 5; /* page views per wave */
const WAVE_MS = 1000;
const MAX_WAVES = 600; /* the pump stops by itself after 10 minutes */
const FAIL_EVERY = 5; /* reviews answers 503 */
const SLOW_EVERY = 4; /* ratings takes 1.5 s */
const NOT_FOUND_EVERY = 7; /* details answers 404 */
const NS = 'bookinfo';
const fqdn = (svc) => `${svc}.${NS}.svc.cluster.local`;

/* Grafana's variables, as the dashboards' PromQL should see them in this mesh. */
const DASHBOARD_VARS = {
  $__rate_interval: '1m',
  $__interval: '15s',
  $__range: '5m',
  $namespace: '.*', /* All */
  $instance: '.*', /* All */
  $service: 'reviews',
};

/*
 * Dashboard queries allowed to return nothing under this traffic, with the reason. Empty: every
 * panel of every dashboard must light up.
 */
const DASHBOARD_EMPTY_OK = {};

let d; /* meshscope */
let prom; /* lib/prometheus.mjs */
let mesh; /* lib/bookinfo.mjs providers */
let tmp;
let pump; /* {stop(), done: Promise, waves(), error()} */

/* Rates and rules appear after several scrapes and evaluations: up to 60 s. */
const promUntil = (q, check, what) => prom.until(q, check, what, { timeoutMs: 60_000, attempts: 1000 });

const fill = (expr, vars) => Object.keys(vars).sort((a, b) => b.length - a.length)
  .reduce((s, k) => s.split(k).join(vars[k]), expr);

/* ----- Bookinfo traffic ----------------------------------------------------------------------- */

const traceIds = new Set();

async function sendWave(n) {
  const t0 = Date.now() - 2000;
  for (let k = 0; k < WAVE; k++) {
    traceIds.add(istioPageView(mesh, n * WAVE + k, t0 + k * 100, {
      failEvery: FAIL_EVERY,
      slowEvery: SLOW_EVERY,
      notFound: (i) => i % NOT_FOUND_EVERY === 3,
      host: fqdn,
      bodySizes: true,
      rootError: true,
    }));
  }
  await mesh.flush((svc) => `wave ${n} ${svc}`, { reset: true });
}

/* A wave a second until stopped, at most MAX_WAVES. */
function startPump() {
  let stopped = false;
  let waves = 0;
  let error = null;
  const done = (async () => {
    while (!stopped && waves < MAX_WAVES) {
      const t = Date.now();
      try {
        await sendWave(waves);
      } catch (e) {
        error = e;
        return;
      }
      waves++;
      await sleep(Math.max(0, WAVE_MS - (Date.now() - t)));
    }
  })();
  return { stop: () => (stopped = true), done, waves: () => waves, error: () => error };
}

/* ----- set-up --------------------------------------------------------------------------------- */

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'meshscope-dash-'));
  d = await startDaemon({ logLevel: 'info' });
  prom = await startPrometheus({
    dir: tmp,
    target: new URL(d.httpUrl).host,
    ruleFiles: [path.join(DASH, 'rules/recording.yml'), path.join(DASH, 'rules/alerts.yml')],
  });
  mesh = await bookinfoProviders(d.otlpUrl, istioResource(NS));
  pump = startPump();
  /* Rates need two scrapes with traffic between them; the rules one evaluation after that. */
  await promUntil('client_server:traces_service_graph_request:rate5m > 0', (r) => r.length === 4, 'service-graph rate rule for the 4 edges');
  await promUntil('namespace_service:istio_requests:rate5m > 0', (r) => r.length === 4, 'Istio rate rule for the 4 services');
  await promUntil('sum(rate(istio_requests_total[1m]) > 0)', (r) => r.length === 1, 'Istio rates');
  /* A few more waves, so every 1m window holds several and every ratio has failures in it. */
  await poll('10 waves sent', () => pump.error() ? Promise.reject(pump.error()) : pump.waves() >= 10, { timeoutMs: 60_000, intervalMs: 200, attempts: 1000 });
});

after(async () => {
  if (pump) {
    pump.stop();
    await Promise.race([pump.done, sleep(15_000)]);
  }
  await mesh?.shutdown();
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

const it = (name, fn) => test(name, () => withStderr(() => d, async () => {
  try {
    return await fn();
  } catch (e) {
    if (pump?.error()) e.message += `\ntraffic pump failed: ${pump.error().stack}`;
    if (prom) e.message += `\n--- prometheus log (tail) ---\n${prom.log().slice(-3000)}`;
    throw e;
  }
}));

/* ----- rules ---------------------------------------------------------------------------------- */

/* Rule names as written in the files (a cross-check of what Prometheus loaded). */
async function namesInFile(file, kind) {
  const text = await readFile(path.join(DASH, 'rules', file), 'utf8');
  return [...text.matchAll(new RegExp(`^\\s*- ${kind}: (\\S+)\\s*$`, 'gm'))].map((m) => m[1]);
}

async function loadedRules() {
  const body = await prom.api('/api/v1/rules');
  assert.equal(body.status, 'success');
  return body.data.groups.flatMap((g) => g.rules.map((r) => ({ ...r, group: g.name, file: g.file })));
}

it('both rule files load and every rule evaluates without error', async () => {
  const records = await namesInFile('recording.yml', 'record');
  const alerts = await namesInFile('alerts.yml', 'alert');
  let rules;
  await poll('every rule evaluated', async () => {
    rules = await loadedRules();
    return rules.length === records.length + alerts.length && rules.every((r) => r.health !== 'unknown');
  }, { timeoutMs: 30_000, intervalMs: 500, attempts: 100 });
  /* The API lists groups in its own order; the rules of a group keep the file's order. */
  assert.deepEqual(rules.filter((r) => r.type === 'recording').map((r) => r.name).sort(), records.sort());
  assert.deepEqual(rules.filter((r) => r.type === 'alerting').map((r) => r.name).sort(), alerts.sort());
  const bad = rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError}`);
  assert.deepEqual(bad, []);
});

it('every recording rule returns data, with the values the traffic implies', async () => {
  const rules = (await loadedRules()).filter((r) => r.type === 'recording');
  const empty = [];
  for (const r of rules) {
    const sel = `${r.name}{${Object.entries(r.labels ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
    if ((await prom.query(sel)).length === 0) empty.push(sel);
  }
  assert.deepEqual(empty, [], 'recording rules without data');

  const byService = async (q, label) => Object.fromEntries((await prom.query(q)).map((s) => [s.metric[label], Number(s.value[1])]));
  const ratio = await byService('namespace_service:istio_request_errors_per_request:ratio_rate5m', 'destination_canonical_service');
  assert.deepEqual(Object.keys(ratio).sort(), ['details', 'productpage', 'ratings', 'reviews']);
  assert.equal(ratio.details, 0, 'details answers 404s, not 5xx');
  assert.equal(ratio.ratings, 0);
  assert.ok(ratio.reviews > 0.1 && ratio.reviews < 0.3, `reviews 5xx ratio ${ratio.reviews}, 1 in ${FAIL_EVERY} sent`);
  assert.ok(ratio.productpage > 0.1 && ratio.productpage < 0.3, `productpage 5xx ratio ${ratio.productpage}`);
  const edges = await prom.query('client_server:traces_service_graph_request_failed_per_request:ratio_rate5m');
  const edge = Object.fromEntries(edges.map((s) => [`${s.metric.client}->${s.metric.server}`, Number(s.value[1])]));
  assert.deepEqual(Object.keys(edge).sort(), ['productpage->details', 'productpage->reviews', 'reviews->ratings', 'user->productpage']);
  assert.equal(edge['reviews->ratings'], 0);
  assert.ok(edge['productpage->reviews'] > 0.1 && edge['productpage->reviews'] < 0.3, JSON.stringify(edge));
  const p99 = await byService('namespace_service_quantile:istio_request_duration_seconds:histogram_quantile{quantile="0.99"}', 'destination_canonical_service');
  assert.ok(p99.ratings > 1 && p99.ratings <= 2.5, `ratings p99 ${p99.ratings} s: 1 in ${SLOW_EVERY} calls takes 1.5 s`);
  assert.ok(p99.details < 0.05, `details p99 ${p99.details} s`);
  const ops = await prom.query('service_span_name:traces_spanmetrics_calls:rate5m{service="reviews"}');
  assert.deepEqual(ops.map((s) => `${s.metric.span_name} ${s.metric.span_kind}`).sort(), ['GET /reviews/{id} SPAN_KIND_SERVER', 'GET SPAN_KIND_CLIENT']);
});

it('alert expressions parse; mesh alerts see the failing and slow services; meshscope\'s own stay silent', async () => {
  const readme = await readFile(path.join(DASH, 'README.md'), 'utf8');
  const alerts = (await loadedRules()).filter((r) => r.type === 'alerting');
  const got = {};
  for (const a of alerts) {
    for (const k of ['summary', 'description', 'runbook_url']) assert.ok(a.annotations?.[k], `${a.name}: annotation ${k} missing`);
    const m = /^dashboards\/README\.md#([a-z0-9-]+)$/.exec(a.annotations.runbook_url);
    assert.ok(m, `${a.name}: runbook_url ${a.annotations.runbook_url}`);
    assert.ok(readme.includes(`<a id="${m[1]}"></a>`), `${a.name}: no anchor ${m[1]} in dashboards/README.md`);
    assert.equal(m[1], a.name.toLowerCase(), `${a.name}: anchor named after the alert`);
    const r = await prom.queryRaw(a.query);
    assert.ok(r.ok, `${a.name}: ${a.query}: ${r.error}`);
    got[a.name] = r.result;
  }
  const svcs = (name) => got[name].map((s) => s.metric.destination_canonical_service).sort();
  /* 20% 5xx is far above 14.4 x 0.1%: reviews and productpage (which answers 500 when reviews fails). */
  assert.deepEqual(svcs('MeshServiceErrorBudgetBurnFast'), ['productpage', 'reviews']);
  assert.deepEqual(svcs('MeshServiceErrorBudgetBurnSlow'), ['productpage', 'reviews']);
  /* 1.5 s calls to ratings lift the p99 of ratings and of its callers above 1 s; details stays fast. */
  assert.deepEqual(svcs('MeshServiceLatencyP99High'), ['productpage', 'ratings', 'reviews']);
  const noisy = Object.entries(got).filter(([name, r]) => name.startsWith('Meshscope') && r.length > 0);
  assert.deepEqual(noisy.map(([name, r]) => `${name}: ${JSON.stringify(r)}`), [], 'a healthy meshscope must not alert');
});

/* ----- Grafana dashboards --------------------------------------------------------------------- */

async function dashboards() {
  const dir = path.join(DASH, 'grafana');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  assert.deepEqual(files, ['mesh-overview.json', 'meshscope-health.json', 'service-detail.json']);
  return Promise.all(files.map(async (f) => ({ file: f, json: JSON.parse(await readFile(path.join(dir, f), 'utf8')) })));
}

function panelsOf(dash) {
  const out = [];
  const walk = (ps) => {
    for (const p of ps ?? []) {
      out.push(p);
      walk(p.panels);
    }
  };
  walk(dash.panels);
  return out;
}

it('every dashboard query parses and returns data', async () => {
  const failures = [];
  let count = 0;
  for (const { file, json } of await dashboards()) {
    for (const p of panelsOf(json)) {
      for (const t of p.targets ?? []) {
        if (!t.expr) continue;
        count++;
        const key = `${file} / ${p.title} / ${t.refId}`;
        const q = fill(t.expr, DASHBOARD_VARS);
        assert.doesNotMatch(q, /\$[A-Za-z_]/, `${key}: a variable left unfilled in ${q}`);
        const r = await prom.queryRaw(q);
        if (!r.ok) failures.push(`${key}: does not parse: ${r.error}\n  ${q}`);
        else if (r.result.length === 0 && !DASHBOARD_EMPTY_OK[key]) failures.push(`${key}: no data\n  ${q}`);
      }
    }
  }
  assert.ok(count > 50, `only ${count} dashboard queries found`);
  assert.deepEqual(failures, []);
});

it('dashboard template variables list the mesh', async () => {
  const want = { namespace: NS, service: 'reviews', instance: new URL(d.httpUrl).host };
  for (const { file, json } of await dashboards()) {
    for (const v of json.templating.list) {
      if (v.type !== 'query') continue;
      const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(v.query.query);
      assert.ok(m, `${file}: variable ${v.name}: ${v.query.query}`);
      const body = await prom.api(`/api/v1/label/${m[2]}/values?match[]=${encodeURIComponent(m[1])}`);
      assert.ok(body.data.includes(want[v.name]), `${file}: variable ${v.name} = ${JSON.stringify(body.data)}, expected ${want[v.name]}`);
    }
  }
});

it('the node graph queries give the nodes and edges of Bookinfo', async () => {
  const mesh = (await dashboards()).find((x) => x.file === 'mesh-overview.json').json;
  const ng = panelsOf(mesh).find((p) => p.type === 'nodeGraph');
  const [nodes, edges] = await Promise.all(ng.targets.map((t) => prom.query(fill(t.expr, DASHBOARD_VARS))));
  assert.deepEqual(nodes.map((s) => s.metric.id).sort(), ['details', 'productpage', 'ratings', 'reviews', 'user']);
  assert.deepEqual(edges.map((s) => s.metric.id).sort(), ['productpage->details', 'productpage->reviews', 'reviews->ratings', 'user->productpage']);
  for (const s of edges) assert.ok(s.metric.client && s.metric.server, JSON.stringify(s.metric));
});

it('exemplar panels give exemplars that resolve to traces in meshscope', async () => {
  const svc = (await dashboards()).find((x) => x.file === 'service-detail.json').json;
  const targets = panelsOf(svc).flatMap((p) => (p.targets ?? []).filter((t) => t.exemplar).map((t) => ({ p, t })));
  assert.ok(targets.length >= 3, 'latency panels with exemplars');
  const ids = new Set();
  for (const { p, t } of targets) {
    const q = fill(t.expr, DASHBOARD_VARS);
    const end = Math.ceil(Date.now() / 1000) + 60;
    const data = await poll(`exemplars of ${p.title}`, async () => {
      const body = await prom.exemplars(q, end - 3600, end);
      assert.equal(body.status, 'success', JSON.stringify(body));
      return body.data.some((s) => s.exemplars.length > 0) ? body.data : undefined;
    }, { timeoutMs: 30_000, intervalMs: 500, attempts: 100 });
    for (const s of data) for (const e of s.exemplars) ids.add(e.labels.trace_id);
  }
  const sample = [...ids].slice(0, 20);
  for (const id of sample) {
    assert.ok(traceIds.has(id), `exemplar trace ${id} is not one the test sent`);
    const res = await request(`${d.httpUrl}/api/traces/${id}`);
    assert.equal(res.status, 200, `GET /api/traces/${id}: ${res.status}`);
  }
});

/* ----- Istio's dashboards --------------------------------------------------------------------- */

it('Istio\'s standard dashboards: every query returns data except the documented unsupported set', async () => {
  const fx = JSON.parse(await readFile(FIXTURE, 'utf8'));
  assert.ok(fx.queries.length >= 30);
  const ids = new Set();
  const empty = [];
  const failures = [];
  for (const item of fx.queries) {
    assert.ok(!ids.has(item.id), `duplicate id ${item.id}`);
    ids.add(item.id);
    assert.ok(item.dashboard && item.panel && item.expr, `${item.id}: dashboard, panel and expr`);
    const q = fill(item.expr, fx.variables);
    assert.doesNotMatch(q, /\$[A-Za-z_]/, `${item.id}: a variable left unfilled in ${q}`);
    const r = await prom.queryRaw(q);
    if (!r.ok) {
      failures.push(`${item.id}: does not parse: ${r.error}`);
      continue;
    }
    if (r.result.length === 0) {
      empty.push(item.id);
      continue;
    }
    for (const [label, values] of Object.entries(item.expect?.labels ?? {})) {
      const gotValues = [...new Set(r.result.map((s) => s.metric[label]))].sort();
      if (JSON.stringify(gotValues) !== JSON.stringify(values)) failures.push(`${item.id}: ${label} = ${JSON.stringify(gotValues)}, expected ${JSON.stringify(values)}`);
    }
    for (const v of item.expect?.values ?? []) {
      const hits = r.result.filter((s) => Object.entries(v.match).every(([k, x]) => s.metric[k] === x));
      if (hits.length === 0) failures.push(`${item.id}: no series matching ${JSON.stringify(v.match)} in ${JSON.stringify(r.result)}`);
      for (const s of hits) {
        const x = Number(s.value[1]);
        if (!(x >= v.min && x <= v.max)) failures.push(`${item.id}: ${JSON.stringify(s.metric)} = ${x}, expected [${v.min}, ${v.max}] (${v.why})`);
      }
    }
  }
  const unsupported = fx.queries.filter((x) => x.unsupported).map((x) => x.id);
  for (const x of fx.queries.filter((y) => y.unsupported)) assert.ok(x.unsupported.length > 20, `${x.id}: say why it is unsupported`);
  assert.deepEqual(failures, []);
  assert.deepEqual(empty, unsupported, 'queries without data must be exactly the documented unsupported ones');
});
