/*
 * api.js: fetch helpers for meshscope's HTTP API (same origin as the dashboard).
 *
 * Bearer tokens: when meshscope runs with --auth-token-file, the read APIs answer 401. The first
 * 401 opens the token dialog (one dialog for all the requests that hit it at once); the token is
 * kept in sessionStorage (this tab only, gone when it closes) and sent as
 * `Authorization: Bearer <token>`; the request is then retried. A token the server refuses is
 * dropped and asked for again, once per request.
 */
const TOKEN_KEY = 'meshscope.token';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let pendingToken = null; /* the open dialog's promise, shared by concurrent 401s */

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

/** Shows the token dialog (index.html #token-dialog); resolves the token, or '' if cancelled. */
function askToken(rejected) {
  if (pendingToken) return pendingToken;
  pendingToken = new Promise((resolve) => {
    const dlg = document.getElementById('token-dialog');
    const input = dlg.querySelector('input[name="token"]');
    dlg.querySelector('.token-rejected').hidden = !rejected;
    input.value = '';
    const onClose = () => {
      dlg.removeEventListener('close', onClose);
      const token = dlg.returnValue === 'ok' ? input.value.trim() : '';
      if (token) {
        try {
          sessionStorage.setItem(TOKEN_KEY, token);
        } catch {
          /* storage disabled: the token lives for this page only */
          memoryToken = token;
        }
        window.dispatchEvent(new Event('meshscope:token'));
      }
      pendingToken = null;
      resolve(token);
    };
    dlg.addEventListener('close', onClose);
    dlg.returnValue = '';
    dlg.showModal();
    input.focus();
  });
  return pendingToken;
}

let memoryToken = '';

/** Forgets the token (the "sign out" link). */
export function clearToken() {
  memoryToken = '';
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* nothing stored */
  }
  window.dispatchEvent(new Event('meshscope:token'));
}

export function hasToken() {
  return Boolean(storedToken() || memoryToken);
}

function queryString(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => p.append(k, String(x)));
    else p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** Error text from a Jaeger-style body ({errors:[{msg}]}) or plain text. */
async function errorText(res) {
  let text = '';
  try {
    text = await res.text();
    const j = JSON.parse(text);
    if (j && Array.isArray(j.errors) && j.errors.length) return j.errors.map((e) => e.msg).join('; ');
    if (j && typeof j.error === 'string') return j.error;
  } catch {
    /* not JSON */
  }
  return (text || res.statusText || `HTTP ${res.status}`).trim().slice(0, 300);
}

/**
 * GET path?params -> parsed JSON. Throws ApiError: status 0 "meshscope unreachable" when the
 * request did not get an answer, else the HTTP status and the server's message.
 */
export async function apiGet(path, params, { signal } = {}) {
  const url = path + queryString(params);
  for (let attempt = 0; ; attempt++) {
    const token = storedToken() || memoryToken;
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    let res;
    try {
      res = await fetch(url, { headers, signal, cache: 'no-store', credentials: 'same-origin' });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'meshscope unreachable');
    }
    if (res.status === 401 && attempt < 2) {
      if (token) clearToken();
      const t = await askToken(Boolean(token));
      if (!t) throw new ApiError(401, 'a bearer token is needed to read from this meshscope');
      continue;
    }
    if (!res.ok) throw new ApiError(res.status, await errorText(res));
    try {
      return await res.json();
    } catch {
      throw new ApiError(res.status, `${path}: the answer is not JSON`);
    }
  }
}

/* ---------- access logs (/api/logs, a later issue) ---------- */

let logsProbe = null;

/**
 * Whether this meshscope serves /api/logs: probed once (404 -> false). Until the access-log issue
 * lands the dashboard hides its access-log sections.
 */
export function logsAvailable() {
  if (!logsProbe) {
    logsProbe = apiGet('/api/logs', { limit: 1 })
      .then(() => true)
      .catch((e) => {
        if (e.status !== 404) logsProbe = null; /* unreachable or refused: ask again later */
        return false;
      });
  }
  return logsProbe;
}

/** Access-log records of one trace; [] when none or when the API is absent. */
export async function logsOfTrace(traceId, { signal } = {}) {
  if (!(await logsAvailable())) return [];
  const body = await apiGet('/api/logs', { traceID: traceId, limit: 50 }, { signal });
  return Array.isArray(body?.data) ? body.data : Array.isArray(body) ? body : [];
}

/** One log record as a line of text (the record's own line when it has one). */
export function logLine(rec) {
  if (typeof rec === 'string') return rec;
  for (const k of ['line', 'body', 'message', 'msg']) if (typeof rec?.[k] === 'string') return rec[k];
  return JSON.stringify(rec);
}

/* ---------- API wrappers ---------- */

export const api = {
  graph: (startUs, endUs, namespace, opts) =>
    apiGet('/api/graph', { start: Math.floor(startUs), end: Math.floor(endUs), namespace }, opts),
  services: (opts) => apiGet('/api/services', null, opts).then((b) => (b.data || []).slice().sort()),
  operations: (service, opts) =>
    apiGet('/api/operations', { service }, opts).then((b) =>
      [...new Set((b.data || []).map((o) => o.name))].sort()),
  /** Jaeger trace search; params as /api/traces takes them. Returns the traces array. */
  traces: (params, opts) => apiGet('/api/traces', params, opts).then((b) => b.data || []),
  trace: (id, opts) =>
    apiGet(`/api/traces/${encodeURIComponent(id)}`, null, opts).then((b) => (b.data || [])[0] || null),
};
