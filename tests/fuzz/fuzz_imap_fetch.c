/* SPDX-License-Identifier: MIT */
/*
 * fuzz_imap_fetch.c: libFuzzer target for the IMAP side as a whole:
 * arbitrary server bytes through our transport (sync/net/netstream.c: framing,
 * literal caps), libetpan's parser and sync/remote/imap_*.c's handling of what it
 * parsed (reliability.md §1: out-of-context replies, huge literals, odd
 * STATUS/LIST/FETCH/VANISHED answers).
 *
 * A scripted server runs in a thread of this process on 127.0.0.1 (tls =
 * none is allowed for loopback). It answers every command sensibly, except
 * one: byte 0 of the input picks the operation under test, and the rest of
 * the input is sent as the server's answer to that operation's command,
 * followed by "TAG OK" and the end of the stream (so nothing ever waits for
 * a timeout). The operations: LIST, EXAMINE, UID FETCH flags, UID FETCH
 * bodies, UID FETCH identity, STATUS, UID SEARCH, QRESYNC EXAMINE, the
 * CAPABILITY answer, and the greeting itself; and since: the STATUS+LIST
 * pipeline, the listing pipelined behind a QRESYNC EXAMINE, and the second
 * of three EXAMINEs sent ahead (imap_examine_ahead), its answer either
 * read as the one asked for or dropped before a command on the first;
 * and watch's NOTIFY SET (imap_notify_all) and IDLE (imap_idle, 50 ms);
 * and the listing of a server with LIST-STATUS, SPECIAL-USE and ID (ID,
 * ENABLE and one LIST ... RETURN (SPECIAL-USE STATUS (...)) pipelined:
 * the LIST's answer is the input).
 *
 * Properties: no sanitizer report (libetpan itself is not instrumented;
 * ASan still sees bad frees and overflows of what it allocates), and the
 * promises of imap.h on success: flag listings sorted by UID with only
 * FLAG_ALL bits, UID lists sorted and unique, QRESYNC vanished UIDs sorted,
 * unique, below UIDNEXT and never also reported as changed; object ids
 * (EMAILID, X-GM-MSGID: the server offers both) of RFC 8474's grammar.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "sync/flags.h"
#include "sync/remote/imap.h"
#include "sync/log.h"

/* The first input byte picks the op: 0-239 modulo the first ten ops (the
 * seeds written for them keep their meaning), 240-255 the ops added since. */
enum op { OP_LIST, OP_SELECT, OP_FLAGS, OP_BODIES, OP_IDENTITY, OP_STATUS, OP_UIDS, OP_QRESYNC, OP_CAPA,
          OP_GREETING, OP_STATUS_LIST, OP_QRESYNC_AHEAD, OP_AHEAD_READ, OP_AHEAD_DROP, OP_NOTIFY, OP_IDLE,
          OP_LIST_STATUS, NOPS };
#define NOPS_FIRST 10

/* Known leaks inside libetpan 1.9.4, not ours, suppressed (libetpan has
 * no frame pointers, so a report may only show the allocating function):
 *  - the parsed greeting when it is "* BYE ...": parse_greeting() in
 *    mailimap.c returns MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION without
 *    freeing it (also in upstream; see .ci/lsan.supp);
 *  - the section spec of "BODY[HEADER" not followed by ']':
 *    mailimap_section_parse() jumps past its cleanup (fixed upstream in
 *    ddf1d98 "Fix section parse cleanup leak", libetpan 1.10). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:mailimap_greeting_parse\n"
           "leak:mailimap_greeting_new\n"
           "leak:mailimap_section_spec_new\n";
}

static int listen_fd = -1;
static int port;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    log_verbosity = -1; /* errors only: keep the fuzzer's output readable */
    listen_fd = fuzz_listen_loopback("fuzz_imap_fetch: listen", &port);
    return 0;
}

/* ---- the scripted server ---------------------------------------------------- */

