/* SPDX-License-Identifier: MIT */
/*
 * generation.c: recognise a state DB older than the Maildir it describes
 * (a restored backup, a DB copied back by hand, one truncated to 0 bytes)
 * and handle it like a lost one: moved aside, an empty DB in its place,
 * and the messages re-matched by identity (rematch.c), so that nothing
 * transferred since is doubled. Its tombstones go to the new DB (see
 * carry_tombstones).
 *
 * Every IMAP run that records a change bumps a generation, kept twice:
 * in the DB (meta "generation", with "db_id", a random identity given to
 * the DB at its first change) and in a marker file in the Maildir root,
 * .mailsync-state-ACCOUNT (one per account: two accounts may share a root),
 * holding "mailsync-state 1 <db_id> <generation>". It is a regular file
 * with a dot name: the folder scan skips it in every layout (verbatim and
 * dotted skip dot names; maildir++ folders are ".Name" directories, and a
 * file is no directory). Account names are file-name safe (cmd/config.c); the
 * temporary file's prefix, .mailsync-state.tmp-, is no marker's.
 *
 * At open, with a marker present, the DB is trusted only if it carries the
 * marker's identity and a generation at least the marker's. Without a
 * marker (an older mailsync, or a user who removed it) nothing is known,
 * and the DB is trusted as before; the marker is written at its next
 * change.
 *
 * Order of the two writes (state_before_first_change, before the run's
 * first change reaches the DB):
 *   1. the marker takes the new generation (tmp file, fsync, rename, fsync
 *      of the root), then
 *   2. the DB's meta takes it, committed before the change is recorded.
 * Every change a DB holds is thus recorded after a marker at least as new
 * as the DB's generation was durable; a backup of the DB taken at
 * generation G is seen as stale as soon as any later run changed
 * anything. The marker of step 1 is "open" (the line ends in " open"),
 * and the run's end confirms it (the same line without " open",
 * generation_confirm) once the DB holds the generation. A kill between 1
 * and 2 leaves an open marker one ahead of a DB that is in fact current
 * (it committed nothing of that run): trusted, since treating it as stale
 * would re-match and bring back what was deleted on one side only. A
 * confirmed marker one ahead is a DB that missed a run: stale. (The one
 * case this trusts wrongly: a run killed after its DB commit, before its
 * confirmation, and a backup exactly one generation old restored before
 * any other run.) The reverse order would not be safe: DB first, a kill
 * before the marker, and a backup of generation G restored later would
 * match the marker's G.
 *
 * A run that changes nothing writes neither. A POP3 account is treated
 * the same way: with an empty DB its pull compares what it downloads with
 * the files already in INBOX (popfetch.c), so it downloads again what the
 * server keeps, once, but delivers none of it twice.
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/log.h"
#include "sync/util.h"

#define MARKER_PREFIX ".mailsync-state-"
#define MARKER_TMP_PREFIX ".mailsync-state.tmp-"
#define MARKER_MAGIC "mailsync-state 1"

/* The account's marker file name (and its temporary one) in the root. */
static void marker_names(const struct account *a, char name[NAME_MAX + 1], char tmp[NAME_MAX + 1])
{
    snprintf(name, NAME_MAX + 1, MARKER_PREFIX "%s", a->name);
    snprintf(tmp, NAME_MAX + 1, MARKER_TMP_PREFIX "%s", a->name);
}

struct marker {
    char id[GENERATION_ID_LEN + 1];
    uint64_t generation;
    bool open; /* written before the DB's commit of generation, not yet
                  confirmed after it (see the top of this file) */
};

