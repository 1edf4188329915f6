/* SPDX-License-Identifier: MIT */
/* test_config.c: the INI config parser, its errors, and password commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/config.h"

static char tmpdir[64];
static char cfgpath[128];

static int setup(void **unused)
{
    (void)unused;
    strcpy(tmpdir, "/tmp/mailsync-test-config-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(cfgpath, sizeof cfgpath, "%s/config", tmpdir);
    setenv("HOME", "/home/tester", 1);
    unsetenv("XDG_STATE_HOME");
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("MAILSYNC_CONFIG");
    return 0;
}

static int teardown(void **unused)
{
    (void)unused;
    unlink(cfgpath);
    rmdir(tmpdir);
    return 0;
}

static void write_config(const char *text, mode_t mode)
{
    FILE *f = fopen(cfgpath, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(cfgpath, mode), 0);
}

/* Load text (mode 0600) and expect success. */
static void load_ok(const char *text, struct config *c)
{
    write_config(text, 0600);
    struct ms_error err = {0};
    int rc = config_load(cfgpath, c, &err);
    if (rc != MS_OK)
        fail_msg("config_load failed: %s", err.msg);
}

/* Load text and expect MS_EUSAGE with "FILE:LINE: KEY: " in the message
 * and, when given, the text want too. */
static void load_fails_mode(const char *text, mode_t mode, int line, const char *key,
                            const char *want)
{
    write_config(text, mode);
    struct config c;
    struct ms_error err = {0};
    int rc = config_load(cfgpath, &c, &err);
    if (rc == MS_OK)
        fail_msg("config loaded, wanted an error about %s on line %d:\n%s", key, line, text);
    assert_int_equal(rc, MS_EUSAGE);
    assert_int_equal(c.naccounts, 0);
    assert_null(c.accounts);
    char where[256];
    snprintf(where, sizeof where, "%s:%d: %s: ", cfgpath, line, key);
    if (strstr(err.msg, where) != err.msg)
        fail_msg("message \"%s\" does not start with \"%s\"", err.msg, where);
    if (want && !strstr(err.msg, want))
        fail_msg("message \"%s\" does not contain \"%s\"", err.msg, want);
    config_free(&c);
}

static void load_fails(const char *text, int line, const char *key, const char *want)
{
    load_fails_mode(text, 0600, line, key, want);
}

#define MINIMAL "[account a]\nhost = imap.example.org\nuser = me\npassword = secret\nmaildir = /m\n"

static void all_keys(void **unused)
{
    (void)unused;
    struct config c;
    load_ok("# a comment\n"
            "\n"
            "[account personal]\n"
            "  type = imap\n"
            "host = imap.example.org   # the host\n"
            "port = 1993\n"
            "tls = starttls\n"
            "user = me@example.org\n"
            "password_command = pass show mail/personal#1 # comment\n"
            "auth = plain\n"
            "ca_file = /etc/ssl/certs/ca-certificates.crt\n"
            "fingerprint = sha256:" "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
            "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\n"
            "maildir = /home/me/Mail\n"
            "state = /var/lib/ms/p.sqlite\n"
            "folders = * !Spam \"!Thư rác\" \"a #b\"  # comment\n"
            "layout = maildir++\n"
            "mode = backup\n"
            "expunge = no\n"
            "trash = Trash\n"
            "server_retention_days = 30\n"
            "max_size = 25M\n"
            "connections = 2\n"
            "leave_on_server = off\n"
            "allow_plaintext = TRUE\n"
            "max_delete = 20%\n"
            "timeout = 120\r\n"
            "[account old-isp.2]\n"
            "type = pop3\n"
            "host = pop.example.net\n"
            "user = me\n"
            "oauth_token_command = get-token\n"
            "auth = xoauth2\n"
            "maildir = /m2\n"
            "max_size = 1g\n"
            "max_delete = 0\n",
            &c);
    assert_int_equal(c.naccounts, 2);
    assert_string_equal(c.path, cfgpath);
    struct account *a = config_find(&c, "personal");
    assert_ptr_equal(a, &c.accounts[0]);
    assert_string_equal(a->name, "personal");
    assert_string_equal(a->config_file, cfgpath);
    assert_int_equal(a->config_line, 3);
    assert_int_equal(a->type, ACCOUNT_IMAP);
    assert_string_equal(a->host, "imap.example.org");
    assert_int_equal(a->port, 1993);
    assert_int_equal(a->tls, TLS_STARTTLS);
    assert_string_equal(a->user, "me@example.org");
    assert_null(a->password);
    assert_string_equal(a->password_command, "pass show mail/personal#1");
    assert_int_equal(a->auth, AUTH_PLAIN);
    assert_string_equal(a->ca_file, "/etc/ssl/certs/ca-certificates.crt");
    assert_non_null(strstr(a->fingerprint, "sha256:AB:CD"));
    assert_string_equal(a->maildir, "/home/me/Mail");
    assert_string_equal(a->state_path, "/var/lib/ms/p.sqlite");
    assert_int_equal(a->nfolders, 4);
    assert_string_equal(a->folders[0], "*");
    assert_string_equal(a->folders[1], "!Spam");
    assert_string_equal(a->folders[2], "!Thư rác");
    assert_string_equal(a->folders[3], "a #b");
    assert_int_equal(a->layout, LAYOUT_MAILDIRPP);
    assert_int_equal(a->mode, MODE_BACKUP);
    assert_false(a->expunge);
    assert_string_equal(a->trash, "Trash");
    assert_int_equal(a->server_retention_days, 30);
    assert_int_equal(a->max_size, 25u << 20);
    assert_int_equal(a->connections, 2);
    assert_false(a->leave_on_server);
    assert_true(a->allow_plaintext);
    assert_int_equal(a->max_delete, 20);
    assert_int_equal(a->timeout, 120);

    a = config_find(&c, "old-isp.2");
    assert_non_null(a);
    assert_int_equal(a->type, ACCOUNT_POP3);
    assert_int_equal(a->port, 995);
    assert_int_equal(a->auth, AUTH_XOAUTH2);
    assert_string_equal(a->oauth_token_command, "get-token");
    assert_int_equal(a->max_size, 1ull << 30);
    assert_int_equal(a->max_delete, 0);
    assert_null(config_find(&c, "nope"));
    config_free(&c);
    assert_int_equal(c.naccounts, 0);
}

