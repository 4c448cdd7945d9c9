/*
 * accesslog.c: the access-log decoder (mapping and limits in accesslog.h).
 *
 * NDJSON lines, the hot path, are read by a single-pass scanner (scan_object): it walks the
 * line once, matches each top-level key against the known fields by length and memcmp
 * (key_index), and keeps for each known key a view of its value: strings point into the line
 * unless they hold a backslash (then they are unescaped into a per-call scratch buffer),
 * numbers are parsed in place; the values of other keys are validated and skipped. It accepts
 * exactly what jansson accepts (RFC 8259 JSON, strict UTF-8, no "\u0000", nesting at most
 * 2048 deep, integers in int64, finite reals), last duplicate key wins as in jansson, and says
 * "invalid JSON: <why>" otherwise. JSON arrays and the pretty-printed single object, rare and
 * small, still go through jansson (their records are re-serialised for ALOG_RAW) and are turned
 * into the same views (fields_from_json), so both paths share add_record and its rules.
 * Memory per request is the batch plus the scratch buffer (at most one line's length).
 */
#include "accesslog.h"
#include "decode.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ----- known keys ------------------------------------------------------------------------------
 * Every key the mapping reads has an index: first the string fields (str_fields, in table order,
 * so aliases keep their precedence), then the others. */
enum {
    K_MSEC = 64, /* after the str_fields entries (fewer than 64, checked below) */
    K_REQUEST_TIME,
    K_START_TIME,
    K_TIMESTAMP,
    K_TIME,
    K_AT_TIMESTAMP,
    K_START_TIME_MS,
    K_FRONTEND_NAME,
    K_RESPONSE_CODE,
    K_BYTES_RECEIVED,
    K_BYTES_SENT,
    K_DURATION,
    K_UPSTREAM_SERVICE_TIME,
    K_UPSTREAM_RESPONSE_TIME,
    K_TRACEPARENT,
    K_TRACE_ID,
    K_TRACE_ID2,
    K_TRACE_ID3,
    K_TRACE_ID4,
    K_SPAN_ID,
    K_SPAN_ID2,
    K_SPAN_ID3,
    K_SPAN_ID4,
    K_COUNT
};
static const char *const other_keys[K_COUNT - K_MSEC] = {
    "msec",         "request_time",   "start_time",     "timestamp",    "time",
    "@timestamp",   "start_time_ms",  "frontend_name",  "response_code", "bytes_received",
    "bytes_sent",   "duration",       "upstream_service_time", "upstream_response_time",
    "traceparent",  "trace_id",       "traceId",        "x-b3-traceid", "x_b3_traceid",
    "span_id",      "spanId",         "x-b3-spanid",    "x_b3_spanid"};

/* The value of one known key, as the scanner (or jansson) found it. */
enum vtype { V_ABSENT = 0, V_NULL, V_STRING, V_INT, V_REAL, V_OTHER /* bool, object, array */ };
struct jval {
    uint8_t type;
    uint32_t n;    /* V_STRING: length (unescaped) */
    const char *s; /* V_STRING: the string (in the line, the scratch buffer or jansson's tree) */
    int64_t i;     /* V_INT */
    double d;      /* V_REAL (and V_INT as a double) */
};
struct fields {
    struct jval v[K_COUNT];
    uint32_t members; /* top-level members, duplicates included */
};

/* Why the record at hand is refused, set by the helpers that return DECODE_REFUSE. */
struct line_ctx {
    struct span_batch *b;
    const struct decode_limits *lim;
    const struct alog_defaults *d; /* never NULL (a zeroed one when the caller gave none) */
    struct mstr frontend;          /* HAProxy's frontend_name of the record at hand, borrowed */
    const char *raw;               /* the record's line (values found in it get a raw_ref) */
    size_t raw_len;
    char why[256];
};

static int refuse(struct line_ctx *c, const char *key, const char *what)
{
    snprintf(c->why, sizeof c->why, "%s: %s", key, what);
    return DECODE_REFUSE;
}


/* String fields: JSON key -> slot. Aliases share a slot; the first present wins. */
static const struct {
    const char *key;
    enum alog_str slot;
} str_fields[] = {
    {"service", ALOG_SERVICE},
    {"service.name", ALOG_SERVICE},
    {"service_name", ALOG_SERVICE},
    {"istio.canonical_service", ALOG_SERVICE},
    {"canonical_service", ALOG_SERVICE},
    {"method", ALOG_METHOD},
    {"path", ALOG_PATH},
    {"protocol", ALOG_PROTOCOL},
    {"response_flags", ALOG_RESPONSE_FLAGS},
    {"response_code_details", ALOG_RESPONSE_CODE_DETAILS},
    {"connection_termination_details", ALOG_CONNECTION_TERMINATION_DETAILS},
    {"upstream_transport_failure_reason", ALOG_UPSTREAM_TRANSPORT_FAILURE_REASON},
    {"x_forwarded_for", ALOG_X_FORWARDED_FOR},
    {"user_agent", ALOG_USER_AGENT},
    {"request_id", ALOG_REQUEST_ID},
    {"authority", ALOG_AUTHORITY},
    {"upstream_host", ALOG_UPSTREAM_HOST},
    {"upstream_cluster", ALOG_UPSTREAM_CLUSTER},
    {"upstream_local_address", ALOG_UPSTREAM_LOCAL_ADDRESS},
    {"downstream_local_address", ALOG_DOWNSTREAM_LOCAL_ADDRESS},
    {"downstream_remote_address", ALOG_DOWNSTREAM_REMOTE_ADDRESS},
    {"requested_server_name", ALOG_REQUESTED_SERVER_NAME},
    {"route_name", ALOG_ROUTE_NAME},
    {"source_workload", ALOG_SOURCE_WORKLOAD},
    {"source_namespace", ALOG_SOURCE_NAMESPACE},
    {"source_workload_namespace", ALOG_SOURCE_NAMESPACE},
    {"source_principal", ALOG_SOURCE_PRINCIPAL},
    {"destination_workload", ALOG_DESTINATION_WORKLOAD},
    {"destination_namespace", ALOG_DESTINATION_NAMESPACE},
    {"destination_workload_namespace", ALOG_DESTINATION_NAMESPACE},
    {"upstream_name", ALOG_DESTINATION_SERVICE},
    {"backend_name", ALOG_DESTINATION_SERVICE},
};

