/* SPDX-License-Identifier: MIT */
/*
 * engine.c: one account run (see engine.h): lock, log in and open the
 * store (setup.c), list and select the folders (folders.c), then two
 * passes over them. The first pushes (push.c) and pulls (pull.c) each
 * folder but holds its deletions back; the second, once every folder's
 * listing is known, applies the deletions and retires old messages
 * (retention.c), and with mode = mirror removes what backup mode kept
 * (tombstones.c). Then the run's outcome is recorded and the results are
 * reported in the order the account lists its folders.
 *
 * The crash-safety of a pull (the delivery journal, renames before
 * records) is written down at the top of pull.c and journal.h; that of a
 * push at the top of push.c and push_delete.c.
 */
#include "sync/engine/engine_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/state.h"
#include "sync/local/dirsync.h"
#include "sync/local/maildir.h"
#include "sync/log.h"
#include "sync/util.h"

static int dirs_durable(void *ctx, struct ms_error *err)
{
    return dirsync_wait(((struct run *)ctx)->dirs, err);
}

/* The run's outcome and the unchanged folders' last_sync. Nothing here is
 * needed for correctness (it feeds `status`), so a failure is only a
 * warning. A quiet run (nothing written, no error now or last time) leaves
 * the DB alone and notes its time in the side file; otherwise all of it
 * goes into one transaction. */
static void record_outcome(struct run *r)
{
    /* Not for a run that failed before the login (the contract: it
     * changes nothing on disk, so `status` keeps the last real run's
     * outcome) or that found the account locked. */
    if (!r->st || r->opt->dry_run || !r->authed || r->lockfd < 0)
        return;
    struct ms_error e = {0};
    char buf[32];
    const char *worst = r->res->error[0] ? r->res->error : NULL;
    for (size_t i = 0; !worst && i < r->res->nfolders; i++)
        if (r->res->folders[i].error)
            worst = r->res->folders[i].error;
    int64_t now = (int64_t)time(NULL);
    if (r->res->status == MS_OK && !worst && !r->prev_error && !state_changed(r->st)) {
        if (state_note_quiet_run(r->st, now, r->touched, r->ntouched, &e) != MS_OK)
            log_msg(LOG_WARN, "could not record the run's outcome: %s", e.msg);
        return;
    }
    int rc = state_batch(r->st, &e);
    for (size_t i = 0; rc == MS_OK && i < r->ntouched; i++)
        rc = state_folder_touch(r->st, r->touched[i].folder_id, now, &e);
    if (rc == MS_OK && r->res->status == MS_OK) {
        snprintf(buf, sizeof buf, "%lld", (long long)now);
        rc = state_meta_set(r->st, "last_sync", buf, &e);
    }
    if (rc == MS_OK)
        rc = state_meta_set(r->st, "last_error", worst, &e);
    if (rc == MS_OK)
        rc = state_batch_commit(r->st, &e);
    else
        state_batch_abort(r->st);
    if (rc == MS_OK)
        return;
    /* The batch held the folders' records too (flag changes, deletions,
     * the folders' new UIDNEXT/HIGHESTMODSEQ): rolled back, the run did
     * not complete, whatever the folders reported. The files on disk are
     * matched again by the next run. */
    if (r->res->status == MS_OK || r->res->status == MS_EPARTIAL)
        snprintf(r->res->error, sizeof r->res->error, "the run's records were not saved: %.440s", e.msg);
    else if (strcmp(e.msg, r->res->error) != 0) /* not the cause the run already stops with */
        log_msg(LOG_ERROR, "%s: the run's records were not saved: %s", r->acct->name, e.msg);
    r->res->status = ms_error_worse(r->res->status, rc);
}

struct placed_result {
    size_t at; /* index into the run's folders (sel) */
    struct engine_folder_result f;
};

static int cmp_placed(const void *a, const void *b)
{
    size_t x = ((const struct placed_result *)a)->at, y = ((const struct placed_result *)b)->at;
    return (x > y) - (x < y);
}

/* The folders were visited in `order` (folders_examine_ahead), their results
 * added from res->folders[base] on (those before, such as folders gone
 * from the server, are not visited); report them in the order the account
 * lists them. */
