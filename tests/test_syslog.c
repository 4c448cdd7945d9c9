/*
 * test_syslog.c: the syslog receiver's parsers (collector/syslog.c), table-driven: the --syslog
 * value, RFC 5424 / RFC 3164 headers, RFC 6587 framing (fed whole and one byte at a time, which
 * must give the same events), the end-of-stream rule, UTF-8 validation and one message's decode
 * into a batch (reasons, the listener's service). The sockets are tested by
 * tests/js/test/syslog.test.mjs and nginx.test.mjs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "syslog.h"

/* ----- --syslog ----------------------------------------------------------------------------- */

static void test_spec(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        int rc;
        size_t n;
        const char *addr0, *service0, *addr1, *service1;
    } cases[] = {
        {"off", 0, 0, NULL, NULL, NULL, NULL},
        {"127.0.0.1:5514", 0, 1, "127.0.0.1:5514", "", NULL, NULL},
        {"127.0.0.1:5514,service=frontend", 0, 1, "127.0.0.1:5514", "frontend", NULL, NULL},
        {" :5514  [::1]:0,service=edge ", 0, 2, ":5514", "", "[::1]:0", "edge"},
        {"", -EINVAL, 0, NULL, NULL, NULL, NULL},
        {"127.0.0.1", -EINVAL, 0, NULL, NULL, NULL, NULL},
        {"127.0.0.1:70000", -EINVAL, 0, NULL, NULL, NULL, NULL},
        {"127.0.0.1:x", -EINVAL, 0, NULL, NULL, NULL, NULL},
        {"127.0.0.1:5514,service=", -EINVAL, 0, NULL, NULL, NULL, NULL},
        {"127.0.0.1:5514,colour=red", -EINVAL, 0, NULL, NULL, NULL, NULL},
        {",service=x", -EINVAL, 0, NULL, NULL, NULL, NULL},
        {"a:1 a:2 a:3 a:4 a:5 a:6 a:7 a:8 a:9", -EINVAL, 0, NULL, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct syslog_listener_spec s[SYSLOG_MAX_LISTENERS];
        size_t n = 99;
        char err[160] = "";
        int rc = syslog_parse_spec(cases[i].value, s, SYSLOG_MAX_LISTENERS, &n, err, sizeof err);
        if (rc != cases[i].rc) fail_msg("'%s': rc %d, want %d", cases[i].value, rc, cases[i].rc);
        if (rc) {
            assert_true(err[0] != '\0');
            continue;
        }
        assert_int_equal(n, cases[i].n);
        if (n > 0) {
            assert_string_equal(s[0].addr, cases[i].addr0);
            assert_string_equal(s[0].service, cases[i].service0);
        }
        if (n > 1) {
            assert_string_equal(s[1].addr, cases[i].addr1);
            assert_string_equal(s[1].service, cases[i].service1);
        }
    }
}

/* ----- headers ------------------------------------------------------------------------------ */

static void assert_text(struct syslog_text t, const char *want, const char *what, const char *in)
{
    if (!want) want = "";
    if (t.len != strlen(want) || memcmp(t.ptr ? t.ptr : "", want, t.len) != 0)
        fail_msg("%s: %s '%.*s', want '%s'", in, what, (int)t.len, t.ptr ? t.ptr : "", want);
}

