/*
 * test_storage.c: unit tests of the storage module: the span codec (round trip of every field,
 * hardening against truncated and corrupt input), and the store (put/get, find with every
 * filter, dictionaries, dependencies, retention, concurrent reads, -ENOSPC with rollback), and
 * the edge rollups behind the service graph (pairing, user and virtual nodes, percentiles from
 * known durations, restart, downsampling, retention, migration of a v1 file).
 *
 * Each store test works in a fresh mkdtemp directory. -ENOSPC is provoked with the test hook
 * store_test_set_max_pages (PRAGMA max_page_count on the writer connection), and receive time
 * for retention with store_test_set_clock; both are declared in storage/storage_int.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage_int.h"
#include "test_util.h"

#define T0 1700000000000000LL /* a fixed span-time origin, in us */
#define MS 1000LL
#define SEC 1000000LL

/* ----- building spans ---------------------------------------------------------------------- */

static struct mstr S(struct span_batch *b, const char *s)
{
    struct mstr m = {arena_strndup(b->arena, s, strlen(s)), (uint32_t)strlen(s)};
    return m;
}

static struct resource *make_resource(struct span_batch *b, const char *service, const char *env)
{
    struct resource *r = arena_alloc(b->arena, sizeof *r);
    r->attrs.items = arena_alloc(b->arena, 2 * sizeof *r->attrs.items);
    r->attrs.items[0].key = S(b, "service.name");
    r->attrs.items[0].value.type = VALUE_STRING;
    r->attrs.items[0].value.u.str = S(b, service);
    r->attrs.n = 1;
    if (env) {
        r->attrs.items[1].key = S(b, "deployment.environment");
        r->attrs.items[1].value.type = VALUE_STRING;
        r->attrs.items[1].value.u.str = S(b, env);
        r->attrs.n = 2;
    }
    return r;
}

static void make_id(uint8_t *out, size_t len, uint64_t a, uint64_t b)
{
    memset(out, 0, len);
    for (int i = 0; i < 8 && (size_t)i < len; i++) out[i] = (uint8_t)(a >> (56 - 8 * i));
    for (size_t i = 8; i < len; i++) out[i] = (uint8_t)(b >> (8 * (15 - i)));
}

static void trace_id_of(uint8_t out[16], uint64_t n)
{
    make_id(out, 16, 0xabc0000000000000ULL | n, n * 7919);
}

static struct span *add_span(struct span_batch *b, const struct resource *res, uint64_t trace,
                             uint64_t span_id, uint64_t parent, const char *name,
                             enum span_kind kind, int64_t start_us, int64_t dur_us)
{
    struct span *s = span_batch_add(b);
    trace_id_of(s->trace_id, trace);
    make_id(s->span_id, 8, span_id, 0);
    if (parent) {
        make_id(s->parent_span_id, 8, parent, 0);
        s->has_parent = true;
    }
    s->name = S(b, name);
    s->kind = kind;
    s->start_unix_nano = (uint64_t)start_us * 1000;
    s->end_unix_nano = (uint64_t)(start_us + dur_us) * 1000;
    s->resource = res;
    s->attrs.items = arena_alloc(b->arena, 16 * sizeof *s->attrs.items);
    return s;
}

static struct value *add_attr(struct span_batch *b, struct span *s, const char *key)
{
    struct attr *a = &s->attrs.items[s->attrs.n++];
    a->key = S(b, key);
    return &a->value;
}

static void attr_str(struct span_batch *b, struct span *s, const char *key, const char *v)
{
    struct value *val = add_attr(b, s, key);
    val->type = VALUE_STRING;
    val->u.str = S(b, v);
}

static void attr_int(struct span_batch *b, struct span *s, const char *key, int64_t v)
{
    struct value *val = add_attr(b, s, key);
    val->type = VALUE_INT;
    val->u.i = v;
}

/* ----- deep comparison --------------------------------------------------------------------- */

static void assert_mstr(struct mstr a, struct mstr b)
{
    assert_int_equal(a.ptr == NULL, b.ptr == NULL);
    assert_int_equal(a.len, b.len);
    if (a.ptr) {
        assert_memory_equal(a.ptr, b.ptr, a.len);
        assert_int_equal(b.ptr[b.len], '\0');
    }
}

static void assert_attr_items(const struct attr *a, const struct attr *b, uint32_t n);

static void assert_value(const struct value *a, const struct value *b)
{
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case VALUE_STRING:
    case VALUE_BYTES: assert_mstr(a->u.str, b->u.str); break;
    case VALUE_BOOL: assert_int_equal(a->u.b, b->u.b); break;
    case VALUE_INT: assert_true(a->u.i == b->u.i); break;
    case VALUE_DOUBLE: assert_memory_equal(&a->u.d, &b->u.d, sizeof(double)); break;
    case VALUE_ARRAY:
        assert_int_equal(a->u.array.n, b->u.array.n);
        for (uint32_t i = 0; i < a->u.array.n; i++)
            assert_value(&a->u.array.items[i], &b->u.array.items[i]);
        break;
    case VALUE_KVLIST:
        assert_int_equal(a->u.kvlist.n, b->u.kvlist.n);
        assert_attr_items(a->u.kvlist.items, b->u.kvlist.items, a->u.kvlist.n);
        break;
    default: break;
    }
}

static void assert_attr_items(const struct attr *a, const struct attr *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        assert_mstr(a[i].key, b[i].key);
        assert_value(&a[i].value, &b[i].value);
    }
}

static void assert_attrs(const struct attrs *a, const struct attrs *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->dropped, b->dropped);
    assert_attr_items(a->items, b->items, a->n);
}

static void assert_span(const struct span *a, const struct span *b)
{
    assert_memory_equal(a->trace_id, b->trace_id, 16);
    assert_memory_equal(a->span_id, b->span_id, 8);
    assert_int_equal(a->has_parent, b->has_parent);
    if (a->has_parent) assert_memory_equal(a->parent_span_id, b->parent_span_id, 8);
    assert_mstr(a->trace_state, b->trace_state);
    assert_int_equal(a->flags, b->flags);
    assert_mstr(a->name, b->name);
    assert_int_equal(a->kind, b->kind);
    assert_true(a->start_unix_nano == b->start_unix_nano);
    assert_true(a->end_unix_nano == b->end_unix_nano);
    assert_attrs(&a->attrs, &b->attrs);
    assert_int_equal(a->n_events, b->n_events);
    assert_int_equal(a->dropped_events, b->dropped_events);
    for (uint32_t i = 0; i < a->n_events; i++) {
        assert_true(a->events[i].time_unix_nano == b->events[i].time_unix_nano);
        assert_mstr(a->events[i].name, b->events[i].name);
        assert_attrs(&a->events[i].attrs, &b->events[i].attrs);
    }
    assert_int_equal(a->n_links, b->n_links);
    assert_int_equal(a->dropped_links, b->dropped_links);
    for (uint32_t i = 0; i < a->n_links; i++) {
        const struct span_link *x = &a->links[i], *y = &b->links[i];
        assert_memory_equal(x->trace_id, y->trace_id, 16);
        assert_memory_equal(x->span_id, y->span_id, 8);
        assert_mstr(x->trace_state, y->trace_state);
        assert_attrs(&x->attrs, &y->attrs);
        assert_int_equal(x->flags, y->flags);
    }
    assert_int_equal(a->status_code, b->status_code);
    assert_mstr(a->status_message, b->status_message);
    assert_int_equal(a->resource == NULL, b->resource == NULL);
    if (a->resource) {
        assert_attrs(&a->resource->attrs, &b->resource->attrs);
        assert_mstr(a->resource->schema_url, b->resource->schema_url);
    }
    assert_int_equal(a->scope == NULL, b->scope == NULL);
    if (a->scope) {
        assert_mstr(a->scope->name, b->scope->name);
        assert_mstr(a->scope->version, b->scope->version);
        assert_attrs(&a->scope->attrs, &b->scope->attrs);
        assert_mstr(a->scope->schema_url, b->scope->schema_url);
    }
}

/* A span using every field and every AnyValue type, nested arrays and kvlists, bytes with NULs,
 * absent vs empty strings. */
static struct span_batch *rich_batch(void)
{
    struct span_batch *b = span_batch_create();
    struct resource *res = make_resource(b, "frontend", "prod");
    res->attrs.dropped = 3;
    res->schema_url = S(b, "https://opentelemetry.io/schemas/1.21.0");
    struct scope *sc = arena_alloc(b->arena, sizeof *sc);
    sc->name = S(b, "io.opentelemetry.http");
    sc->version = S(b, "1.2.3");
    sc->attrs.items = arena_alloc(b->arena, sizeof *sc->attrs.items);
    sc->attrs.items[0].key = S(b, "scope.attr");
    sc->attrs.items[0].value.type = VALUE_BOOL;
    sc->attrs.items[0].value.u.b = true;
    sc->attrs.n = 1;
    sc->attrs.dropped = 1;
    sc->schema_url = S(b, ""); /* empty, not absent */

    struct span *s = add_span(b, res, 1, 0x1122334455667788ULL, 0x99, "GET /cart", SPAN_KIND_SERVER,
                              T0, 1500);
    s->scope = sc;
    s->trace_state = S(b, "vendor=abc,other=1");
    s->flags = 0x101;
    s->status_code = STATUS_ERROR;
    s->status_message = S(b, "boom");
    s->attrs.dropped = 7;
    attr_str(b, s, "http.route", "/cart");
    attr_str(b, s, "guid:x-request-id", "7f3c2a9e-1b4d-4e8f-a6c1-0d2e5f7a9b3c"); /* packed */
    attr_str(b, s, "odd.hex", "0123456789abcdef0"); /* 17 digits: the last nibble pads */
    attr_int(b, s, "neg", -1234567890123LL);
    struct value *v = add_attr(b, s, "dbl");
    v->type = VALUE_DOUBLE;
    v->u.d = -0.125e-300;
    v = add_attr(b, s, "bytes");
    v->type = VALUE_BYTES;
    static const char raw[] = {'a', 0, 'b', 0, (char)0xff};
    v->u.str.ptr = arena_strndup(b->arena, raw, sizeof raw);
    v->u.str.len = sizeof raw;
    v = add_attr(b, s, "empty");
    v->type = VALUE_EMPTY;
    v = add_attr(b, s, "flag");
    v->type = VALUE_BOOL;
    v->u.b = false;
    /* array [ "x", 5, [ true, {k: 1.5} ] ] */
    v = add_attr(b, s, "arr");
    v->type = VALUE_ARRAY;
    v->u.array.n = 3;
    v->u.array.items = arena_alloc(b->arena, 3 * sizeof(struct value));
    v->u.array.items[0].type = VALUE_STRING;
    v->u.array.items[0].u.str = S(b, "x");
    v->u.array.items[1].type = VALUE_INT;
    v->u.array.items[1].u.i = 5;
    struct value *inner = &v->u.array.items[2];
    inner->type = VALUE_ARRAY;
    inner->u.array.n = 2;
    inner->u.array.items = arena_alloc(b->arena, 2 * sizeof(struct value));
    inner->u.array.items[0].type = VALUE_BOOL;
    inner->u.array.items[0].u.b = true;
    struct value *kv = &inner->u.array.items[1];
    kv->type = VALUE_KVLIST;
    kv->u.kvlist.n = 1;
    kv->u.kvlist.items = arena_alloc(b->arena, sizeof(struct attr));
    kv->u.kvlist.items[0].key = S(b, "k");
    kv->u.kvlist.items[0].value.type = VALUE_DOUBLE;
    kv->u.kvlist.items[0].value.u.d = 1.5;
    v = add_attr(b, s, "emptystr");
    v->type = VALUE_STRING;
    v->u.str = S(b, "");

    s->n_events = 2;
    s->dropped_events = 4;
    s->events = arena_alloc(b->arena, 2 * sizeof *s->events);
    s->events[0].time_unix_nano = s->start_unix_nano + 10;
    s->events[0].name = S(b, "exception");
    s->events[0].attrs.items = arena_alloc(b->arena, sizeof(struct attr));
    s->events[0].attrs.items[0].key = S(b, "exception.message");
    s->events[0].attrs.items[0].value.type = VALUE_STRING;
    s->events[0].attrs.items[0].value.u.str = S(b, "bad\nthing");
    s->events[0].attrs.n = 1;
    s->events[0].attrs.dropped = 2;
    s->events[1].time_unix_nano = s->start_unix_nano - 5; /* before the span: a negative delta */

    s->n_links = 1;
    s->dropped_links = 9;
    s->links = arena_alloc(b->arena, sizeof *s->links);
    make_id(s->links[0].trace_id, 16, 0xfeed, 0xbeef);
    make_id(s->links[0].span_id, 8, 0xcafe, 0);
    s->links[0].trace_state = S(b, "k=v");
    s->links[0].flags = 0x301;
    s->links[0].attrs.items = arena_alloc(b->arena, sizeof(struct attr));
    s->links[0].attrs.items[0].key = S(b, "link.kind");
    s->links[0].attrs.items[0].value.type = VALUE_INT;
    s->links[0].attrs.items[0].value.u.i = INT64_MIN;
    s->links[0].attrs.n = 1;

    /* A second span without resource or scope, end before start, no parent. */
    struct span *s2 = add_span(b, NULL, 2, 5, 0, "", SPAN_KIND_UNSPECIFIED, T0, 0);
    s2->end_unix_nano = s2->start_unix_nano - 1;
    s2->name.ptr = NULL; /* absent */
    s2->name.len = 0;
    /* A third sharing the first one's resource and scope. */
    struct span *s3 = add_span(b, res, 1, 6, 0x1122334455667788ULL, "child", SPAN_KIND_CLIENT,
                               T0 + 1, UINT32_MAX);
    s3->scope = sc;
    return b;
}

static void encode_batch(struct span_batch *b, struct buf *out)
{
    const struct span **ptrs = malloc(b->n_spans * sizeof *ptrs);
    for (uint32_t i = 0; i < b->n_spans; i++) ptrs[i] = &b->spans[i];
    assert_int_equal(codec_encode_chunk(out, ptrs, b->n_spans), 0);
    free(ptrs);
}

