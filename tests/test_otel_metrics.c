/*
 * test_otel_metrics.c: the OTLP metrics decoders (protobuf and JSON), the store's temporality
 * rules, the OpenTelemetry-to-Prometheus naming, name clashes, the series limit and expiry (with
 * an injected clock). Table-driven where the cases are data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otel_metrics.h"

#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"

/* ----- naming ------------------------------------------------------------------------------ */

static void test_family_names(void **state)
{
    (void)state;
    static const struct {
        const char *name, *unit;
        enum om_type type;
        const char *want;
    } cases[] = {
        {"http.server.duration", "s", OM_HISTOGRAM, "http_server_duration_seconds"},
        {"http.server.duration", "ms", OM_HISTOGRAM, "http_server_duration_milliseconds"},
        {"requests", "{request}", OM_COUNTER, "requests_total"},
        {"requests_total", "", OM_COUNTER, "requests_total"},
        {"requests_total", "s", OM_COUNTER, "requests_seconds_total"},
        {"bytes.sent", "By", OM_COUNTER, "bytes_sent_total"}, /* already holds the unit */
        {"sent", "By", OM_COUNTER, "sent_bytes_total"},
        {"cpu.utilization", "1", OM_GAUGE, "cpu_utilization_ratio"},
        {"cpu.utilization", "1", OM_COUNTER, "cpu_utilization_total"},
        {"throughput", "By/s", OM_GAUGE, "throughput_bytes_per_second"},
        {"latency_seconds", "s", OM_HISTOGRAM, "latency_seconds"},
        {"9lives", "", OM_GAUGE, "_9lives"},
        {"a..b--c", "", OM_GAUGE, "a_b_c"},
        {"ns:metric", "", OM_GAUGE, "ns:metric"},
        {"queue.size", "{item}", OM_GAUGE, "queue_size"},
        {"temp", "Cel", OM_GAUGE, "temp_celsius"},
        {"mem", "MiBy", OM_GAUGE, "mem_mebibytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        otel_metrics_family_name(cases[i].name, cases[i].unit, cases[i].type, out, sizeof out);
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("%s [%s]: got %s, want %s", cases[i].name, cases[i].unit, out, cases[i].want);
    }
}

static void test_label_keys(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"http.method", "http_method"}, {"9x", "_9x"}, {"a..b", "a_b"},
        {"", "_"},                      {"ok_key", "ok_key"}, {"k8s.pod:name", "k8s_pod_name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        otel_metrics_label_key(cases[i][0], out, sizeof out);
        assert_string_equal(out, cases[i][1]);
    }
}

static void test_format_number(void **state)
{
    (void)state;
    char out[48];
    otel_metrics_format_number(out, sizeof out, 0.1);
    assert_string_equal(out, "0.1");
    otel_metrics_format_number(out, sizeof out, 2500);
    assert_string_equal(out, "2500");
    otel_metrics_format_number(out, sizeof out, 1.0 / 0.0);
    assert_string_equal(out, "+Inf");
}

/* ----- a store with an injected clock ------------------------------------------------------ */

static int64_t fake_now;
static int64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

static struct otel_metrics *store(uint64_t max_series, int64_t expiry_ns)
{
    struct otel_metrics_options o = {.max_series = max_series,
                                     .expiry_ns = expiry_ns,
                                     .clock_ns = fake_clock};
    struct otel_metrics *m = otel_metrics_create(&o);
    assert_non_null(m);
    return m;
}

static char *render(struct otel_metrics *m)
{
    char *out;
    size_t len;
    assert_int_equal(otel_metrics_render(m, &out, &len), 0);
    assert_int_equal(strlen(out), len);
    return out;
}

/* True when the rendered text has this exact line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0')) return true;
    return false;
}

static const struct om_label svc_attrs[] = {
    {"service.name", "shop"}, {"service.namespace", "prod"}, {"service.instance.id", "i-1"},
    {"host.name", "h\"1\n"}};
static const struct om_resource svc = {svc_attrs, 4};
static const struct om_scope lib = {"my.lib", "1.0"};

/* Applies one point of a number metric. */
static struct om_result apply_number(struct otel_metrics *m, const char *name, enum om_type t,
                                     enum om_temporality tmp, double v, uint64_t start,
                                     uint64_t time, const char *label_value)
{
    struct om_label l = {"http.method", label_value};
    struct om_point p = {.labels = &l, .n_labels = 1, .start_ns = start, .time_ns = time,
                         .value = v};
    struct om_metric mt = {.resource = &svc, .scope = &lib, .name = name, .help = "help",
                           .unit = "", .type = t, .temporality = tmp, .points = &p,
                           .n_points = 1};
    struct om_result r;
    assert_int_equal(otel_metrics_apply(m, &mt, 1, &r), 0);
    return r;
}

