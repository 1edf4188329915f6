/* SPDX-License-Identifier: MIT */
/*
 * imap_qresync.c: cheap resyncs of the IMAP side (RFC 7162; imap.h):
 * SELECT/EXAMINE (QRESYNC) with the changes and VANISHED UIDs it reports,
 * EXAMINEs sent ahead for several folders in one write (imap_examine_ahead)
 * and the queue of their unread answers, the CONDSTORE-only listing
 * (UID FETCH (CHANGEDSINCE)) and the UID SEARCH listing of every UID that
 * tells its expunges.
 *
 * The queue's invariant: while answers are queued, any command other than
 * the SELECT they were sent for first reads and drops them (imap_ready ->
 * imap_settle_ahead), and a folder whose answer was read while later ones
 * were in flight is EXAMINEd again before a command on it (s->reselect).
 * STATUS and ENABLE are in imap_status.c.
 */
#include "sync/remote/imap.h"
#include "sync/remote/imap_int.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libetpan/libetpan.h>

#include "sync/log.h"
#include "sync/net/netstream.h"

/* The most vanished UIDs an incremental listing holds (4 MiB of them):
 * past it the folder is listed in full, its memory bounded by the windows. */
#define VANISHED_MAX ((size_t)1 << 20)
#define UIDS_PER_SEARCH 20000 /* expected answers per UID SEARCH of imap_fetch_uids */

/* ======================================================================
 * SELECT/EXAMINE (QRESYNC)
 * ==================================================================== */

/* Add every VANISHED response of the last command to l (clipped to
 * max_uid, 0 = no clip). More than the session's cap (s->vanished_max, else
 * VANISHED_MAX) sets *too_many and stops: the folder is to be listed in
 * full. Returns MS_OK or fills err. libetpan's own API hands out only the
 * first one. */
static size_t vanished_cap(const struct imap_session *s)
{
    return s->vanished_max ? s->vanished_max : VANISHED_MAX;
}

static int collect_vanished(struct imap_session *s, struct imap_uid_list *l, uint32_t max_uid, bool *too_many,
                            struct ms_error *err)
{
    size_t cap = vanished_cap(s);
    struct mailimap_response_info *ri = s->imap ? s->imap->imap_response_info : NULL;
    if (!ri || !ri->rsp_extension_list)
        return MS_OK;
    for (clistiter *it = clist_begin(ri->rsp_extension_list); it; it = clist_next(it)) {
        struct mailimap_extension_data *e =
            imap_ext_item(it, MAILIMAP_EXTENSION_QRESYNC, MAILIMAP_QRESYNC_TYPE_VANISHED);
        struct mailimap_qresync_vanished *v = e ? e->ext_data : NULL;
        if (!v || !v->qr_known_uids || !v->qr_known_uids->set_list)
            continue;
        for (clistiter *j = clist_begin(v->qr_known_uids->set_list); j; j = clist_next(j)) {
            struct mailimap_set_item *item = clist_content(j);
            if (!item)
                continue;
            int r = imap_uid_list_add_range(l, item->set_first, item->set_last, max_uid, cap);
            if (r == -1)
                return ms_error_set(err, MS_ELOCAL, "out of memory");
            if (r == -2) {
                *too_many = true;
                return MS_OK;
            }
        }
    }
    return MS_OK;
}

void imap_set_vanished_max(struct imap_session *s, size_t max)
{
    s->vanished_max = max;
}

/* HIGHESTMODSEQ of the last command's response codes; 0 for NOMODSEQ or
 * none. */
static uint64_t response_highestmodseq(struct imap_session *s)
{
    struct mailimap_response_info *ri = s->imap->imap_response_info;
    uint64_t v = 0;
    for (clistiter *it = ri && ri->rsp_extension_list ? clist_begin(ri->rsp_extension_list) : NULL; it;
         it = clist_next(it)) {
        struct mailimap_extension_data *e =
            imap_ext_item(it, MAILIMAP_EXTENSION_CONDSTORE, MAILIMAP_CONDSTORE_TYPE_RESP_TEXT_CODE);
        struct mailimap_condstore_resptextcode *c = e ? e->ext_data : NULL;
        if (c && c->cs_type == MAILIMAP_CONDSTORE_RESPTEXTCODE_HIGHESTMODSEQ)
            v = c->cs_data.cs_modseq_value;
        else if (c && c->cs_type == MAILIMAP_CONDSTORE_RESPTEXTCODE_NOMODSEQ)
            v = 0;
    }
    return v;
}

