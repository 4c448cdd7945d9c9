/*
 * store_read.c: the trace store's read side: the pool of read-only connections and every read
 * function of storage.h (get trace, find traces, list services/operations, dependencies, the
 * service graph).
 *
 * Reads run on any thread. Each borrows one connection from the pool for the whole call; the
 * connection carries its own prepared statements, zstd decompression context and buffer, so a
 * read shares nothing with other reads or with the writer (WAL gives each read transaction a
 * snapshot while the writer commits). The pool opens connections lazily up to its size; when
 * all are busy a caller waits for one to come back rather than opening more, so the number of
 * SQLite connections (and their page caches) stays bounded.
 *
 * Finding traces: the search index (span_index, see store.c) yields candidate trace keys for the
 * service, time window, duration bounds and, through the dictionary, the operation, newest
 * first. Each candidate trace is loaded and decoded, and every condition (tags, kind, exact
 * window, errors) is checked per span in C, all conditions on the same span as Jaeger does. A
 * trace's "matching start" is the latest start among its matching spans; results are sorted by
 * it, newest first. Only the best `limit` traces are kept (a heap, worst at the root); since an
 * index row's spans start within INDEX_GROUP_SPREAD_US of the row's start, the scan stops at the
 * first row that starts that long before the worst trace kept, so a busy service reads about
 * `limit` traces plus a minute's worth, not every match in the window (which it did while the bar
 * was the lowest start found, since that sinks with every trace examined). At most
 * FIND_MAX_CANDIDATES traces are examined per query, which bounds the cost of a tag filter that
 * matches nothing in a busy window.
 *
 * Dependencies and the service graph read the same edge rollups (store.c, EDGE ROLLUPS): every
 * row whose bucket [bucket, bucket + resolution) overlaps the window, at whichever resolution
 * it has now (each call lives in exactly one fine row), the 10 min and hour summaries standing in
 * for the fine rows of the whole 10 minutes and hours inside the window (EDGE_ROWS). The graph
 * sums them per edge in C (a 24 h window is at most ~154 rows per edge), merging the sparse
 * histograms (rollup.c), and then names the nodes: one lookup per distinct node.
 */
#include "storage_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zstd.h>

#define FIND_DEFAULT_LIMIT 100
#define FIND_MAX_LIMIT 10000        /* larger limits are clamped: a UI shows far fewer */
#define FIND_MAX_CANDIDATES 20000u  /* traces decoded per query at most (see above) */

enum {
    R_BEGIN,
    R_COMMIT,
    R_CHUNKS,
    R_CHUNK_BY_ID,
    R_SERVICE_ID,
    R_FIND,
    R_FIND_ERRORS,
    R_SERVICES,
    R_OPERATIONS,
    R_DEPENDENCIES,
    R_GRAPH,
    R_NODE_SERVICE,
    R_NODE_VIRTUAL,
    R_DICT,
    R_LOGS_TRACE,
    R_LOGS_REQUEST,
    R_LOGS_SERVICE,
    R_LOGS_ANY,
    R_LBLK_SERVICE_DESC,
    R_LBLK_SERVICE_ASC,
    R_LBLK_ANY_DESC,
    R_LBLK_ANY_ASC,
    R_LBLK_DATA,
    R_COUNT
};

#define FIND_SQL(extra)                                                                            \
    "SELECT trace_key, start_us FROM span_index WHERE service_id = ?1 AND start_us BETWEEN ?2 "    \
    "AND ?3 AND min_dur_us + dur_spread_us >= ?4 AND min_dur_us <= ?5 " extra                     \
    "AND (?6 IS NULL OR op_id IN (SELECT id FROM operations WHERE service_id = ?1 AND "            \
    "name = ?6)) ORDER BY start_us DESC"

/* The edge rollup rows (columns cols) that sum a window's calls. ?1, ?2: the window's start and
 * end in whole seconds; ?3 <= ?4 <= ?5 <= ?6 (see bind_edge_window): whole 10 min blocks inside
 * the window cover [?3, ?4) and [?5, ?6), whole hours [?4, ?5). Fine rows (10 s, 60 s) that
 * overlap the window before ?3 and from ?6 on; summaries (store.c, SUMMARIES) in between. A
 * fine bucket overlaps the window when it starts at or before the end and ends after the start
 * (fine resolutions are at most 60 s, and divide 10 min). Five bucket ranges, each a seek (the
 * summaries through the partial index edge_rollup_summary, whose WHERE term "resolution >= 600"
 * is repeated so that SQLite sees it applies). */
#define EDGE_ROWS(cols)                                                                            \
    "SELECT " cols " FROM edge_rollup WHERE bucket > ?1 - 60 AND bucket < ?3 AND bucket <= ?2 "    \
    "AND bucket + resolution > ?1 AND resolution < 600 UNION ALL SELECT " cols " FROM "            \
    "edge_rollup WHERE resolution >= 600 AND resolution = 600 AND bucket >= ?3 AND bucket < ?4 "   \
    "UNION ALL SELECT " cols " FROM edge_rollup WHERE resolution >= 600 AND resolution = 3600 "    \
    "AND bucket >= ?4 AND bucket < ?5 UNION ALL SELECT " cols " FROM edge_rollup WHERE "           \
    "resolution >= 600 AND resolution = 600 AND bucket >= ?5 AND bucket < ?6 "                     \
    "UNION ALL SELECT " cols " FROM edge_rollup WHERE bucket >= ?6 AND bucket <= ?2 AND "          \
    "resolution < 600"

/* The v5 conditions of a log search: ?6..?7 response code range (?6 = 0: any), ?8 / ?9 minimum
 * and maximum duration_ms (0: any). Rows stored before v5 have a NULL duration_ms: they pass
 * here and are checked on the decoded record (log_matches). */
#define LOG_FILTERS                                                                                \
    " AND (?6 = 0 OR response_code BETWEEN ?6 AND ?7)"                                             \
    " AND (?8 = 0 OR duration_ms IS NULL OR duration_ms >= ?8)"                                    \
    " AND (?9 = 0 OR duration_ms IS NULL OR duration_ms BETWEEN 0 AND ?9)"

/* Access-log blocks (schema v6) that may hold a record of the window: ?2 start, ?3 end +
 * LOG_BLOCK_SPAN_US, ?4 end; ?5 errors only, ?6 the status classes wanted (codes bits, 0 any),
 * ?7 / ?8 minimum and maximum duration_ms (0 any); in max_time_us order. */
#define LBLK_SQL(service, order)                                                                   \
    "SELECT id, max_time_us, bloom FROM access_log_blocks WHERE " service "max_time_us BETWEEN "   \
    "?2 AND ?3 AND min_time_us <= ?4 AND (?5 = 0 OR errors > 0) AND (?6 = 0 OR (codes & ?6) != "   \
    "0) AND (?7 = 0 OR max_dur_ms >= ?7) AND (?8 = 0 OR (min_dur_ms >= 0 AND min_dur_ms <= ?8)) "  \
    "ORDER BY max_time_us " order
#define LBLK_SERVICE "service_id = (SELECT id FROM services WHERE name = ?1) AND "

