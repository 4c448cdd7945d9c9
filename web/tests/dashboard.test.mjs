/*
 * dashboard.test.mjs: the dashboard end to end in headless Chromium (Debian's /usr/bin/chromium,
 * driven by playwright-core; no browser is downloaded).
 *
 * A real meshscope gets a Bookinfo mesh over OTLP/HTTP JSON (productpage -> details,
 * productpage -> reviews -> ratings; a quarter of the reviews requests answer 503, which
 * productpage absorbs, as Bookinfo does) plus one service with a hostile name, span name and
 * attributes. Then, as a user would: the graph shows the four services and their edges with
 * figures, reviews is red; clicking the productpage -> reviews edge opens the side panel with RED
 * charts and failed requests; a failed request opens the trace view with the failing reviews span
 * highlighted; the search page finds reviews' error traces and sorts them; markup from the server
 * is text (no script runs); no console errors; with --auth-token-file the app asks for a token.
 * Screenshots go to $MESHSCOPE_BUILD/web-screenshots/.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { bookinfoSpans } from '../../tests/js/lib/bookinfo.mjs';
import { startDaemon } from '../../tests/js/lib/daemon.mjs';
import { poll, request } from '../../tests/js/lib/http.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.MESHSCOPE_CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(process.env.MESHSCOPE_BUILD || path.resolve(here, '../../build'), 'web-screenshots');
const HOSTILE = '<img src=x onerror="window.__xss=1">';
const HOSTILE_OP = '<script>window.__xss=2</script>';
const TOKEN = 'dashboard-test-token-0123456789abcdef';
const UI_TIMEOUT = 20_000;

/* ---------- Bookinfo over OTLP/HTTP JSON ---------- */
const hex = (n) => randomBytes(n).toString('hex');
const attr = (key, v) => ({ key, value: typeof v === 'number' ? { intValue: String(v) } : { stringValue: String(v) } });

/** One request through the mesh, starting at t0Ms; fail: reviews answers 503. Returns spans by service. */
function bookinfoTrace(t0Ms, fail, requestId) {
  const traceId = hex(16);
  const by = new Map();
  const made = new Map(); /* record -> span */
  const records = bookinfoSpans(t0Ms, {
    timing: { root: 40, details: { at: 2, ms: 6 }, reviews: { at: 12, ms: 23 }, ratings: { at: 15, ms: 16 } },
    codes: { reviews: fail ? 503 : 200 },
    names: { client: (to) => `GET ${to}`, server: (to) => `GET /${to}` },
  });
  const nanos = (ms) => String(BigInt(Math.round(ms * 1000)) * 1000n);
  for (const r of records) {
    const failing = fail && r.call === 'reviews' && r.kind === 'SERVER';
    const s = {
      traceId, spanId: hex(8), parentSpanId: made.get(r.parent)?.spanId ?? '', name: r.name, kind: r.kind === 'SERVER' ? 2 : 3,
      startTimeUnixNano: nanos(r.start),
      endTimeUnixNano: nanos(r.end),
      attributes: [attr('http.request.method', 'GET'), attr('http.response.status_code', r.code),
        ...(failing ? [attr('error.type', 'UpstreamTimeout')] : []),
        ...(failing && requestId ? [attr('guid:x-request-id', requestId)] : [])],
      status: r.code >= 500 ? { code: 2, message: `upstream answered ${r.code}` } : { code: 0 },
    };
    if (failing) s.events = [{ timeUnixNano: s.endTimeUnixNano, name: 'exception', attributes: [attr('exception.message', 'ratings timed out')] }];
    made.set(r, s);
    if (!by.has(r.service)) by.set(r.service, []);
    by.get(r.service).push(s);
  }
  return { traceId, by };
}

