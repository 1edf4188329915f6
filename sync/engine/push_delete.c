/* SPDX-License-Identifier: MIT */
/*
 * push_delete.c: a push's deletions, local -> server (see push.c for the
 * rest of a folder's push).
 *
 * In an order that keeps the contract's guarantees whatever point a run
 * dies at:
 *   - deletions: the server removes the messages (UID MOVE to `trash`, or
 *     \Deleted + UID EXPUNGE of exactly those UIDs), then the rows are
 *     forgotten. Replayed after a crash they touch UIDs that are gone: a
 *     no-op. With `expunge = no` the messages keep \Deleted on the server
 *     and their rows stay, recording \Deleted, so no pull fetches them back.
 *     Without MOVE a move to `trash` is UID COPY, then \Deleted and UID
 *     EXPUNGE: each message is journalled (committed) before the COPY, so
 *     a run that died after it is known. The next run first looks for the
 *     copy in the trash (by the COPYUID's UID, else by size and Message-ID
 *     from the trash's journalled UIDNEXT on) and, if it is there (or the
 *     message is gone from the source), only flags and expunges: however
 *     often a run dies, the trash gets one copy.
 */
#include "sync/engine/push_int.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "db/state.h"
#include "sync/flags.h"
#include "sync/log.h"
#include "sync/util.h"

/* ------------------------------------------------------------------ */
/* moving to the trash without MOVE */

/* Journal rows (by uid), and which of their messages the source holds
 * (other: a message of another identity under that UID, e.g. after a
 * UIDVALIDITY change: the row is stale). */
struct trash_rows {
    struct state_trash *v;
    size_t n;
    bool *present, *other;
};

/* The source holds uid: its row is marked present and takes the
 * message's identity (the same for a row journalled before). */
static void on_source_identity(void *ctx, uint32_t uid, uint64_t size, const char *message_id)
{
    struct trash_rows *t = ctx;
    struct state_trash *x = UTIL_FIND_UID(t->v, t->n, uid, uid);
    if (!x)
        return;
    t->present[x - t->v] = true;
    x->size = size;
    free(x->message_id);
    x->message_id = message_id ? xstrdup(message_id) : NULL;
}

/* As on_source_identity, for rows journalled before: their identity is
 * kept, and compared. */
static void on_journalled_identity(void *ctx, uint32_t uid, uint64_t size, const char *message_id)
{
    struct trash_rows *t = ctx;
    struct state_trash *x = UTIL_FIND_UID(t->v, t->n, uid, uid);
    if (!x)
        return;
    t->present[x - t->v] = true;
    t->other[x - t->v] = x->size != size || !push_same_id(x->message_id, message_id);
}

/* Whether the row's copy would be in dest as the trash is now. */
static bool copy_may_be_in(const struct state_trash *t, const char *dest, uint32_t uidvalidity)
{
    return t->trash && strcmp(t->trash, dest) == 0 && t->trash_uidvalidity == uidvalidity;
}

