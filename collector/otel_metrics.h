/*
 * otel_metrics.h: the in-memory store of pushed metrics (OTLP POST /v1/metrics today; Envoy's
 * gRPC MetricsService later) and its exposition on /metrics, plus the OTLP metrics decoders.
 *
 * Metrics are not spans: they are not queued, not written to SQLite and not durable. A request
 * is decoded whole into a protocol-neutral batch (struct om_batch), then applied to the store
 * under per-shard locks, then answered; a restart forgets every series.
 *
 * THE MODEL (protocol-neutral; what any decoder produces and otel_metrics_apply consumes)
 *   om_metric: one metric family's points from one resource and one scope:
 *     name, help, unit (UCUM, OTLP style: "s", "By", "1", "{request}"; "" = none),
 *     type (counter, gauge, histogram, summary, untyped), temporality (cumulative or delta),
 *     points.
 *   om_point: labels (key/value strings, raw: the store sanitises keys), start and sample time
 *     (ns since the epoch, 0 = unknown), and per type:
 *       counter, gauge, untyped: value;
 *       histogram: count, sum (has_sum), n_bounds upper bounds (strictly increasing, +Inf
 *         implied) and n_bounds + 1 per-bucket counts (NOT cumulative: OTLP's layout);
 *       summary: count, sum, n_quantiles (quantile, value) pairs.
 *   om_resource: the resource attributes (key/value strings). service.namespace/service.name
 *     make the `job` label, service.instance.id the `instance` label, every other attribute
 *     goes to one `target_info` series per resource.
 *   om_scope: name and version -> otel_scope_name / otel_scope_version labels (omitted if "").
 *
 * Feeding it from the Prometheus data model (io.prometheus.client.MetricFamily, as Envoy's
 * MetricsService streams it): name -> name (unit ""), help -> help, COUNTER -> OM_COUNTER
 * (cumulative), GAUGE -> OM_GAUGE, UNTYPED -> OM_UNTYPED, SUMMARY -> OM_SUMMARY,
 * HISTOGRAM -> OM_HISTOGRAM with each bucket's cumulative_count turned into a per-bucket count
 * (subtract the previous bucket's; drop a +Inf bucket: it is implied, count covers it);
 * timestamp_ms * 1e6 -> time_ns. Node identity goes in the om_resource (service.name =
 * node.cluster, service.instance.id = node.id, the rest as further attributes, which land on
 * target_info), or as extra labels appended to each point's labels.
 *
 * NAMING (OpenTelemetry "Prometheus and OpenMetrics compatibility", OTLP -> Prometheus):
 *   characters outside [a-zA-Z0-9_:] become '_', runs of '_' collapse, a leading digit gets a
 *   '_' prefix; the unit, converted (s -> seconds, ms -> milliseconds, By -> bytes, 1 -> ratio
 *   for gauges, "{...}" annotations dropped, a/b -> a_per_b), is appended unless the name
 *   already holds it; counters end in _total. Label keys likewise ([a-zA-Z0-9_], no leading
 *   digit); keys that become equal have their values joined with ';' in the order of the
 *   original keys. A family whose names (with _total/_bucket/_sum/_count) would collide with
 *   another family or with meshscope's own (meshscope_*, istio_*, traces_service_graph_*,
 *   traces_spanmetrics_*, target_info) is refused, its points counted as rejected.
 *
 * TEMPORALITY: cumulative points are stored as given (the latest by sample time wins; a new
 *   start time is a reset). Delta points are added into the series (counters, gauges from
 *   non-monotonic sums, histograms bucket by bucket when the bounds match, else the series
 *   restarts from the point); a delta point no newer than the last one applied is ignored, so a
 *   retried request does not count twice.
 *
 * THREADS (DESIGN): any number of HTTP threads call otel_metrics_apply at once; /metrics calls
 *   otel_metrics_render, one at a time or several, beside them. Families are spread over 16
 *   shards by name hash, one mutex each; an apply takes one shard lock per metric family, never
 *   two shard locks at once. The registry of claimed exposition names (clash detection) has its
 *   own mutex, taken only when a family is created or dropped (inside a shard lock: order shard
 *   -> names). The series count is an atomic. Rendering locks one shard at a time.
 */
