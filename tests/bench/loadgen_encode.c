/*
 * loadgen_encode.c: the traces meshscope-loadgen sends, and their encodings.
 *
 * Traces are generated into a small model (one struct gspan per span: service, peer, kind,
 * parent, route, status, times, per-request strings), then encoded once into a request body:
 *  - OTLP protobuf (ExportTraceServiceRequest; ResourceSpans per service, one ScopeSpans each),
 *  - OTLP JSON (the same message in OTLP's JSON mapping: hex ids, int64 as strings),
 *  - Zipkin v2 JSON (a list of spans; Envoy's tag names, as an Istio sidecar sends them).
 * Every id written is recorded as a slot (offset, raw or hex, which trace or span) so that
 * lg_template_patch can write fresh ids in place before each send; so is every span start and
 * end time (fixed64 in protobuf, fixed-width decimal in JSON) and access-log start_time, moved
 * by the time since the template was built, so that each send's spans start now, as a live
 * mesh's do.
 *
 * Scenarios:
 *  - bookinfo: Istio's Bookinfo. user -> productpage; productpage -> details; productpage ->
 *    reviews; reviews -> ratings (reviews v2/v3, two traces in three). 5 or 7 spans: a CLIENT
 *    span in the caller and a SERVER span in the callee per call. ~2% of calls fail (503, UF).
 *  - wide: a random mesh of N services (a DAG: each service may call up to 4 higher-numbered
 *    ones), entered through its first 20 services, 20 routes each; each SERVER span makes 0-2
 *    calls, depth <= 4, at most 16 spans per trace. ~1.5% of calls fail.
 * Each span carries 13-15 attributes, as a sidecar reports them: method, URL, status, server
 * address and port, client (peer) address, user agent, upstream cluster, request id, response
 * flags, protocol, mesh id, response size, peer service (CLIENT spans).
 */
#include "loadgen.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TRACE_SPANS 16u
#define WIDE_FANOUT 4u
#define WIDE_ENTRY 20u /* the wide mesh's edge services (where user traffic enters) */
#define WIDE_ROUTES 20u /* endpoints per wide-mesh service (x 3 methods = 60 span names) */

enum slot_time {
    SLOT_ID,          /* an id, see hex and trace */
    SLOT_TIME_FIXED64, /* a time in ns, 8 bytes little-endian */
    SLOT_TIME_DEC_NS, /* a time in ns, width decimal digits */
    SLOT_TIME_DEC_US, /* a time in µs, width decimal digits */
    SLOT_TIME_ISO_MS, /* a time in ns as "YYYY-MM-DDTHH:MM:SS.mmmZ" (ISO_MS_LEN characters) */
};
#define ISO_MS_LEN 24u

/* t (ns since the epoch) as ISO 8601 UTC with milliseconds into out[ISO_MS_LEN] (no NUL). */
static void iso_ms(uint64_t t, char *out)
{
    time_t sec = (time_t)(t / 1000000000ULL);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char tmp[96]; /* room for any int the format could print */
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(t / 1000000ULL % 1000));
    memcpy(out, tmp, ISO_MS_LEN);
}

struct lg_slot {
    uint32_t off;
    uint8_t hex;   /* ids: 0 raw bytes, 1 lowercase hex */
    uint8_t trace; /* ids: 1 trace id (16 bytes), 0 span id (8 bytes) */
    uint8_t time;  /* enum slot_time */
    uint8_t width; /* decimal times: digits */
    uint32_t idx;  /* ids: trace index or span index in the template */
    uint64_t base; /* times: the value in the template */
};

/* ----- a growable buffer with id slots -------------------------------------------------------- */

struct enc {
    uint8_t *p;
    size_t len, cap;
    struct lg_slot *slots;
    size_t n_slots, cap_slots;
    bool oom;
};

static bool reserve(struct enc *e, size_t n)
{
    if (e->oom) return false;
    if (e->len + n <= e->cap) return true;
    size_t cap = e->cap ? e->cap : 1024;
    while (cap < e->len + n) cap *= 2;
    uint8_t *p = realloc(e->p, cap);
    if (!p) {
        e->oom = true;
        return false;
    }
    e->p = p;
    e->cap = cap;
    return true;
}

static void put(struct enc *e, const void *d, size_t n)
{
    if (!reserve(e, n)) return;
    memcpy(e->p + e->len, d, n);
    e->len += n;
}

static void puts_(struct enc *e, const char *s)
{
    put(e, s, strlen(s));
}

