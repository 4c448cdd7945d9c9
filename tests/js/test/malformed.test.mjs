/*
 * malformed.test.mjs: a table of malformed and hostile requests to POST /v1/traces.
 *
 * Each row names the expected status and, for a 400, what the google.rpc.Status message must
 * mention. Every row that carries spans uses its own service name, so after the table the test can
 * prove that no refused request left spans behind, and that the daemon is still healthy.
 * The daemon runs with --max-body 4MiB; bombs expand to 50 MB.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { ROOT_CONTEXT, SpanKind } from '@opentelemetry/api';
import { startDaemon, withStderr } from '../lib/daemon.mjs';
import { fetchTrace, request, searchTraces, services, waitForTrace } from '../lib/http.mjs';
import {
  decodeExportResponse, decodeStatus, fBytes, fFixed64, fMessage, fVarint, jsonRequest, pbRequest, varint,
  zstdRawFrame, zstdRleBomb,
} from '../lib/proto.mjs';
import { makeProvider } from '../lib/sdk.mjs';

const MAX_BODY = 4 * 1024 * 1024;
/* Filler strings stay under the daemon's 64 KiB attribute-string cap (collector/otlp_*.c). */
const VALUE_MAX = 32 * 1024;
const BOMB_SIZE = 50 * 1000 * 1000;

let d;
before(async () => {
  d = await startDaemon({ args: ['--max-body', '4MiB'] });
});
after(async () => {
  if (!d) return;
  try {
    await d.stop();
  } finally {
    await d.cleanup();
  }
});
const it = (name, fn) => test(name, (t) => withStderr(() => d, () => fn(t)));

const run = randomBytes(3).toString('hex');
const NOW_NS = BigInt(Date.now() - 60_000) * 1_000_000n;
const PB = 'application/x-protobuf';
const JSON_CT = 'application/json';

/** A one-resource request for `service` with the given spans (default: one valid span). */
function req(service, spans) {
  return [{ resource: [['service.name', { s: service }]], scopes: [{ name: 'malformed-test', version: '1', spans }] }];
}
function span(over = {}) {
  return { traceId: randomBytes(16), spanId: randomBytes(8), name: 'op', kind: 2, start: NOW_NS, end: NOW_NS + 1_000_000n, ...over };
}
/**
 * A valid protobuf request whose encoding is exactly `total` bytes and ends with the bytes of one
 * big string attribute value, so its prefix can be followed by RLE-compressed filler.
 * With {valueMax}, the filler is spread over many spans of valueMax-byte values (the last one a
 * little longer, always under the daemon's 64 KiB attribute-string cap, which rejects longer
 * strings span by span).
 * Returns {body, valueLen (of the last value), traceId, spans}.
 */
function sizedRequest(service, total, { valueMax = Infinity, traceId = randomBytes(16) } = {}) {
  const per = Math.min(valueMax, total);
  const n = Number.isFinite(valueMax) ? Math.max(1, Math.ceil(total / (per + 96))) : 1;
  const spanIds = Array.from({ length: n }, () => randomBytes(8));
  const build = (lastLen) => pbRequest(req(service, spanIds.map((spanId, i) =>
    span({ traceId, spanId, name: `fill-${i}`, attrs: [['filler', { s: 'A'.repeat(i === n - 1 ? lastLen : per) }]] }))));
  let valueLen = n === 1 ? total : total - (n - 1) * (per + 96);
  for (let i = 0; i < 8; i++) {
    const body = build(valueLen);
    if (body.length === total) {
      assert.ok(!Number.isFinite(valueMax) || (valueLen >= 0 && valueLen < 60_000), `last value ${valueLen} out of range`);
      return { body, valueLen, traceId, spans: n };
    }
    valueLen += total - body.length;
  }
  throw new Error(`cannot size a request to ${total} bytes`);
}
const SPANS_3MIB = sizedRequest('count', 3 * 1024 * 1024, { valueMax: VALUE_MAX }).spans;
const SPANS_4MIB = sizedRequest('count', MAX_BODY, { valueMax: VALUE_MAX }).spans;

/** Splits sizedRequest's body into the prefix before the filler value. */
function prefixOf({ body, valueLen }) {
  return body.subarray(0, body.length - valueLen);
}

