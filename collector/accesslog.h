/*
 * accesslog.h: the Envoy / Istio JSON access-log decoder (POST /api/v1/accesslogs) into the
 * access-log model of storage.h, with the contract of the span decoders (otlp.h).
 *
 * BODY: application/x-ndjson, one JSON object per line (blank lines skipped, "\r\n" accepted),
 * or application/json with a JSON array of objects or a single object (pretty-printed too).
 * Anything whose first non-blank byte is neither '{' nor '[' is undecodable (400), and so is
 * a '[' body that is not valid JSON. An empty body is accepted with nothing in it.
 *
 * MAPPING (Envoy's default JSON format, Istio's default accessLogFormat, and the nginx and HAProxy
 * JSON formats of README "Access logs from nginx and HAProxy"; "-", "" and null mean absent for
 * every field except response_flags, whose "-" means "no flags"):
 *   start_time (also timestamp, time, @timestamp)   RFC 3339 -> time_unix_nano; required unless
 *                                                    msec or start_time_ms is there
 *   msec                                            nginx: decimal epoch seconds of the log
 *                                                    write (request end); wins over start_time:
 *                                                    start = msec - request_time (ms precision)
 *   start_time_ms                                   HAProxy: integer epoch ms (accept date),
 *                                                    used when no start_time is there
 *   method path protocol response_flags response_code_details connection_termination_details
 *   upstream_transport_failure_reason x_forwarded_for user_agent request_id authority
 *   upstream_host upstream_cluster upstream_local_address downstream_local_address
 *   downstream_remote_address requested_server_name route_name      strings, same names
 *   source_workload source_namespace (source_workload_namespace) source_principal
 *   destination_workload destination_namespace (destination_workload_namespace)
 *                                                    Istio custom fields, strings
 *   upstream_name (nginx $proxy_host) / backend_name (HAProxy %b)
 *                                                    -> ALOG_DESTINATION_SERVICE, ":port" cut:
 *                                                    the called service (RED
 *                                                    destination_service, the service graph's
 *                                                    server node); without them, for an
 *                                                    "outbound|" record, the service of
 *                                                    upstream_cluster's host ("reviews")
 *   response_flags "--"                              HAProxy's normal termination state, stored
 *                                                    as "-"; any other value marks a failure
 *   response_code bytes_received bytes_sent duration   integers, as JSON numbers or digit
 *                                                    strings (Envoy's typed and untyped JSON);
 *                                                    response_code 0..999; a negative number
 *                                                    (HAProxy's -1, "not reached") is absent
 *   request_time                                    nginx: decimal seconds -> duration_ms
 *                                                    when duration is absent
 *   upstream_service_time                             integer ms; anything unparsable (e.g. a
 *                                                    header with retries) is absent
 *   upstream_response_time                          nginx: decimal seconds, or its list for
 *                                                    retries ("0.010, 0.020", "0.010 : 0.020"):
 *                                                    the sum -> upstream_service_time_ms when
 *                                                    upstream_service_time is absent (lenient)
 *   upstream_status                                 nginx: kept only in ALOG_RAW
 *   traceparent                                      W3C: trace id + span id
 *   trace_id / traceId / x-b3-traceid / x_b3_traceid 16 or 32 hex digits (64-bit ids padded);
 *   span_id / spanId / x-b3-spanid / x_b3_spanid     16 hex digits. A malformed or all-zero id
 *                                                    is ignored (the record is kept untraced).
 *   service / service.name / service_name / istio.canonical_service / canonical_service
 *                                                    the reporting service; else the transport's
 *                                                    default (alog_defaults.service: a syslog
 *                                                    listener's); else HAProxy's frontend_name;
 *                                                    else, for an inbound record,
 *                                                    destination_workload, the service of
 *                                                    upstream_cluster's host
 *                                                    ("inbound|9080||reviews.default.svc..."),
 *                                                    then of :authority; for any other record
 *                                                    source_workload; else "unknown_service"
 *   upstream_cluster prefix "inbound|" or "InboundPassthroughCluster" -> direction inbound;
 *                    "outbound|", "PassthroughCluster", "BlackHoleCluster" -> outbound; else
 *                    alog_defaults.direction when set; else outbound when upstream_name or
 *                    backend_name is there (the proxy called upstream); else unknown.
 *   The object's JSON text -> ALOG_RAW (NDJSON: the line as sent, trimmed; an array element:
 *   re-serialised compactly). Other keys are kept only there.
 *
 * A line that is not a JSON object, lacks or has a bad start_time (msec, start_time_ms), has a known field of the
 * wrong type, a string over lim->max_string bytes, more than lim->max_attrs members or more than
 * ACCESSLOG_MAX_LINE bytes is rejected alone: out->rejected counts it and out->reject_reason
 * keeps the first reason, naming the line ("line 3: response_code: expected an integer").
 * More than lim->max_spans records (lines) in one body: -E2BIG (413).
 *
 * Thread-safety: none needed (works on the caller's objects).
 */
