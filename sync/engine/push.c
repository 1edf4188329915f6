/* SPDX-License-Identifier: MIT */
/*
 * push.c: one folder, local -> server (the first half of `sync`, all of
 * `push`).
 *
 * The planner (plan_push) compares the Maildir with the state; this file
 * carries the plan out on the selected folder, in an order that keeps the
 * contract's guarantees whatever point a run dies at:
 *   - deletions: see push_delete.c (the server removes the messages,
 *     then their rows are forgotten; a move to `trash` without MOVE is
 *     journalled).
 *   - flag changes: UID STORE +FLAGS.SILENT / -FLAGS.SILENT of the local
 *     delta (never the whole flag list: a change the server got meanwhile
 *     from elsewhere is kept), then the rows record the new flags.
 *     Replaying a STORE is harmless.
 *   - uploads: each one is journalled (committed) before its APPEND and
 *     the journal row is replaced by the message's row once the server
 *     gave its UID (APPENDUID). A journal row found by a later run means
 *     the run died in between: the server's messages from the journalled
 *     UIDNEXT on are compared with it (size, Message-ID) and a match is
 *     recorded instead of uploading again. So a crash never doubles a
 *     message on the server; at worst the upload is redone when the first
 *     one never arrived. A server without UIDPLUS gives no APPENDUID: the
 *     same search records the uploads right after them.
 * No upload of a file a policy took off the server (tombstones.c).
 * A folder that has never completed a pull is not pushed: its local files
 * are matched with the server's by the pull first (otherwise the first
 * `sync` of a Maildir that another tool filled would upload it all again).
 */
#include "sync/engine/push_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sync/engine/dryrun.h"
#include "sync/flags.h"
#include "sync/engine/journal.h"
#include "sync/log.h"
#include "sync/message.h"
#include "sync/util.h"

/* Uploads journalled per transaction. */
#define APPEND_CHUNK 64

/* ------------------------------------------------------------------ */
/* finding uploads that arrived without a recorded UID */

/* The journal's uploads of the selected folder (UIDVALIDITY uidvalidity):
 * each one the server holds (a UID from its UIDNEXT on, that the state
 * does not know, of the same size and Message-ID) is recorded; the others
 * are forgotten (their files are still unknown, so they are uploaded
 * again). */
