/*
 * graph.js: the service graph page (#/graph).
 *
 * GET /api/graph?start=&end=&namespace= drawn with cytoscape.js and the dagre layered layout
 * (callers left, callees right). Nodes and edges carry rate, error % and p95, coloured by health
 * (util.js THRESHOLDS). Hover: a tooltip with the figures. Click: a side panel with RED charts
 * (the window cut into SERIES_POINTS sub-windows, one /api/graph each) and the recent failed
 * requests (Jaeger trace search), each opening the trace view. URL state:
 *   range, start, end (custom, epoch µs), ns, refresh (s), paused, sel (node:<id> | edge:<s>><t>).
 */
import cytoscape from '../vendor/cytoscape.esm.min.mjs';
import dagre from '../vendor/cytoscape-dagre.min.mjs';
import { api, logLine, logsAvailable, logsOfTrace } from './api.js';
import { redCharts } from './charts.js';
import {
  el, fmtAgo, fmtMs, fmtNum, fmtPct, fmtRate, fmtUs, hashFor, healthOf, HEALTH_LABEL, navigate,
  errorBox, rangePicker, replace, shortId, spanFailed, stateBox, tagOf, THRESHOLDS, windowOf,
} from './util.js';

cytoscape.use(dagre);

const SERIES_POINTS = 30;
const SERIES_CONCURRENCY = 5;
const FAILED_LIMIT = 20;
const REFRESH_CHOICES = [10, 15, 30, 60, 300];
const DEFAULT_REFRESH = 15;

const HEALTH_COLOR = { ok: '#1f9d55', warn: '#d48806', bad: '#d9363e', idle: '#9aa1ad' };

const edgeKey = (e) => `${e.source}>${e.target}`;

function nodeLabel(n) {
  const lines = [n.name];
  if (n.requests) lines.push(`${fmtRate(n.rps)} · ${fmtPct(n.error_rate)} err`, `p95 ${fmtMs(n.p95_ms)}`);
  return lines.join('\n');
}

const edgeLabel = (e) => (e.requests ? `${fmtRate(e.rps)} · ${fmtPct(e.error_rate)} · p95 ${fmtMs(e.p95_ms)}` : '');

const STYLE = [
  { selector: 'node', style: {
    shape: 'round-rectangle', 'background-color': '#ffffff', 'border-width': 3,
    'border-color': 'data(color)', label: 'data(label)', 'text-wrap': 'wrap', 'text-valign': 'center',
    'text-halign': 'center', 'font-size': 11, 'font-family': 'system-ui, sans-serif', color: '#1d2330',
    width: 'data(w)', height: 'data(h)', 'line-height': 1.35 } },
  { selector: 'node[kind = "virtual"]', style: { 'border-style': 'dashed', shape: 'round-diamond' } },
  { selector: 'node[kind = "user"]', style: { shape: 'ellipse', 'background-color': '#f3f5f9' } },
  { selector: 'node[health = "bad"]', style: { 'background-color': '#fdecec' } },
  { selector: 'node:selected', style: { 'border-width': 5, 'overlay-opacity': 0.08, 'overlay-color': '#2f6fde' } },
  { selector: 'edge', style: {
    'curve-style': 'bezier', 'target-arrow-shape': 'triangle', 'line-color': 'data(color)',
    'target-arrow-color': 'data(color)', width: 'data(width)', label: 'data(label)', 'font-size': 10,
    'font-family': 'system-ui, sans-serif', color: '#1d2330', 'text-background-color': '#ffffff',
    'text-background-opacity': 0.9, 'text-background-padding': 2, 'text-margin-y': -8,
    'arrow-scale': 1.1 } },
  { selector: 'edge:selected', style: { 'overlay-opacity': 0.12, 'overlay-color': '#2f6fde', 'overlay-padding': 4 } },
  { selector: '.faded', style: { opacity: 0.35 } },
];

