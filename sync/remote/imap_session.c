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
    s->win_ahead.on = false;
    imap_stash_free(s->stash);
    s->stash = NULL;
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
    if (rc == MS_OK)
        rc = imap_drop_window_ahead(s, err);
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

struct speculation;
static void send_speculation(struct imap_session *s, mailstream *st, struct speculation *sp);

/* TCP (+ implicit TLS) and the greeting. Returns the greeting code through
 * *preauth, libetpan's code for it through *greeting_r. With sp, what
 * can go before the greeting goes out first (send_speculation). */
static int open_session(struct imap_session *s, const struct account *acct, struct speculation *sp, bool *preauth,
                        int *greeting_r, struct ms_error *err)
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
    if (sp)
        send_speculation(s, st, sp);
    int r = mailimap_connect(s->imap, st);
    *greeting_r = r;
    if (!s->imap->imap_stream) /* libetpan did not take it (cannot happen in 1.9.4) */
        mailstream_close(st);
    if (r == MAILIMAP_NO_ERROR_AUTHENTICATED || r == MAILIMAP_NO_ERROR_NON_AUTHENTICATED) {
        *preauth = r == MAILIMAP_NO_ERROR_AUTHENTICATED;
        return MS_OK;
    }
    return imap_fail_call(s, r, "greeting", err);
}

/* COMPRESS DEFLATE was answered (state): on OK the transport deflates
 * from here on; bytes the server sent after its OK are already
 * compressed and move from libetpan's buffer to the transport. */
static int compress_answered(struct imap_session *s, int state, const char *how, struct ms_error *err)
{
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
    s->compressing = true;
    log_msg(LOG_VERBOSE, "%s: COMPRESS DEFLATE active%s", s->host, how);
    return MS_OK;
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
    if (s->compressing)
        return MS_OK; /* it went out behind the login */
    int state;
    int r = imap_plain_command(s, "COMPRESS DEFLATE", &state);
    return r != MAILIMAP_NO_ERROR ? imap_fail_call(s, r, "COMPRESS", err) : compress_answered(s, state, "", err);
}

/* ======================================================================
 * Round trips saved by what the server said of itself last time
 *
 * A login costs the greeting's round trip and the login's; the listing
 * that follows one more. When the last run found the server's
 * capabilities in its greeting and in the login's OK (imap_memo), this
 * run sends AUTHENTICATE PLAIN with its initial response (SASL-IR) right
 * after the TLS handshake, without waiting for the greeting, and the
 * run's listing (ID, ENABLE, LIST-STATUS or STATUS + LIST: what the
 * capabilities after the login chose last time) behind it, all in one
 * flight. Then, in order:
 *   - the greeting: BYE or a broken connection fail as always; PREAUTH,
 *     or capabilities other than remembered, and the login is done again
 *     on a new connection the usual way (the commands sent may not be
 *     the ones this server wants);
 *   - the login's answer: NO is the credentials refused (MS_EAUTH, the
 *     connection closed unread: the listing was answered BAD, and nothing
 *     secret went with it); a continuation or BAD, or an OK without
 *     capabilities, and nothing is assumed: a new connection as above,
 *     or (OK without capabilities) the listing read and dropped;
 *   - the capabilities after the login: the same as remembered, and the
 *     listing's answers are read and kept for the run's listing; others,
 *     and they are read and dropped (the run lists again).
 * Only over implicit TLS (the certificate is verified before anything is
 * sent) or plaintext (where the password goes in clear anyway); never
 * with STARTTLS. COMPRESS DEFLATE, when it will be used, goes last in the
 * burst (see send_speculation). A failure while the answers behind the
 * login are read is not trusted either: the usual way on a new
 * connection, which says whether it was the speculation's fault.
 * ==================================================================== */

#define MEMO_MAGIC "mailsync-imap 1"

static const char *tls_name(enum tls_mode t)
{
    return t == TLS_IMPLICIT ? "implicit" : t == TLS_STARTTLS ? "starttls" : "none";
}

/* The memo of this session: where (host, TLS or not, user: not the
 * port, which a tunnel or proxy may change from run to run; the
 * capabilities tell whether it is the same server) and the capabilities
 * before and after the login; NULL when the server did not volunteer
 * both. */
