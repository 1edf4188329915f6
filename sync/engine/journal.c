/* SPDX-License-Identifier: MIT */
/*
 * journal.c: the delivery journal and its recovery (see journal.h for the
 * steps and why they are crash-safe). Used by the IMAP download
 * (deliver.c) and the POP3 pull (popfetch.c); the two differ only in the
 * key of their rows (UID or UIDL), which the row functions below hide.
 */
#include "sync/engine/journal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/state.h"
#include "sync/local/dirsync.h"
#include "sync/engine/engine.h"
#include "sync/log.h"
#include "sync/local/maildir.h"
#include "sync/util.h"

void (*journal_step_hook)(enum journal_step step);

static void step(enum journal_step s)
{
    if (journal_step_hook)
        journal_step_hook(s);
}

/* The committer: steps 1-4 of one batch at a time, in a thread of its own. */
struct committer {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct journal_entry *batch; /* owned by the thread while busy */
    size_t n, cap;
    bool busy, quit;
    int rc; /* the first failure: every later batch fails too */
    struct ms_error err;
};

/* A landed row whose pending mark step 5 clears. */
struct pending {
    uint32_t uid;
    char uidl[72];
};

struct journal {
    struct state *st;
    struct maildir_folder *mf;
    int64_t folder_id;
    enum journal_key key;
    struct dirsync *dirs;
    pthread_mutex_t *lock;
    struct engine_folder_result *fres;
    struct pending *pending; /* the last landed batch's rows (and other journals'): in place, durable */
    size_t npending;
    struct committer com;
};

static void db_lock(struct journal *j)
{
    if (j->lock)
        pthread_mutex_lock(j->lock);
}

static void db_unlock(struct journal *j)
{
    if (j->lock)
        pthread_mutex_unlock(j->lock);
}

/* ------------------------------------------------------------------ */
/* rows, by key */

static int row_put(struct journal *j, const struct journal_entry *e, int64_t now, struct ms_error *err)
{
    const char *uniq = e->tmp ? maildir_tmp_uniq(e->tmp) : e->adopted;
    if (j->key == JOURNAL_UIDL) {
        struct state_pop3 row = {
            .uidl = (char *)e->uidl, .uniq = (char *)uniq, .first_seen = now, .pending = e->tmp != NULL};
        return state_pop3_put(j->st, j->folder_id, &row, err);
    }
    struct state_msg m = {.uid = e->uid,
                          .uniq = (char *)uniq,
                          .flags = e->flags,
                          .keywords = e->keywords,
                          .size = e->size,
                          .message_id = e->message_id,
                          .emailid = e->emailid,
                          .hash = NULL,
                          .pending = e->tmp != NULL};
    int rc = state_msg_put(j->st, j->folder_id, &m, err);
    if (rc == MS_OK && e->placeholder) /* in the same transaction as the row */
        rc = state_msg_set_placeholder(j->st, j->folder_id, e->uid, STATE_PLACEHOLDER, err);
    return rc;
}

static int row_confirm(struct state *st, int64_t folder_id, enum journal_key key, const struct pending *p,
                       struct ms_error *err)
{
    if (key == JOURNAL_UIDL)
        return state_pop3_confirm(st, folder_id, p->uidl, err);
    return state_msg_confirm(st, folder_id, p->uid, err);
}

static int row_forget(struct state *st, int64_t folder_id, enum journal_key key, const struct pending *p,
                      struct ms_error *err)
{
    if (key == JOURNAL_UIDL)
        return state_pop3_delete(st, folder_id, p->uidl, err);
    return state_msg_delete(st, folder_id, p->uid, err);
}

/* When the folder's last batch with files in tmp/ was journalled (meta
 * key journal_at:<folder id>): recovery tells by it whether a pending
 * row's file that is nowhere can have been swept from tmp/ by another
 * Maildir program (journal_recover). */
static void journal_time_key(char *key, size_t len, int64_t folder_id)
{
    snprintf(key, len, "journal_at:%lld", (long long)folder_id);
}

static int journal_time_set(struct state *st, int64_t folder_id, int64_t when, struct ms_error *err)
{
    char key[64], val[32];
    journal_time_key(key, sizeof key, folder_id);
    snprintf(val, sizeof val, "%lld", (long long)when);
    return state_meta_set(st, key, val, err);
}