_Static_assert(sizeof str_fields / sizeof str_fields[0] <= K_MSEC, "too many string fields");

/* Key lookup: the known keys grouped by length, then memcmp (a handful per length). */
#define KEY_MAX_LEN 40
static struct {
    uint8_t first[KEY_MAX_LEN + 2]; /* keys of length n: order[first[n] .. first[n+1]) */
    uint8_t order[K_COUNT];
    const char *name[K_COUNT];
} keys;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void keys_init(void)
{
    size_t n_str = sizeof str_fields / sizeof str_fields[0];
    for (size_t k = 0; k < K_COUNT; k++)
        keys.name[k] = k < n_str ? str_fields[k].key : k >= K_MSEC ? other_keys[k - K_MSEC] : NULL;
    size_t o = 0;
    for (size_t len = 0; len <= KEY_MAX_LEN; len++) {
        keys.first[len] = (uint8_t)o;
        for (size_t k = 0; k < K_COUNT; k++)
            if (keys.name[k] && strlen(keys.name[k]) == len) keys.order[o++] = (uint8_t)k;
    }
    keys.first[KEY_MAX_LEN + 1] = (uint8_t)o;
}

/* The index of key s[0..n), or -1 for a key the mapping does not read. */
static int key_index(const char *s, size_t n)
{
    if (n > KEY_MAX_LEN) return -1;
    for (unsigned i = keys.first[n]; i < keys.first[n + 1]; i++) {
        unsigned k = keys.order[i];
        if (memcmp(keys.name[k], s, n) == 0) return (int)k;
    }
    return -1;
}

/* ----- the scanner ----------------------------------------------------------------------------- */

#define SCAN_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct scan {
    const unsigned char *p, *end;
    char *scratch; /* unescaped strings, back to back; room for the whole line */
    size_t scratch_len;
    char *why;
    size_t whylen;
};

static int scan_fail(struct scan *sc, const char *what)
{
    snprintf(sc->why, sc->whylen, "invalid JSON: %s", what);
    return DECODE_REFUSE;
}

static void skip_ws(struct scan *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = decode_hexval(p[i]);
        if (h < 0) return -1;
        v = v << 4 | h;
    }
    return v;
}

/* A string at sc->p (the opening quote). want: the caller keeps it, so an escaped one is
 * unescaped into the scratch buffer; else it is only validated. *out: the string (when want). */
static int scan_string(struct scan *sc, bool want, struct jval *out)
{
    const unsigned char *start = ++sc->p, *p = start, *end = sc->end;
    bool escaped = false;
    for (;;) {
        /* the common bytes, fast: 8 at a time while none is '"', '\\', a control character
         * or non-ASCII (the bit tricks may also stop early, never late), then one by one */
        while (end - p >= 8) {
            uint64_t x, ones = UINT64_C(0x0101010101010101), high = ones * 0x80;
            memcpy(&x, p, 8);
            uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
            uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x) | x;
            if (hit & high) break;
            p += 8;
        }
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80) p++;
        if (p >= end) return scan_fail(sc, "premature end of input (unterminated string)");
        unsigned char c = *p;
        if (c == '"') break;
        if (c == '\\') {
            escaped = true;
            if (p + 1 >= end) return scan_fail(sc, "premature end of input");
            unsigned char e = p[1];
            if (e == 'u') {
                if (end - p < 6) return scan_fail(sc, "invalid escape");
                int u = hex4(p + 2);
                if (u < 0) return scan_fail(sc, "invalid escape");
                if (u == 0) return scan_fail(sc, "\\u0000 is not allowed without JSON_ALLOW_NUL");
                p += 6;
                if (u >= 0xd800 && u <= 0xdbff) {
                    int lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
                    if (lo < 0xdc00 || lo > 0xdfff)
                        return scan_fail(sc, "invalid Unicode (lone high surrogate)");
                    p += 6;
                } else if (u >= 0xdc00 && u <= 0xdfff) {
                    return scan_fail(sc, "invalid Unicode (lone low surrogate)");
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || !e) return scan_fail(sc, "invalid escape");
            p += 2;
            continue;
        }
        if (c < 0x20) return scan_fail(sc, "control character in a string");
        size_t n = decode_utf8_seq(p, (size_t)(end - p)); /* c >= 0x80 here */
        if (!n) return scan_fail(sc, "invalid UTF-8 in a string");
        p += n;
    }
    sc->p = p + 1;
    if (!want) return 0;
    out->type = V_STRING;
    if (!escaped) {
        out->s = (const char *)start;
        out->n = (uint32_t)(p - start);
        return 0;
    }
    /* Unescape (validated above) into the scratch buffer: never longer than the escaped text. */
    char *o = sc->scratch + sc->scratch_len, *o0 = o;
    for (const unsigned char *q = start; q < p;) {
        if (*q != '\\') {
            *o++ = (char)*q++;
            continue;
        }
        unsigned char e = q[1];
        if (e != 'u') {
            *o++ = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r'
                 : e == 't' ? '\t' : (char)e;
            q += 2;
            continue;
        }
        unsigned cp = (unsigned)hex4(q + 2);
        q += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)hex4(q + 2) - 0xdc00);
            q += 6;
        }
        if (cp < 0x80) {
            *o++ = (char)cp;
        } else if (cp < 0x800) {
            *o++ = (char)(0xc0 | cp >> 6);
            *o++ = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            *o++ = (char)(0xe0 | cp >> 12);
            *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        } else {
            *o++ = (char)(0xf0 | cp >> 18);
            *o++ = (char)(0x80 | (cp >> 12 & 0x3f));
            *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        }
    }
    out->s = o0;
    out->n = (uint32_t)(o - o0);
    sc->scratch_len += (size_t)(o - o0);
    return 0;
}

