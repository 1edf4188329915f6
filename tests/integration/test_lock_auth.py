# SPDX-License-Identifier: MIT
"""test_lock_auth.py: the account lock and a run that fails before it has
authenticated, against a real Dovecot.

One run per account at a time: a second run exits 75 at once, also when
the lock file was deleted while the first run holds it (it used to create
a new lock file, lock that and upload the same messages again), and two
first runs of a fresh account racing never both run.

A run that fails before it has authenticated (wrong password, untrusted
or expired certificate) changes nothing on disk: on a fresh account no
Maildir root, state DB, its directory, lock, -wal/-shm or stamp files
appear; on a synced account every file keeps its bytes, inode and mtime
(no last error recorded, no integrity stamp rewritten). IMAP, POP3 and
watch alike.
"""

import collections
import fcntl
import hashlib
import os
import sqlite3
import signal
import time
import unittest
from pathlib import Path

import testbed as tb


def tree(root):
    """snapshot_tree plus every file's content digest: equal trees mean no
    file under root was created, removed, replaced, written or touched."""
    snap = tb.snapshot_tree(root)
    for rel in list(snap):
        if not rel.endswith("/"):
            snap[rel] += (hashlib.sha256((Path(root) / rel).read_bytes()).hexdigest(),)
    return snap


