# SPDX-License-Identifier: MIT
"""test_retention.py: `server_retention_days` on an IMAP account (POP-style:
messages older than N days leave the server once they are safely stored
locally) against a real Dovecot.

Old messages (by INTERNALDATE) are expunged from the server after the pull
that stored them, exactly those (a young one and one whose local file is
gone stay), their local copies stay through later pulls, pushes and syncs,
and a push never uploads them again; the check runs once a day per folder.
"""

import os
import sqlite3
import time

import testbed as tb


class RetentionTest(tb.BedTestCase):
    bed_options = {"pool": 6}

    def seed(self):
        now = int(time.time())
        old = tb.make_corpus(4, seed=21, flags=False, base_date=now - 90 * 86400)
        young = tb.make_corpus(2, seed=22, flags=False, start=100, base_date=now - 3600)
        with self.imap() as c:
            c.append_many("INBOX", old + young)
        return old, young

    def server_datas(self):
        with self.imap() as c:
            return sorted(m.data_lf for m in c.messages("INBOX"))

    def test_old_messages_leave_the_server_and_stay_local(self):
        old, young = self.seed()
        self.write_config(server_retention_days="30")
        r = self.pull()
        self.assertIn("4 removed from the server", r.stdout)
        self.assertEqual(self.server_datas(), sorted(m.data_lf for m in young))
        self.assertEqual(tb.count_messages(self.maildir), 6)
        # later runs keep the local copies and upload nothing back
        self.pull()
        self.assertIn("0 uploaded", self.run_ok("push").stdout)
        self.run_ok("sync")
        self.assertEqual(tb.count_messages(self.maildir), 6)
        self.assertEqual(self.server_datas(), sorted(m.data_lf for m in young))

    def test_old_new_local_file_is_not_uploaded(self):
        """Under retention a local file older than the cutoff lives only
        locally; a young one is uploaded as usual."""
        self.seed()
        self.write_config(server_retention_days="30")
        self.pull()
        d = self.maildir / "INBOX" / "cur"
        for name, mtime in (("1500000000.old.host:2,S", 1500000000), ("young.host:2,S", int(time.time()) - 60)):
            (d / name).write_bytes(b"Subject: %s\n\nhi\n" % name.encode())
            os.utime(d / name, (mtime, mtime))
        self.assertIn("1 uploaded", self.run_ok("push").stdout)
        self.assertEqual(len(self.server_datas()), 3)

    def test_only_what_is_stored_locally(self):
        """An old message whose local file is gone is not retired by the
        check (a push deletes it instead, with expunge = no here: flagged)."""
        old, young = self.seed()
        self.pull()     # without retention first
        files = {m.data: m for m in tb.read_maildir(self.maildir)["INBOX"]}
        gone = old[0].data_lf
        os.unlink(files[gone].path)
        self.write_config(server_retention_days="30", expunge="no")
        self.pull()
        left = self.server_datas()
        self.assertIn(gone, left)
        self.assertEqual(len(left), 3)      # the gone one and the two young ones

    def test_once_a_day(self):
        old, young = self.seed()
        self.write_config(server_retention_days="30")
        self.pull()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=23, flags=False, start=200,
                                                  base_date=int(time.time()) - 60 * 86400))
        self.pull()
        self.assertEqual(len(self.server_datas()), 3)   # checked today already
        with sqlite3.connect(self.state) as db:
            db.execute("UPDATE meta SET value = value - 90000 WHERE key LIKE 'retention_checked:%'")
        r = self.pull()
        self.assertIn("1 removed from the server", r.stdout)
        self.assertEqual(len(self.server_datas()), 2)
        self.assertEqual(tb.count_messages(self.maildir), 7)
