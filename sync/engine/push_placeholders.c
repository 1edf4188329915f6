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
 * at (its first 64 KiB: a placeholder is a header and a line or two):
 *   - a placeholder whose Message-ID a message of the folder's state has
 *     (the full message is here, synced) is removed, as mbsync itself
 *     removes a placeholder it has upgraded;
 *   - another placeholder is left alone with a warning.
 * Either way it is no upload. A run killed after the removal's unlink but
 * before the directory is durable finds the file again and removes it
 * again.
 */
#include "sync/engine/push_int.h"

#include <errno.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/local/dirsync.h"
#include "sync/log.h"
#include "sync/message.h"

/* Is the local file m an mbsync placeholder? A file that cannot be read
 * is not (the upload reports it). *message_id: its Message-ID, when it is. */
static bool is_placeholder(struct push_ctx *c, struct local_msg *m, char *buf, char **message_id)
{
    ssize_t n = placeholder_head(c->mf, m, buf);
    bool yes = n >= 0 && message_is_mbsync_placeholder(buf, (size_t)n);
    *message_id = yes ? message_header(buf, (size_t)n, "Message-ID") : NULL;
    return yes;
}

/* Has the folder's state a message (another file) with this Message-ID? */
static bool full_message_here(const struct state_msg *rows, size_t n, const char *message_id, const char *uniq)
{
    for (size_t i = 0; message_id && i < n; i++)
        if (rows[i].message_id && strcmp(rows[i].message_id, message_id) == 0 && rows[i].uniq &&
            strcmp(rows[i].uniq, uniq) != 0)
            return true;
    return false;
}

int push_drop_placeholders(struct push_ctx *c, struct push_plan *p, struct ms_error *err)
{
    struct run *r = c->r;
    struct state_msg *rows = NULL;
    size_t nrows = 0, kept = 0, dropped = 0, removed = 0;
    bool have_rows = false;
    char *buf = NULL;
    int rc = MS_OK;
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        struct push_action *a = &p->actions[i];
        struct local_msg *m = a->op == PUSH_APPEND ? views_local_by_uniq(c->local, c->nlocal, a->uniq) : NULL;
        char *mid = NULL;
        if (m && !buf)
            buf = xmalloc(PLACEHOLDER_WINDOW);
        if (!m || !is_placeholder(c, m, buf, &mid)) {
            p->actions[kept++] = *a;
            continue;
        }
        dropped++;
        if (!have_rows && (rc = state_msg_list(r->st, c->sf->id, &rows, &nrows, err)) == MS_OK)
            have_rows = true;
        const char *name = log_escape(m->name, strlen(m->name), 100);
        if (rc == MS_OK && full_message_here(rows, nrows, mid, m->uniq)) {
            if (r->opt->dry_run) {
                log_msg(LOG_INFO, "%s: would remove %s, a placeholder mbsync left for a message that is here in full",
                        c->sel->name, name);
            } else if ((rc = maildir_remove(c->mf, m, err)) == MS_OK || rc == 1) {
                log_msg(LOG_INFO, "%s: removed %s, a placeholder mbsync left for a message that is here in full",
                        c->sel->name, name);
                removed++;
                rc = MS_OK;
            }
        } else if (rc == MS_OK) {
            log_msg(LOG_WARN, "%s: %s is a placeholder mbsync left for a message over its MaxSize: not uploaded "
                              "(the message itself is not in this folder)",
                    c->sel->name, name);
        }
        free(mid);
    }
    if (rc == MS_OK) {
        for (size_t i = kept; i < p->n; i++)
            memset(&p->actions[i], 0, sizeof p->actions[i]);
        p->n = kept;
        p->nappend -= dropped;
    }
    if (rc == MS_OK && removed)
        rc = dirsync_add_folder(r->dirs, c->mf, err);
    free(buf);
    state_msgs_free(rows, nrows);
    return rc;
}
