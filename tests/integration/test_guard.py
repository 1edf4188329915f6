# SPDX-License-Identifier: MIT
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


class QresyncRace(GuardTestCase):
    """Another client empties the folder after the EXAMINE is answered and
    before our UID FETCH reaches the server: the expunges come as VANISHED
    in the FETCH's answer while the EXAMINE's EXISTS still counts them. The
    proxy makes the moment exact: while it holds INBOX's STATUS answer a
    message is appended (so the EXAMINE shows new mail the STATUS did not,
    and the UID FETCH of it goes out after the EXAMINE's answer), and while
    it holds the EXAMINE's tagged OK every message is expunged."""

    def race(self, n, seed):
        uids = self.seed_and_pull(n, seed)
        with self.imap() as c:
            c.set_flags("INBOX", uids[:1], ["$GuardTest"])  # HIGHESTMODSEQ moves: INBOX is looked at
        before = self.local_hashes()
        events = []

        def per_line(line):
            if line.startswith(b"* STATUS INBOX ") and "appended" not in events:
                with self.imap() as c:
                    c.append_many("INBOX", tb.make_corpus(1, seed=seed, size=(400, 800), start=900))
                events.append("appended")
            elif b" OK [READ-ONLY]" in line and "appended" in events and "expunged" not in events:
                with self.imap() as c:
                    c.expunge_uids("INBOX", [m.uid for m in c.messages("INBOX")])
                events.append("expunged")
            return [line]

        px = tb.Proxy(self.bed.imap_port, record=True, rewrite_down=tb.line_rewriter(per_line)).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        r = self.mailsync("pull", "-v")
        self.assertEqual(events, ["appended", "expunged"], r)
        self.assertIn("(QRESYNC)", r.stderr)
        # the race happened: the expunges came with the answer to our FETCH
        down = bytes(px.downstream)
        self.assertRegex(down, rb"\r\n\* VANISHED 1:\d+", "no VANISHED during the FETCH")
        self.assertHeld(r, before)
        self.assertEqual(self.server_hashes(), collections.Counter())
        # the state still knows them: the next run is held back the same way
        r = self.mailsync("pull")
        self.assertHeld(r, before)
        # and --force lets the deletions through
        self.pull("--force")
        self.assertEqual(self.local_hashes(), collections.Counter())
        self.assertSynced()

    def test_folder_of_100_emptied_during_the_fetch(self):
        self.race(100, seed=61)

    def test_folder_of_30_emptied_during_the_fetch(self):
        self.race(30, seed=62)


class LyingVanished(GuardTestCase):
    """A server that answers the EXAMINE with VANISHED (EARLIER) 1:1100 and
    100 EXISTS while it still holds every message: the vanished set
    contradicts the server's own count, so the folder is listed in full and
    nothing is deleted; the state keeps every message."""

    def test_injected_vanished_deletes_nothing(self):
        uids = self.seed_and_pull(100, seed=63)
        with self.imap() as c:
            c.set_flags("INBOX", uids[:3], ["$GuardTest"])  # something to resync
        before = self.local_hashes()
        files_before = set(tb.message_files(self.maildir))
        injected = []

        def per_line(line):
            if b" OK [READ-ONLY]" in line and not injected:
                injected.append(line)
                return [b"* VANISHED (EARLIER) 1:1100", line]
            return [line]

        px = tb.Proxy(self.bed.imap_port, rewrite_down=tb.line_rewriter(per_line)).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        r = self.mailsync("pull", "-v")
        self.assertTrue(injected, "the proxy never saw the EXAMINE's answer")
        self.assertEqual(self.local_hashes(), before, r)
        self.assertEqual(self.server_hashes(), before)
        self.assertEqual(r.code, 0, r)
        self.assertIn("listing the folder in full", r.stderr)
        self.assertSynced()    # the flag changes did arrive
        # the state still knows all 100: a normal pull fetches and deletes nothing
        self.write_config()
        r = self.pull("--json")
        folders = {f["name"]: f for f in r.json()["accounts"][0]["folders"]}
        self.assertEqual(folders["INBOX"]["fetched"], 0, r)
        self.assertEqual(folders["INBOX"]["deleted"], 0, r)
        self.assertEqual(self.local_hashes(), before)
        self.assertEqual({os.path.basename(p).split(":2,")[0] for p in tb.message_files(self.maildir)},
                         {os.path.basename(p).split(":2,")[0] for p in files_before})


    def test_injected_vanished_below_the_share_deletes_nothing(self):
        """10 of 100 said vanished (well under max_delete) while the server
        holds all 100 and says 100 EXISTS: the set does not add up to
        EXISTS, so it is not trusted; nothing is deleted or forgotten."""
        uids = self.seed_and_pull(100, seed=69)
        with self.imap() as c:
            c.set_flags("INBOX", uids[50:52], ["$GuardTest"])
        before = self.local_hashes()
        injected = []

        def per_line(line):
            if b" OK [READ-ONLY]" in line and not injected:
                injected.append(line)
                return [b"* VANISHED (EARLIER) %d:%d" % (uids[0], uids[9]), line]
            return [line]

        px = tb.Proxy(self.bed.imap_port, rewrite_down=tb.line_rewriter(per_line)).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        r = self.pull("-v")
        self.assertTrue(injected, "the proxy never saw the EXAMINE's answer")
        self.assertEqual(self.local_hashes(), before, r)
        self.assertSynced()
        self.write_config()
        r = self.pull("--json")
        inbox = [f for f in r.json()["accounts"][0]["folders"] if f["name"] == "INBOX"][0]
        self.assertEqual((inbox["fetched"], inbox["deleted"]), (0, 0), r)
        self.assertEqual(self.local_hashes(), before)


    def test_vanished_during_the_pipelined_fetch_is_checked(self):
        """New mail the STATUS showed: the UID FETCH of it goes out with the
        EXAMINE, in one write. A VANISHED of every known UID in that
        FETCH's answer (here injected: the server still has them all)
        contradicts the EXAMINE's EXISTS: the folder is listed in full, the
        new message arrives and nothing is deleted or forgotten."""
        uids = self.seed_and_pull(100, seed=70)
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=70, size=(400, 800), start=900))
        injected, examined = [], []

        def per_line(line):
            if b" OK [READ-ONLY]" in line:
                examined.append(line)
            elif examined and not injected and b" OK Fetch completed" in line:
                injected.append(line)
                return [b"* VANISHED %d:%d" % (uids[0], uids[-1]), line]
            return [line]

        px = tb.Proxy(self.bed.imap_port, record=True, rewrite_down=tb.line_rewriter(per_line)).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        r = self.mailsync("pull", "-v")
        self.assertTrue(injected, "the proxy never saw the FETCH's answer\n%s" % r)
        # the FETCH did ride with the EXAMINE
        self.assertTrue(any(b"EXAMINE" in data and b"UID FETCH" in data for down, data in px.transcript if not down),
                        "the UID FETCH was not pipelined with the EXAMINE")
        self.assertEqual(self.local_hashes(), self.server_hashes(), r)
        self.assertEqual(sum(self.local_hashes().values()), 101)
        self.assertEqual(r.code, 0, r)
        self.write_config()
        r = self.pull("--json")
        inbox = [f for f in r.json()["accounts"][0]["folders"] if f["name"] == "INBOX"][0]
        self.assertEqual((inbox["fetched"], inbox["deleted"]), (0, 0), r)
        self.assertEqual(sum(self.local_hashes().values()), 101)


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
