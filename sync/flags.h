/* SPDX-License-Identifier: MIT */
/*
 * flags.h: message flags as a bit set, and their Maildir info letters.
 *
 * IMAP system flags and $Forwarded map to the letters of the contract:
 * \Draft D, \Flagged F, $Forwarded P, \Answered R, \Seen S, \Deleted T.
 * Other keywords are carried separately as a space-separated string.
 */
#ifndef MAILSYNC_FLAGS_H
#define MAILSYNC_FLAGS_H

#include <stdbool.h>
#include <stddef.h>

enum {
    FLAG_DRAFT = 1u << 0,     /* D */
    FLAG_FLAGGED = 1u << 1,   /* F */
    FLAG_FORWARDED = 1u << 2, /* P  ($Forwarded) */
    FLAG_ANSWERED = 1u << 3,  /* R */
    FLAG_SEEN = 1u << 4,      /* S */
    FLAG_DELETED = 1u << 5,   /* T */
};
#define FLAG_ALL 0x3fu

/* Write the Maildir letters of flags, sorted, NUL-terminated, into out
 * (at least 8 bytes). Returns out. */
char *flags_to_letters(unsigned flags, char out[8]);

/* Parse Maildir info letters (the part after ":2,"). Known letters set bits;
 * unknown letters are copied, sorted and without duplicates, to extra
 * (at least extra_len bytes; may be NULL). */
unsigned flags_from_letters(const char *letters, char *extra, size_t extra_len);

/* The flag bit of an IMAP flag name ("\\Seen", "$Forwarded"), case-
 * insensitive; 0 if it is not one of ours. */
unsigned flags_from_imap_name(const char *name);

/* The IMAP name of a single flag bit, or NULL. */
const char *flags_imap_name(unsigned flag);

#endif
