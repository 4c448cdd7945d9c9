/*
 * otlp.h: OTLP trace decoders (protobuf and JSON) into the span model, OTLP log decoders into the
 * access-log model, and the encoders of the OTLP/HTTP responses (ExportTraceServiceResponse,
 * google.rpc.Status).
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
/* The same request decoded through protobuf-c's unpacked tree (otlp_proto.c): the reference
 * that fuzz_otlp_wire holds otlp_decode_traces_proto (otlp_wire.c, one pass over the wire
 * bytes) to, and what it hands the requests it does not read itself. */
int otlp_decode_traces_protoc(const uint8_t *body, size_t len, const struct decode_limits *lim,
                              struct span_batch *out, char *err, size_t errlen);

/* Same for OTLP/JSON (protobuf JSON mapping with OTLP's exceptions: trace/span ids as hex
 * strings, enums as integers, 64-bit integers as strings or numbers, lowerCamelCase keys;
 * unknown fields ignored). */
int otlp_decode_traces_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                            struct span_batch *out, char *err, size_t errlen);

/* Decodes an ExportLogsServiceRequest (POST /v1/logs; otlp_logs.c), protobuf or OTLP/JSON (the
 * JSON rules of otlp_decode_traces_json; severityNumber as an integer or its enum name), into
 * out->logs, with the contract of the trace decoders: lim->max_spans bounds the log records of
 * one request (-E2BIG), the other caps apply per record; 0 with out->rejected counting refused
 * records (a trace_id not 16 bytes / span_id not 8 bytes or not hex, a cap exceeded; reason in
 * out->reject_reason), -EINVAL (err says why), -ENOMEM.
 *
 * MAPPING (every record is stored, as one access-log record):
 *   time            time_unix_nano, else observed_time_unix_nano, else the time received
 *   trace / span id trace_id / span_id (empty or all zero: none; a span id only with a trace id)
 *   severity        severity_text, else severity_number's short name ("INFO", "WARN2", ...)
 *   severity_number 1..24, else absent
 *   body            a string as is; any other AnyValue as JSON (kvlist -> object)
 *   attributes      the record's attributes as one JSON object
 *   service         resource service.name, unless it is an SDK's "unknown_service..." default
 *                   and a field below names one
 * Access-log fields are then read, by accesslog.h's MAPPING (same keys, same rules), from the
 * attributes, then from a kvlist body, then from a string body holding one JSON object; the
 * first present wins. Values: strings; integers (and integral doubles) as their digits; a string
 * array by its first item. These OTel semantic-convention names stand for the JSON key beside:
 *   http.request.method method | url.path path | http.response.status_code response_code |
 *   user_agent.original user_agent | server.address authority | client.address
 *   downstream_remote_address | http.request.header.x-request-id (or x-request-id) request_id |
 *   http.request.header.x-forwarded-for x_forwarded_for | http.request.body.size
 *   bytes_received | http.response.body.size bytes_sent
 * A record with a response code and a method or an upstream_cluster is an access-log record (as
 * Envoy's OpenTelemetry access logger sends them with the attributes operators configure,
 * Istio's envoyOtelAls provider likewise): it gets accesslog.h's derived fields (direction,
 * response_flags "-", the service from the fields, else from the resource's cluster_name, Envoy's
 * node cluster, up to its first '.', else as accesslog.h derives it) and feeds RED like a JSON
 * access-log line. Any other record is an application log: response_code -1 (absent), no RED. */
int otlp_decode_logs_proto(const uint8_t *body, size_t len, const struct decode_limits *lim,
                           struct span_batch *out, char *err, size_t errlen);
int otlp_decode_logs_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                          struct span_batch *out, char *err, size_t errlen);

#endif