static void test_headers(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        int pri, version;
        const char *ts, *host, *app, *procid, *msgid, *sd, *msg;
    } cases[] = {
        /* RFC 5424 */
        {"<190>1 2026-11-27T11:20:00.123Z web-1 nginx 42 ID7 - {\"a\":1}", 0, 190, 1,
         "2026-11-27T11:20:00.123Z", "web-1", "nginx", "42", "ID7", NULL, "{\"a\":1}"},
        {"<134>1 2026-11-27T11:20:00.123456+01:00 - haproxy 1234 - - {}", 0, 134, 1,
         "2026-11-27T11:20:00.123456+01:00", NULL, "haproxy", "1234", NULL, NULL, "{}"},
        {"<0>1 - - - - - [a@1 k=\"v\\\"]\" j=\"\"][b] \xEF\xBB\xBF{}", 0, 0, 1, NULL, NULL, NULL,
         NULL, NULL, "[a@1 k=\"v\\\"]\" j=\"\"][b]", "{}"},
        {"<13>1 - h a p m -", 0, 13, 1, NULL, "h", "a", "p", "m", NULL, ""},
        {"<13>1 - h a p m [x]", 0, 13, 1, NULL, "h", "a", "p", "m", "[x]", ""},
        {"<13>2 - h a p m - {}", -EINVAL},         /* unknown version */
        {"<13>1 - h a p", -EINVAL},                /* header cut short */
        {"<13>1 - h a p m [x", -EINVAL},           /* SD not closed */
        {"<13>1 - h a p m [x k=\"v]", -EINVAL},    /* value not closed */
        {"<13>1 - h a p m [x k=v]", -EINVAL},      /* value not quoted */
        {"<13>1 - h a p m []", -EINVAL},           /* empty SD-ID */
        {"<13>1 - h a p m -x", -EINVAL},           /* no SP after SD */
        {"<13>1 yesterday h a p m - {}", -EINVAL}, /* bad timestamp */
        {"<13>1 - h\x01st a p m - {}", -EINVAL},   /* control byte in a field */
        /* RFC 3164 */
        {"<190>Nov 27 11:20:00 web-1 nginx: {\"a\":1}", 0, 190, 0, "Nov 27 11:20:00", "web-1",
         "nginx", NULL, NULL, NULL, "{\"a\":1}"},
        {"<190>Nov  7 01:02:03 web-1 nginx[77]: {}", 0, 190, 0, "Nov  7 01:02:03", "web-1", "nginx",
         "77", NULL, NULL, "{}"},
        {"<134>Nov 27 11:20:00 haproxy[1234]: {}", 0, 134, 0, "Nov 27 11:20:00", NULL, "haproxy",
         "1234", NULL, NULL, "{}"},
        {"<134>Nov 27 11:20:00 lb haproxy {}", 0, 134, 0, "Nov 27 11:20:00", "lb", "haproxy", NULL,
         NULL, NULL, "{}"},
        {"<134>Nov 27 11:20:00 {}", 0, 134, 0, "Nov 27 11:20:00", NULL, NULL, NULL, NULL, NULL,
         "{}"},
        {"<134>2026-11-27T11:20:00Z host app: {}", 0, 134, 0, "2026-11-27T11:20:00Z", "host", "app",
         NULL, NULL, NULL, "{}"},
        {"<134>tag: hello", 0, 134, 0, NULL, NULL, "tag", NULL, NULL, NULL, "hello"},
        {"<134>2026-99-27T11:20:00Z host app: {}", -EINVAL},
        /* PRI */
        {"{\"bare\":true}", 0, -1, 0, NULL, NULL, NULL, NULL, NULL, NULL, "{\"bare\":true}"},
        {"<192>1 - - - - - - {}", -EINVAL},
        {"<>1 - - - - - - {}", -EINVAL},
        {"<1900>1 - - - - - - {}", -EINVAL},
        {"<19", -EINVAL},
        {"hello", -EINVAL},
        {"", -EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *in = cases[i].in;
        struct syslog_header h;
        const char *why = NULL;
        int rc = syslog_parse_header((const uint8_t *)in, strlen(in), &h, &why);
        if (rc != cases[i].rc) fail_msg("'%s': rc %d (%s), want %d", in, rc, why, cases[i].rc);
        if (rc) {
            assert_non_null(why);
            continue;
        }
        assert_int_equal(h.pri, cases[i].pri);
        assert_int_equal(h.version, cases[i].version);
        assert_text(h.timestamp, cases[i].ts, "timestamp", in);
        assert_text(h.hostname, cases[i].host, "hostname", in);
        assert_text(h.app_name, cases[i].app, "app-name", in);
        assert_text(h.procid, cases[i].procid, "procid", in);
        assert_text(h.msgid, cases[i].msgid, "msgid", in);
        assert_text(h.structured_data, cases[i].sd, "structured data", in);
        assert_text((struct syslog_text){(const char *)h.msg, h.msg_len}, cases[i].msg, "msg", in);
    }
}

/* ----- framing ------------------------------------------------------------------------------ */

#define MAXMSG 16 /* a small limit keeps the oversize cases short */

/* Runs the framer over in[0..len) fed in chunks of `step` bytes (0 = whole), as conn_read does
 * (a buffer that keeps what is not consumed), then the end of stream; events are appended to
 * out as "M:<msg>|", "L|" (bad length), "T|" (too large), then "EOF:<msg>|", "EOF-T|"
 * (truncated) or nothing. */