int push_settle_uploads(struct run *r, const struct selected *sel, int64_t folder_id, uint32_t uidvalidity,
                   struct ms_error *err)
{
    struct state_append *j = NULL;
    size_t nj = 0;
    int rc = state_append_list(r->st, folder_id, &j, &nj, err);
    if (rc || nj == 0) {
        state_appends_free(j, nj);
        return rc;
    }
    uint32_t from = 0;
    for (size_t i = 0; i < nj; i++)
        if (j[i].uidvalidity == uidvalidity && (from == 0 || j[i].uidnext < from))
            from = j[i].uidnext ? j[i].uidnext : 1;
    struct remote_msg *m = NULL;
    size_t nm = 0;
    struct candidates cand = {0};
    if (from)
        rc = r->remote->ops->fetch_meta_range(r->remote, from, 0, &m, &nm, err);
    if (rc == MS_OK && nm) {
        /* the UIDs the state already knows are not candidates */
        uint32_t *uids = xcalloc(nm, sizeof *uids);
        struct state_msg *known = NULL;
        size_t nu = 0, nknown = 0;
        for (size_t i = 0; i < nm; i++)
            if (m[i].uid >= from)
                uids[nu++] = m[i].uid;
        rc = state_msg_get_uids(r->st, folder_id, uids, nu, &known, &nknown, err);
        cand.v = xcalloc(nm, sizeof *cand.v);
        nu = 0;
        for (size_t i = 0, k = 0; rc == MS_OK && i < nm; i++) {
            while (k < nknown && known[k].uid < m[i].uid)
                k++;
            if (m[i].uid < from || (k < nknown && known[k].uid == m[i].uid))
                continue;
            cand.v[cand.n++] = (struct candidate){m[i].uid, m[i].flags, m[i].keywords, m[i].size, NULL, false};
            m[i].keywords = NULL;
            uids[nu++] = m[i].uid;
        }
        state_msgs_free(known, nknown);
        if (rc == MS_OK && nu)
            rc = r->remote->ops->fetch_identity(r->remote, uids, nu, push_on_identity, &cand, err);
        free(uids);
    }
    size_t found = 0;
    if (rc == MS_OK)
        rc = state_begin(r->st, err);
    for (size_t i = 0; rc == MS_OK && i < nj; i++) {
        struct candidate *hit = NULL;
        for (size_t k = 0; !hit && k < cand.n && j[i].uidvalidity == uidvalidity; k++) {
            struct candidate *x = &cand.v[k];
            if (!x->taken && x->uid >= j[i].uidnext && x->size == j[i].size &&
                push_same_id(x->message_id, j[i].message_id))
                hit = x;
        }
        if (hit) {
            hit->taken = true;
            struct state_msg row = {.uid = hit->uid, .uniq = j[i].uniq, .flags = hit->flags,
                                    .keywords = hit->keywords, .size = hit->size, .message_id = hit->message_id};
            rc = state_msg_put(r->st, folder_id, &row, err);
            found++;
        }
        if (rc == MS_OK)
            rc = state_append_forget(r->st, folder_id, j[i].uniq, err);
    }
    if (rc == MS_OK)
        rc = state_commit(r->st, err);
    else
        state_rollback(r->st);
    if (rc == MS_OK)
        log_msg(LOG_VERBOSE, "%s: %zu of %zu unrecorded uploads found on the server and recorded", sel->name, found,
                nj);
    for (size_t k = 0; k < cand.n; k++) {
        free(cand.v[k].keywords);
        free(cand.v[k].message_id);
    }
    free(cand.v);
    remote_msgs_free(m, nm);
    state_appends_free(j, nj);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the three kinds of change */

static int push_flags(struct push_ctx *c, const struct push_plan *p, struct ms_error *err)
{
    struct run *r = c->r;
    /* Journalled (committed, with whatever the run's batch holds) before
     * the first STORE: see state_store_put. */
    int rc = state_batch(r->st, err);
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        const struct push_action *x = &p->actions[i];
        if (x->op != PUSH_FLAGS)
            continue;
        struct state_store j = {.uid = x->uid, .uidvalidity = c->uidvalidity, .flags = x->flags, .added = x->add,
                                .removed = x->remove};
        rc = state_store_put(r->st, c->sf->id, &j, err);
    }
    if (rc == MS_OK)
        rc = state_batch_commit(r->st, err);
    else
        state_batch_abort(r->st);
    if (rc)
        return rc;
    uint32_t *uids = xcalloc(p->n + 1, sizeof *uids);
    /* One STORE per distinct delta (e.g. all "+\Seen" at once). */
    for (int pass = 0; pass < 2 && rc == MS_OK; pass++) {
        unsigned done_masks[64] = {0};
        size_t ndone = 0;
        for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
            const struct push_action *x = &p->actions[i];
            unsigned mask = pass == 0 ? x->add : x->remove;
            if (x->op != PUSH_FLAGS || !mask)
                continue;
            bool seen = false;
            for (size_t k = 0; k < ndone && !seen; k++)
                seen = done_masks[k] == mask;
            if (seen)
                continue;
            done_masks[ndone++] = mask;
            size_t n = 0;
            for (size_t k = i; k < p->n; k++) {
                const struct push_action *y = &p->actions[k];
                if (y->op == PUSH_FLAGS && (pass == 0 ? y->add : y->remove) == mask)
                    uids[n++] = y->uid;
            }
            rc = r->remote->ops->store_flags(r->remote, uids, n, mask, pass == 0, err);
        }
    }
    free(uids);
    if (rc)
        return rc;
    rc = state_batch(r->st, err);
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        const struct push_action *x = &p->actions[i];
        if (x->op != PUSH_FLAGS)
            continue;
        const struct state_msg *row = push_state_row(c, x->uid);
        rc = state_msg_set_flags(r->st, c->sf->id, x->uid, x->flags, row ? row->keywords : NULL, err);
        if (rc == MS_OK)
            rc = state_store_forget(r->st, c->sf->id, x->uid, err);
        if (rc == MS_OK)
            c->fres->pushed_flags++;
    }
    /* In the run's batch, as the deletions: a lost record leaves the
     * journal rows, and the next push stores the same again (a no-op)
     * before it compares anything (push_replay_stores). */
    if (rc != MS_OK)
        state_batch_abort(r->st);
    return rc;
}

/* One upload: the file, and what its journal row says (CRLF size,
 * Message-ID), which its record repeats. */
