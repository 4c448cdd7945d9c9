/*
 * red.c: RED aggregation: series tables, the cardinality guard, service-graph pairing.
 *
 * DESIGN
 * - Threads: red_observe_batch runs on the HTTP worker threads (the observe hook, once per
 *   accepted batch); red_render and red_expire on whichever HTTP thread serves /metrics. No
 *   global lock: every structure is split into RED_SHARDS shards chosen by hash, each with its
 *   own mutex held for a handful of field updates (a few tens of ns), and no code path ever holds
 *   two of these mutexes at once (so there is no lock order to get wrong).
 * - Series: one record per (group, label set), where a group is the metric families that share
 *   a label set (istio_requests_total and Istio's three histograms are one record). The label
 *   text is escaped and stored once, at creation, so a scrape only copies bytes. The record's
 *   shard is chosen by the hash of its label text; a shard keeps a chained hash table and, per
 *   group, a list used by the renderer. Istio and span-metrics observations first look in a
 *   per-thread memo (compact key of the label values -> series; see "the series memo") so the
 *   label text is built only when a series is new to the thread.
 * - Cardinality guard: n_series[group] counts records across shards (atomic). A new label set
 *   beyond series_limit is folded into the group's otel_metric_overflow="true" record and counted
 *   in overflowed[group].
 * - Pairing: a CLIENT (or PRODUCER) span waits under key (trace id, its span id); a SERVER (or
 *   CONSUMER) under (trace id, parent span id), or (trace id, its own span id) when it is the
 *   server half of a Zipkin/Envoy shared span (zipkin.shared=true). Whichever half comes second
 *   finds the first and completes the edge. Pending halves live in shard FIFOs (one TTL for all,
 *   so insertion order is expiry order); the total is capped (atomic n_pending).
 * - Access-log records ("access-log records on the service graph" below) wait in a third set
 *   of shards (rshards) keyed by their pairing key, which also hold the recent request marks
 *   of CLIENT/SERVER spans (by mark). A record's path takes the mark shards' locks (to check
 *   coverage) and its key shard's lock one after the other, never together.
 * - Istio samples need both halves (a destination sample's source_* labels come from the client
 *   span, a source sample's destination_* from the server span), so a CLIENT or SERVER span's
 *   Istio sample is recorded when its edge completes or its half expires (then with "unknown" for
 *   the side that never came). A SERVER span without a parent (a root, called from outside) is
 *   recorded at once. Span metrics are recorded at once for every span.
 */
#include "red_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ----- metric family definitions ---------------------------------------------------------- */

/* Envoy's default histogram buckets, which Istio uses for durations (ms) and sizes (bytes). */
static const double istio_bounds[19] = {0.5,    1,      5,      10,      25,      50,     100,
                                        250,    500,    1000,   2500,    5000,    10000,  30000,
                                        60000,  300000, 600000, 1800000, 3600000};
static const char *const istio_le[19] = {"0.5",    "1",      "5",      "10",      "25",
                                         "50",     "100",    "250",    "500",     "1000",
                                         "2500",   "5000",   "10000",  "30000",   "60000",
                                         "300000", "600000", "1800000", "3600000"};
/* Tempo span metrics: prometheus.ExponentialBuckets(0.002, 2, 14), seconds. */
static const double span_bounds[14] = {0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128,
                                       0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384};
static const char *const span_le[14] = {"0.002", "0.004", "0.008", "0.016", "0.032",
                                        "0.064", "0.128", "0.256", "0.512", "1.024",
                                        "2.048", "4.096", "8.192", "16.384"};
/* Tempo service graphs: prometheus.ExponentialBuckets(0.1, 2, 8), seconds. */
static const double graph_bounds[8] = {0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8};
static const char *const graph_le[8] = {"0.1", "0.2", "0.4", "0.8", "1.6", "3.2", "6.4", "12.8"};

static const struct hist_def h_istio_duration = {
    "istio_request_duration_milliseconds",
    "Request duration in milliseconds (Istio standard metric), from span durations.",
    istio_bounds, istio_le, 19, true};
static const struct hist_def h_istio_req = {
    "istio_request_bytes", "Request body size in bytes (Istio standard metric).", istio_bounds,
    istio_le, 19, false};
static const struct hist_def h_istio_resp = {
    "istio_response_bytes", "Response body size in bytes (Istio standard metric).",
    istio_bounds, istio_le, 19, false};
static const struct hist_def h_span_latency = {
    "traces_spanmetrics_latency", "Span duration in seconds (Tempo span metrics).", span_bounds,
    span_le, 14, true};
static const struct hist_def h_graph_server = {
    "traces_service_graph_request_server_seconds",
    "Duration of the server span of each edge request, seconds (Tempo service graph).",
    graph_bounds, graph_le, 8, true};
static const struct hist_def h_graph_client = {
    "traces_service_graph_request_client_seconds",
    "Duration of the client span of each edge request, seconds (Tempo service graph).",
    graph_bounds, graph_le, 8, true};

struct group_def red_groups[G_COUNT] = {
    [G_ISTIO] = {"istio_requests_total",
                 "Requests (Istio standard metric): SERVER spans as reporter=destination, CLIENT "
                 "spans as reporter=source.",
                 NULL, NULL, 3, {&h_istio_duration, &h_istio_req, &h_istio_resp}, {0}, 0},
    [G_SPAN] = {"traces_spanmetrics_calls_total", "Spans, by service, name, kind and status "
                "(Tempo span metrics).", NULL, NULL, 1, {&h_span_latency}, {0}, 0},
    [G_GRAPH] = {"traces_service_graph_request_total",
                 "Requests between two nodes of the service graph (Tempo service graph).",
                 "traces_service_graph_request_failed_total",
                 "Failed requests between two nodes of the service graph (Tempo service graph).",
                 2, {&h_graph_server, &h_graph_client}, {0}, 0},
    [G_UNPAIRED] = {"traces_service_graph_unpaired_spans_total",
                    "CLIENT/SERVER spans whose other half never came within the wait (Tempo "
                    "service graph).", NULL, NULL, 0, {NULL}, {0}, 0},
    [G_DROPPED] = {"traces_service_graph_dropped_spans_total",
                   "Spans not paired because the pending store was full (Tempo service graph).",
                   NULL, NULL, 0, {NULL}, {0}, 0},
};

const char *const red_conn_label[4] = {"", "messaging_system", "database", "virtual_node"};

static pthread_once_t layout_once = PTHREAD_ONCE_INIT;

