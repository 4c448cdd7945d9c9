/*
 * red_labels.c: from one span to the label values of the RED metrics.
 *
 * One pass over the span's attributes (and one per distinct resource per batch) picks out the
 * keys of interest through a small static hash table, then each label takes the first source
 * that is present, in the order README's mapping table gives: OpenTelemetry semantic conventions
 * first, the tags Istio's Envoy puts on proxy spans next, "unknown" (or "latest" for a canonical
 * revision) last. Values that are unbounded by nature (paths, ids, URLs, addresses with
 * ephemeral ports) never become label values: only the host part of a URL or address is used,
 * and it must look like a host name.
 *
 * Pure functions of the span; no shared state after the one-time key table set-up.
 */
#include "red_int.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Attribute keys of interest. Order is free; the table below gives each its text. */
enum key {
    K_SERVICE_NAME, K_SERVICE_NAMESPACE, K_SERVICE_VERSION,
    K_K8S_NAMESPACE, K_K8S_DEPLOYMENT, K_K8S_STATEFULSET, K_K8S_DAEMONSET, K_K8S_JOB,
    K_K8S_POD, K_K8S_CLUSTER,
    K_APP, K_VERSION, K_POD_LABEL_APP, K_POD_LABEL_VERSION, K_POD_LABELS_APP,
    K_POD_LABELS_VERSION, K_CANON_NAME_LABEL, K_CANON_REV_LABEL, K_POD_CANON_NAME,
    K_POD_CANON_REV,
    K_ISTIO_CANON_SVC, K_ISTIO_NAMESPACE, K_ISTIO_CANON_REV, K_ISTIO_CLUSTER,
    K_UPSTREAM_CLUSTER, K_UPSTREAM_CLUSTER_NAME, K_RESPONSE_FLAGS, K_NODE_ID,
    K_PEER_SERVICE, K_SERVER_ADDRESS, K_NET_PEER_NAME, K_NET_HOST_NAME, K_HTTP_HOST,
    K_URL_FULL, K_HTTP_URL,
    K_HTTP_RESPONSE_STATUS, K_HTTP_STATUS, K_RPC_GRPC_STATUS, K_GRPC_STATUS, K_RPC_SYSTEM,
    K_HTTP_REQUEST_METHOD, K_HTTP_METHOD, K_NETWORK_PROTOCOL, K_HTTP_PROTOCOL, K_HTTP_FLAVOR,
    K_DB_SYSTEM, K_DB_NAME, K_DB_NAMESPACE, K_MESSAGING_SYSTEM, K_MESSAGING_DESTINATION,
    K_REQUEST_SIZE, K_RESPONSE_SIZE, K_HTTP_REQ_BODY, K_HTTP_RESP_BODY, K_HTTP_REQ_LEN,
    K_HTTP_RESP_LEN, K_ZIPKIN_SHARED,
    K_COUNT
};

