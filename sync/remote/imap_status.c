/*
 * imap_status.c: what the IMAP side asks about folders (imap.h): LIST,
 * SELECT/EXAMINE, STATUS, and LIST with the STATUS of many folders
 * pipelined in one round trip (with ENABLE QRESYNC CONDSTORE first when
 * asked), and ENABLE on its own.
 *
 * STATUS answers are matched to the folder asked for by mailbox name
 * (libetpan keeps only the last STATUS response of a command, and a server
 * may send unsolicited ones). The incremental side of CONDSTORE/QRESYNC
 * (SELECT (QRESYNC), EXAMINEs sent ahead) is in imap_qresync.c.
 */
#include "sync/remote/imap.h"
#include "sync/remote/imap_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libetpan/libetpan.h>

#include "sync/log.h"

/* ======================================================================
 * LIST, SELECT
 * ==================================================================== */

static bool flag_ext_is(const char *ext, const char *name)
{
    if (!ext)
        return false;
    if (*ext == '\\')
        ext++;
    return strcasecmp(ext, name) == 0;
}

static bool mailbox_noselect(const struct mailimap_mbx_list_flags *fl)
{
    if (!fl)
        return false;
    if (fl->mbf_type == MAILIMAP_MBX_LIST_FLAGS_SFLAG && fl->mbf_sflag == MAILIMAP_MBX_LIST_SFLAG_NOSELECT)
        return true;
    for (clistiter *it = fl->mbf_oflags ? clist_begin(fl->mbf_oflags) : NULL; it; it = clist_next(it)) {
        struct mailimap_mbx_list_oflag *of = clist_content(it);
        if (of->of_type == MAILIMAP_MBX_LIST_OFLAG_FLAG_EXT &&
            (flag_ext_is(of->of_flag_ext, "NonExistent") || flag_ext_is(of->of_flag_ext, "Noselect")))
            return true;
    }
    return false;
}

/* Append the LIST responses in list to *f (*n entries, *cap allocated).
 * Returns false if out of memory. */
static bool add_folders(clist *list, struct remote_folder **f, size_t *n, size_t *cap)
{
    for (clistiter *it = list ? clist_begin(list) : NULL; it; it = clist_next(it)) {
        struct mailimap_mailbox_list *mb = clist_content(it);
        if (!mb || !mb->mb_name)
            continue;
        if (*n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 16;
            struct remote_folder *g = realloc(*f, ncap * sizeof *g);
            if (!g)
                return false;
            *f = g;
            *cap = ncap;
        }
        struct remote_folder *x = &(*f)[*n];
        *x = (struct remote_folder){0};
        x->name = strdup(mb->mb_name);
        if (!x->name)
            return false;
        x->delim = mb->mb_delimiter;
        x->noselect = mailbox_noselect(mb->mb_flag);
        (*n)++;
    }
    return true;
}

int imap_list(struct imap_session *s, struct remote_folder **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    int rc = imap_ready(s, false, err);
    if (rc != MS_OK)
        return rc;
    clist *list = NULL;
    int r = mailimap_list(s->imap, "", "*", &list);
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, "LIST", err);
    struct remote_folder *f = NULL;
    size_t nf = 0, cap = 0;
    bool ok = add_folders(list, &f, &nf, &cap);
    if (list)
        mailimap_list_result_free(list);
    if (!ok) {
        remote_folders_free(f, nf);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    *out = f ? f : calloc(1, sizeof *f);
    *n = nf;
    return *out ? MS_OK : ms_error_set(err, MS_ELOCAL, "out of memory");
}

int imap_select(struct imap_session *s, const char *name, bool read_write, struct remote_box *out, struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    char shown[120];
    int rc = imap_folder_cmd_start(s, name, shown, sizeof shown, err);
    if (rc != MS_OK)
        return rc;
    free(s->reselect); /* whatever is selected next, it is this one */
    s->reselect = NULL;
    /* QRESYNC implies CONDSTORE (RFC 7162 section 3.2). */
    bool condstore = imap_has_capability(s, "CONDSTORE") || imap_has_capability(s, "QRESYNC");
    uint64_t modseq = 0;
    int r;
    if (read_write)
        r = condstore ? mailimap_select_condstore(s->imap, name, &modseq) : mailimap_select(s->imap, name);
    else
        r = condstore ? mailimap_examine_condstore(s->imap, name, &modseq) : mailimap_examine(s->imap, name);
    char what[200];
    snprintf(what, sizeof what, "%s %s", read_write ? "SELECT" : "EXAMINE", shown);
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, what, err);
    struct mailimap_selection_info *si = s->imap->imap_selection_info;
    if (!si || si->sel_uidvalidity == 0)
        return ms_error_set(err, MS_EPARTIAL, "%s: server gave no UIDVALIDITY", what);
    out->uidvalidity = si->sel_uidvalidity;
    out->uidnext = si->sel_uidnext;
    out->exists = si->sel_exists;
    out->highestmodseq = modseq;
    return MS_OK;
}

