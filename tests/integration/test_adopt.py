# SPDX-License-Identifier: MIT
"""test_adopt.py: a Maildir another tool filled (mbsync 1.4 from Debian's
isync, mbsync 1.5 as its sources write one (fill_like_mbsync15), getmail,
fetchmail, an older mailsync whose state DB is gone) is
adopted by the first run with a fresh state DB: no message body is
downloaded or uploaded, no server folder is created for a directory that
is really a server folder, every local file keeps its inode, and both
sides hold the same messages, once each.

Bodies transferred are counted on the wire: the account talks to Dovecot
through a testbed.Proxy (tls none, record=True); the BODY[] literals in
the server's answers and the APPEND commands sent are counted exactly.
"""

import collections
import os
import re
import sqlite3
import subprocess
import unittest
from pathlib import Path

import testbed as tb

UTF7_FOLDER = "Thư mục"
UTF7_RAW = "Th&AbA- m&HuU-c"  # how the server (and mbsync 1.4) names it

# Header fields other tools add (sync/message.h): left out when contents
# are compared across the two sides.
TOOL_FIELD = re.compile(rb"^(X-TUID|X-OfflineIMAP):", re.I)
LEADING_FIELD = re.compile(rb"^(Return-Path|Delivered-To|Received|X-Original-To):", re.I)


def strip_tool_fields(data_lf):
    """The message without the fields other tools add: X-TUID anywhere in
    the header, and the leading Return-Path/Delivered-To/Received run."""
    head, sep, body = data_lf.partition(b"\n\n")
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    out, leading = [], True
    for f in fields:
        if TOOL_FIELD.match(f[0]):
            continue
        if leading and LEADING_FIELD.match(f[0]):
            continue
        leading = False
        out.extend(f)
    return b"\n".join(out) + sep + body


def body_bytes_down(px):
    """Bytes of BODY[] literals the server sent (whole message bodies)."""
    return sum(int(n) for n in re.findall(rb"BODY\[\] \{(\d+)\}", bytes(px.downstream)))


def appends_sent(px):
    return len(re.findall(rb"^\S+ APPEND ", bytes(px.upstream), re.M | re.I))


def message_inodes(root):
    """{inode: folder} of every message file below root."""
    return {os.stat(m.path).st_ino: f for f, msgs in tb.read_maildir(root).items() for m in msgs}