struct upload {
    struct local_msg *l;
    uint64_t size;
    char *message_id;
    bool journalled;
};

static int push_appends(struct push_ctx *c, const struct push_plan *p, struct ms_error *err)
{
    struct run *r = c->r;
    const struct engine_progress *prog = r->opt->progress;
    struct upload *todo = xcalloc(p->nappend + 1, sizeof *todo);
    size_t ntodo = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct push_action *a = &p->actions[i];
        struct local_msg *l = a->op == PUSH_APPEND ? views_local_by_uniq(c->local, c->nlocal, a->uniq) : NULL;
        if (l)
            todo[ntodo++].l = l;
    }
    if (ntodo && prog && prog->upload_start)
        prog->upload_start(prog->ctx, r->acct->name, c->sel->name, ntodo);
    int rc = MS_OK;
    bool unrecorded = false;
    time_t cutoff = retention_cutoff(r->acct);
    for (size_t at = 0; at < ntodo && rc == MS_OK; at += APPEND_CHUNK) {
        size_t end = at + APPEND_CHUNK < ntodo ? at + APPEND_CHUNK : ntodo;
        if (run_stopped(r)) {
            rc = ms_error_set(err, MS_EPARTIAL, "stopped by a signal after %zu of %zu uploads; the rest goes at the "
                              "next run", at, ntodo);
            break;
        }
        /* 1. journal the chunk (durable before any APPEND of it) */
        rc = state_begin(r->st, err);
        for (size_t i = at; i < end && rc == MS_OK; i++) {
            struct upload *u = &todo[i];
            struct ms_error e;
            struct stat st;
            bool blocked = false;
            int fd = maildir_open_msg(c->mf, u->l, &e);
            if (fd >= 0 && cutoff && fstat(fd, &st) == 0 && st.st_mtime < cutoff) {
                /* older than server_retention_days: it lives only here
                 * (retired from the server, or it would be at once) */
                log_msg(LOG_VERBOSE, "%s: %s not uploaded: older than server_retention_days", c->sel->name,
                        u->l->name);
            } else if (fd < 0 || message_identity_fd(fd, &u->message_id, &u->size) != 0) {
                log_msg(LOG_WARN, "%s: %s not uploaded: cannot read it", c->sel->name, u->l->name);
                c->fres->failed++;
            } else if ((rc = tombstones_block_upload(r, c->sel, c->sf->id, u->l->uniq, u->message_id, u->size,
                                                     &blocked, err)) != MS_OK || blocked) {
                /* the same message as a tombstoned one: it stays local */
            } else if (u->size == 0) {
                /* No mail, and no server stores it (an APPEND of an empty
                 * literal is refused): not a failure to retry every run.
                 * The file stays (it is the user's). */
                log_msg(LOG_WARN, "%s: %s not uploaded: it is empty (0 bytes)", c->sel->name,
                        log_escape(u->l->name, strlen(u->l->name), 100));
            } else {
                struct state_append ja = {.uniq = u->l->uniq, .uidvalidity = c->uidvalidity, .uidnext = c->uidnext,
                                          .size = u->size, .message_id = u->message_id};
                rc = state_append_put(r->st, c->sf->id, &ja, err);
                u->journalled = rc == MS_OK;
            }
            if (fd >= 0)
                close(fd);
        }
        if (rc == MS_OK)
            rc = state_commit(r->st, err);
        else
            state_rollback(r->st);
        /* 2. upload (streamed from the file), 3. record (one batch per chunk) */
        for (size_t i = at; i < end && rc == MS_OK; i++) {
            struct upload *u = &todo[i];
            if (!u->journalled)
                continue;
            struct ms_error e = {0};
            struct stat st;
            uint32_t uv = 0, uid = 0;
            int fd = maildir_open_msg(c->mf, u->l, &e);
            int x = fd < 0 ? MS_EPARTIAL : MS_OK;
            if (x == MS_OK && fstat(fd, &st) != 0)
                x = ms_error_errno(&e, MS_EPARTIAL, errno, "%s: cannot stat %s", c->sel->name, u->l->name);
            if (x == MS_OK)
                x = r->remote->ops->append(r->remote, c->sel->raw, u->l->flags, st.st_mtime, fd, u->size, &uv, &uid, &e);
            if (fd >= 0)
                close(fd);
            if (x == MS_OK && uid && uv == c->uidvalidity) {
                struct state_msg row = {.uid = uid, .uniq = u->l->uniq, .flags = u->l->flags & FLAG_ALL,
                                        .size = u->size, .message_id = u->message_id};
                x = state_batch(r->st, &e);
                if (x == MS_OK)
                    x = state_msg_put(r->st, c->sf->id, &row, &e);
                if (x == MS_OK)
                    x = state_append_forget(r->st, c->sf->id, u->l->uniq, &e);
                if (x != MS_OK) {
                    state_batch_abort(r->st);
                    *err = e;
                    rc = x;
                }
            } else if (x == MS_OK) {
                unrecorded = true; /* no APPENDUID: found by push_settle_uploads below */
            } else if (x == MS_EPARTIAL) {
                log_msg(LOG_WARN, "%s", e.msg);
                c->fres->failed++;
            } else {
                *err = e;
                rc = x;
            }
            if (x == MS_OK) {
                c->fres->uploaded++;
                c->fres->bytes_up += u->size;
                if (prog && prog->message_done)
                    prog->message_done(prog->ctx, u->size);
            }
        }
        if (rc == MS_OK)
            rc = state_batch_commit(r->st, err);
        else
            state_batch_abort(r->st);
    }
    for (size_t i = 0; i < ntodo; i++)
        free(todo[i].message_id);
    free(todo);
    if (rc == MS_OK && unrecorded)
        rc = push_settle_uploads(r, c->sel, c->sf->id, c->uidvalidity, err);
    return rc;
}

