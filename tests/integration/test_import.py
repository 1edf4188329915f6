# SPDX-License-Identifier: MIT
"""test_import.py: `mailsync import` turns a real .mbsyncrc / .offlineimaprc
into a config that mailsync reads, checks against the test bed and syncs.

Each test writes an rc for the test bed's Dovecot, runs the real tool
(Debian's isync `mbsync`, offlineimap3 `offlineimap`) to fill a Maildir,
then runs `mailsync import --write` with HOME and XDG_CONFIG_HOME in the
test's work dir, and drives mailsync with the config it wrote. Switching
is two commands (import --write, then sync): the first sync on the other
tool's Maildir moves no message body either way (counted at a recording
proxy), and both sides hold the same messages.
"""

import os
import re
import shutil
import stat
import subprocess
import unittest
from pathlib import Path

import testbed as tb

MBSYNC = shutil.which("mbsync")
OFFLINEIMAP = shutil.which("offlineimap")

# A body coming down: the answer to a BODY[] / BODY.PEEK[] fetch.
BODY_LITERAL = re.compile(rb"BODY\[\](?:<\d+>)? \{\d+\}")


def counts(state):
    return {folder: len(msgs) for folder, msgs in state.items() if msgs}


class ImportCase(tb.BedTestCase):

    def setUp(self):
        super().setUp()
        self.home = self.work / "home"
        self.home.mkdir()
        self.pwfile = self.work / "pw"
        self.pwfile.write_text(self.user.password + "\n")
        os.chmod(self.pwfile, 0o600)
        # where `import --write` puts the config (XDG_CONFIG_HOME of mailsync_env)
        self.written = self.work / "xdg-config" / "mailsync" / "config"

    def env(self):
        return tb.mailsync_env(self.work, {"HOME": str(self.home)})

    def run_home(self, *args, config=None, expect=0):
        """mailsync with HOME = self.home (and the work dir's XDG dirs)."""
        r = tb.run_mailsync(list(args), config=config, env=self.env())
        self.assertEqual(r.code, expect, "unexpected exit code\n%s" % r)
        return r

    def seed(self):
        """INBOX (8) and Lists/dev (4), with flags."""
        with self.imap() as c:
            c.create_folder("Lists/dev")
            c.append_many("INBOX", tb.make_corpus(8, seed=11, size=(500, 4000)))
            c.append_many("Lists/dev", tb.make_corpus(4, seed=12, size=(500, 4000), start=100))

    def assertSameCounts(self, layout="verbatim"):
        server = counts(self.server_state())
        local = counts(tb.read_maildir(self.maildir, layout))
        self.assertEqual(local, server)
        self.assertEqual(server, {"INBOX": 8, "Lists/dev": 4})

    def assertNoDuplicates(self, layout="verbatim"):
        for folder, msgs in tb.read_maildir(self.maildir, layout).items():
            ids = [tb.message_id(m.data) for m in msgs]
            self.assertEqual(len(ids), len(set(ids)), "duplicates in local %s" % folder)
        for folder, msgs in self.server_state().items():
            ids = [tb.message_id(m.data_lf) for m in msgs]
            self.assertEqual(len(ids), len(set(ids)), "duplicates on the server in %s" % folder)

    def sync_counted(self, px):
        """`mailsync sync` with the written config; (Result, bodies down,
        APPENDs up) of this run alone, from the recording proxy px."""
        down0, up0 = len(px.downstream), len(px.upstream)
        r = self.run_home("-v", "sync", config=self.written)
        down, up = bytes(px.downstream[down0:]), bytes(px.upstream[up0:])
        return r, len(BODY_LITERAL.findall(down)), up.count(b" APPEND ")


