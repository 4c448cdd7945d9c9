/*
 * http.mjs: raw HTTP/1.1 requests over loopback and the Jaeger query helpers the tests share.
 *
 * node:http rather than fetch: the malformed-input tests need exact control of the method, the
 * Content-Type and Content-Encoding headers and the body bytes, and the raw response bytes back
 * (no automatic decompression). Every request has a timeout; every poll is bounded in attempts
 * and time.
 */
import http from 'node:http';
import assert from 'node:assert/strict';

const DEFAULT_TIMEOUT_MS = 15_000;

/**
 * Sends one request; resolves {status, headers, body: Buffer}. opts: {method, headers, body
 * (Buffer|string), timeoutMs}. A fresh connection per request (agent: false): after a refused
 * upload the server may close the connection, and that must not leak into the next test case.
 */
export function request(url, opts = {}) {
  const { method = 'GET', headers = {}, body, timeoutMs = DEFAULT_TIMEOUT_MS } = opts;
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (fn, v) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        fn(v);
      }
    };
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => done(resolve, { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', (e) => done(reject, e));
      /* A response that was fully received counts even if the socket then errors (e.g. the server
       * answered 413 early and reset the rest of our upload). */
      res.on('aborted', () => done(resolve, { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), aborted: true }));
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`));
    }, timeoutMs);
    req.on('error', (e) => done(reject, e));
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** GET url and parse a JSON body; asserts a JSON content type unless {anyType: true}. */
export async function getJson(url, { expectStatus = 200 } = {}) {
  const res = await request(url);
  const text = res.body.toString('utf8');
  assert.equal(res.status, expectStatus, `GET ${url}: status ${res.status}, body: ${text.slice(0, 500)}`);
  assert.match(String(res.headers['content-type']), /^application\/json/, `GET ${url}: content-type ${res.headers['content-type']}`);
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    assert.fail(`GET ${url}: body is not valid JSON (${e.message}): ${text.slice(0, 500)}`);
  }
  return json;
}

/** Asserts the Jaeger uimodel envelope {data, total, limit, offset, errors} and returns data. */
export function envelope(json, what) {
  assert.ok(json && typeof json === 'object', `${what}: not an object`);
  assert.deepEqual(
    Object.keys(json).sort(),
    ['data', 'errors', 'limit', 'offset', 'total'],
    `${what}: envelope keys ${JSON.stringify(Object.keys(json))}`,
  );
  assert.ok(Array.isArray(json.data), `${what}: data is not an array`);
  assert.equal(typeof json.total, 'number', `${what}: total`);
  assert.equal(json.limit, 0, `${what}: limit`);
  assert.equal(json.offset, 0, `${what}: offset`);
  assert.equal(json.errors, null, `${what}: errors ${JSON.stringify(json.errors)}`);
  return json.data;
}

/**
 * Polls until fn() resolves truthy; resolves with that value. Bounded by timeoutMs and attempts.
 * The last error or value is in the failure message.
 */
export async function poll(what, fn, { timeoutMs = 10_000, intervalMs = 100, attempts = 500 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (let i = 0; i < attempts && Date.now() < deadline; i++) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  const detail = last instanceof Error ? last.stack : JSON.stringify(last)?.slice(0, 1000);
  throw new Error(`timed out waiting for ${what} (${timeoutMs} ms): last: ${detail}`);
}

/** GET /api/traces/{id}; resolves the trace object or null while it is absent (404). */
export async function fetchTrace(httpUrl, traceId) {
  const res = await request(`${httpUrl}/api/traces/${traceId}`);
  if (res.status === 404) return null;
  const text = res.body.toString('utf8');
  assert.equal(res.status, 200, `GET /api/traces/${traceId}: ${res.status} ${text.slice(0, 500)}`);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const data = envelope(JSON.parse(text), `trace ${traceId}`);
  if (data.length === 0) return null;
  assert.equal(data.length, 1, `trace ${traceId}: ${data.length} traces returned`);
  return data[0];
}

/** Polls /api/traces/{id} until it holds at least minSpans spans; resolves the trace. */
export function waitForTrace(httpUrl, traceId, minSpans, opts) {
  return poll(
    `trace ${traceId} with ${minSpans} spans`,
    async () => {
      const t = await fetchTrace(httpUrl, traceId);
      return t && t.spans.length >= minSpans ? t : null;
    },
    opts,
  );
}

/** GET /api/traces?… with the given parameters (array of [key, value] so keys may repeat). */
export async function searchTraces(httpUrl, params) {
  const qs = new URLSearchParams(params).toString();
  return envelope(await getJson(`${httpUrl}/api/traces?${qs}`), `search ${qs}`);
}

export async function services(httpUrl) {
  return envelope(await getJson(`${httpUrl}/api/services`), 'services');
}