/* 0 when unknown (rows journalled by an older version). */
static int64_t journal_time_get(struct state *st, int64_t folder_id)
{
    char key[64], *v = NULL;
    struct ms_error e;
    journal_time_key(key, sizeof key, folder_id);
    int64_t t = state_meta_get(st, key, &v, &e) == MS_OK && v ? strtoll(v, NULL, 10) : 0;
    free(v);
    return t;
}

/* ------------------------------------------------------------------ */
/* landing a batch */

void journal_entries_clear(struct journal_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].tmp)
            maildir_tmp_discard(v[i].tmp);
        free(v[i].adopted);
        free(v[i].keywords);
        free(v[i].message_id);
        free(v[i].emailid);
        memset(&v[i], 0, sizeof v[i]);
    }
}

static int confirm_pending(struct journal *j, struct ms_error *err)
{
    int rc = MS_OK;
    for (size_t i = 0; i < j->npending && rc == MS_OK; i++)
        rc = row_confirm(j->st, j->folder_id, j->key, &j->pending[i], err);
    j->npending = 0;
    return rc;
}

/* Steps 1-4 for v[0..n); step 5 for the batch before. In the committer's
 * thread. Frees the entries' contents. */
static int land(struct journal *j, struct journal_entry *v, size_t n, struct ms_error *err)
{
    int rc = maildir_syncfs(j->mf, err);
    /* A syncfs started ahead that failed fails the batch too: its error
     * may not be reported twice. */
    struct ms_error ahead;
    if (dirsync_wait(j->dirs, &ahead) != MS_OK && rc == MS_OK) {
        *err = ahead;
        rc = MS_ELOCAL;
    }
    if (rc == MS_OK)
        step(JOURNAL_STEP_SYNCED);
    bool began = false; /* and holds the lock */
    if (rc == MS_OK) {
        db_lock(j);
        rc = state_begin(j->st, err);
        began = true;
    }
    if (rc == MS_OK)
        rc = confirm_pending(j, err);
    int64_t now = (int64_t)time(NULL);
    bool to_place = false;
    for (size_t i = 0; i < n && rc == MS_OK; i++) {
        rc = row_put(j, &v[i], now, err);
        to_place = to_place || v[i].tmp;
    }
    if (rc == MS_OK && to_place)
        rc = journal_time_set(j->st, j->folder_id, now, err);
    if (began) {
        if (rc == MS_OK) {
            step(JOURNAL_STEP_ROWS);
            rc = state_commit(j->st, err);
        } else {
            state_rollback(j->st);
        }
        db_unlock(j);
    }
    if (rc == MS_OK)
        step(JOURNAL_STEP_RECORDED);
    for (size_t i = 0; i < n && rc == MS_OK; i++) {
        struct maildir_tmp *t = v[i].tmp;
        if (!t)
            continue;    /* adopted: already in place, its row confirmed */
        v[i].tmp = NULL; /* the commit frees it either way */
        rc = maildir_tmp_commit(j->mf, t, v[i].flags, "", err);
        if (rc == MS_OK) {
            if (j->fres) {
                j->fres->fetched++;
                j->fres->bytes += v[i].size;
            }
            step(JOURNAL_STEP_RENAMED);
        }
    }
    if (rc == MS_OK)
        rc = maildir_sync_dirs(j->mf, err);
    if (rc == MS_OK) {
        step(JOURNAL_STEP_PLACED);
        j->pending = xrealloc(j->pending, (j->npending + n) * sizeof *j->pending);
        for (size_t i = 0; i < n; i++)
            if (!v[i].adopted) {
                struct pending *p = &j->pending[j->npending++];
                p->uid = v[i].uid;
                memcpy(p->uidl, v[i].uidl, sizeof p->uidl);
            }
    }
    journal_entries_clear(v, n);
    return rc;
}