/* Write "<tag> EXAMINE|SELECT "name" (QRESYNC (uv modseq))" (libetpan's
 * mailimap_select_qresync cannot EXAMINE, and mailimap_custom_command adds
 * a trailing space), not flushed; its tag through *tag. */
static int put_select_qresync(struct imap_session *s, const char *name, bool read_write, uint32_t uidvalidity,
                              uint64_t modseq, int *tag)
{
    mailimap *imap = s->imap;
    mailstream *st = imap->imap_stream;
    char *quoted = imap_quote_name(name);
    if (!quoted)
        return MAILIMAP_ERROR_MEMORY;
    char tail[80];
    snprintf(tail, sizeof tail, " (QRESYNC (%" PRIu32 " %" PRIu64 "))\r\n", uidvalidity, modseq);
    int r = mailimap_send_current_tag(imap);
    *tag = imap->imap_tag;
    if (r == MAILIMAP_NO_ERROR && (imap_stream_puts(st, read_write ? "SELECT " : "EXAMINE ") ||
                                   imap_stream_puts(st, quoted) || imap_stream_puts(st, tail)))
        r = MAILIMAP_ERROR_STREAM;
    free(quoted);
    return r;
}

/* Read the answer to a SELECT/EXAMINE (QRESYNC) sent under tag, like
 * libetpan's own SELECT does (fresh selection info, state). Its FETCH
 * reports go to f (UID FLAGS, as on_flags_att collects them), or are
 * dropped as they arrive when f is NULL. fetch_from: a UID FETCH went out
 * right behind it (send_select_qresync) under fetch_tag (0: none); its
 * answer is left unread, except when the SELECT failed: then it is read
 * and dropped here. */
static int read_select_qresync(struct imap_session *s, int tag, int fetch_tag, struct fetch_ctx *f)
{
    mailimap *imap = s->imap;
    if (imap->imap_selection_info)
        mailimap_selection_info_free(imap->imap_selection_info);
    imap->imap_selection_info = mailimap_selection_info_new();
    int state = -1;
    int r = imap_read_tagged(s, tag, f, &state);
    if (r != MAILIMAP_NO_ERROR)
        return r;
    if (state != MAILIMAP_RESP_COND_STATE_OK && fetch_tag) {
        /* The FETCH ran with no folder selected: its answer (BAD, which
         * libetpan calls a protocol error, but read to its end) means
         * nothing; the session goes on, as after any failed SELECT. */
        int ignored;
        r = imap_read_tagged(s, fetch_tag, NULL, &ignored);
        if (r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_PROTOCOL)
            return r;
    }
    if (state != MAILIMAP_RESP_COND_STATE_OK) {
        /* A failed SELECT leaves no folder selected (RFC 3501 6.3.1). */
        if (imap->imap_selection_info)
            mailimap_selection_info_free(imap->imap_selection_info);
        imap->imap_selection_info = NULL;
        imap->imap_state = MAILIMAP_STATE_AUTHENTICATED;
        return MAILIMAP_ERROR_SELECT;
    }
    imap->imap_state = MAILIMAP_STATE_SELECTED;
    return MAILIMAP_NO_ERROR;
}

/* Send the SELECT/EXAMINE (QRESYNC) and read its answer (above). With
 * fetch_from, "UID FETCH fetch_from:* (UID FLAGS RFC822.SIZE)" goes out
 * right behind it, in the same write, its answer left for imap_read_tagged
 * with the session's current tag. */
static int send_select_qresync(struct imap_session *s, const char *name, bool read_write, uint32_t uidvalidity,
                               uint64_t modseq, uint32_t fetch_from, struct fetch_ctx *f)
{
    mailimap *imap = s->imap;
    mailstream *st = imap->imap_stream;
    char fetch[80];
    snprintf(fetch, sizeof fetch, "UID FETCH %" PRIu32 ":* (UID FLAGS RFC822.SIZE)\r\n", fetch_from);
    int select_tag;
    int r = put_select_qresync(s, name, read_write, uidvalidity, modseq, &select_tag);
    if (r == MAILIMAP_NO_ERROR && fetch_from &&
        ((r = mailimap_send_current_tag(imap)) != MAILIMAP_NO_ERROR || imap_stream_puts(st, fetch)))
        r = r != MAILIMAP_NO_ERROR ? r : MAILIMAP_ERROR_STREAM;
    if (r == MAILIMAP_NO_ERROR && mailstream_flush(st) != 0)
        r = MAILIMAP_ERROR_STREAM;
    if (r != MAILIMAP_NO_ERROR)
        return r;
    return read_select_qresync(s, select_tag, fetch_from ? imap->imap_tag : 0, f);
}

