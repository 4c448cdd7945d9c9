/*
 * test_query.c: the query module. Table-driven tests of the Jaeger parameter rules and error
 * bodies, the JSON writers, the rendering of a span carrying every field and value type (parsed
 * back with jansson), and end-to-end runs of query_handle over a real store in a temp dir.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "query.h"
#include "query_int.h"
#include "test_util.h"

/* ----- helpers ---------------------------------------------------------------------------- */

/* Runs query_handle and parses the body. Returns the parsed JSON (caller decrefs). */
static json_t *get(struct store *st, const char *path, const char *qs, int *status)
{
    struct args a;
    args_parse(&a, qs);
    struct query_response resp = {0};
    int rc = query_handle(st, path, a.a, a.n, &resp);
    assert_int_equal(rc, 0);
    assert_non_null(resp.body);
    assert_string_equal(resp.content_type, "application/json");
    assert_int_equal(strlen(resp.body), resp.len);
    json_error_t err;
    json_t *j = json_loadb(resp.body, resp.len, 0, &err);
    if (!j) fail_msg("invalid JSON (%s) for %s?%s: %s", err.text, path, qs ? qs : "", resp.body);
    *status = resp.status;
    free(resp.body);
    return j;
}

/* The Jaeger envelope's keys are all there, with the given error code (0 = none). */
static void check_envelope(json_t *j, int code)
{
    assert_true(json_is_object(j));
    assert_non_null(json_object_get(j, "data"));
    assert_int_equal(json_integer_value(json_object_get(j, "limit")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "offset")), 0);
    assert_true(json_is_integer(json_object_get(j, "total")));
    json_t *errors = json_object_get(j, "errors");
    if (code == 0) {
        assert_true(json_is_null(errors));
    } else {
        assert_true(json_is_null(json_object_get(j, "data")));
        assert_true(json_is_array(errors));
        assert_int_equal(json_array_size(errors), 1);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(errors, 0), "code")),
                         code);
    }
}

static const char *error_msg(json_t *j)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(j, "errors"), 0), "msg"));
}

/* ----- durations -------------------------------------------------------------------------- */

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        int64_t us;
    } cases[] = {
        {"1ms", 0, 1000},
        {"1.5s", 0, 1500000},
        {"2h45m", 0, 9900000000LL},
        {"1m30s", 0, 90000000},
        {"100us", 0, 100},
        {"100\xc2\xb5s", 0, 100}, /* µ (micro sign) */
        {"100\xce\xbcs", 0, 100}, /* μ (Greek mu) */
        {"300ns", 0, 0},          /* rounds down */
        {"1500ns", 0, 1},
        {"0", 0, 0},
        {"0s", 0, 0},
        {"+5s", 0, 5000000},
        {".5s", 0, 500000},
        {"1.s", 0, 1000000},
        {"1h0.5m", 0, 3630000000LL},
        {"0.0000015s", 0, 1},
        {"2562047h", 0, 2562047LL * 3600 * 1000000},
        {"", -EINVAL, 0},
        {"-1s", -EINVAL, 0},
        {"1", -EINVAL, 0},
        {"1x", -EINVAL, 0},
        {"1 s", -EINVAL, 0},
        {"s", -EINVAL, 0},
        {".", -EINVAL, 0},
        {".s", -EINVAL, 0},
        {"1h1", -EINVAL, 0},
        {"1d", -EINVAL, 0},
        {"2562048h", -EINVAL, 0},
        {"99999999999999999999s", -EINVAL, 0},
        {"1e3s", -EINVAL, 0},
        {"1ss", -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t us = -42;
        int rc = query_parse_duration(cases[i].in, &us);
        if (rc != cases[i].rc) fail_msg("'%s': rc %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc == 0 && us != cases[i].us)
            fail_msg("'%s': %lld us, want %lld", cases[i].in, (long long)us,
                     (long long)cases[i].us);
    }
    assert_int_equal(query_parse_duration(NULL, &(int64_t){0}), -EINVAL);
}

/* ----- parameters ------------------------------------------------------------------------- */

static void test_param_errors(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        const char *qs;
        const char *msg; /* substring of the error message */
    } cases[] = {
        {"/api/traces", "", "parameter 'service' is required"},
        {"/api/traces", "operation=x", "parameter 'service' is required"},
        {"/api/traces", "service=a&start=abc", "unable to parse param 'start'"},
        {"/api/traces", "service=a&end=1.5", "unable to parse param 'end'"},
        {"/api/traces", "service=a&end=99999999999999999999", "unable to parse param 'end'"},
        {"/api/traces", "service=a&limit=x", "unable to parse param 'limit'"},
        {"/api/traces", "service=a&limit=-1", "unable to parse param 'limit'"},
        {"/api/traces", "service=a&minDuration=5x", "unable to parse param 'minDuration'"},
        {"/api/traces", "service=a&minDuration=5", "unable to parse param 'minDuration'"},
        {"/api/traces", "service=a&maxDuration=-1s", "unable to parse param 'maxDuration'"},
        {"/api/traces", "service=a&minDuration=2s&maxDuration=1s",
         "'maxDuration' should be greater than 'minDuration'"},
        {"/api/traces", "service=a&tag=novalue", "malformed 'tag' parameter"},
        {"/api/traces", "service=a&tags={bad", "malformed 'tags' parameter"},
        {"/api/traces", "service=a&tags={\"a\":1}", "malformed 'tags' parameter"},
        {"/api/traces", "service=a&tags=[]", "malformed 'tags' parameter"},
        {"/api/traces", "service=a&traceID=xyz", "traceID"},
        {"/api/traces", "traceID=000000000000000000000000000000001", "traceID"},
        {"/api/traces", "service=a&lookback=bogus", "unable to parse param 'lookback'"},
        {"/api/operations", "", "parameter 'service' is required"},
        {"/api/operations", "service=a&spanKind=bogus", "unable to parse param 'spanKind'"},
        {"/api/traces/xyz", "", "traceID"},
        {"/api/traces/000000000000000000000000000000001", "", "traceID"},
        {"/api/traces/abc", "start=x", "unable to parse param 'start'"},
        {"/api/traces/abc", "end=x", "unable to parse param 'end'"},
        {"/api/dependencies", "endTs=x", "unable to parse param 'endTs'"},
        {"/api/dependencies", "lookback=1h", "unable to parse param 'lookback'"},
        {"/api/dependencies", "lookback=-5", "unable to parse param 'lookback'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status;
        json_t *j = get(NULL, cases[i].path, cases[i].qs, &status);
        if (status != 400) fail_msg("%s?%s: status %d", cases[i].path, cases[i].qs, status);
        check_envelope(j, 400);
        const char *msg = error_msg(j);
        assert_non_null(msg);
        if (!strstr(msg, cases[i].msg))
            fail_msg("%s?%s: message \"%s\" lacks \"%s\"", cases[i].path, cases[i].qs, msg,
                     cases[i].msg);
        json_decref(j);
    }

    /* Too many tag filters. */
    char qs[2048] = "service=a";
    for (int i = 0; i <= QUERY_MAX_TAGS; i++)
        snprintf(qs + strlen(qs), sizeof qs - strlen(qs), "&tag=k%d:v", i);
    int status;
    json_t *j = get(NULL, "/api/traces", qs, &status);
    assert_int_equal(status, 400);
    assert_non_null(strstr(error_msg(j), "tag"));
    json_decref(j);
}

static void test_routes_not_ours(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "/api/unknown",
        "/other",
        "/api",
        "/api/",
        "/api/traces/a/b",
        "/api/services/x",
        "/api/services//operation",
        "/api/servicesx",
        "/metrics",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct query_response resp = {.status = -1};
        if (query_handle(NULL, paths[i], NULL, 0, &resp) != -ENOENT)
            fail_msg("%s: not -ENOENT", paths[i]);
        assert_int_equal(resp.status, -1); /* untouched */
    }
    struct query_response resp = {.status = -1};
    assert_int_equal(query_handle(NULL, NULL, NULL, 0, &resp), -ENOENT);
}

