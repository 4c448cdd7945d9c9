/*
 * test_otlp.c: the OTLP trace decoders (protobuf and JSON).
 *
 * The centre piece builds one request using every field and every AnyValue type with the
 * generated protobuf-c code, decodes it, decodes the equivalent JSON fixture
 * (data/otlp/full.json, written with a mix of the accepted spellings), and compares the two
 * models field by field. Around it, tables: id validation, malformed input, caps and hostile
 * strings, each run through both decoders where the case exists in both encodings.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "decode.h"
#include "fuzz/batch_equal.h"
#include "otlp.h"
#include "test_util.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__ArrayValue pb_array;
typedef Opentelemetry__Proto__Common__V1__KeyValueList pb_kvlist;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_scope_spans;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_resource_spans;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest pb_request;

#define ANY_INIT OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT
#define KV_INIT OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT

enum fmt { PROTO, JSON };

static int decode(enum fmt f, const void *body, size_t len, const struct decode_limits *lim,
                  struct span_batch **out, char *err, size_t errlen)
{
    return test_decode(f == PROTO ? otlp_decode_traces_proto : otlp_decode_traces_json, body, len,
                       lim, out, err, errlen);
}

static uint8_t *pack(const pb_request *req, size_t *len)
{
    *len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
        req);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(req, buf);
    return buf;
}

static ProtobufCBinaryData bin(const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

/* ----- the full request, built with protobuf-c -------------------------------------------- */

static const uint8_t TRACE_ID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t SPAN_ID[8] = {0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18};
static const uint8_t PARENT_ID[8] = {0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28};
static const uint8_t SPAN2_ID[8] = {0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38};
static const uint8_t LINK_TRACE[16] = {0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
                                       0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0};
static const uint8_t LINK_SPAN[8] = {0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8};
static const uint8_t BIN[3] = {0x00, 0x01, 0xff};

static uint8_t *build_full(size_t *len)
{
    /* AnyValues */
    pb_any v_svc = ANY_INIT, v_rint = ANY_INIT, v_scope = ANY_INIT, v_get = ANY_INIT,
           v_b = ANY_INIT, v_i = ANY_INIT, v_d = ANY_INIT, v_bin = ANY_INIT, v_arr = ANY_INIT,
           v_kv = ANY_INIT, a0 = ANY_INIT, a1 = ANY_INIT, a2 = ANY_INIT, a2_0 = ANY_INIT,
           k1v = ANY_INIT, k2v = ANY_INIT, kempty = ANY_INIT, v_exc = ANY_INIT,
           v_link = ANY_INIT;
    v_svc.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v_svc.string_value = "checkout";
    v_rint.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    v_rint.int_value = 42;
    v_scope.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    v_scope.bool_value = 1;
    v_get.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v_get.string_value = "GET";
    v_b.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    v_b.bool_value = 1;
    v_i.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    v_i.int_value = -9007199254740993LL;
    v_d.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
    v_d.double_value = 3.5;
    v_bin.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE;
    v_bin.bytes_value = bin(BIN, sizeof BIN);
    a0.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    a0.string_value = "x";
    a1.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    a1.int_value = 1;
    a2_0.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    a2_0.bool_value = 1;
    pb_any *inner_items[] = {&a2_0};
    pb_array inner = OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
    inner.n_values = 1;
    inner.values = inner_items;
    a2.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
    a2.array_value = &inner;
    pb_any *outer_items[] = {&a0, &a1, &a2};
    pb_array outer = OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
    outer.n_values = 3;
    outer.values = outer_items;
    v_arr.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
    v_arr.array_value = &outer;
    k1v.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    k1v.string_value = "v1";
    k2v.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
    k2v.double_value = 2.25;
    pb_kv k1 = KV_INIT, k2 = KV_INIT, k3 = KV_INIT;
    k1.key = "k1";
    k1.value = &k1v;
    k2.key = "k2";
    k2.value = &k2v;
    k3.key = "empty";
    k3.value = &kempty;
    pb_kv *kv_items[] = {&k1, &k2, &k3};
    pb_kvlist kvl = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE_LIST__INIT;
    kvl.n_values = 3;
    kvl.values = kv_items;
    v_kv.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
    v_kv.kvlist_value = &kvl;
    v_exc.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v_exc.string_value = "boom";
    v_link.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    v_link.int_value = 7;

    /* resource and scope */
    pb_kv r1 = KV_INIT, r2 = KV_INIT, s1 = KV_INIT;
    r1.key = "service.name";
    r1.value = &v_svc;
    r2.key = "r.int";
    r2.value = &v_rint;
    s1.key = "scope.attr";
    s1.value = &v_scope;
    pb_kv *r_items[] = {&r1, &r2}, *s_items[] = {&s1};
    Opentelemetry__Proto__Resource__V1__Resource res = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    res.n_attributes = 2;
    res.attributes = r_items;
    res.dropped_attributes_count = 1;
    Opentelemetry__Proto__Common__V1__InstrumentationScope scope =
        OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
    scope.name = "io.meshscope.test";
    scope.version = "1.2.3";
    scope.n_attributes = 1;
    scope.attributes = s_items;
    scope.dropped_attributes_count = 2;

    /* span 0: every field */
    pb_kv sa[8] = {KV_INIT, KV_INIT, KV_INIT, KV_INIT, KV_INIT, KV_INIT, KV_INIT, KV_INIT};
    const char *keys[] = {"http.method", "b", "i", "d", "bin", "arr", "kv", "none"};
    pb_any *vals[] = {&v_get, &v_b, &v_i, &v_d, &v_bin, &v_arr, &v_kv, NULL};
    pb_kv *sa_items[8];
    for (int i = 0; i < 8; i++) {
        sa[i].key = (char *)keys[i];
        sa[i].value = vals[i];
        sa_items[i] = &sa[i];
    }
    pb_kv ea = KV_INIT, la = KV_INIT;
    ea.key = "exception.message";
    ea.value = &v_exc;
    la.key = "link.attr";
    la.value = &v_link;
    pb_kv *ea_items[] = {&ea}, *la_items[] = {&la};
    Opentelemetry__Proto__Trace__V1__Span__Event ev = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__EVENT__INIT;
    ev.time_unix_nano = 1700000000000000100ULL;
    ev.name = "exception";
    ev.n_attributes = 1;
    ev.attributes = ea_items;
    ev.dropped_attributes_count = 4;
    Opentelemetry__Proto__Trace__V1__Span__Event *evs[] = {&ev};
    Opentelemetry__Proto__Trace__V1__Span__Link ln = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__LINK__INIT;
    ln.trace_id = bin(LINK_TRACE, 16);
    ln.span_id = bin(LINK_SPAN, 8);
    ln.trace_state = "a=b";
    ln.n_attributes = 1;
    ln.attributes = la_items;
    ln.dropped_attributes_count = 6;
    ln.flags = 1;
    Opentelemetry__Proto__Trace__V1__Span__Link *lns[] = {&ln};
    Opentelemetry__Proto__Trace__V1__Status st = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
    st.code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
    st.message = "upstream failed";

    pb_span sp0 = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
    sp0.trace_id = bin(TRACE_ID, 16);
    sp0.span_id = bin(SPAN_ID, 8);
    sp0.parent_span_id = bin(PARENT_ID, 8);
    sp0.trace_state = "rojo=00f067aa0ba902b7";
    sp0.flags = 257;
    sp0.name = "GET /cart";
    sp0.kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
    sp0.start_time_unix_nano = 1700000000000000000ULL;
    sp0.end_time_unix_nano = 1700000000123456789ULL;
    sp0.n_attributes = 8;
    sp0.attributes = sa_items;
    sp0.dropped_attributes_count = 3;
    sp0.n_events = 1;
    sp0.events = evs;
    sp0.dropped_events_count = 5;
    sp0.n_links = 1;
    sp0.links = lns;
    sp0.dropped_links_count = 7;
    sp0.status = &st;

    /* span 1: a root CLIENT span with status OK */
    Opentelemetry__Proto__Trace__V1__Status st1 = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
    st1.code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_OK;
    pb_span sp1 = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
    sp1.trace_id = bin(TRACE_ID, 16);
    sp1.span_id = bin(SPAN2_ID, 8);
    sp1.name = "SELECT cart";
    sp1.kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
    sp1.start_time_unix_nano = 1700000000000001000ULL;
    sp1.end_time_unix_nano = 1700000000000002000ULL;
    sp1.status = &st1;

    pb_span *spans[] = {&sp0, &sp1};
    pb_scope_spans ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
    ss.scope = &scope;
    ss.n_spans = 2;
    ss.spans = spans;
    ss.schema_url = "https://example.com/scope";
    pb_scope_spans *sss[] = {&ss};
    pb_resource_spans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
    rs.resource = &res;
    rs.n_scope_spans = 1;
    rs.scope_spans = sss;
    rs.schema_url = "https://opentelemetry.io/schemas/1.21.0";
    pb_resource_spans *rss[] = {&rs};
    pb_request req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.n_resource_spans = 1;
    req.resource_spans = rss;
    return pack(&req, len);
}

/* ----- model comparison -------------------------------------------------------------------- */

static void attrs_items_eq(const struct attr *a, const struct attr *b, uint32_t n);

