/*
 * syslog.c: the syslog receiver (formats, framing and limits in syslog.h).
 *
 * DESIGN
 * - One event-loop thread serves every --syslog listener: its epoll set holds each listener's
 *   UDP socket, a wake-up eventfd (syslog_stop) and a second epoll set with the TCP listening
 *   sockets and connections. Backpressure is one epoll_ctl: while the ingest queue refuses the
 *   pending batch, the TCP set is taken out of the main set, so no TCP byte is read (the
 *   kernel's receive window then stops the sender) while UDP datagrams, which cannot wait, are
 *   read and counted as dropped.
 * - Messages decode (accesslog_decode_json_ex) straight into one pending span batch, pushed with
 *   ingest_queue_push_observed (RED aggregation, as the HTTP threads do) once it holds
 *   FLUSH_MESSAGES messages or FLUSH_BYTES bytes, or FLUSH_US after its first message. A refused
 *   push keeps the batch (it only grows by what the current epoll round already read: at most
 *   MAX_EVENTS buffers) and is retried every RETRY_MS.
 * - Threads: this thread only, beside syslog_start/syslog_stop on the main thread (which touch
 *   the server before the thread starts and after it is joined). Shared state: the queue and
 *   the self_metrics atomics.
 */
#include "syslog.h"
#include "decode.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Batching: enough messages per batch that the queue and the writer see few, large batches at
 * high rates; short enough a wait that a record is queryable a few ms after it arrived. */
#define FLUSH_MESSAGES 512
#define FLUSH_BYTES (1u << 20)
#define FLUSH_US 5000
#define RETRY_MS 5
#define MAX_EVENTS 64
#define UDP_PER_WAKE 256   /* datagrams read per readiness event before serving the others */
#define STOP_FLUSH_MS 5000 /* syslog_stop: longest wait for room in a full queue */
#define CONN_BUF_MIN 4096

/* ----- listener spec ------------------------------------------------------------------------ */

static int check_port(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1]) return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return *end || port < 0 || port > 65535 ? -EINVAL : 0;
}

int syslog_parse_spec(const char *value, struct syslog_listener_spec *out, size_t max, size_t *n,
                      char *err, size_t errlen)
{
    *n = 0;
    if (!value || strcmp(value, "off") == 0) return 0;
    const char *p = value;
    for (;;) {
        while (*p == ' ') p++;
        if (!*p) break;
        size_t len = strcspn(p, " ");
        if (*n == max) {
            snprintf(err, errlen, "more than %zu listeners", max);
            return -EINVAL;
        }
        struct syslog_listener_spec *s = &out[*n];
        memset(s, 0, sizeof *s);
        size_t alen = strcspn(p, ", ");
        if (alen == 0 || alen >= sizeof s->addr) {
            snprintf(err, errlen, "bad listen address in '%.*s'", (int)len, p);
            return -EINVAL;
        }
        memcpy(s->addr, p, alen);
        if (check_port(s->addr) != 0) {
            snprintf(err, errlen, "'%s' is not host:port", s->addr);
            return -EINVAL;
        }
        for (size_t i = alen; i < len;) {
            i++; /* the ',' */
            size_t olen = strcspn(p + i, ", ");
            if (olen > 8 && strncmp(p + i, "service=", 8) == 0 &&
                olen - 8 <= SYSLOG_MAX_SERVICE) {
                memcpy(s->service, p + i + 8, olen - 8);
                s->service[olen - 8] = '\0';
            } else {
                snprintf(err, errlen, "unknown listener option '%.*s' (expected service=NAME)",
                         (int)olen, p + i);
                return -EINVAL;
            }
            i += olen;
        }
        (*n)++;
        p += len;
    }
    if (*n == 0) {
        snprintf(err, errlen, "no listen address");
        return -EINVAL;
    }
    return 0;
}

/* ----- header ------------------------------------------------------------------------------- */

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* A header token up to the next SP: printable US-ASCII (33..126), 1..max bytes. Returns its end
 * (the SP or len) or 0 when malformed. */
static size_t token(const uint8_t *m, size_t len, size_t i, size_t max, struct syslog_text *out)
{
    size_t j = i;
    while (j < len && m[j] != ' ') {
        if (m[j] < 33 || m[j] > 126) return 0;
        j++;
    }
    if (j == i || j - i > max) return 0;
    out->ptr = (const char *)m + i;
    out->len = j - i;
    return j;
}

static void set_msg(struct syslog_header *h, const uint8_t *m, size_t len, size_t i)
{
    if (i > len) i = len;
    if (len - i >= 3 && m[i] == 0xEF && m[i + 1] == 0xBB && m[i + 2] == 0xBF) i += 3;
    h->msg = m + i;
    h->msg_len = len - i;
}