static const char *const reader_sql[R_COUNT] = {
    [R_BEGIN] = "BEGIN",
    [R_COMMIT] = "COMMIT",
    /* The trace index rows the snapshot has; tpend has the rest (load_trace). */
    [R_CHUNKS] = "SELECT c.id, c.data FROM trace_index t JOIN chunks c ON c.id = t.chunk_id "
                 "WHERE t.trace_key = ?1 ORDER BY t.chunk_id",
    [R_CHUNK_BY_ID] = "SELECT data FROM chunks WHERE id = ?1",
    [R_SERVICE_ID] = "SELECT id FROM services WHERE name = ?1",
    [R_FIND] = FIND_SQL(""),
    /* "error = 1" spelled out lets SQLite use the partial index span_index_error. */
    [R_FIND_ERRORS] = FIND_SQL("AND error = 1 "),
    [R_SERVICES] = "SELECT name FROM services ORDER BY name",
    [R_OPERATIONS] = "SELECT o.name, o.kind FROM operations o JOIN services s ON s.id = "
                     "o.service_id WHERE s.name = ?1 AND (?2 = 0 OR o.kind = ?2) "
                     "ORDER BY o.name, o.kind",
    /* ?1, ?2: window start and end in whole seconds; a bucket overlaps the window when it
     * starts at or before the end and ends after the start (resolutions are at most 60 s). */
    /* Summed first, named after: the joins then run once per edge, not once per row. */
    [R_DEPENDENCIES] =
        "SELECT p.name, c.name, e.calls, e.errors FROM (SELECT client_id, "
        "server_id, sum(calls) AS calls, sum(errors) AS errors FROM (" EDGE_ROWS(
            "client_id, server_id, calls, errors") ") "
                                                   "WHERE client_id > 0 AND server_id > 0 GROUP BY "
                                                   "client_id, server_id) e "
                                                   "JOIN services p ON p.id = e.client_id JOIN "
                                                   "services c ON c.id = "
                                                   "e.server_id ORDER BY p.name, c.name",
    [R_GRAPH] = EDGE_ROWS("client_id, server_id, conn, calls, errors, hist"),
    [R_NODE_SERVICE] = "SELECT name, coalesce(namespace, '') FROM services WHERE id = ?1",
    [R_NODE_VIRTUAL] = "SELECT name FROM virtual_nodes WHERE id = ?1",
    [R_DICT] = "SELECT data FROM dicts WHERE id = ?1",
    /* Access logs. ?2, ?3 the time window, ?4 errors only, ?5 the limit (-1: none, when rows
     * may be dropped in C), LOG_FILTERS the v5 conditions. "trace_key = ?1" implies trace_key
     * IS NOT NULL, so SQLite uses the partial index access_logs_trace (and request_key = ?1 the
     * index access_logs_request). The trace query has no limit in SQL: rows of other traces
     * sharing the key are dropped in C. */
    [R_LOGS_TRACE] = ("SELECT data FROM access_logs WHERE trace_key = ?1 AND time_us BETWEEN ?2 "
                      "AND ?3 AND (?4 = 0 OR error = 1)" LOG_FILTERS " ORDER BY time_us, id"),
    [R_LOGS_REQUEST] = ("SELECT data FROM access_logs WHERE request_key = ?1 AND time_us BETWEEN "
                        "?2 AND ?3 AND (?4 = 0 OR error = 1)" LOG_FILTERS
                        " ORDER BY time_us DESC, id DESC LIMIT ?5"),
    [R_LOGS_SERVICE] = ("SELECT data FROM access_logs WHERE service_id = (SELECT id FROM "
                        "services WHERE name = ?1) AND time_us BETWEEN ?2 AND ?3 AND (?4 = 0 "
                        "OR error = 1)" LOG_FILTERS " ORDER BY time_us DESC LIMIT ?5"),
    [R_LOGS_ANY] = ("SELECT data FROM access_logs WHERE time_us BETWEEN ?2 AND ?3 AND (?4 = 0 "
                    "OR error = 1)" LOG_FILTERS " ORDER BY id DESC LIMIT ?5"),
    [R_LBLK_SERVICE_DESC] = LBLK_SQL(LBLK_SERVICE, "DESC"),
    [R_LBLK_SERVICE_ASC] = LBLK_SQL(LBLK_SERVICE, "ASC"),
    [R_LBLK_ANY_DESC] = LBLK_SQL("", "DESC"),
    [R_LBLK_ANY_ASC] = LBLK_SQL("", "ASC"),
    [R_LBLK_DATA] = "SELECT data FROM access_log_blocks WHERE id = ?1",
};

/* Dictionaries a connection keeps (a database normally has one; see store.c). */
#define READER_DICTS 4

struct reader {
    sqlite3 *db;
    sqlite3_stmt *stmt[R_COUNT];
    ZSTD_DCtx *dctx;
    struct buf raw; /* decompressed chunk */
    struct {
        unsigned id;
        ZSTD_DDict *dict;
    } dicts[READER_DICTS];
    unsigned n_dicts;
    struct reader *next;
    /* While checked out: the store's pending trace index and this checkout's pin on it. */
    struct tpend *tp;
    uint64_t tp_token;
    bool pinned;
    int64_t *ids; /* load_trace scratch: chunk ids */
    size_t n_ids, cap_ids;
};

struct read_pool {
    char *path;
    unsigned size;
    unsigned opened;
    struct reader *idle;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a reader comes back or a slot frees */
};

static void reader_close(struct reader *r)
{
    if (!r) return;
    for (int i = 0; i < R_COUNT; i++) sqlite3_finalize(r->stmt[i]);
    sqlite3_close(r->db);
    ZSTD_freeDCtx(r->dctx);
    for (unsigned i = 0; i < r->n_dicts; i++) ZSTD_freeDDict(r->dicts[i].dict);
    buf_free(&r->raw);
    free(r->ids);
    free(r);
}

