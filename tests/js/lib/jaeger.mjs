/*
 * jaeger.mjs: what the Jaeger v1 query API must return for spans the SDK recorded.
 *
 * The expected values follow the OpenTelemetry collector-contrib Jaeger translator
 * (pkg/translator/jaeger, traces_to_jaegerproto.go) and Jaeger's uimodel JSON
 * (model/json, from_domain.go):
 *   attributes      string->"string", bool->"bool", int->"int64", double->"float64",
 *                   bytes->"binary" (base64), arrays and kvlists->"string" holding JSON
 *   scope           "otel.scope.name" / "otel.scope.version" (when non-empty)
 *   kind            "span.kind": internal/server/client/producer/consumer
 *   status          OK -> "otel.status_code":"OK"; ERROR -> "otel.status_code":"ERROR" and
 *                   "error":true (bool); message -> "otel.status_description"
 *   trace_state     "w3c.tracestate"
 *   parent          first reference, CHILD_OF; links follow as FOLLOWS_FROM
 *   events          logs {timestamp µs, fields: "event"=name (unless an attribute is called
 *                   "event") then the event attributes}
 *   resource        process {serviceName = service.name, tags = the other attributes}
 *   times           startTime = start ns / 1000, duration = (end - start) ns / 1000, truncated
 * Tag order is not part of the contract (Jaeger's own query adjusters reorder tags), so tags and
 * log fields are compared as sets keyed by tag name; references and logs keep their order.
 */
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';

const KIND_TAG = {
  [SpanKind.INTERNAL]: 'internal',
  [SpanKind.SERVER]: 'server',
  [SpanKind.CLIENT]: 'client',
  [SpanKind.PRODUCER]: 'producer',
  [SpanKind.CONSUMER]: 'consumer',
};

/** The keys Jaeger's uimodel Span may carry (parentSpanID, flags and process are omitempty). */
const SPAN_KEYS = new Set([
  'traceID', 'spanID', 'parentSpanID', 'flags', 'operationName', 'references', 'startTime',
  'duration', 'tags', 'logs', 'processID', 'process', 'warnings',
]);
const SPAN_REQUIRED = ['traceID', 'spanID', 'operationName', 'references', 'startTime', 'duration', 'tags', 'logs', 'processID'];

export function hrToNanos(hr) {
  return BigInt(Math.trunc(hr[0])) * 1_000_000_000n + BigInt(Math.trunc(hr[1]));
}

/** µs since the epoch, truncated, as a Number (exact: < 2^53 until the year 2255). */
export function hrToMicros(hr) {
  return Number(hrToNanos(hr) / 1000n);
}

/** The Jaeger tag for one SDK attribute value. */
export function attributeTag(key, v) {
  if (typeof v === 'string') return { key, type: 'string', value: v };
  if (typeof v === 'boolean') return { key, type: 'bool', value: v };
  if (typeof v === 'number') return Number.isInteger(v) ? { key, type: 'int64', value: v } : { key, type: 'float64', value: v };
  if (v instanceof Uint8Array) return { key, type: 'binary', value: Buffer.from(v).toString('base64') };
  if (Array.isArray(v)) return { key, type: 'string', value: JSON.stringify(v) };
  throw new Error(`attribute ${key}: unsupported value ${v}`);
}

export function attributeTags(attrs = {}) {
  return Object.entries(attrs).map(([k, v]) => attributeTag(k, v));
}

/** The complete expected Jaeger tag set of a ReadableSpan. */
export function expectedSpanTags(rs) {
  const tags = [];
  const scope = rs.instrumentationScope;
  if (scope.name) tags.push({ key: 'otel.scope.name', type: 'string', value: scope.name });
  if (scope.version) tags.push({ key: 'otel.scope.version', type: 'string', value: scope.version });
  tags.push(...attributeTags(rs.attributes));
  if (KIND_TAG[rs.kind] !== undefined) tags.push({ key: 'span.kind', type: 'string', value: KIND_TAG[rs.kind] });
  if (rs.status.code === SpanStatusCode.OK) tags.push({ key: 'otel.status_code', type: 'string', value: 'OK' });
  if (rs.status.code === SpanStatusCode.ERROR) {
    tags.push({ key: 'otel.status_code', type: 'string', value: 'ERROR' });
    tags.push({ key: 'error', type: 'bool', value: true });
  }
  if (rs.status.message) tags.push({ key: 'otel.status_description', type: 'string', value: rs.status.message });
  const ts = rs.spanContext().traceState?.serialize();
  if (ts) tags.push({ key: 'w3c.tracestate', type: 'string', value: ts });
  return tags;
}

export function expectedProcess(resource) {
  const attrs = { ...resource.attributes };
  const serviceName = attrs['service.name'];
  delete attrs['service.name'];
  return { serviceName, tags: attributeTags(attrs) };
}

/** The expected uimodel span (without processID, which the server assigns). */
export function expectedSpan(rs) {
  const ctx = rs.spanContext();
  const references = [];
  if (rs.parentSpanContext?.spanId) {
    references.push({ refType: 'CHILD_OF', traceID: ctx.traceId, spanID: rs.parentSpanContext.spanId });
  }
  for (const l of rs.links) {
    references.push({ refType: 'FOLLOWS_FROM', traceID: l.context.traceId, spanID: l.context.spanId });
  }
  const logs = rs.events.map((e) => {
    const fields = [];
    if (e.name && !(e.attributes && 'event' in e.attributes)) fields.push({ key: 'event', type: 'string', value: e.name });
    fields.push(...attributeTags(e.attributes));
    return { timestamp: hrToMicros(e.time), fields };
  });
  return {
    traceID: ctx.traceId,
    spanID: ctx.spanId,
    operationName: rs.name,
    references,
    startTime: hrToMicros(rs.startTime),
    duration: Number((hrToNanos(rs.endTime) - hrToNanos(rs.startTime)) / 1000n),
    tags: expectedSpanTags(rs),
    logs,
  };
}

