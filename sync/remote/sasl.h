/* SPDX-License-Identifier: MIT */
/*
 * sasl.h: the single client message of the SASL mechanisms mailsync
 * speaks (PLAIN, RFC 4616; XOAUTH2, Google's; OAUTHBEARER, RFC 7628), for
 * IMAP AUTHENTICATE and POP3 AUTH (RFC 5034) alike.
 */
#ifndef MAILSYNC_SASL_H
#define MAILSYNC_SASL_H

#include "sync/account.h"

/* The mechanism's name on the wire ("PLAIN", "XOAUTH2", "OAUTHBEARER";
 * "LOGIN" for the plain login command). */
const char *sasl_mech_name(enum auth_mech m);
/* The client's message for mech, base64-encoded, malloc'd (free it with
 * util_free_secret: it holds the secret). NULL for AUTH_LOGIN/AUTO or
 * out of memory. */
char *sasl_message(enum auth_mech mech, const char *user, const char *secret, const char *host, int port);
/* What ends an exchange the server answers with a challenge (its error
 * detail for XOAUTH2/OAUTHBEARER): "" for XOAUTH2, ^A (base64) for
 * OAUTHBEARER, "*" otherwise. */
const char *sasl_cancel(enum auth_mech mech);

#endif
