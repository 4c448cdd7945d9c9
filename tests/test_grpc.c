/*
 * test_grpc.c: the gRPC server (grpc.c) in process, driven by an nghttp2 client session through
 * an in-memory connection (grpc_conn_open_mem), so what depends on timing elsewhere is
 * deterministic here: a unary Export answers only after the writer's commit (and UNAVAILABLE when
 * the commit fails); a stream whose batch the full queue refuses is held and its HTTP/2 window
 * not given back until the batch is in; the status table (unknown method, bad message, oversize,
 * token); and the Envoy access-log mapping of one entry.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "envoy_als.h"
#include "grpc.h"
#include "test_util.h"

#include <nghttp2/nghttp2.h>

#include "envoy/service/accesslog/v3/als.pb-c.h"

#define MAX_IDS 64

struct harness {
    struct options opts;
    struct http_context ctx;
    struct grpc_conn *server;
    nghttp2_session *client;
    uint8_t *to_client;
    size_t to_client_len;
    int status[MAX_IDS]; /* grpc-status by stream id / 2; -1 = none yet */
    bool closed[MAX_IDS];
    struct {
        const uint8_t *data;
        size_t len, off;
    } body[MAX_IDS];
};

static void server_out(void *arg, const uint8_t *data, size_t len)
{
    struct harness *h = arg;
    h->to_client = realloc(h->to_client, h->to_client_len + len);
    memcpy(h->to_client + h->to_client_len, data, len);
    h->to_client_len += len;
}

static ssize_t client_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
                           void *user)
{
    (void)s;
    (void)flags;
    struct harness *h = user;
    assert_int_equal(grpc_conn_feed(h->server, data, len), 0);
    return (ssize_t)len;
}

static int client_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                         const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
    (void)s;
    (void)flags;
    struct harness *h = user;
    if (nl == 11 && memcmp(name, "grpc-status", 11) == 0 && f->hd.stream_id / 2 < MAX_IDS)
        h->status[f->hd.stream_id / 2] = atoi((const char *)value); /* NUL-terminated */
    (void)vl;
    return 0;
}

static int client_close(nghttp2_session *s, int32_t id, uint32_t err, void *user)
{
    (void)s;
    (void)err;
    struct harness *h = user;
    if (id / 2 < MAX_IDS) h->closed[id / 2] = true;
    return 0;
}

static ssize_t client_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                           uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)s;
    (void)src;
    struct harness *h = user;
    size_t n = h->body[id / 2].len - h->body[id / 2].off;
    if (n > len) n = len;
    memcpy(buf, h->body[id / 2].data + h->body[id / 2].off, n);
    h->body[id / 2].off += n;
    if (h->body[id / 2].off == h->body[id / 2].len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Lets both sessions talk until neither has anything to say (bounded). */
static void pump(struct harness *h)
{
    for (int i = 0; i < 20; i++) {
        assert_int_equal(nghttp2_session_send(h->client), 0);
        assert_int_equal(grpc_conn_feed(h->server, NULL, 0), 0);
        if (!h->to_client_len) break;
        uint8_t *buf = h->to_client;
        size_t len = h->to_client_len;
        h->to_client = NULL;
        h->to_client_len = 0;
        assert_true(nghttp2_session_mem_recv(h->client, buf, len) == (ssize_t)len);
        free(buf);
    }
}

static struct harness *harness_open(bool ack_received, unsigned queue_items)
{
    struct harness *h = calloc(1, sizeof *h);
    h->opts.max_body_bytes = 64 * 1024;
    h->opts.queue_bytes = 1 << 20;
    h->opts.idle_timeout_us = 30 * 1000000LL;
    h->opts.http_threads = 1;
    h->opts.ack_received = ack_received;
    h->ctx.opts = &h->opts;
    h->ctx.queue = ingest_queue_create(queue_items, (size_t)h->opts.queue_bytes);
    assert_non_null(h->ctx.queue);
    for (int i = 0; i < MAX_IDS; i++)
        h->status[i] = -1;
    h->server = grpc_conn_open_mem(&h->ctx, server_out, h);
    assert_non_null(h->server);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, client_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, client_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, client_close);
    assert_int_equal(nghttp2_session_client_new(&h->client, cb, h), 0);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(h->client, NGHTTP2_FLAG_NONE, NULL, 0);
    pump(h);
    return h;
}

