/*
 * otlp_wire.c: the OTLP/protobuf trace decoder (otlp_decode_traces_proto) that reads the wire
 * bytes straight into the span model, in one walk after pbwire's scan.
 *
 * Why: through protobuf-c a request was scanned, unpacked into a tree of C structs (one
 * allocation per message, string and array) and then copied into the batch arena; the unpack
 * alone was ~60% of an OTLP decode, and the decode the largest share of the HTTP threads' CPU
 * (BENCHMARKS.md, session of 2026-11-27 night).
 *
 * Same answers as the protobuf-c decoder (otlp_proto.c, otlp_decode_traces_protoc), which stays
 * the reference: fuzz_otlp_wire and test_otlp hold this one to it, batch for batch and message
 * for message.
 *  - pbwire_scan runs first: nesting, span count and every error it reports are the same by
 *    construction. It leaves NULs in strings alone (keep_nuls): decode_copy_utf8 makes each
 *    one U+FFFD, which is what the reference's 0xFF patch comes to.
 *  - What the scan calls irregular (a known field in a wire type its type does not have, a
 *    non-repeated field twice in one message, which protobuf merges or overwrites, two members
 *    of AnyValue's oneof), and a request whose unpacked tree could exceed the protobuf-c
 *    decoder's heap budget (-E2BIG there), go to the reference whole. No exporter sends
 *    those; what is left has one reading, which this file implements.
 *  - The conversion follows otlp_proto.c's convert_* step for step: the same checks in the same
 *    order, the same refusal messages and paths, the same policies (U+FFFD for invalid UTF-8
 *    and for NULs, unknown enum values as UNSPECIFIED / UNSET, absent strings as "").
 *
 * Thread-safety: no shared state.
 */
#include "otlp.h"
#include "otlp_int.h"
#include "decode.h"
#include "pbwire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

/* A message's or a field's bytes. */
struct wbuf {
    const uint8_t *p;
    size_t n;
};

/* One field: its number, wire type and value (v for varint and fixed, b for length-delimited). */
struct wf {
    uint32_t num;
    unsigned wt;
    uint64_t v;
    bool nz; /* varint: some payload bit set (protobuf-c's bool reads every byte) */
    struct wbuf b;
};

/* Next field of *m (consumed from its front); false at the end. The scan has checked these
 * bytes, so a malformed field ends the message rather than failing. */
static inline bool wf_next(struct wbuf *m, struct wf *f)
{
    f->b.p = NULL;
    f->b.n = 0;
    if (m->n == 0) return false; /* an absent message is {NULL, 0}: no arithmetic on NULL */
    const uint8_t *p = m->p, *end = m->p + m->n;
    uint64_t tag = 0, v = 0;
    bool nz = false;
    if (*p < 0x80) {
        tag = *p++;
    } else {
        for (unsigned i = 0;; i++) {
            if (p == end || i == 10) return false;
            tag |= (uint64_t)(*p & 0x7f) << (7 * i);
            if (!(*p++ & 0x80)) break;
        }
    }
    f->num = (uint32_t)(tag >> 3);
    f->wt = (unsigned)(tag & 7);
    switch (f->wt) {
    case 0:
    case 2:
        if (p != end && *p < 0x80) {
            v = *p++;
            nz = v != 0;
        } else {
            for (unsigned i = 0;; i++) {
                if (p == end || i == 10) return false;
                if (*p & 0x7f) nz = true;
                v |= (uint64_t)(*p & 0x7f) << (7 * i);
                if (!(*p++ & 0x80)) break;
            }
        }
        if (f->wt == 2) {
            if (v > (uint64_t)(end - p)) return false;
            f->b.p = p;
            f->b.n = (size_t)v;
            p += v;
        }
        break;
    case 1:
    case 5: {
        unsigned k = f->wt == 1 ? 8 : 4;
        if ((size_t)(end - p) < k) return false;
        for (unsigned i = 0; i < k; i++)
            v |= (uint64_t)p[i] << (8 * i);
        p += k;
        break;
    }
    default:
        return false;
    }
    f->v = v;
    f->nz = nz;
    m->p = p;
    m->n = (size_t)(end - p);
    return true;
}

/* Occurrences of field num in m. */
static uint32_t count_field(struct wbuf m, uint32_t num)
{
    struct wf f;
    uint32_t n = 0;
    while (wf_next(&m, &f))
        n += f.num == num;
    return n;
}

