/*
 * logs.c: GET /api/logs, the records stored from POST /api/v1/accesslogs and POST /v1/logs.
 *
 * Parameters (all optional; a bad one is a 400 naming it, in Jaeger's error body):
 *   traceID (or traceId)  1..32 hex digits: the records of that trace, oldest first
 *   service               the reporting service (exact name)
 *   start, end            µs since the epoch, bounds of the records' start_time
 *   errors                true/false (1/0): only failed requests (code >= 500 or 0, or flags)
 *   requestId             the record's exact request_id (x-request-id); an indexed lookup, for
 *                         records stored since schema v5 (older ones are not found by it)
 *   status                a response code (100..599, "503") or a class ("5xx", 1xx..5xx)
 *   minDuration,          Go/Jaeger durations ("100ms", "1.5s") bounding duration_ms; records
 *   maxDuration           without a duration never match a bound
 *   limit                 1..10000 (default 100; larger values are clamped to 10000)
 * Without traceID the newest records come first.
 *
 * Body: {"data":[record...],"total":N,"limit":L,"offset":0,"errors":null}, a record being
 *   {"time":µs,"service":..,"traceID":hex|null,"spanID":hex|null,"response_code":n|null,
 *    "response_flags":..,"method":..,"path":..,"authority":..,"upstream_cluster":..,
 *    "request_id":..,"destination_service":..,"direction":"inbound"|"outbound"|"unknown",
 *    "duration_ms":n|null,
 *    "line":"<the record's JSON text>","severity":..,"severity_number":n|null,"body":..,
 *    "attributes":{..}|null}
 * with absent strings as null. The dashboard shows "line" (web/js/api.js logLine): for an OTLP
 * log record (POST /v1/logs), which has no JSON line, its body. severity, severity_number,
 * body and attributes (the record's attributes as a JSON object, keys in the order sent) are
 * those of OTLP log records, null for JSON access-log lines; an OTLP record that is no access
 * log (an application log) has response_code null.
 */
#include "query_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void logs_error(struct query_response *resp, int status, const char *msg)
{
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_puts(&b, "{\"data\":null,\"total\":0,\"limit\":0,\"offset\":0,\"errors\":[{\"code\":");
    sb_int(&b, status);
    sb_puts(&b, ",\"msg\":");
    sb_json_cstr(&b, msg);
    sb_puts(&b, "}]}");
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = sb_take(&b, &resp->len);
    if (!resp->body) {
        resp->status = 503;
        resp->len = 0;
    }
}

static void put_str(struct sbuf *b, const char *key, const struct mstr *m)
{
    sb_putc(b, ',');
    sb_json_cstr(b, key);
    sb_putc(b, ':');
    if (m->ptr) sb_json_str(b, m->ptr, m->len);
    else sb_puts(b, "null");
}

static void put_num(struct sbuf *b, const char *key, int64_t v)
{
    sb_putc(b, ',');
    sb_json_cstr(b, key);
    sb_putc(b, ':');
    if (v >= 0) sb_int(b, v);
    else sb_puts(b, "null");
}

