/*
 * otlp_metrics.c: the OTLP metrics decoders (ExportMetricsServiceRequest, protobuf and
 * OTLP/JSON) into the protocol-neutral batch of otel_metrics.h.
 *
 * The protobuf path is the trace decoder's: pbwire_scan bounds nesting before protobuf-c sees
 * a byte, protobuf-c unpacks with pbwire's budgeted arena allocator, and the data points are
 * counted against the per-request cap before anything is converted. The JSON path parses with
 * jansson and walks the tree with otlp_json.c's field helpers. Both convert attributes with the
 * span decoders' own attribute conversion (otlp_int.h), then turn each attribute into a label
 * string here (string values as they are; other types as the OpenTelemetry attribute
 * specification says: decimal integers, shortest round-trip doubles, true/false, base64 bytes,
 * JSON arrays and maps).
 *
 * A point that cannot be used is refused alone with a reason (partial success); a resource or
 * scope over a cap refuses its points; a body that is not an ExportMetricsServiceRequest fails
 * the request and nothing of it is applied.
 */
#include "otel_metrics.h"
#include "decode.h"
#include "otlp_int.h"
#include "pbwire.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"

typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest pb_request;
typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics pb_resource_metrics;
typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics pb_scope_metrics;
typedef Opentelemetry__Proto__Metrics__V1__Metric pb_metric;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint pb_number;
typedef Opentelemetry__Proto__Metrics__V1__HistogramDataPoint pb_histogram;
typedef Opentelemetry__Proto__Metrics__V1__SummaryDataPoint pb_summary;

/* DataPointFlags.FLAG_NO_RECORDED_VALUE: the point marks a gap, it carries no value. */
#define FLAG_NO_RECORDED_VALUE 1u

/* ----- the batch --------------------------------------------------------------------------- */

struct om_batch *om_batch_create(void)
{
    struct om_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->strings = span_batch_create();
    if (!b->strings) {
        free(b);
        return NULL;
    }
    return b;
}

void om_batch_destroy(struct om_batch *b)
{
    if (!b) return;
    span_batch_destroy(b->strings);
    free(b->metrics);
    free(b);
}

int om_point_quantiles(struct om_batch *b, struct om_point *p, size_t n, double **q)
{
    *q = n ? arena_alloc(b->strings->arena, 2 * n * sizeof **q) : NULL;
    if (n && !*q) return -ENOMEM;
    p->quantiles = *q;
    p->quantile_values = *q ? *q + n : NULL;
    p->n_quantiles = (uint32_t)n;
    return 0;
}

