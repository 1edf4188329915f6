/* SPDX-License-Identifier: MIT */
/*
 * pull.c: one folder, server -> local: the server's listing (in full, or
 * incremental and merged with the recorded rows), the local scan (or a
 * lookup of the affected files only), the plan, the local changes it asks
 * for and the downloads (deliver.c); a folder found unchanged by its STATUS
 * alone is skipped.
 *
 * Crash safety. A pull moves messages in batches: the bodies stream into
 * files in tmp/ (deliver.c; a helper thread starts a syncfs() every 256 KiB
 * while a batch streams in, so most of it is on disk by the batch's own),
 * and the delivery journal (sync/engine/journal.h, where the steps and their
 * order are written down) makes each batch durable with one syncfs(),
 * journals it as pending rows, renames the files into new/ or cur/, fsyncs
 * the directories and confirms the rows, in a committer thread while the
 * next batch streams in. journal_recover() finishes what a killed run
 * left. So no message is recorded without its file, and none is delivered
 * twice.
 *
 * Flag changes rename first and record after; deletions unlink first and
 * forget after. Both are idempotent when replayed by the planner, because
 * it compares with what the state recorded.
 *
 * Windows. A first pull of a big folder (nothing recorded of it, no local
 * file in it) lists, plans and downloads PULL_WINDOW UIDs at a time, from
 * the top UID down (newest first, as a first pull goes), so its memory is
 * bounded by the window, not by the folder: the listing, the plan and the
 * protocol library's answer of 100,000 messages would be ~20 MB. Each
 * window's downloads are journalled and recorded as usual; the folder's
 * own record (UIDNEXT, HIGHESTMODSEQ as of the open, last_sync) is saved
 * only with the last window's, so a run killed between windows leaves an
 * incomplete folder that the next run completes, in windows too (each
 * window's rows, their files looked up by the names they were given;
 * rows already recorded are not fetched again). Messages that arrive or
 * change after the open are the next run's changes, as in an unwindowed
 * pull.
 *
 * The same windows bound a resync told of more changes than a window
 * (another client's "mark all read" on a big folder): the side lists the
 * top window's changes (remote_known.window), then each window below
 * (fetch_changes_range: UID FETCH lo:hi (CHANGEDSINCE m)), and each
 * window's changes, rows and files are planned, applied and recorded
 * before the next is taken; the next one is asked for ahead (list_ahead,
 * next_window_ahead), so the server lists it meanwhile and the windows
 * cost no round trip each. The folder's HIGHESTMODSEQ is saved only
 * with the last window: a run killed in between is told every change
 * again. Only while no recorded message is gone: a deletion is weighed
 * by the mass-deletion guard against the whole folder, so then the
 * changes are listed whole, as before.
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/engine/dryrun.h"
#include "sync/engine/journal.h"
#include "sync/log.h"
#include "sync/local/maildir.h"
#include "sync/plan/plan.h"
#include "sync/util.h"

/* Unfinished tmp/ files older than this are swept (Maildir spec: 36 h). */
#define TMP_MAX_AGE (36 * 3600)

/* UIDs a window of a first pull lists, plans and downloads (see above):
 * ~100 bytes a message in the listing, the plan and its views. */
#define PULL_WINDOW 10000
/* UIDs a window of changes spans: a changed message costs more than a new
 * one (its row, its file looked up, its flag update in the batch: ~0.7 KB
 * a message measured at N=200000, bench (g): peak RSS 20.6 MiB with
 * windows of 10,000, 16.2 with 4,000, 15.8 with 2,048), so its windows are
 * smaller. Also the most changes a listing holds whole (remote_known.window). */
#define CHANGES_WINDOW 2048

/* ------------------------------------------------------------------ */
/* local changes from the plan */

/* finish: when not NULL, the folder's row is saved in the same
 * transaction (one commit, one fsync, for a folder with nothing to fetch). */
/* hold: the plan's PLAN_LOCAL_DELETEs (and backup's PLAN_BACKUP_KEEPs)
 * are left for the second pass (struct run's defer_deletions): neither
 * the file nor its row is touched. */
static int apply_local_changes(struct run *r, struct maildir_folder *mf, int64_t folder_id, const struct plan *p,
                               bool hold, struct local_msg *local, size_t nlocal, struct engine_folder_result *fres,
                               struct state_folder *finish, struct ms_error *err)
{
    int rc = MS_OK;
    size_t flagged0 = fres->flagged, deleted0 = fres->deleted;
    /* Files first (rename/unlink), records after, in one transaction. */
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        const struct plan_action *a = &p->actions[i];
        if (hold && (a->op == PLAN_LOCAL_DELETE || a->op == PLAN_BACKUP_KEEP))
            continue;
        struct local_msg *l = a->uniq ? views_local_by_uniq(local, nlocal, a->uniq) : NULL;
        if (a->op == PLAN_LOCAL_DELETE && l) {
            int x = maildir_remove(mf, l, err);
            if (x == MS_OK || x == 1)
                fres->deleted++;
            else
                rc = x;
        } else if (a->op == PLAN_LOCAL_FLAGS && l) {
            int x = maildir_set_flags(mf, l, a->flags, err);
            if (x == MS_OK)
                fres->flagged++;
            else if (x != 1)
                rc = x;
        }
    }
    if (rc)
        return rc;
    /* Durable before the batch commits (the state's hook waits), in the
     * background meanwhile. */
    if ((fres->flagged != flagged0 || fres->deleted != deleted0) && (rc = dirsync_add_folder(r->dirs, mf, err)))
        return rc;
    /* Flag changes and expunges are recorded after the files were renamed
     * or removed (and their directories fsynced: see above); those of all
     * such folders of a run share one batch, committed before the next
     * delivery (state_begin) or with the run's outcome: one fsync instead
     * of one per folder. A crash before the commit loses only records of
     * what the files already show: the next run is told the same changes
     * again (its HIGHESTMODSEQ was not advanced either) and finds the
     * files already as the server wants. */
    rc = state_batch(r->st, err);
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        const struct plan_action *a = &p->actions[i];
        if (hold && (a->op == PLAN_LOCAL_DELETE || a->op == PLAN_BACKUP_KEEP))
            continue;
        if (a->op == PLAN_LOCAL_DELETE || a->op == PLAN_FORGET)
            rc = state_msg_delete(r->st, folder_id, a->uid, err);
        else if (a->op == PLAN_BACKUP_KEEP)
            rc = tombstones_keep_backup(r, folder_id, a->uid, err);
        else if (a->op == PLAN_LOCAL_FLAGS || a->op == PLAN_STATE_FLAGS)
            rc = state_msg_set_flags(r->st, folder_id, a->uid, a->state_flags, a->keywords, err);
    }
    if (rc == MS_OK && finish)
        rc = state_folder_save(r->st, finish, err);
    if (rc) {
        state_batch_abort(r->st);
        return rc;
    }
    /* With nothing to fetch the records wait in the batch; before a
     * delivery, the folder's own records go first. */
    return finish ? MS_OK : state_batch_commit(r->st, err);
}

/* ------------------------------------------------------------------ */
/* one folder */

/* The state row of the folder, created on first sight. */
static int folder_row(struct run *r, const struct selected *sel, struct state_folder *sf, struct ms_error *err)
{
    int rc = state_folder_get(r->st, sel->raw, sf, err);
    if (rc || sf->id || r->opt->dry_run)
        return rc;
    sf->name = xstrdup(sel->raw);
    sf->path = xstrdup(sel->path);
    return state_folder_save(r->st, sf, err);
}


/* The server's folder as a full listing, rebuilt from what the state
 * recorded plus what changed since: the changed messages (new ones among
 * them) replace or join the recorded ones; recorded UIDs that vanished, or
 * that are missing from the list of all UIDs (when one is given), go. */
/* UIDs, sorted ascending. */
struct uid_list {
    uint32_t *v;
    size_t n;
};

