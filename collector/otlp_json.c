/*
 * otlp_json.c: the OTLP/JSON trace decoder (ExportTraceServiceRequest in the protobuf JSON
 * mapping, with OTLP's exceptions) -> span model, with jansson; its request walk and typed
 * field readers serve the log decoder too (otlp_int.h, otlp_logs.c), with the same rules.
 *
 * The body is parsed whole by jansson (whose parser stops at 2048 levels of nesting: deeper
 * documents fail as invalid JSON), the spans are counted against max_spans before anything is
 * copied, then the tree is converted into the batch arena and released with json_decref.
 *
 * What is accepted, following what protobuf JSON parsers accept:
 *  - keys in lowerCamelCase ("traceId") or as the original proto field names ("trace_id");
 *    the camelCase spelling wins if both are present; unknown keys are ignored; null means the
 *    field's default (also inside arrays: a null element is an empty value / empty message).
 *  - traceId / spanId / parentSpanId (and link ids) as hex strings, any case; "" is empty
 *    (no parent for parentSpanId). Ids that are not hex, or of the wrong length, or all zero
 *    (trace/span id) reject the span, as in the protobuf decoder.
 *  - enums (kind, status.code) as integers, or as their enum value names
 *    ("SPAN_KIND_SERVER", "STATUS_CODE_ERROR"); integers unknown to us become
 *    UNSPECIFIED / UNSET; unknown names fail the request.
 *  - 64-bit integers (times, intValue) as decimal strings or JSON numbers (an integral real
 *    such as 1e3 too); numbers beyond int64 must be strings (jansson refuses larger integer
 *    literals, failing the request). 32-bit fields (flags, dropped counts) likewise, range
 *    checked.
 *  - doubleValue as a number, a numeric string, or "NaN" / "Infinity" / "-Infinity".
 *  - bytesValue as base64, standard or URL-safe alphabet, padding optional.
 * A known field with the wrong JSON type fails the whole request (-EINVAL) with its path,
 * e.g. "resourceSpans[0].scopeSpans[0].spans[2].name: expected a string".
 *
 * Strings: jansson guarantees valid UTF-8; a string containing U+0000 ends at the first NUL,
 * like protobuf-c strings in the protobuf decoder. Caps and depth are those of otlp_proto.c:
 * a span over a cap is rejected alone; a resource or scope over a cap rejects its spans.
 */
#include "otlp.h"
#include "otlp_int.h"
#include "decode.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----- small helpers ----------------------------------------------------------------------- */

int otlp_json_refuse(struct otlp_jconv *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    return DECODE_REFUSE;
}

int otlp_json_invalid(struct otlp_jconv *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* The member named camel (lowerCamelCase) or snake (proto name); NULL if absent or null. */
json_t *otlp_json_field(const json_t *obj, const char *camel, const char *snake)
{
    json_t *v = json_object_get(obj, camel);
    if (!v && snake) v = json_object_get(obj, snake);
    return json_is_null(v) ? NULL : v;
}

/* Field f of obj as an object (or NULL when absent); -EINVAL for another type. */
int otlp_json_object(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                      const char *path, json_t **out)
{
    json_t *v = otlp_json_field(obj, camel, snake);
    *out = NULL;
    if (!v) return 0;
    if (!json_is_object(v))
        return otlp_json_invalid(c, "%s.%s: expected an object, got %s", path, camel,
                                 decode_json_type_name(v));
    *out = v;
    return 0;
}

/* Field as an array (*n = 0 when absent); -EINVAL for another type. */
int otlp_json_array(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                     const char *path, json_t **out, size_t *n)
{
    json_t *v = otlp_json_field(obj, camel, snake);
    *out = NULL;
    *n = 0;
    if (!v) return 0;
    if (!json_is_array(v))
        return otlp_json_invalid(c, "%s.%s: expected an array, got %s", path, camel,
                                 decode_json_type_name(v));
    *out = v;
    *n = json_array_size(v);
    return 0;
}

/* Copies a JSON string into the arena; over max_string -> DECODE_REFUSE. A NUL ("\u0000") becomes
 * U+FFFD, as the protobuf decoder does: the model's strings are NUL-terminated, and cutting the
 * string at the NUL would silently lose the rest of it. */
static int copy_jstr(struct otlp_jconv *c, const json_t *v, struct mstr *out, const char *what)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    size_t nuls = 0;
    for (const char *q = memchr(s, '\0', len); q; q = memchr(q + 1, '\0', len - (size_t)(q + 1 - s)))
        nuls++;
    size_t outlen = len + 2 * nuls; /* each NUL (1 byte) becomes U+FFFD (3 bytes) */
    if (outlen > c->lim->max_string)
        return otlp_json_refuse(c, "%s: string of %zu bytes, max %u", what, outlen,
                                c->lim->max_string);
    char *p;
    if (!nuls) {
        p = arena_strndup(c->b->arena, s, len);
    } else {
        p = arena_alloc(c->b->arena, outlen + 1);
        if (p) {
            size_t o = 0;
            for (size_t i = 0; i < len; i++) {
                if (s[i]) {
                    p[o++] = s[i];
                } else {
                    memcpy(p + o, "\xef\xbf\xbd", 3);
                    o += 3;
                }
            }
            p[o] = '\0';
        }
    }
    if (!p) return -ENOMEM;
    out->ptr = p;
    out->len = (uint32_t)outlen;
    return 0;
}

