/* SPDX-License-Identifier: MIT */
/*
 * state.c: the state DB (see state.h): schema, checks on open, and every
 * SQL statement of mailsync.
 *
 * Rules this file keeps:
 * - A file that exists is never deleted, truncated or re-created. Before
 *   SQLite touches an existing file we check it looks like SQLite, then that
 *   it passes quick_check (unless a clean close vouched for it: see
 *   "integrity stamp") and carries our `meta` table with a schema version
 *   we understand; anything else is MS_ELOCAL and the file is left as is.
 * - WAL journal, synchronous=FULL: a committed transaction survives a crash.
 * - Statements are prepared once and cached: a pull records thousands of
 *   rows per second inside one transaction.
 * - UIDs (uint32) and modseqs (uint64) are stored as SQLite int64; a modseq
 *   above INT64_MAX round-trips through the two's-complement cast.
 */
#include "db/state.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sync/log.h"
#include "sync/util.h"

/* 2: the trash journal (table trashing, see "the trash journal" below) */
#define SCHEMA_VERSION 2

enum stmt_id {
    ST_FOLDER_GET,
    ST_ANY_SYNCED,
    ST_FOLDER_INSERT,
    ST_FOLDER_UPDATE,
    ST_FOLDER_LIST,
    ST_FOLDER_DELETE,
    ST_FOLDER_LIST_BRIEF,
    ST_FOLDER_TOUCH,
    ST_MSG_LIST,
    ST_MSG_GET,
    ST_MSG_GET_BRIEF,
    ST_MSG_RANGE,
    ST_MSG_UIDS,
    ST_MSG_PUT,
    ST_MSG_SET_FLAGS,
    ST_MSG_CONFIRM,
    ST_MSG_DELETE,
    ST_MSG_DELETE_ALL,
    ST_MSG_COUNT,
    ST_META_SET,
    ST_META_DEL,
    ST_META_GET,
    ST_MSG_LIST_BRIEF,
    ST_MSG_RANGE_BRIEF,
    ST_POP3_PUT,
    ST_POP3_LIST,
    ST_POP3_CONFIRM,
    ST_POP3_DELETE,
    ST_APPEND_PUT,
    ST_APPEND_LIST,
    ST_APPEND_DELETE,
    /* the trash journal */
    ST_TRASH_PUT,
    ST_TRASH_LIST,
    ST_TRASH_SET_COPY,
    ST_TRASH_DELETE,
    /* tombstones */
    ST_TOMB_PUT,
    ST_TOMB_LIST,
    ST_TOMB_LIST_KEPT,
    ST_TOMB_BY_UNIQ,
    ST_TOMB_BY_ID,
    ST_TOMB_DELETE,
    ST_TOMB_COUNT,
    /* the server-move journal */
    ST_SMOVE_PUT,
    ST_SMOVE_LIST,
    ST_SMOVE_DELETE,
    /* the flag-store journal */
    ST_STORE_PUT,
    ST_STORE_LIST,
    ST_STORE_DELETE,
    /* placeholders (max_size) */
    ST_MSG_SET_PLACEHOLDER,
    ST_MSG_LIST_PLACEHOLDERS,
    ST_MSG_SET_UNIQ,
    ST_TRASH_MARK_MOVE,
    ST_TRASH_IS_MOVE,
    /* Gmail labels: a message's rows in other folders */
    ST_MSG_COPIES,
    ST_MSG_IDS_ELSEWHERE,
    ST_COUNT
};

/* The pending count uses the partial index (cheap); the message count is
 * one row of folder_rows (see FOLDER_ROWS_SQL). */
#define FOLDER_BASE_COLUMNS                                                                                 \
    "id, name, path, uidvalidity, uidnext, highestmodseq, last_sync, "
/* INDEXED BY: without statistics SQLite prefers the primary key, which
 * reads every row of the folder (12 ms at 20,000 messages, each run). */
#define PENDING_COLUMN                                                                                      \
    "(SELECT count(*) FROM messages INDEXED BY messages_pending WHERE folder_id = folders.id AND pending)"
#define APPENDS_COLUMN "(SELECT count(*) FROM appends WHERE folder_id = folders.id)"
#define FOLDER_GET_COLUMNS FOLDER_BASE_COLUMNS "-1, " PENDING_COLUMN ", " APPENDS_COLUMN
#define ROWS_OF(folder) "coalesce((SELECT n FROM folder_rows WHERE folder_id = " folder "), 0)"
#define FOLDER_COLUMNS FOLDER_BASE_COLUMNS ROWS_OF("folders.id") ", " PENDING_COLUMN ", " APPENDS_COLUMN

#define TOMB_COLUMNS "folder_id, uniq, message_id, size, reason, since"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_FOLDER_GET] = "SELECT " FOLDER_GET_COLUMNS " FROM folders WHERE name = ?1",
    [ST_ANY_SYNCED] = "SELECT EXISTS (SELECT 1 FROM folders WHERE last_sync != 0)",
    [ST_FOLDER_INSERT] = "INSERT INTO folders (name, path, uidvalidity, uidnext, highestmodseq, last_sync) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_FOLDER_UPDATE] = "UPDATE folders SET name = ?1, path = ?2, uidvalidity = ?3, uidnext = ?4, "
                         "highestmodseq = ?5, last_sync = ?6 WHERE id = ?7",
    [ST_FOLDER_LIST] = "SELECT " FOLDER_COLUMNS " FROM folders ORDER BY name",
    [ST_FOLDER_DELETE] = "DELETE FROM folders WHERE id = ?1",
    [ST_FOLDER_LIST_BRIEF] = "SELECT " FOLDER_GET_COLUMNS " FROM folders ORDER BY name",
    [ST_FOLDER_TOUCH] = "UPDATE folders SET last_sync = ?2 WHERE id = ?1",
    [ST_MSG_LIST] = "SELECT uid, uniq, flags, keywords, size, message_id, hash, pending, emailid FROM messages "
                    "WHERE folder_id = ?1 ORDER BY uid",
    [ST_MSG_GET] = "SELECT uid, uniq, flags, keywords, size, message_id, hash, pending, emailid FROM messages "
                   "WHERE folder_id = ?1 AND uid = ?2",
    [ST_MSG_GET_BRIEF] = "SELECT uid, uniq, flags, keywords, size, NULL, NULL, pending, NULL FROM messages "
                         "WHERE folder_id = ?1 AND uid = ?2",
    [ST_MSG_RANGE] = "SELECT uid, uniq, flags, keywords, size, message_id, hash, pending, emailid FROM messages "
                     "WHERE folder_id = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid",
    [ST_MSG_UIDS] = "SELECT uid FROM messages WHERE folder_id = ?1 ORDER BY uid",
    [ST_MSG_PUT] = "INSERT OR REPLACE INTO messages "
                   "(folder_id, uid, uniq, flags, keywords, size, message_id, hash, pending, emailid) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_MSG_SET_FLAGS] = "UPDATE messages SET flags = ?3, keywords = ?4 WHERE folder_id = ?1 AND uid = ?2",
    [ST_MSG_CONFIRM] = "UPDATE messages SET pending = 0 WHERE folder_id = ?1 AND uid = ?2",
    [ST_MSG_DELETE] = "DELETE FROM messages WHERE folder_id = ?1 AND uid = ?2",
    [ST_MSG_DELETE_ALL] = "DELETE FROM messages WHERE folder_id = ?1",
    [ST_MSG_COUNT] = "SELECT " ROWS_OF("?1"),
    [ST_META_SET] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
    [ST_META_DEL] = "DELETE FROM meta WHERE key = ?1",
    [ST_MSG_LIST_BRIEF] = "SELECT uid, uniq, flags, keywords, size, NULL, NULL, pending, NULL FROM messages "
                          "WHERE folder_id = ?1 ORDER BY uid",
    [ST_MSG_RANGE_BRIEF] = "SELECT uid, uniq, flags, keywords, size, NULL, NULL, pending, NULL FROM messages "
                           "WHERE folder_id = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid",
    [ST_POP3_PUT] = "INSERT OR REPLACE INTO pop3 (folder_id, uidl, uniq, first_seen, pending) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_POP3_LIST] = "SELECT uidl, uniq, first_seen, pending FROM pop3 WHERE folder_id = ?1 ORDER BY uidl",
    [ST_POP3_CONFIRM] = "UPDATE pop3 SET pending = 0 WHERE folder_id = ?1 AND uidl = ?2",
    [ST_POP3_DELETE] = "DELETE FROM pop3 WHERE folder_id = ?1 AND uidl = ?2",
    [ST_APPEND_PUT] = "INSERT OR REPLACE INTO appends (folder_id, uniq, uidvalidity, uidnext, size, message_id) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_APPEND_LIST] = "SELECT uniq, uidvalidity, uidnext, size, message_id FROM appends WHERE folder_id = ?1 "
                       "ORDER BY uniq",
    [ST_APPEND_DELETE] = "DELETE FROM appends WHERE folder_id = ?1 AND uniq = ?2",
    [ST_STORE_PUT] = "INSERT OR REPLACE INTO stores (folder_id, uid, uidvalidity, flags, added, removed) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_STORE_LIST] = "SELECT uid, uidvalidity, flags, added, removed FROM stores WHERE folder_id = ?1 ORDER BY uid",
    [ST_STORE_DELETE] = "DELETE FROM stores WHERE folder_id = ?1 AND uid = ?2",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    /* the trash journal */
    [ST_TRASH_PUT] = "INSERT OR REPLACE INTO trashing (folder_id, uid, trash, trash_uidvalidity, trash_uidnext, "
                     "copy_uid, size, message_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_TRASH_LIST] = "SELECT uid, trash, trash_uidvalidity, trash_uidnext, copy_uid, size, message_id "
                      "FROM trashing WHERE folder_id = ?1 ORDER BY uid",
    [ST_TRASH_SET_COPY] = "UPDATE trashing SET copy_uid = ?3 WHERE folder_id = ?1 AND uid = ?2",
    [ST_TRASH_DELETE] = "DELETE FROM trashing WHERE folder_id = ?1 AND uid = ?2",
    /* tombstones */
    [ST_TOMB_PUT] = "INSERT OR REPLACE INTO tombstones (folder_id, uniq, message_id, size, reason, since) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_TOMB_LIST] = "SELECT " TOMB_COLUMNS " FROM tombstones WHERE folder_id = ?1 ORDER BY uniq",
    [ST_TOMB_LIST_KEPT] = "SELECT " TOMB_COLUMNS " FROM tombstones INDEXED BY tombstones_kept "
                          "WHERE folder_id = ?1 AND reason = 'kept_by_backup' ORDER BY uniq",
    [ST_TOMB_BY_UNIQ] = "SELECT " TOMB_COLUMNS " FROM tombstones WHERE uniq = ?1 ORDER BY folder_id LIMIT 1",
    [ST_TOMB_BY_ID] = "SELECT " TOMB_COLUMNS " FROM tombstones WHERE message_id = ?1 AND size = ?2 "
                      "ORDER BY folder_id, uniq LIMIT 1",
    [ST_TOMB_DELETE] = "DELETE FROM tombstones WHERE folder_id = ?1 AND uniq = ?2",
    [ST_TOMB_COUNT] = "SELECT reason, count(*) FROM tombstones WHERE folder_id = ?1 GROUP BY reason",
    /* the server-move journal */
    [ST_SMOVE_PUT] = "INSERT OR REPLACE INTO server_moves (folder_id, uid, from_folder_id, from_uid) "
                     "VALUES (?1, ?2, ?3, ?4)",
    [ST_SMOVE_LIST] = "SELECT folder_id, uid, from_folder_id, from_uid FROM server_moves ORDER BY folder_id, uid",
    [ST_SMOVE_DELETE] = "DELETE FROM server_moves WHERE folder_id = ?1 AND uid = ?2",
    /* placeholders: the partial index keeps a folder without any at one
     * index probe, whatever its size */
    [ST_MSG_SET_PLACEHOLDER] = "UPDATE messages SET placeholder = ?3 WHERE folder_id = ?1 AND uid = ?2",
    [ST_MSG_SET_UNIQ] = "UPDATE messages SET uniq = ?3 WHERE folder_id = ?1 AND uid = ?2",
    [ST_TRASH_MARK_MOVE] = "INSERT OR IGNORE INTO trashing_moves (folder_id, uid) SELECT folder_id, uid FROM trashing "
                           "WHERE folder_id = ?1 AND uid = ?2",
    [ST_TRASH_IS_MOVE] = "SELECT 1 FROM trashing_moves WHERE folder_id = ?1 AND uid = ?2",
    [ST_MSG_LIST_PLACEHOLDERS] = "SELECT uid, uniq, flags, size, placeholder FROM messages "
                                 "INDEXED BY messages_placeholder WHERE folder_id = ?1 AND placeholder "
                                 "ORDER BY uid",
    [ST_MSG_COPIES] = "SELECT m.folder_id, f.path, m.uniq, m.flags, m.size FROM messages m "
                      "JOIN folders f ON f.id = m.folder_id "
                      "WHERE m.emailid = ?1 AND m.folder_id != ?2 AND NOT m.pending AND m.uniq IS NOT NULL "
                      "AND f.path IS NOT NULL ORDER BY m.folder_id, m.uid LIMIT ?3",
    [ST_MSG_IDS_ELSEWHERE] = "SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_emailid "
                             "WHERE emailid IS NOT NULL AND folder_id != ?1)",
};

