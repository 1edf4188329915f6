/* SPDX-License-Identifier: MIT */
/*
 * plan.c: the pure reconciliation planner (see plan.h for the contract).
 *
 * The inputs are sorted, so the state and remote lists are merged by UID in
 * one pass and local files are found by binary search on their unique
 * part: O((S + R) log L) with no allocation beyond the plan itself.
 */
#include "sync/plan/plan.h"

#include "sync/flags.h"

#include <stdlib.h>
#include <string.h>

/* The mass-deletion guard's share rule watches folders at least this big;
 * its floor (no folder emptied) needs at least this many deletions. */
#define GUARD_MIN_MESSAGES 20
#define GUARD_FLOOR_DELETES 2

struct builder {
    struct plan_action *a;
    size_t n, cap;
};

static int push(struct builder *b, struct plan_action act)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct plan_action *a = realloc(b->a, cap * sizeof *a);
        if (!a)
            return -1;
        b->a = a;
        b->cap = cap;
    }
    b->a[b->n++] = act;
    return 0;
}

static int cmp_key_local(const void *key, const void *elem)
{
    return strcmp(key, ((const struct plan_local *)elem)->uniq);
}

static const struct plan_local *find_local(const struct plan_input *in, const char *uniq)
{
    return in->nlocal ? bsearch(uniq, in->local, in->nlocal, sizeof *in->local, cmp_key_local) : NULL;
}

static bool same_keywords(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* A message both the state and the server know: apply the server's flag
 * delta since the last sync to the local flags. */
static int plan_known(struct builder *b, const struct plan_input *in, const struct plan_state *s,
                      const struct plan_remote *r)
{
    if (s->flags == r->flags && same_keywords(s->keywords, r->keywords))
        return 0;
    struct plan_action act = {.op = PLAN_STATE_FLAGS, .uid = s->uid, .uniq = s->uniq,
                              .state_flags = r->flags, .keywords = r->keywords};
    const struct plan_local *l = find_local(in, s->uniq);
    if (l) {
        unsigned added = r->flags & ~s->flags;
        unsigned removed = s->flags & ~r->flags;
        unsigned want = (l->flags & ~removed) | added;
        act.flags = want;
        if (want != l->flags)
            act.op = PLAN_LOCAL_FLAGS;
    }
    return push(b, act);
}

/* A message the state knows and the server no longer has. */
static int plan_expunged(struct builder *b, const struct plan_input *in, const struct plan_state *s)
{
    const struct plan_local *l = find_local(in, s->uniq);
    /* Backup keeps local mail; its row goes (the row says "on both
     * sides"), a tombstone says why the file is only local. */
    enum plan_op op = !l ? PLAN_FORGET : in->mode == MODE_BACKUP ? PLAN_BACKUP_KEEP : PLAN_LOCAL_DELETE;
    struct plan_action act = {.op = op, .uid = s->uid, .uniq = s->uniq};
    return push(b, act);
}

static int plan_new(struct builder *b, const struct plan_input *in, const struct plan_remote *r)
{
    bool too_big = in->max_size && r->size > in->max_size;
    enum plan_op op = !too_big ? PLAN_FETCH : in->placeholders ? PLAN_PLACEHOLDER : PLAN_SKIP_LARGE;
    struct plan_action act = {.op = op, .uid = r->uid,
                              .flags = r->flags, .state_flags = r->flags, .keywords = r->keywords,
                              .size = r->size};
    return push(b, act);
}

static int op_rank(enum plan_op op)
{
    switch (op) {
    case PLAN_LOCAL_DELETE:
    case PLAN_FORGET:
    case PLAN_BACKUP_KEEP: return 0;
    case PLAN_LOCAL_FLAGS:
    case PLAN_STATE_FLAGS: return 1;
    default: return 2;
    }
}

static int cmp_action(const void *pa, const void *pb)
{
    const struct plan_action *a = pa, *b = pb;
    int ra = op_rank(a->op), rb = op_rank(b->op);
    if (ra != rb)
        return ra - rb;
    return a->uid < b->uid ? -1 : a->uid > b->uid;
}

static void count(struct plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct plan_action *a = &p->actions[i];
        switch (a->op) {
        case PLAN_FETCH:
            p->nfetch++;
            p->fetch_bytes += a->size;
            break;
        case PLAN_SKIP_LARGE: p->nskip++; break;
        case PLAN_PLACEHOLDER: p->nplaceholder++; break;
        case PLAN_LOCAL_FLAGS:
        case PLAN_STATE_FLAGS: p->nflags++; break;
        case PLAN_LOCAL_DELETE: p->ndelete++; break;
        case PLAN_FORGET: p->nforget++; break;
        case PLAN_BACKUP_KEEP: p->nkept++; break;
        }
    }
}

