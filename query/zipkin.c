/*
 * zipkin.c: the Zipkin v2 HTTP query API (zipkin-server's ZipkinQueryApiV2: /api/v2/services,
 * /spans, /remoteServices, /traces, /trace/{id}, /traceMany, /dependencies, /autocompleteKeys,
 * /autocompleteValues) over meshscope's store, in Zipkin's response shapes so the Zipkin UI and
 * Grafana's Zipkin data source work unchanged.
 *
 * MAPPING (span model -> Zipkin v2 JSON span; the inverse of collector/zipkin.h, and for
 * OTLP-origin spans what the OpenTelemetry Collector's Zipkin exporter writes)
 *
 *   traceId         16 hex digits when the high 8 bytes are zero (as Zipkin prints 64-bit ids),
 *                   else 32. id, parentId: 16 hex digits.
 *   kind            SERVER/CLIENT/PRODUCER/CONSUMER; omitted for INTERNAL (which adds the tag
 *                   span.kind = "internal", as the exporter does) and UNSPECIFIED.
 *   name            the span name; omitted when empty.
 *   timestamp       start µs, omitted when 0; duration (end - start) µs, a positive duration
 *                   under 1 µs rounded up to 1 (Zipkin's rule), omitted when 0.
 *   localEndpoint   serviceName <- resource service.name; ipv4/ipv6 <- resource host.ip (by its
 *                   form) and zipkin.local_endpoint.ipv6; port <- zipkin.local_endpoint.port.
 *   remoteEndpoint  serviceName <- span peer.service; ipv4/ipv6 <- network.peer.address (or the
 *                   older net.peer.ip) when it is an IP address, and zipkin.remote_endpoint.ipv6;
 *                   port <- network.peer.port (or net.peer.port).
 *                   Attributes moved into an endpoint are not repeated as tags.
 *   annotations     events: {timestamp µs, value = name}; an event with attributes becomes
 *                   "name|{json attributes}|dropped count" (the exporter's format). Sorted by
 *                   timestamp then value, exact duplicates dropped (Zipkin's rule).
 *   tags            every other resource attribute, otel.scope.name / otel.scope.version (when
 *                   set), every other span attribute, rendered as strings (bool "true"/"false",
 *                   integers in decimal, doubles in shortest form, bytes base64, arrays and maps
 *                   as JSON); span.kind = "internal"; status OK -> otel.status_code = "OK";
 *                   status ERROR -> error = the status message, or "true" when it has none (an
 *                   "error" attribute is dropped unless the status is ERROR, as the exporter
 *                   does); trace state -> w3c.tracestate. Sorted by key; a span attribute
 *                   overrides a resource attribute of the same key.
 *   debug, shared   true when the attribute zipkin.debug / zipkin.shared is true.
 *   Links and dropped counts are not rendered (Zipkin has no field for them).
 *
 * QUERIES follow zipkin-server (QueryRequest): endTs and lookback in milliseconds (defaults:
 * now and 1 day), minDuration/maxDuration in microseconds (maxDuration only with minDuration),
 * limit default 10; service, remote service and span names compared case-insensitively (Zipkin
 * lower-cases them). serviceName, when given, constrains the other conditions to that service's
 * spans; each condition may be met by a different span of the trace, as in Zipkin's
 * QueryRequest.test. annotationQuery is "term and term ...", a term "key" (a tag key or an
 * annotation value; "error" also matches any failed span, span_is_error) or "key=value" (a tag,
 * as rendered above). The store narrows candidates by service, window and duration; the rest is
 * checked here, in C, on the candidate traces. Without serviceName every service is searched.
 *
 * Errors: 400 with a text/plain message naming the parameter; 404 "<id> not found" for an
 * unknown trace (Zipkin's wording).
 *
 * Thread-safety: every call renders into its own buffers; the store lends it a connection.
 */
#include "query_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char json_type[] = "application/json";
static const char text_type[] = "text/plain; charset=utf-8";

#define ZIPKIN_DEFAULT_LIMIT 10               /* QueryRequest / ZipkinQueryApiV2 default */
#define ZIPKIN_DEFAULT_LOOKBACK_MS 86400000LL /* zipkin.query.lookback: 1 day */
#define ZIPKIN_MAX_LIMIT 1000                 /* larger limits are clamped */
#define ZIPKIN_MAX_TERMS 32                   /* annotationQuery terms */
#define ZIPKIN_NAMES_TRACES 1000              /* traces scanned for remote services / values */

/* ----- responses -------------------------------------------------------------------------- */

static void respond_text(struct query_response *resp, int status, const char *msg)
{
    size_t n = strlen(msg);
    char *body = malloc(n + 2);
    resp->status = status;
    resp->content_type = text_type;
    if (!body) {
        resp->status = 503;
        resp->body = NULL;
        resp->len = 0;
        return;
    }
    memcpy(body, msg, n);
    body[n] = '\n';
    body[n + 1] = '\0';
    resp->body = body;
    resp->len = n + 1;
}

static void respond_json(struct query_response *resp, struct sbuf *b)
{
    int err = b->error;
    char *body = sb_take(b, &resp->len);
    if (!body) {
        if (err == -E2BIG)
            respond_text(resp, 500, "response too large; narrow the query (limit, lookback)");
        else
            respond_text(resp, 503, "out of memory rendering the response");
        return;
    }
    resp->status = 200;
    resp->content_type = json_type;
    resp->body = body;
}

static void respond_store_error(struct query_response *resp, const char *what, int rc)
{
    char msg[QUERY_ERRMSG];
    int status = query_store_error("zipkin-store-error", what, rc, msg);
    respond_text(resp, status, msg);
}

/* ----- small helpers ---------------------------------------------------------------------- */

static bool mstr_is(struct mstr m, const char *s)
{
    size_t n = strlen(s);
    return m.ptr && m.len == n && memcmp(m.ptr, s, n) == 0;
}

static const struct value *attrs_get(const struct attrs *as, const char *key)
{
    for (uint32_t i = 0; i < as->n; i++)
        if (mstr_is(as->items[i].key, key)) return &as->items[i].value;
    return NULL;
}

static bool value_is_true(const struct value *v)
{
    return v && v->type == VALUE_BOOL && v->u.b;
}

