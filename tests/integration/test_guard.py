"""test_guard.py: the mass-deletion guard against a real Dovecot.

The contract: a run that would delete more than max_delete (50%) of a
folder of 20 or more, or empty a folder of any size, leaves that folder
untouched, says why and exits 1 unless --force is given; the share is
measured against what the state DB knew, never against a count the server
reports in the same run. Each test counts the messages by content hash on
both sides before and after.
"""

import collections
import hashlib
import os

import testbed as tb


def digest(data):
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


class GuardTestCase(tb.BedTestCase):

    def local_hashes(self, folder="INBOX"):
        """Counter of the content hashes of a local folder's messages."""
        return collections.Counter(digest(m.data) for m in tb.read_maildir(self.maildir).get(folder, []))

    def server_hashes(self, folder="INBOX"):
        with self.imap() as c:
            return collections.Counter(digest(m.data) for m in c.messages(folder))

    def seed_and_pull(self, n, seed):
        """n messages in the server's INBOX, pulled; returns their UIDs."""
        with self.imap() as c:
            uids = c.append_many("INBOX", tb.make_corpus(n, seed=seed, size=(400, 800)))
        self.pull()
        self.assertEqual(self.local_hashes(), self.server_hashes())
        self.assertEqual(sum(self.local_hashes().values()), n)
        return uids

    def assertHeld(self, r, hashes):
        """The guard's run: exit 1, a reason naming --force, and the local
        folder exactly as it was (by content)."""
        self.assertEqual(r.code, 1, "the guard did not hold the folder back\n%s" % r)
        self.assertIn("--force", r.stderr)
        self.assertIn("INBOX", r.stderr)
        self.assertEqual(self.local_hashes(), hashes, "a guarded folder lost local mail")


class SmallFolders(GuardTestCase):
    """Under 20 messages there is no share rule, but a folder is never
    emptied without --force; its last message may still go."""

    def test_push_of_an_emptied_inbox_is_held_back(self):
        self.seed_and_pull(10, seed=64)
        server_before = self.server_hashes()
        inbox = tb.local_folder_path(self.maildir, "INBOX")
        for sub in ("cur", "new"):
            for name in os.listdir(os.path.join(inbox, sub)):
                os.unlink(os.path.join(inbox, sub, name))
        r = self.run_ok("push", expect=1)
        self.assertIn("--force", r.stderr)
        self.assertEqual(self.server_hashes(), server_before)
        self.run_ok("push", expect=1)   # and again: nothing was recorded as done
        self.assertEqual(self.server_hashes(), server_before)
        self.run_ok("push", "--force")
        self.assertEqual(self.server_hashes(), collections.Counter())
        self.assertEqual(self.local_hashes(), collections.Counter())

    def test_pull_of_an_emptied_server_folder_is_held_back(self):
        uids = self.seed_and_pull(10, seed=65)
        before = self.local_hashes()
        with self.imap() as c:
            c.expunge_uids("INBOX", uids)
        r = self.mailsync("pull")
        self.assertHeld(r, before)
        self.pull("--force")
        self.assertEqual(self.local_hashes(), collections.Counter())
        self.assertSynced()

    def test_last_message_may_go_without_force(self):
        """The floor starts at two: deleting the only message of a folder,
        on either side, is an ordinary action."""
        uids = self.seed_and_pull(1, seed=66)
        with self.imap() as c:
            c.expunge_uids("INBOX", uids)
        self.pull()
        self.assertEqual(self.local_hashes(), collections.Counter())
        self.seed_and_pull(1, seed=67)
        for path in tb.message_files(self.maildir):
            os.unlink(path)
        self.run_ok("push")
        self.assertEqual(self.server_hashes(), collections.Counter())

    def test_nine_of_ten_pass(self):
        uids = self.seed_and_pull(10, seed=68)
        with self.imap() as c:
            c.expunge_uids("INBOX", uids[:9])
            kept = digest(c.messages("INBOX")[0].data)
        self.pull()
        self.assertEqual(self.local_hashes(), collections.Counter([kept]))
        self.assertSynced()


if __name__ == "__main__":
    import unittest
    unittest.main()
