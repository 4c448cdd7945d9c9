/*
 * storage_int.h: declarations shared by the storage module's files and its unit tests; not part
 * of the public interface (that is storage.h).
 *
 *  - struct buf, a growable byte buffer the writer reuses between calls;
 *  - the span codec (codec.c): the binary form of a chunk of spans stored in one row;
 *  - chunks prepared ahead of the writer (store_prepare_batch), which the batch owns;
 *  - the read-only connection pool (store_read.c) the store (store.c) owns;
 *  - helpers both store files use (error mapping, time units);
 *  - the edge rollups' latency histogram (rollup.c) and their node-id and bucket conventions;
 *  - test hooks, used only by tests/test_storage.c.
 */
#ifndef MESHSCOPE_STORAGE_INT_H
#define MESHSCOPE_STORAGE_INT_H

#include "storage.h"

#include <sqlite3.h>

/* ----- byte buffer ------------------------------------------------------------------------- */
struct buf {
    uint8_t *p;
    size_t len;
    size_t cap;
};
/* Makes room for extra more bytes; -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Accepts a zeroed buffer. */
void buf_free(struct buf *b);

/* ----- codec ------------------------------------------------------------------------------- */

/* AnyValue nesting the codec keeps. The ingest decoders cap nesting lower (16 by default, see
 * collector/otlp.h); a value nested deeper is stored as VALUE_EMPTY rather than failing the
 * whole write, and the decoder refuses deeper input as corrupt. */
#define CODEC_MAX_DEPTH 64
/* Largest decompressed chunk a reader accepts: a chunk is one trace's spans from one write
 * call, and a write call is bounded by the ingest queue, far below this. */
#define CODEC_MAX_CHUNK_RAW (64u << 20)

/* Appends the encoding of n spans (any traces; resources and scopes written once per chunk,
 * deduplicated by pointer) to out. Borrows everything. 0 or -ENOMEM. */
int codec_encode_chunk(struct buf *out, const struct span *const *spans, size_t n);
/* Decodes a whole chunk of len bytes and appends its spans to b (all memory from b's arena).
 * Returns 0, -EINVAL for malformed input (truncated, trailing bytes, bad tags, nesting deeper
 * than CODEC_MAX_DEPTH) leaving b's span count as it was, or -ENOMEM. Borrows p and b. */
int codec_decode_chunk(const uint8_t *p, size_t len, struct span_batch *b);

/* ----- prepared chunks (store.c, store_prepare_batch) ---------------------------------------- */

/* One trace's spans of a batch: n_spans spans, stored as len compressed bytes at data + off. */
struct prepared_chunk {
    uint8_t trace_id[16];
    uint32_t n_spans;
    uint32_t len;
    size_t off;
};
struct prepared_chunks {
    size_t n;
    struct prepared_chunk *chunks; /* n, in the order the writer inserts them */
    struct buf data;
    /* Per span of the batch, in its order: PREP_N_MARKS bits (span_request_marks' count) and
     * PREP_ERROR (span_is_error), and the marks. */
    uint8_t *span_flags;
    uint64_t (*marks)[2];
    /* While the store samples chunk encodings for its dictionary: the chunks' encodings before
     * compression (raw_len[i] bytes each, in chunk order), which the writer samples. Else NULL. */
    struct buf raw;
    uint32_t *raw_len;
};
#define PREP_N_MARKS 3u
#define PREP_ERROR 4u
/* Accepts NULL. span_batch_destroy calls it (model.c). */
void prepared_chunks_free(struct prepared_chunks *p);

/* ----- access-log records (access_log.c) ---------------------------------------------------- */

/* Appends the stored form of l (see access_log.c) to out. Borrows l. 0 or -ENOMEM. */
int alog_encode(struct buf *out, const struct access_log *l);
/* Decodes one stored record of len bytes and appends it to b (strings in b's arena). Returns 0,
 * -EINVAL for malformed input (b unchanged) or -ENOMEM. Borrows p. */
int alog_decode(const uint8_t *p, size_t len, struct span_batch *b);
/* Like alog_decode into *out, but its strings point into p (borrowed, NOT NUL-terminated): a
 * look at a record before deciding to keep it. 0 or -EINVAL. */
int alog_view(const uint8_t *p, size_t len, struct access_log *out /* OUT */);

