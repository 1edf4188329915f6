/* SPDX-License-Identifier: MIT */
/* util.c: small helpers shared by the library (util.h). */
#include "sync/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "sync/log.h"

int util_mkdirs(const char *path, mode_t mode, bool parent_only)
{
    char *p = strdup(path);
    if (!p)
        return -1;
    size_t len = strlen(p);
    if (parent_only) {
        char *slash = strrchr(p, '/');
        if (!slash) {
            free(p);
            return 0;
        }
        *slash = '\0';
        len = strlen(p);
    }
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            errno = e;
            return -1;
        }
        p[i] = c;
    }
    free(p);
    return 0;
}

static void oom(void)
{
    log_fatal("out of memory"); /* the program's sink shows it; nothing is allocated */
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        oom();
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom();
    return p;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        oom();
    return p;
}

void *util_find_uid(const void *base, size_t n, size_t size, size_t off, uint32_t uid)
{
    const char *b = base;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t at;
        memcpy(&at, b + mid * size + off, sizeof at);
        if (at == uid)
            return (void *)(b + mid * size);
        if (at < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int util_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int util_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void util_free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void util_host_unbracket(const char *host, char *out, size_t len)
{
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
        snprintf(out, len, "%.*s", (int)(n - 2), host + 1);
    else
        snprintf(out, len, "%s", host);
}

double util_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
