/*
 * grpc.c: the gRPC ingest listener (--otlp-grpc) on libnghttp2's server session API.
 *
 * DESIGN
 * - Threads: GRPC_LOOPS_MAX at most (min(--http-threads, 4)) event loops, each an epoll set
 *   holding the shared listening socket (EPOLLEXCLUSIVE: one loop wakes per connection), its own
 *   eventfd and the connections it accepted. A connection, its nghttp2 session and its calls are
 *   touched only by the loop that owns them. Shared: the ingest queue, atomics, and the
 *   completion stack below.
 * - Acknowledged means durable (--ack=committed): a unary Export pushes its batch with `user` set
 *   to a struct pending (first member BATCH_OWNER_GRPC); the writer's grpc_batch_done stores the
 *   outcome and pushes the pending onto its loop's lock-free stack and wakes the loop (eventfd),
 *   which answers. The writer writes only rc and next; the loop writes pending->call (to NULL when
 *   the call goes away first) and frees the pending once it comes back.
 * - gRPC framing (PROTOCOL-HTTP2.md): each DATA chunk is appended to the call's buffer; complete
 *   5-byte-prefixed messages are cut out, inflated (grpc-encoding gzip) under --max-body and
 *   handed to the method. A length prefix above --max-body answers RESOURCE_EXHAUSTED before any
 *   of the message is buffered. Buffers together stay under the same budget as HTTP bodies
 *   (max(--queue-size, 8 x --max-body)); over it, UNAVAILABLE.
 * - Flow control: automatic WINDOW_UPDATEs are off; the loop gives window back
 *   (nghttp2_session_consume) only for bytes it has taken into a message that is being processed.
 *   A streaming call whose batch the full queue refused keeps that batch, stops consuming, and
 *   retries every RETRY_MS: the client's window runs out and HTTP/2 holds it (memory per call:
 *   one batch, one --max-body message, one window). A unary call under a full queue answers
 *   UNAVAILABLE at once with grpc-retry-pushback-ms (clients retry it).
 * - Metrics (OTLP MetricsService/Export, Envoy StreamMetrics) are not queued: the loop applies
 *   them to the metric store (otel_metrics.h, its own shard locks) and answers, as POST
 *   /v1/metrics does.
 * - Keepalive: nghttp2 answers PINGs; a connection silent for half --idle-timeout gets a PING,
 *   one silent for --idle-timeout (or whose output has not moved for that long: a client that
 *   never reads) is closed.
 * - TLS (--tls-cert/--tls-key): GnuTLS, non-blocking, ALPN "h2" mandatory; the handshake runs on
 *   the loop like any other I/O and nghttp2's bytes go through gnutls_record_send/recv.
 * - Shutdown (main.c): quiesce = stop accepting + graceful GOAWAY; the writer drains and answers
 *   every waiting call; grpc_wait_idle lets the answers go out; stop joins the loops.
 */
#include "grpc.h"
#include "envoy_als.h"
#include "envoy_metrics.h"
#include "otel_metrics.h"
#include "otlp.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <nghttp2/nghttp2.h>

#define GRPC_LOOPS_MAX 4
/* A blocked streaming call retries its push this often (ms): well under a client's patience,
 * slow enough that a full queue costs no CPU. */
#define RETRY_MS 10
/* HTTP/2 settings: 256 KiB per stream lets an OTLP batch of typical size through in one
 * round trip; 1 MiB per connection bounds what one connection can make us hold unconsumed. */
#define STREAM_WINDOW (256 * 1024)
#define CONN_WINDOW (1024 * 1024)
#define MAX_STREAMS 100
#define MAX_HEADER_LIST (64 * 1024)

enum grpc_code {
    GRPC_OK = 0,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_UNAUTHENTICATED = 16,
};

struct call;
struct conn;
struct loop;

/* A push waiting for the writer's commit (see DESIGN). */
struct pending {
    enum batch_owner owner; /* first: BATCH_OWNER_GRPC */
    struct loop *loop;
    struct call *call; /* loop thread only; NULL once the call has gone */
    int rc;            /* written by the writer before the push onto loop->done */
    struct pending *next;
};

/* What a method does with one complete, inflated message: 0 (processed; its bytes may be
 * consumed), HOLD (a batch waits for room in the queue) or a gRPC error already set on c. */
#define HOLD 1
typedef int (*message_fn)(struct call *c, const uint8_t *msg, size_t len);

/* A unary method's answer: the OTLP Export*ServiceResponse encoders (collector_int.h). */
typedef int (*encode_fn)(bool json, uint64_t rejected, const char *message, char **out,
                         size_t *out_len);

struct method {
    const char *path;
    bool streaming;
    message_fn on_message;
    enum ingest_protocol proto;
    encode_fn encode;  /* unary: the response; streaming: NULL (empty response message) */
    const char *items; /* what partial_success counts */
};

static int trace_export(struct call *c, const uint8_t *msg, size_t len);
static int logs_export(struct call *c, const uint8_t *msg, size_t len);
static int metrics_export(struct call *c, const uint8_t *msg, size_t len);
static int als_message(struct call *c, const uint8_t *msg, size_t len);
static int envoy_metrics_message(struct call *c, const uint8_t *msg, size_t len);

/* Adding a service is one row here plus its message function. */
static const struct method methods[] = {
    {"/opentelemetry.proto.collector.trace.v1.TraceService/Export", false, trace_export,
     PROTO_OTLP_GRPC, otlp_encode_export_response, "spans"},
    {"/opentelemetry.proto.collector.logs.v1.LogsService/Export", false, logs_export,
     PROTO_OTLP_LOGS_GRPC, otlp_encode_export_logs_response, "log records"},
    {"/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", false, metrics_export,
     PROTO_OTLP_METRICS_GRPC, otlp_encode_metrics_response, "data points"},
    {"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", true, als_message,
     PROTO_ENVOY_ALS_GRPC, NULL, "entries"},
    {"/envoy.service.metrics.v3.MetricsService/StreamMetrics", true, envoy_metrics_message,
     PROTO_ENVOY_METRICS_GRPC, NULL, "metrics"},
};

