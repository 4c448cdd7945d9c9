/*
 * fuzz_grpc.c: libFuzzer target for the gRPC framing layer (grpc.c): the input is the byte
 * stream a client sends after the HTTP/2 preface, fed into a real nghttp2 server session with
 * grpc.c's callbacks (no socket: grpc_conn_open_mem), split into reads where the first byte says,
 * so frame parsing, HPACK, header checks, 5-byte message framing, gzip, flow-control accounting,
 * the method dispatch (OTLP traces, logs and metrics, Envoy access logs and metrics) and the commit
 * answers all run. Batches that reach the queue are "committed" (grpc_batch_done) and freed after
 * each input, so nothing may leak. Seeds: tests/data/grpc (made by tests/data/grpc/make_seeds.py).
 * Built by tests/fuzz/fuzz.cmake.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc.h"
#include "otel_metrics.h"

static struct options opts;
static struct http_context ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx.queue) {
        opts.max_body_bytes = 64 * 1024; /* small caps: the fuzzer reaches them */
        opts.queue_bytes = 1 << 20;
        opts.idle_timeout_us = 30 * 1000000LL;
        opts.http_threads = 1;
        opts.ack_received = false; /* exercise the commit path */
        ctx.opts = &opts;
        ctx.queue = ingest_queue_create(64, (size_t)opts.queue_bytes);
        struct otel_metrics_options mo = {.max_series = 1000};
        ctx.metrics = otel_metrics_create(&mo); /* series accumulate across inputs, capped */
        if (!ctx.queue || !ctx.metrics) abort();
    }
    static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                     "\x00\x00\x00\x04\x00\x00\x00\x00\x00"; /* empty SETTINGS */
    struct grpc_conn *c = grpc_conn_open_mem(&ctx, NULL, NULL);
    if (!c) return 0;
    int rc = grpc_conn_feed(c, preface, sizeof preface - 1);
    /* Reads of 1..256 bytes, as chosen by the first byte (0: the rest in one read). */
    size_t chunk = size ? data[0] : 0, off = size ? 1 : 0;
    while (rc == 0 && off < size) {
        size_t n = chunk ? chunk : size - off;
        if (n > size - off) n = size - off;
        rc = grpc_conn_feed(c, data + off, n);
        off += n;
    }
    if (rc != 0 && rc != -EPROTO) abort();
    struct span_batch *b[64];
    size_t n;
    while ((n = ingest_queue_pop(ctx.queue, b, 64, 0)) > 0)
        for (size_t i = 0; i < n; i++) {
            if (b[i]->n_spans + b[i]->n_logs == 0) abort(); /* empty batches are never queued */
            if (b[i]->user) grpc_batch_done(b[i]->user, 0);
            span_batch_destroy(b[i]);
        }
    grpc_conn_feed(c, NULL, 0); /* the loop's turn: answers the committed calls */
    grpc_conn_close_mem(c);
    return 0;
}
