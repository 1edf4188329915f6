/* SPDX-License-Identifier: MIT */
/*
 * progress.c: the progress line (progress.h).
 *
 * Two halves: progress_format, a pure function from a progress_view to a
 * line of at most N columns (unit-tested at many widths), and the state
 * the engine's events update, drawn under one lock: the events come from
 * the run's thread and a download's helper threads, log lines from any
 * of them. A line goes out in one write(2) ("\r", text, erase to the end
 * of the line), so a signal handler's notice (progress_signal_write)
 * never lands inside one.
 */
#include "cmd/progress.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "sync/log.h"
#include "sync/util.h"

/* ------------------------------------------------------------------ */
/* columns of UTF-8 text */

/* The columns of code point c: 0 for combining marks and zero-width
 * characters, 2 for East Asian wide ones and emoji (the usual wcwidth
 * ranges, without asking the locale), else 1. */
static int char_width(uint32_t c)
{
    if ((c >= 0x300 && c <= 0x36f) || (c >= 0x483 && c <= 0x489) || (c >= 0x591 && c <= 0x5bd) ||
        (c >= 0x1ab0 && c <= 0x1aff) || (c >= 0x1dc0 && c <= 0x1dff) || (c >= 0x200b && c <= 0x200f) ||
        (c >= 0x20d0 && c <= 0x20ff) || (c >= 0xfe00 && c <= 0xfe0f) || (c >= 0xfe20 && c <= 0xfe2f))
        return 0;
    if ((c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0x303e) || (c >= 0x3041 && c <= 0x33ff) ||
        (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xa000 && c <= 0xa4cf) ||
        (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) || (c >= 0xfe30 && c <= 0xfe4f) ||
        (c >= 0xff00 && c <= 0xff60) || (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x1f300 && c <= 0x1f64f) ||
        (c >= 0x1f900 && c <= 0x1f9ff) || (c >= 0x20000 && c <= 0x3fffd))
        return 2;
    return 1;
}

/* The code point at s into *cp; returns its length in bytes (a byte that
 * starts no UTF-8 sequence counts as one character of one column). */
static size_t next_char(const char *s, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = log_utf8_len(s, strnlen(s, 4));
    if (n <= 1)
        *cp = n ? u[0] : 0xfffd;
    else if (n == 2)
        *cp = (uint32_t)(u[0] & 0x1f) << 6 | (u[1] & 0x3f);
    else if (n == 3)
        *cp = (uint32_t)(u[0] & 0x0f) << 12 | (uint32_t)(u[1] & 0x3f) << 6 | (u[2] & 0x3f);
    else
        *cp = (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3f) << 12 | (uint32_t)(u[2] & 0x3f) << 6 |
              (u[3] & 0x3f);
    return n ? n : 1;
}

int progress_text_width(const char *s)
{
    int w = 0;
    uint32_t c;
    while (*s) {
        s += next_char(s, &c);
        w += char_width(c);
    }
    return w;
}

/* The bytes of s's whole characters in its first cols columns. */
static size_t head_bytes(const char *s, int cols)
{
    size_t at = 0;
    int w = 0;
    uint32_t c;
    while (s[at]) {
        size_t n = next_char(s + at, &c);
        if (w + char_width(c) > cols)
            break;
        w += char_width(c);
        at += n;
    }
    return at;
}

/* Where s's last cols columns (or fewer: a wide character is not split)
 * start, not on a combining mark. */
static size_t tail_start(const char *s, int cols)
{
    int skip = progress_text_width(s) - cols, w = 0;
    size_t at = 0;
    uint32_t c;
    while (s[at] && w < skip) {
        at += next_char(s + at, &c);
        w += char_width(c);
    }
    for (size_t n; s[at] && (n = next_char(s + at, &c)) && char_width(c) == 0;)
        at += n;
    return at;
}

/* s in at most cols columns: whole, or its start and end around "...". */
static void shorten_middle(const char *s, int cols, char *out, size_t len)
{
    if (progress_text_width(s) <= cols) {
        snprintf(out, len, "%s", s);
        return;
    }
    if (cols < 5) {
        snprintf(out, len, "%.*s", (int)head_bytes(s, cols), s);
        return;
    }
    int head = (cols - 3 + 1) / 2, tail = (cols - 3) / 2;
    snprintf(out, len, "%.*s...%s", (int)head_bytes(s, head), s, s + tail_start(s, tail));
}

