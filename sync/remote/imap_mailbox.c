/* SPDX-License-Identifier: MIT */
/*
 * imap_mailbox.c: the IMAP side's commands that change the server or wait
 * on it (imap.h): UID STORE, UID EXPUNGE, UID COPY (with COPYUID), UID MOVE
 * (or its COPY + \Deleted + UID EXPUNGE fallback), APPEND streamed from a
 * file, CREATE, UID SEARCH BEFORE (retention), and for watch NOTIFY and
 * IDLE.
 *
 * UID sets are sent in batches of ranges whose command lines stay well
 * under 8 KB (uid_set_batches). An APPEND whose file changes while it is
 * sent cannot be finished honestly: the session is ended, and the server
 * drops the incomplete message.
 */
#include "sync/remote/imap.h"
#include "sync/remote/imap_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libetpan/libetpan.h>

#include "sync/flags.h"
#include "sync/net/netstream.h"
#include "sync/util.h"

/* ======================================================================
 * Changes to the server (push): STORE, EXPUNGE, MOVE, APPEND
 * ==================================================================== */

static struct mailimap_flag_list *flag_list_of(unsigned flags)
{
    struct mailimap_flag_list *fl = mailimap_flag_list_new_empty();
    for (unsigned bit = 1; fl && bit <= FLAG_ALL; bit <<= 1) {
        if (!(flags & bit))
            continue;
        struct mailimap_flag *f = NULL;
        switch (bit) {
        case FLAG_DRAFT: f = mailimap_flag_new_draft(); break;
        case FLAG_FLAGGED: f = mailimap_flag_new_flagged(); break;
        case FLAG_ANSWERED: f = mailimap_flag_new_answered(); break;
        case FLAG_SEEN: f = mailimap_flag_new_seen(); break;
        case FLAG_DELETED: f = mailimap_flag_new_deleted(); break;
        case FLAG_FORWARDED: {
            char *kw = strdup("$Forwarded");
            f = kw ? mailimap_flag_new_flag_keyword(kw) : NULL;
            if (!f)
                free(kw);
            break;
        }
        default: break;
        }
        if (!f || mailimap_flag_list_add(fl, f) != MAILIMAP_NO_ERROR) {
            if (f)
                mailimap_flag_free(f);
            mailimap_flag_list_free(fl);
            return NULL;
        }
    }
    return fl;
}

/* Run cmd over sorted uids in batches of ranges (one command line each
 * well under 8 KB). cmd returns a libetpan code. */
static int uid_set_batches(struct imap_session *s, const uint32_t *uids, size_t n, const char *what,
                           int (*cmd)(struct imap_session *s, struct mailimap_set *set, void *ctx), void *ctx,
                           struct ms_error *err)
{
    struct uid_range *ranges = malloc(FETCH_BATCH_UIDS * sizeof *ranges);
    int rc = ranges ? MS_OK : ms_error_set(err, MS_ELOCAL, "out of memory");
    size_t i = 0;
    while (rc == MS_OK && i < n) {
        size_t nr = 0;
        i += imap_uid_batch(uids + i, n - i, FETCH_BATCH_UIDS, FETCH_SET_CHARS, ranges, FETCH_BATCH_UIDS, &nr);
        if (nr == 0)
            break;
        struct mailimap_set *set = imap_set_from_ranges(ranges, nr);
        if (!set) {
            rc = ms_error_set(err, MS_ELOCAL, "out of memory");
            break;
        }
        int r = cmd(s, set, ctx);
        mailimap_set_free(set);
        if (r != MAILIMAP_NO_ERROR)
            rc = imap_fail_call(s, r, what, err);
    }
    free(ranges);
    return rc;
}

struct store_args {
    unsigned flags;
    bool add;
};

static int store_cmd(struct imap_session *s, struct mailimap_set *set, void *ctx)
{
    const struct store_args *a = ctx;
    struct mailimap_flag_list *fl = flag_list_of(a->flags);
    if (!fl)
        return MAILIMAP_ERROR_MEMORY;
    struct mailimap_store_att_flags *att = a->add ? mailimap_store_att_flags_new_add_flags_silent(fl)
                                                  : mailimap_store_att_flags_new_remove_flags_silent(fl);
    if (!att) {
        mailimap_flag_list_free(fl);
        return MAILIMAP_ERROR_MEMORY;
    }
    int r = mailimap_uid_store(s->imap, set, att);
    mailimap_store_att_flags_free(att);
    return r;
}