/* ------------------------------------------------------------------ */
/* flag changes a killed run stored, or was about to */

/* The rows as the journalled STOREs leave them (in memory), so that the
 * plan compares the files with the flags the server was sent. */
static void apply_stores(struct push_ctx *c, const struct state_store *j, size_t nj)
{
    for (size_t i = 0; i < nj; i++) {
        struct state_msg *row = UTIL_FIND_UID(c->state, c->nstate, uid, j[i].uid);
        if (row && j[i].uidvalidity == c->sf->uidvalidity)
            row->flags = j[i].flags;
    }
}

/* Store the journalled changes again (harmless if they arrived) and record
 * them, in the run's batch; rows of an older UIDVALIDITY are dropped. */
static int push_replay_stores(struct push_ctx *c, const struct state_store *j, size_t nj, struct ms_error *err)
{
    struct run *r = c->r;
    int rc = MS_OK;
    size_t n = 0;
    for (size_t i = 0; i < nj && rc == MS_OK; i++) {
        if (j[i].uidvalidity != c->uidvalidity)
            continue;
        if (j[i].added)
            rc = r->remote->ops->store_flags(r->remote, &j[i].uid, 1, j[i].added, true, err);
        if (rc == MS_OK && j[i].removed)
            rc = r->remote->ops->store_flags(r->remote, &j[i].uid, 1, j[i].removed, false, err);
        n++;
    }
    if (rc == MS_OK)
        rc = state_batch(r->st, err);
    for (size_t i = 0; i < nj && rc == MS_OK; i++) {
        const struct state_msg *row = push_state_row(c, j[i].uid);
        if (row && j[i].uidvalidity == c->uidvalidity)
            rc = state_msg_set_flags(r->st, c->sf->id, j[i].uid, j[i].flags, row->keywords, err);
        if (rc == MS_OK)
            rc = state_store_forget(r->st, c->sf->id, j[i].uid, err);
    }
    if (rc != MS_OK)
        state_batch_abort(r->st);
    else if (n)
        log_msg(LOG_VERBOSE, "%s: %zu flag changes of an interrupted run stored again", c->sel->name, n);
    return rc;
}

/* ------------------------------------------------------------------ */
/* one folder */

/* meta key of a folder's change stamp */
static void stamp_key(char *key, size_t len, int64_t folder_id)
{
    snprintf(key, len, "local_stamp:%lld", (long long)folder_id);
}

bool push_stamp_recorded(struct run *r, int64_t folder_id, const struct maildir_stamp *now)
{
    char key[64], *v = NULL;
    struct ms_error e;
    stamp_key(key, sizeof key, folder_id);
    if (state_meta_get(r->st, key, &v, &e) != MS_OK || !v)
        return false;
    long long cur = 0, new = 0;
    bool same = sscanf(v, "%lld %lld", &cur, &new) == 2 && cur == now->cur_ns && new == now->new_ns;
    free(v);
    return same;
}

