/*
 * grpc.h: the gRPC ingest listener (--otlp-grpc): HTTP/2 (h2c with prior knowledge, or TLS), on
 * libnghttp2's server session API, serving
 *   /opentelemetry.proto.collector.{trace,logs,metrics}.v1.*Service/Export   (unary)
 *   /envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs            (client streaming)
 *   /envoy.service.metrics.v3.MetricsService/StreamMetrics                   (client streaming)
 * into the same decoders, ingest queue and writer as the HTTP listeners (README "gRPC").
 */
#ifndef MESHSCOPE_GRPC_H
#define MESHSCOPE_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "collector_int.h"

struct grpc_server;

/* Binds addr ("host:port", port 0 picks one) and starts the event-loop threads. Borrows ctx
 * (outlives the server). With ctx's TLS PEMs set the listener speaks TLS (ALPN h2). NULL
 * (logged) on failure. */
struct grpc_server *grpc_server_start(const char *addr, struct http_context *ctx);
/* Stops accepting and sends every connection a graceful GOAWAY (calls already started go on).
 * Accepts NULL. Any thread. */
void grpc_server_quiesce(struct grpc_server *s);
/* Waits (at most timeout_ms) until every call that waits for a commit or whose answer is queued
 * has been answered and its answer written (or its connection gone). */
void grpc_wait_idle(int timeout_ms);
/* Joins the threads and closes every connection. Accepts NULL. */
void grpc_server_stop(struct grpc_server *s);
unsigned grpc_server_port(const struct grpc_server *s);

/* The writer's batch_done_fn for batches pushed by gRPC calls (--ack=committed): hands the
 * outcome back to the event loop that owns the call. Writer thread; never blocks. */
void grpc_batch_done(void *user, int rc);

/* ----- for tests and the fuzz target: one connection without a socket ---------------------- */

struct grpc_conn;
/* Receives what the server session sends (borrowed for the call). */
typedef void (*grpc_output_fn)(void *arg, const uint8_t *data, size_t len);
/* A server session on no socket: its output goes to out(arg, ...) (NULL: discarded). Borrows
 * ctx. NULL on out of memory. Retries of held batches run on each grpc_conn_feed. */
struct grpc_conn *grpc_conn_open_mem(struct http_context *ctx, grpc_output_fn out, void *arg);
/* Calls of c holding a batch that the full queue refused (flow control holds their streams). */
unsigned grpc_conn_held(const struct grpc_conn *c);
/* Bytes c's calls have received but not given back as HTTP/2 window (nghttp2_session_consume). */
size_t grpc_conn_unconsumed(const struct grpc_conn *c);
/* Feeds bytes as if read from the socket and runs the session. 0, or -EPROTO once the session
 * has failed (the real listener closes the connection then). */
int grpc_conn_feed(struct grpc_conn *c, const uint8_t *data, size_t len);
/* Accepts NULL. Every batch c pushed with a `user` must have been returned (grpc_batch_done)
 * first: the completion goes to c's own loop state. */
void grpc_conn_close_mem(struct grpc_conn *c);

#endif
