/*
 * store.c: the trace store's write side: opening and migrating the database, storing batches of
 * spans (chunks, search index, dictionaries, dependency rollups), retention, statistics.
 *
 * Schema (PRAGMA user_version 1; migrate() brings older files forward):
 *
 *   services(id, name UNIQUE)                       service dictionary
 *   operations(id, service_id, name, kind)          operation dictionary, UNIQUE(service,name,kind)
 *   chunks(id, trace_key, n_spans, data)            one row per trace per write call: the zstd-
 *                                                   compressed codec.c encoding of its spans;
 *                                                   index chunks(trace_key)
 *   span_index(id, trace_key, service_id, op_id,    one narrow search row per (trace, service,
 *              start_us, min_dur_us, max_dur_us,    operation+kind) per write call, grouping spans
 *              error)                               whose starts lie within INDEX_GROUP_SPREAD_US;
 *                                                   index (service_id, start_us) and a partial one
 *                                                   on error rows
 *   dep_rollup(minute, parent_id, child_id, calls,  per-minute service call counts
 *              errors)
 *   receive_marks(minute, first_chunk, first_index) first chunk / index row id written in each
 *                                                   receive-time minute
 *   dicts(id, data)                                 zstd dictionaries, id = the dictionary id
 *                                                   that zstd records in each frame
 *
 * Compression dictionary: a chunk is small (one trace of one write call, often a few KiB), so
 * on its own zstd cannot exploit what chunks share (attribute keys, resources, service and
 * operation names). Until the database has a dictionary, the writer keeps the raw encodings of
 * the first chunks as samples (DICT_SAMPLE_BYTES); then it trains a dictionary once
 * (ZDICT_trainFromBuffer, a one-off stall of the writer well under a second), commits it to
 * dicts in its own transaction, and compresses every later chunk with it. Readers find the
 * dictionary through the id in the frame header and cache it per connection. Chunks written
 * before the dictionary stay readable without it.
 *
 * trace_key is the last 8 bytes of the trace id (its random low half); readers check the full id
 * after decoding.
 * Chunk and index ids are assigned by the writer from counters that only grow, so rowid order is
 * receive order and retention deletes rowid ranges found through receive_marks, without a time
 * index on the big tables. Retention is therefore by RECEIVE time (a span that arrives late
 * lives its full retention), with minute granularity: rows are deleted up to one minute after
 * they fall out of the retention. Dependency rollups are trimmed by their span-time minute.
 * The size bound (max_db_bytes) is checked against used pages ((page_count - freelist_count)
 * * page_size): SQLite reuses freed pages, so the file stays near its high-water mark instead
 * of shrinking.
 *
 * DESIGN (threads):
 *  - One writer thread calls store_put_batches, store_retention_step and the test hooks. It alone
 *    touches st->db, its prepared statements, the zstd compression context, the scratch
 *    buffers, the service/operation caches, the pending dependency map and the id counters; none
 *    of these is locked.
 *  - Any thread calls the read functions (store_read.c). They use only st->pool, whose
 *    connections are read-only and checked out under the pool's mutex; WAL lets them read a
 *    consistent snapshot while the writer commits.
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
#include <sys/stat.h>
#include <time.h>
#include <zdict.h>
#include <zstd.h>

#define SCHEMA_VERSION 1
/* zstd level 1: chunks are small (one trace of one write call), and level 1 already removes
 * the repeated attribute keys and resources; higher levels cost writer CPU for a few percent. */
#define STORE_ZSTD_LEVEL 1
/* Cross-batch dependency pairing (Tempo's service-graph processor): a half waits this long for
 * its other half, and at most this many halves wait (about 80 bytes each). */
#define PENDING_TTL_US (10 * 1000000LL)
#define PENDING_CAP 100000u
#define PENDING_BUCKETS 131072u /* power of two above PENDING_CAP */
/* The dictionary caches are flushed when they grow past this (a runaway cardinality of span
 * names must not grow the writer without bound; a flush only costs re-lookups). */
#define INTERN_MAX 262144u
/* Dictionary training: this much sample input (raw chunk encodings), at most this many
 * samples, for a dictionary of DICT_BYTES (zstd's guidance: about 100x the dictionary). */
#define DICT_SAMPLE_BYTES (4u << 20)
#define DICT_MAX_SAMPLES 20000u
#define DICT_BYTES (64u << 10)

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

