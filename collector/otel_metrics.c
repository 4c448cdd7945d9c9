/*
 * otel_metrics.c: the in-memory store of pushed metrics and their Prometheus exposition (model,
 * naming, temporality and DESIGN in otel_metrics.h).
 *
 * Layout: 16 shards, each a mutex and a list of families; a family (one exposition name) holds
 * its series in a chained hash table keyed by the series' rendered label text
 * (`a="x",b="y"`, keys sorted, values escaped), which is also what /metrics prints, so a
 * render copies bytes. Memory per series: the struct, its label text, and for histograms and
 * summaries their arrays; the count of series is bounded by max_series (new series past it are
 * refused and counted), so the store's memory is bounded by max_series times the largest label
 * text the decoders let through.
 */
#include "otel_metrics.h"
#include "red_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage.h"

#define SHARDS 16           /* power of two; families spread by name hash */
#define MAX_NAME 400        /* bytes of an exposition family name; longer ones are refused */
#define HELP_MAX 400        /* HELP text is cut here (the OpenMetrics converter looks ahead 1 KiB) */
/* Per-series caps, so that OTEL_METRICS_SERIES_BYTES bounds a series: its label text and its
 * histogram buckets or summary quantiles. Points beyond them are refused ("invalid"). */
#define MAX_LABEL_TEXT 4096
#define MAX_BUCKETS 256

struct om_series {
    struct om_series *next;
    uint64_t hash;
    char *labels; /* escaped label text without braces; "" = no labels */
    size_t labels_len;
    int64_t touched_ns;    /* store clock of the last update (expiry) */
    uint64_t last_time_ns; /* sample time of the last point applied */
    uint64_t start_ns;
    double value;
    uint64_t count;
    double sum;
    bool has_sum;
    uint32_t n_bounds, n_quantiles;
    double *bounds;    /* histogram: n_bounds; summary: 2 * n_quantiles (quantiles, values) */
    uint64_t *buckets; /* histogram: n_bounds + 1, per bucket */
};

struct family {
    struct family *next;
    char *name;
    char *help;
    enum om_type type;
    bool internal; /* target_info: made by the store, not by a sender */
    struct om_series **table;
    size_t n_series, n_slots; /* n_slots: power of two */
};

struct shard {
    pthread_mutex_t mu;
    struct family *families;
    int64_t next_sweep_ns;
};

/* A name claimed by a family (its exposition name and the sample names it produces). */
struct claim {
    char *name;
    const struct family *owner;
};

struct otel_metrics {
    struct otel_metrics_options o;
    struct shard shards[SHARDS];
    bool shards_ready;
    pthread_mutex_t names_mu; /* claims; taken inside a shard lock, never the other way */
    struct claim *claims;
    size_t n_claims, cap_claims;
    _Atomic uint64_t n_series;
    _Atomic uint64_t points_applied;
    _Atomic uint64_t rejected[OM_REJECT_COUNT];
};

static const char *const reject_label[OM_REJECT_COUNT] = {
    "decode", "series_limit", "name_clash", "type_conflict", "invalid"};

/* ----- clock ------------------------------------------------------------------------------- */

