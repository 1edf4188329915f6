# SPDX-License-Identifier: MIT
"""test_stale_state.py: a state DB older than the Maildir it describes (a
restored backup), one truncated to 0 bytes, and one without the marker
file beside the Maildir root (an upgrade).

A stale DB is handled like a lost one: moved aside, with a warning, and
the messages re-matched by identity, so nothing transferred since the
backup is doubled on either side and nothing deleted since comes back.
"""

import collections
import hashlib
import os
import shutil
from pathlib import Path

import testbed as tb

MARKER = ".mailsync-state-test"  # per account (BedTestCase.account)


def digest(data_lf):
    return hashlib.sha256(data_lf).hexdigest()


class StaleStateTest(tb.BedTestCase):
    bed_options = {"pool": 14}

    def seed_and_sync(self, n=10, layout="verbatim"):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(n, seed=41, size=(500, 3000)))
        self.run_ok("sync")
        self.assertSynced(layout=layout)

    def local_hashes(self):
        """Counter of content hashes of every local message (LF ends)."""
        return collections.Counter(digest(m.data) for msgs in tb.read_maildir(self.maildir).values()
                                   for m in msgs)

    def server_hashes(self):
        with self.imap() as c:
            return collections.Counter(digest(m.data_lf) for m in c.messages("INBOX"))

    def assertNoDuplicates(self):
        local, server = self.local_hashes(), self.server_hashes()
        self.assertEqual([h for h, k in local.items() if k > 1], [], "local duplicates")
        self.assertEqual([h for h, k in server.items() if k > 1], [], "server duplicates")

    def marker(self):
        """(db identity, generation) from the marker file."""
        text = (self.maildir / MARKER).read_text().split()
        return text[2], int(text[3])

    def changes_on_both_sides(self):
        """New mail on the server and locally, one deletion and flag
        changes on each side. Returns the contents deleted."""
        gone = set()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(5, seed=42, size=(500, 3000), start=100))
            msgs = c.messages("INBOX")
            c.expunge_uids("INBOX", [msgs[0].uid])
            gone.add(digest(msgs[0].data_lf))
            c.set_flags("INBOX", [msgs[1].uid, msgs[2].uid], ["\\Flagged"])
        self.add_local_new(4, seed=43)
        local = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.uniq)
        victim = next(m for m in local if digest(m.data) not in gone and "up" not in m.uniq)
        gone.add(digest(victim.data))
        os.unlink(victim.path)
        flagme = next(m for m in local if m is not victim and "up" not in m.uniq and "cur" == m.subdir)
        os.rename(flagme.path, str(Path(flagme.path).parent / ("%s:2,%s" % (
            flagme.uniq, "".join(sorted(set(flagme.letters) | {"F", "R"}))))))
        return gone

    def test_restored_backup_is_not_trusted(self):
        self.seed_and_sync()
        self.assertFalse(os.path.exists(str(self.state) + "-wal"))
        backup = self.work / "backup.sqlite"
        shutil.copy2(self.state, backup)
        gone = self.changes_on_both_sides()
        self.run_ok("sync")
        self.assertSynced()
        synced = self.server_state()
        want = self.server_hashes()
        self.assertEqual(want, self.local_hashes())
        self.assertEqual(sum(want.values()), 10 - 2 + 5 + 4)

        shutil.copy2(backup, self.state)
        # and a message written locally since, not yet pushed
        fresh = tb.make_message(500, size=1200, seed=49).replace(b"\r\n", b"\n")
        (self.maildir / "INBOX" / "new" / "1700000000.fresh.host").write_bytes(fresh)
        r = self.pull()
        self.assertIn("older than the Maildir", r.stderr)
        self.assertIn("re-match", r.stderr)
        moved = [p for p in os.listdir(self.work) if p.startswith("state.sqlite.stale-")]
        self.assertEqual(len(moved), 1, os.listdir(self.work))
        self.assertEqual(self.local_hashes(), want + collections.Counter([digest(fresh)]))
        self.assertSynced(synced, allow_extra_messages=True)

        r = self.run_ok("sync")
        self.assertNotIn("older than the Maildir", r.stderr)
        self.assertNoDuplicates()
        want[digest(fresh)] = 1
        self.assertEqual(self.server_hashes(), want)
        self.assertEqual(self.local_hashes(), want)
        self.assertFalse(gone & set(self.local_hashes()), "a deleted message came back locally")
        self.assertFalse(gone & set(self.server_hashes()), "a deleted message came back on the server")
        # flags as last synced, on both sides
        self.assertSynced()
        now = self.server_state()
        self.assertEqual({m.data: m.flags for m in now["INBOX"] if m.data_lf != fresh},
                         {m.data: m.flags for m in synced["INBOX"]})

    def test_restored_backup_then_sync_directly(self):
        """`sync` (push first) on the restored DB uploads nothing twice."""
        self.seed_and_sync()
        backup = self.work / "backup.sqlite"
        shutil.copy2(self.state, backup)
        gone = self.changes_on_both_sides()
        self.run_ok("sync")
        synced = self.server_state()
        want = self.server_hashes()
        shutil.copy2(backup, self.state)
        # a dry run says so and changes nothing
        snap, db = tb.snapshot_tree(self.maildir), self.state.read_bytes()
        r = self.run_ok("sync", "--dry-run")
        self.assertIn("older than the Maildir", r.stderr)
        self.assertIn("dry run", r.stderr)
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)
        self.assertEqual(self.state.read_bytes(), db)
        self.assertFalse([p for p in os.listdir(self.work) if ".stale-" in p])
        r = self.run_ok("sync")
        self.assertIn("older than the Maildir", r.stderr)
        self.assertNoDuplicates()
        self.assertEqual(self.server_hashes(), want)
        self.assertEqual(self.local_hashes(), want)
        self.assertFalse(gone & set(self.local_hashes()))
        self.assertEqual(self.server_state(), synced)
        self.assertSynced(synced)

    def test_truncated_db_is_rematched_loudly(self):
        self.seed_and_sync()
        want = self.server_hashes()
        with open(self.state, "r+b") as f:
            f.truncate(0)
        r = self.run_ok("sync")
        self.assertIn("empty", r.stderr)
        self.assertIn("re-match", r.stderr)
        self.assertNoDuplicates()
        self.assertEqual(self.server_hashes(), want)
        self.assertEqual(self.local_hashes(), want)
        self.assertSynced()

    def test_unusable_db_advice_is_safe_to_follow(self):
        """A DB that is not SQLite stops the run (exit 5) with advice; done
        as it says (moved away), the next run re-matches, nothing doubled."""
        self.seed_and_sync()
        want = self.server_hashes()
        self.state.write_bytes(b"this is no database" * 100)
        r = self.pull(expect=5)
        self.assertIn("unusable", r.stderr)
        self.assertIn("move it away", r.stderr)
        self.assertIn("re-matches", r.stderr)
        self.assertIn("comes back", r.stderr)
        os.rename(self.state, str(self.state) + ".bad")
        r = self.run_ok("sync", "--json")
        self.assertIn("re-match", r.stderr)
        self.assertEqual(sum(f["fetched"] for f in r.json()["accounts"][0]["folders"]), 0, str(r))
        self.assertNoDuplicates()
        self.assertEqual(self.local_hashes(), want)
        self.assertEqual(self.server_hashes(), want)
        self.assertSynced()

    def test_missing_marker_is_an_upgrade_not_stale(self):
        self.seed_and_sync()
        (self.maildir / MARKER).unlink()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=44, size=800, start=200))
        r = self.run_ok("sync")
        self.assertNotIn("older than the Maildir", r.stderr)
        self.assertNotIn("re-match", r.stderr)
        self.assertEqual(os.listdir(self.work).count("state.sqlite"), 1)
        self.assertFalse([p for p in os.listdir(self.work) if ".stale-" in p])
        self.assertTrue((self.maildir / MARKER).is_file(), "marker not written")
        self.assertEqual((self.maildir / MARKER).stat().st_mode & 0o777, 0o600)
        self.assertNoDuplicates()
        self.assertSynced()

    def test_marker_is_no_folder_and_quiet_runs_leave_it(self):
        for layout in ("verbatim", "maildir++"):
            with self.subTest(layout=layout):
                shutil.rmtree(self.maildir, ignore_errors=True)
                for suffix in ("", "-wal", "-shm", ".checked", ".lastrun"):
                    if os.path.exists(str(self.state) + suffix):
                        os.unlink(str(self.state) + suffix)
                self.user = self.bed.fresh_user()
                self.write_config(layout=layout)
                self.seed_and_sync(n=3, layout=layout)
                st = (self.maildir / MARKER).stat()
                r = self.run_ok("sync", "--json")
                names = [f["name"] for f in r.json()["accounts"][0]["folders"]]
                self.assertEqual(names, ["INBOX"])
                self.assertEqual((self.maildir / MARKER).stat().st_ino, st.st_ino, "a quiet run rewrote it")
                self.assertEqual(self.server_state().keys(), {"INBOX"})

    def test_two_accounts_sharing_a_root_keep_their_own_marker(self):
        """Each account has its marker: alternating runs of two accounts
        on one Maildir root never take each other's DB for stale."""
        other = self.bed.fresh_user()
        with self.imap() as c:
            c.create_folder("Archive")
            c.append_many("Archive", tb.make_corpus(3, seed=46, size=800))
        keys = {"test": self.account_keys(folders="Archive"),
                "other": tb.account_keys(self.bed, other, self.maildir, self.work / "other.sqlite",
                                         folders="INBOX")}
        tb.write_config(self.config_path, keys)
        with self.bed.imap(other) as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=47, size=800))
        for i in range(2):
            for acct in ("test", "other"):
                with self.bed.imap(other if acct == "other" else self.user) as c:
                    c.append_many("INBOX" if acct == "other" else "Archive",
                                  tb.make_corpus(1, seed=48 + i, size=700, start=400 + i))
                r = self.run_ok("sync", acct)
                self.assertNotIn("state DB", r.stderr)
        self.assertEqual(sorted(p for p in os.listdir(self.maildir) if p.startswith(".mailsync")),
                         [".mailsync-state-other", ".mailsync-state-test"])
        self.assertEqual(len(tb.read_maildir(self.maildir)["Archive"]), 5)
        self.assertEqual(len(tb.read_maildir(self.maildir)["INBOX"]), 5)

    def test_killed_between_marker_and_db_is_trusted(self):
        """What a kill after the marker write and before the DB's commit
        leaves: an open marker one generation ahead of a DB that missed no
        change. Trusted: not moved aside, and what was deleted on one side
        only does not come back (a re-match would bring it back)."""
        self.seed_and_sync()
        ident, gen = self.marker()
        self.assertEqual(len((self.maildir / MARKER).read_text().split()), 4, "a finished run confirms")
        with self.imap() as c:
            msgs = c.messages("INBOX")
            c.expunge_uids("INBOX", [msgs[0].uid])
            server_gone = digest(msgs[0].data_lf)
        local = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.uniq)
        victim = next(m for m in local if digest(m.data) != server_gone)
        os.unlink(victim.path)
        want = self.server_hashes() - collections.Counter([digest(victim.data)])
        (self.maildir / MARKER).write_text("mailsync-state 1 %s %d open\n" % (ident, gen + 1))
        r = self.run_ok("sync")
        self.assertNotIn("older than the Maildir", r.stderr)
        self.assertEqual([p for p in os.listdir(self.work) if ".stale-" in p], [])
        self.assertNoDuplicates()
        self.assertEqual(self.local_hashes(), want)
        self.assertEqual(self.server_hashes(), want)
        self.assertEqual(self.marker(), (ident, gen + 2))
        self.assertEqual(len((self.maildir / MARKER).read_text().split()), 4)

    def test_confirmed_marker_one_ahead_falls_back_to_rematch(self):
        """A confirmed marker one generation ahead: the DB missed a run
        (a backup one run old). Treated as stale."""
        self.seed_and_sync()
        ident, gen = self.marker()
        (self.maildir / MARKER).write_text("mailsync-state 1 %s %d\n" % (ident, gen + 1))
        want = self.server_hashes()
        r = self.run_ok("sync")
        self.assertIn("older than the Maildir", r.stderr)
        self.assertNoDuplicates()
        self.assertEqual(self.local_hashes(), want)
        self.assertEqual(self.server_hashes(), want)
        self.assertGreater(self.marker()[1], gen + 1)

    def test_failed_marker_write_records_nothing(self):
        """The marker is written before the DB records a change: when it
        cannot be, the run records nothing and the next run is not fooled."""
        self.seed_and_sync()
        _, gen = self.marker()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=45, size=800, start=300))
        blocker = self.maildir / ".mailsync-state.tmp-test"
        blocker.mkdir()
        r = self.pull(expect=5)
        self.assertIn(".mailsync-state.tmp-test", r.stderr)
        self.assertEqual(self.marker()[1], gen)
        blocker.rmdir()
        r = self.run_ok("sync")
        self.assertNotIn("older than the Maildir", r.stderr)
        self.assertNoDuplicates()
        self.assertSynced()


if __name__ == "__main__":
    import unittest
    unittest.main()
