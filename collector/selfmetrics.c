/*
 * selfmetrics.c: meshscope's own metrics, rendered in the Prometheus text exposition format.
 *
 * Counters are relaxed atomics bumped by HTTP threads and the writer; rendering reads them
 * without stopping anyone (each value is exact, the set is not one instant, as in any exporter).
 * Rendering never touches engine state beyond those atomics and the store's own stats.
 */
#include "collector_int.h"
#include "otel_metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct self_metrics self_metrics;

static const char *const protocol_label[PROTO_COUNT] = {
    "otlp_http_protobuf",      "otlp_http_json",      "zipkin_json",           "zipkin_protobuf",
    "accesslog_json",          "otlp_logs_http_protobuf", "otlp_logs_http_json",
    "otlp_metrics_protobuf",   "otlp_metrics_json",   "otlp_grpc",             "envoy_als_grpc",
    "otlp_logs_grpc",          "otlp_metrics_grpc",   "envoy_metrics_grpc"};
static const char *const reason_label[REJECT_REASON_COUNT] = {
    "invalid_span", "decode_error", "too_large", "queue_full", "store_failed", "body_budget",
    "timeout"};
const char *const syslog_transport_label[SYSLOG_TRANSPORT_COUNT] = {"udp", "tcp"};
static const char *const syslog_outcome_label[SYSLOG_OUTCOME_COUNT] = {"accepted", "rejected",
                                                                        "dropped"};
const char *const syslog_reject_label[SYSLOG_REJECT_COUNT] = {
    "none",     "bad_length",   "truncated",     "too_large",     "bad_header",
    "invalid_utf8", "not_json", "missing_field", "invalid_record"};
/* Commit latency buckets, seconds: from sub-millisecond (a small batch) to seconds (a stalled
 * disk). The last slot of commit_buckets counts observations above the last bound. */
static const double commit_bounds[11] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,   0.1,   0.25,   0.5,   1.0};

static time_t start_time;
__attribute__((constructor)) static void record_start(void)
{
    start_time = time(NULL);
}

void selfmetrics_observe_commit(int64_t micros)
{
    double s = (double)micros / 1e6;
    size_t i = 0;
    while (i < 11 && s > commit_bounds[i]) i++;
    atomic_fetch_add_explicit(&self_metrics.commit_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&self_metrics.commit_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&self_metrics.commit_sum_us, (uint64_t)micros,
                              memory_order_relaxed);
}

struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

