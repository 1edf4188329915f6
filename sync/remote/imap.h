/* SPDX-License-Identifier: MIT */
/*
 * imap.h: the IMAP side, over libetpan, with our own transport.
 *
 * The transport (sync/net/netstream.c) is a libetpan mailstream_low driver over
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

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sync/account.h"
#include "sync/error.h"
#include "sync/remote/remote.h" /* the message, folder and status types */

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

/* imap_connect, saving round trips with what hint gives (remote.h,
 * struct remote_hint): the greeting not waited for, the listing of a sync
 * run sent behind the login (imap_session.c says when and how). NULL
 * hint: imap_connect. */
int imap_connect_hinted(const struct account *acct, const char *password, const struct remote_hint *hint,
                        struct imap_session **out, struct ms_error *err);

/* What this session would like to be hinted at the next connect (the
 * server's capabilities before and after the login, and where); NULL when
 * the server did not volunteer both. Owned by the session. */
const char *imap_memo(struct imap_session *s);

/* Send LOGOUT without waiting for the answer: the server closes its side
 * while the caller finishes local work; imap_close() then reads the
 * goodbye. No other command may follow. NULL is fine. */
void imap_logout_start(struct imap_session *s);

/* LOGOUT (best effort; or the goodbye to imap_logout_start's) and free
 * everything. NULL is fine. */
void imap_close(struct imap_session *s);

/* One-line descriptions for `mailsync check`: TLS version + cipher +
 * certificate subject/issuer/expiry ("none" for plaintext); the server's
 * capability list (space separated). Static/owned by the session. */
const char *imap_tls_info(struct imap_session *s);
const char *imap_capabilities(struct imap_session *s);
bool imap_has_capability(struct imap_session *s, const char *name);

/* LIST "" "*". */
int imap_list(struct imap_session *s, struct remote_folder **out, size_t *n, struct ms_error *err);

/* EXAMINE (read-only) or SELECT (read_write) the folder by raw name. */
int imap_select(struct imap_session *s, const char *name, bool read_write, struct remote_box *out,
                struct ms_error *err);

/* Send UID FETCH first:last (UID FLAGS RFC822.SIZE) [(CHANGEDSINCE
 * modseq), modseq non-zero] on the selected folder now, first <= last:
 * imap_fetch_flags(first, last) or imap_fetch_flags_changedsince(first,
 * last, modseq) takes its answer; any other command reads and drops it
 * first (remote.h: list_ahead). */
int imap_list_ahead(struct imap_session *s, uint32_t first, uint32_t last, uint64_t modseq, struct ms_error *err);

/* UID FETCH first:last (UID FLAGS RFC822.SIZE) on the selected folder
 * (last == 0 means '*'). Returns the messages sorted by uid. Only the
 * tagged OK makes the list complete: on any failure nothing is returned. */
int imap_fetch_flags(struct imap_session *s, uint32_t first, uint32_t last, struct remote_msg **out, size_t *n,
                     struct ms_error *err);

/* Every message below the UID below, a window of size UIDs at a time
 * from the top down (remote_ops.list_windows): UID FETCH lo:hi (UID FLAGS)
 * of two windows in flight (no sizes: size 0), each answer read, sorted
 * and handed to window() before the next command goes out. A failure
 * (the server's NO, window()'s return) with answers still in flight ends
 * the session. */
int imap_fetch_flags_windows(struct imap_session *s, uint32_t below, uint32_t size, remote_window_fn *window,
                             void *ctx, struct ms_error *err);

/* UID FETCH uids (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]), with the
 * UID set compressed into ranges and split so no command line exceeds
 * ~8 KB. uids must be sorted ascending. UIDs the server did not return
 * (expunged meanwhile) are simply not reported. The sink as in remote.h
 * (m->id is NULL). */
int imap_fetch_bodies(struct imap_session *s, const uint32_t *uids, size_t n, const struct remote_body_sink *sink,
                      struct ms_error *err);

