# SPDX-License-Identifier: MIT
"""test_incremental_nocondstore.py: the resync tests of test_incremental.py
on a server with neither QRESYNC nor CONDSTORE: a full flag listing (a
file of its own so that ctest -j runs it beside the others); and the same
tests with windows of 3 UIDs (MAILSYNC_TEST_PULL_WINDOW), so that every
resync lists its folders a window at a time and compares each window with
its rows (what a folder of more than 10,000 messages does)."""

import os
import unittest

import testbed as tb
from test_incremental import IncrementalMixin


class NoCondstoreTest(IncrementalMixin, tb.BedTestCase):
    bed_options = {"pool": 14, "hide_capabilities": ("QRESYNC", "CONDSTORE", "LIST-STATUS")}
    expect_path = None


class NoCondstoreWindowsTest(IncrementalMixin, tb.BedTestCase):
    bed_options = {"pool": 16, "hide_capabilities": ("QRESYNC", "CONDSTORE", "LIST-STATUS")}
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


if __name__ == "__main__":
    unittest.main()