/* A number at sc->p: RFC 8259 grammar; integers must fit int64 and reals be finite (jansson). */
static int scan_number(struct scan *sc, struct jval *out)
{
    const unsigned char *p = sc->p, *end = sc->end, *start = p;
    bool neg = p < end && *p == '-';
    if (neg) p++;
    if (p >= end || *p < '0' || *p > '9') return scan_fail(sc, "invalid token");
    uint64_t v = 0;
    bool overflow = false;
    if (*p == '0') {
        p++;
    } else {
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            unsigned dgt = (unsigned)(*p - '0');
            if (v > (UINT64_C(9223372036854775808) - dgt) / 10) overflow = true;
            else v = v * 10 + dgt;
        }
    }
    bool real = false;
    if (p < end && *p == '.') {
        real = true;
        p++;
        if (p >= end || *p < '0' || *p > '9') return scan_fail(sc, "invalid number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return scan_fail(sc, "invalid number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    sc->p = p;
    if (real) {
        char tmp[64], *t = tmp;
        size_t n = (size_t)(p - start);
        if (n >= sizeof tmp && !(t = malloc(n + 1))) return -ENOMEM; /* a long one: rare */
        memcpy(t, start, n);
        t[n] = '\0';
        double d = strtod(t, NULL);
        if (t != tmp) free(t);
        if (!isfinite(d)) return scan_fail(sc, "real number overflow");
        if (out) {
            out->type = V_REAL;
            out->d = d;
        }
        return 0;
    }
    if (overflow || (!neg && v > (uint64_t)INT64_MAX))
        return scan_fail(sc, neg ? "too big negative integer" : "too big integer");
    if (out) {
        out->type = V_INT;
        out->i = neg ? (int64_t)(0 - v) : (int64_t)v;
        out->d = (double)out->i;
    }
    return 0;
}

static int scan_literal(struct scan *sc, const char *lit, size_t n, uint8_t type, struct jval *out)
{
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, lit, n) != 0)
        return scan_fail(sc, "invalid token");
    sc->p += n;
    if (out) out->type = type;
    return 0;
}

/* Any value at sc->p, validated and skipped (nested containers walked with a depth count). */
static int skip_value(struct scan *sc, unsigned depth)
{
    /* stack of open containers: 1 = object, 0 = array, as bits */
    uint8_t stack[SCAN_MAX_DEPTH / 8 + 1];
    unsigned top = 0; /* open containers */
    int rc;
    for (;;) {
        skip_ws(sc);
        if (sc->p >= sc->end) return scan_fail(sc, "premature end of input");
        unsigned char c = *sc->p;
        if (c == '{' || c == '[') {
            if (depth + top + 1 > SCAN_MAX_DEPTH) return scan_fail(sc, "maximum parsing depth reached");
            bool obj = c == '{';
            if (obj) stack[top / 8] |= (uint8_t)(1u << (top % 8));
            else stack[top / 8] &= (uint8_t) ~(1u << (top % 8));
            top++;
            sc->p++;
            skip_ws(sc);
            if (sc->p < sc->end && *sc->p == (obj ? '}' : ']')) {
                sc->p++;
                top--;
                goto after_value;
            }
            if (obj) goto member;
            continue; /* first element */
        }
        if (c == '"') rc = scan_string(sc, false, NULL);
        else if (c == 't') rc = scan_literal(sc, "true", 4, V_OTHER, NULL);
        else if (c == 'f') rc = scan_literal(sc, "false", 5, V_OTHER, NULL);
        else if (c == 'n') rc = scan_literal(sc, "null", 4, V_NULL, NULL);
        else rc = scan_number(sc, NULL);
        if (rc) return rc;
    after_value:
        if (!top) return 0;
        skip_ws(sc);
        if (sc->p >= sc->end) return scan_fail(sc, "premature end of input");
        bool in_obj = stack[(top - 1) / 8] >> ((top - 1) % 8) & 1;
        if (*sc->p == ',') {
            sc->p++;
            if (in_obj) goto member;
            continue;
        }
        if (*sc->p == (in_obj ? '}' : ']')) {
            sc->p++;
            top--;
            goto after_value;
        }
        return scan_fail(sc, in_obj ? "'}' expected" : "']' expected");
    member:
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != '"') return scan_fail(sc, "string or '}' expected");
        if ((rc = scan_string(sc, false, NULL))) return rc;
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ':') return scan_fail(sc, "':' expected");
        sc->p++;
    }
}

/* One line: a JSON object (its known keys' values into f) or DECODE_REFUSE with sc->why
 * ("not a JSON object" for valid JSON of another type). */
