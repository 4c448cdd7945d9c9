/*
 * fuzz_otlp_metrics.c: libFuzzer target for the OTLP metrics decoders, built twice by
 * tests/fuzz/fuzz.cmake: fuzz_otlp_metrics_proto (otlp_decode_metrics_proto) and, with
 * -DFUZZ_METRICS_JSON, fuzz_otlp_metrics_json. Any input, default limits; the decoder must not
 * crash, leak or overrun, what it keeps must hold the model's invariants (below), and the batch
 * is applied to a small store and rendered, so naming, label building and exposition see the
 * same inputs.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otel_metrics.h"

#ifdef FUZZ_METRICS_JSON
#define DECODE otlp_decode_metrics_json
#else
#define DECODE otlp_decode_metrics_proto
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
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
    int rc = DECODE(data, size, &lim, b, err, sizeof err);
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
