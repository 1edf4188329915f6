# SPDX-License-Identifier: MIT
"""test_pop3.py: POP3 accounts (`type = pop3`) against a real Dovecot
(dovecot-pop3d): pull-only, tracked by UIDL, leave_on_server and
server_retention_days, crash-safe.

Every message arrives once in INBOX/new, byte for byte (CRLF as LF,
dot-stuffing undone); a second pull fetches nothing; with leave_on_server =
no the server is emptied only of what is stored; with retention only what
was fetched more than N days ago leaves the server; a pull killed in the
middle finishes without a duplicate; implicit TLS and STLS both verify the
test CA; a push has nothing to do.
"""

import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import testbed as tb


class Pop3Test(tb.BedTestCase):
    bed_options = {"pool": 10}

    def pop_keys(self, tls="implicit", **extra):
        port = self.bed.pop3s_port if tls == "implicit" else self.bed.pop3_port
        keys = dict(type="pop3", port=port, tls=tls)
        keys.update(extra)
        return keys

    def use_pop3(self, **kw):
        self.write_config(**self.pop_keys(**kw))

    def seed(self, n=4, seed=31):
        msgs = tb.make_corpus(n, seed=seed, flags=False)
        # a line starting with "." must survive dot-stuffing
        msgs.append(tb.SeedMessage(b"Subject: dots\r\nMessage-ID: <dots@test>\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n",
                                   (), 1700000000))
        with self.imap() as c:
            c.append_many("INBOX", msgs)
        # POP3 ends every message with a line break (a message without a
        # final one cannot be told from one with it on this protocol)
        return sorted(m.data_lf if m.data_lf.endswith(b"\n") else m.data_lf + b"\n" for m in msgs)

    def local(self):
        return sorted(m.data for m in tb.read_maildir(self.maildir).get("INBOX", []))

    def test_pull_fetches_each_message_once(self):
        want = self.seed()
        self.use_pop3()
        r = self.pull()
        self.assertIn("5 new", r.stdout)
        # the folder line of status says when, as the account line does
        st = self.run_ok("status").stdout
        inbox = [ln for ln in st.splitlines() if ln.strip().startswith("INBOX")]
        self.assertEqual(len(inbox), 1, st)
        self.assertRegex(inbox[0], r"synced \d{4}-\d\d-\d\d \d\d:\d\d", st)
        self.assertNotIn("never", inbox[0])
        self.assertEqual(self.local(), want)
        for m in tb.read_maildir(self.maildir)["INBOX"]:
            self.assertEqual(m.subdir, "new")
        self.assertIn("0 new", self.pull().stdout)
        self.assertEqual(self.local(), want)
        self.assertEqual(self.server_count(), 5)      # leave_on_server = yes (default)
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=32, start=90))
        self.assertIn("1 new", self.pull().stdout)
        self.assertEqual(len(self.local()), 6)
        r = self.run_ok("status")
        self.assertIn("INBOX", r.stdout)
        self.assertIn("to push: 0 new, 0 flag changes, 0 deleted", r.stdout)

    def test_leave_on_server_no_empties_the_server(self):
        want = self.seed()
        self.use_pop3(leave_on_server="no")
        r = self.pull()
        self.assertIn("5 removed from the server", r.stdout)
        self.assertEqual(self.server_count(), 0)
        self.assertEqual(self.local(), want)

    def test_retention_days(self):
        want = self.seed()
        self.use_pop3(server_retention_days="7")
        self.pull()
        self.assertEqual(self.server_count(), 5)
        with sqlite3.connect(self.state) as db:
            db.execute("UPDATE pop3 SET first_seen = first_seen - 8 * 86400 WHERE uidl IN "
                       "(SELECT uidl FROM pop3 ORDER BY uidl LIMIT 2)")
        r = self.pull()
        self.assertIn("2 removed from the server", r.stdout)
        self.assertEqual(self.server_count(), 3)
        self.assertEqual(self.local(), want)

    def test_starttls_and_plain_loopback(self):
        want = self.seed(n=2)
        self.use_pop3(tls="starttls")
        self.pull()
        self.assertEqual(self.local(), want)
        self.use_pop3(tls="none")
        self.assertIn("0 new", self.pull().stdout)

    def test_killed_mid_pull_finishes_without_duplicates(self):
        want = self.seed(n=6)
        with tb.Proxy(self.bed.pop3_port, stall_on=(b"RETR ", 4)) as proxy:
            self.write_config(**self.pop_keys(tls="none", port=proxy.port))
            p = tb.start_mailsync(["pull"], config=self.config_path, workdir=self.work)
            try:
                self.assertTrue(proxy.stalled.wait(30), "the fourth RETR never came")
                time.sleep(0.3)
                self.assertIsNone(p.poll())
                os.kill(p.pid, signal.SIGKILL)
            finally:
                p.wait(10)
        self.use_pop3()
        self.pull()
        self.assertEqual(self.local(), want)
        self.assertIn("0 new", self.pull().stdout)

    def test_pending_rows_are_finished(self):
        """What a run killed between its records and its renames leaves:
        a pending row whose file is still in tmp/ is moved into place (not
        fetched again); one whose file is gone is fetched again once the
        run is over 36 hours old (tmp/ may have been swept; a younger one's
        file was put in place and deleted by the user: test_kill_windows)."""
        want = self.seed(n=2)
        self.use_pop3()
        self.pull()
        files = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.uniq)
        tmp = self.maildir / "INBOX" / "tmp"
        os.rename(files[0].path, tmp / files[0].uniq)
        os.unlink(files[1].path)
        with sqlite3.connect(self.state) as db:
            db.execute("UPDATE pop3 SET pending = 1 WHERE uniq IN (?, ?)", (files[0].uniq, files[1].uniq))
            db.execute("INSERT OR REPLACE INTO meta (key, value) SELECT 'journal_at:' || id, ? FROM folders "
                       "WHERE name = 'INBOX'", (str(int(time.time()) - 37 * 3600),))
        r = self.pull()
        self.assertIn("1 new", r.stdout)
        self.assertEqual(self.local(), want)
        self.assertFalse(os.listdir(tmp))
        with sqlite3.connect(self.state) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM pop3 WHERE pending").fetchone()[0], 0)

    def test_lost_db_delivers_nothing_twice(self):
        """Without its DB, a pull compares what it downloads with INBOX's
        files: what is already here is recorded, not delivered again (the
        next pull fetches nothing); only what is new arrives."""
        want = self.seed()
        self.use_pop3()
        self.pull()
        for p in self.work.glob("state.sqlite*"):
            p.unlink()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=33, start=95, flags=False))
        r = self.pull()
        self.assertIn("knows no POP3 message while INBOX holds 5 files", r.stderr)
        self.assertIn("1 new", r.stdout)
        after = self.local()
        self.assertEqual(len(after), 6, "a message was delivered twice")
        self.assertEqual([m for m in want if m not in after], [])
        r = self.pull()
        self.assertIn("0 new", r.stdout)
        self.assertNotIn("knows no POP3 message", r.stderr)
        self.assertEqual(self.local(), after)

    def test_restored_db_backup_delivers_nothing_twice(self):
        """A state DB restored from a backup is stale (the Maildir's marker
        is ahead): moved aside, and what came since the backup is matched
        by content, not delivered a second time; with leave_on_server = no
        the matched messages then leave the server."""
        want = self.seed()
        self.use_pop3()
        self.pull()
        backup = self.work / "backup.sqlite"
        shutil.copy2(self.state, backup)
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=34, start=96, flags=False))
        self.assertIn("3 new", self.pull().stdout)
        everything = self.local()
        self.assertEqual(len(everything), 8)
        shutil.copy2(backup, self.state)
        self.use_pop3(leave_on_server="no")
        r = self.pull()
        self.assertIn("older than the Maildir", r.stderr)
        self.assertIn("0 new", r.stdout)
        self.assertEqual(self.local(), everything)
        self.assertEqual(self.server_count(), 0)
        self.assertIn("0 new", self.pull().stdout)
        self.assertEqual(self.local(), everything)
        self.assertTrue(set(want) <= set(everything))

    def test_check(self):
        self.seed(n=2)
        self.use_pop3()
        r = self.run_ok("check")
        self.assertIn("TLS: TLSv1", r.stdout)
        self.assertIn("POP3 UIDL (3 messages in the maildrop)", r.stdout)
        self.use_pop3(password="wrong")
        self.assertEqual(self.mailsync("check").code, 3)

    def test_wrong_password_and_push(self):
        self.seed(n=1)
        self.use_pop3(password="wrong")
        r = self.pull(expect=3)
        self.assertIn("refused", r.stderr)
        self.use_pop3()
        r = self.run_ok("push")
        self.assertIn("pull-only", r.stderr)
        self.assertEqual(self.local(), [])


