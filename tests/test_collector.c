/*
 * test_collector.c: unit tests of the daemon's own pieces: the option table, size and duration
 * parsing, bounded decompression (bombs included), the lock-free ingest queue and the OTLP
 * response encoders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "collector_int.h"
#include "storage_int.h"

static void test_parse_size(void **state)
{
    static const struct {
        const char *in;
        int rc;
        int64_t want;
    } cases[] = {
        {"0", 0, 0},          {"512", 0, 512},          {"64KiB", 0, 65536},
        {"16MiB", 0, 16 << 20}, {"1GiB", 0, INT64_C(1) << 30}, {"10MB", 0, 10000000},
        {"1.5k", 0, 1500},    {"2g", 0, 2000000000},   {"", -EINVAL, 0},
        {"-1", -EINVAL, 0},   {"12XB", -EINVAL, 0},     {"MiB", -EINVAL, 0},
        {"1e400", -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = -1;
        int rc = parse_size(cases[i].in, &v);
        if (rc != cases[i].rc) fail_msg("parse_size(%s) = %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc == 0) assert_int_equal(v, cases[i].want);
    }
}

static void test_parse_duration(void **state)
{
    static const struct {
        const char *in;
        int rc;
        int64_t want;
    } cases[] = {
        {"0", 0, 0},
        {"72h", 0, INT64_C(72) * 3600 * 1000000},
        {"30m", 0, INT64_C(30) * 60 * 1000000},
        {"7d", 0, INT64_C(7) * 86400 * 1000000},
        {"1d12h", 0, INT64_C(36) * 3600 * 1000000},
        {"5ms", 0, 5000},
        {"1h30m", 0, INT64_C(90) * 60 * 1000000},
        {"", -EINVAL, 0},
        {"xyz", -EINVAL, 0},
        {"10", -EINVAL, 0},
        {"-1h", -EINVAL, 0},
        {"3x", -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = -1;
        int rc = parse_duration_us(cases[i].in, &v);
        if (rc != cases[i].rc)
            fail_msg("parse_duration_us(%s) = %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc == 0) assert_int_equal(v, cases[i].want);
    }
}

static void test_options(void **state)
{
    struct options o;
    char *defaults[] = {"meshscope"};
    assert_int_equal(options_parse(1, defaults, &o), 0);
    assert_string_equal(o.db_path, "./meshscope.db");
    assert_string_equal(o.http_addr, "127.0.0.1:16686");
    assert_string_equal(o.otlp_http_addr, "127.0.0.1:4318");
    assert_string_equal(o.zipkin_addr, "127.0.0.1:9411");
    assert_int_equal(o.retention_us, INT64_C(72) * 3600 * 1000000);
    assert_int_equal(o.max_db_bytes, 0);
    assert_int_equal(o.flush_ms, 5);
    assert_false(o.ack_received); /* acknowledged means durable by default */

    char *good[] = {"meshscope", "--db", "/tmp/x.db", "--retention=24h", "--max-db-size",
                    "1GiB", "--http", ":0", "--log-level", "debug"};
    assert_int_equal(options_parse(10, good, &o), 0);
    assert_string_equal(o.db_path, "/tmp/x.db");
    assert_int_equal(o.retention_us, INT64_C(24) * 3600 * 1000000);
    assert_int_equal(o.max_db_bytes, INT64_C(1) << 30);
    assert_int_equal(o.log_level, LOG_DEBUG);
    char *ack[] = {"meshscope", "--ack=received"};
    assert_int_equal(options_parse(2, ack, &o), 0);
    assert_true(o.ack_received);

    /* Each bad command line fails (the message goes to stderr; main exits 2). */
    static char *bad[][3] = {
        {"meshscope", "--bogus", "1"},         {"meshscope", "--retention", "xyz"},
        {"meshscope", "--max-db-size", "-5"},  {"meshscope", "--http", "nocolon"},
        {"meshscope", "--http", "1.2.3.4:99999"}, {"meshscope", "--log-level", "loud"},
        {"meshscope", "--max-body", "1"},      {"meshscope", "stray", "arg"},
        {"meshscope", "--ack", "sometimes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(options_parse(3, bad[i], &o), -EINVAL);
    char *missing[] = {"meshscope", "--db"};
    assert_int_equal(options_parse(2, missing, &o), -EINVAL);

    setenv("MESHSCOPE_RETENTION", "1h", 1);
    char *env_then_argv[] = {"meshscope"};
    assert_int_equal(options_parse(1, env_then_argv, &o), 0);
    assert_int_equal(o.retention_us, INT64_C(3600) * 1000000);
    char *argv_wins[] = {"meshscope", "--retention", "2h"};
    assert_int_equal(options_parse(3, argv_wins, &o), 0);
    assert_int_equal(o.retention_us, INT64_C(7200) * 1000000);
    unsetenv("MESHSCOPE_RETENTION");
}

static uint8_t *gzip_bytes(const uint8_t *in, size_t len, size_t *out_len)
{
    z_stream z = {0};
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, len) + 64;
    uint8_t *out = malloc(cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static void test_decompress(void **state)
{
    size_t n = 1 << 20;
    uint8_t *plain = malloc(n);
    for (size_t i = 0; i < n; i++) plain[i] = (uint8_t)(i * 7 % 251);

    size_t glen;
    uint8_t *gz = gzip_bytes(plain, n, &glen);
    uint8_t *out;
    size_t olen;
    assert_int_equal(decompress(ENCODING_GZIP, gz, glen, n, &out, &olen), 0);
    assert_int_equal(olen, n);
    assert_memory_equal(out, plain, n);
    free(out);
    /* One byte under the size: refused while inflating. */
    assert_int_equal(decompress(ENCODING_GZIP, gz, glen, n - 1, &out, &olen), -E2BIG);
    /* Truncated and corrupt streams. */
    assert_int_equal(decompress(ENCODING_GZIP, gz, glen / 2, n, &out, &olen), -EINVAL);
    gz[glen - 6] ^= 0x01; /* CRC-32 trailer: the data inflates fine, the check fails */
    assert_int_equal(decompress(ENCODING_GZIP, gz, glen, n, &out, &olen), -EINVAL);
    gz[glen - 6] ^= 0x01;
    gz[0] ^= 0xff; /* gzip magic */
    assert_int_equal(decompress(ENCODING_GZIP, gz, glen, n, &out, &olen), -EINVAL);
    assert_int_equal(decompress(ENCODING_GZIP, (const uint8_t *)"", 0, n, &out, &olen), -EINVAL);
    free(gz);

    size_t zcap = ZSTD_compressBound(n);
    uint8_t *zs = malloc(zcap);
    size_t zlen = ZSTD_compress(zs, zcap, plain, n, 3);
    assert_false(ZSTD_isError(zlen));
    assert_int_equal(decompress(ENCODING_ZSTD, zs, zlen, n, &out, &olen), 0);
    assert_int_equal(olen, n);
    assert_memory_equal(out, plain, n);
    free(out);
    assert_int_equal(decompress(ENCODING_ZSTD, zs, zlen, n - 1, &out, &olen), -E2BIG);
    assert_int_equal(decompress(ENCODING_ZSTD, zs, zlen - 3, n, &out, &olen), -EINVAL);
    assert_int_equal(decompress(ENCODING_ZSTD, (const uint8_t *)"notzstd", 7, n, &out, &olen),
                     -EINVAL);
    free(zs);

    /* Bombs: 1 GiB of zeros in each format must stop at the cap, fast and without holding it. */
    size_t bomb_plain = 64 << 20;
    uint8_t *zeros = calloc(1, bomb_plain);
    size_t blen;
    uint8_t *bomb = gzip_bytes(zeros, bomb_plain, &blen);
    assert_true(blen < 128 * 1024);
    assert_int_equal(decompress(ENCODING_GZIP, bomb, blen, 4 << 20, &out, &olen), -E2BIG);
    free(bomb);
    zcap = ZSTD_compressBound(bomb_plain);
    bomb = malloc(zcap);
    blen = ZSTD_compress(bomb, zcap, zeros, bomb_plain, 19);
    assert_int_equal(decompress(ENCODING_ZSTD, bomb, blen, 4 << 20, &out, &olen), -E2BIG);
    free(bomb);
    free(zeros);
    free(plain);

    assert_int_equal(encoding_parse(NULL), ENCODING_IDENTITY);
    assert_int_equal(encoding_parse("GZIP"), ENCODING_GZIP);
    assert_int_equal(encoding_parse("zstd"), ENCODING_ZSTD);
    assert_int_equal(encoding_parse("br"), ENCODING_UNKNOWN);
}

static struct span_batch *batch_of(uint32_t spans)
{
    struct span_batch *b = span_batch_create();
    for (uint32_t i = 0; i < spans; i++) span_batch_add(b);
    return b;
}

/* n SERVER spans, one trace each (ids from seed), with a name and an attribute: enough content
 * for a dictionary to be trained on such batches. */
static struct span_batch *named_batch(uint32_t n, uint32_t seed)
{
    struct span_batch *b = span_batch_create();
    for (uint32_t i = 0; i < n; i++) {
        struct span *s = span_batch_add(b);
        uint32_t id = seed + i;
        memcpy(s->trace_id + 12, &id, 4);
        memcpy(s->span_id, &id, 4);
        char name[48];
        int len = snprintf(name, sizeof name, "GET /items/%u", id % 97);
        s->name = (struct mstr){arena_strndup(b->arena, name, (size_t)len), (uint32_t)len};
        s->kind = SPAN_KIND_SERVER;
        s->start_unix_nano = 1700000000000000000ULL + (uint64_t)id * 1000;
        s->end_unix_nano = s->start_unix_nano + 250000;
    }
    return b;
}

/* A queue that prepares batches for a store (store_prepare_batch) counts them as they wait,
 * compacted (store_compact_batch): a batch that would not fit even unprepared is refused before
 * any work (-E2BIG when it exceeds the whole queue, -EBUSY when the queue is too full for it, left
 * unprepared); one that outgrows the whole queue once prepared gets -E2BIG (never fits: HTTP
 * answers 413); one that fits goes in prepared and compacted, counted as it is then, a fraction
 * of the batch decoded. */
static void test_queue_prepares(void **state)
{
    (void)state;
    char dir[] = "/tmp/meshscope-queue-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/q.db", dir);
    struct store_options o = {.path = path};
    struct store *st = store_open(&o);
    assert_non_null(st);
    store_test_set_dict_threshold(st, 32 * 1024);
    for (uint32_t k = 0; k < 20; k++) {
        struct span_batch *t = named_batch(100, 100000 + k * 100);
        assert_int_equal(store_put_batches(st, &t, 1), 0);
        span_batch_destroy(t);
    }
    store_test_wait_dicts(st);

    struct span_batch *b = named_batch(200, 9000);
    size_t waits = store_queued_bytes(b); /* compacted, before its chunks */
    assert_true(waits < span_batch_bytes(b));
    struct ingest_queue *q = ingest_queue_create(4, waits - 1);
    ingest_queue_prepare_for(q, st);
    assert_int_equal(ingest_queue_push(q, b), -E2BIG);
    assert_null(b->prepared);
    ingest_queue_destroy(q);
    q = ingest_queue_create(4, waits);
    ingest_queue_prepare_for(q, st);
    assert_int_equal(ingest_queue_push(q, b), -E2BIG);
    assert_non_null(b->prepared); /* fits compacted, not with its chunks */
    assert_true(store_queued_bytes(b) > waits);
    assert_int_not_equal(b->cap_spans, 0); /* refused: left whole */
    assert_int_equal(ingest_queue_items(q), 0);
    ingest_queue_destroy(q);

    struct span_batch *filler = named_batch(200, 20000);
    assert_int_equal(store_prepare_batch(st, filler), 0);
    assert_non_null(filler->prepared);
    size_t filler_waits = store_queued_bytes(filler);
    struct span_batch *c = named_batch(200, 30000);
    q = ingest_queue_create(4, filler_waits + store_queued_bytes(c) - 1);
    ingest_queue_prepare_for(q, st);
    assert_int_equal(ingest_queue_push(q, filler), 0);
    assert_int_equal(filler->cap_spans, 0); /* compacted */
    assert_int_equal(span_batch_bytes(filler), filler_waits);
    assert_int_equal(ingest_queue_bytes(q), filler_waits);
    assert_int_equal(ingest_queue_push(q, c), -EBUSY);
    assert_null(c->prepared); /* refused before the work */
    struct span_batch *out[4];
    assert_int_equal(ingest_queue_pop(q, out, 4, 0), 1);
    span_batch_destroy(out[0]);
    assert_int_equal(ingest_queue_push(q, c), 0);
    assert_int_equal(ingest_queue_pop(q, out, 4, 0), 1);
    assert_ptr_equal(out[0], c);
    assert_non_null(c->prepared);
    assert_int_equal(store_put_batches(st, out, 1), 0);
    span_batch_destroy(c);
    ingest_queue_destroy(q);
    span_batch_destroy(b);
    store_close(st);
    char f[96];
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(f, sizeof f, "%s%s", path, suffix[i]);
        unlink(f);
    }
    rmdir(dir);
}