function hostileTrace(t0Ms) {
  const traceId = hex(16);
  const root = {
    traceId, spanId: hex(8), name: HOSTILE_OP, kind: 2,
    startTimeUnixNano: String(BigInt(t0Ms) * 1000000n), endTimeUnixNano: String(BigInt(t0Ms + 5) * 1000000n),
    attributes: [attr('http.response.status_code', 500), attr('note', '<b onmouseover="window.__xss=3">bold</b>')],
    events: [{ timeUnixNano: String(BigInt(t0Ms + 1) * 1000000n), name: '<svg onload="window.__xss=4">', attributes: [] }],
    status: { code: 2, message: '<img src=y onerror="window.__xss=5">' },
  };
  return { traceId, by: new Map([[HOSTILE, [root]]]) };
}

async function sendTraces(d, traces, headers = {}) {
  const resourceSpans = [];
  for (const t of traces) {
    for (const [service, spans] of t.by) {
      resourceSpans.push({
        resource: { attributes: [attr('service.name', service), attr('k8s.namespace.name', 'default')] },
        scopeSpans: [{ scope: { name: 'bookinfo-test' }, spans }],
      });
    }
  }
  const res = await request(`${d.otlpUrl}/v1/traces`, { method: 'POST',
    headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ resourceSpans }) });
  assert.equal(res.status, 200, `OTLP post: ${res.status} ${res.body}`);
}

/** 40 Bookinfo requests over the last 4 minutes, 10 of them failing at reviews; one hostile. */
async function seed(d, headers) {
  const now = Date.now();
  const traces = [];
  /* the failing reviews spans carry x-request-id log-<k>, as their access-log lines do */
  for (let i = 0; i < 40; i++) traces.push(bookinfoTrace(now - 240_000 + i * 6000, i % 4 === 1, `log-${(i - 1) / 4}`));
  traces.push(hostileTrace(now - 30_000));
  await sendTraces(d, traces, headers);
  const failing = traces.filter((t, i) => i < 40 && i % 4 === 1).map((t) => t.traceId);
  /* Envoy access-log lines of the failing requests (POST /api/v1/accesslogs), one hostile. */
  const lines = failing.map((traceId, i) => JSON.stringify({
    start_time: new Date(now - 60_000 + i).toISOString(), method: 'GET',
    path: `/reviews/${i}<img src=x onerror="window.__xss=6">`, response_code: 503, response_flags: 'UT',
    upstream_cluster: 'inbound|9080||', authority: 'reviews:9080', request_id: `log-${i}`,
    traceparent: `00-${traceId}-${'1'.repeat(16)}-01` }));
  const logs = await request(`${d.otlpUrl}/api/v1/accesslogs`, { method: 'POST',
    headers: { 'content-type': 'application/x-ndjson', ...headers }, body: lines.join('\n') });
  assert.equal(logs.status, 200, `access-log post: ${logs.status} ${logs.body}`);
  const auth = headers.authorization ? { authorization: headers.authorization } : {};
  await poll('seeded traces searchable', async () => {
    const res = await request(`${d.httpUrl}/api/traces?service=reviews&limit=100&lookback=1h`, { headers: auth });
    return res.status === 200 && JSON.parse(res.body).data.length >= 40;
  });
  return { failing };
}

/* ---------- browser ---------- */
async function launch() {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: run \`make deps\` (Debian's chromium package)`);
  /* A fresh profile per launch: playwright creates a temporary --user-data-dir itself (and
   * refuses one in args) and removes it on close. */
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: 60_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return { browser, close: () => browser.close() };
}