static const char *const key_text[K_COUNT] = {
    [K_SERVICE_NAME] = "service.name",
    [K_SERVICE_NAMESPACE] = "service.namespace",
    [K_SERVICE_VERSION] = "service.version",
    [K_K8S_NAMESPACE] = "k8s.namespace.name",
    [K_K8S_DEPLOYMENT] = "k8s.deployment.name",
    [K_K8S_STATEFULSET] = "k8s.statefulset.name",
    [K_K8S_DAEMONSET] = "k8s.daemonset.name",
    [K_K8S_JOB] = "k8s.job.name",
    [K_K8S_POD] = "k8s.pod.name",
    [K_K8S_CLUSTER] = "k8s.cluster.name",
    [K_APP] = "app",
    [K_VERSION] = "version",
    [K_POD_LABEL_APP] = "k8s.pod.label.app",
    [K_POD_LABEL_VERSION] = "k8s.pod.label.version",
    [K_POD_LABELS_APP] = "k8s.pod.labels.app",
    [K_POD_LABELS_VERSION] = "k8s.pod.labels.version",
    [K_CANON_NAME_LABEL] = "service.istio.io/canonical-name",
    [K_CANON_REV_LABEL] = "service.istio.io/canonical-revision",
    [K_POD_CANON_NAME] = "k8s.pod.label.service.istio.io/canonical-name",
    [K_POD_CANON_REV] = "k8s.pod.label.service.istio.io/canonical-revision",
    [K_ISTIO_CANON_SVC] = "istio.canonical_service",
    [K_ISTIO_NAMESPACE] = "istio.namespace",
    [K_ISTIO_CANON_REV] = "istio.canonical_revision",
    [K_ISTIO_CLUSTER] = "istio.cluster_id",
    [K_UPSTREAM_CLUSTER] = "upstream_cluster",
    [K_UPSTREAM_CLUSTER_NAME] = "upstream_cluster.name",
    [K_RESPONSE_FLAGS] = "response_flags",
    [K_NODE_ID] = "node_id",
    [K_PEER_SERVICE] = "peer.service",
    [K_SERVER_ADDRESS] = "server.address",
    [K_NET_PEER_NAME] = "net.peer.name",
    [K_NET_HOST_NAME] = "net.host.name",
    [K_HTTP_HOST] = "http.host",
    [K_URL_FULL] = "url.full",
    [K_HTTP_URL] = "http.url",
    [K_HTTP_RESPONSE_STATUS] = "http.response.status_code",
    [K_HTTP_STATUS] = "http.status_code",
    [K_RPC_GRPC_STATUS] = "rpc.grpc.status_code",
    [K_GRPC_STATUS] = "grpc.status_code",
    [K_RPC_SYSTEM] = "rpc.system",
    [K_HTTP_REQUEST_METHOD] = "http.request.method",
    [K_HTTP_METHOD] = "http.method",
    [K_NETWORK_PROTOCOL] = "network.protocol.name",
    [K_HTTP_PROTOCOL] = "http.protocol",
    [K_HTTP_FLAVOR] = "http.flavor",
    [K_DB_SYSTEM] = "db.system",
    [K_DB_NAME] = "db.name",
    [K_DB_NAMESPACE] = "db.namespace",
    [K_MESSAGING_SYSTEM] = "messaging.system",
    [K_MESSAGING_DESTINATION] = "messaging.destination.name",
    [K_REQUEST_SIZE] = "request_size",
    [K_RESPONSE_SIZE] = "response_size",
    [K_HTTP_REQ_BODY] = "http.request.body.size",
    [K_HTTP_RESP_BODY] = "http.response.body.size",
    [K_HTTP_REQ_LEN] = "http.request_content_length",
    [K_HTTP_RESP_LEN] = "http.response_content_length",
    [K_ZIPKIN_SHARED] = "zipkin.shared",
};

_Static_assert(K_COUNT <= sizeof(((struct res_cache *)0)->vals[0]) / sizeof(void *),
               "res_cache too small");

/* Open-addressing table of the keys: 256 slots for ~60 keys keeps probes to one or two. */
#define KEY_SLOTS 256
static int8_t key_slot[KEY_SLOTS]; /* enum key, -1 = empty */
static uint8_t key_len[K_COUNT];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/* Hash of a key from its length and first and last 8 bytes (keys are >= 3 bytes): two loads
 * instead of a byte loop, on the hottest loop of the module. Collisions only cost a memcmp. */
static uint32_t key_hash(const char *s, size_t len)
{
    uint64_t a = 0, b = 0;
    if (len >= 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + len - 8, 8);
    } else {
        memcpy(&a, s, len);
    }
    uint64_t h = (a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full) ^ len;
    h *= 0xFF51AFD7ED558CCDull;
    return (uint32_t)(h >> 40);
}

static void key_table_init(void)
{
    memset(key_slot, -1, sizeof key_slot);
    for (int k = 0; k < K_COUNT; k++) {
        key_len[k] = (uint8_t)strlen(key_text[k]);
        uint32_t i = key_hash(key_text[k], key_len[k]) & (KEY_SLOTS - 1);
        while (key_slot[i] >= 0) i = (i + 1) & (KEY_SLOTS - 1);
        key_slot[i] = (int8_t)k;
    }
}

static int key_lookup(const struct mstr *key)
{
    if (key->len < 3 || key->len > 48) return -1; /* shortest "app", longest the pod label */
    uint32_t i = key_hash(key->ptr, key->len) & (KEY_SLOTS - 1);
    while (key_slot[i] >= 0) {
        int k = key_slot[i];
        if (key_len[k] == key->len && memcmp(key_text[k], key->ptr, key->len) == 0) return k;
        i = (i + 1) & (KEY_SLOTS - 1);
    }
    return -1;
}

static void scan(const struct attrs *a, const struct value **vals)
{
    for (uint32_t i = 0; i < a->n; i++) {
        int k = key_lookup(&a->items[i].key);
        if (k >= 0 && !vals[k]) vals[k] = &a->items[i].value;
    }
}

/* Span attributes first, the resource's next (cached per resource). */
struct span_view {
    const struct value *span[K_COUNT];
    const struct value *const *res;
};

static const struct value *get(const struct span_view *v, enum key k)
{
    return v->span[k] ? v->span[k] : v->res[k];
}

/* ----- small string helpers ----------------------------------------------------------------- */

struct sv {
    const char *p;
    size_t n;
};

