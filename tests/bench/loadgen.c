/*
 * loadgen.c: meshscope-loadgen, a load generator that sends realistic mesh traces through the
 * real ingest endpoints: OTLP/HTTP protobuf or JSON (POST /v1/traces) and Zipkin v2 JSON
 * (POST /api/v2/spans).
 *
 * Each worker thread keeps one keep-alive connection and one pre-encoded request body (a
 * template of complete traces, loadgen_encode.c). Before each send only the trace, span and
 * parent ids are patched in place (fresh random values, so every span stored is unique); then the
 * body is compressed if asked (gzip or zstd at their fastest levels, with a compression context
 * reused per thread, as an exporter does), so the generator costs little CPU beside the daemon
 * on the same machine.
 *
 * Reports requests sent, accepted (2xx), rejected (other 4xx/5xx), retried (429/503: the worker
 * backs off 20 ms, as an exporter would, and sends a fresh request), transport errors, spans/s
 * accepted and request latency percentiles (p50/p99/p99.9). Paces to --rate spans/s in total,
 * or sends as fast as answers come. Every run is bounded by --duration (and --requests).
 *
 * --protocol accesslog-ndjson (make bench's access-log figure): only access-log lines, POST
 * /api/v1/accesslogs (application/x-ndjson): the template's Envoy/Istio lines (one per SERVER span
 * of --spans-per-request spans, ids patched per send), or with --logs-file the lines of a file,
 * --spans-per-request lines per request, each worker walking the file from its own offset. The
 * "spans" figures of the report count lines then.
 *
 * --access-logs (the dashboard demo; off for benchmarks): after each span request is answered,
 * the same connection also POSTs /api/v1/accesslogs with one Envoy/Istio JSON access-log line
 * (application/x-ndjson) per SERVER span of the body, carrying the same freshly patched trace and
 * span ids; those requests are counted apart (log requests accepted/rejected/errors). In that
 * mode (a demo that may run for an hour) each worker also rebuilds its template every 5 s, so
 * span and log timestamps follow the clock.
 */
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
#include <zlib.h>
#include <zstd.h>

#include "loadgen.h"

enum compress { COMPRESS_NONE, COMPRESS_GZIP, COMPRESS_ZSTD };

static struct config {
    char host[256];
    const char *port;
    unsigned threads, spans, services;
    double duration_s;
    uint64_t max_requests; /* 0 = until duration */
    double rate;           /* spans/s in total; 0 = as fast as accepted */
    enum lg_protocol proto;
    enum lg_scenario scenario;
    enum compress compress;
    bool json;
    bool access_logs;
    const char *logs_file; /* accesslog-ndjson: lines to send instead of the template's */
} cfg = {"127.0.0.1", "4318", 4, 200, 200, 10.0, 0, 0, LG_OTLP_PROTO, LG_BOOKINFO, COMPRESS_NONE,
         false, false, NULL};

/* --logs-file, read once: the file and the offsets of its request-sized pieces. */
static struct {
    char *data;
    size_t *cuts; /* piece k is data[cuts[k] .. cuts[k+1]) */
    size_t n_pieces;
    unsigned *lines; /* lines of piece k */
} logs_file;

/* ----- options: one table drives parsing and --help ------------------------------------------ */

enum opt_type { OPT_UINT, OPT_DOUBLE, OPT_U64, OPT_TARGET, OPT_ENUM, OPT_FLAG, OPT_STRING };

struct opt {
    const char *name, *arg;
    enum opt_type type;
    void *ptr;
    double min, max;                 /* numeric bounds */
    const char *const *choices;      /* OPT_ENUM: NULL-terminated, index stored as int */
    const char *help;
};

static const char *const protocols[] = {"otlp-proto", "otlp-json", "zipkin-json",
                                        "accesslog-ndjson", NULL};
static const char *const scenarios[] = {"bookinfo", "wide", NULL};
static const char *const compressions[] = {"none", "gzip", "zstd", NULL};

