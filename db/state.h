/* SPDX-License-Identifier: MIT */
/*
 * state.h: the state DB, the record of what both sides looked like after
 * the last sync. The only module that speaks SQL.
 *
 * One SQLite file per account, WAL journal, synchronous=FULL, created 0600
 * in a 0700 directory. A file that is not a usable mailsync DB is an error
 * (MS_ELOCAL) and is never silently replaced.
 *
 * Every function returns MS_OK or MS_ELOCAL (with err filled).
 */
#ifndef MAILSYNC_STATE_H
#define MAILSYNC_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync/error.h"

struct state;
struct state_folder;

/* The SQLite library this program runs with (for --version). */
const char *state_sqlite_version(void);

/* Open or create the DB at path (parent directories created 0700).
 * ":memory:" opens a private, empty DB that vanishes on close (for a
 * --dry-run of an account that never synced: it must not create files). */
int state_open(const char *path, struct state **out, struct ms_error *err);
/* The same for a DB that exists, by a run that may not write yet (before
 * its login): *out is NULL (MS_OK) where the open would have to write,
 * a schema to create or an older mailsync's to upgrade; state_open() it
 * once writing is allowed. */
int state_open_unchanged(const char *path, struct state **out, struct ms_error *err);
/* A clean close also writes <path>.checked, which lets the next open skip
 * the integrity check while the files are exactly as this close left them
 * (for at most a day). */
void state_close(struct state *s);
/* Make the close leave the integrity stamp and the DB's mtime as they
 * are: for a run that must change nothing on disk (it failed before its
 * login). Costs the next open its check only if this one ran it. */
void state_leave_stamp(struct state *s);
/* Move the (closed) DB at path aside to <path>.stale-<UTC time> (its
 * -wal with it; the side files of the old DB, -shm, .checked and
 * .lastrun, are removed), durably, so that the next state_open() starts
 * an empty DB. Nothing is deleted. *moved: the new name (caller frees). */
int state_move_aside(const char *path, char **moved, struct ms_error *err);
/* Whether this open ran PRAGMA quick_check (false: a fresh DB, or the
 * stamp vouched for the file). */
bool state_integrity_checked(const struct state *s);
/* Whether anything was written to the DB since it was opened. */
bool state_changed(const struct state *s);

/* A quiet run: one that changed nothing. Writing its time into the DB
 * would cost a new WAL, its fsyncs and a checkpoint, most of a no-op run's
 * local time; so it goes to <path>.lastrun instead, a small side file that
 * is not synced and only feeds `status` (the engine never reads it: lost,
 * status shows an older time). Each folder is noted with the
 * UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ it was found unchanged at. */
struct state_quiet_folder {
    int64_t folder_id;
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
};
int state_note_quiet_run(struct state *s, int64_t when, const struct state_quiet_folder *f, size_t n,
                         struct ms_error *err);
/* The last successful sync: meta last_sync or the last quiet run, the later. */
int64_t state_last_sync(struct state *s);
/* The folder's last sync: its row's, or the last quiet run's when it
 * noted the folder with the values the row still has. */
int64_t state_folder_last_sync(struct state *s, const struct state_folder *f);

/* Transactions (BEGIN IMMEDIATE / COMMIT / ROLLBACK). Every write below may
 * run inside one; outside one each write is its own transaction. */
int state_begin(struct state *s, struct ms_error *err);
int state_commit(struct state *s, struct ms_error *err);
void state_rollback(struct state *s);

/* A batch: a transaction left open across several pieces of work, so that
 * their records cost one commit (one fsync). state_batch() opens it or
 * joins the open one; state_begin() commits an open batch first, so the
 * batch's records always land before any later transaction's; a batch
 * left open at state_close() is rolled back. For records whose loss in a
 * crash is harmless (the next run finds the same changes again). */
int state_batch(struct state *s, struct ms_error *err);
int state_batch_commit(struct state *s, struct ms_error *err);
void state_batch_abort(struct state *s);
/* Called before a batch is committed (by state_batch_commit or
 * state_begin): e.g. to make durable the files its records describe. A
 * failure rolls the batch back and is returned. NULL removes it. */