static struct sv str_of(const struct value *v)
{
    if (v && v->type == VALUE_STRING && v->u.str.ptr && v->u.str.len)
        return (struct sv){v->u.str.ptr, v->u.str.len};
    return (struct sv){NULL, 0};
}

static struct sv first(const struct span_view *v, const enum key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct sv s = str_of(get(v, keys[i]));
        if (s.p) return s;
    }
    return (struct sv){NULL, 0};
}
#define FIRST(v, ...) first(v, (const enum key[]){__VA_ARGS__}, \
                            sizeof((const enum key[]){__VA_ARGS__}) / sizeof(enum key))

static const struct sv UNKNOWN = {"unknown", 7};

/* An integer attribute: int, double, or a string of digits (Envoy tags are strings). */
static bool int_of(const struct value *v, int64_t *out)
{
    if (!v) return false;
    if (v->type == VALUE_INT) {
        *out = v->u.i;
        return true;
    }
    if (v->type == VALUE_DOUBLE && v->u.d >= -1e15 && v->u.d <= 1e15) {
        *out = (int64_t)v->u.d;
        return true;
    }
    if (v->type == VALUE_STRING && v->u.str.len > 0 && v->u.str.len <= 15) {
        int64_t n = 0;
        for (uint32_t i = 0; i < v->u.str.len; i++) {
            char c = v->u.str.ptr[i];
            if (c < '0' || c > '9') return false;
            n = n * 10 + (c - '0');
        }
        *out = n;
        return true;
    }
    return false;
}

static bool sv_eq(struct sv s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

/* A host name or address: letters, digits, '.', '-', '_' (IPv6 brackets stripped by the
 * caller). Anything else (a path, a query, spaces) is not a host and is not used. */
static bool is_host(struct sv s)
{
    if (!s.p || s.n == 0 || s.n > 253) return false;
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':'))
            return false;
    }
    return true;
}

/* "host:port" -> "host"; "[v6]:port" -> "v6". */
static struct sv strip_port(struct sv s)
{
    if (!s.p) return s;
    if (s.n && s.p[0] == '[') {
        const char *e = memchr(s.p, ']', s.n);
        if (e) return (struct sv){s.p + 1, (size_t)(e - s.p - 1)};
    }
    const char *c = memchr(s.p, ':', s.n);
    if (c && !memchr(c + 1, ':', s.n - (size_t)(c + 1 - s.p))) s.n = (size_t)(c - s.p);
    return s;
}

/* Host of "scheme://[user@]host[:port]/path?query"; nothing of the path or query. */
static struct sv url_host(struct sv u)
{
    if (!u.p) return u;
    const char *p = u.p, *end = u.p + u.n;
    const char *sch = NULL;
    for (const char *q = p; q + 2 < end; q++)
        if (q[0] == ':' && q[1] == '/' && q[2] == '/') {
            sch = q + 3;
            break;
        }
    if (!sch) return (struct sv){NULL, 0};
    const char *h = sch, *e = h;
    while (e < end && *e != '/' && *e != '?' && *e != '#') e++;
    const char *at = memchr(h, '@', (size_t)(e - h));
    if (at) h = at + 1;
    return strip_port((struct sv){h, (size_t)(e - h)});
}

/* Istio cluster names: "outbound|9080||reviews.default.svc.cluster.local" (and the old inbound
 * form "inbound|9080|http|reviews.default.svc.cluster.local") -> the service FQDN. */
static struct sv cluster_fqdn(struct sv c)
{
    if (!c.p) return c;
    int bars = 0;
    const char *p = c.p, *end = c.p + c.n;
    for (; p < end && bars < 3; p++)
        if (*p == '|') bars++;
    if (bars < 3 || p >= end) return (struct sv){NULL, 0};
    return (struct sv){p, (size_t)(end - p)};
}

/* "reviews.default.svc.cluster.local" -> name "reviews", namespace "default" (when the third
 * label is "svc", Kubernetes' service DNS form); other hosts: the whole host, no namespace. */
static void split_fqdn(struct sv fqdn, struct sv *name, struct sv *ns)
{
    *name = fqdn;
    *ns = (struct sv){NULL, 0};
    const char *d1 = memchr(fqdn.p, '.', fqdn.n);
    if (!d1) return;
    const char *rest = d1 + 1;
    size_t rest_n = fqdn.n - (size_t)(rest - fqdn.p);
    const char *d2 = memchr(rest, '.', rest_n);
    if (!d2) return;
    size_t after = rest_n - (size_t)(d2 + 1 - rest);
    if (after >= 3 && memcmp(d2 + 1, "svc", 3) == 0 && (after == 3 || d2[4] == '.')) {
        *name = (struct sv){fqdn.p, (size_t)(d1 - fqdn.p)};
        *ns = (struct sv){rest, (size_t)(d2 - rest)};
    }
}

