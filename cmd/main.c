/* SPDX-License-Identifier: MIT */
/*
 * main.c: the mailsync program: argv, config, dispatch to the engine,
 * output and the exit code (shared/docs/interface.md).
 *
 *   mailsync [GLOBAL OPTIONS] COMMAND [ACCOUNT...] [COMMAND OPTIONS]
 *
 * Options may stand anywhere on the line; the first word that is not an
 * option is the command, the following ones are account names.
 */
#include <errno.h>
#include <getopt.h>
#include <libetpan/libetpan_version.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd/config.h"
#include "cmd/help.h"
#include "cmd/hooks.h"
#include "cmd/import.h"
#include "cmd/output.h"
#include "cmd/progress.h"
#include "cmd/parallel.h"
#include "cmd/sdnotify.h"
#include "db/state.h"
#include "sync/engine/engine.h"
#include "sync/remote/remote.h"
#include "sync/log.h"
#include "sync/util.h"

struct options {
    const char *config;
    bool json;
    bool dry_run;
    bool force;
    bool quiet;
    enum progress_mode progress;
    char **folders;
    size_t nfolders;
    const char *command;
    char **accounts;
    size_t naccounts;
    int interval; /* watch: seconds between full passes */
    const char *from; /* import: --from mbsync|offlineimap */
    bool write;       /* import: --write */
    bool all;         /* fetch: --all */
    char **files;     /* fetch: FILE... (the words that name no account) */
    size_t nfiles;
    bool help;        /* -h/--help: after the command is known */
    long jobs;        /* -j/--jobs: accounts at once (pull, push, sync); 0 = 1 */
};

static const char usage_text[] =
    "Usage: mailsync [OPTIONS] COMMAND [ACCOUNT...]\n"
    "\n"
    "Keep local Maildirs and IMAP accounts in step.\n"
    "\n"
    "Commands:\n"
    "  pull      server -> local: download new mail, apply server flag changes\n"
    "            and deletions, create folders that are new on the server\n"
    "  push      local -> server: upload new local messages, store local flag\n"
    "            changes, remove messages deleted locally\n"
    "  sync      push, then pull, in one connection\n"
    "  status    per account and folder: counts, pending local changes, last\n"
    "            sync and last error; offline, reads only local data\n"
    "  check     validate the config, connect, verify TLS, authenticate, list\n"
    "            folders, show server capabilities; changes nothing\n"
    "  folders   list server folders and the local path each maps to\n"
    "  watch     stay connected: sync, then wait for the server to report a\n"
    "            change in any folder (NOTIFY; else INBOX, IDLE), a local\n"
    "            change in a synced folder (inotify), or --interval seconds\n"
    "            (default 300), and sync again; until SIGINT/SIGTERM. One\n"
    "            account.\n"
    "  fetch     fetch [ACCOUNT] [--all | FILE...]: replace placeholders\n"
    "            (messages over max_size) by their full message: the\n"
    "            named files, or --all; a pull or sync does so for those\n"
    "            flagged locally\n"
    "  import    print a mailsync config made from ~/.mbsyncrc or\n"
    "            ~/.offlineimaprc (or FILE); --write saves it (see\n"
    "            'mailsync help import')\n"
    "  help      help [COMMAND]: this text, or a command's own\n"
    "\n"
    "No ACCOUNT means every account in the config file.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE      config file (default: $MAILSYNC_CONFIG, else\n"
    "                         $XDG_CONFIG_HOME/mailsync/config, else\n"
    "                         ~/.config/mailsync/config)\n"
    "  -v, --verbose          more detail; -vv shows the IMAP conversation\n"
    "                         (passwords masked)\n"
    "  -q, --quiet            only errors\n"
    "      --progress=WHEN    auto (on a terminal), always, never\n"
    "      --json             one JSON object on stdout summarising the run\n"
    "      --dry-run          print what would change, change nothing\n"
    "      --folder PATTERN   limit the run to matching folders (repeatable;\n"
    "                         * any text, % any text but '/', ? one char;\n"
    "                         \\Junk, \\Trash, ...: the folder the server marks so)\n"
    "      --force            override the mass-deletion guard\n"
    "      --interval SECONDS watch: a full pass at least this often (300)\n"
    "  -j, --jobs N           pull, push, sync: up to N accounts at once (1);\n"
    "                         each account's output is shown whole when it ends\n"
    "      --from FORMAT      import: the file is mbsync's or offlineimap's\n"
    "      --write            import: save the config instead of printing it\n"
    "      --all              fetch: every placeholder of the selected folders\n"
    "      --version          print the version\n"
    "  -h, --help             this help\n"
    "\n"
    "Exit codes: 0 all synced, 1 some folders or messages failed, 2 usage or\n"
    "config error, 3 authentication failed, 4 network or TLS failure,\n"
    "5 local storage failure, 75 another run holds the account's lock.\n"
    "Ctrl-C (SIGINT) or SIGTERM: pull, push and sync stop after the current\n"
    "message or chunk of uploads, record what is done, then end by the signal;\n"
    "a second signal ends them at once.\n"
    "\n"
    "'mailsync help COMMAND' (or COMMAND --help) for a command's own help;\n"
    "mailsync(1) for the whole story, mailsync.conf(5) for the config file.\n";

