/*
 * test_otlp_logs.c: OTLP logs below HTTP: the decoders (collector/otlp_logs.c, protobuf and
 * OTLP/JSON: request shapes, caps, ids, partial success, the mapping of application logs and of
 * Envoy access-log records), the response encoder (rejectedLogRecords), the stored form of the
 * new fields (storage/access_log.c), their /api/logs rendering (query/logs.c) and RED (only
 * access-log records count).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "collector_int.h"
#include "otlp.h"
#include "query.h"
#include "query_int.h"
#include "red.h"
#include "storage_int.h"
#include "test_util.h"

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"

/* One resourceLogs with resource attributes res (JSON KeyValue list text) and records. */
static char *request(const char *res, const char *records)
{
    char *s;
    assert_true(asprintf(&s,
                         "{\"resourceLogs\":[{\"resource\":{\"attributes\":[%s]},\"scopeLogs\":"
                         "[{\"scope\":{\"name\":\"t\"},\"logRecords\":[%s]}]}]}",
                         res, records) > 0);
    return s;
}

#define SVC "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"shop\"}}"
#define TID "0102030405060708090a0b0c0d0e0f10"
#define SID "1112131415161718"
#define KV(k, v) "{\"key\":\"" k "\",\"value\":{\"stringValue\":\"" v "\"}}"

/* ----- OTLP/JSON: request shapes, errors, partial success --------------------------------- */

static const struct json_case {
    const char *name;
    const char *body; /* whole body, or NULL: request(SVC, records) */
    const char *records;
    int rc;
    uint32_t n_logs, rejected;
    const char *msg; /* substring of err (rc < 0) or of reject_reason */
} json_cases[] = {
    {"empty object", "{}", NULL, 0, 0, 0, NULL},
    {"proto names",
     "{\"resource_logs\":[{\"scope_logs\":[{\"log_records\":[{\"time_unix_nano\":"
     "\"5\",\"severity_text\":\"x\"}]}]}]}",
     NULL, 0, 1, 0, NULL},
    {"not json", "{", NULL, -EINVAL, 0, 0, "invalid JSON"},
    {"not an object", "[]", NULL, -EINVAL, 0, 0, "request: expected an object, got an array"},
    {"resourceLogs not an array", "{\"resourceLogs\":{}}", NULL, -EINVAL, 0, 0,
     "resourceLogs: expected an array"},
    {"record not an object", NULL, "1", -EINVAL, 0, 0,
     "resourceLogs[0].scopeLogs[0].logRecords[0]: expected an object, got an integer"},
    {"time not a number", NULL, "{\"timeUnixNano\":\"x\"}", -EINVAL, 0, 0,
     "logRecords[0].timeUnixNano: expected an unsigned 64-bit integer"},
    {"unknown severity name", NULL, "{\"severityNumber\":\"LOUD\"}", -EINVAL, 0, 0,
     "severityNumber: expected an enum number or name"},
    {"body of the wrong type", NULL, "{\"body\":{\"stringValue\":1}}", -EINVAL, 0, 0,
     "logRecords[0].body.stringValue: expected a string"},
    {"null record is stored", NULL, "null", 0, 1, 0, NULL},
    {"bad trace id refuses the record alone", NULL,
     "{\"traceId\":\"0102\"},{\"body\":{\"stringValue\":\"ok\"}}", 0, 1, 1,
     "resourceLogs[0].scopeLogs[0].logRecords[0].traceId: length 2, want 16"},
    {"non-hex span id", NULL, "{\"traceId\":\"" TID "\",\"spanId\":\"zz12131415161718\"}", 0, 0, 1,
     "spanId: not a hex string"},
    {"all-zero ids are no ids", NULL,
     "{\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"0000000000000000\"}", 0, 1, 0,
     NULL},
    {"too many attributes", NULL,
     "{\"attributes\":[" KV("a", "1") "," KV("b", "2") "," KV("c", "3") "]}", 0, 0, 1,
     "attributes: 3 attributes, max 2"},
    {"too many records", NULL, "{},{},{},{},{}", -E2BIG, 0, 0, "more than 4 log records"},
};

