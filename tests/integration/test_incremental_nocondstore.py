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
    bed_options = {"pool": 14, "hide_capabilities": ("QRESYNC", "CONDSTORE", "LIST-STATUS")}
    expect_path = None
    expect_windows = 3

    def setUp(self):
        super().setUp()
        old = os.environ.get("MAILSYNC_TEST_PULL_WINDOW")
        os.environ["MAILSYNC_TEST_PULL_WINDOW"] = str(self.expect_windows)
        self.addCleanup(lambda: os.environ.pop("MAILSYNC_TEST_PULL_WINDOW") if old is None
                        else os.environ.__setitem__("MAILSYNC_TEST_PULL_WINDOW", old))


if __name__ == "__main__":
    unittest.main()
