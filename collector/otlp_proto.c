/*
 * otlp_proto.c: the OTLP/protobuf decoding through protobuf-c (ExportTraceServiceRequest -> span
 * model: otlp_decode_traces_protoc, the reference that otlp_wire.c's one-pass decoder is held
 * to and hands irregular requests to), the request walk and conversions it shares with the log
 * decoder (otlp_int.h, otlp_logs.c), and decode_limits_default, shared with the JSON decoders.
 *
 * Three steps, each bounded before it allocates (style rule 7):
 *
 *  1. pbwire_scan (pbwire.c, shared with zipkin_proto.c) walks the wire bytes once, guided by
 *     the protobuf-c descriptors. It bounds message nesting (protobuf-c 1.4 unpacks
 *     recursively with no depth limit, so a request of nested ArrayValues would otherwise
 *     overflow the stack) and counts spans, so a request over max_spans fails with -E2BIG
 *     before anything is unpacked.
 *  2. protobuf-c unpacks the request with pbwire's counting allocator: the unpacked tree may not
 *     exceed a budget proportional to the body (a flood of empty messages would otherwise
 *     cost ~50 bytes of heap per wire byte).
 *  3. convert_* copy the tree into the batch arena, validating ids and per-span caps; an
 *     invalid span is counted in out->rejected and skipped, the rest kept. The unpacked tree is
 *     freed with __free_unpacked on every path.
 *
 * Policies (the JSON decoder follows the same ones where the encoding allows):
 *  - Strings: proto3 has no absent string; the model gets "" (never NULL) for empty ones.
 *    protobuf-c hands strings over as NUL-terminated char*, so an embedded NUL is made 0xFF
 *    on the wire before unpacking (pbwire.h) and arrives as U+FFFD. Invalid UTF-8 is accepted
 *    and each bad sequence replaced with U+FFFD when copied (decode_copy_utf8), so everything
 *    downstream (SQLite, JSON rendering) sees valid UTF-8.
 *    Bytes values are copied verbatim (NULs included).
 *  - Depth: AnyValue nesting beyond lim->max_depth rejects the span (or, for resource/scope
 *    attributes, every span under them). Message nesting on the wire beyond
 *    otlp_pb_wire_depth() (room for max_depth, clamped to [100, 400]) cannot be unpacked
 *    safely and fails the whole request with -EINVAL.
 *  - Enums: span kind and status code values unknown to us become UNSPECIFIED / UNSET.
 *  - A resource or scope over a cap rejects all the spans under it.
 */
#include "otlp.h"
#include "otlp_int.h"
#include "decode.h"
#include "pbwire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

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

const struct decode_limits *decode_limits_or_default(const struct decode_limits *lim,
                                                     struct decode_limits *storage)
{
    if (lim) return lim;
    decode_limits_default(storage);
    return storage;
}

/* ----- step 1: wire scan ------------------------------------------------------------------- */

/* Base nesting of the deepest non-AnyValue path (request > ResourceSpans > ScopeSpans > Span >
 * Event > KeyValue > AnyValue) plus up to three message levels per AnyValue nesting level, so a
 * request just over max_depth still unpacks and is rejected span by span with a precise
 * message. Never below 100 (protobuf's customary recursion limit); never above 400, which
 * keeps protobuf-c's recursion well inside a thread stack (max_depth above ~120 is therefore
 * enforced on the wire, whole request, rather than per span). */
unsigned otlp_pb_wire_depth(const struct decode_limits *lim)
{
    uint64_t need = 8 + 3 * ((uint64_t)lim->max_depth + 2);
    return need < 100 ? 100 : need > 400 ? 400 : (unsigned)need;
}

/* ----- step 3: conversion (steps 1 and 2 are pbwire.c's) ------------------------------------ */

int otlp_pb_refuse(struct otlp_pbconv *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    return DECODE_REFUSE;
}

int otlp_pb_copy_len(struct otlp_pbconv *c, const char *s, size_t len, struct mstr *out,
                     const char *what)
{
    if (len > c->lim->max_string)
        return otlp_pb_refuse(c, "%s: string of %zu bytes, max %u", what, len, c->lim->max_string);
    return decode_copy_utf8(c->b->arena, len ? s : "", len, out);
}

/* Copies a NUL-terminated protobuf-c string into the arena, replacing invalid UTF-8 with
 * U+FFFD. A string over max_string bytes is refused. */
int otlp_pb_copy_str(struct otlp_pbconv *c, const char *s, struct mstr *out, const char *what)
{
    return otlp_pb_copy_len(c, s, s ? strlen(s) : 0, out, what);
}

static int convert_kvs(struct otlp_pbconv *c, pb_kv *const *kvs, size_t n, struct attr **items,
                       uint32_t *n_out, unsigned depth, const char *what);

