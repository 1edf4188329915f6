/*
 * engine.c: one account run, server -> local (see engine.h).
 *
 * Crash safety. A pull moves messages in batches:
 *   1. the bodies stream into files in tmp/ (not yet durable);
 *   2. syncfs() makes the whole batch durable at once;
 *   3. one transaction journals every message as a *pending* row
 *      (UID, unique name, flags);
 *   4. each file is renamed into new/ or cur/, never over another file;
 *   5. the directories are fsynced, so the renames are durable;
 *   6. one transaction clears the pending marks.
 * A run killed anywhere leaves either nothing recorded (the tmp/ files are
 * swept later and the UIDs fetched again) or pending rows whose files are
 * durable in tmp/ or already in place: recover_pending() finishes those
 * renames on the next run. So no message is recorded without its file, and
 * none is delivered twice.
 *
 * Flag changes rename first and record after; deletions unlink first and
 * forget after. Both are idempotent when replayed by the planner, because
 * it compares with what the state recorded.
 */
#include "sync/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "db/state.h"
#include "sync/flags.h"
#include "sync/imap.h"
#include "sync/log.h"
#include "sync/maildir.h"
#include "sync/message.h"
#include "sync/names.h"
#include "sync/plan.h"
#include "sync/util.h"

/* One UID FETCH command asks for at most this many messages or bytes. */
#define BATCH_MESSAGES 500
#define BATCH_BYTES (32u * 1024 * 1024)
/* Delivered messages are made durable and recorded (one syncfs, two
 * transactions) after this many messages, bytes or seconds, whichever
 * comes first, also in the middle of a FETCH: a killed run loses at most
 * that much work. */
#define COMMIT_MESSAGES 200
#define COMMIT_BYTES (8u * 1024 * 1024)
#define COMMIT_SECONDS 1.0
/* How much of each message we keep while it streams, to read its
 * Message-ID for identity. */
#define HEADER_KEEP 16384
/* Unfinished tmp/ files older than this are swept (Maildir spec: 36 h). */
#define TMP_MAX_AGE (36 * 3600)

struct run {
    const struct account *acct;
    const struct engine_options *opt;
    struct engine_result *res;
    struct state *st;
    struct imap_session *imap;
    int rootfd;
    int lockfd;
};

/* ------------------------------------------------------------------ */
/* results */

static struct engine_folder_result *add_folder_result(struct engine_result *res, const char *name,
                                                      const char *path)
{
    res->folders = xrealloc(res->folders, (res->nfolders + 1) * sizeof *res->folders);
    struct engine_folder_result *f = &res->folders[res->nfolders++];
    memset(f, 0, sizeof *f);
    f->name = xstrdup(name);
    f->path = path ? xstrdup(path) : NULL;
    return f;
}

static void folder_fail(struct engine_folder_result *f, const struct ms_error *err)
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

/* One run per account: flock() on a file beside the state DB. The lock
 * goes away with the process, however it ends. */
