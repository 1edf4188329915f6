/* account.c: freeing a struct account (see account.h). */
#include "sync/account.h"

#include <stdlib.h>
#include <string.h>

/* Free a string that may hold a secret: wipe it first so it does not
 * linger in freed heap memory (or a core dump). */
static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void account_free(struct account *a)
{
    if (!a)
        return;
    free(a->name);
    free(a->config_file);
    free(a->host);
    free(a->user);
    free_secret(a->password);
    free(a->password_command);
    free(a->oauth_token_command);
    free(a->ca_file);
    free(a->fingerprint);
    free(a->maildir);
    free(a->state_path);
    for (size_t i = 0; i < a->nfolders; i++)
        free(a->folders[i]);
    free(a->folders);
    free(a->trash);
    memset(a, 0, sizeof *a);
}
