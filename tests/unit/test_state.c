/* SPDX-License-Identifier: MIT */
/* test_state.c: the state DB (db/state.c) in a fresh mkdtemp directory per
 * test: schema, folders, messages, transactions, meta, and refusing files
 * that are not usable mailsync DBs without touching them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_tmp.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/flags.h"

struct fixture {
    char dir[64];
    char path[256]; /* dir/a/b/state.sqlite: parents do not exist yet */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    unit_tmpdir(fx->dir, sizeof fx->dir, "test_state", false);
    snprintf(fx->path, sizeof fx->path, "%s/a/b/state.sqlite", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    unit_rmtree(fx->dir);
    free(fx);
    return 0;
}

static struct state *open_ok(const char *path)
{
    struct state *s = NULL;
    struct ms_error err;
    if (state_open(path, &s, &err) != MS_OK)
        fail_msg("%s", err.msg);
    return s;
}

static int64_t add_folder(struct state *s, const char *name)
{
    struct state_folder f = {.name = (char *)name, .path = (char *)name, .uidvalidity = 7, .uidnext = 1};
    struct ms_error err;
    assert_int_equal(state_folder_save(s, &f, &err), MS_OK);
    assert_true(f.id > 0);
    return f.id;
}

static void put(struct state *s, int64_t fid, uint32_t uid, const char *uniq)
{
    struct state_msg m = {.uid = uid, .uniq = (char *)uniq, .flags = FLAG_SEEN, .size = 100 + uid};
    struct ms_error err;
    assert_int_equal(state_msg_put(s, fid, &m, &err), MS_OK);
}

static size_t count_msgs(struct state *s, int64_t fid)
{
    struct state_msg *v;
    size_t n;
    struct ms_error err;
    assert_int_equal(state_msg_list(s, fid, &v, &n, &err), MS_OK);
    state_msgs_free(v, n);
    return n;
}

/* ---- opening ---- */

static void create_and_reopen(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/a", fx->dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    snprintf(dir, sizeof dir, "%s/a/b", fx->dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    int64_t fid = add_folder(s, "INBOX");
    put(s, fid, 1, "u1");
    struct ms_error err;
    assert_int_equal(state_meta_set(s, "last_sync", "123", &err), MS_OK);
    /* WAL and shm files are not readable by others either. */
    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", fx->path);
    if (stat(wal, &st) == 0)
        assert_int_equal(st.st_mode & 077, 0);
    state_close(s);

    s = open_ok(fx->path);
    struct state_folder f;
    assert_int_equal(state_folder_get(s, "INBOX", &f, &err), MS_OK);
    assert_int_equal(f.id, fid);
    assert_int_equal(f.message_count, -1); /* get does not count */
    state_folder_free(&f);
    struct state_folder *all;
    size_t nall;
    assert_int_equal(state_folder_list(s, &all, &nall, &err), MS_OK);
    assert_int_equal(nall, 1);
    assert_int_equal(all[0].message_count, 1);
    state_folders_free(all, nall);
    bool synced;
    assert_int_equal(state_any_synced(s, &synced, &err), MS_OK);
    assert_false(synced);
    assert_int_equal(state_folder_get(s, "INBOX", &f, &err), MS_OK);
    state_folder_free(&f);
    char *v;
    assert_int_equal(state_meta_get(s, "last_sync", &v, &err), MS_OK);
    assert_string_equal(v, "123");
    free(v);
    /* The schema version is ours, and cannot be overwritten by a caller. */
    assert_int_equal(state_meta_get(s, "schema_version", &v, &err), MS_OK);
    assert_string_equal(v, "2");
    free(v);
    assert_int_equal(state_meta_set(s, "schema_version", "2", &err), MS_ELOCAL);
    state_close(s);
}

static void empty_file_is_initialized(void **state)
{
    struct fixture *fx = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/empty.sqlite", fx->dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    close(fd);
    struct state *s = open_ok(path);
    add_folder(s, "INBOX");
    state_close(s);
}

static void check_refused_untouched(const char *path, const char *content, size_t len, const char *why)
{
    struct state *s = (struct state *)1;
    struct ms_error err;
    assert_int_equal(state_open(path, &s, &err), MS_ELOCAL);
    assert_null(s);
    assert_non_null(strstr(err.msg, "is unusable"));
    assert_non_null(strstr(err.msg, "nothing was changed"));
    if (why && !strstr(err.msg, why))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, why);
    /* Byte for byte the same, and no journal files appeared. */
    char *buf = malloc(len + 16);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, len + 16);
    close(fd);
    assert_int_equal(n, (ssize_t)len);
    assert_memory_equal(buf, content, len);
    free(buf);
    const char *suffixes[] = {"-wal", "-shm", "-journal"};
    for (int i = 0; i < 3; i++) {
        char side[300];
        snprintf(side, sizeof side, "%s%s", path, suffixes[i]);
        assert_int_equal(access(side, F_OK), -1);
    }
}

static void garbage_file_refused(void **state)
{
    struct fixture *fx = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/garbage.sqlite", fx->dir);
    char content[4096];
    for (size_t i = 0; i < sizeof content; i++)
        content[i] = (char)(i * 7 + 3);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_int_equal(write(fd, content, sizeof content), (ssize_t)sizeof content);
    close(fd);
    check_refused_untouched(path, content, sizeof content, "not an SQLite database");

    /* A text file (say, the config saved to the wrong path). */
    const char *text = "[account personal]\nhost = imap.example.org\n";
    fd = open(path, O_TRUNC | O_WRONLY);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    check_refused_untouched(path, text, strlen(text), NULL);
}

/* Build a real DB with some rows and return its bytes (closed, WAL merged). */
static char *make_db(const char *path, size_t *len, int rows)
{
    struct state *s = open_ok(path);
    int64_t fid = add_folder(s, "INBOX");
    struct ms_error err;
    assert_int_equal(state_begin(s, &err), MS_OK);
    for (int i = 1; i <= rows; i++) {
        char uniq[64];
        snprintf(uniq, sizeof uniq, "1700000000.M%dP1R0123456789abcdef.host", i);
        put(s, fid, (uint32_t)i, uniq);
    }
    assert_int_equal(state_commit(s, &err), MS_OK);
    state_close(s);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    *len = (size_t)st.st_size;
    char *buf = malloc(*len);
    int fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, buf, *len), (ssize_t)*len);
    close(fd);
    return buf;
}

static void truncated_db_refused(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    char *bytes = make_db(fx->path, &len, 3000);
    assert_true(len > 8 * 4096);
    /* Cut it in half, then to a few hundred bytes. */
    size_t cuts[] = {len / 2, 4096 + 100, 300};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(truncate(fx->path, (off_t)cuts[i]), 0);
        check_refused_untouched(fx->path, bytes, cuts[i], NULL);
    }
    free(bytes);
}

static void garbled_db_refused(void **state)
{
    struct fixture *fx = *state;
    size_t len;
    char *bytes = make_db(fx->path, &len, 3000);
    /* Overwrite a few pages in the middle with junk. */
    for (size_t i = len / 3; i < len / 3 + 3 * 4096 && i < len; i++)
        bytes[i] = (char)(i * 13);
    int fd = open(fx->path, O_WRONLY);
    assert_int_equal(pwrite(fd, bytes, len, 0), (ssize_t)len);
    close(fd);
    check_refused_untouched(fx->path, bytes, len, "integrity");
    free(bytes);
}

