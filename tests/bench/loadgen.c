/*
 * loadgen.c: meshscope-loadgen, a load generator that sends realistic OTLP/HTTP protobuf traces
 * through the real ingest endpoint.
 *
 * Each worker thread keeps one keep-alive connection and one pre-encoded request body: a batch of
 * mesh spans (a SERVER span and a CLIENT span per simulated request, ~12 attributes each, as an
 * Envoy sidecar or an instrumented service sends them). Before each send only the trace and span
 * ids are patched in place (fresh random values, so every span stored is unique); nothing else
 * is re-encoded, so the generator costs little CPU beside the daemon on the same machine.
 *
 * Reports requests sent, accepted (2xx), rejected (4xx), retried (429/503), spans/s accepted and
 * request latency percentiles. Optionally paces to a target rate (--rate spans/s in total).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ----- a minimal protobuf writer -------------------------------------------------------------- */

struct pb {
    uint8_t *p;
    size_t len, cap;
};

static void pb_reserve(struct pb *b, size_t n)
{
    if (b->len + n <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) abort();
    b->cap = cap;
}

static void pb_varint(struct pb *b, uint64_t v)
{
    pb_reserve(b, 10);
    while (v >= 0x80) {
        b->p[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->p[b->len++] = (uint8_t)v;
}

static void pb_tag(struct pb *b, unsigned field, unsigned wire)
{
    pb_varint(b, (uint64_t)field << 3 | wire);
}

/* Length-delimited field; returns the offset of the payload in b. */
static size_t pb_bytes(struct pb *b, unsigned field, const void *data, size_t len)
{
    pb_tag(b, field, 2);
    pb_varint(b, len);
    pb_reserve(b, len);
    size_t off = b->len;
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return off;
}

static void pb_string(struct pb *b, unsigned field, const char *s)
{
    pb_bytes(b, field, s, strlen(s));
}

static void pb_fixed64(struct pb *b, unsigned field, uint64_t v)
{
    pb_tag(b, field, 1);
    pb_reserve(b, 8);
    memcpy(b->p + b->len, &v, 8); /* little-endian host */
    b->len += 8;
}

/* Appends sub as a length-delimited field (sub is consumed/reset). Returns the offset of sub's
 * payload in b, so offsets inside sub can be rebased. */
static size_t pb_message(struct pb *b, unsigned field, struct pb *sub)
{
    size_t off = pb_bytes(b, field, sub->p, sub->len);
    sub->len = 0;
    return off;
}

/* KeyValue{key=1, value=2 AnyValue{string_value=1 | int_value=3}} */
static void kv_string(struct pb *b, unsigned field, const char *k, const char *v)
{
    struct pb kv = {0}, av = {0};
    pb_string(&av, 1, v);
    pb_string(&kv, 1, k);
    pb_message(&kv, 2, &av);
    pb_message(b, field, &kv);
    free(kv.p);
    free(av.p);
}

static void kv_int(struct pb *b, unsigned field, const char *k, int64_t v)
{
    struct pb kv = {0}, av = {0};
    pb_tag(&av, 3, 0);
    pb_varint(&av, (uint64_t)v);
    pb_string(&kv, 1, k);
    pb_message(&kv, 2, &av);
    pb_message(b, field, &kv);
    free(kv.p);
    free(av.p);
}

/* ----- the request template -------------------------------------------------------------------- */

struct id_slot {
    size_t off;   /* offset in the body */
    uint8_t len;  /* 16 trace id, 8 span id */
    uint16_t group; /* slots of one simulated request share a trace id */
    uint8_t role;   /* 0 trace id, 1 server span id (also client's parent? no: own), 2 client id,
                       3 client's parent (= server span id) */
};

struct template {
    struct pb body;
    struct id_slot *slots;
    size_t n_slots, cap_slots;
    unsigned spans;
};

static void add_slot(struct template *t, size_t off, uint8_t len, uint16_t group, uint8_t role)
{
    if (t->n_slots == t->cap_slots) {
        t->cap_slots = t->cap_slots ? t->cap_slots * 2 : 256;
        t->slots = realloc(t->slots, t->cap_slots * sizeof *t->slots);
        if (!t->slots) abort();
    }
    t->slots[t->n_slots++] = (struct id_slot){off, len, group, role};
}

static const char *const methods[] = {"GET", "GET", "GET", "POST", "PUT", "DELETE"};
static const char *const routes[] = {"/api/v1/products", "/api/v1/reviews", "/api/v1/ratings",
                                     "/api/v1/cart", "/api/v1/checkout", "/healthz"};

/* One ExportTraceServiceRequest from service `svc` calling `peer`, with `pairs` simulated
 * requests (a SERVER span and its CLIENT child each). Ids are placeholders patched per send. */
static void build_template(struct template *t, unsigned svc, unsigned services, unsigned pairs,
                           uint64_t seed)
{
    char name[64], peer[64];
    snprintf(name, sizeof name, "svc-%02u", svc);
    snprintf(peer, sizeof peer, "svc-%02u", (svc + 1) % services);
    uint8_t zeros[16] = {0};
    struct pb scope_spans = {0}, span = {0}, tmp = {0};
    /* Offsets recorded relative to scope_spans, rebased at the end. */
    struct id_slot *local = calloc((size_t)pairs * 5, sizeof *local);
    size_t nl = 0;
    struct pb scope = {0};
    pb_string(&scope, 1, "meshscope-loadgen");
    pb_string(&scope, 2, "0.1.0");
    pb_message(&scope_spans, 1, &scope);
    uint64_t now = (uint64_t)time(NULL) * 1000000000ull;
    for (unsigned i = 0; i < pairs; i++) {
        uint64_t r = seed * 6364136223846793005ull + i * 1442695040888963407ull;
        const char *method = methods[r % 6];
        const char *route = routes[(r >> 8) % 6];
        int status = (r >> 16) % 50 == 0 ? 503 : 200;
        uint64_t dur = 200000 + (r >> 24) % 50000000; /* 0.2-50 ms */
        for (int role = 0; role < 2; role++) { /* 0 server, 1 client */
            size_t base;
            /* trace_id=1, span_id=2, parent_span_id=4, name=5, kind=6, start=7, end=8,
             * attributes=9, status=15 */
            size_t off_trace = pb_bytes(&span, 1, zeros, 16);
            size_t off_span = pb_bytes(&span, 2, zeros, 8);
            size_t off_parent = role == 1 ? pb_bytes(&span, 4, zeros, 8) : 0;
            char op[96];
            snprintf(op, sizeof op, "%s %s", method, route);
            pb_string(&span, 5, role == 0 ? op : "egress");
            pb_tag(&span, 6, 0);
            pb_varint(&span, role == 0 ? 2 : 3);
            pb_fixed64(&span, 7, now + (role ? 50000 : 0));
            pb_fixed64(&span, 8, now + dur - (role ? 50000 : 0));
            char buf[128];
            kv_string(&span, 9, "http.request.method", method);
            kv_string(&span, 9, "url.path", route);
            kv_int(&span, 9, "http.response.status_code", status);
            kv_string(&span, 9, "network.protocol.version", "1.1");
            kv_string(&span, 9, "server.address", role ? peer : name);
            kv_int(&span, 9, "server.port", 8080);
            snprintf(buf, sizeof buf, "10.0.%u.%u", svc, (unsigned)(r % 250) + 1);
            kv_string(&span, 9, "client.address", buf);
            kv_string(&span, 9, "user_agent.original",
                      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0");
            snprintf(buf, sizeof buf, "outbound|8080||%s.default.svc.cluster.local", peer);
            kv_string(&span, 9, "upstream_cluster", buf);
            snprintf(buf, sizeof buf, "%08x-%04x-4%03x-a%03x-%012llx", (unsigned)r,
                     (unsigned)(r >> 32) & 0xffff, (unsigned)(r >> 40) & 0xfff,
                     (unsigned)(r >> 20) & 0xfff, (unsigned long long)(r & 0xffffffffffffull));
            kv_string(&span, 9, "guid:x-request-id", buf);
            kv_string(&span, 9, "response_flags", status == 503 ? "UF" : "-");
            kv_string(&span, 9, "istio.canonical_service", role ? peer : name);
            if (status >= 500) {
                pb_tag(&tmp, 3, 0);
                pb_varint(&tmp, 2); /* STATUS_CODE_ERROR */
                pb_message(&span, 15, &tmp);
            }
            base = pb_message(&scope_spans, 2, &span);
            local[nl++] = (struct id_slot){base + off_trace, 16, (uint16_t)i, 0};
            local[nl++] = (struct id_slot){base + off_span, 8, (uint16_t)i, role ? 2 : 1};
            if (role == 1) local[nl++] = (struct id_slot){base + off_parent, 8, (uint16_t)i, 3};
        }
    }
    /* ResourceSpans{resource=1{attributes=1}, scope_spans=2} */
    struct pb resource = {0}, rs = {0};
    kv_string(&resource, 1, "service.name", name);
    kv_string(&resource, 1, "service.namespace", "default");
    kv_string(&resource, 1, "k8s.pod.name", "pod-0");
    pb_message(&rs, 1, &resource);
    size_t ss_off = pb_message(&rs, 2, &scope_spans);
    size_t rs_off = pb_message(&t->body, 1, &rs); /* ExportTraceServiceRequest.resource_spans */
    for (size_t i = 0; i < nl; i++)
        add_slot(t, rs_off + ss_off + local[i].off, local[i].len, local[i].group, local[i].role);
    t->spans = pairs * 2;
    free(local);
    free(scope_spans.p);
    free(span.p);
    free(tmp.p);
    free(scope.p);
    free(resource.p);
    free(rs.p);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Fresh ids: one trace id per group, server span id, client span id (+ parent = server id). */
static void patch_ids(struct template *t, uint64_t *rng)
{
    uint8_t trace[16], server[8], client[8];
    int group = -1;
    for (size_t i = 0; i < t->n_slots; i++) {
        struct id_slot *s = &t->slots[i];
        if (s->group != group) {
            group = s->group;
            uint64_t a = xorshift(rng) | 1, b = xorshift(rng) | 1, c = xorshift(rng) | 1,
                     d = xorshift(rng) | 1;
            memcpy(trace, &a, 8);
            memcpy(trace + 8, &b, 8);
            memcpy(server, &c, 8);
            memcpy(client, &d, 8);
        }
        const uint8_t *src = s->role == 0 ? trace : s->role == 2 ? client : server;
        memcpy(t->body.p + s->off, src, s->len);
    }
}

/* ----- HTTP client ----------------------------------------------------------------------------- */

static struct config {
    const char *host, *port, *path;
    unsigned threads, pairs, services;
    double duration_s;
    uint64_t max_requests; /* 0 = until duration */
    double rate;           /* spans/s in total; 0 = as fast as accepted */
} cfg = {"127.0.0.1", "4318", "/v1/traces", 4, 50, 10, 10.0, 0, 0};

static _Atomic uint64_t n_sent, n_ok, n_rejected, n_retry, n_errors, spans_ok;
static _Atomic uint64_t requests_claimed;

struct worker {
    pthread_t th;
    unsigned id;
    uint32_t *lat_us; /* latency samples */
    size_t n_lat, cap_lat;
};

static int connect_to(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(cfg.host, cfg.port, &hints, &res) != 0) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static bool write_all(int fd, const void *p, size_t n)
{
    const uint8_t *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return false;
        }
        c += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads one response; returns the status code or -1. Handles Content-Length bodies. */
static int read_response(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    char *hdr_end = NULL;
    while (!hdr_end) {
        if (len == cap - 1) return -1;
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0) return -1;
        len += (size_t)r;
        buf[len] = '\0';
        hdr_end = strstr(buf, "\r\n\r\n");
    }
    int status = atoi(buf + 9);
    size_t body = 0;
    char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl && cl < hdr_end) body = strtoul(cl + 17, NULL, 10);
    size_t have = len - (size_t)(hdr_end + 4 - buf);
    while (have < body) {
        ssize_t r = recv(fd, buf, cap - 1, 0);
        if (r <= 0) return -1;
        have += (size_t)r;
    }
    return status;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct template t = {0};
    build_template(&t, w->id % cfg.services, cfg.services, cfg.pairs, w->id + 1);
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)w->id << 32) ^ (uint64_t)time(NULL);
    char head[512], resp[8192];
    int fd = connect_to();
    double start = now_s(), end = start + cfg.duration_s;
    /* Pacing: each worker sends its share of the rate at even intervals. */
    double interval = cfg.rate > 0 ? (double)t.spans * cfg.threads / cfg.rate : 0;
    double next = start;
    while (now_s() < end) {
        if (cfg.max_requests &&
            atomic_fetch_add(&requests_claimed, 1) >= cfg.max_requests)
            break;
        if (interval > 0) {
            double wait = next - now_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
            next += interval;
        }
        if (fd < 0) fd = connect_to();
        if (fd < 0) {
            atomic_fetch_add(&n_errors, 1);
            usleep(100000);
            continue;
        }
        patch_ids(&t, &rng);
        int hl = snprintf(head, sizeof head,
                          "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: "
                          "application/x-protobuf\r\nContent-Length: %zu\r\n\r\n",
                          cfg.path, cfg.host, cfg.port, t.body.len);
        double t0 = now_s();
        atomic_fetch_add(&n_sent, 1);
        if (!write_all(fd, head, (size_t)hl) || !write_all(fd, t.body.p, t.body.len)) {
            close(fd);
            fd = -1;
            atomic_fetch_add(&n_errors, 1);
            continue;
        }
        int status = read_response(fd, resp, sizeof resp);
        double t1 = now_s();
        if (status < 0) {
            close(fd);
            fd = -1;
            atomic_fetch_add(&n_errors, 1);
            continue;
        }
        if (w->n_lat == w->cap_lat) {
            w->cap_lat = w->cap_lat ? w->cap_lat * 2 : 4096;
            w->lat_us = realloc(w->lat_us, w->cap_lat * sizeof *w->lat_us);
        }
        w->lat_us[w->n_lat++] = (uint32_t)((t1 - t0) * 1e6);
        if (status >= 200 && status < 300) {
            atomic_fetch_add(&n_ok, 1);
            atomic_fetch_add(&spans_ok, t.spans);
        } else if (status == 429 || status == 503) {
            atomic_fetch_add(&n_retry, 1);
            usleep(20000); /* back off briefly, as an exporter would */
        } else {
            atomic_fetch_add(&n_rejected, 1);
        }
    }
    if (fd >= 0) close(fd);
    free(t.body.p);
    free(t.slots);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: meshscope-loadgen [--target HOST:PORT] [--threads N] [--spans-per-request N]\n"
            "       [--services N] [--duration SECONDS] [--requests N] [--rate SPANS_PER_S] [--json]\n");
}

