/*
 * red_render.c: the exposition of the RED metrics, and the /metrics document around them.
 *
 * Prometheus text format 0.0.4 by default; OpenMetrics 1.0 when the scraper asks for it: there
 * a counter family is named without its _total suffix (samples keep it), counters and histogram
 * buckets carry the latest exemplar ({trace_id, span_id} value timestamp) and "# EOF" ends the
 * document. The same le texts are used in both formats (Istio's spelling: "0.5", "1", ...), so a
 * Prometheus that switches format keeps one series per bucket.
 *
 * Rendering copies bytes: label texts were escaped when their series was created, numbers are
 * formatted by hand (snprintf only for float sums). Each shard's lock is held while its series
 * of one family are copied out, which is the only contact with the ingest path.
 */
#include "red_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

bool red_buf_reserve(struct red_buf *b, size_t n)
{
    if (b->oom) return false;
    if (b->cap - b->len >= n) return true;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap - b->len < n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void put(struct red_buf *b, const char *s, size_t n)
{
    if (!red_buf_reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}
#define PUT(b, x) put(b, x, sizeof(x) - 1)

static void puts_(struct red_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_u64(struct red_buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b, tmp + i, sizeof tmp - i);
}

static void put_double(struct red_buf *b, double v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%.17g", v);
    if (n > 0) put(b, tmp, (size_t)n);
}

static void put_hex(struct red_buf *b, const uint8_t *id, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!red_buf_reserve(b, 2 * n)) return;
    for (size_t i = 0; i < n; i++) {
        b->p[b->len++] = hex[id[i] >> 4];
        b->p[b->len++] = hex[id[i] & 15];
    }
}

/* " # {trace_id="...",span_id="..."} value timestamp" (OpenMetrics only). */
static void put_exemplar(struct red_buf *b, const struct exemplar *e)
{
    if (!e->ts_ms) return;
    PUT(b, " # {trace_id=\"");
    put_hex(b, e->trace_id, 16);
    PUT(b, "\",span_id=\"");
    put_hex(b, e->span_id, 8);
    PUT(b, "\"} ");
    put_double(b, e->value);
    put(b, " ", 1);
    put_u64(b, e->ts_ms / 1000);
    char ms[5] = {'.', (char)('0' + e->ts_ms % 1000 / 100), (char)('0' + e->ts_ms % 100 / 10),
                  (char)('0' + e->ts_ms % 10), 0};
    put(b, ms, 4);
}

static void header(struct red_buf *b, const char *name, size_t name_len, const char *type,
                   const char *help)
{
    PUT(b, "# HELP ");
    put(b, name, name_len);
    put(b, " ", 1);
    puts_(b, help);
    PUT(b, "\n# TYPE ");
    put(b, name, name_len);
    put(b, " ", 1);
    puts_(b, type);
    put(b, "\n", 1);
}

static void counter_header(struct red_buf *b, const char *name, const char *help, bool om)
{
    size_t n = strlen(name);
    header(b, name, om ? n - 6 : n, "counter", help); /* OpenMetrics: family without _total */
}

static void sample_start(struct red_buf *b, const char *name, size_t nlen, struct series *s)
{
    put(b, name, nlen);
    put(b, "{", 1);
    put(b, series_labels(s), s->labels_len);
}

static void render_counter(struct red_buf *b, struct series *s, const char *name, uint64_t v,
                           bool om, bool exemplar)
{
    sample_start(b, name, strlen(name), s);
    PUT(b, "} ");
    put_u64(b, v);
    if (om && exemplar && v) put_exemplar(b, &s->ex);
    put(b, "\n", 1);
}

static void render_hist(struct red_buf *b, struct series *s, uint32_t i, bool om)
{
    const struct hist_def *d = red_groups[s->group].hist[i];
    struct hist *h = series_hist(s, i);
    const struct exemplar *ex = d->exemplars ? hist_exemplars(d, h) : NULL;
    size_t nlen = strlen(d->name);
    char name[96];
    memcpy(name, d->name, nlen);
    memcpy(name + nlen, "_bucket", 7);
    uint64_t cum = 0;
    for (uint32_t k = 0; k <= d->n_bounds; k++) {
        cum += h->b[k];
        sample_start(b, name, nlen + 7, s);
        PUT(b, ",le=\"");
        if (k < d->n_bounds) puts_(b, d->le[k]);
        else PUT(b, "+Inf");
        PUT(b, "\"} ");
        put_u64(b, cum);
        if (om && ex && h->b[k]) put_exemplar(b, &ex[k]);
        put(b, "\n", 1);
    }
    memcpy(name + nlen, "_sum", 4);
    sample_start(b, name, nlen + 4, s);
    PUT(b, "} ");
    put_double(b, h->sum);
    memcpy(name + nlen, "_count", 6);
    put(b, "\n", 1);
    sample_start(b, name, nlen + 6, s);
    PUT(b, "} ");
    put_u64(b, cum);
    put(b, "\n", 1);
}

/* What to render of a group for one family: the counter (0), the failed counter (1) or
 * histogram i (2 + i). */
static void render_family(struct red *r, struct red_buf *b, enum group g, int what, bool om)
{
    for (int i = 0; i < RED_SHARDS; i++) {
        struct series_shard *sh = &r->shards[i];
        pthread_mutex_lock(&sh->mu);
        for (struct series *s = sh->groups[g]; s; s = s->gnext) {
            if (what == 0) render_counter(b, s, red_groups[g].counter, s->count, om, true);
            else if (what == 1) render_counter(b, s, red_groups[g].failed, s->failed, om, false);
            else render_hist(b, s, (uint32_t)(what - 2), om);
        }
        pthread_mutex_unlock(&sh->mu);
    }
}

/* Appends every family of r to b. */
static void render_into(struct red *r, bool om, struct red_buf *buf)
{
    struct red_buf b = *buf;
    if (r) {
        red_expire(r);
        for (int g = 0; g < G_COUNT; g++) {
            const struct group_def *d = &red_groups[g];
            counter_header(&b, d->counter, d->counter_help, om);
            render_family(r, &b, (enum group)g, 0, om);
            if (d->failed) {
                counter_header(&b, d->failed, d->failed_help, om);
                render_family(r, &b, (enum group)g, 1, om);
            }
            for (uint32_t i = 0; i < d->n_hist; i++) {
                const struct hist_def *h = d->hist[i];
                header(&b, h->name, strlen(h->name), "histogram", h->help);
                render_family(r, &b, (enum group)g, 2 + (int)i, om);
            }
        }
        /* The module's own health. */
        counter_header(&b, "meshscope_metrics_overflow_total",
                       "Observations folded into a family's otel_metric_overflow=\"true\" series "
                       "because its label sets reached --metrics-series-limit.",
                       om);
        for (int g = 0; g < G_COUNT; g++) {
            PUT(&b, "meshscope_metrics_overflow_total{metric=\"");
            puts_(&b, red_groups[g].counter);
            PUT(&b, "\"} ");
            put_u64(&b, atomic_load_explicit(&r->overflowed[g], memory_order_relaxed));
            put(&b, "\n", 1);
        }
        header(&b, "meshscope_metrics_series", strlen("meshscope_metrics_series"), "gauge",
               "Label sets (series) per RED metric family; histograms share their counter's.");
        for (int g = 0; g < G_COUNT; g++) {
            PUT(&b, "meshscope_metrics_series{metric=\"");
            puts_(&b, red_groups[g].counter);
            PUT(&b, "\"} ");
            put_u64(&b, atomic_load_explicit(&r->n_series[g], memory_order_relaxed));
            put(&b, "\n", 1);
        }
        header(&b, "meshscope_service_graph_pending_spans",
               strlen("meshscope_service_graph_pending_spans"), "gauge",
               "CLIENT/SERVER spans waiting for their other half.");
        PUT(&b, "meshscope_service_graph_pending_spans ");
        put_u64(&b, atomic_load_explicit(&r->n_pending, memory_order_relaxed));
        put(&b, "\n", 1);
        header(&b, "meshscope_service_graph_pending_records",
               strlen("meshscope_service_graph_pending_records"), "gauge",
               "Access-log records waiting for the other proxy's record of the same call.");
        PUT(&b, "meshscope_service_graph_pending_records ");
        put_u64(&b, atomic_load_explicit(&r->n_rec, memory_order_relaxed));
        put(&b, "\n", 1);
        counter_header(&b, "meshscope_service_graph_records_total",
                       "Access-log records on the service graph, by outcome: paired (counted once "
                       "with the other proxy's record), unpaired, traced (counted by their "
                       "request's spans), no_id and store_full (counted alone at once).",
                       om);
        for (int k = 0; k < REC_OUTCOMES; k++) {
            PUT(&b, "meshscope_service_graph_records_total{outcome=\"");
            puts_(&b, red_rec_outcome_label[k]);
            PUT(&b, "\"} ");
            put_u64(&b, atomic_load_explicit(&r->rec_outcome[k], memory_order_relaxed));
            put(&b, "\n", 1);
        }
    }
    *buf = b;
}

int red_render(struct red *r, bool om, char **out, size_t *out_len)
{
    struct red_buf b = {0};
    red_buf_reserve(&b, 65536);
    render_into(r, om, &b);
    put(&b, "", 1); /* a NUL after the text, not counted */
    if (b.oom) {
        free(b.p);
        return -ENOMEM;
    }
    *out = b.p;
    *out_len = b.len - 1;
    return 0;
}

/* ----- negotiation --------------------------------------------------------------------------- */

/* Walks "a/b;p=1;q=0.5, c/d" calling back each media range (trimmed) with its q. */
static void each_range(const char *h, void (*fn)(const char *type, size_t n, double q, void *),
                       void *arg)
{
    while (h && *h) {
        while (*h == ' ' || *h == '\t' || *h == ',') h++;
        if (!*h) break;
        const char *end = strchr(h, ',');
        if (!end) end = h + strlen(h);
        const char *semi = memchr(h, ';', (size_t)(end - h));
        const char *tend = semi ? semi : end;
        while (tend > h && (tend[-1] == ' ' || tend[-1] == '\t')) tend--;
        double q = 1.0;
        for (const char *p = semi; p && p < end; p = memchr(p + 1, ';', (size_t)(end - p - 1))) {
            const char *a = p + 1;
            while (*a == ' ' || *a == '\t') a++;
            if ((a[0] == 'q' || a[0] == 'Q') && a[1] == '=') q = strtod(a + 2, NULL);
        }
        fn(h, (size_t)(tend - h), q, arg);
        h = end;
    }
}

static bool range_is(const char *t, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(t, lit, n) == 0;
}

struct accept_q {
    double om, text;
};

static void accept_cb(const char *t, size_t n, double q, void *arg)
{
    struct accept_q *a = arg;
    if (range_is(t, n, "application/openmetrics-text")) {
        if (q > a->om) a->om = q;
    } else if (range_is(t, n, "text/plain") || range_is(t, n, "*/*") || range_is(t, n, "text/*")) {
        if (q > a->text) a->text = q;
    }
}

bool red_accepts_openmetrics(const char *accept)
{
    struct accept_q a = {0, 0};
    each_range(accept, accept_cb, &a);
    return a.om > 0 && a.om >= a.text;
}

static void encoding_cb(const char *t, size_t n, double q, void *arg)
{
    double *g = arg;
    if ((range_is(t, n, "gzip") || range_is(t, n, "x-gzip") || range_is(t, n, "*")) && q > *g)
        *g = q;
}

bool red_accepts_gzip(const char *accept_encoding)
{
    double g = 0;
    each_range(accept_encoding, encoding_cb, &g);
    return g > 0;
}

/* ----- the document -------------------------------------------------------------------------- */

/* Copies selfmetrics' Prometheus text, renaming counter families for OpenMetrics: in
 * "# HELP x_total ..." and "# TYPE x_total counter" the family becomes x (samples keep x_total).
 * A family is a counter when its TYPE line says so; HELP precedes TYPE, so look ahead. */
static void self_to_openmetrics(struct red_buf *b, const char *t, size_t len)
{
    const char *p = t, *end = t + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        bool meta = n > 7 && (memcmp(p, "# HELP ", 7) == 0 || memcmp(p, "# TYPE ", 7) == 0);
        if (n == 0) {
            /* OpenMetrics has no blank lines. */
        } else if (meta) {
            const char *name = p + 7;
            const char *sp = memchr(name, ' ', (size_t)(le - name));
            size_t nn = sp ? (size_t)(sp - name) : (size_t)(le - name);
            bool counter = false;
            if (nn > 6 && memcmp(name + nn - 6, "_total", 6) == 0) {
                /* Find this family's TYPE line (this one or the next few). */
                char want[160];
                int wn = snprintf(want, sizeof want, "# TYPE %.*s counter\n", (int)nn, name);
                if (wn > 0 && (size_t)wn < sizeof want) {
                    const char *f = strstr(p, want);
                    counter = f && (f == p || f - p < 1024);
                }
            }
            put(b, p, 7);
            put(b, name, counter ? nn - 6 : nn);
            put(b, name + nn, (size_t)(le - name - nn));
            put(b, "\n", 1);
        } else {
            put(b, p, n);
            put(b, "\n", 1);
        }
        p = nl ? nl + 1 : end;
    }
}