static void foreign_or_newer_db_refused(void **state)
{
    struct fixture *fx = *state;
    /* Somebody else's SQLite DB. */
    char path[300];
    snprintf(path, sizeof path, "%s/other.sqlite", fx->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE cookies (name TEXT); INSERT INTO cookies VALUES ('x');", NULL,
                                  NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    char *buf = malloc((size_t)st.st_size);
    int fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    check_refused_untouched(path, buf, (size_t)st.st_size, "not a mailsync state DB");
    free(buf);

    /* Ours, but from a newer mailsync. */
    struct state *s = open_ok(fx->path);
    state_close(s);
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct ms_error err;
    assert_int_equal(state_open(fx->path, &s, &err), MS_ELOCAL);
    assert_non_null(strstr(err.msg, "newer"));
}

static void not_a_file_refused(void **state)
{
    struct fixture *fx = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/adir", fx->dir);
    mkdir(path, 0700);
    struct state *s;
    struct ms_error err;
    assert_int_equal(state_open(path, &s, &err), MS_ELOCAL);
    assert_null(s);
}

/* ---- folders ---- */

static void folders(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    struct state_folder f;
    assert_int_equal(state_folder_get(s, "Sent", &f, &err), MS_OK);
    assert_int_equal(f.id, 0);
    assert_null(f.name);
    assert_null(f.path);

    struct state_folder sent = {.name = "Sent", .path = "Sent", .uidvalidity = 0xFFFFFFFFu, .uidnext = 4000000000u,
                                .highestmodseq = (1ull << 63) + 5, .last_sync = 1700000000};
    assert_int_equal(state_folder_save(s, &sent, &err), MS_OK);
    int64_t sent_id = sent.id;
    int64_t a_id = add_folder(s, "Archive");
    assert_int_not_equal(a_id, sent_id);
    put(s, sent_id, 1, "x");
    put(s, sent_id, 2, "y");

    assert_int_equal(state_folder_get(s, "Sent", &f, &err), MS_OK);
    assert_int_equal(f.id, sent_id);
    assert_string_equal(f.name, "Sent");
    assert_string_equal(f.path, "Sent");
    assert_int_equal(f.uidvalidity, 0xFFFFFFFFu);
    assert_int_equal(f.uidnext, 4000000000u);
    assert_true(f.highestmodseq == (1ull << 63) + 5);
    assert_int_equal(f.last_sync, 1700000000);
    assert_int_equal(f.message_count, -1);
    bool synced;
    assert_int_equal(state_any_synced(s, &synced, &err), MS_OK);
    assert_true(synced);

    /* Update. */
    f.uidvalidity = 42;
    f.highestmodseq = 0;
    char *oldpath = f.path;
    f.path = strdup("Sent Items");
    free(oldpath);
    assert_int_equal(state_folder_save(s, &f, &err), MS_OK);
    assert_int_equal(f.id, sent_id);
    state_folder_free(&f);

    struct state_folder *list;
    size_t n;
    assert_int_equal(state_folder_list(s, &list, &n, &err), MS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "Archive");
    assert_int_equal(list[0].message_count, 0);
    assert_string_equal(list[1].name, "Sent");
    assert_string_equal(list[1].path, "Sent Items");
    assert_int_equal(list[1].uidvalidity, 42);
    assert_int_equal(list[1].message_count, 2);
    state_folders_free(list, n);

    /* A second folder with the same name is refused (UNIQUE). */
    struct state_folder dup = {.name = "Sent"};
    assert_int_equal(state_folder_save(s, &dup, &err), MS_ELOCAL);

    /* Delete cascades to the messages. */
    assert_int_equal(state_folder_delete(s, sent_id, &err), MS_OK);
    assert_int_equal(count_msgs(s, sent_id), 0);
    assert_int_equal(state_folder_get(s, "Sent", &f, &err), MS_OK);
    assert_int_equal(f.id, 0);
    /* Saving a folder whose row is gone is an error, not a silent no-op. */
    struct state_folder gone = {.id = sent_id, .name = "Sent"};
    assert_int_equal(state_folder_save(s, &gone, &err), MS_ELOCAL);
    state_close(s);
}

/* ---- messages ---- */

static void messages(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t fid = add_folder(s, "INBOX");
    int64_t other = add_folder(s, "Other");
    struct state_msg m = {.uid = 0xFFFFFFFFu, .uniq = "big", .flags = FLAG_FLAGGED | FLAG_DRAFT,
                          .keywords = "$Junk work", .size = 5000000000ull, .message_id = "<a@b>",
                          .hash = "abcdef", .pending = true};
    assert_int_equal(state_msg_put(s, fid, &m, &err), MS_OK);
    put(s, fid, 5, "five");
    put(s, fid, 3, "three");
    put(s, other, 3, "other-three");

    struct state_msg *v;
    size_t n;
    assert_int_equal(state_msg_list(s, fid, &v, &n, &err), MS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(v[0].uid, 3);
    assert_string_equal(v[0].uniq, "three");
    assert_int_equal(v[0].flags, FLAG_SEEN);
    assert_null(v[0].keywords);
    assert_null(v[0].message_id);
    assert_null(v[0].hash);
    assert_false(v[0].pending);
    assert_int_equal(v[1].uid, 5);
    assert_int_equal(v[2].uid, 0xFFFFFFFFu);
    assert_string_equal(v[2].uniq, "big");
    assert_int_equal(v[2].flags, FLAG_FLAGGED | FLAG_DRAFT);
    assert_string_equal(v[2].keywords, "$Junk work");
    assert_true(v[2].size == 5000000000ull);
    assert_string_equal(v[2].message_id, "<a@b>");
    assert_string_equal(v[2].hash, "abcdef");
    assert_true(v[2].pending);
    state_msgs_free(v, n);

    /* Put replaces. */
    put(s, fid, 5, "five-again");
    assert_int_equal(state_msg_set_flags(s, fid, 3, FLAG_ANSWERED, "kw", &err), MS_OK);
    assert_int_equal(state_msg_confirm(s, fid, 0xFFFFFFFFu, &err), MS_OK);
    assert_int_equal(state_msg_list(s, fid, &v, &n, &err), MS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(v[0].flags, FLAG_ANSWERED);
    assert_string_equal(v[0].keywords, "kw");
    assert_string_equal(v[1].uniq, "five-again");
    assert_false(v[2].pending);
    state_msgs_free(v, n);

    assert_int_equal(state_msg_delete(s, fid, 5, &err), MS_OK);
    assert_int_equal(count_msgs(s, fid), 2);
    assert_int_equal(state_msg_delete_all(s, fid, &err), MS_OK);
    assert_int_equal(count_msgs(s, fid), 0);
    assert_int_equal(count_msgs(s, other), 1); /* other folders untouched */

    /* A message for a folder that does not exist violates the foreign key. */
    assert_int_equal(state_msg_put(s, 9999, &m, &err), MS_ELOCAL);
    state_close(s);
}

static void transactions(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t fid = add_folder(s, "INBOX");
    put(s, fid, 1, "kept");

    assert_int_equal(state_begin(s, &err), MS_OK);
    put(s, fid, 2, "discarded");
    assert_int_equal(state_msg_delete(s, fid, 1, &err), MS_OK);
    assert_int_equal(state_meta_set(s, "k", "v", &err), MS_OK);
    state_rollback(s);
    assert_int_equal(count_msgs(s, fid), 1);
    char *v;
    assert_int_equal(state_meta_get(s, "k", &v, &err), MS_OK);
    assert_null(v);

    assert_int_equal(state_begin(s, &err), MS_OK);
    put(s, fid, 2, "committed");
    assert_int_equal(state_commit(s, &err), MS_OK);
    state_rollback(s); /* harmless outside a transaction */
    assert_int_equal(count_msgs(s, fid), 2);
    state_close(s);

    /* Committed work survives reopening; an open transaction at close does
     * not. */
    s = open_ok(fx->path);
    assert_int_equal(count_msgs(s, fid), 2);
    assert_int_equal(state_begin(s, &err), MS_OK);
    put(s, fid, 3, "uncommitted");
    state_close(s);
    s = open_ok(fx->path);
    assert_int_equal(count_msgs(s, fid), 2);
    state_close(s);
}

static void meta(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    char *v = (char *)1;
    assert_int_equal(state_meta_get(s, "last_error", &v, &err), MS_OK);
    assert_null(v);
    assert_int_equal(state_meta_set(s, "last_error", "connection refused", &err), MS_OK);
    assert_int_equal(state_meta_set(s, "last_error", "timeout", &err), MS_OK);
    assert_int_equal(state_meta_get(s, "last_error", &v, &err), MS_OK);
    assert_string_equal(v, "timeout");
    free(v);
    assert_int_equal(state_meta_set(s, "last_error", NULL, &err), MS_OK);
    assert_int_equal(state_meta_get(s, "last_error", &v, &err), MS_OK);
    assert_null(v);
    state_close(s);
}

/* The integrity stamp: a clean close vouches for the files, so the next
 * open skips quick_check; any change to their bytes, an old or a garbled
 * stamp brings the check back. */
static void stamp_path(const struct fixture *fx, char *out, size_t len)
{
    snprintf(out, len, "%s.checked", fx->path);
}

static bool reopen_checks(const char *path)
{
    struct state *s = open_ok(path);
    bool checked = state_integrity_checked(s);
    state_close(s);
    return checked;
}

/* A run that failed before its login closes the DB it opened with
 * state_leave_stamp: the DB, its stamp and the directory's files are then
 * as they were, whether the open checked the DB or the stamp vouched. */
static void leave_stamp_changes_nothing(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    add_folder(s, "INBOX");
    state_close(s);
    char stamp[300], wal[300], shm[300];
    stamp_path(fx, stamp, sizeof stamp);
    snprintf(wal, sizeof wal, "%s-wal", fx->path);
    snprintf(shm, sizeof shm, "%s-shm", fx->path);
    struct stat db0, st0, db1, st1;
    assert_int_equal(stat(fx->path, &db0), 0);
    assert_int_equal(stat(stamp, &st0), 0);

    /* the stamp vouches: the close leaves DB and stamp alone */
    s = open_ok(fx->path);
    assert_false(state_integrity_checked(s));
    state_leave_stamp(s);
    state_close(s);
    assert_int_equal(stat(fx->path, &db1), 0);
    assert_int_equal(stat(stamp, &st1), 0);
    assert_true(db1.st_mtim.tv_sec == db0.st_mtim.tv_sec && db1.st_mtim.tv_nsec == db0.st_mtim.tv_nsec);
    assert_true(st1.st_mtim.tv_sec == st0.st_mtim.tv_sec && st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec);
    assert_int_equal(st1.st_ino, st0.st_ino);

    /* no stamp: the open checks, and the close writes no stamp and plants
     * no mtime */
    assert_int_equal(unlink(stamp), 0);
    s = open_ok(fx->path);
    assert_true(state_integrity_checked(s));
    state_leave_stamp(s);
    state_close(s);
    assert_int_equal(stat(fx->path, &db1), 0);
    assert_true(db1.st_mtim.tv_sec == db0.st_mtim.tv_sec && db1.st_mtim.tv_nsec == db0.st_mtim.tv_nsec);
    assert_int_equal(db1.st_size, db0.st_size);
    assert_int_not_equal(access(stamp, F_OK), 0);
    assert_int_not_equal(access(wal, F_OK), 0);
    assert_int_not_equal(access(shm, F_OK), 0);

    /* an ordinary close after that stamps again */
    assert_true(reopen_checks(fx->path));
    assert_int_equal(access(stamp, F_OK), 0);
}

static void integrity_stamp(void **state)
{
    struct fixture *fx = *state;
    struct ms_error err;
    struct state *s = open_ok(fx->path);
    assert_false(state_integrity_checked(s)); /* fresh: nothing to check */
    int64_t fid = add_folder(s, "INBOX");
    for (uint32_t uid = 1; uid <= 500; uid++) {
        char uniq[32];
        snprintf(uniq, sizeof uniq, "u%u", uid);
        put(s, fid, uid, uniq);
    }
    state_close(s);
    char stamp[300];
    stamp_path(fx, stamp, sizeof stamp);
    struct stat st;
    assert_int_equal(stat(stamp, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);

    /* Untouched: the stamp vouches, twice in a row. */
    assert_false(reopen_checks(fx->path));
    assert_false(reopen_checks(fx->path));

    /* A copy that keeps the mtime (cp -a): vouched for without a read. */
    {
        char copy[320], cmd[700];
        snprintf(copy, sizeof copy, "%s.copy", fx->path);
        snprintf(cmd, sizeof cmd, "cp -p '%s' '%s'", fx->path, copy);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(rename(copy, fx->path), 0);
    }
    assert_false(reopen_checks(fx->path));

    /* A byte-for-byte copy with a new mtime: checked (the stamp does not
     * read the file). */
    {
        char copy[320];
        snprintf(copy, sizeof copy, "%s.copy", fx->path);
        FILE *in = fopen(fx->path, "rb"), *out = fopen(copy, "wb");
        assert_non_null(in);
        assert_non_null(out);
        char buf[8192];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
        fclose(out);
        assert_int_equal(rename(copy, fx->path), 0);
    }
    assert_true(reopen_checks(fx->path));
    /* ... and the close renewed the stamp, so the next open reads nothing. */
    {
        struct stat cur;
        assert_int_equal(stat(fx->path, &cur), 0);
        char stamp[300], line[640], want[64];
        stamp_path(fx, stamp, sizeof stamp);
        FILE *f = fopen(stamp, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof line, f));
        fclose(f);
        snprintf(want, sizeof want, " s:%lld:%lld\n", (long long)cur.st_size,
                 (long long)cur.st_mtim.tv_sec * 1000000000LL + cur.st_mtim.tv_nsec);
        if (!strstr(line, want))
            fail_msg("stamp \"%s\" does not name the copy (%s)", line, want);
    }
    assert_false(reopen_checks(fx->path));

    /* Written by another program (same size, same second): checked. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE messages SET flags = 0 WHERE uid = 7", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_true(reopen_checks(fx->path));
    assert_false(reopen_checks(fx->path));

    /* A WAL next to the DB (a crash, or another program had it open):
     * checked. */
    {
        char wal[320];
        snprintf(wal, sizeof wal, "%s-wal", fx->path);
        FILE *w = fopen(wal, "w");
        assert_non_null(w);
        fclose(w);
        assert_true(reopen_checks(fx->path));
        assert_int_equal(access(wal, F_OK), -1); /* SQLite removed it at close */
        assert_false(reopen_checks(fx->path));
    }

    /* A stamp more than a day old: checked. */
    FILE *f = fopen(stamp, "r");
    assert_non_null(f);
    char line[512], magic[64], ver[8];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    long long at;
    int off = 0;
    assert_int_equal(sscanf(line, "%63s %7s %lld %n", magic, ver, &at, &off), 3);
    f = fopen(stamp, "w");
    fprintf(f, "%s %s %lld %s", magic, ver, at - 2 * 24 * 3600, line + off);
    fclose(f);
    assert_true(reopen_checks(fx->path));
    assert_false(reopen_checks(fx->path));

    /* A garbled stamp: checked, and replaced by a good one. */
    f = fopen(stamp, "w");
    fputs("mailsync-integrity-stamp 2 garbage\n", f);
    fclose(f);
    assert_true(reopen_checks(fx->path));
    assert_false(reopen_checks(fx->path));

    /* A page garbled at once after a clean close (within the file system's
     * timestamp tick): refused, the stamp does not vouch for it. */
    int fd = open(fx->path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 31 + 7);
    assert_int_equal(pwrite(fd, junk, sizeof junk, st.st_size / 2 / 4096 * 4096), (ssize_t)sizeof junk);
    close(fd);
    assert_int_equal(state_open(fx->path, &s, &err), MS_ELOCAL);
    assert_non_null(strstr(err.msg, "integrity"));
}

/* A quiet run's record (<path>.lastrun): read for status only, per folder
 * only while the row still has the values the run saw; a torn or foreign
 * file reads as no record. */
static void quiet_run_record(void **state)
{
    struct fixture *fx = *state;
    struct ms_error err;
    struct state *s = open_ok(fx->path);
    struct state_folder a = {.name = "A", .path = "A", .uidvalidity = 7, .uidnext = 10, .highestmodseq = 50,
                             .last_sync = 1000};
    struct state_folder b = {.name = "B", .path = "B", .uidvalidity = 8, .uidnext = 3, .highestmodseq = 9,
                             .last_sync = 1000};
    assert_int_equal(state_folder_save(s, &a, &err), MS_OK);
    assert_int_equal(state_folder_save(s, &b, &err), MS_OK);
    assert_int_equal(state_meta_set(s, "last_sync", "1000", &err), MS_OK);
    assert_true(state_changed(s));
    state_close(s);

    s = open_ok(fx->path);
    assert_false(state_changed(s));
    struct state_quiet_folder q[2] = {{a.id, 7, 10, 50}, {b.id, 8, 3, 8 /* B moved on since */}};
    assert_int_equal(state_note_quiet_run(s, 2000, q, 2, &err), MS_OK);
    assert_false(state_changed(s)); /* the DB itself is untouched */
    state_close(s);

    s = open_ok(fx->path);
    assert_int_equal(state_last_sync(s), 2000);
    struct state_folder f;
    assert_int_equal(state_folder_get(s, "A", &f, &err), MS_OK);
    assert_int_equal(f.last_sync, 1000); /* the engine sees the DB's value */
    assert_int_equal(state_folder_last_sync(s, &f), 2000);
    state_folder_free(&f);
    assert_int_equal(state_folder_get(s, "B", &f, &err), MS_OK);
    assert_int_equal(state_folder_last_sync(s, &f), 1000);
    state_folder_free(&f);
    state_close(s);

    /* A later DB record wins over an older quiet run. */
    s = open_ok(fx->path);
    assert_int_equal(state_meta_set(s, "last_sync", "3000", &err), MS_OK);
    assert_int_equal(state_last_sync(s), 3000);
    state_close(s);

    /* Torn or foreign: ignored. */
    char path[300];
    snprintf(path, sizeof path, "%s.lastrun", fx->path);
    const char *bad[] = {"mailsync-lastrun 1 9000 2\n1 7 10 50\n", "garbage 9000\n",
                         "mailsync-lastrun 1 -5 0\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        FILE *out = fopen(path, "w");
        fputs(bad[i], out);
        fclose(out);
        s = open_ok(fx->path);
        assert_int_equal(state_last_sync(s), 3000);
        assert_int_equal(state_folder_get(s, "A", &f, &err), MS_OK);
        assert_int_equal(state_folder_last_sync(s, &f), 1000);
        state_folder_free(&f);
        state_close(s);
    }
}

/* A batch stays open across pieces of work; a transaction begun later
 * lands it first; an abort or a close drops it. */
static void batches(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t fid = add_folder(s, "INBOX");
    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 1, "a");
    assert_int_equal(state_batch(s, &err), MS_OK); /* joins */
    put(s, fid, 2, "b");
    /* A transaction of its own: the batch is committed before it begins,
     * so rolling it back keeps the batch's rows. */
    assert_int_equal(state_begin(s, &err), MS_OK);
    put(s, fid, 3, "c");
    state_rollback(s);
    assert_int_equal(count_msgs(s, fid), 2);
    assert_int_equal(state_batch_commit(s, &err), MS_OK); /* nothing open: no-op */

    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 4, "d");
    state_batch_abort(s);
    assert_int_equal(count_msgs(s, fid), 2);

    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 5, "e");
    assert_int_equal(state_batch_commit(s, &err), MS_OK);
    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 6, "left open");
    state_close(s);
    s = open_ok(fx->path);
    assert_int_equal(count_msgs(s, fid), 3);
    state_close(s);
}