static const char import_usage_text[] =
    "Usage: mailsync import [FILE] [--from mbsync|offlineimap] [--write] [-c CONFIG]\n"
    "\n"
    "Read an mbsync (isync) or OfflineIMAP config file and print an equivalent\n"
    "mailsync config: one account per mbsync Channel (Channels joining the same\n"
    "IMAP and Maildir stores make one account) or OfflineIMAP account, with\n"
    "host, port, TLS, user, password command, certificates, folder patterns,\n"
    "Maildir root and layout. Every setting that cannot be carried over is\n"
    "listed as a '# not carried over:' comment saying why.\n"
    "\n"
    "FILE defaults to ~/.mbsyncrc if it exists, else ~/.offlineimaprc. Its\n"
    "format is guessed from its content unless --from says it.\n"
    "\n"
    "  --from FORMAT  mbsync or offlineimap\n"
    "  --write        save the config to the config path (-c CONFIG, else\n"
    "                 $MAILSYNC_CONFIG, else $XDG_CONFIG_HOME/mailsync/config,\n"
    "                 else ~/.config/mailsync/config) with mode 0600; an\n"
    "                 existing file is never overwritten (exit 2)\n"
    "\n"
    "A password written in clear in FILE (mbsync Pass, OfflineIMAP remotepass)\n"
    "is printed only as a comment; --write puts it in the new file.\n"
    "\n"
    "Switching from mbsync or OfflineIMAP:\n"
    "  mailsync import --write && mailsync sync\n"
    "\n"
    "Exit codes: 0 written or printed, 2 the file cannot be read or\n"
    "translated, or the config file exists, 5 the config cannot be written.\n";

/* "mailsync: " + the message + newline on stderr, its control characters
 * escaped like every log line (log_clean): a name from the command line,
 * the config or the disk cannot end the line or drive the terminal. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fputs("mailsync: ", stderr);
    output_print_clean(stderr, text);
    fputc('\n', stderr);
    output_note_error(text);
}

/* --version: ours, then the libraries' this binary runs with (a bug
 * report needs them; a distribution may update each on its own). */
static void print_version(void)
{
    printf("mailsync %s\n", MAILSYNC_VERSION);
    printf("libetpan %d.%d, %s, SQLite %s\n", libetpan_get_version_major(), libetpan_get_version_minor(),
           OpenSSL_version(OPENSSL_VERSION), state_sqlite_version());
}

static int usage_error(const char *fmt, const char *arg)
{
    say(fmt, arg);
    fputs("Try 'mailsync --help'.\n", stderr);
    return MS_EUSAGE;
}

static const char *const commands[] = {"pull",    "push",    "sync",  "fetch",  "status",
                                        "check",   "folders", "watch", "import", "help"};
#define NCOMMANDS (sizeof commands / sizeof *commands)

/* An unknown command: a usage error naming the commands, and the one
 * meant if the word is a typo of it. what: "unknown command", ... */
static int unknown_command(const char *what, const char *word)
{
    const char *near = config_suggest(word, commands, NCOMMANDS);
    say("%s '%s' (the commands: pull, push, sync, fetch, status, check, folders, watch, import, help)%s%s%s", what, word,
        near ? "; did you mean " : "", near ? near : "", near ? "?" : "");
    fputs("Try 'mailsync --help'.\n", stderr);
    return MS_EUSAGE;
}

/* --help, COMMAND --help, help [COMMAND]: the general text, or the
 * command's own. A word that is no command is a usage error. */
static int print_help(const char *command)
{
    const char *text = !command                          ? usage_text
                       : strcmp(command, "import") == 0 ? import_usage_text
                                                        : help_command_text(command);
    if (!text)
        return unknown_command("no help for", command);
    fputs(text, stdout);
    return 0;
}

static void add_folder_pattern(struct options *o, const char *p)
{
    o->folders = xrealloc(o->folders, (o->nfolders + 1) * sizeof *o->folders);
    o->folders[o->nfolders++] = (char *)p;
}

/* Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, struct options *o)
{
    enum { OPT_PROGRESS = 256, OPT_JSON, OPT_DRY_RUN, OPT_FOLDER, OPT_FORCE, OPT_VERSION, OPT_INTERVAL, OPT_FROM,
           OPT_WRITE, OPT_ALL };
    enum { JOBS_MAX = 64 };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"progress", required_argument, NULL, OPT_PROGRESS},
        {"json", no_argument, NULL, OPT_JSON},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"folder", required_argument, NULL, OPT_FOLDER},
        {"force", no_argument, NULL, OPT_FORCE},
        {"version", no_argument, NULL, OPT_VERSION},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"from", required_argument, NULL, OPT_FROM},
        {"write", no_argument, NULL, OPT_WRITE},
        {"all", no_argument, NULL, OPT_ALL},
        {"help", no_argument, NULL, 'h'},
        {"jobs", required_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:vqhj:", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config = optarg; break;
        case 'v': log_verbosity = log_verbosity < 0 ? 1 : log_verbosity + 1; break;
        case 'q': o->quiet = true; break;
        case OPT_PROGRESS:
            if (strcmp(optarg, "auto") == 0)
                o->progress = PROGRESS_AUTO;
            else if (strcmp(optarg, "always") == 0)
                o->progress = PROGRESS_ALWAYS;
            else if (strcmp(optarg, "never") == 0)
                o->progress = PROGRESS_NEVER;
            else
                return usage_error("--progress takes auto, always or never, not '%s'", optarg);
            break;
        case OPT_JSON: o->json = true; break;
        case OPT_DRY_RUN: o->dry_run = true; break;
        case OPT_FOLDER: add_folder_pattern(o, optarg); break;
        case OPT_FORCE: o->force = true; break;
        case OPT_VERSION: print_version(); return 0;
        case OPT_INTERVAL: {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 1 || v > 86400)
                return usage_error("--interval takes seconds from 1 to 86400, not '%s'", optarg);
            o->interval = (int)v;
            break;
        }
        case OPT_FROM:
            if (strcmp(optarg, "mbsync") != 0 && strcmp(optarg, "isync") != 0 && strcmp(optarg, "offlineimap") != 0)
                return usage_error("--from takes mbsync or offlineimap, not '%s'", optarg);
            o->from = optarg;
            break;
        case OPT_WRITE: o->write = true; break;
        case OPT_ALL: o->all = true; break;
        case 'h': o->help = true; break;
        case 'j': {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 1 || v > JOBS_MAX)
                return usage_error("-j/--jobs takes a number of accounts from 1 to 64, not '%s'", optarg);
            o->jobs = v;
            break;
        }
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (o->quiet)
        log_verbosity = -1;
    if (o->help) /* --help, or COMMAND --help */
        return print_help(optind < argc ? argv[optind] : NULL);
    if (optind >= argc)
        return usage_error("%s",
                           "no command given (pull, push, sync, fetch, status, check, folders, watch, import, help)");
    o->command = argv[optind++];
    if ((o->from || o->write) && strcmp(o->command, "import") != 0)
        return usage_error("%s", o->from ? "--from is an option of import" : "--write is an option of import");
    if (o->all && strcmp(o->command, "fetch") != 0)
        return usage_error("%s", "--all is an option of fetch");
    o->accounts = argv + optind;
    o->naccounts = (size_t)(argc - optind);
    return -1;
}

/* Secrets must not end up in a core file, and files we create are ours
 * alone. */
static void harden_process(void)
{
    umask(077);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
}

/* The accounts the command line names, or all of them. NULL entries never
 * occur: an unknown name is a usage error, and so is an account whose
 * state directory others could write (config_check_state_dir). */
static int pick_accounts(struct config *cfg, const struct options *o, struct account ***out, size_t *n)
{
    size_t want = o->naccounts ? o->naccounts : cfg->naccounts;
    struct account **list = xcalloc(want, sizeof *list);
    for (size_t i = 0; i < want; i++) {
        list[i] = o->naccounts ? config_find(cfg, o->accounts[i]) : &cfg->accounts[i];
        if (!list[i]) {
            free(list);
            const char **names = xcalloc(cfg->naccounts + 1, sizeof *names);
            for (size_t k = 0; k < cfg->naccounts; k++)
                names[k] = cfg->accounts[k].name;
            const char *near = config_suggest(o->accounts[i], names, cfg->naccounts);
            free(names);
            if (near)
                say("no account named '%s' in %s; did you mean %s?", o->accounts[i], cfg->path, near);
            else
                say("no account named '%s' in %s (its accounts are its [account NAME] sections)", o->accounts[i],
                    cfg->path);
            return MS_EUSAGE;
        }
    }
    /* Before anything is touched: a state directory others can write is
     * a setup error like a config file they can write (exit 2). */
    for (size_t i = 0; i < want; i++) {
        struct ms_error err = {0};
        if (config_check_state_dir(list[i], &err) != MS_OK) {
            free(list);
            say("%s", err.msg);
            return MS_EUSAGE;
        }
    }
    *out = list;
    *n = want;
    return MS_OK;
}

/* Under -j a password or token command talks to the terminal (a prompt,
 * pinentry) one account at a time, with its stderr on the terminal rather
 * than in the account's held output. */
static int get_secret(const struct account *a, char **out, struct ms_error *err)
{
    int tty = parallel_terminal_begin();
    int rc = a->auth == AUTH_XOAUTH2 || a->auth == AUTH_OAUTHBEARER ? config_oauth_token(a, tty, out, err)
                                                                      : config_password(a, tty, out, err);
    parallel_terminal_end();
    return rc;
}

/* The number in the environment variable name, for the integration
 * tests; not user settings (undocumented), 0 or unset: the default.
 * MAILSYNC_TEST_PULL_WINDOW: UIDs per window of a first pull of a big
 * folder (engine_options.pull_window), to make windows of a small folder;
 * MAILSYNC_TEST_VANISHED_MAX: the most vanished UIDs an incremental
 * listing holds (engine_options.vanished_max). */
static uint32_t test_knob(const char *name)
{
    const char *v = getenv(name);
    char *end;
    unsigned long n = v ? strtoul(v, &end, 10) : 0;
    return v && *v && !*end && n <= UINT32_MAX ? (uint32_t)n : 0;
}

static struct engine_options engine_opts(const struct options *o)
{
    return (struct engine_options){.dry_run = o->dry_run,
                                   .force = o->force,
                                   .folder_patterns = o->folders,
                                   .nfolder_patterns = o->nfolders,
                                   .progress = output_progress(),
                                   .get_password = get_secret,
                                   .pull_window = test_knob("MAILSYNC_TEST_PULL_WINDOW"),
                                   .vanished_max = test_knob("MAILSYNC_TEST_VANISHED_MAX"),
                                   .stop_at_window = test_knob("MAILSYNC_TEST_STOP_AT_WINDOW")};
}