void state_before_batch_commit(struct state *s, int (*fn)(void *ctx, struct ms_error *err), void *ctx);
/* Called once per open, before the first write that records a change
 * (of messages, the set of folders, the uploads journal or POP3 messages;
 * not meta data, nor an update of a folder's UIDVALIDITY, UIDNEXT,
 * HIGHESTMODSEQ or last_sync) reaches the DB: e.g. to note durably
 * elsewhere that the DB is about to move on. Its own writes (meta data)
 * are committed before that change, also when it comes inside an open
 * transaction. A failure fails that write (the change is not made) and
 * the next change calls it again. NULL removes it. */
void state_before_first_change(struct state *s, int (*fn)(void *ctx, struct ms_error *err), void *ctx);

/* --- folders --- */

struct state_folder {
    int64_t id;             /* 0 = not in the DB yet */
    char *name;             /* raw server name (modified UTF-7) */
    char *path;             /* relative local path it maps to */
    uint32_t uidvalidity;   /* 0 = never selected */
    uint32_t uidnext;
    uint64_t highestmodseq; /* 0 = unknown / no CONDSTORE */
    int64_t last_sync;      /* unix time of the last complete sync, 0 = never */
    int64_t message_count;  /* rows in the message table (filled by list; -1 from get,
                               which stays cheap however big the folder is) */
    int64_t pending_count;  /* deliveries not yet confirmed (list/get) */
    int64_t appends_count;  /* uploads journalled, UID not recorded (list/get) */
};

/* Look a folder up by raw server name. If absent, out->id is 0 and the other
 * fields are zero (name/path NULL). Returns MS_OK either way. */
int state_folder_get(struct state *s, const char *name, struct state_folder *out, struct ms_error *err);

/* Insert (id == 0; sets f->id) or update the folder row. */
int state_folder_save(struct state *s, struct state_folder *f, struct ms_error *err);

/* Whether any folder ever completed a sync (*out). */
int state_any_synced(struct state *s, bool *out, struct ms_error *err);

/* All folders, ordered by name. */
int state_folder_list(struct state *s, struct state_folder **out, size_t *n, struct ms_error *err);
/* The same without message counts (message_count -1): no folder's rows are
 * read, so it costs the same for 10 messages or 100,000. */
int state_folder_list_brief(struct state *s, struct state_folder **out, size_t *n, struct ms_error *err);

/* Set only the folder's last_sync (a run found it unchanged). */
int state_folder_touch(struct state *s, int64_t folder_id, int64_t last_sync, struct ms_error *err);

/* Remove a folder and all its messages from the DB. */
int state_folder_delete(struct state *s, int64_t folder_id, struct ms_error *err);

void state_folder_free(struct state_folder *f);            /* frees members */
void state_folders_free(struct state_folder *f, size_t n); /* frees array too */

/* --- messages --- */

struct state_msg {
    uint32_t uid;
    char *uniq;       /* unique part of the local file name */
    unsigned flags;   /* FLAG_* as last synced */
    char *keywords;   /* other keywords, space separated, or NULL */
    uint64_t size;    /* RFC822.SIZE on the server */
    char *message_id; /* Message-ID header value (with <>), or NULL */
    char *hash;       /* hex SHA-256 of the local file content, or NULL */
    bool pending;     /* delivery journalled but not yet confirmed durable */
    char *emailid;    /* the server's id of the message's content (IMAP EMAILID, RFC 8474,
                         or "gm:" and Gmail's X-GM-MSGID), or NULL if not known */
};

/* All messages of a folder, ordered by uid. */
int state_msg_list(struct state *s, int64_t folder_id, struct state_msg **out, size_t *n, struct ms_error *err);
/* The messages of a folder with first <= uid <= last, ordered by uid
 * (a window of a big folder: the cost follows the window). */
int state_msg_list_range(struct state *s, int64_t folder_id, uint32_t first, uint32_t last, struct state_msg **out,
                         size_t *n, struct ms_error *err);
