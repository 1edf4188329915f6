/* SPDX-License-Identifier: MIT */
/*
 * push_int.h: what push.c (one folder's local changes to the server) and
 * push_delete.c (its deletions, and the trash journal behind them) share.
 * Not for use outside sync/engine/.
 */
#ifndef MAILSYNC_PUSH_INT_H
#define MAILSYNC_PUSH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sync/engine/engine_int.h"
#include "sync/plan/plan.h"
#include "sync/util.h"

/* One folder's push. */
struct push_ctx {
    struct run *r;
    const struct selected *sel;
    struct maildir_folder *mf;
    struct state_folder *sf;
    struct state_msg *state; /* by uid */
    size_t nstate;
    struct local_msg *local; /* by uniq */
    size_t nlocal;
    uint32_t uidvalidity, uidnext; /* of the SELECT */
    struct engine_folder_result *fres;
};

/* The state row of uid (c->state is sorted by uid), or NULL. */
static inline const struct state_msg *push_state_row(const struct push_ctx *c, uint32_t uid)
{
    return UTIL_FIND_UID(c->state, c->nstate, uid, uid);
}

/* Server messages that may be a journalled upload or copy, compared by
 * size and Message-ID (each taken once). */
struct candidate {
    uint32_t uid;
    unsigned flags;
    char *keywords;
    uint64_t size;
    char *message_id;
    bool taken;
};

struct candidates {
    struct candidate *v;
    size_t n;
};

/* remote_ops.fetch_identity's callback over struct candidates (ctx): the
 * candidate of uid takes size and message_id (the candidates are in
 * UID order, the listing's). */
static inline void push_on_identity(void *ctx, uint32_t uid, uint64_t size, const char *message_id)
{
    struct candidates *c = ctx;
    struct candidate *x = UTIL_FIND_UID(c->v, c->n, uid, uid);
    if (!x)
        return;
    x->size = size;
    free(x->message_id);
    x->message_id = message_id ? xstrdup(message_id) : NULL;
}

/* Message-IDs compared, none equal to none. */
static inline bool push_same_id(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* One copy push_find_copies found: its UID and the flags and keywords
 * it has (keywords malloc'd, NULL for none). */
struct copy_found {
    uint32_t uid;
    unsigned flags;
    char *keywords;
};

/* push_delete.c: the copies in folder dest (raw name) of the journal rows
 * (struct state_trash, the table moves to the trash and local moves share)
 * marked in want: rows[i].copy_uid, or else a message from the row's
 * trash_uidnext on of the same size and Message-ID (a COPY or MOVE whose
 * answer was lost, or a MOVE without COPYUID), each taken once. found[i]
 * is set for those dest holds, and got[i] (may be NULL) says which copy.
 * EXAMINEs dest; the caller selects its folder again. */
int push_find_copies(struct run *r, const char *dest, const struct state_trash *rows, size_t n, const bool *want,
                     bool *found, struct copy_found *got, struct ms_error *err);

/* push_placeholders.c: drop from p the uploads of files that are mbsync
 * placeholders, removing those whose full message the folder's state
 * has (not in a dry run). Only a state DB or Maildir failure is an error. */
int push_drop_placeholders(struct push_ctx *c, struct push_plan *p, struct ms_error *err);
/* push_placeholders.c: before the flag changes are sent, the files given
 * \Flagged whose rows lost their placeholder mark (placeholders_mark_lost)
 * are marked again: the pull after the push replaces them. */
int push_mark_flagged_placeholders(struct push_ctx *c, const struct push_plan *p, struct ms_error *err);

/* push_delete.c: remove the plan's PUSH_DELETEs on the server (move to
 * `trash`, expunge or flag \Deleted, as the account and the server allow),
 * then forget (or flag) their rows in the run's batch. */
int push_deletions(struct push_ctx *c, const struct push_plan *p, struct ms_error *err);

#endif
