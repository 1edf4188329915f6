/* SPDX-License-Identifier: MIT */
/* test_remote_pop3.c: the POP3 side of remote.h (sync/remote/remote_pop3.c)
 * against a scripted POP3 server on loopback: what POP3 is in the
 * interface's terms (capabilities, one INBOX, session numbers as uids with
 * the UIDL as id, DELE as remove carried out by commit = QUIT), and a body
 * far over its listed size cut off inside the side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sync/account.h"
#include "sync/remote/remote.h"

/* The server: two messages, "1 uid-one" (dot-stuffed) and "2 uid-two";
 * RETR 2 answers -ERR; the commands it got are kept in order. */
struct server {
    int lfd;
    int port;
    size_t big; /* >0: RETR 1 sends this many bytes (LIST says 100) */
    pthread_t thread;
    char log[1024]; /* the commands, one per line */
};

static void say(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL); /* the client may have gone */
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void *serve(void *arg)
{
    struct server *sv = arg;
    int fd = accept(sv->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    FILE *in = fdopen(dup(fd), "r");
    say(fd, "+OK ready\r\n");
    char line[256];
    while (in && fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "PASS", 4) != 0) {
            strncat(sv->log, line, sizeof sv->log - strlen(sv->log) - 2);
            strcat(sv->log, "\n");
        }
        if (strncmp(line, "UIDL", 4) == 0) {
            say(fd, "+OK\r\n1 uid-one\r\n2 uid-two\r\n.\r\n");
        } else if (strncmp(line, "LIST", 4) == 0) {
            say(fd, sv->big ? "+OK\r\n1 100\r\n2 40\r\n.\r\n" : "+OK\r\n1 35\r\n2 40\r\n.\r\n");
        } else if (strcmp(line, "RETR 1") == 0 && sv->big) {
            say(fd, "+OK\r\n");
            char chunk[1000];
            memset(chunk, 'x', sizeof chunk - 2);
            memcpy(chunk + sizeof chunk - 2, "\r\n", 2);
            for (size_t sent = 0; sent < sv->big; sent += sizeof chunk)
                if (send(fd, chunk, sizeof chunk, MSG_NOSIGNAL) <= 0)
                    break;
            break; /* the client cut it off */
        } else if (strcmp(line, "RETR 1") == 0) {
            say(fd, "+OK\r\nSubject: one\r\n\r\n..dot\r\n.\r\n");
        } else if (strncmp(line, "RETR", 4) == 0) {
            say(fd, "-ERR no such message\r\n");
        } else if (strcmp(line, "QUIT") == 0) {
            say(fd, "+OK bye\r\n");
            break;
        } else {
            say(fd, "+OK\r\n");
        }
    }
    if (in)
        fclose(in);
    close(fd);
    return NULL;
}

static void start(struct server *sv, size_t big)
{
    memset(sv, 0, sizeof *sv);
    sv->big = big;
    sv->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(sv->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(sv->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(sv->lfd, 1), 0);
    assert_int_equal(getsockname(sv->lfd, (struct sockaddr *)&a, &alen), 0);
    sv->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&sv->thread, NULL, serve, sv), 0);
}

static void stop(struct server *sv)
{
    pthread_join(sv->thread, NULL);
    close(sv->lfd);
}

static struct remote *connect_to(const struct server *sv, struct account *a)
{
    *a = (struct account){0};
    a->name = "test";
    a->type = ACCOUNT_POP3;
    a->host = "127.0.0.1";
    a->port = sv->port;
    a->tls = TLS_NONE;
    a->user = "me";
    a->timeout = 5;
    struct remote *r = NULL;
    struct ms_error err;
    assert_int_equal(remote_connect(a, "secret", &r, &err), MS_OK);
    assert_non_null(r);
    return r;
}

struct got {
    char body[256];
    size_t len;
    uint32_t uid[4];
    char id[4][72];
    size_t n;
};

static int on_chunk(void *ctx, const char *data, size_t len)
{
    struct got *g = ctx;
    if (g->len + len >= sizeof g->body)
        return MS_ELOCAL;
    memcpy(g->body + g->len, data, len);
    g->len += len;
    return 0;
}

