/*
 * otlp_proto.c: the OTLP/protobuf trace decoder (ExportTraceServiceRequest -> span model), and
 * decode_limits_default, shared with the JSON decoder.
 *
 * Three steps, each bounded before it allocates (style rule 7):
 *
 *  1. scan_message walks the wire bytes once, guided by the protobuf-c descriptors. It bounds
 *     message nesting (protobuf-c 1.4 unpacks recursively with no depth limit, so a request of
 *     nested ArrayValues would otherwise overflow the stack) and counts spans, so a request
 *     over max_spans fails with -E2BIG before anything is unpacked.
 *  2. protobuf-c unpacks the request with a counting allocator: the unpacked tree may not
 *     exceed a budget proportional to the body (a flood of empty messages would otherwise
 *     cost ~50 bytes of heap per wire byte).
 *  3. convert_* copy the tree into the batch arena, validating ids and per-span caps; an
 *     invalid span is counted in out->rejected and skipped, the rest kept. The unpacked tree is
 *     freed with __free_unpacked on every path.
 *
 * Policies (the JSON decoder follows the same ones where the encoding allows):
 *  - Strings: proto3 has no absent string; the model gets "" (never NULL) for empty ones.
 *    protobuf-c hands strings over as NUL-terminated char*, so a string with an embedded NUL
 *    ends at the first NUL. Invalid UTF-8 is accepted and each bad sequence replaced with
 *    U+FFFD when copied, so everything downstream (SQLite, JSON rendering) sees valid UTF-8.
 *    Bytes values are copied verbatim (NULs included).
 *  - Depth: AnyValue nesting beyond lim->max_depth rejects the span (or, for resource/scope
 *    attributes, every span under them). Message nesting on the wire beyond
 *    wire_depth_limit() (room for max_depth, clamped to [100, 400]) cannot be unpacked
 *    safely and fails the whole request with -EINVAL.
 *  - Enums: span kind and status code values unknown to us become UNSPECIFIED / UNSET.
 *  - A resource or scope over a cap rejects all the spans under it.
 */
#include "otlp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest pb_request;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_resource_spans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_scope_spans;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Trace__V1__Span__Event pb_event;
typedef Opentelemetry__Proto__Trace__V1__Span__Link pb_link;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;

