/*
 * proto.mjs: a small protobuf wire-format writer and reader, and hand-built OTLP trace requests.
 *
 * The SDK's exporters only ever send well-formed requests; the malformed-input tests need to send
 * truncated messages, wrong wire types, invalid UTF-8 in string fields, all-zero ids and 5-byte
 * span ids, which no serializer will produce. So requests are built field by field here, with the
 * field numbers of opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto. The reader
 * decodes the two response messages the tests inspect (ExportTraceServiceResponse and
 * google.rpc.Status) without pulling in a protobuf library.
 */

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_I32 = 5;

/* ---------------------------------------------------------------------------------------------
 * Writer: each function returns a Buffer holding one encoded field (tag + payload).
 * ------------------------------------------------------------------------------------------- */

/** Encodes an unsigned varint; accepts a number or a BigInt (negative values as 64-bit two's complement). */
export function varint(v) {
  let n = BigInt.asUintN(64, BigInt(v));
  const out = [];
  do {
    let b = Number(n & 0x7fn);
    n >>= 7n;
    if (n !== 0n) b |= 0x80;
    out.push(b);
  } while (n !== 0n);
  return Buffer.from(out);
}

export function tag(fieldNo, wireType) {
  return varint((fieldNo << 3) | wireType);
}

export function fVarint(fieldNo, v) {
  return Buffer.concat([tag(fieldNo, WT_VARINT), varint(v)]);
}

/** A length-delimited field: bytes, string (UTF-8 unless a Buffer is given) or embedded message. */
export function fBytes(fieldNo, data) {
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
  return Buffer.concat([tag(fieldNo, WT_LEN), varint(b.length), b]);
}

export function fMessage(fieldNo, ...parts) {
  return fBytes(fieldNo, Buffer.concat(parts));
}

export function fFixed64(fieldNo, v) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)));
  return Buffer.concat([tag(fieldNo, WT_I64), b]);
}

export function fDouble(fieldNo, v) {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return Buffer.concat([tag(fieldNo, WT_I64), b]);
}

export function fFixed32(fieldNo, v) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return Buffer.concat([tag(fieldNo, WT_I32), b]);
}

/* ---------------------------------------------------------------------------------------------
 * OTLP builders (protobuf). Values are described as plain objects so the same description can be
 * rendered as protobuf or as OTLP/JSON:
 *   value: {s: 'x'} | {b: true} | {i: 42n} | {d: 1.5} | {bytes: Buffer} | {arr: [value...]} |
 *          {kv: [[key, value]...]} | {} (empty AnyValue)
 *   attrs: [[key, value], ...]
 * ------------------------------------------------------------------------------------------- */

export function pbAnyValue(v) {
  if (v.s !== undefined) return fBytes(1, v.s);
  if (v.b !== undefined) return fVarint(2, v.b ? 1 : 0);
  if (v.i !== undefined) return fVarint(3, v.i);
  if (v.d !== undefined) return fDouble(4, v.d);
  if (v.arr !== undefined) return fMessage(5, ...v.arr.map((x) => fMessage(1, pbAnyValue(x))));
  if (v.kv !== undefined) return fMessage(6, ...v.kv.map(([k, x]) => fMessage(1, pbKeyValue(k, x))));
  if (v.bytes !== undefined) return fBytes(7, v.bytes);
  return Buffer.alloc(0);
}

/** The body of a KeyValue message (key = 1, value = 2); key may be a Buffer to send raw bytes. */
export function pbKeyValue(key, v) {
  return Buffer.concat([fBytes(1, key), fMessage(2, pbAnyValue(v))]);
}

function pbAttrs(fieldNo, attrs = []) {
  return attrs.map(([k, v]) => fMessage(fieldNo, pbKeyValue(k, v)));
}

/**
 * Encodes one Span. span: {traceId: Buffer, spanId: Buffer, parentSpanId?, traceState?, name,
 * kind?, start: BigInt ns, end: BigInt ns, attrs?, events?: [{time, name, attrs}],
 * links?: [{traceId, spanId, traceState?, attrs?}], status?: {code, message}, flags?, extra?: [Buffer]}
 * `extra` appends raw fields (unknown fields, wrong wire types) to the span message.
 */