/* ------------------------------------------------------------------ */
/* the line */

void human_bytes(char *buf, size_t len, uint64_t b)
{
    if (b >= 1024ull * 1024 * 1024)
        snprintf(buf, len, "%.1f GiB", (double)b / (1024.0 * 1024 * 1024));
    else if (b >= 1024ull * 1024)
        snprintf(buf, len, "%.1f MiB", (double)b / (1024.0 * 1024));
    else if (b >= 1024)
        snprintf(buf, len, "%.1f KiB", (double)b / 1024.0);
    else
        snprintf(buf, len, "%" PRIu64 " B", b);
}

/* The same in few columns, for a narrow line: "512B", "4.0K", "36K", "1.2M". */
static void short_bytes(char *buf, size_t len, uint64_t b)
{
    static const char units[] = "KMGT";
    if (b < 1024) {
        snprintf(buf, len, "%" PRIu64 "B", b);
        return;
    }
    double v = (double)b / 1024.0;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units - 1) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, v < 9.95 ? "%.1f%c" : "%.0f%c", v, units[u]);
}

static void human_time(char *buf, size_t len, double secs)
{
    unsigned long s = (unsigned long)(secs + 0.5);
    if (s >= 3600)
        snprintf(buf, len, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, len, "%lu:%02lu", s / 60, s % 60);
}

struct line {
    char *buf;
    size_t len, at;
};