/* SD-NAME: printable US-ASCII but '=', SP, ']' and '"'; 1..32 bytes. */
static size_t sd_name(const uint8_t *m, size_t len, size_t i)
{
    size_t j = i;
    while (j < len && j - i <= 32 && m[j] > 32 && m[j] < 127 && m[j] != '=' && m[j] != ']' &&
           m[j] != '"')
        j++;
    return j > i && j - i <= 32 ? j : 0;
}

/* STRUCTURED-DATA from m[i]: "-" or one or more [ID PARAM="VALUE"...] (RFC 5424 6.3; '\' escapes
 * '"', '\' and ']' in values). Returns the index after it, or 0. */
static size_t structured_data(const uint8_t *m, size_t len, size_t i)
{
    if (i < len && m[i] == '-') return i + 1;
    if (i >= len || m[i] != '[') return 0;
    while (i < len && m[i] == '[') {
        i = sd_name(m, len, i + 1);
        if (!i) return 0;
        while (i < len && m[i] == ' ') {
            i = sd_name(m, len, i + 1);
            if (!i || i + 1 >= len || m[i] != '=' || m[i + 1] != '"') return 0;
            for (i += 2; i < len && m[i] != '"'; i++)
                if (m[i] == '\\') i++;
            if (i >= len) return 0;
            i++; /* the closing '"' */
        }
        if (i >= len || m[i] != ']') return 0;
        i++;
    }
    return i;
}

static int parse_5424(const uint8_t *m, size_t len, size_t i, struct syslog_header *h,
                      const char **why)
{
    /* TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, with RFC 5424's lengths. */
    static const size_t max[5] = {48, 255, 48, 128, 32};
    static const char *const what[5] = {"bad timestamp", "bad hostname", "bad app-name",
                                        "bad procid", "bad msgid"};
    struct syslog_text *f[5] = {&h->timestamp, &h->hostname, &h->app_name, &h->procid, &h->msgid};
    for (int k = 0; k < 5; k++) {
        size_t e = token(m, len, i, max[k], f[k]);
        if (!e || e >= len) {
            *why = what[k];
            return -EINVAL;
        }
        if (f[k]->len == 1 && f[k]->ptr[0] == '-') f[k]->len = 0;
        i = e + 1;
    }
    if (h->timestamp.len &&
        accesslog_parse_rfc3339(h->timestamp.ptr, h->timestamp.len) < 0) {
        *why = "bad timestamp";
        return -EINVAL;
    }
    size_t e = structured_data(m, len, i);
    if (!e || (e < len && m[e] != ' ')) {
        *why = "bad structured data";
        return -EINVAL;
    }
    if (m[i] != '-') h->structured_data = (struct syslog_text){(const char *)m + i, e - i};
    set_msg(h, m, len, e + 1);
    return 0;
}

/* "Mmm dd hh:mm:ss " (dd may be " 7"). */
static bool bsd_timestamp(const uint8_t *m, size_t len, size_t i)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (len - i < 16) return false;
    const uint8_t *t = m + i;
    bool month = false;
    for (int k = 0; k < 12 && !month; k++) month = memcmp(t, months + 3 * k, 3) == 0;
    return month && t[3] == ' ' && (t[4] == ' ' || is_digit(t[4])) && is_digit(t[5]) &&
           t[6] == ' ' && is_digit(t[7]) && is_digit(t[8]) && t[9] == ':' && is_digit(t[10]) &&
           is_digit(t[11]) && t[12] == ':' && is_digit(t[13]) && is_digit(t[14]) && t[15] == ' ';
}

/* TAG as "name", "name[pid]", each maybe ending in ':'. */
static void split_tag(struct syslog_text t, struct syslog_header *h)
{
    if (t.len && t.ptr[t.len - 1] == ':') t.len--;
    const char *lb = memchr(t.ptr, '[', t.len);
    if (lb && t.len && t.ptr[t.len - 1] == ']') {
        h->procid = (struct syslog_text){lb + 1, (size_t)(t.ptr + t.len - 1 - (lb + 1))};
        t.len = (size_t)(lb - t.ptr);
    }
    h->app_name = t;
}

