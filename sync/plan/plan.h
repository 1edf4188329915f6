/* SPDX-License-Identifier: MIT */
/*
 * plan.h: the reconciliation planner. Pure: plain structs in, a plan out;
 * no I/O, no libetpan, no SQLite, so a test can state a whole situation in
 * a few lines and assert the exact plan.
 *
 * Three views of one folder meet here:
 *   state  - what both sides looked like after the last sync (db/)
 *   local  - what the Maildir holds now (maildir_scan)
 *   remote - what the server holds now (UID FETCH 1:* (FLAGS))
 *
 * plan_pull() decides the server -> local direction: what to download,
 * which local files get new flags, which are removed because the server
 * expunged them (in backup mode: kept, and recorded as kept), and which
 * state rows are forgotten. Local changes not yet
 * pushed are never reverted: a flag the user changed locally survives a
 * server change of other flags (the server's delta is applied to the local
 * flags, not the server's flags copied over them).
 *
 * plan_match() pairs messages by identity (Message-ID + size) when the
 * state cannot: after a UIDVALIDITY change or a lost state DB.
 */
#ifndef MAILSYNC_PLAN_H
#define MAILSYNC_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync/account.h"

struct plan_state {
    uint32_t uid;
    const char *uniq;     /* local file's unique part */
    unsigned flags;       /* FLAG_* as last synced */
    const char *keywords; /* as last synced; NULL = none */
};

struct plan_local {
    const char *uniq;
    unsigned flags;
};

struct plan_remote {
    uint32_t uid;
    unsigned flags;
    const char *keywords; /* NULL = none */
    uint64_t size;
};

struct plan_input {
    const struct plan_state *state;   /* sorted by uid, unique */
    size_t nstate;
    const struct plan_local *local;   /* sorted by strcmp(uniq), unique */
    size_t nlocal;
    const struct plan_remote *remote; /* sorted by uid, unique */
    size_t nremote;
    enum sync_mode mode;  /* MODE_BACKUP never removes local files */
    uint64_t max_size;    /* 0 = no limit; larger messages are skipped */
    bool placeholders;    /* ... or, with this, stored as placeholders */
    bool newest_first;    /* fetches in descending UID order (a first pull) */
    int max_delete;       /* percent of a folder a run may delete */
    bool force;           /* override the mass-deletion guard */
    size_t guard_total;   /* the folder's state rows (what the state DB
                             knew of it), when state holds only some of
                             them (an incremental resync); 0 = nstate.
                             Never a count the server reports: a server
                             could inflate it and so dilute the share. */
};

enum plan_op {
    PLAN_FETCH,        /* download uid, deliver with flags/keywords */
    PLAN_SKIP_LARGE,   /* uid is over max_size: reported, not fetched */
    PLAN_PLACEHOLDER,  /* uid is over max_size (placeholders): its header is
                          fetched and delivered as a placeholder, with flags */
    PLAN_LOCAL_FLAGS,  /* rename local uniq to flags; record remote flags */
    PLAN_STATE_FLAGS,  /* record remote flags/keywords; local file unchanged */
    PLAN_LOCAL_DELETE, /* server expunged uid: remove local uniq, forget uid */
    PLAN_FORGET,       /* server expunged uid and the local file is gone */
    PLAN_BACKUP_KEEP,  /* backup mode: server expunged uid, the local uniq
                          stays; its row becomes a kept_by_backup tombstone */
};

struct plan_action {
    enum plan_op op;
    uint32_t uid;
    const char *uniq;        /* borrowed from the input; NULL for FETCH */
    unsigned flags;          /* LOCAL_FLAGS: new local flags; FETCH: remote */
    unsigned state_flags;    /* flags to record as synced */
    const char *keywords;    /* keywords to record (borrowed) */
    uint64_t size;           /* FETCH/SKIP_LARGE/PLACEHOLDER: RFC822.SIZE */
};

struct plan {
    struct plan_action *actions;
    size_t n;
    size_t nfetch, nskip, nflags, ndelete, nforget;
    size_t nplaceholder;     /* PLAN_PLACEHOLDER: not in nfetch nor fetch_bytes */
    size_t nkept;            /* PLAN_BACKUP_KEEP: no deletion, never guarded */
    uint64_t fetch_bytes;
    /* Mass-deletion guard (plan_guard_trips) tripped: the whole plan was
     * dropped (n == 0, every count 0), so the caller leaves the folder
     * untouched and says why with the two numbers below. */
    bool guard_tripped;
    size_t guard_deletes;    /* how many deletions the plan would have made */
    size_t guard_total;      /* of how many messages the state knew */
};