/** A page that records console errors, page errors and CSP violations. */
async function openPage(browser, { expectedFailures = [] } = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(UI_TIMEOUT);
  const errors = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const where = m.location()?.url || '';
    /* Chromium logs every non-2xx fetch as "Failed to load resource"; the expected ones are the
     * /api/logs probe (404 until access logs land) and, with auth, the first 401s. */
    if (/Failed to load resource/.test(m.text()) && expectedFailures.some((re) => re.test(where))) return;
    errors.push(`${m.text()} @ ${where}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return { page, ctx, errors };
}

/** Hovers over, then optionally clicks, a graph element where it is drawn (a canvas). */
async function pointAtGraphElement(page, id, { click = true } = {}) {
  const pos = await page.evaluate((eid) => {
    const cy = window.__meshscopeGraph;
    const ele = cy.getElementById(eid);
    if (!ele.length) return null;
    const box = cy.container().getBoundingClientRect();
    const p = ele.isNode() ? ele.renderedPosition() : ele.renderedMidpoint();
    return { x: box.left + p.x, y: box.top + p.y };
  }, id);
  assert.ok(pos, `graph element ${id} not drawn`);
  await page.mouse.move(pos.x - 5, pos.y - 5);
  await page.mouse.move(pos.x, pos.y);
  if (click) await page.mouse.click(pos.x, pos.y);
}

describe('dashboard', () => {
  let d;
  let base;
  let b;
  let seeded;

  before(async () => {
    await mkdir(SHOTS, { recursive: true });
    d = await startDaemon({ logLevel: 'info' });
    seeded = await seed(d, {});
    base = d.httpUrl;
    b = await launch();
  });

  after(async () => {
    await b?.close();
    if (d) {
      await d.stop();
      await d.cleanup();
    }
  });

  test('the binary serves the embedded app with its security headers', async () => {
    const res = await request(`${d.httpUrl}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/html; charset=utf-8/);
    assert.match(res.headers['content-security-policy'], /default-src 'self'/);
    assert.doesNotMatch(res.headers['content-security-policy'], /unsafe-(inline|eval)'[^;]*script|script-src[^;]*unsafe/);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['cache-control'], 'no-cache');
    assert.doesNotMatch(res.body.toString(), /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script in index.html');
    for (const [p, ct] of [['/js/app.js', /^text\/javascript/], ['/css/app.css', /^text\/css/],
      ['/vendor/cytoscape.esm.min.mjs', /^text\/javascript/], ['/vendor/uPlot.min.css', /^text\/css/],
      ['/img/favicon.svg', /^image\/svg\+xml/]]) {
      const r = await request(`${d.httpUrl}${p}`);
      assert.equal(r.status, 200, p);
      assert.match(r.headers['content-type'], ct, p);
    }
    assert.equal((await request(`${d.httpUrl}/no/such/file.js`)).status, 404);
  });

  test('graph, side panel, failed request, trace view, search, XSS', async () => {
    const { page, ctx, errors } = await openPage(b.browser, { expectedFailures: [/\/api\/logs/] });
    try {
      /* ---- graph ---- */
      await page.goto(`${base}/#/graph?range=15m&paused=1`);
      await page.waitForFunction(() => document.querySelectorAll('.nodes-table tbody tr').length >= 4);
      const nodes = await page.$$eval('.nodes-table tbody tr', (rows) => rows.map((r) => ({
        id: r.dataset.id, name: r.querySelector('.name').textContent, health: r.dataset.health, cells: [...r.cells].map((c) => c.textContent) })));
      const byName = new Map(nodes.map((n) => [n.name, n]));
      for (const s of ['productpage', 'details', 'reviews', 'ratings']) assert.ok(byName.has(s), `node ${s}: ${JSON.stringify(nodes)}`);
      assert.equal(byName.get('reviews').health, 'bad', 'reviews is red');
      assert.equal(byName.get('details').health, 'ok');
      assert.equal(byName.get('ratings').health, 'ok');
      assert.match(byName.get('reviews').cells.join(' '), /rps/);
      /* 10 of 40 traced requests fail at reviews. Their inbound access-log lines share the
       * traces' ids and the spans' x-request-id: the spans count those requests, the lines do
       * not again (README "Access logs"), so reviews stays at 25%. */
      assert.match(byName.get('reviews').cells.join(' '), /25(\.0)?%/, 'reviews error rate 25%');
      const edges = await page.$$eval('.edges-table tbody tr', (rows) => rows.map((r) => ({
        id: r.dataset.id, source: r.dataset.source, target: r.dataset.target, health: r.dataset.health,
        text: r.textContent })));
      const edge = (s, t) => edges.find((e) => e.source === s && e.target === t);
      for (const [s, t] of [['productpage', 'details'], ['productpage', 'reviews'], ['reviews', 'ratings']]) {
        assert.ok(edge(s, t), `edge ${s} -> ${t}: ${JSON.stringify(edges)}`);
        assert.match(edge(s, t).text, /rps/);
      }
      assert.equal(edge('productpage', 'reviews').health, 'bad', 'productpage -> reviews edge is red');
      assert.equal(edge('productpage', 'details').health, 'ok');
      /* The canvas shows the same figures (cytoscape labels). */
      const label = await page.evaluate((id) => window.__meshscopeGraph.getElementById(id).data('label'),
        edge('productpage', 'reviews').id);
      assert.match(label, /rps · 2\d(\.\d)?% · p95/);
      await page.screenshot({ path: path.join(SHOTS, 'graph.png') });

      /* Hover shows the tooltip; click the failing edge for the side panel. */
      await pointAtGraphElement(page, byName.get('reviews').id, { click: false });
      await page.waitForSelector('.tooltip:not([hidden])');
      assert.match(await page.textContent('.tooltip'), /^reviews.*failing.*Rate.*rps.*Errors.*p95/);
      await pointAtGraphElement(page, edge('productpage', 'reviews').id);
      await page.waitForSelector('.side-panel:not([hidden]) .panel-title');
      assert.equal(await page.textContent('.side-panel .panel-title'), 'productpage → reviews');
      assert.match(page.url(), /sel=edge/);
      await page.waitForSelector('.side-panel .charts .uplot canvas');
      assert.equal(await page.locator('.side-panel .charts .uplot').count(), 3, 'rate, errors and latency charts');
      await page.waitForSelector('.side-panel a.failed-request');
      const failedIds = await page.$$eval('.side-panel a.failed-request', (as) => as.map((a) => a.dataset.trace));
      assert.ok(failedIds.length >= 5, `failed requests listed: ${failedIds.length}`);
      for (const id of failedIds) assert.ok(seeded.failing.includes(id), `${id} is one of the failing traces`);
      /* The access-log lines of the failed requests, joined by trace id, rendered as text. */
      await page.waitForSelector('.side-panel .access-logs:not([hidden]) .log-lines li');
      assert.match(await page.textContent('.side-panel .access-logs .log-lines'), /"request_id":"log-\d+"/);
      await page.screenshot({ path: path.join(SHOTS, 'graph-panel.png') });

      /* ---- trace view from the panel ---- */
      await page.click('.side-panel a.failed-request >> nth=0');
      await page.waitForSelector('.waterfall .wf-row[data-span]');
      assert.match(page.url(), /#\/trace\/[0-9a-f]+\?span=/);
      assert.equal(await page.locator('.wf-row[data-span]').count(), 7, 'all spans of the Bookinfo trace');
      const origin = page.locator('.wf-row.error-origin');
      assert.equal(await origin.count(), 1);
      assert.equal(await origin.getAttribute('data-service'), 'reviews');
      assert.match(await origin.getAttribute('class'), /selected/, 'the failing span is selected');
      await page.waitForSelector('.span-detail');
      const detail = await page.textContent('.span-detail');
      assert.match(detail, /http\.response\.status_code/);
      assert.match(detail, /ratings timed out/, 'the event is shown');
      assert.ok(await page.locator('.wf-cp').count() > 0, 'critical path drawn');
      /* Its access-log line, joined by x-request-id (the line's span id matches no span). */
      await page.waitForSelector('.span-detail .span-logs:not([hidden]) .log-lines li');
      const rid = await page.$eval('.span-detail', (n) => [...n.querySelectorAll('td')].find((td) => td.textContent === 'guid:x-request-id')
        ?.nextElementSibling?.textContent);
      assert.match(rid, /^log-\d+$/);
      assert.ok((await page.textContent('.span-detail .span-logs .log-lines')).includes(`"request_id":"${rid}"`));
      await page.waitForSelector('.access-logs .log-lines li a.log-span');
      assert.ok(await page.locator('a.back-to-graph').count(), 'link back to the graph');
      await page.screenshot({ path: path.join(SHOTS, 'trace.png'), fullPage: true });
      /* Collapse the root: only it stays. */
      await page.click('.wf-row[data-span] >> nth=0 >> .wf-toggle');
      assert.equal(await page.locator('.wf-row[data-span]').count(), 1);

      /* ---- trace search ---- */
      await page.goto(`${base}/#/traces?service=reviews&errors=1&range=1h&limit=50`);
      await page.waitForSelector('.result-list a.result');
      const found = await page.$$eval('a.result', (as) => as.map((a) => a.dataset.trace));
      assert.equal(found.length, 10, 'the 10 failing traces');
      for (const id of found) assert.ok(seeded.failing.includes(id));
      assert.ok(await page.locator('a.result .err-count').count() === 10);
      await page.click('.sorts button[data-sort="longest"]');
      await page.waitForSelector('.sorts button[data-sort="longest"][aria-pressed="true"]');
      const durs = await page.$$eval('a.result', (as) => as.map((a) => Number(a.dataset.duration)));
      assert.deepEqual(durs, durs.slice().sort((x, y) => y - x), 'sorted by duration, longest first');
      await page.click('.sorts button[data-sort="recent"]');
      await page.waitForSelector('.sorts button[data-sort="recent"][aria-pressed="true"]');
      const starts = await page.$$eval('a.result', (as) => as.map((a) => Number(a.dataset.start)));
      assert.deepEqual(starts, starts.slice().sort((x, y) => y - x), 'most recent first');
      assert.match(page.url(), /sort=recent/);
      /* The form drives the same search. */
      await page.goto(`${base}/#/traces`);
      await page.waitForSelector('select[name="service"] option[value="reviews"]', { state: 'attached' });
      await page.selectOption('select[name="service"]', 'reviews');
      await page.check('input[name="errors"]');
      await page.click('.search-form button[type="submit"]');
      await page.waitForFunction(() => document.querySelectorAll('a.result').length === 10);
      await page.screenshot({ path: path.join(SHOTS, 'search.png') });

      /* ---- hostile names are text ---- */
      await page.goto(`${base}/#/graph?range=15m&paused=1&sel=${encodeURIComponent(`node:${HOSTILE}`)}`);
      await page.waitForSelector('.side-panel .panel-title');
      assert.equal(await page.textContent('.side-panel .panel-title'), HOSTILE);
      await page.waitForSelector('.side-panel a.failed-request');
      await page.click('.side-panel a.failed-request >> nth=0');
      await page.waitForSelector('.wf-row.selected .svc');
      assert.equal(await page.textContent('.wf-row.selected .svc'), HOSTILE);
      assert.equal(await page.textContent('.wf-row.selected .opname'), HOSTILE_OP);
      const hostileDetail = await page.textContent('.span-detail');
      assert.ok(hostileDetail.includes('<b onmouseover="window.__xss=3">bold</b>'));
      assert.ok(hostileDetail.includes('<svg onload="window.__xss=4">'));
      await page.goto(`${base}/#/traces?service=${encodeURIComponent(HOSTILE)}&range=1h`);
      await page.waitForSelector('a.result .result-title');
      assert.equal(await page.textContent('a.result .result-title'), `${HOSTILE}: ${HOSTILE_OP}`);
      assert.equal(await page.evaluate(() => document.querySelectorAll('main img, main script, main svg, main b').length), 0,
        'no element made from server data');
      assert.equal(await page.evaluate(() => window.__xss), undefined, 'no injected script ran');

      assert.deepEqual(errors, [], 'no console errors');
    } finally {
      await ctx.close();
    }
  });
});