/* Identity of messages, for re-matching after a UIDVALIDITY change:
 * UID FETCH uids (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]).
 * Calls found(ctx, uid, size, message_id) per message; message_id is the
 * header value trimmed (e.g. "<abc@host>"), or NULL if absent. */
int imap_fetch_identity(struct imap_session *s, const uint32_t *uids, size_t n,
                        void (*found)(void *ctx, uint32_t uid, uint64_t size, const char *message_id), void *ctx,
                        struct ms_error *err);

/* imap_fetch_identity, with the server's id of each message's content in
 * the same FETCH when the server has one (OBJECTID: EMAILID; else
 * X-GM-EXT-1: X-GM-MSGID, given as "gm:<decimal>"); emailid NULL if none. */
int imap_fetch_identity_oid(struct imap_session *s, const uint32_t *uids, size_t n,
                            void (*found)(void *ctx, uint32_t uid, uint64_t size, const char *message_id,
                                          const char *emailid),
                            void *ctx, struct ms_error *err);

/* UID FETCH (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (fields...)]) of uids
 * (sorted) on the selected folder: found(ctx, uid, size, block, len) per
 * message with the header lines the server returned (at most
 * IDENTITY_MAX bytes of them), valid during the call only. */
int imap_fetch_headers(struct imap_session *s, const uint32_t *uids, size_t n, const char *const *fields,
                       size_t nfields,
                       void (*found)(void *ctx, uint32_t uid, uint64_t size, const char *block, size_t len),
                       void *ctx, struct ms_error *err);

/* ---- CONDSTORE / QRESYNC (RFC 7162): cheap resyncs ------------------------
 *
 * The intended use, per folder, with the state of the last run (uidvalidity,
 * uidnext, messages, highestmodseq):
 *   1. imap_enable_qresync() once, right after imap_connect(), before any
 *      SELECT/EXAMINE (ENABLE is not allowed later); or let
 *      imap_status_and_list() send it along with step 2.
 *   2. imap_status() (or the STATUS answers of imap_status_and_list()): if
 *      UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ (non-zero) all equal the
 *      stored values, nothing changed: skip the folder without selecting
 *      it.
 *   3. Otherwise, with QRESYNC enabled and a stored highestmodseq:
 *      imap_select_qresync(); without QRESYNC but with CONDSTORE:
 *      imap_select() + imap_fetch_flags_changedsince() + imap_fetch_uids();
 *      else imap_select() + imap_fetch_flags() (the full listing).
 * A HIGHESTMODSEQ of 0 (no CONDSTORE, or a NOMODSEQ mailbox) means modseqs
 * cannot be used for that folder. */

/* STATUS name (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ if CONDSTORE]),
 * without selecting it (allowed while another folder is selected). The
 * answer is checked to be about `name`: libetpan keeps only the last STATUS
 * response of a command, so an unsolicited STATUS for another folder would
 * otherwise be taken for ours (CVE-2022-4121, a NULL dereference in its
 * STATUS freeing, is patched in Debian's 1.9.4-3.1). NO (e.g. no such
 * folder) is MS_EPARTIAL. */
int imap_status(struct imap_session *s, const char *name, struct remote_status *out, struct ms_error *err);

/* LIST "" "*" (as imap_list) and a STATUS of each of names[0..n) (as
 * imap_status) in one round trip: the STATUS commands in the given order,
 * then the LIST, pipelined (at most 32 in flight). st[i] stays zeroed when
 * names[i] got no answer (e.g. NO: the folder is gone, or a name that needs
 * a literal, which is not sent): not an error, ask imap_status() for it. A
 * LIST failure is reported as by imap_list(). With enable_qresync, ENABLE
 * QRESYNC CONDSTORE goes first in the same round trip where
 * imap_enable_qresync() would send it; imap_qresync_enabled() tells the
 * outcome. */
int imap_status_and_list(struct imap_session *s, bool enable_qresync, const char *const *names, size_t n,
                         struct remote_status *st, struct remote_folder **out, size_t *nout, struct ms_error *err);

