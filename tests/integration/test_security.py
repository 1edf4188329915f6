# SPDX-License-Identifier: MIT
"""test_security.py: what the binary shows and what it refuses.

- Config errors never repeat a secret: the value of password,
  password_command or oauth_token_command, or the text of a line that could
  not be parsed (stderr goes to the journal under systemd).
- A config file that others can write (or that another user owns), or a
  state directory that others can write, is refused with exit 2 before
  anything is touched: no Maildir, no state DB, nothing on the server.
- Text from outside (file names, folder names, server text) reaches stderr
  and stdout with control bytes escaped: no terminal escape sequence, no
  forged line; --json stays valid UTF-8 JSON.
"""

import os
import re
import shutil
import tempfile
import unittest
from pathlib import Path

import fakeimap as fi
import testbed as tb

SECRET = "Zq7-hunter2-Xy"


class SecurityTest(tb.BedTestCase):
    bed_options = {"pool": 20}

    def seed(self, n=3):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(n, seed=41))

    def assertNothingTouched(self, r):
        self.assertFalse(self.maildir.exists(), "the Maildir was created\n%s" % r)
        self.assertFalse(self.state.exists(), "the state DB was created\n%s" % r)
        self.assertFalse(os.path.exists(str(self.state) + ".lock"), "a lock file was created")

    def raw_config(self, lines, mode=0o600):
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.config_path, mode)

    # -- 8: no secret in a config error ---------------------------------------

    def test_config_errors_never_show_secrets(self):
        self.seed()
        k = self.account_keys(password=None)
        keys = ["%s = %s" % kv for kv in k.items()]
        cases = {
            "password without =": (["password " + SECRET], "password"),
            "password with a colon": (["password: " + SECRET], "password"),
            "a pasted password alone": ([SECRET], "line"),
            "a secret as an unknown key": ([SECRET + " = x"], "line"),
            "unknown key": (["passwd = " + SECRET], "passwd"),
            "password twice": (["password = " + SECRET, "password = " + SECRET], "password"),
            "password_command with an unset $VAR": (
                ["password_command = echo %s$ZQ7UNSETVAR" % SECRET], "password_command"),
            "section header": (["[%s]" % SECRET], "section"),
        }
        for what, (extra, key) in cases.items():
            with self.subTest(what):
                lines = ["[account test]"] + keys + extra
                self.raw_config(lines)
                r = self.mailsync("pull")
                self.assertEqual(r.code, 2, str(r))
                self.assertRegex(r.stderr, r"%s:%d: %s: " % (re.escape(str(self.config_path)),
                                                             len(lines), re.escape(key)))
                self.assertNotIn(SECRET, r.stderr + r.stdout, "secret echoed")
                self.assertNotIn("ZQ7UNSETVAR", r.stderr, "part of password_command echoed")
                self.assertNothingTouched(r)
        self.assertEqual(self.server_count(), 3)

    # -- 9: config and state directory that others could write -----------------

    def assertRefused(self, r, what):
        self.assertEqual(r.code, 2, str(r))
        self.assertIn(what, r.stderr)
        self.assertIn("refused", r.stderr)
        self.assertNothingTouched(r)
        self.assertEqual(self.server_count(), 3, "the server changed")

    def test_writable_config_refused(self):
        self.seed()
        marker = self.work / "command-ran"
        for mode in (0o602, 0o620, 0o666, 0o622):
            with self.subTest(mode=oct(mode)):
                # password_command would run as us: it must not be run at all.
                self.write_config(file_mode=mode, password=None,
                                  password_command="touch %s; echo %s" % (marker, self.user.password))
                r = self.mailsync("pull")
                self.assertRefused(r, 'chmod go-w %s' % self.config_path)
                self.assertFalse(marker.exists(), "password_command was run")
        self.write_config(file_mode=0o640, password=None,
                          password_command="echo %s" % self.user.password)
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 3)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to give the file away")
    def test_config_of_another_user_refused(self):
        self.seed()
        self.write_config()
        os.chown(self.config_path, 65534, -1)
        r = self.mailsync("pull")
        self.assertRefused(r, "another user")

    def test_writable_state_directory_refused(self):
        self.seed()
        shared = self.work / "shared"
        shared.mkdir()
        os.chmod(shared, 0o777)
        for state in (shared / "state.sqlite", shared / "new-dir" / "state.sqlite"):
            with self.subTest(state=str(state)):
                self.state = state
                self.write_config()
                r = self.mailsync("sync")
                self.assertRefused(r, 'chmod go-w %s' % shared)
                self.assertEqual(os.listdir(shared), [], "something was written there")
        # The same place with the sticky bit still refuses the state
        # directory itself, but may hold a new one the run creates 0700.
        os.chmod(shared, 0o1777)
        r = self.mailsync("sync")
        self.assertEqual(r.code, 0, str(r))
        self.assertEqual(os.stat(shared / "new-dir").st_mode & 0o777, 0o700)
        self.assertEqual(tb.count_messages(self.maildir), 3)
        self.state = shared / "state.sqlite"
        self.write_config()
        r = self.mailsync("status")
        self.assertEqual(r.code, 2, str(r))
        self.assertIn('chmod go-w %s' % shared, r.stderr)

    # -- 10: names from outside are escaped in every message --------------------

    FORGED = "mailsync: error: forged"

    def assertClean(self, text, what):
        self.assertNotIn("\x1b", text, "%s carries an escape byte:\n%r" % (what, text))
        for line in text.splitlines():
            self.assertFalse(line.startswith(self.FORGED), "%s has a forged line:\n%r" % (what, text))

    def test_local_file_name_escaped(self):
        self.seed()
        self.pull()
        # A file in cur/ whose name carries a terminal escape and a newline,
        # older than server_retention_days: push names it and leaves it.
        self.write_config(server_retention_days=30)
        name = "evil\x1b[2J\n%s:2,S" % self.FORGED
        cur = tb.local_folder_path(self.maildir, "INBOX") + "/cur/"
        with open(cur + name, "wb") as f:
            f.write(tb.make_message(99, seed=42).replace(b"\r\n", b"\n"))
        os.utime(cur + name, (1e9, 1e9))
        r = self.run_ok("-v", "push")
        self.assertIn("evil\\x1b[2J\\nmailsync: error: forged:2,S not uploaded", r.stderr)
        self.assertClean(r.stderr, "stderr")
        self.assertEqual(self.server_count(), 3, "the file was uploaded")
        self.assertTrue(os.path.exists(cur + name), "the file was touched")
        self.assertEqual(tb.count_messages(self.maildir), 4)
        # A new one (an OSC title sequence this time) that a dry run names
        # as an upload, on stdout.
        self.write_config()
        name2 = "evil2\x1b]0;pwned\x07\n%s" % self.FORGED
        with open(cur + name2 + ":2,S", "wb") as f:
            f.write(tb.make_message(98, seed=42).replace(b"\r\n", b"\n"))
        r = self.run_ok("--dry-run", "push")
        self.assertIn("would upload evil2\\x1b]0;pwned\\x07\\nmailsync: error: forged", r.stdout)
        self.assertClean(r.stdout + r.stderr, "--dry-run push")
        self.assertNotIn("\x07", r.stdout)
        self.assertEqual(self.server_count(), 3, "a dry run uploaded")

    def test_server_folder_name_escaped(self):
        # Dovecot refuses such a CREATE, but lists a directory put there:
        # "Evil&ABs-[2J&AAo-mailsync: error: forged" (ESC and LF in mUTF-7).
        # A run's folder names show them as '?' (folders.c display_name);
        # status decodes the name itself, and must escape it too.
        name = "Evil\x1b[2J\n%s" % self.FORGED
        shown = "Evil?[2J?" + self.FORGED
        self.bed.seed_direct(self.user, name, tb.make_corpus(2, seed=43, size=9000, flags=False))
        self.seed()
        self.write_config(max_size="6K", placeholders="no")
        r = self.run_ok("-v", "pull")
        self.assertIn("warning: %s: UID 1 skipped" % shown, r.stderr)
        self.assertClean(r.stderr, "stderr")
        self.assertClean(r.stdout, "stdout")
        for args in (["status"], ["folders"], ["-v", "pull"]):
            with self.subTest(args=args):
                r = self.run_ok(*args)
                self.assertClean(r.stdout + r.stderr, " ".join(args))
        # --json: valid JSON whose strings carry no raw control byte.
        r = self.run_ok("--json", "pull")
        self.assertClean(r.stdout + r.stderr, "--json")
        names = [f["name"] for f in r.json()["accounts"][0]["folders"]]
        self.assertIn(shown, names)
        self.assertEqual(tb.count_messages(self.maildir), 3, "INBOX, and nothing over max_size")
    def test_config_path_and_account_name_escaped(self):
        evil = "evil\x1b[2J\n" + self.FORGED
        r = self.mailsync("pull", config=self.work / evil)
        self.assertEqual(r.code, 2, str(r))
        self.assertIn("evil\\x1b[2J\\nmailsync: error: forged: cannot read", r.stderr)
        self.assertClean(r.stderr, "stderr")
        r = self.mailsync("pull", evil)
        self.assertEqual(r.code, 2, str(r))
        self.assertIn("no account named 'evil\\x1b[2J\\n", r.stderr)
        self.assertClean(r.stderr, "stderr")
        r = self.mailsync(evil)
        self.assertEqual(r.code, 2, str(r))
        self.assertClean(r.stderr, "stderr")
        self.assertNothingTouched(r)