int push_find_copies(struct run *r, const char *dest, const struct state_trash *rows, size_t n, const bool *want,
                     bool *found, struct copy_found *got, struct ms_error *err)
{
    struct remote_box mb;
    struct ms_error e;
    int rc = r->remote->ops->select(r->remote, dest, false, &mb, &e);
    if (rc == MS_EPARTIAL)
        return MS_OK; /* no trash folder (any more): nothing is there */
    if (rc != MS_OK) {
        *err = e;
        return rc;
    }
    uint32_t from = 0;
    for (size_t i = 0; i < n; i++)
        if (want[i] && copy_may_be_in(&rows[i], dest, mb.uidvalidity) && (from == 0 || rows[i].trash_uidnext < from))
            from = rows[i].trash_uidnext ? rows[i].trash_uidnext : 1;
    if (from == 0)
        return MS_OK;
    struct remote_msg *m = NULL;
    size_t nm = 0;
    struct candidates cand = {0};
    rc = r->remote->ops->fetch_meta_range(r->remote, from, 0, &m, &nm, err);
    if (rc == MS_OK && nm) {
        uint32_t *uids = xcalloc(nm, sizeof *uids);
        cand.v = xcalloc(nm, sizeof *cand.v);
        for (size_t i = 0; i < nm; i++)
            if (m[i].uid >= from) {
                cand.v[cand.n] = (struct candidate){m[i].uid, m[i].flags, m[i].keywords, m[i].size, NULL, false};
                m[i].keywords = NULL;
                uids[cand.n++] = m[i].uid;
            }
        if (cand.n)
            rc = r->remote->ops->fetch_identity(r->remote, uids, cand.n, push_on_identity, &cand, err);
        free(uids);
    }
    /* Rows with a known copy UID first: a search must not take theirs. */
    for (int pass = 0; pass < 2 && rc == MS_OK; pass++)
        for (size_t i = 0; i < n; i++) {
            const struct state_trash *t = &rows[i];
            if (!want[i] || found[i] || (pass == 0) != (t->copy_uid != 0) || !copy_may_be_in(t, dest, mb.uidvalidity))
                continue;
            for (size_t k = 0; k < cand.n && !found[i]; k++) {
                struct candidate *x = &cand.v[k];
                if (x->taken || x->size != t->size || !push_same_id(x->message_id, t->message_id) ||
                    (t->copy_uid ? x->uid != t->copy_uid : x->uid < t->trash_uidnext))
                    continue;
                x->taken = found[i] = true;
                if (got) {
                    got[i].uid = x->uid;
                    got[i].flags = x->flags;
                    got[i].keywords = x->keywords;
                    x->keywords = NULL;
                }
            }
        }
    for (size_t k = 0; k < cand.n; k++) {
        free(cand.v[k].message_id);
        free(cand.v[k].keywords);
    }
    free(cand.v);
    remote_msgs_free(m, nm);
    return rc;
}

/* Whether the folder has rows in the trash journal (on error: yes, the
 * journalled way reports it). */
static bool trash_journalled(struct push_ctx *c)
{
    struct state_trash *t = NULL;
    size_t n = 0;
    struct ms_error e;
    bool yes = state_trash_list(c->r->st, c->sf->id, &t, &n, &e) != MS_OK || n > 0;
    state_trashes_free(t, n);
    return yes;
}

/* The first half of RFC 6851's MOVE without MOVE, journalled: when it
 * returns MS_OK each of uids (sorted) either has one copy in the trash
 * folder or is gone from the source, and the source is selected again;
 * the caller flags and expunges them and forgets their journal rows with
 * their own. A run that died after a COPY left journal rows: a message
 * whose copy the trash holds (or that the source no longer holds: its
 * expunge went through) is not copied again. Every other message is
 * journalled (committed) before its COPY, with the trash's UIDNEXT, then
 * the COPYUID answer records its copy's UID. */