static void merge_changes(const struct state_msg *st, size_t ns, const struct remote_msg *chg, size_t nchg,
                          const uint32_t *vanished, size_t nvanished, const uint32_t *all, size_t nall,
                          bool have_all, struct remote_msg **out, size_t *nout, struct uid_list *affected)
{
    struct remote_msg *m = xcalloc(ns + nchg, sizeof *m);
    size_t i = 0, j = 0, k = 0;
    affected->v = xmalloc((ns + 1) * sizeof *affected->v);
    affected->n = 0;
    while (i < ns || j < nchg) {
        if (j < nchg && (i == ns || chg[j].uid <= st[i].uid)) {
            if (i < ns && st[i].uid == chg[j].uid)
                affected->v[affected->n++] = st[i++].uid;
            m[k] = chg[j++];
            m[k].keywords = m[k].keywords ? xstrdup(m[k].keywords) : NULL;
            k++;
            continue;
        }
        const struct state_msg *s = &st[i++];
        if (util_uid_find(vanished, nvanished, s->uid) || (have_all && !util_uid_find(all, nall, s->uid))) {
            affected->v[affected->n++] = s->uid;
            continue;
        }
        m[k++] = (struct remote_msg){.uid = s->uid, .flags = s->flags,
                                   .keywords = s->keywords ? xstrdup(s->keywords) : NULL, .size = s->size};
    }
    *out = m;
    *nout = k;
}

/* Incremental listings (remote.h, open): the side lists only what changed
 * since the last sync where it can (IMAP RFC 7162). REMOTE_LIST_VANISHED
 * (QRESYNC) gives changed messages and vanished UIDs; REMOTE_LIST_ALL_UIDS
 * (CONDSTORE alone) changed messages, and expunges show as recorded UIDs
 * missing from the list of all. Whether it can (modseq recorded,
 * UIDVALIDITY unchanged, HIGHESTMODSEQ not gone back) the side decides;
 * otherwise it lists everything. */
/* The state rows the incremental path needs. With vanished UIDs: only those of
 * the changed and vanished UIDs, looked up one by one, so a resync's local
 * cost follows the changes, not the folder (unless the server reports more
 * than LOOKUP_MAX of them: then one read of all rows is cheaper). A list of
 * all UIDs finds expunges by comparing with every row: all rows.
 * When vanished UIDs hit rows (the plan will delete), *guard_total is the
 * folder's number of state rows, for the planner's mass-deletion guard:
 * what the state knew, never the server's EXISTS, which a VANISHED that
 * came after it was counted (another client emptying the folder between
 * our SELECT and FETCH) or a lying server inflates. Counted only then, so
 * a resync without expunges pays nothing for it. *doubt is set when the
 * vanished set is not to be trusted without looking again: the known rows
 * it leaves plus the new messages do not make the server's EXISTS, or it
 * would delete enough to trip the guard. Then the caller lists all UIDs. */
#define LOOKUP_MAX 4096

static int changed_rows(struct run *r, const struct state_folder *sf, const struct remote_listing *l,
                        struct state_msg **st, size_t *ns, size_t *guard_total, bool *doubt, struct ms_error *err)
{
    /* With REMOTE_LIST_ALL_UIDS, l->uids are all UIDs, not vanished ones. */
    bool vanished = l->kind == REMOTE_LIST_VANISHED;
    const struct remote_msg *chg = l->msgs;
    size_t nchg = l->nmsgs;
    const uint32_t *van = vanished ? l->uids : NULL;
    size_t nvan = vanished ? l->nuids : 0;
    *guard_total = 0;
    *doubt = false;
    bool all = !vanished || nchg + nvan > LOOKUP_MAX;
    int rc;
    if (all) {
        rc = state_msg_list(r->st, sf->id, st, ns, err);
    } else {
        uint32_t *want = xmalloc((nchg + nvan + 1) * sizeof *want);
        size_t n = 0, i = 0, j = 0;
        while (i < nchg || j < nvan) { /* both sorted: merge */
            if (j == nvan || (i < nchg && chg[i].uid < van[j]))
                want[n++] = chg[i++].uid;
            else
                want[n++] = van[j++];
        }
        rc = state_msg_get_uids(r->st, sf->id, want, n, st, ns, err);
        free(want);
    }
    if (rc || !vanished)
        return rc;
    size_t gone = 0, strangers = 0;
    for (size_t k = 0; k < *ns; k++)
        gone += util_uid_find(van, nvan, (*st)[k].uid) != NULL;
    if (gone == 0)
        return MS_OK; /* nothing to delete: nothing for the guard to weigh */
    for (size_t i = 0, k = 0; i < nchg; i++) { /* changed UIDs without a row: new mail */
        while (k < *ns && (*st)[k].uid < chg[i].uid)
            k++;
        strangers += !(k < *ns && (*st)[k].uid == chg[i].uid);
    }
    size_t held = *ns;
    if (!all && (rc = state_msg_count(r->st, sf->id, &held, err)))
        return rc;
    *guard_total = held;
    *doubt = held - gone + strangers != l->box.exists || plan_guard_trips(gone, gone, held, r->acct->max_delete);
    return MS_OK;
}

/* In a REMOTE_LIST_VANISHED listing (QRESYNC), changed messages the last
 * sync already knew may come without their size. One the state has no row for (one
 * skipped as too large, say) is planned like a new message, which needs
 * it: ask the server for those. */
static int sizes_of_strangers(struct run *r, const struct state_folder *sf, const struct state_msg *st, size_t ns,
                              struct remote_msg *chg, size_t nchg, struct ms_error *err)
{
    uint32_t *want = NULL;
    size_t n = 0, j = 0;
    for (size_t i = 0; i < nchg; i++) {
        while (j < ns && st[j].uid < chg[i].uid)
            j++;
        if (chg[i].uid < sf->uidnext && chg[i].size == 0 && !(j < ns && st[j].uid == chg[i].uid)) {
            want = xrealloc(want, (n + 1) * sizeof *want);
            want[n++] = chg[i].uid;
        }
    }
    if (n == 0)
        return MS_OK;
    struct remote_msg *got = NULL;
    size_t ngot = 0;
    int rc = r->remote->ops->fetch_meta(r->remote, want, n, &got, &ngot, err);
    free(want);
    if (rc)
        return rc;
    for (size_t i = 0, k = 0; i < nchg && k < ngot; i++) {
        while (k < ngot && got[k].uid < chg[i].uid)
            k++;
        if (k < ngot && got[k].uid == chg[i].uid) {
            free(chg[i].keywords);
            chg[i] = got[k];
            got[k].keywords = NULL;
        }
    }
    remote_msgs_free(got, ngot);
    return MS_OK;
}

/* An incremental listing (l) turned into the full one the planner wants:
 * the recorded rows the changes touch (changed_rows), merged with the
 * changes. *done is false when the listing cannot be trusted (doubt):
 * then the caller lists everything. */
static int use_changes(struct run *r, const struct selected *sel, const struct state_folder *sf,
                       struct remote_listing *l, struct state_msg **st, size_t *ns, size_t *guard_total,
                       struct remote_msg **rm, size_t *nr, bool *done, struct uid_list *affected,
                       struct ms_error *err)
{
    bool vanished = l->kind == REMOTE_LIST_VANISHED;
    bool doubt;
    int rc;
    *done = false;
    if ((rc = changed_rows(r, sf, l, st, ns, guard_total, &doubt, err)))
        return rc;
    if (doubt) {
        /* *done stays false: the caller compares all UIDs instead. */
        log_msg(LOG_VERBOSE, "%s: %zu vanished UIDs against %u EXISTS: listing the folder in full", sel->name,
                l->nuids, l->box.exists);
        *guard_total = 0;
        return MS_OK;
    }
    if (vanished && (rc = sizes_of_strangers(r, sf, *st, *ns, l->msgs, l->nmsgs, err)))
        return rc;
    merge_changes(*st, *ns, l->msgs, l->nmsgs, vanished ? l->uids : NULL, vanished ? l->nuids : 0,
                  vanished ? NULL : l->uids, vanished ? 0 : l->nuids, !vanished, rm, nr, affected);
    log_msg(LOG_VERBOSE, "%s: %zu messages changed since modseq %llu (%s)", sel->name, l->nmsgs,
            (unsigned long long)sf->highestmodseq, l->how ? l->how : "incremental");
    *done = true;
    return MS_OK;
}

/* How a folder is pulled in windows of UIDs, top down (see the top of the
 * file); mode PULL_WHOLE: in one pass. */
enum pull_mode {
    PULL_WHOLE = 0,
    PULL_FIRST,   /* a first pull: nothing recorded, no local file */
    PULL_RESUME,  /* a first pull a killed run left incomplete: the rows of
                     each window and their files, looked up by name */
    PULL_CHANGES, /* an incremental listing with more changes than a window:
                     the changes of each window and their rows and files */
    PULL_FULL,    /* a full listing with more differences than a window
                     (full_in_windows counted them): each window listed
                     again, compared, planned and applied in turn */
};

