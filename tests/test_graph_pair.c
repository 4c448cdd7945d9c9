/*
 * test_graph_pair.c: each request counts once on the service graph (README "Access logs"), in
 * both places that count it: the RED engine's traces_service_graph_* (collector/red.c) and the
 * edge rollups behind /api/graph (storage/store.c). One table of cases, each a few write calls /
 * observed batches on a fake clock (access-log records of the caller's and the callee's proxies,
 * CLIENT/SERVER spans of the same requests), then the wait ends and both must show exactly the
 * expected edges. Then the bounds: a full record store counts records alone at once, and a
 * failed write call leaves the store's record map as it was.
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
#include <unistd.h>

#include "query.h"
#include "red.h"
#include "storage_int.h"
#include "test_util.h"

/* meshscope_service_graph_records_total outcomes, in red_int.h's order. */
enum { REC_OUTCOMES = 5 };
static const char *const red_rec_outcome_label[REC_OUTCOMES] = {"paired", "unpaired", "traced",
                                                                "no_id", "store_full"};

#define SEC INT64_C(1000000)
#define T0 INT64_C(1795766400000000) /* 2026-11-27T08:00:00Z, µs */

/* ----- building batches --------------------------------------------------------------------- */

struct rec {
    char dir;        /* 'o' outbound (caller's proxy), 'i' inbound (callee's proxy); 0 = none */
    const char *svc; /* the reporting service */
    const char *dst; /* outbound: the called service */
    const char *rid; /* x-request-id; NULL = none */
    uint8_t trace;   /* trace id's last byte; 0 = none */
    int code;
    const char *flags;
    int ms;
    const char *src; /* inbound: source_workload; NULL = none */
};

struct step {
    int64_t at_ms; /* since the start of the case */
    struct rec recs[4];
    uint8_t span_trace;   /* non-zero: also a productpage CLIENT -> reviews SERVER span pair */
    const char *span_rid; /* the spans' guid:x-request-id */
};

struct want_edge {
    const char *client, *server, *conn;
    uint64_t requests, errors;
};

static struct mstr mdup(struct span_batch *b, const char *s)
{
    return (struct mstr){arena_strndup(b->arena, s, strlen(s)), (uint32_t)strlen(s)};
}

static void add_record(struct span_batch *b, const struct rec *r, int64_t t_us)
{
    struct access_log *l = span_batch_add_log(b);
    assert_non_null(l);
    l->time_unix_nano = (uint64_t)t_us * 1000;
    l->response_code = r->code ? r->code : 200;
    l->duration_ms = r->ms ? r->ms : 10;
    l->direction = r->dir == 'i' ? ALOG_DIRECTION_INBOUND : ALOG_DIRECTION_OUTBOUND;
    l->str[ALOG_SERVICE] = mdup(b, r->svc);
    if (r->dst) l->str[ALOG_DESTINATION_SERVICE] = mdup(b, r->dst);
    if (r->rid) l->str[ALOG_REQUEST_ID] = mdup(b, r->rid);
    if (r->src) l->str[ALOG_SOURCE_WORKLOAD] = mdup(b, r->src);
    l->str[ALOG_RESPONSE_FLAGS] = mdup(b, r->flags ? r->flags : "-");
    l->str[ALOG_RAW] = mdup(b, "{}");
    if (r->trace) {
        l->has_trace_id = true;
        l->trace_id[0] = 0x7e;
        l->trace_id[15] = r->trace;
    }
}

