/*
 * jaeger.c: the Jaeger v1 HTTP JSON API (jaeger-query's /api/services, /api/operations,
 * /api/traces, /api/dependencies) over meshscope's store, rendered so that the Jaeger UI and
 * Grafana's Jaeger data source work unchanged.
 *
 * Routing and responses follow cmd/query/app/http_handler.go: every body is the
 * "structuredResponse" {"data":..,"total":N,"limit":0,"offset":0,"errors":null|[..]}; errors
 * are {"code":N,"msg":".."}. Traces are rendered as jaeger-query renders a span stored through
 * Jaeger's OTLP receiver: the OpenTelemetry Collector's OTLP-to-Jaeger translator
 * (pkg/translator/jaeger, traces_to_jaegerproto.go) followed by Jaeger's uimodel converter
 * (model/converter/json/from_domain.go).
 *
 * MAPPING (OTLP span model -> Jaeger uimodel JSON)
 *
 *   trace          {"traceID","spans":[..],"processes":{"p1":..},"warnings":null}; spans sorted by
 *                  start time (ties by span ID, so output is deterministic).
 *   traceID        32 lowercase hex digits, always (Jaeger prints 16 when the high half is zero;
 *                  OTLP clients compare the full 128-bit form, so we keep it).
 *   spanID         16 lowercase hex digits.
 *   flags          W3C trace flags (low byte of OTLP flags; 1 = sampled, as in Jaeger's own
 *                  flags), omitted when 0 as Jaeger's omitempty does.
 *   operationName  span name.
 *   references     parent -> CHILD_OF first; then each link -> FOLLOWS_FROM, or CHILD_OF when the
 *                  link has attribute opentracing.ref_type = "child_of"; a link to the parent
 *                  itself only sets the type of the first reference. Link attributes and trace
 *                  state are dropped (Jaeger has nowhere for them).
 *   startTime      start_unix_nano / 1000 (µs); duration (end - start) / 1000, 0 if end < start.
 *   tags           in the translator's order: otel.scope.name, otel.scope.version (when set);
 *                  the span attributes; span.kind ("server", "client", "producer", "consumer",
 *                  "internal"; absent for UNSPECIFIED); otel.status_code ("OK"/"ERROR", absent
 *                  for UNSET); error = true (bool) for status ERROR; otel.status_description
 *                  (when non-empty); w3c.tracestate (when non-empty); then, from the OTel
 *                  "non-OTLP formats" spec, otel.dropped_attributes_count,
 *                  otel.dropped_events_count, otel.dropped_links_count (int64, when non-zero).
 *   logs           one per event: {"timestamp": µs, "fields": [..]}; fields are "event" = name
 *                  (unless empty or the event has its own "event" attribute), then the event
 *                  attributes, then otel.dropped_attributes_count when non-zero.
 *   processID      "p1", "p2", ... in order of first appearance; processes are deduplicated by
 *                  identical (serviceName, tags).
 *   process        {"serviceName": service.name (or "unknown_service", as the store lists it),
 *                  "tags": resource attributes except service.name, in order}.
 *   warnings       null (trace and span).
 *   accessLogs     (meshscope's extension, GET /api/traces/{id} only; clients ignore unknown
 *                  members) the trace's access-log and OTLP log records, as /api/logs renders
 *                  them, in time order: those with the trace id, and those of the trace's
 *                  services whose request_id is an x-request-id of its spans (see
 *                  trace_logs_find). Absent when there are none.
 *
 *   KeyValue       {"key","type","value"}. The type round-trips what the client sent:
 *                    string -> "string"  JSON string
 *                    bool   -> "bool"    true/false
 *                    int    -> "int64"   JSON number; outside +-(2^53-1) a JSON string of the
 *                                        decimal digits (JavaScript cannot hold it; Jaeger does
 *                                        the same)
 *                    double -> "float64" JSON number in Go's shortest form; NaN/+Inf/-Inf as
 *                                        strings "NaN", "+Inf", "-Inf" (JSON has no such numbers)
 *                    bytes  -> "binary"  standard base64 string
 *                    array, kvlist -> "string", the value's JSON as the translator writes it
 *                                        (Go's json.Marshal of pcommon AsRaw: objects with sorted
 *                                        keys, last duplicate wins; bytes as base64; empty as
 *                                        null), e.g. "[\"a\",1]" or "{\"k\":true}"
 *                    empty  -> "string"  ""
 *
 * Strings are escaped as Go escapes them (json_out.c): whatever bytes a client sent, the body
 * is valid JSON, invalid UTF-8 showing as U+FFFD.
 *
 * Thread-safety: every call renders into its own buffers; the store lends it a connection.
 */
#include "query_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char json_type[] = "application/json";

/* Integers JavaScript can hold exactly; beyond, Jaeger sends the digits as a string. */
#define JS_MAX_SAFE_INTEGER ((INT64_C(1) << 53) - 1)

/* ----- responses -------------------------------------------------------------------------- */

static void response_tail(struct sbuf *b, size_t total)
{
    sb_puts(b, ",\"total\":");
    sb_uint(b, total);
    sb_puts(b, ",\"limit\":0,\"offset\":0,\"errors\":null}");
}