static void putf(struct enc *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct enc *e, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(e, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void add_slot(struct enc *e, struct lg_slot slot)
{
    if (e->oom) return;
    if (e->n_slots == e->cap_slots) {
        size_t cap = e->cap_slots ? e->cap_slots * 2 : 64;
        struct lg_slot *s = realloc(e->slots, cap * sizeof *s);
        if (!s) {
            e->oom = true;
            return;
        }
        e->slots = s;
        e->cap_slots = cap;
    }
    e->slots[e->n_slots++] = slot;
}

/* A placeholder id of n bytes (raw zeros, or 2n hex zeros), recorded as a slot. */
static void put_id(struct enc *e, bool hex, bool trace, uint32_t idx)
{
    size_t n = trace ? 16 : 8;
    if (hex) n *= 2;
    if (!reserve(e, n)) return;
    memset(e->p + e->len, hex ? '0' : 0, n);
    add_slot(e, (struct lg_slot){.off = (uint32_t)e->len, .hex = hex, .trace = trace, .idx = idx});
    e->len += n;
}

/* A time v (ns, or µs with SLOT_TIME_DEC_US) in decimal, recorded as a slot. */
static void put_time_dec(struct enc *e, uint64_t v, enum slot_time kind)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    uint32_t off = (uint32_t)e->len;
    put(e, tmp, (size_t)n);
    add_slot(e, (struct lg_slot){.off = off, .time = (uint8_t)kind, .width = (uint8_t)n, .base = v});
}

static void enc_free(struct enc *e)
{
    free(e->p);
    free(e->slots);
    memset(e, 0, sizeof *e);
}

/* ----- protobuf on top of enc ------------------------------------------------------------------ */

static void pb_varint(struct enc *e, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    put(e, b, n);
}

static void pb_tag(struct enc *e, unsigned field, unsigned wire)
{
    pb_varint(e, (uint64_t)field << 3 | wire);
}

static void pb_string(struct enc *e, unsigned field, const char *s)
{
    size_t n = strlen(s);
    pb_tag(e, field, 2);
    pb_varint(e, n);
    put(e, s, n);
}

/* A fixed64 time in ns, recorded as a slot. */
static void pb_time(struct enc *e, unsigned field, uint64_t v)
{
    pb_tag(e, field, 1);
    add_slot(e, (struct lg_slot){.off = (uint32_t)e->len, .time = SLOT_TIME_FIXED64, .base = v});
    put(e, &v, 8); /* little-endian host */
}

static void pb_id(struct enc *e, unsigned field, bool trace, uint32_t idx)
{
    pb_tag(e, field, 2);
    pb_varint(e, trace ? 16 : 8);
    put_id(e, false, trace, idx);
}

/* Appends sub as a length-delimited field, moving its slots (rebased) into e; resets sub. */
static void pb_message(struct enc *e, unsigned field, struct enc *sub)
{
    pb_tag(e, field, 2);
    pb_varint(e, sub->len);
    size_t base = e->len;
    put(e, sub->p, sub->len);
    for (size_t i = 0; i < sub->n_slots; i++) {
        struct lg_slot s = sub->slots[i];
        s.off += (uint32_t)base;
        add_slot(e, s);
    }
    if (sub->oom) e->oom = true;
    sub->len = 0;
    sub->n_slots = 0;
}

/* KeyValue{key=1, value=2 AnyValue{string_value=1 | int_value=3}} */
static void pb_kv(struct enc *e, unsigned field, const char *k, const char *sv, int64_t iv)
{
    struct enc kv = {0}, av = {0};
    if (sv) pb_string(&av, 1, sv);
    else {
        pb_tag(&av, 3, 0);
        pb_varint(&av, (uint64_t)iv);
    }
    pb_string(&kv, 1, k);
    pb_message(&kv, 2, &av);
    pb_message(e, field, &kv);
    enc_free(&kv);
    enc_free(&av);
}

/* ----- the model ------------------------------------------------------------------------------ */

struct svc {
    char name[32], ns[32], pod[64], ip[24];
    uint16_t down[WIDE_FANOUT];
    unsigned n_down;
};

struct gspan {
    uint32_t trace;
    int32_t parent; /* span index, -1 for a root */
    uint16_t svc, peer;
    uint8_t kind;   /* OTLP: 2 SERVER, 3 CLIENT */
    int status;
    const char *method;
    char route[40];
    uint64_t start_ns, end_ns;
    unsigned agent, body_size;
    char client_ip[24];
};

struct model {
    struct svc *svcs;
    unsigned n_svcs;
    struct gspan *spans;
    unsigned n, cap;
    unsigned traces;
    unsigned trace_first; /* first span of the trace being built */
    unsigned fail_permille;
    uint64_t rng;
    uint64_t now_ns;
};

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static uint64_t rnd(struct model *m)
{
    return m->rng = splitmix(m->rng);
}

static const char *const methods[] = {"GET", "GET", "GET", "GET", "POST", "PUT"};
static const char *const agents[] = {
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "python-requests/2.31.0", "grpc-go/1.58.3", "okhttp/4.12.0", "curl/8.4.0"};

static int make_services(struct model *m, enum lg_scenario sc, unsigned n)
{
    static const char *const bookinfo[] = {"productpage", "details", "reviews", "ratings"};
    m->n_svcs = sc == LG_BOOKINFO ? 4 : n;
    m->svcs = calloc(m->n_svcs, sizeof *m->svcs);
    if (!m->svcs) return -ENOMEM;
    for (unsigned i = 0; i < m->n_svcs; i++) {
        struct svc *s = &m->svcs[i];
        if (sc == LG_BOOKINFO) {
            snprintf(s->name, sizeof s->name, "%s", bookinfo[i]);
            snprintf(s->ns, sizeof s->ns, "bookinfo");
        } else {
            snprintf(s->name, sizeof s->name, "svc-%03u", i);
            snprintf(s->ns, sizeof s->ns, "team-%u", i % 10);
            for (unsigned k = 0; k < WIDE_FANOUT && i + 1 < n; k++) {
                unsigned range = n - i - 1 < 40 ? n - i - 1 : 40;
                s->down[s->n_down++] = (uint16_t)(i + 1 + splitmix(i * 16 + k) % range);
            }
        }
        snprintf(s->pod, sizeof s->pod, "%.31s-v1-%06x-x2k9q", s->name,
                 (unsigned)(splitmix(i) & 0xffffff));
        snprintf(s->ip, sizeof s->ip, "10.%u.%u.%u", 16 + i / 250, i % 250, 10 + i % 200);
    }
    return 0;
}

static int add_span(struct model *m, unsigned svc, unsigned peer, int kind, int parent,
                    const char *method, const char *route, int status, uint64_t start,
                    uint64_t dur)
{
    if (m->n == m->cap) {
        unsigned cap = m->cap ? m->cap * 2 : 256;
        struct gspan *p = realloc(m->spans, cap * sizeof *p);
        if (!p) return -ENOMEM;
        m->spans = p;
        m->cap = cap;
    }
    struct gspan *s = &m->spans[m->n];
    memset(s, 0, sizeof *s);
    s->trace = m->traces;
    s->parent = parent;
    s->svc = (uint16_t)svc;
    s->peer = (uint16_t)peer;
    s->kind = (uint8_t)kind;
    s->status = status;
    s->method = method;
    snprintf(s->route, sizeof s->route, "%s", route);
    s->start_ns = start;
    s->end_ns = start + dur;
    s->agent = (unsigned)(rnd(m) % 5);
    s->body_size = 200 + (unsigned)(rnd(m) % 8000);
    const struct svc *from = kind == 3 ? &m->svcs[svc] : parent >= 0 ? &m->svcs[m->spans[parent].svc]
                                                                     : NULL;
    if (from) snprintf(s->client_ip, sizeof s->client_ip, "%s", from->ip);
    else snprintf(s->client_ip, sizeof s->client_ip, "172.16.%u.%u", (unsigned)(rnd(m) % 250),
                  (unsigned)(rnd(m) % 250) + 1);
    return (int)m->n++;
}

/* One call: a CLIENT span in caller (under parent; none when caller < 0, a root SERVER span)
 * and the callee's SERVER span under it. Returns the SERVER span's index or -ENOMEM. */
static int add_call(struct model *m, int caller, unsigned callee, const char *route, int parent,
                    uint64_t start, uint64_t dur)
{
    const char *method = methods[rnd(m) % 6];
    int status = rnd(m) % 1000 < m->fail_permille ? 503 : 200;
    int client = parent;
    if (caller >= 0) {
        client = add_span(m, (unsigned)caller, callee, 3, parent, method, route, status, start, dur);
        if (client < 0) return client;
        start += 150000; /* the sidecar's hop: 150 us each way */
        dur -= 300000;
    }
    return add_span(m, callee, callee, 2, client, method, route, status, start, dur);
}

static int bookinfo_trace(struct model *m)
{
    uint64_t t = m->now_ns;
    int root = add_call(m, -1, 0, "/productpage", -1, t, 20000000 + rnd(m) % 30000000);
    if (root < 0) return root;
    if (add_call(m, 0, 1, "/details/0", root, t + 500000, 2000000 + rnd(m) % 3000000) < 0)
        return -ENOMEM;
    int rev = add_call(m, 0, 2, "/reviews/0", root, t + 6000000, 8000000 + rnd(m) % 10000000);
    if (rev < 0) return rev;
    if (rnd(m) % 3 && add_call(m, 2, 3, "/ratings/0", rev, t + 7000000, 1000000 + rnd(m) % 4000000) < 0)
        return -ENOMEM;
    return 0;
}

static int wide_calls(struct model *m, unsigned svc, int server, uint64_t start, uint64_t dur,
                      unsigned depth)
{
    const struct svc *s = &m->svcs[svc];
    if (!s->n_down || depth >= 4) return 0;
    unsigned calls = (unsigned)(rnd(m) % 3);
    for (unsigned c = 0; c < calls && m->n - m->trace_first + 2 <= MAX_TRACE_SPANS; c++) {
        unsigned callee = s->down[rnd(m) % s->n_down];
        char route[40];
        snprintf(route, sizeof route, "/api/v1/op%u", (unsigned)(rnd(m) % WIDE_ROUTES));
        uint64_t d = dur / 3 + 400000;
        int srv = add_call(m, (int)svc, callee, route, server, start + 200000 + c * d / 2, d);
        if (srv < 0) return srv;
        int rc = wide_calls(m, callee, srv, start + 400000, d - 400000, depth + 1);
        if (rc) return rc;
    }
    return 0;
}

static int wide_trace(struct model *m)
{
    unsigned entry = (unsigned)(rnd(m) % (m->n_svcs < WIDE_ENTRY ? m->n_svcs : WIDE_ENTRY));
    uint64_t dur = 5000000 + rnd(m) % 80000000;
    char route[40];
    snprintf(route, sizeof route, "/api/v1/op%u", (unsigned)(rnd(m) % WIDE_ROUTES));
    int root = add_call(m, -1, entry, route, -1, m->now_ns, dur);
    if (root < 0) return root;
    return wide_calls(m, entry, root, m->now_ns, dur, 0);
}

/* ----- attributes ----------------------------------------------------------------------------- */

struct kv {
    const char *key;
    const char *s; /* NULL: integer i */
    int64_t i;
    uint32_t rid; /* non-zero: the value is span rid - 1's request id, patched per send */
};

/* A span's x-request-id, unique per send as a mesh's are: its trace id and span id in hex
 * ("<32 hex>-<16 hex>"), both slots patched with the ids of the send (spans and access-log
 * lines carry the same one, so the two join as Envoy's do). */
#define REQUEST_ID_LEN 49u
static void put_request_id(struct enc *e, const struct model *m, uint32_t span)
{
    put_id(e, true, true, m->spans[span].trace);
    put(e, "-", 1);
    put_id(e, true, false, span);
}

/* The span's attributes under OTel semantic conventions (OTLP) or Envoy's Zipkin tag names.
 * bufs holds the formatted strings. Returns the count. */
static unsigned span_attrs(const struct model *m, const struct gspan *s, bool zipkin,
                           struct kv *a, char bufs[][160])
{
    const struct svc *peer = &m->svcs[s->peer];
    bool client = s->kind == 3;
    unsigned n = 0;
    snprintf(bufs[0], 160, "http://%s.%s:9080%s", peer->name, peer->ns, s->route);
    snprintf(bufs[1], 160, "%s.%s.svc.cluster.local", peer->name, peer->ns);
    snprintf(bufs[2], 160, "%s|9080||%s.%s.svc.cluster.local", client ? "outbound" : "inbound",
             peer->name, peer->ns);
    snprintf(bufs[3], 160, "%d", s->status);
    snprintf(bufs[4], 160, "%u", s->body_size);
    if (!zipkin) {
        a[n++] = (struct kv){"http.request.method", s->method, 0};
        a[n++] = (struct kv){"url.full", bufs[0], 0};
        a[n++] = (struct kv){"http.response.status_code", NULL, s->status};
        a[n++] = (struct kv){"server.address", bufs[1], 0};
        a[n++] = (struct kv){"server.port", NULL, 9080};
        a[n++] = (struct kv){"client.address", s->client_ip, 0};
        a[n++] = (struct kv){"user_agent.original", agents[s->agent], 0};
        a[n++] = (struct kv){"upstream_cluster", bufs[2], 0};
        a[n++] = (struct kv){"guid:x-request-id", "", 0, (uint32_t)(s - m->spans) + 1};
        a[n++] = (struct kv){"response_flags", s->status >= 500 ? "UF" : "-", 0};
        a[n++] = (struct kv){"network.protocol.version", "1.1", 0};
        a[n++] = (struct kv){"istio.mesh_id", "cluster.local", 0};
        a[n++] = (struct kv){"http.response.body.size", NULL, s->body_size};
        if (client) a[n++] = (struct kv){"peer.service", peer->name, 0};
    } else {
        a[n++] = (struct kv){"http.method", s->method, 0};
        a[n++] = (struct kv){"http.url", bufs[0], 0};
        a[n++] = (struct kv){"http.status_code", bufs[3], 0};
        a[n++] = (struct kv){"http.protocol", "HTTP/1.1", 0};
        a[n++] = (struct kv){"peer.address", s->client_ip, 0};
        a[n++] = (struct kv){"user_agent", agents[s->agent], 0};
        a[n++] = (struct kv){"upstream_cluster", bufs[2], 0};
        a[n++] = (struct kv){"upstream_cluster.name", bufs[2], 0};
        a[n++] = (struct kv){"guid:x-request-id", "", 0, (uint32_t)(s - m->spans) + 1};
        a[n++] = (struct kv){"response_flags", s->status >= 500 ? "UF" : "-", 0};
        a[n++] = (struct kv){"response_size", bufs[4], 0};
        a[n++] = (struct kv){"component", "proxy", 0};
        a[n++] = (struct kv){"istio.mesh_id", "cluster.local", 0};
        a[n++] = (struct kv){"istio.canonical_service", m->svcs[s->svc].name, 0};
        if (s->status >= 500) a[n++] = (struct kv){"error", "true", 0};
    }
    return n;
}

static void json_str(struct enc *e, const char *s)
{
    put(e, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') put(e, "\\", 1);
        put(e, s, 1);
    }
    put(e, "\"", 1);
}

static void span_name(const struct model *m, const struct gspan *s, bool zipkin, char *out,
                      size_t cap)
{
    const struct svc *peer = &m->svcs[s->peer];
    if (zipkin) /* Envoy: the authority and path */
        snprintf(out, cap, "%s.%s.svc.cluster.local:9080%s", peer->name, peer->ns, s->route);
    else /* OTel HTTP semconv: method and route */
        snprintf(out, cap, "%s %s", s->method, s->route);
}

/* ----- encoders ------------------------------------------------------------------------------- */

static void encode_otlp_proto(struct enc *out, const struct model *m)
{
    struct enc rs = {0}, ss = {0}, sp = {0}, tmp = {0};
    for (unsigned v = 0; v < m->n_svcs; v++) {
        bool any = false;
        for (unsigned i = 0; i < m->n && !any; i++) any = m->spans[i].svc == v;
        if (!any) continue;
        const struct svc *svc = &m->svcs[v];
        pb_string(&tmp, 1, "meshscope-loadgen");
        pb_string(&tmp, 2, "0.2.0");
        pb_message(&ss, 1, &tmp); /* ScopeSpans.scope */
        for (unsigned i = 0; i < m->n; i++) {
            const struct gspan *s = &m->spans[i];
            if (s->svc != v) continue;
            /* trace_id=1, span_id=2, parent_span_id=4, name=5, kind=6, start=7, end=8,
             * attributes=9, status=15 */
            pb_id(&sp, 1, true, s->trace);
            pb_id(&sp, 2, false, i);
            if (s->parent >= 0) pb_id(&sp, 4, false, (uint32_t)s->parent);
            char name[160];
            span_name(m, s, false, name, sizeof name);
            pb_string(&sp, 5, name);
            pb_tag(&sp, 6, 0);
            pb_varint(&sp, s->kind);
            pb_time(&sp, 7, s->start_ns);
            pb_time(&sp, 8, s->end_ns);
            struct kv a[16];
            char bufs[5][160];
            unsigned n = span_attrs(m, s, false, a, bufs);
            for (unsigned k = 0; k < n; k++) {
                if (!a[k].rid) {
                    pb_kv(&sp, 9, a[k].key, a[k].s, a[k].i);
                    continue;
                }
                struct enc av = {0}, kv = {0}; /* AnyValue{string_value=1}: the patched id */
                pb_tag(&av, 1, 2);
                pb_varint(&av, REQUEST_ID_LEN);
                put_request_id(&av, m, a[k].rid - 1);
                pb_string(&kv, 1, a[k].key);
                pb_message(&kv, 2, &av);
                pb_message(&sp, 9, &kv);
                enc_free(&kv);
                enc_free(&av);
            }
            if (s->status >= 500) {
                pb_tag(&tmp, 3, 0);
                pb_varint(&tmp, 2); /* STATUS_CODE_ERROR */
                pb_message(&sp, 15, &tmp);
            }
            pb_message(&ss, 2, &sp);
        }
        /* ResourceSpans{resource=1{attributes=1}, scope_spans=2} */
        pb_kv(&tmp, 1, "service.name", svc->name, 0);
        pb_kv(&tmp, 1, "service.version", "v1", 0);
        pb_kv(&tmp, 1, "k8s.namespace.name", svc->ns, 0);
        pb_kv(&tmp, 1, "k8s.pod.name", svc->pod, 0);
        pb_kv(&tmp, 1, "telemetry.sdk.name", "envoy", 0);
        pb_message(&rs, 1, &tmp);
        pb_message(&rs, 2, &ss);
        pb_message(out, 1, &rs); /* ExportTraceServiceRequest.resource_spans */
    }
    if (rs.oom || ss.oom || sp.oom || tmp.oom) out->oom = true;
    enc_free(&rs);
    enc_free(&ss);
    enc_free(&sp);
    enc_free(&tmp);
}

static void json_kvs(struct enc *e, const struct model *m, const struct kv *a, unsigned n)
{
    puts_(e, "[");
    for (unsigned k = 0; k < n; k++) {
        if (k) puts_(e, ",");
        puts_(e, "{\"key\":");
        json_str(e, a[k].key);
        if (a[k].rid) {
            puts_(e, ",\"value\":{\"stringValue\":\"");
            put_request_id(e, m, a[k].rid - 1);
            puts_(e, "\"}}");
        } else if (a[k].s) {
            puts_(e, ",\"value\":{\"stringValue\":");
            json_str(e, a[k].s);
            puts_(e, "}}");
        } else {
            putf(e, ",\"value\":{\"intValue\":\"%" PRId64 "\"}}", a[k].i);
        }
    }
    puts_(e, "]");
}

static void encode_otlp_json(struct enc *e, const struct model *m)
{
    puts_(e, "{\"resourceSpans\":[");
    bool first_rs = true;
    for (unsigned v = 0; v < m->n_svcs; v++) {
        bool any = false;
        for (unsigned i = 0; i < m->n && !any; i++) any = m->spans[i].svc == v;
        if (!any) continue;
        const struct svc *svc = &m->svcs[v];
        if (!first_rs) puts_(e, ",");
        first_rs = false;
        struct kv res[] = {{"service.name", svc->name, 0},
                           {"service.version", "v1", 0},
                           {"k8s.namespace.name", svc->ns, 0},
                           {"k8s.pod.name", svc->pod, 0},
                           {"telemetry.sdk.name", "envoy", 0}};
        puts_(e, "{\"resource\":{\"attributes\":");
        json_kvs(e, m, res, 5);
        puts_(e, "},\"scopeSpans\":[{\"scope\":{\"name\":\"meshscope-loadgen\",\"version\":"
                 "\"0.2.0\"},\"spans\":[");
        bool first = true;
        for (unsigned i = 0; i < m->n; i++) {
            const struct gspan *s = &m->spans[i];
            if (s->svc != v) continue;
            if (!first) puts_(e, ",");
            first = false;
            puts_(e, "{\"traceId\":\"");
            put_id(e, true, true, s->trace);
            puts_(e, "\",\"spanId\":\"");
            put_id(e, true, false, i);
            if (s->parent >= 0) {
                puts_(e, "\",\"parentSpanId\":\"");
                put_id(e, true, false, (uint32_t)s->parent);
            }
            char name[160];
            span_name(m, s, false, name, sizeof name);
            puts_(e, "\",\"name\":");
            json_str(e, name);
            putf(e, ",\"kind\":%u,\"startTimeUnixNano\":\"", s->kind);
            put_time_dec(e, s->start_ns, SLOT_TIME_DEC_NS);
            puts_(e, "\",\"endTimeUnixNano\":\"");
            put_time_dec(e, s->end_ns, SLOT_TIME_DEC_NS);
            puts_(e, "\",\"attributes\":");
            struct kv a[16];
            char bufs[5][160];
            json_kvs(e, m, a, span_attrs(m, s, false, a, bufs));
            if (s->status >= 500) puts_(e, ",\"status\":{\"code\":2}");
            puts_(e, "}");
        }
        puts_(e, "]}]}");
    }
    puts_(e, "]}");
}

static void encode_zipkin_json(struct enc *e, const struct model *m)
{
    puts_(e, "[");
    for (unsigned i = 0; i < m->n; i++) {
        const struct gspan *s = &m->spans[i];
        const struct svc *svc = &m->svcs[s->svc];
        if (i) puts_(e, ",");
        puts_(e, "{\"traceId\":\"");
        put_id(e, true, true, s->trace);
        puts_(e, "\",\"id\":\"");
        put_id(e, true, false, i);
        if (s->parent >= 0) {
            puts_(e, "\",\"parentId\":\"");
            put_id(e, true, false, (uint32_t)s->parent);
        }
        char name[160];
        span_name(m, s, true, name, sizeof name);
        putf(e, "\",\"kind\":\"%s\",\"name\":", s->kind == 3 ? "CLIENT" : "SERVER");
        json_str(e, name);
        puts_(e, ",\"timestamp\":");
        put_time_dec(e, s->start_ns / 1000, SLOT_TIME_DEC_US);
        putf(e, ",\"duration\":%" PRIu64, (s->end_ns - s->start_ns) / 1000);
        puts_(e, ",\"localEndpoint\":{\"serviceName\":");
        json_str(e, svc->name);
        putf(e, ",\"ipv4\":\"%s\"}", svc->ip);
        if (s->kind == 3) {
            puts_(e, ",\"remoteEndpoint\":{\"serviceName\":");
            json_str(e, m->svcs[s->peer].name);
            putf(e, ",\"ipv4\":\"%s\",\"port\":9080}", m->svcs[s->peer].ip);
        }
        puts_(e, ",\"tags\":{");
        struct kv a[16];
        char bufs[5][160];
        unsigned n = span_attrs(m, s, true, a, bufs);
        for (unsigned k = 0; k < n; k++) {
            if (k) puts_(e, ",");
            json_str(e, a[k].key);
            puts_(e, ":");
            if (a[k].rid) {
                puts_(e, "\"");
                put_request_id(e, m, a[k].rid - 1);
                puts_(e, "\"");
            } else {
                json_str(e, a[k].s);
            }
        }
        puts_(e, "}}");
    }
    puts_(e, "]");
}

/* Envoy/Istio JSON access logs (--access-logs): one NDJSON line per SERVER span, as the callee's
 * sidecar writes it for the inbound request (Istio's default JSON format plus trace_id/span_id,
 * the fields of Envoy's %TRACE_ID% and a span-id header), with the span's status, duration, sizes
 * and request id. trace_id, span_id and request_id (put_request_id) are hex slots, patched with
 * the span's ids. */
static void encode_access_logs(struct enc *e, const struct model *m, unsigned *lines)
{
    for (unsigned i = 0; i < m->n; i++) {
        const struct gspan *s = &m->spans[i];
        if (s->kind != 2) continue;
        const struct svc *svc = &m->svcs[s->svc];
        uint64_t dur_ms = (s->end_ns - s->start_ns) / 1000000ULL;
        char iso[ISO_MS_LEN];
        iso_ms(s->start_ns, iso);
        puts_(e, "{\"start_time\":\"");
        add_slot(e, (struct lg_slot){.off = (uint32_t)e->len, .time = SLOT_TIME_ISO_MS,
                                     .base = s->start_ns});
        put(e, iso, ISO_MS_LEN);
        puts_(e, "\"");
        putf(e, ",\"method\":\"%s\",\"path\":", s->method);
        json_str(e, s->route);
        putf(e, ",\"protocol\":\"HTTP/1.1\",\"response_code\":%d,\"response_flags\":\"%s\"",
             s->status, s->status >= 500 ? "UF" : "-");
        putf(e, ",\"bytes_received\":%u,\"bytes_sent\":%u,\"duration\":%" PRIu64
                ",\"upstream_service_time\":\"%" PRIu64 "\"",
             s->method[0] == 'G' ? 0u : s->body_size / 4, s->body_size, dur_ms,
             dur_ms ? dur_ms - 1 : 0);
        puts_(e, ",\"x_forwarded_for\":");
        json_str(e, s->client_ip);
        puts_(e, ",\"user_agent\":");
        json_str(e, agents[s->agent]);
        puts_(e, ",\"request_id\":\"");
        put_request_id(e, m, i);
        puts_(e, "\"");
        putf(e, ",\"authority\":\"%s:9080\",\"upstream_host\":\"%s:9080\"", svc->name, svc->ip);
        putf(e, ",\"upstream_cluster\":\"inbound|9080||%s.%s.svc.cluster.local\"", svc->name,
             svc->ns);
        putf(e, ",\"downstream_remote_address\":\"%s:%u\"", s->client_ip,
             32768u + s->body_size % 28000u);
        putf(e, ",\"downstream_local_address\":\"%s:9080\"", svc->ip);
        puts_(e, ",\"trace_id\":\"");
        put_id(e, true, true, s->trace);
        puts_(e, "\",\"span_id\":\"");
        put_id(e, true, false, i);
        puts_(e, "\",\"service\":");
        json_str(e, svc->name);
        puts_(e, ",\"destination_workload\":");
        putf(e, "\"%s-v1\",\"destination_namespace\":\"%s\"}\n", svc->name, svc->ns);
        (*lines)++;
    }
}

/* ----- public --------------------------------------------------------------------------------- */

int lg_template_build(struct lg_template *t, enum lg_protocol proto, enum lg_scenario scenario,
                      unsigned services, unsigned min_spans, uint64_t seed)
{
    return lg_template_build_ex(t, proto, scenario, services, min_spans, seed, 0);
}

int lg_template_build_ex(struct lg_template *t, enum lg_protocol proto, enum lg_scenario scenario,
                         unsigned services, unsigned min_spans, uint64_t seed, int access_logs)
{
    memset(t, 0, sizeof *t);
    struct model m = {.rng = splitmix(seed), .fail_permille = scenario == LG_BOOKINFO ? 20 : 15};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m.now_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
    struct enc e = {0};
    int rc = make_services(&m, scenario, services);
    while (rc == 0 && m.n < min_spans) {
        m.trace_first = m.n;
        rc = scenario == LG_BOOKINFO ? bookinfo_trace(&m) : wide_trace(&m);
        m.traces++;
    }
    if (rc == 0) {
        if (proto == LG_OTLP_PROTO) encode_otlp_proto(&e, &m);
        else if (proto == LG_OTLP_JSON) encode_otlp_json(&e, &m);
        else encode_zipkin_json(&e, &m);
        if (e.oom) rc = -ENOMEM;
    }
    struct enc logs = {0};
    if (rc == 0 && access_logs) {
        encode_access_logs(&logs, &m, &t->log_lines);
        if (logs.oom) rc = -ENOMEM;
    }
    if (rc == 0) {
        t->ids = malloc((size_t)m.traces * 16 + (size_t)m.n * 8);
        if (!t->ids) rc = -ENOMEM;
    }
    if (rc == 0) {
        t->body = e.p;
        t->len = e.len;
        t->slots = e.slots;
        t->n_slots = e.n_slots;
        t->spans = m.n;
        t->traces = m.traces;
        for (unsigned i = 0; i < m.n; i++) t->errors += m.spans[i].status >= 500;
        t->built_ns = m.now_ns;
        t->logs = logs.p;
        t->logs_len = logs.len;
        t->log_slots = logs.slots;
        t->n_log_slots = logs.n_slots;
    } else {
        enc_free(&e);
        enc_free(&logs);
    }
    free(m.spans);
    free(m.svcs);
    return rc;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void write_slots(const struct lg_template *t, uint8_t *body, const struct lg_slot *slots,
                        size_t n_slots, uint64_t shift_ns);

void lg_template_patch(struct lg_template *t, uint64_t *rng)
{
    size_t words = ((size_t)t->traces * 16 + (size_t)t->spans * 8) / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t v = xorshift(rng) | 1; /* never all-zero (an invalid id) */
        memcpy(t->ids + i * 8, &v, 8);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
    uint64_t shift = now > t->built_ns ? now - t->built_ns : 0;
    write_slots(t, t->body, t->slots, t->n_slots, shift);
    if (t->logs) write_slots(t, t->logs, t->log_slots, t->n_log_slots, shift);
}

/* Writes t->ids into body at the id slots, and each time slot's value moved by shift_ns. */
static void write_slots(const struct lg_template *t, uint8_t *body, const struct lg_slot *slots,
                        size_t n_slots, uint64_t shift_ns)
{
    static const char hexd[] = "0123456789abcdef";
    const uint8_t *span_ids = t->ids + (size_t)t->traces * 16;
    for (size_t i = 0; i < n_slots; i++) {
        const struct lg_slot *s = &slots[i];
        if (s->time != SLOT_ID) {
            uint64_t v = s->base + (s->time == SLOT_TIME_DEC_US ? shift_ns / 1000 : shift_ns);
            if (s->time == SLOT_TIME_FIXED64) {
                memcpy(body + s->off, &v, 8);
                continue;
            }
            if (s->time == SLOT_TIME_ISO_MS) {
                iso_ms(v, (char *)body + s->off);
                continue;
            }
            for (unsigned k = s->width; k-- > 0; v /= 10) /* same width: ~year 2286 for ns */
                body[s->off + k] = (uint8_t)('0' + v % 10);
            continue;
        }
        const uint8_t *src = s->trace ? t->ids + (size_t)s->idx * 16 : span_ids + (size_t)s->idx * 8;
        size_t n = s->trace ? 16 : 8;
        uint8_t *dst = body + s->off;
        if (!s->hex) {
            memcpy(dst, src, n);
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            dst[2 * k] = (uint8_t)hexd[src[k] >> 4];
            dst[2 * k + 1] = (uint8_t)hexd[src[k] & 15];
        }
    }
}

void lg_template_free(struct lg_template *t)
{
    free(t->body);
    free(t->slots);
    free(t->ids);
    free(t->logs);
    free(t->log_slots);
    memset(t, 0, sizeof *t);
}