struct call {
    struct conn *conn;
    int32_t id;
    struct call *prev, *next; /* conn->calls */
    const struct method *m;
    char path[160];
    char content_type[64];
    char encoding[32];
    char auth[320];
    bool post, headers_done;
    enum content_encoding enc;
    bool half_closed; /* client sent END_STREAM */
    bool responded;   /* an answer is submitted */
    bool counted;     /* in calls_answering */
    uint8_t *in;      /* received, not yet processed bytes */
    size_t in_len, in_cap;
    size_t unconsumed;       /* bytes received but not given back as window */
    struct span_batch *held; /* refused by a full queue, retried (streaming) */
    size_t held_bytes;       /* what held added to buffered_bytes (a retry may prepare it) */
    struct pending *pending; /* waiting for the writer's commit (unary) */
    int commit_rc;
    bool committed;
    uint32_t messages, accepted, rejected;
    char reason[256];
    struct als_node node;            /* StreamAccessLogs: the reporting proxy */
    struct envoy_metrics_node mnode; /* StreamMetrics: the reporting proxy */
    uint8_t *out;                    /* response message, 5-byte prefix included */
    size_t out_len, out_off;
};

struct conn {
    int fd;               /* -1: in-memory (fuzz) */
    gnutls_session_t tls; /* NULL: cleartext */
    bool handshake_done;
    bool tls_send_again; /* the last gnutls_record_send said AGAIN: resume it */
    nghttp2_session *s;
    struct loop *loop;
    struct conn *prev, *next;
    struct call *calls;
    int64_t last_rx_us, last_tx_us, ping_us;
    bool out_blocked;    /* the socket refused bytes: EPOLLOUT armed */
    grpc_output_fn sink; /* in-memory connection: where the output goes (may be NULL) */
    void *sink_arg;
    bool goaway_sent;
    bool dead;
};

struct loop {
    struct grpc_server *srv;
    struct http_context *ctx;
    pthread_t thread;
    bool started;
    int epfd, evfd;
    struct conn *conns;
    unsigned n_held; /* calls holding a batch the queue refused: retry every RETRY_MS */
    bool quiesced;
    _Atomic(struct pending *) done; /* writer -> loop */
};

struct grpc_server {
    struct http_context *ctx;
    gnutls_certificate_credentials_t cred; /* NULL: cleartext */
    int lfd;
    unsigned port;
    int n_loops;
    struct loop loops[GRPC_LOOPS_MAX];
    _Atomic bool quiesce, stop;
    _Atomic int conns;
};

/* Bytes of message buffers and held batches on all connections (loop threads). */
static _Atomic size_t buffered_bytes;
/* Calls waiting for a commit or whose answer is not yet written (loops); shutdown waits. */
static _Atomic int calls_answering;

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static size_t budget(const struct options *o)
{
    size_t q = (size_t)o->queue_bytes, b = 8 * (size_t)o->max_body_bytes;
    return q > b ? q : b;
}

/* ----- answers ------------------------------------------------------------------------------- */

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

/* grpc-message: percent-encoded UTF-8 (bytes outside 0x20..0x7e, and '%'). */
static void percent_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
        if (*p < 0x20 || *p > 0x7e || *p == '%') {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
}

static void mark_answering(struct call *c)
{
    if (!c->counted) {
        c->counted = true;
        atomic_fetch_add(&calls_answering, 1);
    }
}

/* Trailers-only error answer; the rest of the request is dropped (RST_STREAM NO_ERROR once the
 * answer is out when the client has not finished sending, as gRPC servers do: on_frame_send).
 * http_status is 200 but for a wrong
 * content type (415, PROTOCOL-HTTP2.md). */
static void respond_error(struct call *c, int http_status, enum grpc_code code, const char *msg,
                          bool pushback)
{
    if (c->responded) return;
    c->responded = true;
    if (c->held) { /* refused: the batch must not go in after the client was told so */
        atomic_fetch_sub(&buffered_bytes, c->held_bytes);
        span_batch_destroy(c->held);
        c->held = NULL;
        c->conn->loop->n_held--;
    }
    char status[8], codes[8], enc[1024];
    snprintf(status, sizeof status, "%d", http_status);
    snprintf(codes, sizeof codes, "%d", (int)code);
    percent_encode(msg, enc, sizeof enc);
    nghttp2_nv nv[] = {NV(":status", status),
                       NV("content-type", "application/grpc"),
                       NV("grpc-accept-encoding", "identity,gzip"),
                       NV("grpc-status", codes),
                       NV("grpc-message", enc),
                       NV("grpc-retry-pushback-ms", "1000")};
    size_t n = sizeof nv / sizeof nv[0] - (pushback ? 0 : 1);
    nghttp2_session *s = c->conn->s;
    if (nghttp2_submit_response(s, c->id, nv, n, NULL) != 0) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, c->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    mark_answering(c);
    if (c->m)
        log_ratelimited(LOG_INFO, "grpc-status", "grpc: %s answered status %d: %s", c->path,
                        (int)code, msg);
}

