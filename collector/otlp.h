/*
 * otlp.h: OTLP trace decoders (protobuf and JSON) into the span model, and the encoders of the
 * OTLP/HTTP responses (ExportTraceServiceResponse, google.rpc.Status).
 *
 * Decoders run on HTTP threads, one request at a time per call, no shared state: thread-safe.
 */
#ifndef MESHSCOPE_OTLP_H
#define MESHSCOPE_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "storage.h"

/* Caps applied while decoding (rule 7: caps before allocation). A request that exceeds a
 * per-request cap fails whole (-E2BIG); a span that exceeds a per-span cap is rejected alone
 * (counted in batch->rejected, reason in batch->reject_reason). */
struct decode_limits {
    uint32_t max_spans;        /* per request; default 100000 */
    uint32_t max_attrs;        /* per span, resource, scope, event or link; default 1024 */
    uint32_t max_events;       /* per span; default 1024 */
    uint32_t max_links;        /* per span; default 1024 */
    uint32_t max_string;       /* bytes in one string or bytes value / key; default 65536 */
    uint32_t max_depth;        /* AnyValue array/kvlist nesting; default 16 */
};

/* Fills the defaults above. */
void decode_limits_default(struct decode_limits *lim /* OUT */);
/* lim itself, or, when lim is NULL, the defaults filled into *storage (the decoders' entry). */
const struct decode_limits *decode_limits_or_default(const struct decode_limits *lim,
                                                     struct decode_limits *storage /* OUT */);

/* Decodes an ExportTraceServiceRequest.
 *  body, len: the decompressed request body (borrowed).
 *  out: an empty batch (borrowed); spans are appended to it, strings copied into its arena.
 *  err, errlen: on failure, a one-line message naming the problem
 *               (e.g. "resource_spans[0].scope_spans[1].spans[3].trace_id: length 5, want 16").
 * Returns 0 (the batch holds the valid spans; out->rejected counts the refused ones: a
 * trace_id that is all zero or not 16 bytes, a span_id that is all zero or not 8 bytes, a
 * per-span cap exceeded), -EINVAL for undecodable input (nothing usable: caller answers 400),
 * -E2BIG when a per-request cap is exceeded, -ENOMEM. On a negative return out may hold partial
 * data: the caller destroys it. */
int otlp_decode_traces_proto(const uint8_t *body, size_t len, const struct decode_limits *lim,
                             struct span_batch *out, char *err, size_t errlen);

/* Same for OTLP/JSON (protobuf JSON mapping with OTLP's exceptions: trace/span ids as hex
 * strings, enums as integers, 64-bit integers as strings or numbers, lowerCamelCase keys;
 * unknown fields ignored). */
int otlp_decode_traces_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                            struct span_batch *out, char *err, size_t errlen);

#endif
