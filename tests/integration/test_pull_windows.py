# SPDX-License-Identifier: MIT
"""test_pull_windows.py: a first pull of a big folder goes in windows of
UIDs from the top down (issue 18, point 7: peak memory bounded by the
window, not by the folder), against Dovecot.

The window is 10,000 UIDs; MAILSYNC_TEST_PULL_WINDOW (read by the program
for the tests) makes it 50, so 150 messages make three windows. Cheap:
one bed, 150 small messages written straight into the server's Maildir.

The same windows bound a resync after another client marked every message
read (more changes than a window: UID FETCH lo:hi (CHANGEDSINCE m), top
down), with QRESYNC (the SELECT's reports dropped past the window) and with
CONDSTORE alone (the CHANGEDSINCE answer dropped past the window), and the
rest of a first pull a killed run left.
"""

import os
import re
import shutil
import signal

import testbed as tb

N = 150
WINDOW = 50


class WindowsMixin:

    def setUp(self):
        super().setUp()
        old = os.environ.get("MAILSYNC_TEST_PULL_WINDOW")
        os.environ["MAILSYNC_TEST_PULL_WINDOW"] = str(WINDOW)
        self.addCleanup(lambda: os.environ.pop("MAILSYNC_TEST_PULL_WINDOW") if old is None
                        else os.environ.__setitem__("MAILSYNC_TEST_PULL_WINDOW", old))
        self.bed.seed_direct(self.user, "INBOX", tb.make_corpus(N, seed=1801, size=(300, 700), flags=False))

    def local(self):
        """{Message-ID: [LocalMessage]} of the local INBOX."""
        out = {}
        for m in tb.read_maildir(self.maildir).get("INBOX", []):
            out.setdefault(tb.message_id(m.data), []).append(m)
        return out

    def assertWhole(self):
        local = self.local()
        self.assertEqual(sum(len(v) for v in local.values()), N)
        self.assertEqual([k for k, v in local.items() if len(v) > 1], [], "doubled locally")
        self.assertEqual(self.server_count(), N)
        self.assertSynced()

    def test_all_seen_elsewhere_in_windows(self):
        self.run_ok("pull")
        self.assertWhole()
        with self.imap() as c:  # another client's "mark all read"
            c.select_folder("INBOX")
            c._ok(*c.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Seen)"), "STORE")
        r = self.run_ok("-vv", "pull")
        changed = r"C: \S+ UID FETCH %s \([^\r\n]*CHANGEDSINCE"
        if self.windows_asked:
            # the top window's changes, then 51:100 and 1:50, a window each
            self.assertRegex(r.stderr, changed % ("%d:\\*" % (N - WINDOW + 1)))
            self.assertRegex(r.stderr, changed % ("%d:%d" % (WINDOW + 1, N - WINDOW)))
            self.assertRegex(r.stderr, changed % ("1:%d" % WINDOW))
            self.assertEqual(len(re.findall(changed % r"1:\*", r.stderr)), self.whole_asked)
        else:
            # QRESYNC: every window taken from the EXAMINE's answer
            self.assertIn("EXAMINE INBOX (QRESYNC): %d changes past the window kept from its answer" % N, r.stderr)
            self.assertNotRegex(r.stderr, changed % r"\S+")
        self.assertNotRegex(r.stderr, r"C: \S+ UID FETCH [^\r\n]*BODY")
        self.assertIn("in windows of %d UIDs, from %d down" % (WINDOW, N - WINDOW + 1), r.stderr)
        self.assertWhole()
        local = self.local()
        self.assertEqual(sorted(k for k, v in local.items() if "S" not in v[0].letters), [], "not seen locally")
        again = self.run_ok("-vv", "pull")
        self.assertIn("INBOX: unchanged since the last sync", again.stderr)

    def mark_all_read(self):
        with self.imap() as c:  # another client's "mark all read"
            c.select_folder("INBOX")
            c._ok(*c.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Seen)"), "STORE")

    def window_sends(self, lines, lo, hi):
        """Indexes of the trace lines sending window lo:hi's CHANGEDSINCE."""
        pat = re.compile(r"C: \S+ UID FETCH %d:%d \([^\r\n]*CHANGEDSINCE" % (lo, hi))
        return [i for i, line in enumerate(lines) if pat.search(line)]

    def window_turns(self, lines, lo, hi):
        """Indexes of the trace lines where the pull turns to window lo:hi."""
        return [i for i, line in enumerate(lines) if "INBOX: next window: UIDs %d:%d" % (lo, hi) in line]

    def test_the_next_window_is_asked_for_ahead(self):
        """Each window below the top one is asked for before the one above
        it is applied (the server lists it meanwhile): its command is in
        the -vv trace before the pull turns to it ("next window"), once."""
        self.run_ok("pull")
        self.mark_all_read()
        lines = self.run_ok("-vv", "pull").stderr.splitlines()
        for lo, hi in ((WINDOW + 1, N - WINDOW), (1, WINDOW)):
            sent = self.window_sends(lines, lo, hi)
            turned = self.window_turns(lines, lo, hi)
            self.assertEqual(len(sent), 1, "window %d:%d asked for %d times" % (lo, hi, len(sent)))
            self.assertEqual(len(turned), 1)
            self.assertLess(sent[0], turned[0], "window %d:%d not asked for ahead" % (lo, hi))
        self.assertWhole()
        self.assertEqual(sorted(k for k, v in self.local().items() if "S" not in v[0].letters), [])

    def test_a_window_ahead_not_asked_for(self):
        """New mail in the top window is fetched before the windows below
        are asked for: the window sent ahead is read and dropped before
        that download (its reports never mixed into it), asked for again,
        and every message arrives once, all of them seen."""
        self.run_ok("pull")
        self.mark_all_read()
        new = tb.make_message(9001, size=900, seed=1802)
        with self.imap() as c:
            c.append_message("INBOX", new)
        lines = self.run_ok("-vv", "pull").stderr.splitlines()
        top = N + 2 - WINDOW  # UIDNEXT N + 2: the top window is top:*
        sent = self.window_sends(lines, top - WINDOW, top - 1)
        body = [i for i, line in enumerate(lines) if re.search(r"C: \S+ UID FETCH [^\r\n]*BODY", line)]
        self.assertEqual(len(sent), 2, "the window ahead was not dropped and asked for again")
        self.assertTrue(body and sent[0] < body[0] < sent[1], "not dropped for the download")
        local = self.local()
        self.assertEqual(sorted(len(v) for v in local.values()), [1] * (N + 1), "lost or doubled")
        self.assertEqual(local[tb.message_id(new)][0].data, new.replace(b"\r\n", b"\n"))
        self.assertEqual(sorted(k for k, v in local.items() if "S" not in v[0].letters), [tb.message_id(new)])
        self.assertEqual(self.server_count(), N + 1)
        self.assertSynced()

    def test_windows_ahead_in_both_passes(self):
        """One message expunged beside the "mark all read": the windows go
        down the folder in the first pass, its deletion waits for the
        second pass, which opens the folder and goes down it again; in
        each pass every window below the top one is asked for ahead, once,
        and the end state is the server's."""
        self.run_ok("pull")
        self.mark_all_read()
        with self.imap() as c:
            c.expunge_uids("INBOX", [11])  # (UIDs 1..150)
        lines = self.run_ok("-vv", "pull").stderr.splitlines()
        for lo, hi in ((WINDOW + 1, N - WINDOW), (1, WINDOW)):
            sent = self.window_sends(lines, lo, hi)
            turned = self.window_turns(lines, lo, hi)
            self.assertEqual(len(sent), 2, "window %d:%d: not once in each pass" % (lo, hi))
            self.assertEqual(len(turned), 2)
            self.assertTrue(sent[0] < turned[0] < sent[1] < turned[1], "window %d:%d not asked for ahead" % (lo, hi))
        local = self.local()
        self.assertEqual(sorted(len(v) for v in local.values()), [1] * (N - 1), "lost or doubled")
        self.assertEqual(sorted(k for k, v in local.items() if "S" not in v[0].letters), [])
        self.assertEqual(self.server_count(), N - 1)
        self.assertSynced()

    def test_first_pull_in_windows(self):
        r = self.run_ok("-vv", "pull")
        # the open lists the top window (UID FETCH 101:*), then 51:100, 1:50
        self.assertRegex(r.stderr, r"C: \S+ UID FETCH %d:\* \(" % (N - WINDOW + 1))
        self.assertRegex(r.stderr, r"C: \S+ UID FETCH %d:%d \(" % (WINDOW + 1, N - WINDOW))
        self.assertRegex(r.stderr, r"C: \S+ UID FETCH 1:%d \(" % WINDOW)
        self.assertNotRegex(r.stderr, r"C: \S+ UID FETCH 1:\* \(")
        self.assertRegex(r.stderr, r"C: \S+ UID FETCH [^\r\n]*BODY")  # (what the next run must not send)
        self.assertIn("first pull of %d messages in windows of %d UIDs" % (N, WINDOW), r.stderr)
        self.assertWhole()
        again = self.run_ok("-vv", "pull")
        self.assertNotRegex(again.stderr, r"C: \S+ UID FETCH [^\r\n]*BODY")  # no body asked for
        self.assertWhole()

    def message_ids(self):
        with self.imap() as c:
            return {m.uid: tb.message_id(m.data) for m in c.messages("INBOX")}

    def test_second_client_between_windows(self):
        """Another client's "mark all read", then, while the run is between
        the windows it applies (stopped by the test knob: the top window
        applied, the ones below not), more changes by a client: a message
        expunged and one marked unread in a window not applied yet, one
        marked unread in the applied top window, new mail. The run ends well
        with nothing doubled; the next one brings what changed meanwhile:
        the Maildir is the server's, each message once."""
        self.run_ok("pull")
        ids = self.message_ids()
        self.mark_all_read()
        p = self.start_stopped_at_window(1, "pull")
        new = tb.make_message(9101, size=800, seed=1803)
        with self.imap() as c:
            c.expunge_uids("INBOX", [20])
            c.set_flags("INBOX", [30, N - 10], ["\\Seen"], mode="-")
            c.append_message("INBOX", new)
        os.kill(p.pid, signal.SIGCONT)
        res = tb.finish_mailsync(p)
        self.assertEqual(res.code, 0, res)
        self.assertEqual([k for k, v in self.local().items() if len(v) > 1], [], "doubled locally")
        # the top window was applied before the change to it: the next run's
        self.assertIn("S", self.local()[ids[N - 10]][0].letters)
        self.run_ok("pull")
        local = self.local()
        self.assertEqual(sorted(len(v) for v in local.values()), [1] * N, "lost or doubled")
        self.assertNotIn(ids[20], local)
        self.assertEqual(local[tb.message_id(new)][0].data, new.replace(b"\r\n", b"\n"))
        self.assertEqual(sorted(k for k, v in local.items() if "S" not in v[0].letters),
                         sorted([ids[30], ids[N - 10], tb.message_id(new)]))
        self.assertSynced()

    def test_killed_between_windows_of_changes(self):
        """Another client's "mark all read"; the run killed as it turns to
        the second window (the top one applied, its files renamed and rows
        recorded; the folder's HIGHESTMODSEQ not saved). The next run is
        told every change again and completes them: every message seen,
        none downloaded again (same inodes), nothing doubled; the run after
        it finds INBOX unchanged."""
        self.run_ok("pull")
        inodes = {k: os.stat(v[0].path).st_ino for k, v in self.local().items()}
        self.mark_all_read()
        p = self.start_stopped_at_window(1, "pull")
        os.kill(p.pid, signal.SIGKILL)
        res = tb.finish_mailsync(p)
        self.assertEqual(res.code, -signal.SIGKILL, res)
        self.assertEqual(sum("S" in v[0].letters for v in self.local().values()), WINDOW,
                         "the kill fell elsewhere than after the top window")
        r = self.run_ok("-vv", "pull")
        self.assertNotRegex(r.stderr, r"C: \S+ UID FETCH [^\r\n]*BODY\.PEEK\[\]")
        self.assertWhole()
        local = self.local()
        self.assertEqual(sorted(k for k, v in local.items() if "S" not in v[0].letters), [])
        self.assertEqual({k: os.stat(v[0].path).st_ino for k, v in local.items()}, inodes)
        self.assertIn("INBOX: unchanged since the last sync", self.run_ok("-vv", "pull").stderr)

    def test_state_restored_from_before_the_changes(self):
        """The state DB restored from a backup made before another client's
        "mark all read" that a later run applied: the next sync finds it
        older than the Maildir, sets it aside and matches the messages by
        identity (the old HIGHESTMODSEQ is not trusted); it downloads no
        message, uploads none, doubles none; every message seen on both
        sides."""
        self.run_ok("pull")
        inodes = {k: os.stat(v[0].path).st_ino for k, v in self.local().items()}
        self.assertFalse(os.path.exists(str(self.state) + "-wal"))
        backup = self.work / "state-backup.sqlite"
        shutil.copy2(self.state, backup)
        self.mark_all_read()
        self.run_ok("pull")
        shutil.copy2(backup, self.state)
        r = self.run_ok("-vv", "sync")
        self.assertIn("older than the Maildir", r.stderr)
        self.assertNotRegex(r.stderr, r"C: \S+ UID FETCH [^\r\n]*BODY\.PEEK\[\]")
        self.assertNotRegex(r.stderr, r"C: \S+ APPEND")
        self.assertWhole()
        local = self.local()
        self.assertEqual(sorted(k for k, v in local.items() if "S" not in v[0].letters), [])
        self.assertEqual({k: os.stat(v[0].path).st_ino for k, v in local.items()}, inodes)
        self.assertTrue(all("S" in m.letters for m in self.server_state()["INBOX"]))

    def test_killed_in_the_second_window(self):
        # killed while it waits for the second window's listing: the top
        # window is in place and recorded
        self.run_killed_at("pull", (b"UID FETCH %d:%d (" % (WINDOW + 1, N - WINDOW), 1))
        first = self.local()
        self.assertEqual(len(first), WINDOW)
        inodes = {k: os.stat(v[0].path).st_ino for k, v in first.items()}
        px = tb.Proxy(self.bed.imap_port).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        self.run_ok("pull")
        self.assertWhole()
        # what the killed run brought is kept (same files), not fetched again
        self.assertEqual({k: os.stat(self.local()[k][0].path).st_ino for k in inodes}, inodes)
        bodies = sum(len(v[0].data) for k, v in self.local().items() if k not in inodes)
        self.assertLess(px.bytes_down, bodies + 200 * 1024, "more came down than the missing messages")
        self.assertGreater(px.bytes_down, bodies * 0.9)


