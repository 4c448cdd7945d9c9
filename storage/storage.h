/*
 * storage.h: meshscope's span model and its SQLite trace store.
 *
 * Two halves live here because every module shares them:
 *
 *  1. The internal span model (struct span and friends). Every ingest decoder (OTLP protobuf,
 *     OTLP JSON, later Zipkin) decodes once into it; the store serialises it once; the query
 *     layer renders it. It keeps everything OTLP can carry. All memory of a model object lives
 *     in the arena of the span_batch that holds it and is freed in one go with the batch.
 *
 *  2. The store: one SQLite database in WAL mode. Exactly one thread (the collector's writer)
 *     calls the write functions; any number of threads call the read functions, each of which
 *     borrows a read-only connection from a small pool inside the store.
 *
 * The storage module knows nothing of HTTP, JSON or protobuf.
 */
#ifndef MESHSCOPE_STORAGE_H
#define MESHSCOPE_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * Logging, shared by every module (storage is the bottom of the dependency chain). One line per
 * event on stderr: "2026-11-27T08:00:00.123Z warn store: message". Thread-safe.
 * ------------------------------------------------------------------------------------------- */
enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
extern _Atomic int log_min_level;
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like log_msg, but at most one line per `key` per second; the rest are counted and the count is
 * reported with the next line that passes. key is a static string naming the call site. */
