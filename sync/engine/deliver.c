/* SPDX-License-Identifier: MIT */
/*
 * deliver.c: bringing server messages into the Maildir: the download of
 * a folder's new messages over one or more connections, in batches that
 * the delivery journal (sync/engine/journal.h) lands crash-safely.
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sync/flags.h"
#include "sync/engine/journal.h"
#include "sync/log.h"
#include "sync/message.h"
#include "sync/util.h"

/* One UID FETCH command asks for at most this many messages or bytes.
 * Each command waits a round trip for its first byte (none is sent
 * ahead), so small messages come in big commands: at 4,096 a first pull of
 * 200,000 small messages takes ~90 round trips, at 500 it took ~500. The
 * IMAP side's own cut (FETCH_BODY_UIDS) is the same. */
#define BATCH_MESSAGES 4096
#define BATCH_BYTES (32u * 1024 * 1024)
/* With extra connections (connections = N), commands are smaller, so that
 * the connections run out of work at nearly the same time; and a folder
 * uses them only when it has at least this much to download (the extra
 * logins would cost more than they bring). */
#define SHARED_BATCH_MESSAGES 250
#define SHARED_BATCH_BYTES (8u * 1024 * 1024)
#define SHARED_MIN_BYTES (16u * 1024 * 1024)
/* Delivered messages are made durable and recorded (one syncfs, two
 * transactions) after this many messages, bytes or seconds, whichever
 * comes first, also in the middle of a FETCH: a killed run loses at most
 * that much work. */
#define COMMIT_MESSAGES 200
#define COMMIT_BYTES (4u * 1024 * 1024)
#define COMMIT_SECONDS 0.5
/* While a batch streams in, a helper thread runs syncfs() each time this
 * much more has been written: the batch's own syncfs (its durability
 * point) then finds most of the data on disk already, instead of making
 * the run wait for all of it after the last message. */
#define SYNC_AHEAD_BYTES (256u * 1024)
/* How much of each message we keep while it streams, to read its
 * Message-ID for identity. */
#define HEADER_KEEP 16384

/* ------------------------------------------------------------------ */
/* fetching */

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
    struct journal_entry *done;
    size_t ndone;
    uint64_t done_bytes;
    uint64_t unsynced;       /* bytes written since the last syncfs was started */
    double last_commit;
    struct leftover *left;   /* see struct leftover; usually none */
    size_t nleft;
    struct local_msg *local; /* the folder's scan, sorted by uniq */
    size_t nlocal;
    struct message_hash *hash; /* of the streaming message, only with leftovers */
    struct ms_error err;
    /* Downloads share the folder with other connections' threads: this
     * lock (the run's) guards the state DB and the progress callbacks. */
    pthread_mutex_t *lock;
    struct journal *journal; /* made by the first batch (ctx_journal) */
};

static void ctx_lock(struct fetch_ctx *c)
{
    if (c->lock)
        pthread_mutex_lock(c->lock);
}

static void ctx_unlock(struct fetch_ctx *c)
{
    if (c->lock)
        pthread_mutex_unlock(c->lock);
}

static int commit_batch(struct fetch_ctx *c, struct ms_error *err);

static int start_message(struct fetch_ctx *c)
{
    c->nhead = 0;
    if (c->hash)
        message_hash_start(c->hash);
    return maildir_tmp_open(c->mf, &c->cur, &c->err) ? -1 : 0;
}

static int fetch_chunk(void *vctx, const char *data, size_t len)
{
    struct fetch_ctx *c = vctx;
    if (!c->cur && start_message(c))
        return -1;
    if (c->hash)
        message_hash_add(c->hash, data, len);
    size_t keep = len < HEADER_KEEP - c->nhead ? len : HEADER_KEEP - c->nhead;
    memcpy(c->head + c->nhead, data, keep);
    c->nhead += keep;
    return maildir_tmp_write(c->cur, data, len, &c->err) ? -1 : 0;
}