void logs_render_record(struct sbuf *b, const struct access_log *l)
{
    static const char *const dir[3] = {"unknown", "inbound", "outbound"};
    sb_puts(b, "{\"time\":");
    sb_int(b, (int64_t)(l->time_unix_nano / 1000));
    put_str(b, "service", &l->str[ALOG_SERVICE]);
    sb_puts(b, ",\"traceID\":");
    if (l->has_trace_id) sb_json_hex(b, l->trace_id, 16);
    else sb_puts(b, "null");
    sb_puts(b, ",\"spanID\":");
    if (l->has_span_id) sb_json_hex(b, l->span_id, 8);
    else sb_puts(b, "null");
    put_num(b, "response_code", l->response_code);
    put_str(b, "response_flags", &l->str[ALOG_RESPONSE_FLAGS]);
    put_str(b, "method", &l->str[ALOG_METHOD]);
    put_str(b, "path", &l->str[ALOG_PATH]);
    put_str(b, "authority", &l->str[ALOG_AUTHORITY]);
    put_str(b, "upstream_cluster", &l->str[ALOG_UPSTREAM_CLUSTER]);
    put_str(b, "request_id", &l->str[ALOG_REQUEST_ID]);
    put_str(b, "destination_service", &l->str[ALOG_DESTINATION_SERVICE]);
    sb_puts(b, ",\"direction\":\"");
    sb_puts(b, dir[(unsigned)l->direction < 3 ? l->direction : 0]);
    sb_putc(b, '"');
    put_num(b, "duration_ms", l->duration_ms);
    put_str(b, "line", l->str[ALOG_RAW].ptr ? &l->str[ALOG_RAW] : &l->str[ALOG_BODY]);
    put_str(b, "severity", &l->str[ALOG_SEVERITY]);
    /* Stored as 1 or 2 decimal digits (otlp_logs.c); anything else reads as absent. */
    const struct mstr *sn = &l->str[ALOG_SEVERITY_NUMBER];
    bool sn_ok = sn->ptr && sn->len > 0 && sn->len < 3 && strspn(sn->ptr, "0123456789") == sn->len;
    put_num(b, "severity_number", sn_ok ? strtol(sn->ptr, NULL, 10) : -1);
    put_str(b, "body", &l->str[ALOG_BODY]);
    /* Stored as the JSON object the decoder rendered (query_value_json): embedded as is. */
    const struct mstr *at = &l->str[ALOG_ATTRIBUTES];
    sb_puts(b, ",\"attributes\":");
    if (at->ptr && at->len >= 2 && at->ptr[0] == '{' && at->ptr[at->len - 1] == '}')
        sb_put(b, at->ptr, at->len);
    else
        sb_puts(b, "null");
    sb_putc(b, '}');
}

static int bool_param(const struct query_arg *args, size_t n, const char *key, bool *out,
                      char err[QUERY_ERRMSG])
{
    const char *v = query_arg(args, n, key);
    *out = false;
    if (!v || strcmp(v, "false") == 0 || strcmp(v, "0") == 0) return 0;
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return 0;
    }
    snprintf(err, QUERY_ERRMSG, "unable to parse param '%s': '%.100s' is not true or false", key,
             v);
    return -EINVAL;
}

/* status=: "503" (an exact code) or "5xx" (a class) into [*lo, *hi]; absent: both 0. */
static int status_param(const struct query_arg *args, size_t n, int *lo, int *hi,
                        char err[QUERY_ERRMSG])
{
    const char *v = query_arg(args, n, "status");
    *lo = *hi = 0;
    if (!v) return 0;
    /* Three characters: a digit 1..5, then two digits or "xx" (either case). */
    if (strlen(v) == 3 && v[0] >= '1' && v[0] <= '5') {
        int c = v[0] - '0';
        if ((v[1] == 'x' || v[1] == 'X') && (v[2] == 'x' || v[2] == 'X')) {
            *lo = c * 100;
            *hi = c * 100 + 99;
            return 0;
        }
        if (v[1] >= '0' && v[1] <= '9' && v[2] >= '0' && v[2] <= '9') {
            *lo = *hi = c * 100 + (v[1] - '0') * 10 + (v[2] - '0');
            return 0;
        }
    }
    snprintf(err, QUERY_ERRMSG, "unable to parse param 'status': '%.100s' is not a response "
             "code (100 to 599) or a class (1xx to 5xx)", v);
    return -EINVAL;
}

/* minDuration= / maxDuration=: a Go duration into whole milliseconds (duration_ms is stored in
 * ms): a minimum rounds up, a maximum down, so "exactly the bound" keeps its meaning. */
static int duration_param(const struct query_arg *args, size_t n, const char *key, bool round_up,
                          int64_t *out_ms, char err[QUERY_ERRMSG])
{
    const char *v = query_arg(args, n, key);
    *out_ms = 0;
    if (!v) return 0;
    int64_t us;
    if (query_parse_duration(v, &us) != 0 || us < 0) {
        snprintf(err, QUERY_ERRMSG, "unable to parse param '%s': '%.100s' is not a duration "
                 "(such as 100ms, 1.5s, 2m)", key, v);
        return -EINVAL;
    }
    *out_ms = round_up ? us / 1000 + (us % 1000 != 0) : us / 1000;
    /* A positive maximum below 1 ms matches durations of 0 ms; 0 would mean "any". */
    if (!round_up && us > 0 && *out_ms == 0) {
        snprintf(err, QUERY_ERRMSG, "unable to parse param '%s': '%.100s' is below the 1 ms "
                 "resolution of durations", key, v);
        return -EINVAL;
    }
    return 0;
}

