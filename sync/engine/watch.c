/* SPDX-License-Identifier: MIT */
/*
 * watch.c: `mailsync watch`: a sync pass, then a wait for the server to
 * report a change (an idle session set up before the pass), for a local
 * change in a synced folder (localwatch.h), or for the interval, until a
 * signal stops it.
 *
 * Local changes and the watch's own: what changes in the Maildir while a
 * pass runs is mostly the pass's own doing (deliveries, flag renames),
 * and hearing it would start pass after pass. So a change heard during a
 * pass in a folder the pass left alone is the user's (made after the pass
 * scanned it) and starts another pass; one heard in a folder the pass
 * changed itself may be either, and starts another pass only if the
 * Maildir still differs from what the pass recorded (engine_status: new,
 * reflagged or removed files not pushed yet), so a delivery never does.
 * The same check follows a pass that synced folders not watched before
 * (the first pass, new folders). New directories during a pass are taken
 * as the pass's (it makes them for new server folders). A pass that changes nothing hears nothing
 * (reading is no change), so the watch settles.
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "sync/local/localwatch.h"
#include "sync/log.h"
#include "sync/util.h"

/* ------------------------------------------------------------------ */
/* watch */

/* Tell the watcher the watch is alive (struct engine_watch's alive). */
static void alive(const struct engine_watch *w)
{
    if (w->alive)
        w->alive(w->ctx);
}

/* Debounce: once a local change is heard, wait until the folders have
 * been quiet for this long (a mail reader renaming many files, a folder
 * being made), but no longer than SETTLE_MAX_MS in all. */
#define SETTLE_QUIET_MS 1000
#define SETTLE_MAX_MS 5000

/* Wait up to ms for lw's fd (none: just sleep). True if it became readable. */
static bool poll_local(struct local_watch *lw, int ms)
{
    int fd = local_watch_fd(lw);
    if (fd < 0) {
        struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&t, NULL);
        return false;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&p, 1, ms) > 0;
}

/* Sleep ms unless *stop comes first (looked at every 200 ms), saying
 * alive at least every w->alive_ms. With lw, a local change ends it early:
 * returns true then. */
static bool nap(int ms, const struct engine_watch *w, struct local_watch *lw)
{
    int since_alive = 0;
    while (ms > 0 && !*w->stop) {
        int slice = ms > 200 ? 200 : ms;
        double t0 = util_now();
        if (poll_local(lw, slice) && local_watch_drain(lw, NULL, NULL) > 0)
            return true;
        int spent = (int)((util_now() - t0) * 1000); /* less when woken for nothing */
        spent = spent < 1 ? 1 : spent > slice ? slice : spent;
        ms -= spent;
        since_alive += spent;
        if (w->alive_ms > 0 && since_alive >= w->alive_ms) {
            alive(w);
            since_alive = 0;
        }
    }
    return false;
}

/* A local change was heard: let the folders settle (see SETTLE_*). */
static void settle(const struct engine_watch *w, struct local_watch *lw)
{
    int waited = 0, quiet = 0;
    while (quiet < SETTLE_QUIET_MS && waited < SETTLE_MAX_MS && !*w->stop) {
        int slice = 200;
        if (poll_local(lw, slice) && local_watch_drain(lw, NULL, NULL) > 0)
            quiet = 0;
        else
            quiet += slice;
        waited += slice;
        if (w->alive_ms > 0 && waited % w->alive_ms < slice)
            alive(w);
    }
}

/* Wait on the idle session for a change, interval_ms at most, in pieces of
 * w->alive_ms with an alive between them (each piece is one IDLE). A
 * local change (lw) ends the wait too, with *local set. */
static int wait_for_change(struct remote *idle, int interval_ms, const struct engine_watch *w,
                           struct local_watch *lw, bool *changed, bool *local, struct ms_error *e)
{
    *changed = *local = false;
    int left = interval_ms;
    while (left > 0 && !*w->stop) {
        int piece = w->alive_ms > 0 && w->alive_ms < left ? w->alive_ms : left;
        double t0 = util_now();
        int rc = idle->ops->wait(idle, piece, w->stop, local_watch_fd(lw), changed, e);
        if (rc != MS_OK || *changed)
            return rc;
        if (poll_local(lw, 0) && local_watch_drain(lw, NULL, NULL) > 0) {
            *local = true;
            return MS_OK;
        }
        int spent = (int)((util_now() - t0) * 1000);
        left -= spent > 0 ? spent : 1;
        alive(w);
    }
    return MS_OK;
}

struct heard {
    const struct engine_result *res;
    size_t maybe_ours; /* in folders the pass changed */
};

/* A change heard during a pass may be the pass's own when the pass
 * changed that folder locally (counted in maybe_ours), or made
 * directories (ctx: struct heard). */
static bool pass_made_it(void *ctx, const char *relpath, bool dir_event)
{
    struct heard *h = ctx;
    if (dir_event)
        return true;
    for (size_t i = 0; i < h->res->nfolders; i++) {
        const struct engine_folder_result *f = &h->res->folders[i];
        if (!f->path || strcmp(f->path, relpath) != 0)
            continue;
        bool changed = f->fetched || f->flagged || f->deleted || f->moved || f->uploaded || f->pushed_flags ||
                       f->pushed_deleted || f->moved_on_server || f->retired || f->skipped || f->failed ||
                       f->status;
        h->maybe_ours += changed;
        return changed;
    }
    return false;
}

/* Did the pass bring anything from the server: mail, flag changes,
 * deletions, moves? */
