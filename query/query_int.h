/*
 * query_int.h: declarations shared by the query module's files (not part of the public API).
 *
 *  - struct sbuf: a growable output buffer with a hard size cap and a sticky failure flag, plus
 *    the JSON writers on it (strings escaped the way Go's encoding/json does, numbers formatted
 *    the way Go formats them), so the Jaeger renderer is one pass over the span model.
 *  - Parameter parsing (params.c): the Jaeger query-string rules, each error a message that
 *    names the parameter.
 *  - The Jaeger renderers (jaeger.c), exposed here so tests can render an in-memory batch.
 *
 * Nothing here is thread-shared: every call works on its own buffers.
 */
#ifndef MESHSCOPE_QUERY_INT_H
#define MESHSCOPE_QUERY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "query.h"

/* ----- output buffer ---------------------------------------------------------------------- */

/* Largest response body we build: a trace of ~200k spans or a search of 1500 big traces. A query
 * past it gets a 500 asking to narrow it rather than taking the daemon's memory. */
#define QUERY_MAX_BODY ((size_t)256 << 20)

struct sbuf {
    char *p; /* malloc'd; NUL-terminated while !failed */
    size_t len;
    size_t cap;
    size_t max; /* hard cap on len */
    int error;  /* 0, or -ENOMEM / -E2BIG: sticky, every later write is a no-op */
};

