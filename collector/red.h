/*
 * red.h: RED metrics derived from every accepted span, served on GET /metrics.
 *
 * Three sets of metrics, with the names, labels and bucket boundaries the tools that query them
 * expect (README "Metrics" has the full mapping table):
 *   - Istio's standard request metrics (istio_requests_total, istio_request_duration_milliseconds,
 *     istio_request_bytes, istio_response_bytes): a SERVER span reports as
 *     reporter="destination", a CLIENT span as reporter="source";
 *   - Tempo's service-graph metrics (traces_service_graph_*), from CLIENT/SERVER and
 *     PRODUCER/CONSUMER pairs, with virtual nodes for uninstrumented peers;
 *   - Tempo's span metrics (traces_spanmetrics_calls_total, traces_spanmetrics_latency).
 *
 * Fed through http_context.observe (red_observe_batch) on the HTTP threads; rendered by the
 * /metrics handler in the Prometheus text format 0.0.4 or OpenMetrics 1.0 (with exemplars).
 * Every function here is safe to call from any thread unless it says otherwise.
 */
#ifndef MESHSCOPE_RED_H
#define MESHSCOPE_RED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"

struct red;

struct red_options {
    /* Distinct label sets per metric family before new ones fold into the family's
     * otel_metric_overflow="true" series (--metrics-series-limit). 0 = 10,000. */
    uint32_t series_limit;
    /* Half-edges (a CLIENT or SERVER span waiting for its other half) kept at most; beyond it a
     * span is counted in traces_service_graph_dropped_spans_total. 0 = 100,000. */
    uint32_t pending_limit;
    /* How long a half-edge waits for its other half (--service-graph-wait); access-log records
     * wait as long. 0 = GRAPH_WAIT_DEFAULT_MS (10 s, Tempo's default wait). */
    int64_t pending_ttl_ms;
    /* Access-log records waiting for the other proxy's record of the same call, at most (count
     * and bytes); beyond either a record is counted alone at once
     * (meshscope_service_graph_records_total{outcome="store_full"}). 0 = 100,000 and 32 MiB. */
    uint32_t record_limit;
    uint64_t record_max_bytes;
    /* Monotonic clock in ms, for tests; NULL = CLOCK_MONOTONIC. */
    int64_t (*now_ms)(void);
};

/* Returns NULL (logged) on out of memory. Borrows o (may be NULL: all defaults). */
struct red *red_create(const struct red_options *o);
/* Accepts NULL. Caller guarantees no other thread is inside the module (listeners stopped). */
void red_destroy(struct red *r);

/* The http_context.observe hook: aggregates every span of b, and every access-log record of b
 * into the Istio metrics (one sample per record, none when its request's spans came first) and
 * the service graph (each call once: the two proxies' records of a call pair, records of traced
 * requests are left to their spans; README "Access logs"). Borrows b; takes only short
 * per-shard locks (no global lock), never blocks on I/O. red is a struct red *. */
void red_observe_batch(void *red, const struct span_batch *b);

/* Gives up on half-edges older than the TTL (they become unpaired counts, virtual-node edges or
 * one-sided Istio samples) and counts the access-log records whose wait is over.
 * red_render and red_observe_batch call it themselves (the latter for the shards it touches);
 * tests call it after moving their clock. */
void red_expire(struct red *r);

/* Renders every RED metric family, plus meshscope_metrics_* self metrics of the module, into a
 * malloc'd buffer (*out, *out_len; caller frees). openmetrics selects OpenMetrics 1.0 (family
 * names of counters without _total, exemplars on counters and histogram buckets) over the
 * Prometheus text format 0.0.4. The output has no "# EOF" line (red_expose adds it) and is
 * NUL-terminated (the NUL not counted in *out_len).
 * Returns 0 or -ENOMEM. */
int red_render(struct red *r, bool openmetrics, char **out /* OUT */, size_t *out_len /* OUT */);

/* ----- the /metrics response, negotiated ------------------------------------------------------ */

#define RED_CONTENT_TYPE_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define RED_CONTENT_TYPE_OPENMETRICS "application/openmetrics-text; version=1.0.0; charset=utf-8"

/* True when an Accept header prefers OpenMetrics (application/openmetrics-text with a q at
 * least that of text/plain and of the wildcards). NULL = false. */
bool red_accepts_openmetrics(const char *accept);
/* True when an Accept-Encoding header allows gzip (gzip or * with q > 0). NULL = false. */
bool red_accepts_gzip(const char *accept_encoding);

struct red_exposition {
    char *body;                   /* malloc'd; caller frees (or hands to MHD_RESPMEM_MUST_FREE) */
    size_t len;
    const char *content_type;     /* static string */
    const char *content_encoding; /* "gzip" or NULL (identity) */
};

/* Builds the whole /metrics document: self_text (selfmetrics_render's Prometheus text, may be
 * NULL) followed by red_render's families (r may be NULL: self metrics only), in the format the
 * Accept header asks for. In OpenMetrics, self_text's counter families are renamed without
 * their _total suffix (HELP/TYPE lines; samples keep it) and "# EOF" ends the document. Gzipped
 * when accept_encoding allows. Borrows every argument. Returns 0 or -ENOMEM. */
int red_expose(struct red *r, const char *accept, const char *accept_encoding,
               const char *self_text, size_t self_len, struct red_exposition *out /* OUT */);

#endif
