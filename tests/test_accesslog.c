/*
 * test_accesslog.c: access-log ingest end to end below HTTP: the Envoy/Istio JSON decoder
 * (collector/accesslog.c: every field of the Istio default-format fixture, the untyped Envoy
 * form, bad lines, caps, body shapes, RFC 3339 times), the store (storage: put, find by trace /
 * service / errors / window / limit, retention, migration of a v2 file), GET /api/logs
 * (query/logs.c: parameters and body) and the RED mapping (collector/red*.c: Istio labels from
 * records). Each store test works in a fresh temporary directory.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>
#include <zstd.h>

#include "accesslog.h"
#include "query.h"
#include "query_int.h"
#include "red.h"
#include "storage_int.h"
#include "test_util.h"

#define SEC INT64_C(1000000)

static int decode(const char *body, const struct decode_limits *lim, struct span_batch **out,
                  char *err, size_t errlen)
{
    return test_decode(accesslog_decode_json, body, strlen(body), lim, out, err, errlen);
}

#define assert_str assert_alog_str /* test_util.h */

static void hex_to(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* ----- decoder ---------------------------------------------------------------------------- */

static void test_istio_fixture(void **state)
{
    (void)state;
    size_t len;
    char *body = test_read_fixture("accesslog", "istio_default.ndjson", &len);
    struct span_batch *b;
    char err[256];
    assert_int_equal(decode(body, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_logs, 2);
    assert_int_equal(b->n_spans, 0);
    assert_int_equal(b->rejected, 0);

    const struct access_log *l = &b->logs[0];
    assert_int_equal(l->time_unix_nano, UINT64_C(1795766400123000000)); /* 2026-11-27T08:00:00.123Z */
    assert_str(l, ALOG_SERVICE, "unknown_service"); /* outbound, no service field */
    assert_str(l, ALOG_METHOD, "GET");
    assert_str(l, ALOG_PATH, "/reviews/0?x=1");
    assert_str(l, ALOG_PROTOCOL, "HTTP/1.1");
    assert_int_equal(l->response_code, 200);
    assert_str(l, ALOG_RESPONSE_FLAGS, "-");
    assert_str(l, ALOG_RESPONSE_CODE_DETAILS, "via_upstream");
    assert_str(l, ALOG_CONNECTION_TERMINATION_DETAILS, NULL);
    assert_str(l, ALOG_UPSTREAM_TRANSPORT_FAILURE_REASON, NULL);
    assert_int_equal(l->bytes_received, 0);
    assert_int_equal(l->bytes_sent, 295);
    assert_int_equal(l->duration_ms, 12);
    assert_int_equal(l->upstream_service_time_ms, 11);
    assert_str(l, ALOG_X_FORWARDED_FOR, NULL);
    assert_str(l, ALOG_USER_AGENT, "curl/8.0");
    assert_str(l, ALOG_REQUEST_ID, "5c3f6e1a-1111-4d2b-9a7c-000000000001");
    assert_str(l, ALOG_AUTHORITY, "reviews:9080");
    assert_str(l, ALOG_UPSTREAM_HOST, "10.0.0.7:9080");
    assert_str(l, ALOG_UPSTREAM_CLUSTER, "outbound|9080||reviews.default.svc.cluster.local");
    assert_str(l, ALOG_UPSTREAM_LOCAL_ADDRESS, "10.0.0.5:40000");
    assert_str(l, ALOG_DOWNSTREAM_LOCAL_ADDRESS, "10.96.0.10:9080");
    assert_str(l, ALOG_DOWNSTREAM_REMOTE_ADDRESS, "10.0.0.5:51234");
    assert_str(l, ALOG_REQUESTED_SERVER_NAME, NULL);
    assert_str(l, ALOG_ROUTE_NAME, "default");
    assert_int_equal(l->direction, ALOG_DIRECTION_OUTBOUND);
    uint8_t tid[16], sid[8];
    hex_to("4bf92f3577b34da6a3ce929d0e0e4736", tid, 16);
    hex_to("00f067aa0ba902b7", sid, 8);
    assert_true(l->has_trace_id);
    assert_memory_equal(l->trace_id, tid, 16);
    assert_true(l->has_span_id);
    assert_memory_equal(l->span_id, sid, 8);
    /* The raw line is the line as sent. */
    const char *nl = strchr(body, '\n');
    assert_int_equal(l->str[ALOG_RAW].len, (size_t)(nl - body));
    assert_memory_equal(l->str[ALOG_RAW].ptr, body, l->str[ALOG_RAW].len);
    assert_false(access_log_is_error(l));

    l = &b->logs[1];
    assert_int_equal(l->direction, ALOG_DIRECTION_INBOUND);
    assert_str(l, ALOG_SERVICE, "reviews"); /* inbound|9080|| has no host: from :authority */
    assert_int_equal(l->response_code, 503);
    assert_str(l, ALOG_RESPONSE_FLAGS, "UF,URX");
    assert_str(l, ALOG_UPSTREAM_TRANSPORT_FAILURE_REASON, "delayed connect error: 111");
    assert_str(l, ALOG_REQUESTED_SERVER_NAME,
               "outbound_.9080_._.reviews.default.svc.cluster.local");
    assert_int_equal(l->upstream_service_time_ms, -1);
    hex_to("80f198ee56343ba864fe8b2a57d3eff7", tid, 16);
    hex_to("e457b5a2e4d86bd1", sid, 8);
    assert_true(l->has_trace_id);
    assert_memory_equal(l->trace_id, tid, 16);
    assert_memory_equal(l->span_id, sid, 8);
    assert_true(access_log_is_error(l));
    span_batch_destroy(b);
    free(body);
}

/* Envoy's untyped JSON (every value a string, "-" for absent), a 64-bit B3 id, aliases. */
static void test_untyped_envoy(void **state)
{
    (void)state;
    const char *body =
        "{\"start_time\":\"2026-11-27T09:00:00+01:00\",\"method\":\"POST\",\"path\":\"-\","
        "\"response_code\":\"0\",\"response_flags\":\"UH\",\"bytes_received\":\"12\","
        "\"bytes_sent\":\"0\",\"duration\":\"7\",\"upstream_service_time\":\"3, 4\","
        "\"upstream_cluster\":\"inbound|8080||ratings.prod.svc.cluster.local\","
        "\"x_b3_traceid\":\"00000000000000FF\",\"spanId\":\"zz\",\"istio.canonical_service\":"
        "\"ratings-v1\",\"source_workload\":\"productpage-v1\",\"source_namespace\":\"prod\","
        "\"source_principal\":\"spiffe://cluster.local/ns/prod/sa/pp\","
        "\"destination_workload\":\"ratings-v1\",\"destination_workload_namespace\":\"prod\","
        "\"extra\":[1,2,{\"x\":null}]}\r\n";
    struct span_batch *b;
    char err[256];
    assert_int_equal(decode(body, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_logs, 1);
    const struct access_log *l = &b->logs[0];
    assert_int_equal(l->time_unix_nano, UINT64_C(1795766400000000000)); /* 08:00Z */
    assert_str(l, ALOG_PATH, NULL);
    assert_int_equal(l->response_code, 0);
    assert_int_equal(l->bytes_received, 12);
    assert_int_equal(l->bytes_sent, 0);
    assert_int_equal(l->duration_ms, 7);
    assert_int_equal(l->upstream_service_time_ms, -1); /* retries: lenient, absent */
    assert_str(l, ALOG_SERVICE, "ratings-v1");
    assert_str(l, ALOG_SOURCE_WORKLOAD, "productpage-v1");
    assert_str(l, ALOG_SOURCE_NAMESPACE, "prod");
    assert_str(l, ALOG_SOURCE_PRINCIPAL, "spiffe://cluster.local/ns/prod/sa/pp");
    assert_str(l, ALOG_DESTINATION_WORKLOAD, "ratings-v1");
    assert_str(l, ALOG_DESTINATION_NAMESPACE, "prod");
    assert_true(l->has_trace_id);
    uint8_t tid[16] = {0};
    tid[15] = 0xff;
    assert_memory_equal(l->trace_id, tid, 16);
    assert_false(l->has_span_id); /* "zz" ignored */
    assert_true(access_log_is_error(l)); /* code 0 and UH */
    /* CRLF trimmed from the raw line. */
    assert_int_equal(l->str[ALOG_RAW].len, strlen(body) - 2);
    span_batch_destroy(b);
}

/* Service fallbacks and direction. */
static void test_service_direction(void **state)
{
    (void)state;
    static const struct {
        const char *fields;
        const char *service;
        enum alog_direction dir;
    } cases[] = {
        {"\"upstream_cluster\":\"inbound|9080||reviews.default.svc.cluster.local\"", "reviews",
         ALOG_DIRECTION_INBOUND},
        {"\"upstream_cluster\":\"inbound|9080||\",\"authority\":\"details:9080\"", "details",
         ALOG_DIRECTION_INBOUND},
        {"\"upstream_cluster\":\"inbound|9080||\",\"authority\":\"10.0.0.1:9080\"",
         "unknown_service", ALOG_DIRECTION_INBOUND},
        {"\"upstream_cluster\":\"InboundPassthroughCluster\",\"destination_workload\":\"db\"",
         "db", ALOG_DIRECTION_INBOUND},
        {"\"upstream_cluster\":\"outbound|80||web.x.svc.cluster.local\",\"source_workload\":"
         "\"pp\"", "pp", ALOG_DIRECTION_OUTBOUND},
        {"\"upstream_cluster\":\"PassthroughCluster\"", "unknown_service",
         ALOG_DIRECTION_OUTBOUND},
        {"\"upstream_cluster\":\"BlackHoleCluster\",\"service\":\"gw\"", "gw",
         ALOG_DIRECTION_OUTBOUND},
        {"\"upstream_cluster\":\"backend\",\"service_name\":\"edge\"", "edge",
         ALOG_DIRECTION_UNKNOWN},
        {"\"service.name\":\"a\",\"service\":\"b\"", "b", ALOG_DIRECTION_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"start_time\":\"2026-01-01T00:00:00Z\",%s}",
                 cases[i].fields);
        struct span_batch *b;
        char err[256];
        assert_int_equal(decode(body, NULL, &b, err, sizeof err), 0);
        if (b->n_logs != 1) fail_msg("case %zu: %s", i, b->reject_reason);
        assert_str(&b->logs[0], ALOG_SERVICE, cases[i].service);
        assert_int_equal(b->logs[0].direction, cases[i].dir);
        span_batch_destroy(b);
    }
}

/* Bad lines are refused alone; undecodable bodies are -EINVAL. */
static void test_bad_lines(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int rc;
        uint32_t accepted, rejected;
        const char *reason; /* substring of the first reason, or of err for rc != 0 */
    } cases[] = {
        {"", 0, 0, 0, NULL},
        {"\n\n  \n", 0, 0, 0, NULL},
        {"hello\n", -EINVAL, 0, 0, "not NDJSON or JSON"},
        {"42", -EINVAL, 0, 0, "not NDJSON or JSON"},
        {"[{\"start_time\":", -EINVAL, 0, 0, "invalid JSON array"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\"}\nnot json\n", 0, 1, 1,
         "line 2: invalid JSON"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\"}\n[1]\n", 0, 1, 1, "line 2: not a JSON object"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\"}\n\n\"x\"\n", 0, 1, 1,
         "line 3: not a JSON object"},
        {"{\"method\":\"GET\"}", 0, 0, 1, "line 1: start_time: missing"},
        {"{\"start_time\":null}", 0, 0, 1, "line 1: start_time: missing"},
        {"{\"start_time\":12}", 0, 0, 1, "line 1: start_time: expected an RFC 3339 string"},
        {"{\"start_time\":\"yesterday\"}", 0, 0, 1, "line 1: start_time: not an RFC 3339 time"},
        {"{\"start_time\":\"2026-13-01T00:00:00Z\"}", 0, 0, 1, "not an RFC 3339 time"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"method\":5}", 0, 0, 1,
         "line 1: method: expected a string"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"response_code\":\"abc\"}", 0, 0, 1,
         "line 1: response_code: integer out of range or not an integer"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"response_code\":1000}", 0, 0, 1,
         "response_code"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"bytes_sent\":\"1-\"}", 0, 0, 1, "bytes_sent"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"bytes_sent\":-1}", 0, 1, 0, NULL},
        {"{\"msec\":\"soon\"}", 0, 0, 1, "line 1: msec: expected decimal seconds"},
        {"{\"msec\":\"1.5\",\"request_time\":\"2.0\"}", 0, 0, 1, "msec: out of range"},
        {"{\"msec\":\"1.5\",\"request_time\":\"0,1\"}", 0, 0, 1,
         "request_time: expected decimal seconds"},
        {"{\"start_time_ms\":\"12x\"}", 0, 0, 1, "start_time_ms: integer out of range"},
        {"{\"start_time_ms\":1e3}", 0, 0, 1, "start_time_ms: expected an integer"},
        {"{\"start_time_ms\":-1}", 0, 0, 1, "start_time: missing"},
        {"{\"start_time_ms\":1,\"frontend_name\":7}", 0, 0, 1,
         "frontend_name: expected a string"},
        {"{\"start_time_ms\":1,\"backend_name\":[]}", 0, 0, 1, "backend_name: expected a string"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"duration\":1.5}", 0, 0, 1,
         "duration: expected an integer"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"bytes_received\":true}", 0, 0, 1,
         "bytes_received"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"method\":\"\\u0000\"}", 0, 0, 1,
         "invalid JSON"}, /* NUL in a string: refused by the parser */
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"user_agent\":\"\xff\"}", 0, 0, 1,
         "invalid JSON"}, /* invalid UTF-8 */
        /* numbers longer than the scanner's stack copy (found by fuzz_accesslog) */
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"x\":"
         "2222222222222222222222222222253950e22222222222222122222222222222222}",
         0, 0, 1, "line 1: invalid JSON"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"x\":"
         "1.00000000000000000000000000000000000000000000000000000000000000000001e-5}",
         0, 1, 0, NULL},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"x\":"
         "100000000000000000000000000000000000000000000000000000000000000000000e300}",
         0, 0, 1, "line 1: invalid JSON"},
        {"[{\"start_time\":\"2026-01-01T00:00:00Z\"},5,{\"x\":1}]", 0, 1, 2,
         "record 2: not a JSON object"},
        {"{\"start_time\":\"2026-01-01T00:00:00Z\",\"a\":1}\n{\"start_time\":\"x\"}\n"
         "{\"start_time\":\"2026-01-01T00:00:00Z\"}",
         0, 2, 1, "line 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct span_batch *b;
        char err[256];
        int rc = decode(cases[i].body, NULL, &b, err, sizeof err);
        if (rc != cases[i].rc) fail_msg("case %zu: rc %d, want %d (%s)", i, rc, cases[i].rc, err);
        if (rc == 0) {
            if (b->n_logs != cases[i].accepted || b->rejected != cases[i].rejected)
                fail_msg("case %zu: %u accepted %u rejected (%s)", i, b->n_logs, b->rejected,
                         b->reject_reason ? b->reject_reason : "");
            if (cases[i].reason &&
                (!b->reject_reason || !strstr(b->reject_reason, cases[i].reason)))
                fail_msg("case %zu: reason '%s', want '%s'", i,
                         b->reject_reason ? b->reject_reason : "(none)", cases[i].reason);
        } else if (cases[i].reason && !strstr(err, cases[i].reason)) {
            fail_msg("case %zu: err '%s', want '%s'", i, err, cases[i].reason);
        }
        span_batch_destroy(b);
    }
}

