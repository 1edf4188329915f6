# SPDX-License-Identifier: MIT
"""test_pull.py: `mailsync pull` against a real Dovecot (the contract's
server -> local direction).

Checks byte-for-byte content (CRLF stored as LF), flag letters, file mtime =
INTERNALDATE, the verbatim folder layout (nested and non-ASCII names),
idempotence of a second run, incremental server changes in mirror and backup
mode, --dry-run, --json, local changes surviving a pull, the mass-deletion
guard, and file modes.
"""

import json
import os
import stat
import time
import unittest
from pathlib import Path

import testbed as tb


def seed_edge_cases(client, folder="INBOX"):
    """Messages that stress storage: no trailing newline, 8-bit UTF-8, header
    only, a big multipart, a bare message starting with a blank line."""
    msgs = [
        tb.SeedMessage(tb.make_message(900, kind="nonl", size=700), ("\\Seen",), 1600000001),
        tb.SeedMessage(tb.make_message(901, kind="8bit", size=3000), (), 1600000002),
        tb.SeedMessage(tb.make_message(902, kind="headeronly"), ("\\Flagged",), 1600000003),
        tb.SeedMessage(tb.make_message(903, kind="multipart", size=300000), ("\\Seen", "$Forwarded"),
                       1600000004),
        tb.SeedMessage(b"\r\nHeaderless body.\r\n", ("\\Draft",), 1600000005),
    ]
    return client.append_many(folder, msgs)


