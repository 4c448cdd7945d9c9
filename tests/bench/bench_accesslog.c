/*
 * bench_accesslog.c: cost per access-log line of each stage the daemon runs on an NDJSON body,
 * in process: decode (accesslog_decode_json_ex), RED (red_observe_batch) and storage
 * (store_put_batches), timed apart, and lines/s through all three on one thread.
 * Not a test: run it from a Release build (or under callgrind for instruction counts):
 *   build/tests/bench_accesslog [LINES [nginx|envoy [DB]]]
 * Bodies of 1,000 lines (a typical shipper batch); the lines are generated as nginx writes the
 * README log_format (every value a string) or as Istio's Envoy writes its default JSON format,
 * over 8 upstreams and a status mix (2% 5xx), so RED sees a realistic, bounded series set.
 * --gen FILE N writes N nginx lines to FILE instead (the mtail comparison in run.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "red.h"

#define LINES_PER_BODY 1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const upstreams[] = {"reviews", "ratings",  "details", "productpage",
                                        "cart",    "checkout", "search",  "users"};
static const char *const paths[] = {"/api/v1/items?id=42", "/", "/static/app.js",
                                    "/api/v1/cart", "/login", "/api/v1/search?q=shoes"};

static unsigned rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (unsigned)(*s >> 16);
}

static int status_of(unsigned r)
{
    unsigned p = r % 1000;
    return p < 20 ? 502 + (int)(p % 3) : p < 60 ? 404 : p < 120 ? 304 : p < 150 ? 201 : 200;
}

/* One nginx line of the README log_format (escape=json: every value a string). */
int bench_nginx_line(char *out, size_t cap, uint64_t *rng, double epoch)
{
    unsigned r = rnd(rng);
    const char *up = upstreams[r % 8];
    double rt = (double)(r % 400) / 1000.0 + 0.001;
    int status = status_of(rnd(rng));
    epoch += (double)(r % 1000) / 1000.0;
    time_t sec = (time_t)epoch;
    struct tm tm;
    gmtime_r(&sec, &tm);
    char iso[32];
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
    return snprintf(
        out, cap,
        "{\"start_time\":\"%s\",\"msec\":\"%.3f\",\"request_time\":\"%.3f\","
        "\"upstream_response_time\":\"%.3f\",\"method\":\"%s\",\"path\":\"%s\","
        "\"protocol\":\"HTTP/1.1\",\"response_code\":\"%d\",\"bytes_received\":\"%u\","
        "\"bytes_sent\":\"%u\",\"upstream_name\":\"%s\",\"upstream_host\":\"10.0.%u.%u:8080\","
        "\"upstream_status\":\"%d\",\"request_id\":\"%08x%08x%08x%08x\",\"traceparent\":\"\","
        "\"authority\":\"shop.example.com\",\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\","
        "\"x_forwarded_for\":\"\",\"downstream_remote_address\":\"192.168.%u.%u:%u\"}\n",
        iso, epoch, rt, rt * 0.9, r & 64 ? "GET" : "POST", paths[r % 6], status,
        200 + r % 800, 300 + rnd(rng) % 30000, up, r % 4, r % 250, status, rnd(rng), rnd(rng),
        rnd(rng), rnd(rng), r % 200, r % 250, 30000 + r % 30000);
}

/* One line of Istio's default JSON format (Envoy typed JSON), an outbound record with a trace. */
static int envoy_line(char *out, size_t cap, uint64_t *rng, double epoch)
{
    unsigned r = rnd(rng);
    const char *up = upstreams[r % 8];
    int status = status_of(rnd(rng));
    time_t sec = (time_t)epoch;
    struct tm tm;
    gmtime_r(&sec, &tm);
    char iso[40];
    size_t n = strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(iso + n, sizeof iso - n, ".%03uZ", r % 1000);
    return snprintf(
        out, cap,
        "{\"start_time\":\"%s\",\"route_name\":\"default\",\"method\":\"GET\",\"path\":\"%s\","
        "\"protocol\":\"HTTP/1.1\",\"response_code\":%d,\"response_flags\":\"%s\","
        "\"response_code_details\":\"via_upstream\",\"connection_termination_details\":null,"
        "\"upstream_transport_failure_reason\":null,\"bytes_received\":0,\"bytes_sent\":%u,"
        "\"duration\":%u,\"upstream_service_time\":\"%u\",\"x_forwarded_for\":null,"
        "\"user_agent\":\"curl/8.0\",\"request_id\":\"%08x-1111-4d2b-9a7c-%08x0000\","
        "\"authority\":\"%s:9080\",\"upstream_host\":\"10.0.0.7:9080\","
        "\"upstream_cluster\":\"outbound|9080||%s.default.svc.cluster.local\","
        "\"upstream_local_address\":\"10.0.0.5:40000\",\"downstream_local_address\":"
        "\"10.96.0.10:9080\",\"downstream_remote_address\":\"10.0.0.5:51234\","
        "\"requested_server_name\":null,\"service\":\"productpage\",\"traceparent\":"
        "\"00-%08x%08x%08x%08x-%08x%08x-01\"}\n",
        iso, paths[r % 6], status, status >= 500 ? "UF" : "-", 300 + r % 3000, 1 + r % 300,
        r % 300, rnd(rng), rnd(rng), up, up, rnd(rng) | 1, rnd(rng), rnd(rng), rnd(rng),
        rnd(rng) | 1, rnd(rng));
}