struct script {
    enum op op;
    const char *payload;
    size_t len;
};

static bool send_str(int fd, const char *s)
{
    return fuzz_send_all(fd, s, strlen(s));
}

#define CAPS "IMAP4rev1 LITERAL+ UIDPLUS ENABLE CONDSTORE QRESYNC IDLE NOTIFY OBJECTID X-GM-EXT-1"
#define CAPS_LIST_STATUS CAPS " LIST-EXTENDED LIST-STATUS SPECIAL-USE ID"

static bool is_target(enum op op, const char *cmd, const char *rest)
{
    switch (op) {
    case OP_LIST:
    case OP_LIST_STATUS:
        return !strcasecmp(cmd, "LIST");
    case OP_SELECT:
    case OP_QRESYNC:
        return !strcasecmp(cmd, "EXAMINE") || !strcasecmp(cmd, "SELECT");
    case OP_FLAGS:
    case OP_BODIES:
    case OP_IDENTITY:
        return !strcasecmp(cmd, "UID") && !strncasecmp(rest, "FETCH", 5);
    case OP_QRESYNC_AHEAD: /* the listing pipelined behind the EXAMINE */
        return !strcasecmp(cmd, "UID") && !strncasecmp(rest, "FETCH", 5);
    case OP_UIDS:
        return !strcasecmp(cmd, "UID") && !strncasecmp(rest, "SEARCH", 6);
    case OP_STATUS:
    case OP_STATUS_LIST: /* the first STATUS of the pipeline gets the input */
        return !strcasecmp(cmd, "STATUS");
    case OP_CAPA:
        return !strcasecmp(cmd, "CAPABILITY");
    case OP_NOTIFY:
        return !strcasecmp(cmd, "NOTIFY");
    case OP_IDLE:
        return !strcasecmp(cmd, "IDLE");
    default:
        return false;
    }
}

/* The sensible answer to a command that is not under test. */
static void answer(int fd, const char *tag, const char *cmd, unsigned uidnext, const char *caps)
{
    char out[512];
    if (!strcasecmp(cmd, "CAPABILITY"))
        snprintf(out, sizeof out, "* CAPABILITY %s\r\n%s OK done\r\n", caps, tag);
    else if (!strcasecmp(cmd, "LOGIN"))
        snprintf(out, sizeof out, "%s OK [CAPABILITY %s] logged in\r\n", tag, caps);
    else if (!strcasecmp(cmd, "ID"))
        snprintf(out, sizeof out, "* ID (\"name\" \"fuzz\" \"version\" \"1\")\r\n%s OK id\r\n", tag);
    else if (!strcasecmp(cmd, "ENABLE"))
        snprintf(out, sizeof out, "* ENABLED QRESYNC CONDSTORE\r\n%s OK enabled\r\n", tag);
    else if (!strcasecmp(cmd, "EXAMINE") || !strcasecmp(cmd, "SELECT"))
        snprintf(out, sizeof out,
                 "* 5 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT %u] n\r\n* OK [HIGHESTMODSEQ 100] m\r\n"
                 "%s OK [READ-ONLY] done\r\n",
                 uidnext, tag);
    else if (!strcasecmp(cmd, "LOGOUT"))
        snprintf(out, sizeof out, "* BYE bye\r\n%s OK done\r\n", tag);
    else
        snprintf(out, sizeof out, "%s OK done\r\n", tag);
    send_str(fd, out);
}