/* String field; "" when absent. what names it in refusals (relative), path+camel in errors. */
int otlp_json_str(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                  const char *path, const char *what, struct mstr *out)
{
    json_t *v = otlp_json_field(obj, camel, snake);
    if (!v) {
        out->ptr = "";
        out->len = 0;
        return 0;
    }
    if (!json_is_string(v))
        return otlp_json_invalid(c, "%s.%s: expected a string, got %s", path, camel,
                                 decode_json_type_name(v));
    return copy_jstr(c, v, out, what);
}

/* Strict decimal: optional '-' (if allow_neg), digits only, no overflow. */
static bool parse_dec(const char *s, size_t len, bool allow_neg, uint64_t max_pos,
                      uint64_t max_neg, bool *neg, uint64_t *mag)
{
    size_t i = 0;
    *neg = false;
    if (allow_neg && len && s[0] == '-') {
        *neg = true;
        i = 1;
    }
    if (i == len) return false;
    uint64_t v = 0, lim = *neg ? max_neg : max_pos;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (lim - d) / 10) return false;
        v = v * 10 + d;
    }
    *mag = v;
    return true;
}

/* An integer JSON value (number, integral real, or decimal string) within
 * [-max_neg, max_pos]. Returns false if not. */
bool otlp_json_to_int(const json_t *v, uint64_t max_pos, uint64_t max_neg, bool *neg,
                        uint64_t *mag)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        *neg = i < 0;
        *mag = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
        return *neg ? *mag <= max_neg : *mag <= max_pos;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* 2^64 and -2^63 are exact doubles: range-check (NaN fails too) before converting. */
        if (!(d >= -9223372036854775808.0 && d < 18446744073709551616.0)) return false;
        *neg = d < 0;
        if (*neg) {
            int64_t i = (int64_t)d;
            if ((double)i != d) return false;
            *mag = (uint64_t)0 - (uint64_t)i;
        } else {
            uint64_t u = (uint64_t)d;
            if ((double)u != d) return false;
            *mag = u;
        }
        return *neg ? *mag <= max_neg : *mag <= max_pos;
    }
    if (json_is_string(v))
        return parse_dec(json_string_value(v), json_string_length(v), max_neg > 0, max_pos,
                         max_neg, neg, mag);
    return false;
}

int otlp_json_u64(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                  const char *path, uint64_t *out)
{
    json_t *v = otlp_json_field(obj, camel, snake);
    *out = 0;
    if (!v) return 0;
    bool neg;
    if (!otlp_json_to_int(v, UINT64_MAX, 0, &neg, out))
        return otlp_json_invalid(c, "%s.%s: expected an unsigned 64-bit integer", path, camel);
    return 0;
}

int otlp_json_u32(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                  const char *path, uint32_t *out)
{
    json_t *v = otlp_json_field(obj, camel, snake);
    uint64_t m = 0;
    bool neg;
    *out = 0;
    if (!v) return 0;
    if (!otlp_json_to_int(v, UINT32_MAX, 0, &neg, &m))
        return otlp_json_invalid(c, "%s.%s: expected an unsigned 32-bit integer", path, camel);
    *out = (uint32_t)m;
    return 0;
}

