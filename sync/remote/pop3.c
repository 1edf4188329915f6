/* SPDX-License-Identifier: MIT */
/*
 * pop3.c: the POP3 side (see pop3.h).
 *
 * Lines are read from libetpan's mailstream (our netstream driver under
 * it, in raw mode: no IMAP framing) into a bounded buffer: a status line
 * over POP3_LINE_MAX is a protocol error; a body line of any length is
 * passed on in pieces.
 */
#include "sync/remote/pop3.h"
#include "sync/remote/sasl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libetpan/libetpan.h>

#include "sync/log.h"
#include "sync/net/netstream.h"
#include "sync/net/tls.h"
#include "sync/util.h"

#define POP3_LINE_MAX 4096          /* a status or listing line */
#define POP3_BUF 65536
#define POP3_LIST_MAX (1u << 24)    /* messages in a maildrop */

struct pop3_session {
    struct netstream *ns;
    mailstream *st;
    struct tls_client *tls;
    char *host;
    int port;
    bool dead;
    char buf[POP3_BUF];
    size_t start, end; /* unread bytes: buf[start..end) */
    char line[POP3_LINE_MAX + 1];
    char text[240]; /* the server's last -ERR text, escaped */
};

static int dead(struct pop3_session *s, struct ms_error *err, const char *what)
{
    s->dead = true;
    const char *why = s->ns && netstream_failed(s->ns) ? netstream_reason(s->ns) : "connection lost";
    return ms_error_set(err, MS_ENET, "POP3 %s: %s:%d: %s", what, s->host, s->port, why);
}

static int fill(struct pop3_session *s)
{
    if (s->start > 0 && s->start == s->end)
        s->start = s->end = 0;
    if (s->end == sizeof s->buf) {
        memmove(s->buf, s->buf + s->start, s->end - s->start);
        s->end -= s->start;
        s->start = 0;
    }
    ssize_t n = mailstream_read(s->st, s->buf + s->end, sizeof s->buf - s->end);
    if (n <= 0)
        return -1;
    s->end += (size_t)n;
    return 0;
}

/* The next piece of a line: up to and with its LF (*whole), or as much as
 * the buffer holds when the line is longer (*whole false). */
static int piece(struct pop3_session *s, const char **p, size_t *len, bool *whole)
{
    for (;;) {
        char *lf = memchr(s->buf + s->start, '\n', s->end - s->start);
        if (lf) {
            *p = s->buf + s->start;
            *len = (size_t)(lf - (s->buf + s->start)) + 1;
            *whole = true;
            s->start += *len;
            return 0;
        }
        if (s->end - s->start == sizeof s->buf) {
            *p = s->buf + s->start;
            *len = s->end - s->start;
            *whole = false;
            s->start = s->end;
            return 0;
        }
        if (fill(s) != 0)
            return -1;
    }
}

/* A whole short line, without CRLF, into s->line. */
static int read_line(struct pop3_session *s, const char *what, struct ms_error *err)
{
    const char *p;
    size_t len;
    bool whole;
    if (piece(s, &p, &len, &whole) != 0)
        return dead(s, err, what);
    if (!whole || len > POP3_LINE_MAX) {
        s->dead = true;
        return ms_error_set(err, MS_ENET, "POP3 %s: %s:%d: a line too long for a POP3 response", what, s->host,
                            s->port);
    }
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    memcpy(s->line, p, len);
    s->line[len] = '\0';
    return MS_OK;
}

static int send_line(struct pop3_session *s, const char *text, bool secret, const char *what, struct ms_error *err)
{
    if (s->dead)
        return ms_error_set(err, MS_ENET, "the POP3 connection to %s is no longer usable", s->host);
    netstream_set_secret(s->ns, secret);
    size_t n = strlen(text);
    bool ok = mailstream_write(s->st, text, n) == (ssize_t)n && mailstream_write(s->st, "\r\n", 2) == 2 &&
              mailstream_flush(s->st) == 0;
    netstream_set_secret(s->ns, false);
    if (secret)
        log_msg(LOG_TRACE, "C: %s<masked>", strncmp(text, "PASS ", 5) == 0 ? "PASS " : "");
    else
        log_msg(LOG_TRACE, "C: %s", text);
    return ok ? MS_OK : dead(s, err, what);
}

