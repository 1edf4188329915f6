/* SPDX-License-Identifier: MIT */
/*
 * fuzz_import.c: libFuzzer target for cmd/import.c import_translate(), the
 * reader of other tools' config files (`mailsync import`). Byte 0 picks
 * the format (bit 0: OfflineIMAP) and whether passwords are written
 * (bit 1); the rest is the rc file. Properties:
 *  - the result is MS_OK with a text, or MS_EUSAGE with no text and a
 *    message naming the file ("rc:" or "rc: ...");
 *  - every line of the text is empty, a "# " comment, "[account NAME]" or
 *    "key = value" with a key config.c knows; without bit 1 there is no
 *    `password =` line;
 *  - config_load() reads the text, or refuses it only for what the rc did
 *    not say (a required key, a credential), for a $VAR of a command the
 *    environment does not set (mailsync expands it where the shell did):
 *    never for a value import wrote wrong.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/config.h"
#include "cmd/import.h"
#include "fuzz_util.h"

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(path, sizeof path, "/tmp/mailsync-fuzz-import.%ld", (long)getpid());
    setenv("HOME", "/home/fuzz", 1);
    unsetenv("XDG_STATE_HOME");
    return 0;
}

static bool known_key(const char *k, size_t n)
{
    static const char *const keys[] = {"type", "host", "port", "tls", "user", "password", "password_command",
                                       "auth", "oauth_token_command", "ca_file", "fingerprint", "maildir", "state",
                                       "folders", "layout", "mode", "expunge", "trash", "server_retention_days",
                                       "max_size", "connections", "leave_on_server", "allow_plaintext",
                                       "max_delete", "timeout", NULL};
    for (int i = 0; keys[i]; i++)
        if (strlen(keys[i]) == n && memcmp(keys[i], k, n) == 0)
            return true;
    return false;
}

static void check_lines(const char *text, bool secrets)
{
    const char *line = text;
    while (*line) {
        const char *nl = strchr(line, '\n');
        CHECK(nl, "the text does not end with a newline");
        size_t n = (size_t)(nl - line);
        if (n == 0 || (n >= 2 && line[0] == '#' && line[1] == ' ')) {
        } else if (line[0] == '[') {
            CHECK(n > 10 && memcmp(line, "[account ", 9) == 0 && line[n - 1] == ']', "bad header line");
        } else {
            const char *eq = memchr(line, '=', n);
            CHECK(eq && eq > line + 1 && eq[-1] == ' ' && eq[1] == ' ', "a line that is not key = value: %.*s",
                  (int)n, line);
            CHECK(known_key(line, (size_t)(eq - 1 - line)), "unknown key in: %.*s", (int)n, line);
            CHECK(secrets || strncmp(line, "password =", 10) != 0, "a password printed without --write");
        }
        for (size_t i = 0; i < n; i++)
            CHECK(line[i] != '\r' && line[i] != '\0', "a CR or NUL in the output");
        line = nl + 1;
    }
}

static void check_loads(const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "cannot create %s", path);
    size_t len = strlen(text);
    CHECK(write(fd, text, len) == (ssize_t)len, "write");
    close(fd);
    struct config c;
    struct ms_error err = {0};
    if (config_load(path, &c, &err) != MS_OK) {
        static const char *const allowed[] = {"(required)", "needs password_command or password",
                                              "an environment variable it names is not set", NULL};
        bool ok = false;
        for (int i = 0; allowed[i]; i++)
            ok = ok || strstr(err.msg, allowed[i]) != NULL;
        CHECK(ok, "config_load refused what import wrote: %s\n%s", err.msg, text);
    }
    config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    struct import_options o = {.format = data[0] & 1 ? IMPORT_OFFLINEIMAP : IMPORT_MBSYNC,
                               .with_secrets = (data[0] & 2) != 0,
                               .home = "/home/fuzz"};
    char *out = NULL;
    struct ms_error err = {0};
    int rc = import_translate("rc", (const char *)data + 1, size - 1, &o, &out, &err);
    if (rc != MS_OK) {
        CHECK(rc == MS_EUSAGE, "import_translate returned %d", rc);
        CHECK(out == NULL, "text after a failure");
        CHECK(strncmp(err.msg, "rc:", 3) == 0, "the message does not name the file: %s", err.msg);
        return 0;
    }
    CHECK(out != NULL, "no text");
    check_lines(out, o.with_secrets);
    check_loads(out);
    free(out);
    return 0;
}
