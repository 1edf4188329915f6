/* SPDX-License-Identifier: MIT */
/*
 * maildir.h: the Maildir side. Scanning a folder, delivering messages the
 * Maildir way (tmp/ -> new/ or cur/), renaming for flags, removing.
 *
 * Every path is opened relative to the root's directory fd with openat()
 * and O_NOFOLLOW, so a symlink planted inside the store cannot lead a write
 * outside it. Files are created 0600, directories 0700.
 *
 * File names: "<uniq>" in new/, "<uniq>:2,<letters>" in cur/. The unique
 * part <uniq> is what identifies a message locally (MUAs rename files to
 * change flags and may move them new/ -> cur/).
 */
#ifndef MAILSYNC_MAILDIR_H
#define MAILSYNC_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sync/error.h"

struct maildir_folder;

/* Open the Maildir root directory. If it does not exist: create it (mkdir -p,
 * 0700) when create is true, else fail with MS_ELOCAL ("Maildir root ...
 * does not exist": an unmounted disk must never look like an empty store).
 * On success *rootfd is an O_DIRECTORY fd the caller closes. */
int maildir_root_open(const char *path, bool create, int *rootfd, struct ms_error *err);

/* Open (and with create, make) the Maildir folder at relpath below the root
 * ("" = the root itself). Each component is opened with O_NOFOLLOW; cur/,
 * new/ and tmp/ are created when create is true. A folder that is missing
 * when create is false is MS_ELOCAL. */
int maildir_folder_open(int rootfd, const char *relpath, bool create,
                        struct maildir_folder **out, struct ms_error *err);
void maildir_folder_close(struct maildir_folder *f);

/* Whether the folder exists (cur/ new/ tmp/ present) below the root. */
bool maildir_folder_exists(int rootfd, const char *relpath);

/* A folder's change stamp: the mtimes (ns) of cur/ and new/. Any file
 * added, removed or renamed there sets them to the kernel's clock, so a
 * stamp equal to one taken before a scan means the scan's view still
 * holds, without reading the directories. The kernel's clock is coarse
 * (a few ms): a change in the same tick as the stamp would leave it
 * unchanged, so only a stamp taken more than MAILDIR_STAMP_SETTLE_NS
 * after the last change is `settled` (worth recording). */
#define MAILDIR_STAMP_SETTLE_NS 50000000LL /* 50 ms */
struct maildir_stamp {
    int64_t cur_ns, new_ns;
    bool settled;
};
/* Returns 0, or -1 if the folder or its cur/ or new/ cannot be read. */
int maildir_change_stamp(int rootfd, const char *relpath, struct maildir_stamp *out);

/* The Maildir folders below the root, as relative paths, sorted. What
 * counts as a folder depends on the layout:
 *  MAILDIR_FIND_NESTED (verbatim): every directory (to MAILDIR_FIND_DEPTH
 *    levels, no names starting with '.') that holds cur/, new/ and tmp/;
 *  MAILDIR_FIND_DOTDIRS (maildir++): the root itself ("") and its ".Name"
 *    directories that do;
 *  MAILDIR_FIND_TOPLEVEL (dotted, OfflineIMAP's default): the directories
 *    right below the root that do, not starting with '.' (the root itself
 *    is no folder, subdirectories are not looked at).
 * Never cur/new/tmp themselves, never through a symlink. Unreadable
 * directories are passed over. Free each path and the array. */
#define MAILDIR_FIND_DEPTH 16
enum maildir_find { MAILDIR_FIND_NESTED, MAILDIR_FIND_DOTDIRS, MAILDIR_FIND_TOPLEVEL };
int maildir_find_folders(int rootfd, enum maildir_find mode, char ***out, size_t *n);

/* One message file found by a scan. */
struct local_msg {
    char *uniq;      /* unique part of the name (before ":2,") */
    char *name;      /* the whole file name */
    bool in_new;     /* in new/ (else cur/) */
    unsigned flags;  /* FLAG_* from the info letters */
    char extra[32];  /* unknown info letters, kept */
    uint64_t size;   /* file size in bytes */
    bool odd;        /* maildir_scan_left_out(): not a regular file */
};

/* List the messages in new/ and cur/ (sorted by uniq, one per uniq).
 * Files whose names start with '.' are ignored. A message file is a
 * regular file or a symlink to one (flags from the link's name; read
 * through the link, renamed and removed as the link itself). The scan is
 * repeated if a directory changed while it ran. */
int maildir_scan(struct maildir_folder *f, struct local_msg **out, size_t *n, struct ms_error *err);
/* The same without sizes (size 0) where the directory tells a file's type
 * (no stat per file: a fifth of the time at 20,000 messages). */