export function pbSpan(s) {
  const parts = [fBytes(1, s.traceId), fBytes(2, s.spanId)];
  if (s.traceState !== undefined) parts.push(fBytes(3, s.traceState));
  if (s.parentSpanId !== undefined) parts.push(fBytes(4, s.parentSpanId));
  parts.push(fBytes(5, s.name));
  if (s.kind !== undefined) parts.push(fVarint(6, s.kind));
  parts.push(fFixed64(7, s.start), fFixed64(8, s.end));
  parts.push(...pbAttrs(9, s.attrs));
  for (const e of s.events ?? []) {
    parts.push(fMessage(11, fFixed64(1, e.time), fBytes(2, e.name), ...pbAttrs(3, e.attrs)));
  }
  for (const l of s.links ?? []) {
    const lp = [fBytes(1, l.traceId), fBytes(2, l.spanId)];
    if (l.traceState !== undefined) lp.push(fBytes(3, l.traceState));
    lp.push(...pbAttrs(4, l.attrs));
    parts.push(fMessage(13, ...lp));
  }
  if (s.status) {
    const sp = [];
    if (s.status.message !== undefined) sp.push(fBytes(2, s.status.message));
    if (s.status.code !== undefined) sp.push(fVarint(3, s.status.code));
    parts.push(fMessage(15, ...sp));
  }
  if (s.flags !== undefined) parts.push(fFixed32(16, s.flags));
  parts.push(...(s.extra ?? []));
  return Buffer.concat(parts);
}

/**
 * Encodes an ExportTraceServiceRequest. req: [{resource: attrs, scopes: [{name, version, spans: [span]}]}]
 */
export function pbRequest(req) {
  return Buffer.concat(
    req.map((rs) =>
      fMessage(
        1,
        fMessage(1, ...pbAttrs(1, rs.resource)),
        ...rs.scopes.map((sc) => {
          const scope = [];
          if (sc.name !== undefined) scope.push(fBytes(1, sc.name));
          if (sc.version !== undefined) scope.push(fBytes(2, sc.version));
          return fMessage(2, fMessage(1, ...scope), ...sc.spans.map((sp) => fMessage(2, pbSpan(sp))));
        }),
      ),
    ),
  );
}

/* ---------------------------------------------------------------------------------------------
 * The same descriptions rendered as OTLP/JSON (ids in hex, 64-bit integers as strings).
 * ------------------------------------------------------------------------------------------- */

export function jsonAnyValue(v) {
  if (v.s !== undefined) return { stringValue: v.s };
  if (v.b !== undefined) return { boolValue: v.b };
  if (v.i !== undefined) return { intValue: String(v.i) };
  if (v.d !== undefined) return { doubleValue: v.d };
  if (v.arr !== undefined) return { arrayValue: { values: v.arr.map(jsonAnyValue) } };
  if (v.kv !== undefined) return { kvlistValue: { values: jsonAttrs(v.kv) } };
  if (v.bytes !== undefined) return { bytesValue: v.bytes.toString('base64') };
  return {};
}

function jsonAttrs(attrs = []) {
  return attrs.map(([key, v]) => ({ key, value: jsonAnyValue(v) }));
}

export function jsonSpan(s) {
  const out = {
    traceId: s.traceId.toString('hex'),
    spanId: s.spanId.toString('hex'),
    name: s.name,
    startTimeUnixNano: String(s.start),
    endTimeUnixNano: String(s.end),
    attributes: jsonAttrs(s.attrs),
  };
  if (s.traceState !== undefined) out.traceState = s.traceState;
  if (s.parentSpanId !== undefined) out.parentSpanId = s.parentSpanId.toString('hex');
  if (s.kind !== undefined) out.kind = s.kind;
  if (s.events) {
    out.events = s.events.map((e) => ({ timeUnixNano: String(e.time), name: e.name, attributes: jsonAttrs(e.attrs) }));
  }
  if (s.links) {
    out.links = s.links.map((l) => ({
      traceId: l.traceId.toString('hex'),
      spanId: l.spanId.toString('hex'),
      ...(l.traceState !== undefined ? { traceState: l.traceState } : {}),
      attributes: jsonAttrs(l.attrs),
    }));
  }
  if (s.status) out.status = { ...s.status };
  if (s.flags !== undefined) out.flags = s.flags;
  return out;
}

export function jsonRequest(req) {
  return {
    resourceSpans: req.map((rs) => ({
      resource: { attributes: jsonAttrs(rs.resource) },
      scopeSpans: rs.scopes.map((sc) => ({
        scope: { name: sc.name, version: sc.version },
        spans: sc.spans.map(jsonSpan),
      })),
    })),
  };
}

/* ---------------------------------------------------------------------------------------------
 * Reader.
 * ------------------------------------------------------------------------------------------- */

