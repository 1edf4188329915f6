/* SPDX-License-Identifier: MIT */
/*
 * engine_int.h: what the engine's files share (engine.c runs an account,
 * setup.c locks it and opens its store and session, folders.c selects its
 * folders, pull.c and push.c sync one folder each way, deliver.c brings
 * messages in, rematch.c pairs by identity, watch.c repeats runs,
 * inspect.c serves check/folders/status). Not for use outside sync/.
 */
#ifndef MAILSYNC_ENGINE_INT_H
#define MAILSYNC_ENGINE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "db/state.h"
#include "sync/local/dirsync.h"
#include "sync/engine/engine.h"
#include "sync/remote/remote.h"
#include "sync/local/maildir.h"
#include "sync/names.h"
#include "sync/plan/plan.h"
#include "sync/plan/pushdiff.h"

#define GENERATION_ID_LEN 32 /* hex digits of a state DB's identity (generation.c) */

/* One account run. */
struct run {
    const struct account *acct;
    const struct engine_options *opt;
    struct engine_result *res;
    struct state *st;
    struct remote *remote; /* the server session (remote.h) */
    int rootfd; /* also flocked: part of the account's lock (engine_take_lock) */
    int lockfd;
    bool authed; /* the server accepted the login: the run may write to disk */
    /* Folders found unchanged: their last_sync is recorded with the run's
     * outcome (a run that changed nothing writes no transaction at all). */
    struct state_quiet_folder *touched;
    size_t ntouched;
    bool prev_error; /* the state recorded an error from the last run */
    /* Folders the state knows (sorted by name) and, where asked for with
     * the LIST, their STATUS at the start of the run (uidvalidity 0: none). */
    struct state_folder *known;
    struct remote_status *known_status;
    size_t nknown;
    /* Directories whose renames and unlinks must be durable before the
     * batch of records describing them is committed. */
    struct dirsync *dirs;
    /* connections > 1: the extra sessions that download alongside remote
     * (each connected by the first folder that needs it; NULL before, or
     * after it failed: then it is not tried again), the password they log
     * in with (kept for the run, wiped at its end), and the lock for what
     * their threads share: the state DB and the progress callbacks. */
    size_t want_extra; /* set before connecting: how many */
    struct remote **extra;
    bool *extra_failed;
    size_t nextra;
    char *password;
    pthread_mutex_t lock;
    /* From the LIST: the server's hierarchy delimiter ('\0': flat or not
     * known) and the local path of every server folder (sorted), so a push
     * can tell folders that exist only locally. */
    char delim;
    char **server_paths;
    size_t nserver_paths;
    /* The push of the current folder found its UIDVALIDITY changed: its
     * local changes go after the pull has matched the messages again. */
    bool push_after_pull;
    /* Account-wide planning: while set (the first pass over the folders),
     * no deletion is applied on either side, so that every folder's
     * listing is known before any message is removed (a message that
     * moved between folders is seen in both). A folder whose plan held
     * deletions back sets held_push / held_pull; the second pass
     * (engine_run) applies them. */
    bool defer_deletions;
    bool held_push;
    bool held_pull;
    /* The second pass: the folder's progress was reported by the first. */
    bool second_pass;
    uint32_t windows_turned; /* next_window() calls of the run (opt->stop_at_window) */
    /* This run moved messages into the account's trash folder: its STATUS
     * taken with the LIST is out of date (see folders_is_trash). */
    bool trash_changed;
    /* The folder local deletions move to: the account's `trash`, or with
     * `trash = auto` the raw name of the folder the server marks \Trash
     * (SPECIAL-USE), found by folders_list_selected; NULL for none.
     * trash_missing: `trash = auto` and the server marks none, so local
     * deletions wait (push_deletions) rather than be expunged. */
    char *trash;
    bool trash_missing;
    /* moves_local.c: the local moves between folders the run pairs
     * (learnt before the first pass; only the paired rows are kept). */
    struct lmove *lmoves;
    size_t nlmoves;
    /* views.c: the learning pass's push listings, kept for the folders'
     * pushes (views_push_keep, views_push_take). */
    struct kept_push *kept;
    size_t nkept;
    /* generation.c: what the run's first change records, in the marker
     * beside the Maildir and in the DB. */
    uint64_t gen_next;
    char gen_id[GENERATION_ID_LEN + 1];
    bool gen_bumped; /* the marker was written open: confirm it at the end */
    /* moves_server.c: the first pass's vanished rows whose files are
     * still there, candidates for a move another client made (or NULL). */
    struct moves_server *smoves;
    /* tombstones.c: the run recorded or forgot a tombstone (their copy
     * beside the Maildir is rewritten at the end). */
    bool tombs_changed;
    /* gmail_links.c, --dry-run: the X-GM-MSGIDs (with their sizes) the
     * run would download, by folder (display name), so that a later
     * folder plans a link to them, as the run would make. */
    struct gmail_planned *gm_planned;
    size_t ngm_planned;
};