static void defaults(void **unused)
{
    (void)unused;
    struct config c;
    load_ok(MINIMAL, &c);
    struct account *a = &c.accounts[0];
    assert_int_equal(a->type, ACCOUNT_IMAP);
    assert_int_equal(a->port, 993);
    assert_int_equal(a->tls, TLS_IMPLICIT);
    assert_false(a->allow_plaintext);
    assert_string_equal(a->password, "secret");
    assert_int_equal(a->auth, AUTH_AUTO);
    assert_null(a->ca_file);
    assert_null(a->fingerprint);
    assert_string_equal(a->state_path, "/home/tester/.local/state/mailsync/a.sqlite");
    assert_int_equal(a->nfolders, 1);
    assert_string_equal(a->folders[0], "*");
    assert_int_equal(a->layout, LAYOUT_VERBATIM);
    assert_int_equal(a->mode, MODE_MIRROR);
    assert_true(a->expunge);
    assert_null(a->trash);
    assert_int_equal(a->server_retention_days, 0);
    assert_int_equal(a->max_size, 0);
    assert_int_equal(a->connections, 1);
    assert_true(a->leave_on_server);
    assert_int_equal(a->max_delete, 50);
    assert_int_equal(a->timeout, 60);
    assert_true(a->compress);
    assert_true(a->early_login);
    assert_true(a->placeholders);
    config_free(&c);

    load_ok(MINIMAL "compress = no\n", &c);
    assert_false(c.accounts[0].compress);
    config_free(&c);

    load_ok(MINIMAL "early_login = no\n", &c);
    assert_false(c.accounts[0].early_login);
    assert_true(c.accounts[0].compress);
    config_free(&c);

    load_ok(MINIMAL "placeholders = no\n", &c);
    assert_false(c.accounts[0].placeholders);
    config_free(&c);

    setenv("XDG_STATE_HOME", "/xdg/state", 1);
    load_ok(MINIMAL "tls = starttls\n", &c);
    assert_int_equal(c.accounts[0].port, 143);
    assert_string_equal(c.accounts[0].state_path, "/xdg/state/mailsync/a.sqlite");
    config_free(&c);
    unsetenv("XDG_STATE_HOME");

    load_ok(MINIMAL "layout = dotted\n", &c); /* OfflineIMAP's default names */
    assert_int_equal(c.accounts[0].layout, LAYOUT_DOTTED);
    config_free(&c);

    load_ok(MINIMAL "type = pop3\n", &c);
    assert_int_equal(c.accounts[0].port, 995);
    config_free(&c);
    load_ok("[account p]\ntype = pop3\ntls = none\nhost = 127.0.0.1\nuser = u\n"
            "password = x\nmaildir = /m\n",
            &c);
    assert_int_equal(c.accounts[0].port, 110);
    config_free(&c);
}

