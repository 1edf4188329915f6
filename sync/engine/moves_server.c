/* SPDX-License-Identifier: MIT */
/*
 * moves_server.c: a message another client moved on the server from folder
 * A to folder B becomes a rename of the local file from A into B (same
 * inode, nothing downloaded), not a deletion in A and a download in B.
 *
 * How a move is seen, account-wide, within the two passes of engine.c:
 *   - Before the first pass, the folders whose STATUS (taken with the LIST)
 *     shows fewer messages than the state's rows plus the UIDNEXT growth
 *     lost messages since the last sync: they are pulled first
 *     (moves_server_order), so their vanished messages are known before
 *     any folder's new ones are downloaded.
 *   - A's pull notes its vanished rows whose local file still exists,
 *     with their identity from the state row (Message-ID, size), in the
 *     run's list (moves_server_note_vanished; memory: only those rows).
 *     A's deletions are held for the second pass anyway.
 *   - B's pull, when the list is not empty, asks the server for the
 *     identity of its new UIDs (one FETCH of Message-ID and size) and
 *     pairs them with the list (plan_match). Each pair is a move
 *     (moves_server_take): A's file is renamed into B's cur/ with the
 *     server's flags, B's row recorded, A's row deleted, and the pair is
 *     no longer a download. A's second pass no longer sees the row, so
 *     nothing is deleted and the mass-deletion guard counts no deletion.
 *     A pull whose guard trips in the first pass is held back whole
 *     instead (pull.c), and planned again in the second pass, once the
 *     moves out of it are recorded.
 *   - Two folders that swapped messages both lost some: whichever is
 *     pulled first cannot know yet what came from the other. So while a
 *     folder that lost messages is still to be pulled in the first pass
 *     (moves_server_more_to_come), a folder's downloads wait for the
 *     second pass, which pulls it again with every vanished row known.
 * Without STATUS from the LIST (a server without CONDSTORE) the folders
 * keep their order: a move to a folder pulled before its source is then
 * downloaded as before. The trash folder of a sync stays last, so a
 * message moved out of it is downloaded too. A --dry-run shows moves as
 * move_local steps, the source's deletions only for what no move took.
 * Pairing rule: first, where the server gives each message an id of its
 * content (REMOTE_OBJECTID: IMAP EMAILID, RFC 8474, or Gmail's
 * X-GM-MSGID; recorded with the row when the message was downloaded),
 * the new UID whose id equals a vanished row's recorded id is that
 * message, moved: exact, whatever its headers (no Message-ID, or several
 * messages sharing one). The identity FETCH of the new UIDs asks for the
 * id in the same round trip. Then, for what is left, (Message-ID, size)
 * as plan_match() has it; messages without a Message-ID or id are never
 * paired (downloaded as before). Several candidates of equal identity are
 * paired in order: they are copies of one message, so any pairing keeps
 * one file per server message. -v says how many each rule paired.
 *
 * Crash safety (the server-move journal, db/state.h):
 *   1. one transaction: B's row is recorded *pending* and the move
 *      journalled; A's row stays;
 *   2. the files are renamed from A into B (never over a name);
 *   3. A's and B's new/ and cur/ are fsynced;
 *   4. one transaction: B's row confirmed, A's row deleted, the journal
 *      row forgotten.
 * A run killed before 1 left nothing; between 1 and 4, the next run's
 * moves_server_recover() (before its first pass) looks for the file in B:
 * found, it finishes 4; not found (killed before the rename), it drops
 * B's row and the journal row, so A's row and file are as before and the
 * move is seen again. A pending B row is what journal_recover() would
 * finish the same way. So the message exists once locally and nothing is
 * downloaded or uploaded again.
 *
 * A rename cannot cross file systems (a folder mounted elsewhere): then
 * the message is downloaded into B as before and A's file removed by A's
 * deletion, as without this file.
 */
#include "sync/engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/engine/dryrun.h"
#include "sync/log.h"
#include "sync/util.h"

void (*moves_server_step_hook)(int step);

static void step(int n)
{
    if (moves_server_step_hook)
        moves_server_step_hook(n);
}

