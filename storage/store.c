/*
 * store.c: the trace store's write side: opening and migrating the database, storing batches of
 * spans (chunks, search index, dictionaries, edge rollups), retention, statistics.
 *
 * Schema (PRAGMA user_version 8; migrate() brings older files forward):
 *
 *   services(id, name UNIQUE, namespace)            service dictionary; namespace (v2) is the
 *                                                   last k8s.namespace.name / service.namespace /
 *                                                   istio.namespace seen on its resource, or NULL
 *   operations(id, service_id, name, kind)          operation dictionary, UNIQUE(service,name,kind)
 *   chunks(id, trace_key, n_spans, data)            one row per trace per write call (per
 *                                                   batch for a prepared batch, see DESIGN):
 *                                                   the zstd-compressed codec.c encoding of its
 *                                                   spans; found by trace through
 *                                                   trace_index (v8; until v7 an index on
 *                                                   chunks(trace_key))
 *   trace_index(trace_key, chunk_id)                (v8) WITHOUT ROWID: the chunks of each
 *                                                   trace key, written in key order seconds
 *                                                   after the chunks (THE TRACE INDEX below)
 *   store_state(name, value)                        (v8) trace_index_from: the first chunk id
 *                                                   whose trace_index row may be missing;
 *                                                   chunk_id_floor: ids below it were used
 *                                                   (retention records it), never reused
 *   span_index(service_id, start_us, trace_key,     one narrow search row per (trace, service,
 *              op_id, min_dur_us, dur_spread_us,    operation+kind) per write call, grouping spans
 *              error)                               whose starts lie within INDEX_GROUP_SPREAD_US;
 *                                                   (v7) WITHOUT ROWID, keyed (service_id,
 *                                                   start_us, trace_key, op_id); the longest
 *                                                   duration is min_dur_us + dur_spread_us
 *                                                   (max_dur_us until v6); a partial index on
 *                                                   error rows
 *   edge_rollup(bucket, resolution, client_id,      (v2) service-graph rollups: calls, errors,
 *               server_id, conn, calls, errors,     latency sum and sparse latency histogram
 *               dur_sum_us, hist)                   (rollup.c) per edge per time bucket; see
 *                                                   EDGE ROLLUPS below; (v4) plus summary rows
 *                                                   per edge per 10 min and per hour
 *                                                   (resolution 600, 3600), index on them by
 *                                                   (resolution, bucket)
 *   virtual_nodes(id, name UNIQUE)                  (v2) uninstrumented peers named by CLIENT
 *                                                   spans (edge node id = -id)
 *   receive_marks(minute, first_chunk)              first chunk id written in each receive-time
 *                                                   minute (first_index, the search rows', until
 *                                                   v7)
 *   dicts(id, data)                                 zstd dictionaries, id = the dictionary id
 *                                                   that zstd records in each frame
 *   access_logs(id, recv_minute, time_us,           (v3) one row per access-log record: receive
 *               service_id, trace_key,              minute (retention), start time, reporting
 *               response_code, error, data)         service, trace key (NULL without a trace
 *                                                   id), code (-1 absent), error flag
 *                                                   (access_log_is_error), data = zstd of the
 *                                                   access_log.c encoding (raw line included);
 *                                                   index (service_id, time_us) and a partial
 *                                                   one on trace_key IS NOT NULL
 *               request_key, duration_ms            (v5) request_key: request_key_of(request_id)
 *                                                   (NULL without one), partial index on it;
 *                                                   duration_ms (-1 absent). Both NULL in rows
 *                                                   stored before v5 (not backfilled: that
 *                                                   would decode every record; readers decode
 *                                                   such rows for duration filters, and do not
 *                                                   find them by request id)
 *
 * Access logs are written in the same transaction as the spans of the same call (acknowledged
 * means durable for them too). Their ids only grow, so receive order is id order and retention
 * looks at the oldest rows only: it deletes, among the first max_rows rows by id, those received
 * before the cutoff minute (and, over max_db_bytes, the oldest max_rows rows).
 *
 * Compression dictionary: a chunk is small (one trace of one write call, often a few KiB), so
 * on its own zstd cannot exploit what chunks share (attribute keys, resources, service and
 * operation names). Until the database has a dictionary, the writer keeps the raw encodings of
 * the first chunks as samples (DICT_SAMPLE_BYTES); then it trains a dictionary once
 * (ZDICT_trainFromBuffer, a one-off stall of the writer well under a second), commits it to
 * dicts in its own transaction, and compresses every later chunk with it. Readers find the
 * dictionary through the id in the frame header and cache it per connection. Chunks written
 * before the dictionary stay readable without it.
 * Access-log records have a dictionary of their own, trained the same way from the first
 * LOG_DICT_MAX_SAMPLES record encodings, its id in the LOG_DICT_ID_BASE range (so each kind
 * finds its own at open); readers need not know: the frame names the dictionary.
 *
 * EDGE ROLLUPS (the service graph, /api/graph and /api/dependencies): an edge is (client node,
 * server node, connection type). Pairs are found per write call (a span and its parent in the
 * same call) and across calls through the pending map (the first half of a CLIENT/SERVER or
 * PRODUCER/CONSUMER pair waits the service-graph wait (wait_us) for the other, as Tempo's
 * service-graph processor does; the Zipkin/Envoy shared-span form, a SERVER with zipkin.shared=true
 * and its CLIENT's span id, pairs the same way). Consistent with the RED metrics (collector/red.c):
 *  - a paired call counts on client -> server; it failed if either half failed; its latency is
 *    the SERVER (or CONSUMER) span's duration; its time is the server span's start;
 *  - a root SERVER span (no parent) counts on "user" -> server at once, and so does a SERVER
 *    half whose client never came within the TTL (its latency is the server's);
 *  - a CLIENT/PRODUCER half whose server never came counts, when it expires, on client ->
 *    virtual node named by peer.service, db.name / db.namespace, db.system, messaging.system or
 *    server.address (port cut), connection type database / messaging_system (producer) /
 *    virtual_node, with the client span's duration; without any of them it counts nothing;
 *  - a span whose parent is in the same call but in another service, when they are not a
 *    client/server pair, counts parent service -> child service (as the dependency rollups of
 *    v1 did).
 * Expired halves are turned into edges by the next write call (there is no timer); halves that
 * wait when the process stops, or that are pushed out of a full map, are lost (a restart loses
 * at most wait_us of unpaired halves). store_flush_graph, called by the writer about once a
 * second, does the same when no write call comes.
 * ACCESS-LOG RECORDS (log_edge): each request counts once, as collector/red.c counts it (both
 * use graph_pair.c; README "Access logs"). A record with a request id (else a trace id) waits
 * wait_us in the record map (RPEND_CAP entries, allocated at open), keyed by
 * access_log_pair_key; the other proxy's record of the same call joins its entry. When the wait
 * is over (next write call, or store_flush_graph) the entry counts once: both halves on caller ->
 * callee (error and latency from the outbound record, time bucket its start), an outbound half
 * alone on caller -> destination, an inbound half alone on "unknown" (virtual) or its
 * source_workload -> callee; nothing when a CLIENT/SERVER span of the same request (trace id or
 * x-request-id, remembered in `seen`) was stored from one wait before the record on: the spans
 * count it. A
 * record without either id, or that finds the map full, counts alone at once. Entries wait
 * whole even once paired, so spans that arrive after their records still win. The map changes
 * as records come (a record may pair with one of the same write call); a failed write call
 * undoes its changes from rpend_undo.
 * Each write call upserts one row per (10 s bucket, edge) it touched, merging histograms with
 * the SQL function hist_merge. Retention downsamples: rows of 10 s buckets older than
 * ROLLUP_DOWNSAMPLE_AFTER (6 h, by the receive clock) are merged into 1 min rows, so a 24 h
 * graph would read 6*360 + 18*60 = 3,240 rows per edge; rows past the retention are deleted (by
 * bucket time). A reader sums both fine resolutions: each call lives in exactly one fine row.
 * SUMMARIES (v4): every upsert of 10 s rows also upserts the (10 min, edge) and (hour, edge)
 * rows (resolutions ROLLUP_10MIN_S, ROLLUP_HOUR_S), so a summary row is always the exact sum of
 * the fine rows of its span of time (downsampling moves calls between fine rows of the same
 * minute and leaves it alone; the v4 migration built the rows of older data). A reader takes
 * hour rows for the whole hours inside its window, 10 min rows for the whole 10 minutes left
 * at both ends, and fine rows only for what remains (store_read.c, EDGE_ROWS): a 24 h graph
 * reads at most 24 + 10 + ~120 rows per edge instead of 3,240, with the same sums. Retention
 * deletes a summary row with the fine rows of its first minute (by bucket time), so a window
 * reaching into the retention cutoff's hour may miss that hour's remaining minutes.
 *
 * trace_key is the last 8 bytes of the trace id (its random low half); readers check the full id
 * after decoding.
 *
 * THE TRACE INDEX (v8): keys are random, so an index on chunks(trace_key) put each new trace's
 * key on a random page, and every commit wrote one 4 KiB page per trace to the WAL (590 bytes of
 * WAL per span at the maximum rate, 4.9x what was stored, copied again by the checkpointer).
 * Now a committed chunk's (key, id) waits in memory (trace_pending.c) until it is ~8 s old;
 * then the writer merges it into trace_index in key order with the others of those seconds,
 * twice as many per write transaction as it adds (merge_trace_index), so a page written takes
 * many keys.
 * Readers look in memory and in trace_index (store_read.c, load_trace). trace_index_from,
 * updated in the same transactions, is the first chunk id that may have no row: store_open
 * writes the rows of the chunks from it on, so a crash loses no entry. Retention deletes
 * chunks by id; their rows go in a sweep over the key space, 1/256 of it per retention step
 * (sweep_trace_index).
 * Chunk ids are assigned by the writer from a counter that only grows, so rowid order is receive
 * order and retention deletes rowid ranges found through receive_marks, without a time index on
 * the big table. Chunk retention is therefore by RECEIVE time (a span that arrives late can be
 * fetched by trace id for its full retention), with minute granularity: rows are deleted up to
 * one minute after they fall out of the retention. Search rows (v7) are keyed by service and
 * start time and deleted by START time, service by service (delete_index): a span that started
 * before the retention cutoff is not found by searches, whenever it arrived. Edge rollups are
 * trimmed by their span-time bucket.
 * The size bound (max_db_bytes) is checked against used pages ((page_count - freelist_count)
 * * page_size): SQLite reuses freed pages, so the file stays near its high-water mark instead
 * of shrinking.
 *
 * DESIGN (threads):
 *  - One writer thread calls store_put_batches, store_retention_step and the test hooks. It alone
 *    touches st->db, its prepared statements, the zstd compression context, the scratch
 *    buffers, the service/operation caches, the pending dependency map and the id counters; none
 *    of these is locked.
 *  - Any thread calls store_prepare_batch, the producers (HTTP threads) before they queue a
 *    batch: it encodes and compresses the batch's chunks (one per trace), which was half of the
 *    writer's CPU per span, so the writer only inserts them. It reads only prep_cdict (set once
 *    the dictionary is committed; a replaced one is freed at close, not before) and takes
 *    compression contexts from prep_cctx by atomic exchange. Before the database has a
 *    dictionary it compresses without one and, until the writer has its training samples
 *    (prep_sampling), keeps the encodings for the writer to sample: a fresh daemon's writer
 *    encoding and compressing every chunk itself until the dictionary was committed (~0.8 s at
 *    half the bench's maximum rate) was its first second's p99 of 70-120 ms, against ~25.
 *  - Any thread calls the read functions (store_read.c). They use only st->pool, whose
 *    connections are read-only and checked out under the pool's mutex; WAL lets them read a
 *    consistent snapshot while the writer commits.
 *  - The writer and the readers share st->tpend, the trace index entries not yet written; it
 *    has its own mutex and DESIGN (trace_pending.c). Readers pin it before their snapshot.
 *  - The dictionary trainers (struct trainer: one thread per kind, chunks and access-log
 *    records, once per process while the database has no dictionary of that kind): the writer
 *    moves its samples to it and joins it after it set ready, then stores the dictionary
 *    itself; it touches nothing else. Training takes ~0.3 s of CPU, which
 *    on the writer thread was a stall that every request waiting for a commit shared; the
 *    trainers run at nice TRAIN_NICE (trainer_thread).
 *  - The checkpointer thread owns a connection of its own (ckpt_db) and only checkpoints
 *    (PASSIVE) when the writer's WAL hook asks, after each commit once the WAL passed
 *    CKPT_BYTES, until the WAL starts over (wal_hook). A checkpoint (page copies and the fsyncs
 *    of the WAL and the database file) in the writer's COMMIT delayed every request waiting for
 *    that commit by 50-150 ms on the bench machine, and a last "tail" of it still did by 15-45
 *    ms; in WAL mode it runs beside the writer's commits instead, and at anything below the
 *    writer's full speed the writer copies nothing. The writer copies what the last pass left
 *    only past CKPT_WRITER_BYTES, and after every commit past CKPT_FORCE_BYTES (bounded WAL).
 *    Its mutex and condition variable are the only locks in the write side.
 *  - Statistics are _Atomic and written by the writer only; store_get_stats reads them from any
 *    thread.
 *  - store_open and store_close run while no other thread is inside the store.
 *
 * Failure: every write runs in one transaction; on any error it is rolled back and the writer's
 * in-memory state that mirrors the database (dictionary caches, id counters, receive mark) is
 * reset, and the pending dependency map is only changed after a successful commit, so a failed
 * call leaves no trace.
 */
#include "storage_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zdict.h>
#include <zstd.h>

#define SCHEMA_VERSION 8
/* zstd level 1: chunks are small (one trace of one write call), and level 1 already removes
 * the repeated attribute keys and resources; higher levels cost writer CPU for a few percent. */
#define STORE_ZSTD_LEVEL 1
/* Cross-batch dependency pairing (Tempo's service-graph processor): a half waits the
 * service-graph wait (st->wait_us) for its other half, and at most this many halves wait (about
 * 80 bytes each). */
#define PENDING_CAP 100000u
#define PENDING_BUCKETS 131072u /* power of two above PENDING_CAP */
/* The dictionary caches are flushed when they grow past this (a runaway cardinality of span
 * names must not grow the writer without bound; a flush only costs re-lookups). */
#define INTERN_MAX 262144u
/* Dictionary training: this much sample input (raw chunk encodings), at most this many
 * samples, for a dictionary of DICT_BYTES. zstd's guidance is about 100x the dictionary; 16x
 * stores the same bytes per span (1M spans of the query bench set: 155.6 MB either way; 400k
 * of bench_store: 92 against 98 bytes per span, the dictionary coming sooner), and training
 * a quarter of the input takes less CPU from the requests a fresh daemon is serving. */
#define DICT_SAMPLE_BYTES (1u << 20)
#define DICT_MAX_SAMPLES 20000u
#define DICT_BYTES (64u << 10)
/* WAL bounds, in bytes of frames (wal_hook has the whole scheme; it counts frames, which are
 * pages: 8 KiB in a new file, 4 KiB in one made before). The checkpointer starts once the WAL
 * holds CKPT_BYTES (fewer, larger checkpoints copy each hot page once instead of several times)
 * and passes after every commit until the WAL starts over, which at half the maximum rate
 * happens by ~22 MiB (measured with 4 KiB pages). Past CKPT_WRITER_BYTES the writer copies what
 * the checkpointer's last pass left (the maximum rate, where the writer never pauses); past
 * CKPT_FORCE_BYTES (the checkpointer cannot keep up, or is not running) it checkpoints after
 * every commit. Without a reader holding an old snapshot (which SQLite lets block any restart)
 * the WAL therefore stays under CKPT_WRITER_BYTES plus a few commits, and under
 * CKPT_FORCE_BYTES plus one commit whatever happens. */
#define CKPT_BYTES (16 << 20)
#define CKPT_WRITER_BYTES (128 << 20)
#define CKPT_FORCE_BYTES (256 << 20)
/* Access-log records get a dictionary of their own (they share little with span chunks): one
 * record is ~0.5-1 KiB, and zstd alone on that spends most of its time building per-frame
 * tables for a ratio of ~1.4; with a dictionary trained on the first records a frame costs a
 * quarter of that (~74,000 -> ~18,000 instructions for a 1 KiB encoding) and shrinks several
 * times more. Trained once from LOG_DICT_MAX_SAMPLES records (or
 * LOG_DICT_SAMPLE_BYTES), LOG_DICT_BYTES large; its zstd id is put in the LOG_DICT_ID_BASE range
 * so that open() tells the two kinds apart in dicts. */
#define LOG_DICT_SAMPLE_BYTES (2u << 20)
#define LOG_DICT_MAX_SAMPLES 2000u
#define LOG_DICT_BYTES (32u << 10)
#define LOG_DICT_ID_BASE 0x4c4f0000u /* "LO": ids 0x4c4f0000..0x4c4fffff */
#define LOG_DICT_ID_SQL "1280245760 AND 1280311295"
/* Access-log blocks (see DESIGN): records per block, encoded bytes per block, and the most
 * start time between a block's first and last record (LOG_BLOCK_SPAN_US is in storage_int.h:
 * readers widen their windows by it). */
#define LOG_BLOCK_RECORDS 512u
#define LOG_BLOCK_RAW (1u << 20)
/* A retention step deletes at most this many blocks for max_rows rows (a block holds up to
 * LOG_BLOCK_RECORDS records: a step stays about as long as with one row per record). */
#define LOG_BLOCK_STEP(max_rows) ((max_rows) / 16 ? (max_rows) / 16 : 1)
/* Fine (10 s) rollups are merged into 1 min rows once this old: a dashboard zooms into the last
 * hours; beyond them a minute is fine enough and six times smaller. */
#define ROLLUP_DOWNSAMPLE_AFTER_S (6 * 3600)
/* Virtual node names are cut here (they come from client-supplied attributes). */
#define VNODE_NAME_MAX 128u
/* Per-call cache of resource -> service id (a write call has few distinct resources). */
#define RES_CACHE 64u

/* ----- small hash helpers ------------------------------------------------------------------ */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

int64_t trace_key_of(const uint8_t trace_id[16])
{
    /* The low half: random in every id scheme (W3C, and Zipkin/B3 64-bit ids, which are the low
     * half of a 128-bit id with the high half zero, would all share one key otherwise). */
    uint64_t k = 0;
    for (int i = 8; i < 16; i++) k = (k << 8) | trace_id[i];
    return (int64_t)k;
}

int64_t request_key_of(const char *id, size_t len)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 offset basis and prime */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)id[i]) * 1099511628211ULL;
    return (int64_t)h;
}

/* Interning cache: key bytes -> database id. Open addressing, no deletion (only a full clear). */
struct intern_ent {
    uint64_t hash;
    char *key; /* NULL = empty slot */
    uint32_t klen;
    int64_t id;
    uint64_t aux; /* services: hash of the namespace last written to the row (0 = none yet) */
};

struct intern {
    struct intern_ent *slots;
    size_t cap; /* power of two or 0 */
    size_t n;
};

static void intern_clear(struct intern *m)
{
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].key);
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

static struct intern_ent *intern_find(const struct intern *m, const void *key, uint32_t klen,
                                      uint64_t h)
{
    if (!m->cap) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct intern_ent *e = &m->slots[i];
        if (!e->key) return NULL;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) return e;
    }
}

static int64_t intern_get(const struct intern *m, const void *key, uint32_t klen, uint64_t h)
{
    const struct intern_ent *e = intern_find(m, key, klen, h);
    return e ? e->id : 0;
}