bool deliver_leftover_is(struct maildir_folder *mf, struct leftover *lo, struct local_msg *l, uint64_t len,
                         const unsigned char hash[32])
{
    /* the file holds at least the bytes hashed (CRs and tool fields are
     * left out of the digest, never added) */
    if (lo->adopted || !l || lo->size < len)
        return false;
    if (!lo->hashed) {
        struct ms_error e;
        struct message_hash *h = message_hash_new();
        int fd = h ? maildir_open_msg(mf, l, &e) : -1;
        if (fd >= 0) {
            lo->hashed = message_hash_file(h, fd, lo->hash, &lo->hlen) == 0;
            close(fd);
        }
        message_hash_free(h);
        if (!lo->hashed)
            return false;
    }
    return lo->hlen == len && memcmp(lo->hash, hash, sizeof lo->hash) == 0;
}

/* The downloaded message m is a local file nobody claimed, byte for byte but
 * for the fields other tools add (message.h):
 * give that file the server's flags and return its unique name (which
 * the batch then records for m's UID, with the server's flags); else NULL.
 * A file the state knew before a UIDVALIDITY change gets only the server's
 * changes since the last sync, so its local changes stay for the push. */
static char *adopt_leftover(struct fetch_ctx *c, const struct remote_msg *m)
{
    /* Compared as stored (CRLF -> LF on both sides) and without the
     * fields other tools add (message.h): RFC822.SIZE is only a hint (bare
     * LFs, servers that count loosely). */
    uint64_t len;
    unsigned char hash[32];
    if (!message_hash_end(c->hash, hash, &len))
        return NULL;
    for (size_t i = 0; i < c->nleft; i++) {
        struct leftover *lo = &c->left[i];
        struct local_msg *l = views_local_by_uniq(c->local, c->nlocal, lo->uniq);
        if (!deliver_leftover_is(c->mf, lo, l, len, hash))
            continue;
        struct ms_error e;
        unsigned want = m->flags;
        if (lo->synced)
            want = (l->flags & ~(lo->synced_flags & ~m->flags)) | (m->flags & ~lo->synced_flags);
        if (maildir_set_flags(c->mf, l, want, &e) != MS_OK)
            continue;
        lo->adopted = true;
        log_msg(LOG_VERBOSE, "UID %u is local file %s: adopted, not downloaded again", m->uid, lo->uniq);
        return xstrdup(lo->uniq);
    }
    return NULL;
}

static int fetch_message(void *vctx, const struct remote_msg *m, bool has_body)
{
    struct fetch_ctx *c = vctx;
    if (!has_body)
        return 0; /* an unsolicited flag update: nothing streamed */
    const uint32_t *slot = util_uid_find(c->wanted, c->nwanted, m->uid);
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
    if (m->size > 0 && maildir_tmp_size(c->cur) == 0) {
        /* BODY[] NIL, or an empty literal for a message the server says
         * is not empty: not the message. Not recorded; the next run asks
         * again. */
        log_msg(LOG_WARN, "UID %u: the server sent an empty body for a message of %llu bytes; not stored",
                m->uid, (unsigned long long)m->size);
        maildir_tmp_discard(c->cur);
        c->cur = NULL;
        c->fres->failed++;
        return 0;
    }
    struct journal_entry *f = &c->done[c->ndone++];
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
    f->emailid = m->emailid ? xstrdup(m->emailid) : NULL;
    c->cur = NULL;
    c->done_bytes += m->size;
    if (c->run->opt->progress && c->run->opt->progress->message_done) {
        ctx_lock(c);
        c->run->opt->progress->message_done(c->run->opt->progress->ctx, m->size);
        ctx_unlock(c);
    }
    if (run_stopped(c->run)) { /* what came is committed by fetch_batch */
        ms_error_set(&c->err, MS_EPARTIAL, "%s", STOPPED_DOWNLOAD);
        return -1;
    }
    if (c->ndone >= COMMIT_MESSAGES || c->done_bytes >= COMMIT_BYTES ||
        util_now() - c->last_commit >= COMMIT_SECONDS)
        return commit_batch(c, &c->err) ? -1 : 0;
    c->unsynced += m->size;
    if (c->unsynced >= SYNC_AHEAD_BYTES) {
        c->unsynced = 0;
        int fd = maildir_dup_tmp(c->mf);
        if (fd >= 0) /* else the batch's syncfs does it all */
            dirsync_syncfs_ahead(c->run->dirs, fd, maildir_folder_path(c->mf));
    }
    return 0;
}

/* The folder's delivery journal, made with the context's lock on first use. */
static struct journal *ctx_journal(struct fetch_ctx *c)
{
    if (!c->journal)
        c->journal = journal_new(c->run->st, c->mf, c->folder_id, JOURNAL_UID, c->run->dirs, c->lock, c->fres);
    return c->journal;
}

