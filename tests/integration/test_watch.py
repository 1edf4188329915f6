# SPDX-License-Identifier: MIT
"""test_watch.py: `mailsync watch` against a real Dovecot.

A watch syncs at once, then brings server changes down within seconds: in
every folder where the server offers NOTIFY (Dovecot does), else in INBOX
(IDLE on it, tested with NOTIFY hidden). It sends local changes up within
seconds too (inotify), or at the next full pass (--interval); its own
deliveries start no pass. It survives the server going away and coming back, and ends
cleanly (exit 0, the lock released) on SIGTERM or SIGINT. It runs one
account; a dry run makes no sense for it.
"""

import os
import signal
import socket
import time
from pathlib import Path

import testbed as tb


wait_for = tb.wait_for


class WatchTest(tb.BedTestCase):
    bed_options = {"pool": 10}

    def start_watch(self, *args):
        p = tb.start_mailsync(["-v", "watch", *args], config=self.config_path, workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p

    def stop_watch(self, p, sig=signal.SIGTERM):
        os.kill(p.pid, sig)
        try:
            code = p.wait(15)
        except Exception:
            p.kill()
            raise
        err = Path(p.err_path).read_text()
        self.assertFalse(any(m in err for m in tb.SANITIZER_MARKERS), err)
        return code, err

    def test_new_server_mail_arrives_and_sigterm_ends_it(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=11))
        p = self.start_watch("--interval", "3600")
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 2), "the first pass did not come")
        t0 = time.monotonic()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=12, start=50))
        # IDLE, not the hour-long interval, brings it
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 3, timeout=20),
                        Path(p.err_path).read_text())
        self.assertLess(time.monotonic() - t0, 20)
        code, err = self.stop_watch(p)
        self.assertEqual(code, 0, err)
        self.assertIn("the server reports a change", err)
        self.assertSynced()
        # the lock is free again
        self.pull()

    def test_local_change_goes_up_at_the_next_pass_and_sigint_ends_it(self):
        # a folders pattern that matches nothing is said once, not at every pass
        self.write_config(folders="* Nosuch")
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=13, flags=False))
        p = self.start_watch("--interval", "2")
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 2))
        m = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.uniq)[0]
        time.sleep(0.5)
        os.rename(m.path, os.path.join(os.path.dirname(os.path.dirname(m.path)), "cur", m.uniq + ":2,F"))

        def flagged_on_server():
            with self.imap() as c:
                return any("\\Flagged" in x.flags for x in c.messages("INBOX"))
        self.assertTrue(wait_for(flagged_on_server, timeout=20), Path(p.err_path).read_text())
        code, err = self.stop_watch(p, signal.SIGINT)
        self.assertEqual(code, 0, err)
        passes = sum(": sync " in l for l in Path(p.out_path).read_text().splitlines())
        self.assertGreaterEqual(passes, 2)
        self.assertEqual(err.count('pattern "Nosuch" matches no folder'), 1, err)

    def test_local_changes_go_up_within_seconds(self):
        """The Maildir is watched (inotify): a flag set locally, a message
        added locally and a folder made locally reach the server within
        seconds, though the next full pass is an hour away."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=41, flags=False))
        p = self.start_watch("--interval", "3600")
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 2), "the first pass did not come")
        err = lambda: Path(p.err_path).read_text()
        inbox = Path(tb.local_folder_path(self.maildir, "INBOX"))
        m = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.uniq)[0]
        os.rename(m.path, inbox / "cur" / (m.uniq + ":2,F"))

        def flagged_on_server():
            with self.imap() as c:
                return any("\\Flagged" in x.flags for x in c.messages("INBOX"))
        self.assertTrue(wait_for(flagged_on_server, timeout=10), err())
        # a new message, delivered the Maildir way (tmp/, then new/)
        data = tb.make_corpus(1, seed=42, start=300, flags=False)[0].data.replace(b"\r\n", b"\n")
        (inbox / "tmp" / "1700000001.mua.host").write_bytes(data)
        os.rename(inbox / "tmp" / "1700000001.mua.host", inbox / "new" / "1700000001.mua.host")
        self.assertTrue(wait_for(lambda: self.server_count() == 3, timeout=10), err())
        # a new folder with a message in it
        projects = Path(tb.local_folder_path(self.maildir, "Projects"))
        for d in ("tmp", "new", "cur"):
            (projects / d).mkdir(parents=True)
        data = tb.make_corpus(1, seed=43, start=400, flags=False)[0].data.replace(b"\r\n", b"\n")
        (projects / "cur" / "1700000002.mua.host:2,S").write_bytes(data)
        self.assertTrue(wait_for(lambda: "Projects" in self.server_state() and self.server_count("Projects") == 1,
                                 timeout=10), err())
        code, text = self.stop_watch(p)
        self.assertEqual(code, 0, text)
        self.assertIn("a local change", text)
        self.assertSynced()

    def test_own_deliveries_start_no_pass_storm(self):
        """What the watch writes itself (new mail from the server) is no
        local change: the passes stay as many as the server's reports."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=44))
        p = self.start_watch("--interval", "3600")
        passes = lambda: sum(": sync " in l for l in Path(p.out_path).read_text().splitlines())
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 1 and passes() == 1),
                        "the first pass did not come")
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=45, start=50))
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 3, timeout=20),
                        Path(p.err_path).read_text())
        self.assertTrue(wait_for(lambda: passes() >= 2))
        settled = passes()
        # no further pass for a few seconds (a pass storm would show at once)
        self.assertFalse(wait_for(lambda: passes() > settled, timeout=3), Path(p.out_path).read_text())
        code, err = self.stop_watch(p)
        self.assertEqual(code, 0, err)
        self.assertNotIn("a local change", err)

    def test_changes_in_every_folder_come_through_notify(self):
        with self.imap() as c:
            c.create_folder("Lists")
            c.append_many("INBOX", tb.make_corpus(1, seed=17))
            c.append_many("Lists", tb.make_corpus(1, seed=18, start=70, flags=False))
        p = self.start_watch("--interval", "3600")
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 2), "the first pass did not come")
        lists = lambda: tb.read_maildir(self.maildir).get("Lists", [])
        # a new message in a folder other than INBOX
        with self.imap() as c:
            c.append_many("Lists", tb.make_corpus(1, seed=19, start=80, flags=False))
        self.assertTrue(wait_for(lambda: len(lists()) == 2, timeout=20), Path(p.err_path).read_text())
        # a flag set on the server in that folder
        with self.imap() as c:
            uid = min(m.uid for m in c.messages("Lists"))
            c.set_flags("Lists", [uid], ["\\Flagged"])
        self.assertTrue(wait_for(lambda: any("F" in m.letters for m in lists()), timeout=20),
                        Path(p.err_path).read_text())
        # a folder created on the server, with a message in it
        with self.imap() as c:
            c.create_folder("Fresh")
            c.append_many("Fresh", tb.make_corpus(1, seed=20, start=90))
        self.assertTrue(wait_for(lambda: len(tb.read_maildir(self.maildir).get("Fresh", [])) == 1, timeout=20),
                        Path(p.err_path).read_text())
        code, err = self.stop_watch(p)
        self.assertEqual(code, 0, err)
        self.assertIn("(NOTIFY)", err)
        self.assertSynced()

    def test_server_going_away_is_retried(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=14))
        p = self.start_watch("--interval", "2")
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 1))
        self.bed.restart()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=15, start=60))
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 2, timeout=30),
                        Path(p.err_path).read_text())
        self.assertIsNone(p.poll(), "watch ended when the server went away")
        code, err = self.stop_watch(p)
        self.assertEqual(code, 0, err)

    def test_usage(self):
        r = self.mailsync("watch", "--dry-run")
        self.assertEqual(r.code, 2, r)
        self.assertIn("--dry-run", r.stderr)
        r = self.mailsync("watch", "--interval", "0")
        self.assertEqual(r.code, 2, r)
        two = self.work / "two.conf"
        keys = self.account_keys()
        tb.write_config(two, {"one": keys, "two": dict(keys, maildir=str(self.work / "Mail2"),
                                                       state=str(self.work / "two.sqlite"))})
        r = self.mailsync("watch", config=two)
        self.assertEqual(r.code, 2, r)
        self.assertIn("one account at a time", r.stderr)