static int intern_put(struct intern *m, const void *key, uint32_t klen, uint64_t h, int64_t id)
{
    if (m->n >= INTERN_MAX) intern_clear(m);
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        struct intern_ent *slots = calloc(cap, sizeof *slots);
        if (!slots) return -ENOMEM;
        for (size_t i = 0; i < m->cap; i++) {
            struct intern_ent *e = &m->slots[i];
            if (!e->key) continue;
            size_t j = e->hash & (cap - 1);
            while (slots[j].key) j = (j + 1) & (cap - 1);
            slots[j] = *e;
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    char *copy = malloc(klen ? klen : 1);
    if (!copy) return -ENOMEM;
    memcpy(copy, key, klen);
    size_t i = h & (m->cap - 1);
    while (m->slots[i].key) i = (i + 1) & (m->cap - 1);
    m->slots[i] = (struct intern_ent){.hash = h, .key = copy, .klen = klen, .id = id};
    m->n++;
    return 0;
}

/* ----- pending dependency halves ----------------------------------------------------------- */

enum { SIDE_CLIENT = 0, SIDE_SERVER = 1 };

struct pend {
    uint8_t trace_id[16];
    uint8_t span_id[8]; /* the client span's id (a server half is keyed by its parent id) */
    uint8_t side;
    uint8_t kind;    /* enum span_kind of the half */
    uint8_t conn;    /* client half: connection type to its virtual node */
    bool error;
    bool used;
    int64_t service_id;
    int64_t peer_id; /* client half: its virtual node (< 0), 0 if it names none */
    int64_t bucket;  /* the half's 10 s bucket (seconds) */
    int64_t dur_us;
    int64_t added_us;
    int32_t hnext;         /* hash chain */
    int32_t older, newer;  /* age list: oldest at head */
};

struct pending {
    struct pend *e; /* PENDING_CAP entries, allocated at open */
    int32_t *buckets;
    int32_t free_head; /* free list through hnext */
    int32_t oldest, newest;
    uint32_t n;
};

static uint32_t pend_hash(const uint8_t *trace_id, const uint8_t *span_id, uint8_t side)
{
    uint8_t k[25];
    memcpy(k, trace_id, 16);
    memcpy(k + 16, span_id, 8);
    k[24] = side;
    return (uint32_t)hash_bytes(k, sizeof k) & (PENDING_BUCKETS - 1);
}

static int pending_init(struct pending *p)
{
    p->e = calloc(PENDING_CAP, sizeof *p->e);
    p->buckets = malloc(PENDING_BUCKETS * sizeof *p->buckets);
    if (!p->e || !p->buckets) return -ENOMEM;
    for (uint32_t i = 0; i < PENDING_BUCKETS; i++) p->buckets[i] = -1;
    for (uint32_t i = 0; i < PENDING_CAP; i++)
        p->e[i].hnext = i + 1 < PENDING_CAP ? (int32_t)(i + 1) : -1;
    p->free_head = 0;
    p->oldest = p->newest = -1;
    p->n = 0;
    return 0;
}

static void pending_free(struct pending *p)
{
    free(p->e);
    free(p->buckets);
}

static int32_t pending_find(const struct pending *p, const uint8_t *trace_id,
                            const uint8_t *span_id, uint8_t side)
{
    for (int32_t i = p->buckets[pend_hash(trace_id, span_id, side)]; i >= 0; i = p->e[i].hnext) {
        const struct pend *e = &p->e[i];
        if (e->side == side && memcmp(e->span_id, span_id, 8) == 0 &&
            memcmp(e->trace_id, trace_id, 16) == 0)
            return i;
    }
    return -1;
}

static void pending_remove(struct pending *p, int32_t i)
{
    struct pend *e = &p->e[i];
    if (!e->used) return;
    int32_t *link = &p->buckets[pend_hash(e->trace_id, e->span_id, e->side)];
    while (*link != i) link = &p->e[*link].hnext;
    *link = e->hnext;
    if (e->older >= 0) p->e[e->older].newer = e->newer;
    else p->oldest = e->newer;
    if (e->newer >= 0) p->e[e->newer].older = e->older;
    else p->newest = e->older;
    e->used = false;
    e->hnext = p->free_head;
    p->free_head = i;
    p->n--;
}

static void pending_expire(struct pending *p, int64_t cutoff)
{
    while (p->oldest >= 0 && p->e[p->oldest].added_us < cutoff)
        pending_remove(p, p->oldest);
}

static void pending_add(struct pending *p, const struct pend *tmpl, int64_t now_us)
{
    int32_t old = pending_find(p, tmpl->trace_id, tmpl->span_id, tmpl->side);
    if (old >= 0) pending_remove(p, old);
    if (p->free_head < 0) pending_remove(p, p->oldest); /* full: the oldest half gives way */
    int32_t i = p->free_head;
    struct pend *e = &p->e[i];
    p->free_head = e->hnext;
    *e = *tmpl;
    e->used = true;
    e->added_us = now_us;
    uint32_t b = pend_hash(e->trace_id, e->span_id, e->side);
    e->hnext = p->buckets[b];
    p->buckets[b] = i;
    e->older = p->newest;
    e->newer = -1;
    if (p->newest >= 0) p->e[p->newest].newer = i;
    else p->oldest = i;
    p->newest = i;
    p->n++;
}

/* ----- access-log records waiting for their other half (see ACCESS-LOG RECORDS) ----------- */

#define RPEND_CAP 100000u        /* records waiting at most (~130 bytes each: 13 MB at open) */
#define RPEND_BUCKETS 131072u    /* power of two above RPEND_CAP */
#define SEEN_SLOTS 262144u       /* recent request marks of spans (16 bytes each: 4 MiB) */

struct rpend {
    uint64_t key;
    uint64_t marks[4];
    uint8_t n_marks;
    bool used, has_client, has_server, client_err, server_err;
    int conn;          /* of the server half alone: CONN_VIRTUAL from "unknown", else plain */
    int64_t caller_id; /* client half's service; else the server half's source node */
    int64_t callee_id;
    int64_t client_bucket, server_bucket;
    int64_t client_dur_us, server_dur_us;
    int64_t added_us;
    int32_t hnext;        /* hash chain */
    int32_t older, newer; /* age list: oldest at head */
};

struct rpend_map {
    struct rpend *e; /* RPEND_CAP entries */
    int32_t *buckets;
    int32_t free_head;
    int32_t oldest, newest;
};

/* One change of the current write call, undone if it rolls back: an entry added (before.used
 * false) or an entry as it was before a record joined it. */
struct rpend_undo {
    int32_t idx;
    struct rpend before;
};

static int rpend_init(struct rpend_map *m)
{
    m->e = calloc(RPEND_CAP, sizeof *m->e);
    m->buckets = malloc(RPEND_BUCKETS * sizeof *m->buckets);
    if (!m->e || !m->buckets) return -ENOMEM;
    for (uint32_t i = 0; i < RPEND_BUCKETS; i++) m->buckets[i] = -1;
    for (uint32_t i = 0; i < RPEND_CAP; i++)
        m->e[i].hnext = i + 1 < RPEND_CAP ? (int32_t)(i + 1) : -1;
    m->free_head = 0;
    m->oldest = m->newest = -1;
    return 0;
}

static void rpend_free(struct rpend_map *m)
{
    free(m->e);
    free(m->buckets);
}

/* A live entry of key still missing the given side; -1 if none; -2 when the bucket's chain is
 * longer than GRAPH_PAIR_CHAIN_MAX (many records of one request id and callee, a client that
 * repeats its ids: the caller counts the record alone rather than walk and grow the chain, so
 * a record costs bounded time whatever the input). */
static int32_t rpend_find(const struct rpend_map *m, uint64_t key, bool client, int64_t cutoff)
{
    unsigned walked = 0;
    for (int32_t i = m->buckets[key & (RPEND_BUCKETS - 1)]; i >= 0; i = m->e[i].hnext) {
        const struct rpend *e = &m->e[i];
        if (e->key == key && e->added_us >= cutoff && !(client ? e->has_client : e->has_server))
            return i;
        if (++walked >= GRAPH_PAIR_CHAIN_MAX) return -2;
    }
    return -1;
}

static void rpend_remove(struct rpend_map *m, int32_t i)
{
    struct rpend *e = &m->e[i];
    if (!e->used) return;
    int32_t *link = &m->buckets[e->key & (RPEND_BUCKETS - 1)];
    while (*link != i) link = &m->e[*link].hnext;
    *link = e->hnext;
    if (e->older >= 0) m->e[e->older].newer = e->newer;
    else m->oldest = e->newer;
    if (e->newer >= 0) m->e[e->newer].older = e->older;
    else m->newest = e->older;
    e->used = false;
    e->hnext = m->free_head;
    m->free_head = i;
}

/* Adds a copy of t (now the newest); -1 when the map is full. */
static int32_t rpend_add(struct rpend_map *m, const struct rpend *t)
{
    int32_t i = m->free_head;
    if (i < 0) return -1;
    struct rpend *e = &m->e[i];
    m->free_head = e->hnext;
    *e = *t;
    e->used = true;
    uint32_t b = (uint32_t)(e->key & (RPEND_BUCKETS - 1));
    e->hnext = m->buckets[b];
    m->buckets[b] = i;
    e->older = m->newest;
    e->newer = -1;
    if (m->newest >= 0) m->e[m->newest].newer = i;
    else m->oldest = i;
    m->newest = i;
    return i;
}

/* ----- the store --------------------------------------------------------------------------- */

enum {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_SVC_INSERT,
    W_SVC_SELECT,
    W_OP_INSERT,
    W_OP_SELECT,
    W_CHUNK_INSERT,
    W_INDEX_INSERT,
    W_MARK_INSERT,
    W_EDGE_UPSERT,
    W_SVC_SET_NS,
    W_VNODE_INSERT,
    W_VNODE_SELECT,
    W_DOWN_SELECT,
    W_DOWN_DELETE,
    W_PAGE_COUNT,
    W_FREELIST_COUNT,
    W_MARK_BOUNDARY,
    W_DEL_CHUNKS_BEFORE,
    W_DEL_INDEX_BEFORE,
    W_INDEX_SERVICES,
    W_DEL_DEPS_BEFORE,
    W_DEL_MARKS_BEFORE,
    W_MARK_FOR_CHUNK,
    W_DICT_INSERT,
    W_DICT_LATEST,
    W_LOG_INSERT,
    W_DEL_LOGS_BEFORE,
    W_DEL_LOGS_OLDEST,
    W_DEL_BLOCKS_BEFORE,
    W_DEL_BLOCKS_OLDEST,
    W_LOG_DICT_LATEST,
    W_TIX_INSERT,
    W_TIX_FROM,
    W_TIX_SWEEP,
    W_MIN_CHUNK,
    W_ID_FLOOR,
    W_COUNT
};

static const char *const writer_sql[W_COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SVC_INSERT] = "INSERT INTO services(name) VALUES(?1) ON CONFLICT(name) DO NOTHING",
    [W_SVC_SELECT] = "SELECT id FROM services WHERE name = ?1",
    [W_OP_INSERT] = "INSERT INTO operations(service_id, name, kind) VALUES(?1, ?2, ?3) "
                    "ON CONFLICT(service_id, name, kind) DO NOTHING",
    [W_OP_SELECT] = "SELECT id FROM operations WHERE service_id = ?1 AND name = ?2 AND kind = ?3",
    [W_CHUNK_INSERT] = "INSERT INTO chunks(id, trace_key, n_spans, data) VALUES(?1, ?2, ?3, ?4)",
    /* Two groups with one key (the same trace's spans of one service and operation, starting
     * in the same microsecond, sent in two calls) share the row. */
    [W_INDEX_INSERT] = "INSERT INTO span_index(service_id, start_us, trace_key, op_id, "
                       "min_dur_us, dur_spread_us, error) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                       "ON CONFLICT DO UPDATE SET min_dur_us = min(min_dur_us, "
                       "excluded.min_dur_us), dur_spread_us = max(min_dur_us + dur_spread_us, "
                       "excluded.min_dur_us + excluded.dur_spread_us) - min(min_dur_us, "
                       "excluded.min_dur_us), error = max(error, excluded.error)",
    [W_MARK_INSERT] = "INSERT OR IGNORE INTO receive_marks(minute, first_chunk) VALUES(?1, ?2)",
    [W_EDGE_UPSERT] = "INSERT INTO edge_rollup(bucket, resolution, client_id, server_id, conn, "
                      "calls, errors, dur_sum_us, hist) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                      "ON CONFLICT(bucket, resolution, client_id, server_id, conn) DO UPDATE SET "
                      "calls = calls + excluded.calls, errors = errors + excluded.errors, "
                      "dur_sum_us = dur_sum_us + excluded.dur_sum_us, "
                      "hist = hist_merge(hist, excluded.hist)",
    [W_SVC_SET_NS] = "UPDATE services SET namespace = ?2 WHERE id = ?1 AND namespace IS NOT ?2",
    [W_VNODE_INSERT] = "INSERT INTO virtual_nodes(name) VALUES(?1) ON CONFLICT(name) DO NOTHING",
    [W_VNODE_SELECT] = "SELECT id FROM virtual_nodes WHERE name = ?1",
    /* Downsampling reads and deletes the same rows: the first ?2 fine rows before ?1 in key
     * order, within one transaction. */
    [W_DOWN_SELECT] = "SELECT bucket, client_id, server_id, conn, calls, errors, dur_sum_us, hist "
                      "FROM edge_rollup WHERE resolution = 10 AND bucket < ?1 "
                      "ORDER BY bucket, resolution, client_id, server_id, conn LIMIT ?2",
    [W_DOWN_DELETE] = "DELETE FROM edge_rollup WHERE (bucket, resolution, client_id, server_id, "
                      "conn) IN (SELECT bucket, resolution, client_id, server_id, conn FROM "
                      "edge_rollup WHERE resolution = 10 AND bucket < ?1 ORDER BY bucket, "
                      "resolution, client_id, server_id, conn LIMIT ?2)",
    [W_PAGE_COUNT] = "PRAGMA page_count",
    [W_FREELIST_COUNT] = "PRAGMA freelist_count",
    [W_MARK_BOUNDARY] = "SELECT first_chunk FROM receive_marks WHERE minute >= ?1 "
                        "ORDER BY minute LIMIT 1",
    [W_DEL_CHUNKS_BEFORE] = "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks WHERE id < ?1 "
                            "ORDER BY id LIMIT ?2) RETURNING id, n_spans",
    /* Search rows of service ?1 that started before ?2, at most ?3 (see delete_index). */
    [W_DEL_INDEX_BEFORE] = "DELETE FROM span_index WHERE (service_id, start_us, trace_key, op_id) "
                           "IN (SELECT service_id, start_us, trace_key, op_id FROM span_index "
                           "WHERE service_id = ?1 AND start_us < ?2 LIMIT ?3)",
    [W_INDEX_SERVICES] = "SELECT id FROM services WHERE id > ?1 ORDER BY id",
    [W_DEL_DEPS_BEFORE] = "DELETE FROM edge_rollup WHERE (bucket, resolution, client_id, "
                          "server_id, conn) IN (SELECT bucket, resolution, client_id, server_id, "
                          "conn FROM edge_rollup WHERE bucket < ?1 ORDER BY bucket LIMIT ?2)",
    [W_DEL_MARKS_BEFORE] = "DELETE FROM receive_marks WHERE minute < ?1",
    [W_MARK_FOR_CHUNK] = "SELECT minute FROM receive_marks WHERE first_chunk <= ?1 "
                         "ORDER BY minute DESC LIMIT 1",
    [W_DICT_INSERT] = "INSERT INTO dicts(id, data) VALUES(?1, ?2)",
    [W_DICT_LATEST] = "SELECT data FROM dicts WHERE id NOT BETWEEN " LOG_DICT_ID_SQL
                      " ORDER BY rowid DESC LIMIT 1",
    [W_LOG_DICT_LATEST] =
        "SELECT data FROM dicts WHERE id BETWEEN " LOG_DICT_ID_SQL " ORDER BY rowid DESC LIMIT 1",
    [W_LOG_INSERT] = ("INSERT INTO access_log_blocks(recv_minute, service_id, min_time_us, "
                      "max_time_us, n, errors, codes, min_dur_ms, max_dur_ms, bloom, data) "
                      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
    /* Blocks as the rows below, each returning its record count. */
    [W_DEL_BLOCKS_BEFORE] = ("DELETE FROM access_log_blocks WHERE id IN (SELECT id FROM (SELECT "
                             "id, recv_minute FROM access_log_blocks ORDER BY id LIMIT ?2) WHERE "
                             "recv_minute < ?1) RETURNING n"),
    [W_DEL_BLOCKS_OLDEST] = ("DELETE FROM access_log_blocks WHERE id IN (SELECT id FROM "
                             "access_log_blocks ORDER BY id LIMIT ?1) RETURNING n"),
    /* The oldest ?2 rows by id (receive order), of which those received before minute ?1:
     * bounded work whatever the table size. */
    [W_DEL_LOGS_BEFORE] = ("DELETE FROM access_logs WHERE id IN (SELECT id FROM (SELECT id, "
                           "recv_minute FROM access_logs ORDER BY id LIMIT ?2) WHERE "
                           "recv_minute < ?1)"),
    [W_DEL_LOGS_OLDEST] = ("DELETE FROM access_logs WHERE id IN (SELECT id FROM access_logs "
                           "ORDER BY id LIMIT ?1)"),
    /* OR IGNORE: a row already there (none should be) must not fail a write call. */
    [W_TIX_INSERT] = "INSERT OR IGNORE INTO trace_index(trace_key, chunk_id) VALUES(?1, ?2)",
    [W_TIX_FROM] = "UPDATE store_state SET value = ?1 WHERE name = 'trace_index_from'",
    /* Retention's sweep of one key range (see sweep_trace_index). */
    [W_TIX_SWEEP] = "DELETE FROM trace_index WHERE trace_key BETWEEN ?1 AND ?2 AND chunk_id < ?3",
    [W_MIN_CHUNK] = "SELECT min(id) FROM chunks",
    /* Chunk ids below this were used (store_open starts above it): a deleted chunk's id is never
     * given again, so a trace_index row the sweep has not reached yet cannot name a new chunk. */
    [W_ID_FLOOR] = "INSERT INTO store_state(name, value) VALUES('chunk_id_floor', ?1) "
                   "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
};

static const char schema_v1[] =
    "CREATE TABLE services(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE operations(id INTEGER PRIMARY KEY, service_id INTEGER NOT NULL,"
    " name TEXT NOT NULL, kind INTEGER NOT NULL, UNIQUE(service_id, name, kind));"
    "CREATE TABLE chunks(id INTEGER PRIMARY KEY, trace_key INTEGER NOT NULL,"
    " n_spans INTEGER NOT NULL, data BLOB NOT NULL);"
    "CREATE INDEX chunks_trace ON chunks(trace_key);"
    "CREATE TABLE span_index(id INTEGER PRIMARY KEY, trace_key INTEGER NOT NULL,"
    " service_id INTEGER NOT NULL, op_id INTEGER NOT NULL, start_us INTEGER NOT NULL,"
    " min_dur_us INTEGER NOT NULL, max_dur_us INTEGER NOT NULL, error INTEGER NOT NULL);"
    "CREATE INDEX span_index_service ON span_index(service_id, start_us);"
    "CREATE INDEX span_index_error ON span_index(service_id, start_us) WHERE error = 1;"
    "CREATE TABLE dep_rollup(minute INTEGER NOT NULL, parent_id INTEGER NOT NULL,"
    " child_id INTEGER NOT NULL, calls INTEGER NOT NULL, errors INTEGER NOT NULL,"
    " PRIMARY KEY(minute, parent_id, child_id)) WITHOUT ROWID;"
    "CREATE TABLE receive_marks(minute INTEGER PRIMARY KEY, first_chunk INTEGER NOT NULL,"
    " first_index INTEGER NOT NULL);"
    "CREATE TABLE dicts(id INTEGER PRIMARY KEY, data BLOB NOT NULL);";

/* v3 -> v4: 10 min and hour summaries of the edge rollups (see EDGE ROLLUPS), built from the
 * fine rows (hist_sum is rollup.c's aggregate of hist_merge). */
static const char schema_v4[] =
    /* The rows are keyed by bucket first: without this index a summary range would walk every
     * finer row of its hours too. Partial: only summary rows are indexed (readers spell out
     * "resolution >= 600" for SQLite to use it). */
    "CREATE INDEX IF NOT EXISTS edge_rollup_summary ON edge_rollup(resolution, bucket)"
    " WHERE resolution >= 600;"
    /* Idempotent: a file whose version was set back (tests do) gets its summaries rebuilt. */
    "DELETE FROM edge_rollup WHERE resolution >= 600;"
    "INSERT INTO edge_rollup SELECT (bucket / 600) * 600, 600, client_id, server_id, conn,"
    " sum(calls), sum(errors), sum(dur_sum_us), hist_sum(hist) FROM edge_rollup"
    " WHERE resolution < 600 GROUP BY 1, 3, 4, 5;"
    "INSERT INTO edge_rollup SELECT (bucket / 3600) * 3600, 3600, client_id, server_id, conn,"
    " sum(calls), sum(errors), sum(dur_sum_us), hist_sum(hist) FROM edge_rollup"
    " WHERE resolution < 600 GROUP BY 1, 3, 4, 5;";

/* v1 -> v2: the service namespace, the edge rollups (with latency, 10 s buckets) and virtual
 * nodes. dep_rollup's per-minute counts move into 1 min edge rows with no latency (an empty
 * histogram), so graphs and dependencies of old data survive the upgrade. */
static const char schema_v2[] =
    "ALTER TABLE services ADD COLUMN namespace TEXT;"
    "CREATE TABLE edge_rollup(bucket INTEGER NOT NULL, resolution INTEGER NOT NULL,"
    " client_id INTEGER NOT NULL, server_id INTEGER NOT NULL, conn INTEGER NOT NULL,"
    " calls INTEGER NOT NULL, errors INTEGER NOT NULL, dur_sum_us INTEGER NOT NULL,"
    " hist BLOB NOT NULL,"
    " PRIMARY KEY(bucket, resolution, client_id, server_id, conn)) WITHOUT ROWID;"
    "CREATE TABLE virtual_nodes(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "INSERT INTO edge_rollup SELECT minute * 60, 60, parent_id, child_id, 0, calls, errors, 0,"
    " x'' FROM dep_rollup;"
    "DROP TABLE dep_rollup;";

/* v2 -> v3: access-log records. */
static const char schema_v3[] =
    ("CREATE TABLE access_logs(id INTEGER PRIMARY KEY, recv_minute INTEGER NOT NULL,"
     " time_us INTEGER NOT NULL, service_id INTEGER NOT NULL, trace_key INTEGER,"
     " response_code INTEGER NOT NULL, error INTEGER NOT NULL, data BLOB NOT NULL);"
     "CREATE INDEX access_logs_service ON access_logs(service_id, time_us);"
     "CREATE INDEX access_logs_trace ON access_logs(trace_key) WHERE trace_key IS NOT NULL;");

/* v4 -> v5: the access-log columns of /api/logs?requestId= and ?minDuration= (see above). */
static const char schema_v5[] = ("ALTER TABLE access_logs ADD COLUMN request_key INTEGER;"
                                 "ALTER TABLE access_logs ADD COLUMN duration_ms INTEGER;"
                                 "CREATE INDEX access_logs_request ON access_logs(request_key)"
                                 " WHERE request_key IS NOT NULL;");

/* v5 -> v6: access-log records in blocks (see DESIGN). The v3 table stays for the rows stored
 * before (read beside the blocks until retention has deleted them); nothing writes it. */
static const char schema_v6[] =
    ("CREATE TABLE access_log_blocks(id INTEGER PRIMARY KEY, recv_minute INTEGER NOT NULL,"
     " service_id INTEGER NOT NULL, min_time_us INTEGER NOT NULL, max_time_us INTEGER NOT NULL,"
     " n INTEGER NOT NULL, errors INTEGER NOT NULL, codes INTEGER NOT NULL,"
     " min_dur_ms INTEGER NOT NULL, max_dur_ms INTEGER NOT NULL, bloom BLOB NOT NULL,"
     " data BLOB NOT NULL);"
     "CREATE INDEX access_log_blocks_service ON access_log_blocks(service_id, max_time_us);"
     "CREATE INDEX access_log_blocks_time ON access_log_blocks(max_time_us);");

/* v6 -> v7: the search index keyed by what searches seek, (service, start), without a rowid:
 * one b-tree per row instead of a rowid table plus an index (59.9 -> 37.3 bytes per row on the
 * 10M bench set). The longest duration is kept as its difference from the shortest
 * (dur_spread_us): 0, which SQLite stores in no bytes, for the usual row of one span. Retention
 * deletes the rows by start time (delete_index), so receive_marks loses first_index. Rows with
 * one key are merged as W_INDEX_INSERT does. */
static const char schema_v7[] =
    ("CREATE TABLE span_index_v7(service_id INTEGER NOT NULL, start_us INTEGER NOT NULL,"
     " trace_key INTEGER NOT NULL, op_id INTEGER NOT NULL, min_dur_us INTEGER NOT NULL,"
     " dur_spread_us INTEGER NOT NULL, error INTEGER NOT NULL,"
     " PRIMARY KEY(service_id, start_us, trace_key, op_id)) WITHOUT ROWID;"
     "INSERT INTO span_index_v7 SELECT service_id, start_us, trace_key, op_id, min(min_dur_us),"
     " max(max_dur_us) - min(min_dur_us), max(error) FROM span_index GROUP BY service_id,"
     " start_us, trace_key,"
     " op_id ORDER BY service_id, start_us, trace_key, op_id;"
     "DROP TABLE span_index;"
     "ALTER TABLE span_index_v7 RENAME TO span_index;"
     "CREATE INDEX span_index_error ON span_index(service_id, start_us) WHERE error = 1;"
     "ALTER TABLE receive_marks DROP COLUMN first_index;");

/* v7 -> v8: the trace index as a table the writer fills in key order, seconds behind the chunks
 * (trace_pending.c), instead of an index SQLite maintained on every chunk insert (one random page
 * per trace per commit). store_state's trace_index_from is the first chunk id whose entry may be
 * missing from trace_index (store_open writes those chunks' rows). */
static const char schema_v8[] =
    ("CREATE TABLE trace_index(trace_key INTEGER NOT NULL, chunk_id INTEGER NOT NULL,"
     " PRIMARY KEY(trace_key, chunk_id)) WITHOUT ROWID;"
     "INSERT INTO trace_index SELECT trace_key, id FROM chunks ORDER BY trace_key, id;"
     "DROP INDEX chunks_trace;"
     "CREATE TABLE store_state(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
     "INSERT INTO store_state SELECT 'trace_index_from', coalesce(max(id), 0) + 1 FROM chunks;");

/* Compression contexts store_prepare_batch keeps between calls (more threads at once make and
 * free their own). */
#define PREP_CCTX_SLOTS 16

/* One span of a write call, with what the writer derives from it. */
struct put_entry {
    const struct span *span;
    int64_t service_id;
    int64_t op_id;
    int64_t start_us;
    int64_t dur_us;
    int64_t bucket; /* span-time 10 s bucket (seconds), for edge rollups */
    bool error;
    bool parent_in_call;   /* its parent span is in the same call */
    bool child_edge;       /* a child in the same call with another service counted the edge */
    bool has_server_child; /* a SERVER/CONSUMER child is in the same call (any service) */
    bool shared_server;    /* SERVER half of a Zipkin shared span (zipkin.shared=true) */
    bool prepared;         /* its batch's chunks were made by store_prepare_batch */
    uint8_t n_marks;       /* span_request_marks */
    uint64_t marks[2];
};

/* One edge rollup row being built by a write call (or by downsampling). */
struct edge {
    int64_t bucket;
    int64_t client_id;
    int64_t server_id;
    int conn;
    uint64_t calls;
    uint64_t errors;
    int64_t dur_sum_us;
    uint64_t hist[HIST_BUCKETS];
};

struct res_slot {
    const struct resource *res;
    int64_t service_id;
};

/* Samples for a compression dictionary and the thread that trains it (see DESIGN, threads):
 * the writer appends samples, then trainer_start moves them to the thread; trainer_done joins
 * it once ready is set, leaving the result in dict / len (a size or a ZDICT error code). */
struct trainer {
    struct buf samples; /* raw encodings kept for training (writer) */
    size_t *sizes;
    size_t n, cap;
    bool failed;  /* training or storing failed once: no retry in this process */
    bool running; /* the thread owns the fields below until ready */
    pthread_t thread;
    struct buf train;
    size_t *train_sizes, train_n;
    size_t dict_bytes;
    void *dict;
    size_t len;
    atomic_bool ready;
};

struct store {
    struct store_options opts;
    char *path;
    char *wal_path;
    sqlite3 *db;
    sqlite3_stmt *stmt[W_COUNT];
    int64_t page_size;
    ZSTD_CCtx *cctx;
    struct buf enc;  /* encoded chunk */
    struct buf comp; /* compressed chunk */
    struct intern services;
    struct intern operations;
    struct buf opkey;
    struct pending pending;
    int64_t wait_us;           /* service-graph wait */
    struct rpend_map rpend;    /* access-log records waiting (ACCESS-LOG RECORDS) */
    struct rpend_undo *rpend_undo; /* this write call's changes to rpend */
    size_t n_rpend_undo, cap_rpend_undo;
    int32_t *rpend_expired;    /* entries counted by this write call, removed after commit */
    size_t n_rpend_expired, cap_rpend_expired;
    struct recent_set *seen;   /* request marks of stored CLIENT/SERVER spans (time: us) */
    int64_t seen_last_us;      /* when a span last left a mark (0: never) */
    /* Scratch reused by every write call (grown, never shrunk). */
    struct put_entry *entries;
    struct put_entry **order;
    const struct span **chunk_spans;
    int32_t *slots; /* parent lookup: open addressing over entries */
    size_t cap_entries, cap_slots;
    struct edge *edges;
    size_t n_edges, cap_edges;
    int32_t *edge_slots; /* open addressing over edges, n_edge_slots (a power of two) */
    size_t n_edge_slots;
    struct res_slot res_cache[RES_CACHE];
    struct intern vnodes; /* virtual node name -> -id */
    struct buf hist_blob;
    struct pend *pend_adds;
    int32_t *pend_removes;
    size_t n_adds, cap_pend, n_removes, cap_removes;
    int64_t next_chunk_id;
    /* The trace index (DESIGN): entries of chunks not yet in trace_index, shared with readers;
     * this write call's new entries (published after its commit), the piece of a sealed run it
     * merges, the trace_index_from value last committed and the one this call writes. */
    struct tpend *tpend;
    struct tpend_entry *tp_new;
    size_t n_tp_new, cap_tp_new;
    size_t tp_piece;
    size_t tp_added; /* entries of tp_new already published to tpend (before the COMMIT) */
    int64_t tp_from, tp_from_new;
    uint64_t tix_sweep;   /* retention: the next of TIX_SWEEP_RANGES key ranges to sweep */
    int64_t index_cursor; /* retention: the service whose old search rows go next (delete_index) */
    int64_t index_floor_us; /* no search row starts before this (INT64_MIN: unknown) */
    int64_t mark_minute; /* receive minute of the last mark written; -1 = unknown */
    int64_t test_now_us;
    ZSTD_CDict *cdict;     /* NULL until the database has a dictionary */
    /* store_prepare_batch's side, read by any thread: the dictionary (cdict, published once it
     * is in the dicts table), compression contexts handed out without a lock, and the
     * dictionaries replaced while preparers may still use them (freed at close). */
    _Atomic(ZSTD_CDict *) prep_cdict;
    /* The writer samples chunk encodings for a dictionary: preparers keep them (raw). */
    atomic_bool prep_sampling;
    _Atomic(ZSTD_CCtx *) prep_cctx[PREP_CCTX_SLOTS];
    ZSTD_CDict **retired_cdicts;
    size_t n_retired_cdicts;
    struct trainer train;  /* chunk samples and their trainer */
    size_t dict_threshold; /* sample bytes that trigger training (DICT_SAMPLE_BYTES) */
    /* WAL checkpoints off the writer thread (see DESIGN): the writer's WAL hook wakes the
     * checkpointer, which checkpoints PASSIVE through its own connection. */
    sqlite3 *ckpt_db;
    pthread_t ckpt_thread;
    bool ckpt_started;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    bool ckpt_want, ckpt_stop, ckpt_busy; /* under ckpt_mu */
    int wal_last_pages;                   /* writer: the WAL's frames after the last commit */
    ZSTD_CCtx *log_cctx;      /* access-log records (their own dictionary, LOG_DICT_*) */
    ZSTD_CDict *log_cdict;    /* NULL until the database has an access-log dictionary */
    struct trainer log_train; /* record samples and their trainer */
    struct log_ent *log_ents; /* write_logs scratch: the records of a write call */
    size_t cap_log_ents;
    int64_t *log_keys; /* a block's trace and request keys */
    size_t cap_log_keys;
    struct buf bloom; /* a block's bloom filter */
    struct read_pool *pool;
    _Atomic uint64_t spans_stored;
    _Atomic uint64_t chunks_stored;
    _Atomic uint64_t spans_deleted;
    _Atomic uint64_t batches_committed;
    _Atomic uint64_t logs_stored;
    _Atomic uint64_t logs_deleted;
    _Atomic int64_t db_bytes;
    _Atomic uint64_t wal_restarts;
    _Atomic uint64_t writer_ckpts;
    _Atomic uint64_t writer_ckpt_us;
};

int store_sqlite_err(sqlite3 *db, int rc, const char *what)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_NOMEM) return -ENOMEM;
    log_ratelimited(primary == SQLITE_FULL ? LOG_WARN : LOG_ERROR, what, "store: %s: %s (%d)",
                    what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
    return primary == SQLITE_FULL ? -ENOSPC : -EIO;
}

struct read_pool *store_read_pool(struct store *st)
{
    return st->pool;
}

struct tpend *store_tpend(struct store *st)
{
    return st->tpend;
}

static int open_trace_index(struct store *st);

static int64_t now_us(const struct store *st)
{
    if (st->test_now_us) return st->test_now_us;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* For durations (the writer's checkpoint time). */
static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Steps a statement that returns no rows (or whose rows are ignored) and resets it. */
static int step_done(struct store *st, sqlite3_stmt *s, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : store_sqlite_err(st->db, rc, what);
}

/* Runs a one-integer-result statement; *out = 0 if no row. */
static int step_int(struct store *st, sqlite3_stmt *s, int64_t *out, const char *what)
{
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    if (rc == SQLITE_ROW) rc = SQLITE_DONE;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : store_sqlite_err(st->db, rc, what);
}

static int exec_sql(sqlite3 *db, const char *sql, const char *what)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : store_sqlite_err(db, rc, what);
}

static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
        if (rc == SQLITE_ROW || rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? 0 : store_sqlite_err(db, rc, sql);
}

/* Brings the schema to SCHEMA_VERSION, one version step per transaction. */
static int migrate(sqlite3 *db)
{
    int64_t version;
    int rc = query_int(db, "PRAGMA user_version", &version);
    if (rc) return rc;
    if (version > SCHEMA_VERSION) {
        log_msg(LOG_ERROR, "store: database schema version %lld is newer than this build's %d",
                (long long)version, SCHEMA_VERSION);
        return -EINVAL;
    }
    static const struct {
        const char *sql, *what;
    } steps[SCHEMA_VERSION] = {
        {schema_v1, "created schema version 1"},
        {schema_v2, "edge rollups with latency"},
        {schema_v3, "access logs"},
        {schema_v4, "edge rollup summaries"},
        {schema_v5, "access-log request keys"},
        {schema_v6, "access-log blocks"},
        {schema_v7, "search index without rowids"},
        {schema_v8, "trace index written in key order"},
    };
    for (int64_t v = version; v < SCHEMA_VERSION; v++) {
        char set[40];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", (int)v + 1);
        if (v > 0)
            log_msg(LOG_INFO, "store: migrating schema version %lld -> %lld (%s)", (long long)v,
                    (long long)v + 1, steps[v].what);
        rc = exec_sql(db, "BEGIN IMMEDIATE", "migrate");
        if (!rc) rc = exec_sql(db, steps[v].sql, steps[v].what);
        if (!rc) rc = exec_sql(db, set, "migrate");
        if (!rc) rc = exec_sql(db, "COMMIT", "migrate");
        if (rc) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if (v == 0)
            log_msg(LOG_INFO, "store: %s", steps[v].what);
        else
            log_msg(LOG_INFO, "store: schema version %lld -> %lld done", (long long)v,
                    (long long)v + 1);
    }
    return 0;
}

static void update_db_bytes(struct store *st)
{
    int64_t pages = 0;
    if (step_int(st, st->stmt[W_PAGE_COUNT], &pages, "page_count") != 0) return;
    int64_t bytes = pages * st->page_size;
    struct stat sb;
    if (stat(st->wal_path, &sb) == 0) bytes += (int64_t)sb.st_size;
    atomic_store(&st->db_bytes, bytes);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem);

/* Makes dict (borrowed) the compression dictionary of later chunks. */
static int use_dict(struct store *st, const void *dict, size_t len)
{
    ZSTD_CDict *cd = ZSTD_createCDict(dict, len, STORE_ZSTD_LEVEL);
    if (!cd) return -ENOMEM;
    if (st->cdict) { /* room to retire the old one */
        ZSTD_CDict **r = realloc(st->retired_cdicts, (st->n_retired_cdicts + 1) * sizeof *r);
        if (!r) {
            ZSTD_freeCDict(cd);
            return -ENOMEM;
        }
        st->retired_cdicts = r;
    }
    if (ZSTD_isError(ZSTD_CCtx_refCDict(st->cctx, cd))) {
        ZSTD_freeCDict(cd);
        return -EIO;
    }
    /* A preparer may still be compressing with the old one: it is freed at close. */
    if (st->cdict) st->retired_cdicts[st->n_retired_cdicts++] = st->cdict;
    st->cdict = cd;
    atomic_store_explicit(&st->prep_cdict, cd, memory_order_release);
    buf_free(&st->train.samples);
    st->train.n = 0;
    return 0;
}

/* At open: the newest dictionary, if the database has one. */
static int load_dict(struct store *st)
{
    sqlite3_stmt *s = st->stmt[W_DICT_LATEST];
    int rc = sqlite3_step(s);
    int err = 0;
    if (rc == SQLITE_ROW) err = use_dict(st, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    else if (rc != SQLITE_DONE) err = store_sqlite_err(st->db, rc, "load dictionary");
    sqlite3_reset(s);
    return err;
}

/* Keeps a raw encoding as a training sample, up to max_n samples or max_bytes. */
static void trainer_sample(struct trainer *t, const uint8_t *raw, size_t len, size_t max_n,
                           size_t max_bytes)
{
    if (t->failed || t->running || t->n >= max_n || t->samples.len >= max_bytes) return;
    if (buf_reserve(&t->samples, len) == 0 &&
        grow((void **)&t->sizes, &t->cap, t->n + 1, sizeof *t->sizes) == 0) {
        memcpy(t->samples.p + t->samples.len, raw, len);
        t->samples.len += len;
        t->sizes[t->n++] = len;
    }
}

static void *trainer_main(void *arg)
{
    struct trainer *t = arg;
    t->dict = malloc(t->dict_bytes);
    t->len = t->dict ? ZDICT_trainFromBuffer(t->dict, t->dict_bytes, t->train.p, t->train_sizes,
                                             (unsigned)t->train_n)
                     : 0;
    atomic_store(&t->ready, true);
    return NULL;
}

/* A trainer's thread runs below the other threads' priority: its ~0.3 s of CPU comes in the
 * first second of a fresh database, and at normal priority it took one of the bench machine's
 * two cores from the writer and the HTTP threads for that long (the requests of that moment were
 * the slowest of a 15 s run at half the maximum rate, 50-100 ms). At nice TRAIN_NICE it still
 * gets a share when every core is busy (the maximum rate), so the dictionary is not put off for
 * long. */
#define TRAIN_NICE 10
static void *trainer_thread(void *arg)
{
    pthread_setname_np(pthread_self(), "ms-train");
#ifdef __linux__
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), TRAIN_NICE); /* best effort */
#endif
    return trainer_main(arg);
}

/* Moves the samples to a training thread (or trains here when no thread can be had). */
static void trainer_start(struct trainer *t, size_t dict_bytes)
{
    t->train = t->samples;
    t->train_sizes = t->sizes;
    t->train_n = t->n;
    t->samples = (struct buf){0};
    t->sizes = NULL;
    t->n = t->cap = 0;
    t->dict_bytes = dict_bytes;
    t->running = true;
    atomic_store(&t->ready, false);
    if (pthread_create(&t->thread, NULL, trainer_thread, t) != 0) {
        trainer_main(t);
        t->thread = pthread_self();
    }
}

/* True, with t->dict / t->len set (the caller frees dict), once a started training is over;
 * wait: block for it. */
static bool trainer_done(struct trainer *t, bool wait)
{
    if (!t->running || (!wait && !atomic_load(&t->ready))) return false;
    if (!pthread_equal(t->thread, pthread_self())) pthread_join(t->thread, NULL);
    t->running = false;
    buf_free(&t->train);
    free(t->train_sizes);
    t->train_sizes = NULL;
    return true;
}

static void trainer_free(struct trainer *t)
{
    trainer_done(t, true);
    free(t->dict);
    buf_free(&t->samples);
    free(t->sizes);
}

/* Keeps a raw chunk encoding as a training sample (until the database has a dictionary). */
static void sample_chunk(struct store *st, const uint8_t *raw, size_t len)
{
    if (st->cdict) return;
    trainer_sample(&st->train, raw, len, DICT_MAX_SAMPLES, SIZE_MAX);
}

/* ----- checkpointer ------------------------------------------------------------------------ */

/* The writer's WAL hook, after each commit (pages: frames in the WAL). The WAL only starts over
 * from its beginning when a write transaction begins with every frame copied into the database
 * (and synced), so the goal is a checkpoint that ends between two commits. Past CKPT_BYTES the
 * hook wakes the checkpointer after every commit: its first pass copies the bulk, each later
 * pass only what the commits during the previous one added (a few hundred frames, a few ms
 * with its two fsyncs), so at anything below the writer's full speed one of them soon ends
 * while the writer waits for requests, and the writer's next transaction restarts the WAL
 * without copying anything. A writer that never pauses (the maximum rate) would let the WAL
 * grow (it did to the 256 MiB bound): past CKPT_WRITER_BYTES it stops waking the checkpointer,
 * lets its pass end, and copies what came since the pass began itself (what the commits during
 * one pass wrote: the checkpointer had been passing continuously); its next transaction then
 * restarts the WAL. Past CKPT_FORCE_BYTES (no checkpointer, or it cannot get ahead) it
 * checkpoints here after every commit, as SQLite's autocheckpoint would. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store *st = arg;
    if (pages < st->wal_last_pages) atomic_fetch_add(&st->wal_restarts, 1);
    st->wal_last_pages = pages;
    int64_t bytes = (int64_t)pages * st->page_size;
    if (bytes < CKPT_BYTES) return SQLITE_OK;
    bool here = !st->ckpt_started || bytes >= CKPT_FORCE_BYTES;
    if (!here) {
        pthread_mutex_lock(&st->ckpt_mu);
        if (bytes < CKPT_WRITER_BYTES) {
            st->ckpt_want = true;
            pthread_cond_signal(&st->ckpt_cv);
        } else if (!st->ckpt_busy && !st->ckpt_want) {
            /* The last pass has ended: the writer copies what came since. (While a pass runs,
             * or is about to, it waits for its end.) */
            here = true;
        }
        pthread_mutex_unlock(&st->ckpt_mu);
    }
    if (here) {
        int64_t t0 = mono_us();
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        atomic_fetch_add(&st->writer_ckpts, 1);
        atomic_fetch_add(&st->writer_ckpt_us, (uint64_t)(mono_us() - t0));
    }
    return SQLITE_OK;
}

