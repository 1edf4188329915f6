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
    /* Once sealed: the entries whose hash starts with the top `bits` bits
     * b are v[start[b]] .. v[start[b + 1] - 1] (about 4 each): a lookup
     * is one index read and a short scan, not a binary search of 18
     * steps through 3 MB (at 200,000 rows), each a cache miss. */
    uint32_t *start;
    unsigned bits;
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
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return x;
#else
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
#endif
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
    free((*d)->start);
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

static size_t bucket_of(const struct pushdiff *d, uint64_t h)
{
    return (size_t)(h >> (64 - d->bits));
}

bool pushdiff_seal(struct pushdiff *d)
{
    if (!d->n)
        return true;
    /* the array grew by doubling: give back what is unused */
    if (d->n < d->cap) {
        d->v = xrealloc(d->v, d->n * sizeof *d->v);
        d->cap = d->n;
    }
    /* Bucketed in place by the hash's top bits (counts, then each entry
     * swapped into its bucket's next free place: no second array), then
     * each bucket (a few entries) sorted by insertion: O(n), where qsort
     * took n log n comparisons and a temporary copy of the array. */
    d->bits = 1;
    while (d->bits < 24 && ((size_t)1 << d->bits) < d->n / 4)
        d->bits++;
    size_t nb = (size_t)1 << d->bits;
    free(d->start);
    d->start = xcalloc(nb + 1, sizeof *d->start);
    for (size_t i = 0; i < d->n; i++)
        d->start[bucket_of(d, d->v[i].hash) + 1]++;
    for (size_t b = 0; b < nb; b++)
        d->start[b + 1] += d->start[b];
    uint32_t *next = xmalloc(nb * sizeof *next);
    memcpy(next, d->start, nb * sizeof *next);
    for (size_t b = 0; b < nb; b++)
        while (next[b] < d->start[b + 1]) {
            size_t t = bucket_of(d, d->v[next[b]].hash);
            if (t == b) {
                next[b]++;
                continue;
            }
            struct entry tmp = d->v[next[t]];
            d->v[next[t]++] = d->v[next[b]];
            d->v[next[b]] = tmp;
        }
    free(next);
    bool distinct = true;
    for (size_t b = 0; b < nb; b++)
        for (size_t i = d->start[b] + 1; i < d->start[b + 1]; i++) {
            struct entry e = d->v[i];
            size_t j = i;
            for (; j > d->start[b] && d->v[j - 1].hash > e.hash; j--)
                d->v[j] = d->v[j - 1];
            d->v[j] = e;
            if (j > d->start[b] && d->v[j - 1].hash == e.hash)
                distinct = false; /* the same name twice, or a collision */
        }
    return distinct;
}

static struct entry *find(const struct pushdiff *d, uint64_t h)
{
    if (!d->start)
        return NULL; /* no rows (or not sealed) */
    size_t b = bucket_of(d, h);
    for (size_t i = d->start[b]; i < d->start[b + 1] && d->v[i].hash <= h; i++)
        if (d->v[i].hash == h)
            return &d->v[i];
    return NULL;
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
        qsort(*out, k, sizeof **out, util_cmp_u32);
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
        qsort(d->uids, d->n, sizeof *d->uids, util_cmp_u32);
    }
    return util_uid_find(d->uids, d->n, uid) != NULL;
}

size_t pushdiff_rows(const struct pushdiff *d)
{
    return d->n;
}