const svc = (name) => `mal-${name}-${run}`;

/* Hostile strings (see hostileRows). */
const NUL_NAME = 'nul\0in\0name';
const LONG_NAME = 'x'.repeat(60 * 1024);
const SCRIPT = '</script><script>alert(1)</script><!--';
const EMOJI = '🚀 👩‍👩‍👧 مرحبا \u202Eevil\u202C 𝕏';
const CONTROLS = 'ctl\x01\x02\x1b[31m\x7f';

/*
 * Rows: {name, body: () => Buffer, ct, enc?, method?, status, msg?: RegExp (400 message),
 *        service?: the service the body carries, stored?: spans expected stored,
 *        check?: async (res, row) => void}.
 * Rows with status 200 and no `check` must store their spans; others must store none.
 */
const decodeMsg = /protobuf|decode|invalid|malformed|truncat|parse|wire/i;
const rows = [
  /* --- protobuf framing --- */
  { name: 'truncated protobuf', ct: PB, status: 400, msg: decodeMsg, service: svc('trunc'),
    body: () => { const b = pbRequest(req(svc('trunc'), [span(), span()])); return b.subarray(0, b.length - 7); } },
  { name: 'truncated varint', ct: PB, status: 400, msg: decodeMsg, body: () => Buffer.from([0x0a, 0xff, 0xff]) },
  { name: 'over-long varint (11 bytes)', ct: PB, status: 400, msg: decodeMsg, body: () => Buffer.concat([Buffer.from([0x08]), Buffer.alloc(10, 0xff), Buffer.from([0x01])]) },
  { name: 'length prefix past the end', ct: PB, status: 400, msg: decodeMsg, body: () => Buffer.concat([Buffer.from([0x0a]), varint(1n << 40n), Buffer.from('xx')]) },
  { name: 'wrong wire type: resource_spans as varint', ct: PB, status: 400, msg: decodeMsg, body: () => fVarint(1, 5) },
  { name: 'wrong wire type: span.trace_id as fixed64', ct: PB, status: 400, msg: decodeMsg, service: svc('wt-traceid'),
    body: () => pbRequest(req(svc('wt-traceid'), [span({ extra: [fFixed64(1, 0x1234n)] })])) },
  { name: 'wrong wire type: span.name as varint', ct: PB, status: 400, msg: decodeMsg, service: svc('wt-name'),
    body: () => pbRequest(req(svc('wt-name'), [span({ extra: [fVarint(5, 7)] })])) },
  { name: 'field number 0', ct: PB, status: 400, msg: decodeMsg, body: () => Buffer.from([0x00, 0x01]) },
  { name: 'empty protobuf body is an empty request', ct: PB, status: 200, body: () => Buffer.alloc(0), check: expectNoRejection },
  { name: 'unknown protobuf fields are skipped', ct: PB, status: 200, service: svc('unknown-pb'), stored: 1,
    body: () => Buffer.concat([
      pbRequest(req(svc('unknown-pb'), [span({ extra: [fVarint(99, 1), fBytes(1000, 'future'), fFixed64(77, 5n)] })])),
      fMessage(42, fBytes(1, 'unknown top-level')),
    ]) },

  /* --- JSON --- */
  { name: 'invalid JSON', ct: JSON_CT, status: 400, msg: /json|parse|syntax|invalid|unexpected|end of/i, body: () => Buffer.from('{"resourceSpans": [') },
  { name: 'JSON: resourceSpans is a number', ct: JSON_CT, status: 400, msg: /resourceSpans|resource_spans/, body: () => Buffer.from('{"resourceSpans": 5}') },
  { name: 'JSON: spans is a string', ct: JSON_CT, status: 400, msg: /spans/, service: svc('json-spans'),
    body: () => Buffer.from(JSON.stringify({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: svc('json-spans') } }] }, scopeSpans: [{ spans: 'x' }] }] })) },
  { name: 'JSON: traceId is a number', ct: JSON_CT, status: 400, msg: /traceId|trace_id/, service: svc('json-tid'),
    body: () => { const j = jsonRequest(req(svc('json-tid'), [span()])); j.resourceSpans[0].scopeSpans[0].spans[0].traceId = 12; return Buffer.from(JSON.stringify(j)); } },
  { name: 'JSON: startTimeUnixNano is an object', ct: JSON_CT, status: 400, msg: /startTimeUnixNano|start_time/, service: svc('json-time'),
    body: () => { const j = jsonRequest(req(svc('json-time'), [span()])); j.resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano = { x: 1 }; return Buffer.from(JSON.stringify(j)); } },
  { name: 'JSON: top-level array', ct: JSON_CT, status: 400, msg: /object|json|invalid|expected/i, body: () => Buffer.from('[]') },
  { name: 'JSON: empty object is an empty request', ct: JSON_CT, status: 200, body: () => Buffer.from('{}'), check: expectNoRejection },
  { name: 'JSON: unknown fields are ignored, intValue as a number is accepted', ct: JSON_CT, status: 200, service: svc('json-unknown'), stored: 1,
    body: () => {
      const j = jsonRequest(req(svc('json-unknown'), [span({ attrs: [['n', { i: 5n }]] })]));
      j.futureField = { a: 1 };
      const s = j.resourceSpans[0].scopeSpans[0].spans[0];
      s.someNewThing = [1, 2];
      s.attributes[0].value.intValue = 5;
      return Buffer.from(JSON.stringify(j));
    } },

  /* --- headers and methods --- */
  { name: 'text/plain', ct: 'text/plain', status: 415, service: svc('textplain'), body: () => pbRequest(req(svc('textplain'), [span()])) },
  { name: 'Content-Encoding br', ct: PB, enc: 'br', status: 415, service: svc('br'), body: () => pbRequest(req(svc('br'), [span()])) },
  { name: 'Content-Encoding identity', ct: PB, enc: 'identity', status: 200, service: svc('identity'), stored: 1, body: () => pbRequest(req(svc('identity'), [span()])) },
  { name: 'GET /v1/traces', method: 'GET', status: 405, check: expectAllowPost },
  { name: 'PUT /v1/traces', method: 'PUT', ct: PB, status: 405, service: svc('put'), body: () => pbRequest(req(svc('put'), [span()])), check: expectAllowPost },

  /* --- compression --- */
  { name: 'corrupt gzip', ct: PB, enc: 'gzip', status: 400, msg: /gzip|decompress|inflate|deflate|compress|corrupt/i, service: svc('badgz'),
    body: () => { const g = Buffer.from(gzipSync(pbRequest(req(svc('badgz'), [span(), span()])))); for (let i = 12; i < g.length - 8; i += 5) g[i] ^= 0x5a; return g; } },
  { name: 'truncated gzip', ct: PB, enc: 'gzip', status: 400, msg: /gzip|decompress|inflate|deflate|compress|corrupt|truncat|end/i, service: svc('truncgz'),
    body: () => { const g = gzipSync(pbRequest(req(svc('truncgz'), [span(), span()]))); return g.subarray(0, g.length - 12); } },
  { name: 'gzip declared, body not gzip', ct: PB, enc: 'gzip', status: 400, msg: /gzip|decompress|inflate|deflate|compress|corrupt|header|magic/i, service: svc('notgz'),
    body: () => pbRequest(req(svc('notgz'), [span()])) },
  { name: 'gzip bomb (50 MB of valid protobuf)', ct: PB, enc: 'gzip', status: 413, service: svc('gzbomb'),
    body: () => gzipSync(sizedRequest(svc('gzbomb'), BOMB_SIZE).body, { level: 9 }) },
  { name: 'gzip 3 MiB inside the limit', ct: PB, enc: 'gzip', status: 200, service: svc('gzok'), stored: SPANS_3MIB,
    body: () => gzipSync(sizedRequest(svc('gzok'), 3 * 1024 * 1024, { valueMax: VALUE_MAX }).body), check: expectNoRejection },
  { name: 'zstd bomb, streaming frame without content size', ct: PB, enc: 'zstd', status: 413, service: svc('zbomb'),
    body: () => { const s = sizedRequest(svc('zbomb'), BOMB_SIZE); return zstdRleBomb(prefixOf(s), 0x41, s.valueLen); } },
  { name: 'zstd bomb, content size declared', ct: PB, enc: 'zstd', status: 413, service: svc('zbomb-fcs'),
    body: () => zstdFcsBomb(sizedRequest(svc('zbomb-fcs'), BOMB_SIZE)) },
  { name: 'corrupt zstd', ct: PB, enc: 'zstd', status: 400, msg: /zstd|decompress|compress|corrupt|frame/i, service: svc('badzstd'),
    body: () => { const z = Buffer.from(zstdRawFrame(pbRequest(req(svc('badzstd'), [span()])))); z[4] = 0xff; z[5] = 0xff; return z; } },
  { name: 'zstd valid', ct: JSON_CT, enc: 'zstd', status: 200, service: svc('zstd'), stored: 1,
    body: () => zstdRawFrame(Buffer.from(JSON.stringify(jsonRequest(req(svc('zstd'), [span()]))))) },

  /* --- size limit --- */
  { name: 'raw body exactly --max-body', ct: PB, status: 200, service: svc('atlimit'), stored: SPANS_4MIB,
    body: () => sizedRequest(svc('atlimit'), MAX_BODY, { valueMax: VALUE_MAX }).body, check: expectNoRejection },
  { name: 'raw body --max-body + 1', ct: PB, status: 413, service: svc('overlimit'), body: () => sizedRequest(svc('overlimit'), MAX_BODY + 1).body },
  { name: 'raw body 5 MiB', ct: PB, status: 413, service: svc('5mib'), body: () => sizedRequest(svc('5mib'), 5 * 1024 * 1024).body },

  /* --- invalid ids: partial success --- */
  ...partialRows(),

  /* --- hostile strings: accepted intact / sanitised, or refused with 400 --- */
  ...hostileRows(),
];