/* Drains the queue: each batch "committed" with rc. Returns the batches' records + spans. */
static unsigned commit_all(struct harness *h, int rc)
{
    struct span_batch *b[16];
    size_t n;
    unsigned items = 0;
    while ((n = ingest_queue_pop(h->ctx.queue, b, 16, 0)) > 0)
        for (size_t i = 0; i < n; i++) {
            items += b[i]->n_spans + b[i]->n_logs;
            if (b[i]->user) grpc_batch_done(b[i]->user, rc);
            span_batch_destroy(b[i]);
        }
    return items;
}

static void harness_close(struct harness *h)
{
    commit_all(h, 0);
    pump(h);
    nghttp2_session_del(h->client);
    grpc_conn_close_mem(h->server);
    ingest_queue_destroy(h->ctx.queue);
    free(h->to_client);
    for (int i = 0; i < MAX_IDS; i++)
        free((void *)h->body[i].data);
    free(h);
}

/* Opens a call of path with one message (msg, len; auth may be NULL); end = half-close after it. */
static int32_t call(struct harness *h, const char *path, const uint8_t *msg, size_t len,
                    const char *auth, bool end)
{
    nghttp2_nv nv[6] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
        {(uint8_t *)":authority", (uint8_t *)"t", 10, 1, 0},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
        {(uint8_t *)"authorization", (uint8_t *)auth, 13, auth ? strlen(auth) : 0, 0},
    };
    uint8_t *framed = malloc(5 + len);
    framed[0] = 0;
    framed[1] = (uint8_t)(len >> 24);
    framed[2] = (uint8_t)(len >> 16);
    framed[3] = (uint8_t)(len >> 8);
    framed[4] = (uint8_t)len;
    if (len) memcpy(framed + 5, msg, len);
    nghttp2_data_provider dp = {.read_callback = client_read};
    size_t n = auth ? 6 : 5;
    /* end: the message then END_STREAM; else HEADERS, then the message as DATA without
     * END_STREAM (submit_data with FLAG_NONE keeps the stream open). */
    int32_t id = end ? nghttp2_submit_request(h->client, NULL, nv, n, &dp, NULL)
                     : nghttp2_submit_headers(h->client, NGHTTP2_FLAG_NONE, -1, NULL, nv, n, NULL);
    assert_true(id > 0 && id / 2 < MAX_IDS);
    h->body[id / 2].data = framed;
    h->body[id / 2].len = 5 + len;
    if (!end) {
        assert_int_equal(nghttp2_session_send(h->client), 0); /* the stream exists once sent */
        assert_int_equal(nghttp2_submit_data(h->client, NGHTTP2_FLAG_NONE, id, &dp), 0);
    }
    pump(h);
    return id;
}