static void test_json_cases(void **state)
{
    (void)state;
    struct decode_limits lim;
    decode_limits_default(&lim);
    lim.max_attrs = 2;
    lim.max_spans = 4;
    for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
        const struct json_case *c = &json_cases[i];
        char *body = c->body ? strdup(c->body) : request(SVC, c->records);
        struct span_batch *b;
        char err[512];
        int rc = test_decode(otlp_decode_logs_json, body, strlen(body), &lim, &b, err, sizeof err);
        if (rc != c->rc) fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc, err);
        if (rc == 0) {
            if (b->n_logs != c->n_logs || b->rejected != c->rejected)
                fail_msg("%s: %u logs %u rejected, want %u %u", c->name, b->n_logs, b->rejected,
                         c->n_logs, c->rejected);
            assert_int_equal(b->n_spans, 0);
        }
        const char *got = rc ? err : b->reject_reason;
        if (c->msg && (!got || !strstr(got, c->msg)))
            fail_msg("%s: message '%s', want '%s'", c->name, got ? got : "(none)", c->msg);
        span_batch_destroy(b);
        free(body);
    }
}

/* ----- mapping ------------------------------------------------------------------------------ */

static struct span_batch *decode_json_ok(const char *res, const char *records)
{
    char *body = request(res, records);
    struct span_batch *b;
    char err[512];
    int rc = test_decode(otlp_decode_logs_json, body, strlen(body), NULL, &b, err, sizeof err);
    if (rc) fail_msg("decode: %d %s", rc, err);
    assert_int_equal(b->rejected, 0);
    free(body);
    return b;
}

static void test_app_log(void **state)
{
    (void)state;
    struct span_batch *b = decode_json_ok(
        SVC,
        "{\"timeUnixNano\":\"1700000000000000001\",\"observedTimeUnixNano\":\"9\","
        "\"severityNumber\":17,\"severityText\":\"oops\",\"body\":{\"stringValue\":\"db "
        "down\"},\"traceId\":\"" TID "\",\"spanId\":\"" SID "\",\"attributes\":[" KV(
            "path", "/x") ",{\"key\":\"n\",\"value\":{\"intValue\":\"7\"}}]},"
                          "{\"observedTimeUnixNano\":\"1700000000000000002\",\"severityNumber\":"
                          "\"SEVERITY_NUMBER_WARN2\",\"body\":{\"kvlistValue\":{\"values\":[" KV(
                              "m", "x") "]}},\"attributes\":[{\"key\":\"http.response.status_"
                                        "code\",\"value\":{\"intValue\":"
                                        "\"404\"}}]},"
                                        "{\"severityNumber\":99,\"body\":{\"arrayValue\":{"
                                        "\"values\":[{\"intValue\":1},"
                                        "{\"doubleValue\":1.5}]}}}");
    assert_int_equal(b->n_logs, 3);
    const struct access_log *l = &b->logs[0];
    assert_int_equal(l->time_unix_nano, UINT64_C(1700000000000000001));
    assert_true(l->has_trace_id && l->has_span_id);
    assert_int_equal(l->trace_id[15], 0x10);
    assert_int_equal(l->span_id[0], 0x11);
    assert_alog_str(l, ALOG_SERVICE, "shop");
    assert_alog_str(l, ALOG_SEVERITY, "oops");
    assert_alog_str(l, ALOG_SEVERITY_NUMBER, "17");
    assert_alog_str(l, ALOG_BODY, "db down");
    assert_alog_str(l, ALOG_ATTRIBUTES, "{\"path\":\"/x\",\"n\":7}");
    assert_alog_str(l, ALOG_PATH, "/x"); /* an access-log key, kept as a field */
    assert_alog_str(l, ALOG_RAW, NULL);
    assert_int_equal(l->response_code, -1); /* no response code: an application log */
    assert_int_equal(l->direction, ALOG_DIRECTION_UNKNOWN);
    assert_false(access_log_is_error(l));

    l = &b->logs[1];
    assert_int_equal(l->time_unix_nano, UINT64_C(1700000000000000002)); /* observed time */
    assert_false(l->has_trace_id);
    assert_alog_str(l, ALOG_SEVERITY, "WARN2");
    assert_alog_str(l, ALOG_SEVERITY_NUMBER, "14");
    assert_alog_str(l, ALOG_BODY, "{\"m\":\"x\"}");
    /* A status code without a method or upstream cluster is an application log's attribute. */
    assert_int_equal(l->response_code, -1);

    l = &b->logs[2];
    assert_true(l->time_unix_nano > UINT64_C(1700000000000000000)); /* no time: received now */
    assert_alog_str(l, ALOG_SEVERITY, NULL); /* unknown numbers are unspecified */
    assert_alog_str(l, ALOG_SEVERITY_NUMBER, NULL);
    assert_alog_str(l, ALOG_BODY, "[1,1.5]");
    assert_alog_str(l, ALOG_ATTRIBUTES, NULL);
    span_batch_destroy(b);

    /* No service.name: OTel's default. */
    b = decode_json_ok("", "{}");
    assert_alog_str(&b->logs[0], ALOG_SERVICE, "unknown_service");
    span_batch_destroy(b);
}

