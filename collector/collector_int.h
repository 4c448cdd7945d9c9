/*
 * collector_int.h: declarations shared by the daemon's files (options, decompression, the ingest
 * queue, the writer thread, self metrics, the HTTP listeners). Not a public interface.
 */
#ifndef MESHSCOPE_COLLECTOR_INT_H
#define MESHSCOPE_COLLECTOR_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"

/* ----- options (options.c) ------------------------------------------------------------------ */

struct options {
    const char *db_path;
    const char *http_addr;      /* dashboard, query API, /metrics */
    const char *otlp_http_addr; /* OTLP/HTTP */
    const char *zipkin_addr;    /* Zipkin (later issue); serves the whole route table meanwhile */
    const char *otlp_grpc_addr; /* gRPC ingest (grpc.h) */
    int64_t retention_us;
    int64_t max_db_bytes;
    int64_t max_body_bytes;  /* request body cap, measured after decompression */
    int64_t queue_bytes;     /* ingest queue bound in bytes of decoded batches */
    int64_t http_threads;    /* per listener */
    int64_t flush_ms;        /* writer's group-commit window */
    bool ack_received;       /* --ack=received: answer once queued, not once committed */
    const char *auth_token_file; /* "" = no auth */
    const char *tls_cert, *tls_key; /* "" = plain HTTP */
    int64_t max_connections;     /* per listener */
    int64_t idle_timeout_us;     /* a connection silent this long is closed */
    int64_t request_timeout_us;  /* a request body still incomplete this long is cut off */
    enum log_level log_level;
    int64_t metrics_series_limit; /* RED: label sets per metric family (red.h); OTLP metrics:
                                     series in all (otel_metrics.h) */
    int64_t metrics_expiry_us;    /* OTLP metrics: series not updated this long expire */
    int64_t graph_wait_us;        /* service graph: a half waits this long for its other half */
    const char *syslog; /* --syslog listeners (syslog.h), "off" = none */
};

/* Parses argv (and MESHSCOPE_<NAME> environment overrides, argv winning) into *out.
 * Returns 0; 1 when --help/--version was printed (exit 0); -EINVAL after printing a one-line
 * error naming the flag to stderr (exit 2). */
int options_parse(int argc, char **argv, struct options *out /* OUT */);

/* Parses "512", "64KiB", "16MiB", "1GiB", "10MB" (SI), into bytes. 0 or -EINVAL. */
int parse_size(const char *s, int64_t *out /* OUT */);
/* Parses a Go-style duration plus a "d" (day) unit: "72h", "30m", "7d", "1h30m". 0 or -EINVAL. */
int parse_duration_us(const char *s, int64_t *out /* OUT */);

struct addrinfo;
/* Resolves a listen address, "host:port", "[v6]:port" or ":port" (every local address), with
 * getaddrinfo(AI_PASSIVE, AF_UNSPEC, socktype; 0 = any). Returns 0 with *out the result list
 * (non-empty; the caller uses its first entry and frees it with freeaddrinfo), or -EINVAL (no
 * colon, a host of 256 bytes or more, unresolvable). Any thread. */
int listen_addr_resolve(const char *addr, int socktype, struct addrinfo **out /* OUT */);

/* ----- decompression (decompress.c) --------------------------------------------------------- */

enum content_encoding { ENCODING_IDENTITY, ENCODING_GZIP, ENCODING_ZSTD, ENCODING_UNKNOWN };

/* "identity", "gzip", "x-gzip", "zstd", NULL/"" -> identity; anything else -> ENCODING_UNKNOWN. */
enum content_encoding encoding_parse(const char *header);

/* Decompresses in into a malloc'd buffer (*out, *out_len; caller frees), stopping as soon as the
 * output would exceed cap bytes. Reuses a per-thread zstd/zlib context. Returns 0, -E2BIG when
 * the output exceeds cap (nothing returned), -EINVAL for a corrupt or truncated stream,
 * -ENOMEM. Borrows in. */
int decompress(enum content_encoding enc, const uint8_t *in, size_t in_len, size_t cap,
               uint8_t **out /* OUT */, size_t *out_len /* OUT */);

/* ----- ingest queue (queue.c) ---------------------------------------------------------------- */

/*
 * A bounded many-producer, one-consumer queue of span batches, limited in items and in bytes.
 * Producers (HTTP threads) never block and take no lock: a full queue answers -EBUSY at once.
 */