static void *server(void *arg)
{
    const struct script *sc = arg;
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return NULL;
    bool done = false;
    int examines = 0;
    if (sc->op == OP_GREETING) {
        fuzz_send_all(fd, sc->payload, sc->len);
        done = true;
    } else {
        send_str(fd, "* OK fuzz server ready\r\n");
    }
    char line[8192];
    while (!done && fuzz_read_line(fd, line, sizeof line)) {
        char *save = NULL;
        char *tag = strtok_r(line, " ", &save);
        char *cmd = tag ? strtok_r(NULL, " ", &save) : NULL;
        char *rest = cmd ? strtok_r(NULL, "", &save) : NULL;
        if (!tag || !cmd)
            continue;
        bool ahead = sc->op == OP_AHEAD_READ || sc->op == OP_AHEAD_DROP;
        if (ahead ? !strcasecmp(cmd, "EXAMINE") && ++examines == 2 : is_target(sc->op, cmd, rest ? rest : "")) {
            char ok[300];
            snprintf(ok, sizeof ok, "%s OK done\r\n", tag);
            fuzz_send_all(fd, sc->payload, sc->len);
            send_str(fd, ok);
            done = true;
        } else {
            answer(fd, tag, cmd, sc->op == OP_QRESYNC_AHEAD ? 30 : 20,
                   sc->op == OP_LIST_STATUS ? CAPS_LIST_STATUS : CAPS);
        }
    }
    fuzz_end_stream(fd);
    return NULL;
}

/* ---- former findings ------------------------------------------------------
 *
 * Four NULL dereferences inside libetpan 1.9.4, reachable from sync/remote/imap_*.c,
 * were found here: an empty CAPABILITY answer, a malformed PERMANENTFLAGS
 * list, a greeting whose response code holds a list, an [ALERT] or [PARSE]
 * code with no text after it. sync/net/netstream.c now
 * refuses those lines before libetpan parses them (refuse_libetpan_traps);
 * the inputs are part of the seed corpus (crash-*), so every CI run replays
 * them. */

/* ---- the client side -------------------------------------------------------- */

static int sink_chunk(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    /* Touch every byte: ASan checks the buffer really has len bytes. */
    volatile unsigned char x = 0;
    for (size_t i = 0; i < len; i++)
        x ^= (unsigned char)data[i];
    (void)x;
    return 0;
}

/* An object id handed out is EMAILID's grammar (RFC 8474) or "gm:" and
 * digits (X-GM-MSGID). */
static void check_emailid(const char *id)
{
    if (!id)
        return;
    size_t n = strlen(id);
    CHECK(n >= 1 && n <= 255, "object id of %zu bytes", n);
    const char *p = strncmp(id, "gm:", 3) == 0 ? id + 3 : id;
    for (; *p; p++)
        CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                  *p == '-',
              "object id byte 0x%02x", (unsigned char)*p);
}

static int sink_message(void *ctx, const struct remote_msg *m, bool has_body)
{
    (void)ctx, (void)has_body;
    CHECK((m->flags & ~FLAG_ALL) == 0, "flags 0x%x", m->flags);
    check_emailid(m->emailid);
    return 0;
}

static void found_identity(void *ctx, uint32_t uid, uint64_t size, const char *id, const char *emailid)
{
    (void)ctx, (void)uid, (void)size;
    if (id)
        CHECK(strlen(id) < 1u << 20, "huge Message-ID");
    check_emailid(emailid);
}

static void check_msgs(const struct remote_msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        CHECK((m[i].flags & ~FLAG_ALL) == 0, "flags 0x%x", m[i].flags);
        CHECK(i == 0 || m[i - 1].uid <= m[i].uid, "messages not sorted by UID");
    }
}

static void check_sorted_unique(const uint32_t *v, size_t n, const char *what)
{
    for (size_t i = 1; i < n; i++)
        CHECK(v[i - 1] < v[i], "%s not sorted and unique", what);
}