static struct reader *reader_open(const char *path)
{
    struct reader *r = calloc(1, sizeof *r);
    if (!r) goto oom;
    int rc = sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        log_ratelimited(LOG_ERROR, "store-ropen", "store: open read connection: %s",
                        r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(r->db, 5000);
    sqlite3_extended_result_codes(r->db, 1);
    for (int i = 0; i < R_COUNT; i++) {
        rc = sqlite3_prepare_v3(r->db, reader_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->stmt[i],
                                NULL);
        if (rc != SQLITE_OK) {
            log_ratelimited(LOG_ERROR, "store-rprep", "store: prepare \"%s\": %s", reader_sql[i],
                            sqlite3_errmsg(r->db));
            goto fail;
        }
    }
    r->dctx = ZSTD_createDCtx();
    if (!r->dctx) goto oom;
    return r;
oom:
    log_ratelimited(LOG_ERROR, "store-room", "store: out of memory opening a read connection");
fail:
    reader_close(r);
    return NULL;
}

struct read_pool *read_pool_create(const char *path, unsigned size)
{
    struct read_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->path = strdup(path);
    if (!p->path) {
        free(p);
        return NULL;
    }
    p->size = size ? size : 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

void read_pool_destroy(struct read_pool *p)
{
    if (!p) return;
    while (p->idle) {
        struct reader *r = p->idle;
        p->idle = r->next;
        reader_close(r);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->path);
    free(p);
}

/* Borrows a connection, waiting while all are busy. -EIO/-ENOMEM if a new one cannot open. */
static int checkout_conn(struct store *st, struct reader **out)
{
    struct read_pool *p = store_read_pool(st);
    pthread_mutex_lock(&p->mu);
    while (!p->idle && p->opened >= p->size) pthread_cond_wait(&p->cv, &p->mu);
    struct reader *r = p->idle;
    if (r) {
        p->idle = r->next;
        pthread_mutex_unlock(&p->mu);
        *out = r;
        return 0;
    }
    p->opened++;
    pthread_mutex_unlock(&p->mu);
    r = reader_open(p->path);
    if (!r) {
        pthread_mutex_lock(&p->mu);
        p->opened--;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        return -EIO;
    }
    *out = r;
    return 0;
}

/* A connection, pinned on the pending trace index before it runs any statement (trace_pending.c:
 * the pin must come before the snapshot). */
static int checkout(struct store *st, struct reader **out)
{
    int rc = checkout_conn(st, out);
    if (rc) return rc;
    struct reader *r = *out;
    r->tp = store_tpend(st);
    r->pinned = tpend_pin(r->tp, &r->tp_token) == 0;
    return 0;
}

static void checkin(struct store *st, struct reader *r)
{
    struct read_pool *p = store_read_pool(st);
    if (r->pinned) tpend_unpin(r->tp, r->tp_token);
    r->pinned = false;
    /* Never hand back a connection inside a transaction (an error path may leave one open). */
    if (!sqlite3_get_autocommit(r->db)) sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&p->mu);
    r->next = p->idle;
    p->idle = r;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void reset(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static int run_simple(struct reader *r, int which)
{
    int rc = sqlite3_step(r->stmt[which]);
    reset(r->stmt[which]);
    return rc == SQLITE_DONE ? 0 : store_sqlite_err(r->db, rc, reader_sql[which]);
}

/* ----- loading traces ---------------------------------------------------------------------- */

static int span_start_cmp(const void *pa, const void *pb)
{
    const struct span *a = pa, *b = pb;
    if (a->start_unix_nano != b->start_unix_nano)
        return a->start_unix_nano < b->start_unix_nano ? -1 : 1;
    return memcmp(a->span_id, b->span_id, 8);
}

/* The dictionary with zstd id `id`, loaded on first use; NULL if the database lacks it. */
static ZSTD_DDict *reader_dict(struct reader *r, unsigned id)
{
    for (unsigned i = 0; i < r->n_dicts; i++)
        if (r->dicts[i].id == id) return r->dicts[i].dict;
    sqlite3_stmt *s = r->stmt[R_DICT];
    sqlite3_bind_int64(s, 1, id);
    ZSTD_DDict *d = NULL;
    if (sqlite3_step(s) == SQLITE_ROW)
        d = ZSTD_createDDict(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    reset(s);
    if (!d) return NULL;
    if (r->n_dicts == READER_DICTS) { /* full: forget the oldest */
        ZSTD_freeDDict(r->dicts[0].dict);
        memmove(&r->dicts[0], &r->dicts[1], (READER_DICTS - 1) * sizeof r->dicts[0]);
        r->n_dicts--;
    }
    r->dicts[r->n_dicts].id = id;
    r->dicts[r->n_dicts++].dict = d;
    return d;
}

/* Decompresses (with a cap) and decodes one chunk into b. A corrupt chunk is logged and
 * skipped: one bad row must not hide the rest of the trace. */
static int load_chunk(struct reader *r, const void *data, size_t len, struct span_batch *b)
{
    unsigned long long size = ZSTD_getFrameContentSize(data, len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
        size > CODEC_MAX_CHUNK_RAW) {
        log_ratelimited(LOG_WARN, "store-corrupt", "store: skipping a corrupt chunk (frame)");
        return 0;
    }
    r->raw.len = 0;
    if (buf_reserve(&r->raw, (size_t)size ? (size_t)size : 1) != 0) return -ENOMEM;
    unsigned dict_id = ZSTD_getDictID_fromFrame(data, len);
    ZSTD_DDict *dict = dict_id ? reader_dict(r, dict_id) : NULL;
    if (dict_id && !dict) {
        log_ratelimited(LOG_WARN, "store-corrupt", "store: skipping a chunk (dictionary %u "
                        "missing)", dict_id);
        return 0;
    }
    size_t got = dict ? ZSTD_decompress_usingDDict(r->dctx, r->raw.p, (size_t)size, data, len, dict)
                      : ZSTD_decompressDCtx(r->dctx, r->raw.p, (size_t)size, data, len);
    if (ZSTD_isError(got) || got != size) {
        log_ratelimited(LOG_WARN, "store-corrupt", "store: skipping a corrupt chunk (zstd)");
        return 0;
    }
    int rc = codec_decode_chunk(r->raw.p, got, b);
    if (rc == -EINVAL) {
        log_ratelimited(LOG_WARN, "store-corrupt", "store: skipping a corrupt chunk (codec)");
        return 0;
    }
    return rc;
}

/* ----- access logs ------------------------------------------------------------------------ */

/* Decompresses one access_logs.data value into r->raw. -EINVAL (logged) for a corrupt row. */
static int load_log_blob(struct reader *r, const void *data, size_t len)
{
    unsigned long long size = ZSTD_getFrameContentSize(data, len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
        size > CODEC_MAX_CHUNK_RAW)
        return -EINVAL;
    r->raw.len = 0;
    if (buf_reserve(&r->raw, (size_t)size ? (size_t)size : 1) != 0) return -ENOMEM;
    unsigned dict_id = ZSTD_getDictID_fromFrame(data, len);
    ZSTD_DDict *dict = dict_id ? reader_dict(r, dict_id) : NULL;
    if (dict_id && !dict) return -EINVAL;
    size_t got = dict ? ZSTD_decompress_usingDDict(r->dctx, r->raw.p, (size_t)size, data, len, dict)
                      : ZSTD_decompressDCtx(r->dctx, r->raw.p, (size_t)size, data, len);
    if (ZSTD_isError(got) || got != size) return -EINVAL;
    r->raw.len = got;
    return 0;
}

static bool mstr_eq(struct mstr m, const char *s);

/* The record matches every condition of q (the row's keys matched in SQL; this settles trace
 * and request key collisions, and rows stored before v5 that have no duration column). */
static bool log_matches(const struct access_log *l, const struct log_query *q)
{
    const struct mstr *svc = &l->str[ALOG_SERVICE];
    if (q->service && !mstr_eq(*svc, q->service)) return false;
    if (q->errors_only && !access_log_is_error(l)) return false;
    if (q->trace_id && !(l->has_trace_id && memcmp(l->trace_id, q->trace_id, 16) == 0))
        return false;
    if (q->request_id && !mstr_eq(l->str[ALOG_REQUEST_ID], q->request_id)) return false;
    if ((q->status_min || q->status_max) &&
        (l->response_code < q->status_min || l->response_code > q->status_max))
        return false;
    if (q->min_duration_ms > 0 && l->duration_ms < q->min_duration_ms) return false;
    if (q->max_duration_ms > 0 && (l->duration_ms < 0 || l->duration_ms > q->max_duration_ms))
        return false;
    return true;
}

static int log_time_asc(const void *x, const void *y)
{
    const struct access_log *a = x, *b = y;
    return (a->time_unix_nano > b->time_unix_nano) - (a->time_unix_nano < b->time_unix_nano);
}

static int log_time_desc(const void *x, const void *y)
{
    return log_time_asc(y, x);
}

/* Sorts b's records (oldest first when asc, else newest first) and keeps the first limit. */
static void logs_sort_cut(struct span_batch *b, bool asc, unsigned limit)
{
    if (b->n_logs > 1)
        qsort(b->logs, b->n_logs, sizeof *b->logs, asc ? log_time_asc : log_time_desc);
    if (b->n_logs > limit) b->n_logs = limit;
}

/* The codes bit of a status class (store.c code_class_bit): 0 none, 1..5, 6 anything else. */
static int code_class(int64_t code)
{
    return code <= 0 ? 0 : code < 600 ? (int)(code / 100) : 6;
}

/* Appends to b the records of one block (compressed data) that fall in [start, end] and match
 * q. -EINVAL for a corrupt block (logged by the caller). */
static int scan_block(struct reader *r, const void *data, size_t len, const struct log_query *q,
                      int64_t start, int64_t end, struct span_batch *b)
{
    int rc = load_log_blob(r, data, len);
    struct alog_block_iter it;
    if (!rc) rc = alog_block_open(&it, r->raw.p, r->raw.len);
    const uint8_t *rec;
    size_t rlen;
    while (!rc && (rc = alog_block_next(&it, &rec, &rlen)) == 1) {
        struct access_log v;
        if ((rc = alog_view(rec, rlen, &v))) break;
        int64_t t = (int64_t)(v.time_unix_nano / 1000);
        rc = t < start || t > end || !log_matches(&v, q) ? 0 : alog_decode(rec, rlen, b);
    }
    return rc;
}

/* The access-log blocks part of store_find_logs: blocks in max_time_us order (oldest first when
 * asc), skipping those whose bloom filter rules out q's trace or request key, decoding the rest
 * and keeping the matching records. Once b holds limit records, a block that cannot hold a
 * record before the limit-th (its max_time_us, less LOG_BLOCK_SPAN_US when asc, beyond it) ends
 * the scan. */
static int find_in_blocks(struct reader *r, const struct log_query *q, bool asc, unsigned limit,
                          int64_t start, int64_t end, struct span_batch *b)
{
    int which = q->service ? (asc ? R_LBLK_SERVICE_ASC : R_LBLK_SERVICE_DESC)
                           : (asc ? R_LBLK_ANY_ASC : R_LBLK_ANY_DESC);
    sqlite3_stmt *s = r->stmt[which];
    if (q->service) sqlite3_bind_text(s, 1, q->service, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, start);
    sqlite3_bind_int64(s, 3,
                       end > INT64_MAX - LOG_BLOCK_SPAN_US ? INT64_MAX : end + LOG_BLOCK_SPAN_US);
    sqlite3_bind_int64(s, 4, end);
    sqlite3_bind_int(s, 5, q->errors_only ? 1 : 0);
    int classes = 0;
    if (q->status_min || q->status_max)
        for (int c = code_class(q->status_min); c <= code_class(q->status_max); c++)
            classes |= 1 << c;
    sqlite3_bind_int(s, 6, classes);
    sqlite3_bind_int64(s, 7, q->min_duration_ms > 0 ? q->min_duration_ms : 0);
    sqlite3_bind_int64(s, 8, q->max_duration_ms > 0 ? q->max_duration_ms : 0);
    int64_t tkey = q->trace_id ? trace_key_of(q->trace_id) : 0;
    int64_t rkey = q->request_id ? request_key_of(q->request_id, strlen(q->request_id)) : 0;
    sqlite3_stmt *d = r->stmt[R_LBLK_DATA];
    int rc = 0, step;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t max_t = sqlite3_column_int64(s, 1);
        if (b->n_logs >= limit) {
            int64_t kth = (int64_t)(b->logs[limit - 1].time_unix_nano / 1000);
            if (asc ? max_t - LOG_BLOCK_SPAN_US > kth : max_t < kth) break;
        }
        const uint8_t *bloom = sqlite3_column_blob(s, 2);
        size_t blen = (size_t)sqlite3_column_bytes(s, 2);
        if ((q->trace_id && !alog_bloom_maybe(bloom, blen, tkey)) ||
            (q->request_id && !alog_bloom_maybe(bloom, blen, rkey)))
            continue;
        sqlite3_bind_int64(d, 1, sqlite3_column_int64(s, 0));
        int got = sqlite3_step(d);
        if (got == SQLITE_ROW) {
            const void *data = sqlite3_column_blob(d, 0);
            rc = data ? scan_block(r, data, (size_t)sqlite3_column_bytes(d, 0), q, start, end, b)
                      : -EINVAL;
            if (rc == -EINVAL) {
                log_ratelimited(LOG_WARN, "store-corrupt",
                                "store: skipping a corrupt access-log block");
                rc = 0;
            }
        } else if (got != SQLITE_DONE) { /* SQLITE_DONE: retention deleted it meanwhile */
            rc = store_sqlite_err(r->db, got, "load access-log block");
        }
        reset(d);
        if (!rc && b->n_logs > limit) logs_sort_cut(b, asc, limit);
    }
    if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = store_sqlite_err(r->db, step, "find access-log blocks");
    reset(s);
    return rc;
}

/* The part of store_find_logs in the access_logs table of schema v3-v5 (one row per record;
 * nothing writes it since v6, retention empties it). */
static int find_in_rows(struct reader *r, const struct log_query *q, unsigned limit, int64_t start,
                        int64_t end, struct span_batch *b)
{
    int which = q->trace_id     ? R_LOGS_TRACE
                : q->request_id ? R_LOGS_REQUEST
                : q->service    ? R_LOGS_SERVICE
                                : R_LOGS_ANY;
    sqlite3_stmt *s = r->stmt[which];
    if (q->trace_id) sqlite3_bind_int64(s, 1, trace_key_of(q->trace_id));
    else if (q->request_id)
        sqlite3_bind_int64(s, 1, request_key_of(q->request_id, strlen(q->request_id)));
    else if (q->service) sqlite3_bind_text(s, 1, q->service, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, start);
    sqlite3_bind_int64(s, 3, end);
    sqlite3_bind_int(s, 4, q->errors_only ? 1 : 0);
    /* SQL's limit only when every row it returns is kept: a request key may collide, a row
     * stored before v5 may fail a duration bound once decoded, a service filter below a
     * request key is checked in C. The loop stops at the limit either way. */
    bool c_filters = q->request_id || q->min_duration_ms > 0 || q->max_duration_ms > 0;
    if (!q->trace_id) sqlite3_bind_int64(s, 5, c_filters ? -1 : (int64_t)limit);
    bool any_status = q->status_min == 0 && q->status_max == 0;
    sqlite3_bind_int(s, 6, any_status ? 0 : q->status_min);
    sqlite3_bind_int(s, 7, any_status ? 0 : q->status_max);
    sqlite3_bind_int64(s, 8, q->min_duration_ms > 0 ? q->min_duration_ms : 0);
    sqlite3_bind_int64(s, 9, q->max_duration_ms > 0 ? q->max_duration_ms : 0);
    uint32_t found = 0;
    int rc = 0, step = SQLITE_DONE;
    while (!rc && found < limit && (step = sqlite3_step(s)) == SQLITE_ROW) {
        const void *data = sqlite3_column_blob(s, 0);
        int len = sqlite3_column_bytes(s, 0);
        rc = data ? load_log_blob(r, data, (size_t)len) : -EINVAL;
        if (!rc) rc = alog_decode(r->raw.p, r->raw.len, b);
        if (rc == -EINVAL) {
            log_ratelimited(LOG_WARN, "store-corrupt", "store: skipping a corrupt access log");
            rc = 0;
            continue;
        }
        if (!rc) {
            /* The row's key matched; the record itself must match every condition. */
            if (!log_matches(&b->logs[b->n_logs - 1], q))
                span_batch_drop_last_log(b);
            else
                found++;
        }
    }
    if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = store_sqlite_err(r->db, step, "find access logs");
    reset(s);
    return rc;
}

int store_find_logs(struct store *st, const struct log_query *q, struct span_batch **out)
{
    *out = NULL;
    struct span_batch *b = span_batch_create();
    if (!b) return -ENOMEM;
    unsigned limit = q->limit ? q->limit : LOG_QUERY_DEFAULT_LIMIT;
    if (limit > LOG_QUERY_MAX_LIMIT) limit = LOG_QUERY_MAX_LIMIT;
    int64_t start = q->start_us, end = q->end_us ? q->end_us : INT64_MAX;
    bool asc = q->trace_id != NULL; /* a trace reads forward */
    struct reader *r;
    int rc = checkout(st, &r);
    if (rc) {
        span_batch_destroy(b);
        return rc;
    }
    /* One read transaction: both tables seen at the same commit. */
    rc = run_simple(r, R_BEGIN);
    if (!rc) rc = find_in_blocks(r, q, asc, limit, start, end, b);
    if (!rc) rc = find_in_rows(r, q, limit, start, end, b);
    int end_rc = run_simple(r, R_COMMIT);
    if (!rc) rc = end_rc;
    checkin(st, r);
    if (rc) {
        span_batch_destroy(b);
        return rc;
    }
    logs_sort_cut(b, asc, limit);
    *out = b;
    return 0;
}

/* All spans stored under the trace key of id; only those of trace id if filter (else every
 * trace sharing the key). *out is NULL if none. */
static int load_trace(struct reader *r, const uint8_t id[16], bool filter,
                      struct span_batch **out)
{
    *out = NULL;
    struct span_batch *b = span_batch_create();
    if (!b) return -ENOMEM;
    int64_t key = trace_key_of(id);
    /* First the chunks not yet in trace_index (before the statement below starts a snapshot,
     * if none is open), then the rows; a chunk in both is loaded once. */
    r->n_ids = 0;
    int err =
        tpend_lookup(r->tp, r->pinned ? r->tp_token : 0, key, &r->ids, &r->n_ids, &r->cap_ids);
    size_t n_pending = r->n_ids;
    sqlite3_stmt *s = r->stmt[R_CHUNKS];
    sqlite3_bind_int64(s, 1, key);
    int rc = SQLITE_DONE;
    while (!err && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t chunk = sqlite3_column_int64(s, 0);
        for (size_t i = 0; i < n_pending; i++)
            if (r->ids[i] == chunk) r->ids[i] = 0; /* 0: no chunk id */
        const void *data = sqlite3_column_blob(s, 1);
        int len = sqlite3_column_bytes(s, 1);
        if (data && len > 0) err = load_chunk(r, data, (size_t)len, b);
    }
    reset(s);
    s = r->stmt[R_CHUNK_BY_ID];
    for (size_t i = 0; i < n_pending && !err && rc == SQLITE_DONE; i++) {
        if (r->ids[i] == 0) continue;
        sqlite3_bind_int64(s, 1, r->ids[i]);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const void *data = sqlite3_column_blob(s, 0);
            int len = sqlite3_column_bytes(s, 0);
            if (data && len > 0) err = load_chunk(r, data, (size_t)len, b);
            rc = SQLITE_DONE;
        }
        reset(s); /* none: deleted by retention since */
    }
    if (err) {
        span_batch_destroy(b);
        return err;
    }
    if (rc != SQLITE_DONE) {
        span_batch_destroy(b);
        return store_sqlite_err(r->db, rc, "load trace");
    }
    if (filter) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < b->n_spans; i++)
            if (memcmp(b->spans[i].trace_id, id, 16) == 0) b->spans[k++] = b->spans[i];
        b->n_spans = k;
    }
    if (b->n_spans == 0) {
        span_batch_destroy(b);
        return 0;
    }
    qsort(b->spans, b->n_spans, sizeof *b->spans, span_start_cmp);
    *out = b;
    return 0;
}