static void value_eq(const struct value *a, const struct value *b)
{
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case VALUE_EMPTY: break;
    case VALUE_STRING:
    case VALUE_BYTES: mstr_eq(a->u.str, b->u.str); break;
    case VALUE_BOOL: assert_int_equal(a->u.b, b->u.b); break;
    case VALUE_INT: assert_int_equal(a->u.i, b->u.i); break;
    case VALUE_DOUBLE: assert_memory_equal(&a->u.d, &b->u.d, sizeof(double)); break;
    case VALUE_ARRAY:
        assert_int_equal(a->u.array.n, b->u.array.n);
        for (uint32_t i = 0; i < a->u.array.n; i++) value_eq(&a->u.array.items[i], &b->u.array.items[i]);
        break;
    case VALUE_KVLIST:
        assert_int_equal(a->u.kvlist.n, b->u.kvlist.n);
        attrs_items_eq(a->u.kvlist.items, b->u.kvlist.items, a->u.kvlist.n);
        break;
    }
}

static void attrs_items_eq(const struct attr *a, const struct attr *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        mstr_eq(a[i].key, b[i].key);
        value_eq(&a[i].value, &b[i].value);
    }
}

static void attrs_eq(const struct attrs *a, const struct attrs *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->dropped, b->dropped);
    attrs_items_eq(a->items, b->items, a->n);
}

static void span_eq(const struct span *a, const struct span *b)
{
    assert_memory_equal(a->trace_id, b->trace_id, 16);
    assert_memory_equal(a->span_id, b->span_id, 8);
    assert_int_equal(a->has_parent, b->has_parent);
    if (a->has_parent) assert_memory_equal(a->parent_span_id, b->parent_span_id, 8);
    mstr_eq(a->trace_state, b->trace_state);
    assert_int_equal(a->flags, b->flags);
    mstr_eq(a->name, b->name);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->start_unix_nano, b->start_unix_nano);
    assert_int_equal(a->end_unix_nano, b->end_unix_nano);
    attrs_eq(&a->attrs, &b->attrs);
    assert_int_equal(a->n_events, b->n_events);
    assert_int_equal(a->dropped_events, b->dropped_events);
    for (uint32_t i = 0; i < a->n_events; i++) {
        assert_int_equal(a->events[i].time_unix_nano, b->events[i].time_unix_nano);
        mstr_eq(a->events[i].name, b->events[i].name);
        attrs_eq(&a->events[i].attrs, &b->events[i].attrs);
    }
    assert_int_equal(a->n_links, b->n_links);
    assert_int_equal(a->dropped_links, b->dropped_links);
    for (uint32_t i = 0; i < a->n_links; i++) {
        assert_memory_equal(a->links[i].trace_id, b->links[i].trace_id, 16);
        assert_memory_equal(a->links[i].span_id, b->links[i].span_id, 8);
        mstr_eq(a->links[i].trace_state, b->links[i].trace_state);
        assert_int_equal(a->links[i].flags, b->links[i].flags);
        attrs_eq(&a->links[i].attrs, &b->links[i].attrs);
    }
    assert_int_equal(a->status_code, b->status_code);
    mstr_eq(a->status_message, b->status_message);
    assert_non_null(a->resource);
    assert_non_null(b->resource);
    attrs_eq(&a->resource->attrs, &b->resource->attrs);
    mstr_eq(a->resource->schema_url, b->resource->schema_url);
    assert_non_null(a->scope);
    assert_non_null(b->scope);
    mstr_eq(a->scope->name, b->scope->name);
    mstr_eq(a->scope->version, b->scope->version);
    attrs_eq(&a->scope->attrs, &b->scope->attrs);
    mstr_eq(a->scope->schema_url, b->scope->schema_url);
}

static void batch_eq(const struct span_batch *a, const struct span_batch *b)
{
    assert_int_equal(a->n_spans, b->n_spans);
    assert_int_equal(a->rejected, b->rejected);
    for (uint32_t i = 0; i < a->n_spans; i++) span_eq(&a->spans[i], &b->spans[i]);
}

/* Spot checks of the decoded full request against the values build_full put in. */
static void check_full(const struct span_batch *b)
{
    assert_int_equal(b->n_spans, 2);
    assert_int_equal(b->rejected, 0);
    assert_null(b->reject_reason);
    const struct span *s = &b->spans[0];
    assert_memory_equal(s->trace_id, TRACE_ID, 16);
    assert_memory_equal(s->span_id, SPAN_ID, 8);
    assert_true(s->has_parent);
    assert_memory_equal(s->parent_span_id, PARENT_ID, 8);
    assert_string_equal(s->trace_state.ptr, "rojo=00f067aa0ba902b7");
    assert_int_equal(s->flags, 257);
    assert_string_equal(s->name.ptr, "GET /cart");
    assert_int_equal(s->kind, SPAN_KIND_SERVER);
    assert_int_equal(s->start_unix_nano, 1700000000000000000ULL);
    assert_int_equal(s->end_unix_nano, 1700000000123456789ULL);
    assert_int_equal(s->attrs.n, 8);
    assert_int_equal(s->attrs.dropped, 3);
    assert_int_equal(s->attrs.items[0].value.type, VALUE_STRING);
    assert_int_equal(s->attrs.items[1].value.type, VALUE_BOOL);
    assert_int_equal(s->attrs.items[2].value.u.i, -9007199254740993LL);
    assert_true(s->attrs.items[3].value.u.d == 3.5);
    assert_int_equal(s->attrs.items[4].value.type, VALUE_BYTES);
    assert_int_equal(s->attrs.items[4].value.u.str.len, 3);
    assert_memory_equal(s->attrs.items[4].value.u.str.ptr, BIN, 3);
    const struct value *arr = &s->attrs.items[5].value;
    assert_int_equal(arr->type, VALUE_ARRAY);
    assert_int_equal(arr->u.array.n, 3);
    assert_int_equal(arr->u.array.items[2].type, VALUE_ARRAY);
    assert_true(arr->u.array.items[2].u.array.items[0].u.b);
    const struct value *kv = &s->attrs.items[6].value;
    assert_int_equal(kv->type, VALUE_KVLIST);
    assert_int_equal(kv->u.kvlist.n, 3);
    assert_string_equal(kv->u.kvlist.items[1].key.ptr, "k2");
    assert_true(kv->u.kvlist.items[1].value.u.d == 2.25);
    assert_int_equal(kv->u.kvlist.items[2].value.type, VALUE_EMPTY);
    assert_int_equal(s->attrs.items[7].value.type, VALUE_EMPTY);
    assert_int_equal(s->n_events, 1);
    assert_int_equal(s->events[0].time_unix_nano, 1700000000000000100ULL);
    assert_int_equal(s->events[0].attrs.dropped, 4);
    assert_int_equal(s->dropped_events, 5);
    assert_int_equal(s->n_links, 1);
    assert_memory_equal(s->links[0].trace_id, LINK_TRACE, 16);
    assert_int_equal(s->links[0].attrs.dropped, 6);
    assert_int_equal(s->links[0].flags, 1);
    assert_int_equal(s->dropped_links, 7);
    assert_int_equal(s->status_code, STATUS_ERROR);
    assert_string_equal(s->status_message.ptr, "upstream failed");
    assert_string_equal(span_service_name(s), "checkout");
    assert_string_equal(s->scope->name.ptr, "io.meshscope.test");
    assert_int_equal(s->scope->attrs.dropped, 2);
    assert_int_equal(s->resource->attrs.dropped, 1);
    assert_string_equal(s->resource->schema_url.ptr, "https://opentelemetry.io/schemas/1.21.0");
    assert_string_equal(s->scope->schema_url.ptr, "https://example.com/scope");
    assert_true(span_is_error(s));

    s = &b->spans[1];
    assert_false(s->has_parent);
    assert_int_equal(s->kind, SPAN_KIND_CLIENT);
    assert_int_equal(s->status_code, STATUS_OK);
    assert_string_equal(s->status_message.ptr, "");
    assert_ptr_equal(s->resource, b->spans[0].resource);
    assert_ptr_equal(s->scope, b->spans[0].scope);
}

static void test_full_proto_equals_json(void **state)
{
    (void)state;
    char err[256];
    size_t plen, jlen;
    uint8_t *pbuf = build_full(&plen);
    char *jbuf = test_read_fixture("otlp", "full.json", &jlen);
    struct span_batch *bp, *bj;
    assert_int_equal(decode(PROTO, pbuf, plen, NULL, &bp, err, sizeof err), 0);
    assert_int_equal(decode(JSON, jbuf, jlen, NULL, &bj, err, sizeof err), 0);
    check_full(bp);
    check_full(bj);
    batch_eq(bp, bj);
    span_batch_destroy(bp);
    span_batch_destroy(bj);
    free(pbuf);
    free(jbuf);
}

/* data/otlp/full.pb (also a fuzz seed) is build_full's output: keep them in step. */
static void test_proto_fixture(void **state)
{
    (void)state;
    char err[256];
    size_t flen, plen;
    char *fix = test_read_fixture("otlp", "full.pb", &flen);
    uint8_t *pbuf = build_full(&plen);
    assert_int_equal(flen, plen);
    assert_memory_equal(fix, pbuf, plen);
    struct span_batch *b;
    assert_int_equal(decode(PROTO, fix, flen, NULL, &b, err, sizeof err), 0);
    check_full(b);
    span_batch_destroy(b);
    free(fix);
    free(pbuf);
}