static void *checkpointer_main(void *arg)
{
    struct store *st = arg;
    pthread_setname_np(pthread_self(), "ms-ckpt");
    pthread_mutex_lock(&st->ckpt_mu);
    for (;;) {
        while (!st->ckpt_want && !st->ckpt_stop)
            pthread_cond_wait(&st->ckpt_cv, &st->ckpt_mu);
        if (st->ckpt_stop) break;
        st->ckpt_want = false;
        st->ckpt_busy = true;
        pthread_mutex_unlock(&st->ckpt_mu);
        /* PASSIVE: copies what no reader still needs, never waits for the writer or readers;
         * the writer restarts the WAL from its start once everything was copied. */
        int rc =
            sqlite3_wal_checkpoint_v2(st->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_ratelimited(LOG_WARN, "store-checkpoint", "store: checkpoint: %s",
                            sqlite3_errmsg(st->ckpt_db));
        pthread_mutex_lock(&st->ckpt_mu);
        st->ckpt_busy = false;
    }
    pthread_mutex_unlock(&st->ckpt_mu);
    return NULL;
}

/* Opens the checkpointer's connection and starts it; on failure the writer checkpoints itself
 * (wal_hook), so this only logs. */
static void start_checkpointer(struct store *st)
{
    if (pthread_mutex_init(&st->ckpt_mu, NULL) != 0) return;
    if (pthread_cond_init(&st->ckpt_cv, NULL) != 0) {
        pthread_mutex_destroy(&st->ckpt_mu);
        return;
    }
    int rc = sqlite3_open_v2(st->path, &st->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    /* A first read makes the connection see the WAL (a checkpoint on a connection that has
     * not read the database yet does nothing). */
    if (rc == SQLITE_OK) rc = sqlite3_exec(st->ckpt_db, "SELECT count(*) FROM sqlite_master",
                                           NULL, NULL, NULL);
    if (rc == SQLITE_OK && pthread_create(&st->ckpt_thread, NULL, checkpointer_main, st) == 0) {
        st->ckpt_started = true;
        return;
    }
    log_msg(LOG_WARN, "store: no checkpointer thread (%s): the writer checkpoints",
            st->ckpt_db ? sqlite3_errmsg(st->ckpt_db) : sqlite3_errstr(rc));
    sqlite3_close(st->ckpt_db);
    st->ckpt_db = NULL;
    pthread_cond_destroy(&st->ckpt_cv);
    pthread_mutex_destroy(&st->ckpt_mu);
}

static void stop_checkpointer(struct store *st)
{
    if (!st->ckpt_started) return;
    pthread_mutex_lock(&st->ckpt_mu);
    st->ckpt_stop = true;
    pthread_cond_signal(&st->ckpt_cv);
    pthread_mutex_unlock(&st->ckpt_mu);
    pthread_join(st->ckpt_thread, NULL);
    st->ckpt_started = false;
    sqlite3_close(st->ckpt_db);
    st->ckpt_db = NULL;
    pthread_cond_destroy(&st->ckpt_cv);
    pthread_mutex_destroy(&st->ckpt_mu);
}

/* Makes dict (borrowed) the dictionary of later access-log records. */
static int use_log_dict(struct store *st, const void *dict, size_t len)
{
    ZSTD_CDict *cd = ZSTD_createCDict(dict, len, STORE_ZSTD_LEVEL);
    if (!cd) return -ENOMEM;
    if (ZSTD_isError(ZSTD_CCtx_refCDict(st->log_cctx, cd))) {
        ZSTD_freeCDict(cd);
        return -EIO;
    }
    ZSTD_freeCDict(st->log_cdict);
    st->log_cdict = cd;
    buf_free(&st->log_train.samples);
    st->log_train.n = 0;
    return 0;
}

/* At open: the newest access-log dictionary, if the database has one. */
static int load_log_dict(struct store *st)
{
    sqlite3_stmt *s = st->stmt[W_LOG_DICT_LATEST];
    int rc = sqlite3_step(s);
    int err = 0;
    if (rc == SQLITE_ROW)
        err = use_log_dict(st, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    else if (rc != SQLITE_DONE) err = store_sqlite_err(st->db, rc, "load access-log dictionary");
    sqlite3_reset(s);
    return err;
}

/* Keeps a raw record encoding as a training sample (until the dictionary exists). */
static void sample_log(struct store *st, const uint8_t *raw, size_t len)
{
    if (st->log_cdict) return;
    trainer_sample(&st->log_train, raw, len, LOG_DICT_MAX_SAMPLES, LOG_DICT_SAMPLE_BYTES);
}

/* Writer thread, once a trainer is done (t: st->train for span chunks, st->log_train for
 * access-log records): stores its dictionary in its own transaction (an access-log one under
 * an id in the LOG_DICT_ID_BASE range) and starts using it. Failures only mean no dictionary. */
static void finish_training(struct store *st, struct trainer *t)
{
    bool logs = t == &st->log_train;
    const char *what = logs ? "access-log dictionary" : "compression dictionary";
    uint8_t *dict = t->dict;
    size_t len = t->len;
    t->dict = NULL;
    if (!dict || ZDICT_isError(len) || len < 8) {
        log_msg(LOG_WARN, "store: no %s: %s", what,
                dict && ZDICT_isError(len) ? ZDICT_getErrorName(len) : "out of memory");
        t->failed = true;
        goto done;
    }
    uint32_t id = ZDICT_getDictID(dict, len);
    if (logs) {
        /* The dictionary header is magic (4 bytes) then the id (u32 little endian): put it in
         * the access-log range, keeping the trained id's low bits. */
        id = LOG_DICT_ID_BASE | (id & 0xffffu);
        for (int i = 0; i < 4; i++) dict[4 + i] = (uint8_t)(id >> (8 * i));
    }
    sqlite3_stmt *s = st->stmt[W_DICT_INSERT];
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_blob(s, 2, dict, (int)len, SQLITE_STATIC);
    if (step_done(st, s, what) != 0) { /* autocommit: its own transaction */
        t->failed = true;
        goto done;
    }
    if ((logs ? use_log_dict : use_dict)(st, dict, len) != 0) t->failed = true;
    else log_msg(LOG_INFO, "store: %s %u (%zu bytes) from %zu samples", what, (unsigned)id, len,
                 t->train_n);
done:
    free(dict);
}

/* Starts training a dictionary once there are enough samples (on a thread of its own: training
 * takes a few hundred ms of CPU, which would stall every request waiting for the writer's next
 * commit), and picks the result up on a later call; for both kinds. wait: block for running
 * trainers (store_close). Outside the write transaction (a dictionary must be committed before
 * any row uses it). */
static void maybe_train(struct store *st, bool wait)
{
    struct trainer *const kinds[2] = {&st->train, &st->log_train};
    for (int k = 0; k < 2; k++) {
        struct trainer *t = kinds[k];
        if (trainer_done(t, wait)) {
            finish_training(st, t);
            continue;
        }
        bool logs = k == 1;
        if (wait || (logs ? st->log_cdict != NULL : st->cdict != NULL) || t->failed || t->running)
            continue;
        bool enough = logs ? t->n >= LOG_DICT_MAX_SAMPLES || t->samples.len >= LOG_DICT_SAMPLE_BYTES
                           : t->n >= DICT_MAX_SAMPLES || t->samples.len >= st->dict_threshold;
        if (!enough) continue;
        trainer_start(t, logs ? LOG_DICT_BYTES : DICT_BYTES);
        if (!logs) atomic_store_explicit(&st->prep_sampling, false, memory_order_relaxed);
        if (trainer_done(t, false)) finish_training(st, t); /* trained here, without a thread */
    }
}

static void disable_memstatus(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

struct store *store_open(const struct store_options *opts)
{
    /* Memory statistics take a global mutex on every SQLite allocation; meshscope reads none of
     * them. Must run before SQLite initialises; later calls fail harmlessly (SQLITE_MISUSE). */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, disable_memstatus);

    if (!opts || !opts->path || !*opts->path) {
        log_msg(LOG_ERROR, "store: no database path");
        return NULL;
    }
    struct store *st = calloc(1, sizeof *st);
    if (!st) goto oom;
    st->opts = *opts;
    st->opts.path = NULL;
    if (!st->opts.read_pool) st->opts.read_pool = 4;
    st->mark_minute = -1;
    size_t plen = strlen(opts->path);
    st->path = malloc(plen + 1);
    st->wal_path = malloc(plen + 5);
    if (!st->path || !st->wal_path) goto oom;
    memcpy(st->path, opts->path, plen + 1);
    memcpy(st->wal_path, opts->path, plen);
    memcpy(st->wal_path + plen, "-wal", 5);

    int rc = sqlite3_open_v2(st->path, &st->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        log_msg(LOG_ERROR, "store: cannot open %s: %s", st->path,
                st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 5000);
    sqlite3_extended_result_codes(st->db, 1);
    int64_t wal = 0;
    /* 8 KiB pages for a new file (an existing one keeps its size: WAL mode cannot change it):
     * a chunk row is ~0.7 KiB, and a 4 KiB page left ~0.5 KiB of it unused, 12% of the chunks'
     * pages (14 bytes per span on the 10M bench set; 8 KiB: 6). Costs ~10% more WAL bytes for the
     * pages random keys touch. */
    if (exec_sql(st->db, "PRAGMA page_size = 8192", "page size") != 0) goto fail;
    /* journal_mode returns the mode in force; anything but "wal" (e.g. a read-only medium)
     * would break concurrent readers. */
    sqlite3_stmt *jm = NULL;
    if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &jm, NULL) == SQLITE_OK &&
        sqlite3_step(jm) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(jm, 0);
        wal = mode && strcmp(mode, "wal") == 0;
    }
    sqlite3_finalize(jm);
    if (!wal) {
        log_msg(LOG_ERROR, "store: cannot switch %s to WAL mode: %s", st->path,
                sqlite3_errmsg(st->db));
        goto fail;
    }
    /* synchronous=NORMAL: in WAL mode a power cut may lose the last commits, never corrupt. */
    if (exec_sql(st->db,
                 "PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;"
                 /* 64 MiB of page cache keeps the random-key index pages the writer touches
                  * in memory (16 MiB re-read them from the OS on every commit). */
                 "PRAGMA cache_size = -65536; PRAGMA foreign_keys = OFF",
                 "pragmas") != 0)
        goto fail;
    /* Replaces SQLite's autocheckpoint: the checkpointer thread does it (started below, once
     * the schema exists). */
    if (query_int(st->db, "PRAGMA page_size", &st->page_size) != 0) goto fail; /* for wal_hook */
    sqlite3_wal_hook(st->db, wal_hook, st);
    if (rollup_register_functions(st->db) != 0) goto fail; /* the v4 migration uses hist_sum */
    if (migrate(st->db) != 0) goto fail;
    for (int i = 0; i < W_COUNT; i++) {
        rc = sqlite3_prepare_v3(st->db, writer_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                                NULL);
        if (rc != SQLITE_OK) {
            log_msg(LOG_ERROR, "store: prepare \"%s\": %s", writer_sql[i], sqlite3_errmsg(st->db));
            goto fail;
        }
    }
    int64_t a = 0, b = 0, floor_id = 0;
    if (query_int(st->db, "SELECT coalesce(max(id), 0) FROM chunks", &a) != 0 ||
        query_int(st->db, "SELECT coalesce(max(first_chunk), 0) FROM receive_marks", &b) != 0 ||
        query_int(st->db, "SELECT value FROM store_state WHERE name = 'chunk_id_floor'",
                  &floor_id) != 0)
        goto fail;
    st->next_chunk_id = (a > b ? a : b) + 1;
    if (st->next_chunk_id < floor_id) st->next_chunk_id = floor_id;
    st->index_floor_us = INT64_MIN;
    if ((rc = open_trace_index(st)) != 0) {
        if (rc == -ENOMEM) goto oom;
        goto fail;
    }

    st->cctx = ZSTD_createCCtx();
    if (!st->cctx) goto oom;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_compressionLevel, STORE_ZSTD_LEVEL)))
        goto fail;
    st->dict_threshold = DICT_SAMPLE_BYTES;
    if (load_dict(st) != 0) goto fail;
    atomic_store_explicit(&st->prep_sampling, st->cdict == NULL, memory_order_relaxed);
    st->log_cctx = ZSTD_createCCtx();
    if (!st->log_cctx) goto oom;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(st->log_cctx, ZSTD_c_compressionLevel,
                                            STORE_ZSTD_LEVEL)) ||
        load_log_dict(st) != 0)
        goto fail;
    if (pending_init(&st->pending) != 0) goto oom;
    if (rpend_init(&st->rpend) != 0 || !(st->seen = recent_set_create(SEEN_SLOTS))) goto oom;
    st->wait_us = opts->graph_wait_us > 0 ? opts->graph_wait_us : GRAPH_WAIT_DEFAULT_MS * 1000LL;
    st->pool = read_pool_create(st->path, st->opts.read_pool);
    if (!st->pool) goto oom;
    start_checkpointer(st);
    update_db_bytes(st);
    return st;

