/* SPDX-License-Identifier: MIT */
/*
 * engine.h: runs one account: lock, connect, and for each selected folder
 * snapshot (server, Maildir, state) -> plan -> execute -> record.
 *
 * The engine owns the order of steps and so crash safety: a message is
 * recorded in the state DB only once its file is durable, and a delivery
 * that was interrupted is finished (or undone) by the next run; see the
 * comment at the top of pull.c.
 *
 * It knows nothing of argv or terminals: progress and results go to the
 * program through struct engine_progress and struct engine_result.
 */
#ifndef MAILSYNC_ENGINE_H
#define MAILSYNC_ENGINE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync/account.h"
#include "sync/error.h"

struct remote;

struct engine_folder_result {
    char *name;      /* UTF-8 display name, '/' separated */
    char *path;      /* local path below the Maildir root, or NULL */
    size_t fetched;  /* messages downloaded (or that would be, --dry-run) */
    uint64_t bytes;  /* bytes downloaded */
    size_t flagged;  /* flag changes applied */
    size_t deleted;  /* local messages removed (server expunged them) */
    size_t skipped;  /* messages over max_size */
    size_t placeholders; /* messages over max_size stored as placeholders (the default) */
    size_t replaced;     /* placeholders replaced by their full message (flagged, or `fetch`) */
    size_t failed;   /* messages the server did not deliver properly (or,
                        pushing, local ones that could not be uploaded) */
    size_t uploaded;       /* push: local messages uploaded */
    uint64_t bytes_up;     /* push: bytes uploaded */
    size_t pushed_flags;   /* push: flag changes stored on the server */
    size_t pushed_deleted; /* push: messages removed on the server */
    size_t retired;        /* server_retention_days: removed from the server, kept locally */
    size_t moved;          /* pull: messages another client moved here on the server whose local
                              file was renamed here (or would be, --dry-run); not in fetched */
    size_t moved_on_server; /* push: local files moved here from another folder that were moved
                               on the server too (or would be, --dry-run); not in uploaded */
    size_t linked;          /* pull, Gmail labels: of fetched, the messages hard-linked (or copied)
                               from another folder's file, not downloaded (or would be, --dry-run) */
    int status;      /* MS_OK, or the MS_* code of what failed */
    char *error;     /* what failed, or NULL */
    bool stopped;    /* a signal ended it early (status MS_EPARTIAL,
                        error says so); not a failure */
};

struct engine_result {
    char *account;
    int status;                 /* MS_* exit code for this account */
    char error[512];            /* account-level failure, or "" */
    struct engine_folder_result *folders;
    size_t nfolders;
    double seconds;
    /* With --folder patterns, once the folders were listed: [i] is true
     * when folder_patterns[i] matched no folder of the account. NULL when
     * there were none or the run ended before the listing. */
    bool *folder_patterns_unmatched;
    size_t nfolder_patterns;    /* entries in folder_patterns_unmatched */
};

void engine_result_free(struct engine_result *r);
/* The sums of r's folder counters in *t (its name, path and error NULL). */
void engine_result_totals(const struct engine_result *r, struct engine_folder_result *t);

/* One step a --dry-run would take (struct engine_progress's planned):
 * plain data the program renders, as text lines or inside --json. */
enum engine_plan_kind {
    ENGINE_PLAN_FETCH,            /* pull: download uid (size, flags) */
    ENGINE_PLAN_SKIP,             /* pull: uid is over max_size (size) */
    ENGINE_PLAN_SET_FLAGS,        /* pull: the local copy of uid gets flags */
    ENGINE_PLAN_DELETE_LOCAL,     /* pull: the server expunged uid; its local copy goes */
    ENGINE_PLAN_REMOVE_ON_SERVER, /* push: uid was deleted locally; it goes on the server */
    ENGINE_PLAN_STORE_FLAGS,      /* push: flags of uid on the server: +flags -flags_removed */
    ENGINE_PLAN_UPLOAD,           /* push: the local file `file` (flags) is uploaded */
    ENGINE_PLAN_CREATE_FOLDER,    /* push: folder exists only locally; it is created on the server */
    ENGINE_PLAN_FETCH_COUNT,      /* POP3 pull: count new messages, size bytes in all */
    ENGINE_PLAN_MOVE_ON_SERVER,   /* push: the local file `file` (flags) came from folder `from`,
                                     where it was uid (size): moved there on the server, not uploaded */
    ENGINE_PLAN_MOVE_LOCAL,       /* pull: another client moved from_uid of folder `from` to uid of
                                     folder on the server; the local file is renamed along (size,
                                     flags: the server's), nothing downloaded */
    ENGINE_PLAN_DELETE_KEPT,      /* pull, mode = mirror: the local `file` backup mode kept
                                     (the server deleted it) goes */
    ENGINE_PLAN_RETIRE,           /* pull, server_retention_days: uid, stored here, is removed from
                                     the server; the local copy stays */
    ENGINE_PLAN_RETIRE_COUNT,     /* POP3 pull: count messages are deleted from the server once
                                     stored (leave_on_server = no, server_retention_days) */
    ENGINE_PLAN_PLACEHOLDER,      /* pull: uid is over max_size (size, flags): stored as a placeholder */
    ENGINE_PLAN_LINK,             /* pull, Gmail labels: uid (size, flags) is the message folder `from`
                                     has (or downloads first in this run): a hard link to that file,
                                     not downloaded; counted in fetched, not in bytes */
};

