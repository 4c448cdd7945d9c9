/*
 * bench_red.c: cost of the RED aggregation (ns per span through red_observe_batch) and of a
 * scrape (ms per red_render at 10,000 series per family), single- and multi-threaded.
 * Not a test: run it from a Release build: build/tests/bench_red [threads [passes]].
 *
 * The spans look like a Bookinfo mesh seen by OTel SDKs: SERVER/CLIENT pairs with semconv
 * attributes and k8s resources, 512 spans per batch (the SDK's default export size).
 */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "red.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct mstr ms(struct arena *a, const char *s)
{
    return (struct mstr){arena_strndup(a, s, strlen(s)), (uint32_t)strlen(s)};
}

static void set_attr(struct arena *a, struct attr *at, const char *k, const char *v)
{
    at->key = ms(a, k);
    at->value.type = VALUE_STRING;
    at->value.u.str = ms(a, v);
}

static void set_int(struct arena *a, struct attr *at, const char *k, int64_t v)
{
    at->key = ms(a, k);
    at->value.type = VALUE_INT;
    at->value.u.i = v;
}

static const char *const services[] = {"productpage", "details", "reviews", "ratings"};

/* A batch of n spans: alternating CLIENT (from services[i%4]) and its SERVER child, over
 * `variety` distinct span names (variety controls the series count). */
static struct span_batch *make_batch(uint32_t n, uint64_t seed, uint32_t variety)
{
    struct span_batch *b = span_batch_create();
    struct resource *res[4];
    for (int i = 0; i < 4; i++) {
        res[i] = arena_alloc(b->arena, sizeof *res[i]);
        res[i]->attrs.items = arena_alloc(b->arena, 6 * sizeof(struct attr));
        res[i]->attrs.n = 6;
        char dep[64], pod[64];
        snprintf(dep, sizeof dep, "%s-v1", services[i]);
        snprintf(pod, sizeof pod, "%s-v1-545db77b95-2zgrp", services[i]);
        set_attr(b->arena, &res[i]->attrs.items[0], "service.name", services[i]);
        set_attr(b->arena, &res[i]->attrs.items[1], "k8s.namespace.name", "default");
        set_attr(b->arena, &res[i]->attrs.items[2], "k8s.deployment.name", dep);
        set_attr(b->arena, &res[i]->attrs.items[3], "k8s.pod.name", pod);
        set_attr(b->arena, &res[i]->attrs.items[4], "service.version", "v1");
        set_attr(b->arena, &res[i]->attrs.items[5], "telemetry.sdk.language", "nodejs");
    }
    for (uint32_t i = 0; i < n; i++) {
        struct span *s = span_batch_add(b);
        uint64_t pair = seed * 1000003 + i / 2;
        memcpy(s->trace_id, &pair, 8);
        s->trace_id[15] = 1;
        bool client = i % 2 == 0;
        uint64_t cid = pair * 2 + 1;
        memcpy(s->span_id, client ? &cid : &(uint64_t){pair * 2 + 2}, 8);
        if (!client) {
            memcpy(s->parent_span_id, &cid, 8);
            s->has_parent = true;
        }
        s->kind = client ? SPAN_KIND_CLIENT : SPAN_KIND_SERVER;
        char name[64];
        snprintf(name, sizeof name, "GET /api/op%u", (unsigned)((seed * n / 2 + i / 2) % variety));
        s->name = ms(b->arena, name);
        s->start_unix_nano = UINT64_C(1700000000000000000) + pair * 1000;
        s->end_unix_nano = s->start_unix_nano + 1000000 * (1 + pair % 700);
        uint32_t svc = (uint32_t)(pair % 3);
        s->resource = res[client ? 0 : 1 + svc];
        s->attrs.items = arena_alloc(b->arena, 8 * sizeof(struct attr));
        s->attrs.n = 8;
        set_attr(b->arena, &s->attrs.items[0], "http.request.method", "GET");
        set_int(b->arena, &s->attrs.items[1], "http.response.status_code",
                pair % 50 == 0 ? 503 : 200);
        set_attr(b->arena, &s->attrs.items[2], "server.address", services[1 + svc]);
        set_int(b->arena, &s->attrs.items[3], "server.port", 9080);
        set_attr(b->arena, &s->attrs.items[4], "url.path", name + 4);
        set_attr(b->arena, &s->attrs.items[5], "network.protocol.version", "1.1");
        set_attr(b->arena, &s->attrs.items[6], "user_agent.original", "node");
        set_int(b->arena, &s->attrs.items[7], "http.response.body.size", 1234);
    }
    return b;
}