/* Jaeger's handleError body. Always produces a response (falls back to a static body). */
void query_respond_error(struct query_response *resp, int status, const char *msg)
{
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_puts(&b, "{\"data\":null,\"total\":0,\"limit\":0,\"offset\":0,\"errors\":[{\"code\":");
    sb_int(&b, status);
    sb_puts(&b, ",\"msg\":");
    sb_json_cstr(&b, msg);
    sb_puts(&b, "}]}");
    resp->status = status;
    resp->content_type = json_type;
    resp->body = sb_take(&b, &resp->len);
    if (!resp->body) { /* out of memory: the HTTP layer still gets a status, with no body */
        resp->status = 503;
        resp->len = 0;
    }
}

/* Finishes a rendered body: 200 with it, or 500/503 if the buffer failed. Consumes b. */
void query_respond_json(struct query_response *resp, struct sbuf *b)
{
    int err = b->error;
    char *body = sb_take(b, &resp->len);
    if (!body) {
        if (err == -E2BIG) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "response would exceed %zu MiB; narrow the query (limit, time range)",
                     QUERY_MAX_BODY >> 20);
            query_respond_error(resp, 500, msg);
        } else {
            query_respond_error(resp, 503, "out of memory rendering the response");
        }
        return;
    }
    resp->status = 200;
    resp->content_type = json_type;
    resp->body = body;
}

/* A store read failed: 503 for conditions that pass (busy, memory), 500 otherwise. */
static void respond_store_error(struct query_response *resp, const char *what, int rc)
{
    char msg[QUERY_ERRMSG];
    int status = query_store_error("query-store-error", what, rc, msg);
    query_respond_error(resp, status, msg);
}

/* ----- rendering context ------------------------------------------------------------------ */

struct render {
    struct sbuf nested; /* an array/kvlist value's JSON before it is quoted; reused */
    struct sbuf proc;   /* the process JSON of the span at hand; reused */
    /* Distinct processes of the trace being rendered (JSON text), with an open-addressing
     * index by hash so a trace of many resource copies dedupes in linear time. */
    struct proc {
        char *json;
        size_t len;
        uint64_t hash;
    } * procs;
    size_t n_procs, cap_procs;
    uint32_t *slots;                 /* index + 1 into procs, 0 = free */
    size_t n_slots;                  /* power of two, kept above 2 * n_procs */
    const struct resource *last_res; /* consecutive spans mostly share one resource */
    long last_pid;                   /* -1 = no cached resource */
};

static void render_init(struct render *r)
{
    memset(r, 0, sizeof *r);
    sb_init(&r->nested, QUERY_MAX_BODY);
    sb_init(&r->proc, QUERY_MAX_BODY);
    r->last_pid = -1;
}

static void render_reset(struct render *r)
{
    for (size_t i = 0; i < r->n_procs; i++)
        free(r->procs[i].json);
    r->n_procs = 0;
    if (r->slots) memset(r->slots, 0, r->n_slots * sizeof *r->slots);
    r->last_pid = -1;
    r->last_res = NULL;
}

static void render_free(struct render *r)
{
    render_reset(r);
    free(r->procs);
    free(r->slots);
    sb_free(&r->nested);
    sb_free(&r->proc);
}

/* ----- key/values ------------------------------------------------------------------------- */

static void kv_head(struct sbuf *b, bool *first, const char *key, size_t klen, const char *type)
{
    if (!*first) sb_putc(b, ',');
    *first = false;
    sb_puts(b, "{\"key\":");
    sb_json_str(b, key, klen);
    sb_puts(b, ",\"type\":\"");
    sb_puts(b, type);
    sb_puts(b, "\",\"value\":");
}

static void kv_str(struct sbuf *b, bool *first, const char *key, const char *val, size_t vlen)
{
    kv_head(b, first, key, strlen(key), "string");
    sb_json_str(b, val, vlen);
    sb_putc(b, '}');
}

static void kv_int(struct sbuf *b, bool *first, const char *key, int64_t v)
{
    kv_head(b, first, key, strlen(key), "int64");
    sb_int(b, v);
    sb_putc(b, '}');
}

/* One attribute as a Jaeger KeyValue (see MAPPING above). */
static void kv_value(struct render *r, struct sbuf *b, bool *first, const char *key, size_t klen,
                     const struct value *v)
{
    switch (v->type) {
    case VALUE_STRING:
        kv_head(b, first, key, klen, "string");
        sb_json_str(b, v->u.str.ptr ? v->u.str.ptr : "", v->u.str.len);
        break;
    case VALUE_BOOL:
        kv_head(b, first, key, klen, "bool");
        sb_puts(b, v->u.b ? "true" : "false");
        break;
    case VALUE_INT:
        kv_head(b, first, key, klen, "int64");
        if (v->u.i > JS_MAX_SAFE_INTEGER || v->u.i < -JS_MAX_SAFE_INTEGER) {
            char digits[24];
            int n = snprintf(digits, sizeof digits, "%lld", (long long)v->u.i);
            sb_json_str(b, digits, (size_t)n);
        } else {
            sb_int(b, v->u.i);
        }
        break;
    case VALUE_DOUBLE:
        kv_head(b, first, key, klen, "float64");
        sb_double(b, v->u.d);
        break;
    case VALUE_BYTES:
        kv_head(b, first, key, klen, "binary");
        sb_json_base64(b, (const uint8_t *)v->u.str.ptr, v->u.str.ptr ? v->u.str.len : 0);
        break;
    case VALUE_ARRAY:
    case VALUE_KVLIST:
        kv_head(b, first, key, klen, "string");
        r->nested.len = 0;
        sb_json_value(&r->nested, v, true);
        if (r->nested.error) {
            if (!b->error) b->error = r->nested.error;
            r->nested.error = 0;
            return;
        }
        sb_json_str(b, r->nested.p ? r->nested.p : "", r->nested.len);
        break;
    case VALUE_EMPTY:
    default:
        kv_head(b, first, key, klen, "string");
        sb_puts(b, "\"\"");
        break;
    }
    sb_putc(b, '}');
}

