/* SPDX-License-Identifier: MIT */
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
#include "sync/names.h"

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

/* The SPECIAL-USE roles (RFC 6154) among a LIST entry's attributes. */
static unsigned mailbox_roles(const struct mailimap_mbx_list_flags *fl)
{
    unsigned roles = 0;
    for (clistiter *it = fl && fl->mbf_oflags ? clist_begin(fl->mbf_oflags) : NULL; it; it = clist_next(it)) {
        struct mailimap_mbx_list_oflag *of = clist_content(it);
        /* libetpan keeps a flag-extension ("\\" atom) without its backslash */
        if (of && of->of_type == MAILIMAP_MBX_LIST_OFLAG_FLAG_EXT && of->of_flag_ext)
            roles |= names_role_bit(of->of_flag_ext, true);
    }
    return roles;
}

/* Append the LIST entry mb to *f (*n entries, *cap allocated), with its
 * roles when the server offers SPECIAL-USE (without it, attributes that
 * look like roles mean nothing we were promised). Returns false if out of
 * memory. */
static bool add_folder(const struct mailimap_mailbox_list *mb, bool roles, struct remote_folder **f, size_t *n,
                       size_t *cap)
{
    if (!mb || !mb->mb_name)
        return true;
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct remote_folder *g = realloc(*f, ncap * sizeof *g);
        if (!g)
            return false;
        *f = g;
        *cap = ncap;
    }
    struct remote_folder *x = &(*f)[*n];
    *x = (struct remote_folder){.name = strdup(mb->mb_name),
                                .delim = mb->mb_delimiter,
                                .noselect = mailbox_noselect(mb->mb_flag),
                                .roles = roles ? mailbox_roles(mb->mb_flag) : 0};
    if (!x->name)
        return false;
    (*n)++;
    return true;
}

int imap_list(struct imap_session *s, struct remote_folder **out, size_t *n, struct ms_error *err)
{
    /* the same pipeline as a sync run's (ID goes along), without STATUS */
    return imap_status_and_list(s, false, NULL, 0, NULL, out, n, err);
}

/* ID (RFC 2971): mailsync's name and version. */
#define ID_COMMAND "ID (\"name\" \"mailsync\" \"version\" \"" MAILSYNC_VERSION "\")"

/* ID on its own, for a session whose first command is not the listing
 * pipeline (an extra connection's EXAMINE): some servers refuse a SELECT
 * before it. A refusal (NO) changes nothing. */
static int send_id_alone(struct imap_session *s, struct ms_error *err)
{
    if (s->id_tried || !imap_has_capability(s, "ID"))
        return MS_OK;
    s->id_tried = true;
    int state;
    int r = imap_plain_command(s, ID_COMMAND, &state);
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, "ID", err);
    if (state != MAILIMAP_RESP_COND_STATE_OK)
        log_msg(LOG_VERBOSE, "%s: the server refused ID: %s", s->host, imap_server_text(s));
    return MS_OK;
}

