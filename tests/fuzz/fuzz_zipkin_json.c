/*
 * fuzz_zipkin_json.c: libFuzzer target for zipkin_decode_spans_json: any input, default limits, a
 * fresh batch; the decoder must not crash, leak or overrun, and what it keeps must hold the
 * model's invariants (fuzz_check.h). Built by tests/fuzz/fuzz.cmake with clang; see smoke.sh.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_check.h"
#include "zipkin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct decode_limits lim;
    char err[256];
    decode_limits_default(&lim);
    struct span_batch *b = span_batch_create();
    if (!b) return 0;
    err[0] = '\0';
    int rc = zipkin_decode_spans_json(data, size, &lim, b, err, sizeof err);
    if (rc == 0)
        fuzz_check_batch(b, &lim);
    else if (err[0] == '\0')
        abort(); /* every failure explains itself */
    span_batch_destroy(b);
    return 0;
}
