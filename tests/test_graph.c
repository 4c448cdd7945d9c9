/*
 * test_graph.c: GET /api/graph end to end: a Bookinfo-like mesh (productpage -> details,
 * productpage -> reviews -> ratings, with 5xx and known latencies, productpage called from
 * outside, and a load generator in another namespace) is written to a store in a temporary
 * directory through store_put_batches, then read back through query_handle and parsed with
 * jansson: counts, error rates, percentiles within bucket precision, the namespace filter,
 * parameter errors, and /api/dependencies agreeing with the graph.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "query.h"
#include "query_int.h"
#include "storage_int.h"

#define SEC 1000000LL
#define MS 1000LL
#define NOW_US 1800000000000000LL  /* the fake clock */
#define T0 (NOW_US - 5 * 60 * SEC) /* the traffic: five minutes ago */

static int64_t fake_now(void)
{
    return NOW_US;
}

struct fixture {
    char dir[64];
    char path[128];
    struct store *st;
};

/* ----- building the mesh ------------------------------------------------------------------- */

static struct mstr S(struct span_batch *b, const char *s) {
    return (struct mstr){arena_strndup(b->arena, s, strlen(s)), (uint32_t)strlen(s)};
}

static const struct resource *
resource(struct span_batch *b, const char *svc, const char *ns)
{
    struct resource *r = arena_alloc(b->arena, sizeof *r);
    r->attrs.items = arena_alloc(b->arena, 2 * sizeof *r->attrs.items);
    r->attrs.items[0].key = S(b, "service.name");
    r->attrs.items[0].value.type = VALUE_STRING;
    r->attrs.items[0].value.u.str = S(b, svc);
    r->attrs.items[1].key = S(b, "service.namespace");
    r->attrs.items[1].value.type = VALUE_STRING;
    r->attrs.items[1].value.u.str = S(b, ns);
    r->attrs.n = 2;
    return r;
}

static uint64_t next_id = 1;

/* Adds a span (parent: a span id from an earlier call, 0 for a root) and returns its id (span
 * pointers move as the batch grows). */
static uint64_t span(struct span_batch *b, const struct resource *r, uint64_t trace,
                     uint64_t parent, enum span_kind kind, int64_t start_us, int64_t dur_us,
                     int http_status)
{
    struct span *s = span_batch_add(b);
    memset(s->trace_id, 0, 16);
    for (int i = 0; i < 8; i++)
        s->trace_id[8 + i] = (uint8_t)(trace >> (56 - 8 * i));
    s->trace_id[0] = 0x42;
    uint64_t id = next_id++;
    for (int i = 0; i < 8; i++)
        s->span_id[i] = (uint8_t)(id >> (56 - 8 * i));
    if (parent) {
        for (int i = 0; i < 8; i++)
            s->parent_span_id[i] = (uint8_t)(parent >> (56 - 8 * i));
        s->has_parent = true;
    }
    s->name = S(b, kind == SPAN_KIND_SERVER ? "GET /" : "GET");
    s->kind = kind;
    s->start_unix_nano = (uint64_t)start_us * 1000;
    s->end_unix_nano = (uint64_t)(start_us + dur_us) * 1000;
    s->resource = r;
    s->attrs.items = arena_alloc(b->arena, sizeof *s->attrs.items);
    s->attrs.items[0].key = S(b, "http.response.status_code");
    s->attrs.items[0].value.type = VALUE_INT;
    s->attrs.items[0].value.u.i = http_status;
    s->attrs.n = 1;
    return id;
}

/* One client -> server call; the server's latency and status decide the edge's. */
static uint64_t call(struct span_batch *b, const struct resource *from, const struct resource *to,
                     uint64_t trace, uint64_t parent, int64_t t, int64_t server_ms, int status)
{
    uint64_t c = span(b, from, trace, parent, SPAN_KIND_CLIENT, t, (server_ms + 1) * MS, status);
    return span(b, to, trace, c, SPAN_KIND_SERVER, t + 500, server_ms * MS, status);
}

/* 40 requests to productpage (root, 50 ms), each calling details (10 ms, every 8th 503) and
 * reviews (30 ms), and reviews calling ratings on every other request (5 ms, every 10th 500);
 * 10 loadgen (namespace "tools") -> productpage calls. One write call (the JS integration test
 * covers pairs that meet across calls). */
