/*
 * otlp_int.h: pieces of the OTLP trace decoders (otlp_proto.c, otlp_json.c) that the other OTLP
 * signals' decoders (otlp_metrics.c) reuse rather than copy: attribute conversion and the
 * OTLP/JSON field helpers. Not a public interface. Same contracts as in those files: helpers
 * return 0, DECODE_REFUSE (the object breaks a cap: the conv's why says how), -EINVAL (JSON:
 * c->err names the path) or -ENOMEM. Strings go to the span_batch's arena.
 *
 * Thread-safety: no shared state.
 */
#ifndef MESHSCOPE_OTLP_INT_H
#define MESHSCOPE_OTLP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "otlp.h"
#include "storage.h"

/* Protobuf: converts n protobuf-c KeyValue messages (Opentelemetry__Proto__Common__V1__KeyValue
 * pointers, borrowed) into out, in b's arena, with lim's caps. On DECODE_REFUSE, why holds the
 * reason relative to what. */
int otlp_proto_convert_attrs(struct span_batch *b, const struct decode_limits *lim,
                             void *const *kvs, size_t n, struct attrs *out /* OUT */,
                             const char *what, char *why, size_t whylen);

/* OTLP/JSON conversion state (borrowed by every helper below). */
struct jconv {
    struct span_batch *b;            /* strings are copied into b's arena */
    const struct decode_limits *lim;
    char why[192]; /* refusal detail, relative to the object converted */
    char err[256]; /* -EINVAL message, full path */
};

/* The member named camel (lowerCamelCase) or snake (proto name); NULL if absent or null. */
json_t *otlp_json_field(const json_t *obj, const char *camel, const char *snake);
/* Field as an object / array (NULL, 0 when absent); -EINVAL for another JSON type. */
int otlp_json_get_object(struct jconv *c, const json_t *obj, const char *camel,
                         const char *snake, const char *path, json_t **out /* OUT */);
int otlp_json_get_array(struct jconv *c, const json_t *obj, const char *camel, const char *snake,
                        const char *path, json_t **out /* OUT */, size_t *n /* OUT */);
/* String field copied into the arena ("" when absent); over max_string -> DECODE_REFUSE. */
int otlp_json_get_str(struct jconv *c, const json_t *obj, const char *camel, const char *snake,
                      const char *path, const char *what, struct mstr *out /* OUT */);
/* Unsigned 64-bit field (number or decimal string; 0 when absent). */
int otlp_json_get_u64(struct jconv *c, const json_t *obj, const char *camel, const char *snake,
                      const char *path, uint64_t *out /* OUT */);
/* Enum field: integer (unknown values -> 0) or one of names[] (index = value). */
int otlp_json_get_enum(struct jconv *c, const json_t *obj, const char *camel, const char *snake,
                       const char *path, const char *const *names, int n_names, int *out);
/* An integer JSON value (number, integral real or decimal string) within [-max_neg, max_pos]. */
bool otlp_json_to_int(const json_t *v, uint64_t max_pos, uint64_t max_neg, bool *neg,
                      uint64_t *mag);
/* A double: a number, a numeric string, "NaN", "Infinity" or "-Infinity". */
bool otlp_json_to_double(const json_t *v, double *out /* OUT */);
/* attributes + droppedAttributesCount of obj. */
int otlp_json_convert_attrs(struct jconv *c, const json_t *obj, const char *path,
                            const char *what, struct attrs *out /* OUT */);

#endif