struct pull_window {
    enum pull_mode mode;
    uint32_t size;   /* UIDs a window spans (0: no window wanted) */
    uint32_t from;   /* the lowest UID of the window being done; 0: the last */
    /* PULL_CHANGES: */
    uint64_t modseq;        /* the changes since this */
    struct remote_msg *chg; /* the changes the listing gave: those >= chg_from */
    size_t nchg;
    uint32_t chg_from;      /* 0: chg is every change; else those below are
                               asked for window by window (fetch_changes_range) */
    uint32_t *gone;         /* the recorded UIDs the server no longer has
                               (PULL_FULL too: only those go) */
    size_t ngone;
    size_t held;            /* the folder's rows, for the mass-deletion guard */
    bool deferred;          /* a window left its deletions to the second
                               pass: the folder's record waits for that */
};

static void pull_window_free(struct pull_window *w)
{
    remote_msgs_free(w->chg, w->nchg);
    free(w->gone);
    w->chg = NULL;
    w->gone = NULL;
    w->nchg = w->ngone = 0;
}

/* The UIDs of rows st[0..ns), for local_lookup. */
static void rows_affected(const struct state_msg *st, size_t ns, struct uid_list *affected)
{
    affected->v = xmalloc((ns + 1) * sizeof *affected->v);
    for (size_t i = 0; i < ns; i++)
        affected->v[i] = st[i].uid;
    affected->n = ns;
}

/* The entries of the sorted v[0..n) within lo..hi: *first and the count. */
static size_t uid_slice(const uint32_t *v, size_t n, uint32_t lo, uint32_t hi, size_t *first)
{
    size_t a = 0, b;
    while (a < n && v[a] < lo)
        a++;
    for (b = a; b < n && v[b] <= hi; b++)
        ;
    *first = a;
    return b - a;
}

/* The window below the one just done (win->from, > 1, its lowest UID):
 * lo..hi, win->size UIDs down to UID 1. next_window lists it; asked for
 * ahead, it must be the same window. */
static void window_below(const struct pull_window *win, uint32_t *lo, uint32_t *hi)
{
    *hi = win->from - 1;
    *lo = *hi > win->size ? *hi - win->size + 1 : 1;
}

/* The window below the one just listed (win->from its lowest UID), asked
 * for ahead where the side can (list_ahead): the server lists it while
 * this one is applied, a round trip less a window. Only where the next
 * window is listed anew: PULL_FULL's, and PULL_CHANGES' below the changes
 * the open gave. */
static int next_window_ahead(struct run *r, const struct pull_window *win, struct ms_error *err)
{
    const struct remote_ops *ops = r->remote->ops;
    if (!ops->list_ahead || win->from <= 1 || (win->mode != PULL_CHANGES && win->mode != PULL_FULL))
        return MS_OK;
    uint32_t lo, hi;
    window_below(win, &lo, &hi);
    if (win->mode == PULL_CHANGES && !(win->chg_from && lo < win->chg_from))
        return MS_OK;
    return ops->list_ahead(r->remote, lo, hi, win->mode == PULL_CHANGES ? win->modseq : 0, err);
}

/* One window lo..hi of an incremental listing (PULL_CHANGES): its changes
 * (from win->chg, or asked for), the recorded messages gone in it, the rows
 * of both, merged into the window's listing. */
static int changes_window(struct run *r, const struct state_folder *sf, struct pull_window *win, uint32_t lo,
                          uint32_t hi, struct state_msg **st, size_t *ns, struct remote_msg **rm, size_t *nr,
                          struct uid_list *affected, struct ms_error *err)
{
    struct remote_msg *chg = NULL;
    size_t nchg = 0;
    int rc = MS_OK;
    if (win->chg_from && lo < win->chg_from) {
        rc = r->remote->ops->fetch_changes_range(r->remote, lo, hi, win->modseq, &chg, &nchg, err);
        if (rc)
            return rc;
    } else {
        chg = xcalloc(win->nchg + 1, sizeof *chg);
        for (size_t i = 0; i < win->nchg; i++)
            if (win->chg[i].uid >= lo && win->chg[i].uid <= hi) {
                chg[nchg] = win->chg[i];
                chg[nchg].keywords = chg[nchg].keywords ? xstrdup(chg[nchg].keywords) : NULL;
                chg[nchg++].id = NULL;
            }
    }
    size_t g0, ng = uid_slice(win->gone, win->ngone, lo, hi, &g0);
    const uint32_t *gone = win->gone + g0;
    uint32_t *want = xmalloc((nchg + ng + 1) * sizeof *want);
    size_t n = 0;
    for (size_t i = 0, j = 0; i < nchg || j < ng;) /* both sorted: merge */
        want[n++] = j == ng || (i < nchg && chg[i].uid < gone[j]) ? chg[i++].uid : gone[j++];
    rc = state_msg_get_uids(r->st, sf->id, want, n, st, ns, err);
    free(want);
    if (rc == MS_OK)
        rc = sizes_of_strangers(r, sf, *st, *ns, chg, nchg, err);
    if (rc == MS_OK)
        merge_changes(*st, *ns, chg, nchg, gone, ng, NULL, 0, false, rm, nr, affected);
    remote_msgs_free(chg, nchg);
    return rc;
}

/* Whether an incremental listing l goes in windows of UIDs (*windowed),
 * and if so its top window planned: when it holds only the top window's
 * changes (l->from: more changed than a window), or its vanished UIDs or
 * all UIDs are more than LOOKUP_MAX (comparing them with the rows would
 * read every row), in a folder of more than a window of UIDs. The
 * recorded UIDs (4 bytes each) are compared with the vanished ones, or
 * with all UIDs: those gone are deleted window by window, once the
 * mass-deletion guard and the doubt of changed_rows have weighed them
 * against the whole folder (when either objects, or new mail spans more
 * than the top window, the rest of the changes is listed and l made whole,
 * for the caller's path of old). */
static int changes_top_window(struct run *r, const struct selected *sel, const struct state_folder *sf,
                              struct remote_listing *l, struct pull_window *win, size_t *guard_total,
                              struct state_msg **st, size_t *ns, struct remote_msg **rm, size_t *nr,
                              struct uid_list *affected, bool *windowed, struct ms_error *err)
{
    *windowed = false;
    const struct remote_box *mb = &l->box;
    uint32_t top_from = l->from ? l->from : mb->uidnext > win->size + 1 ? mb->uidnext - win->size : 0;
    if (!win->size || !r->remote->ops->fetch_changes_range || top_from <= 1 ||
        (!l->from && l->nuids <= LOOKUP_MAX))
        return MS_OK;
    uint32_t *rows = NULL;
    size_t nrows = 0;
    int rc = state_msg_uids(r->st, sf->id, &rows, &nrows, err);
    if (rc)
        return rc;
    bool vanished = l->kind == REMOTE_LIST_VANISHED;
    uint32_t *gone = xmalloc((nrows + 1) * sizeof *gone);
    size_t ngone = 0, strangers = 0;
    for (size_t i = 0, j = 0; i < nrows; i++) { /* both sorted: merge */
        while (j < l->nuids && l->uids[j] < rows[i])
            j++;
        bool listed = j < l->nuids && l->uids[j] == rows[i];
        if (vanished ? listed : !listed)
            gone[ngone++] = rows[i];
    }
    for (size_t i = 0, k = 0; i < l->nmsgs; i++) { /* changed UIDs without a row: new mail */
        while (k < nrows && rows[k] < l->msgs[i].uid)
            k++;
        strangers += !(k < nrows && rows[k] == l->msgs[i].uid);
    }
    free(rows);
    /* The new mail is all among the changes listed when it is in the top
     * window: only then are the strangers counted whole. */
    bool whole_new = sf->uidnext >= top_from;
    if (ngone && (!whole_new || nrows - ngone + strangers != mb->exists ||
                  plan_guard_trips(ngone, ngone, nrows, r->acct->max_delete))) {
        free(gone);
        log_msg(LOG_VERBOSE, "%s: %zu recorded messages gone: weighed with every change at once", sel->name, ngone);
        if (!l->from)
            return MS_OK;
        struct remote_msg *rest = NULL;
        size_t nrest = 0;
        if ((rc = r->remote->ops->fetch_changes_range(r->remote, 1, l->from - 1, sf->highestmodseq, &rest, &nrest,
                                                      err)))
            return rc;
        rest = xrealloc(rest, (nrest + l->nmsgs + 1) * sizeof *rest);
        memcpy(rest + nrest, l->msgs, l->nmsgs * sizeof *rest); /* all of them above the rest */
        free(l->msgs);
        l->msgs = rest;
        l->nmsgs += nrest;
        l->from = 0;
        return MS_OK;
    }
    log_msg(LOG_VERBOSE, "%s: %zu changed%s, %zu gone since modseq %llu: in windows of %u UIDs, from %u down",
            sel->name, l->nmsgs, l->from ? " in the top window" : "", ngone, (unsigned long long)sf->highestmodseq,
            win->size, top_from);
    win->mode = PULL_CHANGES;
    win->from = top_from;
    win->modseq = sf->highestmodseq;
    win->chg = l->msgs;
    win->nchg = l->nmsgs;
    win->chg_from = l->from;
    win->gone = gone;
    win->ngone = ngone;
    win->held = nrows;
    l->msgs = NULL;
    l->nmsgs = 0;
    *guard_total = nrows;
    *windowed = true;
    rc = changes_window(r, sf, win, top_from, UINT32_MAX, st, ns, rm, nr, affected, err);
    if (rc == MS_OK)
        rc = next_window_ahead(r, win, err);
    if (win->chg_from) { /* the top window's changes: the windows below ask for theirs */
        remote_msgs_free(win->chg, win->nchg);
        win->chg = NULL;
        win->nchg = 0;
    }
    return rc;
}

