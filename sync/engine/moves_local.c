/* SPDX-License-Identifier: MIT */
/*
 * moves_local.c: a message moved between local folders becomes a move on
 * the server (issue 16, point 4, the local direction).
 *
 * A mail reader moves a message by writing it into the other folder and
 * removing the old file: mutt under a new name, notmuch/afew keeping the
 * name, a user with `cp` then `rm`. Seen folder by folder that is an
 * upload (keywords lost, INTERNALDATE now) and a deletion. Here, before
 * the first pass, every selected folder's rows whose file is gone are
 * learnt (moves_local_learn; a folder whose change stamp says nothing
 * happened since its last push has none) and paired with the new files
 * of the other folders: (a) the same unique name, with the row's size and
 * Message-ID, or (b) another name with the row's Message-ID and size
 * (exactly one gone row of the account has them; more is ambiguous and
 * stays an upload + deletion). Only the paired rows are kept.
 *
 * Placeholders (max_size, placeholders.c) need more: a placeholder is not
 * the message, so its server copy is the only whole one, and a placeholder
 * is never uploaded. A placeholder's size is not its message's: (b) takes
 * the size its X-Mailsync-Placeholder field records, and the destination
 * row gets the placeholder mark whatever the source row says. A gone row
 * that a placeholder file stands for but which cannot be moved is HELD,
 * never deleted on the server: (c) a new placeholder file not paired by
 * (a) or (b) (edited, ambiguous, in the gone row's own folder, or in a
 * folder not synced yet) holds every gone row with its Message-ID (every
 * gone placeholder row when it has none), and a paired placeholder whose
 * server move cannot be done is held rather than dropped. A held row
 * stands in its folder's listing as a pending move does, its placeholder
 * is not uploaded, and a warning says so at every run until it can be
 * paired (the next run, once a new folder is synced) or the user removes
 * the placeholder (then the deletion goes to the server as for any
 * message).
 *
 * The source folder's push leaves a paired message alone (it stands in
 * its listing, moves_local_stand_in: no removal, no weight for the
 * mass-deletion guard). The destination folder's push moves it on the
 * server (moves_local_into) and records both folders' rows in one
 * transaction; the file is not uploaded (moves_local_take_appends).
 *
 * Crash safety: the move goes through the trash journal (table trashing,
 * push_delete.c), the destination being the folder instead of `trash`:
 * each message is journalled (committed) before its UID MOVE, or its UID
 * COPY + \Deleted + UID EXPUNGE without MOVE, with the destination's
 * UIDVALIDITY and UIDNEXT. The copy is found afterwards by the COPYUID's
 * UID or by size and Message-ID from that UIDNEXT on (push_find_copies;
 * UID MOVE gives no COPYUID here). A run that died anywhere in between
 * leaves the journal row, the source row and the file in its new folder:
 * the next run pairs them again, finds the copy and only removes what is
 * left in the source, so the message ends once on each side. If the file
 * is gone from its new folder too by then (the user deleted the message
 * after moving it), nothing pairs it, and if it moved on to a third
 * folder it pairs with that one: moves_local_settle_gone() finds the copy
 * the dead run made and settles the move first (recorded in the
 * destination, whose push then deletes it as any message deleted there,
 * or from where the pairing then moves it on; a copy whose original the
 * source still holds is removed), so the copy never comes back as new
 * mail in the destination. The journal rows of moves are marked
 * (state_trash_mark_move, in the same transaction), which tells a move
 * into the trash folder from a deletion's row (a deletion goes to the
 * trash: its copy comes down there; a move's copy whose file is gone is
 * deleted there, and one the source still holds stays while the original
 * goes, as the move would have done), and lets the settling act when the
 * destination is not in the run (`--folder A`: its row is recorded there,
 * and that folder's next push deletes it).
 */
#include "sync/engine/push_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/engine/dryrun.h"
#include "sync/flags.h"
#include "sync/log.h"
#include "sync/message.h"
#include "sync/util.h"

/* ------------------------------------------------------------------ */
/* learning the moves */

/* A local file its folder's state does not know. */
struct newfile {
    const struct selected *sel;
    struct local_msg l; /* owns its strings */
    char *message_id;
    uint64_t size; /* CRLF */
    bool placeholder; /* a placeholder (ours or mbsync's): size is its field's, or the file's */
    bool unsynced;    /* its folder was never synced: only a placeholder here matters (c) */
    bool readable;
    bool paired;
};

struct learnt {
    struct lmove *gone;
    size_t ngone, capg;
    struct newfile *nf;
    size_t nnf, capn;
};

static void lmove_free_one(struct lmove *m)
{
    free(m->uniq);
    free(m->keywords);
    free(m->message_id);
    free(m->emailid);
    free(m->dst_uniq);
}

void moves_local_free(struct run *r)
{
    for (size_t i = 0; i < r->nlmoves; i++)
        lmove_free_one(&r->lmoves[i]);
    free(r->lmoves);
    r->lmoves = NULL;
    r->nlmoves = 0;
}

static bool pushable(const struct state_folder *f)
{
    return f->id && f->last_sync && f->uidvalidity;
}

static bool left_out_has(const struct local_msg *left, size_t n, const char *uniq)
{
    for (size_t i = 0; i < n; i++)
        if (left[i].uniq && strcmp(left[i].uniq, uniq) == 0)
            return true;
    return false;
}

static void add_newfile(struct learnt *L, const struct selected *sel, const struct local_msg *l, bool unsynced)
{
    if (L->nnf == L->capn) {
        L->capn = L->capn ? 2 * L->capn : 16;
        L->nf = xrealloc(L->nf, L->capn * sizeof *L->nf);
    }
    struct newfile *f = &L->nf[L->nnf++];
    memset(f, 0, sizeof *f);
    f->sel = sel;
    f->l = *l;
    f->l.uniq = xstrdup(l->uniq);
    f->l.name = xstrdup(l->name);
    f->unsynced = unsynced;
}

/* A folder never synced (no push yet): all its files are new, and only a
 * placeholder among them counts (rule (c) at the top). */