static void test_queue_bounds(void **state)
{
    struct span_batch *probe = batch_of(1);
    size_t one = span_batch_bytes(probe);
    struct ingest_queue *q = ingest_queue_create(4, one * 3 + one / 2);
    assert_non_null(q);
    struct span_batch *b[4];
    for (int i = 0; i < 3; i++) {
        b[i] = batch_of(1);
        assert_int_equal(ingest_queue_push(q, b[i]), 0);
    }
    b[3] = batch_of(1);
    assert_int_equal(ingest_queue_push(q, b[3]), -EBUSY); /* byte bound */
    assert_int_equal(ingest_queue_items(q), 3);
    struct span_batch *out[8];
    assert_int_equal(ingest_queue_pop(q, out, 8, 0), 3);
    assert_ptr_equal(out[0], b[0]); /* FIFO */
    assert_ptr_equal(out[2], b[2]);
    assert_int_equal(ingest_queue_bytes(q), 0);
    for (int i = 0; i < 3; i++) span_batch_destroy(out[i]);
    assert_int_equal(ingest_queue_pop(q, out, 8, 10), 0); /* times out empty */
    ingest_queue_close(q);
    assert_int_equal(ingest_queue_push(q, b[3]), -EPIPE);
    assert_true(ingest_queue_closed_and_empty(q));
    span_batch_destroy(b[3]);
    span_batch_destroy(probe);
    ingest_queue_destroy(q);

    /* Item bound: a ring of 16 refuses the 17th even with bytes to spare. */
    q = ingest_queue_create(16, SIZE_MAX / 2);
    for (int i = 0; i < 16; i++) assert_int_equal(ingest_queue_push(q, batch_of(0)), 0);
    struct span_batch *extra = batch_of(0);
    assert_int_equal(ingest_queue_push(q, extra), -EBUSY);
    span_batch_destroy(extra);
    ingest_queue_destroy(q); /* frees what is queued */
}

