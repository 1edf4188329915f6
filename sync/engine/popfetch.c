/* SPDX-License-Identifier: MIT */
/*
 * popfetch.c: a POP3 account's pull (see engine_int.h, popfetch_pull).
 *
 * POP3 has one folder, delivered to INBOX, and no flags: a new message
 * goes to new/. Messages are known by UIDL. Each body streams into its own
 * file in tmp/, and batches of them land through the delivery journal
 * (sync/engine/journal.h, rows keyed by UIDL), crash-safe as IMAP deliveries. A
 * message is deleted from the server (DELE, carried out at QUIT) only when
 * its row is confirmed, so never before its file is durable.
 *
 * A state that knows no POP3 message while INBOX holds files (the DB was
 * lost, or found stale and moved aside: generation.c) cannot tell which
 * of the server's messages are here already. Then each download is
 * compared, as stored, with the files by size and SHA-256 before it is
 * delivered: one that is already here is recorded under that file's name
 * (and may then be deleted from the server as usual), never delivered a
 * second time.
 */
#include "sync/engine/engine_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sync/engine/dryrun.h"
#include "sync/engine/journal.h"
#include "sync/log.h"
#include "sync/message.h"
#include "sync/remote/remote.h"
#include "sync/util.h"

#define POP3_BATCH_MSGS 64
#define POP3_BATCH_BYTES ((uint64_t)16 << 20)

struct popctx {
    struct run *r;
    struct maildir_folder *mf;
    int64_t folder_id;
    struct engine_folder_result *fres;
    struct journal *journal;
    struct journal_entry batch[POP3_BATCH_MSGS];
    size_t nbatch;
    uint64_t batch_bytes;
    /* Only when the state knows no message and INBOX holds files. */
    struct local_msg *local;
    size_t nlocal;
    struct leftover *left; /* INBOX's files, for the comparison by content */
    size_t nleft;
    struct message_hash *hash; /* of the message being downloaded */
};

static int cmp_row_uidl(const void *key, const void *elem)
{
    return strcmp(key, ((const struct state_pop3 *)elem)->uidl);
}

static const struct state_pop3 *row_of(const struct state_pop3 *rows, size_t n, const char *uidl)
{
    return n ? bsearch(uidl, rows, n, sizeof *rows, cmp_row_uidl) : NULL;
}

/* Where a body goes (the side cuts off one far over its listed size). */
struct body_sink {
    struct maildir_tmp *tmp;
    struct message_hash *hash; /* or NULL */
    bool got;                  /* the side reported the whole message */
};

static int on_chunk(void *ctx, const char *data, size_t len)
{
    struct body_sink *b = ctx;
    struct ms_error e;
    if (b->hash)
        message_hash_add(b->hash, data, len);
    return maildir_tmp_write(b->tmp, data, len, &e) == MS_OK ? 0 : MS_ELOCAL;
}

static int on_message(void *ctx, const struct remote_msg *m, bool has_body)
{
    (void)m;
    ((struct body_sink *)ctx)->got = has_body;
    return 0;
}

/* The files of INBOX, to compare downloads with, when the state knows no
 * POP3 message (see the top of this file). */
static int find_leftovers(struct popctx *c, struct ms_error *err)
{
    int rc = maildir_scan(c->mf, &c->local, &c->nlocal, err);
    if (rc || c->nlocal == 0)
        return rc;
    if (!(c->hash = message_hash_new()))
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    c->left = xcalloc(c->nlocal, sizeof *c->left);
    for (size_t i = 0; i < c->nlocal; i++)
        c->left[c->nleft++] = (struct leftover){.uniq = xstrdup(c->local[i].uniq), .size = c->local[i].size};
    log_msg(LOG_WARN, "%s: the state DB knows no POP3 message while INBOX holds %zu files: every download is "
                      "compared with them first, and one already here is not delivered again",
            c->r->acct->name, c->nlocal);
    return MS_OK;
}

/* The unique part of the local file the download just hashed is, byte for
 * byte as stored but for the fields other tools add (claimed: no second
 * download is matched with it), or NULL. */
static const char *same_as_leftover(struct popctx *c)
{
    unsigned char hash[32];
    uint64_t size;
    if (!message_hash_end(c->hash, hash, &size))
        return NULL;
    for (size_t i = 0; i < c->nleft; i++) {
        struct leftover *lo = &c->left[i];
        if (deliver_leftover_is(c->mf, lo, views_local_by_uniq(c->local, c->nlocal, lo->uniq), size, hash)) {
            lo->adopted = true;
            return lo->uniq;
        }
    }
    return NULL;
}

/* Hand the batch to the journal. */
static int land_batch(struct popctx *c, struct ms_error *err)
{
    int rc = journal_submit(c->journal, c->batch, c->nbatch, err);
    c->nbatch = 0;
    c->batch_bytes = 0;
    return rc;
}

/* A dry run: how many messages the run would delete from the server
 * (below, "deletions"): the stored ones the config lets go, and with
 * leave_on_server = no also the nnew it would download first. */