/* A vanished row of a folder pulled this run whose file is still there. */
struct vanished {
    int64_t folder_id;
    char *path; /* the folder's local path below the root */
    char *name; /* its display name, for messages */
    uint32_t uid;
    char *uniq;
    unsigned flags; /* as last synced */
    char *message_id; /* NULL if none (then emailid is set) */
    char *emailid;    /* the server's id recorded with the row, or NULL */
    uint64_t size;
    int placeholder; /* the row's placeholder mark (placeholders.c), kept in the new folder */
    bool taken;
    bool held; /* a dry run: its local deletion is reported at the end */
};

struct moves_server {
    struct vanished *v;
    size_t n;
    /* The folders moves_server_order put first (raw names, sorted), and
     * whether this pass has pulled each yet. */
    char **lost;
    bool *pulled;
    size_t nlost;
};

void moves_server_free(struct run *r)
{
    struct moves_server *m = r->smoves;
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].path);
        free(m->v[i].name);
        free(m->v[i].uniq);
        free(m->v[i].message_id);
        free(m->v[i].emailid);
    }
    free(m->v);
    for (size_t i = 0; i < m->nlost; i++)
        free(m->lost[i]);
    free(m->lost);
    free(m->pulled);
    free(m);
    r->smoves = NULL;
}

/* ------------------------------------------------------------------ */
/* the order of the first pass */

/* Did the folder lose messages since the last sync, as its STATUS shows? */
static bool lost_messages(struct run *r, const struct selected *sel)
{
    const struct remote_status *st = folders_known_status(r, sel->raw);
    const struct state_folder *sf = folders_known(r, sel->raw);
    if (!st || !sf || !sf->id || !st->uidvalidity || st->uidvalidity != sf->uidvalidity || !sf->uidnext ||
        st->uidnext < sf->uidnext)
        return false;
    if (st->highestmodseq && st->highestmodseq == sf->highestmodseq && st->uidnext == sf->uidnext)
        return false; /* unchanged */
    /* The rows hold UIDs below the recorded UIDNEXT, so rows plus the
     * growth is at most st->uidnext - 1: a folder holding that many lost
     * nothing. Otherwise (UID gaps from expunges) the rows are counted:
     * one lookup, the state keeps each folder's count (folder_rows in
     * db/state.c; count(*) read the folder's whole index, 70-240 ms at
     * 100,000 rows). */
    if ((uint64_t)st->messages + 1 >= (uint64_t)st->uidnext)
        return false;
    size_t rows = 0;
    struct ms_error e;
    if (state_msg_count(r->st, sf->id, &rows, &e) != MS_OK)
        return false;
    return (uint64_t)st->messages < (uint64_t)rows + (st->uidnext - sf->uidnext);
}

void moves_server_order(struct run *r, const struct selected *sel, size_t *order, size_t from, size_t to)
{
    if (to <= from + 1)
        return;
    size_t n = to - from, k = 0;
    size_t *rest = xmalloc(n * sizeof *rest);
    size_t nrest = 0;
    for (size_t j = from; j < to; j++) {
        if (lost_messages(r, &sel[order[j]]))
            order[from + k++] = order[j];
        else
            rest[nrest++] = order[j];
    }
    memcpy(order + from + k, rest, nrest * sizeof *rest);
    free(rest);
    if (!k)
        return;
    log_msg(LOG_VERBOSE, "%zu folders lost messages since the last sync: pulled first", k);
    if (!r->smoves)
        r->smoves = xcalloc(1, sizeof *r->smoves);
    struct moves_server *m = r->smoves;
    m->lost = xcalloc(k, sizeof *m->lost);
    m->pulled = xcalloc(k, sizeof *m->pulled);
    for (size_t j = 0; j < k; j++)
        m->lost[j] = xstrdup(sel[order[from + j]].raw);
    m->nlost = k;
    qsort(m->lost, k, sizeof *m->lost, util_cmp_str);
}

/* ------------------------------------------------------------------ */
/* the source side: vanished rows */

static bool remote_has(const struct remote_msg *rm, size_t nr, uint32_t uid)
{
    return UTIL_FIND_UID(rm, nr, uid, uid) != NULL;
}

/* A dry run: the plan's local deletion of uid is left for later (reported
 * by moves_server_report_left unless a move takes it). */