/* Appends attrs as KeyValues; skip (may be NULL) names a key left out. */
static void kv_attrs(struct render *r, struct sbuf *b, bool *first, const struct attrs *as,
                     const char *skip)
{
    size_t skip_len = skip ? strlen(skip) : 0;
    for (uint32_t i = 0; i < as->n; i++) {
        const struct attr *a = &as->items[i];
        const char *k = a->key.ptr ? a->key.ptr : "";
        if (skip && a->key.len == skip_len && memcmp(k, skip, skip_len) == 0) continue;
        kv_value(r, b, first, k, a->key.len, &a->value);
    }
}

static const struct value *attrs_get(const struct attrs *as, const char *key)
{
    size_t len = strlen(key);
    for (uint32_t i = 0; i < as->n; i++)
        if (as->items[i].key.len == len && memcmp(as->items[i].key.ptr, key, len) == 0)
            return &as->items[i].value;
    return NULL;
}

/* ----- processes -------------------------------------------------------------------------- */

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static bool slots_grow(struct render *r)
{
    size_t n = r->n_slots ? r->n_slots * 2 : 16;
    uint32_t *s = calloc(n, sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < r->n_procs; i++) {
        size_t j = r->procs[i].hash & (n - 1);
        while (s[j])
            j = (j + 1) & (n - 1);
        s[j] = (uint32_t)i + 1;
    }
    free(r->slots);
    r->slots = s;
    r->n_slots = n;
    return true;
}

/* The process index of a span's (serviceName, tags), added if new. -1 with b->error set on
 * failure. */
static long process_of(struct render *r, struct sbuf *b, const struct span *s)
{
    if (r->last_pid >= 0 && s->resource == r->last_res) return r->last_pid;
    struct sbuf *pb = &r->proc;
    pb->len = 0;
    sb_puts(pb, "{\"serviceName\":");
    sb_json_cstr(pb, span_service_name(s));
    sb_puts(pb, ",\"tags\":[");
    bool first = true;
    if (s->resource) kv_attrs(r, pb, &first, &s->resource->attrs, "service.name");
    sb_puts(pb, "]}");
    if (pb->error) {
        if (!b->error) b->error = pb->error;
        pb->error = 0;
        return -1;
    }
    uint64_t h = fnv1a(pb->p, pb->len);
    long found = -1;
    if (r->n_slots) {
        for (size_t j = h & (r->n_slots - 1); r->slots[j]; j = (j + 1) & (r->n_slots - 1)) {
            const struct proc *p = &r->procs[r->slots[j] - 1];
            if (p->hash == h && p->len == pb->len && memcmp(p->json, pb->p, pb->len) == 0) {
                found = (long)r->slots[j] - 1;
                break;
            }
        }
    }
    if (found < 0) {
        if ((r->n_procs + 1) * 2 >= r->n_slots && !slots_grow(r)) goto oom;
        if (r->n_procs == r->cap_procs) {
            size_t cap = r->cap_procs ? r->cap_procs * 2 : 8;
            struct proc *np = realloc(r->procs, cap * sizeof *np);
            if (!np) goto oom;
            r->procs = np;
            r->cap_procs = cap;
        }
        char *json = malloc(pb->len);
        if (!json) goto oom;
        memcpy(json, pb->p, pb->len);
        r->procs[r->n_procs] = (struct proc){json, pb->len, h};
        size_t j = h & (r->n_slots - 1);
        while (r->slots[j])
            j = (j + 1) & (r->n_slots - 1);
        r->slots[j] = (uint32_t)r->n_procs + 1;
        found = (long)r->n_procs++;
    }
    r->last_res = s->resource;
    r->last_pid = found;
    return found;
oom:
    if (!b->error) b->error = -ENOMEM;
    return -1;
}

/* ----- spans and traces ------------------------------------------------------------------- */

enum ref_type { REF_CHILD_OF, REF_FOLLOWS_FROM };

static enum ref_type link_ref_type(const struct span_link *l)
{
    const struct value *v = attrs_get(&l->attrs, "opentracing.ref_type");
    if (v && v->type == VALUE_STRING && v->u.str.len == 8 &&
        memcmp(v->u.str.ptr, "child_of", 8) == 0)
        return REF_CHILD_OF;
    return REF_FOLLOWS_FROM;
}