static void put_mesh(struct store *st)
{
    struct span_batch *b = span_batch_create();
    const struct resource *pp = resource(b, "productpage", "bookinfo");
    const struct resource *det = resource(b, "details", "bookinfo");
    const struct resource *rev = resource(b, "reviews", "bookinfo");
    const struct resource *rat = resource(b, "ratings", "bookinfo");
    const struct resource *lg = resource(b, "loadgen", "tools");
    for (uint64_t i = 0; i < 40; i++) {
        int64_t t = T0 + (int64_t)i * 100 * MS;
        uint64_t root = span(b, pp, i + 1, 0, SPAN_KIND_SERVER, t, 50 * MS, 200);
        call(b, pp, det, i + 1, root, t + MS, 10, i % 8 == 7 ? 503 : 200);
        uint64_t r = call(b, pp, rev, i + 1, root, t + 12 * MS, 30, 200);
        if (i % 2 == 0) call(b, rev, rat, i + 1, r, t + 13 * MS, 5, i % 20 == 18 ? 500 : 200);
    }
    for (uint64_t i = 0; i < 10; i++) {
        int64_t t = T0 + (int64_t)i * 100 * MS;
        uint64_t root = span(b, lg, 1000 + i, 0, SPAN_KIND_INTERNAL, t, 60 * MS, 0);
        call(b, lg, pp, 1000 + i, root, t, 50, 200);
    }
    assert_int_equal(store_put_batches(st, &b, 1), 0);
    span_batch_destroy(b);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/meshscope-graph-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/traces.db", f->dir);
    struct store_options o = {.path = f->path, .read_pool = 2};
    f->st = store_open(&o);
    if (!f->st) return -1;
    store_test_set_clock(f->st, NOW_US);
    query_now_us = fake_now;
    put_mesh(f->st);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    static const char *const suffix[] = {"", "-wal", "-shm"};
    char p[160];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ----- requests ---------------------------------------------------------------------------- */

/* GET path?qs (qs: "k=v&k=v", no escaping needed here); parsed body, status in *status. */
static json_t *get(struct store *st, const char *path, const char *qs, int *status)
{
    struct query_arg args[8];
    size_t n = 0;
    char buf[512] = "";
    if (qs) snprintf(buf, sizeof buf, "%s", qs);
    for (char *save = NULL, *kv = strtok_r(buf, "&", &save); kv && n < 8;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq) *eq = '\0';
        args[n].key = kv;
        args[n++].value = eq ? eq + 1 : "";
    }
    struct query_response resp = {0};
    assert_int_equal(query_handle(st, path, args, n, &resp), 0);
    assert_non_null(resp.body);
    assert_string_equal(resp.content_type, "application/json");
    json_error_t err;
    json_t *j = json_loadb(resp.body, resp.len, 0, &err);
    if (!j) fail_msg("invalid JSON (%s): %s", err.text, resp.body);
    *status = resp.status;
    free(resp.body);
    return j;
}

static json_t *find_by(json_t *arr, const char *k1, const char *v1, const char *k2, const char *v2)
{
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, k1)), v1) == 0 &&
            (!k2 || strcmp(json_string_value(json_object_get(o, k2)), v2) == 0))
            return o;
    }
    return NULL;
}

static json_t *edge(json_t *g, const char *src, const char *dst)
{
    return find_by(json_object_get(g, "edges"), "source", src, "target", dst);
}

static uint64_t num(json_t *o, const char *k)
{
    return (uint64_t)json_integer_value(json_object_get(o, k));
}

static double real(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

/* An interpolated percentile of identical durations lies within their bucket. */
static void assert_in_bucket(json_t *o, const char *k, int64_t dur_us)
{
    unsigned i = hist_bucket_of(dur_us);
    double lo = i ? (double)hist_bound_us[i - 1] / 1000.0 : 0;
    double hi = (double)hist_bound_us[i] / 1000.0;
    double v = real(o, k);
    if (v < lo || v > hi) fail_msg("%s = %g, want within [%g, %g]", k, v, lo, hi);
}

static void assert_close(double a, double b)
{
    if (a < b - 1e-9 || a > b + 1e-9) fail_msg("%g != %g", a, b);
}

/* ----- tests ------------------------------------------------------------------------------- */

static void test_graph_mesh(void **state)
{
    struct fixture *f = *state;
    int status;
    json_t *g = get(f->st, "/api/graph", NULL, &status); /* default: the last 15 minutes */
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(g, "end")), NOW_US);
    assert_int_equal(json_integer_value(json_object_get(g, "start")), NOW_US - 15 * 60 * SEC);
    const double window_s = 15 * 60;
    assert_int_equal(json_array_size(json_object_get(g, "edges")), 5);
    assert_int_equal(json_array_size(json_object_get(g, "nodes")), 6);

    json_t *e = edge(g, "service:productpage", "service:details");
    assert_non_null(e);
    assert_int_equal(num(e, "requests"), 40);
    assert_int_equal(num(e, "errors"), 5);
    assert_close(real(e, "error_rate"), 5.0 / 40);
    assert_close(real(e, "rps"), 40 / window_s);
    assert_string_equal(json_string_value(json_object_get(e, "connection_type")), "");
    assert_in_bucket(e, "p50_ms", 10 * MS);
    assert_in_bucket(e, "p95_ms", 10 * MS);
    assert_in_bucket(e, "p99_ms", 10 * MS);

    e = edge(g, "service:productpage", "service:reviews");
    assert_int_equal(num(e, "requests"), 40);
    assert_int_equal(num(e, "errors"), 0);
    assert_close(real(e, "error_rate"), 0);
    assert_in_bucket(e, "p99_ms", 30 * MS);

    e = edge(g, "service:reviews", "service:ratings");
    assert_int_equal(num(e, "requests"), 20);
    assert_int_equal(num(e, "errors"), 2);
    assert_in_bucket(e, "p50_ms", 5 * MS);

    e = edge(g, "user", "service:productpage");
    assert_int_equal(num(e, "requests"), 40);
    assert_in_bucket(e, "p95_ms", 50 * MS);
    e = edge(g, "service:loadgen", "service:productpage");
    assert_int_equal(num(e, "requests"), 10);

    /* Nodes: inbound RED; productpage's sums user and loadgen (50 calls of 50 ms). */
    json_t *nodes = json_object_get(g, "nodes");
    json_t *n = find_by(nodes, "id", "service:productpage", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(n, "name")), "productpage");
    assert_string_equal(json_string_value(json_object_get(n, "namespace")), "bookinfo");
    assert_string_equal(json_string_value(json_object_get(n, "kind")), "service");
    assert_int_equal(num(n, "requests"), 50);
    assert_in_bucket(n, "p50_ms", 50 * MS);
    n = find_by(nodes, "id", "service:details", NULL, NULL);
    assert_int_equal(num(n, "requests"), 40);
    assert_close(real(n, "error_rate"), 5.0 / 40);
    n = find_by(nodes, "id", "user", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(n, "kind")), "user");
    assert_int_equal(num(n, "requests"), 0);
    assert_true(json_is_null(json_object_get(n, "p50_ms")));
    n = find_by(nodes, "id", "service:loadgen", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(n, "namespace")), "tools");
    json_decref(g);
}