static void add_span(struct span_batch *b, const char *svc, enum span_kind kind, uint8_t trace,
                     uint8_t id, uint8_t parent, const char *rid, int64_t t_us)
{
    struct resource *res = arena_alloc(b->arena, sizeof *res);
    res->attrs.items = arena_alloc(b->arena, sizeof(struct attr));
    res->attrs.items[0] =
        (struct attr){mdup(b, "service.name"), {.type = VALUE_STRING, .u.str = mdup(b, svc)}};
    res->attrs.n = 1;
    struct span *s = span_batch_add(b);
    assert_non_null(s);
    s->trace_id[0] = 0x7e;
    s->trace_id[15] = trace;
    s->span_id[7] = id;
    if (parent) {
        s->parent_span_id[7] = parent;
        s->has_parent = true;
    }
    s->kind = kind;
    s->name = mdup(b, "GET");
    s->start_unix_nano = (uint64_t)t_us * 1000;
    s->end_unix_nano = s->start_unix_nano + 5000000;
    s->resource = res;
    if (rid) {
        s->attrs.items = arena_alloc(b->arena, sizeof(struct attr));
        s->attrs.items[0] = (struct attr){mdup(b, "guid:x-request-id"),
                                          {.type = VALUE_STRING, .u.str = mdup(b, rid)}};
        s->attrs.n = 1;
    }
}

static struct span_batch *step_batch(const struct step *st)
{
    struct span_batch *b = span_batch_create();
    assert_non_null(b);
    int64_t t = T0 + st->at_ms * 1000;
    if (st->span_trace) {
        add_span(b, "productpage", SPAN_KIND_CLIENT, st->span_trace, 1, 0, st->span_rid, t);
        add_span(b, "reviews", SPAN_KIND_SERVER, st->span_trace, 2, 1, st->span_rid, t + 100);
    }
    for (int i = 0; i < 4 && st->recs[i].dir; i++)
        add_record(b, &st->recs[i], t + i);
    return b;
}

/* ----- the cases ---------------------------------------------------------------------------- */

#define OUT(rid, code)                                                                             \
    {                                                                                              \
        'o', "productpage", "reviews", rid, 0, code, NULL, 30, NULL                                \
    }
#define IN(rid, code)                                                                              \
    {                                                                                              \
        'i', "reviews", NULL, rid, 0, code, NULL, 20, NULL                                         \
    }

