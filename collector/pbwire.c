/*
 * pbwire.c: the raw-wire pre-scan and the counting allocator shared by the protobuf span
 * decoders (see pbwire.h for why they exist).
 *
 * The scan walks the wire bytes once, guided by the protobuf-c descriptors: only fields the
 * descriptor declares as messages are descended into, so the recursion is bounded by
 * max_depth (and by the schema). Unknown fields are skipped by wire type. When a string field
 * holds a NUL, a second pass over the same bytes patches a private copy of the body.
 */
#include "pbwire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct scan {
    const struct pbwire_scan *in;
    uint64_t spans;
    bool nul_in_string; /* a string field holds a NUL byte */
    uint8_t *patch;     /* second pass: the writable copy of the body to patch, else NULL */
    bool irregular;     /* see struct pbwire_scan */
    uint64_t heap;
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

/* The wire type protobuf-c reads field f with, outside packed repeated fields. */
static unsigned wire_type_of(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return 5;
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 1;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    default:
        return 0;
    }
}

/* Notes, on the first pass, what makes a message irregular (struct pbwire_scan) and a bound on
 * what protobuf-c allocates for field f (NULL: unknown) of n payload bytes: 64 bytes per field
 * seen covers its scan slabs (32-byte entries, doubling), 8 a pointer array slot, 40 an
 * unknown-field record; strings and bytes cost their length plus a NUL. */
static void note_field(struct scan *sc, const ProtobufCMessageDescriptor *d,
                       const ProtobufCFieldDescriptor *f, unsigned wire_type, uint64_t n,
                       uint64_t *seen, unsigned *oneofs)
{
    if (sc->patch) return;
    sc->heap += 64 + 8;
    if (!f) {
        sc->heap += 40 + (wire_type == 2 ? n : 10);
        return;
    }
    if (wire_type == 2) sc->heap += n + 1;
    if (wire_type != wire_type_of(f)) sc->irregular = true;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF && ++*oneofs > 1) sc->irregular = true;
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        unsigned i = (unsigned)(f - d->fields);
        uint64_t bit = i < 64 ? UINT64_C(1) << i : 0;
        if (!bit || (*seen & bit)) sc->irregular = true;
        *seen |= bit;
    }
}

/* Field id of d. protobuf-c's lookup is an out-of-line binary search over ranges (2% of the HTTP
 * threads' samples at the maximum rate); most messages OTLP and Zipkin send number their fields
 * 1..n in order, which is one comparison. */
static inline const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *d,
                                                       unsigned id)
{
    if (id - 1 < d->n_fields && d->fields[id - 1].id == id) return &d->fields[id - 1];
    return protobuf_c_message_descriptor_get_field(d, id);
}

