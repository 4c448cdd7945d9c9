/*
 * query.h: meshscope's JSON query APIs (Jaeger v1 "uimodel" shapes, Zipkin v2 in zipkin.c).
 *
 * The collector's HTTP layer hands every GET under /api/ to query_handle() with the decoded path
 * and query-string arguments; this module parses and validates the parameters, runs the store
 * reads and renders the JSON body. It knows nothing of libmicrohttpd: requests and responses are
 * plain structs, so it is unit-testable without a socket. Thread-safe: any HTTP thread may call
 * it at once (the store lends each call its own read-only connection).
 */
#ifndef MESHSCOPE_QUERY_H
#define MESHSCOPE_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "storage.h"

/* One query-string argument, URL-decoded. Repeated keys (tag=a:b&tag=c:d) appear repeatedly,
 * in request order. */
struct query_arg {
    const char *key;
    const char *value;
};

struct query_response {
    int status;               /* HTTP status: 200, 400, 404, 500, 503 */
    char *body;               /* malloc'd; caller frees */
    size_t len;
    const char *content_type; /* static string, e.g. "application/json" */
};

/* Routes GET requests for path (already URL-decoded, without the query string).
 * Returns 0 when path is one of this module's routes (resp filled in, even for errors: a 400
 * carries Jaeger's error body naming the parameter), or -ENOENT when it is not (resp untouched).
 * Borrows st, path and args. */
int query_handle(struct store *st, const char *path, const struct query_arg *args, size_t n_args,
                 struct query_response *resp /* OUT */);

/* Parses a Go-style duration ("1ms", "1.5s", "2h45m", "100us", "300ns") into microseconds
 * (rounded down). Returns 0, or -EINVAL for anything else (negative, empty, unknown unit). */
int query_parse_duration(const char *s, int64_t *out_us /* OUT */);

/* The JSON text of an OTLP AnyValue as /api/logs shows a log body or attributes: strings,
 * numbers, booleans, bytes as base64, arrays, kvlists as objects (keys in stored order), empty
 * as null; always valid JSON (invalid UTF-8 as U+FFFD). malloc'd into *out (NUL-terminated;
 * caller frees). Returns 0 or -ENOMEM. Borrows v. Thread-safe. */
int query_value_json(const struct value *v, char **out /* OUT */, size_t *out_len /* OUT */);

#endif