static void reject(struct om_batch *b, uint64_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reject(struct om_batch *b, uint64_t n, const char *fmt, ...)
{
    if (n == 0) return;
    b->rejected += n;
    if (b->reason[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->reason, sizeof b->reason, fmt, ap);
    va_end(ap);
}

static struct arena *arena_of(struct om_batch *b)
{
    return b->strings->arena;
}

/* ----- attributes to labels ---------------------------------------------------------------- */

/* Bytes as standard base64, NUL-terminated, in arena a. NULL on -ENOMEM. */
static char *base64(struct arena *a, const uint8_t *p, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    char *out = arena_alloc(a, (n + 2) / 3 * 4 + 1);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = b64[w >> 18 & 63];
        out[o++] = b64[w >> 12 & 63];
        out[o++] = i + 1 < n ? b64[w >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[w & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static json_t *value_json(struct om_batch *b, const struct value *v);

static json_t *kvlist_json(struct om_batch *b, const struct attr *items, uint32_t n)
{
    json_t *o = json_object();
    for (uint32_t i = 0; o && i < n; i++)
        json_object_setn_new_nocheck(o, items[i].key.ptr, items[i].key.len,
                                     value_json(b, &items[i].value));
    return o;
}

/* A value inside an array or map, as JSON (NULL on -ENOMEM: jansson then drops the member). */
static json_t *value_json(struct om_batch *b, const struct value *v)
{
    switch (v->type) {
    case VALUE_STRING:
        return json_stringn_nocheck(v->u.str.ptr, v->u.str.len);
    case VALUE_BOOL:
        return json_boolean(v->u.b);
    case VALUE_INT:
        return json_integer(v->u.i);
    case VALUE_DOUBLE:
        return isfinite(v->u.d) ? json_real(v->u.d) : json_null();
    case VALUE_BYTES: {
        const char *s = base64(arena_of(b), (const uint8_t *)v->u.str.ptr, v->u.str.len);
        return s ? json_string(s) : NULL;
    }
    case VALUE_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < v->u.array.n; i++)
            json_array_append_new(a, value_json(b, &v->u.array.items[i]));
        return a;
    }
    case VALUE_KVLIST:
        return kvlist_json(b, v->u.kvlist.items, v->u.kvlist.n);
    default:
        return json_null();
    }
}

static const char *value_text(struct om_batch *b, const struct value *v)
{
    char tmp[40];
    switch (v->type) {
    case VALUE_STRING:
        return v->u.str.ptr;
    case VALUE_BOOL:
        return v->u.b ? "true" : "false";
    case VALUE_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i);
        return arena_strndup(arena_of(b), tmp, strlen(tmp));
    case VALUE_DOUBLE:
        if (isnan(v->u.d)) return "NaN";
        if (isinf(v->u.d)) return v->u.d > 0 ? "Inf" : "-Inf";
        otel_metrics_format_number(tmp, sizeof tmp, v->u.d);
        return arena_strndup(arena_of(b), tmp, strlen(tmp));
    case VALUE_BYTES:
        return base64(arena_of(b), (const uint8_t *)v->u.str.ptr, v->u.str.len);
    case VALUE_ARRAY:
    case VALUE_KVLIST: {
        json_t *j = value_json(b, v);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(j);
        if (!s) return NULL;
        char *copy = arena_strndup(arena_of(b), s, strlen(s));
        free(s);
        return copy;
    }
    default:
        return "";
    }
}

/* attrs -> labels in the batch arena. 0 or -ENOMEM. */
static int labels_of(struct om_batch *b, const struct attrs *a, const struct om_label **out,
                     uint32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!a->n) return 0;
    struct om_label *l = arena_alloc(arena_of(b), a->n * sizeof *l);
    if (!l) return -ENOMEM;
    for (uint32_t i = 0; i < a->n; i++) {
        l[i].key = a->items[i].key.ptr ? a->items[i].key.ptr : "";
        l[i].value = value_text(b, &a->items[i].value);
        if (!l[i].value) return -ENOMEM;
    }
    *out = l;
    *n_out = a->n;
    return 0;
}

/* ----- metrics and points, whatever the wire format ---------------------------------------- */

/* Appends a metric with room for n points (filled by the caller, n_points counting the kept
 * ones). NULL on -ENOMEM. */
static struct om_metric *add_metric(struct om_batch *b, const struct om_resource *res,
                                    const struct om_scope *scope, size_t n)
{
    if (decode_grow((void **)&b->metrics, &b->cap_metrics, b->n_metrics + 1, sizeof *b->metrics))
        return NULL;
    struct om_metric *m = &b->metrics[b->n_metrics];
    memset(m, 0, sizeof *m);
    m->resource = res;
    m->scope = scope;
    if (n) {
        m->points = arena_alloc(arena_of(b), n * sizeof *m->points);
        if (!m->points) return NULL;
    }
    b->n_metrics++;
    return m;
}

/* Histogram point checks shared by both formats: NULL when usable, else why not. */
static const char *histogram_problem(const struct om_point *p, size_t n_buckets)
{
    if (n_buckets != 0 && n_buckets != (size_t)p->n_bounds + 1)
        return "bucket counts must number explicit bounds + 1";
    if (n_buckets == 0 && p->n_bounds) return "explicit bounds without bucket counts";
    for (uint32_t i = 0; i < p->n_bounds; i++)
        if (!isfinite(p->bounds[i]) || (i && !(p->bounds[i] > p->bounds[i - 1])))
            return "explicit bounds must be finite and strictly increasing";
    uint64_t total = 0;
    for (size_t i = 0; i < n_buckets; i++) {
        if (p->buckets[i] > UINT64_MAX - total) return "bucket counts overflow";
        total += p->buckets[i];
    }
    if (n_buckets && total != p->count) return "bucket counts do not add up to count";
    return NULL;
}

static const char *summary_problem(const struct om_point *p)
{
    for (uint32_t i = 0; i < p->n_quantiles; i++)
        if (!(p->quantiles[i] >= 0 && p->quantiles[i] <= 1))
            return "quantile outside [0, 1]";
    return NULL;
}

/* Sum/histogram temporality: 1 delta, 2 cumulative; anything else refused. */
static bool temporality_of(int t, enum om_temporality *out)
{
    if (t != 1 && t != 2) return false;
    *out = t == 1 ? OM_DELTA : OM_CUMULATIVE;
    return true;
}

static size_t copy_doubles(struct om_batch *b, const double *src, size_t n, const double **out)
{
    double *d = n ? arena_alloc(arena_of(b), n * sizeof *d) : NULL;
    if (n && !d) return (size_t)-1;
    if (n) memcpy(d, src, n * sizeof *d);
    *out = d;
    return n;
}

/* ----- protobuf ---------------------------------------------------------------------------- */

struct pdec {
    struct om_batch *b;
    const struct decode_limits *lim;
    char why[192];
};

static int pb_str(struct pdec *d, const char *s, const char **out, const char *what)
{
    size_t len = s ? strlen(s) : 0;
    if (len > d->lim->max_string) {
        decode_pathf(d->why, sizeof d->why, "%s: string of %zu bytes, max %u", what, len,
                 d->lim->max_string);
        return DECODE_REFUSE;
    }
    struct mstr m;
    if (decode_copy_utf8(arena_of(d->b), s, len, &m)) return -ENOMEM;
    *out = m.ptr;
    return 0;
}

static int pb_labels(struct pdec *d, void *const *kvs, size_t n, const struct om_label **out,
                     uint32_t *n_out, const char *what)
{
    struct attrs a;
    struct otlp_pbconv c = {.b = d->b->strings, .lim = d->lim};
    int rc = otlp_pb_convert_attrs(&c, (Opentelemetry__Proto__Common__V1__KeyValue *const *)kvs,
                                   n, 0, &a, what);
    if (rc == DECODE_REFUSE) snprintf(d->why, sizeof d->why, "%s", c.why);
    if (rc) return rc;
    return labels_of(d->b, &a, out, n_out);
}

/* The fields every point has. DECODE_REFUSE for a point flagged "no recorded value": it marks
 * a gap in the series and carries nothing to store. */
static int point_head(struct pdec *d, uint32_t flags, uint64_t start, uint64_t time,
                      struct om_point *p)
{
    if (flags & FLAG_NO_RECORDED_VALUE) {
        decode_pathf(d->why, sizeof d->why, "no recorded value");
        return DECODE_REFUSE;
    }
    p->start_ns = start;
    p->time_ns = time;
    return 0;
}

/* DECODE_REFUSE with why in d->why when why is set. */
static int problem(struct pdec *d, const char *why)
{
    if (!why) return 0;
    decode_pathf(d->why, sizeof d->why, "%s", why);
    return DECODE_REFUSE;
}

/* Converts one point but its attributes; DECODE_REFUSE (d->why) refuses it alone. */
static int pb_number_point(struct pdec *d, const pb_number *in, struct om_point *p)
{
    if (point_head(d, in->flags, in->start_time_unix_nano, in->time_unix_nano, p))
        return DECODE_REFUSE;
    p->value = in->value_case == OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT
                   ? (double)in->as_int
                   : in->as_double;
    return 0;
}

static int pb_histogram_point(struct pdec *d, const pb_histogram *in, struct om_point *p)
{
    if (point_head(d, in->flags, in->start_time_unix_nano, in->time_unix_nano, p))
        return DECODE_REFUSE;
    p->count = in->count;
    p->has_sum = in->sum_present_case ==
                 OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT__SUM_PRESENT_SUM;
    p->sum = p->has_sum ? in->sum : 0;
    if (in->n_explicit_bounds > UINT32_MAX - 1 || in->n_explicit_bounds > d->lim->max_attrs) {
        decode_pathf(d->why, sizeof d->why, "%zu explicit bounds, max %u", in->n_explicit_bounds,
                 d->lim->max_attrs);
        return DECODE_REFUSE;
    }
    p->n_bounds = (uint32_t)in->n_explicit_bounds;
    if (copy_doubles(d->b, in->explicit_bounds, p->n_bounds, &p->bounds) == (size_t)-1)
        return -ENOMEM;
    uint64_t *bk = NULL;
    if (in->n_bucket_counts) {
        bk = arena_alloc(arena_of(d->b), in->n_bucket_counts * sizeof *bk);
        if (!bk) return -ENOMEM;
        memcpy(bk, in->bucket_counts, in->n_bucket_counts * sizeof *bk);
    }
    p->buckets = bk;
    const char *why = histogram_problem(p, in->n_bucket_counts);
    return problem(d, why);
}

static int pb_summary_point(struct pdec *d, const pb_summary *in, struct om_point *p)
{
    if (point_head(d, in->flags, in->start_time_unix_nano, in->time_unix_nano, p))
        return DECODE_REFUSE;
    p->count = in->count;
    p->sum = in->sum;
    p->has_sum = true;
    size_t n = in->n_quantile_values;
    if (n > d->lim->max_attrs) {
        decode_pathf(d->why, sizeof d->why, "%zu quantiles, max %u", n, d->lim->max_attrs);
        return DECODE_REFUSE;
    }
    double *q;
    if (om_point_quantiles(d->b, p, n, &q)) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        q[i] = in->quantile_values[i]->quantile;
        q[n + i] = in->quantile_values[i]->value;
    }
    const char *why = summary_problem(p);
    return problem(d, why);
}