static int64_t now_ns(const struct otel_metrics *m)
{
    if (m->o.clock_ns) return m->o.clock_ns(m->o.clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ----- text: RED's growable buffer (red_int.h), always NUL-terminated here ----------------- */

#define buf red_buf

static bool reserve(struct buf *b, size_t n)
{
    return red_buf_reserve(b, n + 1);
}

static void put(struct buf *b, const char *s, size_t n)
{
    if (!reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

size_t otel_metrics_format_number(char *out, size_t n, double v)
{
    if (isnan(v)) return (size_t)snprintf(out, n, "NaN");
    if (isinf(v)) return (size_t)snprintf(out, n, "%s", v > 0 ? "+Inf" : "-Inf");
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    return len > 0 ? (size_t)len : 0;
}

static void put_number(struct buf *b, double v)
{
    char tmp[40];
    put(b, tmp, otel_metrics_format_number(tmp, sizeof tmp, v));
}

static void put_u64(struct buf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    put(b, tmp, (size_t)n);
}

/* A label value, escaped for both exposition formats: \ " and newline. */
static void put_escaped(struct buf *b, const char *s)
{
    for (;;) {
        size_t run = strcspn(s, "\\\"\n"); /* copied in runs: escapes are rare */
        put(b, s, run);
        s += run;
        if (!*s) return;
        put(b, *s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\", 2);
        s++;
    }
}

/* ----- naming ------------------------------------------------------------------------------ */

/* Appends s to out[*o] with characters outside the allowed set made '_' and runs of '_'
 * collapsed (also across the join with what is already there). */
static void append_sanitised(char *out, size_t n, size_t *o, const char *s, size_t len,
                             bool colon_ok)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || (colon_ok && c == ':');
        if (!ok) c = '_';
        if (c == '_' && *o > 0 && *o - 1 < n && out[*o - 1] == '_') continue;
        if (*o == 0 && c >= '0' && c <= '9') {
            if (n && *o < n - 1) out[*o] = '_'; /* not *o + 1 < n, which wraps */
            (*o)++;
        }
        if (n && *o < n - 1) out[*o] = c;
        (*o)++;
    }
}

static void terminate(char *out, size_t n, size_t o)
{
    if (n) out[o < n ? o : n - 1] = '\0';
}

size_t otel_metrics_label_key(const char *key, char *out, size_t n)
{
    /* Fast path: a key that is already a valid label name (most are) is copied as it is. */
    size_t len = 0;
    bool plain = !(key[0] >= '0' && key[0] <= '9');
    for (; plain && key[len]; len++) {
        char c = key[len];
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                (c == '_' && (len == 0 || key[len - 1] != '_'));
    }
    if (plain && len && len < n) {
        memcpy(out, key, len + 1);
        return len;
    }
    size_t o = 0;
    append_sanitised(out, n, &o, key, strlen(key), false);
    if (o == 0) {
        if (n > 1) out[0] = '_';
        o = 1;
    }
    terminate(out, n, o);
    return o;
}

/* UCUM units to Prometheus words (the OpenTelemetry collector's table, main units). */
static const char *const unit_words[][2] = {
    {"d", "days"},           {"h", "hours"},          {"min", "minutes"},
    {"s", "seconds"},        {"ms", "milliseconds"},  {"us", "microseconds"},
    {"ns", "nanoseconds"},   {"By", "bytes"},         {"KiBy", "kibibytes"},
    {"MiBy", "mebibytes"},   {"GiBy", "gibibytes"},   {"TiBy", "tebibytes"},
    {"KBy", "kilobytes"},    {"MBy", "megabytes"},    {"GBy", "gigabytes"},
    {"TBy", "terabytes"},    {"m", "meters"},         {"V", "volts"},
    {"A", "amperes"},        {"J", "joules"},         {"W", "watts"},
    {"g", "grams"},          {"Cel", "celsius"},      {"Hz", "hertz"},
    {"%", "percent"},
};
/* The denominator of "a/b" units. */
static const char *const per_words[][2] = {
    {"s", "second"}, {"m", "minute"}, {"h", "hour"}, {"d", "day"},
    {"w", "week"},   {"mo", "month"}, {"y", "year"},
};

static const char *word_of(const char *u, size_t len, const char *const (*table)[2], size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(table[i][0]) == len && memcmp(table[i][0], u, len) == 0) return table[i][1];
    return NULL;
}

/* The unit suffix words of unit into out (sanitised), "" for none. */
static void unit_suffix(const char *unit, enum om_type type, char *out, size_t n)
{
    /* Drop {annotations}. */
    char u[128];
    size_t ul = 0;
    int depth = 0;
    for (const char *p = unit; *p && ul + 1 < sizeof u; p++) {
        if (*p == '{') depth++;
        else if (*p == '}' && depth) depth--;
        else if (!depth) u[ul++] = *p;
    }
    u[ul] = '\0';
    size_t o = 0;
    terminate(out, n, 0);
    if (ul == 0) return;
    if (strcmp(u, "1") == 0) {
        if (type == OM_GAUGE) append_sanitised(out, n, &o, "ratio", 5, false);
        terminate(out, n, o);
        return;
    }
    const char *slash = strchr(u, '/');
    size_t main_len = slash ? (size_t)(slash - u) : ul;
    if (main_len) {
        const char *w = word_of(u, main_len, unit_words, sizeof unit_words / sizeof unit_words[0]);
        if (w) append_sanitised(out, n, &o, w, strlen(w), false);
        else append_sanitised(out, n, &o, u, main_len, false);
    }
    if (slash && slash[1]) {
        const char *den = slash + 1;
        const char *w = word_of(den, strlen(den), per_words, sizeof per_words / sizeof per_words[0]);
        if (!w) w = word_of(den, strlen(den), unit_words, sizeof unit_words / sizeof unit_words[0]);
        if (o) append_sanitised(out, n, &o, "_per_", 5, false);
        else append_sanitised(out, n, &o, "per_", 4, false);
        append_sanitised(out, n, &o, w ? w : den, strlen(w ? w : den), false);
    }
    while (o > 0 && o - 1 < n && out[o - 1] == '_') o--; /* no trailing '_' */
    terminate(out, n, o);
}

/* Does name hold word as a whole '_'-separated part sequence? */
static bool has_part(const char *name, size_t nlen, const char *word, size_t wlen)
{
    for (size_t i = 0; i + wlen <= nlen; i++) {
        if (memcmp(name + i, word, wlen) != 0) continue;
        bool left = i == 0 || name[i - 1] == '_';
        bool right = i + wlen == nlen || name[i + wlen] == '_';
        if (left && right) return true;
    }
    return false;
}

size_t otel_metrics_family_name(const char *name, const char *unit, enum om_type type, char *out,
                                size_t n)
{
    char tmp[MAX_NAME * 2];
    size_t o = 0;
    append_sanitised(tmp, sizeof tmp, &o, name, strlen(name), true);
    if (o >= sizeof tmp) o = sizeof tmp - 1;
    tmp[o] = '\0';
    /* Counters: the unit goes before _total. */
    if (type == OM_COUNTER && o >= 6 && strcmp(tmp + o - 6, "_total") == 0) tmp[o -= 6] = '\0';
    char suffix[128];
    unit_suffix(unit ? unit : "", type, suffix, sizeof suffix);
    size_t sl = strlen(suffix);
    if (sl && !has_part(tmp, o, suffix, sl)) {
        append_sanitised(tmp, sizeof tmp, &o, "_", 1, false);
        append_sanitised(tmp, sizeof tmp, &o, suffix, sl, false);
        if (o >= sizeof tmp) o = sizeof tmp - 1;
        tmp[o] = '\0';
    }
    if (type == OM_COUNTER) {
        append_sanitised(tmp, sizeof tmp, &o, "_total", 6, false);
        if (o >= sizeof tmp) o = sizeof tmp - 1;
        tmp[o] = '\0';
    }
    if (n) snprintf(out, n, "%s", tmp);
    return o;
}

/* ----- claims (clash detection) ------------------------------------------------------------ */

static const char *const reserved_prefixes[] = {"meshscope_", "istio_", "traces_service_graph_",
                                                "traces_spanmetrics_"};

/* The names family f would put on /metrics (in either format), into names[] (each malloc'd by
 * the caller's buffer of 5 x (MAX_NAME + 16)). Returns how many. */
static size_t names_of(const char *name, enum om_type type, char names[5][MAX_NAME + 16])
{
    size_t k = 0, nl = strlen(name);
    snprintf(names[k++], MAX_NAME + 16, "%s", name);
    switch (type) {
    case OM_COUNTER: /* OpenMetrics family without _total */
        snprintf(names[k++], MAX_NAME + 16, "%.*s", (int)(nl - 6), name);
        snprintf(names[k++], MAX_NAME + 16, "%.*s_created", (int)(nl - 6), name);
        break;
    case OM_HISTOGRAM:
        snprintf(names[k++], MAX_NAME + 16, "%s_bucket", name);
        /* fall through */
    case OM_SUMMARY:
        snprintf(names[k++], MAX_NAME + 16, "%s_sum", name);
        snprintf(names[k++], MAX_NAME + 16, "%s_count", name);
        break;
    default:
        break;
    }
    return k;
}

/* Called with names_mu held. True when one of names is taken or reserved. */
static bool clashes(const struct otel_metrics *m, char names[5][MAX_NAME + 16], size_t k,
                    bool internal)
{
    for (size_t i = 0; i < k; i++) {
        for (size_t r = 0; r < sizeof reserved_prefixes / sizeof reserved_prefixes[0]; r++)
            if (strncmp(names[i], reserved_prefixes[r], strlen(reserved_prefixes[r])) == 0)
                return true;
        if (!internal && (strcmp(names[i], "target_info") == 0 ||
                          strcmp(names[i], "target") == 0))
            return true;
        for (size_t c = 0; c < m->n_claims; c++)
            if (strcmp(m->claims[c].name, names[i]) == 0) return true;
    }
    return false;
}

static int claim(struct otel_metrics *m, const struct family *f, char names[5][MAX_NAME + 16],
                 size_t k)
{
    if (m->n_claims + k > m->cap_claims) {
        size_t cap = m->cap_claims ? m->cap_claims * 2 : 64;
        while (cap < m->n_claims + k) cap *= 2;
        struct claim *c = realloc(m->claims, cap * sizeof *c);
        if (!c) return -ENOMEM;
        m->claims = c;
        m->cap_claims = cap;
    }
    for (size_t i = 0; i < k; i++) {
        char *s = strdup(names[i]);
        if (!s) return -ENOMEM; /* the ones added stay owned by f and go with it */
        m->claims[m->n_claims++] = (struct claim){s, f};
    }
    return 0;
}

static void unclaim(struct otel_metrics *m, const struct family *f)
{
    pthread_mutex_lock(&m->names_mu);
    for (size_t i = 0; i < m->n_claims;) {
        if (m->claims[i].owner == f) {
            free(m->claims[i].name);
            m->claims[i] = m->claims[--m->n_claims];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&m->names_mu);
}

/* ----- lifecycle --------------------------------------------------------------------------- */

static void series_free(struct om_series *s)
{
    if (!s) return;
    free(s->labels);
    free(s->bounds);
    free(s->buckets);
    free(s);
}

static void family_free(struct family *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n_slots; i++) {
        struct om_series *s = f->table[i];
        while (s) {
            struct om_series *next = s->next;
            series_free(s);
            s = next;
        }
    }
    free(f->table);
    free(f->name);
    free(f->help);
    free(f);
}

struct otel_metrics *otel_metrics_create(const struct otel_metrics_options *o)
{
    struct otel_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        log_msg(LOG_ERROR, "otel_metrics: out of memory");
        return NULL;
    }
    m->o = *o;
    pthread_mutex_init(&m->names_mu, NULL);
    for (int i = 0; i < SHARDS; i++) pthread_mutex_init(&m->shards[i].mu, NULL);
    m->shards_ready = true;
    return m;
}

void otel_metrics_destroy(struct otel_metrics *m)
{
    if (!m) return;
    if (m->shards_ready) {
        for (int i = 0; i < SHARDS; i++) {
            struct family *f = m->shards[i].families;
            while (f) {
                struct family *next = f->next;
                family_free(f);
                f = next;
            }
            pthread_mutex_destroy(&m->shards[i].mu);
        }
    }
    for (size_t i = 0; i < m->n_claims; i++) free(m->claims[i].name);
    free(m->claims);
    pthread_mutex_destroy(&m->names_mu);
    free(m);
}

void otel_metrics_count_rejected(struct otel_metrics *m, enum om_reject why, uint64_t n)
{
    if (m && n) atomic_fetch_add_explicit(&m->rejected[why], n, memory_order_relaxed);
}

uint64_t otel_metrics_series(struct otel_metrics *m)
{
    return atomic_load_explicit(&m->n_series, memory_order_relaxed);
}

/* ----- expiry ------------------------------------------------------------------------------ */

/* Shard lock held. */
static void sweep_shard(struct otel_metrics *m, struct shard *sh, int64_t now)
{
    sh->next_sweep_ns = now + (m->o.expiry_ns > 4 ? m->o.expiry_ns / 4 : 1);
    if (m->o.expiry_ns <= 0) return;
    struct family **fp = &sh->families;
    while (*fp) {
        struct family *f = *fp;
        for (size_t i = 0; i < f->n_slots; i++) {
            struct om_series **sp = &f->table[i];
            while (*sp) {
                struct om_series *s = *sp;
                if (now - s->touched_ns >= m->o.expiry_ns) {
                    *sp = s->next;
                    series_free(s);
                    f->n_series--;
                    atomic_fetch_sub_explicit(&m->n_series, 1, memory_order_relaxed);
                } else {
                    sp = &s->next;
                }
            }
        }
        if (f->n_series == 0) {
            *fp = f->next;
            unclaim(m, f);
            family_free(f);
        } else {
            fp = &f->next;
        }
    }
}

void otel_metrics_expire(struct otel_metrics *m)
{
    int64_t now = now_ns(m);
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&m->shards[i].mu);
        sweep_shard(m, &m->shards[i], now);
        pthread_mutex_unlock(&m->shards[i].mu);
    }
}

