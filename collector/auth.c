/*
 * auth.c: bearer tokens for ingest and read access (--auth-token-file).
 *
 * The file holds one token per line: "ingest=TOKEN" grants ingest only, "read=TOKEN" grants the
 * query APIs and /metrics only, a bare "TOKEN" grants both. Blank lines and lines starting with
 * '#' are ignored; several tokens per scope let a token be rotated without downtime. Tokens are
 * compared in constant time (no early exit on the first differing byte) so response timing does
 * not reveal a prefix. The table is read once at start and never changes: any thread may check.
 */
#include "collector_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TOKENS 16 /* per file: plenty for rotation, small enough to scan every request */
#define MAX_TOKEN_LEN 256

struct auth {
    struct {
        char token[MAX_TOKEN_LEN + 1];
        size_t len;
        unsigned scopes; /* bit per enum auth_scope */
    } t[MAX_TOKENS];
    size_t n;
};

struct auth *auth_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        log_msg(LOG_ERROR, "auth: cannot open --auth-token-file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct auth *a = calloc(1, sizeof *a);
    char line[1024];
    unsigned lineno = 0;
    while (a && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#') continue;
        unsigned scopes = (1u << AUTH_INGEST) | (1u << AUTH_READ);
        if (strncmp(p, "ingest=", 7) == 0) {
            scopes = 1u << AUTH_INGEST;
            p += 7;
        } else if (strncmp(p, "read=", 5) == 0) {
            scopes = 1u << AUTH_READ;
            p += 5;
        }
        size_t tlen = strlen(p);
        while (tlen && (p[tlen - 1] == ' ' || p[tlen - 1] == '\t'))
            p[--tlen] = '\0';
        if (tlen < 16 || tlen > MAX_TOKEN_LEN || strpbrk(p, " \t")) {
            log_msg(LOG_ERROR, "auth: %s line %u: a token is 16 to %d characters without spaces",
                    path, lineno, MAX_TOKEN_LEN);
            free(a);
            a = NULL;
            break;
        }
        if (a->n == MAX_TOKENS) {
            log_msg(LOG_ERROR, "auth: %s: more than %d tokens", path, MAX_TOKENS);
            free(a);
            a = NULL;
            break;
        }
        memcpy(a->t[a->n].token, p, tlen + 1);
        a->t[a->n].len = tlen;
        a->t[a->n].scopes = scopes;
        a->n++;
    }
    fclose(f);
    if (a && a->n == 0) {
        log_msg(LOG_ERROR, "auth: %s holds no token", path);
        free(a);
        a = NULL;
    }
    return a;
}

void auth_free(struct auth *a)
{
    free(a);
}

/* Compares every byte of the stored token whatever the input, so timing depends only on the
 * stored token's length. */
static bool same_token(const char *stored, size_t stored_len, const char *given, size_t given_len)
{
    unsigned char diff = stored_len != given_len;
    for (size_t i = 0; i < stored_len; i++)
        diff |= (unsigned char)stored[i] ^ (unsigned char)(i < given_len ? given[i] : 0);
    return diff == 0;
}

bool auth_check(const struct auth *a, enum auth_scope scope, const char *header)
{
    if (!a) return true;
    if (!header || strncasecmp(header, "Bearer ", 7) != 0) return false;
    const char *given = header + 7;
    while (*given == ' ')
        given++;
    size_t given_len = strlen(given);
    bool ok = false;
    for (size_t i = 0; i < a->n; i++) /* no early exit: every token is compared */
        ok |= (a->t[i].scopes & (1u << scope)) &&
              same_token(a->t[i].token, a->t[i].len, given, given_len);
    return ok;
}