static int parse_3164(const uint8_t *m, size_t len, size_t i, struct syslog_header *h,
                      const char **why)
{
    if (bsd_timestamp(m, len, i)) {
        h->timestamp = (struct syslog_text){(const char *)m + i, 15};
        i += 16;
    } else if (len - i >= 5 && is_digit(m[i]) && m[i + 4] == '-') {
        /* An RFC 3339 timestamp (rsyslog's RSYSLOG_ForwardFormat). */
        size_t e = token(m, len, i, 48, &h->timestamp);
        if (!e || accesslog_parse_rfc3339(h->timestamp.ptr, h->timestamp.len) < 0) {
            *why = "bad timestamp";
            return -EINVAL;
        }
        i = e + 1;
    }
    /* HOSTNAME (optional: HAProxy sends none by default) and TAG; the message may follow any
     * of them at once, as JSON bodies start with '{'. */
    for (int k = 0; k < 2 && i < len && m[i] != '{'; k++) {
        struct syslog_text t;
        size_t e = token(m, len, i, 255, &t);
        if (!e) {
            *why = k == 0 ? "bad hostname or tag" : "bad tag";
            return -EINVAL;
        }
        bool tag = t.ptr[t.len - 1] == ':' || k == 1;
        if (tag)
            split_tag(t, h);
        else
            h->hostname = t;
        i = e + 1;
        if (tag) break;
    }
    set_msg(h, m, len, i);
    return 0;
}

int syslog_parse_header(const uint8_t *m, size_t len, struct syslog_header *h, const char **why)
{
    memset(h, 0, sizeof *h);
    h->pri = -1;
    *why = NULL;
    if (len == 0) {
        *why = "empty message";
        return -EINVAL;
    }
    if (m[0] != '<') {
        if (m[0] != '{') {
            *why = "no PRI";
            return -EINVAL;
        }
        set_msg(h, m, len, 0);
        return 0;
    }
    size_t i = 1;
    int pri = 0;
    while (i < len && i <= 3 && is_digit(m[i])) pri = pri * 10 + (m[i++] - '0');
    if (i == 1 || i >= len || m[i] != '>' || pri > 191) {
        *why = "bad PRI";
        return -EINVAL;
    }
    h->pri = pri;
    i++;
    /* VERSION: NONZERO-DIGIT 0*2DIGIT SP. An RFC 3164 timestamp never starts with a digit, and
     * an RFC 3339 one has no SP after its first digits. */
    if (i < len && m[i] >= '1' && m[i] <= '9') {
        size_t j = i;
        int v = 0;
        while (j < len && j - i < 3 && is_digit(m[j])) v = v * 10 + (m[j++] - '0');
        if (j < len && m[j] == ' ') {
            h->version = v;
            if (v != 1) {
                *why = "unsupported syslog version";
                return -EINVAL;
            }
            return parse_5424(m, len, j + 1, h, why);
        }
    }
    return parse_3164(m, len, i, h, why);
}

/* ----- framing ------------------------------------------------------------------------------ */

void syslog_framer_init(struct syslog_framer *f, size_t max)
{
    memset(f, 0, sizeof *f);
    f->max = max;
}

static bool separator(uint8_t c)
{
    return c == '\n' || c == '\r' || c == '\0' || c == ' ';
}

enum syslog_frame syslog_frame_next(struct syslog_framer *f, const uint8_t *buf, size_t len,
                                    const uint8_t **msg, size_t *msg_len, size_t *used)
{
    size_t i = 0;
    *msg = NULL;
    *msg_len = 0;
    if (f->discard) {
        size_t t = f->discard < len ? (size_t)f->discard : len;
        f->discard -= t;
        i = t;
        if (f->discard) {
            *used = i;
            return SYSLOG_FRAME_MORE;
        }
    }
    if (f->discard_to_lf) {
        const uint8_t *lf = memchr(buf + i, '\n', len - i);
        if (!lf) {
            *used = len;
            return SYSLOG_FRAME_MORE;
        }
        i = (size_t)(lf - buf) + 1;
        f->discard_to_lf = false;
    }
    while (i < len && separator(buf[i])) i++;
    *used = i;
    if (i == len) return SYSLOG_FRAME_MORE;
    if (is_digit(buf[i])) {
        /* Octet counting: MSG-LEN = NONZERO-DIGIT *DIGIT, SP, MSG. Ten digits are more than
         * any accepted length; more means garbage. */
        size_t j = i;
        uint64_t n = 0;
        while (j < len && is_digit(buf[j]) && j - i < 10) n = n * 10 + (uint64_t)(buf[j++] - '0');
        if (j == len) return SYSLOG_FRAME_MORE;
        if (buf[j] != ' ' || buf[i] == '0') {
            f->discard_to_lf = true;
            return SYSLOG_FRAME_BAD_LENGTH;
        }
        size_t start = j + 1;
        if (n > f->max) {
            size_t avail = len - start;
            size_t take = n < avail ? (size_t)n : avail;
            f->discard = n - take;
            *used = start + take;
            return SYSLOG_FRAME_TOO_LARGE;
        }
        if (len - start < n) return SYSLOG_FRAME_MORE;
        *msg = buf + start;
        *msg_len = (size_t)n;
        *used = start + (size_t)n;
        return SYSLOG_FRAME_MESSAGE;
    }
    /* Non-transparent framing: up to LF (or NUL); a CR before it is dropped. */
    size_t e = i;
    while (e < len && buf[e] != '\n' && buf[e] != '\0') e++;
    if (e == len) {
        if (len - i > f->max + 1) {
            f->discard_to_lf = true;
            *used = len;
            return SYSLOG_FRAME_TOO_LARGE;
        }
        return SYSLOG_FRAME_MORE;
    }
    size_t end = e;
    if (end > i && buf[end - 1] == '\r') end--;
    *used = e + 1;
    if (end - i > f->max) return SYSLOG_FRAME_TOO_LARGE;
    *msg = buf + i;
    *msg_len = end - i;
    return SYSLOG_FRAME_MESSAGE;
}

