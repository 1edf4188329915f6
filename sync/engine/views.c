/* SPDX-License-Identifier: MIT */
/*
 * views.c: the three views of a folder (state rows, local scan, server
 * listing) as the planner takes them, and the scan looked up by unique
 * name: what pull, push, the delivery, rematch and status share; and a
 * push's view of a folder, its changes without its unchanged messages.
 */
#include "sync/engine/engine_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sync/local/maildir.h"
#include "sync/plan/plan.h"
#include "sync/util.h"

static int cmp_key_local(const void *key, const void *elem)
{
    return strcmp(key, ((const struct local_msg *)elem)->uniq);
}

struct local_msg *views_local_by_uniq(struct local_msg *l, size_t n, const char *uniq)
{
    return n ? bsearch(uniq, l, n, sizeof *l, cmp_key_local) : NULL;
}

void views_plan_input(struct plan_input *in, const struct account *a, const struct engine_options *opt,
                      const struct state_msg *s, size_t ns, const struct local_msg *l, size_t nl,
                      const struct remote_msg *rm, size_t nr)
{
    struct plan_state *ps = xcalloc(ns, sizeof *ps);
    struct plan_local *pl = xcalloc(nl, sizeof *pl);
    struct plan_remote *pr = xcalloc(nr, sizeof *pr);
    for (size_t i = 0; i < ns; i++)
        ps[i] = (struct plan_state){s[i].uid, s[i].uniq, s[i].flags, s[i].keywords};
    for (size_t i = 0; i < nl; i++)
        pl[i] = (struct plan_local){l[i].uniq, l[i].flags};
    for (size_t i = 0; i < nr; i++)
        pr[i] = (struct plan_remote){rm[i].uid, rm[i].flags, rm[i].keywords, rm[i].size};
    *in = (struct plan_input){.state = ps, .nstate = ns, .local = pl, .nlocal = nl, .remote = pr,
                              .nremote = nr, .mode = a->mode, .max_size = a->max_size,
                              .placeholders = a->placeholders, .newest_first = false,
                              .max_delete = a->max_delete, .force = opt->force};
}

void views_plan_input_free(struct plan_input *in)
{
    free((void *)in->state);
    free((void *)in->local);
    free((void *)in->remote);
    memset(in, 0, sizeof *in);
}

/* ------------------------------------------------------------------ */
/* a push's view: the changes, not the folder */

/* The rows' first pass: each into the set; the guard's count. */
struct row_pass {
    struct pushdiff *d;
    size_t nall;
    const uint32_t *needed; /* second pass: the rows to keep, ascending */
    size_t nneeded;
    const struct views_push_want *want; /* ... and these (a row without a name is not in d) */
};

static bool add_row(void *ctx, const struct state_msg *row)
{
    struct row_pass *p = ctx;
    pushdiff_add_row(p->d, row->uid, row->uniq, row->flags);
    p->nall++;
    return false;
}

static bool needed_row(void *ctx, const struct state_msg *row)
{
    const struct row_pass *p = ctx;
    if (util_uid_find(p->needed, p->nneeded, row->uid))
        return true;
    for (size_t i = 0; i < p->want->nuids; i++) /* few */
        if (p->want->uids[i] == row->uid)
            return true;
    return false;
}

static void filter_restart(void *ctx)
{
    pushdiff_restart(ctx);
}

static bool filter_keep(void *ctx, const struct local_msg *m)
{
    return pushdiff_keep_file(ctx, m->uniq, m->flags);
}

/* The second pass: the rows p->needed and p->want->uids name, in UID
 * order. Few of a big folder's (the usual push: a few changes): looked up
 * one by one (an index lookup each); else the rows read again, filtered. */
static int needed_rows(struct state *st, int64_t folder_id, const struct row_pass *p, struct state_msg **rows,
                       size_t *nrows, struct ms_error *err)
{
    size_t k = p->nneeded + p->want->nuids;
    if (k > p->nall / 16)
        return state_msg_list_brief_if(st, folder_id, needed_row, (void *)p, rows, nrows, err);
    uint32_t *uids = xmalloc((k ? k : 1) * sizeof *uids);
    if (p->nneeded)
        memcpy(uids, p->needed, p->nneeded * sizeof *uids);
    if (p->want->nuids)
        memcpy(uids + p->nneeded, p->want->uids, p->want->nuids * sizeof *uids);
    qsort(uids, k, sizeof *uids, util_cmp_u32); /* state_msg_get_uids_brief skips repeats */
    int rc = state_msg_get_uids_brief(st, folder_id, uids, k, rows, nrows, err);
    free(uids);
    return rc;
}

/* The whole folder, as before the set (and where it cannot tell names
 * apart). */
static int push_scan_whole(struct state *st, int64_t folder_id, struct maildir_folder *mf, struct views_push *out,
                           struct ms_error *err)
{
    int rc = maildir_scan_names(mf, &out->local, &out->nlocal, err);
    if (rc == MS_OK)
        rc = state_msg_list_brief(st, folder_id, &out->rows, &out->nrows, err);
    out->nall = out->nrows;
    return rc;
}

