/* SPDX-License-Identifier: MIT */
/*
 * localwatch.h: hearing of changes in Maildir folders while `watch` waits
 * (inotify on Linux; elsewhere nothing is heard and the watch pushes at
 * its full passes, as before).
 *
 * What counts as a change: a file created, removed or renamed in a
 * watched folder's cur/ or new/ (a new message, a flag change, a
 * deletion, a move between folders; tmp/ is not watched: a delivery
 * shows when it is renamed out of it), and a directory created, removed
 * or renamed in the root or in a watched folder (a new folder). Reading
 * files and directories (a scan) is no change, so a pass that changes
 * nothing hears nothing of itself.
 */
#ifndef MAILSYNC_LOCALWATCH_H
#define MAILSYNC_LOCALWATCH_H

#include <stdbool.h>
#include <stddef.h>

struct local_watch;

/* Start watching the Maildir root at root_path (for new folders). NULL
 * when the system cannot watch (not Linux, no inotify, the root missing):
 * every function below accepts NULL and then does nothing. */
struct local_watch *local_watch_open(const char *root_path);

/* Watch the folder at relpath below the root ("" = the root itself): its
 * cur/ and new/, and the folder's directory for subfolders. Watching a
 * folder twice is harmless. A folder that cannot be watched (gone, the
 * kernel's limit of watches reached) is left out: its changes wait for
 * the next full pass. True if the folder was not watched before (what
 * changed in it until now was not heard). */
bool local_watch_folder(struct local_watch *w, const char *relpath);

/* The fd that becomes readable when something happened (-1 for NULL):
 * for poll(); local_watch_drain() reads it. */
int local_watch_fd(const struct local_watch *w);

/* Is the change at relpath (the folder, or for a directory event the
 * directory that holds the new or removed directory) one the caller made
 * itself? */
typedef bool (*local_watch_ours_fn)(void *ctx, const char *relpath, bool dir_event);

/* Read every change heard so far without waiting; returns how many were
 * not the caller's (ours may be NULL: none is). A lost queue (the kernel
 * dropped events) counts as one change. */
size_t local_watch_drain(struct local_watch *w, local_watch_ours_fn ours, void *ctx);

/* Stop watching and free; *w becomes NULL. */
void local_watch_free(struct local_watch **w);

#endif