/* A full listing that holds only its top window (l->from) although the
 * pull is not in windows: the rest, so that l is every message. */
static int listing_rest(struct run *r, struct remote_listing *l, struct ms_error *err)
{
    struct remote_msg *rest = NULL;
    size_t nrest = 0;
    int rc = r->remote->ops->fetch_meta_range(r->remote, 1, l->from - 1, &rest, &nrest, err);
    if (rc)
        return rc;
    rest = xrealloc(rest, (nrest + l->nmsgs + 1) * sizeof *rest);
    memcpy(rest + nrest, l->msgs, l->nmsgs * sizeof *rest);
    free(l->msgs);
    l->msgs = rest;
    l->nmsgs += nrest;
    l->from = 0;
    return MS_OK;
}

/* opt->pull_window where set (tests make it small), else dflt. */
static uint32_t window_or(const struct run *r, uint32_t dflt)
{
    return r->opt->pull_window ? r->opt->pull_window : dflt;
}

/* A full listing of a folder synced before (a server without CONDSTORE,
 * or a folder listed in full every time: messages skipped for max_size),
 * compared with the rows window by window, top down (PULL_WINDOW UIDs:
 * the open's top window, then list_windows, which the IMAP side asks for
 * two at a time and without sizes, against the rows lo..hi; sizes_of_new
 * asks for the sizes it needs), keeping only what differs:
 * the messages new to the state or whose flags changed, the rows whose
 * message changed or is gone. The planner then sees only those, as with
 * an incremental listing, and the local files are looked up by their
 * rows' names: neither the server's listing nor the rows nor the scan of
 * a folder of 200,000 messages are held whole (they were ~59 MiB and
 * twice mbsync's time, measured with the bench's --hide CONDSTORE). */
struct full_compare {
    struct run *r;
    const struct state_folder *sf;
    /* the window being compared */
    struct remote_msg *w;  /* its listing */
    size_t nw, at;         /* at: the first entry not below the row being read */
    unsigned char *seen;   /* per entry: 0 no row, 1 the same as its row, 2 changed */
    /* every window so far */
    size_t held;           /* rows read */
    uint32_t *gone;        /* recorded UIDs the listing lacks */
    size_t ngone, capgone;
    struct remote_msg *chg; /* messages new to the state or changed */
    size_t nchg;
    struct state_msg *rows; /* the rows of those changed, and of those gone */
    size_t nrows;
    size_t strangers;       /* messages without a row */
    size_t ndiff;           /* messages new or changed, counted */
    bool below;             /* one of them below the recorded UIDNEXT */
    size_t cap;             /* more differences than this: counted only */
    bool counting;          /* past cap: chg and rows are not kept */
};

static bool full_row_differs(void *ctx, const struct state_msg *row)
{
    struct full_compare *d = ctx;
    d->held++;
    while (d->at < d->nw && d->w[d->at].uid < row->uid)
        d->at++;
    if (d->at == d->nw || d->w[d->at].uid != row->uid) {
        if (d->ngone == d->capgone) {
            d->capgone = d->capgone ? 2 * d->capgone : 64;
            d->gone = xrealloc(d->gone, d->capgone * sizeof *d->gone);
        }
        d->gone[d->ngone++] = row->uid;
        return true;
    }
    const struct remote_msg *m = &d->w[d->at];
    bool same = m->flags == row->flags && strcmp(m->keywords ? m->keywords : "", row->keywords ? row->keywords : "") == 0;
    d->seen[d->at] = same ? 1 : 2;
    return !same;
}

/* One window lo..hi of the listing (w: taken): compared with its rows. */
static int full_compare_window(void *ctx, uint32_t lo, uint32_t hi, struct remote_msg *w, size_t nw,
                               struct ms_error *err)
{
    struct full_compare *d = ctx;
    struct state_msg *kept = NULL;
    size_t nkept = 0;
    d->w = w;
    d->nw = nw;
    d->at = 0;
    d->seen = xcalloc(nw + 1, 1);
    int rc = state_msg_range_brief_if(d->r->st, d->sf->id, lo, hi, full_row_differs, d, &kept, &nkept, err);
    if (rc == MS_OK) {
        d->chg = xrealloc(d->chg, (d->nchg + nw + 1) * sizeof *d->chg);
        for (size_t i = 0; i < nw; i++) {
            if (d->seen[i] == 1) {
                free(w[i].keywords);
                free(w[i].id);
                continue;
            }
            d->strangers += d->seen[i] == 0;
            d->below = d->below || (d->seen[i] == 0 && w[i].uid < d->sf->uidnext);
            d->chg[d->nchg++] = w[i];
            d->ndiff++;
        }
        free(w);
        d->rows = xrealloc(d->rows, (d->nrows + nkept + 1) * sizeof *d->rows);
        memcpy(d->rows + d->nrows, kept, nkept * sizeof *d->rows);
        d->nrows += nkept;
        free(kept);
        if (d->counting || d->nchg + d->nrows > d->cap) {
            /* Too many to hold: from now on only counted (and the gone
             * UIDs kept); the caller goes through the windows again. */
            remote_msgs_free(d->chg, d->nchg);
            state_msgs_free(d->rows, d->nrows);
            d->chg = NULL;
            d->rows = NULL;
            d->nchg = d->nrows = 0;
            d->counting = true;
        }
    } else {
        remote_msgs_free(w, nw);
    }
    free(d->seen);
    d->seen = NULL;
    d->w = NULL;
    d->nw = 0;
    return rc;
}

static int cmp_remote_uid(const void *a, const void *b)
{
    return util_cmp_u32(&((const struct remote_msg *)a)->uid, &((const struct remote_msg *)b)->uid);
}

static int cmp_state_uid(const void *a, const void *b)
{
    return util_cmp_u32(&((const struct state_msg *)a)->uid, &((const struct state_msg *)b)->uid);
}

/* What d kept, as use_changes gives a listing: its rows (handed over)
 * into *st, its changes merged with them into *rm, their UIDs into
 * *affected (merge_changes). */
static void full_compare_take(struct full_compare *d, struct state_msg **st, size_t *ns, struct remote_msg **rm,
                              size_t *nr, struct uid_list *affected)
{
    merge_changes(d->rows, d->nrows, d->chg, d->nchg, d->gone, d->ngone, NULL, 0, false, rm, nr, affected);
    *st = d->rows;
    *ns = d->nrows;
    d->rows = NULL;
    d->nrows = 0;
}

static void full_compare_free(struct full_compare *d)
{
    remote_msgs_free(d->chg, d->nchg);
    state_msgs_free(d->rows, d->nrows);
    free(d->gone);
}

/* The windows may come without sizes (list_windows): the messages new to
 * the state need theirs (max_size, the progress, re-matching): asked for,
 * one round trip, only when there are such. */