int store_get_trace(struct store *st, const uint8_t trace_id[16], struct span_batch **out)
{
    *out = NULL;
    struct reader *r;
    int rc = checkout(st, &r);
    if (rc) return rc;
    rc = load_trace(r, trace_id, true, out);
    checkin(st, r);
    if (rc == 0 && !*out) rc = -ENOENT;
    return rc;
}

/* ----- span matching ----------------------------------------------------------------------- */

static const char *kind_name(enum span_kind k)
{
    switch (k) {
    case SPAN_KIND_INTERNAL: return "internal";
    case SPAN_KIND_SERVER: return "server";
    case SPAN_KIND_CLIENT: return "client";
    case SPAN_KIND_PRODUCER: return "producer";
    case SPAN_KIND_CONSUMER: return "consumer";
    default: return "unspecified";
    }
}

static bool mstr_eq(struct mstr m, const char *s)
{
    size_t n = strlen(s);
    return m.ptr && m.len == n && memcmp(m.ptr, s, n) == 0;
}

static bool base64_eq(struct mstr m, const char *text)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t tlen = strlen(text), pos = 0;
    if (tlen != ((size_t)m.len + 2) / 3 * 4) return false;
    const uint8_t *p = (const uint8_t *)m.ptr;
    for (uint32_t i = 0; i < m.len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < m.len) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < m.len) v |= p[i + 2];
        char out[4] = {tbl[(v >> 18) & 63], tbl[(v >> 12) & 63],
                       i + 1 < m.len ? tbl[(v >> 6) & 63] : '=', i + 2 < m.len ? tbl[v & 63] : '='};
        if (memcmp(text + pos, out, 4) != 0) return false;
        pos += 4;
    }
    return true;
}