class AdoptTestCase(tb.BedTestCase):
    bed_options = {"pool": 24}

    # -- helpers ----------------------------------------------------------

    def seed(self, extra=None):
        """INBOX (8), Projects/2026 (4), Thư mục (3), flags varied, one
        keyword on the server."""
        with self.imap() as c:
            c.create_folder("Projects/2026")
            c.create_folder(UTF7_FOLDER)
            c.append_many("INBOX", tb.make_corpus(8, seed=61, size=(600, 3000)))
            c.append_many("Projects/2026", tb.make_corpus(4, seed=62, size=(600, 3000)))
            c.append_many(UTF7_FOLDER, tb.make_corpus(3, seed=63, size=(600, 3000)))
            uid = c.messages("INBOX")[0].uid
            c.set_flags("INBOX", [uid], ["$Label1"])
            if extra:
                extra(c)

    def run_mbsync(self):
        """Fill self.maildir with mbsync 1.4 (SubFolders Verbatim, the raw
        UTF-7 folder names it writes)."""
        rc = self.work / "mbsyncrc"
        rc.write_text("IMAPAccount a\nHost 127.0.0.1\nPort %d\nUser %s\nPass %s\nSSLType None\n\n"
                      "IMAPStore remote\nAccount a\n\n"
                      "MaildirStore local\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
                      "Channel a\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\nSync All\nSyncState *\n"
                      % (self.bed.imap_port, self.user.name, self.user.password, self.maildir, self.maildir))
        os.chmod(rc, 0o600)
        self.maildir.mkdir(exist_ok=True)
        r = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue((self.maildir / UTF7_RAW / "cur").is_dir(), os.listdir(self.maildir))
        self.assertTrue(list(self.maildir.glob("INBOX/cur/*,U=*")), "not an mbsync Maildir")

    def via_proxy(self):
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        return px

    def server_folders(self):
        with self.imap() as c:
            return sorted(c.server_state())

    def assertSameMessages(self, check_flags=True):
        """Each folder holds the same messages on both sides, once each,
        compared without the fields other tools add; with the same flags."""
        server = self.server_state()
        local = tb.read_maildir(self.maildir)
        self.assertEqual(sorted(f for f in local if local[f]), sorted(f for f in server if server[f]))
        for folder, smsgs in server.items():
            want = collections.Counter(strip_tool_fields(m.data_lf) for m in smsgs)
            have = collections.Counter(strip_tool_fields(m.data) for m in local.get(folder, []))
            self.assertEqual(have, want, folder)
            self.assertEqual(len(local.get(folder, [])), len(smsgs), folder)
            if check_flags:
                sf = sorted((strip_tool_fields(m.data_lf), m.letters) for m in smsgs)
                lf = sorted((strip_tool_fields(m.data), m.letters) for m in local.get(folder, []))
                self.assertEqual(lf, sf, folder)

    def state_rows(self):
        """(size, message_id) of every message row of the state DB."""
        db = sqlite3.connect(str(self.state))
        try:
            return db.execute("SELECT size, message_id FROM messages").fetchall()
        finally:
            db.close()

    def assertNothingTransferred(self, px, r):
        self.assertEqual(body_bytes_down(px), 0, "message bodies were downloaded\n%s" % r)
        self.assertEqual(appends_sent(px), 0, "messages were uploaded\n%s" % r)
        folders = r.json()["accounts"][0]["folders"]
        self.assertEqual(sum(f["fetched"] for f in folders), 0, str(r))
        self.assertEqual(sum(f["uploaded"] for f in folders), 0, str(r))


def mbsync15_placeholder(data_lf, size, tuid):
    """The placeholder mbsync 1.5 stores for a message over MaxSize
    (sync_msg_cvt.c, copy_msg_convert with vars->minimal): the header as
    it is, "[placeholder] " put before the Subject's value (or a
    "Subject: [placeholder] (No Subject)" field added), X-TUID in place of
    the first X-TUID field or at the end of the header, then the note
    "Having a size of N, this message is over the MaxSize limit. ..." and,
    for a message flagged at the source (a placeholder since 1.5), "The
    original message is flagged as important." (the placeholder itself is
    not flagged: sync.c drops F_FLAGGED for it)."""
    head = data_lf.partition(b"\n\n")[0].split(b"\n")
    head = [re.sub(rb"^(subject:) ?", rb"\1 [placeholder] ", f, flags=re.I) for f in head]
    head.append(b"X-TUID: " + tuid)
    sz = b"%dKiB" % (size >> 10) if size < 1024000 else b"%.1fMiB" % (size / 1048576.0)
    note = (b"Having a size of " + sz + b", this message is over the MaxSize limit.\n"
            b"Flag it and sync again (Sync mode Upgrade) to fetch its real contents.\n"
            b"\nThe original message is flagged as important.\n")
    return b"\n".join(head) + b"\n\n" + note


def with_tuid(data_lf, tuid):
    """A message as mbsync stores it: X-TUID added at the end of the header
    (sync_msg_cvt.c; no X-TUID in the server's messages here)."""
    head, _, body = data_lf.partition(b"\n\n")
    return head + b"\nX-TUID: " + tuid + b"\n\n" + body


