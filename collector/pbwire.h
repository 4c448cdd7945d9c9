/*
 * pbwire.h: what the two protobuf span decoders (otlp_proto.c, zipkin_proto.c) share before
 * protobuf-c sees a byte: the raw-wire pre-scan and the counting, arena-backed allocator
 * protobuf-c unpacks with. Not a public interface.
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

/* One wire scan. The caller fills the first four fields; pbwire_scan fills the rest. */
struct pbwire_scan {
    const ProtobufCMessageDescriptor *root; /* the request message */
    const ProtobufCMessageDescriptor *span; /* messages of this type count against max_spans */
    uint32_t max_spans;
    unsigned max_depth; /* message nesting beyond this fails the request (-EINVAL) */
    uint64_t spans;     /* OUT: span messages in the body */
    uint8_t *patched;   /* OUT: NULL, or a malloc'd copy of the body to unpack instead (string
                           NULs made 0xFF); the caller frees it on every path */
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

#endif