/* Rows whose local file is a placeholder for a message over max_size
 * (state_placeholder_list). */
#define PLACEHOLDER_INDEX_SQL "CREATE INDEX IF NOT EXISTS messages_placeholder ON messages (folder_id) WHERE placeholder"

static const char schema_sql[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE folders ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT UNIQUE NOT NULL,"
    "  path TEXT,"
    "  uidvalidity INTEGER,"
    "  uidnext INTEGER,"
    "  highestmodseq INTEGER,"
    "  last_sync INTEGER);"
    "CREATE TABLE messages ("
    "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"
    "  uid INTEGER NOT NULL,"
    "  uniq TEXT,"
    "  flags INTEGER NOT NULL DEFAULT 0,"
    "  keywords TEXT,"
    "  size INTEGER,"
    "  message_id TEXT,"
    "  hash TEXT,"
    "  pending INTEGER NOT NULL DEFAULT 0,"
    "  emailid TEXT,"
    "  placeholder INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (folder_id, uid)) WITHOUT ROWID;"
    "CREATE INDEX messages_message_id ON messages (folder_id, message_id);"
    "CREATE INDEX messages_pending ON messages (folder_id) WHERE pending;"
    PLACEHOLDER_INDEX_SQL ";";

/* Uploads sent or about to be sent whose UID is not recorded yet (added
 * after schema 1 shipped: created on open where missing). */
#define APPENDS_TABLE_SQL                                                                                   \
    "CREATE TABLE IF NOT EXISTS appends ("                                                                  \
    "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"                               \
    "  uniq TEXT NOT NULL,"                                                                                 \
    "  uidvalidity INTEGER,"                                                                                \
    "  uidnext INTEGER,"                                                                                    \
    "  size INTEGER,"                                                                                       \
    "  message_id TEXT,"                                                                                    \
    "  PRIMARY KEY (folder_id, uniq)) WITHOUT ROWID"

/* POP3 messages fetched (by UIDL), also created on open where missing. */
#define POP3_TABLE_SQL                                                                                      \
    "CREATE TABLE IF NOT EXISTS pop3 ("                                                                     \
    "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"                               \
    "  uidl TEXT NOT NULL,"                                                                                 \
    "  uniq TEXT,"                                                                                          \
    "  first_seen INTEGER,"                                                                                 \
    "  pending INTEGER NOT NULL DEFAULT 0,"                                                                 \
    "  PRIMARY KEY (folder_id, uidl)) WITHOUT ROWID"

/* Schema 2: messages being moved to the trash folder by COPY + \Deleted
 * + UID EXPUNGE (a server without MOVE): see "the trash journal". */
#define TRASHING_TABLE_SQL                                                                                  \
    "CREATE TABLE IF NOT EXISTS trashing ("                                                                 \
    "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"                               \
    "  uid INTEGER NOT NULL,"                                                                               \
    "  trash TEXT,"                                                                                         \
    "  trash_uidvalidity INTEGER,"                                                                          \
    "  trash_uidnext INTEGER,"                                                                              \
    "  copy_uid INTEGER NOT NULL DEFAULT 0,"                                                                \
    "  size INTEGER,"                                                                                       \
    "  message_id TEXT,"                                                                                    \
    "  PRIMARY KEY (folder_id, uid)) WITHOUT ROWID"

/* Messages that live only locally because a policy took them off the
 * server (see "tombstones" in state.h), created on open where missing.
 * By uniq across folders (a file moved keeping its name) and by identity
 * (renamed to a new unique name): what a push asks before an upload. */
#define TOMBSTONES_TABLE_SQL                                                                                \
    "CREATE TABLE IF NOT EXISTS tombstones ("                                                               \
    "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"                               \
    "  uniq TEXT NOT NULL,"                                                                                 \
    "  message_id TEXT,"                                                                                    \
    "  size INTEGER,"                                                                                       \
    "  reason TEXT NOT NULL,"                                                                               \
    "  since INTEGER,"                                                                                      \
    "  PRIMARY KEY (folder_id, uniq)) WITHOUT ROWID;"                                                       \
    "CREATE INDEX IF NOT EXISTS tombstones_uniq ON tombstones (uniq);"                                      \
    "CREATE INDEX IF NOT EXISTS tombstones_message_id ON tombstones (message_id, size) "                   \
    "  WHERE message_id IS NOT NULL;"                                                                       \
    "CREATE INDEX IF NOT EXISTS tombstones_kept ON tombstones (folder_id) WHERE reason = 'kept_by_backup'"

/* Messages another client moved on the server whose local file is being
 * renamed into the destination folder (sync/engine/moves_server.c):
 * created on open where missing. folder_id/uid: the destination's row
 * (pending until the rename is durable); from_*: the source's row. */
#define SERVER_MOVES_TABLE_SQL                                                                              \
    "CREATE TABLE IF NOT EXISTS server_moves ("                                                             \
    "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"                               \
    "  uid INTEGER NOT NULL,"                                                                               \
    "  from_folder_id INTEGER NOT NULL,"                                                                    \
    "  from_uid INTEGER NOT NULL,"                                                                          \
    "  PRIMARY KEY (folder_id, uid)) WITHOUT ROWID"

/* The number of rows of each folder in `messages`, kept by triggers in
 * the statement that inserts or deletes a row, so in its transaction: a
 * count is one lookup however big the folder (count(*) reads the folder's
 * whole range of the primary key: 70-240 ms at 100,000 rows), and a run
 * killed mid-transaction rolls the count back with the rows. Created on
 * open where missing (and counted once then), so it also holds for rows
 * written by a mailsync that does not know the table: the triggers are in
 * the file.
 * INSERT OR REPLACE over an existing row (state_msg_put) fires no delete
 * trigger (SQLite fires them for REPLACE only with recursive_triggers,
 * which mailsync leaves off): the BEFORE INSERT trigger takes one off for
 * the row the insert will replace, the AFTER INSERT one adds one. A plain
 * INSERT that hits an existing row fails, and its statement's trigger
 * work is undone with it. Rows deleted with their folder (ON DELETE
 * CASCADE) fire the delete trigger; the folder's count row goes by its own
 * cascade. The count's row is made by an INSERT that cannot conflict:
 * the outer statement's OR REPLACE would override a trigger's OR IGNORE
 * (and reset the count). */
#define FOLDER_ROWS_SQL                                                                                     \
    "CREATE TABLE IF NOT EXISTS folder_rows ("                                                              \
    "  folder_id INTEGER PRIMARY KEY REFERENCES folders(id) ON DELETE CASCADE,"                            \
    "  n INTEGER NOT NULL);"                                                                                \
    "CREATE TRIGGER IF NOT EXISTS folder_rows_replace BEFORE INSERT ON messages "                          \
    "  WHEN EXISTS (SELECT 1 FROM messages WHERE folder_id = NEW.folder_id AND uid = NEW.uid) BEGIN "      \
    "  UPDATE folder_rows SET n = n - 1 WHERE folder_id = NEW.folder_id; END;"                             \
    "CREATE TRIGGER IF NOT EXISTS folder_rows_insert AFTER INSERT ON messages BEGIN "                      \
    "  INSERT INTO folder_rows (folder_id, n) SELECT NEW.folder_id, 0 "                                   \
    "    WHERE NOT EXISTS (SELECT 1 FROM folder_rows WHERE folder_id = NEW.folder_id);"                      \
    "  UPDATE folder_rows SET n = n + 1 WHERE folder_id = NEW.folder_id; END;"                             \
    "CREATE TRIGGER IF NOT EXISTS folder_rows_delete AFTER DELETE ON messages BEGIN "                      \
    "  UPDATE folder_rows SET n = n - 1 WHERE folder_id = OLD.folder_id; END;"                             \
    "CREATE TRIGGER IF NOT EXISTS folder_rows_move AFTER UPDATE OF folder_id ON messages "                 \
    "  WHEN OLD.folder_id != NEW.folder_id BEGIN "                                                          \
    "  UPDATE folder_rows SET n = n - 1 WHERE folder_id = OLD.folder_id;"                                  \
    "  INSERT INTO folder_rows (folder_id, n) SELECT NEW.folder_id, 0 "                                   \
    "    WHERE NOT EXISTS (SELECT 1 FROM folder_rows WHERE folder_id = NEW.folder_id);"                      \
    "  UPDATE folder_rows SET n = n + 1 WHERE folder_id = NEW.folder_id; END"

/* Flag changes a push is about to store (UID STORE), also created on
 * open where missing. */
#define STORES_TABLE_SQL                                                                                    \
    "CREATE TABLE IF NOT EXISTS stores ("                                                                   \
    "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"                               \
    "  uid INTEGER NOT NULL,"                                                                               \
    "  uidvalidity INTEGER NOT NULL,"                                                                       \
    "  flags INTEGER NOT NULL,"                                                                             \
    "  added INTEGER NOT NULL,"                                                                             \
    "  removed INTEGER NOT NULL,"                                                                           \
    "  PRIMARY KEY (folder_id, uid)) WITHOUT ROWID"

/* Which rows of the trash journal (trashing) are local moves between
 * folders (moves_local.c) rather than deletions: a move into the trash
 * folder looks like a deletion otherwise. Created on open where missing;
 * its triggers forget a mark with its journal row (deleted, or replaced
 * by a deletion's), so a mark never outlives the row it was made for. */
#define TRASH_MOVES_SQL                                                                                     \
    "CREATE TABLE IF NOT EXISTS trashing_moves ("                                                           \
    "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"                               \
    "  uid INTEGER NOT NULL,"                                                                               \
    "  PRIMARY KEY (folder_id, uid)) WITHOUT ROWID;"                                                        \
    "CREATE TRIGGER IF NOT EXISTS trashing_moves_replace BEFORE INSERT ON trashing BEGIN "                  \
    "  DELETE FROM trashing_moves WHERE folder_id = NEW.folder_id AND uid = NEW.uid; END;"                 \
    "CREATE TRIGGER IF NOT EXISTS trashing_moves_forget AFTER DELETE ON trashing BEGIN "                    \
    "  DELETE FROM trashing_moves WHERE folder_id = OLD.folder_id AND uid = OLD.uid; END"

struct state {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[ST_COUNT];
    int64_t checked_at; /* when quick_check last passed on this file; 0: never */
    bool ran_check;     /* this open ran quick_check */
    bool wrote;         /* a schema was created (total_changes misses DDL) */
    bool batch;         /* the open transaction is a batch (state_batch) */
    /* <path>.lastrun, read on first use */
    bool quiet_loaded;
    int64_t quiet_when;
    struct state_quiet_folder *quiet;
    size_t nquiet;
    int (*before_commit)(void *ctx, struct ms_error *err); /* state_before_batch_commit */
    void *before_commit_ctx;
    int (*before_change)(void *ctx, struct ms_error *err); /* state_before_first_change */
    void *before_change_ctx;
    /* state_rows_gen(): writes to a folder's message rows, by folder id
     * (gens[id]), and to every folder's (gen_all: a folder deleted, an id
     * past the array). Only ever counted up. */
    uint64_t *gens;
    size_t ngens;
    uint64_t gen_all;
};

/* ------------------------------------------------------------------ */
/* helpers                                                             */

/* A statement about to write folder_id's message rows (whether or not
 * it then succeeds: counting too often only costs a rescan). */
static void rows_touched(struct state *s, int64_t folder_id)
{
    if (folder_id <= 0 || folder_id > (1 << 20)) {
        s->gen_all++;
        return;
    }
    if ((size_t)folder_id >= s->ngens) {
        size_t n = (size_t)folder_id + 64;
        s->gens = xrealloc(s->gens, n * sizeof *s->gens);
        memset(s->gens + s->ngens, 0, (n - s->ngens) * sizeof *s->gens);
        s->ngens = n;
    }
    s->gens[folder_id]++;
}

uint64_t state_rows_gen(const struct state *s, int64_t folder_id)
{
    uint64_t own = folder_id > 0 && (size_t)folder_id < s->ngens ? s->gens[folder_id] : 0;
    return s->gen_all + own;
}

static char *xstrdup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static int db_error(struct state *s, struct ms_error *err, const char *what)
{
    return ms_error_set(err, MS_ELOCAL, "state DB %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

/* The advice must be true: a run without the DB re-matches an IMAP
 * account's messages by identity (sync/engine/generation.c, rematch.c), but it
 * cannot know the deletions the DB was still to carry over; a POP3 pull
 * compares its downloads with INBOX's files (sync/engine/popfetch.c). */
static int unusable(struct ms_error *err, const char *path, const char *why)
{
    return ms_error_set(err, MS_ELOCAL,
                        "state DB %s is unusable: %s; nothing was changed. To start over, move it away: the next run "
                        "re-matches an IMAP account's messages by identity (a message deleted on one side only "
                        "since the last sync comes back); a POP3 account downloads again what the server keeps, to "
                        "compare it with the local files, and delivers none of it twice",
                        path, why);
}

/* The cached statement id, prepared on first use, reset and unbound. */
static sqlite3_stmt *stmt(struct state *s, enum stmt_id id, struct ms_error *err)
{
    if (!s->stmt[id]) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[id], NULL) !=
            SQLITE_OK) {
            db_error(s, err, "preparing a statement");
            return NULL;
        }
    }
    return s->stmt[id];
}

