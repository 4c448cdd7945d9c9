/*
 * trace_pending.c: the trace index rows the writer has not written yet (store.c, DESIGN: the
 * trace index). A committed chunk's (trace key, chunk id) waits here, in memory, until the writer
 * merges it into the trace_index table in key order, a piece per write call.
 *
 * Why: trace keys are random, so inserting each chunk's key as it comes dirtied one random
 * b-tree page per trace in every commit: 590 bytes of WAL per span (4.9x the bytes stored) and
 * a third of the writer's and checkpointer's CPU at the maximum rate (BENCHMARKS.md). Merged in
 * key order, seconds' worth of keys at a time, the same pages take many keys per write.
 *
 * Structure: "live" holds the entries of recent commits, in chunk order, with a hash over their
 * keys for readers. When live is old enough (TP_LAG_US) or large (TP_SEAL), the writer seals it
 * into a run: a copy sorted by (key, chunk) that it merges from the front (tpend_plan /
 * tpend_merged); live starts again empty. Readers search live and the runs (binary search).
 *
 * Readers and snapshots: a reader must find every chunk either in its SQLite snapshot of
 * trace_index or here. Entries leave only with their whole run, and a run is freed only once
 * fully merged AND no reader pinned before its merge finished: tpend_pin, taken before the
 * reader's first SQL statement (its snapshot starts later), returns a token; lookups with that
 * token search every run sealed since, merged parts included (the caller skips chunk ids it
 * already has). Runs kept for pins are bounded (TP_MAX_RUNS): past it the oldest merged run is
 * freed anyway, and a reader still pinned before it gets -EAGAIN from its lookups (its query
 * fails with 503 rather than answer with traces missing). The writer publishes a write call's
 * entries before its COMMIT (a reader whose snapshot has the chunks must find them) and takes
 * them back if the transaction fails (tpend_unadd); until the commit a reader may see ids of
 * chunks its snapshot lacks, which load nothing.
 *
 * DESIGN (threads): the writer thread alone adds, seals, merges and frees; reader threads pin,
 * look up and unpin. Everything readers see (live, its hash, the runs, the pins) changes under
 * mu; the writer reads its own fields without it. The sort of a new run happens outside mu.
 */
#include "storage_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Live is sealed once its oldest entry is this old. Merging k keys into an index of p pages
 * writes at most min(k, p) pages, so the longer the wait, the more keys per page written; and the
 * more memory, and the more rows a restart writes. 8 s: WAL 590 -> 166 bytes per span at
 * the maximum rate (BENCHMARKS.md, 2026-11-28 04:35). */
#define TP_LAG_US 8000000LL
/* ... or once it holds this many entries, whatever their age. */
#define TP_SEAL (1u << 18)
/* Live never holds more (tpend_add refuses: the writer then writes that call's rows at once).
 * Memory, counted as 64 MiB in collector/main.c's bound: live 512k x 20 B + a 4 MiB hash, runs
 * of at most as many entries (8 MiB each, TP_MAX_RUNS of them), the sort's copy 8 MiB. */
#define TP_LIVE_MAX (1u << 19)
/* Runs kept at once: the one being merged and those kept for pinned readers. */
#define TP_MAX_RUNS 4

struct tp_run {
    struct tpend_entry *e; /* sorted by (key, chunk) */
    size_t n;
    size_t done;       /* writer: entries [0, done) are in trace_index */
    int64_t min_chunk; /* the smallest chunk id in the run */
    uint64_t gen;
};

struct tpend {
    pthread_mutex_t mu;
    struct tpend_entry *live; /* chunk order */
    uint32_t *next;           /* live[i]'s hash chain: index + 1 of the next, 0 ends */
    uint32_t *heads;          /* per bucket: index + 1 of the newest live entry, 0 none */
    size_t n_live, cap_live, n_heads;
    int64_t live_since_us;
    struct tp_run runs[TP_MAX_RUNS]; /* oldest first */
    size_t n_runs;
    uint64_t next_gen;
    uint64_t forced_gen; /* newest run freed past TP_MAX_RUNS while pinned (0: none) */
    uint64_t *pins;      /* tokens of pinned readers */
    size_t n_pins, cap_pins;
};

struct tpend *tpend_create(void)
{
    struct tpend *t = calloc(1, sizeof *t);
    if (!t || pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t);
        return NULL;
    }
    t->next_gen = 1;
    return t;
}

void tpend_destroy(struct tpend *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n_runs; i++)
        free(t->runs[i].e);
    free(t->live);
    free(t->next);
    free(t->heads);
    free(t->pins);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static size_t bucket_of(const struct tpend *t, int64_t key)
{
    uint64_t k = (uint64_t)key * 0x9E3779B97F4A7C15ULL; /* keys are random; mix anyway */
    return (size_t)(k >> 32) & (t->n_heads - 1);
}