/* Envoy's OpenTelemetry access logger: node info as resource attributes, the operator's
 * attributes (command operators, so strings), the request's trace context in the record. */
#define ENVOY_RES                                                                                  \
    KV("log_name", "otel_envoy_access_log")                                                        \
    "," KV("zone_name", "z1") "," KV("cluster_name", "productpage.default") "," KV(                \
        "node_name", "sidecar~10.0.0.7~productpage-v1-123.default~default.svc.cluster.local")

static const struct map_case {
    const char *name;
    const char *res;
    const char *record;
    int64_t code, duration, bytes_in, bytes_out;
    const char *service, *method, *path, *flags, *cluster, *request_id, *authority, *ua;
    enum alog_direction dir;
} map_cases[] = {
    {"envoy attributes, outbound", ENVOY_RES,
     "{\"timeUnixNano\":\"1700000000000000000\",\"traceId\":\"" TID "\",\"spanId\":\"" SID "\","
     "\"body\":{\"stringValue\":\"[2023-11-14T22:13:20.000Z] \\\"GET /p HTTP/1.1\\\" 503\"},"
     "\"attributes\":[" KV("response_code", "503") "," KV("method", "GET") "," KV("path", "/p") "," KV("response_flags", "UF") "," KV("upstream_cluster", "outbound|9080||reviews.default.svc.cluster.local") "," KV(
         "duration",
         "12") "," KV("bytes_received",
                      "0") "," KV("bytes_sent",
                                  "91") "," KV("request_id",
                                               "r-1") "," KV("authority",
                                                             "reviews:9080") "," KV("user_agent",
                                                                                    "curl") "," KV("upstream_service_time",
                                                                                                   "-") "]}",
     503, 12, 0, 91, "productpage", "GET", "/p", "UF",
     "outbound|9080||reviews.default.svc.cluster.local", "r-1", "reviews:9080", "curl",
     ALOG_DIRECTION_OUTBOUND},
    {"inbound, service from the cluster", "",
     "{\"attributes\":[" KV("response_code", "200") "," KV("method", "POST") "," KV(
         "upstream_cluster", "inbound|9080||") "," KV("authority", "ratings.shop:9080") "]}",
     200, -1, -1, -1, "ratings", "POST", NULL, "-", "inbound|9080||", NULL, "ratings.shop:9080",
     NULL, ALOG_DIRECTION_INBOUND},
    {"semantic conventions, typed", SVC,
     "{\"attributes\":[{\"key\":\"http.response.status_code\",\"value\":{\"intValue\":\"201\"}}"
     "," KV("http.request.method", "PUT") "," KV("url.path", "/u") "," KV(
         "user_agent.original",
         "ua") "," KV("server.address",
                      "api") ",{\"key\":\"http.request.header.x-request-id\",\"value\":"
                             "{\"arrayValue\":{\"values\":[{\"stringValue\":\"r-2\"}]}}},{\"key\":"
                             "\"http.response.body."
                             "size\",\"value\":{\"doubleValue\":10}},{\"key\":\"http.request.body."
                             "size\",\"value\":"
                             "{\"intValue\":3}}]}",
     201, -1, 3, 10, "shop", "PUT", "/u", "-", NULL, "r-2", "api", "ua", ALOG_DIRECTION_UNKNOWN},
    {"kvlist body", KV("service.name", "unknown_service:node"),
     "{\"body\":{\"kvlistValue\":{\"values\":[" KV("response_code", "0") "," KV(
         "method", "GET") "," KV("upstream_cluster",
                                 "outbound|80||web") "," KV("response_flags",
                                                            "UH") "," KV("source_workload",
                                                                         "front") "]}}}",
     0, -1, -1, -1, "front", "GET", NULL, "UH", "outbound|80||web", NULL, NULL, NULL,
     ALOG_DIRECTION_OUTBOUND},
    {"JSON object in a string body", SVC,
     "{\"body\":{\"stringValue\":\" {\\\"response_code\\\":404,\\\"method\\\":\\\"GET\\\","
     "\\\"path\\\":\\\"/j\\\",\\\"duration\\\":\\\"5\\\",\\\"upstream_cluster\\\":"
     "\\\"outbound|80||x\\\"}\"}}",
     404, 5, -1, -1, "shop", "GET", "/j", "-", "outbound|80||x", NULL, NULL, NULL,
     ALOG_DIRECTION_OUTBOUND},
    {"attributes win over the body", SVC,
     "{\"attributes\":[" KV("method", "GET") "," KV("response_code", "200") "," KV(
         "upstream_cluster", "c") "],"
                                  "\"body\":{\"kvlistValue\":{\"values\":[" KV(
                                      "method", "POST") "," KV("path", "/b") "]}}}",
     200, -1, -1, -1, "shop", "GET", "/b", "-", "c", NULL, NULL, NULL, ALOG_DIRECTION_UNKNOWN},
    {"bad response code: an application log", SVC,
     "{\"attributes\":[" KV("method", "GET") "," KV("response_code", "abc") "]}", -1, -1, -1, -1,
     "shop", "GET", NULL, NULL, NULL, NULL, NULL, NULL, ALOG_DIRECTION_UNKNOWN},
};