static int scan_object(struct scan *sc, struct fields *f)
{
    memset(f, 0, sizeof *f);
    skip_ws(sc);
    int rc;
    if (sc->p >= sc->end || *sc->p != '{') {
        if ((rc = skip_value(sc, 0))) return rc;
        skip_ws(sc);
        if (sc->p != sc->end) return scan_fail(sc, "end of file expected");
        snprintf(sc->why, sc->whylen, "not a JSON object");
        return DECODE_REFUSE;
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == '}') {
        sc->p++;
    } else {
        for (;;) {
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != '"') return scan_fail(sc, "string or '}' expected");
            struct jval key = {0};
            if ((rc = scan_string(sc, true, &key))) return rc;
            int k = key_index(key.s, key.n);
            f->members++;
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ':') return scan_fail(sc, "':' expected");
            sc->p++;
            skip_ws(sc);
            if (sc->p >= sc->end) return scan_fail(sc, "premature end of input");
            unsigned char c = *sc->p;
            struct jval tmp, *v = k >= 0 ? &f->v[k] : &tmp;
            memset(v, 0, sizeof *v); /* a duplicate key: the last one wins, as in jansson */
            if (c == '"') rc = scan_string(sc, k >= 0, v);
            else if (c == '{' || c == '[') {
                rc = skip_value(sc, 1);
                v->type = V_OTHER;
            } else if (c == 't') rc = scan_literal(sc, "true", 4, V_OTHER, v);
            else if (c == 'f') rc = scan_literal(sc, "false", 5, V_OTHER, v);
            else if (c == 'n') rc = scan_literal(sc, "null", 4, V_NULL, v);
            else rc = scan_number(sc, v);
            if (rc) return rc;
            skip_ws(sc);
            if (sc->p < sc->end && *sc->p == ',') {
                sc->p++;
                continue;
            }
            if (sc->p < sc->end && *sc->p == '}') {
                sc->p++;
                break;
            }
            return scan_fail(sc, "'}' expected");
        }
    }
    skip_ws(sc);
    if (sc->p != sc->end) return scan_fail(sc, "end of file expected");
    return 0;
}

/* The same views from a jansson object (JSON array elements, the pretty-printed object). */
static void fields_from_json(json_t *obj, struct fields *f)
{
    memset(f, 0, sizeof *f);
    f->members = (uint32_t)json_object_size(obj);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int k = key_index(key, strlen(key));
        if (k < 0) continue;
        struct jval *o = &f->v[k];
        if (json_is_null(v)) o->type = V_NULL;
        else if (json_is_string(v)) {
            o->type = V_STRING;
            o->s = json_string_value(v);
            o->n = (uint32_t)json_string_length(v);
        } else if (json_is_integer(v)) {
            o->type = V_INT;
            o->i = json_integer_value(v);
            o->d = (double)o->i;
        } else if (json_is_real(v)) {
            o->type = V_REAL;
            o->d = json_real_value(v);
        } else {
            o->type = V_OTHER;
        }
    }
}

/* ----- field rules ----------------------------------------------------------------------------- */

static bool is_dash(const char *s, size_t n)
{
    return n == 1 && s[0] == '-';
}

/* Latest time accepted, ms since the epoch: 2255, where u64 ns ends (as for RFC 3339 times). */
#define TIME_MAX_MS INT64_C(9000000000000)


static const char *key_name(int k)
{
    return keys.name[k];
}

/* A string field; "-" is absent unless keep_dash (response_flags: "-" = no flags). */
static int get_str(struct line_ctx *c, const struct jval *v, int k, bool keep_dash,
                   struct mstr *out, uint32_t *raw_ref)
{
    if (v->type == V_ABSENT || v->type == V_NULL) return 0;
    if (v->type != V_STRING) return refuse(c, key_name(k), "expected a string");
    size_t n = v->n;
    const char *s = v->s;
    if (n > c->lim->max_string) {
        snprintf(c->why, sizeof c->why, "%s: string of %zu bytes, max %u", key_name(k), n,
                 c->lim->max_string);
        return DECODE_REFUSE;
    }
    if (n == 0 || (is_dash(s, n) && !keep_dash)) return 0;
    /* HAProxy's termination state "--" is its "normal end", Envoy's "-". */
    if (keep_dash && n == 2 && s[0] == '-' && s[1] == '-') n = 1;
    /* Valid UTF-8 without NUL already (the scanner and jansson both insist): a plain copy. */
    char *p = arena_strndup(c->b->arena, s, n);
    if (!p) return -ENOMEM;
    *out = (struct mstr){p, (uint32_t)n};
    /* Unescaped values point into the line (escaped ones into the scanner's scratch). */
    if (c->raw && s >= c->raw && s + n <= c->raw + c->raw_len && s - c->raw < UINT32_MAX)
        *raw_ref = (uint32_t)(s - c->raw) + 1;
    return 0;
}

/* Integer field: a JSON integer >= 0 or a string of digits; null, "", "-" and negative numbers
 * (HAProxy's -1 = "not reached") are absent. strict: anything else refuses the record; lenient:
 * absent. */
static int get_int(struct line_ctx *c, const struct fields *f, int k, int64_t max, bool strict,
                   int64_t *out)
{
    const struct jval *v = &f->v[k];
    *out = -1;
    if (v->type == V_ABSENT || v->type == V_NULL) return 0;
    int64_t n = -1;
    if (v->type == V_INT) {
        n = v->i;
        if (n < 0) return 0;
    } else if (v->type == V_STRING) {
        const char *s = v->s;
        size_t len = v->n;
        if (len == 0 || is_dash(s, len)) return 0;
        if (s[0] == '-' && len >= 2 && len <= 19) {
            bool digits_only = true;
            for (size_t i = 1; i < len; i++) digits_only &= s[i] >= '0' && s[i] <= '9';
            if (digits_only) return 0;
        }
        if (len <= 18) {
            n = 0;
            for (size_t i = 0; i < len && n >= 0; i++)
                n = s[i] >= '0' && s[i] <= '9' ? n * 10 + (s[i] - '0') : -1;
        }
    }
    if (n < 0 || n > max) {
        if (!strict) return 0;
        return refuse(c, key_name(k), v->type == V_INT || v->type == V_STRING
                                          ? "integer out of range or not an integer"
                                          : "expected an integer");
    }
    *out = n;
    return 0;
}

/* Decimal seconds "12.345" (nginx's $msec, $request_time) -> ms, rounded to the nearest; -1 when
 * not digits[.digits] (at most 12 integer digits: far past any epoch time). */
