/*
 * fuzz_metrics.h: the body of the OTLP metrics fuzz targets (fuzz_otlp_metrics_proto.c,
 * fuzz_otlp_metrics_json.c). Any input, default limits; the decoder must not crash, leak or
 * overrun, what it keeps must hold the model's invariants (below), and the batch is applied to
 * a small store and rendered, so naming, label building and exposition see the same inputs.
 */
#ifndef MESHSCOPE_FUZZ_METRICS_H
#define MESHSCOPE_FUZZ_METRICS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otel_metrics.h"

typedef int (*metrics_decode_fn)(const uint8_t *body, size_t len,
                                 const struct decode_limits *lim, struct om_batch *out, char *err,
                                 size_t errlen);

static void check(const struct om_batch *b, const struct decode_limits *lim)
{
    if (b->n_points > lim->max_spans) abort();
    if (b->rejected && !b->reason[0]) abort();
    uint64_t points = 0;
    for (size_t i = 0; i < b->n_metrics; i++) {
        const struct om_metric *m = &b->metrics[i];
        if (!m->name || !m->name[0] || !m->help || !m->unit) abort();
        points += m->n_points;
        for (uint32_t k = 0; k < m->n_points; k++) {
            const struct om_point *p = &m->points[k];
            if (p->n_labels > lim->max_attrs) abort();
            for (uint32_t l = 0; l < p->n_labels; l++)
                if (!p->labels[l].key || !p->labels[l].value) abort();
            if (m->type == OM_HISTOGRAM) {
                uint64_t sum = 0;
                for (uint32_t j = 0; p->buckets && j <= p->n_bounds; j++) sum += p->buckets[j];
                if (p->buckets && sum != p->count) abort();
            }
        }
    }
    if (points != b->n_points) abort();
}

static int fuzz_metrics(metrics_decode_fn decode, const uint8_t *data, size_t size)
{
    static struct otel_metrics *store;
    if (!store) {
        /* Shared across inputs (as in the daemon); a small limit keeps it small. */
        struct otel_metrics_options o = {.max_series = 200, .expiry_ns = 0};
        store = otel_metrics_create(&o);
        if (!store) abort();
    }
    struct decode_limits lim;
    decode_limits_default(&lim);
    struct om_batch *b = om_batch_create();
    if (!b) return 0;
    char err[512];
    int rc = decode(data, size, &lim, b, err, sizeof err);
    if (rc == 0) {
        check(b, &lim);
        struct om_result r;
        if (otel_metrics_apply(store, b->metrics, b->n_metrics, &r) == 0 &&
            r.accepted + r.rejected != b->n_points)
            abort();
        char *text;
        size_t len;
        if (otel_metrics_render(store, &text, &len) == 0) {
            if (strlen(text) != len) abort();
            free(text);
        }
    } else if (rc != -EINVAL && rc != -E2BIG && rc != -ENOMEM) {
        abort();
    } else if (!err[0]) {
        abort();
    }
    om_batch_destroy(b);
    return 0;
}

#endif