static void test_trace_params(void **state)
{
    (void)state;
    query_now_us = fake_now;
    struct trace_params p;
    char err[QUERY_ERRMSG];
    struct args a;

    args_parse(&a, "service=svc");
    assert_int_equal(trace_params_parse(a.a, a.n, &p, err), 0);
    assert_string_equal(p.q.service, "svc");
    assert_null(p.q.operation);
    assert_int_equal(p.q.end_us, FAKE_NOW_US);
    assert_int_equal(p.q.start_us, FAKE_NOW_US - 2 * 86400000000LL); /* Jaeger: 2 days */
    assert_int_equal(p.q.limit, 100);
    assert_int_equal(p.q.n_tags, 0);
    assert_int_equal(p.n_trace_ids, 0);
    trace_params_free(&p);

    args_parse(&a, "service=svc&operation=GET /x&lookback=1h&limit=5000&minDuration=1.5ms"
                   "&maxDuration=2s&tag=http.url:http://x:80/&tags={\"a\":\"1\",\"b\":\"2\"}"
                   "&tag=a:override-me&tag=error:true&prettyPrint=true");
    assert_int_equal(trace_params_parse(a.a, a.n, &p, err), 0);
    assert_string_equal(p.q.operation, "GET /x");
    assert_int_equal(p.q.start_us, FAKE_NOW_US - 3600000000LL);
    assert_int_equal(p.q.limit, QUERY_MAX_LIMIT);
    assert_int_equal(p.q.min_duration_us, 1500);
    assert_int_equal(p.q.max_duration_us, 2000000);
    /* tag= values split on the first colon; later values of a key replace earlier ones (Jaeger
     * collects them in a map): tags= is applied after the tag= params, as Jaeger does. */
    assert_int_equal(p.q.n_tags, 4);
    assert_string_equal(p.q.tags[0].key, "http.url");
    assert_string_equal(p.q.tags[0].value, "http://x:80/");
    assert_string_equal(p.q.tags[1].key, "a");
    assert_string_equal(p.q.tags[2].key, "error");
    assert_string_equal(p.q.tags[2].value, "true");
    assert_string_equal(p.q.tags[3].key, "b");
    assert_string_equal(p.q.tags[1].value, "1");
    trace_params_free(&p);

    args_parse(&a, "service=svc&start=100&end=200&lookback=custom&limit=0");
    assert_int_equal(trace_params_parse(a.a, a.n, &p, err), 0);
    assert_int_equal(p.q.start_us, 100);
    assert_int_equal(p.q.end_us, 200);
    assert_int_equal(p.q.limit, 100);
    trace_params_free(&p);

    args_parse(
        &a, "end=1000000000000&lookback=2d&traceID=abc&traceID=0123456789abcdef0123456789abcdef");
    assert_int_equal(trace_params_parse(a.a, a.n, &p, err), 0);
    assert_int_equal(p.q.start_us, 1000000000000LL - 2 * 86400000000LL);
    assert_int_equal(p.n_trace_ids, 2);
    static const uint8_t short_id[16] = {[14] = 0x0a, [15] = 0xbc};
    assert_memory_equal(p.trace_ids[0], short_id, 16);
    assert_int_equal(p.trace_ids[1][0], 0x01);
    assert_int_equal(p.trace_ids[1][15], 0xef);
    trace_params_free(&p);

    int64_t end, lookback;
    args_parse(&a, "");
    assert_int_equal(dependency_params_parse(a.a, a.n, &end, &lookback, err), 0);
    assert_int_equal(end, FAKE_NOW_US);
    assert_int_equal(lookback, 86400000000LL); /* Jaeger: 1 day */
    args_parse(&a, "endTs=1700000000000&lookback=3600000");
    assert_int_equal(dependency_params_parse(a.a, a.n, &end, &lookback, err), 0);
    assert_int_equal(end, 1700000000000000LL);
    assert_int_equal(lookback, 3600000000LL);

    uint8_t id[16];
    assert_int_equal(query_parse_trace_id("ABCDEF", id), 0);
    assert_int_equal(id[15], 0xef);
    assert_int_equal(query_parse_trace_id("", id), -EINVAL);
    assert_int_equal(query_parse_trace_id("12g4", id), -EINVAL);
}

