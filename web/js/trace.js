/*
 * trace.js: one trace (#/trace/<id>?span=<spanID>): the span waterfall with service colours, the
 * critical path (dark strip inside the bars), collapsible subtrees, errors highlighted (the
 * failing span, a failed span with no failed child, is the "error origin"), span details (tags,
 * events/logs, process/resource, references/links, warnings) and, when /api/logs exists, the
 * access-log records joined by trace id. GET /api/traces/<id>.
 *
 * Access-log join: the trace's records are fetched once (GET /api/logs?traceID=, which has no
 * requestId= parameter) and listed under the waterfall; a span's details show the records of that
 * span, matched client-side: the record's spanID is the span's, or its request_id equals the
 * span's x-request-id (tag `guid:x-request-id`, Envoy's, or `http.request.header.x-request-id`,
 * OTel's; Istio propagates one x-request-id through a whole request, so that may match the
 * records of several hops).
 */
import { api, logLine, logsAvailable, logsOfTrace } from './api.js';
import {
  el, errorBox, fmtTime, fmtUs, hashFor, navigate, replace, serviceColor, spanFailed, stateBox, tagOf,
} from './util.js';

/** Parent span id of a Jaeger span (its first CHILD_OF reference, else its first reference). */
function parentOf(span) {
  const refs = span.references || [];
  return (refs.find((r) => r.refType === 'CHILD_OF') || refs[0])?.spanID;
}

/**
 * The critical path as segments {spanID, start, end} (µs): from the root's end backwards, the
 * child that finished last before the cursor is on the path, recursively; the gaps between such
 * children are the parent's own time. (The algorithm of Jaeger UI's critical path.)
 */
export function criticalPath(byId, children, rootId) {
  const segs = [];
  const walk = (id, endCap) => {
    const s = byId.get(id);
    const end = Math.min(s.startTime + s.duration, endCap);
    let cursor = end;
    const kids = (children.get(id) || []).slice().sort((a, b) => (b.startTime + b.duration) - (a.startTime + a.duration));
    for (const k of kids) {
      const kEnd = k.startTime + k.duration;
      if (k.startTime >= cursor || kEnd <= s.startTime) continue;
      const cEnd = Math.min(kEnd, cursor);
      if (cursor > cEnd) segs.push({ spanID: id, start: cEnd, end: cursor });
      walk(k.spanID, cEnd);
      cursor = Math.max(k.startTime, s.startTime);
    }
    if (cursor > s.startTime) segs.push({ spanID: id, start: s.startTime, end: cursor });
  };
  if (byId.has(rootId)) walk(rootId, Infinity);
  return segs;
}

/** The x-request-id a span carries (Envoy's guid:x-request-id or OTel's request header), or ''. */
export function requestIdOf(span) {
  let v = tagOf(span, 'guid:x-request-id') ?? tagOf(span, 'http.request.header.x-request-id');
  if (typeof v === 'string' && v.startsWith('[')) {
    try {
      v = JSON.parse(v); /* an OTel string array, flattened to JSON text */
    } catch {
      /* a plain string after all */
    }
  }
  if (Array.isArray(v)) v = v[0];
  return v === undefined || v === null ? '' : String(v);
}

/** Whether an access-log record belongs to a span: same span id, or same x-request-id. */
export function logMatchesSpan(rec, span) {
  if (rec && rec.spanID && rec.spanID === span.spanID) return true;
  const rid = requestIdOf(span);
  return Boolean(rid && rec && rec.request_id === rid);
}

function kvTable(rows) {
  return el('table', { class: 'kv' }, el('tbody', {}, rows.map(([k, v]) =>
    el('tr', {}, el('td', { text: k }), el('td', { text: typeof v === 'string' ? v : JSON.stringify(v) })))));
}