static void hold_delete(struct plan *p, uint32_t uid)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (p->actions[i].op == PLAN_LOCAL_DELETE && p->actions[i].uid == uid) {
            memmove(&p->actions[i], &p->actions[i + 1], (p->n - i - 1) * sizeof *p->actions);
            p->n--;
            p->ndelete--;
            return;
        }
}

void moves_server_note_vanished(struct run *r, const struct selected *sel, int64_t folder_id,
                                const struct state_msg *st, size_t ns, struct local_msg *local, size_t nlocal,
                                const struct remote_msg *rm, size_t nr, struct plan *p)
{
    if (!r->defer_deletions && !r->opt->dry_run)
        return; /* the second pass: the moves were seen in the first */
    if (r->opt->dry_run && r->acct->mode == MODE_BACKUP)
        p = NULL; /* a backup's plan deletes nothing */
    struct moves_server *lm = r->smoves;
    const char *key = sel->raw;
    char **hit = lm && lm->nlost ? bsearch(&key, lm->lost, lm->nlost, sizeof *lm->lost, util_cmp_str) : NULL;
    if (hit)
        lm->pulled[hit - lm->lost] = true;
    /* The rows may be brief (a full listing's): the candidates' identity
     * is read by UID (few: vanished rows whose file is still here). */
    uint32_t *want = NULL;
    size_t nwant = 0, cap = 0;
    for (size_t i = 0; i < ns; i++) {
        const struct state_msg *s = &st[i];
        if (!s->uniq || !s->size || s->pending || remote_has(rm, nr, s->uid) ||
            !views_local_by_uniq(local, nlocal, s->uniq))
            continue;
        if (nwant == cap) {
            cap = cap ? 2 * cap : 16;
            want = xrealloc(want, cap * sizeof *want);
        }
        want[nwant++] = s->uid; /* ascending, as the rows */
    }
    struct state_msg *full = NULL;
    size_t nfull = 0;
    struct ms_error e;
    if (nwant && state_msg_get_uids(r->st, folder_id, want, nwant, &full, &nfull, &e) != MS_OK) {
        log_msg(LOG_VERBOSE, "%s: %s", sel->name, e.msg); /* no move seen: deleted here, downloaded there */
        nfull = 0;
    }
    free(want);
    struct state_placeholder *marked = NULL;
    size_t nmarked = 0;
    bool have_marks = false;
    for (size_t i = 0; i < nfull; i++) {
        const struct state_msg *s = &full[i];
        if (!s->uniq || (!s->message_id && !s->emailid) || !s->size || s->pending)
            continue;
        if (!have_marks && state_placeholder_list(r->st, folder_id, &marked, &nmarked, &e) != MS_OK)
            log_msg(LOG_VERBOSE, "%s: %s", sel->name, e.msg); /* a moved placeholder then loses its mark */
        have_marks = true;
        int mark = 0;
        for (size_t k = 0; k < nmarked && !mark; k++) /* few */
            if (marked[k].uid == s->uid)
                mark = marked[k].mark;
        if (!r->smoves)
            r->smoves = xcalloc(1, sizeof *r->smoves);
        struct moves_server *m = r->smoves;
        m->v = xrealloc(m->v, (m->n + 1) * sizeof *m->v);
        m->v[m->n++] = (struct vanished){.folder_id = folder_id, .path = xstrdup(sel->path),
                                         .name = xstrdup(sel->name), .uid = s->uid, .uniq = xstrdup(s->uniq),
                                         .flags = s->flags,
                                         .message_id = s->message_id ? xstrdup(s->message_id) : NULL,
                                         .emailid = s->emailid ? xstrdup(s->emailid) : NULL, .size = s->size,
                                         .placeholder = mark, .taken = false, .held = false};
        if (r->opt->dry_run && p) {
            hold_delete(p, s->uid);
            m->v[m->n - 1].held = true;
        }
    }
    state_msgs_free(full, nfull);
    state_placeholders_free(marked, nmarked);
}

bool moves_server_more_to_come(const struct run *r)
{
    const struct moves_server *m = r->smoves;
    for (size_t i = 0; m && i < m->nlost; i++)
        if (!m->pulled[i])
            return true;
    return false;
}

