/* SPDX-License-Identifier: MIT */
/*
 * imap_probe.c: manual driver for sync/remote/imap_*.c against a real server.
 *
 * Not built by CMake. Compile by hand against a build directory:
 *   gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. tests/manual/imap_probe.c \
 *       build-b/libmailsync_core.a -letpan -lssl -lcrypto -lsqlite3 -lpthread -o /tmp/imap_probe
 *
 * Usage: imap_probe HOST PORT implicit|starttls|none USER [options]
 *   the password is read from $PROBE_PASSWORD (never argv)
 *   --ca FILE  --fp sha256:..  --auth auto|login|plain|xoauth2
 *   --timeout N  -v N (log verbosity)  --folder NAME (select + fetch)
 *   --out DIR (write bodies there)  --identity  --write (SELECT, not EXAMINE)
 *   --fail-after N (chunk() fails with MS_ELOCAL after N chunks)  --quiet
 * Prints what it did; exit code = the MS_* code of the first failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/account.h"
#include "sync/remote/imap.h"
#include "sync/log.h"

struct sink_state {
    const char *dir;
    FILE *cur;
    char tmpname[512];
    unsigned long long bytes, msgs, chunks;
    unsigned long long fail_after; /* chunk() fails (MS_ELOCAL) after this many; 0 = never */
    bool quiet;
};

static int on_chunk(void *ctx, const char *data, size_t len)
{
    struct sink_state *st = ctx;
    st->chunks++;
    st->bytes += len;
    if (st->fail_after && st->chunks > st->fail_after)
        return 5;
    if (!st->dir)
        return 0;
    if (!st->cur) {
        snprintf(st->tmpname, sizeof st->tmpname, "%s/.partial", st->dir);
        st->cur = fopen(st->tmpname, "wb");
        if (!st->cur)
            return 5;
    }
    return fwrite(data, 1, len, st->cur) == len ? 0 : 5;
}

static int on_message(void *ctx, const struct remote_msg *m, bool has_body)
{
    struct sink_state *st = ctx;
    st->msgs++;
    if (!st->quiet)
        printf("  message uid=%u size=%llu flags=0x%x kw=%s date=%lld body=%d\n", m->uid, (unsigned long long)m->size,
               m->flags, m->keywords ? m->keywords : "-", (long long)m->internaldate, has_body);
    if (st->dir && has_body) {
        if (!st->cur) { /* empty body */
            snprintf(st->tmpname, sizeof st->tmpname, "%s/.partial", st->dir);
            st->cur = fopen(st->tmpname, "wb");
        }
        if (st->cur)
            fclose(st->cur);
        st->cur = NULL;
        char final[600];
        snprintf(final, sizeof final, "%s/%u.eml", st->dir, m->uid);
        rename(st->tmpname, final);
    }
    return 0;
}

static unsigned long identities;

static void on_identity(void *ctx, uint32_t uid, uint64_t size, const char *mid)
{
    (void)ctx;
    if (identities++ < 10)
        printf("  identity uid=%u size=%llu message-id=%s\n", uid, (unsigned long long)size, mid ? mid : "(none)");
}

static void print_hwm(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM", 5) || !strncmp(line, "VmRSS", 5))
            printf("%s", line);
    if (f)
        fclose(f);
}

/* The library prints nothing itself: its log lines (the -vv trace) to stderr. */
static void probe_log(enum log_level level, const char *text)
{
    (void)level;
    fprintf(stderr, "%s\n", text);
}