/* The only occurrence of field num in m (the scan let no non-repeated field repeat), or NULL. */
static bool find_field(struct wbuf m, uint32_t num, struct wf *out)
{
    while (wf_next(&m, out))
        if (out->num == num) return true;
    return false;
}

/* otlp_pb_copy_str on wire bytes: a NUL becomes U+FFFD here (decode_copy_utf8), where the
 * reference gets a 0xFF from pbwire's patched copy and turns that into U+FFFD. */
static int copy_str(struct otlp_pbconv *c, struct wbuf s, struct mstr *out, const char *what)
{
    return otlp_pb_copy_len(c, (const char *)s.p, s.n, out, what);
}

/* A string field of m ("" when absent). */
static int copy_field(struct otlp_pbconv *c, struct wbuf m, uint32_t num, struct mstr *out,
                      const char *what)
{
    struct wf f;
    struct wbuf s = {NULL, 0};
    if (find_field(m, num, &f)) s = f.b;
    return copy_str(c, s, out, what);
}

static int convert_kvs(struct otlp_pbconv *c, struct wbuf m, uint32_t num, uint32_t n,
                       struct attr **items, uint32_t *n_out, unsigned depth, const char *what);

/* otlp_pb_convert_value on an AnyValue's bytes (present = the KeyValue had a value). */
static int convert_value(struct otlp_pbconv *c, struct wbuf any, bool present, struct value *out,
                         unsigned depth, const char *what)
{
    struct wf f;
    out->type = VALUE_EMPTY;
    if (!present) return 0;
    bool found = false;
    while (!found && wf_next(&any, &f))
        found = f.num >= 1 && f.num <= 7;
    if (!found) return 0;
    switch (f.num) {
    case 1:
        out->type = VALUE_STRING;
        return copy_str(c, f.b, &out->u.str, what);
    case 2:
        out->type = VALUE_BOOL;
        out->u.b = f.nz;
        return 0;
    case 3:
        out->type = VALUE_INT;
        out->u.i = (int64_t)f.v;
        return 0;
    case 4:
        out->type = VALUE_DOUBLE;
        memcpy(&out->u.d, &f.v, sizeof out->u.d);
        return 0;
    case 7: {
        out->type = VALUE_BYTES;
        if (f.b.n > c->lim->max_string)
            return otlp_pb_refuse(c, "%s: bytes value of %zu bytes, max %u", what, f.b.n,
                                  c->lim->max_string);
        char *p = arena_strndup(c->b->arena, f.b.n ? (const char *)f.b.p : "", f.b.n);
        if (!p) return -ENOMEM;
        out->u.str.ptr = p;
        out->u.str.len = (uint32_t)f.b.n;
        return 0;
    }
    case 5: {
        out->type = VALUE_ARRAY;
        if (depth + 1 > c->lim->max_depth)
            return otlp_pb_refuse(c, "%s: values nested deeper than %u", what, c->lim->max_depth);
        uint32_t n = count_field(f.b, 1);
        if (n > c->lim->max_attrs)
            return otlp_pb_refuse(c, "%s: array of %u values, max %u", what, n, c->lim->max_attrs);
        if (!n) return 0;
        struct value *items = arena_alloc(c->b->arena, (size_t)n * sizeof *items);
        if (!items) return -ENOMEM;
        struct wbuf m = f.b;
        struct wf e;
        uint32_t i = 0;
        while (wf_next(&m, &e)) {
            if (e.num != 1) continue;
            int rc = convert_value(c, e.b, true, &items[i++], depth + 1, what);
            if (rc) return rc;
        }
        out->u.array.items = items;
        out->u.array.n = n;
        return 0;
    }
    default: /* 6 */
        out->type = VALUE_KVLIST;
        if (depth + 1 > c->lim->max_depth)
            return otlp_pb_refuse(c, "%s: values nested deeper than %u", what, c->lim->max_depth);
        return convert_kvs(c, f.b, 1, count_field(f.b, 1), &out->u.kvlist.items,
                           &out->u.kvlist.n, depth + 1, what);
    }
}