static size_t pb_points_of(const pb_metric *m)
{
    switch (m->data_case) {
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE:
        return m->gauge->n_data_points;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM:
        return m->sum->n_data_points;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM:
        return m->histogram->n_data_points;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM:
        return m->exponential_histogram->n_data_points;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY:
        return m->summary->n_data_points;
    default:
        return 0;
    }
}

static int pb_metric_convert(struct pdec *d, const pb_metric *in, const struct om_resource *res,
                             const struct om_scope *scope, const char *where)
{
    size_t n = pb_points_of(in);
    if (!n) return 0;
    if (in->data_case == OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM) {
        reject(d->b, n, "%s: exponential histograms are not supported", where);
        return 0;
    }
    const char *name, *help, *unit;
    int rc = pb_str(d, in->name, &name, "name");
    if (!rc) rc = pb_str(d, in->description, &help, "description");
    if (!rc) rc = pb_str(d, in->unit, &unit, "unit");
    if (!rc && !name[0]) {
        decode_pathf(d->why, sizeof d->why, "name: empty");
        rc = DECODE_REFUSE;
    }
    int temporality = 2;
    enum om_type type = OM_GAUGE;
    switch (in->data_case) {
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM:
        temporality = (int)in->sum->aggregation_temporality;
        type = in->sum->is_monotonic ? OM_COUNTER : OM_GAUGE;
        break;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM:
        temporality = (int)in->histogram->aggregation_temporality;
        type = OM_HISTOGRAM;
        break;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY:
        type = OM_SUMMARY;
        break;
    default:
        break;
    }
    enum om_temporality t = OM_CUMULATIVE;
    if (!rc && !temporality_of(temporality, &t)) {
        decode_pathf(d->why, sizeof d->why, "aggregation_temporality %d: want DELTA or CUMULATIVE",
                 temporality);
        rc = DECODE_REFUSE;
    }
    if (rc == DECODE_REFUSE) {
        reject(d->b, n, "%s.%s", where, d->why);
        return 0;
    }
    if (rc) return rc;
    struct om_metric *m = add_metric(d->b, res, scope, n);
    if (!m) return -ENOMEM;
    m->name = name;
    m->help = help;
    m->unit = unit;
    m->type = type;
    m->temporality = t;
    struct om_point *pts = (struct om_point *)m->points;
    for (size_t i = 0; i < n; i++) {
        struct om_point *p = &pts[m->n_points];
        memset(p, 0, sizeof *p);
        void *const *kvs;
        size_t n_kvs;
        switch (in->data_case) {
        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE:
        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM: {
            const pb_number *q = in->data_case == OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM
                                     ? in->sum->data_points[i]
                                     : in->gauge->data_points[i];
            rc = pb_number_point(d, q, p);
            kvs = (void *const *)q->attributes;
            n_kvs = q->n_attributes;
            break;
        }
        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM: {
            const pb_histogram *q = in->histogram->data_points[i];
            rc = pb_histogram_point(d, q, p);
            kvs = (void *const *)q->attributes;
            n_kvs = q->n_attributes;
            break;
        }
        default: {
            const pb_summary *q = in->summary->data_points[i];
            rc = pb_summary_point(d, q, p);
            kvs = (void *const *)q->attributes;
            n_kvs = q->n_attributes;
            break;
        }
        }
        if (!rc) rc = pb_labels(d, kvs, n_kvs, &p->labels, &p->n_labels, "attributes");
        if (rc == DECODE_REFUSE) {
            reject(d->b, 1, "%s.data_points[%zu].%s", where, i, d->why);
            continue;
        }
        if (rc) return rc;
        m->n_points++;
    }
    d->b->n_points += m->n_points;
    return 0;
}