/* ----- JSON writers ----------------------------------------------------------------------- */

static void test_json_writers(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *out;
    } nums[] = {
        {0, "0"},
        {1, "1"},
        {-1.5, "-1.5"},
        {0.1, "0.1"},
        {72.5, "72.5"},
        {1.0 / 3, "0.3333333333333333"},
        {123456.789, "123456.789"},
        {1e20, "100000000000000000000"},
        {1e21, "1e+21"},
        {1.5e300, "1.5e+300"},
        {0.000001, "0.000001"},
        {1e-7, "1e-7"},
        {-1.5e-7, "-1.5e-7"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {NAN, "\"NaN\""},
        {INFINITY, "\"+Inf\""},
        {-INFINITY, "\"-Inf\""},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        struct sbuf b;
        sb_init(&b, 1024);
        sb_double(&b, nums[i].v);
        assert_int_equal(b.error, 0);
        if (strcmp(b.p, nums[i].out) != 0)
            fail_msg("%.17g: got %s, want %s", nums[i].v, b.p, nums[i].out);
        sb_free(&b);
    }

    /* Random bit patterns: the shortest form always reads back as the same double. */
    srand(12345);
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = 0;
        for (int k = 0; k < 4; k++)
            bits = bits << 16 | (uint64_t)(rand() & 0xffff);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v)) continue;
        struct sbuf b;
        sb_init(&b, 1024);
        sb_double(&b, v);
        char *end;
        double back = strtod(b.p, &end);
        if (*end != '\0' || memcmp(&back, &v, sizeof v) != 0)
            fail_msg("%.17g rendered as %s", v, b.p);
        sb_free(&b);
    }

    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } strs[] = {
        {"plain", 5, "\"plain\""},
        {"q\"b\\s/", 6, "\"q\\\"b\\\\s/\""},
        {"\n\r\t\b\f\x01\x1f", 7, "\"\\n\\r\\t\\b\\f\\u0001\\u001f\""},
        {"<a&b>", 5, "\"\\u003ca\\u0026b\\u003e\""},
        {"nul\0x", 5, "\"nul\\u0000x\""},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""},
        {"\xe2\x80\xa8\xe2\x80\xa9", 6, "\"\\u2028\\u2029\""},
        {"\xff", 1, "\"\\ufffd\""},
        {"a\xc3", 2, "\"a\\ufffd\""},                                /* truncated sequence */
        {"\xc0\xaf", 2, "\"\\ufffd\\ufffd\""},                       /* overlong '/' */
        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""},            /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* > U+10FFFF */
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        struct sbuf b;
        sb_init(&b, 1024);
        sb_json_str(&b, strs[i].in, strs[i].len);
        if (strcmp(b.p, strs[i].out) != 0)
            fail_msg("case %zu: got %s, want %s", i, b.p, strs[i].out);
        json_t *j = json_loads(b.p, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        assert_non_null(j);
        json_decref(j);
        sb_free(&b);
    }

    /* A long hostile string: every byte value, many times over, stays valid JSON. */
    size_t n = 256 * 64;
    char *buf = malloc(n);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(i * 7 + i / 256);
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_json_str(&b, buf, n);
    assert_int_equal(b.error, 0);
    json_t *j = json_loads(b.p, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    assert_non_null(j);
    json_decref(j);
    sb_free(&b);
    free(buf);

    /* The cap is enforced and sticky. */
    sb_init(&b, 8);
    sb_puts(&b, "12345678");
    assert_int_equal(b.error, 0);
    sb_putc(&b, '9');
    assert_int_equal(b.error, -E2BIG);
    size_t len;
    assert_null(sb_take(&b, &len));

    static const struct {
        const char *in;
        const char *out;
    } b64[] = {{"", "\"\""},
               {"f", "\"Zg==\""},
               {"fo", "\"Zm8=\""},
               {"foo", "\"Zm9v\""},
               {"\x00\x01\xff", "\"AAH/\""}};
    for (size_t i = 0; i < sizeof b64 / sizeof b64[0]; i++) {
        sb_init(&b, 64);
        sb_json_base64(&b, (const uint8_t *)b64[i].in, i == 4 ? 3 : strlen(b64[i].in));
        assert_string_equal(b.p, b64[i].out);
        sb_free(&b);
    }
}

/* ----- rendering -------------------------------------------------------------------------- */

static struct mstr ms(struct arena *a, const char *s)
{
    return (struct mstr){arena_strndup(a, s, strlen(s)), (uint32_t)strlen(s)};
}

static struct mstr msn(struct arena *a, const char *s, size_t n)
{
    return (struct mstr){arena_strndup(a, s, n), (uint32_t)n};
}

static struct attr *attrs_alloc(struct arena *a, struct attrs *as, uint32_t n)
{
    as->items = arena_alloc(a, n * sizeof *as->items);
    as->n = n;
    return as->items;
}

static void attr_str(struct arena *a, struct attr *at, const char *k, const char *v)
{
    at->key = ms(a, k);
    at->value.type = VALUE_STRING;
    at->value.u.str = ms(a, v);
}

static struct resource *make_resource(struct arena *a, const char *service, const char *host)
{
    struct resource *r = arena_alloc(a, sizeof *r);
    struct attr *at = attrs_alloc(a, &r->attrs, 3);
    attr_str(a, &at[0], "host.name", host);
    attr_str(a, &at[1], "service.name", service);
    at[2].key = ms(a, "process.pid");
    at[2].value.type = VALUE_INT;
    at[2].value.u.i = 4242;
    return r;
}

static const uint8_t TRACE_ID[16] = {0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03,
                                     0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c};
