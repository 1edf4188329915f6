/* dirsync.h: fsync directories in the background.
 *
 * Renames and unlinks in a Maildir are durable only once their directory
 * is fsynced, and the records that describe them must not be committed
 * before. The journal commit such an fsync forces costs milliseconds; done
 * by a helper thread it overlaps with what the run does next (waiting for
 * the server's answer about the next folder), and dirsync_wait() is the
 * point where the records' commit waits for it. */
#ifndef MAILSYNC_DIRSYNC_H
#define MAILSYNC_DIRSYNC_H

#include "sync/error.h"

struct dirsync;

/* A new, idle syncer (its thread starts with the first dirsync_add). */
struct dirsync *dirsync_new(void);

/* fsync fd (a directory; taken over and closed) in the background; what
 * names it in an error message. Without a thread it is done at once. */
void dirsync_add(struct dirsync *d, int fd, const char *what);

/* Wait until every fd added so far is fsynced. MS_OK, or MS_ELOCAL with
 * the first failure (then cleared). NULL is fine. */
int dirsync_wait(struct dirsync *d, struct ms_error *err);

/* Wait (errors are dropped: dirsync_wait() first for them) and free. */
void dirsync_free(struct dirsync *d);

#endif
