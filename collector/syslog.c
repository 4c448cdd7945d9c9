/*
 * syslog.c: the syslog receiver's event loop (formats, framing and limits in syslog.h; the
 * parsers in syslog_parse.c).
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
    uint64_t pending_rejects; /* refusals since the batch was started (their reasons in it) */
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
        for (struct conn *c = s->conns; c; c = c->next)
            c->last_us = now;
    }
}

/* The pending batch's flush size: FLUSH_BYTES, or a quarter of the queue's byte bound when that
 * is smaller, so that a batch (which grows past it by at most one connection buffer's records
 * before the push) always fits into an empty queue. */
static size_t flush_bytes(const struct syslog_server *s)
{
    size_t quarter = ingest_queue_capacity_bytes(s->q) / 4;
    return quarter < FLUSH_BYTES ? quarter : FLUSH_BYTES;
}

/* Pushes the pending batch. Returns 0 (pushed, dropped or nothing to push) or -EBUSY (kept,
 * blocked). A batch larger than the whole queue could never be pushed: it is dropped (counted)
 * rather than blocking TCP forever. */
static int flush(struct syslog_server *s)
{
    if (!s->pending || pending_total(s) == 0) {
        set_blocked(s, false);
        return 0;
    }
    int rc = span_batch_bytes(s->pending) > ingest_queue_capacity_bytes(s->q)
                 ? -E2BIG
                 : ingest_queue_push_observed(s->q, s->pending, s->observe, s->observe_arg);
    if (rc == -E2BIG)
        log_ratelimited(LOG_WARN, "syslog-huge",
                        "syslog: a batch of %zu bytes exceeds the whole ingest queue "
                        "(--queue-size): dropped",
                        span_batch_bytes(s->pending));
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
    s->pending_rejects = 0;
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
        reject(l, t, rc, why); /* why may live in the batch's arena: log it first */
        /* A refusal leaves its reason in the batch's arena: a batch of refusals only is
         * dropped, and refusals count towards the flush so the arena stays bounded. */
        if (pending_total(s) == 0) {
            span_batch_destroy(s->pending);
            s->pending = NULL;
        } else if (++s->pending_rejects >= FLUSH_MESSAGES) {
            flush(s);
        }
        return;
    }
    if (pending_total(s) == 0) s->pending_since_us = mono_us();
    s->pending_msgs[t]++;
    if (pending_total(s) >= FLUSH_MESSAGES || span_batch_bytes(s->pending) >= flush_bytes(s))
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
        while (len && (s->dgram[len - 1] == '\n' || s->dgram[len - 1] == '\0'))
            len--;
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
                            "syslog: %s: connection refused (limit %d connections)", l->spec.addr,
                            SYSLOG_MAX_CONNECTIONS);
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
    pthread_setname_np(pthread_self(), "ms-syslog");
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
                for (int k = 0; k < tn && !s->blocked; k++) { /* blocked: stop reading */
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
    while (s->conns)
        conn_finish(s, s->conns);
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
    struct addrinfo *res;
    if (listen_addr_resolve(addr, 0, &res) != 0) return -EINVAL;
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
    int err = errno ? errno : EINVAL;
    log_msg(LOG_ERROR, "syslog: cannot bind %s (udp+tcp): %s", l->spec.addr, strerror(err));
    return -err;
}

struct syslog_server *syslog_start(const char *spec, struct ingest_queue *q,
                                   void (*observe)(void *arg, const struct span_batch *b),
                                   void *observe_arg, int64_t idle_timeout_us)
{
    struct syslog_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ep = s->tcp_ep = s->wake_fd = -1;
    for (size_t i = 0; i < SYSLOG_MAX_LISTENERS; i++)
        s->l[i].tcp_fd = s->l[i].udp_fd = -1;
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