static void make_memo(struct imap_session *s, const struct account *acct)
{
    free(s->memo);
    s->memo = NULL;
    if (!s->caps_greeting || !s->caps_volunteered || !s->caps || strchr(acct->host, '\n') ||
        strchr(acct->user, '\n'))
        return;
    size_t len = strlen(MEMO_MAGIC) + strlen(acct->host) + strlen(acct->user) + strlen(s->caps_greeting) +
                 strlen(s->caps) + 64;
    s->memo = malloc(len);
    if (s->memo)
        snprintf(s->memo, len, "%s\n%s\n%s\n%s\n%s\n%s", MEMO_MAGIC, acct->host, tls_name(acct->tls), acct->user,
                 s->caps_greeting, s->caps);
}

const char *imap_memo(struct imap_session *s)
{
    return s ? s->memo : NULL;
}

struct speculation {
    const struct account *acct;
    const char *password;
    const struct remote_hint *hint;
    bool sent;      /* AUTHENTICATE went out before the greeting */
    bool broken;    /* ...but what followed it could not be written whole */
    int compress_tag; /* COMPRESS DEFLATE went out last (0: not) */
    int greeting_r;   /* libetpan's code for the greeting */
    bool listing;   /* ...and the listing behind it */
    int auth_tag;
    char *pre, *post; /* the remembered capabilities */
};

/* Line i (0-based) of the memo into a malloc'd string; NULL if missing. */
static char *memo_line(const char *memo, int i)
{
    const char *p = memo;
    for (; i > 0 && p; i--) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p)
        return NULL;
    const char *e = strchr(p, '\n');
    return strndup(p, e ? (size_t)(e - p) : strlen(p));
}

/* The memo is this account's on this server: its capabilities into sp. */
static bool memo_take(const char *memo, struct speculation *sp)
{
    if (!memo)
        return false;
    char *f[4];
    for (int i = 0; i < 4; i++)
        f[i] = memo_line(memo, i);
    bool ok = f[0] && f[1] && f[2] && f[3] && strcmp(f[0], MEMO_MAGIC) == 0 && strcmp(f[1], sp->acct->host) == 0 &&
              strcmp(f[2], tls_name(sp->acct->tls)) == 0 && strcmp(f[3], sp->acct->user) == 0;
    for (int i = 0; i < 4; i++)
        free(f[i]);
    if (ok) {
        sp->pre = memo_line(memo, 4);
        sp->post = memo_line(memo, 5);
        ok = sp->pre && sp->post;
    }
    return ok;
}

/* Called with the connection up (TLS verified), the greeting unread:
 * AUTHENTICATE PLAIN with its initial response, and the listing behind
 * it, when the memo allows (see above). Sent through libetpan's buffer
 * with the stream lent to it for the time; nothing here is read. A write
 * error shows when the greeting is read. */