static void test_caps(void **state)
{
    (void)state;
    struct decode_limits lim;
    decode_limits_default(&lim);
    lim.max_spans = 3;
    lim.max_string = 8;
    lim.max_attrs = 3;
    const char *ok = "{\"start_time\":\"2026-01-01T00:00:00Z\"}\n";
    char body[1024] = "";
    for (int i = 0; i < 3; i++) strcat(body, ok);
    struct span_batch *b;
    char err[256];
    assert_int_equal(decode(body, &lim, &b, err, sizeof err), 0);
    assert_int_equal(b->n_logs, 3);
    span_batch_destroy(b);
    strcat(body, ok);
    assert_int_equal(decode(body, &lim, &b, err, sizeof err), -E2BIG);
    assert_non_null(strstr(err, "more than 3"));
    span_batch_destroy(b);
    /* The same cap for a JSON array. */
    assert_int_equal(decode("[{},{},{},{}]", &lim, &b, err, sizeof err), -E2BIG);
    span_batch_destroy(b);
    /* String and member caps refuse the record alone. */
    assert_int_equal(decode("{\"start_time\":\"2026-01-01T00:00:00Z\",\"method\":\"123456789\"}\n"
                            "{\"start_time\":\"2026-01-01T00:00:00Z\",\"method\":\"12345678\"}",
                            &lim, &b, err, sizeof err),
                     0);
    assert_int_equal(b->n_logs, 1);
    assert_int_equal(b->rejected, 1);
    assert_non_null(strstr(b->reject_reason, "line 1: method: string of 9 bytes, max 8"));
    span_batch_destroy(b);
    assert_int_equal(decode("{\"start_time\":\"2026-01-01T00:00:00Z\",\"a\":1,\"b\":2,\"c\":3}",
                            &lim, &b, err, sizeof err),
                     0);
    assert_int_equal(b->rejected, 1);
    assert_non_null(strstr(b->reject_reason, "4 members, max 3"));
    span_batch_destroy(b);
    /* A line over ACCESSLOG_MAX_LINE is refused without parsing; the next one still counts. */
    size_t big = ACCESSLOG_MAX_LINE + 100;
    char *huge = malloc(big + 64);
    assert_non_null(huge);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    strcpy(huge + big, "\n{\"start_time\":\"2026-01-01T00:00:00Z\"}");
    assert_int_equal(decode(huge, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_logs, 1);
    assert_int_equal(b->rejected, 1);
    assert_non_null(strstr(b->reject_reason, "line 1: line of"));
    span_batch_destroy(b);
    free(huge);
}

static void test_body_shapes(void **state)
{
    (void)state;
    struct span_batch *b;
    char err[256];
    /* A JSON array: elements re-serialised as their raw text. */
    assert_int_equal(decode(" [ {\"start_time\" : \"2026-01-01T00:00:00Z\", \"method\": \"GET\"}, "
                            "null ]",
                            NULL, &b, err, sizeof err),
                     0);
    assert_int_equal(b->n_logs, 1);
    assert_int_equal(b->rejected, 1); /* null is not a record */
    assert_str(&b->logs[0], ALOG_RAW,
               "{\"start_time\":\"2026-01-01T00:00:00Z\",\"method\":\"GET\"}");
    span_batch_destroy(b);
    /* One pretty-printed object (application/json). */
    assert_int_equal(decode("{\n  \"start_time\": \"2026-01-01T00:00:00Z\",\n  \"duration\": 5\n}\n",
                            NULL, &b, err, sizeof err),
                     0);
    assert_int_equal(b->n_logs, 1);
    assert_int_equal(b->logs[0].duration_ms, 5);
    span_batch_destroy(b);
}

/* nginx (README log_format) and HAProxy (README log-format) lines, field by field. */
static void test_nginx_haproxy(void **state)
{
    (void)state;
    static const struct {
        const char *fixture;
        size_t index;
        const char *def_service; /* alog_defaults.service (NULL: none) */
        enum alog_direction def_dir;
        uint64_t time_ns;
        int64_t code, duration, upstream, received, sent;
        const char *service, *dest, *flags, *request_id, *xff;
        enum alog_direction dir;
        bool traced, error;
    } cases[] = {
        /* msec 1795766401.250 - request_time 0.250; retries summed; "" absent */
        {"nginx.ndjson", 0, NULL, 0, UINT64_C(1795766401000000000), 200, 250, 240, 120, 512,
         "unknown_service", "backend", "-", "7d1c0a4e9b2f4e21a0c3d5e6f7a8b9c0", NULL,
         ALOG_DIRECTION_OUTBOUND, true, false},
        {"nginx.ndjson", 0, "edge-nginx", 0, UINT64_C(1795766401000000000), 200, 250, 240, 120,
         512, "edge-nginx", "backend", "-", "7d1c0a4e9b2f4e21a0c3d5e6f7a8b9c0", NULL,
         ALOG_DIRECTION_OUTBOUND, true, false},
        {"nginx.ndjson", 1, "edge-nginx", 0, UINT64_C(1795766402000000000), 502, 7, 6, 300, 150,
         "edge-nginx", "payments", "-", "8e2d1b5f0c3a4f32b1d4e6f708192a3b", "10.1.1.1",
         ALOG_DIRECTION_OUTBOUND, false, true},
        /* served by nginx itself: no upstream, direction unknown unless the transport says */
        {"nginx.ndjson", 2, "edge-nginx", 0, UINT64_C(1795766403000000000), 304, 0, -1, 90, 180,
         "edge-nginx", NULL, "-", "9f3e2c6a1d4b5a43c2e5f7081a2b3c4d", NULL,
         ALOG_DIRECTION_UNKNOWN, false, false},
        {"nginx.ndjson", 2, "edge-nginx", ALOG_DIRECTION_OUTBOUND, UINT64_C(1795766403000000000),
         304, 0, -1, 90, 180, "edge-nginx", NULL, "-", "9f3e2c6a1d4b5a43c2e5f7081a2b3c4d", NULL,
         ALOG_DIRECTION_OUTBOUND, false, false},
        /* HAProxy: frontend -> backend, "--" is a normal end */
        {"haproxy.ndjson", 0, NULL, 0, UINT64_C(1795766404000000000), 200, 35, 30, 210, 4096,
         "fe_web", "be_app", "-", "hap-1", NULL, ALOG_DIRECTION_OUTBOUND, true, false},
        {"haproxy.ndjson", 0, "lb", 0, UINT64_C(1795766404000000000), 200, 35, 30, 210, 4096,
         "lb", "be_app", "-", "hap-1", NULL, ALOG_DIRECTION_OUTBOUND, true, false},
        /* -1 = not reached: absent; termination state sC: failed */
        {"haproxy.ndjson", 1, NULL, 0, UINT64_C(1795766405000000000), 503, 5002, -1, 180, -1,
         "fe_web", "be_app", "sC", "hap-2", NULL, ALOG_DIRECTION_OUTBOUND, false, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *body = test_read_fixture("accesslog", cases[i].fixture, &len);
        struct alog_defaults d = {cases[i].def_service, cases[i].def_dir};
        struct decode_limits lim;
        decode_limits_default(&lim);
        struct span_batch *b = span_batch_create();
        char err[256];
        assert_int_equal(accesslog_decode_json_ex((const uint8_t *)body, len, &d, &lim, b, err,
                                                  sizeof err),
                         0);
        if (b->rejected) fail_msg("case %zu: %s", i, b->reject_reason);
        assert_true(b->n_logs > cases[i].index);
        const struct access_log *l = &b->logs[cases[i].index];
        if (l->time_unix_nano != cases[i].time_ns)
            fail_msg("case %zu: time %llu", i, (unsigned long long)l->time_unix_nano);
        if (l->response_code != cases[i].code || l->duration_ms != cases[i].duration ||
            l->upstream_service_time_ms != cases[i].upstream ||
            l->bytes_received != cases[i].received || l->bytes_sent != cases[i].sent)
            fail_msg("case %zu: code %lld duration %lld upstream %lld received %lld sent %lld", i,
                     (long long)l->response_code, (long long)l->duration_ms,
                     (long long)l->upstream_service_time_ms, (long long)l->bytes_received,
                     (long long)l->bytes_sent);
        assert_str(l, ALOG_SERVICE, cases[i].service);
        assert_str(l, ALOG_DESTINATION_SERVICE, cases[i].dest);
        assert_str(l, ALOG_RESPONSE_FLAGS, cases[i].flags);
        assert_str(l, ALOG_REQUEST_ID, cases[i].request_id);
        assert_str(l, ALOG_X_FORWARDED_FOR, cases[i].xff);
        if (l->direction != cases[i].dir) fail_msg("case %zu: direction %d", i, l->direction);
        assert_int_equal(l->has_trace_id, cases[i].traced);
        assert_int_equal(access_log_is_error(l), cases[i].error);
        assert_non_null(l->str[ALOG_RAW].ptr);
        span_batch_destroy(b);
        free(body);
    }
}

/* Decimal seconds and nginx's retry lists, and the field precedence rules. */
static void test_nginx_times(void **state)
{
    (void)state;
    static const struct {
        const char *fields;
        uint64_t time_ns;
        int64_t duration, upstream;
    } cases[] = {
        {"\"msec\":\"100.5\"", UINT64_C(100500000000), -1, -1},
        {"\"msec\":\"100.5\",\"request_time\":\"0.0004\"", UINT64_C(100500000000), 0, -1},
        {"\"msec\":\"100.5\",\"request_time\":\"0.0005\"", UINT64_C(100499000000), 1, -1},
        {"\"msec\":100.5,\"request_time\":0.25", UINT64_C(100250000000), 250, -1},
        /* msec wins over start_time; duration wins over request_time */
        {"\"start_time\":\"2026-01-01T00:00:00Z\",\"msec\":\"10\",\"request_time\":\"1\","
         "\"duration\":7",
         UINT64_C(9000000000), 7, -1},
        {"\"start_time\":\"1970-01-01T00:00:05Z\",\"start_time_ms\":1", UINT64_C(5000000000), -1,
         -1},
        {"\"start_time_ms\":\"1500\"", UINT64_C(1500000000), -1, -1},
        {"\"start_time_ms\":1,\"upstream_response_time\":\"0.010 : 0.020, -\"", 1000000, -1, 30},
        {"\"start_time_ms\":1,\"upstream_response_time\":\"-, -\"", 1000000, -1, -1},
        {"\"start_time_ms\":1,\"upstream_response_time\":\"x\"", 1000000, -1, -1},
        {"\"start_time_ms\":1,\"upstream_response_time\":\"0.5\",\"upstream_service_time\":2",
         1000000, -1, 2},
        {"\"start_time_ms\":1,\"duration\":\"-1\",\"request_time\":\"1.5\"", 1000000, 1500, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{%s}", cases[i].fields);
        struct span_batch *b;
        char err[256];
        assert_int_equal(decode(body, NULL, &b, err, sizeof err), 0);
        if (b->n_logs != 1) fail_msg("case %zu: %s", i, b->reject_reason);
        const struct access_log *l = &b->logs[0];
        if (l->time_unix_nano != cases[i].time_ns || l->duration_ms != cases[i].duration ||
            l->upstream_service_time_ms != cases[i].upstream)
            fail_msg("case %zu: time %llu duration %lld upstream %lld", i,
                     (unsigned long long)l->time_unix_nano, (long long)l->duration_ms,
                     (long long)l->upstream_service_time_ms);
        span_batch_destroy(b);
    }
}

static void test_rfc3339(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ns;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2026-11-27T08:00:00.123Z", INT64_C(1795766400123000000)},
        {"2026-11-27T08:00:00.123456789123Z", INT64_C(1795766400123456789)},
        {"2026-11-27t08:00:00z", INT64_C(1795766400000000000)},
        {"2026-11-27 10:30:00+02:30", INT64_C(1795766400000000000)},
        {"2026-11-27T03:00:00-05:00", INT64_C(1795766400000000000)},
        {"2024-02-29T00:00:00Z", INT64_C(1709164800000000000)},
        {"1969-12-31T23:59:59Z", -1},
        {"2026-11-27T08:00:00", -1},
        {"2026-11-27T08:00:00.Z", -1},
        {"2026-11-27T25:00:00Z", -1},
        {"2026-11-27T08:00:00+0200", -1},
        {"2026-11-27T08:00:00Zjunk", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = accesslog_parse_rfc3339(cases[i].s, strlen(cases[i].s));
        if (got != cases[i].ns) fail_msg("'%s': %lld, want %lld", cases[i].s, (long long)got,
                                         (long long)cases[i].ns);
    }
}

static void test_response_body(void **state)
{
    (void)state;
    char *out;
    size_t len;
    assert_int_equal(accesslog_encode_response(3, 0, "", &out, &len), 0);
    assert_string_equal(out, "{\"accepted\":3,\"rejected\":0,\"error\":null}");
    free(out);
    assert_int_equal(accesslog_encode_response(1, 2, "line 2: \"bad\"", &out, &len), 0);
    assert_string_equal(out, "{\"accepted\":1,\"rejected\":2,\"error\":\"line 2: \\\"bad\\\"\"}");
    assert_int_equal(len, strlen(out));
    free(out);
}

/* ----- store -------------------------------------------------------------------------------- */

#define T0 INT64_C(1795766400000000) /* 2026-11-27T08:00:00Z, µs */

/* A batch of n records of service svc, one per ms from t_us, trace id ending in trace_byte
 * (0 = untraced), every third a 503. */
static struct span_batch *make_logs(const char *svc, int n, int64_t t_us, uint8_t trace_byte)
{
    struct span_batch *b = span_batch_create();
    assert_non_null(b);
    for (int i = 0; i < n; i++) {
        struct access_log *l = span_batch_add_log(b);
        assert_non_null(l);
        l->time_unix_nano = (uint64_t)(t_us + i * 1000) * 1000;
        l->response_code = i % 3 == 2 ? 503 : 200;
        l->duration_ms = i;
        l->direction = ALOG_DIRECTION_INBOUND;
        l->str[ALOG_SERVICE] = (struct mstr){arena_strndup(b->arena, svc, strlen(svc)),
                                             (uint32_t)strlen(svc)};
        l->str[ALOG_RESPONSE_FLAGS] = (struct mstr){"-", 1};
        char line[128];
        int ln = snprintf(line, sizeof line, "{\"n\":%d,\"svc\":\"%s\"}", i, svc);
        l->str[ALOG_RAW] = (struct mstr){arena_strndup(b->arena, line, (size_t)ln), (uint32_t)ln};
        if (trace_byte) {
            l->has_trace_id = true;
            l->trace_id[0] = 0xaa; /* the high half differs from other traces' (key = low half) */
            l->trace_id[15] = trace_byte;
            l->has_span_id = true;
            l->span_id[7] = (uint8_t)(i + 1);
        }
    }
    return b;
}

struct sfix {
    char dir[64], path[128];
    struct store *st;
};

static int sfix_setup(void **state)
{
    struct sfix *f = calloc(1, sizeof *f);
    f->st = test_store_create(f->dir, f->path, "meshscope-alog");
    *state = f;
    return 0;
}

static int sfix_teardown(void **state)
{
    struct sfix *f = *state;
    test_store_destroy(f->st, f->dir);
    free(f);
    return 0;
}

static void test_store_put_find(void **state)
{
    struct sfix *f = *state;
    struct span_batch *batches[3] = {make_logs("reviews", 6, T0, 7), make_logs("ratings", 4, T0, 0),
                                     make_logs("reviews", 2, T0 + 10 * SEC, 8)};
    /* A span in the same call: both are committed together. */
    struct span *s = span_batch_add(batches[1]);
    s->trace_id[15] = 1;
    s->span_id[7] = 1;
    s->start_unix_nano = (uint64_t)T0 * 1000;
    s->end_unix_nano = s->start_unix_nano + 1000;
    assert_int_equal(store_put_batches(f->st, batches, 3), 0);
    struct store_stats stats;
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.logs_stored, 12);
    assert_int_equal(stats.spans_stored, 1);

    /* By trace: oldest first; another trace with the same key (low half) is filtered out. */
    struct span_batch *other = make_logs("reviews", 1, T0, 7);
    other->logs[0].trace_id[0] = 0xbb;
    assert_int_equal(store_put_batches(f->st, &other, 1), 0);
    uint8_t tid[16] = {0xaa};
    tid[15] = 7;
    struct log_query q = {.trace_id = tid};
    struct span_batch *out;
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 6);
    for (uint32_t i = 0; i < 6; i++) {
        const struct access_log *l = &out->logs[i];
        assert_int_equal(l->time_unix_nano, (uint64_t)(T0 + i * 1000) * 1000);
        assert_memory_equal(l->trace_id, tid, 16);
        assert_int_equal(l->span_id[7], i + 1);
        assert_int_equal(l->duration_ms, i);
        assert_int_equal(l->bytes_sent, -1);
        assert_int_equal(l->direction, ALOG_DIRECTION_INBOUND);
        assert_str(l, ALOG_SERVICE, "reviews");
        assert_str(l, ALOG_METHOD, NULL);
        char line[64];
        snprintf(line, sizeof line, "{\"n\":%u,\"svc\":\"reviews\"}", i);
        assert_str(l, ALOG_RAW, line);
    }
    span_batch_destroy(out);
    /* Trace + errors only. */
    q.errors_only = true;
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 2);
    assert_int_equal(out->logs[0].response_code, 503);
    span_batch_destroy(out);

    /* By service: newest first, window, errors, limit. */
    q = (struct log_query){.service = "reviews"};
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 9);
    assert_int_equal(out->logs[0].time_unix_nano, (uint64_t)(T0 + 10 * SEC + 1000) * 1000);
    span_batch_destroy(out);
    q.start_us = T0 + SEC;
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 2);
    span_batch_destroy(out);
    q = (struct log_query){.service = "reviews", .end_us = T0 + 2000, .limit = 2};
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 2);
    assert_int_equal(out->logs[0].time_unix_nano, (uint64_t)(T0 + 2000) * 1000);
    span_batch_destroy(out);
    q = (struct log_query){.service = "ratings", .errors_only = true};
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 1);
    assert_false(out->logs[0].has_trace_id);
    span_batch_destroy(out);
    q = (struct log_query){.service = "nobody"};
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 0);
    span_batch_destroy(out);
    /* Neither: the newest rows by receive order. */
    q = (struct log_query){.limit = 3};
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 3);
    span_batch_destroy(out);
    /* Trace + service. */
    q = (struct log_query){.trace_id = tid, .service = "ratings"};
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 0);
    span_batch_destroy(out);
    /* Logs-only services join the service list (they are services of the mesh). */
    char **svcs;
    assert_int_equal(store_list_services(f->st, &svcs), 0);
    bool found = false;
    for (char **p = svcs; *p; p++) found |= strcmp(*p, "ratings") == 0;
    assert_true(found);
    store_free_strings(svcs);
    for (int i = 0; i < 3; i++) span_batch_destroy(batches[i]);
    span_batch_destroy(other);
}

