/* SPDX-License-Identifier: MIT */
/*
 * output.c: log lines, dry-run plans, human summary, --json (output.h).
 *
 * The progress line is progress.c's; every other line written to the
 * terminal clears it first (progress_suspend) so they never tear it, and
 * a log line redraws it after.
 */
#include "cmd/output.h"
#include "cmd/output_json.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd/progress.h"
#include "sync/flags.h"
#include "sync/names.h"
#include "sync/util.h"

void output_clear_line(void)
{
    progress_suspend();
    progress_resume(false);
}

/* log lines: from any of the run's threads */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[1024];

void output_note_error(const char *text)
{
    pthread_mutex_lock(&log_lock);
    snprintf(last_error, sizeof last_error, "%s", text);
    pthread_mutex_unlock(&log_lock);
}

/* stderr is systemd's journal stream ($JOURNAL_STREAM names its device and
 * inode): then each line starts with its syslog priority, "<3>" for an
 * error, which journald takes off and keeps (`journalctl -p err`). */
static int journal_stream = -1; /* -1: not looked at yet */

static bool stderr_is_journal(void)
{
    if (journal_stream < 0) {
        const char *v = getenv("JOURNAL_STREAM");
        unsigned long long dev = 0, ino = 0;
        struct stat st;
        journal_stream = v && sscanf(v, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                         (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    }
    return journal_stream == 1;
}

static int syslog_priority(enum log_level level)
{
    switch (level) {
    case LOG_FATAL: return 2; /* crit */
    case LOG_ERROR: return 3; /* err */
    case LOG_WARN: return 4;  /* warning */
    case LOG_INFO: return 6;  /* info */
    default: return 7;        /* debug: -v, -vv */
    }
}

void output_log_line(enum log_level level, const char *text)
{
    const char *prefix = "";
    if (level == LOG_FATAL)
        prefix = "mailsync: ";
    else if (level == LOG_ERROR)
        prefix = "mailsync: error: ";
    else if (level == LOG_WARN)
        prefix = "mailsync: warning: ";
    pthread_mutex_lock(&log_lock);
    progress_suspend();
    if (stderr_is_journal())
        fprintf(stderr, "<%d>", syslog_priority(level));
    fprintf(stderr, "%s%s\n", prefix, text);
    progress_resume(true);
    if (level <= LOG_ERROR)
        snprintf(last_error, sizeof last_error, "%s", text);
    pthread_mutex_unlock(&log_lock);
}

/* --dry-run plans: printed at once, or kept for the --json document */
struct planned_copy {
    char *account, *folder, *file, *from;
    struct engine_planned step; /* its pointers point to the copies */
};

static struct {
    bool json;
    struct planned_copy *v;
    size_t n, cap;
} plans;

static void print_planned(const struct engine_planned *p)
{
    char *folder = log_clean(p->folder); /* already safe from the engine; a local name may not be */
    char a[8], b[8];
    switch (p->kind) {
    case ENGINE_PLAN_FETCH:
        printf("%s: would fetch UID %u (%llu bytes, flags %s)\n", folder, p->uid, (unsigned long long)p->size,
               flags_to_letters(p->flags, a));
        break;
    case ENGINE_PLAN_SKIP:
        printf("%s: would skip UID %u (%llu bytes, over max_size)\n", folder, p->uid, (unsigned long long)p->size);
        break;
    case ENGINE_PLAN_PLACEHOLDER:
        printf("%s: would store UID %u as a placeholder (%llu bytes, over max_size)\n", folder, p->uid,
               (unsigned long long)p->size);
        break;
    case ENGINE_PLAN_SET_FLAGS:
        printf("%s: would set flags of UID %u to %s\n", folder, p->uid, flags_to_letters(p->flags, a));
        break;
    case ENGINE_PLAN_DELETE_LOCAL:
        printf("%s: would delete the local copy of UID %u (expunged on the server)\n", folder, p->uid);
        break;
    case ENGINE_PLAN_REMOVE_ON_SERVER:
        printf("%s: would remove UID %u from the server (deleted locally)\n", folder, p->uid);
        break;
    case ENGINE_PLAN_STORE_FLAGS:
        printf("%s: would change flags of UID %u on the server: +%s -%s\n", folder, p->uid,
               flags_to_letters(p->flags, a), flags_to_letters(p->flags_removed, b));
        break;
    case ENGINE_PLAN_UPLOAD:
    case ENGINE_PLAN_DELETE_KEPT: {
        char *name = log_clean(p->file ? p->file : ""); /* a local file name: anything but '/' */
        if (p->kind == ENGINE_PLAN_UPLOAD)
            printf("%s: would upload %s\n", folder, name);
        else
            printf("%s: would delete the local file %s (kept by backup mode; the server deleted it)\n", folder,
                   name);
        free(name);
        break;
    }
    case ENGINE_PLAN_MOVE_ON_SERVER: {
        char *name = log_clean(p->file ? p->file : ""), *from = log_clean(p->from ? p->from : "");
        printf("%s: would move UID %u from %s on the server (moved locally as %s; not uploaded)\n", folder, p->uid,
               from, name);
        free(name);
        free(from);
        break;
    }
    case ENGINE_PLAN_CREATE_FOLDER:
        printf("%s: would create the folder on the server (it exists only locally)\n", folder);
        break;
    case ENGINE_PLAN_FETCH_COUNT:
        printf("%s: would fetch %zu POP3 messages (%llu bytes)\n", folder, p->count, (unsigned long long)p->size);
        break;
    case ENGINE_PLAN_RETIRE:
        printf("%s: would remove UID %u from the server (server_retention_days; the local copy stays)\n", folder,
               p->uid);
        break;
    case ENGINE_PLAN_RETIRE_COUNT:
        printf("%s: would delete %zu POP3 messages from the server once stored (the local copies stay)\n", folder,
               p->count);
        break;
    case ENGINE_PLAN_LINK: {
        char *from = log_clean(p->from ? p->from : "");
        printf("%s: would link UID %u to the file of %s (%llu bytes, flags %s; the same message, Gmail labels: not "
               "downloaded)\n", folder, p->uid, from, (unsigned long long)p->size, flags_to_letters(p->flags, a));
        free(from);
        break;
    }
    case ENGINE_PLAN_MOVE_LOCAL: {
        char *from = log_clean(p->from ? p->from : "");
        printf("%s: would move the local copy of UID %u of %s here as UID %u (moved on the server; nothing "
               "downloaded)\n", folder, p->from_uid, from, p->uid);
        free(from);
        break;
    }
    }
    free(folder);
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void on_planned(void *ctx, const struct engine_planned *p)
{
    (void)ctx;
    if (!plans.json) {
        progress_suspend();
        print_planned(p);
        fflush(stdout); /* before the progress line comes back */
        progress_resume(false);
        return;
    }
    if (plans.n == plans.cap) {
        plans.cap = plans.cap ? plans.cap * 2 : 64;
        plans.v = xrealloc(plans.v, plans.cap * sizeof *plans.v);
    }
    struct planned_copy *c = &plans.v[plans.n++];
    c->account = dup_or_null(p->account);
    c->folder = dup_or_null(p->folder);
    c->file = dup_or_null(p->file);
    c->from = dup_or_null(p->from);
    c->step = *p;
    c->step.account = c->account;
    c->step.folder = c->folder;
    c->step.file = c->file;
    c->step.from = c->from;
}

static void plans_free(void)
{
    for (size_t i = 0; i < plans.n; i++) {
        free(plans.v[i].account);
        free(plans.v[i].folder);
        free(plans.v[i].file);
        free(plans.v[i].from);
    }
    free(plans.v);
    plans.v = NULL;
    plans.n = plans.cap = 0;
}

static struct engine_progress hooks = {
    .ctx = NULL,
    .account_start = NULL,
    .folder_begin = NULL,
    .upload_start = NULL,
    .folder_start = NULL,
    .message_done = NULL,
    .folder_done = NULL,
    .planned = on_planned,
    .account_done = NULL,
};

void output_init(enum progress_mode mode, bool quiet, bool json)
{
    /* -q and --json keep stderr for what went wrong, even with
     * --progress=always (which draws where stderr is no terminal) */
    plans.json = json;
    if (!quiet && !json && (mode == PROGRESS_ALWAYS || (mode == PROGRESS_AUTO && isatty(STDERR_FILENO))))
        progress_on(&hooks);
}

void output_progress_accounts(size_t n)
{
    progress_set_accounts(n);
}

const struct engine_progress *output_progress(void)
{
    return &hooks;
}

void output_summary(FILE *out, const char *command, const struct engine_result *r, bool dry_run)
{
    size_t fetched = 0, flagged = 0, deleted = 0, skipped = 0, failed = 0, stopped = 0;
    size_t uploaded = 0, pflags = 0, pdeleted = 0, retired = 0, moved = 0, pmoved = 0;
    size_t placeholders = 0, replaced = 0, linked = 0;
    uint64_t bytes = 0;
    bool pushing = strcmp(command, "push") == 0 || strcmp(command, "sync") == 0;
    bool pulling = strcmp(command, "push") != 0 && strcmp(command, "fetch") != 0;
    for (size_t i = 0; i < r->nfolders; i++) {
        const struct engine_folder_result *f = &r->folders[i];
        fetched += f->fetched;
        bytes += f->bytes;
        flagged += f->flagged;
        deleted += f->deleted;
        skipped += f->skipped;
        placeholders += f->placeholders;
        replaced += f->replaced;
        linked += f->linked;
        failed += f->status != 0 && !f->stopped;
        stopped += f->stopped;
        uploaded += f->uploaded;
        pflags += f->pushed_flags;
        pdeleted += f->pushed_deleted;
        retired += f->retired;
        moved += f->moved;
        pmoved += f->moved_on_server;
        bool pulled = f->fetched || f->flagged || f->deleted || f->moved;
        bool pushed = f->uploaded || f->pushed_flags || f->pushed_deleted || f->moved_on_server;
        if (log_verbosity >= 1 && (pulled || f->status || pushed)) {
            output_name_column(out, f->name, 30);
            if (pulling)
                fprintf(out, "%zu new, %zu flag changes, %zu deleted, %zu moved", f->fetched, f->flagged,
                        f->deleted, f->moved);
            if (pushing)
                fprintf(out, "%sup: %zu uploaded, %zu flag changes, %zu deleted, %zu moved", pulling ? "; " : "",
                        f->uploaded, f->pushed_flags, f->pushed_deleted, f->moved_on_server);
            fprintf(out, "%s\n", f->stopped ? " (stopped)" : f->status ? " (failed)" : "");
        }
    }
    char b[32];
    human_bytes(b, sizeof b, bytes);
    output_clear_line(); /* stdout may be the progress line's terminal too */
    fprintf(out, "%s%s: %s ", dry_run ? "[dry run] " : "", r->account, command);
    if (r->status != MS_OK && r->status != MS_EPARTIAL) {
        /* The account's run failed (no connection, login, local store...):
         * no summary that reads like a success; what was done before the
         * failure, if anything, follows. */
        fputs("failed: ", out);
        output_print_clean(out, r->error[0] ? r->error : "see the messages above");
        bool did = fetched || flagged || deleted || moved || uploaded || pflags || pdeleted || pmoved || retired;
        if (!did) {
            fprintf(out, " (after %.1f s)\n", r->seconds);
            return;
        }
        fprintf(out, "; before that, %zu folders:", r->nfolders);
    } else {
        fprintf(out, "%zu folders:", r->nfolders);
    }
    /* "moved": a message that changed folders, neither downloaded nor
     * uploaded (nor counted as deleted) */
    if (pulling)
        fprintf(out, " %zu new (%s), %zu flag changes, %zu deleted, %zu moved", fetched, b, flagged, deleted, moved);
    if (pushing)
        fprintf(out, "%s %zu uploaded, %zu flag changes, %zu deleted on the server, %zu moved on the server",
                pulling ? ";" : "", uploaded, pflags, pdeleted, pmoved);
    if (linked) /* of the new: the same message as a file of another folder (Gmail labels) */
        fprintf(out, ", %zu linked to a file in another folder (not downloaded)", linked);
    if (retired)
        fprintf(out, ", %zu removed from the server (kept locally)", retired);
    if (skipped)
        fprintf(out, ", %zu over max_size skipped", skipped);
    if (placeholders)
        fprintf(out, ", %zu over max_size stored as placeholders", placeholders);
    if (replaced)
        fprintf(out, ", %zu placeholders replaced by the full message", replaced);
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

void output_print_clean(FILE *out, const char *text)
{
    char *clean = log_clean(text);
    fputs(clean, out);
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

/* The counters of a folder's result (or of their sums), as members
 * ,"fetched":..,"failed":.. of an object. */
static void json_counts(FILE *out, const struct engine_folder_result *f)
{
    fprintf(out, ",\"fetched\":%zu,\"bytes\":%" PRIu64 ",\"flags_changed\":%zu,\"deleted\":%zu,\"skipped\":%zu",
            f->fetched, f->bytes, f->flagged, f->deleted, f->skipped);
    fprintf(out, ",\"uploaded\":%zu,\"bytes_up\":%" PRIu64 ",\"flags_pushed\":%zu,\"deleted_on_server\":%zu",
            f->uploaded, f->bytes_up, f->pushed_flags, f->pushed_deleted);
    fprintf(out, ",\"retired\":%zu,\"moved\":%zu,\"moved_on_server\":%zu", f->retired, f->moved,
            f->moved_on_server);
    fprintf(out, ",\"failed\":%zu", f->failed);
}

static void json_folder(FILE *out, const struct engine_folder_result *f)
{
    fputs("{\"name\":", out);
    output_json_string(out, f->name);
    fputs(",\"path\":", out);
    output_json_string(out, f->path);
    json_counts(out, f);
    fprintf(out, ",\"stopped\":%s,\"status\":%d,\"error\":", f->stopped ? "true" : "false", f->status);
    output_json_string(out, f->error);
    fputc('}', out);
}

/* ,"totals":{...}: the sums of an account's folder counters. */
static void json_totals(FILE *out, const struct engine_result *r)
{
    struct engine_folder_result t;
    engine_result_totals(r, &t);
    fputs(",\"totals\":{\"folders\":", out);
    fprintf(out, "%zu", r->nfolders);
    json_counts(out, &t);
    fputc('}', out);
}

static unsigned json_documents;

unsigned output_json_documents(void)
{
    return json_documents;
}

static void json_letters(FILE *out, const char *key, unsigned flags)
{
    char l[8];
    fprintf(out, ",\"%s\":\"%s\"", key, flags_to_letters(flags, l));
}

static void json_planned(FILE *out, const struct engine_planned *p)
{
    static const char *const kinds[] = {
        [ENGINE_PLAN_FETCH] = "fetch",
        [ENGINE_PLAN_SKIP] = "skip",
        [ENGINE_PLAN_SET_FLAGS] = "set_flags",
        [ENGINE_PLAN_DELETE_LOCAL] = "delete_local",
        [ENGINE_PLAN_REMOVE_ON_SERVER] = "remove_on_server",
        [ENGINE_PLAN_STORE_FLAGS] = "store_flags",
        [ENGINE_PLAN_UPLOAD] = "upload",
        [ENGINE_PLAN_CREATE_FOLDER] = "create_folder",
        [ENGINE_PLAN_FETCH_COUNT] = "fetch_count",
        [ENGINE_PLAN_MOVE_ON_SERVER] = "move_on_server",
        [ENGINE_PLAN_MOVE_LOCAL] = "move_local",
        [ENGINE_PLAN_DELETE_KEPT] = "delete_kept",
        [ENGINE_PLAN_RETIRE] = "retire",
        [ENGINE_PLAN_RETIRE_COUNT] = "retire_count",
        [ENGINE_PLAN_PLACEHOLDER] = "placeholder",
        [ENGINE_PLAN_LINK] = "link",
    };
    fputs("{\"folder\":", out);
    output_json_string(out, p->folder);
    fprintf(out, ",\"action\":\"%s\"", kinds[p->kind]);
    switch (p->kind) {
    case ENGINE_PLAN_FETCH:
        fprintf(out, ",\"uid\":%u,\"size\":%" PRIu64, p->uid, p->size);
        json_letters(out, "flags", p->flags);
        break;
    case ENGINE_PLAN_SKIP:
    case ENGINE_PLAN_PLACEHOLDER: fprintf(out, ",\"uid\":%u,\"size\":%" PRIu64, p->uid, p->size); break;
    case ENGINE_PLAN_SET_FLAGS:
        fprintf(out, ",\"uid\":%u", p->uid);
        json_letters(out, "flags", p->flags);
        break;
    case ENGINE_PLAN_DELETE_LOCAL:
    case ENGINE_PLAN_REMOVE_ON_SERVER:
    case ENGINE_PLAN_RETIRE: fprintf(out, ",\"uid\":%u", p->uid); break;
    case ENGINE_PLAN_RETIRE_COUNT: fprintf(out, ",\"count\":%zu", p->count); break;
    case ENGINE_PLAN_STORE_FLAGS:
        fprintf(out, ",\"uid\":%u", p->uid);
        json_letters(out, "add", p->flags);
        json_letters(out, "remove", p->flags_removed);
        break;
    case ENGINE_PLAN_UPLOAD:
        fputs(",\"file\":", out);
        output_json_string(out, p->file);
        json_letters(out, "flags", p->flags);
        break;
    case ENGINE_PLAN_DELETE_KEPT:
        fputs(",\"file\":", out);
        output_json_string(out, p->file);
        break;
    case ENGINE_PLAN_MOVE_ON_SERVER:
        fputs(",\"from\":", out);
        output_json_string(out, p->from);
        fprintf(out, ",\"uid\":%u,\"size\":%" PRIu64 ",\"file\":", p->uid, p->size);
        output_json_string(out, p->file);
        json_letters(out, "flags", p->flags);
        break;
    case ENGINE_PLAN_CREATE_FOLDER: break;
    case ENGINE_PLAN_FETCH_COUNT: fprintf(out, ",\"count\":%zu,\"size\":%" PRIu64, p->count, p->size); break;
    case ENGINE_PLAN_LINK:
        fprintf(out, ",\"uid\":%u,\"size\":%" PRIu64 ",\"from\":", p->uid, p->size);
        output_json_string(out, p->from ? p->from : "");
        json_letters(out, "flags", p->flags);
        break;
    case ENGINE_PLAN_MOVE_LOCAL:
        fprintf(out, ",\"uid\":%u,\"size\":%" PRIu64 ",\"from\":", p->uid, p->size);
        output_json_string(out, p->from ? p->from : "");
        fprintf(out, ",\"from_uid\":%u", p->from_uid);
        json_letters(out, "flags", p->flags);
        break;
    }
    fputc('}', out);
}

/* ,"plan":[...] of account (the steps kept for it) */
static void json_plan(FILE *out, const char *account)
{
    fputs(",\"plan\":[", out);
    bool first = true;
    for (size_t i = 0; i < plans.n; i++) {
        if (!plans.v[i].account || strcmp(plans.v[i].account, account) != 0)
            continue;
        if (!first)
            fputc(',', out);
        first = false;
        json_planned(out, &plans.v[i].step);
    }
    fputc(']', out);
}

static void json_results(FILE *out, const char *command, const struct engine_result *r, size_t n, int exit_code,
                         bool dry_run)
{
    output_json_open(out, command);
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
        fputc(']', out);
        json_totals(out, &r[i]);
        if (dry_run)
            json_plan(out, r[i].account);
        fputc('}', out);
    }
    fputs("]}\n", out);
}

void output_json_results(FILE *out, const char *command, const struct engine_result *r, size_t n, int exit_code,
                         bool dry_run)
{
    json_results(out, command, r, n, exit_code, dry_run);
    json_documents++;
    plans_free();
}

void output_json_copy(FILE *out, const char *command, const struct engine_result *r, int exit_code)
{
    json_results(out, command, r, 1, exit_code, false);
}

/* {"schema_version",..,"command","exit","error": of the error document */
static void json_error_head(FILE *out, const char *command, int exit_code)
{
    output_json_open(out, command);
    fprintf(out, ",\"exit\":%d,\"error\":", exit_code);
    pthread_mutex_lock(&log_lock);
    output_json_string(out, last_error[0] ? last_error : NULL);
    pthread_mutex_unlock(&log_lock);
}

void output_json_error(FILE *out, const char *command, int exit_code)
{
    json_error_head(out, command, exit_code);
    fputs(",\"errors\":[],\"errors_total\":0,\"accounts\":[]}\n", out);
    json_documents++;
}

static void json_config_error(FILE *out, const char *path, int line, const char *key, const char *message,
                              const char *suggestion)
{
    fputs("{\"file\":", out);
    output_json_string(out, path);
    if (line > 0)
        fprintf(out, ",\"line\":%d", line);
    else
        fputs(",\"line\":null", out);
    fputs(",\"key\":", out);
    output_json_string(out, key);
    fputs(",\"message\":", out);
    output_json_string(out, message);
    fputs(",\"suggestion\":", out);
    output_json_string(out, suggestion);
    fputc('}', out);
}

void output_json_config_error(FILE *out, const char *command, int exit_code, const char *path, const struct config *cfg,
                              const char *whole)
{
    json_error_head(out, command, exit_code);
    fputs(",\"errors\":[", out);
    size_t total = cfg->nerrors_total;
    for (size_t i = 0; i < cfg->nerrors; i++) {
        const struct config_error *e = &cfg->error_info[i];
        if (i)
            fputc(',', out);
        json_config_error(out, path, e->line, e->key, e->message, e->suggestion);
    }
    if (!cfg->nerrors) { /* the whole file: "PATH: what" */
        size_t n = strlen(path);
        const char *what = strncmp(whole, path, n) == 0 && strncmp(whole + n, ": ", 2) == 0 ? whole + n + 2 : whole;
        json_config_error(out, path, 0, NULL, what, NULL);
        total = 1;
    }
    fprintf(out, "],\"errors_total\":%zu,\"accounts\":[]}\n", total);
    json_documents++;
}

void output_json_begin(FILE *out, const char *command)
{
    output_json_open(out, command);
    fputs(",\"accounts\":[", out);
}

void output_json_end(FILE *out, int exit_code)
{
    fprintf(out, "],\"exit\":%d}\n", exit_code);
    json_documents++;
}

/* {"name":..,"status":..,"error":.. of an account object */
static void json_account_head(FILE *out, const struct account *a, int rc, const char *error, bool first)
{
    fputs(first ? "{\"name\":" : ",{\"name\":", out);
    output_json_string(out, a->name);
    fprintf(out, ",\"status\":%d,\"error\":", rc);
    output_json_string(out, rc && error && error[0] ? error : NULL);
}

static void print_time(FILE *out, const char *label, int64_t t)
{
    if (!t) {
        fprintf(out, "%snever", label);
        return;
    }
    char buf[64];
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(out, "%s%s", label, buf);
}

void output_status_json(FILE *out, const struct account *a, int rc, const char *error, const struct engine_status *s,
                        bool first)
{
    json_account_head(out, a, rc, error, first);
    if (rc) {
        fputs(",\"synced_before\":null,\"last_sync\":null,\"last_error\":null,\"folders\":[]}", out);
        return;
    }
    fprintf(out, ",\"synced_before\":%s,\"last_sync\":%lld,\"retired\":%lld,\"kept_by_backup\":%lld,\"last_error\":",
            s->have_state ? "true" : "false", (long long)s->last_sync, (long long)s->retired,
            (long long)s->kept_by_backup);
    output_json_string(out, s->last_error);
    fputs(",\"folders\":[", out);
    for (size_t i = 0; i < s->nfolders; i++) {
        const struct engine_status_folder *f = &s->folders[i];
        char *name = names_display(f->name);
        fputs(i ? ",{\"name\":" : "{\"name\":", out);
        output_json_string(out, name);
        fputs(",\"path\":", out);
        output_json_string(out, f->path);
        fprintf(out,
                ",\"synced\":%lld,\"local\":%lld,\"local_new\":%lld,\"local_flag_changes\":%lld,"
                "\"local_deleted\":%lld,\"last_sync\":%lld,\"retired\":%lld,\"kept_by_backup\":%lld}",
                (long long)f->synced, (long long)f->local, (long long)f->local_new, (long long)f->local_flags,
                (long long)f->local_gone, (long long)f->last_sync, (long long)f->retired,
                (long long)f->kept_by_backup);
        free(name);
    }
    fputs("]}", out);
}

void output_status_text(FILE *out, const struct account *a, const struct engine_status *s)
{
    fprintf(out, "%s (", a->name);
    output_print_clean(out, a->maildir);
    fprintf(out, ")\n");
    if (!s->have_state) {
        fprintf(out, "  never synced\n");
        return;
    }
    print_time(out, "  last successful sync: ", s->last_sync);
    fprintf(out, "\n  last error: "); /* its text may quote a server or a name on disk */
    output_print_clean(out, s->last_error ? s->last_error : "none");
    fprintf(out, "\n");
    if (s->retired || s->kept_by_backup)
        fprintf(out, "  only local, never pushed: %lld retired (server_retention_days), %lld kept by backup mode\n",
                (long long)s->retired, (long long)s->kept_by_backup);
    for (size_t i = 0; i < s->nfolders; i++) {
        const struct engine_status_folder *f = &s->folders[i];
        char *name = names_display(f->name);
        output_name_column(out, name, 30);
        fprintf(out, "%6lld synced, ", (long long)f->synced);
        if (f->local < 0)
            fprintf(out, "local folder missing");
        else
            fprintf(out, "%6lld local; to push: %lld new, %lld flag changes, %lld deleted", (long long)f->local,
                    (long long)f->local_new, (long long)f->local_flags, (long long)f->local_gone);
        print_time(out, "; synced ", f->last_sync);
        if (f->retired || f->kept_by_backup)
            fprintf(out, "; only local: %lld retired, %lld kept by backup", (long long)f->retired,
                    (long long)f->kept_by_backup);
        fprintf(out, "\n");
        free(name);
    }
}

void output_check_text(FILE *out, const struct account *a, const struct engine_check *c)
{
    /* The TLS line (certificate names) and capabilities are server text. */
    fprintf(out, "%s: OK: %s@%s:%d\n  TLS: ", a->name, a->user, a->host, a->port);
    output_print_clean(out, c->tls);
    fprintf(out, "\n  authenticated as %s\n  %zu folders\n  capabilities: ", a->user, c->nfolders);
    output_print_clean(out, c->capabilities ? c->capabilities : "");
    fprintf(out, "\n");
}

void output_check_json(FILE *out, const struct account *a, int rc, const char *error, const struct engine_check *c,
                       bool first)
{
    json_account_head(out, a, rc, error, first);
    fputs(",\"user\":", out);
    output_json_string(out, a->user);
    fputs(",\"host\":", out);
    output_json_string(out, a->host);
    fprintf(out, ",\"port\":%d,\"tls\":", a->port);
    output_json_string(out, rc ? NULL : c->tls);
    if (rc)
        fputs(",\"folders\":null", out);
    else
        fprintf(out, ",\"folders\":%zu", c->nfolders);
    fputs(",\"capabilities\":", out);
    output_json_string(out, rc ? NULL : c->capabilities ? c->capabilities : "");
    fputc('}', out);
}

void output_folders_text(FILE *out, const struct account *a, const struct engine_folder_map *m, size_t n)
{
    fprintf(out, "%s:\n", a->name);
    for (size_t j = 0; j < n; j++) {
        output_name_column(out, m[j].name, 32);
        if (m[j].noselect)
            fprintf(out, "(no messages: \\Noselect)");
        else if (!m[j].path)
            fprintf(out, "(skipped: %s)", m[j].why);
        else if (!m[j].selected)
            fprintf(out, "(excluded) %s/%s", a->maildir, m[j].path);
        else
            fprintf(out, "-> %s/%s", a->maildir, m[j].path);
        char roles[80];
        if (m[j].roles) /* SPECIAL-USE: what the server says the folder is for */
            fprintf(out, "  %s", names_roles_text(m[j].roles, roles, sizeof roles));
        fputc('\n', out);
    }
}

void output_folders_json(FILE *out, const struct account *a, int rc, const char *error,
                         const struct engine_folder_map *m, size_t n, bool first)
{
    json_account_head(out, a, rc, error, first);
    fputs(",\"maildir\":", out);
    output_json_string(out, a->maildir);
    fputs(",\"folders\":[", out);
    for (size_t j = 0; !rc && j < n; j++) {
        fputs(j ? ",{\"name\":" : "{\"name\":", out);
        output_json_string(out, m[j].name);
        fputs(",\"raw\":", out);
        output_json_string(out, m[j].raw);
        fputs(",\"path\":", out);
        output_json_string(out, m[j].path);
        fputs(",\"local_path\":", out);
        if (m[j].path) {
            size_t len = strlen(a->maildir) + strlen(m[j].path) + 2;
            char *full = xmalloc(len);
            snprintf(full, len, "%s/%s", a->maildir, m[j].path);
            output_json_string(out, full);
            free(full);
        } else {
            fputs("null", out);
        }
        fprintf(out, ",\"selected\":%s,\"noselect\":%s,\"skipped\":", m[j].selected ? "true" : "false",
                m[j].noselect ? "true" : "false");
        output_json_string(out, !m[j].path && !m[j].noselect ? m[j].why : NULL);
        /* SPECIAL-USE roles, as IMAP names them ("\\Trash") */
        fputs(",\"roles\":[", out);
        for (unsigned bit = 1, k = 0; bit && bit <= m[j].roles; bit <<= 1) {
            char role[24];
            if (!(m[j].roles & bit))
                continue;
            if (k++)
                fputc(',', out);
            output_json_string(out, names_roles_text(bit, role, sizeof role));
        }
        fputc(']', out);
        fputc('}', out);
    }
    fputs("]}", out);
}
