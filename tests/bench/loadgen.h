/*
 * loadgen.h: request templates of meshscope-loadgen (loadgen_encode.c), shared with the HTTP
 * driver (loadgen.c).
 *
 * A template is one request body, encoded once (OTLP protobuf, OTLP JSON or Zipkin v2 JSON)
 * from a set of generated mesh traces, plus the offsets of every trace, span and parent id in
 * it. Before each send the driver calls lg_template_patch, which writes fresh random ids at
 * those offsets (raw bytes for protobuf, lowercase hex for JSON; the lengths never change), so
 * every span sent is unique and nothing else is re-encoded, and moves every span's start and end
 * time by the time since the template was built, so that each send's spans start now.
 */
#ifndef MESHSCOPE_LOADGEN_H
#define MESHSCOPE_LOADGEN_H

#include <stddef.h>
#include <stdint.h>

/* LG_ACCESSLOG_NDJSON: the driver sends only the template's access-log lines (its body is built as
 * OTLP JSON and not sent). */
enum lg_protocol { LG_OTLP_PROTO, LG_OTLP_JSON, LG_ZIPKIN_JSON, LG_ACCESSLOG_NDJSON };
enum lg_scenario { LG_BOOKINFO, LG_WIDE };

struct lg_slot;

struct lg_template {
    uint8_t *body;
    size_t len;
    unsigned spans;  /* spans in the body */
    unsigned traces; /* complete traces in the body */
    unsigned errors; /* spans that report a failure (5xx / status ERROR) */
    struct lg_slot *slots;
    size_t n_slots;
    uint8_t *ids; /* scratch: traces * 16 + spans * 8 bytes of fresh ids */
    uint64_t built_ns; /* the clock when built: lg_template_patch moves every time by now - this */
    /* --access-logs: one Envoy/Istio JSON access-log line (NDJSON) per SERVER span, for
     * POST /api/v1/accesslogs; its trace and span ids are hex slots patched with the same ids
     * as the spans (NULL when not asked for). */
    uint8_t *logs;
    size_t logs_len;
    unsigned log_lines;
    struct lg_slot *log_slots;
    size_t n_log_slots;
};

/* Builds a template of complete traces of the scenario, at least min_spans spans (whole traces,
 * so up to one trace more), all spans of a service under one resource. services is the wide
 * mesh's size (ignored for Bookinfo); seed varies the traces between templates. Returns 0 or
 * -ENOMEM; t (OUT) is released with lg_template_free. */
int lg_template_build(struct lg_template *t, enum lg_protocol proto, enum lg_scenario scenario,
                      unsigned services, unsigned min_spans, uint64_t seed);
/* As lg_template_build; access_logs also builds t->logs (see above). */
int lg_template_build_ex(struct lg_template *t, enum lg_protocol proto, enum lg_scenario scenario,
                         unsigned services, unsigned min_spans, uint64_t seed, int access_logs);
/* Writes fresh trace and span ids (parents follow their span) into t->body, and the same ids
 * into t->logs when present, and moves every span time and access-log start_time to now (by
 * the time since the template was built). *rng is the caller's xorshift state (one per thread). */
void lg_template_patch(struct lg_template *t, uint64_t *rng);
/* Accepts a zeroed or half-built template. */
void lg_template_free(struct lg_template *t);

#endif