static void expansion(void **unused)
{
    (void)unused;
    struct config c;
    setenv("MS_TEST_USER", "alice", 1);
    setenv("MS_TEST_DIR", "/srv/mail", 1);
    load_ok("[account a]\nhost = imap.example.org\nuser = $MS_TEST_USER@x\n"
            "password = pa$$word~$HOME\n"
            "maildir = ~/Mail/${MS_TEST_USER}x\n"
            "state = ${MS_TEST_DIR}/st$1\n"
            "folders = ~ $Junk\n"
            "trash = a~b$\n",
            &c);
    struct account *a = &c.accounts[0];
    assert_string_equal(a->user, "alice@x");
    assert_string_equal(a->password, "pa$$word~$HOME"); /* literal */
    assert_string_equal(a->maildir, "/home/tester/Mail/alicex");
    assert_string_equal(a->state_path, "/srv/mail/st$1");
    assert_string_equal(a->folders[0], "~"); /* literal */
    assert_string_equal(a->folders[1], "$Junk");
    assert_string_equal(a->trash, "a~b$");
    config_free(&c);

    load_ok(MINIMAL "ca_file = ~\n", &c);
    assert_string_equal(c.accounts[0].ca_file, "/home/tester");
    config_free(&c);

    unsetenv("MS_TEST_UNSET");
    load_fails(MINIMAL "ca_file = $MS_TEST_UNSET/x\n", 6, "ca_file", "$MS_TEST_UNSET is not set");
    load_fails(MINIMAL "ca_file = ${MS_TEST_UNSET}\n", 6, "ca_file", "MS_TEST_UNSET");
    load_fails(MINIMAL "ca_file = ${MS_TEST_USER\n", 6, "ca_file", NULL);
    load_fails(MINIMAL "ca_file = ${}\n", 6, "ca_file", NULL);
    setenv("MS_TEST_EMPTY", "", 1);
    load_fails(MINIMAL "trash = $MS_TEST_EMPTY\n", 6, "trash", "empty");
    /* "~user" is not expanded, and a relative path is refused. */
    load_fails(MINIMAL "ca_file = ~root/x\n", 6, "ca_file", "absolute");
}

static void errors(void **unused)
{
    (void)unused;
    load_fails("host = x\n", 1, "host", "outside");
    load_fails(MINIMAL "bogus = 1\n", 6, "bogus", "unknown key");
    load_fails(MINIMAL "host = again\n", 6, "host", "first on line 2");
    load_fails(MINIMAL MINIMAL, 6, "account", "already defined on line 1");
    load_fails("[account a b]\n", 1, "account", "not a valid account name");
    load_fails("[account .x]\n", 1, "account", NULL);
    load_fails("[account -x]\n", 1, "account", NULL);
    load_fails("[account x/y]\n", 1, "account", NULL);
    load_fails("[general]\n", 1, "section", "[account NAME]");
    load_fails("[account a\n", 1, "section", NULL);
    load_fails(MINIMAL "what\n", 6, "line", "key = value");
    load_fails(MINIMAL "trash =   # nothing\n", 6, "trash", "empty value");
    load_fails(MINIMAL "port = 0\n", 6, "port", "out of range");
    load_fails(MINIMAL "port = 65536\n", 6, "port", "out of range");
    load_fails(MINIMAL "port = 99999999999999999999\n", 6, "port", "out of range");
    load_fails(MINIMAL "port = 12x\n", 6, "port", "not a number");
    load_fails(MINIMAL "port = -1\n", 6, "port", "not a number");
    load_fails(MINIMAL "type = smtp\n", 6, "type", NULL);
    load_fails(MINIMAL "tls = ssl\n", 6, "tls", NULL);
    load_fails(MINIMAL "auth = cram-md5\n", 6, "auth", NULL);
    load_fails(MINIMAL "layout = mh\n", 6, "layout", NULL);
    load_fails(MINIMAL "mode = sync\n", 6, "mode", NULL);
    load_fails(MINIMAL "expunge = maybe\n", 6, "expunge", "yes or no");
    load_fails(MINIMAL "leave_on_server = 2\n", 6, "leave_on_server", NULL);
    load_fails(MINIMAL "compress = deflate\n", 6, "compress", "yes or no");
    load_fails(MINIMAL "early_login = later\n", 6, "early_login", "yes or no");
    load_fails(MINIMAL "max_size = 25T\n", 6, "max_size", NULL);
    load_fails(MINIMAL "max_size = M\n", 6, "max_size", NULL);
    load_fails(MINIMAL "max_size = 99999999999999999G\n", 6, "max_size", "too large");
    load_fails(MINIMAL "connections = 0\n", 6, "connections", NULL);
    load_fails(MINIMAL "max_delete = 101%\n", 6, "max_delete", NULL);
    load_fails(MINIMAL "max_delete = 50%%\n", 6, "max_delete", NULL);
    load_fails(MINIMAL "timeout = 0\n", 6, "timeout", NULL);
    load_fails(MINIMAL "server_retention_days = -3\n", 6, "server_retention_days", NULL);
    load_fails(MINIMAL "fingerprint = AB:CD\n", 6, "fingerprint", NULL);
    load_fails(MINIMAL "fingerprint = sha256:ABCD\n", 6, "fingerprint", NULL);
    load_fails(MINIMAL "folders = \"unterminated\n", 6, "folders", "quote");
    load_fails(MINIMAL "folders = * \"\"\n", 6, "folders", "empty");
    load_fails(MINIMAL "folders = * !\n", 6, "folders", "empty");
    load_fails(MINIMAL "maildir2 = /x\n", 6, "maildir2", "unknown");
    load_fails(MINIMAL "host = a b\n", 6, "host", NULL);
    load_fails(MINIMAL "maildir = Mail\n", 6, "maildir", NULL);
    /* Required keys: reported at the section line. */
    load_fails("# hi\n[account a]\nuser = me\npassword = x\nmaildir = /m\n", 2, "host", "required");
    load_fails("[account a]\nhost = h\npassword = x\nmaildir = /m\n", 1, "user", "required");
    load_fails("[account a]\nhost = h\nuser = u\npassword = x\n[account b]\n", 1, "maildir",
               "required");
    load_fails("[account a]\nhost = h\nuser = u\nmaildir = /m\n", 1, "password_command", NULL);
    load_fails(MINIMAL "password_command = x\n", 6, "password_command", "both");
    load_fails(MINIMAL "auth = xoauth2\n", 6, "auth", "oauth_token_command");
    load_fails(MINIMAL "oauth_token_command = t\n", 6, "oauth_token_command", "auth");
    /* Not an account at all. */
    write_config("# nothing\n", 0600);
    struct config c;
    struct ms_error err = {0};
    assert_int_equal(config_load(cfgpath, &c, &err), MS_EUSAGE);
    assert_non_null(strstr(err.msg, "no [account"));
    config_free(&c);
    /* A NUL byte. */
    FILE *f = fopen(cfgpath, "w");
    fwrite(MINIMAL "x\0y\n", 1, sizeof MINIMAL + 3, f);
    fclose(f);
    assert_int_equal(config_load(cfgpath, &c, &err), MS_EUSAGE);
    assert_non_null(strstr(err.msg, ":6: "));
    config_free(&c);
}