static void test_spec_example_json(void **state)
{
    (void)state;
    char err[256];
    size_t len;
    char *buf = test_read_fixture("otlp", "spec_example.json", &len);
    struct span_batch *b;
    assert_int_equal(decode(JSON, buf, len, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 1);
    assert_string_equal(span_service_name(&b->spans[0]), "my.service");
    assert_int_equal(b->spans[0].span_id[0], 0xee);
    assert_true(b->spans[0].has_parent);
    assert_int_equal(b->spans[0].kind, SPAN_KIND_SERVER);
    assert_int_equal(b->spans[0].start_unix_nano, 1544712660000000000ULL);
    span_batch_destroy(b);
    free(buf);
}

/* Truncating the full request anywhere must fail cleanly (one top-level field: every proper
 * prefix but the empty one cuts a length-delimited field). */
static void test_proto_truncated_everywhere(void **state)
{
    (void)state;
    char err[256];
    size_t len;
    uint8_t *full = build_full(&len);
    for (size_t n = 1; n < len; n++) {
        uint8_t *cut = malloc(n); /* exact size, so ASan catches any over-read */
        memcpy(cut, full, n);
        struct span_batch *b;
        int rc = decode(PROTO, cut, n, NULL, &b, err, sizeof err);
        if (rc != -EINVAL) fail_msg("prefix %zu of %zu: rc %d", n, len, rc);
        assert_true(err[0] != '\0');
        span_batch_destroy(b);
        free(cut);
    }
    struct span_batch *b;
    assert_int_equal(decode(PROTO, full, 0, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 0);
    span_batch_destroy(b);
    free(full);
}

/* ----- id validation ----------------------------------------------------------------------- */

struct id_case {
    const char *name;
    uint8_t trace[20];
    int trace_len;
    uint8_t span[10];
    int span_len;
    uint8_t parent[10];
    int parent_len;
    uint8_t link_trace[20];
    int link_trace_len; /* -1: no link */
    uint8_t link_span[10];
    int link_span_len;
    bool has_parent;
    const char *proto_reason; /* NULL: the span is kept */
    const char *json_reason;
};

#define T16 {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
#define S8 {1, 2, 3, 4, 5, 6, 7, 8}
#define P "resource_spans[0].scope_spans[0].spans[1]."
#define J "resourceSpans[0].scopeSpans[0].spans[1]."

static const struct id_case id_cases[] = {
    {"valid root", T16, 16, S8, 8, {0}, 0, {0}, -1, {0}, 0, false, NULL, NULL},
    {"valid child", T16, 16, S8, 8, S8, 8, {0}, -1, {0}, 0, true, NULL, NULL},
    {"zero parent = root", T16, 16, S8, 8, {0}, 8, {0}, -1, {0}, 0, false, NULL, NULL},
    {"zero trace", {0}, 16, S8, 8, {0}, 0, {0}, -1, {0}, 0, false, P "trace_id: all zero",
     J "traceId: all zero"},
    {"short trace", T16, 5, S8, 8, {0}, 0, {0}, -1, {0}, 0, false,
     P "trace_id: length 5, want 16", J "traceId: length 5, want 16"},
    {"long trace", T16, 17, S8, 8, {0}, 0, {0}, -1, {0}, 0, false,
     P "trace_id: length 17, want 16", J "traceId: length 17, want 16"},
    {"empty trace", T16, 0, S8, 8, {0}, 0, {0}, -1, {0}, 0, false,
     P "trace_id: length 0, want 16", J "traceId: length 0, want 16"},
    {"zero span", T16, 16, {0}, 8, {0}, 0, {0}, -1, {0}, 0, false, P "span_id: all zero",
     J "spanId: all zero"},
    {"short span", T16, 16, S8, 7, {0}, 0, {0}, -1, {0}, 0, false, P "span_id: length 7, want 8",
     J "spanId: length 7, want 8"},
    {"long span", T16, 16, S8, 9, {0}, 0, {0}, -1, {0}, 0, false, P "span_id: length 9, want 8",
     J "spanId: length 9, want 8"},
    {"short parent", T16, 16, S8, 8, S8, 4, {0}, -1, {0}, 0, false,
     P "parent_span_id: length 4, want 8", J "parentSpanId: length 4, want 8"},
    {"valid link", T16, 16, S8, 8, {0}, 0, T16, 16, S8, 8, false, NULL, NULL},
    {"short link trace", T16, 16, S8, 8, {0}, 0, T16, 15, S8, 8, false,
     P "links[0].trace_id: length 15, want 16", J "links[0].traceId: length 15, want 16"},
    {"long link span", T16, 16, S8, 8, {0}, 0, T16, 16, S8, 10, false,
     P "links[0].span_id: length 10, want 8", J "links[0].spanId: length 10, want 8"},
};

static uint8_t *build_three(const struct id_case *c, size_t *len)
{
    pb_span ok0 = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT, ok2, t;
    static const uint8_t trace[16] = T16, span[8] = S8;
    ok0.trace_id = bin(trace, 16);
    ok0.span_id = bin(span, 8);
    ok0.name = "ok";
    ok2 = ok0;
    t = ok0;
    t.name = "tested";
    t.trace_id = bin(c->trace, (size_t)c->trace_len);
    t.span_id = bin(c->span, (size_t)c->span_len);
    t.parent_span_id = bin(c->parent, (size_t)c->parent_len);
    Opentelemetry__Proto__Trace__V1__Span__Link ln = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__LINK__INIT;
    Opentelemetry__Proto__Trace__V1__Span__Link *lns[] = {&ln};
    if (c->link_trace_len >= 0) {
        ln.trace_id = bin(c->link_trace, (size_t)c->link_trace_len);
        ln.span_id = bin(c->link_span, (size_t)c->link_span_len);
        t.n_links = 1;
        t.links = lns;
    }
    pb_span *spans[] = {&ok0, &t, &ok2};
    pb_scope_spans ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
    ss.n_spans = 3;
    ss.spans = spans;
    pb_scope_spans *sss[] = {&ss};
    pb_resource_spans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
    rs.n_scope_spans = 1;
    rs.scope_spans = sss;
    pb_resource_spans *rss[] = {&rs};
    pb_request req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.n_resource_spans = 1;
    req.resource_spans = rss;
    return pack(&req, len);
}

static void hex(char *out, const uint8_t *p, int n)
{
    for (int i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * (n > 0 ? n : 0)] = '\0';
}

static char *json_three(const struct id_case *c, size_t *len)
{
    char tr[48], sp[24], pa[24], lt[48], ls[24], link[160];
    hex(tr, c->trace, c->trace_len);
    hex(sp, c->span, c->span_len);
    hex(pa, c->parent, c->parent_len);
    link[0] = '\0';
    if (c->link_trace_len >= 0) {
        hex(lt, c->link_trace, c->link_trace_len);
        hex(ls, c->link_span, c->link_span_len);
        snprintf(link, sizeof link, ",\"links\":[{\"traceId\":\"%s\",\"spanId\":\"%s\"}]", lt, ls);
    }
    const char *ok = "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\","
                     "\"spanId\":\"0102030405060708\",\"name\":\"ok\"}";
    char *buf = malloc(1024);
    int n = snprintf(buf, 1024,
                     "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[%s,"
                     "{\"traceId\":\"%s\",\"spanId\":\"%s\",\"parentSpanId\":\"%s\","
                     "\"name\":\"tested\"%s},%s]}]}]}",
                     ok, tr, sp, pa, link, ok);
    *len = (size_t)n;
    return buf;
}

static void test_id_validation(void **state)
{
    (void)state;
    char err[256];
    for (size_t i = 0; i < sizeof id_cases / sizeof id_cases[0]; i++) {
        const struct id_case *c = &id_cases[i];
        for (int f = PROTO; f <= JSON; f++) {
            size_t len;
            void *buf = f == PROTO ? (void *)build_three(c, &len) : (void *)json_three(c, &len);
            struct span_batch *b;
            int rc = decode((enum fmt)f, buf, len, NULL, &b, err, sizeof err);
            if (rc) fail_msg("%s (%s): rc %d %s", c->name, f == PROTO ? "proto" : "json", rc, err);
            const char *want = f == PROTO ? c->proto_reason : c->json_reason;
            if (want) {
                assert_int_equal(b->n_spans, 2);
                assert_int_equal(b->rejected, 1);
                assert_non_null(b->reject_reason);
                if (strcmp(b->reject_reason, want) != 0)
                    fail_msg("%s: reason \"%s\", want \"%s\"", c->name, b->reject_reason, want);
                assert_string_equal(b->spans[1].name.ptr, "ok");
            } else {
                assert_int_equal(b->n_spans, 3);
                assert_int_equal(b->rejected, 0);
                assert_null(b->reject_reason);
                assert_string_equal(b->spans[1].name.ptr, "tested");
                assert_int_equal(b->spans[1].has_parent, c->has_parent);
            }
            span_batch_destroy(b);
            free(buf);
        }
    }
}

/* ----- malformed input --------------------------------------------------------------------- */

struct raw_case {
    const char *name;
    const char *bytes;
    size_t len;
    int rc;
};

#define RAW(name, s, rc) {name, s, sizeof(s) - 1, rc}

static const struct raw_case proto_cases[] = {
    RAW("field 1 as varint", "\x08\x01", -EINVAL),
    RAW("field 1 as fixed32", "\x0d\x00\x00\x00\x00", -EINVAL),
    RAW("field 1 as fixed64", "\x09\x00\x00\x00\x00\x00\x00\x00\x00", -EINVAL),
    RAW("start group", "\x0b", -EINVAL),
    RAW("wire type 7", "\x0f", -EINVAL),
    RAW("field number 0", "\x02\x00", -EINVAL),
    RAW("length past the end", "\x0a\x05\x01", -EINVAL),
    RAW("varint too long", "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", -EINVAL),
    RAW("huge length", "\x0a\xff\xff\xff\xff\x0f", -EINVAL),
    RAW("span trace_id as varint", "\x0a\x06\x12\x04\x12\x02\x08\x01", -EINVAL),
    RAW("span kind as bytes", "\x0a\x07\x12\x05\x12\x03\x32\x01\x00", -EINVAL),
    RAW("unknown field ignored", "\xa0\x06\x01", 0),
    RAW("empty resource spans", "\x0a\x00", 0),
    RAW("empty scope spans", "\x0a\x02\x12\x00", 0),
};

static void test_proto_malformed(void **state)
{
    (void)state;
    char err[256];
    for (size_t i = 0; i < sizeof proto_cases / sizeof proto_cases[0]; i++) {
        const struct raw_case *c = &proto_cases[i];
        uint8_t *buf = malloc(c->len);
        memcpy(buf, c->bytes, c->len);
        struct span_batch *b;
        int rc = decode(PROTO, buf, c->len, NULL, &b, err, sizeof err);
        if (rc != c->rc) fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc, err);
        if (rc) assert_true(err[0] != '\0');
        span_batch_destroy(b);
        free(buf);
    }
}

struct json_case {
    const char *name;
    const char *text;
    int rc;
    const char *err; /* substring of the message, or NULL */
    uint32_t spans, rejected;
};

#define SPAN_OK "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\""
#define WRAP(s) "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[" s "]}]}]}"

static const struct json_case json_cases[] = {
    {"empty body", "", -EINVAL, "invalid JSON", 0, 0},
    {"truncated", "{\"resourceSpans\":[", -EINVAL, "invalid JSON", 0, 0},
    {"not an object", "[1,2]", -EINVAL, "request: expected an object", 0, 0},
    {"scalar", "42", -EINVAL, "invalid JSON", 0, 0},
    {"trailing garbage", "{} x", -EINVAL, "invalid JSON", 0, 0},
    {"invalid utf-8", "{\"a\":\"\xff\"}", -EINVAL, "invalid JSON", 0, 0},
    {"empty object", "{}", 0, NULL, 0, 0},
    {"null everywhere", "{\"resourceSpans\":[null,{\"resource\":null,\"scopeSpans\":[null]}]}", 0,
     NULL, 0, 0},
    {"resourceSpans object", "{\"resourceSpans\":{}}", -EINVAL,
     "request.resourceSpans: expected an array, got an object", 0, 0},
    {"scopeSpans string", "{\"resourceSpans\":[{\"scopeSpans\":\"x\"}]}", -EINVAL,
     "resourceSpans[0].scopeSpans: expected an array", 0, 0},
    {"span number", WRAP("1"), -EINVAL, "resourceSpans[0].scopeSpans[0].spans[0]: expected an object", 0, 0},
    {"name number", WRAP("{" SPAN_OK ",\"name\":5}"), -EINVAL,
     "resourceSpans[0].scopeSpans[0].spans[0].name: expected a string, got an integer", 0, 0},
    {"traceId number", WRAP("{\"traceId\":5}"), -EINVAL, "spans[0].traceId: expected a hex string",
     0, 0},
    {"start time garbage", WRAP("{" SPAN_OK ",\"startTimeUnixNano\":\"12x\"}"), -EINVAL,
     "spans[0].startTimeUnixNano: expected an unsigned 64-bit integer", 0, 0},
    {"start time negative", WRAP("{" SPAN_OK ",\"startTimeUnixNano\":-1}"), -EINVAL,
     "startTimeUnixNano", 0, 0},
    {"start time fraction", WRAP("{" SPAN_OK ",\"startTimeUnixNano\":1.5}"), -EINVAL,
     "startTimeUnixNano", 0, 0},
    {"start time overflow string", WRAP("{" SPAN_OK ",\"startTimeUnixNano\":\"18446744073709551616\"}"),
     -EINVAL, "startTimeUnixNano", 0, 0},
    {"start time max string", WRAP("{" SPAN_OK ",\"startTimeUnixNano\":\"18446744073709551615\"}"),
     0, NULL, 1, 0},
    {"start time real integral", WRAP("{" SPAN_OK ",\"startTimeUnixNano\":1e3}"), 0, NULL, 1, 0},
    {"flags over 32 bits", WRAP("{" SPAN_OK ",\"flags\":4294967296}"), -EINVAL, "flags", 0, 0},
    {"kind bad name", WRAP("{" SPAN_OK ",\"kind\":\"SPAN_KIND_BOGUS\"}"), -EINVAL,
     "spans[0].kind: expected an enum", 0, 0},
    {"kind unknown number", WRAP("{" SPAN_OK ",\"kind\":99}"), 0, NULL, 1, 0},
    {"kind object", WRAP("{" SPAN_OK ",\"kind\":{}}"), -EINVAL, "kind", 0, 0},
    {"status string", WRAP("{" SPAN_OK ",\"status\":\"ERROR\"}"), -EINVAL,
     "spans[0].status: expected an object", 0, 0},
    {"attributes object", WRAP("{" SPAN_OK ",\"attributes\":{}}"), -EINVAL,
     "spans[0].attributes: expected an array", 0, 0},
    {"attribute string", WRAP("{" SPAN_OK ",\"attributes\":[\"a\"]}"), -EINVAL,
     "spans[0].attributes[0]: expected an object", 0, 0},
    {"intValue fraction", WRAP("{" SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"intValue\":1.5}}]}"),
     -EINVAL, "spans[0].attributes[0].value.intValue", 0, 0},
    {"intValue overflow", WRAP("{" SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"intValue\":\"9223372036854775808\"}}]}"),
     -EINVAL, "intValue", 0, 0},
    {"intValue min", WRAP("{" SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"intValue\":\"-9223372036854775808\"}}]}"),
     0, NULL, 1, 0},
    {"boolValue string", WRAP("{" SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"boolValue\":\"true\"}}]}"),
     -EINVAL, "boolValue: expected a boolean", 0, 0},
    {"doubleValue word", WRAP("{" SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"doubleValue\":\"fast\"}}]}"),
     -EINVAL, "doubleValue", 0, 0},
    {"doubleValue NaN", WRAP("{" SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"doubleValue\":\"NaN\"}}]}"),
     0, NULL, 1, 0},
    {"bytesValue bad base64", WRAP("{" SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"bytesValue\":\"a*==\"}}]}"),
     -EINVAL, "bytesValue: invalid base64", 0, 0},
    {"arrayValue array", WRAP("{" SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"arrayValue\":[]}}]}"),
     -EINVAL, "arrayValue: expected an object", 0, 0},
    {"nested wrong type", WRAP("{" SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":1}]}}}]}"),
     -EINVAL, "attributes[0].value.kvlistValue.values[0].key: expected a string", 0, 0},
    {"bad hex id", WRAP("{\"traceId\":\"0102030405060708090a0b0c0d0e0fzz\",\"spanId\":\"0102030405060708\"}"),
     0, NULL, 0, 1},
    {"odd hex id", WRAP("{" SPAN_OK ",\"parentSpanId\":\"123\"}"), 0, NULL, 0, 1},
    {"null span", WRAP("null"), 0, NULL, 0, 1},
    {"NUL in a string", WRAP("{" SPAN_OK ",\"name\":\"ab\\u0000cd\"}"), 0, NULL, 1, 0},
};

static void test_json_malformed(void **state)
{
    (void)state;
    char err[256];
    for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
        const struct json_case *c = &json_cases[i];
        struct span_batch *b;
        int rc = decode(JSON, c->text, strlen(c->text), NULL, &b, err, sizeof err);
        if (rc != c->rc) fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc, err);
        if (c->err && !strstr(err, c->err))
            fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, err, c->err);
        if (rc == 0) {
            if (b->n_spans != c->spans || b->rejected != c->rejected)
                fail_msg("%s: %u spans %u rejected, want %u %u", c->name, b->n_spans, b->rejected,
                         c->spans, c->rejected);
        }
        span_batch_destroy(b);
    }
}