static int sizes_of_new(struct run *r, struct full_compare *d, struct ms_error *err)
{
    uint32_t *want = xmalloc((d->nchg + 1) * sizeof *want);
    size_t n = 0;
    for (size_t i = 0, j = 0; i < d->nchg; i++) {
        while (j < d->nrows && d->rows[j].uid < d->chg[i].uid)
            j++;
        if (d->chg[i].size == 0 && !(j < d->nrows && d->rows[j].uid == d->chg[i].uid))
            want[n++] = d->chg[i].uid;
    }
    if (n == 0) {
        free(want);
        return MS_OK;
    }
    struct remote_msg *got = NULL;
    size_t ngot = 0;
    int rc = r->remote->ops->fetch_meta(r->remote, want, n, &got, &ngot, err);
    free(want);
    for (size_t i = 0, k = 0; rc == MS_OK && i < d->nchg && k < ngot; i++) {
        while (k < ngot && got[k].uid < d->chg[i].uid)
            k++;
        if (k < ngot && got[k].uid == d->chg[i].uid && d->chg[i].size == 0)
            d->chg[i].size = got[k].size;
    }
    remote_msgs_free(got, ngot);
    return rc;
}

/* One window lo..hi of PULL_FULL: listed again (with sizes) and compared
 * with its rows; of the rows now gone only those full_in_windows found
 * gone (win->gone, weighed by the guard) go, a later expunge waits for
 * the next run. */
static int full_window(struct run *r, const struct state_folder *sf, struct pull_window *win, uint32_t lo,
                       uint32_t hi, struct state_msg **st, size_t *ns, struct remote_msg **rm, size_t *nr,
                       struct uid_list *affected, struct ms_error *err)
{
    struct remote_msg *w = NULL;
    size_t nw = 0;
    int rc = r->remote->ops->fetch_meta_range(r->remote, lo, hi == UINT32_MAX ? 0 : hi, &w, &nw, err);
    if (rc)
        return rc;
    struct full_compare d = {.r = r, .sf = sf, .cap = SIZE_MAX};
    rc = full_compare_window(&d, lo, hi, w, nw, err);
    if (rc == MS_OK) {
        size_t o = 0, k = 0;
        for (size_t i = 0; i < d.ngone; i++)
            if (util_uid_find(win->gone, win->ngone, d.gone[i]))
                d.gone[o++] = d.gone[i];
        d.ngone = o;
        for (size_t i = 0, j = 0; i < d.nrows; i++) { /* rows gone since: as if unchanged */
            while (j < d.nchg && d.chg[j].uid < d.rows[i].uid)
                j++;
            bool listed = j < d.nchg && d.chg[j].uid == d.rows[i].uid;
            if (listed || util_uid_find(d.gone, d.ngone, d.rows[i].uid))
                d.rows[k++] = d.rows[i];
            else
                state_msg_free(&d.rows[i]);
        }
        d.nrows = k;
        full_compare_take(&d, st, ns, rm, nr, affected);
    }
    full_compare_free(&d);
    return rc;
}

/* l: the open's listing of the top window (l->from > 1). On return with
 * *done, *st, *rm and *affected are what differs (as use_changes gives
 * them) and l is freed. Otherwise l is the whole listing (rebuilt from the
 * rows where nothing differed): when a message new to the state is below
 * the recorded UIDNEXT (one skipped for max_size, say: the caller's
 * re-match compares such messages with the local files no row names, which
 * needs every row and file), or when the count does not add up against
 * EXISTS while rows are gone (the folder changed between two windows:
 * listed again in one piece, as an incremental listing in doubt is). */
static int full_in_windows(struct run *r, const struct selected *sel, const struct state_folder *sf,
                           struct pull_window *win, struct remote_listing *l, struct state_msg **st, size_t *ns,
                           size_t *guard_total, struct remote_msg **rm, size_t *nr, struct uid_list *affected,
                           bool *done, struct ms_error *err)
{
    uint32_t size = window_or(r, PULL_WINDOW);
    struct full_compare d = {.r = r, .sf = sf, .cap = window_or(r, CHANGES_WINDOW)};
    const struct remote_ops *ops = r->remote->ops;
    *done = false;
    /* the top window, then those below it (asked for ahead where the side can) */
    int rc = full_compare_window(&d, l->from, UINT32_MAX, l->msgs, l->nmsgs, err);
    l->msgs = NULL;
    l->nmsgs = 0;
    if (rc == MS_OK && ops->list_windows) {
        rc = ops->list_windows(r->remote, l->from, size, full_compare_window, &d, err);
    } else {
        for (uint32_t hi = l->from - 1; rc == MS_OK && hi >= 1;) {
            uint32_t lo = hi > size ? hi - size + 1 : 1;
            struct remote_msg *w = NULL;
            size_t nw = 0;
            if ((rc = ops->fetch_meta_range(r->remote, lo, hi, &w, &nw, err)) == MS_OK)
                rc = full_compare_window(&d, lo, hi, w, nw, err);
            hi = lo - 1;
        }
    }
    if (rc == MS_OK) {
        if (d.nchg) /* qsort() must not see NULL, even with nothing to sort */
            qsort(d.chg, d.nchg, sizeof *d.chg, cmp_remote_uid);
        if (d.nrows)
            qsort(d.rows, d.nrows, sizeof *d.rows, cmp_state_uid);
        if (d.ngone)
            qsort(d.gone, d.ngone, sizeof *d.gone, util_cmp_u32);
        rc = sizes_of_new(r, &d, err);
    }
    bool doubt = d.ngone && d.held - d.ngone + d.strangers != l->box.exists;
    /* Counted only: the windows are gone through again, each applied in
     * turn (PULL_FULL), once the guard has weighed every gone row. */
    bool again = d.counting && !d.below && !doubt && !plan_guard_trips(d.ngone, d.ngone, d.held, r->acct->max_delete);
    if (rc == MS_OK)
        log_msg(LOG_VERBOSE, "%s: listed in full in windows of %u UIDs: %zu messages new or changed, %zu of %zu gone%s",
                sel->name, size, d.ndiff, d.ngone, d.held,
                d.below ? "; new ones below UIDNEXT: compared whole"
                : doubt ? "; listed again in one piece"
                : again ? "; more than a window changed: applied window by window"
                : d.counting ? "; listed again in one piece (weighed whole)" : "");
    if (rc == MS_OK && again) {
        /* In windows of changes (CHANGES_WINDOW: a changed message costs
         * more than a listed one), from the top down. */
        uint32_t wsize = window_or(r, CHANGES_WINDOW);
        uint32_t next = l->box.uidnext, top = next > wsize + 1 ? next - wsize : next ? 1 : l->from;
        win->mode = PULL_FULL;
        win->size = wsize;
        win->from = top > 1 ? top : 0;
        win->gone = d.gone;
        win->ngone = d.ngone;
        win->held = d.held;
        d.gone = NULL;
        *guard_total = d.held;
        rc = full_window(r, sf, win, top, UINT32_MAX, st, ns, rm, nr, affected, err);
        if (rc == MS_OK)
            rc = next_window_ahead(r, win, err);
        *done = true;
    } else if (rc == MS_OK && (d.counting || (doubt && !d.below))) {
        /* In one piece, as before: nothing held to rebuild it from, or
         * the windows' counts in doubt. */
        rc = ops->fetch_meta_range(r->remote, 1, 0, &l->msgs, &l->nmsgs, err);
        l->from = 0;
    } else if (rc == MS_OK && d.below) {
        /* Whole again: every row where nothing changed, plus the changes. */
        struct state_msg *all = NULL;
        size_t nall = 0;
        struct uid_list unused = {0};
        if ((rc = state_msg_list_brief(r->st, sf->id, &all, &nall, err)) == MS_OK)
            merge_changes(all, nall, d.chg, d.nchg, d.gone, d.ngone, NULL, 0, false, &l->msgs, &l->nmsgs, &unused);
        free(unused.v);
        state_msgs_free(all, nall);
        l->from = 0;
    } else if (rc == MS_OK) {
        /* The rows kept are those that changed or are gone: the listing
         * of the planner is the changed messages (merge_changes). */
        *guard_total = d.ngone ? d.held : 0;
        full_compare_take(&d, st, ns, rm, nr, affected);
        *done = true;
    }
    full_compare_free(&d);
    return rc;
}

/* The server's view of the folder; *changed when its UIDVALIDITY differs
 * from the recorded one. *incremental when only the changes since the last
 * sync were listed (the side decides whether it can: remote.h, open): then
 * *affected holds the recorded UIDs whose flags changed or that are gone,
 * the only ones the local side must look at. */
/* win: a first pull in windows (PULL_FIRST, PULL_RESUME: win->size), or
 * the window an incremental listing may go in (PULL_WHOLE with
 * win->size); on return win->from is where the listing began (0: it is
 * whole) and win->mode says how the windows go on (PULL_WHOLE: none). */