/* The run was asked to stop early (engine_options.stop). */
static inline bool run_stopped(const struct run *r)
{
    return r->opt->stop && *r->opt->stop;
}
/* Why a download ended early when run_stopped() (IMAP and POP3 alike). */
#define STOPPED_DOWNLOAD "stopped by a signal during the download; the rest comes at the next run"

/* A server folder the run syncs: raw (server) name, display name, local
 * path below the Maildir root. */
struct selected {
    char *raw;
    char *name;
    char *path;
};

struct gmail_planned {
    char *emailid;
    uint64_t size;
    char *folder;
};
void gmail_links_free(struct run *r);

/* folders.c: whether sel is the run's trash folder (r->trash, by raw or
 * display name, as push_deletions compares). */
bool folders_is_trash(const struct run *r, const struct selected *sel);

/* A local file the state does not know and identity matching could not
 * pair (no Message-ID, or one the server does not show): a download of
 * the same size is compared with it by content before it is delivered, so
 * after a lost DB a message without Message-ID is adopted, not doubled. */
struct leftover {
    char *uniq;
    uint64_t size; /* of the file as stored (LF line ends) */
    unsigned char hash[32]; /* message_hash of the file */
    uint64_t hlen;          /* and the bytes it covers */
    bool hashed;
    bool adopted;
    /* The state knew the file before a UIDVALIDITY change, with these
     * flags as last synced: adopted, it keeps its local changes. */
    bool synced;
    unsigned synced_flags;
};

/* result.c: the results */
/* A result row for a folder, added to res (name and path copied). */
struct engine_folder_result *engine_add_folder_result(struct engine_result *res, const char *name, const char *path);
/* The folder failed with err (its code, or MS_EPARTIAL). */
void engine_folder_fail(struct engine_folder_result *f, const struct ms_error *err);

/* setup.c: lock, store, session */
/* The account's lock: flocks on the lock file beside the state DB and on
 * the Maildir root (MS_ELOCKED if another run holds either). create false
 * (before the login): only what exists, nothing is created; true: the lock
 * file and its directory too. See setup.c. */
int engine_take_lock(struct run *r, bool create, struct ms_error *err);
/* The state DB and the Maildir root, created where new, the root locked
 * (after the login; see setup.c). */
int engine_open_store(struct run *r, struct ms_error *err);
/* Log in (r->remote), with the extra sessions prepared when asked for. */
int engine_connect_account(struct run *r, struct ms_error *err);
/* Log in, opening an existing state DB meanwhile; then lock and open the
 * store (nothing is created or written before the login succeeded). */
int engine_open_store_and_connect(struct run *r, struct ms_error *err);
/* Close and free everything the run opened (the session, the store, the
 * locks); *r can be set up again. */
void engine_end_run(struct run *r);

/* folders.c: which folders, in what order */
bool folders_wanted(const struct account *a, const struct engine_options *opt, const char *name, unsigned roles);
void folders_map(const struct account *a, const struct engine_options *opt, const struct remote_folder *f, size_t n,
                 struct engine_folder_map *out);