static const struct gcase {
    const char *what;
    struct step steps[3];
    struct want_edge want[3];
    uint64_t outcome[REC_OUTCOMES]; /* paired, unpaired, traced, no_id, store_full */
    int istio;                      /* istio_requests_total samples in all; -1 = not checked */
} cases[] = {
    {"outbound, then inbound 2 s later: one request on caller -> callee",
     {{0, {OUT("r1", 200)}, 0, NULL}, {2000, {IN("r1", 200)}, 0, NULL}},
     {{"productpage", "reviews", "", 1, 0}},
     {2, 0, 0, 0, 0},
     2},
    {"inbound first; the pair's outcome is the caller's (a 503 its retry hid is no failure)",
     {{0, {IN("r2", 503)}, 0, NULL}, {500, {OUT("r2", 200)}, 0, NULL}},
     {{"productpage", "reviews", "", 1, 0}},
     {2, 0, 0, 0, 0},
     2},
    {"the caller's failure (504, UT) fails the pair",
     {{0, {{'o', "productpage", "reviews", "r3", 0, 504, "UT", 30, NULL}, IN("r3", 200)}, 0, NULL}},
     {{"productpage", "reviews", "", 1, 1}},
     {2, 0, 0, 0, 0},
     2},
    {"an outbound record alone: caller -> its destination after the wait",
     {{0, {OUT("r4", 503)}, 0, NULL}},
     {{"productpage", "reviews", "", 1, 1}},
     {0, 1, 0, 0, 0},
     1},
    {"an inbound record alone: unknown -> callee (virtual node)",
     {{0, {IN("r5", 200)}, 0, NULL}},
     {{"unknown", "reviews", "virtual_node", 1, 0}},
     {0, 1, 0, 0, 0},
     1},
    {"an inbound record alone that names its source: source_workload -> callee",
     {{0, {{'i', "reviews", NULL, "r6", 0, 200, NULL, 20, "productpage-v1"}}, 0, NULL}},
     {{"productpage-v1", "reviews", "", 1, 0}},
     {0, 1, 0, 0, 0},
     1},
    {"too late to pair (11 s apart, wait 10 s): each alone",
     {{0, {OUT("r7", 200)}, 0, NULL}, {11000, {IN("r7", 200)}, 0, NULL}},
     {{"productpage", "reviews", "", 1, 0}, {"unknown", "reviews", "virtual_node", 1, 0}},
     {0, 2, 0, 0, 0},
     2},
    {"one x-request-id over two hops: the called service tells the calls apart",
     {{0,
       {OUT("r8", 200),
        {'o', "reviews", "ratings", "r8", 0, 200, NULL, 5, NULL},
        {'i', "ratings", NULL, "r8", 0, 200, NULL, 4, NULL},
        IN("r8", 200)},
       0,
       NULL}},
     {{"productpage", "reviews", "", 1, 0}, {"reviews", "ratings", "", 1, 0}},
     {4, 0, 0, 0, 0},
     4},
    {"one request calling the same service twice: two pairs",
     {{0, {OUT("r9", 200), OUT("r9", 200), IN("r9", 200), IN("r9", 200)}, 0, NULL}},
     {{"productpage", "reviews", "", 2, 0}},
     {4, 0, 0, 0, 0},
     4},
    {"trace id without a request id pairs too",
     {{0,
       {{'o', "productpage", "reviews", NULL, 11, 200, NULL, 30, NULL},
        {'i', "reviews", NULL, NULL, 11, 200, NULL, 20, NULL}},
       0,
       NULL}},
     {{"productpage", "reviews", "", 1, 0}},
     {2, 0, 0, 0, 0},
     2},
    {"neither id: each counted alone at once",
     {{0, {OUT(NULL, 200), IN(NULL, 200)}, 0, NULL}},
     {{"productpage", "reviews", "", 1, 0}, {"unknown", "reviews", "virtual_node", 1, 0}},
     {0, 0, 0, 2, 0},
     2},
    {"spans first, then the records of the same requests (trace id): the spans count it",
     {{0, {{0}}, 21, NULL},
      {1000,
       {{'o', "productpage", "reviews", "r10", 21, 503, NULL, 30, NULL},
        {'i', "reviews", NULL, "r10", 21, 503, NULL, 20, NULL}},
       0,
       NULL}},
     {{"productpage", "reviews", "", 1, 0}},
     {0, 0, 2, 0, 0},
     2},
    {"records first, then spans naming their x-request-id within the wait: the spans count it",
     {{0, {OUT("r11", 503), IN("r11", 503)}, 0, NULL}, {3000, {{0}}, 22, "r11"}},
     {{"productpage", "reviews", "", 1, 0}},
     {0, 0, 2, 0, 0},
     4},
    {"spans of another request do not hide a record",
     {{0, {{0}}, 23, "other"}, {1000, {OUT("r12", 200), IN("r12", 200)}, 0, NULL}},
     {{"productpage", "reviews", "", 2, 0}},
     {2, 0, 0, 0, 0},
     4},
};

/* ----- RED ----------------------------------------------------------------------------------- */

static int64_t red_now;
static int64_t red_clock(void)
{
    return red_now;
}

static uint64_t sample(const char *text, const char *family, const struct want_edge *w)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s{client=\"%s\",server=\"%s\",connection_type=\"%s\"} ",
             family, w->client, w->server, w->conn);
    const char *p = strstr(text, prefix);
    return p ? strtoull(p + strlen(prefix), NULL, 10) : UINT64_MAX;
}

static uint64_t sum_family(const char *text, const char *prefix)
{
    uint64_t n = 0;
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, pl) == 0) n += strtoull(strchr(p, '}') + 2, NULL, 10);
    return n;
}

static void run_red(const struct gcase *c, struct red *r)
{
    for (int s = 0; s < 3 && (s == 0 || c->steps[s].at_ms); s++) {
        red_now = 1000 + c->steps[s].at_ms;
        struct span_batch *b = step_batch(&c->steps[s]);
        red_observe_batch(r, b);
        span_batch_destroy(b);
    }
}

