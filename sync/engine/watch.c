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

/* Sleep ms unless *stop comes first (looked at every 200 ms). */
static void nap(int ms, volatile sig_atomic_t *stop)
{
    while (ms > 0 && !(stop && *stop)) {
        int slice = ms > 200 ? 200 : ms;
        struct timespec t = {0, (long)slice * 1000000L};
        nanosleep(&t, NULL);
        ms -= slice;
    }
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
            nap(retry_ms, w->stop);
            continue;
        }
        if (!idle) {
            nap(interval_ms, w->stop);
            continue;
        }
        bool changed = false;
        struct ms_error e = {0};
        if (idle->ops->wait(idle, interval_ms, w->stop, &changed, &e) != MS_OK) {
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