int push_stamp_record(struct run *r, int64_t folder_id, const struct maildir_stamp *s, struct ms_error *err)
{
    char key[64], val[64];
    stamp_key(key, sizeof key, folder_id);
    snprintf(val, sizeof val, "%lld %lld", (long long)s->cur_ns, (long long)s->new_ns);
    int rc = state_batch(r->st, err);
    if (rc == MS_OK)
        rc = state_meta_set(r->st, key, val, err);
    return rc;
}

/* ------------------------------------------------------------------ */
/* what the scan left out */

/* The state row naming uniq, or NULL (a linear search: only for the few
 * entries a scan leaves out). */
static const struct state_msg *state_row_of(const struct push_ctx *c, const char *uniq)
{
    for (size_t i = 0; i < c->nstate; i++)
        if (c->state[i].uniq && strcmp(c->state[i].uniq, uniq) == 0)
            return &c->state[i];
    return NULL;
}

/* The size m has on the server (CRLF), or UINT64_MAX if unreadable. */
static uint64_t crlf_size_of(struct push_ctx *c, const struct local_msg *m)
{
    struct ms_error e;
    char *mid = NULL;
    uint64_t size = UINT64_MAX;
    int fd = maildir_open_exact(c->mf, m, &e);
    if (fd >= 0 && message_identity_fd(fd, &mid, &size) != 0)
        size = UINT64_MAX;
    if (fd >= 0)
        close(fd);
    free(mid);
    return size;
}

/* Of two files with one unique part, whether dup rather than kept is the
 * message the state row s recorded: the one of the recorded size, else
 * the one with the recorded flags. */
static bool dup_is_recorded(struct push_ctx *c, const struct state_msg *s, const struct local_msg *kept,
                            const struct local_msg *dup)
{
    if (!s)
        return false;
    bool k = crlf_size_of(c, kept) == s->size, d = crlf_size_of(c, dup) == s->size;
    if (k != d)
        return d;
    return (kept->flags & FLAG_ALL) != (s->flags & FLAG_ALL) && (dup->flags & FLAG_ALL) == (s->flags & FLAG_ALL);
}

static void swap_msgs(struct local_msg *a, struct local_msg *b)
{
    struct local_msg t = *a;
    *a = *b;
    *b = t;
}

/* A copy of m for c->local (which owns its strings). */
static struct local_msg copy_msg(const struct local_msg *m)
{
    struct local_msg x = *m;
    x.uniq = xstrdup(m->uniq);
    x.name = xstrdup(m->name);
    return x;
}

static int cmp_msg_uniq(const void *a, const void *b)
{
    return strcmp(((const struct local_msg *)a)->uniq, ((const struct local_msg *)b)->uniq);
}

/* Before planning, the entries the scan left out (maildir_scan_left_out()):
 *  - not a regular file where a known message was (a dangling symlink, a
 *    directory, a FIFO, a socket): that is no deletion ("a known message
 *    file that is no longer a regular file is not a deletion"). It stands
 *    in the list with the flags its row records, so the plan pushes
 *    nothing for it and the row stays; it is never opened.
 *  - a second file with a listed file's unique part (a restored backup):
 *    the same bytes are the same message, never uploaded again (both
 *    files stay, with a warning: removing one is the user's call). Other
 *    bytes are another message: it gets a unique part of its own and is
 *    uploaded once. Of the two, the list keeps the one the state recorded
 *    (by size, else by flags), so no flag change is pushed for the other.
 * Returns MS_OK or a local error (a failed rename). */
