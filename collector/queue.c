/*
 * queue.c: the bounded ingest queue between HTTP threads (producers) and the writer (consumer).
 *
 * DESIGN
 * - No lock on the ingest path. Cells form a ring with a sequence number each (Dmitry Vyukov's
 *   bounded MPMC queue): a producer claims a slot with one CAS on `tail`, fills it, and publishes
 *   it by storing the cell's sequence. The single consumer reads `head` without contention.
 * - Two bounds: items (ring size) and bytes (decoded batch memory). Bytes are reserved with one
 *   atomic add before claiming a slot and given back if the push fails, so the byte bound holds
 *   at every instant (a batch larger than the whole bound is refused outright).
 * - Waking the writer: a POSIX semaphore counts published batches; the consumer waits on it with a
 *   timeout (the group-commit window). sem_post is a futex wake only when someone waits.
 * - Threads: any thread pushes; only the writer pops. `closed` is set once by main at shutdown.
 * - Before a batch is counted and queued, the pushing thread prepares it for the store
 *   (store_prepare_batch: its chunks encoded and compressed), so this work runs on the many
 *   producer threads instead of the one writer; the byte bound counts the compressed chunks too.
 *   Once observed, a prepared batch is compacted (store_compact_batch: only what the writer reads
 *   of its spans stays, a fifth of a proxy's span, in a mapping of its own) and the bound counts
 *   what waits, the batch as it will be once compacted; the whole batch, while it is decoded,
 *   prepared and observed, is the request's (README: Guarantees and limits).
 */
#include "collector_int.h"

#include <errno.h>
#include <semaphore.h>
#include <stdlib.h>
#include <time.h>

struct cell {
    _Atomic size_t seq;
    struct span_batch *batch;
    size_t bytes;
};

struct ingest_queue {
    struct cell *cells;
    size_t mask;
    _Alignas(64) _Atomic size_t tail; /* producers */
    _Alignas(64) _Atomic size_t head; /* consumer */
    _Alignas(64) _Atomic size_t bytes;
    _Atomic size_t items;
    size_t max_bytes;
    struct store *store; /* batches are prepared for it (NULL: not) */
    _Atomic bool closed;
    sem_t ready;
};