/* Hand the messages fetched so far over to the journal's committer. A
 * failure of an earlier batch is returned here, and then this batch is
 * dropped: its files stay unrecorded, and the next run asks for those
 * UIDs again. */
static int commit_batch(struct fetch_ctx *c, struct ms_error *err)
{
    if (c->ndone == 0)
        return MS_OK;
    c->last_commit = util_now();
    c->done_bytes = 0;
    c->unsynced = 0;
    int rc = journal_submit(ctx_journal(c), c->done, c->ndone, err);
    c->ndone = 0;
    return rc;
}

/* Wait for the last batch handed over: MS_OK, or the first failure. */
static int commit_finish(struct fetch_ctx *c, struct ms_error *err)
{
    return c->journal ? journal_finish(c->journal, err) : MS_OK;
}

static int fetch_batch(struct fetch_ctx *c, struct remote *s, const uint32_t *uids, size_t n,
                       struct ms_error *err)
{
    struct remote_body_sink sink = {.ctx = c, .chunk = fetch_chunk, .message = fetch_message};
    c->wanted = uids;
    c->nwanted = n;
    c->done = xcalloc(n, sizeof *c->done);
    c->got = xcalloc(n, sizeof *c->got);
    c->ndone = 0;
    c->done_bytes = 0;
    c->last_commit = util_now();
    ms_error_clear(&c->err);
    int rc = s->ops->fetch_bodies(s, uids, n, &sink, err);
    if (c->cur) { /* cut mid-message: that one is not complete */
        maildir_tmp_discard(c->cur);
        c->cur = NULL;
    }
    if (rc && c->err.code) { /* our own callback failed: its code and why */
        *err = c->err;
        rc = c->err.code;
    }
    for (size_t i = 0; i < n; i++)
        if (!c->got[i]) {
            /* Asked for, not answered with a body: expunged meanwhile,
             * or a server in trouble. Either way not synced now. (After a
             * failure, the rest of the command is just counted.) */
            if (rc == MS_OK)
                log_msg(LOG_WARN, "UID %u: the server returned no body; not stored", uids[i]);
            if (!run_stopped(c->run)) /* not failed: left for the next run */
                c->fres->failed++;
        }
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

/* The commands of one folder's download, taken in turn by the
 * connections that share it. */
struct fetch_queue {
    pthread_mutex_t mu;
    const uint32_t *uids;
    size_t *start; /* command k asks for uids[start[k] .. start[k+1]) */
    size_t ncmd, next;
    bool stop;     /* a failure that ends the folder's download */
};

static bool take_command(struct fetch_queue *q, const uint32_t **uids, size_t *n)
{
    pthread_mutex_lock(&q->mu);
    bool ok = !q->stop && q->next < q->ncmd;
    if (ok) {
        *uids = q->uids + q->start[q->next];
        *n = q->start[q->next + 1] - q->start[q->next];
        q->next++;
    }
    pthread_mutex_unlock(&q->mu);
    return ok;
}

static void stop_queue(struct fetch_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_mutex_unlock(&q->mu);
}

/* Download commands from q over s until none is left or one fails. A
 * failure stops the others too, except (ends_all false) a lost
 * connection: the others then take the remaining commands. */
static int drain(struct fetch_ctx *c, struct remote *s, struct fetch_queue *q, bool ends_all,
                 struct ms_error *err)
{
    const uint32_t *uids;
    size_t n;
    int rc = MS_OK;
    while (rc == MS_OK && take_command(q, &uids, &n))
        rc = fetch_batch(c, s, uids, n, err);
    struct ms_error cerr;
    int crc = commit_finish(c, &cerr);
    if (crc && (rc == MS_OK || rc == MS_ENET)) { /* a local failure weighs more */
        rc = crc;
        *err = cerr;
    }
    if (rc && (ends_all || rc != MS_ENET))
        stop_queue(q);
    return rc;
}

static struct fetch_ctx *new_ctx(struct run *r, struct maildir_folder *mf, int64_t folder_id,
                                 struct engine_folder_result *fres)
{
    struct fetch_ctx *c = xcalloc(1, sizeof *c);
    c->run = r;
    c->mf = mf;
    c->folder_id = folder_id;
    c->fres = fres;
    return c;
}

static void free_ctx(struct fetch_ctx *c)
{
    if (!c)
        return;
    journal_free(&c->journal);
    message_hash_free(c->hash);
    free(c);
}

/* One extra connection's share of a folder's download, in its thread. */
struct helper {
    struct run *r;
    size_t slot; /* r->extra[slot] */
    const struct selected *sel;
    uint32_t uidvalidity;
    int64_t folder_id;
    struct fetch_queue *q;
    pthread_t thread;
    /* Its own descriptors of the folder: the kernel reports a write-back
     * error to each open file once, so each connection's batch syncfs
     * sees every error, not only the one that happened to ask first. */
    struct maildir_folder *mf;
    struct fetch_ctx *c;
    struct engine_folder_result fres; /* its counts, added to the folder's */
    int rc;
    struct ms_error err;
};

/* The connection could not be used: downloads go on without it (for the
 * rest of the run). */
static void drop_extra(struct helper *h, const char *what, const struct ms_error *e)
{
    log_msg(LOG_VERBOSE, "%s: extra connection %zu %s: %s; downloading over the others", h->sel->name,
            h->slot + 1, what, e->msg);
    remote_close(&h->r->extra[h->slot]);
    h->r->extra_failed[h->slot] = true;
}

static void *helper_main(void *arg)
{
    struct helper *h = arg;
    pthread_setname_np(pthread_self(), "ms-fetch");
    struct run *r = h->r;
    struct ms_error e = {0};
    /* clone() only reads what the main session's connect set up: safe
     * beside the main thread's use of it */
    if (!r->extra[h->slot] && r->remote->ops->clone(r->remote, r->password, &r->extra[h->slot], &e) != MS_OK) {
        drop_extra(h, "failed", &e);
        return NULL;
    }
    struct remote_box mb;
    if (r->extra[h->slot]->ops->select(r->extra[h->slot], h->sel->raw, false, &mb, &e) != MS_OK) {
        drop_extra(h, "could not open the folder", &e);
        return NULL;
    }
    if (mb.uidvalidity != h->uidvalidity) /* changed since the main connection looked: leave it to that one */
        return NULL;
    h->rc = maildir_folder_open(r->rootfd, h->sel->path, false, &h->mf, &h->err);
    if (h->rc) {
        stop_queue(h->q);
        return NULL;
    }
    h->c = new_ctx(r, h->mf, h->folder_id, &h->fres);
    h->c->lock = &r->lock;
    h->rc = drain(h->c, r->extra[h->slot], h->q, false, &h->err);
    if (h->rc == MS_ENET) {
        /* What it brought in is kept; what it did not is counted failed
         * (fetch_batch), and the next run asks for it again. */
        log_msg(LOG_WARN, "%s: %s", h->sel->name, h->err.msg);
        drop_extra(h, "was lost", &h->err);
        h->rc = MS_OK;
    }
    return NULL;
}

/* ---- newest first (a first pull: plan_input.newest_first) ---- */

/* The first command of a newest-first download asks for this many
 * messages; each next one for four times as many, up to the usual size. */
#define NEWEST_FIRST_MESSAGES 16

static bool newest_first_plan(const struct plan *p)
{
    uint32_t prev = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->actions[i].op != PLAN_FETCH)
            continue;
        if (prev && p->actions[i].uid < prev)
            return true;
        prev = p->actions[i].uid;
    }
    return false;
}

