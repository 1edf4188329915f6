/* SPDX-License-Identifier: MIT */
/*
 * fuzz_config.c: libFuzzer target for cmd/config.c config_load(), the INI
 * parser (the config is user input, but it is also what a careless
 * `curl | sh` or a shared dotfiles repo writes, and it holds secrets).
 *
 * The input is written to a fixed per-process file (mode 0600) and loaded;
 * then the same file, made readable by group and others (0644), is loaded
 * again. Properties:
 *  - loading never runs a program: posix_spawn, fork, exec*, system and
 *    popen are interposed here and abort while config_load runs (commands
 *    belong to config_password / config_oauth_token only);
 *  - success: at least one account, and every account obeys the rules of
 *    config.h / account.h (valid unique names, required keys present,
 *    absolute paths, ranges, password xor password_command, oauth keys
 *    consistent, tls = none only for loopback or with allow_plaintext,
 *    at least one non-empty folder pattern, config_find finds each);
 *  - failure: MS_EUSAGE, a message starting with the file name, the config
 *    emptied, and never the value of a `password` line in the message;
 *  - a password is refused in the 0644 file, and otherwise the file's mode
 *    does not change the outcome.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/config.h"
#include "fuzz_util.h"

/* ---- nothing may be executed while loading ------------------------------ */

static bool in_load;

#define NO_EXEC(name)                                                                                        \
    do {                                                                                                     \
        if (in_load) {                                                                                       \
            fprintf(stderr, "\n*** config_load called %s\n", name);                                          \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

#define REAL(ret, name, ...) ((ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, name))

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *at,
                char *const argv[], char *const envp[])
{
    NO_EXEC("posix_spawn");
    return REAL(int, "posix_spawn", pid_t *, const char *, const posix_spawn_file_actions_t *,
                const posix_spawnattr_t *, char *const *, char *const *)(pid, path, fa, at, argv, envp);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *at,
                 char *const argv[], char *const envp[])
{
    NO_EXEC("posix_spawnp");
    return REAL(int, "posix_spawnp", pid_t *, const char *, const posix_spawn_file_actions_t *,
                const posix_spawnattr_t *, char *const *, char *const *)(pid, file, fa, at, argv, envp);
}

pid_t fork(void)
{
    NO_EXEC("fork");
    return REAL(pid_t, "fork", void)();
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    NO_EXEC("execve");
    return REAL(int, "execve", const char *, char *const *, char *const *)(path, argv, envp);
}

int execvp(const char *file, char *const argv[])
{
    NO_EXEC("execvp");
    return REAL(int, "execvp", const char *, char *const *)(file, argv);
}

int system(const char *cmd)
{
    NO_EXEC("system");
    return REAL(int, "system", const char *)(cmd);
}

FILE *popen(const char *cmd, const char *type)
{
    NO_EXEC("popen");
    return REAL(FILE *, "popen", const char *, const char *)(cmd, type);
}

/* ---- the file ------------------------------------------------------------- */

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(path, sizeof path, "/tmp/mailsync-fuzz-config.%ld", (long)getpid());
    /* Fixed environment so $VAR and ~ expansions are reproducible. */
    setenv("HOME", "/home/fuzz", 1);
    setenv("FUZZ", "value", 1);
    setenv("FUZZ_PATH", "/var/mail/x", 1);
    setenv("EMPTY", "", 1);
    unsetenv("XDG_STATE_HOME");
    return 0;
}

static void write_file(const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "cannot create %s", path);
    CHECK(fchmod(fd, 0600) == 0, "chmod");
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        CHECK(w > 0, "write %s", path);
        off += (size_t)w;
    }
    close(fd);
}

/* ---- the rules of a loaded account ---------------------------------------- */

static bool valid_name(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 64 || n[0] == '.' || n[0] == '-')
        return false;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') || *n == '-' ||
              *n == '_' || *n == '.'))
            return false;
    return true;
}

