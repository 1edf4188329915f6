/* account.c: freeing a struct account (see account.h). */
#include "sync/account.h"

#include <stdlib.h>
#include <string.h>

#include "sync/util.h"

void account_free(struct account *a)
{
    if (!a)
        return;
    free(a->name);
    free(a->config_file);
    free(a->host);
    free(a->user);
    util_free_secret(a->password);
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
