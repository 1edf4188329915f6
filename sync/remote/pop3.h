/* SPDX-License-Identifier: MIT */
/*
 * pop3.h: the POP3 side (RFC 1939, STLS from RFC 2595), on our transport
 * (sync/net/netstream.c: TLS verified as for IMAP, deadlines), in our own
 * code: libetpan's RETR holds the whole message in memory, and its line
 * reader has no bound. Every server line is bounded; a message body is
 * streamed to a sink, dot-unstuffed, CRLF as sent.
 *
 * Functions return MS_OK or an MS_* code with err filled (MS_ENET for the
 * connection, MS_EAUTH for refused credentials, MS_EPARTIAL for a -ERR to
 * a command on a usable session).
 */
#ifndef MAILSYNC_POP3_H
#define MAILSYNC_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync/account.h"
#include "sync/error.h"

struct pop3_session;

/* Connect per acct->tls (implicit, STLS, none: loopback or allow_plaintext
 * only), read the greeting, USER/PASS. */
int pop3_connect(const struct account *acct, const char *password, struct pop3_session **out, struct ms_error *err);
/* QUIT (the server carries out the DELEs then) and free. *committed tells
 * whether the server confirmed the QUIT. NULL is fine. */
void pop3_quit(struct pop3_session *s, bool *committed);

struct pop3_msg {
    uint32_t n;    /* message number in this session */
    char uidl[72]; /* unique id (RFC 1939: 1-70 printable characters) */
    uint64_t size; /* from LIST */
};

/* UIDL and LIST, joined by message number. */
int pop3_list(struct pop3_session *s, struct pop3_msg **out, size_t *n, struct ms_error *err);

/* RETR n: the body's bytes (CRLF line ends, dot-stuffing removed) through
 * chunk(); a non-zero return aborts (the session is then unusable). */
int pop3_retr(struct pop3_session *s, uint32_t n, int (*chunk)(void *ctx, const char *data, size_t len), void *ctx,
              struct ms_error *err);

/* TLS version, cipher and certificate, or "none" (owned by the session). */
const char *pop3_tls_info(struct pop3_session *s);

/* DELE n (carried out at QUIT). */
int pop3_dele(struct pop3_session *s, uint32_t n, struct ms_error *err);

#endif