/* One packed StreamAccessLogsMessage with n HTTP entries (503 UF, inbound, traced). */
static uint8_t *als_message(unsigned n, bool with_node, size_t *len)
{
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    node.id = "sidecar~10.1.2.3~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local";
    node.cluster = "reviews.bookinfo";
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__Identifier ident =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__IDENTIFIER__INIT;
    ident.node = &node;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = 1700000000;
    ts.nanos = 250000000;
    Google__Protobuf__Duration dur = GOOGLE__PROTOBUF__DURATION__INIT;
    dur.seconds = 1;
    dur.nanos = 500000000;
    Envoy__Data__Accesslog__V3__ResponseFlags flags =
        ENVOY__DATA__ACCESSLOG__V3__RESPONSE_FLAGS__INIT;
    flags.upstream_connection_failure = 1;
    flags.upstream_retry_limit_exceeded = 1;
    Envoy__Data__Accesslog__V3__AccessLogCommon common =
        ENVOY__DATA__ACCESSLOG__V3__ACCESS_LOG_COMMON__INIT;
    common.start_time = &ts;
    common.time_to_last_downstream_tx_byte = &dur;
    common.upstream_cluster = "inbound|9080||";
    common.response_flags = &flags;
    Envoy__Data__Accesslog__V3__HTTPRequestProperties__RequestHeadersEntry tp =
        ENVOY__DATA__ACCESSLOG__V3__HTTPREQUEST_PROPERTIES__REQUEST_HEADERS_ENTRY__INIT;
    tp.key = "traceparent";
    tp.value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    Envoy__Data__Accesslog__V3__HTTPRequestProperties__RequestHeadersEntry *tps[] = {&tp};
    Envoy__Data__Accesslog__V3__HTTPRequestProperties req =
        ENVOY__DATA__ACCESSLOG__V3__HTTPREQUEST_PROPERTIES__INIT;
    req.request_method = ENVOY__DATA__ACCESSLOG__V3__HTTPREQUEST_PROPERTIES__REQUEST_METHOD__GET;
    req.authority = "reviews:9080";
    req.path = "/reviews/1";
    req.request_body_bytes = 17;
    req.n_request_headers = 1;
    req.request_headers = tps;
    Google__Protobuf__UInt32Value code = GOOGLE__PROTOBUF__UINT32_VALUE__INIT;
    code.value = 503;
    Envoy__Data__Accesslog__V3__HTTPResponseProperties resp =
        ENVOY__DATA__ACCESSLOG__V3__HTTPRESPONSE_PROPERTIES__INIT;
    resp.response_code = &code;
    resp.response_body_bytes = 91;
    Envoy__Data__Accesslog__V3__HTTPAccessLogEntry e =
        ENVOY__DATA__ACCESSLOG__V3__HTTPACCESS_LOG_ENTRY__INIT;
    e.common_properties = &common;
    e.protocol_version = ENVOY__DATA__ACCESSLOG__V3__HTTPACCESS_LOG_ENTRY__HTTPVERSION__HTTP2;
    e.request = &req;
    e.response = &resp;
    Envoy__Data__Accesslog__V3__HTTPAccessLogEntry *entries[64];
    for (unsigned i = 0; i < n; i++)
        entries[i] = &e;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__HTTPAccessLogEntries http =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__HTTPACCESS_LOG_ENTRIES__INIT;
    http.n_log_entry = n;
    http.log_entry = entries;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage m =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__INIT;
    if (with_node) m.identifier = &ident;
    m.log_entries_case =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_HTTP_LOGS;
    m.http_logs = &http;
    *len = envoy__service__accesslog__v3__stream_access_logs_message__get_packed_size(&m);
    uint8_t *buf = malloc(*len);
    envoy__service__accesslog__v3__stream_access_logs_message__pack(&m, buf);
    return buf;
}

static const char EXPORT[] = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
static const char ALS[] = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs";

static void test_export_waits_for_commit(void **state)
{
    (void)state;
    size_t len;
    char *body = test_read_fixture("otlp", "full.pb", &len);
    struct harness *h = harness_open(false, 16);
    int32_t ok = call(h, EXPORT, (const uint8_t *)body, len, NULL, true);
    int32_t failed = call(h, EXPORT, (const uint8_t *)body, len, NULL, true);
    assert_int_equal(h->status[ok / 2], -1); /* acknowledged means committed: not yet */
    /* The writer commits the first, the database refuses the second. */
    struct span_batch *b[2];
    assert_int_equal(ingest_queue_pop(h->ctx.queue, b, 2, 0), 2);
    grpc_batch_done(b[0]->user, 0);
    grpc_batch_done(b[1]->user, -EIO);
    span_batch_destroy(b[0]);
    span_batch_destroy(b[1]);
    pump(h);
    assert_int_equal(h->status[ok / 2], 0);
    assert_int_equal(h->status[failed / 2], 14); /* UNAVAILABLE: retry */
    harness_close(h);
    free(body);
}

static void test_status_table(void **state)
{
    (void)state;
    struct harness *h = harness_open(true, 16);
    static const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3};
    uint8_t *big = calloc(1, 70 * 1024);
    int32_t unknown = call(h, "/x.Y/Z", garbage, sizeof garbage, NULL, true);
    int32_t bad = call(h, EXPORT, garbage, sizeof garbage, NULL, true);
    int32_t oversize = call(h, EXPORT, big, 70 * 1024, NULL, true);
    int32_t none = call(h, EXPORT, NULL, 0, NULL, true); /* an empty message is a valid request */
    assert_int_equal(h->status[unknown / 2], 12);
    assert_int_equal(h->status[bad / 2], 3);
    assert_int_equal(h->status[oversize / 2], 8);
    assert_int_equal(h->status[none / 2], 0);
    assert_int_equal(commit_all(h, 0), 0);
    harness_close(h);
    free(big);
}