/* The n KeyValues in field num of m (otlp_proto.c's convert_kvs). */
static int convert_kvs(struct otlp_pbconv *c, struct wbuf m, uint32_t num, uint32_t n,
                       struct attr **items, uint32_t *n_out, unsigned depth, const char *what)
{
    *items = NULL;
    *n_out = 0;
    if (n > c->lim->max_attrs)
        return otlp_pb_refuse(c, "%s: %u attributes, max %u", what, n, c->lim->max_attrs);
    if (!n) return 0;
    struct attr *a = arena_alloc(c->b->arena, (size_t)n * sizeof *a);
    if (!a) return -ENOMEM;
    struct wf f;
    for (size_t i = 0; wf_next(&m, &f);) {
        if (f.num != num) continue;
        struct wf kv, k = {.b = {NULL, 0}}, v = {.b = {NULL, 0}};
        bool has_value = false;
        for (struct wbuf e = f.b; wf_next(&e, &kv);) {
            if (kv.num == 1) k = kv;
            else if (kv.num == 2) {
                v = kv;
                has_value = true;
            }
        }
        int rc = copy_str(c, k.b, &a[i].key, what);
        if (!rc) rc = convert_value(c, v.b, has_value, &a[i].value, depth, what);
        if (rc == DECODE_REFUSE) otlp_pb_index_why(c, what, i);
        if (rc) return rc;
        i++;
    }
    *items = a;
    *n_out = n;
    return 0;
}

/* Attributes in field num and the dropped count in field dropped_num of m. */
static int convert_attrs(struct otlp_pbconv *c, struct wbuf m, uint32_t num, uint32_t dropped_num,
                         struct attrs *out, const char *what)
{
    struct wf f;
    uint32_t n = 0;
    out->dropped = 0;
    for (struct wbuf it = m; wf_next(&it, &f);) {
        if (f.num == num) n++;
        else if (f.num == dropped_num) out->dropped = (uint32_t)f.v;
    }
    return convert_kvs(c, m, num, n, &out->items, &out->n, 0, what);
}

/* otlp_pb_check_id on a bytes field (absent: length 0). */
static int check_id(struct otlp_pbconv *c, const struct wf *f, bool present, size_t want,
                    bool zero_ok, const char *what)
{
    size_t len = present ? f->b.n : 0;
    if (len != want) return otlp_pb_refuse(c, "%s: length %zu, want %zu", what, len, want);
    if (!zero_ok && id_is_zero(f->b.p, want)) return otlp_pb_refuse(c, "%s: all zero", what);
    return 0;
}

/* A Span's fields, found in one walk (each at most once: the scan saw to it). */
struct wspan {
    struct wf f[17];
    bool has[17];
    uint32_t n_attrs, n_events, n_links;
};

static int convert_events(struct otlp_pbconv *c, struct wbuf m, struct span *s)
{
    s->events = arena_alloc(c->b->arena, (size_t)s->n_events * sizeof *s->events);
    if (!s->events) return -ENOMEM;
    struct wf f;
    for (size_t i = 0; wf_next(&m, &f);) {
        if (f.num != 11) continue;
        struct span_event *se = &s->events[i];
        struct wf t;
        char where[64];
        se->time_unix_nano = find_field(f.b, 1, &t) ? t.v : 0;
        decode_pathf(where, sizeof where, "events[%zu].name", i);
        int rc = copy_field(c, f.b, 2, &se->name, where);
        if (rc) return rc;
        decode_pathf(where, sizeof where, "events[%zu].attributes", i);
        if ((rc = convert_attrs(c, f.b, 3, 4, &se->attrs, where))) return rc;
        i++;
    }
    return 0;
}

static int convert_links(struct otlp_pbconv *c, struct wbuf m, struct span *s)
{
    s->links = arena_alloc(c->b->arena, (size_t)s->n_links * sizeof *s->links);
    if (!s->links) return -ENOMEM;
    struct wf f;
    for (size_t i = 0; wf_next(&m, &f);) {
        if (f.num != 13) continue;
        struct span_link *sl = &s->links[i];
        struct wf tid = {.b = {NULL, 0}}, sid = tid, fl;
        bool has_tid = find_field(f.b, 1, &tid), has_sid = find_field(f.b, 2, &sid);
        char where[64];
        int rc;
        decode_pathf(where, sizeof where, "links[%zu].trace_id", i);
        if ((rc = check_id(c, &tid, has_tid, 16, true, where))) return rc;
        decode_pathf(where, sizeof where, "links[%zu].span_id", i);
        if ((rc = check_id(c, &sid, has_sid, 8, true, where))) return rc;
        memcpy(sl->trace_id, tid.b.p, 16);
        memcpy(sl->span_id, sid.b.p, 8);
        sl->flags = find_field(f.b, 6, &fl) ? (uint32_t)fl.v : 0;
        decode_pathf(where, sizeof where, "links[%zu].trace_state", i);
        if ((rc = copy_field(c, f.b, 3, &sl->trace_state, where))) return rc;
        decode_pathf(where, sizeof where, "links[%zu].attributes", i);
        if ((rc = convert_attrs(c, f.b, 4, 5, &sl->attrs, where))) return rc;
        i++;
    }
    return 0;
}