/* 1: read into *m; 0: there is none; -1: unreadable or malformed. */
static int marker_read(int rootfd, const char *name, struct marker *m)
{
    int fd = openat(rootfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    char buf[160];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char id[64], state[8] = "";
    unsigned long long gen;
    int got = sscanf(buf, MARKER_MAGIC " %63s %llu %7s", id, &gen, state);
    if (got < 2 || strlen(id) != GENERATION_ID_LEN || (got == 3 && strcmp(state, "open") != 0))
        return -1;
    memcpy(m->id, id, sizeof m->id);
    m->generation = gen;
    m->open = got == 3;
    return 1;
}

/* Atomically: a crash leaves the old marker or the new one, never a torn
 * one; with durable, the new one is durable (the root fsynced) before the
 * DB moves on. */
static int marker_write(int rootfd, const struct account *a, const struct marker *m, bool durable,
                        struct ms_error *err)
{
    char name[NAME_MAX + 1], tmp[NAME_MAX + 1], line[128];
    const char *root = a->maildir;
    marker_names(a, name, tmp);
    int len = snprintf(line, sizeof line, MARKER_MAGIC " %s %" PRIu64 "%s\n", m->id, m->generation,
                       m->open ? " open" : "");
    int fd = openat(rootfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot write %s/%s", root, tmp);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, line, (size_t)len) == len && fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        unlinkat(rootfd, tmp, 0);
        return ms_error_errno(err, MS_ELOCAL, e, "cannot write %s/%s", root, tmp);
    }
    if (renameat(rootfd, tmp, rootfd, name) != 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot rename %s/%s to %s", root, tmp, name);
    if (durable && fsync(rootfd) != 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot fsync %s (for %s)", root, name);
    return MS_OK;
}

/* The hook: steps 1 and 2 of the comment at the top. */
static int generation_bump(void *ctx, struct ms_error *err)
{
    struct run *r = ctx;
    struct marker m = {.generation = r->gen_next, .open = true};
    memcpy(m.id, r->gen_id, sizeof m.id);
    int rc = marker_write(r->rootfd, r->acct, &m, true, err);
    r->gen_bumped = rc == MS_OK;
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, r->gen_next);
    if (rc == MS_OK)
        rc = state_meta_set(r->st, "db_id", r->gen_id, err);
    if (rc == MS_OK)
        rc = state_meta_set(r->st, "generation", buf, err);
    return rc;
}

static void new_id(char out[GENERATION_ID_LEN + 1])
{
    unsigned char rnd[GENERATION_ID_LEN / 2];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        /* Only has to differ from other DBs of this Maildir. */
        uint64_t t = (uint64_t)(util_now() * 1e9) ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof rnd; i++)
            rnd[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)(i * 131);
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(out + 2 * i, 3, "%02x", rnd[i]);
}

/* Why the DB cannot be trusted, or NULL. *empty: it holds nothing to move
 * aside (new, or 0 bytes, or no folder yet). */
static const char *stale_why(struct run *r, int have, const struct marker *m, const char *id, uint64_t gen, bool *empty,
                             struct ms_error *err)
{
    *empty = false;
    if (have == 0)
        return NULL;
    if (have < 0)
        return "its marker in the Maildir root is unreadable";
    if (!id) {
        struct state_folder *f = NULL;
        size_t n = 0;
        if (state_folder_list_brief(r->st, &f, &n, err) != MS_OK)
            return "its folders cannot be read";
        state_folders_free(f, n);
        *empty = n == 0;
        return *empty ? "it is new or empty" : "it is older than the Maildir (from before the marker)";
    }
    if (strcmp(id, m->id) != 0)
        return "it is not the DB that last synced the Maildir";
    /* One behind an open marker: the run that wrote it died before the DB
     * committed its generation, so the DB missed no change. */
    if (gen < m->generation && !(m->open && gen + 1 == m->generation))
        return "it is older than the Maildir (a restored backup?)";
    return NULL;
}

/* The messages the stale DB knew a policy took off the server
 * (tombstones.c) stay off it: the new DB takes its tombstones, after the
 * generation's bump is armed (they are its first change). Those recorded
 * after the stale DB was copied are lost with the DB that held them. */
static int carry_tombstones(struct run *r, const char *from, struct ms_error *err)
{
    size_t n = 0;
    int rc = state_tombstones_take(r->st, from, &n, err);
    if (rc == MS_OK && n) {
        r->tombs_changed = true; /* the copy beside the Maildir gets them too */
        log_msg(LOG_INFO, "%s: %zu tombstones (messages retired or kept by backup mode) taken from %s",
                r->acct->name, n, from);
    }
    return rc;
}

int generation_check(struct run *r, struct ms_error *err)
{
    if (r->rootfd < 0 || !r->st)
        return MS_OK;
    struct marker m = {{0}, 0, false};
    char name[NAME_MAX + 1], tmp[NAME_MAX + 1];
    marker_names(r->acct, name, tmp);
    int have = marker_read(r->rootfd, name, &m);
    char *id = NULL, *gen_s = NULL;
    int rc = state_meta_get(r->st, "db_id", &id, err);
    if (rc == MS_OK)
        rc = state_meta_get(r->st, "generation", &gen_s, err);
    uint64_t gen = gen_s ? strtoull(gen_s, NULL, 10) : 0;
    if (id && strlen(id) != GENERATION_ID_LEN) { /* not ours: as if absent */
        free(id);
        id = NULL;
    }
    bool empty = false;
    const char *why = rc ? NULL : stale_why(r, have, &m, id, gen, &empty, err);
    char *moved = NULL; /* the stale DB, whose tombstones the new one takes */
    const char *carry = NULL;
    if (rc == MS_OK && why) {
        const char *path = r->acct->state_path;
        if (empty) {
            log_msg(LOG_WARN,
                    "%s: state DB %s: %s, but %s was synced before: re-matching the messages of both "
                    "sides by identity (a message deleted on one side only since the last sync may "
                    "come back)",
                    r->acct->name, path, why, r->acct->maildir);
        } else if (r->opt->dry_run) {
            log_msg(LOG_WARN,
                    "%s: state DB %s: %s; a run would move it aside and re-match the messages by "
                    "identity (dry run: shown as if it were gone)",
                    r->acct->name, path, why);
            state_close(r->st);
            r->st = NULL;
            rc = state_open(":memory:", &r->st, err);
            carry = path;
        } else {
            state_close(r->st);
            r->st = NULL;
            rc = state_move_aside(path, &moved, err);
            if (rc == MS_OK)
                rc = state_open(path, &r->st, err);
            if (rc == MS_OK)
                log_msg(LOG_WARN,
                        "%s: state DB %s: %s: moved aside to %s; starting from an empty DB and "
                        "re-matching the messages of both sides by identity (a message deleted on one "
                        "side only since the last sync may come back)",
                        r->acct->name, path, why, moved);
            carry = moved;
        }
        /* The new DB continues the marker's count under a new identity. */
        free(id);
        id = NULL;
        gen = 0;
    }
    if (rc == MS_OK && !r->opt->dry_run) {
        r->gen_next = (have > 0 && m.generation > gen ? m.generation : gen) + 1;
        if (id)
            memcpy(r->gen_id, id, sizeof r->gen_id);
        else
            new_id(r->gen_id);
        state_before_first_change(r->st, generation_bump, r);
    }
    if (rc == MS_OK && carry)
        rc = carry_tombstones(r, carry, err);
    /* Lost or stale: the copy beside the Maildir (as of the last run that
     * changed any) adds what the DB it replaces recorded. */
    if (rc == MS_OK && why)
        rc = tombstones_load_copy(r, err);
    free(moved);
    free(id);
    free(gen_s);
    return rc;
}

void generation_confirm(struct run *r)
{
    if (!r->gen_bumped || r->rootfd < 0 || !r->st)
        return;
    r->gen_bumped = false;
    char *gen_s = NULL;
    struct ms_error e;
    bool committed = state_meta_get(r->st, "generation", &gen_s, &e) == MS_OK && gen_s &&
                     strtoull(gen_s, NULL, 10) == r->gen_next;
    free(gen_s);
    struct marker m = {.generation = r->gen_next};
    memcpy(m.id, r->gen_id, sizeof m.id);
    /* Not durable: a crash that loses it leaves the open marker, which
     * the DB matches exactly. */
    if (committed && marker_write(r->rootfd, r->acct, &m, false, &e) != MS_OK)
        log_msg(LOG_VERBOSE, "%s: %s", r->acct->name, e.msg);
}
