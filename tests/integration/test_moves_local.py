# SPDX-License-Identifier: MIT
"""test_moves_local.py: a message moved between local folders reaches the
server as a move (issue 16, point 4, the local direction).

mutt moves a message by writing it under a new name into the other folder
and removing the old file; notmuch/afew move the file keeping its name; a
user may `cp` then `rm`. Each must become `UID MOVE` (or, without MOVE,
UID COPY + \\Deleted + UID EXPUNGE of exactly that UID) on the server:
nothing is uploaded (no APPEND in the bytes the client sent), the
INTERNALDATE and the keywords stay, the new local flags follow, each
message is once on each side, and the mass-deletion guard does not count
a move. A run SIGKILLed anywhere in a move, then run again, ends the same.
"""

import collections
import hashlib
import json
import os
import re
import shutil
import signal
import time

import testbed as tb
from test_json import check_run_document

OLD_DATE = 1500000000  # the messages' INTERNALDATE (2017): a fresh APPEND would get now


def digest(data):
    return hashlib.sha256(data).hexdigest()


class MovesCase(tb.BedTestCase):
    """INBOX with six messages (two carry $label1), Archive with two; pulled.
    moved: the two labelled ones, to be moved from INBOX to Archive."""

    layout = "verbatim"
    bed_options = {"pool": 30}

    def setUp(self):
        super().setUp()
        corpus = [m.data for m in tb.make_corpus(8, seed=77, size=(600, 2000), flags=False)]
        with self.imap() as c:
            c.create_folder("Archive")
            c.create_folder("Trash")
            for k, data in enumerate(corpus[:6]):
                c.append_message("INBOX", data, flags=("\\Seen", "$label1") if k < 2 else ("\\Seen",),
                                 date=OLD_DATE + k)
            for k, data in enumerate(corpus[6:]):
                c.append_message("Archive", data, date=OLD_DATE + 100 + k)
            before = c.server_state(["INBOX", "Archive"])
        self.write_config(layout=self.layout)
        self.pull()
        self.moved = {digest(m.data_lf) for m in before["INBOX"][:2]}
        self.before = {digest(m.data_lf): m for f in before.values() for m in f}
        self.inbox_before = collections.Counter(digest(m.data_lf) for m in before["INBOX"])
        self.archive_before = collections.Counter(digest(m.data_lf) for m in before["Archive"])

    def folder_dir(self, folder):
        return tb.local_folder_path(self.maildir, folder, self.layout)

    def local_files(self, folder):
        return tb.read_maildir(self.maildir, self.layout).get(folder, [])

    def move(self, style, letters=None, which=None):
        """Move the `moved` messages' files from INBOX to Archive: 'rename'
        keeps the name (notmuch), 'mutt' writes them anew under a new name,
        'cp' copies (a new file, new mtime) then removes the old one."""
        which = which if which is not None else self.moved
        dest = os.path.join(self.folder_dir("Archive"), "cur")
        n = 0
        for m in self.local_files("INBOX"):
            if digest(m.data) not in which:
                continue
            new_letters = m.letters if letters is None else letters
            if style == "rename":
                os.rename(m.path, os.path.join(dest, "%s:2,%s" % (m.uniq, new_letters)))
            elif style == "mutt":
                with open(os.path.join(dest, "1790000000.M%dP99.mutt:2,%s" % (n, new_letters)), "wb") as f:
                    f.write(m.data)
                os.unlink(m.path)
            else:
                shutil.copy(m.path, os.path.join(dest, "1790000001.cp%d.host" % n))
                os.unlink(m.path)
            n += 1
        self.assertEqual(n, len(which))

    def recorded(self, *args, expect=0, **config):
        """Run mailsync through a recording proxy; returns (result, proxy)."""
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port, layout=self.layout, **config)
        r = self.run_ok(*args, expect=expect)
        px.stop()
        self.write_config(layout=self.layout, **config)
        return r, px

    def assert_no_upload(self, *proxies):
        for px in proxies:
            self.assertNotIn(b"APPEND", bytes(px.upstream).upper(), "a message was uploaded")

    def assert_moved(self, flags=None, trash=()):
        """The moved messages are once in Archive (their INTERNALDATE and
        $label1 kept, with `flags` if given) and nowhere else on the
        server; every other message where it was; no duplicate by content
        on either side; after a sync both sides agree."""
        with self.imap() as c:
            state = c.server_state(["INBOX", "Archive", "Trash"])
        inbox = collections.Counter(digest(m.data_lf) for m in state["INBOX"])
        archive = collections.Counter(digest(m.data_lf) for m in state["Archive"])
        self.assertEqual(inbox, self.inbox_before - collections.Counter(self.moved))
        self.assertEqual(archive, self.archive_before + collections.Counter(self.moved))
        self.assertEqual(len(state["Trash"]), len(trash))
        for m in state["Archive"]:
            h = digest(m.data_lf)
            if h in self.moved:
                self.assertEqual(m.internaldate, self.before[h].internaldate, "INTERNALDATE changed")
                self.assertIn("$label1", m.flags, "keyword lost")
                if flags is not None:
                    self.assertEqual({f for f in m.flags if f.startswith("\\")}, set(flags))
        self.run_ok("sync")
        # (a file mutt or cp wrote anew has a new mtime: the user's file, left alone)
        self.assertSynced(layout=self.layout, check_mtime=False)
        for folder in ("INBOX", "Archive"):
            local = collections.Counter(digest(m.data) for m in self.local_files(folder))
            self.assertEqual(max(local.values()), 1, "a duplicate in the local %s" % folder)
        self.assertEqual(sum(len(self.local_files(f)) for f in ("INBOX", "Archive")), 8)
        r = self.run_ok("push")
        self.assertIn("0 uploaded, 0 flag changes, 0 deleted", r.stdout)

    # --- SIGKILL at a known point -------------------------------------

    def killed(self, cmd, stall_on=None, drop=None):
        """Run cmd through a recording proxy and SIGKILL it: once the
        client sent stall_on=(pattern, n) (held back from the server), or
        once the server's answer line matching drop was swallowed (the
        command was carried out; the client never hears so). Returns the
        proxy."""
        seen = []

        def swallow(line):
            if drop and re.search(drop, line):
                seen.append(line)
                return []
            return [line]
        px = tb.Proxy(self.bed.imap_port, record=True, stall_on=stall_on,
                      rewrite_down=tb.line_rewriter(swallow) if drop else None).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port, layout=self.layout)
        p = tb.start_mailsync([cmd], config=self.config_path, workdir=self.work)
        try:
            reached = px.stalled.wait if stall_on else (lambda t: tb.wait_for(lambda: seen, timeout=t))
            self.assertTrue(reached(60), "kill point never reached")
            time.sleep(0.3)
            self.assertIsNone(p.poll(), "%s ended before the kill point" % cmd)
            os.kill(p.pid, signal.SIGKILL)
        finally:
            res = tb.finish_mailsync(p)
        self.assertEqual(res.code, -signal.SIGKILL, "not killed: %s" % res)
        px.stop()
        self.write_config(layout=self.layout)
        return px

    def kill_then_rerun(self, cmd, rerun, **kill):
        self.move("mutt")
        px1 = self.killed(cmd, **kill)
        _, px2 = self.recorded(rerun)
        self.assert_no_upload(px1, px2)
        self.assert_moved()