static int remote_snapshot(struct run *r, const struct selected *sel, const struct state_folder *sf,
                           struct pull_window *win, struct state_msg **st, size_t *ns, size_t *guard_total,
                           struct remote_box *mb, struct remote_msg **rm, size_t *nr, bool *changed,
                           bool *incremental, struct uid_list *affected, struct ms_error *err)
{
    struct remote_known known = {0};
    struct remote_listing l = {0};
    int rc;
    *incremental = false;
    *guard_total = 0;
    /* Incremental only after a complete sync: then the state is whole. */
    if (sf->last_sync && sf->uidvalidity && sf->highestmodseq) {
        const struct remote_status *early = folders_known_status(r, sel->raw);
        known = (struct remote_known){.uidvalidity = sf->uidvalidity, .uidnext = sf->uidnext,
                                      .modseq = sf->highestmodseq, .status_uidnext = early ? early->uidnext : 0,
                                      .window = 0};
    }
    known.window = win->size;
    known.vanished_max = r->opt->vanished_max;
    win->from = 0;
    if ((rc = r->remote->ops->open(r->remote, sel->raw, &known, &l, err)))
        return rc;
    *mb = l.box;
    bool full = l.kind == REMOTE_LIST_FULL;
    if (!full) {
        bool windowed = false;
        if (l.from && !r->remote->ops->fetch_changes_range)
            rc = ms_error_set(err, MS_EUSAGE, "%s: a listing in windows without fetch_changes_range", sel->name);
        else
            rc = changes_top_window(r, sel, sf, &l, win, guard_total, st, ns, rm, nr, affected, &windowed, err);
        if (rc || windowed) {
            remote_listing_free(&l);
            *incremental = windowed;
            return rc;
        }
        rc = use_changes(r, sel, sf, &l, st, ns, guard_total, rm, nr, incremental, affected, err);
        remote_listing_free(&l);
        if (rc || *incremental)
            return rc;
        state_msgs_free(*st, *ns);
        *st = NULL;
        *ns = 0;
    }
    *changed = sf->uidvalidity && sf->uidvalidity != mb->uidvalidity;
    if (*changed)
        log_msg(LOG_WARN, "%s: UIDVALIDITY changed (%u -> %u): re-matching messages by identity, deleting nothing",
                sel->name, sf->uidvalidity, mb->uidvalidity);
    if (full && l.from > 1 && win->mode == PULL_RESUME && !*changed) {
        /* The rest of a first pull: the top window's rows, whose files are
         * looked up by name (local_lookup), as in the windows below it. */
        if ((rc = state_msg_list_range(r->st, sf->id, l.from, UINT32_MAX, st, ns, err))) {
            remote_listing_free(&l);
            return rc;
        }
        log_msg(LOG_VERBOSE, "%s: completing a first pull in windows of %u UIDs: %zu recorded in the top window",
                sel->name, win->size, *ns);
        rows_affected(*st, *ns, affected);
        *incremental = true;
        *rm = l.msgs;
        *nr = l.nmsgs;
        win->from = l.from;
        free(l.uids);
        return MS_OK;
    }
    if (full && l.from > 1 && win->mode == PULL_WHOLE && !*changed && sf->last_sync && sf->id) {
        bool done;
        rc = full_in_windows(r, sel, sf, win, &l, st, ns, guard_total, rm, nr, affected, &done, err);
        if (rc || done) {
            remote_listing_free(&l);
            *incremental = done;
            if (win->mode != PULL_FULL)
                win->from = 0;
            return rc;
        }
    }
    if (full && l.from > 1 && win->mode != PULL_FIRST && (rc = listing_rest(r, &l, err))) {
        remote_listing_free(&l);
        return rc;
    }
    if (win->mode != PULL_FIRST)
        win->mode = PULL_WHOLE;
    /* The full listing: every row; brief (no Message-ID, hash, server id:
     * ~150 B a row at 200,000 rows) unless re-matching under a new
     * UIDVALIDITY, which needs them all. What else looks at a row's
     * identity reads it by UID (moves_server_note_vanished). */
    if (sf->id && (rc = (*changed ? state_msg_list : state_msg_list_brief)(r->st, sf->id, st, ns, err))) {
        remote_listing_free(&l);
        return rc;
    }
    if (full) {
        *rm = l.msgs;
        *nr = l.nmsgs;
        win->from = l.from > 1 ? l.from : 0;
        if (!win->from)
            win->mode = PULL_WHOLE;
        free(l.uids); /* empty in a full listing (NULL or not) */
        return MS_OK;
    }
    /* The incremental listing was in doubt: list the open folder in full. */
    if (mb->exists == 0)
        return MS_OK;
    return r->remote->ops->fetch_meta_range(r->remote, 1, 0, rm, nr, err);
}

static void report_skips(const char *folder, const struct plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->actions[i].op == PLAN_SKIP_LARGE)
            log_msg(LOG_WARN, "%s: UID %u skipped: %llu bytes is over max_size", folder, p->actions[i].uid,
                    (unsigned long long)p->actions[i].size);
}

static int cmp_local_uniq(const void *a, const void *b)
{
    return strcmp(((const struct local_msg *)a)->uniq, ((const struct local_msg *)b)->uniq);
}

/* The local files of the affected messages only, found by the names they
 * were given (a directory read only for files a MUA renamed): with
 * incremental server changes, the local work stays proportional to the
 * changes, not to the folder. */
static int local_lookup(struct maildir_folder *mf, const struct state_msg *st, size_t ns,
                        const struct uid_list *affected, struct local_msg **out, size_t *nout, struct ms_error *err)
{
    struct local_msg *l = xcalloc(affected->n + 1, sizeof *l);
    size_t k = 0, i = 0, j = 0;
    int rc = MS_OK;
    while (i < ns && j < affected->n && rc == MS_OK) {
        if (st[i].uid < affected->v[j]) {
            i++;
        } else if (st[i].uid > affected->v[j]) {
            j++;
        } else {
            int f = st[i].uniq ? maildir_find_hint(mf, st[i].uniq, st[i].flags, &l[k], err) : 1;
            if (f == MS_OK)
                k++;
            else if (f != 1)
                rc = f;
            i++, j++;
        }
    }
    if (rc) {
        maildir_msgs_free(l, k);
        return rc;
    }
    qsort(l, k, sizeof *l, cmp_local_uniq);
    *out = l;
    *nout = k;
    return MS_OK;
}

/* A folder whose UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ are what the last
 * complete sync recorded has nothing to pull: one STATUS, no SELECT, no
 * listing, no scan. That keeps a no-op run flat in the number of messages. */
static int unchanged_since_last_sync(struct run *r, const struct selected *sel, struct state_folder *sf,
                                     bool *unchanged, struct ms_error *err)
{
    struct remote_status st;
    *unchanged = false;
    if (!remote_can(r->remote, REMOTE_CHANGES) || !pull_may_be_unchanged(sf))
        return MS_OK;
    const struct remote_status *early = folders_known_status(r, sel->raw);
    if (r->trash_changed && folders_is_trash(r, sel))
        early = NULL; /* this run's push moved messages into it since */
    if (early && early->uidvalidity) {
        st = *early;
    } else {
        int rc = r->remote->ops->status(r->remote, sel->raw, &st, err);
        if (rc)
            return rc;
    }
    if (st.uidvalidity != sf->uidvalidity || st.uidnext != sf->uidnext || st.highestmodseq != sf->highestmodseq)
        return MS_OK;
    log_msg(LOG_VERBOSE, "%s: unchanged since the last sync", sel->name);
    *unchanged = true;
    if (!r->opt->dry_run) {
        r->touched = xrealloc(r->touched, (r->ntouched + 1) * sizeof *r->touched);
        r->touched[r->ntouched++] = (struct state_quiet_folder){sf->id, sf->uidvalidity, sf->uidnext,
                                                                 sf->highestmodseq};
    }
    return MS_OK;
}

/* local[idx[0..n)]: the placeholders rematch_folder read; those whose
 * message is here in full are removed (placeholder_sweep_file). */