int logs_query_handle(struct store *st, const struct query_arg *args, size_t n_args,
                      struct query_response *resp)
{
    if (!args) n_args = 0;
    char err[QUERY_ERRMSG];
    struct log_query q = {0};
    uint8_t trace_id[16];
    const char *tid = query_arg(args, n_args, "traceID");
    if (!tid) tid = query_arg(args, n_args, "traceId");
    if (tid) {
        if (query_parse_trace_id(tid, trace_id) != 0) {
            snprintf(err, sizeof err, "unable to parse param 'traceID': '%.100s' is not a trace "
                     "id (1 to 32 hex digits)", tid);
            logs_error(resp, 400, err);
            return 0;
        }
        q.trace_id = trace_id;
    }
    q.service = query_arg(args, n_args, "service");
    q.request_id = query_arg(args, n_args, "requestId");
    int64_t start, end, limit;
    bool has_start, has_end, has_limit;
    if (param_int64(args, n_args, "start", &start, &has_start, err) ||
        param_int64(args, n_args, "end", &end, &has_end, err) ||
        param_int64(args, n_args, "limit", &limit, &has_limit, err) ||
        bool_param(args, n_args, "errors", &q.errors_only, err) ||
        status_param(args, n_args, &q.status_min, &q.status_max, err) ||
        duration_param(args, n_args, "minDuration", true, &q.min_duration_ms, err) ||
        duration_param(args, n_args, "maxDuration", false, &q.max_duration_ms, err)) {
        logs_error(resp, 400, err);
        return 0;
    }
    if ((has_start && start < 0) || (has_end && end < 0)) {
        snprintf(err, sizeof err, "unable to parse param '%s': must not be negative",
                 has_start && start < 0 ? "start" : "end");
        logs_error(resp, 400, err);
        return 0;
    }
    if (has_start && has_end && start > end) {
        snprintf(err, sizeof err, "parameter 'start' (%lld) must not be after 'end' (%lld)",
                 (long long)start, (long long)end);
        logs_error(resp, 400, err);
        return 0;
    }
    if (q.min_duration_ms && q.max_duration_ms && q.max_duration_ms < q.min_duration_ms) {
        logs_error(resp, 400, "parameter 'maxDuration' must not be below 'minDuration'");
        return 0;
    }
    if (has_limit && limit <= 0) {
        snprintf(err, sizeof err, "unable to parse param 'limit': must be positive");
        logs_error(resp, 400, err);
        return 0;
    }
    q.start_us = has_start ? start : 0;
    q.end_us = has_end ? end : 0;
    q.limit = !has_limit ? LOG_QUERY_DEFAULT_LIMIT
              : limit > LOG_QUERY_MAX_LIMIT ? LOG_QUERY_MAX_LIMIT
                                            : (unsigned)limit;
    struct span_batch *found = NULL;
    int rc = store_find_logs(st, &q, &found);
    if (rc) {
        int status = query_store_error("query-logs", "access logs", rc, err);
        logs_error(resp, status, err);
        return 0;
    }
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    sb_puts(&b, "{\"data\":[");
    for (uint32_t i = 0; i < found->n_logs; i++) {
        if (i) sb_putc(&b, ',');
        logs_render_record(&b, &found->logs[i]);
    }
    sb_puts(&b, "],\"total\":");
    sb_uint(&b, found->n_logs);
    sb_puts(&b, ",\"limit\":");
    sb_uint(&b, q.limit);
    sb_puts(&b, ",\"offset\":0,\"errors\":null}");
    span_batch_destroy(found);
    int berr = b.error;
    resp->body = sb_take(&b, &resp->len);
    if (!resp->body) {
        logs_error(resp, berr == -E2BIG ? 500 : 503,
                   "access logs: response too large or out of memory; lower 'limit'");
        return 0;
    }
    resp->status = 200;
    resp->content_type = "application/json";
    return 0;
}