/* A command and its status line: MS_OK for +OK, MS_EPARTIAL for -ERR. */
static int command(struct pop3_session *s, const char *text, bool secret, const char *what, struct ms_error *err)
{
    int rc = send_line(s, text, secret, what, err);
    if (rc == MS_OK)
        rc = read_line(s, what, err);
    if (rc != MS_OK)
        return rc;
    log_msg(LOG_TRACE, "S: %s", log_escape(s->line, strlen(s->line), 200));
    if (strncmp(s->line, "+OK", 3) == 0)
        return MS_OK;
    imap_escape_text(s->line, strlen(s->line), s->text, sizeof s->text);
    if (strncmp(s->line, "-ERR", 4) == 0)
        return ms_error_set(err, MS_EPARTIAL, "POP3 %s: server said %s", what, s->text);
    s->dead = true;
    return ms_error_set(err, MS_ENET, "POP3 %s: %s:%d: not a POP3 answer: %s", what, s->host, s->port, s->text);
}

/* AUTH (RFC 5034) with the account's SASL mechanism: the command, then
 * the client's message after the server's "+", then (a challenge is the
 * server's error detail) the mechanism's cancel. MS_OK for +OK,
 * MS_EPARTIAL for -ERR (s->text says why). */
static int sasl_login(struct pop3_session *s, const struct account *acct, const char *secret, struct ms_error *err)
{
    char *msg = sasl_message(acct->auth, acct->user, secret, s->host, s->port);
    if (!msg)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    char cmd[64];
    snprintf(cmd, sizeof cmd, "AUTH %s", sasl_mech_name(acct->auth));
    log_msg(LOG_VERBOSE, "authenticating as %s with %s", acct->user, sasl_mech_name(acct->auth));
    int rc = send_line(s, cmd, false, "AUTH", err);
    bool sent = false;
    for (int round = 0; rc == MS_OK; round++) {
        if ((rc = read_line(s, "AUTH", err)) != MS_OK)
            break;
        log_msg(LOG_TRACE, "S: %s", log_escape(s->line, strlen(s->line), 200));
        if (strncmp(s->line, "+OK", 3) == 0)
            break;
        if (strncmp(s->line, "-ERR", 4) == 0) {
            imap_escape_text(s->line, strlen(s->line), s->text, sizeof s->text);
            rc = ms_error_set(err, MS_EPARTIAL, "POP3 AUTH: server said %s", s->text);
            break;
        }
        if (s->line[0] != '+' || (s->line[1] != ' ' && s->line[1] != '\0') || round >= 3) {
            imap_escape_text(s->line, strlen(s->line), s->text, sizeof s->text);
            s->dead = true;
            rc = ms_error_set(err, MS_ENET, "POP3 AUTH: %s:%d: not a POP3 answer: %s", s->host, s->port, s->text);
            break;
        }
        rc = send_line(s, sent ? sasl_cancel(acct->auth) : msg, !sent, "AUTH", err);
        sent = true;
    }
    util_free_secret(msg);
    return rc;
}

