/* SPDX-License-Identifier: MIT */
/* account.c: freeing a struct account, and the checks every side makes
 * before it connects (see account.h). */
#include "sync/account.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sync/error.h"
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
    free(a->post_sync_command);
    free(a->new_mail_command);
    memset(a, 0, sizeof *a);
}

/* A loopback host: a name for it or an address in 127/8 or ::1. */
static bool is_loopback(const char *host)
{
    char name[256];
    util_host_unbracket(host, name, sizeof name);
    if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, name, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, name, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

int account_check(const struct account *acct, const char *password, struct ms_error *err)
{
    if (!acct->host || !*acct->host || !acct->user)
        return ms_error_set(err, MS_EUSAGE, "account %s: host and user are required", acct->name ? acct->name : "?");
    if (acct->tls == TLS_NONE && !acct->allow_plaintext && !is_loopback(acct->host))
        return ms_error_set(err, MS_EUSAGE,
                            "account %s: tls = none is only allowed for a loopback host or with allow_plaintext = yes",
                            acct->name ? acct->name : "?");
    if (!password)
        return ms_error_set(err, MS_EUSAGE, "account %s: no password or token", acct->name ? acct->name : "?");
    return MS_OK;
}