/* Not inlined: gcc -O3 then takes the text for a pointer into this frame (-Wdangling-pointer,
 * a false positive that -Werror turns into a failed Release build). */
__attribute__((noinline)) static char *render(struct red *r)
{
    char *out;
    size_t len;
    assert_int_equal(red_render(r, false, &out, &len), 0);
    return out;
}

static void test_red_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct gcase *c = &cases[i];
        struct red_options o = {.now_ms = red_clock};
        red_now = 1000;
        struct red *r = red_create(&o);
        assert_non_null(r);
        run_red(c, r);
        red_now += 60000;
        red_expire(r);
        char *out = render(r);
        uint64_t edges = 0, total = sum_family(out, "traces_service_graph_request_total{");
        for (int k = 0; k < 3 && c->want[k].client; k++) {
            uint64_t n = sample(out, "traces_service_graph_request_total", &c->want[k]);
            uint64_t f = sample(out, "traces_service_graph_request_failed_total", &c->want[k]);
            if (n != c->want[k].requests || f != c->want[k].errors)
                fail_msg("%s: RED %s -> %s: %llu requests %llu failed", c->what, c->want[k].client,
                         c->want[k].server, (unsigned long long)n, (unsigned long long)f);
            edges += n;
        }
        if (total != edges)
            fail_msg("%s: RED: %llu requests in all, want %llu", c->what, (unsigned long long)total,
                     (unsigned long long)edges);
        for (int k = 0; k < REC_OUTCOMES; k++) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "meshscope_service_graph_records_total{outcome=\"%s\"}",
                     red_rec_outcome_label[k]);
            if (sum_family(out, prefix) != c->outcome[k])
                fail_msg("%s: outcome %s: %llu, want %llu", c->what, red_rec_outcome_label[k],
                         (unsigned long long)sum_family(out, prefix),
                         (unsigned long long)c->outcome[k]);
        }
        if (c->istio >= 0 && sum_family(out, "istio_requests_total{") != (uint64_t)c->istio)
            fail_msg("%s: istio_requests_total: %llu samples, want %d", c->what,
                     (unsigned long long)sum_family(out, "istio_requests_total{"), c->istio);
        assert_non_null(strstr(out, "meshscope_service_graph_pending_records 0\n"));
        free(out);
        red_destroy(r);
    }
}

/* Nothing of a waiting record is on the graph before its wait is over; its Istio sample is. */
static void test_red_waits(void **state)
{
    (void)state;
    struct red_options o = {.now_ms = red_clock};
    red_now = 1000;
    struct red *r = red_create(&o);
    run_red(&cases[0], r);
    char *out = render(r);
    assert_null(strstr(out, "traces_service_graph_request_total{"));
    assert_non_null(strstr(out, "meshscope_service_graph_pending_records 1\n"));
    assert_int_equal(sum_family(out, "istio_requests_total{"), 2);
    free(out);
    red_now = 10000; /* 1 s short of the outbound record's wait (it came at 1000 ms) */
    red_expire(r);
    out = render(r);
    assert_null(strstr(out, "traces_service_graph_request_total{"));
    free(out);
    red_now = 11000;
    red_expire(r);
    out = render(r);
    assert_non_null(strstr(out, "traces_service_graph_request_total{client=\"productpage\","
                                "server=\"reviews\",connection_type=\"\"} 1\n"));
    free(out);
    red_destroy(r);
}

/* One request id repeated by every record (a client that never changes it): at most
 * GRAPH_PAIR_CHAIN_MAX wait under its key, the rest count alone at once (store_full), and
 * every record is still on the graph exactly once after the wait. */