/* The server confirmed QRESYNC (imap_enable_qresync, imap_status_and_list). */
bool imap_qresync_enabled(const struct imap_session *s);

/* ENABLE QRESYNC CONDSTORE, once per session, if the server offers ENABLE
 * and QRESYNC, and only before the first SELECT/EXAMINE (later it returns
 * false without asking, unless already enabled). Returns true if the server
 * confirmed QRESYNC. A NO leaves the session usable (false); a broken
 * connection makes the next call fail with MS_ENET. */
bool imap_enable_qresync(struct imap_session *s);

/* EXAMINE (or SELECT if read_write) name (QRESYNC (uidvalidity modseq)), on
 * a session where imap_enable_qresync() returned true (else MS_EUSAGE);
 * uidvalidity and modseq are the stored, non-zero values (else MS_EUSAGE).
 * Fills *out like imap_select.
 *
 * When the server's UIDVALIDITY equals uidvalidity and its HIGHESTMODSEQ is
 * non-zero and >= modseq, the answer is incremental:
 *   *changed: the messages whose flags changed since modseq or that are new
 *     (uid, flags, keywords, size; internaldate 0), sorted by uid. Those
 *     below known_uidnext (the UIDNEXT of the last sync) come from the
 *     FETCH reports the SELECT itself sends (RFC 7162 3.2.5.2) and have
 *     size 0 (not asked: the caller knows them, or asks
 *     imap_fetch_flags_uids); newer ones from UID FETCH known_uidnext:*
 *     (UID FLAGS RFC822.SIZE), sent only when UIDNEXT moved: with the
 *     SELECT, in the same write, when expect_uidnext (the UIDNEXT a STATUS
 *     of this session gave; 0 if none) is above known_uidnext, else once
 *     the SELECT's answer shows it. With
 *     known_uidnext 0, when a report of the SELECT lacked UID or FLAGS, or
 *     when HIGHESTMODSEQ moved but the SELECT reported neither a change
 *     nor an expunge: all from UID FETCH 1:* (UID FLAGS RFC822.SIZE)
 *     (CHANGEDSINCE modseq), sizes included;
 *   *vanished: the UIDs expunged since modseq (all VANISHED (EARLIER)
 *     responses of the SELECT, plus any VANISHED arriving during the FETCH),
 *     sorted, unique, never in *changed. It may contain UIDs the client
 *     never knew (RFC 7162 allows it); UIDs >= UIDNEXT are dropped.
 * Otherwise (UIDVALIDITY changed, NOMODSEQ, or the server's HIGHESTMODSEQ
 * went backwards) both lists are empty and the caller must fall back to a
 * full listing (imap_fetch_flags):
 *   full = out->uidvalidity != uidvalidity || out->highestmodseq == 0 ||
 *          out->highestmodseq < modseq;
 * Both lists are malloc'd (free with remote_msgs_free and free). On failure
 * nothing is returned. A server reporting more vanished UIDs than the
 * session holds (imap_set_vanished_max; 2^20 by default, 4 MiB) gives
 * MS_OK with both lists NULL: the caller lists the folder in full. */
int imap_select_qresync(struct imap_session *s, const char *name, bool read_write, uint32_t uidvalidity,
                        uint64_t modseq, uint32_t known_uidnext, uint32_t expect_uidnext, struct remote_box *out,
                        struct remote_msg **changed, size_t *nchanged, uint32_t **vanished, size_t *nvanished,
                        struct ms_error *err);
/* The most vanished UIDs imap_select_qresync holds (0: its default). */
void imap_set_vanished_max(struct imap_session *s, size_t max);
/* imap_select_qresync with a window (0: none): when more than window
 * messages changed, only those from *from = UIDNEXT - window up are in
 * *changed (the rest: imap_fetch_flags_changedsince in windows); *from 0:
 * all of them. The vanished UIDs are all there, whatever the window. */