/* The value rendered as text equals text: bools "true"/"false", integers in decimal (or any
 * spelling of the same number), doubles by %g or numerically, strings as they are, bytes as
 * base64. Arrays and kvlists never match. */
static bool value_matches(const struct value *v, const char *text)
{
    switch (v->type) {
    case VALUE_STRING:
        return mstr_eq(v->u.str, text);
    case VALUE_BOOL:
        return strcmp(text, v->u.b ? "true" : "false") == 0;
    case VALUE_INT: {
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRId64, v->u.i);
        if (strcmp(buf, text) == 0) return true;
        char *end;
        errno = 0;
        long long n = strtoll(text, &end, 10);
        return *text && *end == '\0' && errno == 0 && n == v->u.i;
    }
    case VALUE_DOUBLE: {
        char buf[32];
        snprintf(buf, sizeof buf, "%g", v->u.d);
        if (strcmp(buf, text) == 0) return true;
        char *end;
        double d = strtod(text, &end);
        return *text && *end == '\0' && !isnan(d) && d == v->u.d;
    }
    case VALUE_BYTES:
        return base64_eq(v->u.str, text);
    default:
        return false;
    }
}

static const struct value *find_attr(const struct attrs *as, const char *key)
{
    for (uint32_t i = 0; i < as->n; i++)
        if (mstr_eq(as->items[i].key, key)) return &as->items[i].value;
    return NULL;
}

static bool tag_matches(const struct span *s, const struct tag_filter *t)
{
    if (!t->key || !t->value) return false;
    const struct value *v = find_attr(&s->attrs, t->key);
    if (!v && s->resource) v = find_attr(&s->resource->attrs, t->key);
    if (v && value_matches(v, t->value)) return true;
    if (strcmp(t->key, "error") == 0) {
        if (strcmp(t->value, "true") == 0) return span_is_error(s);
        if (strcmp(t->value, "false") == 0) return !span_is_error(s);
        return false;
    }
    if (strcmp(t->key, "span.kind") == 0) return strcasecmp(t->value, kind_name(s->kind)) == 0;
    if (strcmp(t->key, "otel.status_code") == 0) {
        if (s->status_code == STATUS_OK) return strcmp(t->value, "OK") == 0;
        if (s->status_code == STATUS_ERROR) return strcmp(t->value, "ERROR") == 0;
        return false;
    }
    if (strcmp(t->key, "otel.status_description") == 0)
        return s->status_code == STATUS_ERROR && mstr_eq(s->status_message, t->value);
    return false;
}

static bool span_matches(const struct trace_query *q, const struct span *s)
{
    if (strcmp(span_service_name(s), q->service) != 0) return false;
    if (q->operation && !mstr_eq(s->name, q->operation)) return false;
    if (q->span_kind && *q->span_kind && strcasecmp(q->span_kind, kind_name(s->kind)) != 0)
        return false;
    int64_t start = (int64_t)(s->start_unix_nano / 1000);
    if (start < q->start_us) return false;
    if (q->end_us > 0 && start > q->end_us) return false;
    int64_t dur = s->end_unix_nano > s->start_unix_nano
                      ? (int64_t)((s->end_unix_nano - s->start_unix_nano) / 1000)
                      : 0;
    if (q->min_duration_us > 0 && dur < q->min_duration_us) return false;
    if (q->max_duration_us > 0 && dur > q->max_duration_us) return false;
    if (q->errors_only && !span_is_error(s)) return false;
    for (size_t i = 0; i < q->n_tags; i++)
        if (!tag_matches(s, &q->tags[i])) return false;
    return true;
}

/* Latest start (us) of a span of trace id matching q, or -1. */
static int64_t match_start(const struct trace_query *q, const struct span_batch *b,
                           const uint8_t id[16])
{
    int64_t best = -1;
    for (uint32_t i = 0; i < b->n_spans; i++) {
        const struct span *s = &b->spans[i];
        if (memcmp(s->trace_id, id, 16) != 0 || !span_matches(q, s)) continue;
        int64_t start = (int64_t)(s->start_unix_nano / 1000);
        if (start > best) best = start;
    }
    return best;
}

/* ----- find traces ------------------------------------------------------------------------- */

struct found {
    struct span_batch *trace;
    int64_t start;
};

/* items is a min-heap of the best `limit` traces found so far, the worst (found_worse) at the
 * root: a trace that cannot make the result is freed as soon as it is judged, and the root's
 * start is the bar every later candidate must beat. */
struct find_state {
    struct found *items;
    size_t n, cap, limit;
    int64_t *seen; /* open-addressing set of trace keys already examined */
    size_t seen_cap, seen_n;
    bool seen_zero; /* key 0 marks empty slots, so it is tracked apart */
};

/* True if key was already seen; records it otherwise. -ENOMEM as a negative. */
static int seen_check(struct find_state *f, int64_t key)
{
    if (key == 0) {
        bool was = f->seen_zero;
        f->seen_zero = true;
        return was;
    }
    if ((f->seen_n + 1) * 2 > f->seen_cap) {
        size_t cap = f->seen_cap ? f->seen_cap * 2 : 1024;
        int64_t *s = calloc(cap, sizeof *s);
        if (!s) return -ENOMEM;
        for (size_t i = 0; i < f->seen_cap; i++) {
            if (!f->seen[i]) continue;
            size_t j = ((uint64_t)f->seen[i] * 0x9E3779B97F4A7C15ULL) >> 20 & (cap - 1);
            while (s[j]) j = (j + 1) & (cap - 1);
            s[j] = f->seen[i];
        }
        free(f->seen);
        f->seen = s;
        f->seen_cap = cap;
    }
    size_t j = ((uint64_t)key * 0x9E3779B97F4A7C15ULL) >> 20 & (f->seen_cap - 1);
    for (; f->seen[j]; j = (j + 1) & (f->seen_cap - 1))
        if (f->seen[j] == key) return 1;
    f->seen[j] = key;
    f->seen_n++;
    return 0;
}

static int found_cmp(const void *pa, const void *pb)
{
    const struct found *a = pa, *b = pb;
    if (a->start != b->start) return a->start > b->start ? -1 : 1;
    return memcmp(a->trace->spans[0].trace_id, b->trace->spans[0].trace_id, 16);
}