struct ingest_queue *ingest_queue_create(unsigned max_items, size_t max_bytes)
{
    size_t n = 16;
    while (n < max_items)
        n <<= 1;
    struct ingest_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->cells = calloc(n, sizeof *q->cells);
    if (!q->cells || sem_init(&q->ready, 0, 0) != 0) {
        free(q->cells);
        free(q);
        log_msg(LOG_ERROR, "queue: cannot allocate %zu cells", n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        atomic_init(&q->cells[i].seq, i);
    q->mask = n - 1;
    q->max_bytes = max_bytes;
    return q;
}

void ingest_queue_prepare_for(struct ingest_queue *q, struct store *st)
{
    q->store = st;
}

void ingest_queue_destroy(struct ingest_queue *q)
{
    if (!q) return;
    struct span_batch *b;
    while (ingest_queue_pop(q, &b, 1, 0) == 1)
        span_batch_destroy(b);
    sem_destroy(&q->ready);
    free(q->cells);
    free(q);
}

int ingest_queue_push_observed(struct ingest_queue *q, struct span_batch *b,
                               void (*observe)(void *arg, const struct span_batch *b), void *arg)
{
    if (atomic_load_explicit(&q->closed, memory_order_acquire)) return -EPIPE;
    /* A prepared batch waits compacted (store_compact_batch, below): the bound counts that. */
    size_t bytes = store_queued_bytes(b);
    if (q->store && !b->prepared && b->n_spans) {
        /* Preparing only adds bytes: refuse at once what would not fit without them, before the
         * work (a full queue must not cost an encode and a compression per refused request). */
        if (bytes > q->max_bytes) return -E2BIG;
        if (atomic_load_explicit(&q->bytes, memory_order_relaxed) + bytes > q->max_bytes)
            return -EBUSY;
        /* A batch that cannot be prepared (out of memory) goes as it is: the writer encodes it. */
        (void)store_prepare_batch(q->store, b);
        /* Preparing takes a while: do not queue behind a writer that stopped meanwhile. */
        if (atomic_load_explicit(&q->closed, memory_order_acquire)) return -EPIPE;
    }
    bytes = b->prepared ? store_queued_bytes(b) : span_batch_bytes(b);
    if (bytes > q->max_bytes) return -E2BIG;
    size_t before = atomic_fetch_add_explicit(&q->bytes, bytes, memory_order_relaxed);
    if (before + bytes > q->max_bytes) {
        atomic_fetch_sub_explicit(&q->bytes, bytes, memory_order_relaxed);
        return -EBUSY;
    }
    size_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
    struct cell *c;
    for (;;) {
        c = &q->cells[pos & q->mask];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t diff = (intptr_t)seq - (intptr_t)pos;
        if (diff == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (diff < 0) {
            atomic_fetch_sub_explicit(&q->bytes, bytes, memory_order_relaxed);
            return -EBUSY; /* ring full */
        } else {
            pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
        }
    }
    /* The slot is ours and cannot fail any more: observers see exactly the batches that are
     * accepted, once each. The consumer waits at this slot until it is published below, so the
     * observer must be quick (it is: RED aggregation of one batch). */
    if (observe) observe(arg, b);
    /* Nothing but the writer reads the batch from here on: keep only what it reads. Without
     * memory for the copy the batch waits whole, past the bound by the difference. */
    if (b->prepared && store_compact_batch(b) != 0) {
        size_t all = span_batch_bytes(b);
        atomic_fetch_add_explicit(&q->bytes, all - bytes, memory_order_relaxed);
        bytes = all;
    }
    c->batch = b;
    c->bytes = bytes;
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    atomic_fetch_add_explicit(&q->items, 1, memory_order_relaxed);
    sem_post(&q->ready);
    return 0;
}

int ingest_queue_push(struct ingest_queue *q, struct span_batch *b)
{
    return ingest_queue_push_observed(q, b, NULL, NULL);
}

static bool pop_one(struct ingest_queue *q, struct span_batch **out)
{
    size_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
    struct cell *c = &q->cells[pos & q->mask];
    size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    if ((intptr_t)seq - (intptr_t)(pos + 1) < 0) return false; /* empty (or not yet published) */
    *out = c->batch;
    size_t bytes = c->bytes;
    c->batch = NULL;
    atomic_store_explicit(&q->head, pos + 1, memory_order_relaxed);
    atomic_store_explicit(&c->seq, pos + q->mask + 1, memory_order_release);
    atomic_fetch_sub_explicit(&q->bytes, bytes, memory_order_relaxed);
    atomic_fetch_sub_explicit(&q->items, 1, memory_order_relaxed);
    return true;
}

size_t ingest_queue_pop(struct ingest_queue *q, struct span_batch **out, size_t max, int timeout_ms)
{
    size_t n = 0;
    while (n < max && pop_one(q, &out[n]))
        n++;
    if (n == 0 && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        ts.tv_sec += timeout_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        while (sem_timedwait(&q->ready, &ts) != 0 && errno == EINTR) {
        }
        /* The semaphore is a wake-up hint, not a count: drain it, then take what is published.
         * A post that lands after the drain only causes one spurious wake-up. */
        while (sem_trywait(&q->ready) == 0) {
        }
        while (n < max && pop_one(q, &out[n]))
            n++;
    }
    return n;
}

void ingest_queue_close(struct ingest_queue *q)
{
    atomic_store_explicit(&q->closed, true, memory_order_release);
    sem_post(&q->ready); /* wake the writer */
}

bool ingest_queue_closed_and_empty(struct ingest_queue *q)
{
    return atomic_load_explicit(&q->closed, memory_order_acquire) &&
           atomic_load_explicit(&q->items, memory_order_relaxed) == 0;
}

size_t ingest_queue_items(struct ingest_queue *q)
{
    return atomic_load_explicit(&q->items, memory_order_relaxed);
}

size_t ingest_queue_bytes(struct ingest_queue *q)
{
    return atomic_load_explicit(&q->bytes, memory_order_relaxed);
}

size_t ingest_queue_capacity_bytes(struct ingest_queue *q)
{
    return q->max_bytes;
}
