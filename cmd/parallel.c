/* SPDX-License-Identifier: MIT */
/*
 * parallel.c: several accounts at once, a process each (parallel.h).
 *
 * A child gets three memory files: one for its stdout, one for its stderr
 * (one for both when they are the same file here, so a terminal sees its
 * lines in their order) and one for its result. This process waits for
 * children with a short poll (no race with a signal that comes between a
 * check and a wait), copies each one's text out when it ends, reads its
 * result, and starts the next account.
 *
 * Signals: on a terminal, Ctrl-C reaches every process of the group; from
 * kill(1) or systemd only this one may get it. Either way each child's
 * handler only sets its stop flag (it never resets itself, so the copy of
 * the signal forwarded from here is harmless), and the child stops at its
 * next safe point and reports. This process keeps the program's handler:
 * its second signal ends it, and PR_SET_PDEATHSIG then ends the children
 * at once, as a second signal ends a serial run.
 */
#include "cmd/parallel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sync/log.h"
#include "sync/util.h"

/* ------------------------------------------------------------------ */
/* fds */

/* A file in memory, or else an unlinked temporary file (close-on-exec). */
static int scratch_fd(const char *name)
{
#ifdef MFD_CLOEXEC
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd >= 0)
        return fd;
#else
    (void)name;
#endif
    FILE *f = tmpfile();
    if (!f)
        return -1;
    int copy = dup(fileno(f));
    fclose(f);
    if (copy >= 0)
        fcntl(copy, F_SETFD, FD_CLOEXEC);
    return copy;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The whole of fd from its start (malloc'd, *len bytes), or NULL. */
static char *read_whole(int fd, size_t *len)
{
    *len = 0;
    if (lseek(fd, 0, SEEK_SET) != 0)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap)
            buf = xrealloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return buf;
}

static void copy_out(int from, int to)
{
    size_t len;
    char *text = read_whole(from, &len);
    if (text && len)
        (void)write_all(to, text, len);
    free(text);
}

/* ------------------------------------------------------------------ */
/* the result, carried from the child */

/* The structs are copied whole (so a counter added to them comes along),
 * then their strings; every pointer member of struct engine_result and
 * struct engine_folder_result must be carried here. */
#define RESULT_MAGIC "mailsync-result-1"
#define RESULT_END "end"

static void put(FILE *f, const void *p, size_t n)
{
    fwrite(p, 1, n, f);
}

static void put_str(FILE *f, const char *s)
{
    uint32_t len = s ? (uint32_t)strlen(s) : UINT32_MAX;
    put(f, &len, sizeof len);
    if (s)
        put(f, s, len);
}

static int result_write(int fd, const struct engine_result *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -1;
    put(f, RESULT_MAGIC, sizeof RESULT_MAGIC);
    put(f, r, sizeof *r);
    put_str(f, r->account);
    for (size_t i = 0; i < r->nfolders; i++) {
        put(f, &r->folders[i], sizeof r->folders[i]);
        put_str(f, r->folders[i].name);
        put_str(f, r->folders[i].path);
        put_str(f, r->folders[i].error);
    }
    if (r->folder_patterns_unmatched)
        put(f, r->folder_patterns_unmatched, r->nfolder_patterns * sizeof *r->folder_patterns_unmatched);
    put(f, RESULT_END, sizeof RESULT_END);
    int rc = fclose(f) == 0 ? write_all(fd, buf, len) : -1;
    free(buf);
    return rc;
}

struct reader {
    const char *p;
    size_t left;
};

static int get(struct reader *rd, void *out, size_t n)
{
    if (rd->left < n)
        return -1;
    memcpy(out, rd->p, n);
    rd->p += n;
    rd->left -= n;
    return 0;
}

static int get_str(struct reader *rd, char **out)
{
    uint32_t len;
    *out = NULL;
    if (get(rd, &len, sizeof len) != 0)
        return -1;
    if (len == UINT32_MAX)
        return 0;
    if (rd->left < len)
        return -1;
    *out = xmalloc((size_t)len + 1);
    memcpy(*out, rd->p, len);
    (*out)[len] = '\0';
    rd->p += len;
    rd->left -= len;
    return 0;
}

