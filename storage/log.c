/*
 * log.c: the one leveled logger. Each call formats a whole line and writes it with one write(2),
 * so lines from different threads never interleave.
 */
#include "storage.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

_Atomic int log_min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void vlog_line(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 64) len = sizeof line - 64; /* leave room for suffix + newline */
    if (suffix) len += (size_t)snprintf(line + len, sizeof line - len, "%s", suffix);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&log_min_level, memory_order_relaxed)) return;
    va_list ap;
    va_start(ap, fmt);
    vlog_line(level, NULL, fmt, ap);
    va_end(ap);
}

/* Rate-limit state: a few call sites, each with its own slot, found by key pointer. */
#define RL_SLOTS 64
static struct {
    const char *key;
    time_t second;
    unsigned suppressed;
} rl_slots[RL_SLOTS];
static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;

void log_ratelimited(enum log_level level, const char *key, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&log_min_level, memory_order_relaxed)) return;
    time_t now = time(NULL);
    unsigned suppressed = 0;
    bool pass = true;
    pthread_mutex_lock(&rl_lock);
    size_t i = ((uintptr_t)key >> 3) % RL_SLOTS;
    for (size_t probe = 0; probe < RL_SLOTS; probe++, i = (i + 1) % RL_SLOTS) {
        if (rl_slots[i].key == key || rl_slots[i].key == NULL) break;
    }
    if (rl_slots[i].key == NULL || rl_slots[i].key == key) {
        rl_slots[i].key = key;
        if (rl_slots[i].second == now) {
            rl_slots[i].suppressed++;
            pass = false;
        } else {
            suppressed = rl_slots[i].suppressed;
            rl_slots[i].suppressed = 0;
            rl_slots[i].second = now;
        }
    }
    pthread_mutex_unlock(&rl_lock);
    if (!pass) return;
    char suffix[64] = "";
    if (suppressed) snprintf(suffix, sizeof suffix, " (%u similar suppressed)", suppressed);
    va_list ap;
    va_start(ap, fmt);
    vlog_line(level, suppressed ? suffix : NULL, fmt, ap);
    va_end(ap);
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -EINVAL;
}