/* The result of the run's folder named name (display name), or NULL. */
static struct engine_folder_result *result_of(struct run *r, const char *name)
{
    for (size_t i = 0; i < r->res->nfolders; i++)
        if (r->res->folders[i].name && strcmp(r->res->folders[i].name, name) == 0)
            return &r->res->folders[i];
    return NULL;
}

void moves_server_report_left(struct run *r)
{
    struct moves_server *m = r->smoves;
    for (size_t i = 0; m && i < m->n; i++) {
        if (!m->v[i].held || m->v[i].taken)
            continue;
        dryrun_report(r->opt, &(struct engine_planned){.account = r->acct->name, .folder = m->v[i].name,
                                                      .kind = ENGINE_PLAN_DELETE_LOCAL, .uid = m->v[i].uid,
                                                      .size = 0, .count = 0, .flags = 0, .flags_removed = 0,
                                                      .file = NULL, .from = NULL, .from_uid = 0});
        /* its folder's count left it out with the step (hold_delete):
         * the summary and --json say the same as the plan */
        struct engine_folder_result *fres = result_of(r, m->v[i].name);
        if (fres)
            fres->deleted++;
    }
}

/* ------------------------------------------------------------------ */
/* the destination side: pairing and renaming */

struct ids {
    struct plan_identity *v;
    char **emailid; /* per entry of v: the server's id, or NULL */
    size_t n;
};

static void found_identity_oid(void *ctx, uint32_t uid, uint64_t size, const char *message_id, const char *emailid)
{
    struct ids *l = ctx;
    l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->emailid = xrealloc(l->emailid, (l->n + 1) * sizeof *l->emailid);
    l->emailid[l->n] = emailid ? xstrdup(emailid) : NULL;
    l->v[l->n++] = (struct plan_identity){.uid = uid, .uniq = NULL,
                                          .message_id = message_id ? xstrdup(message_id) : NULL, .size = size,
                                          .alt = {0}, .nalt = 0, .date = NULL, .from = NULL};
}

static void found_identity(void *ctx, uint32_t uid, uint64_t size, const char *message_id)
{
    found_identity_oid(ctx, uid, size, message_id, NULL);
}

static int cmp_vanished_emailid(const void *a, const void *b)
{
    const struct vanished *x = *(struct vanished *const *)a, *y = *(struct vanished *const *)b;
    return strcmp(x->emailid, y->emailid);
}

/* The first tier: each server message whose id equals an open candidate's
 * recorded id is that candidate (several candidates of one id: copies of
 * one message, taken in order). Pairs go to pm (room for rids->n), their
 * candidates' uniq naming them as plan_match's do; the paired server
 * messages lose their Message-ID in rids, so plan_match leaves them. */
static size_t match_emailid(struct ids *rids, struct vanished **cv, size_t nc, struct plan_match *pm)
{
    struct vanished **by = xmalloc((nc + 1) * sizeof *by);
    size_t nb = 0, np = 0;
    for (size_t j = 0; j < nc; j++)
        if (cv[j]->emailid)
            by[nb++] = cv[j];
    qsort(by, nb, sizeof *by, cmp_vanished_emailid);
    bool *used = xcalloc(nb + 1, sizeof *used);
    for (size_t i = 0; i < rids->n && nb; i++) {
        if (!rids->emailid[i])
            continue;
        struct vanished key = {.emailid = rids->emailid[i]}, *kp = &key;
        struct vanished **hit = bsearch(&kp, by, nb, sizeof *by, cmp_vanished_emailid);
        if (!hit)
            continue;
        while (hit > by && strcmp(hit[-1]->emailid, key.emailid) == 0)
            hit--;
        for (; hit < by + nb && strcmp((*hit)->emailid, key.emailid) == 0; hit++)
            if (!used[hit - by])
                break;
        if (hit == by + nb || strcmp((*hit)->emailid, key.emailid) != 0)
            continue;
        used[hit - by] = true;
        pm[np++] = (struct plan_match){.uid = rids->v[i].uid, .uniq = (*hit)->uniq};
        free((char *)rids->v[i].message_id);
        rids->v[i].message_id = NULL;
    }
    free(used);
    free(by);
    return np;
}

static bool taken_by(const struct plan_match *pm, size_t n, const char *uniq)
{
    for (size_t k = 0; k < n; k++)
        if (pm[k].uniq == uniq)
            return true;
    return false;
}