static const uint8_t SPAN_A[8] = {0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74};
static const uint8_t SPAN_B[8] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b};
static const uint8_t SPAN_C[8] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c};
static const uint8_t PARENT[8] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
static const uint8_t LINK_TRACE[16] = {[0] = 0xaa, [15] = 0xbb};

#define T0 UINT64_C(1700000000000000000) /* ns */

/* A span with every field and every value type. */
static void fill_full_span(struct span_batch *batch, struct span *s, const struct resource *res)
{
    struct arena *a = batch->arena;
    memcpy(s->trace_id, TRACE_ID, 16);
    memcpy(s->span_id, SPAN_A, 8);
    memcpy(s->parent_span_id, PARENT, 8);
    s->has_parent = true;
    s->trace_state = ms(a, "vendor=x");
    s->flags = 0x301; /* sampled, plus OTLP's has-is-remote bits, which Jaeger has no place for */
    s->name = ms(a, "GET /users/{id}");
    s->kind = SPAN_KIND_SERVER;
    s->start_unix_nano = T0 + 2000000;
    s->end_unix_nano = T0 + 2000000 + 1234567;
    s->status_code = STATUS_ERROR;
    s->status_message = ms(a, "boom");
    s->resource = res;
    struct scope *sc = arena_alloc(a, sizeof *sc);
    sc->name = ms(a, "io.opentelemetry.http");
    sc->version = ms(a, "1.2.3");
    s->scope = sc;

    struct attr *at = attrs_alloc(a, &s->attrs, 12);
    attr_str(a, &at[0], "http.method", "GET");
    at[1].key = ms(a, "ok");
    at[1].value.type = VALUE_BOOL;
    at[1].value.u.b = true;
    at[2].key = ms(a, "http.status_code");
    at[2].value.type = VALUE_INT;
    at[2].value.u.i = 503;
    at[3].key = ms(a, "big");
    at[3].value.type = VALUE_INT;
    at[3].value.u.i = INT64_C(1) << 60;
    at[4].key = ms(a, "ratio");
    at[4].value.type = VALUE_DOUBLE;
    at[4].value.u.d = 0.1;
    at[5].key = ms(a, "blob");
    at[5].value.type = VALUE_BYTES;
    at[5].value.u.str = msn(a, "\x00\x01\xff", 3);
    /* array ["a", 1, true, null] */
    at[6].key = ms(a, "list");
    at[6].value.type = VALUE_ARRAY;
    struct value *items = arena_alloc(a, 4 * sizeof *items);
    items[0].type = VALUE_STRING;
    items[0].u.str = ms(a, "a");
    items[1].type = VALUE_INT;
    items[1].u.i = 1;
    items[2].type = VALUE_BOOL;
    items[2].u.b = true;
    items[3].type = VALUE_EMPTY;
    at[6].value.u.array.items = items;
    at[6].value.u.array.n = 4;
    /* kvlist {"b": 1.5, "a": "x", "b": 2} -> sorted keys, last duplicate wins */
    at[7].key = ms(a, "map");
    at[7].value.type = VALUE_KVLIST;
    struct attr *kv = arena_alloc(a, 3 * sizeof *kv);
    kv[0].key = ms(a, "b");
    kv[0].value.type = VALUE_DOUBLE;
    kv[0].value.u.d = 1.5;
    attr_str(a, &kv[1], "a", "x");
    kv[2].key = ms(a, "b");
    kv[2].value.type = VALUE_INT;
    kv[2].value.u.i = 2;
    at[7].value.u.kvlist.items = kv;
    at[7].value.u.kvlist.n = 3;
    at[8].key = ms(a, "nothing");
    at[8].value.type = VALUE_EMPTY;
    at[9].key = ms(a, "bad\"key");
    at[9].value.type = VALUE_STRING;
    at[9].value.u.str = msn(a, "\xff\xfe<&>", 5);
    at[10].key = ms(a, "neg");
    at[10].value.type = VALUE_DOUBLE;
    at[10].value.u.d = -2.5e-9;
    at[11].key = ms(a, "nan");
    at[11].value.type = VALUE_DOUBLE;
    at[11].value.u.d = NAN;
    s->attrs.dropped = 3;
    s->dropped_events = 1;
    s->dropped_links = 2;

    s->events = arena_alloc(a, 2 * sizeof *s->events);
    s->n_events = 2;
    s->events[0].time_unix_nano = T0 + 2500000;
    s->events[0].name = ms(a, "exception");
    attr_str(a, attrs_alloc(a, &s->events[0].attrs, 1), "exception.message", "bad thing");
    s->events[0].attrs.dropped = 4;
    s->events[1].time_unix_nano = T0 + 2600000;
    s->events[1].name = ms(a, "ignored-name");
    attr_str(a, attrs_alloc(a, &s->events[1].attrs, 1), "event", "own-event");

    s->links = arena_alloc(a, 3 * sizeof *s->links);
    s->n_links = 3;
    memcpy(s->links[0].trace_id, LINK_TRACE, 16);
    memcpy(s->links[0].span_id, SPAN_C, 8);
    memcpy(s->links[1].trace_id, LINK_TRACE, 16);
    memcpy(s->links[1].span_id, SPAN_B, 8);
    attr_str(a, attrs_alloc(a, &s->links[1].attrs, 1), "opentracing.ref_type", "child_of");
    /* A link to the parent: only turns the parent reference into FOLLOWS_FROM. */
    memcpy(s->links[2].trace_id, TRACE_ID, 16);
    memcpy(s->links[2].span_id, PARENT, 8);
    attr_str(a, attrs_alloc(a, &s->links[2].attrs, 1), "opentracing.ref_type", "follows_from");
}

static json_t *find_kv(json_t *list, const char *key)
{
    size_t i;
    json_t *kv;
    json_array_foreach(list, i, kv)
    {
        if (strcmp(json_string_value(json_object_get(kv, "key")), key) == 0) return kv;
    }
    fail_msg("no key %s", key);
    return NULL;
}