/* Many producers, one consumer: every batch arrives exactly once. */
#define PRODUCERS 4
#define PER_PRODUCER 5000

static void *producer(void *arg)
{
    struct ingest_queue *q = arg;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        struct span_batch *b = batch_of(1);
        b->rejected = i; /* payload: sequence number per producer */
        while (ingest_queue_push(q, b) == -EBUSY) {
        }
    }
    return NULL;
}

static void test_queue_concurrent(void **state)
{
    struct ingest_queue *q = ingest_queue_create(64, SIZE_MAX / 2);
    pthread_t th[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) pthread_create(&th[i], NULL, producer, q);
    size_t got = 0;
    uint64_t sum = 0;
    struct span_batch *out[32];
    while (got < PRODUCERS * PER_PRODUCER) {
        size_t n = ingest_queue_pop(q, out, 32, 50);
        for (size_t i = 0; i < n; i++) {
            sum += out[i]->rejected;
            span_batch_destroy(out[i]);
        }
        got += n;
    }
    for (int i = 0; i < PRODUCERS; i++) pthread_join(th[i], NULL);
    assert_int_equal(got, PRODUCERS * PER_PRODUCER);
    assert_int_equal(sum, (uint64_t)PRODUCERS * PER_PRODUCER * (PER_PRODUCER - 1) / 2);
    assert_int_equal(ingest_queue_items(q), 0);
    ingest_queue_destroy(q);
}