static int64_t decimal_ms(const char *s, size_t n)
{
    size_t i = 0;
    int64_t sec = 0, frac = 0; /* frac in 1/10000 s: one digit past ms, for rounding */
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (i >= 12) return -1;
        sec = sec * 10 + (s[i] - '0');
    }
    if (i == 0) return -1;
    int kept = 0;
    if (i < n && s[i] == '.') {
        size_t first = ++i;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (kept < 4) frac = frac * 10 + (s[i] - '0'), kept++;
        if (i == first) return -1;
    }
    if (i != n) return -1;
    for (; kept < 4; kept++) frac *= 10;
    return sec * 1000 + (frac + 5) / 10;
}

/* nginx's $upstream_response_time: one value per upstream tried, "0.010, 0.020" (next upstream)
 * or "0.010 : 0.020" (internal redirect), "-" for one never reached: the sum of the numbers, ms;
 * -1 when none is a number or anything else is there. */
static int64_t upstream_times_ms(const char *s, size_t n)
{
    int64_t sum = -1;
    for (size_t i = 0; i < n;) {
        while (i < n && (s[i] == ' ' || s[i] == ',' || s[i] == ':')) i++;
        size_t start = i;
        while (i < n && s[i] != ' ' && s[i] != ',' && s[i] != ':') i++;
        if (i == start) break;
        if (is_dash(s + start, i - start)) continue;
        int64_t v = decimal_ms(s + start, i - start);
        if (v < 0) return -1;
        sum = (sum < 0 ? 0 : sum) + v;
    }
    return sum;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* RFC 3339 "2024-05-01T12:34:56.789Z" (or +hh:mm / -hh:mm, 't'/' ' separator, any number of
 * fraction digits, nanoseconds kept) -> ns since the epoch. -1 when malformed or before 1970. */
int64_t accesslog_parse_rfc3339(const char *s, size_t n)
{
    if (n < 20) return -1;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2), h = digits(s + 11, 2),
        mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        se < 0 || se > 60 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
        return -1;
    size_t i = 19;
    int64_t frac = 0;
    if (i < n && s[i] == '.') {
        int nd = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, nd++)
            if (nd < 9) frac = frac * 10 + (s[i] - '0');
        if (nd == 0) return -1;
        for (; nd < 9; nd++) frac *= 10;
    }
    int64_t offset_s = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
        /* UTC */
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) return -1;
        offset_s = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
    } else {
        return -1;
    }
    int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
                   se - offset_s;
    if (secs < 0 || secs > 9000000000LL) return -1; /* before 1970, or past 2255 (u64 ns) */
    return secs * 1000000000LL + frac;
}

