/* SPDX-License-Identifier: MIT */
/*
 * pushdiff.c: a folder's state rows as 16-byte entries, the listing
 * streamed past them (see pushdiff.h for what is kept and why that is
 * exact but for one case of 2^-64).
 */
#include "sync/plan/pushdiff.h"

#include <stdlib.h>
#include <string.h>

#include "sync/flags.h"
#include "sync/util.h"

enum {
    MARK_LISTED = 1, /* a file with the row's name was listed */
    MARK_TWICE = 2,  /* ... and another one */
    MARK_DIFF = 4,   /* a file was listed with other flags */
    MARK_WANT = 8,   /* the caller wants it */
};

struct entry {
    uint64_t hash;
    uint32_t uid;
    uint16_t flags; /* & FLAG_ALL */
    uint16_t marks;
};

struct pushdiff {
    uint8_t key[16];
    struct entry *v; /* by hash once sealed */
    size_t n, cap;
    uint32_t *uids;  /* every row's, ascending: made by the first pushdiff_has_uid() */
    bool twice;
};

/* ------------------------------------------------------------------ */
/* SipHash-2-4 (Aumasson, Bernstein): a keyed hash, so that no set of
 * names chosen in advance collides more often than chance. */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

#define SIPROUND                                                                                                      \
    do {                                                                                                              \
        v0 += v1;                                                                                                     \
        v1 = rotl(v1, 13);                                                                                            \
        v1 ^= v0;                                                                                                     \
        v0 = rotl(v0, 32);                                                                                            \
        v2 += v3;                                                                                                     \
        v3 = rotl(v3, 16);                                                                                            \
        v3 ^= v2;                                                                                                     \
        v0 += v3;                                                                                                     \
        v3 = rotl(v3, 21);                                                                                            \
        v3 ^= v0;                                                                                                     \
        v2 += v1;                                                                                                     \
        v1 = rotl(v1, 17);                                                                                            \
        v1 ^= v2;                                                                                                     \
        v2 = rotl(v2, 32);                                                                                            \
    } while (0)

uint64_t pushdiff_siphash(const uint8_t key[16], const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    size_t full = n - n % 8;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = le64(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t i = 0; i < n % 8; i++)
        b |= (uint64_t)p[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ------------------------------------------------------------------ */

struct pushdiff *pushdiff_new(const uint8_t key[16])
{
    struct pushdiff *d = xcalloc(1, sizeof *d);
    memcpy(d->key, key, sizeof d->key);
    return d;
}

void pushdiff_free(struct pushdiff **d)
{
    if (!d || !*d)
        return;
    free((*d)->v);
    free((*d)->uids);
    free(*d);
    *d = NULL;
}

static uint64_t hash_of(const struct pushdiff *d, const char *uniq)
{
    return pushdiff_siphash(d->key, uniq, strlen(uniq));
}

void pushdiff_reserve(struct pushdiff *d, size_t n)
{
    if (n <= d->cap)
        return;
    d->cap = n;
    d->v = xrealloc(d->v, d->cap * sizeof *d->v);
}

void pushdiff_add_row(struct pushdiff *d, uint32_t uid, const char *uniq, unsigned flags)
{
    if (!uniq)
        return;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 256;
        d->v = xrealloc(d->v, d->cap * sizeof *d->v);
    }
    d->v[d->n++] = (struct entry){.hash = hash_of(d, uniq), .uid = uid, .flags = (uint16_t)(flags & FLAG_ALL),
                                  .marks = 0};
}

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

bool pushdiff_seal(struct pushdiff *d)
{
    if (d->n)
        qsort(d->v, d->n, sizeof *d->v, cmp_entry);
    /* the array grew by doubling: give back what is unused */
    if (d->n && d->n < d->cap) {
        d->v = xrealloc(d->v, d->n * sizeof *d->v);
        d->cap = d->n;
    }
    for (size_t i = 1; i < d->n; i++)
        if (d->v[i - 1].hash == d->v[i].hash)
            return false;
    return true;
}

static struct entry *find(const struct pushdiff *d, uint64_t h)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->v[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->n && d->v[lo].hash == h ? &d->v[lo] : NULL;
}

void pushdiff_want_uid(struct pushdiff *d, uint32_t uid)
{
    for (size_t i = 0; i < d->n; i++) /* few: one pass each */
        if (d->v[i].uid == uid)
            d->v[i].marks |= MARK_WANT;
}

void pushdiff_want_uniq(struct pushdiff *d, const char *uniq)
{
    struct entry *e = uniq ? find(d, hash_of(d, uniq)) : NULL;
    if (e)
        e->marks |= MARK_WANT;
}

void pushdiff_restart(struct pushdiff *d)
{
    for (size_t i = 0; i < d->n; i++)
        d->v[i].marks &= MARK_WANT;
    d->twice = false;
}

bool pushdiff_keep_file(struct pushdiff *d, const char *uniq, unsigned flags)
{
    struct entry *e = find(d, hash_of(d, uniq));
    if (!e)
        return true; /* no row names it: new */
    if (e->marks & MARK_LISTED) {
        e->marks |= MARK_TWICE;
        d->twice = true;
    }
    e->marks |= MARK_LISTED;
    if ((flags & FLAG_ALL) != e->flags)
        e->marks |= MARK_DIFF;
    return (e->marks & (MARK_DIFF | MARK_WANT | MARK_TWICE)) != 0;
}

bool pushdiff_ambiguous(const struct pushdiff *d)
{
    return d->twice;
}

static bool needed(const struct entry *e)
{
    return !(e->marks & MARK_LISTED) || (e->marks & (MARK_DIFF | MARK_WANT | MARK_TWICE));
}

size_t pushdiff_needed(const struct pushdiff *d, uint32_t **out)
{
    size_t k = 0;
    for (size_t i = 0; i < d->n; i++)
        k += needed(&d->v[i]);
    *out = xmalloc((k ? k : 1) * sizeof **out);
    k = 0;
    for (size_t i = 0; i < d->n; i++)
        if (needed(&d->v[i]))
            (*out)[k++] = d->v[i].uid;
    if (k)
        qsort(*out, k, sizeof **out, cmp_u32);
    return k;
}

bool pushdiff_has_uid(struct pushdiff *d, uint32_t uid)
{
    if (!d->n)
        return false;
    if (!d->uids) {
        /* only a push that recorded uploads or moves asks (4 B a row) */
        d->uids = xmalloc(d->n * sizeof *d->uids);
        for (size_t i = 0; i < d->n; i++)
            d->uids[i] = d->v[i].uid;
        qsort(d->uids, d->n, sizeof *d->uids, cmp_u32);
    }
    return bsearch(&uid, d->uids, d->n, sizeof uid, cmp_u32) != NULL;
}

size_t pushdiff_rows(const struct pushdiff *d)
{
    return d->n;
}
