/*
 * test_util.h: helpers the cmocka unit tests share: fixture files, model comparison, for the
 * decoder tests a decode call, and for the query tests a fixed clock, query strings and a store
 * in a temporary directory. Header-only
 * (every test is its own executable); include after <cmocka.h> and the module headers.
 */
#ifndef MESHSCOPE_TEST_UTIL_H
#define MESHSCOPE_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage.h"

/* Reads tests/data/<dir>/<name> whole, NUL-terminated (caller frees); *len excludes the NUL. */
static inline char *test_read_fixture(const char *dir, const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", MESHSCOPE_TEST_DATA, dir, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Two model strings are equal, both set and NUL-terminated. */
static inline void mstr_eq(struct mstr a, struct mstr b)
{
    assert_non_null(a.ptr);
    assert_non_null(b.ptr);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.ptr, b.ptr, a.len);
    assert_int_equal(a.ptr[a.len], '\0');
    assert_int_equal(b.ptr[b.len], '\0');
}

/* String field f of an access-log record is want (NULL: absent). */
static inline void assert_alog_str(const struct access_log *l, enum alog_str f, const char *want)
{
    if (!want) {
        if (l->str[f].ptr) fail_msg("field %d: want absent, got '%s'", f, l->str[f].ptr);
        return;
    }
    if (!l->str[f].ptr) fail_msg("field %d: want '%s', got absent", f, want);
    assert_string_equal(l->str[f].ptr, want);
    assert_int_equal(l->str[f].len, strlen(want));
}

#ifdef MESHSCOPE_OTLP_H

/* Runs decode (any span decoder of otlp.h / zipkin.h) on body into a fresh batch (*out, caller
 * destroys), with lim or the default limits and err cleared first. */
static inline int test_decode(int (*decode)(const uint8_t *body, size_t len,
                                            const struct decode_limits *lim, struct span_batch *out,
                                            char *err, size_t errlen),
                              const void *body, size_t len, const struct decode_limits *lim,
                              struct span_batch **out, char *err, size_t errlen)
{
    struct decode_limits def;
    if (!lim) {
        decode_limits_default(&def);
        lim = &def;
    }
    *out = span_batch_create();
    assert_non_null(*out);
    err[0] = '\0';
    return decode(body, len, lim, *out, err, errlen);
}

#endif /* MESHSCOPE_OTLP_H */

#ifdef MESHSCOPE_QUERY_H

#define FAKE_NOW_US INT64_C(1800000000000000) /* 2027-01-15: a fixed clock for defaults */

static inline int64_t fake_now(void)
{
    return FAKE_NOW_US;
}

/* Splits "a=b&c=d" (no URL decoding; tests write plain values) into args. */
struct args {
    struct query_arg a[40];
    size_t n;
    char buf[2048];
};

static inline void args_parse(struct args *out, const char *qs)
{
    out->n = 0;
    if (!qs || !*qs) return;
    assert_true(strlen(qs) < sizeof out->buf);
    snprintf(out->buf, sizeof out->buf, "%s", qs);
    char *save = NULL;
    for (char *tok = strtok_r(out->buf, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        assert_true(out->n < 40);
        if (eq) *eq = '\0';
        out->a[out->n].key = tok;
        out->a[out->n].value = eq ? eq + 1 : "";
        out->n++;
    }
}

/* Opens a fresh store in a new /tmp/<name>.XXXXXX directory (dir and path filled). */
static inline struct store *test_store_create(char dir[64], char path[128], const char *name)
{
    snprintf(dir, 64, "/tmp/%s.XXXXXX", name);
    assert_non_null(mkdtemp(dir));
    snprintf(path, 128, "%s/meshscope.db", dir);
    struct store_options opts = {.path = path};
    struct store *st = store_open(&opts);
    assert_non_null(st);
    return st;
}

/* Closes st and removes the directory test_store_create made. */
static inline void test_store_destroy(struct store *st, const char *dir)
{
    store_close(st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

#endif /* MESHSCOPE_QUERY_H */

/* Back from schema v8 to v7's trace index: the index SQLite kept on chunks(trace_key). Every
 * test that sets user_version back to 7 or less runs it first. */
#define TEST_TRACE_INDEX_V7_SQL                                                                    \
    "DROP TABLE trace_index; DROP TABLE store_state;"                                              \
    "CREATE INDEX chunks_trace ON chunks(trace_key);"

/* SQL that takes a closed store file's search index back to its schema v1-v6 layout (a rowid
 * table and a (service_id, start_us) index; receive_marks with first_index), keeping its rows:
 * for tests that set user_version back to migrate an older file. */
#define TEST_SEARCH_INDEX_V6_SQL                                                                   \
    "CREATE TABLE span_index_v6(id INTEGER PRIMARY KEY, trace_key INTEGER NOT NULL,"               \
    " service_id INTEGER NOT NULL, op_id INTEGER NOT NULL, start_us INTEGER NOT NULL,"             \
    " min_dur_us INTEGER NOT NULL, max_dur_us INTEGER NOT NULL, error INTEGER NOT NULL);"          \
    "INSERT INTO span_index_v6(trace_key, service_id, op_id, start_us, min_dur_us, max_dur_us,"    \
    " error) SELECT trace_key, service_id, op_id, start_us, min_dur_us, min_dur_us +"              \
    " dur_spread_us, error FROM span_index;"                                                       \
    "DROP TABLE span_index;"                                                                       \
    "ALTER TABLE span_index_v6 RENAME TO span_index;"                                              \
    "CREATE INDEX span_index_service ON span_index(service_id, start_us);"                         \
    "CREATE INDEX span_index_error ON span_index(service_id, start_us) WHERE error = 1;"           \
    "ALTER TABLE receive_marks ADD COLUMN first_index INTEGER NOT NULL DEFAULT 1;"

#endif
