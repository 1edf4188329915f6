/*
 * imap.h: the IMAP side, over libetpan, with our own transport.
 *
 * The transport (sync/netstream.c) is a libetpan mailstream_low driver over
 * our socket and OpenSSL: certificate chain + hostname (or fingerprint pin)
 * are verified before the greeting is read; every read and write has a
 * deadline reset by progress (account->timeout); IMAP literal sizes are
 * checked against a cap before libetpan sees them; with -vv the
 * conversation is logged with LOGIN/AUTHENTICATE secrets masked.
 *
 * All functions return MS_OK or an MS_* code with err filled:
 *   MS_ENET  connection, TLS, timeout, protocol trouble (session unusable)
 *   MS_EAUTH credentials refused
 *   MS_EPARTIAL a command failed (NO) but the session is still usable
 */
#ifndef MAILSYNC_IMAP_H
#define MAILSYNC_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sync/account.h"
#include "sync/error.h"

struct imap_session;

/* Connect to acct->host:port per acct->tls (implicit, STARTTLS, none),
 * verify the certificate (acct->ca_file or the system store; or
 * acct->fingerprint), refuse STARTTLS stripping/PREAUTH/injected bytes,
 * re-read capabilities after TLS, and authenticate with password (LOGIN,
 * or AUTHENTICATE PLAIN; per acct->auth). password is not kept after
 * authentication. tls=none is only allowed for loopback hosts or with
 * allow_plaintext (the caller checks config; this re-checks). */
int imap_connect(const struct account *acct, const char *password, struct imap_session **out,
                 struct ms_error *err);

/* LOGOUT (best effort) and free everything. NULL is fine. */
void imap_close(struct imap_session *s);

/* One-line descriptions for `mailsync check`: TLS version + cipher +
 * certificate subject/issuer/expiry ("none" for plaintext); the server's
 * capability list (space separated). Static/owned by the session. */
const char *imap_tls_info(struct imap_session *s);
const char *imap_capabilities(struct imap_session *s);
bool imap_has_capability(struct imap_session *s, const char *name);

struct imap_folder {
    char *name;    /* raw server name (modified UTF-7), as LIST sent it */
    char delim;    /* hierarchy delimiter, '\0' if none */
    bool noselect; /* \Noselect or \NonExistent: has no messages */
};

/* LIST "" "*". */
int imap_list(struct imap_session *s, struct imap_folder **out, size_t *n, struct ms_error *err);
void imap_folders_free(struct imap_folder *f, size_t n);

struct imap_mailbox {
    uint32_t uidvalidity;
    uint32_t uidnext;       /* 0 if the server did not say */
    uint32_t exists;
    uint64_t highestmodseq; /* 0 if no CONDSTORE / NOMODSEQ */
};

/* EXAMINE (read-only) or SELECT (read_write) the folder by raw name. */
int imap_select(struct imap_session *s, const char *name, bool read_write, struct imap_mailbox *out,
                struct ms_error *err);

struct imap_msg {
    uint32_t uid;
    unsigned flags;     /* FLAG_* */
    char *keywords;     /* other keywords (not \Recent), space separated, or NULL */
    uint64_t size;      /* RFC822.SIZE */
    time_t internaldate;/* 0 if not fetched */
};

/* UID FETCH first:last (UID FLAGS RFC822.SIZE) on the selected folder
 * (last == 0 means '*'). Returns the messages sorted by uid. Only the
 * tagged OK makes the list complete: on any failure nothing is returned. */
int imap_fetch_flags(struct imap_session *s, uint32_t first, uint32_t last, struct imap_msg **out, size_t *n,
                     struct ms_error *err);
void imap_msgs_free(struct imap_msg *m, size_t n);

/* Streamed bodies. For every message of the UID FETCH, the body bytes
 * arrive in order through chunk() (zero or more calls, never the whole
 * message in memory), then message() once with UID, FLAGS, INTERNALDATE and
 * RFC822.SIZE (has_body false if the FETCH response carried no body, e.g.
 * an unsolicited flag update: then no chunk() preceded it). A non-zero
 * return from a callback aborts the fetch (the session is then closed,
 * returning MS_ENET unless the callback's own code is returned through
 * err). */
struct imap_body_sink {
    void *ctx;
    int (*chunk)(void *ctx, const char *data, size_t len);
    int (*message)(void *ctx, const struct imap_msg *m, bool has_body);
};

/* UID FETCH uids (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]), with the
 * UID set compressed into ranges and split so no command line exceeds
 * ~8 KB. uids must be sorted ascending. UIDs the server did not return
 * (expunged meanwhile) are simply not reported. */
int imap_fetch_bodies(struct imap_session *s, const uint32_t *uids, size_t n, const struct imap_body_sink *sink,
                      struct ms_error *err);

/* Identity of messages, for re-matching after a UIDVALIDITY change:
 * UID FETCH uids (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]).
 * Calls found(ctx, uid, size, message_id) per message; message_id is the
 * header value trimmed (e.g. "<abc@host>"), or NULL if absent. */
int imap_fetch_identity(struct imap_session *s, const uint32_t *uids, size_t n,
                        void (*found)(void *ctx, uint32_t uid, uint64_t size, const char *message_id), void *ctx,
                        struct ms_error *err);

#endif
