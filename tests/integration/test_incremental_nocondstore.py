# SPDX-License-Identifier: MIT
"""test_incremental_nocondstore.py: the resync tests of test_incremental.py
on a server with neither QRESYNC nor CONDSTORE: a full flag listing (a
file of its own so that ctest -j runs it beside the others)."""

import unittest

import testbed as tb
from test_incremental import IncrementalMixin


class NoCondstoreTest(IncrementalMixin, tb.BedTestCase):
    bed_options = {"pool": 14, "hide_capabilities": ("QRESYNC", "CONDSTORE", "LIST-STATUS")}
    expect_path = None


if __name__ == "__main__":
    unittest.main()
