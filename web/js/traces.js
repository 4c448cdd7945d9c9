/*
 * traces.js: the trace search page (#/traces).
 *
 * The form's state is the URL (service, operation, tags, minDuration, maxDuration, errors, range,
 * start, end, limit, sort): submitting navigates, and the route change runs the Jaeger search
 * (GET /api/traces). Tags are typed as `key=value` pairs separated by spaces (quote values with
 * spaces: http.url="/a b"); "errors only" adds error=true. Results show a duration bar (relative
 * to the longest result), span and error counts and the services involved; sortable.
 */
import { api } from './api.js';
import {
  el, errorBox, fmtAgo, fmtTime, fmtUs, hashFor, navigate, parseGoDuration, rangePicker, replace,
  serviceColor, shortId, spanFailed, stateBox, windowOf,
} from './util.js';

const SORTS = [
  ['recent', 'Most recent', (a, b) => b.start - a.start],
  ['longest', 'Longest', (a, b) => b.duration - a.duration],
  ['shortest', 'Shortest', (a, b) => a.duration - b.duration],
  ['spans', 'Most spans', (a, b) => b.spans - a.spans || b.start - a.start],
  ['errors', 'Most errors', (a, b) => b.errors - a.errors || b.start - a.start],
];
const LIMITS = [20, 50, 100, 500];

