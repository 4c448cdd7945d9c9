/*
 * accesslog.c: the Envoy / Istio JSON access-log decoder (mapping and limits in accesslog.h).
 *
 * Each NDJSON line is parsed alone by jansson (bounded by ACCESSLOG_MAX_LINE before parsing),
 * its known members are looked up by name (jansson's object hash), checked and copied into the
 * batch arena (decode_copy_utf8), and the tree is released at once: memory per request is the
 * batch plus one line's tree. A bad line is refused alone; the rest of the body continues.
 */
#include "accesslog.h"
#include "decode.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Why the record at hand is refused, set by the helpers that return DECODE_REFUSE. */
struct line_ctx {
    struct span_batch *b;
    const struct decode_limits *lim;
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
};

static bool is_dash(const char *s, size_t n)
{
    return n == 1 && s[0] == '-';
}

/* A string field; "-" is absent unless keep_dash (response_flags: "-" = no flags). */
static int get_str(struct line_ctx *c, json_t *obj, const char *key, bool keep_dash,
                   struct mstr *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return refuse(c, key, "expected a string");
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > c->lim->max_string) {
        snprintf(c->why, sizeof c->why, "%s: string of %zu bytes, max %u", key, n,
                 c->lim->max_string);
        return DECODE_REFUSE;
    }
    if (is_dash(s, n) && !keep_dash) return 0;
    return decode_copy_utf8(c->b->arena, s, n, out);
}

/* A string of up to 18 digits as a count; -2 for "" and "-" (absent), -1 for anything else. */
static int64_t parse_count(const char *s, size_t len)
{
    if (len == 0 || is_dash(s, len)) return -2;
    if (len > 18) return -1;
    int64_t n = 0;
    for (size_t i = 0; i < len && n >= 0; i++)
        n = s[i] >= '0' && s[i] <= '9' ? n * 10 + (s[i] - '0') : -1;
    return n;
}

/* Integer field: a JSON integer >= 0 or a string of digits; null, "" and "-" are absent.
 * strict: anything else refuses the record; lenient: absent. */
static int get_int(struct line_ctx *c, json_t *obj, const char *key, int64_t max, bool strict,
                   int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    *out = -1;
    if (!v || json_is_null(v)) return 0;
    int64_t n = -1;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        n = parse_count(json_string_value(v), json_string_length(v));
        if (n == -2) return 0;
    }
    if (n < 0 || n > max) {
        if (!strict) return 0;
        return refuse(c, key, json_is_integer(v) || json_is_string(v)
                                  ? "integer out of range or not an integer"
                                  : "expected an integer");
    }
    *out = n;
    return 0;
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

static const char *first_string(json_t *obj, const char *const *keys, size_t n_keys, size_t *len)
{
    for (size_t i = 0; i < n_keys; i++) {
        json_t *v = json_object_get(obj, keys[i]);
        if (json_is_string(v) && !is_dash(json_string_value(v), json_string_length(v))) {
            *len = json_string_length(v);
            return json_string_value(v);
        }
    }
    return NULL;
}

/* W3C traceparent: version "-" 32 hex "-" 16 hex "-" 2 hex (longer future versions: the same
 * prefix) -> l's ids. False (l's trace id untouched) when malformed. */
static bool traceparent(struct access_log *l, const char *tp, size_t n)
{
    if (n < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' ||
        !parse_hex(tp + 3, 32, l->trace_id, 16))
        return false;
    l->has_trace_id = true;
    l->has_span_id = parse_hex(tp + 36, 16, l->span_id, 8);
    return true;
}

