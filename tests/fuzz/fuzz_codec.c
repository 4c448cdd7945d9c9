/*
 * fuzz_codec.c: libFuzzer target for codec_decode_chunk (storage/codec.c), the decoder of the
 * chunk rows read back from the database: any input. It must not crash, leak or overrun, it
 * fails only with -EINVAL (or -ENOMEM), and a failed decode leaves the batch empty. What it
 * decodes is encoded again (always version 2) and decoded once more, and must come back with the
 * same spans (ids, parents, times, names, kinds, counts): the encoder's trace-id runs and parent
 * indexes are checked against whatever the input held. Seeds: tests/data/codec (chunks of both
 * versions, decompressed from real stores). Built by tests/fuzz/fuzz.cmake; see smoke.sh.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage_int.h"

static int mstr_same(struct mstr a, struct mstr b)
{
    return !a.ptr == !b.ptr && a.len == b.len && (!a.len || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void check_same(const struct span *a, const struct span *b)
{
    if (memcmp(a->trace_id, b->trace_id, 16) || memcmp(a->span_id, b->span_id, 8) ||
        a->has_parent != b->has_parent ||
        (a->has_parent && memcmp(a->parent_span_id, b->parent_span_id, 8)) ||
        a->start_unix_nano != b->start_unix_nano || a->end_unix_nano != b->end_unix_nano ||
        a->kind != b->kind || a->flags != b->flags || a->status_code != b->status_code ||
        !mstr_same(a->name, b->name) || !mstr_same(a->trace_state, b->trace_state) ||
        !mstr_same(a->status_message, b->status_message) || a->attrs.n != b->attrs.n ||
        a->n_events != b->n_events || a->n_links != b->n_links || !a->resource != !b->resource ||
        !a->scope != !b->scope)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct span_batch *b = span_batch_create();
    if (!b) return 0;
    int rc = codec_decode_chunk(data, size, b);
    if (rc != 0 && rc != -EINVAL && rc != -ENOMEM) abort();
    if (rc != 0 && b->n_spans != 0) abort();
    if (rc == 0 && b->n_spans > 0) {
        const struct span **ptrs = malloc(b->n_spans * sizeof *ptrs);
        if (!ptrs) abort();
        for (uint32_t i = 0; i < b->n_spans; i++) ptrs[i] = &b->spans[i];
        struct buf enc = {0};
        if (codec_encode_chunk(&enc, ptrs, b->n_spans) != 0) abort();
        struct span_batch *c = span_batch_create();
        if (!c || codec_decode_chunk(enc.p, enc.len, c) != 0 || c->n_spans != b->n_spans) abort();
        for (uint32_t i = 0; i < b->n_spans; i++) check_same(&b->spans[i], &c->spans[i]);
        span_batch_destroy(c);
        buf_free(&enc);
        free(ptrs);
    }
    span_batch_destroy(b);
    return 0;
}