int imap_select(struct imap_session *s, const char *name, bool read_write, struct remote_box *out, struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    char shown[120];
    int rc = imap_folder_cmd_start(s, name, shown, sizeof shown, err);
    if (rc == MS_OK)
        rc = send_id_alone(s, err);
    if (rc != MS_OK)
        return rc;
    free(s->reselect); /* whatever is selected next, it is this one */
    s->reselect = NULL;
    if (s->stash && strcmp(s->stash->folder, name) != 0) { /* (the same one again: a reselect) */
        imap_stash_free(s->stash);
        s->stash = NULL;
    }
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

/* ----------------------------------------------------------------------
 * The listing pipeline: [ID] [ENABLE] then either one LIST that brings
 * every folder's STATUS along (LIST-STATUS, RFC 5819) or the STATUS
 * commands and a plain LIST, all sent before the first answer is read.
 * -------------------------------------------------------------------- */

/* libetpan 1.9.4 exports its response parser but installs no header for
 * it (mailimap_parser.h); declared as its source does. It parses one whole
 * response without storing it in the session, which keeps only the last
 * STATUS of a response: a LIST-STATUS answer holds one per folder. */
struct mailimap_parser_context *mailimap_parser_context_new(mailimap *session);
void mailimap_parser_context_free(struct mailimap_parser_context *ctx);
int mailimap_response_parse(mailstream *fd, MMAPString *buffer, struct mailimap_parser_context *parser_ctx,
                            size_t *indx, struct mailimap_response **result, size_t progr_rate,
                            progress_function *progr_fun);

/* At most this many commands of imap_status_and_list are in flight: the
 * round trips are still hidden, and neither side's buffers can fill up
 * while the other waits for it to read (a deadlock with hundreds). */
#define PIPELINE_MAX 32

struct pipeline {
    struct imap_session *s;
    const char *const *names;
    size_t n;
    bool condstore;
    const char *items; /* the STATUS items, " (MESSAGES ...)\r\n" */
    char list[160];    /* the LIST command after its tag, "\r\n" included */
    bool id;           /* ID still to go out (first) */
    bool enable;       /* ENABLE QRESYNC CONDSTORE still to go out */
    bool enabling;     /* ...it was asked for and allowed */
    bool list_status;  /* the LIST brings the STATUS answers: no STATUS commands */
    bool roles;        /* the server offers SPECIAL-USE: read the folders' roles */
    size_t next;       /* next index into names to consider */
    size_t total;      /* commands to send */
    size_t sent;
    int id_tag, list_tag; /* 0 until sent */
    /* the answers */
    struct remote_status *st;
    bool *got; /* per name: its STATUS came */
    struct remote_folder *f;
    size_t nf, cap;
    int list_state; /* the LIST's tagged state, -1 until it came */
};

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

/* Send the next command (not flushed): ID, ENABLE, the STATUSes, the
 * LIST last. */
static int pipeline_send_next(struct pipeline *p)
{
    mailimap *imap = p->s->imap;
    mailstream *stream = imap->imap_stream;
    while (!p->list_status && p->next < p->n && !quotable_name(p->names[p->next]))
        p->next++;
    int r = mailimap_send_current_tag(imap);
    if (r != MAILIMAP_NO_ERROR)
        return r;
    if (p->id) {
        p->id = false;
        p->s->id_tried = true;
        p->id_tag = imap->imap_tag;
        if (imap_stream_puts(stream, ID_COMMAND "\r\n"))
            r = MAILIMAP_ERROR_STREAM;
    } else if (p->enable) {
        p->enable = false;
        p->s->enable_tried = true;
        if (imap_stream_puts(stream, "ENABLE QRESYNC CONDSTORE\r\n"))
            r = MAILIMAP_ERROR_STREAM;
    } else if (!p->list_status && p->next < p->n) {
        char *q = imap_quote_name(p->names[p->next++]);
        if (!q)
            return MAILIMAP_ERROR_MEMORY;
        if (imap_stream_puts(stream, "STATUS ") || imap_stream_puts(stream, q) || imap_stream_puts(stream, p->items))
            r = MAILIMAP_ERROR_STREAM;
        free(q);
    } else {
        p->list_tag = imap->imap_tag;
        if (imap_stream_puts(stream, p->list))
            r = MAILIMAP_ERROR_STREAM;
    }
    if (r == MAILIMAP_NO_ERROR)
        p->sent++;
    return r;
}

/* Read one complete response (untagged data, then its tagged or fatal
 * end) into *out, as libetpan's mailimap_parse_response would, but
 * without its storing (see above); the tagged text is kept for
 * imap_server_text(). A libetpan error code. */
static int read_response(struct imap_session *s, struct mailimap_response **out)
{
    mailimap *imap = s->imap;
    *out = NULL;
    if (!mailimap_read_line(imap))
        return MAILIMAP_ERROR_STREAM;
    struct mailimap_parser_context *ctx = mailimap_parser_context_new(imap);
    if (!ctx)
        return MAILIMAP_ERROR_MEMORY;
    size_t indx = 0;
    int r = mailimap_response_parse(imap->imap_stream, imap->imap_stream_buffer, ctx, &indx, out,
                                    imap->imap_progr_rate, imap->imap_progr_fun);
    mailimap_parser_context_free(ctx);
    if (r != MAILIMAP_NO_ERROR)
        return r;
    struct mailimap_response_done *done = (*out)->rsp_resp_done;
    if (!done || done->rsp_type != MAILIMAP_RESP_DONE_TYPE_TAGGED || !done->rsp_data.rsp_tagged ||
        !done->rsp_data.rsp_tagged->rsp_cond_state) {
        mailimap_response_free(*out);
        *out = NULL;
        return MAILIMAP_ERROR_FATAL; /* BYE */
    }
    struct mailimap_resp_text *t = done->rsp_data.rsp_tagged->rsp_cond_state->rsp_text;
    if (!mmap_string_assign(imap->imap_response_buffer, t && t->rsp_text ? t->rsp_text : "")) {
        mailimap_response_free(*out);
        *out = NULL;
        return MAILIMAP_ERROR_MEMORY;
    }
    imap->imap_response = imap->imap_response_buffer->str;
    return MAILIMAP_NO_ERROR;
}

/* The tag of a tagged response as our number (mailimap_send_current_tag's
 * decimal tags), or 0. */
static int response_tag(const struct mailimap_response *resp)
{
    const char *t = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_tag;
    char *end = NULL;
    long v = t && *t >= '0' && *t <= '9' ? strtol(t, &end, 10) : 0;
    return end && *end == '\0' && v > 0 && v <= 0x7fffffff ? (int)v : 0;
}

static bool ext_is(const struct mailimap_extension_data *e, int id, int type)
{
    return e && e->ext_extension && e->ext_extension->ext_id == id && e->ext_type == type && e->ext_data;
}

/* The server's ID answer, for -v: its name and version (hostile text,
 * escaped). */
static void log_server_id(const struct imap_session *s, const struct mailimap_id_params_list *l)
{
    const char *name = NULL, *version = NULL;
    for (clistiter *it = l && l->idpa_list ? clist_begin(l->idpa_list) : NULL; it; it = clist_next(it)) {
        const struct mailimap_id_param *pa = clist_content(it);
        if (pa && pa->idpa_name && pa->idpa_value && strcasecmp(pa->idpa_name, "name") == 0)
            name = pa->idpa_value;
        else if (pa && pa->idpa_name && pa->idpa_value && strcasecmp(pa->idpa_name, "version") == 0)
            version = pa->idpa_value;
    }
    char n[80], v[80];
    imap_escape_text(name ? name : "", name ? strnlen(name, 60) : 0, n, sizeof n);
    imap_escape_text(version ? version : "", version ? strnlen(version, 60) : 0, v, sizeof v);
    log_msg(LOG_VERBOSE, "%s: ID: the server is %s%s%s", s->host, name ? n : "(unnamed)", version ? " " : "",
            version ? v : "");
}

/* An extension's data in a response (ENABLED, ID). */
static void take_extension(struct pipeline *p, const struct mailimap_extension_data *e)
{
    /* ENABLED (libetpan's type 0 of its ENABLE extension) */
    if (ext_is(e, MAILIMAP_EXTENSION_ENABLE, 0) && lists_qresync(e->ext_data))
        p->s->qresync = true;
    else if (ext_is(e, MAILIMAP_EXTENSION_ID, 0))
        log_server_id(p->s, e->ext_data);
}

/* A STATUS answer, matched to a requested name by mailbox (whichever
 * command it came with). */
static void take_status(struct pipeline *p, const struct mailimap_mailbox_data_status *d)
{
    for (size_t i = 0; d && i < p->n; i++)
        if (!p->got[i] && p->names[i] && same_mailbox(d->st_mailbox, p->names[i])) {
            status_values(d, p->condstore, &p->st[i]);
            p->got[i] = true;
            return;
        }
}

/* The data of one complete response of the pipeline. Returns false if out
 * of memory. */
static bool take_response(struct pipeline *p, const struct mailimap_response *resp)
{
    clist *l = resp->rsp_cont_req_or_resp_data_list;
    for (clistiter *it = l ? clist_begin(l) : NULL; it; it = clist_next(it)) {
        const struct mailimap_cont_req_or_resp_data *c = clist_content(it);
        const struct mailimap_response_data *d =
            c && c->rsp_type == MAILIMAP_RESP_RESP_DATA ? c->rsp_data.rsp_resp_data : NULL;
        if (!d)
            continue;
        if (d->rsp_type == MAILIMAP_RESP_DATA_TYPE_EXTENSION_DATA) {
            take_extension(p, d->rsp_data.rsp_extension_data);
            continue;
        }
        const struct mailimap_mailbox_data *mb =
            d->rsp_type == MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA ? d->rsp_data.rsp_mailbox_data : NULL;
        if (!mb)
            continue;
        if (mb->mbd_type == MAILIMAP_MAILBOX_DATA_LIST && !add_folder(mb->mbd_data.mbd_list, p->roles, &p->f, &p->nf, &p->cap))
            return false;
        if (mb->mbd_type == MAILIMAP_MAILBOX_DATA_STATUS)
            take_status(p, mb->mbd_data.mbd_status);
        if (mb->mbd_type == MAILIMAP_MAILBOX_DATA_EXTENSION_DATA)
            take_extension(p, mb->mbd_data.mbd_extension);
    }
    return true;
}

/* The LIST command's text: with LIST-STATUS (sync runs: names != NULL and
 * some asked) the STATUS items as a return option, with SPECIAL-USE (and
 * the LIST-EXTENDED syntax) the roles as one. */
static void pipeline_list_command(struct pipeline *p, bool special_use_option)
{
    char ret[120] = "";
    if (special_use_option)
        snprintf(ret, sizeof ret, "SPECIAL-USE");
    if (p->list_status)
        snprintf(ret + strlen(ret), sizeof ret - strlen(ret), "%sSTATUS (MESSAGES UIDNEXT UIDVALIDITY%s)",
                 *ret ? " " : "", p->condstore ? " HIGHESTMODSEQ" : "");
    snprintf(p->list, sizeof p->list, "LIST \"\" \"*\"%s%s%s\r\n", *ret ? " RETURN (" : "", ret, *ret ? ")" : "");
}

/* Set p up for a sync run's listing (names may be NULL: the plain one)
 * and send its first commands (not flushed). st: n entries, zeroed here.
 * A libetpan code; p->got is allocated on MAILIMAP_NO_ERROR (and on a
 * stream error after it), freed by pipeline_finish or pipeline_drain. */
static int pipeline_begin(struct imap_session *s, bool enable_qresync, const char *const *names, size_t n,
                          struct remote_status *st, struct pipeline *p)
{
    if (n)
        memset(st, 0, n * sizeof *st);
    *p = (struct pipeline){.s = s,
                           .names = names,
                           .n = names ? n : 0,
                           .condstore = session_condstore(s),
                           .st = st,
                           .total = 1,
                           .list_state = -1};
    p->items = p->condstore ? " (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n" : " (MESSAGES UIDNEXT UIDVALIDITY)\r\n";
    p->got = calloc(p->n + 1, sizeof *p->got);
    if (!p->got)
        return MAILIMAP_ERROR_MEMORY;
    p->list_status = p->n > 0 && imap_has_capability(s, "LIST-STATUS");
    p->roles = imap_has_capability(s, "SPECIAL-USE");
    bool extended = imap_has_capability(s, "LIST-EXTENDED") || imap_has_capability(s, "LIST-STATUS");
    pipeline_list_command(p, p->roles && extended);
    for (size_t i = 0; i < p->n && !p->list_status; i++)
        p->total += quotable_name(names[i]); /* a name that needs a literal is not asked */
    p->enabling = enable_qresync && may_enable_qresync(s);
    p->enable = p->enabling;
    p->id = !s->id_tried && imap_has_capability(s, "ID");
    p->total += p->enable + p->id;
    int r = MAILIMAP_NO_ERROR;
    while (r == MAILIMAP_NO_ERROR && p->sent < p->total && p->sent < PIPELINE_MAX)
        r = pipeline_send_next(p);
    return r;
}

/* Read the answers of the commands p sent (r: how sending went) and
 * send the rest; the folders into *out. An MS_* code: any failure leaves
 * the session dead (commands may still be in flight). */
static int pipeline_finish(struct pipeline *p, int r, struct remote_folder **out, size_t *nout, struct ms_error *err)
{
    struct imap_session *s = p->s;
    mailimap *imap = s->imap;
    /* Read p->total complete responses, sending one more command after
     * each while some are left. Servers may complete pipelined commands in
     * any order (RFC 3501 5.5); each response is parsed whole and its
     * data taken whatever its tag: the STATUS data is matched by mailbox
     * name (a STATUS that failed simply brings none); the LIST's
     * completion is the one with its tag. A refused ID changes nothing. */
    for (size_t k = 0; k < p->total && r == MAILIMAP_NO_ERROR; k++) {
        struct mailimap_response *resp = NULL;
        r = read_response(s, &resp);
        if (r != MAILIMAP_NO_ERROR)
            break;
        int tag = response_tag(resp);
        int state = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type;
        if (!take_response(p, resp))
            r = MAILIMAP_ERROR_MEMORY;
        else if (tag && tag == p->list_tag && p->list_state != -1)
            r = MAILIMAP_ERROR_PROTOCOL; /* the LIST's tag twice */
        else if (tag && tag == p->list_tag)
            p->list_state = state;
        else if (tag && tag == p->id_tag && state != MAILIMAP_RESP_COND_STATE_OK)
            log_msg(LOG_VERBOSE, "%s: the server refused ID: %s", s->host, imap_server_text(s));
        mailimap_response_free(resp);
        if (r == MAILIMAP_NO_ERROR && p->sent < p->total &&
            ((r = pipeline_send_next(p)) != MAILIMAP_NO_ERROR || mailstream_flush(imap->imap_stream) != 0))
            r = r != MAILIMAP_NO_ERROR ? r : MAILIMAP_ERROR_STREAM;
    }
    free(p->got);
    p->got = NULL;
    if (p->enabling && r == MAILIMAP_NO_ERROR)
        log_enable_outcome(s);
    if (r == MAILIMAP_NO_ERROR && p->list_state == -1)
        r = MAILIMAP_ERROR_PROTOCOL; /* the LIST never completed under its tag */
    if (r == MAILIMAP_NO_ERROR && p->list_state != MAILIMAP_RESP_COND_STATE_OK)
        r = MAILIMAP_ERROR_LIST;
    if (r != MAILIMAP_NO_ERROR) {
        remote_folders_free(p->f, p->nf);
        p->f = NULL;
        p->nf = 0;
        if (r == MAILIMAP_ERROR_MEMORY)
            return imap_fail_dead(s, err, "STATUS/LIST: out of memory");
        if (r == MAILIMAP_ERROR_LIST)
            return imap_fail_call(s, r, "LIST", err);
        return imap_fail_call(s, r, p->n && !p->list_status ? "STATUS/LIST" : "LIST", err);
    }
    /* (said once the answers are in: a listing sent behind the login and
     * dropped used nothing) */
    if (p->list_status)
        log_msg(LOG_VERBOSE, "%s: LIST-STATUS: the folders and their counters in one command", s->host);
    if (p->roles)
        log_msg(LOG_VERBOSE, "%s: SPECIAL-USE: reading the folders' roles", s->host);
    *out = p->f ? p->f : calloc(1, sizeof *p->f);
    *nout = p->nf;
    p->f = NULL;
    return *out ? MS_OK : ms_error_set(err, MS_ELOCAL, "out of memory");
}

static bool take_listing_ahead(struct imap_session *s, bool enable_qresync, const char *const *names, size_t n,
                               struct remote_status *st, struct remote_folder **out, size_t *nout);

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
    if (s->ahead_listing && take_listing_ahead(s, enable_qresync, names, n, st, out, nout))
        return MS_OK;
    struct pipeline p;
    int r = pipeline_begin(s, enable_qresync, names, n, st, &p);
    if (r == MAILIMAP_ERROR_MEMORY && !p.got)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    if (r == MAILIMAP_NO_ERROR && mailstream_flush(s->imap->imap_stream) != 0)
        r = MAILIMAP_ERROR_STREAM;
    return pipeline_finish(&p, r, out, nout, err);
}