class MbsyncTest(AdoptTestCase):

    def test_sync_adopts_mbsync_maildir(self):
        self.seed()
        self.run_mbsync()
        folders = self.server_folders()
        inodes = message_inodes(self.maildir)
        self.assertEqual(len(inodes), 15)
        px = self.via_proxy()
        r = self.run_ok("sync", "--json", "-v")
        self.assertNothingTransferred(px, r)
        self.assertLess(px.bytes_up, 8000, "more sent than commands")
        self.assertEqual(self.server_folders(), folders, "a server folder was created")
        self.assertNotIn(b"CREATE", bytes(px.upstream).upper())
        # the sizes without X-TUID pair everything: no second FETCH of Date/From
        self.assertNotIn(b"(DATE FROM)", bytes(px.upstream).upper())
        self.assertIn("renamed", r.stderr)
        self.assertFalse((self.maildir / UTF7_RAW).exists())
        # every file kept (same inodes, in the folder of the same name)
        self.assertEqual(message_inodes(self.maildir), {i: f if f != UTF7_RAW else UTF7_FOLDER
                                                        for i, f in inodes.items()})
        self.assertSameMessages()
        # every pair recorded with the server's size and the Message-ID
        rows = self.state_rows()
        self.assertEqual(len(rows), 15)
        self.assertEqual([x for x in rows if not x[0] or not x[1]], [])
        with self.imap() as c:
            self.assertIn("$Label1", c.messages("INBOX")[0].flags)
        # mbsync's own files are neither messages nor folders
        self.assertTrue((self.maildir / "INBOX" / ".mbsyncstate").exists())
        # and the next sync does nothing
        snap = tb.snapshot_tree(self.maildir)
        r = self.run_ok("sync", "--json")
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)
        f = r.json()["accounts"][0]["folders"]
        self.assertEqual([(x["fetched"], x["uploaded"], x["flags_changed"], x["flags_pushed"]) for x in f],
                         [(0, 0, 0, 0)] * len(f), str(r))
        self.assertEqual(self.server_folders(), folders)

    def test_pull_then_push_and_dry_run(self):
        self.seed()
        self.run_mbsync()
        folders = self.server_folders()
        inodes = set(message_inodes(self.maildir))
        snap = tb.snapshot_tree(self.maildir)
        r = self.run_ok("sync", "--dry-run")
        self.assertNotIn("would fetch", r.stdout)
        self.assertNotIn("would upload", r.stdout)
        self.assertNotIn("would create", r.stdout)
        self.assertIn("would rename", r.stderr)
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)
        px = self.via_proxy()
        r = self.run_ok("pull", "--json")
        self.assertNothingTransferred(px, r)
        r = self.run_ok("push", "--json")
        self.assertNothingTransferred(px, r)
        self.assertEqual(self.server_folders(), folders)
        self.assertEqual(set(message_inodes(self.maildir)), inodes)
        self.assertSameMessages()

    def test_raw_and_own_folder_both_present_are_left_alone(self):
        """mbsync's raw-named directory and mailsync's own both exist: no
        guess (a warning, both stay), and still no server folder made."""
        self.seed()
        self.run_mbsync()
        own = self.maildir / UTF7_FOLDER
        for sub in ("cur", "new", "tmp"):
            (own / sub).mkdir(parents=True)
        raw_files = sorted(os.listdir(self.maildir / UTF7_RAW / "cur")) + sorted(
            os.listdir(self.maildir / UTF7_RAW / "new"))
        folders = self.server_folders()
        r = self.run_ok("sync")
        self.assertIn("leaving both", r.stderr)
        self.assertEqual(self.server_folders(), folders)
        self.assertEqual(self.server_count(UTF7_FOLDER), 3)
        self.assertEqual(sorted(os.listdir(self.maildir / UTF7_RAW / "cur")) + sorted(
            os.listdir(self.maildir / UTF7_RAW / "new")), raw_files)

    def test_raw_path_that_is_another_folders_own_is_left_alone(self):
        """A server folder really named "Th&AbA- m&HuU-c" (made by a tool
        that took the raw name for a UTF-8 one) owns that directory: it is
        not taken for "Thư mục"."""
        def extra(c):
            c.create_folder(UTF7_RAW)
            c.append_many(UTF7_RAW, tb.make_corpus(2, seed=65, size=(600, 900)))
        self.seed(extra)
        self.run_ok("sync", "--folder", UTF7_RAW)
        self.assertTrue((self.maildir / UTF7_RAW / "cur").is_dir())
        self.assertFalse((self.maildir / UTF7_FOLDER).exists())
        r = self.run_ok("sync")
        self.assertNotIn("renamed", r.stderr)
        self.assertNotIn("leaving both", r.stderr)
        self.assertEqual(self.server_count(UTF7_FOLDER), 3)
        self.assertEqual(self.server_count(UTF7_RAW), 2)
        self.assertSynced()

    def test_flags_changed_on_either_side_after_mbsync_are_merged(self):
        """Local and server flag changes made after mbsync's last run: a
        sync keeps both (the union); nothing is taken away."""
        self.seed()
        self.run_mbsync()
        with self.imap() as c:
            msgs = c.messages("INBOX")
            server_side = msgs[1]
            c.set_flags("INBOX", [server_side.uid], ["\\Flagged"])
        local = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.name)
        mine = next(m for m in local if "R" not in m.letters and
                    strip_tool_fields(m.data) != strip_tool_fields(server_side.data_lf))
        os.rename(mine.path, os.path.join(self.maildir, "INBOX", "cur",
                                          "%s:2,%s" % (mine.uniq, "".join(sorted(set(mine.letters) | {"R"})))))
        px = self.via_proxy()
        r = self.run_ok("sync", "--json")
        self.assertNothingTransferred(px, r)
        with self.imap() as c:
            now = {strip_tool_fields(m.data_lf): m for m in c.messages("INBOX")}
        self.assertIn("\\Flagged", now[strip_tool_fields(server_side.data_lf)].flags)
        self.assertIn("\\Answered", now[strip_tool_fields(mine.data)].flags)
        for m in tb.read_maildir(self.maildir)["INBOX"]:
            if strip_tool_fields(m.data) == strip_tool_fields(server_side.data_lf):
                self.assertIn("F", m.letters)
        self.assertSameMessages()

    def test_no_message_id_and_identical_duplicates(self):
        """Two identical messages on the server (so two identical files),
        two identical ones without Message-ID and one more without: each
        paired 1:1, nothing doubled on either side, nothing uploaded."""
        dup = tb.make_message(900, size=1500, seed=64)
        noid = b"From: a@x\r\nSubject: no id\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nsame body\r\n"
        other = b"From: a@x\r\nSubject: other\r\n\r\nanother body\r\n"

        def extra(c):
            for data in (dup, dup, noid, noid, other):
                c.append_message("INBOX", data, ("\\Seen",), 1700000000)
        self.seed(extra)
        self.run_mbsync()
        inodes = set(message_inodes(self.maildir))
        px = self.via_proxy()
        r = self.run_ok("sync", "--json", "-v")
        self.assertEqual(appends_sent(px), 0, r)
        # the Message-ID pairs cost nothing; the three without one are
        # compared by content when downloaded, and adopted
        self.assertEqual(body_bytes_down(px), 2 * len(noid) + len(other), r)
        self.assertEqual(len(re.findall(r"adopted, not downloaded again", r.stderr)), 3, r.stderr)
        self.assertEqual(set(message_inodes(self.maildir)), inodes)
        self.assertSameMessages()
        self.assertEqual(self.server_count("INBOX"), 8 + 5)
        rows = self.state_rows()
        self.assertEqual(len(rows), 15 + 5)
        self.assertEqual([x for x in rows if not x[0]], [])
        self.assertEqual(sum(1 for x in rows if x[1] is None), 3)

    def fill_like_mbsync15(self, big_uid):
        """The Maildir mbsync 1.5 leaves (SubFolders Verbatim, SyncState *,
        MaxSize smaller than the message big_uid of INBOX), built here as
        isync 1.5.0's sources write it, since Debian ships 1.4.4:
          - folder directories named in UTF-8 ("Thư mục"): 1.5 decodes
            modified UTF-7 (NEWS 1.5.0 "Added support for IMAP mailbox
            names with non-ASCII characters"; drv_imap.c, imap_utf7.c);
            1.4 wrote the raw "Th&AbA- m&HuU-c" (MbsyncTest);
          - file names "<time>.<pid>_<n>.<host>,U=<uid>:2,<flags>", in cur/
            when seen, else new/ with ":2," too (drv_maildir.c,
            maildir_store_msg, maildir_make_flags);
          - ".uidvalidity" ("<uidvalidity>\\n<next uid>\\n") in each folder
            (drv_maildir.c, maildir_uidval_lock / maildir_store_uidval);
          - ".mbsyncstate" in each folder (SyncState *; sync_state.c: the
            FarUidValidity/NearUidValidity/MaxPulledUid/MaxPushedUid lines,
            then "<far uid> <near uid> <status><flags>", where ">" marks
            the near copy as a placeholder), with ".mbsyncstate.lock" and
            a ".mbsyncstate.journal" (JOURNAL_VERSION "5") an interrupted
            run leaves;
          - X-TUID in every stored message (sync_msg_cvt.c);
          - the message over MaxSize stored as a placeholder
            (mbsync15_placeholder), flagged at the source: 1.5 NEWS
            "Placeholders will be now created for messages exceeding
            MaxSize even if they are flagged on the source side".
        Returns the placeholder's path."""
        placeholder = None
        n = 0
        for folder, msgs in self.server_state().items():
            path = self.maildir / folder
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
            (path / ".uidvalidity").write_text("1733400000\n%d\n" % (len(msgs) + 1))
            entries = []
            for near, m in enumerate(msgs, 1):
                n += 1
                tuid = b"%012d" % n
                dummy = folder == "INBOX" and m.uid == big_uid
                letters = m.letters.replace("F", "") if dummy else m.letters
                data = mbsync15_placeholder(m.data_lf, len(m.data), tuid) if dummy else with_tuid(m.data_lf, tuid)
                name = "1733450%03d.4242_%d.host,U=%d:2,%s" % (n, n, near, letters)
                f = path / ("cur" if "S" in letters else "new") / name
                f.write_bytes(data)
                if dummy:
                    placeholder = f
                entries.append("%d %d %s%s" % (m.uid, near, ">" if dummy else "", letters))
            (path / ".mbsyncstate").write_text(
                "FarUidValidity 1733300000\nNearUidValidity 1733400000\nMaxPulledUid %d\nMaxPushedUid %d\n\n%s\n"
                % (msgs[-1].uid if msgs else 0, len(msgs), "\n".join(entries)))
            (path / ".mbsyncstate.lock").write_text("")
            (path / ".mbsyncstate.journal").write_text("5\n")
        self.assertTrue((self.maildir / UTF7_FOLDER / "cur").is_dir())
        self.assertIsNotNone(placeholder)
        return placeholder

    def test_sync_adopts_mbsync15_maildir(self):
        big = tb.make_message(700, size=60000, seed=66)
        uid = []
        self.seed(lambda c: uid.append(c.append_message("INBOX", big, ("\\Seen", "\\Flagged"), 1700000000)))
        placeholder = self.fill_like_mbsync15(uid[0])
        folders = self.server_folders()
        inodes = message_inodes(self.maildir)
        self.assertEqual(len(inodes), 16)
        kept = {i: f for i, f in inodes.items() if i != os.stat(placeholder).st_ino}
        px = self.via_proxy()
        r = self.run_ok("sync", "--json", "-v")
        # the placeholder is not the message: the real one comes down (its
        # bytes alone), nothing goes up, no folder is made
        self.assertEqual(body_bytes_down(px), len(big), r)
        self.assertEqual(appends_sent(px), 0, r)
        self.assertNotIn(b"CREATE", bytes(px.upstream).upper())
        self.assertEqual(self.server_folders(), folders)
        t = r.json()["accounts"][0]["totals"]
        self.assertEqual((t["fetched"], t["uploaded"], t["moved"], t["moved_on_server"]), (1, 0, 0, 0), r)
        self.assertIn("placeholder", r.stderr)
        # every other file kept (same inode, same folder); the placeholder
        # gave way to the message
        after = message_inodes(self.maildir)
        self.assertEqual({i: f for i, f in after.items() if i in kept}, kept)
        self.assertEqual(len(after), 16)
        self.assertFalse(placeholder.exists())
        self.assertSameMessages()
        self.assertEqual(self.server_count("INBOX"), 9)
        self.assertEqual(len(self.state_rows()), 16)
        # mbsync's own files are neither messages nor folders
        self.assertTrue((self.maildir / "INBOX" / ".mbsyncstate").exists())
        # and the next sync does nothing
        snap = tb.snapshot_tree(self.maildir)
        r = self.run_ok("sync", "--json")
        self.assertEqual(tb.snapshot_tree(self.maildir), snap)
        t = r.json()["accounts"][0]["totals"]
        self.assertEqual((t["fetched"], t["uploaded"], t["flags_changed"], t["flags_pushed"]), (0, 0, 0, 0), r)
        self.assertEqual(self.server_folders(), folders)