static void unreadable(void **unused)
{
    (void)unused;
    struct config c;
    struct ms_error err = {0};
    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing", tmpdir);
    assert_int_equal(config_load(missing, &c, &err), MS_EUSAGE);
    assert_non_null(strstr(err.msg, "cannot read"));
    assert_non_null(strstr(err.msg, missing));
    assert_int_equal(config_load(tmpdir, &c, &err), MS_EUSAGE); /* a directory */
    assert_non_null(strstr(err.msg, "cannot read"));
}

static void password_permissions(void **unused)
{
    (void)unused;
    load_fails_mode(MINIMAL, 0644, 4, "password", "chmod 600");
    load_fails_mode(MINIMAL, 0640, 4, "password", "chmod 600");
    load_fails_mode(MINIMAL, 0604, 4, "password", "chmod 600");
    /* Without a password in it, a readable file is fine. */
    write_config("[account a]\nhost = h\nuser = u\npassword_command = true\nmaildir = /m\n", 0644);
    struct config c;
    struct ms_error err = {0};
    assert_int_equal(config_load(cfgpath, &c, &err), MS_OK);
    config_free(&c);
}

/* Load text with mode and expect MS_EUSAGE at line with key, and that no
 * message text contains needle (a secret written into the config). */
static void fails_quietly(const char *text, mode_t mode, int line, const char *key,
                          const char *needle)
{
    load_fails_mode(text, mode, line, key, NULL);
    struct config c;
    struct ms_error err = {0};
    assert_int_equal(config_load(cfgpath, &c, &err), MS_EUSAGE);
    if (strstr(err.msg, needle))
        fail_msg("message \"%s\" repeats \"%s\" from:\n%s", err.msg, needle, text);
    for (size_t i = 0; i < c.nerrors; i++) /* nor any later error of the file */
        if (strstr(c.errors[i], needle))
            fail_msg("message \"%s\" repeats \"%s\" from:\n%s", c.errors[i], needle, text);
    config_free(&c);
}

#define SECRET "Zq7-hunter2-Xy"

/* No error repeats a value of password, password_command or
 * oauth_token_command, or the text of a line that could not be used. */
