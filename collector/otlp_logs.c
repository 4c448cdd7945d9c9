/*
 * otlp_logs.c: the OTLP log decoders (ExportLogsServiceRequest, protobuf and OTLP/JSON, POST
 * /v1/logs) into the access-log model of storage.h. The request walk, the caps and the
 * resource / scope / attribute / AnyValue conversions are the trace decoders' (otlp_int.h), so
 * both signals accept and refuse exactly the same way; this file converts one LogRecord and
 * maps it (MAPPING in otlp.h).
 *
 * Each LogRecord is first converted into a small model (struct log_in: its attributes and body
 * as span-model values, in the batch arena), then mapped into one struct access_log. Every
 * record is stored; a record is refused (partial success) only for a trace_id / span_id of the
 * wrong length or not hex, or a cap (max_attrs, max_string, max_depth) it breaks, as a span is.
 */
#include "accesslog.h"
#include "decode.h"
#include "otlp.h"
#include "otlp_int.h"
#include "query.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"

typedef Opentelemetry__Proto__Logs__V1__LogRecord pb_log_record;

/* One LogRecord, decoded, before the mapping. Values live in the batch arena. */
struct log_in {
    uint64_t time_unix_nano, observed_time_unix_nano;
    int severity_number;
    struct mstr severity_text;
    struct value body;
    struct attrs attrs;
    uint8_t trace_id[16], span_id[8];
    bool has_trace_id, has_span_id; /* present and not all zero */
};

/* ----- mapping ----------------------------------------------------------------------------- */

/* OTel semantic-convention attribute names -> the JSON access-log key of the same field. */
static const struct {
    const char *semconv, *key;
} semconv_keys[] = {
    {"http.request.method", "method"},
    {"url.path", "path"},
    {"http.response.status_code", "response_code"},
    {"user_agent.original", "user_agent"},
    {"server.address", "authority"},
    {"client.address", "downstream_remote_address"},
    {"http.request.header.x-request-id", "request_id"},
    {"http.request.header.x-forwarded-for", "x_forwarded_for"},
    {"http.request.body.size", "bytes_received"},
    {"http.response.body.size", "bytes_sent"},
    {"x-request-id", "request_id"},
};

/* SeverityNumber short names (OTel logs data model, "Displaying Severity"). */
static const char *const severity_names[25] = {
    NULL,     "TRACE",  "TRACE2", "TRACE3", "TRACE4", "DEBUG",  "DEBUG2", "DEBUG3", "DEBUG4",
    "INFO",   "INFO2",  "INFO3",  "INFO4",  "WARN",   "WARN2",  "WARN3",  "WARN4",  "ERROR",
    "ERROR2", "ERROR3", "ERROR4", "FATAL",  "FATAL2", "FATAL3", "FATAL4",
};

/* Sets the access-log field key names (accesslog_set_field) from a value, in its text form:
 * strings as is, integers (and integral doubles) in decimal, a string array by its first item
 * (semantic conventions carry request headers as string arrays). Other values name no field. */
static int set_from_value(struct arena *a, struct access_log *l, const char *key,
                          const struct value *v)
{
    for (size_t i = 0; i < sizeof semconv_keys / sizeof semconv_keys[0]; i++)
        if (strcmp(key, semconv_keys[i].semconv) == 0) key = semconv_keys[i].key;
    if (v->type == VALUE_ARRAY && v->u.array.n > 0) v = &v->u.array.items[0];
    char num[24];
    switch (v->type) {
    case VALUE_STRING:
        return accesslog_set_field(a, l, key, v->u.str.ptr, v->u.str.len);
    case VALUE_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->u.i);
        return accesslog_set_field(a, l, key, num, strlen(num));
    case VALUE_DOUBLE:
        if (!(v->u.d >= 0 && v->u.d < 1e18) || (double)(int64_t)v->u.d != v->u.d) return 0;
        snprintf(num, sizeof num, "%lld", (long long)v->u.d);
        return accesslog_set_field(a, l, key, num, strlen(num));
    default:
        return 0;
    }
}