static void test_graph_namespace(void **state)
{
    struct fixture *f = *state;
    int status;
    json_t *g = get(f->st, "/api/graph", "namespace=tools", &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(g, "edges")), 1); /* loadgen -> pp */
    assert_int_equal(json_array_size(json_object_get(g, "nodes")), 2);
    assert_non_null(edge(g, "service:loadgen", "service:productpage"));
    json_decref(g);
    g = get(f->st, "/api/graph", "namespace=bookinfo", &status);
    assert_int_equal(json_array_size(json_object_get(g, "edges")), 5); /* loadgen's touches pp */
    json_decref(g);
    g = get(f->st, "/api/graph", "namespace=nope", &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(g, "edges")), 0);
    assert_int_equal(json_array_size(json_object_get(g, "nodes")), 0);
    json_decref(g);
}

static void test_graph_window(void **state)
{
    struct fixture *f = *state;
    int status;
    char qs[128];
    /* Before the traffic: empty. Around it: all of it, at the window's rate. */
    snprintf(qs, sizeof qs, "start=%lld&end=%lld", (long long)(T0 - 600 * SEC),
             (long long)(T0 - 60 * SEC));
    json_t *g = get(f->st, "/api/graph", qs, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(g, "edges")), 0);
    json_decref(g);
    snprintf(qs, sizeof qs, "start=%lld&end=%lld", (long long)T0, (long long)(T0 + 60 * SEC));
    g = get(f->st, "/api/graph", qs, &status);
    json_t *e = edge(g, "service:productpage", "service:details");
    assert_int_equal(num(e, "requests"), 40);
    assert_close(real(e, "rps"), 40.0 / 60);
    json_decref(g);
}

static void test_graph_bad_params(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *qs, *names;
    } cases[] = {
        {"start=abc", "start"},
        {"end=12x", "end"},
        {"start=2000&end=1000", "start"},
        {"start=1000&end=1000", "start"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status;
        json_t *g = get(f->st, "/api/graph", cases[i].qs, &status);
        assert_int_equal(status, 400);
        json_t *err = json_array_get(json_object_get(g, "errors"), 0);
        assert_int_equal(json_integer_value(json_object_get(err, "code")), 400);
        const char *msg = json_string_value(json_object_get(err, "msg"));
        if (!strstr(msg, cases[i].names)) fail_msg("%s: %s", cases[i].qs, msg);
        json_decref(g);
    }
}

/* /api/dependencies counts what the graph's service-to-service edges count. */
static void test_dependencies_agree(void **state)
{
    struct fixture *f = *state;
    int status;
    json_t *g = get(f->st, "/api/graph", NULL, &status);
    json_t *d = get(f->st, "/api/dependencies", "lookback=900000", &status);
    assert_int_equal(status, 200);
    json_t *data = json_object_get(d, "data");
    assert_int_equal(json_array_size(data), 4); /* no "user" edge */
    size_t i;
    json_t *link;
    json_array_foreach(data, i, link)
    {
        char src[64], dst[64];
        snprintf(src, sizeof src, "service:%s", json_string_value(json_object_get(link, "parent")));
        snprintf(dst, sizeof dst, "service:%s", json_string_value(json_object_get(link, "child")));
        json_t *e = edge(g, src, dst);
        assert_non_null(e);
        assert_int_equal(num(link, "callCount"), num(e, "requests"));
    }
    json_decref(d);
    json_decref(g);
}

int main(void)
{
    log_min_level = LOG_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_graph_mesh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graph_namespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graph_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graph_bad_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dependencies_agree, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