class LockTest(tb.BedTestCase):
    bed_options = {"pool": 10}

    def start(self, *args):
        p = tb.start_mailsync(list(args), config=self.config_path, workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p

    def lock_file(self):
        return Path(str(self.state) + ".lock")

    def assert_once_each(self, want):
        """The server's INBOX and the local Maildir hold each of the
        `want` messages exactly once (by content), nothing else."""
        with self.imap() as c:
            server = collections.Counter(m.data_lf for m in c.messages("INBOX"))
        self.assertEqual(len(server), want, "server: %d distinct messages" % len(server))
        self.assertEqual(max(server.values()), 1, "duplicates on the server")
        local = collections.Counter(m.data for m in tb.read_maildir(self.maildir).get("INBOX", []))
        self.assertEqual(len(local), want, "local: %d distinct messages" % len(local))
        self.assertEqual(max(local.values()), 1, "duplicates in the Maildir")
        self.assertSynced()

    def second_run_locked_out(self, first, *args):
        """With `first` running: the lock file is deleted, and a second run
        must still exit 75 at once and leave the first undisturbed."""
        self.assertIsNone(first.poll(), "first run finished before the second started")
        self.lock_file().unlink()
        t0 = time.monotonic()
        second = self.mailsync(*args, timeout=60)
        self.assertEqual(second.code, 75, str(second))
        self.assertIn("lock", second.stderr)
        self.assertLess(time.monotonic() - t0, 10, "a locked run must exit at once")
        self.assertIsNone(first.poll(), "the second run disturbed the first")

    def test_deleted_lock_file_during_a_push(self):
        """The reported case: a push of many messages, its lock file
        removed, a second sync: it must not upload them again."""
        self.pull()
        self.add_local_new(100, seed=81)
        # every APPEND waits two round trips of 40 ms: a chunk of 64 takes ~5 s
        with tb.Proxy(self.bed.imap_port, latency=0.02) as px:
            self.write_config(tls="none", port=px.port)
            first = self.start("sync")
            self.assertTrue(tb.wait_for(lambda: self.server_count() > 0, timeout=30),
                            Path(first.err_path).read_text())
            self.second_run_locked_out(first, "sync")
            px.latency = 0      # the rest at full speed (the chunks in flight keep theirs)
            res = tb.finish_mailsync(first, timeout=120)
        self.assertEqual(res.code, 0, str(res))
        self.write_config()
        self.run_ok("sync")
        self.assert_once_each(100)

    def test_deleted_lock_file_during_a_pull(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(60, seed=82, size=20000, flags=False))
        with tb.Proxy(self.bed.imaps_port, delay=0.01, chunk=4096) as px:
            self.write_config(port=px.port)
            first = self.start("pull")
            self.assertTrue(tb.wait_for(lambda: px.bytes_down > 20000, timeout=30),
                            Path(first.err_path).read_text())
            self.second_run_locked_out(first, "pull")
            px.delay = 0
            res = tb.finish_mailsync(first, timeout=120)
        self.assertEqual(res.code, 0, str(res))
        self.write_config()
        self.pull()
        self.assert_once_each(60)

    def test_deleted_lock_file_during_a_watch_pass(self):
        """watch locks for each pass, all of it: a lock file deleted during
        a long pass lets no other run in."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(60, seed=84, size=20000, flags=False))
        with tb.Proxy(self.bed.imaps_port, delay=0.01, chunk=4096) as px:
            self.write_config(port=px.port)
            watch = self.start("watch", "--interval", "3600")
            self.assertTrue(tb.wait_for(lambda: px.bytes_down > 20000, timeout=30),
                            Path(watch.err_path).read_text())
            self.second_run_locked_out(watch, "pull")
            px.delay = 0
            self.assertTrue(tb.wait_for(lambda: tb.count_messages(self.maildir) == 60, timeout=60),
                            Path(watch.err_path).read_text())
            os.kill(watch.pid, signal.SIGTERM)
            res = tb.finish_mailsync(watch, timeout=30)
        self.assertEqual(res.code, 0, str(res))
        self.write_config()
        self.pull()
        self.assert_once_each(60)

    def test_first_runs_of_a_fresh_account_race(self):
        """No lock file yet (it is created only after the login): of two
        first runs started together one wins, the other exits 75 (or runs
        after it); never both at once."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(40, seed=83, size=20000, flags=False))
        with tb.Proxy(self.bed.imaps_port, delay=0.01, chunk=4096) as px:
            self.write_config(port=px.port)
            runs = [self.start("pull") for _ in range(2)]
            res = [tb.finish_mailsync(p, timeout=120) for p in runs]
        codes = sorted(r.code for r in res)
        self.assertIn(codes, ([0, 75], [0, 0]), "\n".join(map(str, res)))
        self.write_config()
        self.pull()
        self.assert_once_each(40)


FAULT_LIB = os.environ.get("MAILSYNC_FAULT_FSYNC_LIB")


@unittest.skipUnless(FAULT_LIB and os.path.exists(FAULT_LIB or ""),
                     "MAILSYNC_FAULT_FSYNC_LIB not set (ctest sets it to the built tests/fault shim)")
class ReplacedLockFileTest(tb.BedTestCase):
    bed_options = {"pool": 4}

    def test_lock_file_replaced_before_the_flock(self):
        """The lock file is replaced between the run's open and its flock
        (the preloaded shim does it, as a second run that deleted and
        created it would): the run must hold the lock on the file now at
        the path, not on the orphan, so another locker is refused."""
        self.pull()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(60, seed=85, size=20000, flags=False))
        env = tb.mailsync_env(self.work)
        env["LD_PRELOAD"] = FAULT_LIB
        env["MAILSYNC_FAULT_LOCK_SWAP"] = "1"
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        lock = str(self.state) + ".lock"
        with tb.Proxy(self.bed.imaps_port, delay=0.01, chunk=4096) as px:
            self.write_config(port=px.port)
            run = tb.start_mailsync(["pull"], config=self.config_path, env=env)
            self.addCleanup(lambda: run.poll() is None and run.kill())
            self.assertTrue(tb.wait_for(lambda: px.bytes_down > 20000, timeout=30),
                            Path(run.err_path).read_text())
            self.assertIsNone(run.poll(), "the run ended early")
            fd = os.open(lock, os.O_RDWR)
            try:
                with self.assertRaises(BlockingIOError, msg="the lock file at the path is not locked"):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
            px.delay = 0
            res = tb.finish_mailsync(run, timeout=120)
        self.assertEqual(res.code, 0, str(res))
        self.assertIn("fault_fsync: replaced", res.stderr)
        self.assertSynced()


