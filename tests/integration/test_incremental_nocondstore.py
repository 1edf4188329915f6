# SPDX-License-Identifier: MIT
"""test_incremental_nocondstore.py: the resync tests of test_incremental.py
on a server with neither QRESYNC nor CONDSTORE: a full flag listing (a
file of its own so that ctest -j runs it beside the others); and the same
tests with windows of 3 UIDs (MAILSYNC_TEST_PULL_WINDOW), so that every
resync lists its folders a window at a time and compares each window with
its rows (what a folder of more than 10,000 messages does)."""

import os
import signal
import unittest

import testbed as tb
from test_incremental import IncrementalMixin


class NoCondstoreTest(IncrementalMixin, tb.BedTestCase):
    bed_options = {"pool": 14, "hide_capabilities": ("QRESYNC", "CONDSTORE", "LIST-STATUS")}
    expect_path = None


class NoCondstoreWindowsTest(IncrementalMixin, tb.BedTestCase):
    bed_options = {"pool": 18, "hide_capabilities": ("QRESYNC", "CONDSTORE", "LIST-STATUS")}
    expect_path = None
    expect_windows = 3

    def setUp(self):
        super().setUp()
        old = os.environ.get("MAILSYNC_TEST_PULL_WINDOW")
        os.environ["MAILSYNC_TEST_PULL_WINDOW"] = str(self.expect_windows)
        self.addCleanup(lambda: os.environ.pop("MAILSYNC_TEST_PULL_WINDOW") if old is None
                        else os.environ.__setitem__("MAILSYNC_TEST_PULL_WINDOW", old))

    def test_new_mail_below_the_top_window_has_its_size(self):
        """More new mail than a window: the windows below the top one are
        listed without sizes (UID FETCH lo:hi (UID FLAGS)); the new
        messages' sizes are asked for after them, so max_size still skips
        the big one among them and the small ones come in."""
        with self.imap() as c:
            for i in range(4):
                c.append_message("INBOX", tb.make_message(10 + i, size=2000), (), 1600000000 + i)
        self.write_config(max_size="100K", placeholders="no")
        self.pull()
        with self.imap() as c:  # UIDs 5-12: the big one is 6, below the top window (10:12)
            uids = [c.append_message("INBOX", tb.make_message(20 + i, size=300000 if i == 1 else 2000), (),
                                     1600000100 + i) for i in range(8)]
        r = self.run_ok("-vv", "pull")
        self.assertRegex(r.stderr, r"C: \S+ UID FETCH \d+:\d+ \(UID FLAGS\)\r?\n")
        self.assertIn("UID %d skipped" % uids[1], r.stderr)
        self.assertEqual(tb.count_messages(self.maildir), 11)

    def test_killed_between_the_windows_of_the_second_listing(self):
        """Another client's "mark all read" (every message of INBOX
        changed) and an expunge: more differences than a window, so the
        run counts them, then lists and applies INBOX window by window from
        its UIDNEXT down. Killed while it waits for the answer of the
        second of those windows (the first one applied, the folder's
        record not saved). The next pull completes it: the Maildir as the
        server, no message downloaded again (every file keeps its inode),
        the expunged message gone and nothing else, and a pull after that
        changes nothing."""
        uids = self.seed()
        self.pull()
        inodes = {mid: os.stat(m.path).st_ino for mid, m in self.inbox_by_mid().items()}
        inbox = sorted(uids["INBOX"])
        with self.imap() as c:
            c.set_flags("INBOX", inbox, ["\\Seen", "\\Flagged"])
            gone = tb.message_id(next(m.data for m in c.messages("INBOX") if m.uid == inbox[4]))
            c.expunge_uids("INBOX", inbox[4:5])
        w = self.expect_windows
        top = inbox[-1]  # UIDNEXT - 1: windows top-w+1:top, then the one below, the kill point
        second = b"UID FETCH %d:%d (UID FLAGS RFC822.SIZE)" % (top - 2 * w + 1, top - w)
        self.run_killed_at("pull", (second, 1))
        self.write_config()  # the bed's own port again
        flagged = sum("F" in m.letters and "S" in m.letters for m in self.inbox_by_mid().values())
        self.assertTrue(0 < flagged < len(inbox) - 1,
                        "test bug: the kill did not fall between the windows (%d flagged)" % flagged)
        r = self.run_ok("-v", "pull")
        self.assertIn("more than a window changed: applied window by window", r.stderr)
        self.assertSynced()
        after = self.inbox_by_mid()
        self.assertNotIn(gone, after)
        self.assertEqual({mid: os.stat(m.path).st_ino for mid, m in after.items()},
                         {mid: ino for mid, ino in inodes.items() if mid != gone})
        self.assertTrue(all("F" in m.letters and "S" in m.letters for m in after.values()))
        snap = tb.snapshot_tree(self.maildir)
        self.pull()
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)

    def test_windows_applied_in_turn_are_asked_for_ahead(self):
        """Another client's "mark all read": more differences than a window,
        so INBOX is listed again and applied window by window from its
        UIDNEXT down; each window below the top one is asked for before the
        one above it is applied (its UID FETCH in the -vv trace before the
        pull turns to it), once, and the end state is the server's."""
        import re
        uids = self.seed()
        self.pull()
        inbox = sorted(uids["INBOX"])
        with self.imap() as c:
            c.set_flags("INBOX", inbox, ["\\Seen", "\\Flagged"])
        r = self.run_ok("-vv", "pull")
        self.assertIn("more than a window changed: applied window by window", r.stderr)
        lines = r.stderr.splitlines()
        w, hi = self.expect_windows, inbox[-1] - self.expect_windows  # below the top window
        windows = 0
        while hi >= 1:
            lo = max(1, hi - w + 1)
            pat = re.compile(r"C: \S+ UID FETCH %d:%d \(UID FLAGS RFC822\.SIZE\)\r?$" % (lo, hi))
            sent = [i for i, line in enumerate(lines) if pat.search(line)]
            turned = [i for i, line in enumerate(lines) if "INBOX: next window: UIDs %d:%d" % (lo, hi) in line]
            self.assertEqual(len(sent), 1, "window %d:%d asked for %d times" % (lo, hi, len(sent)))
            self.assertEqual(len(turned), 1)
            self.assertLess(sent[0], turned[0], "window %d:%d not asked for ahead" % (lo, hi))
            windows += 1
            hi = lo - 1
        self.assertGreaterEqual(windows, 2)
        self.assertSynced()
        self.assertTrue(all("F" in m.letters and "S" in m.letters for m in self.inbox_by_mid().values()))

    def test_second_client_between_the_windows(self):
        """Another client's "mark all read" on INBOX; the run stopped by the
        test knob as it turns to its first window below the top one; then a
        client expunges a message low in the folder, marks one of the top
        window unread and appends one. The run goes on and ends well,
        nothing doubled; the next one brings what changed meanwhile: the
        Maildir is the server's, each message once."""
        uids = self.seed()
        self.pull()
        inbox = sorted(uids["INBOX"])
        with self.imap() as c:
            ids = {m.uid: tb.message_id(m.data) for m in c.messages("INBOX")}
            c.set_flags("INBOX", inbox, ["\\Seen", "\\Flagged"])
        p = self.start_stopped_at_window(1, "pull")
        new = tb.make_message(9201, size=700, seed=1804)
        with self.imap() as c:
            c.expunge_uids("INBOX", inbox[1:2])
            c.set_flags("INBOX", inbox[-1:], ["\\Flagged"], mode="-")
            c.append_message("INBOX", new)
        os.kill(p.pid, signal.SIGCONT)
        res = tb.finish_mailsync(p)
        self.assertEqual(res.code, 0, res)
        self.assertEqual(len(self.inbox_by_mid()), len(tb.read_maildir(self.maildir).get("INBOX", [])),
                         "doubled locally")
        self.pull()
        self.assertSynced()
        after = tb.read_maildir(self.maildir).get("INBOX", [])
        by_mid = self.inbox_by_mid()
        self.assertEqual(len(after), len(by_mid), "doubled locally")
        self.assertEqual(len(by_mid), len(inbox))  # one gone, one new
        self.assertNotIn(ids[inbox[1]], by_mid)
        self.assertEqual(by_mid[tb.message_id(new)].data, new.replace(b"\r\n", b"\n"))
        self.assertNotIn("F", by_mid[ids[inbox[-1]]].letters)
        self.assertEqual(sorted(mid for mid, m in by_mid.items() if not {"F", "S"} <= set(m.letters)),
                         sorted([ids[inbox[-1]], tb.message_id(new)]))

    def inbox_by_mid(self):
        return {tb.message_id(m.data): m for m in tb.read_maildir(self.maildir).get("INBOX", [])}


if __name__ == "__main__":
    unittest.main()