static int64_t sql_int(const char *path, const char *sql);

/* Retention deletes whole blocks of records received before the cutoff, a bounded number of
 * blocks per step (max_rows / 16, at least one), and counts their records. */
static void test_store_retention(void **state)
{
    struct sfix *f = *state;
    store_close(f->st);
    struct store_options o = {.path = f->path, .retention_us = 3600 * SEC};
    f->st = store_open(&o);
    assert_non_null(f->st);
    int64_t r0 = T0;
    store_test_set_clock(f->st, r0);
    struct span_batch *old[3];
    for (int i = 0; i < 3; i++) { /* three write calls: three blocks of 5, 4 and 3 records */
        old[i] = make_logs("reviews", 5 - i, T0 + i * SEC, 1);
        assert_int_equal(store_put_batches(f->st, &old[i], 1), 0);
    }
    store_test_set_clock(f->st, r0 + 2 * 3600 * SEC);
    struct span_batch *young = make_logs("reviews", 3, T0, 2);
    assert_int_equal(store_put_batches(f->st, &young, 1), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM access_log_blocks"), 4);
    uint64_t deleted;
    /* Bounded steps: max_rows 16 is one block per call, oldest first. */
    assert_int_equal(store_retention_step(f->st, r0 + 2 * 3600 * SEC, 16, &deleted), 0);
    assert_int_equal(deleted, 5);
    assert_int_equal(store_retention_step(f->st, r0 + 2 * 3600 * SEC, 16, &deleted), 0);
    assert_int_equal(deleted, 4);
    assert_int_equal(store_retention_step(f->st, r0 + 2 * 3600 * SEC, 2, &deleted), 0);
    assert_int_equal(deleted, 3);
    assert_int_equal(store_retention_step(f->st, r0 + 2 * 3600 * SEC, 16, &deleted), 0);
    assert_int_equal(deleted, 0);
    struct store_stats stats;
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.logs_deleted, 12);
    struct log_query q = {.service = "reviews"};
    struct span_batch *out;
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 3);
    assert_int_equal(out->logs[0].trace_id[15], 2);
    span_batch_destroy(out);
    for (int i = 0; i < 3; i++)
        span_batch_destroy(old[i]);
    span_batch_destroy(young);
}