static struct plan_identity candidate(const struct vanished *v)
{
    return (struct plan_identity){.uid = 0, .uniq = v->uniq, .message_id = v->message_id, .size = v->size,
                                  .alt = {0}, .nalt = 0, .date = NULL, .from = NULL};
}

/* The second tier, for what the ids left (pid: the first tier's pairs):
 * (Message-ID, size) as plan_match has it, but never between a server
 * message and a row whose ids are both known (they differ, or the first
 * tier had paired them: two different messages sharing a Message-ID and
 * a size). So server messages with an id first meet the rows without
 * one, then those without an id meet every row left. *out: malloc'd. */
static int match_message_id(const struct ids *rids, struct vanished **cv, size_t nc, const struct plan_match *pid,
                            size_t nid, struct plan_match **out, size_t *nout)
{
    struct plan_identity *with = xmalloc((rids->n + 1) * sizeof *with), *without = xmalloc((rids->n + 1) * sizeof *without);
    struct plan_identity *c = xmalloc((nc + 1) * sizeof *c);
    size_t nw = 0, nwo = 0, ncand = 0;
    for (size_t i = 0; i < rids->n; i++)
        if (rids->v[i].message_id) {
            if (rids->emailid && rids->emailid[i])
                with[nw++] = rids->v[i];
            else
                without[nwo++] = rids->v[i];
        }
    for (size_t j = 0; j < nc; j++)
        if (!cv[j]->emailid && !taken_by(pid, nid, cv[j]->uniq))
            c[ncand++] = candidate(cv[j]);
    struct plan_match *m1 = NULL, *m2 = NULL;
    size_t n1 = 0, n2 = 0;
    int rc = plan_match(with, nw, c, ncand, &m1, &n1);
    ncand = 0;
    for (size_t j = 0; rc == 0 && j < nc; j++)
        if (!taken_by(pid, nid, cv[j]->uniq) && !taken_by(m1, n1, cv[j]->uniq))
            c[ncand++] = candidate(cv[j]);
    if (rc == 0)
        rc = plan_match(without, nwo, c, ncand, &m2, &n2);
    if (rc == 0) {
        *out = xmalloc((n1 + n2 + 1) * sizeof **out);
        memcpy(*out, m1, n1 * sizeof *m1);
        memcpy(*out + n1, m2, n2 * sizeof *m2);
        *nout = n1 + n2;
    }
    free(m1);
    free(m2);
    free(c);
    free(with);
    free(without);
    return rc;
}

/* One pair: the new UID in this folder and the vanished row it is. */
struct pair {
    uint32_t uid;
    const struct remote_msg *srv; /* the listing's entry of uid */
    struct vanished *from;
    const char *emailid;          /* the server's id of uid, or NULL */
    unsigned local_flags; /* the file's flags once moved */
    int outcome;          /* 0 moved; 1 gone; 2 other file system; -1 not tried */
};

/* The local flags of a moved file: its flags in A, with what the server
 * changed since A's last sync (A's recorded flags -> B's flags) applied,
 * so a local change not yet pushed survives (pushed for B later). */
static unsigned moved_flags(unsigned local, unsigned synced, unsigned server)
{
    unsigned added = server & ~synced, removed = synced & ~server;
    return (local & ~removed) | added;
}

/* Rename the pairs' files (step 2): A's folders opened one at a time, in
 * the order of the pairs; then A's and B's directories fsynced (step 3). */
static int rename_files(struct run *r, struct maildir_folder *mf, struct pair *pv, size_t np, struct ms_error *err)
{
    struct maildir_folder *src = NULL;
    const char *src_path = NULL;
    int rc = MS_OK;
    for (size_t i = 0; i < np && rc == MS_OK; i++) {
        struct pair *p = &pv[i];
        if (!src_path || strcmp(src_path, p->from->path) != 0) {
            if (src && (rc = maildir_sync_dirs(src, err)))
                break;
            maildir_folder_close(src);
            src = NULL;
            src_path = p->from->path;
            if ((rc = maildir_folder_open(r->rootfd, src_path, false, &src, err)))
                break;
        }
        struct local_msg l = {0};
        int f = maildir_find_hint(src, p->from->uniq, p->from->flags, &l, err);
        if (f == 1) {
            p->outcome = 1;
            continue;
        }
        if (f != MS_OK) {
            rc = f;
            break;
        }
        p->local_flags = moved_flags(l.flags, p->from->flags, p->srv->flags);
        int x = maildir_move_to(src, &l, mf, p->local_flags, err);
        free(l.uniq);
        free(l.name);
        if (x == MS_OK || x == 1 || x == 2)
            p->outcome = x;
        else
            rc = x;
        if (x == 2)
            log_msg(LOG_WARN, "%s and %s are on different file systems: a message moved between them on the "
                              "server is downloaded again", p->from->name, maildir_folder_path(mf));
    }
    if (rc == MS_OK && src)
        rc = maildir_sync_dirs(src, err);
    maildir_folder_close(src);
    if (rc == MS_OK)
        rc = maildir_sync_dirs(mf, err);
    return rc;
}