static ssize_t read_out(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    (void)user;
    struct call *c = src->ptr;
    size_t n = c->out_len - c->out_off;
    if (n > len) n = len;
    memcpy(buf, c->out + c->out_off, n);
    c->out_off += n;
    if (c->out_off == c->out_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv tr[] = {NV("grpc-status", "0")};
        if (nghttp2_submit_trailer(s, id, tr, 1) != 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* The OK answer: headers, one message (body, len; may be empty), trailers grpc-status 0. */
static void respond_ok(struct call *c, const void *body, size_t len)
{
    if (c->responded) return;
    c->responded = true;
    c->out = malloc(5 + len);
    if (!c->out) {
        nghttp2_submit_rst_stream(c->conn->s, NGHTTP2_FLAG_NONE, c->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    c->out[0] = 0;
    c->out[1] = (uint8_t)(len >> 24);
    c->out[2] = (uint8_t)(len >> 16);
    c->out[3] = (uint8_t)(len >> 8);
    c->out[4] = (uint8_t)len;
    if (len) memcpy(c->out + 5, body, len);
    c->out_len = 5 + len;
    nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                       NV("grpc-accept-encoding", "identity,gzip")};
    nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_out};
    if (nghttp2_submit_response(c->conn->s, c->id, nv, 3, &dp) != 0) {
        nghttp2_submit_rst_stream(c->conn->s, NGHTTP2_FLAG_NONE, c->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    mark_answering(c);
}

/* Answers a call whose work is done: every message processed, nothing held or pending. */
static void finish_if_ready(struct call *c)
{
    if (c->responded || !c->half_closed || c->held || c->pending || !c->m) return;
    if (c->in_len) {
        respond_error(c, 200, GRPC_INVALID_ARGUMENT, "truncated gRPC message", false);
        return;
    }
    if (!c->m->streaming) {
        if (c->messages != 1) {
            respond_error(c, 200, GRPC_INVALID_ARGUMENT,
                          c->messages ? "more than one request message on a unary call"
                                      : "no request message",
                          false);
            return;
        }
        if (c->committed && c->commit_rc != 0) {
            respond_error(c, 200, GRPC_UNAVAILABLE,
                          c->commit_rc == -ENOSPC ? "database full, retry later"
                                                  : "database error, retry later",
                          true);
            return;
        }
        char *out;
        size_t out_len;
        if (c->rejected && !c->reason[0])
            snprintf(c->reason, sizeof c->reason, "%u %s rejected", c->rejected, c->m->items);
        if (c->m->encode(false, c->rejected, c->reason, &out, &out_len) != 0) {
            respond_error(c, 200, GRPC_UNAVAILABLE, "out of memory", true);
            return;
        }
        respond_ok(c, out, out_len);
        free(out);
        return;
    }
    respond_ok(c, NULL, 0); /* StreamAccessLogsResponse: empty */
}

/* ----- methods ------------------------------------------------------------------------------- */

/* Answers a message its decoder refused with rc (-E2BIG, -ENOMEM, else undecodable; err: the
 * decoder's message or "") and counts the refusal. Returns rc. */
static int answer_decode_error(struct call *c, int rc, const char *err)
{
    enum ingest_protocol proto = c->m->proto;
    if (rc == -E2BIG) {
        selfmetrics_count_reject(proto, REJECT_TOO_LARGE);
        respond_error(c, 200, GRPC_RESOURCE_EXHAUSTED, err[0] ? err : "message too large", false);
    } else if (rc == -ENOMEM) {
        respond_error(c, 200, GRPC_UNAVAILABLE, "out of memory", true);
    } else {
        selfmetrics_count_reject(proto, REJECT_DECODE_ERROR);
        respond_error(c, 200, GRPC_INVALID_ARGUMENT, err[0] ? err : "undecodable message", false);
    }
    return rc;
}

/* Unary methods take one request message: answers a second one INVALID_ARGUMENT. 0 or -EINVAL
 * (answered). */
static int unary_only(struct call *c)
{
    if (c->messages <= 1) return 0;
    respond_error(c, 200, GRPC_INVALID_ARGUMENT, "more than one request message on a unary call",
                  false);
    return -EINVAL;
}

typedef int (*decode_into)(struct call *c, const uint8_t *msg, size_t len,
                           const struct decode_limits *lim, struct span_batch *b, char *err,
                           size_t errlen);

/* Decodes one message into a batch and pushes it. Unary: answers UNAVAILABLE on a full queue.
 * Streaming: keeps the batch (HOLD). */
static int decode_and_push(struct call *c, const uint8_t *msg, size_t len, decode_into dec)
{
    struct http_context *ctx = c->conn->loop->ctx;
    enum ingest_protocol proto = c->m->proto;
    struct span_batch *b = span_batch_create();
    if (!b) {
        respond_error(c, 200, GRPC_UNAVAILABLE, "out of memory", true);
        return -ENOMEM;
    }
    struct decode_limits lim;
    decode_limits_default(&lim);
    char err[512] = "";
    int rc = dec(c, msg, len, &lim, b, err, sizeof err);
    if (rc) {
        span_batch_destroy(b);
        return answer_decode_error(c, rc, err);
    }
    uint32_t accepted = b->n_spans + b->n_logs;
    c->accepted += accepted;
    c->rejected += b->rejected;
    if (b->rejected && !c->reason[0] && b->reject_reason)
        snprintf(c->reason, sizeof c->reason, "%s", b->reject_reason);
    atomic_fetch_add_explicit(&self_metrics.spans_received[proto], accepted + b->rejected,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&self_metrics.spans_rejected[proto][REJECT_INVALID_SPAN], b->rejected,
                              memory_order_relaxed);
    if (accepted == 0) {
        span_batch_destroy(b);
        return 0;
    }
    struct pending *p = NULL;
    if (!c->m->streaming && !ctx->opts->ack_received) {
        p = calloc(1, sizeof *p);
        if (!p) {
            span_batch_destroy(b);
            respond_error(c, 200, GRPC_UNAVAILABLE, "out of memory", true);
            return -ENOMEM;
        }
        p->owner = BATCH_OWNER_GRPC;
        p->loop = c->conn->loop;
        p->call = c;
        b->user = p;
    }
    rc = ingest_queue_push_observed(ctx->queue, b, ctx->observe, ctx->observe_arg);
    if (rc == 0) {
        atomic_fetch_add_explicit(&self_metrics.spans_accepted[proto], accepted,
                                  memory_order_relaxed);
        if (p) {
            c->pending = p;
            mark_answering(c);
        }
        return 0;
    }
    b->user = NULL;
    free(p);
    if (rc == -E2BIG) {
        /* It would never fit: holding it would hold the stream forever. */
        span_batch_destroy(b);
        selfmetrics_count_reject(proto, REJECT_TOO_LARGE);
        respond_error(c, 200, GRPC_RESOURCE_EXHAUSTED,
                      "message would hold more than --queue-size while queued", false);
        return -E2BIG;
    }
    if (rc == -EBUSY && c->m->streaming) {
        size_t bytes = span_batch_bytes(b);
        if (atomic_fetch_add(&buffered_bytes, bytes) + bytes <= budget(ctx->opts)) {
            c->held = b;
            c->held_bytes = bytes;
            c->conn->loop->n_held++;
            log_ratelimited(LOG_DEBUG, "grpc-hold",
                            "grpc: %s: ingest queue full; stream held by flow control", c->path);
            return HOLD;
        }
        atomic_fetch_sub(&buffered_bytes, bytes);
    }
    span_batch_destroy(b);
    selfmetrics_count_reject(proto, REJECT_QUEUE_FULL);
    atomic_fetch_add_explicit(&self_metrics.spans_rejected[proto][REJECT_QUEUE_FULL], accepted,
                              memory_order_relaxed);
    respond_error(c, 200, GRPC_UNAVAILABLE,
                  rc == -EPIPE ? "shutting down" : "ingest queue full, retry later", true);
    return rc;
}

static int dec_trace(struct call *c, const uint8_t *msg, size_t len,
                     const struct decode_limits *lim, struct span_batch *b, char *err,
                     size_t errlen)
{
    (void)c;
    return otlp_decode_traces_proto(msg, len, lim, b, err, errlen);
}

static int dec_als(struct call *c, const uint8_t *msg, size_t len, const struct decode_limits *lim,
                   struct span_batch *b, char *err, size_t errlen)
{
    return envoy_als_decode(msg, len, lim, &c->node, b, err, errlen);
}

static int trace_export(struct call *c, const uint8_t *msg, size_t len)
{
    int rc = unary_only(c);
    return rc ? rc : decode_and_push(c, msg, len, dec_trace);
}

static int als_message(struct call *c, const uint8_t *msg, size_t len)
{
    return decode_and_push(c, msg, len, dec_als);
}

static int dec_logs(struct call *c, const uint8_t *msg, size_t len, const struct decode_limits *lim,
                    struct span_batch *b, char *err, size_t errlen)
{
    (void)c;
    return otlp_decode_logs_proto(msg, len, lim, b, err, errlen);
}

static int logs_export(struct call *c, const uint8_t *msg, size_t len)
{
    int rc = unary_only(c);
    return rc ? rc : decode_and_push(c, msg, len, dec_logs);
}

typedef int (*metrics_decode_fn)(struct call *c, const uint8_t *msg, size_t len,
                                 const struct decode_limits *lim, struct om_batch *b, char *err,
                                 size_t errlen);

/* Metrics are not queued (otel_metrics.h): decode, apply to the store, count. 0 or an error
 * already answered. */
static int decode_and_apply(struct call *c, const uint8_t *msg, size_t len, metrics_decode_fn dec)
{
    struct otel_metrics *store = c->conn->loop->ctx->metrics;
    enum ingest_protocol proto = c->m->proto;
    if (!store) {
        respond_error(c, 200, GRPC_UNIMPLEMENTED, "no metrics store", false);
        return -ENOTSUP;
    }
    struct om_batch *b = om_batch_create();
    if (!b) {
        respond_error(c, 200, GRPC_UNAVAILABLE, "out of memory", true);
        return -ENOMEM;
    }
    struct decode_limits lim;
    decode_limits_default(&lim);
    char err[512] = "";
    int rc = dec(c, msg, len, &lim, b, err, sizeof err);
    struct om_result res = {0};
    if (!rc) rc = selfmetrics_ingest_metrics(store, proto, b, &res);
    om_batch_destroy(b);
    if (rc) return answer_decode_error(c, rc, err);
    c->accepted += (uint32_t)res.accepted;
    c->rejected += (uint32_t)res.rejected;
    if (res.rejected && !c->reason[0]) snprintf(c->reason, sizeof c->reason, "%s", res.reason);
    return 0;
}

static int dec_otlp_metrics(struct call *c, const uint8_t *msg, size_t len,
                            const struct decode_limits *lim, struct om_batch *b, char *err,
                            size_t errlen)
{
    (void)c;
    return otlp_decode_metrics_proto(msg, len, lim, b, err, errlen);
}

static int metrics_export(struct call *c, const uint8_t *msg, size_t len)
{
    int rc = unary_only(c);
    return rc ? rc : decode_and_apply(c, msg, len, dec_otlp_metrics);
}

static int dec_envoy_metrics(struct call *c, const uint8_t *msg, size_t len,
                             const struct decode_limits *lim, struct om_batch *b, char *err,
                             size_t errlen)
{
    return envoy_metrics_decode(msg, len, lim, &c->mnode, b, err, errlen);
}

static int envoy_metrics_message(struct call *c, const uint8_t *msg, size_t len)
{
    return decode_and_apply(c, msg, len, dec_envoy_metrics);
}

/* ----- message framing ----------------------------------------------------------------------- */

/* Retries a held batch. 0 when it went in (or was answered), HOLD while the queue is full. */
static int retry_held(struct call *c)
{
    struct http_context *ctx = c->conn->loop->ctx;
    struct span_batch *b = c->held;
    uint32_t n = b->n_spans + b->n_logs;
    int rc = ingest_queue_push_observed(ctx->queue, b, ctx->observe, ctx->observe_arg);
    if (rc == -EBUSY) return HOLD;
    c->held = NULL;
    c->conn->loop->n_held--;
    atomic_fetch_sub(&buffered_bytes, c->held_bytes);
    if (rc == 0) {
        atomic_fetch_add_explicit(&self_metrics.spans_accepted[c->m->proto], n,
                                  memory_order_relaxed);
        return 0;
    }
    span_batch_destroy(b);
    if (rc == -E2BIG) { /* prepared for storage by this retry, it outgrew the whole queue */
        selfmetrics_count_reject(c->m->proto, REJECT_TOO_LARGE);
        respond_error(c, 200, GRPC_RESOURCE_EXHAUSTED,
                      "message would hold more than --queue-size while queued", false);
        return 0;
    }
    selfmetrics_count_reject(c->m->proto, REJECT_QUEUE_FULL);
    respond_error(c, 200, GRPC_UNAVAILABLE, "shutting down", true);
    return 0;
}

/* Cuts complete messages out of c->in and processes them, then gives back the window of what
 * was taken in, unless a batch is held (see DESIGN). */
static void process(struct call *c)
{
    struct http_context *ctx = c->conn->loop->ctx;
    size_t max = (size_t)ctx->opts->max_body_bytes, off = 0;
    if (c->held && retry_held(c) == HOLD) return;
    while (!c->responded && !c->held && c->in_len - off >= 5) {
        const uint8_t *h = c->in + off;
        uint32_t len = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
        if (h[0] > 1) {
            selfmetrics_count_reject(c->m->proto, REJECT_DECODE_ERROR);
            respond_error(c, 200, GRPC_INVALID_ARGUMENT, "bad gRPC message flags", false);
            break;
        }
        if (len > max) {
            char msg[160];
            snprintf(msg, sizeof msg, "message of %u bytes exceeds --max-body (%zu bytes)", len,
                     max);
            selfmetrics_count_reject(c->m->proto, REJECT_TOO_LARGE);
            respond_error(c, 200, GRPC_RESOURCE_EXHAUSTED, msg, false);
            break;
        }
        if (c->in_len - off - 5 < len) break;
        const uint8_t *msg = h + 5;
        size_t mlen = len;
        uint8_t *inflated = NULL;
        c->messages++;
        if (h[0] == 1) {
            if (c->enc == ENCODING_IDENTITY) {
                selfmetrics_count_reject(c->m->proto, REJECT_DECODE_ERROR);
                respond_error(c, 200, GRPC_INTERNAL, "compressed message without a grpc-encoding",
                              false);
                break;
            }
            int rc = decompress(c->enc, msg, mlen, max, &inflated, &mlen);
            if (rc) {
                selfmetrics_count_reject(c->m->proto,
                                         rc == -E2BIG ? REJECT_TOO_LARGE : REJECT_DECODE_ERROR);
                respond_error(c, 200,
                              rc == -E2BIG ? GRPC_RESOURCE_EXHAUSTED : GRPC_INVALID_ARGUMENT,
                              rc == -E2BIG ? "decompressed message exceeds --max-body"
                                           : "corrupt gzip message: cannot decompress",
                              false);
                break;
            }
            msg = inflated;
        }
        int rc = c->m->on_message(c, msg, mlen);
        free(inflated);
        off += 5 + (size_t)len;
        if (rc < 0) break;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->responded) c->in_len = 0;
    if (!c->held && c->unconsumed) {
        nghttp2_session_consume(c->conn->s, c->id, c->unconsumed);
        c->unconsumed = 0;
    }
    finish_if_ready(c);
}

/* ----- nghttp2 callbacks --------------------------------------------------------------------- */

static void call_free(struct call *c)
{
    struct conn *k = c->conn;
    if (c->prev)
        c->prev->next = c->next;
    else
        k->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->pending) c->pending->call = NULL; /* the loop frees it when the writer returns it */
    if (c->held) {
        atomic_fetch_sub(&buffered_bytes, c->held_bytes);
        span_batch_destroy(c->held);
        k->loop->n_held--;
    }
    if (c->counted) atomic_fetch_sub(&calls_answering, 1);
    atomic_fetch_sub(&buffered_bytes, c->in_cap);
    free(c->in);
    free(c->out);
    free(c);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct conn *k = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    struct call *c = calloc(1, sizeof *c);
    if (!c) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM INTERNAL_ERROR */
    c->conn = k;
    c->id = f->hd.stream_id;
    c->next = k->calls;
    if (k->calls) k->calls->prev = c;
    k->calls = c;
    nghttp2_session_set_stream_user_data(s, c->id, c);
    return 0;
}

static void copy_value(char *dst, size_t cap, const uint8_t *v, size_t n)
{
    if (n >= cap) n = cap - 1; /* longer values are wrong anyway: they fail the checks */
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    struct call *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!c) return 0;
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
    if (IS(":path"))
        copy_value(c->path, sizeof c->path, value, valuelen);
    else if (IS(":method"))
        c->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    else if (IS("content-type"))
        copy_value(c->content_type, sizeof c->content_type, value, valuelen);
    else if (IS("grpc-encoding"))
        copy_value(c->encoding, sizeof c->encoding, value, valuelen);
    else if (IS("authorization"))
        copy_value(c->auth, sizeof c->auth, value, valuelen);
#undef IS
    return 0;
}

/* The request headers are complete: route and check them. */
static void on_request(struct call *c)
{
    struct http_context *ctx = c->conn->loop->ctx;
    c->headers_done = true;
    const char *ct = c->content_type;
    /* application/grpc or application/grpc+proto, parameters allowed; +json and others are
     * encodings we do not decode. */
    const char *sub = ct + 16;
    if (strncmp(sub, "+proto", 6) == 0) sub += 6;
    if (strncmp(ct, "application/grpc", 16) != 0 || (*sub && *sub != ';' && *sub != ' ')) {
        char msg[128];
        snprintf(msg, sizeof msg, "content-type '%s': want application/grpc or +proto", ct);
        respond_error(c, 415, GRPC_INTERNAL, msg, false);
        return;
    }
    if (!c->post) {
        respond_error(c, 405, GRPC_UNIMPLEMENTED, "gRPC calls are POST", false);
        return;
    }
    const struct method *m = NULL;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(c->path, methods[i].path) == 0) m = &methods[i];
    if (!m) {
        char msg[256];
        snprintf(msg, sizeof msg, "unknown method %s", c->path);
        respond_error(c, 200, GRPC_UNIMPLEMENTED, msg, false);
        return;
    }
    if (ctx->auth && !auth_check(ctx->auth, AUTH_INGEST, c->auth[0] ? c->auth : NULL)) {
        respond_error(c, 200, GRPC_UNAUTHENTICATED, "missing or invalid bearer token", false);
        return;
    }
    c->enc = encoding_parse(c->encoding);
    if (c->enc == ENCODING_UNKNOWN || c->enc == ENCODING_ZSTD) {
        char msg[128];
        snprintf(msg, sizeof msg, "grpc-encoding '%s' is not supported: use gzip or identity",
                 c->encoding);
        respond_error(c, 200, GRPC_UNIMPLEMENTED, msg, false);
        return;
    }
    c->m = m;
    atomic_fetch_add_explicit(&self_metrics.requests[m->proto], 1, memory_order_relaxed);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct conn *k = user;
    k->ping_us = 0; /* any frame shows the peer is alive */
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    struct call *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!c) return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) on_request(c);
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        c->half_closed = true;
        if (c->m && !c->responded) process(c);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    (void)user;
    struct call *c = nghttp2_session_get_stream_user_data(s, id);
    if (!c || !c->m || c->responded) {
        nghttp2_session_consume(s, id, len); /* dropped: give the window back at once */
        return 0;
    }
    struct http_context *ctx = c->conn->loop->ctx;
    if (c->in_len + len > c->in_cap) {
        /* Room for what arrived; a message needs at most --max-body + 5, plus what the window
         * lets arrive behind it. */
        size_t cap = c->in_cap ? c->in_cap : 16384;
        while (cap < c->in_len + len)
            cap *= 2;
        size_t grow = cap - c->in_cap;
        if (atomic_fetch_add(&buffered_bytes, grow) + grow > budget(ctx->opts)) {
            atomic_fetch_sub(&buffered_bytes, grow);
            selfmetrics_count_reject(c->m->proto, REJECT_BODY_BUDGET);
            respond_error(c, 200, GRPC_UNAVAILABLE, "too many messages in flight, retry later",
                          true);
            nghttp2_session_consume(s, id, len + c->unconsumed);
            c->unconsumed = 0;
            return 0;
        }
        uint8_t *p = realloc(c->in, cap);
        if (!p) {
            atomic_fetch_sub(&buffered_bytes, grow);
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        c->in = p;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, data, len);
    c->in_len += len;
    c->unconsumed += len;
    if (!c->held) process(c);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *user)
{
    (void)error_code;
    (void)user;
    struct call *c = nghttp2_session_get_stream_user_data(s, id);
    if (c) {
        /* Window still held by this stream belongs to the connection too: give it back. */
        if (c->unconsumed) nghttp2_session_consume_connection(s, c->unconsumed);
        call_free(c);
    }
    return 0;
}

/* After the frame that ends our side of a call the client is still sending on: RST_STREAM
 * NO_ERROR (PROTOCOL-HTTP2.md), so it stops sending what nobody will read. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    (void)user;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct call *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (c && !c->half_closed)
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, c->id, NGHTTP2_NO_ERROR);
    return 0;
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)s;
    (void)flags;
    struct conn *k = user;
    if (k->fd < 0) { /* in-memory connection */
        if (k->sink) k->sink(k->sink_arg, data, len);
        return (ssize_t)len;
    }
    ssize_t n;
    if (k->tls) {
        if (!k->handshake_done) return NGHTTP2_ERR_WOULDBLOCK; /* SETTINGS wait for it */
        /* After AGAIN GnuTLS wants the same call again; nghttp2 offers the same bytes again, so
         * resuming with (NULL, 0) sends the rest of them. */
        n = k->tls_send_again ? gnutls_record_send(k->tls, NULL, 0)
                              : gnutls_record_send(k->tls, data, len);
        k->tls_send_again = n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED;
        if (k->tls_send_again) {
            n = -1;
            errno = EAGAIN;
        } else if (n < 0) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    } else {
        n = send(k->fd, data, len, MSG_NOSIGNAL);
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!k->out_blocked) {
                k->out_blocked = true;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = k};
                epoll_ctl(k->loop->epfd, EPOLL_CTL_MOD, k->fd, &ev);
            }
            return NGHTTP2_ERR_WOULDBLOCK;
        }
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    k->last_tx_us = mono_us();
    return n;
}

