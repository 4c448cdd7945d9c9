/*
 * batch_equal.h: deep comparison of two decoded span batches (header-only, static functions),
 * for the differential fuzz target fuzz_otlp_wire.c and test_otlp.c's test_wire_matches_protoc:
 * two decoders of the same request must produce the same model.
 *
 * Compared by content: span count (and that of access-log records, not compared further: the
 * trace decoders make none), rejected count and reason, every span field (the parent id
 * only when has_parent), attributes recursively (doubles bitwise, so NaN equals NaN; strings and
 * bytes by length and bytes), events, links, status, and the resource and scope each span points
 * at. Pointer identity differs between decoders, but the sharing must not: spans i and i-1 share
 * a resource (scope) in a exactly when they do in b. Every string must also be NUL-terminated at
 * ptr[len] in both batches.
 *
 * On the first difference, batch_equal writes a short path into why (e.g.
 * "span 3 attrs[2].value: string differs") and returns false.
 */
#ifndef MESHSCOPE_BATCH_EQUAL_H
#define MESHSCOPE_BATCH_EQUAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "storage.h"

/* Writes "<where>: <fmt...>" into why; returns false for the caller to pass up. */
static bool beq_fail(char *why, size_t whylen, const char *where, const char *fmt, ...)
{
    if (!why || !whylen) return false;
    int n = snprintf(why, whylen, "%s: ", where);
    if (n < 0 || (size_t)n >= whylen) return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why + n, whylen - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

/* Both strings NUL-terminated at ptr[len] and equal by length and bytes (NULL = absent, equal
 * only to NULL). */
static bool beq_mstr(struct mstr a, struct mstr b, const char *kind, const char *where, char *why,
                     size_t whylen)
{
    if (!a.ptr || !b.ptr) {
        if (a.ptr || b.ptr)
            return beq_fail(why, whylen, where, "%s absent in %s only", kind, a.ptr ? "b" : "a");
        return true;
    }
    if (a.ptr[a.len] != '\0') return beq_fail(why, whylen, where, "%s not NUL-terminated in a", kind);
    if (b.ptr[b.len] != '\0') return beq_fail(why, whylen, where, "%s not NUL-terminated in b", kind);
    if (a.len != b.len)
        return beq_fail(why, whylen, where, "%s length %u vs %u", kind, a.len, b.len);
    if (a.len && memcmp(a.ptr, b.ptr, a.len) != 0)
        return beq_fail(why, whylen, where, "%s differs", kind);
    return true;
}

static bool beq_attr_items(const struct attr *a, uint32_t na, const struct attr *b, uint32_t nb,
                           const char *where, char *why, size_t whylen);

static bool beq_value(const struct value *a, const struct value *b, const char *where, char *why,
                      size_t whylen)
{
    if (a->type != b->type)
        return beq_fail(why, whylen, where, "type %d vs %d", (int)a->type, (int)b->type);
    switch (a->type) {
    case VALUE_EMPTY: return true;
    case VALUE_STRING: return beq_mstr(a->u.str, b->u.str, "string", where, why, whylen);
    case VALUE_BYTES: return beq_mstr(a->u.str, b->u.str, "bytes", where, why, whylen);
    case VALUE_BOOL:
        if (a->u.b != b->u.b) return beq_fail(why, whylen, where, "bool differs");
        return true;
    case VALUE_INT:
        if (a->u.i != b->u.i)
            return beq_fail(why, whylen, where, "int %lld vs %lld", (long long)a->u.i,
                            (long long)b->u.i);
        return true;
    case VALUE_DOUBLE:
        if (memcmp(&a->u.d, &b->u.d, sizeof a->u.d) != 0)
            return beq_fail(why, whylen, where, "double %g vs %g", a->u.d, b->u.d);
        return true;
    case VALUE_ARRAY: {
        if (a->u.array.n != b->u.array.n)
            return beq_fail(why, whylen, where, "array of %u vs %u", a->u.array.n, b->u.array.n);
        for (uint32_t i = 0; i < a->u.array.n; i++) {
            char w[512];
            snprintf(w, sizeof w, "%.400s[%u]", where, i);
            if (!beq_value(&a->u.array.items[i], &b->u.array.items[i], w, why, whylen))
                return false;
        }
        return true;
    }
    case VALUE_KVLIST:
        return beq_attr_items(a->u.kvlist.items, a->u.kvlist.n, b->u.kvlist.items, b->u.kvlist.n,
                              where, why, whylen);
    default: return beq_fail(why, whylen, where, "unknown value type %d", (int)a->type);
    }
}

static bool beq_attr_items(const struct attr *a, uint32_t na, const struct attr *b, uint32_t nb,
                           const char *where, char *why, size_t whylen)
{
    if (na != nb) return beq_fail(why, whylen, where, "%u vs %u items", na, nb);
    for (uint32_t i = 0; i < na; i++) {
        char w[512];
        snprintf(w, sizeof w, "%.400s[%u].key", where, i);
        if (!beq_mstr(a[i].key, b[i].key, "string", w, why, whylen)) return false;
        snprintf(w, sizeof w, "%.400s[%u].value", where, i);
        if (!beq_value(&a[i].value, &b[i].value, w, why, whylen)) return false;
    }
    return true;
}

static bool beq_attrs(const struct attrs *a, const struct attrs *b, const char *where, char *why,
                      size_t whylen)
{
    if (a->dropped != b->dropped)
        return beq_fail(why, whylen, where, "dropped %u vs %u", a->dropped, b->dropped);
    return beq_attr_items(a->items, a->n, b->items, b->n, where, why, whylen);
}

static bool beq_resource(const struct resource *a, const struct resource *b, const char *where,
                         char *why, size_t whylen)
{
    char w[256];
    if (!a || !b) {
        if (a || b) return beq_fail(why, whylen, where, "absent in %s only", a ? "b" : "a");
        return true;
    }
    snprintf(w, sizeof w, "%.200s.attrs", where);
    if (!beq_attrs(&a->attrs, &b->attrs, w, why, whylen)) return false;
    snprintf(w, sizeof w, "%.200s.schema_url", where);
    return beq_mstr(a->schema_url, b->schema_url, "string", w, why, whylen);
}

static bool beq_scope(const struct scope *a, const struct scope *b, const char *where, char *why,
                      size_t whylen)
{
    char w[256];
    if (!a || !b) {
        if (a || b) return beq_fail(why, whylen, where, "absent in %s only", a ? "b" : "a");
        return true;
    }
    snprintf(w, sizeof w, "%.200s.name", where);
    if (!beq_mstr(a->name, b->name, "string", w, why, whylen)) return false;
    snprintf(w, sizeof w, "%.200s.version", where);
    if (!beq_mstr(a->version, b->version, "string", w, why, whylen)) return false;
    snprintf(w, sizeof w, "%.200s.attrs", where);
    if (!beq_attrs(&a->attrs, &b->attrs, w, why, whylen)) return false;
    snprintf(w, sizeof w, "%.200s.schema_url", where);
    return beq_mstr(a->schema_url, b->schema_url, "string", w, why, whylen);
}

#define BEQ_NUM(fa, fb, name)                                                                    \
    do {                                                                                         \
        if ((fa) != (fb))                                                                        \
            return beq_fail(why, whylen, where, "%s %llu vs %llu", name,                          \
                            (unsigned long long)(fa), (unsigned long long)(fb));                 \
    } while (0)

static bool beq_span(const struct span *a, const struct span *b, const char *where, char *why,
                     size_t whylen)
{
    char w[256];
    if (memcmp(a->trace_id, b->trace_id, 16) != 0)
        return beq_fail(why, whylen, where, "trace_id differs");
    if (memcmp(a->span_id, b->span_id, 8) != 0)
        return beq_fail(why, whylen, where, "span_id differs");
    BEQ_NUM(a->has_parent, b->has_parent, "has_parent");
    if (a->has_parent && memcmp(a->parent_span_id, b->parent_span_id, 8) != 0)
        return beq_fail(why, whylen, where, "parent_span_id differs");
    snprintf(w, sizeof w, "%.200s trace_state", where);
    if (!beq_mstr(a->trace_state, b->trace_state, "string", w, why, whylen)) return false;
    BEQ_NUM(a->flags, b->flags, "flags");
    snprintf(w, sizeof w, "%.200s name", where);
    if (!beq_mstr(a->name, b->name, "string", w, why, whylen)) return false;
    BEQ_NUM(a->kind, b->kind, "kind");
    BEQ_NUM(a->start_unix_nano, b->start_unix_nano, "start_unix_nano");
    BEQ_NUM(a->end_unix_nano, b->end_unix_nano, "end_unix_nano");
    snprintf(w, sizeof w, "%.200s attrs", where);
    if (!beq_attrs(&a->attrs, &b->attrs, w, why, whylen)) return false;
    BEQ_NUM(a->n_events, b->n_events, "n_events");
    BEQ_NUM(a->dropped_events, b->dropped_events, "dropped_events");
    for (uint32_t e = 0; e < a->n_events; e++) {
        const struct span_event *ea = &a->events[e], *eb = &b->events[e];
        if (ea->time_unix_nano != eb->time_unix_nano)
            return beq_fail(why, whylen, where, "events[%u].time_unix_nano differs", e);
        snprintf(w, sizeof w, "%.200s events[%u].name", where, e);
        if (!beq_mstr(ea->name, eb->name, "string", w, why, whylen)) return false;
        snprintf(w, sizeof w, "%.200s events[%u].attrs", where, e);
        if (!beq_attrs(&ea->attrs, &eb->attrs, w, why, whylen)) return false;
    }
    BEQ_NUM(a->n_links, b->n_links, "n_links");
    BEQ_NUM(a->dropped_links, b->dropped_links, "dropped_links");
    for (uint32_t l = 0; l < a->n_links; l++) {
        const struct span_link *la = &a->links[l], *lb = &b->links[l];
        if (memcmp(la->trace_id, lb->trace_id, 16) != 0)
            return beq_fail(why, whylen, where, "links[%u].trace_id differs", l);
        if (memcmp(la->span_id, lb->span_id, 8) != 0)
            return beq_fail(why, whylen, where, "links[%u].span_id differs", l);
        if (la->flags != lb->flags)
            return beq_fail(why, whylen, where, "links[%u].flags %u vs %u", l, la->flags,
                            lb->flags);
        snprintf(w, sizeof w, "%.200s links[%u].trace_state", where, l);
        if (!beq_mstr(la->trace_state, lb->trace_state, "string", w, why, whylen)) return false;
        snprintf(w, sizeof w, "%.200s links[%u].attrs", where, l);
        if (!beq_attrs(&la->attrs, &lb->attrs, w, why, whylen)) return false;
    }
    BEQ_NUM(a->status_code, b->status_code, "status_code");
    snprintf(w, sizeof w, "%.200s status_message", where);
    if (!beq_mstr(a->status_message, b->status_message, "string", w, why, whylen)) return false;
    snprintf(w, sizeof w, "%.200s resource", where);
    if (!beq_resource(a->resource, b->resource, w, why, whylen)) return false;
    snprintf(w, sizeof w, "%.200s scope", where);
    return beq_scope(a->scope, b->scope, w, why, whylen);
}

#undef BEQ_NUM

static bool batch_equal(const struct span_batch *a, const struct span_batch *b, char *why,
                        size_t whylen)
{
    if (why && whylen) why[0] = '\0';
    if (a->n_spans != b->n_spans)
        return beq_fail(why, whylen, "batch", "n_spans %u vs %u", a->n_spans, b->n_spans);
    if (a->n_logs != b->n_logs)
        return beq_fail(why, whylen, "batch", "n_logs %u vs %u", a->n_logs, b->n_logs);
    if (a->rejected != b->rejected)
        return beq_fail(why, whylen, "batch", "rejected %u vs %u", a->rejected, b->rejected);
    if (!a->reject_reason != !b->reject_reason)
        return beq_fail(why, whylen, "batch", "reject_reason absent in %s only",
                        a->reject_reason ? "b" : "a");
    if (a->reject_reason && strcmp(a->reject_reason, b->reject_reason) != 0)
        return beq_fail(why, whylen, "batch", "reject_reason \"%s\" vs \"%s\"", a->reject_reason,
                        b->reject_reason);
    for (uint32_t i = 0; i < a->n_spans; i++) {
        const struct span *sa = &a->spans[i], *sb = &b->spans[i];
        char where[32];
        snprintf(where, sizeof where, "span %u", i);
        if (!beq_span(sa, sb, where, why, whylen)) return false;
        /* The sharing of resources and scopes: spans are appended in request order, so each
         * ResourceSpans' (ScopeSpans') spans are contiguous and comparing neighbours gives the
         * partition (linear: a fuzz input may hold thousands of spans). */
        if (i == 0) continue;
        bool ra = sa->resource == a->spans[i - 1].resource;
        bool rb = sb->resource == b->spans[i - 1].resource;
        if (ra != rb)
            return beq_fail(why, whylen, where, "shares its resource with span %u in %s only",
                            i - 1, ra ? "a" : "b");
        bool ca = sa->scope == a->spans[i - 1].scope;
        bool cb = sb->scope == b->spans[i - 1].scope;
        if (ca != cb)
            return beq_fail(why, whylen, where, "shares its scope with span %u in %s only", i - 1,
                            ca ? "a" : "b");
    }
    return true;
}

#endif
