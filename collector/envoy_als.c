/*
 * envoy_als.c: Envoy's gRPC access-log messages -> access-log records (mapping in envoy_als.h).
 *
 * Same three bounded steps as the OTLP protobuf decoder (otlp_proto.c): pbwire_scan bounds
 * nesting and counts HTTP entries against max_spans before anything is allocated, protobuf-c
 * unpacks with pbwire's budgeted arena allocator, then each entry is copied into the batch arena
 * (decode_copy_utf8) and the unpacked tree is released in one go.
 */
#include "envoy_als.h"
#include "accesslog.h"
#include "decode.h"
#include "pbwire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "envoy/service/accesslog/v3/als.pb-c.h"

typedef Envoy__Service__Accesslog__V3__StreamAccessLogsMessage pb_message;
typedef Envoy__Data__Accesslog__V3__AccessLogCommon pb_common;
typedef Envoy__Data__Accesslog__V3__HTTPAccessLogEntry pb_http;
typedef Envoy__Data__Accesslog__V3__TCPAccessLogEntry pb_tcp;
typedef Envoy__Config__Core__V3__Address pb_address;
typedef Envoy__Config__Core__V3__Node pb_node;
typedef Google__Protobuf__Struct pb_struct;
typedef Google__Protobuf__Duration pb_duration;

/* Nesting on the wire: Envoy's messages are 6 deep; metadata Structs may nest further. */
#define ALS_MAX_DEPTH 64

struct conv {
    struct span_batch *b;
    const struct decode_limits *lim;
    const struct als_node *node;
    char why[256];
};

/* Envoy's short response-flag codes, in ResponseFlags field order (field number = index + 1). */
static const char *const flag_codes[] = {"LH",   "UH",  "UT",  "LR", "UR",  "UF",    "UC",
                                         "UO",   "NR",  "DI",  "FI", "RL",  "UAEX",  "RLSE",
                                         "DC",   "URX", "SI",  "IH", "DPE", "UMSDR", "RFCF",
                                         "NFCF", "DT",  "UPE", "NC", "OM",  "DF",    "DRR"};