/* ----- connections --------------------------------------------------------------------------- */

static struct conn *conn_create(struct loop *l, int fd)
{
    struct conn *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->fd = fd;
    k->loop = l;
    if (fd >= 0 && l->srv->cred) {
        static const gnutls_datum_t h2 = {(unsigned char *)"h2", 2};
        if (gnutls_init(&k->tls, GNUTLS_SERVER | GNUTLS_NONBLOCK) != GNUTLS_E_SUCCESS) {
            k->tls = NULL;
            goto fail;
        }
        if (gnutls_set_default_priority(k->tls) != GNUTLS_E_SUCCESS ||
            gnutls_credentials_set(k->tls, GNUTLS_CRD_CERTIFICATE, l->srv->cred) !=
                GNUTLS_E_SUCCESS ||
            gnutls_alpn_set_protocols(k->tls, &h2, 1, GNUTLS_ALPN_MANDATORY) != GNUTLS_E_SUCCESS)
            goto fail;
        gnutls_transport_set_int(k->tls, fd);
    }
    k->last_rx_us = k->last_tx_us = mono_us();
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0) goto fail;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        goto fail;
    }
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, 1000); /* a PING/SETTINGS flood that never reads */
    int rc = nghttp2_session_server_new2(&k->s, cb, k, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rc != 0) goto fail;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
    };
    if (nghttp2_submit_settings(k->s, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
        nghttp2_session_set_local_window_size(k->s, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0)
        goto fail;
    if (l->quiesced) {
        nghttp2_submit_goaway(k->s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        k->goaway_sent = true;
    }
    k->next = l->conns;
    if (l->conns) l->conns->prev = k;
    l->conns = k;
    return k;
fail:
    if (k->s) nghttp2_session_del(k->s);
    if (k->tls) gnutls_deinit(k->tls);
    free(k);
    return NULL;
}

static void conn_destroy(struct conn *k)
{
    struct loop *l = k->loop;
    if (k->prev)
        k->prev->next = k->next;
    else if (l->conns == k)
        l->conns = k->next;
    if (k->next) k->next->prev = k->prev;
    while (k->calls)
        call_free(k->calls);
    nghttp2_session_del(k->s); /* calls no callback */
    if (k->tls) {
        if (k->handshake_done) gnutls_bye(k->tls, GNUTLS_SHUT_WR); /* best effort, no wait */
        gnutls_deinit(k->tls);
    }
    if (k->fd >= 0) {
        close(k->fd);
        atomic_fetch_sub(&l->srv->conns, 1);
    }
    free(k);
}

/* Writes what the session has to send; false when the connection is finished. */
static bool conn_flush(struct conn *k)
{
    if (k->dead) return false;
    if (nghttp2_session_send(k->s) != 0) return false;
    if (!nghttp2_session_want_read(k->s) && !nghttp2_session_want_write(k->s)) return false;
    return true;
}

static bool conn_feed(struct conn *k, const uint8_t *data, size_t len)
{
    k->last_rx_us = mono_us();
    ssize_t n = nghttp2_session_mem_recv(k->s, data, len);
    if (n < 0) {
        log_ratelimited(LOG_INFO, "grpc-proto", "grpc: closing a connection: %s",
                        nghttp2_strerror((int)n));
        /* nghttp2 has queued a GOAWAY naming the error where it could: send it, then close. */
        nghttp2_session_send(k->s);
        k->dead = true;
        return false;
    }
    return conn_flush(k);
}

/* One step of the TLS handshake; true once it is done (and the session's first frames sent). */
static bool tls_handshake(struct conn *k)
{
    int rc = gnutls_handshake(k->tls);
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
        bool out = gnutls_record_get_direction(k->tls) == 1;
        if (out != k->out_blocked) {
            k->out_blocked = out;
            struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = k};
            epoll_ctl(k->loop->epfd, EPOLL_CTL_MOD, k->fd, &ev);
        }
        return false;
    }
    if (rc < 0) {
        log_ratelimited(LOG_INFO, "grpc-tls", "grpc: TLS handshake failed: %s",
                        gnutls_strerror(rc));
        k->dead = true;
        return false;
    }
    k->handshake_done = true;
    k->last_rx_us = mono_us();
    if (!conn_flush(k)) k->dead = true;
    return !k->dead;
}

