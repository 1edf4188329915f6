# SPDX-License-Identifier: MIT
"""test_trash.py: `trash = Trash` on a server without MOVE, where a local
deletion reaches the server as RFC 6851's fallback (UID COPY to Trash, then
UID STORE +FLAGS \\Deleted, then UID EXPUNGE). A run killed or cut anywhere
in between, any number of times in a row, must leave exactly one copy of
each deleted message in Trash (on the server and, after a sync, locally)
and none in the source folder, and lose nothing else. Without UIDPLUS
either, a deletion only flags the message: it never reaches Trash, however
often the run is killed.
"""

import collections
import hashlib
import os
import re
import signal
import time

import testbed as tb


def digest(data):
    return hashlib.sha256(data).hexdigest()


def server_hashes(c, folder):
    """Counter of content hashes (LF line ends) of a server folder."""
    return collections.Counter(digest(m.data_lf) for m in c.messages(folder))


def local_hashes(root, folder):
    return collections.Counter(digest(m.data) for m in tb.read_maildir(root).get(folder, []))


class TrashCase(tb.BedTestCase):
    """Nine messages in INBOX (one without Message-ID, two identical),
    pulled with INBOX and Trash; five of them deleted locally."""

    def setUp(self):
        super().setUp()
        corpus = [m.data for m in tb.make_corpus(6, seed=41, size=(500, 1500), flags=False)]
        # one without Message-ID, and two identical messages (both deleted:
        # each must get its own copy in Trash)
        no_id = re.sub(rb"(?im)^Message-ID:[^\r\n]*\r\n", b"", tb.make_message(900, size=700))
        twin = tb.make_message(901, size=800)
        corpus += [no_id, twin, twin]
        with self.imap() as c:
            c.create_folder("Trash")
            for data in corpus:
                c.append_message("INBOX", data)
        self.write_config(trash="Trash")
        self.pull()
        files = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.uniq)
        gone = [m for m in files if m.data in (no_id.replace(b"\r\n", b"\n"), twin.replace(b"\r\n", b"\n"))]
        gone += [m for m in files if m not in gone][:2]
        self.assertEqual(len(gone), 5)
        for m in gone:
            os.unlink(m.path)
        self.gone = collections.Counter(digest(m.data) for m in gone)
        self.kept = collections.Counter(digest(m.data) for m in files if m not in gone)

    def interrupted_push(self, cmd="push", stall_on=None, drop=None, cut=False):
        """Run cmd through a proxy and end it at a known point: SIGKILL once
        the client sent stall_on=(pattern, n) (held back from the server),
        or once the server's answer line matching drop was swallowed (the
        command was carried out, the client never hears so); with cut the
        connection is closed there instead of killing the process."""
        seen = []

        def swallow(line):
            if drop and re.search(drop, line):
                seen.append(line)
                if cut:
                    raise OSError("cut")  # the proxy shuts both sides down
                return []
            return [line]
        px = tb.Proxy(self.bed.imap_port, stall_on=stall_on,
                      rewrite_down=tb.line_rewriter(swallow) if drop else None).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port, trash="Trash")
        p = tb.start_mailsync([cmd], config=self.config_path, workdir=self.work)
        try:
            reached = px.stalled.wait if stall_on else (lambda t: tb.wait_for(lambda: seen, timeout=t))
            self.assertTrue(reached(60), "interruption point never reached")
            if not cut:
                time.sleep(0.3)
                self.assertIsNone(p.poll(), "%s ended before the interruption point" % cmd)
                os.kill(p.pid, signal.SIGKILL)
        finally:
            res = tb.finish_mailsync(p)
        if cut:
            self.assertEqual(res.code, 4, "a cut connection is a network failure: %s" % res)
        else:
            self.assertEqual(res.code, -signal.SIGKILL, "not killed: %s" % res)
        px.stop()
        self.write_config(trash="Trash")
        return res

    def assert_trashed_once(self):
        """Trash holds exactly one copy of each deleted message, INBOX none
        of them and everything else once, on the server and (after a sync
        that pulls Trash too) locally."""
        with self.imap() as c:
            self.assertEqual(server_hashes(c, "Trash"), self.gone)
            self.assertEqual(server_hashes(c, "INBOX"), self.kept)
        self.run_ok("sync")
        self.assertEqual(local_hashes(self.maildir, "Trash"), self.gone)
        self.assertEqual(local_hashes(self.maildir, "INBOX"), self.kept)
        self.assertSynced()
        self.assertIn("0 uploaded, 0 flag changes, 0 deleted", self.run_ok("push").stdout)