static void secrets_not_echoed(void **unused)
{
    (void)unused;
    /* Lines without '=': the key is named when it is one of ours. */
    fails_quietly(MINIMAL "password " SECRET "\n", 0600, 6, "password", SECRET);
    fails_quietly(MINIMAL "password: " SECRET "\n", 0600, 6, "password", SECRET);
    fails_quietly(MINIMAL "password\t" SECRET "\n", 0600, 6, "password", SECRET);
    fails_quietly(MINIMAL "password_command " SECRET "\n", 0600, 6, "password_command", SECRET);
    fails_quietly(MINIMAL SECRET "\n", 0600, 6, "line", SECRET);
    fails_quietly(MINIMAL "zqlowersecret\n", 0600, 6, "line", "zqlowersecret");
    fails_quietly("  " SECRET "  \n" MINIMAL, 0600, 1, "line", SECRET);
    /* Unknown keys: named only when shaped like a key; never the value. */
    fails_quietly(MINIMAL "passwd = " SECRET "\n", 0600, 6, "passwd", SECRET);
    fails_quietly(MINIMAL SECRET " = x\n", 0600, 6, "line", SECRET);
    fails_quietly(MINIMAL "my " SECRET " = x\n", 0600, 6, "line", SECRET);
    fails_quietly(MINIMAL "Zq7Hunter2 = x\n", 0600, 6, "line", "Zq7Hunter2");
    /* Duplicates, permissions and conflicts name the key only. */
    fails_quietly(MINIMAL "password = " SECRET "\n", 0600, 6, "password", SECRET);
    fails_quietly("[account a]\nhost = h\nuser = u\nmaildir = /m\npassword = " SECRET "\n", 0640,
                  5, "password", SECRET);
    fails_quietly("[account a]\nhost = h\nuser = u\nmaildir = /m\npassword = " SECRET
                  "\npassword_command = echo " SECRET "\n",
                  0600, 6, "password_command", SECRET);
    fails_quietly(MINIMAL "password_command = echo " SECRET "\npassword_command = echo " SECRET
                  "\n",
                  0600, 7, "password_command", SECRET);
    /* ~ and $VAR in the commands: neither the text nor a variable name. */
    unsetenv("ZQ7SECRETVAR");
    fails_quietly("[account a]\nhost = h\nuser = u\nmaildir = /m\n"
                  "password_command = echo " SECRET "$ZQ7SECRETVAR\n",
                  0600, 5, "password_command", "ZQ7SECRETVAR");
    fails_quietly("[account a]\nhost = h\nuser = u\nmaildir = /m\n"
                  "password_command = echo " SECRET "$ZQ7SECRETVAR\n",
                  0600, 5, "password_command", SECRET);
    fails_quietly("[account a]\nhost = h\nuser = u\nmaildir = /m\nauth = xoauth2\n"
                  "oauth_token_command = echo ${" SECRET "}\n",
                  0600, 6, "oauth_token_command", SECRET);
    setenv("ZQ7EMPTY", "", 1);
    fails_quietly("[account a]\nhost = h\nuser = u\nmaildir = /m\npassword_command = $ZQ7EMPTY\n",
                  0600, 5, "password_command", "ZQ7EMPTY");
    unsetenv("ZQ7EMPTY");
    /* Section headers gone wrong. */
    fails_quietly("[" SECRET "]\n", 0600, 1, "section", SECRET);
    fails_quietly("[account " SECRET "!]\n", 0600, 1, "account", SECRET);
    fails_quietly("[account a " SECRET "]\n", 0600, 1, "account", SECRET);
    fails_quietly("[" SECRET "\n", 0600, 1, "section", SECRET);
    fails_quietly("[account a] " SECRET "\n", 0600, 1, "section", SECRET);
    /* A line with a NUL byte. */
    FILE *f = fopen(cfgpath, "w");
    assert_non_null(f);
    fwrite(MINIMAL SECRET "\0\n", 1, sizeof MINIMAL - 1 + sizeof SECRET + 1, f);
    fclose(f);
    struct config c;
    struct ms_error err = {0};
    assert_int_equal(config_load(cfgpath, &c, &err), MS_EUSAGE);
    assert_null(strstr(err.msg, SECRET));
    config_free(&c);
}

/* A config file others can write, or that another user owns, is refused
 * whatever it holds (OpenSSH's rule for its config). */
static void untrusted_config(void **unused)
{
    (void)unused;
    const char *text = "[account a]\nhost = h\nuser = u\npassword_command = true\nmaildir = /m\n";
    const mode_t bad[] = {0620, 0602, 0666, 0660, 0622, 0646};
    struct config c;
    struct ms_error err = {0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_config(i % 2 ? MINIMAL : text, bad[i]);
        assert_int_equal(config_load(cfgpath, &c, &err), MS_EUSAGE);
        assert_non_null(strstr(err.msg, "writable by group or others"));
        assert_non_null(strstr(err.msg, "chmod go-w"));
        assert_non_null(strstr(err.msg, cfgpath));
        assert_int_equal(c.naccounts, 0);
        config_free(&c);
    }
    write_config(text, 0644);
    assert_int_equal(config_load(cfgpath, &c, &err), MS_OK);
    config_free(&c);
    /* Owned by another user (only root can make such a file here). */
    if (geteuid() == 0) {
        write_config(text, 0600);
        assert_int_equal(chown(cfgpath, 65534, (gid_t)-1), 0);
        assert_int_equal(config_load(cfgpath, &c, &err), MS_EUSAGE);
        assert_non_null(strstr(err.msg, "another user"));
        config_free(&c);
        assert_int_equal(chown(cfgpath, getuid(), (gid_t)-1), 0);
    }
}

