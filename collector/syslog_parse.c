/*
 * syslog_parse.c: the syslog receiver's parsers, without sockets or threads (syslog.h): the
 * --syslog value, RFC 5424 / RFC 3164 headers, RFC 6587 framing, UTF-8 validation and one
 * message's decode into a span batch. Kept apart from the event loop (syslog.c) so the unit
 * tests and the fuzz target link them alone.
 */
#include "decode.h"
#include "syslog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        while (*p == ' ')
            p++;
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
            if (olen > 8 && strncmp(p + i, "service=", 8) == 0 && olen - 8 <= SYSLOG_MAX_SERVICE) {
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
    if (h->timestamp.len && accesslog_parse_rfc3339(h->timestamp.ptr, h->timestamp.len) < 0) {
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
    for (int k = 0; k < 12 && !month; k++)
        month = memcmp(t, months + 3 * k, 3) == 0;
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
    while (i < len && i <= 3 && is_digit(m[i]))
        pri = pri * 10 + (m[i++] - '0');
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
        while (j < len && j - i < 3 && is_digit(m[j]))
            v = v * 10 + (m[j++] - '0');
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
    while (i < len && separator(buf[i]))
        i++;
    *used = i;
    if (i == len) return SYSLOG_FRAME_MORE;
    if (is_digit(buf[i])) {
        /* Octet counting: MSG-LEN = NONZERO-DIGIT *DIGIT, SP, MSG. Ten digits are more than
         * any accepted length; more means garbage. */
        size_t j = i;
        uint64_t n = 0;
        while (j < len && is_digit(buf[j]) && j - i < 10)
            n = n * 10 + (uint64_t)(buf[j++] - '0');
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
    while (e < len && buf[e] != '\n' && buf[e] != '\0')
        e++;
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

int syslog_frame_eof(struct syslog_framer *f, const uint8_t *buf, size_t len, const uint8_t **msg,
                     size_t *msg_len)
{
    *msg = NULL;
    *msg_len = 0;
    if (f->discard || f->discard_to_lf) return SYSLOG_FRAME_MORE;
    size_t i = 0;
    while (i < len && separator(buf[i]))
        i++;
    if (i == len) return SYSLOG_FRAME_MORE;
    if (is_digit(buf[i])) return -1;
    size_t end = len;
    while (end > i && (buf[end - 1] == '\r' || buf[end - 1] == ' '))
        end--;
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
    struct alog_defaults d = {.service = service, .direction = ALOG_DIRECTION_OUTBOUND};
    return accesslog_decode_json_ex(body, len, &d, lim, b, err, errlen);
}

static int decode_message(const uint8_t *m, size_t len, const char *service,
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
    while (n && (body[0] == ' ' || body[0] == '\t'))
        body++, n--;
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
    while (b->n_logs > logs)
        span_batch_drop_last_log(b);
    if (rc != 0) {
        *why = "message body is not a JSON object";
        return SYSLOG_REJECT_NOT_JSON;
    }
    *why = mine ? mine : "no record in the message";
    return classify(mine);
}

int syslog_decode_message(const uint8_t *m, size_t len, const char *service,
                          const struct decode_limits *lim, struct span_batch *b, const char **why)
{
    uint32_t rejected = b->rejected;
    int rc = decode_message(m, len, service, lim, b, why);
    if (rc > 0) b->rejected = rejected + 1;
    return rc;
}
