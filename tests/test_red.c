/*
 * test_red.c: unit tests of the RED module (collector/red*.c): label derivation from semantic
 * conventions and Istio proxy tags, histogram bucketing, service-graph pairing (OpenTelemetry
 * parent/child and Zipkin shared spans), virtual nodes, the cardinality guard, and the
 * exposition formats (escaping, OpenMetrics names, exemplars, negotiation, gzip).
 *
 * Spans are described by small tables ("key=value" attributes, "key:=123" for ints, "key?=true"
 * for bools); every test renders the text format and looks for exact sample lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "red.h"

/* ----- building spans ----------------------------------------------------------------------- */

#define MAX_KV 16

struct spec {
    const char *res[MAX_KV];   /* resource attributes */
    const char *attrs[MAX_KV]; /* span attributes */
    enum span_kind kind;
    const char *name;
    uint8_t trace, id, parent; /* one-byte ids (0 parent = root) */
    double ms;                 /* duration */
    enum status_code status;
};

static struct mstr ms(struct arena *a, const char *s, size_t n)
{
    return (struct mstr){arena_strndup(a, s, n), (uint32_t)n};
}

static void fill_attrs(struct arena *a, struct attrs *out, const char *const *kv)
{
    uint32_t n = 0;
    while (n < MAX_KV && kv[n]) n++;
    out->items = arena_alloc(a, (n ? n : 1) * sizeof(struct attr));
    out->n = n;
    for (uint32_t i = 0; i < n; i++) {
        const char *s = kv[i];
        const char *eq = strchr(s, '=');
        struct attr *at = &out->items[i];
        if (eq > s && eq[-1] == ':') {
            at->key = ms(a, s, (size_t)(eq - 1 - s));
            at->value.type = VALUE_INT;
            at->value.u.i = strtoll(eq + 1, NULL, 10);
        } else if (eq > s && eq[-1] == '?') {
            at->key = ms(a, s, (size_t)(eq - 1 - s));
            at->value.type = VALUE_BOOL;
            at->value.u.b = strcmp(eq + 1, "true") == 0;
        } else {
            at->key = ms(a, s, (size_t)(eq - s));
            at->value.type = VALUE_STRING;
            at->value.u.str = ms(a, eq + 1, strlen(eq + 1));
        }
    }
}

static void add_span(struct span_batch *b, const struct spec *sp)
{
    struct resource *res = arena_alloc(b->arena, sizeof *res);
    fill_attrs(b->arena, &res->attrs, sp->res);
    struct span *s = span_batch_add(b);
    s->trace_id[15] = sp->trace ? sp->trace : 1;
    s->trace_id[0] = 0xab;
    s->span_id[7] = sp->id;
    s->span_id[0] = 0xcd;
    if (sp->parent) {
        s->parent_span_id[7] = sp->parent;
        s->parent_span_id[0] = 0xcd;
        s->has_parent = true;
    }
    s->kind = sp->kind;
    const char *name = sp->name ? sp->name : "GET";
    s->name = ms(b->arena, name, strlen(name));
    s->start_unix_nano = UINT64_C(1700000000000000000);
    s->end_unix_nano = s->start_unix_nano + (uint64_t)(sp->ms * 1e6);
    s->status_code = sp->status;
    fill_attrs(b->arena, &s->attrs, sp->attrs);
    s->resource = res;
}

static void observe(struct red *r, const struct spec *specs, size_t n)
{
    struct span_batch *b = span_batch_create();
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) add_span(b, &specs[i]);
    red_observe_batch(r, b);
    span_batch_destroy(b);
}

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

static struct red *new_red(uint32_t limit, uint32_t pending)
{
    struct red_options o = {.series_limit = limit, .pending_limit = pending,
                            .pending_ttl_ms = 10000, .now_ms = fake_clock};
    fake_now = 1000;
    struct red *r = red_create(&o);
    assert_non_null(r);
    return r;
}

static char *render(struct red *r, bool om)
{
    char *out;
    size_t len;
    assert_int_equal(red_render(r, om, &out, &len), 0);
    assert_int_equal(strlen(out), len);
    return out;
}

/* Expire every pending half (moves the fake clock past the TTL) and render text. */
static char *render_expired(struct red *r)
{
    fake_now += 60000;
    red_expire(r);
    return render(r, false);
}