/* A port from an int or decimal-string value: 1..65535, else 0. */
static int value_port(const struct value *v)
{
    if (!v) return 0;
    int64_t p = 0;
    if (v->type == VALUE_INT) {
        p = v->u.i;
    } else if (v->type == VALUE_STRING && v->u.str.len > 0 && v->u.str.len < 6) {
        for (uint32_t i = 0; i < v->u.str.len; i++) {
            char c = v->u.str.ptr[i];
            if (c < '0' || c > '9') return 0;
            p = p * 10 + (c - '0');
        }
    }
    return p > 0 && p <= 65535 ? (int)p : 0;
}

/* Parses an IP address string value: 4 -> IPv4, 6 -> IPv6, 0 -> not an address. */
static int value_ip(const struct value *v, uint8_t out[16])
{
    if (!v || v->type != VALUE_STRING || v->u.str.len == 0 || v->u.str.len >= INET6_ADDRSTRLEN)
        return 0;
    char buf[INET6_ADDRSTRLEN];
    memcpy(buf, v->u.str.ptr, v->u.str.len);
    buf[v->u.str.len] = '\0';
    if (inet_pton(AF_INET, buf, out) == 1) return 4;
    if (inet_pton(AF_INET6, buf, out) == 1) return 6;
    return 0;
}

/* ----- the Zipkin view of a span ---------------------------------------------------------- */

struct zendpoint {
    struct mstr service; /* ptr NULL = absent */
    bool has_v4, has_v6;
    uint8_t v4[4], v6[16];
    int port;
};

struct ztag {
    const char *key;
    size_t klen;
    const char *val; /* NULL while the value sits in text (at off) */
    size_t vlen, off;
    uint32_t seq; /* insertion order: the last of a key wins */
};

struct zann {
    uint64_t ts;
    const char *val;
    size_t vlen, off;
};

/* Reused across the spans of a response; reset per span. */
struct zview {
    struct zendpoint local, remote;
    struct ztag *tags;
    size_t n_tags, cap_tags;
    struct zann *anns;
    size_t n_anns, cap_anns;
    struct sbuf text; /* values that had to be formatted */
    int error;
};

static void zview_init(struct zview *v)
{
    memset(v, 0, sizeof *v);
    sb_init(&v->text, QUERY_MAX_BODY);
}

static void zview_free(struct zview *v)
{
    free(v->tags);
    free(v->anns);
    sb_free(&v->text);
}

static bool grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return true;
    size_t n = *cap ? *cap * 2 : 32;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

static struct ztag *add_tag(struct zview *v, const char *key, size_t klen)
{
    if (!grow((void **)&v->tags, &v->cap_tags, v->n_tags + 1, sizeof *v->tags)) {
        v->error = -ENOMEM;
        return NULL;
    }
    struct ztag *t = &v->tags[v->n_tags];
    t->key = key;
    t->klen = klen;
    t->val = NULL;
    t->vlen = t->off = 0;
    t->seq = (uint32_t)v->n_tags++;
    return t;
}

static void tag_str(struct zview *v, const char *key, const char *val, size_t vlen)
{
    struct ztag *t = add_tag(v, key, strlen(key));
    if (!t) return;
    t->val = val;
    t->vlen = vlen;
}

/* Appends a value's text form to b: strings as they are, the rest as JSON (bytes without the
 * quotes; maps with their keys in stored order). */
static void value_text(struct sbuf *b, const struct value *v)
{
    switch (v->type) {
    case VALUE_STRING:
        sb_put(b, v->u.str.ptr ? v->u.str.ptr : "", v->u.str.len);
        break;
    case VALUE_EMPTY:
        break;
    case VALUE_BYTES: {
        size_t at = b->len;
        sb_json_value(b, v, false);
        if (!b->error && b->len >= at + 2) { /* strip the quotes */
            memmove(b->p + at, b->p + at + 1, b->len - at - 2);
            b->len -= 2;
            b->p[b->len] = '\0';
        }
        break;
    }
    default:
        sb_json_value(b, v, false);
        break;
    }
}

static void tag_value(struct zview *v, const char *key, size_t klen, const struct value *val)
{
    struct ztag *t = add_tag(v, key, klen);
    if (!t) return;
    if (val->type == VALUE_STRING) {
        t->val = val->u.str.ptr ? val->u.str.ptr : "";
        t->vlen = val->u.str.len;
        return;
    }
    t->off = v->text.len;
    value_text(&v->text, val);
    t->vlen = v->text.len - t->off;
}

static bool key_in(struct mstr k, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i] && mstr_is(k, keys[i])) return true;
    return false;
}

static int ztag_cmp(const void *x, const void *y)
{
    const struct ztag *a = x, *b = y;
    int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);
    if (c) return c;
    if (a->klen != b->klen) return a->klen < b->klen ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int zann_cmp(const void *x, const void *y)
{
    const struct zann *a = x, *b = y;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    int c = memcmp(a->val, b->val, a->vlen < b->vlen ? a->vlen : b->vlen);
    if (c) return c;
    return a->vlen < b->vlen ? -1 : a->vlen > b->vlen;
}