/* The patterns (the account's `folders`, --folder) that match no folder of
 * the listing map (n entries) nor, with r->rootfd open, a local folder:
 * warned about, --folder ones a usage error with folder_patterns_strict
 * (returned, message in err) and noted in r->res if there is one. */
int folders_check_patterns(struct run *r, const struct engine_folder_map *map, size_t n, struct ms_error *err);
/* For the connect's hint (setup.c): the names the run's listing will ask
 * the status of, from the state DB as it is now (r->st; *known: its rows,
 * free with state_folders_free; *names: free(), pointing into *known).
 * False without a DB to read. */
bool folders_listing_preview(const struct run *r, struct state_folder **known, size_t *nknown, const char ***names,
                             size_t *n);
/* The state's row of a folder as read for the run's LIST, or NULL. */
const struct state_folder *folders_known(const struct run *r, const char *raw);
/* The STATUS of a folder asked for with the run's LIST, or NULL. */
const struct remote_status *folders_known_status(const struct run *r, const char *raw);
/* The server's folders the run syncs (*out, folders_free_selected), the
 * ones that cannot be mapped reported as failed in r->res; fills
 * r->known, r->known_status, r->server_paths and r->delim. */
int folders_list_selected(struct run *r, struct selected **out, size_t *nout, struct ms_error *err);
void folders_free_selected(struct selected *s, size_t n);
/* Warn about folders the state knows that the server no longer lists. */
void folders_report_vanished(struct run *r, const struct selected *sel, size_t nsel);
/* A pull's visiting order of the nsel folders (order, indexes into sel;
 * moves_server_order applied), the incremental opens queued ahead where
 * the side can; returns how many were queued. See folders.c. */
size_t folders_examine_ahead(struct run *r, const struct selected *sel, size_t nsel, size_t *order);

/* Create on the server the local folders that no server folder maps to
 * and the state never knew (a folder the server dropped is not brought
 * back), that the folder patterns select, and add them to *sel with a
 * state row that lets the push upload their messages at once (the new
 * folder is empty). Only an unusable session is an error. */
int folders_create_local(struct run *r, struct selected **sel, size_t *nsel, struct ms_error *err);
/* Every local folder below the account's Maildir root, as relative paths
 * (maildir_find_folders for the account's layout; free each and the
 * array). */
void folders_find_local(struct run *r, char ***paths, size_t *n);

/* pull.c: one folder, server -> local */
/* Pull the selected folder into the Maildir (reports its progress unless
 * in the second pass); fres gets the counts, and the error if it fails. */
int pull_folder(struct run *r, const struct selected *sel, struct engine_folder_result *fres, struct ms_error *err);

/* folders.c (with the folder list): could the folder's record let a
 * STATUS alone show it unchanged? */
bool pull_may_be_unchanged(const struct state_folder *f);

/* views.c: the three views as the planner takes them */
/* The planner's input from the state rows, the scan and the server's
 * listing (borrowed strings; views_plan_input_free frees the arrays only). */
void views_plan_input(struct plan_input *in, const struct account *a, const struct engine_options *opt,
                      const struct state_msg *s, size_t ns, const struct local_msg *l, size_t nl,
                      const struct remote_msg *rm, size_t nr);
void views_plan_input_free(struct plan_input *in);
/* The scan entry with this unique name (l sorted by uniq), or NULL. */
struct local_msg *views_local_by_uniq(struct local_msg *l, size_t n, const char *uniq);

/* What a push needs of one folder (views_push_scan): the state rows and
 * local files that can lead to an action or that the caller names, not
 * the folder's unchanged messages (a row whose file is listed with the
 * row's flags is neither here nor its file), so that memory follows the
 * changes rather than the folder (sync/plan/pushdiff.h). */
