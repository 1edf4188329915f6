# SPDX-License-Identifier: MIT
"""test_bench_smoke.py: the benchmark (tests/bench/bench.py) as a CI smoke test.

Runs the whole benchmark at a tiny N (40 small messages, one run, every tool,
every scenario, the `session` reference row too) and checks only that it completes, that every run of every
tool verified equal to the server (bench.py exits 1 otherwise), and that the
table was printed. It never asserts on timing: the numbers are for people.

mbsync (Debian isync) and OfflineIMAP (offlineimap3) are required, not
optional: a missing peer fails this test loudly (.ci/install-deps installs
them).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import testbed as tb

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench.py"
TOOLS = ("mailsync", "mbsync", "mbsync-nofsync", "offlineimap", "session", "fetchnew", "examine", "store",
         "listdir")


class BenchSmokeTest(unittest.TestCase):
    def test_peers_installed(self):
        for prog, pkg in (("mbsync", "isync"), ("offlineimap", "offlineimap3")):
            self.assertIsNotNone(shutil.which(prog),
                                 "%s not found: install the Debian package %s "
                                 "(.ci/install-deps)" % (prog, pkg))

    def test_bench_tiny(self):
        cache = tempfile.mkdtemp(prefix="mailsync-bench-cache-")
        self.addCleanup(shutil.rmtree, cache, True)
        env = dict(os.environ, MAILSYNC_BENCH_CACHE=cache, MAILSYNC_BIN=tb.mailsync_bin())
        argv = [sys.executable, str(BENCH), "--n", "40", "--small", "--runs", "1",
                "--tools", ",".join(TOOLS), "--scenarios", "a,b,c,d,e"]
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, timeout=300, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.fail("bench did not finish in 300 s\n--- stderr:\n%s" % (
                (e.stderr or b"").decode(errors="replace")[-6000:]))
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        report = "bench exited %d\n--- stdout:\n%s\n--- stderr:\n%s" % (
            r.returncode, out[-6000:], err[-8000:])
        self.assertEqual(r.returncode, 0, report)
        self.assertIn("mailsync benchmark: N=40", out, report)
        self.assertIn("median s", out, report)
        self.assertNotIn("FAIL", out, report)
        for tool in TOOLS:
            self.assertIn(tool, out, report)
        for label in ("(a) initial pull", "(b) no-op resync", "(c) 1% flags changed",
                      "(d) 100 new messages", "(e) 1% local seen"):
            self.assertIn(label, out, report)
        self.assertIn("mailsync/peer", out, report)
        # the session reference ran (its runs check every answer came) in b-d
        self.assertIn("session/peer (floor)", out, report)
        self.assertRegex(out, r"\n\s+session\s+[0-9.]+\s", report)
        # fetchnew (the server's floor for (d)) ran and saw every new message
        self.assertRegex(out, r"\n\s+fetchnew\s+[0-9.]+\s", report)
        # listdir (one bare listing of the Maildir: the floor for (e)) ran
        self.assertRegex(out, r"\n\s+listdir\s+[0-9.]+\s", report)
        # examine (the server's floor for (c)) opened a changed folder, store
        # (its half of (e)) selected and stored: every answer came OK
        self.assertRegex(out, r"\n\s+examine\s+[0-9.]+\s", report)
        self.assertRegex(out, r"\n\s+store\s+[0-9.]+\s", report)


if __name__ == "__main__":
    unittest.main()