/* Builds the Zipkin view of s into v. Returns 0 or -ENOMEM / -E2BIG. */
static int zview_build(struct zview *v, const struct span *s)
{
    v->n_tags = v->n_anns = 0;
    v->text.len = 0;
    v->text.error = 0;
    v->error = 0;
    memset(&v->local, 0, sizeof v->local);
    memset(&v->remote, 0, sizeof v->remote);
    uint8_t ip[16];

    /* local endpoint, from the resource */
    const char *res_used[4] = {NULL, NULL, NULL, NULL};
    if (s->resource) {
        const struct attrs *ra = &s->resource->attrs;
        const struct value *x = attrs_get(ra, "service.name");
        if (x && x->type == VALUE_STRING && x->u.str.len) {
            v->local.service = x->u.str;
            res_used[0] = "service.name";
        }
        int fam = value_ip(attrs_get(ra, "host.ip"), ip);
        if (fam == 4) memcpy(v->local.v4, ip, 4), v->local.has_v4 = true;
        if (fam == 6) memcpy(v->local.v6, ip, 16), v->local.has_v6 = true;
        if (fam) res_used[1] = "host.ip";
        if (!v->local.has_v6 && value_ip(attrs_get(ra, "zipkin.local_endpoint.ipv6"), ip) == 6) {
            memcpy(v->local.v6, ip, 16);
            v->local.has_v6 = true;
            res_used[2] = "zipkin.local_endpoint.ipv6";
        }
        v->local.port = value_port(attrs_get(ra, "zipkin.local_endpoint.port"));
        if (v->local.port) res_used[3] = "zipkin.local_endpoint.port";
        for (uint32_t i = 0; i < ra->n; i++) {
            const struct attr *a = &ra->items[i];
            if (key_in(a->key, res_used, 4)) continue;
            tag_value(v, a->key.ptr ? a->key.ptr : "", a->key.len, &a->value);
        }
    }
    if (s->scope && s->scope->name.len)
        tag_str(v, "otel.scope.name", s->scope->name.ptr, s->scope->name.len);
    if (s->scope && s->scope->version.len)
        tag_str(v, "otel.scope.version", s->scope->version.ptr, s->scope->version.len);

    /* remote endpoint, from the span */
    const char *used[8] = {"zipkin.shared", "zipkin.debug"};
    size_t n_used = 2;
    const struct value *x = span_attr(s, "peer.service");
    if (x && x->type == VALUE_STRING && x->u.str.len) {
        v->remote.service = x->u.str;
        used[n_used++] = "peer.service";
    }
    static const char *const addr_keys[] = {"network.peer.address", "net.peer.ip"};
    for (size_t k = 0; k < 2 && !v->remote.has_v4 && !v->remote.has_v6; k++) {
        int fam = value_ip(span_attr(s, addr_keys[k]), ip);
        if (fam == 4) memcpy(v->remote.v4, ip, 4), v->remote.has_v4 = true;
        if (fam == 6) memcpy(v->remote.v6, ip, 16), v->remote.has_v6 = true;
        if (fam) used[n_used++] = addr_keys[k];
    }
    if (!v->remote.has_v6 && value_ip(span_attr(s, "zipkin.remote_endpoint.ipv6"), ip) == 6) {
        memcpy(v->remote.v6, ip, 16);
        v->remote.has_v6 = true;
        used[n_used++] = "zipkin.remote_endpoint.ipv6";
    }
    static const char *const port_keys[] = {"network.peer.port", "net.peer.port"};
    for (size_t k = 0; k < 2 && !v->remote.port; k++) {
        v->remote.port = value_port(span_attr(s, port_keys[k]));
        if (v->remote.port) used[n_used++] = port_keys[k];
    }
    if (s->status_code != STATUS_ERROR) used[n_used++] = "error";
    for (uint32_t i = 0; i < s->attrs.n; i++) {
        const struct attr *a = &s->attrs.items[i];
        if (key_in(a->key, used, n_used)) continue;
        tag_value(v, a->key.ptr ? a->key.ptr : "", a->key.len, &a->value);
    }
    if (s->kind == SPAN_KIND_INTERNAL) tag_str(v, "span.kind", "internal", 8);
    if (s->status_code == STATUS_OK) tag_str(v, "otel.status_code", "OK", 2);
    if (s->status_code == STATUS_ERROR) {
        if (s->status_message.len)
            tag_str(v, "error", s->status_message.ptr, s->status_message.len);
        else
            tag_str(v, "error", "true", 4);
    }
    if (s->trace_state.len) tag_str(v, "w3c.tracestate", s->trace_state.ptr, s->trace_state.len);

    /* annotations */
    if (!grow((void **)&v->anns, &v->cap_anns, s->n_events, sizeof *v->anns)) return -ENOMEM;
    for (uint32_t i = 0; i < s->n_events; i++) {
        const struct span_event *e = &s->events[i];
        struct zann *a = &v->anns[v->n_anns++];
        a->ts = e->time_unix_nano / 1000;
        if (!e->attrs.n && !e->attrs.dropped) {
            a->val = e->name.ptr ? e->name.ptr : "";
            a->vlen = e->name.len;
            continue;
        }
        a->val = NULL;
        a->off = v->text.len;
        sb_put(&v->text, e->name.ptr ? e->name.ptr : "", e->name.len);
        sb_puts(&v->text, "|{");
        for (uint32_t k = 0; k < e->attrs.n; k++) {
            if (k) sb_putc(&v->text, ',');
            sb_json_str(&v->text, e->attrs.items[k].key.ptr ? e->attrs.items[k].key.ptr : "",
                        e->attrs.items[k].key.len);
            sb_putc(&v->text, ':');
            sb_json_value(&v->text, &e->attrs.items[k].value, false);
        }
        sb_puts(&v->text, "}|");
        sb_uint(&v->text, e->attrs.dropped);
        a->vlen = v->text.len - a->off;
    }
    if (v->error) return v->error;
    if (v->text.error) return v->text.error;

    /* Text is final: point into it, then sort (and drop what Zipkin's maps would merge). */
    for (size_t i = 0; i < v->n_tags; i++)
        if (!v->tags[i].val) v->tags[i].val = v->text.p ? v->text.p + v->tags[i].off : "";
    for (size_t i = 0; i < v->n_anns; i++)
        if (!v->anns[i].val) v->anns[i].val = v->text.p ? v->text.p + v->anns[i].off : "";
    if (v->n_tags > 1) {
        qsort(v->tags, v->n_tags, sizeof *v->tags, ztag_cmp);
        size_t k = 0;
        for (size_t i = 0; i < v->n_tags; i++) {
            bool last = i + 1 == v->n_tags || v->tags[i + 1].klen != v->tags[i].klen ||
                        memcmp(v->tags[i + 1].key, v->tags[i].key, v->tags[i].klen) != 0;
            if (last) v->tags[k++] = v->tags[i];
        }
        v->n_tags = k;
    }
    if (v->n_anns > 1) {
        qsort(v->anns, v->n_anns, sizeof *v->anns, zann_cmp);
        size_t k = 1;
        for (size_t i = 1; i < v->n_anns; i++)
            if (zann_cmp(&v->anns[i], &v->anns[k - 1]) != 0) v->anns[k++] = v->anns[i];
        v->n_anns = k;
    }
    return 0;
}

/* ----- rendering -------------------------------------------------------------------------- */

static void put_trace_id(struct sbuf *b, const uint8_t id[16])
{
    if (id_is_zero(id, 8))
        sb_json_hex(b, id + 8, 8);
    else
        sb_json_hex(b, id, 16);
}

