/*
 * test_zipkin.c: the Zipkin v2 decoders (JSON and proto3) and the Zipkin query API.
 *
 * The centre piece decodes data/zipkin/full.json (every field, the Istio proxy's tags, id
 * normalisation, the mapping's special tags) and checks the model field by field, then builds
 * the same spans with the generated protobuf-c code and checks the proto3 path yields an equal
 * model. Around it, tables: ids, malformed bodies, caps, hostile strings, each through both
 * decoders where the case exists in both encodings; the renderer (a decoded request rendered
 * and decoded again gives the same model; an OTLP-origin span maps as the OTel exporter maps
 * it); and the /api/v2 routes end to end over a real store in a temp dir, parameter errors
 * included.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "query.h"
#include "query_int.h"
#include "zipkin.h"
#include "zipkin/zipkin.pb-c.h"
#include "test_util.h"

enum fmt { PROTO, JSON };

static int decode(enum fmt f, const void *body, size_t len, const struct decode_limits *lim,
                  struct span_batch **out, char *err, size_t errlen)
{
    return test_decode(f == PROTO ? zipkin_decode_spans_proto : zipkin_decode_spans_json, body, len,
                       lim, out, err, errlen);
}

static int decode_str(const char *json, struct span_batch **out, char *err, size_t errlen)
{
    return decode(JSON, json, strlen(json), NULL, out, err, errlen);
}

static void hex_to(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void assert_mstr(struct mstr m, const char *want)
{
    assert_non_null(m.ptr);
    assert_int_equal(m.len, strlen(want));
    assert_memory_equal(m.ptr, want, m.len + 1);
}

static const struct value *get_attr(const struct attrs *as, const char *key)
{
    for (uint32_t i = 0; i < as->n; i++)
        if (as->items[i].key.len == strlen(key) &&
            memcmp(as->items[i].key.ptr, key, as->items[i].key.len) == 0)
            return &as->items[i].value;
    return NULL;
}

static void assert_str_attr(const struct attrs *as, const char *key, const char *want)
{
    const struct value *v = get_attr(as, key);
    if (!v) fail_msg("attribute %s missing", key);
    assert_int_equal(v->type, VALUE_STRING);
    assert_mstr(v->u.str, want);
}

static void assert_int_attr(const struct attrs *as, const char *key, int64_t want)
{
    const struct value *v = get_attr(as, key);
    if (!v) fail_msg("attribute %s missing", key);
    assert_int_equal(v->type, VALUE_INT);
    assert_int_equal(v->u.i, want);
}

static void assert_bool_attr(const struct attrs *as, const char *key)
{
    const struct value *v = get_attr(as, key);
    if (!v) fail_msg("attribute %s missing", key);
    assert_int_equal(v->type, VALUE_BOOL);
    assert_true(v->u.b);
}

/* ----- model equality (for proto == JSON and render round trips) ----------------------------- */

static void attrs_eq(const struct attrs *a, const struct attrs *b)
{
    assert_int_equal(a->n, b->n);
    for (uint32_t i = 0; i < a->n; i++) {
        mstr_eq(a->items[i].key, b->items[i].key);
        assert_int_equal(a->items[i].value.type, b->items[i].value.type);
        switch (a->items[i].value.type) {
        case VALUE_STRING:
            mstr_eq(a->items[i].value.u.str, b->items[i].value.u.str);
            break;
        case VALUE_INT:
            assert_int_equal(a->items[i].value.u.i, b->items[i].value.u.i);
            break;
        case VALUE_BOOL:
            assert_int_equal(a->items[i].value.u.b, b->items[i].value.u.b);
            break;
        default:
            fail_msg("unexpected value type");
        }
    }
}

/* Attribute sets equal regardless of order (the renderer sorts tags by key). */
static void attrs_set_eq(const struct attrs *a, const struct attrs *b)
{
    assert_int_equal(a->n, b->n);
    for (uint32_t i = 0; i < a->n; i++) {
        const struct attr *x = &a->items[i];
        const struct value *y = get_attr(b, x->key.ptr);
        if (!y) fail_msg("attribute %s missing", x->key.ptr);
        assert_int_equal(x->value.type, y->type);
        if (x->value.type == VALUE_STRING) mstr_eq(x->value.u.str, y->u.str);
        if (x->value.type == VALUE_INT) assert_int_equal(x->value.u.i, y->u.i);
        if (x->value.type == VALUE_BOOL) assert_int_equal(x->value.u.b, y->u.b);
    }
}

static void span_eq(const struct span *a, const struct span *b, bool ordered)
{
    assert_memory_equal(a->trace_id, b->trace_id, 16);
    assert_memory_equal(a->span_id, b->span_id, 8);
    assert_int_equal(a->has_parent, b->has_parent);
    if (a->has_parent) assert_memory_equal(a->parent_span_id, b->parent_span_id, 8);
    mstr_eq(a->trace_state, b->trace_state);
    mstr_eq(a->name, b->name);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->start_unix_nano, b->start_unix_nano);
    assert_int_equal(a->end_unix_nano, b->end_unix_nano);
    assert_int_equal(a->status_code, b->status_code);
    mstr_eq(a->status_message, b->status_message);
    if (ordered) {
        attrs_eq(&a->attrs, &b->attrs);
        attrs_eq(&a->resource->attrs, &b->resource->attrs);
    } else {
        attrs_set_eq(&a->attrs, &b->attrs);
        attrs_set_eq(&a->resource->attrs, &b->resource->attrs);
    }
    assert_int_equal(a->n_events, b->n_events);
    for (uint32_t i = 0; i < a->n_events; i++) {
        assert_int_equal(a->events[i].time_unix_nano, b->events[i].time_unix_nano);
        mstr_eq(a->events[i].name, b->events[i].name);
        assert_int_equal(a->events[i].attrs.n, 0);
    }
    assert_int_equal(a->n_links, 0);
    assert_non_null(a->scope);
}

static void batch_eq(const struct span_batch *a, const struct span_batch *b, bool ordered)
{
    assert_int_equal(a->n_spans, b->n_spans);
    assert_int_equal(a->rejected, b->rejected);
    for (uint32_t i = 0; i < a->n_spans; i++)
        span_eq(&a->spans[i], &b->spans[i], ordered);
}

/* ----- the full request --------------------------------------------------------------------- */

