/*
 * json_out.c: the output buffer and the JSON writers the Jaeger and Zipkin renderers are built
 * on, and the classification of store errors both APIs answer with.
 *
 * Hand-rolled rather than a jansson tree: a search can return a hundred traces of thousands of
 * spans, and building a json_t per tag only to serialise it doubles the work and the memory. The
 * writers copy jaeger-query's output byte for byte where it matters to a client: strings escaped
 * as Go's encoding/json escapes them (HTML-safe, invalid UTF-8 replaced with U+FFFD, so the body
 * is valid JSON whatever bytes a client sent us) and floats in Go's shortest round-trip form.
 */
#include "query_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_init(struct sbuf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void sb_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

char *sb_take(struct sbuf *b, size_t *len)
{
    if (b->error) {
        sb_free(b);
        return NULL;
    }
    if (!b->p) sb_put(b, "", 0); /* an empty body is still a string */
    if (b->error) return NULL;
    char *p = b->p;
    *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

static bool sb_reserve(struct sbuf *b, size_t n)
{
    if (b->error) return false;
    if (n > b->max - b->len) {
        b->error = -E2BIG;
        return false;
    }
    size_t need = b->len + n + 1; /* + NUL */
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->error = -ENOMEM;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void sb_put(struct sbuf *b, const void *s, size_t n)
{
    if (!sb_reserve(b, n)) return;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_puts(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

void sb_putc(struct sbuf *b, char c)
{
    sb_put(b, &c, 1);
}

void sb_uint(struct sbuf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_put(b, tmp + i, sizeof tmp - i);
}

void sb_int(struct sbuf *b, int64_t v)
{
    if (v < 0) {
        sb_putc(b, '-');
        sb_uint(b, (uint64_t)0 - (uint64_t)v);
    } else {
        sb_uint(b, (uint64_t)v);
    }
}

void sb_double(struct sbuf *b, double v)
{
    if (isnan(v)) {
        sb_puts(b, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        sb_puts(b, v > 0 ? "\"+Inf\"" : "\"-Inf\"");
        return;
    }
    /* Shortest digit string that reads back as v (what Go's strconv 'g'/-1 produces). */
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e is "[-]d[.ddd]e[+-]XX": split into sign, digits and exponent. */
    const char *p = e;
    bool neg = *p == '-';
    if (neg) p++;
    char digits[20];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--; /* %.*e may pad the last precision */

    char out[400];
    size_t o = 0;
    if (neg) out[o++] = '-';
    double a = fabs(v);
    if (a != 0 && (a < 1e-6 || a >= 1e21)) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++)
                out[o++] = digits[i];
        }
        /* Go writes at least two exponent digits, then trims "e-07" to "e-7". */
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+',
                              exp10 < 0 ? -exp10 : exp10);
        if (o >= 4 && out[o - 4] == 'e' && out[o - 3] == '-' && out[o - 2] == '0') {
            out[o - 2] = out[o - 1];
            o--;
        }
    } else if (exp10 >= 0) {
        for (int i = 0; i <= exp10; i++)
            out[o++] = (size_t)i < nd ? digits[i] : '0';
        if (nd > (size_t)exp10 + 1) {
            out[o++] = '.';
            for (size_t i = (size_t)exp10 + 1; i < nd; i++)
                out[o++] = digits[i];
        }
    } else {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = -1; i > exp10; i--)
            out[o++] = '0';
        for (size_t i = 0; i < nd; i++)
            out[o++] = digits[i];
    }
    sb_put(b, out, o);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if the bytes there are not one
 * (overlong forms, surrogates and code points past U+10FFFF are invalid, as in Go). */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0xc2) return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xe0)
        len = 2, v = c & 0x1f, min = 0x80;
    else if (c < 0xf0)
        len = 3, v = c & 0x0f, min = 0x800;
    else if (c < 0xf5)
        len = 4, v = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