static void learn_unsynced(struct run *r, const struct selected *sel, struct learnt *L)
{
    struct ms_error e = {0};
    struct maildir_folder *mf = NULL;
    struct local_msg *local = NULL;
    size_t nlocal = 0;
    if (maildir_folder_open(r->rootfd, sel->path, false, &mf, &e) == MS_OK &&
        maildir_scan_names(mf, &local, &nlocal, &e) == MS_OK)
        for (size_t i = 0; i < nlocal; i++)
            add_newfile(L, sel, &local[i], true);
    maildir_msgs_free(local, nlocal);
    maildir_folder_close(mf);
}

/* One folder: its gone rows and its new files onto *L. */
static void learn_folder(struct run *r, const struct selected *sel, struct learnt *L)
{
    struct state_folder sf = {0};
    struct ms_error e = {0};
    struct maildir_stamp stamp;
    struct maildir_folder *mf = NULL;
    struct views_push v = {0};
    bool keep = false;
    if (r->rootfd < 0 || !maildir_folder_exists(r->rootfd, sel->path) ||
        state_folder_get(r->st, sel->raw, &sf, &e) != MS_OK)
        goto out;
    if (!pushable(&sf)) {
        learn_unsynced(r, sel, L);
        goto out;
    }
    if (maildir_change_stamp(r->rootfd, sel->path, &stamp) == 0 && !sf.appends_count && !sf.pending_count &&
        push_stamp_recorded(r, sf.id, &stamp))
        goto out; /* nothing added or removed since its last push */
    /* The rows brief (no Message-ID, hash, server id: what grows with the
     * folder) and only those that changed (views_push_scan: a file listed
     * with its row's name and flags is neither here), and in full only
     * those whose file is gone. */
    const struct views_push_want none = {.uids = NULL, .nuids = 0, .uniqs = NULL, .nuniqs = 0};
    if (maildir_folder_open(r->rootfd, sel->path, false, &mf, &e) != MS_OK ||
        views_push_scan(r->st, sf.id, mf, &none, &v, &e) != MS_OK) {
        log_msg(LOG_VERBOSE, "%s: no local moves looked for: %s", sel->name, e.msg);
        goto out;
    }
    const struct state_msg *rows = v.rows;
    struct local_msg *local = v.local;
    size_t nrows = v.nrows, nlocal = v.nlocal;
    size_t nleft = 0;
    struct local_msg *left = maildir_scan_left_out(mf, &nleft);
    /* the push of the folder may use this scan (views_push_keep) */
    keep = nleft == 0;
    uint32_t *gone_uids = xmalloc((nrows ? nrows : 1) * sizeof *gone_uids);
    size_t ngone_uids = 0;
    for (size_t i = 0; i < nrows; i++) {
        const struct state_msg *s = &rows[i];
        if (s->uniq && !s->pending && !views_local_by_uniq(local, nlocal, s->uniq) &&
            !left_out_has(left, nleft, s->uniq))
            gone_uids[ngone_uids++] = s->uid;
    }
    struct state_msg *gone = NULL;
    size_t ngone = 0;
    if (ngone_uids && state_msg_get_uids(r->st, sf.id, gone_uids, ngone_uids, &gone, &ngone, &e) != MS_OK) {
        log_msg(LOG_VERBOSE, "%s: no local moves looked for: %s", sel->name, e.msg);
        free(gone_uids);
        goto out;
    }
    free(gone_uids);
    struct state_placeholder *marked = NULL;
    size_t nmarked = 0;
    if (ngone && state_placeholder_list(r->st, sf.id, &marked, &nmarked, &e) != MS_OK)
        log_msg(LOG_VERBOSE, "%s: %s", sel->name, e.msg); /* a moved placeholder then loses its mark */
    for (size_t i = 0; i < ngone; i++) {
        const struct state_msg *s = &gone[i];
        if (!s->uniq || s->pending)
            continue;
        int mark = 0;
        for (size_t k = 0; k < nmarked && !mark; k++) /* few */
            if (marked[k].uid == s->uid)
                mark = marked[k].mark;
        if (L->ngone == L->capg) {
            L->capg = L->capg ? 2 * L->capg : 16;
            L->gone = xrealloc(L->gone, L->capg * sizeof *L->gone);
        }
        L->gone[L->ngone++] = (struct lmove){
            .src = sel, .dst = NULL, .src_id = sf.id, .uid = s->uid, .uniq = xstrdup(s->uniq),
            .flags = s->flags, .keywords = s->keywords ? xstrdup(s->keywords) : NULL, .size = s->size,
            .message_id = s->message_id ? xstrdup(s->message_id) : NULL,
            .emailid = s->emailid ? xstrdup(s->emailid) : NULL, .dst_uniq = NULL, .twin = false,
            .placeholder = mark, .dst_placeholder = false, .state = LMOVE_PENDING};
    }
    state_placeholders_free(marked, nmarked);
    state_msgs_free(gone, ngone);
    size_t nidx = 0;
    const char **idx = rematch_uniq_index(rows, nrows, &nidx);
    for (size_t i = 0; i < nlocal; i++) {
        if (!rematch_index_has(idx, nidx, local[i].uniq))
            add_newfile(L, sel, &local[i], false);
    }
    free(idx);
out:
    if (keep)
        views_push_keep(r, sf.id, &stamp, &v);
    else
        views_push_free(&v);
    maildir_folder_close(mf);
    state_folder_free(&sf);
}

/* A new file of a folder never synced: only its head, and only a
 * placeholder is readable (rule (c)). */
static void read_unsynced(struct maildir_folder *mf, struct newfile *f, char **buf)
{
    if (!*buf)
        *buf = xmalloc(PLACEHOLDER_WINDOW);
    ssize_t n = placeholder_head(mf, &f->l, *buf);
    f->placeholder = n > 0 && message_has_placeholder_marks(*buf, (size_t)n);
    f->readable = f->placeholder;
    if (f->placeholder)
        f->message_id = message_header(*buf, (size_t)n, "Message-ID");
}

/* The identity (Message-ID, CRLF size) of the new files, when some row is
 * gone: a placeholder's size is the one its field records (its message's). */