/* Interning cache: key bytes -> database id. Open addressing, no deletion (only a full clear). */
struct intern_ent {
    uint64_t hash;
    char *key; /* NULL = empty slot */
    uint32_t klen;
    int64_t id;
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

static int64_t intern_get(const struct intern *m, const void *key, uint32_t klen, uint64_t h)
{
    if (!m->cap) return 0;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const struct intern_ent *e = &m->slots[i];
        if (!e->key) return 0;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) return e->id;
    }
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
    bool error;
    bool used;
    int64_t service_id;
    int64_t minute;
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

static void pending_expire(struct pending *p, int64_t now_us)
{
    while (p->oldest >= 0 && p->e[p->oldest].added_us < now_us - PENDING_TTL_US)
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
    W_DEP_UPSERT,
    W_PAGE_COUNT,
    W_FREELIST_COUNT,
    W_MARK_BOUNDARY,
    W_DEL_CHUNKS_BEFORE,
    W_DEL_INDEX_BEFORE,
    W_DEL_DEPS_BEFORE,
    W_DEL_MARKS_BEFORE,
    W_MARK_FOR_CHUNK,
    W_DICT_INSERT,
    W_DICT_LATEST,
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
    [W_INDEX_INSERT] = "INSERT INTO span_index(id, trace_key, service_id, op_id, start_us, "
                       "min_dur_us, max_dur_us, error) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [W_MARK_INSERT] = "INSERT OR IGNORE INTO receive_marks(minute, first_chunk, first_index) "
                      "VALUES(?1, ?2, ?3)",
    [W_DEP_UPSERT] = "INSERT INTO dep_rollup(minute, parent_id, child_id, calls, errors) "
                     "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(minute, parent_id, child_id) DO "
                     "UPDATE SET calls = calls + excluded.calls, errors = errors + excluded.errors",
    [W_PAGE_COUNT] = "PRAGMA page_count",
    [W_FREELIST_COUNT] = "PRAGMA freelist_count",
    [W_MARK_BOUNDARY] = "SELECT first_chunk, first_index FROM receive_marks WHERE minute >= ?1 "
                        "ORDER BY minute LIMIT 1",
    [W_DEL_CHUNKS_BEFORE] = "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks WHERE id < ?1 "
                            "ORDER BY id LIMIT ?2) RETURNING id, n_spans",
    [W_DEL_INDEX_BEFORE] = "DELETE FROM span_index WHERE id IN (SELECT id FROM span_index WHERE "
                           "id < ?1 ORDER BY id LIMIT ?2)",
    [W_DEL_DEPS_BEFORE] = "DELETE FROM dep_rollup WHERE (minute, parent_id, child_id) IN (SELECT "
                          "minute, parent_id, child_id FROM dep_rollup WHERE minute < ?1 ORDER BY "
                          "minute LIMIT ?2)",
    [W_DEL_MARKS_BEFORE] = "DELETE FROM receive_marks WHERE minute < ?1",
    [W_MARK_FOR_CHUNK] = "SELECT first_index FROM receive_marks WHERE first_chunk <= ?1 "
                         "ORDER BY minute DESC LIMIT 1",
    [W_DICT_INSERT] = "INSERT INTO dicts(id, data) VALUES(?1, ?2)",
    [W_DICT_LATEST] = "SELECT data FROM dicts ORDER BY rowid DESC LIMIT 1",
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

/* One span of a write call, with what the writer derives from it. */
struct put_entry {
    const struct span *span;
    int64_t service_id;
    int64_t op_id;
    int64_t start_us;
    int64_t dur_us;
    int64_t minute; /* span-time minute, for dependency rollups */
    bool error;
    bool parent_in_call; /* its parent span is in the same call */
    bool child_edge;     /* a child in the same call with another service counted the edge */
};

struct edge {
    int64_t minute;
    int64_t parent_id;
    int64_t child_id;
    uint64_t calls;
    uint64_t errors;
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
    /* Scratch reused by every write call (grown, never shrunk). */
    struct put_entry *entries;
    struct put_entry **order;
    const struct span **chunk_spans;
    int32_t *slots; /* parent lookup: open addressing over entries */
    size_t cap_entries, cap_slots;
    struct edge *edges;
    size_t n_edges, cap_edges;
    struct pend *pend_adds;
    int32_t *pend_removes;
    size_t n_adds, cap_pend, n_removes, cap_removes;
    int64_t next_chunk_id;
    int64_t next_index_id;
    int64_t mark_minute; /* receive minute of the last mark written; -1 = unknown */
    int64_t test_now_us;
    ZSTD_CDict *cdict;      /* NULL until the database has a dictionary */
    struct buf samples;     /* raw chunk encodings kept for training */
    size_t *sample_sizes;
    size_t n_samples, cap_samples;
    size_t dict_threshold;  /* sample bytes that trigger training (DICT_SAMPLE_BYTES) */
    bool dict_failed;       /* training failed once: do not retry in this process */
    struct read_pool *pool;
    _Atomic uint64_t spans_stored;
    _Atomic uint64_t chunks_stored;
    _Atomic uint64_t spans_deleted;
    _Atomic uint64_t batches_committed;
    _Atomic int64_t db_bytes;
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

static int64_t now_us(const struct store *st)
{
    if (st->test_now_us) return st->test_now_us;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
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
    if (version < 1) {
        rc = exec_sql(db, "BEGIN IMMEDIATE", "migrate");
        if (!rc) rc = exec_sql(db, schema_v1, "create schema v1");
        if (!rc) rc = exec_sql(db, "PRAGMA user_version = 1", "migrate");
        if (!rc) rc = exec_sql(db, "COMMIT", "migrate");
        if (rc) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        log_msg(LOG_INFO, "store: created schema version 1");
    }
    /* Future versions: if (version < 2) { ALTER ...; PRAGMA user_version = 2 } */
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
    if (ZSTD_isError(ZSTD_CCtx_refCDict(st->cctx, cd))) {
        ZSTD_freeCDict(cd);
        return -EIO;
    }
    ZSTD_freeCDict(st->cdict);
    st->cdict = cd;
    buf_free(&st->samples);
    st->n_samples = 0;
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

/* Keeps a raw chunk encoding as a training sample; trains, stores and starts using a
 * dictionary once there are enough. Runs outside the write transaction (the dictionary must
 * be committed before any chunk uses it). Failures only mean no dictionary. */
static void sample_chunk(struct store *st, const uint8_t *raw, size_t len)
{
    if (st->cdict || st->dict_failed) return;
    if (st->n_samples < DICT_MAX_SAMPLES && buf_reserve(&st->samples, len) == 0 &&
        grow((void **)&st->sample_sizes, &st->cap_samples, st->n_samples + 1,
             sizeof *st->sample_sizes) == 0) {
        memcpy(st->samples.p + st->samples.len, raw, len);
        st->samples.len += len;
        st->sample_sizes[st->n_samples++] = len;
    }
}

static void maybe_train_dict(struct store *st)
{
    if (st->cdict || st->dict_failed) return;
    if (st->samples.len < st->dict_threshold && st->n_samples < DICT_MAX_SAMPLES) return;
    void *dict = malloc(DICT_BYTES);
    size_t len = dict ? ZDICT_trainFromBuffer(dict, DICT_BYTES, st->samples.p, st->sample_sizes,
                                              (unsigned)st->n_samples)
                      : 0;
    if (!dict || ZDICT_isError(len)) {
        log_msg(LOG_WARN, "store: no compression dictionary: %s",
                dict ? ZDICT_getErrorName(len) : "out of memory");
        st->dict_failed = true;
        goto done;
    }
    unsigned id = ZDICT_getDictID(dict, len);
    sqlite3_stmt *s = st->stmt[W_DICT_INSERT];
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_blob(s, 2, dict, (int)len, SQLITE_STATIC);
    if (step_done(st, s, "store dictionary") != 0) { /* autocommit: its own transaction */
        st->dict_failed = true;
        goto done;
    }
    if (use_dict(st, dict, len) != 0) st->dict_failed = true;
    else log_msg(LOG_INFO, "store: compression dictionary %u (%zu bytes) from %zu samples", id,
                 len, st->n_samples);
done:
    free(dict);
    buf_free(&st->samples);
    st->n_samples = 0;
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
                 "PRAGMA cache_size = -65536; PRAGMA foreign_keys = OFF;"
                 /* Checkpoint every ~16 MiB of WAL instead of 4 MiB: fewer, larger
                  * checkpoints copy each hot page once instead of several times. */
                 "PRAGMA wal_autocheckpoint = 4096",
                 "pragmas") != 0)
        goto fail;
    if (migrate(st->db) != 0) goto fail;
    if (query_int(st->db, "PRAGMA page_size", &st->page_size) != 0) goto fail;
    for (int i = 0; i < W_COUNT; i++) {
        rc = sqlite3_prepare_v3(st->db, writer_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                                NULL);
        if (rc != SQLITE_OK) {
            log_msg(LOG_ERROR, "store: prepare \"%s\": %s", writer_sql[i], sqlite3_errmsg(st->db));
            goto fail;
        }
    }
    int64_t a = 0, b = 0;
    if (query_int(st->db, "SELECT coalesce(max(id), 0) FROM chunks", &a) != 0 ||
        query_int(st->db, "SELECT coalesce(max(first_chunk), 0) FROM receive_marks", &b) != 0)
        goto fail;
    st->next_chunk_id = (a > b ? a : b) + 1;
    if (query_int(st->db, "SELECT coalesce(max(id), 0) FROM span_index", &a) != 0 ||
        query_int(st->db, "SELECT coalesce(max(first_index), 0) FROM receive_marks", &b) != 0)
        goto fail;
    st->next_index_id = (a > b ? a : b) + 1;

    st->cctx = ZSTD_createCCtx();
    if (!st->cctx) goto oom;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_compressionLevel, STORE_ZSTD_LEVEL)))
        goto fail;
    st->dict_threshold = DICT_SAMPLE_BYTES;
    if (load_dict(st) != 0) goto fail;
    if (pending_init(&st->pending) != 0) goto oom;
    st->pool = read_pool_create(st->path, st->opts.read_pool);
    if (!st->pool) goto oom;
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
    read_pool_destroy(st->pool);
    for (int i = 0; i < W_COUNT; i++) sqlite3_finalize(st->stmt[i]);
    if (st->db) {
        /* A clean close checkpoints and removes the WAL; a failure only leaves it for the next
         * open to replay. */
        int rc = sqlite3_close(st->db);
        if (rc != SQLITE_OK) log_msg(LOG_WARN, "store: close: %s", sqlite3_errstr(rc));
    }
    ZSTD_freeCCtx(st->cctx);
    ZSTD_freeCDict(st->cdict);
    buf_free(&st->samples);
    free(st->sample_sizes);
    buf_free(&st->enc);
    buf_free(&st->comp);
    buf_free(&st->opkey);
    intern_clear(&st->services);
    intern_clear(&st->operations);
    pending_free(&st->pending);
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