static size_t pop_deletions_planned(const struct account *a, const struct remote_msg *msgs, size_t nmsgs,
                                    const struct state_pop3 *rows, size_t nrows, size_t nnew)
{
    int64_t cutoff = a->server_retention_days > 0 ? (int64_t)time(NULL) - (int64_t)a->server_retention_days * 86400
                                                   : 0;
    size_t n = a->leave_on_server ? 0 : nnew;
    for (size_t i = 0; i < nmsgs; i++) {
        const struct state_pop3 *row = row_of(rows, nrows, msgs[i].id);
        if (row && !row->pending && (!a->leave_on_server || (cutoff && row->first_seen < cutoff)))
            n++;
    }
    return n;
}

int popfetch_pull(struct run *r, struct ms_error *err)
{
    const struct account *a = r->acct;
    const char *path = a->layout == LAYOUT_MAILDIRPP ? "" : "INBOX";
    const struct engine_progress *prog = r->opt->progress;
    struct engine_folder_result *fres = engine_add_folder_result(r->res, "INBOX", path);
    struct popctx c = {.r = r, .fres = fres};
    struct state_folder sf = {0};
    struct remote *side = r->remote;
    struct remote_listing inbox = {0};
    struct state_pop3 *rows = NULL;
    size_t nrows = 0;
    int rc = state_folder_get(r->st, "INBOX", &sf, err);
    if (rc == MS_OK && !sf.id && !r->opt->dry_run) {
        sf.name = xstrdup("INBOX");
        sf.path = xstrdup(path);
        rc = state_folder_save(r->st, &sf, err);
    }
    c.folder_id = sf.id;
    if (rc == MS_OK && r->rootfd >= 0)
        rc = maildir_folder_open(r->rootfd, path, !r->opt->dry_run, &c.mf, err);
    if (rc == MS_OK && c.mf && !r->opt->dry_run) {
        rc = journal_recover(r->st, c.mf, c.folder_id, JOURNAL_UIDL, err);
        c.journal = journal_new(r->st, c.mf, c.folder_id, JOURNAL_UIDL, r->dirs, NULL, fres);
    }
    if (rc == MS_OK)
        rc = side->ops->open(side, "INBOX", &(struct remote_known){0}, &inbox, err);
    for (size_t i = 0; rc == MS_OK && i < inbox.nmsgs; i++)
        if (!inbox.msgs[i].id)
            rc = ms_error_set(err, MS_ENET, "INBOX: the %s side named message %" PRIu32 " without an id",
                              side->ops->name, inbox.msgs[i].uid);
    const struct remote_msg *msgs = inbox.msgs;
    size_t nmsgs = inbox.nmsgs;
    if (rc == MS_OK && sf.id)
        rc = state_pop3_list(r->st, sf.id, &rows, &nrows, err);
    if (rc)
        goto out;

    /* what is new */
    size_t nnew = 0;
    uint64_t new_bytes = 0;
    for (size_t i = 0; i < nmsgs; i++) {
        if (row_of(rows, nrows, msgs[i].id))
            continue;
        if (a->max_size && msgs[i].size > a->max_size) {
            log_msg(LOG_WARN, "INBOX: POP3 message %s skipped: %llu bytes is over max_size", msgs[i].id,
                    (unsigned long long)msgs[i].size);
            fres->skipped++;
            continue;
        }
        nnew++;
        new_bytes += msgs[i].size;
    }
    if (r->opt->dry_run) {
        dryrun_report(r->opt, &(struct engine_planned){.account = a->name, .folder = "INBOX",
                                                      .kind = ENGINE_PLAN_FETCH_COUNT, .uid = 0, .size = new_bytes,
                                                      .count = nnew, .flags = 0, .flags_removed = 0, .file = NULL, .from = NULL, .from_uid = 0});
        fres->fetched = nnew;
        fres->bytes = new_bytes;
        fres->retired = pop_deletions_planned(a, msgs, nmsgs, rows, nrows, nnew);
        if (fres->retired)
            dryrun_report(r->opt, &(struct engine_planned){.account = a->name, .folder = "INBOX",
                                                          .kind = ENGINE_PLAN_RETIRE_COUNT, .uid = 0, .size = 0,
                                                          .count = fres->retired, .flags = 0, .flags_removed = 0,
                                                          .file = NULL, .from = NULL, .from_uid = 0});
        goto out;
    }
    if (nrows == 0 && nnew && (rc = find_leftovers(&c, err)) != MS_OK)
        goto out;
    if (prog && prog->folder_start)
        prog->folder_start(prog->ctx, a->name, "INBOX", nnew, new_bytes);
    for (size_t i = 0; rc == MS_OK && i < nmsgs; i++) {
        if (row_of(rows, nrows, msgs[i].id) || (a->max_size && msgs[i].size > a->max_size))
            continue;
        struct journal_entry *f = &c.batch[c.nbatch];
        if ((rc = maildir_tmp_open(c.mf, &f->tmp, err)) != MS_OK)
            break;
        struct body_sink b = {.tmp = f->tmp, .hash = c.hash, .got = false};
        struct remote_body_sink sink = {.ctx = &b, .chunk = on_chunk, .message = on_message};
        if (c.hash)
            message_hash_start(c.hash);
        rc = side->ops->fetch_bodies(side, &msgs[i].uid, 1, &sink, err);
        if (rc == MS_OK && !b.got)
            rc = ms_error_set(err, MS_EPARTIAL, "POP3 message %s: the server sent no body", msgs[i].id);
        if (rc == MS_OK)
            rc = maildir_tmp_close(f->tmp, 0, false, err);
        if (rc != MS_OK) {
            maildir_tmp_discard(f->tmp);
            f->tmp = NULL;
            if (rc == MS_EPARTIAL) { /* -ERR: this one only (gone meanwhile?) */
                log_msg(LOG_WARN, "INBOX: %s", err->msg);
                fres->failed++;
                rc = MS_OK;
            }
            continue;
        }
        snprintf(f->uidl, sizeof f->uidl, "%s", msgs[i].id);
        f->size = maildir_tmp_size(f->tmp);
        const char *same = c.hash ? same_as_leftover(&c) : NULL;
        if (same) {
            log_msg(LOG_VERBOSE, "INBOX: POP3 message %s is local file %s: adopted, not delivered again",
                    msgs[i].id, same);
            f->adopted = xstrdup(same);
            maildir_tmp_discard(f->tmp);
            f->tmp = NULL;
        }
        c.nbatch++;
        c.batch_bytes += f->adopted ? 0 : f->size; /* what is delivered */
        if (prog && prog->message_done)
            prog->message_done(prog->ctx, f->size);
        if (c.nbatch == POP3_BATCH_MSGS || c.batch_bytes >= POP3_BATCH_BYTES)
            rc = land_batch(&c, err);
        if (rc == MS_OK && run_stopped(r)) { /* what came is landed below */
            fres->stopped = true;
            break;
        }
    }
    if (rc == MS_OK)
        rc = land_batch(&c, err);
    journal_entries_clear(c.batch, c.nbatch);
    c.nbatch = 0;
    /* What landed is confirmed, also after a failure: the deletions below
     * take only confirmed rows. */
    struct ms_error jerr;
    int jrc = c.journal ? journal_finish(c.journal, &jerr) : MS_OK;
    if (jrc == MS_OK && c.journal)
        jrc = journal_confirm(c.journal, NULL, &jerr);
    if (jrc && rc == MS_OK) {
        rc = jrc;
        *err = jerr;
    }
    if (rc == MS_OK && fres->stopped) /* deletions wait for the next run too */
        rc = ms_error_set(err, MS_EPARTIAL, "INBOX: %s", STOPPED_DOWNLOAD);
    if (rc)
        goto out;

    /* deletions, of what is durably here */
    state_pop3_free(rows, nrows);
    rows = NULL;
    nrows = 0;
    if ((rc = state_pop3_list(r->st, sf.id, &rows, &nrows, err)))
        goto out;
    int64_t cutoff = a->server_retention_days > 0 ? (int64_t)time(NULL) - (int64_t)a->server_retention_days * 86400
                                                   : 0;
    size_t ndele = 0;
    for (size_t i = 0; rc == MS_OK && i < nmsgs; i++) {
        const struct state_pop3 *row = row_of(rows, nrows, msgs[i].id);
        if (!row || row->pending)
            continue;
        if (a->leave_on_server && !(cutoff && row->first_seen < cutoff))
            continue;
        rc = side->ops->remove(side, &msgs[i].uid, 1, err);
        if (rc == MS_EPARTIAL) {
            log_msg(LOG_WARN, "INBOX: %s", err->msg);
            rc = MS_OK;
            continue;
        }
        ndele += rc == MS_OK;
    }
    if (rc == MS_OK && ndele && remote_can(side, REMOTE_COMMIT)) {
        struct ms_error e;
        if (side->ops->commit(side, &e) != MS_OK)
            rc = ms_error_set(err, MS_ENET, "%s: the %zu deletions may not have happened (the next run tries again)",
                              e.msg, ndele);
        else
            fres->retired += ndele;
    } else if (rc == MS_OK) {
        fres->retired += ndele;
    }
    if (rc == MS_OK && fres->failed)
        rc = ms_error_set(err, MS_EPARTIAL, "INBOX: %zu POP3 messages could not be fetched", fres->failed);
    if (rc == MS_OK && sf.id && !r->opt->dry_run) {
        /* synced now: `status` shows it on the folder line too */
        r->touched = xrealloc(r->touched, (r->ntouched + 1) * sizeof *r->touched);
        r->touched[r->ntouched++] =
            (struct state_quiet_folder){sf.id, sf.uidvalidity, sf.uidnext, sf.highestmodseq};
    }
out:
    if (rc)
        engine_folder_fail(fres, err);
    remote_listing_free(&inbox);
    state_pop3_free(rows, nrows);
    journal_free(&c.journal);
    message_hash_free(c.hash);
    rematch_free_leftovers(c.left, c.nleft);
    maildir_msgs_free(c.local, c.nlocal);
    maildir_folder_close(c.mf);
    state_folder_free(&sf);
    if (prog && prog->folder_done && !r->opt->dry_run)
        prog->folder_done(prog->ctx, fres);
    return rc;
}
