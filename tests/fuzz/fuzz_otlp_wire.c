/*
 * fuzz_otlp_wire.c: differential libFuzzer target. Each input is decoded by
 * otlp_decode_traces_protoc (protobuf-c's unpacked tree, the reference) and by
 * otlp_decode_traces_proto (the one-pass wire decoder), each into a fresh batch, once with the
 * default limits and once with tight ones (so every cap is reached). The two must agree: same
 * return code; on success the same model (batch_equal.h) holding the invariants of
 * fuzz_check.h; on failure the same error message. A disagreement is printed to stderr and
 * abort()s so libFuzzer keeps the input. Built by tests/fuzz/fuzz.cmake with clang; see smoke.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_equal.h"
#include "fuzz_check.h"
#include "otlp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void compare(const uint8_t *data, size_t size, const struct decode_limits *lim,
                    const char *pass)
{
    char err_c[256], err_w[256], why[512];
    struct span_batch *c = span_batch_create(), *w = span_batch_create();
    if (!c || !w) abort();
    err_c[0] = err_w[0] = '\0';
    int rc_c = otlp_decode_traces_protoc(data, size, lim, c, err_c, sizeof err_c);
    int rc_w = otlp_decode_traces_proto(data, size, lim, w, err_w, sizeof err_w);
    if (rc_c != rc_w) {
        fprintf(stderr, "fuzz_otlp_wire (%s limits): rc protoc %d (%s), wire %d (%s)\n", pass,
                rc_c, err_c, rc_w, err_w);
        abort();
    }
    if (rc_c == 0) {
        fuzz_check_batch(c, lim);
        fuzz_check_batch(w, lim);
        if (!batch_equal(c, w, why, sizeof why)) {
            fprintf(stderr, "fuzz_otlp_wire (%s limits): batches differ (a protoc, b wire): %s\n",
                    pass, why);
            abort();
        }
    } else if (err_c[0] == '\0' || strcmp(err_c, err_w) != 0) {
        fprintf(stderr, "fuzz_otlp_wire (%s limits): rc %d, err protoc \"%s\", wire \"%s\"\n", pass,
                rc_c, err_c, err_w);
        abort();
    }
    span_batch_destroy(c);
    span_batch_destroy(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_decode; /* fuzz_check.h's shared body: this target runs its own */
    struct decode_limits lim;
    decode_limits_default(&lim);
    compare(data, size, &lim, "default");
    static const struct decode_limits tight = {.max_spans = 5, .max_attrs = 4, .max_events = 2,
                                               .max_links = 2, .max_string = 16, .max_depth = 3};
    compare(data, size, &tight, "tight");
    return 0;
}