static void put_endpoint(struct sbuf *b, const char *name, const struct zendpoint *e)
{
    if (!e->service.ptr && !e->has_v4 && !e->has_v6 && !e->port) return;
    char ip[INET6_ADDRSTRLEN];
    bool first = true;
    sb_puts(b, ",\"");
    sb_puts(b, name);
    sb_puts(b, "\":{");
    if (e->service.ptr) {
        sb_puts(b, "\"serviceName\":");
        sb_json_str(b, e->service.ptr, e->service.len);
        first = false;
    }
    if (e->has_v4 && inet_ntop(AF_INET, e->v4, ip, sizeof ip)) {
        sb_puts(b, first ? "\"ipv4\":" : ",\"ipv4\":");
        sb_json_cstr(b, ip);
        first = false;
    }
    if (e->has_v6 && inet_ntop(AF_INET6, e->v6, ip, sizeof ip)) {
        sb_puts(b, first ? "\"ipv6\":" : ",\"ipv6\":");
        sb_json_cstr(b, ip);
        first = false;
    }
    if (e->port) {
        sb_puts(b, first ? "\"port\":" : ",\"port\":");
        sb_int(b, e->port);
    }
    sb_putc(b, '}');
}

static const char *kind_name(enum span_kind k)
{
    switch (k) {
    case SPAN_KIND_SERVER:
        return "SERVER";
    case SPAN_KIND_CLIENT:
        return "CLIENT";
    case SPAN_KIND_PRODUCER:
        return "PRODUCER";
    case SPAN_KIND_CONSUMER:
        return "CONSUMER";
    default:
        return NULL;
    }
}

static void render_span(struct sbuf *b, struct zview *v, const struct span *s)
{
    int rc = zview_build(v, s);
    if (rc) {
        if (!b->error) b->error = rc;
        return;
    }
    sb_puts(b, "{\"traceId\":");
    put_trace_id(b, s->trace_id);
    if (s->has_parent) {
        sb_puts(b, ",\"parentId\":");
        sb_json_hex(b, s->parent_span_id, 8);
    }
    sb_puts(b, ",\"id\":");
    sb_json_hex(b, s->span_id, 8);
    const char *kind = kind_name(s->kind);
    if (kind) {
        sb_puts(b, ",\"kind\":\"");
        sb_puts(b, kind);
        sb_putc(b, '"');
    }
    if (s->name.len) {
        sb_puts(b, ",\"name\":");
        sb_json_str(b, s->name.ptr, s->name.len);
    }
    if (s->start_unix_nano / 1000) {
        sb_puts(b, ",\"timestamp\":");
        sb_uint(b, s->start_unix_nano / 1000);
    }
    if (s->end_unix_nano > s->start_unix_nano) {
        uint64_t d = (s->end_unix_nano - s->start_unix_nano) / 1000;
        sb_puts(b, ",\"duration\":");
        sb_uint(b, d ? d : 1);
    }
    put_endpoint(b, "localEndpoint", &v->local);
    put_endpoint(b, "remoteEndpoint", &v->remote);
    if (v->n_anns) {
        sb_puts(b, ",\"annotations\":[");
        for (size_t i = 0; i < v->n_anns; i++) {
            sb_puts(b, i ? ",{\"timestamp\":" : "{\"timestamp\":");
            sb_uint(b, v->anns[i].ts);
            sb_puts(b, ",\"value\":");
            sb_json_str(b, v->anns[i].val, v->anns[i].vlen);
            sb_putc(b, '}');
        }
        sb_putc(b, ']');
    }
    if (v->n_tags) {
        sb_puts(b, ",\"tags\":{");
        for (size_t i = 0; i < v->n_tags; i++) {
            if (i) sb_putc(b, ',');
            sb_json_str(b, v->tags[i].key, v->tags[i].klen);
            sb_putc(b, ':');
            sb_json_str(b, v->tags[i].val, v->tags[i].vlen);
        }
        sb_putc(b, '}');
    }
    if (value_is_true(span_attr(s, "zipkin.debug"))) sb_puts(b, ",\"debug\":true");
    if (value_is_true(span_attr(s, "zipkin.shared"))) sb_puts(b, ",\"shared\":true");
    sb_putc(b, '}');
}

static int span_cmp(const void *x, const void *y)
{
    const struct span *a = x, *b = y;
    if (a->start_unix_nano != b->start_unix_nano)
        return a->start_unix_nano < b->start_unix_nano ? -1 : 1;
    int c = memcmp(a->span_id, b->span_id, 8);
    return c ? c : (int)a->kind - (int)b->kind;
}

static void render_trace(struct sbuf *b, struct zview *v, struct span_batch *t)
{
    if (t->n_spans > 1) qsort(t->spans, t->n_spans, sizeof *t->spans, span_cmp);
    sb_putc(b, '[');
    for (uint32_t i = 0; i < t->n_spans && !b->error; i++) {
        if (i) sb_putc(b, ',');
        render_span(b, v, &t->spans[i]);
    }
    sb_putc(b, ']');
}

void zipkin_render_trace(struct sbuf *b, struct span_batch *trace)
{
    struct zview v;
    zview_init(&v);
    render_trace(b, &v, trace);
    zview_free(&v);
}

/* ----- parameters ------------------------------------------------------------------------- */

