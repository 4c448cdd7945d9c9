/*
 * test_loadgen.c: unit tests of meshscope-loadgen's request templates (tests/bench/
 * loadgen_encode.c), read back with the daemon's own decoders: every protocol's body decodes
 * to the template's spans; a patch writes fresh ids (no id repeats across two sends, parents
 * follow their span) and moves every span time, and every access-log start_time, by the time
 * since the template was built, without changing the body's length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "accesslog.h"
#include "loadgen.h"
#include "otlp.h"
#include "zipkin.h"
#include "test_util.h"

typedef int (*decoder)(const uint8_t *body, size_t len, const struct decode_limits *lim,
                       struct span_batch *out, char *err, size_t errlen);

static struct span_batch *decode_body(decoder d, const struct lg_template *t)
{
    struct span_batch *b;
    char err[256];
    if (test_decode(d, t->body, t->len, NULL, &b, err, sizeof err) != 0)
        fail_msg("template does not decode: %s", err);
    assert_int_equal(b->n_spans, t->spans);
    return b;
}

static const struct span *find_span(const struct span_batch *b, const uint8_t id[8])
{
    for (uint32_t i = 0; i < b->n_spans; i++)
        if (memcmp(b->spans[i].span_id, id, 8) == 0) return &b->spans[i];
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
    nanosleep(&ts, NULL);
}

/* Template of proto, decoded by d: three patches 30 ms apart. */
static void check_protocol(enum lg_protocol proto, decoder d, uint64_t unit_ns)
{
    struct lg_template t;
    assert_int_equal(lg_template_build_ex(&t, proto, LG_BOOKINFO, 0, 50, 7, 0), 0);
    size_t len = t.len;
    uint64_t rng = 12345;
    lg_template_patch(&t, &rng); /* the built body's ids are zeros, which decoders refuse */
    struct span_batch *built = decode_body(d, &t);
    sleep_ms(30);
    lg_template_patch(&t, &rng);
    assert_int_equal(t.len, len);
    struct span_batch *a = decode_body(d, &t);
    sleep_ms(30);
    lg_template_patch(&t, &rng);
    struct span_batch *b = decode_body(d, &t);
    for (uint32_t i = 0; i < t.spans; i++) {
        const struct span *s0 = &built->spans[i], *s1 = &a->spans[i], *s2 = &b->spans[i];
        /* Times move with the clock (30 ms or more per sleep), durations stay. */
        assert_true(s1->start_unix_nano >= s0->start_unix_nano + 30000000);
        assert_true(s2->start_unix_nano >= s1->start_unix_nano + 30000000);
        assert_true(s1->start_unix_nano < s0->start_unix_nano + 10000000000ULL);
        assert_int_equal(s1->end_unix_nano - s1->start_unix_nano,
                         s0->end_unix_nano - s0->start_unix_nano);
        assert_int_equal(s1->start_unix_nano % unit_ns, 0);
        /* Fresh ids on every send. */
        assert_memory_not_equal(s1->span_id, s2->span_id, 8);
        assert_memory_not_equal(s1->trace_id, s2->trace_id, 16);
        /* A parent is a span of the same trace in the same send. */
        assert_int_equal(s1->has_parent, s0->has_parent);
        if (s1->has_parent) {
            const struct span *p = find_span(a, s1->parent_span_id);
            assert_non_null(p);
            assert_memory_equal(p->trace_id, s1->trace_id, 16);
        }
    }
    span_batch_destroy(built);
    span_batch_destroy(a);
    span_batch_destroy(b);
    lg_template_free(&t);
}

static void test_otlp_proto(void **state)
{
    (void)state;
    check_protocol(LG_OTLP_PROTO, otlp_decode_traces_proto, 1);
}

static void test_otlp_json(void **state)
{
    (void)state;
    check_protocol(LG_OTLP_JSON, otlp_decode_traces_json, 1);
}

static void test_zipkin_json(void **state)
{
    (void)state;
    check_protocol(LG_ZIPKIN_JSON, zipkin_decode_spans_json, 1000); /* Zipkin: microseconds */
}

/* The access-log lines carry the ids and the start time (to the millisecond) of their SERVER
 * span, after a patch as before. */
static void test_access_logs(void **state)
{
    (void)state;
    struct lg_template t;
    assert_int_equal(lg_template_build_ex(&t, LG_OTLP_JSON, LG_BOOKINFO, 0, 50, 7, 1), 0);
    assert_true(t.log_lines > 0);
    uint64_t rng = 99;
    sleep_ms(1100); /* past a second boundary: the date-time text changes, not only the ms */
    lg_template_patch(&t, &rng);
    struct span_batch *spans = decode_body(otlp_decode_traces_json, &t);
    struct span_batch *logs = span_batch_create();
    struct decode_limits lim;
    decode_limits_default(&lim);
    char err[256] = "";
    if (accesslog_decode_json(t.logs, t.logs_len, &lim, logs, err, sizeof err) != 0)
        fail_msg("access-log lines do not decode: %s", err);
    assert_int_equal(logs->n_logs, t.log_lines);
    assert_int_equal(logs->rejected, 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
    for (uint32_t i = 0; i < logs->n_logs; i++) {
        const struct access_log *l = &logs->logs[i];
        assert_true(l->has_trace_id && l->has_span_id);
        const struct span *s = find_span(spans, l->span_id);
        assert_non_null(s);
        assert_memory_equal(s->trace_id, l->trace_id, 16);
        assert_int_equal(s->kind, SPAN_KIND_SERVER);
        assert_int_equal(l->time_unix_nano / 1000000, s->start_unix_nano / 1000000);
        /* Now, give or take the trace's own offsets (< 1 s). */
        assert_true(l->time_unix_nano < now_ns + 1000000000ULL &&
                    l->time_unix_nano + 1000000000ULL > now_ns);
    }
    span_batch_destroy(spans);
    span_batch_destroy(logs);
    lg_template_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_otlp_proto),
        cmocka_unit_test(test_otlp_json),
        cmocka_unit_test(test_zipkin_json),
        cmocka_unit_test(test_access_logs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