/* ======================================================================
 * STATUS (with HIGHESTMODSEQ under CONDSTORE), LIST+STATUS, ENABLE QRESYNC
 * ==================================================================== */

/* a (as a server response named it) equals b? libetpan hands over the
 * mailbox of a STATUS response still in its quoted form ("a b" with
 * \" and \\ escapes) when the server quoted it, so undo that first. */
static bool same_quoted(const char *a, const char *b)
{
    size_t n = strlen(a);
    if (n < 2 || a[0] != '"' || a[n - 1] != '"')
        return false;
    for (size_t i = 1; i < n - 1; i++, b++) {
        if (a[i] == '\\' && i + 1 < n - 1)
            i++;
        if (*b != a[i])
            return false;
    }
    return *b == '\0';
}

/* The same mailbox? INBOX is case-insensitive (RFC 3501 section 5.1). */
static bool same_mailbox(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    if (strcasecmp(a, "INBOX") == 0 && strcasecmp(b, "INBOX") == 0)
        return true;
    return strcmp(a, b) == 0 || same_quoted(a, b);
}

struct mailimap_extension_data *imap_ext_item(clistiter *it, int ext_id, int ext_type)
{
    struct mailimap_extension_data *e = clist_content(it);
    if (!e || !e->ext_extension || e->ext_extension->ext_id != ext_id || e->ext_type != ext_type || !e->ext_data)
        return NULL;
    return e;
}

/* The STATUS items this session asks for; NULL if out of memory. */
static struct mailimap_status_att_list *status_atts(bool condstore)
{
    struct mailimap_status_att_list *atts = mailimap_status_att_list_new_empty();
    if (!atts || mailimap_status_att_list_add(atts, MAILIMAP_STATUS_ATT_MESSAGES) != MAILIMAP_NO_ERROR ||
        mailimap_status_att_list_add(atts, MAILIMAP_STATUS_ATT_UIDNEXT) != MAILIMAP_NO_ERROR ||
        mailimap_status_att_list_add(atts, MAILIMAP_STATUS_ATT_UIDVALIDITY) != MAILIMAP_NO_ERROR ||
        (condstore && mailimap_status_att_list_add(atts, MAILIMAP_STATUS_ATT_HIGHESTMODSEQ) != MAILIMAP_NO_ERROR)) {
        if (atts)
            mailimap_status_att_list_free(atts);
        return NULL;
    }
    return atts;
}

static bool session_condstore(struct imap_session *s)
{
    return imap_has_capability(s, "CONDSTORE") || imap_has_capability(s, "QRESYNC");
}

/* The values of a STATUS response into out. */
static void status_values(const struct mailimap_mailbox_data_status *st, bool condstore, struct remote_status *out)
{
    for (clistiter *it = st->st_info_list ? clist_begin(st->st_info_list) : NULL; it; it = clist_next(it)) {
        struct mailimap_status_info *si = clist_content(it);
        if (!si)
            continue;
        switch (si->st_att) {
        case MAILIMAP_STATUS_ATT_MESSAGES: out->messages = si->st_value; break;
        case MAILIMAP_STATUS_ATT_UIDNEXT: out->uidnext = si->st_value; break;
        case MAILIMAP_STATUS_ATT_UIDVALIDITY: out->uidvalidity = si->st_value; break;
        case MAILIMAP_STATUS_ATT_EXTENSION: {
            struct mailimap_extension_data *e = si->st_ext_data;
            if (condstore && e && e->ext_extension && e->ext_extension->ext_id == MAILIMAP_EXTENSION_CONDSTORE &&
                e->ext_type == MAILIMAP_CONDSTORE_TYPE_STATUS_INFO && e->ext_data)
                out->highestmodseq = ((struct mailimap_condstore_status_info *)e->ext_data)->cs_highestmodseq_value;
            break;
        }
        default: break;
        }
    }
}