/* The first line starting with prefix (and containing all of needles, NULL-terminated). */
static const char *find_line(const char *text, const char *prefix, const char *const *needles,
                             char *line, size_t cap)
{
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n >= pl && memcmp(p, prefix, pl) == 0 && n < cap) {
            memcpy(line, p, n);
            line[n] = 0;
            bool all = true;
            for (size_t i = 0; needles && needles[i]; i++)
                if (!strstr(line, needles[i])) all = false;
            if (all) return line;
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* Value of label `name` in a sample line ("" if absent), into out. */
static const char *label(const char *line, const char *name, char *out, size_t cap)
{
    char pat[96];
    snprintf(pat, sizeof pat, "%s=\"", name);
    const char *p = line;
    while ((p = strstr(p, pat))) {
        if (p == line || p[-1] == '{' || p[-1] == ',') break;
        p++;
    }
    if (!p) {
        out[0] = 0;
        return out;
    }
    p += strlen(pat);
    size_t n = 0;
    while (p[n] && !(p[n] == '"' && p[n - 1] != '\\') && n + 1 < cap) n++;
    memcpy(out, p, n);
    out[n] = 0;
    return out;
}

static double sample_value(const char *line)
{
    const char *sp = strrchr(line, '}');
    if (!sp) sp = strrchr(line, ' ') - 1;
    return strtod(sp + 2, NULL);
}

/* ----- label derivation ---------------------------------------------------------------------- */

#define BOOKINFO_PP {"service.name=productpage", "k8s.namespace.name=default", \
                     "k8s.deployment.name=productpage-v1", "service.version=v1"}
#define BOOKINFO_REVIEWS {"service.name=reviews", "k8s.namespace.name=default", \
                          "k8s.pod.name=reviews-v2-545db77b95-2zgrp", "k8s.pod.label.app=reviews", \
                          "k8s.pod.label.version=v2", "k8s.cluster.name=east"}

struct label_want {
    const char *name, *value;
};