static int result_read(int fd, struct engine_result *r)
{
    memset(r, 0, sizeof *r);
    size_t len;
    char *buf = read_whole(fd, &len);
    if (!buf)
        return -1;
    struct reader rd = {.p = buf, .left = len};
    char magic[sizeof RESULT_MAGIC], end[sizeof RESULT_END];
    int rc = -1;
    if (get(&rd, magic, sizeof magic) != 0 || memcmp(magic, RESULT_MAGIC, sizeof magic) != 0 ||
        get(&rd, r, sizeof *r) != 0)
        goto out;
    size_t nfolders = r->nfolders;
    bool had_unmatched = r->folder_patterns_unmatched != NULL; /* the child's pointer: only a mark */
    r->folder_patterns_unmatched = NULL;
    r->account = NULL;
    r->folders = NULL;
    r->nfolders = 0;
    r->error[sizeof r->error - 1] = '\0';
    if (get_str(&rd, &r->account) != 0 || nfolders > rd.left / sizeof *r->folders)
        goto out;
    r->folders = xcalloc(nfolders ? nfolders : 1, sizeof *r->folders);
    for (size_t i = 0; i < nfolders; i++) {
        struct engine_folder_result *f = &r->folders[i];
        if (get(&rd, f, sizeof *f) != 0)
            goto out;
        f->name = f->path = f->error = NULL;
        r->nfolders = i + 1;
        if (get_str(&rd, &f->name) != 0 || get_str(&rd, &f->path) != 0 || get_str(&rd, &f->error) != 0)
            goto out;
    }
    if (had_unmatched) {
        if (r->nfolder_patterns > rd.left / sizeof *r->folder_patterns_unmatched)
            goto out;
        r->folder_patterns_unmatched = xcalloc(r->nfolder_patterns + 1, sizeof *r->folder_patterns_unmatched);
        if (get(&rd, r->folder_patterns_unmatched, r->nfolder_patterns * sizeof *r->folder_patterns_unmatched) != 0)
            goto out;
    } else {
        r->nfolder_patterns = 0;
    }
    if (get(&rd, end, sizeof end) == 0 && memcmp(end, RESULT_END, sizeof end) == 0 && rd.left == 0)
        rc = 0;
out:
    free(buf);
    if (rc != 0)
        engine_result_free(r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* children */

struct child {
    pid_t pid; /* 0: the slot is free */
    size_t account;
    int out, err, result; /* err == out when stdout and stderr are one file */
};

static volatile sig_atomic_t *child_stop;

/* A child's SIGINT/SIGTERM: stop at the next safe point. Unlike the
 * program's handler it stays: the same signal may come twice (from the
 * terminal and forwarded by the parent). */
static void child_on_stop(int sig)
{
    *child_stop = sig;
}

/* The terminal, one account at a time (parallel_terminal_begin): a lock
 * on a file all the account processes share (a POSIX record lock, owned
 * per process, so processes sharing the open file still exclude each
 * other), and the program's stderr as it was before the capture. */
static int terminal_lock = -1, terminal_err = -1;
static bool in_account_process;

static int terminal_lock_op(short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1, .l_pid = 0};
    int rc;
    while ((rc = fcntl(terminal_lock, type == F_UNLCK ? F_SETLK : F_SETLKW, &fl)) < 0 && errno == EINTR)
        ;
    return rc;
}

int parallel_terminal_begin(void)
{
    if (!in_account_process || terminal_lock < 0 || terminal_err < 0)
        return -1;
    if (terminal_lock_op(F_WRLCK) != 0)
        log_msg(LOG_VERBOSE, "cannot wait for the terminal (%s): the command runs at once", strerror(errno));
    return terminal_err;
}

void parallel_terminal_end(void)
{
    if (in_account_process && terminal_lock >= 0)
        terminal_lock_op(F_UNLCK);
}

static bool same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* In the child: run the account with its output captured, hand back the
 * result, end. Never returns. */
static void child_main(const struct parallel_run *p, struct child *c, pid_t parent)
{
    child_stop = p->stop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = child_on_stop;
    sa.sa_flags = SA_RESTART; /* as a one-shot command's: the stop is looked at between messages */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* this process's end (a second signal, a kill) ends the account's run */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(MS_ELOCAL);
    sigset_t both;
    sigemptyset(&both);
    sigaddset(&both, SIGINT);
    sigaddset(&both, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &both, NULL);
    in_account_process = true;
    if (dup2(c->out, STDOUT_FILENO) < 0 || dup2(c->err, STDERR_FILENO) < 0)
        _exit(MS_ELOCAL);
    struct engine_result res;
    memset(&res, 0, sizeof res);
    int rc = p->run(p->ctx, c->account, &res);
    fflush(stdout);
    fflush(stderr);
    if (result_write(c->result, &res) != 0)
        rc = MS_ELOCAL;
    engine_result_free(&res);
    exit(rc);
}

static void close_child_fds(struct child *c)
{
    if (c->err != c->out && c->err >= 0)
        close(c->err);
    if (c->out >= 0)
        close(c->out);
    if (c->result >= 0)
        close(c->result);
    c->out = c->err = c->result = -1;
}

/* Fork the process of account i into slot c. Returns 0, or -1 (then the
 * account is run here, serially, as a last resort). */
static int child_start(const struct parallel_run *p, struct child *c, size_t i)
{
    c->account = i;
    c->out = scratch_fd("mailsync-out");
    c->err = same_file(STDOUT_FILENO, STDERR_FILENO) ? c->out : scratch_fd("mailsync-err");
    c->result = scratch_fd("mailsync-result");
    if (c->out < 0 || c->err < 0 || c->result < 0) {
        close_child_fds(c);
        return -1;
    }
    /* nothing buffered may be written twice */
    fflush(stdout);
    fflush(stderr);
    /* the child sets up its own handler before it takes a signal */
    sigset_t both, old;
    sigemptyset(&both);
    sigaddset(&both, SIGINT);
    sigaddset(&both, SIGTERM);
    sigprocmask(SIG_BLOCK, &both, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_main(p, c, parent);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        log_msg(LOG_WARN, "%s: cannot start a process for it (%s): running it after the others", p->names[i],
                strerror(errno));
        close_child_fds(c);
        return -1;
    }
    c->pid = pid;
    return 0;
}

/* A child that ended without handing back a result. */
static void result_of_lost_child(struct engine_result *r, const char *name, int status)
{
    memset(r, 0, sizeof *r);
    r->account = xstrdup(name);
    r->status = MS_ELOCAL;
    if (WIFSIGNALED(status))
        snprintf(r->error, sizeof r->error, "the account's run was ended by signal %d (%s) before it reported",
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(r->error, sizeof r->error, "the account's run ended (exit %d) before it reported",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* ------------------------------------------------------------------ */
/* the run */

static void progress_line(const struct parallel_run *p, size_t done, bool clear_only)
{
    if (!p->progress)
        return;
    char line[96];
    int len = clear_only ? snprintf(line, sizeof line, "\r\033[K")
                         : snprintf(line, sizeof line, "\r\033[Kaccounts %zu/%zu done", done, p->n);
    (void)write_all(STDERR_FILENO, line, (size_t)len);
}

static void nap_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL); /* a signal ends it early: looked at right after */
}

size_t parallel_accounts(const struct parallel_run *p, struct engine_result *res)
{
    size_t jobs = p->jobs ? p->jobs : 1;
    if (jobs > p->n)
        jobs = p->n;
    struct child *slots = xcalloc(jobs, sizeof *slots);
    for (size_t k = 0; k < jobs; k++)
        slots[k].out = slots[k].err = slots[k].result = -1;
    size_t next = 0, running = 0, done = 0;
    int forwarded = 0; /* the stop signal sent on to the children */
    fflush(stdout); /* what this process printed before comes first */
    terminal_lock = scratch_fd("mailsync-terminal");
    terminal_err = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    progress_line(p, 0, false);
    for (;;) {
        for (size_t k = 0; k < jobs && next < p->n && !*p->stop; k++) {
            if (slots[k].pid)
                continue;
            size_t i = next++;
            if (child_start(p, &slots[k], i) == 0) {
                running++;
                continue;
            }
            /* no process: this one runs here, its output not held */
            progress_line(p, done, true);
            p->run(p->ctx, i, &res[i]);
            fflush(stdout);
            progress_line(p, ++done, false);
        }
        if (!running)
            break;
        if (*p->stop && forwarded != *p->stop) {
            forwarded = *p->stop;
            for (size_t k = 0; k < jobs; k++)
                if (slots[k].pid)
                    kill(slots[k].pid, forwarded);
        }
        bool reaped = false;
        for (size_t k = 0; k < jobs; k++) {
            struct child *c = &slots[k];
            int status = 0;
            if (!c->pid || waitpid(c->pid, &status, WNOHANG) != c->pid)
                continue;
            reaped = true;
            c->pid = 0;
            running--;
            progress_line(p, done, true);
            if (c->err != c->out)
                copy_out(c->err, STDERR_FILENO);
            copy_out(c->out, STDOUT_FILENO);
            if (result_read(c->result, &res[c->account]) != 0) { /* it could not say so itself */
                result_of_lost_child(&res[c->account], p->names[c->account], status);
                log_msg(LOG_ERROR, "%s: %s", p->names[c->account], res[c->account].error);
            }
            close_child_fds(c);
            progress_line(p, ++done, false);
        }
        if (!reaped)
            nap_ms(50);
    }
    progress_line(p, done, true);
    free(slots);
    if (terminal_lock >= 0)
        close(terminal_lock);
    if (terminal_err >= 0)
        close(terminal_err);
    terminal_lock = terminal_err = -1;
    return next;
}