void sb_init(struct sbuf *b, size_t max);
void sb_free(struct sbuf *b);
/* Hands the buffer over (caller frees) and resets b; NULL if b failed. */
char *sb_take(struct sbuf *b, size_t *len /* OUT */);
void sb_put(struct sbuf *b, const void *s, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_putc(struct sbuf *b, char c);
void sb_int(struct sbuf *b, int64_t v);
void sb_uint(struct sbuf *b, uint64_t v);
/* A JSON number as Go's encoding/json writes a float64 (shortest round-trip digits, fixed
 * notation for 1e-6 <= |v| < 1e21). NaN and infinities, which JSON cannot carry, become the
 * strings "NaN", "+Inf", "-Inf". */
void sb_double(struct sbuf *b, double v);
/* A quoted JSON string. Invalid UTF-8 becomes U+FFFD; control characters, <, >, &, U+2028 and
 * U+2029 are escaped as Go does, so the output is always valid JSON whatever the input bytes. */
void sb_json_str(struct sbuf *b, const char *s, size_t n);
static inline void sb_json_cstr(struct sbuf *b, const char *s)
{
    sb_json_str(b, s, __builtin_strlen(s));
}
/* Nested array/kvlist levels sb_json_value renders; deeper values become null (the decoders cap
 * nesting lower). */
#define QUERY_MAX_VALUE_DEPTH 32
/* A span model value as Go's json.Marshal writes pcommon's AsRaw() of it: strings, booleans,
 * numbers (sb_int, sb_double), bytes as base64, arrays, maps; empty as null. go_map: a kvlist's
 * keys sorted, the last of duplicate keys kept, as Go marshals a map; false: keys in stored
 * order, duplicates kept. Levels beyond QUERY_MAX_VALUE_DEPTH become null. Borrows v. */
void sb_json_value(struct sbuf *b, const struct value *v, bool go_map);
/* A quoted string of standard base64 (with padding), as Go encodes []byte. */
void sb_json_base64(struct sbuf *b, const uint8_t *p, size_t n);
/* A quoted string of lowercase hex. */
void sb_json_hex(struct sbuf *b, const uint8_t *p, size_t n);

/* ----- parameters ------------------------------------------------------------------------- */

#define QUERY_DEFAULT_LIMIT 100                       /* Jaeger's defaultQueryLimit */
#define QUERY_MAX_LIMIT 1500                          /* Jaeger UI's largest choice; clamped */
#define QUERY_MAX_TAGS 32                             /* tag filters ANDed in one search */
#define QUERY_MAX_TRACE_IDS 100                       /* traceID= values in one request */
#define QUERY_DEFAULT_LOOKBACK_US (2 * 86400000000LL) /* Jaeger: 2 days for trace search */
#define QUERY_DEFAULT_DEP_LOOKBACK_MS (86400000LL)    /* Jaeger: 1 day for dependencies */
#define QUERY_ERRMSG 512                              /* error message buffer size */

/* A store read failed: writes "<what>: storage error: <reason>" into msg, logs it (rate-limited
 * under log_key) and returns the status to answer with: 503 for conditions that pass (busy,
 * memory), 500 otherwise. Each API wraps msg in its own error body. */
int query_store_error(const char *log_key, const char *what, int rc,
                      char msg[QUERY_ERRMSG] /* OUT */);

/* Milliseconds (the APIs' endTs, lookback) to microseconds, saturating: a silly value must not
 * overflow into the past. */
int64_t query_ms_to_us(int64_t ms);

/* The clock; tests replace it. Returns microseconds since the epoch. */
extern int64_t (*query_now_us)(void);

/* First value of key among args, or NULL when absent or empty (Go's FormValue). Borrows. */
const char *query_arg(const struct query_arg *args, size_t n, const char *key);

/* Parses 1 to 32 hex digits into a 16-byte trace ID, left-padded with zeros (Jaeger accepts
 * 64-bit and short IDs). Returns 0 or -EINVAL. */
int query_parse_trace_id(const char *s, uint8_t out[16] /* OUT */);

struct trace_params {
    struct trace_query q; /* tags point into tags[] below */
    struct tag_filter tags[QUERY_MAX_TAGS];
    uint8_t trace_ids[QUERY_MAX_TRACE_IDS][16];
    size_t n_trace_ids;
    struct arena *arena; /* strings copied out of the tags= JSON; free with trace_params_free */
};

/* Parses /api/traces parameters by Jaeger's rules. Returns 0, -EINVAL with a message naming the
 * parameter in err (400), or -ENOMEM. Borrows args: q's strings may point into them, so args
 * must outlive p. Call trace_params_free afterwards on every return path. */
int trace_params_parse(const struct query_arg *args, size_t n, struct trace_params *p /* OUT */,
                       char err[QUERY_ERRMSG] /* OUT */);
void trace_params_free(struct trace_params *p);

/* Parses /api/dependencies endTs= and lookback= (milliseconds, Jaeger's units) into
 * microseconds. Returns 0 or -EINVAL with a message in err. */
int dependency_params_parse(const struct query_arg *args, size_t n, int64_t *end_us /* OUT */,
                            int64_t *lookback_us /* OUT */, char err[QUERY_ERRMSG] /* OUT */);

/* Parses an optional integer parameter of microseconds (start=, end= on a trace fetch).
 * Absent: 0 with *present false. Returns 0 or -EINVAL with a message in err. */
int param_int64(const struct query_arg *args, size_t n, const char *key, int64_t *out /* OUT */,
                bool *present /* OUT */, char err[QUERY_ERRMSG] /* OUT */);

/* "server", "client", ... to the enum; "" to SPAN_KIND_UNSPECIFIED. -EINVAL for others. */
int span_kind_parse(const char *s, enum span_kind *out /* OUT */);
/* The lowercase Jaeger name of a kind; "" for SPAN_KIND_UNSPECIFIED. */
const char *span_kind_name(enum span_kind k);

/* ----- Jaeger rendering ------------------------------------------------------------------- */

/* Renders one trace object (Jaeger uimodel Trace) from a batch holding its spans. Sorts the
 * batch's spans by start time in place. Errors land in b->error. */
void jaeger_render_trace(struct sbuf *b, struct span_batch *trace);

/* ----- Zipkin v2 API (zipkin.c) ----------------------------------------------------------- */

/* Routes GET /api/v2/... (Zipkin's query API). Same contract as query_handle: 0 with resp
 * filled (errors too: 400/404 as text/plain), or -ENOENT when path is not a Zipkin route.
 * Borrows everything. Called from query_handle. */
int zipkin_query_handle(struct store *st, const char *path, const struct query_arg *args,
                        size_t n_args, struct query_response *resp /* OUT */);

/* Renders one trace as Zipkin v2 JSON (an array of spans, see zipkin.c MAPPING). Sorts the
 * batch's spans by start time in place. Errors land in b->error. */
void zipkin_render_trace(struct sbuf *b, struct span_batch *trace);

/* ----- service-graph API (graph.c) ------------------------------------------------------- */

/* Answers GET /api/graph (start=, end=, namespace=; see graph.c for the JSON shape): resp
 * filled on every path (400 naming a bad parameter, 500/503 when the store fails). Returns 0.
 * Borrows everything. Called from query_handle. */
int graph_query_handle(struct store *st, const struct query_arg *args, size_t n_args,
                       struct query_response *resp /* OUT */);

/* Renders a graph as the /api/graph JSON body. Borrows g; errors land in b->error. */
void graph_render(struct sbuf *b, const struct graph *g);

/* ----- access logs (logs.c) ---------------------------------------------------------------- */

/* Answers GET /api/logs (traceID=, service=, start=, end=, errors=, limit=; see logs.c): resp
 * filled on every path (400 naming a bad parameter, 500/503 when the store fails). Returns 0.
 * Borrows everything. Called from query_handle. */
int logs_query_handle(struct store *st, const struct query_arg *args, size_t n_args,
                      struct query_response *resp /* OUT */);

/* Renders one access-log record as a /api/logs data element. Errors land in b->error. */
void logs_render_record(struct sbuf *b, const struct access_log *l);

/* Jaeger-envelope answers shared by the JSON APIs (jaeger.c): an error body
 * {"data":null,...,"errors":[{"code","msg"}]} with that status, and a finished body (200, or
 * 500/503 when the buffer overflowed or ran out of memory; consumes b). */
void query_respond_error(struct query_response *resp, int status, const char *msg);
void query_respond_json(struct query_response *resp, struct sbuf *b);

#endif
