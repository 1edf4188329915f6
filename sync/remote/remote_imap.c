/* SPDX-License-Identifier: MIT */
/*
 * remote_imap.c: the IMAP side behind struct remote_ops (remote.h).
 *
 * The protocol's choices live here, not in the engine:
 *  - listing a folder: with QRESYNC enabled, SELECT/EXAMINE (QRESYNC) gives
 *    the changed messages and the vanished UIDs; with CONDSTORE alone,
 *    UID FETCH (CHANGEDSINCE) gives the changes and UID SEARCH all UIDs
 *    (the expunges are the known UIDs missing); otherwise, or when the
 *    recorded values do not allow it (UIDVALIDITY changed, NOMODSEQ,
 *    HIGHESTMODSEQ gone back), UID FETCH 1:* lists every message;
 *  - ENABLE QRESYNC rides along with the LIST of a sync run (it must come
 *    before the first SELECT);
 *  - open-ahead: the EXAMINEs of several folders in one write;
 *  - removal: \Deleted then UID EXPUNGE (UIDPLUS) of exactly those UIDs;
 *    MOVE, or its fallback in imap_move;
 *  - watch: NOTIFY on every folder where offered, else IDLE on INBOX.
 * sync/remote/imap_*.c (API imap.h) stay the protocol library (libetpan, our transport).
 */
#include "sync/remote/remote_imap.h"

#include <stdlib.h>
#include <string.h>

#include "sync/flags.h"
#include "sync/remote/imap.h"
#include "sync/log.h"
#include "sync/util.h"

struct imap_remote {
    struct remote base; /* first: a struct remote * is one of these */
    struct imap_session *s;
    unsigned caps;  /* REMOTE_* from the capabilities after the login */
    bool condstore; /* CONDSTORE or QRESYNC offered: modseqs usable */
    bool qresync;   /* QRESYNC enabled on the session (by a sync run's list) */
};

static struct imap_remote *ir(struct remote *r)
{
    return (struct imap_remote *)r;
}

/* The capability bits the server's CAPABILITY (read again after TLS and
 * the login) gives; they do not change during the session. */
static unsigned caps_of(struct imap_session *s)
{
    unsigned c = REMOTE_FOLDERS | REMOTE_WRITE | REMOTE_UIDS | REMOTE_EXTRA | REMOTE_AGE;
    if (imap_has_capability(s, "CONDSTORE") || imap_has_capability(s, "QRESYNC"))
        c |= REMOTE_CHANGES;
    if (imap_has_capability(s, "MOVE"))
        c |= REMOTE_MOVE;
    if (imap_has_capability(s, "UIDPLUS"))
        c |= REMOTE_EXACT;
    if (imap_has_capability(s, "IDLE"))
        c |= REMOTE_WATCH;
    if (imap_has_capability(s, "NOTIFY"))
        c |= REMOTE_WATCH_ALL;
    if (imap_has_capability(s, "OBJECTID") || imap_has_capability(s, "X-GM-EXT-1"))
        c |= REMOTE_OBJECTID;
    if (imap_has_capability(s, "X-GM-EXT-1") && !imap_has_capability(s, "OBJECTID"))
        c |= REMOTE_LABELS; /* the ids are X-GM-MSGIDs (imap_objid_kind) */
    return c;
}

static unsigned imap_caps(struct remote *r)
{
    struct imap_remote *x = ir(r);
    return x->caps | (x->qresync ? REMOTE_AHEAD : 0);
}

static const char *imap_r_tls_info(struct remote *r)
{
    return imap_tls_info(ir(r)->s);
}

static const char *imap_r_capabilities(struct remote *r)
{
    return imap_capabilities(ir(r)->s);
}

/* A sync run's LIST: with CONDSTORE, the STATUS commands and ENABLE
 * QRESYNC go in the same round trip (imap_status_and_list). */
static int imap_r_list(struct remote *r, const char *const *names, size_t n, struct remote_status *st,
                       struct remote_folder **out, size_t *nout, struct ms_error *err)
{
    struct imap_remote *x = ir(r);
    if (!names || !x->condstore)
        return imap_list(x->s, out, nout, err);
    int rc = imap_status_and_list(x->s, true, names, n, st, out, nout, err);
    x->qresync = imap_qresync_enabled(x->s);
    return rc;
}

