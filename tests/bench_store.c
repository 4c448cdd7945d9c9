/*
 * bench_store.c: storage-only write throughput. Builds synthetic service-mesh traces (8 spans:
 * a chain of server/client hops across services, ~12 attributes per span with realistic
 * strings, unique random ids), writes them through store_prepare_batch and store_put_batches
 * on one thread in batches of 512 spans and prints spans/s (time inside those two only: the
 * "store_put_batches" figures include the preparing) and bytes per span on disk after close.
 * Not a test; run it from a Release build:
 *
 *   bench_store [spans=200000] [path=/tmp/bench_store.db] [batch=512]
 */
#include "storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    uint64_t x = rng_state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static struct mstr S(struct span_batch *b, const char *s)
{
    return (struct mstr){arena_strndup(b->arena, s, strlen(s)), (uint32_t)strlen(s)};
}

static const char *const services[] = {"frontend", "cartservice", "checkoutservice",
                                       "paymentservice", "shippingservice", "currencyservice",
                                       "emailservice", "recommendationservice"};
#define N_SERVICES 8

static const struct resource *resources[N_SERVICES];

static void make_resources(struct span_batch *b)
{
    for (int i = 0; i < N_SERVICES; i++) {
        struct resource *r = arena_alloc(b->arena, sizeof *r);
        r->attrs.items = arena_alloc(b->arena, 6 * sizeof *r->attrs.items);
        char pod[96];
        snprintf(pod, sizeof pod, "%s-7d9f8b6c4-x%04d", services[i], (int)(rnd() % 4));
        const char *kv[][2] = {{"service.name", services[i]},
                               {"service.version", "1.14.2"},
                               {"k8s.namespace.name", "online-boutique"},
                               {"k8s.pod.name", pod},
                               {"host.name", "gke-prod-pool-1-2f1e9a"},
                               {"telemetry.sdk.name", "envoy"}};
        for (int k = 0; k < 6; k++) {
            r->attrs.items[k].key = S(b, kv[k][0]);
            r->attrs.items[k].value.type = VALUE_STRING;
            r->attrs.items[k].value.u.str = S(b, kv[k][1]);
        }
        r->attrs.n = 6;
        resources[i] = r;
    }
}

static void set_str(struct span_batch *b, struct attr *a, const char *k, const char *v)
{
    a->key = S(b, k);
    a->value.type = VALUE_STRING;
    a->value.u.str = S(b, v);
}

static void set_int(struct span_batch *b, struct attr *a, const char *k, int64_t v)
{
    a->key = S(b, k);
    a->value.type = VALUE_INT;
    a->value.u.i = v;
}

static void fill_span(struct span_batch *b, struct span *s, int svc, int peer, bool server,
                      uint64_t start_ns, uint64_t dur_ns)
{
    s->kind = server ? SPAN_KIND_SERVER : SPAN_KIND_CLIENT;
    char name[128], buf[128];
    snprintf(name, sizeof name, "%s.svc.cluster.local:8080/hipstershop.%s/%s", services[peer],
             services[peer], server ? "Handle" : "Call");
    s->name = S(b, name);
    s->start_unix_nano = start_ns;
    s->end_unix_nano = start_ns + dur_ns;
    s->resource = resources[svc];
    s->attrs.items = arena_alloc(b->arena, 12 * sizeof *s->attrs.items);
    struct attr *a = s->attrs.items;
    bool fail = rnd() % 100 == 0;
    set_str(b, &a[0], "http.request.method", "POST");
    snprintf(buf, sizeof buf, "/hipstershop.%s/%s", services[peer], server ? "Handle" : "Call");
    set_str(b, &a[1], "url.path", buf);
    set_int(b, &a[2], "http.response.status_code", fail ? 503 : 200);
    snprintf(buf, sizeof buf, "%s.online-boutique.svc.cluster.local", services[peer]);
    set_str(b, &a[3], "server.address", buf);
    set_int(b, &a[4], "server.port", 8080);
    set_str(b, &a[5], "network.protocol.version", "2");
    set_str(b, &a[6], "user_agent.original", "grpc-go/1.58.3");
    snprintf(buf, sizeof buf, "outbound|8080||%s.online-boutique.svc.cluster.local", services[peer]);
    set_str(b, &a[7], "upstream_cluster", buf);
    set_str(b, &a[8], "istio.mesh_id", "cluster.local");
    set_str(b, &a[9], "peer.service", services[peer]);
    uint64_t r1 = rnd(), r2 = rnd();
    snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", (unsigned)r1, (unsigned)(r1 >> 32) & 0xffff,
             (unsigned)(r1 >> 48), (unsigned)r2 & 0xffff, (unsigned long long)(r2 >> 16));
    set_str(b, &a[10], "guid:x-request-id", buf);
    set_str(b, &a[11], "response_flags", fail ? "UF" : "-");
    s->attrs.n = 12;
    if (fail) s->status_code = STATUS_ERROR;
}

