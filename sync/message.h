/*
 * message.h: the little we read inside a message: one header's value, for
 * identity (Message-ID), from bytes that are hostile (no header at all,
 * NUL, bare LF or CR, 8-bit, huge folded lines).
 */
#ifndef MAILSYNC_MESSAGE_H
#define MAILSYNC_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

/* The unfolded, trimmed value of the first header called name (case-
 * insensitive) in the header block at the start of buf (up to the first
 * empty line or len). Lines may end in CRLF or LF. Values over 998 bytes
 * or containing NUL are ignored. Returns a malloc'd string or NULL. */
char *message_header(const char *buf, size_t len, const char *name);

/* Identity of a local message file (LF line ends): its Message-ID (or
 * NULL) and the size it has on the server with CRLF line ends. Reads the
 * file from fd's current offset to its end. Returns 0, or -1 on a read
 * error (errno set). */
int message_identity_fd(int fd, char **message_id, uint64_t *crlf_size);

#endif
