# SPDX-License-Identifier: MIT
"""test_incremental_condstore.py: the resync tests of test_incremental.py
on a server with CONDSTORE but no QRESYNC: changed flags plus the list of
UIDs (a file of its own so that ctest -j runs it beside the others)."""

import unittest

import testbed as tb
from test_incremental import IncrementalMixin


class CondstoreOnlyTest(IncrementalMixin, tb.BedTestCase):
    bed_options = {"pool": 14, "hide_capabilities": ("QRESYNC", "LIST-STATUS")}
    expect_path = "CONDSTORE"


if __name__ == "__main__":
    unittest.main()