static void reference(struct sbuf *b, bool *first, enum ref_type t, const uint8_t trace_id[16],
                      const uint8_t span_id[8])
{
    if (!*first) sb_putc(b, ',');
    *first = false;
    sb_puts(b, t == REF_CHILD_OF ? "{\"refType\":\"CHILD_OF\",\"traceID\":"
                                 : "{\"refType\":\"FOLLOWS_FROM\",\"traceID\":");
    sb_json_hex(b, trace_id, 16);
    sb_puts(b, ",\"spanID\":");
    sb_json_hex(b, span_id, 8);
    sb_putc(b, '}');
}

static bool link_is_parent(const struct span *s, const struct span_link *l)
{
    return s->has_parent && memcmp(l->trace_id, s->trace_id, 16) == 0 &&
           memcmp(l->span_id, s->parent_span_id, 8) == 0;
}

static void render_references(struct sbuf *b, const struct span *s)
{
    bool first = true;
    sb_puts(b, "\"references\":[");
    if (s->has_parent) {
        /* A link to the parent itself only decides the parent reference's type. */
        enum ref_type t = REF_CHILD_OF;
        for (uint32_t i = 0; i < s->n_links; i++)
            if (link_is_parent(s, &s->links[i])) t = link_ref_type(&s->links[i]);
        reference(b, &first, t, s->trace_id, s->parent_span_id);
    }
    for (uint32_t i = 0; i < s->n_links; i++) {
        const struct span_link *l = &s->links[i];
        if (link_is_parent(s, l)) continue;
        reference(b, &first, link_ref_type(l), l->trace_id, l->span_id);
    }
    sb_putc(b, ']');
}

static void render_tags(struct render *r, struct sbuf *b, const struct span *s)
{
    bool first = true;
    sb_puts(b, "\"tags\":[");
    if (s->scope && s->scope->name.ptr && s->scope->name.len)
        kv_str(b, &first, "otel.scope.name", s->scope->name.ptr, s->scope->name.len);
    if (s->scope && s->scope->version.ptr && s->scope->version.len)
        kv_str(b, &first, "otel.scope.version", s->scope->version.ptr, s->scope->version.len);
    kv_attrs(r, b, &first, &s->attrs, NULL);
    const char *kind = span_kind_name(s->kind);
    if (kind[0]) kv_str(b, &first, "span.kind", kind, strlen(kind));
    if (s->status_code == STATUS_OK) kv_str(b, &first, "otel.status_code", "OK", 2);
    if (s->status_code == STATUS_ERROR) {
        kv_str(b, &first, "otel.status_code", "ERROR", 5);
        kv_head(b, &first, "error", 5, "bool");
        sb_puts(b, "true}");
    }
    if (s->status_message.ptr && s->status_message.len)
        kv_str(b, &first, "otel.status_description", s->status_message.ptr, s->status_message.len);
    if (s->trace_state.ptr && s->trace_state.len)
        kv_str(b, &first, "w3c.tracestate", s->trace_state.ptr, s->trace_state.len);
    if (s->attrs.dropped) kv_int(b, &first, "otel.dropped_attributes_count", s->attrs.dropped);
    if (s->dropped_events) kv_int(b, &first, "otel.dropped_events_count", s->dropped_events);
    if (s->dropped_links) kv_int(b, &first, "otel.dropped_links_count", s->dropped_links);
    sb_putc(b, ']');
}

static void render_logs(struct render *r, struct sbuf *b, const struct span *s)
{
    sb_puts(b, "\"logs\":[");
    for (uint32_t i = 0; i < s->n_events; i++) {
        const struct span_event *e = &s->events[i];
        if (i) sb_putc(b, ',');
        sb_puts(b, "{\"timestamp\":");
        sb_uint(b, e->time_unix_nano / 1000);
        sb_puts(b, ",\"fields\":[");
        bool first = true;
        if (e->name.ptr && e->name.len && !attrs_get(&e->attrs, "event"))
            kv_str(b, &first, "event", e->name.ptr, e->name.len);
        kv_attrs(r, b, &first, &e->attrs, NULL);
        if (e->attrs.dropped) kv_int(b, &first, "otel.dropped_attributes_count", e->attrs.dropped);
        sb_puts(b, "]}");
    }
    sb_putc(b, ']');
}

static void render_span(struct render *r, struct sbuf *b, const struct span *s, long pid)
{
    sb_puts(b, "{\"traceID\":");
    sb_json_hex(b, s->trace_id, 16);
    sb_puts(b, ",\"spanID\":");
    sb_json_hex(b, s->span_id, 8);
    if (s->flags & 0xff) {
        sb_puts(b, ",\"flags\":");
        sb_uint(b, s->flags & 0xff);
    }
    sb_puts(b, ",\"operationName\":");
    sb_json_str(b, s->name.ptr ? s->name.ptr : "", s->name.len);
    sb_putc(b, ',');
    render_references(b, s);
    sb_puts(b, ",\"startTime\":");
    sb_uint(b, s->start_unix_nano / 1000);
    sb_puts(b, ",\"duration\":");
    sb_uint(b, s->end_unix_nano > s->start_unix_nano
                   ? (s->end_unix_nano - s->start_unix_nano) / 1000
                   : 0);
    sb_putc(b, ',');
    render_tags(r, b, s);
    sb_putc(b, ',');
    render_logs(r, b, s);
    sb_puts(b, ",\"processID\":\"p");
    sb_uint(b, (uint64_t)pid + 1);
    sb_puts(b, "\",\"warnings\":null}");
}