int main(int argc, char **argv)
{
    long n_spans = argc > 1 ? atol(argv[1]) : 200000;
    const char *path = argc > 2 ? argv[2] : "/tmp/bench_store.db";
    long batch = argc > 3 ? atol(argv[3]) : 512;
    char p[512];
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
    log_min_level = LOG_WARN;
    struct store_options o = {.path = path};
    struct store *st = store_open(&o);
    if (!st) return 1;
    rng_state ^= (uint64_t)time(NULL);
    uint64_t t_ns = (uint64_t)time(NULL) * 1000000000ULL;
    double in_put = 0, cpu_put = 0;
    long done = 0;
    double wall0 = now_s();
    while (done < n_spans) {
        struct span_batch *b = span_batch_create();
        make_resources(b);
        long want = n_spans - done < batch ? n_spans - done : batch;
        while ((long)b->n_spans + 8 <= want || b->n_spans == 0) {
            uint8_t trace[16];
            uint64_t r1 = rnd(), r2 = rnd();
            memcpy(trace, &r1, 8);
            memcpy(trace + 8, &r2, 8);
            int chain[4] = {0, (int)(1 + rnd() % 7), (int)(1 + rnd() % 7), (int)(1 + rnd() % 7)};
            uint8_t prev[8] = {0};
            uint64_t start = t_ns;
            t_ns += 1000000; /* a trace per ms */
            for (int k = 0; k < 8; k++) {
                struct span *s = span_batch_add(b);
                memcpy(s->trace_id, trace, 16);
                uint64_t sid = rnd();
                memcpy(s->span_id, &sid, 8);
                if (k) {
                    memcpy(s->parent_span_id, prev, 8);
                    s->has_parent = true;
                }
                /* k even: server span of chain[k/2]; k odd: client span calling the next hop;
                 * the last is an internal span. */
                int hop = k / 2;
                if (k == 7) {
                    fill_span(b, s, chain[3], chain[3], true, start + 7000, 100000);
                    s->kind = SPAN_KIND_INTERNAL;
                } else if (k % 2 == 0) {
                    fill_span(b, s, chain[hop], chain[hop], true, start + (uint64_t)k * 1000,
                              (uint64_t)(8 - k) * 1000000);
                } else {
                    fill_span(b, s, chain[hop], chain[hop + 1], false,
                              start + (uint64_t)k * 1000, (uint64_t)(8 - k) * 1000000);
                }
                memcpy(prev, s->span_id, 8);
            }
            if (want < 8) break;
        }
        double t0 = now_s(), c0 = cpu_s();
        /* The daemon's HTTP threads prepare batches (encoding and compression) before the
         * writer stores them: here one thread does both, so this is all of the store's work. */
        int rc = store_prepare_batch(st, b);
        if (!rc) rc = store_put_batches(st, &b, 1);
        in_put += now_s() - t0;
        cpu_put += cpu_s() - c0;
        if (rc) {
            fprintf(stderr, "put failed: %d\n", rc);
            return 1;
        }
        done += b->n_spans;
        span_batch_destroy(b);
    }
    double wall = now_s() - wall0;
    struct store_stats stats;
    store_get_stats(st, &stats);
    store_close(st);
    struct stat sb;
    long long bytes = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
    printf("spans %ld  batch %ld  chunks %llu\n", done, batch,
           (unsigned long long)stats.traces_chunks_stored);
    printf("store_put_batches: %.0f spans/s (%.2f s)   wall incl. generation: %.0f spans/s\n",
           (double)done / in_put, in_put, (double)done / wall);
    printf("CPU inside store_put_batches: %.0f spans per CPU-second (%.2f s)\n",
           (double)done / cpu_put, cpu_put);
    printf("on disk after close: %lld bytes, %.1f bytes/span\n", bytes, (double)bytes / (double)done);
    return 0;
}