static void conn_readable(struct conn *k)
{
    uint8_t buf[16384];
    if (k->tls && !k->handshake_done && !tls_handshake(k)) return;
    /* Bounded (let the other connections of the loop run), but for bytes GnuTLS has already
     * taken off the socket: epoll would not report those again. */
    for (int i = 0; i < 64 || (k->tls && gnutls_record_check_pending(k->tls)); i++) {
        ssize_t n;
        if (k->tls) {
            n = gnutls_record_recv(k->tls, buf, sizeof buf);
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) return;
            if (n < 0) n = 0; /* any other error ends the connection */
        } else {
            n = recv(k->fd, buf, sizeof buf, 0);
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            k->dead = true;
            return;
        }
        if (n < 0) return;
        if (!conn_feed(k, buf, (size_t)n)) return;
    }
}

/* ----- event loops --------------------------------------------------------------------------- */

static void accept_all(struct loop *l)
{
    struct grpc_server *srv = l->srv;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (atomic_fetch_add(&srv->conns, 1) >= l->ctx->opts->max_connections) {
            atomic_fetch_sub(&srv->conns, 1);
            log_ratelimited(LOG_WARN, "grpc-maxconn",
                            "grpc: --max-connections reached; connection refused");
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *k = conn_create(l, fd);
        if (!k) {
            atomic_fetch_sub(&srv->conns, 1);
            close(fd);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 || !conn_flush(k)) conn_destroy(k);
    }
}

