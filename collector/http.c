/*
 * http.c: the HTTP/1.1 listeners (libmicrohttpd) and the route table every listener serves.
 *
 * DESIGN
 * - One MHD daemon per listener, each with its own pool of worker threads (epoll). Every listener
 *   serves every route, so one port is enough for a user who wants one.
 * - Ingest (POST /v1/traces) runs entirely on the worker thread that read the request: check the
 *   headers (415/413 before reading the body), collect the body up to --max-body, inflate it
 *   with the same cap, decode into a span batch, push the batch to the lock-free ingest queue,
 *   answer. Nothing on this path takes a lock shared with other requests.
 * - Reads (GET /api/...) go to the query module, which borrows a read-only SQLite connection.
 * - Status codes live in one place: respond_status() below maps each outcome to OTLP/HTTP's
 *   codes (400 never retried by clients; 413; 415; 503 + Retry-After when the queue is full).
 * - Threads: MHD worker threads only. Shared state: the queue and the self_metrics atomics.
 */
#include "accesslog.h"
#include "collector_int.h"
#include "otel_metrics.h"
#include "otlp.h"
#include "query.h"
#include "red.h"
#include "web_assets.h"
#include "zipkin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

struct http_server {
    struct MHD_Daemon *mhd;
    struct http_context *ctx;
    char *name;
    unsigned port;
};

/* A span decoder: the signature of otlp_decode_traces_proto and its siblings (see otlp.h). */
typedef int (*decode_fn)(const uint8_t *body, size_t len, const struct decode_limits *lim,
                         struct span_batch *out, char *err, size_t errlen);

/* How a protocol answers: OTLP/HTTP (200 + ExportTraceServiceResponse, or for logs
 * ExportLogsServiceResponse; errors as google.rpc.Status), Zipkin (202, errors as plain text) or counts (200 +
 * {"accepted":N,"rejected":M,"error":...}, errors as plain text; access logs). */
enum answer_style { ANSWER_OTLP, ANSWER_OTLP_LOGS, ANSWER_ZIPKIN, ANSWER_COUNTS };

