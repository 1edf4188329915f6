/* SPDX-License-Identifier: MIT */
/*
 * rematch.c: pairing local files with server messages when the state DB
 * cannot (a UIDVALIDITY change, a lost or new DB, a Maildir another tool
 * filled: mbsync, OfflineIMAP, getmail, fetchmail). Three tiers, each only
 * for what the one before left:
 *  1. Message-ID and size (plan_match): the file's own size, else the
 *     sizes it has without the fields other tools add (message.h). One
 *     FETCH of the Message-IDs of the server UIDs the state does not know.
 *  2. Message-ID unique on both sides and equal Date and From
 *     (plan_match_loose), where a tool's fields make the size uncertain;
 *     the Date and From of the server messages concerned are fetched only
 *     when tier 1 left a Message-ID unpaired on both sides (one more FETCH).
 *  3. What stays unpaired (no Message-ID, or one that is ambiguous) is
 *     handed to delivery as leftovers: a download is compared by content
 *     with them before it is delivered, so it is adopted, not doubled
 *     (costs the download).
 * A pair keeps the local file as it is (same name, same inode).
 *
 * A placeholder (max_size: a header and a note, placeholders.c) is not its
 * message: it is paired only by tier 1, with the size its
 * X-Mailsync-Placeholder field records and its Message-ID (after a lost
 * state DB, max_size unchanged), and recorded with the placeholder mark,
 * so no second placeholder is stored beside it and flagging it still
 * brings the message. mbsync's placeholders (no recorded size) and ours
 * that pair with nothing are never taken for a message: the message is
 * downloaded (or a placeholder stored) and the sweep removes the old one
 * once a whole message is here (placeholder_sweep_file).
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sync/log.h"
#include "sync/message.h"
#include "sync/util.h"

/* ------------------------------------------------------------------ */
/* re-matching by identity */

struct id_list {
    struct plan_identity *ids;
    size_t n;
};

static void found_identity(void *ctx, uint32_t uid, uint64_t size, const char *message_id)
{
    struct id_list *l = ctx;
    l->ids = xrealloc(l->ids, (l->n + 1) * sizeof *l->ids);
    l->ids[l->n++] = (struct plan_identity){.uid = uid, .uniq = NULL,
                                            .message_id = message_id ? xstrdup(message_id) : NULL, .size = size,
                                            .alt = {0}, .nalt = 0, .date = NULL, .from = NULL};
}

static void free_ids(struct id_list *l, bool free_uniq)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->ids[i].message_id);
        free((char *)l->ids[i].date);
        free((char *)l->ids[i].from);
        if (free_uniq)
            free((char *)l->ids[i].uniq);
    }
    free(l->ids);
    l->ids = NULL;
    l->n = 0;
}

/* The unique names the state knows, sorted, for lookups by name. */
const char **rematch_uniq_index(const struct state_msg *s, size_t ns, size_t *n)
{
    const char **idx = xmalloc((ns ? ns : 1) * sizeof *idx);
    size_t k = 0;
    for (size_t i = 0; i < ns; i++)
        if (s[i].uniq)
            idx[k++] = s[i].uniq;
    qsort(idx, k, sizeof *idx, util_cmp_str);
    *n = k;
    return idx;
}

bool rematch_index_has(const char **idx, size_t n, const char *uniq)
{
    return bsearch(&uniq, idx, n, sizeof *idx, util_cmp_str) != NULL;
}

