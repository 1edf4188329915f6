/* SPDX-License-Identifier: MIT */
/*
 * sasl.c: see sasl.h.
 */
#include "sync/remote/sasl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* malloc'd base64 of len bytes of data (no line breaks). */
static char *base64(const unsigned char *data, size_t len)
{
    size_t outlen = 4 * ((len + 2) / 3) + 1;
    char *out = malloc(outlen);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* Build the single client message of a mechanism, base64-encoded. */
char *sasl_message(enum auth_mech mech, const char *user, const char *secret, const char *host, int port)
{
    char *raw = NULL;
    int len = -1;
    switch (mech) {
    case AUTH_PLAIN: {
        /* authzid NUL authcid NUL passwd, with an empty authzid */
        size_t ul = strlen(user), pl = strlen(secret);
        raw = malloc(ul + pl + 2);
        if (!raw)
            return NULL;
        raw[0] = '\0';
        memcpy(raw + 1, user, ul);
        raw[1 + ul] = '\0';
        memcpy(raw + 2 + ul, secret, pl);
        len = (int)(ul + pl + 2);
        break;
    }
    case AUTH_XOAUTH2: len = asprintf(&raw, "user=%s\001auth=Bearer %s\001\001", user, secret); break;
    case AUTH_OAUTHBEARER:
        len = asprintf(&raw, "n,a=%s,\001host=%s\001port=%d\001auth=Bearer %s\001\001", user, host, port, secret);
        break;
    default: return NULL;
    }
    if (len < 0)
        return NULL;
    char *b64 = base64((unsigned char *)raw, (size_t)len);
    explicit_bzero(raw, (size_t)len);
    free(raw);
    return b64;
}

const char *sasl_mech_name(enum auth_mech m)
{
    switch (m) {
    case AUTH_PLAIN: return "PLAIN";
    case AUTH_XOAUTH2: return "XOAUTH2";
    case AUTH_OAUTHBEARER: return "OAUTHBEARER";
    default: return "LOGIN";
    }
}

const char *sasl_cancel(enum auth_mech mech)
{
    return mech == AUTH_XOAUTH2 ? "" : mech == AUTH_OAUTHBEARER ? "AQ==" : "*";
}