/* A command that needs capability bits (REMOTE_*) no server of the
 * account's kind has (only POP3 lacks any: folders, watch) is a usage
 * error, said before connecting. */
static int unsupported_type(const struct account *a, unsigned need)
{
    if ((remote_caps_possible(a) & need) == need)
        return MS_OK;
    log_msg(LOG_ERROR, "%s: this command is for IMAP accounts (a POP3 account has pull, push and sync)", a->name);
    return MS_EUSAGE;
}

/* SIGINT/SIGTERM during pull, push, sync and watch: the first asks the
 * engine to stop at its next safe point (after the message being
 * downloaded, before the next chunk of uploads, between folders), so what
 * is done is recorded; a second one ends the process at once (the
 * handler resets itself), which is as safe as any kill. */
static volatile sig_atomic_t stop_signal; /* the signal that asked, or 0 */
static volatile sig_atomic_t stop_notice; /* say so on stderr (not with -q) */

/* The second signal: the progress line goes (no partial line is left
 * for the shell's prompt), then the signal ends the process. */
static void on_second_stop_signal(int sig)
{
    progress_signal_write("", 0);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_stop_signal(int sig)
{
    int saved = errno;
    stop_signal = sig;
    struct sigaction next; /* the next SIGINT or SIGTERM, whichever, ends it */
    memset(&next, 0, sizeof next);
    next.sa_handler = on_second_stop_signal;
    next.sa_flags = SA_RESETHAND;
    sigemptyset(&next.sa_mask);
    sigaction(SIGINT, &next, NULL);
    sigaction(SIGTERM, &next, NULL);
    static const char msg[] = "mailsync: stopping at the next safe point (send the signal again to quit at once)\n";
    if (stop_notice) /* on a line of its own, also when the progress line is drawn */
        progress_signal_write(msg, sizeof msg - 1);
    errno = saved;
}

/* restart: interrupted system calls go on (one-shot commands: the stop
 * is looked at between messages); without it a wait ends at once (watch:
 * its IDLE wait checks the flag). */
static void catch_stop_signals(const struct options *o, bool restart)
{
    stop_notice = !o->quiet && !o->json;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* A one-shot command that a signal stopped ends by that signal, once its
 * results are out: a shell sees 130 or 143 as it would without the
 * handler, and systemd a clean stop. (A watch's normal end is a signal:
 * it exits 0.) */
static void end_by_stop_signal(void)
{
    int sig = stop_signal;
    if (!sig)
        return;
    fflush(stdout);
    fflush(stderr);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* An account's error, once: as information when a signal asked for the
 * stop it reports, as an error otherwise. */
static void log_account_error(const struct engine_result *res)
{
    if (res->error[0] && stop_signal && res->status == MS_EPARTIAL)
        log_msg(LOG_INFO, "%s: %s", res->account, res->error); /* asked for, not a failure */
    else if (res->error[0])
        log_msg(LOG_ERROR, "%s: %s", res->account, res->error);
}

/* Over several accounts a --folder pattern need match in one of them only
 * (with one, the engine refuses it before touching anything:
 * folder_patterns_strict); one that matched in none of the accounts that
 * listed their folders is a usage error all the same. */
static int unmatched_folder_patterns(const struct options *o, const struct engine_result *res, size_t n)
{
    int rc = MS_OK;
    for (size_t j = 0; j < o->nfolders && n > 1; j++) {
        size_t listed = 0, missed = 0;
        for (size_t i = 0; i < n; i++)
            if (res[i].folder_patterns_unmatched) {
                listed++;
                missed += res[i].folder_patterns_unmatched[j];
            }
        if (listed && missed == listed) {
            say("--folder \"%s\" matches no folder in any account; 'mailsync folders' lists them", o->folders[j]);
            rc = MS_EUSAGE;
        }
    }
    return rc;
}

struct pull_run {
    const struct options *o;
    const struct engine_options *eo;
    struct account **acc;
};

/* One account of pull, push or sync, as the serial loop and a -j child
 * run it: the run, its error, its summary, its hooks. */
static int pull_account(void *ctx, size_t i, struct engine_result *res)
{
    const struct pull_run *pr = ctx;
    const struct options *o = pr->o;
    int rc;
    if (strcmp(o->command, "push") == 0)
        rc = engine_push(pr->acc[i], pr->eo, res);
    else if (strcmp(o->command, "sync") == 0)
        rc = engine_sync(pr->acc[i], pr->eo, res);
    else
        rc = engine_pull(pr->acc[i], pr->eo, res);
    log_account_error(res);
    if (!o->json && !o->quiet && rc != MS_ELOCKED)
        output_summary(stdout, o->command, res, o->dry_run);
    if (!o->dry_run && rc != MS_ELOCKED) {
        fflush(stdout);
        hooks_run(pr->acc[i], o->command, res);
    }
    return rc;
}

/* -j N over several accounts (parallel.h); a dry run plans one account
 * at a time (its plan is collected in this process). */
static size_t pull_parallel(const struct options *o, struct pull_run *pr, size_t n, struct engine_result *res)
{
    struct engine_options child_eo = *pr->eo;
    child_eo.progress = NULL; /* one line for the whole run instead */
    pr->eo = &child_eo;
    const char **names = xcalloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++)
        names[i] = pr->acc[i]->name;
    struct parallel_run p = {
        .n = n,
        .names = names,
        .jobs = (size_t)o->jobs,
        .progress = o->progress == PROGRESS_ALWAYS ||
                    (o->progress == PROGRESS_AUTO && !o->quiet && !o->json && isatty(STDERR_FILENO)),
        .stop = &stop_signal,
        .run = pull_account,
        .ctx = pr,
    };
    size_t started = parallel_accounts(&p, res);
    free(names);
    return started;
}

static int cmd_pull(const struct options *o, struct account **acc, size_t n)
{
    struct engine_options eo = engine_opts(o);
    eo.folder_patterns_strict = n == 1;
    if (!o->dry_run) {
        catch_stop_signals(o, true);
        eo.stop = &stop_signal;
    }
    struct engine_result *res = xcalloc(n, sizeof *res);
    struct pull_run pr = {.o = o, .eo = &eo, .acc = acc};
    int exit_code = MS_OK;
    output_progress_accounts(n);
    size_t i; /* after the loop: the accounts started (a stop skips the rest) */
    if (o->jobs > 1 && n > 1 && !o->dry_run) {
        i = pull_parallel(o, &pr, n, res);
        for (size_t k = 0; k < i; k++)
            exit_code = ms_error_worse(exit_code, res[k].status);
    } else {
        for (i = 0; i < n && !stop_signal; i++)
            exit_code = ms_error_worse(exit_code, pull_account(&pr, i, &res[i]));
    }
    exit_code = ms_error_worse(exit_code, unmatched_folder_patterns(o, res, i));
    if (o->json)
        output_json_results(stdout, o->command, res, i, exit_code, o->dry_run);
    for (size_t k = 0; k < n; k++)
        engine_result_free(&res[k]);
    free(res);
    end_by_stop_signal(); /* after the results are out */
    return exit_code;
}

/* The unique part of a message file's name: its base name up to the
 * Maildir info (":2,..."). */
static const char *file_uniq(const char *path, char *buf, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strcspn(base, ":");
    if (len >= size)
        len = size - 1;
    memcpy(buf, base, len);
    buf[len] = '\0';
    return buf;
}

/* fetch [ACCOUNT...] [--all | FILE...]: placeholders replaced by their full
 * message. A FILE no selected folder of the named accounts holds as a
 * placeholder is an error (exit 1), said once all accounts are done. */
static int cmd_fetch(const struct options *o, struct account **acc, size_t n)
{
    if (o->dry_run)
        return usage_error("%s", "--dry-run does not apply to fetch");
    if (!o->all && o->nfiles == 0)
        return usage_error("%s", "fetch needs the placeholder files to fetch, or --all");
    if (o->all && o->nfiles)
        return usage_error("fetch takes --all or files, not both ('%s')", o->files[0]);
    for (size_t i = 0; i < n; i++)
        if (unsupported_type(acc[i], REMOTE_UIDS))
            return MS_EUSAGE;
    char (*uniqs)[256] = xcalloc(o->nfiles + 1, sizeof *uniqs);
    const char **names = xcalloc(o->nfiles + 1, sizeof *names);
    bool *found = xcalloc(o->nfiles + 1, sizeof *found);
    for (size_t i = 0; i < o->nfiles; i++)
        names[i] = file_uniq(o->files[i], uniqs[i], sizeof uniqs[i]);
    struct engine_options eo = engine_opts(o);
    eo.fetch_all = o->all;
    eo.fetch_uniqs = names;
    eo.nfetch_uniqs = o->nfiles;
    eo.fetch_found = found;
    catch_stop_signals(o, true);
    eo.stop = &stop_signal;
    struct engine_result *res = xcalloc(n, sizeof *res);
    int exit_code = MS_OK;
    size_t i;
    for (i = 0; i < n && !stop_signal; i++) {
        int rc = engine_fetch(acc[i], &eo, &res[i]);
        log_account_error(&res[i]);
        exit_code = ms_error_worse(exit_code, rc);
        if (!o->json && !o->quiet && rc != MS_ELOCKED)
            output_summary(stdout, o->command, &res[i], false);
    }
    for (size_t k = 0; k < o->nfiles && !stop_signal; k++)
        if (!found[k]) {
            log_msg(LOG_ERROR, "%s: not a placeholder of the selected folders (nothing fetched for it)",
                    o->files[k]);
            exit_code = ms_error_worse(exit_code, MS_EPARTIAL);
        }
    if (o->json)
        output_json_results(stdout, o->command, res, i, exit_code, false);
    for (size_t k = 0; k < n; k++)
        engine_result_free(&res[k]);
    free(res);
    free(uniqs);
    free(names);
    free(found);
    end_by_stop_signal();
    return exit_code;
}

static int cmd_status(const struct options *o, struct account **acc, size_t n)
{
    int exit_code = MS_OK;
    if (o->json)
        output_json_begin(stdout, "status");
    for (size_t i = 0; i < n; i++) {
        struct engine_status s;
        struct ms_error err = {0};
        int rc = engine_status(acc[i], &s, &err);
        if (rc) {
            log_msg(LOG_ERROR, "%s: %s", acc[i]->name, err.msg);
            exit_code = ms_error_worse(exit_code, rc);
        }
        if (o->json)
            output_status_json(stdout, acc[i], rc, err.msg, &s, i == 0);
        else if (rc == MS_OK)
            output_status_text(stdout, acc[i], &s);
        engine_status_free(&s);
    }
    if (o->json)
        output_json_end(stdout, exit_code);
    return exit_code;
}

static int cmd_check(const struct options *o, struct account **acc, size_t n)
{
    struct engine_options eo = engine_opts(o);
    int exit_code = MS_OK;
    if (o->json)
        output_json_begin(stdout, "check");
    for (size_t i = 0; i < n; i++) {
        struct engine_check c;
        struct ms_error err = {0};
        int rc = engine_check(acc[i], &eo, &c, &err);
        if (rc) {
            if (err.msg[0])
                log_msg(LOG_ERROR, "%s: %s", acc[i]->name, err.msg);
            exit_code = ms_error_worse(exit_code, rc);
        }
        if (o->json)
            output_check_json(stdout, acc[i], rc, err.msg, &c, i == 0);
        if (rc)
            continue;
        if (!o->json)
            output_check_text(stdout, acc[i], &c);
        engine_check_free(&c);
    }
    if (o->json)
        output_json_end(stdout, exit_code);
    return exit_code;
}

static int cmd_folders(const struct options *o, struct account **acc, size_t n)
{
    struct engine_options eo = engine_opts(o);
    eo.folder_patterns_strict = n == 1; /* a --folder typo: exit 2 */
    int exit_code = MS_OK;
    if (o->json)
        output_json_begin(stdout, "folders");
    for (size_t i = 0; i < n; i++) {
        struct engine_folder_map *m = NULL;
        size_t nm = 0;
        struct ms_error err = {0};
        int rc = unsupported_type(acc[i], REMOTE_FOLDERS);
        if (rc == MS_OK)
            rc = engine_folders(acc[i], &eo, &m, &nm, &err);
        if (rc) {
            if (err.msg[0])
                log_msg(LOG_ERROR, "%s: %s", acc[i]->name, err.msg);
            exit_code = ms_error_worse(exit_code, rc);
        }
        if (o->json)
            output_folders_json(stdout, acc[i], rc, err.msg[0] ? err.msg : NULL, m, nm, i == 0);
        if (rc)
            continue;
        if (!o->json)
            output_folders_text(stdout, acc[i], m, nm);
        engine_folders_free(m, nm);
    }
    if (o->json)
        output_json_end(stdout, exit_code);
    return exit_code;
}

struct watch_out {
    const struct options *o;
    const struct account *acct;
    unsigned passes;
    const struct engine_progress *inner; /* the terminal's progress, or NULL */
};

/* Under systemd, every progress event of a pass also feeds the watchdog
 * (a long first pull is alive as long as messages arrive), then goes on
 * to the terminal's progress if there is one. */
static struct watch_out *watch_progress_out;

static void wd_folder_start(void *ctx, const char *account, const char *folder, size_t nmsgs, uint64_t nbytes)
{
    (void)ctx;
    sdnotify_alive();
    const struct engine_progress *p = watch_progress_out->inner;
    if (p && p->folder_start)
        p->folder_start(p->ctx, account, folder, nmsgs, nbytes);
}

static void wd_message_done(void *ctx, uint64_t bytes)
{
    (void)ctx;
    sdnotify_alive();
    const struct engine_progress *p = watch_progress_out->inner;
    if (p && p->message_done)
        p->message_done(p->ctx, bytes);
}

static void wd_folder_done(void *ctx, const struct engine_folder_result *r)
{
    (void)ctx;
    sdnotify_alive();
    const struct engine_progress *p = watch_progress_out->inner;
    if (p && p->folder_done)
        p->folder_done(p->ctx, r);
}

static void watch_alive(void *ctx)
{
    (void)ctx;
    sdnotify_alive();
}

static void watch_pass_done(void *ctx, const struct engine_result *res)
{
    struct watch_out *w = ctx;
    w->passes++;
    log_account_error(res);
    if (w->o->json)
        output_json_results(stdout, "watch", res, 1, res->status, false);
    else if (!w->o->quiet && res->status != MS_ELOCKED)
        output_summary(stdout, "sync", res, false);
    fflush(stdout);
    if (res->status != MS_ELOCKED)
        hooks_run(w->acct, "watch", res);
    /* systemctl status shows how the last pass went */
    size_t fetched = 0, uploaded = 0;
    for (size_t i = 0; i < res->nfolders; i++) {
        fetched += res->folders[i].fetched;
        uploaded += res->folders[i].uploaded;
    }
    char line[700];
    time_t now = time(NULL);
    struct tm tm;
    char when[16] = "";
    if (localtime_r(&now, &tm))
        strftime(when, sizeof when, "%H:%M:%S", &tm);
    if (res->status == MS_OK || res->status == MS_EPARTIAL)
        snprintf(line, sizeof line, "STATUS=pass %u at %s: %zu new, %zu uploaded%s", w->passes, when, fetched,
                 uploaded, res->status == MS_OK ? "" : " (some folders failed)");
    else
        snprintf(line, sizeof line, "STATUS=pass %u at %s failed: %.500s", w->passes, when,
                 res->error[0] ? res->error : "see the log");
    sdnotify_send(line);
    sdnotify_alive();
}

static int cmd_watch(const struct options *o, struct account **acc, size_t n)
{
    if (n != 1)
        return usage_error("watch runs one account at a time: name it, e.g. 'mailsync watch %s' (one watch per "
                           "account)",
                           n ? acc[0]->name : "ACCOUNT");
    if (o->dry_run)
        return usage_error("%s", "watch changes mail as it goes: --dry-run does not apply");
    int rc = unsupported_type(acc[0], REMOTE_WATCH);
    if (rc)
        return rc;
    catch_stop_signals(o, false);
    bool supervised = sdnotify_init();
    struct engine_options eo = engine_opts(o);
    eo.folder_patterns_strict = true; /* one account */
    struct watch_out out = {.o = o, .acct = acc[0], .inner = eo.progress};
    struct engine_watch w = {.interval_s = o->interval ? o->interval : 300, .stop = &stop_signal,
                             .pass_done = watch_pass_done, .ctx = &out};
    static struct engine_progress wd_progress;
    int wd_ms = sdnotify_watchdog_ms();
    if (wd_ms > 0) {
        watch_progress_out = &out;
        wd_progress = *eo.progress; /* the other events go straight to the terminal's */
        wd_progress.folder_start = wd_folder_start;
        wd_progress.message_done = wd_message_done;
        wd_progress.folder_done = wd_folder_done;
        eo.progress = &wd_progress;
        w.alive = watch_alive;
        w.alive_ms = wd_ms / 3 > 0 ? wd_ms / 3 : 1;
        log_msg(LOG_VERBOSE, "%s: systemd watchdog every %d ms", acc[0]->name, wd_ms);
    }
    log_msg(LOG_VERBOSE, "%s: watching (a full pass at least every %d s)", acc[0]->name,
            w.interval_s);
    if (supervised) {
        char ready[300];
        snprintf(ready, sizeof ready, "READY=1\nSTATUS=watching %.200s", acc[0]->name);
        sdnotify_send(ready);
    }
    rc = engine_watch(acc[0], &eo, &w);
    sdnotify_send("STOPPING=1");
    if (rc == MS_OK)
        log_msg(LOG_VERBOSE, "%s: watch stopped after %u passes", acc[0]->name, out.passes);
    return rc;
}

static int run_command(const struct options *o, struct account **acc, size_t n)
{
    const char *c = o->command;
    if (strcmp(c, "pull") == 0 || strcmp(c, "push") == 0 || strcmp(c, "sync") == 0)
        return cmd_pull(o, acc, n);
    if (strcmp(c, "fetch") == 0)
        return cmd_fetch(o, acc, n);
    if (strcmp(c, "status") == 0)
        return cmd_status(o, acc, n);
    if (strcmp(c, "check") == 0)
        return cmd_check(o, acc, n);
    if (strcmp(c, "folders") == 0)
        return cmd_folders(o, acc, n);
    if (strcmp(c, "watch") == 0)
        return cmd_watch(o, acc, n);
    say("'%s' is not implemented yet", c);
    return MS_EUSAGE;
}

/* import [FILE]: the rc translated (import.h) and printed, or with
 * --write saved where the config is read from, 0600, never over a file. */
static int cmd_import(const struct options *o)
{
    if (o->naccounts > 1)
        return usage_error("import reads one file, not also '%s'", o->accounts[1]);
    if (o->json)
        return usage_error("%s", "--json does not apply to import (it prints a config file)");
    enum import_format format = IMPORT_MBSYNC;
    char *rc_path;
    bool named = o->naccounts == 1;
    if (named) {
        rc_path = xstrdup(o->accounts[0]);
    } else {
        const char *home = getenv("HOME");
        if (!home || home[0] != '/') {
            say("no home directory ($HOME) to find ~/.mbsyncrc in: name the file, mailsync import FILE");
            return MS_EUSAGE;
        }
        rc_path = import_default_rc(home, &format);
    }
    struct ms_error err = {0};
    char *text = NULL, *config = NULL;
    size_t len = 0;
    int rc = import_read_rc(rc_path, &text, &len, &err);
    if (rc != MS_OK && !named && access(rc_path, F_OK) != 0) {
        say("found neither ~/.mbsyncrc nor ~/.offlineimaprc: name the file, mailsync import FILE");
        goto done;
    }
    if (rc != MS_OK) {
        say("%s", err.msg);
        goto done;
    }
    if (o->from)
        format = strcmp(o->from, "offlineimap") == 0 ? IMPORT_OFFLINEIMAP : IMPORT_MBSYNC;
    else if (named)
        format = import_guess_format(text, len);
    struct import_options io = {.format = format, .with_secrets = o->write, .home = getenv("HOME")};
    rc = import_translate(rc_path, text, len, &io, &config, &err);
    if (rc != MS_OK) {
        say("%s", err.msg);
        goto done;
    }
    if (!o->write) {
        fputs(config, stdout);
        goto done;
    }
    char *dest = o->config ? xstrdup(o->config) : config_default_path();
    if (!dest) {
        say("cannot find where to write the config: set -c FILE or $MAILSYNC_CONFIG");
        rc = MS_EUSAGE;
        goto done;
    }
    rc = import_write_config(dest, config, &err);
    if (rc != MS_OK)
        say("%s", err.msg);
    else if (!o->quiet)
        printf("wrote %s from %s; check it, then run: mailsync check && mailsync sync\n", dest, rc_path);
    free(dest);
done:
    if (text) {
        explicit_bzero(text, len);
        free(text);
    }
    if (config) {
        explicit_bzero(config, strlen(config));
        free(config);
    }
    free(rc_path);
    return rc;
}

static bool known_command(const char *c)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(c, commands[i]) == 0)
            return true;
    return false;
}