static bool is_alnum_lower(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9'))) return false;
    return n > 0;
}

/* Pod name -> workload: "reviews-v1-545db77b95-2zgrp" -> "reviews-v1" (Deployment pods end in
 * -<replicaset hash>-<5 chars>), "db-0" -> "db" (StatefulSet ordinal). */
static struct sv pod_workload(struct sv pod)
{
    if (!pod.p) return pod;
    const char *dash = NULL;
    for (size_t i = pod.n; i-- > 0;)
        if (pod.p[i] == '-') {
            dash = pod.p + i;
            break;
        }
    if (!dash || dash == pod.p) return pod;
    size_t tail = pod.n - (size_t)(dash + 1 - pod.p);
    bool digits = true;
    for (size_t i = 0; i < tail; i++)
        if (dash[1 + i] < '0' || dash[1 + i] > '9') digits = false;
    struct sv w = {pod.p, (size_t)(dash - pod.p)};
    if (digits && tail > 0) return w;
    if (tail != 5 || !is_alnum_lower(dash + 1, tail)) return pod;
    /* Deployment: also drop the ReplicaSet's hash (6 to 10 characters) when there is one. */
    for (size_t i = w.n; i-- > 0;)
        if (w.p[i] == '-') {
            size_t t = w.n - i - 1;
            if (i > 0 && t >= 6 && t <= 10 && is_alnum_lower(w.p + i + 1, t))
                return (struct sv){w.p, i};
            break;
        }
    return w;
}

/* Envoy's node id "sidecar~10.1.2.3~reviews-v1-545db77b95-2zgrp.default~default.svc.cluster.local"
 * -> pod "reviews-v1-545db77b95-2zgrp", namespace "default". */
static void node_id_parts(struct sv id, struct sv *pod, struct sv *ns)
{
    *pod = *ns = (struct sv){NULL, 0};
    if (!id.p) return;
    const char *p = id.p, *end = id.p + id.n;
    const char *f[4];
    int n = 0;
    f[n++] = p;
    for (; p < end && n < 4; p++)
        if (*p == '~') f[n++] = p + 1;
    if (n < 4) return;
    const char *third = f[2], *third_end = f[3] - 1;
    const char *dot = memchr(third, '.', (size_t)(third_end - third));
    if (!dot) return;
    *pod = (struct sv){third, (size_t)(dot - third)};
    *ns = (struct sv){dot + 1, (size_t)(third_end - dot - 1)};
}

static bool unknown_service(struct sv s)
{
    return !s.p || (s.n >= 15 && memcmp(s.p, "unknown_service", 15) == 0);
}

/* ----- escaping ------------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
    else return 0;
    if (n > avail) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

size_t red_escape(const char *v, size_t len, char *out)
{
    const unsigned char *p = (const unsigned char *)v;
    size_t i = 0, o = 0;
    /* Fast path: the plain ASCII prefix (almost always the whole value) in one copy, checked 8
     * bytes at a time for a byte >= 0x80, '\\', '"' or '\n' (the has-zero-byte trick). */
    size_t lim = len < RED_VALUE_MAX ? len : RED_VALUE_MAX;
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (i + 8 <= lim) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t x1 = w ^ (ones * '\\'), x2 = w ^ (ones * '"'), x3 = w ^ (ones * '\n');
        uint64_t special = ((x1 - ones) & ~x1) | ((x2 - ones) & ~x2) | ((x3 - ones) & ~x3) | w;
        if (special & highs) break;
        i += 8;
    }
    while (i < lim && p[i] < 0x80 && p[i] != '\\' && p[i] != '"' && p[i] != '\n') i++;
    memcpy(out, p, i);
    o = i;
    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);
        size_t take = n ? n : 1;
        if (i + take > RED_VALUE_MAX) break;
        if (n == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3); /* U+FFFD: Prometheus refuses invalid UTF-8 */
            o += 3;
        } else if (p[i] == '\\' || p[i] == '"') {
            out[o++] = '\\';
            out[o++] = (char)p[i];
        } else if (p[i] == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            memcpy(out + o, p + i, n);
            o += n;
        }
        i += take;
    }
    return o;
}

/* ----- the half ------------------------------------------------------------------------------ */

static void put_slot(struct half *h, enum slot s, struct sv v)
{
    h->off[s] = (uint16_t)h->data_len;
    size_t n = v.p ? red_escape(v.p, v.n, h->data + h->data_len) : 0;
    h->len[s] = (uint16_t)n;
    h->data_len += (uint32_t)n;
}