static int pb_request_convert(struct pdec *d, const pb_request *req)
{
    for (size_t ri = 0; ri < req->n_resource_metrics; ri++) {
        const pb_resource_metrics *rm = req->resource_metrics[ri];
        struct om_resource *res = arena_alloc(arena_of(d->b), sizeof *res);
        if (!res) return -ENOMEM;
        memset(res, 0, sizeof *res);
        int rc = 0;
        if (rm->resource)
            rc = pb_labels(d, (void *const *)rm->resource->attributes,
                           rm->resource->n_attributes, &res->attrs, &res->n_attrs,
                           "resource.attributes");
        for (size_t si = 0; si < rm->n_scope_metrics; si++) {
            const pb_scope_metrics *sm = rm->scope_metrics[si];
            char where[96];
            struct om_scope *scope = arena_alloc(arena_of(d->b), sizeof *scope);
            if (!scope) return -ENOMEM;
            scope->name = scope->version = "";
            int src = rc;
            if (!src && sm->scope) src = pb_str(d, sm->scope->name, &scope->name, "scope.name");
            if (!src && sm->scope)
                src = pb_str(d, sm->scope->version, &scope->version, "scope.version");
            if (src == DECODE_REFUSE) {
                uint64_t n = 0;
                for (size_t mi = 0; mi < sm->n_metrics; mi++) n += pb_points_of(sm->metrics[mi]);
                reject(d->b, n, "resource_metrics[%zu].%s", ri, d->why);
                continue;
            }
            if (src) return src;
            for (size_t mi = 0; mi < sm->n_metrics; mi++) {
                decode_pathf(where, sizeof where, "resource_metrics[%zu].scope_metrics[%zu].metrics[%zu]",
                             ri, si, mi);
                rc = pb_metric_convert(d, sm->metrics[mi], res, scope, where);
                if (rc) return rc;
            }
        }
    }
    return 0;
}