/* Answers the calls whose commit the writer has reported. */
static void drain_done(struct loop *l)
{
    struct pending *p = atomic_exchange(&l->done, NULL);
    while (p) {
        struct pending *next = p->next;
        struct call *c = p->call;
        if (c) {
            c->pending = NULL;
            c->committed = true;
            c->commit_rc = p->rc;
            if (p->rc != 0) {
                atomic_fetch_add_explicit(
                    &self_metrics.spans_rejected[c->m->proto][REJECT_STORE_FAILED], c->accepted,
                    memory_order_relaxed);
                selfmetrics_count_reject(c->m->proto, REJECT_STORE_FAILED);
            }
            finish_if_ready(c);
        }
        free(p);
        p = next;
    }
}

static void quiesce_conns(struct loop *l)
{
    if (!l->quiesced) {
        l->quiesced = true;
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->srv->lfd, NULL);
    }
    for (struct conn *k = l->conns; k; k = k->next) {
        if (k->goaway_sent) continue;
        k->goaway_sent = true;
        nghttp2_submit_goaway(k->s, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(k->s), NGHTTP2_NO_ERROR, NULL,
                              0);
    }
}

/* Once per wake: retries held batches, keepalive, idle and stalled connections, and flushes. */
static void sweep(struct loop *l, int64_t now)
{
    int64_t idle = l->ctx->opts->idle_timeout_us;
    struct conn *next;
    for (struct conn *k = l->conns; k; k = next) {
        next = k->next;
        if (l->n_held)
            for (struct call *c = k->calls, *cn; c; c = cn) {
                cn = c->next;
                if (c->held) process(c);
            }
        if (k->out_blocked && now - k->last_tx_us > idle) k->dead = true; /* never reads */
        if (now - k->last_rx_us > idle) k->dead = true; /* silent, PING unanswered */
        if (!k->dead && now - k->last_rx_us > idle / 2 && !k->ping_us) {
            k->ping_us = now;
            nghttp2_submit_ping(k->s, NGHTTP2_FLAG_NONE, NULL);
        }
        if (!conn_flush(k)) {
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, k->fd, NULL);
            conn_destroy(k);
        }
    }
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    pthread_setname_np(pthread_self(), "ms-grpc");
    struct epoll_event evs[64];
    int64_t last_sweep = mono_us();
    while (!atomic_load(&l->srv->stop)) {
        int n = epoll_wait(l->epfd, evs, 64, l->n_held ? RETRY_MS : 1000);
        if (atomic_load(&l->srv->quiesce)) quiesce_conns(l);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (!p) continue;
            if (p == l) {
                uint64_t v;
                if (read(l->evfd, &v, sizeof v) < 0) { /* nothing: spurious wake */
                }
                drain_done(l);
            } else if (p == l->srv) {
                accept_all(l);
            } else {
                struct conn *k = p;
                if (evs[i].events & EPOLLOUT && k->out_blocked) {
                    k->out_blocked = false;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
                    epoll_ctl(l->epfd, EPOLL_CTL_MOD, k->fd, &ev);
                }
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR) ||
                    (k->tls && !k->handshake_done))
                    conn_readable(k);
                if (k->dead || !conn_flush(k)) {
                    epoll_ctl(l->epfd, EPOLL_CTL_DEL, k->fd, NULL);
                    /* Later events of this batch may name k: mark them stale. */
                    for (int j = i + 1; j < n; j++)
                        if (evs[j].data.ptr == k) evs[j].data.ptr = NULL;
                    conn_destroy(k);
                }
            }
        }
        int64_t now = mono_us();
        if (n == 0 || now - last_sweep >= (l->n_held ? RETRY_MS * 1000 : 1000000)) {
            last_sweep = now;
            sweep(l, now);
        } else {
            /* Answers submitted by drain_done go out now. */
            struct conn *next;
            for (struct conn *k = l->conns; k; k = next) {
                next = k->next;
                if (nghttp2_session_want_write(k->s) && !k->out_blocked && !conn_flush(k)) {
                    epoll_ctl(l->epfd, EPOLL_CTL_DEL, k->fd, NULL);
                    conn_destroy(k);
                }
            }
        }
    }
    drain_done(l);
    while (l->conns)
        conn_destroy(l->conns);
    return NULL;
}

