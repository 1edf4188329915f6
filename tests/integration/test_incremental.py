# SPDX-License-Identifier: MIT
"""test_incremental.py: resyncs that ask the server only for what changed.

With QRESYNC the server reports changed flags and vanished UIDs on SELECT;
with CONDSTORE alone, changed flags plus the list of UIDs; without either, a
full flag listing. Each path must end with the same Maildir as the server,
and an unchanged folder is not even selected.
"""

import os
import re
import sqlite3
import time
import unittest

import testbed as tb


class IncrementalMixin:
    # LIST-STATUS hidden: these tests are about the STATUS commands
    # pipelined with the LIST, the path of every server without it (with it
    # the counters come inside the LIST: test_extensions.py).
    bed_options = {"pool": 14, "hide_capabilities": ("LIST-STATUS",)}
    expect_path = None  # "QRESYNC", "CONDSTORE" or None (full listing)

    def seed(self):
        with self.imap() as c:
            return tb.seed_sample(c, per_folder=12)

    def change_server(self, uids):
        with self.imap() as c:
            inbox = uids["INBOX"]
            c.set_flags("INBOX", inbox[0:3], ["\\Seen", "\\Flagged"])
            c.set_flags("INBOX", inbox[3:4], ["\\Seen"], mode="-")
            # several separate expunges: several VANISHED ranges
            c.expunge_uids("INBOX", inbox[5:6])
            c.expunge_uids("INBOX", inbox[7:9])
            c.expunge_uids("Archive/2024", uids["Archive/2024"][0:1])
            c.append_many("INBOX", tb.make_corpus(2, seed=5, size=(500, 900), start=700))

    def test_changes_are_applied(self):
        uids = self.seed()
        self.pull()
        self.change_server(uids)
        r = self.pull("-v")
        if self.expect_path:
            self.assertIn("changed since modseq", r.stderr)
            self.assertIn("(%s)" % self.expect_path, r.stderr)
        else:
            self.assertNotIn("changed since modseq", r.stderr)
        if getattr(self, "expect_windows", None):  # a full listing a window at a time
            # more differences than a window of 3: counted, then applied window by window
            self.assertRegex(r.stderr, r"INBOX: listed in full in windows of %d UIDs: 5 messages new or "
                             r"changed, 3 of 12 gone; more than a window changed: applied window by "
                             r"window\n" % self.expect_windows)
        self.assertSynced()
        # and a run after that is a no-op
        snap = tb.snapshot_tree(self.maildir)
        self.pull()
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)

    def test_files_renamed_by_a_mua_are_found(self):
        """The incremental path looks files up by the name mailsync gave
        them; a MUA's rename (new flags, new/ -> cur/) must still be found."""
        uids = self.seed()
        self.pull()
        inbox = self.maildir / "INBOX"
        files = sorted(p for d in ("cur", "new") for p in (inbox / d).iterdir())
        renamed = {}
        for f in files[:2]:
            base, _, letters = f.name.partition(":2,")
            target = inbox / "cur" / ("%s:2,%s" % (base, "".join(sorted(set(letters) | {"F"}))))
            os.rename(f, target)
            renamed[base] = target
        # which UIDs are those two? match by content
        with self.imap() as c:
            server = {m.data_lf: m.uid for m in c.messages("INBOX")}
        by_uid = {server[p.read_bytes()]: p for p in renamed.values()}
        (u_flag, u_gone) = sorted(by_uid)
        with self.imap() as c:
            c.set_flags("INBOX", [u_flag], ["\\Answered"])
            c.expunge_uids("INBOX", [u_gone])
        self.pull()
        self.assertFalse(by_uid[u_gone].exists(), "expunged message still here")
        flagged = [p for p in (inbox / "cur").iterdir() if p.name.startswith(by_uid[u_flag].name.split(":2,")[0])]
        self.assertEqual(len(flagged), 1)
        letters = flagged[0].name.split(":2,")[1]
        self.assertIn("F", letters)  # the local change survives
        self.assertIn("R", letters)  # the server's arrives

    def test_unchanged_folders_are_skipped(self):
        self.seed()
        self.pull()
        r = self.pull("-v")
        skipped = r.stderr.count("unchanged since the last sync")
        if self.expect_path:
            self.assertEqual(skipped, len(tb.SAMPLE_FOLDERS), r.stderr)
        else:
            self.assertEqual(skipped, 0, r.stderr)
        # a change in one folder is still seen
        with self.imap() as c:
            c.set_flags("Thư đã gửi", [c.messages("Thư đã gửi")[0].uid], ["$Forwarded"])
        r = self.pull("-v")
        if self.expect_path:
            self.assertEqual(r.stderr.count("unchanged since the last sync"), len(tb.SAMPLE_FOLDERS) - 1)
        self.assertSynced()

    def test_status_of_known_folders_rides_with_the_list(self):
        """With CONDSTORE the STATUS of every folder synced before goes out
        with the LIST in one round trip (INBOX first), and a folder found
        unchanged is not asked again. The answers may come back in any
        order (RFC 3501 5.5): here a proxy holds INBOX's STATUS answer back
        until after the LIST's, and INBOX's new message must still come."""
        self.seed()
        self.pull()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=11, size=(400, 600), start=900))

        reordered, held = [], []

        def reorder(line):
            if held and len(held) < 2:          # INBOX's tagged answer
                held.append(line)
                return []
            if line.startswith(b"* STATUS INBOX ") and not reordered:
                held.append(line)
                return []
            if held and b"List completed" in line:
                out = [line] + held
                held.clear()
                reordered.append(True)
                return out
            return [line]

        px = tb.Proxy(self.bed.imap_port, record=True, rewrite_down=tb.line_rewriter(reorder)).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        r = self.pull("-v")
        self.assertSynced()
        up = bytes(px.upstream)
        statuses = [line for line in up.split(b"\r\n") if b" STATUS " in line]
        if self.expect_path:
            self.assertTrue(reordered, "the proxy never saw INBOX's STATUS answer")
            self.assertEqual(len(statuses), len(tb.SAMPLE_FOLDERS), up)   # none asked twice
            self.assertIn(b'STATUS "INBOX"', statuses[0])
            self.assertLess(up.index(b" STATUS "), up.index(b" LIST "))
            if self.expect_path == "QRESYNC":    # ENABLE rides along, first
                self.assertLess(up.index(b" ENABLE QRESYNC"), up.index(b" STATUS "))
                self.assertIn("(QRESYNC)", r.stderr)
            self.assertGreater(up.index(b" LIST "), up.rindex(b" STATUS "))
            self.assertEqual(r.stderr.count("unchanged since the last sync"), len(tb.SAMPLE_FOLDERS) - 1,
                             r.stderr)
        else:
            self.assertEqual(statuses, [], up)

    def test_many_folders_in_a_bounded_pipeline(self):
        """More known folders than commands kept in flight (32): every
        STATUS still goes out once, and a change in the last one is seen."""
        names = ["F%02d" % i for i in range(45)]
        with self.imap() as c:
            for name in names:
                c.create_folder(name)
                c.append_many(name, tb.make_corpus(1, seed=40 + len(name), size=(300, 400)))
        self.pull()
        with self.imap() as c:
            c.set_flags(names[-1], [c.messages(names[-1])[0].uid], ["$Pipelined"])
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        r = self.pull("-v")
        self.assertSynced()
        statuses = [x for x in bytes(px.upstream).split(b"\r\n") if b" STATUS " in x]
        if self.expect_path:
            self.assertEqual(len(statuses), len(names) + 1, statuses)   # + INBOX
            self.assertEqual(r.stderr.count("unchanged since the last sync"), len(names), r.stderr)
        else:
            self.assertEqual(statuses, [])

    def test_flag_changes_come_with_the_select(self):
        """With QRESYNC the flag changes come with the EXAMINE itself: no
        second listing when nothing is new, and only the UIDs from the old
        UIDNEXT on are asked for when something is. A changed message the
        state has no row for gets its size asked for (here it is over
        max_size, so it must be skipped, not downloaded). When the STATUS
        already said UIDNEXT moved, that listing goes out with the EXAMINE,
        without waiting for its answer."""
        with self.imap() as c:
            small = c.append_many("INBOX", tb.make_corpus(6, seed=21, size=(400, 700)))
            big = c.append_many("INBOX", tb.make_corpus(1, seed=22, size=(30000, 40000), start=50))[0]
        self.pull()
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)

        def wire(since):
            up = bytes(px.upstream[since:])
            return up, [x for x in up.split(b"\r\n") if b" UID FETCH " in x]

        with self.imap() as c:
            c.set_flags("INBOX", small[:2], ["\\Flagged"])
        self.pull()
        up, fetches = wire(0)
        if self.expect_path == "QRESYNC":
            self.assertNotIn(b"CHANGEDSINCE", up)
            self.assertEqual(fetches, [])
        self.assertSynced()

        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=23, size=(400, 700), start=60))
            c.set_flags("INBOX", small[2:3], ["\\Seen"])
        mark, mark_t = len(px.upstream), len(px.transcript)
        self.pull()
        up, fetches = wire(mark)
        if self.expect_path == "QRESYNC":
            self.assertNotIn(b"CHANGEDSINCE", up)
            listing = b" UID FETCH %d:* (UID FLAGS RFC822.SIZE)" % (big + 1)
            self.assertIn(listing, up)
            # The STATUS had said UIDNEXT moved: the listing went out with
            # the EXAMINE, before its answer came back.
            order = [(down, data) for down, data in px.transcript[mark_t:]]
            sent = next(i for i, (down, data) in enumerate(order) if not down and listing in data)
            answered = next(i for i, (down, data) in enumerate(order) if down and b"Examine completed" in data)
            self.assertLess(sent, answered, order)
        self.assertSynced()

        db = sqlite3.connect(str(self.state))
        with db:
            db.execute("DELETE FROM messages WHERE uid = ? AND folder_id = "
                       "(SELECT id FROM folders WHERE name = 'INBOX')", (big,))
        db.close()
        with self.imap() as c:
            c.set_flags("INBOX", [big], ["\\Flagged"])
        self.write_config(tls="none", port=px.port, max_size="20k", placeholders="no")
        mark = len(px.upstream)
        r = self.pull("-v")
        up, fetches = wire(mark)
        self.assertEqual(tb.count_messages(self.maildir), 9)
        if self.expect_path != "QRESYNC":
            # a full listing also sees the local file, and adopts it
            self.assertTrue("UID %d skipped" % big in r.stderr or "matched to the server by identity" in r.stderr,
                            r.stderr)
        else:
            self.assertIn("UID %d skipped" % big, r.stderr)
            self.assertEqual(len(fetches), 1, fetches)
            self.assertIn(b" UID FETCH %d (UID FLAGS RFC822.SIZE)" % big, fetches[0])

    def test_failed_examine_with_a_pipelined_listing(self):
        """Every folder has new mail, so each listing rides behind its
        EXAMINE. When the first EXAMINE fails (a proxy turns its OK into
        NO), the listing's answer is read and dropped, that folder is
        reported, and the session goes on in step: every other folder's
        new mail still arrives."""
        if self.expect_path != "QRESYNC":
            self.skipTest("the listing rides with the EXAMINE only with QRESYNC")
        self.seed()
        self.pull()
        with self.imap() as c:
            for i, folder in enumerate(tb.SAMPLE_FOLDERS):
                c.append_many(folder, tb.make_corpus(2, seed=71 + i, size=(400, 700), start=800 + 10 * i))

        def fail_first(line):
            # only one EXAMINE is in flight: the last one sent
            up = bytes(px.upstream)
            first = up.find(b" EXAMINE ")
            if b"Examine completed" in line and up.rfind(b" EXAMINE ") == first:
                return [line.split(b" ", 1)[0] + b" NO [UNAVAILABLE] not now"]
            return [line]

        px = tb.Proxy(self.bed.imap_port, record=True, rewrite_down=tb.line_rewriter(fail_first)).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 1, str(r))
        up = bytes(px.upstream)
        failed = tb.mutf7_decode(up[up.find(b" EXAMINE "):].split(b'"')[1].decode())
        self.assertIn(failed, r.stderr)
        self.assertIn(b"UID FETCH", up[up.find(b" EXAMINE "):up.find(b" EXAMINE ") + 200])
        state = self.server_state()
        state.pop(failed)
        for folder in state:
            local = self.maildir / folder
            n = sum(len(os.listdir(local / d)) for d in ("cur", "new"))
            self.assertEqual(n, len(state[folder]), folder)

    def pull_via_proxy(self, per_line=None, *args):
        """A pull through a recording proxy (rewriting the server's lines
        with per_line, if given); -> (result, proxy). Exit codes are the
        caller's to check."""
        rewrite = tb.line_rewriter(per_line) if per_line else None
        px = tb.Proxy(self.bed.imap_port, record=True, rewrite_down=rewrite).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        return self.mailsync("pull", *args), px

    def flag_three_folders(self, uids):
        """Flag changes (no new mail) in three of the sample's folders; ->
        their names in the order the pull visits them."""
        changed = ["Archive", "Archive/2024", "INBOX"]
        with self.imap() as c:
            for f in changed:
                c.set_flags(f, uids[f][:2], ["\\Flagged"])
        return changed

    def test_flag_changes_of_several_folders_examined_together(self):
        """Folders whose STATUS shows only flag changes are examined with
        one write: every EXAMINE is sent before the first is answered,
        each folder is examined once, the biggest first, and the result is
        the server's. The report still lists the folders in the account's
        order."""
        uids = self.seed()
        with self.imap() as c:  # Archive/2024 the biggest, then INBOX
            c.append_many("INBOX", tb.make_corpus(2, seed=91, size=(300, 400), start=950))
            c.append_many("Archive/2024", tb.make_corpus(4, seed=92, size=(300, 400), start=960))
        first = self.pull("-v")
        changed = self.flag_three_folders(uids)
        again, px = self.pull_via_proxy(None, "-v")
        self.assertEqual(again.code, 0, str(again))
        self.assertSynced()

        def report(r):
            return [line.split()[0] for line in r.stdout.splitlines() if line.startswith("  ")]

        self.assertEqual(len(report(first)), len(tb.SAMPLE_FOLDERS), first.stdout)
        self.assertEqual(report(again), [f for f in report(first) if f in changed], again.stdout)
        up = bytes(px.upstream)
        examines = [x for x in up.split(b"\r\n") if b" EXAMINE " in x]
        if self.expect_path != "QRESYNC":
            return
        self.assertEqual([x.split(b'"')[1] for x in examines], [b"Archive/2024", b"INBOX", b"Archive"], examines)
        order = px.transcript
        last_sent = max(i for i, (down, data) in enumerate(order) if not down and b" EXAMINE " in data)
        first_answer = next(i for i, (down, data) in enumerate(order) if down and b"Examine completed" in data)
        self.assertLess(last_sent, first_answer, [(down, data[:60]) for down, data in order])

    def test_examined_ahead_then_new_mail_after_all(self):
        """The STATUS of a folder said "no new mail" (a proxy shows the
        old UIDNEXT, as if mail came in between the STATUS and the
        EXAMINE), so its EXAMINE went out ahead with the others; its answer
        shows new mail. Asking for it needs that folder selected again
        after the answers queued behind it: they are read and dropped, the
        folder is examined again (plain), its new mail is fetched, and the
        folders after it are examined anew. Everything arrives."""
        if self.expect_path != "QRESYNC":
            self.skipTest("EXAMINEs go out ahead only with QRESYNC")
        uids = self.seed()
        self.pull()
        changed = self.flag_three_folders(uids)
        db = sqlite3.connect(str(self.state))
        old_next = db.execute("SELECT uidnext FROM folders WHERE name = 'Archive'").fetchone()[0]
        db.close()
        with self.imap() as c:
            c.append_many("Archive", tb.make_corpus(3, seed=81, size=(400, 700), start=900))

        def hide_new_mail(line):
            if line.startswith(b'* STATUS "Archive" ') or line.startswith(b"* STATUS Archive "):
                line = re.sub(rb"UIDNEXT \d+", b"UIDNEXT %d" % old_next, line)
                line = re.sub(rb"MESSAGES \d+", b"MESSAGES 12", line)
            return [line]

        r, px = self.pull_via_proxy(hide_new_mail)
        self.assertEqual(r.code, 0, str(r))
        self.assertSynced()
        lines = [x for x in bytes(px.upstream).split(b"\r\n") if b" EXAMINE " in x]
        names = [x.split(b'"')[1].decode() if b'"' in x else x.split()[2].decode() for x in lines]
        # ahead: all three; again: Archive (plain, for its new mail), then
        # the two whose queued answers were dropped
        self.assertEqual(names[:3], changed, lines)
        self.assertEqual(names[3:], ["Archive", "Archive/2024", "INBOX"], lines)
        self.assertNotIn(b"QRESYNC", lines[3])
        self.assertIn(b"QRESYNC", lines[4])

    def test_failed_examine_sent_ahead(self):
        """Of the EXAMINEs sent ahead, the first answered fails (a proxy
        turns its OK into NO): that folder is reported (exit 1), and the
        others' answers, already on their way, are still read as theirs:
        their flag changes arrive, each folder examined once."""
        if self.expect_path != "QRESYNC":
            self.skipTest("EXAMINEs go out ahead only with QRESYNC")
        uids = self.seed()
        self.pull()
        self.flag_three_folders(uids)
        failed = []

        def fail_first(line):
            if b"Examine completed" in line and not failed:
                failed.append(line.split(b" ", 1)[0])
                return [failed[0] + b" NO [UNAVAILABLE] not now"]
            return [line]

        r, px = self.pull_via_proxy(fail_first)
        self.assertEqual(r.code, 1, str(r))
        up = bytes(px.upstream)
        examines = [x for x in up.split(b"\r\n") if b" EXAMINE " in x]
        self.assertEqual(len(examines), 3, examines)
        name = next(x for x in examines if x.startswith(failed[0] + b" ")).split(b'"')[1].decode()
        self.assertIn(name, r.stderr)
        state = self.server_state()
        self.assertSynced(state, folders=[f for f in state if f != name])
        # the failed one is still as the last run left it
        self.assertTrue(tb.compare_maildir(self.maildir, state, folders=[name]), "the failed folder was synced")

    def test_select_reports_without_flags_fall_back(self):
        """A server whose FETCH reports during the EXAMINE lack FLAGS (or
        UID) is not trusted for the changes: the full CHANGEDSINCE listing
        is asked for instead, and the flags still arrive."""
        if self.expect_path != "QRESYNC":
            self.skipTest("QRESYNC path only")
        uids = self.seed()
        self.pull()
        with self.imap() as c:
            c.set_flags("INBOX", uids["INBOX"][:3], ["\\Flagged"])
        stripped = []

        def strip_flags(line):
            if line.startswith(b"* ") and b" FETCH (" in line and b"FLAGS (" in line and not stripped:
                head, _, rest = line.partition(b"FLAGS (")
                line = head.rstrip() + b" " + rest.partition(b")")[2].lstrip()
                line = line.replace(b"( ", b"(").replace(b" )", b")")
                stripped.append(line)
            return [line]

        def pull_through(per_line):
            """One pull through a proxy rewriting the server's lines; what
            the client sent."""
            px = tb.Proxy(self.bed.imap_port, record=True, rewrite_down=tb.line_rewriter(per_line)).start()
            self.addCleanup(px.stop)
            self.write_config(tls="none", port=px.port)
            self.pull()
            self.write_config()
            return bytes(px.upstream)

        up = pull_through(strip_flags)
        self.assertTrue(stripped, "no FETCH report came with the EXAMINE")
        self.assertIn(b"CHANGEDSINCE", up)
        self.assertSynced()

        # A server that reports nothing at all although HIGHESTMODSEQ moved:
        # its silence is not trusted either.
        with self.imap() as c:
            c.set_flags("INBOX", uids["INBOX"][3:5], ["$Silent"])
        dropped, examined = [], []

        def drop_fetches(line):             # those of the EXAMINE only
            if not examined and line.startswith(b"* ") and b" FETCH (" in line:
                dropped.append(line)
                return []
            if b"Examine completed" in line:
                examined.append(True)
            return [line]

        up = pull_through(drop_fetches)
        self.assertTrue(dropped, "no FETCH report came with the EXAMINE")
        self.assertIn(b"CHANGEDSINCE", up)
        self.assertSynced()

    def test_expunges_weighed_against_the_whole_folder(self):
        """The incremental path reads only the rows of changed and vanished
        UIDs; the mass-deletion guard must still weigh deletions against
        the whole folder: 25 of 60 (42 %) pass (25 of the 25 rows read
        would not), all of the remaining 35 do not."""
        with self.imap() as c:
            uids = c.append_many("INBOX", tb.make_corpus(60, seed=9, size=(400, 700)))
        self.pull()
        with self.imap() as c:
            c.expunge_uids("INBOX", uids[:25])
        self.pull()
        self.assertSynced()
        with self.imap() as c:
            c.expunge_uids("INBOX", uids[25:])
        before = tb.snapshot_tree(self.maildir)
        r = self.pull(expect=1)
        self.assertIn("max_delete", r.stderr)
        self.assertEqual(before, tb.snapshot_tree(self.maildir))

    def test_quiet_run_leaves_the_db_alone(self):
        """A run that finds nothing changed writes nothing to the state DB
        (no WAL, no fsync, no checkpoint), yet `status` shows its time; an
        error from the run before it is still cleared."""
        if not self.expect_path:
            self.skipTest("without CONDSTORE every folder is listed and recorded")
        self.seed()
        self.pull()
        state_bytes = self.state.read_bytes()
        first = self.run_ok("status", "--json").json()["accounts"][0]
        tb.wait_past_second(first["last_sync"])
        self.pull()
        self.assertEqual(self.state.read_bytes(), state_bytes, "a quiet run wrote to the DB")
        self.assertFalse(os.path.exists(str(self.state) + "-wal"))
        acc = self.run_ok("status", "--json").json()["accounts"][0]
        self.assertGreater(acc["last_sync"], first["last_sync"])
        self.assertIsNone(acc["last_error"])
        for f in acc["folders"]:
            self.assertEqual(f["last_sync"], acc["last_sync"], f)
        # a folder that changed since is no longer vouched for by that run
        tb.wait_past_second(acc["last_sync"])
        with self.imap() as c:
            c.set_flags("Archive", [c.messages("Archive")[0].uid], ["\\Flagged"])
        started = int(time.time())
        self.pull()
        self.assertNotEqual(self.state.read_bytes(), state_bytes)
        third = self.run_ok("status", "--json").json()["accounts"][0]
        self.assertGreater(third["last_sync"], acc["last_sync"])
        for f in third["folders"]:  # this run's time, whichever second it fell in
            self.assertTrue(started <= f["last_sync"] <= third["last_sync"], (f, started))
        # a failed run is recorded; the quiet run after it clears the error
        # (a run that fails after its login: one that fails before it
        # changes nothing on disk)
        with tb.Proxy(self.bed.imap_port, stall_on=(b" LIST ", 1)) as px:
            self.write_config(tls="none", port=px.port, timeout=2)
            self.pull(expect=4)
        err = self.run_ok("status", "--json").json()["accounts"][0]
        self.assertIsNotNone(err["last_error"])
        self.assertEqual(err["last_sync"], third["last_sync"])
        self.write_config()
        self.pull()
        ok = self.run_ok("status", "--json").json()["accounts"][0]
        self.assertIsNone(ok["last_error"])
        self.assertGreaterEqual(ok["last_sync"], third["last_sync"])

    def test_uidvalidity_change_falls_back_to_rematch(self):
        uids = self.seed()
        self.pull()
        with self.imap() as c:
            before = c.status_of("Archive")["UIDVALIDITY"]
            tb.wait_past_second(before)  # Dovecot's UIDVALIDITY is the creation second
            msgs = c.messages("Archive")
            c.select_folder("INBOX")
            c.delete_folder("Archive")
            c.create_folder("Archive")
            for m in msgs:
                c.append_message("Archive", m.data, sorted(set(m.flags) - {"\\Recent"}), m.internaldate)
            self.assertNotEqual(c.status_of("Archive")["UIDVALIDITY"], before)
        r = self.pull("--json")
        archive = [f for f in r.json()["accounts"][0]["folders"] if f["name"] == "Archive"][0]
        self.assertEqual(archive["fetched"], 0, str(r))
        self.assertSynced()


