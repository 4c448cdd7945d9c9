/*
 * envoy_metrics.c: Envoy's metrics-service messages -> the metric store's model (mapping in
 * envoy_metrics.h). Bounded like the other protobuf decoders: pbwire_scan counts Metric messages
 * against max_spans and bounds nesting before protobuf-c unpacks with pbwire's budgeted arena;
 * everything the batch keeps is copied into the batch's own arena.
 */
#include "envoy_metrics.h"
#include "decode.h"
#include "pbwire.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/service/metrics/v3/metrics_service.pb-c.h"

typedef Envoy__Service__Metrics__V3__StreamMetricsMessage pb_message;
typedef Io__Prometheus__Client__MetricFamily pb_family;
typedef Io__Prometheus__Client__Metric pb_metric;

struct conv {
    struct om_batch *b;
    const struct decode_limits *lim;
    const struct om_resource *resource;
    char why[200];
};

static struct arena *arena_of(struct om_batch *b)
{
    return b->strings->arena;
}

static void reject(struct om_batch *b, uint64_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reject(struct om_batch *b, uint64_t n, const char *fmt, ...)
{
    b->rejected += n;
    if (b->reason[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->reason, sizeof b->reason, fmt, ap);
    va_end(ap);
}

/* A string copied into the batch arena (valid UTF-8, NUL-terminated); NULL on out of memory. */
static const char *copy(struct conv *c, const char *s)
{
    struct mstr m;
    if (decode_copy_utf8(arena_of(c->b), s ? s : "", s ? strlen(s) : 0, &m)) return NULL;
    return m.ptr;
}

static int set_resource(struct conv *c, const struct envoy_metrics_node *n)
{
    c->resource = NULL;
    if (!n->known) return 0;
    struct om_label *l = arena_alloc(arena_of(c->b), 2 * sizeof *l);
    struct om_resource *r = arena_alloc(arena_of(c->b), sizeof *r);
    if (!l || !r) return -ENOMEM;
    l[0].key = "service.name";
    l[0].value = copy(c, n->cluster[0] ? n->cluster : n->id);
    l[1].key = "service.instance.id";
    l[1].value = copy(c, n->id);
    if (!l[0].value || !l[1].value) return -ENOMEM;
    r->attrs = l;
    r->n_attrs = n->id[0] ? 2 : 1;
    c->resource = r;
    return 0;
}

/* One point; 0, DECODE_REFUSE (c->why) or -ENOMEM. */
static int convert_point(struct conv *c, const pb_family *f, const pb_metric *m, struct om_point *p)
{
    if (m->n_label > c->lim->max_attrs) {
        snprintf(c->why, sizeof c->why, "%zu labels, max %u", m->n_label, c->lim->max_attrs);
        return DECODE_REFUSE;
    }
    struct om_label *labels =
        m->n_label ? arena_alloc(arena_of(c->b), m->n_label * sizeof *labels) : NULL;
    if (m->n_label && !labels) return -ENOMEM;
    for (size_t i = 0; i < m->n_label; i++) {
        const char *k = m->label[i]->name ? m->label[i]->name : "",
                   *v = m->label[i]->value ? m->label[i]->value : "";
        if (strlen(k) > c->lim->max_string || strlen(v) > c->lim->max_string) {
            snprintf(c->why, sizeof c->why, "label over %u bytes", c->lim->max_string);
            return DECODE_REFUSE;
        }
        labels[i].key = copy(c, k);
        labels[i].value = copy(c, v);
        if (!labels[i].key || !labels[i].value) return -ENOMEM;
    }
    memset(p, 0, sizeof *p);
    p->labels = labels;
    p->n_labels = (uint32_t)m->n_label;
    if (m->has_timestamp_ms && m->timestamp_ms > 0 && m->timestamp_ms < INT64_MAX / 1000000)
        p->time_ns = (uint64_t)m->timestamp_ms * 1000000u;
    switch (f->type) {
    case IO__PROMETHEUS__CLIENT__METRIC_TYPE__COUNTER:
        if (!m->counter) break;
        p->value = m->counter->value;
        return 0;
    case IO__PROMETHEUS__CLIENT__METRIC_TYPE__GAUGE:
        if (!m->gauge) break;
        p->value = m->gauge->value;
        return 0;
    case IO__PROMETHEUS__CLIENT__METRIC_TYPE__UNTYPED:
        if (!m->untyped) break;
        p->value = m->untyped->value;
        return 0;
    case IO__PROMETHEUS__CLIENT__METRIC_TYPE__SUMMARY: {
        const Io__Prometheus__Client__Summary *s = m->summary;
        if (!s) break;
        p->count = s->sample_count;
        p->sum = s->sample_sum;
        p->has_sum = true;
        size_t n = s->n_quantile;
        double *q;
        if (om_point_quantiles(c->b, p, n, &q)) return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            q[i] = s->quantile[i]->quantile;
            q[n + i] = s->quantile[i]->value;
        }
        return 0;
    }
    case IO__PROMETHEUS__CLIENT__METRIC_TYPE__HISTOGRAM: {
        const Io__Prometheus__Client__Histogram *h = m->histogram;
        if (!h) break;
        size_t n = h->n_bucket;
        if (n && isinf(h->bucket[n - 1]->upper_bound) && h->bucket[n - 1]->upper_bound > 0) n--;
        double *bounds = n ? arena_alloc(arena_of(c->b), n * sizeof *bounds) : NULL;
        uint64_t *counts = arena_alloc(arena_of(c->b), (n + 1) * sizeof *counts);
        if ((n && !bounds) || !counts) return -ENOMEM;
        uint64_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            const Io__Prometheus__Client__Bucket *bk = h->bucket[i];
            if (i && !(bk->upper_bound > bounds[i - 1])) {
                snprintf(c->why, sizeof c->why, "histogram bounds do not increase");
                return DECODE_REFUSE;
            }
            if (bk->cumulative_count < prev) {
                snprintf(c->why, sizeof c->why, "histogram bucket counts decrease");
                return DECODE_REFUSE;
            }
            bounds[i] = bk->upper_bound;
            counts[i] = bk->cumulative_count - prev;
            prev = bk->cumulative_count;
        }
        if (h->sample_count < prev) {
            snprintf(c->why, sizeof c->why, "histogram sample_count below its buckets");
            return DECODE_REFUSE;
        }
        counts[n] = h->sample_count - prev;
        p->count = h->sample_count;
        p->sum = h->sample_sum;
        p->has_sum = true;
        p->bounds = bounds;
        p->buckets = counts;
        p->n_bounds = (uint32_t)n;
        return 0;
    }
    default:
        snprintf(c->why, sizeof c->why, "metric type %d not supported", (int)f->type);
        return DECODE_REFUSE;
    }
    snprintf(c->why, sizeof c->why, "no value for its type");
    return DECODE_REFUSE;
}