struct views_push {
    struct state_msg *rows;   /* by uid: rows whose file is gone or has other flags, or wanted */
    size_t nrows;
    struct local_msg *local;  /* by uniq: files no row names, of those rows, or wanted */
    size_t nlocal;
    size_t nall;              /* every row of the folder: the guard's total */
    struct pushdiff *diff;    /* NULL: rows and local are the whole folder (the exact fallback) */
};
/* What the caller will look up in a views_push besides the changes: the
 * rows of these UIDs and the rows and files of these unique names. */
struct views_push_want {
    const uint32_t *uids;
    size_t nuids;
    const char *const *uniqs;
    size_t nuniqs;
};
/* Scan mf (maildir_scan_names_filtered, so maildir_scan_left_out(mf)
 * holds what it left out) against folder_id's rows into *out. Falls back
 * to the whole folder where names cannot be told apart by hash. */
int views_push_scan(struct state *st, int64_t folder_id, struct maildir_folder *mf, const struct views_push_want *want,
                    struct views_push *out, struct ms_error *err);
/* The rows of out again after the state changed (uploads or moves
 * recorded): the rows out had, rows added since its scan, and rows of its
 * files' names. */
int views_push_rows_again(struct state *st, int64_t folder_id, struct views_push *v, struct ms_error *err);
/* Frees what v holds (not the struct). */
void views_push_free(struct views_push *v);
/* A folder's listing is made twice a run where it could be made once: the
 * learning pass (moves_local.c) and the push each scan it. The learning
 * pass hands its views_push to r (taking *v, which is emptied) with the
 * change stamp taken before its scan; the push takes it back instead of
 * scanning when the stamp had settled, is unchanged, and the folder's
 * rows were not written since (state_rows_gen). Otherwise it is freed
 * and the push scans. Only a scan that left no file out is kept
 * (maildir_scan_left_out() is the scan's, not the views_push's). */
void views_push_keep(struct run *r, int64_t folder_id, const struct maildir_stamp *stamp, struct views_push *v);
bool views_push_take(struct run *r, int64_t folder_id, const struct maildir_stamp *now, struct views_push *out);
/* Frees every kept one (the end of the run). */
void views_push_kept_free(struct run *r);

/* push.c */
/* Push the folder's local changes (never for a folder no pull completed). */
/* *stamp: when the push found the folder's files in full agreement with
 * the state (all pushed) and the folder had been quiet for a while, the
 * change stamp taken before its scan (settled true); the caller records
 * it once the folder's run is over if the folder still has that stamp.
 * A later push that finds the recorded stamp skips the scan. */
int push_folder(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                struct maildir_stamp *stamp, struct ms_error *err);
/* Record (or find gone) uploads a killed run journalled, on the selected
 * folder: before a pull downloads them as strangers, or a push sends them
 * again. */
int push_settle_uploads(struct run *r, const struct selected *sel, int64_t folder_id, uint32_t uidvalidity,
                   struct ms_error *err);
/* The change stamp a push recorded for the folder (false if none). */
bool push_stamp_recorded(struct run *r, int64_t folder_id, const struct maildir_stamp *now);
/* Record it, in the run's batch. */
int push_stamp_record(struct run *r, int64_t folder_id, const struct maildir_stamp *s, struct ms_error *err);

/* popfetch.c */
/* The pull of a side without REMOTE_UIDS (POP3) over r->remote, logged
 * in: new messages, named by the side's message id (POP3's UIDL), into
 * INBOX through the delivery journal; then removal per leave_on_server /
 * server_retention_days of what is durably stored, committed (POP3's
 * QUIT). Fills r->res's folder result. */
int popfetch_pull(struct run *r, struct ms_error *err);

/* moves_local.c: a message the user moved between local folders (its
 * file gone from one, the same message new in another: kept name, or a
 * new name with the same Message-ID and size) is moved on the server
 * (UID MOVE, or the journalled COPY + UID EXPUNGE), never uploaded again
 * and deleted. See moves_local.c. */
