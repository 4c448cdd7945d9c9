/*
 * params.c: query-string parameters of the Jaeger v1 HTTP API, parsed by jaeger-query's rules
 * (cmd/query/app/query_parser.go) so existing clients (Jaeger UI, Grafana) behave unchanged.
 *
 * Every refusal is -EINVAL plus a message that names the parameter, worded as Jaeger words it
 * ("unable to parse param 'minDuration': time: invalid duration \"5x\""), which the HTTP layer
 * returns as a 400 in Jaeger's error body. Where Jaeger is silently lenient in a way that hides a
 * client bug (a negative limit, an unknown spanKind), we refuse instead; where it is lenient on
 * purpose (lookback, which jaeger-query ignores because the UI also sends start=), we accept.
 */
#include "query_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/* User text quoted into an error message is cut here, so a hostile value cannot make the
 * message (and the log line) arbitrarily long. */
#define QUOTE_MAX 128

static int64_t clock_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t (*query_now_us)(void) = clock_now_us;

const char *query_arg(const struct query_arg *args, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (args[i].key && strcmp(args[i].key, key) == 0)
            return args[i].value && args[i].value[0] ? args[i].value : NULL;
    return NULL;
}

/* ----- durations ------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int64_t ns;
} duration_units[] = {
    {"ns", 1},           {"us", 1000},        {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
    {"\xce\xbcs", 1000},                                           /* U+03BC Greek mu */
    {"ms", 1000000},     {"s", 1000000000LL}, {"m", 60 * 1000000000LL}, {"h", 3600 * 1000000000LL},
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Go's time.ParseDuration, minus negative values: "[+]?([0-9]*(\.[0-9]*)?unit)+" or "0".
 * Writes nanoseconds. err (may be NULL) gets Go's message on failure. */
static int parse_go_duration(const char *orig, int64_t *out_ns, char *err, size_t errlen)
{
    const char *s = orig;
    int64_t total = 0;
    if (*s == '+') s++;
    if (strcmp(s, "0") == 0) {
        *out_ns = 0;
        return 0;
    }
    if (*s == '\0' || *orig == '-') goto invalid;
    while (*s) {
        if (!is_digit(*s) && *s != '.') goto invalid;
        uint64_t whole = 0;
        bool pre = false, post = false, overflow = false;
        while (is_digit(*s)) {
            if (whole > (UINT64_MAX - 9) / 10)
                overflow = true;
            else
                whole = whole * 10 + (uint64_t)(*s - '0');
            pre = true;
            s++;
        }
        if (overflow || whole > (uint64_t)INT64_MAX) goto invalid;
        uint64_t frac = 0;
        double scale = 1;
        if (*s == '.') {
            s++;
            bool frac_full = false;
            while (is_digit(*s)) {
                /* Like Go: digits past what 63 bits hold are dropped, not an error. */
                if (!frac_full && frac <= (UINT64_MAX - 9) / 10) {
                    frac = frac * 10 + (uint64_t)(*s - '0');
                    scale *= 10;
                } else {
                    frac_full = true;
                }
                post = true;
                s++;
            }
        }
        if (!pre && !post) goto invalid;
        const char *u = s;
        while (*s && *s != '.' && !is_digit(*s))
            s++;
        size_t ulen = (size_t)(s - u);
        if (ulen == 0) {
            if (err)
                snprintf(err, errlen, "time: missing unit in duration \"%.*s\"", QUOTE_MAX, orig);
            return -EINVAL;
        }
        int64_t unit = 0;
        for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++)
            if (strlen(duration_units[i].name) == ulen &&
                memcmp(duration_units[i].name, u, ulen) == 0)
                unit = duration_units[i].ns;
        if (!unit) {
            if (err)
                snprintf(err, errlen, "time: unknown unit \"%.*s\" in duration \"%.*s\"",
                         (int)(ulen > QUOTE_MAX ? QUOTE_MAX : ulen), u, QUOTE_MAX, orig);
            return -EINVAL;
        }
        if (whole > (uint64_t)(INT64_MAX / unit)) goto invalid;
        int64_t v = (int64_t)whole * unit;
        if (frac) {
            double f = (double)frac * ((double)unit / scale);
            if (f >= 9.2e18) goto invalid;
            v += (int64_t)f;
            if (v < 0) goto invalid;
        }
        if (v > INT64_MAX - total) goto invalid;
        total += v;
    }
    *out_ns = total;
    return 0;