/* Nesting room as in the trace decoder (otlp_proto.c): the deepest fixed path plus three levels
 * per AnyValue nesting level, within [100, 400]. */
static unsigned wire_depth(const struct decode_limits *lim)
{
    uint64_t need = 8 + 3 * ((uint64_t)lim->max_depth + 2);
    return need < 100 ? 100 : need > 400 ? 400 : (unsigned)need;
}

int otlp_decode_metrics_proto(const uint8_t *body, size_t len, const struct decode_limits *lim,
                              struct om_batch *out, char *err, size_t errlen)
{
    struct decode_limits defaults;
    lim = decode_limits_or_default(lim, &defaults);
    if (len && !body) return -EINVAL;
    /* As for traces: 16 x the body for honest messages, plus room per counted point (an empty
     * NumberDataPoint is 2 wire bytes but ~100 unpacked). */
    struct pbwire_unpack u = {
        .sc =
            {.root =
                 &opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__descriptor,
             /* Number points (the commonest) are counted on the wire, failing a flood of them
              * before unpacking; all four point types are counted against the cap once
              * unpacked. */
             .span = &opentelemetry__proto__metrics__v1__number_data_point__descriptor,
             .max_spans = lim->max_spans,
             .max_depth = wire_depth(lim),
             .items = "data points"},
        .per_span = 128,
        .slack = 1u << 20,
        .what = "ExportMetricsServiceRequest",
    };
    int rc = pbwire_unpack(&u, body, len, err, errlen);
    if (rc) goto out;
    const pb_request *req = (const pb_request *)u.msg;
    uint64_t points = 0;
    for (size_t ri = 0; ri < req->n_resource_metrics; ri++)
        for (size_t si = 0; si < req->resource_metrics[ri]->n_scope_metrics; si++) {
            const pb_scope_metrics *sm = req->resource_metrics[ri]->scope_metrics[si];
            for (size_t mi = 0; mi < sm->n_metrics; mi++) points += pb_points_of(sm->metrics[mi]);
        }
    if (points > lim->max_spans) {
        if (err && errlen)
            snprintf(err, errlen, "more than %u data points in one request", lim->max_spans);
        rc = -E2BIG;
        goto out;
    }
    struct pdec d = {.b = out, .lim = lim};
    rc = pb_request_convert(&d, req);
out:
    pbwire_unpack_close(&u);
    if (rc == -ENOMEM && err && errlen) snprintf(err, errlen, "out of memory decoding the request");
    return rc;
}

/* ----- OTLP/JSON --------------------------------------------------------------------------- */

static int js_labels(struct otlp_jconv *c, struct om_batch *b, const json_t *obj, const char *path,
                     const char *what, const struct om_label **out, uint32_t *n_out)
{
    struct attrs a;
    int rc = otlp_json_attrs(c, obj, path, what, &a);
    if (rc) return rc;
    return labels_of(b, &a, out, n_out);
}

static int js_str(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *path,
                  const char *what, const char **out)
{
    struct mstr m;
    int rc = otlp_json_str(c, obj, camel, NULL, path, what, &m);
    if (!rc) *out = m.ptr;
    return rc;
}

static int js_double(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *path,
                     double *out, bool *present)
{
    json_t *v = otlp_json_field(obj, camel, NULL);
    *out = 0;
    if (present) *present = v != NULL;
    if (!v) return 0;
    if (!otlp_json_to_double(v, out)) {
        decode_pathf(c->err, sizeof c->err, "%s.%s: expected a number", path, camel);
        return -EINVAL;
    }
    return 0;
}

/* A JSON array of numbers (doubles, or unsigned integers when u64 is set) into the arena. */
static int js_numbers(struct otlp_jconv *c, struct om_batch *b, const json_t *obj, const char *camel,
                      const char *path, bool u64, void **out, size_t *n)
{
    json_t *arr;
    int rc = otlp_json_array(c, obj, camel, NULL, path, &arr, n);
    *out = NULL;
    if (rc || !*n) return rc;
    if (*n > c->lim->max_attrs) {
        decode_pathf(c->why, sizeof c->why, "%s: %zu values, max %u", camel, *n, c->lim->max_attrs);
        return DECODE_REFUSE;
    }
    uint64_t *p = arena_alloc(arena_of(b), *n * sizeof *p);
    if (!p) return -ENOMEM;
    for (size_t i = 0; i < *n; i++) {
        json_t *v = json_array_get(arr, i);
        bool neg, ok;
        if (u64) {
            ok = otlp_json_to_int(v, UINT64_MAX, 0, &neg, &p[i]);
        } else {
            double dv;
            ok = otlp_json_to_double(v, &dv);
            memcpy(&p[i], &dv, sizeof dv);
        }
        if (!ok) {
            decode_pathf(c->err, sizeof c->err, "%s.%s[%zu]: expected %s", path, camel, i,
                     u64 ? "an unsigned 64-bit integer" : "a number");
            return -EINVAL;
        }
    }
    *out = p;
    return 0;
}

