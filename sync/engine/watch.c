/*
 * watch.c: `mailsync watch`: a sync pass, then a wait for the server to
 * report a change (an idle session set up before the pass) or for the
 * interval, until a signal stops it.
 */
#include "sync/engine/engine_int.h"

#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "sync/log.h"

/* ------------------------------------------------------------------ */
/* watch */

/* Tell the watcher the watch is alive (struct engine_watch's alive). */
static void alive(const struct engine_watch *w)
{
    if (w->alive)
        w->alive(w->ctx);
}

/* Sleep ms unless *stop comes first (looked at every 200 ms), saying
 * alive at least every w->alive_ms. */
static void nap(int ms, const struct engine_watch *w)
{
    int since_alive = 0;
    while (ms > 0 && !*w->stop) {
        int slice = ms > 200 ? 200 : ms;
        struct timespec t = {0, (long)slice * 1000000L};
        nanosleep(&t, NULL);
        ms -= slice;
        since_alive += slice;
        if (w->alive_ms > 0 && since_alive >= w->alive_ms) {
            alive(w);
            since_alive = 0;
        }
    }
}

/* Wait on the idle session for a change, interval_ms at most, in pieces of
 * w->alive_ms with an alive between them (each piece is one IDLE). */
static int wait_for_change(struct remote *idle, int interval_ms, const struct engine_watch *w, bool *changed,
                           struct ms_error *e)
{
    *changed = false;
    int left = interval_ms;
    while (left > 0 && !*w->stop) {
        int piece = w->alive_ms > 0 && w->alive_ms < left ? w->alive_ms : left;
        int rc = idle->ops->wait(idle, piece, w->stop, changed, e);
        if (rc != MS_OK || *changed)
            return rc;
        left -= piece;
        alive(w);
    }
    return MS_OK;
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

int engine_watch(const struct account *a, const struct engine_options *watch_opt, const struct engine_watch *w)
{
    struct engine_options stoppable = *watch_opt;
    stoppable.stop = w->stop; /* a signal ends a long pass early too */
    const struct engine_options *opt = &stoppable;
    int interval_ms = (w->interval_s > 0 ? w->interval_s : 300) * 1000;
    int retry_ms = interval_ms < 60000 ? interval_ms : 60000;
    struct remote *idle = NULL;
    int rc = MS_OK;
    while (!*w->stop) {
        /* The IDLE session is set up (NOTIFY or INBOX) before the pass, so what
         * arrives during the pass is reported when the IDLE starts. */
        if (!idle)
            idle = idle_session(a, opt);
        alive(w);
        struct engine_result res;
        int pass = engine_sync(a, opt, &res);
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
            nap(retry_ms, w);
            continue;
        }
        if (!idle) {
            nap(interval_ms, w);
            continue;
        }
        alive(w);
        bool changed = false;
        struct ms_error e = {0};
        if (wait_for_change(idle, interval_ms, w, &changed, &e) != MS_OK) {
            log_msg(LOG_VERBOSE, "%s: watch: %s", a->name, e.msg);
            remote_close(&idle);
        } else if (changed) {
            log_msg(LOG_VERBOSE, "%s: the server reports a change", a->name);
        }
    }
    remote_logout_start(idle);
    remote_close(&idle);
    return rc;
}
