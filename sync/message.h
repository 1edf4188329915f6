/* SPDX-License-Identifier: MIT */
/*
 * message.h: the little we read inside a message: one header's value, for
 * identity (Message-ID), from bytes that are hostile (no header at all,
 * NUL, bare LF or CR, 8-bit, huge folded lines).
 */
#ifndef MAILSYNC_MESSAGE_H
#define MAILSYNC_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The value of the first header called name (case-insensitive, the name
 * right before its colon) in the header block at the start of buf (up to
 * the first empty line, or len). The one header parser: the Maildir side
 * (message_identity_fd), the download (deliver.c) and the IMAP side's
 * Message-ID FETCH all read identity through it, so a message has the
 * same Message-ID whichever side it is read on (an upload without
 * APPENDUID is found on the server by size and Message-ID).
 * The rule:
 *  - lines end in LF or CRLF (both read alike); a line that starts with a
 *    space or tab continues the header (a fold);
 *  - each line of the value loses its leading and trailing spaces and
 *    tabs; the non-empty ones are joined with one space (a fold, whatever
 *    its blanks, is one space); tabs inside a line stay tabs;
 *  - no angle brackets are needed or removed: the value as it stands;
 *  - a value that is empty, holds a NUL or is longer than 998 bytes
 *    (RFC 5322's line limit) is no value: NULL. The first header of
 *    that name decides; a later duplicate is not looked at.
 * Returns a malloc'd string, or NULL (also on out of memory). */
char *message_header(const char *buf, size_t len, const char *name);

/* Identity of a local message file (LF line ends): its Message-ID (or
 * NULL) and the size it has on the server with CRLF line ends. Reads the
 * file from fd's current offset to its end. Returns 0, or -1 on a read
 * error (errno set). */
int message_identity_fd(int fd, char **message_id, uint64_t *crlf_size);

/* Header fields other mail tools add to the files they store, so that a
 * local file is not byte for byte the server's message (the one place
 * that knows them; see message.c for where each comes from):
 *  - anywhere in the header: mbsync's "X-TUID:" (it replaces the first
 *    one or adds one at the end of the header), OfflineIMAP's
 *    "X-OfflineIMAP:" (added to what it uploads without UIDPLUS);
 *  - at the top only: the leading run of "Return-Path:", "Delivered-To:",
 *    "Received:" and "X-Original-To:" fields, which getmail (Return-Path,
 *    Delivered-To, Received), fetchmail (Received) and delivery agents
 *    prepend. Such fields may also be the server's own (a server's
 *    delivery writes them too), so they make the size uncertain, not
 *    wrong: see struct message_identity.
 * A field is its line and its continuation lines. */

/* What identifies a local file for pairing it with a server message
 * without downloading it (sync/engine/rematch.c). */
#define MESSAGE_ALT_SIZES 8
struct message_identity {
    char *message_id; /* message_header() values; NULL: none */
    char *date;
    char *from;
    uint64_t size; /* CRLF size of the file as it is */
    /* The sizes the server may report for it had tools added fields:
     * CRLF size without the X-TUID / X-OfflineIMAP fields and without the
     * first j fields of the leading run, j = 0, 1, ... (nalt of them;
     * none equal to size). */
    uint64_t alt[MESSAGE_ALT_SIZES];
    unsigned nalt;
    bool placeholder; /* an mbsync placeholder (message_is_mbsync_placeholder) */
    /* A placeholder's MESSAGE_PLACEHOLDER_FIELD: the size of the message it
     * stands for (message_placeholder_size); 0: none (mbsync's, or not a
     * placeholder). */
    uint64_t placeholder_size;
    /* message_has_placeholder_marks: a placeholder, or one edited while
     * it still has a mark (placeholder_size is then its field's, if any) */
    bool placeholder_marks;
};

/* Read the identity of the file at fd (from its offset to its end; LF or
 * CRLF line ends). Returns 0, or -1 on a read error (errno set); free
 * with message_identity_free either way. */
int message_identity_read(int fd, struct message_identity *id);
void message_identity_free(struct message_identity *id);

/* Is buf[0..len) (the start of a file, LF or CRLF line ends) the
 * placeholder mbsync (isync 1.4 and later) stores instead of a message
 * over its MaxSize? Such a file is the message's header, with an X-TUID
 * field and "[placeholder] " before the Subject's value (or a Subject
 * "[placeholder] (No Subject)" added), and a body that starts "Having a
 * size of <n>, this message is over the MaxSize limit." (isync's
 * sync_msg_cvt.c, copy_msg_convert; 1.4: sync.c). It holds the message's
 * Message-ID, Date and From but not the message: never to be paired with
 * the server's message or uploaded in its place. All three marks must be
 * there. */
bool message_is_mbsync_placeholder(const char *buf, size_t len);

/* The field mailsync's own placeholders carry (its value: the full
 * message's size), where mbsync's have X-TUID; message_is_mbsync_placeholder
 * takes either, so a placeholder of either tool is never paired with the
 * server's message nor uploaded. */
#define MESSAGE_PLACEHOLDER_FIELD "X-Mailsync-Placeholder"

/* The size of the message a mailsync placeholder stands for: the value of
 * its MESSAGE_PLACEHOLDER_FIELD in the header of buf[0..len) (digits only,
 * above 0), or 0 if there is none. Only meaningful for a file that
 * message_is_mbsync_placeholder takes for a placeholder. */
uint64_t message_placeholder_size(const char *buf, size_t len);

/* Does buf[0..len) (the start of a file) still carry a mark of a
 * mailsync placeholder, edited or not: a MESSAGE_PLACEHOLDER_FIELD in its
 * header (no mail carries it: a placeholder's header drops the field it
 * had), or the second line of the placeholder's note ("mailsync stored its
 * header only (max_size = "). What message_is_mbsync_placeholder takes is
 * taken too. Such a file is never uploaded as a message, and a gone
 * placeholder's message is not deleted on the server for it (a
 * "[placeholder] " Subject alone is not taken: anyone may write one). */
bool message_has_placeholder_marks(const char *buf, size_t len);

/* A placeholder (max_size, placeholders = yes) for a message of size
 * bytes whose header block (as a server sends it, CRLF; possibly cut
 * short: only whole fields are kept) is header[0..len): the same header
 * with "[placeholder] " before the Subject's value (a Subject
 * "[placeholder] (No Subject)" added if it has none), any X-TUID and
 * MESSAGE_PLACEHOLDER_FIELD it had dropped and MESSAGE_PLACEHOLDER_FIELD:
 * <size> added, then a note in mbsync's words saying the size and how to
 * get the message (`mailsync fetch`). CRLF line ends. malloc'd, its
 * length in *out_len; NULL when out of memory. */
char *message_placeholder(const char *header, size_t len, uint64_t size, uint64_t max_size, size_t *out_len);

/* SHA-256 of a message as a Maildir stores it, fed chunk by chunk as it
 * streams from a server: a CR right before LF is dropped, the rule of
 * maildir_tmp_write(), and the fields other tools add (above: every
 * X-TUID / X-OfflineIMAP field and the whole leading run) are left out,
 * so a download and a local file that differ only by those have the same
 * digest and length (message_hash_file). Used to recognise a download as
 * a local file the state does not know (a lost or stale state DB). */
struct message_hash;
/* NULL if OpenSSL cannot give a digest context. Started (ready for add). */
struct message_hash *message_hash_new(void);
/* Start over for the next message. */
void message_hash_start(struct message_hash *h);
void message_hash_add(struct message_hash *h, const char *data, size_t len);
/* The digest of what was added since the start, and *len the bytes it
 * covers (after the rules above); false on failure. */
bool message_hash_end(struct message_hash *h, unsigned char out[32], uint64_t *len);
/* The same digest and length of the file at fd (from its offset), through
 * h (started over): its bytes as stored (the CR rule was applied when it
 * was written: a CR before LF in the file is the message's own), the tool
 * fields left out. 0, or -1 on a read or digest error. */
int message_hash_file(struct message_hash *h, int fd, unsigned char out[32], uint64_t *len);
void message_hash_free(struct message_hash *h);
/* SHA-256 of the bytes fd holds from its offset to its end, as they are (a
 * stored file). 0, or -1 on a read or digest error. */
int message_hash_fd(int fd, unsigned char out[32]);

#endif