/* Done with a cached statement: ready it for the next use. */
static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Step a statement that returns no rows, then reset it. */
static int run(struct state *s, sqlite3_stmt *st, const char *what, struct ms_error *err)
{
    int rc = sqlite3_step(st);
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(s, err, what);
    return MS_OK;
}

static int exec(struct state *s, const char *sql, const char *what, struct ms_error *err);
static int exec_in_transaction(struct state *s, const char *sql, const char *what, struct ms_error *err);

/* run() for a statement that records a change of messages, the set of
 * folders, uploads or POP3 messages (not meta data, not the bookkeeping
 * columns of a folder: see state_folder_save): the first
 * one of this open calls the state_before_first_change() hook, and the
 * hook's own writes are committed before the change is made, even inside
 * an open transaction (which holds no change yet, so committing it early
 * splits nothing the caller meant to be atomic). */
static int record(struct state *s, sqlite3_stmt *st, const char *what, struct ms_error *err)
{
    if (s->before_change) {
        int (*fn)(void *ctx, struct ms_error *err) = s->before_change;
        s->before_change = NULL; /* once; and its own writes are not changes */
        int rc = fn(s->before_change_ctx, err);
        /* A batch may hold bookkeeping of files already renamed: it keeps
         * its rule (state_before_batch_commit) when committed early. */
        if (rc == MS_OK && s->batch && s->before_commit)
            rc = s->before_commit(s->before_commit_ctx, err);
        if (rc == MS_OK && !sqlite3_get_autocommit(s->db)) {
            rc = exec(s, "COMMIT", "committing", err);
            if (rc == MS_OK)
                rc = exec(s, "BEGIN IMMEDIATE", "starting a transaction", err);
        }
        if (rc) {
            s->before_change = fn; /* the change is not made: the next one tries again */
            stmt_done(st);
            return rc;
        }
    }
    return run(s, st, what, err);
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static char *column_strdup(sqlite3_stmt *st, int i)
{
    return xstrdup_or_null((const char *)sqlite3_column_text(st, i));
}

static bool has_object(struct state *s, const char *type, const char *name)
{
    sqlite3_stmt *st = NULL;
    bool yes = false;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM sqlite_master WHERE type = ?1 AND name = ?2", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        yes = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return yes;
}

/* What a DB of an older mailsync lacks, added by an open that may write. */
struct upgrades {
    bool pending_index, appends, pop3, trashing, tombstones, server_moves, stores, emailid, placeholder,
        emailid_index, folder_rows, trash_moves;
};

/* Does table have the column? */
static bool has_column(struct state *s, const char *table, const char *column)
{
    sqlite3_stmt *st = NULL;
    bool yes = false;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
        yes = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return yes;
}

static bool needs_upgrade(struct state *s, struct upgrades *u)
{
    u->pending_index = !has_object(s, "index", "messages_pending");
    u->appends = !has_object(s, "table", "appends");
    u->pop3 = !has_object(s, "table", "pop3");
    u->trashing = !has_object(s, "table", "trashing");
    u->tombstones = !has_object(s, "index", "tombstones_kept");
    u->server_moves = !has_object(s, "table", "server_moves");
    u->stores = !has_object(s, "table", "stores");
    u->emailid = !has_column(s, "messages", "emailid");
    u->placeholder = !has_object(s, "index", "messages_placeholder");
    u->emailid_index = !has_object(s, "index", "messages_emailid");
    u->folder_rows = !has_object(s, "trigger", "folder_rows_move");
    u->trash_moves = !has_object(s, "trigger", "trashing_moves_forget");
    /* An index alone is no reason to refuse a read-only open (see open_db):
     * the caller creates it when it may write. */
    return u->pending_index || u->appends || u->pop3 || u->trashing || u->tombstones || u->server_moves ||
           u->stores || u->emailid || u->placeholder || u->folder_rows || u->trash_moves;
}

/* folder_rows with its triggers, and every folder counted once, in one
 * transaction (a kill leaves the DB without them, to be made next time). */
static int create_folder_rows(struct state *s, struct ms_error *err)
{
    return exec_in_transaction(
        s,
        "DROP TABLE IF EXISTS folder_rows;" FOLDER_ROWS_SQL ";"
        "INSERT INTO folder_rows (folder_id, n) SELECT folder_id, count(*) FROM messages GROUP BY folder_id",
        "creating the folder row counts", err);
}

static int exec(struct state *s, const char *sql, const char *what, struct ms_error *err)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_error(s, err, what);
    return MS_OK;
}

/* sql (one or more statements) in one transaction of its own: all of it
 * or, on an error or a crash, none. */
static int exec_in_transaction(struct state *s, const char *sql, const char *what, struct ms_error *err)
{
    int rc = exec(s, "BEGIN IMMEDIATE", "starting a transaction", err);
    if (rc)
        return rc;
    rc = exec(s, sql, what, err);
    if (!rc)
        rc = exec(s, "COMMIT", "committing", err);
    if (rc)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->wrote = true;
    return rc;
}

/* ------------------------------------------------------------------ */
/* open: create or check                                               */

/* Make sure the file exists with mode 0600 (SQLite would use 0644 less the
 * umask) and look at an existing one before SQLite does. *fresh is set
 * when the file is new or empty (nothing to lose). */
static int precheck_file(const char *path, bool *fresh, struct ms_error *err)
{
    *fresh = false;
    if (util_mkdirs(path, 0700, true) != 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot create the directory of state DB %s", path);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        *fresh = true;
        return MS_OK;
    }
    if (errno != EEXIST)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot create state DB %s", path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot open state DB %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ms_error_errno(err, MS_ELOCAL, e, "cannot stat state DB %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return unusable(err, path, "not a regular file");
    }
    if (st.st_size == 0) { /* created by a run that died before the schema */
        close(fd);
        *fresh = true;
        return MS_OK;
    }
    char header[16];
    ssize_t n = pread(fd, header, sizeof header, 0);
    close(fd);
    if (n != (ssize_t)sizeof header || memcmp(header, "SQLite format 3", 16) != 0 || st.st_size < 512)
        return unusable(err, path, "not an SQLite database");
    return MS_OK;
}

/* Integrity and identity of an existing DB. Returns MS_OK with *empty set
 * when it has no tables at all (a fresh file a crashed run left). */
static int check_existing(struct state *s, bool *empty, struct ms_error *err)
{
    *empty = false;
    sqlite3_stmt *st = NULL;
    int rc;
    if (sqlite3_prepare_v2(s->db, "SELECT count(*), sum(name = 'meta') FROM sqlite_master", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return unusable(err, s->path, sqlite3_errmsg(s->db));
    }
    int64_t objects = sqlite3_column_int64(st, 0), has_meta = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    if (objects == 0) {
        *empty = true;
        return MS_OK;
    }
    if (!has_meta)
        return unusable(err, s->path, "not a mailsync state DB (no meta table)");

    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &st, NULL) !=
        SQLITE_OK)
        return unusable(err, s->path, sqlite3_errmsg(s->db));
    rc = sqlite3_step(st);
    const char *v = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    char *end = NULL;
    long version = v ? strtol(v, &end, 10) : 0;
    bool valid = v && end != v && *end == '\0';
    sqlite3_finalize(st);
    if (!valid)
        return unusable(err, s->path, "not a mailsync state DB (no schema version)");
    if (version > SCHEMA_VERSION) {
        char why[128];
        snprintf(why, sizeof why, "schema version %ld is newer than this mailsync understands (%d)", version,
                 SCHEMA_VERSION);
        return unusable(err, s->path, why);
    }
    if (version < 1)
        return unusable(err, s->path, "bad schema version");
    /* Older versions are brought up to date by state_open (migrate_*). */
    return MS_OK;
}