/* A NUL inside a string must not cut it short: both decoders turn it into U+FFFD. */
static void test_nul_in_strings(void **state)
{
    (void)state;
    char err[256];
    const char *t = WRAP("{" SPAN_OK ",\"name\":\"ab\\u0000cd\"}");
    struct span_batch *b;
    assert_int_equal(decode(JSON, t, strlen(t), NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->spans[0].name.len, 7);
    assert_string_equal(b->spans[0].name.ptr, "ab\xef\xbf\xbd" "cd");
    span_batch_destroy(b);

    /* ExportTraceServiceRequest{resource_spans{scope_spans{spans{trace_id, span_id,
     * name = "ab\0cd"}}}}, written by hand: protobuf-c cannot pack a NUL inside a string. */
    uint8_t pb[41] = {0x0a, 0x27, 0x12, 0x25, 0x12, 0x23, 0x0a, 0x10};
    size_t n = 8;
    for (int i = 0; i < 16; i++) pb[n++] = (uint8_t)(i + 1);
    pb[n++] = 0x12;
    pb[n++] = 0x08;
    for (int i = 0; i < 8; i++) pb[n++] = (uint8_t)(i + 1);
    memcpy(pb + n, "\x2a\x05" "ab\0cd", 7);
    n += 7;
    assert_int_equal(n, sizeof pb);
    assert_int_equal(decode(PROTO, pb, sizeof pb, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 1);
    assert_int_equal(b->spans[0].name.len, 7);
    assert_string_equal(b->spans[0].name.ptr, "ab\xef\xbf\xbd" "cd");
    span_batch_destroy(b);
}

/* ----- caps, nesting and hostile strings --------------------------------------------------- */

/* One span whose single attribute "a" is nested `depth` arrays deep around a bool. */
static uint8_t *build_nested(unsigned depth, const char *name, const char *key, size_t *len)
{
    pb_any *anys = calloc(depth + 1, sizeof *anys);
    pb_array *arrs = calloc(depth + 1, sizeof *arrs);
    pb_any **ptrs = calloc(depth + 1, sizeof *ptrs);
    for (unsigned i = 0; i <= depth; i++) {
        pb_any init = ANY_INIT;
        pb_array ainit = OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
        anys[i] = init;
        arrs[i] = ainit;
        ptrs[i] = &anys[i];
    }
    anys[depth].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    anys[depth].bool_value = 1;
    for (unsigned i = 0; i < depth; i++) {
        arrs[i].n_values = 1;
        arrs[i].values = &ptrs[i + 1];
        anys[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
        anys[i].array_value = &arrs[i];
    }
    static const uint8_t trace[16] = T16, span[8] = S8;
    pb_kv kv = KV_INIT;
    kv.key = (char *)key;
    kv.value = &anys[0];
    pb_kv *kvs[] = {&kv};
    pb_span sp = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
    sp.trace_id = bin(trace, 16);
    sp.span_id = bin(span, 8);
    sp.name = (char *)name;
    sp.n_attributes = 1;
    sp.attributes = kvs;
    pb_span *spans[] = {&sp};
    pb_scope_spans ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
    ss.n_spans = 1;
    ss.spans = spans;
    pb_scope_spans *sss[] = {&ss};
    pb_resource_spans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
    rs.n_scope_spans = 1;
    rs.scope_spans = sss;
    pb_resource_spans *rss[] = {&rs};
    pb_request req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.n_resource_spans = 1;
    req.resource_spans = rss;
    uint8_t *out = pack(&req, len);
    free(anys);
    free(arrs);
    free(ptrs);
    return out;
}

/* Same shape, encoded by hand from the inside out: protobuf-c's own pack recurses and cannot
 * build the very deep requests an attacker can. */
static uint8_t *wire_nested(unsigned depth, size_t *len)
{
    size_t cap = 64 + (size_t)depth * 16;
    uint8_t *buf = malloc(cap), *end = buf + cap, *p = end;
    static const uint8_t trace[16] = T16, span[8] = S8;
#define PUT(byte) (*--p = (uint8_t)(byte))
#define WRAP_FIELD(tag)                                                                          \
    do {                                                                                         \
        size_t n_ = (size_t)(end - p);                                                           \
        uint8_t v_[10];                                                                          \
        int k_ = 0;                                                                              \
        do {                                                                                     \
            v_[k_++] = (uint8_t)((n_ & 0x7f) | (n_ > 0x7f ? 0x80 : 0));                          \
            n_ >>= 7;                                                                            \
        } while (n_);                                                                            \
        while (k_) PUT(v_[--k_]);                                                                \
        PUT(tag);                                                                                \
    } while (0)
    PUT(0x01);
    PUT(0x10); /* AnyValue.bool_value = true */
    for (unsigned i = 0; i < depth; i++) {
        WRAP_FIELD(0x0a); /* ArrayValue.values */
        WRAP_FIELD(0x2a); /* AnyValue.array_value */
    }
    WRAP_FIELD(0x12); /* KeyValue.value */
    PUT('a');
    PUT(0x01);
    PUT(0x0a); /* KeyValue.key = "a" */
    WRAP_FIELD(0x4a); /* Span.attributes */
    for (int i = 7; i >= 0; i--) PUT(span[i]);
    PUT(8);
    PUT(0x12); /* Span.span_id */
    for (int i = 15; i >= 0; i--) PUT(trace[i]);
    PUT(16);
    PUT(0x0a); /* Span.trace_id */
    WRAP_FIELD(0x12); /* ScopeSpans.spans */
    WRAP_FIELD(0x12); /* ResourceSpans.scope_spans */
    WRAP_FIELD(0x0a); /* ExportTraceServiceRequest.resource_spans */
#undef WRAP_FIELD
#undef PUT
    *len = (size_t)(end - p);
    memmove(buf, p, *len);
    return buf;
}

static char *json_nested(unsigned depth, size_t *len)
{
    size_t cap = 256 + (size_t)depth * 40;
    char *buf = malloc(cap), *p = buf;
    p += sprintf(p, "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{" SPAN_OK
                    ",\"attributes\":[{\"key\":\"a\",\"value\":");
    for (unsigned i = 0; i < depth; i++) p += sprintf(p, "{\"arrayValue\":{\"values\":[");
    p += sprintf(p, "{\"boolValue\":true}");
    for (unsigned i = 0; i < depth; i++) p += sprintf(p, "]}}");
    p += sprintf(p, "}]}]}]}]}");
    *len = (size_t)(p - buf);
    return buf;
}

struct nest_case {
    unsigned depth;
    int rc;
    uint32_t spans, rejected;
    bool hand; /* protobuf encoded by wire_nested instead of protobuf-c */
};

static void test_nesting(void **state)
{
    (void)state;
    char err[256];
    /* default max_depth 16; the protobuf wire limit is 100 messages; jansson's is 2048. */
    static const struct nest_case proto[] = {
        {0, 0, 1, 0, false},       {16, 0, 1, 0, false},   {17, 0, 0, 1, false},
        {40, 0, 0, 1, false},      {1000, -EINVAL, 0, 0, false},
        {16, 0, 1, 0, true},       {17, 0, 0, 1, true}, /* the hand encoder agrees */
        {200000, -EINVAL, 0, 0, true},
    };
    static const struct nest_case json[] = {
        {0, 0, 1, 0, false},   {16, 0, 1, 0, false},         {17, 0, 0, 1, false},
        {500, 0, 0, 1, false}, {3000, -EINVAL, 0, 0, false},
    };
    for (size_t i = 0; i < sizeof proto / sizeof proto[0]; i++) {
        size_t len;
        uint8_t *buf = proto[i].hand ? wire_nested(proto[i].depth, &len)
                                              : build_nested(proto[i].depth, "n", "a", &len);
        struct span_batch *b;
        int rc = decode(PROTO, buf, len, NULL, &b, err, sizeof err);
        if (rc != proto[i].rc) fail_msg("proto depth %u: rc %d (%s)", proto[i].depth, rc, err);
        if (!rc) {
            assert_int_equal(b->n_spans, proto[i].spans);
            assert_int_equal(b->rejected, proto[i].rejected);
            if (b->rejected)
                assert_string_equal(b->reject_reason,
                                    "resource_spans[0].scope_spans[0].spans[0].attributes[0]: "
                                    "values nested deeper than 16");
        } else {
            assert_non_null(strstr(err, "nested deeper"));
        }
        span_batch_destroy(b);
        free(buf);
    }
    for (size_t i = 0; i < sizeof json / sizeof json[0]; i++) {
        size_t len;
        char *buf = json_nested(json[i].depth, &len);
        struct span_batch *b;
        int rc = decode(JSON, buf, len, NULL, &b, err, sizeof err);
        if (rc != json[i].rc) fail_msg("json depth %u: rc %d (%s)", json[i].depth, rc, err);
        if (!rc) {
            assert_int_equal(b->n_spans, json[i].spans);
            assert_int_equal(b->rejected, json[i].rejected);
            if (b->rejected)
                assert_string_equal(b->reject_reason,
                                    "resourceSpans[0].scopeSpans[0].spans[0].attributes[0]: "
                                    "values nested deeper than 16");
        }
        span_batch_destroy(b);
        free(buf);
    }
}

static void test_too_many_spans(void **state)
{
    (void)state;
    char err[256];
    struct decode_limits lim;
    decode_limits_default(&lim);
    lim.max_spans = 2;
    struct id_case ok = id_cases[0];
    size_t len, jlen;
    uint8_t *p = build_three(&ok, &len); /* three spans */
    char *j = json_three(&ok, &jlen);
    struct span_batch *b;
    assert_int_equal(decode(PROTO, p, len, &lim, &b, err, sizeof err), -E2BIG);
    assert_non_null(strstr(err, "more than 2 spans"));
    span_batch_destroy(b);
    assert_int_equal(decode(JSON, j, jlen, &lim, &b, err, sizeof err), -E2BIG);
    assert_non_null(strstr(err, "more than 2 spans"));
    span_batch_destroy(b);
    lim.max_spans = 3;
    assert_int_equal(decode(PROTO, p, len, &lim, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 3);
    span_batch_destroy(b);
    assert_int_equal(decode(JSON, j, jlen, &lim, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 3);
    span_batch_destroy(b);
    free(p);
    free(j);
}

/* Per-span caps, on the full request with tightened limits: span 0 breaks them, span 1 not. */
struct cap_case {
    const char *name;
    struct decode_limits lim;
    const char *proto_reason, *json_reason;
    uint32_t rejected;
};

static void test_caps(void **state)
{
    (void)state;
    static const struct cap_case cases[] = {
        {"attrs", {100, 7, 10, 10, 1000, 16},
         "resource_spans[0].scope_spans[0].spans[0].attributes: 8 attributes, max 7",
         "resourceSpans[0].scopeSpans[0].spans[0].attributes: 8 attributes, max 7", 1},
        {"events", {100, 10, 0, 10, 1000, 16},
         "resource_spans[0].scope_spans[0].spans[0].events: 1 events, max 0",
         "resourceSpans[0].scopeSpans[0].spans[0].events: 1 events, max 0", 1},
        {"links", {100, 10, 10, 0, 1000, 16},
         "resource_spans[0].scope_spans[0].spans[0].links: 1 links, max 0",
         "resourceSpans[0].scopeSpans[0].spans[0].links: 1 links, max 0", 1},
        {"depth", {100, 10, 10, 10, 1000, 1},
         "resource_spans[0].scope_spans[0].spans[0].attributes[5]: values nested deeper than 1",
         "resourceSpans[0].scopeSpans[0].spans[0].attributes[5]: values nested deeper than 1", 1},
        {"resource attrs", {100, 1, 10, 10, 1000, 16},
         "resource_spans[0].resource.attributes: 2 attributes, max 1",
         "resourceSpans[0].resource.attributes: 2 attributes, max 1", 2},
        {"resource string", {100, 10, 10, 10, 38, 16},
         "resource_spans[0].schema_url: string of 39 bytes, max 38",
         "resourceSpans[0].schemaUrl: string of 39 bytes, max 38", 2},
    };
    char err[256];
    size_t plen, jlen;
    uint8_t *pbuf = build_full(&plen);
    char *jbuf = test_read_fixture("otlp", "full.json", &jlen);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct cap_case *c = &cases[i];
        for (int f = PROTO; f <= JSON; f++) {
            struct span_batch *b;
            int rc = f == PROTO ? decode(PROTO, pbuf, plen, &c->lim, &b, err, sizeof err)
                                : decode(JSON, jbuf, jlen, &c->lim, &b, err, sizeof err);
            if (rc) fail_msg("%s: rc %d (%s)", c->name, rc, err);
            const char *want = f == PROTO ? c->proto_reason : c->json_reason;
            if (b->rejected != c->rejected || !b->reject_reason ||
                strcmp(b->reject_reason, want) != 0)
                fail_msg("%s (%s): %u rejected \"%s\", want %u \"%s\"", c->name,
                         f == PROTO ? "proto" : "json", b->rejected,
                         b->reject_reason ? b->reject_reason : "(null)", c->rejected, want);
            assert_int_equal(b->n_spans, 2 - c->rejected);
            span_batch_destroy(b);
        }
    }
    free(pbuf);
    free(jbuf);
}

struct str_case {
    const char *name;
    const char *in;
    const char *want; /* after U+FFFD replacement */
};

/* decode_copy_utf8 skips eight ASCII bytes at a time: a NUL, a bad byte or a multibyte
 * sequence at any offset of a longer string, across the 8-byte steps, is still seen. The
 * reference is the plain loop over decode_utf8_seq. */
static size_t ref_copy_utf8(const unsigned char *u, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = decode_utf8_seq(u + i, len - i);
        if (n) {
            memcpy(out + o, u + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    return o;
}

static void test_utf8_copy_offsets(void **state)
{
    (void)state;
    static const char *const inserts[] = {"\0", "\x80", "\xff", "\xc3\xa9", "\xe2\x82\xac",
                                          "\xf0\x9f\x98\x80", "\xe2\x82", "\x7f"};
    static const size_t insert_len[] = {1, 1, 1, 2, 3, 4, 2, 1};
    struct arena *a = arena_create(0);
    assert_non_null(a);
    for (size_t k = 0; k < sizeof inserts / sizeof inserts[0]; k++) {
        for (size_t at = 0; at <= 24; at++) {
            unsigned char in[40];
            memset(in, 'a', sizeof in);
            memcpy(in + at, inserts[k], insert_len[k]);
            size_t len = 24 + insert_len[k];
            char want[128];
            size_t want_len = ref_copy_utf8(in, len, want);
            struct mstr got;
            assert_int_equal(decode_copy_utf8(a, (const char *)in, len, &got), 0);
            if (got.len != want_len || memcmp(got.ptr, want, want_len) != 0 || got.ptr[got.len])
                fail_msg("insert %zu at offset %zu: copy differs from the plain loop", k, at);
        }
    }
    arena_destroy(a);
}

static void test_hostile_strings(void **state)
{
    (void)state;
    static const struct str_case cases[] = {
        {"ascii", "plain", "plain"},
        {"valid multibyte", "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"lone continuation", "a\x80z", "a\xef\xbf\xbdz"},
        {"bad lead bytes", "\xff\xfeok", "\xef\xbf\xbd\xef\xbf\xbdok"},
        {"overlong slash", "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"surrogate", "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"above U+10FFFF", "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"truncated sequence", "ab\xe2\x82", "ab\xef\xbf\xbd\xef\xbf\xbd"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *buf = build_nested(0, cases[i].in, cases[i].in, &len);
        struct span_batch *b;
        assert_int_equal(decode(PROTO, buf, len, NULL, &b, err, sizeof err), 0);
        assert_int_equal(b->n_spans, 1);
        if (strcmp(b->spans[0].name.ptr, cases[i].want) != 0) fail_msg("%s: name", cases[i].name);
        assert_int_equal(b->spans[0].name.len, strlen(cases[i].want));
        assert_string_equal(b->spans[0].attrs.items[0].key.ptr, cases[i].want);
        span_batch_destroy(b);
        free(buf);
    }

    /* Bytes values keep their NULs (checked in check_full); a long name over the cap rejects
     * the span, a key at the cap is fine. */
    struct decode_limits lim;
    decode_limits_default(&lim);
    lim.max_string = 1000;
    char *longs = malloc(1002);
    memset(longs, 'x', 1001);
    longs[1001] = '\0';
    size_t len;
    uint8_t *buf = build_nested(0, longs, "k", &len);
    struct span_batch *b;
    assert_int_equal(decode(PROTO, buf, len, &lim, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 0);
    assert_int_equal(b->rejected, 1);
    assert_string_equal(b->reject_reason,
                        "resource_spans[0].scope_spans[0].spans[0].name: string of 1001 bytes, "
                        "max 1000");
    span_batch_destroy(b);
    free(buf);
    longs[1000] = '\0';
    buf = build_nested(0, "n", longs, &len);
    assert_int_equal(decode(PROTO, buf, len, &lim, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 1);
    assert_int_equal(b->spans[0].attrs.items[0].key.len, 1000);
    span_batch_destroy(b);
    free(buf);

    /* The JSON decoder applies the same cap. */
    char *j = malloc(2048);
    longs[1000] = 'x';
    snprintf(j, 2048, WRAP("{" SPAN_OK ",\"name\":\"%s\"}"), longs);
    assert_int_equal(decode(JSON, j, strlen(j), &lim, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 0);
    assert_int_equal(b->rejected, 1);
    assert_string_equal(b->reject_reason,
                        "resourceSpans[0].scopeSpans[0].spans[0].name: string of 1001 bytes, "
                        "max 1000");
    span_batch_destroy(b);
    free(j);
    free(longs);
}

/* ----- the one-pass wire decoder against protobuf-c's -------------------------------------
 * otlp_decode_traces_proto must decode every request exactly as otlp_decode_traces_protoc
 * (fuzz/batch_equal.h; fuzz_otlp_wire does the same on random input). The bodies below are
 * written on the wire by hand where protobuf-c's packer cannot express them: a singular message
 * field twice, a oneof member switched, unknown fields of every wire type in every message.
 * What protobuf-c 1.4 makes of them (the reference, not always protobuf's merge rules):
 *  - a singular message field twice (resource, scope, status, KeyValue.value) is merged:
 *    repeated fields concatenate (earlier items first), strings keep the earlier value when the
 *    later message has none, but scalars (dropped_attributes_count, Status.code) take the later
 *    message's value even when it is absent there (0), unlike protobuf's rule;
 *  - AnyValue's oneof always comes from the later message, whole: string then int is the int,
 *    array then array is the later array alone (no concatenation), a value then an empty
 *    AnyValue is empty;
 *  - a oneof member switched inside one AnyValue: the last one wins;
 *  - unknown fields of wire types 0, 1, 2, 5 are skipped; a group (3, 4) fails the request
 *    ("malformed protobuf near byte N", from the wire scan). */

struct wb {
    uint8_t *p;
    size_t n, cap;
};

static void wb_raw(struct wb *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void wb_varint(struct wb *b, uint64_t v)
{
    uint8_t t[10];
    int k = 0;
    do {
        t[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    wb_raw(b, t, (size_t)k);
}

static void wb_tag(struct wb *b, unsigned field, unsigned wt) { wb_varint(b, (uint64_t)field << 3 | wt); }

static void wb_uint(struct wb *b, unsigned field, uint64_t v)
{
    wb_tag(b, field, 0);
    wb_varint(b, v);
}

static void wb_fixed(struct wb *b, unsigned field, uint64_t v, unsigned size)
{
    uint8_t t[8];
    for (unsigned i = 0; i < size; i++) t[i] = (uint8_t)(v >> (8 * i));
    wb_tag(b, field, size == 8 ? 1 : 5);
    wb_raw(b, t, size);
}

static void wb_bytes(struct wb *b, unsigned field, const void *p, size_t n)
{
    wb_tag(b, field, 2);
    wb_varint(b, n);
    wb_raw(b, p, n);
}

static void wb_str(struct wb *b, unsigned field, const char *s) { wb_bytes(b, field, s, strlen(s)); }

/* Appends sub as a length-delimited field and frees it. */
static void wb_sub(struct wb *b, unsigned field, struct wb *sub)
{
    wb_bytes(b, field, sub->p, sub->n);
    free(sub->p);
    *sub = (struct wb){0};
}

enum wire_mode {
    WIRE_UNKNOWN = 1, /* unknown fields of wire types 0, 1, 2, 5 in every message */
    WIRE_GROUPS = 2,  /* unknown groups (wire types 3, 4) in every message */
    WIRE_DUP = 4,     /* every singular message field twice, oneof members switched */
};

struct wire_opts {
    unsigned mode;
    const char *name; /* span name, name_len bytes (may hold NULs or bad UTF-8) */
    size_t name_len;
    size_t trace_len; /* trace_id length (16 is valid) */
};

static void wb_unknowns(struct wb *b, const struct wire_opts *o)
{
    if (o->mode & WIRE_UNKNOWN) {
        wb_uint(b, 100, 300);
        wb_fixed(b, 101, 0x0102030405060708ULL, 8);
        wb_str(b, 102, "unknown");
        wb_fixed(b, 103, 0x01020304, 4);
        wb_uint(b, 536870911, 1); /* the largest field number */
    }
    if (o->mode & WIRE_GROUPS) {
        wb_tag(b, 104, 3);
        wb_uint(b, 1, 5);
        wb_str(b, 2, "in a group");
        wb_tag(b, 104, 4);
    }
}

/* AnyValue holding a string. */
static struct wb any_str(const struct wire_opts *o, const char *s)
{
    struct wb v = {0};
    wb_unknowns(&v, o);
    wb_str(&v, 1, s);
    return v;
}

static struct wb any_int(const struct wire_opts *o, int64_t i)
{
    struct wb v = {0};
    wb_uint(&v, 3, (uint64_t)i);
    wb_unknowns(&v, o);
    return v;
}

static struct wb kv(const struct wire_opts *o, const char *key, struct wb *value)
{
    struct wb k = {0};
    wb_unknowns(&k, o);
    wb_str(&k, 1, key);
    if (value) wb_sub(&k, 2, value);
    return k;
}

/* An attributes field: key = a string value. */
static void wb_attr_str(struct wb *b, unsigned field, const struct wire_opts *o, const char *key,
                        const char *s)
{
    struct wb v = any_str(o, s), k = kv(o, key, &v);
    wb_sub(b, field, &k);
}

static void wb_attr_int(struct wb *b, unsigned field, const struct wire_opts *o, const char *key,
                        int64_t i)
{
    struct wb v = any_int(o, i), k = kv(o, key, &v);
    wb_sub(b, field, &k);
}

static struct wb wire_span(const struct wire_opts *o, uint8_t span_byte)
{
    static const uint8_t trace[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30};
    uint8_t span[8] = {0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, span_byte};
    struct wb s = {0}, v, k, l, e, st;
    bool dup = o->mode & WIRE_DUP;
    wb_unknowns(&s, o);
    wb_bytes(&s, 1, trace, o->trace_len);
    wb_bytes(&s, 2, span, 8);
    wb_str(&s, 3, "rojo=00f067aa0ba902b7");
    wb_bytes(&s, 4, PARENT_ID, 8);
    wb_bytes(&s, 5, o->name, o->name_len);
    wb_uint(&s, 6, 2);
    wb_fixed(&s, 7, 1700000000000000000ULL, 8);
    wb_fixed(&s, 8, 1700000000123456789ULL, 8);
    wb_attr_str(&s, 9, o, "http.method", "GET");
    /* nested: array [ "x", kvlist { in: 1.5, deeper: [true] } ] */
    {
        struct wb arr = {0}, item = any_str(o, "x"), kvl = {0}, d = {0}, in, deeper = {0},
                  inner = {0}, t = {0};
        wb_sub(&arr, 1, &item);
        wb_fixed(&d, 4, 0x3ff8000000000000ULL, 8); /* 1.5 */
        wb_unknowns(&d, o);
        in = kv(o, "in", &d);
        wb_unknowns(&kvl, o);
        wb_sub(&kvl, 1, &in);
        wb_uint(&t, 2, 1);
        wb_sub(&inner, 1, &t);
        wb_unknowns(&inner, o);
        wb_sub(&deeper, 5, &inner);
        in = kv(o, "deeper", &deeper);
        wb_sub(&kvl, 1, &in);
        item = (struct wb){0};
        wb_sub(&item, 6, &kvl);
        wb_sub(&arr, 1, &item);
        wb_unknowns(&arr, o);
        v = (struct wb){0};
        wb_sub(&v, 5, &arr);
        k = kv(o, "nested", &v);
        wb_sub(&s, 9, &k);
    }
    {
        static const uint8_t binv[4] = {0, 1, 0xff, 0};
        v = (struct wb){0};
        wb_bytes(&v, 7, binv, sizeof binv);
        k = kv(o, "bin", &v);
        wb_sub(&s, 9, &k);
        v = (struct wb){0};
        wb_fixed(&v, 4, 0x7ff8000000000001ULL, 8); /* a NaN with a payload */
        k = kv(o, "nan", &v);
        wb_sub(&s, 9, &k);
        v = (struct wb){0};
        wb_uint(&v, 2, 0); /* bool false, set explicitly */
        k = kv(o, "false", &v);
        wb_sub(&s, 9, &k);
        k = kv(o, "no value", NULL);
        wb_sub(&s, 9, &k);
        v = (struct wb){0};
        k = kv(o, "empty value", &v);
        wb_sub(&s, 9, &k);
    }
    if (dup) {
        /* the oneof switches member inside one AnyValue: string then int */
        v = any_str(o, "first");
        wb_uint(&v, 3, 7);
        k = kv(o, "switch in one", &v);
        wb_sub(&s, 9, &k);
        /* int then string */
        v = any_int(o, 7);
        wb_str(&v, 1, "second");
        k = kv(o, "switch int to string", &v);
        wb_sub(&s, 9, &k);
        /* two value fields in one KeyValue (merged): string then int */
        k = (struct wb){0};
        wb_str(&k, 1, "two values");
        v = any_str(o, "first");
        wb_sub(&k, 2, &v);
        v = any_int(o, -5);
        wb_sub(&k, 2, &v);
        wb_sub(&s, 9, &k);
        /* two values: array then array (the arrays' items concatenate), then kvlist then
         * kvlist, then array then kvlist */
        {
            const unsigned fields[3][2] = {{5, 5}, {6, 6}, {5, 6}};
            const char *keys[3] = {"array+array", "kvlist+kvlist", "array+kvlist"};
            for (int c = 0; c < 3; c++) {
                k = (struct wb){0};
                wb_str(&k, 1, keys[c]);
                for (int h = 0; h < 2; h++) {
                    struct wb list = {0}, item;
                    if (fields[c][h] == 5) {
                        item = any_int(o, h);
                    } else {
                        struct wb iv = any_int(o, h);
                        item = kv(o, h ? "b" : "a", &iv);
                    }
                    wb_sub(&list, 1, &item);
                    v = (struct wb){0};
                    wb_sub(&v, fields[c][h], &list);
                    wb_sub(&k, 2, &v);
                }
                wb_sub(&s, 9, &k);
            }
        }
        /* two values, one of them empty (no member set) */
        for (int h = 0; h < 2; h++) {
            k = (struct wb){0};
            wb_str(&k, 1, h ? "empty+string" : "string+empty");
            struct wb empty = {0};
            wb_unknowns(&empty, o);
            v = any_str(o, "kept?");
            wb_sub(&k, 2, h ? &empty : &v);
            wb_sub(&k, 2, h ? &v : &empty);
            free(v.p);
            free(empty.p);
            wb_sub(&s, 9, &k);
        }
        /* the key twice: the last one counts */
        k = (struct wb){0};
        wb_str(&k, 1, "key one");
        wb_str(&k, 1, "key two");
        v = any_int(o, 1);
        wb_sub(&k, 2, &v);
        wb_sub(&s, 9, &k);
    }
    wb_uint(&s, 10, 3);
    e = (struct wb){0};
    wb_unknowns(&e, o);
    wb_fixed(&e, 1, 1700000000000000100ULL, 8);
    wb_str(&e, 2, "exception");
    wb_attr_str(&e, 3, o, "exception.message", "boom");
    wb_uint(&e, 4, 4);
    wb_sub(&s, 11, &e);
    wb_uint(&s, 12, 5);
    l = (struct wb){0};
    wb_bytes(&l, 1, LINK_TRACE, 16);
    wb_bytes(&l, 2, LINK_SPAN, 8);
    wb_str(&l, 3, "a=b");
    wb_attr_int(&l, 4, o, "link.attr", 7);
    wb_uint(&l, 5, 6);
    wb_fixed(&l, 6, 1, 4);
    wb_unknowns(&l, o);
    wb_sub(&s, 13, &l);
    wb_uint(&s, 14, 7);
    st = (struct wb){0};
    wb_unknowns(&st, o);
    wb_str(&st, 2, "upstream failed");
    wb_uint(&st, 3, 2);
    wb_sub(&s, 15, &st);
    if (dup) { /* a second status: the message changes, the code stays */
        wb_str(&st, 2, "second status");
        wb_unknowns(&st, o);
        wb_sub(&s, 15, &st);
    }
    wb_fixed(&s, 16, 0x101, 4);
    wb_unknowns(&s, o);
    return s;
}

static uint8_t *wire_request(const struct wire_opts *o, size_t *len)
{
    struct wb req = {0};
    bool dup = o->mode & WIRE_DUP;
    wb_unknowns(&req, o);
    for (int r = 0; r < 2; r++) {
        struct wb rs = {0}, res = {0}, ss = {0}, sc = {0}, sp;
        wb_unknowns(&rs, o);
        wb_attr_str(&res, 1, o, "service.name", r ? "cart" : "checkout");
        wb_uint(&res, 2, 1);
        wb_unknowns(&res, o);
        wb_sub(&rs, 1, &res);
        if (dup) { /* a second resource: attributes append, the dropped count is replaced */
            wb_attr_int(&res, 1, o, "r.second", 2);
            wb_uint(&res, 2, 9);
            wb_sub(&rs, 1, &res);
        }
        for (int si = 0; si < 2; si++) {
            wb_unknowns(&ss, o);
            wb_str(&sc, 1, "io.meshscope.test");
            wb_str(&sc, 2, "1.2.3");
            wb_attr_str(&sc, 3, o, "scope.attr", "x");
            wb_uint(&sc, 4, 2);
            wb_unknowns(&sc, o);
            wb_sub(&ss, 1, &sc);
            if (dup) { /* a second scope: version replaced, attributes appended */
                wb_str(&sc, 2, "2.0");
                wb_attr_int(&sc, 3, o, "scope.second", 1);
                wb_sub(&ss, 1, &sc);
            }
            for (uint8_t k = 0; k < 2; k++) {
                sp = wire_span(o, (uint8_t)(0x20 + r * 4 + si * 2 + k));
                wb_sub(&ss, 2, &sp);
            }
            wb_str(&ss, 3, "https://example.com/scope");
            if (dup) wb_str(&ss, 3, "https://example.com/scope2");
            wb_sub(&rs, 2, &ss);
        }
        wb_str(&rs, 3, "https://opentelemetry.io/schemas/1.21.0");
        wb_unknowns(&rs, o);
        wb_sub(&req, 1, &rs);
    }
    *len = req.n;
    return req.p ? req.p : calloc(1, 1);
}


/* Decodes body with both decoders: same rc, then the same batch or the same error. */
static void expect_same(const char *name, const uint8_t *body, size_t len,
                        const struct decode_limits *lim, int want_rc)
{
    char err_c[256], err_w[256], why[512];
    struct span_batch *c, *w;
    int rc_c = test_decode(otlp_decode_traces_protoc, body, len, lim, &c, err_c, sizeof err_c);
    int rc_w = test_decode(otlp_decode_traces_proto, body, len, lim, &w, err_w, sizeof err_w);
    if (rc_c != rc_w) fail_msg("%s: rc protoc %d (%s), wire %d (%s)", name, rc_c, err_c, rc_w, err_w);
    if (want_rc != 1 && rc_c != want_rc) fail_msg("%s: rc %d (%s), want %d", name, rc_c, err_c, want_rc);
    if (rc_c == 0 && !batch_equal(c, w, why, sizeof why)) fail_msg("%s: %s", name, why);
    if (rc_c != 0 && strcmp(err_c, err_w) != 0)
        fail_msg("%s: err protoc \"%s\", wire \"%s\"", name, err_c, err_w);
    span_batch_destroy(c);
    span_batch_destroy(w);
}

static void test_wire_matches_protoc(void **state)
{
    (void)state;
    char err[256];
    struct span_batch *b;
    size_t len;

    /* The full request (protobuf-c's packer), default and tight limits (every cap: see
     * test_caps), and cut short at every length. */
    uint8_t *full = build_full(&len);
    expect_same("full", full, len, NULL, 0);
    static const struct decode_limits caps[] = {
        {100, 7, 10, 10, 1000, 16}, {100, 10, 0, 10, 1000, 16}, {100, 10, 10, 0, 1000, 16},
        {100, 10, 10, 10, 1000, 1}, {100, 1, 10, 10, 1000, 16}, {100, 10, 10, 10, 38, 16},
        {100, 10, 10, 10, 4, 16},   {1, 10, 10, 10, 1000, 16},  {4, 4, 2, 2, 16, 3},
    };
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "full, caps %zu", i);
        expect_same(name, full, len, &caps[i], i == 7 ? -E2BIG : 0);
    }
    for (size_t cut = 0; cut < len; cut++) expect_same("full, cut", full, cut, NULL, 1);
    free(full);

    /* Hand-written bodies: every span has two events' worth of content, so tight limits
     * reject some and keep none of the rest unchecked. */
    static const char bad_utf8[] = "GET \xc3(\xff /cart\xe2\x82";
    static const struct {
        const char *name;
        struct wire_opts o;
        int want_rc; /* 1: whatever protoc says */
    } cases[] = {
        {"plain", {0, "GET /cart", 9, 16}, 0},
        {"unknown fields", {WIRE_UNKNOWN, "GET /cart", 9, 16}, 0},
        {"unknown groups", {WIRE_GROUPS, "GET /cart", 9, 16}, 1},
        {"singular fields twice", {WIRE_DUP, "GET /cart", 9, 16}, 0},
        {"everything", {WIRE_UNKNOWN | WIRE_DUP, "GET /cart", 9, 16}, 0},
        {"NUL in a string", {0, "GET\0/cart", 9, 16}, 0},
        {"invalid UTF-8", {0, bad_utf8, sizeof bad_utf8 - 1, 16}, 0},
        {"trace id of 15 bytes", {0, "GET /cart", 9, 15}, 0},
        {"trace id of 17 bytes", {0, "GET /cart", 9, 17}, 0},
        {"empty trace id", {0, "GET /cart", 9, 0}, 0},
    };
    /* Limits {spans, attrs, events, links, string, depth}: the first refuses the resources'
     * schema_url, the next ones each span in turn by one cap, the last the whole request. */
    static const struct decode_limits tight = {100, 4, 2, 2, 16, 3};
    static const struct decode_limits lims[] = {
        {100, 4, 2, 2, 16, 3},   {100, 4, 2, 2, 64, 3},   {100, 64, 0, 2, 64, 16},
        {100, 64, 2, 0, 64, 16}, {100, 64, 2, 2, 64, 1},  {100, 64, 2, 2, 64, 16},
        {3, 64, 2, 2, 64, 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *body = wire_request(&cases[i].o, &len);
        expect_same(cases[i].name, body, len, NULL, cases[i].want_rc);
        for (size_t l = 0; l < sizeof lims / sizeof lims[0]; l++) {
            char name[80];
            snprintf(name, sizeof name, "%s, limits %zu", cases[i].name, l);
            int want = cases[i].want_rc == 1 ? 1 : l == 6 ? -E2BIG : 0;
            expect_same(name, body, len, &lims[l], want);
        }
        free(body);
    }

    /* The test can fail: the bodies above decode to spans, and rejected ones where expected. */
    uint8_t *body = wire_request(&cases[4].o, &len);
    assert_int_equal(test_decode(otlp_decode_traces_protoc, body, len, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->n_spans, 8);
    span_batch_destroy(b);
    assert_int_equal(test_decode(otlp_decode_traces_protoc, body, len, &tight, &b, err, sizeof err),
                     0);
    assert_int_equal(b->n_spans, 0);
    assert_int_equal(b->rejected, 8);
    span_batch_destroy(b);
    free(body);
    /* protobuf-c's merges, as described above (the new decoder must do the same) */
    body = wire_request(&cases[3].o, &len);
    assert_int_equal(test_decode(otlp_decode_traces_protoc, body, len, NULL, &b, err, sizeof err), 0);
    const struct span *s = &b->spans[0];
    assert_int_equal(s->status_code, STATUS_UNSET); /* code 2, then a status without one */
    assert_string_equal(s->status_message.ptr, "second status");
    assert_int_equal(s->resource->attrs.n, 2);
    assert_int_equal(s->resource->attrs.dropped, 9);
    assert_string_equal(s->scope->name.ptr, "io.meshscope.test");
    assert_string_equal(s->scope->version.ptr, "2.0");
    assert_int_equal(s->scope->attrs.n, 2);
    assert_int_equal(s->scope->attrs.dropped, 0); /* 2, then a scope without one */
    assert_string_equal(s->scope->schema_url.ptr, "https://example.com/scope2");
    assert_int_equal(span_attr(s, "switch in one")->type, VALUE_INT);
    assert_int_equal(span_attr(s, "switch int to string")->type, VALUE_STRING);
    assert_int_equal(span_attr(s, "two values")->u.i, -5);
    assert_int_equal(span_attr(s, "array+array")->u.array.n, 1);
    assert_int_equal(span_attr(s, "kvlist+kvlist")->u.kvlist.n, 1);
    assert_int_equal(span_attr(s, "array+kvlist")->type, VALUE_KVLIST);
    assert_int_equal(span_attr(s, "string+empty")->type, VALUE_EMPTY);
    assert_int_equal(span_attr(s, "empty+string")->type, VALUE_STRING);
    assert_non_null(span_attr(s, "key two"));
    span_batch_destroy(b);
    free(body);
    body = wire_request(&cases[7].o, &len);
    assert_int_equal(test_decode(otlp_decode_traces_protoc, body, len, NULL, &b, err, sizeof err), 0);
    assert_int_equal(b->rejected, 8);
    span_batch_destroy(b);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_proto_equals_json),
        cmocka_unit_test(test_proto_fixture),
        cmocka_unit_test(test_spec_example_json),
        cmocka_unit_test(test_proto_truncated_everywhere),
        cmocka_unit_test(test_id_validation),
        cmocka_unit_test(test_proto_malformed),
        cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_nul_in_strings),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_too_many_spans),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_hostile_strings),
        cmocka_unit_test(test_utf8_copy_offsets),
        cmocka_unit_test(test_wire_matches_protoc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