static int bad_param(struct query_response *resp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int bad_param(struct query_response *resp, const char *fmt, ...)
{
    char msg[QUERY_ERRMSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    respond_text(resp, 400, msg);
    return -EINVAL;
}

/* An optional integer parameter; 400 (resp filled) for a malformed one. */
static int int_param(const struct query_arg *args, size_t n, const char *key, int64_t *out,
                     bool *present, struct query_response *resp)
{
    char err[QUERY_ERRMSG];
    if (param_int64(args, n, key, out, present, err)) return bad_param(resp, "%s", err);
    return 0;
}

/* A required parameter's value; NULL, after a 400 naming it, when absent or empty. */
static const char *required_param(const struct query_arg *args, size_t n, const char *key,
                                  struct query_response *resp)
{
    const char *v = query_arg(args, n, key);
    if (!v) bad_param(resp, "parameter '%s' is required", key);
    return v;
}

/* endTs= and lookback= (epoch ms and ms, both positive; lookback defaults to a day). An absent
 * endTs is now, or a 400 when end_required (as Zipkin's /dependencies wants it). Returns 0 or
 * -EINVAL (resp filled). */
static int window_params(const struct query_arg *args, size_t n, bool end_required, int64_t *end_ms,
                         int64_t *lookback_ms, struct query_response *resp)
{
    bool present;
    int rc;
    if ((rc = int_param(args, n, "endTs", end_ms, &present, resp))) return rc;
    if (!present && end_required)
        return bad_param(resp, "parameter 'endTs' is required (epoch milliseconds)");
    if (!present)
        *end_ms = query_now_us() / 1000;
    else if (*end_ms <= 0)
        return bad_param(resp, "parameter 'endTs' must be positive (endTs <= 0)");
    if ((rc = int_param(args, n, "lookback", lookback_ms, &present, resp))) return rc;
    if (!present)
        *lookback_ms = ZIPKIN_DEFAULT_LOOKBACK_MS;
    else if (*lookback_ms <= 0)
        return bad_param(resp, "parameter 'lookback' must be positive (lookback <= 0)");
    return 0;
}

/* The stored spelling of a service name: exact, else the first case-insensitive match (Zipkin
 * lower-cases names; OTLP services keep theirs). malloc'd; NULL on out of memory. */
static int resolve_service(struct store *st, const char *name, char **out)
{
    char **names = NULL;
    *out = NULL;
    int rc = store_list_services(st, &names);
    if (rc) return rc;
    const char *found = NULL;
    for (size_t i = 0; names && names[i] && !found; i++)
        if (strcmp(names[i], name) == 0) found = names[i];
    for (size_t i = 0; names && names[i] && !found; i++)
        if (strcasecmp(names[i], name) == 0) found = names[i];
    *out = strdup(found ? found : name);
    store_free_strings(names);
    return *out ? 0 : -ENOMEM;
}

static void write_strings(struct sbuf *b, char **items, size_t n)
{
    sb_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i) sb_putc(b, ',');
        sb_json_cstr(b, items[i]);
    }
    sb_putc(b, ']');
}

static int str_cmp(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* A sorted, de-duplicated list of strings. */
struct strset {
    char **items;
    size_t n, cap;
};

static int strset_add(struct strset *s, const char *p, size_t len)
{
    for (size_t i = 0; i < s->n; i++) /* sets here are small (names, tag values) */
        if (strlen(s->items[i]) == len && memcmp(s->items[i], p, len) == 0) return 0;
    if (s->n >= 10000) return 0; /* bound the answer */
    if (!grow((void **)&s->items, &s->cap, s->n + 1, sizeof *s->items)) return -ENOMEM;
    s->items[s->n] = strndup(p, len);
    if (!s->items[s->n]) return -ENOMEM;
    s->n++;
    return 0;
}

static void strset_free(struct strset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i]);
    free(s->items);
}

static void respond_strset(struct query_response *resp, struct strset *set)
{
    if (set->n > 1) qsort(set->items, set->n, sizeof *set->items, str_cmp);
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    write_strings(&b, set->items, set->n);
    respond_json(resp, &b);
}

/* ----- names ------------------------------------------------------------------------------ */

static void handle_services(struct store *st, struct query_response *resp)
{
    char **names = NULL;
    int rc = store_list_services(st, &names);
    if (rc) {
        respond_store_error(resp, "services", rc);
        return;
    }
    size_t n = 0;
    while (names && names[n])
        n++;
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    write_strings(&b, names, n);
    store_free_strings(names);
    respond_json(resp, &b);
}

static void handle_span_names(struct store *st, const struct query_arg *args, size_t n_args,
                              struct query_response *resp)
{
    const char *svc = required_param(args, n_args, "serviceName", resp);
    if (!svc) return;
    char *name;
    int rc = resolve_service(st, svc, &name);
    struct operation_info *ops = NULL;
    size_t n = 0;
    if (!rc) rc = store_list_operations(st, name, SPAN_KIND_UNSPECIFIED, &ops, &n);
    free(name);
    if (rc) {
        respond_store_error(resp, "span names", rc);
        return;
    }
    struct strset set = {0};
    for (size_t i = 0; i < n && !rc; i++)
        if (ops[i].name[0]) rc = strset_add(&set, ops[i].name, strlen(ops[i].name));
    store_free_operations(ops, n);
    if (rc)
        respond_text(resp, 503, "out of memory");
    else
        respond_strset(resp, &set);
    strset_free(&set);
}

/* The service's most recent traces (at most max), for name lists. */
static int recent_traces(struct store *st, const char *service, unsigned max,
                         struct span_batch ***out, size_t *n)
{
    struct trace_query q = {
        .service = service, .start_us = INT64_MIN + 1, .end_us = query_now_us(), .limit = max};
    return store_find_traces(st, &q, out, n);
}

static void handle_remote_services(struct store *st, const struct query_arg *args, size_t n_args,
                                   struct query_response *resp)
{
    const char *svc = required_param(args, n_args, "serviceName", resp);
    if (!svc) return;
    char *name;
    struct span_batch **traces = NULL;
    size_t n = 0;
    int rc = resolve_service(st, svc, &name);
    if (!rc) rc = recent_traces(st, name, ZIPKIN_NAMES_TRACES, &traces, &n);
    if (rc) {
        free(name);
        respond_store_error(resp, "remote services", rc);
        return;
    }
    struct strset set = {0};
    for (size_t i = 0; i < n && !rc; i++) {
        for (uint32_t j = 0; j < traces[i]->n_spans && !rc; j++) {
            const struct span *s = &traces[i]->spans[j];
            if (strcmp(span_service_name(s), name) != 0) continue;
            const struct value *v = span_attr(s, "peer.service");
            if (v && v->type == VALUE_STRING && v->u.str.len)
                rc = strset_add(&set, v->u.str.ptr, v->u.str.len);
        }
    }
    free(name);
    store_free_traces(traces, n);
    if (rc)
        respond_text(resp, 503, "out of memory");
    else
        respond_strset(resp, &set);
    strset_free(&set);
}

/* Zipkin's autocomplete keys are configured (zipkin.storage.autocomplete-keys); these are the
 * tags a service mesh search needs most: the Istio proxy's and HTTP's. */