static void check_full(const struct span_batch *b)
{
    assert_int_equal(b->rejected, 0);
    assert_int_equal(b->n_spans, 3);
    uint8_t id[16];

    /* span 0: every field */
    const struct span *s = &b->spans[0];
    hex_to("463ac35c9f6413ad48485a3953bb6124", id, 16);
    assert_memory_equal(s->trace_id, id, 16);
    hex_to("a2fb4a1d1a96d312", id, 8);
    assert_memory_equal(s->span_id, id, 8);
    assert_true(s->has_parent);
    hex_to("48485a3953bb6124", id, 8);
    assert_memory_equal(s->parent_span_id, id, 8);
    assert_int_equal(s->kind, SPAN_KIND_SERVER);
    assert_mstr(s->name, "get /users");
    assert_int_equal(s->start_unix_nano, UINT64_C(1556604172355737000));
    assert_int_equal(s->end_unix_nano, UINT64_C(1556604172355737000) + 1431000);
    assert_int_equal(s->status_code, STATUS_ERROR);
    assert_mstr(s->status_message, "upstream connect error");
    assert_mstr(s->trace_state, "rojo=00f067aa0ba902b7");
    const struct attrs *ra = &s->resource->attrs;
    assert_int_equal(ra->n, 4);
    assert_str_attr(ra, "service.name", "frontend");
    assert_str_attr(ra, "host.ip", "10.0.0.1");
    assert_str_attr(ra, "zipkin.local_endpoint.ipv6", "2001:db8::c001");
    assert_int_attr(ra, "zipkin.local_endpoint.port", 8080);
    assert_int_equal(s->attrs.n, 13);
    assert_str_attr(&s->attrs, "http.method", "GET");
    assert_str_attr(&s->attrs, "http.status_code", "503");
    assert_str_attr(&s->attrs, "istio.canonical_service", "frontend");
    assert_str_attr(&s->attrs, "istio.namespace", "shop");
    assert_str_attr(&s->attrs, "upstream_cluster", "inbound|8080||");
    assert_str_attr(&s->attrs, "response_flags", "UF");
    assert_str_attr(&s->attrs, "node_id",
                    "sidecar~10.0.0.1~frontend-1.shop~shop.svc.cluster.local");
    assert_str_attr(&s->attrs, "guid:x-request-id", "4b5c1e0a-5d0e-9b44-a7b1-b83d1fd9b3a1");
    assert_str_attr(&s->attrs, "peer.service", "istio-ingressgateway");
    assert_str_attr(&s->attrs, "network.peer.address", "10.0.0.2");
    assert_int_attr(&s->attrs, "network.peer.port", 52000);
    assert_bool_attr(&s->attrs, "zipkin.shared");
    assert_bool_attr(&s->attrs, "zipkin.debug");
    assert_null(get_attr(&s->attrs, "error"));
    assert_null(get_attr(&s->attrs, "w3c.tracestate"));
    assert_true(span_is_error(s));
    assert_int_equal(s->n_events, 2);
    assert_int_equal(s->events[0].time_unix_nano, UINT64_C(1556604172355800000));
    assert_mstr(s->events[0].name, "ws");
    assert_mstr(s->events[1].name, "wr");
    assert_string_equal(span_service_name(s), "frontend");

    /* span 1: 64-bit trace id, parentId == id, shared CLIENT, v4-mapped ipv6, OK status */
    s = &b->spans[1];
    memset(id, 0, 8);
    hex_to("48485a3953bb6124", id + 8, 8);
    assert_memory_equal(s->trace_id, id, 16);
    assert_false(s->has_parent);
    assert_int_equal(s->kind, SPAN_KIND_CLIENT);
    assert_int_equal(s->status_code, STATUS_OK);
    assert_mstr(s->status_message, "");
    assert_int_equal(s->resource->attrs.n, 2);
    assert_str_attr(&s->resource->attrs, "host.ip", "10.0.0.9");
    assert_int_equal(s->attrs.n, 3);
    assert_str_attr(&s->attrs, "peer.service", "backend"); /* the endpoint wins over the tag */
    assert_str_attr(&s->attrs, "network.peer.address", "2001:db8::1");
    assert_int_attr(&s->attrs, "network.peer.port", 9000);
    assert_null(get_attr(&s->attrs, "zipkin.shared")); /* Zipkin drops shared on a client */

    /* span 2: no kind + span.kind=internal, otel.status_*, zero parent, same endpoint */
    s = &b->spans[2];
    assert_false(s->has_parent);
    assert_int_equal(s->kind, SPAN_KIND_INTERNAL);
    assert_int_equal(s->status_code, STATUS_ERROR);
    assert_mstr(s->status_message, "bad");
    assert_int_equal(s->attrs.n, 0);
    assert_int_equal(s->end_unix_nano, s->start_unix_nano);
    assert_ptr_equal(s->resource, b->spans[1].resource);
}

static void test_json_full(void **state)
{
    size_t len;
    char *body = test_read_fixture("zipkin", "full.json", &len);
    struct span_batch *b;
    char err[256];
    assert_int_equal(decode(JSON, body, len, NULL, &b, err, sizeof err), 0);
    check_full(b);
    span_batch_destroy(b);
    free(body);
}

typedef Zipkin__Proto3__Span pb_span;
typedef Zipkin__Proto3__Endpoint pb_endpoint;
typedef Zipkin__Proto3__Annotation pb_annotation;
typedef Zipkin__Proto3__Span__TagsEntry pb_tag;
typedef Zipkin__Proto3__ListOfSpans pb_list;

static ProtobufCBinaryData bin_hex(const char *hex, uint8_t *buf)
{
    size_t n = strlen(hex) / 2;
    hex_to(hex, buf, n);
    ProtobufCBinaryData d = {n, buf};
    return d;
}

static uint8_t *pack_list(pb_span **spans, size_t n, size_t *len)
{
    pb_list l = ZIPKIN__PROTO3__LIST_OF_SPANS__INIT;
    l.spans = spans;
    l.n_spans = n;
    *len = zipkin__proto3__list_of_spans__get_packed_size(&l);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    zipkin__proto3__list_of_spans__pack(&l, buf);
    return buf;
}

