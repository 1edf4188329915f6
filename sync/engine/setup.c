/* SPDX-License-Identifier: MIT */
/*
 * setup.c: the account's setup and teardown around a run: the lock (one
 * run per account at a time), the state DB and the Maildir root (opened
 * during the login, created only after it), the server session and its
 * extra connections, and engine_end_run, which closes all of it.
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/local/dirsync.h"
#include "sync/local/maildir.h"
#include "sync/log.h"
#include "sync/util.h"

/* ------------------------------------------------------------------ */
/* lock, state, root */

static char *lock_path(const struct account *a)
{
    size_t n = strlen(a->state_path) + 6;
    char *p = xmalloc(n);
    snprintf(p, n, "%s.lock", a->state_path);
    return p;
}

/* The Maildir root's share of the lock (see engine_take_lock). */
static int lock_root(struct run *r, struct ms_error *err)
{
    if (r->rootfd < 0 || flock(r->rootfd, LOCK_EX | LOCK_NB) == 0)
        return MS_OK;
    if (errno == EWOULDBLOCK)
        return ms_error_set(err, MS_ELOCKED, "another mailsync run holds the lock of account %s (its Maildir root %s)",
                            r->acct->name, r->acct->maildir);
    log_msg(LOG_VERBOSE, "%s: cannot lock the Maildir root %s (%s): the lock file alone serves", r->acct->name,
            r->acct->maildir, strerror(errno));
    return MS_OK;
}

/* How often a lock file replaced between our open and flock is tried
 * again before the run gives up as if it were locked. */
#define LOCK_TRIES 20

/* One run per account at a time: a second one stops with MS_ELOCKED (exit
 * 75) at once, without waiting. Two flock()s, held until the run ends
 * (however the process ends):
 *  - on <state>.lock beside the state DB. Once locked, the file must still
 *    be the one at that path (device and inode): one opened just before it
 *    was deleted is an orphan nobody else will lock, so locking it
 *    excludes no one; the run opens the path again.
 *  - on the Maildir root directory. A lock file can be deleted while a run
 *    holds it (rm, a cleaner of old files), and the next run would create
 *    a new one and lock that: it then still finds the root locked. The
 *    root cannot be swapped under a run without moving its store away,
 *    and a run that finds no root while the account synced before stops
 *    anyway (exit 5). Where a directory cannot be flocked (NFS emulates
 *    flock with fcntl locks, which a read-only descriptor cannot take
 *    exclusively), the lock file alone serves.
 * A run that fails before it has authenticated must change nothing on
 * disk, so before the login (create false) only what exists is locked:
 * the lock file if it exists, the root if it exists. After the login
 * (create true) the lock file and its directory are created; engine_open_store
 * creates the root and locks it. An account's first two runs started
 * together may therefore both log in; the one second to lock then stops
 * with 75. `watch` takes both locks for each pass, the run that touches
 * the disk: a lock file deleted meanwhile is created again by the next
 * pass, and a pass never runs beside another run. */
int engine_take_lock(struct run *r, bool create, struct ms_error *err)
{
    char *path = lock_path(r->acct);
    int rc = MS_OK;
    if (create && util_mkdirs(path, 0700, true) != 0) {
        rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot create the directory of %s", path);
        goto out;
    }
    for (int tries = 0; r->lockfd < 0; tries++) {
        if (tries == LOCK_TRIES) {
            rc = ms_error_set(err, MS_ELOCKED, "the lock file %s of account %s keeps being replaced", path,
                              r->acct->name);
            goto out;
        }
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
        if (fd < 0 && errno == ENOENT && !create)
            break; /* none yet: created after the login */
        if (fd < 0) {
            rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot open lock file %s", path);
            goto out;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK)
                rc = ms_error_set(err, MS_ELOCKED, "another mailsync run holds the lock of account %s (%s)",
                                  r->acct->name, path);
            else
                rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot lock %s", path);
            close(fd);
            goto out;
        }
        struct stat held, now;
        if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_dev == now.st_dev && held.st_ino == now.st_ino)
            r->lockfd = fd;
        else
            close(fd); /* deleted or replaced meanwhile: not the lock any more */
    }
    if (r->rootfd < 0) {
        struct ms_error e;
        if (maildir_root_open(r->acct->maildir, false, &r->rootfd, &e) != MS_OK)
            r->rootfd = -1; /* none yet, or not usable: engine_open_store says which */
    }
    rc = lock_root(r, err);
