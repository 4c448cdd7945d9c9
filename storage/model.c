/*
 * model.c: the arena allocator, span batches and small helpers on the span model.
 *
 * A batch's memory is one arena: decoders allocate every string, attribute and event of a
 * request from it, so handing a batch to the writer thread and freeing it is one pointer and one
 * free of a short block list. Blocks double in size up to 1 MiB so a big request costs few
 * mallocs; huge single allocations get a block of their own.
 */
#include "storage_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct arena_block {
    struct arena_block *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    _Alignas(16) unsigned char data[];
};

struct arena {
    struct arena_block *head;
    size_t next_size;
    size_t total;
    size_t map_len; /* arena_create_mapped: the length of the mapping holding it, else 0 */
};

#define ARENA_MAX_BLOCK (1u << 20) /* growth stops here: bigger blocks only waste tail space */

struct arena *arena_create(size_t first_block)
{
    struct arena *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->next_size = first_block ? first_block : 4096;
    return a;
}

#define MAPPED_HEAD ((sizeof(struct arena) + 15) & ~(size_t)15) /* the arena, then its block */

size_t arena_mapped_bytes(size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (MAPPED_HEAD + sizeof(struct arena_block) + bytes + page - 1) / page * page;
}

struct arena *arena_create_mapped(size_t bytes)
{
    size_t head = MAPPED_HEAD, len = arena_mapped_bytes(bytes);
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    struct arena *a = m;
    struct arena_block *b = (struct arena_block *)((char *)m + head);
    b->next = NULL;
    b->size = len - head - sizeof *b;
    b->used = 0;
    *a = (struct arena){.head = b, .next_size = 4096, .total = len, .map_len = len};
    return a;
}

void arena_destroy(struct arena *a)
{
    if (!a) return;
    /* A mapped arena's first block follows it in its mapping; any later ones are malloc's. */
    const struct arena_block *mapped =
        a->map_len ? (const struct arena_block *)((char *)a + MAPPED_HEAD) : NULL;
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        if (b != mapped) free(b);
        b = next;
    }
    if (a->map_len)
        munmap(a, a->map_len);
    else
        free(a);
}