/* Enum field: integer (unknown values -> 0) or one of names[] (index = value). */
int otlp_json_enum(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                   const char *path, const char *const *names, int n_names, int *out)
{
    json_t *v = otlp_json_field(obj, camel, snake);
    *out = 0;
    if (!v) return 0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        for (int i = 0; i < n_names; i++)
            if (strcmp(s, names[i]) == 0) {
                *out = i;
                return 0;
            }
        /* A numeric string is not proto JSON, but costs nothing to accept. */
    }
    bool neg;
    uint64_t m;
    if (!otlp_json_to_int(v, INT32_MAX, (uint64_t)INT32_MAX + 1, &neg, &m))
        return otlp_json_invalid(c, "%s.%s: expected an enum number or name", path, camel);
    *out = !neg && m < (uint64_t)n_names ? (int)m : 0;
    return 0;
}

/* An id field: hex string decoded into out (want bytes). Empty/absent allowed only if
 * empty_ok (*present = false then). Bad hex, length or (unless zero_ok) all zero ->
 * DECODE_REFUSE. */
int otlp_json_id(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                 const char *path, const char *what, uint8_t *out, size_t want, bool empty_ok,
                 bool zero_ok, bool *present)
{
    json_t *v = otlp_json_field(obj, camel, snake);
    if (present) *present = false;
    if (v && !json_is_string(v))
        return otlp_json_invalid(c, "%s.%s: expected a hex string, got %s", path, camel,
                                 decode_json_type_name(v));
    const char *s = v ? json_string_value(v) : "";
    size_t len = v ? json_string_length(v) : 0;
    if (len == 0 && empty_ok) return 0;
    if (len % 2) return otlp_json_refuse(c, "%s: odd number of hex digits (%zu)", what, len);
    if (len / 2 != want)
        return otlp_json_refuse(c, "%s: length %zu, want %zu", what, len / 2, want);
    for (size_t i = 0; i < want; i++) {
        int hi = decode_hexval((unsigned char)s[2 * i]),
            lo = decode_hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) return otlp_json_refuse(c, "%s: not a hex string", what);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    if (!zero_ok && id_is_zero(out, want)) return otlp_json_refuse(c, "%s: all zero", what);
    if (present) *present = true;
    return 0;
}