/* config_check_state_dir on state = DIR/sub/s.sqlite, DIR and sub made
 * with the given modes (sub_mode 0: sub is not created). */
static int state_dir_rc(mode_t dir_mode, mode_t sub_mode, struct ms_error *err)
{
    char dir[128], sub[160], path[200];
    snprintf(dir, sizeof dir, "%s/d", tmpdir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(path, sizeof path, "%s/s.sqlite", sub);
    assert_int_equal(mkdir(dir, 0700), 0);
    if (sub_mode) {
        assert_int_equal(mkdir(sub, 0700), 0);
        assert_int_equal(chmod(sub, sub_mode), 0);
    }
    assert_int_equal(chmod(dir, dir_mode), 0);
    struct account a;
    memset(&a, 0, sizeof a);
    a.name = "acc";
    a.state_path = path;
    int rc = config_check_state_dir(&a, err);
    if (sub_mode)
        rmdir(sub);
    rmdir(dir);
    return rc;
}

static void state_dir_permissions(void **unused)
{
    (void)unused;
    struct ms_error err = {0};
    assert_int_equal(state_dir_rc(0700, 0700, &err), MS_OK);
    assert_int_equal(state_dir_rc(0755, 0755, &err), MS_OK);
    const mode_t bad[] = {0777, 0770, 0707, 0720, 01777};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(state_dir_rc(0700, bad[i], &err), MS_EUSAGE);
        assert_non_null(strstr(err.msg, "account acc"));
        assert_non_null(strstr(err.msg, "/d/sub"));
        assert_non_null(strstr(err.msg, "chmod go-w"));
    }
    /* Not there yet: the run creates it (0700) in the nearest existing
     * directory, which may be shared only with the sticky bit. */
    assert_int_equal(state_dir_rc(0700, 0, &err), MS_OK);
    assert_int_equal(state_dir_rc(01777, 0, &err), MS_OK);
    assert_int_equal(state_dir_rc(0777, 0, &err), MS_EUSAGE);
    assert_non_null(strstr(err.msg, "/d "));
    assert_int_equal(state_dir_rc(0770, 0, &err), MS_EUSAGE);
    /* The root directory, and a path whose first component is missing. */
    struct account a;
    memset(&a, 0, sizeof a);
    a.name = "acc";
    a.state_path = "/s.sqlite";
    assert_int_equal(config_check_state_dir(&a, &err), MS_OK);
    a.state_path = "/no-such-dir-mailsync-test/x/s.sqlite";
    assert_int_equal(config_check_state_dir(&a, &err), MS_OK);
    /* Owned by another user. */
    if (geteuid() == 0) {
        char dir[128], path[160];
        snprintf(dir, sizeof dir, "%s/other", tmpdir);
        snprintf(path, sizeof path, "%s/s.sqlite", dir);
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_int_equal(chown(dir, 65534, (gid_t)-1), 0);
        a.state_path = path;
        assert_int_equal(config_check_state_dir(&a, &err), MS_EUSAGE);
        assert_non_null(strstr(err.msg, "another user"));
        rmdir(dir);
    }
}

static void plaintext_rules(void **unused)
{
    (void)unused;
    const char *ok_hosts[] = {"localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1",
                              "[::1]", "::ffff:127.0.0.1"};
    char text[512];
    for (size_t i = 0; i < sizeof ok_hosts / sizeof *ok_hosts; i++) {
        struct config c;
        snprintf(text, sizeof text,
                 "[account a]\nhost = %s\nuser = u\npassword = p\nmaildir = /m\ntls = none\n",
                 ok_hosts[i]);
        load_ok(text, &c);
        assert_int_equal(c.accounts[0].tls, TLS_NONE);
        assert_int_equal(c.accounts[0].port, 143);
        config_free(&c);
    }
    const char *bad_hosts[] = {"imap.example.org", "128.0.0.1", "10.0.0.1", "::2",
                               "localhost.example.org", "127.0.0.1.example.org"};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof *bad_hosts; i++) {
        snprintf(text, sizeof text,
                 "[account a]\nhost = %s\nuser = u\npassword = p\ntls = none\nmaildir = /m\n",
                 bad_hosts[i]);
        load_fails(text, 5, "tls", "allow_plaintext");
    }
    struct config c;
    load_ok("[account a]\nhost = imap.example.org\nuser = u\npassword = p\ntls = none\n"
            "allow_plaintext = yes\nmaildir = /m\n",
            &c);
    assert_int_equal(c.accounts[0].tls, TLS_NONE);
    config_free(&c);
}

