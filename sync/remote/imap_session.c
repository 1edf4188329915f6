/* SPDX-License-Identifier: MIT */
/*
 * imap_session.c: the IMAP session (imap.h) over libetpan, on our own
 * transport: the connect sequence (TCP, implicit TLS or STARTTLS without
 * stripping or injection, fresh capabilities, LOGIN or AUTHENTICATE),
 * logout and close, and what every command of the other imap_*.c files
 * needs first (imap_ready, imap_folder_cmd_start) and on failure
 * (imap_fail_call, imap_fail_dead).
 *
 * libetpan parses and formats IMAP; sync/net/netstream.c moves the bytes (TLS,
 * deadlines, literal caps, masked trace). The rest of the side, by concern:
 * imap_fetch.c (UID FETCH), imap_status.c (LIST, SELECT, STATUS, ENABLE),
 * imap_qresync.c (CONDSTORE/QRESYNC resyncs), imap_mailbox.c (STORE,
 * EXPUNGE, COPY, MOVE, APPEND, CREATE, SEARCH BEFORE, NOTIFY, IDLE); what
 * they share is in imap_int.h.
 *
 * libetpan codes map to ours as in shared/docs/libetpan.md §6: STREAM,
 * PARSE, PROTOCOL (BAD, wrong tag), FATAL (BYE) mean the session is dead
 * (MS_ENET, the stream is closed at once, later calls fail fast); a
 * command's own error code means a tagged NO (MS_EPARTIAL, still usable).
 */
#include "sync/remote/imap.h"
#include "sync/remote/imap_int.h"
#include "sync/remote/sasl.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libetpan/libetpan.h>

#include "sync/log.h"
#include "sync/net/netstream.h"
#include "sync/net/tls.h"
#include "sync/util.h"

#define STREAM_BUFFER_SIZE 65536
#define CAPS_MAX 16384

/* ======================================================================
 * Errors
 * ==================================================================== */

/* The server's text of the last tagged response, escaped and bounded
 * (it is hostile input); valid until the next call. */
const char *imap_server_text(struct imap_session *s)
{
    const char *t = s->imap ? s->imap->imap_response : NULL;
    if (!t || !*t)
        return "(no text)";
    imap_escape_text(t, strnlen(t, 1000), s->text, sizeof s->text);
    return s->text;
}

/* Close the connection now: after a fatal error nothing more may be sent
 * or trusted, and mailimap_free() must not try a LOGOUT. */
void imap_kill_stream(struct imap_session *s)
{
    s->dead = true;
    if (s->imap && s->imap->imap_stream) {
        mailstream_close(s->imap->imap_stream);
        s->imap->imap_stream = NULL;
        s->imap->imap_state = MAILIMAP_STATE_DISCONNECTED;
    }
    s->ns = NULL;
}

int imap_fail_dead(struct imap_session *s, struct ms_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = MS_ENET;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    imap_kill_stream(s);
    return MS_ENET;
}

/* Why the connection broke, from the transport's point of view. */
static const char *stream_reason(struct imap_session *s, const char *fallback)
{
    if (s->ns && netstream_failed(s->ns))
        return netstream_reason(s->ns);
    if (s->ns && netstream_bye_text(s->ns))
        return netstream_bye_text(s->ns);
    return fallback;
}

/* A libetpan call `what` returned r (not NO_ERROR). */
int imap_fail_call(struct imap_session *s, int r, const char *what, struct ms_error *err)
{
    char text[260];
    switch (r) {
    case MAILIMAP_ERROR_STREAM:
        return imap_fail_dead(s, err, "%s: %s:%d: %s", what, s->host, s->port, stream_reason(s, "connection lost"));
    case MAILIMAP_ERROR_PARSE:
        return imap_fail_dead(s, err, "%s: %s:%d: %s", what, s->host, s->port,
                              stream_reason(s, "could not parse the server's response"));
    case MAILIMAP_ERROR_PROTOCOL:
        snprintf(text, sizeof text, "%s", imap_server_text(s));
        return imap_fail_dead(s, err, "%s: %s:%d: server replied BAD (or with a wrong tag): %s", what, s->host, s->port,
                              text);
    case MAILIMAP_ERROR_FATAL:
        snprintf(text, sizeof text, "%s", imap_server_text(s));
        return imap_fail_dead(s, err, "%s: %s:%d: server closed the session: %s", what, s->host, s->port, text);
    case MAILIMAP_ERROR_MEMORY: return imap_fail_dead(s, err, "%s: out of memory", what);
    case MAILIMAP_ERROR_BAD_STATE:
        return ms_error_set(err, MS_EPARTIAL, "%s: not possible in this IMAP state (no folder selected?)", what);
    case MAILIMAP_ERROR_CONNECTION_REFUSED:
    case MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION:
        snprintf(text, sizeof text, "%s", imap_server_text(s));
        return imap_fail_dead(s, err, "%s: %s:%d refused the session: %s", what, s->host, s->port, text);
    default: return ms_error_set(err, MS_EPARTIAL, "%s: server said NO: %s", what, imap_server_text(s));
    }
}