class PullWindowsTest(WindowsMixin, tb.BedTestCase):
    bed_options = {"pool": 12}
    whole_asked = 0
    # QRESYNC: the changes come with the EXAMINE, those past a window kept
    # compact; the windows are taken from them, none asked for
    windows_asked = False
    test_the_next_window_is_asked_for_ahead = None
    test_a_window_ahead_not_asked_for = None
    test_windows_ahead_in_both_passes = None

    def test_new_mail_beside_the_kept_changes(self):
        """New mail in the top window of a "mark all read": the top window
        is listed by the server (the EXAMINE's answer does not say the new
        message's size), the windows below are taken from the answer (no
        UID FETCH for them); the new message arrives whole, once, unseen,
        every other message seen."""
        self.run_ok("pull")
        self.mark_all_read()
        new = tb.make_message(9001, size=900, seed=1802)
        with self.imap() as c:
            c.append_message("INBOX", new)
        r = self.run_ok("-vv", "pull")
        top = N + 2 - WINDOW
        self.assertEqual(len(re.findall(r"C: \S+ UID FETCH %d:\* \([^\r\n]*CHANGEDSINCE" % top, r.stderr)), 1)
        self.assertNotRegex(r.stderr, r"C: \S+ UID FETCH \d+:\d+ \([^\r\n]*CHANGEDSINCE")
        self.assertIn("changes past the window kept from its answer", r.stderr)
        local = self.local()
        self.assertEqual(sorted(len(v) for v in local.values()), [1] * (N + 1), "lost or doubled")
        self.assertEqual(local[tb.message_id(new)][0].data, new.replace(b"\r\n", b"\n"))
        self.assertEqual(sorted(k for k, v in local.items() if "S" not in v[0].letters), [tb.message_id(new)])
        self.assertSynced()

    def test_expunge_beside_the_kept_changes(self):
        """An expunge beside the "mark all read": both passes take their
        windows from their EXAMINE's answer; the expunged message goes,
        nothing else, every message left seen."""
        self.run_ok("pull")
        self.mark_all_read()
        with self.imap() as c:
            c.expunge_uids("INBOX", [11])  # (UIDs 1..150)
        r = self.run_ok("-vv", "pull")
        self.assertNotRegex(r.stderr, r"C: \S+ UID FETCH [^\r\n]*CHANGEDSINCE")
        local = self.local()
        self.assertEqual(sorted(len(v) for v in local.values()), [1] * (N - 1), "lost or doubled")
        self.assertEqual(sorted(k for k, v in local.items() if "S" not in v[0].letters), [])
        self.assertEqual(self.server_count(), N - 1)
        self.assertSynced()

    def test_killed_then_resumed_in_windows(self):
        self.run_killed_at("pull", (b"UID FETCH %d:%d (" % (WINDOW + 1, N - WINDOW), 1))
        first = self.local()
        self.assertEqual(len(first), WINDOW)
        inodes = {k: os.stat(v[0].path).st_ino for k, v in first.items()}
        self.write_config()
        r = self.run_ok("-vv", "pull")
        # the rest of the first pull goes in windows too, the top one
        # (recorded already) listed but not fetched again
        self.assertIn("completing a first pull in windows of %d UIDs" % WINDOW, r.stderr)
        self.assertRegex(r.stderr, r"C: \S+ UID FETCH %d:\* \(" % (N - WINDOW + 1))
        self.assertRegex(r.stderr, r"C: \S+ UID FETCH %d:%d \(" % (WINDOW + 1, N - WINDOW))
        self.assertRegex(r.stderr, r"C: \S+ UID FETCH 1:%d \(" % WINDOW)
        self.assertNotRegex(r.stderr, r"C: \S+ UID FETCH 1:\* \(")
        self.assertWhole()
        self.assertEqual({k: os.stat(self.local()[k][0].path).st_ino for k in inodes}, inodes)


class CondstoreWindowsTest(WindowsMixin, tb.BedTestCase):
    bed_options = {"pool": 8, "hide_capabilities": ("QRESYNC", "LIST-STATUS")}
    whole_asked = 1  # CONDSTORE: UID FETCH 1:* (CHANGEDSINCE), dropped past a window
    windows_asked = True
    test_first_pull_in_windows = None
    test_killed_in_the_second_window = None


if __name__ == "__main__":
    import unittest
    unittest.main()
