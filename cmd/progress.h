/* SPDX-License-Identifier: MIT */
/*
 * progress.h: the progress line on a terminal. One line on stderr,
 * redrawn in place ("\r", the text, erase to the end of the line) at most
 * ten times a second, fitted to the terminal's width as it is at each draw
 * (so a resized window is followed), never wrapping; cleared before any
 * other output to the terminal (log lines, the summary, a --dry-run's plan,
 * the "stopping" notice) and redrawn after it.
 *
 *   work (1/2) [2/5] INBOX: 120/300 messages, 4.0 MiB/10.0 MiB, 1.2 MiB/s, 40%, ETA 0:05 | run: 520 messages, 20.3 MiB
 *   work [1/5] Sent: uploading 12/30 messages, 1.0 MiB, 0.5 MiB/s, 40%, ETA 0:03
 *
 * On a narrow terminal the words go first, then the rate, the bytes and
 * the account's name; a long folder name is shortened in its middle; the
 * counts stay. The percent is of the bytes where their total is known (a
 * download), else of the messages; the ETA shows only after three seconds
 * of a phase, and never a value past 99 hours.
 *
 * Off (--progress=never, not a terminal, -q, --json) nothing of this
 * writes a byte.
 */
#ifndef MAILSYNC_PROGRESS_H
#define MAILSYNC_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync/engine/engine.h"

enum progress_phase {
    PROGRESS_IDLE,       /* no run: nothing drawn */
    PROGRESS_CONNECTING, /* an account's run began */
    PROGRESS_FOLDER,     /* a folder is compared (nothing to transfer, or not yet known) */
    PROGRESS_DOWN,       /* a folder's new messages are downloaded */
    PROGRESS_UP,         /* a folder's new local messages are uploaded */
};

/* What one draw shows: plain data, for progress_format. */
struct progress_view {
    const char *account;             /* escaped text (log_clean) */
    size_t account_index, naccounts; /* 1-based; shown when naccounts > 1 */
    const char *folder;              /* escaped text, or NULL */
    size_t folder_index, nfolders;   /* 1-based; 0: not known */
    enum progress_phase phase;
    size_t done, total;               /* messages of the phase */
    uint64_t done_bytes, total_bytes; /* total_bytes 0: not known (uploads) */
    double rate;                      /* bytes per second, < 0: not known yet */
    double eta;                       /* seconds, < 0: not shown */
    size_t run_messages;              /* the run's transfers so far (all accounts) */
    uint64_t run_bytes;
};

/* How a line was fitted: its layout, from the fullest (0) to the most
 * compact, and the columns left to the folder's name (0: no limit). */
struct progress_fit {
    int level;
    int folder_cols;
};

/* The line for v in at most width columns (at least 1), NUL-terminated in
 * buf (len bytes; 1024 hold any line). fit (may be NULL) gives the fullest
 * layout to try and the longest the folder's name may be, and gets what
 * was used. Returns the line's width in columns. */
int progress_format(const struct progress_view *v, int width, struct progress_fit *fit, char *buf, size_t len);

/* The seconds left of a phase that did done of total messages (bytes of
 * total_bytes; 0: not known, the messages count) in secs: -1 before
 * three seconds, before the first message, after the last, and past 99
 * hours (a stalled start says nothing sensible). */
double progress_eta(size_t done, size_t total, uint64_t done_bytes, uint64_t total_bytes, double secs);

/* The columns a terminal gives UTF-8 text s (wide East Asian characters 2,
 * combining marks 0). */
int progress_text_width(const char *s);

/* A byte count for people: "512 B", "4.0 KiB", "1.2 MiB", "3.4 GiB"
 * (the summary lines use it too). */
void human_bytes(char *buf, size_t len, uint64_t b);

/* Start drawing (output_init decides): hooks gets the engine's events. */
void progress_on(struct engine_progress *hooks);

/* The run goes over n accounts (account k/N on the line). */
void progress_set_accounts(size_t n);

/* Other output to the terminal: progress_suspend clears the line and
 * holds the terminal (from any thread) until progress_resume, which
 * redraws the line if redraw. Nothing happens while progress is off. */
void progress_suspend(void);
void progress_resume(bool redraw);

/* For a signal handler (async-signal-safe): clear the line if one is
 * drawn, then write text (len bytes) to stderr. The next draw starts on
 * the line after it. */
void progress_signal_write(const char *text, size_t len);

#endif