class WatchUnderSystemdTest(tb.BedTestCase):
    """`watch` as a Type=notify service with a watchdog (the shipped
    mailsync-watch@.service): systemd's notify socket is played by a
    datagram socket here, as sd_notify(3) specifies it."""

    def test_ready_watchdog_status_and_stopping(self):
        sock_path = str(self.work / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(sock_path)
        sock.settimeout(0.2)
        env_file = self.work / "secret-env"
        # the password command's environment must not carry the notify
        # socket (a child must not speak for mailsync)
        self.write_config(password=None,
                          password_command="env > %s; echo %s" % (env_file, self.user.password))
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=31))
        env = tb.mailsync_env(self.work, {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1200000"})
        p = tb.start_mailsync(["-v", "watch", "--interval", "3600", self.account], config=self.config_path,
                              env=env)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        got = []  # (monotonic time, message)

        def drain(until):
            while time.monotonic() < until:
                try:
                    got.append((time.monotonic(), sock.recv(4096).decode()))
                except socket.timeout:
                    pass
        drain(time.monotonic() + 1)
        self.assertTrue(got and got[0][1].startswith("READY=1"), got)
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 2), Path(p.err_path).read_text())
        # idle for 4 s: the watchdog (1.2 s) is fed at least every 0.4 s or so
        t0 = time.monotonic()
        drain(t0 + 4)
        pings = [t for t, m in got if m == "WATCHDOG=1" and t >= t0]
        self.assertGreaterEqual(len(pings), 5, got)
        gaps = [b - a for a, b in zip([t0] + pings, pings + [time.monotonic()])]
        self.assertLess(max(gaps), 1.2, "a watchdog gap of %.2f s" % max(gaps))
        self.assertTrue(any(m.startswith("STATUS=pass 1 at ") and "2 new" in m for _, m in got), got)
        # the watch still sees new mail though each IDLE is cut short
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=32, start=50))
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 3, timeout=20),
                        Path(p.err_path).read_text())
        os.kill(p.pid, signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, Path(p.err_path).read_text())
        drain(time.monotonic() + 0.5)
        self.assertEqual(got[-1][1], "STOPPING=1", got[-3:])
        child_env = env_file.read_text()
        self.assertNotIn("NOTIFY_SOCKET", child_env)
        self.assertNotIn("WATCHDOG_USEC", child_env)

    def test_without_systemd_nothing_is_sent(self):
        """No NOTIFY_SOCKET: no watchdog pieces (one long IDLE)."""
        p = tb.start_mailsync(["-v", "watch", "--interval", "3600", self.account], config=self.config_path,
                              workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.assertTrue(wait_for(lambda: "watching" in Path(p.err_path).read_text()))
        time.sleep(1)
        os.kill(p.pid, signal.SIGTERM)
        self.assertEqual(p.wait(15), 0)
        self.assertNotIn("watchdog", Path(p.err_path).read_text())


class WatchKeepaliveTest(tb.BedTestCase):
    """Dovecot says "* OK Still here" during IDLE (here every second): that
    is no change, and starts no pass."""
    bed_options = {"pool": 2, "extra_conf": "imap_idle_notify_interval = 1 secs"}

    def test_keepalives_start_no_pass(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=16))
        p = tb.start_mailsync(["watch", "--interval", "3600"], config=self.config_path, workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) == 1))
        time.sleep(4)
        os.kill(p.pid, signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, Path(p.err_path).read_text())
        passes = [l for l in Path(p.out_path).read_text().splitlines() if ": sync " in l]
        self.assertEqual(len(passes), 1, passes)