int maildir_scan_names(struct maildir_folder *f, struct local_msg **out, size_t *n, struct ms_error *err);
void maildir_msgs_free(struct local_msg *msgs, size_t n);

/* maildir_scan_names() keeping only the files keep() says to keep (the
 * others cost nothing after the call): restart() is called before each
 * attempt (a scan is read again if a directory changed meanwhile), then
 * keep() for every message file, with m's strings valid during the call.
 * Entries left out (maildir_scan_left_out()) are never passed to keep();
 * duplicates are looked for among the kept files only. */
struct maildir_filter {
    void (*restart)(void *ctx);
    bool (*keep)(void *ctx, const struct local_msg *m);
    void *ctx;
};
int maildir_scan_names_filtered(struct maildir_folder *f, const struct maildir_filter *flt, struct local_msg **out,
                                size_t *n, struct ms_error *err);

/* What the last scan of f left out of its list, in no particular order;
 * owned by f, valid until its next scan or maildir_folder_close(). Each is
 * either odd (not a regular file: a dangling symlink, a directory, a
 * FIFO, a socket; it is never opened) or a second file with the unique
 * part of one in the list (a restored backup; the list has the first by
 * name). Neither is a deletion of the message its name gives. */
struct local_msg *maildir_scan_left_out(struct maildir_folder *f, size_t *n);

/* maildir_open_msg() by m's name as scanned only (no lookup by uniq:
 * for files that share one). */
int maildir_open_exact(struct maildir_folder *f, const struct local_msg *m, struct ms_error *err);

/* Whether the files of a and b (by their names as scanned) hold the
 * same bytes: 1 yes, 0 no, -1 with err set if one cannot be read. */
int maildir_same_content(struct maildir_folder *f, struct local_msg *a, struct local_msg *b, struct ms_error *err);

/* Give message m a fresh unique part: rename it within its directory to
 * <new uniq>:2,<its letters> (or <new uniq> if its name had no info),
 * never over an existing name. Updates m->uniq and m->name. */
int maildir_rename_uniq(struct maildir_folder *f, struct local_msg *m, struct ms_error *err);

/* Find one message by unique part (after a rename by a MUA). Fills *out
 * (caller frees out->uniq/out->name with free()); returns MS_OK, or 1 if
 * not found (no error message), or an error code. */
int maildir_find(struct maildir_folder *f, const char *uniq, struct local_msg *out, struct ms_error *err);

/* maildir_find(), trying first the names the message has when nobody
 * renamed it since it got flags (cur/<uniq>:2,<letters>, new/<uniq>): no
 * directory read in the common case. */
int maildir_find_hint(struct maildir_folder *f, const char *uniq, unsigned flags, struct local_msg *out,
                      struct ms_error *err);

/* --- delivery --- */

struct maildir_tmp; /* a message being written to tmp/ */

/* Create a new file in tmp/ with a fresh unique name
 * (time.M<usec>P<pid>R<random>.<host>, O_EXCL, 0600). */
int maildir_tmp_open(struct maildir_folder *f, struct maildir_tmp **out, struct ms_error *err);

/* Append bytes, converting CRLF to LF (a CR at the end of one chunk
 * followed by LF at the start of the next is handled). Buffered. */
int maildir_tmp_write(struct maildir_tmp *t, const char *data, size_t len, struct ms_error *err);

/* Flush and close the file, set its mtime to mtime (if not 0), fsync it
 * first when fsync_now. After this the tmp file is complete on disk but
 * not necessarily durable unless fsync_now or maildir_syncfs() follows. */
int maildir_tmp_close(struct maildir_tmp *t, time_t mtime, bool fsync_now, struct ms_error *err);

/* The unique part chosen for this message (also its name in tmp/). */
const char *maildir_tmp_uniq(const struct maildir_tmp *t);

/* Bytes written to the file so far (after CRLF -> LF). */
uint64_t maildir_tmp_size(const struct maildir_tmp *t);

/* Move the closed tmp file into new/ (flags == 0 and no extra letters) or
 * cur/ as "<uniq>:2,<letters>", never over an existing name
 * (RENAME_NOREPLACE, or link+unlink). Does not fsync the directory; see
 * maildir_sync_dirs(). Frees t on success and on failure. */
int maildir_tmp_commit(struct maildir_folder *f, struct maildir_tmp *t, unsigned flags, const char *extra,
                       struct ms_error *err);

