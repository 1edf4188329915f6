/* SPDX-License-Identifier: MIT */
/*
 * import.h: `mailsync import`: an ~/.mbsyncrc or ~/.offlineimaprc turned
 * into a mailsync config (shared/docs/interface.md, "import").
 *
 * import_translate() is pure: text in, config text out, no I/O, no
 * environment (the caller passes $HOME in the options). It reads mbsync's rc syntax (sections opened by
 * IMAPAccount / IMAPStore / MaildirStore / Channel / Group and ended by a
 * blank line, "..." quoting, backslash escapes, '#' comments) or
 * OfflineIMAP's INI ([general] accounts =, [Account X], [Repository X],
 * continuation lines, %% and %(key)s), and writes one [account NAME]
 * per mbsync Channel (Channels that join the same IMAP store to the same
 * Maildir store become one account) or OfflineIMAP Account. Every setting
 * it cannot carry over becomes a "# not carried over: ..." comment saying
 * what and why; nothing is dropped silently.
 *
 * Secrets: a literal password (mbsync Pass, OfflineIMAP remotepass) is
 * written as `password = ...` only when the caller asks for it (the
 * --write file, created 0600); otherwise a comment stands in its place.
 * No error message repeats a value from the rc file.
 */
#ifndef MAILSYNC_IMPORT_H
#define MAILSYNC_IMPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "sync/error.h"

enum import_format { IMPORT_MBSYNC, IMPORT_OFFLINEIMAP };

struct import_options {
    enum import_format format;
    bool with_secrets; /* write a literal password from the rc into the output */
    const char *home;  /* $HOME, to see that ~/Mail and /home/me/Mail are one path; NULL: unknown */
};

/* Which format text looks like: OfflineIMAP when its first non-comment
 * line is an INI section header ("[general]", "[Account x]", ...), else
 * mbsync. */
enum import_format import_guess_format(const char *text, size_t len);

/* Translate the rc file text (len bytes; path names it in messages and in
 * the output's header) into a mailsync config. On success *out is a
 * malloc'd NUL-terminated text (it may hold a password when
 * opt->with_secrets: the caller wipes it with explicit_bzero before
 * freeing) and MS_OK is returned. On a syntax error, or when the file
 * defines nothing that can become an account, MS_EUSAGE with err->msg
 * "PATH:LINE: what is wrong" (or "PATH: ...") and *out NULL. */
int import_translate(const char *path, const char *text, size_t len, const struct import_options *opt, char **out,
                     struct ms_error *err);

/* The rc to read when none is named: ~/.mbsyncrc if it exists, else
 * ~/.offlineimaprc (whether it exists or not; the read says so). home is
 * $HOME. malloc'd. *format is set to the matching format. */
char *import_default_rc(const char *home, enum import_format *format);

/* Read an rc file (a regular file of at most 1 MiB). MS_OK with *text
 * malloc'd (NUL-terminated, *len bytes) or MS_EUSAGE "PATH: cannot read:
 * ...". The caller wipes and frees the text (it may hold a password). */
int import_read_rc(const char *path, char **text, size_t *len, struct ms_error *err);

/* Create path with mode 0600 (and its missing parent directories with
 * 0700) and write text to it, fsync'd. An existing file is never
 * touched: MS_EUSAGE "PATH: exists; ...". Other failures: MS_ELOCAL, and
 * a half-written file is removed. */
int import_write_config(const char *path, const char *text, struct ms_error *err);

#endif
