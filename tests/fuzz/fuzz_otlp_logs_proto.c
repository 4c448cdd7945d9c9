/*
 * fuzz_otlp_logs_proto.c: libFuzzer target for otlp_decode_logs_proto (ExportLogsServiceRequest
 * protobuf): any input, default limits, a fresh batch; the decoder must not crash, leak or overrun,
 * and the records it keeps must hold the model's invariants (fuzz_check.h). Seeds:
 * tests/data/otlp_logs. Built by tests/fuzz/fuzz.cmake with clang; see smoke.sh.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_check.h"
#include "otlp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decode(otlp_decode_logs_proto, data, size);
}