invalid:
    if (err) snprintf(err, errlen, "time: invalid duration \"%.*s\"", QUOTE_MAX, orig);
    return -EINVAL;
}

int query_parse_duration(const char *s, int64_t *out_us)
{
    int64_t ns;
    if (!s) return -EINVAL;
    int rc = parse_go_duration(s, &ns, NULL, 0);
    if (rc) return rc;
    *out_us = ns / 1000;
    return 0;
}

/* ----- integers -------------------------------------------------------------------------- */

/* Go's strconv.ParseInt(s, 10, 64) with its error text after "strconv.ParseInt: ". */
static int parse_int64(const char *s, int64_t *out, const char **why)
{
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!is_digit(*p)) {
        *why = "invalid syntax";
        return -EINVAL;
    }
    for (const char *q = p; *q; q++) {
        if (!is_digit(*q)) {
            *why = "invalid syntax";
            return -EINVAL;
        }
    }
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE) {
        *why = "value out of range";
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int param_error(char *err, const char *key, const char *value, const char *why)
{
    snprintf(err, QUERY_ERRMSG,
             "unable to parse param '%s': strconv.ParseInt: parsing \"%.*s\": %s", key, QUOTE_MAX,
             value, why);
    return -EINVAL;
}

int param_int64(const struct query_arg *args, size_t n, const char *key, int64_t *out,
                bool *present, char err[QUERY_ERRMSG])
{
    const char *v = query_arg(args, n, key);
    *present = v != NULL;
    *out = 0;
    if (!v) return 0;
    const char *why;
    if (parse_int64(v, out, &why)) return param_error(err, key, v, why);
    return 0;
}

static int param_duration(const struct query_arg *args, size_t n, const char *key, int64_t *out_us,
                          char err[QUERY_ERRMSG])
{
    const char *v = query_arg(args, n, key);
    *out_us = 0;
    if (!v) return 0;
    char why[QUERY_ERRMSG - 64];
    int64_t ns;
    if (parse_go_duration(v, &ns, why, sizeof why)) {
        snprintf(err, QUERY_ERRMSG, "unable to parse param '%s': %s", key, why);
        return -EINVAL;
    }
    *out_us = ns / 1000;
    return 0;
}

/* lookback= as the Jaeger UI sends it: "1h", "2d", "custom" (start= then rules). */
static int param_lookback(const char *v, int64_t *out_us, char err[QUERY_ERRMSG])
{
    size_t len = strlen(v);
    if (len > 1 && v[len - 1] == 'd') {
        char *end;
        errno = 0;
        long long days = strtoll(v, &end, 10);
        if (end == v + len - 1 && is_digit(v[0]) && errno == 0 && days <= 100000) {
            *out_us = days * 86400000000LL;
            return 0;
        }
    }
    char why[QUERY_ERRMSG - 64];
    int64_t ns;
    if (parse_go_duration(v, &ns, why, sizeof why)) {
        snprintf(err, QUERY_ERRMSG, "unable to parse param 'lookback': %s", why);
        return -EINVAL;
    }
    *out_us = ns / 1000;
    return 0;
}

/* ----- trace IDs and kinds --------------------------------------------------------------- */

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int query_parse_trace_id(const char *s, uint8_t out[16])
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > 32) return -EINVAL;
    char padded[32];
    memset(padded, '0', sizeof padded);
    memcpy(padded + 32 - len, s, len);
    for (size_t i = 0; i < 16; i++) {
        int hi = hex_val(padded[2 * i]), lo = hex_val(padded[2 * i + 1]);
        if (hi < 0 || lo < 0) return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static const char *const kind_names[] = {
    [SPAN_KIND_UNSPECIFIED] = "",      [SPAN_KIND_INTERNAL] = "internal",
    [SPAN_KIND_SERVER] = "server",     [SPAN_KIND_CLIENT] = "client",
    [SPAN_KIND_PRODUCER] = "producer", [SPAN_KIND_CONSUMER] = "consumer",
};

int span_kind_parse(const char *s, enum span_kind *out)
{
    if (!s) s = "";
    for (int k = SPAN_KIND_UNSPECIFIED; k <= SPAN_KIND_CONSUMER; k++) {
        if (strcmp(s, kind_names[k]) == 0) {
            *out = (enum span_kind)k;
            return 0;
        }
    }
    return -EINVAL;
}

const char *span_kind_name(enum span_kind k)
{
    return (unsigned)k <= SPAN_KIND_CONSUMER ? kind_names[k] : "";
}

/* ----- /api/traces ----------------------------------------------------------------------- */

/* Adds or replaces (Jaeger collects tags in a map: the last value of a key wins). */
static int add_tag(struct trace_params *p, const char *key, const char *value, char *err)
{
    for (size_t i = 0; i < p->q.n_tags; i++) {
        if (strcmp(p->tags[i].key, key) == 0) {
            p->tags[i].value = value;
            return 0;
        }
    }
    if (p->q.n_tags == QUERY_MAX_TAGS) {
        snprintf(err, QUERY_ERRMSG, "too many tag filters: at most %d", QUERY_MAX_TAGS);
        return -EINVAL;
    }
    p->tags[p->q.n_tags].key = key;
    p->tags[p->q.n_tags].value = value;
    p->q.n_tags++;
    return 0;
}

static int parse_tag_arg(struct trace_params *p, const char *v, char *err)
{
    const char *colon = strchr(v, ':');
    if (!colon) {
        snprintf(err, QUERY_ERRMSG,
                 "malformed 'tag' parameter, expecting key:value, received: %.*s", QUOTE_MAX, v);
        return -EINVAL;
    }
    /* Split on the first colon; the value keeps any further ones ("http.url:http://x"). */
    char *key = arena_strndup(p->arena, v, (size_t)(colon - v));
    if (!key) return -ENOMEM;
    return add_tag(p, key, colon + 1, err);
}

static int parse_tags_json(struct trace_params *p, const char *v, char *err)
{
    json_error_t jerr;
    json_t *obj = json_loads(v, 0, &jerr);
    int rc = 0;
    if (!obj || !json_is_object(obj)) {
        snprintf(err, QUERY_ERRMSG, "malformed 'tags' parameter, cannot unmarshal JSON: %s",
                 obj ? "expected an object of string values" : jerr.text);
        rc = -EINVAL;
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (!json_is_string(val)) {
            snprintf(err, QUERY_ERRMSG,
                     "malformed 'tags' parameter, cannot unmarshal JSON: value of \"%.*s\" is "
                     "not a string",
                     QUOTE_MAX, key);
            rc = -EINVAL;
            goto out;
        }
        char *k = arena_strndup(p->arena, key, strlen(key));
        char *s = arena_strndup(p->arena, json_string_value(val), json_string_length(val));
        if (!k || !s) {
            rc = -ENOMEM;
            goto out;
        }
        rc = add_tag(p, k, s, err);
        if (rc) goto out;
    }
out:
    json_decref(obj);
    return rc;
}

int trace_params_parse(const struct query_arg *args, size_t n, struct trace_params *p,
                       char err[QUERY_ERRMSG])
{
    memset(p, 0, sizeof *p);
    p->q.tags = p->tags;
    p->arena = arena_create(1024);
    if (!p->arena) return -ENOMEM;
    int rc;
    bool has_start, has_end;
    int64_t start, end, lookback = QUERY_DEFAULT_LOOKBACK_US;

    p->q.service = query_arg(args, n, "service");
    p->q.operation = query_arg(args, n, "operation");
    if ((rc = param_int64(args, n, "start", &start, &has_start, err))) return rc;
    if ((rc = param_int64(args, n, "end", &end, &has_end, err))) return rc;
    const char *lb = query_arg(args, n, "lookback");
    if (lb && strcmp(lb, "custom") != 0 && (rc = param_lookback(lb, &lookback, err))) return rc;
    if (!has_end) end = query_now_us();
    if (!has_start && __builtin_sub_overflow(end, lookback, &start)) start = INT64_MIN;
    p->q.start_us = start;
    p->q.end_us = end;

    /* All tag= first, then all tags=, as Jaeger merges them: a key in tags= wins. */
    for (size_t i = 0; i < n; i++) {
        if (!args[i].key || !args[i].value || strcmp(args[i].key, "tag") != 0) continue;
        if ((rc = parse_tag_arg(p, args[i].value, err))) return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (!args[i].key || !args[i].value || strcmp(args[i].key, "tags") != 0) continue;
        if ((rc = parse_tags_json(p, args[i].value, err))) return rc;
    }

    /* error=true (the failed-request search users come for) also narrows the store's search to
     * its error index: the tag and span_is_error() mean the same spans. */
    for (size_t i = 0; i < p->q.n_tags; i++)
        if (strcmp(p->tags[i].key, "error") == 0 && strcmp(p->tags[i].value, "true") == 0)
            p->q.errors_only = true;

    const char *limit = query_arg(args, n, "limit");
    p->q.limit = QUERY_DEFAULT_LIMIT;
    if (limit) {
        int64_t l;
        const char *why;
        if (parse_int64(limit, &l, &why)) return param_error(err, "limit", limit, why);
        if (l < 0) {
            snprintf(err, QUERY_ERRMSG, "unable to parse param 'limit': must not be negative");
            return -EINVAL;
        }
        if (l > 0) p->q.limit = l > QUERY_MAX_LIMIT ? QUERY_MAX_LIMIT : (unsigned)l;
    }
    if ((rc = param_duration(args, n, "minDuration", &p->q.min_duration_us, err))) return rc;
    if ((rc = param_duration(args, n, "maxDuration", &p->q.max_duration_us, err))) return rc;

    for (size_t i = 0; i < n; i++) {
        if (!args[i].key || strcmp(args[i].key, "traceID") != 0) continue;
        if (p->n_trace_ids == QUERY_MAX_TRACE_IDS) {
            snprintf(err, QUERY_ERRMSG, "too many traceID params: at most %d", QUERY_MAX_TRACE_IDS);
            return -EINVAL;
        }
        const char *v = args[i].value ? args[i].value : "";
        if (query_parse_trace_id(v, p->trace_ids[p->n_trace_ids])) {
            snprintf(err, QUERY_ERRMSG,
                     "cannot parse traceID param: expected 1 to 32 hex characters, got \"%.*s\"",
                     QUOTE_MAX, v);
            return -EINVAL;
        }
        p->n_trace_ids++;
    }

    if (p->n_trace_ids == 0 && !p->q.service) {
        snprintf(err, QUERY_ERRMSG, "parameter 'service' is required");
        return -EINVAL;
    }
    if (p->q.min_duration_us && p->q.max_duration_us &&
        p->q.max_duration_us < p->q.min_duration_us) {
        snprintf(err, QUERY_ERRMSG, "'maxDuration' should be greater than 'minDuration'");
        return -EINVAL;
    }
    return 0;
}

void trace_params_free(struct trace_params *p)
{
    arena_destroy(p->arena);
    p->arena = NULL;
}

/* ----- /api/dependencies ----------------------------------------------------------------- */

int64_t query_ms_to_us(int64_t ms)
{
    if (ms > INT64_MAX / 1000) return INT64_MAX;
    if (ms < INT64_MIN / 1000) return INT64_MIN;
    return ms * 1000;
}

int dependency_params_parse(const struct query_arg *args, size_t n, int64_t *end_us,
                            int64_t *lookback_us, char err[QUERY_ERRMSG])
{
    int rc;
    bool present;
    int64_t v;
    if ((rc = param_int64(args, n, "endTs", &v, &present, err))) return rc;
    *end_us = present ? query_ms_to_us(v) : query_now_us();
    if ((rc = param_int64(args, n, "lookback", &v, &present, err))) return rc;
    if (present && v < 0) {
        snprintf(err, QUERY_ERRMSG, "unable to parse param 'lookback': must not be negative");
        return -EINVAL;
    }
    *lookback_us = query_ms_to_us(present ? v : QUERY_DEFAULT_DEP_LOOKBACK_MS);
    return 0;
}