struct ingest_queue;

struct ingest_queue *ingest_queue_create(unsigned max_items, size_t max_bytes);
/* Before any push: every pushed batch is then prepared for st (store_prepare_batch) on the
 * pushing thread, before it is counted against the byte bound. */
void ingest_queue_prepare_for(struct ingest_queue *q, struct store *st);
/* Accepts NULL; destroys batches still queued. */
void ingest_queue_destroy(struct ingest_queue *q);
/* Any thread. Consumes b on success; on -EBUSY (full), -E2BIG (more bytes than the whole
 * queue holds, counted once prepared for the store: never fits) or -EPIPE (closed) the caller
 * keeps b. */
int ingest_queue_push(struct ingest_queue *q, struct span_batch *b);
/* Same, and calls observe(arg, b) once the push can no longer fail, before the writer can see
 * b: whoever aggregates accepted spans (RED metrics) counts each accepted batch exactly once and
 * never a refused one. observe borrows b and must not block. */
int ingest_queue_push_observed(struct ingest_queue *q, struct span_batch *b,
                               void (*observe)(void *arg, const struct span_batch *b), void *arg);
/* Consumer thread only. Pops up to max batches into out; waits up to timeout_ms for the first
 * one. Returns the number popped (0 on timeout or when closed and empty). */
size_t ingest_queue_pop(struct ingest_queue *q, struct span_batch **out, size_t max,
                        int timeout_ms);
/* Refuses further pushes; pop keeps returning what is queued. Any thread. */
void ingest_queue_close(struct ingest_queue *q);
bool ingest_queue_closed_and_empty(struct ingest_queue *q);
size_t ingest_queue_items(struct ingest_queue *q);
size_t ingest_queue_bytes(struct ingest_queue *q);
size_t ingest_queue_capacity_bytes(struct ingest_queue *q);

/* ----- writer thread (writer.c) -------------------------------------------------------------- */

struct writer;

/* The `user` of a batch whose producer waits for its commit points to a struct whose first member
 * is this tag, so the one batch_done callback (main.c) can tell an HTTP request (http.c, 0 as
 * calloc leaves it) from a gRPC call (grpc.c). */
enum batch_owner { BATCH_OWNER_HTTP = 0, BATCH_OWNER_GRPC };

/* Called by the writer thread once per committed (rc 0) or failed (negative errno) batch whose
 * `user` field is set, before the batch is freed. Must not block. */
typedef void (*batch_done_fn)(void *user, int rc);

/* Starts the thread that pops batches from q, commits them to st in group transactions and runs
 * retention. Borrows q and st (both outlive the writer). on_done may be NULL. NULL on failure. */
struct writer *writer_start(struct ingest_queue *q, struct store *st, int flush_ms,
                            batch_done_fn on_done);
/* Waits until the queue is closed and drained, then joins. Accepts NULL. */
void writer_stop(struct writer *w);

/* ----- self metrics (selfmetrics.c) ---------------------------------------------------------- */

/* One per (endpoint, body format); labels the self metrics. Keep protocol_label[] in
 * selfmetrics.c in step. */
enum ingest_protocol {
    PROTO_OTLP_HTTP_PROTOBUF,
    PROTO_OTLP_HTTP_JSON,
    PROTO_ZIPKIN_JSON,
    PROTO_ZIPKIN_PROTOBUF,
    PROTO_ACCESSLOG_JSON,     /* POST /api/v1/accesslogs; its counters count records, not spans */
    PROTO_OTLP_LOGS_PROTOBUF, /* POST /v1/logs; counters count log records */
    PROTO_OTLP_LOGS_JSON,
    PROTO_OTLP_METRICS_PROTOBUF, /* POST /v1/metrics; its counters count data points */
    PROTO_OTLP_METRICS_JSON,
    PROTO_OTLP_GRPC,             /* TraceService/Export over gRPC */
    PROTO_ENVOY_ALS_GRPC,        /* AccessLogService/StreamAccessLogs: requests count streams */
    PROTO_OTLP_LOGS_GRPC,        /* LogsService/Export over gRPC */
    PROTO_OTLP_METRICS_GRPC,     /* MetricsService/Export over gRPC: counts data points */
    PROTO_ENVOY_METRICS_GRPC,    /* Envoy MetricsService/StreamMetrics: counts metrics */
    PROTO_COUNT
};

