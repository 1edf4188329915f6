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

#include "sync/flags.h"
#include "sync/log.h"

int push_drop_placeholders(struct push_ctx *c, struct push_plan *p, struct ms_error *err)
{
    struct placeholder_sweep s = {.r = c->r, .folder = c->sel->name, .mf = c->mf, .folder_id = c->sf->id,
                                  .buf = NULL, .rows = NULL, .nrows = 0, .marked = NULL, .nmarked = 0,
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
        if (rc == MS_OK && fate == PLACEHOLDER_KEPT)
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