static int imap_r_status(struct remote *r, const char *name, struct remote_status *out, struct ms_error *err)
{
    return imap_status(ir(r)->s, name, out, err);
}

static int imap_r_select(struct remote *r, const char *name, bool write, struct remote_box *box, struct ms_error *err)
{
    return imap_select(ir(r)->s, name, write, box, err);
}

/* Every message of the selected folder (none asked for when it is
 * empty), or with a window (remote_known.window) and more messages than
 * that, those of the top window of UIDs only: UID FETCH lo:*, so neither
 * libetpan's answer nor the listing grows with the folder. */
static int list_full(struct imap_remote *x, uint32_t window, struct remote_listing *out, struct ms_error *err)
{
    out->kind = REMOTE_LIST_FULL;
    out->how = "full";
    if (!out->box.exists) {
        out->msgs = xcalloc(1, sizeof *out->msgs);
        return MS_OK;
    }
    uint32_t from = 1;
    if (window && out->box.exists > window && out->box.uidnext > window + 1) {
        from = out->box.uidnext - window;
        out->from = from;
        out->how = "full, top window";
    }
    return imap_fetch_flags(x->s, from, 0, &out->msgs, &out->nmsgs, err);
}

/* Whether the folder as opened can be listed by its changes since the
 * recorded values: same UIDVALIDITY, modseqs on, HIGHESTMODSEQ not gone
 * back. */
static bool usable_since(const struct remote_box *mb, const struct remote_known *known)
{
    return mb->uidvalidity == known->uidvalidity && mb->highestmodseq != 0 && mb->highestmodseq >= known->modseq;
}

static int imap_r_open(struct remote *r, const char *name, const struct remote_known *known, struct remote_listing *out,
                       struct ms_error *err)
{
    struct imap_remote *x = ir(r);
    struct remote_box *mb = &out->box;
    int rc;
    memset(out, 0, sizeof *out);
    if (!x->condstore || !known->uidvalidity || !known->modseq) {
        rc = imap_select(x->s, name, false, mb, err);
    } else if (x->qresync) {
        imap_set_vanished_max(x->s, known->vanished_max);
        rc = imap_select_qresync_window(x->s, name, false, known->uidvalidity, known->modseq, known->uidnext,
                                        known->status_uidnext, known->window, mb, &out->msgs, &out->nmsgs,
                                        &out->from, &out->uids, &out->nuids, err);
        /* (no vanished list: more UIDs vanished than it holds) */
        if (rc == MS_OK && out->uids && usable_since(mb, known)) {
            out->kind = REMOTE_LIST_VANISHED;
            out->how = "QRESYNC";
            return MS_OK;
        }
    } else {
        rc = imap_select(x->s, name, false, mb, err);
        if (rc == MS_OK && usable_since(mb, known)) {
            out->kind = REMOTE_LIST_ALL_UIDS;
            out->how = "CONDSTORE";
            rc = imap_fetch_changes_windowed(x->s, known->modseq, known->window, mb->uidnext, false, &out->msgs,
                                             &out->nmsgs, &out->from, err);
            if (rc == MS_OK && mb->exists)
                rc = imap_fetch_uids(x->s, &out->uids, &out->nuids, err);
            else if (rc == MS_OK)
                out->uids = xcalloc(1, sizeof *out->uids);
            if (rc)
                remote_listing_free(out);
            return rc;
        }
    }
    if (rc) {
        remote_listing_free(out);
        return rc;
    }
    /* The incremental answer was not usable: its lists are empty. */
    struct remote_box keep = *mb;
    remote_listing_free(out);
    out->box = keep;
    rc = list_full(x, known->window, out, err);
    if (rc)
        remote_listing_free(out);
    return rc;
}

static int imap_r_open_ahead(struct remote *r, const struct remote_ahead *req, size_t n, struct ms_error *err)
{
    struct imap_examine_req *q = xcalloc(n + 1, sizeof *q);
    for (size_t i = 0; i < n; i++)
        q[i] = (struct imap_examine_req){req[i].name, req[i].uidvalidity, req[i].modseq, req[i].list_from};
    int rc = imap_examine_ahead(ir(r)->s, q, n, err);
    free(q);
    return rc;
}

static int imap_r_fetch_meta_range(struct remote *r, uint32_t first, uint32_t last, struct remote_msg **out, size_t *n,
                                   struct ms_error *err)
{
    return imap_fetch_flags(ir(r)->s, first, last, out, n, err);
}

