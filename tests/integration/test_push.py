# SPDX-License-Identifier: MIT
"""test_push.py: `mailsync push` and `mailsync sync` against a real Dovecot
(the contract's local -> server direction).

Local flag changes reach the server as deltas (a server change of another
flag survives), local deletions expunge exactly those messages (or move
them to `trash`, or only flag them with `expunge = no`), new local files
are uploaded byte for byte (LF -> CRLF, INTERNALDATE = mtime, flags) and
recorded so no later pull downloads them again, a run killed between an
APPEND and its record does not upload twice, the mass-deletion guard holds
local deletions back, a folder never pulled is not pushed, and `sync`
does both directions in one run.
"""

import hashlib
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import testbed as tb


def local_files(root, folder="INBOX"):
    """{uniq: LocalMessage} of one folder."""
    return {m.uniq: m for m in tb.read_maildir(root).get(folder, [])}


def set_letters(m, letters):
    """Rename a local message to cur/<uniq>:2,<letters> (as a MUA does)."""
    folder_dir = Path(m.path).parent.parent
    new = folder_dir / "cur" / ("%s:2,%s" % (m.uniq, "".join(sorted(letters))))
    os.rename(m.path, new)
    return new


def write_local(root, folder, name, data_lf, letters="", mtime=1700000000, layout="verbatim"):
    d = Path(tb.local_folder_path(root, folder, layout))
    sub = "cur" if letters else "new"
    path = d / sub / ("%s:2,%s" % (name, letters) if letters else name)
    path.write_bytes(data_lf)
    os.utime(path, (mtime, mtime))
    return path