bool plan_guard_trips(size_t ndelete, size_t nremoved, size_t total, int max_delete)
{
    if (ndelete == 0)
        return false;
    if (total >= GUARD_MIN_MESSAGES && (uint64_t)ndelete * 100 > (uint64_t)max_delete * total)
        return true;
    return ndelete >= GUARD_FLOOR_DELETES && nremoved >= total;
}

/* Too many deletions at once looks like an unmounted disk or a server that
 * lists an empty folder by mistake. Both planners ask this one question;
 * on true each drops its whole plan (the folder is left untouched) and
 * keeps only *total, the denominator, to say why. */
static bool guard_trips(const struct plan_input *in, size_t ndelete, size_t nremoved, size_t *total)
{
    *total = in->guard_total ? in->guard_total : in->nstate;
    return !in->force && plan_guard_trips(ndelete, nremoved, *total, in->max_delete);
}

int plan_pull(const struct plan_input *in, struct plan *out)
{
    struct builder b = {0};
    size_t i = 0, j = 0;
    memset(out, 0, sizeof *out);
    while (i < in->nstate || j < in->nremote) {
        const struct plan_state *s = i < in->nstate ? &in->state[i] : NULL;
        const struct plan_remote *r = j < in->nremote ? &in->remote[j] : NULL;
        int rc;
        if (s && r && s->uid == r->uid) {
            rc = plan_known(&b, in, s, r);
            i++, j++;
        } else if (s && (!r || s->uid < r->uid)) {
            rc = plan_expunged(&b, in, s);
            i++;
        } else {
            rc = plan_new(&b, in, r);
            j++;
        }
        if (rc) {
            free(b.a);
            return -1;
        }
    }
    if (b.n)
        qsort(b.a, b.n, sizeof *b.a, cmp_action);
    if (in->newest_first) { /* the fetches are last: reverse them */
        size_t lo = b.n;
        while (lo > 0 && op_rank(b.a[lo - 1].op) == 2)
            lo--;
        for (size_t x = lo, y = b.n; y > x + 1; x++, y--) {
            struct plan_action t = b.a[x];
            b.a[x] = b.a[y - 1];
            b.a[y - 1] = t;
        }
    }
    out->actions = b.a;
    out->n = b.n;
    count(out);
    size_t total, ndelete = out->ndelete;
    if (guard_trips(in, ndelete, ndelete + out->nforget, &total)) {
        plan_free(out);
        *out = (struct plan){.guard_tripped = true, .guard_deletes = ndelete, .guard_total = total};
    }
    return 0;
}

void plan_free(struct plan *p)
{
    free(p->actions);
    memset(p, 0, sizeof *p);
}

/* --- local -> server --- */

static int push_add(struct push_plan *p, size_t *cap, struct push_action act)
{
    if (p->n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        struct push_action *a = realloc(p->actions, c * sizeof *a);
        if (!a)
            return -1;
        p->actions = a;
        *cap = c;
    }
    p->actions[p->n++] = act;
    return 0;
}

static int cmp_push(const void *pa, const void *pb)
{
    const struct push_action *a = pa, *b = pb;
    if (a->op != b->op)
        return (int)a->op - (int)b->op;
    if (a->op == PUSH_APPEND)
        return strcmp(a->uniq, b->uniq);
    return (a->uid > b->uid) - (a->uid < b->uid);
}