static void send_speculation(struct imap_session *s, mailstream *st, struct speculation *sp)
{
    const struct account *acct = sp->acct;
    const char *memo = NULL;
    const char *const *names = NULL;
    size_t n = 0;
    if (acct->tls == TLS_STARTTLS || !acct->early_login || !sp->hint || !sp->hint->prepare)
        return;
    sp->hint->prepare(sp->hint->ctx, &memo, &names, &n);
    if (!memo_take(memo, sp))
        return;
    mailimap *imap = s->imap;
    s->caps = sp->pre; /* borrowed: the capabilities the choices are made from */
    bool plain = choose_mech(s, acct->auth) == AUTH_PLAIN && imap_has_capability(s, "SASL-IR") &&
                 !strpbrk(acct->user, "\r\n");
    s->caps = NULL;
    if (!plain)
        return;
    char *msg = sasl_message(AUTH_PLAIN, acct->user, sp->password, s->host, s->port);
    if (!msg)
        return;
    log_msg(LOG_VERBOSE, "authenticating as %s with %s, before the greeting (as the server allowed last time)",
            acct->user, sasl_mech_name(AUTH_PLAIN));
    /* One write for all of it (one segment, one TLS record where it
     * fits). The trace masks the AUTHENTICATE line by its command name
     * (netstream.c, imap_mask_client_line), as it does a SASL-IR line. */
    imap->imap_stream = st;
    int r = mailimap_send_current_tag(imap);
    sp->auth_tag = imap->imap_tag;
    if (r == MAILIMAP_NO_ERROR && (imap_stream_puts(st, "AUTHENTICATE PLAIN ") || imap_stream_puts(st, msg) ||
                                   imap_stream_puts(st, "\r\n")))
        r = MAILIMAP_ERROR_STREAM;
    util_free_secret(msg);
    s->caps = sp->post;
    bool compress = imap_has_capability(s, "COMPRESS=DEFLATE") && acct->compress && !netstream_tls_compressed(s->ns);
    if (r == MAILIMAP_NO_ERROR && names) {
        bool condstore = imap_has_capability(s, "CONDSTORE") || imap_has_capability(s, "QRESYNC");
        imap->imap_state = MAILIMAP_STATE_AUTHENTICATED; /* what ENABLE's choice asks */
        r = condstore ? imap_listing_send_ahead(s, true, names, n) : imap_listing_send_ahead(s, false, NULL, 0);
        imap->imap_state = MAILIMAP_STATE_DISCONNECTED;
        sp->listing = s->ahead_listing != NULL;
        if (r == MAILIMAP_NO_ERROR)
            log_msg(LOG_VERBOSE, "%s: the listing goes out behind the login", s->host);
        /* COMPRESS last, when nothing else waits to be sent: the server
         * answers it after the listing (in order, as Dovecot does; a
         * server that answered it first would leave compressed bytes
         * where the listing's answers are read: a protocol error, and
         * this run logs in again the usual way) and deflates after its
         * OK, while nothing more is sent before that OK is read. */
        if (r == MAILIMAP_NO_ERROR && compress && imap_listing_ahead_whole(s)) {
            r = mailimap_send_current_tag(imap);
            sp->compress_tag = imap->imap_tag;
            if (r == MAILIMAP_NO_ERROR && imap_stream_puts(st, "COMPRESS DEFLATE\r\n"))
                r = MAILIMAP_ERROR_STREAM;
        }
    }
    sp->broken = r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_STREAM;
    if (r != MAILIMAP_ERROR_STREAM && mailstream_flush(st) != 0)
        r = MAILIMAP_ERROR_STREAM;
    /* libetpan's write buffer held the credentials */
    explicit_bzero(st->write_buffer, st->buffer_max_size);
    sp->sent = true; /* whatever got out: the answers decide */
    s->caps = NULL;
    imap->imap_stream = NULL; /* mailimap_connect takes it */
}

/* The speculation did not hold: the caller connects again the usual way. */
static int speculation_retry(struct imap_session *s, bool *retry, struct ms_error *err, const char *why)
{
    *retry = true;
    log_msg(LOG_VERBOSE, "%s: %s; logging in again the usual way", s->host, why);
    return imap_fail_dead(s, err, "%s: %s", s->host, why);
}

/* The answer to the COMPRESS sent behind the listing, if it was. */
static int read_compress_answer(struct imap_session *s, const struct speculation *sp, struct ms_error *err)
{
    if (!sp->compress_tag)
        return MS_OK;
    int state;
    int r = imap_read_tagged(s, sp->compress_tag, NULL, &state);
    return r != MAILIMAP_NO_ERROR ? imap_fail_call(s, r, "COMPRESS", err)
                                  : compress_answered(s, state, " (it went out behind the login)", err);
}

/* Whether the tagged response resp brought capabilities ([CAPABILITY]
 * code; libetpan moved them to the session). */
static bool tagged_caps(const struct mailimap_response *resp)
{
    const struct mailimap_response_tagged *t = resp->rsp_resp_done->rsp_data.rsp_tagged;
    const struct mailimap_resp_text *x = t && t->rsp_cond_state ? t->rsp_cond_state->rsp_text : NULL;
    return x && x->rsp_code && x->rsp_code->rc_type == MAILIMAP_RESP_TEXT_CODE_CAPABILITY_DATA;
}

/* Whether the tagged answer line (the tag, then the rest) is a NO with
 * RFC 5530's [AUTHENTICATIONFAILED]: the credentials were wrong. Read from
 * the line: libetpan keeps no name for a code it does not know. */
static bool refused_credentials(const char *line)
{
    const char *p = strchr(line, ' ');
    return p && strncasecmp(p + 1, "NO [AUTHENTICATIONFAILED]", 25) == 0;
}

/* The greeting read (not PREAUTH; verified: with the capabilities
 * remembered; else without any, as Dovecot's "* OK Waiting for
 * authentication process to respond.." while its auth process starts,
 * the usual greeting following as untagged data): the answer to the
 * AUTHENTICATE sent before it, then the listing's. */
