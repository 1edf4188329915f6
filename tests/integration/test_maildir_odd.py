# SPDX-License-Identifier: MIT
"""test_maildir_odd.py: Maildir entries other tools leave behind, against a
real Dovecot.

A known message file replaced by a symlink (a dedup tool) is still that
message; one replaced by a dangling symlink, a directory, a FIFO or a socket
is skipped with a warning and is not a deletion. A name with ":2," twice is
renamed to a sane one on a flag change. Two files with one unique part (a
restored backup) are one message when their content is the same, and two
when it differs. A 0-byte file is no mail: skipped with a warning, never a
failure. Each test counts messages by content hash on both sides and checks
the files on disk.
"""

import collections
import hashlib
import os
import shutil
import socket
import sqlite3
from pathlib import Path

import testbed as tb


def digest(data):
    return hashlib.sha256(data).hexdigest()


class MaildirOddTest(tb.BedTestCase):
    bed_options = {"pool": 20}

    # -- helpers -----------------------------------------------------------

    def inbox(self):
        return Path(tb.local_folder_path(self.maildir, "INBOX"))

    def seed_and_pull(self, n=6, flags=()):
        msgs = tb.make_corpus(n, seed=11, flags=False)
        with self.imap() as c:
            for m in msgs:
                c.append_message("INBOX", m.data, flags=flags, date=m.date)
        self.pull()
        return msgs

    def server_hashes(self):
        """Counter of content hashes (LF line ends) in the server's INBOX."""
        with self.imap() as c:
            return collections.Counter(digest(m.data_lf) for m in c.messages("INBOX"))

    def server_flags(self):
        """{content hash: server letters} of the server's INBOX."""
        with self.imap() as c:
            return {digest(m.data_lf): m.letters for m in c.messages("INBOX")}

    def local_hashes(self):
        """Counter of content hashes of the local INBOX's readable files
        (symlinks followed, as a MUA reads them)."""
        return collections.Counter(digest(m.data) for m in tb.read_maildir(self.maildir).get("INBOX", []))

    def cur_files(self):
        return sorted((self.inbox() / "cur").iterdir())

    def state_uniqs(self):
        db = sqlite3.connect(str(self.state))
        try:
            return {r[0] for r in db.execute("SELECT uniq FROM messages WHERE uniq IS NOT NULL")}
        finally:
            db.close()

    def assertNoControlBytes(self, text):
        self.assertFalse([c for c in text if ord(c) < 0x20 and c not in "\n\t"], text)

    # -- point 5: not a regular file ----------------------------------------

    def test_symlink_to_identical_copy_is_the_message(self):
        """rdfind -makesymlinks: a file replaced by a symlink to an identical
        copy (here outside the root) is present: nothing is expunged, its
        flag changes go both ways, and a rename renames the link only."""
        msgs = self.seed_and_pull(6)
        want = collections.Counter(digest(m.data_lf) for m in msgs)
        victim = self.cur_files()[0] if self.cur_files() else sorted((self.inbox() / "new").iterdir())[0]
        copies = self.work / "dedup"
        copies.mkdir()
        target = copies / "copy.eml"
        shutil.copy2(victim, target)
        target_stat = os.stat(target)
        victim.unlink()
        os.symlink(target, victim)
        data_before = target.read_bytes()
        h = digest(data_before)

        r = self.run_ok("sync")
        self.assertEqual(self.server_hashes(), want, r)
        self.assertEqual(self.local_hashes(), want)
        self.assertTrue(victim.is_symlink())
        # the server flags it: the link is renamed, the target is untouched
        with self.imap() as c:
            uid = [m.uid for m in c.messages("INBOX") if digest(m.data_lf) == h][0]
            c.set_flags("INBOX", [uid], ["\\Flagged"])
        self.run_ok("sync")
        links = [p for p in (self.inbox() / "cur").iterdir() if p.is_symlink()]
        self.assertEqual(len(links), 1)
        self.assertIn("F", tb.parse_maildir_name(links[0].name)[1])
        self.assertEqual(os.readlink(links[0]), str(target))
        self.assertEqual(os.stat(target).st_mtime_ns, target_stat.st_mtime_ns)
        self.assertEqual(sorted(os.listdir(copies)), ["copy.eml"])
        # a local flag change on the link goes to the server
        uniq = tb.parse_maildir_name(links[0].name)[0]
        os.rename(links[0], links[0].with_name(uniq + ":2,FS"))
        self.run_ok("sync")
        self.assertEqual(self.server_flags()[h], "FS")
        self.assertEqual(self.server_hashes(), want)
        self.assertEqual(self.local_hashes(), want)
        # a new message that is a symlink is uploaded once, read through it
        fresh = copies / "fresh.eml"
        fresh.write_bytes(tb.make_message(70, seed=15).replace(b"\r\n", b"\n"))
        os.symlink(fresh, self.inbox() / "new" / "1700000000.link.host")
        want[digest(fresh.read_bytes())] += 1
        self.run_ok("sync")
        self.run_ok("sync")
        self.assertEqual(self.server_hashes(), want)
        self.assertEqual(self.local_hashes(), want)
        # expunged on the server: the link goes, the file it pointed to stays
        with self.imap() as c:
            c.expunge_uids("INBOX", [m.uid for m in c.messages("INBOX") if digest(m.data_lf) == h])
        self.run_ok("sync")
        self.assertEqual([p for p in (self.inbox() / "cur").iterdir() if p.is_symlink() and "FS" in p.name], [])
        self.assertEqual(target.read_bytes(), data_before)
        self.assertEqual(sorted(os.listdir(copies)), ["copy.eml", "fresh.eml"])
        del want[h]
        self.assertEqual(self.server_hashes(), want)
        self.assertEqual(self.local_hashes(), want)

    def test_unreadable_entries_are_not_deletions(self):
        """A dangling symlink, a directory, a FIFO and a socket where a known
        message was: a warning each, nothing expunged or pushed, the state
        rows kept; the real files put back are synced as before."""
        msgs = self.seed_and_pull(8)
        want = collections.Counter(digest(m.data_lf) for m in msgs)
        files = sorted(p for sub in ("cur", "new") for p in (self.inbox() / sub).iterdir())
        saved = {}
        for kind, p in zip(("dangling", "dir", "fifo", "socket"), files):
            saved[p] = p.read_bytes()
            p.unlink()
            if kind == "dangling":
                os.symlink(self.work / "nowhere", p)
            elif kind == "dir":
                p.mkdir()
            elif kind == "fifo":
                os.mkfifo(p)
            else:
                s = socket.socket(socket.AF_UNIX)
                s.bind(str(p))
                s.close()
        # and a directory nobody knows, named with a terminal escape
        (self.inbox() / "cur" / "1700000000.\x1b[2Jevil.host:2,S").mkdir()
        uniqs = self.state_uniqs()
        # status agrees: nothing deleted locally
        inbox = [f for f in self.run_ok("status", "--json").json()["accounts"][0]["folders"] if f["name"] == "INBOX"]
        self.assertEqual((inbox[0]["synced"], inbox[0]["local_deleted"]), (8, 0))
        for cmd in ("push", "sync", "sync"):
            r = self.run_ok(cmd, timeout=60)
            if cmd == "push":  # warned once; later runs see no change
                for p in saved:
                    self.assertIn(p.name, r.stderr, r)
                self.assertIn("not a regular file", r.stderr)
                self.assertIn("1700000000.\\x1b[2Jevil.host", r.stderr)
                self.assertNoControlBytes(r.stderr)
            self.assertEqual(self.server_hashes(), want, r)
            self.assertEqual(self.state_uniqs(), uniqs)
        self.assertEqual(self.local_hashes(), want - collections.Counter(digest(d) for d in saved.values()))
        # the real files come back: nothing moves, both sides agree
        for p, data in saved.items():
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
            p.write_bytes(data)
        r = self.run_ok("sync")
        self.assertEqual(self.server_hashes(), want, r)
        self.assertEqual(self.local_hashes(), want)
        self.assertEqual(self.state_uniqs(), uniqs)

    # -- point 7a: ":2," twice ----------------------------------------------

    def test_double_info_is_renamed_sanely(self):
        self.seed_and_pull(2)
        data = tb.make_message(50, seed=12).replace(b"\r\n", b"\n")
        odd = self.inbox() / "cur" / "1700000000.x.host:2,S:2,"
        odd.write_bytes(data)
        self.run_ok("sync")
        h = digest(data)
        self.assertEqual(self.server_hashes()[h], 1)
        self.assertEqual(self.server_flags()[h], "S")
        with self.imap() as c:
            uid = [m.uid for m in c.messages("INBOX") if digest(m.data_lf) == h][0]
            c.set_flags("INBOX", [uid], ["\\Flagged"])
        self.run_ok("sync")
        names = [p.name for p in self.cur_files() if p.read_bytes() == data]
        self.assertEqual(names, ["1700000000.x.host:2,FS"])
        for p in self.cur_files():
            self.assertEqual(p.name.count(":2,"), 1, p.name)
        self.run_ok("sync")
        self.assertEqual(self.server_hashes()[h], 1)
        self.assertEqual(self.local_hashes()[h], 1)
        self.assertSynced()

    # -- point 7b: one unique part, two files -------------------------------

    def restore_duplicate(self, content, where="cur"):
        """A backup brings back a second file with a known message's unique
        part: cur/<uniq>:2,FS (or new/<uniq>) holding content(original)."""
        orig = self.cur_files()[0]
        uniq, _ = tb.parse_maildir_name(orig.name)
        dup = (self.inbox() / "cur" / (uniq + ":2,FS")) if where == "cur" else (self.inbox() / "new" / uniq)
        dup.write_bytes(content(orig.read_bytes()))
        return orig, dup

    def identical_duplicate(self, where):
        msgs = self.seed_and_pull(4, flags=("\\Seen",))
        want = collections.Counter(digest(m.data_lf) for m in msgs)
        orig, dup = self.restore_duplicate(lambda d: d, where)
        flags = self.server_flags()
        r = self.run_ok("sync")
        self.assertIn("same unique name", r.stderr, r)
        self.assertEqual(self.server_hashes(), want, r)
        self.assertEqual(self.server_flags(), flags)
        self.assertTrue(orig.exists() and dup.exists())
        r = self.run_ok("sync")
        self.assertEqual(self.server_hashes(), want, r)
        self.assertEqual(self.server_flags(), flags)

    def test_identical_duplicate_in_cur_is_not_uploaded(self):
        self.identical_duplicate("cur")

    def test_identical_duplicate_in_new_is_not_uploaded(self):
        self.identical_duplicate("new")

    def test_different_duplicate_gets_its_own_name(self):
        msgs = self.seed_and_pull(4, flags=("\\Seen",))
        want = collections.Counter(digest(m.data_lf) for m in msgs)
        other = tb.make_message(60, seed=13).replace(b"\r\n", b"\n")
        orig, dup = self.restore_duplicate(lambda d: other)
        r = self.run_ok("sync")
        want[digest(other)] += 1
        self.assertEqual(self.server_hashes(), want, r)
        self.assertTrue(orig.exists())
        self.assertFalse(dup.exists())
        renamed = [p for p in self.cur_files() if p.read_bytes() == other]
        self.assertEqual(len(renamed), 1)
        self.assertNotEqual(tb.parse_maildir_name(renamed[0].name)[0], tb.parse_maildir_name(orig.name)[0])
        self.assertEqual(tb.parse_maildir_name(renamed[0].name)[1], "FS")
        r = self.run_ok("sync")
        self.assertEqual(self.server_hashes(), want, r)
        self.assertEqual(self.local_hashes(), want)
        self.assertSynced(check_mtime=False)

    # -- point 7c: 0 bytes --------------------------------------------------

    def test_empty_file_is_skipped_not_a_failure(self):
        msgs = self.seed_and_pull(3)
        want = collections.Counter(digest(m.data_lf) for m in msgs)
        empty = self.inbox() / "cur" / "1700000000.empty.host:2,S"
        empty.write_bytes(b"")
        self.add_local_new(2, seed=14)
        for m in tb.make_corpus(2, seed=14, size=3000, flags=False):
            want[digest(m.data_lf)] += 1
        for cmd in ("push", "sync", "sync"):
            r = self.run_ok(cmd)
            if cmd == "push":  # warned once; later runs see no change
                self.assertIn("1700000000.empty.host", r.stderr, r)
                self.assertIn("empty", r.stderr)
            self.assertEqual(self.server_hashes(), want, r)
            self.assertTrue(empty.exists())
            self.assertEqual(empty.stat().st_size, 0)
        self.assertEqual(self.local_hashes() - collections.Counter([digest(b"")]), want)
