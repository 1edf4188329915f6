/*
 * engine.c: one account run, server -> local (see engine.h).
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
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/engine/dryrun.h"
#include "sync/flags.h"
#include "sync/engine/journal.h"
#include "sync/log.h"
#include "sync/local/maildir.h"
#include "sync/message.h"
#include "sync/names.h"
#include "sync/plan/plan.h"
#include "sync/util.h"

/* Unfinished tmp/ files older than this are swept (Maildir spec: 36 h). */
#define TMP_MAX_AGE (36 * 3600)

/* ------------------------------------------------------------------ */
/* results */

struct engine_folder_result *add_folder_result(struct engine_result *res, const char *name, const char *path)
{
    res->folders = xrealloc(res->folders, (res->nfolders + 1) * sizeof *res->folders);
    struct engine_folder_result *f = &res->folders[res->nfolders++];
    memset(f, 0, sizeof *f);
    f->name = xstrdup(name);
    f->path = path ? xstrdup(path) : NULL;
    return f;
}

void folder_fail(struct engine_folder_result *f, const struct ms_error *err)
{
    f->status = err->code ? err->code : MS_EPARTIAL;
    free(f->error);
    f->error = xstrdup(err->msg);
}

void engine_result_free(struct engine_result *r)
{
    for (size_t i = 0; i < r->nfolders; i++) {
        free(r->folders[i].name);
        free(r->folders[i].path);
        free(r->folders[i].error);
    }
    free(r->folders);
    free(r->account);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------ */
/* lock, state, root */

static char *lock_path(const struct account *a)
{
    size_t n = strlen(a->state_path) + 6;
    char *p = xmalloc(n);
    snprintf(p, n, "%s.lock", a->state_path);
    return p;
}

/* The Maildir root's share of the lock (see take_lock). */
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
 * (create true) the lock file and its directory are created; open_store
 * creates the root and locks it. An account's first two runs started
 * together may therefore both log in; the one second to lock then stops
 * with 75. `watch` takes both locks for each pass, the run that touches
 * the disk: a lock file deleted meanwhile is created again by the next
 * pass, and a pass never runs beside another run. */
int take_lock(struct run *r, bool create, struct ms_error *err)
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
            r->rootfd = -1; /* none yet, or not usable: open_store says which */
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
 * is opened: its integrity check overlaps the login (open_store_and_connect),
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
 * then simply empty), and locked (take_lock). */
int open_store(struct run *r, struct ms_error *err)
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

int connect_account(struct run *r, struct ms_error *err)
{
    char *pw = NULL;
    int rc = r->opt->get_password ? r->opt->get_password(r->acct, &pw, err) : MS_OK;
    if (rc)
        return rc;
    int (*connect)(const struct account *, const char *, struct remote **, struct ms_error *) =
        r->opt->connect_remote ? r->opt->connect_remote : remote_connect;
    rc = connect(r->acct, pw ? pw : "", &r->remote, err);
    if (rc == MS_OK && r->want_extra && remote_can(r->remote, REMOTE_EXTRA)) {
        r->nextra = r->want_extra;
        r->extra = xcalloc(r->nextra, sizeof *r->extra);
        r->extra_failed = xcalloc(r->nextra, sizeof *r->extra_failed);
        r->password = xstrdup(pw ? pw : "");
    }
    util_free_secret(pw);
    return rc;
}

static int dirs_durable(void *ctx, struct ms_error *err)
{
    return dirsync_wait(((struct run *)ctx)->dirs, err);
}

