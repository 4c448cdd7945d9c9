/*
 * zipkin.mjs: what the Zipkin v2 query API must return for spans a Zipkin client sent, a
 * recording proxy that captures exactly what a client library sent, and proto3 bodies built with
 * protobufjs from proto/zipkin/zipkin.proto.
 *
 * expectedZipkinSpan(sent) applies what a Zipkin server does to a span (zipkin2.Span.Builder:
 * lower-cased names and service names, a 32-digit trace id with a zero high half printed as 16,
 * parentId equal to id or all zero dropped, shared dropped on CLIENT spans, annotations sorted
 * and de-duplicated, tags sorted) plus meshscope's documented status mapping
 * (collector/zipkin.h): the "error" tag and otel.status_code / otel.status_description become
 * the span status, rendered back as error = message (or "true"), or otel.status_code = "OK"; a
 * peer.service tag is rendered as the remote endpoint's service name.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ZIPKIN_PROTO = path.resolve(here, '../../../proto/zipkin/zipkin.proto');

/** Zipkin's normalised trace id: lower case; 32 digits whose high half is zero -> 16. */
export function normTraceId(id) {
  const l = id.toLowerCase();
  return l.length === 32 && /^0{16}/.test(l) ? l.slice(16) : l;
}

function endpoint(e) {
  if (!e) return undefined;
  const out = {};
  if (e.serviceName) out.serviceName = e.serviceName.toLowerCase();
  if (e.ipv4) out.ipv4 = e.ipv4;
  if (e.ipv6) out.ipv6 = e.ipv6;
  if (e.port > 0 && e.port <= 65535) out.port = e.port;
  return Object.keys(out).length ? out : undefined;
}

export function expectedZipkinSpan(s) {
  const out = { traceId: normTraceId(s.traceId) };
  const id = s.id.toLowerCase();
  if (s.parentId && !/^0+$/.test(s.parentId) && s.parentId.toLowerCase() !== id) out.parentId = s.parentId.toLowerCase();
  out.id = id;
  if (s.kind) out.kind = s.kind;
  if (s.name) out.name = s.name.toLowerCase();
  if (s.timestamp > 0) out.timestamp = s.timestamp;
  if (s.duration > 0) out.duration = s.duration;
  const local = endpoint(s.localEndpoint);
  if (local) out.localEndpoint = local;
  let remote = endpoint(s.remoteEndpoint);
  const tags = { ...(s.tags ?? {}) };
  if (remote?.serviceName) delete tags['peer.service']; /* the endpoint wins */
  if (!remote?.serviceName && tags['peer.service']) {
    /* stored as the attribute peer.service, rendered as the OTel Collector's exporter does */
    remote = { serviceName: tags['peer.service'], ...remote };
    delete tags['peer.service'];
  }
  if (remote) out.remoteEndpoint = remote;
  if (s.annotations?.length) {
    const seen = new Set();
    out.annotations = [...s.annotations]
      .sort((a, b) => a.timestamp - b.timestamp || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
      .filter((a) => {
        const k = `${a.timestamp}|${a.value}`;
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      });
  }
  const code = String(tags['otel.status_code'] ?? '').toUpperCase().replace(/^STATUS_CODE_/, '');
  const codeUsed = ['OK', 'ERROR', 'UNSET'].includes(code);
  let status = codeUsed ? code : 'UNSET';
  let message = codeUsed ? tags['otel.status_description'] ?? '' : '';
  if ('error' in tags) {
    status = 'ERROR';
    if (tags.error && tags.error !== 'true') message = tags.error;
  }
  delete tags.error;
  if (codeUsed) {
    delete tags['otel.status_code'];
    delete tags['otel.status_description'];
  }
  if (status === 'OK') tags['otel.status_code'] = 'OK';
  if (status === 'ERROR') tags.error = message || 'true';
  const keys = Object.keys(tags).sort();
  if (keys.length) out.tags = Object.fromEntries(keys.map((k) => [k, tags[k]]));
  if (s.debug) out.debug = true;
  if (s.shared && s.kind !== 'CLIENT') out.shared = true;
  return out;
}

/** Asserts the API's spans equal the expected ones (matched by id and kind), tags key-sorted. */
export function assertZipkinTrace(actual, sentSpans, what) {
  assert.ok(Array.isArray(actual), `${what}: not an array`);
  const want = sentSpans.map(expectedZipkinSpan);
  assert.equal(actual.length, want.length, `${what}: ${actual.length} spans, want ${want.length}`);
  for (const w of want) {
    const a = actual.find((x) => x.id === w.id && x.kind === w.kind);
    assert.ok(a, `${what}: span ${w.id} (${w.kind}) missing from ${JSON.stringify(actual)}`);
    assert.deepEqual(a, w, `${what}: span ${w.id}`);
    if (a.tags) assert.deepEqual(Object.keys(a.tags), Object.keys(a.tags).sort(), `${what}: tags not sorted`);
  }
}

/**
 * An HTTP proxy to target that records every request body: {url, requests: [{path, headers,
 * body}], close()}. Shows what a client library really sent.
 */
export async function recordingProxy(target) {
  const requests = [];
  const t = new URL(target);
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ path: req.url, headers: req.headers, body });
      const fwd = http.request(
        { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: { ...req.headers, host: t.host }, agent: false },
        (r) => {
          res.writeHead(r.statusCode, r.headers);
          r.pipe(res);
        },
      );
      fwd.on('error', (e) => {
        res.writeHead(502);
        res.end(String(e));
      });
      fwd.end(body);
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    requests,
    /** Every span sent so far (JSON bodies). */
    spans: () => requests.flatMap((r) => JSON.parse(r.body.toString('utf8'))),
    close: () => new Promise((r) => srv.close(r)),
  };
}

let listType;
/** protobufjs's zipkin.proto3.ListOfSpans, loaded from proto/zipkin/zipkin.proto. */
export async function listOfSpans() {
  if (!listType) listType = (await protobuf.load(ZIPKIN_PROTO)).lookupType('zipkin.proto3.ListOfSpans');
  return listType;
}

const KIND = { CLIENT: 1, SERVER: 2, PRODUCER: 3, CONSUMER: 4 };
const hex = (h) => (h ? Buffer.from(h, 'hex') : undefined);
const ip4 = (s) => (s ? Buffer.from(s.split('.').map(Number)) : undefined);

function pbEndpoint(e) {
  if (!e) return undefined;
  return { serviceName: e.serviceName, ipv4: ip4(e.ipv4), ipv6: e.ipv6Bytes, port: e.port };
}

/** A Zipkin JSON span (as sent) as a proto3 Span object for protobufjs. */
export function pbSpan(s) {
  return {
    traceId: hex(s.traceId),
    parentId: hex(s.parentId),
    id: hex(s.id),
    kind: KIND[s.kind] ?? 0,
    name: s.name,
    timestamp: s.timestamp,
    duration: s.duration,
    localEndpoint: pbEndpoint(s.localEndpoint),
    remoteEndpoint: pbEndpoint(s.remoteEndpoint),
    annotations: s.annotations,
    tags: s.tags,
    debug: s.debug,
    shared: s.shared,
  };
}

/** Encodes JSON spans as a proto3 ListOfSpans body. */
export async function encodeListOfSpans(spans) {
  const T = await listOfSpans();
  const msg = { spans: spans.map(pbSpan) };
  const err = T.verify(msg);
  assert.equal(err, null, `protobufjs: ${err}`);
  return Buffer.from(T.encode(T.fromObject(msg)).finish());
}