void otlp_pb_index_why(struct otlp_pbconv *c, const char *what, size_t i)
{
    size_t wlen = strlen(what);
    char rest[sizeof c->why];
    snprintf(rest, sizeof rest, "%s", strncmp(c->why, what, wlen) == 0 ? c->why + wlen : c->why);
    decode_pathf(c->why, sizeof c->why, "%s[%zu]%s", what, i, rest);
}

/* depth = number of arrays/kvlists around this value. */
int otlp_pb_convert_value(struct otlp_pbconv *c, const pb_any *in, struct value *out,
                          unsigned depth, const char *what)
{
    if (!in) {
        out->type = VALUE_EMPTY;
        return 0;
    }
    switch (in->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        out->type = VALUE_STRING;
        return otlp_pb_copy_str(c, in->string_value, &out->u.str, what);
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
            return otlp_pb_refuse(c, "%s: bytes value of %zu bytes, max %u", what, len,
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
            return otlp_pb_refuse(c, "%s: values nested deeper than %u", what, c->lim->max_depth);
        const Opentelemetry__Proto__Common__V1__ArrayValue *a = in->array_value;
        size_t n = a ? a->n_values : 0;
        if (n > c->lim->max_attrs)
            return otlp_pb_refuse(c, "%s: array of %zu values, max %u", what, n, c->lim->max_attrs);
        if (!n) return 0;
        struct value *items = arena_alloc(c->b->arena, n * sizeof *items);
        if (!items) return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            int rc = otlp_pb_convert_value(c, a->values[i], &items[i], depth + 1, what);
            if (rc) return rc;
        }
        out->u.array.items = items;
        out->u.array.n = (uint32_t)n;
        return 0;
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE: {
        out->type = VALUE_KVLIST;
        if (depth + 1 > c->lim->max_depth)
            return otlp_pb_refuse(c, "%s: values nested deeper than %u", what, c->lim->max_depth);
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

static int convert_kvs(struct otlp_pbconv *c, pb_kv *const *kvs, size_t n, struct attr **items,
                       uint32_t *n_out, unsigned depth, const char *what)
{
    *items = NULL;
    *n_out = 0;
    if (n > c->lim->max_attrs)
        return otlp_pb_refuse(c, "%s: %zu attributes, max %u", what, n, c->lim->max_attrs);
    if (!n) return 0;
    struct attr *a = arena_alloc(c->b->arena, n * sizeof *a);
    if (!a) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        /* The path names the attribute only when a refusal needs it: formatting it for every
         * attribute was a measurable share of ingest CPU. */
        int rc = otlp_pb_copy_str(c, kvs[i]->key, &a[i].key, what);
        if (!rc) rc = otlp_pb_convert_value(c, kvs[i]->value, &a[i].value, depth, what);
        if (rc == DECODE_REFUSE) otlp_pb_index_why(c, what, i);
        if (rc) return rc;
    }
    *items = a;
    *n_out = (uint32_t)n;
    return 0;
}

int otlp_pb_convert_attrs(struct otlp_pbconv *c, pb_kv *const *kvs, size_t n, uint32_t dropped,
                          struct attrs *out, const char *what)
{
    out->dropped = dropped;
    return convert_kvs(c, kvs, n, &out->items, &out->n, 0, what);
}

int otlp_pb_check_id(struct otlp_pbconv *c, const ProtobufCBinaryData *id, size_t want,
                     bool zero_ok, const char *what)
{
    if (id->len != want) return otlp_pb_refuse(c, "%s: length %zu, want %zu", what, id->len, want);
    if (!zero_ok && id_is_zero(id->data, want)) return otlp_pb_refuse(c, "%s: all zero", what);
    return 0;
}

static int convert_span(struct otlp_pbconv *c, const pb_span *in, struct span *s)
{
    int rc;
    if ((rc = otlp_pb_check_id(c, &in->trace_id, 16, false, "trace_id"))) return rc;
    if ((rc = otlp_pb_check_id(c, &in->span_id, 8, false, "span_id"))) return rc;
    if (in->parent_span_id.len != 0 &&
        (rc = otlp_pb_check_id(c, &in->parent_span_id, 8, true, "parent_span_id")))
        return rc;
    if (in->n_events > c->lim->max_events)
        return otlp_pb_refuse(c, "events: %zu events, max %u", in->n_events, c->lim->max_events);
    if (in->n_links > c->lim->max_links)
        return otlp_pb_refuse(c, "links: %zu links, max %u", in->n_links, c->lim->max_links);

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
    if ((rc = otlp_pb_copy_str(c, in->trace_state, &s->trace_state, "trace_state"))) return rc;
    if ((rc = otlp_pb_copy_str(c, in->name, &s->name, "name"))) return rc;
    if ((rc = otlp_pb_convert_attrs(c, in->attributes, in->n_attributes,
                                    in->dropped_attributes_count, &s->attrs, "attributes")))
        return rc;

    const char *status_msg = in->status ? in->status->message : "";
    int code = in->status ? (int)in->status->code : 0;
    s->status_code = code >= 0 && code <= STATUS_ERROR ? (enum status_code)code : STATUS_UNSET;
    if ((rc = otlp_pb_copy_str(c, status_msg, &s->status_message, "status.message"))) return rc;

    if (in->n_events) {
        s->events = arena_alloc(c->b->arena, in->n_events * sizeof *s->events);
        if (!s->events) return -ENOMEM;
        for (size_t i = 0; i < in->n_events; i++) {
            const pb_event *e = in->events[i];
            struct span_event *se = &s->events[i];
            char where[64];
            se->time_unix_nano = e->time_unix_nano;
            decode_pathf(where, sizeof where, "events[%zu].name", i);
            if ((rc = otlp_pb_copy_str(c, e->name, &se->name, where))) return rc;
            decode_pathf(where, sizeof where, "events[%zu].attributes", i);
            if ((rc = otlp_pb_convert_attrs(c, e->attributes, e->n_attributes,
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
            decode_pathf(where, sizeof where, "links[%zu].trace_id", i);
            if ((rc = otlp_pb_check_id(c, &l->trace_id, 16, true, where))) return rc;
            decode_pathf(where, sizeof where, "links[%zu].span_id", i);
            if ((rc = otlp_pb_check_id(c, &l->span_id, 8, true, where))) return rc;
            memcpy(sl->trace_id, l->trace_id.data, 16);
            memcpy(sl->span_id, l->span_id.data, 8);
            sl->flags = l->flags;
            decode_pathf(where, sizeof where, "links[%zu].trace_state", i);
            if ((rc = otlp_pb_copy_str(c, l->trace_state, &sl->trace_state, where))) return rc;
            decode_pathf(where, sizeof where, "links[%zu].attributes", i);
            if ((rc = otlp_pb_convert_attrs(c, l->attributes, l->n_attributes,
                                            l->dropped_attributes_count, &sl->attrs, where)))
                return rc;
        }
        s->n_links = (uint32_t)in->n_links;
    }
    return 0;
}

/* ----- the request walk, shared by every signal (otlp_int.h) -------------------------------
 * Resource<X> and Scope<X> differ in C type between signals but not in field numbers, so the walk
 * reaches their fields through the descriptors. */

static const ProtobufCFieldDescriptor *pb_field(const ProtobufCMessage *m, unsigned id)
{
    return protobuf_c_message_descriptor_get_field(m->descriptor, id);
}

/* Repeated message field id of m: its items (*n of them). */
static ProtobufCMessage *const *pb_repeated(const ProtobufCMessage *m, unsigned id, size_t *n)
{
    const ProtobufCFieldDescriptor *f = pb_field(m, id);
    *n = *(const size_t *)(const void *)((const char *)m + f->quantifier_offset);
    return *(ProtobufCMessage *const *const *)(const void *)((const char *)m + f->offset);
}

/* Singular message (NULL when absent) or string field id of m. */
static const void *pb_pointer(const ProtobufCMessage *m, unsigned id)
{
    return *(const void *const *)(const void *)((const char *)m + pb_field(m, id)->offset);
}

/* Items under one Resource<X> (bounded by max_spans, checked by the scan). */
static uint32_t count_items(const ProtobufCMessage *rx)
{
    size_t n_sx, n = 0, k;
    ProtobufCMessage *const *sx = pb_repeated(rx, 2, &n_sx);
    for (size_t i = 0; i < n_sx; i++) {
        pb_repeated(sx[i], 2, &k);
        n += k;
    }
    return (uint32_t)n;
}

static int convert_scope_items(struct otlp_pbconv *c, const struct otlp_pb_signal *sig,
                               const ProtobufCMessage *sx, const struct resource *res, size_t ri,
                               size_t si)
{
    struct scope *sc = arena_alloc(c->b->arena, sizeof *sc);
    if (!sc) return -ENOMEM;
    const Opentelemetry__Proto__Common__V1__InstrumentationScope *in = pb_pointer(sx, 1);
    size_t n;
    ProtobufCMessage *const *items = pb_repeated(sx, 2, &n);
    int rc = otlp_pb_copy_str(c, pb_pointer(sx, 3), &sc->schema_url, "schema_url");
    if (!rc) rc = otlp_pb_copy_str(c, in ? in->name : "", &sc->name, "scope.name");
    if (!rc) rc = otlp_pb_copy_str(c, in ? in->version : "", &sc->version, "scope.version");
    if (!rc && in)
        rc = otlp_pb_convert_attrs(c, in->attributes, in->n_attributes,
                                   in->dropped_attributes_count, &sc->attrs, "scope.attributes");
    if (rc == DECODE_REFUSE)
        return decode_reject(c->b, (uint32_t)n, "%s[%zu].%s[%zu].%s", sig->resource_field, ri,
                             sig->scope_field, si, c->why);
    if (rc) return rc;

    for (size_t i = 0; i < n; i++) {
        rc = sig->convert_item(c, items[i], res, sc);
        if (rc == DECODE_REFUSE)
            rc = decode_reject(c->b, 1, "%s[%zu].%s[%zu].%s[%zu].%s", sig->resource_field, ri,
                               sig->scope_field, si, sig->items_field, i, c->why);
        if (rc) return rc;
    }
    return 0;
}

static int convert_request(struct otlp_pbconv *c, const struct otlp_pb_signal *sig,
                           const ProtobufCMessage *req)
{
    size_t n_rx;
    ProtobufCMessage *const *rxs = pb_repeated(req, 1, &n_rx);
    for (size_t ri = 0; ri < n_rx; ri++) {
        const ProtobufCMessage *rx = rxs[ri];
        const Opentelemetry__Proto__Resource__V1__Resource *r = pb_pointer(rx, 1);
        struct resource *res = arena_alloc(c->b->arena, sizeof *res);
        if (!res) return -ENOMEM;
        int rc = otlp_pb_copy_str(c, pb_pointer(rx, 3), &res->schema_url, "schema_url");
        if (!rc && r)
            rc = otlp_pb_convert_attrs(c, r->attributes, r->n_attributes,
                                       r->dropped_attributes_count, &res->attrs,
                                       "resource.attributes");
        if (rc == DECODE_REFUSE) {
            rc =
                decode_reject(c->b, count_items(rx), "%s[%zu].%s", sig->resource_field, ri, c->why);
            if (rc) return rc;
            continue;
        }
        if (rc) return rc;
        size_t n_sx;
        ProtobufCMessage *const *sxs = pb_repeated(rx, 2, &n_sx);
        for (size_t si = 0; si < n_sx; si++) {
            rc = convert_scope_items(c, sig, sxs[si], res, ri, si);
            if (rc) return rc;
        }
    }
    return 0;
}

int otlp_pb_decode(const struct otlp_pb_signal *sig, const uint8_t *body, size_t len,
                   const struct decode_limits *lim, struct span_batch *out, char *err,
                   size_t errlen)
{
    struct decode_limits defaults;
    lim = decode_limits_or_default(lim, &defaults);
    if (len && !body) return -EINVAL;

    /* protobuf-c cuts a string at its first NUL: the scan's patched body has those NULs made
     * 0xFF, which otlp_pb_copy_str turns into U+FFFD (pbwire.h).
     * The heaviest wire-to-heap ratio is an empty sub-message: 2 bytes on the wire, a struct of
     * up to ~200 bytes (Span) plus a pointer once unpacked. Items are counted and bounded by the
     * scan, so charge them apart (per_span); 16 per byte covers every other honest message (real
     * requests unpack to 3-5 times their size) and bounds what one request can take (README:
     * memory). */
    struct pbwire_unpack u = {
        .sc = {.root = sig->request,
               .span = sig->item,
               .max_spans = lim->max_spans,
               .max_depth = otlp_pb_wire_depth(lim)},
        .per_span = OTLP_PB_PER_SPAN,
        .slack = OTLP_PB_SLACK,
        .what = sig->request_name,
    };
    int rc = pbwire_unpack(&u, body, len, err, errlen);
    if (!rc) {
        struct otlp_pbconv c = {.b = out, .lim = lim};
        rc = convert_request(&c, sig, u.msg);
    }
    pbwire_unpack_close(&u);
    if (rc == -ENOMEM && err && errlen) snprintf(err, errlen, "out of memory decoding the request");
    return rc;
}

/* ----- traces ------------------------------------------------------------------------------ */

static int convert_span_item(struct otlp_pbconv *c, const ProtobufCMessage *item,
                             const struct resource *res, const struct scope *sc)
{
    struct span *s = span_batch_add(c->b);
    if (!s) return -ENOMEM;
    s->resource = res;
    s->scope = sc;
    int rc = convert_span(c, (const pb_span *)item, s);
    if (rc == DECODE_REFUSE) span_batch_drop_last(c->b);
    return rc;
}

static const struct otlp_pb_signal trace_signal = {
    &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
    &opentelemetry__proto__trace__v1__span__descriptor, "ExportTraceServiceRequest",
    "resource_spans", "scope_spans", "spans", convert_span_item};

int otlp_decode_traces_protoc(const uint8_t *body, size_t len, const struct decode_limits *lim,
                              struct span_batch *out, char *err, size_t errlen)
{
    return otlp_pb_decode(&trace_signal, body, len, lim, out, err, errlen);
}