static void layout_init(void)
{
    for (int g = 0; g < G_COUNT; g++) {
        struct group_def *d = &red_groups[g];
        size_t off = sizeof(struct series);
        for (uint32_t i = 0; i < d->n_hist; i++) {
            const struct hist_def *h = d->hist[i];
            d->hist_off[i] = off;
            off += sizeof(struct hist) + (h->n_bounds + 1) * sizeof(uint64_t);
            if (h->exemplars) off += (h->n_bounds + 1) * sizeof(struct exemplar);
            off = (off + 7) & ~(size_t)7;
        }
        d->size = off;
    }
}

/* ----- clock, hashing ---------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 64-bit hash of a byte string, 32 bytes per step in four independent lanes (label texts run
 * to hundreds of bytes and one multiply chain would be latency-bound). */
static uint64_t mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 32);
}

static uint64_t hash_bytes(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h0 = seed ^ (len * 0x9E3779B97F4A7C15ull), h1 = h0 + 1, h2 = h0 + 2, h3 = h0 + 3;
    while (len >= 32) {
        uint64_t w[4];
        memcpy(w, p, 32);
        h0 = mix(h0, w[0]);
        h1 = mix(h1, w[1]);
        h2 = mix(h2, w[2]);
        h3 = mix(h3, w[3]);
        p += 32;
        len -= 32;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h0 = mix(h0, w);
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    uint64_t h = mix(h0 ^ (h1 * 0xC4CEB9FE1A85EC53ull), h2 ^ (h3 * 0x9E3779B97F4A7C15ull));
    h = (h ^ w ^ ((uint64_t)len << 56)) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ull;
    h ^= h >> 32;
    return h;
}

/* ----- series -------------------------------------------------------------------------------- */

static const char overflow_labels[] = "otel_metric_overflow=\"true\"";

static bool shard_grow(struct series_shard *sh)
{
    uint32_t n = sh->n_buckets * 2;
    struct series **nb = calloc(n, sizeof *nb);
    if (!nb) return false;
    for (uint32_t i = 0; i < sh->n_buckets; i++) {
        struct series *s = sh->buckets[i];
        while (s) {
            struct series *next = s->next;
            uint32_t j = (uint32_t)(s->hash >> 6) & (n - 1);
            s->next = nb[j];
            nb[j] = s;
            s = next;
        }
    }
    free(sh->buckets);
    sh->buckets = nb;
    sh->n_buckets = n;
    return true;
}

static struct series *series_new(struct series_shard *sh, enum group g, uint64_t hash,
                                 const char *labels, size_t len, const char *key, size_t klen)
{
    const struct group_def *d = &red_groups[g];
    struct series *s = calloc(1, d->size + len + 1 + klen);
    if (!s) return NULL;
    s->hash = hash;
    s->group = g;
    s->labels_len = (uint32_t)len;
    s->key_len = (uint32_t)klen;
    memcpy((char *)s + d->size, labels, len);
    if (klen) memcpy((char *)s + d->size + len + 1, key, klen);
    if (sh->n >= sh->n_buckets && sh->n_buckets < (1u << 20)) shard_grow(sh);
    uint32_t j = (uint32_t)(hash >> 6) & (sh->n_buckets - 1);
    s->next = sh->buckets[j];
    sh->buckets[j] = s;
    s->gnext = sh->groups[g];
    sh->groups[g] = s;
    sh->n++;
    return s;
}

static struct series *shard_find(struct series_shard *sh, enum group g, uint64_t hash,
                                 const char *labels, size_t len)
{
    for (struct series *s = sh->buckets[(uint32_t)(hash >> 6) & (sh->n_buckets - 1)]; s;
         s = s->next)
        if (s->hash == hash && s->group == (uint32_t)g && s->labels_len == len &&
            memcmp(series_labels(s), labels, len) == 0)
            return s;
    return NULL;
}

/* One observation for a series: count += 1, failed += failed, each histogram i gets
 * values[i]; exemplars from ids. */
struct obs {
    bool failed;
    double values[3];
    const uint8_t *trace_id, *span_id;
    uint64_t ts_ms;
};

static void apply(struct series *s, const struct obs *o)
{
    const struct group_def *d = &red_groups[s->group];
    s->count++;
    if (o->failed) s->failed++;
    if (o->trace_id) {
        memcpy(s->ex.trace_id, o->trace_id, 16);
        memcpy(s->ex.span_id, o->span_id, 8);
        s->ex.value = 1;
        s->ex.ts_ms = o->ts_ms;
    }
    for (uint32_t i = 0; i < d->n_hist; i++) {
        const struct hist_def *hd = d->hist[i];
        struct hist *h = series_hist(s, i);
        double v = o->values[i];
        if (v < 0) continue; /* not observed (e.g. the client side of a "user" edge) */
        uint32_t b = 0;
        while (b < hd->n_bounds && v > hd->bounds[b]) b++;
        h->b[b]++;
        h->sum += v;
        if (hd->exemplars && o->trace_id) {
            struct exemplar *e = &hist_exemplars(hd, h)[b];
            memcpy(e->trace_id, o->trace_id, 16);
            memcpy(e->span_id, o->span_id, 8);
            e->value = v;
            e->ts_ms = o->ts_ms;
        }
    }
}

/* Finds or creates the series (g, labels) and applies o; all under the one shard lock. A new
 * series keeps key (klen bytes, may be 0) for the memo below. Returns the series o went to,
 * or NULL when it went to the overflow series or was lost (out of memory). */
static struct series *record(struct red *r, enum group g, const char *labels, size_t len,
                             const char *key, size_t klen, const struct obs *o)
{
    uint64_t hash = hash_bytes(labels, len, (uint64_t)g);
    struct series_shard *sh = &r->shards[hash & (RED_SHARDS - 1)];
    pthread_mutex_lock(&sh->mu);
    struct series *s = shard_find(sh, g, hash, labels, len);
    if (!s) {
        if (atomic_fetch_add_explicit(&r->n_series[g], 1, memory_order_relaxed) <
            r->series_limit) {
            s = series_new(sh, g, hash, labels, len, key, klen);
            if (!s) atomic_fetch_sub_explicit(&r->n_series[g], 1, memory_order_relaxed);
        } else {
            atomic_fetch_sub_explicit(&r->n_series[g], 1, memory_order_relaxed);
            pthread_mutex_unlock(&sh->mu);
            atomic_fetch_add_explicit(&r->overflowed[g], 1, memory_order_relaxed);
            len = sizeof overflow_labels - 1;
            hash = hash_bytes(overflow_labels, len, (uint64_t)g);
            sh = &r->shards[hash & (RED_SHARDS - 1)];
            pthread_mutex_lock(&sh->mu);
            s = shard_find(sh, g, hash, overflow_labels, len);
            if (!s) s = series_new(sh, g, hash, overflow_labels, len, NULL, 0);
            if (s) apply(s, o);
            pthread_mutex_unlock(&sh->mu);
            if (!s) log_ratelimited(LOG_WARN, "red-oom", "red: out of memory, observation lost");
            return NULL;
        }
    }
    if (s) apply(s, o);
    pthread_mutex_unlock(&sh->mu);
    if (!s) log_ratelimited(LOG_WARN, "red-oom", "red: out of memory, observation lost");
    return s;
}

/* ----- the series memo ----------------------------------------------------------------------
 * A series is identified by its label text, and its shard (so the render order) by the text's
 * hash. Building that text per observation is most of the ingest cost (an Istio label set is
 * ~800 bytes of names and escaped values). So each thread remembers, for a compact key from
 * which the text is a pure function (the label values, length-prefixed, without the names),
 * the series that key led to last time: a hit goes straight to the series' shard lock; a miss
 * (or a key whose series was first created from another key) builds the text and takes the
 * path above, as before. The memo changes nothing but speed: a key always yields the same text,
 * so the same series; series are never freed before red_destroy, and entries are tagged with
 * the instance's unique gen, so an entry of a destroyed instance is never followed. Series that
 * overflowed are not memoised (each such observation must count in overflowed[]).
 * Thread-local: no sharing, no lock. A series' key is immutable after creation and this thread
 * saw it under the shard lock before memoising it. */

#define MEMO_WAYS 1024 /* per thread, direct-mapped: far more than a steady state's hot series */
struct memo_entry {
    uint64_t gen;
    uint64_t khash;
    struct series *s;
};
static _Thread_local struct memo_entry memo[MEMO_WAYS];
static _Atomic uint64_t next_gen = 1;

/* Longest memo key: an Istio key is below this (see istio_key); as is every label text. */
#define ISTIO_LABELS_MAX (25 * (40 + 4 * RED_VALUE_MAX + 4))
#define KEY_MAX ISTIO_LABELS_MAX
_Static_assert(RED_SPANMETRICS_MAX <= ISTIO_LABELS_MAX, "label buffer too small");

/* Miss path of record_keyed, apart so its label buffer is only on the stack when needed. */
static __attribute__((noinline)) void record_miss(struct red *r, enum group g, const char *key,
                                                  size_t klen, uint64_t kh,
                                                  size_t (*text)(const void *, char *),
                                                  const void *ctx, const struct obs *o)
{
    char labels[ISTIO_LABELS_MAX];
    size_t n = text(ctx, labels);
    struct series *s = record(r, g, labels, n, key, klen, o);
    if (s) memo[kh & (MEMO_WAYS - 1)] = (struct memo_entry){r->gen, kh, s};
}

/* record() for a series whose label text is text(ctx), a pure function of key (klen > 0). */
static void record_keyed(struct red *r, enum group g, const char *key, size_t klen,
                         size_t (*text)(const void *, char *), const void *ctx,
                         const struct obs *o)
{
    uint64_t kh = hash_bytes(key, klen, (uint64_t)g * 0x9E3779B97F4A7C15ull + 0x6d656d6f);
    const struct memo_entry *m = &memo[kh & (MEMO_WAYS - 1)];
    struct series *s = m->s;
    if (m->gen == r->gen && m->khash == kh && s->group == (uint32_t)g && s->key_len == klen &&
        memcmp(series_labels(s) + s->labels_len + 1, key, klen) == 0) {
        struct series_shard *sh = &r->shards[s->hash & (RED_SHARDS - 1)];
        pthread_mutex_lock(&sh->mu);
        apply(s, o);
        pthread_mutex_unlock(&sh->mu);
        return;
    }
    record_miss(r, g, key, klen, kh, text, ctx, o);
}

/* ----- label texts ------------------------------------------------------------------------- */

struct lb {
    char *p;
    size_t n;
};

static void lb_lit(struct lb *b, const char *s, size_t n)
{
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
#define LB_LIT(b, x) lb_lit(b, x, sizeof(x) - 1)

static void lb_slot(struct lb *b, const struct half *h, enum slot s)
{
    lb_lit(b, h->data + h->off[s], h->len[s]);
}

static const char *const src_names[S_IDENTITY_N] = {
    "source_workload=\"",  "source_workload_namespace=\"", "source_principal=\"",
    "source_app=\"",       "source_version=\"",            "source_canonical_service=\"",
    "source_canonical_revision=\"", "source_cluster=\""};
static const char *const dst_names[S_IDENTITY_N] = {
    "destination_workload=\"", "destination_workload_namespace=\"", "destination_principal=\"",
    "destination_app=\"",      "destination_version=\"",  "destination_canonical_service=\"",
    "destination_canonical_revision=\"", "destination_cluster=\""};


static void identity(struct lb *b, const char *const *names, const struct half *h)
{
    for (int i = 0; i < S_IDENTITY_N; i++) {
        lb_lit(b, names[i], strlen(names[i]));
        if (h) lb_slot(b, h, (enum slot)(S_IDENTITY_FIRST + i));
        else if (i == S_CANON_REV - S_IDENTITY_FIRST) LB_LIT(b, "latest");
        else LB_LIT(b, "unknown");
        LB_LIT(b, "\",");
    }
}

/* The Istio label text of the request seen by `self` (the reporting half) with `client` and
 * `server` being the halves known (either may be NULL, not both). Istio's label order. */
static size_t istio_labels(const struct half *self, const struct half *client,
                           const struct half *server, char *out)
{
    struct lb b = {out, 0};
    if (self == server) LB_LIT(&b, "reporter=\"destination\",");
    else LB_LIT(&b, "reporter=\"source\",");
    identity(&b, src_names, client);
    /* destination_*: the server's identity; destination_service from the client's view (the
     * host it called) when it has one, else the server's. */
    const struct half *svc = client && (client->has_dst || !server) ? client : server;
    const char *const *dn = dst_names;
    for (int i = 0; i < S_IDENTITY_N; i++) {
        lb_lit(&b, dn[i], strlen(dn[i]));
        if (server) lb_slot(&b, server, (enum slot)(S_IDENTITY_FIRST + i));
        else if (i == S_CANON_REV - S_IDENTITY_FIRST) LB_LIT(&b, "latest");
        else LB_LIT(&b, "unknown");
        LB_LIT(&b, "\",");
        if (i == 4) { /* after destination_version: the service triple, in Istio's order */
            LB_LIT(&b, "destination_service=\"");
            lb_slot(&b, svc, S_DST_SERVICE);
            LB_LIT(&b, "\",destination_service_name=\"");
            lb_slot(&b, svc, S_DST_NAME);
            LB_LIT(&b, "\",destination_service_namespace=\"");
            if (svc == client && server && client->len[S_DST_NS] == 7 &&
                memcmp(client->data + client->off[S_DST_NS], "unknown", 7) == 0)
                lb_slot(&b, server, S_NAMESPACE);
            else lb_slot(&b, svc, S_DST_NS);
            LB_LIT(&b, "\",");
        }
    }
    LB_LIT(&b, "request_protocol=\"");
    lb_slot(&b, self, S_PROTOCOL);
    LB_LIT(&b, "\",response_code=\"");
    lb_slot(&b, self, S_CODE);
    LB_LIT(&b, "\",grpc_response_status=\"");
    lb_slot(&b, self, S_GRPC);
    LB_LIT(&b, "\",response_flags=\"");
    lb_slot(&b, self, S_FLAGS);
    LB_LIT(&b, "\",connection_security_policy=\"unknown\"");
    return b.n;
}

/* The memo key of an Istio label set: everything istio_labels reads, values length-prefixed.
 * At most 1 + 2 * (1 + 11 * 2 + 11 * 4 * RED_VALUE_MAX) + 4 * (2 + 4 * RED_VALUE_MAX) bytes,
 * below KEY_MAX. */
static size_t istio_key(const struct half *self, const struct half *client,
                        const struct half *server, char *out)
{
    size_t o = 0;
    out[o++] = self == server ? 'd' : 's';
    const struct half *hs[2] = {client, server};
    for (int k = 0; k < 2; k++) {
        const struct half *h = hs[k];
        if (!h) {
            out[o++] = 0;
            continue;
        }
        out[o++] = h->has_dst ? 2 : 1;
        /* identity (8 slots) and the destination_service triple, stored back to back */
        enum { FIRST = S_WORKLOAD, LAST = S_DST_NS, N = LAST - FIRST + 1 };
        memcpy(out + o, &h->len[FIRST], N * sizeof(uint16_t));
        o += N * sizeof(uint16_t);
        size_t sum = 0;
        for (int i = FIRST; i <= LAST; i++) sum += h->len[i];
        if ((size_t)h->off[LAST] + h->len[LAST] - h->off[FIRST] == sum) {
            memcpy(out + o, h->data + h->off[FIRST], sum);
            o += sum;
        } else {
            for (int i = FIRST; i <= LAST; i++) {
                memcpy(out + o, h->data + h->off[i], h->len[i]);
                o += h->len[i];
            }
        }
    }
    for (int i = S_PROTOCOL; i <= S_FLAGS; i++) {
        memcpy(out + o, &self->len[i], sizeof(uint16_t));
        o += sizeof(uint16_t);
        memcpy(out + o, self->data + self->off[i], self->len[i]);
        o += self->len[i];
    }
    return o;
}

struct istio_ctx {
    const struct half *self, *client, *server;
};

static size_t istio_text(const void *ctx, char *out)
{
    const struct istio_ctx *c = ctx;
    return istio_labels(c->self, c->client, c->server, out);
}

static void record_istio(struct red *r, const struct half *self, const struct half *client,
                         const struct half *server)
{
    char key[KEY_MAX];
    size_t n = istio_key(self, client, server, key);
    struct istio_ctx c = {self, client, server};
    struct obs o = {.failed = self->failed,
                    .values = {self->duration_ms, self->req_bytes, self->resp_bytes},
                    .trace_id = self->trace_id,
                    .span_id = self->span_id,
                    .ts_ms = self->end_unix_nano / 1000000};
    record_keyed(r, G_ISTIO, key, n, istio_text, &c, &o);
}

/* Service-graph label text: client, server, connection_type. */
static size_t graph_labels(const char *client, size_t cn, const char *server, size_t sn,
                           enum conn_type ct, char *out)
{
    struct lb b = {out, 0};
    LB_LIT(&b, "client=\"");
    lb_lit(&b, client, cn);
    LB_LIT(&b, "\",server=\"");
    lb_lit(&b, server, sn);
    LB_LIT(&b, "\",connection_type=\"");
    lb_lit(&b, red_conn_label[ct], strlen(red_conn_label[ct]));
    LB_LIT(&b, "\"");
    return b.n;
}
#define GRAPH_LABELS_MAX (2 * 4 * RED_VALUE_MAX + 80)

/* One request on the edge cl -> sv; o carries failed, {server s, client s} (-1 = not
 * observed) and the exemplar. */
static void record_edge_obs(struct red *r, const char *cl, size_t cn, const char *sv, size_t sn,
                            enum conn_type ct, const struct obs *o)
{
    char labels[GRAPH_LABELS_MAX];
    size_t n = graph_labels(cl, cn, sv, sn, ct, labels);
    record(r, G_GRAPH, labels, n, NULL, 0, o);
}

static void record_edge(struct red *r, const char *cl, size_t cn, const char *sv, size_t sn,
                        enum conn_type ct, const struct half *client, const struct half *server)
{
    const struct half *ex = server ? server : client;
    struct obs o = {.failed = (client && client->failed) || (server && server->failed),
                    .values = {server ? server->duration_ms / 1000 : -1,
                               client ? client->duration_ms / 1000 : -1},
                    .trace_id = ex->trace_id,
                    .span_id = ex->span_id,
                    .ts_ms = ex->end_unix_nano / 1000000};
    record_edge_obs(r, cl, cn, sv, sn, ct, &o);
}

static void record_side_count(struct red *r, enum group g, const struct half *h)
{
    char labels[GRAPH_LABELS_MAX];
    struct lb b = {labels, 0};
    bool client = h->kind == SPAN_KIND_CLIENT || h->kind == SPAN_KIND_PRODUCER;
    LB_LIT(&b, "client=\"");
    if (client) lb_slot(&b, h, S_SERVICE);
    LB_LIT(&b, "\",server=\"");
    if (!client) lb_slot(&b, h, S_SERVICE);
    LB_LIT(&b, "\"");
    struct obs o = {.values = {-1, -1, -1}};
    record(r, g, labels, b.n, NULL, 0, &o);
}

/* ----- what a half produces ------------------------------------------------------------------ */

static bool is_request(const struct half *h)
{
    return h->kind == SPAN_KIND_CLIENT || h->kind == SPAN_KIND_SERVER;
}

static void emit_pair(struct red *r, const struct half *client, const struct half *server)
{
    enum conn_type ct = client->kind == SPAN_KIND_PRODUCER ? CONN_MESSAGING : CONN_NONE;
    record_edge(r, client->data + client->off[S_SERVICE], client->len[S_SERVICE],
                server->data + server->off[S_SERVICE], server->len[S_SERVICE], ct, client,
                server);
    if (is_request(client)) {
        record_istio(r, client, client, server);
        record_istio(r, server, client, server);
    }
}

/* A half whose other half never came (expired) or could not wait (store full: dropped). */
static void emit_alone(struct red *r, const struct half *h, bool dropped)
{
    bool client = h->kind == SPAN_KIND_CLIENT || h->kind == SPAN_KIND_PRODUCER;
    if (client && h->conn != CONN_NONE && h->len[S_PEER] > 0)
        record_edge(r, h->data + h->off[S_SERVICE], h->len[S_SERVICE], h->data + h->off[S_PEER],
                    h->len[S_PEER], (enum conn_type)h->conn, h, NULL);
    else record_side_count(r, dropped ? G_DROPPED : G_UNPAIRED, h);
    if (is_request(h)) record_istio(r, h, client ? h : NULL, client ? NULL : h);
}

/* ----- pending store ------------------------------------------------------------------------- */

#define PENDING_BUCKETS 4096 /* per shard: 64 x 4096 chains for at most 100k entries */

struct pending {
    struct pending *hnext;
    struct pending *prev, *next; /* FIFO */
    uint64_t khash;
    uint8_t trace_id[16];
    uint8_t key[8];
    int64_t expire_ms;
    struct half h; /* variable size: h.data_len bytes follow */
};

static bool complements(uint8_t a, uint8_t b)
{
    return (a == SPAN_KIND_CLIENT && b == SPAN_KIND_SERVER) ||
           (a == SPAN_KIND_SERVER && b == SPAN_KIND_CLIENT) ||
           (a == SPAN_KIND_PRODUCER && b == SPAN_KIND_CONSUMER) ||
           (a == SPAN_KIND_CONSUMER && b == SPAN_KIND_PRODUCER);
}

static void fifo_unlink(struct pending_shard *ps, struct pending *p)
{
    if (p->prev) p->prev->next = p->next;
    else ps->oldest = p->next;
    if (p->next) p->next->prev = p->prev;
    else ps->newest = p->prev;
}

static void chain_unlink(struct pending_shard *ps, struct pending *p)
{
    struct pending **pp = &ps->buckets[(p->khash >> 6) & (PENDING_BUCKETS - 1)];
    while (*pp != p) pp = &(*pp)->hnext;
    *pp = p->hnext;
}

/* Takes expired entries of one shard off its lists; caller holds ps->mu. */
static struct pending *take_expired(struct red *r, struct pending_shard *ps, int64_t now)
{
    struct pending *list = NULL;
    while (ps->oldest && ps->oldest->expire_ms <= now) {
        struct pending *p = ps->oldest;
        fifo_unlink(ps, p);
        chain_unlink(ps, p);
        p->next = list;
        list = p;
        atomic_fetch_sub_explicit(&r->n_pending, 1, memory_order_relaxed);
    }
    return list;
}

static void emit_expired(struct red *r, struct pending *list)
{
    while (list) {
        struct pending *next = list->next;
        emit_alone(r, &list->h, false);
        free(list);
        list = next;
    }
}

static void rec_expire(struct red *r, int64_t now);

void red_expire(struct red *r)
{
    if (!r) return;
    int64_t now = r->now_ms();
    rec_expire(r, now);
    for (int i = 0; i < RED_SHARDS; i++) {
        struct pending_shard *ps = &r->pshards[i];
        pthread_mutex_lock(&ps->mu);
        struct pending *list = take_expired(r, ps, now);
        pthread_mutex_unlock(&ps->mu);
        emit_expired(r, list);
    }
}

/* Pairs h with its waiting other half, or makes it wait. */
static void pair(struct red *r, const uint8_t key[8], const struct half *h, int64_t now)
{
    uint8_t k[24];
    memcpy(k, h->trace_id, 16);
    memcpy(k + 16, key, 8);
    uint64_t kh = hash_bytes(k, 24, 0x5eed);
    struct pending_shard *ps = &r->pshards[kh & (RED_SHARDS - 1)];
    struct pending **chain = &ps->buckets[(kh >> 6) & (PENDING_BUCKETS - 1)];

    pthread_mutex_lock(&ps->mu);
    struct pending *found = NULL;
    for (struct pending *p = *chain; p; p = p->hnext)
        if (p->khash == kh && memcmp(p->trace_id, h->trace_id, 16) == 0 &&
            memcmp(p->key, key, 8) == 0 && complements(p->h.kind, h->kind)) {
            found = p;
            break;
        }
    struct pending *expired = NULL;
    bool dropped = false;
    if (found) {
        fifo_unlink(ps, found);
        chain_unlink(ps, found);
        atomic_fetch_sub_explicit(&r->n_pending, 1, memory_order_relaxed);
    } else if (atomic_fetch_add_explicit(&r->n_pending, 1, memory_order_relaxed) >=
               r->pending_limit) {
        atomic_fetch_sub_explicit(&r->n_pending, 1, memory_order_relaxed);
        dropped = true;
    } else {
        struct pending *p = malloc(sizeof *p + h->data_len);
        if (!p) {
            atomic_fetch_sub_explicit(&r->n_pending, 1, memory_order_relaxed);
            dropped = true;
        } else {
            memcpy(&p->h, h, sizeof *h + h->data_len);
            memcpy(p->trace_id, h->trace_id, 16);
            memcpy(p->key, key, 8);
            p->khash = kh;
            p->expire_ms = now + r->ttl_ms;
            p->hnext = *chain;
            *chain = p;
            p->next = NULL;
            p->prev = ps->newest;
            if (ps->newest) ps->newest->next = p;
            else ps->oldest = p;
            ps->newest = p;
        }
    }
    expired = take_expired(r, ps, now); /* this shard's share of expiry, while we hold it */
    pthread_mutex_unlock(&ps->mu);

    if (found) {
        bool h_client = h->kind == SPAN_KIND_CLIENT || h->kind == SPAN_KIND_PRODUCER;
        emit_pair(r, h_client ? h : &found->h, h_client ? &found->h : h);
        free(found);
    } else if (dropped) {
        emit_alone(r, h, true);
    }
    emit_expired(r, expired);
}

/* ----- access-log records on the service graph ------------------------------------------------
 * README "Access logs". When both proxies of a call log it (Envoy/Istio: an outbound record at
 * the caller's sidecar, an inbound one at the callee's), the two records are one request. A
 * record with a request id (else a trace id) waits ttl_ms under its pairing key
 * (access_log_pair_key: the id and the called service); the other half of the call joins it.
 * When the wait is over the entry counts once:
 *   - both halves: caller -> callee, connection_type "", failed and client seconds from the
 *     outbound (client) record, as the caller saw it, server seconds from the inbound one;
 *   - an outbound half alone: caller -> its destination service (client seconds);
 *   - an inbound half alone: "unknown" -> callee (virtual_node), or source_workload -> callee
 *     when the record names its caller (server seconds);
 *   - nothing when a CLIENT/SERVER span of the same request (trace id or x-request-id) came
 *     from one wait before the first record on (so during its wait, too): the request's spans
 *     count it (REC_TRACED). The recent set holds SEEN_SLOTS marks; a busy mesh overwrites a
 *     mark sooner, which can only let a record count again.
 * Entries wait their whole TTL even once paired, so that spans arriving after the records (the
 * usual order with Envoy: access logs flush every second, traces every few) still win. A record
 * without either id, or one that finds the store full (rec_limit entries or rec_max_bytes), is
 * counted alone at once. Records' Istio samples stay at once (one per record and reporter); only
 * a record whose request's spans were already seen when it came reports none (the spans did).
 * Locks: rshards[key] for entries, rshards[mark] for the seen marks, never two at once. */

#define REC_BUCKETS 1024  /* per shard */
#define SEEN_SLOTS 4096   /* per shard: 64 x 4096 = 262,144 recent request marks (16 B each) */

const char *const red_rec_outcome_label[REC_OUTCOMES] = {"paired", "unpaired", "traced", "no_id",
                                                         "store_full"};

struct rec_pending {
    struct rec_pending *hnext;
    struct rec_pending *prev, *next; /* FIFO */
    uint64_t key;
    uint64_t marks[4];
    uint32_t n_marks;
    int64_t expire_ms;
    size_t bytes;
    bool has_client, has_server, client_failed, server_failed, source_named, has_ex;
    double client_ms, server_ms; /* -1: none */
    uint8_t trace_id[16], span_id[8];
    uint64_t ts_ms;
    char *caller; /* the client half's service, or the server half's source; escaped */
    uint16_t caller_len, callee_len;
    char callee[]; /* escaped */
};

static void rec_count(struct red *r, enum rec_outcome o, uint64_t n)
{
    atomic_fetch_add_explicit(&r->rec_outcome[o], n, memory_order_relaxed);
}

static void seen_add(struct red *r, uint64_t mark, int64_t now)
{
    struct rec_shard *rs = &r->rshards[mark & (RED_SHARDS - 1)];
    pthread_mutex_lock(&rs->mu);
    recent_set_add(rs->seen, mark, now);
    pthread_mutex_unlock(&rs->mu);
    if (atomic_load_explicit(&r->seen_last_ms, memory_order_relaxed) < now)
        atomic_store_explicit(&r->seen_last_ms, now, memory_order_relaxed);
}

/* True when a mark was left by a span at or after since. */
static bool seen_any(struct red *r, const uint64_t *marks, uint32_t n, int64_t since)
{
    if (atomic_load_explicit(&r->seen_last_ms, memory_order_relaxed) < since) return false;
    for (uint32_t i = 0; i < n; i++) {
        struct rec_shard *rs = &r->rshards[marks[i] & (RED_SHARDS - 1)];
        pthread_mutex_lock(&rs->mu);
        bool hit = recent_set_has(rs->seen, marks[i], since);
        pthread_mutex_unlock(&rs->mu);
        if (hit) return true;
    }
    return false;
}

/* Reserves room for one waiting entry of `bytes`; false when the store is full. */
static bool rec_admit(struct red *r, size_t bytes)
{
    if (atomic_fetch_add_explicit(&r->n_rec, 1, memory_order_relaxed) >= r->rec_limit) {
        atomic_fetch_sub_explicit(&r->n_rec, 1, memory_order_relaxed);
        return false;
    }
    if (atomic_fetch_add_explicit(&r->rec_bytes, bytes, memory_order_relaxed) + bytes >
        r->rec_max_bytes) {
        atomic_fetch_sub_explicit(&r->rec_bytes, bytes, memory_order_relaxed);
        atomic_fetch_sub_explicit(&r->n_rec, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

/* Counts an entry whose wait is over (or that could not wait). */
static void rec_emit(struct red *r, const struct rec_pending *e, enum rec_outcome why)
{
    struct obs o = {.values = {e->has_server ? e->server_ms / 1000 : -1,
                               e->has_client ? e->client_ms / 1000 : -1},
                    .trace_id = e->has_ex ? e->trace_id : NULL,
                    .span_id = e->span_id,
                    .ts_ms = e->ts_ms};
    if (e->has_client) {
        o.failed = e->client_failed;
        record_edge_obs(r, e->caller, e->caller_len, e->callee, e->callee_len, CONN_NONE, &o);
    } else {
        o.failed = e->server_failed;
        record_edge_obs(r, e->caller, e->caller_len, e->callee, e->callee_len,
                        e->source_named ? CONN_NONE : CONN_VIRTUAL, &o);
    }
    rec_count(r, why, e->has_client && e->has_server ? 2 : 1);
}

static void rec_free(struct red *r, struct rec_pending *e)
{
    atomic_fetch_sub_explicit(&r->rec_bytes, e->bytes, memory_order_relaxed);
    atomic_fetch_sub_explicit(&r->n_rec, 1, memory_order_relaxed);
    free(e->caller);
    free(e);
}

static void rec_unlink(struct rec_shard *rs, struct rec_pending *e)
{
    if (e->prev) e->prev->next = e->next;
    else rs->oldest = e->next;
    if (e->next) e->next->prev = e->prev;
    else rs->newest = e->prev;
    struct rec_pending **pp = &rs->buckets[(e->key >> 6) & (REC_BUCKETS - 1)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
}

/* Expired entries of one shard (caller holds rs->mu), as a list through next. */
static struct rec_pending *rec_take_expired(struct rec_shard *rs, int64_t now)
{
    struct rec_pending *list = NULL;
    while (rs->oldest && rs->oldest->expire_ms <= now) {
        struct rec_pending *e = rs->oldest;
        rec_unlink(rs, e);
        e->next = list;
        list = e;
    }
    return list;
}

static void rec_emit_expired(struct red *r, struct rec_pending *list, int64_t now)
{
    while (list) {
        struct rec_pending *next = list->next;
        /* spans from a wait before the first record came (expire_ms - 2 waits) on */
        if (seen_any(r, list->marks, list->n_marks, list->expire_ms - 2 * r->ttl_ms))
            rec_count(r, REC_TRACED, list->has_client && list->has_server ? 2 : 1);
        else rec_emit(r, list, list->has_client && list->has_server ? REC_PAIRED : REC_UNPAIRED);
        rec_free(r, list);
        list = next;
    }
}

static void rec_expire(struct red *r, int64_t now)
{
    for (int i = 0; i < RED_SHARDS; i++) {
        struct rec_shard *rs = &r->rshards[i];
        pthread_mutex_lock(&rs->mu);
        struct rec_pending *list = rec_take_expired(rs, now);
        pthread_mutex_unlock(&rs->mu);
        rec_emit_expired(r, list, now);
    }
}

/* The service-graph share of one record: h is its half (red_half_from_log), side its side,
 * marks its request marks. */
static void rec_observe(struct red *r, const struct access_log *l, const struct half *h,
                        enum alog_side side, const uint64_t *marks, uint32_t n_marks, int64_t now)
{
    bool client = side == ALOG_SIDE_CLIENT;
    char callee[4 * RED_VALUE_MAX + 3], other[4 * RED_VALUE_MAX + 3];
    size_t callee_len, other_len;
    bool source_named = false;
    if (client) {
        struct mstr d = access_log_callee(l);
        callee_len = red_escape(d.ptr, d.len, callee);
        other_len = h->len[S_SERVICE];
        memcpy(other, h->data + h->off[S_SERVICE], other_len);
    } else {
        callee_len = h->len[S_SERVICE];
        memcpy(callee, h->data + h->off[S_SERVICE], callee_len);
        const struct mstr *src = &l->str[ALOG_SOURCE_WORKLOAD];
        source_named = src->ptr && src->len;
        other_len = source_named ? red_escape(src->ptr, src->len, other) : 7;
        if (!source_named) memcpy(other, "unknown", 7);
    }
    /* This record as an entry of its own (kept when it waits, emitted at once otherwise). */
    size_t bytes = sizeof(struct rec_pending) + callee_len + other_len;
    struct rec_pending *e = malloc(sizeof *e + callee_len);
    char *caller = malloc(other_len ? other_len : 1);
    if (!e || !caller) {
        free(e);
        free(caller);
        log_ratelimited(LOG_WARN, "red-oom", "red: out of memory, observation lost");
        return;
    }
    memset(e, 0, sizeof *e);
    e->bytes = bytes;
    e->has_client = client;
    e->has_server = !client;
    e->client_failed = client && h->failed;
    e->server_failed = !client && h->failed;
    e->client_ms = client ? h->duration_ms : -1;
    e->server_ms = client ? -1 : h->duration_ms;
    e->source_named = source_named;
    e->has_ex = l->has_trace_id;
    memcpy(e->trace_id, h->trace_id, 16);
    memcpy(e->span_id, h->span_id, 8);
    e->ts_ms = h->end_unix_nano / 1000000;
    memcpy(caller, other, other_len);
    e->caller = caller;
    e->caller_len = (uint16_t)other_len;
    memcpy(e->callee, callee, callee_len);
    e->callee_len = (uint16_t)callee_len;
    for (uint32_t i = 0; i < n_marks && i < 2; i++) e->marks[e->n_marks++] = marks[i];

    uint64_t key;
    if (!access_log_pair_key(l, &key)) {
        rec_emit(r, e, REC_NO_ID);
        free(caller);
        free(e);
        return;
    }
    e->key = key;
    e->expire_ms = now + r->ttl_ms;
    struct rec_shard *rs = &r->rshards[key & (RED_SHARDS - 1)];
    struct rec_pending **chain = &rs->buckets[(key >> 6) & (REC_BUCKETS - 1)];
    bool full = false, joined = false;
    pthread_mutex_lock(&rs->mu);
    struct rec_pending *w = NULL;
    unsigned walked = 0;
    bool long_chain = false; /* GRAPH_PAIR_CHAIN_MAX: counted alone, the chain not grown */
    for (struct rec_pending *p = *chain; p; p = p->hnext) {
        if (p->key == key && (client ? !p->has_client : !p->has_server) && p->expire_ms > now) {
            w = p;
            break;
        }
        if (++walked >= GRAPH_PAIR_CHAIN_MAX) {
            long_chain = true;
            break;
        }
    }
    if (w) { /* the other half waits: this record completes its call */
        joined = true;
        if (client) {
            free(w->caller); /* the server half's source gives way to the real caller */
            w->caller = caller;
            caller = NULL;
            atomic_fetch_add_explicit(&r->rec_bytes, (uint64_t)other_len - w->caller_len,
                                      memory_order_relaxed);
            w->bytes += (size_t)other_len - w->caller_len;
            w->caller_len = (uint16_t)other_len;
            w->has_client = true;
            w->client_failed = e->client_failed;
            w->client_ms = e->client_ms;
        } else {
            w->has_server = true;
            w->server_failed = e->server_failed;
            w->server_ms = e->server_ms;
        }
        if (!w->has_ex && e->has_ex) {
            w->has_ex = true;
            memcpy(w->trace_id, e->trace_id, 16);
            memcpy(w->span_id, e->span_id, 8);
            w->ts_ms = e->ts_ms;
        }
        for (uint32_t i = 0; i < e->n_marks && w->n_marks < 4; i++) w->marks[w->n_marks++] = e->marks[i];
    } else if (long_chain || !rec_admit(r, bytes)) {
        full = true;
    } else {
        e->hnext = *chain;
        *chain = e;
        e->next = NULL;
        e->prev = rs->newest;
        if (rs->newest) rs->newest->next = e;
        else rs->oldest = e;
        rs->newest = e;
    }
    struct rec_pending *expired = rec_take_expired(rs, now);
    pthread_mutex_unlock(&rs->mu);
    if (joined) {
        free(caller);
        free(e);
    } else if (full) {
        rec_emit(r, e, REC_FULL);
        free(caller);
        free(e);
    }
    rec_emit_expired(r, expired, now);
}

bool red_span_shared(const struct span *s);

/* Span names longer than this are not memoised (their key would not fit KEY_MAX): such a span
 * takes the text path. */
#define SPAN_NAME_KEY_MAX 4096

struct span_ctx {
    const struct span *s;
    const struct half *h;
};

static size_t span_text(const void *ctx, char *out)
{
    const struct span_ctx *c = ctx;
    return red_spanmetrics_labels(c->s, c->h, out);
}

/* The memo key of a span-metrics label set: what red_spanmetrics_labels reads. */
static size_t span_key(const struct span *s, const struct half *h, char *out)
{
    size_t o = 0;
    int32_t kind = (int32_t)s->kind, status = (int32_t)s->status_code;
    memcpy(out + o, &kind, 4);
    o += 4;
    memcpy(out + o, &status, 4);
    o += 4;
    memcpy(out + o, &h->len[S_SERVICE], sizeof(uint16_t));
    o += sizeof(uint16_t);
    memcpy(out + o, h->data + h->off[S_SERVICE], h->len[S_SERVICE]);
    o += h->len[S_SERVICE];
    if (s->name.ptr) {
        memcpy(out + o, s->name.ptr, s->name.len);
        o += s->name.len;
    }
    return o;
}
_Static_assert(8 + 2 + 4 * RED_VALUE_MAX + SPAN_NAME_KEY_MAX <= KEY_MAX, "span key too long");

void red_observe_batch(void *arg, const struct span_batch *b)
{
    struct red *r = arg;
    if (!r || !b) return;
    int64_t now = r->now_ms();
    struct res_cache rc; /* only `used` needs zeroing */
    memset(rc.used, 0, sizeof rc.used);
    /* Scratch for one half, aligned for struct half. */
    static _Thread_local union {
        struct half h;
        char raw[RED_HALF_MAX];
    } scratch;
    char key[KEY_MAX];
    uint64_t last_trace_mark = 0;
    for (uint32_t i = 0; i < b->n_spans; i++) {
        const struct span *s = &b->spans[i];
        struct half *h = red_half_build(s, &rc, &scratch);

        struct obs o = {.failed = s->status_code == STATUS_ERROR,
                        .values = {h->duration_ms / 1000},
                        .trace_id = s->trace_id,
                        .span_id = s->span_id,
                        .ts_ms = s->end_unix_nano / 1000000};
        struct span_ctx c = {s, h};
        if (s->name.len <= SPAN_NAME_KEY_MAX) {
            record_keyed(r, G_SPAN, key, span_key(s, h, key), span_text, &c, &o);
        } else {
            size_t n = red_spanmetrics_labels(s, h, key);
            record(r, G_SPAN, key, n, NULL, 0, &o);
        }

        /* Request marks of CLIENT/SERVER spans: an access-log record of the same request is
         * counted by these spans, not again (consecutive spans of one trace mark it once). */
        uint64_t marks[2];
        uint32_t n_marks = span_batch_request_marks(b, i, marks);
        for (uint32_t k = 0; k < n_marks; k++)
            if (k > 0 || marks[0] != last_trace_mark) seen_add(r, marks[k], now);
        if (n_marks) last_trace_mark = marks[0];

        switch (s->kind) {
        case SPAN_KIND_CLIENT:
        case SPAN_KIND_PRODUCER:
            pair(r, s->span_id, h, now);
            break;
        case SPAN_KIND_SERVER:
        case SPAN_KIND_CONSUMER:
            if (red_span_shared(s)) pair(r, s->span_id, h, now);
            else if (s->has_parent) pair(r, s->parent_span_id, h, now);
            else if (s->kind == SPAN_KIND_SERVER) {
                /* A root SERVER span: its caller is outside the traces (Tempo's "user"). */
                record_edge(r, "user", 4, h->data + h->off[S_SERVICE], h->len[S_SERVICE],
                            CONN_VIRTUAL, NULL, h);
                record_istio(r, h, NULL, h);
            }
            break;
        default:
            break;
        }
    }
    /* Access-log records: one Istio sample each, at once (a record is one proxy's complete
     * report of one request): an inbound record reports as reporter="destination" with unknown
     * source_* labels, any other as reporter="source" with unknown destination_* identity
     * (destination_service from upstream_cluster, nginx's / HAProxy's upstream name, or
     * :authority). None when its request's spans were already seen (they reported it). The
     * service graph counts each call once ("access-log records on the service graph" above).
     * No span metrics. A record without a response code reports no request (an application
     * log from POST /v1/logs, otlp_logs.c): it is stored, never counted. */
    for (uint32_t i = 0; i < b->n_logs; i++) {
        const struct access_log *l = &b->logs[i];
        if (l->response_code < 0) continue;
        uint64_t marks[2];
        uint32_t n_marks = access_log_request_marks(l, marks);
        enum alog_side side = access_log_graph_side(l);
        if (n_marks && seen_any(r, marks, n_marks, now - r->ttl_ms)) {
            if (side != ALOG_SIDE_NONE) rec_count(r, REC_TRACED, 1);
            continue;
        }
        struct half *h = red_half_from_log(l, &scratch);
        bool server = h->kind == SPAN_KIND_SERVER;
        record_istio(r, h, server ? NULL : h, server ? h : NULL);
        if (side != ALOG_SIDE_NONE) rec_observe(r, l, h, side, marks, n_marks, now);
    }
}

/* ----- lifecycle ----------------------------------------------------------------------------- */

struct red *red_create(const struct red_options *o)
{
    pthread_once(&layout_once, layout_init);
    struct red *r = aligned_alloc(64, (sizeof(struct red) + 63) & ~(size_t)63);
    if (!r) goto oom;
    memset(r, 0, sizeof *r);
    r->series_limit = o && o->series_limit ? o->series_limit : 10000;
    r->pending_limit = o && o->pending_limit ? o->pending_limit : 100000;
    r->ttl_ms = o && o->pending_ttl_ms ? o->pending_ttl_ms : GRAPH_WAIT_DEFAULT_MS;
    r->now_ms = o && o->now_ms ? o->now_ms : mono_ms;
    r->rec_limit = o && o->record_limit ? o->record_limit : 100000;
    r->rec_max_bytes = o && o->record_max_bytes ? o->record_max_bytes : (uint64_t)32 << 20;
    r->gen = atomic_fetch_add_explicit(&next_gen, 1, memory_order_relaxed);
    for (int i = 0; i < RED_SHARDS; i++) {
        pthread_mutex_init(&r->shards[i].mu, NULL);
        pthread_mutex_init(&r->pshards[i].mu, NULL);
        r->shards[i].n_buckets = 64;
        r->shards[i].buckets = calloc(64, sizeof(struct series *));
        r->pshards[i].buckets = calloc(PENDING_BUCKETS, sizeof(struct pending *));
        pthread_mutex_init(&r->rshards[i].mu, NULL);
        r->rshards[i].buckets = calloc(REC_BUCKETS, sizeof(struct rec_pending *));
        r->rshards[i].seen = recent_set_create(SEEN_SLOTS);
        if (!r->shards[i].buckets || !r->pshards[i].buckets || !r->rshards[i].buckets ||
            !r->rshards[i].seen)
            goto oom;
    }
    return r;
oom:
    log_msg(LOG_ERROR, "red: out of memory creating the RED aggregator");
    red_destroy(r);
    return NULL;
}

void red_destroy(struct red *r)
{
    if (!r) return;
    for (int i = 0; i < RED_SHARDS; i++) {
        struct series_shard *sh = &r->shards[i];
        for (uint32_t j = 0; sh->buckets && j < sh->n_buckets; j++) {
            struct series *s = sh->buckets[j];
            while (s) {
                struct series *next = s->next;
                free(s);
                s = next;
            }
        }
        free(sh->buckets);
        struct pending *p = r->pshards[i].oldest;
        while (p) {
            struct pending *next = p->next;
            free(p);
            p = next;
        }
        free(r->pshards[i].buckets);
        struct rec_pending *e = r->rshards[i].oldest;
        while (e) {
            struct rec_pending *next = e->next;
            free(e->caller);
            free(e);
            e = next;
        }
        free(r->rshards[i].buckets);
        recent_set_destroy(r->rshards[i].seen);
        pthread_mutex_destroy(&r->rshards[i].mu);
        pthread_mutex_destroy(&sh->mu);
        pthread_mutex_destroy(&r->pshards[i].mu);
    }
    free(r);
}
