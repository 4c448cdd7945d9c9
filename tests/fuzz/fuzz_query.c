/*
 * fuzz_query.c: libFuzzer target for the query APIs' parameter parsing and rendering
 * (query_handle: Jaeger v1, Zipkin v2, /api/graph, /api/logs), run against a small real store.
 *
 * Input: the first line is the path (forced under /api/), each further line one "key=value"
 * query argument (repeats allowed). The oracle: no crash, leak or overrun; every answer has a
 * status the API documents; every JSON body is valid JSON (jansson parses it), and only errors
 * (Zipkin's, by its API) are text.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "query.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct store *st;

/* A few spans so searches, traces and dependencies have something to find. */
static void seed(void)
{
    struct span_batch *b = span_batch_create();
    static const char *const services[] = {"productpage", "reviews", "ratings"};
    for (int t = 0; t < 8; t++) {
        for (int i = 0; i < 3; i++) {
            struct resource *r = arena_alloc(b->arena, sizeof *r);
            r->attrs.items = arena_alloc(b->arena, sizeof *r->attrs.items);
            r->attrs.n = 1;
            r->attrs.items[0].key = (struct mstr){"service.name", 12};
            r->attrs.items[0].value.type = VALUE_STRING;
            r->attrs.items[0].value.u.str = (struct mstr){services[i], (uint32_t)strlen(services[i])};
            struct span *s = span_batch_add(b);
            for (int k = 0; k < 16; k++) s->trace_id[k] = (uint8_t)(t * 16 + k + 1);
            for (int k = 0; k < 8; k++) s->span_id[k] = (uint8_t)(i * 8 + k + 1);
            if (i > 0) {
                for (int k = 0; k < 8; k++) s->parent_span_id[k] = (uint8_t)((i - 1) * 8 + k + 1);
                s->has_parent = true;
            }
            s->name = (struct mstr){"GET /x", 6};
            s->kind = i == 0 ? SPAN_KIND_SERVER : SPAN_KIND_CLIENT;
            s->start_unix_nano = (uint64_t)(1700000000 + t) * 1000000000u;
            s->end_unix_nano = s->start_unix_nano + 1000000u * (uint64_t)(i + 1);
            s->status_code = t % 3 == 0 ? STATUS_ERROR : STATUS_UNSET;
            s->resource = r;
        }
    }
    /* Access-log records for /api/logs (request ids "req-0".."req-5", 200s and 503s). */
    for (int i = 0; i < 6; i++) {
        struct access_log *l = span_batch_add_log(b);
        if (!l) abort();
        l->time_unix_nano = (uint64_t)(1700000000 + i) * 1000000000u;
        l->response_code = i % 2 ? 503 : 200;
        l->duration_ms = i * 40;
        l->str[ALOG_SERVICE] = (struct mstr){"reviews", 7};
        static const char *const rids[] = {"req-0", "req-1", "req-2", "req-3", "req-4", "req-5"};
        l->str[ALOG_REQUEST_ID] = (struct mstr){rids[i], 5};
        l->str[ALOG_DESTINATION_SERVICE] = (struct mstr){"ratings", 7};
        l->has_trace_id = true;
        for (int k = 0; k < 16; k++) l->trace_id[k] = (uint8_t)(i % 8 * 16 + k + 1);
    }
    store_put_batches(st, &b, 1);
    span_batch_destroy(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    atomic_store(&log_min_level, LOG_ERROR + 1); /* quiet */
    static char path[64];
    snprintf(path, sizeof path, "/tmp/meshscope-fuzz-query-%d.db", (int)getpid());
    struct store_options o = {.path = path};
    st = store_open(&o);
    if (!st) abort();
    seed();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct query_arg args[64];
    size_t n = 0;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    char pathbuf[512];
    snprintf(pathbuf, sizeof pathbuf, "/api/%s", line ? line : "");
    while (n < 64 && (line = strtok_r(NULL, "\n", &save))) {
        char *eq = strchr(line, '=');
        if (eq) *eq = '\0';
        args[n].key = line;
        args[n].value = eq ? eq + 1 : "";
        n++;
    }
    struct query_response resp = {0};
    int rc = query_handle(st, pathbuf, args, n, &resp);
    if (rc == 0) {
        if (resp.status != 200 && resp.status != 400 && resp.status != 404 && resp.status != 500 &&
            resp.status != 503)
            abort();
        /* JSON bodies must be valid JSON; Zipkin's errors are text/plain by its API. */
        if (strncmp(resp.content_type, "application/json", 16) == 0) {
            json_error_t err;
            json_t *j = json_loadb(resp.body, resp.len, JSON_ALLOW_NUL, &err);
            if (!j) abort();
            json_decref(j);
        } else if (strncmp(resp.content_type, "text/plain", 10) != 0 || resp.status == 200) {
            abort(); /* only an error may be text */
        }
        free(resp.body);
    }
    free(text);
    return 0;
}
