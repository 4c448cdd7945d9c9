/*
 * decode.c: helpers shared by the span decoders, whatever the wire format (see decode.h).
 */
#include "decode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there are not one. NUL is
 * treated as invalid: the model's strings are NUL-terminated. */
static size_t utf8_seq(const unsigned char *s, size_t len)
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

int decode_copy_utf8(struct arena *a, const char *s, size_t len, struct mstr *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t bad = 0;
    for (size_t i = 0; i < len;) {
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
    if (!bad) { /* the common case: one copy */
        p = arena_strndup(a, len ? s : "", len);
        if (!p) return -ENOMEM;
    } else {
        outlen = len + 2 * bad; /* each bad byte (1) becomes U+FFFD (3) */
        p = arena_alloc(a, outlen + 1);
        if (!p) return -ENOMEM;
        size_t o = 0;
        for (size_t i = 0; i < len;) {
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

int decode_reject(struct span_batch *b, uint32_t n, const char *fmt, ...)
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

void decode_pathf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

int decode_grow(void **p, size_t *cap, size_t need, size_t size)
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

int decode_hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

const char *decode_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

json_t *decode_json_load(const uint8_t *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body ? (const char *)body : "", len, JSON_ALLOW_NUL, &jerr);
    if (!root && err && errlen)
        snprintf(err, errlen, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
    return root;
}
