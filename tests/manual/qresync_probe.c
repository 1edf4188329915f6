/* SPDX-License-Identifier: MIT */
/*
 * qresync_probe.c: manual driver for the CONDSTORE/QRESYNC calls of
 * sync/remote/imap_*.c (imap_status, imap_enable_qresync, imap_select_qresync,
 * imap_fetch_flags_changedsince, imap_fetch_uids) against a real server.
 *
 * Not built by CMake. Compile by hand against a build directory:
 *   gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. tests/manual/qresync_probe.c \
 *       build-f/libmailsync_core.a -letpan -lssl -lcrypto -lsqlite3 -lpthread -o /tmp/qresync_probe
 *
 * Usage: qresync_probe HOST PORT USER OP...   (plaintext on loopback; the
 * password comes from $PROBE_PASSWORD). The OPs run in order on one session:
 *   enable                      imap_enable_qresync
 *   status:NAME                 imap_status
 *   select:NAME                 imap_select (EXAMINE)
 *   qselect:NAME:UV:MODSEQ[:rw] imap_select_qresync (EXAMINE, or SELECT with rw)
 *   changed:FIRST:LAST:MODSEQ   imap_fetch_flags_changedsince
 *   flags                       imap_fetch_flags 1:*
 *   uids                        imap_fetch_uids (prints count, sum, time)
 *   quiet                       print counts only from here on
 * Lists print as compact sets ("2,4,6,10:12"). Prints VmHWM at the end.
 * Exit code: the MS_* code of the first failing OP (it goes on after NO).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/account.h"
#include "sync/remote/imap.h"
#include "sync/log.h"

static bool quiet;

static void print_set(const char *label, const uint32_t *v, size_t n)
{
    printf("%s (%zu): ", label, n);
    if (quiet && n > 50) {
        printf("[%" PRIu32 "..%" PRIu32 "]\n", v[0], v[n - 1]);
        return;
    }
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1)
            j++;
        printf("%s%" PRIu32, i ? "," : "", v[i]);
        if (j > i)
            printf(":%" PRIu32, v[j]);
        i = j + 1;
    }
    printf("\n");
}

static void print_msgs(const char *label, const struct remote_msg *m, size_t n)
{
    uint32_t *u = calloc(n + 1, sizeof *u);
    for (size_t i = 0; i < n; i++)
        u[i] = m[i].uid;
    print_set(label, u, n);
    free(u);
    for (size_t i = 0; i < n && !quiet; i++)
        printf("  msg uid=%" PRIu32 " flags=0x%x kw=%s size=%" PRIu64 "\n", m[i].uid, m[i].flags,
               m[i].keywords ? m[i].keywords : "-", m[i].size);
}

static void print_mailbox(const char *what, const struct remote_box *mb)
{
    printf("%s: uidvalidity %" PRIu32 " uidnext %" PRIu32 " exists %" PRIu32 " highestmodseq %" PRIu64 "\n", what,
           mb->uidvalidity, mb->uidnext, mb->exists, mb->highestmodseq);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void print_hwm(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM", 5))
            printf("%s", line);
    if (f)
        fclose(f);
}

/* Split "a:b:c" in place into at most max fields. */
static int split(char *s, char **f, int max)
{
    int n = 0;
    while (n < max) {
        f[n++] = s;
        char *c = strchr(s, ':');
        if (!c)
            break;
        *c = '\0';
        s = c + 1;
    }
    return n;
}