/* The UIDs alone of a folder's messages, ascending (4 bytes a message);
 * *out: free(). */
int state_msg_uids(struct state *s, int64_t folder_id, uint32_t **out, size_t *n, struct ms_error *err);
/* The same without message_id, hash and emailid (NULL): what a push compares. */
int state_msg_list_brief(struct state *s, int64_t folder_id, struct state_msg **out, size_t *n,
                         struct ms_error *err);
/* state_msg_list_brief() keeping only the rows keep() says to keep: it
 * sees every row (its strings valid during the call only), so a caller
 * can take what it needs of all of them without holding them all. */
int state_msg_list_brief_if(struct state *s, int64_t folder_id, bool (*keep)(void *ctx, const struct state_msg *row),
                            void *ctx, struct state_msg **out, size_t *n, struct ms_error *err);
/* The same within first <= uid <= last (a window of a big folder). */
int state_msg_range_brief_if(struct state *s, int64_t folder_id, uint32_t first, uint32_t last,
                             bool (*keep)(void *ctx, const struct state_msg *row), void *ctx, struct state_msg **out,
                             size_t *n, struct ms_error *err);
/* The rows of these UIDs (sorted ascending; absent ones are left out),
 * in UID order: one indexed lookup each, so the cost follows the number
 * of UIDs, not the folder's size. */
int state_msg_get_uids(struct state *s, int64_t folder_id, const uint32_t *uids, size_t nuids,
                       struct state_msg **out, size_t *n, struct ms_error *err);
/* The same, as brief as state_msg_list_brief()'s rows. */
int state_msg_get_uids_brief(struct state *s, int64_t folder_id, const uint32_t *uids, size_t nuids,
                             struct state_msg **out, size_t *n, struct ms_error *err);

/* Gmail labels: where else a message is. One confirmed row of another
 * folder with the same server id (messages.emailid) and a local file. */
struct state_copy {
    int64_t folder_id;
    char *path;     /* the folder's local path below the Maildir root */
    char *uniq;     /* the unique part of its file name */
    unsigned flags; /* FLAG_* as last synced there */
    uint64_t size;  /* RFC822.SIZE recorded there */
};

/* The rows of other folders than not_folder whose emailid is emailid
 * (confirmed, with a file and a folder path), at most max, in folder
 * order, into out[0..*n): one indexed lookup. Free the contents with
 * state_copies_free (out itself is the caller's). */
int state_msg_copies(struct state *s, const char *emailid, int64_t not_folder, struct state_copy *out, size_t max,
                     size_t *n, struct ms_error *err);
void state_copies_free(struct state_copy *c, size_t n);
/* Whether any folder but not_folder has a row with a server id (so
 * state_msg_copies may find something): one look at the index. */
int state_msg_ids_elsewhere(struct state *s, int64_t not_folder, bool *yes, struct ms_error *err);

/* Insert or replace the row (folder_id, m->uid). */
int state_msg_put(struct state *s, int64_t folder_id, const struct state_msg *m, struct ms_error *err);

/* Update flags and keywords of (folder_id, uid). */
int state_msg_set_flags(struct state *s, int64_t folder_id, uint32_t uid, unsigned flags, const char *keywords,
                        struct ms_error *err);

/* Clear the pending mark of (folder_id, uid). */
int state_msg_confirm(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err);

/* Delete the row (folder_id, uid). */
int state_msg_delete(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err);

/* Delete every message row of a folder (used when UIDVALIDITY changes,
 * inside the transaction that re-inserts the re-matched rows). */
int state_msg_delete_all(struct state *s, int64_t folder_id, struct ms_error *err);

/* How many message rows the folder has (*out): what the state knew of it,
 * the mass-deletion guard's denominator. One lookup whatever the folder's
 * size: the DB keeps each folder's count (table folder_rows, by triggers
 * in the transaction of every insert and delete). */
int state_msg_count(struct state *s, int64_t folder_id, size_t *out, struct ms_error *err);

