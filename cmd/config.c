/* SPDX-License-Identifier: MIT */
/*
 * config.c: the INI config parser and the password/token commands (see
 * config.h for the syntax).
 *
 * Parsing is one pass over the lines: a section header starts an account,
 * a key line is checked and stored at once (so the error names the line),
 * and when a section ends its required keys, cross-key rules and defaults
 * are applied. An error does not stop the pass: every bad line is
 * reported at once (a user fixes them all in one edit, not one per run),
 * but a config with any error is refused whole: a half-read config must
 * never drive a sync. A key whose line was bad is not reported again as
 * missing or as conflicting with another key. No IMAP, no SQL here.
 */
#include "cmd/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sync/util.h"

extern char **environ;

/* A config file is small; anything bigger is a mistake (a mail file?). */
#define CONFIG_MAX_BYTES (1024 * 1024)
/* A password or token is one short line; cap what we read of the output. */
#define COMMAND_MAX_OUTPUT (64 * 1024)
/* The errors of one file kept to be shown (struct config's errors); the
 * rest are only counted: a file that is not a config at all would
 * otherwise fill the terminal. */
#define CONFIG_MAX_ERRORS 20

/* ---- the keys ------------------------------------------------------------ */

enum key_id {
    K_TYPE, K_HOST, K_PORT, K_TLS, K_USER, K_PASSWORD, K_PASSWORD_COMMAND, K_AUTH,
    K_OAUTH_TOKEN_COMMAND, K_CA_FILE, K_FINGERPRINT, K_MAILDIR, K_STATE, K_FOLDERS,
    K_LAYOUT, K_MODE, K_EXPUNGE, K_TRASH, K_SERVER_RETENTION_DAYS, K_MAX_SIZE,
    K_CONNECTIONS, K_LEAVE_ON_SERVER, K_ALLOW_PLAINTEXT, K_MAX_DELETE, K_TIMEOUT, K_COMPRESS,
    K_EARLY_LOGIN, K_POST_SYNC_COMMAND, K_NEW_MAIL_COMMAND, K_HOOK_TIMEOUT, K_PLACEHOLDERS,
    NKEYS
};

struct parser {
    const char *path;
    int line;                /* current line number, 1-based */
    struct config *cfg;
    struct account *acc;     /* the section being read, or NULL */
    int key_line[NKEYS];     /* where each key of this section was set, 0 = not */
    bool key_bad[NKEYS];     /* the key's line in this section was an error */
    bool skipping;           /* after a bad section header: its keys belong to no account */
    bool outside_said;       /* "key outside a section" was reported once */
    mode_t file_mode;
    struct ms_error *err;    /* the first error */
};

typedef int (*key_setter)(struct parser *p, const char *key, const char *value);

/* What key_error names where the error is not about a key (compared by
 * address: a key typed as "line" is still a key). */
static const char LABEL_LINE[] = "line", LABEL_SECTION[] = "section", LABEL_ACCOUNT[] = "account";

/* "FILE:LINE: KEY: message", added to the file's errors (the first also
 * in p->err), with suggestion (or NULL) as its "did you mean". Returns
 * MS_EUSAGE; the caller goes on with the next line. */