export function mount(root, route) {
  let traceId = route.arg;
  let params = route.params;
  let state = null; /* {trace, byId, children, rows: [{span, depth}], collapsed:Set, ...} */
  const aborter = new AbortController();
  const opts = { signal: aborter.signal };
  const page = el('div', { class: 'trace-page' });
  root.append(page);
  let logsPromise = null; /* the trace's access-log records (null: no /api/logs), fetched once */
  const traceLogs = () => {
    if (!logsPromise) {
      logsPromise = logsAvailable().then((ok) => (ok ? logsOfTrace(traceId, opts) : null));
      logsPromise.catch(() => {
        logsPromise = null; /* ask again on the next render */
      });
    }
    return logsPromise;
  };

  async function load() {
    replace(page, stateBox('info', 'Loading trace…'));
    let trace;
    try {
      trace = await api.trace(traceId, opts);
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(page, e.status === 404 ? stateBox('empty', 'Trace not found', `No trace with id ${traceId} (it may have aged out of retention).`)
        : errorBox(e, 'Could not load the trace', () => load()));
      return;
    }
    if (!trace || !trace.spans?.length) {
      replace(page, stateBox('empty', 'Trace not found', `No spans for trace ${traceId}.`));
      return;
    }
    build(trace);
    render();
  }

  function build(trace) {
    const byId = new Map(trace.spans.map((s) => [s.spanID, s]));
    const children = new Map();
    const roots = [];
    for (const s of trace.spans) {
      const p = parentOf(s);
      if (p && byId.has(p) && p !== s.spanID) {
        if (!children.has(p)) children.set(p, []);
        children.get(p).push(s);
      } else roots.push(s);
    }
    for (const list of children.values()) list.sort((a, b) => a.startTime - b.startTime);
    roots.sort((a, b) => a.startTime - b.startTime);
    const rows = [];
    const visit = (s, depth) => {
      rows.push({ span: s, depth });
      for (const c of children.get(s.spanID) || []) visit(c, depth + 1);
    };
    roots.forEach((r) => visit(r, 0));
    const failed = new Set(trace.spans.filter(spanFailed).map((s) => s.spanID));
    const hasFailedDesc = (id) => (children.get(id) || []).some((c) => failed.has(c.spanID) || hasFailedDesc(c.spanID));
    const origins = new Set([...failed].filter((id) => !hasFailedDesc(id)));
    const start = Math.min(...trace.spans.map((s) => s.startTime));
    const end = Math.max(...trace.spans.map((s) => s.startTime + s.duration));
    const cp = new Map();
    for (const seg of criticalPath(byId, children, roots[0]?.spanID)) {
      if (!cp.has(seg.spanID)) cp.set(seg.spanID, []);
      cp.get(seg.spanID).push(seg);
    }
    state = { trace, byId, children, rows, failed, origins, start, end, cp, collapsed: new Set(),
      svc: (s) => trace.processes?.[s.processID]?.serviceName ?? '?' };
  }

  function render() {
    const { trace, rows, start, end, failed, origins } = state;
    const total = Math.max(1, end - start);
    const rootSpan = rows[0].span;
    const rootSvc = state.svc(rootSpan);
    const services = [...new Set(trace.spans.map(state.svc))];
    const head = el('div', { class: 'trace-head' },
      el('h2', { text: `${rootSvc}: ${rootSpan.operationName}` }),
      el('div', { class: 'result-meta' },
        el('span', { class: 'mono', text: `trace ${trace.traceID}` }),
        el('span', { text: fmtTime(start) }),
        el('span', { text: `duration ${fmtUs(total)}` }),
        el('span', { class: 'span-count', text: `${trace.spans.length} spans` }),
        failed.size ? el('span', { class: 'err-count', text: `${failed.size} failed span${failed.size === 1 ? '' : 's'}` }) : null,
        services.map((n) => el('span', { class: 'svc-chip' }, el('span', { class: 'svc-dot', style: { background: serviceColor(n) } }), n))),
      el('div', { class: 'trace-links' },
        el('a', { class: 'back-to-graph', href: hashFor('graph', '', { sel: `node:${rootSvc}` }), text: '← Service graph' }),
        el('a', { href: hashFor('traces', '', { service: rootSvc }), text: `Traces of ${rootSvc}` }),
        el('span', { class: 'muted' }, el('span', { class: 'legend-cp' }), ' critical path')));

    const tick = (f) => el('span', { style: { left: `${f * 100}%` }, text: fmtUs(total * f) });
    const header = el('div', { class: ['wf-row', 'header'] },
      el('div', { class: 'wf-label', text: 'Service: operation' }),
      el('div', { class: 'wf-track' }, el('div', { class: 'wf-ticks' }, [0, 0.25, 0.5, 0.75, 1].map(tick))));
    const body = el('div', { class: 'wf-body' });
    const hiddenUnder = new Set();
    const selectedSpan = params.get('span');
    for (const { span, depth } of rows) {
      const parent = parentOf(span);
      if (parent && (state.collapsed.has(parent) || hiddenUnder.has(parent))) {
        hiddenUnder.add(span.spanID);
        continue;
      }
      const svc = state.svc(span);
      const kids = state.children.get(span.spanID) || [];
      const left = ((span.startTime - start) / total) * 100;
      const width = (span.duration / total) * 100;
      const isOrigin = origins.has(span.spanID);
      const toggle = el('button', { type: 'button', class: 'wf-toggle', disabled: !kids.length,
        'aria-label': state.collapsed.has(span.spanID) ? 'Expand' : 'Collapse',
        'aria-expanded': String(!state.collapsed.has(span.spanID)),
        text: state.collapsed.has(span.spanID) ? '▸' : '▾', on: { click: (e) => {
          e.stopPropagation();
          if (state.collapsed.has(span.spanID)) state.collapsed.delete(span.spanID);
          else state.collapsed.add(span.spanID);
          render();
        } } });
      const selectSpan = () => navigate(hashFor('trace', traceId, { span: selectedSpan === span.spanID ? '' : span.spanID }), { replace: true });
      const row = el('div', { class: ['wf-row', failed.has(span.spanID) && 'error', isOrigin && 'error-origin',
        selectedSpan === span.spanID && 'selected'], dataset: { span: span.spanID, service: svc },
      role: 'row', tabindex: 0, on: { click: selectSpan, keydown: (e) => e.key === 'Enter' && selectSpan() } },
      el('div', { class: 'wf-label', style: { 'padding-left': `${6 + depth * 14}px` } }, toggle,
        el('span', { class: 'svc-dot', style: { background: serviceColor(svc) } }),
        el('span', { class: 'svc', text: svc }), el('span', { class: 'opname', text: span.operationName }),
        isOrigin ? el('span', { class: 'origin-badge', text: 'failing span' }) : null),
      el('div', { class: 'wf-track' },
        el('div', { class: 'wf-bar', style: { left: `${left}%`, width: `${width}%`, background: serviceColor(svc) } }),
        (state.cp.get(span.spanID) || []).map((seg) => el('div', { class: 'wf-cp', style: {
          left: `${((seg.start - start) / total) * 100}%`, width: `${((seg.end - seg.start) / total) * 100}%` } })),
        el('span', { class: 'wf-dur', style: left + width > 80 ? { right: `${100 - left}%` } : { left: `${left + width}%` },
          text: fmtUs(span.duration) })));
      body.append(row);
      if (selectedSpan === span.spanID) body.append(detail(span));
    }
    const logs = el('section', { class: 'access-logs', hidden: true },
      el('h3', { text: 'Access-log lines' }),
      el('p', { class: 'muted', text: 'Access-log records of this trace (/api/logs), joined by trace id; each links to its span (by span id or x-request-id).' }),
      el('div', { class: 'logs-body' }));
    replace(page, head, el('div', { class: 'waterfall', role: 'table', 'aria-label': 'Span timeline' }, header, body), logs);
    loadLogs(logs);
    const sel = selectedSpan && page.querySelector('.wf-row.selected');
    if (sel && !scrolledTo.has(selectedSpan)) {
      scrolledTo.add(selectedSpan);
      sel.scrollIntoView({ block: 'center' });
    }
  }
  const scrolledTo = new Set();

  function detail(span) {
    const svc = state.svc(span);
    const proc = state.trace.processes?.[span.processID];
    const parent = parentOf(span);
    const status = tagOf(span, 'otel.status_code') ?? (spanFailed(span) ? 'ERROR' : 'UNSET');
    const statusMsg = tagOf(span, 'otel.status_description');
    return el('div', { class: 'span-detail', role: 'region', 'aria-label': 'Span details', on: { click: (e) => e.stopPropagation() } },
      kvTable([
        ['service', svc], ['operation', span.operationName], ['span id', span.spanID], ['parent', parent || '(root)'],
        ['kind', String(tagOf(span, 'span.kind') ?? '')], ['status', statusMsg ? `${status}: ${statusMsg}` : String(status)],
        ['start', `${fmtTime(span.startTime)} (+${fmtUs(span.startTime - state.start)})`], ['duration', fmtUs(span.duration)],
      ]),
      el('h4', { text: 'Attributes (tags)' }),
      span.tags?.length ? kvTable(span.tags.map((t) => [t.key, String(t.value)])) : el('p', { class: 'muted', text: 'none' }),
      el('h4', { text: 'Events (logs)' }),
      span.logs?.length ? kvTable(span.logs.map((l) => [`+${fmtUs(l.timestamp - span.startTime)}`,
        (l.fields || []).map((f) => `${f.key}=${f.value}`).join('  ')])) : el('p', { class: 'muted', text: 'none' }),
      (span.references || []).some((r) => r.spanID !== parent || r.refType !== 'CHILD_OF') ? [
        el('h4', { text: 'Links (references)' }),
        kvTable(span.references.map((r) => [r.refType, `${r.traceID}/${r.spanID}`]))] : null,
      el('h4', { text: 'Process (resource)' }),
      kvTable([['service.name', proc?.serviceName ?? '?'], ...(proc?.tags || []).map((t) => [t.key, String(t.value)])]),
      span.warnings?.length ? [el('h4', { text: 'Warnings' }), el('ul', {}, span.warnings.map((w) => el('li', { text: w })))] : null,
      spanLogs(span));
  }

  /** The access-log lines of one span (same span id or x-request-id); hidden without /api/logs. */
  function spanLogs(span) {
    const rid = requestIdOf(span);
    const box = el('div', { class: 'span-logs-body' }, stateBox('info', 'Loading access logs…'));
    const section = el('section', { class: 'span-logs', hidden: true },
      el('h4', { text: 'Access-log lines' }),
      el('p', { class: 'muted', text: rid ? `Records with this span's id or x-request-id ${rid}.` : "Records with this span's id." }),
      box);
    traceLogs().then((recs) => {
      if (recs === null) return;
      section.hidden = false;
      const mine = recs.filter((r) => logMatchesSpan(r, span));
      replace(box, mine.length ? el('ul', { class: 'log-lines' }, mine.map((r) => el('li', {}, el('code', { text: logLine(r) }))))
        : el('p', { class: 'muted', text: 'No access-log lines for this span.' }));
    }, (e) => {
      if (e.name === 'AbortError') return;
      section.hidden = false;
      replace(box, stateBox('error', 'Could not load access logs', e.message));
    });
    return section;
  }

  async function loadLogs(section) {
    if (!(await logsAvailable())) return;
    section.hidden = false;
    const body = section.querySelector('.logs-body');
    replace(body, stateBox('info', 'Loading access logs…'));
    try {
      const recs = (await traceLogs()) || [];
      const spanOf = (r) => state.trace.spans.find((s) => r.spanID && s.spanID === r.spanID) ||
        state.trace.spans.find((s) => logMatchesSpan(r, s));
      replace(body, recs.length ? el('ul', { class: 'log-lines' }, recs.map((r) => {
        const s = spanOf(r);
        return el('li', {}, el('code', { text: logLine(r) }), s ? el('a', { class: 'log-span', href: hashFor('trace', traceId, { span: s.spanID }),
          text: ` → ${state.svc(s)}: ${s.operationName}` }) : null);
      }))
        : stateBox('empty', 'No access-log lines for this trace'));
    } catch (e) {
      if (e.name !== 'AbortError') replace(body, stateBox('error', 'Could not load access logs', e.message));
    }
  }

  load();
  return {
    update(r) {
      if (r.arg !== traceId) return false;
      params = r.params;
      if (state) render();
      return true;
    },
    unmount() {
      aborter.abort();
    },
  };
}