static int drop_placeholders(struct run *r, const struct selected *sel, struct maildir_folder *mf, int64_t folder_id,
                             struct local_msg *local, const size_t *idx, size_t n, struct ms_error *err)
{
    struct placeholder_sweep s = {.r = r, .folder = sel->name, .mf = mf, .folder_id = folder_id, .buf = NULL, .head_len = 0,
                                  .rows = NULL, .nrows = 0, .marked = NULL, .nmarked = 0, .have_rows = false,
                                  .removed = 0};
    int rc = MS_OK;
    for (size_t i = 0; i < n && rc == MS_OK; i++) {
        enum placeholder_fate fate;
        rc = placeholder_sweep_file(&s, &local[idx[i]], &fate, err);
    }
    struct ms_error e;
    int erc = placeholder_sweep_end(&s, rc == MS_OK ? err : &e);
    return rc ? rc : erc;
}

/* How the folder may go in windows (see the top of the file): a first
 * pull (nothing recorded of it and no message in its local folder, so
 * each window's plan needs no row and no file outside the window), the
 * rest of one a killed run left (rows recorded, the folder's record not
 * complete, nothing pending: each window's rows and their files), or an
 * incremental listing with more changes than a window (the side says so:
 * remote_known.window). Never in a dry run (it reports one plan). */
static int pull_window_of(struct run *r, const struct state_folder *sf, struct maildir_folder *mf,
                          struct pull_window *win, struct ms_error *err)
{
    pull_window_free(win);
    memset(win, 0, sizeof *win); /* PULL_WHOLE, no window */
    if (r->opt->dry_run || !mf || !remote_can(r->remote, REMOTE_UIDS))
        return MS_OK;
    uint32_t size = window_or(r, PULL_WINDOW);
    if (sf->last_sync) {
        /* The changes since the last sync in windows (PULL_CHANGES), or a
         * full listing compared with the rows in windows (full_in_windows). */
        win->size = window_or(r, remote_can(r->remote, REMOTE_CHANGES) ? CHANGES_WINDOW : PULL_WINDOW);
        return MS_OK;
    }
    size_t rows = 0, nlocal = 0;
    struct local_msg *local = NULL;
    int rc;
    if (sf->id && (rc = state_msg_count(r->st, sf->id, &rows, err)))
        return rc;
    if (sf->pending_count || sf->appends_count)
        return MS_OK;
    if (rows) {
        if (sf->uidvalidity) {
            win->mode = PULL_RESUME;
            win->size = size;
        }
        return MS_OK;
    }
    if ((rc = maildir_scan_names(mf, &local, &nlocal, err)))
        return rc;
    maildir_msgs_free(local, nlocal);
    if (nlocal == 0) {
        win->mode = PULL_FIRST;
        win->size = size;
    }
    return MS_OK;
}

/* The next window below the one just done (win->from: its lowest UID,
 * > 1): its listing, and for PULL_RESUME and PULL_CHANGES its rows (and
 * the UIDs whose files local_lookup finds). */
static int next_window(struct run *r, const struct selected *sel, const struct state_folder *sf,
                       struct pull_window *win, struct state_msg **st, size_t *ns, struct remote_msg **rm,
                       size_t *nr, struct uid_list *affected, struct ms_error *err)
{
    uint32_t lo, hi;
    window_below(win, &lo, &hi);
    win->from = lo > 1 ? lo : 0;
    log_msg(LOG_VERBOSE, "%s: next window: UIDs %u:%u", sel->name, lo, hi);
    if (r->opt->stop_at_window && ++r->windows_turned == r->opt->stop_at_window)
        raise(SIGSTOP); /* a test's hook (engine_options.stop_at_window) */
    if (win->mode == PULL_CHANGES || win->mode == PULL_FULL) {
        int rc = (win->mode == PULL_CHANGES ? changes_window : full_window)(r, sf, win, lo, hi, st, ns, rm, nr,
                                                                            affected, err);
        return rc ? rc : next_window_ahead(r, win, err);
    }
    int rc = r->remote->ops->fetch_meta_range(r->remote, lo, hi, rm, nr, err);
    if (rc || win->mode != PULL_RESUME)
        return rc;
    if ((rc = state_msg_list_range(r->st, sf->id, lo, hi, st, ns, err)))
        return rc;
    rows_affected(*st, *ns, affected);
    return MS_OK;
}