int imap_status(struct imap_session *s, const char *name, struct remote_status *out, struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    char shown[120], what[140];
    int rc = imap_folder_cmd_start(s, name, shown, sizeof shown, err);
    if (rc != MS_OK)
        return rc;
    snprintf(what, sizeof what, "STATUS %s", shown);
    bool condstore = session_condstore(s);
    struct mailimap_status_att_list *atts = status_atts(condstore);
    if (!atts)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    struct mailimap_mailbox_data_status *st = NULL;
    int r = mailimap_status(s->imap, name, atts, &st);
    mailimap_status_att_list_free(atts);
    if (r != MAILIMAP_NO_ERROR) {
        if (st) /* after a NO libetpan still hands over what it parsed */
            mailimap_mailbox_data_status_free(st);
        return imap_fail_call(s, r, what, err);
    }
    /* libetpan keeps only the last STATUS response of the command. */
    if (!st || !same_mailbox(st->st_mailbox, name)) {
        if (st)
            mailimap_mailbox_data_status_free(st);
        return ms_error_set(err, MS_EPARTIAL, "%s: the server's answer was %s", what,
                            st ? "about another folder" : "missing");
    }
    status_values(st, condstore, out);
    mailimap_mailbox_data_status_free(st);
    return MS_OK;
}

/* ENABLE QRESYNC may (still) be sent on this session. */
static bool may_enable_qresync(struct imap_session *s)
{
    /* RFC 5161: not after a SELECT; libetpan would refuse it anyway. */
    return s && !s->dead && s->imap && s->imap->imap_stream && !s->qresync && !s->enable_tried &&
           imap_has_capability(s, "QRESYNC") && imap_has_capability(s, "ENABLE") &&
           s->imap->imap_state == MAILIMAP_STATE_AUTHENTICATED;
}

/* QRESYNC among the capabilities an ENABLED response lists. */
static bool lists_qresync(const struct mailimap_capability_data *got)
{
    for (clistiter *it = got && got->cap_list ? clist_begin(got->cap_list) : NULL; it; it = clist_next(it)) {
        struct mailimap_capability *c = clist_content(it);
        if (c && c->cap_type == MAILIMAP_CAPABILITY_NAME && c->cap_data.cap_name &&
            strcasecmp(c->cap_data.cap_name, "QRESYNC") == 0)
            return true;
    }
    return false;
}

/* After an ENABLE was sent and its answer read. */
static void log_enable_outcome(const struct imap_session *s)
{
    log_msg(LOG_VERBOSE, "%s: QRESYNC %s", s->host, s->qresync ? "enabled" : "not confirmed by the server");
}

bool imap_qresync_enabled(const struct imap_session *s)
{
    return s && s->qresync;
}

/* Can a STATUS for name go out as a plain quoted string? Printable ASCII
 * only (a name with 8-bit bytes would need a literal). */
static bool quotable_name(const char *name)
{
    if (!name || !*name)
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return true;
}

/* After each complete response of the pipeline: the STATUS data it carried
 * (matched to a requested name by mailbox, whichever command it came
 * with) and its LIST entries. Returns false if out of memory. */
static bool take_pipelined(struct imap_session *s, const char *const *names, size_t n, bool condstore,
                           struct remote_status *st, bool *got, struct remote_folder **f, size_t *nf, size_t *cap)
{
    struct mailimap_response_info *ri = s->imap->imap_response_info;
    if (!ri)
        return true;
    for (clistiter *it = ri->rsp_extension_list ? clist_begin(ri->rsp_extension_list) : NULL; it; it = clist_next(it)) {
        /* ENABLED (libetpan's type 0 of its ENABLE extension) */
        struct mailimap_extension_data *e = imap_ext_item(it, MAILIMAP_EXTENSION_ENABLE, 0);
        if (e && lists_qresync(e->ext_data))
            s->qresync = true;
    }
    struct mailimap_mailbox_data_status *d = ri->rsp_status;
    for (size_t i = 0; d && i < n; i++)
        if (!got[i] && names[i] && same_mailbox(d->st_mailbox, names[i])) {
            status_values(d, condstore, &st[i]);
            got[i] = true;
            break;
        }
    return add_folders(ri->rsp_mailbox_list, f, nf, cap);
}