static int finish_speculation(struct imap_session *s, struct speculation *sp, bool verified, bool *retry,
                              struct ms_error *err)
{
    mailimap *imap = s->imap;
    drop_cached_caps(s);
    /* libetpan checks the tag of the answer against its last one */
    int last = imap->imap_tag;
    imap->imap_tag = sp->auth_tag;
    int r = MAILIMAP_NO_ERROR, state = -1;
    struct mailimap_response *resp = NULL;
    if (!mailimap_read_line(imap))
        r = MAILIMAP_ERROR_STREAM;
    else if (imap->imap_stream_buffer->str[0] == '+')
        r = MAILIMAP_ERROR_PROTOCOL; /* PLAIN with an initial response wants nothing more */
    bool with_caps = false, bad_credentials = false;
    if (r == MAILIMAP_NO_ERROR && imap->imap_stream_buffer->str[0] != '+')
        bad_credentials = refused_credentials(imap->imap_stream_buffer->str);
    if (r == MAILIMAP_NO_ERROR && imap->imap_stream_buffer->str[0] != '+' &&
        (r = mailimap_parse_response(imap, &resp)) == MAILIMAP_NO_ERROR) {
        char tag[16];
        snprintf(tag, sizeof tag, "%d", sp->auth_tag);
        const char *got = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_tag;
        state = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type;
        with_caps = tagged_caps(resp);
        if (!got || strcmp(got, tag) != 0)
            r = MAILIMAP_ERROR_PROTOCOL; /* a command behind it answered first */
        mailimap_response_free(resp);
    }
    imap->imap_tag = last;
    if (r == MAILIMAP_ERROR_PROTOCOL || state == MAILIMAP_RESP_COND_STATE_BAD)
        return speculation_retry(s, retry, err, "the server did not take AUTHENTICATE sent before its greeting");
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, "authentication", err);
    /* Behind a greeting that showed no capabilities a refusal may be the
     * speculation's fault, unless the server says the credentials were
     * wrong (a second attempt would count against the account's
     * lockout, as fail2ban counts them). */
    if (state != MAILIMAP_RESP_COND_STATE_OK && !verified && !bad_credentials)
        return speculation_retry(s, retry, err, "the login sent before an unknown greeting was refused");
    if (state != MAILIMAP_RESP_COND_STATE_OK) {
        char text[260];
        snprintf(text, sizeof text, "%s", imap_server_text(s));
        ms_error_set(err, MS_EAUTH, "authentication as %s on %s failed (%s): %s", sp->acct->user, s->host,
                     sasl_mech_name(AUTH_PLAIN), text);
        imap_kill_stream(s); /* the listing behind it is answered BAD: not read */
        return MS_EAUTH;
    }
    imap->imap_state = MAILIMAP_STATE_AUTHENTICATED;
    struct mailimap_connection_info *ci = imap->imap_connection_info;
    if (!ci || !ci->imap_capability || !with_caps) {
        /* no capabilities with the OK (those of a late greeting do not
         * count): the listing's answers are dropped before a CAPABILITY
         * can be asked */
        drop_cached_caps(s);
        int rc = imap_listing_read_ahead(s, false, err);
        rc = rc != MS_OK ? rc : read_compress_answer(s, sp, err);
        return rc != MS_OK ? rc : refresh_caps(s, err);
    }
    set_caps_text(s);
    if (!s->caps)
        return imap_fail_dead(s, err, "out of memory");
    s->caps_volunteered = true;
    bool same = strcmp(s->caps, sp->post) == 0;
    if (!same && sp->listing)
        log_msg(LOG_VERBOSE, "%s: capabilities changed since the last run: the listing sent behind the login is "
                "dropped", s->host);
    int rc = imap_listing_read_ahead(s, same, err);
    rc = rc == MS_OK ? read_compress_answer(s, sp, err) : rc;
    if (rc == MS_ENET) {
        log_msg(LOG_VERBOSE, "%s: %s", s->host, err->msg);
        ms_error_clear(err);
        return speculation_retry(s, retry, err, "the answers behind the login could not be read");
    }
    return rc;
}

/* One connection: TCP, TLS, the greeting, the login (or the speculation
 * above), COMPRESS. *retry: the speculation failed, try again without. */
