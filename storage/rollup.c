/*
 * rollup.c: the latency histogram of the edge rollups (store.c writes them, store_read.c sums
 * them): bucket bounds, the sparse blob encoding stored in edge_rollup.hist, merging (also as
 * the SQL function hist_merge(a, b) the writer's upsert uses, and the aggregate hist_sum(x) of
 * the v4 migration) and quantiles.
 *
 * Bounds: 102 log-spaced upper bounds, 0.1 ms * 2^(i/4) for i = 0..101 (0.1 ms to ~66 min),
 * rounded to whole microseconds, plus one bucket above the largest. A quarter-octave bucket is
 * ~19% wide, so an interpolated percentile is within ~19% of the true value, where Envoy's
 * default bounds (0.5, 1, 5, 10, 25, ... ms, as Istio's histograms use) leave 2.5x gaps; the
 * fine buckets cost nothing on disk because the blob stores only non-zero buckets.
 *
 * Blob: a sequence of (bucket index, count) pairs, each a LEB128 varint, indexes ascending and
 * counts non-zero. An empty histogram is the empty blob (v1 rollups migrated to v2 have one:
 * they counted calls but no latency).
 *
 * Quantiles are interpolated as Prometheus' histogram_quantile does: the rank q * total falls in
 * bucket i; the result is lower_i + (upper_i - lower_i) * (rank - below_i) / count_i, with
 * lower_0 = 0, and the largest finite bound for a rank in the overflow bucket.
 *
 * Pure functions on caller memory: thread-safe.
 */
#include "storage_int.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* round(100 * 2^(i/4)) microseconds, i = 0..101 (python3: [round(100*2**(i/4)) for i in ...]). */
const int64_t hist_bound_us[HIST_BOUNDS] = {
    100,        119,        141,        168,        200,        238,        283,        336,
    400,        476,        566,        673,        800,        951,        1131,       1345,
    1600,       1903,       2263,       2691,       3200,       3805,       4525,       5382,
    6400,       7611,       9051,       10763,      12800,      15222,      18102,      21527,
    25600,      30444,      36204,      43054,      51200,      60887,      72408,      86108,
    102400,     121775,     144815,     172216,     204800,     243550,     289631,     344431,
    409600,     487099,     579262,     688862,     819200,     974198,     1158524,    1377725,
    1638400,    1948397,    2317048,    2755449,    3276800,    3896794,    4634095,    5510899,
    6553600,    7793588,    9268190,    11021797,   13107200,   15587175,   18536380,   22043595,
    26214400,   31174351,   37072760,   44087190,   52428800,   62348702,   74145520,   88174380,
    104857600,  124697404,  148291040,  176348760,  209715200,  249394808,  296582080,  352697520,
    419430400,  498789616,  593164160,  705395040,  838860800,  997579232,  1186328320, 1410790079,
    1677721600, 1995158464, 2372656641, 2821580158, 3355443200, 3990316927,
};

unsigned hist_bucket_of(int64_t dur_us)
{
    /* First bound >= dur_us (Prometheus' "le"), HIST_BOUNDS for the overflow bucket. */
    unsigned lo = 0, hi = HIST_BOUNDS;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (hist_bound_us[mid] < dur_us)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int put_varint(struct buf *b, uint64_t v)
{
    if (buf_reserve(b, 10) != 0) return -ENOMEM;
    while (v >= 0x80) {
        b->p[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->p[b->len++] = (uint8_t)v;
    return 0;
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t c = *(*p)++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -EINVAL;
}

int hist_encode(struct buf *out, const uint64_t counts[HIST_BUCKETS])
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!counts[i]) continue;
        if (put_varint(out, i) || put_varint(out, counts[i])) return -ENOMEM;
    }
    return 0;
}

int hist_decode_add(const uint8_t *p, size_t len, uint64_t counts[HIST_BUCKETS])
{
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t i, n;
        if (get_varint(&p, end, &i) || get_varint(&p, end, &n) || i >= HIST_BUCKETS) return -EINVAL;
        counts[i] += n;
    }
    return 0;
}