/* Trace context: traceparent first, then the B3 / plain id fields. Bad ids are ignored. */
static void trace_context(json_t *obj, struct access_log *l)
{
    size_t n;
    static const char *const tp_keys[] = {"traceparent"};
    const char *tp = first_string(obj, tp_keys, 1, &n);
    if (tp && traceparent(l, tp, n)) return;
    static const char *const tid_keys[] = {"trace_id", "traceId", "x-b3-traceid", "x_b3_traceid"};
    static const char *const sid_keys[] = {"span_id", "spanId", "x-b3-spanid", "x_b3_spanid"};
    const char *t = first_string(obj, tid_keys, 4, &n);
    if (t && n == 16) {
        memset(l->trace_id, 0, 8);
        l->has_trace_id = parse_hex(t, 16, l->trace_id + 8, 8);
    } else if (t) {
        l->has_trace_id = parse_hex(t, n, l->trace_id, 16);
    }
    if (!l->has_trace_id) memset(l->trace_id, 0, 16);
    const char *sp = first_string(obj, sid_keys, 4, &n);
    if (l->has_trace_id && sp) l->has_span_id = parse_hex(sp, n, l->span_id, 8);
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

int accesslog_derive(struct arena *a, struct access_log *l)
{
    const struct mstr *cl = &l->str[ALOG_UPSTREAM_CLUSTER];
    if (has_prefix(cl, "inbound|") || has_prefix(cl, "InboundPassthroughCluster"))
        l->direction = ALOG_DIRECTION_INBOUND;
    else if (has_prefix(cl, "outbound|") || has_prefix(cl, "PassthroughCluster") ||
             has_prefix(cl, "BlackHoleCluster"))
        l->direction = ALOG_DIRECTION_OUTBOUND;
    if (!l->str[ALOG_RESPONSE_FLAGS].ptr) l->str[ALOG_RESPONSE_FLAGS] = (struct mstr){"-", 1};
    if (l->str[ALOG_SERVICE].ptr && l->str[ALOG_SERVICE].len) return 0;
    struct mstr svc = {NULL, 0};
    if (l->direction == ALOG_DIRECTION_INBOUND) {
        svc = l->str[ALOG_DESTINATION_WORKLOAD];
        if (!svc.ptr && cl->ptr) {
            const char *p = cl->ptr, *end = cl->ptr + cl->len;
            int bars = 0;
            for (; p < end && bars < 3; p++)
                if (*p == '|') bars++;
            if (bars == 3 && p < end) svc = service_of_host(p, (size_t)(end - p));
        }
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

int accesslog_set_field(struct arena *a, struct access_log *l, const char *key, const char *val,
                        size_t len)
{
    static const struct {
        const char *key;
        size_t off;
        int64_t max;
    } int_fields[] = {
        {"response_code", offsetof(struct access_log, response_code), 999},
        {"bytes_received", offsetof(struct access_log, bytes_received), INT64_MAX / 2},
        {"bytes_sent", offsetof(struct access_log, bytes_sent), INT64_MAX / 2},
        {"duration", offsetof(struct access_log, duration_ms), INT64_MAX / 2},
        {"upstream_service_time", offsetof(struct access_log, upstream_service_time_ms),
         INT64_MAX / 2},
    };
    for (size_t i = 0; i < sizeof str_fields / sizeof str_fields[0]; i++) {
        if (strcmp(key, str_fields[i].key) != 0) continue;
        struct mstr *slot = &l->str[str_fields[i].slot];
        if (slot->ptr || (is_dash(val, len) && str_fields[i].slot != ALOG_RESPONSE_FLAGS)) return 1;
        return decode_copy_utf8(a, val, len, slot) ? -ENOMEM : 1;
    }
    for (size_t i = 0; i < sizeof int_fields / sizeof int_fields[0]; i++) {
        if (strcmp(key, int_fields[i].key) != 0) continue;
        int64_t *slot = (int64_t *)(void *)((char *)l + int_fields[i].off),
                n = parse_count(val, len);
        if (*slot < 0 && n >= 0 && n <= int_fields[i].max) *slot = n;
        return 1;
    }
    if (strcmp(key, "traceparent") == 0) {
        if (!l->has_trace_id) traceparent(l, val, len);
        return 1;
    }
    return 0;
}

/* One record. raw/raw_len: its JSON text. Returns 0 (added), DECODE_REFUSE (c->why) or -ENOMEM. */
static int add_record(struct line_ctx *c, json_t *obj, const char *raw, size_t raw_len)
{
    if (!json_is_object(obj)) {
        snprintf(c->why, sizeof c->why, "not a JSON object");
        return DECODE_REFUSE;
    }
    if (json_object_size(obj) > c->lim->max_attrs) {
        snprintf(c->why, sizeof c->why, "%zu members, max %u", json_object_size(obj),
                 c->lim->max_attrs);
        return DECODE_REFUSE;
    }
    struct access_log *l = span_batch_add_log(c->b);
    if (!l) return -ENOMEM;
    int rc = 0;
    static const char *const time_keys[] = {"start_time", "timestamp", "time", "@timestamp"};
    json_t *tv = NULL;
    const char *tkey = NULL;
    for (size_t i = 0; i < 4 && !tv; i++) {
        tv = json_object_get(obj, time_keys[i]);
        tkey = time_keys[i];
        if (json_is_null(tv)) tv = NULL;
    }
    if (!tv) rc = refuse(c, "start_time", "missing");
    else if (!json_is_string(tv)) rc = refuse(c, tkey, "expected an RFC 3339 string");
    else {
        int64_t ns = accesslog_parse_rfc3339(json_string_value(tv), json_string_length(tv));
        if (ns < 0) rc = refuse(c, tkey, "not an RFC 3339 time");
        else l->time_unix_nano = (uint64_t)ns;
    }
    for (size_t i = 0; !rc && i < sizeof str_fields / sizeof str_fields[0]; i++) {
        /* c->b->logs may not move while l is in use: no record is added meanwhile. */
        struct mstr *slot = &l->str[str_fields[i].slot];
        if (!slot->ptr)
            rc = get_str(c, obj, str_fields[i].key, str_fields[i].slot == ALOG_RESPONSE_FLAGS,
                         slot);
    }
    if (!rc) rc = get_int(c, obj, "response_code", 999, true, &l->response_code);
    if (!rc) rc = get_int(c, obj, "bytes_received", INT64_MAX / 2, true, &l->bytes_received);
    if (!rc) rc = get_int(c, obj, "bytes_sent", INT64_MAX / 2, true, &l->bytes_sent);
    if (!rc) rc = get_int(c, obj, "duration", INT64_MAX / 2, true, &l->duration_ms);
    if (!rc)
        rc = get_int(c, obj, "upstream_service_time", INT64_MAX / 2, false,
                     &l->upstream_service_time_ms);
    if (!rc) trace_context(obj, l);
    if (!rc) rc = accesslog_derive(c->b->arena, l);
    if (!rc) rc = decode_copy_utf8(c->b->arena, raw, raw_len, &l->str[ALOG_RAW]);
    if (rc) span_batch_drop_last_log(c->b);
    return rc;
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
        int rc = add_record(c, obj, raw ? raw : "", raw ? strlen(raw) : 0);
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
    struct line_ctx c = {.b = out, .lim = lim};
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
    size_t line_no = 0, records = 0;
    for (const char *ln = p; ln < end;) {
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
            return -E2BIG;
        }
        int rc;
        if (raw_len > ACCESSLOG_MAX_LINE) {
            char why[64];
            snprintf(why, sizeof why, "line of %zu bytes, max %d", raw_len, ACCESSLOG_MAX_LINE);
            rc = reject_line(out, "line", line_no, why);
            if (rc) return rc;
            continue;
        }
        json_t *obj = json_loadb(s, (size_t)(e - s), JSON_DECODE_ANY, &jerr);
        if (!obj && records == 1 && nl) {
            /* Not one object per line: maybe one pretty-printed object (application/json). */
            json_error_t whole_err;
            json_t *whole = json_loadb(first, (size_t)(end - first), 0, &whole_err);
            if (json_is_object(whole)) {
                rc = decode_whole(&c, whole, err, errlen);
                json_decref(whole);
                return rc;
            }
            json_decref(whole);
        }
        if (!obj) {
            char why[200];
            snprintf(why, sizeof why, "invalid JSON: %s", jerr.text);
            rc = reject_line(out, "line", line_no, why);
        } else {
            rc = add_record(&c, obj, s, (size_t)(e - s));
            json_decref(obj);
            if (rc == DECODE_REFUSE) rc = reject_line(out, "line", line_no, c.why);
        }
        if (rc) return rc;
    }
    return 0;
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
