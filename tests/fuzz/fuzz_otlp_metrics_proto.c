/*
 * fuzz_otlp_metrics_proto.c: libFuzzer target for otlp_decode_metrics_proto, its batch applied
 * to a store and rendered (fuzz_metrics.h). Built by tests/fuzz/fuzz.cmake; see smoke.sh.
 */
#include "fuzz_metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_metrics(otlp_decode_metrics_proto, data, size);
}
