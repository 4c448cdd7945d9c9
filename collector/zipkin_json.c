/*
 * zipkin_json.c: the Zipkin v2 JSON span decoder (POST /api/v2/spans, application/json), and the
 * mapping of a decoded Zipkin span into the span model shared with the proto3 decoder
 * (zipkin_build_span; the mapping table is in zipkin.h).
 *
 * The body is parsed whole by jansson (nesting beyond 2048 levels fails as invalid JSON), the
 * spans are counted against max_spans before anything is copied, then each span is read into a
 * struct zipkin_span_in that borrows the jansson tree, mapped into the batch arena, and the tree
 * is released with json_decref.
 *
 * What is accepted, following Zipkin's own JSON reader where it is reasonable:
 *  - the body is a JSON array of span objects; null elements are skipped; unknown keys are
 *    ignored; a null member means absent.
 *  - traceId / id / parentId as hex strings of any case (see zipkin.h for the lengths).
 *  - timestamp, duration, annotation timestamps as JSON numbers (µs; fractions kept as ns);
 *    port as an integer; debug and shared as booleans.
 *  - tag values as strings, or numbers and booleans (kept as their JSON text); a null tag
 *    value drops the tag.
 *  - kind as "CLIENT", "SERVER", "PRODUCER", "CONSUMER" (any case); other names as absent.
 *  - ipv4 / ipv6 in text form; an unparsable address is ignored, as Zipkin ignores it.
 * A known member of the wrong JSON type fails the whole request (-EINVAL) with its path, e.g.
 * "spans[3].timestamp: expected a number, got a string"; an invalid span (bad ids, a cap
 * exceeded, a timestamp beyond 2^64 ns) is rejected alone.
 */
#include "zipkin.h"
#include "decode.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ----- common: strings ---------------------------------------------------------------------- */

int zipkin_refuse(struct zipkin_builder *zb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(zb->why, sizeof zb->why, fmt, ap);
    va_end(ap);
    return DECODE_REFUSE;
}

/* Copies in into the arena: invalid UTF-8 and NULs become U+FFFD; lower-cases ASCII if lower.
 * Over max_string input bytes -> DECODE_REFUSE. */
static int copy_str(struct zipkin_builder *zb, struct zipkin_str_in in, bool lower,
                    struct mstr *out, const char *what)
{
    if (in.len > zb->lim->max_string)
        return zipkin_refuse(zb, "%s: string of %zu bytes, max %u", what, in.len,
                             zb->lim->max_string);
    int rc = decode_copy_utf8(zb->b->arena, in.ptr, in.len, out);
    if (rc || !lower) return rc;
    char *p = (char *)out->ptr; /* just copied into the arena: ours to change */
    for (size_t i = 0; i < out->len; i++)
        if (p[i] >= 'A' && p[i] <= 'Z') p[i] = (char)(p[i] - 'A' + 'a');
    return 0;
}

static bool zstr_is(struct zipkin_str_in s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.ptr, lit, n) == 0);
}

