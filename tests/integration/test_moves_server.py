# SPDX-License-Identifier: MIT
"""test_moves_server.py: a move on the server by another client becomes a
rename of the local file (issue 16, point 4, the server direction).

Another client (testbed ImapClient.move_uids: UID MOVE) moves messages
from folder A to folder B. The next `pull` or `sync` renames the local
files from A's directory into B's: the same inode, flags as the server has
them, no body downloaded (the proxy's record of the BODY[] literals), no
message twice on either side, and the mass-deletion guard counts a move as
no deletion. Folder names are chosen so that the destination is listed
before and after the source, nested, in both layouts; a kill during the
run, then a rerun, leaves each message once on each side.
"""

import collections
import hashlib
import os
import re
import time

import testbed as tb
from test_json import check_run_document

BODY_LITERAL = re.compile(rb"BODY\[\] \{(\d+)\}")


def digest(data):
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


class ServerMoveTest(tb.BedTestCase):
    layout = "verbatim"

    def setUp(self):
        self.keys = {"layout": self.layout}
        super().setUp()

    def write_config(self, file_mode=0o600, **keys):
        """Every config of the test keeps its layout (and mode)."""
        merged = dict(self.keys)
        merged.update(keys)
        return super().write_config(file_mode=file_mode, **merged)

    # -- helpers ---------------------------------------------------------

    def seed(self, folders, n=6, seed=300):
        """n corpus messages in each folder (created), then a pull.
        Returns {folder: [uid]}."""
        uids = {}
        with self.imap() as c:
            for i, name in enumerate(folders):
                if name != "INBOX":
                    c.create_folder(name)
                uids[name] = c.append_many(name, tb.make_corpus(n, seed=seed + i, size=(500, 3000)))
        self.pull()
        return uids

    def local_files(self):
        """{digest: [(folder, inode)]} of every local message file."""
        out = collections.defaultdict(list)
        for folder, msgs in tb.read_maildir(self.maildir, self.layout).items():
            for m in msgs:
                out[digest(m.data)].append((folder, os.stat(m.path).st_ino))
        return out

    def server_digests(self, folder):
        with self.imap() as c:
            return collections.Counter(digest(m.data) for m in c.messages(folder))

    def local_digests(self, folder):
        return collections.Counter(digest(m.data) for m in tb.read_maildir(self.maildir, self.layout).get(folder, []))

    def digests_of(self, folder, uids):
        with self.imap() as c:
            return [digest(m.data) for m in c.messages(folder) if m.uid in set(uids)]

    def move(self, src, uids, dst):
        with self.imap() as c:
            return c.move_uids(src, uids, dst)

    def recorded(self, *args, expect=0):
        """Run through a recording proxy; returns (Result, bytes of BODY[]
        literals the server sent)."""
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        r = self.run_ok("-v", *args, expect=expect)
        px.stop()
        self.write_config()
        return r, sum(int(n) for n in BODY_LITERAL.findall(bytes(px.downstream)))

    def assertMoved(self, before, moved, src, dst, folders):
        """The moved messages (digests) are in dst once, with the inode they
        had in src; every folder holds what the server holds, once each."""
        after = self.local_files()
        for d in moved:
            self.assertEqual(len(after[d]), 1, "a moved message is not exactly once locally: %s" % after[d])
            self.assertEqual(after[d][0][0], dst, "a moved message is not in %s: %s" % (dst, after[d]))
            self.assertEqual(before[d], [(src, after[d][0][1])],
                             "a moved message's file is not the one it was in %s (inode)" % src)
        for f in folders:
            server, local = self.server_digests(f), self.local_digests(f)
            self.assertEqual(local, server, f)
            self.assertTrue(all(v == 1 for v in server.values()), "%s: a duplicate on the server" % f)
        self.assertSynced(layout=self.layout)

    def check_move(self, src, dst, command="pull", n_move=2):
        folders = sorted({"INBOX", src, dst})
        uids = self.seed([f for f in folders])
        moved = self.digests_of(src, uids[src][:n_move])
        before = self.local_files()
        self.move(src, uids[src][:n_move], dst)
        r, body = self.recorded(command)
        self.assertEqual(body, 0, "bodies were downloaded for messages that only moved\n%s" % r)
        self.assertMoved(before, moved, src, dst, folders)
        # and the next run has nothing left to do
        r, body = self.recorded(command)
        self.assertEqual(body, 0, str(r))
        self.assertMoved(before, moved, src, dst, folders)

    # -- folder orders, layouts, commands ---------------------------------

    def test_move_to_a_folder_listed_after(self):
        self.check_move("Alpha", "Beta")

    def test_move_to_a_folder_listed_before(self):
        self.check_move("Zeta", "Alpha")

    def test_move_into_a_nested_folder(self):
        self.check_move("Alpha", "Projects/2026")

    def test_move_out_of_inbox(self):
        self.check_move("INBOX", "Archive")

    def test_sync_renames_too(self):
        self.check_move("Zeta", "Alpha", command="sync")

    def check_swap(self, command):
        """Two folders swap messages in one go: whichever the run lists
        first, one move goes to a folder listed before its source."""
        folders = ["INBOX", "Alpha", "Beta"]
        uids = self.seed(folders)
        to_beta = self.digests_of("Alpha", uids["Alpha"][:2])
        to_alpha = self.digests_of("Beta", uids["Beta"][:3])
        before = self.local_files()
        self.move("Alpha", uids["Alpha"][:2], "Beta")
        self.move("Beta", uids["Beta"][:3], "Alpha")
        r, body = self.recorded(command)
        self.assertEqual(body, 0, "bodies were downloaded for messages that only moved\n%s" % r)
        self.assertMoved(before, to_beta, "Alpha", "Beta", folders)
        self.assertMoved(before, to_alpha, "Beta", "Alpha", folders)

    def test_two_folders_swap_messages(self):
        self.check_swap("pull")

    def test_two_folders_swap_messages_sync(self):
        self.check_swap("sync")

    def test_flags_and_keywords_from_the_server(self):
        """The server's flags and keywords of the moved message: the local
        file gets the flags, a later sync keeps the keywords on the server
        and uploads nothing."""
        uids = self.seed(["INBOX", "Alpha", "Beta"])
        with self.imap() as c:
            c.set_flags("Alpha", uids["Alpha"][:1], ["\\Flagged", "$Label1"], "+")
        moved = self.digests_of("Alpha", uids["Alpha"][:1])
        self.pull()
        before = self.local_files()
        new = self.move("Alpha", uids["Alpha"][:1], "Beta")
        r, body = self.recorded("pull")
        self.assertEqual(body, 0, str(r))
        self.assertMoved(before, moved, "Alpha", "Beta", ["INBOX", "Alpha", "Beta"])
        files = [m for m in tb.read_maildir(self.maildir, self.layout)["Beta"] if digest(m.data) == moved[0]]
        self.assertIn("F", files[0].letters)
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        self.run_ok("sync")
        px.stop()
        self.assertNotIn(b"APPEND", bytes(px.upstream), "a sync after the move uploaded something")
        with self.imap() as c:
            m = [m for m in c.messages("Beta") if m.uid == new[0]][0]
        self.assertIn("$Label1", m.flags)
        self.assertIn("\\Flagged", m.flags)

    def test_move_and_a_real_deletion_in_one_folder(self):
        uids = self.seed(["INBOX", "Alpha", "Beta"])
        moved = self.digests_of("Alpha", uids["Alpha"][:2])
        gone = self.digests_of("Alpha", uids["Alpha"][2:3])
        before = self.local_files()
        self.move("Alpha", uids["Alpha"][:2], "Beta")
        with self.imap() as c:
            c.expunge_uids("Alpha", uids["Alpha"][2:3])
        r, body = self.recorded("pull")
        self.assertEqual(body, 0, str(r))
        self.assertMoved(before, moved, "Alpha", "Beta", ["INBOX", "Alpha", "Beta"])
        self.assertNotIn(gone[0], self.local_files(), "the message expunged on the server is still local")
        self.assertEqual(sum(self.local_digests("Alpha").values()), 3)

    def test_guard_counts_a_move_as_no_deletion(self):
        """80% of a folder of 25 moved elsewhere (max_delete 50%): no
        guard, nothing downloaded."""
        uids = self.seed(["INBOX", "Zeta", "Alpha"], n=25)
        moved = self.digests_of("Zeta", uids["Zeta"][:20])
        before = self.local_files()
        self.move("Zeta", uids["Zeta"][:20], "Alpha")
        r, body = self.recorded("pull")
        self.assertEqual(body, 0, str(r))
        self.assertMoved(before, moved, "Zeta", "Alpha", ["INBOX", "Zeta", "Alpha"])

    def test_guard_still_trips_for_real_deletions(self):
        """The guard's hold for the second pass changes nothing when the
        messages are really gone: the folder is left untouched."""
        uids = self.seed(["INBOX", "Zeta"], n=25)
        with self.imap() as c:
            c.expunge_uids("Zeta", uids["Zeta"][:20])
        r = self.pull(expect=1)
        self.assertIn("max_delete", r.stderr)
        self.assertEqual(sum(self.local_digests("Zeta").values()), 25)

    def test_backup_mode_renames_too(self):
        uids = self.seed(["INBOX", "Alpha", "Beta"])
        self.keys["mode"] = "backup"
        self.write_config()
        moved = self.digests_of("Alpha", uids["Alpha"][:2])
        before = self.local_files()
        self.move("Alpha", uids["Alpha"][:2], "Beta")
        r, body = self.recorded("pull")
        self.assertEqual(body, 0, str(r))
        self.assertMoved(before, moved, "Alpha", "Beta", ["INBOX", "Alpha", "Beta"])

    def test_dry_run_shows_the_move(self):
        uids = self.seed(["INBOX", "Zeta", "Alpha"])
        self.move("Zeta", uids["Zeta"][:1], "Alpha")
        tree = tb.snapshot_tree(self.maildir)
        r = self.run_ok("--dry-run", "pull")
        self.assertIn("would move the local copy of UID %d of Zeta here" % uids["Zeta"][0], r.stdout)
        self.assertNotIn("would delete", r.stdout)
        self.assertNotIn("would fetch", r.stdout)
        r = self.run_ok("--json", "--dry-run", "pull")
        plan = r.json()["accounts"][0]["plan"]
        self.assertEqual([(s["action"], s["folder"], s["from"], s["from_uid"]) for s in plan],
                         [("move_local", "Alpha", "Zeta", uids["Zeta"][0])])
        self.assertEqual(tree, tb.snapshot_tree(self.maildir), "--dry-run changed the Maildir")

    def test_moves_are_counted(self):
        """A pull reports the messages renamed after a server move as
        moved (summary and --json, dry run too), not as new or deleted.
        (Counting does not depend on the layout: run for one.)"""
        if self.layout != "verbatim":
            self.skipTest("the same counts in every layout")
        uids = self.seed(["INBOX", "Zeta", "Alpha"])
        self.move("Zeta", uids["Zeta"][:2], "Alpha")
        r = self.run_ok("--dry-run", "pull")
        self.assertIn(" 0 new (0 B), 0 flag changes, 0 deleted, 2 moved", r.stdout)
        doc = self.run_ok("--json", "pull").json()
        check_run_document(self, doc, "pull")
        by = {f["name"]: f for f in doc["accounts"][0]["folders"]}
        self.assertEqual((by["Alpha"]["moved"], by["Alpha"]["fetched"], by["Zeta"]["deleted"]), (2, 0, 0))
        self.assertEqual(doc["accounts"][0]["totals"]["moved"], 2)
        self.assertIn(", 0 deleted, 0 moved", self.run_ok("pull").stdout)

    # -- kills -----------------------------------------------------------

    def check_killed(self, command, stall_on):
        uids = self.seed(["INBOX", "Zeta", "Alpha"])
        moved = self.digests_of("Zeta", uids["Zeta"][:2])
        before = self.local_files()
        self.move("Zeta", uids["Zeta"][:2], "Alpha")
        self.run_killed_at(command, stall_on)
        self.write_config()
        r, body = self.recorded(command)
        self.assertEqual(body, 0, "the rerun downloaded bodies\n%s" % r)
        self.assertMoved(before, moved, "Zeta", "Alpha", ["INBOX", "Zeta", "Alpha"])

    def test_killed_before_the_move(self):
        # at the identity FETCH of the destination's new UIDs
        self.check_killed("pull", (b"MESSAGE-ID", 1))

    def test_killed_after_the_move(self):
        # the second pass opens the source again (the third QRESYNC open)
        self.check_killed("pull", (b" (QRESYNC (", 3))

    def test_sync_killed_after_the_move(self):
        self.check_killed("sync", (b" (QRESYNC (", 3))


class ServerMoveMaildirPlusPlusTest(ServerMoveTest):
    layout = "maildir++"


if __name__ == "__main__":
    import unittest
    unittest.main()