/* ---- EXAMINEs sent ahead (imap_examine_ahead) ---- */

static void forget_queue(struct imap_session *s)
{
    for (size_t i = 0; i < s->nahead; i++)
        free(s->ahead[i].name);
    free(s->ahead);
    s->ahead = NULL;
    s->nahead = s->ahead_next = 0;
}

/* Read and drop the next queued answer. After a failed one no folder is
 * selected (read_select_qresync), after a good one that folder is. */
static int drop_queued(struct imap_session *s, struct ms_error *err)
{
    struct queued_examine *q = &s->ahead[s->ahead_next++];
    char shown[120], what[160];
    imap_escape_text(q->name, strnlen(q->name, 200), shown, sizeof shown);
    snprintf(what, sizeof what, "EXAMINE %s (QRESYNC), sent ahead", shown);
    int r = read_select_qresync(s, q->tag, q->fetch_from ? q->fetch_tag : 0, NULL);
    if (r == MAILIMAP_NO_ERROR && q->fetch_from) {
        /* the listing sent behind it: read to its end and dropped */
        int ignored;
        r = imap_read_tagged(s, q->fetch_tag, NULL, &ignored);
    }
    if (s->ahead_next == s->nahead)
        forget_queue(s);
    if (r == MAILIMAP_ERROR_SELECT)
        return MS_OK; /* nobody asked for it any more */
    return r == MAILIMAP_NO_ERROR ? MS_OK : imap_fail_call(s, r, what, err);
}

/* The queued EXAMINE of name with these values, if one is waiting: the
 * ones queued before it are read and dropped (their folders were not
 * asked for after all). *tag: its tag; false when none matched (then the
 * queue is empty). */
static int take_queued(struct imap_session *s, const char *name, uint32_t uidvalidity, uint64_t modseq,
                       uint32_t fetch_from, int *tag, int *fetch_tag, bool *found, struct ms_error *err)
{
    *found = false;
    while (s->ahead_next < s->nahead) {
        struct queued_examine *q = &s->ahead[s->ahead_next];
        if (strcmp(q->name, name) == 0 && q->uidvalidity == uidvalidity && q->modseq == modseq &&
            q->fetch_from == fetch_from) {
            *tag = q->tag;
            *fetch_tag = q->fetch_tag;
            *found = true;
            if (++s->ahead_next == s->nahead)
                forget_queue(s);
            return MS_OK;
        }
        int rc = drop_queued(s, err);
        if (rc != MS_OK)
            return rc;
    }
    return MS_OK;
}

int imap_settle_ahead(struct imap_session *s, bool on_selected, struct ms_error *err)
{
    while (s->ahead_next < s->nahead) {
        int rc = drop_queued(s, err);
        if (rc != MS_OK)
            return rc;
    }
    if (!on_selected || !s->reselect)
        return MS_OK;
    char *name = s->reselect;
    uint32_t uv = s->reselect_uv;
    s->reselect = NULL;
    struct remote_box mb;
    int rc = imap_select(s, name, false, &mb, err);
    if (rc == MS_OK && mb.uidvalidity != uv) {
        char shown[120];
        imap_escape_text(name, strnlen(name, 200), shown, sizeof shown);
        rc = ms_error_set(err, MS_EPARTIAL,
                          "EXAMINE %s: UIDVALIDITY changed during the run (%" PRIu32 " -> %" PRIu32 ")", shown, uv,
                          mb.uidvalidity);
    }
    free(name);
    return rc;
}