#ifndef MESHSCOPE_ACCESSLOG_H
#define MESHSCOPE_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#include "otlp.h"
#include "storage.h"

/* Longest NDJSON line accepted (bytes, before trimming); Envoy's lines are well under 4 KiB. */
#define ACCESSLOG_MAX_LINE 65536

/* What a transport knows about the records it carries that the records themselves may not say
 * (a syslog listener's configured service, the proxy kind). Borrowed for the call. */
struct alog_defaults {
    const char *service;           /* reporting service when the record names none; NULL: the
                                      record's own rules (MAPPING above) */
    enum alog_direction direction; /* used when upstream_cluster does not tell; nginx and
                                      HAProxy records are OUTBOUND (the proxy calls upstream) */
};

/* Decodes an access-log body. Same contract as otlp_decode_traces_json: 0 (out->logs holds the
 * valid records, out->rejected counts refused lines), -EINVAL undecodable (err says why), -E2BIG
 * over lim->max_spans records, -ENOMEM. lim may be NULL (defaults). Borrows body; out borrowed. */
int accesslog_decode_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                          struct span_batch *out, char *err, size_t errlen);

/* For decoders of other encodings (OTLP logs, otlp_logs.c): sets the field of l that the JSON key
 * `key` names in MAPPING above (a string field, response_code, bytes_received, bytes_sent,
 * duration, upstream_service_time or traceparent) from its text val[0..len) (borrowed; copied
 * into a, the record's batch arena, with invalid UTF-8 replaced), by the rules above for a JSON
 * string: "-" is absent (but for response_flags); integers are digit strings, in range or absent;
 * a field already set is kept (the first present wins; traceparent only fills absent ids). The
 * caller bounds len. Returns 1 when key names a field, 0 when it does not (l untouched), -ENOMEM.
 */
int accesslog_set_field(struct arena *a, struct access_log *l, const char *key, const char *val,
                        size_t len);

/* Completes a record once its fields are set: direction from upstream_cluster, response_flags
 * "-" when absent, and the reporting service when no field named it (MAPPING above). Copies into
 * a (the record's batch arena). Returns 0 or -ENOMEM. */
int accesslog_derive(struct arena *a, struct access_log *l);

/* accesslog_decode_json with defaults (d may be NULL = accesslog_decode_json). Same contract;
 * borrows d. */
int accesslog_decode_json_ex(const uint8_t *body, size_t len, const struct alog_defaults *d,
                             const struct decode_limits *lim, struct span_batch *out,
                             char *err, size_t errlen);

/* RFC 3339 time (start_time) to ns since the epoch; -1 when malformed or before 1970. Exposed
 * for tests. */
int64_t accesslog_parse_rfc3339(const char *s, size_t n);

/* The answer to an accepted POST /api/v1/accesslogs: {"accepted":N,"rejected":M,"error":...}
 * (error null when nothing was rejected). malloc'd into *out. Returns 0 or -ENOMEM. */
int accesslog_encode_response(uint32_t accepted, uint32_t rejected, const char *error,
                              char **out /* OUT */, size_t *out_len /* OUT */);

#endif
