/* SPDX-License-Identifier: MIT */
/*
 * retention.c: `server_retention_days` for IMAP, POP-style offline
 * access: messages older than N days (by the server's INTERNALDATE) are
 * removed from the server once they are safely stored locally; the local
 * copy stays.
 *
 * Once a day per folder, after the folder's pull succeeded: UID SEARCH
 * BEFORE the cutoff, keep the UIDs whose row is confirmed (the file is
 * durable) and whose file is there, forget those rows (committed, each
 * replaced by a "retired" tombstone: tombstones.c), then \Deleted + UID
 * EXPUNGE of exactly those UIDs. The rows go first: a pull
 * that saw the UIDs vanish while the rows were still there would remove
 * the local copies. A dry run reports the UIDs it would remove (those
 * stored before it; what the same run would download first is not
 * counted) and changes nothing. A run killed between the two leaves the messages on
 * the server, unknown to the state (a full listing pairs them with their
 * files again by identity). Their files are unknown to the state too: no
 * push uploads them (their tombstones, whatever the config says later;
 * and while retention is on, no file older than the cutoff).
 *
 * A placeholder (max_size) is not its message: a message whose row is
 * marked as one, or whose file holds fewer than half its bytes (a
 * placeholder whose mark was lost), is not stored here and stays on the
 * server (said with -v); once its full message replaces the placeholder
 * it is retired like any other.
 */
#include "sync/engine/engine_int.h"
#include "sync/engine/dryrun.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/flags.h"
#include "sync/log.h"
#include "sync/util.h"

#define RETENTION_EVERY (24 * 3600) /* seconds between checks of a folder */

time_t retention_cutoff(const struct account *a)
{
    return a->server_retention_days > 0 ? time(NULL) - (time_t)a->server_retention_days * 86400 : 0;
}

int retention_retire_old(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                         struct ms_error *err)
{
    const struct account *a = r->acct;
    time_t cutoff = retention_cutoff(a);
    bool dry = r->opt->dry_run;
    if (!cutoff || r->rootfd < 0)
        return MS_OK;
    struct state_folder sf = {0};
    int rc = state_folder_get(r->st, sel->raw, &sf, err);
    char key[64], *last = NULL, val[32];
    snprintf(key, sizeof key, "retention_checked:%lld", (long long)sf.id);
    time_t now = time(NULL), checked = 0;
    if (rc == MS_OK && sf.id && state_meta_get(r->st, key, &last, err) == MS_OK && last)
        checked = (time_t)strtoll(last, NULL, 10);
    free(last);
    if (checked && now >= checked && now - checked < RETENTION_EVERY) {
        state_folder_free(&sf);
        return MS_OK;
    }
    if (rc || !sf.id || !sf.uidvalidity) {
        state_folder_free(&sf);
        return rc;
    }
    if (!remote_can(r->remote, REMOTE_AGE)) {
        state_folder_free(&sf);
        return MS_OK; /* the side cannot search by date */
    }
    if (!remote_can(r->remote, REMOTE_EXACT)) {
        log_msg(LOG_WARN, "%s: server_retention_days needs UIDPLUS (to expunge only those messages); the server "
                          "has none: nothing removed",
                sel->name);
        state_folder_free(&sf);
        return MS_OK;
    }
    struct maildir_folder *mf = NULL;
    struct remote_box mb;
    uint32_t *uids = NULL, *gone = NULL;
    size_t n = 0, ngone = 0, nrows = 0;
    struct state_msg *rows = NULL;
    struct state_placeholder *marked = NULL;
    size_t nmarked = 0;
    if ((rc = maildir_folder_open(r->rootfd, sel->path, false, &mf, err)) ||
        (rc = r->remote->ops->select(r->remote, sel->raw, !dry, &mb, err)))
        goto out;
    if (mb.uidvalidity != sf.uidvalidity)
        goto out; /* the next pull matches the messages again first */
    if ((rc = r->remote->ops->search_before(r->remote, cutoff, &uids, &n, err)) ||
        (rc = state_msg_get_uids(r->st, sf.id, uids, n, &rows, &nrows, err)) ||
        (rc = state_placeholder_list(r->st, sf.id, &marked, &nmarked, err)))
        goto out;
    gone = xcalloc(nrows + 1, sizeof *gone);
    for (size_t i = 0; i < nrows; i++) {
        struct local_msg l = {0};
        struct ms_error e;
        if (rows[i].pending || !rows[i].uniq || maildir_find_hint(mf, rows[i].uniq, rows[i].flags, &l, &e) != MS_OK)
            continue; /* only what is safely stored locally */
        free(l.uniq);
        free(l.name);
        /* ... in full: no placeholder (LF for CRLF: at least half) */
        if (UTIL_FIND_UID(marked, nmarked, uid, rows[i].uid) || l.size * 2 < rows[i].size) {
            log_msg(LOG_VERBOSE, "%s: UID %u stays on the server: only a placeholder of it is here", sel->name,
                    rows[i].uid);
            continue;
        }
        gone[ngone++] = rows[i].uid;
    }
    if (dry) {
        for (size_t i = 0; i < ngone; i++)
            dryrun_report(r->opt, &(struct engine_planned){.account = a->name, .folder = sel->name,
                                                          .kind = ENGINE_PLAN_RETIRE, .uid = gone[i], .size = 0,
                                                          .count = 0, .flags = 0, .flags_removed = 0, .file = NULL,
                                                          .from = NULL, .from_uid = 0});
        fres->retired += ngone;
        goto out;
    }
    snprintf(val, sizeof val, "%lld", (long long)now);
    rc = state_begin(r->st, err);
    for (size_t i = 0, k = 0; rc == MS_OK && i < ngone; i++) {
        while (rows[k].uid != gone[i]) /* gone is a subsequence of rows */
            k++;
        rc = tombstones_retire(r, sf.id, &rows[k], err);
        if (rc == MS_OK)
            rc = state_msg_delete(r->st, sf.id, gone[i], err);
    }
    if (rc == MS_OK)
        rc = state_meta_set(r->st, key, val, err);
    if (rc == MS_OK)
        rc = state_commit(r->st, err);
    else
        state_rollback(r->st);
    if (rc == MS_OK && ngone)
        rc = r->remote->ops->remove(r->remote, gone, ngone, err);
    if (rc == MS_OK && ngone) {
        fres->retired += ngone;
        log_msg(LOG_INFO, "%s: %zu messages older than %d days removed from the server (kept locally)", sel->name,
                ngone, a->server_retention_days);
    }
out:
    free(uids);
    free(gone);
    state_msgs_free(rows, nrows);
    state_placeholders_free(marked, nmarked);
    maildir_folder_close(mf);
    state_folder_free(&sf);
    return rc;
}
