/*
 * zipkin.h: Zipkin v2 span decoders (JSON and proto3 ListOfSpans, as POSTed to /api/v2/spans)
 * into the span model, with the same contract as the OTLP decoders of otlp.h.
 *
 * MAPPING (Zipkin v2 -> span model; the query side, query/zipkin.c, maps back)
 *
 *   traceId        16 hex digits (64-bit) -> the low 8 bytes of the 128-bit id, high 8 bytes
 *                  zero (as Zipkin documents); 32 hex digits -> all 16 bytes. Proto: 8 or 16
 *                  bytes, likewise. Any other length, non-hex, all zero or absent: the span is
 *                  rejected alone (batch->rejected). Zipkin's server also left-pads shorter
 *                  ids; we refuse them, as the OTLP decoders refuse short ids.
 *   id             16 hex digits (8 bytes), not all zero; else the span is rejected.
 *   parentId       16 hex digits; all zero, or equal to id (Zipkin "undoes" such a circular
 *                  reference), means no parent; any other bad value rejects the span.
 *   kind           CLIENT/SERVER/PRODUCER/CONSUMER -> the same span kind. Absent (or an
 *                  unknown name) -> SPAN_KIND_UNSPECIFIED, as the OpenTelemetry Collector's
 *                  Zipkin receiver does, unless the tag span.kind = "internal" is present (what
 *                  the OTel Zipkin exporter writes for INTERNAL spans): then INTERNAL and the tag
 *                  is consumed.
 *   name           span name, lower-cased (ASCII), as Zipkin's Span.Builder does.
 *   timestamp      µs -> start_unix_nano (x1000; a fractional JSON number keeps its ns);
 *                  absent or negative -> 0 (Zipkin: "absent"). duration µs -> end = start +
 *                  duration.
 *   localEndpoint  -> the span's resource attributes:
 *                    serviceName -> service.name, lower-cased (Zipkin's Endpoint.Builder lower-
 *                                   cases service names; so do its queries)
 *                    ipv4 (or ipv6 when there is no ipv4) -> host.ip (text form)
 *                    ipv6 when ipv4 is also present -> zipkin.local_endpoint.ipv6
 *                    port (> 0) -> zipkin.local_endpoint.port (int; semantic conventions have
 *                                  no resource attribute for a listen port)
 *                  Consecutive spans with the same local endpoint share one resource.
 *   remoteEndpoint -> span attributes (OTel semantic conventions):
 *                    serviceName -> peer.service (lower-cased)
 *                    ipv4 (or ipv6 alone) -> network.peer.address
 *                    ipv6 when ipv4 is also present -> zipkin.remote_endpoint.ipv6
 *                    port (> 0) -> network.peer.port (int)
 *                  An endpoint attribute replaces a tag of the same key.
 *   tags           -> string attributes, in order (a later duplicate key wins), except:
 *                    error            -> status ERROR, status message = the tag's value
 *                                        (none when the value is "true" or ""); consumed
 *                    otel.status_code (OK / ERROR / UNSET, or STATUS_CODE_*) and
 *                    otel.status_description -> status code and message; consumed
 *                    w3c.tracestate   -> trace_state; consumed
 *                    span.kind = "internal" on a span without kind -> INTERNAL; consumed
 *                  Everything else (http.status_code, the Istio proxy's istio.*,
 *                  upstream_cluster, response_flags, node_id, guid:x-request-id, ...) stays a
 *                  string attribute; span_is_error() reads http.status_code >= 500 from it.
 *   annotations    -> events: timestamp µs -> time_unix_nano, value -> name.
 *   shared         true -> attribute zipkin.shared = true (bool), except on CLIENT spans, where
 *                  Zipkin's Span.Builder drops it too. (Envoy reports the client and server
 *                  halves of a call under one span id; the flag tells them apart.)
 *   debug          true -> attribute zipkin.debug = true (bool).
 *   scope          every span gets an empty instrumentation scope.
 *
 * Caps (struct decode_limits): max_spans per request (-E2BIG); per span, max_attrs tags (and
 * attributes once the endpoint ones are added), max_events annotations and max_string bytes
 * per string (name, tag key or value, annotation, service name): a span over a cap is
 * rejected alone. Strings: invalid UTF-8 bytes and NULs become U+FFFD, as in the OTLP
 * decoders.
 *
 * Decoders run on HTTP threads, one request per call, no shared state: thread-safe.
 */
