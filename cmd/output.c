/*
 * output.c: progress line, human summary, --json (output.h).
 *
 * Progress goes to stderr and is redrawn at most ten times a second; log
 * lines clear it first (log_before_write) so they never tear it.
 */
#include "cmd/output.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/log.h"
#include "sync/util.h"

static struct {
    bool on;
    bool drawn;
    char account[64];
    char folder[128];
    size_t total, done;
    uint64_t total_bytes, done_bytes;
    double start, last_draw;
} bar;

void output_clear_line(void)
{
    if (bar.drawn) {
        fputs("\r\033[K", stderr);
        bar.drawn = false;
    }
}

static void human_bytes(char *buf, size_t len, uint64_t b)
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

static void draw(bool force)
{
    double now = util_now();
    if (!force && now - bar.last_draw < 0.1)
        return;
    bar.last_draw = now;
    char done[32], total[32], rate[32];
    human_bytes(done, sizeof done, bar.done_bytes);
    human_bytes(total, sizeof total, bar.total_bytes);
    double secs = now - bar.start;
    human_bytes(rate, sizeof rate, secs > 0.2 ? (uint64_t)((double)bar.done_bytes / secs) : 0);
    fprintf(stderr, "\r\033[K%s %s: %zu/%zu messages, %s/%s, %s/s", bar.account, bar.folder, bar.done, bar.total,
            done, total, rate);
    fflush(stderr);
    bar.drawn = true;
}

static void on_folder_start(void *ctx, const char *account, const char *folder, size_t n, uint64_t bytes)
{
    (void)ctx;
    snprintf(bar.account, sizeof bar.account, "%s", account);
    char *clean = log_clean(folder); /* a server's name: no escape sequences */
    snprintf(bar.folder, sizeof bar.folder, "%s", clean);
    free(clean);
    bar.total = n;
    bar.total_bytes = bytes;
    bar.done = 0;
    bar.done_bytes = 0;
    bar.start = util_now();
    if (n)
        draw(true);
}

static void on_message_done(void *ctx, uint64_t bytes)
{
    (void)ctx;
    bar.done++;
    bar.done_bytes += bytes;
    draw(bar.done == bar.total);
}

static void on_folder_done(void *ctx, const struct engine_folder_result *r)
{
    (void)ctx;
    (void)r;
    output_clear_line();
}

static const struct engine_progress hooks = {
    .ctx = NULL,
    .folder_start = on_folder_start,
    .message_done = on_message_done,
    .folder_done = on_folder_done,
};

void output_init(enum progress_mode mode, bool quiet, bool json)
{
    (void)json;
    bar.on = mode == PROGRESS_ALWAYS || (mode == PROGRESS_AUTO && !quiet && isatty(STDERR_FILENO));
    log_before_write = output_clear_line;
}

const struct engine_progress *output_progress(void)
{
    return bar.on ? &hooks : NULL;
}

void output_summary(FILE *out, const char *command, const struct engine_result *r, bool dry_run)
{
    size_t fetched = 0, flagged = 0, deleted = 0, skipped = 0, failed = 0, stopped = 0;
    size_t uploaded = 0, pflags = 0, pdeleted = 0, retired = 0;
    uint64_t bytes = 0;
    bool pushing = strcmp(command, "push") == 0 || strcmp(command, "sync") == 0;
    bool pulling = strcmp(command, "push") != 0;
    for (size_t i = 0; i < r->nfolders; i++) {
        const struct engine_folder_result *f = &r->folders[i];
        fetched += f->fetched;
        bytes += f->bytes;
        flagged += f->flagged;
        deleted += f->deleted;
        skipped += f->skipped;
        failed += f->status != 0 && !f->stopped;
        stopped += f->stopped;
        uploaded += f->uploaded;
        pflags += f->pushed_flags;
        pdeleted += f->pushed_deleted;
        retired += f->retired;
        bool pushed = f->uploaded || f->pushed_flags || f->pushed_deleted;
        if (log_verbosity >= 1 && (f->fetched || f->flagged || f->deleted || f->status || pushed)) {
            output_name_column(out, f->name, 30);
            if (pulling)
                fprintf(out, "%zu new, %zu flag changes, %zu deleted", f->fetched, f->flagged, f->deleted);
            if (pushing)
                fprintf(out, "%sup: %zu uploaded, %zu flag changes, %zu deleted", pulling ? "; " : "", f->uploaded,
                        f->pushed_flags, f->pushed_deleted);
            fprintf(out, "%s\n", f->stopped ? " (stopped)" : f->status ? " (failed)" : "");
        }
    }
    char b[32];
    human_bytes(b, sizeof b, bytes);
    fprintf(out, "%s%s: %s %zu folders:", dry_run ? "[dry run] " : "", r->account, command, r->nfolders);
    if (pulling)
        fprintf(out, " %zu new (%s), %zu flag changes, %zu deleted", fetched, b, flagged, deleted);
    if (pushing)
        fprintf(out, "%s %zu uploaded, %zu flag changes, %zu deleted on the server", pulling ? ";" : "", uploaded,
                pflags, pdeleted);
    if (retired)
        fprintf(out, ", %zu removed from the server (kept locally)", retired);
    if (skipped)
        fprintf(out, ", %zu over max_size skipped", skipped);
    if (failed)
        fprintf(out, ", %zu folders failed", failed);
    if (stopped)
        fprintf(out, ", stopped early by a signal");
    fprintf(out, " in %.1f s\n", r->seconds);
}