/* An independent loopback oracle: names, then numeric addresses. */
static bool loopback(const char *host)
{
    if (!strcasecmp(host, "localhost") || !strcasecmp(host, "localhost."))
        return true;
    char h[256];
    size_t n = strlen(host);
    if (n >= sizeof h)
        return false;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        memcpy(h, host + 1, n - 2);
        h[n - 2] = '\0';
    } else {
        memcpy(h, host, n + 1);
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST}, *ai = NULL;
    if (getaddrinfo(h, NULL, &hints, &ai) != 0)
        return false;
    bool lo = false;
    if (ai->ai_family == AF_INET) {
        const struct sockaddr_in *sin = (const void *)ai->ai_addr;
        lo = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    } else if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)ai->ai_addr;
        const uint8_t *b = s6->sin6_addr.s6_addr;
        static const uint8_t one[16] = {[15] = 1};
        static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
        lo = !memcmp(b, one, 16) || (!memcmp(b, mapped, 12) && b[12] == 127);
    }
    freeaddrinfo(ai);
    return lo;
}

static bool abs_path(const char *p)
{
    return p && p[0] == '/';
}

static void check_account(struct config *c, size_t i)
{
    struct account *a = &c->accounts[i];
    CHECK(a->name && valid_name(a->name), "invalid account name");
    for (size_t j = 0; j < i; j++)
        CHECK(strcmp(c->accounts[j].name, a->name) != 0, "account %s defined twice", a->name);
    CHECK(config_find(c, a->name) == a, "config_find(%s)", a->name);
    CHECK(a->config_file && strcmp(a->config_file, path) == 0 && a->config_line >= 1, "account origin");
    CHECK(a->type == ACCOUNT_IMAP || a->type == ACCOUNT_POP3, "type %d", a->type);
    CHECK(a->host && *a->host, "%s: no host", a->name);
    for (const char *h = a->host; *h; h++)
        CHECK((unsigned char)*h > ' ' && *h != 0x7f && *h != '/', "%s: bad host \"%s\"", a->name, a->host);
    CHECK(a->port >= 1 && a->port <= 65535, "%s: port %d", a->name, a->port);
    CHECK(a->tls == TLS_IMPLICIT || a->tls == TLS_STARTTLS || a->tls == TLS_NONE, "tls %d", a->tls);
    CHECK(a->tls != TLS_NONE || a->allow_plaintext || loopback(a->host),
          "%s: tls = none to non-loopback host \"%s\" without allow_plaintext", a->name, a->host);
    CHECK(a->user && *a->user, "%s: no user", a->name);
    bool oauth = a->auth == AUTH_XOAUTH2 || a->auth == AUTH_OAUTHBEARER;
    CHECK(a->auth >= AUTH_AUTO && a->auth <= AUTH_OAUTHBEARER, "auth %d", a->auth);
    CHECK(!(a->password && a->password_command), "%s: password and password_command", a->name);
    CHECK(!oauth || a->oauth_token_command, "%s: oauth without a token command", a->name);
    CHECK(!a->oauth_token_command || oauth, "%s: token command without oauth", a->name);
    CHECK(oauth || a->password || a->password_command, "%s: no credentials", a->name);
    CHECK(!a->password || *a->password, "%s: empty password", a->name);
    CHECK(!a->ca_file || abs_path(a->ca_file), "%s: relative ca_file", a->name);
    CHECK(abs_path(a->maildir), "%s: maildir not absolute", a->name);
    CHECK(abs_path(a->state_path), "%s: state not absolute", a->name);
    CHECK(a->nfolders >= 1 && a->folders, "%s: no folder patterns", a->name);
    for (size_t k = 0; k < a->nfolders; k++)
        CHECK(a->folders[k] && *a->folders[k] && strcmp(a->folders[k], "!") != 0, "%s: empty pattern %zu", a->name,
              k);
    CHECK(a->layout == LAYOUT_VERBATIM || a->layout == LAYOUT_MAILDIRPP, "layout %d", a->layout);
    CHECK(a->mode == MODE_MIRROR || a->mode == MODE_BACKUP, "mode %d", a->mode);
    CHECK(a->server_retention_days >= 0 && a->server_retention_days <= 36500, "retention %d",
          a->server_retention_days);
    CHECK(a->connections >= 1 && a->connections <= 16, "connections %d", a->connections);
    CHECK(a->max_delete >= 0 && a->max_delete <= 100, "max_delete %d", a->max_delete);
    CHECK(a->timeout >= 1 && a->timeout <= 86400, "timeout %d", a->timeout);
}

static int load(mode_t mode, struct config *c, struct ms_error *err, const char *text);