int views_push_scan(struct state *st, int64_t folder_id, struct maildir_folder *mf, const struct views_push_want *want,
                    struct views_push *out, struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    uint8_t key[16];
    if (getrandom(key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        /* no entropy yet (early boot): a weaker key, still not fixed */
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        uint64_t a = (uint64_t)t.tv_nsec ^ ((uint64_t)getpid() << 32), b = (uint64_t)t.tv_sec ^ (uintptr_t)out;
        memcpy(key, &a, 8);
        memcpy(key + 8, &b, 8);
    }
    struct row_pass p = {.d = pushdiff_new(key), .nall = 0, .needed = NULL, .nneeded = 0, .want = want};
    struct state_msg *none = NULL;
    size_t nnone = 0, count = 0;
    struct ms_error e;
    if (state_msg_count(st, folder_id, &count, &e) == MS_OK)
        pushdiff_reserve(p.d, count);
    int rc = state_msg_list_brief_if(st, folder_id, add_row, &p, &none, &nnone, err);
    state_msgs_free(none, nnone);
    if (rc != MS_OK)
        goto fail;
    if (!pushdiff_seal(p.d))
        goto whole;
    for (size_t i = 0; i < want->nuids; i++)
        pushdiff_want_uid(p.d, want->uids[i]);
    for (size_t i = 0; i < want->nuniqs; i++)
        pushdiff_want_uniq(p.d, want->uniqs[i]);
    struct maildir_filter flt = {.restart = filter_restart, .keep = filter_keep, .ctx = p.d};
    if ((rc = maildir_scan_names_filtered(mf, &flt, &out->local, &out->nlocal, err)) != MS_OK)
        goto fail;
    if (pushdiff_ambiguous(p.d)) {
        maildir_msgs_free(out->local, out->nlocal);
        out->local = NULL;
        out->nlocal = 0;
        goto whole;
    }
    uint32_t *needed = NULL;
    p.nneeded = pushdiff_needed(p.d, &needed);
    p.needed = needed;
    if (p.nneeded || want->nuids)
        rc = needed_rows(st, folder_id, &p, &out->rows, &out->nrows, err);
    free(needed);
    if (rc != MS_OK)
        goto fail;
    out->nall = p.nall;
    out->diff = p.d;
    return MS_OK;
whole:
    pushdiff_free(&p.d);
    if ((rc = push_scan_whole(st, folder_id, mf, out, err)) == MS_OK)
        return MS_OK;
fail:
    pushdiff_free(&p.d);
    views_push_free(out);
    return rc;
}

/* The second read's rows: those v had, those added since its scan, and
 * those of its files' names. */
struct again {
    const struct views_push *v;
    size_t nall;
};

static bool row_again(void *ctx, const struct state_msg *row)
{
    struct again *a = ctx;
    const struct views_push *v = a->v;
    a->nall++;
    return !pushdiff_has_uid(v->diff, row->uid) || UTIL_FIND_UID(v->rows, v->nrows, uid, row->uid) ||
           (row->uniq && views_local_by_uniq(v->local, v->nlocal, row->uniq));
}

int views_push_rows_again(struct state *st, int64_t folder_id, struct views_push *v, struct ms_error *err)
{
    struct state_msg *rows = NULL;
    size_t n = 0;
    int rc;
    struct again a = {.v = v, .nall = 0};
    if (!v->diff)
        rc = state_msg_list_brief(st, folder_id, &rows, &n, err), a.nall = n;
    else
        rc = state_msg_list_brief_if(st, folder_id, row_again, &a, &rows, &n, err);
    if (rc != MS_OK)
        return rc;
    state_msgs_free(v->rows, v->nrows);
    v->rows = rows;
    v->nrows = n;
    v->nall = a.nall;
    return MS_OK;
}

void views_push_free(struct views_push *v)
{
    state_msgs_free(v->rows, v->nrows);
    maildir_msgs_free(v->local, v->nlocal);
    pushdiff_free(&v->diff);
    memset(v, 0, sizeof *v);
}

struct kept_push {
    int64_t folder_id;
    struct maildir_stamp stamp;
    uint64_t gen;
    struct views_push v;
};

void views_push_keep(struct run *r, int64_t folder_id, const struct maildir_stamp *stamp, struct views_push *v)
{
    if (!stamp->settled || !v->diff) {
        /* a change may have come in the same clock tick as the scan (or
         * the scan took the folder whole): not worth keeping */
        views_push_free(v);
        return;
    }
    size_t i = 0;
    while (i < r->nkept && r->kept[i].folder_id != folder_id)
        i++;
    if (i < r->nkept)
        views_push_free(&r->kept[i].v); /* an older one of the folder: replaced */
    else
        r->kept = xrealloc(r->kept, ++r->nkept * sizeof *r->kept);
    r->kept[i] = (struct kept_push){.folder_id = folder_id, .stamp = *stamp,
                                    .gen = state_rows_gen(r->st, folder_id), .v = *v};
    memset(v, 0, sizeof *v);
}

bool views_push_take(struct run *r, int64_t folder_id, const struct maildir_stamp *now, struct views_push *out)
{
    for (size_t i = 0; i < r->nkept; i++) {
        struct kept_push *k = &r->kept[i];
        if (k->folder_id != folder_id)
            continue;
        bool same = now && now->cur_ns == k->stamp.cur_ns && now->new_ns == k->stamp.new_ns &&
                    state_rows_gen(r->st, folder_id) == k->gen;
        if (same)
            *out = k->v;
        else
            views_push_free(&k->v);
        r->kept[i] = r->kept[--r->nkept];
        return same;
    }
    return false;
}

void views_push_kept_free(struct run *r)
{
    for (size_t i = 0; i < r->nkept; i++)
        views_push_free(&r->kept[i].v);
    free(r->kept);
    r->kept = NULL;
    r->nkept = 0;
}