#define LABELS "http_method=\"GET\",instance=\"i-1\",job=\"prod/shop\",otel_scope_name=\"my.lib\",otel_scope_version=\"1.0\""

static void test_temporality(void **state)
{
    (void)state;
    /* Each case: a sequence of (value, start, time) points on one series, then the line. */
    static const struct {
        const char *what;
        enum om_type type;
        enum om_temporality t;
        double v[4];
        uint64_t start[4], time[4];
        int n;
        const char *want;
    } cases[] = {
        {"cumulative counter: latest wins", OM_COUNTER, OM_CUMULATIVE, {3, 5, 9}, {1, 1, 1},
         {10, 20, 30}, 3, "c1_total{" LABELS "} 9"},
        {"cumulative counter: reset (new start) stored as given", OM_COUNTER, OM_CUMULATIVE,
         {3, 9, 2}, {1, 1, 40}, {10, 20, 50}, 3, "c2_total{" LABELS "} 2"},
        {"cumulative: an older point does not move the series back", OM_COUNTER, OM_CUMULATIVE,
         {3, 9, 5}, {1, 1, 1}, {10, 30, 20}, 3, "c3_total{" LABELS "} 9"},
        {"delta counter: accumulated", OM_COUNTER, OM_DELTA, {3, 4, 5}, {0, 10, 20},
         {10, 20, 30}, 3, "c4_total{" LABELS "} 12"},
        {"delta counter: a retried point counts once", OM_COUNTER, OM_DELTA, {3, 4, 4},
         {0, 10, 10}, {10, 20, 20}, 3, "c5_total{" LABELS "} 7"},
        {"delta up-down (gauge): accumulated", OM_GAUGE, OM_DELTA, {3, -5, 1}, {0, 10, 20},
         {10, 20, 30}, 3, "g1{" LABELS "} -1"},
        {"gauge: last value", OM_GAUGE, OM_CUMULATIVE, {0.5, 0.25}, {0, 0}, {10, 20}, 2,
         "g2{" LABELS "} 0.25"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct otel_metrics *m = store(100, 0);
        char name[8];
        snprintf(name, sizeof name, "%c%zu", cases[i].type == OM_COUNTER ? 'c' : 'g',
                 cases[i].type == OM_COUNTER ? i + 1 : i - 4);
        for (int k = 0; k < cases[i].n; k++) {
            struct om_result r = apply_number(m, name, cases[i].type, cases[i].t, cases[i].v[k],
                                              cases[i].start[k], cases[i].time[k], "GET");
            assert_int_equal(r.accepted, 1);
        }
        char *text = render(m);
        if (!has_line(text, cases[i].want)) fail_msg("%s: no line %s in\n%s", cases[i].what, cases[i].want, text);
        free(text);
        otel_metrics_destroy(m);
    }
}

static struct om_result apply_hist(struct otel_metrics *m, enum om_temporality t,
                                   const double *bounds, uint32_t nb, const uint64_t *buckets,
                                   double sum, uint64_t time)
{
    uint64_t count = 0;
    for (uint32_t i = 0; i <= nb; i++) count += buckets[i];
    struct om_point p = {.time_ns = time, .count = count, .sum = sum, .has_sum = true,
                         .bounds = bounds, .buckets = buckets, .n_bounds = nb};
    struct om_metric mt = {.name = "lat", .help = "", .unit = "s", .type = OM_HISTOGRAM,
                           .temporality = t, .points = &p, .n_points = 1};
    struct om_result r;
    assert_int_equal(otel_metrics_apply(m, &mt, 1, &r), 0);
    return r;
}

static void test_histogram_delta(void **state)
{
    (void)state;
    struct otel_metrics *m = store(100, 0);
    const double b1[] = {0.1, 1}, b2[] = {0.5};
    const uint64_t k1[] = {1, 2, 3}, k2[] = {0, 1, 1}, k3[] = {4, 0};
    apply_hist(m, OM_DELTA, b1, 2, k1, 5, 10);
    apply_hist(m, OM_DELTA, b1, 2, k2, 2, 20);
    char *text = render(m);
    assert_true(has_line(text, "lat_seconds_bucket{le=\"0.1\"} 1"));
    assert_true(has_line(text, "lat_seconds_bucket{le=\"1\"} 4"));
    assert_true(has_line(text, "lat_seconds_bucket{le=\"+Inf\"} 8"));
    assert_true(has_line(text, "lat_seconds_sum 7"));
    assert_true(has_line(text, "lat_seconds_count 8"));
    assert_true(has_line(text, "# TYPE lat_seconds histogram"));
    free(text);
    /* Other bounds: the series restarts from that point. */
    apply_hist(m, OM_DELTA, b2, 1, k3, 1, 30);
    text = render(m);
    assert_true(has_line(text, "lat_seconds_bucket{le=\"0.5\"} 4"));
    assert_true(has_line(text, "lat_seconds_bucket{le=\"+Inf\"} 4"));
    assert_false(has_line(text, "lat_seconds_bucket{le=\"0.1\"} 1"));
    free(text);
    otel_metrics_destroy(m);
}

static void test_target_info_and_escaping(void **state)
{
    (void)state;
    struct otel_metrics *m = store(100, 0);
    apply_number(m, "q", OM_GAUGE, OM_CUMULATIVE, 1, 0, 1, "a\\b\"c\nd");
    char *text = render(m);
    assert_true(has_line(text, "target_info{host_name=\"h\\\"1\\n\",instance=\"i-1\",job=\"prod/shop\"} 1"));
    assert_true(has_line(text, "q{http_method=\"a\\\\b\\\"c\\nd\",instance=\"i-1\",job=\"prod/shop\",otel_scope_name=\"my.lib\",otel_scope_version=\"1.0\"} 1"));
    free(text);
    otel_metrics_destroy(m);
}

static void test_long_label_key_refused(void **state)
{
    (void)state;
    struct otel_metrics *m = store(100, 0);
    char key[200];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    struct om_label l[2] = {{key, "v"}, {"ok", "v"}};
    struct om_point p[2] = {{.labels = l, .n_labels = 2, .value = 1},
                            {.labels = l + 1, .n_labels = 1, .value = 2}};
    struct om_metric mt = {.name = "g", .type = OM_GAUGE, .points = p, .n_points = 2};
    struct om_result r;
    assert_int_equal(otel_metrics_apply(m, &mt, 1, &r), 0);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.rejected, 1);
    assert_non_null(strstr(r.reason, "label name over 127 bytes"));
    otel_metrics_destroy(m);
}