/* Records feed the service-graph rollups (/api/graph, /api/dependencies) as RED counts them. */
static void test_store_graph(void **state)
{
    struct sfix *f = *state;
    static const struct {
        const char *fixture, *service;
    } in[] = {{"istio_default.ndjson", NULL}, {"nginx.ndjson", "edge-nginx"}, {"haproxy.ndjson", NULL}};
    struct span_batch *b[3];
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        char *body = test_read_fixture("accesslog", in[i].fixture, &len);
        struct alog_defaults d = {in[i].service, ALOG_DIRECTION_UNKNOWN};
        char err[256];
        b[i] = span_batch_create();
        assert_int_equal(accesslog_decode_json_ex((const uint8_t *)body, len, &d, NULL, b[i], err,
                                                  sizeof err),
                         0);
        assert_int_equal(b[i]->rejected, 0);
        free(body);
    }
    /* Two write calls: the rollup rows of the second merge into the first's. Records with a
     * request id count once their wait for the other proxy's record is over. */
    store_test_set_clock(f->st, T0);
    assert_int_equal(store_put_batches(f->st, b, 2), 0);
    assert_int_equal(store_put_batches(f->st, b + 2, 1), 0);
    assert_int_equal(store_put_batches(f->st, b + 2, 1), 0);
    store_test_set_clock(f->st, T0 + 11 * SEC);
    assert_int_equal(store_flush_graph(f->st), 0);
    struct graph *g;
    assert_int_equal(store_graph(f->st, T0 - 3600 * SEC, T0 + 3600 * SEC, NULL, &g), 0);
    static const struct {
        const char *client, *server, *conn;
        uint64_t requests, errors;
    } want[] = {
        {"edge-nginx", "backend", "", 1, 0},
        {"edge-nginx", "payments", "", 1, 1},
        {"fe_web", "be_app", "", 4, 2},
        {"unknown_service", "reviews", "", 1, 0},
        {"unknown", "reviews", "virtual_node", 1, 1},
    };
    assert_int_equal(g->n_edges, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        bool found = false;
        for (size_t e = 0; e < g->n_edges && !found; e++) {
            const struct graph_edge *x = &g->edges[e];
            if (strcmp(g->nodes[x->source].name, want[i].client) ||
                strcmp(g->nodes[x->target].name, want[i].server))
                continue;
            found = true;
            assert_string_equal(x->connection_type, want[i].conn);
            if (x->red.requests != want[i].requests || x->red.errors != want[i].errors)
                fail_msg("%s -> %s: %llu requests %llu errors", want[i].client, want[i].server,
                         (unsigned long long)x->red.requests, (unsigned long long)x->red.errors);
        }
        if (!found) fail_msg("no edge %s -> %s", want[i].client, want[i].server);
    }
    /* fe_web -> be_app: 35 ms and 5002 ms, twice each: p50 within the rollup's ~19%. */
    for (size_t e = 0; e < g->n_edges; e++)
        if (!strcmp(g->nodes[g->edges[e].source].name, "fe_web")) {
            assert_true(g->edges[e].red.p50_ms > 28 && g->edges[e].red.p50_ms < 42);
            assert_true(g->edges[e].red.p99_ms > 4000);
        }
    store_free_graph(g);
    for (size_t i = 0; i < 3; i++) span_batch_destroy(b[i]);
}

static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* n nginx-like lines, record i's request id and path carrying i (every line distinct). */
static char *dict_lines(int first, int n, size_t *len)
{
    size_t cap = (size_t)n * 700 + 1, o = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    for (int i = first; i < first + n; i++)
        o += (size_t)snprintf(
            body + o, cap - o,
            "{\"msec\":\"1795766401.%03d\",\"request_time\":\"0.%03d\",\"method\":\"GET\","
            "\"path\":\"/api/items/%d?page=%d\",\"protocol\":\"HTTP/1.1\",\"response_code\":"
            "\"%d\",\"bytes_received\":\"%d\",\"bytes_sent\":\"%d\",\"upstream_name\":\"%s\","
            "\"upstream_host\":\"10.0.%d.%d:8080\",\"request_id\":\"%08x%08x\",\"user_agent\":"
            "\"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\",\"authority\":\"shop.example\"}\n",
            i % 1000, i % 400, i, i % 7, i % 50 ? 200 : 503, 100 + i % 300, 1000 + i * 7 % 5000,
            i % 3 ? "backend" : "payments", i % 4, i % 250, (unsigned)i * 2654435761u,
            (unsigned)i);
    *len = o;
    return body;
}

