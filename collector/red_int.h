/*
 * red_int.h: declarations shared by the RED module's files, not an interface.
 *
 *   red_labels.c  span -> label values (OpenTelemetry semconv, Istio's Envoy proxy tags);
 *   red.c         series tables, the cardinality guard, service-graph pairing;
 *   red_render.c  Prometheus text / OpenMetrics exposition, content negotiation, gzip.
 */
#ifndef MESHSCOPE_RED_INT_H
#define MESHSCOPE_RED_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "red.h"

/* Longest label value kept, in bytes before escaping; longer values are cut at a UTF-8
 * boundary. Service and workload names are far shorter; the cap bounds memory per series. */
#define RED_VALUE_MAX 128

/* ----- label values of one span (red_labels.c) ------------------------------------------------ */

/* One string slot per label value a span contributes. The identity slots describe the span's
 * own workload (the source of a CLIENT, the destination of a SERVER). */
enum slot {
    S_SERVICE,      /* service.name: service graph client/server, span metrics service */
    S_WORKLOAD,     /* identity (8 slots, in Istio's label order) */
    S_NAMESPACE,
    S_PRINCIPAL,
    S_APP,
    S_VERSION,
    S_CANON_SVC,
    S_CANON_REV,
    S_CLUSTER,
    S_DST_SERVICE,  /* destination_service as this span sees it (a client: the host it called) */
    S_DST_NAME,
    S_DST_NS,
    S_PROTOCOL,     /* request_protocol */
    S_CODE,         /* response_code */
    S_GRPC,         /* grpc_response_status */
    S_FLAGS,        /* response_flags */
    S_PEER,         /* virtual node name for an unpaired CLIENT/PRODUCER ("" = none) */
    S_COUNT
};
#define S_IDENTITY_FIRST S_WORKLOAD
#define S_IDENTITY_N 8

/* Connection type of a virtual-node edge, Tempo's values. */
enum conn_type { CONN_NONE, CONN_MESSAGING, CONN_DATABASE, CONN_VIRTUAL };
extern const char *const red_conn_label[4];

/* Everything the service graph and the Istio metrics need of one CLIENT, SERVER, PRODUCER or
 * CONSUMER span, self-contained (strings copied and already escaped for a label value), so it
 * can wait in the pending store after its batch is freed. */
struct half {
    uint8_t kind; /* enum span_kind */
    uint8_t conn; /* enum conn_type of S_PEER */
    bool failed;  /* status ERROR, HTTP status >= 500, or a SERVER with gRPC status != 0 */
    bool has_dst; /* S_DST_SERVICE came from the span itself (not a fallback) */
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint64_t end_unix_nano; /* exemplar timestamp */
    double duration_ms;
    double req_bytes, resp_bytes;
    uint16_t off[S_COUNT], len[S_COUNT];
    uint32_t data_len;
    char data[]; /* the strings, back to back, not NUL-terminated */
};

/* Largest struct half + data red_half_build can produce (every slot at its escaped maximum). */
#define RED_HALF_MAX (sizeof(struct half) + S_COUNT * (4 * RED_VALUE_MAX + 8))

/* A view of the semconv and proxy attributes of one span (pointers into the batch). */
struct span_view;

/* Builds the half of s into buf (at least RED_HALF_MAX bytes, aligned for struct half).
 * res_cache lets spans sharing a resource scan its attributes once; zero its `used` per batch
 * (resources live in the batch's arena). */
#define RES_CACHE_WAYS 8 /* a batch's distinct resources (often one per service) */
struct res_cache {
    const struct resource *res[RES_CACHE_WAYS];
    bool used[RES_CACHE_WAYS];
    const struct value *vals[RES_CACHE_WAYS][64];
};
struct half *red_half_build(const struct span *s, struct res_cache *rc, void *buf);

/* The half of an access-log record (an inbound record as a SERVER, any other as a CLIENT), built
 * into buf like red_half_build. Borrows l. */
struct half *red_half_from_log(const struct access_log *l, void *buf);

/* Label string of a span-metrics series into out (escaped, no braces); returns its length.
 * out holds at least RED_SPANMETRICS_MAX bytes. */
#define RED_SPANMETRICS_MAX (4 * (4 * RED_VALUE_MAX + 32))
size_t red_spanmetrics_labels(const struct span *s, const struct half *h, char *out);

/* Appends v escaped for a Prometheus label value (\\, \", \n; invalid UTF-8 -> U+FFFD), cut at
 * RED_VALUE_MAX input bytes on a character boundary. out has room for 4 * RED_VALUE_MAX + 3.
 * Returns bytes written. */
size_t red_escape(const char *v, size_t len, char *out);

/* ----- series tables (red.c) ------------------------------------------------------------------ */

/* Groups of metric families sharing one label set (and so one series record). */
enum group { G_ISTIO, G_SPAN, G_GRAPH, G_UNPAIRED, G_DROPPED, G_COUNT };