static struct sv lit(const char *s)
{
    return (struct sv){s, strlen(s)};
}

/* put_slot for a value that escaping leaves as it is (plain ASCII without '\\', '"' or newline,
 * at most RED_VALUE_MAX bytes: our literals, digits, validated flags): a copy. */
static void put_raw(struct half *h, enum slot s, struct sv v)
{
    h->off[s] = (uint16_t)h->data_len;
    if (v.n) memcpy(h->data + h->data_len, v.p, v.n);
    h->len[s] = (uint16_t)v.n;
    h->data_len += (uint32_t)v.n;
}

/* v escaped when present, else the literal dflt. */
static void put_or(struct half *h, enum slot s, struct sv v, struct sv dflt)
{
    if (v.p) put_slot(h, s, v);
    else put_raw(h, s, dflt);
}

/* Envoy's flags (upper case, comma-separated) or HAProxy's termination state ("sC", "cD--"):
 * letters from small fixed sets, so a bounded label. */
static bool flags_ok(struct sv f)
{
    if (!f.p || f.n > 64) return false;
    for (size_t i = 0; i < f.n; i++) {
        char c = f.p[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == ',' || c == '-' ||
              c == '_'))
            return false;
    }
    return true;
}

static void view_build(const struct span *s, struct res_cache *rc, struct span_view *v)
{
    pthread_once(&key_once, key_table_init);
    memset(v->span, 0, sizeof v->span);
    scan(&s->attrs, v->span);
    unsigned way = (unsigned)(((uintptr_t)s->resource >> 4) * 0x9E3779B1u >> 29) &
                   (RES_CACHE_WAYS - 1);
    if (!rc->used[way] || rc->res[way] != s->resource) {
        memset(rc->vals[way], 0, sizeof rc->vals[way]);
        if (s->resource) scan(&s->resource->attrs, rc->vals[way]);
        rc->res[way] = s->resource;
        rc->used[way] = true;
    }
    v->res = rc->vals[way];
}

struct half *red_half_build(const struct span *s, struct res_cache *rc, void *buf)
{
    struct span_view v;
    view_build(s, rc, &v);
    struct half *h = buf;
    memset(h, 0, sizeof *h);
    h->kind = (uint8_t)s->kind;
    memcpy(h->trace_id, s->trace_id, 16);
    memcpy(h->span_id, s->span_id, 8);
    h->end_unix_nano = s->end_unix_nano;
    h->duration_ms = s->end_unix_nano > s->start_unix_nano
                         ? (double)(s->end_unix_nano - s->start_unix_nano) / 1e6
                         : 0.0;

    /* service.name and the identity of the span's own workload. */
    struct sv service = str_of(get(&v, K_SERVICE_NAME));
    struct sv svc_or_null = unknown_service(service) ? (struct sv){NULL, 0} : service;
    put_or(h, S_SERVICE, service, lit("unknown_service"));

    struct sv node_pod, node_ns;
    node_id_parts(str_of(get(&v, K_NODE_ID)), &node_pod, &node_ns);
    struct sv canon = FIRST(&v, K_ISTIO_CANON_SVC, K_CANON_NAME_LABEL, K_POD_CANON_NAME);
    struct sv workload = FIRST(&v, K_K8S_DEPLOYMENT, K_K8S_STATEFULSET, K_K8S_DAEMONSET, K_K8S_JOB);
    if (!workload.p) workload = pod_workload(str_of(get(&v, K_K8S_POD)));
    if (!workload.p) workload = pod_workload(node_pod);
    if (!workload.p) workload = canon.p ? canon : svc_or_null;
    struct sv ns = FIRST(&v, K_K8S_NAMESPACE, K_ISTIO_NAMESPACE);
    if (!ns.p) ns = node_ns;
    if (!ns.p) ns = str_of(get(&v, K_SERVICE_NAMESPACE));
    struct sv app = FIRST(&v, K_APP, K_POD_LABEL_APP, K_POD_LABELS_APP);
    if (!app.p) app = canon.p ? canon : svc_or_null;
    struct sv version = FIRST(&v, K_VERSION, K_POD_LABEL_VERSION, K_POD_LABELS_VERSION,
                              K_SERVICE_VERSION);
    if (!canon.p) canon = app.p ? app : workload;
    struct sv rev = FIRST(&v, K_ISTIO_CANON_REV, K_CANON_REV_LABEL, K_POD_CANON_REV, K_VERSION,
                          K_POD_LABEL_VERSION, K_POD_LABELS_VERSION, K_SERVICE_VERSION);
    struct sv cluster = FIRST(&v, K_K8S_CLUSTER, K_ISTIO_CLUSTER);
    put_or(h, S_WORKLOAD, workload, UNKNOWN);
    put_or(h, S_NAMESPACE, ns, UNKNOWN);
    put_raw(h, S_PRINCIPAL, UNKNOWN); /* no span data names the peer's mTLS identity */
    put_or(h, S_APP, app, UNKNOWN);
    put_or(h, S_VERSION, version, UNKNOWN);
    put_or(h, S_CANON_SVC, canon, UNKNOWN);
    put_or(h, S_CANON_REV, rev, lit("latest"));
    put_or(h, S_CLUSTER, cluster, UNKNOWN);

