/*
 * options.c: the one option table (rule 11). Each row gives a flag's name, type, default, bounds
 * and help; the same table drives --help, argv parsing, MESHSCOPE_<NAME> environment overrides
 * and validation. A bad value fails with one line naming the flag; the caller exits 2.
 */
#include "collector_int.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "query.h"
#include "syslog.h"

enum opt_type {
    OPT_STRING,
    OPT_PATH,
    OPT_ADDR,
    OPT_DURATION,
    OPT_SIZE,
    OPT_INT,
    OPT_LOGLEVEL,
    OPT_ACK,
    OPT_SYSLOG
};

struct opt_row {
    const char *name; /* flag without "--" */
    enum opt_type type;
    const char *def;  /* default, as text (parsed like user input) */
    int64_t min, max; /* bounds for DURATION (µs), SIZE (bytes), INT */
    size_t offset;    /* into struct options */
    const char *help;
};

#define OFF(f) offsetof(struct options, f)
#define GiB (INT64_C(1) << 30)
#define DAY_US (INT64_C(86400) * 1000000)

static const struct opt_row opt_table[] = {
    {"db", OPT_STRING, "./meshscope.db", 0, 0, OFF(db_path), "SQLite database file"},
    {"http", OPT_ADDR, "127.0.0.1:16686", 0, 0, OFF(http_addr),
     "listener for the dashboard, query APIs and /metrics (\"off\" disables)"},
    {"otlp-http", OPT_ADDR, "127.0.0.1:4318", 0, 0, OFF(otlp_http_addr),
     "OTLP/HTTP listener (\"off\" disables)"},
    {"zipkin", OPT_ADDR, "127.0.0.1:9411", 0, 0, OFF(zipkin_addr),
     "Zipkin listener (\"off\" disables)"},
    {"otlp-grpc", OPT_ADDR, "127.0.0.1:4317", 0, 0, OFF(otlp_grpc_addr),
     "gRPC listener: OTLP traces, Envoy access-log service (h2c; \"off\" disables)"},
    /* 0 = keep forever; at most 10 years: beyond that the µs arithmetic stops being useful. */
    {"retention", OPT_DURATION, "72h", 0, 3650 * DAY_US, OFF(retention_us),
     "delete data older than this (0 keeps everything)"},
    /* 0 = unlimited; a database under 1 MiB cannot hold its own schema and one batch. */
    {"max-db-size", OPT_SIZE, "0", 0, INT64_C(1) << 50, OFF(max_db_bytes),
     "delete the oldest data while the database exceeds this size (0 = unlimited)"},
    /* 16 MiB fits any sane OTLP batch (the SDKs send 512 spans per request by default). */
    {"max-body", OPT_SIZE, "16MiB", 1024, GiB, OFF(max_body_bytes),
     "largest request body, measured after decompression (413 above)"},
    {"queue-size", OPT_SIZE, "64MiB", 1 << 20, 64 * GiB, OFF(queue_bytes),
     "ingest queue bound, in bytes of the batches waiting (503 + Retry-After when full)"},
    {"http-threads", OPT_INT, "0", 0, 256, OFF(http_threads),
     "HTTP worker threads per listener (0 = one per CPU)"},
    /* Group-commit window: long enough to batch many requests per transaction, short enough
     * that a query sees a span within a few ms. */
    {"flush-interval", OPT_DURATION, "5ms", 0, 10 * INT64_C(1000000), OFF(flush_ms),
     "writer's group-commit window"},
    {"ack", OPT_ACK, "committed", 0, 0, OFF(ack_received),
     "when ingest answers 2xx: \"committed\" (after the spans are in SQLite) or \"received\" "
     "(once queued: lower latency, loses the queue on a crash)"},
    {"auth-token-file", OPT_PATH, "", 0, 0, OFF(auth_token_file),
     "require \"Authorization: Bearer <token>\" on ingest and read endpoints; file format in "
     "README (empty = no auth)"},
    {"tls-cert", OPT_PATH, "", 0, 0, OFF(tls_cert),
     "PEM certificate: serve every listener over TLS"},
    {"tls-key", OPT_PATH, "", 0, 0, OFF(tls_key), "PEM private key for --tls-cert"},
    /* Above the default soft fd limit of many systems, which main raises to the hard limit. */
    {"max-connections", OPT_INT, "4096", 16, 1000000, OFF(max_connections),
     "open connections per listener; beyond it new ones wait in the kernel's backlog"},
    /* Long enough for an exporter's keep-alive between batches (OTel SDKs: 5 s), short enough
     * that idle or stalled (slowloris) connections give their slot back soon. */
    /* A body that has not arrived whole this long after its headers is a slow client (or an
     * attack): its connection is closed. Generous for any honest body on any link. */
    {"request-timeout", OPT_DURATION, "60s", 1000000, 3600 * INT64_C(1000000),
     OFF(request_timeout_us),
     "close a connection whose request body is not complete this long "
     "after its headers"},
    {"idle-timeout", OPT_DURATION, "30s", 1000000, 3600 * INT64_C(1000000), OFF(idle_timeout_us),
     "close a connection that sends or reads nothing for this long"},
    /* Per metric family (istio_requests_total, traces_spanmetrics_calls_total, ...): with its
     * buckets a histogram family's 10,000 label sets are ~200,000 Prometheus series, about what
     * one scrape target should ever carry. */
    {"metrics-series-limit", OPT_INT, "10000", 1, 1000000, OFF(metrics_series_limit),
     "label sets per RED metric family; beyond it they fold into otel_metric_overflow=\"true\""},
    /* OTLP metrics (POST /v1/metrics): a series whose sender stopped disappears after this;
     * 5m outlives a few missed exports of the usual 10-60 s intervals. */
    {"metrics-expiry", OPT_DURATION, "5m", 1000000, 7 * 24 * 3600 * INT64_C(1000000),
     OFF(metrics_expiry_us), "OTLP metric series not updated this long disappear from /metrics"},
    /* The service graph pairs the two halves of a call (CLIENT and SERVER spans, the two
     * proxies' access-log records) if the second comes this long after the first; Tempo's
     * service-graph processor waits 10s. Longer costs memory (the halves waiting) and delay. */
    {"service-graph-wait", OPT_DURATION, "10s", 100000, 120 * INT64_C(1000000), OFF(graph_wait_us),
     "how long a half of a call (span, access-log record) waits for its other half on the "
     "service graph"},
    {"syslog", OPT_SYSLOG, "off", 0, 0, OFF(syslog),
     "syslog receiver (nginx, HAProxy JSON access logs) on UDP and TCP: \"ADDR[,service=NAME]\", "
     "several separated by spaces (\"off\" disables; README: Syslog)"},
    {"log-level", OPT_LOGLEVEL, "info", 0, 0, OFF(log_level), "debug, info, warn or error"},
};
#define N_OPTS (sizeof opt_table / sizeof opt_table[0])