int syslog_frame_eof(struct syslog_framer *f, const uint8_t *buf, size_t len,
                     const uint8_t **msg, size_t *msg_len)
{
    *msg = NULL;
    *msg_len = 0;
    if (f->discard || f->discard_to_lf) return SYSLOG_FRAME_MORE;
    size_t i = 0;
    while (i < len && separator(buf[i])) i++;
    if (i == len) return SYSLOG_FRAME_MORE;
    if (is_digit(buf[i])) return -1;
    size_t end = len;
    while (end > i && (buf[end - 1] == '\r' || buf[end - 1] == ' ')) end--;
    if (end - i > f->max) return SYSLOG_FRAME_TOO_LARGE;
    *msg = buf + i;
    *msg_len = end - i;
    return SYSLOG_FRAME_MESSAGE;
}

/* ----- message -------------------------------------------------------------------------- */

bool syslog_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k) return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* The decoder's reason, sorted into a metric label. */
static int classify(const char *why)
{
    if (!why) return SYSLOG_REJECT_INVALID_RECORD;
    if (strstr(why, "invalid JSON") || strstr(why, "not a JSON object") ||
        strstr(why, "not NDJSON"))
        return SYSLOG_REJECT_NOT_JSON;
    if (strstr(why, ": missing")) return SYSLOG_REJECT_MISSING_FIELD;
    if (strstr(why, "bytes, max")) return SYSLOG_REJECT_TOO_LARGE;
    return SYSLOG_REJECT_INVALID_RECORD;
}

static int decode_body(const uint8_t *body, size_t len, const char *service,
                       const struct decode_limits *lim, struct span_batch *b, char *err,
                       size_t errlen)
{
    /* TEMPORARY until accesslog_decode_json_ex lands (ALOG_CONTRACT.md): the defaults applied
     * after the fact. */
    uint32_t first = b->n_logs;
    int rc = accesslog_decode_json(body, len, lim, b, err, errlen);
    for (uint32_t i = first; rc == 0 && i < b->n_logs; i++) {
        struct access_log *l = &b->logs[i];
        if (l->direction == ALOG_DIRECTION_UNKNOWN) l->direction = ALOG_DIRECTION_OUTBOUND;
        if (service && strcmp(l->str[ALOG_SERVICE].ptr, "unknown_service") == 0)
        {
            char *copy = arena_strndup(b->arena, service, strlen(service));
            if (!copy) return -ENOMEM;
            l->str[ALOG_SERVICE] = (struct mstr){copy, (uint32_t)strlen(service)};
        }
    }
    return rc;
}

int syslog_decode_message(const uint8_t *m, size_t len, const char *service,
                          const struct decode_limits *lim, struct span_batch *b, const char **why)
{
    struct syslog_header h;
    *why = NULL;
    if (len > SYSLOG_MAX_MESSAGE) {
        *why = "message too large";
        return SYSLOG_REJECT_TOO_LARGE;
    }
    if (syslog_parse_header(m, len, &h, why) != 0) return SYSLOG_REJECT_BAD_HEADER;
    const uint8_t *body = h.msg;
    size_t n = h.msg_len;
    while (n && (body[0] == ' ' || body[0] == '\t')) body++, n--;
    while (n && (body[n - 1] == ' ' || body[n - 1] == '\t' || body[n - 1] == '\n' ||
                 body[n - 1] == '\r' || body[n - 1] == '\0'))
        n--;
    if (!n || body[0] != '{') {
        *why = n ? "message body is not a JSON object" : "empty message body";
        return SYSLOG_REJECT_NOT_JSON;
    }
    if (!syslog_utf8_valid(body, n)) {
        *why = "message body is not valid UTF-8";
        return SYSLOG_REJECT_INVALID_UTF8;
    }
    /* Decode straight into b; the decoder keeps only a batch's first reason, so make room for
     * this message's and put the batch's back afterwards. */
    const char *saved = b->reject_reason;
    uint32_t logs = b->n_logs, rejected = b->rejected;
    b->reject_reason = NULL;
    char err[256];
    err[0] = '\0';
    int rc = decode_body(body, n, service, lim, b, err, sizeof err);
    const char *mine = b->reject_reason;
    b->reject_reason = saved ? saved : mine;
    if (rc == -ENOMEM) return -ENOMEM;
    if (rc == 0 && b->rejected == rejected && b->n_logs > logs) return 0;
    /* Refused, or a body that held a bad record beside good ones: nothing of it is kept. */
    while (b->n_logs > logs) span_batch_drop_last_log(b);
    b->rejected = rejected + 1;
    if (rc != 0) {
        *why = "message body is not a JSON object";
        return SYSLOG_REJECT_NOT_JSON;
    }
    *why = mine ? mine : "no record in the message";
    return classify(mine);
}