/* arena_alloc without the zeroing (for memory the caller fills at once). */
static void *arena_alloc_raw(struct arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct arena_block *b = a->head;
    if (!b || b->size - b->used < size) {
        size_t bsize = a->next_size;
        if (bsize < size) bsize = size;
        b = malloc(sizeof *b + bsize);
        if (!b) return NULL;
        b->size = bsize;
        b->used = 0;
        if (a->head && a->head->size - a->head->used > 256 && bsize == size) {
            /* A one-off big allocation: keep the current block at the head for small ones. */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
            if (a->next_size < ARENA_MAX_BLOCK) a->next_size *= 2;
        }
        a->total += sizeof *b + bsize;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

void *arena_alloc(struct arena *a, size_t size)
{
    void *p = arena_alloc_raw(a, size);
    if (p) memset(p, 0, size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p = arena_alloc_raw(a, len + 1);
    if (!p) return NULL;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

size_t arena_bytes(const struct arena *a)
{
    return a->total;
}

struct span_batch *span_batch_create(void)
{
    struct span_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->arena = arena_create(16384);
    if (!b->arena) {
        free(b);
        return NULL;
    }
    return b;
}

void prepared_chunks_free(struct prepared_chunks *p)
{
    if (!p) return;
    free(p->chunks);
    free(p->data.p);
    free(p->span_flags);
    free(p->marks);
    free(p->raw.p);
    free(p->raw_len);
    free(p);
}

void span_batch_destroy(struct span_batch *b)
{
    if (!b) return;
    arena_destroy(b->arena);
    if (b->cap_spans) free(b->spans); /* else none, or in the arena (store_compact_batch) */
    free(b->logs);
    prepared_chunks_free(b->prepared);
    free(b);
}

struct span *span_batch_add(struct span_batch *b)
{
    if (b->n_spans >= b->cap_spans) {
        /* More spans than room: compacted (store_compact_batch), its spans in the arena. */
        if (b->n_spans > b->cap_spans) return NULL;
        uint32_t cap = b->cap_spans ? b->cap_spans * 2 : 16;
        struct span *p = realloc(b->spans, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        b->spans = p;
        b->cap_spans = cap;
    }
    struct span *s = &b->spans[b->n_spans++];
    memset(s, 0, sizeof *s);
    b->compact_need = 0;
    return s;
}

void span_batch_drop_last(struct span_batch *b)
{
    if (b->n_spans) b->n_spans--;
    b->compact_need = 0;
}

struct access_log *span_batch_add_log(struct span_batch *b)
{
    if (b->n_logs == b->cap_logs) {
        uint32_t cap = b->cap_logs ? b->cap_logs * 2 : 16;
        struct access_log *p = realloc(b->logs, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        b->logs = p;
        b->cap_logs = cap;
    }
    struct access_log *l = &b->logs[b->n_logs++];
    memset(l, 0, sizeof *l);
    l->response_code = l->bytes_received = l->bytes_sent = -1;
    l->duration_ms = l->upstream_service_time_ms = -1;
    return l;
}

int span_batch_reserve_logs(struct span_batch *b, size_t n)
{
    if (n <= b->cap_logs) return 0;
    if (n > UINT32_MAX / 2) return -ENOMEM;
    struct access_log *p = realloc(b->logs, n * sizeof *p);
    if (!p) return -ENOMEM;
    b->logs = p;
    b->cap_logs = (uint32_t)n;
    return 0;
}

void span_batch_drop_last_log(struct span_batch *b)
{
    if (b->n_logs) b->n_logs--;
}

size_t span_batch_bytes(const struct span_batch *b)
{
    size_t prepared =
        b->prepared ? sizeof *b->prepared + b->prepared->n * sizeof(struct prepared_chunk) +
                          b->prepared->data.cap + b->prepared->raw.cap +
                          (b->prepared->raw_len ? b->n_spans * sizeof *b->prepared->raw_len : 0) +
                          b->n_spans * (sizeof *b->prepared->marks + 1)
                    : 0;
    return sizeof *b + arena_bytes(b->arena) + (size_t)b->cap_spans * sizeof(struct span) +
           (size_t)b->cap_logs * sizeof(struct access_log) + prepared;
}

bool access_log_is_error(const struct access_log *l)
{
    if (l->response_code >= 500 || l->response_code == 0) return true;
    const struct mstr *f = &l->str[ALOG_RESPONSE_FLAGS];
    return f->ptr && f->len > 0 && !(f->len == 1 && f->ptr[0] == '-');
}

static const struct value *attrs_find(const struct attrs *as, const char *key)
{
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < as->n; i++) {
        const struct attr *a = &as->items[i];
        if (a->key.len == klen && memcmp(a->key.ptr, key, klen) == 0) return &a->value;
    }
    return NULL;
}

const char *span_service_name(const struct span *s)
{
    if (s->resource) {
        const struct value *v = attrs_find(&s->resource->attrs, "service.name");
        if (v && v->type == VALUE_STRING && v->u.str.len > 0) return v->u.str.ptr;
    }
    return "unknown_service";
}

const struct value *span_attr(const struct span *s, const char *key)
{
    return attrs_find(&s->attrs, key);
}

/* An integer attribute that may also arrive as a numeric string (older instrumentations). */
static bool value_as_int(const struct value *v, int64_t *out)
{
    if (!v) return false;
    if (v->type == VALUE_INT) {
        *out = v->u.i;
        return true;
    }
    if (v->type == VALUE_STRING && v->u.str.len > 0 && v->u.str.len < 12) {
        char *end;
        long long n = strtoll(v->u.str.ptr, &end, 10);
        if (*end == '\0') {
            *out = n;
            return true;
        }
    }
    return false;
}

bool span_is_error(const struct span *s)
{
    if (s->status_code == STATUS_ERROR) return true;
    /* OpenTracing's convention, which older instrumentations still set: error=true. */
    const struct value *e = span_attr(s, "error");
    if (e && ((e->type == VALUE_BOOL && e->u.b) ||
              (e->type == VALUE_STRING && strcmp(e->u.str.ptr, "true") == 0)))
        return true;
    int64_t code;
    if (value_as_int(span_attr(s, "http.response.status_code"), &code) && code >= 500) return true;
    if (value_as_int(span_attr(s, "http.status_code"), &code) && code >= 500) return true;
    if (s->kind == SPAN_KIND_SERVER &&
        value_as_int(span_attr(s, "rpc.grpc.status_code"), &code) && code != 0)
        return true;
    return false;
}

bool id_is_zero(const uint8_t *id, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (id[i]) return false;
    return true;
}
