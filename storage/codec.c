/*
 * codec.c: the binary form of the spans stored in one chunk row, before compression.
 *
 * The format keeps everything the span model holds, losslessly, so a trace read back renders
 * exactly what was ingested. It is compact before zstd sees it: integers are LEB128 varints
 * (signed ones zigzag), times after the first are deltas, ids are raw bytes, strings are
 * length-prefixed. A string's prefix is len+1 so that 0 can mean "absent" (ptr NULL), which the
 * model distinguishes from "".
 *
 *   chunk    := version(=3) n_res resource* n_scope scope* n_span span*
 *   resource := attrs str(schema_url)
 *   scope    := str(name) str(version) attrs str(schema_url)
 *   span     := v(res_index+1 | 0) v(scope_index+1 | 0) byte(ids) [trace_id[16]] span_id[8]
 *               [v(i - parent_index - 1) | parent_span_id[8]] str(trace_state) v(flags)
 *               str(name) v(kind) z(start - previous span's start, 0 for the first)
 *               z(end-start) attrs v(n_events) v(dropped_events) event*
 *               v(n_links) v(dropped_links) link* v(status_code) str(status_message)
 *   ids      := IDS_PARENT (has a parent) | IDS_SAME_TRACE (trace id = the previous span's, not
 *               written) | IDS_PARENT_REF (the parent is an earlier span of the chunk: its
 *               index, not its id)
 *   version 1 span := (as above up to the ids) trace_id[16] span_id[8] byte(has_parent)
 *               [parent_span_id[8]] ... v(start) ... (absolute start); still decoded
 *   event    := z(time-start) str(name) attrs
 *   link     := trace_id[16] span_id[8] str(trace_state) attrs v(flags)
 *   attrs    := v(n) v(dropped) (str(key) value)*
 *   value    := byte(type) payload   (string/bytes: str; bool: byte; int: z; double: 8 bytes
 *                                     little-endian; array: v(n) value*; kvlist: v(n) (str value)*)
 *               | byte(HEX_STRING) v(n_runs) v(run_len)* nibbles   (version 3: a string value of
 *               lowercase hex digit runs joined by single '-', e.g. a UUID request id: two digits
 *               per byte, high nibble first, the last low nibble 0 when the count is odd)
 *
 * Resources and scopes are shared by pointer in the model (all spans of one ResourceSpans point
 * at one struct resource), so the encoder writes each distinct one once per chunk and the
 * decoder gives the spans of a chunk shared pointers again.
 *
 * The decoder trusts nothing: every read is bounds-checked, every count is checked against the
 * bytes left (each element takes at least one byte, so a count can never make it allocate more
 * than a small multiple of the input), nesting is capped at CODEC_MAX_DEPTH, enum values are
 * range-checked, and the chunk must end exactly at its last span. Failure is -EINVAL, never a
 * crash; the batch keeps whatever arena memory the partial decode took (freed with the batch).
 */
#include "storage_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Version 2: a span's ids byte says whether its trace id is the previous span's and whether its
 * parent is an earlier span of the chunk (then an index, not 8 bytes), and start times are
 * deltas from the previous span's. Version 3: string values that are hex digits (UUIDs, hex
 * request and trace ids) are packed two digits per byte (HEX_STRING). Versions 1 (every id in
 * full, absolute starts) and 2 are still read. */
#define CODEC_VERSION 3
#define IDS_PARENT 1u     /* has a parent span id */
#define IDS_SAME_TRACE 2u /* trace id as the previous span's (not written) */
#define IDS_PARENT_REF 4u /* the parent is an earlier span: varint (i - its index - 1) follows */

/* A value type of the codec only (not an enum value_type): a VALUE_STRING packed as hex runs.
 * Strings shorter than HEX_MIN stay text (a few digits gain nothing); at most HEX_MAX_RUNS runs,
 * so the run lengths stay a small, repeated prefix zstd matches away. A 36-character UUID takes
 * 16 bytes of digits instead of 36 characters, which zstd could only bring to ~26 bytes. */