int main(int argc, char **argv)
{
    bool json = false;
    static char hostbuf[256];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--target") == 0) {
            const char *colon = strrchr(v, ':');
            if (!colon || (size_t)(colon - v) >= sizeof hostbuf) {
                usage();
                return 2;
            }
            memcpy(hostbuf, v, (size_t)(colon - v));
            hostbuf[colon - v] = '\0';
            cfg.host = hostbuf;
            cfg.port = colon + 1;
        } else if (strcmp(a, "--threads") == 0) cfg.threads = (unsigned)atoi(v);
        else if (strcmp(a, "--spans-per-request") == 0) cfg.pairs = (unsigned)atoi(v) / 2;
        else if (strcmp(a, "--services") == 0) cfg.services = (unsigned)atoi(v);
        else if (strcmp(a, "--duration") == 0) cfg.duration_s = atof(v);
        else if (strcmp(a, "--requests") == 0) cfg.max_requests = strtoull(v, NULL, 10);
        else if (strcmp(a, "--rate") == 0) cfg.rate = atof(v);
        else {
            usage();
            return 2;
        }
    }
    if (cfg.threads < 1 || cfg.threads > 256 || cfg.pairs < 1 || cfg.pairs > 5000 ||
        cfg.services < 1 || cfg.services > 1000 || cfg.duration_s <= 0 || cfg.duration_s > 3600) {
        usage();
        return 2;
    }
    struct worker *ws = calloc(cfg.threads, sizeof *ws);
    double t0 = now_s();
    for (unsigned i = 0; i < cfg.threads; i++) {
        ws[i].id = i;
        pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
    }
    size_t total = 0;
    for (unsigned i = 0; i < cfg.threads; i++) {
        pthread_join(ws[i].th, NULL);
        total += ws[i].n_lat;
    }
    double elapsed = now_s() - t0;
    uint32_t *all = malloc((total + 1) * sizeof *all);
    size_t k = 0;
    for (unsigned i = 0; i < cfg.threads; i++) {
        memcpy(all + k, ws[i].lat_us, ws[i].n_lat * sizeof *all);
        k += ws[i].n_lat;
        free(ws[i].lat_us);
    }
    qsort(all, total, sizeof *all, cmp_u32);
    double p50 = total ? all[total / 2] / 1000.0 : 0, p99 = total ? all[total * 99 / 100] / 1000.0 : 0;
    double sps = (double)spans_ok / elapsed;
    if (json)
        printf("{\"seconds\":%.2f,\"sent\":%llu,\"accepted\":%llu,\"rejected\":%llu,\"retried\":%llu,"
               "\"errors\":%llu,\"spans_accepted\":%llu,\"spans_per_second\":%.0f,"
               "\"latency_ms_p50\":%.3f,\"latency_ms_p99\":%.3f}\n",
               elapsed, (unsigned long long)n_sent, (unsigned long long)n_ok,
               (unsigned long long)n_rejected, (unsigned long long)n_retry,
               (unsigned long long)n_errors, (unsigned long long)spans_ok, sps, p50, p99);
    else
        printf("%.1fs: sent %llu requests, accepted %llu, rejected %llu, retried %llu, errors %llu\n"
               "spans accepted: %llu (%.0f spans/s); latency p50 %.2f ms, p99 %.2f ms\n",
               elapsed, (unsigned long long)n_sent, (unsigned long long)n_ok,
               (unsigned long long)n_rejected, (unsigned long long)n_retry,
               (unsigned long long)n_errors, (unsigned long long)spans_ok, sps, p50, p99);
    free(all);
    free(ws);
    return n_ok > 0 ? 0 : 1;
}