class MoveTest(MovesCase):
    """A server with MOVE."""

    def test_rename_push(self):
        self.move("rename")
        r, px = self.recorded("push")
        self.assert_no_upload(px)
        self.assertIn(b"UID MOVE", bytes(px.upstream).upper())
        self.assertIn("0 uploaded", r.stdout)
        self.assert_moved(flags={"\\Seen"})

    def test_mutt_sync_with_new_flags(self):
        self.move("mutt", letters="FS")
        _, px = self.recorded("sync")
        self.assert_no_upload(px)
        self.assert_moved(flags={"\\Seen", "\\Flagged"})

    def test_cp_rm_keeps_internaldate(self):
        self.move("cp")  # a new file (mtime now), no info letters: \Seen removed
        _, px = self.recorded("push")
        self.assert_no_upload(px)
        self.assert_moved(flags=set())

    def test_with_trash(self):
        self.move("mutt")
        _, px = self.recorded("sync", trash="Trash")
        self.assert_no_upload(px)
        self.write_config(layout=self.layout, trash="Trash")
        self.assert_moved(trash=())

    def test_ambiguous_is_uploaded(self):
        """Two gone messages have the new file's Message-ID and size: not a
        move (uploaded, both removed), as before."""
        twin = tb.make_message(500, size=900)
        with self.imap() as c:
            c.append_message("INBOX", twin)
            c.append_message("Trash", twin)
        self.run_ok("sync")
        files = [m for f in ("INBOX", "Trash") for m in self.local_files(f) if m.data == twin.replace(b"\r\n", b"\n")]
        self.assertEqual(len(files), 2)
        with open(os.path.join(self.folder_dir("Archive"), "cur", "1790000000.twin.host:2,"), "wb") as f:
            f.write(files[0].data)
        for m in files:
            os.unlink(m.path)
        _, px = self.recorded("push", "-v")
        self.assertEqual(bytes(px.upstream).upper().count(b"APPEND"), 1)
        self.assertNotIn(b"UID MOVE", bytes(px.upstream).upper())

    def test_dry_run_shows_the_move(self):
        self.move("mutt")
        tree = tb.snapshot_tree(self.maildir)
        state = self.server_state()
        r = self.run_ok("sync", "--dry-run")
        self.assertEqual(len(re.findall(r"Archive: would move UID \d+ from INBOX on the server", r.stdout)), 2,
                         r.stdout)
        self.assertNotIn("would upload", r.stdout)
        self.assertNotIn("would remove", r.stdout)
        r = self.run_ok("sync", "--dry-run", "--json")
        plan = [p for a in json.loads(r.stdout)["accounts"] for p in a["plan"]]
        moves = [p for p in plan if p["action"] == "move_on_server"]
        self.assertEqual(len(moves), 2, plan)
        self.assertEqual({(p["folder"], p["from"]) for p in moves}, {("Archive", "INBOX")})
        self.assertFalse([p for p in plan if p["action"] in ("upload", "remove_on_server")], plan)
        self.assertEqual(tb.snapshot_tree(self.maildir), tree)
        self.assertEqual(self.server_state(), state)

    def test_dry_run_and_counts_both_styles_push(self):
        """One message moved keeping its name (notmuch), one written anew
        under a new name (mutt): a dry push shows both as moves (text and
        --json), neither as an upload and a removal; the push counts them
        as moved on the server (summary and --json), not as uploads or
        deletions."""
        mutt, rename = sorted(self.moved)
        self.move("rename", which={rename})
        self.move("mutt", which={mutt})
        tree, state = tb.snapshot_tree(self.maildir), self.server_state()
        r = self.run_ok("push", "--dry-run")
        self.assertEqual(len(re.findall(r"Archive: would move UID \d+ from INBOX on the server", r.stdout)), 2,
                         r.stdout)
        self.assertNotIn("would upload", r.stdout)
        self.assertNotIn("would remove", r.stdout)
        self.assertIn("0 uploaded, 0 flag changes, 0 deleted on the server, 2 moved on the server", r.stdout)
        doc = json.loads(self.run_ok("push", "--dry-run", "--json").stdout)
        check_run_document(self, doc, "push")
        acc = doc["accounts"][0]
        self.assertEqual(sorted((p["action"], p["folder"], p["from"]) for p in acc["plan"]),
                         [("move_on_server", "Archive", "INBOX")] * 2, acc["plan"])
        t = acc["totals"]
        self.assertEqual((t["moved_on_server"], t["uploaded"], t["deleted_on_server"], t["moved"]), (2, 0, 0, 0))
        self.assertEqual(tb.snapshot_tree(self.maildir), tree)
        self.assertEqual(self.server_state(), state)
        doc = json.loads(self.run_ok("push", "--json").stdout)
        check_run_document(self, doc, "push")
        by = {f["name"]: f for f in doc["accounts"][0]["folders"]}
        self.assertEqual((by["Archive"]["moved_on_server"], by["Archive"]["uploaded"]), (2, 0))
        self.assertEqual((by["INBOX"]["moved_on_server"], by["INBOX"]["deleted_on_server"]), (0, 0))
        self.assert_moved()

    def test_kill_before_move_push(self):
        self.kill_then_rerun("push", "push", stall_on=(b"UID MOVE", 1))

    def test_kill_after_move_push(self):
        self.kill_then_rerun("push", "push", drop=rb"^\S+ OK .*Move completed")

    def test_kill_after_move_sync(self):
        self.kill_then_rerun("sync", "sync", drop=rb"^\S+ OK .*Move completed")

    def test_kill_before_commit_push(self):
        # the EXAMINE that finds the copy after the move: before the DB commit
        self.move("rename")
        px1 = self.killed("push", stall_on=(b"EXAMINE", 1))
        self.assertIn(b"UID MOVE", bytes(px1.upstream).upper())
        _, px2 = self.recorded("push")
        self.assert_no_upload(px1, px2)
        self.assert_moved()


