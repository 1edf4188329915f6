/*
 * rematch.c: pairing local files with server messages when the state DB
 * cannot (a UIDVALIDITY change, a lost or new DB): by Message-ID and size
 * first (plan_match), and what stays unpaired is handed to delivery as
 * leftovers, compared by content before anything is delivered twice.
 */
#include "sync/engine_int.h"

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

int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The unique names the state knows, sorted, for lookups by name. */
const char **state_uniq_index(const struct state_msg *s, size_t ns, size_t *n)
{
    const char **idx = xmalloc((ns ? ns : 1) * sizeof *idx);
    size_t k = 0;
    for (size_t i = 0; i < ns; i++)
        if (s[i].uniq)
            idx[k++] = s[i].uniq;
    qsort(idx, k, sizeof *idx, cmp_str);
    *n = k;
    return idx;
}

bool index_has(const char **idx, size_t n, const char *uniq)
{
    return bsearch(&uniq, idx, n, sizeof *idx, cmp_str) != NULL;
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
    size_t lo = 0, hi = ns;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid].uid == uid)
            return true;
        if (s[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Local identity of a file: from the rows the state had before a
 * UIDVALIDITY change if it knew the file, else read from the file. */
static void local_identity(struct maildir_folder *mf, struct local_msg *l, const struct state_msg *old,
                           size_t nold, struct id_list *out)
{
    for (size_t i = 0; i < nold; i++)
        if (old[i].uniq && strcmp(old[i].uniq, l->uniq) == 0) {
            out->ids = xrealloc(out->ids, (out->n + 1) * sizeof *out->ids);
            out->ids[out->n++] = (struct plan_identity){
                0, xstrdup(l->uniq), old[i].message_id ? xstrdup(old[i].message_id) : NULL, old[i].size};
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

/* Local files the state does not know, and server UIDs it does not know:
 * after a UIDVALIDITY change or a lost state DB these are the same
 * messages. Pair them by identity and record the pairs, so nothing is
 * downloaded twice. Rewrites *state / *nstate. */
static void collect_leftovers(const struct id_list *lids, const struct plan_match *m, size_t nm,
                              struct local_msg *local, size_t nlocal, struct leftover **left, size_t *nleft)
{
    size_t nidx = nm;
    const char **idx = xmalloc((nm ? nm : 1) * sizeof *idx);
    for (size_t i = 0; i < nm; i++)
        idx[i] = m[i].uniq;
    qsort(idx, nidx, sizeof *idx, cmp_str);
    *left = xcalloc(lids->n, sizeof **left);
    *nleft = 0;
    for (size_t i = 0; i < lids->n; i++)
        if (!index_has(idx, nidx, lids->ids[i].uniq)) {
            const struct local_msg *l = local_by_uniq(local, nlocal, lids->ids[i].uniq);
            if (l)
                (*left)[(*nleft)++] = (struct leftover){.uniq = xstrdup(l->uniq), .size = l->size};
        }
    free(idx);
}

void free_leftovers(struct leftover *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i].uniq);
    free(l);
}

int rematch(struct run *r, struct maildir_folder *mf, int64_t folder_id, struct state_msg **state,
                   size_t *nstate, const struct state_msg *old, size_t nold, struct local_msg *local, size_t nlocal,
                   const struct imap_msg *remote, size_t nremote, size_t *nmatched, struct leftover **left,
                   size_t *nleft, struct ms_error *err)
{
    struct id_list lids = {0}, rids = {0};
    uint32_t *uids = NULL;
    size_t nuids = 0;
    struct plan_match *m = NULL;
    size_t nm = 0;
    int rc = MS_OK;
    *nmatched = 0;
    /* Server UIDs the state does not know first: usually there are none,
     * and then no local file needs reading. */
    uids = xmalloc((nremote ? nremote : 1) * sizeof *uids);
    for (size_t i = 0; i < nremote; i++)
        if (!state_has_uid(*state, *nstate, remote[i].uid))
            uids[nuids++] = remote[i].uid;
    if (nuids == 0)
        goto out;
    size_t nidx;
    const char **idx = state_uniq_index(*state, *nstate, &nidx);
    for (size_t i = 0; i < nlocal; i++)
        if (!index_has(idx, nidx, local[i].uniq))
            local_identity(mf, &local[i], old, nold, &lids);
    free(idx);
    if (lids.n == 0)
        goto out;
    log_msg(LOG_VERBOSE, "matching %zu unknown local messages against %zu server messages by identity", lids.n,
            nuids);
    rc = imap_fetch_identity(r->imap, uids, nuids, found_identity, &rids, err);
    if (rc)
        goto out;
    if (plan_match(rids.ids, rids.n, lids.ids, lids.n, &m, &nm) != 0) {
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
        goto out;
    }
    collect_leftovers(&lids, m, nm, local, nlocal, left, nleft);
    if (nm == 0)
        goto out;
    qsort(rids.ids, rids.n, sizeof *rids.ids, cmp_identity_uid);
    if (!r->opt->dry_run) {
        rc = state_begin(r->st, err);
        for (size_t i = 0; i < nm && rc == MS_OK; i++) {
            struct local_msg *l = local_by_uniq(local, nlocal, m[i].uniq);
            struct plan_identity key = {.uid = m[i].uid};
            const struct plan_identity *rid =
                bsearch(&key, rids.ids, rids.n, sizeof *rids.ids, cmp_identity_uid);
            uint64_t size = rid ? rid->size : 0;
            const char *mid = rid ? rid->message_id : NULL;
            /* Recorded with the local flags: the planner then brings the
             * server's flags down as a change. */
            struct state_msg row = {.uid = m[i].uid, .uniq = (char *)m[i].uniq, .flags = l ? l->flags : 0,
                                    .size = size, .message_id = (char *)mid};
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
        *state = xrealloc(*state, (*nstate + nm) * sizeof **state);
        for (size_t i = 0; i < nm; i++) {
            struct local_msg *l = local_by_uniq(local, nlocal, m[i].uniq);
            (*state)[(*nstate)++] = (struct state_msg){.uid = m[i].uid, .uniq = xstrdup(m[i].uniq),
                                                       .flags = l ? l->flags : 0};
        }
        qsort(*state, *nstate, sizeof **state, cmp_state_uid);
    }
    *nmatched = nm;
out:
    free(m);
    free(uids);
    free_ids(&lids, true);
    free_ids(&rids, false);
    return rc;
}