static void test_red_repeated_ids(void **state)
{
    (void)state;
    struct red_options o = {.now_ms = red_clock};
    red_now = 1000;
    struct red *r = red_create(&o);
    assert_non_null(r);
    struct span_batch *b = span_batch_create();
    struct rec in = IN("same", 200);
    for (int i = 0; i < 500; i++) add_record(b, &in, T0 + i);
    red_observe_batch(r, b);
    span_batch_destroy(b);
    char *out = render(r);
    char want[96];
    /* Pending: what waits under the one key, never more than the chain bound. */
    static const char gauge[] = "\nmeshscope_service_graph_pending_records ";
    const char *p = strstr(out, gauge);
    assert_non_null(p);
    unsigned long pending = strtoul(p + strlen(gauge), NULL, 10);
    if (pending == 0 || pending > GRAPH_PAIR_CHAIN_MAX) fail_msg("%lu records wait", pending);
    snprintf(want, sizeof want, "meshscope_service_graph_records_total{outcome=\"store_full\"}");
    assert_int_equal(sum_family(out, want), 500 - pending);
    free(out);
    red_now += 60000;
    red_expire(r);
    out = render(r);
    assert_int_equal(sum_family(out, "traces_service_graph_request_total{"), 500);
    free(out);
    red_destroy(r);
}

/* A full record store (count) counts a record alone at once, and says so. */
static void test_red_bound(void **state)
{
    (void)state;
    struct red_options o = {.now_ms = red_clock, .record_limit = 2};
    red_now = 1000;
    struct red *r = red_create(&o);
    struct step st = {0, {OUT("a", 200), OUT("b", 200), OUT("c", 200), IN("c", 200)}, 0, NULL};
    struct span_batch *b = step_batch(&st);
    red_observe_batch(r, b);
    span_batch_destroy(b);
    char *out = render(r);
    assert_non_null(strstr(out, "meshscope_service_graph_pending_records 2\n"));
    /* c's outbound record found no room: counted at once; c's inbound then found no room and
     * nothing to join: counted at once too. */
    assert_non_null(
        strstr(out, "meshscope_service_graph_records_total{outcome=\"store_full\"} 2\n"));
    assert_non_null(strstr(out, "traces_service_graph_request_total{client=\"productpage\","
                                "server=\"reviews\",connection_type=\"\"} 1\n"));
    free(out);
    red_now += 60000;
    red_expire(r);
    out = render(r);
    assert_non_null(strstr(out, "traces_service_graph_request_total{client=\"productpage\","
                                "server=\"reviews\",connection_type=\"\"} 3\n"));
    assert_non_null(strstr(out, "meshscope_service_graph_records_total{outcome=\"unpaired\"} 2\n"));
    free(out);
    red_destroy(r);

    /* The byte bound alone: room for about one entry. */
    struct red_options ob = {.now_ms = red_clock, .record_max_bytes = 300};
    r = red_create(&ob);
    b = step_batch(&st);
    red_observe_batch(r, b);
    span_batch_destroy(b);
    out = render(r);
    assert_non_null(strstr(out, "meshscope_service_graph_pending_records 1\n"));
    free(out);
    red_destroy(r);
}

/* Threads: four HTTP-like threads observe the two records of 2,000 calls, each call's outbound
 * record on one thread and its inbound one on another, some calls traced by spans on a third.
 * Every call counts exactly once (run under TSan by `make sanitize` with thread, too). */
#define MT_CALLS 2000
#define MT_THREADS 4

struct mt_arg {
    struct red *r;
    int t;
};

static void *mt_run(void *p)
{
    struct mt_arg *a = p;
    for (int i = 0; i < MT_CALLS; i++) {
        if (i % MT_THREADS != a->t && (i + 1) % MT_THREADS != a->t && (i + 2) % MT_THREADS != a->t)
            continue;
        char rid[32];
        snprintf(rid, sizeof rid, "mt-%d", i);
        struct step st = {0, {{0}}, 0, NULL};
        if (i % MT_THREADS == a->t)
            st.recs[0] = (struct rec)OUT(rid, 200);
        else if ((i + 1) % MT_THREADS == a->t)
            st.recs[0] = (struct rec)IN(rid, 200);
        else if (i % 10 == 0) {
            st.span_trace = (uint8_t)(1 + i % 250);
            st.span_rid = rid;
        } else {
            continue;
        }
        struct span_batch *b = step_batch(&st);
        red_observe_batch(a->r, b);
        span_batch_destroy(b);
    }
    return NULL;
}