class MoveWithoutMoveTest(MovesCase):
    """A server without MOVE: UID COPY + \\Deleted + UID EXPUNGE."""

    bed_options = {"pool": 30, "hide_capabilities": ("MOVE",)}

    def test_rename_push(self):
        self.move("rename")
        _, px = self.recorded("push")
        up = bytes(px.upstream).upper()
        self.assert_no_upload(px)
        self.assertNotIn(b"UID MOVE", up)
        self.assertIn(b"UID COPY", up)
        self.assertIn(b"UID EXPUNGE", up)
        self.assert_moved(flags={"\\Seen"})

    def test_mutt_sync(self):
        self.move("mutt")
        _, px = self.recorded("sync")
        self.assert_no_upload(px)
        self.assert_moved()

    def test_kill_before_copy(self):
        self.kill_then_rerun("push", "push", stall_on=(b"UID COPY", 1))

    def test_kill_after_copy(self):
        self.kill_then_rerun("push", "push", drop=rb"^\S+ OK .*Copy completed")

    def test_kill_between_copy_and_expunge(self):
        self.kill_then_rerun("push", "sync", stall_on=(b"UID EXPUNGE", 1))

    def test_kill_after_expunge(self):
        self.kill_then_rerun("sync", "push", drop=rb"^\S+ OK .*Expunge completed")