/* ----- the receiver ------------------------------------------------------------------------- */

enum src_kind { SRC_WAKE, SRC_UDP, SRC_TCP_SET, SRC_TCP_LISTEN, SRC_CONN };

struct src {
    enum src_kind kind;
    struct listener *l;
};

struct listener {
    struct syslog_listener_spec spec;
    struct src udp_src, tcp_src;
    int udp_fd, tcp_fd;
    unsigned port;
    unsigned n_conns;
};

struct conn {
    struct src src; /* first: epoll data points here */
    int fd;
    uint8_t *buf;
    size_t len, cap;
    struct syslog_framer fr;
    int64_t last_us;
    struct conn *prev, *next;
};

struct syslog_server {
    struct listener l[SYSLOG_MAX_LISTENERS];
    size_t n;
    int ep, tcp_ep, wake_fd;
    struct src wake_src, tcp_set_src;
    pthread_t thread;
    bool started;
    struct ingest_queue *q;
    void (*observe)(void *arg, const struct span_batch *b);
    void *observe_arg;
    int64_t idle_us;
    struct decode_limits lim;
    uint8_t *dgram; /* SYSLOG_MAX_MESSAGE + 1: one more byte tells an oversize datagram */
    struct conn *conns;
    /* the batch being filled, and the accepted messages in it per transport */
    struct span_batch *pending;
    uint64_t pending_msgs[SYSLOG_TRANSPORT_COUNT];
    int64_t pending_since_us;
    bool blocked; /* the queue refused the pending batch: TCP set out of the epoll set */
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#define COUNT(field) atomic_fetch_add_explicit(&(field), 1, memory_order_relaxed)

static void reject(struct listener *l, enum syslog_transport t, int reason, const char *why)
{
    COUNT(self_metrics.syslog_messages[t][SYSLOG_REJECTED]);
    COUNT(self_metrics.syslog_rejected[reason]);
    log_ratelimited(LOG_INFO, "syslog-reject", "syslog: %s message on %s refused (%s): %s",
                    syslog_transport_label[t], l->spec.addr, syslog_reject_label[reason],
                    why ? why : "");
}

static uint64_t pending_total(const struct syslog_server *s)
{
    return s->pending_msgs[SYSLOG_UDP] + s->pending_msgs[SYSLOG_TCP];
}

static void set_blocked(struct syslog_server *s, bool blocked)
{
    if (s->blocked == blocked) return;
    s->blocked = blocked;
    if (blocked) {
        epoll_ctl(s->ep, EPOLL_CTL_DEL, s->tcp_ep, NULL);
        log_ratelimited(LOG_WARN, "syslog-busy",
                        "syslog: ingest queue full: TCP reading paused, UDP messages dropped");
    } else {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->tcp_set_src};
        epoll_ctl(s->ep, EPOLL_CTL_ADD, s->tcp_ep, &ev);
        /* Unread while paused is not idle: the idle clock restarts. */
        int64_t now = mono_us();
        for (struct conn *c = s->conns; c; c = c->next) c->last_us = now;
    }
}

/* Pushes the pending batch. Returns 0 (pushed or nothing to push) or -EBUSY (kept, blocked). */
static int flush(struct syslog_server *s)
{
    if (!s->pending || pending_total(s) == 0) {
        set_blocked(s, false);
        return 0;
    }
    int rc = ingest_queue_push_observed(s->q, s->pending, s->observe, s->observe_arg);
    if (rc == -EBUSY) {
        set_blocked(s, true);
        return -EBUSY;
    }
    enum syslog_outcome o = rc == 0 ? SYSLOG_ACCEPTED : SYSLOG_DROPPED;
    for (int t = 0; t < SYSLOG_TRANSPORT_COUNT; t++) {
        atomic_fetch_add_explicit(&self_metrics.syslog_messages[t][o], s->pending_msgs[t],
                                  memory_order_relaxed);
        s->pending_msgs[t] = 0;
    }
    if (rc != 0) span_batch_destroy(s->pending);
    s->pending = NULL;
    set_blocked(s, false);
    return 0;
}

