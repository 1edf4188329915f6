/* SPDX-License-Identifier: MIT */
/* test_memremote.c: the in-memory server and its remote side
 * (tests/unit/memremote.c) on their own, through struct remote_ops as the
 * engine calls them: the engine's tests (test_engine.c) rest on these
 * semantics, so they are pinned here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memremote.h"
#include "sync/flags.h"
#include "sync/remote/remote.h"

static struct account the_account = {.name = "mem"};

struct sink {
    char buf[8192];
    size_t len;
    size_t chunks;
    uint32_t uids[16];
    uint64_t sizes[16];
    unsigned flags[16];
    size_t n;
    size_t lens[16]; /* bytes streamed for each message */
    size_t start;    /* where the current message began in buf */
};

static int on_chunk(void *ctx, const char *data, size_t len)
{
    struct sink *s = ctx;
    assert_true(s->len + len <= sizeof s->buf);
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->chunks++;
    return 0;
}

static int on_message(void *ctx, const struct remote_msg *m, bool has_body)
{
    struct sink *s = ctx;
    assert_true(has_body);
    assert_true(s->n < 16);
    s->uids[s->n] = m->uid;
    s->sizes[s->n] = m->size;
    s->flags[s->n] = m->flags;
    s->lens[s->n] = s->len - s->start;
    s->start = s->len;
    s->n++;
    return 0;
}

static struct remote_body_sink body_sink(struct sink *s)
{
    return (struct remote_body_sink){.ctx = s, .chunk = on_chunk, .message = on_message};
}

static struct remote *connect_to(struct mem_server *srv)
{
    struct remote *r = NULL;
    struct ms_error err;
    assert_int_equal(mem_connect(srv, &the_account, &r, &err), MS_OK);
    assert_non_null(r);
    return r;
}

static void list_and_status(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    mem_add_simple(srv, "INBOX", "<a@x>", "a", 0);
    mem_add_simple(srv, "INBOX", "<b@x>", "b", FLAG_SEEN);
    mem_folder(srv, "Archive");
    struct remote *r = connect_to(srv);
    const char *names[] = {"INBOX", "Nope"};
    struct remote_status st[2] = {{0}};
    struct remote_folder *f = NULL;
    size_t nf = 0;
    struct ms_error err;
    assert_int_equal(r->ops->list(r, names, 2, st, &f, &nf, &err), MS_OK);
    assert_int_equal(nf, 2);
    assert_string_equal(f[0].name, "INBOX");
    assert_string_equal(f[1].name, "Archive");
    assert_int_equal(f[0].delim, '/');
    assert_int_equal(st[0].messages, 2);
    assert_int_equal(st[0].uidnext, 3);
    assert_true(st[0].uidvalidity != 0);
    assert_true(st[0].highestmodseq != 0);
    assert_int_equal(st[1].uidvalidity, 0); /* no such folder: stays zeroed */
    remote_folders_free(f, nf);
    struct remote_status one;
    assert_int_equal(r->ops->status(r, "Archive", &one, &err), MS_OK);
    assert_int_equal(one.messages, 0);
    assert_int_equal(r->ops->status(r, "Nope", &one, &err), MS_EPARTIAL);
    assert_int_equal(mem_log_count(srv, MEM_OP_LIST, NULL), 1);
    assert_int_equal(mem_log_count(srv, MEM_OP_STATUS, "Archive"), 1);
    assert_true(mem_log_first(srv, MEM_OP_CONNECT, NULL) < mem_log_first(srv, MEM_OP_LIST, NULL));
    remote_close(&r);
    mem_server_free(srv);
}