struct engine_planned {
    const char *account;
    const char *folder;         /* UTF-8 display name ('/' separated), raw: escape it to show it */
    enum engine_plan_kind kind;
    uint32_t uid;               /* the message (0 for CREATE_FOLDER, UPLOAD, FETCH_COUNT) */
    uint64_t size;              /* FETCH, SKIP: its size; FETCH_COUNT: the total */
    size_t count;               /* FETCH_COUNT: how many */
    unsigned flags;             /* FLAG_* bits: FETCH (server's), SET_FLAGS (new local),
                                   STORE_FLAGS (added), UPLOAD (the file's) */
    unsigned flags_removed;     /* STORE_FLAGS: removed */
    const char *file;           /* UPLOAD, MOVE_ON_SERVER, DELETE_KEPT: the local file name, raw: escape
                                   it to show it */
    const char *from;           /* MOVE_ON_SERVER, MOVE_LOCAL: the folder it left; LINK: the folder
                                   whose file it takes (display names), else NULL */
    uint32_t from_uid;          /* MOVE_LOCAL: its UID in `from` */
};

/* The run's events, for a progress display (all optional; each gets ctx).
 * In a run: account_start, then per folder of the first pass
 * folder_begin, a push's upload_start and a pull's folder_start each
 * followed by their message_done calls, folder_done; then account_done.
 * message_done may come from a download's helper threads (one at a
 * time); the others come from the run's thread. */
struct engine_progress {
    void *ctx;
    /* An account's run begins (before it connects). */
    void (*account_start)(void *ctx, const char *account);
    /* The first pass comes to folder index (0-based) of the nfolders
     * selected; its push and pull follow. */
    void (*folder_begin)(void *ctx, const char *account, const char *folder, size_t index, size_t nfolders);
    /* A push is about to upload nmsgs local messages of folder (their
     * sizes come with each message_done). */
    void (*upload_start)(void *ctx, const char *account, const char *folder, size_t nmsgs);
    /* A folder's plan is known: it will download nmsgs messages, nbytes. */
    void (*folder_start)(void *ctx, const char *account, const char *folder, size_t nmsgs, uint64_t nbytes);
    /* One more message of the current download or upload is done
     * (durable or not yet), of bytes. */
    void (*message_done)(void *ctx, uint64_t bytes);
    void (*folder_done)(void *ctx, const struct engine_folder_result *r);
    /* --dry-run: one step the run would take, in plan order (the run
     * changes nothing). The pointers live for the call only. */
    void (*planned)(void *ctx, const struct engine_planned *step);
    /* The account's run is over: res is its result (failed or not). */
    void (*account_done)(void *ctx, const struct engine_result *res);
};

struct engine_options {
    bool dry_run;
    bool force;
    char **folder_patterns; /* --folder; NULL/0 = all selected by config */
    size_t nfolder_patterns;
    /* A --folder pattern that matches no folder of the account (on the
     * server or, for a push, in the Maildir) is a usage error: the run
     * stops with MS_EUSAGE before any folder is touched. Without it the
     * run goes on and res->folder_patterns_unmatched says which (a run
     * over several accounts: the program judges over all of them). */
    bool folder_patterns_strict;
    /* Set by watch: bit j is the account's `folders` pattern j (the first
     * 64) already warned about as matching nothing; it is warned about
     * again only after it matched something in between. NULL: every run
     * warns. */
    unsigned long long *patterns_warned;
    const struct engine_progress *progress; /* may be NULL */
    /* Fetch the account's secret (password_command...); the engine wipes
     * and frees it right after authentication. */
    int (*get_password)(const struct account *a, char **out, struct ms_error *err);
    /* Non-zero (a signal came) ends a run or a watch's pass at the next
     * safe point (between folders, messages of a download, or chunks of
     * uploads) instead of at its end, keeping what is done. NULL: runs
     * to the end. */
    volatile sig_atomic_t *stop;
    /* How the run connects to the server (sync/remote/remote.h): NULL is
     * remote_connect (the side by the account's type); the engine's unit
     * tests put an in-memory side here. */
    int (*connect_remote)(const struct account *a, const char *password, struct remote **out,
                          struct ms_error *err);
    /* engine_fetch (`mailsync fetch`): the placeholders to replace by their
     * full message: all of them (fetch_all), or those whose local file has
     * one of these unique parts (fetch_found[i], when not NULL, is set
     * for each found among the selected folders' placeholders). A pull
     * or sync replaces the ones flagged locally in any case. */
    bool fetch_all;
    const char *const *fetch_uniqs;
    size_t nfetch_uniqs;
    bool *fetch_found;
    /* UIDs per window of a first pull of a big folder (pull.c): 0 is the
     * default (PULL_WINDOW, 10,000); tests make it small. */
    uint32_t pull_window;
    /* The most vanished UIDs an incremental listing holds before the
     * folder is listed in full (remote_known.vanished_max): 0 is the
     * side's own cap; tests make it small. */
    size_t vanished_max;
    /* Tests only (MAILSYNC_TEST_STOP_AT_WINDOW): the process stops itself
     * (SIGSTOP) as it turns to the run's k-th window below a top window,
     * before that window is listed or applied, so that a test can change
     * the server or kill the run exactly there; 0 never. */
    uint32_t stop_at_window;
};