/** A short description of a response body for the test log: Status/partial success decoded. */
function describeBody(res) {
  if (res.body.length === 0) return '(no body)';
  try {
    if (isJson(res)) return res.body.toString('utf8').slice(0, 300);
    if (res.status === 200) return JSON.stringify(decodeExportResponse(res.body));
    if (/protobuf/.test(String(res.headers['content-type']))) return JSON.stringify(decodeStatus(res.body)).slice(0, 300);
  } catch (e) {
    return `(undecodable: ${e.message})`;
  }
  return res.body.toString('utf8').slice(0, 300);
}

async function expectNoRejection(res) {
  if (res.body.length === 0) return;
  const ps = isJson(res) ? JSON.parse(res.body.toString('utf8')).partialSuccess : decodeExportResponse(res.body).partialSuccess;
  assert.ok(!ps || !Number(ps.rejectedSpans), `unexpected partial success ${JSON.stringify(ps)}`);
}

async function expectAllowPost(res) {
  assert.match(String(res.headers.allow ?? ''), /\bPOST\b/, `405 without "Allow: POST" (RFC 9110 15.5.6): ${JSON.stringify(res.headers)}`);
}

function isJson(res) {
  return /^application\/json/.test(String(res.headers['content-type']));
}

/** A single-segment zstd frame declaring its (50 MB) content size, RLE filler after the prefix. */
function zstdFcsBomb(s) {
  const stream = zstdRleBomb(prefixOf(s), 0x41, s.valueLen);
  const head = Buffer.alloc(13);
  head.writeUInt32LE(0xfd2fb528, 0);
  head[4] = (3 << 6) | (1 << 5);
  head.writeBigUInt64LE(BigInt(s.body.length), 5);
  return Buffer.concat([head, stream.subarray(6)]);
}

