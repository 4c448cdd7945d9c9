/*
 * util.js: DOM building (text only), formatting, URL-hash state, time windows and health.
 *
 * Every string that came from the server reaches the page through el()/text(), which append
 * text nodes (Node.append(string)) or set textContent: never innerHTML.
 */

/**
 * Creates an element. attrs: plain attributes, plus `class`, `dataset` (object), `on` (object of
 * event listeners) and `text` (textContent). Children: nodes, strings (appended as text),
 * null/undefined/false (skipped), or arrays of those.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'text') node.textContent = String(v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === 'style') for (const [p, val] of Object.entries(v)) node.style.setProperty(p, val);
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces all children of node by the given children (same rules as el()). */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/**
 * An explicit state message inside a view. kind: info (loading: with a spinner) | empty | error.
 * retry: a function; adds a Retry button calling it.
 */
export function stateBox(kind, message, detail, { retry, cls } = {}) {
  return el('div', { class: ['state', `state-${kind}`, cls], role: kind === 'error' ? 'alert' : 'status',
    'aria-busy': kind === 'info' ? 'true' : null },
  kind === 'info' ? el('span', { class: 'spinner', 'aria-hidden': 'true' }) : null,
  el('p', { class: 'state-msg', text: message }),
  detail ? el('p', { class: 'state-detail', text: detail }) : null,
  retry ? el('button', { type: 'button', class: 'retry', text: 'Retry', on: { click: retry } }) : null);
}

/**
 * The state box of a failed API call (api.js ApiError): status 0 is "meshscope unreachable" (the
 * request got no answer: the daemon is down or the network is), else what the server said.
 */
export function errorBox(e, what, retry) {
  if (e.status === 0) {
    return stateBox('error', 'meshscope unreachable', 'The dashboard got no answer from meshscope: is it running?',
      { retry, cls: 'state-unreachable' });
  }
  return stateBox('error', what, e.message, { retry });
}

/* ---------- formatting ---------- */

export function fmtNum(n, digits = 2) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (n === 0) return '0';
  const a = Math.abs(n);
  if (Number.isInteger(n) && a < 1e4) return String(n);
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  if (a >= 100) return n.toFixed(0);
  if (a >= 1) return n.toFixed(digits > 1 ? 1 : digits);
  return n.toPrecision(digits);
}

/** Requests per second. */
export const fmtRate = (rps) => `${fmtNum(rps)} rps`;

/** A fraction 0..1 as a percentage. */
export function fmtPct(frac) {
  if (frac === null || frac === undefined || Number.isNaN(frac)) return '–';
  const p = frac * 100;
  if (p === 0) return '0%';
  if (p < 0.1) return '<0.1%';
  return `${p >= 10 ? p.toFixed(0) : p.toFixed(1)}%`;
}

/** Milliseconds, readable from µs to minutes. */
export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms === 0) return '0';
  if (ms < 1) return `${Math.round(ms * 1000)}µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)}ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)}s`;
  return `${(ms / 60000).toFixed(1)}min`;
}

/** A duration in microseconds (Jaeger's unit). */
export const fmtUs = (us) => fmtMs(us / 1000);

