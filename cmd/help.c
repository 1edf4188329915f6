/* SPDX-License-Identifier: MIT */
/*
 * help.c: each command's own help (help.h). The texts are printed as they
 * stand: a '%' in them is a '%' on the screen (folder patterns use it).
 * What they say of the options must agree with main.c's parser and with
 * mailsync(1); the man page has the whole story, these the short one.
 */
#include "cmd/help.h"

#include <stddef.h>
#include <string.h>

#define COMMON_OPTIONS                                                          \
    "  -c, --config FILE      config file (default: $MAILSYNC_CONFIG, else\n"   \
    "                         ~/.config/mailsync/config; see mailsync.conf(5))\n" \
    "  -v, --verbose          more detail; -vv shows the server conversation\n" \
    "                         (passwords masked)\n"                             \
    "  -q, --quiet            only errors\n"                                    \
    "      --json             one JSON object on stdout (see mailsync(1))\n"

#define RUN_OPTIONS                                                             \
    COMMON_OPTIONS                                                              \
    "      --progress=WHEN    auto (on a terminal), always, never\n"            \
    "      --dry-run          print what would change, change nothing\n"        \
    "      --folder PATTERN   only the folders matching PATTERN (repeatable):\n" \
    "                         * any text, % any text but '/', ? one char;\n"    \
    "                         \\Junk, \\Sent, ...: the folder the server marks\n" \
    "                         so. A PATTERN that matches no folder is an error\n" \
    "      --force            override the mass-deletion guard\n"          \
    "  -j, --jobs N           up to N accounts at once, each account's output\n" \
    "                         printed whole when it ends (default 1)\n"

#define ACCOUNTS_NOTE "No ACCOUNT means every account in the config file.\n"

static const char pull_help[] =
    "Usage: mailsync pull [ACCOUNT...] [OPTIONS]\n"
    "\n"
    "Server -> local: download new messages, apply the server's flag changes\n"
    "and deletions to the Maildir, and create the folders that are new on the\n"
    "server. Local changes not pushed yet are kept. A run stopped by Ctrl-C\n"
    "keeps what it did; the next one brings the rest.\n"
    ACCOUNTS_NOTE
    "\n"
    "Options:\n" RUN_OPTIONS
    "\n"
    "Examples:\n"
    "  mailsync pull --dry-run personal     what a pull of 'personal' would do\n"
    "  mailsync pull --folder INBOX --folder '\\Sent'\n";

static const char push_help[] =
    "Usage: mailsync push [ACCOUNT...] [OPTIONS]\n"
    "\n"
    "Local -> server: upload the messages that are new in the Maildir, store\n"
    "local flag changes, remove on the server the messages deleted locally\n"
    "(moved to `trash` if set), and create on the server the local folders\n"
    "that `folders` selects. A POP3 account has nothing to push.\n"
    ACCOUNTS_NOTE
    "\n"
    "Options:\n" RUN_OPTIONS
    "\n"
    "Examples:\n"
    "  mailsync push --dry-run              what would be uploaded or removed\n"
    "  mailsync push work --folder 'Projects/*'\n";

static const char sync_help[] =
    "Usage: mailsync sync [ACCOUNT...] [OPTIONS]\n"
    "\n"
    "Push, then pull, folder by folder, in one connection: a full two-way\n"
    "sync. What a pull and a push each do: 'mailsync help pull', 'mailsync\n"
    "help push'.\n"
    ACCOUNTS_NOTE
    "\n"
    "Options:\n" RUN_OPTIONS
    "\n"
    "Examples:\n"
    "  mailsync sync                        every account\n"
    "  mailsync sync personal --json        one account, a JSON summary\n";

static const char fetch_help[] =
    "Usage: mailsync fetch [ACCOUNT...] [--all | FILE...] [OPTIONS]\n"
    "\n"
    "Replace placeholders (messages over max_size, stored as their header and\n"
    "a note) by their full message: the placeholder files named (paths, or\n"
    "names of files in the Maildir), or with --all every placeholder of the\n"
    "selected folders. Each keeps its name and flags; nothing else is synced.\n"
    "A word that names an account of the config is an account, any other a\n"
    "file. A pull or sync also fetches the placeholders flagged locally.\n"
    "\n"
    "Options:\n" COMMON_OPTIONS
    "      --all              every placeholder of the selected folders\n"
    "      --folder PATTERN   with --all: only the folders matching PATTERN\n"
    "\n"
    "Examples:\n"
    "  mailsync fetch personal --all --folder INBOX\n"
    "  mailsync fetch ~/Mail/personal/INBOX/cur/1700000000.x1.host:2,S\n";