function partialRows() {
  const out = [];
  for (const enc of ['protobuf', 'json']) {
    const ct = enc === 'protobuf' ? PB : JSON_CT;
    const encode = (r) => (enc === 'protobuf' ? pbRequest(r) : Buffer.from(JSON.stringify(jsonRequest(r))));
    {
      const service = svc(`zero-tid-${enc}`);
      const good = randomBytes(16);
      out.push({
        name: `${enc}: 2 spans with an all-zero trace_id among 3 valid`, ct, status: 200, service,
        body: () => encode(req(service, [
          span({ traceId: good, name: 'ok1' }), span({ traceId: Buffer.alloc(16), name: 'bad1' }),
          span({ traceId: good, name: 'ok2' }), span({ traceId: Buffer.alloc(16), name: 'bad2' }), span({ traceId: good, name: 'ok3' }),
        ])),
        check: (res) => expectPartial(res, 2, /trace_id|traceId/, service, [[good, ['ok1', 'ok2', 'ok3']]]),
      });
    }
    {
      const service = svc(`short-sid-${enc}`);
      const good = randomBytes(16);
      const badTrace = randomBytes(16);
      out.push({
        name: `${enc}: a 5-byte span_id and an all-zero span_id among 2 valid`, ct, status: 200, service,
        body: () => encode(req(service, [
          span({ traceId: good, name: 'ok1' }), span({ traceId: badTrace, spanId: randomBytes(5), name: 'short' }),
          span({ traceId: badTrace, spanId: Buffer.alloc(8), name: 'zero' }), span({ traceId: good, name: 'ok2' }),
        ])),
        check: (res) => expectPartial(res, 2, /span_id|spanId/, service, [[good, ['ok1', 'ok2']], [badTrace, []]]),
      });
    }
  }
  {
    const service = svc('mixed-ids');
    const good = randomBytes(16);
    out.push({
      name: 'protobuf: 17-byte trace_id, 5-byte span_id, zero trace_id, 1 valid', ct: PB, status: 200, service,
      body: () => pbRequest(req(service, [
        span({ traceId: randomBytes(17), name: 'long' }), span({ spanId: randomBytes(5), name: 'short' }),
        span({ traceId: Buffer.alloc(16), name: 'zero' }), span({ traceId: good, name: 'ok' }),
      ])),
      check: (res) => expectPartial(res, 3, /trace_id|span_id/, service, [[good, ['ok']]]),
    });
  }
  return out;
}