static void test_clash_and_conflict(void **state)
{
    (void)state;
    static const struct {
        const char *first, *second;
        enum om_type t1, t2;
        bool second_ok;
    } cases[] = {
        {"foo", "foo_total", OM_COUNTER, OM_GAUGE, false},       /* sample names collide */
        {"bar", "bar_count", OM_HISTOGRAM, OM_GAUGE, false},      /* bar_count is bar's */
        {"baz", "baz", OM_GAUGE, OM_HISTOGRAM, false},            /* type conflict */
        {"ok1", "ok2", OM_GAUGE, OM_GAUGE, true},
        {"x", "istio_requests_total", OM_GAUGE, OM_COUNTER, false}, /* meshscope's own */
        {"y", "meshscope_anything", OM_GAUGE, OM_GAUGE, false},
        {"z", "target_info", OM_GAUGE, OM_GAUGE, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct otel_metrics *m = store(100, 0);
        struct om_result r = apply_number(m, cases[i].first, cases[i].t1, OM_CUMULATIVE, 1, 0, 1, "GET");
        assert_int_equal(r.accepted, 1);
        if (cases[i].t2 == OM_HISTOGRAM) {
            const uint64_t k[] = {1};
            struct om_point p = {.count = 1, .buckets = k};
            struct om_metric mt = {.name = cases[i].second, .type = OM_HISTOGRAM, .points = &p,
                                   .n_points = 1};
            assert_int_equal(otel_metrics_apply(m, &mt, 1, &r), 0);
        } else {
            r = apply_number(m, cases[i].second, cases[i].t2, OM_CUMULATIVE, 1, 0, 1, "GET");
        }
        if (r.accepted != (cases[i].second_ok ? 1u : 0u) || (!cases[i].second_ok && !r.reason[0]))
            fail_msg("%s after %s: accepted %llu (%s)", cases[i].second, cases[i].first,
                     (unsigned long long)r.accepted, r.reason);
        otel_metrics_destroy(m);
    }
}

static void test_series_limit_and_expiry(void **state)
{
    (void)state;
    fake_now = 0;
    struct otel_metrics *m = store(3, 60 * INT64_C(1000000000));
    /* target_info takes one series, so two label sets fit; the third is refused. */
    assert_int_equal(apply_number(m, "s", OM_GAUGE, OM_CUMULATIVE, 1, 0, 1, "a").accepted, 1);
    assert_int_equal(apply_number(m, "s", OM_GAUGE, OM_CUMULATIVE, 1, 0, 1, "b").accepted, 1);
    struct om_result r = apply_number(m, "s", OM_GAUGE, OM_CUMULATIVE, 1, 0, 1, "c");
    assert_int_equal(r.accepted, 0);
    assert_int_equal(r.rejected, 1);
    assert_non_null(strstr(r.reason, "series limit"));
    assert_int_equal(otel_metrics_series(m), 3);
    char *text = render(m);
    assert_true(has_line(text, "meshscope_otlp_metric_points_rejected_total{reason=\"series_limit\"} 1"));
    free(text);
    /* 30 s later "a" is updated, "b" is not; at 70 s "b" (and only b) is gone. */
    fake_now = 30 * INT64_C(1000000000);
    apply_number(m, "s", OM_GAUGE, OM_CUMULATIVE, 2, 0, 2, "a");
    fake_now = 70 * INT64_C(1000000000);
    otel_metrics_expire(m);
    text = render(m);
    assert_non_null(strstr(text, "s{http_method=\"a\""));
    assert_null(strstr(text, "s{http_method=\"b\""));
    free(text);
    /* At 100 s everything is gone, the family and its HELP too. */
    fake_now = 100 * INT64_C(1000000000);
    text = render(m);
    assert_null(strstr(text, "# TYPE s gauge"));
    assert_int_equal(otel_metrics_series(m), 0);
    free(text);
    otel_metrics_destroy(m);
}

/* ----- threads ----------------------------------------------------------------------------- */

/* Many appliers and a renderer at once (run it under TSan to see the locking hold): every delta
 * point must be counted exactly once. */
#define THREADS 4
#define ROUNDS 2000

static struct otel_metrics *shared;

static void *applier(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    char value[16];
    for (int i = 0; i < ROUNDS; i++) {
        /* Each thread its own series in 8 shared families, plus one series all share. */
        char name[16];
        snprintf(name, sizeof name, "fam%d", i % 8);
        snprintf(value, sizeof value, "t%u", (unsigned)id);
        apply_number(shared, name, OM_COUNTER, OM_DELTA, 1, 0, (uint64_t)i + 1, value);
        apply_number(shared, "common", OM_COUNTER, OM_DELTA, 1, 0, 0, "all");
    }
    return NULL;
}

static void *renderer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50; i++) free(render(shared));
    return NULL;
}