static void test_codec_roundtrip(void **state)
{
    (void)state;
    struct span_batch *b = rich_batch();
    struct buf enc = {0};
    encode_batch(b, &enc);
    struct span_batch *d = span_batch_create();
    assert_int_equal(codec_decode_chunk(enc.p, enc.len, d), 0);
    assert_int_equal(d->n_spans, b->n_spans);
    for (uint32_t i = 0; i < b->n_spans; i++) assert_span(&b->spans[i], &d->spans[i]);
    /* Shared resource and scope stay shared. */
    assert_ptr_equal(d->spans[0].resource, d->spans[2].resource);
    assert_ptr_equal(d->spans[0].scope, d->spans[2].scope);
    assert_string_equal(span_service_name(&d->spans[0]), "frontend");
    span_batch_destroy(d);
    span_batch_destroy(b);
    buf_free(&enc);
}

/* Version 2 writes a trace id once per run of spans and a parent in the chunk as an index: the
 * four spans above take 3 trace ids and 2 parent ids fewer than version 1's 4 and 3. A version
 * 1 chunk (as stored before) still decodes. */
static void test_codec_versions(void **state)
{
    (void)state;
    struct span_batch *b = span_batch_create();
    /* One trace: a chain of four spans, the last starting first (a negative start delta). */
    for (uint64_t i = 1; i <= 4; i++)
        add_span(b, NULL, 9, i, i - 1, "op", SPAN_KIND_SERVER, i < 4 ? T0 + (int64_t)i : T0 - 5,
                 1);
    struct span_batch *apart = span_batch_create(); /* the same, in four traces */
    for (uint64_t i = 1; i <= 4; i++)
        add_span(apart, NULL, 9 + i, i, i - 1, "op", SPAN_KIND_SERVER,
                 i < 4 ? T0 + (int64_t)i : T0 - 5, 1);
    struct buf enc = {0}, enc_apart = {0};
    encode_batch(b, &enc);
    encode_batch(apart, &enc_apart);
    assert_int_equal(enc_apart.len - enc.len, 3 * 16 + 3 * (8 - 1));
    span_batch_destroy(apart);
    buf_free(&enc_apart);
    struct span_batch *d = span_batch_create();
    assert_int_equal(codec_decode_chunk(enc.p, enc.len, d), 0);
    assert_int_equal(d->n_spans, 4);
    for (uint32_t i = 0; i < 4; i++) assert_span(&b->spans[i], &d->spans[i]);
    span_batch_destroy(d);

    static const uint8_t v1[] = {
        1, 0, 0, 1,                                     /* version 1, no resources/scopes, 1 span */
        0, 0,                                           /* resource, scope */
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, /* trace id */
        0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x10, 0x11,       /* span id */
        1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 1,    /* has parent, parent id */
        0, 0, 2, 'x', 2,                                /* no trace state, flags, "x", SERVER */
        0xe8, 0x07, 20,                                 /* start 1000 ns absolute, duration +10 */
        0, 0, 0, 0, 0, 0, 0, 0,                         /* attrs, events, links, status, msg */
    };
    d = span_batch_create();
    assert_int_equal(codec_decode_chunk(v1, sizeof v1, d), 0);
    assert_int_equal(d->n_spans, 1);
    assert_int_equal(d->spans[0].trace_id[15], 16);
    assert_int_equal(d->spans[0].parent_span_id[0], 0xaa);
    assert_true(d->spans[0].has_parent);
    assert_int_equal(d->spans[0].start_unix_nano, 1000);
    assert_int_equal(d->spans[0].end_unix_nano, 1010);
    assert_string_equal(d->spans[0].name.ptr, "x");
    span_batch_destroy(d);

    /* Version 2 refusals: the first span "same trace as the previous", a parent index past the
     * chunk's start, unknown ids bits. */
    uint8_t bad[sizeof v1];
    memcpy(bad, v1, sizeof v1);
    bad[0] = 2;
    bad[6] = 2; /* IDS_SAME_TRACE on span 0 */
    d = span_batch_create();
    assert_int_equal(codec_decode_chunk(bad, sizeof bad, d), -EINVAL);
    bad[6] = 1 | 4; /* a parent index on span 0 */
    assert_int_equal(codec_decode_chunk(bad, sizeof bad, d), -EINVAL);
    bad[6] = 8;
    assert_int_equal(codec_decode_chunk(bad, sizeof bad, d), -EINVAL);
    bad[0] = 4; /* unknown version */
    assert_int_equal(codec_decode_chunk(bad, sizeof bad, d), -EINVAL);
    assert_int_equal(d->n_spans, 0);
    span_batch_destroy(d);
    span_batch_destroy(b);
    buf_free(&enc);
}

/* Version 3 packs string values of lowercase hex digit runs joined by '-' two digits per byte;
 * every other string stays text, and every string reads back exactly. */
static void test_codec_hex_strings(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool packed;
    } cases[] = {
        {"7f3c2a9e-1b4d-4e8f-a6c1-0d2e5f7a9b3c", true},  /* a UUID */
        {"7F3C2A9E-1B4D-4E8F-A6C1-0D2E5F7A9B3C", false}, /* upper case */
        {"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", true},
        {"0123456789abcdef", true},        /* HEX_MIN */
        {"0123456789abcde", false},        /* one digit short */
        {"0123456789abcdef0", true},       /* odd */
        {"-0123456789abcdef", false},      /* leading '-' */
        {"0123456789abcdef-", false},      /* trailing '-' */
        {"01234567--89abcdef", false},     /* an empty run */
        {"0-1-2-3-4-5-6-7-8", false},      /* 9 runs: more than HEX_MAX_RUNS */
        {"0-1-2-3-4-5-6-789abcdef", true}, /* 8 runs */
        {"0123456789abcdefg", false},
        {"", false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* The same span with the case's string and with a text string of the same length. */
        struct buf enc[2] = {{0}, {0}};
        struct span_batch *b[2];
        for (int k = 0; k < 2; k++) {
            b[k] = span_batch_create();
            struct span *sp = add_span(b[k], NULL, 1, 2, 0, "op", SPAN_KIND_SERVER, T0, 1);
            char text[64];
            snprintf(text, sizeof text, "%s", cases[c].s);
            if (k == 1)
                for (char *q = text; *q; q++)
                    *q = 'x';
            attr_str(b[k], sp, "id", text);
            struct value *v = add_attr(b[k], sp, "raw"); /* bytes are never packed */
            v->type = VALUE_BYTES;
            v->u.str = S(b[k], "0123456789abcdef0123");
            encode_batch(b[k], &enc[k]);
        }
        /* After the type byte, text takes v(len + 1) and the characters; packed, v(runs), a
         * v(length) per run and half a byte per digit. */
        size_t text_cost = 1 + strlen(cases[c].s), cost = text_cost;
        if (cases[c].packed) {
            size_t runs = 1, digits = 0;
            for (const char *q = cases[c].s; *q; q++)
                runs += *q == '-', digits += *q != '-';
            cost = 1 + runs + (digits + 1) / 2;
        }
        assert_int_equal(enc[1].len - enc[0].len, text_cost - cost);
        struct span_batch *d = span_batch_create();
        assert_int_equal(codec_decode_chunk(enc[0].p, enc[0].len, d), 0);
        assert_int_equal(d->n_spans, 1);
        assert_span(&b[0]->spans[0], &d->spans[0]);
        assert_int_equal(d->spans[0].attrs.items[0].value.type, VALUE_STRING);
        assert_int_equal(d->spans[0].attrs.items[1].value.type, VALUE_BYTES);
        span_batch_destroy(d);
        for (int k = 0; k < 2; k++) {
            span_batch_destroy(b[k]);
            buf_free(&enc[k]);
        }
    }

    /* Refused: an odd count's pad nibble not 0, no runs, a run of 0 digits, a packed string in a
     * version 2 chunk. */
    struct span_batch *b = span_batch_create();
    struct span *sp = add_span(b, NULL, 1, 2, 0, "op", SPAN_KIND_SERVER, T0, 1);
    attr_str(b, sp, "id", "0123456789abcdef0");
    struct buf enc = {0};
    encode_batch(b, &enc);
    /* The value is the span's last attribute: after it come 6 bytes (no events, none dropped, no
     * links, none dropped, status, no message); before them its 9 bytes of 17 digits. */
    size_t pad = enc.len - 6 - 1;
    assert_int_equal(enc.p[pad], 0x00); /* the 17th digit '0' and the pad nibble */
    struct span_batch *d = span_batch_create();
    enc.p[pad] = 0x01;
    assert_int_equal(codec_decode_chunk(enc.p, enc.len, d), -EINVAL);
    enc.p[pad] = 0x00;
    size_t runs = pad - 9 - 1; /* the run count, before one run length and 9 digit bytes */
    assert_int_equal(enc.p[runs - 1], 16); /* HEX_STRING */
    assert_int_equal(enc.p[runs], 1);
    assert_int_equal(enc.p[runs + 1], 17);
    enc.p[runs] = 0;
    assert_int_equal(codec_decode_chunk(enc.p, enc.len, d), -EINVAL);
    enc.p[runs] = 1;
    enc.p[runs + 1] = 0;
    assert_int_equal(codec_decode_chunk(enc.p, enc.len, d), -EINVAL);
    enc.p[runs + 1] = 17;
    enc.p[0] = 2;
    assert_int_equal(codec_decode_chunk(enc.p, enc.len, d), -EINVAL);
    enc.p[0] = 3;
    assert_int_equal(codec_decode_chunk(enc.p, enc.len, d), 0);
    assert_string_equal(d->spans[0].attrs.items[0].value.u.str.ptr, "0123456789abcdef0");
    span_batch_destroy(d);
    span_batch_destroy(b);
    buf_free(&enc);
}

static void test_codec_rejects_corrupt(void **state)
{
    (void)state;
    struct span_batch *b = rich_batch();
    struct buf enc = {0};
    encode_batch(b, &enc);
    struct span_batch *d = span_batch_create();
    /* Every truncation point fails cleanly and leaves the batch as it was. */
    for (size_t len = 0; len < enc.len; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size, so ASan sees any overread */
        memcpy(copy, enc.p, len);
        assert_int_equal(codec_decode_chunk(copy, len, d), -EINVAL);
        assert_int_equal(d->n_spans, 0);
        free(copy);
    }
    /* Trailing garbage. */
    uint8_t *longer = malloc(enc.len + 1);
    memcpy(longer, enc.p, enc.len);
    longer[enc.len] = 0;
    assert_int_equal(codec_decode_chunk(longer, enc.len + 1, d), -EINVAL);
    free(longer);
    /* Every byte flipped in several ways: decode may succeed or fail, never crash. */
    static const uint8_t flips[] = {0x01, 0x80, 0xff, 0x7f};
    uint8_t *copy = malloc(enc.len);
    for (size_t i = 0; i < enc.len; i++) {
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(copy, enc.p, enc.len);
            copy[i] ^= flips[f];
            struct span_batch *x = span_batch_create();
            int rc = codec_decode_chunk(copy, enc.len, x);
            assert_true(rc == 0 || rc == -EINVAL);
            if (rc) assert_int_equal(x->n_spans, 0);
            span_batch_destroy(x);
        }
    }
    free(copy);
    /* Huge counts and over-deep nesting. */
    static const uint8_t huge[] = {1, 0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(codec_decode_chunk(huge, sizeof huge, d), -EINVAL);
    uint8_t deep[3 + 2 * 200 + 8];
    size_t n = 0;
    deep[n++] = 1; /* version */
    deep[n++] = 1; /* one resource */
    deep[n++] = 1; /* one attribute */
    deep[n++] = 0; /* dropped */
    deep[n++] = 2; /* key "a" */
    deep[n++] = 'a';
    for (int i = 0; i < 200; i++) {
        deep[n++] = VALUE_ARRAY;
        deep[n++] = 1;
    }
    assert_int_equal(codec_decode_chunk(deep, n, d), -EINVAL);
    assert_int_equal(d->n_spans, 0);
    span_batch_destroy(d);
    span_batch_destroy(b);
    buf_free(&enc);
}

/* ----- store fixture ----------------------------------------------------------------------- */

struct fixture {
    char dir[64];
    char path[128];
    struct store *st;
};

/* Set by fixture_setup_compacted: put1 stores its batch as the ingest queue hands it to the
 * writer, prepared and compacted (store_compact_batch), so that a test run with it shows the
 * writer derives the same from a compacted batch. */
static bool compact_puts;

static int fixture_setup_with(void **state, int64_t retention_us, int64_t max_db_bytes)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/meshscope-storage-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/traces.db", f->dir);
    struct store_options o = {.path = f->path, .retention_us = retention_us,
                              .max_db_bytes = max_db_bytes, .read_pool = 2};
    f->st = store_open(&o);
    if (!f->st) return -1;
    *state = f;
    return 0;
}

static int fixture_setup(void **state)
{
    return fixture_setup_with(state, 0, 0);
}

static int fixture_setup_retention(void **state)
{
    return fixture_setup_with(state, 3600 * SEC, 0);
}

static int fixture_setup_compacted(void **state)
{
    compact_puts = true;
    return fixture_setup(state);
}