/** Decodes one message level into [{no, wt, value}] (value: BigInt for varint/fixed, Buffer for LEN). Throws on malformed input. */
export function decodeFields(buf) {
  const fields = [];
  let i = 0;
  const readVarint = () => {
    let n = 0n;
    let shift = 0n;
    for (let k = 0; k < 10; k++) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      n |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return n;
      shift += 7n;
    }
    throw new Error('varint too long');
  };
  while (i < buf.length) {
    const key = readVarint();
    const no = Number(key >> 3n);
    const wt = Number(key & 7n);
    let value;
    if (wt === WT_VARINT) value = readVarint();
    else if (wt === WT_I64) {
      if (i + 8 > buf.length) throw new Error('truncated fixed64');
      value = buf.readBigUInt64LE(i);
      i += 8;
    } else if (wt === WT_LEN) {
      const len = Number(readVarint());
      if (i + len > buf.length) throw new Error('truncated length-delimited field');
      value = buf.subarray(i, i + len);
      i += len;
    } else if (wt === WT_I32) {
      if (i + 4 > buf.length) throw new Error('truncated fixed32');
      value = BigInt(buf.readUInt32LE(i));
      i += 4;
    } else throw new Error(`unsupported wire type ${wt}`);
    fields.push({ no, wt, value });
  }
  return fields;
}

/** google.rpc.Status {int32 code = 1; string message = 2; repeated Any details = 3;} */
export function decodeStatus(buf) {
  const out = { code: 0, message: '', details: [] };
  for (const f of decodeFields(buf)) {
    if (f.no === 1 && f.wt === WT_VARINT) out.code = Number(BigInt.asIntN(32, f.value));
    else if (f.no === 2 && f.wt === WT_LEN) out.message = f.value.toString('utf8');
    else if (f.no === 3 && f.wt === WT_LEN) out.details.push(f.value);
  }
  return out;
}

/** ExportTraceServiceResponse {ExportTracePartialSuccess partial_success = 1;} with
 * ExportTracePartialSuccess {int64 rejected_spans = 1; string error_message = 2;}.
 * Returns {partialSuccess: null | {rejectedSpans: number, errorMessage: string}}. */
export function decodeExportResponse(buf) {
  let partialSuccess = null;
  for (const f of decodeFields(buf)) {
    if (f.no === 1 && f.wt === WT_LEN) {
      partialSuccess = { rejectedSpans: 0, errorMessage: '' };
      for (const g of decodeFields(f.value)) {
        if (g.no === 1 && g.wt === WT_VARINT) partialSuccess.rejectedSpans = Number(BigInt.asIntN(64, g.value));
        else if (g.no === 2 && g.wt === WT_LEN) partialSuccess.errorMessage = g.value.toString('utf8');
      }
    }
  }
  return { partialSuccess };
}

/* ---------------------------------------------------------------------------------------------
 * zstd frames built by hand (RFC 8878), since Node 20's zlib has no zstd. Raw and RLE blocks
 * need no entropy coder, and any conforming decoder (libzstd) must accept them.
 * ------------------------------------------------------------------------------------------- */

const ZSTD_MAGIC = 0xfd2fb528;
const ZSTD_BLOCK_MAX = 128 * 1024; /* Block_Maximum_Size with a window of at least 128 KiB */

function zstdBlockHeader(last, type, size) {
  const v = (last ? 1 : 0) | (type << 1) | (size << 3);
  return Buffer.from([v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff]);
}

/** A single-segment frame declaring its content size, holding `data` in raw blocks. */
export function zstdRawFrame(data) {
  const head = Buffer.alloc(4 + 1 + 8);
  head.writeUInt32LE(ZSTD_MAGIC, 0);
  head[4] = (3 << 6) | (1 << 5); /* FCS field 8 bytes, Single_Segment */
  head.writeBigUInt64LE(BigInt(data.length), 5);
  const parts = [head];
  if (data.length === 0) parts.push(zstdBlockHeader(true, 0, 0));
  for (let off = 0; off < data.length; off += ZSTD_BLOCK_MAX) {
    const chunk = data.subarray(off, off + ZSTD_BLOCK_MAX);
    parts.push(zstdBlockHeader(off + ZSTD_BLOCK_MAX >= data.length, 0, chunk.length), chunk);
  }
  return Buffer.concat(parts);
}

/**
 * A streaming frame (no content size, 128 KiB window) that expands `prefix` followed by `total`
 * repetitions of `byte`, built from RLE blocks of 4 bytes each: 50 MB fit in ~1.6 KB.
 */
export function zstdRleBomb(prefix, byte, total) {
  const head = Buffer.alloc(6);
  head.writeUInt32LE(ZSTD_MAGIC, 0);
  head[4] = 0; /* no FCS, not single segment, no checksum, no dictionary */
  head[5] = 7 << 3; /* Window_Descriptor: exponent 7 -> 2^17 = 128 KiB, mantissa 0 */
  const parts = [head];
  if (prefix.length) parts.push(zstdBlockHeader(total === 0, 0, prefix.length), prefix);
  let left = total;
  while (left > 0) {
    const n = Math.min(left, ZSTD_BLOCK_MAX);
    left -= n;
    parts.push(zstdBlockHeader(left === 0, 1, n), Buffer.from([byte]));
  }
  return Buffer.concat(parts);
}