/* ----------------------------------------------------------------------
 * The listing sent behind the login (imap_session.c): the same pipeline,
 * built from the capabilities the server had after the login last time,
 * sent before the login's answer; its answers are read once the login
 * succeeded with those same capabilities and kept for the run's
 * imap_status_and_list with the same request, or read and dropped.
 * -------------------------------------------------------------------- */

struct listing_ahead {
    struct pipeline p;
    bool enable;
    char **names; /* copies; p.names points here */
    size_t n;
    struct remote_status *st;
    bool read; /* answers read: f/nf/st hold them */
    struct remote_folder *f;
    size_t nf;
};

void imap_listing_ahead_free(struct imap_session *s)
{
    struct listing_ahead *a = s->ahead_listing;
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->names[i]);
    free(a->names);
    free(a->st);
    free(a->p.got);
    remote_folders_free(a->p.f, a->p.nf);
    remote_folders_free(a->f, a->nf);
    free(a);
    s->ahead_listing = NULL;
}

int imap_listing_send_ahead(struct imap_session *s, bool enable_qresync, const char *const *names, size_t n)
{
    struct listing_ahead *a = calloc(1, sizeof *a);
    if (!a)
        return MAILIMAP_ERROR_MEMORY;
    s->ahead_listing = a;
    a->enable = enable_qresync;
    a->n = names ? n : 0;
    a->names = calloc(a->n + 1, sizeof *a->names);
    a->st = calloc(a->n + 1, sizeof *a->st);
    if (!a->names || !a->st)
        return MAILIMAP_ERROR_MEMORY;
    for (size_t i = 0; i < a->n; i++)
        if (!(a->names[i] = strdup(names[i])))
            return MAILIMAP_ERROR_MEMORY;
    return pipeline_begin(s, enable_qresync, names ? (const char *const *)a->names : NULL, a->n, a->st, &a->p);
}

