/*
 * otlp_response.c: the two response bodies OTLP/HTTP defines, in protobuf or OTLP/JSON:
 *   ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
 *   ExportTracePartialSuccess  { int64 rejected_spans = 1; string error_message = 2; }
 *   ExportLogsServiceResponse / ExportLogsPartialSuccess: the same with rejected_log_records
 *   ExportMetricsServiceResponse, ExportMetricsPartialSuccess: the same fields and numbers
 *     (rejected_data_points = 1), so the same bytes; only the JSON key differs
 *   google.rpc.Status          { int32 code = 1; string message = 2; }
 * They are tiny, so they are written by hand here rather than through generated pack code.
 */
#include "collector_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Messages are capped so the error text can never make a response large. */
#define MAX_MESSAGE 1024

static size_t msg_len(const char *m)
{
    size_t n = m ? strlen(m) : 0;
    return n > MAX_MESSAGE ? MAX_MESSAGE : n;
}

static int dump_json(json_t *obj, char **out, size_t *out_len)
{
    if (!obj) return -ENOMEM;
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s) return -ENOMEM;
    *out = s;
    *out_len = strlen(s);
    return 0;
}

/* A string that is safe to hand to jansson (which refuses invalid UTF-8). */
static json_t *json_text(const char *m)
{
    size_t n = msg_len(m);
    json_t *s = json_stringn(m ? m : "", n);
    return s ? s : json_string("(message not valid UTF-8)");
}

/* rejected_key: the JSON name of partial_success field 1, the one thing the signals' responses
 * differ in ("rejectedSpans", "rejectedLogRecords"). */
static int export_response(bool json, const char *rejected_key, uint64_t rejected,
                           const char *message, char **out, size_t *out_len)
{
    if (json) {
        json_t *o = json_object();
        if (o && rejected > 0) {
            json_t *ps = json_object();
            /* OTLP/JSON writes int64 as a decimal string. */
            char num[32];
            snprintf(num, sizeof num, "%llu", (unsigned long long)rejected);
            json_object_set_new(ps, rejected_key, json_string(num));
            json_object_set_new(ps, "errorMessage", json_text(message));
            json_object_set_new(o, "partialSuccess", ps);
        }
        return dump_json(o, out, out_len);
    }
    size_t mlen = msg_len(message);
    uint8_t *p = malloc(32 + mlen);
    if (!p) return -ENOMEM;
    size_t n = 0;
    if (rejected > 0) {
        uint8_t inner[24 + MAX_MESSAGE];
        size_t k = 0;
        inner[k++] = 0x08; /* field 1, varint */
        k += put_varint(inner + k, rejected);
        if (mlen) {
            inner[k++] = 0x12; /* field 2, length-delimited */
            k += put_varint(inner + k, mlen);
            memcpy(inner + k, message, mlen);
            k += mlen;
        }
        p[n++] = 0x0a; /* field 1, length-delimited */
        n += put_varint(p + n, k);
        memcpy(p + n, inner, k);
        n += k;
    }
    *out = (char *)p;
    *out_len = n;
    return 0;
}

int otlp_encode_export_response(bool json, uint64_t rejected, const char *message, char **out,
                                size_t *out_len)
{
    return export_response(json, "rejectedSpans", rejected, message, out, out_len);
}

int otlp_encode_export_logs_response(bool json, uint64_t rejected, const char *message, char **out,
                                     size_t *out_len)
{
    return export_response(json, "rejectedLogRecords", rejected, message, out, out_len);
}

int otlp_encode_metrics_response(bool json, uint64_t rejected, const char *message, char **out,
                                 size_t *out_len)
{
    return export_response(json, "rejectedDataPoints", rejected, message, out, out_len);
}

int otlp_encode_status(bool json, int grpc_code, const char *message, char **out,
                       size_t *out_len)
{
    if (json) {
        json_t *o = json_object();
        if (o) {
            json_object_set_new(o, "code", json_integer(grpc_code));
            json_object_set_new(o, "message", json_text(message));
        }
        return dump_json(o, out, out_len);
    }
    size_t mlen = msg_len(message);
    uint8_t *p = malloc(24 + mlen);
    if (!p) return -ENOMEM;
    size_t n = 0;
    if (grpc_code) {
        p[n++] = 0x08;
        n += put_varint(p + n, (uint64_t)(int64_t)grpc_code);
    }
    if (mlen) {
        p[n++] = 0x12;
        n += put_varint(p + n, mlen);
        memcpy(p + n, message, mlen);
        n += mlen;
    }
    *out = (char *)p;
    *out_len = n;
    return 0;
}