int pop3_connect(const struct account *acct, const char *password, struct pop3_session **out, struct ms_error *err)
{
    *out = NULL;
    int rc = account_check(acct, password, err);
    if (rc != MS_OK)
        return rc;
    struct pop3_session *s = xcalloc(1, sizeof *s);
    s->host = xstrdup(acct->host);
    s->port = acct->port;
    rc = netstream_connect(s->host, s->port, acct->timeout, &s->ns, err);
    if (rc == MS_OK) {
        netstream_set_raw(s->ns, true);
        netstream_set_timeout(s->ns, acct->timeout);
    }
    if (rc == MS_OK && acct->tls != TLS_NONE)
        rc = tls_client_new(acct->ca_file, acct->fingerprint, &s->tls, err);
    if (rc == MS_OK && acct->tls == TLS_IMPLICIT)
        rc = netstream_start_tls(s->ns, s->tls, s->host, err);
    if (rc == MS_OK) {
        s->st = mailstream_new(netstream_low(s->ns), 8192);
        if (!s->st)
            rc = ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    if (rc != MS_OK) {
        if (s->ns && !s->st)
            netstream_destroy(s->ns);
        s->ns = NULL;
        pop3_quit(s, NULL);
        return rc;
    }
    rc = read_line(s, "greeting", err);
    if (rc == MS_OK && strncmp(s->line, "+OK", 3) != 0) {
        imap_escape_text(s->line, strlen(s->line), s->text, sizeof s->text);
        rc = ms_error_set(err, MS_ENET, "POP3 greeting from %s:%d: %s", s->host, s->port, s->text);
    }
    if (rc == MS_OK && acct->tls == TLS_STARTTLS) {
        rc = command(s, "STLS", false, "STLS", err);
        if (rc == MS_EPARTIAL)
            rc = ms_error_set(err, MS_ENET, "%s:%d refused STLS (tls = starttls): %s", s->host, s->port, s->text);
        /* nothing may have come after the +OK: that would be injected */
        if (rc == MS_OK && (s->end > s->start || s->st->read_buffer_len > 0))
            rc = ms_error_set(err, MS_ENET, "%s:%d sent data after its STLS answer (refused: injection)", s->host,
                              s->port);
        if (rc == MS_OK)
            rc = netstream_start_tls(s->ns, s->tls, s->host, err);
    }
    char cmd[600];
    /* USER/PASS (auth = auto or login), else AUTH with the mechanism;
     * the POP3 command line is at most 255 octets (RFC 1939, 5034). */
    bool user_pass = acct->auth == AUTH_AUTO || acct->auth == AUTH_LOGIN;
    if (rc == MS_OK) {
        if (strpbrk(acct->user, "\r\n") || strpbrk(password, "\r\n") || strlen(acct->user) > 250 ||
            (user_pass && strlen(password) > 250))
            rc = ms_error_set(err, MS_EUSAGE, "account %s: user or password cannot be sent over POP3", acct->name);
    }
    if (rc == MS_OK && !user_pass) {
        rc = sasl_login(s, acct, password, err);
    } else {
        if (rc == MS_OK) {
            snprintf(cmd, sizeof cmd, "USER %s", acct->user);
            rc = command(s, cmd, false, "USER", err);
        }
        if (rc == MS_OK) {
            snprintf(cmd, sizeof cmd, "PASS %s", password);
            rc = command(s, cmd, true, "PASS", err);
            explicit_bzero(cmd, sizeof cmd);
        }
    }
    if (rc == MS_EPARTIAL)
        rc = ms_error_set(err, MS_EAUTH, "%s: POP3 login as %s refused (%s): %s", acct->name, acct->user,
                          user_pass ? "USER/PASS" : sasl_mech_name(acct->auth), s->text);
    if (rc != MS_OK) {
        pop3_quit(s, NULL);
        return rc;
    }
    log_msg(LOG_VERBOSE, "%s: POP3 session on %s:%d (%s)", acct->name, s->host, s->port, netstream_tls_info(s->ns));
    *out = s;
    return MS_OK;
}

void pop3_quit(struct pop3_session *s, bool *committed)
{
    if (committed)
        *committed = false;
    if (!s)
        return;
    struct ms_error e;
    if (s->st && !s->dead && command(s, "QUIT", false, "QUIT", &e) == MS_OK && committed)
        *committed = true;
    if (s->st)
        mailstream_close(s->st);
    tls_client_free(s->tls);
    free(s->host);
    free(s);
}

/* The lines of a multi-line answer until ".", each to fn. */
static int listing(struct pop3_session *s, const char *cmd, int (*fn)(void *ctx, const char *line), void *ctx,
                   struct ms_error *err)
{
    int rc = command(s, cmd, false, cmd, err);
    while (rc == MS_OK) {
        if ((rc = read_line(s, cmd, err)) != MS_OK)
            break;
        if (strcmp(s->line, ".") == 0)
            return MS_OK;
        if (fn(ctx, s->line) != 0) {
            s->dead = true;
            rc = ms_error_set(err, MS_ENET, "POP3 %s: %s:%d: malformed line: %s", cmd, s->host, s->port,
                              log_escape(s->line, strlen(s->line), 100));
        }
    }
    return rc;
}

struct list_ctx {
    struct pop3_msg *v;
    size_t n, cap;
    bool sizes;
};

static struct pop3_msg *msg_of(struct list_ctx *c, uint32_t n)
{
    for (size_t i = c->n; i-- > 0;) /* listings come in order: look from the end */
        if (c->v[i].n == n)
            return &c->v[i];
    return NULL;
}

static int on_list_line(void *ctx, const char *line)
{
    struct list_ctx *c = ctx;
    char *end;
    errno = 0;
    unsigned long n = strtoul(line, &end, 10);
    if (errno || end == line || *end != ' ' || n == 0 || n > UINT32_MAX)
        return -1;
    const char *rest = end + 1;
    if (c->sizes) {
        unsigned long long size = strtoull(rest, &end, 10);
        struct pop3_msg *m = msg_of(c, (uint32_t)n);
        if (end == rest || !m)
            return end == rest ? -1 : 0; /* LIST of one UIDL did not give: ignored */
        m->size = size;
        return 0;
    }
    size_t len = strlen(rest);
    if (len == 0 || len > 70 || c->n >= POP3_LIST_MAX)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (rest[i] < 0x21 || rest[i] > 0x7e)
            return -1;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = xrealloc(c->v, c->cap * sizeof *c->v);
    }
    struct pop3_msg *m = &c->v[c->n++];
    memset(m, 0, sizeof *m);
    m->n = (uint32_t)n;
    memcpy(m->uidl, rest, len + 1);
    return 0;
}