static int convert_family(struct conv *c, const pb_family *f)
{
    static const enum om_type types[] = {OM_COUNTER, OM_GAUGE, OM_SUMMARY, OM_UNTYPED,
                                         OM_HISTOGRAM};
    if (!f->name || !f->name[0]) {
        reject(c->b, f->n_metric, "a metric family without a name");
        return 0;
    }
    if (strlen(f->name) > c->lim->max_string || (f->help && strlen(f->help) > c->lim->max_string)) {
        reject(c->b, f->n_metric, "%.100s: name or help over %u bytes", f->name,
               c->lim->max_string);
        return 0;
    }
    if ((unsigned)f->type >= sizeof types / sizeof types[0]) {
        reject(c->b, f->n_metric, "%.100s: metric type %d not supported", f->name, (int)f->type);
        return 0;
    }
    if (f->n_metric == 0) return 0;
    if (decode_grow((void **)&c->b->metrics, &c->b->cap_metrics, c->b->n_metrics + 1,
                    sizeof *c->b->metrics))
        return -ENOMEM;
    struct om_point *pts = arena_alloc(arena_of(c->b), f->n_metric * sizeof *pts);
    const char *name = copy(c, f->name), *help = copy(c, f->help);
    if (!pts || !name || !help) return -ENOMEM;
    struct om_metric *m = &c->b->metrics[c->b->n_metrics];
    *m = (struct om_metric){.resource = c->resource,
                            .name = name,
                            .help = help,
                            .unit = "",
                            .type = types[f->type],
                            .temporality = OM_CUMULATIVE,
                            .points = pts};
    uint32_t n = 0;
    for (size_t i = 0; i < f->n_metric; i++) {
        int rc = convert_point(c, f, f->metric[i], &pts[n]);
        if (rc < 0) return rc;
        if (rc == DECODE_REFUSE)
            reject(c->b, 1, "%.100s metric %zu: %s", f->name, i, c->why);
        else
            n++;
    }
    m->n_points = n;
    c->b->n_points += n;
    if (n) c->b->n_metrics++;
    return 0;
}

int envoy_metrics_decode(const uint8_t *body, size_t len, const struct decode_limits *lim,
                         struct envoy_metrics_node *node, struct om_batch *out, char *err,
                         size_t errlen)
{
    struct decode_limits storage;
    lim = decode_limits_or_default(lim, &storage);
    if (err && errlen) err[0] = '\0';
    /* As otlp_proto.c: 16 x the body, plus the points (a Metric with its value message unpacks
     * to a few hundred bytes). */
    struct pbwire_unpack u = {
        .sc = {.root = &envoy__service__metrics__v3__stream_metrics_message__descriptor,
               .span = &io__prometheus__client__metric__descriptor,
               .max_spans = lim->max_spans,
               /* the messages are 8 deep at most; Node metadata Structs nest more */
               .max_depth = 64},
        .per_span = 512,
        .slack = 1u << 20,
        .what = "StreamMetricsMessage",
    };
    int rc = pbwire_unpack(&u, body, len, err, errlen);
    if (rc) goto out;
    const pb_message *m = (const pb_message *)u.msg;
    if (m->identifier && m->identifier->node) {
        memset(node, 0, sizeof *node);
        const char *id = m->identifier->node->id, *cluster = m->identifier->node->cluster;
        decode_copy_cut(node->id, sizeof node->id, id, strlen(id));
        decode_copy_cut(node->cluster, sizeof node->cluster, cluster, strlen(cluster));
        node->known = node->id[0] || node->cluster[0];
    }
    struct conv c = {.b = out, .lim = lim};
    rc = set_resource(&c, node);
    for (size_t i = 0; !rc && i < m->n_envoy_metrics; i++)
        rc = convert_family(&c, m->envoy_metrics[i]);
out:
    pbwire_unpack_close(&u);
    if (rc == -E2BIG && err && errlen && !err[0])
        snprintf(err, errlen, "more than %u metrics in one message", lim->max_spans);
    /* !err[0]: a scan that ran out of memory has said so already. */
    if (rc == -ENOMEM && err && errlen && !err[0])
        snprintf(err, errlen, "out of memory decoding the message");
    return rc;
}
