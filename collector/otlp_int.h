/*
 * otlp_int.h: what the OTLP decoders of traces (otlp_proto.c, otlp_json.c) and of logs
 * (otlp_logs.c) share. Both signals wrap their items the same way: a request holds
 * Resource<X> (field 1), each a Resource (1), Scope<X> (2) and schema_url (3); each Scope<X>
 * holds an InstrumentationScope (1), the items (2) and schema_url (3). So the request walk,
 * the resource / scope / attribute / AnyValue conversions and the caps are written once here,
 * and a signal only converts its own item (a Span, a LogRecord). Not a public interface.
 *
 * Item converters return 0, DECODE_REFUSE (the item breaks a cap or has a bad id: c->why says
 * how, relative to the item; the walk counts it in out->rejected, with its path, and goes on),
 * -EINVAL (JSON only: c->err holds the full path) or -ENOMEM. A converter that added to the
 * batch and then refuses removes what it added.
 *
 * Thread-safety: no shared state; every call works on the caller's objects.
 */
#ifndef MESHSCOPE_OTLP_INT_H
#define MESHSCOPE_OTLP_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "otlp.h"
#include "storage.h"

#include "opentelemetry/proto/common/v1/common.pb-c.h"

/* ----- protobuf (otlp_proto.c) ------------------------------------------------------------- */

struct otlp_pbconv {
    struct span_batch *b;
    const struct decode_limits *lim;
    char why[160]; /* detail of the current refusal, relative to the object being converted */
};