static void results_in_folder_order(struct engine_result *res, size_t base, const size_t *order)
{
    size_t n = res->nfolders - base;
    if (!order || res->nfolders < base || n < 2)
        return;
    struct placed_result *t = xmalloc(n * sizeof *t);
    for (size_t k = 0; k < n; k++)
        t[k] = (struct placed_result){order[k], res->folders[base + k]};
    qsort(t, n, sizeof *t, cmp_placed);
    for (size_t k = 0; k < n; k++)
        res->folders[base + k] = t[k].f;
    free(t);
}

#define HELD_PUSH 1u /* push_folder held local deletions back */
#define HELD_PULL 2u /* pull_folder held server expunges back */
#define HELD_PUSH_AFTER_PULL 4u /* the push waits for the folder's record,
                                 * which the held pull saves */

/* What a folder's pass ended with, in res (the account's) and fres;
 * returns non-zero when the account's run must end (the session or the
 * store is unusable, or a stop came). */
static int folder_outcome(struct run *r, const struct selected *sel, struct engine_folder_result *fres, int frc,
                          const struct ms_error *ferr)
{
    struct engine_result *res = r->res;
    if (frc == MS_OK)
        return MS_OK;
    if (frc == MS_EPARTIAL && run_stopped(r)) {
        fres->stopped = true;
        res->status = ms_error_worse(res->status, MS_EPARTIAL);
        snprintf(res->error, sizeof res->error, "%.200s: %.300s", sel->name, ferr->msg);
        return frc;
    }
    if (frc == MS_ENET || frc == MS_ELOCAL || frc == MS_EAUTH) {
        res->status = frc;
        snprintf(res->error, sizeof res->error, "%s", ferr->msg);
        return frc;
    }
    engine_folder_fail(fres, ferr);
    log_msg(LOG_ERROR, "%s", ferr->msg);
    res->status = ms_error_worse(res->status, MS_EPARTIAL);
    return MS_OK;
}

/* The second pass over the folders, once every selected folder was listed
 * and its plan applied but for deletions: the deletions each folder held
 * back (held[k], for order[k]) are planned again and applied (a push's
 * removals on the server, then a pull's local removals), then
 * server_retention_days retires old messages. The folders are planned
 * again rather than their first plans kept, so memory does not grow with
 * the account, and a run killed between the passes leaves the deletions
 * to the next run: their records were not touched (a held pull did not
 * save the folder's new counters either). A trash folder that received
 * messages in this pass is pulled once more. Returns MS_OK, or the code
 * that ends the account's run (res says why). */
static int second_pass(struct run *r, const struct selected *sel, size_t nsel, const size_t *order,
                       const unsigned char *held, bool do_push, bool do_pull)
{
    struct engine_result *res = r->res;
    size_t base = res->nfolders - nsel;
    bool trash_before = r->trash_changed;
    r->defer_deletions = false;
    r->second_pass = true;
    r->trash_changed = false;
    int rc = MS_OK;
    size_t trash = nsel;
    for (size_t k = 0; k < nsel && rc == MS_OK; k++) {
        size_t i = order[k];
        struct engine_folder_result *fres = &res->folders[base + k];
        struct ms_error ferr = {0};
        struct maildir_stamp stamp;
        int frc = MS_OK;
        if (folders_is_trash(r, &sel[i]))
            trash = k;
        if (fres->status != MS_OK)
            continue; /* the folder failed in the first pass: nothing more */
        if (run_stopped(r)) {
            res->status = ms_error_worse(res->status, MS_EPARTIAL);
            if (!res->error[0])
                snprintf(res->error, sizeof res->error,
                         "stopped by a signal before %s; the rest comes at the next run", sel[i].name);
            rc = MS_EPARTIAL;
            break;
        }
        r->push_after_pull = false;
        if (do_push && (held[k] & HELD_PUSH))
            frc = push_folder(r, &sel[i], fres, &stamp, &ferr);
        if (frc == MS_OK && do_pull && (held[k] & HELD_PULL))
            frc = pull_folder(r, &sel[i], fres, &ferr);
        if (frc == MS_OK && do_push && (held[k] & HELD_PUSH_AFTER_PULL) && !run_stopped(r)) {
            /* the first pull completed only now: its local changes go */
            r->push_after_pull = false;
            frc = push_folder(r, &sel[i], fres, &stamp, &ferr);
        }
        if (frc == MS_OK && do_pull)
            frc = retention_retire_old(r, &sel[i], fres, &ferr);
        if (frc == MS_OK && do_pull)
            frc = tombstones_discard_kept(r, &sel[i], fres, &ferr);
        rc = folder_outcome(r, &sel[i], fres, frc, &ferr);
    }
    if (rc == MS_OK && do_pull && r->trash_changed && trash < nsel && res->folders[base + trash].status == MS_OK) {
        /* the moves into the trash folder come down in the same run */
        struct ms_error ferr = {0};
        int frc = pull_folder(r, &sel[order[trash]], &res->folders[base + trash], &ferr);
        rc = folder_outcome(r, &sel[order[trash]], &res->folders[base + trash], frc, &ferr);
    }
    r->trash_changed = r->trash_changed || trash_before;
    r->second_pass = false;
    return rc;
}