struct worker {
    struct red *r;
    struct span_batch **batches;
    int n;
    pthread_barrier_t *barrier;
    int passes;
};

static void *run(void *arg)
{
    struct worker *w = arg;
    /* Twice over the same batches: the second pass is the steady state (every series exists,
     * every page is touched), and it is the one timed. */
    for (int pass = 0; pass < 1 + w->passes; pass++) {
        if (pass == 1) pthread_barrier_wait(w->barrier);
        for (int i = 0; i < w->n; i++) red_observe_batch(w->r, w->batches[i]);
        if (pass == 0) pthread_barrier_wait(w->barrier);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    /* MESHSCOPE_BENCH_KEEP_HEAP=1: keep freed memory in the heap, so repeated renders show the
     * CPU cost alone (without it, each scrape buffer is fresh memory: page faults included). */
    if (getenv("MESHSCOPE_BENCH_KEEP_HEAP")) {
        mallopt(M_MMAP_THRESHOLD, 1 << 30);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 64) threads = 1;
    int passes = argc > 2 ? atoi(argv[2]) : 3;
    if (passes < 1) passes = 1;
    const int batches_per_thread = 200;
    const uint32_t spans = 512;

    /* 1. Ingest cost: few series (the steady state), all spans paired. */
    struct red *r = red_create(NULL);
    struct worker w[64];
    pthread_t tid[64];
    for (int t = 0; t < threads; t++) {
        w[t].r = r;
        w[t].n = batches_per_thread;
        w[t].batches = malloc(sizeof(struct span_batch *) * batches_per_thread);
        for (int i = 0; i < batches_per_thread; i++)
            w[t].batches[i] = make_batch(spans, (uint64_t)(t * batches_per_thread + i), 20);
    }
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
        w[t].barrier = &barrier;
        w[t].passes = passes;
        pthread_create(&tid[t], NULL, run, &w[t]);
    }
    pthread_barrier_wait(&barrier); /* first pass done */
    pthread_barrier_wait(&barrier); /* second pass starts */
    double t0 = now_s();
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    double el = now_s() - t0;
    double total = (double)threads * batches_per_thread * spans * passes;
    printf("observe: %d thread(s), %.0f spans in %.3f s: %.0f ns/span per thread, %.2f M "
           "spans/s total\n",
           threads, total, el, el * 1e9 * threads / total, total / el / 1e6);
    char *out;
    size_t len;
    red_render(r, false, &out, &len);
    free(out);
    red_destroy(r);
    for (int t = 0; t < threads; t++) {
        for (int i = 0; i < batches_per_thread; i++) span_batch_destroy(w[t].batches[i]);
        free(w[t].batches);
    }

    /* 2. Render at 10,000 series per family: 10,000 distinct span names x services. */
    r = red_create(NULL);
    for (int i = 0; i < 60; i++) {
        struct span_batch *b = make_batch(1024, (uint64_t)i, 6000);
        red_observe_batch(r, b);
        span_batch_destroy(b);
    }
    /* The span-metrics family is now at its 10,000 limit (plus the overflow series). */
    for (int i = 0; i < 5; i++) {
        double a = now_s();
        red_render(r, false, &out, &len);
        double text_ms = (now_s() - a) * 1e3;
        free(out);
        a = now_s();
        red_render(r, true, &out, &len);
        double om_ms = (now_s() - a) * 1e3;
        if (i == 4) {
            size_t series = 0;
            for (const char *p = out; (p = strstr(p, "\ntraces_spanmetrics_calls_total{")); p++)
                series++;
            size_t istio = 0;
            for (const char *p = out; (p = strstr(p, "\nistio_requests_total{")); p++) istio++;
            const char *m = strstr(out, "meshscope_metrics_series{metric=\"traces_spanmetrics");
            if (m) printf("%.*s\n", (int)(strchr(m, '\n') - m), m);
            printf("render: %zu span-metrics series, %zu istio series, text %.2f ms, "
                   "OpenMetrics %.2f ms, %zu bytes\n",
                   series, istio, text_ms, om_ms, len);
        }
        free(out);
    }
    red_destroy(r);
    return 0;
}