    /* destination_service as this span sees it. */
    bool client_side = s->kind == SPAN_KIND_CLIENT || s->kind == SPAN_KIND_PRODUCER;
    struct sv host = cluster_fqdn(FIRST(&v, K_UPSTREAM_CLUSTER, K_UPSTREAM_CLUSTER_NAME));
    const enum key client_keys[] = {K_SERVER_ADDRESS, K_NET_PEER_NAME, K_HTTP_HOST};
    const enum key server_keys[] = {K_SERVER_ADDRESS, K_NET_HOST_NAME, K_HTTP_HOST};
    for (size_t i = 0; i < 3 && !is_host(host); i++)
        host = strip_port(str_of(get(&v, client_side ? client_keys[i] : server_keys[i])));
    if (!is_host(host)) host = url_host(FIRST(&v, K_URL_FULL, K_HTTP_URL));
    if (!is_host(host) && client_side) host = str_of(get(&v, K_PEER_SERVICE));
    h->has_dst = is_host(host);
    if (!h->has_dst) host = s->kind == SPAN_KIND_SERVER && svc_or_null.p ? svc_or_null : UNKNOWN;
    struct sv dname, dns;
    split_fqdn(host, &dname, &dns);
    if (!dns.p && s->kind == SPAN_KIND_SERVER) dns = ns;
    put_slot(h, S_DST_SERVICE, host);
    put_slot(h, S_DST_NAME, dname);
    put_or(h, S_DST_NS, dns, UNKNOWN);

    /* request_protocol, response_code, grpc_response_status, response_flags. */
    int64_t http_code = 0, grpc_code = -1;
    bool has_http = int_of(get(&v, K_HTTP_RESPONSE_STATUS), &http_code) ||
                    int_of(get(&v, K_HTTP_STATUS), &http_code);
    if (has_http && (http_code < 100 || http_code > 599)) has_http = false;
    bool has_grpc = int_of(get(&v, K_RPC_GRPC_STATUS), &grpc_code) ||
                    int_of(get(&v, K_GRPC_STATUS), &grpc_code);
    if (has_grpc && (grpc_code < 0 || grpc_code > 16)) has_grpc = false; /* gRPC's 17 codes */
    bool grpc = has_grpc || sv_eq(str_of(get(&v, K_RPC_SYSTEM)), "grpc");
    struct sv np = str_of(get(&v, K_NETWORK_PROTOCOL));
    bool http = has_http || get(&v, K_HTTP_REQUEST_METHOD) || get(&v, K_HTTP_METHOD) ||
                get(&v, K_HTTP_PROTOCOL) || get(&v, K_HTTP_FLAVOR) || sv_eq(np, "http");
    put_raw(h, S_PROTOCOL, grpc ? lit("grpc") : http ? lit("http") : UNKNOWN);
    char code[3] = {(char)('0' + http_code / 100), (char)('0' + http_code / 10 % 10),
                    (char)('0' + http_code % 10)}; /* 100..599 */
    put_raw(h, S_CODE, has_http ? (struct sv){code, 3} : grpc ? lit("200") : UNKNOWN);
    char gcode[2] = {(char)(grpc_code >= 10 ? '1' : '0' + grpc_code),
                     (char)('0' + grpc_code % 10)}; /* 0..16 */
    struct sv gsv = grpc_code >= 10 ? (struct sv){gcode, 2} : (struct sv){gcode, 1};
    put_raw(h, S_GRPC, has_grpc ? gsv : grpc ? UNKNOWN : (struct sv){"", 0});
    struct sv flags = str_of(get(&v, K_RESPONSE_FLAGS));
    put_raw(h, S_FLAGS, flags_ok(flags) ? flags : lit("-"));

    h->failed = s->status_code == STATUS_ERROR || (has_http && http_code >= 500) ||
                (s->kind == SPAN_KIND_SERVER && has_grpc && grpc_code != 0);