/* A number that changes whenever this handle writes folder_id's message
 * rows (recorded, updated, deleted, the folder deleted): equal numbers
 * mean the rows are as they were (a listing of them may be reused). */
uint64_t state_rows_gen(const struct state *s, int64_t folder_id);

/* --- placeholders ---
 * A message over max_size (with placeholders = yes) is delivered as a
 * placeholder: its header and a note. Its row is a message's row like any
 * other (flags synced both ways, never fetched again, never uploaded),
 * with a mark: STATE_PLACEHOLDER while the file is the placeholder,
 * STATE_PLACEHOLDER_REPLACING from just before the full message is renamed
 * over it until that rename is durable (then the mark is cleared, 0): a
 * run killed in between finds the mark and looks at the file to learn
 * which of the two it is. */
enum { STATE_PLACEHOLDER = 1, STATE_PLACEHOLDER_REPLACING = 2 };

struct state_placeholder {
    uint32_t uid;
    char *uniq;     /* the local file's unique part */
    unsigned flags; /* FLAG_* as last synced */
    uint64_t size;  /* the full message's RFC822.SIZE */
    int mark;       /* STATE_PLACEHOLDER or STATE_PLACEHOLDER_REPLACING */
};

/* Set the mark of (folder_id, uid): 0 (a whole message), STATE_PLACEHOLDER
 * or STATE_PLACEHOLDER_REPLACING. */
int state_msg_set_placeholder(struct state *s, int64_t folder_id, uint32_t uid, int mark, struct ms_error *err);
/* The row (folder_id, uid) names its file by uniq now (a file renamed
 * within its folder, the same message). */
int state_msg_set_uniq(struct state *s, int64_t folder_id, uint32_t uid, const char *uniq, struct ms_error *err);
/* The folder's marked rows, by uid (a partial index: a folder without
 * any costs one probe). *out: free with state_placeholders_free. */
int state_placeholder_list(struct state *s, int64_t folder_id, struct state_placeholder **out, size_t *n,
                           struct ms_error *err);
void state_placeholders_free(struct state_placeholder *v, size_t n);

void state_msg_free(struct state_msg *m);            /* frees members */
void state_msgs_free(struct state_msg *m, size_t n); /* frees array too */

/* --- the uploads journal ---
 * A push journals each upload (committed) before it sends the APPEND and
 * forgets it in the transaction that records the new UID. A row left over
 * means a run died in between: the next run looks for the message among
 * the server's UIDs from uidnext on (by size and Message-ID) before it
 * uploads the file again, so a crash never doubles a message. */
struct state_append {
    char *uniq;           /* the local file's unique part */
    uint32_t uidvalidity; /* of the folder when the upload was journalled */
    uint32_t uidnext;     /* its UIDNEXT then: the new UID is at least this */
    uint64_t size;        /* the upload's size (CRLF) */
    char *message_id;     /* or NULL */
};
int state_append_put(struct state *s, int64_t folder_id, const struct state_append *a, struct ms_error *err);
/* A folder's journal rows, by uniq. */
int state_append_list(struct state *s, int64_t folder_id, struct state_append **out, size_t *n,
                      struct ms_error *err);
int state_append_forget(struct state *s, int64_t folder_id, const char *uniq, struct ms_error *err);
void state_appends_free(struct state_append *a, size_t n);

/* --- the flag-store journal ---
 * A push journals each flag change (committed) before its UID STORE and
 * forgets it in the transaction that records the row's new flags (the
 * run's batch). A row left over means a run died in between: the STORE may
 * have reached the server, and the server's flags then look like a change
 * made there. The next push stores it again (a repeated +FLAGS/-FLAGS is
 * harmless) and records it before it compares the files with the rows, so
 * a change the user made since (the flag taken away again) is pushed too,
 * not undone by the pull. */
struct state_store {
    uint32_t uid;
    uint32_t uidvalidity; /* of the folder when it was journalled */
    unsigned flags;       /* FLAG_*: the row's flags once stored */
    unsigned added, removed;
};
int state_store_put(struct state *s, int64_t folder_id, const struct state_store *x, struct ms_error *err);
/* A folder's journal rows, by uid (*out is freed with free()). */
int state_store_list(struct state *s, int64_t folder_id, struct state_store **out, size_t *n, struct ms_error *err);
int state_store_forget(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err);

