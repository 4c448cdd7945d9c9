/*
 * bench_query.c: query latency with millions of spans stored (make bench, item 4).
 *
 * Fills a store directly through store_put_batches (no HTTP, no decoding) with N realistic mesh
 * spans spread evenly over the 24 h before the fill (40% Bookinfo traces: productpage -> details,
 * productpage -> reviews -> ratings, 7 spans; 60% traces through a random 200-service mesh, 3-15
 * spans; every call a CLIENT span and its SERVER child with ~12 proxy attributes; ~1.5% of calls
 * fail with 503), written oldest first in 8,192-span commits as a collector writer would, then
 * downsamples the edge rollups older than 6 h (store_retention_step, as the daemon's writer does
 * over a day). Then it measures through query_handle, in process (the HTTP layer adds the same
 * small constant to every query): trace by id (random known ids), error traces of one service in
 * the last hour, /api/dependencies and /api/graph for 1 h and 24 h windows, p50/p99 of each.
 *
 * The database is cached: PATH.stamp records the generator version, the span count and the fill's
 * clock, and a rerun with the same version and count skips the fill and queries the windows of
 * the original fill (so "the last hour" keeps its data however old the file is). Trace ids are a
 * function of the trace's index, so any index names a known trace without keeping a list.
 *
 * Usage: bench_query [--db PATH] [--spans N] [--samples N]; prints one JSON object on stdout,
 * progress on stderr. Every loop is bounded by a count and a time limit.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "query.h"
#include "storage.h"

/* Bump when the generated data changes, so cached databases are rebuilt. v2: start times spread
 * by spans written, not by an estimated trace count (v1 estimated 8 spans per trace where the mix
 * averages 7.2, and piled the last ~10% of the traces, 145,000 of them, on one instant 100 ms
 * before the end: the "last hour" then held an hour's worth of traces in its last 100 ms).
 * Also bump when the store's file format changes, so the file is written by the store measured
 * (a migrated file keeps the old tables' pages free, misstating bytes per span): v4 is schema 7
 * (search index without rowids, durations as shortest and spread) with chunk codec 2; v5 is
 * schema 8 (trace_index written in key order); v6 is chunk codec 3 (hex strings packed) in 8 KiB
 * pages. */
#define GEN_VERSION 6
#define DAY_US (24LL * 3600 * 1000000)
#define HOUR_US (3600LL * 1000000)
#define SPANS_PER_COMMIT 8192u
#define WIDE_SERVICES 200u
#define WIDE_FANOUT 4u   /* downstream services each wide-mesh service may call */
#define MAX_TRACE_SPANS 16u
#define ERROR_PERMILLE 15u /* 1.5% of calls fail */
#define MEASURE_LIMIT_S 20.0 /* per measurement, whatever the sample count */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* Trace i's id: both halves derived from i (never zero in practice; forced odd). */
static void trace_id_of(uint64_t i, uint8_t out[16])
{
    uint64_t hi = splitmix(i * 2 + 0x51ED) | 1, lo = splitmix(i * 2 + 0x51EE) | 1;
    for (int k = 0; k < 8; k++) {
        out[k] = (uint8_t)(hi >> (56 - 8 * k));
        out[8 + k] = (uint8_t)(lo >> (56 - 8 * k));
    }
}

/* ----- services and their resources ---------------------------------------------------------- */

struct service {
    char name[32];
    char ns[32];
    struct resource res; /* in the long-lived arena: spans of every batch point here */
    uint16_t down[WIDE_FANOUT];
    unsigned n_down;
};

enum { BI_PRODUCTPAGE, BI_DETAILS, BI_REVIEWS, BI_RATINGS, BI_N };
static struct service svcs[BI_N + WIDE_SERVICES];
static struct arena *static_arena;

static struct mstr cs(const char *s)
{
    return (struct mstr){s, (uint32_t)strlen(s)};
}

