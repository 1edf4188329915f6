# SPDX-License-Identifier: MIT
"""test_account_plan.py: account-wide planning against a real Dovecot.

The rule (issue 15, point 3): no deletion is applied, on either side,
before every selected folder's listing is known, so a message that moved
from one folder to another can be seen as one message. Observable from
outside: a run killed while it lists a later folder has applied no
deletion of an earlier one yet; the next run applies it. Each test counts
messages by content on both sides.
"""

import collections
import hashlib
import os

import testbed as tb


def digest(data):
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


class AccountPlanTest(tb.BedTestCase):

    def local(self, folder):
        return collections.Counter(digest(m.data) for m in tb.read_maildir(self.maildir).get(folder, []))

    def server(self, folder):
        with self.imap() as c:
            return collections.Counter(digest(m.data) for m in c.messages(folder))

    def setUp(self):
        super().setUp()
        self.uids = {}
        with self.imap() as c:
            for i, name in enumerate(("Alpha", "Beta")):
                c.create_folder(name)
                self.uids[name] = c.append_many(name, tb.make_corpus(4, seed=51 + i, size=(400, 800)))
        self.pull()
        for name in ("Alpha", "Beta"):
            self.assertEqual(sum(self.local(name).values()), 4)

    def change_both(self):
        """In each folder one message expunged and one arrival (another
        client): whichever folder the run lists first has a deletion to
        apply while the other's listing is still to come. Returns the
        expunged messages' digests by folder."""
        gone = {}
        with self.imap() as c:
            for i, name in enumerate(("Alpha", "Beta")):
                m = [m for m in c.messages(name) if m.uid == self.uids[name][0]][0]
                gone[name] = digest(m.data)
                c.expunge_uids(name, [m.uid])
                c.append_many(name, tb.make_corpus(1, seed=61 + i, size=(400, 800)))
        return gone

    def check_killed_then_rerun(self, command):
        gone = self.change_both()
        # Killed when the second folder's listing is asked for: the
        # first folder's deletion waits for every listing of the account.
        self.run_killed_at(command, (b" (QRESYNC (", 2))
        for name in ("Alpha", "Beta"):
            self.assertEqual(self.local(name)[gone[name]], 1,
                             "%s: a deletion was applied before every folder's listing was known" % name)
        self.write_config()
        self.run_ok(command)
        for name in ("Alpha", "Beta"):
            self.assertEqual(self.local(name)[gone[name]], 0, name)
            self.assertEqual(self.local(name), self.server(name), name)
            self.assertEqual(sum(self.local(name).values()), 4, name)

    def test_pull_applies_deletions_after_every_listing(self):
        self.check_killed_then_rerun("pull")

    def test_sync_applies_deletions_after_every_listing(self):
        self.check_killed_then_rerun("sync")

    def test_local_deletion_waits_for_every_listing(self):
        """A file deleted locally in each folder, an arrival on the server
        in each: the push's removals on the server also wait until every
        folder's listing is known."""
        victims = {}
        with self.imap() as c:
            for i, name in enumerate(("Alpha", "Beta")):
                f = tb.read_maildir(self.maildir)[name][0]
                victims[name] = digest(f.data)
                os.unlink(f.path)
                c.append_many(name, tb.make_corpus(1, seed=71 + i, size=(400, 800)))
        self.run_killed_at("sync", (b" (QRESYNC (", 2))
        for name in ("Alpha", "Beta"):
            self.assertEqual(self.server(name)[victims[name]], 1,
                             "%s: a removal on the server was applied before every listing was known" % name)
        self.write_config()
        self.run_ok("sync")
        for name in ("Alpha", "Beta"):
            self.assertEqual(self.server(name)[victims[name]], 0, name)
            self.assertEqual(self.local(name), self.server(name), name)

    def test_one_run_still_does_everything(self):
        gone = self.change_both()
        self.run_ok("sync")
        for name in ("Alpha", "Beta"):
            self.assertEqual(self.local(name)[gone[name]], 0, name)
            self.assertEqual(self.local(name), self.server(name), name)
            self.assertEqual(sum(self.local(name).values()), 4, name)


if __name__ == "__main__":
    import unittest
    unittest.main()
