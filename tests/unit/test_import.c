/* SPDX-License-Identifier: MIT */
/* test_import.c: `mailsync import` (cmd/import.c): rc snippets of mbsync
 * and OfflineIMAP, each key mapped or commented, quoting, secrets, and
 * errors naming file:line. Every complete translation is loaded back with
 * config_load(): what import writes, mailsync reads. */
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
#include "cmd/import.h"

#define MAXW 12

struct import_case {
    const char *name;
    enum import_format format;
    bool secrets;
    const char *rc;
    const char *want[MAXW];    /* each must appear in the output */
    const char *absent[MAXW];  /* none may appear */
    bool loads;                /* config_load() accepts the output */
};

static char tmpdir[64];

static int setup(void **unused)
{
    (void)unused;
    strcpy(tmpdir, "/tmp/mailsync-test-import-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    setenv("HOME", "/home/tester", 1);
    unsetenv("XDG_STATE_HOME");
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("MAILSYNC_CONFIG");
    return 0;
}

static int teardown(void **unused)
{
    (void)unused;
    char p[128];
    snprintf(p, sizeof p, "%s/config", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/sub/dir/config", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/sub/dir", tmpdir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/sub", tmpdir);
    rmdir(p);
    rmdir(tmpdir);
    return 0;
}

static char *translate(enum import_format f, bool secrets, const char *rc, int *code, struct ms_error *err)
{
    struct import_options o = {.format = f, .with_secrets = secrets, .home = "/home/tester"};
    char *out = NULL;
    memset(err, 0, sizeof *err);
    *code = import_translate("rc", rc, strlen(rc), &o, &out, err);
    return out;
}

/* The output, written 0600, through config_load. */
static void assert_loads(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/config", tmpdir);
    unlink(path);
    struct ms_error err = {0};
    assert_int_equal(import_write_config(path, text, &err), MS_OK);
    struct config c = {0};
    int rc = config_load(path, &c, &err);
    if (rc != MS_OK)
        fail_msg("%s: config_load refused the output: %s\n%s", name, err.msg, text);
    config_free(&c);
    unlink(path);
}

static void run_case(const struct import_case *c)
{
    struct ms_error err;
    int code;
    char *out = translate(c->format, c->secrets, c->rc, &code, &err);
    if (code != MS_OK)
        fail_msg("%s: import failed: %s", c->name, err.msg);
    assert_non_null(out);
    for (int i = 0; i < MAXW && c->want[i]; i++)
        if (!strstr(out, c->want[i]))
            fail_msg("%s: \"%s\" missing in:\n%s", c->name, c->want[i], out);
    for (int i = 0; i < MAXW && c->absent[i]; i++)
        if (strstr(out, c->absent[i]))
            fail_msg("%s: \"%s\" must not appear in:\n%s", c->name, c->absent[i], out);
    if (c->loads)
        assert_loads(c->name, out);
    free(out);
}

/* ---- mbsync ---------------------------------------------------------------- */

#define MB_ACCOUNT                                                                                                     \
    "IMAPAccount acc\n"                                                                                                \
    "Host mail.example.org\n"                                                                                          \
    "User me@example.org\n"                                                                                            \
    "PassCmd \"pass show mail\"\n"                                                                                     \
    "SSLType IMAPS\n"                                                                                                  \
    "\n"                                                                                                               \
    "IMAPStore remote\n"                                                                                               \
    "Account acc\n"                                                                                                    \
    "\n"                                                                                                               \
    "MaildirStore local\n"                                                                                             \
    "Path ~/Mail/\n"                                                                                                   \
    "Inbox ~/Mail/INBOX\n"                                                                                             \
    "SubFolders Verbatim\n"                                                                                            \
    "\n"

#define MB_CHANNEL(extra)                                                                                              \
    "Channel box\n"                                                                                                    \
    "Far :remote:\n"                                                                                                   \
    "Near :local:\n"                                                                                                   \
    "Patterns *\n" extra

static const struct import_case mbsync_cases[] = {
    {"basic", IMPORT_MBSYNC, false,
     "# a comment\n"
     "IMAPAccount acc\n"
     "Host mail.example.org\n"
     "Port 993\n"
     "User me@example.org\n"
     "PassCmd \"pass show mail\"\n"
     "SSLType IMAPS\n"
     "CertificateFile /etc/ssl/certs/ca.pem\n"
     "Timeout 30\n"
     "\n"
     "IMAPStore remote\n"
     "Account acc\n"
     "Trash Trash\n"
     "\n"
     "MaildirStore local\n"
     "Path ~/Mail/\n"
     "Inbox ~/Mail/INBOX\n"
     "SubFolders Verbatim\n"
     "\n"
     "Channel personal\n"
     "Far :remote:\n"
     "Near :local:\n"
     "Patterns * !Spam \"!Junk Mail\"\n"
     "Expunge Both\n"
     "Create Both\n",
     {"[account personal]\n", "host = mail.example.org\n", "port = 993\n", "tls = implicit\n",
      "user = me@example.org\n", "password_command = pass show mail\n", "ca_file = /etc/ssl/certs/ca.pem\n",
      "timeout = 30\n", "trash = Trash\n", "maildir = ~/Mail\n", "layout = verbatim\n",
      "folders = * !Spam !\"Junk Mail\"\n"},
     {"not carried over:", "password ="},
     true},
    {"expunge and max_size", IMPORT_MBSYNC, false, MB_ACCOUNT MB_CHANNEL("MaxSize 200k\nExpunge Far\n"),
     {"expunge = yes\n", "max_size = 200K\n"}, {"expunge = no"}, true},
    {"expunge default is None", IMPORT_MBSYNC, false, MB_ACCOUNT MB_CHANNEL(""),
     {"expunge = no\n", "not carried over: Create None (mbsync's default)"}, {"expunge = yes"}, true},
    {"global Expunge and Create", IMPORT_MBSYNC, false, "Expunge Both\nCreate Both\n\n" MB_ACCOUNT MB_CHANNEL(""),
     {"expunge = yes\n"}, {"not carried over:"}, true},
    {"STARTTLS and the default", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost mail.example.org\nUser u\nPassCmd x\nSSLType STARTTLS\n\n"
     "MaildirStore local\nPath /m/\nInbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\nPatterns *\n"
     "Create Both\n",
     {"tls = starttls\n", "host = mail.example.org\n", "maildir = /m\n"}, {"not carried over: IMAPStore"}, true},
    {"no SSLType: mbsync's STARTTLS", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\n\nMaildirStore local\nPath /m/\nInbox /m/INBOX\n\n"
     "Channel c\nFar :remote:\nNear :local:\n",
     {"tls = starttls\n", "folders = INBOX\n"}, {NULL}, true},
    {"TLSType (isync 1.5)", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\nTLSType IMAPS\n\nMaildirStore local\nPath /m/\n"
     "Inbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\n",
     {"tls = implicit\n"}, {"TLSType"}, true},
    {"SSLType None to a remote host", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\nSSLType None\n\nMaildirStore local\nPath /m/\n"
     "Inbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\n",
     {"tls = none\n", "allow_plaintext = yes\n", "WARNING"}, {NULL}, true},
    {"SSLType None to loopback", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost 127.0.0.1\nUser u\nPassCmd x\nSSLType None\n\nMaildirStore local\nPath /m/\n"
     "Inbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\n",
     {"tls = none\n"}, {"allow_plaintext"}, true},
    {"Pass is not printed", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPass \"hunter2 secret\"\n\nMaildirStore local\nPath /m/\n"
     "Inbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\n",
     {"# password = (Pass, line 4: not printed"}, {"hunter2", "\npassword ="}, false},
    {"Pass is written with --write", IMPORT_MBSYNC, true,
     "IMAPStore remote\nHost h.example\nUser u\nPass \"hunter2 \\\"secret\"\n\nMaildirStore local\nPath /m/\n"
     "Inbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\n",
     {"\npassword = hunter2 \"secret\n", "WARNING: Pass (line 4) is a password in clear",
      "password_command = pass show"},
     {NULL}, true},
    {"Pass a mailsync config cannot hold", IMPORT_MBSYNC, true,
     "IMAPStore remote\nHost h.example\nUser u\nPass \"abc #def\"\n\nMaildirStore local\nPath /m/\n"
     "Inbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\n",
     {"not carried over: Pass (line 4): the password has blanks"}, {"abc", "\npassword ="}, false},
    {"PassCmd with '+' and $VAR", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd \"+gpg -d $HOME/pw.gpg\"\n\nMaildirStore local\n"
     "Path /m/\nInbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\n",
     {"password_command = gpg -d $HOME/pw.gpg\n", "began with '+'", "mailsync expands $VAR"}, {"= +gpg"}, true},
    {"PassCmd with $VAR in single quotes or ${VAR:-x}", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h/x\nUser u\nPassCmd \"echo '$HOME' ${X:-y}\"\n\nMaildirStore local\n"
     "Path /m/\nInbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\n",
     {"not carried over: PassCmd (line 4): it holds a $VAR in quotes", "not carried over: Host h/x (line 2): not a "
      "host name"},
     {"\npassword_command =", "\nhost ="}, false},
    {"quoting and escapes", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser \"me \\\"x\\\" y\"   # trailing comment\nPassCmd \"echo 'a b'\"\n"
     "\nMaildirStore local\nPath \"~/My Mail/\"\nInbox \"~/My Mail/INBOX\"\n\nChannel c\nFar :remote:\n"
     "Near :local:\nPatterns \"Sent Items\" Arch\\ ive\n",
     {"user = me \"x\" y\n", "password_command = echo 'a b'\n", "maildir = ~/My Mail\n",
      "folders = \"Sent Items\" \"Arch ive\"\n"},
     {"trailing comment", "not carried over: Inbox"}, true},
    {"keywords are case-insensitive; comments do not end a section", IMPORT_MBSYNC, false,
     "imapstore remote\nHOST h.example\n# a note\nuser u\npasscmd x\n\nmaildirstore local\npath /m/\n"
     "inbox /m/INBOX\n\nchannel c\nfar :remote:\nnear :local:\npatterns *\n",
     {"host = h.example\n", "user = u\n", "maildir = /m\n"}, {NULL}, true},
    {"Maildir++", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\n\nMaildirStore local\nInbox ~/Maildir\n"
     "SubFolders Maildir++\n\nChannel c\nFar :remote:\nNear :local:\nPatterns *\n",
     {"maildir = ~/Maildir\n", "layout = maildir++\n"}, {"not carried over: Inbox"}, true},
    {"Flatten . is the dotted layout", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\n\nMaildirStore local\nPath ~/Mail/\n"
     "Inbox ~/Mail/INBOX\nFlatten .\n\nChannel c\nFar :remote:\nNear :local:\nPatterns *\n",
     {"maildir = ~/Mail\n", "layout = dotted\n"}, {"Flatten"}, true},
    {"Legacy SubFolders", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\n\nMaildirStore local\nPath ~/Mail/\n"
     "Inbox ~/Mail/INBOX\nSubFolders Legacy\n\nChannel c\nFar :remote:\nNear :local:\nPatterns *\n",
     {"not carried over: SubFolders Legacy (line 9)", "layout = verbatim\n"}, {NULL}, true},
    {"INBOX outside Path", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\n\nMaildirStore local\nPath ~/Mail/\n\n"
     "Channel c\nFar :remote:\nNear :local:\nPatterns *\n",
     {"not carried over: Inbox ~/Maildir", "(mv ~/Maildir ~/Mail/INBOX)"}, {NULL}, true},
    {"~ and $HOME are one path", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\n\nMaildirStore local\nPath /home/tester/Mail/\n"
     "Inbox ~/Mail/INBOX\n\nChannel c\nFar :remote:\nNear :local:\nPatterns *\n",
     {"maildir = /home/tester/Mail\n"}, {"not carried over: Inbox"}, true},
    {"Sync Pull", IMPORT_MBSYNC, false, MB_ACCOUNT MB_CHANNEL("Sync Pull\n"),
     {"not carried over: Sync Pull (line 19)", "run `mailsync pull box` instead of sync"}, {"\nmode = backup"},
     true},
    {"Sync Pull New Flags", IMPORT_MBSYNC, false, MB_ACCOUNT MB_CHANNEL("Sync Pull New Flags\n"),
     {"mailsync pull box", "mode = backup\n"}, {NULL}, true},
    {"Sync without deletions", IMPORT_MBSYNC, false, MB_ACCOUNT MB_CHANNEL("Sync PullNew PullFlags Push\n"),
     {"not carried over: Sync PullNew PullFlags Push"}, {"\nmode = backup"}, true},
    {"Sync New Flags both ways", IMPORT_MBSYNC, false, MB_ACCOUNT MB_CHANNEL("Sync New Flags\n"),
     {"no deletions either way", "mode = backup\n"}, {"not carried over: Sync"}, true},
    {"Sync All", IMPORT_MBSYNC, false, MB_ACCOUNT MB_CHANNEL("Sync All\n"), {"[account box]"},
     {"Sync", "mode ="}, true},
    {"unknown and unsupported keys", IMPORT_MBSYNC, false,
     "FSync no\n\n" MB_ACCOUNT MB_CHANNEL("Frobnicate yes\nMaxMessages 100\n"),
     {"not carried over: FSync no (line 1): mailsync always makes what it writes durable",
      "not carried over: Frobnicate yes (line 21): mailsync has no such setting",
      "not carried over: MaxMessages 100 (line 22): mailsync has no per-folder message limit"},
     {NULL}, true},
    {"Tunnel, UserCmd, client certificates", IMPORT_MBSYNC, false,
     "IMAPAccount a\nHost h.example\nUser u\nPassCmd x\nTunnel \"ssh h imapd\"\nUserCmd \"echo u\"\n"
     "ClientCertificate /c.pem\n\nIMAPStore remote\nAccount a\n\nMaildirStore local\nPath /m/\nInbox /m/INBOX\n\n"
     "Channel c\nFar :remote:\nNear :local:\n",
     {"not carried over: Tunnel ssh h imapd (line 5): mailsync connects over TCP only",
      "not carried over: UserCmd ... (line 6)", "not carried over: ClientCertificate /c.pem (line 7)"},
     {"echo u"}, true},
    {"two channels of one account are one account", IMPORT_MBSYNC, false,
     MB_ACCOUNT "Channel inbox\nFar :remote:\nNear :local:\nPatterns INBOX\n\n"
                "Channel lists\nFar :remote:\nNear :local:\nPatterns Lists/*\nExpunge Both\n\n"
                "Group all\nChannel inbox\nChannel lists\n",
     {"[account acc]\n", "from Channel inbox (line 15), Channel lists (line 20)", "folders = INBOX Lists/*\n",
      "Channel lists (line 20) sets Expunge differently", "not carried over: Group all (line 26)"},
     {"[account inbox]", "[account lists]"}, true},
    {"a box pair under another local name", IMPORT_MBSYNC, false,
     MB_ACCOUNT "Channel sent\nFar :remote:\"Sent Items\"\nNear :local:sent\n",
     {"folders = \"Sent Items\"\n", "not carried over: Channel sent stores Sent Items as sent"}, {NULL}, true},
    {"Master and Slave (isync 1.3)", IMPORT_MBSYNC, false,
     MB_ACCOUNT "Channel old\nMaster :remote:\nSlave :local:\nPatterns *\nExpunge Master\n",
     {"[account old]\n", "expunge = yes\n"}, {"Master", "Slave"}, true},
    {"AuthMechs XOAUTH2 takes PassCmd as the token", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd \"oauth2 token\"\nAuthMechs XOAUTH2\n\n"
     "MaildirStore local\nPath /m/\nInbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\n",
     {"auth = xoauth2\n", "oauth_token_command = oauth2 token\n"}, {"password_command"}, true},
    {"IMAPStore Path prefix and MaxSize", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\nPath INBOX.\nMaxSize 1m\n\n"
     "MaildirStore local\nPath /m/\nInbox /m/INBOX\n\nChannel c\nFar :remote:\nNear :local:\nPatterns *\n",
     {"not carried over: IMAPStore Path INBOX. (line 5)", "not carried over: MaxSize 1m (line 6)"},
     {"\nmax_size"}, true},
    {"relative Path", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\n\nMaildirStore local\nPath Mail/\nInbox Mail/INBOX\n\n"
     "Channel c\nFar :remote:\nNear :local:\nPatterns *\n",
     {"not carried over: Path Mail (line 7): mailsync needs an absolute path"}, {"maildir = Mail"}, false},
    {"a Path with $", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\nPassCmd x\n\nMaildirStore local\nPath /m/$x/\nInbox /m/$x/INBOX\n\n"
     "Channel c\nFar :remote:\nNear :local:\nPatterns *\n",
     {"not carried over: Path /m/$x (line 7): it holds '$'"}, {"maildir ="}, false},
    {"no password at all", IMPORT_MBSYNC, false,
     "IMAPStore remote\nHost h.example\nUser u\n\nMaildirStore local\nPath /m/\nInbox /m/INBOX\n\n"
     "Channel c\nFar :remote:\nNear :local:\n",
     {"# password_command = ...   <- set this"}, {NULL}, false},
    {"a channel mailsync cannot take", IMPORT_MBSYNC, false,
     MB_ACCOUNT MB_CHANNEL("") "\nChannel mm\nFar :local:\nNear :local:a\n",
     {"not carried over: Channel mm (line 20): mailsync joins an IMAPStore"}, {"[account mm]"}, true},
    {"unused stores", IMPORT_MBSYNC, false, MB_ACCOUNT MB_CHANNEL("") "\nIMAPAccount spare\nHost x\n",
     {"not carried over: IMAPAccount spare (line 20): no Channel joins it"}, {NULL}, true},
    {"account names are made valid and unique", IMPORT_MBSYNC, false,
     MB_ACCOUNT "MaildirStore l2\nPath /n/\nInbox /n/INBOX\n\nChannel \"-my box\"\nFar :remote:\nNear :local:\n\n"
                "Channel a-my-box\nFar :remote:\nNear :l2:\n",
     {"[account a-my-box]\n", "[account a-my-box-2]\n"}, {NULL}, true},
};

static void test_mbsync_cases(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof mbsync_cases / sizeof *mbsync_cases; i++)
        run_case(&mbsync_cases[i]);
}

/* ---- OfflineIMAP --------------------------------------------------------------- */

#define OI_HEAD                                                                                                        \
    "[general]\n"                                                                                                      \
    "accounts = main\n"                                                                                                \
    "\n"                                                                                                               \
    "[Account main]\n"                                                                                                 \
    "localrepository = L\n"                                                                                            \
    "remoterepository = R\n"                                                                                           \
    "\n"                                                                                                               \
    "[Repository L]\n"                                                                                                 \
    "type = Maildir\n"                                                                                                 \
    "localfolders = ~/Mail/main\n"                                                                                     \
    "sep = /\n"                                                                                                        \
    "\n"                                                                                                               \
    "[Repository R]\n"                                                                                                 \
    "type = IMAP\n"                                                                                                    \
    "remotehost = mail.example.org\n"                                                                                  \
    "remoteuser = me@example.org\n"

static const struct import_case oimap_cases[] = {
    {"basic", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remoteport = 993\nssl = yes\nsslcacertfile = /etc/ssl/ca.pem\n"
             "remotepassfile = ~/.mailpass\nmaxconnections = 2\nexpunge = no\n",
     {"[account main]\n", "host = mail.example.org\n", "port = 993\n", "tls = implicit\n",
      "user = me@example.org\n", "password_command = head -n 1 -- ~/.mailpass\n", "ca_file = /etc/ssl/ca.pem\n",
      "connections = 2\n", "expunge = no\n", "maildir = ~/Mail/main\n", "layout = verbatim\n"},
     {"not carried over:"}, true},
    {"usecompression carried over", IMPORT_OFFLINEIMAP, false, OI_HEAD "usecompression = no\nremotepassfile = /p\n",
     {"compress = no\n"}, {"not carried over:"}, true},
    {"ssl = no: STARTTLS by default", IMPORT_OFFLINEIMAP, false, OI_HEAD "ssl = no\nremotepassfile = /p\n",
     {"tls = starttls\n"}, {NULL}, true},
    {"ssl = no, starttls = no", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "ssl = no\nstarttls = no\nremotepassfile = /p\n",
     {"tls = none\n", "allow_plaintext = yes\n"}, {NULL}, true},
    {"remotepass, %% and --write", IMPORT_OFFLINEIMAP, true, OI_HEAD "remotepass = s3cr%%et x\n",
     {"\npassword = s3cr%et x\n", "WARNING: remotepass (line 17)"}, {"%%"}, true},
    {"remotepass is not printed", IMPORT_OFFLINEIMAP, false, OI_HEAD "remotepass = s3cr%%et x\n",
     {"# password = (remotepass, line 17: not printed"}, {"s3cr"}, false},
    {"remotepasseval with a list", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remotepasseval = subprocess.check_output([\"pass\", \"show\", \"mail/my box\"]).strip()\n",
     {"password_command = pass show 'mail/my box'\n"}, {NULL}, true},
    {"remotepasseval with os.popen", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remotepasseval = os.popen('gpg -dq ~/.pw.gpg').read().strip()\n",
     {"password_command = gpg -dq ~/.pw.gpg\n"}, {NULL}, true},
    {"remotepasseval of pythonfile", IMPORT_OFFLINEIMAP, false, OI_HEAD "remotepasseval = get_pass('main')\n",
     {"not carried over: remotepasseval (line 17): a Python expression"}, {"get_pass", "password_command ="},
     false},
    {"folderfilter in", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remotepassfile = /p\nfolderfilter = lambda folder: folder in ['INBOX', \"Sent Items\",\n"
             "    'Lists/dev',]\n",
     {"folders = INBOX \"Sent Items\" Lists/dev\n"}, {NULL}, true},
    {"folderfilter not in", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remotepassfile = /p\nfolderfilter = lambda f: f not in ('Spam', 'Trash')\n",
     {"folders = * !Spam !Trash\n"}, {NULL}, true},
    {"folderfilter of another shape", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remotepassfile = /p\nfolderfilter = lambda f: f.startswith('INBOX')\n",
     {"not carried over: folderfilter (line 18)"}, {"\nfolders ="}, true},
    {"folderfilter names with wildcards", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remotepassfile = /p\nfolderfilter = lambda f: f in ['INBOX', 'Odd*']\n",
     {"folders = INBOX\n", "not carried over: folderfilter name 'Odd*'"}, {NULL}, true},
    {"cert_fingerprint (SHA-256)", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remotepassfile = /p\ncert_fingerprint = "
             "2f:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88\n",
     {"fingerprint = sha256:2FAABBCCDDEEFF00112233445566778899AABBCCDDEEFF001122334455667788\n"}, {NULL}, true},
    {"cert_fingerprint (SHA-1)", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remotepassfile = /p\ncert_fingerprint = 2faabbccddeeff00112233445566778899aabbcc\n",
     {"not carried over: cert_fingerprint (line 18): mailsync pins a SHA-256"}, {"fingerprint ="}, true},
    {"default sep is the dotted layout", IMPORT_OFFLINEIMAP, false,
     "[general]\naccounts = a\n[Account a]\nlocalrepository = L\nremoterepository = R\n[Repository L]\n"
     "type = Maildir\nlocalfolders = ~/Mail\n[Repository R]\ntype = IMAP\nremotehost = h\nremoteuser = u\n"
     "remotepassfile = /p\n",
     {"layout = dotted\n", "maildir = ~/Mail\n"}, {NULL}, true},
    {"GmailIMAP, DEFAULT, nametrans, key: value", IMPORT_OFFLINEIMAP, false,
     "[DEFAULT]\nremoteuser = me@gmail.com\n\n[general]\naccounts: g\n\n[Account g]\nlocalrepository = L\n"
     "remoterepository = R\nautorefresh = 5\nmaxsize = 100000\n\n[Repository L]\ntype = GmailMaildir\n"
     "localfolders = /m\nsep = /\nnametrans = lambda f: f.replace('x', 'y')\n\n[Repository R]\ntype = GmailIMAP\n"
     "remotepassfile = /p\n\n[mbnames]\nenabled = yes\n",
     {"host = imap.gmail.com\n", "tls = implicit\n", "user = me@gmail.com\n", "max_size = 100000\n",
      "not carried over: autorefresh = 5 (line 10)", "not carried over: nametrans = lambda",
      "not carried over: [mbnames] (line 23)"},
     {NULL}, true},
    {"comments and continuation lines", IMPORT_OFFLINEIMAP, false,
     "# head\n[general]\n; note\naccounts = a,\n   b\n\n[Account a]\nlocalrepository = L\nremoterepository = R\n"
     "[Account b]\nlocalrepository = L\nremoterepository = R\n[Repository L]\ntype = Maildir\nlocalfolders = /m\n"
     "sep = /\n[Repository R]\ntype = IMAP\nremotehost = h\nremoteuser = u\nremotepassfile = /p\n",
     {"[account a]\n", "[account b]\n"}, {NULL}, false /* two accounts on one Maildir: fine for the parser */},
    {"a broken %(...)s", IMPORT_OFFLINEIMAP, false, OI_HEAD "remotepassfile = /p/%(nothere)s\n",
     {"not carried over: remotepassfile (line 17): a '%'"}, {"nothere"}, false},
    {"%(key)s of the same section", IMPORT_OFFLINEIMAP, false, OI_HEAD "base = /p\nremotepassfile = %(base)s/pw\n",
     {"password_command = head -n 1 -- /p/pw\n"}, {NULL}, true},
    {"sections no account uses", IMPORT_OFFLINEIMAP, false,
     OI_HEAD "remotepassfile = /p\n\n[general2]\n\n[Account x]\nlocalrepository = R\nremoterepository = L\n",
     {"not carried over: [general2] (line 19): no account", "not carried over: [Account x] (line 21)"},
     {"[account x]"}, true},
    {"an account of the wrong kind", IMPORT_OFFLINEIMAP, false,
     "[general]\naccounts = a, x\n[Account a]\nlocalrepository = L\nremoterepository = R\n[Account x]\n"
     "localrepository = R\nremoterepository = L\n[Repository L]\ntype = Maildir\nlocalfolders = /m\nsep = /\n"
     "[Repository R]\ntype = IMAP\nremotehost = h\nremoteuser = u\nremotepassfile = /p\n",
     {"[account a]\n", "not carried over: account x (line 6): mailsync joins a remote repository of type IMAP"},
     {"[account x]"}, true},
};

static void test_oimap_cases(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof oimap_cases / sizeof *oimap_cases; i++)
        run_case(&oimap_cases[i]);
}

/* ---- errors --------------------------------------------------------------------- */

struct error_case {
    const char *name;
    enum import_format format;
    const char *rc;
    const char *want;   /* in the message */
    const char *secret; /* never in the message */
};

static const struct error_case error_cases[] = {
    {"unterminated quote", IMPORT_MBSYNC, "IMAPStore r\nHost h\nPass \"hunter2secret\n", "rc:3: missing closing quote",
     "hunter2"},
    {"escape at the end", IMPORT_MBSYNC, "IMAPStore r\nPass hunter2secret\\\n", "rc:2: unterminated escape",
     "hunter2"},
    {"section without a name", IMPORT_MBSYNC, "\n\nChannel\n", "rc:3: Channel needs a name", NULL},
    {"section twice", IMPORT_MBSYNC, "IMAPStore r\nHost h\n\nIMAPStore r\n", "rc:4: IMAPStore r is defined twice "
     "(first on line 1)", NULL},
    {"a store's account missing", IMPORT_MBSYNC,
     "IMAPStore r\nAccount nope\n\nMaildirStore l\nPath /m/\n\nChannel c\nFar :r:\nNear :l:\n",
     "rc:2: IMAPStore r names IMAPAccount nope", NULL},
    {"no channel", IMPORT_MBSYNC, "IMAPStore r\nHost h\nPass hunter2secret\n", "rc: no Channel joins", "hunter2"},
    {"NUL byte", IMPORT_MBSYNC, "IMAPStore r\nHo\0st h\n", "rc:2: contains a NUL byte", NULL},
    {"key before a section", IMPORT_OFFLINEIMAP, "remotepass = hunter2secret\n[general]\n",
     "rc:1: a key before any [section]", "hunter2"},
    {"line without '='", IMPORT_OFFLINEIMAP, "[general]\naccounts = a\n[Repository R]\nhunter2secret\n",
     "rc:4: expected \"key = value\"", "hunter2"},
    {"key twice", IMPORT_OFFLINEIMAP, "[general]\naccounts = a\nAccounts = b\n",
     "rc:3: accounts is set twice in [general] (first on line 2)", NULL},
    {"section twice", IMPORT_OFFLINEIMAP, "[general]\n[Account a]\n[Account a]\n",
     "rc:3: section [Account a] appears twice (first on line 2)", NULL},
    {"no accounts", IMPORT_OFFLINEIMAP, "[general]\nui = quiet\n", "rc: no accounts = ... in a [general] section",
     NULL},
    {"no usable account", IMPORT_OFFLINEIMAP,
     "[general]\naccounts = a\n[Account a]\nlocalrepository = L\nremoterepository = R\n[Repository R]\n"
     "type = IMAP\nremotepass = hunter2secret\n",
     "rc: no account joins an IMAP repository", "hunter2"},
    {"a header without ']'", IMPORT_OFFLINEIMAP, "[general\n", "rc:1: a section header needs", NULL},
};

static void test_errors(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof error_cases / sizeof *error_cases; i++) {
        const struct error_case *c = &error_cases[i];
        size_t len = strlen(c->rc);
        if (strcmp(c->name, "NUL byte") == 0)
            len = sizeof "IMAPStore r\nHo\0st h\n" - 1;
        struct import_options o = {.format = c->format, .with_secrets = true, .home = NULL};
        char *out = (char *)"untouched";
        struct ms_error err = {0};
        int code = import_translate("rc", c->rc, len, &o, &out, &err);
        if (code != MS_EUSAGE)
            fail_msg("%s: expected MS_EUSAGE, got %d", c->name, code);
        assert_null(out);
        if (!strstr(err.msg, c->want))
            fail_msg("%s: \"%s\" missing in \"%s\"", c->name, c->want, err.msg);
        if (c->secret && strstr(err.msg, c->secret))
            fail_msg("%s: the message shows a secret: \"%s\"", c->name, err.msg);
    }
}

static void test_guess_format(void **unused)
{
    (void)unused;
    const char *oi = "# OfflineIMAP\n\n  [general]\naccounts = a\n";
    const char *mb = "# mbsync\nIMAPAccount a\n";
    assert_int_equal(import_guess_format(oi, strlen(oi)), IMPORT_OFFLINEIMAP);
    assert_int_equal(import_guess_format(mb, strlen(mb)), IMPORT_MBSYNC);
    assert_int_equal(import_guess_format("", 0), IMPORT_MBSYNC);
}

static void test_write_config(void **unused)
{
    (void)unused;
    char path[128];
    snprintf(path, sizeof path, "%s/sub/dir/config", tmpdir);
    struct ms_error err = {0};
    assert_int_equal(import_write_config(path, "# one\n", &err), MS_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/sub/dir", tmpdir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* never over an existing file */
    assert_int_equal(import_write_config(path, "# two\n", &err), MS_EUSAGE);
    assert_non_null(strstr(err.msg, "exists; not overwritten"));
    FILE *f = fopen(path, "r");
    char buf[32] = {0};
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_string_equal(buf, "# one\n");
}

static void test_default_rc(void **unused)
{
    (void)unused;
    enum import_format f;
    char *p = import_default_rc(tmpdir, &f);
    assert_int_equal(f, IMPORT_OFFLINEIMAP);
    assert_non_null(strstr(p, "/.offlineimaprc"));
    free(p);
    char mb[128];
    snprintf(mb, sizeof mb, "%s/.mbsyncrc", tmpdir);
    FILE *fp = fopen(mb, "w");
    fclose(fp);
    p = import_default_rc(tmpdir, &f);
    assert_int_equal(f, IMPORT_MBSYNC);
    assert_string_equal(p, mb);
    free(p);
    unlink(mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mbsync_cases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oimap_cases, setup, teardown),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_guess_format),
        cmocka_unit_test_setup_teardown(test_write_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_rc, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