static bool pass_pulled(const struct engine_result *res)
{
    for (size_t i = 0; i < res->nfolders; i++) {
        const struct engine_folder_result *f = &res->folders[i];
        if (f->fetched || f->flagged || f->deleted || f->moved)
            return true;
    }
    return false;
}

/* Local changes the state DB does not know yet (offline: engine_status). */
static bool local_changes_pending(const struct account *a)
{
    struct engine_status s;
    struct ms_error e = {0};
    bool pending = false;
    if (engine_status(a, &s, &e) == MS_OK)
        for (size_t i = 0; i < s.nfolders && !pending; i++)
            pending = s.folders[i].local_new > 0 || s.folders[i].local_flags > 0 || s.folders[i].local_gone > 0;
    engine_status_free(&s);
    return pending;
}

/* The session that waits for changes between passes (the side chooses
 * how: IMAP NOTIFY on every folder, else IDLE on INBOX). NULL when it
 * could not be set up (then the next pass waits for the interval
 * instead). */
static struct remote *idle_session(const struct account *a, const struct engine_options *opt)
{
    struct ms_error e = {0};
    struct run conn = {.acct = a, .opt = opt};
    int rc = engine_connect_account(&conn, &e);
    if (rc == MS_OK && !conn.remote->ops->watch)
        rc = ms_error_set(&e, MS_EUSAGE, "the server cannot report changes: polling every pass interval instead");
    if (rc == MS_OK && (rc = conn.remote->ops->watch(conn.remote, &e)) == MS_OK)
        return conn.remote;
    log_msg(LOG_WARN, "%s: watch: %s", a->name, e.msg);
    remote_close(&conn.remote);
    return NULL;
}

/* After a pass: watch every folder it synced (new ones too), and say
 * whether the user changed a folder while it ran (see the top). */
static bool after_pass(const struct account *a, struct local_watch **lw, const struct engine_result *res)
{
    if (!*lw)
        *lw = local_watch_open(a->maildir); /* the first pass made the root */
    if (!*lw)
        return false;
    bool unheard = false; /* folders not watched during the pass (the first, new ones) */
    for (size_t i = 0; i < res->nfolders; i++)
        unheard |= local_watch_folder(*lw, res->folders[i].path);
    struct heard h = {.res = res, .maybe_ours = 0};
    if (local_watch_drain(*lw, pass_made_it, &h) > 0)
        return true;
    return (h.maybe_ours > 0 || unheard) && local_changes_pending(a);
}

int engine_watch(const struct account *a, const struct engine_options *watch_opt, const struct engine_watch *w)
{
    struct engine_options stoppable = *watch_opt;
    stoppable.stop = w->stop; /* a signal ends a long pass early too */
    unsigned long long warned = 0; /* a pattern matching nothing: said once, not every pass */
    stoppable.patterns_warned = &warned;
    const struct engine_options *opt = &stoppable;
    int interval_ms = (w->interval_s > 0 ? w->interval_s : 300) * 1000;
    int retry_ms = interval_ms < 60000 ? interval_ms : 60000;
    struct remote *idle = NULL;
    struct local_watch *lw = NULL;
    int rc = MS_OK;
    /* The server reported a change before this pass; the pass after it
     * found nothing and another is looking again. */
    bool reported = false, looking_again = false;
    while (!*w->stop) {
        /* The IDLE session is set up (NOTIFY or INBOX) before the pass, so what
         * arrives during the pass is reported when the IDLE starts. */
        if (!idle)
            idle = idle_session(a, opt);
        alive(w);
        local_watch_drain(lw, NULL, NULL); /* what changed so far, the pass sees */
        struct engine_result res;
        int pass = engine_sync(a, opt, &res);
        bool local = pass != MS_ELOCKED && after_pass(a, &lw, &res);
        /* A server may report a change before its counters show it (Dovecot's
         * LIST-STATUS can lag its NOTIFY by a moment): a reported change that
         * the pass found nothing of is looked for once more, a second later,
         * rather than at the next report or interval. */
        bool again = reported && !looking_again && pass == MS_OK && !pass_pulled(&res);
        reported = false;
        if (w->pass_done)
            w->pass_done(w->ctx, &res);
        engine_result_free(&res);
        if (pass == MS_EUSAGE || pass == MS_EAUTH || pass == MS_ELOCAL) {
            rc = pass; /* the next pass would fail the same way */
            break;
        }
        if (*w->stop)
            break;
        if (pass == MS_ENET || pass == MS_ELOCKED) {
            /* server unreachable or another run busy: try again later */
            remote_close(&idle);
            nap(retry_ms, w, NULL);
            continue;
        }
        looking_again = again;
        if (again) {
            log_msg(LOG_VERBOSE, "%s: the server reported a change the pass found nothing of: looking again", a->name);
            nap(1000, w, lw);
            continue;
        }
        if (!local && !idle) {
            local = nap(interval_ms, w, lw);
        } else if (!local) {
            alive(w);
            bool changed = false;
            struct ms_error e = {0};
            if (wait_for_change(idle, interval_ms, w, lw, &changed, &local, &e) != MS_OK) {
                log_msg(LOG_VERBOSE, "%s: watch: %s", a->name, e.msg);
                remote_close(&idle);
            } else if (changed) {
                log_msg(LOG_VERBOSE, "%s: the server reports a change", a->name);
                reported = true;
            }
        }
        if (local) {
            log_msg(LOG_VERBOSE, "%s: a local change: a pass once the folders are quiet", a->name);
            settle(w, lw);
        }
    }
    remote_logout_start(idle);
    remote_close(&idle);
    local_watch_free(&lw);
    return rc;
}
