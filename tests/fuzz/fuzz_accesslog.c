/*
 * fuzz_accesslog.c: libFuzzer target for accesslog_decode_json_ex (NDJSON, JSON array or object;
 * the streaming line scanner and the jansson path): any input, default limits, a fresh batch,
 * with a transport's defaults (a syslog listener's service and direction) when the input's
 * length is odd; the decoder must not crash, leak or overrun, every
 * failure must explain itself, and what it keeps must hold the access-log model's invariants
 * (strings NUL-terminated within the caps, a service and the raw line on every record, numbers
 * -1 or in range). Seeds: tests/data/accesslog. Built by tests/fuzz/fuzz.cmake; see smoke.sh.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "accesslog.h"

static void check_str(struct mstr s, uint32_t max)
{
    if (!s.ptr || s.len > max || s.ptr[s.len] != '\0') abort();
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
        }
    } else if (err[0] == '\0' && rc != -ENOMEM) {
        abort(); /* every failure explains itself */
    }
    span_batch_destroy(b);
    return 0;
}