/** `k=v k2="v 2"` -> {k: 'v', k2: 'v 2'}; throws on a malformed pair. */
export function parseTags(text) {
  const out = {};
  const re = /\s*([^\s=]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/gy;
  let m;
  let last = 0;
  while ((m = re.exec(text)) !== null) {
    out[m[1]] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
    last = re.lastIndex;
  }
  if (text.slice(last).trim()) throw new Error(`tags: expected key=value pairs, got "${text.slice(last).trim()}"`);
  return out;
}

/** Summary of one Jaeger trace for the list. */
function summarize(t) {
  const svc = (s) => t.processes?.[s.processID]?.serviceName ?? '?';
  const ids = new Set(t.spans.map((s) => s.spanID));
  const roots = t.spans.filter((s) => !(s.references || []).some((r) => r.refType === 'CHILD_OF' && ids.has(r.spanID)));
  const root = roots.sort((a, b) => a.startTime - b.startTime)[0] || t.spans[0];
  const start = Math.min(...t.spans.map((s) => s.startTime));
  const end = Math.max(...t.spans.map((s) => s.startTime + s.duration));
  const services = new Map();
  for (const s of t.spans) {
    const n = svc(s);
    const e = services.get(n) || { spans: 0, errors: 0 };
    e.spans++;
    if (spanFailed(s)) e.errors++;
    services.set(n, e);
  }
  return { id: t.traceID, rootService: root ? svc(root) : '?', rootOp: root?.operationName ?? '', start,
    duration: end - start, spans: t.spans.length, errors: t.spans.filter(spanFailed).length, services };
}

export function mount(root, route) {
  let params = route.params;
  let seq = 0;
  let lastResults = null;
  const aborter = new AbortController();
  const opts = { signal: aborter.signal };
  const p = (k, d = '') => params.get(k) ?? d;

  const serviceSel = el('select', { name: 'service', 'aria-label': 'Service' });
  const opSel = el('select', { name: 'operation', 'aria-label': 'Operation' });
  const tagsIn = el('input', { name: 'tags', placeholder: 'http.status_code=503 k="v w"', spellcheck: 'false' });
  const minIn = el('input', { name: 'minDuration', placeholder: 'e.g. 100ms', size: 8 });
  const maxIn = el('input', { name: 'maxDuration', placeholder: 'e.g. 2s', size: 8 });
  const errorsIn = el('input', { type: 'checkbox', name: 'errors' });
  const limitSel = el('select', { name: 'limit', 'aria-label': 'Limit' },
    LIMITS.map((n) => el('option', { value: n, text: `${n} traces` })));
  const pickerSlot = el('div');
  const formError = el('p', { class: 'error-text', role: 'alert', hidden: true });
  let picked = { range: p('range', '1h'), start: p('start'), end: p('end') };

  const form = el('form', { class: 'search-form', 'aria-label': 'Trace search', on: { submit: (e) => {
    e.preventDefault();
    submit();
  } } },
  el('h2', { text: 'Find traces' }),
  el('label', {}, 'Service', serviceSel),
  el('label', {}, 'Operation', opSel),
  el('label', {}, 'Tags', tagsIn),
  el('div', { class: 'row' }, el('label', {}, 'Min duration', minIn), el('label', {}, 'Max duration', maxIn)),
  el('label', { class: 'check' }, errorsIn, 'Errors only'),
  el('label', {}, 'Time range', pickerSlot),
  el('label', {}, 'Limit', limitSel),
  formError,
  el('button', { type: 'submit', class: 'primary', text: 'Find traces' }));
  const results = el('section', { class: 'search-results', 'aria-label': 'Results' });
  root.append(el('div', { class: 'search-page' }, form, results));

  serviceSel.addEventListener('change', () => loadOperations(serviceSel.value, ''));

  function submit() {
    const vals = { service: serviceSel.value, operation: opSel.value, tags: tagsIn.value.trim(),
      minDuration: minIn.value.trim(), maxDuration: maxIn.value.trim(), errors: errorsIn.checked ? '1' : '',
      range: picked.range, start: picked.start, end: picked.end, limit: limitSel.value, sort: p('sort') };
    try {
      if (vals.tags) parseTags(vals.tags);
      for (const k of ['minDuration', 'maxDuration']) {
        if (vals[k] && Number.isNaN(parseGoDuration(vals[k]))) throw new Error(`${k}: use a duration like 100ms or 1.5s`);
      }
    } catch (e) {
      formError.textContent = e.message;
      formError.hidden = false;
      return;
    }
    formError.hidden = true;
    const next = hashFor('traces', '', { ...vals, run: String(Date.now() % 100000) });
    navigate(next);
  }

  function fillForm() {
    tagsIn.value = p('tags');
    minIn.value = p('minDuration');
    maxIn.value = p('maxDuration');
    errorsIn.checked = p('errors') === '1';
    limitSel.value = String(LIMITS.includes(Number(p('limit'))) ? p('limit') : 20);
    picked = { range: p('range', '1h'), start: p('start'), end: p('end') };
    replace(pickerSlot, rangePicker({ ...picked, onChange: (r) => {
      picked = r;
    } }));
  }

  async function loadServices() {
    try {
      const services = await api.services(opts);
      const want = p('service');
      replace(serviceSel, el('option', { value: '', text: services.length ? 'Choose a service' : 'No services yet' }),
        services.map((s) => el('option', { value: s, text: s, selected: s === want })));
      if (want && !services.includes(want)) serviceSel.append(el('option', { value: want, text: want, selected: true }));
      await loadOperations(serviceSel.value, p('operation'));
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(results, errorBox(e, 'Could not list services', () => {
        loadServices();
        search();
      }));
    }
  }

  async function loadOperations(service, want) {
    replace(opSel, el('option', { value: '', text: 'All operations' }));
    if (!service) return;
    try {
      const ops = await api.operations(service, opts);
      opSel.append(...ops.map((o) => el('option', { value: o, text: o, selected: o === want })));
    } catch (e) {
      if (e.name !== 'AbortError') opSel.append(el('option', { value: '', text: '(operations unavailable)' }));
    }
  }

  async function search() {
    const mySeq = ++seq;
    const service = p('service');
    if (!service) {
      replace(results, stateBox('info', 'Choose a service and press Find traces',
        'Or open the service graph and click a node or an edge.'));
      return;
    }
    const win = windowOf(p('range', '1h'), p('start'), p('end'));
    let tags = {};
    try {
      tags = p('tags') ? parseTags(p('tags')) : {};
    } catch (e) {
      replace(results, stateBox('error', 'Bad tags', e.message));
      return;
    }
    if (p('errors') === '1') tags.error = 'true';
    const q = { service, operation: p('operation'), start: Math.floor(win.startUs), end: Math.floor(win.endUs),
      minDuration: p('minDuration'), maxDuration: p('maxDuration'), limit: p('limit', '20'),
      tags: Object.keys(tags).length ? JSON.stringify(tags) : '' };
    replace(results, stateBox('info', 'Searching…'));
    let traces;
    try {
      traces = await api.traces(q, opts);
    } catch (e) {
      if (e.name === 'AbortError' || mySeq !== seq) return;
      replace(results, errorBox(e, 'Search failed', () => {
        if (e.status === 0) loadServices();
        search();
      }));
      return;
    }
    if (mySeq !== seq) return;
    lastResults = traces.map(summarize);
    renderResults();
  }

  function renderResults() {
    if (!lastResults) return;
    if (!lastResults.length) {
      replace(results, stateBox('empty', 'No traces match', 'Nothing in this time range matches the search.'));
      return;
    }
    const sortKey = SORTS.some((s) => s[0] === p('sort')) ? p('sort') : 'recent';
    const sorted = lastResults.slice().sort(SORTS.find((s) => s[0] === sortKey)[2]);
    const maxDur = Math.max(...sorted.map((r) => r.duration), 1);
    const sorts = el('div', { class: 'sorts', role: 'group', 'aria-label': 'Sort' }, el('span', { class: 'muted', text: 'Sort: ' }),
      SORTS.map(([k, label]) => el('button', { type: 'button', 'aria-pressed': String(k === sortKey), dataset: { sort: k },
        text: label, on: { click: () => navigate(hashFor('traces', '', { ...Object.fromEntries(params), sort: k }), { replace: true }) } })));
    const items = sorted.map((r) => el('a', { class: ['result', r.errors && 'has-errors'], href: hashFor('trace', r.id),
      dataset: { trace: r.id, duration: r.duration, spans: r.spans, errors: r.errors, start: r.start } },
    el('div', { class: 'result-top' },
      el('span', { class: 'result-title', text: `${r.rootService}: ${r.rootOp}` }),
      el('span', { class: 'result-duration', text: fmtUs(r.duration) })),
    el('div', { class: 'duration-bar', 'aria-hidden': 'true' },
      el('span', { style: { width: `${Math.max(0.5, (100 * r.duration) / maxDur)}%` } })),
    el('div', { class: 'result-meta' },
      el('span', { class: 'span-count', text: `${r.spans} span${r.spans === 1 ? '' : 's'}` }),
      r.errors ? el('span', { class: 'err-count', text: `${r.errors} error${r.errors === 1 ? '' : 's'}` }) : null,
      [...r.services.entries()].map(([name, s]) => el('span', { class: 'svc-chip' },
        el('span', { class: 'svc-dot', style: { background: serviceColor(name) } }), `${name} (${s.spans})`)),
      el('span', { class: 'mono', text: shortId(r.id) }),
      el('span', { title: fmtTime(r.start), text: fmtAgo(r.start) }))));
    replace(results,
      el('div', { class: 'results-head' }, el('strong', { text: `${sorted.length} trace${sorted.length === 1 ? '' : 's'}` }), sorts),
      el('div', { class: 'result-list' }, items));
  }

  fillForm();
  loadServices();
  search();

  return {
    update(r) {
      const before = params;
      params = r.params;
      const onlySort = [...new Set([...before.keys(), ...params.keys()])]
        .every((k) => k === 'sort' || before.get(k) === params.get(k));
      if (onlySort) {
        renderResults();
        return true;
      }
      fillForm();
      if (before.get('service') !== params.get('service')) {
        serviceSel.value = p('service');
        loadOperations(p('service'), p('operation'));
      }
      search();
      return true;
    },
    unmount() {
      seq++;
      aborter.abort();
    },
  };
}