static const struct opt opts[] = {
    {"--target", "HOST:PORT", OPT_TARGET, NULL, 0, 0, NULL,
     "ingest listener (default 127.0.0.1:4318; every meshscope listener serves every route)"},
    {"--protocol", "P", OPT_ENUM, &cfg.proto, 0, 0, protocols,
     "otlp-proto (default), otlp-json (POST /v1/traces), zipkin-json (POST /api/v2/spans) or "
     "accesslog-ndjson (access-log lines only, POST /api/v1/accesslogs)"},
    {"--logs-file", "FILE", OPT_STRING, &cfg.logs_file, 0, 0, NULL,
     "accesslog-ndjson: send this file's lines, --spans-per-request lines per request"},
    {"--scenario", "S", OPT_ENUM, &cfg.scenario, 0, 0, scenarios,
     "bookinfo (default: productpage -> details, reviews -> ratings) or wide (random mesh)"},
    {"--services", "N", OPT_UINT, &cfg.services, 2, 5000, NULL,
     "services in the wide mesh (default 200)"},
    {"--compress", "C", OPT_ENUM, &cfg.compress, 0, 0, compressions,
     "none (default), gzip or zstd, per request after patching the ids"},
    {"--threads", "N", OPT_UINT, &cfg.threads, 1, 1024, NULL,
     "worker threads, one keep-alive connection each (default 4)"},
    {"--spans-per-request", "N", OPT_UINT, &cfg.spans, 1, 100000, NULL,
     "spans per request, rounded up to whole traces (default 200)"},
    {"--duration", "SECONDS", OPT_DOUBLE, &cfg.duration_s, 0.1, 3600, NULL,
     "run this long (default 10)"},
    {"--requests", "N", OPT_U64, &cfg.max_requests, 0, 1e15, NULL,
     "stop after N requests in total (default: no limit)"},
    {"--rate", "SPANS_PER_S", OPT_DOUBLE, &cfg.rate, 0, 1e9, NULL,
     "target rate in spans/s over all threads (default 0: as fast as accepted)"},
    {"--access-logs", NULL, OPT_FLAG, &cfg.access_logs, 0, 0, NULL,
     "demo: also POST the server spans' Envoy access-log lines (/api/v1/accesslogs), "
     "and re-time the traces every 5 s"},
    {"--json", NULL, OPT_FLAG, &cfg.json, 0, 0, NULL, "print one JSON object instead of text"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: meshscope-loadgen [options]\n"
               "Sends mesh traces to meshscope (or any OTLP/HTTP or Zipkin v2 receiver) and reports\n"
               "sent, accepted, rejected, retried (429/503), errors and request latency.\n\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char left[48];
        snprintf(left, sizeof left, "%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-28s %s\n", left, opts[i].help);
    }
    fprintf(f, "  %-28s %s\n", "--help", "this text");
}

/* Parses argv through opts; returns 0, or 2 after naming the bad option on stderr. */
static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        const struct opt *o = NULL;
        for (size_t k = 0; k < N_OPTS && !o; k++)
            if (strcmp(argv[i], opts[k].name) == 0) o = &opts[k];
        if (!o) {
            fprintf(stderr, "meshscope-loadgen: unknown option %s (see --help)\n", argv[i]);
            return 2;
        }
        if (o->type == OPT_FLAG) {
            *(bool *)o->ptr = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "meshscope-loadgen: %s needs a value\n", o->name);
            return 2;
        }
        const char *v = argv[++i];
        if (o->type == OPT_STRING) {
            *(const char **)o->ptr = v;
            continue;
        }
        char *end = NULL;
        double d = 0;
        switch (o->type) {
        case OPT_TARGET: {
            const char *colon = strrchr(v, ':');
            if (!colon || colon == v || (size_t)(colon - v) >= sizeof cfg.host || !colon[1]) {
                fprintf(stderr, "meshscope-loadgen: --target wants HOST:PORT, not %s\n", v);
                return 2;
            }
            memcpy(cfg.host, v, (size_t)(colon - v));
            cfg.host[colon - v] = '\0';
            cfg.port = colon + 1;
            continue;
        }
        case OPT_ENUM: {
            int idx = -1;
            for (int k = 0; o->choices[k] && idx < 0; k++)
                if (strcmp(v, o->choices[k]) == 0) idx = k;
            if (idx < 0) {
                fprintf(stderr, "meshscope-loadgen: %s: unknown value %s\n", o->name, v);
                return 2;
            }
            *(int *)o->ptr = idx; /* the enums are int-sized, values 0.. in table order */
            continue;
        }
        default:
            d = strtod(v, &end);
            if (!end || *end || d < o->min || d > o->max) {
                fprintf(stderr, "meshscope-loadgen: %s: %s is not a number in [%g, %g]\n", o->name,
                        v, o->min, o->max);
                return 2;
            }
            if (o->type == OPT_UINT) *(unsigned *)o->ptr = (unsigned)d;
            else if (o->type == OPT_U64) *(uint64_t *)o->ptr = (uint64_t)d;
            else *(double *)o->ptr = d;
        }
    }
    return 0;
}