static bool parse_hex(const char *s, size_t n, uint8_t *out, size_t out_len)
{
    if (n != 2 * out_len) return false;
    for (size_t i = 0; i < out_len; i++) {
        int hi = decode_hexval((unsigned char)s[2 * i]), lo = decode_hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return !id_is_zero(out, out_len);
}


/* Decimal-seconds field (a string as nginx writes it, or a JSON number) -> ms; null, "" and "-"
 * are absent (-1). strict: anything else refuses the record; lenient: absent. */
static int get_seconds(struct line_ctx *c, const struct fields *f, int k, bool strict,
                       int64_t *out)
{
    const struct jval *v = &f->v[k];
    *out = -1;
    if (v->type == V_ABSENT || v->type == V_NULL) return 0;
    int64_t ms = -1;
    if (v->type == V_STRING) {
        if (v->n == 0 || is_dash(v->s, v->n)) return 0;
        ms = strict ? decimal_ms(v->s, v->n) : upstream_times_ms(v->s, v->n);
    } else if ((v->type == V_INT || v->type == V_REAL) && v->d >= 0 && v->d < 1e12) {
        ms = (int64_t)(v->d * 1000 + 0.5);
    }
    if (ms < 0 && strict) return refuse(c, key_name(k), "expected decimal seconds");
    *out = ms;
    return 0;
}

/* The first of keys [first, last] whose value is a string other than "-"; NULL if none. */
static const struct jval *first_string(const struct fields *f, int first, int last)
{
    for (int k = first; k <= last; k++)
        if (f->v[k].type == V_STRING && !is_dash(f->v[k].s, f->v[k].n)) return &f->v[k];
    return NULL;
}

/* Trace context: traceparent first, then the B3 / plain id fields. Bad ids are ignored. */
static void trace_context(const struct fields *f, struct access_log *l)
{
    const struct jval *v = first_string(f, K_TRACEPARENT, K_TRACEPARENT);
    /* version "-" 32 hex "-" 16 hex "-" 2 hex (longer future versions: the same prefix) */
    if (v && v->n >= 55 && v->s[2] == '-' && v->s[35] == '-' && v->s[52] == '-' &&
        parse_hex(v->s + 3, 32, l->trace_id, 16)) {
        l->has_trace_id = true;
        l->has_span_id = parse_hex(v->s + 36, 16, l->span_id, 8);
        return;
    }
    const struct jval *t = first_string(f, K_TRACE_ID, K_TRACE_ID4);
    if (t && t->n == 16) {
        memset(l->trace_id, 0, 8);
        l->has_trace_id = parse_hex(t->s, 16, l->trace_id + 8, 8);
    } else if (t) {
        l->has_trace_id = parse_hex(t->s, t->n, l->trace_id, 16);
    }
    if (!l->has_trace_id) memset(l->trace_id, 0, 16);
    const struct jval *sp = first_string(f, K_SPAN_ID, K_SPAN_ID4);
    if (l->has_trace_id && sp) l->has_span_id = parse_hex(sp->s, sp->n, l->span_id, 8);
    if (!l->has_span_id) memset(l->span_id, 0, 8);
}

static bool has_prefix(const struct mstr *m, const char *p)
{
    size_t n = strlen(p);
    return m->ptr && m->len >= n && memcmp(m->ptr, p, n) == 0;
}

/* The first DNS label of a host[:port], or a port-less host that is not an IP. */
static struct mstr service_of_host(const char *h, size_t n)
{
    size_t end = 0;
    while (end < n && h[end] != '.' && h[end] != ':') end++;
    if (end == 0 || (h[0] >= '0' && h[0] <= '9') || h[0] == '[') return (struct mstr){NULL, 0};
    return (struct mstr){h, (uint32_t)end};
}

/* The service of an Istio cluster name's host ("outbound|9080||reviews.default.svc..."). */
static struct mstr cluster_service(const struct mstr *cl)
{
    if (!cl->ptr) return (struct mstr){NULL, 0};
    const char *p = cl->ptr, *end = cl->ptr + cl->len;
    int bars = 0;
    for (; p < end && bars < 3; p++)
        if (*p == '|') bars++;
    return bars == 3 && p < end ? service_of_host(p, (size_t)(end - p)) : (struct mstr){NULL, 0};
}

/* "host:port" -> "host" (one colon, digits after it); anything else as it is. */
static struct mstr cut_port(struct mstr m)
{
    const char *colon = memchr(m.ptr, ':', m.len);
    if (!colon || colon == m.ptr || memchr(colon + 1, ':', m.len - (size_t)(colon + 1 - m.ptr)))
        return m;
    for (const char *p = colon + 1; p < m.ptr + m.len; p++)
        if (*p < '0' || *p > '9') return m;
    m.len = (uint32_t)(colon - m.ptr);
    return m;
}

/* Derived fields: direction, the destination service and, when no field named it, the
 * reporting service. */
static int derive_in(struct arena *a, const struct alog_defaults *d, struct mstr frontend,
                     struct access_log *l)
{
    const struct mstr *cl = &l->str[ALOG_UPSTREAM_CLUSTER];
    struct mstr *dst = &l->str[ALOG_DESTINATION_SERVICE];
    if (has_prefix(cl, "inbound|") || has_prefix(cl, "InboundPassthroughCluster"))
        l->direction = ALOG_DIRECTION_INBOUND;
    else if (has_prefix(cl, "outbound|") || has_prefix(cl, "PassthroughCluster") ||
             has_prefix(cl, "BlackHoleCluster"))
        l->direction = ALOG_DIRECTION_OUTBOUND;
    else if (d->direction != ALOG_DIRECTION_UNKNOWN)
        l->direction = d->direction;
    else if (dst->ptr)
        l->direction = ALOG_DIRECTION_OUTBOUND; /* nginx / HAProxy: the proxy calls upstream */
    if (dst->ptr) {
        *dst = cut_port(*dst); /* in the arena already: a shorter view, NUL-ended below */
        if (!dst->len) *dst = (struct mstr){NULL, 0};
        else ((char *)dst->ptr)[dst->len] = '\0';
    } else if (has_prefix(cl, "outbound|")) {
        struct mstr svc = cluster_service(cl);
        if (svc.ptr) {
            char *copy = arena_strndup(a, svc.ptr, svc.len);
            if (!copy) return -ENOMEM;
            *dst = (struct mstr){copy, svc.len};
        }
    }
    if (!l->str[ALOG_RESPONSE_FLAGS].ptr) l->str[ALOG_RESPONSE_FLAGS] = (struct mstr){"-", 1};
    if (l->str[ALOG_SERVICE].ptr && l->str[ALOG_SERVICE].len) return 0;
    struct mstr svc = {NULL, 0};
    if (d->service && d->service[0]) {
        svc = (struct mstr){d->service, (uint32_t)strlen(d->service)};
    } else if (frontend.ptr) {
        svc = frontend;
    } else if (l->direction == ALOG_DIRECTION_INBOUND) {
        svc = l->str[ALOG_DESTINATION_WORKLOAD];
        if (!svc.ptr) svc = cluster_service(cl);
        if (!svc.ptr && l->str[ALOG_AUTHORITY].ptr)
            svc = service_of_host(l->str[ALOG_AUTHORITY].ptr, l->str[ALOG_AUTHORITY].len);
    } else {
        svc = l->str[ALOG_SOURCE_WORKLOAD];
    }
    if (!svc.ptr || !svc.len) svc = (struct mstr){"unknown_service", 15};
    char *copy = arena_strndup(a, svc.ptr, svc.len);
    if (!copy) return -ENOMEM;
    l->str[ALOG_SERVICE] = (struct mstr){copy, svc.len};
    return 0;
}


int accesslog_derive(struct arena *a, struct access_log *l)
{
    static const struct alog_defaults none;
    return derive_in(a, &none, (struct mstr){NULL, 0}, l);
}

int accesslog_set_field(struct arena *a, struct access_log *l, const char *key, const char *val,
                        size_t len)
{
    pthread_once(&keys_once, keys_init);
    int k = key_index(key, strlen(key));
    if (k < 0) return 0;
    if (k < K_MSEC) {
        struct mstr *slot = &l->str[str_fields[k].slot];
        bool keep_dash = str_fields[k].slot == ALOG_RESPONSE_FLAGS;
        if (slot->ptr || len == 0 || (is_dash(val, len) && !keep_dash)) return 1;
        return decode_copy_utf8(a, val, len, slot) ? -ENOMEM : 1;
    }
    int64_t *num = NULL, max = INT64_MAX / 2;
    switch (k) {
    case K_RESPONSE_CODE: num = &l->response_code, max = 999; break;
    case K_BYTES_RECEIVED: num = &l->bytes_received; break;
    case K_BYTES_SENT: num = &l->bytes_sent; break;
    case K_DURATION: num = &l->duration_ms; break;
    case K_UPSTREAM_SERVICE_TIME: num = &l->upstream_service_time_ms; break;
    case K_TRACEPARENT:
        /* version "-" 32 hex "-" 16 hex "-" 2 hex; a malformed one leaves the ids absent */
        if (!l->has_trace_id && len >= 55 && val[2] == '-' && val[35] == '-' && val[52] == '-' &&
            parse_hex(val + 3, 32, l->trace_id, 16)) {
            l->has_trace_id = true;
            l->has_span_id = parse_hex(val + 36, 16, l->span_id, 8);
            if (!l->has_span_id) memset(l->span_id, 0, 8);
        }
        return 1;
    default:
        return 0;
    }
    if (*num >= 0 || len == 0 || len > 18) return 1;
    int64_t n = 0;
    for (size_t i = 0; i < len && n >= 0; i++)
        n = val[i] >= '0' && val[i] <= '9' ? n * 10 + (val[i] - '0') : -1;
    if (n >= 0 && n <= max) *num = n;
    return 1;
}

/* One record from its fields. raw/raw_len: its JSON text (valid UTF-8). Returns 0 (added),
 * DECODE_REFUSE (c->why) or -ENOMEM. */
static int add_record(struct line_ctx *c, const struct fields *f, const char *raw, size_t raw_len)
{
    if (f->members > c->lim->max_attrs) {
        snprintf(c->why, sizeof c->why, "%u members, max %u", f->members, c->lim->max_attrs);
        return DECODE_REFUSE;
    }
    struct access_log *l = span_batch_add_log(c->b);
    if (!l) return -ENOMEM;
    int rc = 0;
    /* Time: nginx's msec (the end) minus request_time, else an RFC 3339 start_time (or an
     * alias), else HAProxy's start_time_ms. */
    int64_t end_ms = -1, req_ms = -1;
    rc = get_seconds(c, f, K_MSEC, true, &end_ms);
    if (!rc) rc = get_seconds(c, f, K_REQUEST_TIME, true, &req_ms);
    int tk = K_START_TIME;
    while (tk <= K_AT_TIMESTAMP && f->v[tk].type <= V_NULL) tk++;
    const struct jval *tv = tk <= K_AT_TIMESTAMP ? &f->v[tk] : NULL;
    int64_t start_ms = -1;
    if (rc) {
        /* refused above */
    } else if (end_ms >= 0) {
        int64_t ms = end_ms - (req_ms > 0 ? req_ms : 0);
        if (ms < 0 || ms > TIME_MAX_MS) rc = refuse(c, "msec", "out of range");
        else l->time_unix_nano = (uint64_t)ms * 1000000u;
    } else if (tv) {
        if (tv->type != V_STRING) rc = refuse(c, key_name(tk), "expected an RFC 3339 string");
        else {
            int64_t ns = accesslog_parse_rfc3339(tv->s, tv->n);
            if (ns < 0) rc = refuse(c, key_name(tk), "not an RFC 3339 time");
            else l->time_unix_nano = (uint64_t)ns;
        }
    } else if (!(rc = get_int(c, f, K_START_TIME_MS, TIME_MAX_MS, true, &start_ms)) &&
               start_ms >= 0) {
        l->time_unix_nano = (uint64_t)start_ms * 1000000u;
    } else if (!rc) {
        rc = refuse(c, "start_time", "missing");
    }
    c->frontend = (struct mstr){NULL, 0};
    c->raw = raw;
    c->raw_len = raw_len;
    const struct jval *fe = &f->v[K_FRONTEND_NAME];
    if (!rc && fe->type > V_NULL) {
        if (fe->type != V_STRING) rc = refuse(c, "frontend_name", "expected a string");
        else if (fe->n > c->lim->max_string) {
            snprintf(c->why, sizeof c->why, "frontend_name: string of %u bytes, max %u", fe->n,
                     c->lim->max_string);
            rc = DECODE_REFUSE;
        } else if (fe->n && !is_dash(fe->s, fe->n)) {
            c->frontend = (struct mstr){fe->s, fe->n};
        }
    }
    for (size_t i = 0; !rc && i < sizeof str_fields / sizeof str_fields[0]; i++) {
        /* c->b->logs may not move while l is in use: no record is added meanwhile. */
        struct mstr *slot = &l->str[str_fields[i].slot];
        if (!slot->ptr)
            rc = get_str(c, &f->v[i], (int)i, str_fields[i].slot == ALOG_RESPONSE_FLAGS, slot,
                         &l->raw_ref[str_fields[i].slot]);
    }
    if (!rc) rc = get_int(c, f, K_RESPONSE_CODE, 999, true, &l->response_code);
    if (!rc) rc = get_int(c, f, K_BYTES_RECEIVED, INT64_MAX / 2, true, &l->bytes_received);
    if (!rc) rc = get_int(c, f, K_BYTES_SENT, INT64_MAX / 2, true, &l->bytes_sent);
    if (!rc) rc = get_int(c, f, K_DURATION, INT64_MAX / 2, true, &l->duration_ms);
    if (!rc && l->duration_ms < 0) l->duration_ms = req_ms;
    if (!rc)
        rc = get_int(c, f, K_UPSTREAM_SERVICE_TIME, INT64_MAX / 2, false,
                     &l->upstream_service_time_ms);
    if (!rc && l->upstream_service_time_ms < 0)
        rc = get_seconds(c, f, K_UPSTREAM_RESPONSE_TIME, false, &l->upstream_service_time_ms);
    if (!rc) trace_context(f, l);
    if (!rc) rc = derive_in(c->b->arena, c->d, c->frontend, l);
    if (!rc) {
        char *p = arena_strndup(c->b->arena, raw, raw_len);
        if (!p) rc = -ENOMEM;
        else l->str[ALOG_RAW] = (struct mstr){p, (uint32_t)raw_len};
    }
    if (rc) span_batch_drop_last_log(c->b);
    return rc;
}

/* A jansson value as a record (not an object: refused). */
static int add_json_record(struct line_ctx *c, json_t *obj, const char *raw, size_t raw_len)
{
    if (!json_is_object(obj)) {
        snprintf(c->why, sizeof c->why, "not a JSON object");
        return DECODE_REFUSE;
    }
    struct fields f;
    fields_from_json(obj, &f);
    return add_record(c, &f, raw, raw_len);
}

static int reject_line(struct span_batch *b, const char *unit, size_t no, const char *why)
{
    return decode_reject(b, 1, "%s %zu: %s", unit, no, why);
}


/* A JSON array (or one pretty-printed object): parsed whole, elements re-serialised as raw. */
static int decode_whole(struct line_ctx *c, json_t *root, char *err, size_t errlen)
{
    size_t n = json_is_array(root) ? json_array_size(root) : 1;
    if (n > c->lim->max_spans) {
        snprintf(err, errlen, "%zu access-log records in one request, max %u", n,
                 c->lim->max_spans);
        return -E2BIG;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *obj = json_is_array(root) ? json_array_get(root, i) : root;
        char *raw = json_is_object(obj) ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER)
                                        : NULL;
        if (json_is_object(obj) && !raw) return -ENOMEM;
        int rc = add_json_record(c, obj, raw ? raw : "", raw ? strlen(raw) : 0);
        free(raw);
        if (rc == DECODE_REFUSE) rc = reject_line(c->b, "record", i + 1, c->why);
        if (rc) return rc;
    }
    return 0;
}