int imap_check_alive(struct imap_session *s, struct ms_error *err)
{
    if (!s || s->dead || !s->imap || !s->imap->imap_stream)
        return ms_error_set(err, MS_ENET, "the IMAP connection%s%s is no longer usable", s ? " to " : "",
                            s ? s->host : "");
    return MS_OK;
}

/* ======================================================================
 * Capabilities
 * ==================================================================== */

static void set_caps_text(struct imap_session *s)
{
    free(s->caps);
    s->caps = NULL;
    struct mailimap_connection_info *ci = s->imap->imap_connection_info;
    size_t cap = 256, o = 0;
    char *out = malloc(cap);
    if (!out)
        return;
    out[0] = '\0';
    if (ci && ci->imap_capability && ci->imap_capability->cap_list) {
        for (clistiter *it = clist_begin(ci->imap_capability->cap_list); it; it = clist_next(it)) {
            struct mailimap_capability *c = clist_content(it);
            const char *pre = c->cap_type == MAILIMAP_CAPABILITY_AUTH_TYPE ? "AUTH=" : "";
            const char *name =
                c->cap_type == MAILIMAP_CAPABILITY_AUTH_TYPE ? c->cap_data.cap_auth_type : c->cap_data.cap_name;
            if (!name)
                continue;
            size_t need = o + 1 + strlen(pre) + strlen(name) + 1;
            if (need > CAPS_MAX)
                break;
            if (need > cap) {
                size_t ncap = need * 2;
                char *n = realloc(out, ncap);
                if (!n)
                    break;
                out = n;
                cap = ncap;
            }
            o += (size_t)snprintf(out + o, cap - o, "%s%s%s", o ? " " : "", pre, name);
        }
    }
    /* Capabilities are atoms; anything else is shown harmlessly. */
    for (size_t i = 0; i < o; i++)
        if ((unsigned char)out[i] < 0x21 || (unsigned char)out[i] > 0x7e)
            out[i] = out[i] == ' ' ? ' ' : '?';
    s->caps = out;
}

/* Before a command: the session is usable, and no pipelined EXAMINE
 * answer is waiting (on_selected: and the folder the caller works on is
 * the one the server has selected). */
int imap_ready(struct imap_session *s, bool on_selected, struct ms_error *err)
{
    int rc = imap_check_alive(s, err);
    return rc != MS_OK ? rc : imap_settle_ahead(s, on_selected, err);
}

/* One command whose text needs no quoting; untagged data is dropped and
 * the tagged state comes through *state. A libetpan error code. */
int imap_plain_command(struct imap_session *s, const char *text, int *state)
{
    mailimap *imap = s->imap;
    mailstream *st = imap->imap_stream;
    int r = mailimap_send_current_tag(imap);
    if (r == MAILIMAP_NO_ERROR &&
        (imap_stream_puts(st, text) || imap_stream_puts(st, "\r\n") || mailstream_flush(st) != 0))
        r = MAILIMAP_ERROR_STREAM;
    *state = -1;
    return r == MAILIMAP_NO_ERROR ? imap_read_tagged(s, imap->imap_tag, NULL, state) : r;
}

/* Before a command on a folder: the session is usable, and the name can
 * be sent (libetpan sends names as quoted strings, raw: a line break would
 * split the command). shown: the name escaped for messages. */
int imap_folder_name_ok(const char *name, char *shown, size_t shown_len, struct ms_error *err)
{
    imap_escape_text(name ? name : "", name ? strnlen(name, 200) : 0, shown, shown_len);
    if (!name || !*name || strpbrk(name, "\r\n"))
        return ms_error_set(err, MS_EPARTIAL, "folder name \"%s\" cannot be used (empty or has a line break)", shown);
    return MS_OK;
}