double hist_quantile(const uint64_t counts[HIST_BUCKETS], double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += counts[i];
    if (!total) return NAN;
    if (q < 0) q = 0;
    if (q > 1) q = 1;
    double rank = q * (double)total, below = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!counts[i]) continue;
        if (below + (double)counts[i] >= rank) {
            if (i == HIST_BOUNDS) return (double)hist_bound_us[HIST_BOUNDS - 1] / 1000.0;
            double lo = i ? (double)hist_bound_us[i - 1] : 0, hi = (double)hist_bound_us[i];
            return (lo + (hi - lo) * (rank - below) / (double)counts[i]) / 1000.0;
        }
        below += (double)counts[i];
    }
    return (double)hist_bound_us[HIST_BOUNDS - 1] / 1000.0; /* not reached */
}

/* hist_merge(a, b): the blob of the sum of two histograms. A malformed operand (never written
 * by meshscope) counts as empty rather than failing the writer's transaction. */
static void sql_hist_merge(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    uint64_t counts[HIST_BUCKETS] = {0};
    for (int a = 0; a < argc; a++) {
        const uint8_t *p = sqlite3_value_blob(argv[a]);
        int n = sqlite3_value_bytes(argv[a]);
        if (p && n > 0) {
            uint64_t one[HIST_BUCKETS] = {0};
            if (hist_decode_add(p, (size_t)n, one) == 0)
                for (unsigned i = 0; i < HIST_BUCKETS; i++)
                    counts[i] += one[i];
        }
    }
    struct buf out = {0};
    if (hist_encode(&out, counts) != 0) {
        buf_free(&out);
        sqlite3_result_error_nomem(ctx);
        return;
    }
    sqlite3_result_blob(ctx, out.len ? (const void *)out.p : "", (int)out.len, SQLITE_TRANSIENT);
    buf_free(&out);
}

/* hist_sum(x): aggregate, the blob of the sum of a group's histograms (malformed ones count as
 * empty, as in hist_merge). The state is the counts array in SQLite's aggregate context. */
static void sql_hist_sum_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    uint64_t *counts = sqlite3_aggregate_context(ctx, (int)(HIST_BUCKETS * sizeof *counts));
    if (!counts) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    const uint8_t *p = sqlite3_value_blob(argv[0]);
    int n = sqlite3_value_bytes(argv[0]);
    if (p && n > 0) {
        uint64_t one[HIST_BUCKETS] = {0};
        if (hist_decode_add(p, (size_t)n, one) == 0)
            for (unsigned i = 0; i < HIST_BUCKETS; i++)
                counts[i] += one[i];
    }
}

static void sql_hist_sum_final(sqlite3_context *ctx)
{
    uint64_t none[HIST_BUCKETS] = {0};
    uint64_t *counts = sqlite3_aggregate_context(ctx, 0);
    struct buf out = {0};
    if (hist_encode(&out, counts ? counts : none) != 0) {
        buf_free(&out);
        sqlite3_result_error_nomem(ctx);
        return;
    }
    sqlite3_result_blob(ctx, out.len ? (const void *)out.p : "", (int)out.len, SQLITE_TRANSIENT);
    buf_free(&out);
}

int rollup_register_functions(sqlite3 *db)
{
    int rc = sqlite3_create_function(db, "hist_merge", 2,
                                     SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, NULL,
                                     sql_hist_merge, NULL, NULL);
    if (rc != SQLITE_OK) return store_sqlite_err(db, rc, "register hist_merge");
    rc = sqlite3_create_function(db, "hist_sum", 1,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, NULL, NULL,
                                 sql_hist_sum_step, sql_hist_sum_final);
    return rc == SQLITE_OK ? 0 : store_sqlite_err(db, rc, "register hist_sum");
}