/* Returns 0, or sets sc->rc / sc->msg and returns -1. base is the offset of p in the body. */
static int scan_message(struct scan *sc, const uint8_t *p, size_t len, size_t base,
                        const ProtobufCMessageDescriptor *d, unsigned depth)
{
    size_t pos = 0;
    uint64_t seen = 0;
    unsigned oneofs = 0;
    if (!sc->patch) sc->heap += d->sizeof_message;
    while (pos < len) {
        size_t at = pos;
        uint64_t tag, v;
        if (read_varint(p, len, &pos, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) goto bad;
        if (pos - at > 5) sc->irregular = true; /* protobuf-c reads a tag of at most 5 bytes */
        unsigned field = (unsigned)(tag >> 3);
        if ((tag & 7) != 2) note_field(sc, d, field_of(d, field), tag & 7, 0, &seen, &oneofs);
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
            size_t at_len = pos;
            if (read_varint(p, len, &pos, &v) || v > len - pos) goto bad;
            if (pos - at_len > 5) sc->irregular = true; /* and a length of at most 5 */
            const ProtobufCFieldDescriptor *f = field_of(d, field);
            note_field(sc, d, f, 2, v, &seen, &oneofs);
            if (f && f->type == PROTOBUF_C_TYPE_STRING && !sc->in->keep_nuls &&
                memchr(p + pos, 0, (size_t)v)) {
                sc->nul_in_string = true;
                if (sc->patch) {
                    uint8_t *w = sc->patch + base + pos;
                    for (size_t k = 0; k < (size_t)v; k++)
                        if (w[k] == 0) w[k] = 0xff;
                }
            }
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (f->descriptor == sc->in->span && ++sc->spans > sc->in->max_spans) {
                    sc->rc = -E2BIG;
                    snprintf(sc->msg, sizeof sc->msg, "more than %u %s in one request",
                             sc->in->max_spans, sc->in->items ? sc->in->items : "spans");
                    return -1;
                }
                if (depth + 1 > sc->in->max_depth) {
                    sc->rc = -EINVAL;
                    snprintf(sc->msg, sizeof sc->msg,
                             "protobuf messages nested deeper than %u (at byte %zu)",
                             sc->in->max_depth, base + at);
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

int pbwire_scan(struct pbwire_scan *out, const uint8_t *body, size_t len, char *err, size_t errlen)
{
    struct scan sc = {.in = out};
    out->spans = 0;
    out->patched = NULL;
    out->irregular = false;
    out->heap_bound = 0;
    if (scan_message(&sc, body, len, 0, out->root, 0)) {
        if (err && errlen) snprintf(err, errlen, "%s", sc.msg);
        return sc.rc;
    }
    out->irregular = sc.irregular;
    out->heap_bound = sc.heap;
    if (sc.nul_in_string) {
        /* The same bytes scanned again cannot fail: this pass only patches the copy. */
        uint8_t *patched = malloc(len);
        if (!patched) {
            if (err && errlen) snprintf(err, errlen, "out of memory decoding the request");
            return -ENOMEM;
        }
        memcpy(patched, body, len);
        sc.patch = patched;
        sc.spans = 0;
        scan_message(&sc, body, len, 0, out->root, 0);
        out->patched = patched;
    }
    out->spans = sc.spans;
    return 0;
}

/* protobuf-c's allocations come from a per-request arena: unpacking a batch makes thousands of
 * small objects, and malloc/free of each one was the largest single cost of ingest. */
static void *budget_alloc(void *data, size_t size)
{
    struct pbwire_budget *bd = data;
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
static void budget_free(void *data, void *ptr) {}

int pbwire_budget_open(struct pbwire_budget *bd, size_t body_len, size_t limit)
{
    memset(bd, 0, sizeof *bd);
    bd->alloc.alloc = budget_alloc;
    bd->alloc.free = budget_free;
    bd->alloc.allocator_data = bd;
    bd->limit = limit;
    bd->arena = arena_create(body_len * 4 + 4096);
    return bd->arena ? 0 : -ENOMEM;
}

void pbwire_budget_close(struct pbwire_budget *bd)
{
    arena_destroy(bd->arena);
    bd->arena = NULL;
}

int pbwire_unpack_failed(const struct pbwire_budget *bd, const char *what, char *err, size_t errlen)
{
    if (bd->oom) return -ENOMEM;
    if (bd->exceeded) {
        if (err && errlen)
            snprintf(err, errlen, "request too large once decoded (over %zu bytes)", bd->limit);
        return -E2BIG;
    }
    if (err && errlen) snprintf(err, errlen, "undecodable %s protobuf", what);
    return -EINVAL;
}

int pbwire_unpack(struct pbwire_unpack *u, const uint8_t *body, size_t len, char *err,
                  size_t errlen)
{
    memset(&u->bd, 0, sizeof u->bd);
    u->msg = NULL;
    int rc = pbwire_scan(&u->sc, body, len, err, errlen);
    if (rc) return rc;
    if (u->sc.patched) body = u->sc.patched;
    rc = pbwire_budget_open(&u->bd, len,
                            (len < (SIZE_MAX >> 5) ? len * 16 : SIZE_MAX / 2) +
                                (size_t)u->sc.spans * u->per_span + u->slack);
    if (rc) return rc;
    u->msg = protobuf_c_message_unpack(u->sc.root, &u->bd.alloc, len, body);
    if (!u->msg) return pbwire_unpack_failed(&u->bd, u->what, err, errlen);
    return 0;
}

void pbwire_unpack_close(struct pbwire_unpack *u)
{
    /* The unpacked message lives wholly in the arena: destroying it is free_unpacked. */
    pbwire_budget_close(&u->bd);
    u->msg = NULL;
    free(u->sc.patched);
    u->sc.patched = NULL;
}