static bool blank(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}


int accesslog_decode_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                          struct span_batch *out, char *err, size_t errlen)
{
    return accesslog_decode_json_ex(body, len, NULL, lim, out, err, errlen);
}

int accesslog_decode_json_ex(const uint8_t *body, size_t len, const struct alog_defaults *d,
                             const struct decode_limits *lim, struct span_batch *out, char *err,
                             size_t errlen)
{
    static const struct alog_defaults no_defaults = {NULL, ALOG_DIRECTION_UNKNOWN};
    pthread_once(&keys_once, keys_init);
    struct decode_limits defaults;
    lim = decode_limits_or_default(lim, &defaults);
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    const char *p = body ? (const char *)body : "", *end = p + (body ? len : 0);
    const char *first = p;
    while (first < end && blank((unsigned char)*first)) first++;
    if (first == end) return 0;
    struct line_ctx c = {.b = out, .lim = lim, .d = d ? d : &no_defaults};
    json_error_t jerr;
    if (*first == '[') {
        json_t *root = json_loadb(first, (size_t)(end - first), 0, &jerr);
        if (!root || !json_is_array(root)) {
            json_decref(root);
            snprintf(err, errlen, "invalid JSON array at line %d column %d: %s", jerr.line,
                     jerr.column, jerr.text);
            return -EINVAL;
        }
        int rc = decode_whole(&c, root, err, errlen);
        json_decref(root);
        return rc;
    }
    if (*first != '{') {
        snprintf(err, errlen, "not NDJSON or JSON: expected one JSON object per line, or a JSON "
                              "array of objects");
        return -EINVAL;
    }
    /* Room for one record per line up front (up to a 4096-line guess): a body of 1,000
     * lines would otherwise regrow the record array seven times. */
    size_t lines = 1;
    for (const char *q = p; lines < 4096 && (q = memchr(q, '\n', (size_t)(end - q))); q++)
        lines++;
    if (span_batch_reserve_logs(out, out->n_logs + lines)) return -ENOMEM;
    /* Scratch for unescaped strings: one line's worth at most (unescaping only shrinks). */
    char *scratch = NULL;
    size_t scratch_cap = 0;
    struct fields *f = malloc(sizeof *f);
    if (!f) return -ENOMEM;
    size_t line_no = 0, records = 0;
    int rc = 0;
    for (const char *ln = p; ln < end && !rc;) {
        const char *nl = memchr(ln, '\n', (size_t)(end - ln));
        const char *le = nl ? nl : end;
        line_no++;
        size_t raw_len = (size_t)(le - ln);
        const char *s = ln, *e = le;
        ln = nl ? nl + 1 : end;
        while (s < e && blank((unsigned char)*s)) s++;
        while (e > s && blank((unsigned char)e[-1])) e--;
        if (s == e) continue;
        if (++records > lim->max_spans) {
            snprintf(err, errlen, "more than %u access-log lines in one request", lim->max_spans);
            rc = -E2BIG;
            break;
        }
        if (raw_len > ACCESSLOG_MAX_LINE) {
            char why[64];
            snprintf(why, sizeof why, "line of %zu bytes, max %d", raw_len, ACCESSLOG_MAX_LINE);
            rc = reject_line(out, "line", line_no, why);
            continue;
        }
        if (scratch_cap < (size_t)(e - s)) {
            free(scratch);
            scratch_cap = ACCESSLOG_MAX_LINE;
            scratch = malloc(scratch_cap);
            if (!scratch) {
                rc = -ENOMEM;
                break;
            }
        }
        struct scan sc = {(const unsigned char *)s, (const unsigned char *)e, scratch, 0, c.why,
                          sizeof c.why};
        int src = scan_object(&sc, f);
        if (src == DECODE_REFUSE && records == 1 && nl && strncmp(c.why, "invalid JSON", 12) == 0) {
            /* Not one object per line: maybe one pretty-printed object (application/json). */
            json_error_t whole_err;
            json_t *whole = json_loadb(first, (size_t)(end - first), 0, &whole_err);
            if (json_is_object(whole)) {
                rc = decode_whole(&c, whole, err, errlen);
                json_decref(whole);
                break;
            }
            json_decref(whole);
        }
        if (src == 0) src = add_record(&c, f, s, (size_t)(e - s));
        rc = src == DECODE_REFUSE ? reject_line(out, "line", line_no, c.why) : src;
    }
    free(f);
    free(scratch);
    return rc;
}

int accesslog_encode_response(uint32_t accepted, uint32_t rejected, const char *error,
                              char **out, size_t *out_len)
{
    json_t *o = json_pack("{s:I,s:I,s:s?}", "accepted", (json_int_t)accepted, "rejected",
                          (json_int_t)rejected, "error", error && *error ? error : NULL);
    if (!o) return -ENOMEM;
    *out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!*out) return -ENOMEM;
    *out_len = strlen(*out);
    return 0;
}