static int run_op(struct imap_session *s, char *op)
{
    struct ms_error err = {0};
    char *f[6];
    int nf = split(op, f, 6);
    int rc = 0;
    if (!strcmp(f[0], "quiet")) {
        quiet = true;
    } else if (!strcmp(f[0], "enable")) {
        printf("enable: %d\n", imap_enable_qresync(s));
    } else if (!strcmp(f[0], "status") && nf == 2) {
        struct remote_status st;
        rc = imap_status(s, f[1], &st, &err);
        if (rc == 0)
            printf("status %s: messages %" PRIu32 " uidnext %" PRIu32 " uidvalidity %" PRIu32
                   " highestmodseq %" PRIu64 "\n",
                   f[1], st.messages, st.uidnext, st.uidvalidity, st.highestmodseq);
    } else if (!strcmp(f[0], "select") && nf == 2) {
        struct remote_box mb;
        rc = imap_select(s, f[1], false, &mb, &err);
        if (rc == 0)
            print_mailbox("select", &mb);
    } else if (!strcmp(f[0], "qselect") && nf >= 4) {
        struct remote_box mb;
        struct remote_msg *m = NULL;
        uint32_t *v = NULL;
        size_t nm = 0, nv = 0;
        uint32_t uv = (uint32_t)strtoul(f[2], NULL, 10);
        uint64_t ms = strtoull(f[3], NULL, 10);
        double t0 = now_ms();
        rc = imap_select_qresync(s, f[1], nf >= 5 && !strcmp(f[4], "rw"), uv, ms, 0, 0, &mb, &m, &nm, &v, &nv,
                                 &err);
        if (rc == 0) {
            print_mailbox("qselect", &mb);
            /* (no vanished list: more vanished UIDs than it holds) */
            bool full = mb.uidvalidity != uv || mb.highestmodseq == 0 || mb.highestmodseq < ms || !v;
            printf("qselect full-fallback %d in %.1f ms\n", full, now_ms() - t0);
            print_msgs("changed", m, nm);
            print_set("vanished", v, nv);
            remote_msgs_free(m, nm);
            free(v);
        }
    } else if (!strcmp(f[0], "changed") && nf == 4) {
        struct remote_msg *m = NULL;
        size_t nm = 0;
        rc = imap_fetch_flags_changedsince(s, (uint32_t)strtoul(f[1], NULL, 10), (uint32_t)strtoul(f[2], NULL, 10),
                                           strtoull(f[3], NULL, 10), &m, &nm, &err);
        if (rc == 0) {
            print_msgs("changedsince", m, nm);
            remote_msgs_free(m, nm);
        }
    } else if (!strcmp(f[0], "flags")) {
        struct remote_msg *m = NULL;
        size_t nm = 0;
        rc = imap_fetch_flags(s, 1, 0, &m, &nm, &err);
        if (rc == 0) {
            print_msgs("flags", m, nm);
            remote_msgs_free(m, nm);
        }
    } else if (!strcmp(f[0], "uids")) {
        uint32_t *v = NULL;
        size_t n = 0;
        double t0 = now_ms();
        rc = imap_fetch_uids(s, &v, &n, &err);
        if (rc == 0) {
            uint64_t sum = 0;
            for (size_t i = 0; i < n; i++)
                sum += v[i];
            printf("uids: %zu sum %" PRIu64 " in %.1f ms\n", n, sum, now_ms() - t0);
            print_set("uids", v, n);
            free(v);
        }
    } else {
        printf("unknown op %s\n", f[0]);
        return 2;
    }
    if (rc)
        printf("%s failed: code %d: %s\n", f[0], rc, err.msg);
    return rc;
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
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT USER OP...\n", argv[0]);
        return 2;
    }
    struct account a = {0};
    a.name = "probe";
    a.host = argv[1];
    a.port = atoi(argv[2]);
    a.tls = TLS_NONE;
    a.user = argv[3];
    a.timeout = 30;
    if (getenv("PROBE_VERBOSE"))
        log_verbosity = atoi(getenv("PROBE_VERBOSE"));
    const char *pw = getenv("PROBE_PASSWORD");
    struct ms_error err = {0};
    struct imap_session *s = NULL;
    int rc = imap_connect(&a, pw ? pw : "", &s, &err);
    if (rc) {
        printf("connect failed: code %d: %s\n", rc, err.msg);
        return rc;
    }
    printf("caps: %s\n", imap_capabilities(s));
    int first = 0;
    for (int i = 4; i < argc; i++) {
        rc = run_op(s, argv[i]);
        if (rc && !first)
            first = rc;
    }
    print_hwm();
    imap_close(s);
    return first;
}
