/*
 * rematch.c: pairing local files with server messages when the state DB
 * cannot (a UIDVALIDITY change, a lost or new DB): by Message-ID and size
 * first (plan_match), and what stays unpaired is handed to delivery as
 * leftovers, compared by content before anything is delivered twice.
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    l->ids[l->n++] = (struct plan_identity){uid, NULL, message_id ? xstrdup(message_id) : NULL, size};
}

static void free_ids(struct id_list *l, bool free_uniq)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->ids[i].message_id);
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
    out->ids[out->n++] = (struct plan_identity){0, xstrdup(uniq), message_id ? xstrdup(message_id) : NULL, size};
}

/* Local identity of a file: from the rows the state had before a
 * UIDVALIDITY change if it knew the file, else read from the file. */
static void local_identity(struct maildir_folder *mf, struct local_msg *l, const struct old_rows *old,
                           struct id_list *out)
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
    char *mid = NULL;
    uint64_t size = 0;
    if (message_identity_fd(fd, &mid, &size) == 0) {
        out->ids = xrealloc(out->ids, (out->n + 1) * sizeof *out->ids);
        out->ids[out->n++] = (struct plan_identity){0, xstrdup(l->uniq), mid, size};
    }
    close(fd);
}

/* The pair's row as recorded: with the flags and keywords of the last
 * sync when the old rows knew the file, so that the planners see local
 * changes not yet pushed as such (a pull keeps them, a push sends them)
 * and bring down only what the server changed; a file the old rows did
 * not know is recorded with its local flags, and the server's flags come
 * down as a change. */
static struct state_msg matched_row(const struct plan_match *m, const struct old_rows *old, struct local_msg *local,
                                    size_t nlocal)
{
    const struct state_msg *o = old_row(old, m->uniq);
    const struct local_msg *l = views_local_by_uniq(local, nlocal, m->uniq);
    return (struct state_msg){.uid = m->uid, .uniq = (char *)m->uniq,
                              .flags = o ? o->flags : l ? l->flags : 0, .keywords = o ? o->keywords : NULL};
}

/* Local files the state does not know, and server UIDs it does not know:
 * after a UIDVALIDITY change or a lost state DB these are the same
 * messages. Pair them by identity and record the pairs, so nothing is
 * downloaded twice. Rewrites *state / *nstate. */
static void collect_leftovers(const struct id_list *lids, const struct plan_match *m, size_t nm,
                              const struct old_rows *old, struct local_msg *local, size_t nlocal,
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
            const struct local_msg *l = views_local_by_uniq(local, nlocal, lids->ids[i].uniq);
            const struct state_msg *o = l ? old_row(old, l->uniq) : NULL;
            if (l)
                (*left)[(*nleft)++] = (struct leftover){.uniq = xstrdup(l->uniq), .size = l->size,
                                                        .synced = o != NULL, .synced_flags = o ? o->flags : 0};
        }
    free(idx);
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
                   size_t *nleft, struct ms_error *err)
{
    struct id_list lids = {0}, rids = {0};
    struct old_rows orows;
    uint32_t *uids = NULL;
    size_t nuids = 0;
    struct plan_match *m = NULL;
    size_t nm = 0;
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
    for (size_t i = 0; i < nlocal; i++)
        if (!rematch_index_has(idx, nidx, local[i].uniq))
            local_identity(mf, &local[i], &orows, &lids);
    free(idx);
    /* Messages deleted locally since the last sync and not yet removed on
     * the server: matched too, and recorded without a file, so that a pull
     * does not bring them back and the push removes them. */
    for (size_t i = 0; i < orows.n; i++)
        if (!views_local_by_uniq(local, nlocal, orows.v[i]->uniq))
            add_identity(&lids, orows.v[i]->uniq, orows.v[i]->message_id, orows.v[i]->size);
    if (lids.n == 0)
        goto record;
    log_msg(LOG_VERBOSE, "matching %zu unknown local messages against %zu server messages by identity", lids.n,
            nuids);
    rc = r->remote->ops->fetch_identity(r->remote, uids, nuids, found_identity, &rids, err);
    if (rc)
        goto out;
    if (plan_match(rids.ids, rids.n, lids.ids, lids.n, &m, &nm) != 0) {
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
        goto out;
    }
    collect_leftovers(&lids, m, nm, &orows, local, nlocal, left, nleft);
    qsort(rids.ids, rids.n, sizeof *rids.ids, cmp_identity_uid);
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
        rc = state_begin(r->st, err);
        if (rc == MS_OK && nold)
            rc = state_msg_delete_all(r->st, folder_id, err);
        for (size_t i = 0; i < nm && rc == MS_OK; i++) {
            const struct plan_identity *rid = UTIL_FIND_UID(rids.ids, rids.n, uid, m[i].uid);
            struct state_msg row = matched_row(&m[i], &orows, local, nlocal);
            row.size = rid ? rid->size : 0;
            row.message_id = rid ? (char *)rid->message_id : NULL;
            rc = state_msg_put(r->st, folder_id, &row, err);
        }
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
            struct state_msg row = matched_row(&m[i], &orows, local, nlocal);
            row.uniq = xstrdup(row.uniq);
            row.keywords = row.keywords ? xstrdup(row.keywords) : NULL;
            (*state)[(*nstate)++] = row;
        }
        qsort(*state, *nstate, sizeof **state, cmp_state_uid);
    }
    *nmatched = nm;
out:
    free(orows.v);
    free(m);
    free(uids);
    free_ids(&lids, true);
    free_ids(&rids, false);
    return rc;
}