static void password_command(void **unused)
{
    (void)unused;
    struct config c;
    load_ok("[account a]\nhost = h\nuser = u\nmaildir = /m\n"
            "password_command = printf 'first line\\r\\nsecond\\n'; echo noise >&2\n"
            "[account b]\nhost = h\nuser = u\nmaildir = /m\npassword_command = exit 3\n"
            "[account c]\nhost = h\nuser = u\nmaildir = /m\npassword_command = echo\n"
            "[account d]\nhost = h\nuser = u\nmaildir = /m\npassword = literal\n"
            "[account e]\nhost = h\nuser = u\nmaildir = /m\n"
            "password_command = cat; printf 'stdin was empty'\n"
            "[account f]\nhost = h\nuser = u\nmaildir = /m\n"
            "password_command = head -c 200000 /dev/zero | tr '\\0' x\n"
            "[account g]\nhost = h\nuser = u\nmaildir = /m\n"
            "auth = oauthbearer\noauth_token_command = echo tok\n",
            &c);
    char *pw = NULL;
    struct ms_error err = {0};
    assert_int_equal(config_password(config_find(&c, "a"), -1, &pw, &err), MS_OK);
    assert_string_equal(pw, "first line");
    free(pw);
    assert_int_equal(config_password(config_find(&c, "b"), -1, &pw, &err), MS_EUSAGE);
    assert_null(pw);
    assert_non_null(strstr(err.msg, "exit status 3"));
    assert_non_null(strstr(err.msg, "account b"));
    assert_int_equal(config_password(config_find(&c, "c"), -1, &pw, &err), MS_EUSAGE);
    assert_non_null(strstr(err.msg, "nothing"));
    assert_int_equal(config_password(config_find(&c, "d"), -1, &pw, &err), MS_OK);
    assert_string_equal(pw, "literal");
    free(pw);
    assert_int_equal(config_password(config_find(&c, "e"), -1, &pw, &err), MS_OK);
    assert_string_equal(pw, "stdin was empty");
    free(pw);
    /* Output beyond the cap is drained, not a hang; the line is kept. */
    assert_int_equal(config_password(config_find(&c, "f"), -1, &pw, &err), MS_OK);
    assert_true(strlen(pw) > 1000);
    free(pw);
    assert_int_equal(config_oauth_token(config_find(&c, "g"), -1, &pw, &err), MS_OK);
    assert_string_equal(pw, "tok");
    free(pw);
    assert_int_equal(config_oauth_token(config_find(&c, "a"), -1, &pw, &err), MS_EUSAGE);
    config_free(&c);
}

/* Load text (0600), expect failure, and return the errors (the caller
 * frees c). */
static void load_errors(const char *text, struct config *c, struct ms_error *err)
{
    write_config(text, 0600);
    assert_int_equal(config_load(cfgpath, c, err), MS_EUSAGE);
    assert_int_equal(c->naccounts, 0);
}

/* errors[i] is "FILE:LINE: KEY: ..." and holds want. */
static void error_is(const struct config *c, size_t i, int line, const char *key, const char *want)
{
    char where[256];
    snprintf(where, sizeof where, "%s:%d: %s: ", cfgpath, line, key);
    assert_true(i < c->nerrors);
    if (strstr(c->errors[i], where) != c->errors[i])
        fail_msg("error %zu \"%s\" does not start with \"%s\"", i, c->errors[i], where);
    if (want && !strstr(c->errors[i], want))
        fail_msg("error %zu \"%s\" does not contain \"%s\"", i, c->errors[i], want);
}

/* Every bad line of the file is reported in one go, in line order, each
 * once: a bad value is not also "missing", a key under a bad header is
 * not "outside a section". */