static int on_message(void *ctx, const struct remote_msg *m, bool has_body)
{
    struct got *g = ctx;
    assert_true(has_body);
    assert_true(g->n < 4);
    g->uid[g->n] = m->uid;
    snprintf(g->id[g->n], sizeof g->id[g->n], "%s", m->id);
    g->n++;
    return 0;
}

static void side_in_interface_terms(void **unused)
{
    (void)unused;
    struct server sv;
    start(&sv, 0);
    struct account a;
    struct remote *r = connect_to(&sv, &a);
    struct ms_error err;

    assert_string_equal(r->ops->name, "pop3");
    assert_int_equal(remote_caps(r), REMOTE_EXACT | REMOTE_COMMIT);
    assert_false(remote_can(r, REMOTE_UIDS));
    assert_string_equal(r->ops->tls_info(r), "none");
    assert_string_equal(r->ops->capabilities(r), "POP3 UIDL (2 messages in the maildrop)");

    struct remote_folder *f = NULL;
    size_t nf = 0;
    assert_int_equal(r->ops->list(r, NULL, 0, NULL, &f, &nf, &err), MS_OK);
    assert_int_equal(nf, 1);
    assert_string_equal(f[0].name, "INBOX");
    remote_folders_free(f, nf);

    struct remote_listing l;
    assert_int_equal(r->ops->open(r, "Sent", &(struct remote_known){0}, &l, &err), MS_EPARTIAL);
    assert_int_equal(r->ops->open(r, "INBOX", &(struct remote_known){0}, &l, &err), MS_OK);
    assert_int_equal(l.kind, REMOTE_LIST_FULL);
    assert_int_equal(l.box.uidvalidity, 0);
    assert_int_equal(l.box.exists, 2);
    assert_int_equal(l.nmsgs, 2);
    assert_int_equal(l.msgs[0].uid, 1);
    assert_string_equal(l.msgs[0].id, "uid-one");
    assert_int_equal(l.msgs[0].size, 35);
    assert_int_equal(l.msgs[1].uid, 2);
    assert_string_equal(l.msgs[1].id, "uid-two");
    remote_listing_free(&l);

    /* message 2 is refused: the fetch reports 1 and then the -ERR */
    struct got g = {0};
    struct remote_body_sink sink = {.ctx = &g, .chunk = on_chunk, .message = on_message};
    assert_int_equal(r->ops->fetch_bodies(r, (const uint32_t[]){1, 2}, 2, &sink, &err), MS_EPARTIAL);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.uid[0], 1);
    assert_string_equal(g.id[0], "uid-one");
    g.body[g.len] = '\0';
    assert_string_equal(g.body, "Subject: one\r\n\r\n.dot\r\n");

    /* removal is DELE, carried out by commit = QUIT */
    assert_int_equal(r->ops->remove(r, (const uint32_t[]){1}, 1, &err), MS_OK);
    assert_int_equal(r->ops->commit(r, &err), MS_OK);
    remote_close(&r);
    stop(&sv);
    assert_string_equal(sv.log, "USER me\nUIDL\nLIST\nRETR 1\nRETR 2\nDELE 1\nQUIT\n");
}

static int count_chunk(void *ctx, const char *data, size_t len)
{
    (void)data;
    *(size_t *)ctx += len;
    return 0;
}

static int no_message(void *ctx, const struct remote_msg *m, bool has_body)
{
    (void)ctx, (void)m, (void)has_body;
    fail_msg("a message cut off was reported");
    return 0;
}

static void body_far_over_its_size_is_cut_off(void **unused)
{
    (void)unused;
    struct server sv;
    start(&sv, 4u << 20); /* 4 MiB for a listed 100 bytes */
    struct account a;
    struct remote *r = connect_to(&sv, &a);
    struct ms_error err;
    size_t got = 0;
    struct remote_body_sink sink = {.ctx = &got, .chunk = count_chunk, .message = no_message};
    assert_int_equal(r->ops->fetch_bodies(r, (const uint32_t[]){1}, 1, &sink, &err), MS_ENET);
    assert_non_null(strstr(err.msg, "more than twice the 100 bytes"));
    assert_true(got <= 2 * 100 + (1u << 20));
    remote_close(&r);
    stop(&sv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(side_in_interface_terms),
        cmocka_unit_test(body_far_over_its_size_is_cut_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