static int fixture_teardown(void **state)
{
    compact_puts = false;
    struct fixture *f = *state;
    store_close(f->st);
    char p[160];
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void put1(struct store *st, struct span_batch *b)
{
    if (compact_puts && b->n_spans && !b->n_logs) {
        assert_int_equal(store_prepare_batch(st, b), 0);
        size_t waits = store_queued_bytes(b);
        assert_int_equal(store_compact_batch(b), 0);
        assert_int_equal(b->cap_spans, 0); /* compacted: its spans in the arena */
        assert_int_equal(span_batch_bytes(b), waits);
    }
    assert_int_equal(store_put_batches(st, &b, 1), 0);
    span_batch_destroy(b);
}

/* ----- put / get --------------------------------------------------------------------------- */

/* rich_batch's traces read back field for field: trace 1 (orig's spans 0 and 2) and 2. */
static void assert_rich_stored(struct store *st, const struct span_batch *orig)
{
    uint8_t id[16];
    trace_id_of(id, 1);
    struct span_batch *got = NULL;
    assert_int_equal(store_get_trace(st, id, &got), 0);
    assert_int_equal(got->n_spans, 2);
    assert_span(&orig->spans[0], &got->spans[0]); /* sorted by start: span 0 first */
    assert_span(&orig->spans[2], &got->spans[1]);
    span_batch_destroy(got);

    trace_id_of(id, 2);
    assert_int_equal(store_get_trace(st, id, &got), 0);
    assert_int_equal(got->n_spans, 1);
    assert_span(&orig->spans[1], &got->spans[0]);
    span_batch_destroy(got);
}

static void test_put_get(void **state)
{
    struct fixture *f = *state;
    struct span_batch *b = rich_batch();
    struct span_batch *orig = rich_batch();
    assert_int_equal(store_put_batches(f->st, &b, 1), 0);
    span_batch_destroy(b);

    assert_rich_stored(f->st, orig);

    uint8_t id[16];
    struct span_batch *got = NULL;
    /* Same trace key (first 8 bytes), different id: not found. */
    trace_id_of(id, 1);
    id[15] ^= 1;
    assert_int_equal(store_get_trace(f->st, id, &got), -ENOENT);
    assert_null(got);
    trace_id_of(id, 99);
    assert_int_equal(store_get_trace(f->st, id, &got), -ENOENT);

    struct store_stats stats;
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.spans_stored, 3);
    assert_int_equal(stats.traces_chunks_stored, 2);
    assert_int_equal(stats.batches_committed, 1);
    assert_true(stats.db_bytes > 0);
    span_batch_destroy(orig);
}

static void test_split_trace(void **state)
{
    struct fixture *f = *state;
    struct span_batch *b1 = span_batch_create();
    const struct resource *r1 = make_resource(b1, "frontend", NULL);
    add_span(b1, r1, 7, 1, 0, "root", SPAN_KIND_SERVER, T0, 100 * MS);
    add_span(b1, r1, 7, 3, 1, "late", SPAN_KIND_INTERNAL, T0 + 50 * MS, MS);
    add_span(b1, r1, 8, 9, 0, "other", SPAN_KIND_SERVER, T0, MS);
    struct span_batch *b2 = span_batch_create();
    const struct resource *r2 = make_resource(b2, "cart", NULL);
    add_span(b2, r2, 7, 2, 1, "GetCart", SPAN_KIND_SERVER, T0 + 10 * MS, 20 * MS);
    put1(f->st, b1);
    put1(f->st, b2);

    uint8_t id[16];
    trace_id_of(id, 7);
    struct span_batch *got;
    assert_int_equal(store_get_trace(f->st, id, &got), 0);
    assert_int_equal(got->n_spans, 3);
    assert_string_equal(got->spans[0].name.ptr, "root");
    assert_string_equal(got->spans[1].name.ptr, "GetCart");
    assert_string_equal(got->spans[2].name.ptr, "late");
    assert_string_equal(span_service_name(&got->spans[1]), "cart");
    span_batch_destroy(got);
}

/* ----- find -------------------------------------------------------------------------------- */

/* Five traces (see the table below for what each query must return):
 *  t1 frontend "GET /home" server T0, 100ms, http.route=/home; cart "GetCart" child, cart.items=3
 *  t2 frontend "GET /checkout" server T0+60s, 500ms, status code 500 (error);
 *     checkout "PlaceOrder" child, status ERROR "payment declined"
 *  t3 frontend "GET /home" server T0+120s, 5ms, http.route=/home, user.vip=true
 *  t4 cart "GetCart" server T0+180s, 1ms, resource env staging
 *  t5 frontend "GET /api" client T0+240s, 2s, ratio=0.5
 * frontend's resource has deployment.environment=prod. */
static void load_find_data(struct store *st)
{
    struct span_batch *b = span_batch_create();
    const struct resource *fe = make_resource(b, "frontend", "prod");
    const struct resource *cart = make_resource(b, "cart", "prod");
    const struct resource *cart_stg = make_resource(b, "cart", "staging");
    const struct resource *co = make_resource(b, "checkout", "prod");
    struct span *s = add_span(b, fe, 1, 11, 0, "GET /home", SPAN_KIND_SERVER, T0, 100 * MS);
    attr_str(b, s, "http.route", "/home");
    attr_int(b, s, "http.response.status_code", 200);
    s = add_span(b, cart, 1, 12, 11, "GetCart", SPAN_KIND_SERVER, T0 + 10 * MS, 20 * MS);
    attr_int(b, s, "cart.items", 3);
    s = add_span(b, fe, 2, 21, 0, "GET /checkout", SPAN_KIND_SERVER, T0 + 60 * SEC, 500 * MS);
    attr_int(b, s, "http.response.status_code", 500);
    s = add_span(b, co, 2, 22, 21, "PlaceOrder", SPAN_KIND_SERVER, T0 + 61 * SEC, 400 * MS);
    s->status_code = STATUS_ERROR;
    s->status_message = S(b, "payment declined");
    s = add_span(b, fe, 3, 31, 0, "GET /home", SPAN_KIND_SERVER, T0 + 120 * SEC, 5 * MS);
    attr_str(b, s, "http.route", "/home");
    struct value *v = add_attr(b, s, "user.vip");
    v->type = VALUE_BOOL;
    v->u.b = true;
    add_span(b, cart_stg, 4, 41, 0, "GetCart", SPAN_KIND_SERVER, T0 + 180 * SEC, MS);
    s = add_span(b, fe, 5, 51, 0, "GET /api", SPAN_KIND_CLIENT, T0 + 240 * SEC, 2 * SEC);
    v = add_attr(b, s, "ratio");
    v->type = VALUE_DOUBLE;
    v->u.d = 0.5;
    put1(st, b);
}

struct find_case {
    const char *name;
    struct trace_query q;
    struct tag_filter tags[2];
    size_t n_tags;
    int expect[6]; /* trace numbers, most recent first, 0-terminated */
};

static const struct find_case find_cases[] = {
    {"service", {.service = "frontend"}, {{0}}, 0, {5, 3, 2, 1}},
    {"operation", {.service = "frontend", .operation = "GET /home"}, {{0}}, 0, {3, 1}},
    {"window", {.service = "frontend", .start_us = T0 + 50 * SEC, .end_us = T0 + 130 * SEC},
     {{0}}, 0, {3, 2}},
    {"window excludes", {.service = "frontend", .start_us = T0 + 1, .end_us = T0 + 59 * SEC},
     {{0}}, 0, {0}},
    {"min duration", {.service = "frontend", .min_duration_us = 400 * MS}, {{0}}, 0, {5, 2}},
    {"max duration", {.service = "frontend", .max_duration_us = 50 * MS}, {{0}}, 0, {3}},
    {"duration range", {.service = "frontend", .min_duration_us = 50 * MS,
                        .max_duration_us = 600 * MS}, {{0}}, 0, {2, 1}},
    {"span attr", {.service = "frontend"}, {{"http.route", "/home"}}, 1, {3, 1}},
    {"bool attr", {.service = "frontend"}, {{"user.vip", "true"}}, 1, {3}},
    {"int attr", {.service = "cart"}, {{"cart.items", "3"}}, 1, {1}},
    {"double attr", {.service = "frontend"}, {{"ratio", "0.5"}}, 1, {5}},
    {"resource attr", {.service = "frontend"}, {{"deployment.environment", "prod"}}, 1,
     {5, 3, 2, 1}},
    {"resource attr 2", {.service = "cart"}, {{"deployment.environment", "staging"}}, 1, {4}},
    {"pseudo error", {.service = "frontend"}, {{"error", "true"}}, 1, {2}},
    {"pseudo status", {.service = "checkout"}, {{"otel.status_code", "ERROR"}}, 1, {2}},
    {"pseudo status msg", {.service = "checkout"},
     {{"otel.status_description", "payment declined"}}, 1, {2}},
    {"pseudo kind", {.service = "frontend"}, {{"span.kind", "client"}}, 1, {5}},
    {"two tags same span", {.service = "frontend"},
     {{"http.route", "/home"}, {"user.vip", "true"}}, 2, {3}},
    {"tag on another span", {.service = "frontend"}, {{"cart.items", "3"}}, 1, {0}},
    {"tag value differs", {.service = "frontend"}, {{"http.route", "/cart"}}, 1, {0}},
    {"kind filter", {.service = "frontend", .span_kind = "server"}, {{0}}, 0, {3, 2, 1}},
    {"errors only", {.service = "frontend", .errors_only = true}, {{0}}, 0, {2}},
    {"errors only checkout", {.service = "checkout", .errors_only = true}, {{0}}, 0, {2}},
    {"errors only none", {.service = "cart", .errors_only = true}, {{0}}, 0, {0}},
    {"errors only + op", {.service = "frontend", .operation = "GET /home", .errors_only = true},
     {{0}}, 0, {0}},
    {"unknown service", {.service = "nope"}, {{0}}, 0, {0}},
    {"unknown operation", {.service = "frontend", .operation = "nope"}, {{0}}, 0, {0}},
};

static void test_find_traces(void **state)
{
    struct fixture *f = *state;
    load_find_data(f->st);
    for (size_t c = 0; c < sizeof find_cases / sizeof *find_cases; c++) {
        const struct find_case *fc = &find_cases[c];
        struct trace_query q = fc->q;
        q.tags = fc->tags;
        q.n_tags = fc->n_tags;
        struct span_batch **out = NULL;
        size_t n = 0;
        int rc = store_find_traces(f->st, &q, &out, &n);
        size_t want = 0;
        while (want < 6 && fc->expect[want]) want++;
        if (rc != 0 || n != want) fail_msg("case \"%s\": rc %d, %zu traces, want %zu", fc->name,
                                           rc, n, want);
        for (size_t i = 0; i < n; i++) {
            uint8_t id[16];
            trace_id_of(id, (uint64_t)fc->expect[i]);
            if (memcmp(out[i]->spans[0].trace_id, id, 16) != 0)
                fail_msg("case \"%s\": result %zu is not trace %d", fc->name, i, fc->expect[i]);
            /* Each result holds the whole trace. */
            if (fc->expect[i] == 1 || fc->expect[i] == 2) assert_int_equal(out[i]->n_spans, 2);
        }
        store_free_traces(out, n);
    }
}

static void test_find_limit_order(void **state)
{
    struct fixture *f = *state;
    struct span_batch *b = span_batch_create();
    const struct resource *r = make_resource(b, "svc", NULL);
    /* Inserted in scrambled order so storage order does not give the answer. */
    for (int i = 0; i < 30; i++) {
        int k = (i * 7) % 30;
        add_span(b, r, 100 + (uint64_t)k, 1, 0, "op", SPAN_KIND_SERVER, T0 + k * SEC, MS);
    }
    put1(f->st, b);
    struct trace_query q = {.service = "svc", .limit = 10};
    struct span_batch **out;
    size_t n;
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++) {
        uint8_t id[16];
        trace_id_of(id, 100 + 29 - i);
        assert_memory_equal(out[i]->spans[0].trace_id, id, 16);
    }
    store_free_traces(out, n);
    q.limit = 0; /* default 100 */
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, 30);
    store_free_traces(out, n);
}

/* The best `limit` traces by their latest matching start, newest first (ties: trace id), when a
 * trace's index row starts well before its matching span (two spans of one operation in one
 * write call share a row that starts at the first): a search that stopped at the limit-th row,
 * or at a bar that sinks with every trace found, would return the wrong traces or read them all. */
struct topk_want {
    int64_t start;
    int k;
};

static int topk_cmp(const void *pa, const void *pb)
{
    const struct topk_want *a = pa, *b = pb;
    if (a->start != b->start) return a->start > b->start ? -1 : 1;
    return a->k - b->k;
}

static void test_find_top_k(void **state)
{
    struct fixture *f = *state;
    enum { N = 120 };
    struct span_batch *b = span_batch_create();
    const struct resource *r = make_resource(b, "svc", NULL);
    struct topk_want all[N], errs[N];
    size_t n_errs = 0;
    for (int i = 0; i < N; i++) {
        int k = (i * 47) % N; /* scrambled insertion order */
        int64_t a = T0 + k * 2 * SEC, later = a + ((k * 37) % 59) * SEC;
        struct span *sa = add_span(b, r, 1000 + (uint64_t)k, 1, 0, "op", SPAN_KIND_SERVER, a, MS);
        struct span *sb =
            add_span(b, r, 1000 + (uint64_t)k, 2, 1, "op", SPAN_KIND_SERVER, later, MS);
        if (k % 4 == 0) sb->status_code = STATUS_ERROR;
        if (k % 4 == 1) sa->status_code = STATUS_ERROR;
        all[k] = (struct topk_want){later, k};
    }
    for (int k = 0; k < N; k++)
        if (k % 4 < 2)
            errs[n_errs++] =
                (struct topk_want){k % 4 ? all[k].start - ((k * 37) % 59) * SEC : all[k].start, k};
    qsort(all, N, sizeof *all, topk_cmp);
    qsort(errs, n_errs, sizeof *errs, topk_cmp);
    put1(f->st, b);
    static const unsigned limits[] = {1, 5, 17, 29, 200};
    for (size_t c = 0; c < 2 * sizeof limits / sizeof *limits; c++) {
        bool errors = c % 2;
        struct trace_query q = {.service = "svc", .limit = limits[c / 2], .errors_only = errors};
        const struct topk_want *want = errors ? errs : all;
        size_t n_want = errors ? n_errs : N;
        if (n_want > q.limit) n_want = q.limit;
        struct span_batch **out;
        size_t n;
        assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
        if (n != n_want)
            fail_msg("limit %u errors %d: %zu traces, want %zu", q.limit, errors, n, n_want);
        for (size_t i = 0; i < n; i++) {
            uint8_t id[16];
            trace_id_of(id, 1000 + (uint64_t)want[i].k);
            if (memcmp(out[i]->spans[0].trace_id, id, 16) != 0)
                fail_msg("limit %u errors %d: result %zu is not trace %d", q.limit, errors, i,
                         want[i].k);
            assert_int_equal(out[i]->n_spans, 2);
        }
        store_free_traces(out, n);
    }
}