static void check_kv(json_t *list, const char *key, const char *type)
{
    json_t *kv = find_kv(list, key);
    assert_string_equal(json_string_value(json_object_get(kv, "type")), type);
    assert_int_equal(json_object_size(kv), 3);
}

static json_t *kv_val(json_t *list, const char *key)
{
    return json_object_get(find_kv(list, key), "value");
}

static void test_render_trace(void **state)
{
    (void)state;
    struct span_batch *batch = span_batch_create();
    assert_non_null(batch);
    struct arena *a = batch->arena;
    const struct resource *r1 = make_resource(a, "frontend", "h1");
    const struct resource *r1_copy = make_resource(a, "frontend", "h1"); /* same content */
    const struct resource *r2 = make_resource(a, "backend", "h2");

    fill_full_span(batch, span_batch_add(batch), r1);
    /* Span B starts first: rendering sorts by start time. */
    struct span *b = span_batch_add(batch);
    memcpy(b->trace_id, TRACE_ID, 16);
    memcpy(b->span_id, SPAN_B, 8);
    b->name = ms(a, "root");
    b->start_unix_nano = T0;
    b->end_unix_nano = T0 + 5000000;
    b->resource = r1_copy;
    struct span *c = span_batch_add(batch);
    memcpy(c->trace_id, TRACE_ID, 16);
    memcpy(c->span_id, SPAN_C, 8);
    c->name = ms(a, "");
    c->kind = SPAN_KIND_CLIENT;
    c->status_code = STATUS_OK;
    c->start_unix_nano = T0 + 3000000;
    c->end_unix_nano = T0 + 1000; /* ends before it starts: duration 0 */
    c->resource = r2;

    struct sbuf out;
    sb_init(&out, QUERY_MAX_BODY);
    jaeger_render_trace(&out, batch);
    assert_int_equal(out.error, 0);
    json_error_t err;
    json_t *t = json_loads(out.p, 0, &err);
    if (!t) fail_msg("invalid JSON: %s\n%s", err.text, out.p);

    assert_string_equal(json_string_value(json_object_get(t, "traceID")),
                        "5b8efff798038103d269b633813fc60c");
    assert_true(json_is_null(json_object_get(t, "warnings")));
    json_t *spans = json_object_get(t, "spans");
    assert_int_equal(json_array_size(spans), 3);
    json_t *s0 = json_array_get(spans, 0), *s1 = json_array_get(spans, 1),
           *s2 = json_array_get(spans, 2);
    assert_string_equal(json_string_value(json_object_get(s0, "spanID")), "000000000000000b");
    assert_string_equal(json_string_value(json_object_get(s1, "spanID")), "eee19b7ec3c1b174");
    assert_string_equal(json_string_value(json_object_get(s2, "spanID")), "000000000000000c");

    /* Processes: B and A share p1 (identical content, different resource objects). */
    json_t *procs = json_object_get(t, "processes");
    assert_int_equal(json_object_size(procs), 2);
    assert_string_equal(json_string_value(json_object_get(s0, "processID")), "p1");
    assert_string_equal(json_string_value(json_object_get(s1, "processID")), "p1");
    assert_string_equal(json_string_value(json_object_get(s2, "processID")), "p2");
    json_t *p1 = json_object_get(procs, "p1");
    assert_string_equal(json_string_value(json_object_get(p1, "serviceName")), "frontend");
    json_t *ptags = json_object_get(p1, "tags");
    assert_int_equal(json_array_size(ptags), 2); /* service.name is the serviceName */
    assert_string_equal(json_string_value(kv_val(ptags, "host.name")), "h1");
    check_kv(ptags, "process.pid", "int64");
    assert_int_equal(json_integer_value(kv_val(ptags, "process.pid")), 4242);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(procs, "p2"), "serviceName")), "backend");

    /* The full span. */
    json_t *s = s1;
    assert_string_equal(json_string_value(json_object_get(s, "traceID")),
                        "5b8efff798038103d269b633813fc60c");
    assert_string_equal(json_string_value(json_object_get(s, "operationName")), "GET /users/{id}");
    assert_int_equal(json_integer_value(json_object_get(s, "flags")), 1);
    assert_int_equal(json_integer_value(json_object_get(s, "startTime")), (T0 + 2000000) / 1000);
    assert_int_equal(json_integer_value(json_object_get(s, "duration")), 1234);
    assert_true(json_is_null(json_object_get(s, "warnings")));
    assert_null(json_object_get(s, "process")); /* uimodel: processID only */

    json_t *refs = json_object_get(s, "references");
    assert_int_equal(json_array_size(refs), 3);
    static const char *const want_refs[3][3] = {
        {"FOLLOWS_FROM", "5b8efff798038103d269b633813fc60c", "0102030405060708"},
        {"FOLLOWS_FROM", "aa0000000000000000000000000000bb", "000000000000000c"},
        {"CHILD_OF", "aa0000000000000000000000000000bb", "000000000000000b"},
    };
    for (size_t i = 0; i < 3; i++) {
        json_t *ref = json_array_get(refs, i);
        assert_string_equal(json_string_value(json_object_get(ref, "refType")), want_refs[i][0]);
        assert_string_equal(json_string_value(json_object_get(ref, "traceID")), want_refs[i][1]);
        assert_string_equal(json_string_value(json_object_get(ref, "spanID")), want_refs[i][2]);
    }

    json_t *tags = json_object_get(s, "tags");
    static const char *const order[] = {
        "otel.scope.name",
        "otel.scope.version",
        "http.method",
        "ok",
        "http.status_code",
        "big",
        "ratio",
        "blob",
        "list",
        "map",
        "nothing",
        "bad\"key",
        "neg",
        "nan",
        "span.kind",
        "otel.status_code",
        "error",
        "otel.status_description",
        "w3c.tracestate",
        "otel.dropped_attributes_count",
        "otel.dropped_events_count",
        "otel.dropped_links_count",
    };
    assert_int_equal(json_array_size(tags), sizeof order / sizeof order[0]);
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(tags, i), "key")),
                            order[i]);
    check_kv(tags, "otel.scope.name", "string");
    assert_string_equal(json_string_value(kv_val(tags, "otel.scope.name")),
                        "io.opentelemetry.http");
    assert_string_equal(json_string_value(kv_val(tags, "otel.scope.version")), "1.2.3");
    check_kv(tags, "http.method", "string");
    check_kv(tags, "ok", "bool");
    assert_true(json_is_true(kv_val(tags, "ok")));
    check_kv(tags, "http.status_code", "int64");
    assert_int_equal(json_integer_value(kv_val(tags, "http.status_code")), 503);
    check_kv(tags, "big", "int64");
    assert_string_equal(json_string_value(kv_val(tags, "big")), "1152921504606846976");
    check_kv(tags, "ratio", "float64");
    assert_true(json_is_real(kv_val(tags, "ratio")));
    assert_true(json_real_value(kv_val(tags, "ratio")) == 0.1);
    check_kv(tags, "blob", "binary");
    assert_string_equal(json_string_value(kv_val(tags, "blob")), "AAH/");
    check_kv(tags, "list", "string");
    assert_string_equal(json_string_value(kv_val(tags, "list")), "[\"a\",1,true,null]");
    check_kv(tags, "map", "string");
    assert_string_equal(json_string_value(kv_val(tags, "map")), "{\"a\":\"x\",\"b\":2}");
    check_kv(tags, "nothing", "string");
    assert_string_equal(json_string_value(kv_val(tags, "nothing")), "");
    assert_string_equal(json_string_value(kv_val(tags, "bad\"key")), "\xef\xbf\xbd\xef\xbf\xbd<&>");
    assert_true(json_real_value(kv_val(tags, "neg")) == -2.5e-9);
    check_kv(tags, "nan", "float64");
    assert_string_equal(json_string_value(kv_val(tags, "nan")), "NaN");
    assert_string_equal(json_string_value(kv_val(tags, "span.kind")), "server");
    assert_string_equal(json_string_value(kv_val(tags, "otel.status_code")), "ERROR");
    check_kv(tags, "error", "bool");
    assert_true(json_is_true(kv_val(tags, "error")));
    assert_string_equal(json_string_value(kv_val(tags, "otel.status_description")), "boom");
    assert_string_equal(json_string_value(kv_val(tags, "w3c.tracestate")), "vendor=x");
    check_kv(tags, "otel.dropped_attributes_count", "int64");
    assert_int_equal(json_integer_value(kv_val(tags, "otel.dropped_attributes_count")), 3);
    assert_int_equal(json_integer_value(kv_val(tags, "otel.dropped_events_count")), 1);
    assert_int_equal(json_integer_value(kv_val(tags, "otel.dropped_links_count")), 2);

    json_t *logs = json_object_get(s, "logs");
    assert_int_equal(json_array_size(logs), 2);
    json_t *l0 = json_array_get(logs, 0);
    assert_int_equal(json_integer_value(json_object_get(l0, "timestamp")), (T0 + 2500000) / 1000);
    json_t *f0 = json_object_get(l0, "fields");
    assert_int_equal(json_array_size(f0), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(f0, 0), "key")), "event");
    assert_string_equal(json_string_value(kv_val(f0, "event")), "exception");
    assert_string_equal(json_string_value(kv_val(f0, "exception.message")), "bad thing");
    assert_int_equal(json_integer_value(kv_val(f0, "otel.dropped_attributes_count")), 4);
    json_t *f1 = json_object_get(json_array_get(logs, 1), "fields");
    assert_int_equal(json_array_size(f1), 1); /* the event's own "event" attribute wins */
    assert_string_equal(json_string_value(kv_val(f1, "event")), "own-event");

    /* The minimal spans: no flags key, empty lists, no kind tag for UNSPECIFIED. */
    assert_null(json_object_get(s0, "flags"));
    assert_int_equal(json_array_size(json_object_get(s0, "references")), 0);
    assert_int_equal(json_array_size(json_object_get(s0, "tags")), 0);
    assert_int_equal(json_array_size(json_object_get(s0, "logs")), 0);
    assert_int_equal(json_integer_value(json_object_get(s0, "duration")), 5000);
    json_t *t2 = json_object_get(s2, "tags");
    assert_int_equal(json_array_size(t2), 2);
    assert_string_equal(json_string_value(kv_val(t2, "span.kind")), "client");
    assert_string_equal(json_string_value(kv_val(t2, "otel.status_code")), "OK");
    assert_int_equal(json_integer_value(json_object_get(s2, "duration")), 0);
    assert_string_equal(json_string_value(json_object_get(s2, "operationName")), "");

    json_decref(t);
    sb_free(&out);
    span_batch_destroy(batch);
}