bool imap_listing_ahead_whole(const struct imap_session *s)
{
    return s->ahead_listing && s->ahead_listing->p.sent == s->ahead_listing->p.total;
}

int imap_listing_read_ahead(struct imap_session *s, bool keep, struct ms_error *err)
{
    struct listing_ahead *a = s->ahead_listing;
    if (!a)
        return MS_OK;
    if (keep) {
        /* the capabilities it was built from are the session's: these
         * are the commands the run would send now */
        int rc = pipeline_finish(&a->p, MAILIMAP_NO_ERROR, &a->f, &a->nf, err);
        if (rc != MS_OK)
            imap_listing_ahead_free(s);
        else
            a->read = true;
        return rc;
    }
    /* Read and drop the answers to what went out (the LIST may have been
     * refused, the STATUS commands too); an ENABLED or ID answer still
     * counts. Nothing more is sent. */
    int r = MAILIMAP_NO_ERROR;
    for (size_t k = 0; k < a->p.sent && r == MAILIMAP_NO_ERROR; k++) {
        struct mailimap_response *resp = NULL;
        r = read_response(s, &resp);
        if (r == MAILIMAP_NO_ERROR && !take_response(&a->p, resp))
            r = MAILIMAP_ERROR_MEMORY;
        if (resp)
            mailimap_response_free(resp);
    }
    imap_listing_ahead_free(s);
    if (r == MAILIMAP_ERROR_MEMORY)
        return imap_fail_dead(s, err, "out of memory");
    return r == MAILIMAP_NO_ERROR ? MS_OK : imap_fail_call(s, r, "the listing sent behind the login", err);
}

/* The listing read ahead, if it answers this request (the same names in
 * the same order, ENABLE or not): its answers into st/out; true if so. The
 * stash is gone either way (a request that differs is sent anew). */
static bool take_listing_ahead(struct imap_session *s, bool enable_qresync, const char *const *names, size_t n,
                               struct remote_status *st, struct remote_folder **out, size_t *nout)
{
    struct listing_ahead *a = s->ahead_listing;
    bool same = a->read && a->enable == enable_qresync && a->n == (names ? n : 0);
    for (size_t i = 0; same && i < a->n; i++)
        same = strcmp(a->names[i], names[i]) == 0;
    if (same) {
        if (a->n)
            memcpy(st, a->st, a->n * sizeof *st);
        *out = a->f;
        *nout = a->nf;
        a->f = NULL;
        a->nf = 0;
        log_msg(LOG_VERBOSE, "%s: the listing went out behind the login", s->host);
    } else {
        log_msg(LOG_VERBOSE, "%s: the listing sent behind the login asked for other folders; asking again", s->host);
    }
    imap_listing_ahead_free(s);
    return same;
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
