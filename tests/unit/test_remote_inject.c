/* SPDX-License-Identifier: MIT */
/* test_remote_inject.c: the engine reaches the server only through the side
 * engine_options.connect_remote gives it (remote.h): `check` and `folders`
 * against a stub side, with no server and no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "sync/engine/engine.h"
#include "sync/remote/remote.h"

struct stub {
    struct remote base;
    int closed;
};

static int stub_connects, stub_closes;

static unsigned stub_caps(struct remote *r)
{
    (void)r;
    return REMOTE_FOLDERS;
}

static const char *stub_tls(struct remote *r)
{
    (void)r;
    return "stub TLS";
}

static const char *stub_capabilities(struct remote *r)
{
    (void)r;
    return "STUB1 STUB2";
}

static int stub_list(struct remote *r, const char *const *names, size_t n, struct remote_status *st,
                     struct remote_folder **out, size_t *nout, struct ms_error *err)
{
    (void)r, (void)names, (void)n, (void)st, (void)err;
    static const char *const raw[] = {"INBOX", "Archive", "Archive.2024"};
    struct remote_folder *f = calloc(3, sizeof *f);
    for (size_t i = 0; i < 3; i++)
        f[i] = (struct remote_folder){.name = strdup(raw[i]), .delim = '.', .noselect = false, .roles = 0};
    *out = f;
    *nout = 3;
    return MS_OK;
}

static void stub_logout_start(struct remote *r)
{
    (void)r;
}

static void stub_close(struct remote *r)
{
    stub_closes++;
    free(r);
}

static const struct remote_ops stub_ops = {
    .name = "stub",
    .caps = stub_caps,
    .tls_info = stub_tls,
    .capabilities = stub_capabilities,
    .list = stub_list,
    .logout_start = stub_logout_start,
    .close = stub_close,
};

static int stub_connect(const struct account *a, const char *password, struct remote **out, struct ms_error *err)
{
    (void)password, (void)err;
    struct stub *s = calloc(1, sizeof *s);
    s->base = (struct remote){.ops = &stub_ops, .acct = a};
    stub_connects++;
    *out = &s->base;
    return MS_OK;
}

/* A host nothing listens on: only the stub can answer. */
static struct account stub_account(void)
{
    static char *all[] = {"*"};
    return (struct account){.name = "stub",
                            .host = "192.0.2.1",
                            .port = 1,
                            .user = "u",
                            .maildir = "/nonexistent",
                            .state_path = "/nonexistent/stub.sqlite",
                            .folders = all,
                            .nfolders = 1,
                            .connections = 1,
                            .max_delete = 50,
                            .timeout = 1};
}

static void check_uses_the_injected_side(void **unused)
{
    (void)unused;
    struct account a = stub_account();
    struct engine_options opt = {.connect_remote = stub_connect};
    struct engine_check c;
    struct ms_error err = {0};
    stub_connects = stub_closes = 0;
    assert_int_equal(engine_check(&a, &opt, &c, &err), MS_OK);
    assert_string_equal(c.tls, "stub TLS");
    assert_string_equal(c.capabilities, "STUB1 STUB2");
    assert_int_equal(c.nfolders, 3);
    assert_int_equal(stub_connects, 1);
    assert_int_equal(stub_closes, 1);
    engine_check_free(&c);
}

static void folders_map_the_sides_listing(void **unused)
{
    (void)unused;
    struct account a = stub_account();
    struct engine_options opt = {.connect_remote = stub_connect};
    struct engine_folder_map *f = NULL;
    size_t n = 0;
    struct ms_error err = {0};
    stub_closes = 0;
    assert_int_equal(engine_folders(&a, &opt, &f, &n, &err), MS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(f[2].raw, "Archive.2024");
    assert_string_equal(f[2].name, "Archive/2024"); /* the side's delimiter */
    assert_true(f[0].selected);
    assert_int_equal(stub_closes, 1);
    engine_folders_free(f, n);
}

static void frees_take_ids_and_keywords(void **unused)
{
    (void)unused;
    struct remote_msg *m = calloc(2, sizeof *m);
    m[0] = (struct remote_msg){
        .uid = 1, .flags = 0, .keywords = strdup("$Junk"), .size = 3, .internaldate = 0, .id = strdup("uidl-1")};
    struct remote_listing l = {.kind = REMOTE_LIST_VANISHED, .msgs = m, .nmsgs = 2, .uids = calloc(1, 4), .nuids = 1};
    remote_listing_free(&l); /* ASan builds: no leak */
    assert_null(l.msgs);
    assert_int_equal(l.nuids, 0);
    remote_msgs_free(NULL, 0);
    remote_folders_free(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_uses_the_injected_side),
        cmocka_unit_test(folders_map_the_sides_listing),
        cmocka_unit_test(frees_take_ids_and_keywords),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