static void test_access_mapping(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof map_cases / sizeof map_cases[0]; i++) {
        const struct map_case *c = &map_cases[i];
        print_message("case: %s\n", c->name);
        struct span_batch *b = decode_json_ok(c->res, c->record);
        assert_int_equal(b->n_logs, 1);
        const struct access_log *l = &b->logs[0];
        assert_int_equal(l->response_code, c->code);
        assert_int_equal(l->duration_ms, c->duration);
        assert_int_equal(l->bytes_received, c->bytes_in);
        assert_int_equal(l->bytes_sent, c->bytes_out);
        assert_int_equal(l->upstream_service_time_ms, -1);
        assert_alog_str(l, ALOG_SERVICE, c->service);
        assert_alog_str(l, ALOG_METHOD, c->method);
        assert_alog_str(l, ALOG_PATH, c->path);
        assert_alog_str(l, ALOG_RESPONSE_FLAGS, c->flags);
        assert_alog_str(l, ALOG_UPSTREAM_CLUSTER, c->cluster);
        assert_alog_str(l, ALOG_REQUEST_ID, c->request_id);
        assert_alog_str(l, ALOG_AUTHORITY, c->authority);
        assert_alog_str(l, ALOG_USER_AGENT, c->ua);
        assert_int_equal(l->direction, c->dir);
        span_batch_destroy(b);
    }
}

/* ----- protobuf ------------------------------------------------------------------------------ */

typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;

/* kv = {key: value}, value a string (s) or, when s is NULL, the integer i. */
static pb_kv *pb_attr(pb_kv *kv, pb_any *v, const char *key, const char *s, int64_t i)
{
    *v = (pb_any)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    v->value_case = s ? OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
                      : OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    if (s) v->string_value = (char *)s; /* a oneof: one union member */
    else v->int_value = i;
    *kv = (pb_kv)OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
    kv->key = (char *)key;
    kv->value = v;
    return kv;
}

/* Resource {service.name a}, two records: an access-log one (trace id of tid_len bytes) and an
 * application log. */