/* a ranks after b in the result (newest matching start first, then trace id). */
static bool found_worse(const struct found *a, const struct found *b)
{
    return found_cmp(a, b) > 0;
}

static void heap_down(struct found *h, size_t n, size_t i)
{
    for (;;) {
        size_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && found_worse(&h[l], &h[w])) w = l;
        if (r < n && found_worse(&h[r], &h[w])) w = r;
        if (w == i) return;
        struct found t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Offers trace b (consumed on every return path) with its matching start to the best limit. */
static int add_found(struct find_state *f, struct span_batch *b, int64_t start)
{
    struct found it = {b, start};
    if (f->n == f->limit) { /* full: replace the worst, or drop this one */
        if (!found_worse(&f->items[0], &it)) {
            span_batch_destroy(b);
            return 0;
        }
        span_batch_destroy(f->items[0].trace);
        f->items[0] = it;
        heap_down(f->items, f->n, 0);
        return 0;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 32;
        if (cap > f->limit) cap = f->limit;
        struct found *p = realloc(f->items, cap * sizeof *p);
        if (!p) {
            span_batch_destroy(b);
            return -ENOMEM;
        }
        f->items = p;
        f->cap = cap;
    }
    size_t i = f->n++; /* sift up */
    while (i > 0 && found_worse(&it, &f->items[(i - 1) / 2])) {
        f->items[i] = f->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    f->items[i] = it;
    return 0;
}

/* Evaluates the trace(s) under one key; matching ones go to f. */
static int examine(struct reader *r, const struct trace_query *q, const uint8_t *any_id,
                   struct find_state *f)
{
    struct span_batch *all;
    int rc = load_trace(r, any_id, false, &all);
    if (rc || !all) return rc;
    /* Nearly always one trace per key; a key collision means several, each judged alone. */
    bool single = true;
    for (uint32_t i = 1; i < all->n_spans && single; i++)
        single = memcmp(all->spans[i].trace_id, all->spans[0].trace_id, 16) == 0;
    if (single) {
        int64_t start = match_start(q, all, all->spans[0].trace_id);
        if (start < 0) {
            span_batch_destroy(all);
            return 0;
        }
        return add_found(f, all, start);
    }
    for (uint32_t i = 0; i < all->n_spans && !rc; i++) {
        const uint8_t *id = all->spans[i].trace_id;
        bool first = true;
        for (uint32_t j = 0; j < i && first; j++)
            first = memcmp(all->spans[j].trace_id, id, 16) != 0;
        if (!first) continue;
        int64_t start = match_start(q, all, id);
        if (start < 0) continue;
        struct span_batch *one;
        rc = load_trace(r, id, true, &one);
        if (!rc && one) rc = add_found(f, one, start);
    }
    span_batch_destroy(all);
    return rc;
}

int store_find_traces(struct store *st, const struct trace_query *q, struct span_batch ***out,
                      size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!q || !q->service || (q->n_tags && !q->tags)) return -EINVAL;
    size_t limit = q->limit ? q->limit : FIND_DEFAULT_LIMIT;
    if (limit > FIND_MAX_LIMIT) limit = FIND_MAX_LIMIT;
    struct find_state f = {.limit = limit};
    struct reader *r;
    int rc = checkout(st, &r);
    if (rc) return rc;
    if ((rc = run_simple(r, R_BEGIN))) goto done;

    sqlite3_stmt *s = r->stmt[R_SERVICE_ID];
    sqlite3_bind_text(s, 1, q->service, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    int64_t svc = step == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    reset(s);
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = store_sqlite_err(r->db, step, "find service");
        goto done;
    }
    if (step == SQLITE_DONE) goto done; /* unknown service: no traces */

    s = r->stmt[q->errors_only ? R_FIND_ERRORS : R_FIND];
    int64_t lo = q->start_us > INT64_MIN + INDEX_GROUP_SPREAD_US
                     ? q->start_us - INDEX_GROUP_SPREAD_US
                     : INT64_MIN;
    sqlite3_bind_int64(s, 1, svc);
    sqlite3_bind_int64(s, 2, lo);
    sqlite3_bind_int64(s, 3, q->end_us > 0 ? q->end_us : INT64_MAX);
    sqlite3_bind_int64(s, 4, q->min_duration_us > 0 ? q->min_duration_us : INT64_MIN);
    sqlite3_bind_int64(s, 5, q->max_duration_us > 0 ? q->max_duration_us : INT64_MAX);
    if (q->operation) sqlite3_bind_text(s, 6, q->operation, -1, SQLITE_STATIC);
    else sqlite3_bind_null(s, 6);

    unsigned examined = 0;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t key = sqlite3_column_int64(s, 0);
        int64_t row_start = sqlite3_column_int64(s, 1);
        /* Rows come newest first and a row's spans start within the spread of its start, so
         * once limit traces are found, a row starting a spread before the worst of them (the
         * heap's root: it only ever rises) cannot beat it, nor can any row after it. */
        if (f.n >= limit && row_start + INDEX_GROUP_SPREAD_US < f.items[0].start) break;
        int seen = seen_check(&f, key);
        if (seen < 0) {
            rc = seen;
            break;
        }
        if (seen) continue;
        if (++examined > FIND_MAX_CANDIDATES) {
            log_ratelimited(LOG_INFO, "store-cands",
                            "store: find_traces stopped after %u candidate traces",
                            FIND_MAX_CANDIDATES);
            break;
        }
        uint8_t id[16] = {0};
        for (int i = 0; i < 8; i++) id[8 + i] = (uint8_t)((uint64_t)key >> (56 - 8 * i));
        if ((rc = examine(r, q, id, &f))) break;
    }
    reset(s);
    if (!rc && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = store_sqlite_err(r->db, step, "find traces");

done:
    if (!sqlite3_get_autocommit(r->db)) run_simple(r, R_COMMIT);
    checkin(st, r);
    free(f.seen);
    if (rc == 0 && f.n) {
        qsort(f.items, f.n, sizeof *f.items, found_cmp);
        *out = malloc(f.n * sizeof **out);
        if (!*out) rc = -ENOMEM;
    }
    for (size_t i = 0; i < f.n; i++) {
        if (rc == 0) (*out)[(*n_out)++] = f.items[i].trace;
        else span_batch_destroy(f.items[i].trace);
    }
    free(f.items);
    return rc;
}

void store_free_traces(struct span_batch **traces, size_t n)
{
    if (!traces) return;
    for (size_t i = 0; i < n; i++) span_batch_destroy(traces[i]);
    free(traces);
}

/* ----- dictionaries and dependencies ------------------------------------------------------- */

static char *dup_text(sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    return strdup(t ? t : "");
}

int store_list_services(struct store *st, char ***out)
{
    *out = NULL;
    struct reader *r;
    int rc = checkout(st, &r);
    if (rc) return rc;
    size_t n = 0, cap = 16;
    char **list = calloc(cap + 1, sizeof *list);
    sqlite3_stmt *s = r->stmt[R_SERVICES];
    int step = SQLITE_DONE;
    if (!list) rc = -ENOMEM;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            char **p = realloc(list, (cap * 2 + 1) * sizeof *p);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            list = p;
            cap *= 2;
        }
        list[n] = dup_text(s, 0);
        if (!list[n]) rc = -ENOMEM;
        else list[++n] = NULL;
    }
    reset(s);
    if (!rc && step != SQLITE_DONE) rc = store_sqlite_err(r->db, step, "list services");
    checkin(st, r);
    if (rc) {
        if (list) list[n] = NULL;
        store_free_strings(list);
        return rc;
    }
    list[n] = NULL;
    *out = list;
    return 0;
}

void store_free_strings(char **strings)
{
    if (!strings) return;
    for (char **p = strings; *p; p++) free(*p);
    free(strings);
}

int store_list_operations(struct store *st, const char *service, enum span_kind kind,
                          struct operation_info **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!service) return -EINVAL;
    struct reader *r;
    int rc = checkout(st, &r);
    if (rc) return rc;
    struct operation_info *ops = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s = r->stmt[R_OPERATIONS];
    sqlite3_bind_text(s, 1, service, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, (int)kind);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct operation_info *p = realloc(ops, cap * sizeof *p);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            ops = p;
        }
        ops[n].name = dup_text(s, 0);
        ops[n].kind = (enum span_kind)sqlite3_column_int(s, 1);
        if (!ops[n].name) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    reset(s);
    if (!rc && step != SQLITE_DONE) rc = store_sqlite_err(r->db, step, "list operations");
    checkin(st, r);
    if (rc) {
        store_free_operations(ops, n);
        return rc;
    }
    *out = ops;
    *n_out = n;
    return 0;
}