/**
 * Asserts a partial success of `rejected` spans with a message matching msg, then that exactly the
 * listed traces hold exactly the listed span names (an empty list: the trace must not exist).
 */
async function expectPartial(res, rejected, msg, service, expectTraces) {
  let ps;
  if (isJson(res)) {
    ps = JSON.parse(res.body.toString('utf8')).partialSuccess;
  } else {
    assert.match(String(res.headers['content-type']), /^application\/x-protobuf/, 'response content type');
    ps = decodeExportResponse(res.body).partialSuccess;
  }
  assert.ok(ps, `no partial_success in the response: ${res.body.toString('hex').slice(0, 200)}`);
  assert.equal(Number(ps.rejectedSpans), rejected, `rejected_spans in ${JSON.stringify(ps)}`);
  assert.match(String(ps.errorMessage), msg, 'error_message names the bad field');
  for (const [traceId, names] of expectTraces) {
    const hex = traceId.toString('hex');
    if (names.length === 0) continue;
    const t = await waitForTrace(d.httpUrl, hex, names.length);
    assert.deepEqual(t.spans.map((s) => s.operationName).sort(), [...names].sort(), `trace ${hex} spans`);
  }
  /* Once the valid spans are visible, the writer has passed this request: invalid ones are absent. */
  for (const [traceId, names] of expectTraces) {
    if (names.length) continue;
    assert.equal(await fetchTrace(d.httpUrl, traceId.toString('hex')), null, 'trace of only invalid spans must not exist');
  }
  const found = await searchTraces(d.httpUrl, [['service', service], ['limit', '100']]);
  const stored = found.flatMap((t) => t.spans.map((s) => s.operationName)).sort();
  assert.deepEqual(stored, expectTraces.flatMap(([, n]) => n).sort(), `spans stored for ${service}`);
}

/**
 * Hostile-string rows. Each sends a span whose name and attribute key/value carry the string,
 * then checks: 400 with nothing stored, or 200 with the strings returned as valid JSON, equal to
 * the original or an accepted sanitisation of it.
 */