static struct mstr as(struct arena *a, const char *s)
{
    size_t n = strlen(s);
    return (struct mstr){arena_strndup(a, s, n), (uint32_t)n};
}

static void set_str(struct attr *a, struct mstr k, struct mstr v)
{
    a->key = k;
    a->value.type = VALUE_STRING;
    a->value.u.str = v;
}

static void set_int(struct attr *a, const char *k, int64_t v)
{
    a->key = cs(k);
    a->value.type = VALUE_INT;
    a->value.u.i = v;
}

static void make_services(void)
{
    static const char *const bookinfo[] = {"productpage", "details", "reviews", "ratings"};
    static_arena = arena_create(1 << 16);
    for (unsigned i = 0; i < BI_N + WIDE_SERVICES; i++) {
        struct service *s = &svcs[i];
        if (i < BI_N) {
            snprintf(s->name, sizeof s->name, "%s", bookinfo[i]);
            snprintf(s->ns, sizeof s->ns, "bookinfo");
        } else {
            snprintf(s->name, sizeof s->name, "svc-%03u", i - BI_N);
            snprintf(s->ns, sizeof s->ns, "team-%u", (i - BI_N) % 10);
            /* Calls go to higher-numbered services only: a DAG, so every trace ends. */
            unsigned idx = i - BI_N;
            for (unsigned k = 0; k < WIDE_FANOUT && idx + 1 < WIDE_SERVICES; k++) {
                unsigned span = WIDE_SERVICES - idx - 1;
                s->down[s->n_down++] =
                    (uint16_t)(BI_N + idx + 1 + splitmix(i * 16 + k) % (span < 40 ? span : 40));
            }
        }
        char pod[64], dep[48];
        snprintf(dep, sizeof dep, "%.31s-v1", s->name);
        snprintf(pod, sizeof pod, "%.31s-v1-%06" PRIx64 "-x2k9q", s->name, splitmix(i) & 0xffffff);
        struct attr *a = arena_alloc(static_arena, 7 * sizeof *a);
        set_str(&a[0], cs("service.name"), as(static_arena, s->name));
        set_str(&a[1], cs("service.version"), cs("v1"));
        set_str(&a[2], cs("k8s.namespace.name"), as(static_arena, s->ns));
        set_str(&a[3], cs("k8s.deployment.name"), as(static_arena, dep));
        set_str(&a[4], cs("k8s.pod.name"), as(static_arena, pod));
        set_str(&a[5], cs("host.name"), cs("gke-prod-pool-1-2f1e9a"));
        set_str(&a[6], cs("telemetry.sdk.name"), cs("envoy"));
        s->res.attrs.items = a;
        s->res.attrs.n = 7;
    }
}

/* ----- trace generation ---------------------------------------------------------------------- */

struct gen {
    struct span_batch *b;
    uint64_t rng;
    uint8_t trace[16];
    int64_t start_us;
    uint32_t first; /* the current trace's first span in b */
};

static uint64_t rnd(struct gen *g)
{
    return g->rng = splitmix(g->rng);
}

static const char *const methods[] = {"GET", "GET", "GET", "GET", "POST", "PUT"};
static const char *const agents[] = {
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "python-requests/2.31.0", "grpc-go/1.58.3", "okhttp/4.12.0", "Envoy/HC"};