/* otlp_proto.c's convert_span on a Span's bytes. */
static int convert_span(struct otlp_pbconv *c, struct wbuf m, struct span *s)
{
    struct wspan w;
    memset(w.has, 0, sizeof w.has);
    w.n_attrs = w.n_events = w.n_links = 0;
    struct wbuf it = m;
    struct wf f;
    while (wf_next(&it, &f)) {
        if (f.num == 9) w.n_attrs++;
        else if (f.num == 11) w.n_events++;
        else if (f.num == 13) w.n_links++;
        else if (f.num >= 1 && f.num <= 16) {
            w.f[f.num] = f;
            w.has[f.num] = true;
        }
    }
    int rc;
    if ((rc = check_id(c, &w.f[1], w.has[1], 16, false, "trace_id"))) return rc;
    if ((rc = check_id(c, &w.f[2], w.has[2], 8, false, "span_id"))) return rc;
    bool parent = w.has[4] && w.f[4].b.n != 0;
    if (parent && (rc = check_id(c, &w.f[4], true, 8, true, "parent_span_id"))) return rc;
    if (w.n_events > c->lim->max_events)
        return otlp_pb_refuse(c, "events: %u events, max %u", w.n_events, c->lim->max_events);
    if (w.n_links > c->lim->max_links)
        return otlp_pb_refuse(c, "links: %u links, max %u", w.n_links, c->lim->max_links);

    memcpy(s->trace_id, w.f[1].b.p, 16);
    memcpy(s->span_id, w.f[2].b.p, 8);
    if (parent && !id_is_zero(w.f[4].b.p, 8)) {
        memcpy(s->parent_span_id, w.f[4].b.p, 8);
        s->has_parent = true;
    }
    s->flags = w.has[16] ? (uint32_t)w.f[16].v : 0;
    int kind = w.has[6] ? (int)(int32_t)(uint32_t)w.f[6].v : 0;
    s->kind = kind >= 0 && kind <= (int)SPAN_KIND_CONSUMER ? (enum span_kind)kind
                                                           : SPAN_KIND_UNSPECIFIED;
    s->start_unix_nano = w.has[7] ? w.f[7].v : 0;
    s->end_unix_nano = w.has[8] ? w.f[8].v : 0;
    s->dropped_events = w.has[12] ? (uint32_t)w.f[12].v : 0;
    s->dropped_links = w.has[14] ? (uint32_t)w.f[14].v : 0;
    struct wbuf none = {NULL, 0};
    if ((rc = copy_str(c, w.has[3] ? w.f[3].b : none, &s->trace_state, "trace_state"))) return rc;
    if ((rc = copy_str(c, w.has[5] ? w.f[5].b : none, &s->name, "name"))) return rc;
    s->attrs.dropped = w.has[10] ? (uint32_t)w.f[10].v : 0;
    if ((rc = convert_kvs(c, m, 9, w.n_attrs, &s->attrs.items, &s->attrs.n, 0, "attributes")))
        return rc;

    struct wbuf status = w.has[15] ? w.f[15].b : none;
    struct wf code;
    int sc = find_field(status, 3, &code) ? (int)(int32_t)(uint32_t)code.v : 0;
    s->status_code = sc >= 0 && sc <= STATUS_ERROR ? (enum status_code)sc : STATUS_UNSET;
    if ((rc = copy_field(c, status, 2, &s->status_message, "status.message"))) return rc;

    if (w.n_events) {
        s->n_events = w.n_events;
        if ((rc = convert_events(c, m, s))) return rc;
    }
    if (w.n_links) {
        s->n_links = w.n_links;
        if ((rc = convert_links(c, m, s))) return rc;
    }
    return 0;
}