class TrashWithoutMoveTest(TrashCase):
    bed_options = {"pool": 12, "hide_capabilities": ("MOVE",)}

    def test_uninterrupted(self):
        r = self.run_ok("push")
        self.assertIn("5 deleted", r.stdout)
        self.assert_trashed_once()

    def test_kill_before_copy(self):
        """Journalled, but the COPY never reached the server: copied once."""
        self.interrupted_push(stall_on=(b"UID COPY", 1))
        with self.imap() as c:
            self.assertEqual(server_hashes(c, "Trash"), collections.Counter())
        self.run_ok("push")
        self.assert_trashed_once()

    def test_kill_after_copy_answered(self):
        self.interrupted_push(stall_on=(b"UID STORE", 1))
        with self.imap() as c:
            self.assertEqual(server_hashes(c, "Trash"), self.gone, "the kill came before the COPY")
        self.run_ok("push")
        self.assert_trashed_once()

    def test_kill_before_expunge(self):
        self.interrupted_push(stall_on=(b"UID EXPUNGE", 1))
        self.run_ok("push")
        self.assert_trashed_once()

    def test_pull_between(self):
        """A pull after the killed run brings the copies into the local
        Trash and nothing back into INBOX; the next push does not copy."""
        self.interrupted_push(stall_on=(b"UID EXPUNGE", 1))
        self.pull()
        self.assertEqual(local_hashes(self.maildir, "Trash"), self.gone)
        self.assertEqual(local_hashes(self.maildir, "INBOX"), self.kept)
        self.run_ok("push")
        self.assert_trashed_once()

    def test_kill_before_copy_answer(self):
        """The COPY is carried out but its answer never arrives."""
        self.interrupted_push(drop=rb"^\S+ OK \[COPYUID ")
        with self.imap() as c:
            self.assertEqual(server_hashes(c, "Trash"), self.gone, "the COPY was not carried out")
        self.run_ok("push")
        self.assert_trashed_once()

    def test_cut_before_copy_answer(self):
        """As above, but the connection is cut (exit 4) and sync goes on."""
        self.interrupted_push(cmd="sync", drop=rb"^\S+ OK \[COPYUID ", cut=True)
        self.run_ok("sync")
        self.assert_trashed_once()

    def test_three_kills_in_a_row(self):
        """Killed at the COPY's answer, then at the STORE, then at the
        EXPUNGE: each run gets one step further, none copies again."""
        self.interrupted_push(drop=rb"^\S+ OK \[COPYUID ")
        self.interrupted_push(cmd="sync", stall_on=(b"UID STORE", 1))
        self.interrupted_push(stall_on=(b"UID EXPUNGE", 1))
        with self.imap() as c:
            self.assertEqual(server_hashes(c, "Trash"), self.gone)
        self.run_ok("sync")
        self.assert_trashed_once()

    def test_copy_lost_from_trash_is_copied_again(self):
        """Killed after the COPY and the STORE, and the copies were expunged
        from Trash meanwhile (another client): the next run copies again
        rather than lose the messages, without the \\Deleted of the first
        run's STORE."""
        self.interrupted_push(stall_on=(b"UID EXPUNGE", 1))
        with self.imap() as c:
            self.assertTrue(all("\\Deleted" in m.flags for m in c.messages("INBOX")
                                if digest(m.data_lf) in self.gone))
            c.expunge_uids("Trash", [m.uid for m in c.messages("Trash")])
        self.run_ok("push")
        with self.imap() as c:
            self.assertEqual([m.flags for m in c.messages("Trash") if "\\Deleted" in m.flags], [])
        self.assert_trashed_once()