static void frame_all(const char *in, size_t len, size_t step, char *out, size_t outlen)
{
    struct syslog_framer f;
    syslog_framer_init(&f, MAXMSG);
    uint8_t buf[MAXMSG + 32];
    size_t have = 0, fed = 0;
    out[0] = '\0';
    while (fed < len || have) {
        size_t room = sizeof buf - have, n = len - fed;
        if (step && n > step) n = step;
        if (n > room) n = room;
        memcpy(buf + have, in + fed, n);
        have += n;
        fed += n;
        size_t off = 0;
        for (;;) {
            const uint8_t *msg;
            size_t mlen, used;
            enum syslog_frame r = syslog_frame_next(&f, buf + off, have - off, &msg, &mlen, &used);
            assert_true(used <= have - off);
            off += used;
            size_t o = strlen(out);
            if (r == SYSLOG_FRAME_MORE) break;
            if (r == SYSLOG_FRAME_MESSAGE)
                snprintf(out + o, outlen - o, "M:%.*s|", (int)mlen, (const char *)msg);
            else
                snprintf(out + o, outlen - o, "%s|", r == SYSLOG_FRAME_BAD_LENGTH ? "L" : "T");
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        /* a full buffer with no decision would stall the stream: the framer must prevent it */
        assert_true(have < sizeof buf);
        if (fed == len) break;
    }
    const uint8_t *msg;
    size_t mlen;
    int r = syslog_frame_eof(&f, buf, have, &msg, &mlen);
    size_t o = strlen(out);
    if (r == SYSLOG_FRAME_MESSAGE)
        snprintf(out + o, outlen - o, "EOF:%.*s|", (int)mlen, (const char *)msg);
    else if (r < 0)
        snprintf(out + o, outlen - o, "EOF-T|");
    else
        assert_int_equal(r, SYSLOG_FRAME_MORE);
}

static void test_framing(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len; /* 0: strlen */
        const char *want;
    } cases[] = {
        {"5 hello6 world!", 0, "M:hello|M:world!|"},
        {"5 hello\n6 world!\n", 0, "M:hello|M:world!|"},
        {"<1>a\n<2>b\r\n<3>c", 0, "M:<1>a|M:<2>b|EOF:<3>c|"},
        {"<1>a\0<2>b\0", 10, "M:<1>a|M:<2>b|"},
        {"\n\n\r\n<1>a\n", 0, "M:<1>a|"},
        {"3 a\nb<1>x\n", 0, "M:a\nb|M:<1>x|"}, /* octet counting carries LF inside */
        {"5 hello<1>x\n2 ok", 0, "M:hello|M:<1>x|M:ok|"},
        {"12x junk\n2 ok", 0, "L|M:ok|"},
        {"0 \n2 ok", 0, "L|M:ok|"},
        {"12345678901 x\n2 ok", 0, "L|M:ok|"},
        {"17 01234567890123456\n2 ok", 0, "T|M:ok|"},               /* over MAXMSG, skipped */
        {"16 0123456789abcdef2 ok", 0, "M:0123456789abcdef|M:ok|"}, /* exactly MAXMSG */
        {"<1>0123456789abcdefghijklmnopqrstuvwxyz0123456789\n2 ok", 0, "T|M:ok|"},
        {"<1>0123456789abc\n", 0, "M:<1>0123456789abc|"},
        {"<1>0123456789abcd\n", 0, "T|"},
        {"5 hel", 0, "EOF-T|"},
        {"5", 0, "EOF-T|"},
        {"", 0, ""},
        {"\n\n", 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        char whole[512], bytewise[512], chunk3[512];
        frame_all(cases[i].in, len, 0, whole, sizeof whole);
        frame_all(cases[i].in, len, 1, bytewise, sizeof bytewise);
        frame_all(cases[i].in, len, 3, chunk3, sizeof chunk3);
        if (strcmp(whole, cases[i].want) != 0)
            fail_msg("case %zu whole: '%s', want '%s'", i, whole, cases[i].want);
        if (strcmp(bytewise, cases[i].want) != 0)
            fail_msg("case %zu byte by byte: '%s', want '%s'", i, bytewise, cases[i].want);
        if (strcmp(chunk3, cases[i].want) != 0)
            fail_msg("case %zu in 3-byte chunks: '%s', want '%s'", i, chunk3, cases[i].want);
    }
}

/* ----- UTF-8 -------------------------------------------------------------------------------- */

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"plain", true},
        {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", true},
        {"\xFF", false},
        {"\xC0\xAF", false},         /* overlong '/' */
        {"\xE0\x80\xAF", false},     /* overlong */
        {"\xED\xA0\x80", false},     /* surrogate */
        {"\xF4\x90\x80\x80", false}, /* > U+10FFFF */
        {"\xC3", false},             /* cut short */
        {"\xE2\x82", false},
        {"\xC3\x28", false}, /* bad continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (syslog_utf8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("case %zu: want %s", i, cases[i].ok ? "valid" : "invalid");
}

/* ----- one message into a batch ------------------------------------------------------------- */

static void test_decode_message(void **state)
{
    (void)state;
    static const struct {
        const char *msg;
        const char *service; /* listener's */
        int reason;
        const char *want_service;
    } cases[] = {
        {"<190>Nov 27 11:20:00 web-1 nginx: {\"start_time\":\"2026-11-27T11:20:00Z\","
         "\"method\":\"GET\",\"response_code\":\"200\"}",
         "frontend", 0, "frontend"},
        {"<190>1 - - - - - - \xEF\xBB\xBF{\"start_time\":\"2026-11-27T11:20:00Z\"}  \r\n", "edge",
         0, "edge"},
        {"{\"start_time\":\"2026-11-27T11:20:00Z\",\"service\":\"own\"}", "edge", 0, "own"},
        {"<190>1 - - - - - - GET / 200", NULL, SYSLOG_REJECT_NOT_JSON, NULL},
        {"<190>1 - - - - - - [1,2]", NULL, SYSLOG_REJECT_NOT_JSON, NULL},
        {"<190>1 - - - - - - ", NULL, SYSLOG_REJECT_NOT_JSON, NULL},
        {"<190>1 - - - - - - {\"start_time\": ", NULL, SYSLOG_REJECT_NOT_JSON, NULL},
        {"<190>1 - - - - - - {\"start_time\":\"2026-11-27T11:20:00Z\"}\n{\"x\":1}", NULL,
         SYSLOG_REJECT_MISSING_FIELD, NULL}, /* two records, one bad: nothing kept */
        {"<190>1 - - - - - - {\"ua\":\"\xFF\"}", NULL, SYSLOG_REJECT_INVALID_UTF8, NULL},
        {"<190>1 - - - - - - {\"method\":\"GET\"}", NULL, SYSLOG_REJECT_MISSING_FIELD, NULL},
        {"<190>1 - - - - - - {\"start_time\":\"2026-11-27T11:20:00Z\",\"response_code\":true}",
         NULL, SYSLOG_REJECT_INVALID_RECORD, NULL},
        {"<999>1 - - - - - - {}", NULL, SYSLOG_REJECT_BAD_HEADER, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct span_batch *b = span_batch_create();
        assert_non_null(b);
        const char *why = NULL;
        int rc = syslog_decode_message((const uint8_t *)cases[i].msg, strlen(cases[i].msg),
                                       cases[i].service, NULL, b, &why);
        if (rc != cases[i].reason)
            fail_msg("case %zu: %d (%s), want %d", i, rc, why ? why : "", cases[i].reason);
        if (rc == 0) {
            assert_int_equal(b->n_logs, 1);
            assert_int_equal(b->rejected, 0);
            assert_string_equal(b->logs[0].str[ALOG_SERVICE].ptr, cases[i].want_service);
            assert_int_equal(b->logs[0].direction, ALOG_DIRECTION_OUTBOUND);
        } else {
            assert_non_null(why);
            assert_int_equal(b->n_logs, 0);
            assert_int_equal(b->rejected, 1);
        }
        span_batch_destroy(b);
    }
    /* Many messages into one batch: each keeps its own reason, the batch its first. */
    struct span_batch *b = span_batch_create();
    const char *why;
    const char *bad1 = "<1>1 - - - - - - {\"method\":\"GET\"}";
    const char *bad2 = "<1>1 - - - - - - {\"start_time\":\"x\"}";
    const char *good = "<1>1 - - - - - - {\"start_time\":\"2026-11-27T11:20:00Z\"}";
    assert_int_equal(
        syslog_decode_message((const uint8_t *)bad1, strlen(bad1), NULL, NULL, b, &why),
        SYSLOG_REJECT_MISSING_FIELD);
    assert_int_equal(
        syslog_decode_message((const uint8_t *)good, strlen(good), NULL, NULL, b, &why), 0);
    assert_int_equal(
        syslog_decode_message((const uint8_t *)bad2, strlen(bad2), NULL, NULL, b, &why),
        SYSLOG_REJECT_INVALID_RECORD);
    assert_non_null(strstr(why, "start_time"));
    assert_non_null(strstr(b->reject_reason, "missing"));
    assert_int_equal(b->n_logs, 1);
    assert_int_equal(b->rejected, 2);
    span_batch_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec),           cmocka_unit_test(test_headers),
        cmocka_unit_test(test_framing),        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_decode_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