static void read_identities(struct run *r, struct learnt *L)
{
    char *buf = NULL;
    for (size_t i = 0; i < L->nnf;) {
        const struct selected *sel = L->nf[i].sel;
        size_t end = i;
        while (end < L->nnf && L->nf[end].sel == sel)
            end++;
        struct maildir_folder *mf = NULL;
        struct ms_error e;
        if (maildir_folder_open(r->rootfd, sel->path, false, &mf, &e) == MS_OK) {
            for (size_t k = i; k < end; k++) {
                struct newfile *f = &L->nf[k];
                if (f->unsynced) {
                    read_unsynced(mf, f, &buf);
                    continue;
                }
                int fd = maildir_open_msg(mf, &f->l, &e);
                struct message_identity id;
                f->readable = fd >= 0 && message_identity_read(fd, &id) == 0;
                if (f->readable) {
                    f->message_id = id.message_id;
                    f->placeholder = id.placeholder_marks; /* an edited one too: held, never uploaded */
                    f->size = f->placeholder && id.placeholder_size ? id.placeholder_size : id.size;
                    id.message_id = NULL;
                }
                if (fd >= 0) {
                    message_identity_free(&id);
                    close(fd);
                }
            }
        }
        maildir_folder_close(mf);
        i = end;
    }
    free(buf);
}

static int cmp_gone_uniq(const void *a, const void *b)
{
    const struct lmove *x = *(const struct lmove *const *)a, *y = *(const struct lmove *const *)b;
    return strcmp(x->uniq, y->uniq);
}

static int cmp_ident(const struct lmove *x, uint64_t size, const char *mid)
{
    if (x->size != size)
        return x->size < size ? -1 : 1;
    return strcmp(x->message_id ? x->message_id : "", mid ? mid : "");
}

static int cmp_gone_ident(const void *a, const void *b)
{
    const struct lmove *x = *(const struct lmove *const *)a, *y = *(const struct lmove *const *)b;
    return cmp_ident(x, y->size, y->message_id);
}

/* The first of the n (sorted by cmp) gone rows that compare equal to key,
 * as an index, or n. */
