/*
 * main.c: the meshscope daemon. Parses options, opens the store, starts the writer and the
 * listeners, waits for SIGINT/SIGTERM, then shuts down in the documented order: stop accepting
 * connections, close the queue, let the writer drain and commit (answering every request that
 * waits for its commit), let those answers go out, stop the listeners, close the database, free.
 */
#include "collector_int.h"
#include "grpc.h"
#include "otel_metrics.h"
#include "red.h"
#include "syslog.h"

#include <errno.h>
#include <pthread.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* The queue's item bound: far above what the byte bound lets through at realistic batch sizes,
 * so bytes are the limit that matters; it only stops a flood of tiny batches. */
#define QUEUE_MAX_BATCHES 65536

/* Reads a small text file (a PEM) into a NUL-terminated malloc'd string; NULL (logged). */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        log_msg(LOG_ERROR, "meshscope: cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, len = 0; /* certificates and keys are a few KB; 1 MiB is ample */
    char *buf = malloc(cap + 1);
    if (buf) len = fread(buf, 1, cap, f);
    fclose(f);
    if (!buf || len == cap) {
        log_msg(LOG_ERROR, "meshscope: %s is larger than 1 MiB", path);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/*
 * The memory meshscope can use whatever the offered load, derived from the limits (README:
 * Guarantees and limits). Every term is enforced by a cap elsewhere:
 *   queue        --queue-size: decoded batches waiting for the writer (queue.c)
 *   bodies       max(--queue-size, 8 x --max-body): raw request bodies being received (http.c),
 *                and as much again for gRPC message buffers and held batches (grpc.c)
 *   decoding     per HTTP thread, one request at a time: its body inflated (1 x --max-body), the
 *                protobuf-c unpack arena (<= 16 x body + 256 B per span, i.e. < 26 x) and the
 *                decoded batch (< 8 x): 35 x --max-body per thread
 *   sqlite       writer page cache 64 MiB, 2 MiB per read connection, WAL index: 8 MiB
 *   red          ~2.5 KiB per label set, --metrics-series-limit per family group (4 groups),
 *                plus the service-graph pending store (100k x 0.4 KiB), the access-log records
 *                waiting for their pair (32 MiB + allocator overhead, red.c) and the recent
 *                request marks (4 MiB); storage's record map and marks (13 + 4 MiB, store.c)
 *                and the trace index entries waiting to be written (64 MiB at most:
 *                trace_pending.c)
 *   otlp metrics --metrics-series-limit series in all, each at most OTEL_METRICS_SERIES_BYTES
 *   base         code, thread stacks, allocator slack: 64 MiB
 */
static uint64_t memory_bound(const struct options *o)
{
    const uint64_t MiB = 1 << 20;
    uint64_t listeners = 0;
    const char *addrs[] = {o->http_addr, o->otlp_http_addr, o->zipkin_addr, o->otlp_grpc_addr};
    for (int i = 0; i < 4; i++) listeners += strcmp(addrs[i], "off") != 0;
    uint64_t body = (uint64_t)o->max_body_bytes, queue = (uint64_t)o->queue_bytes;
    uint64_t bodies = queue > 8 * body ? queue : 8 * body;
    if (strcmp(o->otlp_grpc_addr, "off") != 0) bodies *= 2; /* gRPC's message buffers: same cap */
    uint64_t decoding = listeners * (uint64_t)o->http_threads * 35 * body;
    uint64_t sqlite = 64 * MiB + (uint64_t)o->http_threads * 2 * MiB + 8 * MiB;
    uint64_t red = (uint64_t)o->metrics_series_limit * 4 * 2560 + 40 * MiB + 57 * MiB + 64 * MiB;
    /* syslog: per listener, its connections' buffers (syslog.h) and a datagram buffer; the
     * pending batch (~1 MiB, + one epoll round of reads) is part of the queue's share. */
    struct syslog_listener_spec specs[SYSLOG_MAX_LISTENERS];
    size_t n_syslog = 0;
    char why[160];
    if (syslog_parse_spec(o->syslog, specs, SYSLOG_MAX_LISTENERS, &n_syslog, why, sizeof why))
        n_syslog = 0;
    uint64_t syslog = n_syslog * ((uint64_t)SYSLOG_MAX_CONNECTIONS * (SYSLOG_MAX_MESSAGE + 32) +
                                  SYSLOG_MAX_MESSAGE);
    uint64_t otlp_metrics = (uint64_t)o->metrics_series_limit * OTEL_METRICS_SERIES_BYTES;
    return queue + bodies + decoding + sqlite + red + otlp_metrics + syslog + 64 * MiB;
}

/* The writer's one batch_done: a waiting batch's `user` begins with its owner's tag. */
static void batch_done(void *user, int rc)
{
    if (*(const enum batch_owner *)user == BATCH_OWNER_GRPC)
        grpc_batch_done(user, rc);
    else
        http_batch_done(user, rc);
}

int main(int argc, char **argv)
{
    struct options opts;
    int rc = options_parse(argc, argv, &opts);
    if (rc == 1) return 0;
    if (rc != 0) return 2;
    atomic_store(&log_min_level, (int)opts.log_level);
    /* Every request allocates and frees a batch (arena blocks up to 1 MiB, record arrays,
     * bodies): with glibc's defaults the memory went back to the kernel after each and came back
     * as page faults (~8% of the CPU of access-log ingest). Keep up to 16 MiB free per malloc
     * arena, and serve blocks under 4 MiB from the heap rather than fresh mmaps. */
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);

    /* Signals are taken synchronously by this thread; block them before any thread starts so
     * every thread inherits the mask. SIGPIPE: a client that goes away is not our death. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Each connection is a descriptor: let --max-connections use what the hard limit allows. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    int exit_code = 1;
    struct auth *auth = NULL;
    char *tls_cert = NULL, *tls_key = NULL;
    struct http_server *servers[3] = {NULL, NULL, NULL};
    struct grpc_server *grpc = NULL;
    struct writer *writer = NULL;
    struct ingest_queue *queue = NULL;
    struct red *red = NULL;
    struct otel_metrics *metrics = NULL;
    struct syslog_server *syslog = NULL;
    struct store_options so = {.path = opts.db_path,
                               .retention_us = opts.retention_us,
                               .max_db_bytes = opts.max_db_bytes,
                               .read_pool = (unsigned)opts.http_threads,
                               .graph_wait_us = opts.graph_wait_us};
    struct store *store = store_open(&so);
    if (!store) goto out;
    queue = ingest_queue_create(QUEUE_MAX_BATCHES, (size_t)opts.queue_bytes);
    if (!queue) goto out;
    ingest_queue_prepare_for(queue, store);
    writer = writer_start(queue, store, (int)opts.flush_ms, batch_done);
    if (!writer) goto out;

    if (*opts.auth_token_file && !(auth = auth_load(opts.auth_token_file))) goto out;
    if (*opts.tls_cert) {
        tls_cert = read_file(opts.tls_cert);
        tls_key = read_file(opts.tls_key);
        if (!tls_cert || !tls_key) goto out;
    }
    atomic_store(&self_metrics.memory_bound_bytes, memory_bound(&opts));
    log_msg(LOG_INFO, "meshscope: memory bound %llu MiB (README: Guarantees and limits)",
            (unsigned long long)(memory_bound(&opts) >> 20));
    struct red_options ro = {.series_limit = (uint32_t)opts.metrics_series_limit,
                             .pending_ttl_ms = opts.graph_wait_us / 1000};
    if (!(red = red_create(&ro))) goto out;
    struct otel_metrics_options mo = {.max_series = (uint64_t)opts.metrics_series_limit,
                                      .expiry_ns = opts.metrics_expiry_us * 1000};
    if (!(metrics = otel_metrics_create(&mo))) goto out;
    struct http_context ctx = {.opts = &opts,
                               .red = red,
                               .metrics = metrics,
                               .observe = red_observe_batch,
                               .observe_arg = red,
                               .queue = queue,
                               .store = store,
                               .auth = auth,
                               .tls_cert_pem = tls_cert,
                               .tls_key_pem = tls_key};
    const char *names[3] = {"http", "otlp-http", "zipkin"};
    const char *addrs[3] = {opts.http_addr, opts.otlp_http_addr, opts.zipkin_addr};
    for (int i = 0; i < 3; i++) {
        if (strcmp(addrs[i], "off") == 0) continue;
        servers[i] = http_server_start(names[i], addrs[i], &ctx);
        if (!servers[i]) goto out;
    }
    if (strcmp(opts.syslog, "off") != 0 &&
        !(syslog = syslog_start(opts.syslog, queue, red_observe_batch, red, opts.idle_timeout_us)))
        goto out;
    if (strcmp(opts.otlp_grpc_addr, "off") != 0 &&
        !(grpc = grpc_server_start(opts.otlp_grpc_addr, &ctx)))
        goto out;
    atomic_store(&ctx.ready, true);
    log_msg(LOG_INFO, "meshscope: ready (db %s, retention %llds)", opts.db_path,
            (long long)(opts.retention_us / 1000000));

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    log_msg(LOG_INFO, "meshscope: %s received, shutting down", strsignal(sig));
    exit_code = 0;

out:
    for (int i = 0; i < 3; i++)
        http_server_quiesce(servers[i]);
    grpc_server_quiesce(grpc);
    syslog_stop(syslog); /* stops reading, pushes its pending batch: before the queue closes */
    if (queue) ingest_queue_close(queue);
    writer_stop(writer);
    /* Every waiting request has its answer; give the HTTP threads a moment to send them (a
     * client that stops reading cannot hold the shutdown longer than this). */
    http_wait_idle(5000);
    grpc_wait_idle(5000);
    for (int i = 0; i < 3; i++)
        http_server_stop(servers[i]);
    grpc_server_stop(grpc);
    if (store) {
        struct store_stats ss;
        store_get_stats(store, &ss);
        log_msg(LOG_INFO, "meshscope: stopped; %llu spans stored this run",
                (unsigned long long)ss.spans_stored);
    }
    ingest_queue_destroy(queue);
    store_close(store);
    red_destroy(red); /* after the listeners: no HTTP thread observes or renders any more */
    otel_metrics_destroy(metrics);
    auth_free(auth);
    free(tls_cert);
    if (tls_key) explicit_bzero(tls_key, strlen(tls_key));
    free(tls_key);
    return exit_code;
}