int imap_select_qresync_window(struct imap_session *s, const char *name, bool read_write, uint32_t uidvalidity,
                               uint64_t modseq, uint32_t known_uidnext, uint32_t expect_uidnext, uint32_t window,
                               struct remote_box *out, struct remote_msg **changed, size_t *nchanged,
                               uint32_t *from, uint32_t **vanished, size_t *nvanished, struct ms_error *err);

/* Several folders known to need step 3 (their STATUS showed a new
 * HIGHESTMODSEQ, not new mail): send "EXAMINE name (QRESYNC (uidvalidity
 * modseq))" for each in one write, leaving the answers unread, so that the
 * server works through them while the caller handles the first ones: one
 * round trip for all instead of one each. A later imap_select_qresync()
 * of such a folder with the same values (read-only, no new mail expected)
 * reads its answer instead of sending; queued answers of folders not
 * asked for by then are read and dropped, and so are all that are left
 * when any other command comes. A command on a folder whose answer was
 * read while later ones were still queued (the server has moved on)
 * EXAMINEs it again first, and fails with MS_EPARTIAL if its UIDVALIDITY
 * changed meanwhile. The last folder may be one with new mail
 * (fetch_from): its listing goes out behind its EXAMINE, and
 * imap_select_qresync() with known_uidnext == fetch_from (and more new
 * mail expected) reads both answers; the folder stays selected for what
 * follows (the bodies). Needs QRESYNC enabled. */
struct imap_examine_req {
    const char *name;
    uint32_t uidvalidity;
    uint64_t modseq;
    uint32_t fetch_from; /* the last one only: 0, or UID FETCH fetch_from:* (UID
                            FLAGS RFC822.SIZE) right behind its EXAMINE, as
                            imap_select_qresync(known_uidnext = fetch_from) sends */
};
int imap_examine_ahead(struct imap_session *s, const struct imap_examine_req *req, size_t n, struct ms_error *err);

/* UID FETCH uids (UID FLAGS RFC822.SIZE) on the selected folder; uids
 * sorted. The messages that came back, sorted by uid (expunged ones are
 * missing). */
int imap_fetch_flags_uids(struct imap_session *s, const uint32_t *uids, size_t n, struct remote_msg **out,
                          size_t *nout, struct ms_error *err);

/* CONDSTORE without QRESYNC, on the selected folder: UID FETCH first:last
 * (UID FLAGS RFC822.SIZE) (CHANGEDSINCE modseq); last == 0 means '*'. The
 * messages whose flags changed since modseq or that are new, sorted by uid,
 * as imap_fetch_flags (modseq must be non-zero, else MS_EUSAGE). Expunges
 * are not reported: compare imap_fetch_uids() with the known UIDs. */
int imap_fetch_flags_changedsince(struct imap_session *s, uint32_t first, uint32_t last, uint64_t modseq,
                                  struct remote_msg **out, size_t *n, struct ms_error *err);
/* The changes since modseq of the selected folder whose UIDNEXT is
 * uidnext: UID FETCH 1:* as above, but at most window of them (0: all):
 * when more come (or at once with top_only), only those of the top
 * window of UIDs, *from = uidnext - window up, are listed; the rest is
 * for the caller to ask for in windows (imap_fetch_flags_changedsince).
 * *from 0: every change is in *out. */
int imap_fetch_changes_windowed(struct imap_session *s, uint64_t modseq, uint32_t window, uint32_t uidnext,
                                bool top_only, struct remote_msg **out, size_t *n, uint32_t *from,
                                struct ms_error *err);

/* All UIDs of the selected folder, sorted, unique (malloc'd, never NULL on
 * MS_OK; free with free()): to detect expunges when the server has
 * CONDSTORE but not QRESYNC. Sent as UID SEARCH UID a:b in UID ranges sized
 * to hold ~20000 messages each (bounded memory; UIDs so expunges between the
 * commands cannot shift anything). Only complete answers count: on any
 * failure nothing is returned. */
int imap_fetch_uids(struct imap_session *s, uint32_t **out, size_t *n, struct ms_error *err);

/* ---- changes to the server (push) ---------------------------------------
 * On the selected folder (SELECT, read-write). uids sorted ascending. */