const byKey = (a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Asserts a tag list equals the expected set: same keys, each with the same type and value. */
export function assertTags(actual, expected, what) {
  assert.ok(Array.isArray(actual), `${what}: tags is not an array: ${JSON.stringify(actual)}`);
  for (const t of actual) {
    assert.deepEqual(Object.keys(t).sort(), ['key', 'type', 'value'], `${what}: tag shape ${JSON.stringify(t)}`);
  }
  const a = [...actual].sort(byKey);
  const e = [...expected].sort(byKey);
  const aByKey = new Map(a.map((t) => [t.key, t]));
  const eByKey = new Map(e.map((t) => [t.key, t]));
  const missing = e.filter((t) => !aByKey.has(t.key)).map((t) => t.key);
  const extra = a.filter((t) => !eByKey.has(t.key)).map((t) => `${t.key}=${JSON.stringify(t.value)}`);
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `${what}: tag keys differ`);
  for (const t of e) {
    assert.deepEqual(aByKey.get(t.key), t, `${what}: tag ${t.key}`);
  }
  assert.equal(a.length, e.length, `${what}: duplicate tags in ${JSON.stringify(actual)}`);
}

/**
 * Asserts one uimodel trace against the SDK's ReadableSpans, field by field.
 * Every span in the trace must be one of the expected and vice versa.
 */
export function assertTraceMatches(trace, readableSpans, what = 'trace') {
  const traceId = readableSpans[0].spanContext().traceId;
  assert.deepEqual(
    Object.keys(trace).filter((k) => k !== 'warnings').sort(),
    ['processes', 'spans', 'traceID'],
    `${what}: trace keys ${JSON.stringify(Object.keys(trace))}`,
  );
  assert.ok(trace.warnings === null || trace.warnings === undefined || (Array.isArray(trace.warnings) && trace.warnings.length === 0),
    `${what}: trace warnings ${JSON.stringify(trace.warnings)}`);
  assert.equal(trace.traceID, traceId, `${what}: traceID`);
  assert.equal(trace.spans.length, readableSpans.length,
    `${what}: span count (got ${trace.spans.map((s) => s.operationName).join(', ')})`);
  const byId = new Map(trace.spans.map((s) => [s.spanID, s]));
  assert.equal(byId.size, trace.spans.length, `${what}: duplicate span ids`);

  for (const rs of readableSpans) {
    const exp = expectedSpan(rs);
    const sw = `${what}: span ${rs.name} (${exp.spanID})`;
    const got = byId.get(exp.spanID);
    assert.ok(got, `${sw}: missing from the trace`);
    for (const k of Object.keys(got)) assert.ok(SPAN_KEYS.has(k), `${sw}: unexpected key ${k}`);
    for (const k of SPAN_REQUIRED) assert.ok(k in got, `${sw}: missing key ${k}`);
    assert.equal(got.traceID, exp.traceID, `${sw}: traceID`);
    assert.equal(got.operationName, exp.operationName, `${sw}: operationName`);
    assert.deepEqual(got.references, exp.references, `${sw}: references`);
    if (got.parentSpanID !== undefined) {
      assert.equal(got.parentSpanID, rs.parentSpanContext?.spanId ?? '', `${sw}: parentSpanID`);
    }
    assert.equal(got.startTime, exp.startTime, `${sw}: startTime (µs)`);
    assert.equal(got.duration, exp.duration, `${sw}: duration (µs)`);
    assertTags(got.tags, exp.tags, `${sw}`);
    assert.ok(Array.isArray(got.logs), `${sw}: logs not an array`);
    assert.equal(got.logs.length, exp.logs.length, `${sw}: log count`);
    exp.logs.forEach((el, i) => {
      const gl = got.logs[i];
      assert.deepEqual(Object.keys(gl).sort(), ['fields', 'timestamp'], `${sw}: log ${i} keys`);
      assert.equal(gl.timestamp, el.timestamp, `${sw}: log ${i} timestamp (µs)`);
      assertTags(gl.fields, el.fields, `${sw}: log ${i} fields`);
    });
    assert.ok(got.warnings === null || got.warnings === undefined || (Array.isArray(got.warnings) && got.warnings.length === 0),
      `${sw}: warnings ${JSON.stringify(got.warnings)}`);
    if (got.flags !== undefined) assert.ok(Number.isInteger(got.flags) && got.flags >= 0, `${sw}: flags ${got.flags}`);

    const proc = trace.processes?.[got.processID];
    assert.ok(proc, `${sw}: processID ${got.processID} not in processes ${JSON.stringify(Object.keys(trace.processes ?? {}))}`);
    const ep = expectedProcess(rs.resource);
    assert.deepEqual(Object.keys(proc).sort(), ['serviceName', 'tags'], `${sw}: process keys`);
    assert.equal(proc.serviceName, ep.serviceName, `${sw}: process serviceName`);
    assertTags(proc.tags, ep.tags, `${sw}: process tags`);
  }
}