static const char *const autocomplete_keys[] = {
    "http.method",     "http.status_code", "istio.canonical_service",
    "istio.namespace", "response_flags",   "upstream_cluster",
};

static void handle_autocomplete_keys(struct query_response *resp)
{
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    write_strings(&b, (char **)autocomplete_keys,
                  sizeof autocomplete_keys / sizeof autocomplete_keys[0]);
    respond_json(resp, &b);
}

/* Values of tag key over the recent traces of every service. */
static void handle_autocomplete_values(struct store *st, const struct query_arg *args,
                                       size_t n_args, struct query_response *resp)
{
    const char *key = required_param(args, n_args, "key", resp);
    if (!key) return;
    char **names = NULL;
    int rc = store_list_services(st, &names);
    if (rc) {
        respond_store_error(resp, "autocomplete values", rc);
        return;
    }
    size_t n_svc = 0;
    while (names && names[n_svc])
        n_svc++;
    unsigned per = n_svc ? ZIPKIN_NAMES_TRACES / (unsigned)n_svc : 0;
    if (per < 10) per = 10;
    struct strset set = {0};
    struct zview v;
    zview_init(&v);
    size_t klen = strlen(key);
    for (size_t i = 0; i < n_svc && !rc; i++) {
        struct span_batch **traces = NULL;
        size_t n = 0;
        rc = recent_traces(st, names[i], per, &traces, &n);
        for (size_t t = 0; t < n && !rc; t++) {
            for (uint32_t j = 0; j < traces[t]->n_spans && !rc; j++) {
                if ((rc = zview_build(&v, &traces[t]->spans[j]))) break;
                for (size_t k = 0; k < v.n_tags && !rc; k++)
                    if (v.tags[k].klen == klen && memcmp(v.tags[k].key, key, klen) == 0)
                        rc = strset_add(&set, v.tags[k].val, v.tags[k].vlen);
            }
        }
        store_free_traces(traces, n);
    }
    zview_free(&v);
    store_free_strings(names);
    if (rc)
        respond_store_error(resp, "autocomplete values", rc);
    else
        respond_strset(resp, &set);
    strset_free(&set);
}

/* ----- traces ----------------------------------------------------------------------------- */

struct zterm {
    char *key;
    char *value; /* NULL: "key" alone */
};

struct zquery {
    char *service;      /* resolved; NULL = every service */
    const char *remote; /* NULL = any */
    const char *span_name;
    struct zterm terms[ZIPKIN_MAX_TERMS];
    size_t n_terms;
    int64_t min_us, max_us; /* 0 = no bound */
    int64_t start_us, end_us;
    unsigned limit;
    char *aq_copy; /* annotationQuery, split in place */
};

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Splits "a=b and c and d=e" as QueryRequest.parseAnnotationQuery does: a later key=value for a
 * key wins; a bare key never replaces one already there. */
static int parse_annotation_query(struct zquery *q, const char *aq, struct query_response *resp)
{
    q->aq_copy = strdup(aq);
    if (!q->aq_copy) return -ENOMEM;
    char *p = q->aq_copy;
    while (p) {
        char *sep = strstr(p, " and ");
        if (sep) *sep = '\0';
        char *term = p;
        p = sep ? sep + 5 : NULL;
        char *eq = strchr(term, '=');
        char *key, *value = NULL;
        if (eq) {
            *eq = '\0';
            key = trim(term);
            value = trim(eq + 1);
        } else {
            key = trim(term);
        }
        if (!*key) continue;
        size_t i = 0;
        for (; i < q->n_terms && strcmp(q->terms[i].key, key) != 0; i++) {
        }
        if (i < q->n_terms) {
            if (value) q->terms[i].value = value;
            continue;
        }
        if (q->n_terms == ZIPKIN_MAX_TERMS)
            return bad_param(resp, "parameter 'annotationQuery': more than %d terms",
                             ZIPKIN_MAX_TERMS);
        q->terms[q->n_terms].key = key;
        q->terms[q->n_terms].value = value;
        q->n_terms++;
    }
    return 0;
}

/* Parses /api/v2/traces parameters. Returns 0, or -EINVAL with resp filled, or -ENOMEM /
 * a store error (resp untouched). */
static int parse_trace_query(struct store *st, const struct query_arg *args, size_t n,
                             struct zquery *q, struct query_response *resp)
{
    memset(q, 0, sizeof *q);
    int64_t v, end_ms, lookback_ms;
    bool present;
    int rc;
    if ((rc = window_params(args, n, false, &end_ms, &lookback_ms, resp))) return rc;
    if ((rc = int_param(args, n, "limit", &v, &present, resp))) return rc;
    if (present && v <= 0)
        return bad_param(resp, "parameter 'limit' must be positive (limit <= 0)");
    q->limit = !present               ? ZIPKIN_DEFAULT_LIMIT
               : v > ZIPKIN_MAX_LIMIT ? ZIPKIN_MAX_LIMIT
                                      : (unsigned)v;
    bool has_min, has_max;
    if ((rc = int_param(args, n, "minDuration", &q->min_us, &has_min, resp))) return rc;
    if ((rc = int_param(args, n, "maxDuration", &q->max_us, &has_max, resp))) return rc;
    if (has_min && q->min_us <= 0)
        return bad_param(resp, "parameter 'minDuration' must be positive (minDuration <= 0)");
    if (has_max && !has_min)
        return bad_param(resp, "parameter 'maxDuration' is only valid with 'minDuration'");
    if (has_max && q->max_us < q->min_us)
        return bad_param(resp, "parameter 'maxDuration' must not be below 'minDuration'");
    q->end_us = query_ms_to_us(end_ms);
    q->start_us = query_ms_to_us(end_ms - lookback_ms); /* both positive: no overflow */

    q->remote = query_arg(args, n, "remoteServiceName");
    q->span_name = query_arg(args, n, "spanName");
    if (q->span_name && strcmp(q->span_name, "all") == 0) q->span_name = NULL;
    const char *aq = query_arg(args, n, "annotationQuery");
    if (aq && (rc = parse_annotation_query(q, aq, resp))) return rc;
    const char *svc = query_arg(args, n, "serviceName");
    if (svc && (rc = resolve_service(st, svc, &q->service))) return rc;
    return 0;
}

static void zquery_free(struct zquery *q)
{
    free(q->service);
    free(q->aq_copy);
}