oom:
    log_msg(LOG_ERROR, "store: out of memory opening %s", opts->path);
fail:
    store_close(st);
    return NULL;
}

void store_close(struct store *st)
{
    if (!st) return;
    if (st->db) { /* a running trainer's dictionary is kept */
        maybe_train(st, true);
    }
    stop_checkpointer(st);
    read_pool_destroy(st->pool);
    tpend_destroy(st->tpend); /* rows not merged are written at the next open */
    free(st->tp_new);
    for (int i = 0; i < W_COUNT; i++) sqlite3_finalize(st->stmt[i]);
    if (st->db) {
        /* A clean close checkpoints and removes the WAL; a failure only leaves it for the next
         * open to replay. */
        int rc = sqlite3_close(st->db);
        if (rc != SQLITE_OK) log_msg(LOG_WARN, "store: close: %s", sqlite3_errstr(rc));
    }
    ZSTD_freeCCtx(st->cctx);
    ZSTD_freeCDict(st->cdict);
    for (size_t i = 0; i < st->n_retired_cdicts; i++)
        ZSTD_freeCDict(st->retired_cdicts[i]);
    free(st->retired_cdicts);
    for (int i = 0; i < PREP_CCTX_SLOTS; i++)
        ZSTD_freeCCtx(atomic_load(&st->prep_cctx[i]));
    trainer_free(&st->train);
    ZSTD_freeCCtx(st->log_cctx);
    ZSTD_freeCDict(st->log_cdict);
    trainer_free(&st->log_train);
    buf_free(&st->enc);
    buf_free(&st->bloom);
    free(st->log_ents);
    free(st->log_keys);
    buf_free(&st->comp);
    buf_free(&st->opkey);
    intern_clear(&st->services);
    intern_clear(&st->operations);
    intern_clear(&st->vnodes);
    buf_free(&st->hist_blob);
    free(st->edge_slots);
    pending_free(&st->pending);
    rpend_free(&st->rpend);
    free(st->rpend_undo);
    free(st->rpend_expired);
    recent_set_destroy(st->seen);
    free(st->entries);
    free(st->order);
    free(st->chunk_spans);
    free(st->slots);
    free(st->edges);
    free(st->pend_adds);
    free(st->pend_removes);
    free(st->path);
    free(st->wal_path);
    free(st);
}

/* ----- write path -------------------------------------------------------------------------- */

static int service_id(struct store *st, const char *name, int64_t *out)
{
    uint32_t len = (uint32_t)strlen(name);
    uint64_t h = hash_bytes(name, len);
    *out = intern_get(&st->services, name, len, h);
    if (*out) return 0;
    sqlite3_bind_text(st->stmt[W_SVC_INSERT], 1, name, (int)len, SQLITE_STATIC);
    int rc = step_done(st, st->stmt[W_SVC_INSERT], "insert service");
    if (rc) return rc;
    sqlite3_bind_text(st->stmt[W_SVC_SELECT], 1, name, (int)len, SQLITE_STATIC);
    rc = step_int(st, st->stmt[W_SVC_SELECT], out, "select service");
    if (rc) return rc;
    return intern_put(&st->services, name, len, h, *out);
}

/* The namespace of a resource: the first non-empty string of these attributes, cut at
 * VNODE_NAME_MAX bytes; {NULL, 0} if none. */
/* Attribute keys the writer looks for. store_compact_batch keeps these and no others. */
struct key_lit {
    const char *key;
    size_t len;
};
#define KEY_LIT(s)                                                                                 \
    {                                                                                              \
        s, sizeof s - 1                                                                            \
    }
/* A resource's namespace, best first (resource_namespace). */
static const struct key_lit namespace_keys[] = {
    KEY_LIT("k8s.namespace.name"), KEY_LIT("service.namespace"), KEY_LIT("istio.namespace")};
/* The peer a CLIENT/PRODUCER span names (virtual_peer), in its order of preference. */
enum { P_PEER, P_DB_NAME, P_DB_NS, P_DB_SYS, P_MSG_SYS, P_ADDR, P_N };
static const struct key_lit peer_keys[P_N] = {
    KEY_LIT("peer.service"), KEY_LIT("db.name"),          KEY_LIT("db.namespace"),
    KEY_LIT("db.system"),    KEY_LIT("messaging.system"), KEY_LIT("server.address")};
/* The SERVER half of a shared span (span_shared); the request ids of span_request_marks
 * (graph_pair.c). */
static const struct key_lit other_span_keys[] = {
    KEY_LIT("zipkin.shared"), KEY_LIT("guid:x-request-id"),
    KEY_LIT("http.request.header.x-request-id"), KEY_LIT("x-request-id")};

