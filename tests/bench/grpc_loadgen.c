/*
 * grpc_loadgen.c: meshscope-grpc-loadgen, the OTLP/gRPC load generator of make bench: each
 * thread holds one HTTP/2 connection (nghttp2 client session, blocking socket) with --streams
 * TraceService/Export calls in flight, each carrying a Bookinfo template of --spans-per-request
 * spans (loadgen_encode.c, fresh ids per call), for --duration seconds. A call counts as
 * accepted when its trailers say grpc-status 0.
 *
 * Usage: meshscope-grpc-loadgen --target HOST:PORT [--threads N] [--streams S]
 *        [--spans-per-request N] [--duration SECONDS] [--json]
 * Prints spans/s (or, with --json, {"spans_per_second","calls_ok","calls_failed",...}).
 */
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#define MAX_STREAMS 64

static const char *host = "127.0.0.1", *port = "4317";
static unsigned n_threads = 4, n_streams = 8, spans_per_request = 200;
static double duration = 10;
static _Atomic uint64_t calls_ok, calls_failed, spans_ok;
static _Atomic bool stop;

struct call {
    uint8_t *buf; /* 5-byte prefix + body */
    size_t len, off;
    int status; /* grpc-status, -1 until seen */
    bool used;
};

struct worker {
    pthread_t th;
    int fd;
    nghttp2_session *s;
    struct lg_template t;
    uint64_t rng;
    struct call calls[MAX_STREAMS];
    unsigned in_flight;
};

static ssize_t send_cb(nghttp2_session *s, const uint8_t *d, size_t n, int f, void *u)
{
    (void)s;
    (void)f;
    struct worker *w = u;
    ssize_t k = send(w->fd, d, n, MSG_NOSIGNAL);
    return k < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : k;
}

static ssize_t read_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t n, uint32_t *flags,
                       nghttp2_data_source *src, void *u)
{
    (void)s;
    (void)id;
    (void)u;
    struct call *c = src->ptr;
    size_t k = c->len - c->off < n ? c->len - c->off : n;
    memcpy(buf, c->buf + c->off, k);
    c->off += k;
    if (c->off == c->len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)k;
}

static int header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t fl, void *u)
{
    (void)fl;
    (void)u;
    struct call *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (c && nl == 11 && memcmp(name, "grpc-status", 11) == 0)
        c->status = vl == 1 && value[0] == '0' ? 0 : 1;
    return 0;
}

static int close_cb(nghttp2_session *s, int32_t id, uint32_t err, void *u)
{
    (void)err;
    struct worker *w = u;
    struct call *c = nghttp2_session_get_stream_user_data(s, id);
    if (!c) return 0;
    if (c->status == 0) {
        atomic_fetch_add(&calls_ok, 1);
        atomic_fetch_add(&spans_ok, w->t.spans);
    } else {
        atomic_fetch_add(&calls_failed, 1);
    }
    c->used = false;
    w->in_flight--;
    return 0;
}

static int submit(struct worker *w)
{
    struct call *c = NULL;
    for (unsigned i = 0; i < n_streams && !c; i++)
        if (!w->calls[i].used) c = &w->calls[i];
    if (!c) return 0;
    lg_template_patch(&w->t, &w->rng);
    memcpy(c->buf + 5, w->t.body, w->t.len);
    c->off = 0;
    c->status = -1;
    static const char path[] = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
#define NV(n, v) {(uint8_t *)n, (uint8_t *)v, sizeof n - 1, sizeof v - 1, NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nv[] = {NV(":method", "POST"),
                       NV(":scheme", "http"),
                       NV(":path", path),
                       NV(":authority", "meshscope"),
                       NV("content-type", "application/grpc"),
                       NV("te", "trailers")};
    nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_cb};
    if (nghttp2_submit_request(w->s, NULL, nv, 6, &dp, c) < 0) return -1;
    c->used = true;
    w->in_flight++;
    return 0;
}