/* data/zipkin/full.json, as a proto3 ListOfSpans. */
static uint8_t *build_full_proto(size_t *len)
{
    static uint8_t ids[12][16];
    static uint8_t v4a[4] = {10, 0, 0, 1}, v4b[4] = {10, 0, 0, 2};
    static uint8_t v6a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 0x01};
    static uint8_t v6map[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 9};
    static uint8_t v6b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

    pb_endpoint l0 = ZIPKIN__PROTO3__ENDPOINT__INIT, r0 = ZIPKIN__PROTO3__ENDPOINT__INIT,
                l1 = ZIPKIN__PROTO3__ENDPOINT__INIT, r1 = ZIPKIN__PROTO3__ENDPOINT__INIT;
    l0.service_name = "Frontend";
    l0.ipv4 = (ProtobufCBinaryData){4, v4a};
    l0.ipv6 = (ProtobufCBinaryData){16, v6a};
    l0.port = 8080;
    r0.service_name = "Istio-IngressGateway";
    r0.ipv4 = (ProtobufCBinaryData){4, v4b};
    r0.port = 52000;
    l1.service_name = "frontend";
    l1.ipv6 = (ProtobufCBinaryData){16, v6map};
    r1.service_name = "backend";
    r1.ipv6 = (ProtobufCBinaryData){16, v6b};
    r1.port = 9000;

    pb_annotation a0 = ZIPKIN__PROTO3__ANNOTATION__INIT, a1 = ZIPKIN__PROTO3__ANNOTATION__INIT;
    a0.timestamp = UINT64_C(1556604172355800);
    a0.value = "ws";
    a1.timestamp = UINT64_C(1556604172356000);
    a1.value = "wr";
    pb_annotation *anns[] = {&a0, &a1};

    static const char *const kv0[][2] = {
        {"http.method", "GET"},
        {"http.status_code", "503"},
        {"error", "upstream connect error"},
        {"istio.canonical_service", "frontend"},
        {"istio.namespace", "shop"},
        {"upstream_cluster", "inbound|8080||"},
        {"response_flags", "UF"},
        {"node_id", "sidecar~10.0.0.1~frontend-1.shop~shop.svc.cluster.local"},
        {"guid:x-request-id", "4b5c1e0a-5d0e-9b44-a7b1-b83d1fd9b3a1"},
        {"w3c.tracestate", "rojo=00f067aa0ba902b7"},
    };
    pb_tag t0[10], t1[2], t2[3];
    pb_tag *tp0[10], *tp1[2], *tp2[3];
    for (int i = 0; i < 10; i++) {
        zipkin__proto3__span__tags_entry__init(&t0[i]);
        t0[i].key = (char *)kv0[i][0];
        t0[i].value = (char *)kv0[i][1];
        tp0[i] = &t0[i];
    }
    static const char *const kv1[][2] = {{"otel.status_code", "OK"}, {"peer.service", "ignored"}};
    for (int i = 0; i < 2; i++) {
        zipkin__proto3__span__tags_entry__init(&t1[i]);
        t1[i].key = (char *)kv1[i][0];
        t1[i].value = (char *)kv1[i][1];
        tp1[i] = &t1[i];
    }
    static const char *const kv2[][2] = {{"span.kind", "internal"},
                                         {"otel.status_code", "ERROR"},
                                         {"otel.status_description", "bad"}};
    for (int i = 0; i < 3; i++) {
        zipkin__proto3__span__tags_entry__init(&t2[i]);
        t2[i].key = (char *)kv2[i][0];
        t2[i].value = (char *)kv2[i][1];
        tp2[i] = &t2[i];
    }

    pb_span s0 = ZIPKIN__PROTO3__SPAN__INIT, s1 = ZIPKIN__PROTO3__SPAN__INIT,
            s2 = ZIPKIN__PROTO3__SPAN__INIT;
    s0.trace_id = bin_hex("463ac35c9f6413ad48485a3953bb6124", ids[0]);
    s0.parent_id = bin_hex("48485a3953bb6124", ids[1]);
    s0.id = bin_hex("a2fb4a1d1a96d312", ids[2]);
    s0.kind = ZIPKIN__PROTO3__SPAN__KIND__SERVER;
    s0.name = "GET /Users";
    s0.timestamp = UINT64_C(1556604172355737);
    s0.duration = 1431;
    s0.local_endpoint = &l0;
    s0.remote_endpoint = &r0;
    s0.annotations = anns;
    s0.n_annotations = 2;
    s0.tags = tp0;
    s0.n_tags = 10;
    s0.debug = 1;
    s0.shared = 1;

    s1.trace_id = bin_hex("48485a3953bb6124", ids[3]);
    s1.id = bin_hex("48485a3953bb6124", ids[4]);
    s1.parent_id = bin_hex("48485a3953bb6124", ids[5]);
    s1.kind = ZIPKIN__PROTO3__SPAN__KIND__CLIENT;
    s1.name = "call";
    s1.timestamp = UINT64_C(1556604172355000);
    s1.duration = 3000;
    s1.local_endpoint = &l1;
    s1.remote_endpoint = &r1;
    s1.tags = tp1;
    s1.n_tags = 2;
    s1.shared = 1;

    pb_endpoint l2 = l1;
    s2.trace_id = bin_hex("48485a3953bb6124", ids[6]);
    s2.id = bin_hex("0000000000000003", ids[7]);
    s2.parent_id = bin_hex("0000000000000000", ids[8]);
    s2.name = "work";
    s2.timestamp = UINT64_C(1556604172355100);
    s2.tags = tp2;
    s2.n_tags = 3;
    s2.local_endpoint = &l2;

    pb_span *spans[] = {&s0, &s1, &s2};
    return pack_list(spans, 3, len);
}

static void test_proto_equals_json(void **state)
{
    size_t jlen, plen;
    char *json = test_read_fixture("zipkin", "full.json", &jlen);
    uint8_t *pb = build_full_proto(&plen);
    struct span_batch *bj, *bp;
    char err[256];
    assert_int_equal(decode(JSON, json, jlen, NULL, &bj, err, sizeof err), 0);
    assert_int_equal(decode(PROTO, pb, plen, NULL, &bp, err, sizeof err), 0);
    check_full(bp);
    batch_eq(bj, bp, true);
    span_batch_destroy(bj);
    span_batch_destroy(bp);
    free(json);
    free(pb);
}

/* ----- ids ---------------------------------------------------------------------------------- */

struct id_case {
    const char *trace, *id, *parent; /* hex as sent; NULL = absent */
    bool ok;
    const char *why; /* part of the reject reason */
    bool has_parent;
};

static const struct id_case id_cases[] = {
    {"0123456789abcdef", "0000000000000001", NULL, true, NULL, false},
    {"0123456789ABCDEF0123456789abcdef", "00000000000000ff", "00000000000000fe", true, NULL, true},
    {"0000000000000000", "0000000000000001", NULL, false, "traceId: all zero", false},
    {"00000000000000000000000000000000", "0000000000000001", NULL, false, "all zero", false},
    {"0123456789abcde", "0000000000000001", NULL, false, "15 hex digits", false},
    {"0123456789abcdef0", "0000000000000001", NULL, false, "17 hex digits", false},
    {"0123456789abcdeg", "0000000000000001", NULL, false, "not a hex", false},
    {NULL, "0000000000000001", NULL, false, "traceId: missing", false},
    {"0123456789abcdef", NULL, NULL, false, "id: missing", false},
    {"0123456789abcdef", "0000000000000000", NULL, false, "id: all zero", false},
    {"0123456789abcdef", "00000001", NULL, false, "id: 8 hex digits", false},
    {"0123456789abcdef", "000000000000000x", NULL, false, "id: not a hex", false},
    {"0123456789abcdef", "0000000000000001", "0000000000000000", true, NULL, false},
    {"0123456789abcdef", "0000000000000001", "0000000000000001", true, NULL, false},
    {"0123456789abcdef", "0000000000000001", "01", false, "parentId", false},
};