static void full_and_incremental_listings(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    uint32_t a = mem_add_simple(srv, "INBOX", "<a@x>", "a", 0);
    uint32_t b = mem_add_simple(srv, "INBOX", "<b@x>", "b", 0);
    uint32_t c = mem_add_simple(srv, "INBOX", "<c@x>", "c", 0);
    struct remote *r = connect_to(srv);
    struct remote_listing l;
    struct ms_error err;
    struct remote_known none = {0};
    assert_int_equal(r->ops->open(r, "INBOX", &none, &l, &err), MS_OK);
    assert_int_equal(l.kind, REMOTE_LIST_FULL);
    assert_int_equal(l.nmsgs, 3);
    assert_int_equal(l.msgs[0].uid, a);
    assert_int_equal(l.msgs[2].uid, c);
    assert_true(l.msgs[0].size > 0);
    struct remote_known k = {.uidvalidity = l.box.uidvalidity, .uidnext = l.box.uidnext, .modseq = l.box.highestmodseq,
                             .status_uidnext = 0};
    remote_listing_free(&l);

    mem_set_flags(srv, "INBOX", b, FLAG_FLAGGED);
    mem_expunge(srv, "INBOX", c);
    mem_expunge(srv, "INBOX", a);
    uint32_t d = mem_add_simple(srv, "INBOX", "<d@x>", "d", 0);
    assert_int_equal(r->ops->open(r, "INBOX", &k, &l, &err), MS_OK);
    assert_int_equal(l.kind, REMOTE_LIST_VANISHED);
    assert_int_equal(l.nmsgs, 2); /* b changed, d new */
    assert_int_equal(l.msgs[0].uid, b);
    assert_int_equal(l.msgs[0].flags, FLAG_FLAGGED);
    assert_int_equal(l.msgs[1].uid, d);
    assert_int_equal(l.nuids, 2); /* vanished, sorted */
    assert_int_equal(l.uids[0], a);
    assert_int_equal(l.uids[1], c);
    remote_listing_free(&l);

    srv->incremental_kind = REMOTE_LIST_ALL_UIDS;
    assert_int_equal(r->ops->open(r, "INBOX", &k, &l, &err), MS_OK);
    assert_int_equal(l.kind, REMOTE_LIST_ALL_UIDS);
    assert_int_equal(l.nuids, 2); /* b and d are all there is */
    assert_int_equal(l.uids[0], b);
    assert_int_equal(l.uids[1], d);
    remote_listing_free(&l);

    mem_renumber(srv, "INBOX"); /* a new UIDVALIDITY: in full again */
    assert_int_equal(r->ops->open(r, "INBOX", &k, &l, &err), MS_OK);
    assert_int_equal(l.kind, REMOTE_LIST_FULL);
    assert_true(l.box.uidvalidity != k.uidvalidity);
    assert_int_equal(l.nmsgs, 2);
    remote_listing_free(&l);
    assert_int_equal(mem_log_count(srv, MEM_OP_OPEN_INC, "INBOX"), 2);
    assert_int_equal(mem_log_count(srv, MEM_OP_OPEN, "INBOX"), 2);

    srv->caps &= ~REMOTE_CHANGES; /* no CONDSTORE: always in full, no modseqs */
    assert_int_equal(r->ops->open(r, "INBOX", &k, &l, &err), MS_OK);
    assert_int_equal(l.kind, REMOTE_LIST_FULL);
    assert_int_equal(l.box.highestmodseq, 0);
    assert_false(remote_can(r, REMOTE_CHANGES));
    remote_listing_free(&l);
    remote_close(&r);
    mem_server_free(srv);
}

static void bodies_stream_crlf(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    uint32_t a = mem_add_simple(srv, "INBOX", "<a@x>", "a", FLAG_SEEN);
    uint32_t b = mem_add(srv, "INBOX", "Subject: b\n\nline\n", 0, 0);
    struct remote *r = connect_to(srv);
    struct remote_box box;
    struct ms_error err;
    assert_int_equal(r->ops->select(r, "INBOX", false, &box, &err), MS_OK);
    struct sink s = {0};
    struct remote_body_sink k = body_sink(&s);
    uint32_t uids[] = {a, b, 99};
    assert_int_equal(r->ops->fetch_bodies(r, uids, 3, &k, &err), MS_OK);
    assert_int_equal(s.n, 2); /* 99 does not exist: not reported */
    assert_int_equal(s.uids[0], a);
    assert_int_equal(s.flags[0], FLAG_SEEN);
    assert_int_equal(s.sizes[1], strlen("Subject: b\r\n\r\nline\r\n"));
    assert_int_equal(s.lens[1], s.sizes[1]);
    assert_true(s.chunks > 2); /* a message comes in several chunks */
    assert_memory_equal(s.buf + s.lens[0], "Subject: b\r\n\r\nline\r\n", s.sizes[1]);
    assert_int_equal(mem_log_count(srv, MEM_OP_BODY, "INBOX"), 2);
    remote_close(&r);
    mem_server_free(srv);
}

