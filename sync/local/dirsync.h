/* SPDX-License-Identifier: MIT */
/* dirsync.h: fsync directories (and syncfs ahead) in the background.
 *
 * Renames and unlinks in a Maildir are durable only once their directory
 * is fsynced, and the records that describe them must not be committed
 * before. The journal commit such an fsync forces costs milliseconds; done
 * by a helper thread it overlaps with what the run does next (waiting for
 * the server's answer about the next folder), and dirsync_wait() is the
 * point where the records' commit waits for it. The same thread runs the
 * syncfs() a delivery batch starts early (dirsync_syncfs_ahead). */
#ifndef MAILSYNC_DIRSYNC_H
#define MAILSYNC_DIRSYNC_H

#include "sync/error.h"

struct dirsync;

/* A new, idle syncer (its thread starts with the first dirsync_add). */
struct dirsync *dirsync_new(void);

/* fsync fd (a directory; taken over and closed) in the background; what
 * names it in an error message. Without a thread it is done at once. */
void dirsync_add(struct dirsync *d, int fd, const char *what);

/* dirsync_add() for a Maildir folder's cur/ and new/ (after files there
 * were renamed or removed). MS_ELOCAL if either cannot be opened. */
struct maildir_folder;
int dirsync_add_folder(struct dirsync *d, const struct maildir_folder *mf, struct ms_error *err);

/* syncfs(fd) (fd is taken over and closed; what names the file system's
 * folder in an error message) in the background, unless a syncfs is
 * already waiting to start: it will cover the same writes. A delivery
 * batch calls it while messages still stream in, so that most of the data
 * is on disk by the time the batch's own syncfs (the one its durability
 * rests on) runs; a failure here fails that batch at dirsync_wait(). */
void dirsync_syncfs_ahead(struct dirsync *d, int fd, const char *what);

/* Wait until every job added so far is done (not for those that other
 * threads add while it waits). MS_OK, or MS_ELOCAL with the
 * first failure, then and at every later call: after a failed sync nothing
 * written before it is known to be durable, so no later commit may rely
 * on it (a syncfs that failed may not report the same error twice). NULL
 * is fine. */
int dirsync_wait(struct dirsync *d, struct ms_error *err);

/* Wait (errors are dropped: dirsync_wait() first for them) and free. */
void dirsync_free(struct dirsync *d);

#endif