/* Adds one span; returns its index in the batch. */
static uint32_t add_span(struct gen *g, const struct service *svc, const struct service *peer,
                         enum span_kind kind, const char *route, const char *method, int status,
                         int64_t start_us, int64_t dur_us, int parent)
{
    struct span_batch *b = g->b;
    struct span *s = span_batch_add(b);
    if (!s) abort();
    uint32_t idx = b->n_spans - 1;
    memcpy(s->trace_id, g->trace, 16);
    uint64_t sid = rnd(g) | 1;
    memcpy(s->span_id, &sid, 8);
    if (parent >= 0) {
        memcpy(s->parent_span_id, b->spans[parent].span_id, 8);
        s->has_parent = true;
    }
    s->kind = kind;
    s->resource = &svc->res;
    s->start_unix_nano = (uint64_t)start_us * 1000;
    s->end_unix_nano = (uint64_t)(start_us + dur_us) * 1000;
    char buf[160];
    snprintf(buf, sizeof buf, "%s.%s.svc.cluster.local:9080%s", peer->name, peer->ns, route);
    s->name = as(b->arena, buf);
    struct attr *a = arena_alloc(b->arena, 14 * sizeof *a);
    unsigned n = 0;
    set_str(&a[n++], cs("http.request.method"), cs(method));
    snprintf(buf, sizeof buf, "http://%s.%s:9080%s?id=%u", peer->name, peer->ns, route,
             (unsigned)(rnd(g) % 1000));
    set_str(&a[n++], cs("url.full"), as(b->arena, buf));
    set_int(&a[n++], "http.response.status_code", status);
    snprintf(buf, sizeof buf, "%s.%s.svc.cluster.local", peer->name, peer->ns);
    set_str(&a[n++], cs("server.address"), as(b->arena, buf));
    set_int(&a[n++], "server.port", 9080);
    snprintf(buf, sizeof buf, "10.%u.%u.%u", (unsigned)(svc - svcs) % 200,
             (unsigned)(rnd(g) % 250), (unsigned)(rnd(g) % 250) + 1);
    set_str(&a[n++], cs("client.address"), as(b->arena, buf));
    set_str(&a[n++], cs("user_agent.original"), cs(agents[rnd(g) % 5]));
    snprintf(buf, sizeof buf, "%s|9080||%s.%s.svc.cluster.local",
             kind == SPAN_KIND_CLIENT ? "outbound" : "inbound", peer->name, peer->ns);
    set_str(&a[n++], cs("upstream_cluster"), as(b->arena, buf));
    uint64_t r1 = rnd(g), r2 = rnd(g);
    snprintf(buf, sizeof buf, "%08x-%04x-4%03x-a%03x-%012" PRIx64, (unsigned)r1,
             (unsigned)(r1 >> 32) & 0xffff, (unsigned)(r1 >> 48) & 0xfff,
             (unsigned)r2 & 0xfff, (uint64_t)((r2 >> 16) & 0xffffffffffffULL));
    set_str(&a[n++], cs("guid:x-request-id"), as(b->arena, buf));
    set_str(&a[n++], cs("response_flags"), cs(status >= 500 ? "UF" : "-"));
    set_str(&a[n++], cs("network.protocol.version"), cs("1.1"));
    set_str(&a[n++], cs("istio.mesh_id"), cs("cluster.local"));
    set_int(&a[n++], "http.response.body.size", (int64_t)(200 + rnd(g) % 8000));
    if (kind == SPAN_KIND_CLIENT) set_str(&a[n++], cs("peer.service"), as(b->arena, peer->name));
    s->attrs.items = a;
    s->attrs.n = n;
    if (status >= 500) s->status_code = STATUS_ERROR;
    return idx;
}

/* One call from caller (its server span at index parent, or the user when parent < 0) to
 * callee: a CLIENT span in the caller and the callee's SERVER span under it. Returns the SERVER
 * span's index. *failed (OUT) says whether the call failed. */
static uint32_t add_call(struct gen *g, const struct service *caller, const struct service *callee,
                         const char *route, int parent, int64_t start_us, int64_t dur_us,
                         bool *failed)
{
    const char *method = methods[rnd(g) % 6];
    bool fail = rnd(g) % 1000 < ERROR_PERMILLE;
    int status = fail ? 503 : 200;
    *failed = fail;
    int client = parent;
    if (caller) {
        client = (int)add_span(g, caller, callee, SPAN_KIND_CLIENT, route, method, status,
                               start_us, dur_us, parent);
        start_us += 150;
        dur_us -= 300;
    }
    return add_span(g, callee, callee, SPAN_KIND_SERVER, route, method, status, start_us, dur_us,
                    client);
}