static const struct label_case {
    const char *what;
    struct spec spans[2];
    size_t n;
    const char *reporter;
    struct label_want want[12];
} label_cases[] = {
    {"OTel client/server pair, destination reporter",
     {{BOOKINFO_PP, {"server.address=reviews", "http.request.method=GET",
                     "http.response.status_code:=200"}, SPAN_KIND_CLIENT, "GET", 1, 1, 0, 12, 0},
      {BOOKINFO_REVIEWS, {"http.request.method=GET", "http.response.status_code:=503",
                          "server.address=reviews:9080"}, SPAN_KIND_SERVER, "GET /reviews/{id}",
       1, 2, 1, 10, 0}},
     2, "destination",
     {{"source_workload", "productpage-v1"}, {"source_workload_namespace", "default"},
      {"source_canonical_service", "productpage"}, {"source_canonical_revision", "v1"},
      {"source_version", "v1"}, {"destination_workload", "reviews-v2"},
      {"destination_app", "reviews"}, {"destination_version", "v2"},
      {"destination_canonical_revision", "v2"}, {"destination_cluster", "east"},
      {"response_code", "503"}, {"request_protocol", "http"}}},
    {"OTel pair, source reporter keeps the client's own response code",
     {{BOOKINFO_PP, {"server.address=reviews", "http.request.method=GET",
                     "http.response.status_code:=200"}, SPAN_KIND_CLIENT, "GET", 1, 1, 0, 12, 0},
      {BOOKINFO_REVIEWS, {"http.response.status_code:=503"}, SPAN_KIND_SERVER, "GET", 1, 2, 1,
       10, 0}},
     2, "source",
     {{"response_code", "200"}, {"destination_service", "reviews"},
      {"destination_service_name", "reviews"}, {"destination_service_namespace", "default"},
      {"destination_workload", "reviews-v2"}, {"source_app", "productpage"},
      {"source_principal", "unknown"}, {"connection_security_policy", "unknown"},
      {"response_flags", "-"}, {"grpc_response_status", ""}, {"source_cluster", "unknown"}}},
    {"Envoy proxy spans (Zipkin shared span, Istio tags)",
     {{{"service.name=productpage.default"},
       {"istio.canonical_service=productpage", "istio.namespace=bookinfo",
        "istio.canonical_revision=v1",
        "upstream_cluster=outbound|9080||reviews.bookinfo.svc.cluster.local",
        "node_id=sidecar~10.1.1.5~productpage-v1-6b746f74dc-9stp2.bookinfo~bookinfo.svc.cluster.local",
        "http.status_code=503", "response_flags=UF,URX", "peer.address=10.1.2.3:9080",
        "http.protocol=HTTP/1.1"},
       SPAN_KIND_CLIENT, "reviews.bookinfo.svc.cluster.local:9080/*", 1, 7, 3, 30, 0},
      {{"service.name=reviews.bookinfo"},
       {"istio.canonical_service=reviews", "istio.namespace=bookinfo",
        "istio.canonical_revision=v3", "zipkin.shared?=true",
        "node_id=sidecar~10.1.2.3~reviews-v3-84779c7bbc-t5lzm.bookinfo~bookinfo.svc.cluster.local",
        "http.status_code=503", "response_flags=UH", "peer.address=10.1.1.5:40000"},
       SPAN_KIND_SERVER, "reviews.bookinfo.svc.cluster.local:9080/*", 1, 7, 3, 29, 0}},
     2, "destination",
     {{"source_workload", "productpage-v1"}, {"source_workload_namespace", "bookinfo"},
      {"source_canonical_service", "productpage"}, {"source_canonical_revision", "v1"},
      {"destination_workload", "reviews-v3"}, {"destination_canonical_revision", "v3"},
      {"destination_service", "reviews.bookinfo.svc.cluster.local"},
      {"destination_service_name", "reviews"}, {"destination_service_namespace", "bookinfo"},
      {"response_flags", "UH"}, {"response_code", "503"}, {"source_app", "productpage"}}},
    {"unpaired client: destination from the called host, identity unknown",
     {{BOOKINFO_PP, {"url.full=http://details.default.svc.cluster.local:9080/details/0?u=1",
                     "http.response.status_code:=200", "peer.address=10.0.0.9:9080"},
       SPAN_KIND_CLIENT, "GET", 2, 1, 0, 5, 0}},
     1, "source",
     {{"destination_service", "details.default.svc.cluster.local"},
      {"destination_service_name", "details"}, {"destination_service_namespace", "default"},
      {"destination_workload", "unknown"}, {"destination_canonical_service", "unknown"},
      {"destination_canonical_revision", "latest"}, {"source_workload", "productpage-v1"}}},
    {"root server span: source unknown, raw peer.address never a label",
     {{{"service.name=ratings", "service.namespace=shop"},
       {"http.status_code=200", "peer.address=10.0.0.7:51234", "rpc.system=grpc",
        "rpc.grpc.status_code:=14"},
       SPAN_KIND_SERVER, "grpc.health.v1.Health/Check", 3, 1, 0, 1, 0}},
     1, "destination",
     {{"source_workload", "unknown"}, {"source_canonical_revision", "latest"},
      {"destination_workload", "ratings"}, {"destination_workload_namespace", "shop"},
      {"destination_service", "ratings"}, {"destination_service_namespace", "shop"},
      {"request_protocol", "grpc"}, {"grpc_response_status", "14"}, {"response_code", "200"},
      {"destination_canonical_revision", "latest"}}},
    {"garbage status code and flags are not labels",
     {{{"service.name=a"}, {"http.status_code=abc", "response_flags=<script>",
                            "server.address=/etc/passwd"},
       SPAN_KIND_CLIENT, "x", 4, 1, 0, 1, 0}},
     1, "source",
     {{"response_code", "unknown"}, {"response_flags", "-"},
      {"destination_service", "unknown"}, {"request_protocol", "unknown"}}},
};

static void test_istio_labels(void **state)
{
    for (size_t c = 0; c < sizeof label_cases / sizeof label_cases[0]; c++) {
        const struct label_case *lc = &label_cases[c];
        struct red *r = new_red(0, 0);
        observe(r, lc->spans, lc->n);
        char *text = render_expired(r);
        char rep[40], line[4096], v[256];
        snprintf(rep, sizeof rep, "reporter=\"%s\"", lc->reporter);
        const char *needles[] = {rep, NULL};
        if (!find_line(text, "istio_requests_total{", needles, line, sizeof line))
            fail_msg("%s: no %s sample in\n%s", lc->what, rep, text);
        for (size_t i = 0; i < 12 && lc->want[i].name; i++) {
            label(line, lc->want[i].name, v, sizeof v);
            if (strcmp(v, lc->want[i].value) != 0)
                fail_msg("%s: %s = \"%s\", want \"%s\"\n%s", lc->what, lc->want[i].name, v,
                         lc->want[i].value, line);
        }
        /* All 25 Istio labels, always. */
        int commas = 0;
        for (const char *p = strchr(line, '{'); *p && *p != '}'; p++)
            if (*p == '"' && p[-1] == '=') commas++;
        if (commas != 25) fail_msg("%s: %d labels, want 25: %s", lc->what, commas, line);
        free(text);
        red_destroy(r);
    }
}

/* ----- histograms ------------------------------------------------------------------------------ */