static void test_ids(void **state)
{
    for (size_t i = 0; i < sizeof id_cases / sizeof id_cases[0]; i++) {
        const struct id_case *c = &id_cases[i];
        for (int f = PROTO; f <= JSON; f++) {
            char body[512];
            size_t len;
            uint8_t *pbuf = NULL;
            if (f == JSON) {
                int n = snprintf(body, sizeof body, "[{\"name\":\"x\"");
                if (c->trace)
                    n += snprintf(body + n, sizeof body - (size_t)n, ",\"traceId\":\"%s\"",
                                  c->trace);
                if (c->id)
                    n += snprintf(body + n, sizeof body - (size_t)n, ",\"id\":\"%s\"", c->id);
                if (c->parent)
                    n += snprintf(body + n, sizeof body - (size_t)n, ",\"parentId\":\"%s\"",
                                  c->parent);
                snprintf(body + n, sizeof body - (size_t)n, "}]");
                len = strlen(body);
            } else {
                /* Hex that is not hex has no proto form. */
                bool hexok = true;
                const char *all[] = {c->trace, c->id, c->parent};
                for (int k = 0; k < 3; k++)
                    for (const char *p = all[k]; p && *p; p++)
                        if (!strchr("0123456789abcdefABCDEF", *p)) hexok = false;
                if (!hexok || (c->trace && strlen(c->trace) % 2) ||
                    (c->parent && strlen(c->parent) % 2))
                    continue;
                uint8_t b1[16], b2[8], b3[8];
                pb_span s = ZIPKIN__PROTO3__SPAN__INIT;
                s.name = "x";
                if (c->trace) s.trace_id = bin_hex(c->trace, b1);
                if (c->id) s.id = bin_hex(c->id, b2);
                if (c->parent) s.parent_id = bin_hex(c->parent, b3);
                pb_span *sp[] = {&s};
                pbuf = pack_list(sp, 1, &len);
            }
            struct span_batch *b;
            char err[256];
            int rc = decode((enum fmt)f, f == JSON ? (void *)body : (void *)pbuf, len, NULL, &b,
                            err, sizeof err);
            assert_int_equal(rc, 0);
            if (c->ok) {
                if (b->n_spans != 1)
                    fail_msg("case %zu (%s): rejected: %s", i, f == JSON ? "json" : "proto",
                             b->reject_reason);
                assert_int_equal(b->spans[0].has_parent, c->has_parent);
            } else {
                assert_int_equal(b->n_spans, 0);
                assert_int_equal(b->rejected, 1);
                assert_non_null(b->reject_reason);
                assert_non_null(strstr(b->reject_reason, "spans[0]"));
                /* proto names fields by their proto names */
                if (f == JSON && !strstr(b->reject_reason, c->why))
                    fail_msg("case %zu: reason '%s' lacks '%s'", i, b->reject_reason, c->why);
            }
            span_batch_destroy(b);
            free(pbuf);
        }
    }
}

/* One bad span among good ones is rejected alone and counted. */
static void test_partial(void **state)
{
    struct span_batch *b;
    char err[256];
    assert_int_equal(decode_str("[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\"},"
                                "{\"traceId\":\"01\",\"id\":\"0000000000000002\"},null,"
                                "{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000003\"}]",
                                &b, err, sizeof err),
                     0);
    assert_int_equal(b->n_spans, 2);
    assert_int_equal(b->rejected, 1);
    assert_non_null(strstr(b->reject_reason, "spans[1].traceId"));
    span_batch_destroy(b);
    assert_int_equal(decode_str("[]", &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 0);
    span_batch_destroy(b);
}

/* ----- malformed bodies --------------------------------------------------------------------- */

static const struct {
    const char *body, *msg;
} json_bad[] = {
    {"", "invalid JSON"},
    {"[{", "invalid JSON"},
    {"{\"spans\":[]}", "request: expected an array of spans, got an object"},
    {"[1]", "spans[0]: expected an object, got an integer"},
    {"[{\"traceId\":1}]", "spans[0].traceId: expected a string, got an integer"},
    {"[{\"id\":true}]", "spans[0].id: expected a string"},
    {"[{\"name\":[]}]", "spans[0].name: expected a string, got an array"},
    {"[{\"kind\":2}]", "spans[0].kind: expected a string"},
    {"[{\"timestamp\":\"1\"}]", "spans[0].timestamp: expected a number, got a string"},
    {"[{\"duration\":{}}]", "spans[0].duration: expected a number"},
    {"[{\"localEndpoint\":\"x\"}]", "spans[0].localEndpoint: expected an object"},
    {"[{\"remoteEndpoint\":{\"port\":\"80\"}}]",
     "spans[0].remoteEndpoint.port: expected an integer"},
    {"[{\"localEndpoint\":{\"serviceName\":5}}]",
     "spans[0].localEndpoint.serviceName: expected a string"},
    {"[{\"annotations\":{}}]", "spans[0].annotations: expected an array"},
    {"[{\"annotations\":[5]}]", "spans[0].annotations[0]: expected an object"},
    {"[{\"annotations\":[{\"value\":1}]}]", "spans[0].annotations[0].value: expected a string"},
    {"[{\"tags\":[]}]", "spans[0].tags: expected an object"},
    {"[{\"tags\":{\"a\":{}}}]", "spans[0].tags.a: expected a string, got an object"},
    {"[{\"debug\":\"true\"}]", "spans[0].debug: expected a boolean"},
    {"[{\"shared\":1}]", "spans[0].shared: expected a boolean"},
};

static void test_json_malformed(void **state)
{
    for (size_t i = 0; i < sizeof json_bad / sizeof json_bad[0]; i++) {
        struct span_batch *b;
        char err[256];
        int rc = decode_str(json_bad[i].body, &b, err, sizeof err);
        if (rc != -EINVAL) fail_msg("case %zu: rc %d", i, rc);
        if (!strstr(err, json_bad[i].msg))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, json_bad[i].msg);
        span_batch_destroy(b);
    }
}

static void test_proto_malformed(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\x0a", 1},                 /* field 1, no length */
        {"\x0a\x05\x0a\x01", 4},     /* length past the end */
        {"\x0b", 1},                 /* group wire type */
        {"\x0f", 1},                 /* wire type 7 */
        {"\x0a\x02\x32\x05", 4},     /* span: name length past the end */
        {"\x0a\x02\x08\x80", 4},     /* truncated varint */
        {"\x00", 1},                 /* field 0 */
        {"\x0a\x02\x0a\x02", 4},     /* trace_id past the end */
        {"\x0a\x03\x42\x01\x0b", 5}, /* endpoint with a group */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct span_batch *b;
        char err[256];
        int rc = decode(PROTO, cases[i].bytes, cases[i].len, NULL, &b, err, sizeof err);
        if (rc != -EINVAL) fail_msg("case %zu: rc %d", i, rc);
        assert_non_null(strstr(err, "protobuf"));
        span_batch_destroy(b);
    }
    /* An empty body is an empty list. */
    struct span_batch *b;
    char err[256];
    assert_int_equal(decode(PROTO, "", 0, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 0);
    span_batch_destroy(b);
}

/* Every prefix of a valid body either decodes or fails cleanly (no crash, no leak). */
static void test_proto_truncated(void **state)
{
    size_t len;
    uint8_t *pb = build_full_proto(&len);
    for (size_t n = 0; n < len; n++) {
        struct span_batch *b;
        char err[256];
        int rc = decode(PROTO, pb, n, NULL, &b, err, sizeof err);
        assert_true(rc == 0 || rc == -EINVAL);
        if (rc) assert_true(err[0] != '\0');
        span_batch_destroy(b);
    }
    free(pb);
}

/* ----- caps --------------------------------------------------------------------------------- */