static void bookinfo_trace(struct gen *g)
{
    int64_t t = g->start_us;
    bool f;
    uint32_t root = add_call(g, NULL, &svcs[BI_PRODUCTPAGE], "/productpage", -1, t,
                             20000 + (int64_t)(rnd(g) % 30000), &f);
    add_call(g, &svcs[BI_PRODUCTPAGE], &svcs[BI_DETAILS], "/details/0", (int)root, t + 500,
             2000 + (int64_t)(rnd(g) % 3000), &f);
    uint32_t rev = add_call(g, &svcs[BI_PRODUCTPAGE], &svcs[BI_REVIEWS], "/reviews/0", (int)root,
                            t + 6000, 8000 + (int64_t)(rnd(g) % 10000), &f);
    add_call(g, &svcs[BI_REVIEWS], &svcs[BI_RATINGS], "/ratings/0", (int)rev, t + 7000,
             1000 + (int64_t)(rnd(g) % 4000), &f);
}

static void wide_call(struct gen *g, unsigned svc, int server, int64_t start, int64_t dur,
                      unsigned depth)
{
    const struct service *s = &svcs[svc];
    if (!s->n_down || depth >= 4) return;
    unsigned calls = (unsigned)(rnd(g) % 3); /* 0-2 downstream calls */
    for (unsigned c = 0; c < calls && g->b->n_spans - g->first + 2 <= MAX_TRACE_SPANS; c++) {
        const struct service *callee = &svcs[s->down[rnd(g) % s->n_down]];
        char route[48];
        snprintf(route, sizeof route, "/api/v1/op%u", (unsigned)(rnd(g) % 6));
        int64_t d = dur / 3 + 300;
        bool f;
        uint32_t srv = add_call(g, s, callee, route, server, start + 200 + (int64_t)c * d / 2, d, &f);
        wide_call(g, (unsigned)(callee - svcs), (int)srv, start + 400, d - 400, depth + 1);
    }
}

static void wide_trace(struct gen *g)
{
    unsigned entry = BI_N + (unsigned)(rnd(g) % 20); /* the mesh's edge services */
    bool f;
    int64_t dur = 5000 + (int64_t)(rnd(g) % 80000);
    char route[48];
    snprintf(route, sizeof route, "/api/v1/op%u", (unsigned)(rnd(g) % 6));
    uint32_t root = add_call(g, NULL, &svcs[entry], route, -1, g->start_us, dur, &f);
    wide_call(g, entry, (int)root, g->start_us, dur, 0);
}

/* ----- the cached database ------------------------------------------------------------------- */

struct stamp {
    int version;
    long long spans, traces;
    long long end_us;
    double fill_s;
};

static bool read_stamp(const char *db, struct stamp *st /* OUT */)
{
    char p[1024];
    snprintf(p, sizeof p, "%s.stamp", db);
    FILE *f = fopen(p, "r");
    if (!f) return false;
    int n = fscanf(f, "meshscope-bench-query v%d spans=%lld traces=%lld end_us=%lld fill_s=%lf",
                   &st->version, &st->spans, &st->traces, &st->end_us, &st->fill_s);
    fclose(f);
    struct stat sb;
    return n == 5 && stat(db, &sb) == 0;
}

static int write_stamp(const char *db, const struct stamp *st)
{
    char p[1024];
    snprintf(p, sizeof p, "%s.stamp", db);
    FILE *f = fopen(p, "w");
    if (!f) return -errno;
    fprintf(f, "meshscope-bench-query v%d spans=%lld traces=%lld end_us=%lld fill_s=%.1f\n",
            st->version, st->spans, st->traces, st->end_us, st->fill_s);
    return fclose(f) == 0 ? 0 : -EIO;
}