static int cmp_uid32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int deliver_fetch_new(struct run *r, const struct selected *sel, uint32_t uidvalidity, struct maildir_folder *mf,
                      int64_t folder_id, const struct plan *p, struct leftover *left, size_t nleft,
                      struct local_msg *local, size_t nlocal, struct engine_folder_result *fres,
                      struct state_folder *finish, struct ms_error *err)
{
    /* Extra connections share the download when there are some, the
     * folder has enough to download, and no leftover may be adopted
     * (adoption is one connection's job: it compares with local files). */
    size_t nhelp = 0;
    for (size_t k = 0; k < r->nextra; k++)
        nhelp += !r->extra_failed[k];
    if (nleft || p->fetch_bytes < SHARED_MIN_BYTES)
        nhelp = 0;
    size_t max_msgs = nhelp ? SHARED_BATCH_MESSAGES : BATCH_MESSAGES;
    uint64_t max_bytes = nhelp ? SHARED_BATCH_BYTES : BATCH_BYTES;

    /* The commands: runs of the plan's UIDs, cut by count and size. */
    struct fetch_queue q = {.mu = PTHREAD_MUTEX_INITIALIZER};
    uint32_t *uids = xmalloc((p->nfetch ? p->nfetch : 1) * sizeof *uids);
    q.start = xmalloc((p->nfetch + 1) * sizeof *q.start);
    q.uids = uids;
    size_t n = 0, inbatch = 0;
    uint64_t bytes = 0;
    /* Newest first (the plan's fetches in descending UID order, a first
     * pull): the first commands are small, so the newest mail is in place
     * after the first round trip rather than after a whole command's;
     * each command's UIDs are sorted (the fetch looks them up). */
    bool newest_first = newest_first_plan(p);
    size_t cmd_msgs = newest_first ? NEWEST_FIRST_MESSAGES : max_msgs;
    for (size_t i = 0; i < p->n; i++) {
        const struct plan_action *a = &p->actions[i];
        if (a->op != PLAN_FETCH)
            continue;
        if (inbatch == 0)
            q.start[q.ncmd++] = n;
        uids[n++] = a->uid;
        inbatch++;
        bytes += a->size;
        if (inbatch >= cmd_msgs || bytes >= max_bytes) {
            inbatch = 0, bytes = 0;
            cmd_msgs = cmd_msgs * 4 < max_msgs ? cmd_msgs * 4 : max_msgs;
        }
    }
    q.start[q.ncmd] = n;
    for (size_t k = 0; newest_first && k < q.ncmd; k++) {
        qsort(uids + q.start[k], q.start[k + 1] - q.start[k], sizeof *uids, cmp_uid32);
        log_msg(LOG_VERBOSE, "%s: newest first: command %zu fetches UIDs %u:%u", sel->name, k + 1,
                uids[q.start[k]], uids[q.start[k + 1] - 1]);
    }
    if (q.ncmd < 2)
        nhelp = 0;

