/*
 * decode.h: helpers shared by the four span decoders (otlp_proto.c, otlp_json.c,
 * zipkin_proto.c, zipkin_json.c), whatever the wire format: the UTF-8 sanitising string copy,
 * the bookkeeping of refused spans and the small pieces of message and JSON handling they all
 * need. Not a public interface; the protobuf-only pieces are in pbwire.h.
 *
 * Thread-safety: no shared state; every call works on the caller's objects.
 */
#ifndef MESHSCOPE_DECODE_H
#define MESHSCOPE_DECODE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "storage.h"

/* What the decoders' conversion helpers return when an object breaks a cap or has a bad id
 * (beside 0 and negative errnos): the decoder's "why" buffer says how. */
#define DECODE_REFUSE 1

/* Length of the valid UTF-8 sequence at s (1..4; s borrowed, len >= 1 bytes readable), or 0
 * when the bytes there are not one (RFC 3629: overlongs, surrogates and code points above
 * U+10FFFF are invalid). NUL is treated as invalid: the model's strings are NUL-terminated.
 * Inline: the JSON scanners call it for every non-ASCII byte. */
static inline size_t decode_utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c == 0) return 0;
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

/* Copies s[0..n) (borrowed) into dst[0..cap) (cap >= 1), cut to cap - 1 bytes (where it falls:
 * a UTF-8 sequence may be cut), NUL-terminated. For fixed per-stream buffers (Envoy node ids). */
static inline void decode_copy_cut(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Copies s[0..len) (borrowed; may be NULL when len is 0) into arena a, NUL-terminated, with
 * every invalid UTF-8 sequence and every NUL byte replaced by U+FFFD (overlongs, surrogates and
 * code points above U+10FFFF are invalid, as in RFC 3629), so everything downstream (SQLite,
 * JSON rendering) sees valid UTF-8 of the original length or more. The caller bounds len.
 * Returns 0 or -ENOMEM. */
int decode_copy_utf8(struct arena *a, const char *s, size_t len, struct mstr *out /* OUT */);

/* Counts the refusal of n spans in b (b->rejected) and keeps the first reason, formatted, in
 * b's arena (b->reject_reason, cut at 511 bytes). Returns 0 or -ENOMEM. */
int decode_reject(struct span_batch *b, uint32_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* snprintf for message paths: a path cut short is acceptable (and keeps gcc's
 * -Wformat-truncation, which cannot see that, quiet). */
void decode_pathf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Grows the malloc'd array *p of *cap items of size bytes to hold need items (doubling, from
 * 16). Returns 0 or -ENOMEM (*p and *cap unchanged). */
int decode_grow(void **p, size_t *cap, size_t need, size_t size);

/* The value of hex digit ch (any case), or -1. */
int decode_hexval(int ch);

/* "an object", "a string", ... for "expected X, got Y" messages. Borrows v. */
const char *decode_json_type_name(const json_t *v);

/* Parses a JSON request body (NULL body = empty). "\u0000" is accepted (legal JSON; the string
 * copies turn it into U+FFFD). NULL on invalid JSON, with "invalid JSON at line L column C: why"
 * in err. The caller owns the result (json_decref). */
json_t *decode_json_load(const uint8_t *body, size_t len, char *err, size_t errlen);

#endif