static void run_op(struct imap_session *s, enum op op)
{
    struct ms_error err = {0};
    struct remote_box mb;
    static const uint32_t uids[] = {1, 2, 3, 5, 8, 13};
    const size_t nuids = sizeof uids / sizeof *uids;
    switch (op) {
    case OP_LIST: {
        struct remote_folder *f = NULL;
        size_t n = 0;
        if (imap_list(s, &f, &n, &err) == MS_OK)
            for (size_t i = 0; i < n; i++)
                CHECK(f[i].name != NULL, "folder without a name");
        remote_folders_free(f, n);
        break;
    }
    case OP_SELECT:
        imap_select(s, "INBOX", false, &mb, &err);
        break;
    case OP_FLAGS: {
        struct remote_msg *m = NULL;
        size_t n = 0;
        if (imap_select(s, "INBOX", false, &mb, &err) == MS_OK && imap_fetch_flags(s, 1, 0, &m, &n, &err) == MS_OK)
            check_msgs(m, n);
        remote_msgs_free(m, n);
        break;
    }
    case OP_BODIES: {
        struct remote_body_sink sink = {NULL, sink_chunk, sink_message};
        if (imap_select(s, "INBOX", false, &mb, &err) == MS_OK)
            imap_fetch_bodies(s, uids, nuids, &sink, &err);
        break;
    }
    case OP_IDENTITY:
        if (imap_select(s, "INBOX", false, &mb, &err) == MS_OK)
            imap_fetch_identity_oid(s, uids, nuids, found_identity, NULL, &err); /* EMAILID asked (OBJECTID) */
        break;
    case OP_STATUS: {
        struct remote_status st;
        imap_status(s, "INBOX", &st, &err);
        break;
    }
    case OP_STATUS_LIST:
    case OP_LIST_STATUS: {
        static const char *const names[] = {"INBOX", "Archive", "a \"q\" b", "Sent"};
        struct remote_status st[4];
        struct remote_folder *f = NULL;
        size_t n = 0;
        if (imap_status_and_list(s, true, names, 4, st, &f, &n, &err) == MS_OK)
            for (size_t i = 0; i < n; i++) {
                CHECK(f[i].name != NULL, "folder without a name");
                CHECK((f[i].roles & ~0x7fu) == 0, "roles 0x%x", f[i].roles);
            }
        remote_folders_free(f, n);
        break;
    }
    case OP_UIDS: {
        uint32_t *v = NULL;
        size_t n = 0;
        if (imap_select(s, "INBOX", false, &mb, &err) == MS_OK && imap_fetch_uids(s, &v, &n, &err) == MS_OK)
            check_sorted_unique(v, n, "UID SEARCH result");
        free(v);
        break;
    }
    case OP_QRESYNC:
    case OP_QRESYNC_AHEAD: {
        /* AHEAD: a STATUS said UIDNEXT 25, so the listing of UIDs 20:*
         * goes out with the EXAMINE (which then says UIDNEXT 30). Plain
         * QRESYNC holds a window of 2 changes: past it the answer's
         * reports are kept compact and the windows below taken from them
         * (or asked for: the server answers OK), down to UID 1. */
        struct remote_msg *changed = NULL;
        size_t nchanged = 0, nvanished = 0;
        uint32_t *vanished = NULL, from = 0;
        uint32_t expect = op == OP_QRESYNC_AHEAD ? 25 : 0, window = op == OP_QRESYNC ? 2 : 0;
        if (imap_enable_qresync(s) &&
            imap_select_qresync_window(s, "INBOX", false, 7, 50, 20, expect, window, &mb, &changed, &nchanged, &from,
                                       &vanished, &nvanished, &err) == MS_OK) {
            check_msgs(changed, nchanged);
            check_sorted_unique(vanished, nvanished, "VANISHED");
            for (size_t i = 0; i < nvanished; i++) {
                CHECK(mb.uidnext == 0 || vanished[i] < mb.uidnext, "vanished UID %u >= UIDNEXT %u", vanished[i],
                      mb.uidnext);
                for (size_t j = 0; j < nchanged; j++)
                    CHECK(changed[j].uid != vanished[i], "UID %u both changed and vanished", vanished[i]);
            }
            for (size_t j = 0; from && j < nchanged; j++)
                CHECK(changed[j].uid >= from, "UID %u below the top window %u", changed[j].uid, from);
            for (uint32_t hi = from > 1 ? from - 1 : 0; hi >= 1;) {
                uint32_t lo = hi > window ? hi - window + 1 : 1;
                struct remote_msg *w = NULL;
                size_t nw = 0;
                if (imap_fetch_flags_changedsince(s, lo, hi, 50, &w, &nw, &err) != MS_OK)
                    break;
                check_msgs(w, nw);
                for (size_t j = 0; j < nw; j++) {
                    CHECK(w[j].uid >= lo && w[j].uid <= hi, "UID %u outside the window %u:%u", w[j].uid, lo, hi);
                    CHECK(j == 0 || w[j - 1].uid < w[j].uid, "window not unique");
                    for (size_t i = 0; vanished && i < nvanished; i++)
                        CHECK(w[j].uid != vanished[i], "UID %u both changed and vanished", vanished[i]);
                }
                remote_msgs_free(w, nw);
                hi = lo - 1;
            }
        }
        remote_msgs_free(changed, nchanged);
        free(vanished);
        break;
    }
    case OP_AHEAD_READ:
    case OP_AHEAD_DROP: {
        /* Three EXAMINEs go out at once; the input is the answer to the
         * second. READ asks for the first and then the second (read as
         * queued); DROP asks for the first, then lists its flags (the
         * other answers are dropped, the first folder examined again),
         * then the third (sent anew). */
        static const struct imap_examine_req req[] = {{"INBOX", 7, 50, 0}, {"Archive", 7, 50, 0}, {"Sent", 7, 50, 0}};
        static const char *const asked[2][2] = {{"INBOX", "Archive"}, {"INBOX", "Sent"}};
        if (!imap_enable_qresync(s) || imap_examine_ahead(s, req, 3, &err) != MS_OK)
            break;
        for (int k = 0; k < 2; k++) {
            struct remote_msg *changed = NULL, *m = NULL;
            size_t nchanged = 0, nvanished = 0, n = 0;
            uint32_t *vanished = NULL;
            int rc = imap_select_qresync(s, asked[op == OP_AHEAD_DROP][k], false, 7, 50, 20, 0, &mb, &changed,
                                         &nchanged, &vanished, &nvanished, &err);
            if (rc == MS_OK) {
                check_msgs(changed, nchanged);
                check_sorted_unique(vanished, nvanished, "VANISHED");
            }
            remote_msgs_free(changed, nchanged);
            free(vanished);
            if (rc == MS_OK && k == 0 && op == OP_AHEAD_DROP && imap_fetch_flags(s, 1, 0, &m, &n, &err) == MS_OK)
                check_msgs(m, n);
            remote_msgs_free(m, n);
        }
        break;
    }
    case OP_NOTIFY: /* watch's set-up: ENABLE CONDSTORE, then NOTIFY SET */
        imap_notify_all(s, &err);
        break;
    case OP_IDLE: { /* watch's wait: untagged lines before and after "+" */
        bool changed = false;
        imap_idle(s, 50, NULL, -1, &changed, &err);
        break;
    }
    default:
        break; /* CAPABILITY and greeting: connecting was the test */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    enum op op = data[0] < 240 ? (enum op)(data[0] % NOPS_FIRST) : (enum op)(NOPS_FIRST + (data[0] - 240) % (NOPS - NOPS_FIRST));
    struct script sc = {op, (const char *)data + 1, size - 1};
    pthread_t th;
    if (pthread_create(&th, NULL, server, &sc) != 0)
        abort();

    struct account acct = {0};
    acct.name = "fuzz";
    acct.host = "127.0.0.1";
    acct.port = port;
    acct.tls = TLS_NONE;
    acct.user = "user";
    acct.auth = AUTH_LOGIN;
    acct.timeout = 2;
    struct imap_session *s = NULL;
    struct ms_error err = {0};
    if (imap_connect(&acct, "password", &s, &err) == MS_OK) {
        run_op(s, sc.op);
        imap_close(s);
    }
    pthread_join(th, NULL);
    return 0;
}