static int write_chunk(struct store *st, struct put_entry **run, size_t n)
{
    for (size_t i = 0; i < n; i++) st->chunk_spans[i] = run[i]->span;
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
    sqlite3_stmt *s = st->stmt[W_CHUNK_INSERT];
    sqlite3_bind_int64(s, 1, st->next_chunk_id++);
    sqlite3_bind_int64(s, 2, trace_key_of(run[0]->span->trace_id));
    sqlite3_bind_int64(s, 3, (int64_t)n);
    sqlite3_bind_blob(s, 4, st->comp.p, (int)clen, SQLITE_STATIC);
    return step_done(st, s, "insert chunk");
}

static int write_index_row(struct store *st, const struct put_entry *first, int64_t min_dur,
                           int64_t max_dur, bool error)
{
    sqlite3_stmt *s = st->stmt[W_INDEX_INSERT];
    sqlite3_bind_int64(s, 1, st->next_index_id++);
    sqlite3_bind_int64(s, 2, trace_key_of(first->span->trace_id));
    sqlite3_bind_int64(s, 3, first->service_id);
    sqlite3_bind_int64(s, 4, first->op_id);
    sqlite3_bind_int64(s, 5, first->start_us);
    sqlite3_bind_int64(s, 6, min_dur);
    sqlite3_bind_int64(s, 7, max_dur);
    sqlite3_bind_int(s, 8, error ? 1 : 0);
    return step_done(st, s, "insert index row");
}

