/* SPDX-License-Identifier: MIT */
/*
 * tls.h: the OpenSSL client side of mailsync's transport.
 *
 * Debian's libetpan does TLS with GnuTLS and verifies nothing, so mailsync
 * does TLS itself (sync/net/netstream.c calls this module). A tls_client holds
 * one SSL_CTX configured for one account:
 *   - TLS 1.2 or newer, SNI set for host names (not for IP literals);
 *   - either the chain is verified against ca_file (or the system store)
 *     and the host name / IP address is checked against the certificate,
 *   - or, when a fingerprint is configured, exactly the certificate whose
 *     SHA-256 over its DER encoding matches is accepted (no chain needed).
 * A failed check ends the handshake with a reason a user can act on
 * ("certificate has expired", "certificate is for another host (wanted
 * X)", "unknown issuer / self-signed", "fingerprint mismatch: got
 * sha256:...") and MS_ENET; a bad ca_file or fingerprint syntax is a
 * configuration error (MS_EUSAGE).
 */
#ifndef MAILSYNC_TLS_H
#define MAILSYNC_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "sync/error.h"

struct tls_client;

/* Build a client context. ca_file NULL means the system default store;
 * fingerprint NULL means verify chain + host ("sha256:AB:CD:..." with the
 * colons optional, hex case-insensitive, otherwise). On success *out owns
 * the context (free with tls_client_free). */
int tls_client_new(const char *ca_file, const char *fingerprint, struct tls_client **out, struct ms_error *err);
void tls_client_free(struct tls_client *c);

/* Run the client handshake on the connected socket fd (blocking or not;
 * it is made non-blocking). host is the name the user configured (used for
 * SNI and verification; "[::1]" brackets are ignored). The whole handshake
 * must finish within timeout_s seconds; cancel_fd (or -1), when readable,
 * aborts it. On success *out is the SSL object, owned by the caller
 * (SSL_free); on failure err says why (MS_ENET). */
int tls_handshake(struct tls_client *c, int fd, const char *host, int timeout_s, int cancel_fd, SSL **out,
                  struct ms_error *err);

/* One line for `mailsync check`: protocol, cipher, certificate subject,
 * issuer, expiry and SHA-256 fingerprint. malloc'd (caller frees), or NULL
 * on allocation failure. */
char *tls_describe(SSL *ssl);

/* Parse a configured fingerprint: optional "sha256:" prefix (any case),
 * 64 hex digits, colons (or spaces) allowed between bytes. Returns 0 and
 * fills md, or -1 if the text is not exactly one SHA-256 digest. */
int tls_parse_fingerprint(const char *text, unsigned char md[32]);

/* Write "sha256:AB:CD:..." (104 bytes with the NUL) for md into out. */
void tls_format_fingerprint(const unsigned char md[32], char *out, size_t outlen);

#endif
