/* SPDX-License-Identifier: MIT */
/*
 * tombstones.c: messages that live only locally because a policy took
 * them off the server, and what the engine does so that they stay off
 * it (the rows are db/state.h's "tombstones").
 *
 * Two policies make them:
 *   - retired: server_retention_days removed the message from the server
 *     (retention.c records the tombstone in the transaction that forgets
 *     the message's row, before the server expunges it);
 *   - kept_by_backup: the server deleted the message while mode = backup
 *     (a pull's PLAN_BACKUP_KEEP: the row becomes the tombstone, in the
 *     batch of the pull's other records).
 * What they do:
 *   - a push never uploads a tombstoned file, whatever the config says
 *     later: by its unique part, in this folder or any other (a move that
 *     kept the file's name), or by identity (Message-ID and size: a file
 *     renamed to a new unique part, or copied); the file found elsewhere
 *     gets a tombstone of its own in its folder, with the same reason;
 *   - a tombstone whose file the user deleted is forgotten (nothing left
 *     to protect), in the second pass, once every folder's push has had
 *     the chance to find the file moved into it;
 *   - a tombstone whose unique part the state knows again (the message
 *     came back to the server and was matched) is forgotten;
 *   - with mode = mirror, the pull's second pass removes the kept_by_backup
 *     files and forgets their tombstones, within the mass-deletion guard
 *     (they count as deletions of what the state knew of the folder).
 *     Files first, then the records (in the run's batch): a run killed in
 *     between finds the files gone and only forgets. Retired ones stay:
 *     the user chose to keep them locally.
 * A stale state DB set aside by generation.c hands its tombstones to the
 * new one (state_tombstones_take), so a re-matched Maildir uploads none.
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/engine/dryrun.h"
#include "sync/log.h"
#include "sync/util.h"

static const char *reason_text(enum state_tomb_reason r)
{
    return r == STATE_TOMB_KEPT_BY_BACKUP ? "kept by backup mode (the server deleted it)"
                                          : "retired from the server by server_retention_days";
}

int tombstones_keep_backup(struct run *r, int64_t folder_id, uint32_t uid, struct ms_error *err)
{
    struct state_msg *row = NULL;
    size_t n = 0;
    int rc = state_msg_get_uids(r->st, folder_id, &uid, 1, &row, &n, err);
    if (rc == MS_OK && n == 1 && row->uniq) {
        struct state_tombstone t = {.folder_id = folder_id, .uniq = row->uniq, .message_id = row->message_id,
                                    .size = row->size, .reason = STATE_TOMB_KEPT_BY_BACKUP,
                                    .since = (int64_t)time(NULL)};
        rc = state_tombstone_put(r->st, folder_id, &t, err);
        r->tombs_changed = true;
    }
    if (rc == MS_OK)
        rc = state_msg_delete(r->st, folder_id, uid, err);
    state_msgs_free(row, n);
    return rc;
}

int tombstones_retire(struct run *r, int64_t folder_id, const struct state_msg *row, struct ms_error *err)
{
    struct state_tombstone t = {.folder_id = folder_id, .uniq = row->uniq, .message_id = row->message_id,
                                .size = row->size, .reason = STATE_TOMB_RETIRED, .since = (int64_t)time(NULL)};
    r->tombs_changed = true;
    return state_tombstone_put(r->st, folder_id, &t, err);
}

static int cmp_tomb_key(const void *key, const void *elem)
{
    return strcmp(key, ((const struct state_tombstone *)elem)->uniq);
}

static const struct state_tombstone *tomb_by_uniq(const struct state_tombstone *t, size_t n, const char *uniq)
{
    return n ? bsearch(uniq, t, n, sizeof *t, cmp_tomb_key) : NULL;
}

/* Record, in folder_id, that the file uniq is the message of tombstone
 * like (found in another folder, or under another name). */
static int tomb_follow(struct run *r, int64_t folder_id, const char *uniq, const struct state_tombstone *like,
                       struct ms_error *err)
{
    if (r->opt->dry_run)
        return MS_OK;
    struct state_tombstone t = *like;
    t.folder_id = folder_id;
    t.uniq = (char *)uniq;
    r->tombs_changed = true;
    return state_tombstone_put(r->st, folder_id, &t, err);
}