static struct mstr resource_namespace(const struct resource *r)
{
    const struct key_lit *keys = namespace_keys;
    struct mstr best = {0};
    size_t rank = sizeof namespace_keys / sizeof namespace_keys[0];
    for (uint32_t i = 0; r && i < r->attrs.n; i++) {
        const struct attr *a = &r->attrs.items[i];
        if (a->value.type != VALUE_STRING || !a->value.u.str.len) continue;
        for (size_t k = 0; k < rank; k++) {
            if (a->key.len == keys[k].len && memcmp(a->key.ptr, keys[k].key, keys[k].len) == 0) {
                best = a->value.u.str;
                rank = k;
                break;
            }
        }
    }
    if (best.len > VNODE_NAME_MAX) best.len = VNODE_NAME_MAX;
    return best;
}

/* The service id of a span, through a per-call cache by resource (spans of one resource share
 * it). On a miss it also records the resource's namespace on the service row when it changed. */
static int span_service_id(struct store *st, const struct span *s, int64_t *out)
{
    const struct resource *r = s->resource;
    struct res_slot *slot = NULL;
    if (r) {
        slot = &st->res_cache[((uintptr_t)r >> 4) & (RES_CACHE - 1)];
        if (slot->res == r) {
            *out = slot->service_id;
            return 0;
        }
    }
    const char *name = span_service_name(s);
    int rc = service_id(st, name, out);
    if (rc) return rc;
    struct mstr ns = resource_namespace(r);
    if (ns.len) {
        uint32_t len = (uint32_t)strlen(name);
        struct intern_ent *e = intern_find(&st->services, name, len, hash_bytes(name, len));
        uint64_t nh = hash_bytes(ns.ptr, ns.len) | 1;
        if (!e || e->aux != nh) {
            sqlite3_stmt *u = st->stmt[W_SVC_SET_NS];
            sqlite3_bind_int64(u, 1, *out);
            sqlite3_bind_text(u, 2, ns.ptr, (int)ns.len, SQLITE_STATIC);
            if ((rc = step_done(st, u, "set service namespace"))) return rc;
            if (e) e->aux = nh;
        }
    }
    if (slot) {
        slot->res = r;
        slot->service_id = *out;
    }
    return 0;
}