static size_t lower_bound(struct lmove **v, size_t n, const void *key, int (*cmp)(const struct lmove *, const void *))
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp(v[mid], key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int cmp_to_uniq(const struct lmove *x, const void *key)
{
    return strcmp(x->uniq, key);
}

static int cmp_to_file(const struct lmove *x, const void *key)
{
    const struct newfile *f = key;
    return cmp_ident(x, f->size, f->message_id);
}

static void pair(struct lmove *g, struct newfile *f)
{
    g->dst = f->sel;
    g->dst_uniq = xstrdup(f->l.uniq);
    g->dst_placeholder = f->placeholder;
    f->paired = true;
}

/* A placeholder renamed within its own folder (a reader that gives files
 * new unique names): the same message, so its row takes the new name (no
 * server operation, nothing uploaded, nothing deleted). Exactly one gone
 * row of the folder with its Message-ID and the size its field records.
 * Under --dry-run it is held (nothing planned for it). Returns how many. */
static size_t rename_placeholders(struct run *r, struct learnt *L)
{
    size_t done = 0;
    for (size_t i = 0; i < L->nnf; i++) {
        struct newfile *f = &L->nf[i];
        if (f->paired || f->unsynced || !f->readable || !f->placeholder || !f->message_id || !f->message_id[0])
            continue;
        struct lmove *hit = NULL;
        size_t n = 0;
        for (size_t k = 0; k < L->ngone; k++) {
            struct lmove *g = &L->gone[k];
            if (g->src == f->sel && !g->dst && g->state == LMOVE_PENDING && g->size == f->size &&
                push_same_id(g->message_id, f->message_id))
                hit = g, n++;
        }
        if (n != 1)
            continue;
        const char *name = log_escape(f->l.name, strlen(f->l.name), 100);
        if (r->opt->dry_run) {
            pair(hit, f);
            hit->state = LMOVE_HELD;
            log_msg(LOG_VERBOSE, "%s: %s is the placeholder of UID %u under a new name: its record would take it",
                    f->sel->name, name, hit->uid);
            continue;
        }
        struct ms_error e;
        if (state_msg_set_uniq(r->st, hit->src_id, hit->uid, f->l.uniq, &e) != MS_OK) {
            log_msg(LOG_VERBOSE, "%s: %s", f->sel->name, e.msg); /* then held below */
            continue;
        }
        f->paired = true;
        hit->state = LMOVE_DROPPED; /* nothing left to do for it */
        hit->dst = NULL;
        done++;
        log_msg(LOG_VERBOSE, "%s: %s is the placeholder of UID %u under a new name: recorded so", f->sel->name, name,
                hit->uid);
    }
    return done;
}

/* Rule (c) (top of the file): the gone rows a placeholder nobody paired
 * stands for are held. Returns how many. */
static size_t hold_for_placeholders(struct learnt *L)
{
    size_t held = 0;
    for (size_t i = 0; i < L->nnf; i++) {
        struct newfile *f = &L->nf[i];
        if (f->paired || !f->readable || !f->placeholder)
            continue;
        bool has_id = f->message_id && f->message_id[0];
        for (size_t k = 0; k < L->ngone; k++) {
            struct lmove *g = &L->gone[k];
            bool stands_for = has_id ? push_same_id(g->message_id, f->message_id) : g->placeholder != 0;
            if (g->dst || g->state != LMOVE_PENDING || !stands_for)
                continue;
            pair(g, f);
            g->state = LMOVE_HELD;
            held++;
            log_msg(LOG_WARN, "%s: %s is a placeholder that could not be paired with the message it stands for "
                              "(UID %u of %s, gone from there locally): %s; that message stays on the server and "
                              "the placeholder is not uploaded (remove the placeholder to delete the message)",
                    f->sel->name, log_escape(f->l.name, strlen(f->l.name), 100), g->uid, g->src->name,
                    f->unsynced ? "its folder is not synced yet (the next run moves it)"
                    : g->src == f->sel ? "it has another name in the same folder"
                                       : "its Message-ID and recorded size match no single gone message");
        }
    }
    return held;
}

void moves_local_learn(struct run *r, const struct selected *sel, size_t nsel)
{
    struct learnt L = {0};
    moves_local_free(r);
    for (size_t i = 0; i < nsel; i++)
        learn_folder(r, &sel[i], &L);
    size_t by_name = 0, by_id = 0, ambiguous = 0, held = 0;
    if (L.ngone && L.nnf) {
        read_identities(r, &L);
        struct lmove **v = xcalloc(L.ngone, sizeof *v);
        for (size_t i = 0; i < L.ngone; i++)
            v[i] = &L.gone[i];
        /* Gone rows without a Message-ID that share their size with another
         * such row are not paired: after a UID MOVE (no COPYUID) their
         * copies are told apart by size and Message-ID alone. */
        qsort(v, L.ngone, sizeof *v, cmp_gone_ident);
        for (size_t i = 0; i < L.ngone;) {
            size_t end = i + 1;
            while (end < L.ngone && cmp_gone_ident(&v[i], &v[end]) == 0)
                end++;
            if (end - i > 1 && (!v[i]->message_id || !v[i]->message_id[0]))
                for (size_t k = i; k < end; k++)
                    v[k]->twin = true;
            i = end;
        }
        /* (a) the name kept: one gone row of another folder, the same message */
        qsort(v, L.ngone, sizeof *v, cmp_gone_uniq);
        for (size_t i = 0; i < L.nnf; i++) {
            struct newfile *f = &L.nf[i];
            struct lmove *hit = NULL;
            size_t n = 0;
            if (f->unsynced)
                continue;
            for (size_t k = lower_bound(v, L.ngone, f->l.uniq, cmp_to_uniq);
                 k < L.ngone && strcmp(v[k]->uniq, f->l.uniq) == 0; k++)
                if (v[k]->src != f->sel) {
                    hit = v[k];
                    n++;
                }
            /* a placeholder has the message's name and Message-ID, not its size */
            if (n == 1 && !hit->dst && !hit->twin && f->readable && (hit->size == f->size || f->placeholder) &&
                push_same_id(hit->message_id, f->message_id)) {
                pair(hit, f);
                by_name++;
            }
        }
        /* (b) a new name: the Message-ID and size of exactly one gone row
         * of another folder */
        qsort(v, L.ngone, sizeof *v, cmp_gone_ident);
        for (size_t i = 0; i < L.nnf; i++) {
            struct newfile *f = &L.nf[i];
            if (f->paired || f->unsynced || !f->readable || !f->message_id || !f->message_id[0])
                continue;
            struct lmove *hit = NULL;
            size_t n = 0;
            for (size_t k = lower_bound(v, L.ngone, f, cmp_to_file); k < L.ngone && cmp_to_file(v[k], f) == 0; k++)
                if (v[k]->src != f->sel) {
                    hit = v[k];
                    n++;
                }
            if (n > 1)
                ambiguous++;
            else if (n == 1 && !hit->dst) {
                pair(hit, f);
                by_id++;
            }
        }
        free(v);
        rename_placeholders(r, &L);
        held = hold_for_placeholders(&L);
    }
    /* a placeholder moved where the run does not look (placeholders_gone.c) */
    if (L.ngone)
        held += placeholders_hold_elsewhere(r, sel, nsel, L.gone, L.ngone);
    for (size_t i = 0; i < L.ngone; i++) {
        if (L.gone[i].dst || L.gone[i].state == LMOVE_HELD)
            L.gone[r->nlmoves++] = L.gone[i];
        else
            lmove_free_one(&L.gone[i]);
    }
    if (r->nlmoves)
        r->lmoves = L.gone;
    else
        free(L.gone);
    for (size_t i = 0; i < L.nnf; i++) {
        free(L.nf[i].l.uniq);
        free(L.nf[i].l.name);
        free(L.nf[i].message_id);
    }
    free(L.nf);
    if (r->nlmoves || ambiguous)
        log_msg(LOG_VERBOSE,
                "%s: %zu messages moved between local folders (%zu by name, %zu by Message-ID and size, %zu held "
                "for a placeholder); %zu new files match several gone messages: uploaded, not taken for moves",
                r->acct->name, r->nlmoves - held, by_name, by_id, held, ambiguous);
}

/* ------------------------------------------------------------------ */
/* the source folder */

static bool stands_in(const struct lmove *m)
{
    return m->state == LMOVE_PENDING || m->state == LMOVE_UNSURE || m->state == LMOVE_HELD;
}

static int cmp_local_uniq(const void *a, const void *b)
{
    return strcmp(((const struct local_msg *)a)->uniq, ((const struct local_msg *)b)->uniq);
}

size_t moves_local_stand_in(struct run *r, int64_t folder_id, struct local_msg **local, size_t *nlocal)
{
    size_t added = 0;
    for (size_t i = 0; i < r->nlmoves; i++) {
        const struct lmove *m = &r->lmoves[i];
        if (m->src_id != folder_id || !stands_in(m) || views_local_by_uniq(*local, *nlocal - added, m->uniq))
            continue;
        *local = xrealloc(*local, (*nlocal + 1) * sizeof **local);
        struct local_msg *l = &(*local)[(*nlocal)++];
        memset(l, 0, sizeof *l);
        l->uniq = xstrdup(m->uniq);
        l->name = xstrdup(m->uniq);
        l->flags = m->flags & FLAG_ALL;
        added++;
    }
    if (added)
        qsort(*local, *nlocal, sizeof **local, cmp_local_uniq);
    return added;
}

size_t moves_local_moved_out(const struct run *r, int64_t folder_id)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nlmoves; i++)
        n += r->lmoves[i].src_id == folder_id && r->lmoves[i].state == LMOVE_DONE;
    return n;
}

/* ------------------------------------------------------------------ */
/* the destination folder */