static int engine_run(const struct account *a, const struct engine_options *opt, struct engine_result *res,
                      bool do_push, bool do_pull)
{
    /* neither: `fetch`, which only replaces placeholders */
    bool do_fetch = !do_push && !do_pull;
    struct run r = {.acct = a, .opt = opt, .res = res, .rootfd = -1, .lockfd = -1,
                    .lock = PTHREAD_MUTEX_INITIALIZER,
                    .want_extra = a->connections > 1 && !opt->dry_run ? (size_t)a->connections - 1 : 0};
    struct ms_error err = {0};
    struct selected *sel = NULL;
    size_t nsel = 0, *order = NULL, base = 0;
    unsigned char *held = NULL;
    double t0 = util_now();
    memset(res, 0, sizeof *res);
    res->account = xstrdup(a->name);
    const struct engine_progress *prog = opt->progress;
    if (prog && prog->account_start)
        prog->account_start(prog->ctx, a->name);

    /* A dry run changes nothing, so it needs no lock (and creates no lock
     * file for an account that never ran). Before the login only what
     * exists is locked (engine_take_lock). */
    int rc = opt->dry_run ? MS_OK : engine_take_lock(&r, false, &err);
    if (rc == MS_OK && !(remote_caps_possible(a) & REMOTE_WRITE) && !do_pull) {
        /* A pull-only side (POP3: no REMOTE_WRITE whatever the server):
         * known before any login, and a push touches nothing. */
        log_msg(LOG_INFO, "%s: a POP3 account is pull-only: nothing to push", a->name);
        goto out;
    }
    if (rc == MS_OK)
        rc = engine_open_store_and_connect(&r, &err); /* logs in, then creates and locks */
    if (rc == MS_OK) {
        r.dirs = dirsync_new();
        state_before_batch_commit(r.st, dirs_durable, &r);
    }
    if (rc == MS_OK && !remote_can(r.remote, REMOTE_UIDS)) {
        /* One folder whose messages are named by id (POP3's UIDL). */
        if ((rc = popfetch_pull(&r, &err)) != MS_OK) {
            res->status = rc;
            if (rc != MS_EPARTIAL || run_stopped(&r))
                snprintf(res->error, sizeof res->error, "%s", err.msg);
        }
        goto out;
    }
    if (rc == MS_OK) {
        char *prev = NULL;
        struct ms_error e;
        r.prev_error = state_meta_get(r.st, "last_error", &prev, &e) != MS_OK || prev;
        free(prev);
    }
    if (rc == MS_OK) {
        rc = folders_list_selected(&r, &sel, &nsel, &err);
        if (rc == MS_OK)
            folders_report_vanished(&r, sel, nsel);
        if (rc == MS_OK && do_push)
            rc = folders_create_local(&r, &sel, &nsel, &err);
    }
    if (rc) {
        res->status = rc;
        snprintf(res->error, sizeof res->error, "%s", err.msg);
        goto out;
    }
    /* A killed run's local moves (moves_server.c), before any folder's
     * files are compared with the state. */
    if (!opt->dry_run && (rc = moves_server_recover(&r, &err)) != MS_OK) {
        res->status = rc;
        snprintf(res->error, sizeof res->error, "%s", err.msg);
        goto out;
    }
    order = xcalloc(nsel + 1, sizeof *order);
    if (do_pull && !do_push) {
        /* the opens queued ahead come first; none of those folders got
         * new mail, so none is where a message moved to (the rest:
         * moves_server_order, in there) */
        folders_examine_ahead(&r, sel, nsel, order);
    } else {
        /* A sync pulls the trash folder last: the other folders' pushes
         * move their local deletions into it, and one sync must bring
         * those down too. */
        size_t k = 0, trash = nsel;
        for (size_t i = 0; i < nsel; i++)
            if (trash == nsel && do_pull && folders_is_trash(&r, &sel[i]))
                trash = i;
            else
                order[k++] = i;
        if (do_pull)
            moves_server_order(&r, sel, order, 0, k); /* what lost messages first */
        if (trash < nsel)
            order[k] = trash;
    }
    /* Local moves between folders, paired account-wide (moves_local.c). */
    if (do_push && a->mode != MODE_BACKUP) {
        moves_local_learn(&r, sel, nsel);
        if (!opt->dry_run && (rc = moves_local_settle_gone(&r, sel, nsel, &err)) != MS_OK) {
            res->status = rc;
            snprintf(res->error, sizeof res->error, "%s", err.msg);
            goto out;
        }
    }
    base = res->nfolders;
    /* First pass: every folder is listed and its plan applied but for
     * deletions, which wait for the second pass below, when the whole
     * account's listings are known. */
    held = xcalloc(nsel + 1, sizeof *held);
    r.defer_deletions = !opt->dry_run;
    for (size_t k = 0; k < nsel; k++) {
        size_t i = order[k];
        r.held_push = r.held_pull = false;
        if (run_stopped(&r)) {
            res->status = ms_error_worse(res->status, MS_EPARTIAL);
            if (!res->error[0])
                snprintf(res->error, sizeof res->error,
                         "stopped by a signal before %s; the rest comes at the next run", sel[i].name);
            break;
        }
        struct engine_folder_result *fres = engine_add_folder_result(res, sel[i].name, sel[i].path);
        struct ms_error ferr = {0};
        int frc = MS_OK;
        struct maildir_stamp stamp = {0};
        if (prog && prog->folder_begin)
            prog->folder_begin(prog->ctx, a->name, sel[i].name, k, nsel);
        r.push_after_pull = false;
        if (do_push) {
            frc = push_folder(&r, &sel[i], fres, &stamp, &ferr);
            if (frc == MS_EPARTIAL && do_pull && !run_stopped(&r)) {
                /* the pull of the folder still goes ahead (not after a stop) */
                log_msg(LOG_ERROR, "%s", ferr.msg);
                engine_folder_fail(fres, &ferr);
                res->status = ms_error_worse(res->status, MS_EPARTIAL);
                frc = MS_OK;
            } else if (frc != MS_OK && frc != MS_ENET && frc != MS_ELOCAL && frc != MS_EAUTH) {
                engine_folder_fail(fres, &ferr);
            }
        }
        if (frc == MS_OK && do_pull)
            frc = pull_folder(&r, &sel[i], fres, &ferr); /* reports folder_done itself */
        if (frc == MS_OK && (do_pull || do_fetch) && !opt->dry_run && !run_stopped(&r))
            frc = placeholders_replace(&r, &sel[i], fres, &ferr); /* flagged or asked for */
        if (frc == MS_OK && do_pull && opt->dry_run) /* what the second pass would remove */
            frc = retention_retire_old(&r, &sel[i], fres, &ferr);
        if (frc == MS_OK && do_pull && opt->dry_run)
            frc = tombstones_discard_kept(&r, &sel[i], fres, &ferr);
        else if (frc == MS_OK && opt->progress && opt->progress->folder_done && !opt->dry_run)
            opt->progress->folder_done(opt->progress->ctx, fres);
        if (frc == MS_OK && do_pull && r.push_after_pull && !run_stopped(&r)) {
            /* The pull has matched the messages (under a new UIDVALIDITY,
             * or for the first time), the local changes kept pending:
             * push them now (if the pull held its deletions back, the
             * folder's record comes with them, and so does the push:
             * HELD_PUSH_AFTER_PULL). */
            r.push_after_pull = false;
            frc = push_folder(&r, &sel[i], fres, &stamp, &ferr);
            if (frc != MS_OK && frc != MS_ENET && frc != MS_ELOCAL && frc != MS_EAUTH)
                engine_folder_fail(fres, &ferr);
        }
        held[k] = (r.held_push ? HELD_PUSH : 0) | (r.held_pull ? HELD_PULL : 0) |
                  (r.push_after_pull && r.held_pull ? HELD_PUSH_AFTER_PULL : 0);
        if (frc == MS_OK && stamp.settled) {
            /* The push saw everything pushed; if nothing (the pull
             * included) has touched the folder since, the next push may
             * skip its scan. A failure to record only costs a scan. */
            struct maildir_stamp now;
            struct state_folder f = {0};
            struct ms_error e;
            if (maildir_change_stamp(r.rootfd, sel[i].path, &now) == 0 && now.cur_ns == stamp.cur_ns &&
                now.new_ns == stamp.new_ns && state_folder_get(r.st, sel[i].raw, &f, &e) == MS_OK && f.id &&
                !push_stamp_recorded(&r, f.id, &stamp) && push_stamp_record(&r, f.id, &stamp, &e) != MS_OK)
                log_msg(LOG_VERBOSE, "%s: %s", sel[i].name, e.msg);
            state_folder_free(&f);
        }
        if (frc == MS_OK)
            continue;
        if (frc == MS_EPARTIAL && run_stopped(&r)) {
            fres->stopped = true;
            res->status = ms_error_worse(res->status, MS_EPARTIAL);
            snprintf(res->error, sizeof res->error, "%.200s: %.300s", sel[i].name, ferr.msg);
            break;
        }
        if (frc == MS_ENET || frc == MS_ELOCAL || frc == MS_EAUTH) {
            /* the session or the store is unusable: stop the account (the
             * error is printed once, with the account's result) */
            res->status = frc;
            snprintf(res->error, sizeof res->error, "%s", ferr.msg);
            goto out;
        }
        log_msg(LOG_ERROR, "%s", ferr.msg);
        res->status = ms_error_worse(res->status, MS_EPARTIAL);
    }
    if (opt->dry_run)
        moves_server_report_left(&r);
    if (!run_stopped(&r) && res->nfolders == base + nsel && !opt->dry_run &&
        (rc = second_pass(&r, sel, nsel, order, held, do_push, do_pull)) != MS_OK)
        goto out;
out:
    results_in_folder_order(res, base, order);
    free(order);
    free(held);
    /* The server closes the session (Dovecot: the selected folder's index
     * too, ~1-2 ms) while the outcome is committed. */
    remote_logout_start(r.remote);
    for (size_t i = 0; i < r.nextra; i++)
        remote_logout_start(r.extra[i]);
    if (!do_fetch) /* a fetch is no sync: last_sync and last_error stay the last sync's */
        record_outcome(&r);
    tombstones_save_copy(&r);
    moves_server_free(&r);
    moves_local_free(&r);
    views_push_kept_free(&r);
    folders_free_selected(sel, nsel);
    engine_end_run(&r);
    res->seconds = util_now() - t0;
    if (prog && prog->account_done)
        prog->account_done(prog->ctx, res);
    return res->status;
}

int engine_pull(const struct account *a, const struct engine_options *opt, struct engine_result *res)
{
    return engine_run(a, opt, res, false, true);
}

int engine_fetch(const struct account *a, const struct engine_options *opt, struct engine_result *res)
{
    return engine_run(a, opt, res, false, false);
}

int engine_push(const struct account *a, const struct engine_options *opt, struct engine_result *res)
{
    return engine_run(a, opt, res, true, false);
}

int engine_sync(const struct account *a, const struct engine_options *opt, struct engine_result *res)
{
    return engine_run(a, opt, res, true, true);
}