/* ----- HTTP client ----------------------------------------------------------------------------- */

static _Atomic uint64_t n_sent, n_ok, n_rejected, n_retry, n_errors, spans_ok, spans_sent;
static _Atomic uint64_t bytes_sent, requests_claimed;
/* Start line: every worker encodes its template first (~1-2 ms of CPU each, 64 of them), then
 * waits for `go`, so that no request is timed while other workers still encode (that took the
 * CPU from the receiver in the first ~0.1 s of a run); main sets it when all are ready. */
static _Atomic unsigned n_ready;
static _Atomic bool go;
static _Atomic uint64_t logs_sent, logs_ok, logs_rejected, logs_errors, log_lines_ok;

struct worker {
    pthread_t th;
    unsigned id;
    uint32_t *lat_us; /* latency samples of answered requests */
    size_t n_lat, cap_lat;
    unsigned spans_per_request;
    size_t raw_bytes, wire_bytes; /* of the last request */
    int failed;                   /* template build failed */
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

/* Reads one response; returns the status code or -1. Handles Content-Length bodies (meshscope
 * always sends one); *close_after (OUT) is set for "Connection: close". */
static int read_response(int fd, char *buf, size_t cap, bool *close_after)
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
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) return -1;
    int status = atoi(buf + 9);
    size_t body = 0;
    char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl && cl < hdr_end) body = strtoul(cl + 17, NULL, 10);
    char *conn = strcasestr(buf, "\r\nconnection: close");
    *close_after = conn && conn < hdr_end;
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

/* Compresses in into *out (grown as needed); returns the compressed length or 0 on failure. */
static size_t compress_body(z_stream *zs, ZSTD_CCtx *zc, const uint8_t *in, size_t len,
                            uint8_t **out, size_t *cap)
{
    size_t need = cfg.compress == COMPRESS_GZIP ? deflateBound(zs, len) + 32 : ZSTD_compressBound(len);
    if (need > *cap) {
        uint8_t *p = realloc(*out, need);
        if (!p) return 0;
        *out = p;
        *cap = need;
    }
    if (cfg.compress == COMPRESS_ZSTD) {
        size_t n = ZSTD_compressCCtx(zc, *out, *cap, in, len, 1);
        return ZSTD_isError(n) ? 0 : n;
    }
    if (deflateReset(zs) != Z_OK) return 0;
    zs->next_in = (Bytef *)(uintptr_t)in;
    zs->avail_in = (uInt)len;
    zs->next_out = *out;
    zs->avail_out = (uInt)*cap;
    if (deflate(zs, Z_FINISH) != Z_STREAM_END) return 0;
    return *cap - zs->avail_out;
}

static void record_latency(struct worker *w, double seconds)
{
    if (w->n_lat == w->cap_lat) {
        size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
        uint32_t *p = realloc(w->lat_us, cap * sizeof *p);
        if (!p) return; /* a sample lost, not the run */
        w->lat_us = p;
        w->cap_lat = cap;
    }
    w->lat_us[w->n_lat++] = (uint32_t)(seconds * 1e6);
}

/* --access-logs: POSTs the template's access-log lines (ids already patched) on *fd; closes it
 * on a transport error or "Connection: close". */
