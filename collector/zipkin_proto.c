/*
 * zipkin_proto.c: the Zipkin v2 proto3 span decoder (POST /api/v2/spans,
 * application/x-protobuf: a zipkin.proto3.ListOfSpans, proto/zipkin/zipkin.proto) into the span
 * model. The mapping itself is shared with the JSON decoder (zipkin_build_span, zipkin.h).
 *
 * Three steps, as in otlp_proto.c, each bounded before it allocates (style rule 7):
 *  1. scan walks the wire bytes once, guided by the protobuf-c descriptors (Zipkin's messages
 *     nest three deep at most, so recursion is bounded by the schema): it validates the wire
 *     format, counts spans against max_spans (-E2BIG before anything is unpacked) and notes
 *     string fields holding a NUL byte.
 *  2. protobuf-c unpacks the request with a counting allocator whose budget is proportional to
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

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zipkin/zipkin.pb-c.h"

typedef Zipkin__Proto3__ListOfSpans pb_list;
typedef Zipkin__Proto3__Span pb_span;
typedef Zipkin__Proto3__Endpoint pb_endpoint;

#define REFUSE 1

/* ----- step 1: wire scan ------------------------------------------------------------------- */

struct scan {
    const struct decode_limits *lim;
    uint64_t spans;
    bool nul_in_string;
    uint8_t *patch; /* second pass: writable copy of the body whose string NULs become 0xFF */
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

/* Returns 0, or sets sc->rc / sc->msg and returns -1. base: offset of p in the body. */
static int scan_message(struct scan *sc, const uint8_t *p, size_t len, size_t base,
                        const ProtobufCMessageDescriptor *d)
{
    size_t pos = 0;
    while (pos < len) {
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
                if (f->descriptor == &zipkin__proto3__span__descriptor &&
                    ++sc->spans > sc->lim->max_spans) {
                    sc->rc = -E2BIG;
                    snprintf(sc->msg, sizeof sc->msg, "more than %u spans in one request",
                             sc->lim->max_spans);
                    return -1;
                }
                if (scan_message(sc, p + pos, (size_t)v, base + pos, f->descriptor)) return -1;
            }
            pos += (size_t)v;
            break;
        }
        default: /* groups (3, 4) are not in proto3; 6 and 7 do not exist */
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
    struct arena *arena;
    size_t used, limit;
    bool exceeded, oom;
};

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

static void budget_free(void *data, void *ptr)
{
    /* freed with the arena */
}