int imap_folder_cmd_start(struct imap_session *s, const char *name, char *shown, size_t shown_len, struct ms_error *err)
{
    int rc = imap_ready(s, false, err);
    return rc != MS_OK ? rc : imap_folder_name_ok(name, shown, shown_len, err);
}

/* Forget what libetpan cached, so we can tell whether the next response
 * brought capabilities. */
static void drop_cached_caps(struct imap_session *s)
{
    struct mailimap_connection_info *ci = s->imap->imap_connection_info;
    if (ci && ci->imap_capability) {
        mailimap_capability_data_free(ci->imap_capability);
        ci->imap_capability = NULL;
    }
}

/* Forget cached capabilities (libetpan keeps the pre-TLS ones) and ask
 * again. Not with mailimap_capability(): libetpan 1.9.4 copies the
 * session's capability list there without checking it, and a malformed
 * answer ("*  CAPABILITY", found by fuzz_imap_fetch) leaves it NULL. The
 * answer is parsed the usual way (libetpan stores what CAPABILITY data
 * came); none at all is an empty list. */
static int refresh_caps(struct imap_session *s, struct ms_error *err)
{
    drop_cached_caps(s);
    int state;
    int r = imap_plain_command(s, "CAPABILITY", &state);
    if (r == MAILIMAP_NO_ERROR && state != MAILIMAP_RESP_COND_STATE_OK)
        r = MAILIMAP_ERROR_CAPABILITY;
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, "CAPABILITY", err);
    set_caps_text(s);
    if (!s->caps)
        return imap_fail_dead(s, err, "out of memory");
    return MS_OK;
}

/* Use capabilities the server volunteered (greeting, login OK) when there
 * are any; ask otherwise. */
static int learn_caps(struct imap_session *s, struct ms_error *err)
{
    struct mailimap_connection_info *ci = s->imap->imap_connection_info;
    if (ci && ci->imap_capability) {
        set_caps_text(s);
        if (!s->caps)
            return imap_fail_dead(s, err, "out of memory");
        return MS_OK;
    }
    return refresh_caps(s, err);
}

const char *imap_capabilities(struct imap_session *s)
{
    return s && s->caps ? s->caps : "";
}