static int b64val(int ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

/* Decodes base64 (either alphabet, padding optional) into dst (room for len*3/4+3). Returns the
 * decoded length or -1. */
static long b64_decode(const char *s, size_t len, uint8_t *dst)
{
    while (len && s[len - 1] == '=') len--;
    if (len % 4 == 1) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

bool otlp_json_to_double(const json_t *x, double *out)
{
    if (json_is_number(x)) {
        *out = json_number_value(x);
        return true;
    }
    if (!json_is_string(x)) return false;
    const char *s = json_string_value(x);
    char *end;
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
        return true;
    }
    if (strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
        *out = s[0] == '-' ? -INFINITY : INFINITY;
        return true;
    }
    /* strtod alone would also take leading blanks, "inf", "nan" and hex floats. */
    bool plain = (*s >= '0' && *s <= '9') || *s == '-' || *s == '.';
    for (const char *q = s; plain && *q; q++)
        plain = (*q >= '0' && *q <= '9') || *q == '-' || *q == '+' || *q == '.' || *q == 'e' ||
                *q == 'E';
    *out = plain ? strtod(s, &end) : 0;
    return plain && *end == '\0' && isfinite(*out);
}

/* ----- AnyValue and attributes ------------------------------------------------------------- */

static int convert_kvs(struct otlp_jconv *c, const json_t *arr, const char *path, const char *what,
                       struct attr **items, uint32_t *n_out, unsigned depth);

/* path: full JSON path of the AnyValue object (for -EINVAL); what: relative name for refusals;
 * depth: arrays/kvlists around this value. */
int otlp_json_value(struct otlp_jconv *c, const json_t *v, const char *path, const char *what,
                    struct value *out, unsigned depth)
{
    out->type = VALUE_EMPTY;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v))
        return otlp_json_invalid(c, "%s: expected an object, got %s", path,
                                 decode_json_type_name(v));
    json_t *x;
    if ((x = otlp_json_field(v, "stringValue", "string_value"))) {
        out->type = VALUE_STRING;
        if (!json_is_string(x))
            return otlp_json_invalid(c, "%s.stringValue: expected a string, got %s", path,
                                     decode_json_type_name(x));
        return copy_jstr(c, x, &out->u.str, what);
    }
    if ((x = otlp_json_field(v, "boolValue", "bool_value"))) {
        out->type = VALUE_BOOL;
        if (!json_is_boolean(x))
            return otlp_json_invalid(c, "%s.boolValue: expected a boolean, got %s", path,
                                     decode_json_type_name(x));
        out->u.b = json_is_true(x);
        return 0;
    }
    if ((x = otlp_json_field(v, "intValue", "int_value"))) {
        bool neg;
        uint64_t m;
        out->type = VALUE_INT;
        if (!otlp_json_to_int(x, INT64_MAX, (uint64_t)INT64_MAX + 1, &neg, &m))
            return otlp_json_invalid(c, "%s.intValue: expected a 64-bit integer", path);
        out->u.i = neg ? (int64_t)(0 - m) : (int64_t)m;
        return 0;
    }
    if ((x = otlp_json_field(v, "doubleValue", "double_value"))) {
        out->type = VALUE_DOUBLE;
        if (otlp_json_to_double(x, &out->u.d)) return 0;
        return otlp_json_invalid(c, "%s.doubleValue: expected a number", path);
    }
    if ((x = otlp_json_field(v, "bytesValue", "bytes_value"))) {
        out->type = VALUE_BYTES;
        if (!json_is_string(x))
            return otlp_json_invalid(c, "%s.bytesValue: expected a base64 string, got %s", path,
                                     decode_json_type_name(x));
        size_t len = json_string_length(x);
        if (len / 4 * 3 > c->lim->max_string + 3)
            return otlp_json_refuse(c, "%s: bytes value over %u bytes", what, c->lim->max_string);
        uint8_t *p = arena_alloc(c->b->arena, len / 4 * 3 + 4);
        if (!p) return -ENOMEM;
        long n = b64_decode(json_string_value(x), len, p);
        if (n < 0) return otlp_json_invalid(c, "%s.bytesValue: invalid base64", path);
        if ((size_t)n > c->lim->max_string)
            return otlp_json_refuse(c, "%s: bytes value of %ld bytes, max %u", what, n,
                                    c->lim->max_string);
        p[n] = 0;
        out->u.str.ptr = (const char *)p;
        out->u.str.len = (uint32_t)n;
        return 0;
    }
    if ((x = otlp_json_field(v, "arrayValue", "array_value"))) {
        char sub[256];
        json_t *vals;
        size_t n;
        out->type = VALUE_ARRAY;
        if (!json_is_object(x))
            return otlp_json_invalid(c, "%s.arrayValue: expected an object, got %s", path,
                                     decode_json_type_name(x));
        if (depth + 1 > c->lim->max_depth)
            return otlp_json_refuse(c, "%s: values nested deeper than %u", what, c->lim->max_depth);
        decode_pathf(sub, sizeof sub, "%s.arrayValue", path);
        int rc = otlp_json_array(c, x, "values", NULL, sub, &vals, &n);
        if (rc) return rc;
        if (n > c->lim->max_attrs)
            return otlp_json_refuse(c, "%s: array of %zu values, max %u", what, n,
                                    c->lim->max_attrs);
        if (!n) return 0;
        struct value *items = arena_alloc(c->b->arena, n * sizeof *items);
        if (!items) return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            decode_pathf(sub, sizeof sub, "%s.arrayValue.values[%zu]", path, i);
            rc = otlp_json_value(c, json_array_get(vals, i), sub, what, &items[i], depth + 1);
            if (rc) return rc;
        }
        out->u.array.items = items;
        out->u.array.n = (uint32_t)n;
        return 0;
    }
    if ((x = otlp_json_field(v, "kvlistValue", "kvlist_value"))) {
        char sub[256];
        json_t *vals;
        size_t n;
        out->type = VALUE_KVLIST;
        if (!json_is_object(x))
            return otlp_json_invalid(c, "%s.kvlistValue: expected an object, got %s", path,
                                     decode_json_type_name(x));
        if (depth + 1 > c->lim->max_depth)
            return otlp_json_refuse(c, "%s: values nested deeper than %u", what, c->lim->max_depth);
        decode_pathf(sub, sizeof sub, "%s.kvlistValue", path);
        int rc = otlp_json_array(c, x, "values", NULL, sub, &vals, &n);
        if (rc || !n) return rc;
        decode_pathf(sub, sizeof sub, "%s.kvlistValue.values", path);
        return convert_kvs(c, vals, sub, what, &out->u.kvlist.items, &out->u.kvlist.n,
                           depth + 1);
    }
    return 0; /* no known member: an empty AnyValue */
}