void decode_limits_default(struct decode_limits *lim)
{
    lim->max_spans = 100000;
    lim->max_attrs = 1024;
    lim->max_events = 1024;
    lim->max_links = 1024;
    lim->max_string = 65536;
    lim->max_depth = 16;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ----- step 1: wire scan ------------------------------------------------------------------- */

/* Base nesting of the deepest non-AnyValue path (request > ResourceSpans > ScopeSpans > Span >
 * Event > KeyValue > AnyValue) plus up to three message levels per AnyValue nesting level, so a
 * request just over max_depth still unpacks and is rejected span by span with a precise
 * message. Never below 100 (protobuf's customary recursion limit); never above 400, which
 * keeps protobuf-c's recursion well inside a thread stack (max_depth above ~120 is therefore
 * enforced on the wire, whole request, rather than per span). */
static unsigned wire_depth_limit(const struct decode_limits *lim)
{
    uint64_t need = 8 + 3 * ((uint64_t)lim->max_depth + 2);
    return need < 100 ? 100 : need > 400 ? 400 : (unsigned)need;
}

struct scan {
    const struct decode_limits *lim;
    unsigned max_depth; /* message nesting */
    uint64_t spans;
    bool nul_in_string; /* a string field holds a NUL byte (see decode: patched to 0xFF) */
    uint8_t *patch;     /* second pass: a writable copy of the body to patch, else NULL */
    int rc;
    char msg[128];
};

static int read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (*pos >= len) return -1;
        uint8_t c = p[(*pos)++];
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Returns 0, or sets sc->rc / sc->msg and returns -1. base is the offset of p in the body. */
static int scan_message(struct scan *sc, const uint8_t *p, size_t len, size_t base,
                        const ProtobufCMessageDescriptor *d, unsigned depth)
{
    size_t pos = 0;
    while (pos < len) {
        size_t at = pos;
        uint64_t tag, v;
        if (read_varint(p, len, &pos, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) goto bad;
        unsigned field = (unsigned)(tag >> 3);
        switch (tag & 7) {
        case 0:
            if (read_varint(p, len, &pos, &v)) goto bad;
            break;
        case 1:
            if (len - pos < 8) goto bad;
            pos += 8;
            break;
        case 5:
            if (len - pos < 4) goto bad;
            pos += 4;
            break;
        case 2: {
            if (read_varint(p, len, &pos, &v) || v > len - pos) goto bad;
            const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, field);
            if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p + pos, 0, (size_t)v)) {
                sc->nul_in_string = true;
                if (sc->patch) {
                    uint8_t *w = sc->patch + base + pos;
                    for (size_t k = 0; k < (size_t)v; k++)
                        if (w[k] == 0) w[k] = 0xff;
                }
            }
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (f->descriptor == &opentelemetry__proto__trace__v1__span__descriptor &&
                    ++sc->spans > sc->lim->max_spans) {
                    sc->rc = -E2BIG;
                    snprintf(sc->msg, sizeof sc->msg, "more than %u spans in one request",
                             sc->lim->max_spans);
                    return -1;
                }
                if (depth + 1 > sc->max_depth) {
                    sc->rc = -EINVAL;
                    snprintf(sc->msg, sizeof sc->msg,
                             "protobuf messages nested deeper than %u (at byte %zu)",
                             sc->max_depth, base + at);
                    return -1;
                }
                if (scan_message(sc, p + pos, (size_t)v, base + pos, f->descriptor, depth + 1))
                    return -1;
            }
            pos += (size_t)v;
            break;
        }
        default: /* groups (3, 4) are not supported by protobuf-c; 6 and 7 do not exist */
            goto bad;
        }
    }
    return 0;
bad:
    sc->rc = -EINVAL;
    snprintf(sc->msg, sizeof sc->msg, "malformed protobuf near byte %zu", base + pos);
    return -1;
}

/* ----- step 2: counting allocator ---------------------------------------------------------- */

struct budget {
    struct arena *arena; /* everything protobuf-c allocates; freed in one go after conversion */
    size_t used;
    size_t limit;
    bool exceeded;
    bool oom;
};

/* protobuf-c's allocations come from a per-request arena: unpacking a batch makes thousands of
 * small objects, and malloc/free of each one was the largest single cost of ingest. */
static void *budget_alloc(void *data, size_t size)
{
    struct budget *bd = data;
    if (size > bd->limit - bd->used) {
        bd->exceeded = true;
        return NULL;
    }
    void *p = arena_alloc(bd->arena, size);
    if (!p) {
        bd->oom = true;
        return NULL;
    }
    bd->used += size;
    return p;
}

/* Freed with the arena. */
static void budget_free(void *data, void *ptr)
{
}

/* ----- step 3: conversion ------------------------------------------------------------------ */

struct conv {
    struct span_batch *b;
    const struct decode_limits *lim;
    char why[160]; /* detail of the current refusal, relative to the object being converted */
};

/* Conversion helpers return 0, 1 (the object breaks a cap: c->why says how) or -ENOMEM. */
#define REFUSE 1

/* snprintf for message paths: a path cut short is acceptable (and keeps gcc's
 * -Wformat-truncation, which cannot see that, quiet). */
static void pathf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static int refuse(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct conv *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    return REFUSE;
}

/* Counts the refusal of n spans and keeps the first reason (in the arena). */
static int reject(struct span_batch *b, uint32_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reject(struct span_batch *b, uint32_t n, const char *fmt, ...)
{
    b->rejected += n;
    if (b->reject_reason || n == 0) return 0;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0) return 0;
    if ((size_t)len >= sizeof buf) len = sizeof buf - 1;
    b->reject_reason = arena_strndup(b->arena, buf, (size_t)len);
    return b->reject_reason ? 0 : -ENOMEM;
}