static char *many_tags_json(int n)
{
    size_t cap = (size_t)n * 24 + 128;
    char *p = malloc(cap);
    assert_non_null(p);
    size_t o = (size_t)snprintf(
        p, cap, "[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"tags\":{");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(p + o, cap - o, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(p + o, cap - o, "}}]");
    return p;
}

static void test_caps(void **state)
{
    struct decode_limits lim;
    decode_limits_default(&lim);
    lim.max_spans = 2;
    lim.max_attrs = 4;
    lim.max_events = 1;
    lim.max_string = 8;
    struct span_batch *b;
    char err[256];
    static const char three[] = "[{},{},{}]";
    assert_int_equal(decode(JSON, three, strlen(three), &lim, &b, err, sizeof err), -E2BIG);
    assert_non_null(strstr(err, "more than 2 spans"));
    span_batch_destroy(b);
    static const uint8_t three_pb[] = {0x0a, 0x00, 0x0a, 0x00, 0x0a, 0x00};
    assert_int_equal(decode(PROTO, three_pb, sizeof three_pb, &lim, &b, err, sizeof err), -E2BIG);
    assert_non_null(strstr(err, "more than 2 spans"));
    span_batch_destroy(b);

    static const struct {
        const char *body, *why;
    } per_span[] = {
        {"[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"tags\":{\"a\":\"1\","
         "\"b\":\"1\",\"c\":\"1\",\"d\":\"1\",\"e\":\"1\"}}]",
         "tags: 5 tags, max 4"},
        {"[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"tags\":{\"a\":\"1\","
         "\"b\":\"1\",\"c\":\"1\"},\"remoteEndpoint\":{\"serviceName\":\"x\",\"ipv4\":\"1.2.3.4\"}}"
         "]",
         "5 attributes with the endpoint ones"},
        {"[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"annotations\":[{"
         "\"value\":\"a\"},{\"value\":\"b\"}]}]",
         "annotations: 2 annotations, max 1"},
        {"[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"name\":\"123456789\"}]",
         "name: string of 9 bytes, max 8"},
        {"[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"tags\":{\"k\":"
         "\"123456789\"}}]",
         "tags: string of 9 bytes"},
        {"[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"localEndpoint\":{"
         "\"serviceName\":\"123456789\"}}]",
         "localEndpoint.serviceName: string of 9 bytes"},
        {"[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"annotations\":[{"
         "\"value\":\"123456789\"}]}]",
         "annotations[0].value: string of 9 bytes"},
        {"[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"timestamp\":"
         "18446744073709552}]",
         "beyond 2^64"},
    };
    for (size_t i = 0; i < sizeof per_span / sizeof per_span[0]; i++) {
        assert_int_equal(
            decode(JSON, per_span[i].body, strlen(per_span[i].body), &lim, &b, err, sizeof err), 0);
        assert_int_equal(b->n_spans, 0);
        assert_int_equal(b->rejected, 1);
        if (!strstr(b->reject_reason, per_span[i].why))
            fail_msg("case %zu: '%s' lacks '%s'", i, b->reject_reason, per_span[i].why);
        span_batch_destroy(b);
    }

    /* Default caps: 1024 tags pass, 1025 are refused. */
    char *ok = many_tags_json(1024), *over = many_tags_json(1025);
    assert_int_equal(decode_str(ok, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 1);
    span_batch_destroy(b);
    assert_int_equal(decode_str(over, &b, err, sizeof err), 0);
    assert_int_equal(b->rejected, 1);
    span_batch_destroy(b);
    free(ok);
    free(over);

    /* proto: a tag value over max_string */
    pb_tag t = ZIPKIN__PROTO3__SPAN__TAGS_ENTRY__INIT;
    t.key = "k";
    t.value = "123456789";
    pb_tag *tp[] = {&t};
    uint8_t b1[16], b2[8];
    pb_span s = ZIPKIN__PROTO3__SPAN__INIT;
    s.trace_id = bin_hex("0000000000000001", b1);
    s.id = bin_hex("0000000000000001", b2);
    s.tags = tp;
    s.n_tags = 1;
    pb_span *sp[] = {&s};
    size_t len;
    uint8_t *pb = pack_list(sp, 1, &len);
    assert_int_equal(decode(PROTO, pb, len, &lim, &b, err, sizeof err), 0);
    assert_int_equal(b->rejected, 1);
    assert_non_null(strstr(b->reject_reason, "string of 9 bytes"));
    span_batch_destroy(b);
    free(pb);
}

/* ----- strings, numbers, endpoints ---------------------------------------------------------- */

static void test_values(void **state)
{
    struct span_batch *b;
    char err[256];
    /* NUL and numbers/booleans in tags; fractional µs; negative timestamp; unknown kind;
     * invalid addresses ignored; out-of-range port absent; error "true" without message. */
    const char *body =
        "[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000001\",\"name\":\"a\\u0000b\","
        "\"kind\":\"server\",\"timestamp\":1.5,\"duration\":-3,"
        "\"tags\":{\"n\":42,\"f\":0.5,\"t\":true,\"z\":null,\"error\":\"true\"},"
        "\"localEndpoint\":{\"ipv4\":\"300.1.1.1\",\"ipv6\":\"nope\",\"port\":70000},"
        "\"remoteEndpoint\":{\"ipv6\":\"::1\",\"port\":0},"
        "\"annotations\":[{\"timestamp\":2,\"value\":\"\"},null]}]";
    assert_int_equal(decode_str(body, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 1);
    const struct span *s = &b->spans[0];
    assert_mstr(s->name, "a\xef\xbf\xbd"
                         "b");
    assert_int_equal(s->kind, SPAN_KIND_SERVER);
    assert_int_equal(s->start_unix_nano, 1500);
    assert_int_equal(s->end_unix_nano, 1500);
    assert_int_equal(s->status_code, STATUS_ERROR);
    assert_mstr(s->status_message, "");
    assert_str_attr(&s->attrs, "n", "42");
    assert_str_attr(&s->attrs, "f", "0.5");
    assert_str_attr(&s->attrs, "t", "true");
    assert_null(get_attr(&s->attrs, "z"));
    assert_str_attr(&s->attrs, "network.peer.address", "::1");
    assert_null(get_attr(&s->attrs, "network.peer.port"));
    assert_int_equal(s->attrs.n, 4);
    assert_int_equal(s->resource->attrs.n, 0);
    assert_string_equal(span_service_name(s), "unknown_service");
    assert_int_equal(s->n_events, 1);
    assert_int_equal(s->events[0].time_unix_nano, 2000);
    span_batch_destroy(b);

    /* proto: NUL inside a string and invalid UTF-8 become U+FFFD; bad address lengths ignored. */
    uint8_t b1[16], b2[8];
    pb_endpoint le = ZIPKIN__PROTO3__ENDPOINT__INIT;
    static uint8_t three[3] = {1, 2, 3};
    le.ipv4 = (ProtobufCBinaryData){3, three};
    le.service_name = "Svc\xff";
    pb_span sp = ZIPKIN__PROTO3__SPAN__INIT;
    sp.trace_id = bin_hex("0000000000000001", b1);
    sp.id = bin_hex("0000000000000001", b2);
    sp.name = "ab";
    sp.local_endpoint = &le;
    sp.kind = 9; /* unknown enum value */
    pb_span *sps[] = {&sp};
    size_t len;
    uint8_t *pb = pack_list(sps, 1, &len);
    /* patch "ab" into "a\0" on the wire */
    uint8_t *at = memmem(pb, len, "ab", 2);
    assert_non_null(at);
    at[1] = 0;
    assert_int_equal(decode(PROTO, pb, len, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 1);
    assert_mstr(b->spans[0].name, "a\xef\xbf\xbd");
    assert_int_equal(b->spans[0].kind, SPAN_KIND_UNSPECIFIED);
    assert_int_equal(b->spans[0].resource->attrs.n, 1);
    assert_str_attr(&b->spans[0].resource->attrs, "service.name", "svc\xef\xbf\xbd");
    span_batch_destroy(b);
    free(pb);
}

/* ----- rendering ---------------------------------------------------------------------------- */

static char *render(struct span_batch *t, size_t *len)
{
    struct sbuf sb;
    sb_init(&sb, QUERY_MAX_BODY);
    zipkin_render_trace(&sb, t);
    assert_int_equal(sb.error, 0);
    return sb_take(&sb, len);
}

/* Decoded, rendered and decoded again: the same model (what a Zipkin client round-trips). */
static void test_render_roundtrip(void **state)
{
    size_t len, rlen;
    char *json = test_read_fixture("zipkin", "full.json", &len);
    struct span_batch *a, *b;
    char err[256];
    assert_int_equal(decode(JSON, json, len, NULL, &a, err, sizeof err), 0);
    char *out = render(a, &rlen); /* sorts a's spans by start time */
    assert_int_equal(decode(JSON, out, rlen, NULL, &b, err, sizeof err), 0);
    batch_eq(a, b, false);

    /* A few exact shapes. */
    assert_non_null(strstr(
        out, "{\"traceId\":\"48485a3953bb6124\",\"id\":\"48485a3953bb6124\","
             "\"kind\":\"CLIENT\",\"name\":\"call\",\"timestamp\":1556604172355000,"
             "\"duration\":3000,\"localEndpoint\":{\"serviceName\":\"frontend\","
             "\"ipv4\":\"10.0.0.9\"},\"remoteEndpoint\":{\"serviceName\":\"backend\","
             "\"ipv6\":\"2001:db8::1\",\"port\":9000},\"tags\":{\"otel.status_code\":\"OK\"}}"));
    assert_non_null(strstr(out,
                           "\"traceId\":\"463ac35c9f6413ad48485a3953bb6124\",\"parentId\":"
                           "\"48485a3953bb6124\",\"id\":\"a2fb4a1d1a96d312\",\"kind\":\"SERVER\""));
    assert_non_null(strstr(out,
                           "\"localEndpoint\":{\"serviceName\":\"frontend\",\"ipv4\":\"10.0.0.1\","
                           "\"ipv6\":\"2001:db8::c001\",\"port\":8080}"));
    assert_non_null(strstr(out,
                           "\"annotations\":[{\"timestamp\":1556604172355800,\"value\":\"ws\"},"
                           "{\"timestamp\":1556604172356000,\"value\":\"wr\"}]"));
    assert_non_null(strstr(out, "\"error\":\"upstream connect error\",\"guid:x-request-id\""));
    assert_non_null(strstr(out, "\"debug\":true,\"shared\":true}"));
    assert_non_null(strstr(out,
                           "\"name\":\"work\",\"timestamp\":1556604172355100,"
                           "\"localEndpoint\":{\"serviceName\":\"frontend\",\"ipv4\":\"10.0.0.9\"},"
                           "\"tags\":{\"error\":\"bad\",\"span.kind\":\"internal\"}}"));
    json_error_t jerr;
    json_t *parsed = json_loadb(out, rlen, 0, &jerr);
    assert_non_null(parsed);
    assert_int_equal(json_array_size(parsed), 3);
    json_decref(parsed);
    span_batch_destroy(a);
    span_batch_destroy(b);
    free(out);
    free(json);
}

static struct mstr ms(struct arena *a, const char *s)
{
    struct mstr m = {arena_strndup(a, s, strlen(s)), (uint32_t)strlen(s)};
    return m;
}

/* An OTLP-origin span maps as the OTel Collector's Zipkin exporter maps it. */
static void test_render_otlp_span(void **state)
{
    struct span_batch *b = span_batch_create();
    struct resource *res = arena_alloc(b->arena, sizeof *res);
    struct scope *sc = arena_alloc(b->arena, sizeof *sc);
    res->attrs.items = arena_alloc(b->arena, 2 * sizeof(struct attr));
    res->attrs.n = 2;
    res->attrs.items[0].key = ms(b->arena, "service.name");
    res->attrs.items[0].value.type = VALUE_STRING;
    res->attrs.items[0].value.u.str = ms(b->arena, "Checkout");
    res->attrs.items[1].key = ms(b->arena, "k8s.pod.name");
    res->attrs.items[1].value.type = VALUE_STRING;
    res->attrs.items[1].value.u.str = ms(b->arena, "checkout-1");
    sc->name = ms(b->arena, "io.opentelemetry.http");
    sc->version = ms(b->arena, "1.0");
    struct span *s = span_batch_add(b);
    for (int i = 0; i < 16; i++)
        s->trace_id[i] = (uint8_t)(i + 1);
    s->span_id[7] = 2;
    s->parent_span_id[7] = 1;
    s->has_parent = true;
    s->name = ms(b->arena, "POST /Pay");
    s->kind = SPAN_KIND_CLIENT;
    s->start_unix_nano = UINT64_C(1700000000000000000);
    s->end_unix_nano = s->start_unix_nano + 400; /* under 1 µs: rounded up */
    s->status_code = STATUS_ERROR;
    s->status_message = ms(b->arena, "");
    s->trace_state = ms(b->arena, "a=b");
    s->resource = res;
    s->scope = sc;
    struct attr *at = arena_alloc(b->arena, 6 * sizeof *at);
    s->attrs.items = at;
    s->attrs.n = 6;
    at[0].key = ms(b->arena, "peer.service");
    at[0].value.type = VALUE_STRING;
    at[0].value.u.str = ms(b->arena, "payments");
    at[1].key = ms(b->arena, "network.peer.address");
    at[1].value.type = VALUE_STRING;
    at[1].value.u.str = ms(b->arena, "10.1.2.3");
    at[2].key = ms(b->arena, "network.peer.port");
    at[2].value.type = VALUE_INT;
    at[2].value.u.i = 443;
    at[3].key = ms(b->arena, "http.response.status_code");
    at[3].value.type = VALUE_INT;
    at[3].value.u.i = 502;
    at[4].key = ms(b->arena, "retry");
    at[4].value.type = VALUE_BOOL;
    at[4].value.u.b = false;
    at[5].key = ms(b->arena, "ratio");
    at[5].value.type = VALUE_DOUBLE;
    at[5].value.u.d = 0.25;
    s->events = arena_alloc(b->arena, 2 * sizeof *s->events);
    s->n_events = 2;
    s->events[0].time_unix_nano = s->start_unix_nano + 5000;
    s->events[0].name = ms(b->arena, "exception");
    s->events[0].attrs.items = arena_alloc(b->arena, sizeof(struct attr));
    s->events[0].attrs.n = 1;
    s->events[0].attrs.items[0].key = ms(b->arena, "exception.type");
    s->events[0].attrs.items[0].value.type = VALUE_STRING;
    s->events[0].attrs.items[0].value.u.str = ms(b->arena, "IOError");
    s->events[1].time_unix_nano = s->start_unix_nano + 1000;
    s->events[1].name = ms(b->arena, "sent");

    size_t len;
    char *out = render(b, &len);
    assert_string_equal(
        out, "[{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"parentId\":\"0000000000000001\","
             "\"id\":\"0000000000000002\",\"kind\":\"CLIENT\",\"name\":\"POST /Pay\","
             "\"timestamp\":1700000000000000,\"duration\":1,"
             "\"localEndpoint\":{\"serviceName\":\"Checkout\"},"
             "\"remoteEndpoint\":{\"serviceName\":\"payments\",\"ipv4\":\"10.1.2.3\",\"port\":443},"
             "\"annotations\":[{\"timestamp\":1700000000000001,\"value\":\"sent\"},"
             "{\"timestamp\":1700000000000005,\"value\":\"exception|{\\\"exception.type\\\":"
             "\\\"IOError\\\"}|0\"}],"
             "\"tags\":{\"error\":\"true\",\"http.response.status_code\":\"502\","
             "\"k8s.pod.name\":\"checkout-1\",\"otel.scope.name\":\"io.opentelemetry.http\","
             "\"otel.scope.version\":\"1.0\",\"ratio\":\"0.25\",\"retry\":\"false\","
             "\"w3c.tracestate\":\"a=b\"}}]");
    free(out);
    span_batch_destroy(b);
}

/* ----- the API end to end ------------------------------------------------------------------- */

struct e2e {
    char dir[64], path[128];
    struct store *st;
};

/* GETs path?qs; returns the body (caller frees) and the status. */
static char *get(struct store *st, const char *path, const char *qs, int *status)
{
    struct args a;
    args_parse(&a, qs);
    struct query_response resp = {0};
    assert_int_equal(query_handle(st, path, a.a, a.n, &resp), 0);
    *status = resp.status;
    assert_non_null(resp.body);
    return resp.body;
}

static json_t *get_json(struct store *st, const char *path, const char *qs)
{
    int status;
    char *body = get(st, path, qs, &status);
    if (status != 200) fail_msg("%s?%s: %d %s", path, qs ? qs : "", status, body);
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    if (!j) fail_msg("%s: invalid JSON: %s", path, body);
    free(body);
    return j;
}

/* Zipkin JSON ingested at fake now - 1 minute: frontend -> backend (client/server halves, the
 * server half failing), and an OTLP-style span in the same trace. */
static int e2e_setup(void **state)
{
    struct e2e *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->st = test_store_create(e->dir, e->path, "test_zipkin");
    query_now_us = fake_now;
    int64_t t = FAKE_NOW_US - 60000000;
    char body[4096];
    snprintf(body, sizeof body,
             "[{\"traceId\":\"00000000000000aa\",\"id\":\"0000000000000001\",\"kind\":\"SERVER\","
             "\"name\":\"GET /\",\"timestamp\":%lld,\"duration\":10000,"
             "\"localEndpoint\":{\"serviceName\":\"Frontend\"},\"tags\":{\"http.method\":\"GET\"}},"
             "{\"traceId\":\"00000000000000aa\",\"parentId\":\"0000000000000001\",\"id\":"
             "\"0000000000000002\","
             "\"kind\":\"CLIENT\",\"name\":\"call\",\"timestamp\":%lld,\"duration\":5000,"
             "\"localEndpoint\":{\"serviceName\":\"frontend\"},\"remoteEndpoint\":{\"serviceName\":"
             "\"backend\"},"
             "\"annotations\":[{\"timestamp\":%lld,\"value\":\"retry\"}]},"
             "{\"traceId\":\"00000000000000aa\",\"parentId\":\"0000000000000002\",\"id\":"
             "\"0000000000000003\","
             "\"kind\":\"SERVER\",\"name\":\"get /items\",\"timestamp\":%lld,\"duration\":3000,"
             "\"localEndpoint\":{\"serviceName\":\"backend\"},\"tags\":{\"http.status_code\":"
             "\"500\",\"error\":\"db down\"}},"
             "{\"traceId\":\"00000000000000bb\",\"id\":\"0000000000000004\",\"kind\":\"SERVER\","
             "\"name\":\"health\",\"timestamp\":%lld,\"duration\":100,"
             "\"localEndpoint\":{\"serviceName\":\"backend\"}}]",
             (long long)t, (long long)t + 1000, (long long)t + 1500, (long long)t + 2000,
             (long long)t + 20000);
    struct span_batch *b;
    char err[256];
    assert_int_equal(decode_str(body, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 4);
    struct span_batch *batches[] = {b};
    assert_int_equal(store_put_batches(e->st, batches, 1), 0);
    span_batch_destroy(b);
    *state = e;
    return 0;
}

static int e2e_teardown(void **state)
{
    struct e2e *e = *state;
    test_store_destroy(e->st, e->dir);
    free(e);
    return 0;
}

static void assert_strings(json_t *j, const char *const *want, size_t n)
{
    assert_true(json_is_array(j));
    if (json_array_size(j) != n) fail_msg("got %zu strings, want %zu", json_array_size(j), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(j, i)), want[i]);
    json_decref(j);
}

/* Number of traces a search returns. */
static size_t count_traces(struct store *st, const char *qs)
{
    json_t *j = get_json(st, "/api/v2/traces", qs);
    size_t n = json_array_size(j);
    json_decref(j);
    return n;
}

static void test_api_names(void **state)
{
    struct e2e *e = *state;
    static const char *const services[] = {"backend", "frontend"};
    assert_strings(get_json(e->st, "/api/v2/services", NULL), services, 2);
    static const char *const spans[] = {"call", "get /"};
    assert_strings(get_json(e->st, "/api/v2/spans", "serviceName=frontend"), spans, 2);
    assert_strings(get_json(e->st, "/api/v2/spans", "serviceName=FRONTEND"), spans, 2);
    assert_strings(get_json(e->st, "/api/v2/spans", "serviceName=nobody"), NULL, 0);
    static const char *const remote[] = {"backend"};
    assert_strings(get_json(e->st, "/api/v2/remoteServices", "serviceName=frontend"), remote, 1);
    assert_strings(get_json(e->st, "/api/v2/remoteServices", "serviceName=backend"), NULL, 0);
    static const char *const methods[] = {"GET"};
    assert_strings(get_json(e->st, "/api/v2/autocompleteValues", "key=http.method"), methods, 1);
    json_t *keys = get_json(e->st, "/api/v2/autocompleteKeys", NULL);
    assert_true(json_array_size(keys) > 0);
    json_decref(keys);
}

static void test_api_traces(void **state)
{
    struct e2e *e = *state;
    assert_int_equal(count_traces(e->st, NULL), 2); /* every service */
    assert_int_equal(count_traces(e->st, "serviceName=frontend"), 1);
    assert_int_equal(count_traces(e->st, "serviceName=backend"), 2);
    assert_int_equal(count_traces(e->st, "serviceName=backend&limit=1"), 1);
    assert_int_equal(count_traces(e->st, "serviceName=frontend&remoteServiceName=Backend"), 1);
    assert_int_equal(count_traces(e->st, "serviceName=backend&remoteServiceName=backend"), 0);
    assert_int_equal(count_traces(e->st, "serviceName=frontend&spanName=GET%20/"),
                     0); /* no URL decoding here */
    assert_int_equal(count_traces(e->st, "serviceName=frontend&spanName=CALL"), 1);
    assert_int_equal(count_traces(e->st, "serviceName=frontend&spanName=all"), 1);
    assert_int_equal(count_traces(e->st, "serviceName=backend&annotationQuery=error"), 1);
    assert_int_equal(count_traces(e->st, "serviceName=frontend&annotationQuery=error"), 0);
    assert_int_equal(count_traces(e->st, "annotationQuery=error=db down"), 1);
    assert_int_equal(count_traces(e->st, "annotationQuery=error=nope"), 0);
    assert_int_equal(count_traces(e->st, "annotationQuery=retry and http.method=GET"), 1);
    assert_int_equal(count_traces(e->st, "annotationQuery=http.status_code=500 and retry"), 1);
    assert_int_equal(count_traces(e->st, "serviceName=backend&annotationQuery=retry"), 0);
    assert_int_equal(count_traces(e->st, "serviceName=backend&minDuration=1000"), 1);
    assert_int_equal(count_traces(e->st, "serviceName=backend&minDuration=50&maxDuration=200"), 1);
    assert_int_equal(count_traces(e->st, "serviceName=backend&minDuration=50000"), 0);
    assert_int_equal(count_traces(e->st, "endTs=1700000000000"), 0); /* before the data */
    assert_int_equal(count_traces(e->st, "lookback=1000"), 0);       /* the last second */
    assert_int_equal(count_traces(e->st, "lookback=120000&endTs=1800000000000"), 2);

    json_t *j = get_json(e->st, "/api/v2/traces", "serviceName=frontend");
    json_t *trace = json_array_get(j, 0);
    assert_int_equal(json_array_size(trace), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(trace, 0), "traceId")),
                        "00000000000000aa");
    json_decref(j);
}

static void test_api_trace(void **state)
{
    struct e2e *e = *state;
    int status;
    json_t *j = get_json(e->st, "/api/v2/trace/aa", NULL); /* left-padded, as Zipkin does */
    assert_int_equal(json_array_size(j), 3);
    json_decref(j);
    j = get_json(e->st, "/api/v2/trace/000000000000000000000000000000AA", NULL);
    assert_int_equal(json_array_size(j), 3);
    json_decref(j);
    char *body = get(e->st, "/api/v2/trace/00000000000000cc", NULL, &status);
    assert_int_equal(status, 404);
    assert_string_equal(body, "00000000000000cc not found\n");
    free(body);
    body = get(e->st, "/api/v2/trace/xyz", NULL, &status);
    assert_int_equal(status, 400);
    assert_non_null(strstr(body, "traceId"));
    free(body);
    j = get_json(e->st, "/api/v2/traceMany", "traceIds=aa,cc,bb,aa");
    assert_int_equal(json_array_size(j), 2);
    assert_int_equal(json_array_size(json_array_get(j, 0)), 3);
    assert_int_equal(json_array_size(json_array_get(j, 1)), 1);
    json_decref(j);
}

static void test_api_dependencies(void **state)
{
    struct e2e *e = *state;
    json_t *j = get_json(e->st, "/api/v2/dependencies", "endTs=1800000000000");
    assert_int_equal(json_array_size(j), 1);
    json_t *d = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(d, "parent")), "frontend");
    assert_string_equal(json_string_value(json_object_get(d, "child")), "backend");
    assert_int_equal(json_integer_value(json_object_get(d, "callCount")), 1);
    assert_int_equal(json_integer_value(json_object_get(d, "errorCount")), 1);
    json_decref(j);
    j = get_json(e->st, "/api/v2/dependencies", "endTs=1700000000000&lookback=1000");
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
}