/* ----- dictionaries ------------------------------------------------------------------------ */

static void test_list_services_operations(void **state)
{
    struct fixture *f = *state;
    load_find_data(f->st);
    char **svcs;
    assert_int_equal(store_list_services(f->st, &svcs), 0);
    static const char *const want[] = {"cart", "checkout", "frontend", NULL};
    for (int i = 0; want[i]; i++) {
        assert_non_null(svcs[i]);
        assert_string_equal(svcs[i], want[i]);
    }
    assert_null(svcs[3]);
    store_free_strings(svcs);

    struct operation_info *ops;
    size_t n;
    assert_int_equal(store_list_operations(f->st, "frontend", SPAN_KIND_UNSPECIFIED, &ops, &n),
                     0);
    assert_int_equal(n, 3);
    assert_string_equal(ops[0].name, "GET /api");
    assert_int_equal(ops[0].kind, SPAN_KIND_CLIENT);
    assert_string_equal(ops[1].name, "GET /checkout");
    assert_string_equal(ops[2].name, "GET /home");
    assert_int_equal(ops[2].kind, SPAN_KIND_SERVER);
    store_free_operations(ops, n);
    assert_int_equal(store_list_operations(f->st, "frontend", SPAN_KIND_SERVER, &ops, &n), 0);
    assert_int_equal(n, 2);
    store_free_operations(ops, n);
    assert_int_equal(store_list_operations(f->st, "nope", SPAN_KIND_UNSPECIFIED, &ops, &n), 0);
    assert_int_equal(n, 0);
    store_free_operations(ops, n);
}

/* ----- dependencies ------------------------------------------------------------------------ */

static const struct dependency_link *find_dep(const struct dependency_link *d, size_t n,
                                              const char *parent, const char *child)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(d[i].parent, parent) == 0 && strcmp(d[i].child, child) == 0) return &d[i];
    return NULL;
}

static void test_dependencies(void **state)
{
    struct fixture *f = *state;
    /* Same call: frontend server -> frontend client -> cart server -> cart internal. */
    struct span_batch *b = span_batch_create();
    const struct resource *fe = make_resource(b, "frontend", NULL);
    const struct resource *cart = make_resource(b, "cart", NULL);
    add_span(b, fe, 1, 1, 0, "GET /", SPAN_KIND_SERVER, T0, 10 * MS);
    add_span(b, fe, 1, 2, 1, "GET cart", SPAN_KIND_CLIENT, T0 + MS, 5 * MS);
    add_span(b, cart, 1, 3, 2, "GetCart", SPAN_KIND_SERVER, T0 + 2 * MS, 3 * MS);
    add_span(b, cart, 1, 4, 3, "redis", SPAN_KIND_INTERNAL, T0 + 3 * MS, MS);
    put1(f->st, b);

    /* Across calls, client first: frontend client, later payment server (failing). */
    b = span_batch_create();
    add_span(b, make_resource(b, "frontend", NULL), 2, 1, 0, "pay", SPAN_KIND_CLIENT, T0, 5 * MS);
    put1(f->st, b);
    b = span_batch_create();
    struct span *s = add_span(b, make_resource(b, "payment", NULL), 2, 2, 1, "Charge",
                              SPAN_KIND_SERVER, T0 + MS, 3 * MS);
    s->status_code = STATUS_ERROR;
    put1(f->st, b);

    /* Across calls, server first: checkout server, later frontend client. */
    b = span_batch_create();
    add_span(b, make_resource(b, "checkout", NULL), 3, 2, 1, "Place", SPAN_KIND_SERVER, T0 + MS,
             3 * MS);
    put1(f->st, b);
    b = span_batch_create();
    add_span(b, make_resource(b, "frontend", NULL), 3, 1, 0, "place", SPAN_KIND_CLIENT, T0,
             5 * MS);
    put1(f->st, b);

    /* A server whose client never arrives counts nothing. */
    b = span_batch_create();
    add_span(b, make_resource(b, "orphan", NULL), 4, 2, 1, "x", SPAN_KIND_SERVER, T0, MS);
    put1(f->st, b);

    struct dependency_link *deps;
    size_t n;
    assert_int_equal(store_dependencies(f->st, T0 + 3600 * SEC, 7200 * SEC, &deps, &n), 0);
    assert_int_equal(n, 3);
    const struct dependency_link *d = find_dep(deps, n, "frontend", "cart");
    assert_non_null(d);
    assert_int_equal(d->call_count, 1);
    assert_int_equal(d->error_count, 0);
    d = find_dep(deps, n, "frontend", "payment");
    assert_non_null(d);
    assert_int_equal(d->call_count, 1);
    assert_int_equal(d->error_count, 1);
    d = find_dep(deps, n, "frontend", "checkout");
    assert_non_null(d);
    assert_int_equal(d->call_count, 1);
    store_free_dependencies(deps, n);

    /* Outside the window: nothing. */
    assert_int_equal(store_dependencies(f->st, T0 - 3600 * SEC, 60 * SEC, &deps, &n), 0);
    assert_int_equal(n, 0);
    store_free_dependencies(deps, n);
}

/* ----- retention --------------------------------------------------------------------------- */

static void test_retention(void **state)
{
    struct fixture *f = *state; /* retention 1 h */
    const int64_t r0 = T0 + 7 * 86400 * SEC;
    store_test_set_clock(f->st, r0);
    for (int k = 0; k < 5; k++) { /* old: 5 calls of 2 traces x 2 spans */
        struct span_batch *b = span_batch_create();
        const struct resource *r = make_resource(b, "old", NULL);
        for (int t = 0; t < 2; t++) {
            uint64_t tr = 200 + (uint64_t)(k * 2 + t);
            add_span(b, r, tr, 1, 0, "a", SPAN_KIND_SERVER, T0, MS);
            add_span(b, r, tr, 2, 1, "b", SPAN_KIND_CLIENT, T0, MS);
        }
        put1(f->st, b);
    }
    store_test_set_clock(f->st, r0 + 2 * 3600 * SEC);
    struct span_batch *b = span_batch_create();
    add_span(b, make_resource(b, "new", NULL), 300, 1, 0, "a", SPAN_KIND_SERVER, T0, MS);
    put1(f->st, b);

    uint64_t deleted, total = 0;
    int steps = 0;
    do {
        assert_int_equal(store_retention_step(f->st, r0 + 2 * 3600 * SEC + 60 * SEC, 3, &deleted),
                         0);
        total += deleted;
        assert_true(deleted <= 3 * 2); /* at most 3 chunk rows of 2 spans */
        steps++;
    } while (deleted > 0 && steps < 100);
    assert_int_equal(total, 20);
    assert_true(steps > 2); /* small transactions */

    uint8_t id[16];
    struct span_batch *got;
    for (int t = 200; t < 210; t++) {
        trace_id_of(id, (uint64_t)t);
        assert_int_equal(store_get_trace(f->st, id, &got), -ENOENT);
    }
    trace_id_of(id, 300);
    assert_int_equal(store_get_trace(f->st, id, &got), 0);
    span_batch_destroy(got);
    struct trace_query q = {.service = "old"};
    struct span_batch **out;
    size_t n;
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, 0);
    store_free_traces(out, n);
    q.service = "new";
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, 1);
    store_free_traces(out, n);

    /* Nothing more is old. */
    assert_int_equal(store_retention_step(f->st, r0 + 2 * 3600 * SEC + 60 * SEC, 3, &deleted), 0);
    assert_int_equal(deleted, 0);
    struct store_stats stats;
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.spans_deleted, 20);
}

/* ----- concurrency ------------------------------------------------------------------------- */

struct reader_arg {
    struct store *st;
    atomic_bool stop;
    atomic_int errors;
    atomic_int loops;
};

static void *reader_main(void *p)
{
    struct reader_arg *a = p;
    while (!atomic_load(&a->stop) || atomic_load(&a->loops) < 5) {
        struct trace_query q = {.service = "load", .limit = 20};
        struct span_batch **out;
        size_t n;
        if (store_find_traces(a->st, &q, &out, &n) != 0) atomic_fetch_add(&a->errors, 1);
        for (size_t i = 0; i < n; i++) {
            struct span_batch *t;
            if (store_get_trace(a->st, out[i]->spans[0].trace_id, &t) != 0)
                atomic_fetch_add(&a->errors, 1);
            span_batch_destroy(t);
        }
        store_free_traces(out, n);
        char **svcs;
        if (store_list_services(a->st, &svcs) != 0) atomic_fetch_add(&a->errors, 1);
        store_free_strings(svcs);
        atomic_fetch_add(&a->loops, 1);
    }
    return NULL;
}

static void test_concurrent_reads(void **state)
{
    struct fixture *f = *state;
    struct reader_arg a = {.st = f->st};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&th[i], NULL, reader_main, &a), 0);
    for (int k = 0; k < 40; k++) {
        struct span_batch *b = span_batch_create();
        const struct resource *r = make_resource(b, "load", NULL);
        for (int i = 0; i < 100; i++) {
            uint64_t tr = 1000 + (uint64_t)(k * 10 + i / 10);
            struct span *s = add_span(b, r, tr, (uint64_t)i + 1, i % 10 ? (uint64_t)i : 0, "op",
                                      SPAN_KIND_SERVER, T0 + k * SEC + i, MS);
            attr_str(b, s, "k", "v");
        }
        put1(f->st, b);
    }
    atomic_store(&a.stop, true);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&a.errors), 0);
    struct trace_query q = {.service = "load", .limit = 1000};
    struct span_batch **out;
    size_t n;
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, 400);
    store_free_traces(out, n);
}

/* ----- disk full --------------------------------------------------------------------------- */

static struct span_batch *big_batch(const char *service, uint64_t first_trace)
{
    struct span_batch *b = span_batch_create();
    const struct resource *r = make_resource(b, service, NULL);
    char name[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "op-%d", i % 50);
        struct span *s = add_span(b, r, first_trace + (uint64_t)i, 1, 0, name, SPAN_KIND_SERVER,
                                  T0 + i, MS);
        char v[64];
        snprintf(v, sizeof v, "value-%d-%d", i, i * 31337);
        attr_str(b, s, "some.attribute", v);
    }
    return b;
}

static void test_enospc_rolls_back(void **state)
{
    struct fixture *f = *state;
    struct span_batch *b = span_batch_create();
    add_span(b, make_resource(b, "small", NULL), 1, 1, 0, "a", SPAN_KIND_SERVER, T0, MS);
    put1(f->st, b);
    struct store_stats before;
    store_get_stats(f->st, &before);

    /* Cap the file at its current size (SQLite raises a lower cap to the current page count). */
    assert_int_equal(store_test_set_max_pages(f->st, 1), 0);
    b = big_batch("big", 5000);
    assert_int_equal(store_put_batches(f->st, &b, 1), -ENOSPC);

    struct store_stats after;
    store_get_stats(f->st, &after);
    assert_int_equal(after.spans_stored, before.spans_stored);
    assert_int_equal(after.batches_committed, before.batches_committed);
    char **svcs;
    assert_int_equal(store_list_services(f->st, &svcs), 0);
    assert_string_equal(svcs[0], "small");
    assert_null(svcs[1]);
    store_free_strings(svcs);
    uint8_t id[16];
    struct span_batch *got;
    trace_id_of(id, 5000);
    assert_int_equal(store_get_trace(f->st, id, &got), -ENOENT);

    /* With room again the same batch goes in whole (the writer's caches were reset). */
    assert_int_equal(store_test_set_max_pages(f->st, 1u << 30), 0);
    assert_int_equal(store_put_batches(f->st, &b, 1), 0);
    span_batch_destroy(b);
    trace_id_of(id, 7999);
    assert_int_equal(store_get_trace(f->st, id, &got), 0);
    span_batch_destroy(got);
    struct operation_info *ops;
    size_t n;
    assert_int_equal(store_list_operations(f->st, "big", SPAN_KIND_UNSPECIFIED, &ops, &n), 0);
    assert_int_equal(n, 50);
    store_free_operations(ops, n);
}

/* 20 batches of 64 one-span traces (5000..6279): enough for the writer to train a dictionary
 * at a 64 KiB threshold; returns once it is in use. prepared: each batch goes through
 * store_prepare_batch first (the samples are then the preparer's). */
static void train_dictionary_with(struct store *st, bool prepared)
{
    store_test_set_dict_threshold(st, 64 * 1024);
    for (int k = 0; k < 20; k++) {
        struct span_batch *b = span_batch_create();
        const struct resource *r = make_resource(b, "dict", "prod");
        for (int i = 0; i < 64; i++) {
            struct span *s = add_span(b, r, 5000 + (uint64_t)(k * 64 + i), 1, 0, "GET /item",
                                      SPAN_KIND_SERVER, T0 + k * SEC + i, MS);
            char v[48];
            snprintf(v, sizeof v, "req-%d-%d", k, i * 7919);
            attr_str(b, s, "request.id", v);
            attr_str(b, s, "http.route", "/item/{id}");
            attr_int(b, s, "http.response.status_code", 200);
        }
        if (prepared) {
            assert_int_equal(store_prepare_batch(st, b), 0);
            assert_non_null(b->prepared);
        }
        put1(st, b);
    }
    store_test_wait_dicts(st);
}

static void train_dictionary(struct store *st)
{
    train_dictionary_with(st, false);
}

/* Once enough chunks were sampled the writer trains a zstd dictionary; chunks from before and
 * after it read back, also from a reopened store (which loads the dictionary). */