/* arr: JSON array of KeyValue (may be NULL); path: its full path. */
static int convert_kvs(struct otlp_jconv *c, const json_t *arr, const char *path, const char *what,
                       struct attr **items, uint32_t *n_out, unsigned depth)
{
    size_t n = arr ? json_array_size(arr) : 0;
    *items = NULL;
    *n_out = 0;
    if (n > c->lim->max_attrs)
        return otlp_json_refuse(c, "%s: %zu attributes, max %u", what, n, c->lim->max_attrs);
    if (!n) return 0;
    struct attr *a = arena_alloc(c->b->arena, n * sizeof *a);
    if (!a) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char sub[256], rel[96];
        const json_t *kv = json_array_get(arr, i);
        decode_pathf(sub, sizeof sub, "%s[%zu]", path, i);
        decode_pathf(rel, sizeof rel, "%s[%zu]", what, i);
        a[i].key.ptr = "";
        if (json_is_null(kv)) continue;
        if (!json_is_object(kv))
            return otlp_json_invalid(c, "%s: expected an object, got %s", sub,
                                     decode_json_type_name(kv));
        int rc = otlp_json_str(c, kv, "key", NULL, sub, rel, &a[i].key);
        if (!rc) {
            char vpath[272];
            decode_pathf(vpath, sizeof vpath, "%s.value", sub);
            rc = otlp_json_value(c, otlp_json_field(kv, "value", NULL), vpath, rel, &a[i].value,
                                 depth);
        }
        if (rc) return rc;
    }
    *items = a;
    *n_out = (uint32_t)n;
    return 0;
}

/* attributes + droppedAttributesCount of obj (a span, event, link, resource or scope). */
int otlp_json_attrs(struct otlp_jconv *c, const json_t *obj, const char *path, const char *what,
                    struct attrs *out)
{
    json_t *arr;
    size_t n;
    char sub[256];
    int rc = otlp_json_u32(c, obj, "droppedAttributesCount", "dropped_attributes_count", path,
                           &out->dropped);
    if (!rc) rc = otlp_json_array(c, obj, "attributes", NULL, path, &arr, &n);
    if (rc) return rc;
    decode_pathf(sub, sizeof sub, "%s.attributes", path);
    return convert_kvs(c, arr, sub, what, &out->items, &out->n, 0);
}

/* ----- spans ------------------------------------------------------------------------------- */

static const char *const kind_names[] = {
    "SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",      "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER",
};
static const char *const status_names[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                           "STATUS_CODE_ERROR"};

static int convert_event(struct otlp_jconv *c, const json_t *e, const char *path, size_t i,
                         struct span_event *out)
{
    char rel[64];
    int rc;
    out->name.ptr = "";
    if (!e) return 0;
    if (!json_is_object(e))
        return otlp_json_invalid(c, "%s: expected an object, got %s", path,
                                 decode_json_type_name(e));
    if ((rc = otlp_json_u64(c, e, "timeUnixNano", "time_unix_nano", path, &out->time_unix_nano)))
        return rc;
    decode_pathf(rel, sizeof rel, "events[%zu].name", i);
    if ((rc = otlp_json_str(c, e, "name", NULL, path, rel, &out->name))) return rc;
    decode_pathf(rel, sizeof rel, "events[%zu].attributes", i);
    return otlp_json_attrs(c, e, path, rel, &out->attrs);
}