/** Cytoscape element data of a node / edge from the API's JSON. */
function nodeData(n) {
  const label = nodeLabel(n);
  const widest = Math.max(...label.split('\n').map((l) => l.length));
  const health = healthOf(n);
  return { id: String(n.id), label, health, color: HEALTH_COLOR[health], kind: n.kind || 'service',
    w: Math.max(70, widest * 6.6 + 26), h: n.requests ? 58 : 34, raw: n };
}

function edgeData(e, id, maxRps) {
  const health = healthOf(e);
  const width = 1.5 + (maxRps > 0 ? 4.5 * Math.log1p(e.rps || 0) / Math.log1p(maxRps) : 0);
  return { id, source: String(e.source), target: String(e.target), label: edgeLabel(e), health,
    color: HEALTH_COLOR[health], width, raw: e };
}

/** The graph answer keyed for lookup: {nodes: Map(id->node), edges: Map(key->edge)}. */
function indexGraph(g) {
  const nodes = new Map((g.nodes || []).map((n) => [String(n.id), n]));
  const edges = new Map();
  for (const e of g.edges || []) {
    let k = edgeKey(e);
    if (edges.has(k)) k = `${k}>${e.connection_type || edges.size}`;
    edges.set(k, e);
  }
  return { nodes, edges };
}

/** Runs fns (returning promises) at most n at a time; resolves their results in order. */
async function pool(fns, n) {
  const out = new Array(fns.length);
  let next = 0;
  const worker = async () => {
    while (next < fns.length) {
      const i = next++;
      out[i] = await fns[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, fns.length) }, worker));
  return out;
}

