# SPDX-License-Identifier: MIT
"""test_crash.py: `mailsync pull` killed with SIGKILL part-way, then re-run.

The contract: no mail lost or duplicated whatever point a run is killed at;
re-running finishes the job and never starts over. Each test seeds ~300
messages of ~50 KB (INBOX and a nested folder), starts a pull through a
throttling proxy (so the kill point is reproducible on any machine), kills
it once the first files appear or a given share of the mail went over the
wire (not by file counts: delivery may be batched), re-runs it, and checks
the Maildir against the server byte for byte: exactly one copy each.
"""

import os
import signal
import sqlite3
import time
import unittest

import testbed as tb

N_INBOX, N_ARCHIVE, SIZE = 200, 100, 50000


class CrashTest(tb.BedTestCase):
    bed_options = {"pool": 12}

    def setUp(self):
        super().setUp()
        # Seed straight into the server's Maildir: 15 MB via APPEND would
        # cost more time than the tests themselves.
        with self.imap() as c:
            c.create_folder("Archive/2024")
        self.bed.seed_direct(self.user, "INBOX",
                             tb.make_corpus(N_INBOX, seed=21, size=(SIZE - 5000, SIZE + 5000)))
        self.bed.seed_direct(self.user, "Archive/2024",
                             tb.make_corpus(N_ARCHIVE, seed=22, size=(SIZE - 5000, SIZE + 5000),
                                            start=N_INBOX))
        self.server = self.server_state()
        self.total_bytes = sum(len(m.data) for ms in self.server.values() for m in ms)
        self.assertEqual(sum(len(v) for v in self.server.values()), N_INBOX + N_ARCHIVE)
        self.proxy = tb.Proxy(self.bed.imaps_port, delay=0.002, chunk=16384).start()
        self.addCleanup(self.proxy.stop)
        self.write_config(port=self.proxy.port)

    def kill_when(self, min_messages=None, min_bytes=None, after=None, timeout=60):
        """Start a pull and SIGKILL it once the Maildir holds min_messages
        files, or the proxy passed min_bytes more bytes, or after `after`
        seconds. Fails if the pull finished before the kill point."""
        start_bytes = self.proxy.bytes_down
        p = tb.start_mailsync(["pull"], config=self.config_path, workdir=self.work)
        t0 = time.monotonic()
        try:
            while True:
                if p.poll() is not None:
                    res = tb.finish_mailsync(p)
                    self.fail("pull ended (exit %s) before the kill point; slow the proxy\n%s"
                              % (res.code, res))
                elapsed = time.monotonic() - t0
                if after is not None and elapsed >= after:
                    break
                if min_bytes is not None and self.proxy.bytes_down - start_bytes >= min_bytes:
                    break
                if min_messages is not None and tb.count_messages(self.maildir) >= min_messages:
                    break
                self.assertLess(elapsed, timeout, "kill point never reached")
                time.sleep(0.005)
            os.kill(p.pid, signal.SIGKILL)
        finally:
            res = tb.finish_mailsync(p)
        self.assertEqual(res.code, -signal.SIGKILL, "not killed: %s" % res)
        return tb.count_messages(self.maildir)

    def finish_and_check(self):
        """Re-run to completion, compare with the server, check the next run
        is a no-op. Returns the bytes the recovery run downloaded."""
        self.proxy.delay = 0
        before = self.proxy.bytes_down
        self.pull(timeout=180)
        fetched = self.proxy.bytes_down - before
        tb.assert_maildir_matches(self.maildir, self.server)
        snap = tb.snapshot_tree(self.maildir)
        self.pull()
        self.assertEqual(snap, tb.snapshot_tree(self.maildir), "pull after recovery changed files")
        return fetched

    def test_kill_after_first_files(self):
        self.kill_when(min_messages=1)
        self.finish_and_check()

    def test_kill_mid_literal(self):
        # After connecting, logging in and part of the first message body:
        # by bytes on the wire, not by files.
        self.kill_when(min_bytes=SIZE // 2 + 8000)
        self.finish_and_check()

    def test_kill_in_the_middle(self):
        self.kill_when(min_bytes=self.total_bytes * 0.4)
        self.finish_and_check()

    def test_kill_in_second_folder(self):
        # INBOX is two thirds of the bytes; Archive/2024 comes after or before
        # it, so 80 % is inside the second folder either way.
        self.kill_when(min_bytes=self.total_bytes * 0.8)
        self.finish_and_check()

    def test_kill_repeatedly(self):
        """Several kills in a row, each as soon as the run has stored
        something more (delivery may be batched, so "more" is the next batch),
        then one mid-transfer: no run loses what an earlier one stored, every
        run makes progress, and the end result is exactly one copy of each."""
        total = N_INBOX + N_ARCHIVE
        got = self.kill_when(min_messages=1)
        for _ in range(2):
            if got >= total - 1:
                break                   # one batch held nearly everything
            more = self.kill_when(min_messages=got + 1)
            self.assertGreater(more, got)
            got = more
        if got < total - 1:
            last = self.kill_when(min_bytes=self.total_bytes * 0.05)
            self.assertGreaterEqual(last, got, "messages disappeared after a kill")
        self.finish_and_check()

    def test_resume_does_not_start_over(self):
        self.kill_when(min_bytes=self.total_bytes * 0.9)
        refetched = self.finish_and_check()
        self.assertLess(refetched, self.total_bytes * 0.6,
                        "resume downloaded %d of %d bytes: it started over" % (refetched, self.total_bytes))

if __name__ == "__main__":
    unittest.main()


class FlagRecordsCrashTest(tb.BedTestCase):
    """Flag changes of several folders are recorded in one transaction at
    the run's end. A run killed after it renamed the files of one folder
    but before that commit must leave nothing a re-run cannot finish."""
    bed_options = {"pool": 4}

    def state_rows(self):
        db = sqlite3.connect("file:%s?mode=ro" % self.state, uri=True)
        try:
            return sorted(db.execute("SELECT folder_id, uid, flags, keywords FROM messages"))
        finally:
            db.close()

    def test_kill_before_the_shared_commit(self):
        uids = {}
        with self.imap() as c:
            c.create_folder("Archive")
            uids["INBOX"] = c.append_many("INBOX", tb.make_corpus(12, seed=31, size=(400, 900)))
            uids["Archive"] = c.append_many("Archive", tb.make_corpus(12, seed=32, size=(400, 900),
                                                                      start=100))
        self.pull()
        recorded = self.state_rows()
        with self.imap() as c:
            for folder in ("INBOX", "Archive"):
                c.set_flags(folder, uids[folder][:5], ["\\Flagged", "\\Seen"])
                c.set_flags(folder, uids[folder][5:7], ["\\Seen"], mode="-")
        server = self.server_state()
        # Plain IMAP through a stalling proxy: the kill comes while the
        # second changed folder is being opened, when the first one's files
        # are renamed and its records wait in the open transaction.
        self.run_killed_at("pull", (b"EXAMINE", 2))
        # The window was hit: some files already carry the new flags while
        # no record changed.
        flagged = sum(1 for ms in tb.read_maildir(self.maildir).values() for m in ms if "F" in m.letters)
        self.assertGreaterEqual(flagged, 5, "no folder was renamed before the kill")
        self.assertEqual(self.state_rows(), recorded, "records were committed before the kill")
        self.write_config()
        self.pull()
        tb.assert_maildir_matches(self.maildir, server)
        snap = tb.snapshot_tree(self.maildir)
        self.pull()
        self.assertEqual(snap, tb.snapshot_tree(self.maildir))