/* ----- server -------------------------------------------------------------------------------- */

void grpc_batch_done(void *user, int rc)
{
    struct pending *p = user;
    struct loop *l = p->loop;
    p->rc = rc;
    struct pending *head = atomic_load(&l->done);
    do
        p->next = head;
    while (!atomic_compare_exchange_weak(&l->done, &head, p));
    uint64_t one = 1;
    if (write(l->evfd, &one, sizeof one) < 0) { /* the counter cannot overflow in practice */
    }
}

/* "host:port" / "[v6]:port" / ":port" -> a bound, listening, non-blocking socket; -1 (logged). */
static int listen_on(const char *addr)
{
    struct addrinfo *res;
    if (listen_addr_resolve(addr, SOCK_STREAM, &res) != 0) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd >= 0 && (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

struct grpc_server *grpc_server_start(const char *addr, struct http_context *ctx)
{
    struct grpc_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ctx = ctx;
    if (ctx->tls_cert_pem) {
        gnutls_datum_t cert = {(unsigned char *)ctx->tls_cert_pem,
                               (unsigned)strlen(ctx->tls_cert_pem)};
        gnutls_datum_t key = {(unsigned char *)ctx->tls_key_pem,
                              (unsigned)strlen(ctx->tls_key_pem)};
        int rc = gnutls_certificate_allocate_credentials(&s->cred);
        if (rc == GNUTLS_E_SUCCESS)
            rc = gnutls_certificate_set_x509_key_mem(s->cred, &cert, &key, GNUTLS_X509_FMT_PEM);
        if (rc != GNUTLS_E_SUCCESS) {
            log_msg(LOG_ERROR, "grpc: --tls-cert/--tls-key: %s", gnutls_strerror(rc));
            if (s->cred) gnutls_certificate_free_credentials(s->cred);
            free(s);
            return NULL;
        }
    }
    s->lfd = listen_on(addr);
    if (s->lfd < 0) {
        log_msg(LOG_ERROR, "grpc: cannot listen on %s: %s", addr, strerror(errno));
        if (s->cred) gnutls_certificate_free_credentials(s->cred);
        free(s);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(s->lfd, (struct sockaddr *)&ss, &sl) == 0)
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    s->n_loops =
        ctx->opts->http_threads < GRPC_LOOPS_MAX ? (int)ctx->opts->http_threads : GRPC_LOOPS_MAX;
    if (s->n_loops < 1) s->n_loops = 1;
    for (int i = 0; i < s->n_loops; i++) {
        struct loop *l = &s->loops[i];
        l->srv = s;
        l->ctx = ctx;
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
        struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = s};
        if (l->epfd < 0 || l->evfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0 ||
            epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->lfd, &lev) != 0 ||
            pthread_create(&l->thread, NULL, loop_main, l) != 0) {
            log_msg(LOG_ERROR, "grpc: cannot start event loop %d: %s", i, strerror(errno));
            grpc_server_stop(s);
            return NULL;
        }
        l->started = true;
    }
    log_msg(LOG_INFO, "grpc: otlp-grpc listening on %s (port %u, %d event loops%s)", addr, s->port,
            s->n_loops, s->cred ? ", TLS" : "");
    return s;
}