void store_free_operations(struct operation_info *ops, size_t n)
{
    if (!ops) return;
    for (size_t i = 0; i < n; i++) free(ops[i].name);
    free(ops);
}

static int64_t second_of(int64_t us)
{
    int64_t q = us / 1000000;
    return (us % 1000000 != 0 && us < 0) ? q - 1 : q;
}

/* Far enough in the past for "all time", with room for the "- 60" in the queries. */
#define ALL_TIME_S (INT64_MIN / 4)

static int64_t floor_to(int64_t s, int64_t unit)
{
    int64_t q = s / unit;
    return (s % unit != 0 && s < 0 ? q - 1 : q) * unit;
}

static int64_t ceil_to(int64_t s, int64_t unit)
{
    int64_t f = floor_to(s, unit);
    return f < s ? f + unit : f;
}

/* Binds EDGE_ROWS' parameters for the window [start_s, end_s] (seconds). */
static void bind_edge_window(sqlite3_stmt *s, int64_t start_s, int64_t end_s)
{
    int64_t a = ceil_to(start_s, ROLLUP_10MIN_S), d = floor_to(end_s, ROLLUP_10MIN_S);
    int64_t b, c;
    if (a >= d) { /* no whole 10 min: fine rows only */
        a = b = c = d = end_s + 1;
    } else {
        b = ceil_to(a, ROLLUP_HOUR_S);
        c = floor_to(d, ROLLUP_HOUR_S);
        if (b >= c) b = c = d; /* no whole hour: 10 min rows for [a, d) */
    }
    sqlite3_bind_int64(s, 1, start_s);
    sqlite3_bind_int64(s, 2, end_s);
    sqlite3_bind_int64(s, 3, a);
    sqlite3_bind_int64(s, 4, b);
    sqlite3_bind_int64(s, 5, c);
    sqlite3_bind_int64(s, 6, d);
}

int store_dependencies(struct store *st, int64_t end_us, int64_t lookback_us,
                       struct dependency_link **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    struct reader *r;
    int rc = checkout(st, &r);
    if (rc) return rc;
    struct dependency_link *deps = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s = r->stmt[R_DEPENDENCIES];
    bind_edge_window(s, lookback_us > 0 ? second_of(end_us - lookback_us) : ALL_TIME_S,
                     second_of(end_us));
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct dependency_link *p = realloc(deps, cap * sizeof *p);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            deps = p;
        }
        struct dependency_link *d = &deps[n];
        d->parent = dup_text(s, 0);
        d->child = dup_text(s, 1);
        d->call_count = (uint64_t)sqlite3_column_int64(s, 2);
        d->error_count = (uint64_t)sqlite3_column_int64(s, 3);
        n++;
        if (!d->parent || !d->child) {
            rc = -ENOMEM;
            break;
        }
    }
    reset(s);
    if (!rc && step != SQLITE_DONE) rc = store_sqlite_err(r->db, step, "dependencies");
    checkin(st, r);
    if (rc) {
        store_free_dependencies(deps, n);
        return rc;
    }
    *out = deps;
    *n_out = n;
    return 0;
}

void store_free_dependencies(struct dependency_link *deps, size_t n)
{
    if (!deps) return;
    for (size_t i = 0; i < n; i++) {
        free(deps[i].parent);
        free(deps[i].child);
    }
    free(deps);
}

/* ----- service graph ----------------------------------------------------------------------- */

/* An edge being summed: its key, counts and histogram. */
struct graph_agg {
    int64_t client, server;
    int conn;
    uint64_t calls, errors;
    uint64_t hist[HIST_BUCKETS];
    bool keep; /* passes the namespace filter */
};

/* A node met in the rollups, with its name once resolved. */
struct graph_nid {
    int64_t id;
    char *name;
    char *ns;
    size_t out_index; /* position in graph.nodes; SIZE_MAX while not kept */
    uint64_t calls, errors;
    uint64_t hist[HIST_BUCKETS];
};

struct graph_work {
    struct graph_agg *aggs;
    size_t n_aggs, cap_aggs;
    int32_t *slots; /* open addressing over aggs, n_slots a power of two */
    size_t n_slots;
    struct graph_nid *nodes;
    size_t n_nodes, cap_nodes;
};

static const char *const conn_names[CONN_TYPES] = {"", "messaging_system", "database",
                                                   "virtual_node"};

static uint64_t agg_hash(int64_t c, int64_t s, int conn)
{
    uint64_t h = ((uint64_t)c * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)s * 0xC2B2AE3D27D4EB4FULL);
    h ^= (uint64_t)conn * 0x165667B19E3779F9ULL;
    return h ^ (h >> 31);
}

static struct graph_agg *agg_get(struct graph_work *w, int64_t c, int64_t s, int conn)
{
    if ((w->n_aggs + 1) * 2 > w->n_slots) {
        size_t n = w->n_slots ? w->n_slots * 2 : 64;
        int32_t *slots = malloc(n * sizeof *slots);
        if (!slots) return NULL;
        memset(slots, 0xff, n * sizeof *slots);
        for (size_t k = 0; k < w->n_aggs; k++) {
            size_t i = agg_hash(w->aggs[k].client, w->aggs[k].server, w->aggs[k].conn) & (n - 1);
            while (slots[i] >= 0) i = (i + 1) & (n - 1);
            slots[i] = (int32_t)k;
        }
        free(w->slots);
        w->slots = slots;
        w->n_slots = n;
    }
    size_t mask = w->n_slots - 1;
    for (size_t i = agg_hash(c, s, conn) & mask;; i = (i + 1) & mask) {
        int32_t k = w->slots[i];
        if (k < 0) {
            if (w->n_aggs == w->cap_aggs) {
                size_t cap = w->cap_aggs ? w->cap_aggs * 2 : 16;
                struct graph_agg *p = realloc(w->aggs, cap * sizeof *p);
                if (!p) return NULL;
                w->aggs = p;
                w->cap_aggs = cap;
            }
            struct graph_agg *a = &w->aggs[w->n_aggs];
            memset(a, 0, sizeof *a);
            a->client = c;
            a->server = s;
            a->conn = conn;
            w->slots[i] = (int32_t)w->n_aggs++;
            return a;
        }
        struct graph_agg *a = &w->aggs[k];
        if (a->client == c && a->server == s && a->conn == conn) return a;
    }
}

/* The node of id (added unnamed if new); NULL on out of memory. Few nodes: a linear search. */
static struct graph_nid *nid_get(struct graph_work *w, int64_t id)
{
    for (size_t i = 0; i < w->n_nodes; i++)
        if (w->nodes[i].id == id) return &w->nodes[i];
    if (w->n_nodes == w->cap_nodes) {
        size_t cap = w->cap_nodes ? w->cap_nodes * 2 : 16;
        struct graph_nid *p = realloc(w->nodes, cap * sizeof *p);
        if (!p) return NULL;
        w->nodes = p;
        w->cap_nodes = cap;
    }
    struct graph_nid *n = &w->nodes[w->n_nodes++];
    memset(n, 0, sizeof *n);
    n->id = id;
    n->out_index = SIZE_MAX;
    return n;
}

static void graph_work_free(struct graph_work *w)
{
    for (size_t i = 0; i < w->n_nodes; i++) {
        free(w->nodes[i].name);
        free(w->nodes[i].ns);
    }
    free(w->nodes);
    free(w->aggs);
    free(w->slots);
}

/* Names a node: services and virtual nodes from their dictionaries, "user" for 0. A node whose
 * row is gone (never: dictionaries are not trimmed) is named by its id. */