static void test_concurrent_apply_and_render(void **state)
{
    (void)state;
    shared = store(10000, 0);
    pthread_t t[THREADS + 1];
    for (uintptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, applier, (void *)i), 0);
    assert_int_equal(pthread_create(&t[THREADS], NULL, renderer, NULL), 0);
    for (int i = 0; i <= THREADS; i++) pthread_join(t[i], NULL);
    char *text = render(shared);
    char line[256];
    /* time 0 = unknown: every point counts. */
    snprintf(line, sizeof line, "common_total{http_method=\"all\",%s} %d",
             "instance=\"i-1\",job=\"prod/shop\",otel_scope_name=\"my.lib\",otel_scope_version=\"1.0\"",
             THREADS * ROUNDS);
    if (!has_line(text, line)) fail_msg("no %s", line);
    snprintf(line, sizeof line, "fam3_total{http_method=\"t2\",%s} %d",
             "instance=\"i-1\",job=\"prod/shop\",otel_scope_name=\"my.lib\",otel_scope_version=\"1.0\"",
             ROUNDS / 8);
    if (!has_line(text, line)) fail_msg("no %s", line);
    /* 8 families x THREADS series + common + target_info */
    assert_int_equal(otel_metrics_series(shared), 8 * THREADS + 2);
    free(text);
    otel_metrics_destroy(shared);
}