int tombstones_filter_push(struct run *r, const struct selected *sel, int64_t folder_id,
                           const struct state_msg *state, size_t nstate, const struct local_msg *local,
                           size_t nlocal, struct push_plan *p, struct ms_error *err)
{
    struct state_tombstone *t = NULL;
    size_t nt = 0, nidx = 0, kept = 0, dropped = 0;
    int rc = state_tombstone_list(r->st, folder_id, false, &t, &nt, err);
    const char **idx = rc == MS_OK && nt ? rematch_uniq_index(state, nstate, &nidx) : NULL;
    /* 1. the uploads of tombstoned files go */
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        struct push_action *a = &p->actions[i];
        if (a->op != PUSH_APPEND) {
            p->actions[kept++] = *a;
            continue;
        }
        const struct state_tombstone *hit = tomb_by_uniq(t, nt, a->uniq);
        struct state_tombstone other = {0};
        bool found = hit != NULL;
        if (!found && (rc = state_tombstone_find(r->st, a->uniq, NULL, 0, &other, &found, err)) == MS_OK &&
            found) {
            hit = &other; /* moved here from another folder, keeping its name */
            rc = tomb_follow(r, folder_id, a->uniq, hit, err);
        }
        if (found)
            log_msg(LOG_VERBOSE, "%s: %s not uploaded: %s", sel->name, a->uniq, reason_text(hit->reason));
        else
            p->actions[kept++] = *a;
        dropped += found;
        state_tombstone_free(&other);
    }
    for (size_t i = kept; rc == MS_OK && i < p->n; i++)
        memset(&p->actions[i], 0, sizeof p->actions[i]);
    if (rc == MS_OK) {
        p->n = kept;
        p->nappend -= dropped;
    }
    /* 2. tombstones with nothing left to protect: the message is known
     * again (forgotten now), or its file is gone (in the second pass, so
     * that a push of another folder finds it moved there first) */
    bool batch = false;
    for (size_t i = 0; i < nt && rc == MS_OK && !r->opt->dry_run; i++) {
        bool known = rematch_index_has(idx, nidx, t[i].uniq);
        if (!known && views_local_by_uniq((struct local_msg *)local, nlocal, t[i].uniq))
            continue;
        if (!known && r->defer_deletions) {
            r->held_push = true;
            continue;
        }
        if (!batch && (rc = state_batch(r->st, err)) == MS_OK)
            batch = true;
        if (rc == MS_OK)
            rc = state_tombstone_forget(r->st, folder_id, t[i].uniq, err);
        r->tombs_changed = true;
        if (rc == MS_OK)
            log_msg(LOG_VERBOSE, "%s: %s: tombstone forgotten (%s)", sel->name, t[i].uniq,
                    known ? "the message is on the server again" : "the file is gone");
    }
    if (rc && batch)
        state_batch_abort(r->st);
    free(idx);
    state_tombstones_free(t, nt);
    return rc;
}

int tombstones_block_upload(struct run *r, const struct selected *sel, int64_t folder_id, const char *uniq,
                            const char *message_id, uint64_t size, bool *blocked, struct ms_error *err)
{
    struct state_tombstone t;
    *blocked = false;
    if (!message_id)
        return MS_OK; /* never by identity without a Message-ID */
    int rc = state_tombstone_find(r->st, NULL, message_id, size, &t, blocked, err);
    if (rc == MS_OK && *blocked) {
        log_msg(LOG_INFO, "%s: %s not uploaded: the same message (Message-ID and size) as %s, %s", sel->name, uniq,
                t.uniq, reason_text(t.reason));
        rc = tomb_follow(r, folder_id, uniq, &t, err);
    }
    state_tombstone_free(&t);
    return rc;
}

/* The files of the kept ones (the scan's, sorted by uniq; not those of
 * uniqs the state knows) removed, their
 * directories made durable before the batch that forgets them commits. */
static int remove_kept(struct run *r, struct maildir_folder *mf, struct local_msg *local, size_t nlocal,
                       const struct state_tombstone *t, size_t nt, const char **known, size_t nknown,
                       size_t *removed, struct ms_error *err)
{
    int rc = MS_OK;
    *removed = 0;
    for (size_t i = 0; i < nt && rc == MS_OK; i++) {
        struct local_msg *l = rematch_index_has(known, nknown, t[i].uniq)
                                  ? NULL
                                  : views_local_by_uniq(local, nlocal, t[i].uniq);
        if (!l)
            continue;
        int x = maildir_remove(mf, l, err);
        if (x == MS_OK)
            ++*removed;
        else if (x != 1)
            rc = x;
    }
    if (rc || !*removed)
        return rc;
    return dirsync_add_folder(r->dirs, mf, err);
}