class PullTest(tb.BedTestCase):
    bed_options = {"pool": 30}

    def seed(self, per_folder=8, seed=1):
        with self.imap() as c:
            uids = tb.seed_sample(c, per_folder=per_folder, seed=seed)
            uids["INBOX"] += seed_edge_cases(c)
        return uids

    # -- first pull ------------------------------------------------------------

    def test_full_pull_matches_server(self):
        self.seed()
        self.pull()
        state = self.server_state()
        self.assertEqual(set(state), set(tb.SAMPLE_FOLDERS))
        self.assertSynced(state)
        # The verbatim layout of the contract, spelled out.
        for rel in ("INBOX", "Archive", "Archive/2024", "Thư đã gửi", "Work/Projects/mailsync"):
            self.assertTrue(tb.is_maildir(self.maildir / rel), "no Maildir at %s" % rel)
        self.assertEqual(tb.count_messages(self.maildir), sum(len(v) for v in state.values()))
        # File names: new/<uniq> without flags, cur/<uniq>:2,<letters>.
        for folder, msgs in tb.read_maildir(self.maildir).items():
            for m in msgs:
                if m.subdir == "cur":
                    self.assertIn(":2,", m.name, m.path)
                else:
                    self.assertEqual(m.letters, "", "flags on a file in new/: %s" % m.path)

    def test_file_and_directory_modes(self):
        self.seed(per_folder=2)
        self.pull()
        for dirpath, dirnames, filenames in os.walk(self.maildir):
            for d in dirnames:
                mode = stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode)
                self.assertEqual(mode & 0o077, 0, "directory %s has mode %o" % (d, mode))
            for f in filenames:
                mode = stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode)
                self.assertEqual(mode & 0o077, 0, "file %s has mode %o" % (f, mode))
        if self.state.exists():
            self.assertEqual(stat.S_IMODE(os.stat(self.state).st_mode) & 0o077, 0)

    def test_second_pull_changes_nothing(self):
        self.seed(per_folder=6)
        self.pull()
        before = tb.snapshot_tree(self.maildir)
        self.pull()
        after = tb.snapshot_tree(self.maildir)
        self.assertEqual(before, after, "a pull with nothing new touched the Maildir")
        self.assertSynced()

    # -- incremental -----------------------------------------------------------

    def change_server(self, uids):
        """New mail, flag changes and expunges behind mailsync's back.
        Returns the list of expunged (folder, data) pairs."""
        gone = []
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=9, start=500))
            c.append_many("Archive/2024", tb.make_corpus(2, seed=9, start=510))
            c.set_flags("INBOX", uids["INBOX"][:3], ["\\Seen", "\\Answered"], "+")
            c.set_flags("INBOX", uids["INBOX"][3:5], ["\\Seen"], "-")
            c.set_flags("Thư đã gửi", uids["Thư đã gửi"][:2], ["\\Flagged", "$Forwarded"], "+")
            c.set_flags("Archive", uids["Archive"][:1], ["\\Draft"], "")
            before = {f: {m.uid: m.data_lf for m in c.messages(f)} for f in ("Archive", "Work/Projects/mailsync")}
            for folder, victims in (("Archive", uids["Archive"][2:4]),
                                    ("Work/Projects/mailsync", uids["Work/Projects/mailsync"][-1:])):
                c.expunge_uids(folder, victims)
                gone += [(folder, before[folder][u]) for u in victims]
            c.create_folder("New Folder/Sub")
            c.append_many("New Folder/Sub", tb.make_corpus(2, seed=9, start=520))
        return gone

    def test_server_changes_applied_in_mirror_mode(self):
        uids = self.seed()
        self.pull()
        gone = self.change_server(uids)
        self.pull()
        state = self.server_state()
        self.assertIn("New Folder/Sub", state)
        self.assertSynced(state)
        local = tb.read_maildir(self.maildir)
        for folder, data in gone:
            self.assertNotIn(data, [m.data for m in local[folder]],
                             "message expunged on the server is still in %s" % folder)
        # And a further pull is a no-op.
        before = tb.snapshot_tree(self.maildir)
        self.pull()
        self.assertEqual(before, tb.snapshot_tree(self.maildir))

    def test_backup_mode_keeps_expunged_messages(self):
        self.write_config(mode="backup")
        uids = self.seed()
        self.pull()
        gone = self.change_server(uids)
        self.pull()
        state = self.server_state()
        self.assertSynced(state, allow_extra_messages=True)
        local = tb.read_maildir(self.maildir)
        server_data = {f: [m.data_lf for m in ms] for f, ms in state.items()}
        extras = sorted((f, m.data) for f, ms in local.items() for m in ms
                        if m.data not in server_data.get(f, []))
        self.assertEqual(extras, sorted(gone), "backup mode must keep exactly the expunged messages")

    def test_new_messages_only(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(4, seed=2))
        self.pull()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(4, seed=2, start=4))
        before = tb.snapshot_tree(self.maildir / "INBOX" / "cur")
        self.pull()
        self.assertSynced()
        after = tb.snapshot_tree(self.maildir / "INBOX" / "cur")
        for name, sig in before.items():       # old files untouched
            self.assertEqual(after.get(name), sig, name)

    # -- options ---------------------------------------------------------------

    def test_dry_run_changes_nothing(self):
        # Fresh account: a dry run writes no message.
        self.seed(per_folder=3)
        r = self.mailsync("--dry-run", "pull")
        self.assertEqual(r.code, 0, str(r))
        self.assertEqual(tb.count_messages(self.maildir), 0, "--dry-run delivered messages")
        # After a real pull: a dry run over server changes touches nothing,
        # and the real pull afterwards still applies everything.
        self.pull()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=4, start=700))
            inbox = [m.uid for m in c.messages("INBOX")]
            c.set_flags("INBOX", inbox[:2], ["\\Flagged"], "+")
            c.expunge_uids("INBOX", inbox[2:3])
        before = tb.snapshot_tree(self.maildir)
        r = self.mailsync("--dry-run", "pull")
        self.assertEqual(r.code, 0, str(r))
        self.assertEqual(before, tb.snapshot_tree(self.maildir), "--dry-run changed the Maildir")
        self.assertTrue(r.stdout.strip() or r.stderr.strip(), "--dry-run printed no plan")
        self.pull()
        self.assertSynced()

    def test_json_output(self):
        self.seed(per_folder=2)
        r = self.mailsync("--json", "pull")
        self.assertEqual(r.code, 0, str(r))
        try:
            obj = json.loads(r.stdout)
        except ValueError as e:
            self.fail("--json stdout is not one JSON object (%s):\n%s" % (e, r.stdout))
        self.assertIsInstance(obj, dict)
        text = json.dumps(obj)
        self.assertNotIn(self.user.password, text, "password in --json output")
        self.assertSynced()
        # Second run: still exactly one object.
        r = self.mailsync("--json", "pull")
        self.assertEqual(r.code, 0, str(r))
        self.assertIsInstance(json.loads(r.stdout), dict)

    def test_quiet_prints_nothing_on_success(self):
        self.seed(per_folder=1)
        r = self.mailsync("-q", "pull")
        self.assertEqual(r.code, 0, str(r))
        self.assertEqual(r.stdout.strip(), "", "-q printed to stdout")
        self.assertSynced()

    # -- local side ------------------------------------------------------------

    def test_local_changes_survive_pull(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(5, seed=3, flags=False))
        self.pull()
        server_before = self.server_state()
        inbox = self.maildir / "INBOX"
        # A local flag change (as a MUA would do it) and a new local message.
        victim = tb.read_maildir(self.maildir)["INBOX"][0]
        flagged = inbox / "cur" / (victim.uniq + ":2,FS")
        os.rename(victim.path, flagged)
        draft = b"From: me@example.org\nSubject: local draft\n\nnot pushed yet\n"
        (inbox / "new" / "1700000000.M1P1.localhost").write_bytes(draft)
        self.pull()
        self.assertTrue(flagged.exists(), "pull reverted a local flag change")
        local = tb.read_maildir(self.maildir)["INBOX"]
        self.assertEqual([m.data for m in local].count(draft), 1,
                         "pull removed (or copied) a local message not yet pushed")
        self.assertEqual(len(local), 6)
        self.assertEqual(server_before, self.server_state(), "pull changed the server")

    def test_mass_deletion_guard(self):
        with self.imap() as c:
            uids = c.append_many("INBOX", tb.make_corpus(30, seed=5, size=800))
        self.pull()
        with self.imap() as c:
            c.expunge_uids("INBOX", uids[:25])
        before = tb.snapshot_tree(self.maildir)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 1, "deleting 25 of 30 must need --force\n%s" % r)
        self.assertEqual(before, tb.snapshot_tree(self.maildir), "the guarded folder was touched")
        self.assertTrue(r.stderr.strip(), "the guard did not say why")
        self.run_ok("--force", "pull")
        self.assertSynced()

    def test_empty_server_folder_created_locally(self):
        with self.imap() as c:
            c.create_folder("Empty")
        self.pull()
        self.assertTrue(tb.is_maildir(self.maildir / "Empty"))
        self.assertTrue(tb.is_maildir(self.maildir / "INBOX"))


    def test_logout_answer_is_not_waited_for(self):
        """The run ends once LOGOUT is sent: a goodbye that does not come
        costs no wait (it cost up to 10 s), and over a network no round
        trip. The server still takes the LOGOUT: over a slow link, where
        the client has closed before the goodbye could arrive, Dovecot logs
        the session as logged out."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=41, size=(500, 900)))
        self.pull()

        # The LOGOUT is held back: no goodbye, and the connection stays open.
        px = tb.Proxy(self.bed.imap_port, stall_on=(b" LOGOUT\r\n", 1)).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port, timeout="30")
        r = self.pull()
        # (the proxy may see the LOGOUT only after the run has ended)
        self.assertTrue(px.stalled.wait(5), "the LOGOUT never went out")
        self.assertLess(r.seconds, 5.0, "waited for the goodbye\n%s" % r)

        # 0.3 s each way: the goodbye comes 0.6 s after the LOGOUT left.
        slow = tb.Proxy(self.bed.imap_port, latency=0.3).start()
        self.addCleanup(slow.stop)
        self.write_config(tls="none", port=slow.port, timeout="30")
        log_before = len(self.bed.log_text())
        self.pull()
        deadline = time.monotonic() + 10

        def logged_out():
            return any("imap(%s)" % self.user.name in line and "Logged out" in line
                       for line in self.bed.log_text()[log_before:].splitlines())
        while not logged_out():
            self.assertLess(time.monotonic(), deadline, self.bed.log_text()[log_before:])
            time.sleep(0.05)
        self.assertSynced()


class FolderSelectionTest(tb.BedTestCase):
    """folders = patterns, --folder, and the maildir++ layout."""
    bed_options = {"pool": 10}

    def setUp(self):
        super().setUp()
        with self.imap() as c:
            for f in ("Spam", "Archive", "Archive/2024", "Archive/2023", "Work"):
                c.create_folder(f)
            for i, f in enumerate(("INBOX", "Spam", "Archive", "Archive/2024", "Archive/2023", "Work")):
                c.append_many(f, tb.make_corpus(2, seed=30 + i, start=10 * i))

    def test_folder_patterns_exclude(self):
        self.write_config(folders="* !Spam !Archive/2023")
        self.pull()
        state = self.server_state()
        kept = [f for f in state if f not in ("Spam", "Archive/2023")]
        self.assertSynced(state, folders=kept)
        local = sorted(tb.read_maildir(self.maildir))
        self.assertNotIn("Spam", local)
        self.assertNotIn("Archive/2023", local)
        self.assertFalse((self.maildir / "Spam").exists())

    def test_folder_option_limits_the_run(self):
        self.pull("--folder", "Archive/2024")
        local = tb.read_maildir(self.maildir)
        self.assertEqual(sorted(f for f, msgs in local.items() if msgs), ["Archive/2024"])
        self.assertSynced(folders=["Archive/2024"])

    def test_layout_maildirpp(self):
        self.write_config(layout="maildir++")
        self.pull()
        self.assertTrue(tb.is_maildir(self.maildir), "INBOX must be the root with maildir++")
        self.assertTrue(tb.is_maildir(self.maildir / ".Archive.2024"))
        self.assertSynced(layout="maildir++")


class IdentityTest(tb.BedTestCase):
    """Lost state DB and UIDVALIDITY change: re-match, never re-download or
    duplicate (contract: "re-matches existing messages by identity")."""
    bed_options = {"pool": 10}

    def seed(self):
        msgs = tb.make_corpus(12, seed=40, size=(1000, 8000))
        with self.imap() as c:
            c.create_folder("Archive/2024")
            c.append_many("INBOX", msgs[:6])
            c.append_many("Archive/2024", msgs[6:])
        return msgs

    def file_set(self):
        return {(m.folder, m.data, os.stat(m.path).st_ino) for ms in tb.read_maildir(self.maildir).values()
                for m in ms}

    def test_lost_state_db(self):
        self.seed()
        self.pull()
        before = self.file_set()
        for suffix in ("", "-wal", "-shm", "-journal"):
            p = Path(str(self.state) + suffix)
            if p.exists():
                p.unlink()
        self.pull()
        self.assertSynced()
        self.assertEqual(before, self.file_set(), "messages re-downloaded after the state DB was lost")

    def test_uidvalidity_change(self):
        msgs = self.seed()
        self.pull()
        with self.imap() as c:
            v1 = c.status_of("Archive/2024")["UIDVALIDITY"]
            c.delete_folder("Archive/2024")
            c.create_folder("Archive/2024")
            c.append_many("Archive/2024", msgs[6:])
            self.assertNotEqual(c.status_of("Archive/2024")["UIDVALIDITY"], v1)
        before = self.file_set()
        r = self.mailsync("pull")
        self.assertIn(r.code, (0, 1), str(r))
        self.assertSynced()
        self.assertEqual(before, self.file_set(), "messages re-downloaded after UIDVALIDITY changed")


if __name__ == "__main__":
    unittest.main()
