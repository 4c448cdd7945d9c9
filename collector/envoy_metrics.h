/*
 * envoy_metrics.h: the decoder of Envoy's metrics-service stream messages
 * (envoy.service.metrics.v3.StreamMetricsMessage: io.prometheus.client.MetricFamily, the
 * Prometheus data model) into the metric store's model (otel_metrics.h), as that header's
 * "Feeding it from the Prometheus data model" describes:
 *   name -> name (unit ""), help -> help; COUNTER -> counter (cumulative), GAUGE -> gauge,
 *   UNTYPED -> untyped, SUMMARY -> summary (sample_count, sample_sum, quantiles), HISTOGRAM ->
 *   histogram with cumulative bucket counts made per-bucket (a +Inf bucket dropped: implied);
 *   timestamp_ms -> sample time. GAUGE_HISTOGRAM, a metric without the value its type needs,
 *   a histogram whose bounds do not increase or whose counts decrease, and a family without a
 *   name are refused (out->rejected, first reason in out->reason).
 * The node identity: the stream's Identifier.node (first message only; kept per stream in struct
 * envoy_metrics_node) becomes the resource of every family: service.name = node.cluster (Istio:
 * "reviews.default"; else the node id) -> the `job` label, service.instance.id = node.id ->
 * the `instance` label.
 * Limits: lim->max_spans metrics (points) per message (-E2BIG), lim->max_attrs labels per
 * metric, lim->max_string bytes per string (the metric refused alone). -EINVAL undecodable.
 * Thread-safety: none needed (works on the caller's objects).
 */
#ifndef MESHSCOPE_ENVOY_METRICS_H
#define MESHSCOPE_ENVOY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otel_metrics.h"

/* The reporting proxy of one stream (strings cut at 255 bytes). */
struct envoy_metrics_node {
    bool known;
    char id[256];
    char cluster[256];
};

/* Decodes one StreamMetricsMessage (body borrowed) into out (an empty om_batch, borrowed),
 * updating *node from its identifier. Returns 0, -EINVAL (err says why), -E2BIG, -ENOMEM. */
int envoy_metrics_decode(const uint8_t *body, size_t len, const struct decode_limits *lim,
                         struct envoy_metrics_node *node, struct om_batch *out, char *err,
                         size_t errlen);

#endif