/* Under mu. Room for n more live entries; the hash grows with them (rehashed). */
static int live_reserve(struct tpend *t, size_t n)
{
    size_t need = t->n_live + n;
    if (need > UINT32_MAX - 1) return -E2BIG;
    if (need > t->cap_live) {
        size_t cap = t->cap_live ? t->cap_live : 4096;
        while (cap < need)
            cap *= 2;
        struct tpend_entry *l = realloc(t->live, cap * sizeof *l);
        if (!l) return -ENOMEM;
        t->live = l;
        uint32_t *nx = realloc(t->next, cap * sizeof *nx);
        if (!nx) return -ENOMEM;
        t->next = nx;
        t->cap_live = cap;
    }
    if (need * 2 > t->n_heads) {
        size_t nh = t->n_heads ? t->n_heads : 8192;
        while (need * 2 > nh)
            nh *= 2;
        uint32_t *h = calloc(nh, sizeof *h);
        if (!h) return -ENOMEM;
        free(t->heads);
        t->heads = h;
        t->n_heads = nh;
        for (size_t i = 0; i < t->n_live; i++) {
            size_t b = bucket_of(t, t->live[i].key);
            t->next[i] = t->heads[b];
            t->heads[b] = (uint32_t)i + 1;
        }
    }
    return 0;
}

