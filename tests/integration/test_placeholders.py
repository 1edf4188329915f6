# SPDX-License-Identifier: MIT
"""test_placeholders.py: quick view first (issue 18, point 4).

With `max_size` and `placeholders = yes` a message over the limit is stored
as a placeholder: its real header (BODY.PEEK[HEADER]) and a note, with the
server's flags, recorded as delivered. The full message replaces it,
keeping its name, when the user flags it (next pull/sync) or runs
`mailsync fetch FILE` / `--all`; a kill mid-way leaves one readable file
and the next run ends with one message on each side. A first pull fetches
newest first.

Cheap on purpose: one bed, five messages (two of 200 KB), notmuch's index
in the test's own work dir.
"""

import os
import re
import signal
import sqlite3
import subprocess
import shutil
import time
import unittest

import testbed as tb

BIG = 200000
LIMIT = "50K"


class PlaceholderTest(tb.BedTestCase):
    bed_options = {"pool": 18}

    def seed(self):
        """Three small messages and two big ones (one \\Seen) on the server."""
        with self.imap() as c:
            for n in range(3):
                c.append_message("INBOX", tb.make_message(n, size=2000, subject="small note %d" % n), (), 1600000000 + n)
            self.big = [c.append_message("INBOX", tb.make_message(10, size=BIG, subject="Quarterly figures"),
                                         (), 1600000010),
                        c.append_message("INBOX", tb.make_message(11, size=BIG, subject="Holiday photos"),
                                         ("\\Seen",), 1600000011)]

    def marks(self):
        """{uid: placeholder mark} of INBOX's rows."""
        db = sqlite3.connect("file:%s?mode=ro" % self.state, uri=True)
        try:
            return {uid: mark for uid, mark in db.execute(
                "SELECT m.uid, m.placeholder FROM messages m JOIN folders f ON m.folder_id = f.id "
                "WHERE f.name = 'INBOX'")}
        finally:
            db.close()

    def local(self):
        return tb.read_maildir(self.maildir).get("INBOX", [])

    def by_subject(self, word):
        found = [m for m in self.local() if word.encode() in m.data.split(b"\n\n", 1)[0]]
        self.assertEqual(len(found), 1, "exactly one local file with %r in its header" % word)
        return found[0]

    def server(self):
        with self.imap() as c:
            return {m.uid: m for m in c.messages("INBOX")}

    def assert_one_of_each(self):
        """Five messages on both sides, no duplicate by content on either."""
        srv = self.server()
        self.assertEqual(len(srv), 5, "server count")
        self.assertEqual(len(set(m.data for m in srv.values())), 5, "a duplicate on the server")
        local = self.local()
        self.assertEqual(len(local), 5, "local count")
        self.assertEqual(len(set(tb.message_id(m.data) for m in local)), 5, "a duplicate locally")

    def pull_through_proxy(self, *args):
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port, max_size=LIMIT, placeholders="yes")
        r = self.run_ok(*args)
        px.stop()
        return r, px

    def test_placeholders_created_synced_and_replaced_when_flagged(self):
        self.seed()
        r, px = self.pull_through_proxy("pull")
        # headers only for the two big ones: far fewer bytes than their bodies
        self.assertLess(px.bytes_down, 60000, "the big bodies were downloaded")
        self.assertEqual(px.upstream.count(b"BODY.PEEK[HEADER]"), 1, "one header fetch for the placeholders")
        self.assertIn("2 over max_size stored as placeholders", r.stdout)
        local = self.local()
        self.assertEqual(len(local), 5)
        q, h = self.by_subject("Quarterly"), self.by_subject("Holiday")
        for ph in (q, h):
            head = ph.data.split(b"\n\n", 1)[0]
            self.assertIn(b"X-Mailsync-Placeholder: ", head)
            self.assertRegex(head, rb"\nSubject: \[placeholder\] ")
            self.assertIn(b"mailsync fetch", ph.data)
            self.assertLess(len(ph.data), 8000)
        self.assertEqual(h.letters, "S", "the server's flags")
        small = [m for m in local if m not in (q, h)]
        self.assertTrue(all(b"[placeholder]" not in m.data for m in small), "a small message became a placeholder")
        marks = self.marks()
        self.assertEqual(len(marks), 5)
        self.assertEqual({u for u, k in marks.items() if k}, set(self.big))

        # readable by notmuch: indexed, found by its subject
        if shutil.which("notmuch"):
            cfg = self.work / "notmuch-config"
            cfg.write_text("[database]\npath=%s\nmail_root=%s\n[new]\ntags=inbox\n[maildir]\n"
                           "synchronize_flags=false\n" % (self.work / "nmdb", self.maildir))
            env = dict(os.environ, NOTMUCH_CONFIG=str(cfg))
            (self.work / "nmdb").mkdir()
            subprocess.run(["notmuch", "new", "--quiet"], env=env, check=True, timeout=60)
            out = subprocess.run(["notmuch", "search", "--output=files", "subject:Quarterly"], env=env,
                                 check=True, timeout=60, capture_output=True, text=True).stdout.split()
            self.assertEqual(out, [q.path])

        # a resync downloads nothing again; a sync uploads nothing
        r, px = self.pull_through_proxy("sync")
        self.assertNotIn(b"BODY", px.upstream.replace(b"BODY.PEEK[HEADER.FIELDS", b""),
                         "a resync fetched a body or header")
        self.assert_one_of_each()
        # flags sync both ways: the server's \Answered comes down...
        with self.imap() as c:
            c.set_flags("INBOX", [self.big[0]], ["\\Answered"])
        self.pull_through_proxy("sync")
        q = self.by_subject("Quarterly")
        self.assertEqual(q.letters, "R")
        self.assertIn(b"[placeholder]", q.data)

        # ... and the user's \Flagged goes up, and brings the full message
        flagged = os.path.join(os.path.dirname(os.path.dirname(q.path)), "cur", q.uniq + ":2,FR")
        os.rename(q.path, flagged)
        ino = os.stat(flagged).st_ino
        r, px = self.pull_through_proxy("sync")
        self.assertGreater(px.bytes_down, BIG, "the full message was not downloaded")
        srv = self.server()
        self.assertIn("\\Flagged", srv[self.big[0]].flags)
        full = self.by_subject("Quarterly")
        self.assertEqual(full.path, flagged, "the full message took the placeholder's name")
        self.assertNotEqual(os.stat(flagged).st_ino, ino)
        self.assertEqual(full.data, srv[self.big[0]].data_lf)
        self.assertEqual(full.letters, "FR")
        self.assertEqual(self.marks()[self.big[0]], 0)
        self.assertEqual(self.marks()[self.big[1]], 1, "the other placeholder stays")
        self.assert_one_of_each()
        # the next sync changes nothing
        r, px = self.pull_through_proxy("sync")
        self.assertLess(px.bytes_down, 20000)
        self.assert_one_of_each()
        # max_size raised above it: the last placeholder is replaced too
        self.write_config(max_size="1M")
        self.run_ok("pull")
        self.assertEqual(self.by_subject("Holiday").data, self.server()[self.big[1]].data_lf)
        self.assertEqual(set(self.marks().values()), {0})
        self.assertSynced()

    def test_fetch_command_and_kills(self):
        self.seed()
        self.pull_through_proxy("pull")
        h, q = self.by_subject("Holiday"), self.by_subject("Quarterly")
        # usage: nothing named, a file that is no placeholder
        self.write_config(max_size=LIMIT, placeholders="yes")
        self.run_ok("fetch", expect=2)
        small = [m for m in self.local() if m.path not in (h.path, q.path)][0]
        r = self.run_ok("fetch", small.path, expect=1)
        self.assertIn("not a placeholder", r.stderr)

        # killed while the body streams in: the placeholder stays, nothing else
        px = tb.Proxy(self.bed.imap_port, stall_on=(b"BODY.PEEK[]", 1)).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port, max_size=LIMIT, placeholders="yes")
        p = tb.start_mailsync(["fetch", h.path], config=self.config_path, workdir=self.work)
        try:
            self.assertTrue(px.stalled.wait(30), "kill point never reached")
            time.sleep(0.2)
            os.kill(p.pid, signal.SIGKILL)
        finally:
            res = tb.finish_mailsync(p)
        self.assertEqual(res.code, -signal.SIGKILL)
        self.assertEqual(self.by_subject("Holiday").data, h.data, "the placeholder changed")
        self.assertEqual(len(self.local()), 5)

        # fetch FILE: that one only, by its name
        self.write_config(max_size=LIMIT, placeholders="yes")
        r = self.run_ok("fetch", h.path)
        self.assertIn("1 placeholders replaced", r.stdout)
        srv = self.server()
        self.assertEqual(self.by_subject("Holiday").data, srv[self.big[1]].data_lf)
        self.assertEqual(self.by_subject("Holiday").path, h.path)
        self.assertIn(b"[placeholder]", self.by_subject("Quarterly").data)

        # a kill after the rename, before the mark is cleared: the row still
        # says placeholder while the file is whole (what such a kill leaves)
        db = sqlite3.connect(str(self.state))
        db.execute("UPDATE messages SET placeholder = 1 WHERE uid = ?", (self.big[1],))
        db.commit()
        db.close()
        # fetch --all: the other one is fetched; the whole one only loses its mark
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port, max_size=LIMIT, placeholders="yes")
        r = self.run_ok("-v", "--json", "fetch", "--all")
        px.stop()
        self.assertEqual(tb.json_schema_errors(r.json()), [], r.stdout)
        self.assertIn("is here in full already", r.stderr)
        self.assertLess(px.bytes_down, BIG * 1.5, "the whole message was downloaded again")
        self.assertEqual(self.marks(), {u: 0 for u in self.marks()})
        srv = self.server()
        self.assertEqual(self.by_subject("Quarterly").data, srv[self.big[0]].data_lf)
        self.assert_one_of_each()
        self.write_config(max_size=LIMIT, placeholders="yes")
        self.run_ok("sync")
        self.assertSynced()

    def test_lost_state_pull_leaves_no_placeholder_beside_its_message(self):
        """A pull after a lost state DB downloads the full message (max_size
        raised meanwhile): the placeholder beside it goes, by that pull, not
        by a later push; a placeholder whose message is not in full on disk
        stays, and no full message is removed."""
        self.seed()
        self.pull_through_proxy("pull")
        q, h = self.by_subject("Quarterly"), self.by_subject("Holiday")
        small = sorted(m.path for m in self.local() if m.path not in (q.path, h.path))
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(str(self.state) + suffix):
                os.unlink(str(self.state) + suffix)
        # Holiday's message is gone from the server meanwhile: no full copy
        # comes down for it, so its placeholder must stay
        self.write_config()
        with self.imap() as c:
            c.expunge_uids("INBOX", [self.big[1]])
        self.run_ok("pull")
        local = self.local()
        srv = self.server()
        quarterly = [m for m in local if b"Quarterly" in m.data.split(b"\n\n", 1)[0]]
        self.assertEqual(len(quarterly), 1, "the placeholder stayed beside its full message")
        self.assertEqual(quarterly[0].data, srv[self.big[0]].data_lf, "the one left is not the full message")
        self.assertTrue(os.path.exists(h.path), "a placeholder without its full message was removed")
        self.assertEqual(sorted(m.path for m in local if m.path not in (quarterly[0].path, h.path)), small,
                         "a full message was removed")
        self.assertEqual(len(local), 5)
        self.assertEqual(len(srv), 4)

    def test_lost_state_adopts_the_placeholders(self):
        """A lost state DB, max_size unchanged: the pull takes each
        placeholder for its message again (its Message-ID, and the size its
        field records = the server's), marked, flags and file as they were;
        no second placeholder, nothing downloaded. Flagged, one then brings
        its full message, once."""
        self.seed()
        self.pull_through_proxy("pull")
        q, h = self.by_subject("Quarterly"), self.by_subject("Holiday")
        inodes = {m.path: os.stat(m.path).st_ino for m in self.local()}
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(str(self.state) + suffix):
                os.unlink(str(self.state) + suffix)
        r, px = self.pull_through_proxy("pull")
        self.assertNotIn(b"BODY.PEEK[HEADER]", px.upstream, "a second placeholder was fetched")
        self.assertLess(px.bytes_down, 20000, "a body was downloaded")
        self.assertEqual({m.path: os.stat(m.path).st_ino for m in self.local()}, inodes, "files changed")
        self.assertEqual(self.by_subject("Holiday").letters, "S")
        self.assertEqual({u for u, k in self.marks().items() if k}, set(self.big), "placeholders not marked")
        self.assert_one_of_each()
        flagged = q.path.split(":2,")[0] + ":2,F"
        os.rename(q.path, flagged)
        r, px = self.pull_through_proxy("sync")
        self.assertGreater(px.bytes_down, BIG)
        self.assertLess(px.bytes_down, 2 * BIG, "the full message came down more than once")
        full = self.by_subject("Quarterly")
        self.assertEqual(full.path, flagged)
        self.assertEqual(full.data, self.server()[self.big[0]].data_lf)
        self.assertIn(b"[placeholder]", self.by_subject("Holiday").data)
        self.assert_one_of_each()

    def test_retention_keeps_what_only_the_server_has_whole(self):
        """server_retention_days removes old messages stored here from the
        server; a placeholder is not its message: those stay there. A
        restored Maildir on a fresh state DB: `push` uploads nothing (no
        placeholder goes up as mail), and the next sync takes the
        placeholders for their messages again."""
        self.seed()
        self.pull_through_proxy("pull")
        local = {m.path: m.data for m in self.local()}
        self.write_config(max_size=LIMIT, placeholders="yes", server_retention_days="30")
        r = self.run_ok("-v", "pull")
        self.assertIn("only a placeholder of it is here", r.stderr)
        self.assertEqual(sorted(self.server()), sorted(self.big), "not the placeholders' messages alone are left")
        self.assertEqual({m.path: m.data for m in self.local()}, local, "local files changed")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(str(self.state) + suffix):
                os.unlink(str(self.state) + suffix)
        self.write_config(max_size=LIMIT, placeholders="yes")
        self.run_ok("push")
        self.assertEqual(sorted(self.server()), sorted(self.big), "push changed the server")
        self.run_ok("sync")
        srv = self.server()
        self.assertEqual(sorted(srv), sorted(self.big), "sync changed the server")
        self.assertEqual({m.path: m.data for m in self.local()}, local, "local files changed")
        self.assertEqual({u for u, k in self.marks().items() if k}, set(self.big))

    def test_placeholder_moved_to_another_folder_keeps_its_mark(self):
        """A placeholder moved by the user to another folder (paired as a
        local move) is still a placeholder there: flagged, the next sync
        brings its full message, under its name, with no second copy."""
        with self.imap() as c:
            c.create_folder("Archive")
        self.seed()
        self.pull_through_proxy("pull")
        q = self.by_subject("Quarterly")
        dest = os.path.join(tb.local_folder_path(self.maildir, "Archive"), "cur", os.path.basename(q.path))
        os.rename(q.path, dest)
        self.write_config(max_size=LIMIT, placeholders="yes")
        self.run_ok("sync")
        with self.imap() as c:
            archive = c.messages("Archive")
        self.assertEqual(len(archive), 1, "the move did not reach the server")
        flagged = dest.split(":2,")[0] + ":2,F"
        os.rename(dest, flagged)
        self.assert_flagged_placeholder_replaced(flagged)

    def marks_in(self, folder):
        """{uid: placeholder mark} of a folder's rows."""
        db = sqlite3.connect("file:%s?mode=ro" % self.state, uri=True)
        try:
            return {uid: mark for uid, mark in db.execute(
                "SELECT m.uid, m.placeholder FROM messages m JOIN folders f ON m.folder_id = f.id "
                "WHERE f.name = ?", (folder,))}
        finally:
            db.close()

    def move_as_mutt(self, m, folder, data=None, n=1):
        """Move the local file m into folder as mutt does: a new unique
        name, the same bytes (or data), the old file removed."""
        dest = os.path.join(tb.local_folder_path(self.maildir, folder), "cur",
                            "1700000000.M%dP1.mutt:2,%s" % (n, m.letters))
        with open(dest, "wb") as f:
            f.write(m.data if data is None else data)
        os.unlink(m.path)
        return dest

    def test_placeholder_moved_under_a_new_name(self):
        """A placeholder moved to another folder under a new name (mutt;
        copy + delete as notmuch-move does) is paired by its
        X-Mailsync-Placeholder size: the message moves on the server (never
        deleted, the placeholder never uploaded), the file stays a marked
        placeholder; flagged, the next sync brings its full message. One
        edited so it cannot be paired (another size in its field) keeps its
        message on the server, with a warning, and is not uploaded."""
        with self.imap() as c:
            c.create_folder("Archive")
        self.seed()
        self.pull_through_proxy("pull")
        q, h = self.by_subject("Quarterly"), self.by_subject("Holiday")
        # Quarterly's mark lost too (its row says a whole message): the file tells
        db = sqlite3.connect(str(self.state))
        db.execute("UPDATE messages SET placeholder = 0 WHERE uid = ?", (self.big[0],))
        db.commit()
        db.close()
        dest = self.move_as_mutt(q, "Archive")
        edited = self.move_as_mutt(h, "Archive", re.sub(rb"X-Mailsync-Placeholder: \d+", b"X-Mailsync-Placeholder: 7",
                                                        h.data), n=2)
        self.write_config(max_size=LIMIT, placeholders="yes")
        r = self.run_ok("sync")
        with self.imap() as c:
            archive = c.messages("Archive")
            inbox = c.messages("INBOX")
        self.assertEqual(len(archive), 1, "not one message in Archive on the server")
        self.assertEqual(tb.message_id(archive[0].data), tb.message_id(q.data))
        self.assertGreater(len(archive[0].data), BIG, "the placeholder was uploaded instead of a server move")
        self.assertEqual(len(inbox), 4, "the server's message of the unpaired placeholder was deleted")
        self.assertIn(tb.message_id(h.data), [tb.message_id(m.data) for m in inbox])
        self.assertIn("could not be paired", r.stderr)
        files = {m.path: m for m in tb.read_maildir(self.maildir).get("Archive", [])}
        self.assertEqual(sorted(files), sorted([dest, edited]))
        self.assertEqual(files[dest].data, q.data, "the placeholder's file changed")
        self.assertEqual(list(self.marks_in("Archive").values()), [1], "the moved placeholder lost its mark")
        # again: nothing changes, nothing is uploaded
        r = self.run_ok("sync")
        self.assertIn("could not be paired", r.stderr)
        with self.imap() as c:
            self.assertEqual(len(c.messages("Archive")), 1)
            self.assertEqual(len(c.messages("INBOX")), 4)
        # the user removes the unpaired one: its message's deletion goes to the server
        os.unlink(edited)
        flagged = dest.split(":2,")[0] + ":2,F"
        os.rename(dest, flagged)
        self.run_ok("sync")
        with self.imap() as c:
            archive = c.messages("Archive")
            inbox = c.messages("INBOX")
        self.assertEqual(len(inbox), 3)
        self.assertNotIn(tb.message_id(h.data), [tb.message_id(m.data) for m in inbox])
        self.assertEqual(len(archive), 1)
        self.assertIn("\\Flagged", archive[0].flags)
        files = tb.read_maildir(self.maildir).get("Archive", [])
        self.assertEqual([m.path for m in files], [flagged], "one file in Archive, under its name")
        self.assertEqual(files[0].data, archive[0].data_lf, "the full message did not replace the placeholder")
        self.assertEqual(len(self.local()), 3)

    def test_placeholder_moved_out_of_the_synced_folders_keeps_its_message(self):
        """A placeholder moved by the user into a local folder the account
        does not sync (outside `folders`): the server's message is its only
        whole copy, so it is held there with a warning at every sync (a full
        message moved there is deleted on the server as before: its bytes
        are local). The user removes the placeholder: the deletion goes up."""
        self.seed()
        self.pull_through_proxy("pull")
        q = self.by_subject("Quarterly")
        small = [m for m in self.local() if b"small note 0" in m.data][0]
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(tb.local_folder_path(self.maildir, "Kept"), sub))
        dest = self.move_as_mutt(q, "Kept")
        self.move_as_mutt(small, "Kept", n=2)
        self.write_config(max_size=LIMIT, placeholders="yes", folders="INBOX")
        for _ in range(2):
            r = self.run_ok("sync")
            ids = [tb.message_id(m.data) for m in self.server().values()]
            self.assertEqual(len(ids), 4, "not only the full message's deletion went to the server")
            self.assertIn(tb.message_id(q.data), ids, "the placeholder's message was deleted on the server")
            self.assertNotIn(tb.message_id(small.data), ids)
            self.assertEqual(len(self.local()), 3)
            self.assertEqual(len(set(m.data for m in self.server().values())), 4, "a duplicate on the server")
            self.assertIn("placeholder", r.stderr)
            self.assertIn("Kept", r.stderr, "the warning does not say where the placeholder is")
        os.unlink(dest)
        self.run_ok("sync")
        ids = [tb.message_id(m.data) for m in self.server().values()]
        self.assertEqual(len(ids), 3)
        self.assertNotIn(tb.message_id(q.data), ids)
        self.assertEqual(sorted(tb.message_id(m.data) for m in self.local()), sorted(ids))
        self.assertEqual([m.data for m in tb.read_maildir(self.maildir)["Kept"]], [small.data])

    def test_edited_placeholder_is_never_uploaded(self):
        """A placeholder edited by hand is still recognised by what is left
        of its marks (its X-Mailsync-Placeholder field, or its note's
        "mailsync stored its header only" line): never uploaded as a
        message, and its message, gone from the folder under its old name,
        is not deleted on the server for it."""
        self.seed()
        self.pull_through_proxy("pull")
        q, h = self.by_subject("Quarterly"), self.by_subject("Holiday")
        # a copy with the Subject's mark taken off (the field stays)
        no_subject_mark = q.data.replace(b"Subject: [placeholder] ", b"Subject: ")
        self.assertNotEqual(no_subject_mark, q.data)
        cur = os.path.dirname(q.path)
        with open(os.path.join(cur, "1700000000.M7P1.edit:2,S"), "wb") as f:
            f.write(no_subject_mark)
        # renamed, with the field taken off (the note stays)
        no_field = re.sub(rb"X-Mailsync-Placeholder: \d+\r?\n", b"", h.data)
        self.assertNotEqual(no_field, h.data)
        self.move_as_mutt(h, "INBOX", no_field, n=8)
        self.write_config(max_size=LIMIT, placeholders="yes")
        for _ in range(2):
            r = self.run_ok("sync")
            srv = self.server()
            self.assertEqual(len(srv), 5, "a placeholder was uploaded, or its message deleted")
            self.assertTrue(all(b"[placeholder]" not in m.data and b"mailsync stored" not in m.data
                                for m in srv.values()), "a placeholder went up as mail")
            self.assertIn("placeholder", r.stderr)
        self.assertEqual(len(self.local()), 6)

    def test_placeholder_whose_mark_was_lost_is_replaced_when_asked(self):
        """The state DB restored from before the placeholders were marked
        (their rows say whole messages; the files are placeholders): a flag
        on one (sync) or `fetch FILE` still replaces it with the full
        message, once, under its name (recognised by its
        X-Mailsync-Placeholder field, Message-ID and the server's size)."""
        self.seed()
        self.pull_through_proxy("pull")
        q, h = self.by_subject("Quarterly"), self.by_subject("Holiday")
        db = sqlite3.connect(str(self.state))
        db.execute("UPDATE messages SET placeholder = 0")
        db.commit()
        db.close()
        flagged = q.path.split(":2,")[0] + ":2,F"
        os.rename(q.path, flagged)
        r, px = self.pull_through_proxy("sync")
        self.assertGreater(px.bytes_down, BIG, "the flagged placeholder's message was not downloaded")
        self.assertLess(px.bytes_down, 2 * BIG, "more than one message came down")
        srv = self.server()
        self.assertEqual(self.by_subject("Quarterly").path, flagged)
        self.assertEqual(self.by_subject("Quarterly").data, srv[self.big[0]].data_lf)
        self.assertIn(b"[placeholder]", self.by_subject("Holiday").data, "the other one was replaced too")
        self.assert_one_of_each()
        self.write_config(max_size=LIMIT, placeholders="yes")
        r = self.run_ok("fetch", h.path)
        self.assertEqual(self.by_subject("Holiday").data, srv[self.big[1]].data_lf)
        self.assertEqual(self.by_subject("Holiday").path, h.path)
        # once: the next sync downloads nothing
        r, px = self.pull_through_proxy("sync")
        self.assertLess(px.bytes_down, 20000)
        self.assertEqual(set(self.marks().values()), {0})
        self.assert_one_of_each()

    def test_placeholder_renamed_in_its_folder_or_copied(self):
        """A placeholder renamed within its folder (a reader giving it a new
        unique name) is the same message: its row takes the new name, no
        warning, nothing sent. One copied (not moved) to another folder is
        copied on the server (UID COPY of the real message): a placeholder,
        marked, in both folders; flagged there, the copy comes down in full,
        the original stays a placeholder."""
        with self.imap() as c:
            c.create_folder("Archive")
        self.seed()
        self.pull_through_proxy("pull")
        q, h = self.by_subject("Quarterly"), self.by_subject("Holiday")
        renamed = self.move_as_mutt(q, "INBOX", n=3)
        copied = os.path.join(tb.local_folder_path(self.maildir, "Archive"), "cur", "1700000000.M4P1.copy:2,S")
        shutil.copyfile(h.path, copied)
        self.write_config(max_size=LIMIT, placeholders="yes")
        for _ in range(2):
            r, px = self.pull_through_proxy("sync")
            self.assertNotIn(b"APPEND", px.upstream, "a placeholder was uploaded")
            self.assertNotIn("could not be paired", r.stderr)
            self.assertNotIn("not uploaded", r.stderr)
            with self.imap() as c:
                archive = c.messages("Archive")
            self.assertEqual(len(self.server()), 5, "a message left INBOX on the server")
            self.assertEqual(len(archive), 1, "the copy is not in Archive on the server")
            self.assertEqual(archive[0].data, self.server()[self.big[1]].data, "not the real message copied")
            self.assertEqual(sorted(m.path for m in self.local() if b"[placeholder]" in m.data),
                             sorted([renamed, h.path]))
            self.assertEqual([m.path for m in tb.read_maildir(self.maildir)["Archive"]], [copied])
            self.assertEqual({u for u, k in self.marks().items() if k}, set(self.big))
            self.assertEqual(list(self.marks_in("Archive").values()), [1], "the copy is not marked")
        flagged = copied.split(":2,")[0] + ":2,FS"
        os.rename(copied, flagged)
        self.write_config(max_size=LIMIT, placeholders="yes")
        self.run_ok("sync")
        with self.imap() as c:
            archive = c.messages("Archive")
        self.assertEqual(tb.read_maildir(self.maildir)["Archive"][0].data, archive[0].data_lf)
        self.assertIn(b"[placeholder]", self.by_subject("Holiday").data)
        self.assert_one_of_each()

    def test_placeholder_moved_into_a_new_folder(self):
        """A placeholder moved into a folder made locally (not on the server
        yet): one sync creates the folder and moves the message there on the
        server; the placeholder is not uploaded and stays one, marked."""
        self.seed()
        self.pull_through_proxy("pull")
        q = self.by_subject("Quarterly")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(tb.local_folder_path(self.maildir, "Projects"), sub))
        dest = self.move_as_mutt(q, "Projects")
        self.write_config(max_size=LIMIT, placeholders="yes")
        self.run_ok("sync")
        with self.imap() as c:
            self.assertEqual(len(c.messages("INBOX")), 4)
            projects = c.messages("Projects")
        self.assertEqual(len(projects), 1)
        self.assertEqual(tb.message_id(projects[0].data), tb.message_id(q.data))
        self.assertGreater(len(projects[0].data), BIG, "not the message itself")
        self.assertEqual([m.path for m in tb.read_maildir(self.maildir)["Projects"]], [dest])
        self.assertEqual(list(self.marks_in("Projects").values()), [1])

    def assert_flagged_placeholder_replaced(self, flagged):
        """A sync brings the full message of the placeholder `flagged` (the
        file's path, flagged F) in Archive: one message there on the server,
        flagged, and one file under the same name holding it; 4 each side."""
        self.run_ok("sync")
        with self.imap() as c:
            archive = c.messages("Archive")
        self.assertEqual(len(archive), 1)
        self.assertIn("\\Flagged", archive[0].flags)
        files = tb.read_maildir(self.maildir).get("Archive", [])
        self.assertEqual([m.path for m in files], [flagged], "one file in Archive, under its name")
        self.assertEqual(files[0].data, archive[0].data_lf, "the full message did not replace the placeholder")
        self.assertEqual(len(self.local()), 4)
        self.assertEqual(len(self.server()), 4)

    def test_placeholder_moved_on_the_server_keeps_its_file_and_mark(self):
        """Another client moves a placeholder's message: the file is renamed
        into the new folder (same inode, nothing new downloaded) and stays a
        placeholder there: flagged, the next sync brings its full message."""
        with self.imap() as c:
            c.create_folder("Archive")
        self.seed()
        self.pull_through_proxy("pull")
        q = self.by_subject("Quarterly")
        ino = os.stat(q.path).st_ino
        with self.imap() as c:
            c.move_uids("INBOX", [self.big[0]], "Archive")
        self.pull_through_proxy("pull")
        files = tb.read_maildir(self.maildir).get("Archive", [])
        self.assertEqual(len(files), 1, "not one file in Archive")
        self.assertEqual(os.stat(files[0].path).st_ino, ino, "the placeholder was not moved, but made again")
        self.assertEqual(len(self.local()), 4)
        flagged = files[0].path.split(":2,")[0] + ":2,F"
        os.rename(files[0].path, flagged)
        self.write_config(max_size=LIMIT, placeholders="yes")
        self.assert_flagged_placeholder_replaced(flagged)

    def test_placeholder_stays_one_after_uidvalidity_change(self):
        """The folder re-created on the server (new UIDVALIDITY, new UIDs):
        the placeholder is paired with its message again and is still a
        placeholder: flagged, the next sync brings its full message."""
        with self.imap() as c:
            c.create_folder("Archive")
            c.append_message("Archive", tb.make_message(20, size=BIG, subject="Annual report"), (), 1600000020)
        self.pull_through_proxy("pull")
        with self.imap() as c:
            msgs = c.messages("Archive")
            before = c.status_of("Archive")["UIDVALIDITY"]
            c.select_folder("INBOX")
            for attempt in range(5):
                c.delete_folder("Archive")
                c.create_folder("Archive")
                if c.status_of("Archive")["UIDVALIDITY"] != before:
                    break
                time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
            c.append_message("Archive", msgs[0].data, (), msgs[0].internaldate)
        self.pull_through_proxy("pull")
        files = tb.read_maildir(self.maildir).get("Archive", [])
        self.assertEqual(len(files), 1)
        self.assertIn(b"[placeholder]", files[0].data)
        flagged = files[0].path.split(":2,")[0] + ":2,F"
        os.rename(files[0].path, flagged)
        self.write_config(max_size=LIMIT, placeholders="yes")
        self.run_ok("sync")
        with self.imap() as c:
            archive = c.messages("Archive")
        self.assertEqual(len(archive), 1)
        files = tb.read_maildir(self.maildir).get("Archive", [])
        self.assertEqual([m.path for m in files], [flagged], "one file in Archive, under its name")
        self.assertEqual(files[0].data, archive[0].data_lf, "the full message did not replace the placeholder")

    def test_first_pull_newest_first(self):
        with self.imap() as c:
            uids = c.append_many("INBOX", tb.make_corpus(40, seed=1801, size=800, flags=False))
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        self.run_ok("pull")
        px.stop()
        # the body downloads as sent on the wire, in order: the newest first
        sets = re.findall(rb"UID FETCH ([0-9:,]+) \([^\r]*BODY\.PEEK\[\]", bytes(px.upstream))
        self.assertGreaterEqual(len(sets), 2, "one command for all: no order to see")
        first = set(tb._expand_uid_set(sets[0]))
        self.assertEqual(first, set(uids[-16:]), "the first command asks for the 16 newest")
        tops = [max(tb._expand_uid_set(x)) for x in sets]
        self.assertEqual(tops, sorted(tops, reverse=True), "later commands ask for older mail")
        self.assertEqual(tb.count_messages(self.maildir), 40)
        self.write_config()
        self.assertSynced()

if __name__ == "__main__":
    unittest.main()