    /* Virtual node of an uninstrumented peer (Tempo's peer attributes, in its order). */
    struct sv peer = {NULL, 0};
    h->conn = CONN_NONE;
    if (client_side) {
        struct sv db = FIRST(&v, K_DB_NAME, K_DB_NAMESPACE);
        struct sv dbsys = str_of(get(&v, K_DB_SYSTEM));
        struct sv msys = str_of(get(&v, K_MESSAGING_SYSTEM));
        struct sv psvc = str_of(get(&v, K_PEER_SERVICE));
        struct sv saddr = strip_port(str_of(get(&v, K_SERVER_ADDRESS)));
        if (psvc.p) peer = psvc;
        else if (db.p) peer = db;
        else if (dbsys.p) peer = dbsys;
        else if (msys.p) peer = msys;
        else if (is_host(saddr)) peer = saddr;
        if (peer.p)
            h->conn = (dbsys.p || db.p) ? CONN_DATABASE
                      : (msys.p && s->kind == SPAN_KIND_PRODUCER) ? CONN_MESSAGING
                                                                   : CONN_VIRTUAL;
    }
    put_slot(h, S_PEER, peer);

    /* Sizes: semconv first, then the older names, then Envoy's tags. */
    int64_t n;
    if (int_of(get(&v, K_HTTP_REQ_BODY), &n) || int_of(get(&v, K_HTTP_REQ_LEN), &n) ||
        int_of(get(&v, K_REQUEST_SIZE), &n))
        h->req_bytes = n > 0 ? (double)n : 0;
    if (int_of(get(&v, K_HTTP_RESP_BODY), &n) || int_of(get(&v, K_HTTP_RESP_LEN), &n) ||
        int_of(get(&v, K_RESPONSE_SIZE), &n))
        h->resp_bytes = n > 0 ? (double)n : 0;
    return h;
}

bool red_span_shared(const struct span *s);
/* True for the server half of a Zipkin/Envoy shared span (same span id as its client). */
bool red_span_shared(const struct span *s)
{
    for (uint32_t i = 0; i < s->attrs.n; i++) {
        const struct attr *a = &s->attrs.items[i];
        if (a->key.len == 13 && memcmp(a->key.ptr, "zipkin.shared", 13) == 0)
            return (a->value.type == VALUE_BOOL && a->value.u.b) ||
                   (a->value.type == VALUE_STRING && a->value.u.str.len == 4 &&
                    memcmp(a->value.u.str.ptr, "true", 4) == 0);
    }
    return false;
}

/* ----- span metrics labels ------------------------------------------------------------------- */

static const char *const kind_label[6] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL",
                                          "SPAN_KIND_SERVER",      "SPAN_KIND_CLIENT",
                                          "SPAN_KIND_PRODUCER",    "SPAN_KIND_CONSUMER"};
static const char *const status_label[3] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                            "STATUS_CODE_ERROR"};

static bool id_like(const char *p, size_t n)
{
    if (n == 0) return false;
    bool digits = true, hexish = n >= 16;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c < '0' || c > '9') digits = false;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == '-'))
            hexish = false;
    }
    return digits || hexish;
}

/* A span name with what would make it unbounded removed: the query string and fragment, and
 * path segments that are numbers, UUIDs or long hex ids (-> "{id}"). Written to out (raw). */
static size_t bounded_name(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && p[i] != '?' && p[i] != '#';) {
        if (p[i] == '/') {
            size_t j = i + 1;
            while (j < n && p[j] != '/' && p[j] != '?' && p[j] != '#' && p[j] != ' ') j++;
            if (o + 1 > cap) break;
            out[o++] = '/';
            if (id_like(p + i + 1, j - i - 1)) {
                if (o + 4 > cap) break;
                memcpy(out + o, "{id}", 4);
                o += 4;
            } else {
                size_t seg = j - i - 1;
                if (o + seg > cap) seg = cap - o;
                memcpy(out + o, p + i + 1, seg);
                o += seg;
            }
            i = j;
        } else {
            if (o + 1 > cap) break;
            out[o++] = p[i++];
        }
    }
    return o;
}

size_t red_spanmetrics_labels(const struct span *s, const struct half *h, char *out)
{
    size_t o = 0;
#define LIT(x) (memcpy(out + o, x, sizeof(x) - 1), o += sizeof(x) - 1)
    LIT("service=\"");
    memcpy(out + o, h->data + h->off[S_SERVICE], h->len[S_SERVICE]);
    o += h->len[S_SERVICE];
    LIT("\",span_name=\"");
    char name[RED_VALUE_MAX];
    size_t nn = bounded_name(s->name.ptr ? s->name.ptr : "", s->name.len, name, sizeof name);
    o += red_escape(name, nn, out + o);
    LIT("\",span_kind=\"");
    const char *k = kind_label[(unsigned)s->kind <= 5 ? s->kind : 0];
    size_t kl = strlen(k);
    memcpy(out + o, k, kl);
    o += kl;
    LIT("\",status_code=\"");
    const char *st = status_label[(unsigned)s->status_code <= 2 ? s->status_code : 0];
    size_t sl = strlen(st);
    memcpy(out + o, st, sl);
    o += sl;
    out[o++] = '"';
#undef LIT
    return o;
}