/** Epoch µs -> local date and time. */
export function fmtTime(us) {
  const d = new Date(us / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Epoch µs -> "12 s ago" style. */
export function fmtAgo(us, nowMs = Date.now()) {
  const s = Math.max(0, Math.round((nowMs - us / 1000) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)}h ago`;
  return `${(s / 86400).toFixed(1)}d ago`;
}

/** Go-style duration ("100ms", "1.5s", "2m") -> µs, or NaN. */
export function parseGoDuration(s) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)\s*$/.exec(s || '');
  if (!m) return NaN;
  const mult = { us: 1, µs: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 }[m[2]];
  return Number(m[1]) * mult;
}

/* ---------- service colours ---------- */

/** A stable colour per service name (hash -> hue). */
export function serviceColor(name) {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  const hue = (h >>> 0) % 360;
  return `hsl(${hue} 55% 48%)`;
}

/* ---------- URL hash state: #/view/arg?key=value&... ---------- */

/** Parses location.hash into {view, arg, params: URLSearchParams}. */
export function parseHash(hash = location.hash) {
  const h = hash.replace(/^#\/?/, '');
  const q = h.indexOf('?');
  const pathPart = q >= 0 ? h.slice(0, q) : h;
  const params = new URLSearchParams(q >= 0 ? h.slice(q + 1) : '');
  const [view = '', ...rest] = pathPart.split('/');
  return { view: view || 'graph', arg: rest.length ? decodeURIComponent(rest.join('/')) : '', params };
}

/** Builds a hash: hashFor('trace', id, {span}) -> "#/trace/<id>?span=..". Empty values dropped. */
export function hashFor(view, arg, params = {}) {
  const p = new URLSearchParams();
  const entries = params instanceof URLSearchParams ? [...params.entries()] : Object.entries(params);
  for (const [k, v] of entries) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const qs = p.toString();
  return `#/${view}${arg ? `/${encodeURIComponent(arg)}` : ''}${qs ? `?${qs}` : ''}`;
}

/** Changes the view state in the URL. replace: no new history entry (state tweaks). */
export function navigate(hash, { replace: rep = false } = {}) {
  if (hash === location.hash) return;
  if (rep) {
    history.replaceState(null, '', hash);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = hash;
  }
}

/* ---------- time windows ---------- */

export const RANGES = [
  ['5m', 'Last 5 minutes', 5 * 60],
  ['15m', 'Last 15 minutes', 15 * 60],
  ['1h', 'Last hour', 3600],
  ['6h', 'Last 6 hours', 6 * 3600],
  ['24h', 'Last 24 hours', 24 * 3600],
  ['custom', 'Custom…', 0],
];

/**
 * The window of a range: {startUs, endUs}. range is one of RANGES' keys; for 'custom', start and
 * end (epoch µs strings from the URL) are used.
 */
export function windowOf(range, start, end, nowMs = Date.now()) {
  if (range === 'custom') {
    const s = Number(start);
    const e = Number(end);
    if (Number.isFinite(s) && Number.isFinite(e) && e > s) return { startUs: s, endUs: e };
    range = '15m';
  }
  const sec = (RANGES.find((r) => r[0] === range) || RANGES[1])[2];
  const endUs = Math.floor(nowMs) * 1000;
  return { startUs: endUs - sec * 1e6, endUs };
}

/** A <select> of RANGES plus two datetime-local inputs shown for 'custom'. */
export function rangePicker({ range, start, end, onChange }) {
  const toLocal = (us) => {
    const d = new Date(us / 1000 - new Date(us / 1000).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 16);
  };
  const fromLocal = (v) => (v ? new Date(v).getTime() * 1000 : NaN);
  const win = windowOf(range, start, end);
  const sel = el('select', { 'aria-label': 'Time range', name: 'range' },
    RANGES.map(([k, label]) => el('option', { value: k, selected: k === range, text: label })));
  const from = el('input', { type: 'datetime-local', 'aria-label': 'From', value: toLocal(win.startUs) });
  const to = el('input', { type: 'datetime-local', 'aria-label': 'To', value: toLocal(win.endUs) });
  const custom = el('span', { class: 'custom-range', hidden: range !== 'custom' }, from, ' – ', to);
  const fire = () => {
    if (sel.value !== 'custom') return onChange({ range: sel.value, start: '', end: '' });
    const s = fromLocal(from.value);
    const e = fromLocal(to.value);
    if (Number.isFinite(s) && Number.isFinite(e) && e > s) onChange({ range: 'custom', start: String(s), end: String(e) });
  };
  sel.addEventListener('change', () => {
    custom.hidden = sel.value !== 'custom';
    fire();
  });
  from.addEventListener('change', fire);
  to.addEventListener('change', fire);
  return el('span', { class: 'range-picker' }, sel, custom);
}

/* ---------- health ---------- */

/**
 * Health thresholds (README, Dashboard): a node or edge is
 *   bad  (red)   when error rate >= 5% or p95 >= 2000 ms,
 *   warn (amber) when error rate >= 1% or p95 >= 500 ms,
 *   ok   (green) otherwise, and idle (grey) without requests in the window.
 */
export const THRESHOLDS = { errorBad: 0.05, errorWarn: 0.01, p95BadMs: 2000, p95WarnMs: 500 };

export function healthOf(item) {
  if (!item || !item.requests) return 'idle';
  const er = item.error_rate ?? 0;
  const p95 = item.p95_ms ?? 0;
  if (er >= THRESHOLDS.errorBad || p95 >= THRESHOLDS.p95BadMs) return 'bad';
  if (er >= THRESHOLDS.errorWarn || p95 >= THRESHOLDS.p95WarnMs) return 'warn';
  return 'ok';
}

export const HEALTH_LABEL = { ok: 'healthy', warn: 'degraded', bad: 'failing', idle: 'no traffic' };

/* ---------- Jaeger spans ---------- */

/** A Jaeger span's tag value by key (undefined when absent). */
export function tagOf(span, key) {
  const t = (span.tags || []).find((x) => x.key === key);
  return t ? t.value : undefined;
}

/** True when a Jaeger span failed (error tag, OTel status ERROR, or HTTP status >= 500). */
export function spanFailed(span) {
  const e = tagOf(span, 'error');
  if (e === true || e === 'true') return true;
  if (tagOf(span, 'otel.status_code') === 'ERROR') return true;
  const code = Number(tagOf(span, 'http.response.status_code') ?? tagOf(span, 'http.status_code'));
  return code >= 500;
}

/** Short form of a trace id for lists. */
export const shortId = (id) => (id && id.length > 12 ? id.slice(0, 12) : id || '');
