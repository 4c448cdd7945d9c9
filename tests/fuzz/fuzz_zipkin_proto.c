/*
 * fuzz_zipkin_proto.c: libFuzzer target for zipkin_decode_spans_proto: any input, default limits, a
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
    return fuzz_decode(zipkin_decode_spans_proto, data, size);
}