out:
    free(path);
    return rc;
}

/* Whether this account has completed a sync before: then its Maildir root
 * must exist, and a missing one is an unmounted disk, not an empty store. */
static bool synced_before(struct state *st)
{
    struct ms_error e;
    bool yes = false;
    state_any_synced(st, &yes, &e);
    return yes;
}

/* The state DB. Before the login (create false) only one that exists
 * is opened: its integrity check overlaps the login (engine_open_store_and_connect),
 * while a new DB is created only once the login succeeded. A file that
 * exists but is empty (a run died before the schema) is new: opening it
 * writes the schema; that, and an older mailsync's DB that needs an
 * upgrade, wait for the login too (state_open_unchanged). */
static int open_state(struct run *r, bool create, struct ms_error *err)
{
    const char *path = r->acct->state_path;
    struct stat sb;
    if (r->st)
        return MS_OK;
    if (r->opt->dry_run && access(path, F_OK) != 0)
        path = ":memory:";
    else if (!create && (stat(path, &sb) != 0 || sb.st_size == 0))
        return MS_OK;
    return create ? state_open(path, &r->st, err) : state_open_unchanged(path, &r->st, err);
}

/* The state DB and the Maildir root, after the login. A root that is
 * missing although the account synced before is an error; on the first
 * run it is created (or, with --dry-run, left missing: every folder is
 * then simply empty), and locked (engine_take_lock). */
int engine_open_store(struct run *r, struct ms_error *err)
{
    int rc = open_state(r, true, err);
    if (rc)
        return rc;
    bool must_exist = synced_before(r->st);
    if (r->opt->dry_run && !must_exist && access(r->acct->maildir, F_OK) != 0)
        return MS_OK;
    if (r->rootfd < 0)
        rc = maildir_root_open(r->acct->maildir, !must_exist, &r->rootfd, err);
    if (rc == MS_OK && !r->opt->dry_run)
        rc = lock_root(r, err);
    /* a stale DB is moved aside only by the run that holds the lock */
    return rc ? rc : generation_check(r, err);
}

/* engine_connect_account with a hint for the side (NULL: none; not
 * used with a test's connect_remote). */
static int connect_hinted(struct run *r, const struct remote_hint *hint, struct ms_error *err)
{
    char *pw = NULL;
    int rc = r->opt->get_password ? r->opt->get_password(r->acct, &pw, err) : MS_OK;
    if (rc)
        return rc;
    if (r->opt->connect_remote)
        rc = r->opt->connect_remote(r->acct, pw ? pw : "", &r->remote, err);
    else
        rc = remote_connect_hinted(r->acct, pw ? pw : "", hint, &r->remote, err);
    if (rc == MS_OK && r->want_extra && remote_can(r->remote, REMOTE_EXTRA)) {
        r->nextra = r->want_extra;
        r->extra = xcalloc(r->nextra, sizeof *r->extra);
        r->extra_failed = xcalloc(r->nextra, sizeof *r->extra_failed);
        r->password = xstrdup(pw ? pw : "");
    }
    util_free_secret(pw);
    return rc;
}

int engine_connect_account(struct run *r, struct ms_error *err)
{
    return connect_hinted(r, NULL, err);
}

void engine_end_run(struct run *r)
{
    gmail_links_free(r);
    state_folders_free(r->known, r->nknown);
    free(r->known_status);
    free(r->trash);
    r->trash = NULL;
    r->known = NULL;
    r->known_status = NULL;
    r->nknown = 0;
    free(r->touched);
    r->touched = NULL;
    r->ntouched = 0;
    remote_close(&r->remote);
    for (size_t i = 0; i < r->nextra; i++)
        remote_close(&r->extra[i]);
    free(r->extra);
    free(r->extra_failed);
    r->extra = NULL;
    r->extra_failed = NULL;
    r->nextra = 0;
    util_free_secret(r->password);
    r->password = NULL;
    /* A run that did not get as far as the login and the lock leaves the
     * integrity stamp (and the DB's mtime) as they were. */
    if (r->st && !(r->authed && (r->lockfd >= 0 || r->opt->dry_run)))
        state_leave_stamp(r->st);
    generation_confirm(r);
    if (r->st)
        state_close(r->st);
    r->st = NULL;
    dirsync_free(r->dirs);
    r->dirs = NULL;
    if (r->rootfd >= 0)
        close(r->rootfd);
    r->rootfd = -1;
    if (r->lockfd >= 0)
        close(r->lockfd);
    r->lockfd = -1;
    for (size_t i = 0; i < r->nserver_paths; i++)
        free(r->server_paths[i]);
    free(r->server_paths);
    r->server_paths = NULL;
    r->nserver_paths = 0;
}

