/* SPDX-License-Identifier: MIT */
/*
 * tls.c: OpenSSL client context, handshake with a deadline, and the
 * certificate checks of tls.h (chain + host name, or a SHA-256 pin).
 *
 * Verification happens inside the handshake (SSL_VERIFY_PEER with the
 * expected host or IP set on the SSL object), so nothing is read from or
 * written to the server as application data before it passed. With a pin
 * the chain is not checked (SSL_VERIFY_NONE) and the leaf certificate's
 * digest is compared right after the handshake, still before any IMAP
 * byte is exchanged.
 */
#include "sync/net/tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "sync/util.h"

struct tls_client {
    SSL_CTX *ctx;
    bool pinned;
    unsigned char pin[32];
};

/* ---- fingerprints ---------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int tls_parse_fingerprint(const char *text, unsigned char md[32])
{
    if (!text)
        return -1;
    while (*text == ' ' || *text == '\t')
        text++;
    if (strncasecmp(text, "sha256:", 7) == 0)
        text += 7;
    size_t n = 0;
    const char *p = text;
    while (*p) {
        if (*p == ':' || *p == ' ' || *p == '\t') {
            p++;
            continue;
        }
        int hi = hexval((unsigned char)p[0]);
        int lo = p[1] ? hexval((unsigned char)p[1]) : -1;
        if (hi < 0 || lo < 0 || n >= 32)
            return -1;
        md[n++] = (unsigned char)(hi << 4 | lo);
        p += 2;
    }
    return n == 32 ? 0 : -1;
}

void tls_format_fingerprint(const unsigned char md[32], char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    if (outlen == 0)
        return;
    size_t o = 0;
    const char *prefix = "sha256:";
    for (const char *q = prefix; *q && o + 1 < outlen; q++)
        out[o++] = *q;
    for (size_t i = 0; i < 32 && o + 3 < outlen; i++) {
        if (i)
            out[o++] = ':';
        out[o++] = hex[md[i] >> 4];
        out[o++] = hex[md[i] & 15];
    }
    out[o] = '\0';
}

static int cert_digest(X509 *cert, unsigned char md[32])
{
    unsigned int len = 0;
    if (!X509_digest(cert, EVP_sha256(), md, &len) || len != 32)
        return -1;
    return 0;
}

/* ---- context --------------------------------------------------------- */

static const char *openssl_reason(void)
{
    static char buf[256];
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof buf);
    const char *r = ERR_reason_error_string(e);
    return r ? r : buf;
}

/* Whether dir holds OpenSSL's subject-hash links ("1a2b3c4d.0"), which
 * the directory lookup needs. */
static bool has_hash_links(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        const char *n = e->d_name;
        size_t len = strlen(n), i = 0;
        while (i < 8 && isxdigit((unsigned char)n[i]))
            i++;
        found = i == 8 && len >= 10 && n[8] == '.' && isdigit((unsigned char)n[9]);
    }
    closedir(d);
    return found;
}

/* The system trust store, cheaply. SSL_CTX_set_default_verify_paths()
 * parses the whole CA bundle at once (Debian's: about 140 certificates,
 * 20-25 ms of CPU on every run); the hashed directory (/etc/ssl/certs and
 * its c_rehash links) is read lazily, only the issuers a chain needs. So
 * the directory alone is used when it has hash links and SSL_CERT_FILE
 * does not name a bundle to use instead; otherwise OpenSSL's defaults. */
static int load_system_ca(SSL_CTX *ctx, struct ms_error *err)
{
    const char *dir = getenv(X509_get_default_cert_dir_env());
    if (!dir || !*dir)
        dir = X509_get_default_cert_dir();
    bool lazy = !getenv(X509_get_default_cert_file_env()) && !strchr(dir, ':') && has_hash_links(dir);
    ERR_clear_error();
    if (lazy && SSL_CTX_load_verify_locations(ctx, NULL, dir) == 1)
        return MS_OK;
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        return ms_error_set(err, MS_EUSAGE, "cannot load the system certificate store: %s", openssl_reason());
    return MS_OK;
}

