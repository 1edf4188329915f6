/* SPDX-License-Identifier: MIT */
/*
 * push_placeholders.c: a placeholder mbsync left is never uploaded.
 *
 * mbsync (isync 1.4 and later) stores a message over its MaxSize as a
 * placeholder: the message's header with "[placeholder] " in the Subject
 * and a note for a body (message_is_mbsync_placeholder). A Maildir adopted
 * from mbsync may hold some. rematch.c does not take one for its message,
 * so the message is downloaded in full; to a push the placeholder is then
 * a local file the state does not know, which would go up as a new,
 * truncated second copy. Before the uploads each file to upload is looked
 * at (its first 64 KiB: a placeholder is a header and a line or two;
 * placeholder_sweep_file in placeholders.c, which a pull uses too):
 *   - a placeholder whose Message-ID a whole message of the folder's state
 *     has, on disk (the full message is here, synced), is removed, as
 *     mbsync itself removes a placeholder it has upgraded;
 *   - another placeholder is left alone with a warning.
 * Either way it is no upload. A run killed after the removal's unlink but
 * before the directory is durable finds the file again and removes it
 * again.
 */
#include "sync/engine/push_int.h"

#include <string.h>

#include "db/state.h"
#include "sync/flags.h"
#include "sync/log.h"
#include "sync/message.h"

/* ------------------------------------------------------------------ */
/* a placeholder copied into another folder */

/* The marked row of another folder (its state id, raw name, UIDVALIDITY,
 * and the row's uid and flags) whose message the placeholder with
 * message_id and field size stands for: exactly one, or none (false). */
struct ph_source {
    int64_t folder_id;
    char *name;
    uint32_t uidvalidity, uid;
    unsigned flags;
    char *keywords;
};

static int find_source(struct push_ctx *c, const char *message_id, uint64_t size, struct ph_source *src, bool *found,
                       struct ms_error *err)
{
    struct state_folder *f = NULL;
    size_t nf = 0, hits = 0;
    *found = false;
    int rc = state_folder_list_brief(c->r->st, &f, &nf, err);
    for (size_t i = 0; rc == MS_OK && i < nf && hits < 2; i++) {
        struct state_placeholder *marks = NULL;
        size_t nmarks = 0;
        if (f[i].id == c->sf->id || !f[i].uidvalidity)
            continue;
        if ((rc = state_placeholder_list(c->r->st, f[i].id, &marks, &nmarks, err)) != MS_OK)
            break;
        uint32_t *uids = xcalloc(nmarks + 1, sizeof *uids);
        size_t nu = 0;
        for (size_t k = 0; k < nmarks; k++) /* by uid: sorted */
            if (marks[k].size == size)
                uids[nu++] = marks[k].uid;
        struct state_msg *rows = NULL;
        size_t nrows = 0;
        if (nu)
            rc = state_msg_get_uids(c->r->st, f[i].id, uids, nu, &rows, &nrows, err);
        for (size_t k = 0; rc == MS_OK && k < nrows; k++) {
            if (rows[k].pending || !push_same_id(rows[k].message_id, message_id))
                continue;
            if (hits++ == 0)
                *src = (struct ph_source){.folder_id = f[i].id, .name = xstrdup(f[i].name),
                                          .uidvalidity = f[i].uidvalidity, .uid = rows[k].uid,
                                          .flags = rows[k].flags,
                                          .keywords = rows[k].keywords ? xstrdup(rows[k].keywords) : NULL};
        }
        state_msgs_free(rows, nrows);
        free(uids);
        state_placeholders_free(marks, nmarks);
    }
    state_folders_free(f, nf);
    *found = rc == MS_OK && hits == 1;
    if (hits > 1) { /* several: which one is not known; the placeholder is kept, as before */
        free(src->name);
        free(src->keywords);
        memset(src, 0, sizeof *src);
    }
    return rc;
}

/* The server's copy of the message the placeholder m (read: buf[0..n))
 * stands for, made from its source folder's row (UID COPY, never an
 * upload) and recorded under m's name, marked: *copied. Journalled as an
 * upload first (the real message's size and Message-ID), so a run killed
 * after the COPY finds the copy by them (push_settle_uploads) instead of
 * copying again. MS_EPARTIAL: not done, said; the placeholder is kept. */