def inbox_mail_comes_at_once(case, seed):
    """One message in INBOX, a watch with an hour's interval, one more
    message: it must come within seconds (IDLE). Then SIGTERM, exit 0.
    The watch's stderr."""
    with case.imap() as c:
        c.append_many("INBOX", tb.make_corpus(1, seed=seed))
    p = tb.start_mailsync(["-v", "watch", "--interval", "3600"], config=case.config_path, workdir=case.work)
    case.addCleanup(lambda: p.poll() is None and p.kill())
    case.assertTrue(wait_for(lambda: tb.count_messages(case.maildir) == 1))
    with case.imap() as c:
        c.append_many("INBOX", tb.make_corpus(1, seed=seed + 1, start=40))
    case.assertTrue(wait_for(lambda: tb.count_messages(case.maildir) == 2, timeout=20), Path(p.err_path).read_text())
    os.kill(p.pid, signal.SIGTERM)
    case.assertEqual(p.wait(15), 0, Path(p.err_path).read_text())
    return Path(p.err_path).read_text()


class WatchWithoutNotifyTest(tb.BedTestCase):
    """A server without NOTIFY: the IDLE session has INBOX selected, and
    new INBOX mail still comes at once."""
    bed_options = {"pool": 2, "hide_capabilities": ("NOTIFY",)}

    def test_inbox_mail_comes_through_idle(self):
        err = inbox_mail_comes_at_once(self, seed=21)
        self.assertIn("changes in INBOX (IDLE)", err)
        self.assertNotIn("(NOTIFY)", err)