__attribute__((format(printf, 2, 3))) static void put(struct buf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void header(struct buf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define LOAD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

int selfmetrics_render(struct ingest_queue *q, struct store *st, char **out, size_t *out_len)
{
    struct buf b = {malloc(8192), 0, 8192, false};
    if (!b.p) return -ENOMEM;

    header(&b, "meshscope_ingest_requests_total", "counter",
           "Ingest requests received, by protocol.");
    for (int p = 0; p < PROTO_COUNT; p++)
        put(&b, "meshscope_ingest_requests_total{protocol=\"%s\"} %llu\n", protocol_label[p],
            LOAD(self_metrics.requests[p]));
    header(&b, "meshscope_ingest_requests_rejected_total", "counter",
           "Ingest requests refused whole, by protocol and reason.");
    for (int p = 0; p < PROTO_COUNT; p++)
        for (int r = 1; r < REJECT_REASON_COUNT; r++)
            put(&b, "meshscope_ingest_requests_rejected_total{protocol=\"%s\",reason=\"%s\"} %llu\n",
                protocol_label[p], reason_label[r], LOAD(self_metrics.requests_rejected[p][r]));
    header(&b, "meshscope_spans_received_total", "counter",
           "Spans received in decodable requests, by protocol.");
    for (int p = 0; p < PROTO_COUNT; p++)
        put(&b, "meshscope_spans_received_total{protocol=\"%s\"} %llu\n", protocol_label[p],
            LOAD(self_metrics.spans_received[p]));
    header(&b, "meshscope_spans_accepted_total", "counter",
           "Spans accepted into the ingest queue, by protocol.");
    for (int p = 0; p < PROTO_COUNT; p++)
        put(&b, "meshscope_spans_accepted_total{protocol=\"%s\"} %llu\n", protocol_label[p],
            LOAD(self_metrics.spans_accepted[p]));
    header(&b, "meshscope_spans_rejected_total", "counter",
           "Spans refused, by protocol and reason.");
    for (int p = 0; p < PROTO_COUNT; p++)
        for (int r = 0; r < REJECT_REASON_COUNT; r++)
            put(&b, "meshscope_spans_rejected_total{protocol=\"%s\",reason=\"%s\"} %llu\n",
                protocol_label[p], reason_label[r], LOAD(self_metrics.spans_rejected[p][r]));

    if (q) {
        header(&b, "meshscope_ingest_queue_batches", "gauge", "Batches waiting for the writer.");
        put(&b, "meshscope_ingest_queue_batches %zu\n", ingest_queue_items(q));
        header(&b, "meshscope_ingest_queue_bytes", "gauge",
               "Bytes of decoded spans waiting for the writer.");
        put(&b, "meshscope_ingest_queue_bytes %zu\n", ingest_queue_bytes(q));
        header(&b, "meshscope_ingest_queue_capacity_bytes", "gauge",
               "Ingest queue bound (--queue-size).");
        put(&b, "meshscope_ingest_queue_capacity_bytes %zu\n", ingest_queue_capacity_bytes(q));
    }

    header(&b, "meshscope_batch_commit_duration_seconds", "histogram",
           "Time to commit one group transaction to SQLite.");
    unsigned long long cum = 0;
    for (int i = 0; i < 11; i++) {
        cum += LOAD(self_metrics.commit_buckets[i]);
        put(&b, "meshscope_batch_commit_duration_seconds_bucket{le=\"%g\"} %llu\n",
            commit_bounds[i], cum);
    }
    cum += LOAD(self_metrics.commit_buckets[11]);
    put(&b, "meshscope_batch_commit_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    put(&b, "meshscope_batch_commit_duration_seconds_sum %.6f\n",
        (double)LOAD(self_metrics.commit_sum_us) / 1e6);
    put(&b, "meshscope_batch_commit_duration_seconds_count %llu\n", cum);

    header(&b, "meshscope_store_errors_total", "counter", "Group commits that failed.");
    put(&b, "meshscope_store_errors_total %llu\n", LOAD(self_metrics.store_errors));
    header(&b, "meshscope_spans_lost_total", "counter",
           "Spans queued but not stored because the database refused the commit (answered 503 "
           "under --ack=committed; lost under --ack=received).");
    put(&b, "meshscope_spans_lost_total %llu\n", LOAD(self_metrics.spans_lost));

    if (st) {
        struct store_stats ss;
        store_get_stats(st, &ss);
        header(&b, "meshscope_spans_stored_total", "counter", "Spans committed to SQLite.");
        put(&b, "meshscope_spans_stored_total %llu\n", (unsigned long long)ss.spans_stored);
        header(&b, "meshscope_retention_deleted_spans_total", "counter",
               "Spans deleted by retention (age or size limit).");
        put(&b, "meshscope_retention_deleted_spans_total %llu\n",
            (unsigned long long)ss.spans_deleted);
        header(&b, "meshscope_db_size_bytes", "gauge", "Database file size, WAL included.");
        put(&b, "meshscope_db_size_bytes %lld\n", (long long)ss.db_bytes);
        header(&b, "meshscope_store_wal_restarts_total", "counter",
               "Times the SQLite WAL started over from its beginning (it stays bounded while "
               "this rises).");
        put(&b, "meshscope_store_wal_restarts_total %llu\n", (unsigned long long)ss.wal_restarts);
        header(&b, "meshscope_store_writer_checkpoints_total", "counter",
               "WAL checkpoints the writer ran inside a commit because the checkpointer thread "
               "fell behind (each delays the requests waiting for that commit).");
        put(&b, "meshscope_store_writer_checkpoints_total %llu\n",
            (unsigned long long)ss.writer_checkpoints);
        header(&b, "meshscope_store_writer_checkpoint_seconds_total", "counter",
               "Time the writer spent in those checkpoints.");
        put(&b, "meshscope_store_writer_checkpoint_seconds_total %.6f\n",
            (double)ss.writer_checkpoint_us / 1e6);
        header(&b, "meshscope_store_trace_index_pending", "gauge",
               "Committed chunks whose trace index row waits in memory to be written in key "
               "order (found by trace id meanwhile).");
        put(&b, "meshscope_store_trace_index_pending %llu\n",
            (unsigned long long)ss.trace_index_pending);
    }
    header(&b, "meshscope_syslog_messages_total", "counter",
           "Syslog messages received (--syslog), by transport and outcome.");
    for (int t = 0; t < SYSLOG_TRANSPORT_COUNT; t++)
        for (int o = 0; o < SYSLOG_OUTCOME_COUNT; o++)
            put(&b, "meshscope_syslog_messages_total{transport=\"%s\",outcome=\"%s\"} %llu\n",
                syslog_transport_label[t], syslog_outcome_label[o],
                LOAD(self_metrics.syslog_messages[t][o]));
    header(&b, "meshscope_syslog_rejected_total", "counter",
           "Syslog messages refused as bad input, by reason.");
    for (int r = 1; r < SYSLOG_REJECT_COUNT; r++)
        put(&b, "meshscope_syslog_rejected_total{reason=\"%s\"} %llu\n", syslog_reject_label[r],
            LOAD(self_metrics.syslog_rejected[r]));
    header(&b, "meshscope_syslog_connections", "gauge", "Open syslog TCP connections.");
    put(&b, "meshscope_syslog_connections %llu\n", LOAD(self_metrics.syslog_connections));
    header(&b, "meshscope_syslog_connections_refused_total", "counter",
           "Syslog TCP connections closed at once: over the per-listener limit.");
    put(&b, "meshscope_syslog_connections_refused_total %llu\n",
        LOAD(self_metrics.syslog_connections_refused));
    header(&b, "meshscope_retention_runs_total", "counter", "Retention passes run.");
    put(&b, "meshscope_retention_runs_total %llu\n", LOAD(self_metrics.retention_runs));
    header(&b, "meshscope_memory_bound_bytes", "gauge",
           "Memory meshscope can use whatever the load, derived from its limits (README).");
    put(&b, "meshscope_memory_bound_bytes %llu\n", LOAD(self_metrics.memory_bound_bytes));
    header(&b, "process_start_time_seconds", "gauge", "Start time since the epoch, seconds.");
    put(&b, "process_start_time_seconds %lld\n", (long long)start_time);
    header(&b, "meshscope_build_info", "gauge", "Version of this build.");
    put(&b, "meshscope_build_info{version=\"0.1.0\"} 1\n");

    if (b.oom) {
        free(b.p);
        return -ENOMEM;
    }
    *out = b.p;
    *out_len = b.len;
    return 0;
}

void selfmetrics_count_reject(enum ingest_protocol p, enum reject_reason r)
{
    atomic_fetch_add_explicit(&self_metrics.requests_rejected[p][r], 1, memory_order_relaxed);
}

int selfmetrics_ingest_metrics(struct otel_metrics *store, enum ingest_protocol p,
                               const struct om_batch *b, struct om_result *res)
{
    otel_metrics_count_rejected(store, OM_REJECT_DECODE, b->rejected);
    int rc = otel_metrics_apply(store, b->metrics, b->n_metrics, res);
    res->rejected += b->rejected;
    if (b->reason[0]) snprintf(res->reason, sizeof res->reason, "%s", b->reason);
    atomic_fetch_add_explicit(&self_metrics.spans_received[p], res->accepted + res->rejected,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&self_metrics.spans_accepted[p], res->accepted, memory_order_relaxed);
    atomic_fetch_add_explicit(&self_metrics.spans_rejected[p][REJECT_INVALID_SPAN], res->rejected,
                              memory_order_relaxed);
    return rc;
}