static int js_point(struct otlp_jconv *c, struct om_batch *b, const json_t *jp, const char *path,
                    enum om_type type, struct om_point *p)
{
    if (!json_is_object(jp)) {
        decode_pathf(c->err, sizeof c->err, "%s: expected an object, got %s", path,
                 decode_json_type_name(jp));
        return -EINVAL;
    }
    uint64_t flags = 0;
    int rc = otlp_json_u64(c, jp, "startTimeUnixNano", "start_time_unix_nano", path,
                               &p->start_ns);
    if (!rc) rc = otlp_json_u64(c, jp, "timeUnixNano", "time_unix_nano", path, &p->time_ns);
    if (!rc) rc = otlp_json_u64(c, jp, "flags", NULL, path, &flags);
    if (rc) return rc;
    if (type == OM_HISTOGRAM || type == OM_SUMMARY) {
        rc = otlp_json_u64(c, jp, "count", NULL, path, &p->count);
        if (!rc) rc = js_double(c, jp, "sum", path, &p->sum, &p->has_sum);
        if (rc) return rc;
    }
    if (type == OM_HISTOGRAM) {
        void *bounds, *buckets;
        size_t nb, nc;
        rc = js_numbers(c, b, jp, "explicitBounds", path, false, &bounds, &nb);
        if (!rc) rc = js_numbers(c, b, jp, "bucketCounts", path, true, &buckets, &nc);
        if (rc) return rc;
        p->bounds = bounds;
        p->n_bounds = (uint32_t)nb;
        p->buckets = buckets;
        const char *why = histogram_problem(p, nc);
        if (why) {
            decode_pathf(c->why, sizeof c->why, "%s", why);
            return DECODE_REFUSE;
        }
    } else if (type == OM_SUMMARY) {
        json_t *qv;
        size_t n;
        rc = otlp_json_array(c, jp, "quantileValues", "quantile_values", path, &qv, &n);
        if (rc) return rc;
        if (n > c->lim->max_attrs) {
            decode_pathf(c->why, sizeof c->why, "%zu quantiles, max %u", n, c->lim->max_attrs);
            return DECODE_REFUSE;
        }
        double *q;
        if (om_point_quantiles(b, p, n, &q)) return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            char sub[256];
            json_t *e = json_array_get(qv, i);
            decode_pathf(sub, sizeof sub, "%s.quantileValues[%zu]", path, i);
            if (!json_is_object(e)) {
                decode_pathf(c->err, sizeof c->err, "%s: expected an object", sub);
                return -EINVAL;
            }
            rc = js_double(c, e, "quantile", sub, &q[i], NULL);
            if (!rc) rc = js_double(c, e, "value", sub, &q[n + i], NULL);
            if (rc) return rc;
        }
        const char *why = summary_problem(p);
        if (why) {
            decode_pathf(c->why, sizeof c->why, "%s", why);
            return DECODE_REFUSE;
        }
    } else {
        json_t *v;
        if ((v = otlp_json_field(jp, "asInt", "as_int"))) {
            bool neg;
            uint64_t mag;
            if (!otlp_json_to_int(v, INT64_MAX, (uint64_t)INT64_MAX + 1, &neg, &mag)) {
                decode_pathf(c->err, sizeof c->err, "%s.asInt: expected a 64-bit integer", path);
                return -EINVAL;
            }
            p->value = neg ? -(double)mag : (double)mag;
        } else {
            rc = js_double(c, jp, "asDouble", path, &p->value, NULL);
            if (rc) return rc;
        }
    }
    if (flags & FLAG_NO_RECORDED_VALUE) {
        decode_pathf(c->why, sizeof c->why, "no recorded value");
        return DECODE_REFUSE;
    }
    return js_labels(c, b, jp, path, "attributes", &p->labels, &p->n_labels);
}

static const char *const temporality_names[] = {"AGGREGATION_TEMPORALITY_UNSPECIFIED",
                                                "AGGREGATION_TEMPORALITY_DELTA",
                                                "AGGREGATION_TEMPORALITY_CUMULATIVE"};

/* The data member of a metric: its kind, the object and its points. */
struct js_data {
    const char *key;
    enum om_type type;
};
static const struct js_data js_kinds[] = {
    {"gauge", OM_GAUGE},         {"sum", OM_COUNTER},      {"histogram", OM_HISTOGRAM},
    {"summary", OM_SUMMARY},     {"exponentialHistogram", OM_UNTYPED},
};