enum lmove_state {
    LMOVE_PENDING, /* paired, not moved yet */
    LMOVE_DONE,    /* moved and recorded: the source row is gone */
    LMOVE_DROPPED, /* given up: upload and deletion as for any change */
    LMOVE_UNSURE,  /* sent, but where it went is not known yet: neither
                      side touches the message in this run */
    LMOVE_HELD,    /* a placeholder that stands for it could not be moved
                      (or paired): the message stays on the server (its
                      row stands in), the placeholder is not uploaded */
};
struct lmove {
    const struct selected *src, *dst; /* the folders (in the run's sel) */
    int64_t src_id;  /* the source folder's state id */
    uint32_t uid;    /* the message's UID in the source folder */
    char *uniq;      /* its row's local name there (the file is gone) */
    unsigned flags;  /* its row's flags */
    char *keywords;  /* its row's keywords */
    uint64_t size;   /* its row's RFC822.SIZE */
    char *message_id;
    char *emailid;   /* its row's server id (EMAILID / X-GM-MSGID), kept by a MOVE */
    char *dst_uniq;  /* the local file in dst that is the same message */
    bool twin;       /* no Message-ID, and another gone row of its size has none: never paired */
    int placeholder; /* its row's placeholder mark (placeholders.c), kept in dst */
    bool dst_placeholder; /* the file in dst is a placeholder (ours or mbsync's): marked so there */
    enum lmove_state state;
};
/* placeholders_gone.c: of the gone rows (moves_local.c's learning) those
 * marked as placeholders that nothing paired, each whose placeholder is in
 * a folder of the Maildir root the run does not sync (by Message-ID and
 * the placeholder's marks) is held (LMOVE_HELD, dst NULL: its message
 * stays on the server), with a warning. Returns how many. Best effort. */
size_t placeholders_hold_elsewhere(struct run *r, const struct selected *sel, size_t nsel, struct lmove *gone,
                                   size_t ngone);
struct push_ctx;
/* How many messages of the folder this run moved out (recorded): the
 * mass-deletion guard counts them among the messages it knew. */
size_t moves_local_moved_out(const struct run *r, int64_t folder_id);
/* Before the first pass of a push or sync: list every selected folder's
 * rows whose file is gone (a folder unchanged since its last push has
 * none) and pair them with the new files of the other folders
 * (r->lmoves). Best effort: a folder that cannot be read pairs nothing. */
void moves_local_learn(struct run *r, const struct selected *sel, size_t nsel);
/* After moves_local_learn: each journalled move (a killed run's) whose
 * file is gone from both folders, or went on to a third, is settled
 * (moves_local.c; r->lmoves may be re-pointed), so its copy is deleted or
 * moved on as the user asked instead of coming back as new mail. MS_OK,
 * or what ends the run (the session or the store unusable); a move it
 * cannot settle now is left for later. */
int moves_local_settle_gone(struct run *r, const struct selected *sel, size_t nsel, struct ms_error *err);
void moves_local_free(struct run *r);
/* The source side, before the folder's push is planned: the folder's
 * messages that moved out and are not moved on the server yet stand in
 * *local (with their rows' flags), so the plan neither removes them nor
 * counts them for the mass-deletion guard. Returns how many. */
size_t moves_local_stand_in(struct run *r, int64_t folder_id, struct local_msg **local, size_t *nlocal);
/* The destination side, c's folder selected for writing: move the
 * messages whose files came into it from their folders on the server and
 * record them (the rows of both folders in one transaction); c's folder
 * is selected again. *moved: how many were recorded. Only an unusable
 * session or store is an error; a move that fails is dropped (its file is
 * uploaded as before). */
int moves_local_into(struct push_ctx *c, size_t *moved, struct ms_error *err);
/* Drop from p the uploads of files the run moves (or tries to) on the
 * server instead; a dry run reports those moves (ENGINE_PLAN_MOVE_ON_SERVER)
 * and counts them in c->fres->moved_on_server. Returns how many it dropped. */
size_t moves_local_take_appends(struct push_ctx *c, struct push_plan *p);