int imap_store_flags(struct imap_session *s, const uint32_t *uids, size_t n, unsigned flags, bool add,
                     struct ms_error *err)
{
    int rc = imap_ready(s, true, err);
    if (rc != MS_OK || n == 0 || !(flags & FLAG_ALL))
        return rc;
    struct store_args a = {flags & FLAG_ALL, add};
    return uid_set_batches(s, uids, n, add ? "UID STORE +FLAGS" : "UID STORE -FLAGS", store_cmd, &a, err);
}

static int expunge_cmd(struct imap_session *s, struct mailimap_set *set, void *ctx)
{
    (void)ctx;
    return mailimap_uid_expunge(s->imap, set);
}

int imap_uid_expunge(struct imap_session *s, const uint32_t *uids, size_t n, struct ms_error *err)
{
    int rc = imap_ready(s, true, err);
    if (rc != MS_OK || n == 0)
        return rc;
    if (!imap_has_capability(s, "UIDPLUS"))
        return ms_error_set(err, MS_EUSAGE, "the server has no UIDPLUS: UID EXPUNGE is not possible");
    return uid_set_batches(s, uids, n, "UID EXPUNGE", expunge_cmd, NULL, err);
}

static int move_cmd(struct imap_session *s, struct mailimap_set *set, void *ctx)
{
    return mailimap_uid_move(s->imap, set, ctx);
}

/* A UID COPY: its destination, and where the COPYUID answers go. */
struct copy_args {
    const char *dest;
    const uint32_t *uids; /* all of the call's, sorted */
    size_t n;
    uint32_t *copy_uids; /* per uids[i]; NULL: not wanted */
    uint32_t uidvalidity;
};

/* The UIDs of a set, in its order, into out (room for max). 0 when it
 * names more than max or a '*': a COPYUID that does not add up is not
 * believed. */
static size_t set_expand(const struct mailimap_set *set, uint32_t *out, size_t max)
{
    size_t n = 0;
    for (clistiter *it = set ? clist_begin(set->set_list) : NULL; it; it = clist_next(it)) {
        const struct mailimap_set_item *item = clist_content(it);
        uint32_t lo = item->set_first, hi = item->set_last;
        if (lo > hi) {
            uint32_t t = lo;
            lo = hi;
            hi = t;
        }
        if (lo == 0 || (uint64_t)hi - lo + 1 > max - n)
            return 0;
        for (uint64_t u = lo; u <= hi; u++)
            out[n++] = (uint32_t)u;
    }
    return n;
}

static int copy_cmd(struct imap_session *s, struct mailimap_set *set, void *ctx)
{
    struct copy_args *a = ctx;
    if (!a->copy_uids)
        return mailimap_uid_copy(s->imap, set, a->dest);
    uint32_t uidvalidity = 0;
    struct mailimap_set *src = NULL, *dst = NULL;
    int r = mailimap_uidplus_uid_copy(s->imap, set, a->dest, &uidvalidity, &src, &dst);
    uint32_t *sv = r == MAILIMAP_NO_ERROR && src && dst && uidvalidity ? malloc(2 * a->n * sizeof *sv) : NULL;
    size_t ns = sv ? set_expand(src, sv, a->n) : 0;
    if (ns && set_expand(dst, sv + a->n, a->n) == ns) {
        a->uidvalidity = uidvalidity;
        for (size_t k = 0; k < ns; k++) {
            const uint32_t *at = util_uid_find(a->uids, a->n, sv[k]);
            if (at)
                a->copy_uids[at - a->uids] = sv[a->n + k];
        }
    }
    free(sv);
    if (src)
        mailimap_set_free(src);
    if (dst)
        mailimap_set_free(dst);
    return r;
}

int imap_copy(struct imap_session *s, const uint32_t *uids, size_t n, const char *dest, uint32_t *copy_uids,
              uint32_t *dest_uidvalidity, struct ms_error *err)
{
    char shown[120];
    if (dest_uidvalidity)
        *dest_uidvalidity = 0;
    int rc = imap_ready(s, true, err);
    if (rc == MS_OK)
        rc = imap_folder_name_ok(dest, shown, sizeof shown, err);
    if (rc != MS_OK || n == 0)
        return rc;
    struct copy_args a = {dest, uids, n, copy_uids, 0};
    rc = uid_set_batches(s, uids, n, "UID COPY", copy_cmd, &a, err);
    if (rc == MS_OK && dest_uidvalidity)
        *dest_uidvalidity = a.uidvalidity;
    return rc;
}

