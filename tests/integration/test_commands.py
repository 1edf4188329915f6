# SPDX-License-Identifier: MIT
"""test_commands.py: the commands besides pull (status, check, folders),
the program's own options, and refusing what is not built yet.
"""

import base64
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import testbed as tb


class CommandsTest(tb.BedTestCase):
    bed_options = {"pool": 20}

    def seed(self):
        with self.imap() as c:
            return tb.seed_sample(c, per_folder=3)

    # -- status ------------------------------------------------------------

    def test_status_before_any_sync(self):
        r = self.run_ok("status")
        self.assertIn("never synced", r.stdout)
        self.assertFalse(self.state.exists(), "status created the state DB")
        self.assertFalse(self.maildir.exists(), "status created the Maildir")

    def test_status_works_offline_and_counts_local_changes(self):
        self.seed()
        self.pull()
        # server unreachable from now on
        self.write_config(port=tb.free_port())
        inbox = self.maildir / "INBOX"
        files = sorted((inbox / "cur").iterdir()) + sorted((inbox / "new").iterdir())
        self.assertGreaterEqual(len(files), 3)
        # a flag change, a deletion, a new message, the way a MUA makes them
        f0 = files[0]
        base = f0.name.split(":2,")[0]
        letters = f0.name.split(":2,")[1] if ":2," in f0.name else ""
        new_letters = "".join(sorted(set(letters) ^ {"F"}))
        os.rename(f0, inbox / "cur" / ("%s:2,%s" % (base, new_letters)))
        os.unlink(files[1])
        (inbox / "new" / "1700000000.M1P1.localhost").write_bytes(b"Subject: draft\n\nhi\n")

        r = self.run_ok("status", "--json")
        acc = r.json()["accounts"][0]
        self.assertTrue(acc["synced_before"])
        self.assertGreater(acc["last_sync"], 0)
        self.assertIsNone(acc["last_error"])
        folders = {f["name"]: f for f in acc["folders"]}
        self.assertEqual(set(folders), set(tb.SAMPLE_FOLDERS))
        i = folders["INBOX"]
        self.assertEqual(i["synced"], 3)
        self.assertEqual(i["local"], 3)  # 3 - 1 deleted + 1 new
        self.assertEqual(i["local_new"], 1)
        self.assertEqual(i["local_flag_changes"], 1)
        self.assertEqual(i["local_deleted"], 1)
        other = folders["Archive/2024"]
        self.assertEqual((other["synced"], other["local"], other["local_new"]), (3, 3, 0))

        r = self.run_ok("status")
        self.assertIn("Thư đã gửi", r.stdout)
        self.assertIn("1 new, 1 flag changes, 1 deleted", r.stdout)

    def test_status_shows_last_error(self):
        self.seed()
        self.pull()
        # a connection lost after the login (one that fails before it
        # changes nothing on disk, so leaves no error to show)
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=19, size=30000))
        with tb.Proxy(self.bed.imap_port, cut_after=20000) as px:
            self.write_config(tls="none", port=px.port)
            self.pull(expect=4)
        r = self.run_ok("status", "--json")
        err = r.json()["accounts"][0]["last_error"]
        self.assertTrue(err, r.stdout)

    # -- check / folders ------------------------------------------------------

    def test_check_reports_tls_capabilities_and_changes_nothing(self):
        self.seed()
        with self.imap() as c:
            nfolders = len(c.list_folders(selectable_only=False))
        r = self.run_ok("check")
        self.assertIn("IMAP4rev1", r.stdout)
        self.assertIn("TLSv1.", r.stdout)
        self.assertIn("issuer: CN = mailsync test CA", r.stdout)
        self.assertIn("\n  %d folders\n" % nfolders, r.stdout)
        self.assertFalse(self.maildir.exists())
        self.assertFalse(self.state.exists())

    def test_check_wrong_password(self):
        self.write_config(password="wrong")
        r = self.mailsync("check")
        self.assertEqual(r.code, 3, str(r))

    def test_folders_lists_paths_and_exclusions(self):
        self.seed()
        self.write_config(folders='* !Archive*')
        r = self.run_ok("folders")
        lines = {l.split()[0]: l for l in r.stdout.splitlines()[1:] if l.strip()}
        self.assertIn("-> %s/INBOX" % self.maildir, lines["INBOX"])
        self.assertIn("(excluded)", lines["Archive"])
        self.assertIn("(excluded)", lines["Archive/2024"])
        self.assertIn("Thư", r.stdout)
        self.assertIn("-> %s/Thư đã gửi" % self.maildir, r.stdout)
        self.assertFalse(self.maildir.exists())

    def test_folder_option_limits_the_pull(self):
        self.seed()
        self.pull("--folder", "Archive/*")
        self.assertEqual(sorted(tb.read_maildir(self.maildir)), ["Archive/2024"])

    def test_folder_option_that_matches_nothing_is_a_usage_error(self):
        """A --folder typo is exit 2 naming it, before any folder is
        touched; over several accounts, one that matches in any is fine."""
        uids = self.seed()
        for args in (["--folder", "Archiv"], ["--folder", "INBOX", "--folder", "Wrok/*"],
                     ["--folder", "\\Flagged"]):
            r = self.mailsync("pull", *args)
            self.assertEqual(r.code, 2, str(r))
            self.assertIn('--folder "%s" matches no folder' % args[-1], r.stderr)
            self.assertEqual(tb.count_messages(self.maildir), 0, "a folder was synced")
        self.assertIn("the server marks no folder as \\Flagged", r.stderr)
        r = self.mailsync("folders", "--folder", "Archiv")  # trying patterns out
        self.assertEqual(r.code, 2, str(r))
        self.assertIn('--folder "Archiv" matches no folder', r.stderr)
        self.assertEqual(sum(map(len, self.server_state().values())), sum(map(len, uids.values())))
        # two accounts, the pattern in one of them: synced, exit 0
        keys = self.account_keys()
        other = self.bed.fresh_user()
        tb.write_config(self.config_path, {"test": keys, "other": tb.account_keys(
            self.bed, other, self.work / "Other", self.work / "other.sqlite")})
        self.pull("--folder", "Archive/*")
        self.assertEqual(sorted(tb.read_maildir(self.maildir)), ["Archive/2024"])
        r = self.mailsync("pull", "--folder", "Nope")
        self.assertEqual(r.code, 2, str(r))
        self.assertIn('--folder "Nope" matches no folder in any account', r.stderr)

    def test_folders_pattern_that_matches_nothing_is_warned(self):
        """A `folders` pattern that matches no folder is warned about; one
        that matches only a local folder (a push creates it) is not."""
        self.seed()
        new = self.maildir / "Local" / "New"
        for d in ("cur", "new", "tmp"):
            (new / d).mkdir(parents=True)
        (new / "new" / "1700000000.x1.host").write_bytes(tb.make_corpus(1, seed=5)[0].data.replace(b"\r\n", b"\n"))
        self.write_config(folders='INBOX Archiv "Local/*" !Spam \\Flagged')
        for cmd in ("check", "pull", "sync", "check"):
            r = self.run_ok(cmd)
            warned = re.findall(r'the folders pattern "([^"]*)" matches no folder', r.stderr)
            self.assertEqual(warned, ["Archiv", "!Spam", "\\Flagged"], r.stderr)
        self.assertEqual(self.server_count("Local/New"), 1)
        self.assertEqual(len(tb.read_maildir(self.maildir)["INBOX"]), 3)

    def test_maildirpp_layout(self):
        self.seed()
        self.write_config(layout="maildir++")
        self.pull()
        self.assertTrue(tb.is_maildir(self.maildir))              # INBOX is the root
        self.assertTrue(tb.is_maildir(self.maildir / ".Archive.2024"))
        self.assertTrue(tb.is_maildir(self.maildir / ".Thư đã gửi"))
        self.assertSynced(layout="maildir++")

    # -- what the program shows ---------------------------------------------------

    def test_trace_masks_the_password(self):
        self.seed()
        for auth in ("login", "plain"):
            with self.subTest(auth=auth):
                self.maildir = self.work / ("Mail-%s" % auth)
                self.state = self.work / ("state-%s.sqlite" % auth)
                self.write_config(auth=auth)
                r = self.run_ok("-vv", "pull")
                self.assertIn("LOGIN" if auth == "login" else "AUTHENTICATE", r.stderr)
                self.assertIn("FETCH", r.stderr)  # it is a real trace
                self.assertNotIn(self.user.password, r.stderr + r.stdout)
                # PLAIN sends base64("\0user\0password"): not that either
                blob = base64.b64encode(b"\0" + self.user.name.encode() + b"\0" +
                                        self.user.password.encode()).decode()
                self.assertNotIn(blob, r.stderr)

    def test_progress_line(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(30, seed=3, size=(2000, 4000)))
        r = self.run_ok("--progress=always", "pull")
        self.assertRegex(r.stderr, r"INBOX: \d+/30 messages, [\d.]+ KiB/[\d.]+ KiB, [\d.]+ \S+/s")
        r = self.run_ok("--progress=never", "pull", "--folder", "INBOX")
        self.assertNotIn("messages,", r.stderr)

    def test_quiet_and_json_keep_stdout_clean(self):
        self.seed()
        r = self.run_ok("-q", "pull")
        self.assertEqual(r.stdout, "")
        r = self.run_ok("--json", "pull")
        doc = r.json()
        self.assertEqual(doc["exit"], 0)
        self.assertEqual(doc["command"], "pull")

    def test_max_size_skips_and_reports(self):
        with self.imap() as c:
            small = c.append_message("INBOX", tb.make_message(1, size=2000), (), 1600000000)
            big = c.append_message("INBOX", tb.make_message(2, size=300000), ("\\Seen",), 1600000001)
        self.write_config(max_size="100K", placeholders="no")
        r = self.run_ok("pull", "--json")
        inbox = [f for f in r.json()["accounts"][0]["folders"] if f["name"] == "INBOX"][0]
        self.assertEqual((inbox["fetched"], inbox["skipped"]), (1, 1))
        self.assertIn("UID %d skipped" % big, r.stderr)
        self.assertIn("over max_size", r.stderr)
        self.assertEqual(tb.count_messages(self.maildir), 1)
        # raising the limit brings it in
        self.write_config(max_size="1M")
        self.pull()
        self.assertSynced()
        self.assertNotEqual(small, big)

    def test_folder_deleted_on_server_is_kept_and_reported(self):
        self.seed()
        self.pull()
        before = len(tb.read_maildir(self.maildir)["Archive/2024"])
        with self.imap() as c:
            c.delete_folder("Archive/2024")
        r = self.run_ok("pull")
        self.assertIn('folder "Archive/2024" is no longer on the server', r.stderr)
        self.assertEqual(len(tb.read_maildir(self.maildir)["Archive/2024"]), before)

    # -- the program ------------------------------------------------------------

    def test_log_lines_carry_their_priority_for_journald(self):
        """Under systemd, stderr is the journal stream ($JOURNAL_STREAM names
        its device:inode): each line starts with its syslog priority, so
        `journalctl -p err` finds mailsync's errors. Elsewhere, no prefix."""
        self.write_config(port=tb.free_ports(1)[0])  # nothing listens: an error
        err_path = self.work / "stderr"
        for journal in (True, False):
            with open(err_path, "wb") as f:
                st = os.fstat(f.fileno())
                env = tb.mailsync_env(self.work)
                if journal:
                    env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
                p = subprocess.run([tb._check_binary(), "-c", str(self.config_path), "-v", "pull"],
                                   stdout=subprocess.DEVNULL, stderr=f, env=env, timeout=60)
            self.assertEqual(p.returncode, 4)
            lines = err_path.read_text().splitlines()
            errors = [ln for ln in lines if "cannot connect" in ln]
            self.assertEqual(len(errors), 1, lines)
            if journal:
                self.assertTrue(errors[0].startswith("<3>mailsync: error: "), errors)
                self.assertTrue(all(re.match(r"<[2-7]>", ln) for ln in lines), lines)
            else:
                self.assertTrue(errors[0].startswith("mailsync: error: "), errors)
                self.assertFalse(any(re.match(r"<\d>", ln) for ln in lines), lines)
        # a good run's -v lines are debug
        self.write_config()
        with open(err_path, "wb") as f:
            st = os.fstat(f.fileno())
            env = tb.mailsync_env(self.work, {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
            p = subprocess.run([tb._check_binary(), "-c", str(self.config_path), "-v", "pull"],
                               stdout=subprocess.DEVNULL, stderr=f, env=env, timeout=60)
        self.assertEqual(p.returncode, 0)
        lines = err_path.read_text().splitlines()
        self.assertTrue(lines and all(ln.startswith("<7>") for ln in lines), lines)

    def test_help_version_and_usage_errors(self):
        r = self.run_ok("--help")
        for word in ("pull", "status", "check", "folders", "--dry-run", "--json", "Exit codes"):
            self.assertIn(word, r.stdout)
        # the folder pattern syntax as it is typed (the text is printed as
        # it stands, not through printf: no doubled percent sign)
        self.assertIn("% any text but '/'", r.stdout)
        self.assertNotIn("%%", r.stdout)
        r = self.run_ok("--version")
        self.assertRegex(r.stdout, r"^mailsync \d+\.\d+")
        # the libraries it runs with, as loaded (Python links the same
        # system OpenSSL and SQLite)
        import sqlite3
        import ssl
        self.assertRegex(r.stdout, r"\nlibetpan \d+\.\d+, ")
        self.assertIn(ssl.OPENSSL_VERSION, r.stdout)
        self.assertIn("SQLite " + sqlite3.sqlite_version, r.stdout)
        for args in (["frobnicate"], [], ["pull", "nosuchaccount"], ["--progress=sometimes", "pull"],
                     ["--bogus", "pull"]):
            r = self.mailsync(*args)
            self.assertEqual(r.code, 2, str(r))
            self.assertTrue(r.stderr.strip(), "no message for %s" % args)



ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
COMMANDS = ("pull", "push", "sync", "fetch", "status", "check", "folders", "watch", "import", "help")


class HelpAndConfigErrorsTest(unittest.TestCase):
    """What needs no server: each command's own help, "did you mean", and
    a config's errors all reported in one run."""

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="mailsync-help-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def run_ms(self, *args, config=None):
        return tb.run_mailsync(list(args), config=config, workdir=self.work)

    def config(self, text):
        path = os.path.join(self.work, "config")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def test_each_command_has_its_own_help(self):
        general = self.run_ms("--help").stdout
        texts = {}
        for cmd in COMMANDS:
            a, b = self.run_ms("help", cmd), self.run_ms(cmd, "--help")
            self.assertEqual((a.code, b.code), (0, 0), str(a) + str(b))
            self.assertEqual(a.stdout, b.stdout, cmd)  # help CMD = CMD --help
            self.assertRegex(a.stdout, r"^Usage: mailsync %s\b" % cmd)
            self.assertNotEqual(a.stdout, general, cmd)
            self.assertNotIn("%%", a.stdout, cmd)
            self.assertIn("mailsync %s" % cmd, a.stdout.split("xample", 1)[-1], cmd + ": no example")
            texts[cmd] = a.stdout
        # the options that apply, and not the others
        for cmd in ("pull", "push", "sync"):
            for opt in ("--dry-run", "--folder", "--force", "--json", "% any text but '/'"):
                self.assertIn(opt, texts[cmd], cmd)
            self.assertNotIn("--interval", texts[cmd], cmd)
            self.assertNotIn("--write", texts[cmd], cmd)
        self.assertIn("--interval", texts["watch"])
        self.assertIn("--write", texts["import"])
        self.assertNotIn("--dry-run", texts["status"])
        self.assertEqual(self.run_ms("help").stdout, general)
        self.assertNotIn("%%", general)

    def test_help_for_an_unknown_command_is_a_usage_error(self):
        for args in (["help", "frobnicate"], ["frobnicate", "--help"], ["help", "pul"]):
            r = self.run_ms(*args)
            self.assertEqual(r.code, 2, str(r))
            self.assertEqual(r.stdout, "")
            for cmd in COMMANDS:
                self.assertIn(cmd, r.stderr)
        self.assertIn("did you mean pull?", self.run_ms("help", "pul").stderr)
        r = self.run_ms("stauts")
        self.assertEqual(r.code, 2, str(r))
        self.assertIn("did you mean status?", r.stderr)

    def test_all_config_errors_at_once(self):
        path = self.config("[account work]\n"              # 1
                           "hots = imap.example.org\n"     # 2
                           "user = me\n"
                           "password_command = pass mail\n"
                           "maildir = ~/Mail\n"
                           "tls = sometimes\n"             # 6
                           "\n"
                           "[account home]\n"              # 8
                           "host = h\nuser = u\npassword_command = x\nmaildir = ~/Mail2\n"
                           "conections = 2\n")             # 13
        r = self.run_ms("pull", config=path)
        self.assertEqual(r.code, 2, str(r))
        lines = r.stderr.splitlines()
        want = [(1, "host", "missing"), (2, "hots", "did you mean host?"), (6, "tls", "sometimes"),
                (13, "conections", "did you mean connections?")]
        self.assertEqual(len(lines), len(want), r.stderr)
        for line, (n, key, text) in zip(lines, want):
            self.assertTrue(line.startswith("mailsync: %s:%d: %s: " % (path, n, key)), line)
            self.assertIn(text, line)

    def test_every_config_key_is_documented(self):
        """Every key the parser accepts (cmd/config.c's table) has its entry
        in mailsync.conf(5) and is named in mailsync(1), which points
        there; both pages render without a warning."""
        with open(os.path.join(ROOT, "cmd", "config.c")) as f:
            keys = re.findall(r'\[K_\w+\] = \{"(\w+)"', f.read())
        self.assertGreater(len(keys), 25)
        pages = {}
        for name in ("mailsync.conf.5", "mailsync.1"):
            with open(os.path.join(ROOT, "contrib", name)) as f:
                pages[name] = f.read()
        conf = pages["mailsync.conf.5"].split("\n.SH KEYS\n", 1)[1].split("\n.SH ", 1)[0]
        for key in keys:  # an entry: a .TP tag line starting with the key
            self.assertTrue(re.search(r'(?m)^\.TP\n\.B[IR]? +"?%s\b' % key, conf), "%s: no entry in mailsync.conf(5)" % key)
        plain = re.sub(r"\\f[BIRP]", "", pages["mailsync.1"])
        for key in keys:
            self.assertTrue(re.search(r"\b%s\b" % key, plain), "%s: not in mailsync(1)" % key)
        self.assertIn(".BR mailsync.conf (5)", pages["mailsync.1"].split(".SH SEE ALSO", 1)[1])
        for sect in ("NAME", "SYNOPSIS", "DESCRIPTION", "KEYS", "EXAMPLE", "FILES", "SEE ALSO"):
            self.assertIn("\n.SH %s\n" % sect, pages["mailsync.conf.5"])
        if shutil.which("man"):
            for name in pages:
                r = subprocess.run(["man", "--warnings", "-l", os.path.join(ROOT, "contrib", name)],
                                   capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"))
                self.assertEqual((r.returncode, r.stderr), (0, ""), name)

    def test_did_you_mean_an_account(self):
        path = self.config("[account work]\nhost = h\nuser = u\npassword_command = x\nmaildir = ~/M\n"
                           "[account home]\nhost = h\nuser = u\npassword_command = x\nmaildir = ~/N\n")
        r = self.run_ms("status", "wrok", config=path)
        self.assertEqual(r.code, 2, str(r))
        self.assertIn("no account named 'wrok'", r.stderr)
        self.assertIn("did you mean work?", r.stderr)
        r = self.run_ms("status", "personal", config=path)
        self.assertEqual(r.code, 2, str(r))
        self.assertNotIn("did you mean", r.stderr)


if __name__ == "__main__":
    unittest.main()