static int span_cmp(const void *x, const void *y)
{
    const struct span *a = x, *b = y;
    if (a->start_unix_nano != b->start_unix_nano)
        return a->start_unix_nano < b->start_unix_nano ? -1 : 1;
    return memcmp(a->span_id, b->span_id, 8);
}

struct trace_logs;
static void render_access_logs(struct sbuf *b, const struct trace_logs *tl);

/* tl: the trace's access-log records for the "accessLogs" extension, or NULL (no member). */
static void render_trace(struct render *r, struct sbuf *b, struct span_batch *t,
                         const struct trace_logs *tl)
{
    render_reset(r);
    if (t->n_spans > 1) qsort(t->spans, t->n_spans, sizeof *t->spans, span_cmp);
    sb_puts(b, "{\"traceID\":");
    if (t->n_spans)
        sb_json_hex(b, t->spans[0].trace_id, 16);
    else
        sb_puts(b, "\"\"");
    sb_puts(b, ",\"spans\":[");
    for (uint32_t i = 0; i < t->n_spans && !b->error; i++) {
        long pid = process_of(r, b, &t->spans[i]);
        if (pid < 0) return;
        if (i) sb_putc(b, ',');
        render_span(r, b, &t->spans[i], pid);
    }
    sb_puts(b, "],\"processes\":{");
    for (size_t i = 0; i < r->n_procs; i++) {
        if (i) sb_putc(b, ',');
        sb_puts(b, "\"p");
        sb_uint(b, i + 1);
        sb_puts(b, "\":");
        sb_put(b, r->procs[i].json, r->procs[i].len);
    }
    sb_puts(b, "},\"warnings\":null");
    if (tl) render_access_logs(b, tl);
    sb_putc(b, '}');
}

void jaeger_render_trace(struct sbuf *b, struct span_batch *trace)
{
    struct render r;
    render_init(&r);
    render_trace(&r, b, trace, NULL);
    render_free(&r);
}

/* ----- access logs of a trace (the "accessLogs" extension of GET /api/traces/{id}) ----------
 * The records with the trace's id within a minute of its spans (store_find_logs by trace id), plus
 * the records of the trace's services, within its time window, whose request_id is an x-request-id
 * one of its spans carries (Envoy's guid:x-request-id tag, the semantic conventions'
 * http.request.header.x-request-id): one indexed (service, time) range per service, at most
 * TRACE_LOG_SERVICES of them, so a proxy's access log joins a trace it did not tag. */

#define TRACE_LOG_SERVICES 16    /* services of one trace searched by request id */
#define TRACE_LOG_REQUEST_IDS 64 /* distinct request ids of one trace matched */
#define TRACE_LOG_MARGIN_US (60 * INT64_C(1000000)) /* a proxy's clock and queueing vs spans' */

struct trace_logs {
    struct span_batch *batches[1 + TRACE_LOG_SERVICES];
    size_t n_batches;
    const uint8_t *trace_id;
    const char *request_ids[TRACE_LOG_REQUEST_IDS]; /* borrowed from the trace's spans */
    size_t n_request_ids;
};

static bool request_id_wanted(const struct trace_logs *tl, const struct access_log *l)
{
    const struct mstr *rid = &l->str[ALOG_REQUEST_ID];
    if (!rid->ptr || (l->has_trace_id && memcmp(l->trace_id, tl->trace_id, 16) == 0))
        return false; /* no id, or already listed by trace id */
    for (size_t i = 0; i < tl->n_request_ids; i++)
        if (strcmp(tl->request_ids[i], rid->ptr) == 0) return true;
    return false;
}

static void add_request_id(struct trace_logs *tl, const struct value *v)
{
    if (v && v->type == VALUE_ARRAY && v->u.array.n) v = &v->u.array.items[0];
    if (!v || v->type != VALUE_STRING || !v->u.str.len) return;
    for (size_t i = 0; i < tl->n_request_ids; i++)
        if (strcmp(tl->request_ids[i], v->u.str.ptr) == 0) return;
    if (tl->n_request_ids < TRACE_LOG_REQUEST_IDS)
        tl->request_ids[tl->n_request_ids++] = v->u.str.ptr;
}

static void trace_logs_free(struct trace_logs *tl)
{
    for (size_t i = 0; i < tl->n_batches; i++)
        span_batch_destroy(tl->batches[i]);
    tl->n_batches = 0;
}

