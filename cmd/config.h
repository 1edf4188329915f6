/* SPDX-License-Identifier: MIT */
/*
 * config.h: the INI config file (shared/docs/interface.md, "Config file").
 *
 * config_load() reads the whole file into struct account records (see
 * sync/account.h) with `~` and `$VAR` expanded and defaults applied, or
 * fails with MS_EUSAGE and a message "FILE:LINE: KEY: what is wrong" that a
 * user can act on. Nothing here knows IMAP or SQL.
 *
 * File syntax:
 *   [account NAME]        NAME: letters, digits, '-', '_', '.'; not starting
 *                         with '.' or '-'
 *   key = value           one per line; unknown or repeated keys are errors
 *   # comment             a line starting with '#', or '#' preceded by
 *                         whitespace after a value ("port = 993  # note");
 *                         a '#' inside a value ("a#b") is kept
 * Values are trimmed. `~` at the start of a value is $HOME; $VAR and ${VAR}
 * are expanded from the environment (an unset variable is an error; a '$'
 * not followed by a name is kept). Two keys are taken literally, without
 * expansion: `password` (a secret may contain '$') and `folders` (server
 * folder names may contain '$' and '~'). `folders` is split on whitespace;
 * a pattern with spaces is written in double quotes: folders = * "!Thư rác".
 */
#ifndef MAILSYNC_CONFIG_H
#define MAILSYNC_CONFIG_H

#include <stddef.h>

#include "sync/account.h"
#include "sync/error.h"

/* One error of a config file, in parts (errors[i] is
 * "FILE:LINE: KEY: message"). */
struct config_error {
    int line;         /* 1-based */
    char *key;        /* the key as typed; NULL when the error is about the
                       * line or the section header (the text names "line",
                       * "section" or "account" there) */
    char *message;    /* what is wrong */
    char *suggestion; /* the "did you mean" fix (a key, or "[account NAME]"),
                       * or NULL */
};

struct config {
    struct account *accounts; /* in file order */
    size_t naccounts;
    char *path;               /* the file read */
    /* After a failed load: every "FILE:LINE: KEY: what is wrong" in line
     * order (at most 20 kept; nerrors_total counts them all). Empty when
     * the file could not be read at all (then only err says why). */
    char **errors;
    struct config_error *error_info; /* the same errors, in parts (for --json) */
    size_t nerrors, nerrors_total;
};

/* Load path into *out (which the caller frees with config_free, also after
 * a failure: *out then holds only the errors). Every line is read even
 * after an error, so all the file's errors are found at once; any error
 * fails the whole load. Returns MS_OK, or MS_EUSAGE with err->msg the first
 * error found (as a stop there would have given it), like "FILE:LINE: KEY:
 * what is wrong" or "FILE: cannot read: ...".
 * An unknown key gets "did you mean KEY?" when one is close.
 * A file that belongs to another user (not root) or is writable by group
 * or others is refused, and so is one that sets `password` and is readable
 * by group or others. A file without any account is an error. */
int config_load(const char *path, struct config *out, struct ms_error *err);

void config_free(struct config *c);

/* $MAILSYNC_CONFIG, else $XDG_CONFIG_HOME/mailsync/config, else
 * ~/.config/mailsync/config. malloc'd; NULL only if there is no home
 * directory to be found. */
char *config_default_path(void);

/* Refuse (MS_EUSAGE, saying what to run) a state DB whose directory
 * belongs to another user (not root) or is writable by group or others;
 * when the directory does not exist yet, the nearest existing ancestor
 * (where the run will create it) is held to the same rule, except that a
 * sticky shared directory such as /tmp is fine. Other stat() failures are
 * left to the run. Called before anything is touched. */
int config_check_state_dir(const struct account *a, struct ms_error *err);

/* The candidate closest to word (ignoring case) if it is near enough to be
 * a typo of it (one edit in a word of up to 4 characters, two up to 8,
 * else three; a swap of neighbours is one edit), else NULL. For "did you
 * mean": keys, accounts, commands. */
const char *config_suggest(const char *word, const char *const *candidates, size_t n);

/* The account named name, or NULL. */
struct account *config_find(struct config *c, const char *name);

/* The account's password: `password`, or the first line of the stdout of
 * `password_command` (run with /bin/sh -c, stdin /dev/null, stderr passed
 * through, or stderr_fd when it is >= 0: the terminal under -j). A command that fails, exits non-zero or prints an empty first
 * line is MS_EUSAGE with a message that says which account and what
 * happened (never the output). *out is malloc'd; the caller wipes it with
 * explicit_bzero() and frees it. The password is never logged. */
int config_password(const struct account *a, int stderr_fd, char **out, struct ms_error *err);

/* The OAuth2 access token: the first line of `oauth_token_command`'s
 * stdout, with the same rules and ownership as config_password(). */
int config_oauth_token(const struct account *a, int stderr_fd, char **out, struct ms_error *err);

#endif