static uint8_t *pack_request(const char *trace_id, size_t tid_len, size_t *len)
{
    pb_any vals[5];
    pb_kv kvs[5];
    pb_kv *attrs[] = {pb_attr(&kvs[0], &vals[0], "response_code", NULL, 502),
                      pb_attr(&kvs[1], &vals[1], "method", "GET", 0),
                      pb_attr(&kvs[2], &vals[2], "upstream_cluster",
                              "outbound|80||b.ns.svc.cluster.local", 0)};
    pb_kv *res_attrs[] = {pb_attr(&kvs[3], &vals[3], "service.name", "a", 0)};
    pb_attr(&kvs[4], &vals[4], "body", "hello", 0);
    pb_any body = vals[4];
    /* Designated initializers: the fields not named are zero, which protobuf-c packs as absent. */
    Opentelemetry__Proto__Logs__V1__LogRecord access = {
        PROTOBUF_C_MESSAGE_INIT(&opentelemetry__proto__logs__v1__log_record__descriptor),
        .time_unix_nano = UINT64_C(1700000000000000000), .n_attributes = 3, .attributes = attrs,
        .trace_id = {tid_len, (uint8_t *)trace_id}};
    Opentelemetry__Proto__Logs__V1__LogRecord app = {
        PROTOBUF_C_MESSAGE_INIT(&opentelemetry__proto__logs__v1__log_record__descriptor),
        .observed_time_unix_nano = UINT64_C(1700000000000000005),
        .severity_number = OPENTELEMETRY__PROTO__LOGS__V1__SEVERITY_NUMBER__SEVERITY_NUMBER_ERROR,
        .body = &body};
    Opentelemetry__Proto__Logs__V1__LogRecord *recs[] = {&access, &app};
    Opentelemetry__Proto__Logs__V1__ScopeLogs sl = {
        PROTOBUF_C_MESSAGE_INIT(&opentelemetry__proto__logs__v1__scope_logs__descriptor), NULL, 2,
        recs, NULL};
    Opentelemetry__Proto__Logs__V1__ScopeLogs *sls[] = {&sl};
    Opentelemetry__Proto__Resource__V1__Resource res = {
        PROTOBUF_C_MESSAGE_INIT(&opentelemetry__proto__resource__v1__resource__descriptor), 1,
        res_attrs, 0};
    Opentelemetry__Proto__Logs__V1__ResourceLogs rl = {
        PROTOBUF_C_MESSAGE_INIT(&opentelemetry__proto__logs__v1__resource_logs__descriptor), &res,
        1, sls, NULL};
    Opentelemetry__Proto__Logs__V1__ResourceLogs *rls[] = {&rl};
    Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest req = {
        PROTOBUF_C_MESSAGE_INIT(
            &opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor),
        1, rls};
    *len = opentelemetry__proto__collector__logs__v1__export_logs_service_request__get_packed_size(
        &req);
    uint8_t *buf = malloc(*len + 1);
    assert_non_null(buf);
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__pack(&req, buf);
    return buf;
}