/* Chunks per trace; index rows per (trace, service, operation) within the group spread. */
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
        int rc = write_chunk(st, o + t, t_end - t);
        if (rc) return rc;
        (*chunks)++;
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

static int add_edge(struct store *st, int64_t minute, int64_t parent, int64_t child, bool error)
{
    if (parent == child) return 0; /* calls inside one service are not dependencies */
    for (size_t i = st->n_edges; i-- > 0;) {
        struct edge *e = &st->edges[i];
        if (e->minute == minute && e->parent_id == parent && e->child_id == child) {
            e->calls++;
            e->errors += error;
            return 0;
        }
    }
    if (grow((void **)&st->edges, &st->cap_edges, st->n_edges + 1, sizeof *st->edges) != 0)
        return -ENOMEM;
    st->edges[st->n_edges++] =
        (struct edge){.minute = minute, .parent_id = parent, .child_id = child, .calls = 1,
                      .errors = error};
    return 0;
}

static uint32_t span_slot_hash(const uint8_t *trace_id, const uint8_t *span_id)
{
    uint8_t k[24];
    memcpy(k, trace_id, 16);
    memcpy(k + 16, span_id, 8);
    return (uint32_t)hash_bytes(k, sizeof k);
}

static int32_t find_in_call(struct store *st, const uint8_t *trace_id, const uint8_t *span_id)
{
    size_t mask = st->cap_slots - 1;
    for (size_t i = span_slot_hash(trace_id, span_id) & mask;; i = (i + 1) & mask) {
        int32_t e = st->slots[i];
        if (e < 0) return -1;
        const struct span *s = st->entries[e].span;
        if (memcmp(s->span_id, span_id, 8) == 0 && memcmp(s->trace_id, trace_id, 16) == 0)
            return e;
    }
}

