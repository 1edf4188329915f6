# SPDX-License-Identifier: MIT
"""test_storage.py: local storage failures: a full disk, a read-only
Maildir, a damaged state DB, a directory fsync that fails. Each must end
in exit 5 with nothing half written: no empty or partial message file, no
record of a message that is not on disk, and the server untouched.

A full and a read-only disk are real: a small tmpfs mounted for the test
(needs root, as CI has; skipped with the reason otherwise).
"""

import os
import shutil
import sqlite3
import subprocess
import unittest

import testbed as tb

SIZE = 50000


def mount_tmpfs(path, size):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(path)], check=True)


def remount(path, opts):
    subprocess.run(["mount", "-o", "remount,%s" % opts, str(path)], check=True)


class NothingHalfWritten:
    """For a test case with self.maildir."""

    def assert_nothing_half_written(self, server):
        by_data = {m.data_lf for ms in server.values() for m in ms}
        files = tb.message_files(self.maildir)
        for f in files:
            with open(f, "rb") as fh:
                data = fh.read()
            self.assertTrue(data, "empty message file %s" % f)
            self.assertIn(data, by_data, "partial or foreign message file %s" % f)
        return len(files)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("mount"), "needs root to mount a small tmpfs")
class StorageTest(NothingHalfWritten, tb.BedTestCase):
    bed_options = {"pool": 6}

    def setUp(self):
        super().setUp()
        self.mnt = self.work / "disk"
        self.mnt.mkdir()
        mount_tmpfs(self.mnt, "1m")
        self.addCleanup(subprocess.run, ["umount", "-l", str(self.mnt)])
        self.maildir = self.mnt / "Mail"
        self.write_config()

    def seed(self, n, start=0):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(n, seed=31, size=(SIZE - 2000, SIZE + 2000), start=start))

    def test_disk_full_exits_5_then_completes(self):
        self.seed(40)                                  # ~2 MB for a 1 MB disk
        server = self.server_state()
        r = self.mailsync("pull")
        self.assertEqual(r.code, 5, str(r))
        self.assertRegex(r.stderr, r"(?i)no space|disk|full")
        stored = self.assert_nothing_half_written(server)
        self.assertLess(stored, 40)
        self.assertEqual(self.server_state(), server, "a failed pull changed the server")
        # room again: the next run finishes the job, one copy each
        remount(self.mnt, "size=20m")
        self.pull()
        self.assertSynced()
        self.assertEqual(len(tb.message_files(self.maildir)), 40)

    def test_read_only_maildir_exits_5(self):
        self.seed(5)
        self.pull()
        self.seed(3, start=100)
        server = self.server_state()
        remount(self.mnt, "ro")
        self.addCleanup(remount, self.mnt, "rw")
        r = self.mailsync("pull")
        self.assertEqual(r.code, 5, str(r))
        self.assertEqual(self.server_state(), server)
        remount(self.mnt, "rw")
        self.pull()
        self.assertSynced()


class StateDbTest(tb.BedTestCase):
    bed_options = {"pool": 4}

    def test_damaged_state_db_exits_5_and_is_kept(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(30, seed=32, size=(2000, 4000)))
        self.pull()
        # fold the WAL into the main file, then damage its pages
        self.pull()
        for suffix in ("-wal", "-shm"):
            p = str(self.state) + suffix
            if os.path.exists(p):
                os.unlink(p)
        data = bytearray(self.state.read_bytes())
        self.assertGreater(len(data), 8192)
        # Wreck every page after the first two (b-tree headers and cells):
        # structural damage, which SQLite's quick_check finds. (A flipped
        # bit inside a record's text is not detectable without checksums.)
        page = 4096
        for off in range(2 * page, len(data), page):
            data[off:off + page] = bytes((i * 131 + off) % 251 for i in range(page))
        self.state.write_bytes(bytes(data))
        snap = tb.snapshot_tree(self.maildir)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 5, str(r))
        self.assertIn("state DB", r.stderr)
        self.assertEqual(self.state.read_bytes(), bytes(data), "the damaged DB was changed or replaced")
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)

    def test_state_db_that_is_not_sqlite(self):
        self.state.write_bytes(b"this is not a database\n" * 100)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 5, str(r))
        self.assertIn("unusable", r.stderr)
        self.assertFalse(self.maildir.exists(), "a pull with an unusable DB created the Maildir")


if __name__ == "__main__":
    unittest.main()


FAULT_LIB = os.environ.get("MAILSYNC_FAULT_FSYNC_LIB")


@unittest.skipUnless(FAULT_LIB and os.path.exists(FAULT_LIB or ""),
                     "MAILSYNC_FAULT_FSYNC_LIB not set (ctest sets it to the built tests/fault shim)")