/* Fills tl for trace t (borrowed; tl borrows it). Returns 0 or a store error. */
static int trace_logs_find(struct store *st, const uint8_t id[16], const struct span_batch *t,
                           struct trace_logs *tl)
{
    memset(tl, 0, sizeof *tl);
    tl->trace_id = id;
    const char *services[TRACE_LOG_SERVICES];
    size_t n_services = 0;
    uint64_t first = UINT64_MAX, last = 0;
    for (uint32_t i = 0; i < t->n_spans; i++) {
        const struct span *s = &t->spans[i];
        add_request_id(tl, span_attr(s, "guid:x-request-id"));
        add_request_id(tl, span_attr(s, "http.request.header.x-request-id"));
        add_request_id(tl, span_attr(s, "x-request-id"));
        if (s->start_unix_nano < first) first = s->start_unix_nano;
        if (s->end_unix_nano > last) last = s->end_unix_nano;
        const char *svc = span_service_name(s);
        size_t k = 0;
        while (k < n_services && strcmp(services[k], svc) != 0)
            k++;
        if (k == n_services && n_services < TRACE_LOG_SERVICES) services[n_services++] = svc;
    }
    if (last < first) last = first;
    /* Records of the trace within TRACE_LOG_MARGIN_US of its spans: a bounded window keeps the
     * lookup to the blocks of that time (store_find_logs scans their bloom filters). */
    int64_t from = (int64_t)(first / 1000) - TRACE_LOG_MARGIN_US;
    struct log_query q = {.trace_id = id,
                          .start_us = from > 0 ? from : 0,
                          .end_us = (int64_t)(last / 1000) + TRACE_LOG_MARGIN_US,
                          .limit = LOG_QUERY_MAX_LIMIT};
    int rc = store_find_logs(st, &q, &tl->batches[0]);
    if (rc) return rc;
    tl->n_batches = 1;
    if (!tl->n_request_ids) return 0;
    for (size_t k = 0; k < n_services; k++) {
        struct log_query sq = {
            .service = services[k],
            .start_us = (int64_t)(first / 1000) - TRACE_LOG_MARGIN_US,
            .end_us = (int64_t)(last / 1000) + TRACE_LOG_MARGIN_US,
            .limit = LOG_QUERY_MAX_LIMIT,
        };
        if (sq.start_us < 0) sq.start_us = 0;
        struct span_batch *found = NULL;
        if ((rc = store_find_logs(st, &sq, &found))) return rc;
        tl->batches[tl->n_batches++] = found;
    }
    return 0;
}

static int log_time_cmp(const void *x, const void *y)
{
    const struct access_log *a = *(const struct access_log *const *)x,
                            *b = *(const struct access_log *const *)y;
    return a->time_unix_nano < b->time_unix_nano ? -1 : a->time_unix_nano > b->time_unix_nano;
}

/* ,"accessLogs":[record...] in time order, records as /api/logs renders them; nothing when the
 * trace has none. */
static void render_access_logs(struct sbuf *b, const struct trace_logs *tl)
{
    size_t n = 0;
    for (size_t i = 0; i < tl->n_batches; i++)
        n += tl->batches[i]->n_logs;
    const struct access_log **list = n ? malloc(n * sizeof *list) : NULL;
    if (n && !list) {
        b->error = b->error ? b->error : -ENOMEM;
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < tl->n_batches; i++)
        for (uint32_t j = 0; j < tl->batches[i]->n_logs; j++) {
            const struct access_log *l = &tl->batches[i]->logs[j];
            if (i == 0 || request_id_wanted(tl, l)) list[m++] = l;
        }
    if (m > 1) qsort(list, m, sizeof *list, log_time_cmp);
    if (m == 0) { /* none: the trace keeps Jaeger's exact shape */
        free(list);
        return;
    }
    sb_puts(b, ",\"accessLogs\":[");
    for (size_t i = 0; i < m; i++) {
        if (i) sb_putc(b, ',');
        logs_render_record(b, list[i]);
    }
    sb_putc(b, ']');
    free(list);
}

/* ----- handlers --------------------------------------------------------------------------- */

static void handle_services(struct store *st, struct query_response *resp)
{
    char **names = NULL;
    int rc = store_list_services(st, &names);
    if (rc) {
        respond_store_error(resp, "services", rc);
        return;
    }
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_puts(&b, "{\"data\":[");
    size_t n = 0;
    for (; names && names[n]; n++) {
        if (n) sb_putc(&b, ',');
        sb_json_cstr(&b, names[n]);
    }
    sb_putc(&b, ']');
    response_tail(&b, n);
    store_free_strings(names);
    query_respond_json(resp, &b);
}

static int op_name_cmp(const void *x, const void *y)
{
    const struct operation_info *a = x, *b = y;
    return strcmp(a->name, b->name);
}

/* GET /api/services/{service}/operations: unique names of every kind (Jaeger's legacy route). */
static void handle_operations_legacy(struct store *st, const char *service,
                                     struct query_response *resp)
{
    struct operation_info *ops = NULL;
    size_t n = 0;
    int rc = store_list_operations(st, service, SPAN_KIND_UNSPECIFIED, &ops, &n);
    if (rc) {
        respond_store_error(resp, "operations", rc);
        return;
    }
    if (n > 1) qsort(ops, n, sizeof *ops, op_name_cmp);
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_puts(&b, "{\"data\":[");
    size_t unique = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && strcmp(ops[i].name, ops[i - 1].name) == 0) continue;
        if (unique++) sb_putc(&b, ',');
        sb_json_cstr(&b, ops[i].name);
    }
    sb_putc(&b, ']');
    response_tail(&b, unique);
    store_free_operations(ops, n);
    query_respond_json(resp, &b);
}