#ifndef MESHSCOPE_ZIPKIN_H
#define MESHSCOPE_ZIPKIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otlp.h"
#include "storage.h"

/* Decodes a Zipkin v2 JSON body (an array of spans).
 *  body, len: the decompressed request body (borrowed).
 *  lim: caps (borrowed; NULL = decode_limits_default).
 *  out: an empty batch (borrowed); spans are appended, strings copied into its arena.
 *  err, errlen: on failure, one line naming the problem with its path
 *               (e.g. "spans[2].timestamp: expected a number, got a string").
 * Returns 0 (out holds the valid spans; out->rejected / out->reject_reason count and explain
 * the refused ones), -EINVAL for an undecodable body (invalid JSON, not an array, a known field
 * of the wrong JSON type: the caller answers 400), -E2BIG over lim->max_spans, -ENOMEM. On a
 * negative return out may hold partial data: the caller destroys it. */
int zipkin_decode_spans_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                             struct span_batch *out, char *err, size_t errlen);

/* Same for a proto3 zipkin.proto3.ListOfSpans (proto/zipkin/zipkin.proto). -EINVAL for
 * malformed protobuf. */
int zipkin_decode_spans_proto(const uint8_t *body, size_t len, const struct decode_limits *lim,
                              struct span_batch *out, char *err, size_t errlen);

/* ----- shared by zipkin_json.c and zipkin_proto.c (not a public interface) ------------------ */

/* One decoded endpoint, before mapping. Strings are borrowed from the decoder's input. */
struct zipkin_endpoint_in {
    bool present;
    const char *service; /* NULL or "" = absent */
    size_t service_len;
    bool has_ipv4, has_ipv6;
    uint8_t ipv4[4];
    uint8_t ipv6[16];
    int32_t port; /* <= 0 = absent */
};

struct zipkin_str_in {
    const char *ptr; /* may contain NULs and invalid UTF-8 (fixed when copied) */
    size_t len;
};

struct zipkin_tag_in {
    struct zipkin_str_in key, value;
};

struct zipkin_annotation_in {
    uint64_t time_ns;
    struct zipkin_str_in value;
};

/* A Zipkin span whose ids the format-specific decoder has already validated. */
struct zipkin_span_in {
    uint8_t trace_id[16];
    uint8_t id[8];
    uint8_t parent_id[8];
    bool has_parent;
    int kind; /* zipkin.proto3 Span.Kind: 0 absent, 1 CLIENT, 2 SERVER, 3 PRODUCER, 4 CONSUMER */
    struct zipkin_str_in name;
    uint64_t start_ns;
    uint64_t duration_ns;
    struct zipkin_endpoint_in local, remote;
    const struct zipkin_tag_in *tags;
    size_t n_tags;
    const struct zipkin_annotation_in *annotations;
    size_t n_annotations;
    bool debug, shared;
};

/* State kept across the spans of one request (the shared scope, the last resource). */
struct zipkin_builder {
    struct span_batch *b;
    const struct decode_limits *lim;
    struct scope *scope;
    struct resource *last_res;
    struct zipkin_endpoint_in last_local;
    char why[192]; /* reason of the last refusal, relative to the span */
};

/* Maps in (borrowed) to a new span appended to zb->b. Returns 0, DECODE_REFUSE (decode.h) when
 * the span breaks a cap (nothing appended; zb->why says why), or -ENOMEM. The decoder then
 * counts the refusal with decode_reject, as "<where>.<why>" (e.g. "spans[2].traceId: all zero"). */
int zipkin_build_span(struct zipkin_builder *zb, const struct zipkin_span_in *in);

/* Formats a refusal of the span at hand into zb->why; returns DECODE_REFUSE. */
int zipkin_refuse(struct zipkin_builder *zb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