static int connect_to(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    int one = 1;
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {1, 0}; /* a stalled server cannot hold the run past its duration */
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, header_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, close_cb);
    nghttp2_session_client_new(&w->s, cb, w);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(w->s, NGHTTP2_FLAG_NONE, NULL, 0);
    uint8_t buf[65536];
    while (!atomic_load(&stop) || w->in_flight) {
        while (!atomic_load(&stop) && w->in_flight < n_streams)
            if (submit(w) != 0) goto out;
        if (nghttp2_session_send(w->s) != 0) break;
        ssize_t n = recv(w->fd, buf, sizeof buf, 0);
        if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) break;
        if (n > 0 && nghttp2_session_mem_recv(w->s, buf, (size_t)n) < 0) break;
        if (n < 0 && atomic_load(&stop)) break; /* nothing for 1 s after the end: give up */
    }
out:
    atomic_fetch_add(&calls_failed, w->in_flight);
    nghttp2_session_del(w->s);
    return NULL;
}

int main(int argc, char **argv)
{
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (!v) goto usage;
        i++;
        if (strcmp(a, "--target") == 0) {
            char *h = strdup(v), *colon = strrchr(h, ':');
            if (!colon) goto usage;
            *colon = '\0';
            host = h;
            port = colon + 1;
        } else if (strcmp(a, "--threads") == 0) {
            n_threads = (unsigned)atoi(v);
        } else if (strcmp(a, "--streams") == 0) {
            n_streams = (unsigned)atoi(v);
        } else if (strcmp(a, "--spans-per-request") == 0) {
            spans_per_request = (unsigned)atoi(v);
        } else if (strcmp(a, "--duration") == 0) {
            duration = atof(v);
        } else {
            goto usage;
        }
    }
    if (n_threads < 1 || n_threads > 256 || n_streams < 1 || n_streams > MAX_STREAMS ||
        spans_per_request < 1 || duration <= 0)
        goto usage;
    struct worker *w = calloc(n_threads, sizeof *w);
    for (unsigned i = 0; i < n_threads; i++) {
        w[i].rng = 0x9e3779b97f4a7c15ull * (i + 1);
        if (lg_template_build(&w[i].t, LG_OTLP_PROTO, LG_BOOKINFO, 0, spans_per_request, i + 1) ||
            (w[i].fd = connect_to()) < 0) {
            fprintf(stderr, "grpc-loadgen: cannot connect to %s:%s or build a template\n", host,
                    port);
            return 1;
        }
        for (unsigned k = 0; k < n_streams; k++) {
            struct call *c = &w[i].calls[k];
            c->len = 5 + w[i].t.len;
            c->buf = malloc(c->len);
            c->buf[0] = 0;
            uint32_t n = (uint32_t)w[i].t.len;
            c->buf[1] = (uint8_t)(n >> 24);
            c->buf[2] = (uint8_t)(n >> 16);
            c->buf[3] = (uint8_t)(n >> 8);
            c->buf[4] = (uint8_t)n;
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < n_threads; i++)
        pthread_create(&w[i].th, NULL, run, &w[i]);
    struct timespec d = {(time_t)duration, (long)((duration - (time_t)duration) * 1e9)};
    nanosleep(&d, NULL);
    atomic_store(&stop, true);
    for (unsigned i = 0; i < n_threads; i++)
        pthread_join(w[i].th, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double sps = (double)atomic_load(&spans_ok) / secs;
    if (json)
        printf("{\"spans_per_second\":%.0f,\"calls_ok\":%llu,\"calls_failed\":%llu,"
               "\"spans_accepted\":%llu,\"seconds\":%.2f,\"threads\":%u,\"streams\":%u}\n",
               sps, (unsigned long long)calls_ok, (unsigned long long)calls_failed,
               (unsigned long long)spans_ok, secs, n_threads, n_streams);
    else
        printf("otlp-grpc: %.0f spans/s (%llu calls ok, %llu failed)\n", sps,
               (unsigned long long)calls_ok, (unsigned long long)calls_failed);
    for (unsigned i = 0; i < n_threads; i++) {
        close(w[i].fd);
        lg_template_free(&w[i].t);
        for (unsigned k = 0; k < n_streams; k++)
            free(w[i].calls[k].buf);
    }
    free(w);
    return 0;
usage:
    fprintf(stderr, "usage: meshscope-grpc-loadgen --target HOST:PORT [--threads N] [--streams S "
                    "(1..64)] [--spans-per-request N] [--duration SECONDS] [--json]\n");
    return 2;
}