static int load_ca(SSL_CTX *ctx, const char *ca_file, struct ms_error *err)
{
    if (!ca_file)
        return load_system_ca(ctx, err);
    struct stat st;
    if (stat(ca_file, &st) != 0)
        return ms_error_errno(err, MS_EUSAGE, errno, "cannot read ca_file %s", ca_file);
    bool dir = S_ISDIR(st.st_mode);
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx, dir ? NULL : ca_file, dir ? ca_file : NULL) != 1)
        return ms_error_set(err, MS_EUSAGE, "ca_file %s holds no usable certificate: %s", ca_file, openssl_reason());
    return MS_OK;
}

int tls_client_new(const char *ca_file, const char *fingerprint, struct tls_client **out, struct ms_error *err)
{
    *out = NULL;
    struct tls_client *c = calloc(1, sizeof *c);
    if (!c)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    if (fingerprint && *fingerprint) {
        if (tls_parse_fingerprint(fingerprint, c->pin) != 0) {
            free(c);
            return ms_error_set(err, MS_EUSAGE,
                                "fingerprint must be sha256: followed by 32 hex bytes, e.g. sha256:AB:CD:...");
        }
        c->pinned = true;
    }
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx) {
        free(c);
        return ms_error_set(err, MS_ELOCAL, "cannot create a TLS context: %s", openssl_reason());
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(c->ctx, 1);
    SSL_CTX_set_default_read_buffer_len(c->ctx, 65536);
    if (c->pinned) {
        /* The pin replaces the chain: a self-signed certificate is fine. */
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    } else {
        int rc = load_ca(c->ctx, ca_file, err);
        if (rc != MS_OK) {
            tls_client_free(c);
            return rc;
        }
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    }
    *out = c;
    return MS_OK;
}

void tls_client_free(struct tls_client *c)
{
    if (!c)
        return;
    SSL_CTX_free(c->ctx);
    explicit_bzero(c->pin, sizeof c->pin);
    free(c);
}

/* ---- handshake ------------------------------------------------------- */