#ifndef MESHSCOPE_OTEL_METRICS_H
#define MESHSCOPE_OTEL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otlp.h"
#include "storage.h"

/* ----- the model -------------------------------------------------------------------------- */

enum om_type { OM_COUNTER, OM_GAUGE, OM_HISTOGRAM, OM_SUMMARY, OM_UNTYPED };
enum om_temporality { OM_CUMULATIVE, OM_DELTA };

struct om_label {
    const char *key, *value; /* NUL-terminated, valid UTF-8 */
};

struct om_resource {
    const struct om_label *attrs;
    uint32_t n_attrs;
};

struct om_scope {
    const char *name, *version; /* "" = absent */
};

struct om_point {
    const struct om_label *labels;
    uint32_t n_labels;
    uint64_t start_ns, time_ns;
    double value;       /* counter, gauge, untyped */
    uint64_t count;     /* histogram, summary */
    double sum;         /* histogram (when has_sum), summary */
    bool has_sum;
    const double *bounds;    /* histogram: n_bounds upper bounds */
    const uint64_t *buckets; /* histogram: n_bounds + 1 per-bucket counts */
    uint32_t n_bounds;
    const double *quantiles, *quantile_values; /* summary */
    uint32_t n_quantiles;
};

struct om_metric {
    const struct om_resource *resource; /* may be NULL: no job/instance/target_info */
    const struct om_scope *scope;       /* may be NULL */
    const char *name, *help, *unit;
    enum om_type type;
    enum om_temporality temporality;
    const struct om_point *points;
    uint32_t n_points;
};

/* ----- the decoded batch (what a decoder fills, one request) ------------------------------- */

struct om_batch {
    struct span_batch *strings; /* its arena holds every string and array of the batch (the
                                   span decoders' attribute conversion writes there) */
    struct om_metric *metrics;  /* malloc'd */
    size_t n_metrics, cap_metrics;
    uint64_t n_points;
    uint64_t rejected; /* points refused while decoding (caps, exponential histograms, ...) */
    char reason[256];  /* the first refusal */
};

/* NULL on allocation failure. */
struct om_batch *om_batch_create(void);
/* Accepts NULL. Frees the batch and everything it points to. */
void om_batch_destroy(struct om_batch *b);
/* Gives summary point p room for n quantiles in b's arena: p->quantiles and p->quantile_values
 * (NULL when n is 0) and p->n_quantiles are set, and *q (OUT) is the 2 x n doubles the decoder
 * fills, the quantiles first, then their values (q[n + i] is the value at q[i]); NULL when n is 0.
 * The memory is b's (freed with it). Returns 0 or -ENOMEM. */
int om_point_quantiles(struct om_batch *b, struct om_point *p, size_t n, double **q /* OUT */);

/* Decodes an ExportMetricsServiceRequest (protobuf, or OTLP/JSON with the same rules as the
 * trace decoder: lowerCamelCase or proto names, int64 as strings or numbers, enums as numbers
 * or names) into out (empty; borrowed). Caps (lim, NULL = defaults): lim->max_spans data points
 * per request (-E2BIG), lim->max_attrs attributes per point, resource or scope, lim->max_string
 * bytes per string, lim->max_depth AnyValue nesting; a point over a cap is rejected alone (a
 * resource or scope over a cap rejects its points), as are exponential histogram points, points
 * flagged "no recorded value", histograms whose bucket counts do not match their bounds, and
 * metrics with an empty name or no data. Returns 0, -EINVAL (undecodable: err names the
 * problem; the caller answers 400 and applies nothing), -E2BIG, -ENOMEM. Borrows body. */
int otlp_decode_metrics_proto(const uint8_t *body, size_t len, const struct decode_limits *lim,
                              struct om_batch *out, char *err, size_t errlen);
int otlp_decode_metrics_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                             struct om_batch *out, char *err, size_t errlen);