/* Formats c->why; returns DECODE_REFUSE. */
int otlp_pb_refuse(struct otlp_pbconv *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Copies a protobuf-c string (NULL = "") into the arena (U+FFFD for invalid UTF-8); over
 * max_string bytes: DECODE_REFUSE naming what. */
int otlp_pb_copy_str(struct otlp_pbconv *c, const char *s, struct mstr *out, const char *what);
/* The same for len bytes at s (NUL bytes included: each becomes U+FFFD). */
int otlp_pb_copy_len(struct otlp_pbconv *c, const char *s, size_t len, struct mstr *out,
                     const char *what);
/* Puts "[i]" after the what that starts c->why (a refusal inside item i of the list what). */
void otlp_pb_index_why(struct otlp_pbconv *c, const char *what, size_t i);
/* An AnyValue (NULL = empty); depth = arrays/kvlists around it. */
int otlp_pb_convert_value(struct otlp_pbconv *c,
                          const Opentelemetry__Proto__Common__V1__AnyValue *in, struct value *out,
                          unsigned depth, const char *what);
/* A repeated KeyValue plus its dropped count. */
int otlp_pb_convert_attrs(struct otlp_pbconv *c,
                          Opentelemetry__Proto__Common__V1__KeyValue *const *kvs, size_t n,
                          uint32_t dropped, struct attrs *out, const char *what);
/* An id of want bytes: another length, or all zero unless zero_ok, refuses. */
int otlp_pb_check_id(struct otlp_pbconv *c, const ProtobufCBinaryData *id, size_t want,
                     bool zero_ok, const char *what);

/* One signal's request, as the shared walk sees it. */
struct otlp_pb_signal {
    const ProtobufCMessageDescriptor *request; /* Export<X>ServiceRequest */
    const ProtobufCMessageDescriptor *item;    /* Span, LogRecord: counted against max_spans */
    const char *request_name;                  /* for "undecodable ... protobuf" */
    const char *resource_field, *scope_field, *items_field; /* path names: "resource_spans"... */
    /* Converts one item (borrowed) under res and sc (in the batch arena). */
    int (*convert_item)(struct otlp_pbconv *c, const ProtobufCMessage *item,
                        const struct resource *res, const struct scope *sc);
};

/* Message nesting pbwire_scan allows for lim (room for lim->max_depth AnyValue levels). */
unsigned otlp_pb_wire_depth(const struct decode_limits *lim);
/* protobuf-c's heap budget for a request: 16 x its bytes + OTLP_PB_PER_SPAN per span (an
 * empty Span is 2 bytes on the wire, ~200 unpacked) + OTLP_PB_SLACK. */
#define OTLP_PB_PER_SPAN 256u
#define OTLP_PB_SLACK (1u << 20)
/* The protobuf decode_fn (otlp.h contract) of signal sig. */
int otlp_pb_decode(const struct otlp_pb_signal *sig, const uint8_t *body, size_t len,
                   const struct decode_limits *lim, struct span_batch *out, char *err,
                   size_t errlen);

/* ----- OTLP/JSON (otlp_json.c) ------------------------------------------------------------- */

struct otlp_jconv {
    struct span_batch *b;
    const struct decode_limits *lim;
    char why[192]; /* refusal detail, relative to the object converted */
    char err[256]; /* -EINVAL message, full path */
};

/* Format c->why / c->err; return DECODE_REFUSE / -EINVAL. */
int otlp_json_refuse(struct otlp_jconv *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int otlp_json_invalid(struct otlp_jconv *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The member named camel (lowerCamelCase) or snake (proto name; NULL = same); NULL if absent or
 * null. Borrows. */
json_t *otlp_json_field(const json_t *obj, const char *camel, const char *snake);
/* Typed fields of obj (path: obj's full path, for -EINVAL; what: relative, for refusals).
 * Absent: "" / 0 / NULL. Rules in otlp_json.c's header comment. */
int otlp_json_str(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                  const char *path, const char *what, struct mstr *out);
int otlp_json_u64(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                  const char *path, uint64_t *out);
int otlp_json_u32(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                  const char *path, uint32_t *out);
int otlp_json_enum(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                   const char *path, const char *const *names, int n_names, int *out);
int otlp_json_id(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                 const char *path, const char *what, uint8_t *out, size_t want, bool empty_ok,
                 bool zero_ok, bool *present);
/* An AnyValue object (NULL = empty). */
int otlp_json_value(struct otlp_jconv *c, const json_t *v, const char *path, const char *what,
                    struct value *out, unsigned depth);
/* Field as an object (NULL when absent) / an array (NULL, *n = 0 when absent); -EINVAL naming
 * path for another JSON type. */
int otlp_json_object(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                     const char *path, json_t **out /* OUT */);
int otlp_json_array(struct otlp_jconv *c, const json_t *obj, const char *camel, const char *snake,
                    const char *path, json_t **out /* OUT */, size_t *n /* OUT */);
/* An integer JSON value (number, integral real or decimal string) within [-max_neg, max_pos]. */
bool otlp_json_to_int(const json_t *v, uint64_t max_pos, uint64_t max_neg, bool *neg,
                      uint64_t *mag);
/* A double: a number, a numeric string, "NaN", "Infinity" or "-Infinity". */
bool otlp_json_to_double(const json_t *v, double *out /* OUT */);
/* attributes + droppedAttributesCount of obj. */
int otlp_json_attrs(struct otlp_jconv *c, const json_t *obj, const char *path, const char *what,
                    struct attrs *out);

struct otlp_json_signal {
    const char *resource_camel, *resource_snake; /* "resourceSpans", "resource_spans" */
    const char *scope_camel, *scope_snake;       /* "scopeSpans", "scope_spans" */
    const char *items_camel, *items_snake;       /* "spans", "spans" */
    const char *noun;                            /* "spans", for the -E2BIG message */
    /* Converts one item (borrowed; may be JSON null) at path. */
    int (*convert_item)(struct otlp_jconv *c, const json_t *item, const char *path,
                        const struct resource *res, const struct scope *sc);
};

/* The OTLP/JSON decode_fn (otlp.h contract) of signal sig. */
int otlp_json_decode(const struct otlp_json_signal *sig, const uint8_t *body, size_t len,
                     const struct decode_limits *lim, struct span_batch *out, char *err,
                     size_t errlen);

#endif