void log_ratelimited(enum log_level level, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Parses "debug", "info", "warn", "error"; -EINVAL otherwise. */
int log_level_parse(const char *s, enum log_level *out /* OUT */);

/* ---------------------------------------------------------------------------------------------
 * Arena: a bump allocator freed in one go (h2o's mem pool). Not thread-safe; one owner at a time.
 * ------------------------------------------------------------------------------------------- */
struct arena;

/* Returns NULL on out of memory. */
struct arena *arena_create(size_t first_block);
/* Like arena_create, with the arena and its first block of `bytes` in one mapping of their own
 * rather than malloc's heap: for memory that outlives the allocations made around it (a
 * compacted batch waiting in the queue), which would otherwise pin the heap's free space between
 * them. The mapping goes back to the system when the arena is destroyed. */
struct arena *arena_create_mapped(size_t bytes);
/* arena_bytes of a fresh arena_create_mapped(bytes). */
size_t arena_mapped_bytes(size_t bytes);
/* Accepts NULL. */
void arena_destroy(struct arena *a);
/* 16-byte aligned, zeroed memory; NULL on out of memory. */
void *arena_alloc(struct arena *a, size_t size);
/* Copies len bytes and appends a NUL; NULL on out of memory. */
char *arena_strndup(struct arena *a, const char *s, size_t len);
/* Bytes allocated from the system so far (used to bound queue memory). */
size_t arena_bytes(const struct arena *a);

/* ---------------------------------------------------------------------------------------------
 * Span model. Numeric enum values are OTLP's, so decoders copy them straight through.
 * ------------------------------------------------------------------------------------------- */

/* A string or byte string. ptr is NUL-terminated for strings (not counted in len); bytes may
 * contain NULs. A NULL ptr means "absent"; the empty string is ptr="" len=0. */
struct mstr {
    const char *ptr;
    uint32_t len;
};

enum value_type {
    VALUE_EMPTY = 0, /* AnyValue with no value set */
    VALUE_STRING,
    VALUE_BOOL,
    VALUE_INT,
    VALUE_DOUBLE,
    VALUE_BYTES,
    VALUE_ARRAY,
    VALUE_KVLIST,
};

struct attr;

/* OTLP AnyValue. */
struct value {
    enum value_type type;
    union {
        struct mstr str; /* VALUE_STRING and VALUE_BYTES */
        bool b;
        int64_t i;
        double d;
        struct {
            struct value *items;
            uint32_t n;
        } array;
        struct {
            struct attr *items;
            uint32_t n;
        } kvlist;
    } u;
};

/* OTLP KeyValue. */
struct attr {
    struct mstr key;
    struct value value;
};

/* A list of attributes plus OTLP's dropped_attributes_count. */
struct attrs {
    struct attr *items;
    uint32_t n;
    uint32_t dropped;
};

struct resource {
    struct attrs attrs;
    struct mstr schema_url; /* ResourceSpans.schema_url */
};

struct scope {
    struct mstr name;
    struct mstr version;
    struct attrs attrs;
    struct mstr schema_url; /* ScopeSpans.schema_url */
};

struct span_event {
    uint64_t time_unix_nano;
    struct mstr name;
    struct attrs attrs;
};

struct span_link {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    struct mstr trace_state;
    struct attrs attrs;
    uint32_t flags;
};

enum span_kind {
    SPAN_KIND_UNSPECIFIED = 0,
    SPAN_KIND_INTERNAL = 1,
    SPAN_KIND_SERVER = 2,
    SPAN_KIND_CLIENT = 3,
    SPAN_KIND_PRODUCER = 4,
    SPAN_KIND_CONSUMER = 5,
};

enum status_code {
    STATUS_UNSET = 0,
    STATUS_OK = 1,
    STATUS_ERROR = 2,
};

struct span {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_span_id[8];
    bool has_parent; /* parent_span_id was present and not all-zero */
    struct mstr trace_state;
    uint32_t flags;
    struct mstr name;
    enum span_kind kind;
    uint64_t start_unix_nano;
    uint64_t end_unix_nano;
    struct attrs attrs;
    struct span_event *events;
    uint32_t n_events;
    uint32_t dropped_events;
    struct span_link *links;
    uint32_t n_links;
    uint32_t dropped_links;
    enum status_code status_code;
    struct mstr status_message;
    /* Shared by the spans of one ResourceSpans / ScopeSpans; owned by the batch arena. */
    const struct resource *resource;
    const struct scope *scope;
};

/* ---------------------------------------------------------------------------------------------
 * Access-log model: one proxy access-log record (Envoy's / Istio's JSON access log; see
 * collector/accesslog.h for the field mapping). Strings live in the batch arena like spans'.
 * ------------------------------------------------------------------------------------------- */

/* The string fields of a record, by index (a table keeps the decoder, the codec and the query
 * renderer in step). Append new fields before ALOG_STR_COUNT only: stored records carry their
 * field count, so older rows read back with the new fields absent. */
enum alog_str {
    ALOG_SERVICE, /* reporting service (see accesslog.h for where it comes from) */
    ALOG_METHOD,
    ALOG_PATH,           /* as given, query string included; never a metric label */
    ALOG_PROTOCOL,       /* "HTTP/1.1", "HTTP/2", ... */
    ALOG_RESPONSE_FLAGS, /* Envoy's flags, "-" for none */
    ALOG_RESPONSE_CODE_DETAILS,
    ALOG_CONNECTION_TERMINATION_DETAILS,
    ALOG_UPSTREAM_TRANSPORT_FAILURE_REASON,
    ALOG_X_FORWARDED_FOR,
    ALOG_USER_AGENT,
    ALOG_REQUEST_ID,
    ALOG_AUTHORITY,
    ALOG_UPSTREAM_HOST,
    ALOG_UPSTREAM_CLUSTER,
    ALOG_UPSTREAM_LOCAL_ADDRESS,
    ALOG_DOWNSTREAM_LOCAL_ADDRESS,
    ALOG_DOWNSTREAM_REMOTE_ADDRESS,
    ALOG_REQUESTED_SERVER_NAME,
    ALOG_ROUTE_NAME,
    ALOG_SOURCE_WORKLOAD, /* Istio custom fields, when an operator adds them to the format */
    ALOG_SOURCE_NAMESPACE,
    ALOG_SOURCE_PRINCIPAL,
    ALOG_DESTINATION_WORKLOAD,
    ALOG_DESTINATION_NAMESPACE,
    ALOG_RAW, /* the record's JSON text, verbatim (one line); absent from OTLP logs */
    /* OTLP log records (POST /v1/logs, collector/otlp_logs.c) */
    ALOG_SEVERITY,        /* severity_text, else the short name of severity_number ("WARN2") */
    ALOG_SEVERITY_NUMBER, /* severity_number 1..24 in decimal; absent when unspecified */
    ALOG_BODY,            /* the body: a string as is, any other AnyValue as JSON */
    ALOG_ATTRIBUTES,      /* the record's attributes as one JSON object (absent when none) */
    ALOG_DESTINATION_SERVICE, /* nginx upstream_name, HAProxy backend_name: the called service */
    ALOG_STR_COUNT
};

/* Which side of the proxy the record describes, from upstream_cluster's prefix. */
enum alog_direction {
    ALOG_DIRECTION_UNKNOWN = 0,
    ALOG_DIRECTION_INBOUND = 1,  /* "inbound|...": the proxy of the called workload */
    ALOG_DIRECTION_OUTBOUND = 2, /* "outbound|...", "PassthroughCluster": the caller's proxy */
};

struct access_log {
    uint64_t time_unix_nano; /* start_time */
    int64_t response_code;   /* -1 = absent (not a request: feeds no RED); 0 = no response */
    int64_t bytes_received;  /* -1 = absent */
    int64_t bytes_sent;      /* -1 = absent */
    int64_t duration_ms;     /* -1 = absent */
    int64_t upstream_service_time_ms; /* -1 = absent */
    uint8_t trace_id[16];
    uint8_t span_id[8];
    bool has_trace_id; /* from traceparent, trace_id / traceId or x-b3-traceid */
    bool has_span_id;
    enum alog_direction direction;
    struct mstr str[ALOG_STR_COUNT]; /* ptr NULL = absent */
    /* Where str[i] appears verbatim in str[ALOG_RAW]: its offset + 1; 0 = not known. A
     * decoder's hint: the store then keeps the value once, as a reference into the line. */
    uint32_t raw_ref[ALOG_STR_COUNT];
};

/* True for a failed request: response code >= 500 or 0 (no response), or response flags other
 * than "-" (Envoy's UH, UF, URX, NR, DC, ... all mean the request did not complete normally).
 * The flag the access_logs.error column and errors=true are built on. */
bool access_log_is_error(const struct access_log *l);

/* ----- counting each request once on the service graph (graph_pair.c) ------------------------
 * Shared by the RED engine (traces_service_graph_*) and the edge rollups (/api/graph), so both
 * count alike (README "Access logs"). Pure functions: any thread. */

/* Service-graph wait: how long a half of a call (a span or an access-log record) waits for its
 * other half, and the default of --service-graph-wait. Tempo's service-graph processor waits 10 s. */
#define GRAPH_WAIT_DEFAULT_MS 10000
/* The most hash-chain entries a pairing lookup (red.c, store.c) walks: past it the record is
 * counted alone at once instead of waiting (bounded work per record when ids repeat). */
#define GRAPH_PAIR_CHAIN_MAX 16u

/* The record's half of a call: NONE draws no edge (not a request, or no destination). */
enum alog_side { ALOG_SIDE_NONE, ALOG_SIDE_CLIENT, ALOG_SIDE_SERVER };
enum alog_side access_log_graph_side(const struct access_log *l);
/* The called service: an inbound record's own service ("unknown_service" without one), any
 * other record's destination service. Points into l. */
struct mstr access_log_callee(const struct access_log *l);
/* The key that pairs the two records of one call: hash of (request id, else trace id; called
 * service), never 0. false when the record draws no edge or carries neither id. */
bool access_log_pair_key(const struct access_log *l, uint64_t *key /* OUT */);
/* Fingerprints (never 0) of the request a record or a CLIENT/SERVER span belongs to: its trace
 * id and its x-request-id (spans: guid:x-request-id, http.request.header.x-request-id,
 * x-request-id). Fills out, returns how many (0..2; 0 for spans of other kinds). */
unsigned access_log_request_marks(const struct access_log *l, uint64_t out[2]);
unsigned span_request_marks(const struct span *s, uint64_t out[2]);

/* Marks seen recently: a direct-mapped table of about `slots` entries (rounded up to a power
 * of two; 16 bytes each); a newer mark may overwrite an older one (forgetting it early). Not
 * thread-safe. create returns NULL on out of memory; destroy accepts NULL. Times are the
 * caller's unit. */
struct recent_set;
struct recent_set *recent_set_create(uint32_t slots);
void recent_set_destroy(struct recent_set *r);
void recent_set_add(struct recent_set *r, uint64_t mark, int64_t now);
/* True when mark was added at or after since (and not overwritten since). */
bool recent_set_has(const struct recent_set *r, uint64_t mark, int64_t since);

/* A batch of spans with the arena that holds them. Built by one thread (a decoder), then handed
 * over whole (through the ingest queue) to another. It may also (or only) hold access-log
 * records, which travel the same queue, acknowledgement and write path. */
struct span_batch {
    struct arena *arena;
    struct span *spans; /* malloc'd, cap_spans of room; in the arena when cap_spans is 0 */
    uint32_t n_spans;
    uint32_t cap_spans;
    struct access_log *logs; /* malloc'd array, like spans; strings in the arena */
    uint32_t n_logs;
    uint32_t cap_logs;
    uint32_t rejected;         /* spans a decoder refused (partial_success.rejected_spans) */
    const char *reject_reason; /* first refusal's message, static or in the arena; may be NULL */
    void *user; /* the producer's tag (e.g. the request waiting for the commit); storage ignores it */
    /* The spans' chunks, encoded and compressed by store_prepare_batch on the producer's thread
     * (NULL: the writer does it). Stale if spans are added after it: prepare last. */
    struct prepared_chunks *prepared;
    /* store_queued_bytes' measure of the batch's compacted copy, kept for store_compact_batch
     * (0: not measured; adding or dropping a span clears it). */
    size_t compact_need;
};

/* Returns NULL on out of memory. */
struct span_batch *span_batch_create(void);
/* Accepts NULL. Frees the batch, its arena and everything in it. */
void span_batch_destroy(struct span_batch *b);
/* Appends a zeroed span and returns it (NULL on out of memory). The pointer stays valid only
 * until the next call (the array may move): fill it before adding the next. */
struct span *span_batch_add(struct span_batch *b);
/* Removes the last span added (a decoder that finds it invalid after all). */
void span_batch_drop_last(struct span_batch *b);
/* Appends a zeroed access-log record (numbers -1 = absent) and returns it (NULL on out of
 * memory). Valid until the next call, like span_batch_add's pointer. */
struct access_log *span_batch_add_log(struct span_batch *b);
/* Room for n records in all (a decoder that knows how many are coming). 0 or -ENOMEM. */
int span_batch_reserve_logs(struct span_batch *b, size_t n);
/* Removes the last record added. */
void span_batch_drop_last_log(struct span_batch *b);
/* Memory the batch holds, for the ingest queue's byte bound. */
size_t span_batch_bytes(const struct span_batch *b);

/* service.name of the span's resource, or "unknown_service" (OTel's default) when absent. */
const char *span_service_name(const struct span *s);
/* Looks up a span attribute by key (borrows; returns NULL if absent). */
const struct value *span_attr(const struct span *s, const char *key);
/* True for a "failed request": status ERROR, an attribute error=true (OpenTracing's convention),
 * an http status code attribute >= 500 (http.response.status_code or the older
 * http.status_code), or a SERVER span with rpc.grpc.status_code not 0. This is the flag the
 * error index is built on. */
bool span_is_error(const struct span *s);
/* span_request_marks and span_is_error of span i of b, as store_prepare_batch computed them on
 * the producer's thread when it prepared b (else computed now): the writer and the RED
 * aggregation need both for every span. */
unsigned span_batch_request_marks(const struct span_batch *b, uint32_t i, uint64_t out[2]);
bool span_batch_is_error(const struct span_batch *b, uint32_t i);
/* True if all bytes are zero. */
bool id_is_zero(const uint8_t *id, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Store.
 * ------------------------------------------------------------------------------------------- */
struct store;

struct store_options {
    const char *path;      /* database file; borrowed for the call */
    int64_t retention_us;  /* keep data this long; 0 = forever */
    int64_t max_db_bytes;  /* retention also trims to this size; 0 = unlimited */
    unsigned read_pool;    /* read-only connections kept for query threads (default 4 if 0) */
    int64_t graph_wait_us; /* service-graph wait (--service-graph-wait); 0 = GRAPH_WAIT_DEFAULT_MS */
};

/* Opens (creating or migrating) the database. Returns NULL and logs why on failure. */
struct store *store_open(const struct store_options *opts);
/* Accepts NULL. Caller guarantees no other thread is inside the store. */
void store_close(struct store *st);

/* Any thread, any number at once (an HTTP thread, before pushing the batch to the writer):
 * encodes and compresses the batch's spans into one chunk per trace, the writer's most costly
 * step, so that store_put_batches only inserts them. Before the database has a compression
 * dictionary the chunks are compressed without one, and while the writer still samples chunk
 * encodings to train it the batch keeps them for it. Does nothing (returns 0) for a batch
 * already prepared; a batch left unprepared (also on -ENOMEM) is stored just the same. */
int store_prepare_batch(struct store *st, struct span_batch *b);
/* Any thread, for a prepared batch (store_prepare_batch) of spans only, once nothing but the
 * writer reads it any more: keeps only what store_put_batches reads of its spans (ids, times,
 * kind, status, name and the attributes the service graph looks at; the stored chunks are
 * already made) and frees the rest, a fraction of the batch's memory while it waits in the
 * ingest queue. Does nothing (returns 0) for other batches; -ENOMEM leaves the batch as it was. */
int store_compact_batch(struct span_batch *b);
/* The bytes (span_batch_bytes) b holds once compacted, for a batch store_compact_batch would
 * compact once prepared (its compressed chunks counted as they are); else span_batch_bytes(b). */
size_t store_queued_bytes(struct span_batch *b);

/* Writer thread only. Stores every span and access-log record of the n batches in one
 * transaction: on return 0 all are committed; on a negative errno none are (-EIO database error, -ENOSPC disk or size
 * limit full, -ENOMEM). Borrows the batches. */
int store_put_batches(struct store *st, struct span_batch *const *batches, size_t n);

/* Writer thread only. Counts on the edge rollups what waited past the service-graph wait (span
 * halves whose other half never came, access-log records, paired or not) when no write call
 * came to do it; one short transaction, none when nothing expired. Call it about once a second.
 * Returns 0 or a negative errno (nothing counted: tried again next time). */
int store_flush_graph(struct store *st);

/* Writer thread only. Deletes at most max_rows rows of data received before now_us minus the
 * retention, or the oldest data while the file exceeds max_db_bytes; one short transaction.
 * *deleted (OUT) = spans plus access-log records deleted. Returns 0 (call again if *deleted > 0) or a negative errno. */
int store_retention_step(struct store *st, int64_t now_us, unsigned max_rows, uint64_t *deleted);

struct store_stats {
    uint64_t spans_stored;
    uint64_t traces_chunks_stored;
    uint64_t spans_deleted;
    uint64_t batches_committed;
    uint64_t logs_stored;  /* access-log records committed */
    uint64_t logs_deleted; /* access-log records removed by retention */
    int64_t db_bytes; /* page_count * page_size of the main file, plus the WAL */
    uint64_t wal_restarts;         /* times the WAL started over from its first frame */
    uint64_t writer_checkpoints;   /* checkpoints the writer ran itself (store.c, wal_hook) */
    uint64_t writer_checkpoint_us; /* time they took, inside its commits */
    uint64_t trace_index_pending;  /* committed chunks whose trace index row waits in memory */
};
/* Any thread. Counters are atomics; the snapshot is not one consistent instant. */
void store_get_stats(struct store *st, struct store_stats *out /* OUT */);

/* ----- reads: any thread ------------------------------------------------------------------- */

/* All spans of one trace, in one batch (spans sorted by start time). Returns 0 with *out set,
 * -ENOENT if unknown, or a negative errno. Caller owns *out (span_batch_destroy). */
int store_get_trace(struct store *st, const uint8_t trace_id[16], struct span_batch **out);

struct tag_filter {
    const char *key;
    const char *value; /* compared with the attribute rendered as text ("true", "500", ...) */
};

struct trace_query {
    const char *service;   /* required */
    const char *operation; /* NULL = any */
    const char *span_kind; /* NULL = any; "server", "client", ... (for operation lists) */
    int64_t start_us;      /* span start window [start_us, end_us] */
    int64_t end_us;
    int64_t min_duration_us; /* 0 = no bound */
    int64_t max_duration_us; /* 0 = no bound */
    unsigned limit;          /* max traces; 0 = 100 */
    bool errors_only;        /* only traces where a matching span is an error (span_is_error) */
    const struct tag_filter *tags; /* ANDed; matched against span attrs, resource attrs, and the
                                      pseudo-tags "error", "span.kind", "otel.status_code" */
    size_t n_tags;
};

/* Traces with a span matching q (service, operation, window, duration, tags all on the same
 * span, as Jaeger does), most recent first. *out (OUT) is an array of *n_out batches, one per
 * trace holding all the trace's spans; free with store_free_traces. Returns 0 or -errno. */
int store_find_traces(struct store *st, const struct trace_query *q, struct span_batch ***out,
                      size_t *n_out);
/* Accepts NULL. */
void store_free_traces(struct span_batch **traces, size_t n);

/* Service names, sorted. *out is a NULL-terminated array of strings, freed with
 * store_free_strings. */
int store_list_services(struct store *st, char ***out);

struct operation_info {
    char *name;
    enum span_kind kind;
};
/* Operations of a service (optionally only of one kind; SPAN_KIND_UNSPECIFIED = all), sorted by
 * name. *out (OUT) array of *n_out entries; free with store_free_operations. -ENOENT for an
 * unknown service is not an error: returns 0 with *n_out = 0. */
int store_list_operations(struct store *st, const char *service, enum span_kind kind,
                          struct operation_info **out, size_t *n_out);
void store_free_operations(struct operation_info *ops, size_t n);
void store_free_strings(char **strings);

struct dependency_link {
    char *parent;
    char *child;
    uint64_t call_count;
    uint64_t error_count;
};
/* Service-to-service call counts in [end_us - lookback_us, end_us] (lookback_us <= 0: all
 * time), from the edge rollups the writer keeps (the rows of store_graph between two services;
 * edges from the "user" node and to virtual nodes are left out, as Jaeger has no such nodes).
 * A rollup bucket counts when it overlaps the window. Free with store_free_dependencies. */
int store_dependencies(struct store *st, int64_t end_us, int64_t lookback_us,
                       struct dependency_link **out, size_t *n_out);
void store_free_dependencies(struct dependency_link *deps, size_t n);

/* ----- access logs ------------------------------------------------------------------------ */

#define LOG_QUERY_DEFAULT_LIMIT 100
#define LOG_QUERY_MAX_LIMIT 10000 /* larger limits are clamped */

struct log_query {
    const uint8_t *trace_id; /* 16 bytes, borrowed; NULL = any. Set: records of that trace */
    const char *service;     /* NULL = any */
    int64_t start_us;        /* record start_time window [start_us, end_us] */
    int64_t end_us;
    bool errors_only;        /* access_log_is_error records only */
    unsigned limit;          /* 0 = LOG_QUERY_DEFAULT_LIMIT; clamped to LOG_QUERY_MAX_LIMIT */
    /* The record's exact request_id (borrowed; NULL = any). Found through an index on a hash of
     * it: records stored before schema v5 have no hash and are never found by request id. */
    const char *request_id;
    int status_min, status_max; /* response_code within [min, max]; both 0 = any */
    int64_t min_duration_ms;    /* duration_ms >= this; 0 = any (as Jaeger's minDuration) */
    int64_t max_duration_ms;    /* duration_ms <= this; 0 = any. A record without a duration
                                 * never matches a set bound */
};

/* Any thread. Access-log records matching every condition of q: by trace id in time order
 * (oldest first, a trace reads forward), otherwise newest first. Without a service or trace
 * id the search walks the newest rows (receive order) and stops at the limit. *out (OUT) is a
 * batch holding the records in ->logs (n_logs may be 0); free it with span_batch_destroy.
 * Returns 0, -ENOMEM or -EIO. */
int store_find_logs(struct store *st, const struct log_query *q, struct span_batch **out);

/* ----- service graph ------------------------------------------------------------------------
 * Nodes and edges of a time window, summed from the writer's edge rollups (10 s buckets, 1 min
 * once older than 6 h; see EDGE ROLLUPS in store.c). An edge is a (client node, server node,
 * connection type); a node is a service, a virtual node (an uninstrumented peer a CLIENT span
 * named) or the "user" node (the caller of root SERVER spans). */
enum graph_node_kind { GRAPH_NODE_SERVICE = 0, GRAPH_NODE_VIRTUAL, GRAPH_NODE_USER };

/* RED summary of a set of requests. Latencies are interpolated from the rollup histogram
 * (within ~19%); NaN when no request in the set has a recorded latency (rollups migrated from a
 * v1 database counted calls only). */
struct graph_red {
    uint64_t requests;
    uint64_t errors;
    double rate;       /* requests per second over the window */
    double error_rate; /* errors / requests; 0 without requests */
    double p50_ms, p95_ms, p99_ms;
};

struct graph_node {
    char *name;      /* service name, the virtual peer's name, or "user" */
    char *namespace; /* service.namespace / k8s.namespace.name of a service; "" if none */
    enum graph_node_kind kind;
    struct graph_red inbound; /* all edges of the graph into this node */
};

struct graph_edge {
    size_t source, target;       /* indexes into graph.nodes */
    const char *connection_type; /* static: "", "messaging_system", "database", "virtual_node" */
    struct graph_red red;
};

struct graph {
    int64_t start_us, end_us;
    struct graph_node *nodes; /* sorted by kind (user, services, virtual), then name */
    size_t n_nodes;
    struct graph_edge *edges; /* sorted by source, target, connection_type */
    size_t n_edges;
};

/* Any thread. The service graph of [start_us, end_us] (end_us > start_us): every edge with a
 * rollup bucket overlapping the window. namespace (borrowed; NULL or "" = all) keeps the edges
 * with a service of that namespace at either end, and their nodes. *out (OUT) is the caller's,
 * freed with store_free_graph. Returns 0, -EINVAL for an empty window, -ENOMEM or -EIO. */
int store_graph(struct store *st, int64_t start_us, int64_t end_us, const char *namespace,
                struct graph **out);
/* Accepts NULL. */
void store_free_graph(struct graph *g);

#endif