class PushTest(tb.BedTestCase):
    bed_options = {"pool": 30}

    def seed_and_pull(self, n=6, folder="INBOX"):
        with self.imap() as c:
            msgs = tb.make_corpus(n, seed=3)
            c.append_many(folder, msgs)
        self.pull()

    def by_uid(self, folder="INBOX"):
        with self.imap() as c:
            return {m.uid: m for m in c.messages(folder)}

    # -- flags -----------------------------------------------------------------

    def test_local_flag_changes_reach_the_server(self):
        self.seed_and_pull()
        files = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)
        want = {}
        for i, m in enumerate(files[:4]):
            letters = set(m.letters)
            if i % 2 == 0:
                letters ^= {"S"}
            else:
                letters ^= {"F", "R"}
            set_letters(m, letters)
            want[m.uniq] = "".join(sorted(letters))
        r = self.run_ok("push")
        self.assertIn("4 flag changes", r.stdout)
        # the server now shows the local flags, and a pull changes nothing
        self.assertSynced()
        before = tb.snapshot_tree(self.maildir)
        self.pull()
        self.assertEqual(tb.snapshot_tree(self.maildir), before)
        for uniq, letters in want.items():
            self.assertEqual(local_files(self.maildir)[uniq].letters, letters)
        # nothing left to push
        self.assertIn("0 uploaded, 0 flag changes, 0 deleted", self.run_ok("push").stdout)

    def test_flag_push_is_a_delta(self):
        """The user marks a message seen locally while another client
        flags it on the server: both changes survive a sync."""
        self.seed_and_pull(n=3)
        state = self.by_uid()
        uid = min(state)
        m = next(x for x in local_files(self.maildir).values()
                 if x.data == state[uid].data_lf)
        with self.imap() as c:
            c.set_flags("INBOX", [uid], ["\\Seen"], mode="-")
            c.set_flags("INBOX", [uid], ["\\Flagged"], mode="+")
        set_letters(m, set(m.letters) | {"S"})
        self.run_ok("sync")
        flags = self.by_uid()[uid].flags
        self.assertIn("\\Seen", flags)
        self.assertIn("\\Flagged", flags)
        self.assertSynced()

    # -- deletions -------------------------------------------------------------

    def test_local_deletion_expunges_exactly_those(self):
        self.seed_and_pull(n=6)
        before = self.by_uid()
        files = local_files(self.maildir)
        gone = sorted(files.values(), key=lambda m: m.uniq)[:2]
        gone_data = {m.data for m in gone}
        for m in gone:
            os.unlink(m.path)
        # another client flags a message \Deleted without expunging: ours
        # must not expunge it (UID EXPUNGE, not EXPUNGE)
        keep_uid = next(u for u, m in before.items() if m.data_lf not in gone_data)
        with self.imap() as c:
            c.set_flags("INBOX", [keep_uid], ["\\Deleted"])
        self.run_ok("push")
        after = self.by_uid()
        self.assertEqual(len(after), 4)
        self.assertIn(keep_uid, after)
        self.assertFalse({m.data_lf for m in after.values()} & gone_data)
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 4)

    def test_deletion_with_expunge_no_only_flags(self):
        self.write_config(expunge="no")
        self.seed_and_pull(n=4)
        m = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)[0]
        os.unlink(m.path)
        self.run_ok("push")
        after = self.by_uid()
        self.assertEqual(len(after), 4)
        deleted = [x for x in after.values() if "\\Deleted" in x.flags]
        self.assertEqual([x.data_lf for x in deleted], [m.data])
        # the flagged message is not downloaded again
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 3)
        self.assertIn("0 new", self.pull().stdout)

    def test_deletion_moves_to_trash(self):
        with self.imap() as c:
            c.create_folder("Trash")
        self.write_config(trash="Trash", folders="INBOX")
        self.seed_and_pull(n=4)
        m = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)[0]
        os.unlink(m.path)
        self.run_ok("push")
        self.assertEqual(len(self.by_uid()), 3)
        trash = self.by_uid("Trash")
        self.assertEqual([x.data_lf for x in trash.values()], [m.data])

    def test_mass_local_deletion_is_held_back(self):
        self.seed_and_pull(n=24)
        files = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)
        for m in files[:20]:
            os.unlink(m.path)
        r = self.run_ok("push", expect=1)
        self.assertIn("max_delete", r.stderr)
        self.assertEqual(len(self.by_uid()), 24)
        self.run_ok("push", "--force")
        self.assertEqual(len(self.by_uid()), 4)

    # -- uploads ---------------------------------------------------------------

    def test_new_local_message_is_uploaded_once(self):
        self.seed_and_pull(n=2)
        data = tb.make_message(77, size=5000, kind="multipart").replace(b"\r\n", b"\n")
        write_local(self.maildir, "INBOX", "1700000000.local1.host", data, letters="FS", mtime=1700000123)
        plain = tb.make_message(78, kind="nonl", size=300).replace(b"\r\n", b"\n")
        write_local(self.maildir, "INBOX", "1700000001.local2.host", plain, mtime=1700000456)
        r = self.run_ok("push")
        self.assertIn("2 uploaded", r.stdout)
        server = self.by_uid()
        self.assertEqual(len(server), 4)
        up = {m.data: m for m in server.values()}
        got = up[data.replace(b"\n", b"\r\n")]
        self.assertEqual(got.flags, frozenset({"\\Flagged", "\\Seen"}))
        self.assertEqual(got.internaldate, 1700000123)
        self.assertEqual(up[plain.replace(b"\n", b"\r\n")].internaldate, 1700000456)
        # recorded: a pull does not download them again, a push sends nothing
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 4)
        self.assertSynced()
        self.assertIn("0 uploaded", self.run_ok("push").stdout)
        self.assertEqual(len(self.by_uid()), 4)

    def test_big_upload_is_streamed(self):
        """An 80 MiB local message goes up with the process's peak RSS far
        below its size (the body is streamed from the file, LF -> CRLF on
        the way, not read into memory), and arrives byte for byte. The
        file is written in pieces: a child's peak RSS starts at its
        parent's RSS when it is forked."""
        self.seed_and_pull(n=1)
        line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\n"
        head = b"Subject: big\nMessage-ID: <big@test>\nContent-Type: application/octet-stream\n\n"
        want = hashlib.sha256()
        path = write_local(self.maildir, "INBOX", "1700000000.big.host", head, letters="S")
        with open(path, "ab") as f:
            want.update(head.replace(b"\n", b"\r\n"))
            block = line * 4096
            for _ in range((80 << 20) // len(block)):
                f.write(block)
                want.update(block.replace(b"\n", b"\r\n"))
        p = tb.start_mailsync(["push"], config=self.config_path, workdir=self.work)
        _, status, usage = os.wait4(p.pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, Path(p.err_path).read_text())
        # an ASan build idles at ~35 MiB; holding the message would add 80+
        self.assertLess(usage.ru_maxrss, 56 * 1024, "peak RSS %d KiB" % usage.ru_maxrss)
        with self.imap() as c:
            c.select_folder("INBOX", readonly=True)
            typ, dat = c.uid("SEARCH", "HEADER", "Message-ID", "<big@test>")
            uids = dat[0].split()
            self.assertEqual(len(uids), 1)
            typ, dat = c.uid("FETCH", uids[0], "(BODY.PEEK[])")
            self.assertEqual(hashlib.sha256(dat[0][1]).hexdigest(), want.hexdigest())
        self.assertIn("0 uploaded", self.run_ok("push").stdout)

    def test_append_answered_no_but_stored_is_not_doubled(self):
        """The server stores an upload but answers NO (a proxy rewrites its
        OK): the push reports the failure (exit 1), and the next push finds
        the message through the journal instead of uploading it again."""
        self.seed_and_pull(n=1)
        data = tb.make_message(401, size=700).replace(b"\r\n", b"\n")
        write_local(self.maildir, "INBOX", "1700000000.lie.host", data)
        lied = []

        def lie(line):
            if b"[APPENDUID " in line:
                lied.append(line)
                tag = line.split(b" ", 1)[0]
                return [tag + b" NO [OVERQUOTA] Quota exceeded (mailbox for user is full)"]
            return [line]
        with tb.Proxy(self.bed.imap_port, rewrite_down=tb.line_rewriter(lie)) as proxy:
            self.write_config(tls="none", port=proxy.port)
            r = self.run_ok("push", expect=1)
        self.assertTrue(lied)
        self.assertIn("Quota exceeded", r.stderr)
        self.assertIn("could not be uploaded", r.stderr)
        self.write_config()
        self.assertIn("0 uploaded", self.run_ok("push").stdout)
        self.assertEqual(len(self.by_uid()), 2)
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 2)
        self.assertSynced()

    def test_untagged_data_before_the_continuation(self):
        """The server sends "* 99 EXISTS" before its "+" to an APPEND (a
        proxy injects it): the upload still goes through, once."""
        self.seed_and_pull(n=1)
        data = tb.make_message(402, size=700).replace(b"\r\n", b"\n")
        write_local(self.maildir, "INBOX", "1700000000.untagged.host", data)
        injected = []

        def inject(line):
            if line.startswith(b"+ "):
                injected.append(line)
                return [b"* 99 EXISTS", line]
            return [line]
        with tb.Proxy(self.bed.imap_port, rewrite_down=tb.line_rewriter(inject)) as proxy:
            self.write_config(tls="none", port=proxy.port, timeout="5")
            r = self.run_ok("push", timeout=60)
        self.assertTrue(injected)
        self.assertIn("1 uploaded", r.stdout)
        self.write_config()
        self.assertEqual(len(self.by_uid()), 2)
        self.assertIn("0 uploaded", self.run_ok("push").stdout)

    def test_connection_cut_mid_upload(self):
        """The connection drops while a literal is on its way: exit 4, no
        crash, nothing half-recorded; the next push uploads it once."""
        self.seed_and_pull(n=1)
        line = b"x" * 75 + b"\n"
        data = b"Subject: cut\nMessage-ID: <cut@test>\n\n" + line * 40000    # ~3 MiB
        write_local(self.maildir, "INBOX", "1700000000.cut.host", data)
        with tb.Proxy(self.bed.imap_port, stall_on=(b"xxxxxxxx", 1)) as proxy:
            self.write_config(tls="none", port=proxy.port, timeout="2")
            r = self.run_ok("push", expect=4, timeout=60)
        self.assertNotIn("Sanitizer", r.stderr)
        self.write_config()
        self.run_ok("push")
        with self.imap() as c:
            c.select_folder("INBOX", readonly=True)
            typ, dat = c.uid("SEARCH", "HEADER", "Message-ID", "<cut@test>")
            self.assertEqual(len(dat[0].split()), 1)

    def test_upload_keeps_a_trashed_mark(self):
        """A new local file marked T (trashed) goes up with \\Deleted, and no
        pull takes the mark away again."""
        self.seed_and_pull(n=1)
        data = b"Subject: trashed\n\nbye\n"
        write_local(self.maildir, "INBOX", "1700000000.trash.host", data, letters="ST")
        self.run_ok("push")
        up = [m for m in self.by_uid().values() if m.data_lf == data]
        self.assertEqual(len(up), 1)
        self.assertEqual(up[0].flags, frozenset({"\\Seen", "\\Deleted"}))
        self.pull()
        self.assertEqual(local_files(self.maildir)["1700000000.trash.host"].letters, "ST")
        self.assertSynced()

    def test_killed_after_append_does_not_upload_twice(self):
        """The first APPEND reaches the server, the run is killed before it
        records it (the second APPEND is held back by the proxy): the next
        pull finds the first on the server (no local copy comes down) and
        the next push uploads only the second."""
        self.seed_and_pull(n=2)
        for i in range(2):
            data = tb.make_message(90 + i, size=1500).replace(b"\r\n", b"\n")
            write_local(self.maildir, "INBOX", "1700000000.crash%d.host" % i, data, mtime=1700000000 + i)
        # plain IMAP on loopback, so the proxy can see the commands
        with tb.Proxy(self.bed.imap_port, stall_on=(b" APPEND ", 2)) as proxy:
            self.write_config(tls="none", port=proxy.port)
            p = tb.start_mailsync(["push"], config=self.config_path, workdir=self.work)
            try:
                self.assertTrue(proxy.stalled.wait(30), "the second APPEND never came")
                time.sleep(0.3)
                self.assertIsNone(p.poll(), "push ended before the kill")
                os.kill(p.pid, signal.SIGKILL)
            finally:
                p.wait(10)
        self.assertEqual(len(self.by_uid()), 3)   # the first upload landed
        self.write_config()
        # a pull first: it must record the landed upload, not download it
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 4)
        self.run_ok("push")
        server = self.by_uid()
        self.assertEqual(len(server), 4)
        self.assertEqual(len({m.data for m in server.values()}), 4, "a message was uploaded twice")
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 4)
        self.assertSynced()

    def test_unpulled_folder_is_not_pushed(self):
        """A Maildir another tool filled: the first sync matches, never
        uploads what the server already has."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=5))
        self.pull()
        # lose the state: the files are all unknown now
        for p in self.work.glob("state.sqlite*"):
            p.unlink()
        self.run_ok("sync")
        self.assertEqual(len(self.by_uid()), 3)
        self.assertEqual(tb.count_messages(self.maildir), 3)
        self.assertIn("0 uploaded", self.run_ok("sync").stdout)
        self.assertEqual(len(self.by_uid()), 3)

    def test_first_sync_pushes_once_the_pull_has_matched(self):
        """A folder no pull completed is pushed by the same sync once its
        pull has matched the files: what the server has is not uploaded,
        the new local files are, and one sync leaves both sides equal."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=6))
        self.pull()
        for p in self.work.glob("state.sqlite*"):
            p.unlink()
        write_local(self.maildir, "INBOX", "1700000000.first1.host", b"Subject: first 1\n\none\n")
        write_local(self.maildir, "INBOX", "1700000000.first2.host", b"Subject: first 2\n\ntwo\n")
        self.assertIn("2 uploaded", self.run_ok("sync").stdout)
        server = self.by_uid()
        self.assertEqual(len(server), 5)
        self.assertEqual(len({m.data for m in server.values()}), 5, "a message was uploaded twice")
        self.assertEqual(tb.count_messages(self.maildir), 5)
        self.assertSynced()
        r = self.run_ok("sync")
        self.assertIn("0 uploaded", r.stdout)
        self.assertEqual(len(self.by_uid()), 5)
        self.assertEqual(tb.count_messages(self.maildir), 5)

    def test_quiet_folder_is_not_scanned_and_changes_are_still_seen(self):
        """A folder nothing touched since a push found everything pushed is
        not scanned again (its cur/ and new/ mtimes are unchanged); any
        rename, new file or deletion there is still pushed."""
        self.seed_and_pull(n=4)
        time.sleep(0.2)     # older than the kernel clock's tick: a stamp is kept
        self.run_ok("sync")
        r = self.run_ok("-v", "sync")
        self.assertIn("INBOX: no local change since the last push", r.stderr)
        files = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)
        for step in ("rename", "new", "delete"):
            if step == "rename":
                set_letters(files[0], set(files[0].letters) ^ {"F"})
            elif step == "new":
                write_local(self.maildir, "INBOX", "1700000000.quiet.host", b"Subject: q\n\nq\n")
            else:
                os.unlink(files[1].path)
            r = self.run_ok("-v", "sync")
            self.assertNotIn("INBOX: no local change", r.stderr, step)
            self.assertSynced()
            time.sleep(0.2)
            self.run_ok("sync")   # records the stamp again
        self.assertEqual(len(self.by_uid()), 4)   # one new, one deleted

    # -- folders ---------------------------------------------------------------

    def make_local_folder(self, rel, n, layout="verbatim"):
        d = Path(tb.local_folder_path(self.maildir, rel, layout))
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        data = []
        for i in range(n):
            m = tb.make_message(300 + i, size=600).replace(b"\r\n", b"\n")
            write_local(self.maildir, rel, "1700000000.f%d.host" % i, m, letters="S", mtime=1700000000 + i,
                        layout=layout)
            data.append(m)
        return data

    def test_local_only_folders_are_created_and_filled(self):
        self.write_config(folders="* !Junk")
        self.seed_and_pull(n=2)
        ideas = self.make_local_folder("Projects/Ideas", 2)
        viet = self.make_local_folder("Thư mới", 1)
        self.make_local_folder("Junk", 1)            # excluded by the patterns
        r = self.run_ok("push")
        self.assertIn('created folder "Projects/Ideas" on the server', r.stderr)
        self.assertIn('created folder "Thư mới" on the server', r.stderr)
        with self.imap() as c:
            names = set(c.list_folders())
            self.assertIn("Projects/Ideas", names)
            self.assertIn("Thư mới", names)
            self.assertNotIn("Junk", names)
            self.assertEqual(sorted(m.data_lf for m in c.messages("Projects/Ideas")), sorted(ideas))
            self.assertEqual([m.data_lf for m in c.messages("Thư mới")], viet)
        # a pull brings nothing twice; a second push creates nothing
        self.pull()
        self.assertEqual(len(tb.read_maildir(self.maildir)["Projects/Ideas"]), 2)
        r = self.run_ok("push")
        self.assertNotIn("created folder", r.stderr)
        self.assertIn("0 uploaded", r.stdout)

    def test_folder_deleted_on_server_is_not_recreated(self):
        with self.imap() as c:
            c.create_folder("Old")
            c.append_many("Old", tb.make_corpus(2, seed=4))
        self.pull()
        with self.imap() as c:
            c.delete_folder("Old")
        r = self.run_ok("sync")
        self.assertNotIn("created folder", r.stderr)
        with self.imap() as c:
            self.assertNotIn("Old", set(c.list_folders()))
        self.assertEqual(len(tb.read_maildir(self.maildir)["Old"]), 2)   # kept locally

    def test_maildirpp_local_folder_is_created(self):
        self.write_config(layout="maildir++")
        self.seed_and_pull(n=1)
        data = self.make_local_folder("Notes/2025", 1, layout="maildir++")
        self.run_ok("sync")
        with self.imap() as c:
            self.assertEqual([m.data_lf for m in c.messages("Notes/2025")], data)
        self.assertIn("0 uploaded", self.run_ok("sync").stdout)

    # -- sync ------------------------------------------------------------------

    def test_sync_both_ways(self):
        self.seed_and_pull(n=4)
        files = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)
        set_letters(files[0], set(files[0].letters) | {"R"})
        os.unlink(files[1].path)
        data = tb.make_message(55, size=800).replace(b"\r\n", b"\n")
        write_local(self.maildir, "INBOX", "1700000000.both.host", data, letters="S")
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=9, start=100))
        r = self.run_ok("sync", "--json")
        self.assertIn('"uploaded":1', r.stdout)
        self.assertIn('"fetched":2', r.stdout)
        self.assertEqual(len(self.by_uid()), 6)
        self.assertSynced()
        before = tb.snapshot_tree(self.maildir)
        self.run_ok("sync")
        self.assertEqual(tb.snapshot_tree(self.maildir), before)
        self.assertEqual(len(self.by_uid()), 6)

    def test_dry_run_changes_nothing(self):
        self.seed_and_pull(n=3)
        files = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)
        set_letters(files[0], set(files[0].letters) | {"F"})
        os.unlink(files[1].path)
        write_local(self.maildir, "INBOX", "1700000000.dry.host", b"Subject: x\n\nhi\n")
        server = self.server_state()
        r = self.run_ok("push", "--dry-run")
        self.assertIn("would upload 1700000000.dry.host", r.stdout)
        self.assertIn("would remove UID", r.stdout)
        self.assertIn("would change flags of UID", r.stdout)
        self.assertEqual(self.server_state(), server)