/* Schema 1 -> 2: the trash journal, and the version that keeps an older
 * mailsync (which would not read the journal, and could copy a message
 * to the trash twice) from using the DB. One transaction: a crash leaves
 * either schema. Also run on a fresh DB (its version is already 2). */
static int migrate_trash_journal(struct state *s, struct ms_error *err)
{
    return exec_in_transaction(
        s,
        TRASHING_TABLE_SQL ";"
        "UPDATE meta SET value = '2' WHERE key = 'schema_version' AND CAST(value AS INTEGER) < 2",
        "creating the trash journal and updating the schema version", err);
}

static int create_schema(struct state *s, struct ms_error *err)
{
    int rc = exec(s, "BEGIN IMMEDIATE", "starting a transaction", err);
    if (rc)
        return rc;
    rc = exec(s, schema_sql, "creating the schema", err);
    if (!rc) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO meta (key, value) VALUES ('schema_version', '%d')", SCHEMA_VERSION);
        rc = exec(s, sql, "creating the schema", err);
    }
    if (!rc)
        rc = exec(s, "COMMIT", "committing", err);
    if (rc)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* ------------------------------------------------------------------ */
/* integrity stamp                                                     */

/* PRAGMA quick_check reads and parses the whole file (15-40 ms at 20,000
 * messages): a damaged DB must stop the run before anything is written
 * (exit 5), not only when some later run happens to read a damaged page.
 * But a timer running every few minutes would pay it every time for a file
 * nobody else touched. So a clean close writes a stamp next to the DB that
 * identifies the DB file exactly as SQLite left it (with no WAL beside
 * it), with when quick_check last passed. An open whose file still
 * matches, with still no WAL, and whose last check is under STAMP_MAX_AGE
 * old, skips the check.
 *
 * How the file is identified: the close sets the DB's mtime to a
 * nanosecond value of its own choosing, a random fraction of a millisecond
 * before now, and records size and mtime, which the next open compares
 * without reading the file (O(1) however big the DB). Any later write sets
 * mtime to the kernel's clock, which lands on that value by chance only
 * (about one in a million per write in the same millisecond), and copies
 * that keep the mtime keep the bytes. Only a deliberate reset of the mtime
 * to that value would hide a change. A copy that took a new mtime, a WAL
 * left behind (a crash, or another program still had the DB open) or a file
 * system without nanosecond timestamps: checked, then stamped anew. The
 * stamp is not synced: losing it costs one check. */
#define STAMP_MAX_AGE (24 * 3600)
#define STAMP_MAGIC "mailsync-integrity-stamp 4"

static char *sibling(const char *path, const char *suffix)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *p = xmalloc(n);
    snprintf(p, n, "%s%s", path, suffix);
    return p;
}

/* No WAL beside the DB (anything but "does not exist" counts as one). */
static bool wal_absent(const char *path)
{
    char *walpath = sibling(path, "-wal");
    struct stat st;
    bool absent = lstat(walpath, &st) != 0 && errno == ENOENT;
    free(walpath);
    return absent;
}

static long long ns_of(struct timespec t)
{
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* "s:<size>:<mtime ns>": no inode or ctime, so that a copy that keeps
 * the mtime (cp -a, a backup restored) is recognized without a read. */
static void stat_token(const struct stat *st, char *out, size_t len)
{
    snprintf(out, len, "s:%lld:%lld", (long long)st->st_size, ns_of(st->st_mtim));
}

/* At close: give the DB an mtime of our own and return its stat token
 * (false where that cannot be done: no nanosecond timestamps). */
static bool db_token_planted(const char *path, char *out, size_t len)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long want = ns_of(now) - 1 - (ns_of(now) ^ ((long long)getpid() * 2654435761LL)) % 999983;
    struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t)(want / 1000000000LL), (long)(want % 1000000000LL)}};
    struct stat st;
    bool planted = futimens(fd, ts) == 0 && fstat(fd, &st) == 0 && ns_of(st.st_mtim) == want;
    close(fd);
    if (planted)
        stat_token(&st, out, len);
    return planted;
}

/* When the stamp vouches for the file as it is now (and no WAL is
 * there): the time of the check it carries; otherwise 0. */