function hostileRows() {
  const rowsOut = [];
  const add = (name, bytesOrString, sanitisedOk, ct = PB) => {
    const service = svc(`hostile-${rowsOut.length}`);
    const traceId = randomBytes(16);
    rowsOut.push({
      name: `hostile: ${name}`, ct, status: [200, 400], service,
      body: () => {
        const s = span({ traceId, name: bytesOrString, attrs: [['h.value', { s: bytesOrString }], [bytesOrString, { s: 'key is hostile' }]] });
        const r = req(service, [s]);
        return ct === PB ? pbRequest(r) : Buffer.from(jsonHostile(r, bytesOrString));
      },
      check: async (res) => {
        if (res.status === 400) return expectStatusBody(res, ct, /utf-?8|invalid|string|name|too long|length|control|nul/i);
        await expectNoRejection(res);
        const raw = (await pollRaw(traceId.toString('hex'))).toString('utf8');
        const t = JSON.parse(raw).data[0];
        const got = t.spans[0];
        const okString = (v, what) => assert.ok(sanitisedOk(v), `${what} neither intact nor sanitised: ${JSON.stringify(v).slice(0, 200)}`);
        okString(got.operationName, 'operationName');
        okString(got.tags.find((x) => x.key === 'h.value')?.value, 'tag value');
        const keyTag = got.tags.find((x) => x.value === 'key is hostile');
        assert.ok(keyTag, 'attribute with the hostile key missing');
        okString(keyTag.key, 'tag key');
        assert.equal(t.processes[got.processID].serviceName, service);
      },
    });
  };
  const intact = (orig) => (v) => v === orig;
  add('NUL bytes', NUL_NAME, (v) => v === NUL_NAME || v === NUL_NAME.replace(/\0/g, '\uFFFD') || v === NUL_NAME.replace(/\0/g, ''));
  add('invalid UTF-8', Buffer.from([0x61, 0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x62]),
    (v) => typeof v === 'string' && v.replace(/[\uFFFD?]/g, '') === 'a(b');
  add('60 KB name', LONG_NAME, (v) => typeof v === 'string' && v.length > 0 && LONG_NAME.startsWith(v.replace(/(\.\.\.|…)$/, '')));
  add('</script>', SCRIPT, intact(SCRIPT));
  add('emoji, ZWJ, RTL override, astral', EMOJI, intact(EMOJI));
  add('control characters', CONTROLS, intact(CONTROLS));
  add('JSON: \\u0000 escape', NUL_NAME, (v) => v === NUL_NAME || v === NUL_NAME.replace(/\0/g, '\uFFFD') || v === NUL_NAME.replace(/\0/g, ''), JSON_CT);
  add('JSON: lone surrogate', 'lone\ud800surrogate', (v) => v === 'lone\uFFFDsurrogate' || v === 'lonesurrogate', JSON_CT);
  add('JSON: invalid UTF-8 bytes', Buffer.from([0x61, 0xff, 0x62]), (v) => typeof v === 'string' && v.replace(/[\uFFFD?]/g, '') === 'ab', JSON_CT);
  return rowsOut;
}

/* JSON.stringify cannot put raw invalid UTF-8 bytes or a lone surrogate escape in a body: splice them in. */
function jsonHostile(r, value) {
  if (!Buffer.isBuffer(value)) return JSON.stringify(jsonRequest(r)); /* \u0000 and \ud800 are escaped by stringify */
  const marker = `@@HOSTILE${randomBytes(4).toString('hex')}@@`;
  const s = r[0].scopes[0].spans[0];
  s.name = marker;
  s.attrs = [['h.value', { s: marker }], [marker, { s: 'key is hostile' }]];
  const text = Buffer.from(JSON.stringify(jsonRequest(r)));
  const parts = [];
  let off = 0;
  for (let i = text.indexOf(marker); i >= 0; i = text.indexOf(marker, off)) {
    parts.push(text.subarray(off, i), value);
    off = i + marker.length;
  }
  parts.push(text.subarray(off));
  return Buffer.concat(parts);
}

/** Polls the raw body of /api/traces/{id} until it holds a trace; asserts it is valid UTF-8 JSON. */
async function pollRaw(hex) {
  await waitForTrace(d.httpUrl, hex, 1);
  const res = await request(`${d.httpUrl}/api/traces/${hex}`);
  assert.equal(res.status, 200);
  assert.doesNotThrow(() => new TextDecoder('utf-8', { fatal: true }).decode(res.body), 'query response is not valid UTF-8');
  return res.body;
}