/* ----- apply ------------------------------------------------------------------------------- */

/* One label of a series being built: sanitised key, raw value, original key (ordering). */
struct lab {
    char key[128];
    const char *orig;
    const char *value;
};

static int lab_cmp(const void *a, const void *b)
{
    const struct lab *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->orig, y->orig);
}

/* Per-apply scratch. */
struct scratch {
    struct lab *labs;
    size_t cap;
    struct buf text;
};

static int add_lab(struct scratch *sc, size_t *n, const char *key, const char *value,
                   enum om_type type)
{
    if (*n >= sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 32;
        struct lab *l = realloc(sc->labs, cap * sizeof *l);
        if (!l) return -ENOMEM;
        sc->labs = l;
        sc->cap = cap;
    }
    struct lab *l = &sc->labs[*n];
    /* A longer key would be cut, and two keys differing past the cut merged: refused. */
    if (otel_metrics_label_key(key, l->key, sizeof l->key) >= sizeof l->key) return -E2BIG;
    (*n)++;
    /* le and quantile belong to the exposition of histograms and summaries. */
    if ((type == OM_HISTOGRAM && strcmp(l->key, "le") == 0) ||
        (type == OM_SUMMARY && strcmp(l->key, "quantile") == 0)) {
        memcpy(l->key, "exported_", 9);
        memcpy(l->key + 9, type == OM_HISTOGRAM ? "le" : "quantile",
               type == OM_HISTOGRAM ? 3 : 9);
    }
    l->orig = key;
    l->value = value;
    return 0;
}