/* One span-ingest endpoint. Adding a protocol is one row here plus its decoders. */
struct ingest_route {
    const char *path;
    decode_fn decode_proto; /* application/x-protobuf */
    decode_fn decode_json;  /* application/json */
    enum ingest_protocol proto_label, json_label;
    enum answer_style style;
    bool ndjson_ok; /* application/x-ndjson is accepted too, and goes to decode_json */
    bool metrics;   /* OTLP metrics: decoded and applied to the metric store (handle_metrics),
                       not queued; decode_* are NULL */
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Requests between their first handler call and their completion callback, on all listeners
 * (HTTP threads and the writer's resumes touch it). Shutdown waits for it to reach 0. */
static _Atomic int requests_in_flight;

static const struct ingest_route ingest_routes[] = {
    {"/v1/traces", otlp_decode_traces_proto, otlp_decode_traces_json, PROTO_OTLP_HTTP_PROTOBUF,
     PROTO_OTLP_HTTP_JSON, ANSWER_OTLP},
    {"/api/v2/spans", zipkin_decode_spans_proto, zipkin_decode_spans_json, PROTO_ZIPKIN_PROTOBUF,
     PROTO_ZIPKIN_JSON, ANSWER_ZIPKIN},
    {"/api/v1/accesslogs", NULL, accesslog_decode_json, PROTO_ACCESSLOG_JSON, PROTO_ACCESSLOG_JSON,
     ANSWER_COUNTS, true},
    {"/v1/logs", otlp_decode_logs_proto, otlp_decode_logs_json, PROTO_OTLP_LOGS_PROTOBUF,
     PROTO_OTLP_LOGS_JSON, ANSWER_OTLP_LOGS},
    {"/v1/metrics", NULL, NULL, PROTO_OTLP_METRICS_PROTOBUF, PROTO_OTLP_METRICS_JSON, ANSWER_OTLP,
     false, true},
};

/* Per-request state, from the first call of the access handler to the completion callback. */
struct request {
    enum batch_owner owner; /* first member: BATCH_OWNER_HTTP (see writer's batch_done) */
    const struct ingest_route *route; /* NULL: not an ingest request */
    bool json;                        /* request content type is JSON (answer in kind) */
    enum content_encoding encoding;
    bool too_large;     /* body exceeded the cap: drain and answer 413 */
    bool too_busy;      /* all request bodies together exceed their budget: drain, answer 503 */
    int64_t started_us; /* monotonic time of the first handler call (headers complete) */
    uint8_t *body;
    size_t len, cap;
    /* --ack=committed: the request is suspended from the push until the writer's commit. */
    struct MHD_Connection *conn;
    bool waiting;          /* suspended; the next handler call answers */
    _Atomic int commit_rc; /* set by the writer (http_batch_done) or on a failed push */
    enum ingest_protocol proto;
    uint32_t accepted, rejected;
    char reason[256]; /* first partial-success refusal */
};

/* Bytes of request bodies buffered by all connections together (HTTP threads). Bounded by the
 * body budget (body_budget()): many clients each sending up to --max-body slowly cannot
 * make meshscope hold more than that; the one over budget gets 503 + Retry-After. */
static _Atomic size_t body_bytes;

/* The body budget: --queue-size, and never less than 8 bodies of --max-body (README: memory). */
static size_t body_budget(const struct options *o)
{
    size_t q = (size_t)o->queue_bytes, b = 8 * (size_t)o->max_body_bytes;
    return q > b ? q : b;
}

static void release_body(struct request *req)
{
    atomic_fetch_sub(&body_bytes, req->cap);
    free(req->body);
    req->body = NULL;
    req->len = req->cap = 0;
}

/* Largest OTLP request the daemon reads before decompression; equal to --max-body (an honest
 * compressed body is never larger than what it inflates to, give or take a few header bytes). */

static enum MHD_Result send_response(struct MHD_Connection *conn, unsigned status,
                                     const char *content_type, char *body, size_t len,
                                     int retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (content_type) MHD_add_response_header(r, "Content-Type", content_type);
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    char *copy = strdup(text);
    return send_response(conn, status, "text/plain; charset=utf-8", copy, copy ? strlen(copy) : 0,
                         0);
}

/* Error answer for OTLP: a google.rpc.Status in the request's content type (JSON when unknown).
 * grpc codes: 3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED, 14 UNAVAILABLE. */
static enum MHD_Result respond_status(struct MHD_Connection *conn, unsigned http_status, bool json,
                                      int grpc_code, const char *message, int retry_after)
{
    char *body;
    size_t len;
    if (grpc_code < 0) { /* Zipkin style: the message as text */
        if (asprintf(&body, "%s\n", message) < 0) return MHD_NO;
        return send_response(conn, http_status, "text/plain; charset=utf-8", body, strlen(body),
                             retry_after);
    }
    if (otlp_encode_status(json, grpc_code, message, &body, &len) != 0)
        return send_text(conn, 500, "out of memory");
    return send_response(conn, http_status, json ? "application/json" : "application/x-protobuf",
                         body, len, retry_after);
}

/* "application/json; charset=utf-8" -> matches "application/json". */
static bool media_type_is(const char *header, const char *want)
{
    size_t n = strlen(want);
    if (strncasecmp(header, want, n) != 0) return false;
    char c = header[n];
    return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

/* gRPC status code for an OTLP answer, or -1 (plain text) for Zipkin. */
static int code_for(const struct request *req, int grpc_code)
{
    return req->route->style == ANSWER_OTLP || req->route->style == ANSWER_OTLP_LOGS ? grpc_code
                                                                                     : -1;
}

/* The answer to an ingest request whose batch was pushed (or refused by the queue, or committed
 * or not): 2xx only for what is stored (or, under --ack=received, queued). */
static enum MHD_Result answer_ingest(struct MHD_Connection *conn, struct request *req)
{
    int rc = atomic_load(&req->commit_rc);
    if (rc == -EBUSY)
        return respond_status(conn, 503, req->json, code_for(req, 14),
                              "ingest queue full, retry later", 1);
    if (rc == -EPIPE)
        return respond_status(conn, 503, req->json, code_for(req, 14), "shutting down", 1);
    if (rc == -E2BIG) /* the queue's bound, once the batch was prepared for storage */
        return respond_status(conn, 413, req->json, code_for(req, 3),
                              "request, encoded for storage, is more than the whole ingest "
                              "queue (--queue-size) holds: send smaller requests",
                              0);
    if (rc != 0)
        return respond_status(
            conn, 503, req->json, code_for(req, 14),
            rc == -ENOSPC ? "database full, retry later" : "database error, retry later", 5);
    if (req->route->style == ANSWER_COUNTS) {
        char *body;
        size_t blen;
        if (accesslog_encode_response(req->accepted, req->rejected, req->reason, &body, &blen))
            return send_text(conn, 500, "out of memory");
        return send_response(conn, 200, "application/json", body, blen, 0);
    }
    if (req->route->style == ANSWER_ZIPKIN)
        return send_response(conn, 202, NULL, NULL, 0, 0); /* Zipkin: accepted, empty body */
    char *out;
    size_t out_len;
    bool logs = req->route->style == ANSWER_OTLP_LOGS;
    if (req->rejected && !req->reason[0])
        snprintf(req->reason, sizeof req->reason, "%u %s rejected", req->rejected,
                 logs ? "log records" : "spans");
    if ((logs ? otlp_encode_export_logs_response : otlp_encode_export_response)(
            req->json, req->rejected, req->reason, &out, &out_len) != 0)
        return send_text(conn, 500, "out of memory");
    return send_response(conn, 200, req->json ? "application/json" : "application/x-protobuf", out,
                         out_len, 0);
}

/* POST /v1/metrics, once the body is whole and inflated: decode, apply to the metric store,
 * answer 200 with partial success. No queue, no SQLite: metrics live in memory (README).
 * Consumes inflated (may be NULL) and the request body on every path. */
static enum MHD_Result handle_metrics(struct http_context *ctx, struct MHD_Connection *conn,
                                      struct request *req, enum ingest_protocol proto,
                                      const uint8_t *body, size_t len, uint8_t *inflated)
{
    char msg[512] = "";
    struct om_batch *batch = ctx->metrics ? om_batch_create() : NULL;
    int rc = !ctx->metrics ? -ENOTSUP : !batch ? -ENOMEM : 0;
    if (!rc) {
        struct decode_limits lim;
        decode_limits_default(&lim);
        rc = (req->json ? otlp_decode_metrics_json : otlp_decode_metrics_proto)(body, len, &lim,
                                                                                batch, msg,
                                                                                sizeof msg);
    }
    free(inflated);
    release_body(req);
    struct om_result res = {0};
    if (!rc) rc = selfmetrics_ingest_metrics(ctx->metrics, proto, batch, &res);
    om_batch_destroy(batch);
    if (rc == -ENOTSUP) return send_text(conn, 404, "not found\n");
    if (rc == -E2BIG) {
        selfmetrics_count_reject(proto, REJECT_TOO_LARGE);
        return respond_status(conn, 413, req->json, 3, msg[0] ? msg : "request too large", 0);
    }
    if (rc == -ENOMEM)
        return respond_status(conn, 503, req->json, 14, "out of memory", 1);
    if (rc) {
        selfmetrics_count_reject(proto, REJECT_DECODE_ERROR);
        log_ratelimited(LOG_INFO, "http-decode", "http: /v1/metrics (%s) request refused: %s",
                        req->json ? "JSON" : "protobuf", msg);
        return respond_status(conn, 400, req->json, 3, msg[0] ? msg : "undecodable request", 0);
    }
    if (res.rejected && !res.reason[0])
        snprintf(res.reason, sizeof res.reason, "%llu data points rejected",
                 (unsigned long long)res.rejected);
    char *out;
    size_t out_len;
    if (otlp_encode_metrics_response(req->json, res.rejected, res.reason, &out, &out_len) != 0)
        return send_text(conn, 500, "out of memory");
    return send_response(conn, 200, req->json ? "application/json" : "application/x-protobuf", out,
                         out_len, 0);
}

static enum MHD_Result handle_ingest(struct http_context *ctx, struct MHD_Connection *conn,
                                     struct request *req)
{
    const struct ingest_route *route = req->route;
    enum ingest_protocol proto = req->json ? route->json_label : route->proto_label;
    atomic_fetch_add_explicit(&self_metrics.requests[proto], 1, memory_order_relaxed);
    char msg[512];
    if (req->too_busy) {
        selfmetrics_count_reject(proto, REJECT_BODY_BUDGET);
        return respond_status(conn, 503, req->json, code_for(req, 14),
                              "too many request bodies in flight, retry later", 1);
    }
    if (req->too_large) {
        selfmetrics_count_reject(proto, REJECT_TOO_LARGE);
        snprintf(msg, sizeof msg, "request body exceeds --max-body (%lld bytes)",
                 (long long)ctx->opts->max_body_bytes);
        return respond_status(conn, 413, req->json, code_for(req, 3), msg, 0);
    }

    const uint8_t *body = req->body ? req->body : (const uint8_t *)"";
    size_t len = req->len;
    uint8_t *inflated = NULL;
    if (req->encoding != ENCODING_IDENTITY) {
        int rc = decompress(req->encoding, body, len, (size_t)ctx->opts->max_body_bytes, &inflated,
                            &len);
        if (rc == -E2BIG) {
            selfmetrics_count_reject(proto, REJECT_TOO_LARGE);
            snprintf(msg, sizeof msg, "decompressed request body exceeds --max-body (%lld bytes)",
                     (long long)ctx->opts->max_body_bytes);
            return respond_status(conn, 413, req->json, code_for(req, 3), msg, 0);
        }
        if (rc != 0) {
            selfmetrics_count_reject(proto, REJECT_DECODE_ERROR);
            snprintf(msg, sizeof msg, "corrupt %s body: cannot decompress",
                     req->encoding == ENCODING_GZIP ? "gzip" : "zstd");
            return respond_status(conn, rc == -ENOMEM ? 503 : 400, req->json,
                                  code_for(req, rc == -ENOMEM ? 14 : 3), msg,
                                  rc == -ENOMEM ? 1 : 0);
        }
        body = inflated;
    }

    if (route->metrics) return handle_metrics(ctx, conn, req, proto, body, len, inflated);

    struct span_batch *batch = span_batch_create();
    if (!batch) {
        free(inflated);
        return respond_status(conn, 503, req->json, code_for(req, 14), "out of memory", 1);
    }
    struct decode_limits lim;
    decode_limits_default(&lim);
    msg[0] = '\0';
    int rc = (req->json ? route->decode_json : route->decode_proto)(body, len, &lim, batch, msg,
                                                                    sizeof msg);
    /* The batch holds copies of everything: give the body back now, not when a request that
     * waits for its commit completes. */
    free(inflated);
    release_body(req);
    if (rc != 0) {
        span_batch_destroy(batch);
        if (rc == -E2BIG) {
            selfmetrics_count_reject(proto, REJECT_TOO_LARGE);
            return respond_status(conn, 413, req->json, code_for(req, 3),
                                  msg[0] ? msg : "request too large", 0);
        }
        if (rc == -ENOMEM)
            return respond_status(conn, 503, req->json, code_for(req, 14), "out of memory", 1);
        selfmetrics_count_reject(proto, REJECT_DECODE_ERROR);
        log_ratelimited(LOG_INFO, "http-decode", "http: %s (%s) request refused: %s", route->path,
                        req->json ? "JSON" : "protobuf", msg);
        return respond_status(conn, 400, req->json, code_for(req, 3),
                              msg[0] ? msg : "undecodable request", 0);
    }

    req->proto = proto;
    req->accepted = batch->n_spans + batch->n_logs;
    req->rejected = batch->rejected;
    snprintf(req->reason, sizeof req->reason, "%s",
             batch->reject_reason ? batch->reject_reason : "");
    atomic_fetch_add_explicit(&self_metrics.spans_received[proto], req->accepted + req->rejected,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&self_metrics.spans_rejected[proto][REJECT_INVALID_SPAN],
                              req->rejected, memory_order_relaxed);
    if (req->accepted == 0) {
        span_batch_destroy(batch);
        return answer_ingest(conn, req);
    }
    size_t bytes = store_queued_bytes(batch);
    if (bytes > ingest_queue_capacity_bytes(ctx->queue)) {
        /* It would not fit even into an empty queue: a 503 would be retried for ever. */
        span_batch_destroy(batch);
        selfmetrics_count_reject(proto, REJECT_TOO_LARGE);
        snprintf(msg, sizeof msg,
                 "request would hold %zu bytes while queued, more than the whole ingest queue "
                 "(--queue-size "
                 "%zu bytes): send smaller requests",
                 bytes, ingest_queue_capacity_bytes(ctx->queue));
        return respond_status(conn, 413, req->json, code_for(req, 3), msg, 0);
    }
    bool wait = !ctx->opts->ack_received;
    if (wait) {
        /* Suspend before the push: the writer may commit and resume us at once. */
        batch->user = req;
        req->conn = conn;
        req->waiting = true;
        MHD_suspend_connection(conn);
    }
    rc = ingest_queue_push_observed(ctx->queue, batch, ctx->observe, ctx->observe_arg);
    if (rc != 0) {
        span_batch_destroy(batch);
        int why = rc == -E2BIG ? REJECT_TOO_LARGE : REJECT_QUEUE_FULL;
        selfmetrics_count_reject(proto, why);
        atomic_fetch_add_explicit(&self_metrics.spans_rejected[proto][why], req->accepted,
                                  memory_order_relaxed);
        atomic_store(&req->commit_rc, rc);
        if (!wait) return answer_ingest(conn, req);
        MHD_resume_connection(conn); /* the next handler call answers 503 */
        return MHD_YES;
    }
    atomic_fetch_add_explicit(&self_metrics.spans_accepted[proto], req->accepted,
                              memory_order_relaxed);
    return wait ? MHD_YES : answer_ingest(conn, req);
}

void http_batch_done(void *user, int rc)
{
    struct request *req = user;
    struct MHD_Connection *conn = req->conn;
    if (rc != 0) {
        atomic_fetch_add_explicit(&self_metrics.spans_rejected[req->proto][REJECT_STORE_FAILED],
                                  req->accepted, memory_order_relaxed);
        selfmetrics_count_reject(req->proto, REJECT_STORE_FAILED);
    }
    atomic_store(&req->commit_rc, rc);
    /* Last touch of req: once resumed, an HTTP thread answers and may free it. */
    MHD_resume_connection(conn);
}

/* Collects query-string arguments in order (repeated keys kept). */
struct arg_list {
    struct query_arg items[64]; /* more than any API here takes; beyond it the request is 400 */
    size_t n;
    bool overflow;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct arg_list *l = cls;
    if (l->n < sizeof l->items / sizeof l->items[0]) {
        l->items[l->n].key = key;
        l->items[l->n].value = value ? value : "";
        l->n++;
        return MHD_YES;
    }
    l->overflow = true;
    return MHD_NO;
}

/* Headers of the dashboard's files (web/, embedded by web/embed.cmake). The CSP allows nothing
 * but this origin: scripts are ES modules from /js and /vendor (no inline script, no eval),
 * styles are files (cytoscape's injected rule ships as css/cytoscape.css; element.style set by
 * cytoscape and uPlot through the CSSOM is not subject to style-src), the API is same-origin. */
#define WEB_CSP                                                                                    \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "                 \
    "frame-ancestors 'none'"

static enum MHD_Result send_asset(struct MHD_Connection *conn, const struct web_asset *a)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", a->content_type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy", WEB_CSP);
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle_get(struct http_context *ctx, struct MHD_Connection *conn,
                                  const char *url)
{
    if (strcmp(url, "/healthz") == 0) return send_text(conn, 200, "ok\n");
    if (strcmp(url, "/readyz") == 0) {
        bool ready = atomic_load(&ctx->ready);
        return send_text(conn, ready ? 200 : 503, ready ? "ready\n" : "starting\n");
    }
    if (strcmp(url, "/metrics") == 0) {
        /* Self metrics then RED metrics, as Prometheus text 0.0.4 or (Accept) OpenMetrics 1.0,
         * gzipped when Accept-Encoding allows (red_expose). */
        char *self;
        size_t self_len;
        if (selfmetrics_render(ctx->queue, ctx->store, &self, &self_len) != 0)
            return send_text(conn, 500, "out of memory");
        if (ctx->metrics) {
            /* OTLP metric families follow the self metrics: same text format, so red_expose's
             * OpenMetrics conversion of counter families covers them too. */
            char *om;
            size_t om_len;
            char *joined = NULL;
            if (otel_metrics_render(ctx->metrics, &om, &om_len) == 0) {
                joined = realloc(self, self_len + om_len + 1);
                if (joined) {
                    memcpy(joined + self_len, om, om_len + 1);
                    self = joined;
                    self_len += om_len;
                }
                free(om);
            }
            if (!joined) {
                free(self);
                return send_text(conn, 500, "out of memory");
            }
        }
        struct red_exposition ex;
        int rc = red_expose(ctx->red, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept"),
                            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding"),
                            self, self_len, &ex);
        free(self);
        if (rc != 0) return send_text(conn, 500, "out of memory");
        struct MHD_Response *r =
            MHD_create_response_from_buffer(ex.len, ex.body, MHD_RESPMEM_MUST_FREE);
        if (!r) {
            free(ex.body);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", ex.content_type);
        if (ex.content_encoding)
            MHD_add_response_header(r, "Content-Encoding", ex.content_encoding);
        MHD_add_response_header(r, "Vary", "Accept, Accept-Encoding");
        enum MHD_Result ret = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strncmp(url, "/api/", 5) == 0) {
        struct arg_list args = {.n = 0};
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &args);
        if (args.overflow) {
            static const char too_many[] =
                "{\"data\":null,\"total\":0,\"limit\":0,\"offset\":0,\"errors\":[{\"code\":400,"
                "\"msg\":\"too many query parameters (at most 64)\"}]}";
            char *body = strdup(too_many);
            return send_response(conn, 400, "application/json", body, body ? strlen(body) : 0, 0);
        }
        struct query_response resp = {0};
        int rc = query_handle(ctx->store, url, args.items, args.n, &resp);
        if (rc == 0)
            return send_response(conn, (unsigned)resp.status, resp.content_type, resp.body,
                                 resp.len, resp.status == 503 ? 1 : 0);
        return send_text(conn, 404, "not found\n");
    }
    /* Any other path: the dashboard's files ("/" is its index), else 404. */
    const struct web_asset *asset = web_asset_find(url);
    if (asset) return send_asset(conn, asset);
    return send_text(conn, 404, "not found\n");
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct http_server *srv = cls;
    struct http_context *ctx = srv->ctx;
    struct request *req = *con_cls;

    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req) return MHD_NO;
        *con_cls = req;
        atomic_fetch_add(&requests_in_flight, 1);
        req->started_us = mono_us();
        /* GET /api/... is a query even where an ingest path shares it (Zipkin's /api/v2/spans:
         * POST ingests, GET lists span names). */
        bool query_get = (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
                         strncmp(url, "/api/", 5) == 0;
        if (ctx->auth) {
            /* Ingest and read endpoints need a token; health checks stay open (orchestrators
             * probe them), and so do unknown paths (they answer 404 and reveal nothing). */
            bool ingest = false,
                 read = strncmp(url, "/api/", 5) == 0 || strcmp(url, "/metrics") == 0;
            for (size_t i = 0; i < sizeof ingest_routes / sizeof ingest_routes[0]; i++)
                ingest |= !query_get && strcmp(url, ingest_routes[i].path) == 0;
            const char *h =
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
            if ((ingest && !auth_check(ctx->auth, AUTH_INGEST, h)) ||
                (read && !auth_check(ctx->auth, AUTH_READ, h))) {
                char *body = strdup("missing or invalid bearer token\n");
                struct MHD_Response *r = MHD_create_response_from_buffer(
                    body ? strlen(body) : 0, body, MHD_RESPMEM_MUST_FREE);
                if (!r) return MHD_NO;
                MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"meshscope\"");
                MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
                enum MHD_Result ret = MHD_queue_response(conn, 401, r);
                MHD_destroy_response(r);
                return ret;
            }
        }
        for (size_t i = 0; i < sizeof ingest_routes / sizeof ingest_routes[0]; i++)
            if (!query_get && strcmp(url, ingest_routes[i].path) == 0)
                req->route = &ingest_routes[i];
        if (req->route) {
            if (strcmp(method, "POST") != 0) {
                struct MHD_Response *r = MHD_create_response_from_buffer(
                    strlen("method not allowed: use POST\n"),
                    (void *)"method not allowed: use POST\n", MHD_RESPMEM_PERSISTENT);
                MHD_add_response_header(r, "Allow", "POST");
                MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
                enum MHD_Result ret = MHD_queue_response(conn, 405, r);
                MHD_destroy_response(r);
                return ret;
            }
            const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
            bool metrics = req->route->metrics;
            if (ct && media_type_is(ct, "application/x-protobuf") &&
                (req->route->decode_proto || metrics))
                req->json = false;
            else if (ct && (req->route->decode_json || metrics) &&
                     (media_type_is(ct, "application/json") ||
                      (req->route->ndjson_ok && media_type_is(ct, "application/x-ndjson"))))
                req->json = true;
            else {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "unsupported content type '%.100s': use application/x-protobuf or "
                         "application/json",
                         ct ? ct : "");
                return respond_status(conn, 415, true, code_for(req, 3), msg, 0);
            }
            const char *ce = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
            req->encoding = encoding_parse(ce);
            if (req->encoding == ENCODING_UNKNOWN) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "unsupported Content-Encoding '%.100s': use gzip, zstd or identity", ce);
                return respond_status(conn, 415, req->json, code_for(req, 3), msg, 0);
            }
            const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
            if (cl && strtoll(cl, NULL, 10) > ctx->opts->max_body_bytes) req->too_large = true;
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->route && mono_us() - req->started_us > ctx->opts->request_timeout_us) {
            /* A body trickling in slower than --request-timeout allows: cut the connection
             * (MHD closes it on MHD_NO) rather than hold its slot and buffer. */
            enum ingest_protocol p = req->json ? req->route->json_label : req->route->proto_label;
            selfmetrics_count_reject(p, REJECT_TIMEOUT);
            log_ratelimited(LOG_INFO, "http-timeout",
                            "http: %s body not complete after --request-timeout; connection closed",
                            req->route->path);
            return MHD_NO;
        }
        if (!req->route || req->too_large || req->too_busy) return MHD_YES;
        if (req->len + n > (size_t)ctx->opts->max_body_bytes) {
            req->too_large = true; /* keep reading (and dropping) so the client gets the 413 */
            release_body(req);
            return MHD_YES;
        }
        if (req->len + n > req->cap) {
            size_t cap = req->cap ? req->cap : 16384;
            while (cap < req->len + n)
                cap *= 2;
            size_t budget = body_budget(ctx->opts);
            if (atomic_fetch_add(&body_bytes, cap - req->cap) + (cap - req->cap) > budget) {
                atomic_fetch_sub(&body_bytes, cap - req->cap);
                req->too_busy = true;
                release_body(req);
                return MHD_YES;
            }
            uint8_t *p = realloc(req->body, cap);
            if (!p) {
                atomic_fetch_sub(&body_bytes, cap - req->cap);
                return MHD_NO;
            }
            req->body = p;
            req->cap = cap;
        }
        memcpy(req->body + req->len, upload_data, n);
        req->len += n;
        return MHD_YES;
    }

    if (req->waiting) return answer_ingest(conn, req);
    if (req->route) return handle_ingest(ctx, conn, req);
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return handle_get(ctx, conn, url);
    return send_text(conn, 404, "not found\n");
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct request *req = *con_cls;
    if (!req) return;
    atomic_fetch_sub(&requests_in_flight, 1);
    release_body(req);
    free(req);
    *con_cls = NULL;
}