/** Asserts a 400 body: a google.rpc.Status in the request's encoding, code 3, message matching msg. */
function expectStatusBody(res, ct, msg) {
  assert.ok(res.body.length > 0, '400 without a google.rpc.Status body');
  let st;
  if (ct === JSON_CT) {
    assert.match(String(res.headers['content-type']), /^application\/json/, 'Status content type follows the request');
    st = JSON.parse(res.body.toString('utf8'));
  } else {
    assert.match(String(res.headers['content-type']), /^application\/x-protobuf/, 'Status content type follows the request');
    st = decodeStatus(res.body);
  }
  assert.equal(st.code, 3, `google.rpc.Status code (INVALID_ARGUMENT) in ${JSON.stringify(st)}`);
  assert.match(String(st.message), msg, `Status message ${JSON.stringify(st.message)} does not name the problem`);
}

const results = new Map();

describe('POST /v1/traces with malformed input', () => {
  for (const row of rows) {
    it(row.name, async (t) => {
      const headers = {};
      if (row.ct) headers['content-type'] = row.ct;
      if (row.enc) headers['content-encoding'] = row.enc;
      const body = row.body?.();
      const res = await request(`${d.otlpUrl}/v1/traces`, { method: row.method ?? 'POST', headers, body, timeoutMs: 30_000 });
      results.set(row, res.status);
      t.diagnostic(`HTTP ${res.status} ${res.headers['content-type'] ?? ''} ${describeBody(res)}`);
      assert.ok(d.alive(), 'meshscope died on this request');
      const expected = [row.status].flat();
      assert.ok(expected.includes(res.status),
        `status ${res.status}, want ${expected.join(' or ')}; body: ${res.body.toString('utf8').slice(0, 300)}`);
      if (res.status === 400 && row.msg) expectStatusBody(res, row.ct, row.msg);
      if (res.status === 429 || res.status === 503) assert.ok(res.headers['retry-after'], 'Retry-After missing');
      if (row.check) await row.check(res, row);
      if (res.status === 200 && row.stored) {
        const found = await pollService(row.service, row.stored);
        assert.equal(found, row.stored, `${row.service}: spans stored`);
      }
    });
  }
});

/** Polls a search by service until `want` spans are visible; returns the span count. */
async function pollService(service, want) {
  const deadline = Date.now() + 10_000;
  let n = 0;
  for (let i = 0; i < 100 && Date.now() < deadline; i++) {
    const found = await searchTraces(d.httpUrl, [['service', service], ['limit', '100']]);
    n = found.reduce((a, t) => a + t.spans.length, 0);
    if (n >= want) return n;
    await new Promise((r) => setTimeout(r, 100));
  }
  return n;
}

describe('after the malformed table', () => {
  it('the daemon is healthy and a valid export still works', async () => {
    assert.ok(d.alive(), 'meshscope is not running');
    const h = await request(`${d.httpUrl}/healthz`);
    assert.equal(h.status, 200);
    const service = svc('after');
    const p = makeProvider({ otlpUrl: d.otlpUrl, format: 'proto', compression: 'gzip', resourceAttrs: { 'service.name': service } });
    const s = p.provider.getTracer('after').startSpan('still-works', { kind: SpanKind.SERVER }, ROOT_CONTEXT);
    s.end();
    await p.flush('after the table');
    await p.shutdown();
    await waitForTrace(d.httpUrl, s.spanContext().traceId, 1);
  });

  it('refused requests stored nothing', async () => {
    /* The writer stores batches in order; the export above is visible, so every earlier accepted
     * batch has been written. A refused request must not have produced a batch at all. */
    const listed = new Set(await services(d.httpUrl));
    const leaks = [];
    for (const row of rows) {
      if (!row.service) continue;
      const status = results.get(row);
      if (status === undefined || status === 200) continue;
      if (listed.has(row.service)) leaks.push(`${row.name} (HTTP ${status}) -> service ${row.service} listed`);
      const found = await searchTraces(d.httpUrl, [['service', row.service], ['limit', '10']]);
      if (found.length) leaks.push(`${row.name} (HTTP ${status}) -> ${found.length} traces stored`);
    }
    assert.deepEqual(leaks, []);
  });
});