static int vkey_error(struct parser *p, int line, const char *key, const char *suggestion, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

static int vkey_error(struct parser *p, int line, const char *key, const char *suggestion, const char *fmt, va_list ap)
{
    char what[400];
    vsnprintf(what, sizeof what, fmt, ap);
    struct config *c = p->cfg;
    char msg[sizeof p->err->msg];
    snprintf(msg, sizeof msg, "%s:%d: %s: %s", p->path, line, key, what);
    if (c->nerrors_total++ == 0 && p->err) /* the one a stop at the first error would give */
        ms_error_set(p->err, MS_EUSAGE, "%s", msg);
    if (c->nerrors < CONFIG_MAX_ERRORS) {
        c->errors = xrealloc(c->errors, (c->nerrors + 1) * sizeof *c->errors);
        c->error_info = xrealloc(c->error_info, (c->nerrors + 1) * sizeof *c->error_info);
        bool not_key = key == LABEL_LINE || key == LABEL_SECTION || key == LABEL_ACCOUNT;
        c->error_info[c->nerrors] = (struct config_error){
            .line = line,
            .key = not_key ? NULL : xstrdup(key),
            .message = xstrdup(what),
            .suggestion = suggestion ? xstrdup(suggestion) : NULL,
        };
        c->errors[c->nerrors++] = xstrdup(msg);
    }
    return MS_EUSAGE;
}

static int key_error(struct parser *p, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int key_error(struct parser *p, int line, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vkey_error(p, line, key, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

/* key_error with a "did you mean" fix. */
static int key_error_suggest(struct parser *p, int line, const char *key, const char *suggestion, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int key_error_suggest(struct parser *p, int line, const char *key, const char *suggestion, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vkey_error(p, line, key, suggestion, fmt, ap);
    va_end(ap);
    return rc;
}

/* The errors in line order (a section's missing keys are found at its
 * end but named at its header line). */
static void sort_errors(struct parser *p)
{
    struct config *c = p->cfg;
    for (size_t i = 1; i < c->nerrors; i++) /* insertion: stable, and n <= 20 */
        for (size_t j = i; j > 0 && c->error_info[j - 1].line > c->error_info[j].line; j--) {
            struct config_error e = c->error_info[j];
            c->error_info[j] = c->error_info[j - 1];
            c->error_info[j - 1] = e;
            char *m = c->errors[j];
            c->errors[j] = c->errors[j - 1];
            c->errors[j - 1] = m;
        }
}

/* ---- "did you mean" --------------------------------------------------------- */

/* The optimal string alignment distance of a and b, ignoring case: the
 * edits (insert, delete, replace, swap two neighbours) from one to the
 * other. Words here are short; longer ones count as far apart. */
static size_t edit_distance(const char *a, const char *b)
{
    enum { MAXW = 64 };
    size_t n = strlen(a), m = strlen(b);
    if (n >= MAXW || m >= MAXW)
        return SIZE_MAX;
    size_t d[MAXW + 1][MAXW + 1];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

const char *config_suggest(const char *word, const char *const *candidates, size_t n)
{
    size_t len = word ? strlen(word) : 0;
    if (len == 0)
        return NULL;
    /* a typo, not another word: one edit in a short word, two or three
     * in longer ones */
    size_t limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (!candidates[i])
            continue;
        size_t d = edit_distance(word, candidates[i]);
        if (d <= limit && d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    return best;
}

/* Match value against a list of words (case-insensitive); returns the
 * index or -1. */
static int pick_word(const char *value, const char *const *words)
{
    for (int i = 0; words[i]; i++)
        if (strcasecmp(value, words[i]) == 0)
            return i;
    return -1;
}

static int parse_long(struct parser *p, const char *key, const char *value, long min, long max,
                      const char *suffix_ok, long *out)
{
    errno = 0;
    char *end;
    if (!isdigit((unsigned char)value[0]))
        return key_error(p, p->line, key, "\"%s\" is not a number", value);
    long v = strtol(value, &end, 10);
    if (suffix_ok && strcmp(end, suffix_ok) == 0)
        end += strlen(end);
    if (*end)
        return key_error(p, p->line, key, "\"%s\" is not a number", value);
    if (errno == ERANGE || v < min || v > max)
        return key_error(p, p->line, key, "%s is out of range (%ld to %ld)", value, min, max);
    *out = v;
    return MS_OK;
}

static int set_int(struct parser *p, const char *key, const char *value, long min, long max,
                   int *field)
{
    long v = 0;
    int rc = parse_long(p, key, value, min, max, NULL, &v);
    if (rc == MS_OK)
        *field = (int)v;
    return rc;
}

static int set_bool(struct parser *p, const char *key, const char *value, bool *field)
{
    static const char *const words[] = {"yes", "true", "on", "1", "no", "false", "off", "0", NULL};
    int i = pick_word(value, words);
    if (i < 0)
        return key_error(p, p->line, key, "\"%s\" is not yes or no", value);
    *field = i < 4;
    return MS_OK;
}

static int set_string(char **field, const char *value)
{
    free(*field);
    *field = xstrdup(value);
    return MS_OK;
}

static int set_path(struct parser *p, const char *key, const char *value, char **field)
{
    if (value[0] != '/')
        return key_error(p, p->line, key,
                         "\"%s\" is not an absolute path (start it with / or ~/)", value);
    return set_string(field, value);
}

static int set_type(struct parser *p, const char *key, const char *value)
{
    static const char *const words[] = {"imap", "pop3", NULL};
    int i = pick_word(value, words);
    if (i < 0)
        return key_error(p, p->line, key, "\"%s\" is not imap or pop3", value);
    p->acc->type = i == 0 ? ACCOUNT_IMAP : ACCOUNT_POP3;
    return MS_OK;
}

static int set_host(struct parser *p, const char *key, const char *value)
{
    for (const char *c = value; *c; c++)
        if (isspace((unsigned char)*c) || *c == '/' || iscntrl((unsigned char)*c))
            return key_error(p, p->line, key, "\"%s\" is not a host name", value);
    return set_string(&p->acc->host, value);
}

static int set_port(struct parser *p, const char *key, const char *value)
{
    return set_int(p, key, value, 1, 65535, &p->acc->port);
}

static int set_tls(struct parser *p, const char *key, const char *value)
{
    static const char *const words[] = {"implicit", "starttls", "none", NULL};
    static const enum tls_mode modes[] = {TLS_IMPLICIT, TLS_STARTTLS, TLS_NONE};
    int i = pick_word(value, words);
    if (i < 0)
        return key_error(p, p->line, key, "\"%s\" is not implicit, starttls or none", value);
    p->acc->tls = modes[i];
    return MS_OK;
}

static int set_user(struct parser *p, const char *key, const char *value)
{
    (void)key;
    return set_string(&p->acc->user, value);
}

/* A password in a file others can read is a leaked password (fetchmail
 * CVE-2005-3088): refuse rather than warn. */
static int set_password(struct parser *p, const char *key, const char *value)
{
    if (p->file_mode & (S_IRGRP | S_IROTH))
        return key_error(p, p->line, key,
                         "the file is readable by group or others; run \"chmod 600 %s\" "
                         "or use password_command",
                         p->path);
    if (p->acc->password) {
        explicit_bzero(p->acc->password, strlen(p->acc->password));
        free(p->acc->password);
    }
    p->acc->password = xstrdup(value);
    return MS_OK;
}

static int set_password_command(struct parser *p, const char *key, const char *value)
{
    (void)key;
    return set_string(&p->acc->password_command, value);
}

static int set_auth(struct parser *p, const char *key, const char *value)
{
    static const char *const words[] = {"auto", "login", "plain", "xoauth2", "oauthbearer", NULL};
    static const enum auth_mech mechs[] = {AUTH_AUTO, AUTH_LOGIN, AUTH_PLAIN, AUTH_XOAUTH2,
                                           AUTH_OAUTHBEARER};
    int i = pick_word(value, words);
    if (i < 0)
        return key_error(p, p->line, key,
                         "\"%s\" is not login, plain, xoauth2, oauthbearer or auto", value);
    p->acc->auth = mechs[i];
    return MS_OK;
}

static int set_oauth_token_command(struct parser *p, const char *key, const char *value)
{
    (void)key;
    return set_string(&p->acc->oauth_token_command, value);
}

static int set_ca_file(struct parser *p, const char *key, const char *value)
{
    return set_path(p, key, value, &p->acc->ca_file);
}

/* "sha256:" then 64 hex digits, either contiguous or as colon-separated
 * pairs ("AB:CD:..."), as openssl x509 -fingerprint prints them. */
static int set_fingerprint(struct parser *p, const char *key, const char *value)
{
    bool ok = strncasecmp(value, "sha256:", 7) == 0;
    const char *h = value + 7;
    size_t len = ok ? strlen(h) : 0;
    bool colons = len == 32 * 3 - 1;
    ok = ok && (len == 64 || colons);
    for (size_t i = 0; ok && i < len; i++)
        ok = colons && i % 3 == 2 ? h[i] == ':' : isxdigit((unsigned char)h[i]) != 0;
    if (!ok)
        return key_error(p, p->line, key,
                         "\"%s\" is not a certificate fingerprint like sha256:AB:CD:... "
                         "(32 hex bytes)",
                         value);
    return set_string(&p->acc->fingerprint, value);
}

static int set_maildir(struct parser *p, const char *key, const char *value)
{
    return set_path(p, key, value, &p->acc->maildir);
}

static int set_state(struct parser *p, const char *key, const char *value)
{
    return set_path(p, key, value, &p->acc->state_path);
}

static void add_pattern(struct account *a, const char *s, size_t n)
{
    char **f = xrealloc(a->folders, (a->nfolders + 1) * sizeof *f);
    a->folders = f;
    a->folders[a->nfolders++] = xstrndup(s, n);
}

/* Patterns separated by whitespace; "..." quotes one with spaces (the
 * quotes may follow a '!': !"Junk mail" or "!Junk mail"). */
static int set_folders(struct parser *p, const char *key, const char *value)
{
    struct account *a = p->acc;
    for (size_t i = 0; i < a->nfolders; i++)
        free(a->folders[i]);
    a->nfolders = 0;
    const char *s = value;
    char *word = xmalloc(strlen(value) + 1);
    int rc = MS_OK;
    while (*s && rc == MS_OK) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        size_t n = 0;
        bool quoted_any = false;
        while (*s && *s != ' ' && *s != '\t') {
            if (*s != '"') {
                word[n++] = *s++;
                continue;
            }
            const char *close = strchr(s + 1, '"');
            if (!close) {
                rc = key_error(p, p->line, key, "unterminated quote in \"%s\"", value);
                break;
            }
            memcpy(word + n, s + 1, (size_t)(close - s - 1));
            n += (size_t)(close - s - 1);
            s = close + 1;
            quoted_any = true;
        }
        if (rc == MS_OK && (n == 0 || (n == 1 && word[0] == '!')))
            rc = key_error(p, p->line, key, "empty pattern%s", quoted_any ? " \"\"" : "");
        if (rc == MS_OK)
            add_pattern(a, word, n);
    }
    free(word);
    if (rc == MS_OK && a->nfolders == 0)
        rc = key_error(p, p->line, key, "no patterns");
    return rc;
}

static int set_layout(struct parser *p, const char *key, const char *value)
{
    static const char *const words[] = {"verbatim", "maildir++", "dotted", NULL};
    static const enum folder_layout layouts[] = {LAYOUT_VERBATIM, LAYOUT_MAILDIRPP, LAYOUT_DOTTED};
    int i = pick_word(value, words);
    if (i < 0)
        return key_error(p, p->line, key, "\"%s\" is not verbatim, maildir++ or dotted", value);
    p->acc->layout = layouts[i];
    return MS_OK;
}

static int set_mode(struct parser *p, const char *key, const char *value)
{
    static const char *const words[] = {"mirror", "backup", NULL};
    int i = pick_word(value, words);
    if (i < 0)
        return key_error(p, p->line, key, "\"%s\" is not mirror or backup", value);
    p->acc->mode = i == 0 ? MODE_MIRROR : MODE_BACKUP;
    return MS_OK;
}

static int set_expunge(struct parser *p, const char *key, const char *value)
{
    return set_bool(p, key, value, &p->acc->expunge);
}

static int set_trash(struct parser *p, const char *key, const char *value)
{
    (void)key;
    return set_string(&p->acc->trash, value);
}

static int set_server_retention_days(struct parser *p, const char *key, const char *value)
{
    return set_int(p, key, value, 0, 36500, &p->acc->server_retention_days);
}

/* Bytes, or with a K/M/G suffix (binary: 1K = 1024). */
static int set_max_size(struct parser *p, const char *key, const char *value)
{
    errno = 0;
    char *end;
    if (!isdigit((unsigned char)value[0]))
        return key_error(p, p->line, key, "\"%s\" is not a size like 25M", value);
    unsigned long long v = strtoull(value, &end, 10);
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (*end)
        return key_error(p, p->line, key, "\"%s\" is not a size like 25M", value);
    if (errno == ERANGE || v > (UINT64_MAX >> 30))
        return key_error(p, p->line, key, "%s is too large", value);
    p->acc->max_size = (uint64_t)v << shift;
    return MS_OK;
}

static int set_placeholders(struct parser *p, const char *key, const char *value)
{
    return set_bool(p, key, value, &p->acc->placeholders);
}

static int set_connections(struct parser *p, const char *key, const char *value)
{
    return set_int(p, key, value, 1, 16, &p->acc->connections);
}

static int set_leave_on_server(struct parser *p, const char *key, const char *value)
{
    return set_bool(p, key, value, &p->acc->leave_on_server);
}

static int set_allow_plaintext(struct parser *p, const char *key, const char *value)
{
    return set_bool(p, key, value, &p->acc->allow_plaintext);
}

static int set_max_delete(struct parser *p, const char *key, const char *value)
{
    long v = 0;
    int rc = parse_long(p, key, value, 0, 100, "%", &v);
    if (rc == MS_OK)
        p->acc->max_delete = (int)v;
    return rc;
}

static int set_timeout(struct parser *p, const char *key, const char *value)
{
    return set_int(p, key, value, 1, 86400, &p->acc->timeout);
}

static int set_compress(struct parser *p, const char *key, const char *value)
{
    return set_bool(p, key, value, &p->acc->compress);
}

static int set_early_login(struct parser *p, const char *key, const char *value)
{
    return set_bool(p, key, value, &p->acc->early_login);
}

static int set_post_sync_command(struct parser *p, const char *key, const char *value)
{
    (void)key;
    return set_string(&p->acc->post_sync_command, value);
}

static int set_new_mail_command(struct parser *p, const char *key, const char *value)
{
    (void)key;
    return set_string(&p->acc->new_mail_command, value);
}

static int set_hook_timeout(struct parser *p, const char *key, const char *value)
{
    return set_int(p, key, value, 1, 86400, &p->acc->hook_timeout);
}

static const struct key_def {
    const char *name;
    key_setter set;
    bool expand; /* ~ and $VAR apply */
    bool secret; /* its value is never repeated in a message */
} key_defs[NKEYS] = {
    [K_TYPE] = {"type", set_type, true, false},
    [K_HOST] = {"host", set_host, true, false},
    [K_PORT] = {"port", set_port, true, false},
    [K_TLS] = {"tls", set_tls, true, false},
    [K_USER] = {"user", set_user, true, false},
    [K_PASSWORD] = {"password", set_password, false, true},
    [K_PASSWORD_COMMAND] = {"password_command", set_password_command, true, true},
    [K_AUTH] = {"auth", set_auth, true, false},
    [K_OAUTH_TOKEN_COMMAND] = {"oauth_token_command", set_oauth_token_command, true, true},
    [K_CA_FILE] = {"ca_file", set_ca_file, true, false},
    [K_FINGERPRINT] = {"fingerprint", set_fingerprint, true, false},
    [K_MAILDIR] = {"maildir", set_maildir, true, false},
    [K_STATE] = {"state", set_state, true, false},
    [K_FOLDERS] = {"folders", set_folders, false, false},
    [K_LAYOUT] = {"layout", set_layout, true, false},
    [K_MODE] = {"mode", set_mode, true, false},
    [K_EXPUNGE] = {"expunge", set_expunge, true, false},
    [K_TRASH] = {"trash", set_trash, true, false},
    [K_SERVER_RETENTION_DAYS] = {"server_retention_days", set_server_retention_days, true, false},
    [K_MAX_SIZE] = {"max_size", set_max_size, true, false},
    [K_CONNECTIONS] = {"connections", set_connections, true, false},
    [K_LEAVE_ON_SERVER] = {"leave_on_server", set_leave_on_server, true, false},
    [K_ALLOW_PLAINTEXT] = {"allow_plaintext", set_allow_plaintext, true, false},
    [K_MAX_DELETE] = {"max_delete", set_max_delete, true, false},
    [K_TIMEOUT] = {"timeout", set_timeout, true, false},
    [K_COMPRESS] = {"compress", set_compress, true, false},
    [K_EARLY_LOGIN] = {"early_login", set_early_login, true, false},
    /* not expanded: the shell expands them when it runs them */
    [K_POST_SYNC_COMMAND] = {"post_sync_command", set_post_sync_command, false, false},
    [K_NEW_MAIL_COMMAND] = {"new_mail_command", set_new_mail_command, false, false},
    [K_HOOK_TIMEOUT] = {"hook_timeout", set_hook_timeout, true, false},
    [K_PLACEHOLDERS] = {"placeholders", set_placeholders, true, false},
};

static int find_key(const char *name)
{
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(key_defs[i].name, name) == 0)
            return i;
    return -1;
}

/* The key name closest to a misspelt one, or NULL. */
static const char *suggest_key(const char *name)
{
    const char *names[NKEYS];
    for (int i = 0; i < NKEYS; i++)
        names[i] = key_defs[i].name;
    return config_suggest(name, names, NKEYS);
}

/* ---- ~ and $VAR ----------------------------------------------------------- */

/* $HOME, else the password database. NULL if neither knows. */
static const char *home_dir(void)
{
    const char *h = getenv("HOME");
    if (h && h[0] == '/')
        return h;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
}

struct strbuf {
    char *s;
    size_t len, cap;
};

static void sb_put(struct strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 128;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = xrealloc(b->s, cap);
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static bool var_start(char c)
{
    return isalpha((unsigned char)c) || c == '_';
}

static bool var_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Expand a leading ~ and every $VAR / ${VAR} of in. On success *out is
 * malloc'd. secret: the key's value may hold a secret (a command that
 * prints a password), so no part of it goes into a message. */
static int expand_value(struct parser *p, const char *key, const char *in, bool secret,
                        char **out)
{
    struct strbuf b = {0};
    sb_put(&b, "", 0);
    const char *s = in;
    if (s[0] == '~' && (s[1] == '\0' || s[1] == '/')) {
        const char *home = home_dir();
        if (!home) {
            free(b.s);
            return key_error(p, p->line, key, "cannot expand ~: no home directory");
        }
        sb_put(&b, home, strlen(home));
        s++;
    }
    while (*s) {
        const char *dollar = strchr(s, '$');
        if (!dollar) {
            sb_put(&b, s, strlen(s));
            break;
        }
        sb_put(&b, s, (size_t)(dollar - s));
        const char *name = dollar + 1, *end;
        bool braced = *name == '{';
        if (braced)
            name++;
        for (end = name; var_char(*end); end++)
            ;
        if (!var_start(*name) || (braced && *end != '}')) {
            if (braced) {
                free(b.s);
                return secret ? key_error(p, p->line, key, "bad ${...} in the value")
                              : key_error(p, p->line, key, "bad ${...} in \"%s\"", in);
            }
            sb_put(&b, "$", 1); /* "$1", "a$": not a variable */
            s = dollar + 1;
            continue;
        }
        char *var = xstrndup(name, (size_t)(end - name));
        const char *val = getenv(var);
        if (!val) {
            int rc = secret ? key_error(p, p->line, key,
                                        "an environment variable it names is not set (the "
                                        "value is not shown: it may hold a secret)")
                            : key_error(p, p->line, key, "environment variable $%s is not set", var);
            free(var);
            free(b.s);
            return rc;
        }
        free(var);
        sb_put(&b, val, strlen(val));
        s = braced ? end + 1 : end;
    }
    *out = b.s;
    return MS_OK;
}

/* ---- lines ---------------------------------------------------------------- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Cut a comment from a value: '#' at its start or after whitespace. For
 * `folders` a '#' inside double quotes is part of a pattern. */
static void strip_comment(char *v, bool quote_aware)
{
    bool quoted = false;
    for (char *c = v; *c; c++) {
        if (quote_aware && *c == '"')
            quoted = !quoted;
        if (*c == '#' && !quoted && (c == v || c[-1] == ' ' || c[-1] == '\t')) {
            *c = '\0';
            return;
        }
    }
}

static bool valid_account_name(const char *n)
{
    if (!*n || n[0] == '.' || n[0] == '-' || strlen(n) > 64)
        return false;
    for (const char *c = n; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
            return false;
    return true;
}

/* Whether a word from a line that could not be used may be repeated in
 * the error: only something shaped like a key name (lower case, digits,
 * '_'), so a typo such as "hots" is named, while a pasted password or the
 * value of a line without '=' never reaches the terminal or the journal. */
static bool shows_like_key(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32 || !islower((unsigned char)s[0]))
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
            return false;
    return true;
}

/* A line without '=': the key it starts with if that is one of ours
 * ("password secret"), else "line". The rest is never shown. */
static const char *name_of_bad_line(const char *line)
{
    size_t n = 0;
    while (islower((unsigned char)line[n]) || line[n] == '_')
        n++;
    for (int i = 0; i < NKEYS; i++)
        if (strlen(key_defs[i].name) == n && strncmp(key_defs[i].name, line, n) == 0)
            return key_defs[i].name;
    return LABEL_LINE;
}

static int finish_account(struct parser *p);

/* "[account NAME]". The section before it ends here; until a good header
 * follows a bad one, key lines are checked but belong to no account. */
static int section_line(struct parser *p, char *line)
{
    int rc = finish_account(p);
    p->skipping = true;
    char *close = strchr(line, ']');
    if (!close)
        return key_error(p, p->line, LABEL_SECTION, "header without ']'");
    char *after = trim(close + 1);
    if (*after && *after != '#')
        return key_error(p, p->line, LABEL_SECTION, "unexpected text after ']'");
    *close = '\0';
    char *inner = trim(line + 1);
    /* A header that cannot be used is repeated only when it looks like a
     * section or account name: the line may be a pasted password. */
    if (strncmp(inner, "account", 7) != 0 || (inner[7] != ' ' && inner[7] != '\t')) {
        /* "[acount work]": the first word misspelt, the name a valid one */
        char word[16];
        size_t wl = strcspn(inner, " \t");
        const char *name = inner + wl + strspn(inner + wl, " \t");
        static const char *const section_words[] = {"account"};
        if (wl < sizeof word) {
            memcpy(word, inner, wl);
            word[wl] = '\0';
        }
        if (wl < sizeof word && *name && valid_account_name(name) && shows_like_key(word) &&
            config_suggest(word, section_words, 1)) {
            char fix[100]; /* the name is valid: at most 64 */
            snprintf(fix, sizeof fix, "[account %s]", name);
            return key_error_suggest(p, p->line, LABEL_SECTION, fix,
                                     "[%s %s] is not a section this program knows; did you mean %s?", word, name, fix);
        }
        if (shows_like_key(inner))
            return key_error(p, p->line, LABEL_SECTION,
                             "[%s] is not a section this program knows; write [account NAME]", inner);
        return key_error(p, p->line, LABEL_SECTION,
                         "not a section this program knows (not shown: it may hold a secret); "
                         "write [account NAME]");
    }
    char *name = trim(inner + 7);
    if (!valid_account_name(name))
        return key_error(p, p->line, LABEL_ACCOUNT,
                         "not a valid account name (letters, digits, '-', '_', '.'; "
                         "not starting with '.' or '-'; at most 64)");
    struct config *c = p->cfg;
    for (size_t i = 0; i < c->naccounts; i++)
        if (strcmp(c->accounts[i].name, name) == 0)
            return key_error(p, p->line, LABEL_ACCOUNT, "%s is already defined on line %d", name,
                             c->accounts[i].config_line);
    struct account *na = xrealloc(c->accounts, (c->naccounts + 1) * sizeof *na);
    c->accounts = na;
    struct account *a = &c->accounts[c->naccounts++];
    memset(a, 0, sizeof *a);
    a->name = xstrdup(name);
    a->config_file = xstrdup(p->path);
    a->config_line = p->line;
    /* Defaults that do not depend on other keys (the rest in finish). */
    a->type = ACCOUNT_IMAP;
    a->tls = TLS_IMPLICIT;
    a->auth = AUTH_AUTO;
    a->layout = LAYOUT_VERBATIM;
    a->mode = MODE_MIRROR;
    a->expunge = true;
    a->connections = 1;
    a->leave_on_server = true;
    a->max_delete = 50;
    a->timeout = 60;
    a->compress = true;
    a->early_login = true;
    a->placeholders = true;
    a->hook_timeout = 60;
    p->acc = a;
    p->skipping = false;
    memset(p->key_line, 0, sizeof p->key_line);
    memset(p->key_bad, 0, sizeof p->key_bad);
    return rc;
}

/* "key = value" */
static int key_line(struct parser *p, char *line)
{
    char *eq = strchr(line, '=');
    if (!eq)
        return key_error(p, p->line, name_of_bad_line(line),
                         "expected \"key = value\" (the line is not shown: it may hold a secret)");
    *eq = '\0';
    char *key = trim(line);
    int id = find_key(key);
    if (id < 0) {
        /* The suggestion names one of our keys, never the word typed. */
        const char *near = suggest_key(key);
        bool show = shows_like_key(key);
        if (near)
            return key_error_suggest(p, p->line, show ? key : LABEL_LINE, near, "unknown key%s; did you mean %s?",
                                     show ? "" : " (not shown: it may hold a secret)", near);
        return key_error(p, p->line, show ? key : LABEL_LINE, "unknown key%s (the keys are listed in mailsync.conf(5))",
                         show ? "" : " (not shown: it may hold a secret)");
    }
    if (!p->acc) {
        if (p->skipping || p->outside_said) /* said once, or the bad header was */
            return MS_OK;
        p->outside_said = true;
        return key_error(p, p->line, key, "key outside an [account NAME] section; start the file with "
                         "[account NAME]");
    }
    if (p->key_line[id])
        return key_error(p, p->line, key, "set twice in [account %s] (first on line %d)",
                         p->acc->name, p->key_line[id]);
    char *raw = eq + 1;
    strip_comment(raw, id == K_FOLDERS);
    char *value = trim(raw);
    p->key_line[id] = p->line;
    int rc;
    if (!*value) {
        rc = key_error(p, p->line, key, "empty value");
    } else if (!key_defs[id].expand) {
        rc = key_defs[id].set(p, key, value);
    } else {
        char *expanded = NULL;
        bool secret = key_defs[id].secret;
        rc = expand_value(p, key, value, secret, &expanded);
        if (rc == MS_OK && !*expanded && secret)
            rc = key_error(p, p->line, key, "empty value after expanding ~ and $VAR");
        else if (rc == MS_OK && !*expanded)
            rc = key_error(p, p->line, key, "empty value after expanding \"%s\"", value);
        else if (rc == MS_OK)
            rc = key_defs[id].set(p, key, expanded);
        free(expanded);
    }
    if (rc != MS_OK)
        p->key_bad[id] = true; /* reported: not "missing" or "conflicting" too */
    return rc;
}

static int parse_line(struct parser *p, char *line)
{
    size_t n = strlen(line);
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    line = trim(line);
    if (!*line || *line == '#')
        return MS_OK;
    if (*line == '[')
        return section_line(p, line);
    return key_line(p, line);
}

/* ---- end of a section: required keys, cross-key rules, defaults ----------- */

/* Loopback, decided without DNS: localhost, 127.0.0.0/8, ::1 and
 * ::ffff:127.x. Anything else may cross a network. */
static bool host_is_loopback(const char *host)
{
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
        return true;
    char h[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof h) {
        memcpy(h, host + 1, n - 2);
        h[n - 2] = '\0';
    } else if (n < sizeof h) {
        memcpy(h, host, n + 1);
    } else {
        return false;
    }
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, h, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &v6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&v6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
    }
    return false;
}

static int check_required(struct parser *p)
{
    struct account *a = p->acc;
    const struct { const char *key; const char *value; } req[] = {
        {"host", a->host}, {"user", a->user}, {"maildir", a->maildir}};
    int rc = MS_OK;
    for (size_t i = 0; i < sizeof req / sizeof *req; i++)
        if (!req[i].value && !p->key_bad[find_key(req[i].key)])
            rc = key_error(p, a->config_line, req[i].key, "missing in [account %s] (required)", a->name);
    return rc;
}

static int check_credentials(struct parser *p)
{
    struct account *a = p->acc;
    bool oauth = a->auth == AUTH_XOAUTH2 || a->auth == AUTH_OAUTHBEARER;
    if (a->password && a->password_command) {
        int l = p->key_line[K_PASSWORD] > p->key_line[K_PASSWORD_COMMAND]
                    ? p->key_line[K_PASSWORD] : p->key_line[K_PASSWORD_COMMAND];
        return key_error(p, l, l == p->key_line[K_PASSWORD] ? "password" : "password_command",
                         "password and password_command are both set in [account %s]; keep one",
                         a->name);
    }
    if (oauth && !a->oauth_token_command)
        return key_error(p, p->key_line[K_AUTH], "auth",
                         "%s needs oauth_token_command in [account %s]",
                         a->auth == AUTH_XOAUTH2 ? "xoauth2" : "oauthbearer", a->name);
    if (a->oauth_token_command && !oauth)
        return key_error(p, p->key_line[K_OAUTH_TOKEN_COMMAND], "oauth_token_command",
                         "needs auth = xoauth2 or auth = oauthbearer in [account %s]", a->name);
    if (!oauth && !a->password && !a->password_command)
        return key_error(p, a->config_line, "password_command",
                         "[account %s] needs password_command or password "
                         "(or oauth_token_command with auth = xoauth2)",
                         a->name);
    return MS_OK;
}

/* tls = none sends the password in clear: only to this machine, or when
 * the user says so explicitly. */
static int check_plaintext(struct parser *p)
{
    struct account *a = p->acc;
    if (a->tls != TLS_NONE || a->allow_plaintext || host_is_loopback(a->host))
        return MS_OK;
    return key_error(p, p->key_line[K_TLS], "tls",
                     "none would send the password in clear to %s; refused unless the host "
                     "is a loopback address or allow_plaintext = yes",
                     a->host);
}

/* $XDG_STATE_HOME/mailsync/NAME.sqlite, else ~/.local/state/mailsync/... */
static int default_state_path(struct parser *p)
{
    struct account *a = p->acc;
    const char *xdg = getenv("XDG_STATE_HOME");
    char *path = NULL;
    int n;
    if (xdg && xdg[0] == '/') {
        n = asprintf(&path, "%s/mailsync/%s.sqlite", xdg, a->name);
    } else {
        const char *home = home_dir();
        if (!home)
            return key_error(p, a->config_line, "state",
                             "no home directory for the default; set state = /path");
        n = asprintf(&path, "%s/.local/state/mailsync/%s.sqlite", home, a->name);
    }
    if (n < 0)
        abort();
    a->state_path = path;
    return MS_OK;
}

static int finish_account(struct parser *p)
{
    struct account *a = p->acc;
    if (!a)
        return MS_OK;
    int rc = check_required(p);
    /* The cross-key rules, unless a key they read was bad (said already). */
    int x = MS_OK;
    const bool *bad = p->key_bad;
    if (!bad[K_PASSWORD] && !bad[K_PASSWORD_COMMAND] && !bad[K_AUTH] && !bad[K_OAUTH_TOKEN_COMMAND])
        x = check_credentials(p);
    if (x == MS_OK && a->host && !bad[K_TLS] && !bad[K_ALLOW_PLAINTEXT])
        x = check_plaintext(p);
    if (x != MS_OK)
        rc = x;
    if (!p->key_line[K_PORT]) {
        bool implicit = a->tls == TLS_IMPLICIT;
        if (a->type == ACCOUNT_IMAP)
            a->port = implicit ? 993 : 143;
        else
            a->port = implicit ? 995 : 110;
    }
    if (!a->state_path && !bad[K_STATE] && (x = default_state_path(p)) != MS_OK)
        rc = x;
    if (a->nfolders == 0)
        add_pattern(a, "*", 1);
    p->acc = NULL;
    return rc;
}

/* ---- the file ------------------------------------------------------------- */

/* Whoever can write the config can run commands as the user
 * (password_command) or send the password to a host of their choosing, so
 * (as OpenSSH does for its config) the file must belong to the user or
 * root and be writable by no one else. Its directory is not checked: a
 * file put in place of it by someone else is theirs, and refused here (the
 * check is on the file opened, after any symbolic link). */
static int check_trusted_file(const char *path, const struct stat *st, struct ms_error *err)
{
    if (st->st_uid != 0 && st->st_uid != getuid())
        return ms_error_set(err, MS_EUSAGE,
                            "%s: refused: the file belongs to another user (uid %u); it must be "
                            "yours or root's",
                            path, (unsigned)st->st_uid);
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return ms_error_set(err, MS_EUSAGE,
                            "%s: refused: the file is writable by group or others, who could run "
                            "commands as you through it; run \"chmod go-w %s\"",
                            path, path);
    return MS_OK;
}

static int read_file(const char *path, char **text, size_t *len, mode_t *mode,
                     struct ms_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return ms_error_errno(err, MS_EUSAGE, errno, "%s: cannot read", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ms_error_errno(err, MS_EUSAGE, e, "%s: cannot read", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ms_error_set(err, MS_EUSAGE, "%s: cannot read: not a regular file", path);
    }
    int rc = check_trusted_file(path, &st, err);
    if (rc != MS_OK) {
        close(fd);
        return rc;
    }
    if (st.st_size > CONFIG_MAX_BYTES) {
        close(fd);
        return ms_error_set(err, MS_EUSAGE, "%s: cannot read: larger than %d bytes", path,
                            CONFIG_MAX_BYTES);
    }
    char *buf = xmalloc(CONFIG_MAX_BYTES + 1);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, CONFIG_MAX_BYTES + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return ms_error_errno(err, MS_EUSAGE, e, "%s: cannot read", path);
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > CONFIG_MAX_BYTES) {
            close(fd);
            free(buf);
            return ms_error_set(err, MS_EUSAGE, "%s: cannot read: larger than %d bytes", path,
                                CONFIG_MAX_BYTES);
        }
    }
    close(fd);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    *mode = st.st_mode;
    return MS_OK;
}

static int parse_text(struct parser *p, char *text, size_t len)
{
    char *line = text, *end = text + len;
    p->line = 0;
    while (line < end) {
        p->line++;
        char *nl = memchr(line, '\n', (size_t)(end - line));
        char *stop = nl ? nl : end;
        if (memchr(line, '\0', (size_t)(stop - line))) /* not a text file: the rest is noise */
            return key_error(p, p->line, LABEL_LINE, "contains a NUL byte (is this a text file?)");
        *stop = '\0';
        parse_line(p, line); /* an error is kept; the next line is read all the same */
        line = stop + 1;
    }
    finish_account(p);
    return p->cfg->nerrors_total ? MS_EUSAGE : MS_OK;
}

int config_load(const char *path, struct config *out, struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    mode_t mode = 0;
    int rc = read_file(path, &text, &len, &mode, err);
    if (rc != MS_OK)
        return rc;
    out->path = xstrdup(path);
    struct parser p = {.path = path, .cfg = out, .file_mode = mode, .err = err};
    rc = parse_text(&p, text, len);
    sort_errors(&p);
    /* The text may hold a password. */
    explicit_bzero(text, len);
    free(text);
    if (rc == MS_OK && out->naccounts == 0)
        rc = ms_error_set(err, MS_EUSAGE, "%s: no [account NAME] section", path);
    if (rc != MS_OK) { /* the messages stay, nothing else */
        char **errors = out->errors;
        struct config_error *info = out->error_info;
        size_t nerrors = out->nerrors, total = out->nerrors_total;
        out->errors = NULL;
        out->error_info = NULL;
        out->nerrors = 0;
        config_free(out);
        out->errors = errors;
        out->error_info = info;
        out->nerrors = nerrors;
        out->nerrors_total = total;
    }
    return rc;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->naccounts; i++)
        account_free(&c->accounts[i]);
    free(c->accounts);
    free(c->path);
    for (size_t i = 0; i < c->nerrors; i++) {
        free(c->errors[i]);
        free(c->error_info[i].key);
        free(c->error_info[i].message);
        free(c->error_info[i].suggestion);
    }
    free(c->errors);
    free(c->error_info);
    memset(c, 0, sizeof *c);
}

char *config_default_path(void)
{
    const char *env = getenv("MAILSYNC_CONFIG");
    if (env && *env)
        return xstrdup(env);
    char *path = NULL;
    int n;
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && xdg[0] == '/') {
        n = asprintf(&path, "%s/mailsync/config", xdg);
    } else {
        const char *home = home_dir();
        if (!home)
            return NULL;
        n = asprintf(&path, "%s/.config/mailsync/config", home);
    }
    if (n < 0)
        abort();
    return path;
}

/* The state DB's directory also holds its journals and the lock, files
 * that anyone who can write there could plant or swap (a -wal file
 * SQLite would replay into the DB, a lock taken away): it must belong to
 * the user or root and be writable by no one else. When it does not exist
 * yet, the run creates it (0700) in the nearest directory that does,
 * which may be shared only with the sticky bit (/tmp): others cannot then
 * remove or rename what is ours. */
int config_check_state_dir(const struct account *a, struct ms_error *err)
{
    char *dir = xstrdup(a->state_path);
    bool own = true; /* dir is the state DB's own directory, not an ancestor */
    struct stat st;
    for (;; own = false) {
        char *slash = strrchr(dir, '/');
        if (slash)
            slash[slash == dir] = '\0'; /* the parent; "/x" lives in "/" */
        if (slash && stat(dir, &st) == 0)
            break;
        /* Other stat errors are the run's to report (exit 5); a path
         * without '/' cannot come from set_path(). */
        if (!slash || errno != ENOENT || strcmp(dir, "/") == 0) {
            free(dir);
            return MS_OK;
        }
    }
    int rc = MS_OK;
    bool shared = st.st_mode & (S_IWGRP | S_IWOTH);
    if (st.st_uid != 0 && st.st_uid != getuid())
        rc = ms_error_set(err, MS_EUSAGE,
                          "account %s: refused: the state directory %s belongs to another user "
                          "(uid %u); set state = to a directory of yours",
                          a->name, dir, (unsigned)st.st_uid);
    else if (shared && (own || !(st.st_mode & S_ISVTX)))
        rc = ms_error_set(err, MS_EUSAGE,
                          "account %s: refused: the state directory %s is writable by group or "
                          "others, who could plant files beside the state DB; run "
                          "\"chmod go-w %s\"",
                          a->name, dir, dir);
    free(dir);
    return rc;
}

struct account *config_find(struct config *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->naccounts; i++)
        if (strcmp(c->accounts[i].name, name) == 0)
            return &c->accounts[i];
    return NULL;
}

/* ---- password and token commands ----------------------------------------- */

/* Read all of fd into buf (at most cap bytes kept; the rest is drained so
 * the command never blocks on a full pipe). Returns bytes kept, -1 on a
 * read error. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    char sink[4096];
    for (;;) {
        char *dst = n < cap ? buf + n : sink;
        size_t room = n < cap ? cap - n : sizeof sink;
        ssize_t r = read(fd, dst, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        if (dst != sink)
            n += (size_t)r;
        else
            explicit_bzero(sink, sizeof sink);
    }
    return (ssize_t)n;
}

/* Run cmd with /bin/sh -c (stdin /dev/null, stderr inherited) and return
 * the first line of its stdout in *out. what names the key in messages. */
static int command_first_line(const struct account *a, const char *what, const char *cmd, int stderr_fd,
                              char **out, struct ms_error *err)
{
    *out = NULL;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return ms_error_errno(err, MS_EUSAGE, errno, "account %s: %s: cannot run", a->name, what);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    if (stderr_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, stderr_fd, 2);
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        return ms_error_errno(err, MS_EUSAGE, rc, "account %s: %s: cannot run /bin/sh", a->name,
                              what);
    }
    char *buf = xmalloc(COMMAND_MAX_OUTPUT + 1);
    ssize_t n = read_all(pipefd[0], buf, COMMAND_MAX_OUTPUT);
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    size_t kept = n > 0 ? (size_t)n : 0;
    buf[kept] = '\0';
    const char *nl = memchr(buf, '\n', kept);
    size_t line = nl ? (size_t)(nl - buf) : kept;
    if (line > 0 && buf[line - 1] == '\r')
        line--;
    if (n < 0)
        rc = ms_error_set(err, MS_EUSAGE, "account %s: %s: cannot read its output", a->name, what);
    else if (WIFSIGNALED(status))
        rc = ms_error_set(err, MS_EUSAGE, "account %s: %s was killed by signal %d", a->name, what,
                          WTERMSIG(status));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = ms_error_set(err, MS_EUSAGE, "account %s: %s failed (exit status %d)", a->name, what,
                          WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    else if (line == 0)
        rc = ms_error_set(err, MS_EUSAGE, "account %s: %s printed nothing on its first line",
                          a->name, what);
    else if (memchr(buf, '\0', line))
        rc = ms_error_set(err, MS_EUSAGE, "account %s: %s printed a NUL byte", a->name, what);
    else
        *out = xstrndup(buf, line);
    explicit_bzero(buf, COMMAND_MAX_OUTPUT + 1);
    free(buf);
    return rc;
}

int config_password(const struct account *a, int stderr_fd, char **out, struct ms_error *err)
{
    *out = NULL;
    if (a->password) {
        *out = xstrdup(a->password);
        return MS_OK;
    }
    if (a->password_command)
        return command_first_line(a, "password_command", a->password_command, stderr_fd, out, err);
    return ms_error_set(err, MS_EUSAGE, "account %s: no password or password_command", a->name);
}

int config_oauth_token(const struct account *a, int stderr_fd, char **out, struct ms_error *err)
{
    *out = NULL;
    if (a->oauth_token_command)
        return command_first_line(a, "oauth_token_command", a->oauth_token_command, stderr_fd, out, err);
    return ms_error_set(err, MS_EUSAGE, "account %s: no oauth_token_command", a->name);
}