class MoveMaildirppTest(MovesCase):
    layout = "maildir++"

    def test_rename_sync(self):
        self.move("rename")
        _, px = self.recorded("sync")
        self.assert_no_upload(px)
        self.assert_moved()

    def test_cp_rm_push(self):
        self.move("cp")
        _, px = self.recorded("push")
        self.assert_no_upload(px)
        self.assert_moved(flags=set())


class MoveGuardTest(tb.BedTestCase):
    """Moving 20 of a folder's 25 messages (80%, over max_delete) to another
    folder is no mass deletion, also when the source folder's push comes
    first (Archive before INBOX); the same share really deleted trips it."""

    def test_guard_counts_no_move(self):
        corpus = [m.data for m in tb.make_corpus(25, seed=78, size=(400, 900), flags=False)]
        with self.imap() as c:
            c.create_folder("Archive")
            for data in corpus:
                c.append_message("Archive", data)
        self.pull()
        dest = os.path.join(tb.local_folder_path(self.maildir, "INBOX"), "cur")
        files = tb.read_maildir(self.maildir)["Archive"]
        for m in files[:20]:
            os.rename(m.path, os.path.join(dest, m.name))
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        self.run_ok("sync")
        px.stop()
        self.write_config()
        self.assertNotIn(b"APPEND", bytes(px.upstream).upper())
        with self.imap() as c:
            self.assertEqual(len(c.messages("Archive")), 5)
            self.assertEqual(len(c.messages("INBOX")), 20)
        self.assertSynced()
        # the same share really deleted still trips the guard
        for m in tb.read_maildir(self.maildir)["INBOX"][:15]:
            os.unlink(m.path)
        self.run_ok("push", expect=1)
        with self.imap() as c:
            self.assertEqual(len(c.messages("INBOX")), 20)