int tombstones_discard_kept(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                            struct ms_error *err)
{
    if (r->acct->mode != MODE_MIRROR || r->rootfd < 0)
        return MS_OK;
    struct state_folder sf = {0};
    struct state_tombstone *t = NULL;
    struct state_msg *rows = NULL;
    struct local_msg *local = NULL;
    struct maildir_folder *mf = NULL;
    const char **idx = NULL;
    size_t nt = 0, nrows = 0, nlocal = 0, nidx = 0, with_file = 0, removed = 0;
    int rc = state_folder_get(r->st, sel->raw, &sf, err);
    if (rc || !sf.id || (rc = state_tombstone_list(r->st, sf.id, true, &t, &nt, err)) || nt == 0)
        goto out;
    if ((rc = maildir_folder_open(r->rootfd, sel->path, false, &mf, err)) ||
        (rc = maildir_scan_names(mf, &local, &nlocal, err)) ||
        (rc = state_msg_list_brief(r->st, sf.id, &rows, &nrows, err)))
        goto out;
    /* A kept message the state knows again (back on the server and
     * matched) is no longer kept: only forgotten. */
    idx = rematch_uniq_index(rows, nrows, &nidx);
    size_t nkept = 0;
    for (size_t i = 0; i < nt; i++) {
        if (rematch_index_has(idx, nidx, t[i].uniq))
            continue;
        nkept++;
        with_file += views_local_by_uniq(local, nlocal, t[i].uniq) != NULL;
    }
    /* What the state knew of the folder: its rows and the kept ones. */
    size_t total = nrows + nkept;
    if (!r->opt->force && plan_guard_trips(with_file, nkept, total, r->acct->max_delete)) {
        rc = ms_error_set(err, MS_EPARTIAL,
                          "%s: left untouched: %zu of the %zu messages synced before were deleted on the server "
                          "while mode = backup kept them locally; mode = mirror removes them, but that is more "
                          "than max_delete (%d%%) allows or all of them; if that is right, run again with --force",
                          sel->name, with_file, total, r->acct->max_delete);
        goto out;
    }
    if (r->opt->dry_run) {
        for (size_t i = 0; i < nt; i++) {
            struct local_msg *l = rematch_index_has(idx, nidx, t[i].uniq)
                                      ? NULL
                                      : views_local_by_uniq(local, nlocal, t[i].uniq);
            struct engine_planned step = {.account = r->acct->name, .folder = sel->name,
                                          .kind = ENGINE_PLAN_DELETE_KEPT, .uid = 0, .size = 0, .count = 0,
                                          .flags = 0, .flags_removed = 0, .file = l ? l->name : NULL};
            if (l)
                dryrun_report(r->opt, &step);
        }
        fres->deleted += with_file;
        goto out;
    }
    if ((rc = remove_kept(r, mf, local, nlocal, t, nt, idx, nidx, &removed, err)) == MS_OK)
        rc = state_batch(r->st, err);
    for (size_t i = 0; i < nt && rc == MS_OK; i++)
        rc = state_tombstone_forget(r->st, sf.id, t[i].uniq, err);
    r->tombs_changed = true;
    if (rc)
        state_batch_abort(r->st);
    fres->deleted += removed;
    if (rc == MS_OK && removed)
        log_msg(LOG_INFO, "%s: %zu messages the server deleted while mode = backup removed locally (mode = mirror)",
                sel->name, removed);
out:
    free(idx);
    state_tombstones_free(t, nt);
    state_msgs_free(rows, nrows);
    maildir_msgs_free(local, nlocal);
    maildir_folder_close(mf);
    state_folder_free(&sf);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the copy beside the Maildir */

/* One line per tombstone, tab separated:
 *   reason  folder(raw)  path  uniq  size  since  message_id(or empty)
 * after a first line "mailsync-tombstones 1". A value holding a tab or a
 * line break is left out of the copy (the DB still has it). It is a dot
 * file in the Maildir root, like the generation marker (generation.c):
 * no folder scan takes it for mail or a folder. */
#define COPY_PREFIX ".mailsync-tombstones-"
#define COPY_TMP_PREFIX ".mailsync-tombstones.tmp-"
#define COPY_MAGIC "mailsync-tombstones 1"
#define COPY_LINE_MAX 16384

static bool plain(const char *s)
{
    return !s || !strpbrk(s, "\t\r\n");
}

void tombstones_save_copy(struct run *r)
{
    if (!r->tombs_changed || !r->st || r->rootfd < 0 || r->opt->dry_run)
        return;
    char name[NAME_MAX + 1], tmp[NAME_MAX + 1];
    snprintf(name, sizeof name, COPY_PREFIX "%s", r->acct->name);
    snprintf(tmp, sizeof tmp, COPY_TMP_PREFIX "%s", r->acct->name);
    struct state_tombstone_entry *v = NULL;
    size_t n = 0;
    struct ms_error e;
    if (state_tombstone_list_all(r->st, &v, &n, &e) != MS_OK) {
        log_msg(LOG_WARN, "%s: the copy of the tombstones is not updated: %s", r->acct->name, e.msg);
        return;
    }
    bool ok = true;
    if (n == 0) {
        ok = unlinkat(r->rootfd, name, 0) == 0 || errno == ENOENT;
    } else {
        int fd = openat(r->rootfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f && fd >= 0)
            close(fd);
        ok = f != NULL && fprintf(f, COPY_MAGIC "\n") > 0;
        for (size_t i = 0; ok && i < n; i++) {
            const struct state_tombstone_entry *t = &v[i];
            if (!plain(t->folder) || !plain(t->path) || !plain(t->t.uniq) || !plain(t->t.message_id))
                continue;
            ok = fprintf(f, "%s\t%s\t%s\t%s\t%llu\t%lld\t%s\n",
                         t->t.reason == STATE_TOMB_KEPT_BY_BACKUP ? "kept_by_backup" : "retired", t->folder,
                         t->path ? t->path : "", t->t.uniq, (unsigned long long)t->t.size, (long long)t->t.since,
                         t->t.message_id ? t->t.message_id : "") > 0;
        }
        ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
        if (f && fclose(f) != 0)
            ok = false;
        ok = ok && renameat(r->rootfd, tmp, r->rootfd, name) == 0;
        if (!ok)
            unlinkat(r->rootfd, tmp, 0);
    }
    if (ok)
        ok = fsync(r->rootfd) == 0;
    if (!ok)
        log_msg(LOG_WARN, "%s: cannot write %s/%s: %s (only needed if the state DB is lost)", r->acct->name,
                r->acct->maildir, name, strerror(errno));
    state_tombstone_entries_free(v, n);
}

int tombstones_load_copy(struct run *r, struct ms_error *err)
{
    if (!r->st || r->rootfd < 0)
        return MS_OK;
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, COPY_PREFIX "%s", r->acct->name);
    int fd = openat(r->rootfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return MS_OK; /* none (or unreadable: as none) */
    }
    struct state_tombstone_entry *v = NULL;
    size_t nv = 0, cap = 0, len = 0;
    char *line = NULL;
    ssize_t got;
    bool head = true, good = true;
    while (good && (got = getline(&line, &len, f)) >= 0) {
        if (got > COPY_LINE_MAX || got == 0 || line[got - 1] != '\n')
            continue; /* not one of ours (or cut short): left out */
        line[got - 1] = '\0';
        if (head) {
            good = strcmp(line, COPY_MAGIC) == 0;
            head = false;
            continue;
        }
        char *p = line, *fld[7];
        int k = 0;
        while (k < 7 && p)
            fld[k++] = strsep(&p, "\t");
        if (k < 7 || p || !*fld[1] || !*fld[3])
            continue;
        if (nv == cap) {
            cap = cap ? cap * 2 : 64;
            v = xrealloc(v, cap * sizeof *v);
        }
        struct state_tombstone_entry *t = &v[nv++];
        *t = (struct state_tombstone_entry){.folder = xstrdup(fld[1]), .path = xstrdup(fld[2]),
                                            .t = {.folder_id = 0, .uniq = xstrdup(fld[3]),
                                                  .message_id = *fld[6] ? xstrdup(fld[6]) : NULL,
                                                  .size = strtoull(fld[4], NULL, 10),
                                                  .reason = strcmp(fld[0], "kept_by_backup") == 0
                                                                ? STATE_TOMB_KEPT_BY_BACKUP
                                                                : STATE_TOMB_RETIRED,
                                                  .since = strtoll(fld[5], NULL, 10)}};
    }
    free(line);
    fclose(f);
    size_t n = 0;
    int rc = good ? state_tombstone_import(r->st, v, nv, &n, err) : MS_OK;
    if (rc == MS_OK && n) {
        r->tombs_changed = true;
        log_msg(LOG_INFO, "%s: %zu tombstones (messages retired or kept by backup mode) taken from %s/%s",
                r->acct->name, n, r->acct->maildir, name);
    }
    state_tombstone_entries_free(v, nv);
    return rc;
}