static int connect_once(struct imap_session *s, const struct account *acct, const char *password,
                        const struct remote_hint *hint, bool *retry, struct ms_error *err)
{
    bool preauth = false;
    struct speculation sp = {.acct = acct, .password = password, .hint = hint};
    int rc = open_session(s, acct, hint ? &sp : NULL, &preauth, &sp.greeting_r, err);
    /* A server that hung up on a client speaking before its greeting
     * (or whose BYE went lost in the reset our unread bytes caused): the
     * usual way, which says what the server has to say. */
    if (rc == MS_ENET && sp.sent && sp.greeting_r == MAILIMAP_ERROR_STREAM) {
        log_msg(LOG_VERBOSE, "%s: %s", s->host, err->msg);
        ms_error_clear(err);
        rc = speculation_retry(s, retry, err, "the connection broke before the greeting came");
    }
    if (rc == MS_OK && acct->tls == TLS_STARTTLS)
        rc = do_starttls(s, preauth, err);
    if (rc == MS_OK) {
        s->tls_info = strdup(s->ns ? netstream_tls_info(s->ns) : "none");
        /* Only capabilities learnt under the final protection count. */
        struct mailimap_connection_info *ci = s->imap->imap_connection_info;
        bool volunteered = ci && ci->imap_capability;
        /* (after the speculation no CAPABILITY may be asked: its answer
         * would come behind the login's) */
        if (!sp.sent || volunteered)
            rc = learn_caps(s, err);
        if (rc == MS_OK && volunteered && !preauth && acct->tls != TLS_STARTTLS)
            s->caps_greeting = strdup(s->caps);
    }
    if (rc == MS_OK && sp.sent) {
        if (preauth)
            rc = speculation_retry(s, retry, err, "the server greets with PREAUTH now");
        else if (sp.broken)
            rc = speculation_retry(s, retry, err, "the commands behind the login could not be written");
        else if (s->caps_greeting && strcmp(s->caps_greeting, sp.pre) != 0)
            rc = speculation_retry(s, retry, err, "the server's capabilities changed since the last run");
        else
            rc = finish_speculation(s, &sp, s->caps_greeting != NULL, retry, err);
    } else if (rc == MS_OK && !preauth) {
        drop_cached_caps(s); /* servers announce more after login */
        rc = authenticate(s, acct, password, err);
        if (rc == MS_OK) {
            struct mailimap_connection_info *ci = s->imap->imap_connection_info;
            s->caps_volunteered = ci && ci->imap_capability;
            rc = learn_caps(s, err);
        }
    }
    free(sp.pre);
    free(sp.post);
    if (rc == MS_OK)
        rc = start_compress(s, acct, err);
    if (rc == MS_OK)
        make_memo(s, acct);
    return rc;
}

static struct imap_session *session_new(const struct account *acct)
{
    struct imap_session *s = calloc(1, sizeof *s);
    if (!s || !(s->host = strdup(acct->host))) {
        free(s);
        return NULL;
    }
    s->timeout = acct->timeout > 0 ? acct->timeout : 60;
    s->port = acct->port > 0 ? acct->port : (acct->tls == TLS_IMPLICIT ? 993 : 143);
    return s;
}

int imap_connect_hinted(const struct account *acct, const char *password, const struct remote_hint *hint,
                        struct imap_session **out, struct ms_error *err)
{
    *out = NULL;
    signal(SIGPIPE, SIG_IGN);
    int rc = account_check(acct, password, err);
    if (rc != MS_OK)
        return rc;
    struct imap_session *s = session_new(acct);
    if (!s)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    bool retry = false;
    rc = connect_once(s, acct, password, hint, &retry, err);
    if (rc != MS_OK && retry) {
        imap_close(s);
        ms_error_clear(err);
        if (!(s = session_new(acct)))
            return ms_error_set(err, MS_ELOCAL, "out of memory");
        rc = connect_once(s, acct, password, NULL, &retry, err);
    }
    if (rc != MS_OK) {
        imap_close(s);
        return rc;
    }
    log_msg(LOG_VERBOSE, "%s: capabilities: %s", s->host, imap_capabilities(s));
    *out = s;
    return MS_OK;
}

int imap_connect(const struct account *acct, const char *password, struct imap_session **out, struct ms_error *err)
{
    return imap_connect_hinted(acct, password, NULL, out, err);
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
                /* (Unread pipelined answers come first, EXAMINEs or a
                 * window's listing sent ahead: then the connection is
                 * just closed.) */
                if (s->ahead_next == s->nahead && !s->win_ahead.on &&
                    (st->read_buffer_len > 0 || netstream_readable_now(s->ns)) &&
                    mailimap_read_line(s->imap) && mailimap_parse_response(s->imap, &resp) == MAILIMAP_NO_ERROR)
                    mailimap_response_free(resp);
            } else if (s->ahead_next == s->nahead && !s->win_ahead.on) {
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
    imap_stash_free(s->stash);
    imap_listing_ahead_free(s);
    free(s->caps_greeting);
    free(s->memo);
    free(s->caps);
    free(s->tls_info);
    free(s->host);
    free(s);
}