/* GET /api/operations?service=&spanKind= */
static void handle_operations(struct store *st, const struct query_arg *args, size_t n_args,
                              struct query_response *resp)
{
    const char *service = query_arg(args, n_args, "service");
    if (!service) {
        query_respond_error(resp, 400, "parameter 'service' is required");
        return;
    }
    enum span_kind kind;
    const char *kind_arg = query_arg(args, n_args, "spanKind");
    if (span_kind_parse(kind_arg, &kind)) {
        char msg[QUERY_ERRMSG];
        snprintf(msg, sizeof msg,
                 "unable to parse param 'spanKind': unknown span kind \"%.128s\" (expected server, "
                 "client, producer, consumer or internal)",
                 kind_arg);
        query_respond_error(resp, 400, msg);
        return;
    }
    struct operation_info *ops = NULL;
    size_t n = 0;
    int rc = store_list_operations(st, service, kind, &ops, &n);
    if (rc) {
        respond_store_error(resp, "operations", rc);
        return;
    }
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_puts(&b, "{\"data\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) sb_putc(&b, ',');
        sb_puts(&b, "{\"name\":");
        sb_json_cstr(&b, ops[i].name);
        sb_puts(&b, ",\"spanKind\":");
        sb_json_cstr(&b, span_kind_name(ops[i].kind));
        sb_putc(&b, '}');
    }
    sb_putc(&b, ']');
    response_tail(&b, n);
    store_free_operations(ops, n);
    query_respond_json(resp, &b);
}

/* traceID= search: the traces found, plus one {"msg":"trace not found","traceID":..} error
 * entry per missing one, as jaeger-query's tracesByIDs does. */
static void search_by_ids(struct store *st, const struct trace_params *p,
                          struct query_response *resp)
{
    struct sbuf b, errs;
    struct render r;
    sb_init(&b, QUERY_MAX_BODY);
    sb_init(&errs, QUERY_MAX_BODY);
    render_init(&r);
    size_t found = 0, missing = 0;
    sb_puts(&b, "{\"data\":[");
    for (size_t i = 0; i < p->n_trace_ids && !b.error; i++) {
        struct span_batch *t = NULL;
        int rc = store_get_trace(st, p->trace_ids[i], &t);
        if (rc == 0 && t->n_spans == 0) rc = -ENOENT;
        if (rc == -ENOENT) {
            sb_puts(&errs, missing++ ? "," : "");
            sb_puts(&errs, "{\"msg\":\"trace not found\",\"traceID\":");
            sb_json_hex(&errs, p->trace_ids[i], 16);
            sb_putc(&errs, '}');
        } else if (rc) {
            span_batch_destroy(t);
            respond_store_error(resp, "traces", rc);
            goto out;
        } else {
            if (found++) sb_putc(&b, ',');
            render_trace(&r, &b, t, NULL);
        }
        span_batch_destroy(t);
    }
    sb_puts(&b, "],\"total\":0,\"limit\":0,\"offset\":0,\"errors\":");
    if (missing) {
        sb_putc(&b, '[');
        sb_put(&b, errs.p, errs.len);
        sb_puts(&b, "]}");
        if (errs.error && !b.error) b.error = errs.error;
    } else {
        sb_puts(&b, "null}");
    }
    query_respond_json(resp, &b);
out:
    sb_free(&b);
    sb_free(&errs);
    render_free(&r);
}

/* GET /api/traces?service=...: search. */
static void handle_search(struct store *st, const struct query_arg *args, size_t n_args,
                          struct query_response *resp)
{
    struct trace_params p;
    char err[QUERY_ERRMSG];
    int rc = trace_params_parse(args, n_args, &p, err);
    if (rc) {
        if (rc == -EINVAL)
            query_respond_error(resp, 400, err);
        else
            query_respond_error(resp, 503, "out of memory parsing the query");
        trace_params_free(&p);
        return;
    }
    if (p.n_trace_ids) {
        search_by_ids(st, &p, resp);
        trace_params_free(&p);
        return;
    }
    struct span_batch **traces = NULL;
    size_t n = 0;
    rc = store_find_traces(st, &p.q, &traces, &n);
    trace_params_free(&p);
    if (rc) {
        respond_store_error(resp, "traces", rc);
        return;
    }
    struct sbuf b;
    struct render r;
    sb_init(&b, QUERY_MAX_BODY);
    render_init(&r);
    sb_puts(&b, "{\"data\":[");
    size_t shown = 0;
    for (size_t i = 0; i < n && !b.error; i++) {
        if (!traces[i] || traces[i]->n_spans == 0) continue;
        if (shown++) sb_putc(&b, ',');
        render_trace(&r, &b, traces[i], NULL);
    }
    sb_putc(&b, ']');
    response_tail(&b, 0); /* jaeger-query leaves total 0 on searches */
    render_free(&r);
    store_free_traces(traces, n);
    query_respond_json(resp, &b);
}