/* ----- access-log records ------------------------------------------------------------------- */

/* Builds the half of an access-log record by dressing it as the span Istio's Envoy would have
 * reported for the same request (same attribute names), so records and spans share one label
 * mapping: an inbound record is a SERVER span, any other a CLIENT span; service.name is the
 * record's service; upstream_cluster, response_flags, the status code, the destination service
 * (nginx / HAProxy) or else :authority (as server.address, port cut) and the byte counts become the proxy tags red_half_build reads; the
 * record's error flag (access_log_is_error) becomes status ERROR. The synthetic span lives on the
 * stack and is gone on return; the half is self-contained. */
struct half *red_half_from_log(const struct access_log *l, void *buf)
{
    struct attr res_attrs[2], attrs[8];
    uint32_t nr = 0, na = 0;
    const struct mstr none = {NULL, 0};
    struct mstr svc = l->str[ALOG_SERVICE].ptr ? l->str[ALOG_SERVICE] : none;
    bool inbound = l->direction == ALOG_DIRECTION_INBOUND;
    struct mstr ns = inbound ? l->str[ALOG_DESTINATION_NAMESPACE] : l->str[ALOG_SOURCE_NAMESPACE];
#define STR_ATTR(arr, n, k, m)                                                                     \
    do {                                                                                           \
        if ((m).ptr) arr[n++] = (struct attr){{k, sizeof(k) - 1}, {.type = VALUE_STRING,           \
                                                                   .u.str = (m)}};                 \
    } while (0)
#define INT_ATTR(arr, n, k, v)                                                                     \
    do {                                                                                           \
        arr[n++] = (struct attr){{k, sizeof(k) - 1}, {.type = VALUE_INT, .u.i = (v)}};             \
    } while (0)
    STR_ATTR(res_attrs, nr, "service.name", svc);
    STR_ATTR(res_attrs, nr, "k8s.namespace.name", ns);
    STR_ATTR(attrs, na, "upstream_cluster", l->str[ALOG_UPSTREAM_CLUSTER]);
    STR_ATTR(attrs, na, "response_flags", l->str[ALOG_RESPONSE_FLAGS]);
    /* nginx / HAProxy name the called service (upstream_name, backend_name); Envoy's records
     * say it in upstream_cluster, which red_half_build reads first. */
    STR_ATTR(attrs, na, "server.address",
             l->str[ALOG_DESTINATION_SERVICE].ptr ? l->str[ALOG_DESTINATION_SERVICE]
                                                  : l->str[ALOG_AUTHORITY]);
    STR_ATTR(attrs, na, "http.request.method", l->str[ALOG_METHOD]);
    if (l->response_code > 0) INT_ATTR(attrs, na, "http.response.status_code", l->response_code);
    if (l->bytes_received >= 0) INT_ATTR(attrs, na, "request_size", l->bytes_received);
    if (l->bytes_sent >= 0) INT_ATTR(attrs, na, "response_size", l->bytes_sent);
#undef STR_ATTR
#undef INT_ATTR
    struct resource res = {.attrs = {res_attrs, nr, 0}};
    struct span s = {
        .kind = inbound ? SPAN_KIND_SERVER : SPAN_KIND_CLIENT,
        .start_unix_nano = l->time_unix_nano,
        .end_unix_nano = l->time_unix_nano +
                         (l->duration_ms > 0 ? (uint64_t)l->duration_ms * 1000000u : 0),
        .attrs = {attrs, na, 0},
        .status_code = access_log_is_error(l) ? STATUS_ERROR : STATUS_UNSET,
        .resource = &res,
    };
    if (l->has_trace_id) memcpy(s.trace_id, l->trace_id, 16);
    if (l->has_span_id) memcpy(s.span_id, l->span_id, 8);
    struct res_cache rc; /* the stack resource's address repeats between calls: a fresh cache */
    memset(rc.used, 0, sizeof rc.used);
    struct half *h = red_half_build(&s, &rc, buf);
    /* Istio reports "0" for a request that got no response (UH, UF, DC ...); a span has no such
     * status, so red_half_build said "unknown": the record knows better. (The slot is appended
     * again; "unknown" was far below its slot's share of RED_HALF_MAX.) */
    if (l->response_code == 0) put_slot(h, S_CODE, lit("0"));
    return h;
}