/* UID STORE uids +FLAGS.SILENT (flags) (add) or -FLAGS.SILENT (flags), in
 * commands of at most ~7 KB of UID set each. Only the FLAG_* bits are
 * sent; nothing is sent for an empty set. */
int imap_store_flags(struct imap_session *s, const uint32_t *uids, size_t n, unsigned flags, bool add,
                     struct ms_error *err);

/* UID EXPUNGE uids (UIDPLUS, RFC 4315): only these, never other messages
 * someone else flagged \Deleted. MS_EUSAGE without UIDPLUS. */
int imap_uid_expunge(struct imap_session *s, const uint32_t *uids, size_t n, struct ms_error *err);

/* UID COPY uids to dest (raw name). With copy_uids (n entries, zeroed by
 * the caller), the server's COPYUID answers (UIDPLUS) fill copy_uids[i]
 * with the UID of uids[i]'s copy in dest, and *dest_uidvalidity (if not
 * NULL) with dest's UIDVALIDITY; entries no answer named stay 0 (and
 * *dest_uidvalidity is 0 when none came). */
int imap_copy(struct imap_session *s, const uint32_t *uids, size_t n, const char *dest, uint32_t *copy_uids,
              uint32_t *dest_uidvalidity, struct ms_error *err);

/* UID MOVE uids to dest (raw name) with MOVE (RFC 6851), else UID COPY +
 * \Deleted + UID EXPUNGE (needs UIDPLUS; MS_EUSAGE without). */
int imap_move(struct imap_session *s, const uint32_t *uids, size_t n, const char *dest, struct ms_error *err);

/* UID SEARCH BEFORE <date of `before`, UTC> on the selected folder: the
 * UIDs whose INTERNALDATE is before that day, sorted (malloc'd, never NULL
 * on MS_OK). */
int imap_search_before(struct imap_session *s, time_t before, uint32_t **out, size_t *n, struct ms_error *err);

/* CREATE name (raw, modified UTF-7). NO (exists, not allowed) is
 * MS_EPARTIAL. */
int imap_create(struct imap_session *s, const char *name, struct ms_error *err);

/* APPEND name (flags) "date" {size}, the body streamed from fd (its
 * current offset to its end) with LF sent as CRLF, in bounded memory
 * (libetpan's APPEND wants the whole message in one buffer). size is the
 * CRLF size announced: a file that turns out longer or shorter ends the
 * session (MS_ENET; the server drops the incomplete APPEND). With UIDPLUS
 * the server's APPENDUID fills *uidvalidity and *uid; without, both are
 * 0. date 0: none (the server takes now). NO is MS_EPARTIAL. */
int imap_append_fd(struct imap_session *s, const char *name, unsigned flags, time_t date, int fd, uint64_t size,
                   uint32_t *uidvalidity, uint32_t *uid, struct ms_error *err);

/* ---- NOTIFY (RFC 5465), for watch -----------------------------------------
 * Ask the server to report, to this session, new, expunged and re-flagged
 * messages in every folder of the personal namespace, and folders created,
 * deleted or renamed (with CONDSTORE enabled first where offered, since a
 * flag change in a folder not selected is reported as its HIGHESTMODSEQ).
 * The reports come while the session IDLEs (imap_idle), with no folder
 * selected. MS_EPARTIAL when the server lacks NOTIFY or refuses it. */
int imap_notify_all(struct imap_session *s, struct ms_error *err);

/* ---- IDLE (RFC 2177), for watch ------------------------------------------
 * IDLE (on the selected folder, or after imap_notify_all() on every
 * folder) until the server reports anything (*changed true), timeout_ms
 * passes, wake_fd (-1: none) becomes readable, or *stop (may be NULL)
 * becomes non-zero (looked at every second and after a signal), then DONE
 * and the tagged answer. MS_EUSAGE without the IDLE capability. */
int imap_idle(struct imap_session *s, int timeout_ms, volatile sig_atomic_t *stop, int wake_fd, bool *changed,
              struct ms_error *err);

#endif