@unittest.skipUnless(MBSYNC, "mbsync (Debian's isync) is not installed")
class TestImportMbsync(ImportCase):

    def mbsyncrc(self, port, tls="SSLType None", extra_account="", host=tb.HOST):
        rc = self.home / ".mbsyncrc"
        rc.write_text("""\
# written by tests/integration/test_import.py
IMAPAccount bed
Host {host}
Port {port}
User {user}
PassCmd "cat {pw}"
{tls}
{extra}

IMAPStore bed-remote
Account bed

MaildirStore bed-local
Path {root}/
Inbox {root}/INBOX
SubFolders Verbatim

Channel bed
Far :bed-remote:
Near :bed-local:
Patterns *
Create Both
Expunge Both
SyncState *
""".format(host=host, port=port, user=self.user.name, pw=self.pwfile, tls=tls, root=self.maildir,
           extra=extra_account))
        os.chmod(rc, 0o600)
        return rc

    def mbsync(self, rc):
        self.maildir.mkdir(exist_ok=True)
        r = subprocess.run([MBSYNC, "-q", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, HOME=str(self.home)))
        self.assertEqual(r.returncode, 0, "mbsync failed:\n%s\n%s" % (r.stdout, r.stderr))

    def test_write_makes_a_config_mailsync_checks(self):
        """~/.mbsyncrc (the default) over TLS with the bed's CA: the config
        is written 0600 where mailsync reads it, `check` accepts it, and a
        second --write leaves it alone (exit 2)."""
        self.seed()
        rc = self.mbsyncrc(self.bed.imaps_port,
                           tls="SSLType IMAPS\nCertificateFile %s" % self.bed.ca_file,
                           extra_account="PipelineDepth 1", host="localhost")  # the cert's DNS name
        self.mbsync(rc)
        printed = self.run_home("import")
        self.assertIn("[account bed]\n", printed.stdout)
        self.assertIn("password_command = cat %s\n" % self.pwfile, printed.stdout)
        self.assertIn("not carried over: PipelineDepth 1", printed.stdout)
        self.assertFalse(self.written.exists(), "import without --write wrote a file")

        r = self.run_home("import", "--write")
        self.assertIn("wrote %s" % self.written, r.stdout)
        self.assertEqual(stat.S_IMODE(os.stat(self.written).st_mode), 0o600)
        text = self.written.read_text()
        self.assertEqual(text, printed.stdout)
        for line in ("host = localhost", "port = %d" % self.bed.imaps_port, "tls = implicit",
                     "user = %s" % self.user.name, "ca_file = %s" % self.bed.ca_file,
                     "maildir = %s" % self.maildir, "layout = verbatim", "folders = *", "expunge = yes"):
            self.assertIn(line + "\n", text)

        self.run_home("check")  # the written config is the default one
        again = self.run_home("import", "--write", expect=2)
        self.assertIn("exists; not overwritten", again.stderr)
        self.assertEqual(self.written.read_text(), text)

    def test_switch_transfers_nothing(self):
        """import --write, then sync: on mbsync's Maildir (X-TUID headers,
        ,U= names) the first sync downloads and uploads no body, and both
        sides hold the same messages once; the next sync is a no-op."""
        self.seed()
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.mbsync(self.mbsyncrc(px.port))
        self.assertSameCounts()
        self.run_home("import", "--write")
        self.assertIn("tls = none\n", self.written.read_text())
        r, bodies, appends = self.sync_counted(px)
        self.assertEqual((bodies, appends), (0, 0), "bodies moved by the first sync:\n%s" % r)
        self.assertSameCounts()
        self.assertNoDuplicates()
        r, bodies, appends = self.sync_counted(px)
        self.assertEqual((bodies, appends), (0, 0), "the second sync moved bodies:\n%s" % r)


