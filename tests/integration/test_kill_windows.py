# SPDX-License-Identifier: MIT
"""test_kill_windows.py: the two windows test_random_kills found (issue 16,
"the flaky random-kill test"), each hit on purpose: a run killed at that
point, a change by the user, then a complete `sync`.

  * A flag change pushed (UID STORE answered) by a run killed before its
    record was committed, then changed back locally: the server must end
    with the user's last word, not with the flag the dead run stored.
  * A download killed after a batch of files was put in place but before
    the batch's rows were confirmed; the user deletes one of those new
    files: the deletion must reach the server, not be undone by fetching
    the message again.

Cheap on purpose: one bed, a handful of small messages, no sleeps but the
proxy's stall and a poll for the first files.
"""

import os
import signal
import sqlite3
import time

import testbed as tb


class KillWindowTest(tb.BedTestCase):
    bed_options = {"pool": 2}
    trash = None

    def write_config(self, file_mode=0o600, **keys):
        """Every config of a test keeps its `trash` (run_killed_at rewrites it)."""
        keys.setdefault("trash", self.trash)
        return super().write_config(file_mode=file_mode, **keys)

    def rows(self, folder="INBOX"):
        """{uid: (uniq, flags, pending)} the state DB holds for folder."""
        db = sqlite3.connect("file:%s?mode=ro" % self.state, uri=True)
        try:
            return {uid: (uniq, flags, pending) for uid, uniq, flags, pending in db.execute(
                "SELECT m.uid, m.uniq, m.flags, m.pending FROM messages m JOIN folders f "
                "ON m.folder_id = f.id WHERE f.name = ?", (folder,))}
        finally:
            db.close()

    def local_by_mid(self, folder="INBOX"):
        return {tb.message_id(m.data): m for m in tb.read_maildir(self.maildir).get(folder, [])}

    def server_by_mid(self, folder="INBOX"):
        with self.imap() as c:
            return {tb.message_id(m.data): m for m in c.messages(folder)}

    def test_flag_removed_after_a_killed_store(self):
        self.trash = "Trash"
        self.write_config()
        with self.imap() as c:
            c.create_folder("Trash")       # the trash folder: a sync pulls it last
            c.append_many("INBOX", tb.make_corpus(4, seed=1601, size=(400, 900), flags=False))
        self.run_ok("sync")
        with self.imap() as c:            # so that the run opens Trash after INBOX's STORE
            c.append_many("Trash", tb.make_corpus(1, seed=1603, size=(400, 900), flags=False, start=10))
        mid, lm = sorted(self.local_by_mid().items())[0]
        cur = os.path.join(os.path.dirname(os.path.dirname(lm.path)), "cur")
        # \Answered set locally; the run that pushes it is killed once the
        # STORE went through, while it waits to open the next folder.
        answered = os.path.join(cur, lm.uniq + ":2,R")
        os.rename(lm.path, answered)
        self.run_killed_at("sync", (b'EXAMINE "Trash"', 1))
        self.assertIn("\\Answered", self.server_by_mid()[mid].flags,
                      "test bug: the killed run did not store the flag")
        # ... and taken away again before the next run.
        os.rename(answered, os.path.join(cur, lm.uniq + ":2,"))
        self.write_config()
        self.run_ok("sync")
        self.assertNotIn("\\Answered", self.server_by_mid()[mid].flags,
                         "the local removal of \\Answered was lost: the server still has it")
        self.assertEqual(self.local_by_mid()[mid].letters, "")
        self.assertSynced()

    def test_deleted_file_of_an_unconfirmed_batch(self):
        corpus = tb.make_corpus(60, seed=1602, size=(2000, 3000), flags=False)
        with self.imap() as c:
            c.append_many("INBOX", corpus)
        # Slow (~2 s for the folder): a batch lands after 0.5 s of downloads,
        # long before the next one commits and confirms it.
        px = tb.Proxy(self.bed.imap_port, delay=0.05, chunk=4096).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        p = tb.start_mailsync(["sync"], config=self.config_path, workdir=self.work)
        t0 = time.monotonic()
        while not tb.message_files(self.maildir):
            self.assertIsNone(p.poll(), "the sync ended before any file was in place")
            self.assertLess(time.monotonic() - t0, 60, "no file was put in place")
            time.sleep(0.002)
        os.kill(p.pid, signal.SIGKILL)
        res = tb.finish_mailsync(p)
        px.stop()
        self.assertEqual(res.code, -signal.SIGKILL, "not killed: %s" % res)
        pending = {uid: r for uid, r in self.rows().items() if r[2]}
        local = self.local_by_mid()
        placed = [m for m in local.values() if any(m.uniq == r[0] for r in pending.values())]
        self.assertTrue(placed, "test bug: the kill missed the window (no file in place with a pending row)")
        victim = placed[0]
        mid = tb.message_id(victim.data)
        os.unlink(victim.path)        # the user deletes a message that just came in
        self.write_config()
        self.run_ok("sync")
        self.assertFalse(mid in self.server_by_mid(), "the local deletion did not reach the server")
        self.assertFalse(mid in self.local_by_mid(), "the deleted message was downloaded again")
        self.assertEqual(len(self.server_by_mid()), len(corpus) - 1)
        self.assertSynced()


if __name__ == "__main__":
    import unittest
    unittest.main()
