/*
 * zipkin_proto.c: the Zipkin v2 proto3 span decoder (POST /api/v2/spans,
 * application/x-protobuf: a zipkin.proto3.ListOfSpans, proto/zipkin/zipkin.proto) into the span
 * model. The mapping itself is shared with the JSON decoder (zipkin_build_span, zipkin.h).
 *
 * Three steps, as in otlp_proto.c, each bounded before it allocates (style rule 7):
 *  1. pbwire_scan (pbwire.c, shared with otlp_proto.c) walks the wire bytes once, guided by
 *     the protobuf-c descriptors (Zipkin's messages nest three deep at most, so recursion is
 *     bounded by the schema): it validates the wire format, counts spans against max_spans
 *     (-E2BIG before anything is unpacked) and notes string fields holding a NUL byte.
 *  2. protobuf-c unpacks the request with pbwire's counting allocator, its budget proportional to
 *     the body (an empty Span is 2 bytes on the wire but ~150 bytes unpacked).
 *  3. each Span is checked (ids) and handed to zipkin_build_span; an invalid span is counted in
 *     out->rejected and skipped. The unpacked tree lives in one arena freed on every path.
 *
 * Strings: protobuf-c hands strings over NUL-terminated without a length, so a NUL inside one
 * would silently cut it short. When the scan finds one, the request is decoded from a copy in
 * which every NUL inside a string field is 0xFF, an invalid UTF-8 byte that the mapping turns
 * into U+FFFD like any other (the JSON decoder does the same with "\u0000").
 * Endpoint addresses of the wrong length are ignored (Zipkin ignores unparsable ones); a
 * v4-mapped ipv6 is kept as the ipv4 address, as Zipkin does.
 */
#include "zipkin.h"
#include "decode.h"
#include "pbwire.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zipkin/zipkin.pb-c.h"

typedef Zipkin__Proto3__ListOfSpans pb_list;
typedef Zipkin__Proto3__Span pb_span;
typedef Zipkin__Proto3__Endpoint pb_endpoint;

/* ----- step 3: conversion (steps 1 and 2 are pbwire.c's) ------------------------------------ */

static struct zipkin_str_in zs(const char *s)
{
    struct zipkin_str_in r = {s ? s : "", s ? strlen(s) : 0};
    return r;
}

static void endpoint_in(const pb_endpoint *e, struct zipkin_endpoint_in *out)
{
    memset(out, 0, sizeof *out);
    if (!e) return;
    out->present = true;
    struct zipkin_str_in svc = zs(e->service_name);
    out->service = svc.ptr;
    out->service_len = svc.len;
    if (e->ipv4.len == 4) {
        memcpy(out->ipv4, e->ipv4.data, 4);
        out->has_ipv4 = true;
    }
    if (e->ipv6.len == 16) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(e->ipv6.data, mapped, 12) == 0) {
            if (!out->has_ipv4) memcpy(out->ipv4, e->ipv6.data + 12, 4);
            out->has_ipv4 = true;
        } else {
            memcpy(out->ipv6, e->ipv6.data, 16);
            out->has_ipv6 = true;
        }
    }
    out->port = e->port > 0 && e->port <= 65535 ? e->port : 0;
}

struct pconv {
    struct zipkin_builder zb;
    struct zipkin_tag_in *tags;
    size_t cap_tags;
    struct zipkin_annotation_in *anns;
    size_t cap_anns;
};