/* Length of the longest valid UTF-8 sequence at s (1..4), or 0 if the bytes there are not one
 * (overlongs, surrogates and code points above U+10FFFF are invalid, as in RFC 3629). */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (len < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* Copies a NUL-terminated protobuf-c string into the arena, replacing invalid UTF-8 with
 * U+FFFD. A string over max_string bytes is refused. */
static int copy_str(struct conv *c, const char *s, struct mstr *out, const char *what)
{
    size_t len = s ? strlen(s) : 0;
    if (len > c->lim->max_string)
        return refuse(c, "%s: string of %zu bytes, max %u", what, len, c->lim->max_string);
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, bad = 0;
    while (i < len) {
        size_t n = utf8_seq(u + i, len - i);
        if (n) {
            i += n;
        } else {
            bad++;
            i++;
        }
    }
    char *p;
    size_t outlen = len;
    if (!bad) {
        p = arena_strndup(c->b->arena, len ? s : "", len);
        if (!p) return -ENOMEM;
    } else {
        outlen = len + 2 * bad; /* each bad byte (1) becomes U+FFFD (3) */
        p = arena_alloc(c->b->arena, outlen + 1);
        if (!p) return -ENOMEM;
        size_t o = 0;
        i = 0;
        while (i < len) {
            size_t n = utf8_seq(u + i, len - i);
            if (n) {
                memcpy(p + o, u + i, n);
                o += n;
                i += n;
            } else {
                memcpy(p + o, "\xef\xbf\xbd", 3);
                o += 3;
                i++;
            }
        }
        p[o] = '\0';
    }
    out->ptr = p;
    out->len = (uint32_t)outlen;
    return 0;
}

static int convert_kvs(struct conv *c, pb_kv *const *kvs, size_t n, struct attr **items,
                       uint32_t *n_out, unsigned depth, const char *what);

/* depth = number of arrays/kvlists around this value. */
static int convert_value(struct conv *c, const pb_any *in, struct value *out, unsigned depth,
                         const char *what)
{
    if (!in) {
        out->type = VALUE_EMPTY;
        return 0;
    }
    switch (in->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        out->type = VALUE_STRING;
        return copy_str(c, in->string_value, &out->u.str, what);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
        out->type = VALUE_BOOL;
        out->u.b = in->bool_value != 0;
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
        out->type = VALUE_INT;
        out->u.i = in->int_value;
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
        out->type = VALUE_DOUBLE;
        out->u.d = in->double_value;
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE: {
        out->type = VALUE_BYTES;
        size_t len = in->bytes_value.len;
        if (len > c->lim->max_string)
            return refuse(c, "%s: bytes value of %zu bytes, max %u", what, len,
                          c->lim->max_string);
        char *p = arena_strndup(c->b->arena, len ? (const char *)in->bytes_value.data : "", len);
        if (!p) return -ENOMEM;
        out->u.str.ptr = p;
        out->u.str.len = (uint32_t)len;
        return 0;
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE: {
        out->type = VALUE_ARRAY;
        if (depth + 1 > c->lim->max_depth)
            return refuse(c, "%s: values nested deeper than %u", what, c->lim->max_depth);
        const Opentelemetry__Proto__Common__V1__ArrayValue *a = in->array_value;
        size_t n = a ? a->n_values : 0;
        if (n > c->lim->max_attrs)
            return refuse(c, "%s: array of %zu values, max %u", what, n, c->lim->max_attrs);
        if (!n) return 0;
        struct value *items = arena_alloc(c->b->arena, n * sizeof *items);
        if (!items) return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            int rc = convert_value(c, a->values[i], &items[i], depth + 1, what);
            if (rc) return rc;
        }
        out->u.array.items = items;
        out->u.array.n = (uint32_t)n;
        return 0;
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE: {
        out->type = VALUE_KVLIST;
        if (depth + 1 > c->lim->max_depth)
            return refuse(c, "%s: values nested deeper than %u", what, c->lim->max_depth);
        const Opentelemetry__Proto__Common__V1__KeyValueList *l = in->kvlist_value;
        if (!l) return 0;
        return convert_kvs(c, l->values, l->n_values, &out->u.kvlist.items, &out->u.kvlist.n,
                           depth + 1, what);
    }
    default:
        out->type = VALUE_EMPTY;
        return 0;
    }
}

static int convert_kvs(struct conv *c, pb_kv *const *kvs, size_t n, struct attr **items,
                       uint32_t *n_out, unsigned depth, const char *what)
{
    *items = NULL;
    *n_out = 0;
    if (n > c->lim->max_attrs)
        return refuse(c, "%s: %zu attributes, max %u", what, n, c->lim->max_attrs);
    if (!n) return 0;
    struct attr *a = arena_alloc(c->b->arena, n * sizeof *a);
    if (!a) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        /* The path names the attribute only when a refusal needs it: formatting it for every
         * attribute was a measurable share of ingest CPU. */
        int rc = copy_str(c, kvs[i]->key, &a[i].key, what);
        if (!rc) rc = convert_value(c, kvs[i]->value, &a[i].value, depth, what);
        if (rc == REFUSE) {
            size_t wlen = strlen(what);
            char rest[sizeof c->why];
            snprintf(rest, sizeof rest, "%s", strncmp(c->why, what, wlen) == 0 ? c->why + wlen : c->why);
            pathf(c->why, sizeof c->why, "%s[%zu]%s", what, i, rest);
        }
        if (rc) return rc;
    }
    *items = a;
    *n_out = (uint32_t)n;
    return 0;
}

static int convert_attrs(struct conv *c, pb_kv *const *kvs, size_t n, uint32_t dropped,
                         struct attrs *out, const char *what)
{
    out->dropped = dropped;
    return convert_kvs(c, kvs, n, &out->items, &out->n, 0, what);
}

static int check_id(struct conv *c, const ProtobufCBinaryData *id, size_t want, bool zero_ok,
                    const char *what)
{
    if (id->len != want) return refuse(c, "%s: length %zu, want %zu", what, id->len, want);
    if (!zero_ok && id_is_zero(id->data, want)) return refuse(c, "%s: all zero", what);
    return 0;
}

static int convert_span(struct conv *c, const pb_span *in, struct span *s)
{
    int rc;
    if ((rc = check_id(c, &in->trace_id, 16, false, "trace_id"))) return rc;
    if ((rc = check_id(c, &in->span_id, 8, false, "span_id"))) return rc;
    if (in->parent_span_id.len != 0 &&
        (rc = check_id(c, &in->parent_span_id, 8, true, "parent_span_id")))
        return rc;
    if (in->n_events > c->lim->max_events)
        return refuse(c, "events: %zu events, max %u", in->n_events, c->lim->max_events);
    if (in->n_links > c->lim->max_links)
        return refuse(c, "links: %zu links, max %u", in->n_links, c->lim->max_links);

    memcpy(s->trace_id, in->trace_id.data, 16);
    memcpy(s->span_id, in->span_id.data, 8);
    if (in->parent_span_id.len == 8 && !id_is_zero(in->parent_span_id.data, 8)) {
        memcpy(s->parent_span_id, in->parent_span_id.data, 8);
        s->has_parent = true;
    }
    s->flags = in->flags;
    int kind = (int)in->kind;
    s->kind = kind >= 0 && kind <= (int)SPAN_KIND_CONSUMER ? (enum span_kind)kind
                                                           : SPAN_KIND_UNSPECIFIED;
    s->start_unix_nano = in->start_time_unix_nano;
    s->end_unix_nano = in->end_time_unix_nano;
    s->dropped_events = in->dropped_events_count;
    s->dropped_links = in->dropped_links_count;
    if ((rc = copy_str(c, in->trace_state, &s->trace_state, "trace_state"))) return rc;
    if ((rc = copy_str(c, in->name, &s->name, "name"))) return rc;
    if ((rc = convert_attrs(c, in->attributes, in->n_attributes, in->dropped_attributes_count,
                            &s->attrs, "attributes")))
        return rc;

    const char *status_msg = in->status ? in->status->message : "";
    int code = in->status ? (int)in->status->code : 0;
    s->status_code = code >= 0 && code <= STATUS_ERROR ? (enum status_code)code : STATUS_UNSET;
    if ((rc = copy_str(c, status_msg, &s->status_message, "status.message"))) return rc;

    if (in->n_events) {
        s->events = arena_alloc(c->b->arena, in->n_events * sizeof *s->events);
        if (!s->events) return -ENOMEM;
        for (size_t i = 0; i < in->n_events; i++) {
            const pb_event *e = in->events[i];
            struct span_event *se = &s->events[i];
            char where[64];
            se->time_unix_nano = e->time_unix_nano;
            pathf(where, sizeof where, "events[%zu].name", i);
            if ((rc = copy_str(c, e->name, &se->name, where))) return rc;
            pathf(where, sizeof where, "events[%zu].attributes", i);
            if ((rc = convert_attrs(c, e->attributes, e->n_attributes,
                                    e->dropped_attributes_count, &se->attrs, where)))
                return rc;
        }
        s->n_events = (uint32_t)in->n_events;
    }
    if (in->n_links) {
        s->links = arena_alloc(c->b->arena, in->n_links * sizeof *s->links);
        if (!s->links) return -ENOMEM;
        for (size_t i = 0; i < in->n_links; i++) {
            const pb_link *l = in->links[i];
            struct span_link *sl = &s->links[i];
            char where[64];
            pathf(where, sizeof where, "links[%zu].trace_id", i);
            if ((rc = check_id(c, &l->trace_id, 16, true, where))) return rc;
            pathf(where, sizeof where, "links[%zu].span_id", i);
            if ((rc = check_id(c, &l->span_id, 8, true, where))) return rc;
            memcpy(sl->trace_id, l->trace_id.data, 16);
            memcpy(sl->span_id, l->span_id.data, 8);
            sl->flags = l->flags;
            pathf(where, sizeof where, "links[%zu].trace_state", i);
            if ((rc = copy_str(c, l->trace_state, &sl->trace_state, where))) return rc;
            pathf(where, sizeof where, "links[%zu].attributes", i);
            if ((rc = convert_attrs(c, l->attributes, l->n_attributes,
                                    l->dropped_attributes_count, &sl->attrs, where)))
                return rc;
        }
        s->n_links = (uint32_t)in->n_links;
    }
    return 0;
}

static uint32_t count_spans(const pb_resource_spans *rs)
{
    uint64_t n = 0;
    for (size_t i = 0; i < rs->n_scope_spans; i++) n += rs->scope_spans[i]->n_spans;
    return (uint32_t)n; /* bounded by max_spans (checked by the scan) */
}

static int convert_scope_spans(struct conv *c, const pb_scope_spans *ss,
                               const struct resource *res, size_t ri, size_t si)
{
    struct scope *sc = arena_alloc(c->b->arena, sizeof *sc);
    if (!sc) return -ENOMEM;
    const Opentelemetry__Proto__Common__V1__InstrumentationScope *in = ss->scope;
    int rc = copy_str(c, ss->schema_url, &sc->schema_url, "schema_url");
    if (!rc) rc = copy_str(c, in ? in->name : "", &sc->name, "scope.name");
    if (!rc) rc = copy_str(c, in ? in->version : "", &sc->version, "scope.version");
    if (!rc && in)
        rc = convert_attrs(c, in->attributes, in->n_attributes, in->dropped_attributes_count,
                           &sc->attrs, "scope.attributes");
    if (rc == REFUSE)
        return reject(c->b, (uint32_t)ss->n_spans, "resource_spans[%zu].scope_spans[%zu].%s", ri,
                      si, c->why);
    if (rc) return rc;

    for (size_t i = 0; i < ss->n_spans; i++) {
        struct span *s = span_batch_add(c->b);
        if (!s) return -ENOMEM;
        s->resource = res;
        s->scope = sc;
        rc = convert_span(c, ss->spans[i], s);
        if (rc == REFUSE) {
            span_batch_drop_last(c->b);
            rc = reject(c->b, 1, "resource_spans[%zu].scope_spans[%zu].spans[%zu].%s", ri, si, i,
                        c->why);
        }
        if (rc) return rc;
    }
    return 0;
}

static int convert_request(struct conv *c, const pb_request *req)
{
    for (size_t ri = 0; ri < req->n_resource_spans; ri++) {
        const pb_resource_spans *rs = req->resource_spans[ri];
        struct resource *res = arena_alloc(c->b->arena, sizeof *res);
        if (!res) return -ENOMEM;
        int rc = copy_str(c, rs->schema_url, &res->schema_url, "schema_url");
        if (!rc && rs->resource)
            rc = convert_attrs(c, rs->resource->attributes, rs->resource->n_attributes,
                               rs->resource->dropped_attributes_count, &res->attrs,
                               "resource.attributes");
        if (rc == REFUSE) {
            rc = reject(c->b, count_spans(rs), "resource_spans[%zu].%s", ri, c->why);
            if (rc) return rc;
            continue;
        }
        if (rc) return rc;
        for (size_t si = 0; si < rs->n_scope_spans; si++) {
            rc = convert_scope_spans(c, rs->scope_spans[si], res, ri, si);
            if (rc) return rc;
        }
    }
    return 0;
}

int otlp_decode_traces_proto(const uint8_t *body, size_t len, const struct decode_limits *lim,
                             struct span_batch *out, char *err, size_t errlen)
{
    struct decode_limits defaults;
    if (!lim) {
        decode_limits_default(&defaults);
        lim = &defaults;
    }
    if (len && !body) return -EINVAL;

    struct scan sc = {.lim = lim, .max_depth = wire_depth_limit(lim)};
    if (scan_message(&sc, body, len, 0,
                     &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
                     0)) {
        set_err(err, errlen, "%s", sc.msg);
        return sc.rc;
    }
    /* protobuf-c hands string fields over NUL-terminated without their length, so a NUL inside a
     * string would silently cut it short. In that (rare) case decode a copy of the body in which
     * every NUL inside a string field is 0xFF, an invalid UTF-8 byte that copy_str turns into
     * U+FFFD like any other: the string keeps its length and says where the NUL was. */
    uint8_t *patched = NULL;
    if (sc.nul_in_string) {
        patched = malloc(len);
        if (!patched) {
            set_err(err, errlen, "out of memory decoding the request");
            return -ENOMEM;
        }
        memcpy(patched, body, len);
        sc.patch = patched;
        sc.spans = 0;
        scan_message(&sc, body, len, 0,
                     &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
                     0);
        body = patched;
    }

    /* The heaviest wire-to-heap ratio is an empty sub-message: 2 bytes on the wire, a struct of
     * up to ~200 bytes (Span) plus a pointer once unpacked. Spans are counted and bounded by the
     * scan, so charge them apart; 16 per byte covers every other honest message (real requests
     * unpack to 3-5 times their size) and bounds what one request can take (README: memory). */
    struct budget bd = {.limit = (len < (SIZE_MAX >> 5) ? len * 16 : SIZE_MAX / 2) +
                                 (size_t)sc.spans * 256 + (1u << 20)};
    int rc;
    bd.arena = arena_create(len * 4 + 4096);
    if (!bd.arena) {
        rc = -ENOMEM;
        goto out;
    }
    ProtobufCAllocator alloc = {.alloc = budget_alloc, .free = budget_free, .allocator_data = &bd};
    pb_request *req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
        &alloc, len, body);
    if (!req) {
        if (bd.oom) {
            rc = -ENOMEM;
        } else if (bd.exceeded) {
            set_err(err, errlen, "request too large once decoded (over %zu bytes)", bd.limit);
            rc = -E2BIG;
        } else {
            set_err(err, errlen, "undecodable ExportTraceServiceRequest protobuf");
            rc = -EINVAL;
        }
        goto out;
    }
    struct conv c = {.b = out, .lim = lim};
    rc = convert_request(&c, req);
    /* The unpacked message lives wholly in the arena: destroying it is free_unpacked. */
out:
    arena_destroy(bd.arena);
    free(patched);
    if (rc == -ENOMEM) set_err(err, errlen, "out of memory decoding the request");
    return rc;
}