class DirFsyncFailureTest(NothingHalfWritten, tb.BedTestCase):
    """A directory fsync that fails after renames (EIO from a dying disk):
    the run must end in exit 5 with the renames' records not committed,
    and the next run must finish the job with one copy of each message.
    The failure is real to mailsync: a preloaded shim (tests/fault/
    fault_fsync.c) makes fsync() of directories under the Maildir fail."""

    bed_options = {"pool": 6}

    def faulty_env(self, what="dir-fsync", let_through=0):
        env = tb.mailsync_env(self.work)
        env["LD_PRELOAD"] = FAULT_LIB
        if what == "syncfs":
            env["MAILSYNC_FAULT_SYNCFS"] = "1"
        elif what == "helper-syncfs":
            env["MAILSYNC_FAULT_SYNCFS"] = "helper"
        else:
            env["MAILSYNC_FAULT_DIR_FSYNC"] = str(let_through)
            env["MAILSYNC_FAULT_DIR_FSYNC_UNDER"] = os.path.realpath(self.maildir)
        # the shim is not sanitized: let a sanitized build load it first
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        return env

    def db_view(self):
        db = sqlite3.connect(str(self.state))
        try:
            folder = db.execute("SELECT highestmodseq FROM folders WHERE name = 'INBOX'").fetchone()
            flags = dict(db.execute("SELECT uid, flags FROM messages WHERE folder_id = "
                                    "(SELECT id FROM folders WHERE name = 'INBOX')"))
        finally:
            db.close()
        return folder, flags

    def rows(self, where=""):
        """How many message rows the state DB holds (where: a SQL filter)."""
        db = sqlite3.connect(str(self.state))
        try:
            return db.execute("SELECT count(*) FROM messages " + where).fetchone()[0]
        finally:
            db.close()

    def assert_batch_refused_then_fetched(self, n):
        """After a pull whose delivery batch could not be made durable:
        nothing recorded, no file out of tmp/; the next pull brings the n
        messages, one copy each."""
        self.assertEqual(self.rows(), 0)
        self.assertEqual(tb.message_files(self.maildir), [], "a file left tmp/ without a durable batch")
        self.pull()
        self.assertSynced()
        self.assertEqual(len(tb.message_files(self.maildir)), n)

    def seed(self, n, seed, pull=True, size=(1500, 3000)):
        """n messages in INBOX (pulled once); -> their UIDs."""
        with self.imap() as c:
            uids = c.append_many("INBOX", tb.make_corpus(n, seed=seed, size=size))
        if pull:
            self.pull()
        return uids

    def faulty_pull(self, what="dir-fsync", let_through=0):
        """A pull whose directory fsyncs under the Maildir (after the first
        let_through; or, what = "syncfs", whose syncfs calls) fail: exit 5."""
        r = tb.run_mailsync(["pull"], config=self.config_path, env=self.faulty_env(what, let_through))
        self.assertIn("fault_fsync: failing", r.stderr, "the fault was not hit\n%s" % r)
        self.assertEqual(r.code, 5, str(r))
        self.assertRegex(r.stderr, r"cannot (fsync|sync the file system of) .*Input/output error")
        return r

    def fault_after(self, n, seed, change, left):
        """n messages pulled, change(client, uids) on the server, then a
        pull whose directory fsync fails: its records (and the folder's
        new HIGHESTMODSEQ) are rolled back, the state still describes the
        run before, the server is untouched; once the disk is back the
        next run finishes with `left` messages, one copy each."""
        uids = self.seed(n, seed)
        before = self.db_view()
        with self.imap() as c:
            change(c, uids)
        server = self.server_state()
        self.faulty_pull()
        self.assertEqual(self.db_view(), before)
        self.assertEqual(self.server_state(), server, "a failed pull changed the server")
        self.pull()
        self.assertSynced()
        self.assertEqual(len(tb.message_files(self.maildir)), left)
        self.assertEqual(len(self.db_view()[1]), left)
        self.assertNotEqual(self.db_view(), before)

    def test_failed_directory_fsync_exits_5_and_commits_nothing(self):
        def flags(c, uids):
            c.set_flags("INBOX", uids[:5], ["\\Seen"])
            c.set_flags("INBOX", uids[5:8], ["\\Flagged"])
        self.fault_after(12, 33, flags, 12)

    def test_failed_directory_fsync_after_deletions_exits_5(self):
        self.fault_after(10, 35, lambda c, uids: c.expunge_uids("INBOX", uids[:4]), 6)

    def test_failed_directory_fsync_on_delivery_leaves_no_duplicate(self):
        self.seed(10, 34, pull=False)
        server = self.server_state()
        # the first one is the Maildir root's, for the generation marker
        # written before the run's first record (sync/engine/generation.c)
        self.faulty_pull(let_through=1)
        # whatever reached the disk is whole, and none of it is recorded as
        # synced: the rows are still the journal's "pending" intent
        self.assert_nothing_half_written(server)
        self.assertEqual(self.rows("WHERE NOT pending"), 0)
        # the next run finishes those deliveries: one copy each
        self.pull()
        self.assertSynced()
        self.assertEqual(len(tb.message_files(self.maildir)), 10)

    def test_failed_syncfs_on_delivery_records_nothing(self):
        """syncfs makes a batch of new files durable before anything about
        them is recorded: when it fails, not even the journal's intent is
        written, the files stay in tmp/, and the next run fetches them
        again, one copy each."""
        self.seed(10, 36, pull=False)
        self.faulty_pull("syncfs")
        self.assert_batch_refused_then_fetched(10)

    def test_failed_syncfs_ahead_fails_the_batch(self):
        """While a batch streams in, a helper thread starts a syncfs every
        256 KiB, so that the batch's own syncfs finds the data on disk.
        When that early one fails (EIO) and the batch's own succeeds (the
        kernel may not report the same error twice), the batch must still
        fail, with nothing recorded and nothing out of tmp/."""
        self.seed(12, 37, pull=False, size=(40000, 50000))  # ~540 KB, one batch
        r = self.faulty_pull("helper-syncfs")
        self.assertIn("(ms-dirsync thread)", r.stderr, "no early syncfs failed")
        # the batch's own syncfs (in the committer) succeeded: the early
        # failure alone must fail the batch
        self.assertEqual(r.stderr.count("fault_fsync: failing syncfs"), r.stderr.count("(ms-dirsync thread)"))
        self.assertEqual(r.stderr.count("Input/output error"), 1, "the cause is printed once\n" + r.stderr)
        self.assert_batch_refused_then_fetched(12)