static void add(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct line *l, const char *fmt, ...)
{
    if (l->at >= l->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->at, l->len - l->at, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->at = l->at + (size_t)n < l->len ? l->at + (size_t)n : l->len - 1;
}

/* How much a line says, from the most to the least. */
struct detail {
    bool words;   /* "12/30 messages, 4.0 KiB/9.0 KiB, ..." (else "12/30 4.0 KiB/9.0 KiB ...") */
    bool account; /* the account's name */
    bool rate, bytes, run;
};

static const struct detail details[] = {
    {.words = true, .account = true, .rate = true, .bytes = true, .run = true},
    {.words = true, .account = true, .rate = true, .bytes = true, .run = false},
    {.words = false, .account = true, .rate = true, .bytes = true, .run = false},
    {.words = false, .account = true, .rate = false, .bytes = true, .run = false},
    {.words = false, .account = false, .rate = false, .bytes = true, .run = false},
    {.words = false, .account = false, .rate = false, .bytes = false, .run = false},
};

/* A folder's name is shortened to COMFORT_FOLDER columns before the line
 * loses more than its words and the run's totals, and never below
 * MIN_FOLDER. */
enum { COMFORT_FOLDER = 30, MIN_FOLDER = 12, COMFORT_LEVELS = 4 };

static int percent(const struct progress_view *v)
{
    if (v->done >= v->total)
        return 100;
    double f = v->total_bytes ? (double)v->done_bytes / (double)v->total_bytes : (double)v->done / (double)v->total;
    int p = (int)(f * 100.0);
    return p < 0 ? 0 : p > 99 ? 99 : p; /* 100% is for the end */
}

static void build(const struct progress_view *v, const struct detail *d, const char *folder, char *buf, size_t len)
{
    struct line l = {.buf = buf, .len = len, .at = 0};
    const char *sep = d->words ? ", " : " ";
    buf[0] = '\0';
    if (d->account) {
        add(&l, "%s", v->account ? v->account : "");
        if (v->naccounts > 1 && v->account_index >= 1 && v->account_index <= v->naccounts)
            add(&l, " (%zu/%zu)", v->account_index, v->naccounts);
    }
    if (v->phase == PROGRESS_CONNECTING) {
        add(&l, "%s", l.at ? (d->words ? ": connecting" : " connecting") : "connecting");
        return;
    }
    if (folder) {
        if (v->nfolders && v->folder_index >= 1 && v->folder_index <= v->nfolders)
            add(&l, "%s[%zu/%zu]", l.at ? " " : "", v->folder_index, v->nfolders);
        add(&l, "%s%s", l.at ? " " : "", folder);
    }
    if (v->phase == PROGRESS_DOWN || v->phase == PROGRESS_UP) {
        bool up = v->phase == PROGRESS_UP;
        char done[32], total[32];
        void (*bytes)(char *, size_t, uint64_t) = d->words ? human_bytes : short_bytes;
        bytes(done, sizeof done, v->done_bytes);
        bytes(total, sizeof total, v->total_bytes);
        if (d->words)
            add(&l, "%s%s%zu/%zu messages", l.at ? ": " : "", up ? "uploading " : "", v->done, v->total);
        else
            add(&l, "%s%s%zu/%zu", l.at ? " " : "", up ? "up " : "", v->done, v->total);
        if (d->bytes && v->total_bytes)
            add(&l, "%s%s/%s", sep, done, total);
        else if (d->bytes)
            add(&l, "%s%s", sep, done);
        if (d->rate && v->rate >= 0) {
            char rate[32];
            bytes(rate, sizeof rate, (uint64_t)v->rate);
            add(&l, "%s%s/s", sep, rate);
        }
        add(&l, "%s%d%%", sep, percent(v));
        if (v->eta >= 0) {
            char eta[32];
            human_time(eta, sizeof eta, v->eta);
            add(&l, "%sETA %s", sep, eta);
        }
    }
    if (d->run && v->run_messages > (v->phase == PROGRESS_DOWN || v->phase == PROGRESS_UP ? v->done : 0)) {
        char bytes[32];
        human_bytes(bytes, sizeof bytes, v->run_bytes);
        add(&l, " | run: %zu messages, %s", v->run_messages, bytes);
    }
}

int progress_format(const struct progress_view *v, int width, struct progress_fit *fit, char *buf, size_t len)
{
    if (width < 1)
        width = 1;
    const char *folder = v->phase == PROGRESS_CONNECTING ? NULL : v->folder;
    int full = folder ? progress_text_width(folder) : 0, fw = full;
    char name[512];
    if (folder)
        snprintf(name, sizeof name, "%s", folder);
    if (folder && fit && fit->folder_cols > 0 && fw > fit->folder_cols) {
        fw = fit->folder_cols; /* as short as at the phase's first draw */
        shorten_middle(folder, fw, name, sizeof name);
    }
    size_t nd = sizeof details / sizeof details[0];
    size_t first = fit && fit->level > 0 && (size_t)fit->level < nd ? (size_t)fit->level : 0;
    /* First the layouts that keep the account and the bytes with the name
     * readable (COMFORT_FOLDER columns), then all with the name down to
     * MIN_FOLDER. */
    int floors[2] = {full < COMFORT_FOLDER ? full : COMFORT_FOLDER, full < MIN_FOLDER ? full : MIN_FOLDER};
    size_t ends[2] = {COMFORT_LEVELS, nd};
    int floor = floors[1];
    for (size_t f = 0; f < 2; f++)
        for (size_t i = first; i < ends[f]; i++) {
            int cols = fw;
            build(v, &details[i], folder ? name : NULL, buf, len);
            int over = progress_text_width(buf) - width;
            if (over > 0 && folder && fw - over >= floors[f]) {
                char shorter[512];
                cols = fw - over;
                shorten_middle(folder, cols, shorter, sizeof shorter);
                build(v, &details[i], shorter, buf, len);
                over = progress_text_width(buf) - width;
            }
            if (over <= 0) {
                if (fit) {
                    fit->level = (int)i;
                    fit->folder_cols = folder ? cols : 0;
                }
                return progress_text_width(buf);
            }
        }
    /* The least still does not fit: the name shorter still (down to a
     * few columns), else the line cut at the edge, at a space if there is
     * one (no half number). */
    int cols = floor;
    if (folder) {
        shorten_middle(folder, cols, name, sizeof name);
        build(v, &details[nd - 1], name, buf, len);
        for (int over = progress_text_width(buf) - width; over > 0 && cols > 4;
             over = progress_text_width(buf) - width) {
            cols = cols - over > 4 ? cols - over : cols - 1; /* (a wide character is not split) */
            shorten_middle(folder, cols, name, sizeof name);
            build(v, &details[nd - 1], name, buf, len);
        }
    }
    if (fit) {
        fit->level = (int)nd - 1;
        fit->folder_cols = cols;
    }
    size_t cut = head_bytes(buf, width);
    if (buf[cut]) {
        size_t at = cut;
        while (at > 0 && buf[at] != ' ')
            at--;
        buf[at > 0 ? at : cut] = '\0';
    }
    return progress_text_width(buf);
}

double progress_eta(size_t done, size_t total, uint64_t done_bytes, uint64_t total_bytes, double secs)
{
    /* from three seconds of data on: before that the rate swings wildly */
    if (secs < 3.0 || done == 0 || done >= total)
        return -1;
    double f = total_bytes ? (double)done_bytes / (double)total_bytes : (double)done / (double)total;
    if (!(f > 0 && f < 1))
        return -1;
    double eta = secs * (1 - f) / f;
    return eta < 99 * 3600.0 ? eta : -1;
}

/* ------------------------------------------------------------------ */
/* the state the events update, and the terminal */

static pthread_mutex_t term = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t drawn; /* our line is on the terminal (read by signal handlers) */
static bool on;                     /* set before the run, read-only during it */

static struct {
    char account[128];
    size_t account_index, naccounts;
    char folder[512];
    size_t folder_index, nfolders;
    enum progress_phase phase;
    size_t done, total;
    uint64_t done_bytes, total_bytes;
    double start, last_draw;
    struct progress_fit fit; /* the phase's layout, at fit_width */
    int fit_width;
    size_t run_messages;
    uint64_t run_bytes;
} st;

static void write_all(const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static const char erase[] = "\r\033[K";

static void clear_locked(void)
{
    if (drawn) {
        drawn = 0;
        write_all(erase, sizeof erase - 1);
    }
}

/* The terminal's width now (a resized window is followed at the next
 * draw), else $COLUMNS; with neither (--progress=always into a file or a
 * pipe) there is no edge to fit. */
static int terminal_columns(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int n = c ? atoi(c) : 0;
    return n > 0 && n < 400 ? n : 400;
}

static void draw_locked(bool force)
{
    if (st.phase == PROGRESS_IDLE)
        return;
    double now = util_now();
    if (!force && now - st.last_draw < 0.1)
        return;
    st.last_draw = now;
    double secs = now - st.start;
    struct progress_view v = {.account = st.account,
                              .account_index = st.account_index,
                              .naccounts = st.naccounts,
                              .folder = st.folder[0] ? st.folder : NULL,
                              .folder_index = st.folder_index,
                              .nfolders = st.nfolders,
                              .phase = st.phase,
                              .done = st.done,
                              .total = st.total,
                              .done_bytes = st.done_bytes,
                              .total_bytes = st.total_bytes,
                              .rate = -1,
                              .eta = -1,
                              .run_messages = st.run_messages,
                              .run_bytes = st.run_bytes};
    if (st.done)
        v.rate = (double)st.done_bytes / (secs > 0.001 ? secs : 0.001);
    if (st.phase == PROGRESS_DOWN || st.phase == PROGRESS_UP)
        v.eta = progress_eta(st.done, st.total, st.done_bytes, st.total_bytes, secs);
    /* one column short of the edge: a line that ends on the last column
     * makes some terminals wrap at once */
    char line[1100];
    memcpy(line, "\r", 1);
    int width = terminal_columns() - 1;
    if (width != st.fit_width) { /* a new phase, or a resized terminal */
        /* The layout for the whole phase, from its numbers at their
         * widest, so the line does not jump between layouts as they grow
         * (a draw that still does not fit moves on to a shorter one). */
        struct progress_view widest = v;
        char scratch[1100];
        widest.done = widest.total;
        widest.done_bytes = widest.total_bytes ? widest.total_bytes : 999ull << 20;
        widest.rate = 99.9 * 1024 * 1024;
        widest.eta = widest.phase == PROGRESS_DOWN || widest.phase == PROGRESS_UP ? 599 : -1;
        st.fit = (struct progress_fit){.level = 0, .folder_cols = 0};
        progress_format(&widest, width, &st.fit, scratch, sizeof scratch);
        st.fit_width = width;
    }
    progress_format(&v, width, &st.fit, line + 1, sizeof line - 8);
    size_t n = strlen(line);
    memcpy(line + n, "\033[K", 4);
    drawn = 1; /* before the write: a signal's notice then clears too much, never too little */
    write_all(line, n + 3);
}

static void set_text(char *dst, size_t len, const char *src)
{
    char *clean = log_clean(src ? src : ""); /* a server's name: no escape sequences */
    snprintf(dst, len, "%s", clean);
    free(clean);
}

/* The folder's name is set (kept if the same). Returns whether it changed. */
static bool set_folder(const char *folder)
{
    char clean[sizeof st.folder];
    set_text(clean, sizeof clean, folder);
    if (strcmp(clean, st.folder) == 0)
        return false;
    memcpy(st.folder, clean, sizeof clean);
    return true;
}

static void start_phase(enum progress_phase phase, size_t total, uint64_t total_bytes)
{
    st.phase = phase;
    st.done = 0;
    st.total = total;
    st.done_bytes = 0;
    st.total_bytes = total_bytes;
    st.start = util_now();
    st.fit_width = -1; /* a layout for the phase at its first draw */
}

static void on_account_start(void *ctx, const char *account)
{
    (void)ctx;
    pthread_mutex_lock(&term);
    set_text(st.account, sizeof st.account, account);
    st.account_index++;
    st.folder[0] = '\0';
    st.folder_index = st.nfolders = 0;
    start_phase(PROGRESS_CONNECTING, 0, 0);
    draw_locked(true);
    pthread_mutex_unlock(&term);
}

static void on_folder_begin(void *ctx, const char *account, const char *folder, size_t index, size_t nfolders)
{
    (void)ctx;
    (void)account;
    pthread_mutex_lock(&term);
    set_folder(folder);
    st.folder_index = index + 1;
    st.nfolders = nfolders;
    start_phase(PROGRESS_FOLDER, 0, 0);
    draw_locked(false);
    pthread_mutex_unlock(&term);
}

static void on_upload_start(void *ctx, const char *account, const char *folder, size_t nmsgs)
{
    (void)ctx;
    (void)account;
    pthread_mutex_lock(&term);
    if (set_folder(folder))
        st.folder_index = 0;
    start_phase(PROGRESS_UP, nmsgs, 0);
    draw_locked(true);
    pthread_mutex_unlock(&term);
}

static void on_folder_start(void *ctx, const char *account, const char *folder, size_t nmsgs, uint64_t nbytes)
{
    (void)ctx;
    (void)account;
    pthread_mutex_lock(&term);
    if (set_folder(folder))
        st.folder_index = 0; /* a folder no folder_begin announced (POP3's INBOX) */
    start_phase(nmsgs ? PROGRESS_DOWN : PROGRESS_FOLDER, nmsgs, nbytes);
    draw_locked(nmsgs > 0);
    pthread_mutex_unlock(&term);
}

static void on_message_done(void *ctx, uint64_t bytes)
{
    (void)ctx;
    pthread_mutex_lock(&term);
    st.done++;
    st.done_bytes += bytes;
    st.run_messages++;
    st.run_bytes += bytes;
    draw_locked(st.done == st.total);
    pthread_mutex_unlock(&term);
}

static void on_folder_done(void *ctx, const struct engine_folder_result *r)
{
    (void)ctx;
    (void)r; /* the line keeps the folder's last count until the next folder */
}

static void on_account_done(void *ctx, const struct engine_result *res)
{
    (void)ctx;
    (void)res;
    pthread_mutex_lock(&term);
    clear_locked();
    st.phase = PROGRESS_IDLE;
    pthread_mutex_unlock(&term);
}

void progress_on(struct engine_progress *hooks)
{
    on = true;
    hooks->account_start = on_account_start;
    hooks->folder_begin = on_folder_begin;
    hooks->upload_start = on_upload_start;
    hooks->folder_start = on_folder_start;
    hooks->message_done = on_message_done;
    hooks->folder_done = on_folder_done;
    hooks->account_done = on_account_done;
}

void progress_set_accounts(size_t n)
{
    pthread_mutex_lock(&term);
    st.naccounts = n;
    st.account_index = 0;
    pthread_mutex_unlock(&term);
}

void progress_suspend(void)
{
    if (!on)
        return;
    pthread_mutex_lock(&term);
    clear_locked();
}

void progress_resume(bool redraw)
{
    if (!on)
        return;
    if (redraw)
        draw_locked(true);
    pthread_mutex_unlock(&term);
}

void progress_signal_write(const char *text, size_t len)
{
    if (drawn) {
        drawn = 0;
        write_all(erase, sizeof erase - 1);
    }
    write_all(text, len);
}