/* Whether msg shows the value v[0..vn) of a password line of text: the
 * line's value is replaced by other bytes of the same length and the file
 * loaded again; if the text is then gone from the message, it came from
 * the password (and not from the file name or fixed wording). */
static void check_password_hidden(const char *msg, const char *text, mode_t mode, const char *v, size_t vn)
{
    if (vn < 6)
        return;
    char *val = strndup(v, vn);
    if (!val)
        abort();
    if (strstr(msg, val)) {
        size_t len = strlen(text);
        char *other = strdup(text);
        if (!other)
            abort();
        for (size_t i = 0; i < vn; i++)
            other[(size_t)(v - text) + i] = v[i] == 'Q' ? 'q' : 'Q';
        write_file((const uint8_t *)other, len);
        struct config c2;
        struct ms_error err2;
        load(mode, &c2, &err2, NULL);
        config_free(&c2);
        write_file((const uint8_t *)text, len);
        if (!strstr(err2.msg, val)) {
            fuzz_dump("password value", val, vn);
            fuzz_dump("message", msg, strlen(msg));
            CHECK(0, "an error message shows a password");
        }
        free(other);
    }
    free(val);
}

/* Check every `password = VALUE` line of text against msg. */
static void check_no_password_in(const char *msg, const char *text, mode_t mode)
{
    const char *line = text;
    while (*line) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        const char *p = line, *end = line + n;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(end - p) > 8 && !strncmp(p, "password", 8) && (p[8] == ' ' || p[8] == '\t' || p[8] == '=')) {
            const char *eq = memchr(p, '=', (size_t)(end - p));
            if (eq) {
                const char *v = eq + 1;
                while (v < end && (*v == ' ' || *v == '\t'))
                    v++;
                size_t vn = (size_t)(end - v);
                while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t' || v[vn - 1] == '\r'))
                    vn--;
                check_password_hidden(msg, text, mode, v, vn);
            }
        }
        line += n + (nl != NULL);
    }
}

/* Load the file with the given mode; text (may be NULL) is its content,
 * for the password check. */
static int load(mode_t mode, struct config *c, struct ms_error *err, const char *text)
{
    CHECK(chmod(path, mode) == 0, "chmod %s", path);
    memset(err, 0, sizeof *err);
    in_load = true;
    int rc = config_load(path, c, err);
    in_load = false;
    if (rc == MS_OK) {
        CHECK(c->naccounts >= 1 && c->accounts, "success without accounts");
        CHECK(c->path && strcmp(c->path, path) == 0, "config path");
        for (size_t i = 0; i < c->naccounts; i++)
            check_account(c, i);
    } else {
        CHECK(rc == MS_EUSAGE, "config_load returned %d", rc);
        CHECK(memchr(err->msg, '\0', sizeof err->msg) != NULL, "message not terminated");
        CHECK(strncmp(err->msg, path, strlen(path)) == 0, "message does not name the file: \"%s\"", err->msg);
        CHECK(c->naccounts == 0 && c->accounts == NULL && c->path == NULL, "config not emptied after failure");
        if (text)
            check_no_password_in(err->msg, text, mode);
    }
    return rc;
}

static bool has_password(const struct config *c)
{
    for (size_t i = 0; i < c->naccounts; i++)
        if (c->accounts[i].password)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0; /* the 1 MiB cap is not what this explores */
    write_file(data, size);
    /* For the password check (inputs without NUL: the text is the file). */
    char *text = memchr(data, '\0', size) ? NULL : fuzz_strndup(data, size);

    struct config priv, open_;
    struct ms_error err;
    int rc_priv = load(0600, &priv, &err, text);
    int rc_open = load(0644, &open_, &err, text);

    CHECK(rc_open != MS_OK || !has_password(&open_), "a password was read from a 0644 file");
    if (rc_open == MS_OK)
        CHECK(rc_priv == MS_OK && priv.naccounts == open_.naccounts, "0644 loads but 0600 does not");
    if (rc_priv == MS_OK && !has_password(&priv))
        CHECK(rc_open == MS_OK, "the file mode changed the outcome without a password: %s", err.msg);

    config_free(&priv);
    config_free(&open_);
    config_free(&priv); /* twice is fine: it empties the struct */
    free(text);
    return 0;
}