/* --- the trash journal ---
 * A move to the trash folder on a server without MOVE takes three commands
 * (UID COPY to the trash, UID STORE +FLAGS \Deleted, UID EXPUNGE): a run
 * that dies in between must not copy again. So each message is journalled
 * (committed) before the COPY, with what finds its copy later: the trash
 * folder's UIDVALIDITY and UIDNEXT then (the copy's UID is at least that),
 * the copy's UID once the server's COPYUID gave it, size and Message-ID.
 * The row is forgotten with the message's own row once it is expunged. A
 * row left over means a run died in between: the next run looks for the
 * copy in the trash and, if it is there, only flags and expunges. */
struct state_trash {
    uint32_t uid;               /* the message's UID in the folder */
    char *trash;                /* raw name of the trash folder */
    uint32_t trash_uidvalidity; /* of the trash folder when journalled */
    uint32_t trash_uidnext;     /* its UIDNEXT then */
    uint32_t copy_uid;          /* the copy's UID (COPYUID), 0 = unknown */
    uint64_t size;              /* RFC822.SIZE */
    char *message_id;           /* or NULL */
};
/* Insert or replace the row (folder_id, t->uid). */
int state_trash_put(struct state *s, int64_t folder_id, const struct state_trash *t, struct ms_error *err);
/* A folder's journal rows, by uid. */
int state_trash_list(struct state *s, int64_t folder_id, struct state_trash **out, size_t *n, struct ms_error *err);
/* Record the copy's UID of (folder_id, uid). */
int state_trash_set_copy(struct state *s, int64_t folder_id, uint32_t uid, uint32_t copy_uid, struct ms_error *err);
int state_trash_forget(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err);
void state_trashes_free(struct state_trash *t, size_t n);
/* The journal row (folder_id, uid) is a local move to another folder
 * (moves_local.c), not a deletion: marked after state_trash_put, in its
 * transaction; the mark goes with the row (forgotten or replaced). */
int state_trash_mark_move(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err);
int state_trash_is_move(struct state *s, int64_t folder_id, uint32_t uid, bool *yes, struct ms_error *err);

/* --- POP3: messages by UIDL ---
 * A row is written pending (the file durable in tmp/) before the file is
 * moved into new/, and confirmed after that move is durable, as IMAP
 * deliveries are. */
struct state_pop3 {
    char *uidl;
    char *uniq;         /* the local file's unique part */
    int64_t first_seen; /* unix time of its download */
    bool pending;
};
int state_pop3_put(struct state *s, int64_t folder_id, const struct state_pop3 *m, struct ms_error *err);
/* By UIDL (strcmp order). */
int state_pop3_list(struct state *s, int64_t folder_id, struct state_pop3 **out, size_t *n, struct ms_error *err);
int state_pop3_confirm(struct state *s, int64_t folder_id, const char *uidl, struct ms_error *err);
int state_pop3_delete(struct state *s, int64_t folder_id, const char *uidl, struct ms_error *err);
void state_pop3_free(struct state_pop3 *m, size_t n);

/* --- tombstones ---
 * Messages that live only locally because a policy took them off the
 * server: recorded (by the local file's unique part, per folder) when
 * their message row is forgotten, so that no push uploads them again,
 * whatever the config says later. A row whose file the user deleted is
 * forgotten (nothing left to protect). */