describe('dashboard: empty and error states', () => {
  let d;
  let b;

  before(async () => {
    d = await startDaemon({ logLevel: 'info' });
    b = await launch();
  });

  after(async () => {
    await b?.close();
    if (d) {
      await d.stop();
      await d.cleanup();
    }
  });

  test('no traffic, no results, unreachable with retry', async () => {
    const { page, ctx, errors } = await openPage(b.browser, { expectedFailures: [/\/api\//] });
    try {
      /* A fresh daemon: nothing in the window. */
      await page.goto(`${d.httpUrl}/#/graph?range=15m&paused=1`);
      await page.waitForSelector('.state-empty >> text=No traffic in this window');
      /* Data, then a window in the past: still nothing. */
      await seed(d, {});
      const end = (Date.now() - 3 * 3600_000) * 1000;
      const start = end - 3600e6;
      await page.goto(`${d.httpUrl}/#/graph?range=custom&start=${start}&end=${end}&paused=1`);
      await page.waitForSelector('.state-empty >> text=No traffic in this window');
      await page.goto(`${d.httpUrl}/#/traces?service=reviews&range=custom&start=${start}&end=${end}`);
      await page.waitForSelector('.search-results .state-empty >> text=No traces match');

      /* The API unreachable (every /api/ request refused): an explicit state with Retry. */
      await page.route('**/api/**', (r) => r.abort('connectionrefused'));
      await page.goto(`${d.httpUrl}/#/graph?range=15m&paused=1`);
      await page.waitForSelector('.state-unreachable >> text=meshscope unreachable');
      await page.goto(`${d.httpUrl}/#/traces?service=reviews&range=1h`);
      await page.waitForSelector('.search-results .state-unreachable >> text=meshscope unreachable');
      await page.goto(`${d.httpUrl}/#/trace/${'ab'.repeat(16)}`);
      await page.waitForSelector('.trace-page .state-unreachable >> text=meshscope unreachable');
      /* Back: Retry loads the graph. */
      await page.goto(`${d.httpUrl}/#/graph?range=15m&paused=1`);
      await page.waitForSelector('.state-unreachable button.retry');
      await page.unroute('**/api/**');
      await page.click('.state-unreachable button.retry');
      await page.waitForFunction(() => document.querySelectorAll('.nodes-table tbody tr').length >= 4);
      assert.equal(await page.locator('.graph-area .state-unreachable').isVisible(), false, 'the error state is gone');
      assert.deepEqual(errors, [], 'no console errors');
    } finally {
      await ctx.close();
    }
  });
});

describe('dashboard with --auth-token-file', () => {
  let d;
  let b;
  let dir;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'meshscope-web-auth-'));
    const tokenFile = path.join(dir, 'tokens');
    await writeFile(tokenFile, `${TOKEN}\n`);
    d = await startDaemon({ logLevel: 'info', args: ['--auth-token-file', tokenFile] });
    await seed(d, { authorization: `Bearer ${TOKEN}` });
    b = await launch();
  });

  after(async () => {
    await b?.close();
    if (d) {
      await d.stop();
      await d.cleanup();
    }
    await rm(dir, { recursive: true, force: true });
  });

  test('asks for the token once, then works', async () => {
    const base = d.httpUrl;
    const { page, ctx, errors } = await openPage(b.browser, { expectedFailures: [/\/api\//] });
    try {
      let asked = 0;
      await page.goto(`${base}/#/graph?range=15m&paused=1`);
      /* A wrong token first: refused, asked again. */
      await page.waitForSelector('#token-dialog[open]');
      asked++;
      await page.fill('#token-dialog input[name="token"]', 'wrong-token-wrong-token-wrong');
      await page.click('#token-dialog button[value="ok"]');
      await page.waitForSelector('#token-dialog[open] .token-rejected:not([hidden])');
      asked++;
      await page.fill('#token-dialog input[name="token"]', TOKEN);
      await page.click('#token-dialog button[value="ok"]');
      await page.waitForFunction(() => document.querySelectorAll('.nodes-table tbody tr').length >= 4);
      assert.equal(await page.evaluate(() => sessionStorage.getItem('meshscope.token')), TOKEN);
      /* Other pages reuse it without asking. */
      await page.goto(`${base}/#/traces?service=reviews&errors=1&range=1h`);
      await page.waitForSelector('a.result');
      assert.equal(await page.locator('#token-dialog[open]').count(), 0);
      assert.equal(asked, 2);
      assert.deepEqual(errors, [], 'no console errors');
    } finally {
      await ctx.close();
    }
  });
});