static void send_logs(int *fd, const struct lg_template *t, char *head, size_t head_cap, char *resp,
                      size_t resp_cap)
{
    int hl = snprintf(head, head_cap,
                      "POST /api/v1/accesslogs HTTP/1.1\r\nHost: %s:%s\r\n"
                      "Content-Type: application/x-ndjson\r\nContent-Length: %zu\r\n\r\n",
                      cfg.host, cfg.port, t->logs_len);
    atomic_fetch_add(&logs_sent, 1);
    bool close_after = false;
    int status = -1;
    if (hl > 0 && (size_t)hl < head_cap && write_all(*fd, head, (size_t)hl) &&
        write_all(*fd, t->logs, t->logs_len))
        status = read_response(*fd, resp, resp_cap, &close_after);
    if (status < 0 || close_after) {
        close(*fd);
        *fd = -1;
    }
    if (status < 0) {
        atomic_fetch_add(&logs_errors, 1);
    } else if (status >= 200 && status < 300) {
        atomic_fetch_add(&logs_ok, 1);
        atomic_fetch_add(&log_lines_ok, t->log_lines);
    } else {
        atomic_fetch_add(&logs_rejected, 1);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct lg_template t;
    bool alog = cfg.proto == LG_ACCESSLOG_NDJSON;
    int built = lg_template_build_ex(&t, alog ? LG_OTLP_JSON : cfg.proto, cfg.scenario,
                                     cfg.services, cfg.spans, w->id + 1, cfg.access_logs || alog);
    atomic_fetch_add(&n_ready, 1);
    while (!atomic_load(&go))
        usleep(1000); /* main sets go within its bounded wait */
    if (built != 0) {
        w->failed = 1;
        return NULL;
    }
    w->spans_per_request = alog ? (logs_file.data ? logs_file.lines[0] : t.log_lines) : t.spans;
    size_t piece = w->id; /* --logs-file: this worker's next piece */
    z_stream zs = {0};
    ZSTD_CCtx *zc = NULL;
    uint8_t *cbuf = NULL;
    size_t ccap = 0;
    if (cfg.compress == COMPRESS_GZIP &&
        deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16 /* gzip wrapper */, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        w->failed = 1;
    if (cfg.compress == COMPRESS_ZSTD && !(zc = ZSTD_createCCtx())) w->failed = 1;
    const char *path = alog                         ? "/api/v1/accesslogs"
                       : cfg.proto == LG_ZIPKIN_JSON ? "/api/v2/spans"
                                                     : "/v1/traces";
    const char *ctype = alog                        ? "application/x-ndjson"
                        : cfg.proto == LG_OTLP_PROTO ? "application/x-protobuf"
                                                     : "application/json";
    const char *cenc = cfg.compress == COMPRESS_GZIP   ? "Content-Encoding: gzip\r\n"
                       : cfg.compress == COMPRESS_ZSTD ? "Content-Encoding: zstd\r\n"
                                                       : "";
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)w->id << 32) ^ (uint64_t)time(NULL);
    char head[512], resp[8192];
    int fd = -1;
    double start = now_s(), end = start + cfg.duration_s, built_at = start;
    unsigned rebuilds = 0;
    /* Pacing: each worker sends its share of the rate at even intervals. */
    double interval = cfg.rate > 0 ? (double)w->spans_per_request * cfg.threads / cfg.rate : 0;
    double next = start + interval * w->id / cfg.threads; /* staggered */
    while (!w->failed && now_s() < end) {
        if (cfg.max_requests && atomic_fetch_add(&requests_claimed, 1) >= cfg.max_requests) break;
        if (interval > 0) {
            double wait = next - now_s();
            if (wait > 0) {
                if (next > end) break;
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
        if (cfg.access_logs && now_s() - built_at > 5.0) {
            /* the demo runs for long: rebuild so that span and log times follow the clock */
            lg_template_free(&t);
            if (lg_template_build_ex(&t, cfg.proto, cfg.scenario, cfg.services, cfg.spans,
                                     w->id + 1 + ++rebuilds * 7919u, 1) != 0) {
                w->failed = 1;
                break;
            }
            built_at = now_s();
        }
        lg_template_patch(&t, &rng);
        const uint8_t *body = t.body;
        size_t len = t.len;
        unsigned units = t.spans;
        if (alog && logs_file.data) {
            size_t k = piece % logs_file.n_pieces;
            piece += cfg.threads;
            body = (const uint8_t *)logs_file.data + logs_file.cuts[k];
            len = logs_file.cuts[k + 1] - logs_file.cuts[k];
            units = logs_file.lines[k];
        } else if (alog) {
            body = t.logs;
            len = t.logs_len;
            units = t.log_lines;
        }
        size_t raw_len = len;
        if (cfg.compress != COMPRESS_NONE) {
            len = compress_body(&zs, zc, body, len, &cbuf, &ccap);
            if (!len) {
                w->failed = 1;
                break;
            }
            body = cbuf;
        }
        w->raw_bytes = raw_len;
        w->wire_bytes = len;
        int hl = snprintf(head, sizeof head,
                          "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: %s\r\n%s"
                          "Content-Length: %zu\r\n\r\n",
                          path, cfg.host, cfg.port, ctype, cenc, len);
        double t0 = now_s();
        atomic_fetch_add(&n_sent, 1);
        atomic_fetch_add(&spans_sent, units);
        atomic_fetch_add(&bytes_sent, len);
        bool close_after = false;
        int status = -1;
        if (write_all(fd, head, (size_t)hl) && write_all(fd, body, len))
            status = read_response(fd, resp, sizeof resp, &close_after);
        double t1 = now_s();
        if (status < 0) {
            close(fd);
            fd = -1;
            atomic_fetch_add(&n_errors, 1);
            continue;
        }
        record_latency(w, t1 - t0);
        if (close_after) {
            close(fd);
            fd = -1;
        }
        if (status >= 200 && status < 300) {
            atomic_fetch_add(&n_ok, 1);
            atomic_fetch_add(&spans_ok, units);
        } else if (status == 429 || status == 503) {
            atomic_fetch_add(&n_retry, 1);
            usleep(20000); /* back off briefly, as an exporter would */
        } else {
            atomic_fetch_add(&n_rejected, 1);
        }
        if (cfg.access_logs && !alog && fd >= 0 && t.logs_len)
            send_logs(&fd, &t, head, sizeof head, resp, sizeof resp);
    }
    if (fd >= 0) close(fd);
    if (cfg.compress == COMPRESS_GZIP) deflateEnd(&zs);
    ZSTD_freeCCtx(zc);
    free(cbuf);
    lg_template_free(&t);
    return NULL;
}

/* --logs-file: reads the file and cuts it into pieces of --spans-per-request lines. */
static int read_logs_file(void)
{
    FILE *f = fopen(cfg.logs_file, "rb");
    if (!f) {
        fprintf(stderr, "meshscope-loadgen: cannot open %s\n", cfg.logs_file);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    logs_file.data = size > 0 ? malloc((size_t)size) : NULL;
    if (!logs_file.data || fread(logs_file.data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "meshscope-loadgen: cannot read %s (or it is empty)\n", cfg.logs_file);
        fclose(f);
        return 2;
    }
    fclose(f);
    size_t max_pieces = (size_t)size / 2 + 2;
    logs_file.cuts = malloc((max_pieces + 1) * sizeof *logs_file.cuts);
    logs_file.lines = malloc(max_pieces * sizeof *logs_file.lines);
    if (!logs_file.cuts || !logs_file.lines) return 1;
    size_t k = 0, pos = 0;
    logs_file.cuts[0] = 0;
    while (pos < (size_t)size) {
        unsigned n = 0;
        while (pos < (size_t)size && n < cfg.spans) {
            char *nl = memchr(logs_file.data + pos, '\n', (size_t)size - pos);
            pos = nl ? (size_t)(nl - logs_file.data) + 1 : (size_t)size;
            n++;
        }
        logs_file.lines[k] = n;
        logs_file.cuts[++k] = pos;
    }
    logs_file.n_pieces = k;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint32_t *sorted, size_t n, double q)
{
    if (!n) return 0;
    size_t i = (size_t)((double)n * q);
    return sorted[i < n ? i : n - 1] / 1000.0;
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv);
    if (rc) return rc;
    if (cfg.logs_file && (rc = read_logs_file()) != 0) return rc;
    struct worker *ws = calloc(cfg.threads, sizeof *ws);
    if (!ws) return 1;
    double t0 = now_s();
    unsigned started = 0;
    for (unsigned i = 0; i < cfg.threads; i++, started++) {
        ws[i].id = i;
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) break;
    }
    for (int i = 0; i < 60000 && atomic_load(&n_ready) < started; i++)
        usleep(1000); /* <= 60 s */
    t0 = now_s();     /* the run starts when every template is built */
    atomic_store(&go, true);
    size_t total = 0;
    bool failed = started < cfg.threads;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(ws[i].th, NULL);
        total += ws[i].n_lat;
        failed |= ws[i].failed != 0;
    }
    double elapsed = now_s() - t0;
    uint32_t *all = malloc((total + 1) * sizeof *all);
    if (!all) return 1;
    size_t k = 0;
    for (unsigned i = 0; i < started; i++) {
        memcpy(all + k, ws[i].lat_us, ws[i].n_lat * sizeof *all);
        k += ws[i].n_lat;
        free(ws[i].lat_us);
    }
    qsort(all, total, sizeof *all, cmp_u32);
    double p50 = pct(all, total, 0.50), p99 = pct(all, total, 0.99), p999 = pct(all, total, 0.999);
    double sps = (double)spans_ok / elapsed;
    if (cfg.json)
        printf("{\"protocol\":\"%s\",\"scenario\":\"%s\",\"compress\":\"%s\",\"threads\":%u,"
               "\"spans_per_request\":%u,\"request_bytes\":%zu,\"wire_bytes\":%zu,"
               "\"seconds\":%.2f,\"sent\":%llu,\"accepted\":%llu,\"rejected\":%llu,"
               "\"retried\":%llu,\"errors\":%llu,\"spans_sent\":%llu,\"spans_accepted\":%llu,"
               "\"spans_per_second\":%.0f,\"latency_ms_p50\":%.3f,\"latency_ms_p99\":%.3f,"
               "\"latency_ms_p999\":%.3f",
               protocols[cfg.proto], scenarios[cfg.scenario], compressions[cfg.compress],
               cfg.threads, ws[0].spans_per_request, ws[0].raw_bytes, ws[0].wire_bytes, elapsed,
               (unsigned long long)n_sent, (unsigned long long)n_ok,
               (unsigned long long)n_rejected, (unsigned long long)n_retry,
               (unsigned long long)n_errors, (unsigned long long)spans_sent,
               (unsigned long long)spans_ok, sps, p50, p99, p999);
    /* added keys only with the flag; the others stay as run.sh and the tests read them */
    if (cfg.json && cfg.access_logs)
        printf(",\"access_log_requests\":%llu,\"access_log_accepted\":%llu,"
               "\"access_log_rejected\":%llu,\"access_log_errors\":%llu,"
               "\"access_log_lines_accepted\":%llu",
               (unsigned long long)logs_sent, (unsigned long long)logs_ok,
               (unsigned long long)logs_rejected, (unsigned long long)logs_errors,
               (unsigned long long)log_lines_ok);
    if (cfg.json)
        printf("}\n");
    else
        printf("%s, %s, %s: %u threads, %u spans/request (%zu bytes, %zu on the wire)\n"
               "%.1fs: sent %llu requests, accepted %llu, rejected %llu, retried %llu, errors %llu\n"
               "spans accepted: %llu (%.0f spans/s); latency p50 %.2f ms, p99 %.2f ms, "
               "p99.9 %.2f ms\n",
               protocols[cfg.proto], scenarios[cfg.scenario], compressions[cfg.compress],
               cfg.threads, ws[0].spans_per_request, ws[0].raw_bytes, ws[0].wire_bytes, elapsed,
               (unsigned long long)n_sent, (unsigned long long)n_ok,
               (unsigned long long)n_rejected, (unsigned long long)n_retry,
               (unsigned long long)n_errors, (unsigned long long)spans_ok, sps, p50, p99, p999);
    if (cfg.access_logs && !cfg.json)
        printf("access logs: sent %llu requests, accepted %llu, rejected %llu, errors %llu "
               "(%llu lines accepted)\n",
               (unsigned long long)logs_sent, (unsigned long long)logs_ok,
               (unsigned long long)logs_rejected, (unsigned long long)logs_errors,
               (unsigned long long)log_lines_ok);
    free(all);
    free(ws);
    if (failed) fprintf(stderr, "meshscope-loadgen: a worker could not build or compress its body\n");
    return failed || n_ok == 0 ? 1 : 0;
}