static void put_dict_lines(struct store *st, int first, int n)
{
    size_t len;
    char *body = dict_lines(first, n, &len);
    struct alog_defaults d = {"edge", ALOG_DIRECTION_UNKNOWN};
    struct span_batch *b = span_batch_create();
    char err[256];
    assert_int_equal(accesslog_decode_json_ex((const uint8_t *)body, len, &d, NULL, b, err,
                                              sizeof err),
                     0);
    assert_int_equal(b->n_logs, (uint32_t)n);
    assert_int_equal(store_put_batches(st, &b, 1), 0);
    span_batch_destroy(b);
    free(body);
}

/* Every stored line of service "edge" reads back verbatim (records compressed before and after
 * the access-log dictionary, and after a reopen). */
static void check_dict_lines(struct store *st, int n)
{
    size_t len;
    char *want = dict_lines(0, n, &len);
    struct log_query q = {.service = "edge", .limit = 10000};
    struct span_batch *out;
    assert_int_equal(store_find_logs(st, &q, &out), 0);
    assert_int_equal(out->n_logs, (uint32_t)n);
    for (uint32_t i = 0; i < out->n_logs; i++) {
        const struct mstr *raw = &out->logs[i].str[ALOG_RAW];
        char *hit = strstr(want, raw->ptr); /* newest first: find each line in the set */
        if (!hit || hit[raw->len] != '\n') fail_msg("line not stored verbatim: %s", raw->ptr);
    }
    span_batch_destroy(out);
    free(want);
}

/* Bytes per record of the access-log blocks with id > after (the newest blocks). */
static double block_bytes_per_record(const char *path, int64_t after)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT sum(length(data)) * 1000 / sum(n) FROM access_log_blocks WHERE id > %lld",
             (long long)after);
    return (double)sql_int(path, sql) / 1000.0;
}

/* Access-log records get their own zstd dictionary, trained (off the writer thread) from the
 * first 2,000 records; blocks from before and after it read back, the dictionary survives a
 * reopen (no second one), span chunks ignore it. It pays off for small blocks (a quiet mesh
 * commits a few records at a time): those shrink by more than a third with it. */
static void test_store_log_dict(void **state)
{
    struct sfix *f = *state;
    const char *count = "SELECT count(*) FROM dicts WHERE id BETWEEN 1280245760 AND 1280311295";
    for (int i = 0; i < 40; i++)
        put_dict_lines(f->st, i * 5, 5); /* 40 blocks of 5 */
    double plain = block_bytes_per_record(f->path, 0);
    put_dict_lines(f->st, 200, 1000);
    put_dict_lines(f->st, 1200, 700);
    store_test_wait_dicts(f->st);
    assert_int_equal(sql_int(f->path, count), 0);
    put_dict_lines(f->st, 1900, 300); /* the 2,000th sample: training starts after this call */
    store_test_wait_dicts(f->st);
    assert_int_equal(sql_int(f->path, count), 1);
    int64_t last = sql_int(f->path, "SELECT max(id) FROM access_log_blocks");
    for (int i = 0; i < 40; i++)
        put_dict_lines(f->st, 2200 + i * 5, 5);
    double with_dict = block_bytes_per_record(f->path, last);
    if (with_dict * 1.5 > plain)
        fail_msg("blocks of 5: %.1f bytes/record with the dictionary, %.1f without", with_dict,
                 plain);
    check_dict_lines(f->st, 2400);
    store_close(f->st);
    struct store_options o = {.path = f->path};
    f->st = store_open(&o);
    assert_non_null(f->st);
    put_dict_lines(f->st, 2400, 100);
    check_dict_lines(f->st, 2500);
    assert_int_equal(sql_int(f->path, count), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM dicts"), 1);
}

/* A v2 file (this build's schema without access_logs) migrates to v3 and keeps its spans. */
static void test_store_migrate_v2(void **state)
{
    struct sfix *f = *state;
    struct span_batch *b = span_batch_create();
    struct span *s = span_batch_add(b);
    s->trace_id[15] = 9;
    s->span_id[7] = 9;
    s->start_unix_nano = (uint64_t)T0 * 1000;
    s->end_unix_nano = s->start_unix_nano + 5000;
    assert_int_equal(store_put_batches(f->st, &b, 1), 0);
    span_batch_destroy(b);
    store_close(f->st);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(
            db,
            "DROP TABLE access_logs; DROP TABLE access_log_blocks; " TEST_TRACE_INDEX_V7_SQL
                TEST_SEARCH_INDEX_V6_SQL "PRAGMA user_version = 2;",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 2);
    struct store_options o = {.path = f->path};
    f->st = store_open(&o);
    assert_non_null(f->st);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 8); /* v6: blocks; v7; v8 */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                      "('access_logs', 'access_logs_service', "
                                      "'access_logs_trace', 'access_logs_request', "
                                      "'access_log_blocks', 'access_log_blocks_service', "
                                      "'access_log_blocks_time')"),
                     7);
    uint8_t tid[16] = {0};
    tid[15] = 9;
    struct span_batch *t;
    assert_int_equal(store_get_trace(f->st, tid, &t), 0);
    assert_int_equal(t->n_spans, 1);
    span_batch_destroy(t);
    b = make_logs("svc", 2, T0, 9);
    assert_int_equal(store_put_batches(f->st, &b, 1), 0);
    span_batch_destroy(b);
    struct log_query q = {.service = "svc"};
    assert_int_equal(store_find_logs(f->st, &q, &t), 0);
    assert_int_equal(t->n_logs, 2);
    span_batch_destroy(t);
}

/* Records i = 0..8 of service "svc" (duration i ms, a 503 when i % 3 == 2, request id "req-i")
 * and 3 of service "other" without request ids. */
static void make_filter_logs(struct span_batch *b[2])
{
    b[0] = make_logs("svc", 9, T0, 0);
    b[1] = make_logs("other", 3, T0, 0);
    for (uint32_t i = 0; i < 9; i++) {
        char rid[16];
        int n = snprintf(rid, sizeof rid, "req-%u", i);
        b[0]->logs[i].str[ALOG_REQUEST_ID] =
            (struct mstr){arena_strndup(b[0]->arena, rid, (size_t)n), (uint32_t)n};
    }
}

static void put_filter_logs(struct store *st)
{
    struct span_batch *b[2];
    make_filter_logs(b);
    assert_int_equal(store_put_batches(st, b, 2), 0);
    span_batch_destroy(b[0]);
    span_batch_destroy(b[1]);
}

struct filter_case {
    const char *name;
    struct log_query q;
    uint32_t n;
    int64_t first_duration; /* the newest match's duration_ms; -1: not checked */
};

static void check_filter_cases(struct store *st, const struct filter_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct span_batch *out;
        assert_int_equal(store_find_logs(st, &c[i].q, &out), 0);
        if (out->n_logs != c[i].n)
            fail_msg("%s: %u records, want %u", c[i].name, out->n_logs, c[i].n);
        if (c[i].first_duration >= 0 && out->logs[0].duration_ms != c[i].first_duration)
            fail_msg("%s: first duration %lld, want %lld", c[i].name,
                     (long long)out->logs[0].duration_ms, (long long)c[i].first_duration);
        span_batch_destroy(out);
    }
}

/* requestId, status and duration conditions, alone and combined with the others. */
static void test_store_log_filters(void **state)
{
    struct sfix *f = *state;
    put_filter_logs(f->st);
    static const struct filter_case cases[] = {
        {"request id", {.request_id = "req-4"}, 1, 4},
        {"request id, no such", {.request_id = "req-44"}, 0, -1},
        {"request id + service", {.request_id = "req-5", .service = "svc"}, 1, 5},
        {"request id + other service", {.request_id = "req-5", .service = "other"}, 0, -1},
        {"request id + errors", {.request_id = "req-5", .errors_only = true}, 1, 5},
        {"request id + 200", {.request_id = "req-5", .status_min = 200, .status_max = 200}, 0, -1},
        {"request id + window", {.request_id = "req-4", .start_us = T0 + 5000}, 0, -1},
        {"status 503", {.status_min = 503, .status_max = 503}, 4, 8}, /* newest start: svc's */
        {"status 5xx", {.status_min = 500, .status_max = 599}, 4, 8},
        {"status 2xx", {.status_min = 200, .status_max = 299}, 8, -1},
        {"status 404", {.status_min = 404, .status_max = 404}, 0, -1},
        {"status 2xx of svc", {.service = "svc", .status_min = 200, .status_max = 299}, 6, 7},
        {"min 5 ms", {.service = "svc", .min_duration_ms = 5}, 4, 8},
        {"max 2 ms", {.service = "svc", .max_duration_ms = 2}, 3, 2},
        {"3..5 ms", {.service = "svc", .min_duration_ms = 3, .max_duration_ms = 5}, 3, 5},
        {"min 3 ms, 503", {.min_duration_ms = 3, .status_min = 503, .status_max = 503}, 2, 8},
        {"min 1 ms, limit 2", {.service = "svc", .min_duration_ms = 1, .limit = 2}, 2, 8},
        {"min 100 ms", {.min_duration_ms = 100}, 0, -1},
    };
    check_filter_cases(f->st, cases, sizeof cases / sizeof cases[0]);
}