static long remaining_ms(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (long)(deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms;
}

/* 1: fd ready; 0: deadline passed; -1: cancelled or poll failed. */
static int wait_until(int fd, short events, int cancel_fd, const struct timespec *deadline)
{
    for (;;) {
        long ms = remaining_ms(deadline);
        if (ms == 0)
            return 0;
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
        int r = poll(p, cancel_fd >= 0 ? 2 : 1, ms > 60000 ? 60000 : (int)ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (cancel_fd >= 0 && (p[1].revents & POLLIN))
            return -1;
        if (r > 0 && p[0].revents)
            return 1;
    }
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Append s to out (at o), replacing anything not printable ASCII. */
static size_t append_clean(char *out, size_t outlen, size_t o, const char *s, size_t len)
{
    for (size_t i = 0; i < len && o + 1 < outlen; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    out[o] = '\0';
    return o;
}

/* "DNS:a.example, IP:127.0.0.1" or "CN=name": what the certificate names. */
static void cert_names(X509 *cert, char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int n = sans ? sk_GENERAL_NAME_num(sans) : 0;
    for (int i = 0; i < n && i < 8; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        char ipbuf[INET6_ADDRSTRLEN] = "";
        const char *label = NULL, *val = NULL;
        size_t vlen = 0;
        if (g->type == GEN_DNS) {
            label = "DNS:";
            val = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
            vlen = (size_t)ASN1_STRING_length(g->d.dNSName);
        } else if (g->type == GEN_IPADD) {
            int alen = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
            if (alen == 4 || alen == 16)
                inet_ntop(alen == 4 ? AF_INET : AF_INET6, a, ipbuf, sizeof ipbuf);
            label = "IP:";
            val = ipbuf;
            vlen = strlen(ipbuf);
        }
        if (!label)
            continue;
        if (o)
            o = append_clean(out, outlen, o, ", ", 2);
        o = append_clean(out, outlen, o, label, strlen(label));
        o = append_clean(out, outlen, o, val, vlen > 100 ? 100 : vlen);
    }
    if (sans)
        GENERAL_NAMES_free(sans);
    if (o == 0) {
        char cn[256];
        int len = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
        o = append_clean(out, outlen, 0, "CN=", 3);
        if (len > 0)
            append_clean(out, outlen, o, cn, (size_t)len);
    }
}

static X509 *peer_leaf(SSL *ssl)
{
    /* The chain is kept even when verification failed; the leaf is first. */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    if (chain && sk_X509_num(chain) > 0)
        return sk_X509_value(chain, 0);
    return SSL_get0_peer_certificate(ssl);
}

static int verify_failure(SSL *ssl, long code, const char *host, struct ms_error *err)
{
    X509 *leaf = peer_leaf(ssl);
    char fp[110] = "";
    unsigned char md[32];
    if (leaf && cert_digest(leaf, md) == 0)
        tls_format_fingerprint(md, fp, sizeof fp);
    char why[400];
    switch (code) {
    case X509_V_ERR_CERT_HAS_EXPIRED: snprintf(why, sizeof why, "certificate has expired"); break;
    case X509_V_ERR_CERT_NOT_YET_VALID: snprintf(why, sizeof why, "certificate is not yet valid"); break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH: {
        char names[200] = "?";
        if (leaf)
            cert_names(leaf, names, sizeof names);
        snprintf(why, sizeof why, "certificate is for another host (wanted %s; it names %s)", host, names);
        break;
    }
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        snprintf(why, sizeof why, "unknown issuer / self-signed (check ca_file, or pin the certificate)");
        break;
    default: snprintf(why, sizeof why, "%s", X509_verify_cert_error_string(code)); break;
    }
    return ms_error_set(err, MS_ENET, "TLS certificate of %s rejected: %s%s%s", host, why,
                        fp[0] ? "; server certificate " : "", fp);
}

static int handshake_failure(SSL *ssl, int ssl_err, int ret, int saved_errno, bool pinned, const char *host,
                             struct ms_error *err)
{
    long vr = SSL_get_verify_result(ssl);
    if (!pinned && vr != X509_V_OK)
        return verify_failure(ssl, vr, host, err);
    if (ssl_err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        if (ret == 0 || saved_errno == 0)
            return ms_error_set(err, MS_ENET, "TLS handshake with %s failed: connection closed by the server", host);
        return ms_error_errno(err, MS_ENET, saved_errno, "TLS handshake with %s failed", host);
    }
    const char *reason = openssl_reason();
    const char *hint = strstr(reason, "wrong version number") || strstr(reason, "packet length too long")
                           ? " (the server does not speak TLS on this port; try tls = starttls?)"
                           : "";
    return ms_error_set(err, MS_ENET, "TLS handshake with %s failed: %s%s", host, reason, hint);
}

static int check_pin(struct tls_client *c, SSL *ssl, const char *host, struct ms_error *err)
{
    X509 *leaf = peer_leaf(ssl);
    unsigned char md[32];
    if (!leaf || cert_digest(leaf, md) != 0)
        return ms_error_set(err, MS_ENET, "TLS: %s sent no certificate to compare with the fingerprint", host);
    if (CRYPTO_memcmp(md, c->pin, sizeof md) != 0) {
        char got[110], want[110];
        tls_format_fingerprint(md, got, sizeof got);
        tls_format_fingerprint(c->pin, want, sizeof want);
        return ms_error_set(err, MS_ENET, "TLS certificate of %s rejected: fingerprint mismatch: got %s, expected %s",
                            host, got, want);
    }
    return MS_OK;
}

static int setup_ssl(struct tls_client *c, SSL *ssl, int fd, const char *name)
{
    if (SSL_set_fd(ssl, fd) != 1)
        return -1;
    bool ip = is_ip_literal(name);
    if (!c->pinned) {
        X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(p, name) : X509_VERIFY_PARAM_set1_host(p, name, 0);
        if (ok != 1)
            return -1;
    }
    /* RFC 6066: SNI carries host names only, never address literals. */
    if (!ip && SSL_set_tlsext_host_name(ssl, name) != 1)
        return -1;
    return 0;
}

int tls_handshake(struct tls_client *c, int fd, const char *host, int timeout_s, int cancel_fd, SSL **out,
                  struct ms_error *err)
{
    *out = NULL;
    char name[256];
    util_host_unbracket(host, name, sizeof name);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);

    ERR_clear_error();
    SSL *ssl = SSL_new(c->ctx);
    if (!ssl)
        return ms_error_set(err, MS_ELOCAL, "cannot create a TLS session: %s", openssl_reason());
    if (setup_ssl(c, ssl, fd, name) != 0) {
        SSL_free(ssl);
        return ms_error_set(err, MS_ENET, "cannot set up TLS for %s: %s", name, openssl_reason());
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_s > 0 ? timeout_s : 60;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(ssl);
        if (r == 1)
            break;
        int saved_errno = errno;
        int e = SSL_get_error(ssl, r);
        int w = 0;
        if (e == SSL_ERROR_WANT_READ)
            w = wait_until(fd, POLLIN, cancel_fd, &deadline);
        else if (e == SSL_ERROR_WANT_WRITE)
            w = wait_until(fd, POLLOUT, cancel_fd, &deadline);
        else {
            int rc = handshake_failure(ssl, e, r, saved_errno, c->pinned, name, err);
            SSL_free(ssl);
            return rc;
        }
        if (w <= 0) {
            SSL_free(ssl);
            if (w == 0)
                return ms_error_set(err, MS_ENET, "TLS handshake with %s timed out after %d s", name,
                                    timeout_s > 0 ? timeout_s : 60);
            return ms_error_set(err, MS_ENET, "TLS handshake with %s cancelled", name);
        }
    }
    int rc = MS_OK;
    if (c->pinned)
        rc = check_pin(c, ssl, name, err);
    else if (SSL_get_verify_result(ssl) != X509_V_OK || !peer_leaf(ssl))
        rc = verify_failure(ssl, SSL_get_verify_result(ssl), name, err);
    if (rc != MS_OK) {
        SSL_free(ssl);
        return rc;
    }
    *out = ssl;
    return MS_OK;
}

/* ---- description ----------------------------------------------------- */

static void bio_to(BIO *b, char *out, size_t outlen)
{
    int n = BIO_read(b, out, (int)outlen - 1);
    out[n > 0 ? n : 0] = '\0';
    (void)BIO_reset(b);
}

char *tls_describe(SSL *ssl)
{
    char subject[300] = "?", issuer[300] = "?", expires[64] = "?", fp[110] = "";
    X509 *cert = SSL_get0_peer_certificate(ssl);
    BIO *b = BIO_new(BIO_s_mem());
    if (cert && b) {
        X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_ONELINE);
        bio_to(b, subject, sizeof subject);
        X509_NAME_print_ex(b, X509_get_issuer_name(cert), 0, XN_FLAG_ONELINE);
        bio_to(b, issuer, sizeof issuer);
        ASN1_TIME_print(b, X509_get0_notAfter(cert));
        bio_to(b, expires, sizeof expires);
        unsigned char md[32];
        if (cert_digest(cert, md) == 0)
            tls_format_fingerprint(md, fp, sizeof fp);
    }
    BIO_free(b);
    char *out = NULL;
    if (asprintf(&out, "%s %s; subject: %s; issuer: %s; expires: %s; %s", SSL_get_version(ssl),
                 SSL_get_cipher_name(ssl), subject, issuer, expires, fp) < 0)
        return NULL;
    return out;
}