static int copy_to_trash(struct push_ctx *c, const uint32_t *uids, size_t n, struct ms_error *err)
{
    struct run *r = c->r;
    const char *dest = r->trash;
    struct trash_rows j = {0};
    bool *done = xcalloc(n + 1, sizeof *done);
    bool *want = NULL, *found = NULL;
    uint32_t *todo = xcalloc(n + 1, sizeof *todo), *copies = NULL;
    size_t ntodo = 0, settled = 0, nagain = 0;
    struct trash_rows ids = {0};
    int rc = state_trash_list(r->st, c->sf->id, &j.v, &j.n, err);
    if (rc == MS_OK && j.n) {
        /* 1. the journal of a run that died: which of its messages the
         * source still holds, and which of those the trash has a copy of */
        uint32_t *juids = xcalloc(j.n, sizeof *juids);
        for (size_t i = 0; i < j.n; i++)
            juids[i] = j.v[i].uid;
        j.present = xcalloc(j.n, sizeof *j.present);
        j.other = xcalloc(j.n, sizeof *j.other);
        rc = r->remote->ops->fetch_identity(r->remote, juids, j.n, on_journalled_identity, &j, err);
        free(juids);
        want = xcalloc(j.n, sizeof *want);
        found = xcalloc(j.n, sizeof *found);
        bool look = false;
        for (size_t i = 0; i < j.n; i++)
            look |= want[i] = j.present[i] && !j.other[i] && util_uid_find(uids, n, j.v[i].uid);
        if (rc == MS_OK && look) {
            struct remote_box mb;
            rc = push_find_copies(r, dest, j.v, j.n, want, found, NULL, err);
            if (rc == MS_OK)
                rc = r->remote->ops->select(r->remote, c->sel->raw, true, &mb, err);
            if (rc == MS_OK && mb.uidvalidity != c->uidvalidity)
                rc = ms_error_set(err, MS_EPARTIAL, "%s: UIDVALIDITY changed on the server during the push",
                                  c->sel->name);
        }
        /* Rows of messages no longer deleted (nor gone) are dropped: the
         * next deletion journals them anew. In the run's batch: lost, the
         * same is done again. */
        if (rc == MS_OK)
            rc = state_batch(r->st, err);
        for (size_t i = 0; rc == MS_OK && i < j.n; i++) {
            struct state_trash *t = &j.v[i];
            const uint32_t *at = util_uid_find(uids, n, t->uid);
            if (at && (!j.present[i] || found[i])) {
                done[at - uids] = true;
                settled++;
            } else if (at) {
                todo[nagain++] = t->uid; /* copied again below */
            } else if (!t->trash || strcmp(t->trash, dest) == 0) {
                /* (a row of a move to another folder, moves_local.c, is
                 * that move's to settle) */
                rc = state_trash_forget(r->st, c->sf->id, t->uid, err);
            }
        }
        /* The run may have flagged it \Deleted before the copy was lost
         * from the trash: a new copy must not carry that flag along. */
        if (rc == MS_OK && nagain)
            rc = r->remote->ops->store_flags(r->remote, todo, nagain, FLAG_DELETED, false, err);
        if (rc == MS_OK)
            log_msg(LOG_VERBOSE, "%s: %zu of %zu messages an interrupted run was moving to %s need no new copy",
                    c->sel->name, settled, j.n, dest);
    }
    /* 2. journal the others (committed), with what finds their copies */
    for (size_t i = 0; i < n; i++)
        if (!done[i])
            todo[ntodo++] = uids[i];
    struct remote_status ts = {0};
    if (rc == MS_OK && ntodo) {
        ids.v = xcalloc(ntodo, sizeof *ids.v);
        for (size_t i = 0; i < ntodo; i++)
            ids.v[i].uid = todo[i];
        ids.n = ntodo;
        ids.present = xcalloc(ntodo, sizeof *ids.present);
        rc = r->remote->ops->fetch_identity(r->remote, todo, ntodo, on_source_identity, &ids, err);
    }
    if (rc == MS_OK && ntodo)
        rc = r->remote->ops->status(r->remote, dest, &ts, err);
    if (rc == MS_OK && ntodo) {
        size_t k = 0;
        rc = state_begin(r->st, err);
        for (size_t i = 0; rc == MS_OK && i < ntodo; i++) {
            if (!ids.present[i])
                continue; /* gone from the source already: nothing to copy */
            struct state_trash *t = &ids.v[i];
            t->trash = (char *)dest;
            t->trash_uidvalidity = ts.uidvalidity;
            t->trash_uidnext = ts.uidnext;
            rc = state_trash_put(r->st, c->sf->id, t, err);
            t->trash = NULL;
            todo[k++] = t->uid;
        }
        if (rc == MS_OK)
            rc = state_commit(r->st, err);
        else
            state_rollback(r->st);
        ntodo = k;
    }
    /* 3. copy, and record where the copies are */
    if (rc == MS_OK && ntodo) {
        uint32_t uv = 0;
        copies = xcalloc(ntodo, sizeof *copies);
        rc = r->remote->ops->copy(r->remote, todo, ntodo, dest, copies, &uv, err);
        bool any = false;
        for (size_t i = 0; i < ntodo; i++)
            any |= copies[i] != 0;
        if (rc == MS_OK && any && uv == ts.uidvalidity) {
            rc = state_begin(r->st, err);
            for (size_t i = 0; rc == MS_OK && i < ntodo; i++)
                if (copies[i])
                    rc = state_trash_set_copy(r->st, c->sf->id, todo[i], copies[i], err);
            if (rc == MS_OK)
                rc = state_commit(r->st, err);
            else
                state_rollback(r->st);
        }
    }
    for (size_t i = 0; i < ids.n; i++)
        free(ids.v[i].message_id);
    free(ids.v);
    free(ids.present);
    free(copies);
    free(todo);
    free(want);
    free(found);
    free(done);
    free(j.present);
    free(j.other);
    state_trashes_free(j.v, j.n);
    return rc;
}