int plan_push(const struct plan_input *in, struct push_plan *out)
{
    size_t cap = 0;
    memset(out, 0, sizeof *out);
    /* The local files some state row names; the others are new. */
    bool *known = calloc(in->nlocal ? in->nlocal : 1, sizeof *known);
    if (!known)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < in->nstate && rc == 0; i++) {
        const struct plan_state *s = &in->state[i];
        if (!s->uniq)
            continue;
        const struct plan_local *l = find_local(in, s->uniq);
        if (!l) {
            if (in->mode != MODE_BACKUP)
                rc = push_add(out, &cap, (struct push_action){.op = PUSH_DELETE, .uid = s->uid, .uniq = s->uniq});
            continue;
        }
        known[l - in->local] = true;
        unsigned now = l->flags & FLAG_ALL, was = s->flags & FLAG_ALL;
        if (now == was)
            continue;
        rc = push_add(out, &cap, (struct push_action){.op = PUSH_FLAGS, .uid = s->uid, .uniq = s->uniq,
                                                      .add = now & ~was, .remove = was & ~now,
                                                      .flags = (s->flags & ~FLAG_ALL) | now});
    }
    for (size_t i = 0; i < in->nlocal && rc == 0; i++)
        if (!known[i])
            rc = push_add(out, &cap,
                          (struct push_action){.op = PUSH_APPEND, .uniq = in->local[i].uniq, .flags = in->local[i].flags});
    free(known);
    if (rc) {
        push_plan_free(out);
        return -1;
    }
    if (out->n)
        qsort(out->actions, out->n, sizeof *out->actions, cmp_push);
    for (size_t i = 0; i < out->n; i++) {
        switch (out->actions[i].op) {
        case PUSH_FLAGS: out->nflags++; break;
        case PUSH_DELETE: out->ndelete++; break;
        case PUSH_APPEND: out->nappend++; break;
        }
    }
    size_t total, ndelete = out->ndelete;
    if (guard_trips(in, ndelete, ndelete, &total)) {
        push_plan_free(out);
        *out = (struct push_plan){.guard_tripped = true, .guard_deletes = ndelete, .guard_total = total};
    }
    return 0;
}

void push_plan_free(struct push_plan *p)
{
    free(p->actions);
    memset(p, 0, sizeof *p);
}

/* --- identity matching --- */

struct keyed {
    const struct plan_identity *id;
    uint64_t size; /* the size this entry stands for */
    size_t order;  /* index into the input */
};

static int cmp_keyed(const void *pa, const void *pb)
{
    const struct keyed *a = pa, *b = pb;
    int c = strcmp(a->id->message_id, b->id->message_id);
    if (c)
        return c;
    if (a->size != b->size)
        return a->size < b->size ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static bool has_id(const struct plan_identity *x)
{
    return x->message_id && x->message_id[0];
}

/* The entries that have a Message-ID and are not taken, sorted by
 * (Message-ID, size, input order): with alt, one per alternative size,
 * else one for the size itself. */
static struct keyed *sorted_keys(const struct plan_identity *ids, size_t n, const bool *taken, bool alt,
                                 size_t *nkeyed)
{
    *nkeyed = 0;
    struct keyed *k = malloc((n ? n : 1) * (PLAN_ALT_SIZES + 1) * sizeof *k);
    if (!k)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!has_id(&ids[i]) || taken[i])
            continue;
        if (!alt)
            k[m++] = (struct keyed){&ids[i], ids[i].size, i};
        for (unsigned a = 0; alt && a < ids[i].nalt && a < PLAN_ALT_SIZES; a++)
            k[m++] = (struct keyed){&ids[i], ids[i].alt[a], i};
    }
    qsort(k, m, sizeof *k, cmp_keyed);
    *nkeyed = m;
    return k;
}

static int cmp_key(const struct keyed *a, const struct keyed *b)
{
    int c = strcmp(a->id->message_id, b->id->message_id);
    if (c)
        return c;
    return a->size < b->size ? -1 : a->size > b->size;
}