class QresyncTest(IncrementalMixin, tb.BedTestCase):
    expect_path = "QRESYNC"
    bed_options = {"pool": 15, "hide_capabilities": ("LIST-STATUS",)}

    def test_more_vanished_than_held(self):
        """More vanished UIDs than an incremental listing holds (the cap,
        2^20 UIDs, 4 MiB, made 2 by MAILSYNC_TEST_VANISHED_MAX; a
        server may report every gap of a sparse folder): the folder is
        listed in full instead of failing, every expunge and flag change
        lands, nothing else is deleted, and the next run is incremental
        again."""
        uids = self.seed()
        self.pull()
        self.change_server(uids)  # 3 UIDs gone from INBOX, 1 from Archive/2024
        old = os.environ.get("MAILSYNC_TEST_VANISHED_MAX")
        os.environ["MAILSYNC_TEST_VANISHED_MAX"] = "2"
        self.addCleanup(lambda: os.environ.pop("MAILSYNC_TEST_VANISHED_MAX") if old is None
                        else os.environ.__setitem__("MAILSYNC_TEST_VANISHED_MAX", old))
        r = self.pull("-v")
        self.assertRegex(r.stderr, r"EXAMINE INBOX \(QRESYNC\): more than 2 vanished UIDs since modseq \d+: "
                         r"listed in full")
        self.assertNotRegex(r.stderr, r"EXAMINE Archive/2024 \(QRESYNC\): more than")
        self.assertSynced()
        again = self.pull("-v")
        self.assertNotIn("listed in full", again.stderr)
        self.assertSynced()


# The same tests on a server without QRESYNC and on one without CONDSTORE
# either: test_incremental_condstore.py and test_incremental_nocondstore.py
# (one file per server, so that ctest -j runs the three side by side).


if __name__ == "__main__":
    unittest.main()