void end_run(struct run *r)
{
    state_folders_free(r->known, r->nknown);
    free(r->known_status);
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

/* Log in, then (once the server accepted the login) lock and open the
 * store: nothing is created or written before that (take_lock). The state
 * DB's integrity check reads the whole file (tens of ms for a big account),
 * and a server takes as long or longer to hand out a logged in session
 * (Dovecot forks a login and then a mail process): an existing DB is
 * opened and checked during the login, which only reads it. The threads
 * touch different members of *r; the DB is used by the main thread only
 * after the join. A store error wins over a connection error, as when the
 * store was opened first. */
static int open_store_and_connect(struct run *r, struct ms_error *err)
{
    struct store_job j = {.r = r};
    pthread_t t;
    bool threaded = pthread_create(&t, NULL, store_thread, &j) == 0;
    struct ms_error cerr = {0};
    int crc = threaded ? MS_OK : open_state(r, false, &cerr);
    if (crc == MS_OK)
        crc = connect_account(r, &cerr);
    if (threaded)
        pthread_join(t, NULL);
    if (threaded && j.rc) {
        *err = j.err;
        return j.rc;
    }
    if (crc) {
        *err = cerr;
        return crc;
    }
    r->authed = true;
    int rc = r->lockfd < 0 && !r->opt->dry_run ? take_lock(r, true, err) : MS_OK;
    return rc ? rc : open_store(r, err);
}

/* ------------------------------------------------------------------ */
/* folder selection */

bool is_trash_folder(const struct account *a, const struct selected *sel)
{
    return a->trash && *a->trash && (strcmp(a->trash, sel->raw) == 0 || strcmp(a->trash, sel->name) == 0);
}

/* The name people see and patterns match: UTF-8, '/' between levels, and
 * no control characters (a server's name must not drive the terminal). */
static char *display_name(const struct remote_folder *f)
{
    char *name = names_display(f->name);
    for (char *p = name; *p; p++) {
        if (f->delim && f->delim != '/' && *p == f->delim)
            *p = '/';
        else if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
    return name;
}

/* Selected by the account's `folders =` and by --folder (if any). */
bool folder_wanted(const struct account *a, const struct engine_options *opt, const char *name)
{
    return names_folder_selected(name, a->folders, a->nfolders) &&
           (opt->nfolder_patterns == 0 || names_folder_selected(name, opt->folder_patterns, opt->nfolder_patterns));
}

void map_folders(const struct account *a, const struct engine_options *opt, const struct remote_folder *f,
                        size_t n, struct engine_folder_map *out)
{
    for (size_t i = 0; i < n; i++) {
        struct engine_folder_map *m = &out[i];
        m->raw = xstrdup(f[i].name);
        m->name = display_name(&f[i]);
        m->noselect = f[i].noselect;
        m->path = names_folder_path(f[i].name, f[i].delim, a->layout, &m->why);
        m->selected = !m->noselect && m->path && folder_wanted(a, opt, m->name);
        /* Two server names on one path would mix two folders: keep the
         * first, refuse the second. */
        for (size_t j = 0; m->path && j < i; j++)
            if (out[j].path && strcmp(out[j].path, m->path) == 0) {
                free(m->path);
                m->path = NULL;
                m->why = "maps to the same local path as another folder";
                m->selected = false;
            }
    }
}

void engine_folders_free(struct engine_folder_map *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].raw);
        free(f[i].name);
        free(f[i].path);
    }
    free(f);
}

/* ------------------------------------------------------------------ */
/* local changes from the plan */

static int cmp_key_local(const void *key, const void *elem)
{
    return strcmp(key, ((const struct local_msg *)elem)->uniq);
}

struct local_msg *local_by_uniq(struct local_msg *l, size_t n, const char *uniq)
{
    return n ? bsearch(uniq, l, n, sizeof *l, cmp_key_local) : NULL;
}

/* finish: when not NULL, the folder's row is saved in the same
 * transaction (one commit, one fsync, for a folder with nothing to fetch). */
/* hold: the plan's PLAN_LOCAL_DELETEs are left for the second pass
 * (struct run's defer_deletions): neither the file nor its row is
 * touched. */