struct exemplar {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    double value;
    uint64_t ts_ms; /* 0 = none */
};

struct hist_def {
    const char *name;        /* family name, without _bucket/_sum/_count */
    const char *help;
    const double *bounds;
    const char *const *le;   /* bounds as label text */
    uint32_t n_bounds;
    bool exemplars;
};

struct group_def {
    const char *counter;        /* family name with _total */
    const char *counter_help;
    const char *failed;         /* second counter (service graph failures) or NULL */
    const char *failed_help;
    uint32_t n_hist;
    const struct hist_def *hist[3];
    /* layout, computed once */
    size_t hist_off[3];
    size_t size;                /* header + histograms, labels follow */
};
extern struct group_def red_groups[G_COUNT];

struct series {
    struct series *next;     /* hash chain of its shard */
    struct series *gnext;    /* series of the same group in the shard */
    uint64_t hash;
    uint32_t labels_len;
    uint32_t group;
    uint32_t key_len;        /* memo key (red.c), after the labels and their NUL; 0 = none */
    uint64_t count;
    uint64_t failed;
    struct exemplar ex;      /* counter exemplar */
    /* then the histograms (red_groups[group].hist_off), then the labels text */
};

/* Histogram block inside a series: sum, then n_bounds + 1 bucket counts (not cumulative; the
 * last is above the last bound), then as many exemplars when the family keeps them. */
struct hist {
    double sum;
    uint64_t b[];
};

#define RED_SHARDS 64 /* power of two; enough that 2 x CPUs HTTP threads rarely meet */

struct series_shard {
    pthread_mutex_t mu;
    struct series **buckets;
    uint32_t n_buckets; /* power of two */
    uint32_t n;
    struct series *groups[G_COUNT];
} __attribute__((aligned(64)));

struct pending;
struct pending_shard {
    pthread_mutex_t mu;
    struct pending **buckets; /* PENDING_BUCKETS chains */
    struct pending *oldest, *newest; /* FIFO = expiry order (one TTL for all) */
} __attribute__((aligned(64)));

/* Access-log records waiting for the other proxy's record of the same call (red.c, "records").
 * A shard also keeps the recent request marks of spans whose mark hashes to it (seen). */
struct rec_pending;
struct rec_shard {
    pthread_mutex_t mu;
    struct rec_pending **buckets;        /* REC_BUCKETS chains */
    struct rec_pending *oldest, *newest; /* FIFO = expiry order */
    struct recent_set *seen;
} __attribute__((aligned(64)));

/* What became of an access-log record on the service graph (meshscope_service_graph_records_total). */
enum rec_outcome {
    REC_PAIRED,   /* counted once with the other proxy's record of the same call */
    REC_UNPAIRED, /* waited, no other record came: counted alone */
    REC_TRACED,   /* its request's spans count it: not counted again */
    REC_NO_ID,    /* no request id or trace id to pair on: counted alone at once */
    REC_FULL,     /* the pending store was full: counted alone at once */
    REC_OUTCOMES
};

struct red {
    uint32_t series_limit;
    uint32_t pending_limit;
    uint32_t rec_limit;       /* records waiting at most (count) */
    uint64_t rec_max_bytes;   /* and their bytes */
    int64_t ttl_ms;
    int64_t (*now_ms)(void);
    uint64_t gen;            /* unique per instance: tags the per-thread series memo (red.c) */
    struct series_shard shards[RED_SHARDS];
    struct pending_shard pshards[RED_SHARDS];
    _Atomic uint32_t n_series[G_COUNT];
    _Atomic uint64_t overflowed[G_COUNT]; /* observations folded into the overflow series */
    _Atomic uint32_t n_pending;
    struct rec_shard rshards[RED_SHARDS];
    _Atomic uint32_t n_rec;
    /* Newest time a span left a request mark (ms; 0 none yet): a record that came after a
     * wait without any marks skips the lookups (a mesh that only logs never pays for them). */
    _Atomic int64_t seen_last_ms;
    _Atomic uint64_t rec_bytes;
    _Atomic uint64_t rec_outcome[REC_OUTCOMES];
};
extern const char *const red_rec_outcome_label[REC_OUTCOMES];

static inline struct hist *series_hist(struct series *s, uint32_t i)
{
    return (struct hist *)((char *)s + red_groups[s->group].hist_off[i]);
}
static inline char *series_labels(struct series *s)
{
    return (char *)s + red_groups[s->group].size;
}
static inline struct exemplar *hist_exemplars(const struct hist_def *d, struct hist *h)
{
    return (struct exemplar *)(h->b + d->n_bounds + 1);
}

/* Appends the module's families to the buffer (red_render.c uses red.c's tables). */
struct red_buf {
    char *p;
    size_t len, cap;
    bool oom;
};
bool red_buf_reserve(struct red_buf *b, size_t n);

#endif