int imap_move(struct imap_session *s, const uint32_t *uids, size_t n, const char *dest, struct ms_error *err)
{
    char shown[120];
    int rc = imap_ready(s, true, err);
    if (rc == MS_OK)
        rc = imap_folder_name_ok(dest, shown, sizeof shown, err);
    if (rc != MS_OK || n == 0)
        return rc;
    if (imap_has_capability(s, "MOVE"))
        return uid_set_batches(s, uids, n, "UID MOVE", move_cmd, (void *)dest, err);
    /* RFC 6851's fallback: COPY, then \Deleted and expunge only these. */
    if (!imap_has_capability(s, "UIDPLUS"))
        return ms_error_set(err, MS_EUSAGE, "the server has neither MOVE nor UIDPLUS: cannot move to \"%s\"", shown);
    rc = imap_copy(s, uids, n, dest, NULL, NULL, err);
    if (rc == MS_OK)
        rc = imap_store_flags(s, uids, n, FLAG_DELETED, true, err);
    if (rc == MS_OK)
        rc = imap_uid_expunge(s, uids, n, err);
    return rc;
}

/* The flags of an APPEND as IMAP names, space separated. */
static void flag_names(unsigned flags, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (unsigned bit = 1; bit <= FLAG_ALL; bit <<= 1) {
        const char *n = (flags & bit) ? flags_imap_name(bit) : NULL;
        if (n && o + strlen(n) + 2 < len)
            o += (size_t)snprintf(out + o, len - o, "%s%s", o ? " " : "", n);
    }
}

/* The body of fd as a literal of exactly size bytes (LF -> CRLF). */
static int send_literal_fd(mailstream *st, int fd, uint64_t size, uint64_t *sent)
{
    char in[65536], out[2 * sizeof in];
    char prev = '\0';
    *sent = 0;
    for (;;) {
        ssize_t got = read(fd, in, sizeof in);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            return 0;
        size_t o = 0;
        for (ssize_t i = 0; i < got; i++) {
            if (in[i] == '\n' && prev != '\r')
                out[o++] = '\r';
            out[o++] = in[i];
            prev = in[i];
        }
        /* never more than announced: the file grew meanwhile */
        if (*sent + o > size)
            return -1;
        if (mailstream_write(st, out, o) != (ssize_t)o)
            return -1;
        *sent += o;
    }
}

