/*
 * decode.c: helpers shared by the span decoders, whatever the wire format (see decode.h).
 */
#include "decode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int decode_copy_utf8(struct arena *a, const char *s, size_t len, struct mstr *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t bad = 0;
    for (size_t i = 0; i < len;) {
        /* Eight ASCII bytes at a time, none of them NUL (attribute keys and values, names and
         * URLs are mostly ASCII: this was the byte-by-byte loop's ~13% of an OTLP decode). */
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, u + i, 8);
            if (((w | ((w - 0x0101010101010101u) & ~w)) & 0x8080808080808080u) == 0) {
                i += 8;
                continue;
            }
        }
        size_t n = decode_utf8_seq(u + i, len - i);
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
            size_t n = decode_utf8_seq(u + i, len - i);
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