static int operation_id(struct store *st, int64_t svc, const struct span *s, int64_t *out)
{
    const char *name = s->name.ptr ? s->name.ptr : "";
    uint32_t len = s->name.ptr ? s->name.len : 0;
    struct buf *k = &st->opkey;
    k->len = 0;
    if (buf_reserve(k, (size_t)len + 9) != 0) return -ENOMEM;
    memcpy(k->p, &svc, 8);
    k->p[8] = (uint8_t)s->kind;
    memcpy(k->p + 9, name, len);
    k->len = (size_t)len + 9;
    uint64_t h = hash_bytes(k->p, k->len);
    *out = intern_get(&st->operations, k->p, (uint32_t)k->len, h);
    if (*out) return 0;
    sqlite3_stmt *ins = st->stmt[W_OP_INSERT], *sel = st->stmt[W_OP_SELECT];
    sqlite3_bind_int64(ins, 1, svc);
    sqlite3_bind_text(ins, 2, name, (int)len, SQLITE_STATIC);
    sqlite3_bind_int(ins, 3, (int)s->kind);
    int rc = step_done(st, ins, "insert operation");
    if (rc) return rc;
    sqlite3_bind_int64(sel, 1, svc);
    sqlite3_bind_text(sel, 2, name, (int)len, SQLITE_STATIC);
    sqlite3_bind_int(sel, 3, (int)s->kind);
    rc = step_int(st, sel, out, "select operation");
    if (rc) return rc;
    return intern_put(&st->operations, k->p, (uint32_t)k->len, h, *out);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (*cap >= need) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int reserve_scratch(struct store *st, size_t total)
{
    if (st->cap_entries < total) {
        size_t cap = st->cap_entries ? st->cap_entries : 512;
        while (cap < total) cap *= 2;
        void *e = realloc(st->entries, cap * sizeof *st->entries);
        if (!e) return -ENOMEM;
        st->entries = e;
        void *o = realloc(st->order, cap * sizeof *st->order);
        if (!o) return -ENOMEM;
        st->order = o;
        void *c = realloc(st->chunk_spans, cap * sizeof *st->chunk_spans);
        if (!c) return -ENOMEM;
        st->chunk_spans = c;
        st->cap_entries = cap;
    }
    size_t slots = 16;
    while (slots < total * 2) slots *= 2;
    if (st->cap_slots < slots) {
        void *s = realloc(st->slots, slots * sizeof *st->slots);
        if (!s) return -ENOMEM;
        st->slots = s;
        st->cap_slots = slots;
    }
    return 0;
}

/* Order: trace id, then service, operation, start time. */
static int entry_cmp(const void *pa, const void *pb)
{
    const struct put_entry *a = *(struct put_entry *const *)pa;
    const struct put_entry *b = *(struct put_entry *const *)pb;
    int c = memcmp(a->span->trace_id, b->span->trace_id, 16);
    if (c) return c;
    if (a->service_id != b->service_id) return a->service_id < b->service_id ? -1 : 1;
    if (a->op_id != b->op_id) return a->op_id < b->op_id ? -1 : 1;
    if (a->start_us != b->start_us) return a->start_us < b->start_us ? -1 : 1;
    return 0;
}

static int insert_chunk(struct store *st, const uint8_t *trace_id, size_t n_spans, const void *data,
                        size_t len)
{
    if (st->n_tp_new == st->cap_tp_new) {
        size_t cap = st->cap_tp_new ? st->cap_tp_new * 2 : 1024;
        struct tpend_entry *e = realloc(st->tp_new, cap * sizeof *e);
        if (!e) return -ENOMEM;
        st->tp_new = e;
        st->cap_tp_new = cap;
    }
    int64_t key = trace_key_of(trace_id);
    st->tp_new[st->n_tp_new++] = (struct tpend_entry){.key = key, .chunk = st->next_chunk_id};
    sqlite3_stmt *s = st->stmt[W_CHUNK_INSERT];
    sqlite3_bind_int64(s, 1, st->next_chunk_id++);
    sqlite3_bind_int64(s, 2, key);
    sqlite3_bind_int64(s, 3, (int64_t)n_spans);
    sqlite3_bind_blob(s, 4, data, (int)len, SQLITE_STATIC);
    return step_done(st, s, "insert chunk");
}

/* The n spans of one trace (st->chunk_spans) as one chunk row. */
static int write_chunk(struct store *st, size_t n)
{
    st->enc.len = 0;
    int rc = codec_encode_chunk(&st->enc, st->chunk_spans, n);
    if (rc) return rc;
    sample_chunk(st, st->enc.p, st->enc.len);
    size_t bound = ZSTD_compressBound(st->enc.len);
    st->comp.len = 0;
    if (buf_reserve(&st->comp, bound) != 0) return -ENOMEM;
    size_t clen = ZSTD_compress2(st->cctx, st->comp.p, bound, st->enc.p, st->enc.len);
    if (ZSTD_isError(clen)) {
        log_ratelimited(LOG_ERROR, "store-zstd", "store: compress: %s", ZSTD_getErrorName(clen));
        return -EIO;
    }
    return insert_chunk(st, st->chunk_spans[0]->trace_id, n, st->comp.p, clen);
}

/* The chunks store_prepare_batch made (and the encodings it kept as samples). */
static int write_prepared(struct store *st, struct span_batch *const *batches, size_t n,
                          uint64_t *chunks)
{
    for (size_t b = 0; b < n; b++) {
        const struct prepared_chunks *p = batches[b]->prepared;
        for (size_t i = 0, raw = 0; p && i < p->n; i++) {
            if (p->raw_len) {
                sample_chunk(st, p->raw.p + raw, p->raw_len[i]);
                raw += p->raw_len[i];
            }
            const struct prepared_chunk *c = &p->chunks[i];
            int rc = insert_chunk(st, c->trace_id, c->n_spans, p->data.p + c->off, c->len);
            if (rc) return rc;
            (*chunks)++;
        }
    }
    return 0;
}

static int write_index_row(struct store *st, const struct put_entry *first, int64_t min_dur,
                           int64_t max_dur, bool error)
{
    sqlite3_stmt *s = st->stmt[W_INDEX_INSERT];
    if (first->start_us < st->index_floor_us) st->index_floor_us = first->start_us;
    sqlite3_bind_int64(s, 1, first->service_id);
    sqlite3_bind_int64(s, 2, first->start_us);
    sqlite3_bind_int64(s, 3, trace_key_of(first->span->trace_id));
    sqlite3_bind_int64(s, 4, first->op_id);
    sqlite3_bind_int64(s, 5, min_dur);
    sqlite3_bind_int64(s, 6, max_dur - min_dur); /* dur_spread_us */
    sqlite3_bind_int(s, 7, error ? 1 : 0);
    return step_done(st, s, "insert index row");
}

/* Chunks per trace (of the batches not prepared); index rows per (trace, service, operation)
 * within the group spread. */
static int write_rows(struct store *st, size_t total, uint64_t *chunks)
{
    struct put_entry **o = st->order;
    for (size_t i = 0; i < total; i++) o[i] = &st->entries[i];
    qsort(o, total, sizeof *o, entry_cmp);
    size_t t = 0;
    while (t < total) {
        size_t t_end = t + 1;
        while (t_end < total && memcmp(o[t_end]->span->trace_id, o[t]->span->trace_id, 16) == 0)
            t_end++;
        size_t k = 0; /* the spans whose batch was not prepared */
        for (size_t i = t; i < t_end; i++)
            if (!o[i]->prepared) st->chunk_spans[k++] = o[i]->span;
        int rc = k ? write_chunk(st, k) : 0;
        if (rc) return rc;
        if (k) (*chunks)++;
        size_t g = t;
        while (g < t_end) {
            const struct put_entry *first = o[g];
            int64_t min_dur = first->dur_us, max_dur = first->dur_us;
            bool error = first->error;
            size_t g_end = g + 1;
            while (g_end < t_end && o[g_end]->service_id == first->service_id &&
                   o[g_end]->op_id == first->op_id &&
                   o[g_end]->start_us - first->start_us < INDEX_GROUP_SPREAD_US) {
                const struct put_entry *e = o[g_end];
                if (e->dur_us < min_dur) min_dur = e->dur_us;
                if (e->dur_us > max_dur) max_dur = e->dur_us;
                error |= e->error;
                g_end++;
            }
            rc = write_index_row(st, first, min_dur, max_dur, error);
            if (rc) return rc;
            g = g_end;
        }
        t = t_end;
    }
    return 0;
}

/* ----- chunks prepared ahead of the writer (store_prepare_batch) ---------------------------- */

/* A compression context for one prepare call: a kept one (each slot is taken by an atomic
 * exchange, so no lock), or a new one when every slot is in use. */
static ZSTD_CCtx *prep_cctx_take(struct store *st)
{
    for (int i = 0; i < PREP_CCTX_SLOTS; i++) {
        ZSTD_CCtx *c = atomic_exchange_explicit(&st->prep_cctx[i], NULL, memory_order_acquire);
        if (c) return c;
    }
    return ZSTD_createCCtx();
}

static void prep_cctx_give(struct store *st, ZSTD_CCtx *c)
{
    for (int i = 0; i < PREP_CCTX_SLOTS; i++) {
        ZSTD_CCtx *none = NULL;
        if (atomic_compare_exchange_strong_explicit(&st->prep_cctx[i], &none, c,
                                                    memory_order_release, memory_order_relaxed))
            return;
    }
    ZSTD_freeCCtx(c);
}

struct prep_ref {
    const struct span *span;
    uint32_t i; /* in the batch: ties keep the batch's order */
};

/* Trace id, then start time: a parent comes before its children, which the codec then writes
 * as a back reference instead of the 8-byte id, and start deltas stay small. */
static int prep_ref_cmp(const void *pa, const void *pb)
{
    const struct prep_ref *a = pa, *b = pb;
    int c = memcmp(a->span->trace_id, b->span->trace_id, 16);
    if (c) return c;
    if (a->span->start_unix_nano != b->span->start_unix_nano)
        return a->span->start_unix_nano < b->span->start_unix_nano ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

int store_prepare_batch(struct store *st, struct span_batch *b)
{
    if (!st || !b || b->prepared || b->n_spans == 0) return 0;
    /* Without a dictionary yet, chunks are compressed without one, and their encodings kept
     * while the writer samples them (see DESIGN). */
    ZSTD_CDict *cd = atomic_load_explicit(&st->prep_cdict, memory_order_acquire);
    bool sample = !cd && atomic_load_explicit(&st->prep_sampling, memory_order_relaxed);
    size_t n = b->n_spans;
    struct prep_ref *refs = malloc(n * sizeof *refs);
    const struct span **run = malloc(n * sizeof *run);
    struct prepared_chunks *p = calloc(1, sizeof *p);
    struct buf enc = {0};
    ZSTD_CCtx *cc = NULL;
    int rc = -ENOMEM;
    if (!refs || !run || !p || !(p->chunks = malloc(n * sizeof *p->chunks)) ||
        !(p->span_flags = malloc(n)) || !(p->marks = malloc(n * sizeof *p->marks)) ||
        (sample && !(p->raw_len = malloc(n * sizeof *p->raw_len))))
        goto done;
    if (!(cc = prep_cctx_take(st))) goto done;
    for (size_t i = 0; i < n; i++) {
        unsigned flags = span_request_marks(&b->spans[i], p->marks[i]);
        if (span_is_error(&b->spans[i])) flags |= PREP_ERROR;
        p->span_flags[i] = (uint8_t)flags;
    }
    for (size_t i = 0; i < n; i++)
        refs[i] = (struct prep_ref){&b->spans[i], (uint32_t)i};
    qsort(refs, n, sizeof *refs, prep_ref_cmp);
    for (size_t t = 0, t_end; t < n; t = t_end) {
        t_end = t + 1;
        while (t_end < n && memcmp(refs[t_end].span->trace_id, refs[t].span->trace_id, 16) == 0)
            t_end++;
        for (size_t i = t; i < t_end; i++)
            run[i - t] = refs[i].span;
        enc.len = 0;
        if ((rc = codec_encode_chunk(&enc, run, t_end - t))) goto done;
        size_t bound = ZSTD_compressBound(enc.len);
        rc = -ENOMEM;
        if (enc.len > UINT32_MAX || buf_reserve(&p->data, bound) != 0) goto done;
        if (sample) {
            if (buf_reserve(&p->raw, enc.len) != 0) goto done;
            memcpy(p->raw.p + p->raw.len, enc.p, enc.len);
            p->raw.len += enc.len;
            p->raw_len[p->n] = (uint32_t)enc.len;
        }
        size_t clen =
            cd ? ZSTD_compress_usingCDict(cc, p->data.p + p->data.len, bound, enc.p, enc.len, cd)
               : ZSTD_compressCCtx(cc, p->data.p + p->data.len, bound, enc.p, enc.len,
                                   STORE_ZSTD_LEVEL);
        if (ZSTD_isError(clen)) {
            log_ratelimited(LOG_ERROR, "store-zstd", "store: compress: %s",
                            ZSTD_getErrorName(clen));
            rc = -EIO;
            goto done;
        }
        struct prepared_chunk *c = &p->chunks[p->n++];
        memcpy(c->trace_id, refs[t].span->trace_id, 16);
        c->n_spans = (uint32_t)(t_end - t);
        c->len = (uint32_t)clen;
        c->off = p->data.len;
        p->data.len += clen;
    }
    /* The ingest queue's byte bound counts what the batch holds: give back the slack. */
    void *shrunk = realloc(p->data.p, p->data.len);
    if (shrunk) {
        p->data.p = shrunk;
        p->data.cap = p->data.len;
    }
    shrunk = realloc(p->chunks, p->n * sizeof *p->chunks);
    if (shrunk) p->chunks = shrunk;
    b->prepared = p;
    p = NULL;
    rc = 0;
done:
    if (cc) prep_cctx_give(st, cc);
    prepared_chunks_free(p);
    buf_free(&enc);
    free(run);
    free(refs);
    return rc;
}

/* ----- compacting prepared batches (store_compact_batch) ----------------------------------- */

/* Whether k is one of the n keys. *lens caches the keys' lengths below 64 as bits (0: not yet;
 * any thread may fill it, all with the same value): most keys are ruled out by their length. */
static bool key_in(struct mstr k, const struct key_lit *keys, size_t n, _Atomic uint64_t *lens)
{
    uint64_t l = atomic_load_explicit(lens, memory_order_relaxed);
    if (!l) {
        for (size_t i = 0; i < n; i++)
            l |= keys[i].len < 64 ? 1ull << keys[i].len : 1ull;
        atomic_store_explicit(lens, l | 1ull, memory_order_relaxed); /* bit 0: filled */
    }
    if (k.len < 64 && !(l >> k.len & 1)) return false;
    for (size_t i = 0; i < n; i++)
        if (k.len == keys[i].len && memcmp(k.ptr, keys[i].key, k.len) == 0) return true;
    return false;
}

#define COUNT(a) (sizeof(a) / sizeof(a)[0])

static bool writer_span_key(struct mstr k)
{
    static _Atomic uint64_t peer, other;
    return key_in(k, peer_keys, P_N, &peer) ||
           key_in(k, other_span_keys, COUNT(other_span_keys), &other);
}

static bool writer_resource_key(struct mstr k)
{
    static _Atomic uint64_t ns;
    return (k.len == 12 && memcmp(k.ptr, "service.name", 12) == 0) ||
           key_in(k, namespace_keys, COUNT(namespace_keys), &ns);
}

/* Arena bytes of a string copy and of an array of n items of size each (arena_alloc's 16). */
#define ROUND16(n) (((size_t)(n) + 15) & ~(size_t)15)

static size_t value_bytes(const struct value *v)
{
    size_t n = 0;
    switch (v->type) {
    case VALUE_STRING:
    case VALUE_BYTES:
        return ROUND16(v->u.str.len + 1);
    case VALUE_ARRAY:
        n = ROUND16(v->u.array.n * sizeof *v->u.array.items);
        for (uint32_t i = 0; i < v->u.array.n; i++)
            n += value_bytes(&v->u.array.items[i]);
        return n;
    case VALUE_KVLIST:
        n = ROUND16(v->u.kvlist.n * sizeof *v->u.kvlist.items);
        for (uint32_t i = 0; i < v->u.kvlist.n; i++)
            n += ROUND16(v->u.kvlist.items[i].key.len + 1) +
                 value_bytes(&v->u.kvlist.items[i].value);
        return n;
    default:
        return 0;
    }
}

static int copy_str(struct arena *a, struct mstr *out, struct mstr in)
{
    if (!in.ptr) return 0;
    char *p = arena_strndup(a, in.ptr, in.len);
    if (!p) return -ENOMEM;
    *out = (struct mstr){p, in.len};
    return 0;
}

static int copy_value(struct arena *a, struct value *out, const struct value *in)
{
    *out = *in;
    switch (in->type) {
    case VALUE_STRING:
    case VALUE_BYTES:
        return copy_str(a, &out->u.str, in->u.str);
    case VALUE_ARRAY:
        if (!in->u.array.n) return 0;
        if (!(out->u.array.items = arena_alloc(a, in->u.array.n * sizeof *in->u.array.items)))
            return -ENOMEM;
        for (uint32_t i = 0; i < in->u.array.n; i++)
            if (copy_value(a, &out->u.array.items[i], &in->u.array.items[i])) return -ENOMEM;
        return 0;
    case VALUE_KVLIST:
        if (!in->u.kvlist.n) return 0;
        if (!(out->u.kvlist.items = arena_alloc(a, in->u.kvlist.n * sizeof *in->u.kvlist.items)))
            return -ENOMEM;
        for (uint32_t i = 0; i < in->u.kvlist.n; i++)
            if (copy_str(a, &out->u.kvlist.items[i].key, in->u.kvlist.items[i].key) ||
                copy_value(a, &out->u.kvlist.items[i].value, &in->u.kvlist.items[i].value))
                return -ENOMEM;
        return 0;
    default:
        return 0;
    }
}

/* The arena bytes of the attributes of as that keep(key) (all of them when out is NULL) or, with
 * out, copies them into a (out->items NULL when none). */
static size_t kept_attrs(const struct attrs *as, bool (*keep)(struct mstr), struct arena *a,
                         struct attrs *out, int *rc)
{
    size_t n = 0, bytes = 0;
    for (uint32_t i = 0; i < as->n; i++) {
        if (!keep(as->items[i].key)) continue;
        n++;
        bytes += ROUND16(as->items[i].key.len + 1) + value_bytes(&as->items[i].value);
    }
    if (n) bytes += ROUND16(n * sizeof *as->items);
    if (!out) return bytes;
    *out = (struct attrs){0};
    if (!n) return bytes;
    if (!(out->items = arena_alloc(a, n * sizeof *out->items))) goto oom;
    for (uint32_t i = 0; i < as->n; i++) {
        const struct attr *in = &as->items[i];
        if (!keep(in->key)) continue;
        struct attr *o = &out->items[out->n++];
        if (copy_str(a, &o->key, in->key) || copy_value(a, &o->value, &in->value)) goto oom;
    }
    return bytes;
oom:
    *rc = -ENOMEM;
    return bytes;
}

/* Resources of a batch, old to new (spans of one resource are mostly consecutive). */
#define COMPACT_RES_SLOTS 64

static int compact_into(struct span_batch *b, struct arena *a, struct span *spans)
{
    const struct resource *from[COMPACT_RES_SLOTS];
    const struct resource *to[COMPACT_RES_SLOTS];
    unsigned n_res = 0, next = 0;
    int rc = 0;
    for (uint32_t i = 0; i < b->n_spans && !rc; i++) {
        const struct span *in = &b->spans[i];
        struct span *o = &spans[i];
        *o = *in;
        o->trace_state = o->status_message = (struct mstr){0};
        o->events = NULL;
        o->n_events = 0;
        o->links = NULL;
        o->n_links = 0;
        o->scope = NULL;
        if ((rc = copy_str(a, &o->name, in->name))) break;
        kept_attrs(&in->attrs, writer_span_key, a, &o->attrs, &rc);
        o->attrs.dropped = in->attrs.dropped;
        if (!in->resource || rc) continue;
        unsigned k = 0;
        while (k < n_res && from[k] != in->resource)
            k++;
        if (k == n_res) {
            struct resource *r = arena_alloc(a, sizeof *r);
            if (!r) return -ENOMEM;
            kept_attrs(&in->resource->attrs, writer_resource_key, a, &r->attrs, &rc);
            k = n_res < COMPACT_RES_SLOTS ? n_res++ : next++ % COMPACT_RES_SLOTS;
            from[k] = in->resource;
            to[k] = r;
        }
        o->resource = to[k];
    }
    return rc;
}

/* The arena bytes a compacted copy of b takes (a resource counted once per run of its spans is
 * an upper bound), so that the copy takes one block. Kept in the batch (it costs a pass over
 * every attribute). */
static size_t compact_need(struct span_batch *b)
{
    if (b->compact_need) return b->compact_need;
    size_t need = ROUND16(b->reject_reason ? strlen(b->reject_reason) + 1 : 0);
    const struct resource *last = NULL;
    for (uint32_t i = 0; i < b->n_spans; i++) {
        const struct span *s = &b->spans[i];
        need += ROUND16(s->name.len + 1) + kept_attrs(&s->attrs, writer_span_key, NULL, NULL, NULL);
        if (s->resource && s->resource != last)
            need += ROUND16(sizeof *s->resource) +
                    kept_attrs(&s->resource->attrs, writer_resource_key, NULL, NULL, NULL);
        last = s->resource;
    }
    return b->compact_need = need + ROUND16((size_t)b->n_spans * sizeof(struct span));
}

size_t store_queued_bytes(struct span_batch *b)
{
    size_t all = span_batch_bytes(b);
    if (b->n_logs || !b->n_spans || !b->cap_spans) return all; /* not compactable, or compacted */
    return all - arena_bytes(b->arena) - (size_t)b->cap_spans * sizeof(struct span) +
           arena_mapped_bytes(compact_need(b));
}

int store_compact_batch(struct span_batch *b)
{
    if (!b || !b->prepared || b->n_logs || !b->n_spans || !b->cap_spans) return 0;
    /* One mapping of its own (arena_create_mapped): it outlives the request's allocations. */
    size_t need = compact_need(b);
    struct arena *a = arena_create_mapped(need);
    struct span *spans = a ? arena_alloc(a, (size_t)b->n_spans * sizeof *spans) : NULL;
    int rc = spans ? compact_into(b, a, spans) : -ENOMEM;
    const char *reason = NULL;
    if (!rc && b->reject_reason &&
        !(reason = arena_strndup(a, b->reject_reason, strlen(b->reject_reason))))
        rc = -ENOMEM;
    if (rc) {
        arena_destroy(a);
        return rc;
    }
    arena_destroy(b->arena);
    if (b->cap_spans) free(b->spans);
    b->arena = a;
    b->spans = spans; /* in the arena: cap_spans 0 (span_batch_destroy, span_batch_add) */
    b->cap_spans = 0;
    b->reject_reason = reason;
    return 0;
}

/* ----- edge rollups (see EDGE ROLLUPS at the top) ------------------------------------------ */

static uint64_t edge_hash(int64_t bucket, int64_t client, int64_t server, int conn)
{
    uint64_t h = (uint64_t)bucket * 0x9E3779B97F4A7C15ULL;
    h = (h ^ (uint64_t)client) * 0xC2B2AE3D27D4EB4FULL;
    h = (h ^ (uint64_t)server) * 0x165667B19E3779F9ULL;
    h ^= (uint64_t)conn;
    return h ^ (h >> 31);
}

static void edges_reset(struct store *st)
{
    st->n_edges = 0;
    if (st->edge_slots) memset(st->edge_slots, 0xff, st->n_edge_slots * sizeof *st->edge_slots);
}

/* The edge being built for (bucket, client, server, conn), added zeroed if new; NULL on out of
 * memory. The pointer is valid until the next call. */
static struct edge *edge_get(struct store *st, int64_t bucket, int64_t client, int64_t server,
                             int conn)
{
    if ((st->n_edges + 1) * 2 > st->n_edge_slots) {
        size_t n = st->n_edge_slots ? st->n_edge_slots * 2 : 256;
        int32_t *slots = malloc(n * sizeof *slots);
        if (!slots) return NULL;
        memset(slots, 0xff, n * sizeof *slots);
        for (size_t k = 0; k < st->n_edges; k++) {
            const struct edge *e = &st->edges[k];
            size_t i = edge_hash(e->bucket, e->client_id, e->server_id, e->conn) & (n - 1);
            while (slots[i] >= 0) i = (i + 1) & (n - 1);
            slots[i] = (int32_t)k;
        }
        free(st->edge_slots);
        st->edge_slots = slots;
        st->n_edge_slots = n;
    }
    size_t mask = st->n_edge_slots - 1;
    for (size_t i = edge_hash(bucket, client, server, conn) & mask;; i = (i + 1) & mask) {
        int32_t k = st->edge_slots[i];
        if (k < 0) {
            if (grow((void **)&st->edges, &st->cap_edges, st->n_edges + 1, sizeof *st->edges))
                return NULL;
            struct edge *e = &st->edges[st->n_edges];
            memset(e, 0, sizeof *e);
            e->bucket = bucket;
            e->client_id = client;
            e->server_id = server;
            e->conn = conn;
            st->edge_slots[i] = (int32_t)st->n_edges++;
            return e;
        }
        struct edge *e = &st->edges[k];
        if (e->bucket == bucket && e->client_id == client && e->server_id == server &&
            e->conn == conn)
            return e;
    }
}

/* Counts one call on an edge; dur_us is the call's latency. */
static int add_edge(struct store *st, int64_t bucket, int64_t client, int64_t server, int conn,
                    bool error, int64_t dur_us)
{
    if (client == server) return 0; /* calls inside one service are not edges */
    struct edge *e = edge_get(st, bucket, client, server, conn);
    if (!e) return -ENOMEM;
    e->calls++;
    e->errors += error;
    e->dur_sum_us += dur_us;
    e->hist[hist_bucket_of(dur_us)]++;
    return 0;
}

static uint32_t span_slot_hash(const uint8_t *trace_id, const uint8_t *span_id)
{
    uint8_t k[24];
    memcpy(k, trace_id, 16);
    memcpy(k + 16, span_id, 8);
    return (uint32_t)hash_bytes(k, sizeof k);
}

static bool is_client(enum span_kind k)
{
    return k == SPAN_KIND_CLIENT || k == SPAN_KIND_PRODUCER;
}

static bool is_server(enum span_kind k)
{
    return k == SPAN_KIND_SERVER || k == SPAN_KIND_CONSUMER;
}

/* The entry of (trace, span id) in this call, -1 if none. Two entries share an id only as the
 * halves of a Zipkin shared span: then the server half (the parent of the server side's
 * children), or with want_client the client half only. */
static int32_t find_in_call(struct store *st, const uint8_t *trace_id, const uint8_t *span_id,
                            bool want_client)
{
    size_t mask = st->cap_slots - 1;
    int32_t found = -1;
    for (size_t i = span_slot_hash(trace_id, span_id) & mask;; i = (i + 1) & mask) {
        int32_t e = st->slots[i];
        if (e < 0) return found;
        const struct span *s = st->entries[e].span;
        if (memcmp(s->span_id, span_id, 8) != 0 || memcmp(s->trace_id, trace_id, 16) != 0)
            continue;
        if (want_client) {
            if (is_client(s->kind)) return e;
        } else {
            if (!is_client(s->kind)) return e;
            if (found < 0) found = e; /* a client: look on for a shared server twin */
        }
    }
}

/* pending_find, ignoring halves past their TTL (the expiry pass counts them). */
static int32_t pending_live(const struct store *st, const uint8_t *trace_id,
                            const uint8_t *span_id, uint8_t side, int64_t cutoff)
{
    int32_t i = pending_find(&st->pending, trace_id, span_id, side);
    return i >= 0 && st->pending.e[i].added_us >= cutoff ? i : -1;
}

static int plan_pending(struct store *st, const struct pend *tmpl)
{
    if (grow((void **)&st->pend_adds, &st->cap_pend, st->n_adds + 1, sizeof *st->pend_adds))
        return -ENOMEM;
    st->pend_adds[st->n_adds++] = *tmpl;
    return 0;
}

static int plan_remove(struct store *st, int32_t idx)
{
    if (grow((void **)&st->pend_removes, &st->cap_removes, st->n_removes + 1,
             sizeof *st->pend_removes))
        return -ENOMEM;
    st->pend_removes[st->n_removes++] = idx;
    return 0;
}

static bool mstr_is(struct mstr k, const char *lit, size_t n)
{
    return k.len == n && memcmp(k.ptr, lit, n) == 0;
}

/* zipkin.shared=true (bool or string): the SERVER half of a Zipkin/Envoy shared span. */
static bool span_shared(const struct span *s)
{
    for (uint32_t i = 0; i < s->attrs.n; i++) {
        const struct attr *a = &s->attrs.items[i];
        if (!mstr_is(a->key, "zipkin.shared", 13)) continue;
        return (a->value.type == VALUE_BOOL && a->value.u.b) ||
               (a->value.type == VALUE_STRING && mstr_is(a->value.u.str, "true", 4));
    }
    return false;
}

/* A host name or address: letters, digits, '.', '-', '_' (no spaces, paths or ids). */
static bool is_host(const char *p, size_t n)
{
    if (!n || n > 253) return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* The node id (< 0) of the virtual node named name (cut at VNODE_NAME_MAX bytes on a UTF-8
 * boundary), added to virtual_nodes if new. */
static int vnode_id(struct store *st, struct mstr name, int64_t *node /* OUT */)
{
    uint32_t len = name.len;
    if (len > VNODE_NAME_MAX) { /* cut on a UTF-8 boundary */
        len = VNODE_NAME_MAX;
        while (len > 0 && ((unsigned char)name.ptr[len] & 0xc0) == 0x80) len--;
    }
    uint64_t h = hash_bytes(name.ptr, len);
    int64_t id = intern_get(&st->vnodes, name.ptr, len, h);
    if (!id) {
        sqlite3_bind_text(st->stmt[W_VNODE_INSERT], 1, name.ptr, (int)len, SQLITE_STATIC);
        int rc = step_done(st, st->stmt[W_VNODE_INSERT], "insert virtual node");
        if (rc) return rc;
        sqlite3_bind_text(st->stmt[W_VNODE_SELECT], 1, name.ptr, (int)len, SQLITE_STATIC);
        if ((rc = step_int(st, st->stmt[W_VNODE_SELECT], &id, "select virtual node")) ||
            (rc = intern_put(&st->vnodes, name.ptr, len, h, id)))
            return rc;
    }
    *node = -id;
    return 0;
}

/* The virtual node a CLIENT/PRODUCER span names, as the RED service graph derives it
 * (collector/red_labels.c, Tempo's peer attributes in Tempo's order): peer.service,
 * db.name / db.namespace, db.system, messaging.system, server.address without its port. *peer
 * (OUT) = its node id (< 0), 0 when the span names none; *conn (OUT) its connection type. */
static int virtual_peer(struct store *st, const struct span *s, int64_t *peer, uint8_t *conn)
{
    const struct key_lit *keys = peer_keys;
    struct mstr v[P_N] = {{0}};
    *peer = 0;
    *conn = CONN_VIRTUAL;
    for (uint32_t i = 0; i < s->attrs.n; i++) {
        const struct attr *a = &s->attrs.items[i];
        if (a->value.type != VALUE_STRING || !a->value.u.str.len) continue;
        for (int k = 0; k < P_N; k++)
            if (!v[k].ptr && mstr_is(a->key, keys[k].key, keys[k].len)) v[k] = a->value.u.str;
    }
    if (v[P_ADDR].ptr) {
        const char *colon = memchr(v[P_ADDR].ptr, ':', v[P_ADDR].len);
        if (colon && !memchr(colon + 1, ':', v[P_ADDR].len - (size_t)(colon + 1 - v[P_ADDR].ptr)))
            v[P_ADDR].len = (uint32_t)(colon - v[P_ADDR].ptr); /* host:port (not IPv6) */
        if (!is_host(v[P_ADDR].ptr, v[P_ADDR].len)) v[P_ADDR].ptr = NULL;
    }
    struct mstr name = v[P_PEER].ptr      ? v[P_PEER]
                       : v[P_DB_NAME].ptr ? v[P_DB_NAME]
                       : v[P_DB_NS].ptr   ? v[P_DB_NS]
                       : v[P_DB_SYS].ptr  ? v[P_DB_SYS]
                       : v[P_MSG_SYS].ptr ? v[P_MSG_SYS]
                                          : v[P_ADDR];
    if (!name.ptr) return 0;
    if (v[P_DB_NAME].ptr || v[P_DB_NS].ptr || v[P_DB_SYS].ptr) *conn = CONN_DATABASE;
    else if (v[P_MSG_SYS].ptr && s->kind == SPAN_KIND_PRODUCER) *conn = CONN_MESSAGING;
    return vnode_id(st, name, peer);
}

/* (c) Halves past their wait, oldest first: a client that named its peer calls a virtual node;
 * a SERVER whose client never came was called from outside ("user"). */
static int expire_halves(struct store *st, int64_t cutoff)
{
    for (int32_t i = st->pending.oldest; i >= 0 && st->pending.e[i].added_us < cutoff;
         i = st->pending.e[i].newer) {
        const struct pend *h = &st->pending.e[i];
        int rc = 0;
        if (h->side == SIDE_CLIENT && h->peer_id)
            rc = add_edge(st, h->bucket, h->service_id, h->peer_id, h->conn, h->error, h->dur_us);
        else if (h->side == SIDE_SERVER && h->kind == SPAN_KIND_SERVER)
            rc = add_edge(st, h->bucket, ROLLUP_NODE_USER, h->service_id, CONN_PLAIN, h->error,
                          h->dur_us);
        if (rc || (rc = plan_remove(st, i))) return rc;
    }
    return 0;
}

static int conn_of_pair(enum span_kind client_kind)
{
    return client_kind == SPAN_KIND_PRODUCER ? CONN_MESSAGING : CONN_PLAIN;
}

/* Finds the calls of this write call: (a) a span and its parent in this call, root SERVER spans
 * (from "user"); (b) client/server halves split over calls, through the pending map (read here,
 * changed only after commit, by apply_pending); (c) halves that expired. Fills st->edges. */
static int find_edges(struct store *st, size_t total, int64_t now)
{
    edges_reset(st);
    st->n_adds = st->n_removes = 0;
    size_t mask = st->cap_slots - 1;
    for (size_t i = 0; i <= mask; i++) st->slots[i] = -1;
    for (size_t i = 0; i < total; i++) {
        const struct span *s = st->entries[i].span;
        size_t j = span_slot_hash(s->trace_id, s->span_id) & mask;
        while (st->slots[j] >= 0) j = (j + 1) & mask;
        st->slots[j] = (int32_t)i;
    }
    const int64_t cutoff = now - st->wait_us;
    int rc = 0;
    for (size_t i = 0; i < total; i++) {
        struct put_entry *c = &st->entries[i];
        const struct span *s = c->span;
        if (c->shared_server) { /* pairs with the client half of the same span id */
            int32_t ci = find_in_call(st, s->trace_id, s->span_id, true);
            if (ci < 0) continue;
            struct put_entry *p = &st->entries[ci];
            c->parent_in_call = true;
            p->has_server_child = true;
            if (p->service_id == c->service_id) continue;
            p->child_edge = true;
            if ((rc = add_edge(st, c->bucket, p->service_id, c->service_id,
                               conn_of_pair(p->span->kind), c->error || p->error, c->dur_us)))
                return rc;
            continue;
        }
        if (!s->has_parent) {
            /* A root SERVER span: its caller is outside the traces (Tempo's "user"). */
            if (s->kind == SPAN_KIND_SERVER &&
                (rc = add_edge(st, c->bucket, ROLLUP_NODE_USER, c->service_id, CONN_PLAIN,
                               c->error, c->dur_us)))
                return rc;
            continue;
        }
        int32_t pi = find_in_call(st, s->trace_id, s->parent_span_id, false);
        if (pi < 0 || (size_t)pi == i) continue;
        struct put_entry *p = &st->entries[pi];
        c->parent_in_call = true;
        if (is_server(s->kind)) p->has_server_child = true;
        if (p->service_id == c->service_id) continue;
        p->child_edge = true;
        /* A client/server pair fails if either half failed; otherwise the call's outcome is
         * the child's. */
        bool pair = is_client(p->span->kind) && is_server(s->kind);
        if ((rc = add_edge(st, c->bucket, p->service_id, c->service_id,
                           pair ? conn_of_pair(p->span->kind) : CONN_PLAIN,
                           c->error || (pair && p->error), c->dur_us)))
            return rc;
    }
    for (size_t i = 0; i < total; i++) {
        struct put_entry *x = &st->entries[i];
        const struct span *s = x->span;
        if (is_server(s->kind) && !x->parent_in_call && (s->has_parent || x->shared_server)) {
            const uint8_t *key = x->shared_server ? s->span_id : s->parent_span_id;
            int32_t ci = pending_live(st, s->trace_id, key, SIDE_CLIENT, cutoff);
            if (ci >= 0) {
                const struct pend *cl = &st->pending.e[ci];
                if ((rc = add_edge(st, x->bucket, cl->service_id, x->service_id,
                                   conn_of_pair(cl->kind), cl->error || x->error, x->dur_us)) ||
                    (rc = plan_remove(st, ci)))
                    return rc;
            } else {
                struct pend t = {.side = SIDE_SERVER, .kind = (uint8_t)s->kind,
                                 .error = x->error, .service_id = x->service_id,
                                 .bucket = x->bucket, .dur_us = x->dur_us};
                memcpy(t.trace_id, s->trace_id, 16);
                memcpy(t.span_id, key, 8);
                if ((rc = plan_pending(st, &t))) return rc;
            }
        }
        if (is_client(s->kind) && !x->child_edge && !x->has_server_child) {
            int32_t si = pending_live(st, s->trace_id, s->span_id, SIDE_SERVER, cutoff);
            if (si >= 0) {
                const struct pend *sv = &st->pending.e[si];
                if ((rc = add_edge(st, sv->bucket, x->service_id, sv->service_id,
                                   conn_of_pair(s->kind), sv->error || x->error, sv->dur_us)) ||
                    (rc = plan_remove(st, si)))
                    return rc;
            } else {
                struct pend t = {.side = SIDE_CLIENT, .kind = (uint8_t)s->kind,
                                 .error = x->error, .service_id = x->service_id,
                                 .bucket = x->bucket, .dur_us = x->dur_us};
                if ((rc = virtual_peer(st, s, &t.peer_id, &t.conn))) return rc;
                memcpy(t.trace_id, s->trace_id, 16);
                memcpy(t.span_id, s->span_id, 8);
                if ((rc = plan_pending(st, &t))) return rc;
            }
        }
    }
    return expire_halves(st, cutoff);
}

/* An edge and the start of the summary bucket it falls in (write_edges). */
struct edge_tier {
    const struct edge *e;
    int64_t bucket;
};

/* Orders by (client, server, conn, summary bucket): the rows one summary sums are adjacent. */
static int edge_tier_cmp(const void *pa, const void *pb)
{
    const struct edge_tier *x = pa, *y = pb;
    const struct edge *a = x->e, *b = y->e;
    if (a->client_id != b->client_id) return a->client_id < b->client_id ? -1 : 1;
    if (a->server_id != b->server_id) return a->server_id < b->server_id ? -1 : 1;
    if (a->conn != b->conn) return a->conn < b->conn ? -1 : 1;
    return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

static int upsert_edge(struct store *st, int64_t bucket, int resolution, const struct edge *e,
                       uint64_t calls, uint64_t errors, int64_t dur_sum_us,
                       const uint64_t hist[HIST_BUCKETS])
{
    sqlite3_stmt *s = st->stmt[W_EDGE_UPSERT];
    st->hist_blob.len = 0;
    if (hist_encode(&st->hist_blob, hist) != 0) return -ENOMEM;
    sqlite3_bind_int64(s, 1, bucket);
    sqlite3_bind_int(s, 2, resolution);
    sqlite3_bind_int64(s, 3, e->client_id);
    sqlite3_bind_int64(s, 4, e->server_id);
    sqlite3_bind_int(s, 5, e->conn);
    sqlite3_bind_int64(s, 6, (int64_t)calls);
    sqlite3_bind_int64(s, 7, (int64_t)errors);
    sqlite3_bind_int64(s, 8, dur_sum_us);
    sqlite3_bind_blob(s, 9, st->hist_blob.len ? (const void *)st->hist_blob.p : "",
                      (int)st->hist_blob.len, SQLITE_STATIC);
    return step_done(st, s, "upsert edge rollup");
}

/* Upserts st->edges as rows of the given resolution (hist_merge sums the histograms); fine
 * (10 s) rows also go into their 10 min and hour summary rows (SUMMARIES), one upsert per
 * (edge, summary bucket) of the call. */
static int write_edges(struct store *st, int resolution)
{
    for (size_t i = 0; i < st->n_edges; i++) {
        const struct edge *e = &st->edges[i];
        int rc = upsert_edge(st, e->bucket, resolution, e, e->calls, e->errors, e->dur_sum_us,
                             e->hist);
        if (rc) return rc;
    }
    if (resolution != ROLLUP_FINE_S || !st->n_edges) return 0;
    static const int tiers[] = {ROLLUP_10MIN_S, ROLLUP_HOUR_S};
    struct edge_tier *order = malloc(st->n_edges * sizeof *order);
    uint64_t *hist = malloc(HIST_BUCKETS * sizeof *hist);
    int rc = order && hist ? 0 : -ENOMEM;
    for (size_t t = 0; !rc && t < sizeof tiers / sizeof tiers[0]; t++) {
        for (size_t i = 0; i < st->n_edges; i++)
            order[i] = (struct edge_tier){&st->edges[i],
                                          floor_div(st->edges[i].bucket, tiers[t]) * tiers[t]};
        qsort(order, st->n_edges, sizeof *order, edge_tier_cmp);
        for (size_t i = 0; !rc && i < st->n_edges;) {
            uint64_t calls = 0, errors = 0;
            int64_t dur_sum = 0;
            memset(hist, 0, HIST_BUCKETS * sizeof *hist);
            size_t j = i;
            for (; j < st->n_edges && edge_tier_cmp(&order[i], &order[j]) == 0; j++) {
                const struct edge *e = order[j].e;
                calls += e->calls;
                errors += e->errors;
                dur_sum += e->dur_sum_us;
                for (unsigned k = 0; k < HIST_BUCKETS; k++) hist[k] += e->hist[k];
            }
            rc = upsert_edge(st, order[i].bucket, tiers[t], order[i].e, calls, errors, dur_sum,
                             hist);
            i = j;
        }
    }
    free(order);
    free(hist);
    return rc;
}

static void apply_pending(struct store *st, int64_t now)
{
    for (size_t i = 0; i < st->n_removes; i++) pending_remove(&st->pending, st->pend_removes[i]);
    pending_expire(&st->pending, now - st->wait_us);
    for (size_t i = 0; i < st->n_adds; i++) pending_add(&st->pending, &st->pend_adds[i], now);
}

/* After a rollback: forget what mirrored rows that no longer exist. */
static void forget_uncommitted(struct store *st)
{
    intern_clear(&st->services);
    intern_clear(&st->operations);
    intern_clear(&st->vnodes);
    st->mark_minute = -1;
}

/* ----- access-log records on the edge rollups (see ACCESS-LOG RECORDS at the top) ---------- */

/* True when a mark was left by a span stored at or after since. */
static bool seen_any(const struct store *st, const uint64_t *marks, unsigned n, int64_t since)
{
    if (st->seen_last_us < since) return false; /* no span marked anything since */
    for (unsigned i = 0; i < n; i++)
        if (recent_set_has(st->seen, marks[i], since)) return true;
    return false;
}

/* The request marks of the write call's CLIENT/SERVER spans (consecutive spans of one trace
 * mark it once). */
static void mark_spans(struct store *st, size_t total, int64_t now)
{
    uint64_t last = 0;
    for (size_t i = 0; i < total; i++) {
        const uint64_t *marks = st->entries[i].marks;
        unsigned n = st->entries[i].n_marks;
        for (unsigned k = 0; k < n; k++)
            if (k > 0 || marks[0] != last) recent_set_add(st->seen, marks[k], now);
        if (n) {
            last = marks[0];
            st->seen_last_us = now;
        }
    }
}

/* name, NUL-terminated into buf, cut at VNODE_NAME_MAX bytes on a UTF-8 boundary (the RED
 * labels' cut). */
static const char *cut_name(struct mstr name, char buf[VNODE_NAME_MAX + 1])
{
    uint32_t len = name.len;
    if (len > VNODE_NAME_MAX) {
        len = VNODE_NAME_MAX;
        while (len > 0 && ((unsigned char)name.ptr[len] & 0xc0) == 0x80) len--;
    }
    memcpy(buf, name.ptr, len);
    buf[len] = 0;
    return buf;
}

/* Counts an entry on its edge (its wait is over, or it could not wait). */
static int rpend_count(struct store *st, const struct rpend *e)
{
    if (e->has_client)
        return add_edge(st, e->client_bucket, e->caller_id, e->callee_id, CONN_PLAIN,
                        e->client_err, e->client_dur_us);
    return add_edge(st, e->server_bucket, e->caller_id, e->callee_id, e->conn, e->server_err,
                    e->server_dur_us);
}

static int undo_push(struct store *st, int32_t idx, const struct rpend *before)
{
    if (grow((void **)&st->rpend_undo, &st->cap_rpend_undo, st->n_rpend_undo + 1,
             sizeof *st->rpend_undo))
        return -ENOMEM;
    st->rpend_undo[st->n_rpend_undo].idx = idx;
    if (before) st->rpend_undo[st->n_rpend_undo].before = *before;
    else st->rpend_undo[st->n_rpend_undo].before.used = false;
    st->n_rpend_undo++;
    return 0;
}

/* Entries whose wait is over: counted on st->edges now (unless their spans count them),
 * removed from the map after the commit (rpend_commit). */
static int rpend_expire(struct store *st, int64_t now)
{
    st->n_rpend_expired = 0;
    const int64_t cutoff = now - st->wait_us;
    for (int32_t i = st->rpend.oldest; i >= 0 && st->rpend.e[i].added_us < cutoff;
         i = st->rpend.e[i].newer) {
        const struct rpend *e = &st->rpend.e[i];
        int rc = 0;
        if (!seen_any(st, e->marks, e->n_marks, e->added_us - st->wait_us)) rc = rpend_count(st, e);
        if (rc || (rc = grow((void **)&st->rpend_expired, &st->cap_rpend_expired,
                             st->n_rpend_expired + 1, sizeof *st->rpend_expired)))
            return rc;
        st->rpend_expired[st->n_rpend_expired++] = i;
    }
    return 0;
}

/* After a commit: the counted entries leave the map; this call's changes stay. */
static void rpend_commit(struct store *st)
{
    for (size_t i = 0; i < st->n_rpend_expired; i++) rpend_remove(&st->rpend, st->rpend_expired[i]);
    st->n_rpend_expired = 0;
    st->n_rpend_undo = 0;
}

/* After a rollback: the map as it was before the write call (newest change undone first). */
static void rpend_rollback(struct store *st)
{
    while (st->n_rpend_undo > 0) {
        const struct rpend_undo *u = &st->rpend_undo[--st->n_rpend_undo];
        if (!u->before.used) {
            rpend_remove(&st->rpend, u->idx);
        } else {
            struct rpend *e = &st->rpend.e[u->idx];
            int32_t hnext = e->hnext, older = e->older, newer = e->newer;
            *e = u->before; /* a join changes no key and no link */
            e->hnext = hnext;
            e->older = older;
            e->newer = newer;
        }
    }
    st->n_rpend_expired = 0;
}

/* The service-graph share of one access-log record (sid: its service): it joins the other
 * proxy's record of the same call, waits for it, or counts at once (no id, map full); nothing
 * when its request's spans are stored (they count it). Adds to st->edges / st->rpend. */
static int log_edge(struct store *st, const struct access_log *l, int64_t sid)
{
    enum alog_side side = access_log_graph_side(l);
    if (side == ALOG_SIDE_NONE) return 0;
    int64_t now = now_us(st);
    struct rpend t = {0};
    t.n_marks = (uint8_t)access_log_request_marks(l, t.marks);
    if (t.n_marks && seen_any(st, t.marks, t.n_marks, now - st->wait_us)) return 0;
    int rc;
    bool client = side == ALOG_SIDE_CLIENT;
    int64_t start_us = (int64_t)(l->time_unix_nano / 1000);
    int64_t bucket = floor_div(start_us, ROLLUP_FINE_S * 1000000LL) * ROLLUP_FINE_S;
    int64_t dur = l->duration_ms > 0 ? l->duration_ms * 1000 : 0;
    bool err = access_log_is_error(l);
    if (client) {
        char name[VNODE_NAME_MAX + 1];
        if ((rc = service_id(st, cut_name(access_log_callee(l), name), &t.callee_id))) return rc;
        t.caller_id = sid;
        t.has_client = true;
        t.client_err = err;
        t.client_bucket = bucket;
        t.client_dur_us = dur;
    } else {
        const struct mstr *src = &l->str[ALOG_SOURCE_WORKLOAD];
        t.callee_id = sid;
        t.conn = CONN_PLAIN;
        if (src->ptr && src->len) {
            char name[VNODE_NAME_MAX + 1];
            rc = service_id(st, cut_name(*src, name), &t.caller_id);
        } else {
            t.conn = CONN_VIRTUAL;
            rc = vnode_id(st, (struct mstr){"unknown", 7}, &t.caller_id);
        }
        if (rc) return rc;
        t.has_server = true;
        t.server_err = err;
        t.server_bucket = bucket;
        t.server_dur_us = dur;
    }
    if (!access_log_pair_key(l, &t.key)) return rpend_count(st, &t);
    int32_t w = rpend_find(&st->rpend, t.key, client, now - st->wait_us);
    if (w >= 0) { /* the other half waits: this record completes its call */
        struct rpend *e = &st->rpend.e[w];
        if ((rc = undo_push(st, w, e))) return rc;
        if (client) {
            e->caller_id = t.caller_id;
            e->has_client = true;
            e->client_err = t.client_err;
            e->client_bucket = t.client_bucket;
            e->client_dur_us = t.client_dur_us;
        } else {
            e->has_server = true;
            e->server_err = t.server_err;
            e->server_bucket = t.server_bucket;
            e->server_dur_us = t.server_dur_us;
        }
        for (unsigned i = 0; i < t.n_marks && e->n_marks < 4; i++) e->marks[e->n_marks++] = t.marks[i];
        return 0;
    }
    t.added_us = now;
    int32_t i = w == -1 ? rpend_add(&st->rpend, &t) : -1;
    if (i < 0) return rpend_count(st, &t); /* full (or a long chain): counted alone at once */
    return undo_push(st, i, NULL);
}

/* A record of a write call on its way into a block. */
struct log_ent {
    int64_t sid;
    int64_t time_us;
    const struct access_log *l;
};

static int log_ent_cmp(const void *x, const void *y)
{
    const struct log_ent *a = x, *b = y;
    if (a->sid != b->sid) return a->sid < b->sid ? -1 : 1;
    return (a->time_us > b->time_us) - (a->time_us < b->time_us);
}

/* The status classes of access_log_blocks.codes: bit 0 for no code (0 or absent), bit c/100
 * for 1xx..5xx, bit 6 for anything else. */
static unsigned code_class_bit(int64_t code)
{
    return code <= 0 ? 1u : code < 600 ? 1u << (code / 100) : 1u << 6;
}

/* Writes records ents[0..n) (one service, sorted by time) as one block row. */
static int write_log_block(struct store *st, const struct log_ent *ents, size_t n, int64_t minute)
{
    int rc = alog_block_start(&st->enc);
    int64_t errors = 0, min_dur = -1, max_dur = -1;
    unsigned codes = 0;
    size_t n_keys = 0;
    if (!rc) rc = grow((void **)&st->log_keys, &st->cap_log_keys, 2 * n, sizeof *st->log_keys);
    for (size_t i = 0; i < n && !rc; i++) {
        const struct access_log *l = ents[i].l;
        size_t off;
        if ((rc = alog_block_add(&st->enc, l, &off))) break;
        sample_log(st, st->enc.p + off, st->enc.len - off);
        if ((rc = log_edge(st, l, ents[i].sid))) break;
        errors += access_log_is_error(l);
        codes |= code_class_bit(l->response_code);
        if (l->duration_ms >= 0) {
            if (min_dur < 0 || l->duration_ms < min_dur) min_dur = l->duration_ms;
            if (l->duration_ms > max_dur) max_dur = l->duration_ms;
        }
        if (l->has_trace_id) st->log_keys[n_keys++] = trace_key_of(l->trace_id);
        const struct mstr *rid = &l->str[ALOG_REQUEST_ID];
        if (rid->ptr && rid->len) st->log_keys[n_keys++] = request_key_of(rid->ptr, rid->len);
    }
    if (rc) return rc;
    size_t bloom_len = n_keys ? alog_bloom_bytes(n_keys) : 0;
    st->bloom.len = 0;
    if (buf_reserve(&st->bloom, bloom_len + 1) != 0) return -ENOMEM;
    memset(st->bloom.p, 0, bloom_len);
    for (size_t i = 0; i < n_keys; i++)
        alog_bloom_add(st->bloom.p, bloom_len, st->log_keys[i]);
    size_t bound = ZSTD_compressBound(st->enc.len);
    st->comp.len = 0;
    if (buf_reserve(&st->comp, bound) != 0) return -ENOMEM;
    size_t clen = ZSTD_compress2(st->log_cctx, st->comp.p, bound, st->enc.p, st->enc.len);
    if (ZSTD_isError(clen)) {
        log_ratelimited(LOG_ERROR, "store-zstd", "store: compress: %s", ZSTD_getErrorName(clen));
        return -EIO;
    }
    sqlite3_stmt *s = st->stmt[W_LOG_INSERT];
    sqlite3_bind_int64(s, 1, minute);
    sqlite3_bind_int64(s, 2, ents[0].sid);
    sqlite3_bind_int64(s, 3, ents[0].time_us);
    sqlite3_bind_int64(s, 4, ents[n - 1].time_us);
    sqlite3_bind_int64(s, 5, (int64_t)n);
    sqlite3_bind_int64(s, 6, errors);
    sqlite3_bind_int64(s, 7, codes);
    sqlite3_bind_int64(s, 8, min_dur);
    sqlite3_bind_int64(s, 9, max_dur);
    sqlite3_bind_blob(s, 10, st->bloom.p, (int)bloom_len, SQLITE_STATIC);
    sqlite3_bind_blob(s, 11, st->comp.p, (int)clen, SQLITE_STATIC);
    return step_done(st, s, "insert access-log block");
}

/* Writes the access-log records of the batches (store_put_batches' transaction) in blocks and
 * adds their service-graph calls to st->edges (log_edge): the records are sorted by (service,
 * start time) and cut into blocks of one service, at most LOG_BLOCK_RECORDS records,
 * LOG_BLOCK_RAW encoded bytes and LOG_BLOCK_SPAN_US between the first and the last start. */
static int write_logs(struct store *st, struct span_batch *const *batches, size_t n, size_t total,
                      int64_t minute)
{
    int rc = grow((void **)&st->log_ents, &st->cap_log_ents, total, sizeof *st->log_ents);
    if (rc) return rc;
    size_t m = 0;
    for (size_t b = 0; b < n; b++) {
        for (uint32_t i = 0; i < batches[b]->n_logs; i++) {
            const struct access_log *l = &batches[b]->logs[i];
            const char *svc = l->str[ALOG_SERVICE].ptr && l->str[ALOG_SERVICE].len
                                  ? l->str[ALOG_SERVICE].ptr
                                  : "unknown_service";
            int64_t sid;
            if ((rc = service_id(st, svc, &sid))) return rc;
            st->log_ents[m++] = (struct log_ent){sid, (int64_t)(l->time_unix_nano / 1000), l};
        }
    }
    if (m > 1) qsort(st->log_ents, m, sizeof *st->log_ents, log_ent_cmp);
    size_t first = 0, raw = 0;
    for (size_t i = 0; i < m && !rc; i++) {
        const struct log_ent *e = &st->log_ents[i];
        /* Each record's encoding is a little over its strings; a close enough measure here. */
        size_t len = 64;
        for (int k = 0; k < ALOG_STR_COUNT; k++)
            len += e->l->str[k].len;
        if (i > first && (e->sid != st->log_ents[first].sid || i - first >= LOG_BLOCK_RECORDS ||
                          raw + len > LOG_BLOCK_RAW ||
                          e->time_us - st->log_ents[first].time_us > LOG_BLOCK_SPAN_US)) {
            rc = write_log_block(st, st->log_ents + first, i - first, minute);
            first = i;
            raw = 0;
        }
        raw += len;
    }
    if (!rc && m > first) rc = write_log_block(st, st->log_ents + first, m - first, minute);
    return rc;
}

/* ----- the trace index (DESIGN) ------------------------------------------------------------ */

/* Entries a write transaction merges into trace_index: twice as many as it adds (a run of 8 s
 * goes in ~4 s whatever the rate, and each commit grows in proportion to its own size, ~1 µs per
 * key against ~15 µs per trace it stores), at least TIX_PIECE_MIN; TIX_PIECE when it adds none
 * (retention's transactions, about once a second). A fixed 8,192 added ~8 ms to every commit
 * while a run went in, small commits at half rate included. */
#define TIX_PIECE_MIN 256
#define TIX_PIECE 8192
/* Retention sweeps trace_index in this many key ranges, one per step (~1/s). */
#define TIX_SWEEP_RANGES 256

/* Inserts n trace_index rows (borrows e). */
static int insert_trace_index(struct store *st, const struct tpend_entry *e, size_t n)
{
    sqlite3_stmt *s = st->stmt[W_TIX_INSERT];
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(s, 1, e[i].key);
        sqlite3_bind_int64(s, 2, e[i].chunk);
        int rc = step_done(st, s, "insert trace index");
        if (rc) return rc;
    }
    return 0;
}

/* The trace index's part of a write transaction, last before its COMMIT: the next piece of a
 * sealed run goes into trace_index, trace_index_from moves when it changed, and this
 * transaction's new chunks (st->tp_new) are published to tpend, so that no reader whose snapshot
 * has them misses them (trace_index_rolled_back takes them back). */
static int merge_trace_index(struct store *st, int64_t now, int64_t first_new_chunk)
{
    const struct tpend_entry *piece;
    size_t n;
    int64_t from;
    st->tp_piece = 0;
    size_t max = st->n_tp_new ? 2 * st->n_tp_new : TIX_PIECE;
    tpend_plan(st->tpend, now, max < TIX_PIECE_MIN ? TIX_PIECE_MIN : max, &piece, &n, &from);
    int rc = insert_trace_index(st, piece, n);
    if (rc) return rc;
    st->tp_piece = n;
    st->tp_from_new = from < first_new_chunk ? from : first_new_chunk;
    if (st->tp_from_new != st->tp_from) {
        sqlite3_bind_int64(st->stmt[W_TIX_FROM], 1, st->tp_from_new);
        if ((rc = step_done(st, st->stmt[W_TIX_FROM], "trace index mark"))) return rc;
    }
    rc = tpend_add(st->tpend, st->tp_new, st->n_tp_new, now);
    if (rc == 0) {
        st->tp_added = st->n_tp_new;
        return 0;
    }
    if (rc != -E2BIG) return rc;
    /* Memory full of entries waiting (a backlog of huge write calls): this call's rows go in
     * now, as the index SQLite kept used to, one random page per trace. */
    return insert_trace_index(st, st->tp_new, st->n_tp_new);
}

/* After the commit of a transaction that ran merge_trace_index. */
static void trace_index_committed(struct store *st)
{
    tpend_merged(st->tpend, st->tp_piece);
    st->tp_piece = 0;
    st->tp_from = st->tp_from_new;
    st->n_tp_new = st->tp_added = 0;
}

/* After a failed write transaction. */
static void trace_index_rolled_back(struct store *st)
{
    tpend_unadd(st->tpend, st->tp_added);
    st->tp_piece = 0;
    st->n_tp_new = st->tp_added = 0;
}

/* Retention: deletes the trace_index rows of deleted chunks in one of TIX_SWEEP_RANGES key
 * ranges (chunks go oldest id first, so "deleted" is "below the smallest id left"). A full
 * sweep takes TIX_SWEEP_RANGES steps; a row left over until then only costs a failed lookup. */
static int sweep_trace_index(struct store *st)
{
    int64_t min_chunk;
    int rc = step_int(st, st->stmt[W_MIN_CHUNK], &min_chunk, "smallest chunk id");
    if (rc) return rc;
    if (min_chunk == 0) min_chunk = st->next_chunk_id; /* no chunks */
    uint64_t r = st->tix_sweep++ % TIX_SWEEP_RANGES, top = 1ULL << 63;
    uint64_t lo = r << 56, hi = lo | ((1ULL << 56) - 1); /* in key order: key ^ top unsigned */
    sqlite3_stmt *s = st->stmt[W_TIX_SWEEP];
    sqlite3_bind_int64(s, 1, (int64_t)(lo ^ top));
    sqlite3_bind_int64(s, 2, (int64_t)(hi ^ top));
    sqlite3_bind_int64(s, 3, min_chunk);
    return step_done(st, s, "sweep trace index");
}

/* store_open: writes the trace_index rows of the chunks from trace_index_from on (committed
 * after the last merge before the process stopped), in key order, in one transaction. At most
 * the lag of one run (~8 s of traces, or TP_LIVE_MAX entries), and nothing held in memory. */
static int open_trace_index(struct store *st)
{
    st->tpend = tpend_create();
    if (!st->tpend) return -ENOMEM;
    int rc = query_int(st->db, "SELECT value FROM store_state WHERE name = 'trace_index_from'",
                       &st->tp_from);
    if (rc) return rc;
    if (st->tp_from >= st->next_chunk_id) return 0;
    char sql[320];
    snprintf(sql, sizeof sql,
             "BEGIN IMMEDIATE;"
             "INSERT OR IGNORE INTO trace_index SELECT trace_key, id FROM chunks WHERE id >= %lld"
             " ORDER BY trace_key, id;"
             "UPDATE store_state SET value = %lld WHERE name = 'trace_index_from';"
             "COMMIT",
             (long long)st->tp_from, (long long)st->next_chunk_id);
    if ((rc = exec_sql(st->db, sql, "write the trace index tail"))) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    log_msg(LOG_INFO, "store: trace index rows written for chunks %lld to %lld",
            (long long)st->tp_from, (long long)st->next_chunk_id - 1);
    st->tp_from = st->next_chunk_id;
    return 0;
}

int store_put_batches(struct store *st, struct span_batch *const *batches, size_t n)
{
    size_t total = 0, total_logs = 0;
    for (size_t i = 0; i < n; i++) {
        total += batches[i]->n_spans;
        total_logs += batches[i]->n_logs;
    }
    if (total == 0 && total_logs == 0) {
        atomic_fetch_add(&st->batches_committed, n);
        return 0;
    }
    if (total > INT32_MAX / 4) return -E2BIG; /* int32 indices in the parent lookup */
    int rc = total ? reserve_scratch(st, total) : 0;
    if (rc) return rc;
    int64_t now = now_us(st);
    int64_t chunk_id0 = st->next_chunk_id;
    uint64_t chunks = 0;

    memset(st->res_cache, 0, sizeof st->res_cache); /* resources of earlier calls are gone */
    rc = step_done(st, st->stmt[W_BEGIN], "begin");
    if (rc) return rc;
    size_t k = 0;
    for (size_t b = 0; b < n; b++) {
        for (uint32_t i = 0; i < batches[b]->n_spans; i++, k++) {
            const struct span *s = &batches[b]->spans[i];
            struct put_entry *e = &st->entries[k];
            memset(e, 0, sizeof *e);
            e->span = s;
            e->prepared = batches[b]->prepared != NULL;
            e->start_us = (int64_t)(s->start_unix_nano / 1000);
            e->dur_us = s->end_unix_nano > s->start_unix_nano
                            ? (int64_t)((s->end_unix_nano - s->start_unix_nano) / 1000)
                            : 0;
            e->bucket = floor_div(e->start_us, ROLLUP_FINE_S * 1000000LL) * ROLLUP_FINE_S;
            e->error = span_batch_is_error(batches[b], i);
            e->n_marks = (uint8_t)span_batch_request_marks(batches[b], i, e->marks);
            e->shared_server = s->kind == SPAN_KIND_SERVER && span_shared(s);
            if ((rc = span_service_id(st, s, &e->service_id))) goto fail;
            if ((rc = operation_id(st, e->service_id, s, &e->op_id))) goto fail;
        }
    }
    int64_t minute = floor_div(now, US_PER_MINUTE);
    if (total) {
        mark_spans(st, total, now);
        if ((rc = find_edges(st, total, now))) goto fail;
        if ((rc = write_rows(st, total, &chunks))) goto fail;
        if ((rc = write_prepared(st, batches, n, &chunks))) goto fail;
    } else {
        edges_reset(st); /* and no pending-map changes planned (apply_pending) */
        st->n_adds = st->n_removes = 0;
    }
    /* Records add their calls to the spans' edges: one upsert per (bucket, edge) for both;
     * first the waiting records whose wait is over. */
    if ((rc = rpend_expire(st, now))) goto fail;
    if (total_logs && (rc = write_logs(st, batches, n, total_logs, minute))) goto fail;
    if (st->n_edges && (rc = write_edges(st, ROLLUP_FINE_S))) goto fail;
    if (minute != st->mark_minute) {
        sqlite3_stmt *m = st->stmt[W_MARK_INSERT];
        sqlite3_bind_int64(m, 1, minute);
        sqlite3_bind_int64(m, 2, chunk_id0);
        if ((rc = step_done(st, m, "insert receive mark"))) goto fail;
    }
    if ((rc = merge_trace_index(st, now, chunk_id0))) goto fail;
    if ((rc = step_done(st, st->stmt[W_COMMIT], "commit"))) goto fail;
    trace_index_committed(st);
    st->mark_minute = minute;
    apply_pending(st, now);
    rpend_commit(st);
    maybe_train(st, false);
    atomic_fetch_add(&st->spans_stored, total);
    atomic_fetch_add(&st->logs_stored, total_logs);
    atomic_fetch_add(&st->chunks_stored, chunks);
    atomic_fetch_add(&st->batches_committed, n);
    update_db_bytes(st);
    return 0;

fail:
    if (sqlite3_get_autocommit(st->db) == 0) step_done(st, st->stmt[W_ROLLBACK], "rollback");
    forget_uncommitted(st);
    rpend_rollback(st);
    trace_index_rolled_back(st);
    /* next_chunk_id stays past the ids of the failed call: a reader may have seen them among the
     * pending trace index entries, and must not find them on other traces' chunks later. */
    update_db_bytes(st);
    return rc;
}

int store_flush_graph(struct store *st)
{
    int64_t now = now_us(st), cutoff = now - st->wait_us;
    bool halves = st->pending.oldest >= 0 && st->pending.e[st->pending.oldest].added_us < cutoff;
    bool records = st->rpend.oldest >= 0 && st->rpend.e[st->rpend.oldest].added_us < cutoff;
    if (!halves && !records) return 0;
    edges_reset(st);
    st->n_adds = st->n_removes = 0;
    int rc = step_done(st, st->stmt[W_BEGIN], "begin");
    if (rc) return rc;
    if ((rc = expire_halves(st, cutoff)) || (rc = rpend_expire(st, now))) goto fail;
    if (st->n_edges && (rc = write_edges(st, ROLLUP_FINE_S))) goto fail;
    if ((rc = step_done(st, st->stmt[W_COMMIT], "commit"))) goto fail;
    apply_pending(st, now);
    rpend_commit(st);
    return 0;
fail:
    if (sqlite3_get_autocommit(st->db) == 0) step_done(st, st->stmt[W_ROLLBACK], "rollback");
    forget_uncommitted(st);
    rpend_rollback(st);
    return rc;
}

/* ----- retention --------------------------------------------------------------------------- */

/* Deletes up to max chunks with id < before; adds their spans to *spans, highest id to *last. */
static int delete_chunks(struct store *st, int64_t before, unsigned max, uint64_t *spans,
                         int64_t *last)
{
    sqlite3_stmt *s = st->stmt[W_DEL_CHUNKS_BEFORE];
    sqlite3_bind_int64(s, 1, before);
    sqlite3_bind_int64(s, 2, max);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        if (id > *last) *last = id;
        *spans += (uint64_t)sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : store_sqlite_err(st->db, rc, "delete chunks");
}

static int delete_before(struct store *st, int which, int64_t before, unsigned max,
                         const char *what)
{
    sqlite3_stmt *s = st->stmt[which];
    sqlite3_bind_int64(s, 1, before);
    if (max) sqlite3_bind_int64(s, 2, max);
    return step_done(st, s, what);
}

/* Deletes up to max search rows that started before before_us. The rows are keyed (service,
 * start), so each service's old rows are one range: services in id order from st->index_cursor
 * on, where the previous call ran out of budget (so that no service waits behind a bigger one),
 * then from the first again. */
static int delete_index(struct store *st, int64_t before_us, unsigned max)
{
    /* A sweep seeks once per service: at most one a minute (retention's granularity) once a
     * sweep found nothing older left, unless a late row started before the floor. */
    if (st->index_floor_us != INT64_MIN && before_us < st->index_floor_us + US_PER_MINUTE)
        return 0;
    sqlite3_stmt *svc = st->stmt[W_INDEX_SERVICES], *del = st->stmt[W_DEL_INDEX_BEFORE];
    int64_t cursor = st->index_cursor;
    unsigned left = max;
    /* Pass 0: the services after the cursor; pass 1: those up to it. */
    for (int pass = 0; pass < 2 && left > 0 && !(pass == 1 && cursor == 0); pass++) {
        sqlite3_bind_int64(svc, 1, pass == 0 ? cursor : 0);
        int rc;
        while ((rc = sqlite3_step(svc)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(svc, 0);
            if (pass == 1 && id > cursor) break;
            sqlite3_bind_int64(del, 1, id);
            sqlite3_bind_int64(del, 2, before_us);
            sqlite3_bind_int64(del, 3, left);
            if ((rc = step_done(st, del, "delete index"))) break;
            unsigned n = (unsigned)sqlite3_changes(st->db);
            left = n < left ? left - n : 0;
            if (!left) {
                st->index_cursor = id - 1; /* out of budget: this service first next time */
                break;
            }
        }
        sqlite3_reset(svc);
        if (rc > 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
            return store_sqlite_err(st->db, rc, "index services");
        if (rc < 0) return rc;
    }
    if (left) { /* every service swept: nothing older is left */
        st->index_cursor = 0;
        st->index_floor_us = before_us;
    }
    return 0;
}

/* Deletes access-log blocks with statement which (W_DEL_BLOCKS_*: ?1 before, ?2 max when
 * max), adding the records they held to *records. */
static int delete_blocks(struct store *st, int which, int64_t before, unsigned max,
                         uint64_t *records)
{
    sqlite3_stmt *s = st->stmt[which];
    sqlite3_bind_int64(s, 1, before);
    if (max) sqlite3_bind_int64(s, 2, max);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        *records += (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : store_sqlite_err(st->db, rc, "delete access-log blocks");
}

/* Merges up to max fine (10 s) rollup rows whose bucket started ROLLUP_DOWNSAMPLE_AFTER_S
 * before now into 1 min rows, and deletes them, in the caller's transaction. */
static int downsample(struct store *st, int64_t now, unsigned max)
{
    int64_t before = floor_div(now, 1000000) - ROLLUP_DOWNSAMPLE_AFTER_S;
    edges_reset(st);
    sqlite3_stmt *s = st->stmt[W_DOWN_SELECT];
    sqlite3_bind_int64(s, 1, before);
    sqlite3_bind_int64(s, 2, max);
    int rc = 0, step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct edge *e = edge_get(st, floor_div(sqlite3_column_int64(s, 0), ROLLUP_COARSE_S) *
                                          ROLLUP_COARSE_S,
                                  sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2),
                                  sqlite3_column_int(s, 3));
        if (!e) {
            rc = -ENOMEM;
            break;
        }
        e->calls += (uint64_t)sqlite3_column_int64(s, 4);
        e->errors += (uint64_t)sqlite3_column_int64(s, 5);
        e->dur_sum_us += sqlite3_column_int64(s, 6);
        const void *blob = sqlite3_column_blob(s, 7);
        if (blob) (void)hist_decode_add(blob, (size_t)sqlite3_column_bytes(s, 7), e->hist);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc) return rc;
    if (step != SQLITE_DONE) return store_sqlite_err(st->db, step, "downsample rollups");
    if (!st->n_edges) return 0;
    if ((rc = write_edges(st, ROLLUP_COARSE_S))) return rc;
    return delete_before(st, W_DOWN_DELETE, before, max, "delete downsampled rollups");
}

int store_retention_step(struct store *st, int64_t now, unsigned max_rows, uint64_t *deleted)
{
    *deleted = 0;
    if (!max_rows) max_rows = 1000;
    uint64_t spans = 0, logs = 0;
    int64_t last = 0;
    int rc = step_done(st, st->stmt[W_BEGIN], "begin");
    if (rc) return rc;
    if (st->opts.retention_us > 0) {
        int64_t cutoff_minute = floor_div(now - st->opts.retention_us, US_PER_MINUTE);
        /* Rows before the first mark at or after the cutoff minute were received before it. */
        sqlite3_stmt *b = st->stmt[W_MARK_BOUNDARY];
        sqlite3_bind_int64(b, 1, cutoff_minute);
        int64_t chunk_before = st->next_chunk_id;
        rc = sqlite3_step(b);
        if (rc == SQLITE_ROW) {
            chunk_before = sqlite3_column_int64(b, 0);
            rc = SQLITE_DONE;
        }
        sqlite3_reset(b);
        sqlite3_clear_bindings(b);
        if (rc != SQLITE_DONE) {
            rc = store_sqlite_err(st->db, rc, "retention boundary");
            goto fail;
        }
        if ((rc = delete_chunks(st, chunk_before, max_rows, &spans, &last)) ||
            (rc = delete_index(st, now - st->opts.retention_us, max_rows)) ||
            (rc = delete_before(st, W_DEL_DEPS_BEFORE,
                                floor_div(now - st->opts.retention_us, 1000000), max_rows,
                                "delete rollups")) ||
            (rc = delete_before(st, W_DEL_MARKS_BEFORE, cutoff_minute, 0, "delete marks")) ||
            (rc = delete_before(st, W_DEL_LOGS_BEFORE, cutoff_minute, max_rows,
                                "delete access logs")))
            goto fail;
        logs += (uint64_t)sqlite3_changes(st->db);
        if ((rc = delete_blocks(st, W_DEL_BLOCKS_BEFORE, cutoff_minute, LOG_BLOCK_STEP(max_rows),
                                &logs)))
            goto fail;
    }
    if ((rc = downsample(st, now, max_rows))) goto fail;
    if ((rc = sweep_trace_index(st))) goto fail;
    if (st->opts.max_db_bytes > 0 && spans == 0) {
        int64_t pages = 0, free_pages = 0;
        if ((rc = step_int(st, st->stmt[W_PAGE_COUNT], &pages, "page_count")) ||
            (rc = step_int(st, st->stmt[W_FREELIST_COUNT], &free_pages, "freelist_count")))
            goto fail;
        if ((pages - free_pages) * st->page_size > st->opts.max_db_bytes) {
            /* Access logs go oldest first too, max_rows per step beside the chunks. */
            if ((rc = delete_before(st, W_DEL_LOGS_OLDEST, max_rows, 0, "delete access logs")))
                goto fail;
            logs += (uint64_t)sqlite3_changes(st->db);
            if ((rc = delete_blocks(st, W_DEL_BLOCKS_OLDEST, LOG_BLOCK_STEP(max_rows), 0, &logs)))
                goto fail;
            /* Oldest chunks go first; search rows that started before the receive minute of
             * the last chunk deleted go with them (rows left pointing at deleted chunks only
             * cost a failed lookup until then). */
            if ((rc = delete_chunks(st, INT64_MAX, max_rows, &spans, &last))) goto fail;
            if (last > 0) {
                int64_t minute = 0;
                sqlite3_bind_int64(st->stmt[W_MARK_FOR_CHUNK], 1, last);
                if ((rc = step_int(st, st->stmt[W_MARK_FOR_CHUNK], &minute, "mark"))) goto fail;
                if (minute > 0 && (rc = delete_index(st, minute * US_PER_MINUTE, max_rows)))
                    goto fail;
            }
        }
    }
    if (spans) {
        sqlite3_bind_int64(st->stmt[W_ID_FLOOR], 1, st->next_chunk_id);
        if ((rc = step_done(st, st->stmt[W_ID_FLOOR], "chunk id floor"))) goto fail;
    }
    /* Merges trace index entries when no write call comes (an idle daemon). */
    if ((rc = merge_trace_index(st, now_us(st), st->next_chunk_id))) goto fail;
    if ((rc = step_done(st, st->stmt[W_COMMIT], "commit"))) goto fail;
    trace_index_committed(st);
    *deleted = spans + logs;
    atomic_fetch_add(&st->spans_deleted, spans);
    atomic_fetch_add(&st->logs_deleted, logs);
    update_db_bytes(st);
    return 0;

fail:
    if (sqlite3_get_autocommit(st->db) == 0) step_done(st, st->stmt[W_ROLLBACK], "rollback");
    forget_uncommitted(st);
    trace_index_rolled_back(st);
    return rc;
}

void store_get_stats(struct store *st, struct store_stats *out)
{
    out->spans_stored = atomic_load(&st->spans_stored);
    out->traces_chunks_stored = atomic_load(&st->chunks_stored);
    out->spans_deleted = atomic_load(&st->spans_deleted);
    out->batches_committed = atomic_load(&st->batches_committed);
    out->logs_stored = atomic_load(&st->logs_stored);
    out->logs_deleted = atomic_load(&st->logs_deleted);
    out->db_bytes = atomic_load(&st->db_bytes);
    out->wal_restarts = atomic_load(&st->wal_restarts);
    out->trace_index_pending = tpend_count(st->tpend);
    out->writer_checkpoints = atomic_load(&st->writer_ckpts);
    out->writer_checkpoint_us = atomic_load(&st->writer_ckpt_us);
}

/* ----- test hooks -------------------------------------------------------------------------- */

void store_test_set_clock(struct store *st, int64_t now)
{
    st->test_now_us = now;
}

void store_test_wait_dicts(struct store *st)
{
    maybe_train(st, true);
}

void store_test_set_dict_threshold(struct store *st, size_t bytes)
{
    st->dict_threshold = bytes;
}

int store_test_set_max_pages(struct store *st, unsigned pages)
{
    sqlite3_stmt *s = NULL;
    /* A PRAGMA takes no bound parameters; the number is formatted from an unsigned. */
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %u", pages);
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        }
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? 0 : store_sqlite_err(st->db, rc, "max_page_count");
}