/* ----- step 3: conversion ------------------------------------------------------------------ */

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

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (!q) return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int prefuse(struct zipkin_builder *zb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int prefuse(struct zipkin_builder *zb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(zb->why, sizeof zb->why, fmt, ap);
    va_end(ap);
    return REFUSE;
}

/* Returns 0, REFUSE (c->zb.why) or -ENOMEM. */
static int convert_span(struct pconv *c, const pb_span *ps)
{
    const struct decode_limits *lim = c->zb.lim;
    struct zipkin_span_in in;
    memset(&in, 0, sizeof in);
    if (ps->trace_id.len == 0) return prefuse(&c->zb, "trace_id: missing");
    if (ps->trace_id.len == 8)
        memcpy(in.trace_id + 8, ps->trace_id.data, 8);
    else if (ps->trace_id.len == 16)
        memcpy(in.trace_id, ps->trace_id.data, 16);
    else
        return prefuse(&c->zb, "trace_id: length %zu, want 8 or 16", ps->trace_id.len);
    if (id_is_zero(in.trace_id, 16)) return prefuse(&c->zb, "trace_id: all zero");
    if (ps->id.len == 0) return prefuse(&c->zb, "id: missing");
    if (ps->id.len != 8) return prefuse(&c->zb, "id: length %zu, want 8", ps->id.len);
    memcpy(in.id, ps->id.data, 8);
    if (id_is_zero(in.id, 8)) return prefuse(&c->zb, "id: all zero");
    if (ps->parent_id.len) {
        if (ps->parent_id.len != 8)
            return prefuse(&c->zb, "parent_id: length %zu, want 8", ps->parent_id.len);
        memcpy(in.parent_id, ps->parent_id.data, 8);
        in.has_parent = true;
    }
    if (ps->timestamp > UINT64_MAX / 1000 || ps->duration > UINT64_MAX / 1000)
        return prefuse(&c->zb, "timestamp or duration beyond 2^64 nanoseconds");
    in.kind = (int)ps->kind >= 0 && (int)ps->kind <= 4 ? (int)ps->kind : 0;
    in.name = zs(ps->name);
    in.start_ns = ps->timestamp * 1000;
    in.duration_ns = ps->duration * 1000;
    endpoint_in(ps->local_endpoint, &in.local);
    endpoint_in(ps->remote_endpoint, &in.remote);
    in.debug = ps->debug;
    in.shared = ps->shared;

    if (ps->n_tags > lim->max_attrs)
        return prefuse(&c->zb, "tags: %zu tags, max %u", ps->n_tags, lim->max_attrs);
    if (ps->n_annotations > lim->max_events)
        return prefuse(&c->zb, "annotations: %zu annotations, max %u", ps->n_annotations,
                       lim->max_events);
    if (grow((void **)&c->tags, &c->cap_tags, ps->n_tags, sizeof *c->tags) ||
        grow((void **)&c->anns, &c->cap_anns, ps->n_annotations, sizeof *c->anns))
        return -ENOMEM;
    for (size_t i = 0; i < ps->n_tags; i++) {
        c->tags[i].key = zs(ps->tags[i]->key);
        c->tags[i].value = zs(ps->tags[i]->value);
    }
    for (size_t i = 0; i < ps->n_annotations; i++) {
        uint64_t ts = ps->annotations[i]->timestamp;
        if (ts > UINT64_MAX / 1000)
            return prefuse(&c->zb, "annotations[%zu].timestamp: beyond 2^64 nanoseconds", i);
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
    if (!lim) {
        decode_limits_default(&defaults);
        lim = &defaults;
    }
    if (!body) {
        if (len) return -EINVAL;
        body = (const uint8_t *)"";
    }
    struct scan sc = {.lim = lim};
    if (scan_message(&sc, body, len, 0, &zipkin__proto3__list_of_spans__descriptor)) {
        if (err && errlen) snprintf(err, errlen, "%s", sc.msg);
        return sc.rc;
    }
    uint8_t *patched = NULL;
    if (sc.nul_in_string) {
        patched = malloc(len);
        if (!patched) {
            if (err && errlen) snprintf(err, errlen, "out of memory decoding the request");
            return -ENOMEM;
        }
        memcpy(patched, body, len);
        sc.patch = patched;
        sc.spans = 0;
        scan_message(&sc, body, len, 0, &zipkin__proto3__list_of_spans__descriptor);
        body = patched;
    }

    /* Spans are counted and bounded by the scan, so they are charged apart; 64 bytes of heap
     * per wire byte covers every other message (an empty Endpoint, Annotation or TagsEntry is
     * 2 wire bytes for a ~50-byte struct and a pointer). */
    struct budget bd = {.limit = (len < (SIZE_MAX >> 7) ? len * 64 : SIZE_MAX / 2) +
                                 (size_t)sc.spans * 256 + (1u << 16)};
    struct pconv c = {.zb = {.b = out, .lim = lim}};
    int rc = 0;
    char msg[256] = "";
    bd.arena = arena_create(len * 4 + 4096);
    if (!bd.arena) {
        rc = -ENOMEM;
        goto out;
    }
    ProtobufCAllocator alloc = {.alloc = budget_alloc, .free = budget_free, .allocator_data = &bd};
    pb_list *list = zipkin__proto3__list_of_spans__unpack(&alloc, len, body);
    if (!list) {
        if (bd.oom) {
            rc = -ENOMEM;
        } else if (bd.exceeded) {
            snprintf(msg, sizeof msg, "request too large once decoded (over %zu bytes)", bd.limit);
            rc = -E2BIG;
        } else {
            snprintf(msg, sizeof msg, "undecodable zipkin.proto3.ListOfSpans protobuf");
            rc = -EINVAL;
        }
        goto out;
    }
    for (size_t i = 0; i < list->n_spans && rc == 0; i++) {
        rc = convert_span(&c, list->spans[i]);
        if (rc == REFUSE) {
            char where[32];
            snprintf(where, sizeof where, "spans[%zu]", i);
            rc = zipkin_reject(out, where, c.zb.why);
        }
    }
    /* The unpacked message lives wholly in the arena: destroying it is free_unpacked. */
out:
    arena_destroy(bd.arena);
    free(patched);
    free(c.tags);
    free(c.anns);
    if (rc == -ENOMEM) snprintf(msg, sizeof msg, "out of memory decoding the request");
    if (rc && err && errlen) snprintf(err, errlen, "%s", msg);
    return rc;
}