/* Steps 1-4 for the pairs. */
static int apply_moves(struct run *r, struct maildir_folder *mf, int64_t folder_id, struct pair *pv, size_t np,
                       struct ms_error *err)
{
    int rc = state_begin(r->st, err);
    for (size_t i = 0; i < np && rc == MS_OK; i++) {
        const struct pair *p = &pv[i];
        struct state_msg row = {.uid = p->uid, .uniq = p->from->uniq, .flags = p->srv->flags,
                                .keywords = p->srv->keywords, .size = p->from->size,
                                .message_id = p->from->message_id, .hash = NULL, .pending = true,
                                .emailid = (char *)(p->emailid ? p->emailid : p->from->emailid)};
        struct state_server_move jm = {folder_id, p->uid, p->from->folder_id, p->from->uid};
        rc = state_msg_put(r->st, folder_id, &row, err);
        if (rc == MS_OK && p->from->placeholder) /* with the row: a recovery confirms both */
            rc = state_msg_set_placeholder(r->st, folder_id, p->uid, p->from->placeholder, err);
        if (rc == MS_OK)
            rc = state_server_move_put(r->st, &jm, err);
    }
    if (rc == MS_OK)
        rc = state_commit(r->st, err);
    else
        state_rollback(r->st);
    if (rc)
        return rc;
    step(1);
    rc = rename_files(r, mf, pv, np, err);
    if (rc)
        return rc; /* the journal tells the next run */
    step(2);
    rc = state_begin(r->st, err);
    for (size_t i = 0; i < np && rc == MS_OK; i++) {
        const struct pair *p = &pv[i];
        if (p->outcome == 0) {
            rc = state_msg_confirm(r->st, folder_id, p->uid, err);
            if (rc == MS_OK)
                rc = state_msg_delete(r->st, p->from->folder_id, p->from->uid, err);
        } else {
            rc = state_msg_delete(r->st, folder_id, p->uid, err); /* downloaded instead */
        }
        if (rc == MS_OK)
            rc = state_server_move_forget(r->st, folder_id, p->uid, err);
    }
    if (rc == MS_OK)
        rc = state_commit(r->st, err);
    else
        state_rollback(r->st);
    if (rc == MS_OK)
        step(3);
    return rc;
}

/* The plan without the fetches of the moved UIDs (p keeps its memory). */
static void drop_fetches(struct plan *p, const struct pair *pv, size_t np)
{
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct plan_action *a = &p->actions[i];
        bool moved = false;
        if (a->op == PLAN_FETCH || a->op == PLAN_PLACEHOLDER)
            for (size_t j = 0; j < np && !moved; j++)
                moved = pv[j].uid == a->uid && pv[j].outcome == 0;
        if (moved && a->op == PLAN_PLACEHOLDER) {
            p->nplaceholder--;
            continue;
        }
        if (moved) {
            p->nfetch--;
            p->fetch_bytes -= a->size;
            continue;
        }
        p->actions[k++] = *a;
    }
    p->n = k;
}

static int cmp_pair_source(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    int c = strcmp(x->from->path, y->from->path);
    return c ? c : (x->uid > y->uid) - (x->uid < y->uid);
}

