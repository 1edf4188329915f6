# SPDX-License-Identifier: MIT
"""test_identity.py: a UIDVALIDITY change and a lost state DB re-match the
local messages by identity (Message-ID + size, else content): nothing is
delivered twice, no local file is replaced, and the server's flags win,
except over local changes not yet pushed: those survive the re-match.
"""

import hashlib
import os
import re
import time
import unittest

import testbed as tb


def inodes(root):
    """{inode: size} of every message file below root."""
    out = {}
    for folder, msgs in tb.read_maildir(root).items():
        for m in msgs:
            st = os.stat(m.path)
            out[st.st_ino] = st.st_size
    return out


def content_hash(data_lf):
    return hashlib.sha256(data_lf).hexdigest()


def toggle(letters, letter):
    return "".join(sorted(set(letters) ^ {letter}))


class IdentityTest(tb.BedTestCase):
    bed_options = {"pool": 8}
    FOLDER = "Archive"

    def seed(self):
        """25 messages with Message-IDs plus two without (one headerless)."""
        with self.imap() as c:
            c.create_folder(self.FOLDER)
            msgs = tb.make_corpus(25, seed=7, size=(500, 4000))
            c.append_many(self.FOLDER, msgs)
            c.append_message(self.FOLDER, b"Subject: no id\r\n\r\nbody one\r\n", ("\\Seen",), 1600000100)
            c.append_message(self.FOLDER, b"\r\nheaderless body\r\n", (), 1600000200)

    def recreate_folder(self, change_flags):
        """Delete and re-create the folder with the same messages: the
        server gives it a new UIDVALIDITY and new UIDs."""
        with self.imap() as c:
            before = c.status_of(self.FOLDER)["UIDVALIDITY"]
            msgs = c.messages(self.FOLDER)
            c.select_folder("INBOX")  # Dovecot drops a session whose mailbox is deleted
            for attempt in range(5):
                c.delete_folder(self.FOLDER)
                c.create_folder(self.FOLDER)
                if c.status_of(self.FOLDER)["UIDVALIDITY"] != before:
                    break
                time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
            self.assertNotEqual(c.status_of(self.FOLDER)["UIDVALIDITY"], before)
            for i, m in enumerate(msgs):
                flags = set(m.flags) - {"\\Recent"}
                if change_flags and i % 5 == 0:
                    flags ^= {"\\Flagged"}
                c.append_message(self.FOLDER, m.data, sorted(flags), m.internaldate)
        return len(msgs)

    def test_uidvalidity_change_rematches_without_downloading(self):
        self.seed()
        self.pull()
        files = inodes(self.maildir)
        self.assertEqual(len(files), 27)
        n = self.recreate_folder(change_flags=True)
        r = self.pull("--json", "-v")
        self.assertIn("UIDVALIDITY changed", r.stderr)
        folder = [f for f in r.json()["accounts"][0]["folders"] if f["name"] == self.FOLDER][0]
        self.assertEqual(folder["fetched"], 0, "messages were delivered again:\n%s" % r)
        # the same files, flags now as on the server
        self.assertEqual(inodes(self.maildir), files)
        self.assertSynced()
        self.assertEqual(tb.count_messages(self.maildir), n)
        # Message-ID pairs need no download; the two without one are
        # compared by content and adopted.
        self.assertEqual(len(re.findall(r"adopted, not downloaded again", r.stderr)), 2, r.stderr)
        # and the next run is quiet
        snap = tb.snapshot_tree(self.maildir)
        self.pull()
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)

    def test_lost_state_db_rematches_without_duplicates(self):
        self.seed()
        self.pull()
        files = inodes(self.maildir)
        for suffix in ("", "-wal", "-shm"):
            p = str(self.state) + suffix
            if os.path.exists(p):
                os.unlink(p)
        r = self.pull("--json", "-v")
        self.assertEqual(sum(f["fetched"] for f in r.json()["accounts"][0]["folders"]), 0, str(r))
        self.assertEqual(inodes(self.maildir), files)
        self.assertSynced()
        self.assertIn("matched to the server by identity", r.stderr)

    def test_lost_state_db_with_server_flag_changes(self):
        self.seed()
        self.pull()
        os.unlink(self.state)
        with self.imap() as c:
            uids = [m.uid for m in c.messages(self.FOLDER)]
            c.set_flags(self.FOLDER, uids[:10], ["\\Answered"])
        self.pull()
        self.assertSynced()
        self.assertEqual(tb.count_messages(self.maildir), 27)

    def test_new_mail_after_uidvalidity_change_is_fetched(self):
        self.seed()
        self.pull()
        self.recreate_folder(change_flags=False)
        with self.imap() as c:
            c.append_many(self.FOLDER, tb.make_corpus(3, seed=99, size=(500, 900), start=500))
        r = self.pull("--json")
        folder = [f for f in r.json()["accounts"][0]["folders"] if f["name"] == self.FOLDER][0]
        self.assertEqual(folder["fetched"], 3, str(r))
        self.assertSynced()


    # -- local changes not yet pushed survive the re-match ---------------

    def change_locally(self):
        """After a pull: remove two messages' files and change the flags of
        six others (\\Seen off, \\Seen on, \\Flagged on; \\Answered toggled
        on messages 10 and 25, whose \\Flagged recreate_folder(change_flags=
        True) toggles on the server; \\Draft on the headerless 26: the two
        without Message-ID are matched by content), nothing pushed. Returns ({content hash:
        letters} as the user wants the folder once the server's changes are
        in, the same for the server with only the server's changes, the
        removed messages' hashes)."""
        msgs = self.server_state()[self.FOLDER]
        local = {content_hash(m.data): m for m in tb.read_maildir(self.maildir)[self.FOLDER]}
        free = [i for i in range(25) if i % 5]  # recreate_folder leaves their flags
        deleted = set(free[:2])
        rest = free[2:]
        drop_s = next(i for i in rest if "S" in msgs[i].letters)
        add_s = next(i for i in rest if "S" not in msgs[i].letters)
        add_f = next(i for i in rest if i not in (drop_s, add_s) and "F" not in msgs[i].letters)
        toggles = {drop_s: "S", add_s: "S", add_f: "F", 10: "R", 25: "R", 26: "D"}
        wanted, server_only = {}, {}
        cur = os.path.join(tb.local_folder_path(self.maildir, self.FOLDER), "cur")
        for i, m in enumerate(msgs):
            h = content_hash(m.data_lf)
            server_only[h] = toggle(m.letters, "F") if i % 5 == 0 else m.letters
            if i in deleted:
                os.unlink(local[h].path)
                continue
            letters = m.letters
            if i in toggles:
                letters = toggle(letters, toggles[i])
                os.rename(local[h].path, os.path.join(cur, "%s:2,%s" % (local[h].uniq, letters)))
            wanted[h] = toggle(letters, "F") if i % 5 == 0 else letters
        return wanted, server_only, {content_hash(msgs[i].data_lf) for i in deleted}

    def letters_by_content(self, msgs, side):
        """{content hash: letters} of the folder's messages on one side,
        each message there once."""
        out = {}
        for m in msgs:
            h = content_hash(m.data_lf if side == "server" else m.data)
            self.assertNotIn(h, out, "a message is doubled on the %s" % side)
            out[h] = m.letters
        return out

    def assertFolder(self, local, server):
        """The folder holds these messages with these letters ({content
        hash: letters}) locally and on the server, each once."""
        self.assertEqual(self.letters_by_content(tb.read_maildir(self.maildir)[self.FOLDER], "local"), local)
        self.assertEqual(self.letters_by_content(self.server_state()[self.FOLDER], "server"), server)

    def folder_result(self, r):
        return [f for f in r.json()["accounts"][0]["folders"] if f["name"] == self.FOLDER][0]

    def test_uidvalidity_change_keeps_local_changes_and_sync_pushes_them(self):
        self.seed()
        self.pull()
        files = inodes(self.maildir)
        wanted, _, deleted = self.change_locally()
        self.recreate_folder(change_flags=True)
        r = self.run_ok("sync", "--json", "-v")
        self.assertIn("UIDVALIDITY changed", r.stderr)
        self.assertIn("2 of the messages matched were deleted locally", r.stderr)
        folder = self.folder_result(r)
        self.assertEqual(folder["fetched"], 0, "messages were delivered again:\n%s" % r)
        self.assertEqual(folder["deleted_on_server"], 2, str(r))
        self.assertEqual(folder["flags_pushed"], 6, str(r))
        # the removed messages are gone on both sides, the local flag
        # changes and the server's are both in, on both sides
        self.assertEqual(len(wanted), 25)
        self.assertTrue(deleted.isdisjoint(wanted))
        self.assertFolder(wanted, wanted)
        self.assertSynced()
        # no file was downloaded again: the same inodes, two fewer
        now = inodes(self.maildir)
        self.assertEqual(len(now), 25)
        self.assertLessEqual(set(now), set(files))
        # and the next run has nothing to do
        snap = tb.snapshot_tree(self.maildir)
        self.run_ok("sync")
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)
        self.assertFolder(wanted, wanted)

    def test_uidvalidity_change_pull_keeps_local_changes_for_the_push(self):
        self.seed()
        self.pull()
        files = inodes(self.maildir)
        wanted, server_only, deleted = self.change_locally()
        self.recreate_folder(change_flags=True)
        # a dry run would fetch only the two without Message-ID (a real run
        # compares them by content first), and changes nothing
        snap = tb.snapshot_tree(self.maildir)
        r = self.pull("--dry-run")
        self.assertEqual(r.stdout.count("would fetch"), 2, r.stdout)
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)
        r = self.pull("--json", "-v")
        self.assertIn("UIDVALIDITY changed", r.stderr)
        self.assertEqual(self.folder_result(r)["fetched"], 0, "messages were delivered again:\n%s" % r)
        # a pull sends nothing: the server has only its own changes, the
        # local side keeps its changes (the removed ones stay removed) and
        # has the server's
        self.assertFolder(wanted, server_only)
        self.assertEqual(len(server_only), 27)
        self.assertLessEqual(set(inodes(self.maildir)), set(files))
        # pending they stay, through another pull
        self.pull()
        self.assertFolder(wanted, server_only)
        r = self.run_ok("push", "--json")
        folder = self.folder_result(r)
        self.assertEqual((folder["deleted_on_server"], folder["flags_pushed"], folder["uploaded"]), (2, 6, 0), str(r))
        self.assertFolder(wanted, wanted)
        self.pull()
        self.assertSynced()
        self.assertEqual(len(inodes(self.maildir)), 25)


    def test_uidvalidity_change_local_mass_deletion_needs_force(self):
        """Most of the folder deleted locally, then the UIDVALIDITY changes:
        the push's mass-deletion guard still holds the deletions back (exit
        1, nothing removed on the server), and the pull does not bring the
        messages back; --force removes them."""
        self.seed()
        self.pull()
        msgs = self.server_state()[self.FOLDER]
        local = {content_hash(m.data): m for m in tb.read_maildir(self.maildir)[self.FOLDER]}
        gone = {content_hash(m.data_lf) for m in msgs[:20]}
        for h in gone:
            os.unlink(local[h].path)
        kept = {content_hash(m.data_lf): m.letters for m in msgs[20:]}
        everything = {content_hash(m.data_lf): m.letters for m in msgs}
        self.recreate_folder(change_flags=False)
        r = self.run_ok("sync", "--json", expect=1)
        self.assertIn("max_delete", r.stderr)
        folder = self.folder_result(r)
        self.assertEqual((folder["fetched"], folder["deleted_on_server"]), (0, 0), str(r))
        self.assertFolder(kept, everything)
        # held back again by the next run, not downloaded either
        self.run_ok("sync", expect=1)
        self.assertFolder(kept, everything)
        r = self.run_ok("sync", "--force", "--json")
        self.assertEqual(self.folder_result(r)["deleted_on_server"], 20, str(r))
        self.assertFolder(kept, kept)
        self.assertSynced()


    def test_uidvalidity_change_killed_while_matching_keeps_local_changes(self):
        """A pull killed while it waits for the server's Message-IDs (after
        it saw the UIDVALIDITY change): the rows of the last sync are still
        there, so the next pull keeps the local changes all the same."""
        self.seed()
        self.pull()
        wanted, server_only, _ = self.change_locally()
        self.recreate_folder(change_flags=True)
        self.run_killed_at("pull", (b"MESSAGE-ID", 1))
        self.write_config()
        r = self.pull("--json")
        self.assertEqual(self.folder_result(r)["fetched"], 0, "messages were delivered again:\n%s" % r)
        self.assertFolder(wanted, server_only)
        self.run_ok("push")
        self.assertFolder(wanted, wanted)


if __name__ == "__main__":
    unittest.main()
