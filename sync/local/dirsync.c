/* SPDX-License-Identifier: MIT */
/* dirsync.c: fsync directories, and syncfs ahead of a delivery batch's
 * commit, in a helper thread (dirsync.h). */
#include "sync/local/dirsync.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/local/maildir.h"
#include "sync/util.h"

struct job {
    int fd;
    bool whole_fs; /* syncfs(fd), not fsync(fd) */
    char what[200];
};

struct dirsync {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a job was added, or stop */
    pthread_cond_t idle; /* a job finished */
    struct job *q;
    size_t n, cap;
    /* Jobs queued and jobs finished so far (the queue runs in order):
     * dirsync_wait() waits for the count queued when it was called, not
     * for jobs other threads add while it waits. */
    unsigned long long added, finished;
    bool stop;
    bool started; /* the thread runs */
    bool failed;
    char why[300];
    pthread_t thread;
};

static void run_job(struct dirsync *d, struct job *j, bool locked)
{
    int rc = j->whole_fs ? syncfs(j->fd) : fsync(j->fd);
    int e = errno;
    close(j->fd);
    if (rc == 0)
        return;
    if (!locked)
        pthread_mutex_lock(&d->mu);
    if (!d->failed) {
        d->failed = true;
        snprintf(d->why, sizeof d->why, "cannot %s %s: %s", j->whole_fs ? "sync the file system of" : "fsync",
                 j->what, strerror(e));
    }
    if (!locked)
        pthread_mutex_unlock(&d->mu);
}

static void *worker(void *arg)
{
    struct dirsync *d = arg;
    pthread_setname_np(pthread_self(), "ms-dirsync"); /* top -H, gdb, the fault shim */
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (d->n == 0 && !d->stop)
            pthread_cond_wait(&d->work, &d->mu);
        if (d->n == 0 && d->stop)
            break;
        struct job j = d->q[0];
        memmove(d->q, d->q + 1, (d->n - 1) * sizeof *d->q);
        d->n--;
        pthread_mutex_unlock(&d->mu);
        run_job(d, &j, false);
        pthread_mutex_lock(&d->mu);
        d->finished++;
        pthread_cond_broadcast(&d->idle);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

struct dirsync *dirsync_new(void)
{
    struct dirsync *d = xcalloc(1, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->work, NULL);
    pthread_cond_init(&d->idle, NULL);
    return d;
}

static void add_job(struct dirsync *d, int fd, bool whole_fs, const char *what)
{
    struct job j = {.fd = fd, .whole_fs = whole_fs};
    /* a label for messages: cut to fit */
    snprintf(j.what, sizeof j.what, "%.*s", (int)sizeof j.what - 1, what ? what : "a directory");
    pthread_mutex_lock(&d->mu);
    if (whole_fs) {
        /* One syncfs still waiting covers everything written before it
         * runs, this one's data included. */
        for (size_t i = 0; i < d->n; i++)
            if (d->q[i].whole_fs) {
                pthread_mutex_unlock(&d->mu);
                close(fd);
                return;
            }
    }
    if (!d->started && !d->stop)
        d->started = pthread_create(&d->thread, NULL, worker, d) == 0;
    if (!d->started) {
        run_job(d, &j, true); /* no thread: at once */
        pthread_mutex_unlock(&d->mu);
        return;
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->q = xrealloc(d->q, d->cap * sizeof *d->q);
    }
    d->q[d->n++] = j;
    d->added++;
    pthread_cond_signal(&d->work);
    pthread_mutex_unlock(&d->mu);
}

void dirsync_add(struct dirsync *d, int fd, const char *what)
{
    add_job(d, fd, false, what);
}

int dirsync_add_folder(struct dirsync *d, const struct maildir_folder *mf, struct ms_error *err)
{
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
        dirsync_add(d, fds[i], what);
    }
    return MS_OK;
}

void dirsync_syncfs_ahead(struct dirsync *d, int fd, const char *what)
{
    add_job(d, fd, true, what);
}

int dirsync_wait(struct dirsync *d, struct ms_error *err)
{
    if (!d)
        return MS_OK;
    pthread_mutex_lock(&d->mu);
    unsigned long long target = d->added;
    while (d->finished < target)
        pthread_cond_wait(&d->idle, &d->mu);
    int rc = MS_OK;
    if (d->failed) /* and stays failed: see dirsync.h */
        rc = ms_error_set(err, MS_ELOCAL, "%s", d->why);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

void dirsync_free(struct dirsync *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->work);
    bool started = d->started;
    pthread_mutex_unlock(&d->mu);
    if (started)
        pthread_join(d->thread, NULL); /* it drains the queue first */
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->work);
    pthread_cond_destroy(&d->idle);
    free(d->q);
    free(d);
}