size_t moves_local_take_appends(struct push_ctx *c, struct push_plan *p)
{
    struct run *r = c->r;
    size_t k = 0, taken = 0;
    if (!r->nlmoves)
        return 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct push_action *a = &p->actions[i];
        const struct lmove *hit = NULL;
        for (size_t j = 0; a->op == PUSH_APPEND && j < r->nlmoves && !hit; j++) {
            const struct lmove *m = &r->lmoves[j];
            if (m->state == LMOVE_DROPPED)
                continue;
            if ((m->dst == c->sel && strcmp(m->dst_uniq, a->uniq) == 0) ||
                (m->src == c->sel && m->state != LMOVE_DONE && strcmp(m->uniq, a->uniq) == 0))
                hit = m;
        }
        if (!hit) {
            p->actions[k++] = *a;
            continue;
        }
        p->nappend--;
        taken++;
        if (r->opt->dry_run && hit->dst == c->sel && hit->state != LMOVE_HELD) {
            c->fres->moved_on_server++;
            dryrun_report(r->opt, &(struct engine_planned){
                                      .account = r->acct->name, .folder = c->sel->name,
                                      .kind = ENGINE_PLAN_MOVE_ON_SERVER, .uid = hit->uid, .size = hit->size,
                                      .count = 0, .flags = a->flags, .flags_removed = 0, .file = a->uniq,
                                      .from = hit->src->name, .from_uid = 0});
        }
    }
    p->n = k;
    return taken;
}

/* fetch_identity's callback: which of the source's UIDs it still holds,
 * with what identity. */
struct src_ids {
    const uint32_t *uids;
    size_t n;
    bool *present;
    uint64_t *size;
    char **message_id;
};

static void on_src_identity(void *ctx, uint32_t uid, uint64_t size, const char *message_id)
{
    struct src_ids *s = ctx;
    const uint32_t *at = util_uid_find(s->uids, s->n, uid);
    if (!at)
        return;
    size_t i = (size_t)(at - s->uids);
    s->present[i] = true;
    s->size[i] = size;
    free(s->message_id[i]);
    s->message_id[i] = message_id ? xstrdup(message_id) : NULL;
}

static int cmp_lmove_uid(const void *a, const void *b)
{
    const struct lmove *x = *(const struct lmove *const *)a, *y = *(const struct lmove *const *)b;
    return (x->uid > y->uid) - (x->uid < y->uid);
}

static void drop(struct lmove *m, const char *why)
{
    if (m->dst_placeholder) {
        /* never uploaded: its message must not be deleted either */
        log_msg(LOG_WARN, "%s: %s is a placeholder for UID %u of %s, which could not be moved on the server (%s): "
                          "that message stays there and the placeholder is not uploaded",
                m->dst->name, m->dst_uniq, m->uid, m->src->name, why);
        m->state = LMOVE_HELD;
        return;
    }
    log_msg(LOG_VERBOSE, "%s -> %s: %s: not moved on the server (%s); uploaded and deleted instead", m->src->name,
            m->dst->name, m->dst_uniq, why);
    m->state = LMOVE_DROPPED;
}

/* A remote op's failure: MS_EPARTIAL (the server said NO) leaves the
 * group's moves unsure for this run (the journal settles them in the
 * next); anything else ends the run. */
static int remote_failed(struct lmove **ms, size_t n, const bool *sent, int rc, const struct ms_error *e)
{
    if (rc != MS_EPARTIAL)
        return rc;
    log_msg(LOG_WARN, "%s", e->msg);
    for (size_t i = 0; i < n; i++)
        if (sent[i])
            ms[i]->state = LMOVE_UNSURE;
    return MS_OK;
}

/* The moves ms (n, all from one source folder into c's) on the server,
 * then recorded. */