class HostileServerTextTest(unittest.TestCase):
    """Folder names Dovecot would not send, from fakeimap: raw ESC, a C1
    CSI (U+009B) and Latin-1 bytes that are not UTF-8."""

    NAMES = [b"INBOX", b"esc\x1b[31mred", b"c1\xc2\x9b31mcsi", b"raw-latin1-caf\xe9"]

    def setUp(self):
        self.work = Path(tempfile.mkdtemp(prefix="mailsync-test-"))
        if not tb.keep_tmp():
            self.addCleanup(shutil.rmtree, self.work, True)
        folders = {}
        for k, name in enumerate(self.NAMES):
            raw = (b"From: a@example.org\r\nSubject: m%d\r\nMessage-ID: <m%d@fake>\r\n\r\nBody\r\n"
                   % (k, k))
            folders[name] = fi.Folder(100 + k, [fi.Message(1, (), 1600000000, raw)])
        self.srv = fi.FakeImap(folders).start()
        self.addCleanup(self.srv.stop)
        self.config = tb.write_config(self.work / "config", {"hostile": {
            "host": "127.0.0.1", "port": self.srv.port, "tls": "none", "user": "user",
            "password": "pw", "maildir": str(self.work / "Mail"),
            "state": str(self.work / "state.sqlite"), "timeout": 10}})

    def run_ok(self, *args, expect=0):
        r = tb.run_mailsync(list(args), config=self.config, workdir=self.work)
        self.assertEqual(r.code, expect, str(r))
        # Run's stdout/stderr were decoded with errors="replace": a U+FFFD
        # there is a byte that was not UTF-8.
        for what, text in (("stdout", r.stdout), ("stderr", r.stderr)):
            self.assertNotIn("\x1b", text, "%s carries an escape byte\n%s" % (what, r))
            self.assertNotIn("\x9b", text, "%s carries a C1 CSI\n%s" % (what, r))
            self.assertNotIn("\ufffd", text, "%s carries a byte that is not UTF-8\n%s" % (what, r))
        return r

    def test_names_escaped_in_text_and_json(self):
        # The raw ESC name is skipped (exit 1), the others are synced.
        r = self.run_ok("-v", "pull", expect=1)
        self.assertIn("warning: skipped server folder \"esc\\x1b[31mred\"", r.stderr)
        self.assertIn("c1\\xc2\\x9b31mcsi", r.stdout)
        self.assertIn("raw-latin1-caf\\xe9", r.stdout)
        self.assertEqual(tb.count_messages(self.work / "Mail"), 3)
        r = self.run_ok("--json", "pull", expect=1)
        folders = {f["name"]: f for f in r.json()["accounts"][0]["folders"]}
        self.assertEqual(sorted(folders), sorted(["INBOX", "esc?[31mred", "c1\x9b31mcsi",
                                                  "raw-latin1-caf\ufffd"]))
        self.assertIn("esc\\x1b[31mred", folders["esc?[31mred"]["error"])
        r = self.run_ok("status")
        self.assertIn("c1\\xc2\\x9b31mcsi", r.stdout)
        self.assertIn("last error: ", r.stdout)
        self.run_ok("--json", "status")
        self.run_ok("folders")
        self.assertEqual(tb.count_messages(self.work / "Mail"), 3)

if __name__ == "__main__":
    unittest.main()