/* Builds the escaped label text of n labs into sc->text: sorted by key, values of equal keys
 * joined with ';' in the order of the original keys, empty values left out. */
static void label_text(struct scratch *sc, size_t n)
{
    sc->text.len = 0;
    reserve(&sc->text, 1);
    if (sc->text.p) sc->text.p[0] = '\0';
    if (n > 1) qsort(sc->labs, n, sizeof *sc->labs, lab_cmp);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        bool any = false;
        while (j < n && strcmp(sc->labs[j].key, sc->labs[i].key) == 0) any |= sc->labs[j++].value[0] != 0;
        if (any) {
            if (sc->text.len) put(&sc->text, ",", 1);
            puts_(&sc->text, sc->labs[i].key);
            put(&sc->text, "=\"", 2);
            bool first = true;
            for (size_t k = i; k < j; k++) {
                if (!sc->labs[k].value[0]) continue;
                if (!first) put(&sc->text, ";", 1);
                put_escaped(&sc->text, sc->labs[k].value);
                first = false;
            }
            put(&sc->text, "\"", 1);
        }
        i = j;
    }
}

static const char *res_attr(const struct om_resource *r, const char *key)
{
    for (uint32_t i = 0; r && i < r->n_attrs; i++)
        if (strcmp(r->attrs[i].key, key) == 0) return r->attrs[i].value;
    return NULL;
}

