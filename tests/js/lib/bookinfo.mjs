/*
 * bookinfo.mjs: Istio's Bookinfo mesh as test traffic: productpage -> details,
 * productpage -> reviews -> ratings.
 *
 * bookinfoSpans() lays out one page view as plain span records (who, when, which response code);
 * the tests choose the latencies, codes, names and attributes. bookinfoProviders() gives one
 * OpenTelemetry JS SDK provider per service and records such a page view with them (send()); a test
 * that sends raw OTLP JSON turns the records into spans itself.
 */
export const SERVICES = ['productpage', 'details', 'reviews', 'ratings'];

/* Servers first, then the callers: the halves of each call meet in either order. */
export const SERVERS_FIRST = ['ratings', 'details', 'reviews', 'productpage'];

/* The calls of a page view: caller, callee, and the call whose SERVER span the CLIENT span is under. */
const CALLS = [
  { from: 'productpage', to: 'details', under: 'root' },
  { from: 'productpage', to: 'reviews', under: 'root' },
  { from: 'reviews', to: 'ratings', under: 'reviews' },
];

/**
 * One page view at t0 (ms since epoch) as span records in creation order (a parent before its
 * children): the productpage SERVER span (call 'root'), then per call the caller's CLIENT span and
 * the callee's SERVER span. Each record: {call, service, peer (CLIENT: the callee), kind ('SERVER' |
 * 'CLIENT'), name, start, end (ms), code, parent (record or null)}.
 *   timing: {root: ms, details|reviews|ratings: {at, ms}}: a call's CLIENT span starts at t0 + at,
 *     the SERVER span runs from t0 + at + 1 for ms, the CLIENT span ends 1 ms after it;
 *   codes: {root, details, reviews, ratings}: HTTP status codes (200 when left out), the same on
 *     both halves of a call;
 *   names: {client(to), server(to)}: span names (the root is 'GET /productpage').
 */
export function bookinfoSpans(t0, { timing, codes = {}, names = {} }) {
  const { client = () => 'GET', server = (to) => `GET /${to}/{id}` } = names;
  const root = {
    call: 'root', service: 'productpage', kind: 'SERVER', name: 'GET /productpage',
    start: t0, end: t0 + timing.root, code: codes.root ?? 200, parent: null,
  };
  const spans = [root];
  const servers = { root };
  for (const { from, to, under } of CALLS) {
    const { at, ms } = timing[to];
    const code = codes[to] ?? 200;
    const c = { call: to, service: from, peer: to, kind: 'CLIENT', name: client(to), start: t0 + at, end: t0 + at + 2 + ms, code, parent: servers[under] };
    const s = { call: to, service: to, kind: 'SERVER', name: server(to), start: t0 + at + 1, end: t0 + at + 1 + ms, code, parent: c };
    spans.push(c, s);
    servers[to] = s;
  }
  return spans;
}

/** Istio-style resource attributes of a Bookinfo workload (version v1) in namespace ns. */
export const istioResource = (ns) => (svc) => ({
  'service.name': svc,
  'service.version': 'v1',
  'k8s.namespace.name': ns,
  'k8s.deployment.name': `${svc}-v1`,
});

/**
 * One SDK provider per service, exporting to otlpUrl; resourceOf(svc) gives its resource
 * attributes. Resolves {providers, tracer(svc), send(), flush(label, {reset}), shutdown()}:
 *   send(spans, {attributes, error}) records bookinfoSpans() records: attributes(record) gives a
 *     span's attributes, error(record) whether its status is ERROR; spans end in the order of
 *     their end times (callees before callers). Returns the trace id.
 *   flush() goes servers first, label(svc) naming each flush; reset forgets the recorded spans
 *     after it.
 */
export async function bookinfoProviders(otlpUrl, resourceOf) {
  /* The SDK is loaded here, not at the top: web/tests lays out page views with bookinfoSpans()
   * and has no tests/js/node_modules of its own. */
  const [{ ROOT_CONTEXT, SpanKind, SpanStatusCode, trace }, { makeProvider }] =
    await Promise.all([import('@opentelemetry/api'), import('./sdk.mjs')]);
  const providers = {};
  for (const svc of SERVICES) providers[svc] = makeProvider({ otlpUrl, resourceAttrs: resourceOf(svc) });
  const tracer = (svc) => providers[svc].provider.getTracer('bookinfo');
  return {
    providers,
    tracer,
    send(spans, { attributes, error }) {
      const live = new Map();
      for (const s of spans) {
        const ctx = s.parent ? trace.setSpan(ROOT_CONTEXT, live.get(s.parent)) : ROOT_CONTEXT;
        live.set(s, tracer(s.service).startSpan(s.name, { kind: SpanKind[s.kind], startTime: s.start, attributes: attributes(s) }, ctx));
      }
      for (const s of [...spans].sort((a, b) => a.end - b.end)) {
        if (error(s)) live.get(s).setStatus({ code: SpanStatusCode.ERROR });
        live.get(s).end(s.end);
      }
      return live.get(spans[0]).spanContext().traceId;
    },
    async flush(label = (svc) => svc, { reset = false } = {}) {
      for (const svc of SERVERS_FIRST) {
        await providers[svc].flush(label(svc));
        if (reset) providers[svc].memory.reset();
      }
    },
    async shutdown() {
      for (const p of Object.values(providers)) await p.shutdown().catch(() => {});
    },
  };
}

/**
 * The Istio-instrumented page view number i at t0 that red_prometheus and dashboards send with
 * mesh (bookinfoProviders()):
 * HTTP semantic-convention attributes, server.address host(svc), server.port 9080.
 *   failEvery: reviews answers 503 (productpage 500) when i % failEvery === 0, both halves of the
 *     reviews call ERROR, and the root too if rootError;
 *   slowEvery: ratings takes 1.5 s (else 20 ms) when i % slowEvery === 0;
 *   notFound(i): details answers 404;
 *   bodySizes: http.response.body.size on details (178, 0 on 404) and ratings (48).
 * Returns the trace id.
 */
export function istioPageView(mesh, i, t0, { failEvery, slowEvery, notFound = () => false, host = (svc) => svc, bodySizes = false, rootError = false }) {
  const fail = i % failEvery === 0;
  const ratingsMs = i % slowEvery === 0 ? 1500 : 20;
  const nf = notFound(i);
  const spans = bookinfoSpans(t0, {
    timing: { root: 25 + ratingsMs, details: { at: 1, ms: 10 }, reviews: { at: 14, ms: 5 + ratingsMs }, ratings: { at: 16, ms: ratingsMs } },
    codes: { root: fail ? 500 : 200, details: nf ? 404 : 200, reviews: fail ? 503 : 200 },
  });
  const size = { details: nf ? 0 : 178, ratings: 48 };
  const attributes = (s) => {
    const code = { 'http.response.status_code': s.code };
    const body = bodySizes && s.call in size ? { 'http.response.body.size': size[s.call] } : {};
    if (s.call === 'root') return { 'http.request.method': 'GET', 'http.route': '/productpage', 'server.address': host('productpage'), ...code };
    if (s.kind === 'SERVER') return { 'http.request.method': 'GET', ...code, ...body };
    const url = s.peer === 'details' ? { 'url.full': `http://${host('details')}:9080/details/${i}` } : {};
    return { 'http.request.method': 'GET', 'server.address': host(s.peer), 'server.port': 9080, ...url, ...code, ...body };
  };
  return mesh.send(spans, { attributes, error: (s) => s.code >= 500 && (rootError || s.call !== 'root') });
}