static void test_responses(void **state)
{
    char *out;
    size_t len;
    assert_int_equal(otlp_encode_export_response(false, 0, NULL, &out, &len), 0);
    assert_int_equal(len, 0); /* empty ExportTraceServiceResponse */
    free(out);
    assert_int_equal(otlp_encode_export_response(false, 300, "bad", &out, &len), 0);
    /* 0a 08 | 08 ac 02 | 12 03 'b' 'a' 'd' */
    static const uint8_t want[] = {0x0a, 0x08, 0x08, 0xac, 0x02, 0x12, 0x03, 'b', 'a', 'd'};
    assert_int_equal(len, sizeof want);
    assert_memory_equal(out, want, sizeof want);
    free(out);
    assert_int_equal(otlp_encode_export_response(true, 2, "x\"y", &out, &len), 0);
    assert_string_equal(out, "{\"partialSuccess\":{\"rejectedSpans\":\"2\",\"errorMessage\":\"x\\\"y\"}}");
    free(out);
    assert_int_equal(otlp_encode_export_response(true, 0, NULL, &out, &len), 0);
    assert_string_equal(out, "{}");
    free(out);
    assert_int_equal(otlp_encode_status(false, 3, "no", &out, &len), 0);
    static const uint8_t st[] = {0x08, 0x03, 0x12, 0x02, 'n', 'o'};
    assert_int_equal(len, sizeof st);
    assert_memory_equal(out, st, sizeof st);
    free(out);
    assert_int_equal(otlp_encode_status(true, 3, "bad \xff utf8", &out, &len), 0);
    assert_non_null(strstr(out, "\"code\":3")); /* invalid UTF-8 never yields invalid JSON */
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),       cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_options),          cmocka_unit_test(test_decompress),
        cmocka_unit_test(test_queue_bounds),     cmocka_unit_test(test_queue_prepares),
        cmocka_unit_test(test_queue_concurrent), cmocka_unit_test(test_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
