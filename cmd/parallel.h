/* SPDX-License-Identifier: MIT */
/*
 * parallel.h: `-j N`: pull, push or sync several accounts at once.
 *
 * Each account runs in a process of its own (fork), up to N at a time.
 * Accounts share nothing but the terminal: each has its own lock, state
 * DB, Maildir and connections, so a process apiece needs no locking in the
 * engine, libetpan, OpenSSL or SQLite, keeps a crash to its account, and
 * catches at the file-descriptor level everything the account's run
 * writes (log lines from any of its threads, its password command's and
 * hooks' messages). That text is held in memory files and printed whole
 * when the account ends, so accounts never interleave; the result comes
 * back to this process, which prints --json as a serial run would.
 */
#ifndef MAILSYNC_PARALLEL_H
#define MAILSYNC_PARALLEL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "sync/engine/engine.h"

/* Runs account i in the process made for it: fills *res (always) and
 * prints what a serial run prints for the account (its error, summary,
 * hooks' output) on stdout/stderr, which are captured. Returns the
 * account's exit code. */
typedef int (*parallel_account_fn)(void *ctx, size_t i, struct engine_result *res);

struct parallel_run {
    size_t n;                    /* accounts */
    const char *const *names;    /* their names (for a run that died) */
    size_t jobs;                 /* at most this many at once (>= 1) */
    bool progress;               /* draw "accounts k/N done" on stderr */
    /* A stop signal's number once one came (the program's handler sets
     * it): no account is started after it, and the running ones are
     * asked to stop with the same signal. */
    volatile sig_atomic_t *stop;
    parallel_account_fn run;
    void *ctx;
};

/* Run p->run for accounts 0..n-1 in config order, up to p->jobs at a
 * time, each in a child process whose stop handler sets *p->stop (so a
 * signal makes it stop at its next safe point and report; the program's
 * second signal ends this process, and the kernel then kills the children
 * at once). Each account's captured output is copied out when it ends.
 * res[i] is filled for every account started; returns how many were
 * started (a stop leaves the rest out, as the serial loop does), always
 * the first ones. */
size_t parallel_accounts(const struct parallel_run *p, struct engine_result *res);

/* In an account's process: wait until no other account's process is
 * between these two calls (a password command prompting on the terminal),
 * then return the program's own stderr (the terminal, not the held
 * output) for the command. Elsewhere: -1 at once (stderr is the
 * terminal already). Always pair with parallel_terminal_end(). */
int parallel_terminal_begin(void);
void parallel_terminal_end(void);

#endif
