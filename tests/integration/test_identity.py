"""test_identity.py: a UIDVALIDITY change and a lost state DB re-match the
local messages by identity (Message-ID + size, else content): nothing is
delivered twice, no local file is replaced, and the server's flags win.
"""

import os
import re
import time
import unittest

import testbed as tb


def inodes(root):
    """{inode: size} of every message file below root."""
    out = {}
    for folder, msgs in tb.read_maildir(root).items():
        for m in msgs:
            st = os.stat(m.path)
            out[st.st_ino] = st.st_size
    return out


class IdentityTest(tb.BedTestCase):
    bed_options = {"pool": 6}
    FOLDER = "Archive"

    def seed(self):
        """25 messages with Message-IDs plus two without (one headerless)."""
        with self.imap() as c:
            c.create_folder(self.FOLDER)
            msgs = tb.make_corpus(25, seed=7, size=(500, 4000))
            c.append_many(self.FOLDER, msgs)
            c.append_message(self.FOLDER, b"Subject: no id\r\n\r\nbody one\r\n", ("\\Seen",), 1600000100)
            c.append_message(self.FOLDER, b"\r\nheaderless body\r\n", (), 1600000200)

    def recreate_folder(self, change_flags):
        """Delete and re-create the folder with the same messages: the
        server gives it a new UIDVALIDITY and new UIDs."""
        with self.imap() as c:
            before = c.status_of(self.FOLDER)["UIDVALIDITY"]
            msgs = c.messages(self.FOLDER)
            c.select_folder("INBOX")  # Dovecot drops a session whose mailbox is deleted
            for attempt in range(5):
                c.delete_folder(self.FOLDER)
                c.create_folder(self.FOLDER)
                if c.status_of(self.FOLDER)["UIDVALIDITY"] != before:
                    break
                time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
            self.assertNotEqual(c.status_of(self.FOLDER)["UIDVALIDITY"], before)
            for i, m in enumerate(msgs):
                flags = set(m.flags) - {"\\Recent"}
                if change_flags and i % 5 == 0:
                    flags ^= {"\\Flagged"}
                c.append_message(self.FOLDER, m.data, sorted(flags), m.internaldate)
        return len(msgs)

    def test_uidvalidity_change_rematches_without_downloading(self):
        self.seed()
        self.pull()
        files = inodes(self.maildir)
        self.assertEqual(len(files), 27)
        n = self.recreate_folder(change_flags=True)
        r = self.pull("--json", "-v")
        self.assertIn("UIDVALIDITY changed", r.stderr)
        folder = [f for f in r.json()["accounts"][0]["folders"] if f["name"] == self.FOLDER][0]
        self.assertEqual(folder["fetched"], 0, "messages were delivered again:\n%s" % r)
        # the same files, flags now as on the server
        self.assertEqual(inodes(self.maildir), files)
        self.assertSynced()
        self.assertEqual(tb.count_messages(self.maildir), n)
        # Message-ID pairs need no download; the two without one are
        # compared by content and adopted.
        self.assertEqual(len(re.findall(r"adopted, not downloaded again", r.stderr)), 2, r.stderr)
        # and the next run is quiet
        snap = tb.snapshot_tree(self.maildir)
        self.pull()
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)

    def test_lost_state_db_rematches_without_duplicates(self):
        self.seed()
        self.pull()
        files = inodes(self.maildir)
        for suffix in ("", "-wal", "-shm"):
            p = str(self.state) + suffix
            if os.path.exists(p):
                os.unlink(p)
        r = self.pull("--json", "-v")
        self.assertEqual(sum(f["fetched"] for f in r.json()["accounts"][0]["folders"]), 0, str(r))
        self.assertEqual(inodes(self.maildir), files)
        self.assertSynced()
        self.assertIn("matched to the server by identity", r.stderr)

    def test_lost_state_db_with_server_flag_changes(self):
        self.seed()
        self.pull()
        os.unlink(self.state)
        with self.imap() as c:
            uids = [m.uid for m in c.messages(self.FOLDER)]
            c.set_flags(self.FOLDER, uids[:10], ["\\Answered"])
        self.pull()
        self.assertSynced()
        self.assertEqual(tb.count_messages(self.maildir), 27)

    def test_new_mail_after_uidvalidity_change_is_fetched(self):
        self.seed()
        self.pull()
        self.recreate_folder(change_flags=False)
        with self.imap() as c:
            c.append_many(self.FOLDER, tb.make_corpus(3, seed=99, size=(500, 900), start=500))
        r = self.pull("--json")
        folder = [f for f in r.json()["accounts"][0]["folders"] if f["name"] == self.FOLDER][0]
        self.assertEqual(folder["fetched"], 3, str(r))
        self.assertSynced()


if __name__ == "__main__":
    unittest.main()