static bool mstr_ieq(struct mstr m, const char *s)
{
    return m.ptr && strlen(s) == m.len && strncasecmp(m.ptr, s, m.len) == 0;
}

/* Zipkin's QueryRequest.test over one trace's spans (see QUERIES above). */
static int trace_matches(const struct zquery *q, const struct span_batch *t, struct zview *v,
                         bool *match)
{
    bool remote_ok = !q->remote, name_ok = !q->span_name;
    bool term_ok[ZIPKIN_MAX_TERMS] = {false};
    size_t terms_left = q->n_terms;
    *match = false;
    for (uint32_t i = 0; i < t->n_spans; i++) {
        const struct span *s = &t->spans[i];
        if (q->service && strcmp(span_service_name(s), q->service) != 0) continue;
        if (!name_ok && mstr_ieq(s->name, q->span_name)) name_ok = true;
        if (!remote_ok) {
            const struct value *pv = span_attr(s, "peer.service");
            if (pv && pv->type == VALUE_STRING && mstr_ieq(pv->u.str, q->remote)) remote_ok = true;
        }
        if (!terms_left) continue;
        int rc = zview_build(v, s);
        if (rc) return rc;
        for (size_t k = 0; k < q->n_terms; k++) {
            if (term_ok[k]) continue;
            const struct zterm *term = &q->terms[k];
            size_t klen = strlen(term->key);
            bool ok = false;
            for (size_t j = 0; j < v->n_tags && !ok; j++) {
                const struct ztag *tg = &v->tags[j];
                if (tg->klen != klen || memcmp(tg->key, term->key, klen) != 0) continue;
                ok = !term->value || (tg->vlen == strlen(term->value) &&
                                      memcmp(tg->val, term->value, tg->vlen) == 0);
            }
            if (!term->value) {
                for (size_t j = 0; j < v->n_anns && !ok; j++)
                    ok = v->anns[j].vlen == klen && memcmp(v->anns[j].val, term->key, klen) == 0;
                if (!ok && strcmp(term->key, "error") == 0) ok = span_is_error(s);
            }
            if (ok) {
                term_ok[k] = true;
                terms_left--;
            }
        }
    }
    *match = remote_ok && name_ok && terms_left == 0;
    return 0;
}

struct found {
    struct span_batch *t;
    uint64_t start;
};

static int found_cmp(const void *x, const void *y)
{
    const struct found *a = x, *b = y;
    if (a->start != b->start) return a->start > b->start ? -1 : 1;
    return memcmp(a->t->spans[0].trace_id, b->t->spans[0].trace_id, 16);
}

static uint64_t trace_start(const struct span_batch *t)
{
    uint64_t m = UINT64_MAX;
    for (uint32_t i = 0; i < t->n_spans; i++)
        if (t->spans[i].start_unix_nano < m) m = t->spans[i].start_unix_nano;
    return m;
}

static void handle_traces(struct store *st, const struct query_arg *args, size_t n_args,
                          struct query_response *resp)
{
    struct zquery q;
    int rc = parse_trace_query(st, args, n_args, &q, resp);
    if (rc) {
        if (rc != -EINVAL) respond_store_error(resp, "traces", rc);
        zquery_free(&q);
        return;
    }
    /* Conditions the store cannot apply are checked here, so ask it for more candidates. */
    bool filtered = q.remote || q.span_name || q.n_terms;
    unsigned cand = filtered ? q.limit * 5 + 100 : q.limit;
    char **names = NULL;
    char *one[2] = {q.service, NULL};
    if (!q.service && (rc = store_list_services(st, &names))) {
        respond_store_error(resp, "traces", rc);
        zquery_free(&q);
        return;
    }
    char **svcs = q.service ? one : names;
    struct found *found = NULL;
    size_t n_found = 0, cap_found = 0;
    struct zview v;
    zview_init(&v);
    for (size_t i = 0; svcs && svcs[i] && !rc; i++) {
        struct trace_query tq = {.service = svcs[i],
                                 .start_us = q.start_us,
                                 .end_us = q.end_us,
                                 .min_duration_us = q.min_us,
                                 .max_duration_us = q.max_us,
                                 .limit = cand};
        struct span_batch **traces = NULL;
        size_t n = 0;
        rc = store_find_traces(st, &tq, &traces, &n);
        for (size_t k = 0; k < n; k++) {
            struct span_batch *t = traces[k];
            traces[k] = NULL;
            bool keep = false;
            if (!rc && t && t->n_spans) rc = trace_matches(&q, t, &v, &keep);
            for (size_t j = 0; keep && j < n_found; j++) /* found by an earlier service */
                if (memcmp(found[j].t->spans[0].trace_id, t->spans[0].trace_id, 16) == 0)
                    keep = false;
            if (keep && !grow((void **)&found, &cap_found, n_found + 1, sizeof *found))
                rc = -ENOMEM;
            if (keep && !rc)
                found[n_found++] = (struct found){t, trace_start(t)};
            else
                span_batch_destroy(t);
        }
        store_free_traces(traces, n);
    }
    store_free_strings(names);
    if (rc) {
        respond_store_error(resp, "traces", rc);
    } else {
        if (n_found > 1) qsort(found, n_found, sizeof *found, found_cmp);
        struct sbuf b;
        sb_init(&b, QUERY_MAX_BODY);
        sb_putc(&b, '[');
        for (size_t i = 0; i < n_found && i < q.limit && !b.error; i++) {
            if (i) sb_putc(&b, ',');
            render_trace(&b, &v, found[i].t);
        }
        sb_putc(&b, ']');
        respond_json(resp, &b);
    }
    for (size_t i = 0; i < n_found; i++)
        span_batch_destroy(found[i].t);
    free(found);
    zview_free(&v);
    zquery_free(&q);
}

/* Zipkin's Span.normalizeTraceId: 1 to 32 hex digits (left-padded). */
static int parse_trace_id(const char *s, uint8_t id[16], struct query_response *resp,
                          const char *param)
{
    if (query_parse_trace_id(s, id) || id_is_zero(id, 16))
        return bad_param(resp,
                         "%s: \"%.64s\" should be a 1 to 32 character lower-hex string with no "
                         "prefix, not all zeros",
                         param, s);
    return 0;
}