/* At most this many commands of imap_status_and_list are in flight: the
 * round trips are still hidden, and neither side's buffers can fill up
 * while the other waits for it to read (a deadlock with hundreds). */
#define PIPELINE_MAX 32

struct pipeline {
    struct imap_session *s;
    const char *const *names;
    size_t n;
    const char *items;
    bool enable;  /* ENABLE QRESYNC CONDSTORE still to go out (first) */
    size_t next;  /* next index into names to consider */
    size_t total; /* commands to send: the STATUSes asked + the LIST */
    size_t sent;
    int list_tag; /* 0 until the LIST is sent */
};

/* Send the next STATUS, or the LIST once they are all out (no flush). */
static int pipeline_send_next(struct pipeline *p)
{
    mailimap *imap = p->s->imap;
    mailstream *stream = imap->imap_stream;
    while (p->next < p->n && !quotable_name(p->names[p->next]))
        p->next++;
    int r;
    if (p->enable) {
        p->enable = false;
        p->s->enable_tried = true;
        r = mailimap_send_current_tag(imap);
        if (r == MAILIMAP_NO_ERROR && imap_stream_puts(stream, "ENABLE QRESYNC CONDSTORE\r\n"))
            r = MAILIMAP_ERROR_STREAM;
    } else if (p->next < p->n) {
        char *q = imap_quote_name(p->names[p->next++]);
        if (!q)
            return MAILIMAP_ERROR_MEMORY;
        r = mailimap_send_current_tag(imap);
        if (r == MAILIMAP_NO_ERROR &&
            (imap_stream_puts(stream, "STATUS ") || imap_stream_puts(stream, q) || imap_stream_puts(stream, p->items)))
            r = MAILIMAP_ERROR_STREAM;
        free(q);
    } else {
        r = mailimap_send_current_tag(imap);
        if (r == MAILIMAP_NO_ERROR && imap_stream_puts(stream, "LIST \"\" \"*\"\r\n"))
            r = MAILIMAP_ERROR_STREAM;
        p->list_tag = imap->imap_tag;
    }
    if (r == MAILIMAP_NO_ERROR)
        p->sent++;
    return r;
}