static int64_t stamp_valid(const char *path)
{
    char *stamppath = sibling(path, ".checked");
    int fd = open(stamppath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    free(stamppath);
    if (fd < 0)
        return 0;
    char have[400];
    ssize_t n = read(fd, have, sizeof have - 1);
    close(fd);
    if (n <= 0)
        return 0;
    have[n] = '\0';
    long long checked_at = 0;
    char stat_rec[200];
    if (sscanf(have, STAMP_MAGIC " %lld %199s", &checked_at, stat_rec) != 2)
        return 0;
    int64_t now = (int64_t)time(NULL);
    if (checked_at <= 0 || checked_at > now || now - checked_at >= STAMP_MAX_AGE)
        return 0;
    struct stat st;
    if (!wal_absent(path) || lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    char tok[200];
    stat_token(&st, tok, sizeof tok);
    return strcmp(tok, stat_rec) == 0 ? checked_at : 0;
}

static void stamp_write(const char *path, int64_t checked_at)
{
    char line[300], tok[200];
    bool ok = wal_absent(path) && db_token_planted(path, tok, sizeof tok);
    int w = ok ? snprintf(line, sizeof line, "%s %lld %s\n", STAMP_MAGIC, (long long)checked_at, tok) : -1;
    ok = w > 0 && (size_t)w < sizeof line;
    char *stamppath = sibling(path, ".checked");
    int fd = ok ? open(stamppath, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
    if (fd >= 0) {
        ok = write(fd, line, (size_t)w) == w;
        if (close(fd) != 0)
            ok = false;
    }
    if (!ok)
        unlink(stamppath); /* a stale or torn stamp must not stay */
    free(stamppath);
}

static int integrity_check(struct state *s, struct ms_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK)
        return unusable(err, s->path, sqlite3_errmsg(s->db));
    int rc = sqlite3_step(st);
    const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (!res || strcmp(res, "ok") != 0) {
        char why[256];
        snprintf(why, sizeof why, "integrity check failed: %s", res ? res : sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return unusable(err, s->path, why);
    }
    sqlite3_finalize(st);
    s->ran_check = true;
    s->checked_at = (int64_t)time(NULL);
    return MS_OK;
}

static int set_pragmas(struct state *s, struct ms_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_error(s, err, "setting WAL mode");
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if ((!mode || strcmp(mode, "wal") != 0) && strcmp(s->path, ":memory:") != 0)
        log_msg(LOG_WARN, "state DB %s: WAL journal not available here (using %s)", s->path, mode ? mode : "?");
    sqlite3_finalize(st);
    int rc = exec(s, "PRAGMA synchronous=FULL", "setting synchronous=FULL", err);
    if (!rc)
        rc = exec(s, "PRAGMA foreign_keys=ON", "enabling foreign keys", err);
    /* The page cache in 512 KiB instead of SQLite's 2 MiB: a sync that
     * reads a folder of 100,000 rows fills any cache, and every page it
     * holds counts in the run's memory (peak RSS at most 16 MiB, issue 18);
     * pages read again come from the kernel's cache. No mmap (mmap_size 0,
     * the default) for the same reason: mapped pages count too. */
    if (!rc)
        rc = exec(s, "PRAGMA cache_size=-512", "setting cache_size", err);
    return rc;
}

/* state_open(); with may_write false, *out stays NULL (MS_OK) where the
 * open would have to write: a schema to create or to upgrade. */
static int open_db(const char *path, bool may_write, struct state **out, struct ms_error *err)
{
    *out = NULL;
    if (!path || !*path)
        return ms_error_set(err, MS_ELOCAL, "state DB path is empty");
    bool fresh = true;
    bool memory = strcmp(path, ":memory:") == 0;
    int rc = memory ? MS_OK : precheck_file(path, &fresh, err);
    if (rc)
        return rc;

    struct state *s = xcalloc(1, sizeof *s);
    s->path = xstrdup_or_null(path);
    /* Before SQLite opens (and maybe recovers) anything. */
    int64_t vouched = memory || fresh ? 0 : stamp_valid(path);
    /* No SQLITE_OPEN_CREATE: the file exists now, and must not be replaced. */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (memory ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        rc = ms_error_set(err, MS_ELOCAL, "cannot open state DB %s: %s", path,
                          s->db ? sqlite3_errmsg(s->db) : "out of memory");
        state_close(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 5000);
    sqlite3_extended_result_codes(s->db, 1);

    if (!fresh) {
        bool empty;
        rc = check_existing(s, &empty, err);
        if (rc) {
            state_close(s);
            return rc;
        }
        fresh = empty;
    }
    struct upgrades up = {0};
    if (!may_write && (fresh || needs_upgrade(s, &up))) {
        state_close(s); /* nothing read or written yet: nothing to stamp */
        return MS_OK;
    }
    rc = set_pragmas(s, err);
    if (!rc && fresh)
        rc = create_schema(s, err);
    else if (!rc && vouched)
        s->checked_at = vouched;
    else if (!rc)
        rc = integrity_check(s, err);
    if (!rc && fresh && !memory) {
        s->checked_at = (int64_t)time(NULL); /* nothing in it to damage yet */
        s->wrote = true;
    }
    /* Added after schema 1 first shipped. */
    bool upgrade = !rc && needs_upgrade(s, &up);
    if (!rc && (upgrade || (may_write && up.emailid_index))) {
        if (up.pending_index)
            sqlite3_exec(s->db, "CREATE INDEX IF NOT EXISTS messages_pending ON messages (folder_id) WHERE pending",
                         NULL, NULL, NULL);
        if (up.appends) {
            rc = exec(s, APPENDS_TABLE_SQL, "creating the uploads journal", err);
            s->wrote = true;
        }
        if (!rc && up.pop3) {
            rc = exec(s, POP3_TABLE_SQL, "creating the POP3 table", err);
            s->wrote = true;
        }
        if (!rc && up.trashing)
            rc = migrate_trash_journal(s, err);
        if (!rc && up.tombstones) {
            rc = exec(s, TOMBSTONES_TABLE_SQL, "creating the tombstones table", err);
            s->wrote = true;
        }
        if (!rc && up.server_moves) {
            rc = exec(s, SERVER_MOVES_TABLE_SQL, "creating the server-move journal", err);
            s->wrote = true;
        }
        if (!rc && up.stores) {
            rc = exec(s, STORES_TABLE_SQL, "creating the flag-store journal", err);
            s->wrote = true;
        }
        if (!rc && up.folder_rows)
            rc = create_folder_rows(s, err);
        if (!rc && up.trash_moves) {
            rc = exec_in_transaction(s, TRASH_MOVES_SQL, "creating the local-move marks of the trash journal", err);
            s->wrote = true;
        }
        /* The server's EMAILID (RFC 8474) or X-GM-MSGID of a message: a
         * column without a schema version, since a mailsync that does not
         * know it writes rows without it (NULL: that message is paired by
         * the other tiers), which is all it means. */
        if (!rc && up.emailid) {
            rc = exec(s, "ALTER TABLE messages ADD COLUMN emailid TEXT", "adding the emailid column", err);
            s->wrote = true;
        }
        /* The placeholder mark (max_size): the same, without a schema
         * version; a mailsync that does not know it never sees a
         * placeholder it made (0: a message whole). */
        if (!rc && up.placeholder) {
            if (!has_column(s, "messages", "placeholder"))
                rc = exec(s, "ALTER TABLE messages ADD COLUMN placeholder INTEGER NOT NULL DEFAULT 0",
                          "adding the placeholder column", err);
            if (!rc)
                rc = exec(s, PLACEHOLDER_INDEX_SQL, "adding the placeholder index", err);
            s->wrote = true;
        }
        /* Gmail labels: the rows of one X-GM-MSGID in every folder
         * (state_msg_copies), found without reading the folders. */
        if (!rc && up.emailid_index && may_write) {
            rc = exec(s, "CREATE INDEX IF NOT EXISTS messages_emailid ON messages (emailid) WHERE emailid IS NOT NULL",
                      "creating the emailid index", err);
            s->wrote = true;
        }
    }
    if (rc) {
        state_close(s);
        return rc;
    }
    *out = s;
    return MS_OK;
}

const char *state_sqlite_version(void)
{
    return sqlite3_libversion();
}

int state_open(const char *path, struct state **out, struct ms_error *err)
{
    return open_db(path, true, out, err);
}

int state_open_unchanged(const char *path, struct state **out, struct ms_error *err)
{
    return open_db(path, false, out, err);
}

void state_close(struct state *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    /* Nothing written and the stamp vouched at open: the files are as it
     * says (if SQLite touched them anyway, the next open sees it). */
    bool restamp = s->db && s->checked_at && s->path && strcmp(s->path, ":memory:") != 0 &&
                   (s->ran_check || state_changed(s));
    if (s->db && sqlite3_close(s->db) != SQLITE_OK)
        log_msg(LOG_WARN, "state DB %s: close: %s", s->path, sqlite3_errmsg(s->db));
    else if (restamp)
        stamp_write(s->path, s->checked_at);
    free(s->quiet);
    free(s->gens);
    free(s->path);
    free(s);
}

void state_leave_stamp(struct state *s)
{
    s->checked_at = 0;
}

int state_move_aside(const char *path, char **moved, struct ms_error *err)
{
    *moved = NULL;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, ".stale-%Y%m%dT%H%M%SZ", &tm);
    char *to = sibling(path, stamp);
    /* Never over an earlier one (two in the same second): -2, -3, ... */
    bool taken = false;
    for (int n = 2; (taken = access(to, F_OK) == 0) && n < 100; n++) {
        char more[48];
        snprintf(more, sizeof more, "%s-%d", stamp, n);
        free(to);
        to = sibling(path, more);
    }
    if (taken)
        errno = EEXIST;
    if (taken || errno != ENOENT || rename(path, to) != 0) {
        int rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot move state DB %s aside to %s", path, to);
        free(to);
        return rc;
    }
    /* A WAL left beside it belongs to it (SQLite finds it by name). */
    char *wal = sibling(path, "-wal"), *wal_to = sibling(to, "-wal");
    if (rename(wal, wal_to) != 0 && errno != ENOENT)
        log_msg(LOG_WARN, "cannot move %s to %s: %s", wal, wal_to, strerror(errno));
    free(wal);
    free(wal_to);
    /* The side files describe the old DB: the integrity stamp its file,
     * the quiet-run notes its folder ids. */
    const char *sides[] = {"-shm", ".checked", ".lastrun"};
    for (size_t i = 0; i < sizeof sides / sizeof *sides; i++) {
        char *p = sibling(path, sides[i]);
        unlink(p);
        free(p);
    }
    /* The rename must be durable before a new DB is created in its place. */
    char *dir = xstrdup_or_null(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = MS_OK;
    if (fd < 0 || fsync(fd) != 0)
        rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot make the move of %s to %s durable", path, to);
    if (fd >= 0)
        close(fd);
    free(dir);
    if (rc)
        free(to);
    else
        *moved = to;
    return rc;
}

bool state_changed(const struct state *s)
{
    return s->wrote || sqlite3_total_changes64(s->db) > 0;
}

bool state_integrity_checked(const struct state *s)
{
    return s->ran_check;
}

/* Room for one more row in v (len rows used of *cap; the first growth
 * makes room for `first`, later ones double). Out of memory aborts
 * (xrealloc), as everything here does. */
static void *grow_rows(void *v, size_t len, size_t *cap, size_t size, size_t first)
{
    if (len < *cap)
        return v;
    *cap = *cap ? *cap * 2 : first;
    return xrealloc(v, *cap * size);
}

/* ------------------------------------------------------------------ */
/* transactions                                                        */

int state_begin(struct state *s, struct ms_error *err)
{
    int rc = state_batch_commit(s, err);
    return rc ? rc : exec(s, "BEGIN IMMEDIATE", "starting a transaction", err);
}

int state_batch(struct state *s, struct ms_error *err)
{
    if (s->batch)
        return MS_OK;
    int rc = exec(s, "BEGIN IMMEDIATE", "starting a transaction", err);
    s->batch = rc == MS_OK;
    return rc;
}

void state_before_batch_commit(struct state *s, int (*fn)(void *ctx, struct ms_error *err), void *ctx)
{
    s->before_commit = fn;
    s->before_commit_ctx = ctx;
}

void state_before_first_change(struct state *s, int (*fn)(void *ctx, struct ms_error *err), void *ctx)
{
    s->before_change = fn;
    s->before_change_ctx = ctx;
}

int state_batch_commit(struct state *s, struct ms_error *err)
{
    if (!s->batch)
        return MS_OK;
    int rc = s->before_commit ? s->before_commit(s->before_commit_ctx, err) : MS_OK;
    if (rc) {
        state_batch_abort(s);
        return rc;
    }
    s->batch = false;
    return state_commit(s, err);
}

void state_batch_abort(struct state *s)
{
    if (s->batch)
        state_rollback(s);
    s->batch = false;
}

int state_commit(struct state *s, struct ms_error *err)
{
    int rc = exec(s, "COMMIT", "committing", err);
    /* A failed COMMIT may leave the transaction open; do not let later
     * autocommit writes silently join it. */
    if (rc && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

void state_rollback(struct state *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* folders                                                             */

static void read_folder(sqlite3_stmt *st, struct state_folder *f)
{
    f->id = sqlite3_column_int64(st, 0);
    f->name = column_strdup(st, 1);
    f->path = column_strdup(st, 2);
    f->uidvalidity = (uint32_t)sqlite3_column_int64(st, 3);
    f->uidnext = (uint32_t)sqlite3_column_int64(st, 4);
    f->highestmodseq = (uint64_t)sqlite3_column_int64(st, 5);
    f->last_sync = sqlite3_column_int64(st, 6);
    f->message_count = sqlite3_column_int64(st, 7);
    f->pending_count = sqlite3_column_int64(st, 8);
    f->appends_count = sqlite3_column_int64(st, 9);
}

int state_folder_get(struct state *s, const char *name, struct state_folder *out, struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = stmt(s, ST_FOLDER_GET, err);
    if (!st)
        return MS_ELOCAL;
    bind_text(st, 1, name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_folder(st, out);
    stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(s, err, "reading a folder");
    return MS_OK;
}

int state_any_synced(struct state *s, bool *out, struct ms_error *err)
{
    *out = false;
    sqlite3_stmt *st = stmt(s, ST_ANY_SYNCED, err);
    if (!st)
        return MS_ELOCAL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0) != 0;
    stmt_done(st);
    return rc == SQLITE_ROW ? MS_OK : db_error(s, err, "reading folders");
}

int state_folder_save(struct state *s, struct state_folder *f, struct ms_error *err)
{
    if (!f->name)
        return ms_error_set(err, MS_ELOCAL, "state DB %s: folder without a name", s->path);
    sqlite3_stmt *st = stmt(s, f->id ? ST_FOLDER_UPDATE : ST_FOLDER_INSERT, err);
    if (!st)
        return MS_ELOCAL;
    bind_text(st, 1, f->name);
    bind_text(st, 2, f->path);
    sqlite3_bind_int64(st, 3, f->uidvalidity);
    sqlite3_bind_int64(st, 4, f->uidnext);
    sqlite3_bind_int64(st, 5, (int64_t)f->highestmodseq);
    sqlite3_bind_int64(st, 6, f->last_sync);
    if (f->id)
        sqlite3_bind_int64(st, 7, f->id);
    /* An update only moves the folder's UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ
     * and last_sync (its path is fixed at insert; a UIDVALIDITY change
     * also drops its messages, a change): bookkeeping that a DB may lag
     * behind in without harm (the next run looks at more), not a change. */
    int rc = f->id ? run(s, st, "saving a folder", err) : record(s, st, "saving a folder", err);
    if (rc)
        return rc;
    if (!f->id)
        f->id = sqlite3_last_insert_rowid(s->db);
    else if (sqlite3_changes(s->db) != 1)
        return ms_error_set(err, MS_ELOCAL, "state DB %s: folder %lld is gone", s->path, (long long)f->id);
    return MS_OK;
}

static int folder_list(struct state *s, int which, struct state_folder **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, which, err);
    if (!st)
        return MS_ELOCAL;
    struct state_folder *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = grow_rows(v, len, &cap, sizeof *v, 16);
        memset(&v[len], 0, sizeof v[len]);
        read_folder(st, &v[len++]);
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        state_folders_free(v, len);
        return db_error(s, err, "listing folders");
    }
    *out = v;
    *n = len;
    return MS_OK;
}

int state_folder_list(struct state *s, struct state_folder **out, size_t *n, struct ms_error *err)
{
    return folder_list(s, ST_FOLDER_LIST, out, n, err);
}

int state_folder_list_brief(struct state *s, struct state_folder **out, size_t *n, struct ms_error *err)
{
    return folder_list(s, ST_FOLDER_LIST_BRIEF, out, n, err);
}

int state_folder_touch(struct state *s, int64_t folder_id, int64_t last_sync, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_FOLDER_TOUCH, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, last_sync);
    return run(s, st, "saving a folder", err);
}

int state_folder_delete(struct state *s, int64_t folder_id, struct ms_error *err)
{
    /* Messages go by ON DELETE CASCADE (foreign_keys=ON). */
    sqlite3_stmt *st = stmt(s, ST_FOLDER_DELETE, err);
    if (!st)
        return MS_ELOCAL;
    rows_touched(s, folder_id);
    sqlite3_bind_int64(st, 1, folder_id);
    return record(s, st, "deleting a folder", err);
}

void state_folder_free(struct state_folder *f)
{
    if (!f)
        return;
    free(f->name);
    free(f->path);
    f->name = f->path = NULL;
}

void state_folders_free(struct state_folder *f, size_t n)
{
    if (!f)
        return;
    for (size_t i = 0; i < n; i++)
        state_folder_free(&f[i]);
    free(f);
}

/* ------------------------------------------------------------------ */
/* messages                                                            */

static void read_msg(sqlite3_stmt *st, struct state_msg *m)
{
    m->uid = (uint32_t)sqlite3_column_int64(st, 0);
    m->uniq = column_strdup(st, 1);
    m->flags = (unsigned)sqlite3_column_int64(st, 2);
    m->keywords = column_strdup(st, 3);
    m->size = (uint64_t)sqlite3_column_int64(st, 4);
    m->message_id = column_strdup(st, 5);
    m->hash = column_strdup(st, 6);
    m->pending = sqlite3_column_int64(st, 7) != 0;
    m->emailid = column_strdup(st, 8);
}

static int get_uids(struct state *s, int which, int64_t folder_id, const uint32_t *uids, size_t nuids,
                    struct state_msg **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, which, err);
    if (!st)
        return MS_ELOCAL;
    struct state_msg *v = xcalloc(nuids + 1, sizeof *v);
    /* Outside a transaction each lookup would be a read transaction of
     * its own (shm locks, a check of the file: ~3 system calls each, 300
     * of them for 1% of 20,000 messages changed): one read transaction
     * for all of them instead. Inside one (a batch), it is left alone. */
    bool own = nuids > 1 && sqlite3_get_autocommit(s->db) &&
               sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    size_t len = 0;
    int rc = SQLITE_DONE;
    for (size_t i = 0; i < nuids; i++) {
        if (i > 0 && uids[i] == uids[i - 1])
            continue;
        sqlite3_bind_int64(st, 1, folder_id);
        sqlite3_bind_int64(st, 2, uids[i]);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            read_msg(st, &v[len++]);
        stmt_done(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            break;
    }
    int failed = rc != SQLITE_ROW && rc != SQLITE_DONE ? db_error(s, err, "reading messages") : MS_OK;
    if (own) /* a read transaction: ending it cannot lose anything */
        sqlite3_exec(s->db, failed ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
    if (failed) {
        state_msgs_free(v, len);
        return failed;
    }
    *out = v;
    *n = len;
    return MS_OK;
}

int state_msg_get_uids(struct state *s, int64_t folder_id, const uint32_t *uids, size_t nuids,
                       struct state_msg **out, size_t *n, struct ms_error *err)
{
    return get_uids(s, ST_MSG_GET, folder_id, uids, nuids, out, n, err);
}

int state_msg_get_uids_brief(struct state *s, int64_t folder_id, const uint32_t *uids, size_t nuids,
                             struct state_msg **out, size_t *n, struct ms_error *err)
{
    return get_uids(s, ST_MSG_GET_BRIEF, folder_id, uids, nuids, out, n, err);
}

int state_msg_copies(struct state *s, const char *emailid, int64_t not_folder, struct state_copy *out, size_t max,
                     size_t *n, struct ms_error *err)
{
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_MSG_COPIES, err);
    if (!st)
        return MS_ELOCAL;
    bind_text(st, 1, emailid);
    sqlite3_bind_int64(st, 2, not_folder);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)max);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
        struct state_copy *c = &out[(*n)++];
        c->folder_id = sqlite3_column_int64(st, 0);
        c->path = column_strdup(st, 1);
        c->uniq = column_strdup(st, 2);
        c->flags = (unsigned)sqlite3_column_int64(st, 3);
        c->size = (uint64_t)sqlite3_column_int64(st, 4);
    }
    stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        state_copies_free(out, *n);
        *n = 0;
        return db_error(s, err, "reading a message's copies");
    }
    return MS_OK;
}