/* Move the closed tmp file over message m's file (by m's name as found),
 * in one rename(2): m keeps its name (unique part and flags), its content
 * is the tmp file's. Does not fsync the directory. Frees t on success and
 * on failure (then the tmp file is removed, m is untouched). */
int maildir_tmp_replace(struct maildir_folder *f, struct maildir_tmp *t, const struct local_msg *m,
                        struct ms_error *err);
/* A new file in to's tmp/ that is message m of folder from (Gmail labels:
 * one message in several folders): a hard link to m's file under a fresh
 * unique name (one copy on disk; *linked set), or, where no hard link can
 * be made (another file system: EXDEV; m's file a symlink), a copy of
 * its bytes as stored, with its mtime. m is looked up by uniq if a MUA
 * renamed it: 1 if it is gone. *out comes closed (as after
 * maildir_tmp_close), for maildir_tmp_commit or maildir_tmp_discard
 * (which removes only the new name). Not durable until a syncfs. */
int maildir_tmp_link(struct maildir_folder *to, struct maildir_folder *from, struct local_msg *m,
                     struct maildir_tmp **out, bool *linked, struct ms_error *err);
/* A test hook: when set and returning non-zero, maildir_tmp_link acts as
 * if link(2) had failed with that errno (e.g. EXDEV). NULL in the program. */
extern int (*maildir_link_hook)(void);

/* Remove the tmp file (if any) and free t. */
void maildir_tmp_discard(struct maildir_tmp *t);

/* Move a file that is already in tmp/ under name uniq (left there by a
 * crashed run after its data was made durable) into place as above. */
int maildir_tmp_commit_name(struct maildir_folder *f, const char *uniq, unsigned flags, const char *extra,
                            struct ms_error *err);

/* Whether tmp/<uniq> exists. */
bool maildir_tmp_exists(struct maildir_folder *f, const char *uniq);

/* Make everything written to this file system durable (syncfs(2)). */
int maildir_syncfs(struct maildir_folder *f, struct ms_error *err);

/* fsync new/ and cur/ (after renames) so the renames are durable. */
int maildir_sync_dirs(struct maildir_folder *f, struct ms_error *err);
/* New descriptors of cur/ and new/ (for an fsync elsewhere); -1 where
 * dup() failed. */
void maildir_dup_dirs(const struct maildir_folder *f, int *cur, int *newdir);
/* A new descriptor of tmp/ (for a syncfs elsewhere), or -1. */
int maildir_dup_tmp(const struct maildir_folder *f);
/* "<root>/<relpath>", for messages. */
const char *maildir_folder_path(const struct maildir_folder *f);

/* Remove files in tmp/ older than max_age seconds (Maildir spec: 36 h). */
int maildir_sweep_tmp(struct maildir_folder *f, time_t max_age, struct ms_error *err);

/* --- changes to delivered messages --- */

/* Give message m new flags: rename to cur/<uniq>:2,<letters+extra>.
 * If the file is gone (MUA renamed it), look it up by uniq first; if it is
 * truly gone returns 1 without error. Updates m->name/in_new/flags. */
int maildir_set_flags(struct maildir_folder *f, struct local_msg *m, unsigned flags, struct ms_error *err);

/* Move message m from folder `from` into folder `to` (both below one
 * root), keeping its unique part: renamed to to's cur/<uniq>:2,<letters>
 * with flags (plus m's unknown letters), never over an existing name, so
 * the file keeps its inode. Looked up by uniq if a MUA renamed it; 1 if
 * it is gone; 2 (nothing done) if the two folders are on different file
 * systems, where no rename can move it. Does not fsync the directories.
 * Updates m->name/in_new/flags. */
int maildir_move_to(struct maildir_folder *from, struct local_msg *m, struct maildir_folder *to, unsigned flags,
                    struct ms_error *err);

/* Unlink message m (looked up by uniq if renamed); 1 if already gone. */
int maildir_remove(struct maildir_folder *f, struct local_msg *m, struct ms_error *err);

/* Open message m for reading: a regular file, or a symlink to one (read
 * through; O_NONBLOCK, so a FIFO never blocks: anything that is not a
 * regular file is refused). Returns an fd or -1 with err set. Looks m up
 * by uniq if it was renamed. */
int maildir_open_msg(struct maildir_folder *f, struct local_msg *m, struct ms_error *err);

/* Rename the folder directory from to to (relative paths below rootfd;
 * to must not exist; its parent directories are made), one rename(2), the
 * inodes kept, both parents fsynced. MS_OK or MS_ELOCAL with err set. */
int maildir_rename_folder(int rootfd, const char *from, const char *to, struct ms_error *err);

#endif