static int imap_r_list_windows(struct remote *r, uint32_t below, uint32_t size, remote_window_fn *window, void *ctx,
                               struct ms_error *err)
{
    return imap_fetch_flags_windows(ir(r)->s, below, size, window, ctx, err);
}

static int imap_r_fetch_changes_range(struct remote *r, uint32_t first, uint32_t last, uint64_t modseq,
                                      struct remote_msg **out, size_t *n, struct ms_error *err)
{
    return imap_fetch_flags_changedsince(ir(r)->s, first, last, modseq, out, n, err);
}

static int imap_r_list_ahead(struct remote *r, uint32_t first, uint32_t last, uint64_t modseq, struct ms_error *err)
{
    return imap_list_ahead(ir(r)->s, first, last, modseq, err);
}

static int imap_r_fetch_meta(struct remote *r, const uint32_t *uids, size_t n, struct remote_msg **out, size_t *nout,
                             struct ms_error *err)
{
    return imap_fetch_flags_uids(ir(r)->s, uids, n, out, nout, err);
}

static int imap_r_fetch_identity(struct remote *r, const uint32_t *uids, size_t n, remote_identity_fn *found, void *ctx,
                                 struct ms_error *err)
{
    return imap_fetch_identity(ir(r)->s, uids, n, found, ctx, err);
}

static int imap_r_fetch_identity_oid(struct remote *r, const uint32_t *uids, size_t n, remote_identity_oid_fn *found,
                                     void *ctx, struct ms_error *err)
{
    return imap_fetch_identity_oid(ir(r)->s, uids, n, found, ctx, err);
}

static int imap_r_fetch_headers(struct remote *r, const uint32_t *uids, size_t n, const char *const *fields,
                                size_t nfields, remote_headers_fn *found, void *ctx, struct ms_error *err)
{
    return imap_fetch_headers(ir(r)->s, uids, n, fields, nfields, found, ctx, err);
}

static int imap_r_fetch_bodies(struct remote *r, const uint32_t *uids, size_t n, const struct remote_body_sink *sink,
                               struct ms_error *err)
{
    return imap_fetch_bodies(ir(r)->s, uids, n, sink, err);
}

static int imap_r_store_flags(struct remote *r, const uint32_t *uids, size_t n, unsigned flags, bool add,
                              struct ms_error *err)
{
    return imap_store_flags(ir(r)->s, uids, n, flags, add, err);
}

static int imap_r_append(struct remote *r, const char *name, unsigned flags, time_t date, int fd, uint64_t size,
                         uint32_t *uidvalidity, uint32_t *uid, struct ms_error *err)
{
    return imap_append_fd(ir(r)->s, name, flags, date, fd, size, uidvalidity, uid, err);
}

/* \Deleted, then UID EXPUNGE of only these (a plain EXPUNGE would take
 * what others flagged too). */
static int imap_r_remove(struct remote *r, const uint32_t *uids, size_t n, struct ms_error *err)
{
    struct imap_remote *x = ir(r);
    if (!imap_has_capability(x->s, "UIDPLUS"))
        return ms_error_set(err, MS_EUSAGE, "the server has no UIDPLUS: cannot remove single messages");
    int rc = imap_store_flags(x->s, uids, n, FLAG_DELETED, true, err);
    return rc ? rc : imap_uid_expunge(x->s, uids, n, err);
}

static int imap_r_copy(struct remote *r, const uint32_t *uids, size_t n, const char *dest, uint32_t *copy_uids,
                       uint32_t *dest_uidvalidity, struct ms_error *err)
{
    return imap_copy(ir(r)->s, uids, n, dest, copy_uids, dest_uidvalidity, err);
}

static int imap_r_move(struct remote *r, const uint32_t *uids, size_t n, const char *dest, struct ms_error *err)
{
    return imap_move(ir(r)->s, uids, n, dest, err);
}

static int imap_r_create(struct remote *r, const char *name, struct ms_error *err)
{
    return imap_create(ir(r)->s, name, err);
}

static int imap_r_search_before(struct remote *r, time_t before, uint32_t **out, size_t *n, struct ms_error *err)
{
    return imap_search_before(ir(r)->s, before, out, n, err);
}