static bool zstr_eq(struct zipkin_str_in a, struct zipkin_str_in b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* ----- common: the mapping (zipkin.h MAPPING) ---------------------------------------------- */

static struct attr *next_attr(struct attr *items, uint32_t *n, const char *key)
{
    struct attr *a = &items[(*n)++];
    a->key.ptr = key;
    a->key.len = (uint32_t)strlen(key);
    return a;
}

static int ip_text(struct zipkin_builder *zb, int af, const uint8_t *addr, struct mstr *out)
{
    char buf[INET6_ADDRSTRLEN];
    if (!inet_ntop(af, addr, buf, sizeof buf)) buf[0] = '\0';
    size_t len = strlen(buf);
    char *p = arena_strndup(zb->b->arena, buf, len);
    if (!p) return -ENOMEM;
    out->ptr = p;
    out->len = (uint32_t)len;
    return 0;
}

/* Adds the attributes of an endpoint: keys[0] service, [1] primary address, [2] second (IPv6)
 * address, [3] port. */
static int endpoint_attrs(struct zipkin_builder *zb, const struct zipkin_endpoint_in *ep,
                          const char *const keys[4], struct attr *items, uint32_t *n,
                          const char *what)
{
    int rc;
    if (ep->service && ep->service_len) {
        struct attr *a = next_attr(items, n, keys[0]);
        a->value.type = VALUE_STRING;
        struct zipkin_str_in s = {ep->service, ep->service_len};
        char w[64];
        snprintf(w, sizeof w, "%s.serviceName", what);
        if ((rc = copy_str(zb, s, true, &a->value.u.str, w))) return rc;
    }
    if (ep->has_ipv4 || ep->has_ipv6) {
        struct attr *a = next_attr(items, n, keys[1]);
        a->value.type = VALUE_STRING;
        if ((rc = ep->has_ipv4 ? ip_text(zb, AF_INET, ep->ipv4, &a->value.u.str)
                               : ip_text(zb, AF_INET6, ep->ipv6, &a->value.u.str)))
            return rc;
    }
    if (ep->has_ipv4 && ep->has_ipv6) {
        struct attr *a = next_attr(items, n, keys[2]);
        a->value.type = VALUE_STRING;
        if ((rc = ip_text(zb, AF_INET6, ep->ipv6, &a->value.u.str))) return rc;
    }
    if (ep->port > 0) {
        struct attr *a = next_attr(items, n, keys[3]);
        a->value.type = VALUE_INT;
        a->value.u.i = ep->port;
    }
    return 0;
}

static bool endpoint_eq(const struct zipkin_endpoint_in *a, const struct zipkin_endpoint_in *b)
{
    struct zipkin_str_in sa = {a->service, a->service ? a->service_len : 0};
    struct zipkin_str_in sb = {b->service, b->service ? b->service_len : 0};
    return a->present == b->present && zstr_eq(sa, sb) && a->has_ipv4 == b->has_ipv4 &&
           a->has_ipv6 == b->has_ipv6 && (!a->has_ipv4 || memcmp(a->ipv4, b->ipv4, 4) == 0) &&
           (!a->has_ipv6 || memcmp(a->ipv6, b->ipv6, 16) == 0) &&
           (a->port > 0 ? a->port : 0) == (b->port > 0 ? b->port : 0);
}

static const char *const local_keys[4] = {"service.name", "host.ip", "zipkin.local_endpoint.ipv6",
                                          "zipkin.local_endpoint.port"};
static const char *const remote_keys[4] = {"peer.service", "network.peer.address",
                                           "zipkin.remote_endpoint.ipv6", "network.peer.port"};

/* The resource for a local endpoint: the previous span's when the endpoint is the same. */
static int resource_for(struct zipkin_builder *zb, const struct zipkin_endpoint_in *ep,
                        const struct resource **out)
{
    if (zb->last_res && endpoint_eq(ep, &zb->last_local)) {
        *out = zb->last_res;
        return 0;
    }
    struct resource *res = arena_alloc(zb->b->arena, sizeof *res);
    struct attr *items = arena_alloc(zb->b->arena, 4 * sizeof *items);
    if (!res || !items) return -ENOMEM;
    res->schema_url.ptr = "";
    uint32_t n = 0;
    int rc = endpoint_attrs(zb, ep, local_keys, items, &n, "localEndpoint");
    if (rc) return rc;
    res->attrs.items = n ? items : NULL;
    res->attrs.n = n;
    zb->last_res = res;
    zb->last_local = *ep;
    *out = res;
    return 0;
}

struct attr_order {
    const struct attr *a;
    uint32_t idx;
};

static int attr_order_cmp(const void *x, const void *y)
{
    const struct attr_order *a = x, *b = y;
    uint32_t la = a->a->key.len, lb = b->a->key.len;
    int c = memcmp(a->a->key.ptr, b->a->key.ptr, la < lb ? la : lb);
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Drops all but the last attribute of each key, keeping the order of those left. */
static int dedupe_attrs(struct attr *items, uint32_t *n)
{
    if (*n < 2) return 0;
    struct attr_order *ord = malloc(*n * sizeof *ord);
    bool *drop = calloc(*n, sizeof *drop);
    if (!ord || !drop) {
        free(ord);
        free(drop);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < *n; i++)
        ord[i] = (struct attr_order){&items[i], i};
    qsort(ord, *n, sizeof *ord, attr_order_cmp);
    bool any = false;
    for (uint32_t i = 0; i + 1 < *n; i++) {
        const struct mstr *k = &ord[i].a->key, *next = &ord[i + 1].a->key;
        if (k->len == next->len && memcmp(k->ptr, next->ptr, k->len) == 0) {
            drop[ord[i].idx] = true;
            any = true;
        }
    }
    if (any) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < *n; i++)
            if (!drop[i]) items[k++] = items[i];
        *n = k;
    }
    free(ord);
    free(drop);
    return 0;
}