static int take_lock(struct run *r, struct ms_error *err)
{
    char *path = lock_path(r->acct);
    int rc = MS_OK;
    if (util_mkdirs(path, 0700, true) != 0) {
        rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot create the directory of %s", path);
        goto out;
    }
    r->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (r->lockfd < 0) {
        rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot open lock file %s", path);
        goto out;
    }
    if (flock(r->lockfd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            rc = ms_error_set(err, MS_ELOCKED, "another mailsync run holds the lock of account %s (%s)",
                              r->acct->name, path);
        else
            rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot lock %s", path);
    }
out:
    free(path);
    return rc;
}

/* Whether this account has completed a sync before: then its Maildir root
 * must exist, and a missing one is an unmounted disk, not an empty store. */
static bool synced_before(struct state *st)
{
    struct state_folder *f = NULL;
    size_t n = 0;
    struct ms_error e;
    bool yes = false;
    if (state_folder_list(st, &f, &n, &e) == MS_OK)
        for (size_t i = 0; i < n && !yes; i++)
            yes = f[i].last_sync != 0;
    state_folders_free(f, n);
    return yes;
}

/* The state DB and the Maildir root. A root that is missing although the
 * account synced before is an error; on the first run it is created (or,
 * with --dry-run, left missing: every folder is then simply empty). */
static int open_store(struct run *r, struct ms_error *err)
{
    const char *path = r->acct->state_path;
    if (r->opt->dry_run && access(path, F_OK) != 0)
        path = ":memory:";
    int rc = state_open(path, &r->st, err);
    if (rc)
        return rc;
    bool must_exist = synced_before(r->st);
    if (r->opt->dry_run && !must_exist && access(r->acct->maildir, F_OK) != 0)
        return MS_OK;
    return maildir_root_open(r->acct->maildir, !must_exist, &r->rootfd, err);
}

static int connect_account(struct run *r, struct ms_error *err)
{
    char *pw = NULL;
    int rc = r->opt->get_password ? r->opt->get_password(r->acct, &pw, err) : MS_OK;
    if (rc)
        return rc;
    rc = imap_connect(r->acct, pw ? pw : "", &r->imap, err);
    if (pw) {
        explicit_bzero(pw, strlen(pw));
        free(pw);
    }
    return rc;
}

static void end_run(struct run *r)
{
    imap_close(r->imap);
    r->imap = NULL;
    if (r->st)
        state_close(r->st);
    r->st = NULL;
    if (r->rootfd >= 0)
        close(r->rootfd);
    r->rootfd = -1;
    if (r->lockfd >= 0)
        close(r->lockfd);
    r->lockfd = -1;
}

/* ------------------------------------------------------------------ */
/* folder selection */

struct selected {
    char *raw;
    char *name;
    char *path;
};

static char *display_name(const struct imap_folder *f)
{
    char *name = names_display(f->name);
    if (f->delim && f->delim != '/')
        for (char *p = name; *p; p++)
            if (*p == f->delim)
                *p = '/';
    return name;
}

static bool wanted_by_options(const struct engine_options *opt, const char *name)
{
    return opt->nfolder_patterns == 0 || names_folder_selected(name, opt->folder_patterns, opt->nfolder_patterns);
}

static void map_folders(const struct account *a, const struct engine_options *opt, const struct imap_folder *f,
                        size_t n, struct engine_folder_map *out)
{
    for (size_t i = 0; i < n; i++) {
        struct engine_folder_map *m = &out[i];
        m->raw = xstrdup(f[i].name);
        m->name = display_name(&f[i]);
        m->noselect = f[i].noselect;
        m->path = names_folder_path(f[i].name, f[i].delim, a->layout, &m->why);
        m->selected = !m->noselect && m->path && names_folder_selected(m->name, a->folders, a->nfolders) &&
                      wanted_by_options(opt, m->name);
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
/* crash recovery */

/* Finish deliveries a killed run journalled but did not confirm. */
static int recover_pending(struct run *r, int64_t folder_id, struct maildir_folder *mf, struct ms_error *err)
{
    struct state_msg *m = NULL;
    size_t n = 0;
    int rc = state_msg_list(r->st, folder_id, &m, &n, err);
    if (rc)
        return rc;
    size_t npending = 0;
    for (size_t i = 0; i < n; i++)
        npending += m[i].pending;
    if (npending == 0)
        goto out;
    log_msg(LOG_VERBOSE, "finishing %zu deliveries of an interrupted run", npending);
    for (size_t i = 0; i < n && rc == MS_OK; i++) {
        if (!m[i].pending)
            continue;
        struct local_msg found;
        int f = maildir_find(mf, m[i].uniq, &found, err);
        if (f == MS_OK) {
            free(found.uniq);
            free(found.name);
        } else if (f == 1 && maildir_tmp_exists(mf, m[i].uniq)) {
            rc = maildir_tmp_commit_name(mf, m[i].uniq, m[i].flags, "", err);
        } else if (f == 1) {
            /* never made it: forget it, the UID is fetched again */
            rc = state_msg_delete(r->st, folder_id, m[i].uid, err);
            m[i].pending = false;
        } else {
            rc = f;
        }
    }
    if (rc == MS_OK)
        rc = maildir_sync_dirs(mf, err);
    if (rc == MS_OK)
        rc = state_begin(r->st, err);
    for (size_t i = 0; i < n && rc == MS_OK; i++)
        if (m[i].pending)
            rc = state_msg_confirm(r->st, folder_id, m[i].uid, err);
    if (rc == MS_OK)
        rc = state_commit(r->st, err);
    else
        state_rollback(r->st);
out:
    state_msgs_free(m, n);
    return rc;
}

/* ------------------------------------------------------------------ */
/* fetching */

/* A local file the state does not know and identity matching could not
 * pair (no Message-ID, or one the server does not show): a download of
 * the same size is compared with it by content before it is delivered, so
 * after a lost DB a message without Message-ID is adopted, not doubled. */
struct leftover {
    char *uniq;
    uint64_t size; /* as it would be on the server (CRLF) */
    unsigned char hash[32];
    bool hashed;
    bool adopted;
};

struct fetched {
    uint32_t uid;
    struct maildir_tmp *tmp; /* NULL: an adopted local file */
    char *adopted;           /* its unique name */
    unsigned flags;
    char *keywords;
    uint64_t size;
    char *message_id;
};

struct fetch_ctx {
    struct run *run;
    struct maildir_folder *mf;
    int64_t folder_id;
    struct engine_folder_result *fres;
    const uint32_t *wanted; /* sorted UIDs of this batch */
    size_t nwanted;
    bool *got;              /* got[i]: wanted[i] was delivered */
    struct maildir_tmp *cur; /* the message streaming now */
    char head[HEADER_KEEP];
    size_t nhead;
    struct fetched *done;
    size_t ndone;
    uint64_t done_bytes;
    double last_commit;
    struct leftover *left;   /* see struct leftover; usually none */
    size_t nleft;
    struct local_msg *local; /* the folder's scan, sorted by uniq */
    size_t nlocal;
    EVP_MD_CTX *md;          /* content hash of the streaming message, only with leftovers */
    bool cr_pending;         /* hashing: a CR ended the last chunk */
    struct ms_error err;
};

static int commit_batch(struct fetch_ctx *c, struct ms_error *err);

/* Hash data as it will be stored: a CR directly before LF is dropped
 * (the same rule as maildir_tmp_write). */
static void hash_stored_form(struct fetch_ctx *c, const char *data, size_t len)
{
    size_t start = 0;
    if (c->cr_pending && len) {
        if (data[0] != '\n')
            EVP_DigestUpdate(c->md, "\r", 1);
        c->cr_pending = false;
    }
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\r')
            continue;
        if (i + 1 == len) { /* decide with the next chunk */
            EVP_DigestUpdate(c->md, data + start, i - start);
            c->cr_pending = true;
            return;
        }
        if (data[i + 1] == '\n') {
            EVP_DigestUpdate(c->md, data + start, i - start);
            start = i + 1;
        }
    }
    EVP_DigestUpdate(c->md, data + start, len - start);
}

static int start_message(struct fetch_ctx *c)
{
    c->nhead = 0;
    if (c->md) {
        EVP_DigestInit_ex(c->md, EVP_sha256(), NULL);
        c->cr_pending = false;
    }
    return maildir_tmp_open(c->mf, &c->cur, &c->err) ? -1 : 0;
}

static int fetch_chunk(void *vctx, const char *data, size_t len)
{
    struct fetch_ctx *c = vctx;
    if (!c->cur && start_message(c))
        return -1;
    if (c->md)
        hash_stored_form(c, data, len);
    size_t keep = len < HEADER_KEEP - c->nhead ? len : HEADER_KEEP - c->nhead;
    memcpy(c->head + c->nhead, data, keep);
    c->nhead += keep;
    return maildir_tmp_write(c->cur, data, len, &c->err) ? -1 : 0;
}

static int cmp_uid(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}


static struct local_msg *local_by_uniq(struct local_msg *l, size_t n, const char *uniq);

static bool hash_local_file(struct fetch_ctx *c, struct leftover *lo)
{
    struct local_msg *l = local_by_uniq(c->local, c->nlocal, lo->uniq);
    struct ms_error e;
    int fd = l ? maildir_open_msg(c->mf, l, &e) : -1;
    if (fd < 0)
        return false;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    char buf[65536];
    ssize_t n;
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    while (ok && (n = read(fd, buf, sizeof buf)) > 0)
        EVP_DigestUpdate(md, buf, (size_t)n);
    ok = ok && n == 0 && EVP_DigestFinal_ex(md, lo->hash, NULL);
    EVP_MD_CTX_free(md);
    close(fd);
    lo->hashed = ok;
    return ok;
}

/* The downloaded message m is byte for byte a local file nobody claimed:
 * give that file the server's flags and return its unique name (which
 * the batch then records for m's UID); else NULL. */
static char *adopt_leftover(struct fetch_ctx *c, const struct imap_msg *m)
{
    unsigned char hash[32];
    if (c->cr_pending)
        EVP_DigestUpdate(c->md, "\r", 1);
    c->cr_pending = false;
    if (!EVP_DigestFinal_ex(c->md, hash, NULL))
        return NULL;
    for (size_t i = 0; i < c->nleft; i++) {
        struct leftover *lo = &c->left[i];
        if (lo->adopted || lo->size != m->size)
            continue;
        if (!lo->hashed && !hash_local_file(c, lo))
            continue;
        if (memcmp(lo->hash, hash, sizeof hash) != 0)
            continue;
        struct local_msg *l = local_by_uniq(c->local, c->nlocal, lo->uniq);
        struct ms_error e;
        if (!l || maildir_set_flags(c->mf, l, m->flags, &e) != MS_OK)
            continue;
        lo->adopted = true;
        log_msg(LOG_VERBOSE, "UID %u is local file %s: adopted, not downloaded again", m->uid, lo->uniq);
        return xstrdup(lo->uniq);
    }
    return NULL;
}

static int fetch_message(void *vctx, const struct imap_msg *m, bool has_body)
{
    struct fetch_ctx *c = vctx;
    if (!has_body)
        return 0; /* an unsolicited flag update: nothing streamed */
    const uint32_t *slot = bsearch(&m->uid, c->wanted, c->nwanted, sizeof *c->wanted, cmp_uid);
    bool *got = slot ? &c->got[slot - c->wanted] : NULL;
    if (!got || *got) { /* not asked for, or a second body for one UID */
        log_msg(LOG_VERBOSE, "ignoring a body for UID %u the run did not ask for", m->uid);
        if (c->cur)
            maildir_tmp_discard(c->cur);
        c->cur = NULL;
        return 0;
    }
    if (!c->cur && start_message(c)) /* an empty message: no chunk came */
        return -1;
    if (maildir_tmp_close(c->cur, m->internaldate, false, &c->err)) {
        maildir_tmp_discard(c->cur);
        c->cur = NULL;
        return -1;
    }
    *got = true;
    struct fetched *f = &c->done[c->ndone++];
    f->uid = m->uid;
    f->adopted = c->nleft ? adopt_leftover(c, m) : NULL;
    if (f->adopted) {
        maildir_tmp_discard(c->cur);
        c->cur = NULL;
    }
    f->tmp = c->cur;
    f->flags = m->flags;
    f->keywords = m->keywords ? xstrdup(m->keywords) : NULL;
    f->size = m->size;
    f->message_id = message_header(c->head, c->nhead, "Message-ID");
    c->cur = NULL;
    c->done_bytes += m->size;
    if (c->run->opt->progress && c->run->opt->progress->message_done)
        c->run->opt->progress->message_done(c->run->opt->progress->ctx, m->size);
    if (c->ndone >= COMMIT_MESSAGES || c->done_bytes >= COMMIT_BYTES ||
        util_now() - c->last_commit >= COMMIT_SECONDS)
        return commit_batch(c, &c->err) ? -1 : 0;
    return 0;
}

static void free_fetched(struct fetch_ctx *c)
{
    for (size_t i = 0; i < c->ndone; i++) {
        if (c->done[i].tmp)
            maildir_tmp_discard(c->done[i].tmp);
        free(c->done[i].adopted);
        free(c->done[i].keywords);
        free(c->done[i].message_id);
    }
    c->ndone = 0;
}

/* Steps 2-6 of the comment at the top: make the batch durable, journal it,
 * move it into place, confirm it. */
static int commit_batch(struct fetch_ctx *c, struct ms_error *err)
{
    struct state *st = c->run->st;
    if (c->ndone == 0)
        return MS_OK;
    c->last_commit = util_now();
    c->done_bytes = 0;
    int rc = maildir_syncfs(c->mf, err);
    if (rc == MS_OK)
        rc = state_begin(st, err);
    for (size_t i = 0; i < c->ndone && rc == MS_OK; i++) {
        struct fetched *f = &c->done[i];
        struct state_msg m = {.uid = f->uid, .uniq = f->tmp ? (char *)maildir_tmp_uniq(f->tmp) : f->adopted,
                              .flags = f->flags, .keywords = f->keywords, .size = f->size,
                              .message_id = f->message_id, .pending = f->tmp != NULL};
        rc = state_msg_put(st, c->folder_id, &m, err);
    }
    if (rc == MS_OK)
        rc = state_commit(st, err);
    else
        state_rollback(st);
    for (size_t i = 0; i < c->ndone && rc == MS_OK; i++) {
        struct fetched *f = &c->done[i];
        struct maildir_tmp *t = f->tmp;
        if (!t)
            continue; /* adopted: already in place */
        f->tmp = NULL; /* commit frees it either way */
        rc = maildir_tmp_commit(c->mf, t, f->flags, "", err);
        if (rc == MS_OK) {
            c->fres->fetched++;
            c->fres->bytes += f->size;
        }
    }
    if (rc == MS_OK)
        rc = maildir_sync_dirs(c->mf, err);
    if (rc == MS_OK)
        rc = state_begin(st, err);
    for (size_t i = 0; i < c->ndone && rc == MS_OK; i++)
        rc = state_msg_confirm(st, c->folder_id, c->done[i].uid, err);
    if (rc == MS_OK)
        rc = state_commit(st, err);
    else
        state_rollback(st);
    free_fetched(c);
    return rc;
}

static int fetch_batch(struct fetch_ctx *c, const uint32_t *uids, size_t n, struct ms_error *err)
{
    struct imap_body_sink sink = {.ctx = c, .chunk = fetch_chunk, .message = fetch_message};
    c->wanted = uids;
    c->nwanted = n;
    c->done = xcalloc(n, sizeof *c->done);
    c->got = xcalloc(n, sizeof *c->got);
    c->ndone = 0;
    c->done_bytes = 0;
    c->last_commit = util_now();
    ms_error_clear(&c->err);
    int rc = imap_fetch_bodies(c->run->imap, uids, n, &sink, err);
    if (c->cur) { /* cut mid-message: that one is not complete */
        maildir_tmp_discard(c->cur);
        c->cur = NULL;
    }
    if (rc && c->err.code) /* our own callback failed: say why */
        *err = c->err;
    /* What arrived complete is kept even if the fetch failed later. */
    struct ms_error cerr;
    int crc = commit_batch(c, &cerr);
    if (crc) {
        rc = crc;
        *err = cerr;
    }
    free(c->done);
    free(c->got);
    c->done = NULL;
    c->got = NULL;
    return rc;
}

static int fetch_new(struct run *r, struct maildir_folder *mf, int64_t folder_id, const struct plan *p,
                     struct leftover *left, size_t nleft, struct local_msg *local, size_t nlocal,
                     struct engine_folder_result *fres, struct ms_error *err)
{
    uint32_t *uids = xmalloc((p->nfetch ? p->nfetch : 1) * sizeof *uids);
    struct fetch_ctx *c = xcalloc(1, sizeof *c);
    c->run = r;
    c->mf = mf;
    c->folder_id = folder_id;
    c->fres = fres;
    c->left = left;
    c->nleft = nleft;
    c->local = local;
    c->nlocal = nlocal;
    if (nleft && !(c->md = EVP_MD_CTX_new())) {
        free(c);
        free(uids);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    int rc = MS_OK;
    size_t n = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        const struct plan_action *a = &p->actions[i];
        if (a->op != PLAN_FETCH)
            continue;
        uids[n++] = a->uid;
        bytes += a->size;
        bool last = true;
        for (size_t j = i + 1; j < p->n; j++)
            if (p->actions[j].op == PLAN_FETCH) {
                last = false;
                break;
            }
        if (n == BATCH_MESSAGES || bytes >= BATCH_BYTES || last) {
            rc = fetch_batch(c, uids, n, err);
            n = 0;
            bytes = 0;
        }
    }
    EVP_MD_CTX_free(c->md);
    free(c);
    free(uids);
    return rc;
}

/* ------------------------------------------------------------------ */
/* local changes from the plan */

static struct local_msg *local_by_uniq(struct local_msg *l, size_t n, const char *uniq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l[mid].uniq, uniq);
        if (c == 0)
            return &l[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int apply_local_changes(struct run *r, struct maildir_folder *mf, int64_t folder_id, const struct plan *p,
                               struct local_msg *local, size_t nlocal, struct engine_folder_result *fres,
                               struct ms_error *err)
{
    int rc = MS_OK;
    /* Files first (rename/unlink), records after, in one transaction. */
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        const struct plan_action *a = &p->actions[i];
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
    rc = state_begin(r->st, err);
    for (size_t i = 0; i < p->n && rc == MS_OK; i++) {
        const struct plan_action *a = &p->actions[i];
        if (a->op == PLAN_LOCAL_DELETE || a->op == PLAN_FORGET)
            rc = state_msg_delete(r->st, folder_id, a->uid, err);
        else if (a->op == PLAN_LOCAL_FLAGS || a->op == PLAN_STATE_FLAGS)
            rc = state_msg_set_flags(r->st, folder_id, a->uid, a->state_flags, a->keywords, err);
    }
    if (rc == MS_OK)
        return state_commit(r->st, err);
    state_rollback(r->st);
    return rc;
}

/* ------------------------------------------------------------------ */
/* re-matching by identity */

struct id_list {
    struct plan_identity *ids;
    size_t n;
};

static void found_identity(void *ctx, uint32_t uid, uint64_t size, const char *message_id)
{
    struct id_list *l = ctx;
    l->ids = xrealloc(l->ids, (l->n + 1) * sizeof *l->ids);
    l->ids[l->n++] = (struct plan_identity){uid, NULL, message_id ? xstrdup(message_id) : NULL, size};
}

static void free_ids(struct id_list *l, bool free_uniq)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->ids[i].message_id);
        if (free_uniq)
            free((char *)l->ids[i].uniq);
    }
    free(l->ids);
    l->ids = NULL;
    l->n = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The unique names the state knows, sorted, for lookups by name. */
static const char **state_uniq_index(const struct state_msg *s, size_t ns, size_t *n)
{
    const char **idx = xmalloc((ns ? ns : 1) * sizeof *idx);
    size_t k = 0;
    for (size_t i = 0; i < ns; i++)
        if (s[i].uniq)
            idx[k++] = s[i].uniq;
    qsort(idx, k, sizeof *idx, cmp_str);
    *n = k;
    return idx;
}

static bool index_has(const char **idx, size_t n, const char *uniq)
{
    return bsearch(&uniq, idx, n, sizeof *idx, cmp_str) != NULL;
}

static int cmp_state_uid(const void *a, const void *b)
{
    const struct state_msg *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int cmp_identity_uid(const void *a, const void *b)
{
    const struct plan_identity *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static bool state_has_uid(const struct state_msg *s, size_t ns, uint32_t uid)
{
    size_t lo = 0, hi = ns;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid].uid == uid)
            return true;
        if (s[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Local identity of a file: from the rows the state had before a
 * UIDVALIDITY change if it knew the file, else read from the file. */
static void local_identity(struct maildir_folder *mf, struct local_msg *l, const struct state_msg *old,
                           size_t nold, struct id_list *out)
{
    for (size_t i = 0; i < nold; i++)
        if (old[i].uniq && strcmp(old[i].uniq, l->uniq) == 0) {
            out->ids = xrealloc(out->ids, (out->n + 1) * sizeof *out->ids);
            out->ids[out->n++] = (struct plan_identity){
                0, xstrdup(l->uniq), old[i].message_id ? xstrdup(old[i].message_id) : NULL, old[i].size};
            return;
        }
    struct ms_error e;
    int fd = maildir_open_msg(mf, l, &e);
    if (fd < 0)
        return;
    char *mid = NULL;
    uint64_t size = 0;
    if (message_identity_fd(fd, &mid, &size) == 0) {
        out->ids = xrealloc(out->ids, (out->n + 1) * sizeof *out->ids);
        out->ids[out->n++] = (struct plan_identity){0, xstrdup(l->uniq), mid, size};
    }
    close(fd);
}

/* Local files the state does not know, and server UIDs it does not know:
 * after a UIDVALIDITY change or a lost state DB these are the same
 * messages. Pair them by identity and record the pairs, so nothing is
 * downloaded twice. Rewrites *state / *nstate. */
static void collect_leftovers(const struct id_list *lids, const struct plan_match *m, size_t nm,
                              struct leftover **left, size_t *nleft)
{
    size_t nidx = nm;
    const char **idx = xmalloc((nm ? nm : 1) * sizeof *idx);
    for (size_t i = 0; i < nm; i++)
        idx[i] = m[i].uniq;
    qsort(idx, nidx, sizeof *idx, cmp_str);
    *left = xcalloc(lids->n, sizeof **left);
    *nleft = 0;
    for (size_t i = 0; i < lids->n; i++)
        if (!index_has(idx, nidx, lids->ids[i].uniq))
            (*left)[(*nleft)++] = (struct leftover){.uniq = xstrdup(lids->ids[i].uniq), .size = lids->ids[i].size};
    free(idx);
}

static void free_leftovers(struct leftover *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i].uniq);
    free(l);
}

static int rematch(struct run *r, struct maildir_folder *mf, int64_t folder_id, struct state_msg **state,
                   size_t *nstate, const struct state_msg *old, size_t nold, struct local_msg *local, size_t nlocal,
                   const struct imap_msg *remote, size_t nremote, size_t *nmatched, struct leftover **left,
                   size_t *nleft, struct ms_error *err)
{
    struct id_list lids = {0}, rids = {0};
    uint32_t *uids = NULL;
    size_t nuids = 0;
    struct plan_match *m = NULL;
    size_t nm = 0;
    int rc = MS_OK;
    *nmatched = 0;
    size_t nidx;
    const char **idx = state_uniq_index(*state, *nstate, &nidx);
    for (size_t i = 0; i < nlocal; i++)
        if (!index_has(idx, nidx, local[i].uniq))
            local_identity(mf, &local[i], old, nold, &lids);
    free(idx);
    if (lids.n == 0)
        goto out;
    uids = xmalloc((nremote ? nremote : 1) * sizeof *uids);
    for (size_t i = 0; i < nremote; i++)
        if (!state_has_uid(*state, *nstate, remote[i].uid))
            uids[nuids++] = remote[i].uid;
    if (nuids == 0)
        goto out;
    log_msg(LOG_VERBOSE, "matching %zu unknown local messages against %zu server messages by identity", lids.n,
            nuids);
    rc = imap_fetch_identity(r->imap, uids, nuids, found_identity, &rids, err);
    if (rc)
        goto out;
    if (plan_match(rids.ids, rids.n, lids.ids, lids.n, &m, &nm) != 0) {
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
        goto out;
    }
    collect_leftovers(&lids, m, nm, left, nleft);
    if (nm == 0)
        goto out;
    qsort(rids.ids, rids.n, sizeof *rids.ids, cmp_identity_uid);
    if (!r->opt->dry_run) {
        rc = state_begin(r->st, err);
        for (size_t i = 0; i < nm && rc == MS_OK; i++) {
            struct local_msg *l = local_by_uniq(local, nlocal, m[i].uniq);
            struct plan_identity key = {.uid = m[i].uid};
            const struct plan_identity *rid =
                bsearch(&key, rids.ids, rids.n, sizeof *rids.ids, cmp_identity_uid);
            uint64_t size = rid ? rid->size : 0;
            const char *mid = rid ? rid->message_id : NULL;
            /* Recorded with the local flags: the planner then brings the
             * server's flags down as a change. */
            struct state_msg row = {.uid = m[i].uid, .uniq = (char *)m[i].uniq, .flags = l ? l->flags : 0,
                                    .size = size, .message_id = (char *)mid};
            rc = state_msg_put(r->st, folder_id, &row, err);
        }
        if (rc == MS_OK)
            rc = state_commit(r->st, err);
        else
            state_rollback(r->st);
        if (rc)
            goto out;
        state_msgs_free(*state, *nstate);
        *state = NULL;
        *nstate = 0;
        rc = state_msg_list(r->st, folder_id, state, nstate, err);
    } else {
        /* --dry-run: pretend, in memory only */
        *state = xrealloc(*state, (*nstate + nm) * sizeof **state);
        for (size_t i = 0; i < nm; i++) {
            struct local_msg *l = local_by_uniq(local, nlocal, m[i].uniq);
            (*state)[(*nstate)++] = (struct state_msg){.uid = m[i].uid, .uniq = xstrdup(m[i].uniq),
                                                       .flags = l ? l->flags : 0};
        }
        qsort(*state, *nstate, sizeof **state, cmp_state_uid);
    }
    *nmatched = nm;
out:
    free(m);
    free(uids);
    free_ids(&lids, true);
    free_ids(&rids, false);
    return rc;
}

/* ------------------------------------------------------------------ */
/* one folder */

static void build_plan_input(struct plan_input *in, const struct account *a, const struct engine_options *opt,
                             const struct state_msg *s, size_t ns, const struct local_msg *l, size_t nl,
                             const struct imap_msg *rm, size_t nr)
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

static void free_plan_input(struct plan_input *in)
{
    free((void *)in->state);
    free((void *)in->local);
    free((void *)in->remote);
}

static void print_dry_run(const char *folder, const struct plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct plan_action *a = &p->actions[i];
        char letters[8];
        switch (a->op) {
        case PLAN_FETCH:
            printf("%s: would fetch UID %u (%llu bytes, flags %s)\n", folder, a->uid, (unsigned long long)a->size,
                   flags_to_letters(a->flags, letters));
            break;
        case PLAN_SKIP_LARGE:
            printf("%s: would skip UID %u (%llu bytes, over max_size)\n", folder, a->uid,
                   (unsigned long long)a->size);
            break;
        case PLAN_LOCAL_FLAGS:
            printf("%s: would set flags of UID %u to %s\n", folder, a->uid, flags_to_letters(a->flags, letters));
            break;
        case PLAN_LOCAL_DELETE:
            printf("%s: would delete the local copy of UID %u (expunged on the server)\n", folder, a->uid);
            break;
        case PLAN_STATE_FLAGS:
        case PLAN_FORGET:
            break;
        }
    }
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

/* The server's view of the folder; *changed when its UIDVALIDITY differs
 * from the recorded one. */
static int remote_snapshot(struct run *r, const struct selected *sel, const struct state_folder *sf,
                           struct imap_mailbox *mb, struct imap_msg **rm, size_t *nr, bool *changed,
                           struct ms_error *err)
{
    int rc = imap_select(r->imap, sel->raw, false, mb, err);
    if (rc)
        return rc;
    *changed = sf->uidvalidity && sf->uidvalidity != mb->uidvalidity;
    if (*changed)
        log_msg(LOG_WARN, "%s: UIDVALIDITY changed (%u -> %u): re-matching messages by identity, deleting nothing",
                sel->name, sf->uidvalidity, mb->uidvalidity);
    if (mb->exists == 0)
        return MS_OK;
    return imap_fetch_flags(r->imap, 1, 0, rm, nr, err);
}

static void report_skips(const char *folder, const struct plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->actions[i].op == PLAN_SKIP_LARGE)
            log_msg(LOG_WARN, "%s: UID %u skipped: %llu bytes is over max_size", folder, p->actions[i].uid,
                    (unsigned long long)p->actions[i].size);
}

static int pull_folder(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                       struct ms_error *err)
{
    struct state_folder sf = {0};
    struct maildir_folder *mf = NULL;
    struct imap_mailbox mb = {0};
    struct imap_msg *rm = NULL;
    struct local_msg *local = NULL;
    struct state_msg *state = NULL, *old = NULL;
    struct leftover *left = NULL;
    size_t nr = 0, nlocal = 0, nstate = 0, nold = 0, nmatched = 0, nleft = 0;
    struct plan_input in = {0};
    struct plan p = {0};
    bool uv_changed = false;
    const struct engine_progress *prog = r->opt->progress;

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
    if (exists || !r->opt->dry_run) {
        rc = maildir_folder_open(r->rootfd, sel->path, !r->opt->dry_run, &mf, err);
        if (rc)
            goto out;
        if (!r->opt->dry_run) {
            if (sf.id && (rc = recover_pending(r, sf.id, mf, err)))
                goto out;
            maildir_sweep_tmp(mf, TMP_MAX_AGE, NULL);
        }
        if ((rc = maildir_scan(mf, &local, &nlocal, err)))
            goto out;
    }
    if ((rc = remote_snapshot(r, sel, &sf, &mb, &rm, &nr, &uv_changed, err)))
        goto out;
    if (sf.id && (rc = state_msg_list(r->st, sf.id, &state, &nstate, err)))
        goto out;
    if (uv_changed) {
        /* The old UIDs mean nothing now; their rows still tell which local
         * file is which message. */
        old = state;
        nold = nstate;
        state = NULL;
        nstate = 0;
        if (!r->opt->dry_run && (rc = state_msg_delete_all(r->st, sf.id, err)))
            goto out;
    }
    if (mf && (rc = rematch(r, mf, sf.id, &state, &nstate, old, nold, local, nlocal, rm, nr, &nmatched, &left, &nleft, err)))
        goto out;
    if (nmatched)
        log_msg(LOG_INFO, "%s: %zu local messages matched to the server by identity", sel->name, nmatched);

    build_plan_input(&in, r->acct, r->opt, state, nstate, local, nlocal, rm, nr);
    if (plan_pull(&in, &p) != 0) {
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
        goto out;
    }
    if (p.guard_tripped) {
        rc = ms_error_set(err, MS_EPARTIAL,
                          "%s: left untouched: the server no longer lists %zu of %zu messages, more than "
                          "max_delete (%d%%); if that is right, run again with --force",
                          sel->name, p.guard_deletes, p.guard_total, r->acct->max_delete);
        goto out;
    }
    fres->skipped = p.nskip;
    report_skips(sel->name, &p);
    if (r->opt->dry_run) {
        print_dry_run(sel->name, &p);
        fres->fetched = p.nfetch;
        fres->bytes = p.fetch_bytes;
        fres->flagged = p.nflags;
        fres->deleted = p.ndelete;
        goto out;
    }
    if (prog && prog->folder_start)
        prog->folder_start(prog->ctx, r->acct->name, sel->name, p.nfetch, p.fetch_bytes);
    if ((rc = apply_local_changes(r, mf, sf.id, &p, local, nlocal, fres, err)))
        goto out;
    if ((rc = fetch_new(r, mf, sf.id, &p, left, nleft, local, nlocal, fres, err)))
        goto out;
    sf.uidvalidity = mb.uidvalidity;
    sf.uidnext = mb.uidnext;
    sf.highestmodseq = mb.highestmodseq;
    sf.last_sync = (int64_t)time(NULL);
    rc = state_folder_save(r->st, &sf, err);
out:
    if (rc)
        folder_fail(fres, err);
    plan_free(&p);
    free_plan_input(&in);
    state_msgs_free(state, nstate);
    state_msgs_free(old, nold);
    free_leftovers(left, nleft);
    maildir_msgs_free(local, nlocal);
    imap_msgs_free(rm, nr);
    maildir_folder_close(mf);
    state_folder_free(&sf);
    if (prog && prog->folder_done && !r->opt->dry_run)
        prog->folder_done(prog->ctx, fres);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the account */

static int list_selected(struct run *r, struct selected **out, size_t *nout, struct ms_error *err)
{
    struct imap_folder *f = NULL;
    size_t n = 0;
    int rc = imap_list(r->imap, &f, &n, err);
    if (rc)
        return rc;
    struct engine_folder_map *map = xcalloc(n, sizeof *map);
    map_folders(r->acct, r->opt, f, n, map);
    struct selected *sel = xcalloc(n, sizeof *sel);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!map[i].path && !map[i].noselect)
            log_msg(LOG_WARN, "skipping server folder \"%s\": %s", log_escape(map[i].raw, strlen(map[i].raw), 200),
                    map[i].why);
        if (!map[i].selected)
            continue;
        sel[k].raw = map[i].raw;
        sel[k].name = map[i].name;
        sel[k].path = map[i].path;
        map[i].raw = map[i].name = map[i].path = NULL;
        k++;
    }
    engine_folders_free(map, n);
    imap_folders_free(f, n);
    *out = sel;
    *nout = k;
    return MS_OK;
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

static void record_outcome(struct run *r)
{
    if (!r->st || r->opt->dry_run)
        return;
    struct ms_error e;
    char buf[32];
    const char *worst = r->res->error[0] ? r->res->error : NULL;
    for (size_t i = 0; !worst && i < r->res->nfolders; i++)
        if (r->res->folders[i].error)
            worst = r->res->folders[i].error;
    if (r->res->status == MS_OK) {
        snprintf(buf, sizeof buf, "%lld", (long long)time(NULL));
        state_meta_set(r->st, "last_sync", buf, &e);
    }
    state_meta_set(r->st, "last_error", worst, &e);
}

int engine_pull(const struct account *a, const struct engine_options *opt, struct engine_result *res)
{
    struct run r = {.acct = a, .opt = opt, .res = res, .rootfd = -1, .lockfd = -1};
    struct ms_error err = {0};
    struct selected *sel = NULL;
    size_t nsel = 0;
    double t0 = util_now();
    memset(res, 0, sizeof *res);
    res->account = xstrdup(a->name);

    /* A dry run changes nothing, so it needs no lock (and creates no lock
     * file for an account that never ran). */
    int rc = opt->dry_run ? MS_OK : take_lock(&r, &err);
    if (rc == MS_OK)
        rc = open_store(&r, &err);
    if (rc == MS_OK)
        rc = connect_account(&r, &err);
    if (rc == MS_OK)
        rc = list_selected(&r, &sel, &nsel, &err);
    if (rc) {
        res->status = rc;
        snprintf(res->error, sizeof res->error, "%s", err.msg);
        goto out;
    }
    for (size_t i = 0; i < nsel; i++) {
        struct engine_folder_result *fres = add_folder_result(res, sel[i].name, sel[i].path);
        struct ms_error ferr = {0};
        int frc = pull_folder(&r, &sel[i], fres, &ferr);
        if (frc == MS_OK)
            continue;
        log_msg(LOG_ERROR, "%s", ferr.msg);
        if (frc == MS_ENET || frc == MS_ELOCAL || frc == MS_EAUTH) {
            /* the session or the store is unusable: stop the account */
            res->status = frc;
            snprintf(res->error, sizeof res->error, "%s", ferr.msg);
            goto out;
        }
        res->status = ms_error_worse(res->status, MS_EPARTIAL);
    }
out:
    record_outcome(&r);
    free_selected(sel, nsel);
    end_run(&r);
    res->seconds = util_now() - t0;
    return res->status;
}

/* ------------------------------------------------------------------ */
/* check, folders, status */

int engine_check(const struct account *a, const struct engine_options *opt, struct engine_check *out,
                 struct ms_error *err)
{
    struct run r = {.acct = a, .opt = opt, .rootfd = -1, .lockfd = -1};
    struct imap_folder *f = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    int rc = connect_account(&r, err);
    if (rc == MS_OK) {
        snprintf(out->tls, sizeof out->tls, "%s", imap_tls_info(r.imap));
        out->capabilities = xstrdup(imap_capabilities(r.imap));
        rc = imap_list(r.imap, &f, &n, err);
        out->nfolders = n;
        imap_folders_free(f, n);
    }
    end_run(&r);
    return rc;
}

void engine_check_free(struct engine_check *c)
{
    free(c->capabilities);
    memset(c, 0, sizeof *c);
}

int engine_folders(const struct account *a, const struct engine_options *opt, struct engine_folder_map **out,
                   size_t *nout, struct ms_error *err)
{
    struct run r = {.acct = a, .opt = opt, .rootfd = -1, .lockfd = -1};
    struct imap_folder *f = NULL;
    size_t n = 0;
    *out = NULL;
    *nout = 0;
    int rc = connect_account(&r, err);
    if (rc == MS_OK)
        rc = imap_list(r.imap, &f, &n, err);
    if (rc == MS_OK) {
        *out = xcalloc(n, sizeof **out);
        map_folders(a, opt, f, n, *out);
        *nout = n;
    }
    imap_folders_free(f, n);
    end_run(&r);
    return rc;
}

static void status_folder(struct state *st, int rootfd, const struct state_folder *sf,
                          struct engine_status_folder *out)
{
    struct ms_error e;
    struct state_msg *s = NULL;
    size_t ns = 0;
    struct local_msg *l = NULL;
    size_t nl = 0;
    struct maildir_folder *mf = NULL;
    out->name = xstrdup(sf->name);
    out->path = xstrdup(sf->path ? sf->path : "");
    out->last_sync = sf->last_sync;
    out->local = -1;
    if (state_msg_list(st, sf->id, &s, &ns, &e) == MS_OK)
        out->synced = (int64_t)ns;
    if (rootfd >= 0 && sf->path && maildir_folder_exists(rootfd, sf->path) &&
        maildir_folder_open(rootfd, sf->path, false, &mf, &e) == MS_OK &&
        maildir_scan(mf, &l, &nl, &e) == MS_OK) {
        out->local = (int64_t)nl;
        size_t nidx;
        const char **idx = state_uniq_index(s, ns, &nidx);
        for (size_t i = 0; i < nl; i++)
            if (!index_has(idx, nidx, l[i].uniq))
                out->local_new++;
        free(idx);
        for (size_t i = 0; i < ns; i++) {
            struct local_msg *m = s[i].uniq ? local_by_uniq(l, nl, s[i].uniq) : NULL;
            if (!m)
                out->local_gone++;
            else if (m->flags != s[i].flags)
                out->local_flags++;
        }
    }
    maildir_msgs_free(l, nl);
    maildir_folder_close(mf);
    state_msgs_free(s, ns);
}

int engine_status(const struct account *a, struct engine_status *out, struct ms_error *err)
{
    struct state *st = NULL;
    struct state_folder *f = NULL;
    size_t n = 0;
    int rootfd = -1;
    memset(out, 0, sizeof *out);
    if (access(a->state_path, F_OK) != 0)
        return MS_OK; /* never synced */
    int rc = state_open(a->state_path, &st, err);
    if (rc)
        return rc;
    out->have_state = true;
    char *v = NULL;
    if (state_meta_get(st, "last_sync", &v, err) == MS_OK && v)
        out->last_sync = strtoll(v, NULL, 10);
    free(v);
    state_meta_get(st, "last_error", &out->last_error, err);
    rc = state_folder_list(st, &f, &n, err);
    if (rc == MS_OK) {
        struct ms_error e;
        if (maildir_root_open(a->maildir, false, &rootfd, &e) != MS_OK)
            rootfd = -1;
        out->folders = xcalloc(n, sizeof *out->folders);
        out->nfolders = n;
        for (size_t i = 0; i < n; i++)
            status_folder(st, rootfd, &f[i], &out->folders[i]);
    }
    if (rootfd >= 0)
        close(rootfd);
    state_folders_free(f, n);
    state_close(st);
    return rc;
}

void engine_status_free(struct engine_status *s)
{
    for (size_t i = 0; i < s->nfolders; i++) {
        free(s->folders[i].name);
        free(s->folders[i].path);
    }
    free(s->folders);
    free(s->last_error);
    memset(s, 0, sizeof *s);
}