static const char status_help[] =
    "Usage: mailsync status [ACCOUNT...] [OPTIONS]\n"
    "\n"
    "For each account and folder: message counts, local changes waiting to be\n"
    "pushed, messages kept only locally, the last successful sync and the last\n"
    "error. Reads only the state database and the Maildir: works offline and\n"
    "changes nothing.\n"
    ACCOUNTS_NOTE
    "\n"
    "Options:\n" COMMON_OPTIONS
    "\n"
    "Example:\n"
    "  mailsync status personal\n";

static const char check_help[] =
    "Usage: mailsync check [ACCOUNT...] [OPTIONS]\n"
    "\n"
    "Validate the config, connect, verify TLS, authenticate, list the folders\n"
    "and show the server's capabilities. Changes nothing: the first thing to\n"
    "run after writing a config.\n"
    ACCOUNTS_NOTE
    "\n"
    "Options:\n" COMMON_OPTIONS
    "\n"
    "Example:\n"
    "  mailsync check && mailsync pull --dry-run\n";

static const char folders_help[] =
    "Usage: mailsync folders [ACCOUNT...] [OPTIONS]\n"
    "\n"
    "List the server's folders, the local path each maps to, which ones the\n"
    "account's `folders` patterns (and --folder) leave out, which cannot be\n"
    "synced and why, and the role the server gives a folder (\\Sent, \\Junk,\n"
    "...). Changes nothing: use it to try patterns. IMAP accounts only.\n"
    ACCOUNTS_NOTE
    "\n"
    "Options:\n" COMMON_OPTIONS
    "      --folder PATTERN   mark only the folders matching PATTERN as synced\n"
    "\n"
    "Example:\n"
    "  mailsync folders personal --folder 'Archive/*'\n";

static const char watch_help[] =
    "Usage: mailsync watch ACCOUNT [OPTIONS]\n"
    "\n"
    "Stay connected to one account: a sync, then wait until the server reports\n"
    "a change (NOTIFY: any folder; else IDLE on INBOX), a local change in a\n"
    "synced folder is seen (inotify), or --interval seconds\n"
    "pass, and sync again; until SIGINT or SIGTERM (exit status 0). Lost\n"
    "connections are retried. For systemd: mailsync-watch@ACCOUNT.service.\n"
    "IMAP accounts only.\n"
    "\n"
    "Options:\n" COMMON_OPTIONS
    "      --progress=WHEN    auto (on a terminal), always, never\n"
    "      --folder PATTERN   only the folders matching PATTERN (repeatable)\n"
    "      --force            override the mass-deletion guard\n"
    "      --interval SECONDS a full pass at least this often (default 300)\n"
    "\n"
    "Example:\n"
    "  mailsync watch personal --interval 600\n";

static const char help_help[] =
    "Usage: mailsync help [COMMAND]\n"
    "\n"
    "Without COMMAND: the general help (mailsync --help). With one: that\n"
    "command's help, the same as mailsync COMMAND --help.\n"
    "Commands: pull, push, sync, fetch, status, check, folders, watch, import,\n"
    "help.\n"
    "\n"
    "Example:\n"
    "  mailsync help sync\n";

const char *help_command_text(const char *command)
{
    static const struct {
        const char *name;
        const char *text;
    } texts[] = {
        {"pull", pull_help},       {"push", push_help},   {"sync", sync_help},   {"fetch", fetch_help},   {"status", status_help},
        {"check", check_help},     {"folders", folders_help}, {"watch", watch_help}, {"help", help_help},
    };
    for (size_t i = 0; command && i < sizeof texts / sizeof *texts; i++)
        if (strcmp(command, texts[i].name) == 0)
            return texts[i].text;
    return NULL;
}