static int set_from_kvs(struct arena *a, struct access_log *l, const struct attr *kv, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = set_from_value(a, l, kv[i].key.ptr, &kv[i].value);
        if (rc < 0) return rc;
    }
    return 0;
}

/* A string body holding one JSON object (Envoy's json_format, or a text format that writes
 * JSON): its members set fields like attributes do. Anything else is left alone. */
static int set_from_json_body(struct arena *a, struct access_log *l, const struct mstr *body)
{
    const char *p = body->ptr;
    size_t n = body->len;
    while (n && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++, n--;
    if (!n || *p != '{' || n > ACCESSLOG_MAX_LINE) return 0;
    json_t *obj = json_loadb(p, n, 0, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return 0;
    }
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(obj, key, v)
    {
        struct value val = {.type = VALUE_EMPTY};
        if (json_is_string(v))
            val = (struct value){.type = VALUE_STRING,
                                 .u.str = {json_string_value(v), (uint32_t)json_string_length(v)}};
        else if (json_is_integer(v))
            val = (struct value){.type = VALUE_INT, .u.i = json_integer_value(v)};
        if ((rc = set_from_value(a, l, key, &val)) < 0) break;
    }
    json_decref(obj);
    return rc < 0 ? rc : 0;
}

static const struct value *attrs_find(const struct attrs *as, const char *key)
{
    for (uint32_t i = 0; i < as->n; i++)
        if (strcmp(as->items[i].key.ptr, key) == 0) return &as->items[i].value;
    return NULL;
}

static const struct mstr *string_attr(const struct attrs *as, const char *key)
{
    const struct value *v = attrs_find(as, key);
    return v && v->type == VALUE_STRING && v->u.str.len ? &v->u.str : NULL;
}

/* v rendered as JSON (query_value_json), copied into the arena. */
static int json_text(struct arena *a, const struct value *v, struct mstr *out)
{
    char *s;
    size_t n;
    if (query_value_json(v, &s, &n)) return -ENOMEM;
    char *copy = arena_strndup(a, s, n);
    free(s);
    if (!copy) return -ENOMEM;
    *out = (struct mstr){copy, (uint32_t)n};
    return 0;
}

static uint64_t now_unix_nano(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Maps one decoded record into a new access-log record of b (MAPPING in otlp.h). */
static int map_record(struct span_batch *b, const struct log_in *in, const struct resource *res)
{
    struct arena *a = b->arena;
    struct access_log *l = span_batch_add_log(b);
    if (!l) return -ENOMEM;
    int rc = 0;
    l->time_unix_nano = in->time_unix_nano            ? in->time_unix_nano
                        : in->observed_time_unix_nano ? in->observed_time_unix_nano
                                                      : now_unix_nano();
    if ((l->has_trace_id = in->has_trace_id)) memcpy(l->trace_id, in->trace_id, 16);
    if ((l->has_span_id = in->has_trace_id && in->has_span_id)) memcpy(l->span_id, in->span_id, 8);

    int sev = in->severity_number;
    if (in->severity_text.len)
        l->str[ALOG_SEVERITY] = in->severity_text;
    else if (sev > 0 && sev < 25)
        l->str[ALOG_SEVERITY] =
            (struct mstr){severity_names[sev], (uint32_t)strlen(severity_names[sev])};
    if (sev > 0 && sev < 25) {
        char num[4];
        snprintf(num, sizeof num, "%d", sev);
        char *p = arena_strndup(a, num, strlen(num));
        if (!p) rc = -ENOMEM;
        l->str[ALOG_SEVERITY_NUMBER] = (struct mstr){p, (uint32_t)strlen(num)};
    }
    if (in->body.type == VALUE_STRING)
        l->str[ALOG_BODY] = in->body.u.str;
    else if (!rc && in->body.type != VALUE_EMPTY)
        rc = json_text(a, &in->body, &l->str[ALOG_BODY]);
    if (!rc && in->attrs.n) {
        struct value kv = {.type = VALUE_KVLIST, .u.kvlist = {in->attrs.items, in->attrs.n}};
        rc = json_text(a, &kv, &l->str[ALOG_ATTRIBUTES]);
    }

    /* The reporting service: the resource's, unless it is the SDKs' "unknown_service" default,
     * which a field of the record may better. */
    const struct mstr *svc = res ? string_attr(&res->attrs, "service.name") : NULL;
    if (svc && strncmp(svc->ptr, "unknown_service", 15) != 0) l->str[ALOG_SERVICE] = *svc;
    /* Access-log fields: attributes first, then a kvlist body or a JSON-object string body. */
    if (!rc) rc = set_from_kvs(a, l, in->attrs.items, in->attrs.n);
    if (!rc && in->body.type == VALUE_KVLIST)
        rc = set_from_kvs(a, l, in->body.u.kvlist.items, in->body.u.kvlist.n);
    if (!rc && in->body.type == VALUE_STRING) rc = set_from_json_body(a, l, &in->body.u.str);
    if (rc) {
        span_batch_drop_last_log(b);
        return rc;
    }

    bool access =
        l->response_code >= 0 && (l->str[ALOG_METHOD].ptr || l->str[ALOG_UPSTREAM_CLUSTER].ptr);
    if (!access) {
        /* An application log: stored, never a request (RED skips response_code -1). */
        l->response_code = -1;
        if (!l->str[ALOG_SERVICE].ptr)
            l->str[ALOG_SERVICE] = svc ? *svc : (struct mstr){"unknown_service", 15};
        return 0;
    }
    /* Envoy names its node in the resource; Istio's node cluster is "<workload>.<namespace>". */
    const struct mstr *cluster = res ? string_attr(&res->attrs, "cluster_name") : NULL;
    if (!l->str[ALOG_SERVICE].ptr && cluster) {
        const char *dot = memchr(cluster->ptr, '.', cluster->len);
        uint32_t n = dot ? (uint32_t)(dot - cluster->ptr) : cluster->len;
        char *p = n ? arena_strndup(a, cluster->ptr, n) : NULL;
        if (n && !p) rc = -ENOMEM;
        if (p) l->str[ALOG_SERVICE] = (struct mstr){p, n};
    }
    if (!rc) rc = accesslog_derive(a, l);
    if (rc) span_batch_drop_last_log(b);
    return rc;
}

/* ----- protobuf ---------------------------------------------------------------------------- */

static int convert_record_pb(struct otlp_pbconv *c, const ProtobufCMessage *item,
                             const struct resource *res, const struct scope *sc)
{
    (void)sc;
    const pb_log_record *r = (const pb_log_record *)item;
    struct log_in in = {
        .time_unix_nano = r->time_unix_nano,
        .observed_time_unix_nano = r->observed_time_unix_nano,
        .severity_number = (int)r->severity_number,
    };
    int rc = 0;
    /* Ids are optional in a log record: empty or all zero is "none"; another length refuses. */
    if (r->trace_id.len) rc = otlp_pb_check_id(c, &r->trace_id, 16, true, "trace_id");
    if (!rc && r->span_id.len) rc = otlp_pb_check_id(c, &r->span_id, 8, true, "span_id");
    if (rc) return rc;
    if (r->trace_id.len && !id_is_zero(r->trace_id.data, 16)) {
        memcpy(in.trace_id, r->trace_id.data, 16);
        in.has_trace_id = true;
    }
    if (r->span_id.len && !id_is_zero(r->span_id.data, 8)) {
        memcpy(in.span_id, r->span_id.data, 8);
        in.has_span_id = true;
    }
    rc = otlp_pb_copy_str(c, r->severity_text, &in.severity_text, "severity_text");
    if (!rc) rc = otlp_pb_convert_value(c, r->body, &in.body, 0, "body");
    if (!rc)
        rc = otlp_pb_convert_attrs(c, r->attributes, r->n_attributes, r->dropped_attributes_count,
                                   &in.attrs, "attributes");
    return rc ? rc : map_record(c->b, &in, res);
}

int otlp_decode_logs_proto(const uint8_t *body, size_t len, const struct decode_limits *lim,
                           struct span_batch *out, char *err, size_t errlen)
{
    static const struct otlp_pb_signal logs = {
        &opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor,
        &opentelemetry__proto__logs__v1__log_record__descriptor, "ExportLogsServiceRequest",
        "resource_logs", "scope_logs", "log_records", convert_record_pb};
    return otlp_pb_decode(&logs, body, len, lim, out, err, errlen);
}

/* ----- OTLP/JSON --------------------------------------------------------------------------- */

static const char *const severity_enum_names[25] = {
    "SEVERITY_NUMBER_UNSPECIFIED", "SEVERITY_NUMBER_TRACE",  "SEVERITY_NUMBER_TRACE2",
    "SEVERITY_NUMBER_TRACE3",      "SEVERITY_NUMBER_TRACE4", "SEVERITY_NUMBER_DEBUG",
    "SEVERITY_NUMBER_DEBUG2",      "SEVERITY_NUMBER_DEBUG3", "SEVERITY_NUMBER_DEBUG4",
    "SEVERITY_NUMBER_INFO",        "SEVERITY_NUMBER_INFO2",  "SEVERITY_NUMBER_INFO3",
    "SEVERITY_NUMBER_INFO4",       "SEVERITY_NUMBER_WARN",   "SEVERITY_NUMBER_WARN2",
    "SEVERITY_NUMBER_WARN3",       "SEVERITY_NUMBER_WARN4",  "SEVERITY_NUMBER_ERROR",
    "SEVERITY_NUMBER_ERROR2",      "SEVERITY_NUMBER_ERROR3", "SEVERITY_NUMBER_ERROR4",
    "SEVERITY_NUMBER_FATAL",       "SEVERITY_NUMBER_FATAL2", "SEVERITY_NUMBER_FATAL3",
    "SEVERITY_NUMBER_FATAL4",
};

static int convert_record_json(struct otlp_jconv *c, const json_t *js, const char *path,
                               const struct resource *res, const struct scope *sc)
{
    (void)sc;
    struct log_in in = {.severity_text = {"", 0}};
    if (json_is_null(js)) js = NULL; /* an empty record: stored, received now */
    if (js && !json_is_object(js))
        return otlp_json_invalid(c, "%s: expected an object, got %s", path,
                                 decode_json_type_name(js));
    int rc = otlp_json_u64(c, js, "timeUnixNano", "time_unix_nano", path, &in.time_unix_nano);
    if (!rc)
        rc = otlp_json_u64(c, js, "observedTimeUnixNano", "observed_time_unix_nano", path,
                           &in.observed_time_unix_nano);
    if (!rc)
        rc = otlp_json_enum(c, js, "severityNumber", "severity_number", path, severity_enum_names,
                            25, &in.severity_number);
    if (!rc)
        rc = otlp_json_id(c, js, "traceId", "trace_id", path, "traceId", in.trace_id, 16, true,
                          true, &in.has_trace_id);
    if (!rc)
        rc = otlp_json_id(c, js, "spanId", "span_id", path, "spanId", in.span_id, 8, true, true,
                          &in.has_span_id);
    if (rc) return rc;
    in.has_trace_id = in.has_trace_id && !id_is_zero(in.trace_id, 16);
    in.has_span_id = in.has_span_id && !id_is_zero(in.span_id, 8);
    rc = otlp_json_str(c, js, "severityText", "severity_text", path, "severityText",
                       &in.severity_text);
    if (!rc && js) {
        char sub[288];
        decode_pathf(sub, sizeof sub, "%s.body", path);
        rc = otlp_json_value(c, otlp_json_field(js, "body", NULL), sub, "body", &in.body, 0);
    }
    if (!rc && js) rc = otlp_json_attrs(c, js, path, "attributes", &in.attrs);
    return rc ? rc : map_record(c->b, &in, res);
}

int otlp_decode_logs_json(const uint8_t *body, size_t len, const struct decode_limits *lim,
                          struct span_batch *out, char *err, size_t errlen)
{
    static const struct otlp_json_signal logs = {
        "resourceLogs", "resource_logs", "scopeLogs",   "scope_logs",
        "logRecords",   "log_records",   "log records", convert_record_json};
    return otlp_json_decode(&logs, body, len, lim, out, err, errlen);
}