class TrashGainsMoveTest(TrashCase):
    """A run without MOVE is killed after its COPY; the server offers MOVE
    at the next run: the copies already in Trash are not moved there
    again."""
    bed_options = {"pool": 2, "hide_capabilities": ("MOVE",)}

    def test_kill_after_copy_then_move(self):
        self.interrupted_push(stall_on=(b"UID STORE", 1))
        self.bed.restart(hide_capabilities=())
        self.addCleanup(self.bed.restart, hide_capabilities=("MOVE",))
        with self.imap() as c:
            self.assertIn("MOVE", c.capability_list())
        self.run_ok("push")
        self.assert_trashed_once()


class TrashWithoutUidplusTest(tb.BedTestCase):
    """Neither MOVE nor UIDPLUS: a deletion only flags the message \\Deleted
    in the source; killed runs and re-runs never put it into Trash nor
    bring it back."""
    bed_options = {"pool": 4, "hide_capabilities": ("MOVE", "UIDPLUS")}

    def test_killed_runs_only_flag(self):
        corpus = tb.make_corpus(5, seed=43, size=(500, 1500), flags=False)
        with self.imap() as c:
            c.create_folder("Trash")
            c.append_many("INBOX", corpus)
        self.write_config(trash="Trash")
        self.pull()
        files = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.uniq)
        gone = files[:2]
        for m in gone:
            os.unlink(m.path)
        gone_h = collections.Counter(digest(m.data) for m in gone)
        for _ in range(2):
            # killed once its STORE went through, before anything is recorded
            px = tb.Proxy(self.bed.imap_port, stall_on=(b"LOGOUT", 1)).start()
            self.addCleanup(px.stop)
            self.write_config(tls="none", port=px.port, trash="Trash", folders="INBOX")
            p = tb.start_mailsync(["push"], config=self.config_path, workdir=self.work)
            try:
                self.assertTrue(px.stalled.wait(60), "kill point never reached")
                time.sleep(0.3)
                os.kill(p.pid, signal.SIGKILL)
            finally:
                tb.finish_mailsync(p)
            px.stop()
            with self.imap() as c:
                self.assertEqual(collections.Counter(digest(m.data_lf) for m in c.messages("INBOX")
                                                     if "\\Deleted" in m.flags), gone_h, "killed before the STORE")
        self.write_config(trash="Trash")
        self.run_ok("sync")
        self.run_ok("sync")
        with self.imap() as c:
            self.assertEqual(server_hashes(c, "Trash"), collections.Counter())
            inbox = c.messages("INBOX")
            self.assertEqual(collections.Counter(digest(m.data_lf) for m in inbox),
                             collections.Counter(digest(m.data_lf) for m in corpus))
            self.assertEqual(collections.Counter(digest(m.data_lf) for m in inbox if "\\Deleted" in m.flags),
                             gone_h)
        self.assertEqual(local_hashes(self.maildir, "Trash"), collections.Counter())
        self.assertEqual(local_hashes(self.maildir, "INBOX"),
                         collections.Counter(digest(m.data) for m in files[2:]))


class TrashInOneSyncTest(tb.BedTestCase):
    """With MOVE: one `sync` moves the local deletions into the server's
    trash and brings them into the local trash too, whether the trash
    folder sorts after the source folder (Trash) or before it (Bin), and
    although the STATUS taken with the LIST showed the trash unchanged."""
    bed_options = {"pool": 4}

    def one_sync(self, trash):
        corpus = tb.make_corpus(6, seed=44, size=(500, 1500), flags=False)
        with self.imap() as c:
            c.create_folder(trash)
            c.append_many("INBOX", corpus[:5])
            c.append_message(trash, corpus[5].data)
        self.write_config(trash=trash)
        self.run_ok("sync")
        files = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.uniq)
        os.unlink(files[0].path)
        r = self.run_ok("sync")
        self.assertIn("1 deleted", r.stdout)
        want = collections.Counter([digest(files[0].data), digest(corpus[5].data.replace(b"\r\n", b"\n"))])
        with self.imap() as c:
            self.assertEqual(server_hashes(c, trash), want)
        self.assertEqual(local_hashes(self.maildir, trash), want, "the same sync brings the move down")
        self.assertEqual(local_hashes(self.maildir, "INBOX"),
                         collections.Counter(digest(m.data) for m in files[1:]))
        self.assertSynced()

    def test_trash_after_the_source(self):
        self.one_sync("Trash")

    def test_trash_before_the_source(self):
        self.one_sync("Bin")


if __name__ == "__main__":
    import unittest
    unittest.main()