/* Looking rows up by UID: outside a transaction it runs in a read
 * transaction of its own and ends it; inside a batch it sees the batch's
 * rows and leaves the batch as it was (not committed). */
static void lookups_by_uid(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t fid = add_folder(s, "INBOX");
    put(s, fid, 1, "a");
    put(s, fid, 2, "b");
    put(s, fid, 3, "c");
    const uint32_t want[] = {1, 3, 3, 9};
    struct state_msg *m = NULL;
    size_t n = 0;
    assert_int_equal(state_msg_get_uids(s, fid, want, 4, &m, &n, &err), MS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(m[0].uid, 1);
    assert_int_equal(m[1].uid, 3);
    state_msgs_free(m, n);
    /* nothing left open: a transaction can begin, and its rollback works */
    assert_int_equal(state_begin(s, &err), MS_OK);
    put(s, fid, 7, "rolled back");
    state_rollback(s);
    assert_int_equal(count_msgs(s, fid), 3);

    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 4, "in the batch");
    const uint32_t want2[] = {2, 4};
    assert_int_equal(state_msg_get_uids(s, fid, want2, 2, &m, &n, &err), MS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(m[1].uid, 4);
    state_msgs_free(m, n);
    state_batch_abort(s);
    assert_int_equal(count_msgs(s, fid), 3); /* the lookup did not commit the batch */
    state_close(s);
}

/* The mass-deletion guard's denominator: the folder's rows, no other's. */
static void message_count(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t fid = add_folder(s, "INBOX");
    int64_t other = add_folder(s, "Other");
    size_t n = 99;
    assert_int_equal(state_msg_count(s, fid, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    for (uint32_t uid = 1; uid <= 5; uid++)
        put(s, fid, uid, "x");
    put(s, other, 1, "y");
    assert_int_equal(state_msg_count(s, fid, &n, &err), MS_OK);
    assert_int_equal(n, 5);
    assert_int_equal(state_msg_delete(s, fid, 2, &err), MS_OK);
    assert_int_equal(state_msg_count(s, fid, &n, &err), MS_OK);
    assert_int_equal(n, 4);
    assert_int_equal(state_msg_count(s, other, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(state_msg_count(s, 9999, &n, &err), MS_OK); /* no such folder: none */
    assert_int_equal(n, 0);
    state_close(s);
}

/* The per-folder row count (folder_rows, kept by triggers): after every
 * kind of change it equals the rows a full read finds, in the count and
 * in the folder list; a transaction a kill cut short leaves it as it
 * was; a DB of a mailsync without the table gets it, counted, on open. */
static void expect_rows(struct state *s, int64_t fid, size_t want)
{
    size_t n = 99;
    struct ms_error err;
    assert_int_equal(state_msg_count(s, fid, &n, &err), MS_OK);
    assert_int_equal(n, want);
    assert_int_equal(count_msgs(s, fid), want);
    struct state_folder *all;
    size_t nall;
    assert_int_equal(state_folder_list(s, &all, &nall, &err), MS_OK);
    for (size_t i = 0; i < nall; i++)
        if (all[i].id == fid)
            assert_int_equal(all[i].message_count, (int64_t)want);
    state_folders_free(all, nall);
}

static void message_count_kept(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t a = add_folder(s, "INBOX"), b = add_folder(s, "Archive");
    for (uint32_t uid = 1; uid <= 10; uid++)
        put(s, a, uid, "x");
    expect_rows(s, a, 10);
    expect_rows(s, b, 0);
    put(s, a, 4, "x4"); /* INSERT OR REPLACE of a row that exists */
    put(s, a, 4, "x4");
    expect_rows(s, a, 10);
    assert_int_equal(state_msg_delete(s, a, 3, &err), MS_OK);
    assert_int_equal(state_msg_delete(s, a, 3, &err), MS_OK); /* gone already */
    assert_int_equal(state_msg_delete(s, a, 99, &err), MS_OK);
    expect_rows(s, a, 9);
    /* a move between folders, as moves_server.c records one: B's row, then A's row gone */
    assert_int_equal(state_begin(s, &err), MS_OK);
    put(s, b, 1, "x5");
    assert_int_equal(state_msg_delete(s, a, 5, &err), MS_OK);
    assert_int_equal(state_commit(s, &err), MS_OK);
    expect_rows(s, a, 8);
    expect_rows(s, b, 1);
    /* a UIDVALIDITY reset: every row replaced in one transaction */
    assert_int_equal(state_begin(s, &err), MS_OK);
    assert_int_equal(state_msg_delete_all(s, a, &err), MS_OK);
    for (uint32_t uid = 100; uid < 103; uid++)
        put(s, a, uid, "y");
    assert_int_equal(state_commit(s, &err), MS_OK);
    expect_rows(s, a, 3);
    /* rolled back: as before */
    assert_int_equal(state_begin(s, &err), MS_OK);
    put(s, a, 200, "z");
    assert_int_equal(state_msg_delete(s, a, 100, &err), MS_OK);
    assert_int_equal(state_msg_delete(s, b, 1, &err), MS_OK);
    state_rollback(s);
    expect_rows(s, a, 3);
    expect_rows(s, b, 1);
    /* a folder deleted with its rows; a new one starts at 0 */
    assert_int_equal(state_folder_delete(s, b, &err), MS_OK);
    int64_t c = add_folder(s, "Later");
    expect_rows(s, c, 0);
    put(s, c, 1, "c1");
    expect_rows(s, c, 1);
    state_close(s);

    /* killed in the middle of a transaction */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct state *k = NULL;
        if (state_open(fx->path, &k, &err) != MS_OK || state_begin(k, &err) != MS_OK)
            _exit(2);
        for (uint32_t uid = 300; uid < 350; uid++) {
            struct state_msg m = {.uid = uid, .uniq = "k", .size = 1};
            if (state_msg_put(k, a, &m, &err) != MS_OK)
                _exit(3);
        }
        if (state_msg_delete(k, a, 101, &err) != MS_OK || state_msg_delete_all(k, c, &err) != MS_OK)
            _exit(4);
        _exit(0); /* no commit, no close */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    s = open_ok(fx->path);
    expect_rows(s, a, 3);
    expect_rows(s, c, 1);
    state_close(s);

    /* the DB of a mailsync without the count: rows it wrote are counted on open */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TRIGGER folder_rows_replace; DROP TRIGGER folder_rows_insert; "
                                  "DROP TRIGGER folder_rows_delete; DROP TRIGGER folder_rows_move; "
                                  "DROP TABLE folder_rows; "
                                  "INSERT INTO messages (folder_id, uid, uniq) SELECT id, 7, 'o' FROM folders "
                                  "WHERE name = 'Later'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    s = open_ok(fx->path);
    expect_rows(s, a, 3);
    expect_rows(s, c, 2);
    put(s, c, 8, "c8");
    expect_rows(s, c, 3);
    state_close(s);
}

/* The hook before a batch commit: called for state_batch_commit and for
 * the batch state_begin commits; its failure rolls the batch back. */
struct hook_log {
    int calls;
    int fail;
};

static int before_commit(void *ctx, struct ms_error *err)
{
    struct hook_log *h = ctx;
    h->calls++;
    return h->fail ? ms_error_set(err, MS_ELOCAL, "cannot fsync dir: test") : MS_OK;
}

static void batch_hook(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    struct hook_log h = {0};
    state_before_batch_commit(s, before_commit, &h);
    int64_t fid = add_folder(s, "INBOX");
    assert_int_equal(state_batch_commit(s, &err), MS_OK); /* no batch: not called */
    assert_int_equal(h.calls, 0);
    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 1, "a");
    assert_int_equal(state_batch_commit(s, &err), MS_OK);
    assert_int_equal(h.calls, 1);
    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 2, "b");
    assert_int_equal(state_begin(s, &err), MS_OK); /* commits the batch first */
    assert_int_equal(h.calls, 2);
    state_rollback(s);
    assert_int_equal(count_msgs(s, fid), 2);
    h.fail = 1;
    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 3, "c");
    assert_int_equal(state_batch_commit(s, &err), MS_ELOCAL);
    assert_non_null(strstr(err.msg, "fsync"));
    assert_int_equal(count_msgs(s, fid), 2); /* rolled back */
    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 4, "d");
    assert_int_equal(state_begin(s, &err), MS_ELOCAL); /* nor does a later transaction start */
    assert_int_equal(count_msgs(s, fid), 2);
    state_close(s);
}

/* ---- the trash journal ---- */

static char *schema_version_of(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char *v = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &st, NULL),
                     SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* A journal row marked as a local move keeps the mark until the row is
 * forgotten or replaced (a deletion's row for the same UID is none); a
 * row that is not there cannot be marked. */
static void trash_journal_move_marks(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    struct state_folder f = {.name = "INBOX", .path = "INBOX", .uidvalidity = 7};
    assert_int_equal(state_folder_save(s, &f, &err), MS_OK);
    struct state_trash a = {.uid = 9, .trash = "B", .trash_uidvalidity = 3, .trash_uidnext = 40, .copy_uid = 0,
                            .size = 1234, .message_id = "<a@b>"};
    bool yes = true;
    assert_int_equal(state_trash_mark_move(s, f.id, 9, &err), MS_OK); /* no row: no mark */
    assert_int_equal(state_trash_is_move(s, f.id, 9, &yes, &err), MS_OK);
    assert_false(yes);
    assert_int_equal(state_trash_put(s, f.id, &a, &err), MS_OK);
    assert_int_equal(state_trash_mark_move(s, f.id, 9, &err), MS_OK);
    state_close(s);
    s = open_ok(fx->path);
    assert_int_equal(state_trash_is_move(s, f.id, 9, &yes, &err), MS_OK);
    assert_true(yes);
    assert_int_equal(state_trash_set_copy(s, f.id, 9, 41, &err), MS_OK);
    assert_int_equal(state_trash_is_move(s, f.id, 9, &yes, &err), MS_OK);
    assert_true(yes);
    a.trash = "Trash"; /* replaced by a deletion's row */
    assert_int_equal(state_trash_put(s, f.id, &a, &err), MS_OK);
    assert_int_equal(state_trash_is_move(s, f.id, 9, &yes, &err), MS_OK);
    assert_false(yes);
    assert_int_equal(state_trash_mark_move(s, f.id, 9, &err), MS_OK);
    assert_int_equal(state_trash_forget(s, f.id, 9, &err), MS_OK);
    assert_int_equal(state_trash_is_move(s, f.id, 9, &yes, &err), MS_OK);
    assert_false(yes);
    assert_int_equal(state_trash_put(s, f.id, &a, &err), MS_OK); /* journalled again: no mark left over */
    assert_int_equal(state_trash_is_move(s, f.id, 9, &yes, &err), MS_OK);
    assert_false(yes);
    state_close(s);
}

static void trash_journal(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    struct state_folder f = {.name = "INBOX", .path = "INBOX", .uidvalidity = 7};
    assert_int_equal(state_folder_save(s, &f, &err), MS_OK);
    struct state_trash a = {.uid = 9, .trash = "Trash", .trash_uidvalidity = 3, .trash_uidnext = 40, .size = 1234,
                            .message_id = "<a@b>"};
    struct state_trash b = {.uid = 4, .trash = "Trash", .trash_uidvalidity = 3, .trash_uidnext = 40, .size = 99};
    assert_int_equal(state_trash_put(s, f.id, &a, &err), MS_OK);
    assert_int_equal(state_trash_put(s, f.id, &b, &err), MS_OK);
    assert_int_equal(state_trash_set_copy(s, f.id, 9, 41, &err), MS_OK);
    state_close(s);

    /* durable, by uid, with the copy's UID */
    s = open_ok(fx->path);
    struct state_trash *t;
    size_t n;
    assert_int_equal(state_trash_list(s, f.id, &t, &n, &err), MS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(t[0].uid, 4);
    assert_int_equal(t[0].copy_uid, 0);
    assert_null(t[0].message_id);
    assert_int_equal(t[1].uid, 9);
    assert_string_equal(t[1].trash, "Trash");
    assert_int_equal(t[1].trash_uidvalidity, 3);
    assert_int_equal(t[1].trash_uidnext, 40);
    assert_int_equal(t[1].copy_uid, 41);
    assert_int_equal(t[1].size, 1234);
    assert_string_equal(t[1].message_id, "<a@b>");
    state_trashes_free(t, n);
    assert_int_equal(state_trash_forget(s, f.id, 4, &err), MS_OK);
    assert_int_equal(state_trash_list(s, f.id, &t, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    state_trashes_free(t, n);
    /* gone with its folder */
    assert_int_equal(state_folder_delete(s, f.id, &err), MS_OK);
    assert_int_equal(state_trash_list(s, f.id, &t, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    state_trashes_free(t, n);
    state_close(s);
}

static void schema_1_gains_the_trash_journal(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    struct state_folder f = {.name = "INBOX", .path = "INBOX", .uidvalidity = 7};
    assert_int_equal(state_folder_save(s, &f, &err), MS_OK);
    state_close(s);
    /* what a mailsync of schema 1 left */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE trashing; "
                                  "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char *v = schema_version_of(fx->path);
    assert_string_equal(v, "1");
    free(v);

    s = open_ok(fx->path);
    struct state_trash a = {.uid = 9, .trash = "Trash", .trash_uidvalidity = 3, .trash_uidnext = 40};
    assert_int_equal(state_trash_put(s, f.id, &a, &err), MS_OK);
    struct state_folder g;
    assert_int_equal(state_folder_get(s, "INBOX", &g, &err), MS_OK);
    assert_int_equal(g.id, f.id); /* the rest is kept */
    state_folder_free(&g);
    state_close(s);
    v = schema_version_of(fx->path);
    assert_string_equal(v, "2");
    free(v);
}

/* The server's message id (EMAILID / X-GM-MSGID) of a row: kept, and
 * added to a DB of a mailsync that had no such column (its rows: NULL),
 * without a new schema version. */
static void emailid_column(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    struct state_folder f = {.name = "INBOX", .path = "INBOX", .uidvalidity = 7};
    assert_int_equal(state_folder_save(s, &f, &err), MS_OK);
    struct state_msg a = {.uid = 3, .uniq = "u3", .size = 10, .emailid = "M6d99ac3275bb4e"};
    assert_int_equal(state_msg_put(s, f.id, &a, &err), MS_OK);
    state_close(s);
    /* what a mailsync without the column left: rebuild messages without it */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP INDEX messages_emailid; " /* an older DB had neither */
                                  "ALTER TABLE messages DROP COLUMN emailid; "
                                  "INSERT INTO messages (folder_id, uid, uniq, size) "
                                  "SELECT id, 4, 'u4', 20 FROM folders WHERE name = 'INBOX'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    s = open_ok(fx->path);
    struct state_msg b = {.uid = 5, .uniq = "u5", .size = 30, .emailid = "gm:1278455344230334865"};
    assert_int_equal(state_msg_put(s, f.id, &b, &err), MS_OK);
    struct state_msg *m;
    size_t n;
    assert_int_equal(state_msg_list(s, f.id, &m, &n, &err), MS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(m[0].uid, 3); /* its id went with the column */
    assert_null(m[0].emailid);
    assert_int_equal(m[1].uid, 4);
    assert_null(m[1].emailid);
    assert_int_equal(m[2].uid, 5);
    assert_string_equal(m[2].emailid, "gm:1278455344230334865");
    state_msgs_free(m, n);
    uint32_t uid = 5;
    assert_int_equal(state_msg_get_uids(s, f.id, &uid, 1, &m, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].emailid, "gm:1278455344230334865");
    state_msgs_free(m, n);
    assert_int_equal(state_msg_list_brief(s, f.id, &m, &n, &err), MS_OK);
    assert_int_equal(n, 3);
    assert_null(m[2].emailid); /* brief: not read */
    state_msgs_free(m, n);
    state_close(s);
    char *v = schema_version_of(fx->path);
    assert_string_equal(v, "2");
    free(v);
}

/* Gmail labels: a message's rows in the other folders, by server id. */
static void copies_by_emailid(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    struct state_folder a = {.name = "INBOX", .path = "INBOX", .uidvalidity = 7};
    struct state_folder b = {.name = "Work", .path = "Work", .uidvalidity = 8};
    struct state_folder c = {.name = "[Gmail]/All Mail", .path = "[Gmail]/All Mail", .uidvalidity = 9};
    assert_int_equal(state_folder_save(s, &a, &err), MS_OK);
    assert_int_equal(state_folder_save(s, &b, &err), MS_OK);
    assert_int_equal(state_folder_save(s, &c, &err), MS_OK);
    struct state_msg m1 = {.uid = 3, .uniq = "u3", .flags = 8, .size = 10, .emailid = "gm:42"};
    struct state_msg m2 = {.uid = 9, .uniq = "u9", .size = 10, .emailid = "gm:42", .pending = true};
    struct state_msg m3 = {.uid = 4, .uniq = "u4", .size = 10, .emailid = "gm:42"};
    struct state_msg m4 = {.uid = 5, .uniq = "u5", .size = 11, .emailid = "gm:43"};
    assert_int_equal(state_msg_put(s, a.id, &m1, &err), MS_OK);
    assert_int_equal(state_msg_put(s, b.id, &m2, &err), MS_OK);
    assert_int_equal(state_msg_put(s, c.id, &m3, &err), MS_OK);
    assert_int_equal(state_msg_put(s, c.id, &m4, &err), MS_OK);
    struct state_copy v[4];
    size_t n;
    /* from Work: INBOX's and All Mail's rows, not Work's own pending one */
    assert_int_equal(state_msg_copies(s, "gm:42", b.id, v, 4, &n, &err), MS_OK);
    assert_int_equal(n, 2);
    assert_true(v[0].folder_id == a.id);
    assert_string_equal(v[0].path, "INBOX");
    assert_string_equal(v[0].uniq, "u3");
    assert_int_equal(v[0].flags, 8);
    assert_int_equal(v[0].size, 10);
    assert_string_equal(v[1].path, "[Gmail]/All Mail");
    state_copies_free(v, n);
    /* never the folder asking; max respected; unknown id: none */
    assert_int_equal(state_msg_copies(s, "gm:42", a.id, v, 1, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].uniq, "u4");
    state_copies_free(v, n);
    assert_int_equal(state_msg_copies(s, "gm:7", a.id, v, 4, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    bool yes = false;
    assert_int_equal(state_msg_ids_elsewhere(s, a.id, &yes, &err), MS_OK);
    assert_true(yes);
    struct state_folder d = {.name = "Empty", .path = "Empty", .uidvalidity = 10};
    assert_int_equal(state_folder_save(s, &d, &err), MS_OK);
    assert_int_equal(state_msg_delete(s, b.id, 9, &err), MS_OK);
    assert_int_equal(state_msg_delete(s, c.id, 4, &err), MS_OK);
    assert_int_equal(state_msg_delete(s, c.id, 5, &err), MS_OK);
    assert_int_equal(state_msg_ids_elsewhere(s, a.id, &yes, &err), MS_OK);
    assert_false(yes); /* only INBOX has ids */
    assert_int_equal(state_msg_ids_elsewhere(s, d.id, &yes, &err), MS_OK);
    assert_true(yes);
    state_close(s);
}

/* The hook before the first change: once per open, not for meta data or
 * a folder's last_sync, its own writes committed even when the change's
 * transaction is rolled back; a failure fails the change and re-arms. */
struct change_log {
    struct state *s;
    int calls;
    int fail;
};

static int before_change(void *ctx, struct ms_error *err)
{
    struct change_log *h = ctx;
    h->calls++;
    if (h->fail)
        return ms_error_set(err, MS_ELOCAL, "cannot write marker: test");
    char v[16];
    snprintf(v, sizeof v, "%d", h->calls);
    return state_meta_set(h->s, "generation", v, err);
}

static char *meta_of(struct state *s, const char *key)
{
    char *v = NULL;
    struct ms_error err;
    assert_int_equal(state_meta_get(s, key, &v, &err), MS_OK);
    return v;
}

static void first_change_hook(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t fid = add_folder(s, "INBOX");
    struct change_log h = {.s = s, .fail = 1};
    state_before_first_change(s, before_change, &h);
    /* meta data and a folder's bookkeeping are no changes */
    assert_int_equal(state_meta_set(s, "last_sync", "5", &err), MS_OK);
    assert_int_equal(state_folder_touch(s, fid, 5, &err), MS_OK);
    struct state_folder f = {.id = fid, .name = "INBOX", .path = "INBOX", .uidvalidity = 7, .uidnext = 9};
    assert_int_equal(state_folder_save(s, &f, &err), MS_OK);
    assert_int_equal(h.calls, 0);
    /* a failing hook fails the change, which is not made */
    struct state_msg m = {.uid = 1, .uniq = "a", .size = 10};
    assert_int_equal(state_msg_put(s, fid, &m, &err), MS_ELOCAL);
    assert_non_null(strstr(err.msg, "marker"));
    assert_int_equal(h.calls, 1);
    assert_int_equal(count_msgs(s, fid), 0);
    /* then the next change calls it again; inside a transaction that is
     * rolled back, the hook's own write stays */
    h.fail = 0;
    assert_int_equal(state_begin(s, &err), MS_OK);
    put(s, fid, 1, "a");
    assert_int_equal(h.calls, 2);
    state_rollback(s);
    assert_int_equal(count_msgs(s, fid), 0);
    char *v = meta_of(s, "generation");
    assert_string_equal(v, "2");
    free(v);
    /* and only once */
    put(s, fid, 2, "b");
    assert_int_equal(state_batch(s, &err), MS_OK);
    put(s, fid, 3, "c");
    assert_int_equal(state_batch_commit(s, &err), MS_OK);
    assert_int_equal(h.calls, 2);
    assert_int_equal(count_msgs(s, fid), 2);
    state_close(s);
}

/* The hook's commit inside a batch keeps the batch's rule: what the batch
 * held so far is committed after the before-commit hook, and a rollback of
 * the batch later takes only the change. */
static void first_change_in_batch(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t fid = add_folder(s, "INBOX");
    struct change_log h = {.s = s};
    struct hook_log b = {0};
    state_before_first_change(s, before_change, &h);
    state_before_batch_commit(s, before_commit, &b);
    assert_int_equal(state_batch(s, &err), MS_OK);
    struct state_folder f = {.id = fid, .name = "INBOX", .path = "INBOX", .uidvalidity = 7, .uidnext = 42};
    assert_int_equal(state_folder_save(s, &f, &err), MS_OK);
    put(s, fid, 1, "a");
    assert_int_equal(h.calls, 1);
    assert_int_equal(b.calls, 1);
    state_batch_abort(s);
    assert_int_equal(count_msgs(s, fid), 0);
    struct state_folder g;
    assert_int_equal(state_folder_get(s, "INBOX", &g, &err), MS_OK);
    assert_int_equal(g.uidnext, 42);
    state_folder_free(&g);
    char *v = meta_of(s, "generation");
    assert_string_equal(v, "1");
    free(v);
    state_close(s);
}

/* Moving a DB aside keeps it (and its WAL) under a new name, drops the
 * side files that describe it, and leaves room for a fresh one. */
static void move_aside(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    add_folder(s, "INBOX");
    state_close(s);
    char side[300];
    snprintf(side, sizeof side, "%s.lastrun", fx->path);
    close(open(side, O_WRONLY | O_CREAT, 0600));
    char *moved = NULL;
    struct ms_error err;
    assert_int_equal(state_move_aside(fx->path, &moved, &err), MS_OK);
    assert_non_null(strstr(moved, ".stale-"));
    assert_int_equal(access(fx->path, F_OK), -1);
    assert_int_equal(access(side, F_OK), -1);
    s = open_ok(moved); /* the old DB, intact */
    struct state_folder f;
    assert_int_equal(state_folder_get(s, "INBOX", &f, &err), MS_OK);
    assert_true(f.id > 0);
    state_folder_free(&f);
    state_close(s);
    char *again = NULL;
    s = open_ok(fx->path); /* a new, empty one */
    assert_int_equal(state_folder_get(s, "INBOX", &f, &err), MS_OK);
    assert_int_equal(f.id, 0);
    state_close(s);
    assert_int_equal(state_move_aside(fx->path, &again, &err), MS_OK); /* same second: another name */
    assert_string_not_equal(again, moved);
    assert_int_equal(access(moved, F_OK), 0);
    free(moved);
    free(again);
}

/* ---- tombstones ---- */

static void tombstones(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t inbox = add_folder(s, "INBOX"), arch = add_folder(s, "Archive");
    struct state_tombstone a = {.uniq = "b.old", .message_id = "<old@x>", .size = 1234,
                                .reason = STATE_TOMB_RETIRED, .since = 1700000000};
    struct state_tombstone k = {.uniq = "a.kept", .message_id = NULL, .size = 50,
                                .reason = STATE_TOMB_KEPT_BY_BACKUP, .since = 1700000001};
    struct state_tombstone c = {.uniq = "c.moved", .message_id = "<moved@x>", .size = 77,
                                .reason = STATE_TOMB_RETIRED, .since = 1700000002};
    assert_int_equal(state_tombstone_put(s, inbox, &a, &err), MS_OK);
    assert_int_equal(state_tombstone_put(s, inbox, &k, &err), MS_OK);
    assert_int_equal(state_tombstone_put(s, arch, &c, &err), MS_OK);
    state_close(s);

    /* durable, by uniq; the kept ones alone by the partial index */
    s = open_ok(fx->path);
    struct state_tombstone *t;
    size_t n;
    assert_int_equal(state_tombstone_list(s, inbox, false, &t, &n, &err), MS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(t[0].uniq, "a.kept");
    assert_int_equal(t[0].reason, STATE_TOMB_KEPT_BY_BACKUP);
    assert_null(t[0].message_id);
    assert_string_equal(t[1].uniq, "b.old");
    assert_int_equal(t[1].reason, STATE_TOMB_RETIRED);
    assert_string_equal(t[1].message_id, "<old@x>");
    assert_int_equal(t[1].size, 1234);
    assert_int_equal(t[1].since, 1700000000);
    assert_int_equal(t[1].folder_id, inbox);
    state_tombstones_free(t, n);
    assert_int_equal(state_tombstone_list(s, inbox, true, &t, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(t[0].uniq, "a.kept");
    state_tombstones_free(t, n);
    assert_int_equal(state_tombstone_list(s, arch, true, &t, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    state_tombstones_free(t, n);
    int64_t retired, kept;
    assert_int_equal(state_tombstone_counts(s, inbox, &retired, &kept, &err), MS_OK);
    assert_int_equal(retired, 1);
    assert_int_equal(kept, 1);

    /* found across folders by uniq, else by Message-ID and size */
    struct state_tombstone f;
    bool found;
    assert_int_equal(state_tombstone_find(s, "c.moved", NULL, 0, &f, &found, &err), MS_OK);
    assert_true(found);
    assert_int_equal(f.folder_id, arch);
    state_tombstone_free(&f);
    assert_int_equal(state_tombstone_find(s, "renamed", "<old@x>", 1234, &f, &found, &err), MS_OK);
    assert_true(found);
    assert_string_equal(f.uniq, "b.old");
    state_tombstone_free(&f);
    assert_int_equal(state_tombstone_find(s, "renamed", "<old@x>", 1235, &f, &found, &err), MS_OK);
    assert_false(found); /* another size: another message */
    assert_int_equal(state_tombstone_find(s, "renamed", NULL, 50, &f, &found, &err), MS_OK);
    assert_false(found); /* no Message-ID: never by identity */

    /* forgotten one by one, and with the folder */
    assert_int_equal(state_tombstone_forget(s, inbox, "b.old", &err), MS_OK);
    assert_int_equal(state_tombstone_counts(s, inbox, &retired, &kept, &err), MS_OK);
    assert_int_equal(retired, 0);
    assert_int_equal(kept, 1);
    assert_int_equal(state_folder_delete(s, inbox, &err), MS_OK);
    assert_int_equal(state_tombstone_list(s, inbox, false, &t, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    state_tombstones_free(t, n);
    state_close(s);
}

/* A DB set aside as stale hands its tombstones to its successor, by
 * folder name; a DB from before the table hands nothing. */
static void tombstones_carried_over(void **state)
{
    struct fixture *fx = *state;
    struct state *s = open_ok(fx->path);
    struct ms_error err;
    int64_t arch = add_folder(s, "Archive");
    add_folder(s, "INBOX");
    struct state_tombstone a = {.uniq = "old1", .message_id = "<o1@x>", .size = 10, .reason = STATE_TOMB_RETIRED,
                                .since = 5};
    struct state_tombstone k = {.uniq = "kept1", .message_id = NULL, .size = 20,
                                .reason = STATE_TOMB_KEPT_BY_BACKUP, .since = 6};
    assert_int_equal(state_tombstone_put(s, arch, &a, &err), MS_OK);
    assert_int_equal(state_tombstone_put(s, arch, &k, &err), MS_OK);
    state_close(s);
    char *moved = NULL;
    assert_int_equal(state_move_aside(fx->path, &moved, &err), MS_OK);

    s = open_ok(fx->path);
    int64_t inbox = add_folder(s, "INBOX"); /* the new DB numbers its folders its own way */
    size_t n = 0;
    if (state_tombstones_take(s, moved, &n, &err) != MS_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(n, 2);
    struct state_folder f;
    assert_int_equal(state_folder_get(s, "Archive", &f, &err), MS_OK);
    assert_true(f.id > 0 && f.id != inbox);
    assert_string_equal(f.path, "Archive");
    assert_int_equal(f.uidvalidity, 0); /* bare: its first pull matches it */
    assert_int_equal(f.last_sync, 0);
    struct state_tombstone *t;
    size_t nt;
    assert_int_equal(state_tombstone_list(s, f.id, false, &t, &nt, &err), MS_OK);
    assert_int_equal(nt, 2);
    assert_string_equal(t[0].uniq, "kept1");
    assert_int_equal(t[0].reason, STATE_TOMB_KEPT_BY_BACKUP);
    assert_string_equal(t[1].uniq, "old1");
    assert_string_equal(t[1].message_id, "<o1@x>");
    assert_int_equal(t[1].since, 5);
    state_tombstones_free(t, nt);
    state_folder_free(&f);
    state_close(s);

    /* an older mailsync's DB: no table, nothing carried, no error */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(moved, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE tombstones", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    s = open_ok(fx->path);
    assert_int_equal(state_tombstones_take(s, moved, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    state_close(s);
    free(moved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_file_is_initialized, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_db_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(garbled_db_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(foreign_or_newer_db_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(not_a_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(folders, setup, teardown),
        cmocka_unit_test_setup_teardown(emailid_column, setup, teardown),
        cmocka_unit_test_setup_teardown(copies_by_emailid, setup, teardown),
        cmocka_unit_test_setup_teardown(messages, setup, teardown),
        cmocka_unit_test_setup_teardown(transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(batches, setup, teardown),
        cmocka_unit_test_setup_teardown(lookups_by_uid, setup, teardown),
        cmocka_unit_test_setup_teardown(message_count, setup, teardown),
        cmocka_unit_test_setup_teardown(message_count_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(first_change_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(first_change_in_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(move_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(tombstones, setup, teardown),
        cmocka_unit_test_setup_teardown(tombstones_carried_over, setup, teardown),
        cmocka_unit_test_setup_teardown(meta, setup, teardown),
        cmocka_unit_test_setup_teardown(integrity_stamp, setup, teardown),
        cmocka_unit_test_setup_teardown(leave_stamp_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(quiet_run_record, setup, teardown),
        cmocka_unit_test_setup_teardown(trash_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(trash_journal_move_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(schema_1_gains_the_trash_journal, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