class WatchNotifyRefusedTest(tb.BedTestCase):
    bed_options = {"pool": 2}

    def test_notify_refused_falls_back_to_inbox(self):
        """The server offers NOTIFY but answers NO to it (a proxy rewrites
        the answer): the watch says so and IDLEs on INBOX instead."""
        refused = []

        def refuse(line):
            if b"OK NOTIFY completed" in line:
                refused.append(line)
                return [line.split(b" ", 1)[0] + b" NO [NOTIFICATIONOVERFLOW] Too many mailboxes"]
            return [line]
        with tb.Proxy(self.bed.imap_port, rewrite_down=tb.line_rewriter(refuse)) as proxy:
            self.write_config(tls="none", port=proxy.port)
            err = inbox_mail_comes_at_once(self, seed=23)
        self.assertTrue(refused, "the proxy saw no NOTIFY answer")
        self.assertIn("NOTIFY refused: Too many mailboxes; watching INBOX only", err)
        self.assertIn("changes in INBOX (IDLE)", err)


class WatchStopsMidPassTest(tb.BedTestCase):
    """SIGTERM during a long first pass ends the watch within seconds, not
    at the end of the pass: what came is kept, and the next run brings the
    rest, once each."""
    bed_options = {"pool": 2}

    def test_sigterm_during_a_long_download(self):
        with self.imap() as c:
            c.create_folder("Later")
            c.append_many("Later", tb.make_corpus(3, seed=26, start=500))
            c.append_many("INBOX", tb.make_corpus(60, seed=25, size=100000))
        # about 6 MB through a proxy that waits 25 ms per 16 KiB: ~10 s
        with tb.Proxy(self.bed.imap_port, delay=0.025) as proxy:
            self.write_config(tls="none", port=proxy.port)
            p = tb.start_mailsync(["-v", "watch", "--interval", "3600"], config=self.config_path, workdir=self.work)
            self.addCleanup(lambda: p.poll() is None and p.kill())
            # more than Later's 3: the signal comes during INBOX's download,
            # not between the folders (under load it used to)
            self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) > 3, timeout=30),
                            Path(p.err_path).read_text())
            os.kill(p.pid, signal.SIGTERM)
            t0 = time.monotonic()
            self.assertEqual(p.wait(30), 0, Path(p.err_path).read_text())
            stopped_after = time.monotonic() - t0
        err = Path(p.err_path).read_text()
        self.assertFalse(any(m in err for m in tb.SANITIZER_MARKERS), err)
        self.assertLess(stopped_after, 5, err)
        self.assertIn("INBOX: stopped by a signal during the download", err)
        out = Path(p.out_path).read_text()
        self.assertIn("(stopped)", out)
        self.assertNotIn("failed", out)
        got = tb.count_messages(self.maildir)
        self.assertLess(got, 63, "the pass ran to its end")
        # the next run finishes the job: every message once
        self.write_config()
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 63)
        self.assertSynced()

    def test_sigterm_during_long_uploads(self):
        """Uploads stop at the next chunk of 64 (each chunk is journalled
        before its APPENDs): the next push sends the rest, none twice."""
        self.pull()
        self.add_local_new(150, seed=27)
        # every APPEND waits two round trips of 40 ms: a chunk takes ~5 s
        with tb.Proxy(self.bed.imap_port, latency=0.02) as proxy:
            self.write_config(tls="none", port=proxy.port)
            p = tb.start_mailsync(["-v", "watch", "--interval", "3600"], config=self.config_path, workdir=self.work)
            self.addCleanup(lambda: p.poll() is None and p.kill())
            self.assertTrue(wait_for(lambda: self.server_count() > 0, timeout=30), Path(p.err_path).read_text())
            os.kill(p.pid, signal.SIGTERM)
            self.assertEqual(p.wait(30), 0, Path(p.err_path).read_text())
        err = Path(p.err_path).read_text()
        self.assertIn("stopped by a signal after", err)
        self.assertIn(self.server_count(), (64, 128), err)
        self.write_config()
        r = self.run_ok("push")
        self.assertEqual(self.server_count(), 150, r.stdout)
        self.assertSynced()