static void exec_sql_file(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* Writes the records of b as rows of the v3-v5 access_logs table (one row per record, as
 * builds before schema v6 stored them), into the closed store at path. */
static void put_legacy_logs(const char *path, const struct span_batch *b)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "INSERT INTO access_logs(recv_minute, time_us, service_id, "
                           "trace_key, response_code, error, data, request_key, duration_ms) "
                           "VALUES(0, ?1, (SELECT id FROM services WHERE name = ?2), ?3, ?4, "
                           "?5, ?6, ?7, ?8)",
                           -1, &s, NULL),
        SQLITE_OK);
    for (uint32_t i = 0; i < b->n_logs; i++) {
        const struct access_log *l = &b->logs[i];
        const struct mstr *svc = &l->str[ALOG_SERVICE], *rid = &l->str[ALOG_REQUEST_ID];
        char *ins = sqlite3_mprintf("INSERT OR IGNORE INTO services(name) VALUES(%.*Q)",
                                    (int)svc->len, svc->ptr);
        assert_int_equal(sqlite3_exec(db, ins, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_free(ins);
        struct buf enc = {0};
        assert_int_equal(alog_encode(&enc, l), 0);
        size_t bound = ZSTD_compressBound(enc.len);
        void *z = malloc(bound);
        size_t zlen = ZSTD_compress(z, bound, enc.p, enc.len, 1);
        assert_false(ZSTD_isError(zlen));
        sqlite3_bind_int64(s, 1, (int64_t)(l->time_unix_nano / 1000));
        sqlite3_bind_text(s, 2, svc->ptr, (int)svc->len, SQLITE_STATIC);
        if (l->has_trace_id)
            sqlite3_bind_int64(s, 3, trace_key_of(l->trace_id));
        else
            sqlite3_bind_null(s, 3);
        sqlite3_bind_int64(s, 4, l->response_code);
        sqlite3_bind_int(s, 5, access_log_is_error(l));
        sqlite3_bind_blob(s, 6, z, (int)zlen, SQLITE_STATIC);
        if (rid->ptr)
            sqlite3_bind_int64(s, 7, request_key_of(rid->ptr, rid->len));
        else
            sqlite3_bind_null(s, 7);
        sqlite3_bind_int64(s, 8, l->duration_ms);
        assert_int_equal(sqlite3_step(s), SQLITE_DONE);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        free(z);
        buf_free(&enc);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* put_filter_logs' records as rows of the v3-v5 table (f->st closed). */
static void put_filter_logs_legacy(struct sfix *f)
{
    store_close(f->st);
    f->st = NULL;
    struct span_batch *b[2];
    make_filter_logs(b);
    put_legacy_logs(f->path, b[0]);
    put_legacy_logs(f->path, b[1]);
    span_batch_destroy(b[0]);
    span_batch_destroy(b[1]);
}

/* A request-key collision is settled on the decoded request id; rows without the v5 columns
 * (stored before v5) are checked on their decoded duration and are not found by request id. */
static void test_store_log_collision_old_rows(void **state)
{
    struct sfix *f = *state;
    put_filter_logs_legacy(f);
    /* Record 6 gets record 4's key; record 7 loses its v5 columns. */
    exec_sql_file(f->path, "UPDATE access_logs SET request_key = (SELECT request_key FROM "
                           "access_logs WHERE time_us = 1795766400004000) WHERE time_us = "
                           "1795766400006000 AND request_key IS NOT NULL;"
                           "UPDATE access_logs SET request_key = NULL, duration_ms = NULL "
                           "WHERE time_us = 1795766400007000 AND request_key IS NOT NULL;");
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM access_logs WHERE request_key = "
                                      "(SELECT request_key FROM access_logs WHERE time_us = "
                                      "1795766400004000 AND request_key IS NOT NULL)"),
                     2);
    struct store_options o = {.path = f->path};
    f->st = store_open(&o);
    assert_non_null(f->st);
    static const struct filter_case cases[] = {
        {"collision", {.request_id = "req-4"}, 1, 4},
        {"collision, other side", {.request_id = "req-6"}, 0, -1},
        {"old row by request id", {.request_id = "req-7"}, 0, -1},
        {"old row by min duration", {.service = "svc", .min_duration_ms = 7}, 2, 8},
        {"old row by max duration", {.service = "svc", .max_duration_ms = 7}, 8, 7},
        {"old row outside bounds", {.service = "svc", .min_duration_ms = 3, .max_duration_ms = 5},
         3, 5},
    };
    check_filter_cases(f->st, cases, sizeof cases / sizeof cases[0]);
}

/* A v4 file (access_logs without request_key and duration_ms) migrates to v5; its records stay
 * readable and filterable by duration, later ones are found by request id. */
static void test_store_migrate_v4(void **state)
{
    struct sfix *f = *state;
    put_filter_logs_legacy(f);
    exec_sql_file(f->path,
                  "DROP TABLE access_log_blocks;"
                  "DROP INDEX access_logs_request;"
                  "ALTER TABLE access_logs DROP COLUMN request_key;"
                  "ALTER TABLE access_logs DROP COLUMN duration_ms;" TEST_TRACE_INDEX_V7_SQL
                      TEST_SEARCH_INDEX_V6_SQL "PRAGMA user_version = 4;");
    struct store_options o = {.path = f->path};
    f->st = store_open(&o);
    assert_non_null(f->st);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 8);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM access_logs WHERE request_key IS "
                                      "NULL AND duration_ms IS NULL"),
                     12);
    struct span_batch *b = make_logs("late", 2, T0 + SEC, 0);
    b->logs[1].str[ALOG_REQUEST_ID] = (struct mstr){"req-late", 8};
    assert_int_equal(store_put_batches(f->st, &b, 1), 0);
    span_batch_destroy(b);
    static const struct filter_case cases[] = {
        {"old rows", {.service = "svc"}, 9, 8},
        {"old rows by duration", {.service = "svc", .min_duration_ms = 5}, 4, 8},
        {"old rows by status", {.service = "svc", .status_min = 503, .status_max = 503}, 3, 8},
        {"old rows by request id", {.request_id = "req-4"}, 0, -1},
        {"new row by request id", {.request_id = "req-late"}, 1, 1},
    };
    check_filter_cases(f->st, cases, sizeof cases / sizeof cases[0]);
}

/* Blocks (schema v6): a write call's records are cut by service, LOG_BLOCK_RECORDS (512) and
 * a minute of start time; lookups by trace and request id go through the blocks' bloom filters
 * and find exactly their records; a newest-first search with a limit returns the newest
 * records across blocks whose times interleave; rows of the v3-v5 table merge in. */
static void test_store_log_blocks(void **state)
{
    struct sfix *f = *state;
    /* 1,100 records of one service within a second: 512 + 512 + 76. */
    struct span_batch *big = make_logs("big", 1100, T0, 0);
    for (uint32_t i = 0; i < big->n_logs; i++) {
        char rid[24];
        int n = snprintf(rid, sizeof rid, "big-%u", i);
        big->logs[i].str[ALOG_REQUEST_ID] =
            (struct mstr){arena_strndup(big->arena, rid, (size_t)n), (uint32_t)n};
        big->logs[i].has_trace_id = true;
        big->logs[i].trace_id[0] = 0xcc;
        big->logs[i].trace_id[14] = (uint8_t)(i >> 8);
        big->logs[i].trace_id[15] = (uint8_t)i;
        big->logs[i].time_unix_nano = (uint64_t)(T0 + i) * 1000; /* 1 µs apart */
    }
    /* Two services and a two-minute spread in one call: blocks of one service, one minute. */
    struct span_batch *spread = make_logs("spread", 3, T0, 0);
    spread->logs[1].time_unix_nano = (uint64_t)(T0 + 90 * SEC) * 1000;
    spread->logs[2].time_unix_nano = (uint64_t)(T0 + 200 * SEC) * 1000;
    struct span_batch *both[2] = {big, spread};
    assert_int_equal(store_put_batches(f->st, both, 2), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM access_log_blocks b JOIN services s "
                                      "ON s.id = b.service_id WHERE s.name = 'big'"),
                     3);
    assert_int_equal(sql_int(f->path, "SELECT max(n) * 1000 + min(n) FROM access_log_blocks"
                                      " b JOIN services s ON s.id = b.service_id WHERE s.name = "
                                      "'big'"),
                     512076);
    assert_int_equal(sql_int(f->path, "SELECT sum(n) FROM access_log_blocks"), 1103);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM access_log_blocks b JOIN services s "
                                      "ON s.id = b.service_id WHERE s.name = 'spread'"),
                     3);
    assert_int_equal(sql_int(f->path, "SELECT max(max_time_us - min_time_us) FROM "
                                      "access_log_blocks"),
                     511);
    /* Every record by its request id and by its trace id: exactly one each. */
    for (uint32_t i = 0; i < 1100; i += 7) {
        char rid[24];
        snprintf(rid, sizeof rid, "big-%u", i);
        struct log_query q = {.request_id = rid};
        struct span_batch *out;
        assert_int_equal(store_find_logs(f->st, &q, &out), 0);
        assert_int_equal(out->n_logs, 1);
        assert_int_equal(out->logs[0].time_unix_nano, (uint64_t)(T0 + i) * 1000);
        span_batch_destroy(out);
        uint8_t tid[16] = {0xcc};
        tid[14] = (uint8_t)(i >> 8);
        tid[15] = (uint8_t)i;
        q = (struct log_query){.trace_id = tid};
        assert_int_equal(store_find_logs(f->st, &q, &out), 0);
        assert_int_equal(out->n_logs, 1);
        assert_str(&out->logs[0], ALOG_REQUEST_ID, rid);
        span_batch_destroy(out);
    }
    struct log_query none = {.request_id = "big-1100"};
    struct span_batch *out;
    assert_int_equal(store_find_logs(f->st, &none, &out), 0);
    assert_int_equal(out->n_logs, 0);
    span_batch_destroy(out);

    /* Interleaved write calls: even ms in one, odd ms in the other, then 3 legacy rows at
     * 100.5, 101.5 and 102.5 ms; the 5 newest overall, newest first. */
    struct span_batch *even = make_logs("mix", 50, T0 + 10 * SEC, 0),
                      *odd = make_logs("mix", 50, T0 + 10 * SEC, 0);
    for (uint32_t i = 0; i < 50; i++) {
        even->logs[i].time_unix_nano = (uint64_t)(T0 + 10 * SEC + 2 * i * 1000) * 1000;
        odd->logs[i].time_unix_nano = (uint64_t)(T0 + 10 * SEC + (2 * i + 1) * 1000) * 1000;
        even->logs[i].duration_ms = 2 * i;
        odd->logs[i].duration_ms = 2 * i + 1;
    }
    assert_int_equal(store_put_batches(f->st, &even, 1), 0);
    assert_int_equal(store_put_batches(f->st, &odd, 1), 0);
    store_close(f->st);
    f->st = NULL;
    struct span_batch *legacy = make_logs("mix", 3, T0, 0);
    for (uint32_t i = 0; i < 3; i++) {
        legacy->logs[i].time_unix_nano = (uint64_t)(T0 + 10 * SEC + (100 + i) * 1000 + 500) * 1000;
        legacy->logs[i].duration_ms = 1000 + i;
    }
    put_legacy_logs(f->path, legacy);
    struct store_options o = {.path = f->path};
    f->st = store_open(&o);
    assert_non_null(f->st);
    struct log_query q = {.service = "mix", .limit = 5};
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 5);
    static const int64_t want[5] = {1002, 1001, 1000, 99, 98};
    for (int i = 0; i < 5; i++)
        assert_int_equal(out->logs[i].duration_ms, want[i]);
    span_batch_destroy(out);
    /* Oldest first by trace order is the same merge the other way: no service, a window. */
    q = (struct log_query){
        .start_us = T0 + 10 * SEC + 97 * 1000, .end_us = T0 + 11 * SEC, .limit = 100};
    assert_int_equal(store_find_logs(f->st, &q, &out), 0);
    assert_int_equal(out->n_logs, 6); /* 97, 98, 99 and the three legacy rows */
    span_batch_destroy(out);
    span_batch_destroy(big);
    span_batch_destroy(spread);
    span_batch_destroy(even);
    span_batch_destroy(odd);
    span_batch_destroy(legacy);
}