static void remove_db(const char *db)
{
    static const char *const suffix[] = {"", "-wal", "-shm", ".stamp"};
    char p[1024];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", db, suffix[i]);
        unlink(p);
    }
}

/* Writes want_spans spans (the last commit may end a trace past it), their traces' starts spread
 * evenly over the day before the fill. */
static int fill(const char *db, long long want_spans, struct stamp *out /* OUT */)
{
    remove_db(db);
    struct store_options o = {.path = db};
    struct store *st = store_open(&o);
    if (!st) return -EIO;
    int rc = 0;
    int64_t end = wall_us();
    struct gen g = {.rng = 42};
    long long spans = 0, traces = 0;
    double t0 = now_s(), last_report = t0;
    while (spans < want_spans) {
        g.b = span_batch_create();
        if (!g.b) {
            rc = -ENOMEM;
            break;
        }
        while (g.b->n_spans + MAX_TRACE_SPANS <= SPANS_PER_COMMIT && spans + g.b->n_spans < want_spans) {
            trace_id_of((uint64_t)traces, g.trace);
            g.rng = splitmix((uint64_t)traces ^ 0xC0FFEE);
            /* Evenly over the day by spans written so far (the trace sizes are random). */
            g.start_us = end - DAY_US +
                         (int64_t)((double)(spans + g.b->n_spans) / (double)want_spans * DAY_US);
            if (g.start_us > end - 100000) g.start_us = end - 100000;
            uint32_t before = g.first = g.b->n_spans;
            if (traces % 10 < 4) bookinfo_trace(&g);
            else wide_trace(&g);
            if (g.b->n_spans - before > MAX_TRACE_SPANS) abort(); /* the generator's own bound */
            traces++;
        }
        spans += g.b->n_spans;
        rc = store_put_batches(st, &g.b, 1);
        span_batch_destroy(g.b);
        if (rc) {
            fprintf(stderr, "bench_query: store_put_batches: %d\n", rc);
            break;
        }
        if (now_s() - last_report > 15) {
            last_report = now_s();
            fprintf(stderr, "bench_query: %lld spans stored (%.0f spans/s)\n", spans,
                    (double)spans / (last_report - t0));
        }
    }
    double put_s = now_s() - t0;
    /* Downsample rollups older than 6 h, as the daemon's writer does through the day: each step
     * merges at most 100,000 rows; 200 steps bound it far above what this data needs. */
    uint64_t deleted;
    for (int i = 0; rc == 0 && i < 200; i++) {
        double a = now_s();
        rc = store_retention_step(st, end, 100000, &deleted);
        if (now_s() - a < 0.005) break; /* nothing left to merge */
    }
    store_close(st);
    if (rc) return rc;
    *out = (struct stamp){GEN_VERSION, spans, traces, end, now_s() - t0};
    fprintf(stderr, "bench_query: filled %lld spans (%lld traces) in %.1f s (%.0f spans/s), "
                    "downsampling %.1f s\n",
            spans, traces, out->fill_s, (double)spans / put_s, out->fill_s - put_s);
    return write_stamp(db, out);
}

/* ----- measurements -------------------------------------------------------------------------- */

struct lat {
    double p50, p99, max;
    unsigned n, ok, hits;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*make_query)(unsigned i, const struct stamp *sp, char *path, size_t cap,
                           struct query_arg *args, size_t *n_args, char bufs[][64]);

/* Runs q up to n times (stopping after MEASURE_LIMIT_S); latency in ms. hits counts responses
 * whose body is more than an empty result (so an empty window does not pass as fast). */
