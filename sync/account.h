/* SPDX-License-Identifier: MIT */
/*
 * account.h: one account of the config file, as the engine sees it.
 *
 * cmd/config.c fills these from the INI file (with ~ and $VAR expanded and
 * defaults applied); sync/ only reads them. All strings are owned by the
 * struct and freed by account_free().
 */
#ifndef MAILSYNC_ACCOUNT_H
#define MAILSYNC_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum account_type { ACCOUNT_IMAP, ACCOUNT_POP3 };
enum tls_mode { TLS_IMPLICIT, TLS_STARTTLS, TLS_NONE };
enum auth_mech { AUTH_AUTO, AUTH_LOGIN, AUTH_PLAIN, AUTH_XOAUTH2, AUTH_OAUTHBEARER };
/* How server folder names become directories below the Maildir root (see
 * names_folder_path): verbatim nests them (Sent/2024), maildir++ puts them
 * at the top with a leading dot (.Sent.2024, INBOX is the root), dotted is
 * OfflineIMAP's default (sep = .): Sent.2024 and INBOX at the top level. */
enum folder_layout { LAYOUT_VERBATIM, LAYOUT_MAILDIRPP, LAYOUT_DOTTED };
enum sync_mode { MODE_MIRROR, MODE_BACKUP };

struct account {
    char *name;                /* the section name: [account NAME] */
    char *config_file;         /* where it was defined, for messages */
    int config_line;

    enum account_type type;    /* default ACCOUNT_IMAP */
    char *host;                /* required */
    int port;                  /* default 993/143 (imap), 995/110 (pop3) */
    enum tls_mode tls;         /* default TLS_IMPLICIT */
    bool allow_plaintext;      /* default false */
    char *user;                /* required */
    char *password;            /* optional (refused if file is group/other readable) */
    char *password_command;    /* optional: first line of its stdout */
    enum auth_mech auth;       /* default AUTH_AUTO */
    char *oauth_token_command; /* optional */
    char *ca_file;             /* optional: NULL = system store */
    char *fingerprint;         /* optional: "sha256:AB:CD:..." as written */

    char *maildir;             /* required, expanded */
    char *state_path;          /* default $XDG_STATE_HOME/mailsync/NAME.sqlite */
    char **folders;            /* patterns, in order; default {"*"} */
    size_t nfolders;
    enum folder_layout layout; /* default LAYOUT_VERBATIM */
    enum sync_mode mode;       /* default MODE_MIRROR */
    bool expunge;              /* default true */
    char *trash;               /* optional */
    int server_retention_days; /* 0 = off */
    uint64_t max_size;         /* bytes; 0 = no limit. Accepts K/M/G suffixes */
    bool placeholders;         /* imap: over max_size, a placeholder (no: skipped); default true */
    int connections;           /* default 1 */
    bool leave_on_server;      /* pop3; default true */
    int max_delete;            /* percent, default 50 */
    int timeout;               /* seconds of no progress before giving up; default 60 */
    /* Run by the program after each run of the account (cmd/hooks.c). */
    char *post_sync_command;   /* optional: after every run (watch passes too) */
    char *new_mail_command;    /* optional: after a run that brought new mail */
    int hook_timeout;          /* seconds a hook may take; default 60 */
    bool compress;             /* imap: COMPRESS=DEFLATE when offered; default true */
    bool early_login;          /* imap: log in before the greeting when the last run's
                                * capabilities allow it (imap_session.c); default true */
};

void account_free(struct account *a);

struct ms_error;
/* Before connecting: host and user set, a password (or token), and
 * tls = none only for a loopback host or with allow_plaintext. MS_OK or
 * MS_EUSAGE with err set. */
int account_check(const struct account *acct, const char *password, struct ms_error *err);

#endif