static int cmp_state_uid(const void *a, const void *b)
{
    const struct state_msg *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int cmp_identity_uid(const void *a, const void *b)
{
    const struct plan_identity *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static bool state_has_uid(const struct state_msg *s, size_t ns, uint32_t uid)
{
    return UTIL_FIND_UID(s, ns, uid, uid) != NULL;
}

/* The rows the state had before a UIDVALIDITY change, sorted by unique
 * name (rows without one are left out): they say which local file is
 * which message, and what both sides looked like at the last sync. */
struct old_rows {
    const struct state_msg **v;
    size_t n;
};

static int cmp_row_uniq(const void *a, const void *b)
{
    return strcmp((*(const struct state_msg *const *)a)->uniq, (*(const struct state_msg *const *)b)->uniq);
}

static void index_old_rows(struct old_rows *o, const struct state_msg *old, size_t nold)
{
    o->v = xmalloc((nold ? nold : 1) * sizeof *o->v);
    o->n = 0;
    for (size_t i = 0; i < nold; i++)
        if (old[i].uniq)
            o->v[o->n++] = &old[i];
    qsort(o->v, o->n, sizeof *o->v, cmp_row_uniq);
}

static const struct state_msg *old_row(const struct old_rows *o, const char *uniq)
{
    struct state_msg key = {.uniq = (char *)uniq};
    const struct state_msg *k = &key;
    const struct state_msg **hit = o->n ? bsearch(&k, o->v, o->n, sizeof *o->v, cmp_row_uniq) : NULL;
    return hit ? *hit : NULL;
}

static void add_identity(struct id_list *out, const char *uniq, const char *message_id, uint64_t size)
{
    out->ids = xrealloc(out->ids, (out->n + 1) * sizeof *out->ids);
    out->ids[out->n++] = (struct plan_identity){.uid = 0, .uniq = xstrdup(uniq),
                                                .message_id = message_id ? xstrdup(message_id) : NULL, .size = size,
                                                .alt = {0}, .nalt = 0, .date = NULL, .from = NULL};
}

/* Local identity of a file: from the rows the state had before a
 * UIDVALIDITY change if it knew the file, else read from the file. A
 * placeholder (*placeholder) gets an identity only when its field records
 * its message's size (the identity's size). */
static void local_identity(struct maildir_folder *mf, struct local_msg *l, const struct old_rows *old,
                           struct id_list *out, bool *placeholder)
{
    const struct state_msg *o = old_row(old, l->uniq);
    if (o) {
        add_identity(out, l->uniq, o->message_id, o->size);
        return;
    }
    struct ms_error e;
    int fd = maildir_open_msg(mf, l, &e);
    if (fd < 0)
        return;
    struct message_identity id;
    int rd = message_identity_read(fd, &id);
    *placeholder = rd == 0 && id.placeholder;
    if (*placeholder && id.placeholder_size && id.message_id && id.message_id[0])
        add_identity(out, l->uniq, id.message_id, id.placeholder_size); /* no Date, From: tier 1 only */
    else if (rd == 0 && !*placeholder) {
        out->ids = xrealloc(out->ids, (out->n + 1) * sizeof *out->ids);
        struct plan_identity *p = &out->ids[out->n++];
        *p = (struct plan_identity){.uid = 0, .uniq = xstrdup(l->uniq), .message_id = id.message_id,
                                    .size = id.size, .alt = {0}, .nalt = 0, .date = id.date, .from = id.from};
        for (unsigned k = 0; k < id.nalt && k < PLAN_ALT_SIZES; k++)
            p->alt[p->nalt++] = id.alt[k];
        id.message_id = id.date = id.from = NULL; /* now the list's */
    }
    message_identity_free(&id);
    close(fd);
}

/* The pair's row as recorded: with the flags and keywords of the last
 * sync when the old rows knew the file, so that the planners see local
 * changes not yet pushed as such (a pull keeps them, a push sends them)
 * and bring down only what the server changed. A file the old rows did
 * not know has no history to tell which side changed a flag last:
 *  - when a push follows in this run (`sync`), the row gets the flags both
 *    sides have (local and server's, rm), so the pull brings down the
 *    server's others and the push sends up the file's others: the union,
 *    no flag is taken away (a message read in a mail reader after another
 *    tool's last sync stays read on the server too);
 *  - otherwise (`pull`) it is recorded with its local flags, and the
 *    server's flags come down as a change (the server wins). */
static struct state_msg matched_row(const struct plan_match *m, const struct old_rows *old, struct local_msg *local,
                                    size_t nlocal, const struct remote_msg *rm, bool push_follows)
{
    const struct state_msg *o = old_row(old, m->uniq);
    const struct local_msg *l = views_local_by_uniq(local, nlocal, m->uniq);
    unsigned flags = o ? o->flags : l ? l->flags : 0;
    if (!o && l && rm && push_follows)
        flags &= rm->flags;
    return (struct state_msg){.uid = m->uid, .uniq = (char *)m->uniq, .flags = flags,
                              .keywords = o ? o->keywords : NULL};
}

/* ------------------------------------------------------------------ */
/* the second tier: Message-ID, Date and From */

/* rids sorted by UID: the Date and From of a server message arrive. */
static void found_headers(void *ctx, uint32_t uid, uint64_t size, const char *block, size_t len)
{
    struct id_list *rids = ctx;
    struct plan_identity *x = UTIL_FIND_UID(rids->ids, rids->n, uid, uid);
    (void)size;
    if (!x || x->date || x->from)
        return;
    x->date = message_header(block, len, "Date");
    x->from = message_header(block, len, "From");
}

static int cmp_identity_mid(const void *a, const void *b)
{
    return strcmp(((const struct plan_identity *)a)->message_id, ((const struct plan_identity *)b)->message_id);
}

/* What plan_match left of ids: the entries with a Message-ID not in the
 * pairs (by UID on the remote side, by file on the local side), copied
 * (their strings borrowed). */
static struct plan_identity *unpaired(const struct id_list *ids, bool remote, const struct plan_match *m, size_t nm,
                                      size_t *n)
{
    struct plan_identity *v = xmalloc((ids->n + 1) * sizeof *v);
    uint32_t *uids = xmalloc((nm + 1) * sizeof *uids);
    const char **names = xmalloc((nm + 1) * sizeof *names);
    for (size_t k = 0; k < nm; k++)
        uids[k] = m[k].uid, names[k] = m[k].uniq;
    qsort(uids, nm, sizeof *uids, util_cmp_u32);
    qsort(names, nm, sizeof *names, util_cmp_str);
    *n = 0;
    for (size_t i = 0; i < ids->n; i++) {
        const struct plan_identity *x = &ids->ids[i];
        bool paired = !x->message_id ||
                      (remote ? util_uid_find(uids, nm, x->uid) != NULL : rematch_index_has(names, nm, x->uniq));
        if (!paired)
            v[(*n)++] = *x;
    }
    free(uids);
    free(names);
    return v;
}

/* Tier 2 (see the top of this file) for what tier 1 left: the pairs are
 * added to *m / *nm. rids must be sorted by UID. */
static int match_loose(struct run *r, struct id_list *rids, const struct id_list *lids, struct plan_match **m,
                       size_t *nm, size_t *nloose, struct ms_error *err)
{
    size_t nr, nl, nwant = 0, k2 = 0;
    struct plan_identity *ur = unpaired(rids, true, *m, *nm, &nr), *ul = unpaired(lids, false, *m, *nm, &nl);
    uint32_t *want = xmalloc((nr + 1) * sizeof *want);
    struct plan_match *m2 = NULL;
    int rc = MS_OK;
    *nloose = 0;
    qsort(ul, nl, sizeof *ul, cmp_identity_mid);
    for (size_t i = 0; i < nr && nl; i++)
        if (bsearch(&ur[i], ul, nl, sizeof *ul, cmp_identity_mid))
            want[nwant++] = ur[i].uid;
    if (nwant == 0 || !r->remote->ops->fetch_headers)
        goto out;
    static const char *const fields[] = {"DATE", "FROM"};
    log_msg(LOG_VERBOSE, "%zu server messages share a Message-ID with a local file of another size: comparing their "
                         "Date and From", nwant);
    if ((rc = r->remote->ops->fetch_headers(r->remote, want, nwant, fields, 2, found_headers, rids, err)))
        goto out;
    free(ur);
    ur = unpaired(rids, true, *m, *nm, &nr); /* with their Date and From now */
    if (plan_match_loose(ur, nr, ul, nl, &m2, &k2) != 0) {
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
        goto out;
    }
    *m = xrealloc(*m, (*nm + k2 + 1) * sizeof **m);
    memcpy(*m + *nm, m2, k2 * sizeof *m2);
    *nm += k2;
    *nloose = k2;
out:
    free(m2);
    free(want);
    free(ur);
    free(ul);
    return rc;
}

/* Local files the state does not know, and server UIDs it does not know:
 * after a UIDVALIDITY change or a lost state DB these are the same
 * messages. Pair them by identity and record the pairs, so nothing is
 * downloaded twice. Rewrites *state / *nstate. */
/* A leftover's size: the scan's, or (a scan without sizes: the pull's full
 * listing lists names only) the file's own; 0 if it cannot be opened. */
static uint64_t file_size(struct maildir_folder *mf, struct local_msg *l)
{
    if (l->size)
        return l->size;
    struct ms_error e;
    struct stat st;
    int fd = maildir_open_msg(mf, l, &e);
    if (fd < 0)
        return 0;
    uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    close(fd);
    return size;
}

static void collect_leftovers(struct maildir_folder *mf, const struct id_list *lids, const struct plan_match *m,
                              size_t nm, const struct old_rows *old, struct local_msg *local, size_t nlocal,
                              struct leftover **left, size_t *nleft)
{
    size_t nidx = nm;
    const char **idx = xmalloc((nm ? nm : 1) * sizeof *idx);
    for (size_t i = 0; i < nm; i++)
        idx[i] = m[i].uniq;
    qsort(idx, nidx, sizeof *idx, util_cmp_str);
    *left = xcalloc(lids->n, sizeof **left);
    *nleft = 0;
    for (size_t i = 0; i < lids->n; i++)
        if (!rematch_index_has(idx, nidx, lids->ids[i].uniq)) {
            struct local_msg *l = views_local_by_uniq(local, nlocal, lids->ids[i].uniq);
            const struct state_msg *o = l ? old_row(old, l->uniq) : NULL;
            if (l)
                (*left)[(*nleft)++] = (struct leftover){.uniq = xstrdup(l->uniq), .size = file_size(mf, l),
                                                        .synced = o != NULL, .synced_flags = o ? o->flags : 0};
        }
    free(idx);
}

/* The placeholders among the files read (local[idx[0..n)]) that the pairs
 * m do not name: never taken for their message (see the top of the file),
 * onto *out for the caller's sweep. Those paired are left in idx (*n). */
static void unpaired_placeholders(struct maildir_folder *mf, struct local_msg *local, size_t *idx, size_t *n,
                                  const struct plan_match *m, size_t nm, size_t **out, size_t *nout)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        bool paired = false;
        for (size_t j = 0; j < nm && !paired; j++) /* few placeholders, few pairs after a loss */
            paired = strcmp(m[j].uniq, local[idx[i]].uniq) == 0;
        if (paired) {
            idx[k++] = idx[i];
            continue;
        }
        /* It has the message's Message-ID, Date and From but not its
         * body: the message is downloaded (or a placeholder stored), the
         * placeholder never pushed (push_placeholders.c), and removed
         * once the message is here (placeholder_sweep_file). */
        const struct local_msg *l = &local[idx[i]];
        log_msg(LOG_WARN, "%s: %s is a placeholder for a message over a MaxSize: not taken for the message",
                maildir_folder_path(mf), log_escape(l->name, strlen(l->name), 100));
        *out = xrealloc(*out, (*nout + 1) * sizeof **out);
        (*out)[(*nout)++] = idx[i];
    }
    *n = k;
}