static int convert_link(struct otlp_jconv *c, const json_t *l, const char *path, size_t i,
                        struct span_link *out)
{
    char rel[64];
    int rc;
    out->trace_state.ptr = "";
    if (l && !json_is_object(l))
        return otlp_json_invalid(c, "%s: expected an object, got %s", path,
                                 decode_json_type_name(l));
    /* A null link has empty ids, refused below like an empty protobuf Link. */
    decode_pathf(rel, sizeof rel, "links[%zu].traceId", i);
    if ((rc = otlp_json_id(c, l, "traceId", "trace_id", path, rel, out->trace_id, 16, false, true,
                           NULL)))
        return rc;
    decode_pathf(rel, sizeof rel, "links[%zu].spanId", i);
    if ((rc = otlp_json_id(c, l, "spanId", "span_id", path, rel, out->span_id, 8, false, true,
                           NULL)))
        return rc;
    decode_pathf(rel, sizeof rel, "links[%zu].traceState", i);
    if ((rc = otlp_json_str(c, l, "traceState", "trace_state", path, rel, &out->trace_state)))
        return rc;
    if ((rc = otlp_json_u32(c, l, "flags", NULL, path, &out->flags))) return rc;
    decode_pathf(rel, sizeof rel, "links[%zu].attributes", i);
    return otlp_json_attrs(c, l, path, rel, &out->attrs);
}

static int convert_span(struct otlp_jconv *c, const json_t *js, const char *path, struct span *s)
{
    int rc, v;
    json_t *arr, *status;
    size_t n_events, n_links;
    char sub[256];

    s->name.ptr = s->trace_state.ptr = s->status_message.ptr = "";
    if (json_is_null(js)) js = NULL; /* an empty span: refused for its empty ids */
    if (js && !json_is_object(js))
        return otlp_json_invalid(c, "%s: expected an object, got %s", path,
                                 decode_json_type_name(js));
    if ((rc = otlp_json_id(c, js, "traceId", "trace_id", path, "traceId", s->trace_id, 16, false,
                           false, NULL)))
        return rc;
    if ((rc = otlp_json_id(c, js, "spanId", "span_id", path, "spanId", s->span_id, 8, false, false,
                           NULL)))
        return rc;
    if ((rc = otlp_json_id(c, js, "parentSpanId", "parent_span_id", path, "parentSpanId",
                           s->parent_span_id, 8, true, true, &s->has_parent)))
        return rc;
    if (s->has_parent && id_is_zero(s->parent_span_id, 8)) s->has_parent = false;

    if ((rc = otlp_json_array(c, js, "events", NULL, path, &arr, &n_events))) return rc;
    if (n_events > c->lim->max_events)
        return otlp_json_refuse(c, "events: %zu events, max %u", n_events, c->lim->max_events);
    if ((rc = otlp_json_array(c, js, "links", NULL, path, &arr, &n_links))) return rc;
    if (n_links > c->lim->max_links)
        return otlp_json_refuse(c, "links: %zu links, max %u", n_links, c->lim->max_links);

    if ((rc = otlp_json_str(c, js, "traceState", "trace_state", path, "traceState",
                            &s->trace_state)))
        return rc;
    if ((rc = otlp_json_u32(c, js, "flags", NULL, path, &s->flags))) return rc;
    if ((rc = otlp_json_str(c, js, "name", NULL, path, "name", &s->name))) return rc;
    if ((rc = otlp_json_enum(c, js, "kind", NULL, path, kind_names, 6, &v))) return rc;
    s->kind = (enum span_kind)v;
    if ((rc = otlp_json_u64(c, js, "startTimeUnixNano", "start_time_unix_nano", path,
                            &s->start_unix_nano)))
        return rc;
    if ((rc = otlp_json_u64(c, js, "endTimeUnixNano", "end_time_unix_nano", path,
                            &s->end_unix_nano)))
        return rc;
    if ((rc = otlp_json_attrs(c, js, path, "attributes", &s->attrs))) return rc;
    if ((rc = otlp_json_u32(c, js, "droppedEventsCount", "dropped_events_count", path,
                            &s->dropped_events)))
        return rc;
    if ((rc = otlp_json_u32(c, js, "droppedLinksCount", "dropped_links_count", path,
                            &s->dropped_links)))
        return rc;

    if ((rc = otlp_json_object(c, js, "status", NULL, path, &status))) return rc;
    if (status) {
        decode_pathf(sub, sizeof sub, "%s.status", path);
        if ((rc = otlp_json_enum(c, status, "code", NULL, sub, status_names, 3, &v))) return rc;
        s->status_code = (enum status_code)v;
        if ((rc = otlp_json_str(c, status, "message", NULL, sub, "status.message",
                                &s->status_message)))
            return rc;
    }

    if (n_events) {
        arr = otlp_json_field(js, "events", NULL);
        s->events = arena_alloc(c->b->arena, n_events * sizeof *s->events);
        if (!s->events) return -ENOMEM;
        for (size_t i = 0; i < n_events; i++) {
            decode_pathf(sub, sizeof sub, "%s.events[%zu]", path, i);
            json_t *e = json_array_get(arr, i);
            rc = convert_event(c, json_is_null(e) ? NULL : e, sub, i, &s->events[i]);
            if (rc) return rc;
        }
        s->n_events = (uint32_t)n_events;
    }
    if (n_links) {
        arr = otlp_json_field(js, "links", NULL);
        s->links = arena_alloc(c->b->arena, n_links * sizeof *s->links);
        if (!s->links) return -ENOMEM;
        for (size_t i = 0; i < n_links; i++) {
            json_t *l = json_array_get(arr, i);
            decode_pathf(sub, sizeof sub, "%s.links[%zu]", path, i);
            rc = convert_link(c, json_is_null(l) ? NULL : l, sub, i, &s->links[i]);
            if (rc) return rc;
        }
        s->n_links = (uint32_t)n_links;
    }
    return 0;
}