class AuthFailureTest(tb.BedTestCase):
    bed_options = {"pool": 12}

    def pop_keys(self, **extra):
        keys = dict(type="pop3", port=self.bed.pop3s_port)
        keys.update(extra)
        return keys

    def seed(self, n=5):
        with self.imap() as c:
            c.create_folder("Archive")
            c.append_many("INBOX", tb.make_corpus(n, seed=91))
            c.append_many("Archive", tb.make_corpus(n, seed=92, start=n))

    def write_default_state_config(self, **keys):
        """The config without `state`: the state DB goes to its default
        place, $XDG_STATE_HOME/mailsync/ (below the work dir)."""
        keys = self.account_keys(**keys)
        del keys["state"]
        tb.write_config(self.config_path, {self.account: keys})

    def assert_nothing_created(self, code, *commands):
        """Each command exits with `code` and leaves the work dir holding
        the config only: no Maildir root, state DB or its directory
        (default: under $XDG_STATE_HOME), lock, -wal/-shm or stamp files."""
        for cmd in commands:
            with self.subTest(command=cmd):
                r = self.mailsync(cmd)
                self.assertEqual(r.code, code, str(r))
                self.assertTrue(r.stderr.strip(), "no error message")
                self.assertEqual(sorted(os.listdir(self.work)), ["config"], str(r))

    def assert_nothing_changed(self, code, *commands):
        before = tree(self.work)
        for cmd in commands:
            with self.subTest(command=cmd):
                r = self.mailsync(cmd)
                self.assertEqual(r.code, code, str(r))
                self.assertEqual(tree(self.work), before, str(r))

    def checked_stamp(self):
        return Path(str(self.state) + ".checked")

    # -- fresh account --------------------------------------------------------

    def test_fresh_account_wrong_password_creates_nothing(self):
        self.seed()
        self.write_default_state_config(password="wrong")
        self.assert_nothing_created(3, "pull", "sync", "push")
        self.write_config(password="wrong")
        self.assert_nothing_created(3, "pull", "sync")

    def test_fresh_account_untrusted_certificate_creates_nothing(self):
        self.seed()
        self.write_default_state_config(ca_file=self.bed.other_ca_file)
        self.assert_nothing_created(4, "pull", "sync")

    def test_fresh_pop3_account_wrong_password_creates_nothing(self):
        self.seed()
        self.write_default_state_config(**self.pop_keys(password="wrong"))
        self.assert_nothing_created(3, "pull", "sync")

    def test_fresh_account_watch_wrong_password_creates_nothing(self):
        self.write_config(password="wrong")
        self.assert_nothing_created(3, "watch")

    # -- synced account -------------------------------------------------------

    def test_synced_account_wrong_password_changes_nothing(self):
        """Nothing is written: no last error in the DB (status shows the
        last successful sync), no stamp or .lastrun file."""
        self.seed()
        self.pull()
        self.assertTrue(self.checked_stamp().exists())
        self.write_config(password="wrong")
        self.assert_nothing_changed(3, "pull", "sync", "push", "watch")
        # without a valid stamp the open checks the DB; the failed run must
        # not write the stamp of that check
        self.checked_stamp().unlink()
        self.assert_nothing_changed(3, "pull", "sync")
        self.write_config(ca_file=self.bed.other_ca_file)
        self.assert_nothing_changed(4, "pull", "sync")
        self.write_config()
        self.pull()
        self.assertSynced()

    def test_older_schema_is_upgraded_only_after_the_login(self):
        """A DB an older mailsync wrote (schema 1: no trash journal) is
        not upgraded by a run whose login fails; the next run that logs
        in upgrades it."""
        self.seed()
        self.pull()
        db = sqlite3.connect(str(self.state))
        db.execute("DROP TABLE trashing")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        db.commit()
        db.close()
        self.write_config(password="wrong")
        self.assert_nothing_changed(3, "pull", "sync")
        db = sqlite3.connect("file:%s?mode=ro" % self.state, uri=True)
        try:
            tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
        self.assertNotIn("trashing", tables)
        self.write_config()
        self.pull()
        db = sqlite3.connect("file:%s?mode=ro" % self.state, uri=True)
        try:
            tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        finally:
            db.close()
        self.assertIn("trashing", tables)
        self.assertEqual(version, "2")
        self.assertSynced()

    def test_synced_pop3_account_wrong_password_changes_nothing(self):
        self.seed()
        self.write_config(**self.pop_keys())
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 5)
        self.write_config(**self.pop_keys(password="wrong"))
        self.assert_nothing_changed(3, "pull", "sync")
        self.checked_stamp().unlink()
        self.assert_nothing_changed(3, "pull")


class ExpiredCertificateTest(tb.BedTestCase):
    bed_options = {"pool": 4, "cert": "expired"}

    def test_fresh_account_expired_certificate_creates_nothing(self):
        keys = self.account_keys()
        del keys["state"]  # the default: $XDG_STATE_HOME/mailsync/
        tb.write_config(self.config_path, {self.account: keys})
        for cmd in ("pull", "sync"):
            with self.subTest(command=cmd):
                r = self.mailsync(cmd)
                self.assertEqual(r.code, 4, str(r))
                self.assertIn("certificate", r.stderr.lower())
                self.assertEqual(sorted(os.listdir(self.work)), ["config"], str(r))


if __name__ == "__main__":
    tb.main()