int moves_server_take(struct run *r, const struct selected *sel, struct maildir_folder *mf, int64_t folder_id,
                      struct plan *p, const struct remote_msg *rm, size_t nr, size_t *nmoved, struct ms_error *err)
{
    struct moves_server *m = r->smoves;
    size_t open = 0;
    for (size_t i = 0; m && i < m->n; i++)
        open += !m->v[i].taken && m->v[i].folder_id != folder_id;
    /* the downloads, and the placeholders (max_size): a placeholder moved
     * keeps its file, its local flags and its mark */
    if (!open || !(p->nfetch + p->nplaceholder) || (!mf && !r->opt->dry_run))
        return MS_OK;
    uint32_t *uids = xmalloc((p->nfetch + p->nplaceholder) * sizeof *uids);
    size_t nu = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->actions[i].op == PLAN_FETCH || p->actions[i].op == PLAN_PLACEHOLDER)
            uids[nu++] = p->actions[i].uid;
    qsort(uids, nu, sizeof *uids, util_cmp_u32);
    struct ids rids = {0};
    struct vanished **cv = xmalloc(open * sizeof *cv);
    size_t nc = 0;
    for (size_t i = 0; i < m->n; i++)
        if (!m->v[i].taken && m->v[i].folder_id != folder_id)
            cv[nc++] = &m->v[i];
    struct plan_match *pm = NULL, *pid = NULL;
    size_t npm = 0, nid = 0;
    struct pair *pv = NULL;
    size_t np = 0;
    bool oid = remote_can(r->remote, REMOTE_OBJECTID) && r->remote->ops->fetch_identity_oid;
    int rc = oid ? r->remote->ops->fetch_identity_oid(r->remote, uids, nu, found_identity_oid, &rids, err)
                 : r->remote->ops->fetch_identity(r->remote, uids, nu, found_identity, &rids, err);
    if (rc)
        goto out;
    pid = xmalloc((rids.n + 1) * sizeof *pid);
    nid = oid ? match_emailid(&rids, cv, nc, pid) : 0;
    if (match_message_id(&rids, cv, nc, pid, nid, &pm, &npm) != 0) {
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
        goto out;
    }
    pv = xcalloc(nid + npm + 1, sizeof *pv);
    size_t by_id = 0;
    for (size_t i = 0; i < nid + npm; i++) {
        const struct plan_match *x = i < nid ? &pid[i] : &pm[i - nid];
        struct vanished *v = NULL;
        for (size_t j = 0; j < nc && !v; j++)
            if (cv[j]->uniq == x->uniq && !cv[j]->taken)
                v = cv[j];
        const struct remote_msg *srv = UTIL_FIND_UID(rm, nr, uid, x->uid);
        if (!v || !srv)
            continue;
        const char *eid = NULL;
        for (size_t k = 0; k < rids.n && !eid && rids.emailid; k++)
            if (rids.v[k].uid == x->uid)
                eid = rids.emailid[k] ? rids.emailid[k] : "";
        v->taken = true;
        by_id += i < nid;
        pv[np++] = (struct pair){.uid = x->uid, .srv = srv, .from = v, .emailid = eid && *eid ? eid : NULL,
                                 .local_flags = 0, .outcome = -1};
    }
    if (np && oid)
        log_msg(LOG_VERBOSE, "%s: server moves paired: %zu by the server's message id (EMAILID / X-GM-MSGID), "
                             "%zu by Message-ID and size", sel->name, by_id, np - by_id);
    else if (np)
        log_msg(LOG_VERBOSE, "%s: server moves paired: %zu by Message-ID and size (the server offers no message id)",
                sel->name, np);
    if (np == 0)
        goto out;
    qsort(pv, np, sizeof *pv, cmp_pair_source);
    if (r->opt->dry_run) {
        for (size_t i = 0; i < np; i++) {
            pv[i].outcome = 0;
            struct engine_planned s = {.account = r->acct->name, .folder = sel->name,
                                       .kind = ENGINE_PLAN_MOVE_LOCAL, .uid = pv[i].uid,
                                       .size = pv[i].from->size, .count = 0, .flags = pv[i].srv->flags,
                                       .flags_removed = 0, .file = NULL, .from = pv[i].from->name,
                                       .from_uid = pv[i].from->uid};
            dryrun_report(r->opt, &s);
        }
    } else if ((rc = apply_moves(r, mf, folder_id, pv, np, err))) {
        goto out;
    }
    size_t moved = 0;
    for (size_t i = 0; i < np; i++)
        moved += pv[i].outcome == 0;
    *nmoved += moved;
    drop_fetches(p, pv, np);
    if (moved)
        log_msg(LOG_INFO, "%s: %zu messages another client moved here on the server %s", sel->name, moved,
                r->opt->dry_run ? "would be renamed from their folders (no download)"
                                : "renamed from their folders (no download)");