/* A span without a resource renders as unknown_service with no process tags. */
static void test_render_no_resource(void **state)
{
    (void)state;
    struct span_batch *batch = span_batch_create();
    struct span *s = span_batch_add(batch);
    memcpy(s->trace_id, TRACE_ID, 16);
    memcpy(s->span_id, SPAN_A, 8);
    struct sbuf out;
    sb_init(&out, QUERY_MAX_BODY);
    jaeger_render_trace(&out, batch);
    json_t *t = json_loads(out.p, 0, NULL);
    assert_non_null(t);
    json_t *p1 = json_object_get(json_object_get(t, "processes"), "p1");
    assert_string_equal(json_string_value(json_object_get(p1, "serviceName")), "unknown_service");
    assert_int_equal(json_array_size(json_object_get(p1, "tags")), 0);
    json_decref(t);
    sb_free(&out);
    span_batch_destroy(batch);
}

/* ----- end to end over a real store ------------------------------------------------------- */

struct e2e {
    char dir[64];
    char path[128];
    struct store *st;
    uint64_t now_ns;
};

static const uint8_t E2E_T1[16] = {[15] = 0x01, [14] = 0xab}; /* short id "ab01" */
static const uint8_t E2E_T2[16] = {0x11, 0x22, [15] = 0x02};
static const uint8_t E2E_T3[16] = {0x33, [15] = 0x03};