int imap_append_fd(struct imap_session *s, const char *name, unsigned flags, time_t date, int fd, uint64_t size,
                   uint32_t *uidvalidity, uint32_t *uid, struct ms_error *err)
{
    char shown[120], what[160], head[512], names[120], when[40];
    *uidvalidity = *uid = 0;
    int rc = imap_folder_cmd_start(s, name, shown, sizeof shown, err);
    if (rc != MS_OK)
        return rc;
    snprintf(what, sizeof what, "APPEND to %s", shown);
    char *quoted = imap_quote_name(name);
    if (!quoted)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    when[0] = '\0';
    if (date > 0 && gmtime_r(&date, &tm))
        snprintf(when, sizeof when, " \"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, mon[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    flag_names(flags, names, sizeof names);
    int n = snprintf(head, sizeof head, "APPEND %s (%s)%s {%" PRIu64 "}\r\n", quoted, names, when, size);
    free(quoted);
    if (n < 0 || (size_t)n >= sizeof head)
        return ms_error_set(err, MS_EPARTIAL, "%s: folder name too long", what);
    mailimap *imap = s->imap;
    mailstream *st = imap->imap_stream;
    int r = mailimap_send_current_tag(imap);
    if (r == MAILIMAP_NO_ERROR && (imap_stream_puts(st, head) || mailstream_flush(st) != 0))
        r = MAILIMAP_ERROR_STREAM;
    if (r == MAILIMAP_NO_ERROR && !mailimap_read_line(imap))
        r = MAILIMAP_ERROR_STREAM;
    /* Untagged data (a new message elsewhere...) may come before the "+":
     * it is passed over, or the server would wait for the literal while we
     * waited for its answer. */
    for (int skipped = 0; r == MAILIMAP_NO_ERROR && imap->imap_stream_buffer->str[0] == '*'; skipped++) {
        mmap_string_truncate(imap->imap_stream_buffer, 0);
        if (skipped > 1000 || !mailimap_read_line(imap))
            r = MAILIMAP_ERROR_STREAM;
    }
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, what, err);
    struct mailimap_response *resp = NULL;
    if (imap->imap_stream_buffer->str[0] == '+') {
        uint64_t sent = 0;
        if (send_literal_fd(st, fd, size, &sent) != 0 || sent != size)
            /* The literal cannot be finished honestly: end the session
             * (the server drops the incomplete APPEND). */
            return imap_fail_dead(s, err, "%s: the local file changed or could not be read while it was sent", what);
        if (imap_stream_puts(st, "\r\n") || mailstream_flush(st) != 0 || !mailimap_read_line(imap))
            return imap_fail_call(s, MAILIMAP_ERROR_STREAM, what, err);
    }
    /* The tagged answer (a NO instead of the continuation, or the result)
     * with any untagged data before it. */
    r = mailimap_parse_response(imap, &resp);
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, what, err);
    int state = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type;
    mailimap_response_free(resp);
    if (state != MAILIMAP_RESP_COND_STATE_OK)
        return imap_fail_call(s, MAILIMAP_ERROR_APPEND, what, err);
    /* [APPENDUID uidvalidity uid] (UIDPLUS), parsed by libetpan's
     * extension into the response info */
    struct mailimap_response_info *info = imap->imap_response_info;
    for (clistiter *it = info ? clist_begin(info->rsp_extension_list) : NULL; it; it = clist_next(it)) {
        struct mailimap_extension_data *ext = clist_content(it);
        if (ext->ext_extension != &mailimap_extension_uidplus || ext->ext_type != MAILIMAP_UIDPLUS_RESP_CODE_APND)
            continue;
        struct mailimap_uidplus_resp_code_apnd *apnd = ext->ext_data;
        clistiter *first = apnd && apnd->uid_set ? clist_begin(apnd->uid_set->set_list) : NULL;
        if (first) {
            struct mailimap_set_item *item = clist_content(first);
            *uidvalidity = apnd->uid_uidvalidity;
            *uid = item->set_first == item->set_last ? item->set_first : 0;
        }
        break;
    }
    return MS_OK;
}

int imap_create(struct imap_session *s, const char *name, struct ms_error *err)
{
    char shown[120];
    int rc = imap_folder_cmd_start(s, name, shown, sizeof shown, err);
    if (rc != MS_OK)
        return rc;
    int r = mailimap_create(s->imap, name);
    if (r != MAILIMAP_NO_ERROR) {
        char what[160];
        snprintf(what, sizeof what, "CREATE %s", shown);
        return imap_fail_call(s, r, what, err);
    }
    return MS_OK;
}

/* ======================================================================
 * Retention: UID SEARCH BEFORE
 * ==================================================================== */