/* job and instance of a resource, into sc->labs. */
static int resource_labels(struct scratch *sc, size_t *n, const struct om_resource *r,
                           char *job, size_t job_n)
{
    if (!r) return 0;
    const char *ns = res_attr(r, "service.namespace"), *svc = res_attr(r, "service.name"),
               *inst = res_attr(r, "service.instance.id");
    if (svc && svc[0]) {
        if (ns && ns[0]) snprintf(job, job_n, "%s/%s", ns, svc);
        else snprintf(job, job_n, "%s", svc);
        if (add_lab(sc, n, "job", job, OM_GAUGE)) return -ENOMEM;
    }
    if (inst && inst[0] && add_lab(sc, n, "instance", inst, OM_GAUGE)) return -ENOMEM;
    return 0;
}

static struct family *find_family(struct shard *sh, const char *name)
{
    for (struct family *f = sh->families; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

static struct om_series *find_series(struct family *f, const char *labels, size_t len, uint64_t h)
{
    if (!f->n_slots) return NULL;
    for (struct om_series *s = f->table[h & (f->n_slots - 1)]; s; s = s->next)
        if (s->hash == h && s->labels_len == len && memcmp(s->labels, labels, len) == 0) return s;
    return NULL;
}

static int grow_table(struct family *f)
{
    size_t slots = f->n_slots ? f->n_slots * 2 : 16;
    struct om_series **t = calloc(slots, sizeof *t);
    if (!t) return -ENOMEM;
    for (size_t i = 0; i < f->n_slots; i++) {
        struct om_series *s = f->table[i];
        while (s) {
            struct om_series *next = s->next;
            s->next = t[s->hash & (slots - 1)];
            t[s->hash & (slots - 1)] = s;
            s = next;
        }
    }
    free(f->table);
    f->table = t;
    f->n_slots = slots;
    return 0;
}

/* Histogram and summary arrays of s made like p's (reset to zero counts). 0 or -ENOMEM. */
static int shape_like(struct om_series *s, const struct om_point *p, enum om_type type)
{
    uint32_t nb = type == OM_HISTOGRAM ? p->n_bounds : 2 * p->n_quantiles;
    double *b = nb ? malloc(nb * sizeof *b) : NULL;
    uint64_t *k = type == OM_HISTOGRAM ? calloc((size_t)p->n_bounds + 1, sizeof *k) : NULL;
    if ((nb && !b) || (type == OM_HISTOGRAM && !k)) {
        free(b);
        free(k);
        return -ENOMEM;
    }
    if (type == OM_HISTOGRAM && nb) memcpy(b, p->bounds, nb * sizeof *b);
    free(s->bounds);
    free(s->buckets);
    s->bounds = b;
    s->buckets = k;
    s->n_bounds = type == OM_HISTOGRAM ? p->n_bounds : 0;
    s->n_quantiles = type == OM_SUMMARY ? p->n_quantiles : 0;
    s->count = 0;
    s->sum = 0;
    s->value = 0;
    return 0;
}

static bool same_bounds(const struct om_series *s, const struct om_point *p)
{
    return s->n_bounds == p->n_bounds &&
           (p->n_bounds == 0 || memcmp(s->bounds, p->bounds, p->n_bounds * sizeof(double)) == 0);
}

/* Applies p to s (temporality rules in otel_metrics.h). fresh: s was just created. */
static int update(struct om_series *s, bool fresh, const struct om_point *p, enum om_type type,
                  enum om_temporality t)
{
    bool delta = t == OM_DELTA && type != OM_SUMMARY;
    if (!fresh && p->time_ns && p->time_ns <= s->last_time_ns && s->last_time_ns) {
        /* Older than (or as old as) what is there: a retry or out-of-order point. A cumulative
         * one would move the series back in time; a delta one would count twice. */
        if (delta || p->time_ns < s->last_time_ns) return 0;
    }
    if (type == OM_HISTOGRAM) {
        if (fresh || !delta || !same_bounds(s, p)) {
            if (fresh || !same_bounds(s, p) || s->buckets == NULL)
                if (shape_like(s, p, type)) return -ENOMEM;
            s->count = 0;
            s->sum = 0;
            memset(s->buckets, 0, ((size_t)s->n_bounds + 1) * sizeof *s->buckets);
        }
        if (p->buckets)
            for (uint32_t i = 0; i <= p->n_bounds; i++) s->buckets[i] += p->buckets[i];
        else
            s->buckets[s->n_bounds] += p->count; /* count and sum only: all in +Inf */
        s->count += p->count;
        s->sum += p->has_sum ? p->sum : 0;
        s->has_sum = p->has_sum;
    } else if (type == OM_SUMMARY) {
        if (fresh || s->n_quantiles != p->n_quantiles)
            if (shape_like(s, p, type)) return -ENOMEM;
        for (uint32_t i = 0; i < p->n_quantiles; i++) {
            s->bounds[i] = p->quantiles[i];
            s->bounds[p->n_quantiles + i] = p->quantile_values[i];
        }
        s->count = p->count;
        s->sum = p->sum;
        s->has_sum = p->has_sum;
    } else {
        s->value = delta && !fresh ? s->value + p->value : p->value;
    }
    if (p->start_ns && (fresh || !delta)) s->start_ns = p->start_ns;
    if (p->time_ns > s->last_time_ns) s->last_time_ns = p->time_ns;
    return 0;
}

struct apply_ctx {
    struct otel_metrics *m;
    struct om_result *out;
    struct scratch sc;
    int64_t now;
};

static void refuse(struct apply_ctx *a, enum om_reject why, uint64_t n, const char *fmt,
                   const char *name) 
{
    if (!n) return;
    a->out->rejected += n;
    otel_metrics_count_rejected(a->m, why, n);
    if (!a->out->reason[0]) snprintf(a->out->reason, sizeof a->out->reason, fmt, name);
}

/* Finds or creates family name in sh (lock held). NULL with *why set when refused. */
static struct family *family_for(struct apply_ctx *a, struct shard *sh, const char *name,
                                 enum om_type type, const char *help, bool internal,
                                 enum om_reject *why, int *rc)
{
    struct family *f = find_family(sh, name);
    if (f) {
        if (f->internal != internal) {
            *why = OM_REJECT_NAME_CLASH;
            return NULL;
        }
        if (f->type != type) {
            *why = OM_REJECT_TYPE_CONFLICT;
            return NULL;
        }
        return f;
    }
    char names[5][MAX_NAME + 16];
    size_t k = names_of(name, type, names);
    f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        free(f);
        *rc = -ENOMEM;
        return NULL;
    }
    f->type = type;
    f->internal = internal;
    size_t hl = strlen(help);
    f->help = malloc((hl > HELP_MAX ? HELP_MAX : hl) + 1);
    if (!f->help) {
        family_free(f);
        *rc = -ENOMEM;
        return NULL;
    }
    /* HELP in a form both formats read alike: no backslash, quote or newline. */
    size_t o = 0;
    for (size_t i = 0; i < hl && o < HELP_MAX; i++) {
        char c = help[i];
        f->help[o++] = c == '\\' ? '/' : c == '"' ? '\'' : (c == '\n' || c == '\r') ? ' ' : c;
    }
    f->help[o] = '\0';
    pthread_mutex_lock(&a->m->names_mu);
    bool clash = clashes(a->m, names, k, internal);
    int crc = clash ? 0 : claim(a->m, f, names, k);
    pthread_mutex_unlock(&a->m->names_mu);
    if (clash || crc) {
        if (crc) {
            unclaim(a->m, f);
            *rc = crc;
        }
        family_free(f);
        *why = OM_REJECT_NAME_CLASH;
        return NULL;
    }
    f->next = sh->families;
    sh->families = f;
    return f;
}

/* Applies the points of one family (name already final). Lock-free until the shard lock. */
static int apply_family(struct apply_ctx *a, const char *name, const struct om_metric *mt,
                        bool internal)
{
    struct otel_metrics *m = a->m;
    uint64_t h = hash_bytes(name, strlen(name));
    struct shard *sh = &m->shards[h & (SHARDS - 1)];
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    if (a->now >= sh->next_sweep_ns) sweep_shard(m, sh, a->now);
    enum om_reject why = OM_REJECT_INVALID;
    struct family *f = family_for(a, sh, name, mt->type, mt->help ? mt->help : "", internal,
                                  &why, &rc);
    if (!f) {
        pthread_mutex_unlock(&sh->mu);
        if (rc) return rc;
        refuse(a, why, mt->n_points,
               why == OM_REJECT_TYPE_CONFLICT
                   ? "metric %s: another metric of that name has another type"
                   : "metric %s: its names collide with another metric or with meshscope's own",
               name);
        return 0;
    }
    if (!f->help[0] && mt->help && mt->help[0]) {
        /* First description wins; fill it in if the first sender had none. */
        char *h2 = strndup(mt->help, HELP_MAX);
        if (h2) {
            for (char *c = h2; *c; c++)
                if (*c == '\\') *c = '/';
                else if (*c == '"') *c = '\'';
                else if (*c == '\n' || *c == '\r') *c = ' ';
            free(f->help);
            f->help = h2;
        }
    }
    char job[512];
    for (uint32_t i = 0; i < mt->n_points; i++) {
        const struct om_point *p = &mt->points[i];
        size_t n = 0;
        if ((rc = resource_labels(&a->sc, &n, mt->resource, job, sizeof job))) break;
        if (mt->scope && mt->scope->name && mt->scope->name[0] &&
            (rc = add_lab(&a->sc, &n, "otel_scope_name", mt->scope->name, mt->type)))
            break;
        if (mt->scope && mt->scope->version && mt->scope->version[0] &&
            (rc = add_lab(&a->sc, &n, "otel_scope_version", mt->scope->version, mt->type)))
            break;
        for (uint32_t k = 0; k < p->n_labels && !rc; k++)
            rc = add_lab(&a->sc, &n, p->labels[k].key, p->labels[k].value, mt->type);
        if (rc == -E2BIG) {
            rc = 0;
            refuse(a, OM_REJECT_INVALID, 1, "metric %s: a label name over 127 bytes", name);
            continue;
        }
        if (rc) break;
        label_text(&a->sc, n);
        if (a->sc.text.oom) {
            rc = -ENOMEM;
            break;
        }
        const char *lt = a->sc.text.p ? a->sc.text.p : "";
        size_t ll = a->sc.text.len;
        if (ll > MAX_LABEL_TEXT || p->n_bounds > MAX_BUCKETS || p->n_quantiles > MAX_BUCKETS) {
            refuse(a, OM_REJECT_INVALID, 1,
                   "metric %s: a point's labels exceed 4096 bytes or it has over 256 buckets",
                   name);
            continue;
        }
        uint64_t sh_h = hash_bytes(lt, ll);
        struct om_series *s = find_series(f, lt, ll, sh_h);
        bool fresh = false;
        if (!s) {
            if (atomic_fetch_add(&m->n_series, 1) >= m->o.max_series) {
                atomic_fetch_sub(&m->n_series, 1);
                refuse(a, OM_REJECT_SERIES_LIMIT, 1,
                       "metric %s: series limit (--metrics-series-limit) reached", name);
                continue;
            }
            s = calloc(1, sizeof *s);
            if (!s || !(s->labels = strndup(lt, ll)) ||
                (f->n_series + 1 > f->n_slots && grow_table(f))) {
                series_free(s);
                atomic_fetch_sub(&m->n_series, 1);
                rc = -ENOMEM;
                break;
            }
            s->labels_len = ll;
            s->hash = sh_h;
            s->next = f->table[sh_h & (f->n_slots - 1)];
            f->table[sh_h & (f->n_slots - 1)] = s;
            f->n_series++;
            fresh = true;
        }
        if ((rc = update(s, fresh, p, mt->type, mt->temporality))) break;
        s->touched_ns = a->now;
        a->out->accepted++;
        atomic_fetch_add_explicit(&m->points_applied, 1, memory_order_relaxed);
    }
    /* A family created for points that were all refused (series limit) has no series: it
     * would claim its names for nothing. */
    if (f->n_series == 0) {
        struct family **fp = &sh->families;
        while (*fp != f) fp = &(*fp)->next;
        *fp = f->next;
        unclaim(m, f);
        family_free(f);
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/* One target_info series per resource: job, instance and every other resource attribute. */
static int apply_target_info(struct apply_ctx *a, const struct om_resource *r)
{
    uint32_t others = 0;
    for (uint32_t i = 0; i < r->n_attrs; i++)
        others += strcmp(r->attrs[i].key, "service.name") != 0 &&
                  strcmp(r->attrs[i].key, "service.namespace") != 0 &&
                  strcmp(r->attrs[i].key, "service.instance.id") != 0;
    if (!others) return 0;
    struct om_label *labels = malloc(others * sizeof *labels);
    if (!labels) return -ENOMEM;
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->n_attrs; i++)
        if (strcmp(r->attrs[i].key, "service.name") != 0 &&
            strcmp(r->attrs[i].key, "service.namespace") != 0 &&
            strcmp(r->attrs[i].key, "service.instance.id") != 0)
            labels[k++] = r->attrs[i];
    struct om_point p = {.labels = labels, .n_labels = k, .value = 1};
    struct om_metric mt = {.resource = r,
                           .name = "target_info",
                           .help = "Target metadata: the resource attributes of OTLP senders",
                           .unit = "",
                           .type = OM_GAUGE,
                           .points = &p,
                           .n_points = 1};
    /* Not counted as a received point: it is derived. */
    struct om_result dummy = {0};
    struct om_result *saved = a->out;
    a->out = &dummy;
    int rc = apply_family(a, "target_info", &mt, true);
    a->out = saved;
    free(labels);
    return rc;
}

int otel_metrics_apply(struct otel_metrics *m, const struct om_metric *metrics, size_t n,
                       struct om_result *out)
{
    memset(out, 0, sizeof *out);
    struct apply_ctx a = {.m = m, .out = out, .now = now_ns(m)};
    int rc = 0;
    const struct om_resource *last_res = NULL;
    size_t i;
    for (i = 0; i < n && !rc; i++) {
        const struct om_metric *mt = &metrics[i];
        if (!mt->n_points) continue;
        char name[MAX_NAME + 1];
        size_t len = otel_metrics_family_name(mt->name ? mt->name : "", mt->unit, mt->type, name,
                                              sizeof name);
        if (len > MAX_NAME || len == 0) {
            refuse(&a, OM_REJECT_INVALID, mt->n_points, "metric %s: name too long or empty",
                   len ? "(long name)" : "(empty)");
            continue;
        }
        if (mt->resource && mt->resource != last_res) {
            last_res = mt->resource;
            if ((rc = apply_target_info(&a, mt->resource))) break;
        }
        rc = apply_family(&a, name, mt, false);
    }
    if (rc) {
        /* Count what was not applied: the rest of the request. */
        uint64_t rest = 0;
        for (; i < n; i++) rest += metrics[i].n_points;
        refuse(&a, OM_REJECT_INVALID, rest, "%s", "out of memory");
    }
    free(a.sc.labs);
    free(a.sc.text.p);
    return rc;
}

/* ----- render ------------------------------------------------------------------------------ */

static const char *type_text(enum om_type t)
{
    switch (t) {
    case OM_COUNTER:
        return "counter";
    case OM_HISTOGRAM:
        return "histogram";
    case OM_SUMMARY:
        return "summary";
    default:
        return "gauge"; /* untyped too: OpenMetrics calls it "unknown", text "untyped" */
    }
}

/* One sample line: name+suffix{labels[,key="val"]} value. */
static void sample(struct buf *b, const struct family *f, const char *suffix,
                   const struct om_series *s, const char *key, const char *val, double v)
{
    puts_(b, f->name);
    puts_(b, suffix);
    if (s->labels_len || key) {
        put(b, "{", 1);
        put(b, s->labels, s->labels_len);
        if (key) {
            if (s->labels_len) put(b, ",", 1);
            puts_(b, key);
            put(b, "=\"", 2);
            puts_(b, val);
            put(b, "\"", 1);
        }
        put(b, "}", 1);
    }
    put(b, " ", 1);
    put_number(b, v);
    put(b, "\n", 1);
}

static void render_series(struct buf *b, const struct family *f, const struct om_series *s)
{
    char at[48];
    switch (f->type) {
    case OM_HISTOGRAM: {
        uint64_t cum = 0;
        for (uint32_t i = 0; i <= s->n_bounds; i++) {
            cum += s->buckets[i];
            if (i < s->n_bounds) otel_metrics_format_number(at, sizeof at, s->bounds[i]);
            else snprintf(at, sizeof at, "+Inf");
            sample(b, f, "_bucket", s, "le", at, (double)cum);
        }
        if (s->has_sum && s->sum >= 0) sample(b, f, "_sum", s, NULL, NULL, s->sum);
        sample(b, f, "_count", s, NULL, NULL, (double)s->count);
        break;
    }
    case OM_SUMMARY:
        for (uint32_t i = 0; i < s->n_quantiles; i++) {
            otel_metrics_format_number(at, sizeof at, s->bounds[i]);
            sample(b, f, "", s, "quantile", at, s->bounds[s->n_quantiles + i]);
        }
        sample(b, f, "_sum", s, NULL, NULL, s->sum);
        sample(b, f, "_count", s, NULL, NULL, (double)s->count);
        break;
    default:
        sample(b, f, "", s, NULL, NULL, f->type == OM_COUNTER && s->value < 0 ? 0 : s->value);
        break;
    }
}

int otel_metrics_render(struct otel_metrics *m, char **out, size_t *out_len)
{
    struct buf b = {0};
    reserve(&b, 4096);
    int64_t now = now_ns(m);
    for (int i = 0; i < SHARDS; i++) {
        struct shard *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        sweep_shard(m, sh, now);
        for (const struct family *f = sh->families; f; f = f->next) {
            puts_(&b, "# HELP ");
            puts_(&b, f->name);
            put(&b, " ", 1);
            puts_(&b, f->help[0] ? f->help : "OTLP metric without a description");
            puts_(&b, "\n# TYPE ");
            puts_(&b, f->name);
            put(&b, " ", 1);
            puts_(&b, type_text(f->type));
            put(&b, "\n", 1);
            for (size_t k = 0; k < f->n_slots; k++)
                for (const struct om_series *s = f->table[k]; s; s = s->next) render_series(&b, f, s);
        }
        pthread_mutex_unlock(&sh->mu);
    }
    puts_(&b, "# HELP meshscope_otlp_metric_series Series held by the OTLP metric store "
              "(POST /v1/metrics), target_info included.\n"
              "# TYPE meshscope_otlp_metric_series gauge\nmeshscope_otlp_metric_series ");
    put_u64(&b, otel_metrics_series(m));
    puts_(&b, "\n# HELP meshscope_otlp_metric_points_total Data points applied to the OTLP "
              "metric store.\n# TYPE meshscope_otlp_metric_points_total counter\n"
              "meshscope_otlp_metric_points_total ");
    put_u64(&b, atomic_load_explicit(&m->points_applied, memory_order_relaxed));
    puts_(&b, "\n# HELP meshscope_otlp_metric_points_rejected_total Data points refused by the "
              "OTLP metric decoders or store, by reason.\n"
              "# TYPE meshscope_otlp_metric_points_rejected_total counter\n");
    for (int r = 0; r < OM_REJECT_COUNT; r++) {
        puts_(&b, "meshscope_otlp_metric_points_rejected_total{reason=\"");
        puts_(&b, reject_label[r]);
        puts_(&b, "\"} ");
        put_u64(&b, atomic_load_explicit(&m->rejected[r], memory_order_relaxed));
        put(&b, "\n", 1);
    }
    if (b.oom) {
        free(b.p);
        return -ENOMEM;
    }
    *out = b.p;
    *out_len = b.len;
    return 0;
}