/* Blocks of records (access_log_blocks.data before zstd, see access_log.c): start one in out
 * (clearing it), add records (encoded in place; *rec_off = where the encoding starts in out);
 * read them back with an iterator. 0 or -ENOMEM (out as before the call). */
int alog_block_start(struct buf *out);
int alog_block_add(struct buf *out, const struct access_log *l, size_t *rec_off /* OUT */);
struct alog_block_iter {
    const uint8_t *p, *end;
};
/* 0, or -EINVAL when p is not a block. Borrows p. */
int alog_block_open(struct alog_block_iter *it, const uint8_t *p, size_t len);
/* 1 and the next record in *rec and *len (borrowed from the block), 0 at the end, -EINVAL when
 * the block is malformed. */
int alog_block_next(struct alog_block_iter *it, const uint8_t **rec, size_t *len);

/* Bloom filter over the trace and request keys of a block's records (access_log_blocks.bloom):
 * alog_bloom_bytes(n) zeroed bytes, alog_bloom_add each key; alog_bloom_maybe is false only when
 * the key is certainly absent (always false for an empty filter). */
#define ALOG_BLOOM_BITS_PER_KEY 10u
#define ALOG_BLOOM_K 7u
size_t alog_bloom_bytes(size_t n_keys);
void alog_bloom_add(uint8_t *bloom, size_t bytes, int64_t key);
bool alog_bloom_maybe(const uint8_t *bloom, size_t bytes, int64_t key);

/* ----- shared between store.c and store_read.c --------------------------------------------- */
#define US_PER_MINUTE 60000000LL
/* Index rows group the spans of one (trace, service, operation) within this much start time,
 * so a query window widened by it at the low end finds every candidate row. */
#define INDEX_GROUP_SPREAD_US US_PER_MINUTE
/* An access-log block's records start within this much of its first (store.c cuts blocks so),
 * so a block holding a record of [start, end] has max_time_us in [start, end + this]. */
#define LOG_BLOCK_SPAN_US US_PER_MINUTE

/* Maps an SQLite result code to a negative errno (SQLITE_FULL -> -ENOSPC, SQLITE_NOMEM ->
 * -ENOMEM, anything else -> -EIO) and logs "store: <what>: <sqlite message>" (rate-limited). */
int store_sqlite_err(sqlite3 *db, int rc, const char *what);

/* The trace key used for chunk and index rows: the last 8 bytes of the id (its low half, random
 * for 64-bit Zipkin ids too), big-endian. */
int64_t trace_key_of(const uint8_t trace_id[16]);

/* The access_logs.request_key of a request id (schema v5): 64-bit FNV-1a of its bytes. A hash,
 * not the id: readers compare the decoded request_id too (collisions). */
int64_t request_key_of(const char *id, size_t len);

/* ----- trace index rows not yet written (trace_pending.c; see its top and store.c DESIGN) ---
 * The writer thread adds, plans and merges; reader threads pin, look up and unpin. */
struct tpend;
struct tpend_entry {
    int64_t key;   /* trace_key_of */
    int64_t chunk; /* chunks.id */
};
/* NULL on out of memory. */
struct tpend *tpend_create(void);
/* Accepts NULL. No reader may hold a pin. */
void tpend_destroy(struct tpend *t);
/* Writer: the entries of chunks about to be committed, in chunk order (borrows e). 0, -ENOMEM,
 * or -E2BIG when live would outgrow its cap (then none was added). */
int tpend_add(struct tpend *t, const struct tpend_entry *e, size_t n, int64_t now_us);
/* Writer: takes back the last n entries added (their transaction failed). */
void tpend_unadd(struct tpend *t, size_t n);
/* Writer, before a write transaction: seals live into a run when it is due, then names the next
 * piece to merge (at most max entries, in key order; *piece points into the run and stays valid
 * until tpend_merged or the next plan) and *watermark, the smallest chunk id still waiting once
 * that piece is in (INT64_MAX: none but the coming transaction's). A seal that cannot get memory
 * waits for a later call. */
void tpend_plan(struct tpend *t, int64_t now_us, size_t max, const struct tpend_entry **piece,
                size_t *n, int64_t *watermark);
/* Writer, after the transaction holding the planned piece committed: n entries are in. */
void tpend_merged(struct tpend *t, size_t n);
/* Entries waiting (live and the unmerged parts of runs). Any thread. */
size_t tpend_count(struct tpend *t);
/* Reader, before its first SQL statement: *token for tpend_lookup, until tpend_unpin.
 * 0 or -ENOMEM (then lookups are still answered, unprotected). */