static int convert_scope_spans(struct otlp_pbconv *c, struct wbuf sx, const struct resource *res,
                               size_t ri, size_t si)
{
    struct scope *sc = arena_alloc(c->b->arena, sizeof *sc);
    if (!sc) return -ENOMEM;
    struct wf scope;
    bool has_scope = find_field(sx, 1, &scope);
    struct wbuf in = has_scope ? scope.b : (struct wbuf){NULL, 0};
    uint32_t n = count_field(sx, 2);
    int rc = copy_field(c, sx, 3, &sc->schema_url, "schema_url");
    if (!rc) rc = copy_field(c, in, 1, &sc->name, "scope.name");
    if (!rc) rc = copy_field(c, in, 2, &sc->version, "scope.version");
    if (!rc && has_scope) rc = convert_attrs(c, in, 3, 4, &sc->attrs, "scope.attributes");
    if (rc == DECODE_REFUSE)
        return decode_reject(c->b, n, "resource_spans[%zu].scope_spans[%zu].%s", ri, si, c->why);
    if (rc) return rc;

    struct wf f;
    for (size_t i = 0; wf_next(&sx, &f);) {
        if (f.num != 2) continue;
        struct span *s = span_batch_add(c->b);
        if (!s) return -ENOMEM;
        s->resource = res;
        s->scope = sc;
        rc = convert_span(c, f.b, s);
        if (rc == DECODE_REFUSE) {
            span_batch_drop_last(c->b);
            rc = decode_reject(c->b, 1, "resource_spans[%zu].scope_spans[%zu].spans[%zu].%s", ri,
                               si, i, c->why);
        }
        if (rc) return rc;
        i++;
    }
    return 0;
}

/* Spans under one ResourceSpans (otlp_proto.c's count_items). */
static uint32_t count_spans(struct wbuf rx)
{
    struct wf f;
    uint32_t n = 0;
    while (wf_next(&rx, &f))
        if (f.num == 2) n += count_field(f.b, 2);
    return n;
}

static int convert_request(struct otlp_pbconv *c, struct wbuf req)
{
    struct wf f;
    for (size_t ri = 0; wf_next(&req, &f);) {
        if (f.num != 1) continue;
        struct wbuf rx = f.b;
        struct resource *res = arena_alloc(c->b->arena, sizeof *res);
        if (!res) return -ENOMEM;
        struct wf r;
        bool has_resource = find_field(rx, 1, &r);
        int rc = copy_field(c, rx, 3, &res->schema_url, "schema_url");
        if (!rc && has_resource)
            rc = convert_attrs(c, r.b, 1, 2, &res->attrs, "resource.attributes");
        if (rc == DECODE_REFUSE) {
            rc = decode_reject(c->b, count_spans(rx), "resource_spans[%zu].%s", ri, c->why);
            if (rc) return rc;
            ri++;
            continue;
        }
        if (rc) return rc;
        struct wf s;
        for (size_t si = 0; wf_next(&rx, &s);) {
            if (s.num != 2) continue;
            if ((rc = convert_scope_spans(c, s.b, res, ri, si))) return rc;
            si++;
        }
        ri++;
    }
    return 0;
}

int otlp_decode_traces_proto(const uint8_t *body, size_t len, const struct decode_limits *lim,
                             struct span_batch *out, char *err, size_t errlen)
{
    struct decode_limits defaults;
    lim = decode_limits_or_default(lim, &defaults);
    if (len && !body) return -EINVAL;
    struct pbwire_scan sc = {
        .root = &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
        .span = &opentelemetry__proto__trace__v1__span__descriptor,
        .max_spans = lim->max_spans,
        .max_depth = otlp_pb_wire_depth(lim),
        .keep_nuls = true, /* copy_str turns a NUL into U+FFFD, as the reference does its 0xFF */
    };
    int rc = pbwire_scan(&sc, body, len, err, errlen); /* allocates nothing: keep_nuls */
    if (rc) return rc;
    /* The reference's heap budget (otlp_pb_decode): under it, protobuf-c cannot run out. */
    uint64_t budget = (uint64_t)len * 16 + sc.spans * OTLP_PB_PER_SPAN + OTLP_PB_SLACK;
    if (sc.irregular || sc.heap_bound > budget)
        return otlp_decode_traces_protoc(body, len, lim, out, err, errlen);
    struct otlp_pbconv c = {.b = out, .lim = lim};
    rc = convert_request(&c, (struct wbuf){body, len});
    if (rc == -ENOMEM && err && errlen) snprintf(err, errlen, "out of memory decoding the request");
    return rc;
}