static void *committer_main(void *arg)
{
    struct journal *j = arg;
    struct committer *k = &j->com;
    pthread_setname_np(pthread_self(), "ms-commit");
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (!k->busy && !k->quit)
            pthread_cond_wait(&k->cv, &k->mu);
        if (!k->busy)
            break;
        /* (A batch is handed over only while k->rc is 0: journal_submit.) */
        pthread_mutex_unlock(&k->mu);
        struct ms_error e = {0};
        int rc = land(j, k->batch, k->n, &e);
        pthread_mutex_lock(&k->mu);
        if (rc) {
            k->rc = rc;
            k->err = e;
        }
        k->n = 0;
        k->busy = false;
        pthread_cond_broadcast(&k->cv);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/* Wait until the committer is idle; its first failure, if any. Called
 * with k->mu held. */
static int committer_idle(struct committer *k, struct ms_error *err)
{
    while (k->busy)
        pthread_cond_wait(&k->cv, &k->mu);
    if (k->rc)
        *err = k->err;
    return k->rc;
}

struct journal *journal_new(struct state *st, struct maildir_folder *mf, int64_t folder_id, enum journal_key key,
                            struct dirsync *dirs, pthread_mutex_t *lock, struct engine_folder_result *fres)
{
    struct journal *j = xcalloc(1, sizeof *j);
    j->st = st;
    j->mf = mf;
    j->folder_id = folder_id;
    j->key = key;
    j->dirs = dirs;
    j->lock = lock;
    j->fres = fres;
    return j;
}

int journal_submit(struct journal *j, struct journal_entry *v, size_t n, struct ms_error *err)
{
    if (n == 0)
        return MS_OK;
    struct committer *k = &j->com;
    if (!k->started) {
        pthread_mutex_init(&k->mu, NULL);
        pthread_cond_init(&k->cv, NULL);
        if (pthread_create(&k->thread, NULL, committer_main, j) != 0) {
            pthread_cond_destroy(&k->cv);
            pthread_mutex_destroy(&k->mu);
            /* no thread: land it here */
            return land(j, v, n, err);
        }
        k->started = true;
    }
    pthread_mutex_lock(&k->mu);
    int rc = committer_idle(k, err);
    if (rc == MS_OK) {
        if (k->cap < n) {
            k->cap = n;
            k->batch = xrealloc(k->batch, k->cap * sizeof *k->batch);
        }
        memcpy(k->batch, v, n * sizeof *v);
        memset(v, 0, n * sizeof *v);
        k->n = n;
        k->busy = true;
        pthread_cond_broadcast(&k->cv);
    }
    pthread_mutex_unlock(&k->mu);
    if (rc)
        journal_entries_clear(v, n);
    return rc;
}

int journal_finish(struct journal *j, struct ms_error *err)
{
    struct committer *k = &j->com;
    if (!k->started)
        return MS_OK;
    pthread_mutex_lock(&k->mu);
    int rc = committer_idle(k, err);
    k->quit = true;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    free(k->batch);
    memset(k, 0, sizeof *k);
    return rc;
}

void journal_take_pending(struct journal *j, struct journal *other)
{
    if (!other || other->npending == 0)
        return;
    j->pending = xrealloc(j->pending, (j->npending + other->npending) * sizeof *j->pending);
    memcpy(j->pending + j->npending, other->pending, other->npending * sizeof *other->pending);
    j->npending += other->npending;
    other->npending = 0;
}

int journal_confirm(struct journal *j, struct state_folder *finish, struct ms_error *err)
{
    if (j->npending == 0 && !finish)
        return MS_OK;
    db_lock(j);
    int rc = state_begin(j->st, err);
    if (rc == MS_OK)
        rc = confirm_pending(j, err);
    if (rc == MS_OK && finish)
        rc = state_folder_save(j->st, finish, err);
    if (rc == MS_OK)
        rc = state_commit(j->st, err);
    else
        state_rollback(j->st);
    db_unlock(j);
    if (rc == MS_OK)
        step(JOURNAL_STEP_CONFIRMED);
    return rc;
}

void journal_free(struct journal **jp)
{
    struct journal *j = *jp;
    if (!j)
        return;
    struct ms_error e;
    journal_finish(j, &e);
    free(j->pending);
    free(j);
    *jp = NULL;
}

/* ------------------------------------------------------------------ */
/* recovery */

/* A pending row of either table, as recovery needs it. */
struct recovered {
    struct pending key;
    const char *uniq; /* borrowed from the row list; NULL: none recorded */
    unsigned flags;
    bool placed; /* its file is in place now */
};

/* The pending rows of the folder, from the row list of its key (owned by
 * the caller through *uid_rows or *uidl_rows). */
static int pending_rows(struct state *st, int64_t folder_id, enum journal_key key, struct state_msg **uid_rows,
                        struct state_pop3 **uidl_rows, size_t *nrows, struct recovered **out, size_t *n,
                        struct ms_error *err)
{
    *n = 0;
    *out = NULL;
    int rc = key == JOURNAL_UIDL ? state_pop3_list(st, folder_id, uidl_rows, nrows, err)
                                 : state_msg_list(st, folder_id, uid_rows, nrows, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < *nrows; i++) {
        bool pending = key == JOURNAL_UIDL ? (*uidl_rows)[i].pending : (*uid_rows)[i].pending;
        if (!pending)
            continue;
        if (!*out)
            *out = xcalloc(*nrows, sizeof **out);
        struct recovered *p = &(*out)[(*n)++];
        if (key == JOURNAL_UIDL) {
            snprintf(p->key.uidl, sizeof p->key.uidl, "%s", (*uidl_rows)[i].uidl);
            p->uniq = (*uidl_rows)[i].uniq;
        } else {
            p->key.uid = (*uid_rows)[i].uid;
            p->uniq = (*uid_rows)[i].uniq;
            p->flags = (*uid_rows)[i].flags;
        }
    }
    return MS_OK;
}

int journal_recover(struct state *st, struct maildir_folder *mf, int64_t folder_id, enum journal_key key,
                    struct ms_error *err)
{
    struct state_msg *uid_rows = NULL;
    struct state_pop3 *uidl_rows = NULL;
    size_t nrows = 0, n = 0;
    struct recovered *p = NULL;
    int rc = pending_rows(st, folder_id, key, &uid_rows, &uidl_rows, &nrows, &p, &n, err);
    if (rc || n == 0)
        goto out;
    log_msg(LOG_VERBOSE, "finishing %zu deliveries of an interrupted run", n);
    /* Steps 3-4 where a kill cut them short. */
    for (size_t i = 0; i < n && rc == MS_OK; i++) {
        if (!p[i].uniq)
            continue;
        struct local_msg found;
        int f = maildir_find(mf, p[i].uniq, &found, err);
        if (f == MS_OK) {
            free(found.uniq);
            free(found.name);
            p[i].placed = true;
        } else if (f == 1 && maildir_tmp_exists(mf, p[i].uniq)) {
            rc = maildir_tmp_commit_name(mf, p[i].uniq, p[i].flags, "", err);
            p[i].placed = rc == MS_OK;
        } else if (f != 1) {
            rc = f;
        }
    }
    if (rc == MS_OK)
        rc = maildir_sync_dirs(mf, err);
    /* Step 5. A row whose file is neither in place nor in tmp/: its file
     * was durable in tmp/ when the row was committed, and leaves tmp/ only
     * by the rename into place (our sweep runs after this recovery), or by
     * another Maildir program's sweep of tmp/ files older than 36 hours.
     * So while the batch is younger than that, the file was put in place
     * and the user deleted (or moved) it before this run: the row is
     * confirmed, a local deletion the push sends to the server (forgetting
     * it would fetch the message again: the deletion undone). An older
     * batch's file may have been swept unseen: forgotten, fetched again. */
    int64_t at = journal_time_get(st, folder_id), now = (int64_t)time(NULL);
    bool young = at > 0 && now >= at && now - at < JOURNAL_TMP_TRUSTED;
    if (rc == MS_OK)
        rc = state_begin(st, err);
    else
        goto out;
    size_t gone = 0;
    for (size_t i = 0; i < n && rc == MS_OK; i++) {
        bool keep = p[i].placed || (young && p[i].uniq);
        gone += !p[i].placed && keep;
        rc = keep ? row_confirm(st, folder_id, key, &p[i].key, err) : row_forget(st, folder_id, key, &p[i].key, err);
    }
    if (rc == MS_OK && gone)
        log_msg(LOG_VERBOSE, "%zu messages delivered by an interrupted run were deleted locally since: they stay "
                             "deleted", gone);
    if (rc == MS_OK)
        rc = state_commit(st, err);
    else
        state_rollback(st);
out:
    free(p);
    if (key == JOURNAL_UIDL)
        state_pop3_free(uidl_rows, nrows);
    else
        state_msgs_free(uid_rows, nrows);
    return rc;
}