/* One pass of plan_match: local sizes as they are, or their alts. */
static int match_pass(const struct plan_identity *remote, size_t nremote, bool *rtaken,
                      const struct plan_identity *local, size_t nlocal, bool *ltaken, bool alt, struct plan_match *m,
                      size_t *k)
{
    size_t nr, nl;
    struct keyed *r = sorted_keys(remote, nremote, rtaken, false, &nr);
    struct keyed *l = sorted_keys(local, nlocal, ltaken, alt, &nl);
    if (!r || !l) {
        free(r), free(l);
        return -1;
    }
    size_t i = 0, j = 0;
    while (i < nr && j < nl) {
        if (ltaken[l[j].order]) { /* paired by another of its sizes */
            j++;
            continue;
        }
        int c = cmp_key(&r[i], &l[j]);
        if (c < 0) {
            i++;
        } else if (c > 0) {
            j++;
        } else {
            m[(*k)++] = (struct plan_match){r[i].id->uid, l[j].id->uniq};
            rtaken[r[i].order] = ltaken[l[j].order] = true;
            i++, j++;
        }
    }
    free(r);
    free(l);
    return 0;
}

int plan_match(const struct plan_identity *remote, size_t nremote, const struct plan_identity *local,
               size_t nlocal, struct plan_match **out, size_t *nout)
{
    bool *rtaken = calloc(nremote + 1, sizeof *rtaken), *ltaken = calloc(nlocal + 1, sizeof *ltaken);
    struct plan_match *m = malloc((nremote < nlocal ? nremote : nlocal) * sizeof *m + 1);
    size_t k = 0;
    int rc = rtaken && ltaken && m ? 0 : -1;
    /* The file's own size first: a file that is the server's message byte
     * for byte is never paired by an alt with another copy. */
    if (rc == 0)
        rc = match_pass(remote, nremote, rtaken, local, nlocal, ltaken, false, m, &k);
    if (rc == 0 && k < nremote && k < nlocal)
        rc = match_pass(remote, nremote, rtaken, local, nlocal, ltaken, true, m, &k);
    free(rtaken);
    free(ltaken);
    if (rc) {
        free(m);
        return -1;
    }
    *out = m;
    *nout = k;
    return 0;
}

static int cmp_by_id(const void *pa, const void *pb)
{
    const struct plan_identity *a = *(const struct plan_identity *const *)pa, *b = *(const struct plan_identity *const *)pb;
    return strcmp(a->message_id, b->message_id);
}

/* Pointers to the entries with a Message-ID, sorted by it. */
static const struct plan_identity **by_id(const struct plan_identity *ids, size_t n, size_t *nout)
{
    const struct plan_identity **v = malloc((n ? n : 1) * sizeof *v);
    size_t k = 0;
    for (size_t i = 0; v && i < n; i++)
        if (has_id(&ids[i]))
            v[k++] = &ids[i];
    if (v)
        qsort(v, k, sizeof *v, cmp_by_id);
    *nout = k;
    return v;
}

/* How many entries from v[i] on carry v[i]'s Message-ID. */
static size_t run_of(const struct plan_identity **v, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && strcmp(v[j]->message_id, v[i]->message_id) == 0)
        j++;
    return j - i;
}

static bool same_value(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

int plan_match_loose(const struct plan_identity *remote, size_t nremote, const struct plan_identity *local,
                     size_t nlocal, struct plan_match **out, size_t *nout)
{
    size_t nr, nl, k = 0;
    const struct plan_identity **r = by_id(remote, nremote, &nr), **l = by_id(local, nlocal, &nl);
    struct plan_match *m = malloc((nr < nl ? nr : nl) * sizeof *m + 1);
    if (!r || !l || !m) {
        free(r), free(l), free(m);
        return -1;
    }
    size_t i = 0, j = 0;
    while (i < nr && j < nl) {
        int c = strcmp(r[i]->message_id, l[j]->message_id);
        size_t ri = run_of(r, nr, i), lj = run_of(l, nl, j);
        if (c < 0) {
            i += ri;
        } else if (c > 0) {
            j += lj;
        } else {
            if (ri == 1 && lj == 1 && same_value(r[i]->date, l[j]->date) && same_value(r[i]->from, l[j]->from))
                m[k++] = (struct plan_match){r[i]->uid, l[j]->uniq};
            i += ri, j += lj;
        }
    }
    free(r);
    free(l);
    *out = m;
    *nout = k;
    return 0;
}
