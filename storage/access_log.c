/*
 * access_log.c: the stored form of one access-log record (the access_logs.data column, before
 * zstd), written by store.c and read by store_read.c.
 *
 * Layout, little effort and forward compatible:
 *   u8   version (1)
 *   u8   flags: bit 0 trace id present, bit 1 span id present, bits 2-3 direction
 *   varint time_unix_nano
 *   5 x zigzag varint: response_code, bytes_received, bytes_sent, duration_ms,
 *                      upstream_service_time_ms (-1 = absent)
 *   [16 bytes trace id] [8 bytes span id]
 *   version 1 (rows of the v3-v5 access_logs table):
 *     varint n = number of string fields that follow (ALOG_STR_COUNT when written)
 *     n x (varint len+1, 0 = absent; then len bytes)
 *   version 2 (records in blocks, schema v6), the same with the raw line first and the fields
 *   that appear in it verbatim (most values of a JSON line: the decoder says where, in
 *   raw_ref) stored as a reference into it, so the writer compresses each value once (zstd's
 *   cost is per input byte):
 *     varint raw len+1 (0 = absent), raw bytes
 *     varint n
 *     n x varint tag: 0 absent; odd: a literal of (tag - 1) / 2 bytes follows; even: the
 *       (tag - 2) / 2 bytes of the raw line at the varint offset that follows. The raw
 *       field's own slot is written absent.
 * A reader that knows fewer fields skips the extra ones; one that knows more leaves them absent.
 */
#include "storage_int.h"

#include <errno.h>
#include <string.h>