bool imap_has_capability(struct imap_session *s, const char *name)
{
    if (!s || !s->caps || !name || !*name)
        return false;
    size_t n = strlen(name);
    for (const char *p = s->caps; *p;) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncasecmp(p, name, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

const char *imap_tls_info(struct imap_session *s)
{
    return s && s->tls_info ? s->tls_info : "none";
}

/* ======================================================================
 * Authentication
 * ==================================================================== */

int imap_stream_puts(mailstream *st, const char *text)
{
    size_t n = strlen(text);
    return mailstream_write(st, text, n) == (ssize_t)n ? 0 : -1;
}

/* name as an IMAP quoted string ("..." with \" and \\ escaped), malloc'd;
 * NULL if out of memory. The caller has checked that a quoted string can
 * carry it (no line break). */
char *imap_quote_name(const char *name)
{
    size_t len = strlen(name);
    char *quoted = malloc(2 * len + 3);
    if (!quoted)
        return NULL;
    size_t o = 0;
    quoted[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '"' || name[i] == '\\')
            quoted[o++] = '\\';
        quoted[o++] = name[i];
    }
    quoted[o++] = '"';
    quoted[o] = '\0';
    return quoted;
}

/* One SASL exchange with a single client message: AUTHENTICATE mech, the
 * initial response inline when the server has SASL-IR or after the first
 * "+", then `cancel` for any further challenge (the server's error detail
 * for XOAUTH2/OAUTHBEARER, or "*" to give up). Returns a libetpan code:
 * NO_ERROR, ERROR_LOGIN for NO (or BAD after our cancel), or a fatal one. */
static int sasl_exchange(struct imap_session *s, const char *mech, const char *ir, const char *cancel)
{
    mailimap *imap = s->imap;
    mailstream *st = imap->imap_stream;
    bool inline_ir = imap_has_capability(s, "SASL-IR");
    int r = MAILIMAP_NO_ERROR;
    bool cancelled = false;

    mailstream_set_privacy(st, 0);
    netstream_set_secret(s->ns, true);
    r = mailimap_send_current_tag(imap);
    if (r == MAILIMAP_NO_ERROR && (imap_stream_puts(st, "AUTHENTICATE ") || imap_stream_puts(st, mech) ||
                                   (inline_ir && (imap_stream_puts(st, " ") || imap_stream_puts(st, *ir ? ir : "="))) ||
                                   imap_stream_puts(st, "\r\n") || mailstream_flush(st) != 0))
        r = MAILIMAP_ERROR_STREAM;
    bool sent = inline_ir;
    for (int round = 0; r == MAILIMAP_NO_ERROR; round++) {
        if (!mailimap_read_line(imap)) {
            r = MAILIMAP_ERROR_STREAM;
            break;
        }
        if (imap->imap_stream_buffer->str[0] != '+')
            break; /* untagged data or the tagged result: parsed below */
        if (round >= 3) {
            r = MAILIMAP_ERROR_PROTOCOL;
            break;
        }
        const char *reply = sent ? cancel : ir;
        cancelled = sent;
        sent = true;
        if (imap_stream_puts(st, reply) || imap_stream_puts(st, "\r\n") || mailstream_flush(st) != 0)
            r = MAILIMAP_ERROR_STREAM;
    }
    netstream_set_secret(s->ns, false);
    mailstream_set_privacy(st, 1);
    if (r != MAILIMAP_NO_ERROR)
        return r;

    struct mailimap_response *resp = NULL;
    r = mailimap_parse_response(imap, &resp);
    if (r == MAILIMAP_ERROR_PROTOCOL && cancelled)
        return MAILIMAP_ERROR_LOGIN; /* BAD is the answer to our "*" */
    if (r != MAILIMAP_NO_ERROR)
        return r;
    int state = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type;
    mailimap_response_free(resp);
    if (state != MAILIMAP_RESP_COND_STATE_OK)
        return MAILIMAP_ERROR_LOGIN;
    imap->imap_state = MAILIMAP_STATE_AUTHENTICATED;
    return MAILIMAP_NO_ERROR;
}

static enum auth_mech choose_mech(struct imap_session *s, enum auth_mech wanted)
{
    if (wanted != AUTH_AUTO)
        return wanted;
    if (imap_has_capability(s, "AUTH=PLAIN"))
        return AUTH_PLAIN;
    return AUTH_LOGIN;
}

static int authenticate(struct imap_session *s, const struct account *acct, const char *password, struct ms_error *err)
{
    enum auth_mech mech = choose_mech(s, acct->auth);
    if (mech == AUTH_LOGIN && imap_has_capability(s, "LOGINDISABLED"))
        return imap_fail_dead(s, err, "%s: server disabled LOGIN and does not offer AUTH=PLAIN (it offers: %s)",
                              s->host, imap_capabilities(s));
    if (strpbrk(acct->user, "\r\n") || (mech == AUTH_LOGIN && strpbrk(password, "\r\n")))
        return imap_fail_dead(s, err, "user name or password contains a line break");
    log_msg(LOG_VERBOSE, "authenticating as %s with %s", acct->user, sasl_mech_name(mech));
    int r;
    if (mech == AUTH_LOGIN) {
        r = mailimap_login(s->imap, acct->user, password);
    } else {
        char *msg = sasl_message(mech, acct->user, password, s->host, s->port);
        if (!msg)
            return imap_fail_dead(s, err, "out of memory");
        r = sasl_exchange(s, sasl_mech_name(mech), msg, sasl_cancel(mech));
        util_free_secret(msg);
    }
    /* libetpan's write buffer still holds the command we sent. */
    if (s->imap->imap_stream)
        explicit_bzero(s->imap->imap_stream->write_buffer, s->imap->imap_stream->buffer_max_size);
    if (r == MAILIMAP_NO_ERROR)
        return MS_OK;
    if (r == MAILIMAP_ERROR_LOGIN) {
        char text[260];
        snprintf(text, sizeof text, "%s", imap_server_text(s));
        ms_error_set(err, MS_EAUTH, "authentication as %s on %s failed (%s): %s", acct->user, s->host, sasl_mech_name(mech),
                     text);
        imap_kill_stream(s);
        return MS_EAUTH;
    }
    return imap_fail_call(s, r, "authentication", err);
}

/* ======================================================================
 * Connect
 * ==================================================================== */

/* Greeting read; now the STARTTLS dance, refusing every downgrade. */
static int do_starttls(struct imap_session *s, bool preauth, struct ms_error *err)
{
    if (preauth)
        return imap_fail_dead(
            s, err, "%s: server greeted with PREAUTH before STARTTLS; refusing to continue without TLS", s->host);
    int rc = learn_caps(s, err); /* plaintext capabilities: only for STARTTLS */
    if (rc != MS_OK)
        return rc;
    if (!imap_has_capability(s, "STARTTLS"))
        return imap_fail_dead(
            s, err, "%s: server does not offer STARTTLS; refusing to continue without TLS (tls = implicit?)", s->host);
    int r = mailimap_starttls(s->imap);
    mailstream *st = s->imap->imap_stream;
    if (st && st->read_buffer_len != 0)
        return imap_fail_dead(s, err, "%s: server sent data after STARTTLS OK (injection?); connection closed",
                              s->host);
    if (r == MAILIMAP_ERROR_STARTTLS) {
        char text[260];
        snprintf(text, sizeof text, "%s", imap_server_text(s));
        return imap_fail_dead(s, err, "%s: server refused STARTTLS: %s", s->host, text);
    }
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, "STARTTLS", err);
    rc = netstream_start_tls(s->ns, s->tls, s->host, err);
    if (rc != MS_OK) {
        imap_kill_stream(s);
        return rc;
    }
    drop_cached_caps(s); /* nothing learnt before TLS counts */
    return MS_OK;
}