int parse_size(const char *s, int64_t *out)
{
    static const struct {
        const char *suffix;
        int64_t mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1000},
        {"kb", 1000},
        {"kib", 1024},
        {"m", 1000000},
        {"mb", 1000000},
        {"mib", 1 << 20},
        {"g", 1000000000},
        {"gb", 1000000000},
        {"gib", 1 << 30},
        {"t", INT64_C(1000000000000)},
        {"tb", INT64_C(1000000000000)},
        {"tib", INT64_C(1) << 40},
    };
    if (!s || !isdigit((unsigned char)*s)) return -EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || v < 0) return -EINVAL;
    char unit[8] = {0};
    size_t n = 0;
    for (; end[n] && n < sizeof unit - 1; n++)
        unit[n] = (char)tolower((unsigned char)end[n]);
    if (end[n]) return -EINVAL; /* no unit is that long */
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].suffix) == 0) {
            double bytes = v * (double)units[i].mult;
            if (bytes > (double)(INT64_C(1) << 62)) return -EINVAL;
            *out = (int64_t)bytes;
            return 0;
        }
    }
    return -EINVAL;
}

int parse_duration_us(const char *s, int64_t *out)
{
    if (!s || !*s) return -EINVAL;
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return 0;
    }
    /* Go durations have no day unit; accept a leading "<n>d" and hand the rest to the Go
     * parser shared with the query API. */
    int64_t days = 0;
    const char *rest = s;
    const char *d = strchr(s, 'd');
    if (d) {
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (errno || end != d || n < 0 || n > 100000) return -EINVAL;
        days = n;
        rest = d + 1;
    }
    int64_t us = 0;
    if (*rest && query_parse_duration(rest, &us) != 0) return -EINVAL;
    *out = days * DAY_US + us;
    return 0;
}

/* Accepts "host:port", "[v6]:port", ":port" (all interfaces) or "off". */
static int check_addr(const char *s)
{
    if (strcmp(s, "off") == 0) return 0;
    const char *colon = strrchr(s, ':');
    if (!colon || colon[1] == '\0') return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) return -EINVAL;
    return 0;
}

