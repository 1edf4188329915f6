/* SPDX-License-Identifier: MIT */
/*
 * journal.h: the delivery journal, the one way a downloaded message enters
 * the Maildir and the state DB (IMAP by UID, POP3 by UIDL), and its
 * recovery after a killed run.
 *
 * A batch of messages, each streamed into its own file in tmp/, lands in
 * these steps (enum journal_step names the points between them):
 *   1. syncfs() makes every file of the batch durable at once (with any
 *      syncfs a delivery started ahead in the run's dirsync);
 *   2. one transaction journals every message as a *pending* row (its key,
 *      unique name, flags, identity) and confirms the previous batch's rows;
 *   3. each file is renamed into new/ or cur/, never over another file;
 *   4. new/ and cur/ are fsynced, so the renames are durable;
 *   5. the pending marks are cleared: in the next batch's transaction (one
 *      commit per batch), or by journal_confirm() at the end of a download.
 * The durable point is the commit of step 2: before it, a kill leaves
 * nothing recorded (the tmp/ files are swept later and the messages fetched
 * again); after it, pending rows whose files are durable in tmp/ or already
 * in place, which journal_recover() finishes. So no message is recorded
 * without its file, and none is delivered twice. Never one fsync per
 * message: one syncfs and one fsync of each directory per batch.
 *
 * Steps 1-4 run in a committer thread of the journal, one batch at a time
 * and in the order the batches were handed over, while the caller fetches
 * the next batch (a first pull spent about a sixth of its time waiting for
 * them otherwise).
 */
#ifndef MAILSYNC_JOURNAL_H
#define MAILSYNC_JOURNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync/error.h"

struct state;
struct state_folder;
struct maildir_folder;
struct maildir_tmp;
struct dirsync;
struct engine_folder_result;

/* How the journal's rows are keyed: by IMAP UID (the message table) or by
 * POP3 UIDL (the POP3 table). */
enum journal_key {
    JOURNAL_UID,
    JOURNAL_UIDL,
};

/* One downloaded message. The journal takes over tmp, adopted, keywords
 * and message_id with the entry (journal_submit). */
struct journal_entry {
    uint32_t uid;            /* JOURNAL_UID: its key */
    char uidl[72];           /* JOURNAL_UIDL: its key (RFC 1939: 1-70 characters) */
    struct maildir_tmp *tmp; /* the closed file in tmp/; NULL: adopted */
    char *adopted;           /* unique part of a local file that is this message, already in place */
    unsigned flags;          /* FLAG_*: cur/ with these letters, new/ when 0 */
    char *keywords;          /* recorded with a UID row, or NULL */
    uint64_t size;           /* recorded with a UID row, counted as delivered bytes */
    char *message_id;        /* recorded with a UID row, or NULL */
    char *emailid;           /* the server's id of the message (remote_msg.emailid), or NULL */
    bool placeholder;        /* a UID row: the file is a placeholder (max_size): the row is marked so */
};

/* The points of a batch's landing, for journal_step_hook. */
enum journal_step {
    JOURNAL_STEP_SYNCED,    /* after step 1: the files are durable, nothing recorded */
    JOURNAL_STEP_ROWS,      /* inside step 2's transaction, before its commit */
    JOURNAL_STEP_RECORDED,  /* after step 2's commit: the durable point */
    JOURNAL_STEP_RENAMED,   /* after each rename of step 3 */
    JOURNAL_STEP_PLACED,    /* after step 4 */
    JOURNAL_STEP_CONFIRMED, /* after journal_confirm()'s commit */
};

/* A test hook (tests/unit/test_journal.c kills the process here): called
 * at each step with the step. NULL in the program. */
extern void (*journal_step_hook)(enum journal_step step);

/* The delivery journal of one folder's download. */
struct journal;

/* A journal for folder_id's messages delivered into mf. dirs (or NULL):
 * the run's syncer, whose syncfs ahead the batch's durability waits for.
 * lock (or NULL): held around every transaction, when other threads share
 * the state DB. fres: fetched and bytes are counted there for each message
 * moved into place (by the committer thread). Everything is borrowed. */
struct journal *journal_new(struct state *st, struct maildir_folder *mf, int64_t folder_id, enum journal_key key,
                            struct dirsync *dirs, pthread_mutex_t *lock, struct engine_folder_result *fres);

/* Hand the batch v[0..n) to the committer (once it is done with the one
 * before) and reset v's entries: the journal owns their contents now.
 * A failure of an earlier batch is returned here, and then this batch is
 * dropped: its files are removed from tmp/ unrecorded, and the next run
 * fetches those messages again. */
int journal_submit(struct journal *j, struct journal_entry *v, size_t n, struct ms_error *err);

/* Wait until every batch handed over has landed (steps 1-4), and end the
 * committer: MS_OK, or the first failure. */
int journal_finish(struct journal *j, struct ms_error *err);

/* Move the rows the other journal landed and left pending (its step 5) to
 * j, which confirms them with its own (after journal_finish of both). */
void journal_take_pending(struct journal *j, struct journal *other);

/* Step 5 for what has landed: confirm the pending rows in one transaction,
 * with the folder's row (finish, or NULL) saved in it. Call after
 * journal_finish. */
int journal_confirm(struct journal *j, struct state_folder *finish, struct ms_error *err);

/* journal_finish (errors dropped: call it first for them), free, *j = NULL.
 * Rows landed and not confirmed stay pending: the next run's
 * journal_recover() confirms them. */
void journal_free(struct journal **j);

/* Free the contents of entries (tmp files are removed) and clear them. */
void journal_entries_clear(struct journal_entry *v, size_t n);

/* How long after its batch was journalled a file in tmp/ is ours alone:
 * the Maildir convention lets any program remove tmp/ files older than 36
 * hours (an hour's margin for the clock). */
#define JOURNAL_TMP_TRUSTED (35 * 3600)

/* Finish what a killed run journalled and did not confirm: a pending row
 * whose file is in place is confirmed; one whose file is still in tmp/ has
 * it moved into place (with the row's flags), then confirmed; one with no
 * file at all was put in place and deleted by the user since, so it is
 * confirmed too (the push removes the message from the server), unless its
 * batch is older than JOURNAL_TMP_TRUSTED (then the file may have been
 * swept from tmp/ unseen: forgotten, its message fetched again). In one
 * transaction, after the directories are fsynced. */
int journal_recover(struct state *st, struct maildir_folder *mf, int64_t folder_id, enum journal_key key,
                    struct ms_error *err);

#endif
