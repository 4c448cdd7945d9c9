/*
 * writer.c: the one thread that writes SQLite.
 *
 * DESIGN
 * - Group commit: the writer pops every batch that is queued and stores them in one transaction.
 *   Under load, the batches that arrive while a commit runs become the next commit, so the
 *   transaction size follows the offered load with no tuning. When little is queued it waits up
 *   to the flush interval for more (MIN_COMMIT_SPANS) before committing, trading a few ms of
 *   visibility for far fewer fsync-bound commits at low rates.
 * - Retention runs here too, between commits, in small steps bounded in time, so the single
 *   read-write connection is never shared and ingest is never blocked for long.
 * - Acknowledged means durable: a batch whose `user` is set belongs to a request suspended until
 *   its commit; after each commit (or failure) the writer calls on_done for it, which resumes the
 *   request with the outcome (200, or 503 + Retry-After when the database refused the commit).
 * - Shutdown: main stops the listeners accepting, closes the queue; the writer drains everything
 *   left, answering each waiting request, and exits. Nothing acknowledged is lost.
 * - Threads: only this thread touches the store's write side. It shares the queue (lock-free) and
 *   the self_metrics atomics.
 */
#include "collector_int.h"

#include <errno.h>
#include <pthread.h>
#include <malloc.h>
#include <stdlib.h>
#include <time.h>

/* Up to this many batches per transaction: bounds the transaction's memory and its latency. */
#define MAX_COMMIT_BATCHES 256
/* Below this many spans and records, wait up to the flush interval for more before committing. */
#define MIN_COMMIT_SPANS 2048
/* Retention: one step deletes at most this many rows; steps run for at most this long per
 * second, so ingest waits at most that long behind retention. */
#define RETENTION_ROWS 2000
#define RETENTION_BUDGET_US 50000
#define RETENTION_PERIOD_US 1000000

struct writer {
    pthread_t thread;
    struct ingest_queue *q;
    struct store *st;
    int flush_ms;
    batch_done_fn on_done;
    bool started;
};

static int64_t now_us(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void commit(struct writer *w, struct span_batch **batches, size_t n)
{
    int64_t t0 = now_us(CLOCK_MONOTONIC);
    int rc = store_put_batches(w->st, batches, n);
    /* A busy database (another process holding a write lock) is worth a short retry. */
    for (int attempt = 0; rc == -EBUSY && attempt < 20; attempt++) {
        struct timespec pause = {0, 50 * 1000000L};
        nanosleep(&pause, NULL);
        rc = store_put_batches(w->st, batches, n);
    }
    selfmetrics_observe_commit(now_us(CLOCK_MONOTONIC) - t0);
    if (rc != 0) {
        uint64_t spans = 0;
        for (size_t i = 0; i < n; i++)
            spans += batches[i]->n_spans;
        atomic_fetch_add_explicit(&self_metrics.store_errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&self_metrics.spans_lost, spans, memory_order_relaxed);
        log_ratelimited(LOG_ERROR, "writer-commit", "writer: commit of %llu spans failed: %s",
                        (unsigned long long)spans, rc == -ENOSPC ? "database full" : "I/O error");
    }
    /* Answer the requests waiting for this commit (acknowledged means durable), then free. */
    for (size_t i = 0; i < n; i++) {
        if (w->on_done && batches[i]->user) w->on_done(batches[i]->user, rc);
        span_batch_destroy(batches[i]);
    }
}

static void retention(struct writer *w)
{
    int64_t start = now_us(CLOCK_MONOTONIC);
    uint64_t deleted;
    atomic_fetch_add_explicit(&self_metrics.retention_runs, 1, memory_order_relaxed);
    do {
        deleted = 0;
        int rc = store_retention_step(w->st, now_us(CLOCK_REALTIME), RETENTION_ROWS, &deleted);
        if (rc != 0) {
            log_ratelimited(LOG_WARN, "writer-retention", "writer: retention step failed (%d)", rc);
            break;
        }
    } while (deleted > 0 && now_us(CLOCK_MONOTONIC) - start < RETENTION_BUDGET_US);
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    pthread_setname_np(pthread_self(), "ms-writer");
    struct span_batch **batches = calloc(MAX_COMMIT_BATCHES, sizeof *batches);
    if (!batches) {
        log_msg(LOG_ERROR, "writer: out of memory");
        return NULL;
    }
    int64_t next_retention = now_us(CLOCK_MONOTONIC);
    for (;;) {
        size_t n = ingest_queue_pop(w->q, batches, MAX_COMMIT_BATCHES, 100);
        if (n > 0 && w->flush_ms > 0) {
            size_t spans = 0; /* spans and access-log records alike */
            for (size_t i = 0; i < n; i++)
                spans += batches[i]->n_spans + batches[i]->n_logs;
            int64_t deadline = now_us(CLOCK_MONOTONIC) + (int64_t)w->flush_ms * 1000;
            while (spans < MIN_COMMIT_SPANS && n < MAX_COMMIT_BATCHES &&
                   !ingest_queue_closed_and_empty(w->q)) {
                int64_t left = deadline - now_us(CLOCK_MONOTONIC);
                if (left <= 0) break;
                size_t m = ingest_queue_pop(w->q, batches + n, MAX_COMMIT_BATCHES - n,
                                            (int)((left + 999) / 1000));
                for (size_t i = n; i < n + m; i++)
                    spans += batches[i]->n_spans + batches[i]->n_logs;
                n += m;
            }
        }
        if (n > 0)
            commit(w, batches, n);
        else if (ingest_queue_closed_and_empty(w->q))
            break;
        int64_t t = now_us(CLOCK_MONOTONIC);
        if (t >= next_retention) {
            /* Service-graph halves and access-log records whose wait is over reach the edge
             * rollups even when no commit comes to take them along. */
            int rc = store_flush_graph(w->st);
            if (rc != 0)
                log_ratelimited(LOG_WARN, "writer-graph", "writer: service-graph flush failed (%d)",
                                rc);
            retention(w);
            /* The HTTP threads' malloc arenas keep what their requests freed (main's mallopt: no
             * page faults per request); give back once a second what stayed free, so that a
             * burst's peak does not stay resident (a third of the queue's bound at the peak). */
            malloc_trim(0);
            next_retention = t + RETENTION_PERIOD_US;
        }
    }
    free(batches);
    return NULL;
}

struct writer *writer_start(struct ingest_queue *q, struct store *st, int flush_ms,
                            batch_done_fn on_done)
{
    struct writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->q = q;
    w->st = st;
    w->flush_ms = flush_ms;
    w->on_done = on_done;
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        log_msg(LOG_ERROR, "writer: cannot start thread");
        free(w);
        return NULL;
    }
    w->started = true;
    return w;
}

void writer_stop(struct writer *w)
{
    if (!w) return;
    if (w->started) pthread_join(w->thread, NULL);
    free(w);
}