static void handle_trace(struct store *st, const char *id_text, struct query_response *resp)
{
    uint8_t id[16];
    if (parse_trace_id(id_text, id, resp, "traceId")) return;
    struct span_batch *t = NULL;
    int rc = store_get_trace(st, id, &t);
    if (rc == 0 && t->n_spans == 0) rc = -ENOENT;
    if (rc) {
        span_batch_destroy(t);
        if (rc == -ENOENT) {
            char msg[96];
            snprintf(msg, sizeof msg, "%.40s not found", id_text);
            respond_text(resp, 404, msg);
        } else {
            respond_store_error(resp, "trace", rc);
        }
        return;
    }
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    zipkin_render_trace(&b, t);
    span_batch_destroy(t);
    respond_json(resp, &b);
}

/* GET /api/v2/traceMany?traceIds=a,b,c: the traces found, in request order (missing ones are
 * left out, as Zipkin does). */
static void handle_trace_many(struct store *st, const struct query_arg *args, size_t n_args,
                              struct query_response *resp)
{
    const char *ids = query_arg(args, n_args, "traceIds");
    if (!ids) {
        bad_param(resp, "parameter 'traceIds' is required: a comma-separated list of trace IDs");
        return;
    }
    uint8_t(*list)[16] = calloc(QUERY_MAX_TRACE_IDS, 16);
    if (!list) {
        respond_text(resp, 503, "out of memory");
        return;
    }
    size_t n = 0;
    for (const char *p = ids; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[40];
        if (len == 0 || len >= sizeof one) {
            bad_param(resp, "parameter 'traceIds': \"%.*s\" is not a trace ID",
                      (int)(len > 64 ? 64 : len), p);
            free(list);
            return;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        if (n == QUERY_MAX_TRACE_IDS) {
            bad_param(resp, "parameter 'traceIds': more than %d IDs", QUERY_MAX_TRACE_IDS);
            free(list);
            return;
        }
        if (parse_trace_id(one, list[n], resp, "parameter 'traceIds'")) {
            free(list);
            return;
        }
        n++;
        p = comma ? comma + 1 : p + len;
    }
    struct sbuf b;
    struct zview v;
    sb_init(&b, QUERY_MAX_BODY);
    zview_init(&v);
    sb_putc(&b, '[');
    size_t shown = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !b.error && !rc; i++) {
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = memcmp(list[i], list[j], 16) == 0;
        if (dup) continue;
        struct span_batch *t = NULL;
        rc = store_get_trace(st, list[i], &t);
        if (rc == -ENOENT || (rc == 0 && t->n_spans == 0)) {
            rc = 0;
        } else if (rc == 0) {
            if (shown++) sb_putc(&b, ',');
            render_trace(&b, &v, t);
        }
        span_batch_destroy(t);
    }
    sb_putc(&b, ']');
    zview_free(&v);
    free(list);
    if (rc) {
        sb_free(&b);
        respond_store_error(resp, "traceMany", rc);
        return;
    }
    respond_json(resp, &b);
}

static int dep_cmp(const void *x, const void *y)
{
    const struct dependency_link *a = x, *b = y;
    int c = strcmp(a->parent, b->parent);
    return c ? c : strcmp(a->child, b->child);
}

/* GET /api/v2/dependencies?endTs=&lookback= (ms; endTs required, as in Zipkin). */
static void handle_dependencies(struct store *st, const struct query_arg *args, size_t n_args,
                                struct query_response *resp)
{
    int64_t end_ms, lookback_ms;
    if (window_params(args, n_args, true, &end_ms, &lookback_ms, resp)) return;
    int64_t end_us = query_ms_to_us(end_ms), lookback_us = query_ms_to_us(lookback_ms);
    struct dependency_link *deps = NULL;
    size_t n = 0;
    int rc = store_dependencies(st, end_us, lookback_us, &deps, &n);
    if (rc) {
        respond_store_error(resp, "dependencies", rc);
        return;
    }
    if (n > 1) qsort(deps, n, sizeof *deps, dep_cmp);
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_putc(&b, '[');
    bool first = true;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint64_t calls = 0, errors = 0;
        for (; j < n && dep_cmp(&deps[i], &deps[j]) == 0; j++) {
            calls += deps[j].call_count;
            errors += deps[j].error_count;
        }
        if (!first) sb_putc(&b, ',');
        first = false;
        sb_puts(&b, "{\"parent\":");
        sb_json_cstr(&b, deps[i].parent);
        sb_puts(&b, ",\"child\":");
        sb_json_cstr(&b, deps[i].child);
        sb_puts(&b, ",\"callCount\":");
        sb_uint(&b, calls);
        if (errors) { /* Zipkin's DependencyLink JSON leaves out a zero errorCount */
            sb_puts(&b, ",\"errorCount\":");
            sb_uint(&b, errors);
        }
        sb_putc(&b, '}');
        i = j;
    }
    sb_putc(&b, ']');
    store_free_dependencies(deps, n);
    respond_json(resp, &b);
}

/* ----- routing ---------------------------------------------------------------------------- */

int zipkin_query_handle(struct store *st, const char *path, const struct query_arg *args,
                        size_t n_args, struct query_response *resp)
{
    if (!path || strncmp(path, "/api/v2/", 8) != 0) return -ENOENT;
    const char *r = path + 8;
    if (!args) n_args = 0;
    if (strcmp(r, "services") == 0)
        handle_services(st, resp);
    else if (strcmp(r, "spans") == 0)
        handle_span_names(st, args, n_args, resp);
    else if (strcmp(r, "remoteServices") == 0)
        handle_remote_services(st, args, n_args, resp);
    else if (strcmp(r, "traces") == 0)
        handle_traces(st, args, n_args, resp);
    else if (strncmp(r, "trace/", 6) == 0 && r[6] && !strchr(r + 6, '/'))
        handle_trace(st, r + 6, resp);
    else if (strcmp(r, "traceMany") == 0)
        handle_trace_many(st, args, n_args, resp);
    else if (strcmp(r, "dependencies") == 0)
        handle_dependencies(st, args, n_args, resp);
    else if (strcmp(r, "autocompleteKeys") == 0)
        handle_autocomplete_keys(resp);
    else if (strcmp(r, "autocompleteValues") == 0)
        handle_autocomplete_values(st, args, n_args, resp);
    else
        return -ENOENT;
    return 0;
}