static int name_node(struct reader *r, struct graph_nid *n)
{
    int rc = 0;
    if (n->id == ROLLUP_NODE_USER) {
        n->name = strdup("user");
        n->ns = strdup("");
    } else {
        sqlite3_stmt *s = r->stmt[n->id > 0 ? R_NODE_SERVICE : R_NODE_VIRTUAL];
        sqlite3_bind_int64(s, 1, n->id > 0 ? n->id : -n->id);
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            n->name = dup_text(s, 0);
            n->ns = n->id > 0 ? dup_text(s, 1) : strdup("");
        } else if (step == SQLITE_DONE) {
            char tmp[32];
            snprintf(tmp, sizeof tmp, "#%" PRId64, n->id);
            n->name = strdup(tmp);
            n->ns = strdup("");
        } else {
            rc = store_sqlite_err(r->db, step, "graph node");
        }
        reset(s);
    }
    if (!rc && (!n->name || !n->ns)) rc = -ENOMEM;
    return rc;
}

static enum graph_node_kind nid_kind(int64_t id)
{
    return id > 0 ? GRAPH_NODE_SERVICE : id == 0 ? GRAPH_NODE_USER : GRAPH_NODE_VIRTUAL;
}

static void red_of(struct graph_red *out, uint64_t calls, uint64_t errors,
                   const uint64_t hist[HIST_BUCKETS], double window_s)
{
    out->requests = calls;
    out->errors = errors;
    out->rate = window_s > 0 ? (double)calls / window_s : 0;
    out->error_rate = calls ? (double)errors / (double)calls : 0;
    out->p50_ms = hist_quantile(hist, 0.50);
    out->p95_ms = hist_quantile(hist, 0.95);
    out->p99_ms = hist_quantile(hist, 0.99);
}

static int nid_rank(int64_t id)
{
    return id == ROLLUP_NODE_USER ? 0 : id > 0 ? 1 : 2; /* user, services, virtual nodes */
}

static int nid_cmp(const void *pa, const void *pb)
{
    const struct graph_nid *a = pa, *b = pb;
    if (nid_rank(a->id) != nid_rank(b->id)) return nid_rank(a->id) - nid_rank(b->id);
    int c = strcmp(a->name, b->name);
    if (c) return c;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int edge_cmp(const void *pa, const void *pb)
{
    const struct graph_edge *a = pa, *b = pb;
    if (a->source != b->source) return a->source < b->source ? -1 : 1;
    if (a->target != b->target) return a->target < b->target ? -1 : 1;
    return strcmp(a->connection_type, b->connection_type);
}

static size_t nid_index(const struct graph_work *w, int64_t id)
{
    for (size_t i = 0; i < w->n_nodes; i++)
        if (w->nodes[i].id == id) return w->nodes[i].out_index;
    return SIZE_MAX; /* not reached: every edge's nodes are in w->nodes */
}

/* Builds the output graph from the summed edges (those with keep set; nodes named). */
static int graph_build(struct graph_work *w, int64_t start_us, int64_t end_us, struct graph **out)
{
    double window_s = (double)(end_us - start_us) / 1e6;
    struct graph *g = calloc(1, sizeof *g);
    if (!g) return -ENOMEM;
    g->start_us = start_us;
    g->end_us = end_us;
    size_t kept = 0;
    for (size_t i = 0; i < w->n_aggs; i++) kept += w->aggs[i].keep;
    g->edges = calloc(kept ? kept : 1, sizeof *g->edges);
    g->nodes = calloc(w->n_nodes ? w->n_nodes : 1, sizeof *g->nodes);
    if (!g->edges || !g->nodes) goto oom;
    /* Nodes of kept edges, with their inbound sums; then sorted, numbered and copied out. */
    if (w->n_nodes > 1) qsort(w->nodes, w->n_nodes, sizeof *w->nodes, nid_cmp);
    for (size_t i = 0; i < w->n_aggs; i++) {
        const struct graph_agg *a = &w->aggs[i];
        if (!a->keep) continue;
        struct graph_nid *c = NULL, *s = NULL;
        for (size_t k = 0; k < w->n_nodes; k++) {
            if (w->nodes[k].id == a->client) c = &w->nodes[k];
            if (w->nodes[k].id == a->server) s = &w->nodes[k];
        }
        if (!c || !s) continue; /* not reached */
        c->out_index = s->out_index = 0; /* kept */
        s->calls += a->calls;
        s->errors += a->errors;
        for (unsigned b = 0; b < HIST_BUCKETS; b++) s->hist[b] += a->hist[b];
    }
    for (size_t i = 0; i < w->n_nodes; i++) {
        struct graph_nid *n = &w->nodes[i];
        if (n->out_index == SIZE_MAX) continue;
        n->out_index = g->n_nodes;
        struct graph_node *o = &g->nodes[g->n_nodes++];
        o->name = n->name;
        o->namespace = n->ns;
        n->name = n->ns = NULL; /* moved */
        o->kind = nid_kind(n->id);
        red_of(&o->inbound, n->calls, n->errors, n->hist, window_s);
    }
    for (size_t i = 0; i < w->n_aggs; i++) {
        const struct graph_agg *a = &w->aggs[i];
        if (!a->keep) continue;
        struct graph_edge *e = &g->edges[g->n_edges++];
        e->source = nid_index(w, a->client);
        e->target = nid_index(w, a->server);
        e->connection_type = conn_names[a->conn >= 0 && a->conn < CONN_TYPES ? a->conn : 0];
        red_of(&e->red, a->calls, a->errors, a->hist, window_s);
    }
    if (g->n_edges > 1) qsort(g->edges, g->n_edges, sizeof *g->edges, edge_cmp);
    *out = g;
    return 0;
oom:
    store_free_graph(g);
    return -ENOMEM;
}

int store_graph(struct store *st, int64_t start_us, int64_t end_us, const char *namespace,
                struct graph **out)
{
    *out = NULL;
    if (end_us <= start_us) return -EINVAL;
    if (namespace && !*namespace) namespace = NULL;
    struct graph_work w = {0};
    struct reader *r;
    int rc = checkout(st, &r);
    if (rc) return rc;
    /* One read transaction: the rows and the names they refer to are one snapshot. */
    if ((rc = run_simple(r, R_BEGIN))) goto done;
    sqlite3_stmt *s = r->stmt[R_GRAPH];
    bind_edge_window(s, second_of(start_us), second_of(end_us));
    int step;
    unsigned bad_blobs = 0;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct graph_agg *a = agg_get(&w, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                                      sqlite3_column_int(s, 2));
        if (!a) {
            rc = -ENOMEM;
            break;
        }
        a->calls += (uint64_t)sqlite3_column_int64(s, 3);
        a->errors += (uint64_t)sqlite3_column_int64(s, 4);
        const void *blob = sqlite3_column_blob(s, 5);
        if (blob && hist_decode_add(blob, (size_t)sqlite3_column_bytes(s, 5), a->hist) != 0)
            bad_blobs++;
    }
    reset(s);
    if (!rc && step != SQLITE_DONE) rc = store_sqlite_err(r->db, step, "graph");
    if (bad_blobs)
        log_ratelimited(LOG_WARN, "store-graph-hist", "store: %u malformed latency histograms",
                        bad_blobs);
    for (size_t i = 0; !rc && i < w.n_aggs; i++) {
        struct graph_nid *c = nid_get(&w, w.aggs[i].client);
        if (!c || !c->name) rc = c ? name_node(r, c) : -ENOMEM;
        struct graph_nid *v = rc ? NULL : nid_get(&w, w.aggs[i].server);
        if (!rc && (!v || !v->name)) rc = v ? name_node(r, v) : -ENOMEM;
    }
    run_simple(r, R_COMMIT);
    if (rc) goto done;
    /* Namespace filter: an edge stays when a service at either end is in the namespace. */
    for (size_t i = 0; i < w.n_aggs; i++) {
        struct graph_agg *a = &w.aggs[i];
        a->keep = !namespace;
        for (int side = 0; side < 2 && !a->keep; side++) {
            int64_t id = side ? a->server : a->client;
            if (id <= 0) continue;
            const struct graph_nid *n = nid_get(&w, id);
            a->keep = n && strcmp(n->ns, namespace) == 0;
        }
    }
    rc = graph_build(&w, start_us, end_us, out);
done:
    checkin(st, r);
    graph_work_free(&w);
    return rc;
}

void store_free_graph(struct graph *g)
{
    if (!g) return;
    for (size_t i = 0; i < g->n_nodes; i++) {
        free(g->nodes[i].name);
        free(g->nodes[i].namespace);
    }
    free(g->nodes);
    free(g->edges);
    free(g);
}
