/* SPDX-License-Identifier: MIT */
/*
 * hooks.c: see hooks.h.
 */
#include "cmd/hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd/output.h"
#include "sync/log.h"
#include "sync/util.h"

extern char **environ;

/* The names of the folders of res with new mail, one per line (malloc'd,
 * "" when none). */
static char *new_folders(const struct engine_result *res)
{
    size_t len = 0;
    char *s = xstrdup("");
    for (size_t i = 0; i < res->nfolders; i++) {
        const struct engine_folder_result *f = &res->folders[i];
        if (!f->fetched || !f->name)
            continue;
        size_t n = strlen(f->name);
        s = xrealloc(s, len + n + 2);
        if (len)
            s[len++] = '\n';
        memcpy(s + len, f->name, n + 1);
        len += n;
    }
    return s;
}

/* environ plus the MAILSYNC_* variables (malloc'd strings, NULL-terminated) */
static char **hook_env(const struct account *a, const char *command, const struct engine_result *res,
                       const struct engine_folder_result *c, const char *folders)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = xcalloc(n + 16, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "MAILSYNC_", 9) != 0)
            env[k++] = xstrdup(environ[i]);
    char buf[64];
#define ADD(name, value)                                                                                       \
    do {                                                                                                        \
        const char *v_ = (value);                                                                               \
        env[k] = xmalloc(strlen(name) + strlen(v_) + 2);                                                        \
        sprintf(env[k++], "%s=%s", name, v_);                                                                   \
    } while (0)
#define ADD_N(name, num)                                                                                        \
    do {                                                                                                        \
        snprintf(buf, sizeof buf, "%zu", (size_t)(num));                                                       \
        ADD(name, buf);                                                                                         \
    } while (0)
    ADD("MAILSYNC_ACCOUNT", a->name);
    ADD("MAILSYNC_COMMAND", command);
    ADD("MAILSYNC_MAILDIR", a->maildir);
    ADD_N("MAILSYNC_EXIT", res->status);
    ADD_N("MAILSYNC_NEW", c->fetched);
    ADD("MAILSYNC_NEW_FOLDERS", folders);
    ADD_N("MAILSYNC_UPLOADED", c->uploaded);
    ADD_N("MAILSYNC_DELETED", c->deleted);
    ADD_N("MAILSYNC_FLAGGED", c->flagged);
    ADD_N("MAILSYNC_MOVED", c->moved + c->moved_on_server);
    ADD_N("MAILSYNC_FAILED", c->failed);
#undef ADD_N
#undef ADD
    env[k] = NULL;
    return env;
}

static void env_free(char **env)
{
    for (size_t i = 0; env[i]; i++)
        free(env[i]);
    free(env);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Run one hook; a warning when it cannot start, fails or overruns. */
static void run_hook(const struct account *a, const char *key, const char *cmd, char **env, int json_fd)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    if (json_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, json_fd, 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    /* its output goes with mailsync's messages, never into a --json stdout */
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    /* its own process group, so a timeout stops what it started too */
    posix_spawnattr_setpgroup(&at, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    if (json_fd >= 0)
        lseek(json_fd, 0, SEEK_SET);
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        log_msg(LOG_WARN, "%s: %s: cannot run /bin/sh: %s", a->name, key, strerror(rc));
        return;
    }
    log_msg(LOG_VERBOSE, "%s: running %s", a->name, key);
    double deadline = now_s() + a->hook_timeout;
    int status = 0;
    bool killed = false;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
        if (!killed && now_s() >= deadline) {
            log_msg(LOG_WARN, "%s: %s still running after %d s (hook_timeout): stopped", a->name, key,
                    a->hook_timeout);
            kill(-pid, SIGTERM);
            killed = true;
            deadline = now_s() + 2;
        } else if (killed && now_s() >= deadline) {
            kill(-pid, SIGKILL);
            deadline = now_s() + 3600;
        }
        struct timespec t = {0, 20 * 1000000L};
        nanosleep(&t, NULL);
    }
    if (killed)
        return;
    if (WIFSIGNALED(status))
        log_msg(LOG_WARN, "%s: %s was killed by signal %d", a->name, key, WTERMSIG(status));
    else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        log_msg(LOG_WARN, "%s: %s failed (exit status %d)", a->name, key, WEXITSTATUS(status));
}

void hooks_run(const struct account *a, const char *command, const struct engine_result *res)
{
    if (!a->post_sync_command && !a->new_mail_command)
        return;
    struct engine_folder_result c;
    engine_result_totals(res, &c);
    bool new_mail = c.fetched > 0 && a->new_mail_command;
    if (!a->post_sync_command && !new_mail)
        return;
    char *folders = new_folders(res);
    char **env = hook_env(a, command, res, &c, folders);
    /* the run's JSON document, readable from the start by each hook */
    int fd = memfd_create("mailsync-hook", MFD_CLOEXEC);
    if (fd >= 0) {
        FILE *f = fdopen(dup(fd), "w");
        if (f) {
            output_json_copy(f, command, res, res->status);
            fclose(f);
        }
    }
    if (a->post_sync_command)
        run_hook(a, "post_sync_command", a->post_sync_command, env, fd);
    if (new_mail)
        run_hook(a, "new_mail_command", a->new_mail_command, env, fd);
    if (fd >= 0)
        close(fd);
    env_free(env);
    free(folders);
}