/* GET /api/traces/{traceID} */
static void handle_trace(struct store *st, const char *id, const struct query_arg *args,
                         size_t n_args, struct query_response *resp)
{
    uint8_t trace_id[16];
    char err[QUERY_ERRMSG];
    if (query_parse_trace_id(id, trace_id)) {
        snprintf(err, sizeof err,
                 "unable to parse param 'traceID': expected 1 to 32 hex characters, got \"%.128s\"",
                 id);
        query_respond_error(resp, 400, err);
        return;
    }
    /* start=/end= narrow the lookup in Jaeger; our store finds a trace by ID alone, but a
     * malformed value is still the client's error. */
    int64_t ignored;
    bool present;
    if (param_int64(args, n_args, "start", &ignored, &present, err) ||
        param_int64(args, n_args, "end", &ignored, &present, err)) {
        query_respond_error(resp, 400, err);
        return;
    }
    struct span_batch *t = NULL;
    int rc = store_get_trace(st, trace_id, &t);
    if (rc == 0 && t->n_spans == 0) rc = -ENOENT;
    if (rc) {
        span_batch_destroy(t);
        if (rc == -ENOENT)
            query_respond_error(resp, 404, "trace not found");
        else
            respond_store_error(resp, "trace", rc);
        return;
    }
    struct trace_logs tl;
    rc = trace_logs_find(st, trace_id, t, &tl);
    if (rc) {
        trace_logs_free(&tl);
        span_batch_destroy(t);
        respond_store_error(resp, "trace access logs", rc);
        return;
    }
    struct sbuf b;
    struct render r;
    sb_init(&b, QUERY_MAX_BODY);
    render_init(&r);
    sb_puts(&b, "{\"data\":[");
    render_trace(&r, &b, t, &tl);
    sb_putc(&b, ']');
    response_tail(&b, 0);
    render_free(&r);
    trace_logs_free(&tl);
    span_batch_destroy(t);
    query_respond_json(resp, &b);
}

static int dep_cmp(const void *x, const void *y)
{
    const struct dependency_link *a = x, *b = y;
    int c = strcmp(a->parent, b->parent);
    return c ? c : strcmp(a->child, b->child);
}

/* GET /api/dependencies?endTs=&lookback=&service= */
static void handle_dependencies(struct store *st, const struct query_arg *args, size_t n_args,
                                struct query_response *resp)
{
    int64_t end_us, lookback_us;
    char err[QUERY_ERRMSG];
    if (dependency_params_parse(args, n_args, &end_us, &lookback_us, err)) {
        query_respond_error(resp, 400, err);
        return;
    }
    const char *service = query_arg(args, n_args, "service");
    struct dependency_link *deps = NULL;
    size_t n = 0;
    int rc = store_dependencies(st, end_us, lookback_us, &deps, &n);
    if (rc) {
        respond_store_error(resp, "dependencies", rc);
        return;
    }
    /* jaeger-query sums duplicate (parent, child) pairs; sorting makes them adjacent. */
    if (n > 1) qsort(deps, n, sizeof *deps, dep_cmp);
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_puts(&b, "{\"data\":[");
    bool first = true;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint64_t calls = 0;
        for (; j < n && dep_cmp(&deps[i], &deps[j]) == 0; j++)
            calls += deps[j].call_count;
        if (!service || strcmp(deps[i].parent, service) == 0 ||
            strcmp(deps[i].child, service) == 0) {
            if (!first) sb_putc(&b, ',');
            first = false;
            sb_puts(&b, "{\"parent\":");
            sb_json_cstr(&b, deps[i].parent);
            sb_puts(&b, ",\"child\":");
            sb_json_cstr(&b, deps[i].child);
            sb_puts(&b, ",\"callCount\":");
            sb_uint(&b, calls);
            sb_putc(&b, '}');
        }
        i = j;
    }
    sb_putc(&b, ']');
    response_tail(&b, 0);
    store_free_dependencies(deps, n);
    query_respond_json(resp, &b);
}

/* ----- routing ---------------------------------------------------------------------------- */

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int query_handle(struct store *st, const char *path, const struct query_arg *args, size_t n_args,
                 struct query_response *resp)
{
    if (path && strcmp(path, "/api/graph") == 0) return graph_query_handle(st, args, n_args, resp);
    if (path && strcmp(path, "/api/logs") == 0) return logs_query_handle(st, args, n_args, resp);
    if (path && has_prefix(path, "/api/v2/")) return zipkin_query_handle(st, path, args, n_args, resp);
    if (!path || !has_prefix(path, "/api/")) return -ENOENT;
    const char *r = path + 5;
    if (!args) n_args = 0;

    if (strcmp(r, "services") == 0) {
        handle_services(st, resp);
        return 0;
    }
    if (has_prefix(r, "services/")) {
        /* The service name may itself contain '/': it is everything up to "/operations". */
        const char *svc = r + 9;
        size_t len = strlen(svc), suffix = strlen("/operations");
        if (len <= suffix || strcmp(svc + len - suffix, "/operations") != 0) return -ENOENT;
        char *name = strndup(svc, len - suffix);
        if (!name) {
            query_respond_error(resp, 503, "out of memory");
            return 0;
        }
        handle_operations_legacy(st, name, resp);
        free(name);
        return 0;
    }
    if (strcmp(r, "operations") == 0) {
        handle_operations(st, args, n_args, resp);
        return 0;
    }
    if (strcmp(r, "traces") == 0) {
        handle_search(st, args, n_args, resp);
        return 0;
    }
    if (has_prefix(r, "traces/")) {
        const char *id = r + 7;
        if (strchr(id, '/')) return -ENOENT;
        handle_trace(st, id, args, n_args, resp);
        return 0;
    }
    if (strcmp(r, "dependencies") == 0) {
        handle_dependencies(st, args, n_args, resp);
        return 0;
    }
    return -ENOENT;
}