@unittest.skipUnless(OFFLINEIMAP, "offlineimap (offlineimap3) is not installed")
class TestImportOfflineImap(ImportCase):

    def offlineimaprc(self, server, sep=None, host=tb.HOST):
        meta = self.work / "offlineimap-meta"
        meta.mkdir(exist_ok=True)
        self.maildir.mkdir(exist_ok=True)
        rc = self.work / "offlineimaprc"
        rc.write_text("""\
[general]
accounts = bed
metadata = {meta}
ui = quiet

[Account bed]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {root}
{sep}

[Repository remote]
type = IMAP
remotehost = {host}
remoteuser = {user}
remotepass = {password}
{server}
""".format(meta=meta, root=self.maildir, sep="sep = %s" % sep if sep else "", host=host,
           user=self.user.name, password=self.user.password, server=server))
        os.chmod(rc, 0o600)
        return rc

    def offlineimap(self, rc):
        r = subprocess.run([OFFLINEIMAP, "-c", str(rc), "-o", "-u", "quiet"], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, HOME=str(self.home)))
        self.assertEqual(r.returncode, 0, "offlineimap failed:\n%s\n%s" % (r.stdout, r.stderr))

    def test_tls_and_a_literal_password(self):
        """ssl + sslcacertfile + remotepass: printed, the password is only
        a comment; written (0600), it is there with a warning; `check`
        accepts the file and verifies TLS with the bed's CA."""
        self.seed()
        rc = self.offlineimaprc("remoteport = %d\nssl = yes\nsslcacertfile = %s\n"
                                % (self.bed.imaps_port, self.bed.ca_file), sep="/",
                                host="localhost")  # offlineimap matches DNS names only
        self.offlineimap(rc)
        printed = self.run_home("import", rc)
        self.assertNotIn(self.user.password, printed.stdout + printed.stderr)
        self.assertIn("# password = (remotepass, line", printed.stdout)
        self.run_home("import", rc, "--write")
        text = self.written.read_text()
        self.assertEqual(stat.S_IMODE(os.stat(self.written).st_mode), 0o600)
        self.assertIn("\npassword = %s\n" % self.user.password, text)
        self.assertIn("WARNING: remotepass", text)
        for line in ("tls = implicit", "port = %d" % self.bed.imaps_port, "ca_file = %s" % self.bed.ca_file,
                     "maildir = %s" % self.maildir, "layout = verbatim",
                     "# not carried over: metadata = %s" % (self.work / "offlineimap-meta")):
            self.assertIn(line, text)
        r = self.run_home("check")
        self.assertNotIn(self.user.password, r.stdout + r.stderr)

    def test_switch_transfers_nothing(self):
        """OfflineIMAP's default `sep = .` (layout = dotted): import --write,
        then sync moves no body and leaves both sides equal."""
        self.seed()
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        rc = self.offlineimaprc("remoteport = %d\nssl = no\nstarttls = no\n" % px.port)
        self.offlineimap(rc)
        self.assertTrue((self.maildir / "Lists.dev").is_dir())
        self.run_home("import", "--from", "offlineimap", rc, "--write")
        self.assertIn("layout = dotted\n", self.written.read_text())
        r, bodies, appends = self.sync_counted(px)
        self.assertEqual((bodies, appends), (0, 0), "bodies moved by the first sync:\n%s" % r)
        self.assertSameCounts("dotted")
        self.assertNoDuplicates("dotted")


class TestImportErrors(ImportCase):

    def test_bad_input(self):
        """Unreadable, missing or broken rc files: exit 2, a message naming
        the file (and line), no secret repeated, nothing written."""
        missing = self.run_home("import", expect=2)
        self.assertIn("found neither ~/.mbsyncrc nor ~/.offlineimaprc", missing.stderr)
        r = self.run_home("import", self.work / "nope", expect=2)
        self.assertIn("nope: cannot read", r.stderr)
        bad = self.home / ".mbsyncrc"
        bad.write_text("IMAPAccount a\nHost h\nPass \"hunter2secret\n")
        r = self.run_home("import", "--write", expect=2)
        self.assertIn("%s:3: missing closing quote" % bad, r.stderr)
        self.assertNotIn("hunter2", r.stdout + r.stderr)
        self.assertFalse(self.written.exists())
        r = self.run_home("import", "--from", "offlineimap", bad, expect=2)
        self.assertIn("%s:1: expected \"key = value\"" % bad, r.stderr)
        r = self.run_home("import", "--from", "mutt", bad, expect=2)
        self.assertIn("--from takes mbsync or offlineimap", r.stderr)
        r = self.run_home("pull", "--write", expect=2)
        self.assertIn("--write is an option of import", r.stderr)

    def test_help(self):
        for args in (("help", "import"), ("import", "--help")):
            r = self.run_home(*args)
            self.assertIn("Usage: mailsync import [FILE]", r.stdout)
            self.assertIn("mailsync import --write && mailsync sync", r.stdout)
        r = self.run_home("help")
        self.assertIn("  import    ", r.stdout)


if __name__ == "__main__":
    unittest.main()