static bool is_client(enum span_kind k)
{
    return k == SPAN_KIND_CLIENT || k == SPAN_KIND_PRODUCER;
}

static bool is_server(enum span_kind k)
{
    return k == SPAN_KIND_SERVER || k == SPAN_KIND_CONSUMER;
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

/* Finds service edges: (a) parent and child in this call, (b) client/server halves split over
 * calls, through the pending map (read here, changed only after commit). Fills st->edges. */
static int find_edges(struct store *st, size_t total)
{
    st->n_edges = st->n_adds = st->n_removes = 0;
    size_t mask = st->cap_slots - 1;
    for (size_t i = 0; i <= mask; i++) st->slots[i] = -1;
    for (size_t i = 0; i < total; i++) {
        const struct span *s = st->entries[i].span;
        size_t j = span_slot_hash(s->trace_id, s->span_id) & mask;
        while (st->slots[j] >= 0) j = (j + 1) & mask;
        st->slots[j] = (int32_t)i;
    }
    int rc;
    for (size_t i = 0; i < total; i++) {
        struct put_entry *c = &st->entries[i];
        if (!c->span->has_parent) continue;
        int32_t pi = find_in_call(st, c->span->trace_id, c->span->parent_span_id);
        if (pi < 0 || (size_t)pi == i) continue;
        struct put_entry *p = &st->entries[pi];
        c->parent_in_call = true;
        if (p->service_id == c->service_id) continue;
        p->child_edge = true;
        /* A client/server pair fails if either half failed; otherwise the call's outcome is
         * the child's. */
        bool pair = is_client(p->span->kind) && is_server(c->span->kind);
        if ((rc = add_edge(st, c->minute, p->service_id, c->service_id,
                           c->error || (pair && p->error))))
            return rc;
    }
    for (size_t i = 0; i < total; i++) {
        struct put_entry *x = &st->entries[i];
        const struct span *s = x->span;
        if (is_server(s->kind) && s->has_parent && !x->parent_in_call) {
            int32_t ci = pending_find(&st->pending, s->trace_id, s->parent_span_id, SIDE_CLIENT);
            if (ci >= 0) {
                const struct pend *cl = &st->pending.e[ci];
                if ((rc = add_edge(st, x->minute, cl->service_id, x->service_id,
                                   cl->error || x->error)) ||
                    (rc = plan_remove(st, ci)))
                    return rc;
            } else {
                struct pend t = {.side = SIDE_SERVER, .error = x->error,
                                 .service_id = x->service_id, .minute = x->minute};
                memcpy(t.trace_id, s->trace_id, 16);
                memcpy(t.span_id, s->parent_span_id, 8);
                if ((rc = plan_pending(st, &t))) return rc;
            }
        }
        if (is_client(s->kind) && !x->child_edge) {
            int32_t si = pending_find(&st->pending, s->trace_id, s->span_id, SIDE_SERVER);
            if (si >= 0) {
                const struct pend *sv = &st->pending.e[si];
                if ((rc = add_edge(st, sv->minute, x->service_id, sv->service_id,
                                   sv->error || x->error)) ||
                    (rc = plan_remove(st, si)))
                    return rc;
            } else {
                struct pend t = {.side = SIDE_CLIENT, .error = x->error,
                                 .service_id = x->service_id, .minute = x->minute};
                memcpy(t.trace_id, s->trace_id, 16);
                memcpy(t.span_id, s->span_id, 8);
                if ((rc = plan_pending(st, &t))) return rc;
            }
        }
    }
    return 0;
}

static int write_edges(struct store *st)
{
    sqlite3_stmt *s = st->stmt[W_DEP_UPSERT];
    for (size_t i = 0; i < st->n_edges; i++) {
        const struct edge *e = &st->edges[i];
        sqlite3_bind_int64(s, 1, e->minute);
        sqlite3_bind_int64(s, 2, e->parent_id);
        sqlite3_bind_int64(s, 3, e->child_id);
        sqlite3_bind_int64(s, 4, (int64_t)e->calls);
        sqlite3_bind_int64(s, 5, (int64_t)e->errors);
        int rc = step_done(st, s, "upsert dependency");
        if (rc) return rc;
    }
    return 0;
}

static void apply_pending(struct store *st, int64_t now)
{
    for (size_t i = 0; i < st->n_removes; i++) pending_remove(&st->pending, st->pend_removes[i]);
    pending_expire(&st->pending, now);
    for (size_t i = 0; i < st->n_adds; i++) pending_add(&st->pending, &st->pend_adds[i], now);
}

/* After a rollback: forget what mirrored rows that no longer exist. */
static void forget_uncommitted(struct store *st)
{
    intern_clear(&st->services);
    intern_clear(&st->operations);
    st->mark_minute = -1;
}

int store_put_batches(struct store *st, struct span_batch *const *batches, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += batches[i]->n_spans;
    if (total == 0) {
        atomic_fetch_add(&st->batches_committed, n);
        return 0;
    }
    if (total > INT32_MAX / 4) return -E2BIG; /* int32 indices in the parent lookup */
    int rc = reserve_scratch(st, total);
    if (rc) return rc;
    int64_t now = now_us(st);
    int64_t chunk_id0 = st->next_chunk_id, index_id0 = st->next_index_id;
    uint64_t chunks = 0;

    rc = step_done(st, st->stmt[W_BEGIN], "begin");
    if (rc) return rc;
    size_t k = 0;
    for (size_t b = 0; b < n; b++) {
        for (uint32_t i = 0; i < batches[b]->n_spans; i++, k++) {
            const struct span *s = &batches[b]->spans[i];
            struct put_entry *e = &st->entries[k];
            memset(e, 0, sizeof *e);
            e->span = s;
            e->start_us = (int64_t)(s->start_unix_nano / 1000);
            e->dur_us = s->end_unix_nano > s->start_unix_nano
                            ? (int64_t)((s->end_unix_nano - s->start_unix_nano) / 1000)
                            : 0;
            e->minute = floor_div(e->start_us, US_PER_MINUTE);
            e->error = span_is_error(s);
            if ((rc = service_id(st, span_service_name(s), &e->service_id))) goto fail;
            if ((rc = operation_id(st, e->service_id, s, &e->op_id))) goto fail;
        }
    }
    if ((rc = find_edges(st, total))) goto fail;
    if ((rc = write_rows(st, total, &chunks))) goto fail;
    if ((rc = write_edges(st))) goto fail;
    int64_t minute = floor_div(now, US_PER_MINUTE);
    if (minute != st->mark_minute) {
        sqlite3_stmt *m = st->stmt[W_MARK_INSERT];
        sqlite3_bind_int64(m, 1, minute);
        sqlite3_bind_int64(m, 2, chunk_id0);
        sqlite3_bind_int64(m, 3, index_id0);
        if ((rc = step_done(st, m, "insert receive mark"))) goto fail;
    }
    if ((rc = step_done(st, st->stmt[W_COMMIT], "commit"))) goto fail;
    st->mark_minute = minute;
    apply_pending(st, now);
    maybe_train_dict(st);
    atomic_fetch_add(&st->spans_stored, total);
    atomic_fetch_add(&st->chunks_stored, chunks);
    atomic_fetch_add(&st->batches_committed, n);
    update_db_bytes(st);
    return 0;

fail:
    if (sqlite3_get_autocommit(st->db) == 0) step_done(st, st->stmt[W_ROLLBACK], "rollback");
    forget_uncommitted(st);
    st->next_chunk_id = chunk_id0;
    st->next_index_id = index_id0;
    update_db_bytes(st);
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

int store_retention_step(struct store *st, int64_t now, unsigned max_rows, uint64_t *deleted)
{
    *deleted = 0;
    if (!max_rows) max_rows = 1000;
    uint64_t spans = 0;
    int64_t last = 0;
    int rc = step_done(st, st->stmt[W_BEGIN], "begin");
    if (rc) return rc;
    if (st->opts.retention_us > 0) {
        int64_t cutoff_minute = floor_div(now - st->opts.retention_us, US_PER_MINUTE);
        /* Rows before the first mark at or after the cutoff minute were received before it. */
        sqlite3_stmt *b = st->stmt[W_MARK_BOUNDARY];
        sqlite3_bind_int64(b, 1, cutoff_minute);
        int64_t chunk_before = st->next_chunk_id, index_before = st->next_index_id;
        rc = sqlite3_step(b);
        if (rc == SQLITE_ROW) {
            chunk_before = sqlite3_column_int64(b, 0);
            index_before = sqlite3_column_int64(b, 1);
            rc = SQLITE_DONE;
        }
        sqlite3_reset(b);
        sqlite3_clear_bindings(b);
        if (rc != SQLITE_DONE) {
            rc = store_sqlite_err(st->db, rc, "retention boundary");
            goto fail;
        }
        if ((rc = delete_chunks(st, chunk_before, max_rows, &spans, &last)) ||
            (rc = delete_before(st, W_DEL_INDEX_BEFORE, index_before, max_rows, "delete index")) ||
            (rc = delete_before(st, W_DEL_DEPS_BEFORE, cutoff_minute, max_rows,
                                "delete rollups")) ||
            (rc = delete_before(st, W_DEL_MARKS_BEFORE, cutoff_minute, 0, "delete marks")))
            goto fail;
    }
    if (st->opts.max_db_bytes > 0 && spans == 0) {
        int64_t pages = 0, free_pages = 0;
        if ((rc = step_int(st, st->stmt[W_PAGE_COUNT], &pages, "page_count")) ||
            (rc = step_int(st, st->stmt[W_FREELIST_COUNT], &free_pages, "freelist_count")))
            goto fail;
        if ((pages - free_pages) * st->page_size > st->opts.max_db_bytes) {
            /* Oldest chunks go first; index rows go with the receive minutes fully deleted
             * (rows left pointing at deleted chunks only cost a failed lookup until then). */
            if ((rc = delete_chunks(st, INT64_MAX, max_rows, &spans, &last))) goto fail;
            if (last > 0) {
                int64_t index_before = 0;
                sqlite3_bind_int64(st->stmt[W_MARK_FOR_CHUNK], 1, last);
                if ((rc = step_int(st, st->stmt[W_MARK_FOR_CHUNK], &index_before, "mark")))
                    goto fail;
                if (index_before > 0 &&
                    (rc = delete_before(st, W_DEL_INDEX_BEFORE, index_before, max_rows,
                                        "delete index")))
                    goto fail;
            }
        }
    }
    if ((rc = step_done(st, st->stmt[W_COMMIT], "commit"))) goto fail;
    *deleted = spans;
    atomic_fetch_add(&st->spans_deleted, spans);
    update_db_bytes(st);
    return 0;

fail:
    if (sqlite3_get_autocommit(st->db) == 0) step_done(st, st->stmt[W_ROLLBACK], "rollback");
    forget_uncommitted(st);
    return rc;
}

void store_get_stats(struct store *st, struct store_stats *out)
{
    out->spans_stored = atomic_load(&st->spans_stored);
    out->traces_chunks_stored = atomic_load(&st->chunks_stored);
    out->spans_deleted = atomic_load(&st->spans_deleted);
    out->batches_committed = atomic_load(&st->batches_committed);
    out->db_bytes = atomic_load(&st->db_bytes);
}

/* ----- test hooks -------------------------------------------------------------------------- */

void store_test_set_clock(struct store *st, int64_t now)
{
    st->test_now_us = now;
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