static void test_dictionary(void **state)
{
    struct fixture *f = *state;
    train_dictionary(f->st);
    for (int pass = 0; pass < 2; pass++) {
        for (int t = 0; t < 20 * 64; t += 37) {
            uint8_t id[16];
            struct span_batch *got;
            trace_id_of(id, 5000 + (uint64_t)t);
            assert_int_equal(store_get_trace(f->st, id, &got), 0);
            assert_int_equal(got->n_spans, 1);
            assert_int_equal(got->spans[0].attrs.n, 3);
            span_batch_destroy(got);
        }
        store_close(f->st);
        struct store_options o = {.path = f->path};
        f->st = store_open(&o);
        assert_non_null(f->st);
    }
    /* The dictionary exists (written in its own committed transaction). */
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM dicts", -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 1);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* Reopening an existing database keeps its data and keeps ids growing. */
static void test_reopen(void **state)
{
    struct fixture *f = *state;
    load_find_data(f->st);
    store_close(f->st);
    struct store_options o = {.path = f->path};
    f->st = store_open(&o);
    assert_non_null(f->st);
    struct trace_query q = {.service = "frontend"};
    struct span_batch **out;
    size_t n;
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, 4);
    store_free_traces(out, n);
    struct span_batch *b = span_batch_create();
    add_span(b, make_resource(b, "frontend", NULL), 9, 1, 0, "x", SPAN_KIND_SERVER, T0, MS);
    put1(f->st, b);
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, 5);
    store_free_traces(out, n);
}

/* ----- edge rollups and the service graph -------------------------------------------------- */

static struct resource *make_resource_ns(struct span_batch *b, const char *service,
                                         const char *ns)
{
    struct resource *r = make_resource(b, service, NULL);
    struct attr *items = arena_alloc(b->arena, 2 * sizeof *items);
    items[0] = r->attrs.items[0];
    items[1].key = S(b, "k8s.namespace.name");
    items[1].value.type = VALUE_STRING;
    items[1].value.u.str = S(b, ns);
    r->attrs.items = items;
    r->attrs.n = 2;
    return r;
}

static const struct graph_edge *graph_find_edge(const struct graph *g, const char *src,
                                                const char *dst)
{
    for (size_t i = 0; i < g->n_edges; i++)
        if (strcmp(g->nodes[g->edges[i].source].name, src) == 0 &&
            strcmp(g->nodes[g->edges[i].target].name, dst) == 0)
            return &g->edges[i];
    return NULL;
}

static const struct graph_node *graph_find_node(const struct graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
    return NULL;
}

/* The bucket bounds (ms) around a duration: an interpolated percentile of identical durations
 * lies between them. */
static void bucket_range_ms(int64_t dur_us, double *lo, double *hi)
{
    unsigned i = hist_bucket_of(dur_us);
    *lo = i ? (double)hist_bound_us[i - 1] / 1000.0 : 0;
    *hi = (double)hist_bound_us[i] / 1000.0;
}

/* frontend (root SERVER, 50 ms) -> cart: n client/server pairs in one batch, server durations
 * 1..n ms, every 10th failing; at span time t0. */
static void put_cart_calls(struct store *st, int64_t t0, int n, uint64_t trace0)
{
    struct span_batch *b = span_batch_create();
    const struct resource *fe = make_resource_ns(b, "frontend", "shop");
    const struct resource *cart = make_resource_ns(b, "cart", "shop");
    for (int i = 1; i <= n; i++) {
        uint64_t tr = trace0 + (uint64_t)i;
        add_span(b, fe, tr, 1, 0, "GET /", SPAN_KIND_SERVER, t0, 50 * MS);
        add_span(b, fe, tr, 2, 1, "GET cart", SPAN_KIND_CLIENT, t0 + MS, (i + 2) * MS);
        struct span *s =
            add_span(b, cart, tr, 3, 2, "GetCart", SPAN_KIND_SERVER, t0 + MS, i * MS);
        if (i % 10 == 0) attr_int(b, s, "http.response.status_code", 503);
    }
    put1(st, b);
}

static void test_graph_percentiles(void **state)
{
    struct fixture *f = *state;
    store_test_set_clock(f->st, T0 + 10 * SEC);
    put_cart_calls(f->st, T0, 100, 1000);
    struct graph *g;
    assert_int_equal(store_graph(f->st, T0 - 20 * SEC, T0 + 40 * SEC, NULL, &g), 0);
    assert_int_equal(g->n_edges, 2);
    assert_int_equal(g->n_nodes, 3);
    assert_int_equal(g->nodes[0].kind, GRAPH_NODE_USER); /* user first */
    const struct graph_edge *e = graph_find_edge(g, "frontend", "cart");
    assert_non_null(e);
    assert_int_equal(e->red.requests, 100);
    assert_int_equal(e->red.errors, 10);
    assert_true(e->red.error_rate > 0.1 - 1e-9 && e->red.error_rate < 0.1 + 1e-9);
    assert_true(e->red.rate > 100.0 / 60.0 - 1e-9 && e->red.rate < 100.0 / 60.0 + 1e-9);
    assert_string_equal(e->connection_type, "");
    /* Server latencies 1..100 ms: p50 ~ 50, p95 ~ 95, p99 ~ 99, each within its bucket. */
    double lo, hi;
    bucket_range_ms(50 * MS, &lo, &hi);
    assert_true(e->red.p50_ms >= lo && e->red.p50_ms <= hi);
    bucket_range_ms(95 * MS, &lo, &hi);
    assert_true(e->red.p95_ms >= lo && e->red.p95_ms <= hi);
    bucket_range_ms(99 * MS, &lo, &hi);
    assert_true(e->red.p99_ms >= lo && e->red.p99_ms <= hi);
    e = graph_find_edge(g, "user", "frontend");
    assert_non_null(e);
    assert_int_equal(e->red.requests, 100);
    bucket_range_ms(50 * MS, &lo, &hi);
    assert_true(e->red.p99_ms >= lo && e->red.p99_ms <= hi);
    const struct graph_node *n = graph_find_node(g, "cart");
    assert_non_null(n);
    assert_int_equal(n->kind, GRAPH_NODE_SERVICE);
    assert_string_equal(n->namespace, "shop");
    assert_int_equal(n->inbound.requests, 100);
    assert_int_equal(n->inbound.errors, 10);
    n = graph_find_node(g, "user");
    assert_int_equal(n->inbound.requests, 0);
    assert_true(isnan(n->inbound.p50_ms));
    store_free_graph(g);

    /* 10 s buckets: a window of one later bucket sees nothing; the namespace filter. */
    assert_int_equal(store_graph(f->st, T0 + 20 * SEC, T0 + 29 * SEC, NULL, &g), 0);
    assert_int_equal(g->n_edges, 0);
    store_free_graph(g);
    assert_int_equal(store_graph(f->st, T0, T0 + SEC, "other", &g), 0);
    assert_int_equal(g->n_edges, 0);
    assert_int_equal(g->n_nodes, 0);
    store_free_graph(g);
    assert_int_equal(store_graph(f->st, T0, T0 + SEC, "shop", &g), 0);
    assert_int_equal(g->n_edges, 2);
    store_free_graph(g);
    assert_int_equal(store_graph(f->st, T0, T0, NULL, &g), -EINVAL);

    /* Dependencies agree and leave out the user node. */
    struct dependency_link *deps;
    size_t nd;
    assert_int_equal(store_dependencies(f->st, T0 + 40 * SEC, 60 * SEC, &deps, &nd), 0);
    assert_int_equal(nd, 1);
    assert_string_equal(deps[0].parent, "frontend");
    assert_int_equal(deps[0].call_count, 100);
    assert_int_equal(deps[0].error_count, 10);
    store_free_dependencies(deps, nd);

    /* The rollups survive a restart: same numbers. */
    store_close(f->st);
    struct store_options o = {.path = f->path};
    f->st = store_open(&o);
    assert_non_null(f->st);
    assert_int_equal(store_graph(f->st, T0 - 20 * SEC, T0 + 40 * SEC, NULL, &g), 0);
    e = graph_find_edge(g, "frontend", "cart");
    assert_non_null(e);
    assert_int_equal(e->red.requests, 100);
    assert_int_equal(e->red.errors, 10);
    bucket_range_ms(50 * MS, &lo, &hi);
    assert_true(e->red.p50_ms >= lo && e->red.p50_ms <= hi);
    store_free_graph(g);
}

/* Halves split over calls, virtual nodes and "user" edges from expired halves. */
static void test_graph_pending(void **state)
{
    struct fixture *f = *state;
    int64_t now = T0 + 5 * SEC;
    store_test_set_clock(f->st, now);
    /* A client to redis (never instrumented), a client whose server comes later, and a
     * server whose client never comes. */
    struct span_batch *b = span_batch_create();
    const struct resource *fe = make_resource(b, "frontend", NULL);
    struct span *s = add_span(b, fe, 1, 2, 1, "GET", SPAN_KIND_CLIENT, T0, 2 * MS);
    attr_str(b, s, "db.system", "redis");
    add_span(b, fe, 2, 2, 1, "pay", SPAN_KIND_CLIENT, T0, 9 * MS);
    s = add_span(b, fe, 3, 2, 1, "shop", SPAN_KIND_CLIENT, T0, 9 * MS);
    attr_str(b, s, "server.address", "shop.example.com:443");
    put1(f->st, b);
    b = span_batch_create();
    add_span(b, make_resource(b, "payment", NULL), 2, 3, 2, "Charge", SPAN_KIND_SERVER, T0,
             7 * MS);
    add_span(b, make_resource(b, "audit", NULL), 4, 3, 2, "Log", SPAN_KIND_SERVER, T0, 4 * MS);
    put1(f->st, b);
    /* Past the TTL, any write turns the expired halves into edges. */
    store_test_set_clock(f->st, now + 11 * SEC);
    b = span_batch_create();
    add_span(b, make_resource(b, "other", NULL), 9, 1, 0, "x", SPAN_KIND_INTERNAL, T0, MS);
    put1(f->st, b);

    struct graph *g;
    assert_int_equal(store_graph(f->st, T0 - 10 * SEC, T0 + 10 * SEC, NULL, &g), 0);
    const struct graph_edge *e = graph_find_edge(g, "frontend", "payment");
    assert_non_null(e);
    assert_int_equal(e->red.requests, 1);
    double lo, hi;
    bucket_range_ms(7 * MS, &lo, &hi); /* the server's latency */
    assert_true(e->red.p50_ms >= lo && e->red.p50_ms <= hi);
    e = graph_find_edge(g, "frontend", "redis");
    assert_non_null(e);
    assert_string_equal(e->connection_type, "database");
    assert_int_equal(g->nodes[e->target].kind, GRAPH_NODE_VIRTUAL);
    e = graph_find_edge(g, "frontend", "shop.example.com");
    assert_non_null(e);
    assert_string_equal(e->connection_type, "virtual_node");
    e = graph_find_edge(g, "user", "audit");
    assert_non_null(e);
    assert_int_equal(e->red.requests, 1);
    assert_int_equal(g->n_edges, 4);
    store_free_graph(g);
    /* Jaeger's dependencies have services only. */
    struct dependency_link *deps;
    size_t nd;
    assert_int_equal(store_dependencies(f->st, T0 + 10 * SEC, 20 * SEC, &deps, &nd), 0);
    assert_int_equal(nd, 1);
    store_free_dependencies(deps, nd);
}

static int64_t count_rows(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* 10 s rows older than 6 h become 1 min rows with the same sums and histogram. */
static void test_graph_downsample(void **state)
{
    struct fixture *f = *state; /* no retention */
    store_test_set_clock(f->st, T0);
    for (int k = 0; k < 3; k++) put_cart_calls(f->st, T0 + k * 10 * SEC, 20, 100 * (uint64_t)k);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup WHERE resolution = 10"),
                     6);
    struct graph *g;
    assert_int_equal(store_graph(f->st, T0, T0 + 60 * SEC, NULL, &g), 0);
    const struct graph_edge *e = graph_find_edge(g, "frontend", "cart");
    double p50 = e->red.p50_ms, p99 = e->red.p99_ms;
    assert_int_equal(e->red.requests, 60);
    store_free_graph(g);

    uint64_t deleted;
    assert_int_equal(store_retention_step(f->st, T0 + 5 * 3600 * SEC, 1000, &deleted), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup WHERE resolution = 10"),
                     6); /* not old enough */
    for (int i = 0; i < 4; i++) /* 2 rows per step */
        assert_int_equal(store_retention_step(f->st, T0 + 7 * 3600 * SEC, 2, &deleted), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup WHERE resolution = 10"),
                     0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup WHERE resolution = 60"),
                     2);
    assert_int_equal(store_graph(f->st, T0, T0 + 60 * SEC, NULL, &g), 0);
    e = graph_find_edge(g, "frontend", "cart");
    assert_int_equal(e->red.requests, 60);
    assert_int_equal(e->red.errors, 6);
    assert_true(e->red.p50_ms == p50 && e->red.p99_ms == p99);
    store_free_graph(g);
    /* A window inside the minute still sees the whole 1 min bucket (it overlaps). */
    assert_int_equal(store_graph(f->st, T0 + 15 * SEC, T0 + 16 * SEC, NULL, &g), 0);
    assert_int_equal(g->n_edges, 2);
    store_free_graph(g);
}

/* Summaries: windows read hour rows for whole hours, 10 min rows for whole 10 minutes, fine rows
 * for the rest; the sums are those of the fine rows, before and after downsampling. */
static int64_t cart_calls(struct store *st, int64_t start, int64_t end, double *p99)
{
    struct graph *g;
    assert_int_equal(store_graph(st, start, end, NULL, &g), 0);
    const struct graph_edge *e = graph_find_edge(g, "frontend", "cart");
    int64_t n = e ? (int64_t)e->red.requests : 0;
    if (p99) *p99 = e ? e->red.p99_ms : NAN;
    store_free_graph(g);
    return n;
}