int state_msg_ids_elsewhere(struct state *s, int64_t not_folder, bool *yes, struct ms_error *err)
{
    *yes = false;
    sqlite3_stmt *st = stmt(s, ST_MSG_IDS_ELSEWHERE, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, not_folder);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *yes = sqlite3_column_int64(st, 0) != 0;
    stmt_done(st);
    return rc == SQLITE_ROW ? MS_OK : db_error(s, err, "looking for server ids");
}

void state_copies_free(struct state_copy *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++) {
        free(c[i].path);
        free(c[i].uniq);
        c[i].path = c[i].uniq = NULL;
    }
}

typedef bool (*row_filter)(void *ctx, const struct state_msg *row);

/* Every row statement st (bound) yields, into *out (NULL if none); with
 * keep, only the rows it keeps (it sees a brief row borrowed from the
 * statement, in ST_MSG_LIST_BRIEF's columns: copied only if kept). */
static int read_rows(struct state *s, sqlite3_stmt *st, row_filter keep, void *ctx, struct state_msg **out,
                     size_t *n, struct ms_error *err)
{
    struct state_msg *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (keep) {
            struct state_msg row = {.uid = (uint32_t)sqlite3_column_int64(st, 0),
                                    .uniq = (char *)sqlite3_column_text(st, 1),
                                    .flags = (unsigned)sqlite3_column_int64(st, 2),
                                    .keywords = (char *)sqlite3_column_text(st, 3),
                                    .size = (uint64_t)sqlite3_column_int64(st, 4),
                                    .message_id = NULL, .hash = NULL,
                                    .pending = sqlite3_column_int64(st, 7) != 0, .emailid = NULL};
            if (!keep(ctx, &row))
                continue;
        }
        v = grow_rows(v, len, &cap, sizeof *v, 256);
        read_msg(st, &v[len++]);
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        state_msgs_free(v, len);
        return db_error(s, err, "listing messages");
    }
    *out = v;
    *n = len;
    return MS_OK;
}

static int msg_list(struct state *s, enum stmt_id id, int64_t folder_id, row_filter keep, void *ctx,
                    struct state_msg **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, id, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    return read_rows(s, st, keep, ctx, out, n, err);
}

int state_msg_list(struct state *s, int64_t folder_id, struct state_msg **out, size_t *n, struct ms_error *err)
{
    return msg_list(s, ST_MSG_LIST, folder_id, NULL, NULL, out, n, err);
}

static int msg_range(struct state *s, enum stmt_id id, int64_t folder_id, uint32_t first, uint32_t last,
                     row_filter keep, void *ctx, struct state_msg **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, id, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, first);
    sqlite3_bind_int64(st, 3, last);
    int rc = read_rows(s, st, keep, ctx, out, n, err);
    if (rc == MS_OK && !*out)
        *out = xcalloc(1, sizeof **out);
    return rc;
}

int state_msg_list_range(struct state *s, int64_t folder_id, uint32_t first, uint32_t last, struct state_msg **out,
                         size_t *n, struct ms_error *err)
{
    return msg_range(s, ST_MSG_RANGE, folder_id, first, last, NULL, NULL, out, n, err);
}

int state_msg_range_brief_if(struct state *s, int64_t folder_id, uint32_t first, uint32_t last,
                             bool (*keep)(void *ctx, const struct state_msg *row), void *ctx, struct state_msg **out,
                             size_t *n, struct ms_error *err)
{
    return msg_range(s, ST_MSG_RANGE_BRIEF, folder_id, first, last, keep, ctx, out, n, err);
}

int state_msg_uids(struct state *s, int64_t folder_id, uint32_t **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_MSG_UIDS, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    uint32_t *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = grow_rows(v, len, &cap, sizeof *v, 1024);
        v[len++] = (uint32_t)sqlite3_column_int64(st, 0);
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return db_error(s, err, "listing message UIDs");
    }
    *out = v ? v : xcalloc(1, sizeof *v);
    *n = len;
    return MS_OK;
}

int state_msg_list_brief(struct state *s, int64_t folder_id, struct state_msg **out, size_t *n,
                         struct ms_error *err)
{
    return msg_list(s, ST_MSG_LIST_BRIEF, folder_id, NULL, NULL, out, n, err);
}

int state_msg_list_brief_if(struct state *s, int64_t folder_id, bool (*keep)(void *ctx, const struct state_msg *row),
                            void *ctx, struct state_msg **out, size_t *n, struct ms_error *err)
{
    return msg_list(s, ST_MSG_LIST_BRIEF, folder_id, keep, ctx, out, n, err);
}

int state_msg_put(struct state *s, int64_t folder_id, const struct state_msg *m, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_MSG_PUT, err);
    if (!st)
        return MS_ELOCAL;
    rows_touched(s, folder_id);
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, m->uid);
    bind_text(st, 3, m->uniq);
    sqlite3_bind_int64(st, 4, m->flags);
    bind_text(st, 5, m->keywords);
    sqlite3_bind_int64(st, 6, (int64_t)m->size);
    bind_text(st, 7, m->message_id);
    bind_text(st, 8, m->hash);
    sqlite3_bind_int(st, 9, m->pending ? 1 : 0);
    bind_text(st, 10, m->emailid);
    return record(s, st, "recording a message", err);
}

/* Run a (folder_id, uid) keyed update/delete statement. */
static int by_uid(struct state *s, enum stmt_id id, int64_t folder_id, uint32_t uid, const char *what,
                  struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, id, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    return record(s, st, what, err);
}

int state_msg_set_flags(struct state *s, int64_t folder_id, uint32_t uid, unsigned flags, const char *keywords,
                        struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_MSG_SET_FLAGS, err);
    if (!st)
        return MS_ELOCAL;
    rows_touched(s, folder_id);
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    sqlite3_bind_int64(st, 3, flags);
    bind_text(st, 4, keywords);
    return record(s, st, "updating flags", err);
}

int state_msg_confirm(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err)
{
    rows_touched(s, folder_id);
    return by_uid(s, ST_MSG_CONFIRM, folder_id, uid, "confirming a message", err);
}

int state_msg_delete(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err)
{
    rows_touched(s, folder_id);
    return by_uid(s, ST_MSG_DELETE, folder_id, uid, "deleting a message", err);
}

int state_msg_delete_all(struct state *s, int64_t folder_id, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_MSG_DELETE_ALL, err);
    if (!st)
        return MS_ELOCAL;
    rows_touched(s, folder_id);
    sqlite3_bind_int64(st, 1, folder_id);
    return record(s, st, "deleting messages", err);
}

int state_msg_count(struct state *s, int64_t folder_id, size_t *out, struct ms_error *err)
{
    *out = 0;
    sqlite3_stmt *st = stmt(s, ST_MSG_COUNT, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = (size_t)sqlite3_column_int64(st, 0);
    stmt_done(st);
    return rc == SQLITE_ROW ? MS_OK : db_error(s, err, "counting messages");
}

int state_msg_set_placeholder(struct state *s, int64_t folder_id, uint32_t uid, int mark, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_MSG_SET_PLACEHOLDER, err);
    if (!st)
        return MS_ELOCAL;
    rows_touched(s, folder_id);
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    sqlite3_bind_int(st, 3, mark);
    return record(s, st, "marking a placeholder", err);
}

int state_msg_set_uniq(struct state *s, int64_t folder_id, uint32_t uid, const char *uniq, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_MSG_SET_UNIQ, err);
    if (!st)
        return MS_ELOCAL;
    rows_touched(s, folder_id);
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    sqlite3_bind_text(st, 3, uniq, -1, SQLITE_TRANSIENT);
    return record(s, st, "renaming a message's file", err);
}

int state_placeholder_list(struct state *s, int64_t folder_id, struct state_placeholder **out, size_t *n,
                           struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_MSG_LIST_PLACEHOLDERS, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    struct state_placeholder *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[len++] = (struct state_placeholder){.uid = (uint32_t)sqlite3_column_int64(st, 0),
                                              .uniq = column_strdup(st, 1),
                                              .flags = (unsigned)sqlite3_column_int64(st, 2),
                                              .size = (uint64_t)sqlite3_column_int64(st, 3),
                                              .mark = sqlite3_column_int(st, 4)};
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        state_placeholders_free(v, len);
        return db_error(s, err, "reading placeholders");
    }
    *out = v ? v : xcalloc(1, sizeof *v);
    *n = len;
    return MS_OK;
}