static int move_group(struct push_ctx *c, struct lmove **ms, size_t n, size_t *moved, struct ms_error *err)
{
    struct run *r = c->r;
    const struct selected *src = ms[0]->src;
    const char *dest = c->sel->raw;
    struct state_folder sf = {0};
    struct state_trash *j = NULL, *rows = xcalloc(n, sizeof *rows);
    size_t nj = 0;
    bool *want = xcalloc(n, sizeof *want), *found = xcalloc(n, sizeof *found);
    bool *redo = xcalloc(n, sizeof *redo), *unflag = xcalloc(n, sizeof *unflag), *leave = xcalloc(n, sizeof *leave);
    bool *gone = xcalloc(n, sizeof *gone);
    struct copy_found *got = xcalloc(n, sizeof *got);
    uint32_t *uids = xcalloc(n, sizeof *uids), *todo = xcalloc(n, sizeof *todo), *copies = xcalloc(n, sizeof *copies);
    struct src_ids ids = {uids, n, xcalloc(n, sizeof(bool)), xcalloc(n, sizeof(uint64_t)), xcalloc(n, sizeof(char *))};
    struct ms_error e = {0};
    bool any = false;
    qsort(ms, n, sizeof *ms, cmp_lmove_uid);
    for (size_t i = 0; i < n; i++)
        uids[i] = ms[i]->uid;
    int rc = state_folder_get(r->st, src->raw, &sf, err);
    if (rc == MS_OK && sf.id != ms[0]->src_id) {
        for (size_t i = 0; i < n; i++)
            drop(ms[i], "its folder is not the one synced before");
        goto out;
    }
    /* 1. what an interrupted run journalled for these: are the copies in
     * the destination already? */
    if (rc == MS_OK)
        rc = state_trash_list(r->st, sf.id, &j, &nj, err);
    for (size_t i = 0; rc == MS_OK && i < n; i++) {
        const struct state_trash *t = UTIL_FIND_UID(j, nj, uid, uids[i]);
        rows[i] = (struct state_trash){.uid = uids[i], .trash = (char *)dest, .trash_uidvalidity = 0,
                                       .trash_uidnext = 0, .copy_uid = 0, .size = ms[i]->size,
                                       .message_id = ms[i]->message_id};
        if (t && t->trash && strcmp(t->trash, dest) == 0) {
            rows[i].trash_uidvalidity = t->trash_uidvalidity;
            rows[i].trash_uidnext = t->trash_uidnext;
            rows[i].copy_uid = t->copy_uid;
            any = want[i] = true;
        }
    }
    if (rc == MS_OK && any)
        rc = push_find_copies(r, dest, rows, n, want, found, got, err);
    /* 2. the source, for writing: which of them it still holds */
    struct remote_box mb;
    if (rc == MS_OK) {
        int x = r->remote->ops->select(r->remote, src->raw, true, &mb, &e);
        if (x == MS_EPARTIAL || (x == MS_OK && mb.uidvalidity != sf.uidvalidity)) {
            for (size_t i = 0; i < n; i++)
                drop(ms[i], x == MS_OK ? "its folder's UIDVALIDITY changed on the server" : e.msg);
            goto out;
        }
        if (x != MS_OK) {
            *err = e;
            rc = x;
        }
    }
    if (rc == MS_OK)
        rc = r->remote->ops->fetch_identity(r->remote, uids, n, on_src_identity, &ids, err);
    size_t nredo = 0, nleave = 0, nunflag = 0;
    for (size_t i = 0; rc == MS_OK && i < n; i++) {
        bool same = ids.present[i] && ids.size[i] == ms[i]->size && push_same_id(ids.message_id[i], ms[i]->message_id);
        if (found[i]) {
            gone[i] = !ids.present[i]; /* the expunge went through, or not yet */
            if (same)
                leave[i] = true, nleave++;
        } else if (same) {
            redo[i] = true;
            nredo++;
            if (want[i])
                unflag[i] = true, nunflag++; /* a run may have flagged it \Deleted before its copy was lost */
        } else {
            drop(ms[i], ids.present[i] ? "another message has its UID" : "it is gone from the server");
        }
    }
    /* 3. journal the moves (committed): what finds their copies */
    struct remote_status ts = {0};
    if (rc == MS_OK && nunflag) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (unflag[i])
                todo[k++] = uids[i];
        rc = r->remote->ops->store_flags(r->remote, todo, k, FLAG_DELETED, false, err);
    }
    if (rc == MS_OK && nredo)
        rc = r->remote->ops->status(r->remote, dest, &ts, err);
    if (rc == MS_OK && nredo) {
        rc = state_begin(r->st, err);
        for (size_t i = 0; rc == MS_OK && i < n; i++) {
            if (!redo[i])
                continue;
            rows[i].trash_uidvalidity = ts.uidvalidity;
            rows[i].trash_uidnext = ts.uidnext;
            rows[i].copy_uid = 0;
            rc = state_trash_put(r->st, sf.id, &rows[i], err);
            if (rc == MS_OK) /* not a deletion's row (moves_local_settle_gone) */
                rc = state_trash_mark_move(r->st, sf.id, uids[i], err);
        }
        if (rc == MS_OK)
            rc = state_commit(r->st, err);
        else
            state_rollback(r->st);
    }
    /* 4. the move: UID MOVE, or UID COPY (COPYUID recorded), then \Deleted
     * and UID EXPUNGE of exactly these */
    size_t ntodo = 0;
    for (size_t i = 0; i < n; i++)
        if (redo[i])
            todo[ntodo++] = uids[i];
    bool by_move = remote_can(r->remote, REMOTE_MOVE);
    if (rc == MS_OK && ntodo && by_move) {
        if ((rc = r->remote->ops->move(r->remote, todo, ntodo, dest, &e)) != MS_OK) {
            rc = remote_failed(ms, n, redo, rc, &e);
            if (rc != MS_OK)
                *err = e;
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            gone[i] |= redo[i];
    } else if (rc == MS_OK && ntodo) {
        uint32_t uv = 0;
        if ((rc = r->remote->ops->copy(r->remote, todo, ntodo, dest, copies, &uv, &e)) != MS_OK) {
            rc = remote_failed(ms, n, redo, rc, &e);
            if (rc != MS_OK)
                *err = e;
            goto out;
        }
        bool some = false;
        for (size_t i = 0, k = 0; i < n; i++)
            if (redo[i]) {
                if (uv && uv == ts.uidvalidity && copies[k])
                    rows[i].copy_uid = copies[k], some = true;
                k++;
            }
        if (some) {
            rc = state_begin(r->st, err);
            for (size_t i = 0; rc == MS_OK && i < n; i++)
                if (redo[i] && rows[i].copy_uid)
                    rc = state_trash_set_copy(r->st, sf.id, uids[i], rows[i].copy_uid, err);
            if (rc == MS_OK)
                rc = state_commit(r->st, err);
            else
                state_rollback(r->st);
        }
    }
    /* what is copied but still in the source goes from there */
    size_t nrm = 0;
    for (size_t i = 0; i < n; i++)
        if (leave[i] || (redo[i] && !by_move))
            todo[nrm++] = uids[i];
    if (rc == MS_OK && nrm) {
        bool *sent = xcalloc(n, sizeof *sent);
        for (size_t i = 0; i < n; i++)
            sent[i] = leave[i] || (redo[i] && !by_move);
        if (remote_can(r->remote, REMOTE_EXACT))
            rc = r->remote->ops->remove(r->remote, todo, nrm, &e);
        else
            rc = ms_error_set(&e, MS_EPARTIAL, "%s: the server has no UIDPLUS: %zu messages moved to %s stay in "
                              "the folder until this is settled", src->name, nrm, c->sel->name);
        if (rc != MS_OK) {
            rc = remote_failed(ms, n, sent, rc, &e);
            if (rc != MS_OK)
                *err = e;
            free(sent);
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            gone[i] |= sent[i];
        free(sent);
    }
    /* 5. where the new copies are */
    any = false;
    for (size_t i = 0; i < n; i++) {
        want[i] = redo[i];
        any |= redo[i];
    }
    if (rc == MS_OK && any)
        rc = push_find_copies(r, dest, rows, n, want, found, got, err);
    /* 6. the records of both folders, in one transaction */
    if (rc == MS_OK)
        rc = state_begin(r->st, err);
    for (size_t i = 0; rc == MS_OK && i < n; i++) {
        struct lmove *m = ms[i];
        if (m->state != LMOVE_PENDING)
            continue;
        if (!found[i] || !gone[i]) {
            log_msg(LOG_WARN, "%s: %s: moved to %s, but the copy was not found there yet; settled by the next run",
                    src->name, m->dst_uniq, c->sel->name);
            m->state = LMOVE_UNSURE;
            continue;
        }
        struct state_msg row = {.uid = got[i].uid, .uniq = m->dst_uniq, .flags = got[i].flags,
                                .keywords = got[i].keywords, .size = m->size, .message_id = m->message_id,
                                .hash = NULL, .pending = false, .emailid = m->emailid};
        rc = state_msg_put(r->st, c->sf->id, &row, err);
        /* still a placeholder here (its row's mark, or the file says so if
         * the mark was lost): flagged, it is replaced */
        int mark = m->placeholder ? m->placeholder : m->dst_placeholder ? STATE_PLACEHOLDER : 0;
        if (rc == MS_OK && mark)
            rc = state_msg_set_placeholder(r->st, c->sf->id, row.uid, mark, err);
        if (rc == MS_OK)
            rc = state_msg_delete(r->st, sf.id, m->uid, err);
        if (rc == MS_OK)
            rc = state_trash_forget(r->st, sf.id, m->uid, err);
        if (rc == MS_OK) {
            m->state = LMOVE_DONE;
            (*moved)++;
        }
    }
    if (rc == MS_OK)
        rc = state_commit(r->st, err);
    else
        state_rollback(r->st);
    if (rc != MS_OK)
        for (size_t i = 0; i < n; i++)
            if (ms[i]->state == LMOVE_DONE)
                ms[i]->state = LMOVE_UNSURE, (*moved)--;
out:
    for (size_t i = 0; i < n; i++) {
        free(got[i].keywords);
        free(ids.message_id[i]);
    }
    free(ids.present);
    free(ids.size);
    free(ids.message_id);
    free(got);
    free(uids);
    free(todo);
    free(copies);
    free(want);
    free(found);
    free(redo);
    free(unflag);
    free(leave);
    free(gone);
    free(rows);
    state_trashes_free(j, nj);
    state_folder_free(&sf);
    return rc;
}

int moves_local_into(struct push_ctx *c, size_t *moved, struct ms_error *err)
{
    struct run *r = c->r;
    *moved = 0;
    struct lmove **ms = xcalloc(r->nlmoves + 1, sizeof *ms);
    size_t n = 0;
    for (size_t i = 0; i < r->nlmoves; i++) {
        struct lmove *m = &r->lmoves[i];
        if (m->dst != c->sel || m->state != LMOVE_PENDING)
            continue;
        if (!views_local_by_uniq(c->local, c->nlocal, m->dst_uniq)) {
            m->dst_placeholder = false; /* a placeholder removed: a deletion, as the user meant */
            drop(m, "its file is gone");
        }
        else if (!remote_can(r->remote, REMOTE_MOVE) && !remote_can(r->remote, REMOTE_EXACT))
            drop(m, "the server has neither MOVE nor UIDPLUS");
        else
            ms[n++] = m;
    }
    int rc = MS_OK;
    bool touched = false;
    for (size_t i = 0; i < n && rc == MS_OK;) {
        /* one source folder at a time */
        size_t k = i + 1;
        for (size_t x = i + 1; x < n; x++)
            if (ms[x]->src == ms[i]->src) {
                struct lmove *t = ms[k];
                ms[k++] = ms[x];
                ms[x] = t;
            }
        rc = move_group(c, ms + i, k - i, moved, err);
        touched = true;
        i = k;
    }
    free(ms);
    struct remote_box mb;
    if (rc == MS_OK && touched && (rc = r->remote->ops->select(r->remote, c->sel->raw, true, &mb, err)) == MS_OK &&
        mb.uidvalidity != c->uidvalidity)
        rc = ms_error_set(err, MS_EPARTIAL, "%s: UIDVALIDITY changed on the server during the push", c->sel->name);
    if (*moved)
        log_msg(LOG_VERBOSE, "%s: %zu messages moved here from other folders on the server", c->sel->name, *moved);
    return rc;
}

/* ------------------------------------------------------------------ */
/* a move a killed run made, its file deleted or moved on since */

/* fetch_identity's callback for one UID: whether the source still holds it. */
static void on_still_there(void *ctx, uint32_t uid, uint64_t size, const char *message_id)
{
    (void)uid;
    (void)size;
    (void)message_id;
    *(bool *)ctx = true;
}

/* The move this run paired for the source folder's row uid, or NULL. */
static struct lmove *paired_again(struct run *r, int64_t src_id, uint32_t uid)
{
    for (size_t i = 0; i < r->nlmoves; i++)
        if (r->lmoves[i].src_id == src_id && r->lmoves[i].uid == uid && r->lmoves[i].dst)
            return &r->lmoves[i];
    return NULL;
}

/* The journal row t of folder src (state sf) moving its message to dst,
 * whose source row is `row`, its file gone from src: paired again (m) with
 * a file in a third folder, or nowhere (m NULL). Looks for the copy in
 * dst and settles (see the file's top): moved, the copy is recorded in
 * dst and m, if any, moves it on from there; copied, still in the source,
 * the copy is removed (m moves the original). MS_EPARTIAL leaves the row
 * for a later run. */
static int settle_one(struct run *r, const struct selected *src, const struct state_folder *sf,
                      const struct selected *dst, const struct state_trash *t, const struct state_msg *row,
                      struct lmove *m, bool into_trash, struct ms_error *err)
{
    struct state_folder df = {0};
    struct copy_found got = {0};
    struct remote_box mb;
    bool want = true, found = false, there = false;
    int rc = state_folder_get(r->st, dst->raw, &df, err);
    if (rc != MS_OK || !pushable(&df))
        goto out;
    if ((rc = push_find_copies(r, dst->raw, t, 1, &want, &found, &got, err)) != MS_OK)
        goto out;
    if (found) {
        if ((rc = r->remote->ops->select(r->remote, src->raw, false, &mb, err)) != MS_OK)
            goto out;
        if (mb.uidvalidity != sf->uidvalidity)
            goto out; /* its UIDs mean other messages now: the pull re-matches first */
        if ((rc = r->remote->ops->fetch_identity(r->remote, &t->uid, 1, on_still_there, &there, err)) != MS_OK)
            goto out;
    }
    if (found && there && into_trash) {
        /* copied into the trash, not yet removed from the source: the
         * original goes, as the move would have done (removing the copy
         * instead would make the source's push move it there again, a
         * deletion: back into the local trash) */
        if (!remote_can(r->remote, REMOTE_EXACT)) {
            rc = ms_error_set(err, MS_EPARTIAL, "%s: a move to %s an interrupted run left cannot be finished "
                              "without UIDPLUS", src->name, dst->name);
            goto out;
        }
        if ((rc = r->remote->ops->select(r->remote, src->raw, true, &mb, err)) != MS_OK)
            goto out;
        if (mb.uidvalidity != sf->uidvalidity)
            goto out;
        if ((rc = r->remote->ops->remove(r->remote, &t->uid, 1, err)) != MS_OK)
            goto out;
        there = false;
    } else if (found && there) {
        /* copied, not yet removed from the source: the copy goes */
        if (!remote_can(r->remote, REMOTE_EXACT)) {
            rc = ms_error_set(err, MS_EPARTIAL, "%s: a copy an interrupted move left in %s cannot be removed "
                              "without UIDPLUS", src->name, dst->name);
            goto out;
        }
        if ((rc = r->remote->ops->select(r->remote, dst->raw, true, &mb, err)) != MS_OK ||
            (rc = r->remote->ops->remove(r->remote, &got.uid, 1, err)) != MS_OK)
            goto out;
    }
    rc = state_begin(r->st, err);
    if (rc == MS_OK && found && !there) {
        /* moved: recorded where it is, under the name it had; with its
         * file gone, the destination's push deletes it */
        struct state_msg x = {.uid = got.uid, .uniq = row->uniq, .flags = got.flags, .keywords = got.keywords,
                              .size = row->size, .message_id = row->message_id, .hash = NULL, .pending = false,
                              .emailid = row->emailid};
        rc = state_msg_put(r->st, df.id, &x, err);
        if (rc == MS_OK)
            rc = state_msg_delete(r->st, sf->id, row->uid, err);
    }
    if (rc == MS_OK)
        rc = state_trash_forget(r->st, sf->id, t->uid, err);
    if (rc == MS_OK)
        rc = state_commit(r->st, err);
    else
        state_rollback(r->st);
    if (rc != MS_OK)
        goto out;
    if (found && !there && m) {
        /* ...unless its file went on to a third folder: it moves from dst */
        m->src = dst;
        m->src_id = df.id;
        m->uid = got.uid;
        m->flags = got.flags;
        free(m->keywords);
        m->keywords = got.keywords;
        got.keywords = NULL;
    }
    log_msg(LOG_VERBOSE, "%s -> %s: a move an interrupted run made, its file %s since: %s", src->name, dst->name,
            m ? "moved on" : "deleted",
            !found ? "no copy was made" : there ? "the copy removed" : m ? "moved on from there" : "deleted there");
out:
    free(got.keywords);
    state_folder_free(&df);
    return rc;
}

int moves_local_settle_gone(struct run *r, const struct selected *sel, size_t nsel, struct ms_error *err)
{
    int rc = MS_OK;
    for (size_t i = 0; i < nsel && rc == MS_OK; i++) {
        struct state_folder sf = {0};
        struct state_trash *t = NULL;
        struct maildir_folder *mf = NULL;
        size_t nt = 0;
        struct ms_error e = {0};
        if (state_folder_get(r->st, sel[i].raw, &sf, &e) != MS_OK || !pushable(&sf) ||
            state_trash_list(r->st, sf.id, &t, &nt, &e) != MS_OK || nt == 0 || r->rootfd < 0 ||
            !maildir_folder_exists(r->rootfd, sel[i].path) ||
            maildir_folder_open(r->rootfd, sel[i].path, false, &mf, &e) != MS_OK)
            goto next;
        for (size_t k = 0; k < nt && rc == MS_OK; k++) {
            /* a local move (marked so: a deletion's row, into the trash,
             * is settled by the push, push_delete.c), into a folder of
             * this run or (--folder) one synced before */
            bool is_move = false;
            if (!t[k].trash || state_trash_is_move(r->st, sf.id, t[k].uid, &is_move, &e) != MS_OK || !is_move)
                continue;
            const struct selected *dst = NULL;
            for (size_t d = 0; d < nsel && !dst; d++)
                if (d != i && strcmp(sel[d].raw, t[k].trash) == 0)
                    dst = &sel[d];
            struct state_folder df = {0};
            struct selected other = {.raw = t[k].trash, .name = t[k].trash, .path = NULL};
            if (!dst && state_folder_get(r->st, t[k].trash, &df, &e) == MS_OK && pushable(&df) && df.path &&
                df.id != sf.id) {
                other.path = df.path;
                dst = &other;
            }
            struct lmove *m = dst && dst != &other ? paired_again(r, sf.id, t[k].uid) : NULL;
            if (!dst || (m && m->dst == dst)) {
                state_folder_free(&df);
                continue; /* (paired with its file in dst: moves_local_into resumes it) */
            }
            struct state_msg *row = NULL;
            size_t nrow = 0;
            struct local_msg l = {0};
            int gone = 0; /* 1: its file is nowhere in the source folder */
            if (state_msg_get_uids(r->st, sf.id, &t[k].uid, 1, &row, &nrow, &e) == MS_OK && nrow == 1 &&
                row->uniq && !row->pending)
                gone = m ? 1 : maildir_find(mf, row->uniq, &l, &e);
            free(l.uniq);
            free(l.name);
            bool into_trash = dst != &other ? folders_is_trash(r, dst) : r->acct->trash &&
                              strcmp(r->acct->trash, t[k].trash) == 0;
            int x = gone == 1 ? settle_one(r, &sel[i], &sf, dst, &t[k], row, m, into_trash, &e) : MS_OK;
            state_folder_free(&df);
            if (x == MS_EPARTIAL) {
                log_msg(LOG_WARN, "%s", e.msg);
            } else if (x != MS_OK) {
                *err = e;
                rc = x;
            }
            state_msgs_free(row, nrow);
        }
    next:
        maildir_folder_close(mf);
        state_trashes_free(t, nt);
        state_folder_free(&sf);
    }
    return rc;
}