int pop3_list(struct pop3_session *s, struct pop3_msg **out, size_t *n, struct ms_error *err)
{
    struct list_ctx c = {0};
    int rc = listing(s, "UIDL", on_list_line, &c, err);
    if (rc == MS_EPARTIAL)
        rc = ms_error_set(err, MS_EPARTIAL, "the POP3 server has no UIDL (needed to fetch each message once): %s",
                          s->text);
    c.sizes = true;
    if (rc == MS_OK)
        rc = listing(s, "LIST", on_list_line, &c, err);
    if (rc != MS_OK) {
        free(c.v);
        return rc;
    }
    *out = c.v ? c.v : xcalloc(1, sizeof **out);
    *n = c.n;
    return MS_OK;
}

int pop3_retr(struct pop3_session *s, uint32_t n, int (*chunk)(void *ctx, const char *data, size_t len), void *ctx,
              struct ms_error *err)
{
    char cmd[32];
    snprintf(cmd, sizeof cmd, "RETR %" PRIu32, n);
    int rc = command(s, cmd, false, "RETR", err);
    bool at_start = true; /* the next piece starts a line */
    while (rc == MS_OK) {
        const char *p;
        size_t len;
        bool whole;
        if (piece(s, &p, &len, &whole) != 0)
            return dead(s, err, "RETR");
        if (at_start && whole && (len == 3 && memcmp(p, ".\r\n", 3) == 0))
            return MS_OK;
        if (at_start && whole && len == 2 && memcmp(p, ".\n", 2) == 0)
            return MS_OK;
        if (at_start && len > 0 && p[0] == '.') {
            p++; /* dot-stuffing */
            len--;
        }
        at_start = whole;
        if (len && chunk(ctx, p, len) != 0) {
            s->dead = true;
            return ms_error_set(err, MS_ELOCAL, "POP3 RETR: the message could not be stored");
        }
    }
    return rc;
}

const char *pop3_tls_info(struct pop3_session *s)
{
    return netstream_tls_info(s->ns);
}

int pop3_dele(struct pop3_session *s, uint32_t n, struct ms_error *err)
{
    char cmd[32];
    snprintf(cmd, sizeof cmd, "DELE %" PRIu32, n);
    return command(s, cmd, false, "DELE", err);
}