/* "OK", "ERROR", "UNSET" (any case, optionally prefixed STATUS_CODE_) -> the code; -1 else. */
static int status_code_parse(struct zipkin_str_in v)
{
    char buf[24];
    size_t off = 0;
    if (v.len >= sizeof buf) return -1;
    memcpy(buf, v.ptr, v.len);
    buf[v.len] = '\0';
    if (strncasecmp(buf, "STATUS_CODE_", 12) == 0) off = 12;
    if (strcasecmp(buf + off, "OK") == 0) return STATUS_OK;
    if (strcasecmp(buf + off, "ERROR") == 0) return STATUS_ERROR;
    if (strcasecmp(buf + off, "UNSET") == 0) return STATUS_UNSET;
    return -1;
}

static int build_span(struct zipkin_builder *zb, const struct zipkin_span_in *in, struct span *s)
{
    const struct decode_limits *lim = zb->lim;
    int rc;
    memcpy(s->trace_id, in->trace_id, 16);
    memcpy(s->span_id, in->id, 8);
    if (in->has_parent && !id_is_zero(in->parent_id, 8) && memcmp(in->parent_id, in->id, 8)) {
        memcpy(s->parent_span_id, in->parent_id, 8);
        s->has_parent = true;
    }
    s->trace_state.ptr = s->status_message.ptr = "";
    static const enum span_kind kinds[] = {SPAN_KIND_UNSPECIFIED, SPAN_KIND_CLIENT,
                                           SPAN_KIND_SERVER, SPAN_KIND_PRODUCER,
                                           SPAN_KIND_CONSUMER};
    s->kind = in->kind >= 0 && in->kind <= 4 ? kinds[in->kind] : SPAN_KIND_UNSPECIFIED;
    s->start_unix_nano = in->start_ns;
    s->end_unix_nano =
        in->start_ns + in->duration_ns < in->start_ns ? UINT64_MAX : in->start_ns + in->duration_ns;
    if ((rc = copy_str(zb, in->name, true, &s->name, "name"))) return rc;

    /* Tags the mapping consumes (by key: a repeated key is consumed in every copy). */
    const struct zipkin_tag_in *t_error = NULL, *t_code = NULL, *t_desc = NULL, *t_state = NULL;
    bool kind_tag = false;
    for (size_t i = 0; i < in->n_tags; i++) {
        const struct zipkin_tag_in *t = &in->tags[i];
        if (zstr_is(t->key, "error"))
            t_error = t;
        else if (zstr_is(t->key, "otel.status_code"))
            t_code = t;
        else if (zstr_is(t->key, "otel.status_description"))
            t_desc = t;
        else if (zstr_is(t->key, "w3c.tracestate"))
            t_state = t;
        else if (zstr_is(t->key, "span.kind") && in->kind == 0 && zstr_is(t->value, "internal"))
            kind_tag = true;
    }
    int code = t_code ? status_code_parse(t_code->value) : -1;
    bool code_used = code >= 0;
    if (code_used) {
        s->status_code = (enum status_code)code;
        if (t_desc && (rc = copy_str(zb, t_desc->value, false, &s->status_message,
                                     "tags.otel.status_description")))
            return rc;
    }
    if (t_error) {
        s->status_code = STATUS_ERROR;
        if (t_error->value.len && !zstr_is(t_error->value, "true") &&
            (rc = copy_str(zb, t_error->value, false, &s->status_message, "tags.error")))
            return rc;
    }
    if (t_state &&
        (rc = copy_str(zb, t_state->value, false, &s->trace_state, "tags.w3c.tracestate")))
        return rc;
    if (kind_tag) s->kind = SPAN_KIND_INTERNAL;

    /* Attributes: the other tags, then the remote endpoint, then shared/debug. */
    size_t cap = in->n_tags + 6;
    struct attr *items = arena_alloc(zb->b->arena, cap * sizeof *items);
    if (!items) return -ENOMEM;
    uint32_t n = 0;
    for (size_t i = 0; i < in->n_tags; i++) {
        const struct zipkin_tag_in *t = &in->tags[i];
        if (zstr_is(t->key, "error") || zstr_is(t->key, "w3c.tracestate") ||
            (code_used &&
             (zstr_is(t->key, "otel.status_code") || zstr_is(t->key, "otel.status_description"))) ||
            (kind_tag && zstr_is(t->key, "span.kind")))
            continue;
        struct attr *a = &items[n++];
        a->value.type = VALUE_STRING;
        if ((rc = copy_str(zb, t->key, false, &a->key, "tags")) ||
            (rc = copy_str(zb, t->value, false, &a->value.u.str, "tags")))
            return rc;
    }
    if ((rc = endpoint_attrs(zb, &in->remote, remote_keys, items, &n, "remoteEndpoint"))) return rc;
    if (in->shared && s->kind != SPAN_KIND_CLIENT) {
        struct attr *a = next_attr(items, &n, "zipkin.shared");
        a->value.type = VALUE_BOOL;
        a->value.u.b = true;
    }
    if (in->debug) {
        struct attr *a = next_attr(items, &n, "zipkin.debug");
        a->value.type = VALUE_BOOL;
        a->value.u.b = true;
    }
    if ((rc = dedupe_attrs(items, &n))) return rc;
    if (n > lim->max_attrs)
        return zipkin_refuse(zb, "tags: %u attributes with the endpoint ones, max %u", n,
                             lim->max_attrs);
    s->attrs.items = n ? items : NULL;
    s->attrs.n = n;

    if (in->n_annotations) {
        s->events = arena_alloc(zb->b->arena, in->n_annotations * sizeof *s->events);
        if (!s->events) return -ENOMEM;
        for (size_t i = 0; i < in->n_annotations; i++) {
            char what[48];
            snprintf(what, sizeof what, "annotations[%zu].value", i);
            s->events[i].time_unix_nano = in->annotations[i].time_ns;
            if ((rc = copy_str(zb, in->annotations[i].value, false, &s->events[i].name, what)))
                return rc;
        }
        s->n_events = (uint32_t)in->n_annotations;
    }
    return 0;
}