class FakePop3:
    """A POP3 server on loopback that plays a script: greeting, USER/PASS,
    UIDL and LIST of one message, then `retr` (bytes) as the answer to
    RETR; or `greeting` instead of a proper one."""

    def __init__(self, retr=b"", size=100, greeting=b"+OK fake\r\n"):
        import socket
        import threading
        self.retr, self.size, self.greeting = retr, size, greeting
        self.sock = socket.socket()
        self.sock.bind((tb.HOST, 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            f = conn.makefile("rb")
            try:
                conn.sendall(self.greeting)
                for line in f:
                    cmd = line.strip().split(b" ")[0].upper()
                    if cmd in (b"USER", b"PASS", b"DELE"):
                        conn.sendall(b"+OK\r\n")
                    elif cmd == b"UIDL":
                        conn.sendall(b"+OK\r\n1 uid-one\r\n.\r\n")
                    elif cmd == b"LIST":
                        conn.sendall(b"+OK\r\n1 %d\r\n.\r\n" % self.size)
                    elif cmd == b"RETR":
                        conn.sendall(b"+OK\r\n" + self.retr)
                    elif cmd == b"QUIT":
                        conn.sendall(b"+OK bye\r\n")
                        return
                    else:
                        conn.sendall(b"-ERR unknown\r\n")
            except OSError:
                return

    def close(self):
        self.sock.close()


class Pop3HostileTest(tb.BedTestCase):
    """Hostile POP3 servers: a clear error and exit 4, no crash, nothing
    half-delivered."""
    bed_options = {"pool": 6}

    def run_against(self, server):
        self.addCleanup(server.close)
        self.write_config(type="pop3", port=server.port, tls="none", ca_file=None, timeout="3")
        return self.mailsync("pull", timeout=60)

    def no_files(self):
        return tb.count_messages(self.maildir) if self.maildir.exists() else 0

    def test_endless_body_is_cut_off(self):
        r = self.run_against(FakePop3(retr=(b"x" * 70 + b"\r\n") * 50000, size=100))     # 3.6 MB for 100
        self.assertEqual(r.code, 4, r)
        self.assertIn("more than twice", r.stderr)
        self.assertEqual(self.no_files(), 0)
        tmp = self.maildir / "INBOX" / "tmp"
        self.assertEqual(os.listdir(tmp) if tmp.exists() else [], [])

    def test_overlong_status_line(self):
        r = self.run_against(FakePop3(greeting=b"+OK " + b"a" * 20000 + b"\r\n"))
        self.assertEqual(r.code, 4, r)
        self.assertIn("too long", r.stderr)

    def test_not_pop3(self):
        r = self.run_against(FakePop3(greeting=b"* OK IMAP4rev1 ready\r\n"))
        self.assertEqual(r.code, 4, r)
        self.assertIn("greeting", r.stderr)

    def test_body_without_end_then_close(self):
        r = self.run_against(FakePop3(retr=b"Subject: cut\r\n\r\npart", size=100))
        self.assertEqual(r.code, 4, r)
        self.assertEqual(self.no_files(), 0)