static int gzip_buf(const char *in, size_t len, char **out, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    /* 31 = 15-bit window + gzip wrapper; level 1: a scrape is read once, speed matters more. */
    if (deflateInit2(&z, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -ENOMEM;
    size_t cap = deflateBound(&z, (uLong)len);
    char *o = malloc(cap);
    if (!o) {
        deflateEnd(&z);
        return -ENOMEM;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)o;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(o);
        return -ENOMEM;
    }
    *out = o;
    *out_len = n;
    return 0;
}

int red_expose(struct red *r, const char *accept, const char *accept_encoding,
               const char *self_text, size_t self_len, struct red_exposition *out)
{
    bool om = red_accepts_openmetrics(accept);
    struct red_buf b = {0};
    red_buf_reserve(&b, self_len + 65536);
    if (self_text) {
        if (om) self_to_openmetrics(&b, self_text, self_len);
        else put(&b, self_text, self_len);
    }
    render_into(r, om, &b);
    if (om) PUT(&b, "# EOF\n");
    put(&b, "", 1);
    b.len--; /* NUL-terminated, not counted */
    if (b.oom) {
        free(b.p);
        return -ENOMEM;
    }
    out->content_type = om ? RED_CONTENT_TYPE_OPENMETRICS : RED_CONTENT_TYPE_TEXT;
    out->content_encoding = NULL;
    out->body = b.p;
    out->len = b.len;
    if (red_accepts_gzip(accept_encoding) && b.len > 0) {
        char *z;
        size_t zn;
        if (gzip_buf(b.p, b.len, &z, &zn) == 0) {
            free(b.p);
            out->body = z;
            out->len = zn;
            out->content_encoding = "gzip";
        }
    }
    return 0;
}