struct store_job {
    struct run *r;
    struct ms_error err;
    int rc;
};

static void *store_thread(void *arg)
{
    struct store_job *j = arg;
    pthread_setname_np(pthread_self(), "ms-store");
    j->rc = open_state(j->r, false, &j->err);
    return NULL;
}

/* The side's memo (remote.h, struct remote_hint) in the state DB. */
#define MEMO_KEY "remote_memo"

/* The connect's hint: the store thread, and what prepare() handed out. */
struct connect_hint {
    struct run *r;
    struct store_job *j;
    pthread_t t;
    bool threaded, joined;
    char *memo;
    struct state_folder *known;
    size_t nknown;
    const char **names;
};

static void join_store(struct connect_hint *h)
{
    if (h->threaded && !h->joined)
        pthread_join(h->t, NULL);
    h->joined = true;
}

/* Called by the side with the connection up: wait for the state DB (its
 * check overlapped the TCP and TLS handshakes), then read what the side
 * remembered and the names the listing will ask for. Nothing is written. */
static void hint_prepare(void *ctx, const char **memo, const char *const **names, size_t *n)
{
    struct connect_hint *h = ctx;
    join_store(h);
    struct ms_error e;
    if (h->j->rc || !h->r->st || state_meta_get(h->r->st, MEMO_KEY, &h->memo, &e) != MS_OK || !h->memo)
        return;
    *memo = h->memo;
    size_t k = 0;
    if (folders_listing_preview(h->r, &h->known, &h->nknown, &h->names, &k)) {
        *names = h->names;
        *n = k;
    }
}

/* After the login, the store open: keep the side's memo for the next run
 * when it changed (written only then: a no-op run writes nothing). */
static void remember_memo(struct run *r, const char *old)
{
    const char *m = remote_memo(r->remote);
    char *read = NULL;
    struct ms_error e;
    if (!m || !r->st || r->opt->dry_run)
        return;
    if (!old && state_meta_get(r->st, MEMO_KEY, &read, &e) == MS_OK)
        old = read;
    if (!old || strcmp(old, m) != 0) {
        if (state_meta_set(r->st, MEMO_KEY, m, &e) != MS_OK)
            log_msg(LOG_VERBOSE, "%s: %s", r->acct->name, e.msg);
    }
    free(read);
}

/* Log in, then (once the server accepted the login) lock and open the
 * store: nothing is created or written before that (engine_take_lock). The state
 * DB's integrity check reads the whole file (tens of ms for a big account),
 * and a server takes as long or longer to hand out a logged in session
 * (Dovecot forks a login and then a mail process): an existing DB is
 * opened and checked during the TCP and TLS handshakes and the login,
 * which only reads it. The side waits for it (hint_prepare) before its
 * first command when it can use what the DB remembers to save round trips;
 * otherwise the join is after the login. The threads touch different
 * members of *r; the DB is used by the main thread only after the join. A
 * store error wins over a connection error, as when the store was opened
 * first. */
int engine_open_store_and_connect(struct run *r, struct ms_error *err)
{
    struct store_job j = {.r = r};
    struct connect_hint h = {.r = r, .j = &j};
    h.threaded = pthread_create(&h.t, NULL, store_thread, &j) == 0;
    struct ms_error cerr = {0};
    int crc = h.threaded ? MS_OK : open_state(r, false, &cerr);
    if (!h.threaded)
        j.rc = crc;
    struct remote_hint hint = {.ctx = &h, .prepare = hint_prepare};
    if (crc == MS_OK)
        crc = connect_hinted(r, &hint, &cerr);
    join_store(&h);
    state_folders_free(h.known, h.nknown);
    free(h.names);
    if (h.threaded && j.rc) {
        free(h.memo);
        *err = j.err;
        return j.rc;
    }
    if (crc) {
        free(h.memo);
        *err = cerr;
        return crc;
    }
    r->authed = true;
    int rc = r->lockfd < 0 && !r->opt->dry_run ? engine_take_lock(r, true, err) : MS_OK;
    rc = rc ? rc : engine_open_store(r, err);
    if (rc == MS_OK)
        remember_memo(r, h.memo);
    free(h.memo);
    return rc;
}
