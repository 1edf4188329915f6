# SPDX-License-Identifier: MIT
"""SIGINT/SIGTERM during a one-shot `pull`, `push` or `sync` (Ctrl-C in a
terminal, `systemctl stop` of a timer's run): the first signal stops the run
at its next safe point (after the message being downloaded, before the next
chunk of 64 uploads, between folders), records what is done, prints the
summary, and then ends the process by that signal (a shell sees 130/143).
A second signal ends it at once. Either way the next run brings the rest,
each message once. Against the real Dovecot, slowed by a proxy so that the
signal comes in the middle."""

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import testbed as tb


def wait_for(pred):
    return tb.wait_for(pred, timeout=30.0, step=0.05)


class InterruptTest(tb.BedTestCase):
    bed_options = {"pool": 6}

    def start(self, *args):
        p = tb.start_mailsync(list(args), config=self.config_path, workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p

    def signal_and_wait(self, p, sig, within):
        """Send sig; the process must end by it within `within` seconds.
        -> (stdout, stderr)."""
        os.kill(p.pid, sig)
        t0 = time.monotonic()
        try:
            code = p.wait(30)
        except Exception:
            p.kill()
            raise
        took = time.monotonic() - t0
        out, err = Path(p.out_path).read_text(), Path(p.err_path).read_text()
        self.assertFalse(any(m in err for m in tb.SANITIZER_MARKERS), err)
        self.assertEqual(code, -sig, "not ended by the signal\n" + err)
        self.assertLess(took, within, err)
        return out, err

    def rows(self, table="messages"):
        db = sqlite3.connect(str(self.state))
        try:
            return db.execute("SELECT count(*), coalesce(sum(pending), 0) FROM %s" % table).fetchone()
        finally:
            db.close()

    def assert_nothing_in_tmp(self):
        for dirpath, dirnames, files in os.walk(self.maildir):
            if os.path.basename(dirpath) == "tmp":
                self.assertEqual(files, [], dirpath)

    def seed_big_inbox(self, seed):
        with self.imap() as c:
            c.create_folder("Later")
            c.append_many("Later", tb.make_corpus(3, seed=seed + 1, start=500))
            c.append_many("INBOX", tb.make_corpus(60, seed=seed, size=100000))

    def test_sigint_during_a_pull_keeps_what_came(self):
        self.seed_big_inbox(61)
        # about 6 MB through a proxy that waits 25 ms per 16 KiB: ~10 s
        with tb.Proxy(self.bed.imap_port, delay=0.025) as proxy:
            self.write_config(tls="none", port=proxy.port)
            p = self.start("-v", "pull")
            self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) > 3), Path(p.err_path).read_text())
            out, err = self.signal_and_wait(p, signal.SIGINT, within=5)
        self.assertIn("stopping at the next safe point", err)
        self.assertIn("stopped by a signal during the download", err)
        self.assertNotIn("error", err.lower())
        self.assertIn("(stopped)", out)
        self.assertIn("stopped early by a signal", out)
        self.assertNotIn("failed", out)
        got = tb.count_messages(self.maildir)
        self.assertLess(got, 63, "the run went to its end")
        # every file that came is recorded as synced, none left half-done
        self.assertEqual(self.rows(), (got, 0))
        self.assert_nothing_in_tmp()
        self.write_config()
        r = self.pull()
        self.assertIn("%d new" % (63 - got), r.stdout)
        self.assertEqual(tb.count_messages(self.maildir), 63)
        self.assertSynced()

    def test_a_second_signal_quits_at_once(self):
        """The server stops answering in the middle of a FETCH: the first
        SIGINT waits for the next message (which does not come), a SIGTERM
        after it ends the run at once; the next run finishes without a duplicate."""
        self.seed_big_inbox(63)
        with tb.Proxy(self.bed.imap_port, delay=0.01) as proxy:
            self.write_config(tls="none", port=proxy.port)
            p = self.start("pull")
            self.assertTrue(wait_for(lambda: tb.count_messages(self.maildir) > 3), Path(p.err_path).read_text())
            proxy.pause()
            # Let the client take what was already on its way (a loaded
            # machine leaves it behind the proxy): then it waits inside a
            # message that does not come, with no safe point ahead.
            time.sleep(1.0)
            os.kill(p.pid, signal.SIGINT)
            time.sleep(1.0)
            self.assertIsNone(p.poll(), "the first signal ended a run that had no safe point yet")
            # the other signal counts as a second one too
            out, err = self.signal_and_wait(p, signal.SIGTERM, within=3)
            proxy.resume()
        self.assertEqual(err.count("stopping at the next safe point"), 1, err)
        self.write_config()
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 63)
        self.assertSynced()

    def test_sigterm_during_a_push_stops_between_chunks(self):
        """Uploads stop before the next chunk of 64 (each chunk is journalled
        before its APPENDs): the next push sends the rest, none twice."""
        self.pull()
        self.add_local_new(150, seed=65)
        # every APPEND waits two round trips of 40 ms: a chunk takes ~5 s
        with tb.Proxy(self.bed.imap_port, latency=0.02) as proxy:
            self.write_config(tls="none", port=proxy.port)
            p = self.start("sync")
            self.assertTrue(wait_for(lambda: self.server_count() > 0), Path(p.err_path).read_text())
            out, err = self.signal_and_wait(p, signal.SIGTERM, within=10)
        self.assertIn("stopped by a signal after", err)
        self.assertIn("stopped early by a signal", out)
        self.assertNotIn("failed", out)  # a stopped push does not go on to the folder's pull
        self.assertIn(self.server_count(), (64, 128), err)
        self.write_config()
        r = self.run_ok("push")
        self.assertEqual(self.server_count(), 150, r.stdout)
        self.assertEqual(tb.count_messages(self.maildir), 150)
        self.assertSynced()

    def test_sigterm_during_a_pop3_pull_with_json(self):
        """POP3 too; --json still prints one whole object, with the folder
        marked stopped, before the process ends by the signal."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(40, seed=67, size=100000, flags=False))
        with tb.Proxy(self.bed.pop3_port, delay=0.025) as proxy:
            self.write_config(type="pop3", tls="none", port=proxy.port)
            p = self.start("--json", "pull")
            # (a POP3 pull lands its messages in batches: watch the wire)
            self.assertTrue(wait_for(lambda: proxy.bytes_down > 1000000), Path(p.err_path).read_text())
            out, err = self.signal_and_wait(p, signal.SIGTERM, within=5)
        self.assertNotIn("stopping at the next safe point", err)  # --json: stdout is for scripts, stderr quiet too
        doc = json.loads(out)
        folder = doc["accounts"][0]["folders"][0]
        self.assertTrue(folder["stopped"], out)
        self.assertIn("stopped by a signal", doc["accounts"][0]["error"])
        got = tb.count_messages(self.maildir)
        self.assertLess(got, 40, "the run went to its end")
        self.assertEqual(self.rows("pop3"), (got, 0))
        self.assert_nothing_in_tmp()
        self.write_config(type="pop3", tls="none", port=self.bed.pop3_port)
        r = self.pull()
        self.assertIn("%d new" % (40 - got), r.stdout)
        self.assertEqual(tb.count_messages(self.maildir), 40)
        self.assertEqual(self.server_count(), 40)  # leave_on_server (default): nothing removed


if __name__ == "__main__":
    tb.main()