/* ----- decoders ---------------------------------------------------------------------------- */

#define RES "{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":\"s\"}}]},"
#define WRAP(metrics) "{\"resourceMetrics\":[" RES "\"scopeMetrics\":[{\"metrics\":[" metrics "]}]}]}"

static void test_decode_json(void **state)
{
    (void)state;
    static const struct {
        const char *what, *body;
        int rc;
        size_t metrics;
        uint64_t points, rejected;
        const char *msg; /* in err (rc < 0) or in the batch's reason */
    } cases[] = {
        {"gauge and sum", WRAP("{\"name\":\"g\",\"gauge\":{\"dataPoints\":[{\"asDouble\":1.5},{\"asInt\":\"3\"}]}},"
                               "{\"name\":\"c\",\"sum\":{\"isMonotonic\":true,\"aggregationTemporality\":\"AGGREGATION_TEMPORALITY_DELTA\",\"dataPoints\":[{\"asInt\":2}]}}"),
         0, 2, 3, 0, NULL},
        {"histogram", WRAP("{\"name\":\"h\",\"histogram\":{\"aggregationTemporality\":2,\"dataPoints\":[{\"count\":\"3\",\"sum\":1,\"bucketCounts\":[\"1\",2],\"explicitBounds\":[0.5]}]}}"),
         0, 1, 1, 0, NULL},
        {"histogram with wrong bucket count", WRAP("{\"name\":\"h\",\"histogram\":{\"aggregationTemporality\":2,\"dataPoints\":[{\"count\":3,\"bucketCounts\":[1,1,1],\"explicitBounds\":[0.5]}]}}"),
         0, 1, 0, 1, "bucket counts must number explicit bounds + 1"},
        {"histogram counts not adding up", WRAP("{\"name\":\"h\",\"histogram\":{\"aggregationTemporality\":2,\"dataPoints\":[{\"count\":9,\"bucketCounts\":[1,1],\"explicitBounds\":[0.5]}]}}"),
         0, 1, 0, 1, "do not add up"},
        {"exponential histogram refused", WRAP("{\"name\":\"e\",\"exponentialHistogram\":{\"dataPoints\":[{\"count\":1},{}]}}"),
         0, 0, 0, 2, "exponential histograms are not supported"},
        {"unspecified temporality", WRAP("{\"name\":\"c\",\"sum\":{\"dataPoints\":[{\"asInt\":2}]}}"),
         0, 0, 0, 1, "want DELTA or CUMULATIVE"},
        {"empty name", WRAP("{\"gauge\":{\"dataPoints\":[{\"asInt\":2}]}}"), 0, 0, 0, 1, "name: empty"},
        {"no recorded value", WRAP("{\"name\":\"g\",\"gauge\":{\"dataPoints\":[{\"asInt\":2,\"flags\":1}]}}"),
         0, 1, 0, 1, "no recorded value"},
        {"summary", WRAP("{\"name\":\"s\",\"summary\":{\"dataPoints\":[{\"count\":2,\"sum\":3,\"quantileValues\":[{\"quantile\":0.5,\"value\":1}]}]}}"),
         0, 1, 1, 0, NULL},
        {"wrong type fails whole", WRAP("{\"name\":\"g\",\"gauge\":{\"dataPoints\":[{\"asDouble\":\"x\"}]}}"),
         -EINVAL, 0, 0, 0, "dataPoints[0].asDouble: expected a number"},
        {"not JSON", "{\"resourceMetrics\":", -EINVAL, 0, 0, 0, "invalid JSON"},
        {"not an object", "[]", -EINVAL, 0, 0, 0, "expected an object"},
        {"empty request", "{}", 0, 0, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct om_batch *b = om_batch_create();
        assert_non_null(b);
        char err[256] = "";
        int rc = otlp_decode_metrics_json((const uint8_t *)cases[i].body, strlen(cases[i].body),
                                          NULL, b, err, sizeof err);
        if (rc != cases[i].rc) fail_msg("%s: rc %d (%s)", cases[i].what, rc, err);
        if (rc == 0) {
            if (b->n_metrics != cases[i].metrics || b->n_points != cases[i].points ||
                b->rejected != cases[i].rejected)
                fail_msg("%s: %zu metrics, %llu points, %llu rejected (%s)", cases[i].what,
                         b->n_metrics, (unsigned long long)b->n_points,
                         (unsigned long long)b->rejected, b->reason);
        }
        if (cases[i].msg && !strstr(rc ? err : b->reason, cases[i].msg))
            fail_msg("%s: message '%s'", cases[i].what, rc ? err : b->reason);
        om_batch_destroy(b);
    }
}

/* Non-string attribute values become label text as the attribute specification writes them. */
static void test_attribute_values(void **state)
{
    (void)state;
    static const struct {
        const char *value_json, *want;
    } cases[] = {
        {"{\"stringValue\":\"a\\\"b\"}", "a\"b"},
        {"{\"intValue\":\"-42\"}", "-42"},
        {"{\"doubleValue\":0.1}", "0.1"},
        {"{\"doubleValue\":\"NaN\"}", "NaN"},
        {"{\"boolValue\":false}", "false"},
        {"{\"bytesValue\":\"AQID\"}", "AQID"},
        {"{\"arrayValue\":{\"values\":[{\"intValue\":1},{\"stringValue\":\"x\"},{\"bytesValue\":\"/w==\"}]}}",
         "[1,\"x\",\"/w==\"]"},
        {"{\"kvlistValue\":{\"values\":[{\"key\":\"k\",\"value\":{\"boolValue\":true}}]}}",
         "{\"k\":true}"},
        {"{}", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"name\":\"g\","
                 "\"gauge\":{\"dataPoints\":[{\"asInt\":1,\"attributes\":[{\"key\":\"a\","
                 "\"value\":%s}]}]}}]}]}]}",
                 cases[i].value_json);
        struct om_batch *b = om_batch_create();
        char err[256] = "";
        int rc = otlp_decode_metrics_json((const uint8_t *)body, strlen(body), NULL, b, err,
                                          sizeof err);
        if (rc || b->n_metrics != 1 || b->metrics[0].points[0].n_labels != 1)
            fail_msg("%s: rc %d %s", cases[i].value_json, rc, err);
        const char *got = b->metrics[0].points[0].labels[0].value;
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got %s, want %s", cases[i].value_json, got, cases[i].want);
        om_batch_destroy(b);
    }
}

static void test_decode_json_point_cap(void **state)
{
    (void)state;
    struct decode_limits lim;
    decode_limits_default(&lim);
    lim.max_spans = 1;
    const char *body = WRAP("{\"name\":\"g\",\"gauge\":{\"dataPoints\":[{\"asInt\":1},{\"asInt\":2}]}}");
    struct om_batch *b = om_batch_create();
    char err[256];
    assert_int_equal(otlp_decode_metrics_json((const uint8_t *)body, strlen(body), &lim, b, err,
                                              sizeof err),
                     -E2BIG);
    assert_non_null(strstr(err, "more than 1 data points"));
    om_batch_destroy(b);
}

typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;

static void test_decode_proto(void **state)
{
    (void)state;
    pb_any v = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    v.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    v.int_value = 200;
    pb_kv kv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
    kv.key = "code";
    kv.value = &v;
    pb_kv *kvs[] = {&kv};

    Opentelemetry__Proto__Metrics__V1__NumberDataPoint np =
        OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__INIT;
    np.value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
    np.as_int = 42;
    np.n_attributes = 1;
    np.attributes = kvs;
    Opentelemetry__Proto__Metrics__V1__NumberDataPoint *nps[] = {&np};
    Opentelemetry__Proto__Metrics__V1__Sum sum = OPENTELEMETRY__PROTO__METRICS__V1__SUM__INIT;
    sum.n_data_points = 1;
    sum.data_points = nps;
    sum.is_monotonic = 1;
    sum.aggregation_temporality =
        OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE;
    Opentelemetry__Proto__Metrics__V1__Metric m1 = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__INIT;
    m1.name = "reqs";
    m1.data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM;
    m1.sum = &sum;

    double bounds[] = {0.1, 1};
    uint64_t counts[] = {1, 1, 0};
    Opentelemetry__Proto__Metrics__V1__HistogramDataPoint hp =
        OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT__INIT;
    hp.count = 2;
    hp.sum_present_case = OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT__SUM_PRESENT_SUM;
    hp.sum = 0.6;
    hp.n_explicit_bounds = 2;
    hp.explicit_bounds = bounds;
    hp.n_bucket_counts = 3;
    hp.bucket_counts = counts;
    Opentelemetry__Proto__Metrics__V1__HistogramDataPoint *hps[] = {&hp};
    Opentelemetry__Proto__Metrics__V1__Histogram h =
        OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM__INIT;
    h.n_data_points = 1;
    h.data_points = hps;
    h.aggregation_temporality =
        OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_DELTA;
    Opentelemetry__Proto__Metrics__V1__Metric m2 = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__INIT;
    m2.name = "lat";
    m2.unit = "s";
    m2.data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM;
    m2.histogram = &h;

    Opentelemetry__Proto__Metrics__V1__Metric *ms[] = {&m1, &m2};
    Opentelemetry__Proto__Metrics__V1__ScopeMetrics sm =
        OPENTELEMETRY__PROTO__METRICS__V1__SCOPE_METRICS__INIT;
    sm.n_metrics = 2;
    sm.metrics = ms;
    Opentelemetry__Proto__Metrics__V1__ScopeMetrics *sms[] = {&sm};
    Opentelemetry__Proto__Metrics__V1__ResourceMetrics rm =
        OPENTELEMETRY__PROTO__METRICS__V1__RESOURCE_METRICS__INIT;
    rm.n_scope_metrics = 1;
    rm.scope_metrics = sms;
    Opentelemetry__Proto__Metrics__V1__ResourceMetrics *rms[] = {&rm};
    Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest req =
        OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_SERVICE_REQUEST__INIT;
    req.n_resource_metrics = 1;
    req.resource_metrics = rms;

    size_t len =
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__get_packed_size(&req);
    uint8_t *buf = malloc(len);
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__pack(&req, buf);

    struct om_batch *b = om_batch_create();
    char err[256] = "";
    assert_int_equal(otlp_decode_metrics_proto(buf, len, NULL, b, err, sizeof err), 0);
    assert_int_equal(b->n_metrics, 2);
    assert_int_equal(b->n_points, 2);
    assert_int_equal(b->metrics[0].type, OM_COUNTER);
    assert_string_equal(b->metrics[0].points[0].labels[0].key, "code");
    assert_string_equal(b->metrics[0].points[0].labels[0].value, "200");
    assert_true(b->metrics[0].points[0].value == 42);
    assert_int_equal(b->metrics[1].type, OM_HISTOGRAM);
    assert_int_equal(b->metrics[1].temporality, OM_DELTA);
    assert_int_equal(b->metrics[1].points[0].n_bounds, 2);
    assert_true(b->metrics[1].points[0].has_sum);

    /* Applied: the store renders the OTel names. */
    struct otel_metrics *m = store(100, 0);
    struct om_result r;
    assert_int_equal(otel_metrics_apply(m, b->metrics, b->n_metrics, &r), 0);
    assert_int_equal(r.accepted, 2);
    char *text = render(m);
    assert_true(has_line(text, "reqs_total{code=\"200\"} 42"));
    assert_true(has_line(text, "lat_seconds_bucket{le=\"1\"} 2"));
    free(text);
    otel_metrics_destroy(m);
    om_batch_destroy(b);

    /* Truncated: 400 material, nothing decoded. */
    b = om_batch_create();
    assert_int_equal(otlp_decode_metrics_proto(buf, len - 3, NULL, b, err, sizeof err), -EINVAL);
    assert_true(err[0] != '\0');
    om_batch_destroy(b);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_names),
        cmocka_unit_test(test_label_keys),
        cmocka_unit_test(test_format_number),
        cmocka_unit_test(test_temporality),
        cmocka_unit_test(test_histogram_delta),
        cmocka_unit_test(test_target_info_and_escaping),
        cmocka_unit_test(test_long_label_key_refused),
        cmocka_unit_test(test_clash_and_conflict),
        cmocka_unit_test(test_series_limit_and_expiry),
        cmocka_unit_test(test_concurrent_apply_and_render),
        cmocka_unit_test(test_decode_json),
        cmocka_unit_test(test_attribute_values),
        cmocka_unit_test(test_decode_json_point_cap),
        cmocka_unit_test(test_decode_proto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