#define HEX_STRING 16u
#define HEX_MIN 16
#define HEX_MAX 4096
#define HEX_MAX_RUNS 8

int buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) return -ENOMEM;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ----- encoder ----------------------------------------------------------------------------- */

/* The encoder reserves before each small write; a failed reserve sets oom and later writes are
 * skipped, so the functions below need no error plumbing. */
struct enc {
    struct buf *b;
    bool oom;
};

/* Out-of-line path: grows the buffer, then writes. */
static void put_bytes_slow(struct enc *e, const void *p, size_t n)
{
    if (e->oom || buf_reserve(e->b, n) != 0) {
        e->oom = true;
        return;
    }
    if (n) memcpy(e->b->p + e->b->len, p, n);
    e->b->len += n;
}

/* The small writes below check the room they need inline and take the slow path only to grow
 * (the encoder's hottest code: a span is ~60 small writes). */
static inline void put_bytes(struct enc *e, const void *p, size_t n)
{
    struct buf *b = e->b;
    if (__builtin_expect(e->oom || b->cap - b->len < n, 0)) {
        put_bytes_slow(e, p, n);
        return;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void put_v(struct enc *e, uint64_t v)
{
    struct buf *b = e->b;
    if (__builtin_expect(!e->oom && b->cap - b->len >= 10, 1)) {
        uint8_t *q = b->p + b->len;
        while (v >= 0x80) {
            *q++ = (uint8_t)(v | 0x80);
            v >>= 7;
        }
        *q++ = (uint8_t)v;
        b->len = (size_t)(q - b->p);
        return;
    }
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    put_bytes_slow(e, tmp, n);
}

static inline void put_z(struct enc *e, int64_t v)
{
    put_v(e, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static inline void put_byte(struct enc *e, uint8_t v)
{
    struct buf *b = e->b;
    if (__builtin_expect(!e->oom && b->cap > b->len, 1)) {
        b->p[b->len++] = v;
        return;
    }
    put_bytes_slow(e, &v, 1);
}

static void put_str(struct enc *e, struct mstr s)
{
    if (!s.ptr) {
        put_v(e, 0);
        return;
    }
    put_v(e, (uint64_t)s.len + 1);
    put_bytes(e, s.ptr, s.len);
}

static inline int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The runs of s if it is HEX_STRING material (lowercase hex digit runs joined by single '-',
 * none empty, at most HEX_MAX_RUNS): their count, lengths in run_len. 0 if it is not. */
static unsigned hex_runs(struct mstr s, uint32_t run_len[HEX_MAX_RUNS])
{
    if (s.len < HEX_MIN || s.len > HEX_MAX) return 0;
    unsigned n = 0;
    uint32_t start = 0;
    for (uint32_t i = 0; i <= s.len; i++) {
        if (i < s.len && hex_digit((unsigned char)s.ptr[i]) >= 0) continue;
        if (i < s.len && s.ptr[i] != '-') return 0;
        if (i == start || n == HEX_MAX_RUNS) return 0; /* an empty run, or too many */
        run_len[n++] = i - start;
        start = i + 1;
    }
    return n;
}

static void put_hex(struct enc *e, struct mstr s, const uint32_t *run_len, unsigned n_runs)
{
    put_byte(e, HEX_STRING);
    put_v(e, n_runs);
    for (unsigned r = 0; r < n_runs; r++)
        put_v(e, run_len[r]);
    uint8_t packed[HEX_MAX / 2];
    size_t n = 0;
    bool low = false;
    for (uint32_t i = 0; i < s.len; i++) {
        int v = hex_digit((unsigned char)s.ptr[i]);
        if (v < 0) continue; /* a '-' between runs */
        if (low)
            packed[n++] |= (uint8_t)v;
        else
            packed[n] = (uint8_t)(v << 4);
        low = !low;
    }
    if (low) n++; /* an odd count: the last byte's low nibble is 0 */
    put_bytes(e, packed, n);
}

static void put_attr_list(struct enc *e, const struct attr *items, uint32_t n, int depth);

static void put_value(struct enc *e, const struct value *v, int depth)
{
    if (depth >= CODEC_MAX_DEPTH) {
        put_byte(e, VALUE_EMPTY); /* see CODEC_MAX_DEPTH */
        return;
    }
    if (v->type == VALUE_STRING) {
        uint32_t run_len[HEX_MAX_RUNS];
        unsigned n_runs = hex_runs(v->u.str, run_len);
        if (n_runs) {
            put_hex(e, v->u.str, run_len, n_runs);
            return;
        }
    }
    put_byte(e, (uint8_t)v->type);
    switch (v->type) {
    case VALUE_STRING:
    case VALUE_BYTES:
        put_str(e, v->u.str);
        break;
    case VALUE_BOOL:
        put_byte(e, v->u.b ? 1 : 0);
        break;
    case VALUE_INT:
        put_z(e, v->u.i);
        break;
    case VALUE_DOUBLE: {
        uint64_t bits;
        uint8_t le[8];
        memcpy(&bits, &v->u.d, 8);
        for (int i = 0; i < 8; i++) le[i] = (uint8_t)(bits >> (8 * i));
        put_bytes(e, le, 8);
        break;
    }
    case VALUE_ARRAY:
        put_v(e, v->u.array.n);
        for (uint32_t i = 0; i < v->u.array.n; i++) put_value(e, &v->u.array.items[i], depth + 1);
        break;
    case VALUE_KVLIST:
        put_attr_list(e, v->u.kvlist.items, v->u.kvlist.n, depth + 1);
        break;
    case VALUE_EMPTY:
    default:
        break;
    }
}

static void put_attr_list(struct enc *e, const struct attr *items, uint32_t n, int depth)
{
    put_v(e, n);
    for (uint32_t i = 0; i < n; i++) {
        put_str(e, items[i].key);
        put_value(e, &items[i].value, depth);
    }
}

static void put_attrs(struct enc *e, const struct attrs *a)
{
    put_v(e, a->n);
    put_v(e, a->dropped);
    for (uint32_t i = 0; i < a->n; i++) {
        put_str(e, a->items[i].key);
        put_value(e, &a->items[i].value, 0);
    }
}

/* Index of p in list (appending it if new); list has room for n_spans entries. */
static size_t dedup(const void **list, size_t *n, const void *p)
{
    for (size_t i = *n; i-- > 0;) /* newest first: consecutive spans share the same one */
        if (list[i] == p) return i;
    list[*n] = p;
    return (*n)++;
}

int codec_encode_chunk(struct buf *out, const struct span *const *spans, size_t n)
{
    struct enc e = {.b = out};
    int rc = -ENOMEM;
    const void **res = malloc((n ? n : 1) * sizeof *res);
    const void **scopes = malloc((n ? n : 1) * sizeof *scopes);
    size_t *res_idx = malloc((n ? n : 1) * sizeof *res_idx);
    size_t *scope_idx = malloc((n ? n : 1) * sizeof *scope_idx);
    if (!res || !scopes || !res_idx || !scope_idx) goto done;

    size_t n_res = 0, n_scopes = 0;
    for (size_t i = 0; i < n; i++) {
        res_idx[i] = spans[i]->resource ? dedup(res, &n_res, spans[i]->resource) + 1 : 0;
        scope_idx[i] = spans[i]->scope ? dedup(scopes, &n_scopes, spans[i]->scope) + 1 : 0;
    }

    put_byte(&e, CODEC_VERSION);
    put_v(&e, n_res);
    for (size_t i = 0; i < n_res; i++) {
        const struct resource *r = res[i];
        put_attrs(&e, &r->attrs);
        put_str(&e, r->schema_url);
    }
    put_v(&e, n_scopes);
    for (size_t i = 0; i < n_scopes; i++) {
        const struct scope *sc = scopes[i];
        put_str(&e, sc->name);
        put_str(&e, sc->version);
        put_attrs(&e, &sc->attrs);
        put_str(&e, sc->schema_url);
    }
    put_v(&e, n);
    uint64_t prev_start = 0;
    for (size_t i = 0; i < n; i++) {
        const struct span *s = spans[i];
        put_v(&e, res_idx[i]);
        put_v(&e, scope_idx[i]);
        unsigned ids = s->has_parent ? IDS_PARENT : 0;
        if (i && memcmp(s->trace_id, spans[i - 1]->trace_id, 16) == 0) ids |= IDS_SAME_TRACE;
        size_t parent = i;
        if (s->has_parent) /* nearest first: a child usually follows its parent closely */
            for (size_t j = i; j-- > 0 && i - j <= 64;)
                if (memcmp(spans[j]->span_id, s->parent_span_id, 8) == 0 &&
                    memcmp(spans[j]->trace_id, s->trace_id, 16) == 0) {
                    parent = j;
                    ids |= IDS_PARENT_REF;
                    break;
                }
        put_byte(&e, (uint8_t)ids);
        if (!(ids & IDS_SAME_TRACE)) put_bytes(&e, s->trace_id, 16);
        put_bytes(&e, s->span_id, 8);
        if (ids & IDS_PARENT_REF)
            put_v(&e, i - parent - 1);
        else if (s->has_parent)
            put_bytes(&e, s->parent_span_id, 8);
        put_str(&e, s->trace_state);
        put_v(&e, s->flags);
        put_str(&e, s->name);
        put_v(&e, (uint64_t)s->kind);
        put_z(&e, (int64_t)(s->start_unix_nano - prev_start));
        prev_start = s->start_unix_nano;
        put_z(&e, (int64_t)(s->end_unix_nano - s->start_unix_nano));
        put_attrs(&e, &s->attrs);
        put_v(&e, s->n_events);
        put_v(&e, s->dropped_events);
        for (uint32_t j = 0; j < s->n_events; j++) {
            const struct span_event *ev = &s->events[j];
            put_z(&e, (int64_t)(ev->time_unix_nano - s->start_unix_nano));
            put_str(&e, ev->name);
            put_attrs(&e, &ev->attrs);
        }
        put_v(&e, s->n_links);
        put_v(&e, s->dropped_links);
        for (uint32_t j = 0; j < s->n_links; j++) {
            const struct span_link *l = &s->links[j];
            put_bytes(&e, l->trace_id, 16);
            put_bytes(&e, l->span_id, 8);
            put_str(&e, l->trace_state);
            put_attrs(&e, &l->attrs);
            put_v(&e, l->flags);
        }
        put_v(&e, (uint64_t)s->status_code);
        put_str(&e, s->status_message);
    }
    rc = e.oom ? -ENOMEM : 0;
done:
    free(res);
    free(scopes);
    free(res_idx);
    free(scope_idx);
    return rc;
}

/* ----- decoder ----------------------------------------------------------------------------- */

/* Decoding state: the first failure sets err and every later read fails fast. */
struct dec {
    const uint8_t *p;
    const uint8_t *end;
    struct arena *arena;
    int version;
    int err;
};

static void fail(struct dec *d, int err)
{
    if (!d->err) d->err = err;
}

static uint64_t get_v(struct dec *d)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (d->err || d->p >= d->end) break;
        uint8_t byte = *d->p++;
        if (shift == 63 && byte > 1) break; /* more than 64 bits */
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return v;
    }
    fail(d, -EINVAL);
    return 0;
}

static int64_t get_z(struct dec *d)
{
    uint64_t v = get_v(d);
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static uint32_t get_u32(struct dec *d)
{
    uint64_t v = get_v(d);
    if (v > UINT32_MAX) fail(d, -EINVAL);
    return d->err ? 0 : (uint32_t)v;
}

/* A count of elements that each take at least one more byte. */
static uint32_t get_count(struct dec *d)
{
    uint32_t n = get_u32(d);
    if (n > (size_t)(d->end - d->p)) fail(d, -EINVAL);
    return d->err ? 0 : n;
}

static const uint8_t *get_raw(struct dec *d, size_t n)
{
    if (d->err || (size_t)(d->end - d->p) < n) {
        fail(d, -EINVAL);
        return NULL;
    }
    const uint8_t *p = d->p;
    d->p += n;
    return p;
}

static uint8_t get_byte(struct dec *d)
{
    const uint8_t *p = get_raw(d, 1);
    return p ? *p : 0;
}

static void get_id(struct dec *d, uint8_t *out, size_t n)
{
    const uint8_t *p = get_raw(d, n);
    if (p) memcpy(out, p, n);
}

static struct mstr get_str(struct dec *d)
{
    struct mstr s = {NULL, 0};
    uint64_t n = get_v(d);
    if (d->err || n == 0) return s;
    if (n - 1 > (size_t)(d->end - d->p)) {
        fail(d, -EINVAL);
        return s;
    }
    const uint8_t *p = get_raw(d, (size_t)(n - 1));
    char *copy = arena_strndup(d->arena, (const char *)p, (size_t)(n - 1));
    if (!copy) {
        fail(d, -ENOMEM);
        return s;
    }
    s.ptr = copy;
    s.len = (uint32_t)(n - 1);
    return s;
}

static void *get_array(struct dec *d, uint32_t n, size_t elem)
{
    if (d->err || n == 0) return NULL;
    void *p = arena_alloc(d->arena, (size_t)n * elem);
    if (!p) fail(d, -ENOMEM);
    return p;
}

/* A HEX_STRING's payload (after its type byte) as the string it packs. */
static struct mstr get_hex(struct dec *d)
{
    struct mstr s = {NULL, 0};
    uint32_t n_runs = get_u32(d), run_len[HEX_MAX_RUNS];
    if (n_runs == 0 || n_runs > HEX_MAX_RUNS) fail(d, -EINVAL);
    size_t digits = 0;
    for (uint32_t r = 0; r < n_runs && !d->err; r++) {
        run_len[r] = get_u32(d);
        if (run_len[r] == 0 || run_len[r] > HEX_MAX) fail(d, -EINVAL);
        digits += run_len[r];
    }
    size_t len = digits + n_runs - 1;
    if (!d->err && (len < HEX_MIN || len > HEX_MAX)) fail(d, -EINVAL); /* never written */
    const uint8_t *p = get_raw(d, (digits + 1) / 2);
    if (!p) return s;
    if ((digits & 1) && (p[digits / 2] & 0x0f)) { /* only one encoding per string */
        fail(d, -EINVAL);
        return s;
    }
    char *out = arena_alloc(d->arena, len + 1);
    if (!out) {
        fail(d, -ENOMEM);
        return s;
    }
    static const char xd[] = "0123456789abcdef";
    size_t o = 0, k = 0;
    for (uint32_t r = 0; r < n_runs; r++) {
        if (r) out[o++] = '-';
        for (uint32_t i = 0; i < run_len[r]; i++, k++)
            out[o++] = xd[(k & 1) ? p[k / 2] & 0x0f : p[k / 2] >> 4];
    }
    out[o] = '\0';
    s.ptr = out;
    s.len = (uint32_t)len;
    return s;
}

static void get_attr_items(struct dec *d, struct attr **items, uint32_t *n_out, int depth);

static void get_value(struct dec *d, struct value *v, int depth)
{
    if (depth >= CODEC_MAX_DEPTH) {
        fail(d, -EINVAL);
        return;
    }
    uint8_t type = get_byte(d);
    if (d->err) return;
    if (type == HEX_STRING && d->version >= 3) {
        v->u.str = get_hex(d);
        v->type = VALUE_STRING;
        return;
    }
    switch (type) {
    case VALUE_EMPTY:
        break;
    case VALUE_STRING:
    case VALUE_BYTES:
        v->u.str = get_str(d);
        if (!d->err && !v->u.str.ptr) v->u.str.ptr = ""; /* a value always has a string */
        break;
    case VALUE_BOOL: {
        uint8_t b = get_byte(d);
        if (b > 1) fail(d, -EINVAL);
        v->u.b = b == 1;
        break;
    }
    case VALUE_INT:
        v->u.i = get_z(d);
        break;
    case VALUE_DOUBLE: {
        const uint8_t *le = get_raw(d, 8);
        if (!le) break;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits |= (uint64_t)le[i] << (8 * i);
        memcpy(&v->u.d, &bits, 8);
        break;
    }
    case VALUE_ARRAY: {
        uint32_t n = get_count(d);
        struct value *items = get_array(d, n, sizeof *items);
        for (uint32_t i = 0; i < n && !d->err; i++) get_value(d, &items[i], depth + 1);
        v->u.array.items = items;
        v->u.array.n = d->err ? 0 : n;
        break;
    }
    case VALUE_KVLIST:
        get_attr_items(d, &v->u.kvlist.items, &v->u.kvlist.n, depth + 1);
        break;
    default:
        fail(d, -EINVAL);
        return;
    }
    v->type = (enum value_type)type;
}

static void get_attr_items(struct dec *d, struct attr **items, uint32_t *n_out, int depth)
{
    uint32_t n = get_count(d);
    struct attr *a = get_array(d, n, sizeof *a);
    for (uint32_t i = 0; i < n && !d->err; i++) {
        a[i].key = get_str(d);
        if (!d->err && !a[i].key.ptr) a[i].key.ptr = "";
        get_value(d, &a[i].value, depth);
    }
    *items = a;
    *n_out = d->err ? 0 : n;
}

static void get_attrs(struct dec *d, struct attrs *a)
{
    uint32_t n = get_count(d);
    a->dropped = get_u32(d);
    a->items = get_array(d, n, sizeof *a->items);
    for (uint32_t i = 0; i < n && !d->err; i++) {
        a->items[i].key = get_str(d);
        if (!d->err && !a->items[i].key.ptr) a->items[i].key.ptr = "";
        get_value(d, &a->items[i].value, 0);
    }
    a->n = d->err ? 0 : n;
}

/* Span i of the chunk into s; chunk[0..i) are the spans decoded before it (version 2 refers to
 * them). */
static void get_span(struct dec *d, int version, const struct span *chunk, uint32_t i,
                     struct span *s, struct resource **res, uint32_t n_res, struct scope **scopes,
                     uint32_t n_scopes)
{
    uint32_t ri = get_u32(d), si = get_u32(d);
    if (ri > n_res || si > n_scopes) fail(d, -EINVAL);
    if (d->err) return;
    s->resource = ri ? res[ri - 1] : NULL;
    s->scope = si ? scopes[si - 1] : NULL;
    if (version == 1) {
        get_id(d, s->trace_id, 16);
        get_id(d, s->span_id, 8);
        uint8_t hp = get_byte(d);
        if (hp > 1) fail(d, -EINVAL);
        s->has_parent = hp == 1;
        if (s->has_parent) get_id(d, s->parent_span_id, 8);
    } else {
        uint8_t ids = get_byte(d);
        if (ids > (IDS_PARENT | IDS_SAME_TRACE | IDS_PARENT_REF) ||
            ((ids & IDS_PARENT_REF) && !(ids & IDS_PARENT)) || ((ids & IDS_SAME_TRACE) && !i))
            fail(d, -EINVAL);
        if (d->err) return;
        if (ids & IDS_SAME_TRACE)
            memcpy(s->trace_id, chunk[i - 1].trace_id, 16);
        else
            get_id(d, s->trace_id, 16);
        get_id(d, s->span_id, 8);
        s->has_parent = ids & IDS_PARENT;
        if (ids & IDS_PARENT_REF) {
            uint64_t back = get_v(d);
            if (back >= i) fail(d, -EINVAL);
            if (d->err) return;
            memcpy(s->parent_span_id, chunk[i - 1 - back].span_id, 8);
        } else if (s->has_parent) {
            get_id(d, s->parent_span_id, 8);
        }
    }
    s->trace_state = get_str(d);
    s->flags = get_u32(d);
    s->name = get_str(d);
    uint64_t kind = get_v(d);
    if (kind > SPAN_KIND_CONSUMER) fail(d, -EINVAL);
    s->kind = (enum span_kind)kind;
    if (version == 1)
        s->start_unix_nano = get_v(d);
    else
        s->start_unix_nano = (i ? chunk[i - 1].start_unix_nano : 0) + (uint64_t)get_z(d);
    s->end_unix_nano = s->start_unix_nano + (uint64_t)get_z(d);
    get_attrs(d, &s->attrs);

    uint32_t n_events = get_count(d);
    s->dropped_events = get_u32(d);
    s->events = get_array(d, n_events, sizeof *s->events);
    for (uint32_t j = 0; j < n_events && !d->err; j++) {
        struct span_event *ev = &s->events[j];
        ev->time_unix_nano = s->start_unix_nano + (uint64_t)get_z(d);
        ev->name = get_str(d);
        get_attrs(d, &ev->attrs);
    }
    s->n_events = d->err ? 0 : n_events;

    uint32_t n_links = get_count(d);
    s->dropped_links = get_u32(d);
    s->links = get_array(d, n_links, sizeof *s->links);
    for (uint32_t j = 0; j < n_links && !d->err; j++) {
        struct span_link *l = &s->links[j];
        get_id(d, l->trace_id, 16);
        get_id(d, l->span_id, 8);
        l->trace_state = get_str(d);
        get_attrs(d, &l->attrs);
        l->flags = get_u32(d);
    }
    s->n_links = d->err ? 0 : n_links;

    uint64_t code = get_v(d);
    if (code > STATUS_ERROR) fail(d, -EINVAL);
    s->status_code = (enum status_code)code;
    s->status_message = get_str(d);
}

int codec_decode_chunk(const uint8_t *p, size_t len, struct span_batch *b)
{
    struct dec d = {.p = p, .end = p + len, .arena = b->arena};
    uint32_t first = b->n_spans;

    int version = get_byte(&d);
    if (version < 1 || version > CODEC_VERSION) fail(&d, -EINVAL);
    d.version = version;
    uint32_t n_res = get_count(&d);
    struct resource **res = get_array(&d, n_res, sizeof *res);
    for (uint32_t i = 0; i < n_res && !d.err; i++) {
        res[i] = arena_alloc(b->arena, sizeof **res);
        if (!res[i]) {
            fail(&d, -ENOMEM);
            break;
        }
        get_attrs(&d, &res[i]->attrs);
        res[i]->schema_url = get_str(&d);
    }
    uint32_t n_scopes = get_count(&d);
    struct scope **scopes = get_array(&d, n_scopes, sizeof *scopes);
    for (uint32_t i = 0; i < n_scopes && !d.err; i++) {
        scopes[i] = arena_alloc(b->arena, sizeof **scopes);
        if (!scopes[i]) {
            fail(&d, -ENOMEM);
            break;
        }
        scopes[i]->name = get_str(&d);
        scopes[i]->version = get_str(&d);
        get_attrs(&d, &scopes[i]->attrs);
        scopes[i]->schema_url = get_str(&d);
    }
    uint32_t n = get_count(&d);
    for (uint32_t i = 0; i < n && !d.err; i++) {
        struct span *s = span_batch_add(b);
        if (!s) {
            fail(&d, -ENOMEM);
            break;
        }
        get_span(&d, version, b->spans + first, i, s, res, n_res, scopes, n_scopes);
    }
    if (!d.err && d.p != d.end) fail(&d, -EINVAL); /* trailing bytes */
    if (d.err) b->n_spans = first;
    return d.err;
}
