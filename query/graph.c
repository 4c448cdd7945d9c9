/*
 * graph.c: the service-graph API for the dashboard, GET /api/graph?start=&end=&namespace=.
 *
 * The store sums its edge rollups for the window (store_graph: 10 s buckets, 1 min for data
 * older than 6 h, persisted in SQLite, so the graph survives a restart and a 24 h window reads a
 * few thousand rows per edge); this file parses the parameters and renders JSON.
 *
 * Parameters: start, end: epoch microseconds, as the Jaeger API takes them (default: end = now,
 * start = end - 15 min); namespace: keep only edges with a service of that namespace
 * (service.namespace / k8s.namespace.name of its resource) at either end. Unknown parameters are
 * ignored. A bad value gets 400 with Jaeger's error body naming the parameter:
 * {"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":400,"msg":"..."}]}.
 *
 * Response (200, application/json):
 *
 *   {"start": µs, "end": µs,
 *    "nodes": [{"id": "service:reviews" | "virtual:redis" | "user",
 *               "name": "reviews", "namespace": "default" (or ""),
 *               "kind": "service" | "virtual" | "user",
 *               "requests": N, "rps": x, "errors": N, "error_rate": x,
 *               "p50_ms": x, "p95_ms": x, "p99_ms": x}, ...],
 *    "edges": [{"source": node id, "target": node id,
 *               "connection_type": "" | "messaging_system" | "database" | "virtual_node",
 *               "requests": N, "rps": x, "errors": N, "error_rate": x,
 *               "p50_ms": x, "p95_ms": x, "p99_ms": x}, ...]}
 *
 * A node's numbers are its inbound requests (the sum of the edges into it; 0 for "user"). rps is
 * requests per second over the whole window; error_rate is errors / requests (0 without
 * requests). Percentiles are interpolated from the rollups' quarter-octave latency histogram
 * (within ~19%), rounded to the microsecond, and null when nothing in the window carries a
 * latency (no requests, or rollups migrated from a v1 database). Nodes come sorted user first,
 * then services, then virtual nodes, each by name; edges by source and target in that order.
 * Node ids are prefixed by kind, so a service named "user" and a peer named like a service
 * stay distinct.
 */
#include "query_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRAPH_DEFAULT_WINDOW_US (15 * 60 * 1000000LL) /* the dashboard's default view */

/* A latency in ms rounded to the microsecond, or null. */
static void put_ms(struct sbuf *b, double ms)
{
    if (isnan(ms))
        sb_puts(b, "null");
    else
        sb_double(b, (double)(int64_t)(ms * 1000.0 + 0.5) / 1000.0); /* ms >= 0; no libm */
}

static void put_red(struct sbuf *b, const struct graph_red *r)
{
    sb_puts(b, ",\"requests\":");
    sb_uint(b, r->requests);
    sb_puts(b, ",\"rps\":");
    sb_double(b, r->rate);
    sb_puts(b, ",\"errors\":");
    sb_uint(b, r->errors);
    sb_puts(b, ",\"error_rate\":");
    sb_double(b, r->error_rate);
    sb_puts(b, ",\"p50_ms\":");
    put_ms(b, r->p50_ms);
    sb_puts(b, ",\"p95_ms\":");
    put_ms(b, r->p95_ms);
    sb_puts(b, ",\"p99_ms\":");
    put_ms(b, r->p99_ms);
}

static const char *const kind_names[] = {
    [GRAPH_NODE_SERVICE] = "service", [GRAPH_NODE_VIRTUAL] = "virtual", [GRAPH_NODE_USER] = "user"};

static void put_node_id(struct sbuf *b, const struct graph_node *n)
{
    if (n->kind == GRAPH_NODE_USER) {
        sb_puts(b, "\"user\"");
        return;
    }
    /* "service:" / "virtual:" then the name, as one JSON string. */
    const char *prefix = n->kind == GRAPH_NODE_SERVICE ? "service:" : "virtual:";
    size_t pl = strlen(prefix), nl = strlen(n->name);
    char *id = malloc(pl + nl + 1);
    if (!id) {
        b->error = b->error ? b->error : -ENOMEM;
        return;
    }
    memcpy(id, prefix, pl);
    memcpy(id + pl, n->name, nl + 1);
    sb_json_str(b, id, pl + nl);
    free(id);
}

void graph_render(struct sbuf *b, const struct graph *g)
{
    sb_puts(b, "{\"start\":");
    sb_int(b, g->start_us);
    sb_puts(b, ",\"end\":");
    sb_int(b, g->end_us);
    sb_puts(b, ",\"nodes\":[");
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct graph_node *n = &g->nodes[i];
        if (i) sb_putc(b, ',');
        sb_puts(b, "{\"id\":");
        put_node_id(b, n);
        sb_puts(b, ",\"name\":");
        sb_json_cstr(b, n->name);
        sb_puts(b, ",\"namespace\":");
        sb_json_cstr(b, n->namespace);
        sb_puts(b, ",\"kind\":\"");
        sb_puts(b, kind_names[n->kind]);
        sb_putc(b, '"');
        put_red(b, &n->inbound);
        sb_putc(b, '}');
    }
    sb_puts(b, "],\"edges\":[");
    for (size_t i = 0; i < g->n_edges; i++) {
        const struct graph_edge *e = &g->edges[i];
        if (i) sb_putc(b, ',');
        sb_puts(b, "{\"source\":");
        put_node_id(b, &g->nodes[e->source]);
        sb_puts(b, ",\"target\":");
        put_node_id(b, &g->nodes[e->target]);
        sb_puts(b, ",\"connection_type\":");
        sb_json_cstr(b, e->connection_type);
        put_red(b, &e->red);
        sb_putc(b, '}');
    }
    sb_puts(b, "]}");
}

int graph_query_handle(struct store *st, const struct query_arg *args, size_t n_args,
                       struct query_response *resp)
{
    if (!args) n_args = 0;
    char err[QUERY_ERRMSG];
    int64_t start, end;
    bool has_start, has_end;
    if (param_int64(args, n_args, "start", &start, &has_start, err) ||
        param_int64(args, n_args, "end", &end, &has_end, err)) {
        query_respond_error(resp, 400, err);
        return 0;
    }
    if (!has_end) end = query_now_us();
    if (!has_start) start = end - GRAPH_DEFAULT_WINDOW_US;
    if (start >= end) {
        snprintf(err, sizeof err, "parameter 'start' (%lld) must be before 'end' (%lld)",
                 (long long)start, (long long)end);
        query_respond_error(resp, 400, err);
        return 0;
    }
    const char *ns = query_arg(args, n_args, "namespace");
    struct graph *g = NULL;
    int rc = store_graph(st, start, end, ns, &g);
    if (rc) {
        snprintf(err, sizeof err, "service graph: %s", strerror(-rc));
        query_respond_error(resp, rc == -ENOMEM || rc == -EBUSY ? 503 : 500, err);
        return 0;
    }
    struct sbuf b;
    sb_init(&b, QUERY_MAX_BODY);
    graph_render(&b, g);
    store_free_graph(g);
    query_respond_json(resp, &b);
    return 0;
}
