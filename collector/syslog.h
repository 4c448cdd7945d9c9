/*
 * syslog.h: the syslog receiver (--syslog): nginx's and HAProxy's JSON access logs over UDP and
 * TCP, decoded by the access-log decoder (accesslog.h) into the ingest queue.
 *
 * LISTENERS: --syslog "ADDR[,service=NAME] [ADDR[,service=NAME]]..." (at most
 * SYSLOG_MAX_LISTENERS, separated by spaces; "off" = none). Each ADDR ("host:port",
 * "[v6]:port", ":port") is bound for UDP and for TCP on the same port; port 0 binds TCP to a free
 * port and UDP to that same port. service=NAME is the reporting service of records that name
 * none (nginx's never do; HAProxy's fall back to frontend_name without it).
 *
 * MESSAGES: RFC 5424 ("<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG", SD "-" or [...]..., a
 * UTF-8 BOM before MSG skipped) and RFC 3164 ("<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG", the
 * hostname optional as HAProxy sends it, the timestamp optional); a message with no header at
 * all must start with '{'. The MSG is one JSON object (nginx escape=json, HAProxy %{+json}).
 * UDP: one message per datagram. TCP (RFC 6587): per frame, octet counting ("LEN SP MSG") when
 * the frame starts with a digit, else non-transparent framing ending at LF (CR LF and NUL also
 * end a frame; a last frame without a trailer is taken at EOF).
 *
 * LIMITS: a message (header + body) of at most SYSLOG_MAX_MESSAGE bytes; SYSLOG_MAX_CONNECTIONS
 * TCP connections per listener (more are accepted and closed at once, counted); a connection
 * silent for --idle-timeout is closed (a frame left incomplete counts as truncated).
 *
 * BAD INPUT never stops the stream: each refused message is counted in
 * meshscope_syslog_rejected_total{reason} (enum syslog_reject in collector_int.h) and logged at
 * most once a second; an octet count that is not a number, or an oversize frame, is skipped
 * (up to the next LF, or the announced length) and the frames after it are read as usual.
 */
#ifndef MESHSCOPE_SYSLOG_H
#define MESHSCOPE_SYSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accesslog.h"
#include "collector_int.h"

/* Longest message, header included: HAProxy's own maximum (`len 65535`) and the access-log
 * decoder's line limit (ACCESSLOG_MAX_LINE). */
#define SYSLOG_MAX_MESSAGE ACCESSLOG_MAX_LINE
/* TCP connections per listener: a proxy fleet sends over a handful each; each holds a buffer of
 * at most SYSLOG_MAX_MESSAGE + 32 bytes (grown on demand), so 256 bound it to 16 MiB. */
#define SYSLOG_MAX_CONNECTIONS 256
#define SYSLOG_MAX_LISTENERS 8
#define SYSLOG_MAX_SERVICE 255

/* ----- parsing (exposed for tests and the fuzz target; no state, any thread) --------------- */

struct syslog_listener_spec {
    char addr[280];
    char service[SYSLOG_MAX_SERVICE + 1]; /* "" = none */
};

/* Parses a --syslog value into up to max listener specs (*n of them; "off" gives 0). Returns 0
 * or -EINVAL with a one-line reason in err. */
int syslog_parse_spec(const char *value, struct syslog_listener_spec *out /* OUT */, size_t max,
                      size_t *n /* OUT */, char *err, size_t errlen);

/* A parsed header. Text fields point into the message (not NUL-terminated); len 0 = absent
 * ("-" in RFC 5424). */
struct syslog_text {
    const char *ptr;
    size_t len;
};
struct syslog_header {
    int pri;     /* 0..191; -1: no PRI (a bare JSON message) */
    int version; /* 1: RFC 5424; 0: RFC 3164 or no header */
    struct syslog_text timestamp, hostname, app_name, procid, msgid, structured_data;
    const uint8_t *msg; /* the body, BOM skipped */
    size_t msg_len;
};