/* Adds one span; resources are per call so every span has its own, as decoders produce. */
static struct span *e2e_span(struct span_batch *b, const uint8_t trace[16], uint8_t id,
                             uint8_t parent, const char *service, const char *name,
                             enum span_kind kind, uint64_t start_ns, uint64_t dur_ns)
{
    struct resource *r = arena_alloc(b->arena, sizeof *r);
    attr_str(b->arena, attrs_alloc(b->arena, &r->attrs, 1), "service.name", service);
    struct span *s = span_batch_add(b);
    memcpy(s->trace_id, trace, 16);
    s->span_id[7] = id;
    if (parent) {
        s->parent_span_id[7] = parent;
        s->has_parent = true;
    }
    s->name = ms(b->arena, name);
    s->kind = kind;
    s->start_unix_nano = start_ns;
    s->end_unix_nano = start_ns + dur_ns;
    s->resource = r;
    return s;
}

static int e2e_setup(void **state)
{
    struct e2e *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->st = test_store_create(e->dir, e->path, "test_query");
    query_now_us = fake_now;
    /* Data a minute before the fake "now" so default windows include it. */
    e->now_ns = (uint64_t)FAKE_NOW_US * 1000 - 60 * UINT64_C(1000000000);

    struct span_batch *b = span_batch_create();
    uint64_t t = e->now_ns;
    /* T1: frontend GET /users (server, 10ms) -> backend SELECT (client of db, 4ms) */
    struct span *s =
        e2e_span(b, E2E_T1, 1, 0, "frontend", "GET /users", SPAN_KIND_SERVER, t, 10000000);
    struct attr *at = attrs_alloc(b->arena, &s->attrs, 2);
    attr_str(b->arena, &at[0], "http.method", "GET");
    at[1].key = ms(b->arena, "http.status_code");
    at[1].value.type = VALUE_INT;
    at[1].value.u.i = 200;
    e2e_span(b, E2E_T1, 2, 1, "frontend", "call backend", SPAN_KIND_CLIENT, t + 1000000, 6000000);
    s = e2e_span(b, E2E_T1, 3, 2, "backend", "SELECT users", SPAN_KIND_SERVER, t + 2000000,
                 4000000);
    /* T2: frontend POST /orders fails (status ERROR), 200ms */
    s = e2e_span(b, E2E_T2, 1, 0, "frontend", "POST /orders", SPAN_KIND_SERVER, t + 5000000,
                 200000000);
    s->status_code = STATUS_ERROR;
    at = attrs_alloc(b->arena, &s->attrs, 1);
    attr_str(b->arena, &at[0], "http.method", "POST");
    /* T3: backend internal job, 1ms */
    e2e_span(b, E2E_T3, 1, 0, "backend", "cleanup", SPAN_KIND_INTERNAL, t + 7000000, 1000000);

    struct span_batch *batches[] = {b};
    assert_int_equal(store_put_batches(e->st, batches, 1), 0);
    span_batch_destroy(b);
    *state = e;
    return 0;
}

static int e2e_teardown(void **state)
{
    struct e2e *e = *state;
    test_store_destroy(e->st, e->dir);
    free(e);
    return 0;
}

static void expect_strings(json_t *data, const char *const *want, size_t n)
{
    assert_true(json_is_array(data));
    if (json_array_size(data) != n) {
        char *d = json_dumps(data, 0);
        fail_msg("got %s, want %zu items", d, n);
    }
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(data, i)), want[i]);
}

static void test_e2e_services_operations(void **state)
{
    struct e2e *e = *state;
    int status;
    json_t *j = get(e->st, "/api/services", NULL, &status);
    assert_int_equal(status, 200);
    check_envelope(j, 0);
    static const char *const services[] = {"backend", "frontend"};
    expect_strings(json_object_get(j, "data"), services, 2);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 2);
    json_decref(j);

    j = get(e->st, "/api/services/frontend/operations", NULL, &status);
    assert_int_equal(status, 200);
    check_envelope(j, 0);
    static const char *const ops[] = {"GET /users", "POST /orders", "call backend"};
    expect_strings(json_object_get(j, "data"), ops, 3);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 3);
    json_decref(j);

    j = get(e->st, "/api/services/nobody/operations", NULL, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);

    j = get(e->st, "/api/operations", "service=frontend&spanKind=server", &status);
    assert_int_equal(status, 200);
    check_envelope(j, 0);
    json_t *data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(data, 0), "name")),
                        "GET /users");
    assert_string_equal(json_string_value(json_object_get(json_array_get(data, 0), "spanKind")),
                        "server");
    json_decref(j);

    j = get(e->st, "/api/operations", "service=frontend", &status);
    assert_int_equal(status, 200);
    data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 3);
    size_t i;
    json_t *op;
    json_array_foreach(data, i, op)
    {
        const char *name = json_string_value(json_object_get(op, "name"));
        const char *kind = json_string_value(json_object_get(op, "spanKind"));
        assert_string_equal(kind, strcmp(name, "call backend") == 0 ? "client" : "server");
    }
    json_decref(j);
}