void state_placeholders_free(struct state_placeholder *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].uniq);
    free(v);
}

void state_msg_free(struct state_msg *m)
{
    if (!m)
        return;
    free(m->uniq);
    free(m->keywords);
    free(m->message_id);
    free(m->hash);
    free(m->emailid);
    m->uniq = m->keywords = m->message_id = m->hash = m->emailid = NULL;
}

void state_msgs_free(struct state_msg *m, size_t n)
{
    if (!m)
        return;
    for (size_t i = 0; i < n; i++)
        state_msg_free(&m[i]);
    free(m);
}

/* ------------------------------------------------------------------ */
/* meta                                                                */

int state_meta_set(struct state *s, const char *key, const char *value, struct ms_error *err)
{
    if (!key)
        return ms_error_set(err, MS_ELOCAL, "state DB %s: meta key missing", s->path);
    if (!strcmp(key, "schema_version"))
        return ms_error_set(err, MS_ELOCAL, "state DB %s: schema_version is not writable", s->path);
    sqlite3_stmt *st = stmt(s, value ? ST_META_SET : ST_META_DEL, err);
    if (!st)
        return MS_ELOCAL;
    bind_text(st, 1, key);
    if (value)
        bind_text(st, 2, value);
    return run(s, st, "writing meta data", err);
}

int state_meta_get(struct state *s, const char *key, char **value, struct ms_error *err)
{
    *value = NULL;
    sqlite3_stmt *st = stmt(s, ST_META_GET, err);
    if (!st)
        return MS_ELOCAL;
    bind_text(st, 1, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *value = column_strdup(st, 0);
    stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(s, err, "reading meta data");
    return MS_OK;
}

/* ------------------------------------------------------------------ */
/* quiet runs (<path>.lastrun)                                         */

#define QUIET_MAGIC "mailsync-lastrun 1"
#define QUIET_MAX_FOLDERS 100000

int state_note_quiet_run(struct state *s, int64_t when, const struct state_quiet_folder *f, size_t n,
                         struct ms_error *err)
{
    if (!s->path || !strcmp(s->path, ":memory:"))
        return MS_OK;
    char *path = sibling(s->path, ".lastrun");
    FILE *out = NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0 && !(out = fdopen(fd, "w")))
        close(fd);
    int rc = MS_OK;
    if (!out) {
        rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot write %s", path);
    } else {
        fprintf(out, "%s %lld %zu\n", QUIET_MAGIC, (long long)when, n);
        for (size_t i = 0; i < n; i++)
            fprintf(out, "%lld %u %u %llu\n", (long long)f[i].folder_id, f[i].uidvalidity, f[i].uidnext,
                    (unsigned long long)f[i].highestmodseq);
        if (ferror(out) | (fclose(out) != 0)) {
            rc = ms_error_set(err, MS_ELOCAL, "cannot write %s", path);
            unlink(path); /* a torn record must not be read */
        }
    }
    free(path);
    return rc;
}

/* Read <path>.lastrun once; anything malformed reads as no quiet run. */
static void quiet_load(struct state *s)
{
    if (s->quiet_loaded)
        return;
    s->quiet_loaded = true;
    if (!s->path || !strcmp(s->path, ":memory:"))
        return;
    char *path = sibling(s->path, ".lastrun");
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    free(path);
    FILE *in = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!in) {
        if (fd >= 0)
            close(fd);
        return;
    }
    long long when;
    size_t n;
    if (fscanf(in, QUIET_MAGIC " %lld %zu", &when, &n) == 2 && when > 0 && n <= QUIET_MAX_FOLDERS) {
        struct state_quiet_folder *v = xcalloc(n + 1, sizeof *v);
        size_t k = 0;
        long long id;
        unsigned uv, next;
        unsigned long long modseq;
        while (k < n && fscanf(in, "%lld %u %u %llu", &id, &uv, &next, &modseq) == 4)
            v[k++] = (struct state_quiet_folder){id, uv, next, modseq};
        if (k == n) {
            s->quiet_when = when;
            s->quiet = v;
            s->nquiet = n;
        } else {
            free(v);
        }
    }
    fclose(in);
}

int64_t state_last_sync(struct state *s)
{
    char *v = NULL;
    struct ms_error e;
    int64_t t = 0;
    if (state_meta_get(s, "last_sync", &v, &e) == MS_OK && v)
        t = strtoll(v, NULL, 10);
    free(v);
    quiet_load(s);
    return s->quiet_when > t ? s->quiet_when : t;
}

int64_t state_folder_last_sync(struct state *s, const struct state_folder *f)
{
    quiet_load(s);
    for (size_t i = 0; i < s->nquiet; i++) {
        const struct state_quiet_folder *q = &s->quiet[i];
        if (q->folder_id == f->id && q->uidvalidity == f->uidvalidity && q->uidnext == f->uidnext &&
            q->highestmodseq == f->highestmodseq && f->last_sync && s->quiet_when > f->last_sync)
            return s->quiet_when;
    }
    return f->last_sync;
}

/* ------------------------------------------------------------------ */
/* the uploads journal */

int state_append_put(struct state *s, int64_t folder_id, const struct state_append *a, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_APPEND_PUT, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    bind_text(st, 2, a->uniq);
    sqlite3_bind_int64(st, 3, a->uidvalidity);
    sqlite3_bind_int64(st, 4, a->uidnext);
    sqlite3_bind_int64(st, 5, (int64_t)a->size);
    bind_text(st, 6, a->message_id);
    return record(s, st, "journalling an upload", err);
}

int state_append_list(struct state *s, int64_t folder_id, struct state_append **out, size_t *n,
                      struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_APPEND_LIST, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    struct state_append *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = grow_rows(v, len, &cap, sizeof *v, 16);
        struct state_append *a = &v[len++];
        a->uniq = column_strdup(st, 0);
        a->uidvalidity = (uint32_t)sqlite3_column_int64(st, 1);
        a->uidnext = (uint32_t)sqlite3_column_int64(st, 2);
        a->size = (uint64_t)sqlite3_column_int64(st, 3);
        a->message_id = column_strdup(st, 4);
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        state_appends_free(v, len);
        return db_error(s, err, "listing the uploads journal");
    }
    *out = v;
    *n = len;
    return MS_OK;
}

int state_append_forget(struct state *s, int64_t folder_id, const char *uniq, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_APPEND_DELETE, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    bind_text(st, 2, uniq);
    return record(s, st, "clearing the uploads journal", err);
}

void state_appends_free(struct state_append *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].uniq);
        free(a[i].message_id);
    }
    free(a);
}

/* ------------------------------------------------------------------ */
/* the flag-store journal */

int state_store_put(struct state *s, int64_t folder_id, const struct state_store *x, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_STORE_PUT, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, x->uid);
    sqlite3_bind_int64(st, 3, x->uidvalidity);
    sqlite3_bind_int64(st, 4, x->flags);
    sqlite3_bind_int64(st, 5, x->added);
    sqlite3_bind_int64(st, 6, x->removed);
    return record(s, st, "journalling a flag change", err);
}

int state_store_list(struct state *s, int64_t folder_id, struct state_store **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_STORE_LIST, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    struct state_store *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = grow_rows(v, len, &cap, sizeof *v, 16);
        v[len++] = (struct state_store){.uid = (uint32_t)sqlite3_column_int64(st, 0),
                                        .uidvalidity = (uint32_t)sqlite3_column_int64(st, 1),
                                        .flags = (unsigned)sqlite3_column_int64(st, 2),
                                        .added = (unsigned)sqlite3_column_int64(st, 3),
                                        .removed = (unsigned)sqlite3_column_int64(st, 4)};
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return db_error(s, err, "listing the flag-store journal");
    }
    *out = v;
    *n = len;
    return MS_OK;
}

int state_store_forget(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_STORE_DELETE, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    return record(s, st, "clearing the flag-store journal", err);
}

/* ------------------------------------------------------------------ */
/* POP3 */

int state_pop3_put(struct state *s, int64_t folder_id, const struct state_pop3 *m, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_POP3_PUT, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    bind_text(st, 2, m->uidl);
    bind_text(st, 3, m->uniq);
    sqlite3_bind_int64(st, 4, m->first_seen);
    sqlite3_bind_int(st, 5, m->pending ? 1 : 0);
    return record(s, st, "recording a POP3 message", err);
}

int state_pop3_list(struct state *s, int64_t folder_id, struct state_pop3 **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_POP3_LIST, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    struct state_pop3 *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = grow_rows(v, len, &cap, sizeof *v, 64);
        struct state_pop3 *m = &v[len++];
        m->uidl = column_strdup(st, 0);
        m->uniq = column_strdup(st, 1);
        m->first_seen = sqlite3_column_int64(st, 2);
        m->pending = sqlite3_column_int64(st, 3) != 0;
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        state_pop3_free(v, len);
        return db_error(s, err, "listing POP3 messages");
    }
    *out = v;
    *n = len;
    return MS_OK;
}

static int pop3_by_uidl(struct state *s, enum stmt_id id, int64_t folder_id, const char *uidl, const char *what,
                        struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, id, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    bind_text(st, 2, uidl);
    return record(s, st, what, err);
}

int state_pop3_confirm(struct state *s, int64_t folder_id, const char *uidl, struct ms_error *err)
{
    return pop3_by_uidl(s, ST_POP3_CONFIRM, folder_id, uidl, "confirming a POP3 message", err);
}

int state_pop3_delete(struct state *s, int64_t folder_id, const char *uidl, struct ms_error *err)
{
    return pop3_by_uidl(s, ST_POP3_DELETE, folder_id, uidl, "forgetting a POP3 message", err);
}

void state_pop3_free(struct state_pop3 *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].uidl);
        free(m[i].uniq);
    }
    free(m);
}

/* ------------------------------------------------------------------ */
/* the trash journal */

int state_trash_put(struct state *s, int64_t folder_id, const struct state_trash *t, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_TRASH_PUT, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, t->uid);
    bind_text(st, 3, t->trash);
    sqlite3_bind_int64(st, 4, t->trash_uidvalidity);
    sqlite3_bind_int64(st, 5, t->trash_uidnext);
    sqlite3_bind_int64(st, 6, t->copy_uid);
    sqlite3_bind_int64(st, 7, (int64_t)t->size);
    bind_text(st, 8, t->message_id);
    return record(s, st, "journalling a move to the trash", err);
}

int state_trash_list(struct state *s, int64_t folder_id, struct state_trash **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_TRASH_LIST, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    struct state_trash *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = grow_rows(v, len, &cap, sizeof *v, 16);
        struct state_trash *t = &v[len++];
        t->uid = (uint32_t)sqlite3_column_int64(st, 0);
        t->trash = column_strdup(st, 1);
        t->trash_uidvalidity = (uint32_t)sqlite3_column_int64(st, 2);
        t->trash_uidnext = (uint32_t)sqlite3_column_int64(st, 3);
        t->copy_uid = (uint32_t)sqlite3_column_int64(st, 4);
        t->size = (uint64_t)sqlite3_column_int64(st, 5);
        t->message_id = column_strdup(st, 6);
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        state_trashes_free(v, len);
        return db_error(s, err, "listing the trash journal");
    }
    *out = v;
    *n = len;
    return MS_OK;
}