static void test_red_threads(void **state)
{
    (void)state;
    struct red_options o = {.now_ms = red_clock};
    red_now = 1000;
    struct red *r = red_create(&o);
    pthread_t tid[MT_THREADS];
    struct mt_arg args[MT_THREADS];
    for (int t = 0; t < MT_THREADS; t++) {
        args[t] = (struct mt_arg){r, t};
        assert_int_equal(pthread_create(&tid[t], NULL, mt_run, &args[t]), 0);
    }
    for (int t = 0; t < MT_THREADS; t++)
        pthread_join(tid[t], NULL);
    red_now += 60000;
    red_expire(r);
    char *out = render(r);
    /* Every call once: from its spans (every 10th: 200 span pairs) or from its two records. */
    assert_int_equal(sum_family(out, "traces_service_graph_request_total{"), MT_CALLS);
    uint64_t paired = sum_family(out, "meshscope_service_graph_records_total{outcome=\"paired\"}");
    uint64_t traced = sum_family(out, "meshscope_service_graph_records_total{outcome=\"traced\"}");
    /* A record that came before its call's spans can still be paired and then traced: all 4,000
     * records are one or the other. */
    assert_int_equal(paired + traced, 2 * MT_CALLS);
    assert_int_equal(traced, 2 * (MT_CALLS / 10));
    assert_non_null(strstr(out, "meshscope_service_graph_pending_records 0\n"));
    free(out);
    red_destroy(r);
}

/* ----- store --------------------------------------------------------------------------------- */

static void store_expect(struct store *st, const struct gcase *c)
{
    struct graph *g;
    assert_int_equal(store_graph(st, T0 - 3600 * SEC, T0 + 3600 * SEC, NULL, &g), 0);
    uint64_t want_edges = 0;
    for (int k = 0; k < 3 && c->want[k].client; k++) {
        want_edges++;
        bool found = false;
        for (size_t e = 0; e < g->n_edges; e++) {
            const struct graph_edge *x = &g->edges[e];
            if (strcmp(g->nodes[x->source].name, c->want[k].client) ||
                strcmp(g->nodes[x->target].name, c->want[k].server) ||
                strcmp(x->connection_type, c->want[k].conn))
                continue;
            found = true;
            if (x->red.requests != c->want[k].requests || x->red.errors != c->want[k].errors)
                fail_msg("%s: store %s -> %s: %llu requests %llu errors", c->what,
                         c->want[k].client, c->want[k].server, (unsigned long long)x->red.requests,
                         (unsigned long long)x->red.errors);
        }
        if (!found)
            fail_msg("%s: store: no edge %s -> %s", c->what, c->want[k].client, c->want[k].server);
    }
    if (g->n_edges != want_edges)
        fail_msg("%s: store: %zu edges, want %llu", c->what, (size_t)g->n_edges,
                 (unsigned long long)want_edges);
    store_free_graph(g);
}

static void run_store(const struct gcase *c, struct store *st)
{
    for (int s = 0; s < 3 && (s == 0 || c->steps[s].at_ms); s++) {
        store_test_set_clock(st, T0 + c->steps[s].at_ms * 1000);
        struct span_batch *b = step_batch(&c->steps[s]);
        assert_int_equal(store_put_batches(st, &b, 1), 0);
        span_batch_destroy(b);
    }
}

static void test_store_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct gcase *c = &cases[i];
        char dir[64], path[128];
        struct store *st = test_store_create(dir, path, "meshscope-gpair");
        run_store(c, st);
        store_test_set_clock(st, T0 + 70 * SEC);
        assert_int_equal(store_flush_graph(st), 0);
        store_expect(st, c);
        test_store_destroy(st, dir);
    }
}