static void wake_all(struct grpc_server *s)
{
    uint64_t one = 1;
    for (int i = 0; i < s->n_loops; i++)
        if (s->loops[i].evfd > 0 && write(s->loops[i].evfd, &one, sizeof one) < 0) {
        }
}

void grpc_server_quiesce(struct grpc_server *s)
{
    if (!s) return;
    atomic_store(&s->quiesce, true);
    wake_all(s);
}

void grpc_wait_idle(int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms && atomic_load(&calls_answering) > 0; waited += 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void grpc_server_stop(struct grpc_server *s)
{
    if (!s) return;
    atomic_store(&s->stop, true);
    wake_all(s);
    for (int i = 0; i < s->n_loops; i++) {
        struct loop *l = &s->loops[i];
        if (l->started) pthread_join(l->thread, NULL);
        if (l->epfd > 0) close(l->epfd);
        if (l->evfd > 0) close(l->evfd);
    }
    close(s->lfd);
    if (s->cred) gnutls_certificate_free_credentials(s->cred);
    free(s);
}

unsigned grpc_server_port(const struct grpc_server *s)
{
    return s->port;
}

/* ----- in-memory connection (fuzz target) ---------------------------------------------------- */

struct grpc_conn {
    struct grpc_server srv;
    struct conn *k;
};

struct grpc_conn *grpc_conn_open_mem(struct http_context *ctx, grpc_output_fn out, void *arg)
{
    struct grpc_conn *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->srv.ctx = ctx;
    g->srv.lfd = -1;
    g->srv.n_loops = 1;
    g->srv.loops[0].srv = &g->srv;
    g->srv.loops[0].ctx = ctx;
    g->srv.loops[0].epfd = g->srv.loops[0].evfd = -1;
    g->k = conn_create(&g->srv.loops[0], -1);
    if (!g->k) {
        free(g);
        return NULL;
    }
    g->k->sink = out;
    g->k->sink_arg = arg;
    return g;
}

size_t grpc_conn_unconsumed(const struct grpc_conn *g)
{
    size_t n = 0;
    for (const struct call *c = g->k->calls; c; c = c->next)
        n += c->unconsumed;
    return n;
}

unsigned grpc_conn_held(const struct grpc_conn *g)
{
    unsigned n = 0;
    for (const struct call *c = g->k->calls; c; c = c->next)
        n += c->held != NULL;
    return n;
}

int grpc_conn_feed(struct grpc_conn *g, const uint8_t *data, size_t len)
{
    if (g->k->dead) return -EPROTO;
    if (!conn_feed(g->k, data, len)) g->k->dead = true;
    drain_done(&g->srv.loops[0]);
    for (struct call *c = g->k->calls, *cn; c; c = cn) { /* one retry round, as a tick would */
        cn = c->next;
        if (c->held) process(c);
    }
    if (!g->k->dead && !conn_flush(g->k)) g->k->dead = true;
    return g->k->dead ? -EPROTO : 0;
}

void grpc_conn_close_mem(struct grpc_conn *g)
{
    if (!g) return;
    drain_done(&g->srv.loops[0]);
    conn_destroy(g->k);
    free(g);
}