/* generation.c */
/* After the state DB and the Maildir root are open: a DB older than the
 * marker in the Maildir root (a restored backup), or new or empty while the
 * marker says the Maildir was synced, is said so in a warning and handled
 * as lost (moved aside, an empty one opened; a dry run uses an empty DB in
 * memory) so the folders are re-matched by identity. Then arms the bump of
 * the generation at the run's first change. MS_ELOCAL if the DB cannot
 * be moved or reopened. */
int generation_check(struct run *r, struct ms_error *err);
/* At the end of a run whose first change bumped the generation: confirm
 * the marker once the DB holds that generation (see generation.c). */
void generation_confirm(struct run *r);

/* retention.c */
/* With server_retention_days: the time before which messages live only
 * locally (0 without). */
time_t retention_cutoff(const struct account *a);
/* After the folder's pull: remove from the server what is older than the
 * cutoff and safely stored locally, at most once a day per folder. */
int retention_retire_old(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                         struct ms_error *err);

/* tombstones.c: what a policy took off the server stays off it */
/* In the batch applying a pull's PLAN_BACKUP_KEEP of uid: its row becomes
 * a kept_by_backup tombstone. */
int tombstones_keep_backup(struct run *r, int64_t folder_id, uint32_t uid, struct ms_error *err);
/* In retention's transaction that forgets row: a retired tombstone. */
int tombstones_retire(struct run *r, int64_t folder_id, const struct state_msg *row, struct ms_error *err);
/* After plan_push: drop the plan's uploads of tombstoned files (by uniq,
 * this folder's or another's: then recorded here too); forget the
 * folder's tombstones whose uniq the state knows again (state, by uid)
 * and, unless deletions are deferred (then held_push), those whose file
 * is gone from local (sorted by uniq). */
int tombstones_filter_push(struct run *r, const struct selected *sel, int64_t folder_id,
                           const struct state_msg *state, size_t nstate, const struct local_msg *local,
                           size_t nlocal, struct push_plan *p, struct ms_error *err);
/* Before an upload of uniq: *blocked when a tombstone of any folder has
 * its Message-ID and size (the file was renamed or copied), recorded in
 * folder_id too. */
int tombstones_block_upload(struct run *r, const struct selected *sel, int64_t folder_id, const char *uniq,
                            const char *message_id, uint64_t size, bool *blocked, struct ms_error *err);
/* mode = mirror, in the pull's second pass: remove the folder's
 * kept_by_backup files and forget them, within the mass-deletion guard
 * (MS_EPARTIAL, the folder untouched, without --force). A dry run (which
 * has no second pass: called after the folder's pull) reports them. */
int tombstones_discard_kept(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                            struct ms_error *err);

/* The copy of the account's tombstones in the Maildir root,
 * .mailsync-tombstones-ACCOUNT: rewritten at the end of a run that
 * changed any (tombs_changed); read by generation_check into a DB that
 * replaced a lost or stale one, so no policy's message is uploaded. */
void tombstones_save_copy(struct run *r);
int tombstones_load_copy(struct run *r, struct ms_error *err);

/* deliver.c */
/* Whether lo, whose file is l (NULL: none), is not adopted yet and holds
 * a download whose content hash (message_hash, which leaves out CRs before
 * LF and the fields other tools add) is hash over len bytes; the file is
 * hashed on the first comparison only. */
bool deliver_leftover_is(struct maildir_folder *mf, struct leftover *lo, struct local_msg *l, uint64_t len,
                         const unsigned char hash[32]);
/* placeholders.c: the head of a message file, enough to tell a
 * placeholder (ours or mbsync's) by its header: up to PLACEHOLDER_WINDOW
 * bytes into buf (that big); how many, or -1 if the file cannot be opened. */
#define PLACEHOLDER_WINDOW (64 * 1024)
ssize_t placeholder_head(struct maildir_folder *mf, struct local_msg *m, char *buf);
/* The same, or -1 when small_only and the file is over PLACEHOLDER_WINDOW
 * bytes (too big to be a placeholder) or not a regular file. */
