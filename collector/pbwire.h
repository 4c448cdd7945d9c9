/*
 * pbwire.h: what the protobuf decoders (otlp_proto.c, otlp_metrics.c, zipkin_proto.c,
 * envoy_als.c, envoy_metrics.c) share before protobuf-c sees a byte: the raw-wire pre-scan, the
 * counting, arena-backed allocator protobuf-c unpacks with, and pbwire_unpack, which runs both
 * and unpacks. Not a public interface.
 *
 * Why a pre-scan: protobuf-c 1.4 unpacks recursively with no depth limit and allocates for every
 * message it meets, so the scan bounds message nesting and counts spans against max_spans
 * (-E2BIG) before anything is allocated (style rule 7). It also works around protobuf-c handing
 * string fields over NUL-terminated without their length: a string holding a NUL byte would be
 * silently cut short, so the scan notes such strings and, when there are any, returns a copy of
 * the body in which each NUL inside a string field is 0xFF, an invalid UTF-8 byte that the
 * decoders' string copy (decode_copy_utf8) turns into U+FFFD like any other.
 *
 * Thread-safety: no shared state; every call works on the caller's structs.
 */
#ifndef MESHSCOPE_PBWIRE_H
#define MESHSCOPE_PBWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "storage.h"

/* One wire scan. The caller fills the first five fields; pbwire_scan fills the rest. */
struct pbwire_scan {
    const ProtobufCMessageDescriptor *root; /* the request message */
    const ProtobufCMessageDescriptor *span; /* messages of this type count against max_spans */
    uint32_t max_spans;
    unsigned max_depth; /* message nesting beyond this fails the request (-EINVAL) */
    const char *items;  /* what the counted messages are called in the -E2BIG message
                           ("more than N <items> in one request"); NULL: "spans" */
    bool keep_nuls;     /* the caller reads strings with their length and turns a NUL into
                           U+FFFD itself (decode_copy_utf8): no patched copy */
    uint64_t spans;     /* OUT: span messages in the body */
    uint8_t *patched;   /* OUT: NULL, or a malloc'd copy of the body to unpack instead (string
                           NULs made 0xFF); the caller frees it on every path */
    /* OUT, for a decoder that reads the wire itself (otlp_wire.c) and leaves to protobuf-c only
     * what it would read differently: */
    bool irregular;      /* a known field with a wire type its type does not have (or packed), a
                            non-repeated field more than once in one message (protobuf merges
                            messages and keeps the last scalar), two members of a oneof, a tag
                            or a length in more than 5 bytes (protobuf-c refuses those) */
    uint64_t heap_bound; /* at least what protobuf-c would allocate unpacking the body (structs,
                            pointer arrays, strings, unknown fields, its scan slabs) */
};

/* Scans body (borrowed; NULL only with len 0) as a message of sc->root.
 * Returns 0; -EINVAL for malformed protobuf or nesting beyond sc->max_depth, -E2BIG for more
 * than sc->max_spans spans, -ENOMEM: then err holds a one-line message and sc->patched is NULL. */
int pbwire_scan(struct pbwire_scan *sc, const uint8_t *body, size_t len, char *err, size_t errlen);

/* A ProtobufCAllocator that takes its memory from one arena and refuses to hand out more than
 * limit bytes in all, so a flood of tiny messages cannot turn a small body into a large heap. */
struct pbwire_budget {
    ProtobufCAllocator alloc; /* pass &bd->alloc to __unpack */
    struct arena *arena;      /* everything protobuf-c allocates; freed in one go */
    size_t used, limit;
    bool exceeded, oom;
};

/* Sets bd up for a body of body_len bytes, allowing limit bytes of unpacked objects.
 * Returns 0 or -ENOMEM; call pbwire_budget_close on every path, after either. */
int pbwire_budget_open(struct pbwire_budget *bd /* OUT */, size_t body_len, size_t limit);
/* Frees the arena, and with it the unpacked message (its __free_unpacked). Accepts a budget
 * whose open failed. */
void pbwire_budget_close(struct pbwire_budget *bd);

/* After __unpack returned NULL: -ENOMEM (err left to the caller), or -E2BIG (the budget was
 * exceeded) / -EINVAL ("undecodable <what> protobuf") with a message in err. */
int pbwire_unpack_failed(const struct pbwire_budget *bd, const char *what, char *err,
                         size_t errlen);

/* One whole protobuf message: pbwire_scan, then __unpack into a pbwire_budget allowing
 * 16 x the body + spans x per_span + slack bytes. The caller fills sc's IN fields, per_span,
 * slack and what; the call fills the rest. */
struct pbwire_unpack {
    struct pbwire_scan sc;
    size_t per_span;  /* heap charged per counted span (they are bounded by the scan) */
    size_t slack;     /* fixed allowance on top */
    const char *what; /* message name for "undecodable <what> protobuf" */
    struct pbwire_budget bd;
    ProtobufCMessage *msg; /* OUT: the unpacked sc.root message; lives in bd's arena */
};

/* Scans and unpacks body (borrowed; NULL only with len 0) as u->sc.root.
 * Returns 0 with u->msg set; -EINVAL (malformed, too deep, undecodable) or -E2BIG (too many
 * spans, or over the budget once unpacked) with a message in err; -ENOMEM, with a message in err
 * only when the scan ran out (err untouched when the budget or protobuf-c did).
 * Call pbwire_unpack_close(u) on every path, after success or failure. */
int pbwire_unpack(struct pbwire_unpack *u, const uint8_t *body, size_t len, char *err,
                  size_t errlen);
/* Frees u->msg, its arena and the patched body copy. Accepts a u whose pbwire_unpack failed. */
void pbwire_unpack_close(struct pbwire_unpack *u);

#endif