/* Resolves "host:port" / "[v6]:port" / ":port" into a socket address. */
static int resolve(const char *addr, struct sockaddr_storage *ss, socklen_t *len, bool *v6)
{
    struct addrinfo *res;
    if (listen_addr_resolve(addr, SOCK_STREAM, &res) != 0) return -EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

struct http_server *http_server_start(const char *name, const char *addr, struct http_context *ctx)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    bool v6;
    if (resolve(addr, &ss, &sslen, &v6) != 0) {
        log_msg(LOG_ERROR, "http: %s: cannot resolve listen address '%s'", name, addr);
        return NULL;
    }
    struct http_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ctx = ctx;
    s->name = strdup(name);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    if (v6) flags |= MHD_USE_IPv6;
    if (ctx->tls_cert_pem) flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls[] = {
        {ctx->tls_cert_pem ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0,
         (void *)ctx->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)ctx->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)ctx->opts->http_threads, MHD_OPTION_NOTIFY_COMPLETED,
        request_completed, NULL,
        /* Slow or idle clients (slowloris) lose their connection after --idle-timeout of
         * silence, and at most --max-connections are open per listener. */
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(ctx->opts->idle_timeout_us / 1000000),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)ctx->opts->max_connections,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!s->mhd) {
        log_msg(LOG_ERROR, "http: %s: cannot listen on %s: %s", name, addr, strerror(errno));
        free(s->name);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    log_msg(LOG_INFO, "http: %s listening on %s (port %u%s)", name, addr, s->port,
            ctx->tls_cert_pem ? ", TLS" : "");
    return s;
}

void http_server_quiesce(struct http_server *s)
{
    if (!s || !s->mhd) return;
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_wait_idle(int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms && atomic_load(&requests_in_flight) > 0;
         waited += 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void http_server_stop(struct http_server *s)
{
    if (!s) return;
    if (s->mhd) MHD_stop_daemon(s->mhd);
    free(s->name);
    free(s);
}

unsigned http_server_port(const struct http_server *s)
{
    return s->port;
}