/* Record encodings: version 2 (blocks) stores a value found verbatim in the raw line as a
 * reference into it, anything else as a literal, and reads back the same record; version 1
 * (rows stored before schema v6, every value a literal) still decodes. */
static void test_alog_encoding(void **state)
{
    (void)state;
    struct span_batch *b = span_batch_create();
    struct access_log *l = span_batch_add_log(b);
    static const char raw[] = "{\"path\":\"/api/v1/items\",\"method\":\"GET\",\"ua\":\"a\\\"b\"}";
    l->time_unix_nano = 1795766400123000000ULL;
    l->response_code = 503;
    l->str[ALOG_RAW] = (struct mstr){raw, (uint32_t)strlen(raw)};
    l->str[ALOG_PATH] = (struct mstr){"/api/v1/items", 13};    /* in raw: a reference */
    l->raw_ref[ALOG_PATH] = 10;
    l->str[ALOG_PROTOCOL] = (struct mstr){"HTTP/1.1", 8}; /* a wrong hint: a literal */
    l->raw_ref[ALOG_PROTOCOL] = 2;
    l->str[ALOG_AUTHORITY] = (struct mstr){"method", 6}; /* a hint past the end: a literal */
    l->raw_ref[ALOG_AUTHORITY] = (uint32_t)strlen(raw) - 2;
    l->str[ALOG_METHOD] = (struct mstr){"GET", 3};              /* short: a literal */
    l->str[ALOG_USER_AGENT] = (struct mstr){"a\"b", 3};         /* escaped in raw: a literal */
    l->str[ALOG_SERVICE] = (struct mstr){"not-in-the-line", 15}; /* a literal */
    l->str[ALOG_BODY] = (struct mstr){"", 0};
    struct buf enc = {0};
    assert_int_equal(alog_encode(&enc, l), 0);
    assert_int_equal(enc.p[0], 2);
    /* The path is stored once (in the raw line): the field is a reference. */
    const uint8_t *first = memmem(enc.p, enc.len, "/api/v1/items", 13);
    assert_non_null(first);
    assert_null(memmem(first + 1, enc.len - (size_t)(first + 1 - enc.p), "/api/v1/items", 13));
    struct span_batch *out = span_batch_create();
    assert_int_equal(alog_decode(enc.p, enc.len, out), 0);
    const struct access_log *r = &out->logs[0];
    assert_int_equal(r->time_unix_nano, l->time_unix_nano);
    assert_int_equal(r->response_code, 503);
    for (int i = 0; i < ALOG_STR_COUNT; i++) {
        if (!l->str[i].ptr) {
            assert_null(r->str[i].ptr);
            continue;
        }
        assert_int_equal(r->str[i].len, l->str[i].len);
        assert_memory_equal(r->str[i].ptr, l->str[i].ptr, l->str[i].len);
        assert_int_equal(r->str[i].ptr[r->str[i].len], 0);
    }
    /* A view points into the encoding, references into its raw line. */
    struct access_log view;
    assert_int_equal(alog_view(enc.p, enc.len, &view), 0);
    assert_true(view.str[ALOG_PATH].ptr > view.str[ALOG_RAW].ptr &&
                view.str[ALOG_PATH].ptr < view.str[ALOG_RAW].ptr + strlen(raw));
    assert_memory_equal(view.str[ALOG_SERVICE].ptr, "not-in-the-line", 15);
    /* Version 1, by hand: time 1000 ns, code 200 (zigzag 400), four fields absent (-1 = 1), no
     * ids, 3 strings: service "svc", method absent, path "/x". */
    static const uint8_t v1[] = {1, 0, 0xe8, 0x07, 0x90, 0x03, 1, 1, 1, 1, 3,
                                 4, 's', 'v', 'c', 0, 3, '/', 'x'};
    assert_int_equal(alog_decode(v1, sizeof v1, out), 0);
    r = &out->logs[1];
    assert_int_equal(r->time_unix_nano, 1000);
    assert_int_equal(r->response_code, 200);
    assert_string_equal(r->str[ALOG_SERVICE].ptr, "svc");
    assert_null(r->str[ALOG_METHOD].ptr);
    assert_string_equal(r->str[ALOG_PATH].ptr, "/x");
    /* Truncated and out-of-range encodings are refused. */
    assert_int_equal(alog_decode(v1, sizeof v1 - 1, out), -EINVAL);
    uint8_t bad[sizeof v1];
    memcpy(bad, v1, sizeof v1);
    bad[0] = 3;
    assert_int_equal(alog_decode(bad, sizeof bad, out), -EINVAL);
    assert_int_equal(out->n_logs, 2);
    buf_free(&enc);
    span_batch_destroy(b);
    span_batch_destroy(out);
}

/* ----- /api/logs -------------------------------------------------------------------------- */

static void get(struct store *st, const char *qs, struct query_response *resp)
{
    struct args a;
    args_parse(&a, qs);
    memset(resp, 0, sizeof *resp);
    assert_int_equal(query_handle(st, "/api/logs", a.a, a.n, resp), 0);
}