static void nth_body_fails(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    uint32_t u[3];
    u[0] = mem_add_simple(srv, "INBOX", "<a@x>", "a", 0);
    u[1] = mem_add_simple(srv, "INBOX", "<b@x>", "b", 0);
    u[2] = mem_add_simple(srv, "INBOX", "<c@x>", "c", 0);
    struct remote *r = connect_to(srv);
    struct remote_box box;
    struct ms_error err;
    assert_int_equal(r->ops->select(r, "INBOX", false, &box, &err), MS_OK);

    /* missing: the rest come, the command succeeds */
    srv->faults.fail_body = 2;
    srv->faults.body_kind = MEM_BODY_MISSING;
    struct sink s = {0};
    struct remote_body_sink k = body_sink(&s);
    assert_int_equal(r->ops->fetch_bodies(r, u, 3, &k, &err), MS_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.uids[0], u[0]);
    assert_int_equal(s.uids[1], u[2]);

    /* an error: the rest come, then the command fails; the session goes on */
    srv->bodies = 0;
    srv->faults.fail_body = 1;
    srv->faults.body_kind = MEM_BODY_ERROR;
    memset(&s, 0, sizeof s);
    assert_int_equal(r->ops->fetch_bodies(r, u, 3, &k, &err), MS_EPARTIAL);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.uids[0], u[1]);
    assert_int_equal(s.uids[1], u[2]);
    memset(&s, 0, sizeof s);
    assert_int_equal(r->ops->fetch_bodies(r, u, 3, &k, &err), MS_OK); /* fired once */
    assert_int_equal(s.n, 3);
    remote_close(&r);
    mem_server_free(srv);
}

static void session_drops(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    uint32_t u[3];
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "<%d@x>", i);
        u[i] = mem_add_simple(srv, "INBOX", id, id, 0);
    }
    struct remote *r = connect_to(srv);
    struct remote_box box;
    struct ms_error err;
    assert_int_equal(r->ops->select(r, "INBOX", false, &box, &err), MS_OK);
    srv->faults.drop_after_bodies = 1;
    struct sink s = {0};
    struct remote_body_sink k = body_sink(&s);
    assert_int_equal(r->ops->fetch_bodies(r, u, 3, &k, &err), MS_ENET);
    assert_int_equal(s.n, 1);                /* the first one whole... */
    assert_true(s.len > s.lens[0]);          /* ...part of the second... */
    assert_true(s.len - s.lens[0] < s.sizes[0]); /* ...but not all of it */
    assert_int_equal(r->ops->select(r, "INBOX", false, &box, &err), MS_ENET); /* dead */
    remote_close(&r);

    r = connect_to(srv); /* the next session is fine */
    assert_int_equal(r->ops->select(r, "INBOX", false, &box, &err), MS_OK);
    srv->ops = 0;
    srv->faults.drop_at_op = 2; /* the second op from now */
    struct remote_status st;
    assert_int_equal(r->ops->status(r, "INBOX", &st, &err), MS_OK);
    assert_int_equal(r->ops->status(r, "INBOX", &st, &err), MS_ENET);
    assert_int_equal(mem_log_count(srv, MEM_OP_DROP, NULL), 2);
    remote_close(&r);
    srv->refuse_login = 1;
    assert_int_equal(mem_connect(srv, &the_account, &r, &err), MS_ENET);
    assert_null(r);
    mem_server_free(srv);
}

static int tmpfile_with(const char *text)
{
    char path[] = "/tmp/test_memremote.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static void append_with_and_without_appenduid(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    mem_folder(srv, "INBOX");
    struct remote *r = connect_to(srv);
    struct ms_error err;
    const char *msg = "Message-ID: <up@x>\n\nhi\n"; /* CRLF size: 3 more */
    uint32_t uv = 9, uid = 9;
    int fd = tmpfile_with(msg);
    assert_int_equal(r->ops->append(r, "INBOX", FLAG_SEEN, 0, fd, strlen(msg) + 3, &uv, &uid, &err), MS_OK);
    close(fd);
    assert_int_equal(uid, 1);
    assert_int_equal(uv, mem_folder(srv, "INBOX")->uidvalidity);
    assert_int_equal(mem_folder(srv, "INBOX")->msgs[0].flags, FLAG_SEEN);
    assert_int_equal(mem_count_id(srv, "INBOX", "<up@x>"), 1);

    srv->faults.no_appenduid = true;
    fd = tmpfile_with(msg);
    assert_int_equal(r->ops->append(r, "INBOX", 0, 0, fd, strlen(msg) + 3, &uv, &uid, &err), MS_OK);
    close(fd);
    assert_int_equal(uid, 0);
    assert_int_equal(uv, 0);
    assert_int_equal(mem_count_id(srv, "INBOX", "<up@x>"), 2);

    fd = tmpfile_with(msg); /* a size that is not the file's ends the session */
    assert_int_equal(r->ops->append(r, "INBOX", 0, 0, fd, strlen(msg), &uv, &uid, &err), MS_ENET);
    close(fd);
    assert_int_equal(mem_count_id(srv, "INBOX", "<up@x>"), 2);
    assert_int_equal(mem_log_count(srv, MEM_OP_APPEND, "INBOX"), 2);
    remote_close(&r);
    mem_server_free(srv);
}