int main(int argc, char **argv)
{
    log_set_sink(probe_log);
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT implicit|starttls|none USER [options]\n", argv[0]);
        return 2;
    }
    struct account a = {0};
    a.name = "probe";
    a.host = argv[1];
    a.port = atoi(argv[2]);
    a.tls = !strcmp(argv[3], "implicit") ? TLS_IMPLICIT : !strcmp(argv[3], "starttls") ? TLS_STARTTLS : TLS_NONE;
    a.user = argv[4];
    a.timeout = 20;
    const char *folder = NULL, *out = NULL;
    bool identity = false, rw = false, quiet = false;
    unsigned long long fail_after = 0;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--ca") && i + 1 < argc)
            a.ca_file = argv[++i];
        else if (!strcmp(argv[i], "--fp") && i + 1 < argc)
            a.fingerprint = argv[++i];
        else if (!strcmp(argv[i], "--auth") && i + 1 < argc) {
            const char *m = argv[++i];
            a.auth = !strcmp(m, "login")         ? AUTH_LOGIN
                     : !strcmp(m, "plain")       ? AUTH_PLAIN
                     : !strcmp(m, "xoauth2")     ? AUTH_XOAUTH2
                     : !strcmp(m, "oauthbearer") ? AUTH_OAUTHBEARER
                                                 : AUTH_AUTO;
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
            a.timeout = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-v") && i + 1 < argc)
            log_verbosity = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--folder") && i + 1 < argc)
            folder = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--identity"))
            identity = true;
        else if (!strcmp(argv[i], "--write"))
            rw = true;
        else if (!strcmp(argv[i], "--fail-after") && i + 1 < argc)
            fail_after = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--quiet"))
            quiet = true;
        else if (!strcmp(argv[i], "--allow-plaintext"))
            a.allow_plaintext = true;
    }
    const char *pw = getenv("PROBE_PASSWORD");
    struct ms_error err = {0};
    struct imap_session *s = NULL;
    int rc = imap_connect(&a, pw ? pw : "", &s, &err);
    if (rc) {
        printf("connect failed: code %d: %s\n", rc, err.msg);
        return rc;
    }
    printf("tls: %s\ncaps: %s\nIMAP4rev1: %d\n", imap_tls_info(s), imap_capabilities(s),
           imap_has_capability(s, "imap4rev1"));
    struct remote_folder *fl;
    size_t nf;
    rc = imap_list(s, &fl, &nf, &err);
    if (rc) {
        printf("list failed: %d: %s\n", rc, err.msg);
        imap_close(s);
        return rc;
    }
    for (size_t i = 0; i < nf; i++)
        printf("  folder '%s' delim '%c' noselect %d\n", fl[i].name, fl[i].delim ? fl[i].delim : '0', fl[i].noselect);
    remote_folders_free(fl, nf);
    if (folder) {
        struct remote_box mb;
        rc = imap_select(s, folder, rw, &mb, &err);
        if (rc) {
            printf("select failed: %d: %s\n", rc, err.msg);
            imap_close(s);
            return rc;
        }
        printf("selected %s: uidvalidity %u uidnext %u exists %u highestmodseq %llu\n", folder, mb.uidvalidity,
               mb.uidnext, mb.exists, (unsigned long long)mb.highestmodseq);
        struct remote_msg *m;
        size_t nm;
        rc = imap_fetch_flags(s, 1, 0, &m, &nm, &err);
        if (rc) {
            printf("fetch flags failed: %d: %s\n", rc, err.msg);
            imap_close(s);
            return rc;
        }
        uint32_t *uids = calloc(nm + 1, sizeof *uids);
        for (size_t i = 0; i < nm; i++) {
            if (!quiet)
                printf("  flags uid=%u flags=0x%x kw=%s size=%llu\n", m[i].uid, m[i].flags,
                       m[i].keywords ? m[i].keywords : "-", (unsigned long long)m[i].size);
            uids[i] = m[i].uid;
        }
        remote_msgs_free(m, nm);
        if (identity) {
            rc = imap_fetch_identity(s, uids, nm, on_identity, NULL, &err);
            printf("identity: rc %d, %lu found %s\n", rc, identities, rc ? err.msg : "");
        }
        struct sink_state st = {.dir = out, .fail_after = fail_after, .quiet = quiet};
        struct remote_body_sink sink = {&st, on_chunk, on_message};
        rc = imap_fetch_bodies(s, uids, nm, &sink, &err);
        printf("bodies: rc %d msgs %llu bytes %llu chunks %llu %s\n", rc, st.msgs, st.bytes, st.chunks,
               rc ? err.msg : "");
        if (rc) {
            /* The session must now refuse work at once. */
            struct remote_folder *f2;
            size_t n2;
            int rc2 = imap_list(s, &f2, &n2, &err);
            printf("after failure: list rc %d: %s\n", rc2, err.msg);
        }
        free(uids);
    }
    print_hwm();
    imap_close(s);
    return rc;
}