int imap_search_before(struct imap_session *s, time_t before, uint32_t **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    int rc = imap_ready(s, true, err);
    if (rc != MS_OK)
        return rc;
    struct tm tm;
    if (!gmtime_r(&before, &tm))
        return ms_error_set(err, MS_EUSAGE, "UID SEARCH BEFORE: bad date");
    struct mailimap_date *d = mailimap_date_new(tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900);
    struct mailimap_search_key *key = d ? mailimap_search_key_new_before(d) : NULL;
    if (!key) {
        if (d)
            mailimap_date_free(d);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    struct imap_uid_list l = {0};
    rc = imap_uid_search(s, key, 1, 0, "UID SEARCH BEFORE", &l, err);
    if (rc != MS_OK) {
        free(l.v);
        return rc;
    }
    imap_uid_list_sort_unique(&l);
    *out = l.v ? l.v : xcalloc(1, sizeof **out);
    *n = l.n;
    return MS_OK;
}

/* ======================================================================
 * IDLE (watch)
 * ==================================================================== */

int imap_idle(struct imap_session *s, int timeout_ms, volatile sig_atomic_t *stop, int wake_fd, bool *changed,
              struct ms_error *err)
{
    *changed = false;
    int rc = imap_ready(s, true, err);
    if (rc != MS_OK)
        return rc;
    if (!imap_has_capability(s, "IDLE"))
        return ms_error_set(err, MS_EUSAGE, "the server has no IDLE");
    mailimap *imap = s->imap;
    mailstream *st = imap->imap_stream;
    int r = mailimap_send_current_tag(imap);
    if (r == MAILIMAP_NO_ERROR && (imap_stream_puts(st, "IDLE\r\n") || mailstream_flush(st) != 0))
        r = MAILIMAP_ERROR_STREAM;
    /* Untagged data may come before the "+" (then there is news already);
     * a tagged answer instead means the server refused. */
    bool idling = false;
    while (r == MAILIMAP_NO_ERROR && !idling) {
        if (!mailimap_read_line(imap)) {
            r = MAILIMAP_ERROR_STREAM;
            break;
        }
        const char *line = imap->imap_stream_buffer->str;
        if (line[0] == '+')
            idling = true;
        else if (line[0] == '*')
            *changed = true;
        else
            break; /* the tagged answer: parsed below */
        mmap_string_truncate(imap->imap_stream_buffer, 0);
    }
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, "IDLE", err);
    if (idling) {
        int fd = mailstream_low_get_fd(mailstream_get_low(st));
        long left = timeout_ms;
        while (!*changed && left > 0 && !(stop && *stop)) {
            bool ready_now = st->read_buffer_len > 0 || netstream_readable_now(s->ns);
            int slice = left > 1000 ? 1000 : (int)left;
            if (!ready_now) {
                struct pollfd p[2] = {{.fd = fd, .events = POLLIN, .revents = 0},
                                      {.fd = wake_fd, .events = POLLIN, .revents = 0}};
                int n = poll(p, wake_fd >= 0 ? 2 : 1, slice);
                if (n < 0 && errno != EINTR)
                    return imap_fail_dead(s, err, "IDLE: poll: %s", strerror(errno));
                left -= slice;
                if (n > 0 && wake_fd >= 0 && p[1].revents && !p[0].revents)
                    break; /* a local change: the caller looks */
                if (n <= 0)
                    continue;
            }
            /* Something came: a change, or only the server's "still
             * here" (Dovecot says "* OK Still here" every 2 minutes). */
            if (!mailimap_read_line(imap))
                return imap_fail_call(s, MAILIMAP_ERROR_STREAM, "IDLE", err);
            const char *line = imap->imap_stream_buffer->str;
            if (strncasecmp(line, "* BYE", 5) == 0)
                return imap_fail_dead(s, err, "IDLE: %s:%d closed the session", s->host, s->port);
            if (strncasecmp(line, "* OK", 4) != 0)
                *changed = true;
            mmap_string_truncate(imap->imap_stream_buffer, 0);
        }
        if (imap_stream_puts(st, "DONE\r\n") || mailstream_flush(st) != 0 || !mailimap_read_line(imap))
            return imap_fail_call(s, MAILIMAP_ERROR_STREAM, "IDLE", err);
    }
    struct mailimap_response *resp = NULL;
    r = mailimap_parse_response(imap, &resp);
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, "IDLE", err);
    /* news that came while DONE was on its way */
    if (resp->rsp_cont_req_or_resp_data_list && clist_count(resp->rsp_cont_req_or_resp_data_list) > 0)
        *changed = true;
    int state = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type;
    mailimap_response_free(resp);
    if (state != MAILIMAP_RESP_COND_STATE_OK)
        return ms_error_set(err, MS_EPARTIAL, "IDLE: server said NO: %s", imap_server_text(s));
    return MS_OK;
}

int imap_notify_all(struct imap_session *s, struct ms_error *err)
{
    int rc = imap_ready(s, false, err);
    if (rc != MS_OK)
        return rc;
    if (!imap_has_capability(s, "NOTIFY"))
        return ms_error_set(err, MS_EPARTIAL, "the server has no NOTIFY");
    int state;
    /* Without CONDSTORE a flag changed in a folder that is not selected
     * is not reported (RFC 5465 5.4: it comes as HIGHESTMODSEQ). */
    if (imap_has_capability(s, "CONDSTORE")) {
        int r = imap_plain_command(s, "ENABLE CONDSTORE", &state);
        if (r != MAILIMAP_NO_ERROR)
            return imap_fail_call(s, r, "ENABLE", err);
    }
    /* "selected" too: a session that goes on to select INBOX after all
     * (the answer was lost or garbled) still hears of its changes. */
    int r = imap_plain_command(s,
                               "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) "
                               "(personal (MessageNew MessageExpunge FlagChange MailboxName))",
                               &state);
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, "NOTIFY", err);
    if (state != MAILIMAP_RESP_COND_STATE_OK)
        return ms_error_set(err, MS_EPARTIAL, "NOTIFY refused: %s", imap_server_text(s));
    return MS_OK;
}