static struct lat measure(struct store *st, const struct stamp *sp, make_query q, unsigned n,
                          const char *hit_marker)
{
    double *ms = calloc(n, sizeof *ms);
    struct lat r = {0};
    double limit = now_s() + MEASURE_LIMIT_S;
    for (unsigned i = 0; i < n && now_s() < limit; i++) {
        char path[128], bufs[8][64];
        struct query_arg args[8];
        size_t n_args = 0;
        q(i, sp, path, sizeof path, args, &n_args, bufs);
        struct query_response resp = {0};
        double a = now_s();
        int rc = query_handle(st, path, args, n_args, &resp);
        ms[r.n++] = (now_s() - a) * 1e3;
        if (rc == 0 && resp.status == 200) r.ok++;
        if (resp.body && strstr(resp.body, hit_marker)) r.hits++;
        free(resp.body);
    }
    qsort(ms, r.n, sizeof *ms, cmp_double);
    if (r.n) {
        r.p50 = ms[r.n / 2];
        r.p99 = ms[(r.n * 99) / 100 < r.n ? (r.n * 99) / 100 : r.n - 1];
        r.max = ms[r.n - 1];
    }
    free(ms);
    return r;
}

static uint64_t pick(unsigned i, uint64_t range)
{
    return splitmix(0xABCDEFULL + i) % range;
}

static void q_trace(unsigned i, const struct stamp *sp, char *path, size_t cap,
                    struct query_arg *args, size_t *n_args, char bufs[][64])
{
    (void)args;
    (void)bufs;
    uint8_t id[16];
    trace_id_of(pick(i, (uint64_t)sp->traces), id);
    int n = snprintf(path, cap, "/api/traces/");
    for (int k = 0; k < 16; k++) n += snprintf(path + n, cap - (size_t)n, "%02x", id[k]);
    *n_args = 0;
}

/* The services with error traffic in any hour: the four Bookinfo services and the 20 entry
 * services of the wide mesh, taken in turn. */
static const char *search_service(unsigned i)
{
    return svcs[i % (BI_N + 20)].name;
}

static void q_errors(unsigned i, const struct stamp *sp, char *path, size_t cap,
                     struct query_arg *args, size_t *n_args, char bufs[][64])
{
    snprintf(path, cap, "/api/traces");
    snprintf(bufs[0], 64, "%lld", sp->end_us - HOUR_US);
    snprintf(bufs[1], 64, "%lld", sp->end_us);
    args[0] = (struct query_arg){"service", search_service(i)};
    args[1] = (struct query_arg){"tags", "{\"error\":\"true\"}"};
    args[2] = (struct query_arg){"start", bufs[0]};
    args[3] = (struct query_arg){"end", bufs[1]};
    args[4] = (struct query_arg){"limit", "20"}; /* the Jaeger UI's default */
    *n_args = 5;
}

static void deps(const struct stamp *sp, int64_t window, char *path, size_t cap,
                 struct query_arg *args, size_t *n_args, char bufs[][64])
{
    snprintf(path, cap, "/api/dependencies");
    snprintf(bufs[0], 64, "%lld", sp->end_us / 1000);
    snprintf(bufs[1], 64, "%lld", (long long)(window / 1000));
    args[0] = (struct query_arg){"endTs", bufs[0]};
    args[1] = (struct query_arg){"lookback", bufs[1]};
    *n_args = 2;
}

static void graph(const struct stamp *sp, int64_t window, char *path, size_t cap,
                  struct query_arg *args, size_t *n_args, char bufs[][64])
{
    snprintf(path, cap, "/api/graph");
    snprintf(bufs[0], 64, "%lld", sp->end_us - window);
    snprintf(bufs[1], 64, "%lld", sp->end_us);
    args[0] = (struct query_arg){"start", bufs[0]};
    args[1] = (struct query_arg){"end", bufs[1]};
    *n_args = 2;
}

static void q_deps_1h(unsigned i, const struct stamp *sp, char *p, size_t c, struct query_arg *a,
                      size_t *n, char b[][64])
{
    (void)i;
    deps(sp, HOUR_US, p, c, a, n, b);
}

static void q_deps_24h(unsigned i, const struct stamp *sp, char *p, size_t c, struct query_arg *a,
                       size_t *n, char b[][64])
{
    (void)i;
    deps(sp, DAY_US, p, c, a, n, b);
}