static int imap_r_commit(struct remote *r, struct ms_error *err)
{
    (void)r;
    (void)err;
    return MS_OK; /* every change took effect when the server answered it */
}

/* NOTIFY on every folder where offered; else INBOX selected for IDLE. */
static int imap_r_watch(struct remote *r, struct ms_error *err)
{
    struct imap_remote *x = ir(r);
    const char *acct = r->acct->name;
    if (!imap_has_capability(x->s, "IDLE"))
        return ms_error_set(err, MS_EUSAGE, "the server has no IDLE: polling every pass interval instead");
    if (imap_has_capability(x->s, "NOTIFY")) {
        int rc = imap_notify_all(x->s, err);
        if (rc == MS_OK) {
            log_msg(LOG_VERBOSE, "%s: watch: the server reports changes in every folder (NOTIFY)", acct);
            return MS_OK;
        }
        if (rc != MS_EPARTIAL)
            return rc;
        log_msg(LOG_VERBOSE, "%s: watch: %s; watching INBOX only", acct, err->msg);
        ms_error_clear(err);
    }
    struct remote_box mb;
    int rc = imap_select(x->s, "INBOX", false, &mb, err);
    if (rc == MS_OK)
        log_msg(LOG_VERBOSE, "%s: watch: the server reports changes in INBOX (IDLE)", acct);
    return rc;
}

static int imap_r_wait(struct remote *r, int timeout_ms, volatile sig_atomic_t *stop, int wake_fd, bool *changed,
                       struct ms_error *err)
{
    return imap_idle(ir(r)->s, timeout_ms, stop, wake_fd, changed, err);
}

static int imap_r_clone(struct remote *r, const char *password, struct remote **out, struct ms_error *err)
{
    return remote_imap_connect(r->acct, password, out, err);
}

static void imap_r_logout_start(struct remote *r)
{
    imap_logout_start(ir(r)->s);
}

static const char *imap_r_memo(struct remote *r)
{
    return imap_memo(ir(r)->s);
}

static void imap_r_close(struct remote *r)
{
    imap_close(ir(r)->s);
    free(r);
}

static const struct remote_ops imap_ops = {
    .name = "imap",
    .memo = imap_r_memo,
    .caps = imap_caps,
    .tls_info = imap_r_tls_info,
    .capabilities = imap_r_capabilities,
    .list = imap_r_list,
    .status = imap_r_status,
    .select = imap_r_select,
    .open = imap_r_open,
    .open_ahead = imap_r_open_ahead,
    .fetch_meta_range = imap_r_fetch_meta_range,
    .list_windows = imap_r_list_windows,
    .fetch_changes_range = imap_r_fetch_changes_range,
    .list_ahead = imap_r_list_ahead,
    .fetch_meta = imap_r_fetch_meta,
    .fetch_identity = imap_r_fetch_identity,
    .fetch_identity_oid = imap_r_fetch_identity_oid,
    .fetch_headers = imap_r_fetch_headers,
    .fetch_bodies = imap_r_fetch_bodies,
    .store_flags = imap_r_store_flags,
    .append = imap_r_append,
    .remove = imap_r_remove,
    .copy = imap_r_copy,
    .move = imap_r_move,
    .create = imap_r_create,
    .search_before = imap_r_search_before,
    .commit = imap_r_commit,
    .watch = imap_r_watch,
    .wait = imap_r_wait,
    .clone = imap_r_clone,
    .logout_start = imap_r_logout_start,
    .close = imap_r_close,
};

int remote_imap_connect(const struct account *acct, const char *password, struct remote **out, struct ms_error *err)
{
    return remote_imap_connect_hinted(acct, password, NULL, out, err);
}

int remote_imap_connect_hinted(const struct account *acct, const char *password, const struct remote_hint *hint,
                               struct remote **out, struct ms_error *err)
{
    struct imap_session *s = NULL;
    *out = NULL;
    int rc = imap_connect_hinted(acct, password, hint, &s, err);
    if (rc)
        return rc;
    struct imap_remote *x = xcalloc(1, sizeof *x);
    x->base = (struct remote){.ops = &imap_ops, .acct = acct};
    x->s = s;
    x->caps = caps_of(s);
    x->condstore = (x->caps & REMOTE_CHANGES) != 0;
    *out = &x->base;
    return MS_OK;
}