int zipkin_build_span(struct zipkin_builder *zb, const struct zipkin_span_in *in)
{
    const struct decode_limits *lim = zb->lim;
    if (in->n_tags > lim->max_attrs)
        return zipkin_refuse(zb, "tags: %zu tags, max %u", in->n_tags, lim->max_attrs);
    if (in->n_annotations > lim->max_events)
        return zipkin_refuse(zb, "annotations: %zu annotations, max %u", in->n_annotations,
                             lim->max_events);
    if (!zb->scope) {
        struct scope *sc = arena_alloc(zb->b->arena, sizeof *sc);
        if (!sc) return -ENOMEM;
        sc->name.ptr = sc->version.ptr = sc->schema_url.ptr = "";
        zb->scope = sc;
    }
    const struct resource *res;
    int rc = resource_for(zb, &in->local, &res);
    if (rc) return rc;
    struct span *s = span_batch_add(zb->b);
    if (!s) return -ENOMEM;
    s->resource = res;
    s->scope = zb->scope;
    rc = build_span(zb, in, s);
    if (rc) span_batch_drop_last(zb->b);
    return rc;
}

/* ----- JSON -------------------------------------------------------------------------------- */

struct jz {
    struct zipkin_builder zb;
    char err[256]; /* -EINVAL message, full path */
    struct zipkin_tag_in *tags;
    size_t cap_tags;
    struct zipkin_annotation_in *anns;
    size_t cap_anns;
};

