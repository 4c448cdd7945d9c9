/*
 * fuzz_syslog.c: libFuzzer target for the syslog receiver's parsers (collector/syslog_parse.c):
 * the input is a TCP stream, framed (RFC 6587) in chunks whose size the first byte picks, as the
 * event loop does (a buffer of SYSLOG_MAX_MESSAGE + 32 bytes keeping what is not consumed), then
 * ended; every frame goes through the header parser and the JSON body decoder into one batch.
 * The whole input is also parsed as one datagram. Nothing may crash, leak or overrun; the framer
 * must never stall on a full buffer or consume more than it was given; every message must be
 * either one record more or one rejection more, with a reason; records keep the access-log
 * model's invariants (service set, the listener's when the body names none). Seeds:
 * tests/data/syslog. Built by tests/fuzz/fuzz.cmake; see smoke.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "syslog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf[SYSLOG_MAX_MESSAGE + 32];

static void message(struct span_batch *b, const struct decode_limits *lim, const uint8_t *m,
                    size_t len)
{
    uint32_t logs = b->n_logs, rejected = b->rejected;
    const char *why = NULL;
    struct syslog_header h;
    const char *hwhy = NULL;
    if (syslog_parse_header(m, len, &h, &hwhy) == 0) {
        if (h.msg < m || h.msg + h.msg_len != m + len) abort();
        if (h.pri > 191 || h.pri < -1) abort();
    } else if (!hwhy) {
        abort();
    }
    int rc = syslog_decode_message(m, len, "svc", lim, b, &why);
    if (rc < 0) return; /* -ENOMEM */
    if (rc == 0 && (b->n_logs < logs + 1 || b->rejected != rejected)) abort();
    if (rc > 0 &&
        (b->n_logs != logs || b->rejected != rejected + 1 || !why || rc >= SYSLOG_REJECT_COUNT))
        abort();
    for (uint32_t i = logs; i < b->n_logs; i++) {
        const struct access_log *l = &b->logs[i];
        if (!l->str[ALOG_SERVICE].ptr || !l->str[ALOG_RAW].ptr) abort();
        if (l->str[ALOG_SERVICE].ptr[l->str[ALOG_SERVICE].len] != '\0') abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct decode_limits lim;
    decode_limits_default(&lim);
    struct span_batch *b = span_batch_create();
    if (!b) return 0;
    message(b, &lim, data, size);

    size_t step = size ? (size_t)data[0] % 64 + 1 : 1;
    struct syslog_framer f;
    syslog_framer_init(&f, SYSLOG_MAX_MESSAGE);
    size_t have = 0, fed = 0;
    while (fed < size) {
        size_t n = size - fed, room = sizeof buf - have;
        if (n > step) n = step;
        if (n > room) n = room;
        if (n == 0) abort(); /* a full buffer the framer did not decide on: the stream stalls */
        memcpy(buf + have, data + fed, n);
        have += n;
        fed += n;
        size_t off = 0;
        for (int guard = 0;; guard++) {
            const uint8_t *msg;
            size_t mlen, used;
            enum syslog_frame r = syslog_frame_next(&f, buf + off, have - off, &msg, &mlen, &used);
            if (used > have - off || guard > (int)sizeof buf) abort();
            off += used;
            if (r == SYSLOG_FRAME_MORE) break;
            if (r == SYSLOG_FRAME_MESSAGE) {
                if (mlen > SYSLOG_MAX_MESSAGE || msg < buf || msg + mlen > buf + have) abort();
                message(b, &lim, msg, mlen);
            } else if (used == 0 && r != SYSLOG_FRAME_BAD_LENGTH) {
                abort(); /* TOO_LARGE always consumes */
            }
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    const uint8_t *msg;
    size_t mlen;
    if (syslog_frame_eof(&f, buf, have, &msg, &mlen) == SYSLOG_FRAME_MESSAGE)
        message(b, &lim, msg, mlen);
    span_batch_destroy(b);
    return 0;
}