static void all_errors_at_once(void **unused)
{
    (void)unused;
    struct config c;
    struct ms_error err = {0};
    load_errors("[account a]\n"          /* 1 */
                "hots = imap.example.org\n" /* 2: unknown, close to host */
                "port = 99999\n"         /* 3: out of range */
                "user = me\n"
                "password_command = pass x\n"
                "maildir = Mail\n"       /* 6: not absolute; not also "missing" */
                "tls = sometimes\n"      /* 7 */
                "[account b]\n"          /* 8: a's missing host is reported here */
                "host = h\nuser = u\npassword = p\nmaildir = /m\n"
                "folder = INBOX\n"       /* 13: did you mean folders */
                "[acount c]\n"           /* 14: did you mean [account c] */
                "host = h\nfoo = bar\n"  /* 16: unknown, nothing near */
                "[account d]\nhost = h\nuser = u\npassword = p\nmaildir = /m\n"
                "timeout = soon\n",      /* 22 */
                &c, &err);
    assert_int_equal(c.nerrors, 9);
    error_is(&c, 0, 1, "host", "missing in [account a]"); /* found at its end, in line order */
    error_is(&c, 1, 2, "hots", "did you mean host?");
    error_is(&c, 2, 3, "port", "out of range");
    error_is(&c, 3, 6, "maildir", "absolute");
    error_is(&c, 4, 7, "tls", "sometimes");
    error_is(&c, 5, 13, "folder", "did you mean folders?");
    error_is(&c, 6, 14, "section", "did you mean [account c]?");
    error_is(&c, 7, 16, "foo", "mailsync.conf(5)");
    assert_null(strstr(c.errors[7], "did you mean"));
    error_is(&c, 8, 22, "timeout", "not a number");
    assert_string_equal(err.msg, c.errors[1]); /* err: the first found */
    /* The same errors in parts (--json), sorted along with the text. */
    static const struct {
        int line;
        const char *key, *suggestion;
    } parts[] = {{1, "host", NULL},         {2, "hots", "host"}, {3, "port", NULL},
                 {6, "maildir", NULL},      {7, "tls", NULL},    {13, "folder", "folders"},
                 {14, NULL, "[account c]"}, {16, "foo", NULL},   {22, "timeout", NULL}};
    for (size_t i = 0; i < 9; i++) {
        const struct config_error *e = &c.error_info[i];
        assert_int_equal(e->line, parts[i].line);
        if (parts[i].key)
            assert_string_equal(e->key, parts[i].key);
        else
            assert_null(e->key);
        if (parts[i].suggestion)
            assert_string_equal(e->suggestion, parts[i].suggestion);
        else
            assert_null(e->suggestion);
        /* the text ends with the message */
        size_t tl = strlen(c.errors[i]), ml = strlen(e->message);
        assert_true(tl > ml && strcmp(c.errors[i] + tl - ml, e->message) == 0);
    }
    config_free(&c);
    /* Keys before any section: said once. */
    load_errors("host = h\nuser = u\n" MINIMAL "pasword = x\n", &c, &err);
    assert_int_equal(c.nerrors, 2);
    error_is(&c, 0, 1, "host", "outside an [account NAME] section");
    error_is(&c, 1, 8, "pasword", "did you mean password?");
    config_free(&c);
    /* A bad value for a key a cross-key rule reads: only the value. */
    load_errors(MINIMAL "auth = oauth\n", &c, &err);
    assert_int_equal(c.nerrors, 1);
    error_is(&c, 0, 6, "auth", "not login");
    config_free(&c);
    /* A file that is no config at all: 20 shown, all counted. */
    char big[4096] = "";
    for (int i = 0; i < 30; i++)
        strcat(big, "[account a b]\n");
    load_errors(big, &c, &err);
    assert_int_equal(c.nerrors, 20);
    assert_int_equal(c.nerrors_total, 30);
    config_free(&c);
}

static void suggestions(void **unused)
{
    (void)unused;
    static const char *const accounts[] = {"work", "home", "old-isp"};
    assert_string_equal(config_suggest("wrok", accounts, 3), "work");
    assert_string_equal(config_suggest("Home", accounts, 3), "home");
    assert_string_equal(config_suggest("oldisp", accounts, 3), "old-isp");
    assert_null(config_suggest("personal", accounts, 3));
    assert_null(config_suggest("w", accounts, 3));
    assert_null(config_suggest("", accounts, 3));
    static const char *const commands[] = {"pull", "push", "sync", "status"};
    assert_string_equal(config_suggest("pul", commands, 4), "pull");
    assert_string_equal(config_suggest("stauts", commands, 4), "status");
}

static void default_path(void **unused)
{
    (void)unused;
    char *p = config_default_path();
    assert_string_equal(p, "/home/tester/.config/mailsync/config");
    free(p);
    setenv("XDG_CONFIG_HOME", "/xdg/config", 1);
    p = config_default_path();
    assert_string_equal(p, "/xdg/config/mailsync/config");
    free(p);
    setenv("MAILSYNC_CONFIG", "/etc/ms.conf", 1);
    p = config_default_path();
    assert_string_equal(p, "/etc/ms.conf");
    free(p);
    unsetenv("MAILSYNC_CONFIG");
    unsetenv("XDG_CONFIG_HOME");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(all_keys),
        cmocka_unit_test(defaults),
        cmocka_unit_test(expansion),
        cmocka_unit_test(errors),
        cmocka_unit_test(unreadable),
        cmocka_unit_test(password_permissions),
        cmocka_unit_test(secrets_not_echoed),
        cmocka_unit_test(untrusted_config),
        cmocka_unit_test(state_dir_permissions),
        cmocka_unit_test(plaintext_rules),
        cmocka_unit_test(password_command),
        cmocka_unit_test(default_path),
        cmocka_unit_test(all_errors_at_once),
        cmocka_unit_test(suggestions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