static void store_remove_copy_move_create(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    uint32_t a = mem_add_simple(srv, "INBOX", "<a@x>", "a", 0);
    uint32_t b = mem_add_simple(srv, "INBOX", "<b@x>", "b", 0);
    uint32_t c = mem_add_simple(srv, "INBOX", "<c@x>", "c", 0);
    struct remote *r = connect_to(srv);
    struct remote_box box;
    struct ms_error err;
    uint32_t ab[] = {a, b};
    assert_int_equal(r->ops->select(r, "INBOX", false, &box, &err), MS_OK);
    assert_int_equal(r->ops->store_flags(r, ab, 2, FLAG_SEEN, true, &err), MS_EPARTIAL); /* read-only */
    assert_int_equal(r->ops->select(r, "INBOX", true, &box, &err), MS_OK);
    uint64_t before = mem_folder(srv, "INBOX")->modseq;
    assert_int_equal(r->ops->store_flags(r, ab, 2, FLAG_SEEN | FLAG_FLAGGED, true, &err), MS_OK);
    assert_int_equal(r->ops->store_flags(r, &b, 1, FLAG_FLAGGED, false, &err), MS_OK);
    struct mem_folder *in = mem_folder(srv, "INBOX");
    assert_int_equal(mem_msg_find(in, a)->flags, FLAG_SEEN | FLAG_FLAGGED);
    assert_int_equal(mem_msg_find(in, b)->flags, FLAG_SEEN);
    assert_true(in->modseq > before);

    assert_int_equal(r->ops->create(r, "Trash", &err), MS_OK);
    assert_int_equal(r->ops->create(r, "Trash", &err), MS_EPARTIAL);
    uint32_t copies[2] = {0, 0}, uv = 0;
    assert_int_equal(r->ops->copy(r, ab, 2, "Trash", copies, &uv, &err), MS_OK);
    assert_int_equal(copies[0], 1);
    assert_int_equal(copies[1], 2);
    assert_int_equal(uv, mem_folder(srv, "Trash")->uidvalidity);
    assert_int_equal(r->ops->move(r, &c, 1, "Trash", &err), MS_OK);
    assert_int_equal(r->ops->remove(r, ab, 2, &err), MS_OK);
    assert_int_equal(mem_folder(srv, "INBOX")->n, 0);
    assert_int_equal(mem_folder(srv, "Trash")->n, 3);
    assert_int_equal(mem_count_id(srv, "Trash", "<c@x>"), 1);
    assert_int_equal(mem_folder(srv, "INBOX")->nvanished, 3);

    uint32_t *old = NULL;
    size_t nold = 0;
    mem_add(srv, "INBOX", "Subject: old\n\nx\n", 0, 86400 * 10);
    mem_add(srv, "INBOX", "Subject: new\n\nx\n", 0, 86400 * 20);
    assert_int_equal(r->ops->search_before(r, 86400 * 15 + 3600, &old, &nold, &err), MS_OK);
    assert_int_equal(nold, 1);
    assert_int_equal(old[0], 4);
    free(old);
    assert_int_equal(mem_log_count(srv, MEM_OP_MOVE, "INBOX"), 1);
    assert_int_equal(mem_log_count(srv, MEM_OP_COPY, "INBOX"), 1);
    assert_int_equal(mem_log_count(srv, MEM_OP_EXPUNGE, "INBOX"), 1);
    assert_int_equal(mem_log_count(srv, MEM_OP_CREATE, "Trash"), 1);
    char *text = mem_log_text(srv);
    assert_non_null(strstr(text, "MOVE     INBOX -> Trash 1"));
    free(text);
    remote_close(&r);
    mem_server_free(srv);
}

/* The scripted UIDVALIDITY change after a listing: by default the server
 * ends the session that has the folder open (as Dovecot does); or it goes
 * on and answers by the new numbering, where an old UID names another
 * message. */