static void test_proto(void **state)
{
    (void)state;
    static const char tid[16] = "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10";
    size_t len;
    uint8_t *body = pack_request(tid, 16, &len);
    struct span_batch *b;
    char err[512];
    assert_int_equal(test_decode(otlp_decode_logs_proto, body, len, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_logs, 2);
    assert_int_equal(b->rejected, 0);
    const struct access_log *l = &b->logs[0];
    assert_int_equal(l->time_unix_nano, UINT64_C(1700000000000000000));
    assert_int_equal(l->response_code, 502);
    assert_true(l->has_trace_id);
    assert_memory_equal(l->trace_id, tid, 16);
    assert_false(l->has_span_id);
    assert_alog_str(l, ALOG_SERVICE, "a");
    assert_alog_str(l, ALOG_METHOD, "GET");
    assert_int_equal(l->direction, ALOG_DIRECTION_OUTBOUND);
    assert_alog_str(l, ALOG_ATTRIBUTES,
               "{\"response_code\":502,\"method\":\"GET\",\"upstream_cluster\":"
               "\"outbound|80||b.ns.svc.cluster.local\"}");
    l = &b->logs[1];
    assert_int_equal(l->time_unix_nano, UINT64_C(1700000000000000005));
    assert_int_equal(l->response_code, -1);
    assert_alog_str(l, ALOG_SEVERITY, "ERROR");
    assert_alog_str(l, ALOG_SEVERITY_NUMBER, "17");
    assert_alog_str(l, ALOG_BODY, "hello");
    span_batch_destroy(b);
    free(body);

    /* A trace id of 5 bytes refuses that record alone, with its path. */
    body = pack_request(tid, 5, &len);
    assert_int_equal(test_decode(otlp_decode_logs_proto, body, len, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_logs, 1);
    assert_int_equal(b->rejected, 1);
    assert_string_equal(
        b->reject_reason,
        "resource_logs[0].scope_logs[0].log_records[0].trace_id: length 5, want 16");
    span_batch_destroy(b);

    /* Truncated: undecodable. Too many records: -E2BIG before unpacking. */
    struct decode_limits lim;
    decode_limits_default(&lim);
    assert_int_equal(test_decode(otlp_decode_logs_proto, body, len - 3, NULL, &b, err, sizeof err),
                     -EINVAL);
    assert_true(err[0] != '\0');
    span_batch_destroy(b);
    lim.max_spans = 1;
    assert_int_equal(test_decode(otlp_decode_logs_proto, body, len, &lim, &b, err, sizeof err),
                     -E2BIG);
    span_batch_destroy(b);
    free(body);
}

/* What the SDK's two exporters sent for the same three records (tests/data/otlp_logs, written
 * by the JS SDK 0.223.1 exporters) decodes to the same records; the proto-names fixture too. */
static void test_fixtures(void **state)
{
    (void)state;
    struct span_batch *b[2];
    char err[512];
    size_t len;
    char *pb = test_read_fixture("otlp_logs", "sdk.pb", &len);
    assert_int_equal(test_decode(otlp_decode_logs_proto, pb, len, NULL, &b[0], err, sizeof err), 0);
    free(pb);
    char *js = test_read_fixture("otlp_logs", "sdk.json", &len);
    assert_int_equal(test_decode(otlp_decode_logs_json, js, len, NULL, &b[1], err, sizeof err), 0);
    free(js);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(b[k]->n_logs, 3);
        assert_int_equal(b[k]->rejected, 0);
        const struct access_log *l = b[k]->logs;
        assert_int_equal(l[0].time_unix_nano, UINT64_C(1700000000000000000));
        assert_true(l[0].has_trace_id && l[0].has_span_id);
        assert_alog_str(&l[0], ALOG_BODY, "hello");
        assert_alog_str(&l[0], ALOG_SEVERITY, "INFO");
        assert_alog_str(&l[0], ALOG_ATTRIBUTES,
                        "{\"n\":1,\"d\":1.5,\"b\":true,\"arr\":[\"a\",\"b\"]}");
        assert_int_equal(l[0].response_code, -1);
        assert_alog_str(&l[0], ALOG_SERVICE, "shop");
        assert_int_equal(l[1].response_code, 503);
        assert_int_equal(l[1].duration_ms, 12);
        assert_int_equal(l[1].direction, ALOG_DIRECTION_OUTBOUND);
        assert_alog_str(&l[1], ALOG_BODY, "{\"k\":\"v\",\"nested\":{\"x\":[1,2]}}");
        assert_int_equal(l[2].response_code, 200);
        assert_int_equal(l[2].direction, ALOG_DIRECTION_INBOUND);
        assert_alog_str(&l[2], ALOG_SERVICE, "shop");
        for (int f = 0; f < ALOG_STR_COUNT; f++)
            if (f != ALOG_ATTRIBUTES || k == 0)
                assert_int_equal(!b[0]->logs[1].str[f].ptr, !b[k]->logs[1].str[f].ptr);
    }
    span_batch_destroy(b[0]);
    span_batch_destroy(b[1]);

    js = test_read_fixture("otlp_logs", "proto_names.json", &len);
    assert_int_equal(test_decode(otlp_decode_logs_json, js, len, NULL, &b[0], err, sizeof err), 0);
    free(js);
    const struct access_log *l = b[0]->logs;
    assert_int_equal(b[0]->n_logs, 3);
    assert_int_equal(l[0].response_code, 0);
    assert_int_equal(l[0].direction, ALOG_DIRECTION_INBOUND);
    assert_alog_str(&l[0], ALOG_SERVICE, "productpage"); /* the resource's cluster_name */
    assert_alog_str(&l[0], ALOG_REQUEST_ID, "r-1");
    assert_alog_str(&l[0], ALOG_SEVERITY, "WARN2");
    assert_alog_str(&l[0], ALOG_ATTRIBUTES, "{\"d\":\"NaN\"}");
    assert_int_equal(l[0].trace_id[9], 0x0a);
    assert_int_equal(l[1].response_code, -1); /* the null record */
    assert_int_equal(l[2].response_code, 200);
    assert_alog_str(&l[2], ALOG_METHOD, "POST");
    span_batch_destroy(b[0]);
}

/* ----- response, storage, rendering, RED ------------------------------------------------------ */

static void test_response(void **state)
{
    (void)state;
    char *out, *tr;
    size_t n, tn;
    assert_int_equal(otlp_encode_export_logs_response(true, 2, "why", &out, &n), 0);
    assert_string_equal(out, "{\"partialSuccess\":{\"rejectedLogRecords\":\"2\",\"errorMessage\":"
                             "\"why\"}}");
    free(out);
    assert_int_equal(otlp_encode_export_logs_response(true, 0, NULL, &out, &n), 0);
    assert_string_equal(out, "{}");
    free(out);
    /* protobuf: ExportLogsPartialSuccess has the field numbers of ExportTracePartialSuccess. */
    assert_int_equal(otlp_encode_export_logs_response(false, 3, "m", &out, &n), 0);
    assert_int_equal(otlp_encode_export_response(false, 3, "m", &tr, &tn), 0);
    assert_int_equal(n, tn);
    assert_memory_equal(out, tr, n);
    Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse *r =
        opentelemetry__proto__collector__logs__v1__export_logs_service_response__unpack(
            NULL, n, (const uint8_t *)out);
    assert_non_null(r);
    assert_non_null(r->partial_success);
    assert_int_equal(r->partial_success->rejected_log_records, 3);
    assert_string_equal(r->partial_success->error_message, "m");
    opentelemetry__proto__collector__logs__v1__export_logs_service_response__free_unpacked(r, NULL);
    free(out);
    free(tr);
}

static void test_store_codec_and_render(void **state)
{
    (void)state;
    struct span_batch *b = decode_json_ok(
        SVC, "{\"timeUnixNano\":\"1700000000000000000\",\"severityNumber\":9,\"body\":"
             "{\"stringValue\":\"hi \\\"you\\\"\"},\"attributes\":[" KV("k", "<v>") "]}");
    struct buf enc = {0};
    assert_int_equal(alog_encode(&enc, &b->logs[0]), 0);
    struct span_batch *back = span_batch_create();
    assert_int_equal(alog_decode(enc.p, enc.len, back), 0);
    const struct access_log *l = &back->logs[0];
    assert_alog_str(l, ALOG_SEVERITY, "INFO");
    assert_alog_str(l, ALOG_SEVERITY_NUMBER, "9");
    assert_alog_str(l, ALOG_BODY, "hi \"you\"");
    assert_alog_str(l, ALOG_ATTRIBUTES, "{\"k\":\"\\u003cv\\u003e\"}");
    struct sbuf sb;
    sb_init(&sb, 1 << 20);
    logs_render_record(&sb, l);
    size_t n;
    char *json = sb_take(&sb, &n);
    assert_non_null(json);
    static const char *const want[] = {
        "\"response_code\":null",      "\"line\":\"hi \\\"you\\\"\"",
        "\"severity\":\"INFO\"",       "\"severity_number\":9",
        "\"body\":\"hi \\\"you\\\"\"", "\"attributes\":{\"k\":\"\\u003cv\\u003e\"}}",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(json, want[i])) fail_msg("missing %s in %s", want[i], json);
    free(json);
    free(enc.p);
    span_batch_destroy(back);
    span_batch_destroy(b);
}

static void test_red_only_access_logs(void **state)
{
    (void)state;
    struct red *r = red_create(NULL);
    assert_non_null(r);
    struct span_batch *b = decode_json_ok(
        SVC,
        "{\"body\":{\"stringValue\":\"app\"},\"severityNumber\":17},"
        "{\"attributes\":[" KV("path", "/x") "," KV(
            "http.response.status_code",
            "500") "]},"
                   "{\"attributes\":[" KV("response_code", "503") "," KV("method", "GET") "," KV(
                       "upstream_cluster", "outbound|80||b.ns.svc.cluster.local") "]}");
    assert_int_equal(b->n_logs, 3);
    red_observe_batch(r, b);
    span_batch_destroy(b);
    char *out;
    size_t n;
    assert_int_equal(red_render(r, false, &out, &n), 0);
    /* One sample in all: the access-log record. */
    const char *p = strstr(out, "istio_requests_total{");
    assert_non_null(p);
    assert_non_null(strstr(p, "response_code=\"503\""));
    assert_non_null(strstr(p, "} 1\n"));
    assert_null(strstr(p + 1, "istio_requests_total{"));
    free(out);
    red_destroy(r);
}

/* ----- the trace view (query/jaeger.c "accessLogs") -------------------------------------------- */

#define T0 "1700000000000000000" /* the trace's first span starts here (ns) */

static json_t *get_trace(struct store *st, const char *id)
{
    char path[64];
    snprintf(path, sizeof path, "/api/traces/%s", id);
    struct query_response resp = {0};
    assert_int_equal(query_handle(st, path, NULL, 0, &resp), 0);
    assert_int_equal(resp.status, 200);
    json_error_t jerr;
    json_t *j = json_loadb(resp.body, resp.len, 0, &jerr);
    free(resp.body);
    assert_non_null(j);
    json_t *t = json_incref(json_array_get(json_object_get(j, "data"), 0));
    json_decref(j);
    assert_non_null(t);
    return t;
}

static void test_trace_view(void **state)
{
    (void)state;
    char dir[64], path[128];
    struct store *st = test_store_create(dir, path, "otlp_logs_trace");
    /* Trace TID: a span of "a", a span of "b" tagged with Envoy's guid:x-request-id. Trace
     * 2...2: one span, no records. */
    static const char traces[] =
        "{\"resourceSpans\":[{\"resource\":{\"attributes\":[" KV("service.name", "a") "]},"
        "\"scopeSpans\":[{\"spans\":[{\"traceId\":\"" TID "\",\"spanId\":\"" SID "\","
        "\"name\":\"x\",\"startTimeUnixNano\":\"" T0 "\",\"endTimeUnixNano\":\"" T0 "\"},"
        "{\"traceId\":\"22222222222222222222222222222222\",\"spanId\":\"" SID "\",\"name\":"
        "\"y\",\"startTimeUnixNano\":\"" T0 "\"}]}]},"
        "{\"resource\":{\"attributes\":[" KV("service.name", "b") "]},\"scopeSpans\":[{\"spans\":"
        "[{\"traceId\":\"" TID "\",\"spanId\":\"2122232425262728\",\"name\":\"z\","
        "\"startTimeUnixNano\":\"" T0 "\",\"attributes\":[" KV("guid:x-request-id", "rid-1")
        "]}]}]}]}";
    struct span_batch *b[3];
    char err[512];
    assert_int_equal(test_decode(otlp_decode_traces_json, traces, strlen(traces), NULL, &b[0], err,
                                 sizeof err),
                     0);
    assert_int_equal(b[0]->n_spans, 3);
    /* Records: by trace id (a); by request id (b, 1 ms after); not joined: another request id,
     * a service not in the trace, outside the minute around the trace. */
#define REC(t, rid) "{\"timeUnixNano\":\"" t "\",\"attributes\":[" KV("request_id", rid) "]}"
    b[1] = decode_json_ok(SVC, "{\"timeUnixNano\":\"1700000000002000000\",\"traceId\":\"" TID
                               "\",\"body\":{\"stringValue\":\"in trace\"}}");
    char *body = request(KV("service.name", "b"),
                         REC("1700000000001000000", "rid-1") "," REC("1700000000003000000", "x") ","
                         REC("1700000200000000000", "rid-1"));
    assert_int_equal(test_decode(otlp_decode_logs_json, body, strlen(body), NULL, &b[2], err,
                                 sizeof err),
                     0);
    free(body);
    struct span_batch *c;
    body = request(KV("service.name", "c"), REC("1700000000001000000", "rid-1"));
    assert_int_equal(test_decode(otlp_decode_logs_json, body, strlen(body), NULL, &c, err,
                                 sizeof err),
                     0);
    free(body);
#undef REC
    struct span_batch *all[] = {b[0], b[1], b[2], c};
    assert_int_equal(store_put_batches(st, all, 4), 0);

    json_t *t = get_trace(st, TID);
    json_t *logs = json_object_get(t, "accessLogs");
    assert_int_equal(json_array_size(logs), 2);
    json_t *first = json_array_get(logs, 0), *second = json_array_get(logs, 1);
    assert_int_equal(json_integer_value(json_object_get(first, "time")), INT64_C(1700000000001000));
    assert_string_equal(json_string_value(json_object_get(first, "service")), "b");
    assert_string_equal(json_string_value(json_object_get(first, "request_id")), "rid-1");
    assert_true(json_is_null(json_object_get(first, "traceID")));
    assert_string_equal(json_string_value(json_object_get(second, "body")), "in trace");
    assert_string_equal(json_string_value(json_object_get(second, "traceID")), TID);
    json_decref(t);

    t = get_trace(st, "22222222222222222222222222222222");
    assert_null(json_object_get(t, "accessLogs"));
    assert_int_equal(json_array_size(json_object_get(t, "spans")), 1);
    json_decref(t);
    for (int i = 0; i < 3; i++) span_batch_destroy(b[i]);
    span_batch_destroy(c);
    test_store_destroy(st, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_cases),
        cmocka_unit_test(test_app_log),
        cmocka_unit_test(test_access_mapping),
        cmocka_unit_test(test_proto),
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_store_codec_and_render),
        cmocka_unit_test(test_red_only_access_logs),
        cmocka_unit_test(test_trace_view),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