/* fetch [ACCOUNT...] [FILE...]: the words that name an account of the
 * config (and no path) are accounts, the others files. */
static void split_fetch_args(struct config *cfg, struct options *o)
{
    size_t na = 0;
    o->files = xcalloc(o->naccounts + 1, sizeof *o->files);
    for (size_t i = 0; i < o->naccounts; i++) {
        char *w = o->accounts[i];
        if (!strchr(w, '/') && config_find(cfg, w))
            o->accounts[na++] = w;
        else
            o->files[o->nfiles++] = w;
    }
    o->naccounts = na;
}

/* Page faults are a large part of a short run where they are slow: on this
 * project's 2-core VM each costs ~11 us, while the kernel maps the same
 * pages for ~2 us each when asked for a range at once. A no-op sync faults
 * in ~110 heap pages, nearly all during OpenSSL's and SQLite's start-up,
 * so the heap is grown once by about what that needs and mapped in one
 * madvise(MADV_POPULATE_WRITE) (Linux 5.14 and later; elsewhere the call
 * fails and nothing changes). 1.0-1.5 ms of a 24 ms no-op, measured.
 * Setting any of these malloc parameters ends glibc's dynamic thresholds,
 * so they are set to where those would settle: blocks up to 1 MiB come
 * from the heap, and its top is given back once 4 MiB are free there
 * (which also keeps the mapped pages until then). */