/* Returns 0, DECODE_REFUSE (c->zb.why) or -ENOMEM. */
static int convert_span(struct pconv *c, const pb_span *ps)
{
    const struct decode_limits *lim = c->zb.lim;
    struct zipkin_span_in in;
    memset(&in, 0, sizeof in);
    if (ps->trace_id.len == 0) return zipkin_refuse(&c->zb, "trace_id: missing");
    if (ps->trace_id.len == 8)
        memcpy(in.trace_id + 8, ps->trace_id.data, 8);
    else if (ps->trace_id.len == 16)
        memcpy(in.trace_id, ps->trace_id.data, 16);
    else
        return zipkin_refuse(&c->zb, "trace_id: length %zu, want 8 or 16", ps->trace_id.len);
    if (id_is_zero(in.trace_id, 16)) return zipkin_refuse(&c->zb, "trace_id: all zero");
    if (ps->id.len == 0) return zipkin_refuse(&c->zb, "id: missing");
    if (ps->id.len != 8) return zipkin_refuse(&c->zb, "id: length %zu, want 8", ps->id.len);
    memcpy(in.id, ps->id.data, 8);
    if (id_is_zero(in.id, 8)) return zipkin_refuse(&c->zb, "id: all zero");
    if (ps->parent_id.len) {
        if (ps->parent_id.len != 8)
            return zipkin_refuse(&c->zb, "parent_id: length %zu, want 8", ps->parent_id.len);
        memcpy(in.parent_id, ps->parent_id.data, 8);
        in.has_parent = true;
    }
    if (ps->timestamp > UINT64_MAX / 1000 || ps->duration > UINT64_MAX / 1000)
        return zipkin_refuse(&c->zb, "timestamp or duration beyond 2^64 nanoseconds");
    in.kind = (int)ps->kind >= 0 && (int)ps->kind <= 4 ? (int)ps->kind : 0;
    in.name = zs(ps->name);
    in.start_ns = ps->timestamp * 1000;
    in.duration_ns = ps->duration * 1000;
    endpoint_in(ps->local_endpoint, &in.local);
    endpoint_in(ps->remote_endpoint, &in.remote);
    in.debug = ps->debug;
    in.shared = ps->shared;

    if (ps->n_tags > lim->max_attrs)
        return zipkin_refuse(&c->zb, "tags: %zu tags, max %u", ps->n_tags, lim->max_attrs);
    if (ps->n_annotations > lim->max_events)
        return zipkin_refuse(&c->zb, "annotations: %zu annotations, max %u", ps->n_annotations,
                             lim->max_events);
    if (decode_grow((void **)&c->tags, &c->cap_tags, ps->n_tags, sizeof *c->tags) ||
        decode_grow((void **)&c->anns, &c->cap_anns, ps->n_annotations, sizeof *c->anns))
        return -ENOMEM;
    for (size_t i = 0; i < ps->n_tags; i++) {
        c->tags[i].key = zs(ps->tags[i]->key);
        c->tags[i].value = zs(ps->tags[i]->value);
    }
    for (size_t i = 0; i < ps->n_annotations; i++) {
        uint64_t ts = ps->annotations[i]->timestamp;
        if (ts > UINT64_MAX / 1000)
            return zipkin_refuse(&c->zb, "annotations[%zu].timestamp: beyond 2^64 nanoseconds", i);
        c->anns[i].time_ns = ts * 1000;
        c->anns[i].value = zs(ps->annotations[i]->value);
    }
    in.tags = c->tags;
    in.n_tags = ps->n_tags;
    in.annotations = c->anns;
    in.n_annotations = ps->n_annotations;
    return zipkin_build_span(&c->zb, &in);
}

int zipkin_decode_spans_proto(const uint8_t *body, size_t len, const struct decode_limits *lim,
                              struct span_batch *out, char *err, size_t errlen)
{
    struct decode_limits defaults;
    lim = decode_limits_or_default(lim, &defaults);
    if (!body) {
        if (len) return -EINVAL;
        body = (const uint8_t *)"";
    }
    /* No depth bound of our own: the scan only descends into fields the schema declares as
     * messages, and Zipkin's nest three deep at most. */
    /* Spans are counted and bounded by the scan, so they are charged apart; 16 bytes of heap
     * per wire byte covers every honest message (tags, annotations and endpoints with content
     * unpack to 3-5 times their size) and keeps one request inside the memory bound (README:
     * Guarantees and limits). Only pathological bodies of empty sub-messages (2 wire bytes for
     * a ~50-byte struct) hit it, and get 413. */
    struct pbwire_unpack u = {
        .sc = {.root = &zipkin__proto3__list_of_spans__descriptor,
               .span = &zipkin__proto3__span__descriptor,
               .max_spans = lim->max_spans,
               .max_depth = UINT_MAX},
        .per_span = 256,
        .slack = 1u << 16,
        .what = "zipkin.proto3.ListOfSpans",
    };
    struct pconv c = {.zb = {.b = out, .lim = lim}};
    int rc = pbwire_unpack(&u, body, len, err, errlen);
    const pb_list *list = rc ? NULL : (const pb_list *)u.msg;
    for (size_t i = 0; list && i < list->n_spans && rc == 0; i++) {
        rc = convert_span(&c, list->spans[i]);
        if (rc == DECODE_REFUSE) rc = decode_reject(out, 1, "spans[%zu].%s", i, c.zb.why);
    }
    pbwire_unpack_close(&u);
    free(c.tags);
    free(c.anns);
    if (rc == -ENOMEM && err && errlen) snprintf(err, errlen, "out of memory decoding the request");
    return rc;
}