static int copy_placeholder(struct push_ctx *c, struct local_msg *m, const char *buf, size_t n, bool *copied,
                            struct ms_error *err)
{
    struct run *r = c->r;
    *copied = false;
    uint64_t size = message_placeholder_size(buf, n);
    char *mid = message_header(buf, n, "Message-ID");
    struct ph_source src = {0};
    bool found = false;
    int rc = mid && mid[0] && size ? find_source(c, mid, size, &src, &found, err) : MS_OK;
    if (rc != MS_OK || !found)
        goto out;
    const char *name = log_escape(m->name, strlen(m->name), 100);
    if (r->opt->dry_run) {
        log_msg(LOG_INFO, "%s: %s is a copy of a placeholder: its message would be copied here on the server",
                c->sel->name, name);
        *copied = true;
        goto out;
    }
    struct state_append ja = {.uniq = m->uniq, .uidvalidity = c->uidvalidity, .uidnext = c->uidnext, .size = size,
                              .message_id = mid};
    if ((rc = state_append_put(r->st, c->sf->id, &ja, err)) != MS_OK)
        goto out;
    struct remote_box mb;
    uint32_t copy_uid = 0, uv = 0;
    struct ms_error e = {0};
    int x = r->remote->ops->select(r->remote, src.name, true, &mb, &e);
    if (x == MS_OK && mb.uidvalidity != src.uidvalidity)
        x = ms_error_set(&e, MS_EPARTIAL, "its folder's UIDVALIDITY changed on the server");
    if (x == MS_OK)
        x = r->remote->ops->copy(r->remote, &src.uid, 1, c->sel->raw, &copy_uid, &uv, &e);
    /* the folder of the push is the open one again (its settling lists it) */
    if ((rc = r->remote->ops->select(r->remote, c->sel->raw, true, &mb, err)) != MS_OK)
        goto out;
    if (mb.uidvalidity != c->uidvalidity) {
        rc = ms_error_set(err, MS_EPARTIAL, "%s: UIDVALIDITY changed on the server during the push", c->sel->name);
        goto out;
    }
    if (x != MS_OK) {
        if (x != MS_EPARTIAL) {
            *err = e;
            rc = x;
        } else {
            log_msg(LOG_WARN, "%s: %s is a copy of a placeholder whose message could not be copied here on the "
                              "server (%s): not uploaded", c->sel->name, name, e.msg);
            rc = state_append_forget(r->st, c->sf->id, m->uniq, err);
        }
        goto out;
    }
    *copied = true;
    c->fres->moved_on_server++;
    if (!copy_uid || uv != c->uidvalidity) {
        /* no COPYUID: found by size and Message-ID (left unmarked: a flag
         * on it marks it again, placeholders_mark_lost) */
        rc = push_settle_uploads(r, c->sel, c->sf->id, c->uidvalidity, err);
        goto out;
    }
    struct state_msg row = {.uid = copy_uid, .uniq = m->uniq, .flags = src.flags, .keywords = src.keywords,
                            .size = size, .message_id = mid, .hash = NULL, .pending = false, .emailid = NULL};
    if ((rc = state_begin(r->st, err)) != MS_OK)
        goto out;
    rc = state_msg_put(r->st, c->sf->id, &row, err);
    if (rc == MS_OK)
        rc = state_msg_set_placeholder(r->st, c->sf->id, copy_uid, STATE_PLACEHOLDER, err);
    if (rc == MS_OK)
        rc = state_append_forget(r->st, c->sf->id, m->uniq, err);
    if (rc == MS_OK)
        rc = state_commit(r->st, err);
    else
        state_rollback(r->st);
    if (rc == MS_OK)
        log_msg(LOG_VERBOSE, "%s: %s is a copy of a placeholder: its message was copied here on the server (UID %u)",
                c->sel->name, name, copy_uid);
out:
    free(src.name);
    free(src.keywords);
    free(mid);
    return rc;
}

int push_drop_placeholders(struct push_ctx *c, struct push_plan *p, struct ms_error *err)
{
    struct placeholder_sweep s = {.r = c->r, .folder = c->sel->name, .mf = c->mf, .folder_id = c->sf->id,
                                  .buf = NULL, .head_len = 0, .rows = NULL, .nrows = 0, .marked = NULL, .nmarked = 0,
                                  .have_rows = false, .removed = 0};
    size_t kept = 0, dropped = 0;
    int rc = MS_OK;
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        struct push_action *a = &p->actions[i];
        struct local_msg *m = a->op == PUSH_APPEND ? views_local_by_uniq(c->local, c->nlocal, a->uniq) : NULL;
        enum placeholder_fate fate = PLACEHOLDER_NOT;
        if (m)
            rc = placeholder_sweep_file(&s, m, &fate, err);
        if (rc == MS_OK && fate == PLACEHOLDER_NOT) {
            p->actions[kept++] = *a;
            continue;
        }
        dropped++;
        bool copied = false;
        if (rc == MS_OK && fate == PLACEHOLDER_KEPT)
            rc = copy_placeholder(c, m, s.buf, s.head_len, &copied, err);
        if (rc == MS_OK && fate == PLACEHOLDER_KEPT && !copied)
            log_msg(LOG_WARN, "%s: %s is a placeholder for a message over a MaxSize: not uploaded "
                              "(the message itself is not in this folder)",
                    c->sel->name, log_escape(m->name, strlen(m->name), 100));
    }
    if (rc == MS_OK) {
        for (size_t i = kept; i < p->n; i++)
            memset(&p->actions[i], 0, sizeof p->actions[i]);
        p->n = kept;
        p->nappend -= dropped;
    }
    struct ms_error e;
    int erc = placeholder_sweep_end(&s, rc == MS_OK ? err : &e);
    return rc ? rc : erc;
}

int push_mark_flagged_placeholders(struct push_ctx *c, const struct push_plan *p, struct ms_error *err)
{
    struct placeholder_candidate *v = xcalloc(p->n + 1, sizeof *v);
    size_t n = 0, marked = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct push_action *a = &p->actions[i];
        const struct state_msg *row = a->op == PUSH_FLAGS && (a->add & FLAG_FLAGGED) ? push_state_row(c, a->uid) : NULL;
        struct local_msg *l = row && row->uniq ? views_local_by_uniq(c->local, c->nlocal, row->uniq) : NULL;
        if (l && !l->odd) /* a file (a stand-in for a moved one opens nothing) */
            v[n++] = (struct placeholder_candidate){.uid = a->uid, .file = l};
    }
    int rc = placeholders_mark_lost(c->r, c->sel->name, c->sf->id, c->mf, v, n, &marked, err);
    free(v);
    return rc;
}