static bool is_adopted(const struct local_msg *local, const size_t *idx, size_t n, const char *uniq)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(local[idx[i]].uniq, uniq) == 0)
            return true;
    return false;
}

void rematch_free_leftovers(struct leftover *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i].uniq);
    free(l);
}

int rematch_folder(struct run *r, struct maildir_folder *mf, int64_t folder_id, struct state_msg **state,
                   size_t *nstate, const struct state_msg *old, size_t nold, struct local_msg *local, size_t nlocal,
                   const struct remote_msg *remote, size_t nremote, size_t *nmatched, struct leftover **left,
                   size_t *nleft, size_t **placeholders, size_t *nplaceholders, struct ms_error *err)
{
    struct id_list lids = {0}, rids = {0};
    struct old_rows orows;
    uint32_t *uids = NULL;
    size_t nuids = 0;
    struct plan_match *m = NULL;
    size_t nm = 0, *ph = NULL, nph = 0; /* the placeholders read: local indexes */
    int rc = MS_OK;
    *nmatched = 0;
    index_old_rows(&orows, old, nold);
    /* Server UIDs the state does not know first: usually there are none,
     * and then no local file needs reading. */
    uids = xmalloc((nremote ? nremote : 1) * sizeof *uids);
    for (size_t i = 0; i < nremote; i++)
        if (!state_has_uid(*state, *nstate, remote[i].uid))
            uids[nuids++] = remote[i].uid;
    if (nuids == 0)
        goto record;
    size_t nidx;
    const char **idx = rematch_uniq_index(*state, *nstate, &nidx);
    for (size_t i = 0; i < nlocal; i++) {
        bool placeholder = false;
        if (!rematch_index_has(idx, nidx, local[i].uniq))
            local_identity(mf, &local[i], &orows, &lids, &placeholder);
        if (placeholder) {
            ph = xrealloc(ph, (nph + 1) * sizeof *ph);
            ph[nph++] = i;
        }
    }
    free(idx);
    /* Messages deleted locally since the last sync and not yet removed on
     * the server: matched too, and recorded without a file, so that a pull
     * does not bring them back and the push removes them. */
    for (size_t i = 0; i < orows.n; i++)
        if (!views_local_by_uniq(local, nlocal, orows.v[i]->uniq))
            add_identity(&lids, orows.v[i]->uniq, orows.v[i]->message_id, orows.v[i]->size);
    if (lids.n == 0) {
        unpaired_placeholders(mf, local, ph, &nph, NULL, 0, placeholders, nplaceholders);
        goto record;
    }
    log_msg(LOG_VERBOSE, "matching %zu unknown local messages against %zu server messages by identity", lids.n,
            nuids);
    rc = r->remote->ops->fetch_identity(r->remote, uids, nuids, found_identity, &rids, err);
    if (rc)
        goto out;
    if (plan_match(rids.ids, rids.n, lids.ids, lids.n, &m, &nm) != 0) {
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
        goto out;
    }
    size_t nexact = nm, nloose = 0;
    qsort(rids.ids, rids.n, sizeof *rids.ids, cmp_identity_uid);
    if (nm < rids.n && nm < lids.n && (rc = match_loose(r, &rids, &lids, &m, &nm, &nloose, err)))
        goto out;
    unpaired_placeholders(mf, local, ph, &nph, m, nm, placeholders, nplaceholders);
    if (nph)
        log_msg(LOG_VERBOSE, "%zu placeholders taken for their messages (Message-ID and recorded size)", nph);
    collect_leftovers(mf, &lids, m, nm, &orows, local, nlocal, left, nleft);
    log_msg(LOG_VERBOSE, "%zu paired by Message-ID and size, %zu by Message-ID, Date and From; %zu local files left "
                         "to compare by content with what is downloaded",
            nexact, nloose, *nleft);
    size_t gone = 0;
    for (size_t i = 0; i < nm; i++)
        gone += !views_local_by_uniq(local, nlocal, m[i].uniq);
    if (gone)
        log_msg(LOG_VERBOSE, "%zu of the messages matched were deleted locally: they stay deleted, and a push "
                             "removes them from the server", gone);
record:
    if (nm == 0 && nold == 0)
        goto out;
    if (!r->opt->dry_run) {
        /* The old rows go in the transaction that records the pairs: a
         * crash in between leaves the old knowledge, never none. */
        /* A placeholder the old rows knew (placeholders.c) stays one under
         * its new UID: its mark goes with the pair. */
        struct state_placeholder *marked = NULL;
        size_t nmarked = 0;
        rc = state_begin(r->st, err);
        if (rc == MS_OK && nold)
            rc = state_placeholder_list(r->st, folder_id, &marked, &nmarked, err);
        if (rc == MS_OK && nold)
            rc = state_msg_delete_all(r->st, folder_id, err);
        for (size_t i = 0; i < nm && rc == MS_OK; i++) {
            const struct plan_identity *rid = UTIL_FIND_UID(rids.ids, rids.n, uid, m[i].uid);
            struct state_msg row = matched_row(&m[i], &orows, local, nlocal,
                                               UTIL_FIND_UID(remote, nremote, uid, m[i].uid), r->push_after_pull);
            row.size = rid ? rid->size : 0;
            row.message_id = rid ? (char *)rid->message_id : NULL;
            rc = state_msg_put(r->st, folder_id, &row, err);
            const struct state_msg *o = old_row(&orows, m[i].uniq);
            for (size_t k = 0; rc == MS_OK && o && k < nmarked; k++)
                if (marked[k].uid == o->uid)
                    rc = state_msg_set_placeholder(r->st, folder_id, m[i].uid, marked[k].mark, err);
            if (rc == MS_OK && !o && is_adopted(local, ph, nph, m[i].uniq))
                rc = state_msg_set_placeholder(r->st, folder_id, m[i].uid, STATE_PLACEHOLDER, err);
        }
        state_placeholders_free(marked, nmarked);
        if (rc == MS_OK)
            rc = state_commit(r->st, err);
        else
            state_rollback(r->st);
        if (rc)
            goto out;
        state_msgs_free(*state, *nstate);
        *state = NULL;
        *nstate = 0;
        rc = state_msg_list(r->st, folder_id, state, nstate, err);
    } else {
        /* --dry-run: pretend, in memory only */
        *state = xrealloc(*state, (*nstate + nm + 1) * sizeof **state);
        for (size_t i = 0; i < nm; i++) {
            struct state_msg row = matched_row(&m[i], &orows, local, nlocal,
                                               UTIL_FIND_UID(remote, nremote, uid, m[i].uid), r->push_after_pull);
            row.uniq = xstrdup(row.uniq);
            row.keywords = row.keywords ? xstrdup(row.keywords) : NULL;
            (*state)[(*nstate)++] = row;
        }
        qsort(*state, *nstate, sizeof **state, cmp_state_uid);
    }
    *nmatched = nm;
out:
    free(ph);
    free(orows.v);
    free(m);
    free(uids);
    free_ids(&lids, true);
    free_ids(&rids, false);
    return rc;
}