/* The store waits like RED, and a write call that comes after the wait counts what waited. */
static void test_store_waits(void **state)
{
    (void)state;
    char dir[64], path[128];
    struct store *st = test_store_create(dir, path, "meshscope-gpair");
    run_store(&cases[0], st);
    struct graph *g;
    assert_int_equal(store_graph(st, T0 - 3600 * SEC, T0 + 3600 * SEC, NULL, &g), 0);
    assert_int_equal(g->n_edges, 0);
    store_free_graph(g);
    store_test_set_clock(st, T0 + 9 * SEC);
    assert_int_equal(store_flush_graph(st), 0); /* nothing has waited 10 s yet */
    assert_int_equal(store_graph(st, T0 - 3600 * SEC, T0 + 3600 * SEC, NULL, &g), 0);
    assert_int_equal(g->n_edges, 0);
    store_free_graph(g);
    /* A write call of something else after the wait takes the pair along. */
    store_test_set_clock(st, T0 + 10 * SEC + 1);
    struct step other = {0, {{'o', "details", "ratings", NULL, 0, 200, NULL, 5, NULL}}, 0, NULL};
    struct span_batch *b = step_batch(&other);
    assert_int_equal(store_put_batches(st, &b, 1), 0);
    span_batch_destroy(b);
    static const struct gcase both = {
        "after the wait",
        {{0}},
        {{"productpage", "reviews", "", 1, 0}, {"details", "ratings", "", 1, 0}},
        {0},
        -1};
    store_expect(st, &both);
    test_store_destroy(st, dir);
}

/* A write call that fails leaves the record map as it was: its records, sent again, pair. */
static void test_store_rollback(void **state)
{
    (void)state;
    char dir[64], path[128];
    struct store *st = test_store_create(dir, path, "meshscope-gpair");
    store_test_set_clock(st, T0);
    struct step first = {0, {OUT("r1", 200)}, 0, NULL};
    struct span_batch *b = step_batch(&first);
    assert_int_equal(store_put_batches(st, &b, 1), 0);
    span_batch_destroy(b);
    /* The inbound record (joining r1) and a new one in a call that fails: no room on disk. */
    struct step second = {100, {IN("r1", 200), OUT("r2", 200)}, 0, NULL};
    b = step_batch(&second);
    /* ... with 2,000 incompressible records that draw no edge, so the file must grow. */
    srand(7);
    for (int i = 0; i < 2000; i++) {
        struct access_log *l = span_batch_add_log(b);
        l->time_unix_nano = (uint64_t)T0 * 1000;
        l->response_code = 200;
        l->direction = ALOG_DIRECTION_OUTBOUND;
        char raw[1024];
        for (size_t k = 0; k < sizeof raw; k++)
            raw[k] = (char)('a' + rand() % 26);
        l->str[ALOG_RAW] = (struct mstr){arena_strndup(b->arena, raw, sizeof raw), sizeof raw};
    }
    assert_int_equal(store_test_set_max_pages(st, 1), 0); /* raised to the current size */
    assert_int_equal(store_put_batches(st, &b, 1), -ENOSPC);
    assert_int_equal(store_test_set_max_pages(st, 1u << 30), 0);
    /* Sent again: it joins r1 once, r2 waits once. */
    assert_int_equal(store_put_batches(st, &b, 1), 0);
    span_batch_destroy(b);
    store_test_set_clock(st, T0 + 70 * SEC);
    assert_int_equal(store_flush_graph(st), 0);
    static const struct gcase want = {
        "retried write call", {{0}}, {{"productpage", "reviews", "", 2, 0}}, {0}, -1};
    store_expect(st, &want);
    test_store_destroy(st, dir);
}

int main(void)
{
    log_min_level = LOG_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_red_cases),      cmocka_unit_test(test_red_waits),
        cmocka_unit_test(test_red_bound),      cmocka_unit_test(test_red_threads),
        cmocka_unit_test(test_red_repeated_ids),
        cmocka_unit_test(test_store_cases),    cmocka_unit_test(test_store_waits),
        cmocka_unit_test(test_store_rollback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