enum reject_reason {
    REJECT_INVALID_SPAN,   /* partial success: bad ids, per-span caps */
    REJECT_DECODE_ERROR,   /* whole request undecodable (400) */
    REJECT_TOO_LARGE,      /* 413 */
    REJECT_QUEUE_FULL,     /* 503 */
    REJECT_STORE_FAILED,   /* 503: the database refused the commit (--ack=committed) */
    REJECT_BODY_BUDGET,    /* 503: request bodies in flight exceed their budget (requests only) */
    REJECT_TIMEOUT,        /* connection closed: body not complete within --request-timeout */
    REJECT_REASON_COUNT
};

/* Syslog receiver (syslog.c). Keep the syslog_*_label[] arrays in selfmetrics.c in step. */
enum syslog_transport { SYSLOG_UDP, SYSLOG_TCP, SYSLOG_TRANSPORT_COUNT };
enum syslog_outcome {
    SYSLOG_ACCEPTED, /* its record went into the ingest queue */
    SYSLOG_REJECTED, /* bad input (a reason below) */
    SYSLOG_DROPPED,  /* the ingest queue was full (UDP; TCP waits instead) or closed */
    SYSLOG_OUTCOME_COUNT
};
enum syslog_reject {
    SYSLOG_REJECT_NONE,
    SYSLOG_REJECT_BAD_LENGTH,     /* TCP octet count that is not a number */
    SYSLOG_REJECT_TRUNCATED,      /* TCP frame cut by the end of the connection or idle timeout */
    SYSLOG_REJECT_TOO_LARGE,      /* over SYSLOG_MAX_MESSAGE */
    SYSLOG_REJECT_BAD_HEADER,     /* PRI, version, header fields, structured data */
    SYSLOG_REJECT_INVALID_UTF8,   /* the body is not UTF-8 */
    SYSLOG_REJECT_NOT_JSON,       /* the body is not one JSON object */
    SYSLOG_REJECT_MISSING_FIELD,  /* a required field (start_time / msec) is missing */
    SYSLOG_REJECT_INVALID_RECORD, /* the decoder refused a field */
    SYSLOG_REJECT_COUNT
};
extern const char *const syslog_transport_label[SYSLOG_TRANSPORT_COUNT];
extern const char *const syslog_reject_label[SYSLOG_REJECT_COUNT];

/* Counters shared by HTTP threads and the writer: all _Atomic, relaxed. */
struct self_metrics {
    _Atomic uint64_t requests[PROTO_COUNT];
    _Atomic uint64_t spans_received[PROTO_COUNT];
    _Atomic uint64_t spans_accepted[PROTO_COUNT];
    _Atomic uint64_t spans_rejected[PROTO_COUNT][REJECT_REASON_COUNT];
    _Atomic uint64_t requests_rejected[PROTO_COUNT][REJECT_REASON_COUNT];
    _Atomic uint64_t store_errors;
    _Atomic uint64_t spans_lost; /* dequeued but could not be stored (database error) */
    _Atomic uint64_t retention_runs;
    _Atomic uint64_t memory_bound_bytes; /* set once by main (memory_bound) */
    /* batch commit latency histogram (seconds), written by the writer thread only */
    _Atomic uint64_t commit_buckets[12];
    _Atomic uint64_t commit_count;
    _Atomic uint64_t commit_sum_us;
    /* syslog receiver (its event-loop thread) */
    _Atomic uint64_t syslog_messages[SYSLOG_TRANSPORT_COUNT][SYSLOG_OUTCOME_COUNT];
    _Atomic uint64_t syslog_rejected[SYSLOG_REJECT_COUNT];
    _Atomic uint64_t syslog_connections;         /* open TCP connections (gauge) */
    _Atomic uint64_t syslog_connections_refused; /* closed at once: over the connection limit */
};

extern struct self_metrics self_metrics;

/* Renders meshscope's own metrics in Prometheus text format 0.0.4 into a malloc'd buffer.
 * Borrows q and st (may be NULL). Returns 0 or -ENOMEM. */
int selfmetrics_render(struct ingest_queue *q, struct store *st, char **out, size_t *out_len);
/* Writer thread: records one batch commit's latency. */
void selfmetrics_observe_commit(int64_t micros);
/* Counts one request of protocol p refused for reason r. Any thread. */
void selfmetrics_count_reject(enum ingest_protocol p, enum reject_reason r);