void sb_json_str(struct sbuf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    /* Worst case grows 6x (\u00XX per byte): reserve per chunk of input, not per byte, and not
     * 6x a whole long string at once (that could trip the body cap for no reason). */
    enum { CHUNK = 4096 };
    if (!sb_reserve(b, 1)) return;
    b->p[b->len++] = '"';
    size_t i = 0;
    char *o = b->p + b->len;
    size_t chunk_end = 0;
    while (i < n) {
        if (i >= chunk_end) {
            b->len = (size_t)(o - b->p);
            size_t step = n - i < CHUNK ? n - i : CHUNK;
            /* + 4: a UTF-8 sequence may run up to 3 bytes past the chunk's end. */
            if (!sb_reserve(b, (step + 4) * 6 + 1)) return;
            o = b->p + b->len;
            chunk_end = i + step;
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
                *o++ = (char)c;
            } else {
                *o++ = '\\';
                switch (c) {
                case '"':
                    *o++ = '"';
                    break;
                case '\\':
                    *o++ = '\\';
                    break;
                case '\b':
                    *o++ = 'b';
                    break;
                case '\f':
                    *o++ = 'f';
                    break;
                case '\n':
                    *o++ = 'n';
                    break;
                case '\r':
                    *o++ = 'r';
                    break;
                case '\t':
                    *o++ = 't';
                    break;
                default:
                    memcpy(o, "u00", 3);
                    o += 3;
                    *o++ = hex[c >> 4];
                    *o++ = hex[c & 15];
                }
            }
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_seq(s + i, n - i, &cp);
        if (len == 0) {
            memcpy(o, "\\ufffd", 6);
            o += 6;
            i++;
        } else if (cp == 0x2028 || cp == 0x2029) {
            memcpy(o, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
            o += 6;
            i += len;
        } else {
            memcpy(o, s + i, len);
            o += len;
            i += len;
        }
    }
    b->len = (size_t)(o - b->p);
    if (!sb_reserve(b, 1)) return;
    b->p[b->len++] = '"';
    b->p[b->len] = '\0';
}

void sb_json_base64(struct sbuf *b, const uint8_t *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!sb_reserve(b, (n + 2) / 3 * 4 + 2)) return;
    char *o = b->p + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

void sb_json_hex(struct sbuf *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!sb_reserve(b, n * 2 + 2)) return;
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        *o++ = hex[p[i] >> 4];
        *o++ = hex[p[i] & 15];
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

/* ----- span model values ------------------------------------------------------------------ */

struct kv_order {
    const struct attr *a;
    uint32_t idx;
};

static int kv_order_cmp(const void *x, const void *y)
{
    const struct kv_order *a = x, *b = y;
    uint32_t la = a->a->key.len, lb = b->a->key.len;
    int c = memcmp(a->a->key.ptr, b->a->key.ptr, la < lb ? la : lb);
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static void json_value(struct sbuf *b, const struct value *v, bool go_map, int depth);

/* A kvlist as Go marshals a map: keys sorted, the last of duplicate keys kept. */
static void json_go_map(struct sbuf *b, const struct value *v, int depth)
{
    uint32_t n = v->u.kvlist.n;
    struct kv_order *ord = n ? malloc(n * sizeof *ord) : NULL;
    if (n && !ord) {
        if (!b->error) b->error = -ENOMEM;
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        ord[i] = (struct kv_order){&v->u.kvlist.items[i], i};
    qsort(ord, n, sizeof *ord, kv_order_cmp);
    sb_putc(b, '{');
    bool first = true;
    for (uint32_t i = 0; i < n; i++) {
        const struct mstr *k = &ord[i].a->key;
        /* Go's map keeps the last of duplicate keys: skip all but the last. */
        if (i + 1 < n && ord[i + 1].a->key.len == k->len &&
            memcmp(ord[i + 1].a->key.ptr, k->ptr, k->len) == 0)
            continue;
        if (!first) sb_putc(b, ',');
        first = false;
        sb_json_str(b, k->ptr ? k->ptr : "", k->len);
        sb_putc(b, ':');
        json_value(b, &ord[i].a->value, true, depth + 1);
    }
    sb_putc(b, '}');
    free(ord);
}

static void json_value(struct sbuf *b, const struct value *v, bool go_map, int depth)
{
    if (depth > QUERY_MAX_VALUE_DEPTH) {
        sb_puts(b, "null");
        return;
    }
    switch (v->type) {
    case VALUE_STRING:
        sb_json_str(b, v->u.str.ptr ? v->u.str.ptr : "", v->u.str.len);
        break;
    case VALUE_BOOL:
        sb_puts(b, v->u.b ? "true" : "false");
        break;
    case VALUE_INT:
        sb_int(b, v->u.i);
        break;
    case VALUE_DOUBLE:
        sb_double(b, v->u.d);
        break;
    case VALUE_BYTES:
        sb_json_base64(b, (const uint8_t *)v->u.str.ptr, v->u.str.ptr ? v->u.str.len : 0);
        break;
    case VALUE_ARRAY:
        sb_putc(b, '[');
        for (uint32_t i = 0; i < v->u.array.n; i++) {
            if (i) sb_putc(b, ',');
            json_value(b, &v->u.array.items[i], go_map, depth + 1);
        }
        sb_putc(b, ']');
        break;
    case VALUE_KVLIST:
        if (go_map) {
            json_go_map(b, v, depth);
            break;
        }
        sb_putc(b, '{');
        for (uint32_t i = 0; i < v->u.kvlist.n; i++) {
            const struct attr *a = &v->u.kvlist.items[i];
            if (i) sb_putc(b, ',');
            sb_json_str(b, a->key.ptr ? a->key.ptr : "", a->key.len);
            sb_putc(b, ':');
            json_value(b, &a->value, false, depth + 1);
        }
        sb_putc(b, '}');
        break;
    case VALUE_EMPTY:
    default:
        sb_puts(b, "null");
        break;
    }
}

void sb_json_value(struct sbuf *b, const struct value *v, bool go_map)
{
    json_value(b, v, go_map, 0);
}

int query_value_json(const struct value *v, char **out, size_t *out_len)
{
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_json_value(&b, v, false);
    *out = sb_take(&b, out_len);
    return *out ? 0 : -ENOMEM;
}

/* ----- store errors ----------------------------------------------------------------------- */

int query_store_error(const char *log_key, const char *what, int rc, char msg[QUERY_ERRMSG])
{
    snprintf(msg, QUERY_ERRMSG, "%s: storage error: %s", what, strerror(-rc));
    log_ratelimited(LOG_WARN, log_key, "query: %s", msg);
    return rc == -EBUSY || rc == -ENOMEM || rc == -EAGAIN ? 503 : 500;
}