int tpend_pin(struct tpend *t, uint64_t *token);
void tpend_unpin(struct tpend *t, uint64_t token);
/* Reader: appends to *ids (realloc'd, *n used of *cap) the chunk ids of key that the reader's
 * snapshot may not have in trace_index; may repeat some it has. 0, -ENOMEM, or -EAGAIN: entries
 * this pin needed were freed (trace_pending.c), the answer would be incomplete. */
int tpend_lookup(struct tpend *t, uint64_t token, int64_t key, int64_t **ids, size_t *n,
                 size_t *cap);
/* The pending trace index of a store (store.c). */
struct tpend *store_tpend(struct store *st);

/* Read-only connection pool (store_read.c). */
struct read_pool;
/* Opens nothing yet (connections are opened on first use, up to size); NULL on out of memory.
 * Borrows path (copies it). */
struct read_pool *read_pool_create(const char *path, unsigned size);
/* Accepts NULL. No connection may be checked out. */
void read_pool_destroy(struct read_pool *p);
/* The pool of a store (store.c). */
struct read_pool *store_read_pool(struct store *st);

/* ----- edge rollups (rollup.c; written by store.c, read by store_read.c) -------------------
 *
 * edge_rollup rows are keyed by (bucket start in seconds, resolution in seconds, client node,
 * server node, connection type). Node ids: > 0 a services.id, 0 the "user" node (callers outside
 * the traces), < 0 minus a virtual_nodes.id (an uninstrumented peer). */
#define ROLLUP_FINE_S 10       /* resolution of fresh rollups */
#define ROLLUP_COARSE_S 60     /* resolution after downsampling */
#define ROLLUP_10MIN_S 600     /* (v4) summaries: the exact sum of the fine rows of 10 min */
#define ROLLUP_HOUR_S 3600     /* (v4) summaries: the exact sum of the fine rows of an hour */
#define ROLLUP_NODE_USER 0
enum rollup_conn { CONN_PLAIN = 0, CONN_MESSAGING, CONN_DATABASE, CONN_VIRTUAL, CONN_TYPES };

/* 102 finite upper bounds (us), 0.1 ms * 2^(i/4), and one overflow bucket (see rollup.c). */
#define HIST_BOUNDS 102
#define HIST_BUCKETS (HIST_BOUNDS + 1)
extern const int64_t hist_bound_us[HIST_BOUNDS];
/* Index of the bucket counting a duration (first bound >= dur_us; HIST_BOUNDS above them all). */
unsigned hist_bucket_of(int64_t dur_us);
/* Appends the sparse blob of counts to out (nothing for an empty histogram). 0 or -ENOMEM. */
int hist_encode(struct buf *out, const uint64_t counts[HIST_BUCKETS]);
/* Adds the blob's counts to counts. 0, or -EINVAL for a malformed blob (counts then partly
 * added). Borrows p. */
int hist_decode_add(const uint8_t *p, size_t len, uint64_t counts[HIST_BUCKETS]);
/* The q-quantile in milliseconds, interpolated as Prometheus' histogram_quantile; NaN when the
 * histogram is empty. */
double hist_quantile(const uint64_t counts[HIST_BUCKETS], double q);
/* Registers hist_merge(a, b) (the blob of the sum) and the aggregate hist_sum(x) (the blob of
 * the sum over the group) on a connection. 0 or a negative errno. */
int rollup_register_functions(sqlite3 *db);

/* ----- test hooks (tests/test_storage.c only) ---------------------------------------------- */
/* Receive time the writer records instead of the real clock (0 = real clock again). */
void store_test_set_clock(struct store *st, int64_t now_us);
/* Sample bytes after which the writer trains its compression dictionary. Writer thread. */
void store_test_set_dict_threshold(struct store *st, size_t bytes);
/* Waits for dictionary trainers that are running and starts using their dictionaries (a
 * dictionary is otherwise picked up by a write call after it is ready). Writer thread. */
void store_test_wait_dicts(struct store *st);
/* PRAGMA max_page_count on the writer connection, to provoke SQLITE_FULL. Writer thread. */
int store_test_set_max_pages(struct store *st, unsigned pages);

#endif