out:
    free(pv);
    free(pm);
    free(pid);
    free(cv);
    free(uids);
    for (size_t i = 0; i < rids.n; i++) {
        free((char *)rids.v[i].message_id);
        if (rids.emailid)
            free(rids.emailid[i]);
    }
    free(rids.v);
    free(rids.emailid);
    return rc;
}

/* ------------------------------------------------------------------ */
/* recovery */

static const struct state_folder *folder_by_id(const struct state_folder *f, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].id == id)
            return &f[i];
    return NULL;
}

/* Where is the destination's file? 0 there, 1 not (or no row), else an
 * error. */
static int dest_has_file(struct run *r, const struct state_folder *dst, uint32_t uid, struct ms_error *err)
{
    struct state_msg *row = NULL;
    size_t nrow = 0;
    int rc = state_msg_get_uids(r->st, dst->id, &uid, 1, &row, &nrow, err);
    if (rc)
        return rc;
    int found = 1;
    if (nrow && row[0].uniq && maildir_folder_exists(r->rootfd, dst->path)) {
        struct maildir_folder *mf = NULL;
        struct local_msg l = {0};
        if ((rc = maildir_folder_open(r->rootfd, dst->path, false, &mf, err)) == MS_OK) {
            found = maildir_find(mf, row[0].uniq, &l, err);
            if (found == MS_OK) {
                free(l.uniq);
                free(l.name);
            } else if (found != 1) {
                rc = found;
            }
            if (found == MS_OK)
                rc = maildir_sync_dirs(mf, err); /* the rename durable before the rows say so */
            maildir_folder_close(mf);
        }
    }
    state_msgs_free(row, nrow);
    return rc ? rc : found;
}

int moves_server_recover(struct run *r, struct ms_error *err)
{
    struct state_server_move *j = NULL;
    size_t nj = 0;
    struct state_folder *f = NULL;
    size_t nf = 0;
    int rc = state_server_move_list(r->st, &j, &nj, err);
    if (rc || nj == 0)
        goto out;
    if ((rc = state_folder_list_brief(r->st, &f, &nf, err)))
        goto out;
    log_msg(LOG_VERBOSE, "finishing %zu local moves of an interrupted run", nj);
    int *there = xcalloc(nj, sizeof *there);
    for (size_t i = 0; i < nj && rc == MS_OK; i++) {
        const struct state_folder *dst = folder_by_id(f, nf, j[i].folder_id);
        const struct state_folder *src = folder_by_id(f, nf, j[i].from_folder_id);
        there[i] = dst ? dest_has_file(r, dst, j[i].uid, err) : 1;
        if (there[i] < 0 || there[i] > 1) {
            rc = there[i];
            break;
        }
        if (there[i] == 0 && src && maildir_folder_exists(r->rootfd, src->path)) {
            struct maildir_folder *mf = NULL;
            if ((rc = maildir_folder_open(r->rootfd, src->path, false, &mf, err)) == MS_OK)
                rc = maildir_sync_dirs(mf, err);
            maildir_folder_close(mf);
        }
    }
    if (rc == MS_OK)
        rc = state_begin(r->st, err);
    for (size_t i = 0; i < nj && rc == MS_OK; i++) {
        if (there[i] == 0) {
            rc = state_msg_confirm(r->st, j[i].folder_id, j[i].uid, err);
            if (rc == MS_OK)
                rc = state_msg_delete(r->st, j[i].from_folder_id, j[i].from_uid, err);
        } else {
            rc = state_msg_delete(r->st, j[i].folder_id, j[i].uid, err);
        }
        if (rc == MS_OK)
            rc = state_server_move_forget(r->st, j[i].folder_id, j[i].uid, err);
    }
    if (rc == MS_OK)
        rc = state_commit(r->st, err);
    else
        state_rollback(r->st);
    free(there);
out:
    free(j);
    state_folders_free(f, nf);
    return rc;
}