static void handle_message(struct syslog_server *s, struct listener *l, enum syslog_transport t,
                           const uint8_t *m, size_t len)
{
    if (!s->pending) {
        s->pending = span_batch_create();
        if (!s->pending) {
            COUNT(self_metrics.syslog_messages[t][SYSLOG_DROPPED]);
            log_ratelimited(LOG_WARN, "syslog-oom", "syslog: out of memory, message dropped");
            return;
        }
    }
    const char *why;
    int rc = syslog_decode_message(m, len, l->spec.service[0] ? l->spec.service : NULL, &s->lim,
                                   s->pending, &why);
    if (rc < 0) {
        COUNT(self_metrics.syslog_messages[t][SYSLOG_DROPPED]);
        log_ratelimited(LOG_WARN, "syslog-oom", "syslog: out of memory, message dropped");
        return;
    }
    if (rc > 0) {
        reject(l, t, rc, why);
        return;
    }
    if (pending_total(s) == 0) s->pending_since_us = mono_us();
    s->pending_msgs[t]++;
    if (pending_total(s) >= FLUSH_MESSAGES || span_batch_bytes(s->pending) >= FLUSH_BYTES)
        flush(s);
}

static void read_udp(struct syslog_server *s, struct listener *l)
{
    for (int k = 0; k < UDP_PER_WAKE; k++) {
        ssize_t n = recv(l->udp_fd, s->dgram, SYSLOG_MAX_MESSAGE + 1, MSG_TRUNC);
        if (n < 0) return; /* EAGAIN, or an ICMP error reported on the socket */
        if (s->blocked) {
            COUNT(self_metrics.syslog_messages[SYSLOG_UDP][SYSLOG_DROPPED]);
            continue;
        }
        if ((size_t)n > SYSLOG_MAX_MESSAGE) {
            reject(l, SYSLOG_UDP, SYSLOG_REJECT_TOO_LARGE, "datagram too large");
            continue;
        }
        /* One datagram, one message; a trailing LF (some senders add one) is not part of it. */
        size_t len = (size_t)n;
        while (len && (s->dgram[len - 1] == '\n' || s->dgram[len - 1] == '\0')) len--;
        handle_message(s, l, SYSLOG_UDP, s->dgram, len);
    }
}