static void test_stream_held_by_full_queue(void **state)
{
    (void)state;
    struct harness *h = harness_open(true, 16);
    /* Fill the queue's 16 cells. */
    for (int i = 0; i < 16; i++) {
        struct span_batch *b = span_batch_create();
        assert_non_null(span_batch_add_log(b));
        assert_int_equal(ingest_queue_push(h->ctx.queue, b), 0);
    }
    size_t len;
    uint8_t *msg = als_message(20, true, &len);
    int32_t id = call(h, ALS, msg, len, NULL, false);
    assert_int_equal(grpc_conn_held(h->server), 1);
    pump(h);
    /* No window given back while the batch is held: the message's bytes stay unconsumed, so a
     * client that keeps sending runs out of window (HTTP/2 flow control holds it). */
    assert_int_equal(grpc_conn_unconsumed(h->server), 5 + len);
    assert_int_equal(grpc_conn_held(h->server), 1);
    assert_int_equal(commit_all(h, 0), 16); /* the writer catches up: room again */
    pump(h);                                /* the held batch goes in on the next turn */
    assert_int_equal(grpc_conn_held(h->server), 0);
    assert_int_equal(grpc_conn_unconsumed(h->server), 0);
    assert_int_equal(commit_all(h, 0), 20);
    assert_int_equal(h->status[id / 2], -1); /* the stream is still open */
    assert_int_equal(nghttp2_submit_data(h->client, NGHTTP2_FLAG_END_STREAM, id,
                                         &(nghttp2_data_provider){.read_callback = client_read}),
                     0);
    h->body[id / 2].off = h->body[id / 2].len; /* nothing more: just END_STREAM */
    pump(h);
    assert_int_equal(h->status[id / 2], 0);
    harness_close(h);
    free(msg);
}

static void test_als_mapping(void **state)
{
    (void)state;
    size_t len;
    uint8_t *msg = als_message(1, true, &len);
    struct als_node node = {0};
    struct span_batch *b = span_batch_create();
    char err[256];
    assert_int_equal(envoy_als_decode(msg, len, NULL, &node, b, err, sizeof err), 0);
    assert_int_equal(b->n_logs, 1);
    const struct access_log *l = &b->logs[0];
    assert_int_equal(l->time_unix_nano, 1700000000250000000ull);
    assert_int_equal(l->duration_ms, 1500);
    assert_int_equal(l->response_code, 503);
    assert_int_equal(l->bytes_received, 17);
    assert_int_equal(l->bytes_sent, 91);
    assert_int_equal(l->direction, ALOG_DIRECTION_INBOUND);
    assert_true(l->has_trace_id && l->has_span_id);
    assert_int_equal(l->trace_id[0], 0x0a);
    assert_alog_str(l, ALOG_SERVICE, "reviews"); /* the node's cluster, first label */
    assert_alog_str(l, ALOG_DESTINATION_WORKLOAD, "reviews");
    assert_alog_str(l, ALOG_DESTINATION_NAMESPACE, "bookinfo");
    assert_alog_str(l, ALOG_RESPONSE_FLAGS, "UF,URX");
    assert_alog_str(l, ALOG_METHOD, "GET");
    assert_alog_str(l, ALOG_PROTOCOL, "HTTP/2");
    assert_alog_str(l, ALOG_PATH, "/reviews/1");
    assert_non_null(l->str[ALOG_RAW].ptr);
    span_batch_destroy(b);
    /* The next message has no identifier: the stream's node still applies. */
    free(msg);
    msg = als_message(1, false, &len);
    b = span_batch_create();
    assert_int_equal(envoy_als_decode(msg, len, NULL, &node, b, err, sizeof err), 0);
    assert_alog_str(&b->logs[0], ALOG_SERVICE, "reviews");
    span_batch_destroy(b);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_waits_for_commit),
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_stream_held_by_full_queue),
        cmocka_unit_test(test_als_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