static void test_graph_hours(void **state)
{
    struct fixture *f = *state; /* no retention */
    const int64_t H = 3600 * SEC;
    /* T0 is 800 s into its hour. Calls at T0, T0 + 1 h, T0 + 2 h, T0 + 2 h 50 min. */
    store_test_set_clock(f->st, T0);
    put_cart_calls(f->st, T0, 10, 0);
    put_cart_calls(f->st, T0 + H, 20, 100);
    put_cart_calls(f->st, T0 + 2 * H, 30, 200);
    put_cart_calls(f->st, T0 + 2 * H + 50 * 60 * SEC, 40, 300);
    put_cart_calls(f->st, T0 + 2 * H + 50 * 60 * SEC + 15 * SEC, 5, 400); /* same hour, 2nd call */
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup WHERE resolution = "
                                         "3600 AND client_id > 0"),
                     4);
    assert_int_equal(count_rows(f->path, "SELECT sum(calls) FROM edge_rollup WHERE resolution = "
                                         "3600 AND client_id > 0"),
                     105);
    /* 10 min summaries: T0's, T0 + 1 h's, T0 + 2 h's, and one for both calls at T0 + 2 h 50. */
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup WHERE resolution = "
                                         "600 AND client_id > 0"),
                     4);
    const int64_t hour0 = T0 - 800 * SEC;
    struct {
        int64_t start, end, calls, calls_1min;
    } w[] = {
        {T0 - 3 * H, T0 + 4 * H, 105, 105},          /* all whole hours */
        {T0 - 10 * SEC, T0 + 2 * H + SEC, 60, 60},   /* partial, whole, partial */
        {T0 + H + 5 * 60 * SEC, T0 + 3 * H, 75, 75}, /* T0 + 1 h left out */
        {hour0 + H, hour0 + 2 * H, 20, 20},          /* exactly one hour */
        {hour0 + H, hour0 + 2 * H - SEC, 20, 20},    /* no whole hour */
        /* One whole hour; the ends miss the calls by 10 s, inside their 1 min rows once
         * downsampled (a 1 min row overlapping the window counts whole). */
        {T0 + 10 * SEC, T0 + 2 * H - 10 * SEC, 20, 60},
        {T0 - 5 * 60 * SEC, T0 + 25 * 60 * SEC, 10, 10},    /* 10 min rows, no whole hour */
        {T0 + 5 * 60 * SEC, T0 + H + 15 * 60 * SEC, 20, 20}, /* 10 min rows at both ends */
    };
    double p99_before[8];
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        assert_int_equal(cart_calls(f->st, w[i].start, w[i].end, &p99_before[i]), w[i].calls);
    /* Downsampling moves calls between fine rows of the same hour: same sums, same quantiles. */
    uint64_t deleted;
    for (int i = 0; i < 4; i++)
        assert_int_equal(store_retention_step(f->st, T0 + 12 * H, 1000, &deleted), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup WHERE resolution = 10"),
                     0);
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        double p99;
        assert_int_equal(cart_calls(f->st, w[i].start, w[i].end, &p99), w[i].calls_1min);
        if (w[i].calls_1min == w[i].calls) assert_true(p99 == p99_before[i]);
    }
    struct dependency_link *deps;
    size_t nd;
    assert_int_equal(store_dependencies(f->st, T0 + 4 * H, 0 /* all time */, &deps, &nd), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(deps[0].call_count, 105);
    assert_int_equal(deps[0].error_count, 1 + 2 + 3 + 4);
    store_free_dependencies(deps, nd);
}

/* Rollups past the retention are deleted. */
static void test_graph_retention(void **state)
{
    struct fixture *f = *state; /* retention 1 h */
    store_test_set_clock(f->st, T0);
    put_cart_calls(f->st, T0, 10, 0);
    uint64_t deleted;
    assert_int_equal(store_retention_step(f->st, T0 + 30 * 60 * SEC, 1000, &deleted), 0);
    struct graph *g;
    assert_int_equal(store_graph(f->st, T0, T0 + 60 * SEC, NULL, &g), 0);
    assert_int_equal(g->n_edges, 2);
    store_free_graph(g);
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_retention_step(f->st, T0 + 2 * 3600 * SEC, 1000, &deleted), 0);
    assert_int_equal(store_graph(f->st, T0, T0 + 60 * SEC, NULL, &g), 0);
    assert_int_equal(g->n_edges, 0);
    store_free_graph(g);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup"), 0);
}

/* The v1 schema exactly as meshscope 0.x created it, with some data. */
static const char v1_file[] =
    "CREATE TABLE services(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE operations(id INTEGER PRIMARY KEY, service_id INTEGER NOT NULL,"
    " name TEXT NOT NULL, kind INTEGER NOT NULL, UNIQUE(service_id, name, kind));"
    "CREATE TABLE chunks(id INTEGER PRIMARY KEY, trace_key INTEGER NOT NULL,"
    " n_spans INTEGER NOT NULL, data BLOB NOT NULL);"
    "CREATE INDEX chunks_trace ON chunks(trace_key);"
    "CREATE TABLE span_index(id INTEGER PRIMARY KEY, trace_key INTEGER NOT NULL,"
    " service_id INTEGER NOT NULL, op_id INTEGER NOT NULL, start_us INTEGER NOT NULL,"
    " min_dur_us INTEGER NOT NULL, max_dur_us INTEGER NOT NULL, error INTEGER NOT NULL);"
    "CREATE INDEX span_index_service ON span_index(service_id, start_us);"
    "CREATE INDEX span_index_error ON span_index(service_id, start_us) WHERE error = 1;"
    "CREATE TABLE dep_rollup(minute INTEGER NOT NULL, parent_id INTEGER NOT NULL,"
    " child_id INTEGER NOT NULL, calls INTEGER NOT NULL, errors INTEGER NOT NULL,"
    " PRIMARY KEY(minute, parent_id, child_id)) WITHOUT ROWID;"
    "CREATE TABLE receive_marks(minute INTEGER PRIMARY KEY, first_chunk INTEGER NOT NULL,"
    " first_index INTEGER NOT NULL);"
    "CREATE TABLE dicts(id INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    "INSERT INTO services(id, name) VALUES(1, 'frontend'), (2, 'cart');"
    "INSERT INTO dep_rollup VALUES(28333333, 1, 2, 7, 2);" /* T0's minute */
    "PRAGMA user_version = 1;";

static void test_migrate_v1(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(count_rows(f->path, "PRAGMA page_size"), 8192); /* a new file */
    store_close(f->st);
    f->st = NULL;
    static const char *const suffix[] = {"", "-wal", "-shm"};
    char p[160];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1_file, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    struct store_options o = {.path = f->path};
    f->st = store_open(&o);
    assert_non_null(f->st);
    /* v1 -> v2 -> v3 (access logs) -> v4 (hour summaries) -> v5 (request keys) -> v6
     * (access-log blocks) -> v7 (search index without rowids) -> v8 (trace index table) in
     * one open. */
    assert_int_equal(count_rows(f->path, "PRAGMA user_version"), 8);
    assert_int_equal(count_rows(f->path, "PRAGMA page_size"), 4096); /* an old file keeps its */
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup WHERE resolution = "
                                         "3600 AND calls = 7"),
                     1);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM edge_rollup WHERE resolution = "
                                         "600 AND calls = 7"),
                     1);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM sqlite_master WHERE name = "
                                         "'dep_rollup'"),
                     0);
    struct dependency_link *deps;
    size_t nd;
    assert_int_equal(store_dependencies(f->st, T0 + 60 * SEC, 120 * SEC, &deps, &nd), 0);
    assert_int_equal(nd, 1);
    assert_string_equal(deps[0].parent, "frontend");
    assert_string_equal(deps[0].child, "cart");
    assert_int_equal(deps[0].call_count, 7);
    assert_int_equal(deps[0].error_count, 2);
    store_free_dependencies(deps, nd);
    /* Old counts without latency, new calls with it, on the same edge. */
    struct graph *g;
    assert_int_equal(store_graph(f->st, T0 - 60 * SEC, T0 + 60 * SEC, NULL, &g), 0);
    const struct graph_edge *e = graph_find_edge(g, "frontend", "cart");
    assert_non_null(e);
    assert_int_equal(e->red.requests, 7);
    assert_true(isnan(e->red.p50_ms));
    store_free_graph(g);
    store_test_set_clock(f->st, T0);
    put_cart_calls(f->st, T0, 10, 0);
    assert_int_equal(store_graph(f->st, T0 - 60 * SEC, T0 + 60 * SEC, NULL, &g), 0);
    e = graph_find_edge(g, "frontend", "cart");
    assert_int_equal(e->red.requests, 17);
    assert_int_equal(e->red.errors, 3);
    assert_false(isnan(e->red.p50_ms));
    assert_string_equal(graph_find_node(g, "cart")->namespace, "shop");
    store_free_graph(g);
    /* The migrated hour summary and the new calls' both count over whole hours. */
    assert_int_equal(store_dependencies(f->st, T0 + 3 * 3600 * SEC, 6 * 3600 * SEC, &deps, &nd), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(deps[0].call_count, 17);
    store_free_dependencies(deps, nd);
    /* Reopening a v8 file migrates nothing more. */
    store_close(f->st);
    f->st = store_open(&o);
    assert_non_null(f->st);
    assert_int_equal(count_rows(f->path, "PRAGMA user_version"), 8);
}

static size_t find_count(struct store *st, const char *service, bool errors_only, int64_t min_dur)
{
    struct trace_query q = {.service = service, .start_us = T0 - 60 * SEC, .end_us = T0 + 60 * SEC,
                            .errors_only = errors_only, .min_duration_us = min_dur};
    struct span_batch **out = NULL;
    size_t n = 0;
    assert_int_equal(store_find_traces(st, &q, &out, &n), 0);
    store_free_traces(out, n);
    return n;
}

/* ----- prepared batches (store_prepare_batch) ---------------------------------------------- */

/* The request marks and error flags computed while preparing are what the writer and the RED
 * aggregation would compute themselves. */
static void assert_prepared_flags(const struct span_batch *b)
{
    for (uint32_t i = 0; i < b->n_spans; i++) {
        uint64_t m1[2], m2[2];
        unsigned n1 = span_batch_request_marks(b, i, m1);
        assert_int_equal(n1, span_request_marks(&b->spans[i], m2));
        for (unsigned k = 0; k < n1; k++)
            assert_true(m1[k] == m2[k]);
        assert_int_equal(span_batch_is_error(b, i), span_is_error(&b->spans[i]));
    }
}

/* Each preparing thread makes PREP_BATCHES batches of 10 traces of 5 spans. */
#define PREP_THREADS 4
#define PREP_BATCHES 8
struct prep_arg {
    struct store *st;
    int t;
    struct span_batch *out[PREP_BATCHES];
    int rc;
};

static void *prepare_thread(void *p)
{
    struct prep_arg *a = p;
    for (int k = 0; k < PREP_BATCHES; k++) {
        struct span_batch *b = span_batch_create();
        const struct resource *r = make_resource(b, "prepared", NULL);
        for (int i = 0; i < 50; i++) {
            uint64_t trace = 100000 + (uint64_t)((a->t * PREP_BATCHES + k) * 10 + i / 5);
            add_span(b, r, trace, 1 + (uint64_t)(i % 5), i % 5 ? 1 : 0, "work",
                     i % 5 ? SPAN_KIND_INTERNAL : SPAN_KIND_SERVER, T0 + i, MS);
        }
        int rc = store_prepare_batch(a->st, b);
        if (rc || !b->prepared || b->prepared->n != 10) a->rc = rc ? rc : -1;
        a->out[k] = b;
    }
    return NULL;
}

/* Batches prepared ahead (store_prepare_batch, as the HTTP threads do before the ingest queue)
 * store the same spans as batches the writer encodes: before the database has a dictionary
 * they are compressed without one and carry their encodings, from which the writer trains it; a
 * prepared batch reads back field for field; a trace split between a prepared and an unprepared
 * batch of one write call reads back whole; threads prepare while the writer writes. */