static const char *const method_names[] = {NULL,     "GET",     "HEAD",    "POST",  "PUT",
                                           "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};

/* Copies a string field (empty = absent) into slot, refusing the entry over max_string. */
static int put_str(struct conv *c, struct access_log *l, enum alog_str slot, const char *s,
                   const char *name)
{
    if (!s || !*s || l->str[slot].ptr) return 0;
    size_t n = strlen(s);
    if (n > c->lim->max_string) {
        snprintf(c->why, sizeof c->why, "%s: %zu bytes, max %u", name, n, c->lim->max_string);
        return DECODE_REFUSE;
    }
    return decode_copy_utf8(c->b->arena, s, n, &l->str[slot]);
}

static int put_address(struct conv *c, struct access_log *l, enum alog_str slot,
                       const pb_address *a, const char *name)
{
    if (!a) return 0;
    char buf[320];
    if (a->address_case == ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS &&
        a->socket_address && a->socket_address->address[0]) {
        const char *ip = a->socket_address->address;
        bool v6 = strchr(ip, ':') != NULL;
        snprintf(buf, sizeof buf, "%s%.256s%s:%u", v6 ? "[" : "", ip, v6 ? "]" : "",
                 a->socket_address->port_value);
    } else if (a->address_case == ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_PIPE && a->pipe) {
        snprintf(buf, sizeof buf, "%.300s", a->pipe->path);
    } else {
        return 0;
    }
    return put_str(c, l, slot, buf, name);
}

static int64_t duration_ms(const pb_duration *d)
{
    if (!d || d->seconds < 0 || d->seconds > INT64_MAX / 2000) return -1;
    return d->seconds * 1000 + d->nanos / 1000000;
}

/* Lower-case hex of exactly n bytes' worth of digits into out; false when malformed or zero. */
static bool parse_hex(const char *s, size_t len, uint8_t *out, size_t n)
{
    if (len != 2 * n) return false;
    for (size_t i = 0; i < n; i++) {
        int hi = decode_hexval(s[2 * i]), lo = decode_hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return !id_is_zero(out, n);
}

/* A trace id of 16 or 32 hex digits (a 64-bit B3 id is padded on the left). */
static bool parse_trace_id(const char *s, uint8_t out[16])
{
    size_t n = strlen(s);
    if (n == 16) {
        memset(out, 0, 8);
        return parse_hex(s, n, out + 8, 8);
    }
    return parse_hex(s, n, out, 16);
}

static void trace_ids(struct access_log *l, const char *traceparent, const char *b3_trace,
                      const char *b3_span)
{
    /* W3C: "00-<32 hex>-<16 hex>-<2 hex>" */
    if (traceparent && strlen(traceparent) >= 55 && traceparent[2] == '-' &&
        traceparent[35] == '-' && traceparent[52] == '-') {
        l->has_trace_id = parse_hex(traceparent + 3, 32, l->trace_id, 16);
        if (l->has_trace_id) l->has_span_id = parse_hex(traceparent + 36, 16, l->span_id, 8);
    }
    if (!l->has_trace_id && b3_trace) {
        l->has_trace_id = parse_trace_id(b3_trace, l->trace_id);
        if (l->has_trace_id && b3_span)
            l->has_span_id = parse_hex(b3_span, strlen(b3_span), l->span_id, 8);
    }
    if (!l->has_trace_id) memset(l->trace_id, 0, 16);
    if (!l->has_span_id) memset(l->span_id, 0, 8);
}

/* custom_tags that carry the Istio custom fields of the JSON format. */
static const struct {
    const char *key;
    enum alog_str slot;
} tag_fields[] = {
    {"service", ALOG_SERVICE},
    {"source_workload", ALOG_SOURCE_WORKLOAD},
    {"source_namespace", ALOG_SOURCE_NAMESPACE},
    {"source_principal", ALOG_SOURCE_PRINCIPAL},
    {"destination_workload", ALOG_DESTINATION_WORKLOAD},
    {"destination_namespace", ALOG_DESTINATION_NAMESPACE},
};

/* JSON names of the string slots, for ALOG_RAW (Envoy's / Istio's JSON field names). */
static const char *const slot_names[ALOG_STR_COUNT] = {
    [ALOG_SERVICE] = "service",
    [ALOG_METHOD] = "method",
    [ALOG_PATH] = "path",
    [ALOG_PROTOCOL] = "protocol",
    [ALOG_RESPONSE_FLAGS] = "response_flags",
    [ALOG_RESPONSE_CODE_DETAILS] = "response_code_details",
    [ALOG_CONNECTION_TERMINATION_DETAILS] = "connection_termination_details",
    [ALOG_UPSTREAM_TRANSPORT_FAILURE_REASON] = "upstream_transport_failure_reason",
    [ALOG_X_FORWARDED_FOR] = "x_forwarded_for",
    [ALOG_USER_AGENT] = "user_agent",
    [ALOG_REQUEST_ID] = "request_id",
    [ALOG_AUTHORITY] = "authority",
    [ALOG_UPSTREAM_HOST] = "upstream_host",
    [ALOG_UPSTREAM_CLUSTER] = "upstream_cluster",
    [ALOG_UPSTREAM_LOCAL_ADDRESS] = "upstream_local_address",
    [ALOG_DOWNSTREAM_LOCAL_ADDRESS] = "downstream_local_address",
    [ALOG_DOWNSTREAM_REMOTE_ADDRESS] = "downstream_remote_address",
    [ALOG_REQUESTED_SERVER_NAME] = "requested_server_name",
    [ALOG_ROUTE_NAME] = "route_name",
    [ALOG_SOURCE_WORKLOAD] = "source_workload",
    [ALOG_SOURCE_NAMESPACE] = "source_namespace",
    [ALOG_SOURCE_PRINCIPAL] = "source_principal",
    [ALOG_DESTINATION_WORKLOAD] = "destination_workload",
    [ALOG_DESTINATION_NAMESPACE] = "destination_namespace",
};

static void put_int(json_t *o, const char *k, int64_t v)
{
    if (v >= 0) json_object_set_new(o, k, json_integer(v));
}

/* ALOG_RAW: the mapped record as one compact JSON line. */
static int render_raw(struct conv *c, struct access_log *l)
{
    json_t *o = json_object();
    if (!o) return -ENOMEM;
    char ts[40];
    time_t sec = (time_t)(l->time_unix_nano / 1000000000u);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03uZ", (unsigned)(l->time_unix_nano / 1000000u % 1000));
    json_object_set_new(o, "start_time", json_string(ts));
    for (int i = 0; i < ALOG_STR_COUNT; i++)
        if (slot_names[i] && l->str[i].ptr)
            json_object_set_new(o, slot_names[i], json_stringn(l->str[i].ptr, l->str[i].len));
    put_int(o, "response_code", l->response_code);
    put_int(o, "bytes_received", l->bytes_received);
    put_int(o, "bytes_sent", l->bytes_sent);
    put_int(o, "duration", l->duration_ms);
    put_int(o, "upstream_service_time", l->upstream_service_time_ms);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return -ENOMEM;
    int rc = decode_copy_utf8(c->b->arena, s, strlen(s), &l->str[ALOG_RAW]);
    free(s);
    return rc;
}

/* Fields common to HTTP and TCP entries. */
static int convert_common(struct conv *c, struct access_log *l, const pb_common *p,
                          const char **traceparent, const char **b3_trace, const char **b3_span)
{
    if (!p || !p->start_time) {
        snprintf(c->why, sizeof c->why, "common_properties.start_time missing");
        return DECODE_REFUSE;
    }
    if (p->start_time->seconds < 0 || p->start_time->seconds > INT64_MAX / 1000000000 - 1 ||
        p->start_time->nanos < 0 || p->start_time->nanos > 999999999) {
        snprintf(c->why, sizeof c->why, "common_properties.start_time out of range");
        return DECODE_REFUSE;
    }
    l->time_unix_nano =
        (uint64_t)p->start_time->seconds * 1000000000u + (uint64_t)p->start_time->nanos;
    l->duration_ms = duration_ms(p->duration ? p->duration : p->time_to_last_downstream_tx_byte);
    int64_t up_tx = duration_ms(p->time_to_last_upstream_tx_byte),
            up_rx = duration_ms(p->time_to_first_upstream_rx_byte);
    if (up_tx >= 0 && up_rx >= up_tx) l->upstream_service_time_ms = up_rx - up_tx;
    int rc = 0;
    for (size_t i = 0; !rc && i < p->n_custom_tags; i++) {
        const char *k = p->custom_tags[i]->key, *v = p->custom_tags[i]->value;
        for (size_t t = 0; !rc && t < sizeof tag_fields / sizeof tag_fields[0]; t++)
            if (strcmp(k, tag_fields[t].key) == 0) rc = put_str(c, l, tag_fields[t].slot, v, k);
        if (strcmp(k, "trace_id") == 0) *b3_trace = v;
        if (strcmp(k, "span_id") == 0) *b3_span = v;
        if (strcmp(k, "traceparent") == 0) *traceparent = v;
    }
    if (!rc) rc = put_str(c, l, ALOG_UPSTREAM_CLUSTER, p->upstream_cluster, "upstream_cluster");
    if (!rc) rc = put_str(c, l, ALOG_ROUTE_NAME, p->route_name, "route_name");
    if (!rc)
        rc = put_str(c, l, ALOG_UPSTREAM_TRANSPORT_FAILURE_REASON,
                     p->upstream_transport_failure_reason, "upstream_transport_failure_reason");
    if (!rc)
        rc = put_str(c, l, ALOG_CONNECTION_TERMINATION_DETAILS, p->connection_termination_details,
                     "connection_termination_details");
    if (!rc)
        rc = put_address(c, l, ALOG_UPSTREAM_HOST, p->upstream_remote_address,
                         "upstream_remote_address");
    if (!rc)
        rc = put_address(c, l, ALOG_UPSTREAM_LOCAL_ADDRESS, p->upstream_local_address,
                         "upstream_local_address");
    if (!rc)
        rc = put_address(c, l, ALOG_DOWNSTREAM_REMOTE_ADDRESS, p->downstream_remote_address,
                         "downstream_remote_address");
    if (!rc)
        rc = put_address(c, l, ALOG_DOWNSTREAM_LOCAL_ADDRESS, p->downstream_local_address,
                         "downstream_local_address");
    if (!rc && p->tls_properties)
        rc = put_str(c, l, ALOG_REQUESTED_SERVER_NAME, p->tls_properties->tls_sni_hostname,
                     "tls_sni_hostname");
    if (rc) return rc;
    char flags[160] = "";
    size_t fl = 0;
    if (p->response_flags) {
        /* The bools follow the base header in field order; unauthorized_details (13) is a
         * message: walk the descriptor rather than trust the struct layout. */
        const ProtobufCMessageDescriptor *d = p->response_flags->base.descriptor;
        for (unsigned f = 0; f < d->n_fields; f++) {
            const ProtobufCFieldDescriptor *fd = &d->fields[f];
            if (fd->id < 1 || fd->id > sizeof flag_codes / sizeof flag_codes[0]) continue;
            const char *base = (const char *)p->response_flags;
            bool on = fd->type == PROTOBUF_C_TYPE_BOOL
                          ? *(const protobuf_c_boolean *)(base + fd->offset) != 0
                          : *(void *const *)(base + fd->offset) != NULL;
            if (on)
                fl += (size_t)snprintf(flags + fl, sizeof flags - fl, "%s%s", fl ? "," : "",
                                       flag_codes[fd->id - 1]);
        }
    }
    return put_str(c, l, ALOG_RESPONSE_FLAGS, fl ? flags : "-", "response_flags");
}

/* The node's identity, service fallbacks, derived fields and ALOG_RAW. */
static int finish(struct conv *c, struct access_log *l)
{
    const struct als_node *n = c->node;
    int rc = 0;
    if (n->known && n->workload[0]) rc = put_str(c, l, ALOG_SERVICE, n->workload, "node");
    if (!rc) rc = accesslog_derive(c->b->arena, l);
    if (!rc && n->known) {
        bool inbound = l->direction == ALOG_DIRECTION_INBOUND;
        rc = put_str(c, l, inbound ? ALOG_DESTINATION_WORKLOAD : ALOG_SOURCE_WORKLOAD, n->workload,
                     "node");
        if (!rc)
            rc = put_str(c, l, inbound ? ALOG_DESTINATION_NAMESPACE : ALOG_SOURCE_NAMESPACE, n->ns,
                         "node");
    }
    if (!rc) rc = render_raw(c, l);
    return rc;
}

static const char *header_value(const pb_http *e, const char *name)
{
    if (!e->request) return NULL;
    for (size_t i = 0; i < e->request->n_request_headers; i++)
        if (strcasecmp(e->request->request_headers[i]->key, name) == 0)
            return e->request->request_headers[i]->value;
    return NULL;
}

static int convert_http(struct conv *c, const pb_http *e)
{
    struct access_log *l = span_batch_add_log(c->b);
    if (!l) return -ENOMEM;
    const char *tp = header_value(e, "traceparent"), *bt = header_value(e, "x-b3-traceid"),
               *bs = header_value(e, "x-b3-spanid");
    int rc = convert_common(c, l, e->common_properties, &tp, &bt, &bs);
    static const char *const versions[] = {NULL, "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3"};
    if (!rc && (unsigned)e->protocol_version < 5 && versions[e->protocol_version])
        rc = put_str(c, l, ALOG_PROTOCOL, versions[e->protocol_version], "protocol_version");
    const Envoy__Data__Accesslog__V3__HTTPRequestProperties *q = e->request;
    if (!rc && q) {
        if ((unsigned)q->request_method < sizeof method_names / sizeof method_names[0])
            rc = put_str(c, l, ALOG_METHOD, method_names[q->request_method], "request_method");
        if (!rc) rc = put_str(c, l, ALOG_AUTHORITY, q->authority, "authority");
        if (!rc) rc = put_str(c, l, ALOG_PATH, q->original_path, "original_path");
        if (!rc) rc = put_str(c, l, ALOG_PATH, q->path, "path");
        if (!rc) rc = put_str(c, l, ALOG_USER_AGENT, q->user_agent, "user_agent");
        if (!rc) rc = put_str(c, l, ALOG_X_FORWARDED_FOR, q->forwarded_for, "forwarded_for");
        if (!rc) rc = put_str(c, l, ALOG_REQUEST_ID, q->request_id, "request_id");
        l->bytes_received =
            q->request_body_bytes <= INT64_MAX ? (int64_t)q->request_body_bytes : -1;
    }
    const Envoy__Data__Accesslog__V3__HTTPResponseProperties *r = e->response;
    l->response_code = r && r->response_code ? (int64_t)r->response_code->value : 0;
    if (l->response_code > 999) {
        snprintf(c->why, sizeof c->why, "response_code %lld: want 0..999",
                 (long long)l->response_code);
        rc = rc ? rc : DECODE_REFUSE;
    }
    if (!rc && r) {
        l->bytes_sent = r->response_body_bytes <= INT64_MAX ? (int64_t)r->response_body_bytes : -1;
        rc = put_str(c, l, ALOG_RESPONSE_CODE_DETAILS, r->response_code_details,
                     "response_code_details");
        for (size_t i = 0; !rc && i < r->n_response_headers; i++) {
            if (strcasecmp(r->response_headers[i]->key, "x-envoy-upstream-service-time") != 0)
                continue;
            char *end;
            long long v = strtoll(r->response_headers[i]->value, &end, 10);
            if (end != r->response_headers[i]->value && !*end && v >= 0)
                l->upstream_service_time_ms = v;
        }
    }
    if (!rc) trace_ids(l, tp, bt, bs);
    if (!rc) rc = finish(c, l);
    if (rc) span_batch_drop_last_log(c->b);
    return rc;
}

static int convert_tcp(struct conv *c, const pb_tcp *e)
{
    struct access_log *l = span_batch_add_log(c->b);
    if (!l) return -ENOMEM;
    const char *tp = NULL, *bt = NULL, *bs = NULL;
    int rc = convert_common(c, l, e->common_properties, &tp, &bt, &bs);
    if (!rc) rc = put_str(c, l, ALOG_PROTOCOL, "TCP", "protocol");
    if (!rc && e->connection_properties) {
        const Envoy__Data__Accesslog__V3__ConnectionProperties *p = e->connection_properties;
        l->bytes_received = p->received_bytes <= INT64_MAX ? (int64_t)p->received_bytes : -1;
        l->bytes_sent = p->sent_bytes <= INT64_MAX ? (int64_t)p->sent_bytes : -1;
    }
    if (!rc) trace_ids(l, tp, bt, bs);
    if (!rc) rc = finish(c, l);
    if (rc) span_batch_drop_last_log(c->b);
    return rc;
}

static const char *struct_string(const pb_struct *s, const char *key)
{
    for (size_t i = 0; s && i < s->n_fields; i++)
        if (strcmp(s->fields[i]->key, key) == 0 && s->fields[i]->value &&
            s->fields[i]->value->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
            return s->fields[i]->value->string_value;
    return NULL;
}

static const pb_struct *struct_struct(const pb_struct *s, const char *key)
{
    for (size_t i = 0; s && i < s->n_fields; i++)
        if (strcmp(s->fields[i]->key, key) == 0 && s->fields[i]->value &&
            s->fields[i]->value->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE)
            return s->fields[i]->value->struct_value;
    return NULL;
}

/* Node -> workload and namespace (see envoy_als.h). */
static void read_node(struct als_node *out, const pb_node *n)
{
    memset(out, 0, sizeof *out);
    const pb_struct *md = n->metadata, *labels = struct_struct(md, "LABELS");
    const char *w = struct_string(labels, "service.istio.io/canonical-name");
    if (!w || !*w) w = struct_string(labels, "app");
    if (!w || !*w) w = struct_string(md, "WORKLOAD_NAME");
    if (w && *w) decode_copy_cut(out->workload, sizeof out->workload, w, strlen(w));
    const char *ns = struct_string(md, "NAMESPACE");
    if (ns && *ns) decode_copy_cut(out->ns, sizeof out->ns, ns, strlen(ns));
    /* Istio id: "sidecar~10.1.2.3~productpage-v1-abc.default~default.svc.cluster.local" */
    const char *t1 = strchr(n->id, '~'), *t2 = t1 ? strchr(t1 + 1, '~') : NULL;
    const char *t3 = t2 ? strchr(t2 + 1, '~') : NULL;
    if (t3) {
        const char *pod = t2 + 1, *dot = memchr(pod, '.', (size_t)(t3 - pod));
        if (dot && !out->ns[0])
            decode_copy_cut(out->ns, sizeof out->ns, dot + 1, (size_t)(t3 - dot - 1));
        if (!out->workload[0] && !n->cluster[0] && dot)
            decode_copy_cut(out->workload, sizeof out->workload, pod, (size_t)(dot - pod));
    }
    if (!out->workload[0] && n->cluster[0]) {
        const char *dot = strchr(n->cluster, '.');
        decode_copy_cut(out->workload, sizeof out->workload, n->cluster,
                        dot ? (size_t)(dot - n->cluster) : strlen(n->cluster));
        if (dot && !out->ns[0]) decode_copy_cut(out->ns, sizeof out->ns, dot + 1, strlen(dot + 1));
    }
    out->known = true;
}

static int convert_message(struct conv *c, const pb_message *m, struct als_node *node)
{
    if (m->identifier && m->identifier->node) read_node(node, m->identifier->node);
    c->node = node;
    size_t n = 0;
    if (m->log_entries_case ==
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_HTTP_LOGS)
        n = m->http_logs->n_log_entry;
    else if (m->log_entries_case ==
             ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_TCP_LOGS)
        n = m->tcp_logs->n_log_entry;
    bool http = m->log_entries_case ==
                ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_HTTP_LOGS;
    if (n > c->lim->max_spans) return -E2BIG;
    for (size_t i = 0; i < n; i++) {
        c->why[0] = '\0';
        int rc = http ? convert_http(c, m->http_logs->log_entry[i])
                      : convert_tcp(c, m->tcp_logs->log_entry[i]);
        if (rc < 0) return rc;
        if (rc == DECODE_REFUSE &&
            decode_reject(c->b, 1, "%s[%zu]: %s", http ? "http_logs" : "tcp_logs", i, c->why))
            return -ENOMEM;
    }
    return 0;
}

int envoy_als_decode(const uint8_t *body, size_t len, const struct decode_limits *lim,
                     struct als_node *node, struct span_batch *out, char *err, size_t errlen)
{
    struct decode_limits storage;
    lim = decode_limits_or_default(lim, &storage);
    if (err && errlen) err[0] = '\0';
    /* Budget as in otlp_proto.c: 16 x the body for ordinary messages, plus the entries (about
     * 1 KiB each once unpacked with their sub-messages). */
    struct pbwire_unpack u = {
        .sc = {.root = &envoy__service__accesslog__v3__stream_access_logs_message__descriptor,
               .span = &envoy__data__accesslog__v3__httpaccess_log_entry__descriptor,
               .max_spans = lim->max_spans,
               .max_depth = ALS_MAX_DEPTH},
        .per_span = 1024,
        .slack = 1u << 20,
        .what = "StreamAccessLogsMessage",
    };
    int rc = pbwire_unpack(&u, body, len, err, errlen);
    if (!rc) {
        struct conv c = {.b = out, .lim = lim};
        rc = convert_message(&c, (const pb_message *)u.msg, node);
        if (rc == -E2BIG && err && errlen)
            snprintf(err, errlen, "more than %u access-log entries in one message", lim->max_spans);
    }
    pbwire_unpack_close(&u);
    /* !err[0]: a scan that ran out of memory has said so already. */
    if (rc == -ENOMEM && err && errlen && !err[0])
        snprintf(err, errlen, "out of memory decoding the message");
    return rc;
}
