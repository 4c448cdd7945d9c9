/*
 * decompress.c: gzip and zstd request bodies, inflated with a hard output cap.
 *
 * The cap is checked while inflating, so a compression bomb (a few KB that inflate to GBs) is
 * refused after at most `cap` bytes of output, never held whole in memory. Each HTTP thread keeps
 * its own z_stream and ZSTD_DCtx (thread-local, created on first use, reset per request) so the
 * hot path does not allocate a context per request.
 */
#include "collector_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>

#include <zlib.h>
#include <zstd.h>

enum content_encoding encoding_parse(const char *h)
{
    if (!h || !*h || strcasecmp(h, "identity") == 0) return ENCODING_IDENTITY;
    if (strcasecmp(h, "gzip") == 0 || strcasecmp(h, "x-gzip") == 0) return ENCODING_GZIP;
    if (strcasecmp(h, "zstd") == 0) return ENCODING_ZSTD;
    return ENCODING_UNKNOWN;
}

/* Per-thread contexts. Freed by a pthread key destructor when an HTTP thread exits. */
struct dctx {
    z_stream z;
    bool z_ready;
    ZSTD_DCtx *zstd;
};

static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;

static void dctx_free(void *p)
{
    struct dctx *d = p;
    if (!d) return;
    if (d->z_ready) inflateEnd(&d->z);
    ZSTD_freeDCtx(d->zstd);
    free(d);
}

static void dctx_key_init(void)
{
    pthread_key_create(&dctx_key, dctx_free);
}

static struct dctx *dctx_get(void)
{
    pthread_once(&dctx_once, dctx_key_init);
    struct dctx *d = pthread_getspecific(dctx_key);
    if (!d) {
        d = calloc(1, sizeof *d);
        if (!d) return NULL;
        pthread_setspecific(dctx_key, d);
    }
    return d;
}

/* Grows *buf to hold at least need bytes, never beyond cap (+1 so overflow is detectable). */
static int grow(uint8_t **buf, size_t *size, size_t cap)
{
    size_t n = *size ? *size * 2 : 64 * 1024;
    if (n > cap + 1) n = cap + 1;
    if (n <= *size) return -E2BIG;
    uint8_t *p = realloc(*buf, n);
    if (!p) return -ENOMEM;
    *buf = p;
    *size = n;
    return 0;
}

static int inflate_gzip(struct dctx *d, const uint8_t *in, size_t in_len, size_t cap,
                        uint8_t **obuf, size_t *osize, size_t *olen)
{
    if (!d->z_ready) {
        memset(&d->z, 0, sizeof d->z);
        if (inflateInit2(&d->z, 16 + MAX_WBITS) != Z_OK) return -ENOMEM; /* 16: gzip header */
        d->z_ready = true;
    } else if (inflateReset2(&d->z, 16 + MAX_WBITS) != Z_OK) {
        return -EINVAL;
    }
    d->z.next_in = (Bytef *)in;
    d->z.avail_in = (uInt)in_len;
    for (;;) {
        if (*olen == *osize) {
            int rc = grow(obuf, osize, cap);
            if (rc) return rc;
        }
        d->z.next_out = *obuf + *olen;
        d->z.avail_out = (uInt)(*osize - *olen);
        int zr = inflate(&d->z, Z_NO_FLUSH);
        *olen = *osize - d->z.avail_out;
        if (*olen > cap) return -E2BIG;
        if (zr == Z_STREAM_END) {
            /* Concatenated gzip members are legal (RFC 1952): keep going if input remains. */
            if (d->z.avail_in == 0) return 0;
            if (inflateReset2(&d->z, 16 + MAX_WBITS) != Z_OK) return -EINVAL;
            continue;
        }
        if (zr == Z_BUF_ERROR && d->z.avail_in == 0) return -EINVAL; /* truncated */
        if (zr != Z_OK && zr != Z_BUF_ERROR) return -EINVAL;
    }
}

static int inflate_zstd(struct dctx *d, const uint8_t *in, size_t in_len, size_t cap,
                        uint8_t **obuf, size_t *osize, size_t *olen)
{
    if (!d->zstd) {
        d->zstd = ZSTD_createDCtx();
        if (!d->zstd) return -ENOMEM;
        /* Refuse frames that need a window above 128 MiB: memory the decoder would take. */
        ZSTD_DCtx_setParameter(d->zstd, ZSTD_d_windowLogMax, 27);
    }
    ZSTD_DCtx_reset(d->zstd, ZSTD_reset_session_only);
    ZSTD_inBuffer ib = {in, in_len, 0};
    size_t last = 1;
    while (ib.pos < ib.size || last != 0) {
        if (*olen == *osize) {
            int rc = grow(obuf, osize, cap);
            if (rc) return rc;
        }
        ZSTD_outBuffer ob = {*obuf, *osize, *olen};
        size_t before_in = ib.pos, before_out = ob.pos;
        last = ZSTD_decompressStream(d->zstd, &ob, &ib);
        if (ZSTD_isError(last)) return -EINVAL;
        *olen = ob.pos;
        if (*olen > cap) return -E2BIG;
        if (ib.pos == ib.size && last != 0 && ob.pos < ob.size) return -EINVAL; /* truncated */
        if (ib.pos == before_in && ob.pos == before_out && ob.pos < ob.size) return -EINVAL;
    }
    return 0;
}

int decompress(enum content_encoding enc, const uint8_t *in, size_t in_len, size_t cap,
               uint8_t **out, size_t *out_len)
{
    struct dctx *d = dctx_get();
    if (!d) return -ENOMEM;
    uint8_t *buf = NULL;
    size_t size = 0, len = 0;
    int rc;
    if (enc == ENCODING_GZIP) rc = inflate_gzip(d, in, in_len, cap, &buf, &size, &len);
    else if (enc == ENCODING_ZSTD) rc = inflate_zstd(d, in, in_len, cap, &buf, &size, &len);
    else rc = -EINVAL;
    if (rc == 0 && len > cap) rc = -E2BIG;
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return 0;
}