class PushWithoutMoveTest(tb.BedTestCase):
    """Dovecot without MOVE: `trash` falls back to UID COPY + \\Deleted +
    UID EXPUNGE of exactly those UIDs."""
    bed_options = {"pool": 4, "hide_capabilities": ("MOVE",)}

    def test_deletion_copies_to_trash(self):
        with self.imap() as c:
            c.create_folder("Trash")
            c.append_many("INBOX", tb.make_corpus(3, seed=6))
        self.write_config(trash="Trash", folders="INBOX")
        self.pull()
        m = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)[0]
        os.unlink(m.path)
        self.run_ok("push")
        with self.imap() as c:
            self.assertEqual(len(c.messages("INBOX")), 2)
            self.assertEqual([x.data_lf for x in c.messages("Trash")], [m.data])


class PushWithoutUidplusTest(tb.BedTestCase):
    """Dovecot without UIDPLUS (and MOVE): a local deletion only flags the
    message \\Deleted (a plain EXPUNGE could remove messages others flagged)
    and no pull brings it back; with `trash` the same, with a warning. An
    upload whose answer has no APPENDUID (stripped by a proxy) is found on
    the server and recorded in the same run: no pull downloads it again."""
    bed_options = {"pool": 6, "hide_capabilities": ("UIDPLUS", "MOVE")}

    def test_deletion_only_flags(self):
        with self.imap() as c:
            c.create_folder("Trash")
            c.append_many("INBOX", tb.make_corpus(3, seed=7, flags=False))
        self.write_config(trash="Trash", folders="INBOX")
        self.pull()
        m = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)[0]
        os.unlink(m.path)
        r = self.run_ok("push")
        self.assertIn("neither MOVE nor UIDPLUS", r.stderr)
        with self.imap() as c:
            msgs = c.messages("INBOX")
            self.assertEqual(len(msgs), 3)
            self.assertEqual([x.data_lf for x in msgs if "\\Deleted" in x.flags], [m.data])
            self.assertEqual(c.messages("Trash"), [])
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 2)

    def test_upload_without_appenduid_is_recorded(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=8))
        self.pull()
        data = tb.make_message(400, size=900).replace(b"\r\n", b"\n")
        write_local(self.maildir, "INBOX", "1700000000.noapp.host", data, letters="S")
        stripped = []

        def strip(line):
            if b"[APPENDUID " in line:
                stripped.append(line)
                line = re.sub(rb"\[APPENDUID [0-9]+ [0-9]+\] ", b"", line)
            return [line]
        with tb.Proxy(self.bed.imap_port, rewrite_down=tb.line_rewriter(strip)) as proxy:
            self.write_config(tls="none", port=proxy.port)
            r = self.run_ok("push")
        self.assertTrue(stripped, "the server sent no APPENDUID to strip")
        self.assertIn("1 uploaded", r.stdout)
        # recorded by the push itself: no journal row is left for later
        with sqlite3.connect(self.state) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM appends").fetchone()[0], 0)
            self.assertEqual(db.execute("SELECT count(*) FROM messages WHERE uniq = ?",
                                        ("1700000000.noapp.host",)).fetchone()[0], 1)
        self.write_config()
        self.pull()
        self.assertEqual(tb.count_messages(self.maildir), 3)
        self.assertSynced()
        self.assertIn("0 uploaded", self.run_ok("push").stdout)
        with self.imap() as c:
            self.assertEqual(len(c.messages("INBOX")), 3)