/* TCP (+ implicit TLS) and the greeting. Returns the greeting code through
 * *preauth. */
static int open_session(struct imap_session *s, const struct account *acct, bool *preauth, struct ms_error *err)
{
    struct netstream *ns = NULL;
    int rc = netstream_connect(s->host, s->port, s->timeout, &ns, err);
    if (rc != MS_OK)
        return rc;
    /* The TLS context (CA store, a few ms) is built after the TCP connect:
     * meanwhile the server accepts and starts its side of the session. (A
     * thread building it during the connect measured slower on loopback.) */
    if (acct->tls != TLS_NONE && (rc = tls_client_new(acct->ca_file, acct->fingerprint, &s->tls, err)) != MS_OK) {
        netstream_destroy(ns);
        return rc;
    }
    if (acct->tls == TLS_IMPLICIT) {
        rc = netstream_start_tls(ns, s->tls, s->host, err);
        if (rc != MS_OK) {
            netstream_destroy(ns);
            return rc;
        }
    }
    mailstream *st = mailstream_new(netstream_low(ns), STREAM_BUFFER_SIZE);
    s->imap = st ? mailimap_new(0, NULL) : NULL;
    if (!s->imap) {
        if (st)
            mailstream_close(st);
        else
            netstream_destroy(ns);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    s->ns = ns;
    imap_body_handler_install(s);
    imap_objectid_register();
    int r = mailimap_connect(s->imap, st);
    if (!s->imap->imap_stream) /* libetpan did not take it (cannot happen in 1.9.4) */
        mailstream_close(st);
    if (r == MAILIMAP_NO_ERROR_AUTHENTICATED || r == MAILIMAP_NO_ERROR_NON_AUTHENTICATED) {
        *preauth = r == MAILIMAP_NO_ERROR_AUTHENTICATED;
        return MS_OK;
    }
    return imap_fail_call(s, r, "greeting", err);
}

/* Logged in: switch on COMPRESS=DEFLATE (RFC 4978) when the server
 * offers it and the account allows it. The transport does the deflating
 * (sync/net/deflate_layer.c); bytes the server sent after its OK are
 * already compressed and move from libetpan's buffer to the transport. A
 * NO leaves the session as it was. Not over TLS that compresses itself
 * (the TLS context forbids that anyway). */
static int start_compress(struct imap_session *s, const struct account *acct, struct ms_error *err)
{
    if (!imap_has_capability(s, "COMPRESS=DEFLATE"))
        return MS_OK;
    if (!acct->compress) {
        log_msg(LOG_VERBOSE, "%s: COMPRESS=DEFLATE offered, not used (compress = no)", s->host);
        return MS_OK;
    }
    if (netstream_tls_compressed(s->ns)) {
        log_msg(LOG_VERBOSE, "%s: COMPRESS=DEFLATE not used: TLS compresses already", s->host);
        return MS_OK;
    }
    int state;
    int r = imap_plain_command(s, "COMPRESS DEFLATE", &state);
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, "COMPRESS", err);
    if (state != MAILIMAP_RESP_COND_STATE_OK) {
        log_msg(LOG_VERBOSE, "%s: server refused COMPRESS DEFLATE (%s); going on without", s->host,
                imap_server_text(s));
        return MS_OK;
    }
    mailstream *st = s->imap->imap_stream;
    int rc = netstream_start_compress(s->ns, st->read_buffer, st->read_buffer_len, err);
    if (rc != MS_OK) {
        imap_kill_stream(s);
        return rc;
    }
    st->read_buffer_len = 0;
    log_msg(LOG_VERBOSE, "%s: COMPRESS DEFLATE active", s->host);
    return MS_OK;
}