struct otel_metrics;
struct om_batch;
struct om_result;
/* The ingest of one decoded metrics batch (OTLP/HTTP, gRPC: metrics are not queued,
 * otel_metrics.h): counts the decoder's refusals in store, applies b's metrics to store, adds
 * b->rejected and b->reason (the first refusal) to *res, and counts the data points received,
 * accepted and rejected under p. Borrows store and b (the caller destroys b); res is the
 * caller's, zeroed. Returns otel_metrics_apply's code (0, or a negative errno). Any thread. */
int selfmetrics_ingest_metrics(struct otel_metrics *store, enum ingest_protocol p,
                               const struct om_batch *b, struct om_result *res /* OUT */);

/* ----- OTLP responses (otlp_response.c) ------------------------------------------------------ */

/* ExportMetricsServiceResponse: the same wire bytes; in JSON "rejectedDataPoints". */
int otlp_encode_metrics_response(bool json, uint64_t rejected, const char *message, char **out,
                                 size_t *out_len);
/* ExportTraceServiceResponse, with partial_success when rejected > 0. json selects OTLP/JSON,
 * otherwise protobuf. malloc'd into *out. Returns 0 or -ENOMEM. */
int otlp_encode_export_response(bool json, uint64_t rejected, const char *message, char **out,
                                size_t *out_len);
/* ExportLogsServiceResponse: the same bytes in protobuf (partial_success = 1 {
 * rejected_log_records = 1, error_message = 2 }); OTLP/JSON says "rejectedLogRecords". */
int otlp_encode_export_logs_response(bool json, uint64_t rejected, const char *message, char **out,
                                     size_t *out_len);
/* google.rpc.Status {code, message}. */
int otlp_encode_status(bool json, int grpc_code, const char *message, char **out,
                       size_t *out_len);

/* ----- access control (auth.c) ------------------------------------------------------------- */

enum auth_scope { AUTH_INGEST, AUTH_READ };
struct auth;
/* Reads --auth-token-file (format in auth.c). NULL (logged) when unreadable or invalid. */
struct auth *auth_load(const char *path);
void auth_free(struct auth *a);
/* True when a is NULL (no auth configured) or header is "Bearer <token>" for a token granting
 * scope. Constant time in the given token. Any thread. */
bool auth_check(const struct auth *a, enum auth_scope scope, const char *header);

/* ----- HTTP listeners (http.c) --------------------------------------------------------------- */

struct http_server;

struct http_context {
    const struct options *opts;
    struct ingest_queue *queue;
    struct store *store;
    /* Called on an HTTP thread for every accepted batch, exactly once, before the writer sees it
     * (see ingest_queue_push_observed). NULL = nobody observes. */
    void (*observe)(void *arg, const struct span_batch *b);
    void *observe_arg;
    const struct auth *auth; /* NULL: no token required */
    /* TLS: PEM contents (not paths) of --tls-cert / --tls-key, or NULL for plain HTTP. */
    const char *tls_cert_pem, *tls_key_pem;
    struct red *red; /* RED metrics rendered on /metrics (red.h); NULL = self metrics only */
    struct otel_metrics *metrics; /* POST /v1/metrics store (otel_metrics.h); NULL = 404 */
    _Atomic bool ready;
};

/* Starts one libmicrohttpd daemon on addr ("host:port"), serving the whole route table.
 * Borrows ctx (outlives the server). NULL (logged) on failure. */
struct http_server *http_server_start(const char *name, const char *addr,
                                      struct http_context *ctx);
/* Stops accepting new connections; requests on open ones still run. Accepts NULL. */
void http_server_quiesce(struct http_server *s);
/* Stops the server, closing every connection (call after the writer has answered every request
 * waiting for a commit). Accepts NULL. */
void http_server_stop(struct http_server *s);
/* Waits (at most timeout_ms) until no request is in flight on any listener: their answers sent. */
void http_wait_idle(int timeout_ms);
/* The writer's batch_done_fn for ingest requests waiting for their commit (--ack=committed). */
void http_batch_done(void *user, int rc);
/* The port actually bound (useful with port 0). */
unsigned http_server_port(const struct http_server *s);

#endif
