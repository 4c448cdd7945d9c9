/*
 * fuzz_accesslog.c: libFuzzer target for accesslog_decode_json_ex (NDJSON, JSON array or object;
 * the streaming line scanner and the jansson path): any input, default limits, a fresh batch,
 * with a transport's defaults (a syslog listener's service and direction) when the input's
 * length is odd; the decoder must not crash, leak or overrun, every
 * failure must explain itself, and what it keeps must hold the access-log model's invariants
 * (strings NUL-terminated within the caps, a service and the raw line on every record, numbers
 * -1 or in range). Every record it keeps also goes through the stored encoding (alog_encode,
 * which stores values the decoder located in the raw line as references into it, then
 * alog_decode from a block) and must come back identical. Seeds: tests/data/accesslog. Built by
 * tests/fuzz/fuzz.cmake; see smoke.sh.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "accesslog.h"
#include "storage_int.h"

static void check_str(struct mstr s, uint32_t max)
{
    if (!s.ptr || s.len > max || s.ptr[s.len] != '\0') abort();
}

/* l through a block of the stored encoding and back: the same record. */
static void check_stored(const struct access_log *l)
{
    struct buf blk = {0};
    size_t off;
    if (alog_block_start(&blk) || alog_block_add(&blk, l, &off)) abort();
    struct alog_block_iter it;
    const uint8_t *rec;
    size_t len;
    if (alog_block_open(&it, blk.p, blk.len) || alog_block_next(&it, &rec, &len) != 1 ||
        rec != blk.p + off || alog_block_next(&it, &rec, &len) != 0)
        abort();
    struct span_batch *b = span_batch_create();
    if (!b || alog_decode(rec, len, b) || b->n_logs != 1) abort();
    const struct access_log *r = &b->logs[0];
    if (r->time_unix_nano != l->time_unix_nano || r->response_code != l->response_code ||
        r->bytes_received != l->bytes_received || r->bytes_sent != l->bytes_sent ||
        r->duration_ms != l->duration_ms ||
        r->upstream_service_time_ms != l->upstream_service_time_ms ||
        r->has_trace_id != l->has_trace_id || r->has_span_id != l->has_span_id ||
        r->direction != l->direction ||
        (l->has_trace_id && memcmp(r->trace_id, l->trace_id, 16)) ||
        (l->has_span_id && memcmp(r->span_id, l->span_id, 8)))
        abort();
    for (int f = 0; f < ALOG_STR_COUNT; f++) {
        const struct mstr *a = &l->str[f], *c = &r->str[f];
        if (!a->ptr != !c->ptr || a->len != c->len || (a->len && memcmp(a->ptr, c->ptr, a->len)))
            abort();
    }
    span_batch_destroy(b);
    buf_free(&blk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct decode_limits lim;
    char err[256];
    decode_limits_default(&lim);
    struct span_batch *b = span_batch_create();
    if (!b) return 0;
    err[0] = '\0';
    static const struct alog_defaults syslog_like = {"edge-nginx", ALOG_DIRECTION_OUTBOUND};
    int rc = accesslog_decode_json_ex(data, size, size % 2 ? &syslog_like : NULL, &lim, b, err,
                                      sizeof err);
    if (rc == 0) {
        if (b->n_spans || b->n_logs > lim.max_spans) abort();
        if (b->rejected && !b->reject_reason) abort();
        for (uint32_t i = 0; i < b->n_logs; i++) {
            const struct access_log *l = &b->logs[i];
            for (int f = 0; f < ALOG_STR_COUNT; f++) {
                if (!l->str[f].ptr) continue;
                /* The raw line may be as long as ACCESSLOG_MAX_LINE (or an array element's
                 * re-serialisation: bounded by the input); UTF-8 repair may triple it. */
                check_str(l->str[f], f == ALOG_RAW ? (uint32_t)(3 * size + 64)
                                                        : 3 * lim.max_string + 4);
            }
            if (!l->str[ALOG_SERVICE].ptr || !l->str[ALOG_RAW].ptr ||
                !l->str[ALOG_RESPONSE_FLAGS].ptr)
                abort();
            if (l->response_code < -1 || l->response_code > 999 || l->bytes_sent < -1 ||
                l->bytes_received < -1 || l->duration_ms < -1 || l->upstream_service_time_ms < -1)
                abort();
            if (l->has_span_id && !l->has_trace_id) abort();
            if (size % 2 && !l->str[ALOG_SERVICE].len) abort();
            if ((unsigned)l->direction > ALOG_DIRECTION_OUTBOUND) abort();
            check_stored(l);
        }
    } else if (err[0] == '\0' && rc != -ENOMEM) {
        abort(); /* every failure explains itself */
    }
    span_batch_destroy(b);
    return 0;
}