class OtherToolsTest(AdoptTestCase):

    def fill_like(self, prepend, drop_return_path):
        """A Maildir as getmail/fetchmail leave it: each server message with
        fields written on top (prepend(n) -> bytes, LF), getmail also
        dropping the message's own Return-Path."""
        state = self.server_state()
        for folder, msgs in state.items():
            path = Path(tb.local_folder_path(self.maildir, folder, "verbatim"))
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
            for i, m in enumerate(msgs):
                data = m.data_lf
                if drop_return_path:
                    data = re.sub(rb"^Return-Path:[^\n]*\n", b"", data, count=1)
                name = "17000%05d.P%d.host:2,%s" % (i, i, m.letters)
                f = path / "cur" / name
                f.write_bytes(prepend(i) + data)
                os.utime(f, (m.internaldate, m.internaldate))

    def test_getmail_maildir(self):
        self.seed()
        top = lambda i: (b"Return-Path: <bob@example.org>\nDelivered-To: me@example.org\n"
                         b"Received: from 127.0.0.1 (127.0.0.1) by mail.example.org with IMAP4 getmail6 "
                         b"msgid:%d for <me@example.org>; 06 Dec 2026 01:00:%02d -0000\n" % (i, i % 60))
        self.fill_like(top, drop_return_path=True)
        inodes = set(message_inodes(self.maildir))
        folders = self.server_folders()
        px = self.via_proxy()
        r = self.run_ok("sync", "--json", "-v")
        self.assertNothingTransferred(px, r)
        # getmail rewrote the header: sizes differ, Message-ID + Date + From pair
        self.assertIn(b"HEADER.FIELDS (DATE FROM)", bytes(px.upstream).upper())
        self.assertTrue(re.search(r"[1-9]\d* by Message-ID, Date and From", r.stderr), r.stderr)
        self.assertEqual(set(message_inodes(self.maildir)), inodes)
        self.assertEqual(self.server_folders(), folders)
        self.assertSameMessages()

    def test_fetchmail_maildir(self):
        self.seed()
        top = lambda i: (b"Received: from 127.0.0.1 [127.0.0.1]\n\tby host with IMAP (fetchmail-6.4.37)\n"
                         b"\tfor <me@localhost> (single-drop); Sun, 06 Dec 2026 01:00:%02d +0000 (UTC)\n" % (i % 60))
        self.fill_like(top, drop_return_path=False)
        inodes = set(message_inodes(self.maildir))
        px = self.via_proxy()
        r = self.run_ok("sync", "--json", "-v")
        self.assertNothingTransferred(px, r)
        # the size without the Received on top pairs them: no second FETCH
        self.assertNotIn(b"(DATE FROM)", bytes(px.upstream).upper())
        self.assertEqual(set(message_inodes(self.maildir)), inodes)
        self.assertSameMessages()

    def test_older_mailsync_maildir_without_state(self):
        """Files an older mailsync wrote, its state DB gone: a sync
        downloads and uploads nothing."""
        self.seed()
        self.run_ok("sync")
        self.assertSynced()
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.state) + suffix)
            if p.exists():
                p.unlink()
        inodes = set(message_inodes(self.maildir))
        px = self.via_proxy()
        r = self.run_ok("sync", "--json")
        self.assertNothingTransferred(px, r)
        self.assertEqual(set(message_inodes(self.maildir)), inodes)
        self.assertSynced()


if __name__ == "__main__":
    unittest.main()