int pull_folder(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                       struct ms_error *err)
{
    struct state_folder sf = {0};
    struct maildir_folder *mf = NULL;
    struct remote_box mb = {0};
    struct remote_msg *rm = NULL;
    struct local_msg *local = NULL;
    struct state_msg *state = NULL, *old = NULL;
    struct leftover *left = NULL;
    size_t *placeholders = NULL, nplaceholders = 0;
    struct uid_list affected = {0};
    struct pull_window win = {0};
    size_t nr = 0, nlocal = 0, nstate = 0, nold = 0, nmatched = 0, nleft = 0;
    struct plan_input in = {0};
    struct plan p = {0};
    bool uv_changed = false;
    const struct engine_progress *prog = r->second_pass ? NULL : r->opt->progress;

    int rc = folder_row(r, sel, &sf, err);
    if (rc)
        goto out;
    bool exists = r->rootfd >= 0 && maildir_folder_exists(r->rootfd, sel->path);
    if (!exists && sf.last_sync) {
        rc = ms_error_set(err, MS_EPARTIAL,
                          "%s: local folder %s/%s is missing although it was synced before; not touching it",
                          sel->name, r->acct->maildir, sel->path);
        goto out;
    }
    bool unchanged = false;
    if ((rc = unchanged_since_last_sync(r, sel, &sf, &unchanged, err)) || unchanged)
        goto out;
    if (exists || !r->opt->dry_run) {
        rc = maildir_folder_open(r->rootfd, sel->path, !r->opt->dry_run, &mf, err);
        if (rc)
            goto out;
        if (!r->opt->dry_run) {
            if (sf.id && sf.pending_count && (rc = journal_recover(r->st, mf, sf.id, JOURNAL_UID, err)))
                goto out;
            maildir_sweep_tmp(mf, TMP_MAX_AGE, NULL);
        }
    }
    if (sf.appends_count && !r->opt->dry_run) {
        /* A push was killed between an upload and its record: record what
         * arrived before the listing shows it as a stranger to download. */
        if ((rc = r->remote->ops->select(r->remote, sel->raw, false, &mb, err)) ||
            (mb.uidvalidity == sf.uidvalidity && (rc = push_settle_uploads(r, sel, sf.id, mb.uidvalidity, err))))
            goto out;
    }
    bool incremental;
    size_t guard_total = 0;
    size_t skipped = 0;
    bool announced = false; /* folder_start called (once for all windows) */
    if ((rc = pull_window_of(r, &sf, mf, &win, err)))
        goto out;
    if ((rc = remote_snapshot(r, sel, &sf, &win, &state, &nstate, &guard_total, &mb, &rm, &nr, &uv_changed,
                              &incremental, &affected, err)))
        goto out;
    bool first = win.mode == PULL_FIRST || win.mode == PULL_RESUME; /* a first pull in windows */
    if (!sf.uidvalidity && mb.uidvalidity && sf.id && !r->opt->dry_run) {
        /* A first pull records the rows of what it delivered before the
         * folder's record is complete: the record must say now which
         * UIDVALIDITY their UIDs belong to, or a run after an interrupted
         * first pull and a UIDVALIDITY change would read the old rows as
         * the new UIDs (messages left out, others fetched twice). */
        sf.uidvalidity = mb.uidvalidity;
        if ((rc = state_folder_save(r->st, &sf, err)))
            goto out;
    }
    if (mf && incremental)
        rc = local_lookup(mf, state, nstate, &affected, &local, &nlocal, err);
    else if (mf) /* names: no stat of every file (the plan needs none; leftovers get theirs) */
        rc = maildir_scan_names(mf, &local, &nlocal, err);
    if (rc)
        goto out;
    if (first && win.from)
        log_msg(LOG_VERBOSE, "%s: first pull of %u messages in windows of %u UIDs: UIDs %u:%u", sel->name,
                mb.exists, win.size, win.from, mb.uidnext ? mb.uidnext - 1 : 0);
next_window:;
    /* From here on, once per window (one pass without windows): the
     * window's listing is rm, its rows state, its files local (a first
     * pull: no row, no local file). */
    bool more = win.mode != PULL_WHOLE && win.from != 0;
    if (uv_changed) {
        /* The old UIDs mean nothing now; their rows still tell which local
         * file is which message and what was synced last: rematch_folder()
         * replaces them with the re-matched rows in one transaction. */
        old = state;
        nold = nstate;
        state = NULL;
        nstate = 0;
    }
    if (mf && (rc = rematch_folder(r, mf, sf.id, &state, &nstate, old, nold, local, nlocal, rm, nr, &nmatched, &left,
                                   &nleft, &placeholders, &nplaceholders, err)))
        goto out;
    if (nmatched)
        log_msg(LOG_INFO, "%s: %zu local messages matched to the server by identity", sel->name, nmatched);

    views_plan_input(&in, r->acct, r->opt, state, nstate, local, nlocal, rm, nr);
    in.guard_total = guard_total;
    /* A first pull (nothing recorded of the folder) fetches the newest
     * first: the mail a person wants now is there first. */
    in.newest_first = nstate == 0 && !sf.last_sync;
    if (plan_pull(&in, &p) != 0) {
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
        goto out;
    }
    if (p.guard_tripped && r->defer_deletions) {
        /* Another client may have moved these messages into a folder this
         * pass pulls later (moves_server.c): the folder waits whole for
         * the second pass, planned again once those moves are recorded. */
        moves_server_note_vanished(r, sel, sf.id, state, nstate, local, nlocal, rm, nr, NULL);
        r->held_pull = true;
        goto out;
    }
    if (p.guard_tripped) {
        rc = ms_error_set(err, MS_EPARTIAL,
                          "%s: left untouched: the server no longer lists %zu of the %zu messages synced "
                          "before, more than max_delete (%d%%) allows or all of them; if that is right, run "
                          "again with --force",
                          sel->name, p.guard_deletes, p.guard_total, r->acct->max_delete);
        goto out;
    }
    /* Messages another client moved between folders: renamed, not
     * deleted here and downloaded there (moves_server.c). */
    moves_server_note_vanished(r, sel, sf.id, state, nstate, local, nlocal, rm, nr, &p);
    if ((rc = moves_server_take(r, sel, mf, sf.id, &p, rm, nr, &fres->moved, err)))
        goto out;
    skipped += p.nskip;
    fres->skipped = skipped;
    report_skips(sel->name, &p);
    if (r->opt->dry_run) {
        /* Gmail: what the run would link instead of downloading */
        if ((rc = gmail_links_take(r, sel, mf, sf.id, &p, rm, nr, fres, err)))
            goto out;
        dryrun_report_pull(r->opt, r->acct->name, sel->name, &p);
        fres->fetched = p.nfetch + fres->linked;
        fres->bytes = p.fetch_bytes;
        fres->flagged = p.nflags;
        fres->deleted = p.ndelete;
        goto out;
    }
    /* Deletions wait for every folder's listing (the second pass): until
     * then the folder's record keeps its old counters, so a run killed
     * in between is told the same expunges again. */
    bool hold = r->defer_deletions && (p.ndelete || p.nkept);
    /* A folder that lost messages is still to be pulled in this pass: the
     * downloads wait for the second pass, when whatever moved here from
     * there is known (moves_server.c). */
    bool hold_fetch = r->defer_deletions && (p.nfetch || p.nplaceholder) && moves_server_more_to_come(r);
    if (hold || hold_fetch)
        r->held_pull = true;
    if (hold_fetch)
        log_msg(LOG_VERBOSE, "%s: %zu new messages wait for the folders that lost messages", sel->name, p.nfetch);
    /* Gmail: what another folder has on disk already is linked, not downloaded. */
    if (!hold_fetch && (rc = gmail_links_take(r, sel, mf, sf.id, &p, rm, nr, fres, err)))
        goto out;
    /* A pull in windows announces the folder once, with its first window:
     * every message it holds, and the bytes estimated from that window. */
    if (prog && prog->folder_start && !r->opt->dry_run && !announced) {
        announced = win.mode != PULL_WHOLE;
        size_t nmsgs = hold_fetch ? 0 : p.nfetch;
        uint64_t nbytes = hold_fetch ? 0 : p.fetch_bytes;
        if (win.mode == PULL_FIRST && !hold_fetch && p.nfetch && mb.exists > p.nfetch) {
            nbytes = nbytes / p.nfetch * mb.exists;
            nmsgs = mb.exists;
        }
        /* A resumed one: what is not recorded yet (the top window alone
         * may have nothing left to fetch); the bytes estimated from this
         * window's messages, if it has any. */
        size_t have = 0;
        struct ms_error e;
        if (win.mode == PULL_RESUME && !hold_fetch && sf.id && state_msg_count(r->st, sf.id, &have, &e) == MS_OK &&
            mb.exists > have && mb.exists - have > nmsgs) {
            nbytes = p.nfetch ? nbytes / p.nfetch * (mb.exists - have) : 0;
            nmsgs = mb.exists - have;
        }
        prog->folder_start(prog->ctx, r->acct->name, sel->name, nmsgs, nbytes);
    }
    /* The folder's record as it will be once everything is in: saved with
     * the last transaction of the folder's work. Messages skipped for
     * max_size are in no record: a folder that has some is listed in full
     * every time (modseq 0), so they come in once the limit allows, and
     * the incremental paths never lose sight of them. */
    struct state_folder done = sf;
    done.uidvalidity = mb.uidvalidity;
    done.uidnext = mb.uidnext;
    done.highestmodseq = skipped ? 0 : mb.highestmodseq;
    done.last_sync = (int64_t)time(NULL);
    /* Not before the last window: the folder is complete only then. */
    /* Nor while a window's deletions wait for the second pass: saved
     * now, the record would tell that pass the folder is done, and the
     * deletions were lost. */
    win.deferred = win.deferred || hold;
    bool later = win.deferred || more;
    if ((rc = apply_local_changes(r, mf, sf.id, &p, hold, local, nlocal, fres,
                                  p.nfetch || p.nplaceholder || later ? NULL : &done, err)))
        goto out;
    /* Placeholders (max_size, placeholders = yes) before the downloads: the
     * folder's row goes with the downloads' last records, or with these
     * when there are none. */
    if (p.nplaceholder && !hold_fetch &&
        (rc = placeholders_deliver(r, sel, mf, sf.id, &p, fres, p.nfetch || later ? NULL : &done, err)))
        goto out;
    if (p.nfetch && !hold_fetch && (rc = deliver_fetch_new(r, sel, mb.uidvalidity, mf, sf.id, &p, left, nleft, local, nlocal, fres,
                                            later ? NULL : &done, err)))
        goto out;
    if (fres->failed) {
        /* The folder's record stays as it was (deliver_fetch_new did not save
         * it), so the next run looks for these messages again. */
        rc = ms_error_set(err, MS_EPARTIAL, "%s: %zu messages could not be fetched", sel->name, fres->failed);
        goto out;
    }
    /* The placeholders rematch_folder found beside messages now here in
     * full (downloaded above or found on disk) go: a pull-only user must
     * not keep both. */
    if (nplaceholders && (rc = drop_placeholders(r, sel, mf, sf.id, local, placeholders, nplaceholders, err)))
        goto out;
    if (more && !hold_fetch) {
        /* The next window down: this one's listing and plan go first. */
        plan_free(&p);
        views_plan_input_free(&in);
        remote_msgs_free(rm, nr);
        rm = NULL;
        nr = 0;
        rematch_free_leftovers(left, nleft);
        left = NULL;
        nleft = 0;
        free(placeholders);
        placeholders = NULL;
        nplaceholders = 0;
        if (win.mode == PULL_RESUME || win.mode == PULL_CHANGES || win.mode == PULL_FULL) {
            /* and its rows and files */
            state_msgs_free(state, nstate);
            state = NULL;
            nstate = 0;
            maildir_msgs_free(local, nlocal);
            local = NULL;
            nlocal = 0;
            free(affected.v);
            affected = (struct uid_list){0};
        }
        if (run_stopped(r))
            goto out; /* a signal: the folder stays incomplete, the next run completes it */
        if ((rc = next_window(r, sel, &sf, &win, &state, &nstate, &rm, &nr, &affected, err)))
            goto out;
        if (win.mode != PULL_FIRST && (rc = local_lookup(mf, state, nstate, &affected, &local, &nlocal, err)))
            goto out;
        goto next_window;
    }
out:
    if (rc)
        engine_folder_fail(fres, err);
    plan_free(&p);
    views_plan_input_free(&in);
    state_msgs_free(state, nstate);
    state_msgs_free(old, nold);
    rematch_free_leftovers(left, nleft);
    free(placeholders);
    free(affected.v);
    pull_window_free(&win);
    maildir_msgs_free(local, nlocal);
    remote_msgs_free(rm, nr);
    maildir_folder_close(mf);
    state_folder_free(&sf);
    if (prog && prog->folder_done && !r->opt->dry_run)
        prog->folder_done(prog->ctx, fres);
    return rc;
}