/* Parses one message's header. Returns 0 (out filled) or -EINVAL with the reason in why (a
 * static string: "bad PRI", "bad structured data", ...). Borrows m; out points into it. */
int syslog_parse_header(const uint8_t *m, size_t len, struct syslog_header *out /* OUT */,
                        const char **why /* OUT */);

/* TCP framing state of one connection (RFC 6587). Zero it (or syslog_framer_init) to start. */
struct syslog_framer {
    size_t max;         /* largest message (SYSLOG_MAX_MESSAGE) */
    uint64_t discard;   /* oversize octet-counted frame: bytes still to throw away */
    bool discard_to_lf; /* oversize newline frame or bad count: throw away up to the next LF */
};

enum syslog_frame {
    SYSLOG_FRAME_MORE,       /* no complete frame in the buffer yet */
    SYSLOG_FRAME_MESSAGE,    /* *msg, *msg_len: one message */
    SYSLOG_FRAME_BAD_LENGTH, /* an octet count that is not a number: skipping to the next LF */
    SYSLOG_FRAME_TOO_LARGE,  /* a frame over max: skipped */
};

void syslog_framer_init(struct syslog_framer *f, size_t max);
/* Finds the next frame in buf[0..len) (the unconsumed bytes of the stream). *used = bytes the
 * caller drops from the front of its buffer (set for every result, may be 0 for MORE). For
 * MESSAGE, *msg points into buf. The caller keeps calling while the result is not MORE. A buffer
 * of max + 32 bytes always holds a whole frame or lets the framer decide it is too large. */
enum syslog_frame syslog_frame_next(struct syslog_framer *f, const uint8_t *buf, size_t len,
                                    const uint8_t **msg /* OUT */, size_t *msg_len /* OUT */,
                                    size_t *used /* OUT */);
/* At end of stream with buf[0..len) left over: MESSAGE for an unterminated newline frame (taken
 * as it is), MORE when nothing but separators is left (or a skip was in progress), TOO_LARGE
 * never; -1 for a truncated octet-counted frame. */
int syslog_frame_eof(struct syslog_framer *f, const uint8_t *buf, size_t len,
                     const uint8_t **msg /* OUT */, size_t *msg_len /* OUT */);

/* True when s[0..n) is valid UTF-8 (RFC 3629: no overlongs, surrogates or > U+10FFFF). */
bool syslog_utf8_valid(const uint8_t *s, size_t n);

/* Decodes one message (header + JSON body) into b with the listener's defaults: 0 (a record
 * added), or the reason it was refused (enum syslog_reject, > 0; b unchanged but its rejected
 * count and reject_reason, whose text *why then points to), or -ENOMEM. service may be NULL.
 * Borrows m and service; b borrowed. */
int syslog_decode_message(const uint8_t *m, size_t len, const char *service,
                          const struct decode_limits *lim, struct span_batch *b,
                          const char **why /* OUT */);

/* ----- the receiver --------------------------------------------------------------------- */

struct syslog_server;

/* Binds every listener of spec (a --syslog value), then starts the event-loop thread, which
 * pushes batches to q with observe(observe_arg, batch) (ingest_queue_push_observed).
 * idle_timeout_us closes silent TCP connections. Borrows q and observe_arg (they outlive the
 * server). NULL (logged) when the spec is invalid or a socket cannot be bound. */
struct syslog_server *syslog_start(const char *spec, struct ingest_queue *q,
                                   void (*observe)(void *arg, const struct span_batch *b),
                                   void *observe_arg, int64_t idle_timeout_us);
/* Stops reading (closes every socket), flushes the pending batch into the queue (waiting at
 * most 5 s while the queue is full; what still does not fit is counted as dropped), joins the
 * thread, frees. Call before the queue closes. Accepts NULL. */
void syslog_stop(struct syslog_server *s);
/* The port listener i is bound to (useful with port 0); 0 when there is no such listener. */
unsigned syslog_port(const struct syslog_server *s, size_t i);

#endif
