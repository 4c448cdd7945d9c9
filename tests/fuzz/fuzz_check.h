/*
 * fuzz_check.h: invariants every decoded batch must hold, checked by the OTLP and Zipkin fuzz
 * targets after each input (abort() on violation so libFuzzer records the input as a crash),
 * and the one body those targets share (fuzz_decode).
 */
#ifndef MESHSCOPE_FUZZ_CHECK_H
#define MESHSCOPE_FUZZ_CHECK_H

#include <stdlib.h>
#include <string.h>

#include "otlp.h"

static void fuzz_check_str(struct mstr s, uint32_t max)
{
    if (!s.ptr || s.len > max || s.ptr[s.len] != '\0') abort();
}

static void fuzz_check_value(const struct value *v, const struct decode_limits *lim,
                             unsigned depth);

static void fuzz_check_attrs(const struct attr *a, uint32_t n, const struct decode_limits *lim,
                             unsigned depth)
{
    if (n > lim->max_attrs || (n && !a)) abort();
    for (uint32_t i = 0; i < n; i++) {
        fuzz_check_str(a[i].key, 3 * lim->max_string); /* U+FFFD triples a bad byte */
        fuzz_check_value(&a[i].value, lim, depth);
    }
}

static void fuzz_check_value(const struct value *v, const struct decode_limits *lim,
                             unsigned depth)
{
    switch (v->type) {
    case VALUE_STRING:
    case VALUE_BYTES: fuzz_check_str(v->u.str, 3 * lim->max_string); break;
    case VALUE_ARRAY:
        if (depth + 1 > lim->max_depth || v->u.array.n > lim->max_attrs) abort();
        for (uint32_t i = 0; i < v->u.array.n; i++)
            fuzz_check_value(&v->u.array.items[i], lim, depth + 1);
        break;
    case VALUE_KVLIST:
        if (depth + 1 > lim->max_depth) abort();
        fuzz_check_attrs(v->u.kvlist.items, v->u.kvlist.n, lim, depth + 1);
        break;
    case VALUE_EMPTY:
    case VALUE_BOOL:
    case VALUE_INT:
    case VALUE_DOUBLE: break;
    default: abort();
    }
}

/* Access-log records of the OTLP log decoders (otlp_logs.c): strings NUL-terminated within their
 * bounds (body and attributes are JSON renderings: escaping may take 6 bytes per input byte),
 * a service on each, numbers -1 or in range, a span id only with a trace id. */
static void fuzz_check_logs(const struct span_batch *b, size_t input_size)
{
    for (uint32_t i = 0; i < b->n_logs; i++) {
        const struct access_log *l = &b->logs[i];
        for (int f = 0; f < ALOG_STR_COUNT; f++)
            if (l->str[f].ptr) fuzz_check_str(l->str[f], (uint32_t)(6 * input_size + 64));
        if (!l->str[ALOG_SERVICE].ptr || l->str[ALOG_RAW].ptr) abort();
        if (l->response_code < -1 || l->response_code > 999 || l->bytes_sent < -1 ||
            l->bytes_received < -1 || l->duration_ms < -1 || l->upstream_service_time_ms < -1)
            abort();
        if (l->response_code < 0 && l->direction != ALOG_DIRECTION_UNKNOWN) abort();
        if (l->has_span_id && !l->has_trace_id) abort();
        if (l->has_trace_id && id_is_zero(l->trace_id, 16)) abort();
        if ((unsigned)l->direction > ALOG_DIRECTION_OUTBOUND) abort();
    }
}

static void fuzz_check_batch(const struct span_batch *b, const struct decode_limits *lim)
{
    if (b->n_spans + b->n_logs + (uint64_t)b->rejected > lim->max_spans) abort();
    if (b->rejected && !b->reject_reason) abort();
    for (uint32_t i = 0; i < b->n_spans; i++) {
        const struct span *s = &b->spans[i];
        uint32_t m = 3 * lim->max_string;
        if (id_is_zero(s->trace_id, 16) || id_is_zero(s->span_id, 8)) abort();
        if (s->has_parent && id_is_zero(s->parent_span_id, 8)) abort();
        if ((unsigned)s->kind > SPAN_KIND_CONSUMER || (unsigned)s->status_code > STATUS_ERROR)
            abort();
        if (!s->resource || !s->scope) abort();
        fuzz_check_str(s->name, m);
        fuzz_check_str(s->trace_state, m);
        fuzz_check_str(s->status_message, m);
        fuzz_check_str(s->resource->schema_url, m);
        fuzz_check_str(s->scope->name, m);
        fuzz_check_str(s->scope->version, m);
        fuzz_check_str(s->scope->schema_url, m);
        fuzz_check_attrs(s->attrs.items, s->attrs.n, lim, 0);
        fuzz_check_attrs(s->resource->attrs.items, s->resource->attrs.n, lim, 0);
        fuzz_check_attrs(s->scope->attrs.items, s->scope->attrs.n, lim, 0);
        if (s->n_events > lim->max_events || s->n_links > lim->max_links) abort();
        for (uint32_t e = 0; e < s->n_events; e++) {
            fuzz_check_str(s->events[e].name, m);
            fuzz_check_attrs(s->events[e].attrs.items, s->events[e].attrs.n, lim, 0);
        }
        for (uint32_t l = 0; l < s->n_links; l++) {
            fuzz_check_str(s->links[l].trace_state, m);
            fuzz_check_attrs(s->links[l].attrs.items, s->links[l].attrs.n, lim, 0);
        }
    }
}

/* Runs decode (any of the span and OTLP log decoders, all with the same contract) on one input with
 * default limits and a fresh batch: the decoder must not crash, leak or overrun, what it keeps
 * must hold the invariants above, and every failure must explain itself. */
static int fuzz_decode(int (*decode)(const uint8_t *body, size_t len,
                                     const struct decode_limits *lim, struct span_batch *out,
                                     char *err, size_t errlen),
                       const uint8_t *data, size_t size)
{
    struct decode_limits lim;
    char err[256];
    decode_limits_default(&lim);
    struct span_batch *b = span_batch_create();
    if (!b) return 0;
    err[0] = '\0';
    int rc = decode(data, size, &lim, b, err, sizeof err);
    if (rc == 0) {
        fuzz_check_batch(b, &lim);
        fuzz_check_logs(b, size);
    } else if (err[0] == '\0')
        abort(); /* every failure explains itself */
    span_batch_destroy(b);
    return 0;
}

#endif