#define PREFAULT_PAD (512u * 1024)
#define PREFAULT_REQUEST (128u * 1024)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static void prefault_heap(void)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    mallopt(M_TOP_PAD, PREFAULT_PAD);
    uintptr_t lo = ((uintptr_t)sbrk(0) + 4095) & ~(uintptr_t)4095;
    void *grow = malloc(PREFAULT_REQUEST);
    uintptr_t hi = (uintptr_t)sbrk(0);
    if (grow && hi > lo && hi - lo <= 2 * (PREFAULT_PAD + PREFAULT_REQUEST))
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
    mallopt(M_TOP_PAD, 128 * 1024); /* glibc's default, for later growth */
    free(grow);
#endif
}

/* --json on the command line, also where parse_args stopped before it */
static bool wants_json(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json") == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    struct options o = {.progress = PROGRESS_AUTO};
    harden_process();
    log_set_sink(output_log_line); /* the library's lines: on stderr, as the program's */
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) { /* --help and --version print text; a usage error gets a document too */
        o.json = rc > 0 && wants_json(argc, argv);
        goto out;
    }
    if (!known_command(o.command)) {
        rc = unknown_command("unknown command", o.command);
        goto out;
    }
    if (strcmp(o.command, "help") == 0) { /* help [COMMAND] = COMMAND --help */
        rc = o.naccounts > 1 ? usage_error("help takes one command, not also '%s'", o.accounts[1])
                             : print_help(o.naccounts ? o.accounts[0] : NULL);
        if (rc == MS_OK)
            o.json = false; /* text, as with --help */
        goto out;
    }
    if (strcmp(o.command, "import") == 0) {
        rc = cmd_import(&o);
        goto out;
    }
    prefault_heap();
    output_init(o.progress, o.quiet, o.json);

    char *path = o.config ? xstrdup(o.config) : config_default_path();
    if (!path) {
        say("cannot find a config file: set -c FILE or $MAILSYNC_CONFIG");
        rc = MS_EUSAGE;
        goto out;
    }
    struct config cfg = {0};
    struct ms_error err = {0};
    rc = config_load(path, &cfg, &err);
    if (rc) { /* every error of the file, in line order */
        for (size_t i = 0; i < cfg.nerrors; i++)
            say("%s", cfg.errors[i]);
        if (!cfg.nerrors)
            say("%s", err.msg);
        else if (cfg.nerrors_total > cfg.nerrors)
            say("... and %zu more errors in the config file", cfg.nerrors_total - cfg.nerrors);
        if (cfg.nerrors)
            output_note_error(err.msg); /* --json's "error": the first found */
        if (o.json) /* and "errors": all of them */
            output_json_config_error(stdout, o.command, rc, path, &cfg, err.msg);
        free(path);
        config_free(&cfg);
        goto out;
    }
    free(path);
    struct account **acc = NULL;
    size_t n = 0;
    if (strcmp(o.command, "fetch") == 0)
        split_fetch_args(&cfg, &o);
    rc = pick_accounts(&cfg, &o, &acc, &n);
    if (rc == MS_OK)
        rc = run_command(&o, acc, n);
    free(acc);
    config_free(&cfg);
out:
    if (o.json && output_json_documents() == 0) /* failed before its document (or watch before a pass) */
        output_json_error(stdout, o.command, rc);
    free(o.folders);
    free(o.files);
    return rc;
}