static void test_histogram_buckets(void **state)
{
    static const struct {
        double ms;
        const char *le; /* first Istio bucket that counts it */
        const char *tempo_le;
    } cases[] = {
        {0.5, "0.5", "0.002"},   {1, "1", "0.002"},      {1.5, "5", "0.002"},
        {100, "100", "0.128"},   {2000, "2500", "2.048"}, {4000000, "+Inf", "+Inf"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct red *r = new_red(0, 0);
        struct spec sp = {{"service.name=s"}, {"http.response.status_code:=200",
                                                "http.request.body.size:=10",
                                                "http.response.body.size:=700"},
                          SPAN_KIND_SERVER, "GET", 1, 1, 0, cases[c].ms, 0};
        observe(r, &sp, 1);
        char *text = render(r, false);
        char want[64], line[4096];
        snprintf(want, sizeof want, "le=\"%s\"} 1", cases[c].le);
        const char *n1[] = {want, NULL};
        if (!find_line(text, "istio_request_duration_milliseconds_bucket{", n1, line, sizeof line))
            fail_msg("%g ms: no bucket line with %s", cases[c].ms, want);
        /* The bucket before it holds 0 (unless it is the first). */
        if (strcmp(cases[c].le, "0.5") != 0) {
            const char *n0[] = {"} 0", NULL};
            assert_non_null(find_line(text, "istio_request_duration_milliseconds_bucket{", n0,
                                      line, sizeof line));
        }
        snprintf(want, sizeof want, "le=\"%s\"} 1", cases[c].tempo_le);
        const char *n2[] = {want, NULL};
        if (!find_line(text, "traces_spanmetrics_latency_bucket{", n2, line, sizeof line))
            fail_msg("%g ms: no span-metrics bucket %s", cases[c].ms, want);
        assert_non_null(find_line(text, "istio_request_duration_milliseconds_count{", NULL, line,
                                  sizeof line));
        assert_true(sample_value(line) == 1);
        assert_non_null(
            find_line(text, "istio_request_duration_milliseconds_sum{", NULL, line, sizeof line));
        assert_true(sample_value(line) > cases[c].ms * 0.999 &&
                    sample_value(line) < cases[c].ms * 1.001);
        const char *n3[] = {"le=\"500\"} 0", NULL};
        assert_non_null(find_line(text, "istio_response_bytes_bucket{", n3, line, sizeof line));
        const char *n4[] = {"le=\"1000\"} 1", NULL};
        assert_non_null(find_line(text, "istio_response_bytes_bucket{", n4, line, sizeof line));
        const char *n5[] = {"le=\"10\"} 1", NULL};
        assert_non_null(find_line(text, "istio_request_bytes_bucket{", n5, line, sizeof line));
        free(text);
        red_destroy(r);
    }
    /* Envoy's boundaries, in order, ending in +Inf. */
    struct red *r = new_red(0, 0);
    struct spec sp = {{"service.name=s"}, {0}, SPAN_KIND_SERVER, "GET", 1, 1, 0, 3, 0};
    observe(r, &sp, 1);
    char *text = render(r, false);
    const char *bounds[] = {"0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000",
                            "2500", "5000", "10000", "30000", "60000", "300000", "600000",
                            "1800000", "3600000", "+Inf"};
    const char *p = text;
    for (size_t i = 0; i < 20; i++) {
        char want[64];
        snprintf(want, sizeof want, "le=\"%s\"}", bounds[i]);
        p = strstr(p, want);
        if (!p) fail_msg("bucket %s missing or out of order", bounds[i]);
    }
    free(text);
    red_destroy(r);
}

/* ----- service graph ----------------------------------------------------------------------- */

static double metric(const char *text, const char *prefix, const char *const *needles)
{
    char line[4096];
    if (!find_line(text, prefix, needles, line, sizeof line)) return -1;
    return sample_value(line);
}

static void test_pairing(void **state)
{
    static const struct {
        const char *what;
        struct spec spans[2];
        bool two_batches;
    } cases[] = {
        {"OTel: server's parent is the client span, client first",
         {{{"service.name=productpage"}, {0}, SPAN_KIND_CLIENT, "GET", 5, 1, 0, 300, 0},
          {{"service.name=reviews"}, {0}, SPAN_KIND_SERVER, "GET", 5, 2, 1, 250, STATUS_ERROR}},
         true},
        {"OTel: server arrives first",
         {{{"service.name=reviews"}, {0}, SPAN_KIND_SERVER, "GET", 5, 2, 1, 250, STATUS_ERROR},
          {{"service.name=productpage"}, {0}, SPAN_KIND_CLIENT, "GET", 5, 1, 0, 300, 0}},
         true},
        {"Zipkin shared span: same id, zipkin.shared on the server half",
         {{{"service.name=productpage"}, {0}, SPAN_KIND_CLIENT, "GET", 5, 1, 9, 300, 0},
          {{"service.name=reviews"}, {"zipkin.shared?=true"}, SPAN_KIND_SERVER, "GET", 5, 1, 9,
           250, STATUS_ERROR}},
         false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct red *r = new_red(0, 0);
        if (cases[c].two_batches) {
            observe(r, &cases[c].spans[0], 1);
            observe(r, &cases[c].spans[1], 1);
        } else {
            observe(r, cases[c].spans, 2);
        }
        char *text = render(r, false); /* no expiry: paired at once */
        const char *edge[] = {"client=\"productpage\",server=\"reviews\",connection_type=\"\"}",
                              NULL};
        if (metric(text, "traces_service_graph_request_total{", edge) != 1)
            fail_msg("%s: no edge\n%s", cases[c].what, text);
        assert_true(metric(text, "traces_service_graph_request_failed_total{", edge) == 1);
        const char *srv[] = {"server=\"reviews\"", "le=\"0.4\"} 1", NULL};
        assert_true(metric(text, "traces_service_graph_request_server_seconds_bucket{", srv) == 1);
        const char *srv2[] = {"server=\"reviews\"", "le=\"0.2\"} 0", NULL};
        assert_true(metric(text, "traces_service_graph_request_server_seconds_bucket{", srv2) ==
                    0);
        const char *cli[] = {"server=\"reviews\"", NULL};
        assert_true(metric(text, "traces_service_graph_request_client_seconds_sum{", cli) > 0.29);
        const char *pend[] = {NULL};
        assert_true(metric(text, "meshscope_service_graph_pending_spans", pend) == 0);
        /* Both Istio reporters, each once. */
        const char *d[] = {"reporter=\"destination\"", "source_canonical_service=\"productpage\"",
                           NULL};
        assert_true(metric(text, "istio_requests_total{", d) == 1);
        const char *s[] = {"reporter=\"source\"", "destination_canonical_service=\"reviews\"",
                           NULL};
        assert_true(metric(text, "istio_requests_total{", s) == 1);
        free(text);
        red_destroy(r);
    }
}

static void test_unpaired_and_virtual_nodes(void **state)
{
    static const struct {
        const char *what;
        struct spec span;
        const char *edge; /* expected edge labels, or NULL = counted unpaired */
    } cases[] = {
        {"peer.service", {{"service.name=a"}, {"peer.service=billing"}, SPAN_KIND_CLIENT, "x",
                          1, 1, 0, 5, 0},
         "client=\"a\",server=\"billing\",connection_type=\"virtual_node\""},
        {"db.name + db.system", {{"service.name=a"}, {"db.system=mysql", "db.name=ratings"},
                                 SPAN_KIND_CLIENT, "SELECT", 1, 1, 0, 5, 0},
         "client=\"a\",server=\"ratings\",connection_type=\"database\""},
        {"db.system alone", {{"service.name=a"}, {"db.system=redis"}, SPAN_KIND_CLIENT, "GET",
                             1, 1, 0, 5, 0},
         "client=\"a\",server=\"redis\",connection_type=\"database\""},
        {"messaging.system on a producer",
         {{"service.name=a"}, {"messaging.system=kafka"}, SPAN_KIND_PRODUCER, "send", 1, 1, 0, 5,
          0},
         "client=\"a\",server=\"kafka\",connection_type=\"messaging_system\""},
        {"server.address", {{"service.name=a"}, {"server.address=api.example.com:443"},
                            SPAN_KIND_CLIENT, "GET", 1, 1, 0, 5, 0},
         "client=\"a\",server=\"api.example.com\",connection_type=\"virtual_node\""},
        {"root server: user", {{"service.name=web"}, {0}, SPAN_KIND_SERVER, "GET", 1, 1, 0, 5, 0},
         "client=\"user\",server=\"web\",connection_type=\"virtual_node\""},
        {"client with nothing", {{"service.name=a"}, {0}, SPAN_KIND_CLIENT, "x", 1, 1, 0, 5, 0},
         NULL},
        {"server whose client never came",
         {{"service.name=b"}, {0}, SPAN_KIND_SERVER, "x", 1, 2, 1, 5, 0}, NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct red *r = new_red(0, 0);
        observe(r, &cases[c].span, 1);
        char *text = render_expired(r);
        if (cases[c].edge) {
            const char *n[] = {cases[c].edge, NULL};
            if (metric(text, "traces_service_graph_request_total{", n) != 1)
                fail_msg("%s: edge %s missing\n%s", cases[c].what, cases[c].edge, text);
        } else {
            const char *n[] = {NULL};
            if (metric(text, "traces_service_graph_unpaired_spans_total{", n) != 1)
                fail_msg("%s: not counted unpaired\n%s", cases[c].what, text);
            assert_true(metric(text, "traces_service_graph_request_total{", n) == -1);
        }
        free(text);
        red_destroy(r);
    }
}

static void test_messaging_pair(void **state)
{
    struct red *r = new_red(0, 0);
    struct spec sp[2] = {
        {{"service.name=orders"}, {"messaging.system=kafka"}, SPAN_KIND_PRODUCER, "publish", 1,
         1, 0, 2, 0},
        {{"service.name=shipping"}, {"messaging.system=kafka"}, SPAN_KIND_CONSUMER, "process", 1,
         2, 1, 40, 0},
    };
    observe(r, sp, 2);
    char *text = render(r, false);
    const char *n[] = {"client=\"orders\",server=\"shipping\",connection_type=\"messaging_system\"",
                       NULL};
    assert_true(metric(text, "traces_service_graph_request_total{", n) == 1);
    const char *i[] = {NULL};
    assert_true(metric(text, "istio_requests_total{", i) == -1); /* not requests */
    free(text);
    red_destroy(r);
}

static void test_pending_cap(void **state)
{
    struct red *r = new_red(0, 2);
    struct spec sp[3] = {
        {{"service.name=a"}, {0}, SPAN_KIND_CLIENT, "x", 1, 1, 0, 1, 0},
        {{"service.name=a"}, {0}, SPAN_KIND_CLIENT, "x", 1, 2, 0, 1, 0},
        {{"service.name=a"}, {0}, SPAN_KIND_CLIENT, "x", 1, 3, 0, 1, 0},
    };
    observe(r, sp, 3);
    char *text = render(r, false);
    const char *n[] = {"client=\"a\"", NULL};
    assert_true(metric(text, "traces_service_graph_dropped_spans_total{", n) == 1);
    const char *p[] = {NULL};
    assert_true(metric(text, "meshscope_service_graph_pending_spans", p) == 2);
    /* The dropped one still counts as a request (reporter=source, destination unknown). */
    const char *s[] = {"reporter=\"source\"", NULL};
    assert_true(metric(text, "istio_requests_total{", s) == 1);
    free(text);
    text = render_expired(r);
    assert_true(metric(text, "traces_service_graph_unpaired_spans_total{", n) == 2);
    assert_true(metric(text, "istio_requests_total{", s) == 3);
    free(text);
    red_destroy(r);
}

/* ----- cardinality guard --------------------------------------------------------------------- */

static void test_overflow_guard(void **state)
{
    struct red *r = new_red(3, 0);
    char names[6][32];
    struct spec sp[6];
    memset(sp, 0, sizeof sp);
    for (int i = 0; i < 6; i++) {
        snprintf(names[i], sizeof names[i], "service.name=svc%d", i);
        sp[i].res[0] = names[i];
        sp[i].kind = SPAN_KIND_INTERNAL;
        sp[i].name = "work";
        sp[i].id = (uint8_t)(i + 1);
        sp[i].ms = 1;
    }
    observe(r, sp, 6);
    observe(r, sp, 1); /* an existing series still counts normally */
    char *text = render(r, false);
    const char *ov[] = {"otel_metric_overflow=\"true\"", NULL};
    assert_true(metric(text, "traces_spanmetrics_calls_total{", ov) == 3);
    assert_true(metric(text, "traces_spanmetrics_latency_count{", ov) == 3);
    const char *s0[] = {"service=\"svc0\"", NULL};
    assert_true(metric(text, "traces_spanmetrics_calls_total{", s0) == 2);
    const char *oc[] = {"metric=\"traces_spanmetrics_calls_total\"", NULL};
    assert_true(metric(text, "meshscope_metrics_overflow_total{", oc) == 3);
    assert_true(metric(text, "meshscope_metrics_series{", oc) == 3);
    int lines = 0;
    for (const char *p = text; (p = strstr(p, "\ntraces_spanmetrics_calls_total{")); p++) lines++;
    assert_int_equal(lines, 4); /* three label sets + the overflow series */
    free(text);
    red_destroy(r);
}

/* ----- exposition ---------------------------------------------------------------------------- */

static void test_escaping(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"plain", "plain"},
        {"quo\"te", "quo\\\"te"},
        {"back\\slash", "back\\\\slash"},
        {"new\nline", "new\\nline"},
        {"bad\xff utf8", "bad\xEF\xBF\xBD utf8"},
        {"caf\xc3\xa9", "caf\xc3\xa9"},
        {"trunc\xc3", "trunc\xEF\xBF\xBD"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct red *r = new_red(0, 0);
        char attr[64];
        snprintf(attr, sizeof attr, "service.name=%s", cases[c].in);
        struct spec sp = {{attr}, {0}, SPAN_KIND_INTERNAL, "op", 1, 1, 0, 1, 0};
        observe(r, &sp, 1);
        char *text = render(r, false);
        char want[128];
        snprintf(want, sizeof want, "traces_spanmetrics_calls_total{service=\"%s\",", cases[c].out);
        if (!strstr(text, want)) fail_msg("escape(%s): want %s in\n%s", cases[c].in, want, text);
        free(text);
        red_destroy(r);
    }
    /* Values are cut at 128 bytes, on a character boundary (é is 2 bytes). */
    char longv[400] = "service.name=";
    for (int i = 0; i < 127; i++) strcat(longv, "x");
    strcat(longv, "\xc3\xa9yyyy");
    struct red *r = new_red(0, 0);
    struct spec sp = {{longv}, {0}, SPAN_KIND_INTERNAL, "op", 1, 1, 0, 1, 0};
    observe(r, &sp, 1);
    char *text = render(r, false);
    char want[200] = "service=\"";
    for (int i = 0; i < 127; i++) strcat(want, "x");
    strcat(want, "\",");
    assert_non_null(strstr(text, want));
    free(text);
    red_destroy(r);
}

static void test_span_name_bounded(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"GET /reviews/12345?user=7", "GET /reviews/{id}"},
        {"GET /api/v1/users/8f14e45f-ceea-467f-a2e4-56b0ab4c0e6a/orders",
         "GET /api/v1/users/{id}/orders"},
        {"POST /checkout#frag", "POST /checkout"},
        {"reviews.default.svc.cluster.local:9080/*", "reviews.default.svc.cluster.local:9080/*"},
        {"SELECT ratings", "SELECT ratings"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct red *r = new_red(0, 0);
        struct spec sp = {{"service.name=s"}, {0}, SPAN_KIND_SERVER, cases[c].in, 1, 1, 0, 1,
                          STATUS_OK};
        observe(r, &sp, 1);
        char *text = render(r, false);
        char want[256];
        snprintf(want, sizeof want,
                 "{service=\"s\",span_name=\"%s\",span_kind=\"SPAN_KIND_SERVER\","
                 "status_code=\"STATUS_CODE_OK\"} 1",
                 cases[c].out);
        if (!strstr(text, want)) fail_msg("span name %s: want %s in\n%s", cases[c].in, want, text);
        free(text);
        red_destroy(r);
    }
}

static void test_openmetrics(void **state)
{
    struct red *r = new_red(0, 0);
    struct spec sp[2] = {
        {{"service.name=productpage"}, {"server.address=reviews"}, SPAN_KIND_CLIENT, "GET", 7,
         1, 0, 300, 0},
        {{"service.name=reviews"}, {"http.response.status_code:=200"}, SPAN_KIND_SERVER, "GET",
         7, 2, 1, 250, 0},
    };
    observe(r, sp, 2);
    const char self[] = "# HELP meshscope_spans_stored_total Spans committed.\n"
                        "# TYPE meshscope_spans_stored_total counter\n"
                        "meshscope_spans_stored_total 5\n"
                        "# HELP meshscope_db_size_bytes Size.\n"
                        "# TYPE meshscope_db_size_bytes gauge\n"
                        "meshscope_db_size_bytes 4096\n";
    struct red_exposition ex;
    assert_int_equal(red_expose(r, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
                                NULL, self, sizeof self - 1, &ex),
                     0);
    assert_string_equal(ex.content_type,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert_null(ex.content_encoding);
    char *t = strndup(ex.body, ex.len);
    free(ex.body);
    static const char *const want[] = {
        "# TYPE meshscope_spans_stored counter\n",
        "# HELP meshscope_spans_stored Spans committed.\n",
        "\nmeshscope_spans_stored_total 5\n",
        "# TYPE meshscope_db_size_bytes gauge\n",
        "# TYPE istio_requests counter\n",
        "# TYPE traces_service_graph_request_failed counter\n",
        "# TYPE traces_service_graph_request_server_seconds histogram\n",
        /* exemplar on a bucket: the server span (trace ab..07, span cd..02), value, time */
        ("le=\"0.4\"} 1 # {trace_id=\"ab000000000000000000000000000007\",span_id=\"cd00000000000002\"} "
         "0.25 1700000000.250\n"),
        /* counters carry one too */
        "connection_type=\"\"} 1 # {trace_id=\"ab000000000000000000000000000007\",",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(t, want[i])) fail_msg("OpenMetrics: want %s in\n%s", want[i], t);
    size_t n = strlen(t);
    assert_true(n > 6 && strcmp(t + n - 6, "# EOF\n") == 0);
    assert_null(strstr(t, "\n\n"));
    assert_null(strstr(t, "# TYPE istio_requests_total"));
    free(t);

    /* Text format: no exemplars, _total family names, no EOF. */
    assert_int_equal(red_expose(r, "text/plain;version=0.0.4", NULL, self, sizeof self - 1, &ex),
                     0);
    assert_string_equal(ex.content_type, "text/plain; version=0.0.4; charset=utf-8");
    t = strndup(ex.body, ex.len);
    free(ex.body);
    assert_non_null(strstr(t, "# TYPE istio_requests_total counter\n"));
    assert_non_null(strstr(t, "# TYPE meshscope_spans_stored_total counter\n"));
    assert_null(strstr(t, " # {"));
    assert_null(strstr(t, "# EOF"));
    free(t);

    /* gzip round trip. */
    assert_int_equal(red_expose(r, NULL, "gzip, deflate", self, sizeof self - 1, &ex), 0);
    assert_string_equal(ex.content_encoding, "gzip");
    z_stream z = {0};
    assert_int_equal(inflateInit2(&z, 31), Z_OK);
    char *plain = malloc(1 << 20);
    z.next_in = (Bytef *)ex.body;
    z.avail_in = (uInt)ex.len;
    z.next_out = (Bytef *)plain;
    z.avail_out = 1 << 20;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    inflateEnd(&z);
    assert_true(z.total_out > 1000);
    assert_true(memcmp(plain, self, sizeof self - 1) == 0);
    free(plain);
    free(ex.body);
    red_destroy(r);
}

static void test_negotiation(void **state)
{
    static const struct {
        const char *accept;
        bool om;
    } acc[] = {
        {NULL, false},
        {"", false},
        {"*/*", false},
        {"text/plain", false},
        /* Prometheus 2.x's scrape Accept header */
        {"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
         "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
         true},
        {"application/openmetrics-text; version=1.0.0", true},
        {"text/plain;q=1, application/openmetrics-text;q=0.5", false},
        {"application/openmetrics-text;q=0", false},
        {"APPLICATION/OpenMetrics-Text", true},
    };
    for (size_t i = 0; i < sizeof acc / sizeof acc[0]; i++)
        if (red_accepts_openmetrics(acc[i].accept) != acc[i].om)
            fail_msg("Accept %s: want openmetrics=%d", acc[i].accept ? acc[i].accept : "(null)",
                     acc[i].om);
    static const struct {
        const char *ae;
        bool gz;
    } enc[] = {
        {NULL, false},       {"identity", false}, {"gzip", true},       {"deflate, gzip", true},
        {"gzip;q=0", false}, {"*", true},         {"br;q=1, *;q=0.1", true},
        {"GZIP", true},
    };
    for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++)
        if (red_accepts_gzip(enc[i].ae) != enc[i].gz)
            fail_msg("Accept-Encoding %s: want gzip=%d", enc[i].ae ? enc[i].ae : "(null)",
                     enc[i].gz);
}

static void test_null_and_empty(void **state)
{
    red_destroy(NULL);
    red_observe_batch(NULL, NULL);
    red_expire(NULL);
    struct red_exposition ex;
    assert_int_equal(red_expose(NULL, NULL, NULL, NULL, 0, &ex), 0);
    assert_int_equal(ex.len, 0);
    free(ex.body);
    struct red *r = new_red(0, 0);
    char *t = render(r, true);
    assert_non_null(strstr(t, "# TYPE istio_requests counter\n"));
    free(t);
    red_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_istio_labels),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_pairing),
        cmocka_unit_test(test_unpaired_and_virtual_nodes),
        cmocka_unit_test(test_messaging_pair),
        cmocka_unit_test(test_pending_cap),
        cmocka_unit_test(test_overflow_guard),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_span_name_bounded),
        cmocka_unit_test(test_openmetrics),
        cmocka_unit_test(test_negotiation),
        cmocka_unit_test(test_null_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