int state_trash_set_copy(struct state *s, int64_t folder_id, uint32_t uid, uint32_t copy_uid, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_TRASH_SET_COPY, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    sqlite3_bind_int64(st, 3, copy_uid);
    return record(s, st, "recording a copy in the trash", err);
}

int state_trash_forget(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_TRASH_DELETE, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    return record(s, st, "clearing the trash journal", err);
}

int state_trash_mark_move(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_TRASH_MARK_MOVE, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    return record(s, st, "journalling a local move", err);
}

int state_trash_is_move(struct state *s, int64_t folder_id, uint32_t uid, bool *yes, struct ms_error *err)
{
    *yes = false;
    sqlite3_stmt *st = stmt(s, ST_TRASH_IS_MOVE, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    int rc = sqlite3_step(st);
    *yes = rc == SQLITE_ROW;
    stmt_done(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? MS_OK : db_error(s, err, "reading the trash journal");
}

void state_trashes_free(struct state_trash *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].trash);
        free(t[i].message_id);
    }
    free(t);
}

/* ------------------------------------------------------------------ */
/* tombstones                                                          */

static const char *tomb_reason_name(enum state_tomb_reason r)
{
    return r == STATE_TOMB_KEPT_BY_BACKUP ? "kept_by_backup" : "retired";
}

/* An unknown reason (a newer mailsync's) reads as retired: it protects
 * the file from uploads and never has it removed. */
static enum state_tomb_reason tomb_reason_of(const char *name)
{
    return name && strcmp(name, "kept_by_backup") == 0 ? STATE_TOMB_KEPT_BY_BACKUP : STATE_TOMB_RETIRED;
}

/* One row of TOMB_COLUMNS from column `at` on. */
static void tomb_read(sqlite3_stmt *st, int at, struct state_tombstone *t)
{
    t->folder_id = sqlite3_column_int64(st, at);
    t->uniq = column_strdup(st, at + 1);
    t->message_id = column_strdup(st, at + 2);
    t->size = (uint64_t)sqlite3_column_int64(st, at + 3);
    t->reason = tomb_reason_of((const char *)sqlite3_column_text(st, at + 4));
    t->since = sqlite3_column_int64(st, at + 5);
}

int state_tombstone_put(struct state *s, int64_t folder_id, const struct state_tombstone *t, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_TOMB_PUT, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    bind_text(st, 2, t->uniq);
    bind_text(st, 3, t->message_id);
    sqlite3_bind_int64(st, 4, (int64_t)t->size);
    bind_text(st, 5, tomb_reason_name(t->reason));
    sqlite3_bind_int64(st, 6, t->since);
    return record(s, st, "recording a tombstone", err);
}

int state_tombstone_list(struct state *s, int64_t folder_id, bool kept_only, struct state_tombstone **out,
                         size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, kept_only ? ST_TOMB_LIST_KEPT : ST_TOMB_LIST, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    struct state_tombstone *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = grow_rows(v, len, &cap, sizeof *v, 16);
        tomb_read(st, 0, &v[len++]);
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        state_tombstones_free(v, len);
        return db_error(s, err, "listing tombstones");
    }
    *out = v;
    *n = len;
    return MS_OK;
}

/* The first row a lookup statement returns (*found), into *out. */
static int tomb_first(struct state *s, sqlite3_stmt *st, struct state_tombstone *out, bool *found,
                      struct ms_error *err)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        tomb_read(st, 0, out);
        *found = true;
    }
    stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(s, err, "looking a tombstone up");
    return MS_OK;
}

int state_tombstone_find(struct state *s, const char *uniq, const char *message_id, uint64_t size,
                         struct state_tombstone *out, bool *found, struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    *found = false;
    sqlite3_stmt *st = uniq ? stmt(s, ST_TOMB_BY_UNIQ, err) : NULL;
    if (uniq && !st)
        return MS_ELOCAL;
    int rc = MS_OK;
    if (st) {
        bind_text(st, 1, uniq);
        rc = tomb_first(s, st, out, found, err);
    }
    if (rc || *found || !message_id)
        return rc;
    if (!(st = stmt(s, ST_TOMB_BY_ID, err)))
        return MS_ELOCAL;
    bind_text(st, 1, message_id);
    sqlite3_bind_int64(st, 2, (int64_t)size);
    return tomb_first(s, st, out, found, err);
}

int state_tombstone_forget(struct state *s, int64_t folder_id, const char *uniq, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_TOMB_DELETE, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    bind_text(st, 2, uniq);
    return record(s, st, "forgetting a tombstone", err);
}

int state_tombstone_counts(struct state *s, int64_t folder_id, int64_t *retired, int64_t *kept,
                           struct ms_error *err)
{
    *retired = *kept = 0;
    sqlite3_stmt *st = stmt(s, ST_TOMB_COUNT, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t c = sqlite3_column_int64(st, 1);
        if (tomb_reason_of((const char *)sqlite3_column_text(st, 0)) == STATE_TOMB_KEPT_BY_BACKUP)
            *kept += c;
        else
            *retired += c;
    }
    stmt_done(st);
    return rc == SQLITE_DONE ? MS_OK : db_error(s, err, "counting tombstones");
}

/* Every tombstone of db with its folder's name and path, by folder name
 * and uniq; false on a failure (sqlite3_errmsg(db) says why). */
static bool tombstones_read_all(sqlite3 *db, struct state_tombstone_entry **out, size_t *n)
{
    static const char sql[] = "SELECT f.name, f.path, t.folder_id, t.uniq, t.message_id, t.size, t.reason, "
                              "t.since FROM tombstones t JOIN folders f ON f.id = t.folder_id ORDER BY f.name, "
                              "t.uniq";
    sqlite3_stmt *st = NULL;
    struct state_tombstone_entry *v = NULL;
    size_t len = 0, cap = 0;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK ? SQLITE_ROW : SQLITE_ERROR;
    while (rc == SQLITE_ROW && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = grow_rows(v, len, &cap, sizeof *v, 16);
        struct state_tombstone_entry *c = &v[len++];
        c->folder = column_strdup(st, 0);
        c->path = column_strdup(st, 1);
        tomb_read(st, 2, &c->t);
    }
    sqlite3_finalize(st);
    *out = v;
    *n = len;
    return rc == SQLITE_DONE;
}

/* The other DB's tombstones (none if it has no such table). */
static int tombstones_read_other(const char *from_path, struct state_tombstone_entry **out, size_t *n,
                                 struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    /* Read-write, never created: a WAL moved aside with the file is read
     * and checkpointed, and the side files go at the close, as after any
     * open of ours (read-only would leave a -shm and the -wal behind). A
     * dry run reads its own closed DB this way, as its run opened it. */
    if (sqlite3_open_v2(from_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        int rc = ms_error_set(err, MS_ELOCAL, "cannot open %s: %s", from_path,
                              db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tombstones'", -1, &st,
                           NULL) != SQLITE_OK) {
        int rc = ms_error_set(err, MS_ELOCAL, "cannot read %s: %s", from_path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return rc;
    }
    bool have = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    st = NULL;
    if (!have) {
        sqlite3_close(db);
        return MS_OK;
    }
    int ret = tombstones_read_all(db, out, n) ? MS_OK
              : ms_error_set(err, MS_ELOCAL, "cannot read the tombstones of %s: %s", from_path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return ret;
}

int state_tombstones_take(struct state *s, const char *from_path, size_t *n, struct ms_error *err)
{
    struct state_tombstone_entry *v = NULL;
    size_t nv = 0;
    *n = 0;
    struct ms_error e = {0};
    int rc = MS_OK;
    if (tombstones_read_other(from_path, &v, &nv, &e) == MS_OK)
        rc = state_tombstone_import(s, v, nv, n, err);
    else /* not this DB's failure: it starts without them, said so (all or none) */
        log_msg(LOG_WARN, "%s; what it recorded as retired or kept by backup mode may be uploaded again", e.msg);
    state_tombstone_entries_free(v, nv);
    return rc;
}

int state_tombstone_import(struct state *s, const struct state_tombstone_entry *v, size_t nv, size_t *n,
                           struct ms_error *err)
{
    *n = 0;
    if (nv == 0)
        return MS_OK;
    int rc = state_begin(s, err);
    struct state_folder f = {0};
    for (size_t i = 0; i < nv && rc == MS_OK; i++) {
        if (!v[i].folder || !v[i].t.uniq)
            continue;
        if (!f.name || strcmp(f.name, v[i].folder) != 0) {
            state_folder_free(&f);
            rc = state_folder_get(s, v[i].folder, &f, err);
            if (rc == MS_OK && !f.id) {
                f.name = xstrdup(v[i].folder);
                f.path = xstrdup_or_null(v[i].path);
                rc = state_folder_save(s, &f, err);
            }
        }
        if (rc == MS_OK)
            rc = state_tombstone_put(s, f.id, &v[i].t, err);
        if (rc == MS_OK)
            ++*n;
    }
    state_folder_free(&f);
    if (rc == MS_OK)
        rc = state_commit(s, err);
    else
        state_rollback(s);
    if (rc)
        *n = 0;
    return rc;
}

int state_tombstone_list_all(struct state *s, struct state_tombstone_entry **out, size_t *n, struct ms_error *err)
{
    return tombstones_read_all(s->db, out, n) ? MS_OK : db_error(s, err, "listing tombstones");
}

void state_tombstone_entries_free(struct state_tombstone_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].folder);
        free(v[i].path);
        state_tombstone_free(&v[i].t);
    }
    free(v);
}

void state_tombstone_free(struct state_tombstone *t)
{
    if (!t)
        return;
    free(t->uniq);
    free(t->message_id);
    memset(t, 0, sizeof *t);
}

void state_tombstones_free(struct state_tombstone *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        state_tombstone_free(&t[i]);
    free(t);
}

/* ------------------------------------------------------------------ */
/* the server-move journal */

int state_server_move_put(struct state *s, const struct state_server_move *m, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_SMOVE_PUT, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, m->folder_id);
    sqlite3_bind_int64(st, 2, m->uid);
    sqlite3_bind_int64(st, 3, m->from_folder_id);
    sqlite3_bind_int64(st, 4, m->from_uid);
    return record(s, st, "journalling a server move", err);
}

int state_server_move_list(struct state *s, struct state_server_move **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, ST_SMOVE_LIST, err);
    if (!st)
        return MS_ELOCAL;
    struct state_server_move *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = grow_rows(v, len, &cap, sizeof *v, 16);
        v[len++] = (struct state_server_move){.folder_id = sqlite3_column_int64(st, 0),
                                              .uid = (uint32_t)sqlite3_column_int64(st, 1),
                                              .from_folder_id = sqlite3_column_int64(st, 2),
                                              .from_uid = (uint32_t)sqlite3_column_int64(st, 3)};
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return db_error(s, err, "listing the server-move journal");
    }
    *out = v ? v : xcalloc(1, sizeof *v);
    *n = len;
    return MS_OK;
}

int state_server_move_forget(struct state *s, int64_t folder_id, uint32_t uid, struct ms_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_SMOVE_DELETE, err);
    if (!st)
        return MS_ELOCAL;
    sqlite3_bind_int64(st, 1, folder_id);
    sqlite3_bind_int64(st, 2, uid);
    return record(s, st, "clearing the server-move journal", err);
}