int imap_examine_ahead(struct imap_session *s, const struct imap_examine_req *req, size_t n, struct ms_error *err)
{
    int rc = imap_ready(s, false, err);
    if (rc != MS_OK || n == 0)
        return rc;
    if (!s->qresync)
        return ms_error_set(err, MS_EUSAGE, "EXAMINE (QRESYNC) ahead: QRESYNC is not enabled on this session");
    for (size_t i = 0; i < n; i++) {
        char shown[120];
        if ((rc = imap_folder_name_ok(req[i].name, shown, sizeof shown, err)) != MS_OK)
            return rc;
        if (req[i].uidvalidity == 0 || req[i].modseq == 0)
            return ms_error_set(err, MS_EUSAGE, "EXAMINE %s (QRESYNC): needs a known UIDVALIDITY and MODSEQ", shown);
        if (req[i].fetch_from && (i + 1 < n || req[i].fetch_from < 2))
            return ms_error_set(err, MS_EUSAGE, "EXAMINE %s (QRESYNC) ahead: a listing only behind the last", shown);
    }
    forget_queue(s); /* (empty: imap_ready() read what was left) */
    s->ahead = calloc(n, sizeof *s->ahead);
    if (!s->ahead)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    int r = MAILIMAP_NO_ERROR;
    for (size_t i = 0; i < n && r == MAILIMAP_NO_ERROR; i++) {
        struct queued_examine *q = &s->ahead[i];
        if (!(q->name = strdup(req[i].name))) {
            r = MAILIMAP_ERROR_MEMORY;
            break;
        }
        q->uidvalidity = req[i].uidvalidity;
        q->modseq = req[i].modseq;
        s->nahead = i + 1;
        r = put_select_qresync(s, req[i].name, false, req[i].uidvalidity, req[i].modseq, &q->tag);
        if (r == MAILIMAP_NO_ERROR && req[i].fetch_from) {
            /* as send_select_qresync() sends it behind a SELECT */
            char fetch[80];
            snprintf(fetch, sizeof fetch, "UID FETCH %" PRIu32 ":* (UID FLAGS RFC822.SIZE)\r\n", req[i].fetch_from);
            q->fetch_from = req[i].fetch_from;
            if ((r = mailimap_send_current_tag(s->imap)) == MAILIMAP_NO_ERROR && imap_stream_puts(s->imap->imap_stream, fetch))
                r = MAILIMAP_ERROR_STREAM;
            q->fetch_tag = s->imap->imap_tag;
        }
    }
    if (r == MAILIMAP_NO_ERROR && mailstream_flush(s->imap->imap_stream) != 0)
        r = MAILIMAP_ERROR_STREAM;
    if (r != MAILIMAP_NO_ERROR) {
        /* Part of it may have gone out: the session is out of step (both
         * errors end it). */
        forget_queue(s);
        return imap_fail_call(s, r == MAILIMAP_ERROR_MEMORY ? r : MAILIMAP_ERROR_STREAM, "EXAMINE (QRESYNC) ahead",
                              err);
    }
    return MS_OK;
}

/* ---- imap_select_qresync ---- */

/* Drop from the sorted m[0..*n) every UID in the sorted, unique v. */
static void drop_vanished(struct remote_msg *m, size_t *n, const uint32_t *v, size_t nv)
{
    size_t o = 0, j = 0;
    for (size_t i = 0; i < *n; i++) {
        while (j < nv && v[j] < m[i].uid)
            j++;
        if (j < nv && v[j] == m[i].uid) {
            free(m[i].keywords);
            continue;
        }
        m[o++] = m[i];
    }
    *n = o;
}

/* The SELECT's own FETCH reports (UID FLAGS per message changed since the
 * modseq, RFC 7162 3.2.5.2) for UIDs below known_uidnext, plus UID FETCH
 * known_uidnext:* (UID FLAGS RFC822.SIZE) when UIDNEXT moved past it (when
 * have_pre, that listing was pipelined with the SELECT and is *pre: taken
 * over when used, else left to the caller). Falls back to the full
 * CHANGEDSINCE listing (false returned through *used) when a report lacked
 * UID or FLAGS, or nothing is known. */