static void test_e2e_trace_by_id(void **state)
{
    struct e2e *e = *state;
    int status;
    json_t *j = get(e->st, "/api/traces/0000000000000000000000000000ab01", NULL, &status);
    assert_int_equal(status, 200);
    check_envelope(j, 0);
    json_t *data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 1);
    json_t *t = json_array_get(data, 0);
    assert_string_equal(json_string_value(json_object_get(t, "traceID")),
                        "0000000000000000000000000000ab01");
    json_t *spans = json_object_get(t, "spans");
    assert_int_equal(json_array_size(spans), 3);
    /* Sorted by start; the backend span is p2 and a CHILD_OF its client parent. */
    json_t *s3 = json_array_get(spans, 2);
    assert_string_equal(json_string_value(json_object_get(s3, "operationName")), "SELECT users");
    json_t *ref = json_array_get(json_object_get(s3, "references"), 0);
    assert_string_equal(json_string_value(json_object_get(ref, "refType")), "CHILD_OF");
    assert_string_equal(json_string_value(json_object_get(ref, "spanID")), "0000000000000002");
    assert_int_equal(json_object_size(json_object_get(t, "processes")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(spans, 0), "duration")),
                     10000);
    json_decref(j);

    /* The short form of the same ID. */
    j = get(e->st, "/api/traces/ab01", NULL, &status);
    assert_int_equal(status, 200);
    assert_int_equal(
        json_array_size(json_object_get(json_array_get(json_object_get(j, "data"), 0), "spans")),
        3);
    json_decref(j);

    j = get(e->st, "/api/traces/FFFF", "start=1&end=2&raw=true", &status);
    assert_int_equal(status, 404);
    check_envelope(j, 404);
    assert_string_equal(error_msg(j), "trace not found");
    json_decref(j);
}

/* Runs a search and returns the sorted list of trace IDs found, comma-separated. */
static void search(struct e2e *e, const char *qs, const char *want)
{
    int status;
    json_t *j = get(e->st, "/api/traces", qs, &status);
    if (status != 200) fail_msg("%s: status %d", qs, status);
    check_envelope(j, 0);
    json_t *data = json_object_get(j, "data");
    char got[512] = "";
    const char *ids[16];
    size_t n = json_array_size(data);
    assert_true(n < 16);
    for (size_t i = 0; i < n; i++)
        ids[i] = json_string_value(json_object_get(json_array_get(data, i), "traceID"));
    /* sort for comparison; the store's order is most recent first */
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            if (strcmp(ids[k], ids[i]) < 0) {
                const char *tmp = ids[i];
                ids[i] = ids[k];
                ids[k] = tmp;
            }
    for (size_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "",
                 ids[i] + 28); /* last 4 hex digits are enough to tell them apart */
    if (strcmp(got, want) != 0) fail_msg("search %s: got [%s], want [%s]", qs, got, want);
    json_decref(j);
}

static void test_e2e_search(void **state)
{
    struct e2e *e = *state;
    search(e, "service=frontend", "ab01,0002");
    search(e, "service=backend", "ab01,0003");
    search(e, "service=frontend&operation=GET /users", "ab01");
    search(e, "service=frontend&operation=nope", "");
    search(e, "service=nobody", "");
    search(e, "service=frontend&tag=http.method:POST", "0002");
    search(e, "service=frontend&tags={\"http.method\":\"GET\"}", "ab01");
    search(e, "service=frontend&tag=http.status_code:200", "ab01");
    search(e, "service=frontend&tag=http.method:GET&tag=http.status_code:500", "");
    search(e, "service=frontend&tag=error:true", "0002");
    search(e, "service=frontend&tag=span.kind:client", "ab01");
    search(e, "service=frontend&minDuration=100ms", "0002");
    search(e, "service=frontend&maxDuration=50ms", "ab01");
    search(e, "service=frontend&minDuration=7ms&maxDuration=50ms", "ab01");
    search(e, "service=frontend&limit=1", "0002"); /* most recent first */
    search(e, "service=frontend&lookback=1s", ""); /* data is a minute old */
    search(e, "service=frontend&lookback=2m", "ab01,0002");
    search(e, "service=frontend&end=1000", "");

    /* traceID= fetches exactly those, reporting the missing ones in errors. */
    int status;
    json_t *j = get(e->st, "/api/traces", "traceID=ab01&traceID=ffff", &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(j, "data")), 1);
    json_t *errors = json_object_get(j, "errors");
    assert_int_equal(json_array_size(errors), 1);
    json_t *e0 = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "msg")), "trace not found");
    assert_string_equal(json_string_value(json_object_get(e0, "traceID")),
                        "0000000000000000000000000000ffff");
    assert_null(json_object_get(e0, "code"));
    json_decref(j);
}

static void test_e2e_dependencies(void **state)
{
    struct e2e *e = *state;
    int status;
    json_t *j = get(e->st, "/api/dependencies", NULL, &status);
    assert_int_equal(status, 200);
    check_envelope(j, 0);
    json_t *data = json_object_get(j, "data");
    if (json_array_size(data) != 1) {
        char *d = json_dumps(j, 0);
        fail_msg("dependencies: %s", d);
    }
    json_t *d0 = json_array_get(data, 0);
    assert_string_equal(json_string_value(json_object_get(d0, "parent")), "frontend");
    assert_string_equal(json_string_value(json_object_get(d0, "child")), "backend");
    assert_int_equal(json_integer_value(json_object_get(d0, "callCount")), 1);
    json_decref(j);

    j = get(e->st, "/api/dependencies", "service=nobody", &status);
    assert_int_equal(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);
    j = get(e->st, "/api/dependencies", "service=backend", &status);
    assert_int_equal(json_array_size(json_object_get(j, "data")), 1);
    json_decref(j);

    /* A window that ends before the data. */
    char qs[64];
    snprintf(qs, sizeof qs, "endTs=%lld&lookback=1000", (long long)(FAKE_NOW_US / 1000 - 3600000));
    j = get(e->st, "/api/dependencies", qs, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_duration),     cmocka_unit_test(test_param_errors),
        cmocka_unit_test(test_routes_not_ours),    cmocka_unit_test(test_trace_params),
        cmocka_unit_test(test_json_writers),       cmocka_unit_test(test_render_trace),
        cmocka_unit_test(test_render_no_resource),
    };
    const struct CMUnitTest e2e[] = {
        cmocka_unit_test(test_e2e_services_operations),
        cmocka_unit_test(test_e2e_trace_by_id),
        cmocka_unit_test(test_e2e_search),
        cmocka_unit_test(test_e2e_dependencies),
    };
    int failed = cmocka_run_group_tests_name("query", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("query_e2e", e2e, e2e_setup, e2e_teardown);
    return failed ? 1 : 0;
}