static int put_varint(struct buf *b, uint64_t v)
{
    if (buf_reserve(b, 10)) return -ENOMEM;
    while (v >= 0x80) {
        b->p[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->p[b->len++] = (uint8_t)v;
    return 0;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Values shorter than this are stored as literals (a reference would not be smaller). */
#define ALOG_REF_MIN 4

int alog_encode(struct buf *out, const struct access_log *l)
{
    if (buf_reserve(out, 2 + 16 + 8)) return -ENOMEM;
    out->p[out->len++] = 2;
    out->p[out->len++] = (uint8_t)((l->has_trace_id ? 1 : 0) | (l->has_span_id ? 2 : 0) |
                                   (((unsigned)l->direction & 3u) << 2));
    int rc = put_varint(out, l->time_unix_nano);
    const int64_t nums[5] = {l->response_code, l->bytes_received, l->bytes_sent, l->duration_ms,
                             l->upstream_service_time_ms};
    for (int i = 0; i < 5 && !rc; i++) rc = put_varint(out, zigzag(nums[i]));
    if (rc || buf_reserve(out, 24)) return -ENOMEM;
    if (l->has_trace_id) {
        memcpy(out->p + out->len, l->trace_id, 16);
        out->len += 16;
    }
    if (l->has_span_id) {
        memcpy(out->p + out->len, l->span_id, 8);
        out->len += 8;
    }
    const struct mstr *raw = &l->str[ALOG_RAW];
    if (put_varint(out, raw->ptr ? (uint64_t)raw->len + 1 : 0)) return -ENOMEM;
    if (raw->ptr && raw->len) {
        if (buf_reserve(out, raw->len)) return -ENOMEM;
        memcpy(out->p + out->len, raw->ptr, raw->len);
        out->len += raw->len;
    }
    if (put_varint(out, ALOG_STR_COUNT)) return -ENOMEM;
    for (int i = 0; i < ALOG_STR_COUNT; i++) {
        const struct mstr *m = &l->str[i];
        if (!m->ptr || i == ALOG_RAW) {
            if (put_varint(out, 0)) return -ENOMEM;
            continue;
        }
        uint32_t ref = l->raw_ref[i];
        const char *at = raw->ptr && ref && m->len >= ALOG_REF_MIN && ref - 1 <= raw->len &&
                                 m->len <= raw->len - (ref - 1) &&
                                 memcmp(raw->ptr + ref - 1, m->ptr, m->len) == 0
                             ? raw->ptr + ref - 1
                             : NULL;
        if (at) {
            if (put_varint(out, 2 + 2 * (uint64_t)m->len) ||
                put_varint(out, (uint64_t)(at - raw->ptr)))
                return -ENOMEM;
            continue;
        }
        if (put_varint(out, 1 + 2 * (uint64_t)m->len) || buf_reserve(out, m->len))
            return -ENOMEM;
        if (m->len) memcpy(out->p + out->len, m->ptr, m->len);
        out->len += m->len;
    }
    return 0;
}

struct rd {
    const uint8_t *p, *end;
    bool bad;
};

static uint64_t get_varint(struct rd *d)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (d->p >= d->end) break;
        uint8_t c = *d->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
    }
    d->bad = true;
    return 0;
}

/* Parses one record into *l: strings copied into arena, or, arena NULL, pointing into p (not
 * NUL-terminated). 0, -EINVAL or -ENOMEM. */
static int alog_parse(const uint8_t *p, size_t len, struct access_log *l, struct arena *arena)
{
    struct rd d = {p, p + len, false};
    if (len < 2 || (p[0] != 1 && p[0] != 2)) return -EINVAL;
    uint8_t version = p[0], flags = p[1];
    d.p += 2;
    memset(l, 0, sizeof *l);
    l->has_trace_id = flags & 1;
    l->has_span_id = (flags & 2) != 0;
    l->direction = (enum alog_direction)((flags >> 2) & 3);
    l->time_unix_nano = get_varint(&d);
    int64_t *nums[5] = {&l->response_code, &l->bytes_received, &l->bytes_sent, &l->duration_ms,
                        &l->upstream_service_time_ms};
    for (int i = 0; i < 5; i++) *nums[i] = unzigzag(get_varint(&d));
    if (l->has_trace_id) {
        if (d.end - d.p < 16) return -EINVAL;
        memcpy(l->trace_id, d.p, 16);
        d.p += 16;
    }
    if (l->has_span_id) {
        if (d.end - d.p < 8) return -EINVAL;
        memcpy(l->span_id, d.p, 8);
        d.p += 8;
    }
    const char *raw = NULL; /* version 2: the raw line, in p */
    uint64_t raw_len = 0;
    if (version == 2 && (raw_len = get_varint(&d)) > 0) {
        raw_len--;
        if (raw_len > (uint64_t)(d.end - d.p)) return -EINVAL;
        raw = (const char *)d.p;
        d.p += raw_len;
        const char *s = raw;
        if (arena && !(s = arena_strndup(arena, raw, (size_t)raw_len))) return -ENOMEM;
        l->str[ALOG_RAW] = (struct mstr){s, (uint32_t)raw_len};
    }
    uint64_t n = get_varint(&d);
    for (uint64_t i = 0; i < n && !d.bad; i++) {
        uint64_t tag = get_varint(&d), sl;
        const char *s;
        if (tag == 0) continue;
        if (version == 1 || (tag & 1)) { /* a literal */
            sl = version == 1 ? tag - 1 : (tag - 1) / 2;
            if (sl > (uint64_t)(d.end - d.p)) return -EINVAL;
            s = (const char *)d.p;
            d.p += sl;
        } else {
            sl = (tag - 2) / 2;
            uint64_t off = get_varint(&d);
            if (!raw || off > raw_len || sl > raw_len - off) return -EINVAL;
            s = raw + off;
        }
        if (i < ALOG_STR_COUNT && (version == 1 || i != ALOG_RAW)) {
            if (arena && !(s = arena_strndup(arena, s, (size_t)sl))) return -ENOMEM;
            l->str[i] = (struct mstr){s, (uint32_t)sl};
        }
    }
    return d.bad || d.p != d.end ? -EINVAL : 0;
}

int alog_decode(const uint8_t *p, size_t len, struct span_batch *b)
{
    struct access_log *l = span_batch_add_log(b);
    if (!l) return -ENOMEM;
    int rc = alog_parse(p, len, l, b->arena);
    if (rc) span_batch_drop_last_log(b);
    return rc;
}

int alog_view(const uint8_t *p, size_t len, struct access_log *out)
{
    return alog_parse(p, len, out, NULL);
}

/* ----- blocks --------------------------------------------------------------------------------
 * A block (access_log_blocks.data before zstd): u8 version (1), then per record a varint length
 * and the record's encoding. */

int alog_block_start(struct buf *out)
{
    out->len = 0;
    if (buf_reserve(out, 1)) return -ENOMEM;
    out->p[out->len++] = 1;
    return 0;
}

int alog_block_add(struct buf *out, const struct access_log *l, size_t *rec_off)
{
    /* Encoded in place behind a 3-byte varint (non-minimal when short; readers accept that),
     * which holds lengths below 2 MiB; a longer record is moved up by the bytes it needs. */
    size_t at = out->len;
    if (buf_reserve(out, 3)) return -ENOMEM;
    out->len += 3;
    int rc = alog_encode(out, l);
    if (rc) {
        out->len = at;
        return rc;
    }
    size_t len = out->len - at - 3;
    if (len < (1u << 21)) {
        out->p[at] = (uint8_t)(len | 0x80);
        out->p[at + 1] = (uint8_t)((len >> 7) | 0x80);
        out->p[at + 2] = (uint8_t)(len >> 14);
        *rec_off = at + 3;
        return 0;
    }
    uint8_t head[10];
    size_t n = 0;
    for (uint64_t v = len; v >= 0x80; v >>= 7) head[n++] = (uint8_t)(v | 0x80);
    head[n] = (uint8_t)(len >> (7 * n));
    n++;
    if (buf_reserve(out, n - 3)) {
        out->len = at;
        return -ENOMEM;
    }
    memmove(out->p + at + n, out->p + at + 3, len);
    memcpy(out->p + at, head, n);
    out->len = at + n + len;
    *rec_off = at + n;
    return 0;
}

int alog_block_open(struct alog_block_iter *it, const uint8_t *p, size_t len)
{
    if (len < 1 || p[0] != 1) return -EINVAL;
    it->p = p + 1;
    it->end = p + len;
    return 0;
}

int alog_block_next(struct alog_block_iter *it, const uint8_t **rec, size_t *len)
{
    if (it->p == it->end) return 0;
    struct rd d = {it->p, it->end, false};
    uint64_t n = get_varint(&d);
    if (d.bad || n > (uint64_t)(d.end - d.p)) return -EINVAL;
    *rec = d.p;
    *len = (size_t)n;
    it->p = d.p + n;
    return 1;
}

/* ----- bloom filters of a block's trace and request keys --------------------------------------
 * ALOG_BLOOM_BITS_PER_KEY bits per key (at least 64), ALOG_BLOOM_K probes by double hashing of a
 * mixed key: about 1% false positives, each costing one block decoded for nothing. */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

size_t alog_bloom_bytes(size_t n_keys)
{
    size_t bits = n_keys * ALOG_BLOOM_BITS_PER_KEY;
    if (bits < 64) bits = 64;
    return (bits + 7) / 8;
}

void alog_bloom_add(uint8_t *bloom, size_t bytes, int64_t key)
{
    uint64_t h = mix64((uint64_t)key), m = (uint64_t)bytes * 8;
    uint32_t h1 = (uint32_t)h, h2 = (uint32_t)(h >> 32) | 1;
    for (uint32_t i = 0; i < ALOG_BLOOM_K; i++) {
        uint64_t bit = ((uint64_t)h1 + (uint64_t)i * h2) % m;
        bloom[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    }
}

bool alog_bloom_maybe(const uint8_t *bloom, size_t bytes, int64_t key)
{
    if (!bytes) return false;
    uint64_t h = mix64((uint64_t)key), m = (uint64_t)bytes * 8;
    uint32_t h1 = (uint32_t)h, h2 = (uint32_t)(h >> 32) | 1;
    for (uint32_t i = 0; i < ALOG_BLOOM_K; i++) {
        uint64_t bit = ((uint64_t)h1 + (uint64_t)i * h2) % m;
        if (!(bloom[bit >> 3] & (1u << (bit & 7)))) return false;
    }
    return true;
}