int tpend_add(struct tpend *t, const struct tpend_entry *e, size_t n, int64_t now_us)
{
    if (n == 0) return 0;
    pthread_mutex_lock(&t->mu);
    int rc = n > TP_LIVE_MAX - t->n_live ? -E2BIG : live_reserve(t, n);
    if (!rc) {
        if (t->n_live == 0) t->live_since_us = now_us;
        for (size_t i = 0; i < n; i++) {
            size_t k = t->n_live++, b = bucket_of(t, e[i].key);
            t->live[k] = e[i];
            t->next[k] = t->heads[b];
            t->heads[b] = (uint32_t)k + 1;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void tpend_unadd(struct tpend *t, size_t n)
{
    pthread_mutex_lock(&t->mu);
    /* Newest first: each is the head of its chain. */
    for (; n > 0 && t->n_live > 0; n--) {
        size_t k = --t->n_live;
        t->heads[bucket_of(t, t->live[k].key)] = t->next[k];
    }
    pthread_mutex_unlock(&t->mu);
}

/* Sorts e (in chunk order) by (key, chunk): a stable LSD radix sort on the key, a byte per pass,
 * through tmp (n entries). glibc's qsort took 31-44 ms for a run of 220k random keys, a stall of
 * the writer and of every request waiting for its commit; this takes 4 (15 on first touch). */
static void sort_entries(struct tpend_entry *e, struct tpend_entry *tmp, size_t n)
{
    static const uint64_t top = UINT64_C(1) << 63; /* signed key order as unsigned */
    size_t count[8][256] = {{0}};
    for (size_t i = 0; i < n; i++) {
        uint64_t k = (uint64_t)e[i].key ^ top;
        for (int b = 0; b < 8; b++)
            count[b][(k >> (8 * b)) & 0xff]++;
    }
    struct tpend_entry *from = e, *to = tmp;
    for (int b = 0; b < 8; b++) {
        size_t pos = 0, *c = count[b];
        if (c[(((uint64_t)from[0].key ^ top) >> (8 * b)) & 0xff] == n) continue; /* one digit */
        for (int d = 0; d < 256; d++) {
            size_t m = c[d];
            c[d] = pos;
            pos += m;
        }
        for (size_t i = 0; i < n; i++)
            to[c[(((uint64_t)from[i].key ^ top) >> (8 * b)) & 0xff]++] = from[i];
        struct tpend_entry *x = from;
        from = to;
        to = x;
    }
    if (from != e) memcpy(e, from, n * sizeof *e);
}

static uint64_t min_pin(const struct tpend *t)
{
    uint64_t m = UINT64_MAX;
    for (size_t i = 0; i < t->n_pins; i++)
        if (t->pins[i] < m) m = t->pins[i];
    return m;
}

/* Under mu. Frees the oldest runs that are merged and that no reader needs (or, past
 * TP_MAX_RUNS - 1, merged ones whatever the pins: see the top of the file). */
static void free_runs(struct tpend *t)
{
    uint64_t pinned = min_pin(t);
    while (t->n_runs > 0 && t->runs[0].done == t->runs[0].n &&
           (t->runs[0].gen < pinned || t->n_runs >= TP_MAX_RUNS)) {
        if (t->runs[0].gen >= pinned) t->forced_gen = t->runs[0].gen;
        free(t->runs[0].e);
        memmove(t->runs, t->runs + 1, (t->n_runs - 1) * sizeof *t->runs);
        t->n_runs--;
    }
}

void tpend_plan(struct tpend *t, int64_t now_us, size_t max, const struct tpend_entry **piece,
                size_t *n, int64_t *watermark)
{
    *piece = NULL;
    *n = 0;
    pthread_mutex_lock(&t->mu);
    free_runs(t);
    pthread_mutex_unlock(&t->mu);
    struct tp_run *cur = t->n_runs ? &t->runs[t->n_runs - 1] : NULL;
    bool merging = cur && cur->done < cur->n;
    if (!merging && t->n_live > 0 && t->n_runs < TP_MAX_RUNS &&
        (now_us - t->live_since_us >= TP_LAG_US || t->n_live >= TP_SEAL)) {
        /* Seal: sort a copy outside mu (only this thread changes live), then swap it in. */
        size_t cnt = t->n_live;
        struct tpend_entry *e = malloc(cnt * sizeof *e), *tmp = malloc(cnt * sizeof *tmp);
        if (!e || !tmp) { /* no seal this time: live waits, the write goes on */
            free(e);
            free(tmp);
            *watermark = t->live[0].chunk;
            return;
        }
        memcpy(e, t->live, cnt * sizeof *e);
        int64_t min_chunk = t->live[0].chunk; /* live is in chunk order */
        sort_entries(e, tmp, cnt);
        free(tmp);
        pthread_mutex_lock(&t->mu);
        t->runs[t->n_runs++] =
            (struct tp_run){.e = e, .n = cnt, .min_chunk = min_chunk, .gen = t->next_gen++};
        t->n_live = 0;
        memset(t->heads, 0, t->n_heads * sizeof *t->heads);
        pthread_mutex_unlock(&t->mu);
        cur = &t->runs[t->n_runs - 1];
        merging = true;
    }
    int64_t wm = INT64_MAX;
    if (merging) {
        size_t left = cur->n - cur->done;
        /* Under pressure (live as large as a seal already) the run goes whole, so that live
         * can be sealed next. */
        size_t take = t->n_live >= TP_SEAL || left < max ? left : max;
        *piece = cur->e + cur->done;
        *n = take;
        if (take < left) wm = cur->min_chunk;
    }
    if (t->n_live > 0 && t->live[0].chunk < wm) wm = t->live[0].chunk;
    *watermark = wm;
}

void tpend_merged(struct tpend *t, size_t n)
{
    pthread_mutex_lock(&t->mu); /* tpend_pin reads done */
    if (t->n_runs) t->runs[t->n_runs - 1].done += n;
    pthread_mutex_unlock(&t->mu);
}

size_t tpend_count(struct tpend *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n_live;
    for (size_t i = 0; i < t->n_runs; i++)
        n += t->runs[i].n - t->runs[i].done;
    pthread_mutex_unlock(&t->mu);
    return n;
}

int tpend_pin(struct tpend *t, uint64_t *token)
{
    pthread_mutex_lock(&t->mu);
    /* Runs merged whole before now are in any snapshot that starts after this call. */
    uint64_t tok = t->next_gen;
    for (size_t i = 0; i < t->n_runs; i++)
        if (t->runs[i].done < t->runs[i].n) {
            tok = t->runs[i].gen;
            break;
        }
    int rc = 0;
    if (t->n_pins == t->cap_pins) {
        size_t cap = t->cap_pins ? t->cap_pins * 2 : 16;
        uint64_t *p = realloc(t->pins, cap * sizeof *p);
        if (p) {
            t->pins = p;
            t->cap_pins = cap;
        } else {
            rc = -ENOMEM;
        }
    }
    if (!rc) t->pins[t->n_pins++] = tok;
    pthread_mutex_unlock(&t->mu);
    *token = tok;
    return rc;
}

void tpend_unpin(struct tpend *t, uint64_t token)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n_pins; i++)
        if (t->pins[i] == token) {
            t->pins[i] = t->pins[--t->n_pins];
            break;
        }
    pthread_mutex_unlock(&t->mu);
}

static int push_id(int64_t **ids, size_t *n, size_t *cap, int64_t id)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        int64_t *p = realloc(*ids, c * sizeof *p);
        if (!p) return -ENOMEM;
        *ids = p;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

int tpend_lookup(struct tpend *t, uint64_t token, int64_t key, int64_t **ids, size_t *n,
                 size_t *cap)
{
    pthread_mutex_lock(&t->mu);
    /* A run this reader needed was freed (TP_MAX_RUNS): what it finds may be incomplete. */
    int rc = token && token <= t->forced_gen ? -EAGAIN : 0;
    if (t->n_live && !rc) {
        for (uint32_t i = t->heads[bucket_of(t, key)]; i && !rc; i = t->next[i - 1])
            if (t->live[i - 1].key == key) rc = push_id(ids, n, cap, t->live[i - 1].chunk);
    }
    for (size_t r = 0; r < t->n_runs && !rc; r++) {
        const struct tp_run *run = &t->runs[r];
        if (run->gen < token) continue;
        size_t lo = 0, hi = run->n; /* first entry with e.key >= key */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (run->e[mid].key < key)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < run->n && run->e[i].key == key && !rc; i++)
            rc = push_id(ids, n, cap, run->e[i].chunk);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}