static int apply_local_changes(struct run *r, struct maildir_folder *mf, int64_t folder_id, const struct plan *p,
                               bool hold, struct local_msg *local, size_t nlocal, struct engine_folder_result *fres,
                               struct state_folder *finish, struct ms_error *err)
{
    int rc = MS_OK;
    size_t flagged0 = fres->flagged, deleted0 = fres->deleted;
    /* Files first (rename/unlink), records after, in one transaction. */
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        const struct plan_action *a = &p->actions[i];
        if (hold && a->op == PLAN_LOCAL_DELETE)
            continue;
        struct local_msg *l = a->uniq ? local_by_uniq(local, nlocal, a->uniq) : NULL;
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
    if (fres->flagged != flagged0 || fres->deleted != deleted0) {
        /* Durable before the batch commits (the state's hook waits), in
         * the background meanwhile. */
        int fds[2];
        char what[PATH_MAX + 8];
        maildir_dup_dirs(mf, &fds[0], &fds[1]);
        for (int i = 0; i < 2; i++) {
            snprintf(what, sizeof what, "%s/%s", maildir_folder_path(mf), i ? "new" : "cur");
            if (fds[i] < 0) {
                if (i == 0 && fds[1] >= 0)
                    close(fds[1]);
                return ms_error_errno(err, MS_ELOCAL, errno, "cannot open %s", what);
            }
            dirsync_add(r->dirs, fds[i], what);
        }
    }
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
        if (hold && a->op == PLAN_LOCAL_DELETE)
            continue;
        if (a->op == PLAN_LOCAL_DELETE || a->op == PLAN_FORGET)
            rc = state_msg_delete(r->st, folder_id, a->uid, err);
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

void build_plan_input(struct plan_input *in, const struct account *a, const struct engine_options *opt,
                      const struct state_msg *s, size_t ns, const struct local_msg *l, size_t nl,
                      const struct remote_msg *rm, size_t nr)
{
    struct plan_state *ps = xcalloc(ns, sizeof *ps);
    struct plan_local *pl = xcalloc(nl, sizeof *pl);
    struct plan_remote *pr = xcalloc(nr, sizeof *pr);
    for (size_t i = 0; i < ns; i++)
        ps[i] = (struct plan_state){s[i].uid, s[i].uniq, s[i].flags, s[i].keywords};
    for (size_t i = 0; i < nl; i++)
        pl[i] = (struct plan_local){l[i].uniq, l[i].flags};
    for (size_t i = 0; i < nr; i++)
        pr[i] = (struct plan_remote){rm[i].uid, rm[i].flags, rm[i].keywords, rm[i].size};
    *in = (struct plan_input){.state = ps, .nstate = ns, .local = pl, .nlocal = nl, .remote = pr,
                              .nremote = nr, .mode = a->mode, .max_size = a->max_size,
                              .max_delete = a->max_delete, .force = opt->force};
}

void free_plan_input(struct plan_input *in)
{
    free((void *)in->state);
    free((void *)in->local);
    free((void *)in->remote);
    memset(in, 0, sizeof *in);
}

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

static int cmp_key_folder(const void *key, const void *elem)
{
    return strcmp(key, ((const struct state_folder *)elem)->name);
}

/* The state's row of a folder as read for the run's LIST (r->known is
 * sorted by name), or NULL. */
static const struct state_folder *known_folder(const struct run *r, const char *raw)
{
    return r->nknown ? bsearch(raw, r->known, r->nknown, sizeof *r->known, cmp_key_folder) : NULL;
}

/* The STATUS of a folder asked for with the run's LIST, or NULL (r->known
 * is sorted by name, r->known_status parallel to it). */
static const struct remote_status *known_status(const struct run *r, const char *raw)
{
    const struct state_folder *f = known_folder(r, raw);
    return f && r->known_status ? &r->known_status[f - r->known] : NULL;
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

/* The server's view of the folder; *changed when its UIDVALIDITY differs
 * from the recorded one. *incremental when only the changes since the last
 * sync were listed (the side decides whether it can: remote.h, open): then
 * *affected holds the recorded UIDs whose flags changed or that are gone,
 * the only ones the local side must look at. */
static int remote_snapshot(struct run *r, const struct selected *sel, const struct state_folder *sf,
                           struct state_msg **st, size_t *ns, size_t *guard_total, struct remote_box *mb,
                           struct remote_msg **rm, size_t *nr, bool *changed, bool *incremental,
                           struct uid_list *affected, struct ms_error *err)
{
    struct remote_known known = {0};
    struct remote_listing l = {0};
    int rc;
    *incremental = false;
    *guard_total = 0;
    /* Incremental only after a complete sync: then the state is whole. */
    if (sf->last_sync && sf->uidvalidity && sf->highestmodseq) {
        const struct remote_status *early = known_status(r, sel->raw);
        known = (struct remote_known){.uidvalidity = sf->uidvalidity, .uidnext = sf->uidnext,
                                      .modseq = sf->highestmodseq, .status_uidnext = early ? early->uidnext : 0};
    }
    if ((rc = r->remote->ops->open(r->remote, sel->raw, &known, &l, err)))
        return rc;
    *mb = l.box;
    bool full = l.kind == REMOTE_LIST_FULL;
    if (!full) {
        rc = use_changes(r, sel, sf, &l, st, ns, guard_total, rm, nr, incremental, affected, err);
        remote_listing_free(&l);
        if (rc || *incremental)
            return rc;
        state_msgs_free(*st, *ns);
        *st = NULL;
        *ns = 0;
    }
    /* The full listing: every row. */
    if (sf->id && (rc = state_msg_list(r->st, sf->id, st, ns, err))) {
        remote_listing_free(&l);
        return rc;
    }
    *changed = sf->uidvalidity && sf->uidvalidity != mb->uidvalidity;
    if (*changed)
        log_msg(LOG_WARN, "%s: UIDVALIDITY changed (%u -> %u): re-matching messages by identity, deleting nothing",
                sel->name, sf->uidvalidity, mb->uidvalidity);
    if (full) {
        *rm = l.msgs;
        *nr = l.nmsgs;
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

/* Could the folder's record let a STATUS alone show it unchanged? (A
 * complete sync with a modseq, no delivery left unconfirmed.) */
static bool may_be_unchanged(const struct state_folder *f)
{
    return f->last_sync && f->highestmodseq && !f->pending_count && !f->appends_count;
}

/* A folder whose UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ are what the last
 * complete sync recorded has nothing to pull: one STATUS, no SELECT, no
 * listing, no scan. That keeps a no-op run flat in the number of messages. */
static int unchanged_since_last_sync(struct run *r, const struct selected *sel, struct state_folder *sf,
                                     bool *unchanged, struct ms_error *err)
{
    struct remote_status st;
    *unchanged = false;
    if (!remote_can(r->remote, REMOTE_CHANGES) || !may_be_unchanged(sf))
        return MS_OK;
    const struct remote_status *early = known_status(r, sel->raw);
    if (r->trash_changed && is_trash_folder(r->acct, sel))
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

static int pull_folder(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                       struct ms_error *err)
{
    struct state_folder sf = {0};
    struct maildir_folder *mf = NULL;
    struct remote_box mb = {0};
    struct remote_msg *rm = NULL;
    struct local_msg *local = NULL;
    struct state_msg *state = NULL, *old = NULL;
    struct leftover *left = NULL;
    struct uid_list affected = {0};
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
            (mb.uidvalidity == sf.uidvalidity && (rc = settle_uploads(r, sel, sf.id, mb.uidvalidity, err))))
            goto out;
    }
    bool incremental;
    size_t guard_total = 0;
    if ((rc = remote_snapshot(r, sel, &sf, &state, &nstate, &guard_total, &mb, &rm, &nr, &uv_changed, &incremental,
                              &affected, err)))
        goto out;
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
    else if (mf)
        rc = maildir_scan(mf, &local, &nlocal, err);
    if (rc)
        goto out;
    if (uv_changed) {
        /* The old UIDs mean nothing now; their rows still tell which local
         * file is which message and what was synced last: rematch()
         * replaces them with the re-matched rows in one transaction. */
        old = state;
        nold = nstate;
        state = NULL;
        nstate = 0;
    }
    if (mf && (rc = rematch(r, mf, sf.id, &state, &nstate, old, nold, local, nlocal, rm, nr, &nmatched, &left, &nleft, err)))
        goto out;
    if (nmatched)
        log_msg(LOG_INFO, "%s: %zu local messages matched to the server by identity", sel->name, nmatched);

    build_plan_input(&in, r->acct, r->opt, state, nstate, local, nlocal, rm, nr);
    in.guard_total = guard_total;
    if (plan_pull(&in, &p) != 0) {
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
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
    fres->skipped = p.nskip;
    report_skips(sel->name, &p);
    if (r->opt->dry_run) {
        dryrun_report_pull(r->opt, r->acct->name, sel->name, &p);
        fres->fetched = p.nfetch;
        fres->bytes = p.fetch_bytes;
        fres->flagged = p.nflags;
        fres->deleted = p.ndelete;
        goto out;
    }
    /* Deletions wait for every folder's listing (the second pass): until
     * then the folder's record keeps its old counters, so a run killed
     * in between is told the same expunges again. */
    bool hold = r->defer_deletions && p.ndelete;
    if (hold)
        r->held_pull = true;
    if (prog && prog->folder_start)
        prog->folder_start(prog->ctx, r->acct->name, sel->name, p.nfetch, p.fetch_bytes);
    /* The folder's record as it will be once everything is in: saved with
     * the last transaction of the folder's work. Messages skipped for
     * max_size are in no record: a folder that has some is listed in full
     * every time (modseq 0), so they come in once the limit allows, and
     * the incremental paths never lose sight of them. */
    struct state_folder done = sf;
    done.uidvalidity = mb.uidvalidity;
    done.uidnext = mb.uidnext;
    done.highestmodseq = p.nskip ? 0 : mb.highestmodseq;
    done.last_sync = (int64_t)time(NULL);
    if ((rc = apply_local_changes(r, mf, sf.id, &p, hold, local, nlocal, fres, p.nfetch || hold ? NULL : &done,
                                  err)))
        goto out;
    if (p.nfetch && (rc = fetch_new(r, sel, mb.uidvalidity, mf, sf.id, &p, left, nleft, local, nlocal, fres,
                                    hold ? NULL : &done, err)))
        goto out;
    if (fres->failed) {
        /* The folder's record stays as it was (fetch_new did not save
         * it), so the next run looks for these messages again. */
        rc = ms_error_set(err, MS_EPARTIAL, "%s: %zu messages could not be fetched", sel->name, fres->failed);
        goto out;
    }
out:
    if (rc)
        folder_fail(fres, err);
    plan_free(&p);
    free_plan_input(&in);
    state_msgs_free(state, nstate);
    state_msgs_free(old, nold);
    free_leftovers(left, nleft);
    free(affected.v);
    maildir_msgs_free(local, nlocal);
    remote_msgs_free(rm, nr);
    maildir_folder_close(mf);
    state_folder_free(&sf);
    if (prog && prog->folder_done && !r->opt->dry_run)
        prog->folder_done(prog->ctx, fres);
    return rc;
}

/* By the messages the folders hold (ctx), most first; ties keep their order. */
static int cmp_messages_desc(const void *a, const void *b, void *ctx)
{
    const uint32_t *size = ctx;
    uint32_t x = size[*(const size_t *)a], y = size[*(const size_t *)b];
    return x < y ? 1 : x > y ? -1 : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

/* The folders whose STATUS (asked with the LIST) shows flag changes or
 * expunges but no new mail will each be opened incrementally by
 * pull_folder (IMAP: EXAMINE (QRESYNC)), with nothing else to ask the
 * server unless their answer holds a surprise: with REMOTE_AHEAD, hand
 * them to the side's open_ahead now (IMAP: the EXAMINEs in one write), and visit
 * those folders first, in that order (a folder visited in between would
 * make the session drop the answers still queued). The server then
 * answers the next ones while this side renames the files of the first:
 * one round trip for all of them, not one each. The biggest go first, so
 * that the renames (and directory fsyncs) that take longest overlap with
 * the server's work, not follow it. Returns how many were queued; order
 * gets the visiting order of all nsel folders (as indexes into sel). */
static size_t examine_ahead(struct run *r, const struct selected *sel, size_t nsel, size_t *order)
{
    size_t n = 0;
    uint32_t *size = xcalloc(nsel + 1, sizeof *size);
    bool ahead = remote_can(r->remote, REMOTE_AHEAD) && r->remote->ops->open_ahead;
    for (size_t i = 0; i < nsel && ahead; i++) {
        const struct remote_status *st = known_status(r, sel[i].raw);
        const struct state_folder *sf = known_folder(r, sel[i].raw);
        if (!st || !sf || !sf->last_sync || !sf->uidvalidity || !sf->highestmodseq)
            continue;
        if (st->uidvalidity != sf->uidvalidity || st->uidnext != sf->uidnext || !st->highestmodseq ||
            st->highestmodseq == sf->highestmodseq)
            continue;
        size[i] = st->messages;
        order[n++] = i;
    }
    if (n < 2)
        n = 0;
    qsort_r(order, n, sizeof *order, cmp_messages_desc, size);
    struct remote_ahead *req = xcalloc(n + 1, sizeof *req);
    for (size_t k = 0; k < n; k++) {
        const struct state_folder *sf = known_folder(r, sel[order[k]].raw);
        req[k] = (struct remote_ahead){sel[order[k]].raw, sf->uidvalidity, sf->highestmodseq};
    }
    struct ms_error err;
    /* A failure ends the session: the folders report it. */
    if (n && r->remote->ops->open_ahead(r->remote, req, n, &err) != MS_OK)
        log_msg(LOG_VERBOSE, "%s", err.msg);
    free(req);
    /* the rest in their own order */
    bool *queued = xcalloc(nsel + 1, sizeof *queued);
    for (size_t k = 0; k < n; k++)
        queued[order[k]] = true;
    for (size_t i = 0, k = n; i < nsel; i++)
        if (!queued[i])
            order[k++] = i;
    free(queued);
    free(size);
    return n;
}

/* ------------------------------------------------------------------ */
/* the account */

/* Is the folder's STATUS worth asking for with the LIST
 * (unchanged_since_last_sync may use it)? */
static bool skip_candidate(const struct run *r, const struct state_folder *f)
{
    if (!may_be_unchanged(f))
        return false;
    if (r->acct->nfolders == 0 && r->opt->nfolder_patterns == 0)
        return true;
    /* The server's delimiter is not known yet: with '/' this is the name
     * patterns see; with another one a wanted folder may be missed here
     * (it then gets its own STATUS later) or an unwanted one asked for. */
    char *name = names_display(f->name);
    bool wanted = folder_wanted(r->acct, r->opt, name);
    free(name);
    return wanted;
}

/* The server's folders. With REMOTE_CHANGES, the status (IMAP STATUS) of
 * every folder that may be unchanged goes out with the listing (one
 * round trip instead of one per folder), INBOX first: Dovecot answers
 * STATUS INBOX from its list index only until the session has looked at
 * another folder (afterwards it opens the mailbox: ~3 ms at 10,000
 * messages). */
static int list_folders(struct run *r, struct remote_folder **f, size_t *n, struct ms_error *err)
{
    if (!remote_can(r->remote, REMOTE_CHANGES) || state_folder_list_brief(r->st, &r->known, &r->nknown, err) != MS_OK) {
        /* a sync run's listing all the same (the side may prepare for
         * incremental opens: ENABLE QRESYNC), without STATUS */
        const char *none = NULL;
        struct remote_status nost = {0};
        return r->remote->ops->list(r->remote, &none, 0, &nost, f, n, err);
    }
    const char **names = xcalloc(r->nknown + 1, sizeof *names);
    size_t *idx = xcalloc(r->nknown + 1, sizeof *idx);
    size_t k = 0;
    for (int inbox_pass = 1; inbox_pass >= 0; inbox_pass--)
        for (size_t i = 0; i < r->nknown; i++)
            if ((strcasecmp(r->known[i].name, "INBOX") == 0) == inbox_pass && skip_candidate(r, &r->known[i])) {
                names[k] = r->known[i].name;
                idx[k++] = i;
            }
    struct remote_status *st = xcalloc(k + 1, sizeof *st);
    /* The IMAP side sends ENABLE QRESYNC along (it only has to precede
     * the first EXAMINE). */
    int rc = r->remote->ops->list(r->remote, names, k, st, f, n, err);
    if (rc == MS_OK) {
        r->known_status = xcalloc(r->nknown + 1, sizeof *r->known_status);
        for (size_t j = 0; j < k; j++)
            r->known_status[idx[j]] = st[j];
    }
    free(st);
    free(idx);
    free(names);
    return rc;
}

static int list_selected(struct run *r, struct selected **out, size_t *nout, struct ms_error *err)
{
    struct remote_folder *f = NULL;
    size_t n = 0;
    int rc = list_folders(r, &f, &n, err);
    if (rc)
        return rc;
    struct engine_folder_map *map = xcalloc(n, sizeof *map);
    map_folders(r->acct, r->opt, f, n, map);
    r->server_paths = xcalloc(n + 1, sizeof *r->server_paths);
    for (size_t i = 0; i < n; i++) {
        if (map[i].path)
            r->server_paths[r->nserver_paths++] = xstrdup(map[i].path);
        if (f[i].delim && (!r->delim || strcasecmp(f[i].name, "INBOX") == 0))
            r->delim = f[i].delim;
    }
    qsort(r->server_paths, r->nserver_paths, sizeof *r->server_paths, cmp_str);
    struct selected *sel = xcalloc(n, sizeof *sel);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!map[i].path && !map[i].noselect && folder_wanted(r->acct, r->opt, map[i].name)) {
            /* Its mail is not synced: the run must not claim it was. */
            struct ms_error e;
            ms_error_set(&e, MS_EPARTIAL, "skipped server folder \"%s\": %s",
                         log_escape(map[i].raw, strlen(map[i].raw), 200), map[i].why);
            log_msg(LOG_WARN, "%s", e.msg);
            folder_fail(add_folder_result(r->res, map[i].name, NULL), &e);
            r->res->status = ms_error_worse(r->res->status, MS_EPARTIAL);
        }
        if (!map[i].selected)
            continue;
        sel[k].raw = map[i].raw;
        sel[k].name = map[i].name;
        sel[k].path = map[i].path;
        map[i].raw = map[i].name = map[i].path = NULL;
        k++;
    }
    engine_folders_free(map, n);
    remote_folders_free(f, n);
    *out = sel;
    *nout = k;
    return MS_OK;
}

/* Folders the state knows that the server no longer lists: a pull keeps
 * their local copy (it never deletes a folder), but says so once a run. */
static void report_vanished_folders(struct run *r, const struct selected *sel, size_t nsel)
{
    /* The list read for the LIST's STATUS commands, if there was one (no
     * folder row is added before this runs). */
    struct state_folder *f = r->known;
    size_t n = r->nknown;
    struct ms_error e;
    if (!f && state_folder_list_brief(r->st, &f, &n, &e) != MS_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        bool listed = false;
        for (size_t j = 0; j < nsel && !listed; j++)
            listed = strcmp(sel[j].raw, f[i].name) == 0;
        if (listed || !f[i].last_sync)
            continue;
        char *name = names_display(f[i].name);
        if (folder_wanted(r->acct, r->opt, name))
            log_msg(LOG_WARN, "folder \"%s\" is no longer on the server; its local copy %s/%s is kept",
                    log_escape(name, strlen(name), 200), r->acct->maildir, f[i].path ? f[i].path : "?");
        free(name);
    }
    if (f != r->known)
        state_folders_free(f, n);
}

static void free_selected(struct selected *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].raw);
        free(s[i].name);
        free(s[i].path);
    }
    free(s);
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

/* The folders were visited in `order` (examine_ahead), their results
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
    folder_fail(fres, ferr);
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
        if (is_trash_folder(r->acct, &sel[i]))
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
        if (frc == MS_OK && do_pull)
            frc = retire_old(r, &sel[i], fres, &ferr);
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

    /* A dry run changes nothing, so it needs no lock (and creates no lock
     * file for an account that never ran). Before the login only what
     * exists is locked (take_lock). */
    int rc = opt->dry_run ? MS_OK : take_lock(&r, false, &err);
    if (rc == MS_OK && a->type == ACCOUNT_POP3 && !do_pull) {
        /* A POP3 account is pull-only (its side has no REMOTE_WRITE): its
         * type says so before any login, and a push touches nothing. */
        log_msg(LOG_INFO, "%s: a POP3 account is pull-only: nothing to push", a->name);
        goto out;
    }
    if (rc == MS_OK)
        rc = open_store_and_connect(&r, &err); /* logs in, then creates and locks */
    if (rc == MS_OK) {
        r.dirs = dirsync_new();
        state_before_batch_commit(r.st, dirs_durable, &r);
    }
    if (rc == MS_OK && !remote_can(r.remote, REMOTE_UIDS)) {
        /* One folder whose messages are named by id (POP3's UIDL). */
        if ((rc = pop3_pull(&r, &err)) != MS_OK) {
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
        rc = list_selected(&r, &sel, &nsel, &err);
        if (rc == MS_OK)
            report_vanished_folders(&r, sel, nsel);
        if (rc == MS_OK && do_push)
            rc = create_local_folders(&r, &sel, &nsel, &err);
    }
    if (rc) {
        res->status = rc;
        snprintf(res->error, sizeof res->error, "%s", err.msg);
        goto out;
    }
    order = xcalloc(nsel + 1, sizeof *order);
    if (do_pull && !do_push) {
        examine_ahead(&r, sel, nsel, order);
    } else {
        /* A sync pulls the trash folder last: the other folders' pushes
         * move their local deletions into it, and one sync must bring
         * those down too. */
        size_t k = 0, trash = nsel;
        for (size_t i = 0; i < nsel; i++)
            if (trash == nsel && do_pull && is_trash_folder(a, &sel[i]))
                trash = i;
            else
                order[k++] = i;
        if (trash < nsel)
            order[k] = trash;
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
        struct engine_folder_result *fres = add_folder_result(res, sel[i].name, sel[i].path);
        struct ms_error ferr = {0};
        int frc = MS_OK;
        struct maildir_stamp stamp = {0};
        r.push_after_pull = false;
        if (do_push) {
            frc = push_folder(&r, &sel[i], fres, &stamp, &ferr);
            if (frc == MS_EPARTIAL && do_pull && !run_stopped(&r)) {
                /* the pull of the folder still goes ahead (not after a stop) */
                log_msg(LOG_ERROR, "%s", ferr.msg);
                folder_fail(fres, &ferr);
                res->status = ms_error_worse(res->status, MS_EPARTIAL);
                frc = MS_OK;
            } else if (frc != MS_OK && frc != MS_ENET && frc != MS_ELOCAL && frc != MS_EAUTH) {
                folder_fail(fres, &ferr);
            }
        }
        if (frc == MS_OK && do_pull)
            frc = pull_folder(&r, &sel[i], fres, &ferr); /* reports folder_done itself */
        else if (frc == MS_OK && opt->progress && opt->progress->folder_done && !opt->dry_run)
            opt->progress->folder_done(opt->progress->ctx, fres);
        if (frc == MS_OK && do_pull && r.push_after_pull && !run_stopped(&r)) {
            /* The pull has matched the messages (under a new UIDVALIDITY,
             * or for the first time), the local changes kept pending:
             * push them now. */
            frc = push_folder(&r, &sel[i], fres, &stamp, &ferr);
            if (frc != MS_OK && frc != MS_ENET && frc != MS_ELOCAL && frc != MS_EAUTH)
                folder_fail(fres, &ferr);
        }
        held[k] = (r.held_push ? HELD_PUSH : 0) | (r.held_pull ? HELD_PULL : 0);
        if (frc == MS_OK && stamp.settled) {
            /* The push saw everything pushed; if nothing (the pull
             * included) has touched the folder since, the next push may
             * skip its scan. A failure to record only costs a scan. */
            struct maildir_stamp now;
            struct state_folder f = {0};
            struct ms_error e;
            if (maildir_change_stamp(r.rootfd, sel[i].path, &now) == 0 && now.cur_ns == stamp.cur_ns &&
                now.new_ns == stamp.new_ns && state_folder_get(r.st, sel[i].raw, &f, &e) == MS_OK && f.id &&
                !stamp_recorded(&r, f.id, &stamp) && stamp_record(&r, f.id, &stamp, &e) != MS_OK)
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
    record_outcome(&r);
    free_selected(sel, nsel);
    end_run(&r);
    res->seconds = util_now() - t0;
    return res->status;
}

int engine_pull(const struct account *a, const struct engine_options *opt, struct engine_result *res)
{
    return engine_run(a, opt, res, false, true);
}

int engine_push(const struct account *a, const struct engine_options *opt, struct engine_result *res)
{
    return engine_run(a, opt, res, true, false);
}

int engine_sync(const struct account *a, const struct engine_options *opt, struct engine_result *res)
{
    return engine_run(a, opt, res, true, true);
}

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
    int rc = connect_account(&conn, &e);
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