static int invalid(struct jz *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int invalid(struct jz *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Member key of obj; NULL if absent or null. */
static json_t *member(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static int get_string(struct jz *c, const json_t *obj, const char *key, const char *path,
                      struct zipkin_str_in *out)
{
    json_t *v = member(obj, key);
    out->ptr = "";
    out->len = 0;
    if (!v) return 0;
    if (!json_is_string(v))
        return invalid(c, "%s.%s: expected a string, got %s", path, key, decode_json_type_name(v));
    out->ptr = json_string_value(v);
    out->len = json_string_length(v);
    return 0;
}

static int get_bool(struct jz *c, const json_t *obj, const char *key, const char *path, bool *out)
{
    json_t *v = member(obj, key);
    *out = false;
    if (!v) return 0;
    if (!json_is_boolean(v))
        return invalid(c, "%s.%s: expected a boolean, got %s", path, key, decode_json_type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* A µs JSON number -> ns. Negative -> 0 (Zipkin coerces it to absent); beyond 2^64 ns ->
 * *range = true. */
static int get_micros(struct jz *c, const json_t *obj, const char *key, const char *path,
                      uint64_t *ns, bool *range)
{
    json_t *v = member(obj, key);
    *ns = 0;
    if (!v) return 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i <= 0) return 0;
        if ((uint64_t)i > UINT64_MAX / 1000)
            *range = true;
        else
            *ns = (uint64_t)i * 1000;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v) * 1000.0;
        if (!(d > 0)) return 0; /* negative, zero or NaN */
        if (d >= 18446744073709551616.0)
            *range = true;
        else
            *ns = (uint64_t)(d + 0.5); /* d < 2^64: the conversion is defined */
        return 0;
    }
    return invalid(c, "%s.%s: expected a number, got %s", path, key, decode_json_type_name(v));
}

/* Hex string of exactly 2*n digits into out. */
static bool parse_hex(const char *s, size_t len, uint8_t *out, size_t n)
{
    if (len != 2 * n) return false;
    for (size_t i = 0; i < n; i++) {
        int hi = decode_hexval((unsigned char)s[2 * i]),
            lo = decode_hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static int get_endpoint(struct jz *c, const json_t *span, const char *key, const char *path,
                        struct zipkin_endpoint_in *ep)
{
    memset(ep, 0, sizeof *ep);
    json_t *o = member(span, key);
    if (!o) return 0;
    char sub[96];
    snprintf(sub, sizeof sub, "%s.%s", path, key);
    if (!json_is_object(o))
        return invalid(c, "%s: expected an object, got %s", sub, decode_json_type_name(o));
    ep->present = true;
    struct zipkin_str_in svc, v4, v6;
    int rc;
    if ((rc = get_string(c, o, "serviceName", sub, &svc)) ||
        (rc = get_string(c, o, "ipv4", sub, &v4)) || (rc = get_string(c, o, "ipv6", sub, &v6)))
        return rc;
    ep->service = svc.ptr;
    ep->service_len = svc.len;
    char buf[64];
    if (v4.len && v4.len < sizeof buf) {
        memcpy(buf, v4.ptr, v4.len);
        buf[v4.len] = '\0';
        ep->has_ipv4 = inet_pton(AF_INET, buf, ep->ipv4) == 1;
    }
    if (v6.len && v6.len < sizeof buf) {
        memcpy(buf, v6.ptr, v6.len);
        buf[v6.len] = '\0';
        uint8_t a[16];
        if (inet_pton(AF_INET6, buf, a) == 1) {
            static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            if (memcmp(a, mapped, 12) == 0) { /* Zipkin keeps a v4-mapped address as ipv4 */
                if (!ep->has_ipv4) memcpy(ep->ipv4, a + 12, 4);
                ep->has_ipv4 = true;
            } else {
                memcpy(ep->ipv6, a, 16);
                ep->has_ipv6 = true;
            }
        }
    }
    json_t *port = member(o, "port");
    if (port) {
        if (!json_is_integer(port))
            return invalid(c, "%s.port: expected an integer, got %s", sub,
                           decode_json_type_name(port));
        json_int_t p = json_integer_value(port);
        ep->port = p > 0 && p <= 65535 ? (int32_t)p : 0; /* out of range: absent */
    }
    return 0;
}

/* Reads span i into in (borrowing the tree). Returns 0, DECODE_REFUSE (c->zb.why), -EINVAL,
 * -ENOMEM. */
static int read_span(struct jz *c, const json_t *js, const char *path, struct zipkin_span_in *in)
{
    int rc;
    memset(in, 0, sizeof *in);
    if (!json_is_object(js))
        return invalid(c, "%s: expected an object, got %s", path, decode_json_type_name(js));

    /* Types first (a wrong type fails the request whatever else is wrong with the span). */
    struct zipkin_str_in trace, id, parent, kind;
    bool range = false;
    if ((rc = get_string(c, js, "traceId", path, &trace)) ||
        (rc = get_string(c, js, "id", path, &id)) ||
        (rc = get_string(c, js, "parentId", path, &parent)) ||
        (rc = get_string(c, js, "kind", path, &kind)) ||
        (rc = get_string(c, js, "name", path, &in->name)) ||
        (rc = get_micros(c, js, "timestamp", path, &in->start_ns, &range)) ||
        (rc = get_micros(c, js, "duration", path, &in->duration_ns, &range)) ||
        (rc = get_endpoint(c, js, "localEndpoint", path, &in->local)) ||
        (rc = get_endpoint(c, js, "remoteEndpoint", path, &in->remote)) ||
        (rc = get_bool(c, js, "debug", path, &in->debug)) ||
        (rc = get_bool(c, js, "shared", path, &in->shared)))
        return rc;

    json_t *anns = member(js, "annotations");
    size_t n_anns = 0;
    if (anns && !json_is_array(anns))
        return invalid(c, "%s.annotations: expected an array, got %s", path,
                       decode_json_type_name(anns));
    n_anns = anns ? json_array_size(anns) : 0;
    if (n_anns > c->zb.lim->max_events)
        return zipkin_refuse(&c->zb, "annotations: %zu annotations, max %u", n_anns,
                             c->zb.lim->max_events);
    if ((rc = decode_grow((void **)&c->anns, &c->cap_anns, n_anns, sizeof *c->anns))) return rc;
    size_t k = 0;
    for (size_t i = 0; i < n_anns; i++) {
        json_t *a = json_array_get(anns, i);
        char sub[96];
        snprintf(sub, sizeof sub, "%s.annotations[%zu]", path, i);
        if (json_is_null(a)) continue;
        if (!json_is_object(a))
            return invalid(c, "%s: expected an object, got %s", sub, decode_json_type_name(a));
        struct zipkin_annotation_in *out = &c->anns[k++];
        if ((rc = get_micros(c, a, "timestamp", sub, &out->time_ns, &range)) ||
            (rc = get_string(c, a, "value", sub, &out->value)))
            return rc;
    }
    in->annotations = c->anns;
    in->n_annotations = k;

    json_t *tags = member(js, "tags");
    if (tags && !json_is_object(tags))
        return invalid(c, "%s.tags: expected an object, got %s", path, decode_json_type_name(tags));
    size_t n_tags = tags ? json_object_size(tags) : 0;
    if (n_tags > c->zb.lim->max_attrs)
        return zipkin_refuse(&c->zb, "tags: %zu tags, max %u", n_tags, c->zb.lim->max_attrs);
    if ((rc = decode_grow((void **)&c->tags, &c->cap_tags, n_tags, sizeof *c->tags))) return rc;
    k = 0;
    if (tags) {
        const char *key;
        json_t *v;
        json_object_foreach(tags, key, v)
        {
            struct zipkin_tag_in *t = &c->tags[k];
            char num[40];
            t->key.ptr = key;
            t->key.len = strlen(key);
            switch (json_typeof(v)) {
            case JSON_NULL:
                continue; /* no value: no tag */
            case JSON_STRING:
                t->value.ptr = json_string_value(v);
                t->value.len = json_string_length(v);
                break;
            case JSON_TRUE:
            case JSON_FALSE:
                t->value.ptr = json_is_true(v) ? "true" : "false";
                t->value.len = strlen(t->value.ptr);
                break;
            case JSON_INTEGER:
            case JSON_REAL: {
                if (json_is_integer(v))
                    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                else
                    snprintf(num, sizeof num, "%.17g", json_real_value(v));
                char *p = arena_strndup(c->zb.b->arena, num, strlen(num));
                if (!p) return -ENOMEM;
                t->value.ptr = p;
                t->value.len = strlen(p);
                break;
            }
            default:
                return invalid(c, "%s.tags.%.64s: expected a string, got %s", path, key,
                               decode_json_type_name(v));
            }
            k++;
        }
    }
    in->tags = c->tags;
    in->n_tags = k;

    /* Ids and ranges: an invalid span is rejected alone. */
    if (!trace.len) return zipkin_refuse(&c->zb, "traceId: missing");
    if (trace.len == 16) {
        memset(in->trace_id, 0, 8);
        if (!parse_hex(trace.ptr, 16, in->trace_id + 8, 8))
            return zipkin_refuse(&c->zb, "traceId: not a hex string");
    } else if (trace.len == 32) {
        if (!parse_hex(trace.ptr, 32, in->trace_id, 16))
            return zipkin_refuse(&c->zb, "traceId: not a hex string");
    } else {
        return zipkin_refuse(&c->zb, "traceId: %zu hex digits, want 16 or 32", trace.len);
    }
    if (id_is_zero(in->trace_id, 16)) return zipkin_refuse(&c->zb, "traceId: all zero");
    if (!id.len) return zipkin_refuse(&c->zb, "id: missing");
    if (id.len != 16) return zipkin_refuse(&c->zb, "id: %zu hex digits, want 16", id.len);
    if (!parse_hex(id.ptr, 16, in->id, 8)) return zipkin_refuse(&c->zb, "id: not a hex string");
    if (id_is_zero(in->id, 8)) return zipkin_refuse(&c->zb, "id: all zero");
    if (parent.len) {
        if (parent.len != 16)
            return zipkin_refuse(&c->zb, "parentId: %zu hex digits, want 16", parent.len);
        if (!parse_hex(parent.ptr, 16, in->parent_id, 8))
            return zipkin_refuse(&c->zb, "parentId: not a hex string");
        in->has_parent = true;
    }
    if (range) return zipkin_refuse(&c->zb, "timestamp or duration beyond 2^64 nanoseconds");

    static const char *const kinds[] = {"", "CLIENT", "SERVER", "PRODUCER", "CONSUMER"};
    for (int i = 1; i <= 4; i++)
        if (kind.len == strlen(kinds[i]) && strncasecmp(kind.ptr, kinds[i], kind.len) == 0)
            in->kind = i;
    return 0;
}

static int convert(struct jz *c, const json_t *root)
{
    if (!json_is_array(root))
        return invalid(c, "request: expected an array of spans, got %s",
                       decode_json_type_name(root));
    size_t n = json_array_size(root);
    if (n > c->zb.lim->max_spans) {
        snprintf(c->err, sizeof c->err, "more than %u spans in one request", c->zb.lim->max_spans);
        return -E2BIG;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *js = json_array_get(root, i);
        char path[32];
        snprintf(path, sizeof path, "spans[%zu]", i);
        if (json_is_null(js)) continue;
        struct zipkin_span_in in;
        int rc = read_span(c, js, path, &in);
        if (rc == 0) rc = zipkin_build_span(&c->zb, &in);
        if (rc == DECODE_REFUSE) rc = decode_reject(c->zb.b, 1, "%s.%s", path, c->zb.why);
        if (rc) return rc;
    }
    return 0;
}

int zipkin_decode_spans_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                             struct span_batch *out, char *err, size_t errlen)
{
    struct decode_limits defaults;
    lim = decode_limits_or_default(lim, &defaults);
    json_t *root = decode_json_load(body, len, err, errlen);
    if (!root) return -EINVAL;
    struct jz c = {.zb = {.b = out, .lim = lim}};
    int rc = convert(&c, root);
    json_decref(root);
    free(c.tags);
    free(c.anns);
    if (rc == -ENOMEM) snprintf(c.err, sizeof c.err, "out of memory decoding the request");
    if (rc && err && errlen) snprintf(err, errlen, "%s", c.err);
    return rc;
}