int imap_connect(const struct account *acct, const char *password, struct imap_session **out, struct ms_error *err)
{
    *out = NULL;
    signal(SIGPIPE, SIG_IGN);
    int rc = account_check(acct, password, err);
    if (rc != MS_OK)
        return rc;
    struct imap_session *s = calloc(1, sizeof *s);
    if (!s || !(s->host = strdup(acct->host))) {
        free(s);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    s->timeout = acct->timeout > 0 ? acct->timeout : 60;
    s->port = acct->port > 0 ? acct->port : (acct->tls == TLS_IMPLICIT ? 993 : 143);
    bool preauth = false;
    rc = open_session(s, acct, &preauth, err);
    if (rc == MS_OK && acct->tls == TLS_STARTTLS)
        rc = do_starttls(s, preauth, err);
    if (rc == MS_OK) {
        s->tls_info = strdup(s->ns ? netstream_tls_info(s->ns) : "none");
        /* Only capabilities learnt under the final protection count. */
        rc = learn_caps(s, err);
    }
    if (rc == MS_OK && !preauth) {
        drop_cached_caps(s); /* servers announce more after login */
        rc = authenticate(s, acct, password, err);
        if (rc == MS_OK)
            rc = learn_caps(s, err);
    }
    if (rc == MS_OK)
        rc = start_compress(s, acct, err);
    if (rc != MS_OK) {
        imap_close(s);
        return rc;
    }
    log_msg(LOG_VERBOSE, "%s: capabilities: %s", s->host, imap_capabilities(s));
    *out = s;
    return MS_OK;
}

void imap_logout_start(struct imap_session *s)
{
    if (!s || s->dead || s->logout_sent || !s->imap || !s->imap->imap_stream)
        return;
    mailstream *st = s->imap->imap_stream;
    if (mailimap_send_current_tag(s->imap) != MAILIMAP_NO_ERROR || imap_stream_puts(st, "LOGOUT\r\n") ||
        mailstream_flush(st) != 0) {
        imap_kill_stream(s);
        return;
    }
    s->logout_sent = true;
}

void imap_close(struct imap_session *s)
{
    if (!s)
        return;
    if (s->imap) {
        if (!s->dead && s->imap->imap_stream) {
            /* Best effort: do not wait long for a goodbye. */
            netstream_set_timeout(s->ns, s->timeout < 10 ? s->timeout : 10);
            if (s->logout_sent) {
                /* The goodbye to imap_logout_start's LOGOUT (BYE, then OK)
                 * is read and dropped when it is already here (closing
                 * with unread data would reset the connection), but not
                 * waited for: it tells nothing, and over a network the
                 * wait is a whole round trip. When it comes after the
                 * close the server has already taken the LOGOUT (Dovecot
                 * logs "Logged out" either way). */
                mailstream *st = s->imap->imap_stream;
                struct mailimap_response *resp = NULL;
                /* (Unread pipelined EXAMINE answers come first: then the
                 * connection is just closed.) */
                if (s->ahead_next == s->nahead && (st->read_buffer_len > 0 || netstream_readable_now(s->ns)) &&
                    mailimap_read_line(s->imap) && mailimap_parse_response(s->imap, &resp) == MAILIMAP_NO_ERROR)
                    mailimap_response_free(resp);
            } else if (s->ahead_next == s->nahead) {
                mailimap_logout(s->imap); /* closes the stream */
                s->ns = NULL;
            }
        }
        imap_kill_stream(s);
        mailimap_free(s->imap);
    }
    tls_client_free(s->tls);
    for (size_t i = 0; i < s->nahead; i++)
        free(s->ahead[i].name);
    free(s->ahead);
    free(s->reselect);
    free(s->caps);
    free(s->tls_info);
    free(s->host);
    free(s);
}