/* ----- the store --------------------------------------------------------------------------- */

struct otel_metrics;

struct otel_metrics_options {
    uint64_t max_series; /* series (label sets, target_info included) over all families */
    int64_t expiry_ns;   /* a series not updated for this long disappears; 0 = never */
    /* The clock expiry runs on (monotonic ns); NULL = CLOCK_MONOTONIC. Tests inject one. */
    int64_t (*clock_ns)(void *arg);
    void *clock_arg;
};

/* Why points were refused by the store (counted, rendered as
 * meshscope_otlp_metric_points_rejected_total{reason}). */
enum om_reject {
    OM_REJECT_DECODE,        /* refused by the decoder (caps, exponential histograms, ...) */
    OM_REJECT_SERIES_LIMIT,  /* a new series past max_series */
    OM_REJECT_NAME_CLASH,    /* family names collide with another family or meshscope's own */
    OM_REJECT_TYPE_CONFLICT, /* same family name, another type */
    OM_REJECT_INVALID,       /* a point the store cannot use (histogram bounds, NaN count...) */
    OM_REJECT_COUNT
};

/* What one apply did. */
struct om_result {
    uint64_t accepted, rejected;
    char reason[256]; /* the first refusal, "" if none */
};

/* NULL (logged) on failure. Borrows o (copied). */
struct otel_metrics *otel_metrics_create(const struct otel_metrics_options *o);
/* Accepts NULL and half-built stores. No apply or render may run. */
void otel_metrics_destroy(struct otel_metrics *m);

/* Applies n metrics (borrowed; everything is copied) to the store. Any thread. Points are
 * counted in out (accepted or rejected with the first reason). Returns 0, or -ENOMEM (some
 * points may have been applied: the rest are counted as rejected). */
int otel_metrics_apply(struct otel_metrics *m, const struct om_metric *metrics, size_t n,
                       struct om_result *out /* OUT */);

/* Counts points refused before the store saw them (the decoder's rejects). Any thread. */
void otel_metrics_count_rejected(struct otel_metrics *m, enum om_reject why, uint64_t n);

/* Drops series not updated for expiry_ns, and families left without series. Any thread;
 * render and apply call it themselves (apply at most every expiry/4 per shard). */
void otel_metrics_expire(struct otel_metrics *m);

/* Renders every family in Prometheus text format 0.0.4 (HELP/TYPE per family, then samples),
 * followed by the store's own health families, into a malloc'd NUL-terminated buffer. The text
 * is meant to be appended to selfmetrics' text: red_expose turns counter families into
 * OpenMetrics names when the scraper asks for OpenMetrics. Any thread. 0 or -ENOMEM. */
int otel_metrics_render(struct otel_metrics *m, char **out /* OUT */, size_t *out_len /* OUT */);

/* Series currently stored. Any thread. */
uint64_t otel_metrics_series(struct otel_metrics *m);

/* Bytes one series may take at most, for main's memory bound: label text up to 4 KiB, up to
 * 256 histogram bounds and 257 buckets (or 256 quantiles), the structs and allocator slack.
 * Points that would make a larger series are refused. */
#define OTEL_METRICS_SERIES_BYTES 9216

/* ----- naming (exposed for the tests) ----------------------------------------------------- */

/* v as Prometheus writes a number: the shortest text that reads back as v ("0.1"), "NaN",
 * "+Inf", "-Inf". Writes at most n bytes including the NUL; returns the length. */
size_t otel_metrics_format_number(char *out, size_t n, double v);

/* The exposition family name of an OTLP metric: name sanitised, unit suffix, _total for
 * counters (see NAMING above). Writes at most n bytes including the NUL; returns the length it
 * needed (a result >= n was cut). */
size_t otel_metrics_family_name(const char *name, const char *unit, enum om_type type, char *out,
                                size_t n);
/* A label key sanitised ([a-zA-Z0-9_], runs of '_' collapsed, leading digit prefixed). Same
 * return convention. */
size_t otel_metrics_label_key(const char *key, char *out, size_t n);

#endif