static int js_metric(struct otlp_jconv *c, struct om_batch *b, const json_t *jm, const char *path,
                     const struct om_resource *res, const struct om_scope *scope)
{
    if (!json_is_object(jm)) {
        decode_pathf(c->err, sizeof c->err, "%s: expected an object, got %s", path,
                 decode_json_type_name(jm));
        return -EINVAL;
    }
    const struct js_data *kind = NULL;
    json_t *data = NULL, *pts = NULL;
    size_t n = 0;
    char sub[256];
    int rc = 0;
    for (size_t k = 0; k < sizeof js_kinds / sizeof js_kinds[0] && !kind; k++) {
        const char *snake = strcmp(js_kinds[k].key, "exponentialHistogram") == 0
                                ? "exponential_histogram"
                                : NULL;
        if ((rc = otlp_json_object(c, jm, js_kinds[k].key, snake, path, &data))) return rc;
        if (data) kind = &js_kinds[k];
    }
    if (!kind) return 0; /* no data: nothing to apply */
    decode_pathf(sub, sizeof sub, "%s.%s", path, kind->key);
    if ((rc = otlp_json_array(c, data, "dataPoints", "data_points", sub, &pts, &n))) return rc;
    if (!n) return 0;
    if (kind->type == OM_UNTYPED) {
        reject(b, n, "%s: exponential histograms are not supported", path);
        return 0;
    }
    const char *name = "", *help = "", *unit = "";
    int temporality = 2, monotonic = 1;
    rc = js_str(c, jm, "name", path, "name", &name);
    if (!rc) rc = js_str(c, jm, "description", path, "description", &help);
    if (!rc) rc = js_str(c, jm, "unit", path, "unit", &unit);
    if (!rc && (kind->type == OM_COUNTER || kind->type == OM_HISTOGRAM))
        rc = otlp_json_enum(c, data, "aggregationTemporality", "aggregation_temporality", sub,
                                temporality_names, 3, &temporality);
    if (!rc && kind->type == OM_COUNTER) {
        json_t *mono = otlp_json_field(data, "isMonotonic", "is_monotonic");
        if (mono && !json_is_boolean(mono)) {
            decode_pathf(c->err, sizeof c->err, "%s.isMonotonic: expected a boolean, got %s", sub,
                     decode_json_type_name(mono));
            return -EINVAL;
        }
        monotonic = json_is_true(mono);
    }
    if (rc < 0) return rc;
    enum om_temporality t = OM_CUMULATIVE;
    if (!rc && !name[0]) {
        decode_pathf(c->why, sizeof c->why, "name: empty");
        rc = DECODE_REFUSE;
    }
    if (!rc && !temporality_of(temporality, &t)) {
        decode_pathf(c->why, sizeof c->why, "aggregationTemporality %d: want DELTA or CUMULATIVE",
                 temporality);
        rc = DECODE_REFUSE;
    }
    if (rc == DECODE_REFUSE) {
        /* The points are still checked for type errors: a malformed body fails whole. */
        reject(b, n, "%s.%s", path, c->why);
        return 0;
    }
    struct om_metric *m = add_metric(b, res, scope, n);
    if (!m) return -ENOMEM;
    m->name = name;
    m->help = help;
    m->unit = unit;
    m->type = kind->type == OM_COUNTER && !monotonic ? OM_GAUGE : kind->type;
    m->temporality = t;
    struct om_point *out = (struct om_point *)m->points;
    for (size_t i = 0; i < n; i++) {
        char pp[256];
        struct om_point *p = &out[m->n_points];
        memset(p, 0, sizeof *p);
        decode_pathf(pp, sizeof pp, "%s.dataPoints[%zu]", sub, i);
        rc = js_point(c, b, json_array_get(pts, i), pp, kind->type, p);
        if (rc == DECODE_REFUSE) {
            reject(b, 1, "%s.%s", pp, c->why);
            continue;
        }
        if (rc) return rc;
        m->n_points++;
    }
    b->n_points += m->n_points;
    return 0;
}

static uint64_t js_count_points(const json_t *root)
{
    uint64_t n = 0;
    const json_t *rms = otlp_json_field(root, "resourceMetrics", "resource_metrics");
    for (size_t ri = 0; ri < json_array_size(rms); ri++) {
        const json_t *sms = otlp_json_field(json_array_get(rms, ri), "scopeMetrics", "scope_metrics");
        for (size_t si = 0; si < json_array_size(sms); si++) {
            const json_t *ms = otlp_json_field(json_array_get(sms, si), "metrics", NULL);
            for (size_t mi = 0; mi < json_array_size(ms); mi++) {
                const json_t *m = json_array_get(ms, mi);
                for (size_t k = 0; k < sizeof js_kinds / sizeof js_kinds[0]; k++) {
                    const json_t *dp = otlp_json_field(
                        otlp_json_field(m, js_kinds[k].key, NULL), "dataPoints", "data_points");
                    n += json_array_size(dp);
                }
            }
        }
    }
    return n;
}