static void test_query_logs(void **state)
{
    struct sfix *f = *state;
    size_t len;
    char *body = test_read_fixture("accesslog", "istio_default.ndjson", &len);
    struct span_batch *b;
    char err[256];
    assert_int_equal(decode(body, NULL, &b, err, sizeof err), 0);
    assert_int_equal(store_put_batches(f->st, &b, 1), 0);
    span_batch_destroy(b);

    struct query_response r;
    get(f->st, "traceID=4bf92f3577b34da6a3ce929d0e0e4736", &r);
    assert_int_equal(r.status, 200);
    json_error_t jerr;
    json_t *doc = json_loadb(r.body, r.len, 0, &jerr);
    assert_non_null(doc);
    json_t *data = json_object_get(doc, "data");
    assert_int_equal(json_array_size(data), 1);
    json_t *rec = json_array_get(data, 0);
    assert_int_equal(json_integer_value(json_object_get(rec, "time")), T0 + 123000);
    assert_string_equal(json_string_value(json_object_get(rec, "traceID")),
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(json_string_value(json_object_get(rec, "spanID")), "00f067aa0ba902b7");
    assert_int_equal(json_integer_value(json_object_get(rec, "response_code")), 200);
    assert_string_equal(json_string_value(json_object_get(rec, "response_flags")), "-");
    assert_string_equal(json_string_value(json_object_get(rec, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(rec, "path")), "/reviews/0?x=1");
    assert_string_equal(json_string_value(json_object_get(rec, "authority")), "reviews:9080");
    assert_string_equal(json_string_value(json_object_get(rec, "upstream_cluster")),
                        "outbound|9080||reviews.default.svc.cluster.local");
    assert_string_equal(json_string_value(json_object_get(rec, "direction")), "outbound");
    assert_string_equal(json_string_value(json_object_get(rec, "service")), "unknown_service");
    assert_int_equal(json_integer_value(json_object_get(rec, "duration_ms")), 12);
    const char *nl = strchr(body, '\n');
    assert_int_equal(strlen(json_string_value(json_object_get(rec, "line"))),
                     (size_t)(nl - body));
    assert_int_equal(json_integer_value(json_object_get(doc, "total")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "limit")), 100);
    assert_true(json_is_null(json_object_get(doc, "errors")));
    json_decref(doc);
    free(r.body);

    static const struct {
        const char *qs;
        int status;
        int total;
        const char *msg;
    } cases[] = {
        {"", 200, 2, NULL},
        {"limit=1", 200, 1, NULL},
        {"limit=99999", 200, 2, NULL},
        {"service=reviews", 200, 1, NULL},
        {"service=reviews&errors=true", 200, 1, NULL},
        {"service=reviews&errors=1&start=1795766400131000", 200, 0, NULL},
        {"errors=true", 200, 1, NULL},
        {"errors=false", 200, 2, NULL},
        {"traceId=80f198ee56343ba864fe8b2a57d3eff7", 200, 1, NULL},
        {"traceID=ff", 200, 0, NULL},
        {"start=1795766400123000&end=1795766400123000", 200, 1, NULL},
        {"traceID=xyz", 400, 0, "'traceID'"},
        {"traceID=123456789012345678901234567890123", 400, 0, "'traceID'"},
        {"limit=0", 400, 0, "'limit'"},
        {"limit=ten", 400, 0, "'limit'"},
        {"start=abc", 400, 0, "'start'"},
        {"end=-5", 400, 0, "'end'"},
        {"start=10&end=5", 400, 0, "'start'"},
        {"errors=maybe", 400, 0, "'errors'"},
        {"requestId=5c3f6e1a-1111-4d2b-9a7c-000000000002", 200, 1, NULL},
        {"requestId=5c3f6e1a-1111-4d2b-9a7c-00000000000", 200, 0, NULL},
        {"requestId=5c3f6e1a-1111-4d2b-9a7c-000000000002&status=200", 200, 0, NULL},
        {"status=503", 200, 1, NULL},
        {"status=5xx", 200, 1, NULL},
        {"status=5XX", 200, 1, NULL},
        {"status=2xx", 200, 1, NULL},
        {"status=404", 200, 0, NULL},
        {"minDuration=12ms", 200, 1, NULL},
        {"minDuration=3ms", 200, 2, NULL},
        {"minDuration=3001us", 200, 1, NULL}, /* rounds up to 4 ms */
        {"maxDuration=11.9ms", 200, 1, NULL},
        {"minDuration=1ms&maxDuration=1s", 200, 2, NULL},
        {"minDuration=1s", 200, 0, NULL},
        {"requestId=", 200, 2, NULL}, /* an empty value is an absent one, as for every key */
        {"status=600", 400, 0, "'status'"},
        {"status=5x", 400, 0, "'status'"},
        {"status=5xxx", 400, 0, "'status'"},
        {"status=abc", 400, 0, "'status'"},
        {"status=", 200, 2, NULL},
        {"minDuration=100", 400, 0, "'minDuration'"},
        {"minDuration=-5ms", 400, 0, "'minDuration'"},
        {"maxDuration=fast", 400, 0, "'maxDuration'"},
        {"maxDuration=500us", 400, 0, "'maxDuration'"},
        {"minDuration=2s&maxDuration=1s", 400, 0, "'maxDuration'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        get(f->st, cases[i].qs, &r);
        if (r.status != cases[i].status)
            fail_msg("'%s': status %d, want %d: %.*s", cases[i].qs, r.status, cases[i].status,
                     (int)r.len, r.body);
        doc = json_loadb(r.body, r.len, 0, &jerr);
        assert_non_null(doc);
        if (r.status == 200) {
            if ((int)json_integer_value(json_object_get(doc, "total")) != cases[i].total)
                fail_msg("'%s': total %lld, want %d", cases[i].qs,
                         (long long)json_integer_value(json_object_get(doc, "total")),
                         cases[i].total);
            assert_int_equal(json_array_size(json_object_get(doc, "data")), cases[i].total);
        } else {
            const char *msg = json_string_value(
                json_object_get(json_array_get(json_object_get(doc, "errors"), 0), "msg"));
            assert_non_null(msg);
            if (!strstr(msg, cases[i].msg)) fail_msg("'%s': msg '%s'", cases[i].qs, msg);
        }
        json_decref(doc);
        free(r.body);
    }
    free(body);
}

/* ----- RED ------------------------------------------------------------------------------------ */

/* RED on a fake clock: records with a request id wait --service-graph-wait on the service graph
 * for the other proxy's record of the same call; red_wait_over ends every wait. */
static int64_t red_now;
static int64_t red_clock(void)
{
    return red_now;
}

static struct red *red_fake(void)
{
    struct red_options o = {.now_ms = red_clock};
    red_now = 1000;
    struct red *r = red_create(&o);
    assert_non_null(r);
    return r;
}

static void red_wait_over(struct red *r)
{
    red_now += 60000;
    red_expire(r);
}

static void test_red_logs(void **state)
{
    (void)state;
    struct red *r = red_fake();
    size_t len;
    char *body = test_read_fixture("accesslog", "istio_default.ndjson", &len);
    struct span_batch *b;
    char err[256];
    assert_int_equal(decode(body, NULL, &b, err, sizeof err), 0);
    /* A record with no response (code 0, UH) reports response_code "0". */
    struct access_log *l = span_batch_add_log(b);
    *l = b->logs[1];
    l->response_code = 0;
    l->str[ALOG_RESPONSE_FLAGS] = (struct mstr){"UH", 2};
    red_observe_batch(r, b);
    span_batch_destroy(b);
    red_wait_over(r);
    char *out;
    size_t out_len;
    assert_int_equal(red_render(r, false, &out, &out_len), 0);
    static const char *const want[] = {
        /* outbound record: reporter source, destination from upstream_cluster */
        "istio_requests_total{reporter=\"source\",source_workload=\"unknown\"",
        "destination_service=\"reviews.default.svc.cluster.local\",destination_service_name="
        "\"reviews\",destination_service_namespace=\"default\"",
        "request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\","
        "response_flags=\"-\",connection_security_policy=\"unknown\"} 1",
        /* inbound record: reporter destination, the proxy's own service */
        "istio_requests_total{reporter=\"destination\"",
        "destination_workload=\"reviews\"",
        "response_code=\"503\",grpc_response_status=\"\",response_flags=\"UF,URX\"",
        "response_code=\"0\",grpc_response_status=\"\",response_flags=\"UH\"",
        /* bytes and duration */
        "istio_response_bytes_sum{reporter=\"source\"",
        "istio_request_duration_milliseconds_sum{reporter=\"source\"",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out, want[i])) fail_msg("missing: %s", want[i]);
    /* bytes_sent 295 lands in the response-bytes histogram of the outbound record. */
    const char *p = strstr(out, "istio_response_bytes_sum{reporter=\"source\"");
    const char *line_end = strchr(p, '\n');
    assert_true(line_end - p > 5 && memcmp(line_end - 4, " 295", 4) == 0);
    /* Records feed the service graph (outbound: service -> destination; inbound: "unknown" ->
     * service), not span metrics. */
    assert_null(strstr(out, "traces_spanmetrics_calls_total{"));
    static const char *const graph[] = {
        "traces_service_graph_request_total{client=\"unknown_service\",server=\"reviews\","
        "connection_type=\"\"} 1\n",
        "traces_service_graph_request_total{client=\"unknown\",server=\"reviews\","
        "connection_type=\"virtual_node\"} 2\n",
        "traces_service_graph_request_failed_total{client=\"unknown\",server=\"reviews\","
        "connection_type=\"virtual_node\"} 2\n",
        /* the outbound record's 12 ms as the client side, the inbound ones' as the server's */
        "traces_service_graph_request_client_seconds_count{client=\"unknown_service\","
        "server=\"reviews\",connection_type=\"\"} 1\n",
        "traces_service_graph_request_server_seconds_count{client=\"unknown\",server=\"reviews\","
        "connection_type=\"virtual_node\"} 2\n",
    };
    for (size_t i = 0; i < sizeof graph / sizeof graph[0]; i++)
        if (!strstr(out, graph[i])) fail_msg("missing: %s", graph[i]);
    assert_non_null(strstr(out, "traces_service_graph_request_failed_total{client=\"unknown_service\","
                                "server=\"reviews\",connection_type=\"\"} 0\n"));
    free(out);
    free(body);
    red_destroy(r);
}

static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0) n++;
    return n;
}

/* nginx / HAProxy records: the proxy's service -> upstream_name / backend_name. */
static void test_red_nginx_haproxy(void **state)
{
    (void)state;
    struct red *r = red_fake();
    static const char *const fixtures[] = {"nginx.ndjson", "haproxy.ndjson"};
    for (size_t i = 0; i < 2; i++) {
        size_t len;
        char *body = test_read_fixture("accesslog", fixtures[i], &len);
        struct alog_defaults d = {i == 0 ? "edge-nginx" : NULL, ALOG_DIRECTION_UNKNOWN};
        struct span_batch *b = span_batch_create();
        char err[256];
        assert_int_equal(accesslog_decode_json_ex((const uint8_t *)body, len, &d, NULL, b, err,
                                                  sizeof err),
                         0);
        red_observe_batch(r, b);
        span_batch_destroy(b);
        free(body);
    }
    red_wait_over(r);
    char *out;
    size_t out_len;
    assert_int_equal(red_render(r, false, &out, &out_len), 0);
    static const char *const want[] = {
        "reporter=\"source\",source_workload=\"edge-nginx\"",
        "destination_service=\"backend\",destination_service_name=\"backend\"",
        "destination_service=\"payments\"",
        "response_code=\"502\"",
        "reporter=\"source\",source_workload=\"fe_web\"",
        "destination_service=\"be_app\"",
        "response_code=\"503\",grpc_response_status=\"\",response_flags=\"sC\"",
        /* the service graph: the proxy -> its upstream */
        "traces_service_graph_request_total{client=\"edge-nginx\",server=\"backend\","
        "connection_type=\"\"} 1\n",
        "traces_service_graph_request_failed_total{client=\"edge-nginx\",server=\"payments\","
        "connection_type=\"\"} 1\n",
        "traces_service_graph_request_total{client=\"fe_web\",server=\"be_app\","
        "connection_type=\"\"} 2\n",
        "traces_service_graph_request_failed_total{client=\"fe_web\",server=\"be_app\","
        "connection_type=\"\"} 1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out, want[i])) fail_msg("missing: %s", want[i]);
    /* The record nginx served itself (no upstream) is no edge. */
    assert_int_equal(count_lines(out, "traces_service_graph_request_total{"), 3);
    free(out);
    red_destroy(r);
}

int main(void)
{
    log_min_level = LOG_ERROR;
    query_now_us = fake_now;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_istio_fixture),
        cmocka_unit_test(test_untyped_envoy),
        cmocka_unit_test(test_service_direction),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_body_shapes),
        cmocka_unit_test(test_nginx_haproxy),
        cmocka_unit_test(test_nginx_times),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_response_body),
        cmocka_unit_test_setup_teardown(test_store_put_find, sfix_setup, sfix_teardown),
        cmocka_unit_test_setup_teardown(test_store_retention, sfix_setup, sfix_teardown),
        cmocka_unit_test_setup_teardown(test_store_migrate_v2, sfix_setup, sfix_teardown),
        cmocka_unit_test_setup_teardown(test_store_log_filters, sfix_setup, sfix_teardown),
        cmocka_unit_test_setup_teardown(test_store_log_collision_old_rows, sfix_setup,
                                        sfix_teardown),
        cmocka_unit_test_setup_teardown(test_store_migrate_v4, sfix_setup, sfix_teardown),
        cmocka_unit_test_setup_teardown(test_store_log_blocks, sfix_setup, sfix_teardown),
        cmocka_unit_test(test_alog_encoding),
        cmocka_unit_test_setup_teardown(test_query_logs, sfix_setup, sfix_teardown),
        cmocka_unit_test_setup_teardown(test_store_graph, sfix_setup, sfix_teardown),
        cmocka_unit_test_setup_teardown(test_store_log_dict, sfix_setup, sfix_teardown),
        cmocka_unit_test(test_red_logs),
        cmocka_unit_test(test_red_nginx_haproxy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