int main(int argc, char **argv)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    double epoch = (double)time(NULL) - 60;
    if (argc == 4 && strcmp(argv[1], "--gen") == 0) {
        FILE *f = fopen(argv[2], "w");
        long n = atol(argv[3]);
        if (!f || n <= 0) return 1;
        char line[2048];
        for (long i = 0; i < n; i++) {
            int len = bench_nginx_line(line, sizeof line, &rng, epoch + (double)i / 1e5);
            fwrite(line, 1, (size_t)len, f);
        }
        return fclose(f) ? 1 : 0;
    }
    long lines = argc > 1 ? atol(argv[1]) : 200000;
    bool nginx = !(argc > 2 && strcmp(argv[2], "envoy") == 0);
    char dbpath[256];
    snprintf(dbpath, sizeof dbpath, "%s", argc > 3 ? argv[3] : "/tmp/bench_accesslog.db");
    if (lines < LINES_PER_BODY) lines = LINES_PER_BODY;
    long n_bodies = lines / LINES_PER_BODY;
    lines = n_bodies * LINES_PER_BODY;

    /* Pre-generate 16 bodies, reused round robin (generation is not measured). */
    enum { N_TEMPLATES = 16 };
    char *bodies[N_TEMPLATES];
    size_t lens[N_TEMPLATES], total_bytes = 0;
    for (int t = 0; t < N_TEMPLATES; t++) {
        size_t cap = LINES_PER_BODY * 2048, len = 0;
        bodies[t] = malloc(cap);
        if (!bodies[t]) return 1;
        for (int i = 0; i < LINES_PER_BODY; i++)
            len += (size_t)(nginx ? bench_nginx_line : envoy_line)(bodies[t] + len, cap - len,
                                                                   &rng, epoch + i * 0.001);
        lens[t] = len;
        total_bytes += len;
    }
    unlink(dbpath);
    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", dbpath);
    unlink(wal);
    struct store_options so = {.path = dbpath};
    struct store *st = store_open(&so);
    struct red *red = red_create(NULL);
    if (!st || !red) return 1;
    struct alog_defaults d = {nginx ? "edge-nginx" : NULL, ALOG_DIRECTION_UNKNOWN};
    struct decode_limits lim;
    decode_limits_default(&lim);
    double t_dec = 0, t_red = 0, t_store = 0;
    long accepted = 0;
    for (long k = 0; k < n_bodies; k++) {
        struct span_batch *b = span_batch_create();
        char err[256];
        int t = (int)(k % N_TEMPLATES);
        double t0 = now_s();
        int rc = accesslog_decode_json_ex((const uint8_t *)bodies[t], lens[t], &d, &lim, b, err,
                                          sizeof err);
        double t1 = now_s();
        if (rc || b->rejected) {
            fprintf(stderr, "decode: %d %s %s\n", rc, err, b->reject_reason ? b->reject_reason : "");
            return 1;
        }
        red_observe_batch(red, b);
        double t2 = now_s();
        if (store_put_batches(st, &b, 1)) {
            fprintf(stderr, "store failed\n");
            return 1;
        }
        double t3 = now_s();
        accepted += b->n_logs;
        span_batch_destroy(b);
        t_dec += t1 - t0;
        t_red += t2 - t1;
        t_store += t3 - t2;
    }
    double all = t_dec + t_red + t_store;
    printf("%s lines: %ld (%.0f bytes/line)\n", nginx ? "nginx" : "envoy", accepted,
           (double)total_bytes / (N_TEMPLATES * LINES_PER_BODY));
    printf("decode: %.0f ns/line\nred: %.0f ns/line\nstore: %.0f ns/line\n",
           t_dec * 1e9 / (double)lines, t_red * 1e9 / (double)lines,
           t_store * 1e9 / (double)lines);
    printf("all: %.0f lines/s on one thread (decode+red on one, store on another: %.0f lines/s)\n",
           (double)lines / all,
           (double)lines / (t_dec + t_red > t_store ? t_dec + t_red : t_store));
    red_destroy(red);
    store_close(st);
    for (int t = 0; t < N_TEMPLATES; t++) free(bodies[t]);
    return 0;
}