static int js_request(struct otlp_jconv *c, struct om_batch *b, const json_t *root)
{
    json_t *rms;
    size_t n_rm;
    if (!json_is_object(root)) {
        decode_pathf(c->err, sizeof c->err, "request: expected an object, got %s",
                 decode_json_type_name(root));
        return -EINVAL;
    }
    int rc = otlp_json_array(c, root, "resourceMetrics", "resource_metrics", "request", &rms,
                                 &n_rm);
    for (size_t ri = 0; !rc && ri < n_rm; ri++) {
        char path[96];
        json_t *rm = json_array_get(rms, ri), *jres, *sms;
        size_t n_sm;
        decode_pathf(path, sizeof path, "resourceMetrics[%zu]", ri);
        if (!json_is_object(rm)) {
            decode_pathf(c->err, sizeof c->err, "%s: expected an object", path);
            return -EINVAL;
        }
        struct om_resource *res = arena_alloc(arena_of(b), sizeof *res);
        if (!res) return -ENOMEM;
        memset(res, 0, sizeof *res);
        char rpath[128];
        decode_pathf(rpath, sizeof rpath, "%s.resource", path);
        int res_rc = otlp_json_object(c, rm, "resource", NULL, path, &jres);
        if (!res_rc && jres)
            res_rc = js_labels(c, b, jres, rpath, "resource.attributes", &res->attrs,
                               &res->n_attrs);
        if (res_rc < 0) return res_rc;
        char res_why[sizeof c->why];
        snprintf(res_why, sizeof res_why, "%s", res_rc ? c->why : "");
        if ((rc = otlp_json_array(c, rm, "scopeMetrics", "scope_metrics", path, &sms, &n_sm)))
            return rc;
        for (size_t si = 0; si < n_sm; si++) {
            char spath[128];
            json_t *sm = json_array_get(sms, si), *js, *ms;
            size_t n_m;
            decode_pathf(spath, sizeof spath, "%s.scopeMetrics[%zu]", path, si);
            if (!json_is_object(sm)) {
                decode_pathf(c->err, sizeof c->err, "%s: expected an object", spath);
                return -EINVAL;
            }
            struct om_scope *scope = arena_alloc(arena_of(b), sizeof *scope);
            if (!scope) return -ENOMEM;
            scope->name = scope->version = "";
            int src = res_rc;
            if ((rc = otlp_json_object(c, sm, "scope", NULL, spath, &js))) return rc;
            if (!src && js) src = js_str(c, js, "name", spath, "scope.name", &scope->name);
            if (!src && js)
                src = js_str(c, js, "version", spath, "scope.version", &scope->version);
            if (src < 0) return src;
            char why[sizeof c->why];
            snprintf(why, sizeof why, "%s", res_rc ? res_why : src ? c->why : "");
            if ((rc = otlp_json_array(c, sm, "metrics", NULL, spath, &ms, &n_m))) return rc;
            for (size_t mi = 0; mi < n_m; mi++) {
                char mpath[160];
                decode_pathf(mpath, sizeof mpath, "%s.metrics[%zu]", spath, mi);
                if (src == DECODE_REFUSE) {
                    /* Still parsed for type errors; its points are refused. */
                    size_t before = b->n_metrics;
                    if ((rc = js_metric(c, b, json_array_get(ms, mi), mpath, res, scope)))
                        return rc;
                    for (size_t k = before; k < b->n_metrics; k++) {
                        b->n_points -= b->metrics[k].n_points;
                        reject(b, b->metrics[k].n_points, "%s.%s", spath, why);
                    }
                    b->n_metrics = before;
                    continue;
                }
                if ((rc = js_metric(c, b, json_array_get(ms, mi), mpath, res, scope))) return rc;
            }
        }
    }
    return rc;
}

int otlp_decode_metrics_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                             struct om_batch *out, char *err, size_t errlen)
{
    struct decode_limits defaults;
    lim = decode_limits_or_default(lim, &defaults);
    json_t *root = decode_json_load(body, len, err, errlen);
    if (!root) return -EINVAL;
    int rc;
    if (js_count_points(root) > lim->max_spans) {
        if (err && errlen)
            snprintf(err, errlen, "more than %u data points in one request", lim->max_spans);
        rc = -E2BIG;
    } else {
        struct otlp_jconv c = {.b = out->strings, .lim = lim};
        rc = js_request(&c, out, root);
        if (rc == -EINVAL && err && errlen) snprintf(err, errlen, "%s", c.err);
    }
    json_decref(root);
    if (rc == -ENOMEM && err && errlen) snprintf(err, errlen, "out of memory decoding the request");
    return rc;
}