void output_name_column(FILE *out, const char *name, int width)
{
    char *clean = log_clean(name); /* folder names come from the server */
    int chars = 0;
    for (const unsigned char *p = (const unsigned char *)clean; *p; p++)
        chars += (*p & 0xc0) != 0x80; /* count UTF-8 lead bytes */
    fprintf(out, "  %s%*s ", clean, chars < width ? width - chars : 0, "");
    free(clean);
}

void output_json_string(FILE *out, const char *s)
{
    if (!s) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    size_t left = strlen(s);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, left--) {
        size_t len = log_utf8_len((const char *)p, left);
        if (len == 0) { /* not UTF-8 (a raw server name, an error's text): JSON must be */
            fputs("\\ufffd", out);
            continue;
        }
        if (len == 2 && p[0] == 0xc2 && p[1] < 0xa0) { /* a C1 control: a terminal may obey it */
            fprintf(out, "\\u%04x", p[1]);
            p++;
            left--;
            continue;
        }
        if (len > 1) {
            fwrite(p, 1, len, out);
            p += len - 1;
            left -= len - 1;
            continue;
        }
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

static void json_folder(FILE *out, const struct engine_folder_result *f)
{
    fputs("{\"name\":", out);
    output_json_string(out, f->name);
    fputs(",\"path\":", out);
    output_json_string(out, f->path);
    fprintf(out, ",\"fetched\":%zu,\"bytes\":%" PRIu64 ",\"flags_changed\":%zu,\"deleted\":%zu,\"skipped\":%zu",
            f->fetched, f->bytes, f->flagged, f->deleted, f->skipped);
    fprintf(out, ",\"uploaded\":%zu,\"bytes_up\":%" PRIu64 ",\"flags_pushed\":%zu,\"deleted_on_server\":%zu",
            f->uploaded, f->bytes_up, f->pushed_flags, f->pushed_deleted);
    fprintf(out, ",\"retired\":%zu", f->retired);
    fprintf(out, ",\"failed\":%zu,\"stopped\":%s,\"status\":%d,\"error\":", f->failed, f->stopped ? "true" : "false",
            f->status);
    output_json_string(out, f->error);
    fputc('}', out);
}

void output_json_results(FILE *out, const char *command, const struct engine_result *r, size_t n, int exit_code,
                         bool dry_run)
{
    fputs("{\"command\":", out);
    output_json_string(out, command);
    fprintf(out, ",\"dry_run\":%s,\"exit\":%d,\"accounts\":[", dry_run ? "true" : "false", exit_code);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ",{\"name\":" : "{\"name\":", out);
        output_json_string(out, r[i].account);
        fprintf(out, ",\"status\":%d,\"error\":", r[i].status);
        output_json_string(out, r[i].error[0] ? r[i].error : NULL);
        fprintf(out, ",\"seconds\":%.3f,\"folders\":[", r[i].seconds);
        for (size_t j = 0; j < r[i].nfolders; j++) {
            if (j)
                fputc(',', out);
            json_folder(out, &r[i].folders[j]);
        }
        fputs("]}", out);
    }
    fputs("]}\n", out);
}