static void uidvalidity_changes_after_listing(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    uint32_t a = mem_add_simple(srv, "INBOX", "<a@x>", "a", 0);
    mem_add_simple(srv, "INBOX", "<b@x>", "b", 0);
    struct remote *r = connect_to(srv);
    struct remote_listing l;
    struct remote_known none = {0};
    struct ms_error err;
    snprintf(srv->faults.uidvalidity_after_listing, sizeof srv->faults.uidvalidity_after_listing, "INBOX");
    assert_int_equal(r->ops->open(r, "INBOX", &none, &l, &err), MS_OK);
    uint32_t uv = l.box.uidvalidity;
    remote_listing_free(&l);
    assert_true(mem_folder(srv, "INBOX")->uidvalidity != uv);
    struct sink s = {0};
    struct remote_body_sink k = body_sink(&s);
    assert_int_equal(r->ops->fetch_bodies(r, &a, 1, &k, &err), MS_ENET);
    assert_int_equal(s.n, 0);
    remote_close(&r);
    mem_server_free(srv);

    srv = mem_server_new();
    a = mem_add_simple(srv, "INBOX", "<a@x>", "a", 0);
    mem_add_simple(srv, "INBOX", "<b@x>", "b", 0);
    r = connect_to(srv);
    srv->faults.stale_session_goes_on = true;
    snprintf(srv->faults.uidvalidity_after_listing, sizeof srv->faults.uidvalidity_after_listing, "INBOX");
    assert_int_equal(r->ops->open(r, "INBOX", &none, &l, &err), MS_OK);
    remote_listing_free(&l);
    assert_int_equal(r->ops->fetch_bodies(r, &a, 1, &k, &err), MS_OK);
    assert_int_equal(s.n, 1);
    assert_non_null(memmem(s.buf, s.len, "<b@x>", 5)); /* UID a is b's now */
    remote_close(&r);
    mem_server_free(srv);
}

/* ...or only after K bodies of the fetch that follows the listing. */
static void uidvalidity_changes_mid_fetch(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    uint32_t u[3];
    u[0] = mem_add_simple(srv, "INBOX", "<a@x>", "a", 0);
    u[1] = mem_add_simple(srv, "INBOX", "<b@x>", "b", 0);
    u[2] = mem_add_simple(srv, "INBOX", "<c@x>", "c", 0);
    struct remote *r = connect_to(srv);
    struct remote_listing l;
    struct remote_known none = {0};
    struct ms_error err;
    snprintf(srv->faults.uidvalidity_after_listing, sizeof srv->faults.uidvalidity_after_listing, "INBOX");
    srv->faults.uidvalidity_after_bodies = 1;
    assert_int_equal(r->ops->open(r, "INBOX", &none, &l, &err), MS_OK);
    uint32_t uv = l.box.uidvalidity;
    remote_listing_free(&l);
    assert_int_equal(mem_folder(srv, "INBOX")->uidvalidity, uv); /* not yet */
    struct sink s = {0};
    struct remote_body_sink k = body_sink(&s);
    assert_int_equal(r->ops->fetch_bodies(r, u, 3, &k, &err), MS_ENET);
    assert_int_equal(s.n, 1);
    assert_true(mem_folder(srv, "INBOX")->uidvalidity != uv);
    remote_close(&r);
    mem_server_free(srv);
}

static void move_between_folders_and_identity(void **state)
{
    (void)state;
    struct mem_server *srv = mem_server_new();
    uint32_t a = mem_add_simple(srv, "A", "<a@x>", "a", 0);
    uint32_t nu = mem_move(srv, "A", a, "B");
    assert_int_equal(nu, 1);
    assert_int_equal(mem_count_id(srv, "A", "<a@x>"), 0);
    assert_int_equal(mem_count_id(srv, "B", "<a@x>"), 1);
    struct remote *r = connect_to(srv);
    struct remote_box box;
    struct ms_error err;
    assert_int_equal(r->ops->select(r, "B", false, &box, &err), MS_OK);
    struct remote_msg *m = NULL;
    size_t n = 0;
    assert_int_equal(r->ops->fetch_meta_range(r, 1, 0, &m, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].size, mem_folder(srv, "B")->msgs[0].len);
    remote_msgs_free(m, n);
    remote_close(&r);
    mem_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_and_status),
        cmocka_unit_test(full_and_incremental_listings),
        cmocka_unit_test(bodies_stream_crlf),
        cmocka_unit_test(nth_body_fails),
        cmocka_unit_test(session_drops),
        cmocka_unit_test(append_with_and_without_appenduid),
        cmocka_unit_test(store_remove_copy_move_create),
        cmocka_unit_test(uidvalidity_changes_after_listing),
        cmocka_unit_test(uidvalidity_changes_mid_fetch),
        cmocka_unit_test(move_between_folders_and_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