static int take_left_out(struct push_ctx *c, struct ms_error *err)
{
    size_t n;
    struct local_msg *left = maildir_scan_left_out(c->mf, &n);
    struct local_msg *add = xcalloc(n + 1, sizeof *add);
    size_t nadd = 0;
    int rc = MS_OK;
    for (size_t i = 0; i < n && rc == MS_OK; i++) {
        struct local_msg *m = &left[i];
        struct local_msg *kept = views_local_by_uniq(c->local, c->nlocal, m->uniq);
        const struct state_msg *s = state_row_of(c, m->uniq);
        char name[420];
        snprintf(name, sizeof name, "%s/%s", m->in_new ? "new" : "cur", log_escape(m->name, strlen(m->name), 100));
        if (m->odd) {
            log_msg(LOG_WARN, "%s: skipping %s: not a regular file (a dangling symlink, directory, FIFO or socket); "
                              "not taken for a deletion",
                    c->sel->name, name);
            bool listed = kept != NULL;
            for (size_t k = 0; k < nadd && !listed; k++)
                listed = strcmp(add[k].uniq, m->uniq) == 0;
            if (s && !listed) {
                add[nadd] = copy_msg(m);
                add[nadd++].flags = s->flags & FLAG_ALL;
            }
            continue;
        }
        if (!kept)
            continue;
        struct ms_error e;
        int same = maildir_same_content(c->mf, kept, m, &e);
        if (same < 0) {
            log_msg(LOG_WARN, "%s: %s", c->sel->name, e.msg);
            c->fres->failed++;
            continue;
        }
        if (dup_is_recorded(c, s, kept, m)) {
            swap_msgs(kept, m);
            snprintf(name, sizeof name, "%s/%s", m->in_new ? "new" : "cur", log_escape(m->name, strlen(m->name), 100));
        }
        if (same) {
            log_msg(LOG_WARN, "%s: %s has the same unique name and content as %s/%s: the same message, not uploaded "
                              "again (one of the two files may go)",
                    c->sel->name, name, kept->in_new ? "new" : "cur", log_escape(kept->name, strlen(kept->name), 100));
            continue;
        }
        if (c->r->opt->dry_run) {
            log_msg(LOG_WARN, "%s: %s has the same unique name as another message: it would get its own and be "
                              "uploaded", c->sel->name, name);
            continue;
        }
        if ((rc = maildir_rename_uniq(c->mf, m, err)) != MS_OK)
            break;
        log_msg(LOG_WARN, "%s: %s had the same unique name as another message (a restored backup?): renamed to %s, "
                          "uploaded as a message of its own",
                c->sel->name, name, log_escape(m->name, strlen(m->name), 100));
        add[nadd++] = copy_msg(m);
    }
    if (nadd) {
        c->local = xrealloc(c->local, (c->nlocal + nadd) * sizeof *c->local);
        memcpy(c->local + c->nlocal, add, nadd * sizeof *add);
        c->nlocal += nadd;
        qsort(c->local, c->nlocal, sizeof *c->local, cmp_msg_uniq);
    }
    free(add);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the folder's view */

/* The names whose rows and files the push looks up besides the changes:
 * messages moved out of or into this folder (moves_local.c) and the
 * folder's tombstones (tombstones.c). Borrowed from r and *t. */
static const char **wanted_names(struct push_ctx *c, const struct state_tombstone *t, size_t nt, size_t *n)
{
    struct run *r = c->r;
    const char **v = xcalloc(2 * r->nlmoves + nt + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < r->nlmoves; i++) {
        const struct lmove *m = &r->lmoves[i];
        if (m->src_id == c->sf->id && m->uniq)
            v[k++] = m->uniq;
        if (m->dst == c->sel && m->dst_uniq)
            v[k++] = m->dst_uniq;
    }
    for (size_t i = 0; i < nt; i++)
        if (t[i].uniq)
            v[k++] = t[i].uniq;
    *n = k;
    return v;
}

/* List the folder and read its rows: c->state and c->local get what can
 * change (views_push_scan), and the rows of journalled flag changes. */
static int scan_folder(struct push_ctx *c, const struct state_store *stores, size_t nstores, struct ms_error *err)
{
    struct state_tombstone *t = NULL;
    size_t nt = 0, nnames = 0;
    int rc = state_tombstone_list(c->r->st, c->sf->id, false, &t, &nt, err);
    if (rc != MS_OK)
        return rc;
    uint32_t *uids = xcalloc(nstores + 1, sizeof *uids);
    for (size_t i = 0; i < nstores; i++)
        uids[i] = stores[i].uid;
    const char **names = wanted_names(c, t, nt, &nnames);
    struct views_push_want want = {.uids = uids, .nuids = nstores, .uniqs = names, .nuniqs = nnames};
    struct views_push v;
    /* The learning pass's scan, if the push wants nothing that scan did
     * not (it wanted nothing) and nothing changed since (the stamp taken
     * now, after any journal recovery); taken (freed) either way. */
    struct maildir_stamp now;
    bool usable = !nstores && !nnames && maildir_change_stamp(c->r->rootfd, c->sel->path, &now) == 0;
    bool reuse = views_push_take(c->r, c->sf->id, usable ? &now : NULL, &v);
    if (reuse)
        log_msg(LOG_TRACE, "%s: the listing made when looking for local moves is still current", c->sel->name);
    else
        rc = views_push_scan(c->r->st, c->sf->id, c->mf, &want, &v, err);
    free(names);
    free(uids);
    state_tombstones_free(t, nt);
    if (rc != MS_OK)
        return rc;
    c->state = v.rows;
    c->nstate = v.nrows;
    c->local = v.local;
    c->nlocal = v.nlocal;
    c->nall = v.nall;
    c->diff = v.diff;
    return MS_OK;
}

/* c->state read again after uploads or moves were recorded. */
static int rows_again(struct push_ctx *c, struct ms_error *err)
{
    struct views_push v = {.rows = c->state, .nrows = c->nstate, .local = c->local, .nlocal = c->nlocal,
                           .nall = c->nall, .diff = c->diff};
    int rc = views_push_rows_again(c->r->st, c->sf->id, &v, err);
    c->state = v.rows;
    c->nstate = v.nrows;
    c->nall = v.nall;
    return rc;
}

/* (Re)plan the folder from c's state rows and scan. */
static int plan_folder(struct push_ctx *c, struct plan_input *in, struct push_plan *p, struct ms_error *err)
{
    views_plan_input_free(in);
    push_plan_free(p);
    views_plan_input(in, c->r->acct, c->r->opt, c->state, c->nstate, c->local, c->nlocal, NULL, 0);
    /* the guard weighs deletions against what the folder held at the
     * run's start: messages moved out meanwhile count (moves_local.c);
     * and against all its rows, not the changed ones c->state holds */
    size_t out = moves_local_moved_out(c->r, c->sf->id);
    if (out || c->nall != c->nstate)
        in->guard_total = c->nall + out;
    return plan_push(in, p) == 0 ? MS_OK : ms_error_set(err, MS_ELOCAL, "out of memory");
}

int push_folder(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                struct maildir_stamp *stamp, struct ms_error *err)
{
    struct maildir_stamp before = {0};
    memset(stamp, 0, sizeof *stamp);
    struct state_folder sf = {0};
    struct push_ctx c = {.r = r, .sel = sel, .sf = &sf, .fres = fres};
    struct plan_input in = {0};
    struct push_plan p = {0};
    struct state_append *journal = NULL;
    struct state_store *stores = NULL;
    size_t njournal = 0, nstores = 0;
    int rc = state_folder_get(r->st, sel->raw, &sf, err);
    if (rc || !sf.id || !sf.last_sync || !sf.uidvalidity) {
        /* never pulled: nothing of it can be pushed yet; a sync pushes it
         * once its pull has matched the files (else one complete sync
         * would leave the local changes of such a folder behind) */
        r->push_after_pull = rc == MS_OK;
        goto out;
    }
    if (r->rootfd < 0 || !maildir_folder_exists(r->rootfd, sel->path)) {
        rc = ms_error_set(err, MS_EPARTIAL,
                          "%s: local folder %s/%s is missing although it was synced before; not touching it",
                          sel->name, r->acct->maildir, sel->path);
        goto out;
    }
    /* Nothing added, removed or renamed since a push found everything
     * pushed: nothing to scan (a no-op sync stays flat in the folder's
     * size). A journal left by a killed run is settled by the pull. */
    bool have_stamp = maildir_change_stamp(r->rootfd, sel->path, &before) == 0;
    if ((rc = state_store_list(r->st, sf.id, &stores, &nstores, err)))
        goto out;
    if (have_stamp && !sf.appends_count && !sf.pending_count && !nstores && push_stamp_recorded(r, sf.id, &before)) {
        log_msg(LOG_VERBOSE, "%s: no local change since the last push", sel->name);
        goto out;
    }
    if ((rc = maildir_folder_open(r->rootfd, sel->path, false, &c.mf, err)))
        goto out;
    if (!r->opt->dry_run && sf.pending_count && (rc = journal_recover(r->st, c.mf, sf.id, JOURNAL_UID, err)))
        goto out;
    if ((rc = scan_folder(&c, stores, nstores, err)) ||
        (rc = state_append_list(r->st, sf.id, &journal, &njournal, err)) || (rc = take_left_out(&c, err)))
        goto out;
    apply_stores(&c, stores, nstores);
    /* Messages moved out to another local folder wait for that folder's
     * push, which moves them on the server (moves_local.c). */
    if (moves_local_stand_in(r, sf.id, &c.local, &c.nlocal) && r->defer_deletions)
        r->held_push = true;
    if ((rc = plan_folder(&c, &in, &p, err)))
        goto out;
    if (p.guard_tripped) {
        /* As a pull's guard: the folder is left untouched. */
        rc = ms_error_set(err, MS_EPARTIAL,
                          "%s: nothing pushed: %zu of the %zu messages synced before are gone locally, more than "
                          "max_delete (%d%%) allows or all of them; if that is right, run again with --force",
                          sel->name, p.guard_deletes, p.guard_total, r->acct->max_delete);
        goto out;
    }
    if ((rc = tombstones_filter_push(r, sel, sf.id, c.state, c.nstate, c.local, c.nlocal, &p, err)))
        goto out;
    if (p.n == 0 && njournal == 0 && nstores == 0)
        goto done;
    if (r->opt->dry_run) {
        moves_local_take_appends(&c, &p);
        if (p.nappend && (rc = push_drop_placeholders(&c, &p, err)))
            goto out;
        dryrun_report_push(r->opt, r->acct->name, sel->name, &p);
        fres->uploaded = p.nappend;
        fres->pushed_flags = p.nflags;
        fres->pushed_deleted = p.ndelete;
        goto out;
    }
    struct remote_box mb;
    if ((rc = r->remote->ops->select(r->remote, sel->raw, true, &mb, err)))
        goto out;
    if (mb.uidvalidity != sf.uidvalidity) {
        log_msg(LOG_WARN, "%s: UIDVALIDITY changed on the server: local changes are pushed after the pull has "
                          "matched the messages again", sel->name);
        r->push_after_pull = true;
        goto out;
    }
    c.uidvalidity = mb.uidvalidity;
    c.uidnext = mb.uidnext;
    if (nstores && (rc = push_replay_stores(&c, stores, nstores, err)))
        goto out;
    if (njournal && (rc = push_settle_uploads(r, sel, sf.id, c.uidvalidity, err)))
        goto out;
    if (njournal) {
        /* Recorded uploads are known now: plan again. */
        if ((rc = rows_again(&c, err)) ||
            (rc = plan_folder(&c, &in, &p, err)) ||
            (rc = tombstones_filter_push(r, sel, sf.id, c.state, c.nstate, c.local, c.nlocal, &p, err)))
            goto out;
    }
    /* Files moved here from another local folder: moved on the server
     * (recorded), not uploaded. */
    size_t moved = 0;
    if (r->nlmoves && (rc = moves_local_into(&c, &moved, err)))
        goto out;
    fres->moved_on_server += moved;
    if (moved) {
        if ((rc = rows_again(&c, err)) ||
            (rc = plan_folder(&c, &in, &p, err)))
            goto out;
    }
    if (moves_local_take_appends(&c, &p))
        have_stamp = false; /* files left for a later run: this one must scan again */
    /* Removals wait for every folder's listing (struct run's
     * defer_deletions); the second pass plans the folder again. */
    bool hold = r->defer_deletions && p.ndelete;
    if (hold)
        r->held_push = true;
    else if (p.ndelete && (rc = push_deletions(&c, &p, err)))
        goto out;
    if (p.nflags && (rc = push_mark_flagged_placeholders(&c, &p, err)))
        goto out;
    if (p.nflags && (rc = push_flags(&c, &p, err)))
        goto out;
    if (p.nappend && (rc = push_drop_placeholders(&c, &p, err)))
        goto out;
    if (p.nappend && (rc = push_appends(&c, &p, err)))
        goto out;
    if (fres->failed) {
        rc = ms_error_set(err, MS_EPARTIAL, "%s: %zu local messages could not be uploaded", sel->name, fres->failed);
        goto out;
    }
done:
    /* Everything the scan saw is pushed and recorded. */
    if (have_stamp && before.settled && !r->opt->dry_run && !r->held_push)
        *stamp = before;
out:
    views_plan_input_free(&in);
    push_plan_free(&p);
    state_appends_free(journal, njournal);
    free(stores);
    state_msgs_free(c.state, c.nstate);
    maildir_msgs_free(c.local, c.nlocal);
    pushdiff_free(&c.diff);
    maildir_folder_close(c.mf);
    state_folder_free(&sf);
    return rc;
}