static void q_graph_1h(unsigned i, const struct stamp *sp, char *p, size_t c, struct query_arg *a,
                       size_t *n, char b[][64])
{
    (void)i;
    graph(sp, HOUR_US, p, c, a, n, b);
}

static void q_graph_24h(unsigned i, const struct stamp *sp, char *p, size_t c,
                        struct query_arg *a, size_t *n, char b[][64])
{
    (void)i;
    graph(sp, DAY_US, p, c, a, n, b);
}

static void print_lat(const char *name, struct lat l, bool last)
{
    printf("\"%s\":{\"n\":%u,\"ok\":%u,\"hits\":%u,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}%s",
           name, l.n, l.ok, l.hits, l.p50, l.p99, l.max, last ? "" : ",");
}

int main(int argc, char **argv)
{
    const char *db = "/tmp/bench-query.db";
    long long spans = 10000000;
    unsigned samples = 1000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0) db = argv[i + 1];
        else if (strcmp(argv[i], "--spans") == 0) spans = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--samples") == 0) samples = (unsigned)atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_query [--db PATH] [--spans N] [--samples N]\n");
            return 2;
        }
    }
    if (argc % 2 == 0 || spans < 1000 || spans > 1000000000LL || samples < 10 ||
        samples > 100000) {
        fprintf(stderr, "usage: bench_query [--db PATH] [--spans N (>= 1000)] [--samples N]\n");
        return 2;
    }
    log_min_level = LOG_WARN;
    make_services();
    struct stamp sp;
    bool cached = read_stamp(db, &sp) && sp.version == GEN_VERSION && sp.spans >= spans &&
                  sp.spans < spans + MAX_TRACE_SPANS + SPANS_PER_COMMIT;
    if (!cached) {
        fprintf(stderr, "bench_query: filling %s with %lld spans\n", db, spans);
        if (fill(db, spans, &sp)) return 1;
    } else {
        fprintf(stderr, "bench_query: reusing %s (%lld spans, filled in %.1f s)\n", db, sp.spans,
                sp.fill_s);
    }
    struct stat sb;
    long long bytes = stat(db, &sb) == 0 ? (long long)sb.st_size : 0;
    struct store_options o = {.path = db};
    struct store *st = store_open(&o);
    if (!st) return 1;
    /* Warm-up: one pass of each kind, as a running daemon's page cache would be. */
    (void)measure(st, &sp, q_graph_24h, 1, "\"nodes\"");
    (void)measure(st, &sp, q_errors, 24, "traceID");
    struct lat by_id = measure(st, &sp, q_trace, samples, "traceID");
    struct lat errs = measure(st, &sp, q_errors, samples / 5, "traceID");
    struct lat d1 = measure(st, &sp, q_deps_1h, samples / 10, "callCount");
    struct lat d24 = measure(st, &sp, q_deps_24h, samples / 20, "callCount");
    struct lat g1 = measure(st, &sp, q_graph_1h, samples / 10, "\"source\"");
    struct lat g24 = measure(st, &sp, q_graph_24h, samples / 20, "\"source\"");
    store_close(st);
    printf("{\"spans\":%lld,\"traces\":%lld,\"cached\":%s,\"fill_seconds\":%.1f,\"db_bytes\":%lld,"
           "\"bytes_per_span\":%.1f,",
           sp.spans, sp.traces, cached ? "true" : "false", sp.fill_s, bytes,
           (double)bytes / (double)sp.spans);
    print_lat("trace_by_id", by_id, false);
    print_lat("error_search_1h", errs, false);
    print_lat("dependencies_1h", d1, false);
    print_lat("dependencies_24h", d24, false);
    print_lat("graph_1h", g1, false);
    print_lat("graph_24h", g24, true);
    printf("}\n");
    arena_destroy(static_arena);
    return 0;
}