ssize_t placeholder_head_of(struct maildir_folder *mf, struct local_msg *m, char *buf, bool small_only);

/* placeholders.c: a placeholder (ours or mbsync's) the state does not
 * know, beside the full message. After a lost state DB or a UIDVALIDITY
 * change rematch.c never takes a placeholder for its message, so the
 * message is downloaded in full; the placeholder file then goes, by the
 * pull that brought the message (or found it there) and by a push before
 * its uploads. One sweep per folder: placeholder_sweep_file for each
 * candidate file, placeholder_sweep_end once. */
struct placeholder_sweep {
    struct run *r;
    const char *folder; /* its name, for the log */
    struct maildir_folder *mf;
    int64_t folder_id;
    /* filled as needed */
    char *buf;
    size_t head_len; /* of buf: the head placeholder_sweep_file read last */
    struct state_msg *rows;
    size_t nrows;
    struct state_placeholder *marked;
    size_t nmarked;
    bool have_rows;
    size_t removed;
};
enum placeholder_fate {
    PLACEHOLDER_NOT,     /* not a placeholder (or unreadable) */
    PLACEHOLDER_REMOVED, /* removed (a dry run: would be): its message is here in full */
    PLACEHOLDER_KEPT     /* a placeholder, kept: its full message is not on disk here */
};
/* Is m (a local file of s->mf) a placeholder whose message the folder's
 * state has under another file, a whole message (no placeholder mark)
 * that is on disk? Then it is removed. Never removes anything else. */
int placeholder_sweep_file(struct placeholder_sweep *s, struct local_msg *m, enum placeholder_fate *fate,
                           struct ms_error *err);
/* The directory made durable after any removal (r->dirs); frees s's own. */
int placeholder_sweep_end(struct placeholder_sweep *s, struct ms_error *err);

/* placeholders.c: deliver the plan's PLAN_PLACEHOLDER messages as
 * placeholders (their header and a note), through the delivery journal;
 * finish (or NULL) is the folder's row, saved with the last records when
 * all came in. */
int placeholders_deliver(struct run *r, const struct selected *sel, struct maildir_folder *mf, int64_t folder_id,
                         const struct plan *p, struct engine_folder_result *fres, struct state_folder *finish,
                         struct ms_error *err);
/* placeholders.c: replace the folder's placeholders the user flagged
 * locally, or asked for (engine_options.fetch_all, fetch_uniqs), by their
 * full message; clear the mark of those already replaced by a killed run. */
int placeholders_replace(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                         struct ms_error *err);

/* placeholders.c: rows whose placeholder mark was lost (a restored state
 * DB) while their file is still a placeholder of their message (its
 * marks, the row's Message-ID and, in its field, the row's size): each
 * candidate (a row's uid and its file, which the caller owns) that is one
 * is marked again (committed), so that a flag or `fetch FILE` replaces it.
 * Sorts v by uid. *marked: how many. */
struct placeholder_candidate {
    uint32_t uid;
    struct local_msg *file;
};
int placeholders_mark_lost(struct run *r, const char *folder, int64_t folder_id, struct maildir_folder *mf,
                           struct placeholder_candidate *v, size_t n, size_t *marked, struct ms_error *err);

/* Download and deliver the plan's PLAN_FETCH messages, comparing each
 * with the leftovers first. */
/* finish: the folder's row, saved with the last confirmations when every
 * message came in (fres->failed == 0); otherwise left unsaved. */
/* sel and uidvalidity: the folder as selected, for extra connections. */
int deliver_fetch_new(struct run *r, const struct selected *sel, uint32_t uidvalidity, struct maildir_folder *mf,
                      int64_t folder_id, const struct plan *p, struct leftover *left, size_t nleft,
                      struct local_msg *local, size_t nlocal, struct engine_folder_result *fres,
                      struct state_folder *finish, struct ms_error *err);