int imap_status_and_list(struct imap_session *s, bool enable_qresync, const char *const *names, size_t n,
                         struct remote_status *st, struct remote_folder **out, size_t *nout, struct ms_error *err)
{
    *out = NULL;
    *nout = 0;
    if (n)
        memset(st, 0, n * sizeof *st);
    int rc = imap_ready(s, false, err);
    if (rc != MS_OK)
        return rc;
    bool condstore = session_condstore(s);
    struct pipeline p = {.s = s,
                         .names = names,
                         .n = n,
                         .total = 1,
                         .items = condstore ? " (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n"
                                            : " (MESSAGES UIDNEXT UIDVALIDITY)\r\n"};
    bool *got = calloc(n + 1, sizeof *got);
    if (!got)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        got[i] = !quotable_name(names[i]); /* not asked: nothing to match */
        p.total += !got[i];
    }
    bool enabling = enable_qresync && may_enable_qresync(s);
    p.enable = enabling;
    p.total += enabling;
    mailimap *imap = s->imap;
    int r = MAILIMAP_NO_ERROR;
    while (r == MAILIMAP_NO_ERROR && p.sent < p.total && p.sent < PIPELINE_MAX)
        r = pipeline_send_next(&p);
    if (r == MAILIMAP_NO_ERROR && mailstream_flush(imap->imap_stream) != 0)
        r = MAILIMAP_ERROR_STREAM;

    /* Read p.total complete responses, sending one more command after
     * each while some are left. Servers may complete pipelined commands in
     * any order (RFC 3501 5.5): libetpan expects the tag last sent, parses
     * every response and keeps its untagged data either way, but returns
     * MAILIMAP_ERROR_PROTOCOL for other tags. The STATUS data is matched by
     * mailbox name (a STATUS that failed simply brings none); the LIST's
     * completion is the one with its tag. */
    struct remote_folder *f = NULL;
    size_t nf = 0, cap = 0;
    int list_state = -1;
    for (size_t k = 0; k < p.total && r == MAILIMAP_NO_ERROR; k++) {
        struct mailimap_response *resp = NULL;
        if (!mailimap_read_line(imap)) {
            r = MAILIMAP_ERROR_STREAM;
            break;
        }
        r = mailimap_parse_response(imap, &resp);
        if (r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_PROTOCOL)
            break;
        bool is_list = r == MAILIMAP_NO_ERROR && p.list_tag && imap->imap_tag == p.list_tag;
        int state = r == MAILIMAP_NO_ERROR ? resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type : -1;
        if (resp)
            mailimap_response_free(resp);
        r = MAILIMAP_NO_ERROR;
        if (!take_pipelined(s, names, n, condstore, st, got, &f, &nf, &cap))
            r = MAILIMAP_ERROR_MEMORY;
        else if (is_list && list_state != -1)
            r = MAILIMAP_ERROR_PROTOCOL; /* the LIST's tag twice */
        else if (is_list)
            list_state = state;
        if (r == MAILIMAP_NO_ERROR && p.sent < p.total &&
            ((r = pipeline_send_next(&p)) != MAILIMAP_NO_ERROR || mailstream_flush(imap->imap_stream) != 0))
            r = r != MAILIMAP_NO_ERROR ? r : MAILIMAP_ERROR_STREAM;
    }
    free(got);
    if (enabling && r == MAILIMAP_NO_ERROR)
        log_enable_outcome(s);
    if (r == MAILIMAP_NO_ERROR && list_state == -1)
        r = MAILIMAP_ERROR_PROTOCOL; /* the LIST never completed under its tag */
    if (r == MAILIMAP_NO_ERROR && list_state != MAILIMAP_RESP_COND_STATE_OK)
        r = MAILIMAP_ERROR_LIST;
    if (r != MAILIMAP_NO_ERROR) {
        remote_folders_free(f, nf);
        /* Commands may still be in flight: the session cannot be trusted. */
        if (r == MAILIMAP_ERROR_MEMORY)
            return imap_fail_dead(s, err, "STATUS/LIST: out of memory");
        if (r == MAILIMAP_ERROR_LIST)
            return imap_fail_call(s, r, "LIST", err);
        return imap_fail_call(s, r, "STATUS/LIST", err);
    }
    *out = f ? f : calloc(1, sizeof *f);
    *nout = nf;
    return *out ? MS_OK : ms_error_set(err, MS_ELOCAL, "out of memory");
}

/* A capability list of the two names, for ENABLE; NULL if out of memory. */
static struct mailimap_capability_data *new_cap_list(const char *a, const char *b)
{
    clist *list = clist_new();
    struct mailimap_capability_data *cd = list ? mailimap_capability_data_new(list) : NULL;
    if (!cd) {
        if (list)
            clist_free(list);
        return NULL;
    }
    const char *names[] = {a, b};
    for (int i = 0; i < 2; i++) {
        char *n = strdup(names[i]);
        struct mailimap_capability *c = n ? mailimap_capability_new(MAILIMAP_CAPABILITY_NAME, NULL, n) : NULL;
        if (!c || clist_append(list, c) != 0) {
            if (c)
                mailimap_capability_free(c);
            else
                free(n);
            mailimap_capability_data_free(cd); /* frees what the list holds */
            return NULL;
        }
    }
    return cd;
}

bool imap_enable_qresync(struct imap_session *s)
{
    if (!s || s->dead || !s->imap || !s->imap->imap_stream)
        return false;
    if (!may_enable_qresync(s))
        return s->qresync;
    s->enable_tried = true;
    struct mailimap_capability_data *req = new_cap_list("QRESYNC", "CONDSTORE");
    if (!req)
        return false;
    struct mailimap_capability_data *got = NULL;
    int r = mailimap_enable(s->imap, req, &got);
    mailimap_capability_data_free(req);
    if (r != MAILIMAP_NO_ERROR) {
        struct ms_error e = {0};
        imap_fail_call(s, r, "ENABLE QRESYNC", &e); /* kills the session if fatal */
        log_msg(LOG_VERBOSE, "%s: %s", s->host, e.msg);
        return false;
    }
    s->qresync = lists_qresync(got);
    if (got)
        mailimap_capability_data_free(got);
    log_enable_outcome(s);
    return s->qresync;
}
