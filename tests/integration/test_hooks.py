# SPDX-License-Identifier: MIT
"""test_hooks.py: post_sync_command and new_mail_command, against a real
Dovecot.

After each run of an account (each watch pass too) post_sync_command runs;
new_mail_command only when messages arrived. Each gets what happened in
MAILSYNC_* variables and the run's JSON document on stdin; its output goes
to stderr (a --json stdout stays one document); a failing hook is a
warning, not a failed run; a hook over hook_timeout is stopped with what it
started; a dry run runs none."""
import json
import os
import signal
import time
from pathlib import Path

import testbed as tb

DUMP = ('env | grep ^MAILSYNC_ | sort > "{dir}/env.$$"; cat > "{dir}/stdin.$$"; '
        'echo hook-says-hello; echo "$MAILSYNC_COMMAND" >> "{dir}/{name}.log"')


class HookTest(tb.BedTestCase):
    bed_options = {"pool": 10}

    def setUp(self):
        super().setUp()
        self.hooks = self.work / "hooks"
        self.hooks.mkdir()

    def runs(self, name):
        p = self.hooks / (name + ".log")
        return p.read_text().split() if p.exists() else []

    def last_env(self):
        files = sorted(self.hooks.glob("env.*"), key=lambda p: p.stat().st_mtime_ns)
        env = dict(ln.split("=", 1) for ln in files[-1].read_text().splitlines() if "=" in ln)
        stdin = (self.hooks / files[-1].name.replace("env.", "stdin.")).read_text()
        for f in self.hooks.glob("env.*"):
            f.unlink()
        return env, stdin

    def test_hooks_get_what_happened(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=51))
        self.write_config(post_sync_command=DUMP.format(dir=self.hooks, name="post"),
                          new_mail_command='echo "$MAILSYNC_NEW in $MAILSYNC_NEW_FOLDERS" >> "%s/new.log"' % self.hooks)
        r = self.run_ok("--json", "pull")
        json.loads(r.stdout)  # the hook's echo did not land in the document
        self.assertIn("hook-says-hello", r.stderr)
        env, stdin = self.last_env()
        self.assertEqual(env["MAILSYNC_ACCOUNT"], self.account)
        self.assertEqual(env["MAILSYNC_COMMAND"], "pull")
        self.assertEqual(env["MAILSYNC_EXIT"], "0")
        self.assertEqual(env["MAILSYNC_NEW"], "3")
        self.assertEqual(env["MAILSYNC_NEW_FOLDERS"], "INBOX")
        self.assertEqual(env["MAILSYNC_MAILDIR"], str(self.maildir))
        doc = json.loads(stdin)
        tb.assert_json_schema(doc, "a hook's stdin")
        self.assertEqual(doc["command"], "pull")
        self.assertEqual(doc["accounts"][0]["name"], self.account)
        self.assertEqual(sum(f["fetched"] for f in doc["accounts"][0]["folders"]), 3)
        self.assertEqual((self.hooks / "new.log").read_text(), "3 in INBOX\n")
        # nothing new: post_sync_command only
        self.run_ok("sync")
        env, _ = self.last_env()
        self.assertEqual((env["MAILSYNC_COMMAND"], env["MAILSYNC_NEW"]), ("sync", "0"))
        self.assertEqual(self.runs("post"), ["pull", "sync"])
        self.assertEqual((self.hooks / "new.log").read_text(), "3 in INBOX\n")
        # a dry run runs none
        self.run_ok("pull", "--dry-run")
        self.assertEqual(self.runs("post"), ["pull", "sync"])

    def test_failing_and_slow_hooks_are_warnings(self):
        self.write_config(post_sync_command="exit 7")
        r = self.run_ok("pull")
        self.assertIn("post_sync_command failed (exit status 7)", r.stderr)
        pidfile = self.hooks / "child.pid"
        self.write_config(post_sync_command="sleep 300 & echo $! > %s; wait" % pidfile, hook_timeout=1)
        t0 = time.monotonic()
        r = self.run_ok("pull")
        self.assertLess(time.monotonic() - t0, 30)
        self.assertIn("post_sync_command still running after 1 s (hook_timeout): stopped", r.stderr)
        child = int(pidfile.read_text())
        # what the hook started went with it (its process group)
        self.assertTrue(tb.wait_for(lambda: not _alive(child), timeout=10), "the hook's child survived")

    def test_watch_runs_the_hook_after_each_pass(self):
        # Each pass also appends its MAILSYNC_NEW to new.log, one line a
        # pass. The pass the server's NOTIFY starts may find nothing yet
        # (Dovecot's LIST-STATUS counters can lag its NOTIFY; the watch
        # looks again a second later), so the message may come in the
        # second pass or a later one: wait for the pass that reports it;
        # every pass before it reports 0 and no pass reports it twice.
        self.write_config(post_sync_command=DUMP.format(dir=self.hooks, name="post") +
                          '; echo "$MAILSYNC_NEW" >> "%s/new.log"' % self.hooks)
        p = tb.start_mailsync(["watch", "--interval", "3600", self.account], config=self.config_path,
                              workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.assertTrue(tb.wait_for(lambda: self.runs("post") == ["watch"]), Path(p.err_path).read_text())
        self.assertEqual(self.runs("new"), ["0"])
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=52))
        self.assertTrue(tb.wait_for(lambda: set(self.runs("new")) - {"0"}, timeout=20),
                        Path(p.err_path).read_text())
        os.kill(p.pid, signal.SIGTERM)
        self.assertEqual(p.wait(15), 0)
        news = self.runs("new")
        self.assertEqual(len(news), len(self.runs("post")))
        self.assertEqual(set(self.runs("post")), {"watch"})
        first = next(i for i, n in enumerate(news) if n != "0")
        self.assertGreaterEqual(first, 1, news)
        self.assertEqual(news[first], "1", news)
        self.assertEqual([n for i, n in enumerate(news) if i != first], ["0"] * (len(news) - 1), news)

    def test_config_keys_are_checked(self):
        self.write_config(post_sync_command="true", hook_timeout=0)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 2)
        self.assertIn("hook_timeout", r.stderr)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    try:
        return Path("/proc/%d/stat" % pid).read_text().split()[2] != "Z"
    except OSError:
        return False