/* rematch.c */
/* The unique names the state knows, sorted (borrowed strings). */
const char **rematch_uniq_index(const struct state_msg *s, size_t ns, size_t *n);
bool rematch_index_has(const char **idx, size_t n, const char *uniq);
/* Pair unknown local files with unknown server UIDs by identity and record
 * the pairs; what stays unpaired comes back as leftovers. old: the rows
 * from before a UIDVALIDITY change (else none), replaced by the pairs in
 * one transaction; their files are matched by their recorded identity,
 * with their last synced flags (local changes stay pending), and those
 * deleted locally are matched and recorded without a file, for the push
 * to remove. The placeholders (ours or mbsync's) among the files read
 * are never paired: their indexes in local are added to *placeholders
 * (grown with xrealloc; the caller frees it), for placeholder_sweep_file
 * once the messages are in. */
int rematch_folder(struct run *r, struct maildir_folder *mf, int64_t folder_id, struct state_msg **state,
                   size_t *nstate, const struct state_msg *old, size_t nold, struct local_msg *local, size_t nlocal,
                   const struct remote_msg *remote, size_t nremote, size_t *nmatched, struct leftover **left,
                   size_t *nleft, size_t **placeholders, size_t *nplaceholders, struct ms_error *err);
void rematch_free_leftovers(struct leftover *l, size_t n);

/* moves_server.c: a move on the server by another client becomes a rename
 * of the local file (see the top of moves_server.c) */
struct moves_server;
/* Reorder order[from..to) (stable) so that the folders whose STATUS shows
 * lost messages come first. */
void moves_server_order(struct run *r, const struct selected *sel, size_t *order, size_t from, size_t to);
/* In a pull's first pass (or a dry run): note the folder's state rows the
 * listing rm no longer holds and whose files (local) are still there.
 * In a dry run, p's local deletions of those rows are taken out of the
 * plan (moves_server_report_left reports those no move took). */
void moves_server_note_vanished(struct run *r, const struct selected *sel, int64_t folder_id,
                                const struct state_msg *st, size_t ns, struct local_msg *local, size_t nlocal,
                                const struct remote_msg *rm, size_t nr, struct plan *p);
/* In a pull of the folder open on r->remote (mf: its Maildir folder): pair
 * the plan's fetches with the noted rows by identity, move the pairs'
 * files here (recorded, journalled), and drop their fetches from p.
 * *moved grows by the pairs moved (a dry run: reported as moves). */
int moves_server_take(struct run *r, const struct selected *sel, struct maildir_folder *mf, int64_t folder_id,
                      struct plan *p, const struct remote_msg *rm, size_t nr, size_t *moved, struct ms_error *err);
/* gmail_links.c: with REMOTE_LABELS (Gmail), the plan's fetches of
 * messages whose X-GM-MSGID another folder's row has, with its file still
 * there, become hard links to that file (a copy across file systems),
 * landed through the delivery journal and dropped from p; counted in
 * fres->fetched and fres->linked, not in its bytes. A dry run reports
 * them (ENGINE_PLAN_LINK, also for messages an earlier folder of the run
 * would download) and drops them from p the same way. */
int gmail_links_take(struct run *r, const struct selected *sel, struct maildir_folder *mf, int64_t folder_id,
                     struct plan *p, const struct remote_msg *rm, size_t nr, struct engine_folder_result *fres,
                     struct ms_error *err);
/* In the first pass: does a folder that lost messages (moves_server_order)
 * remain to be pulled? Then a folder's downloads wait for the second pass,
 * where messages moved from there are known (two folders that swapped
 * messages). */
bool moves_server_more_to_come(const struct run *r);
/* A dry run's end: the local deletions noted rows stand for, that no move took. */
void moves_server_report_left(struct run *r);
/* Before the first pass: finish or undo the moves a killed run journalled. */
int moves_server_recover(struct run *r, struct ms_error *err);
void moves_server_free(struct run *r);
/* Test hook: called after steps 1 (journalled), 2 (renamed) and 3 (recorded). */
extern void (*moves_server_step_hook)(int step);

#endif