static void test_api_param_errors(void **state)
{
    struct e2e *e = *state;
    static const struct {
        const char *path, *qs, *msg;
        int status;
    } cases[] = {
        {"/api/v2/spans", NULL, "'serviceName' is required", 400},
        {"/api/v2/remoteServices", "", "'serviceName' is required", 400},
        {"/api/v2/autocompleteValues", NULL, "'key' is required", 400},
        {"/api/v2/traces", "limit=0", "'limit' must be positive", 400},
        {"/api/v2/traces", "limit=ten", "'limit'", 400},
        {"/api/v2/traces", "endTs=-1", "'endTs' must be positive", 400},
        {"/api/v2/traces", "endTs=x", "'endTs'", 400},
        {"/api/v2/traces", "lookback=0", "'lookback' must be positive", 400},
        {"/api/v2/traces", "minDuration=0", "'minDuration' must be positive", 400},
        {"/api/v2/traces", "minDuration=1ms", "'minDuration'", 400},
        {"/api/v2/traces", "maxDuration=10", "only valid with 'minDuration'", 400},
        {"/api/v2/traces", "minDuration=10&maxDuration=5", "'maxDuration' must not be below", 400},
        {"/api/v2/trace/12345678901234567890123456789012345", NULL, "traceId", 400},
        {"/api/v2/trace/0000", NULL, "traceId", 400},
        {"/api/v2/traceMany", NULL, "'traceIds' is required", 400},
        {"/api/v2/traceMany", "traceIds=aa,,bb", "'traceIds'", 400},
        {"/api/v2/traceMany", "traceIds=aa,zz", "'traceIds'", 400},
        {"/api/v2/dependencies", NULL, "'endTs' is required", 400},
        {"/api/v2/dependencies", "endTs=1&lookback=-5", "'lookback' must be positive", 400},
        {"/api/v2/dependencies", "endTs=1.5", "'endTs'", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status;
        char *body = get(e->st, cases[i].path, cases[i].qs, &status);
        if (status != cases[i].status || !strstr(body, cases[i].msg))
            fail_msg("case %zu (%s?%s): %d %s", i, cases[i].path, cases[i].qs ? cases[i].qs : "",
                     status, body);
        free(body);
    }
    struct query_response resp = {0};
    assert_int_equal(query_handle(e->st, "/api/v2/nothing", NULL, 0, &resp), -ENOENT);
    assert_int_equal(query_handle(e->st, "/api/v2/trace/", NULL, 0, &resp), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_full),
        cmocka_unit_test(test_proto_equals_json),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_partial),
        cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_proto_malformed),
        cmocka_unit_test(test_proto_truncated),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_render_roundtrip),
        cmocka_unit_test(test_render_otlp_span),
        cmocka_unit_test_setup_teardown(test_api_names, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_api_traces, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_api_trace, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_api_dependencies, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_api_param_errors, e2e_setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