static int changes_from_select(struct imap_session *s, struct fetch_ctx *sel, uint32_t known_uidnext,
                               const struct remote_box *mb, bool have_pre, struct remote_msg **pre, size_t *npre,
                               struct remote_msg **out, size_t *n, bool *used, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    *used = false;
    if (known_uidnext <= 1 || sel->unplaced || sel->overflow)
        return MS_OK;
    for (size_t i = 0; i < sel->nmsgs; i++)
        if (sel->msgs[i].flags & FLAGS_MISSING)
            return MS_OK;
    struct remote_msg *fresh = NULL;
    size_t nfresh = 0;
    if (mb->uidnext == 0 || mb->uidnext > known_uidnext) {
        if (have_pre) {
            fresh = *pre;
            nfresh = *npre;
            *pre = NULL;
            *npre = 0;
        } else {
            int rc = imap_fetch_flags_modseq(s, known_uidnext, 0, 0, &fresh, &nfresh, err);
            if (rc != MS_OK)
                return rc;
        }
    }
    struct remote_msg *m = malloc((sel->nmsgs + nfresh + 1) * sizeof *m);
    if (!m) {
        remote_msgs_free(fresh, nfresh);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < sel->nmsgs; i++) {
        if (sel->msgs[i].uid < known_uidnext) {
            m[k] = sel->msgs[i];
            m[k++].size = 0; /* not asked: the caller knows these */
        } else {
            free(sel->msgs[i].keywords); /* new: the FETCH below says it with its size */
        }
    }
    sel->nmsgs = 0;
    for (size_t i = 0; i < nfresh; i++)
        m[k++] = fresh[i];
    free(fresh);
    size_t kept = imap_sort_dedupe(m, k);
    if (kept == SIZE_MAX) {
        remote_msgs_free(m, k);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    *out = m;
    *n = kept;
    *used = true;
    return MS_OK;
}

/* The answer to the UID FETCH send_select_qresync pipelined behind the
 * SELECT (the last command sent): the new messages' UID FLAGS
 * RFC822.SIZE into *out, as imap_fetch_flags_modseq(first, 0) would give them. */
static int read_ahead_fetch(struct imap_session *s, uint32_t first, struct remote_msg **out, size_t *n,
                            struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    struct fetch_ctx *f = calloc(1, sizeof *f);
    if (!f) {
        imap_kill_stream(s); /* its answer cannot be read now */
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    f->s = s;
    f->first = first;
    return imap_finish_flags_fetch(f, imap_read_flags_answer(s, s->imap->imap_tag, f, "UID FETCH (FLAGS)", err), out, n, err);
}

int imap_select_qresync(struct imap_session *s, const char *name, bool read_write, uint32_t uidvalidity,
                        uint64_t modseq, uint32_t known_uidnext, uint32_t expect_uidnext, struct remote_box *out,
                        struct remote_msg **changed, size_t *nchanged, uint32_t **vanished, size_t *nvanished,
                        struct ms_error *err)
{
    uint32_t from;
    return imap_select_qresync_window(s, name, read_write, uidvalidity, modseq, known_uidnext, expect_uidnext, 0,
                                      out, changed, nchanged, &from, vanished, nvanished, err);
}

int imap_select_qresync_window(struct imap_session *s, const char *name, bool read_write, uint32_t uidvalidity,
                               uint64_t modseq, uint32_t known_uidnext, uint32_t expect_uidnext, uint32_t window,
                               struct remote_box *out, struct remote_msg **changed, size_t *nchanged,
                               uint32_t *from, uint32_t **vanished, size_t *nvanished, struct ms_error *err)
{
    *from = 0;
    memset(out, 0, sizeof *out);
    *changed = NULL;
    *nchanged = 0;
    *vanished = NULL;
    *nvanished = 0;
    char shown[120], what[160];
    int rc = imap_check_alive(s, err); /* not imap_ready(): its answer may be queued */
    if (rc == MS_OK)
        rc = imap_drop_window_ahead(s, err); /* (never beside queued EXAMINEs) */
    if (rc == MS_OK)
        rc = imap_folder_name_ok(name, shown, sizeof shown, err);
    if (rc != MS_OK)
        return rc;
    snprintf(what, sizeof what, "%s %s (QRESYNC)", read_write ? "SELECT" : "EXAMINE", shown);
    if (!s->qresync)
        return ms_error_set(err, MS_EUSAGE, "%s: QRESYNC is not enabled on this session", what);
    if (uidvalidity == 0 || modseq == 0)
        return ms_error_set(err, MS_EUSAGE, "%s: needs a known UIDVALIDITY and MODSEQ", what);

    imap_stash_free(s->stash); /* another folder's, or an older answer's */
    s->stash = NULL;
    struct fetch_ctx *sel = calloc(1, sizeof *sel);
    if (!sel)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    sel->s = s;
    sel->first = 1;
    /* The SELECT's reports of changed messages, up to a window of them:
     * past it, none are kept whole; they go to the stash, compact, and the
     * windows below are taken from it (imap_fetch_flags_changedsince). */
    sel->max = window;
    if (window && !(sel->stash = calloc(1, sizeof *sel->stash))) {
        free(sel);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    if (sel->stash)
        *sel->stash = (struct imap_stash){.ok = true, .modseq = modseq, .known_uidnext = known_uidnext};
    /* New mail the caller already knows of (a STATUS earlier in the
     * session): its listing goes out with the SELECT, a round trip less. */
    uint32_t ahead = known_uidnext > 1 && expect_uidnext > known_uidnext ? known_uidnext : 0;
    /* Sent already by imap_examine_ahead()? Then only its answer is read
     * (and that of the listing sent behind it, with ahead). */
    int queued_tag = 0, fetch_tag = 0;
    bool queued = false;
    if (!read_write)
        rc = take_queued(s, name, uidvalidity, modseq, ahead, &queued_tag, &fetch_tag, &queued, err);
    if (rc == MS_OK && !queued)
        rc = imap_settle_ahead(s, false, err);
    if (rc != MS_OK) {
        imap_stash_free(sel->stash);
        free(sel);
        return rc;
    }
    free(s->reselect); /* whatever is selected next, it is this one */
    s->reselect = NULL;
    int r = queued ? read_select_qresync(s, queued_tag, fetch_tag, sel)
                   : send_select_qresync(s, name, read_write, uidvalidity, modseq, ahead, sel);
    /* The listing's answer is read under the session's last tag (below):
     * a queued one is the last command sent (any other command would have
     * read the queue first). */
    if (r == MAILIMAP_NO_ERROR && queued && ahead && fetch_tag != s->imap->imap_tag)
        r = MAILIMAP_ERROR_PROTOCOL;
    rc = imap_fetch_outcome(s, sel, r, what, err);
    struct mailimap_selection_info *si = rc == MS_OK ? s->imap->imap_selection_info : NULL;
    if (rc == MS_OK && (!si || si->sel_uidvalidity == 0)) {
        rc = ms_error_set(err, MS_EPARTIAL, "%s: server gave no UIDVALIDITY", what);
        int ignored;
        if (ahead && imap_read_tagged(s, s->imap->imap_tag, NULL, &ignored) != MAILIMAP_NO_ERROR)
            imap_kill_stream(s);
    }
    if (rc != MS_OK) {
        remote_msgs_free(sel->msgs, sel->nmsgs);
        imap_stash_free(sel->stash);
        free(sel);
        return rc;
    }
    out->uidvalidity = si->sel_uidvalidity;
    out->uidnext = si->sel_uidnext;
    out->exists = si->sel_exists;
    out->highestmodseq = response_highestmodseq(s);
    if (queued && s->ahead_next < s->nahead) {
        /* The EXAMINEs queued behind this one move the server on: a
         * command on this folder selects it again first. */
        s->reselect = strdup(name);
        s->reselect_uv = out->uidvalidity;
        if (!s->reselect) {
            remote_msgs_free(sel->msgs, sel->nmsgs);
            imap_stash_free(sel->stash);
            free(sel);
            return ms_error_set(err, MS_ELOCAL, "out of memory");
        }
    }

    struct imap_uid_list gone = {0};
    struct remote_msg *msgs = NULL, *fresh = NULL;
    size_t nmsgs = 0, nfresh = 0;
    bool incremental = out->uidvalidity == uidvalidity && out->highestmodseq != 0 && out->highestmodseq >= modseq;
    /* VANISHED (EARLIER) came with the SELECT: collect them all before the
     * next answer read replaces libetpan's response info. */
    uint32_t top = out->uidnext > 1 ? out->uidnext - 1 : 0;
    bool too_many = false; /* more vanished UIDs than held: listed in full */
    if (incremental)
        rc = collect_vanished(s, &gone, top, &too_many, err);
    if (ahead) {
        /* Read whatever happens next: the session must stay in step. */
        int frc = read_ahead_fetch(s, ahead, &fresh, &nfresh, err);
        rc = rc != MS_OK ? rc : frc;
    }
    if (incremental && !too_many) {
        int select_tag = s->imap->imap_tag;
        bool used = false;
        if (rc == MS_OK)
            rc =
                changes_from_select(s, sel, known_uidnext, out, ahead != 0, &fresh, &nfresh, &msgs, &nmsgs, &used, err);
        if (rc == MS_OK && used && nmsgs == 0 && gone.n == 0 && out->highestmodseq > modseq) {
            /* HIGHESTMODSEQ moved, yet the SELECT reported no change and
             * no expunge: do not trust its silence, list the changes. */
            remote_msgs_free(msgs, nmsgs);
            msgs = NULL;
            used = false;
        }
        /* Past the window the EXAMINE's reports went to the stash: the
         * windows below are taken from it, and so is the top one unless it
         * holds new mail (whose sizes the answer did not say). */
        bool stashed = sel->overflow && sel->stash && sel->stash->ok && known_uidnext > 1;
        if (stashed) {
            imap_stash_seal(sel->stash);
            if (!(sel->stash->folder = strdup(name)))
                rc = ms_error_set(err, MS_ELOCAL, "out of memory");
        }
        if (rc == MS_OK && !used && out->exists > 0) {
            uint32_t top_from = out->uidnext > window + 1 ? out->uidnext - window : 0;
            if (stashed && top_from > 1 && imap_stash_serves(sel->stash, top_from, UINT32_MAX, modseq)) {
                *from = top_from;
                if (!imap_stash_take(sel->stash, top_from, UINT32_MAX, &msgs, &nmsgs))
                    rc = ms_error_set(err, MS_ELOCAL, "out of memory");
            } else {
                rc = imap_fetch_changes_windowed(s, modseq, window, out->uidnext, sel->overflow, &msgs, &nmsgs, from,
                                                 err);
            }
        }
        if (rc == MS_OK && stashed && *from > 1) {
            log_msg(LOG_VERBOSE, "%s: %s: %zu changes past the window kept from its answer", s->host, what,
                    sel->stash->n);
            s->stash = sel->stash; /* the windows below are taken from it */
            sel->stash = NULL;
        }
        if (rc == MS_OK && (ahead || s->imap->imap_tag != select_tag)) {
            /* Expunges while we fetched arrive as plain VANISHED (only
             * when a FETCH went out: else the response info is still the
             * SELECT's, whose VANISHED are in, clipped at UIDNEXT). */
            if (nmsgs > 0 && msgs[nmsgs - 1].uid > top)
                top = msgs[nmsgs - 1].uid;
            rc = collect_vanished(s, &gone, top, &too_many, err);
        }
        /* Mail that arrived after the SELECT was listed too: UIDNEXT is
         * past every UID seen (so past every VANISHED taken, which stop
         * at the highest listed UID). */
        if (nmsgs > 0 && msgs[nmsgs - 1].uid >= out->uidnext && msgs[nmsgs - 1].uid < UINT32_MAX)
            out->uidnext = msgs[nmsgs - 1].uid + 1;
    }
    remote_msgs_free(sel->msgs, sel->nmsgs);
    imap_stash_free(sel->stash); /* not kept */
    free(sel);
    remote_msgs_free(fresh, nfresh); /* not taken (non-incremental, or no new UIDs) */
    if (rc != MS_OK || too_many) {
        imap_uid_list_free(&gone);
        remote_msgs_free(msgs, nmsgs);
        if (rc == MS_OK) {
            *from = 0;
            log_msg(LOG_VERBOSE, "%s: %s: more than %zu vanished UIDs since modseq %" PRIu64 ": listed in full",
                    s->host, what, vanished_cap(s), modseq);
        }
        return rc; /* too_many: MS_OK, both lists NULL */
    }
    imap_uid_list_sort_unique(&gone);
    if (msgs)
        drop_vanished(msgs, &nmsgs, gone.v, gone.n);
    if (s->stash && gone.n) /* (kept by this call) what vanished is no change */
        imap_stash_drop(s->stash, gone.v, gone.n);
    *changed = msgs ? msgs : calloc(1, sizeof **changed);
    *vanished = gone.v ? gone.v : calloc(1, sizeof **vanished);
    if (!*changed || !*vanished) {
        remote_msgs_free(*changed, nmsgs);
        free(*vanished);
        *changed = NULL;
        *vanished = NULL;
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    *nchanged = msgs ? nmsgs : 0;
    *nvanished = gone.n;
    log_msg(LOG_VERBOSE, "%s: %s: %zu changed, %zu vanished since modseq %" PRIu64, s->host, what, *nchanged,
            *nvanished, modseq);
    return MS_OK;
}

/* ======================================================================
 * CONDSTORE without QRESYNC: the changes by CHANGEDSINCE, the expunges
 * from every UID (UID SEARCH)
 * ==================================================================== */

int imap_fetch_flags_changedsince(struct imap_session *s, uint32_t first, uint32_t last, uint64_t modseq,
                                  struct remote_msg **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    if (modseq == 0)
        return ms_error_set(err, MS_EUSAGE, "UID FETCH (CHANGEDSINCE): needs a known MODSEQ");
    if (imap_stash_serves(s->stash, first, last, modseq)) /* the EXAMINE's answer had them */
        return imap_stash_take(s->stash, first, last, out, n) ? MS_OK : ms_error_set(err, MS_ELOCAL, "out of memory");
    return imap_fetch_flags_modseq(s, first, last, modseq, out, n, err);
}

/* UID SEARCH key (freed here), adding the answers within first..last
 * (last 0: no upper end) to l. what names the command in errors. */
int imap_uid_search(struct imap_session *s, struct mailimap_search_key *key, uint32_t first, uint32_t last,
                    const char *what, struct imap_uid_list *l, struct ms_error *err)
{
    clist *res = NULL;
    int r = mailimap_uid_search(s->imap, NULL, key, &res);
    mailimap_search_key_free(key);
    if (r != MAILIMAP_NO_ERROR) {
        if (res) /* after a NO libetpan still hands over the list */
            mailimap_search_result_free(res);
        return imap_fail_call(s, r, what, err);
    }
    int rc = MS_OK;
    for (clistiter *it = res ? clist_begin(res) : NULL; it && rc == MS_OK; it = clist_next(it)) {
        uint32_t *u = clist_content(it);
        /* "a:*" also matches the highest UID when it is below a. */
        if (!u || *u < first || (last && *u > last))
            continue;
        if (imap_uid_list_add_range(l, *u, *u, 0, SIZE_MAX / sizeof(uint32_t)) != 0)
            rc = ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    if (res)
        mailimap_search_result_free(res);
    return rc;
}

/* One UID SEARCH UID first:last (last 0 = '*'), adding the answers within
 * the range to l. */
static int search_uid_range(struct imap_session *s, uint32_t first, uint32_t last, struct imap_uid_list *l,
                            struct ms_error *err)
{
    struct mailimap_set *set = mailimap_set_new_interval(first, last);
    struct mailimap_search_key *key = set ? mailimap_search_key_new_uid(set) : NULL;
    if (!key) {
        if (set)
            mailimap_set_free(set);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    return imap_uid_search(s, key, first, last, "UID SEARCH", l, err);
}

int imap_fetch_uids(struct imap_session *s, uint32_t **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    int rc = imap_ready(s, true, err);
    if (rc != MS_OK)
        return rc;
    struct mailimap_selection_info *si = s->imap->imap_selection_info;
    if (s->imap->imap_state != MAILIMAP_STATE_SELECTED || !si)
        return ms_error_set(err, MS_EUSAGE, "UID SEARCH: no folder selected");
    /* UID ranges expected to hold UIDS_PER_SEARCH messages each: bounded
     * answers even when UIDs are sparse, and UIDs (not sequence numbers)
     * so expunges between the commands cannot shift anything. */
    uint64_t width = UINT32_MAX;
    if (si->sel_uidnext > 1 && si->sel_exists > 0) {
        width = (uint64_t)UIDS_PER_SEARCH * si->sel_uidnext / si->sel_exists;
        if (width < UIDS_PER_SEARCH)
            width = UIDS_PER_SEARCH;
    }
    uint64_t top = si->sel_uidnext > 1 ? si->sel_uidnext - 1 : 0;
    struct imap_uid_list l = {0};
    for (uint64_t a = 1; rc == MS_OK;) {
        uint64_t b = a + width - 1;
        bool last = top == 0 || b >= top || b >= UINT32_MAX;
        rc = search_uid_range(s, (uint32_t)a, last ? 0 : (uint32_t)b, &l, err);
        if (last)
            break;
        a = b + 1;
    }
    if (rc != MS_OK) {
        imap_uid_list_free(&l);
        return rc;
    }
    imap_uid_list_sort_unique(&l);
    *out = l.v ? l.v : calloc(1, sizeof **out);
    if (!*out)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    *n = l.n;
    return MS_OK;
}