/* server -> local. Fills res (always, also on failure); returns res->status. */
int engine_pull(const struct account *a, const struct engine_options *opt, struct engine_result *res);
/* local -> server (see sync/engine/push.c), the same way. */
int engine_push(const struct account *a, const struct engine_options *opt, struct engine_result *res);
/* push, then pull, folder by folder, in one session. */
int engine_sync(const struct account *a, const struct engine_options *opt, struct engine_result *res);
/* Replace placeholders (max_size) by their full message: those the
 * options name (fetch_all, fetch_uniqs) and those flagged locally, in the
 * selected folders; nothing else is synced. The same way as a pull. */
int engine_fetch(const struct account *a, const struct engine_options *opt, struct engine_result *res);

/* --- watch --- */

struct engine_watch {
    int interval_s;              /* a full pass (sync) at least this often */
    volatile sig_atomic_t *stop; /* non-zero: finish at the next chance */
    /* After every pass, with its result (the program prints it). */
    void (*pass_done)(void *ctx, const struct engine_result *res);
    /* Called between passes and, while waiting for the server or the
     * interval, at least every alive_ms (0: no limit): a supervisor's
     * watchdog learns the watch is not stuck. May be NULL. */
    void (*alive)(void *ctx);
    int alive_ms;
    void *ctx;
};

/* Stay connected: a sync pass, then IDLE (with NOTIFY on every folder,
 * else on INBOX) until the server reports a change or interval_s passes,
 * then another pass, until *stop. A lost
 * connection or an unreachable server is retried (after interval_s, at most
 * a minute); another run holding the lock is waited for. Returns MS_OK when
 * stopped, or the error that makes going on pointless (configuration,
 * authentication, local storage). */
int engine_watch(const struct account *a, const struct engine_options *opt, const struct engine_watch *w);

/* --- commands that change nothing --- */

struct engine_check {
    char tls[512];
    char *capabilities;
    size_t nfolders;
};

/* Connect, verify TLS, authenticate, LIST. */
int engine_check(const struct account *a, const struct engine_options *opt, struct engine_check *out,
                 struct ms_error *err);
void engine_check_free(struct engine_check *c);

struct engine_folder_map {
    char *raw;        /* server name as sent */
    char *name;       /* UTF-8, '/' separated */
    char *path;       /* local path below the root, or NULL if unsafe */
    const char *why;  /* why path is NULL (static) */
    bool selected;    /* by `folders =` and --folder */
    bool noselect;
    unsigned roles;   /* FOLDER_ROLE_* (sync/names.h): SPECIAL-USE */
};

/* LIST and map every folder. */
int engine_folders(const struct account *a, const struct engine_options *opt, struct engine_folder_map **out,
                   size_t *n, struct ms_error *err);
void engine_folders_free(struct engine_folder_map *f, size_t n);

struct engine_status_folder {
    char *name;          /* raw server name */
    char *path;
    int64_t synced;      /* messages in the state DB */
    int64_t local;       /* message files in the Maildir folder, -1 if missing */
    int64_t local_new;   /* local files the state does not know (to push) */
    int64_t local_flags; /* known files whose flags differ from the state */
    int64_t local_gone;  /* known messages whose file is gone (to push) */
    int64_t last_sync;
    /* Only local because a policy took them off the server (never pushed;
     * not in local_new): */
    int64_t retired;        /* by server_retention_days */
    int64_t kept_by_backup; /* the server deleted them while mode = backup */
};

struct engine_status {
    int64_t last_sync;   /* 0 = never */
    char *last_error;    /* or NULL */
    struct engine_status_folder *folders;
    size_t nfolders;
    bool have_state;     /* false: the account never synced (no DB) */
    int64_t retired, kept_by_backup; /* the folders' sums */
};

/* Offline: reads only the state DB and the Maildir. */
int engine_status(const struct account *a, struct engine_status *out, struct ms_error *err);
void engine_status_free(struct engine_status *s);

#endif