static void test_prepared_batches(void **state)
{
    struct fixture *f = *state;
    struct span_batch *b = span_batch_create();
    const struct resource *r0 = make_resource(b, "early", NULL);
    for (uint64_t t = 8; t <= 9; t++) {
        struct span *sp = add_span(b, r0, t, 1, 0, "GET /", SPAN_KIND_SERVER, T0, MS);
        attr_str(b, sp, "guid:x-request-id", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    }
    assert_int_equal(store_prepare_batch(f->st, b), 0);
    assert_non_null(b->prepared); /* no dictionary yet: compressed without, encodings kept */
    assert_non_null(b->prepared->raw_len);
    assert_int_equal(b->prepared->n, 2);
    assert_int_equal(b->prepared->raw.len,
                     (size_t)b->prepared->raw_len[0] + b->prepared->raw_len[1]);
    put1(f->st, b);
    train_dictionary_with(f->st, true);
    uint8_t id[16];
    struct span_batch *got;
    trace_id_of(id, 9); /* written without a dictionary, read with one in the database */
    assert_int_equal(store_get_trace(f->st, id, &got), 0);
    assert_int_equal(got->n_spans, 1);
    assert_string_equal(got->spans[0].attrs.items[0].value.u.str.ptr,
                        "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    span_batch_destroy(got);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM dicts"), 1);

    struct store_stats before, after;
    store_get_stats(f->st, &before);
    b = rich_batch();
    struct span_batch *orig = rich_batch();
    assert_int_equal(store_prepare_batch(f->st, b), 0);
    assert_non_null(b->prepared);
    assert_null(b->prepared->raw_len);   /* the dictionary is made: no more samples */
    assert_int_equal(b->prepared->n, 2); /* traces 1 (two spans) and 2 */
    assert_prepared_flags(b);
    assert_true(span_batch_is_error(b, 0));             /* status ERROR */
    assert_int_equal(store_prepare_batch(f->st, b), 0); /* already prepared: kept as it is */
    assert_int_equal(b->prepared->n, 2);
    put1(f->st, b);
    store_get_stats(f->st, &after);
    assert_int_equal(after.spans_stored - before.spans_stored, 3);
    assert_int_equal(after.traces_chunks_stored - before.traces_chunks_stored, 2);
    assert_rich_stored(f->st, orig);
    span_batch_destroy(orig);
    struct trace_query eq = {
        .service = "frontend", .start_us = T0 - SEC, .end_us = T0 + SEC, .errors_only = true};
    struct span_batch **found = NULL;
    size_t n_found = 0;
    assert_int_equal(store_find_traces(f->st, &eq, &found, &n_found), 0);
    assert_int_equal(n_found, 1); /* trace 1, by its prepared error flag */
    store_free_traces(found, n_found);

    /* Trace 7 in a prepared batch and in one the writer encodes, in one call. */
    struct span_batch *two[2] = {span_batch_create(), span_batch_create()};
    const struct resource *r1 = make_resource(two[0], "frontend", NULL);
    struct span *root = add_span(two[0], r1, 7, 1, 0, "root", SPAN_KIND_SERVER, T0, 100 * MS);
    attr_str(two[0], root, "guid:x-request-id", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    add_span(two[0], r1, 7, 3, 1, "late", SPAN_KIND_INTERNAL, T0 + 50 * MS, MS);
    const struct resource *r2 = make_resource(two[1], "cart", NULL);
    add_span(two[1], r2, 7, 2, 1, "GetCart", SPAN_KIND_SERVER, T0 + 10 * MS, 20 * MS);
    assert_int_equal(store_prepare_batch(f->st, two[0]), 0);
    assert_non_null(two[0]->prepared);
    assert_prepared_flags(two[0]);
    uint64_t marks[2];
    assert_int_equal(span_batch_request_marks(two[0], 0, marks), 2); /* trace, request id */
    assert_int_equal(store_put_batches(f->st, two, 2), 0);
    span_batch_destroy(two[0]);
    span_batch_destroy(two[1]);
    trace_id_of(id, 7);
    assert_int_equal(store_get_trace(f->st, id, &got), 0);
    assert_int_equal(got->n_spans, 3);
    assert_string_equal(got->spans[0].name.ptr, "root");
    assert_string_equal(got->spans[1].name.ptr, "GetCart");
    assert_string_equal(span_service_name(&got->spans[1]), "cart");
    assert_string_equal(got->spans[2].name.ptr, "late");
    span_batch_destroy(got);

    /* Preparing threads beside the writer. */
    struct prep_arg args[PREP_THREADS];
    pthread_t th[PREP_THREADS];
    for (int t = 0; t < PREP_THREADS; t++) {
        args[t] = (struct prep_arg){.st = f->st, .t = t};
        assert_int_equal(pthread_create(&th[t], NULL, prepare_thread, &args[t]), 0);
    }
    for (int k = 0; k < 8; k++)
        put1(f->st, big_batch("beside", 200000 + (uint64_t)k * 3000));
    for (int t = 0; t < PREP_THREADS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(args[t].rc, 0);
        assert_int_equal(store_put_batches(f->st, args[t].out, PREP_BATCHES), 0);
        for (int k = 0; k < PREP_BATCHES; k++)
            span_batch_destroy(args[t].out[k]);
    }
    for (uint64_t trace = 100000; trace < 100000 + PREP_THREADS * PREP_BATCHES * 10; trace++) {
        trace_id_of(id, trace);
        assert_int_equal(store_get_trace(f->st, id, &got), 0);
        assert_int_equal(got->n_spans, 5);
        assert_string_equal(span_service_name(&got->spans[0]), "prepared");
        span_batch_destroy(got);
    }
    /* The search rows are the writer's, from every span, prepared or not. */
    struct trace_query q = {
        .service = "prepared", .start_us = T0 - SEC, .end_us = T0 + SEC, .limit = 1000};
    struct span_batch **out = NULL;
    size_t n = 0;
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, PREP_THREADS * PREP_BATCHES * 10);
    store_free_traces(out, n);
}

/* A v6 file (search rows in a rowid table, receive_marks.first_index) migrates to v7: every row
 * is kept, two rows with one key become one with both rows' durations and error flag, and
 * searches find what they found before. */
static void test_migrate_v6_search_index(void **state)
{
    struct fixture *f = *state;
    store_test_set_clock(f->st, T0);
    put_cart_calls(f->st, T0, 20, 5000); /* 20 traces, cart's 10th and 20th are errors */
    int64_t rows = count_rows(f->path, "SELECT count(*) FROM span_index");
    assert_int_equal(rows, 60);
    assert_int_equal(find_count(f->st, "cart", true, 0), 2);
    store_close(f->st);
    f->st = NULL;
    /* Back to the v6 layout, plus a second row for cart's first trace: slower, an error. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  TEST_TRACE_INDEX_V7_SQL TEST_SEARCH_INDEX_V6_SQL
                                  "INSERT INTO span_index(trace_key, service_id, op_id, start_us,"
                                  " min_dur_us, max_dur_us, error) SELECT trace_key, service_id,"
                                  " op_id, start_us, 900000, 900000, 1 FROM span_index WHERE"
                                  " service_id = (SELECT id FROM services WHERE name = 'cart')"
                                  " AND max_dur_us = 1000;"
                                  "PRAGMA user_version = 6;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index"), rows + 1);

    struct store_options o = {.path = f->path};
    f->st = store_open(&o);
    assert_non_null(f->st);
    assert_int_equal(count_rows(f->path, "PRAGMA user_version"), 8);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index"), rows);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM pragma_table_info('span_index')"
                                         " WHERE name = 'id'"),
                     0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM pragma_table_info("
                                         "'receive_marks') WHERE name = 'first_index'"),
                     0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index WHERE min_dur_us = "
                                         "1000 AND dur_spread_us = 899000 AND error = 1"),
                     1);
    /* Rows of one span keep no spread: 0, stored in no bytes. */
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index WHERE dur_spread_us "
                                         "!= 0"),
                     1);
    assert_int_equal(find_count(f->st, "cart", false, 0), 20);
    /* The merged row is a candidate only: the spans decide (cart's first call is no error). */
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index WHERE error = 1"), 3);
    assert_int_equal(find_count(f->st, "cart", true, 0), 2);
    assert_int_equal(find_count(f->st, "frontend", false, 0), 20);
    /* New calls go in beside the migrated rows. */
    put_cart_calls(f->st, T0 + SEC, 5, 6000);
    assert_int_equal(find_count(f->st, "cart", false, 0), 25);
}

/* One trace's span of one service and operation, starting in the same microsecond, sent in two
 * calls: one search row with both durations and the error. */
static void test_index_upsert(void **state)
{
    struct fixture *f = *state;
    for (int call = 0; call < 2; call++) {
        struct span_batch *b = span_batch_create();
        const struct resource *r = make_resource_ns(b, "cart", "shop");
        struct span *s = add_span(b, r, 77, 10 + (uint64_t)call, 0, "GetCart", SPAN_KIND_SERVER,
                                  T0, call ? 9 * MS : 2 * MS);
        if (call) attr_int(b, s, "http.response.status_code", 503);
        put1(f->st, b);
    }
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index"), 1);
    assert_int_equal(count_rows(f->path, "SELECT min_dur_us * 1000000 + dur_spread_us * 10 + "
                                         "error FROM span_index"),
                     2000 * 1000000LL + 7000 * 10 + 1);
    assert_int_equal(find_count(f->st, "cart", true, 8 * MS), 1);
}

/* Retention deletes search rows by start time, service by service, at most max_rows a step,
 * resuming where the last step ran out; chunks go by receive time. */
