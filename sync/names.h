/* SPDX-License-Identifier: MIT */
/*
 * names.h: folder names. Modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8, the
 * mapping of a server folder name to a safe relative path below the Maildir
 * root, and the `folders =` pattern filter.
 *
 * Server names are hostile input (see shared/docs/reliability.md §1): the
 * path mapping checks every component *after* decoding and layout mapping.
 */
#ifndef MAILSYNC_NAMES_H
#define MAILSYNC_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync/account.h"

/* Decode modified UTF-7 to UTF-8. Returns a malloc'd string, or NULL if the
 * input is not valid modified UTF-7 (bad base64, '&' unterminated, encoded
 * printable ASCII, invalid UTF-16, ...). */
char *names_mutf7_decode(const char *mutf7);

/* Encode UTF-8 as modified UTF-7. Returns a malloc'd string, or NULL if the
 * input is not valid UTF-8. */
/* Read one strictly valid UTF-8 sequence (no overlongs, no surrogates, at
 * most U+10FFFF) from s[0..len): its length (1 for ASCII) with *cp set,
 * or 0 if the bytes there are not valid UTF-8 (or len is 0). */
size_t names_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

char *names_mutf7_encode(const char *utf8);

/* The UTF-8 display name of a raw server name: decoded, or a copy of the
 * raw name when it does not decode. Never NULL (aborts on OOM). */
char *names_display(const char *raw);

/* Map a raw (modified UTF-7) server folder name with hierarchy delimiter
 * delim ('\0' = flat) to a relative path below the Maildir root.
 *
 * verbatim:  "INBOX" -> "INBOX", "Sent/2024" -> "Sent/2024"
 * maildir++: "INBOX" -> "" (the root itself), "Sent/2024" -> ".Sent.2024"
 * dotted:    "INBOX" -> "INBOX", "Sent/2024" -> "Sent.2024" (OfflineIMAP's
 *            default); "a.b" (a '.' inside a component) -> "a%2Eb"
 *
 * Returns a malloc'd path, or NULL with *why set to a static reason when
 * the folder must be skipped. The path never contains "." or ".." or empty
 * components, NUL or control characters, never starts with '/', and no
 * component collides with a Maildir's cur/new/tmp; distinct server names
 * map to distinct paths (characters that cannot appear are %XX-escaped,
 * and '%' itself is escaped, so the mapping is one-to-one). */
char *names_folder_path(const char *raw, char delim, enum folder_layout layout, const char **why);

/* The inverse: the raw (modified UTF-7) server name, with delimiter delim,
 * that names_folder_path maps to path, for a folder that exists only
 * locally. Returns a malloc'd name, or NULL when no server name maps to
 * exactly this path (a nested path on a flat server, not UTF-8, escapes
 * names_folder_path would not write, ...). */
char *names_folder_raw(const char *path, char delim, enum folder_layout layout);

/* The path tools that keep the raw name write a server folder to (mbsync
 * 1.4: the modified UTF-7 name as it is, "Th&AbA- m&HuU-c"; components
 * split at the delimiter and joined by '/', or by '.' after a leading '.'
 * in maildir++; OfflineIMAP's default, dotted: joined by '.',
 * "Projects.Th&AbA-"), when it differs from names_folder_path's. NULL when it
 * does not (no '&' in the name, INBOX), or is no safe path. malloc'd. */
char *names_raw_path(const char *raw, char delim, enum folder_layout layout);

/* Special-use roles of a server folder (IMAP SPECIAL-USE, RFC 6154):
 * bits of struct remote_folder.roles. */
enum {
    FOLDER_ROLE_ALL = 1u << 0,     /* \All: every message (Gmail's All Mail) */
    FOLDER_ROLE_ARCHIVE = 1u << 1, /* \Archive */
    FOLDER_ROLE_DRAFTS = 1u << 2,  /* \Drafts */
    FOLDER_ROLE_FLAGGED = 1u << 3, /* \Flagged: a virtual folder of flagged mail */
    FOLDER_ROLE_JUNK = 1u << 4,    /* \Junk */
    FOLDER_ROLE_SENT = 1u << 5,    /* \Sent */
    FOLDER_ROLE_TRASH = 1u << 6,   /* \Trash */
};

/* The FOLDER_ROLE_* bit of a role named as IMAP writes it ("\Trash"; any
 * case; the backslash may be left out when bare is true), or 0. */
unsigned names_role_bit(const char *name, bool bare);

/* The roles as IMAP writes them, space separated ("\Sent \Trash"), into
 * buf (always terminated); "" for none. Returns buf. */
const char *names_roles_text(unsigned roles, char *buf, size_t len);

/* Whether a folder is selected by the `folders =` patterns. name is the
 * UTF-8 display name with the server's delimiter replaced by '/', roles
 * its FOLDER_ROLE_* bits. Patterns are tried in order and the last one
 * that matches decides; a leading '!' excludes. '*' matches any run of
 * characters, '%' any run without '/', '?' one character. A pattern that
 * is a role name ("\Junk", any case, see names_role_bit) matches the
 * folders with that role, not a name. No pattern matching -> not
 * selected. */
bool names_folder_selected(const char *name, unsigned roles, char *const *patterns, size_t npatterns);

#endif