/* ----- the request walk, shared by every signal (otlp_int.h) ------------------------------ */

/* Items under one Resource<X> (arrays only; type errors are reported by the conversion). */
static uint64_t count_rx_items(const struct otlp_json_signal *sig, const json_t *rx)
{
    uint64_t n = 0;
    size_t j;
    json_t *sx;
    json_t *sxa =
        json_is_object(rx) ? otlp_json_field(rx, sig->scope_camel, sig->scope_snake) : NULL;
    if (!json_is_array(sxa)) return 0;
    json_array_foreach(sxa, j, sx)
    {
        json_t *it =
            json_is_object(sx) ? otlp_json_field(sx, sig->items_camel, sig->items_snake) : NULL;
        if (json_is_array(it)) n += json_array_size(it);
    }
    return n;
}

static int convert_scope_items(struct otlp_jconv *c, const struct otlp_json_signal *sig,
                               const json_t *sx, const char *path, const struct resource *res)
{
    json_t *jscope, *items;
    size_t n;
    char sub[256];
    if (!json_is_object(sx))
        return otlp_json_invalid(c, "%s: expected an object, got %s", path,
                                 decode_json_type_name(sx));
    int rc = otlp_json_array(c, sx, sig->items_camel, sig->items_snake, path, &items, &n);
    if (rc) return rc;

    struct scope *sc = arena_alloc(c->b->arena, sizeof *sc);
    if (!sc) return -ENOMEM;
    sc->name.ptr = sc->version.ptr = "";
    rc = otlp_json_str(c, sx, "schemaUrl", "schema_url", path, "schemaUrl", &sc->schema_url);
    if (!rc) rc = otlp_json_object(c, sx, "scope", NULL, path, &jscope);
    if (!rc && jscope) {
        decode_pathf(sub, sizeof sub, "%s.scope", path);
        rc = otlp_json_str(c, jscope, "name", NULL, sub, "scope.name", &sc->name);
        if (!rc) rc = otlp_json_str(c, jscope, "version", NULL, sub, "scope.version", &sc->version);
        if (!rc) rc = otlp_json_attrs(c, jscope, sub, "scope.attributes", &sc->attrs);
    }
    if (rc == DECODE_REFUSE) return decode_reject(c->b, (uint32_t)n, "%s.%s", path, c->why);
    if (rc) return rc;

    for (size_t i = 0; i < n; i++) {
        decode_pathf(sub, sizeof sub, "%s.%s[%zu]", path, sig->items_camel, i);
        rc = sig->convert_item(c, json_array_get(items, i), sub, res, sc);
        if (rc == DECODE_REFUSE) rc = decode_reject(c->b, 1, "%s.%s", sub, c->why);
        if (rc) return rc;
    }
    return 0;
}