    struct fetch_ctx *c = new_ctx(r, mf, folder_id, fres);
    c->left = left;
    c->nleft = nleft;
    c->local = local;
    c->nlocal = nlocal;
    int rc = MS_OK;
    if (nleft && !(c->hash = message_hash_new()))
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
    struct helper *h = xcalloc(nhelp ? nhelp : 1, sizeof *h);
    size_t nstarted = 0;
    if (rc == MS_OK && nhelp) {
        c->lock = &r->lock;
        for (size_t k = 0; k < r->nextra; k++) {
            if (r->extra_failed[k])
                continue;
            struct helper *x = &h[nstarted];
            *x = (struct helper){.r = r, .slot = k, .sel = sel, .uidvalidity = uidvalidity,
                                 .folder_id = folder_id, .q = &q};
            if (pthread_create(&x->thread, NULL, helper_main, x) == 0)
                nstarted++;
        }
        if (nstarted)
            log_msg(LOG_VERBOSE, "%s: downloading over %zu connections", sel->name, nstarted + 1);
    }
    if (rc == MS_OK)
        rc = drain(c, r->remote, &q, true, err);
    for (size_t k = 0; k < nstarted; k++) {
        pthread_join(h[k].thread, NULL);
        fres->fetched += h[k].fres.fetched;
        fres->bytes += h[k].fres.bytes;
        fres->failed += h[k].fres.failed;
        if (h[k].rc && rc == MS_OK) {
            rc = h[k].rc;
            *err = h[k].err;
        }
    }
    /* Only this thread is left: the helpers' last commits are confirmed
     * with this one's and the folder's row, in one transaction. */
    for (size_t k = 0; k < nstarted; k++) {
        struct fetch_ctx *x = h[k].c;
        if (x && x->journal)
            journal_take_pending(ctx_journal(c), x->journal);
        free_ctx(x);
        maildir_folder_close(h[k].mf);
    }
    struct ms_error cerr;
    int crc = journal_confirm(ctx_journal(c), rc == MS_OK && fres->failed == 0 ? finish : NULL, &cerr);
    if (crc && rc == MS_OK) {
        rc = crc;
        *err = cerr;
    }
    free_ctx(c);
    free(h);
    free(q.start);
    free(uids);
    return rc;
}