export function mount(root, route) {
  let params = route.params;
  let cy = null;
  let graph = null; /* indexed last answer */
  let timer = null;
  let loadSeq = 0;
  let panelSeq = 0;
  let charts = [];
  const knownNamespaces = new Set();
  const aborter = new AbortController();
  const opts = { signal: aborter.signal };

  const p = (k, d = '') => params.get(k) ?? d;
  const range = () => p('range', '15m');
  const refreshSec = () => Number(p('refresh', String(DEFAULT_REFRESH))) || DEFAULT_REFRESH;
  const paused = () => p('paused') === '1' || range() === 'custom';

  /** Navigate with some params changed (null deletes). */
  function setParams(changes, { replace: rep = true } = {}) {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === '' || v === undefined) next.delete(k);
      else next.set(k, String(v));
    }
    navigate(hashFor('graph', '', next), { replace: rep });
  }

  /* ---------- DOM ---------- */
  const nsSelect = el('select', { 'aria-label': 'Namespace', name: 'namespace', on: {
    change: () => setParams({ ns: nsSelect.value, sel: null }) } });
  const refreshSelect = el('select', { 'aria-label': 'Refresh interval', name: 'refresh', on: {
    change: () => setParams({ refresh: refreshSelect.value }) } },
  REFRESH_CHOICES.map((s) => el('option', { value: s, text: `every ${s < 60 ? `${s}s` : `${s / 60}min`}` })));
  const pauseBtn = el('button', { type: 'button', class: 'pause', on: {
    click: () => setParams({ paused: paused() ? null : '1' }) } });
  const refreshNow = el('button', { type: 'button', text: 'Refresh', on: { click: () => load() } });
  const updated = el('span', { class: 'muted updated' });
  const pickerSlot = el('span');
  const toolbar = el('div', { class: 'toolbar' },
    el('label', {}, 'Namespace ', nsSelect), pickerSlot,
    el('span', { class: 'refresh-group' }, 'Auto-refresh ', refreshSelect, pauseBtn, refreshNow), updated);

  const cyBox = el('div', { id: 'cy', class: 'cy', 'aria-label': 'Service graph' });
  const overlay = el('div', { class: 'graph-overlay' });
  const tooltip = el('div', { class: 'tooltip', role: 'tooltip', hidden: true });
  const legend = el('div', { class: 'legend', 'aria-label': 'Health legend' },
    ...['ok', 'warn', 'bad', 'idle'].map((h) =>
      el('span', { class: 'legend-item' }, el('span', { class: `swatch health-${h}` }), HEALTH_LABEL[h])),
    el('span', { class: 'muted', text:
      ` red: errors ≥ ${THRESHOLDS.errorBad * 100}% or p95 ≥ ${THRESHOLDS.p95BadMs} ms; ` +
      `amber: errors ≥ ${THRESHOLDS.errorWarn * 100}% or p95 ≥ ${THRESHOLDS.p95WarnMs} ms` }));
  const tables = el('div', { class: 'graph-tables' });
  const graphArea = el('section', { class: 'graph-area' },
    el('div', { class: 'cy-wrap' }, cyBox, overlay, tooltip), legend,
    el('details', { class: 'table-view' }, el('summary', { text: 'Table view' }), tables));
  const panel = el('aside', { class: 'side-panel', hidden: true, 'aria-label': 'Details' });
  const page = el('div', { class: 'graph-page' }, toolbar, el('div', { class: 'graph-body' }, graphArea, panel));
  root.append(page);

  function renderControls() {
    replace(pickerSlot, rangePicker({ range: range(), start: p('start'), end: p('end'),
      onChange: (r) => setParams({ range: r.range, start: r.start, end: r.end }) }));
    const ns = p('ns');
    if (ns) knownNamespaces.add(ns);
    replace(nsSelect, el('option', { value: '', text: 'All namespaces' }),
      [...knownNamespaces].sort().map((n) => el('option', { value: n, text: n, selected: n === ns })));
    refreshSelect.value = String(refreshSec());
    refreshSelect.disabled = range() === 'custom';
    pauseBtn.disabled = range() === 'custom';
    pauseBtn.textContent = paused() ? 'Resume' : 'Pause';
    pauseBtn.setAttribute('aria-pressed', String(paused()));
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (!paused()) timer = setTimeout(() => load(), refreshSec() * 1000);
  }

  function showOverlay(node) {
    if (node) replace(overlay, node);
    overlay.hidden = !node;
  }

  /* ---------- loading and drawing ---------- */
  async function load() {
    const seq = ++loadSeq;
    clearTimeout(timer);
    const win = windowOf(range(), p('start'), p('end'));
    if (!graph || (!overlay.hidden && overlay.querySelector('.state-error'))) showOverlay(stateBox('info', 'Loading the service graph…'));
    let g;
    try {
      g = await api.graph(win.startUs, win.endUs, p('ns'), opts);
    } catch (e) {
      if (e.name === 'AbortError' || seq !== loadSeq) return;
      const what = e.status === 404 ? 'This meshscope has no service graph API (/api/graph)' : `Could not load the graph (HTTP ${e.status})`;
      const box = errorBox(e, what, () => load());
      if (e.status === 0 && !paused()) box.append(el('p', { class: 'state-detail', text: `Retrying every ${refreshSec()} s.` }));
      showOverlay(box);
      updated.textContent = '';
      schedule();
      return;
    }
    if (seq !== loadSeq) return;
    for (const n of g.nodes || []) if (n.namespace) knownNamespaces.add(n.namespace);
    renderControls();
    graph = indexGraph(g);
    graph.window = win;
    draw();
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    if (!graph.nodes.size) {
      showOverlay(stateBox('empty', 'No traffic in this window',
        'No spans arrived in the selected time range and namespace. Widen the range or send traffic.'));
    } else showOverlay(null);
    renderTables();
    showSelection(true);
    schedule();
  }

  function draw() {
    const maxRps = Math.max(0, ...[...graph.edges.values()].map((e) => e.rps || 0));
    const nodes = [...graph.nodes.values()].map((n) => ({ group: 'nodes', data: nodeData(n) }));
    const edges = [...graph.edges.entries()]
      .filter(([, e]) => graph.nodes.has(String(e.source)) && graph.nodes.has(String(e.target)))
      .map(([k, e]) => ({ group: 'edges', data: edgeData(e, k, maxRps) }));
    if (!cy) {
      cy = cytoscape({ container: cyBox, style: STYLE, elements: [], minZoom: 0.2, maxZoom: 3,
        boxSelectionEnabled: false, autoungrabify: false });
      window.__meshscopeGraph = cy; /* a handle for the browser test and the devtools console */
      cy.on('tap', 'node', (ev) => select(`node:${ev.target.id()}`));
      cy.on('tap', 'edge', (ev) => select(`edge:${ev.target.id()}`));
      cy.on('tap', (ev) => {
        if (ev.target === cy) select(null);
      });
      cy.on('mouseover', 'node, edge', (ev) => showTooltip(ev.target, ev.renderedPosition));
      cy.on('mousemove', 'node, edge', (ev) => moveTooltip(ev.renderedPosition));
      cy.on('mouseout', 'node, edge', () => {
        tooltip.hidden = true;
      });
      cy.on('viewport', () => {
        tooltip.hidden = true;
      });
    }
    const sameShape = cy.elements().length === nodes.length + edges.length &&
      nodes.every((n) => cy.getElementById(n.data.id).length) && edges.every((e) => cy.getElementById(e.data.id).length);
    if (sameShape) {
      cy.batch(() => {
        for (const e of [...nodes, ...edges]) cy.getElementById(e.data.id).data(e.data);
      });
      return;
    }
    cy.batch(() => {
      cy.elements().remove();
      cy.add([...nodes, ...edges]);
    });
    cy.layout({ name: 'dagre', rankDir: 'LR', nodeSep: 40, rankSep: 170, edgeSep: 20, padding: 30,
      fit: false, animate: false }).run();
    fitGraph();
  }

  function figures(raw) {
    return [
      ['Requests', fmtNum(raw.requests)],
      ['Rate', fmtRate(raw.rps)],
      ['Errors', `${fmtNum(raw.errors)} (${fmtPct(raw.error_rate)})`],
      ['p50', fmtMs(raw.p50_ms)],
      ['p95', fmtMs(raw.p95_ms)],
      ['p99', fmtMs(raw.p99_ms)],
    ];
  }

  function titleOf(ele) {
    if (ele.isNode()) return ele.data('raw').name;
    return `${graph.nodes.get(ele.data('source'))?.name ?? ele.data('source')} → ${
      graph.nodes.get(ele.data('target'))?.name ?? ele.data('target')}`;
  }

  function showTooltip(ele, pos) {
    const raw = ele.data('raw');
    replace(tooltip,
      el('div', { class: 'tooltip-title', text: titleOf(ele) }),
      el('div', { class: `health-text health-${ele.data('health')}`, text: HEALTH_LABEL[ele.data('health')] }),
      el('dl', { class: 'figures' }, figures(raw).map(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })])));
    tooltip.hidden = false;
    moveTooltip(pos);
  }

  function moveTooltip(pos) {
    if (!pos || tooltip.hidden) return;
    const box = cyBox.getBoundingClientRect();
    const x = Math.min(pos.x + 14, box.width - tooltip.offsetWidth - 4);
    const y = Math.min(pos.y + 14, box.height - tooltip.offsetHeight - 4);
    tooltip.style.setProperty('left', `${Math.max(0, x)}px`);
    tooltip.style.setProperty('top', `${Math.max(0, y)}px`);
  }

  function renderTables() {
    const nodeRows = [...graph.nodes.values()].map((n) => {
      const h = healthOf(n);
      return el('tr', { dataset: { id: String(n.id), health: h, kind: n.kind || 'service' }, class: `health-row-${h}`,
        tabindex: 0, on: { click: () => select(`node:${n.id}`), keydown: (e) => e.key === 'Enter' && select(`node:${n.id}`) } },
      el('td', { class: 'name', text: n.name }), el('td', { text: n.namespace || '' }), el('td', { text: n.kind || '' }),
      el('td', { text: fmtRate(n.rps) }), el('td', { text: fmtPct(n.error_rate) }), el('td', { text: fmtMs(n.p95_ms) }),
      el('td', {}, el('span', { class: `badge health-${h}`, text: HEALTH_LABEL[h] })));
    });
    const edgeRows = [...graph.edges.entries()].map(([k, e]) => {
      const h = healthOf(e);
      const s = graph.nodes.get(String(e.source))?.name ?? e.source;
      const t = graph.nodes.get(String(e.target))?.name ?? e.target;
      return el('tr', { dataset: { id: k, source: s, target: t, health: h }, class: `health-row-${h}`, tabindex: 0,
        on: { click: () => select(`edge:${k}`), keydown: (ev) => ev.key === 'Enter' && select(`edge:${k}`) } },
      el('td', { class: 'name', text: `${s} → ${t}` }), el('td', { text: e.connection_type || '' }),
      el('td', { text: fmtRate(e.rps) }), el('td', { text: fmtPct(e.error_rate) }), el('td', { text: fmtMs(e.p95_ms) }),
      el('td', {}, el('span', { class: `badge health-${h}`, text: HEALTH_LABEL[h] })));
    });
    const head = (...cols) => el('thead', {}, el('tr', {}, cols.map((c) => el('th', { text: c }))));
    replace(tables,
      el('table', { class: 'data nodes-table' }, el('caption', { text: 'Nodes' }),
        head('Service', 'Namespace', 'Kind', 'Rate', 'Errors', 'p95', 'Health'), el('tbody', {}, nodeRows)),
      el('table', { class: 'data edges-table' }, el('caption', { text: 'Edges' }),
        head('Edge', 'Connection', 'Rate', 'Errors', 'p95', 'Health'), el('tbody', {}, edgeRows)));
  }

  /* ---------- selection and side panel ---------- */
  function select(sel) {
    setParams({ sel }, { replace: false });
  }

  /** The selected cytoscape element per the URL (node by id, or by name as a fallback). */
  function selected() {
    const sel = p('sel');
    if (!sel || !cy) return null;
    const [kind, ...rest] = sel.split(':');
    const id = rest.join(':');
    let ele = cy.getElementById(id);
    if (!ele.length && kind === 'node') ele = cy.nodes().filter((n) => n.data('raw').name === id);
    if (!ele.length) return null;
    return ele[0];
  }

  let panelFor = ''; /* sel the panel shows, so refreshes re-render in place */
  function showSelection(refresh = false) {
    const ele = selected();
    cy?.elements().unselect();
    if (!ele) {
      closePanel();
      if (p('sel') && graph?.nodes.size) {
        panel.hidden = false;
        replace(panel, panelHeader(p('sel').replace(/^(node|edge):/, '')),
          stateBox('empty', 'Not in this window', 'The selected node or edge has no traffic in this time range.'));
      }
      return;
    }
    ele.select();
    const fresh = !refresh || panelFor !== p('sel');
    panelFor = p('sel');
    renderPanel(ele);
    if (fresh) fitGraph(); /* the panel took width from the graph */
  }

  /** Fits the graph to its box (after a resize), no closer than 1.4x. */
  function fitGraph() {
    cy.resize();
    cy.fit(undefined, 30);
    if (cy.zoom() > 1.4) {
      cy.zoom(1.4);
      cy.center();
    }
  }

  function closePanel() {
    panelSeq++;
    charts.forEach((c) => c.destroy());
    charts = [];
    const wasOpen = !panel.hidden;
    panel.hidden = true;
    if (wasOpen && cy) fitGraph();
    panelFor = '';
    replace(panel);
  }

  function panelHeader(title, sub) {
    return el('header', { class: 'panel-header' },
      el('div', {}, el('h2', { class: 'panel-title', text: title }), sub ? el('div', { class: 'muted', text: sub }) : null),
      el('button', { type: 'button', class: 'close', 'aria-label': 'Close', text: '×', on: { click: () => select(null) } }));
  }

  function renderPanel(ele) {
    const seq = ++panelSeq;
    const raw = ele.data('raw');
    const isNode = ele.isNode();
    const health = ele.data('health');
    const src = isNode ? null : graph.nodes.get(ele.data('source'));
    const dst = isNode ? null : graph.nodes.get(ele.data('target'));
    const sub = isNode ? [raw.kind || 'service', raw.namespace].filter(Boolean).join(' · ') :
      ['edge', raw.connection_type].filter(Boolean).join(' · ');
    const chartsBox = el('div', { class: 'charts' }, stateBox('info', 'Loading time series…'));
    const failedBox = el('div', { class: 'failed' }, stateBox('info', 'Loading failed requests…'));
    const logsSection = el('section', { class: 'access-logs', hidden: true },
      el('h3', { text: 'Access-log lines' }),
      el('p', { class: 'muted', text: 'Access-log records of the failed requests above (/api/logs), joined by trace id.' }),
      el('div', { class: 'logs-body' }));
    const searchService = isNode ? raw.name : dst?.name;
    const win = graph.window;
    const searchLink = el('a', { class: 'button-link', href: hashFor('traces', '', {
      service: searchService, errors: '1', range: range(), start: p('start'), end: p('end') }),
    text: `Search failed traces of ${searchService ?? ''}` });
    charts.forEach((c) => c.destroy());
    charts = [];
    panel.hidden = false;
    replace(panel,
      panelHeader(titleOf(ele), sub),
      el('div', { class: `health-banner health-${health}`, text: HEALTH_LABEL[health] }),
      el('dl', { class: 'figures panel-figures' }, figures(raw).map(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })])),
      el('h3', { text: 'RED over the window' }), chartsBox,
      el('h3', { text: 'Recent failed requests' }), failedBox, logsSection,
      searchService ? el('p', {}, searchLink) : null);
    loadSeries(seq, ele, win, chartsBox);
    loadFailed(seq, isNode, raw, src, dst, win, failedBox, logsSection);
  }

  let seriesCache = null; /* {key, points: [{t, graph}]} */
  async function loadSeries(seq, ele, win, box) {
    const key = `${win.startUs}/${win.endUs}/${p('ns')}`;
    try {
      if (!seriesCache || seriesCache.key !== key) {
        const step = (win.endUs - win.startUs) / SERIES_POINTS;
        const fns = Array.from({ length: SERIES_POINTS }, (_, i) => async () => {
          const s = win.startUs + i * step;
          const g = await api.graph(s, s + step, p('ns'), opts);
          return { t: (s + step) / 1e6, graph: indexGraph(g) };
        });
        seriesCache = { key, points: await pool(fns, SERIES_CONCURRENCY) };
      }
    } catch (e) {
      if (e.name === 'AbortError' || seq !== panelSeq) return;
      replace(box, stateBox('error', 'Could not load the time series', e.message));
      return;
    }
    if (seq !== panelSeq) return;
    const id = ele.id();
    const points = seriesCache.points.map((pt) => ({ t: pt.t,
      item: ele.isNode() ? pt.graph.nodes.get(id) ?? null : pt.graph.edges.get(id) ?? null }));
    charts.forEach((c) => c.destroy());
    charts = redCharts(points, Math.max(280, panel.clientWidth - 40));
    replace(box, charts.map((c) => c.node));
  }

  async function loadFailed(seq, isNode, raw, src, dst, win, box, logsSection) {
    /* Whose spans fail: the node's own, or for an edge the server side's, filtered to traces that
     * also contain the client service. */
    const service = isNode ? raw.name : (dst?.kind === 'service' || !dst?.kind ? dst?.name : src?.name);
    const client = isNode ? null : src?.name;
    if (!service || (isNode && raw.kind && raw.kind !== 'service')) {
      replace(box, stateBox('empty', 'No traced spans', 'This node is not a traced service (no spans of its own).'));
      return;
    }
    let traces;
    try {
      traces = await api.traces({ service, tags: JSON.stringify({ error: 'true' }), start: Math.floor(win.startUs),
        end: Math.floor(win.endUs), limit: FAILED_LIMIT * (client ? 3 : 1) }, opts);
    } catch (e) {
      if (e.name === 'AbortError' || seq !== panelSeq) return;
      replace(box, stateBox('error', 'Could not search the failed requests', e.message));
      return;
    }
    if (seq !== panelSeq) return;
    const rows = [];
    for (const t of traces) {
      const svcOf = (s) => t.processes?.[s.processID]?.serviceName;
      if (client && client !== service && !t.spans.some((s) => svcOf(s) === client)) continue;
      const failed = t.spans.filter((s) => svcOf(s) === service && spanFailed(s));
      if (!failed.length) continue;
      /* The failing span: the failed one of this service with no failed child (the origin). */
      const failedIds = new Set(t.spans.filter(spanFailed).map((s) => s.spanID));
      const hasFailedChild = (s) => t.spans.some((c) => failedIds.has(c.spanID) &&
        (c.references || []).some((r) => r.spanID === s.spanID));
      const origin = failed.find((s) => !hasFailedChild(s)) || failed[0];
      const start = Math.min(...t.spans.map((s) => s.startTime));
      const end = Math.max(...t.spans.map((s) => s.startTime + s.duration));
      const status = tagOf(origin, 'http.response.status_code') ?? tagOf(origin, 'http.status_code') ??
        tagOf(origin, 'otel.status_description') ?? 'error';
      rows.push({ trace: t.traceID, span: origin.spanID, start, dur: end - start, op: origin.operationName,
        status: String(status) });
      if (rows.length >= FAILED_LIMIT) break;
    }
    rows.sort((a, b) => b.start - a.start);
    if (!rows.length) {
      replace(box, stateBox('empty', 'No failed requests in this window'));
      return;
    }
    replace(box, el('ul', { class: 'failed-list' }, rows.map((r) =>
      el('li', {}, el('a', { class: 'failed-request', href: hashFor('trace', r.trace, { span: r.span }),
        dataset: { trace: r.trace } },
      el('span', { class: 'status-chip', text: r.status }),
      el('span', { class: 'op', text: `${service}: ${r.op}` }),
      el('span', { class: 'mono', text: shortId(r.trace) }),
      el('span', { class: 'muted', text: `${fmtUs(r.dur)} · ${fmtAgo(r.start)}` }))))));
    /* Access-log lines: hidden while this meshscope has no /api/logs (404). */
    if (!(await logsAvailable()) || seq !== panelSeq) return;
    logsSection.hidden = false;
    const body = logsSection.querySelector('.logs-body');
    try {
      const all = await Promise.all(rows.slice(0, 10).map((r) => logsOfTrace(r.trace, opts).then((recs) => [r, recs])));
      if (seq !== panelSeq) return;
      const lines = all.flatMap(([r, recs]) => recs.map((rec) => el('li', {},
        el('a', { class: 'mono', href: hashFor('trace', r.trace), text: shortId(r.trace) }), ' ',
        el('code', { text: logLine(rec) }))));
      replace(body, lines.length ? el('ul', { class: 'log-lines' }, lines) : stateBox('empty', 'No access-log lines for these traces'));
    } catch (e) {
      if (e.name !== 'AbortError' && seq === panelSeq) replace(body, stateBox('error', 'Could not load access logs', e.message));
    }
  }

  /* ---------- lifecycle ---------- */
  renderControls();
  load();

  return {
    update(r) {
      const before = params;
      params = r.params;
      const changed = (k) => (before.get(k) ?? '') !== (params.get(k) ?? '');
      renderControls();
      if (['range', 'start', 'end', 'ns'].some(changed)) {
        seriesCache = null;
        closePanel();
        load();
      } else if (changed('paused') || changed('refresh')) {
        if (!paused() && changed('paused')) load();
        else schedule();
      }
      if (changed('sel')) showSelection();
      return true;
    },
    unmount() {
      loadSeq++;
      panelSeq++;
      clearTimeout(timer);
      aborter.abort();
      charts.forEach((c) => c.destroy());
      cy?.destroy();
      if (window.__meshscopeGraph === cy) delete window.__meshscopeGraph;
    },
  };
}