/* ------------------------------------------------------------------ */
/* deletions */

int push_deletions(struct push_ctx *c, const struct push_plan *p, struct ms_error *err)
{
    struct run *r = c->r;
    const struct account *a = r->acct;
    uint32_t *uids = xcalloc(p->n + 1, sizeof *uids);
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->actions[i].op == PUSH_DELETE)
            uids[n++] = p->actions[i].uid;
    int rc = MS_OK;
    bool to_trash = r->trash && *r->trash && !folders_is_trash(r, c->sel);
    bool keep_rows = false;
    if (n == 0)
        goto out;
    if (r->trash_missing) {
        /* trash = auto found no \Trash: expunging would lose what the user
         * wanted kept there. The rows stay; the next run tries again. */
        rc = ms_error_set(err, MS_EPARTIAL,
                          "%s: %zu messages deleted locally are not deleted on the server: trash = auto, but the "
                          "server marks no folder as \\Trash (set trash = NAME)",
                          c->sel->name, n);
        goto out;
    }
    if (to_trash && !remote_can(r->remote, REMOTE_MOVE) && !remote_can(r->remote, REMOTE_EXACT)) {
        log_msg(LOG_WARN, "%s: the server has neither MOVE nor UIDPLUS: %zu messages deleted locally are flagged "
                          "\\Deleted instead of moved to %s",
                c->sel->name, n, r->trash);
        to_trash = false;
    }
    /* UID MOVE is atomic: nothing to journal. But a message an interrupted
     * run was moving without MOVE (the server offers it since) may have
     * its copy in the trash already: it is finished the journalled way. */
    bool move = to_trash && remote_can(r->remote, REMOTE_MOVE) &&
                !(remote_can(r->remote, REMOTE_EXACT) && trash_journalled(c));
    if (move) {
        rc = r->remote->ops->move(r->remote, uids, n, r->trash, err);
    } else if (to_trash) {
        /* RFC 6851's fallback, journalled (copy_to_trash), then the exact
         * removal of only these (REMOTE_EXACT: \Deleted + UID EXPUNGE) */
        rc = copy_to_trash(c, uids, n, err);
        if (rc == MS_OK)
            rc = r->remote->ops->remove(r->remote, uids, n, err);
    } else if (a->expunge && remote_can(r->remote, REMOTE_EXACT)) {
        rc = r->remote->ops->remove(r->remote, uids, n, err);
    } else {
        rc = r->remote->ops->store_flags(r->remote, uids, n, FLAG_DELETED, true, err);
        if (rc == MS_OK) {
            if (a->expunge)
                log_msg(LOG_WARN, "%s: the server has no UIDPLUS: %zu messages deleted locally are only flagged "
                                  "\\Deleted on the server (a plain EXPUNGE could remove others' too)",
                        c->sel->name, n);
            keep_rows = true;
        }
    }
    if (rc)
        goto out;
    if (to_trash)
        r->trash_changed = true;
    rc = state_batch(r->st, err);
    for (size_t i = 0; rc == MS_OK && i < n; i++) {
        if (!keep_rows) {
            rc = state_msg_delete(r->st, c->sf->id, uids[i], err);
            if (rc == MS_OK)
                rc = state_trash_forget(r->st, c->sf->id, uids[i], err);
            continue;
        }
        const struct state_msg *s = push_state_row(c, uids[i]);
        if (s)
            rc = state_msg_set_flags(r->st, c->sf->id, s->uid, s->flags | FLAG_DELETED, s->keywords, err);
    }
    /* The records wait in the run's batch (one commit for all folders):
     * lost in a crash, the next run removes the same UIDs again, which
     * finds nothing to do. */
    if (rc != MS_OK)
        state_batch_abort(r->st);
    else
        c->fres->pushed_deleted += n;
out:
    free(uids);
    return rc;
}