/* The mass-deletion guard, the same for plan_pull() and plan_push(): does
 * a plan that deletes ndelete of the total messages the state knew of a
 * folder need --force? nremoved is ndelete plus the known messages the
 * plan forgets without deleting anything (a pull's PLAN_FORGET: the local
 * file is gone already). It trips when
 *   - the share: the folder held at least 20 and more than max_delete
 *     percent of them would be deleted; or
 *   - the floor, whatever the size: every message the state knew would
 *     go (nremoved >= total) and at least two are deletions.
 * Why two: removing the last message of a folder is an everyday user
 * action (read it, delete it) that looks exactly like a one-message folder
 * emptied by mistake; asking --force for it would make --force routine,
 * and a guard that is always overridden guards nothing. Two or more
 * known messages all gone at once is what an unmounted disk, a wiped
 * Maildir or a server listing an empty folder looks like. total is what
 * the state DB knew, never a number the server reported in the run.
 * No deletion never trips; a total of 0 with deletions (the caller's
 * numbers disagree) trips from two deletions on, by the floor.
 * On a trip plan_pull() and plan_push() drop their whole plan (flag
 * changes, downloads and uploads too: the folder is left untouched) and
 * say so in guard_tripped, guard_deletes, guard_total; with --force
 * (plan_input.force) they do not ask. This is the only place the rule is
 * decided: the engine asks it too, only to choose a full listing when an
 * incremental one would trip it. */
bool plan_guard_trips(size_t ndelete, size_t nremoved, size_t total, int max_delete);

/* Plan the server -> local direction. Returns 0, or -1 on out of memory.
 * The plan borrows strings from in; free it with plan_free(). Action order:
 * deletions, flag changes, then fetches (placeholders and skips among
 * them) in ascending UID order, or descending with in->newest_first. */
int plan_pull(const struct plan_input *in, struct plan *out);
void plan_free(struct plan *p);

/* --- identity matching --- */

#define PLAN_ALT_SIZES 8

struct plan_identity {
    uint32_t uid;           /* remote side: the UID; local side: unused */
    const char *uniq;       /* local side: the file; remote side: unused */
    const char *message_id; /* NULL = none: never matched by identity */
    uint64_t size;          /* RFC822.SIZE (CRLF size) */
    /* Local side: the other sizes the server may report for the file,
     * without the fields other tools add (message.h, struct
     * message_identity); remote side: none. */
    uint64_t alt[PLAN_ALT_SIZES];
    unsigned nalt;
    /* For plan_match_loose: header values (NULL = none, or not fetched). */
    const char *date;
    const char *from;
};

struct plan_match {
    uint32_t uid;
    const char *uniq;
};

/* Pair remote and local messages with the same (Message-ID, size): first
 * by the file's own size, then, for what is left, by one of its alt
 * sizes. When several messages share one identity, they are paired in
 * input order and the surplus stays unmatched (a duplicate is downloaded,
 * never dropped). Writes up to min(nremote, nlocal) pairs to *out
 * (malloc'd) and their count to *nout. Returns 0, or -1 on out of memory. */
int plan_match(const struct plan_identity *remote, size_t nremote, const struct plan_identity *local,
               size_t nlocal, struct plan_match **out, size_t *nout);

/* The second tier, for what plan_match left (the caller passes only the
 * unpaired): where fields a tool added make the size uncertain (getmail
 * rewrites the header it stores), a remote and a local message are the
 * same if their Message-ID is unique on both sides (exactly one remote
 * and one local entry carry it) and both Date and From are present and
 * equal on both. Anything else stays unpaired. Same output as plan_match. */
int plan_match_loose(const struct plan_identity *remote, size_t nremote, const struct plan_identity *local,
                     size_t nlocal, struct plan_match **out, size_t *nout);

/* --- local -> server --- */

/* plan_push() decides the local -> server direction from the state and
 * the local scan (in->remote is not used: the server's side is changed by
 * deltas, so a concurrent server change of other flags is never undone).
 *   - a known message whose local flags differ from the recorded ones:
 *     the difference is added/removed on the server (PUSH_FLAGS);
 *   - a known message whose file is gone: removed on the server
 *     (PUSH_DELETE), except in backup mode (then nothing); the
 *     mass-deletion guard weighs them as a pull's (plan_guard_trips) and
 *     on a trip drops the whole plan;
 *   - a local file the state does not know: uploaded (PUSH_APPEND).
 * State rows without a local name are left alone. */
enum push_op { /* in the order they are planned */
    PUSH_DELETE, /* uid: remove from the server, then forget the row */
    PUSH_FLAGS,  /* uid: STORE +add / -remove; record state_flags */
    PUSH_APPEND, /* uniq: upload with flags, then record the new UID */
};

struct push_action {
    enum push_op op;
    uint32_t uid;        /* FLAGS, DELETE */
    const char *uniq;    /* borrowed from the input */
    unsigned add, remove;/* FLAGS: the local delta since the last sync */
    unsigned flags;      /* FLAGS: flags to record as synced; APPEND: local flags */
};

struct push_plan {
    struct push_action *actions;
    size_t n;
    size_t nflags, ndelete, nappend;
    bool guard_tripped;  /* as struct plan's: the whole plan was dropped */
    size_t guard_deletes, guard_total;
};

/* Returns 0, or -1 on out of memory. Action order: deletions (by uid),
 * flag changes (by uid), uploads (by uniq). */
int plan_push(const struct plan_input *in, struct push_plan *out);
void push_plan_free(struct push_plan *p);

#endif