static int convert_request(struct otlp_jconv *c, const struct otlp_json_signal *sig,
                           const json_t *root)
{
    json_t *rx_arr;
    size_t n_rx;
    int rc =
        otlp_json_array(c, root, sig->resource_camel, sig->resource_snake, "request", &rx_arr, &n_rx);
    if (rc) return rc;
    uint64_t total = 0;
    for (size_t ri = 0; ri < n_rx; ri++)
        total += count_rx_items(sig, json_array_get(rx_arr, ri));
    if (total > c->lim->max_spans) return -E2BIG;

    for (size_t ri = 0; ri < n_rx; ri++) {
        const json_t *rx = json_array_get(rx_arr, ri);
        char path[64];
        json_t *jres, *sx_arr;
        size_t n_sx;
        decode_pathf(path, sizeof path, "%s[%zu]", sig->resource_camel, ri);
        if (json_is_null(rx)) continue;
        if (!json_is_object(rx))
            return otlp_json_invalid(c, "%s: expected an object, got %s", path,
                                     decode_json_type_name(rx));
        if ((rc = otlp_json_array(c, rx, sig->scope_camel, sig->scope_snake, path, &sx_arr, &n_sx)))
            return rc;

        struct resource *res = arena_alloc(c->b->arena, sizeof *res);
        if (!res) return -ENOMEM;
        rc = otlp_json_str(c, rx, "schemaUrl", "schema_url", path, "schemaUrl", &res->schema_url);
        if (!rc) rc = otlp_json_object(c, rx, "resource", NULL, path, &jres);
        if (!rc && jres) {
            char sub[96];
            decode_pathf(sub, sizeof sub, "%s.resource", path);
            rc = otlp_json_attrs(c, jres, sub, "resource.attributes", &res->attrs);
        }
        if (rc == DECODE_REFUSE) {
            /* bounded by max_spans, checked above */
            if ((rc =
                     decode_reject(c->b, (uint32_t)count_rx_items(sig, rx), "%s.%s", path, c->why)))
                return rc;
            continue;
        }
        if (rc) return rc;

        for (size_t si = 0; si < n_sx; si++) {
            char sub[128];
            const json_t *sx = json_array_get(sx_arr, si);
            decode_pathf(sub, sizeof sub, "%s.%s[%zu]", path, sig->scope_camel, si);
            if (json_is_null(sx)) continue;
            if ((rc = convert_scope_items(c, sig, sx, sub, res))) return rc;
        }
    }
    return 0;
}

int otlp_json_decode(const struct otlp_json_signal *sig, const uint8_t *body, size_t len,
                     const struct decode_limits *lim, struct span_batch *out, char *err,
                     size_t errlen)
{
    struct decode_limits defaults;
    lim = decode_limits_or_default(lim, &defaults);
    json_t *root = decode_json_load(body, len, err, errlen);
    if (!root) return -EINVAL;
    struct otlp_jconv c = {.b = out, .lim = lim};
    int rc;
    if (!json_is_object(root)) {
        rc = otlp_json_invalid(&c, "request: expected an object, got %s",
                               decode_json_type_name(root));
    } else {
        rc = convert_request(&c, sig, root);
        if (rc == -E2BIG)
            snprintf(c.err, sizeof c.err, "more than %u %s in one request", lim->max_spans,
                     sig->noun);
    }
    json_decref(root);
    if (rc == -ENOMEM) snprintf(c.err, sizeof c.err, "out of memory decoding the request");
    if (rc && err && errlen) snprintf(err, errlen, "%s", c.err);
    return rc;
}

/* ----- traces ------------------------------------------------------------------------------ */

static int convert_span_item(struct otlp_jconv *c, const json_t *item, const char *path,
                             const struct resource *res, const struct scope *sc)
{
    struct span *s = span_batch_add(c->b);
    if (!s) return -ENOMEM;
    s->resource = res;
    s->scope = sc;
    int rc = convert_span(c, item, path, s);
    if (rc == DECODE_REFUSE) span_batch_drop_last(c->b);
    return rc;
}

static const struct otlp_json_signal trace_signal = {
    "resourceSpans", "resource_spans", "scopeSpans", "scope_spans", "spans", NULL, "spans",
    convert_span_item};

int otlp_decode_traces_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                            struct span_batch *out, char *err, size_t errlen)
{
    return otlp_json_decode(&trace_signal, body, len, lim, out, err, errlen);
}