static void conn_close(struct syslog_server *s, struct conn *c)
{
    epoll_ctl(s->tcp_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->src.l->n_conns--;
    atomic_fetch_sub_explicit(&self_metrics.syslog_connections, 1, memory_order_relaxed);
    free(c->buf);
    free(c);
}

/* The end of a connection's stream (EOF, error or idle timeout): a last unterminated frame. */
static void conn_finish(struct syslog_server *s, struct conn *c)
{
    const uint8_t *msg;
    size_t len;
    int r = syslog_frame_eof(&c->fr, c->buf, c->len, &msg, &len);
    if (r == SYSLOG_FRAME_MESSAGE)
        handle_message(s, c->src.l, SYSLOG_TCP, msg, len);
    else if (r == SYSLOG_FRAME_TOO_LARGE)
        reject(c->src.l, SYSLOG_TCP, SYSLOG_REJECT_TOO_LARGE, "frame too large");
    else if (r < 0)
        reject(c->src.l, SYSLOG_TCP, SYSLOG_REJECT_TRUNCATED,
               "connection ended inside an octet-counted frame");
    conn_close(s, c);
}

static void conn_read(struct syslog_server *s, struct conn *c)
{
    const size_t cap_max = SYSLOG_MAX_MESSAGE + 32;
    if (c->len == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : CONN_BUF_MIN;
        if (cap > cap_max) cap = cap_max;
        uint8_t *p = cap > c->cap ? realloc(c->buf, cap) : NULL;
        if (!p) { /* out of memory, or (never, by the framer's contract) a full buffer */
            log_ratelimited(LOG_WARN, "syslog-conn", "syslog: connection buffer full, closing");
            conn_close(s, c);
            return;
        }
        c->buf = p;
        c->cap = cap;
    }
    ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        conn_finish(s, c);
        return;
    }
    c->len += (size_t)n;
    c->last_us = mono_us();
    size_t off = 0;
    for (;;) {
        const uint8_t *msg;
        size_t mlen, used;
        enum syslog_frame r =
            syslog_frame_next(&c->fr, c->buf + off, c->len - off, &msg, &mlen, &used);
        off += used;
        if (r == SYSLOG_FRAME_MORE) break;
        if (r == SYSLOG_FRAME_MESSAGE)
            handle_message(s, c->src.l, SYSLOG_TCP, msg, mlen);
        else if (r == SYSLOG_FRAME_BAD_LENGTH)
            reject(c->src.l, SYSLOG_TCP, SYSLOG_REJECT_BAD_LENGTH,
                   "octet count is not a number followed by a space");
        else
            reject(c->src.l, SYSLOG_TCP, SYSLOG_REJECT_TOO_LARGE, "frame too large");
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    if (c->len == 0 && c->cap > CONN_BUF_MIN) { /* give a burst's buffer back */
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
    }
}

static void accept_conns(struct syslog_server *s, struct listener *l)
{
    for (int k = 0; k < MAX_EVENTS; k++) {
        int fd = accept4(l->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        struct conn *c = l->n_conns < SYSLOG_MAX_CONNECTIONS ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            close(fd);
            COUNT(self_metrics.syslog_connections_refused);
            log_ratelimited(LOG_WARN, "syslog-conn",
                            "syslog: %s: connection refused (limit %d connections)",
                            l->spec.addr, SYSLOG_MAX_CONNECTIONS);
            continue;
        }
        c->src = (struct src){SRC_CONN, l};
        c->fd = fd;
        syslog_framer_init(&c->fr, SYSLOG_MAX_MESSAGE);
        c->last_us = mono_us();
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(s->tcp_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        l->n_conns++;
        COUNT(self_metrics.syslog_connections);
    }
}

static void close_idle(struct syslog_server *s, int64_t now)
{
    for (struct conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (now - c->last_us >= s->idle_us) conn_finish(s, c);
    }
}

static void *loop(void *arg)
{
    struct syslog_server *s = arg;
    struct epoll_event evs[MAX_EVENTS], tevs[MAX_EVENTS];
    int64_t next_idle_check = mono_us() + 1000000;
    bool stop = false;
    while (!stop) {
        int64_t now = mono_us();
        int timeout = 1000;
        if (s->blocked)
            timeout = RETRY_MS;
        else if (pending_total(s)) {
            int64_t left = s->pending_since_us + FLUSH_US - now;
            timeout = left <= 0 ? 0 : (int)((left + 999) / 1000);
        }
        int n = epoll_wait(s->ep, evs, MAX_EVENTS, timeout);
        for (int i = 0; i < n; i++) {
            struct src *src = evs[i].data.ptr;
            if (src->kind == SRC_WAKE) {
                stop = true;
            } else if (src->kind == SRC_UDP) {
                read_udp(s, src->l);
            } else if (src->kind == SRC_TCP_SET && !s->blocked) {
                int tn = epoll_wait(s->tcp_ep, tevs, MAX_EVENTS, 0);
                for (int k = 0; k < tn; k++) {
                    struct src *ts = tevs[k].data.ptr;
                    if (ts->kind == SRC_TCP_LISTEN)
                        accept_conns(s, ts->l);
                    else
                        conn_read(s, (struct conn *)ts);
                }
            }
        }
        now = mono_us();
        if (s->blocked || (pending_total(s) && now - s->pending_since_us >= FLUSH_US)) flush(s);
        if (now >= next_idle_check && !s->blocked) {
            close_idle(s, now);
            next_idle_check = now + 1000000;
        }
    }
    /* Stop reading: every socket closes; what the connections still held is decoded. */
    while (s->conns) conn_finish(s, s->conns);
    for (int64_t deadline = mono_us() + STOP_FLUSH_MS * 1000; flush(s) == -EBUSY;) {
        if (mono_us() >= deadline) {
            for (int t = 0; t < SYSLOG_TRANSPORT_COUNT; t++)
                atomic_fetch_add_explicit(&self_metrics.syslog_messages[t][SYSLOG_DROPPED],
                                          s->pending_msgs[t], memory_order_relaxed);
            log_msg(LOG_WARN, "syslog: queue still full at shutdown: %llu messages dropped",
                    (unsigned long long)pending_total(s));
            break;
        }
        struct timespec ts = {0, RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Resolves "host:port" / "[v6]:port" / ":port" into a socket address. */
static int resolve(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
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
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    if (getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res) != 0 || !res) return -EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void set_port(struct sockaddr_storage *ss, unsigned port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

/* Binds l's TCP and UDP sockets on the same port (port 0: TCP picks, UDP follows; retried when
 * that UDP port is taken). */
static int bind_listener(struct listener *l)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (resolve(l->spec.addr, &ss, &sslen) != 0) {
        log_msg(LOG_ERROR, "syslog: cannot resolve listen address '%s'", l->spec.addr);
        return -EINVAL;
    }
    bool any_port = ((struct sockaddr_in *)&ss)->sin_port == 0; /* same offset in sin6 */
    for (int attempt = 0; attempt < 8; attempt++) {
        l->tcp_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        l->udp_fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (l->tcp_fd < 0 || l->udp_fd < 0) break;
        int one = 1;
        setsockopt(l->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* A burst from many proxies lands in the kernel's buffer while this thread is busy;
         * 4 MiB asked (the kernel caps it at net.core.rmem_max). */
        int rcvbuf = 4 << 20;
        setsockopt(l->udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (bind(l->tcp_fd, (struct sockaddr *)&ss, sslen) != 0 || listen(l->tcp_fd, 128) != 0)
            break;
        struct sockaddr_storage bound;
        socklen_t blen = sizeof bound;
        getsockname(l->tcp_fd, (struct sockaddr *)&bound, &blen);
        l->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        struct sockaddr_storage us = ss;
        set_port(&us, l->port);
        if (bind(l->udp_fd, (struct sockaddr *)&us, sslen) == 0) return 0;
        if (!any_port || errno != EADDRINUSE) break;
        close(l->tcp_fd);
        close(l->udp_fd);
    }
    log_msg(LOG_ERROR, "syslog: cannot bind %s (udp+tcp): %s", l->spec.addr, strerror(errno));
    return -errno;
}

struct syslog_server *syslog_start(const char *spec, struct ingest_queue *q,
                                   void (*observe)(void *arg, const struct span_batch *b),
                                   void *observe_arg, int64_t idle_timeout_us)
{
    struct syslog_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ep = s->tcp_ep = s->wake_fd = -1;
    for (size_t i = 0; i < SYSLOG_MAX_LISTENERS; i++) s->l[i].tcp_fd = s->l[i].udp_fd = -1;
    s->q = q;
    s->observe = observe;
    s->observe_arg = observe_arg;
    s->idle_us = idle_timeout_us;
    decode_limits_default(&s->lim);
    char why[160] = "no listener (\"off\")";
    struct syslog_listener_spec specs[SYSLOG_MAX_LISTENERS];
    if (syslog_parse_spec(spec, specs, SYSLOG_MAX_LISTENERS, &s->n, why, sizeof why) != 0 ||
        s->n == 0) {
        log_msg(LOG_ERROR, "syslog: --syslog: %s", why);
        goto fail;
    }
    s->dgram = malloc(SYSLOG_MAX_MESSAGE + 1);
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->tcp_ep = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->dgram || s->ep < 0 || s->tcp_ep < 0 || s->wake_fd < 0) goto fail;
    s->wake_src.kind = SRC_WAKE;
    s->tcp_set_src.kind = SRC_TCP_SET;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->wake_src};
    epoll_ctl(s->ep, EPOLL_CTL_ADD, s->wake_fd, &ev);
    ev.data.ptr = &s->tcp_set_src;
    epoll_ctl(s->ep, EPOLL_CTL_ADD, s->tcp_ep, &ev);
    for (size_t i = 0; i < s->n; i++) {
        struct listener *l = &s->l[i];
        l->spec = specs[i];
        if (bind_listener(l) != 0) goto fail;
        l->udp_src = (struct src){SRC_UDP, l};
        l->tcp_src = (struct src){SRC_TCP_LISTEN, l};
        ev.data.ptr = &l->udp_src;
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, l->udp_fd, &ev) != 0) goto fail;
        ev.data.ptr = &l->tcp_src;
        if (epoll_ctl(s->tcp_ep, EPOLL_CTL_ADD, l->tcp_fd, &ev) != 0) goto fail;
        log_msg(LOG_INFO, "syslog: listening on %s (port %u, udp+tcp%s%s)", l->spec.addr, l->port,
                l->spec.service[0] ? ", service " : "", l->spec.service);
    }
    if (pthread_create(&s->thread, NULL, loop, s) != 0) {
        log_msg(LOG_ERROR, "syslog: cannot start the receiver thread");
        goto fail;
    }
    s->started = true;
    return s;
fail:
    syslog_stop(s);
    return NULL;
}

void syslog_stop(struct syslog_server *s)
{
    if (!s) return;
    if (s->started) {
        uint64_t one = 1;
        if (write(s->wake_fd, &one, sizeof one) < 0) {
            /* an eventfd write fails only when its counter would overflow: it is already set */
        }
        pthread_join(s->thread, NULL);
    }
    for (size_t i = 0; i < SYSLOG_MAX_LISTENERS; i++) {
        if (s->l[i].tcp_fd >= 0) close(s->l[i].tcp_fd);
        if (s->l[i].udp_fd >= 0) close(s->l[i].udp_fd);
    }
    if (s->ep >= 0) close(s->ep);
    if (s->tcp_ep >= 0) close(s->tcp_ep);
    if (s->wake_fd >= 0) close(s->wake_fd);
    span_batch_destroy(s->pending); /* NULL unless the queue stayed full (counted as dropped) */
    free(s->dgram);
    free(s);
}

unsigned syslog_port(const struct syslog_server *s, size_t i)
{
    return s && i < s->n ? s->l[i].port : 0;
}