static int set_option(const struct opt_row *o, const char *value, struct options *out,
                      const char *origin)
{
    void *field = (char *)out + o->offset;
    int64_t n = 0;
    int rc = 0;
    switch (o->type) {
    case OPT_STRING:
        if (!*value)
            rc = -EINVAL;
        else
            *(const char **)field = value;
        break;
    case OPT_PATH:
        *(const char **)field = value;
        break;
    case OPT_ADDR:
        rc = check_addr(value);
        if (rc == 0) *(const char **)field = value;
        break;
    case OPT_DURATION:
        rc = parse_duration_us(value, &n);
        break;
    case OPT_SIZE:
        rc = parse_size(value, &n);
        break;
    case OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || !*value || *end) rc = -EINVAL;
        n = v;
        break;
    }
    case OPT_ACK:
        if (strcmp(value, "committed") == 0)
            *(bool *)field = false;
        else if (strcmp(value, "received") == 0)
            *(bool *)field = true;
        else
            rc = -EINVAL;
        break;
    case OPT_SYSLOG: {
        struct syslog_listener_spec specs[SYSLOG_MAX_LISTENERS];
        size_t count;
        char why[160];
        rc = syslog_parse_spec(value, specs, SYSLOG_MAX_LISTENERS, &count, why, sizeof why);
        if (rc == 0)
            *(const char **)field = value;
        else
            fprintf(stderr, "meshscope: %s--%s: %s\n", origin, o->name, why);
        break;
    }
    case OPT_LOGLEVEL: {
        enum log_level lvl;
        rc = log_level_parse(value, &lvl);
        if (rc == 0) *(enum log_level *)field = lvl;
        break;
    }
    }
    if (rc == 0 && (o->type == OPT_DURATION || o->type == OPT_SIZE || o->type == OPT_INT)) {
        if (n < o->min || n > o->max) {
            fprintf(stderr, "meshscope: %s--%s: value '%s' out of range\n", origin, o->name, value);
            return -EINVAL;
        }
        *(int64_t *)field = n;
    }
    if (rc != 0) {
        fprintf(stderr, "meshscope: %s--%s: invalid value '%s'\n", origin, o->name, value);
        return -EINVAL;
    }
    return 0;
}

static void print_help(void)
{
    printf("Usage: meshscope [OPTION]...\n"
           "Telemetry collector and tracing backend: OTLP/HTTP ingest, SQLite trace store,\n"
           "Jaeger-compatible query API, Prometheus /metrics.\n\nOptions:\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_row *o = &opt_table[i];
        char env[64];
        snprintf(env, sizeof env, "MESHSCOPE_%s", o->name);
        for (char *p = env; *p; p++)
            *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        printf("  --%-16s %s\n  %-18s default: %s; environment: %s\n", o->name, o->help, "", o->def,
               env);
    }
    printf("  --help             this text\n  --version          print the version\n");
}

int options_parse(int argc, char **argv, struct options *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < N_OPTS; i++) {
        if (set_option(&opt_table[i], opt_table[i].def, out, "default ") != 0) return -EINVAL;
    }
    /* Environment first, so argv wins. */
    for (size_t i = 0; i < N_OPTS; i++) {
        char env[64];
        snprintf(env, sizeof env, "MESHSCOPE_%s", opt_table[i].name);
        for (char *p = env; *p; p++)
            *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        const char *v = getenv(env);
        if (v && set_option(&opt_table[i], v, out, "environment ") != 0) return -EINVAL;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help();
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("meshscope 0.1.0\n");
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "meshscope: unexpected argument '%s' (see --help)\n", arg);
            return -EINVAL;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt_row *o = NULL;
        for (size_t k = 0; k < N_OPTS; k++) {
            if (strlen(opt_table[k].name) == name_len &&
                strncmp(opt_table[k].name, name, name_len) == 0)
                o = &opt_table[k];
        }
        if (!o) {
            fprintf(stderr, "meshscope: unknown flag '--%.*s' (see --help)\n", (int)name_len, name);
            return -EINVAL;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "meshscope: --%s: missing value\n", o->name);
                return -EINVAL;
            }
            value = argv[++i];
        }
        if (set_option(o, value, out, "") != 0) return -EINVAL;
    }
    if (out->http_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        out->http_threads = n > 0 ? n : 2;
    }
    out->flush_ms = out->flush_ms / 1000; /* the table parsed µs */
    if (!*out->tls_cert != !*out->tls_key) {
        fprintf(stderr, "meshscope: --tls-cert and --tls-key go together\n");
        return -EINVAL;
    }
    return 0;
}

int listen_addr_resolve(const char *addr, int socktype, struct addrinfo **out)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon) return -EINVAL;
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof host) return -EINVAL;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    char *h = host;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host[hlen - 1] = '\0';
        h = host + 1;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = socktype, .ai_flags = AI_PASSIVE};
    *out = NULL;
    if (getaddrinfo(*h ? h : NULL, colon + 1, &hints, out) != 0 || !*out) {
        *out = NULL;
        return -EINVAL;
    }
    return 0;
}
