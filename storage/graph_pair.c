/*
 * graph_pair.c: what the service graph needs to count each request once when both proxies of a
 * call log it, and when its spans are sent too (README "Access logs", "service graph"). Shared by
 * the two places that count the graph, so they cannot disagree: the RED engine
 * (collector/red.c, traces_service_graph_*) and the edge rollups (store.c, /api/graph and
 * /api/dependencies).
 *
 * - The side of a record: an inbound record (the callee's proxy) is the server half of a call,
 *   any other record with a destination service (the caller's proxy, nginx, HAProxy) its client
 *   half; a record without a destination draws no edge.
 * - The pairing key: both halves of one call carry the same x-request-id (Envoy propagates it,
 *   and so does every Istio application), but so do all the hops of one end-user request. The
 *   called service tells the hops apart: the client half names it as its destination
 *   (upstream_cluster's host, nginx's upstream), the server half as its own service. Key =
 *   hash(request id, else trace id; called service). Two calls of one request to the same
 *   service share a key: they pair first come, first served, which keeps the counts exact.
 * - Request marks: fingerprints of a request's trace id and request id. Spans (CLIENT/SERVER)
 *   leave them in a recent set; a record whose mark is there is already counted by its spans.
 *   Envoy's tracer tags its spans guid:x-request-id; OpenTelemetry's HTTP instrumentation
 *   records the header as http.request.header.x-request-id (an array of strings).
 * - The recent set: a direct-mapped table of (mark, time). Bounded by construction; a mark
 *   overwritten by another (a busy mesh) is forgotten early, which can only let a record count
 *   again, never hide one (marks are compared whole, 64 bits).
 *
 * Pure functions and a single-threaded table (red.c keeps one per shard, under the shard lock).
 */
#include "storage_int.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t finish(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1; /* 0 is the empty slot / "no mark" */
}

static const uint64_t FNV_BASIS = 0xcbf29ce484222325ULL;

static bool present(const struct mstr *m)
{
    return m->ptr && m->len;
}

enum alog_side access_log_graph_side(const struct access_log *l)
{
    if (l->response_code < 0) return ALOG_SIDE_NONE; /* not a request (an application log) */
    if (l->direction == ALOG_DIRECTION_INBOUND) return ALOG_SIDE_SERVER;
    return present(&l->str[ALOG_DESTINATION_SERVICE]) ? ALOG_SIDE_CLIENT : ALOG_SIDE_NONE;
}

struct mstr access_log_callee(const struct access_log *l)
{
    if (l->direction == ALOG_DIRECTION_INBOUND)
        return present(&l->str[ALOG_SERVICE]) ? l->str[ALOG_SERVICE]
                                              : (struct mstr){"unknown_service", 15};
    return l->str[ALOG_DESTINATION_SERVICE];
}

bool access_log_pair_key(const struct access_log *l, uint64_t *key /* OUT */)
{
    if (access_log_graph_side(l) == ALOG_SIDE_NONE) return false;
    uint64_t h = FNV_BASIS;
    const struct mstr *rid = &l->str[ALOG_REQUEST_ID];
    if (present(rid)) {
        h = fnv(h, "R", 1);
        h = fnv(h, rid->ptr, rid->len);
    } else if (l->has_trace_id) {
        h = fnv(h, "T", 1);
        h = fnv(h, l->trace_id, 16);
    } else {
        return false;
    }
    struct mstr callee = access_log_callee(l);
    h = fnv(h, "\0", 1);
    h = fnv(h, callee.ptr, callee.len);
    *key = finish(h);
    return true;
}

static uint64_t trace_mark(const uint8_t trace_id[16])
{
    return finish(fnv(fnv(FNV_BASIS, "T", 1), trace_id, 16));
}

static uint64_t request_mark(const char *p, size_t n)
{
    return finish(fnv(fnv(FNV_BASIS, "R", 1), p, n));
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

unsigned access_log_request_marks(const struct access_log *l, uint64_t out[2])
{
    unsigned n = 0;
    if (l->has_trace_id && !all_zero(l->trace_id, 16)) out[n++] = trace_mark(l->trace_id);
    const struct mstr *rid = &l->str[ALOG_REQUEST_ID];
    if (present(rid)) out[n++] = request_mark(rid->ptr, rid->len);
    return n;
}

static bool key_is(struct mstr k, const char *lit, size_t n)
{
    return k.len == n && memcmp(k.ptr, lit, n) == 0;
}

unsigned span_request_marks(const struct span *s, uint64_t out[2])
{
    if (s->kind != SPAN_KIND_CLIENT && s->kind != SPAN_KIND_SERVER) return 0;
    unsigned n = 0;
    out[n++] = trace_mark(s->trace_id);
    for (uint32_t i = 0; i < s->attrs.n; i++) {
        const struct attr *a = &s->attrs.items[i];
        if (!key_is(a->key, "guid:x-request-id", 17) &&
            !key_is(a->key, "http.request.header.x-request-id", 32) &&
            !key_is(a->key, "x-request-id", 12))
            continue;
        const struct value *v = &a->value;
        if (v->type == VALUE_ARRAY && v->u.array.n > 0) v = &v->u.array.items[0];
        if (v->type == VALUE_STRING && v->u.str.len) {
            out[n++] = request_mark(v->u.str.ptr, v->u.str.len);
            break;
        }
    }
    return n;
}

unsigned span_batch_request_marks(const struct span_batch *b, uint32_t i, uint64_t out[2])
{
    if (!b->prepared) return span_request_marks(&b->spans[i], out);
    unsigned n = b->prepared->span_flags[i] & PREP_N_MARKS;
    for (unsigned k = 0; k < n; k++)
        out[k] = b->prepared->marks[i][k];
    return n;
}

bool span_batch_is_error(const struct span_batch *b, uint32_t i)
{
    if (!b->prepared) return span_is_error(&b->spans[i]);
    return (b->prepared->span_flags[i] & PREP_ERROR) != 0;
}

struct recent_set {
    uint32_t mask;
    struct {
        uint64_t mark;
        int64_t at;
    } slot[];
};

struct recent_set *recent_set_create(uint32_t slots)
{
    uint32_t n = 1;
    while (n < slots && n < (1u << 30))
        n <<= 1;
    struct recent_set *r = calloc(1, sizeof *r + (size_t)n * sizeof r->slot[0]);
    if (!r) return NULL;
    r->mask = n - 1;
    return r;
}

void recent_set_destroy(struct recent_set *r)
{
    free(r);
}

void recent_set_add(struct recent_set *r, uint64_t mark, int64_t now)
{
    uint32_t i = (uint32_t)(mark >> 7) & r->mask;
    r->slot[i].mark = mark;
    r->slot[i].at = now;
}

bool recent_set_has(const struct recent_set *r, uint64_t mark, int64_t since)
{
    uint32_t i = (uint32_t)(mark >> 7) & r->mask;
    return r->slot[i].mark == mark && r->slot[i].at >= since;
}