static void test_retention_search_rows(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    struct store_options o = {.path = f->path, .retention_us = 3600 * SEC};
    f->st = store_open(&o);
    assert_non_null(f->st);
    store_test_set_clock(f->st, T0);
    put_cart_calls(f->st, T0, 30, 7000);                /* 60 frontend rows, 30 cart rows */
    put_cart_calls(f->st, T0 + 2 * 3600 * SEC, 4, 8000); /* late start: kept */
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index"), 102);
    uint64_t deleted = 0;
    /* Received at T0, so the chunks are past the retention too. */
    assert_int_equal(store_retention_step(f->st, T0 + 3600 * SEC + 70 * SEC, 40, &deleted), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index"), 62);
    assert_int_equal(store_retention_step(f->st, T0 + 3600 * SEC + 70 * SEC, 40, &deleted), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index"), 22);
    assert_int_equal(store_retention_step(f->st, T0 + 3600 * SEC + 70 * SEC, 40, &deleted), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index"), 12);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index WHERE start_us < "
                                         "(SELECT max(start_us) FROM span_index) - 3600000000"),
                     0);
    assert_int_equal(find_count(f->st, "cart", false, 0), 0);
    /* Spans that started before the cutoff and arrive after the sweep go at the next step. */
    put_cart_calls(f->st, T0, 2, 9000);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index"), 18);
    assert_int_equal(store_retention_step(f->st, T0 + 3600 * SEC + 80 * SEC, 40, &deleted), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM span_index"), 12);
}

/* ----- the trace index (store.c DESIGN, trace_pending.c) ----------------------------------- */

static void put_trace_n(struct store *st, uint64_t trace)
{
    struct span_batch *b = span_batch_create();
    add_span(b, make_resource(b, "ti", NULL), trace, 1, 0, "a", SPAN_KIND_SERVER, T0, MS);
    put1(st, b);
}

static void assert_trace_found(struct store *st, uint64_t trace)
{
    uint8_t id[16];
    trace_id_of(id, trace);
    struct span_batch *got = NULL;
    assert_int_equal(store_get_trace(st, id, &got), 0);
    assert_int_equal(got->n_spans, 1);
    span_batch_destroy(got);
}

static void assert_str_value(const struct attr *a, const char *key, const char *value)
{
    assert_int_equal(a->key.len, strlen(key));
    assert_memory_equal(a->key.ptr, key, a->key.len);
    assert_int_equal(a->value.type, VALUE_STRING);
    assert_string_equal(a->value.u.str.ptr, value);
}

/* store_compact_batch keeps of a prepared batch's spans what the writer reads and no more: the
 * fixed fields, the name, the attributes the service graph reads (arrays too) and the resource's
 * service name and namespace, a resource still shared by its spans; the stored trace is whole
 * (its chunks were made before); a batch not prepared, or with access-log records, is left as it
 * is; a compacted batch takes no more spans. */
static void test_compact_batch(void **state)
{
    struct fixture *f = *state;
    /* A mapped arena (the copy's) grows past its mapping with malloc'd blocks, one-off big ones
     * too, and frees them all (ASan checks). */
    struct arena *ma = arena_create_mapped(64);
    assert_non_null(ma);
    assert_int_equal(arena_bytes(ma), arena_mapped_bytes(64));
    assert_non_null(arena_alloc(ma, 32));
    assert_non_null(arena_alloc(ma, 10000));
    assert_non_null(arena_alloc(ma, 5000));
    assert_true(arena_bytes(ma) >= arena_mapped_bytes(64) + 15000);
    arena_destroy(ma);

    struct span_batch *b = span_batch_create();
    struct resource *r = arena_alloc(b->arena, sizeof *r);
    static const char *const rkv[][2] = {{"service.name", "frontend"},
                                         {"host.name", "node-7"},
                                         {"k8s.namespace.name", "shop"},
                                         {"telemetry.sdk.language", "go"}};
    r->attrs.items = arena_alloc(b->arena, 4 * sizeof *r->attrs.items);
    for (int i = 0; i < 4; i++) {
        r->attrs.items[i].key = S(b, rkv[i][0]);
        r->attrs.items[i].value.type = VALUE_STRING;
        r->attrs.items[i].value.u.str = S(b, rkv[i][1]);
    }
    r->attrs.n = 4;
    struct span *s = add_span(b, r, 61, 2, 1, "GET /cart", SPAN_KIND_CLIENT, T0, MS);
    s->trace_state = S(b, "vendor=abc");
    s->status_code = STATUS_ERROR;
    s->status_message = S(b, "boom");
    attr_str(b, s, "http.request.method", "GET");
    attr_str(b, s, "peer.service", "cart");
    attr_str(b, s, "user_agent.original", "curl/8.0");
    attr_str(b, s, "server.address", "cart:8080");
    struct value *v = add_attr(b, s, "http.request.header.x-request-id");
    v->type = VALUE_ARRAY;
    v->u.array.n = 1;
    v->u.array.items = arena_alloc(b->arena, sizeof *v->u.array.items);
    v->u.array.items[0].type = VALUE_STRING;
    v->u.array.items[0].u.str = S(b, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    attr_int(b, s, "http.response.status_code", 503);
    s = add_span(b, r, 61, 3, 2, "Charge", SPAN_KIND_SERVER, T0, MS);
    attr_str(b, s, "http.route", "/charge");
    b->rejected = 1;
    b->reject_reason = arena_strndup(b->arena, "span 3: invalid id", 18);

    assert_int_equal(store_compact_batch(b), 0); /* not prepared: left as it is */
    assert_int_not_equal(b->cap_spans, 0);
    assert_int_equal(store_prepare_batch(f->st, b), 0);
    size_t whole = span_batch_bytes(b), waits = store_queued_bytes(b);
    assert_true(waits < whole);
    assert_int_equal(store_compact_batch(b), 0);
    assert_int_equal(span_batch_bytes(b), waits);
    assert_int_equal(b->cap_spans, 0);
    assert_int_equal(b->n_spans, 2);
    assert_null(span_batch_add(b));
    assert_int_equal(b->n_spans, 2);
    assert_string_equal(b->reject_reason, "span 3: invalid id");
    s = &b->spans[0];
    assert_string_equal(s->name.ptr, "GET /cart");
    assert_int_equal(s->kind, SPAN_KIND_CLIENT);
    assert_int_equal(s->status_code, STATUS_ERROR);
    assert_null(s->trace_state.ptr);
    assert_null(s->status_message.ptr);
    assert_true(s->has_parent);
    assert_int_equal(s->start_unix_nano, (uint64_t)T0 * 1000);
    assert_int_equal(s->attrs.n, 3);
    assert_str_value(&s->attrs.items[0], "peer.service", "cart");
    assert_str_value(&s->attrs.items[1], "server.address", "cart:8080");
    assert_int_equal(s->attrs.items[2].value.type, VALUE_ARRAY);
    assert_string_equal(s->attrs.items[2].value.u.array.items[0].u.str.ptr,
                        "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    assert_int_equal(b->spans[1].attrs.n, 0);
    assert_ptr_equal(b->spans[0].resource, b->spans[1].resource);
    assert_int_equal(s->resource->attrs.n, 2);
    assert_str_value(&s->resource->attrs.items[0], "service.name", "frontend");
    assert_str_value(&s->resource->attrs.items[1], "k8s.namespace.name", "shop");
    assert_prepared_flags(b); /* the request id still marks the span */
    put1(f->st, b);
    uint8_t id[16];
    struct span_batch *got;
    trace_id_of(id, 61);
    assert_int_equal(store_get_trace(f->st, id, &got), 0);
    assert_int_equal(got->n_spans, 2);
    assert_int_equal(got->spans[0].attrs.n, 6); /* stored whole */
    assert_string_equal(got->spans[0].status_message.ptr, "boom");
    span_batch_destroy(got);

    /* rich_batch, compacted, reads back field for field. */
    b = rich_batch();
    struct span_batch *orig = rich_batch();
    assert_int_equal(store_prepare_batch(f->st, b), 0);
    assert_int_equal(store_compact_batch(b), 0);
    assert_int_equal(b->cap_spans, 0);
    put1(f->st, b);
    assert_rich_stored(f->st, orig);
    span_batch_destroy(orig);

    /* With access-log records: left as it is. */
    b = span_batch_create();
    add_span(b, make_resource(b, "frontend", NULL), 62, 1, 0, "GET", SPAN_KIND_SERVER, T0, MS);
    assert_non_null(span_batch_add_log(b));
    size_t with_log = store_queued_bytes(b);
    assert_int_equal(with_log, span_batch_bytes(b));
    assert_int_equal(store_prepare_batch(f->st, b), 0);
    assert_int_equal(store_compact_batch(b), 0);
    assert_int_not_equal(b->cap_spans, 0);
    span_batch_destroy(b);
}

/* A committed chunk is found by trace id at once, while its trace_index row waits in memory; the
 * rows are written once their entries are 8 s old (TP_LAG_US); reopening reads back the chunks
 * whose rows were not written; retention's sweep removes the rows of deleted chunks. The clock is
 * the real one (store_open times what it reads back by it). */
static void test_trace_index(void **state)
{
    struct fixture *f = *state; /* retention 1 h */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const int64_t r0 = (int64_t)ts.tv_sec * SEC;
    store_test_set_clock(f->st, r0);
    for (uint64_t t = 400; t < 410; t++)
        put_trace_n(f->st, t);
    const char *rows = "SELECT count(*) FROM trace_index";
    assert_int_equal(count_rows(f->path, rows), 0);
    struct store_stats ss;
    store_get_stats(f->st, &ss);
    assert_int_equal(ss.trace_index_pending, 10);
    for (uint64_t t = 400; t < 410; t++)
        assert_trace_found(f->st, t);
    struct trace_query q = {.service = "ti", .limit = 100};
    struct span_batch **out;
    size_t n;
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, 10);
    store_free_traces(out, n);

    /* 9 s on, the next write call writes the ten rows; its own chunk waits. */
    store_test_set_clock(f->st, r0 + 9 * SEC);
    put_trace_n(f->st, 410);
    assert_int_equal(count_rows(f->path, rows), 10);
    store_get_stats(f->st, &ss);
    assert_int_equal(ss.trace_index_pending, 1);
    assert_int_equal(count_rows(f->path, "SELECT value FROM store_state WHERE name = "
                                         "'trace_index_from'"),
                     count_rows(f->path, "SELECT max(id) FROM chunks"));
    for (uint64_t t = 400; t < 411; t++)
        assert_trace_found(f->st, t);
    assert_int_equal(store_find_traces(f->st, &q, &out, &n), 0);
    assert_int_equal(n, 11);
    store_free_traces(out, n);

    /* Reopened: the open writes 410's row (its chunk is past trace_index_from). */
    store_close(f->st);
    assert_int_equal(count_rows(f->path, rows), 10);
    struct store_options o = {.path = f->path, .retention_us = 3600 * SEC};
    f->st = store_open(&o);
    assert_non_null(f->st);
    assert_int_equal(count_rows(f->path, rows), 11);
    assert_int_equal(count_rows(f->path, "SELECT value FROM store_state WHERE name = "
                                         "'trace_index_from'"),
                     count_rows(f->path, "SELECT max(id) FROM chunks") + 1);
    assert_trace_found(f->st, 410);
    clock_gettime(CLOCK_REALTIME, &ts);
    store_test_set_clock(f->st, (int64_t)ts.tv_sec * SEC + 9 * SEC);
    put_trace_n(f->st, 411);
    assert_int_equal(count_rows(f->path, rows), 11);
    assert_trace_found(f->st, 410);
    assert_trace_found(f->st, 411);

    /* Two hours on, retention deletes the chunks; a whole sweep (256 steps) their rows. */
    int64_t max_id = count_rows(f->path, "SELECT max(id) FROM chunks");
    store_test_set_clock(f->st, r0 + 2 * 3600 * SEC);
    uint64_t deleted;
    for (int i = 0; i < 300; i++)
        assert_int_equal(store_retention_step(f->st, r0 + 2 * 3600 * SEC, 1000, &deleted), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM chunks"), 0);
    assert_int_equal(count_rows(f->path, rows), 0);
    uint8_t id[16];
    trace_id_of(id, 405);
    struct span_batch *got;
    assert_int_equal(store_get_trace(f->st, id, &got), -ENOENT);
    /* Every chunk gone, reopened: new chunks do not take the deleted ones' ids. */
    store_close(f->st);
    f->st = store_open(&o);
    assert_non_null(f->st);
    put_trace_n(f->st, 412);
    assert_true(count_rows(f->path, "SELECT min(id) FROM chunks") > max_id);
}

/* A sealed run comes out in (key, chunk) order: signed keys, repeated keys (their chunks in
 * order), keys that differ only in high or only in low bytes. */
static void test_trace_pending_sort(void **state)
{
    (void)state;
    struct tpend *t = tpend_create();
    assert_non_null(t);
    enum { N = 5000 };
    struct tpend_entry *e = calloc(N, sizeof *e);
    uint64_t x = 0x9E3779B97F4A7C15ULL, chunk_sum = 0;
    for (int i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t key = (int64_t)x;
        if (i % 5 == 1) key = e[i - 1].key;                       /* a repeated key */
        if (i % 7 == 2) key = (int64_t)(x & 0xff);                /* low bytes only */
        if (i % 11 == 3) key = (int64_t)(x & ~0xffffffffffffULL); /* high bytes only */
        e[i] = (struct tpend_entry){key, i + 1};
        chunk_sum += (uint64_t)i + 1;
    }
    assert_int_equal(tpend_add(t, e, N, 0), 0);
    const struct tpend_entry *piece;
    size_t n;
    int64_t from;
    tpend_plan(t, 9 * SEC, N, &piece, &n, &from);
    assert_int_equal(n, N);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += (uint64_t)piece[i].chunk;
        if (i > 0)
            assert_true(piece[i - 1].key < piece[i].key ||
                        (piece[i - 1].key == piece[i].key && piece[i - 1].chunk < piece[i].chunk));
    }
    assert_int_equal(sum, chunk_sum);
    free(e);
    tpend_destroy(t);
}

/* The pending entries themselves: a reader pinned before a run was merged still finds its
 * entries after the merge (its snapshot may predate it); once unpinned, the run is freed. */
static void test_trace_pending_pins(void **state)
{
    (void)state;
    struct tpend *t = tpend_create();
    assert_non_null(t);
    struct tpend_entry e[3] = {{7, 1}, {5, 2}, {7, 3}};
    assert_int_equal(tpend_add(t, e, 3, 1000), 0);
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    uint64_t before;
    assert_int_equal(tpend_pin(t, &before), 0);
    assert_int_equal(tpend_lookup(t, before, 7, &ids, &n, &cap), 0);
    assert_int_equal(n, 2);
    /* Not due yet: nothing planned. */
    const struct tpend_entry *piece;
    size_t np;
    int64_t from;
    tpend_plan(t, 1000 + SEC, 2, &piece, &np, &from);
    assert_int_equal(np, 0);
    assert_int_equal(from, 1);
    /* Due: sealed, merged in key order, two entries at most per piece. */
    tpend_plan(t, 1000 + 9 * SEC, 2, &piece, &np, &from);
    assert_int_equal(np, 2);
    assert_int_equal(piece[0].key, 5);
    assert_int_equal(piece[1].key, 7);
    assert_int_equal(piece[1].chunk, 1);
    assert_int_equal(from, 1); /* the run's smallest chunk still waits */
    tpend_merged(t, 2);
    assert_int_equal(tpend_count(t), 1);
    tpend_plan(t, 1000 + 9 * SEC, 2, &piece, &np, &from);
    assert_int_equal(np, 1);
    assert_int_equal(from, INT64_MAX);
    tpend_merged(t, 1);
    assert_int_equal(tpend_count(t), 0);
    uint64_t after;
    assert_int_equal(tpend_pin(t, &after), 0);
    tpend_plan(t, 1000 + 10 * SEC, 2, &piece, &np, &from);
    n = 0;
    assert_int_equal(tpend_lookup(t, before, 7, &ids, &n, &cap), 0);
    assert_int_equal(n, 2); /* kept for the earlier pin */
    n = 0;
    assert_int_equal(tpend_lookup(t, after, 7, &ids, &n, &cap), 0);
    assert_int_equal(n, 0); /* merged before this pin: in its snapshot */
    tpend_unpin(t, before);
    tpend_unpin(t, after);
    tpend_plan(t, 1000 + 11 * SEC, 2, &piece, &np, &from);
    n = 0;
    assert_int_equal(tpend_lookup(t, 0, 7, &ids, &n, &cap), 0);
    assert_int_equal(n, 0); /* freed */

    /* Pinned while a run is half merged: the run stays for it once merged. */
    struct tpend_entry f2[3] = {{1, 10}, {2, 11}, {3, 12}};
    assert_int_equal(tpend_add(t, f2, 3, 20 * SEC), 0);
    tpend_plan(t, 29 * SEC, 2, &piece, &np, &from);
    assert_int_equal(np, 2);
    tpend_merged(t, 2);
    uint64_t half;
    assert_int_equal(tpend_pin(t, &half), 0);
    tpend_plan(t, 29 * SEC, 2, &piece, &np, &from);
    assert_int_equal(np, 1);
    tpend_merged(t, 1);
    tpend_plan(t, 30 * SEC, 2, &piece, &np, &from);
    n = 0;
    assert_int_equal(tpend_lookup(t, half, 1, &ids, &n, &cap), 0);
    assert_int_equal(n, 1);
    tpend_unpin(t, half);

    /* Live is capped: a call that would outgrow it is refused whole (the writer then writes
     * those rows at once). */
    size_t big = (1u << 19) + 1;
    struct tpend_entry *many = calloc(big, sizeof *many);
    assert_int_equal(tpend_add(t, many, big, 30 * SEC), -E2BIG);
    free(many);
    assert_int_equal(tpend_count(t), 0);

    /* A transaction that fails takes its entries back. */
    struct tpend_entry g[3] = {{40, 20}, {41, 21}, {40, 22}};
    assert_int_equal(tpend_add(t, g, 3, 40 * SEC), 0);
    tpend_unadd(t, 2);
    n = 0;
    assert_int_equal(tpend_lookup(t, 0, 40, &ids, &n, &cap), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 20);
    n = 0;
    assert_int_equal(tpend_lookup(t, 0, 41, &ids, &n, &cap), 0);
    assert_int_equal(n, 0);

    /* Runs kept for a reader are bounded: past the bound the reader is told (-EAGAIN). */
    uint64_t old;
    assert_int_equal(tpend_pin(t, &old), 0);
    for (int64_t r = 0; r < 6; r++) {
        struct tpend_entry h = {100 + r, 30 + r};
        int64_t t0 = (50 + 10 * r) * SEC;
        assert_int_equal(tpend_add(t, &h, 1, t0), 0);
        tpend_plan(t, t0 + 9 * SEC, 8, &piece, &np, &from);
        tpend_merged(t, np);
    }
    tpend_plan(t, 200 * SEC, 8, &piece, &np, &from);
    n = 0;
    assert_int_equal(tpend_lookup(t, old, 100, &ids, &n, &cap), -EAGAIN);
    tpend_unpin(t, old);
    free(ids);
    tpend_destroy(t);
}

int main(void)
{
    log_min_level = LOG_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_roundtrip),
        cmocka_unit_test(test_codec_versions),
        cmocka_unit_test(test_codec_hex_strings),
        cmocka_unit_test(test_codec_rejects_corrupt),
        cmocka_unit_test_setup_teardown(test_put_get, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_split_trace, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_find_traces, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_find_limit_order, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_find_top_k, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_list_services_operations, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_dependencies, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_retention, fixture_setup_retention, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_reads, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_enospc_rolls_back, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_reopen, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_dictionary, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_graph_percentiles, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_graph_pending, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_graph_downsample, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_graph_hours, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_graph_retention, fixture_setup_retention,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v1, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v6_search_index, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_retention_search_rows, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_index_upsert, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_prepared_batches, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_compact_batch, fixture_setup, fixture_teardown),
        /* The writer derives the same from batches compacted as the ingest queue does. */
        cmocka_unit_test_setup_teardown(test_find_traces, fixture_setup_compacted,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_list_services_operations, fixture_setup_compacted,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_dependencies, fixture_setup_compacted,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_graph_percentiles, fixture_setup_compacted,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_graph_pending, fixture_setup_compacted,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_graph_hours, fixture_setup_compacted,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_trace_index, fixture_setup_retention,
                                        fixture_teardown),
        cmocka_unit_test(test_trace_pending_pins),
        cmocka_unit_test(test_trace_pending_sort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