enum state_tomb_reason {
    STATE_TOMB_RETIRED,        /* server_retention_days removed it from the server */
    STATE_TOMB_KEPT_BY_BACKUP, /* the server deleted it while mode = backup */
};
struct state_tombstone {
    int64_t folder_id; /* filled by list/find; put takes the folder as an argument */
    char *uniq;        /* the local file's unique part */
    char *message_id;  /* Message-ID header value (with <>), or NULL */
    uint64_t size;     /* RFC822.SIZE (CRLF) */
    enum state_tomb_reason reason;
    int64_t since;     /* unix time it was recorded */
};
/* Insert or replace the row (folder_id, t->uniq). */
int state_tombstone_put(struct state *s, int64_t folder_id, const struct state_tombstone *t, struct ms_error *err);
/* A folder's rows, by uniq: all of them, or (kept_only) those of
 * STATE_TOMB_KEPT_BY_BACKUP alone (an index lookup: a folder without
 * any costs nothing however many retired ones it has). */
int state_tombstone_list(struct state *s, int64_t folder_id, bool kept_only, struct state_tombstone **out,
                         size_t *n, struct ms_error *err);
/* Any folder's row for this unique part or, when message_id is not NULL
 * and none is, for this Message-ID and size. *found false: none;
 * otherwise *out is filled (free it with state_tombstone_free). */
int state_tombstone_find(struct state *s, const char *uniq, const char *message_id, uint64_t size,
                         struct state_tombstone *out, bool *found, struct ms_error *err);
int state_tombstone_forget(struct state *s, int64_t folder_id, const char *uniq, struct ms_error *err);
/* How many rows of each reason the folder has. */
int state_tombstone_counts(struct state *s, int64_t folder_id, int64_t *retired, int64_t *kept,
                           struct ms_error *err);
/* Carry the tombstones of another (closed) state DB file into this one,
 * by folder name (a folder row is created, bare, where this DB has none),
 * in one transaction: for a DB set aside as stale, whose successor
 * would otherwise upload what they protect. A file without the table
 * (an older mailsync's) carries nothing; one that cannot be read carries
 * nothing either, with a warning (not an error: the failure is not this
 * DB's). *n: how many. */
int state_tombstones_take(struct state *s, const char *from_path, size_t *n, struct ms_error *err);
/* A tombstone with its folder's raw name and path (a whole DB's, for a
 * copy kept elsewhere or carried into another DB). */
struct state_tombstone_entry {
    char *folder;
    char *path;
    struct state_tombstone t;
};
/* Every folder's tombstones, by folder name and uniq. */
int state_tombstone_list_all(struct state *s, struct state_tombstone_entry **out, size_t *n, struct ms_error *err);
/* Put these into this DB by folder name (a folder row created, bare,
 * where there is none), in one transaction. *n: how many. */
int state_tombstone_import(struct state *s, const struct state_tombstone_entry *v, size_t nv, size_t *n,
                           struct ms_error *err);
void state_tombstone_entries_free(struct state_tombstone_entry *v, size_t n);
void state_tombstone_free(struct state_tombstone *t);            /* frees members */
void state_tombstones_free(struct state_tombstone *t, size_t n); /* frees array too */

/* --- account-wide key/value (last_sync, last_error, ...) --- */

/* Set key to value (NULL deletes). */
int state_meta_set(struct state *s, const char *key, const char *value, struct ms_error *err);

/* Get a malloc'd copy of key's value into *value, or NULL if unset. */
int state_meta_get(struct state *s, const char *key, char **value, struct ms_error *err);

/* --- the server-move journal ---
 * A message another client moved on the server from one folder to
 * another, whose local file is renamed along (sync/engine/moves_server.c):
 * journalled with the destination's row (pending) before the rename, and
 * forgotten in the transaction that confirms that row and deletes the
 * source's row. A row left over means a run died in between: the file is
 * looked for in the destination (found: finish; else the destination's row
 * goes and the source's stays, as if nothing happened). */
struct state_server_move {
    int64_t folder_id;      /* the destination folder */
    uint32_t uid;           /* the message's UID there */
    int64_t from_folder_id; /* the source folder */
    uint32_t from_uid;      /* its UID there (gone from the server) */
};

int state_server_move_put(struct state *s, const struct state_server_move *m, struct ms_error *err);
/* All of the journal (every folder's), *out: free(). */
int state_server_move_list(struct state *s, struct state_server_move **out, size_t *n, struct ms_error *err);
int state_server_move_forget(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err);

#endif
