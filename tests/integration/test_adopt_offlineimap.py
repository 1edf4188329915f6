# SPDX-License-Identifier: MIT
"""test_adopt_offlineimap.py: a Maildir that OfflineIMAP (Debian's
offlineimap3, its default local names: `sep = .`) filled is adopted by
mailsync with `layout = dotted` and a fresh state DB: the first `sync`
moves no message body either way (no BODY[] literal comes down, no APPEND
goes up), keeps every file (same inode, OfflineIMAP's names with their
`,U=..,FMD5=..` kept as they are), the counts agree on both sides, the next
sync does nothing, and new mail on either side afterwards goes where it
belongs.

OfflineIMAP's defaults: server folder `Projects/2026` is the directory
`Projects.2026` at the Maildir root, INBOX is `INBOX`, and folder names
stay raw modified UTF-7 (`Th&AbA- m&HuU-c`) unless `utf8foldernames = yes`.
"""

import os
import re
import shutil
import subprocess
import unittest
from pathlib import Path

import testbed as tb

OFFLINEIMAP = shutil.which("offlineimap")
UTF7_FOLDER = "Thư mục"
UTF7_NESTED = "Projects/Ảnh"   # OfflineIMAP: "Projects.&HqA-nh"

# A body coming down: the server's answer to a BODY[] / BODY.PEEK[] fetch
# (BODY[HEADER.FIELDS (...)] answers, the identity facts, do not match).
BODY_LITERAL = re.compile(rb"BODY\[\](?:<\d+>)? \{\d+\}")


def inodes(root, layout="dotted"):
    """{(folder, inode)} of every message file below root."""
    return {(folder, os.stat(m.path).st_ino)
            for folder, msgs in tb.read_maildir(root, layout).items() for m in msgs}


def counts(state):
    return {folder: len(msgs) for folder, msgs in state.items() if msgs}


class OfflineImapCase(tb.BedTestCase):
    """Helpers: seed the server, run offlineimap, run a counted sync."""

    def seed(self, utf7=False):
        """INBOX (10), Projects/2026 (5) and, with utf7, "Thư mục" (4) and
        "Projects/Ảnh" (2): the
        corpus carries flags (\\Seen, \\Flagged, \\Draft, $Forwarded, ...)."""
        with self.imap() as c:
            c.create_folder("Projects/2026")
            c.append_many("INBOX", tb.make_corpus(10, seed=1, size=(500, 4000)))
            c.append_many("Projects/2026", tb.make_corpus(5, seed=2, size=(500, 4000), start=100))
            if utf7:
                c.create_folder(UTF7_FOLDER)
                c.append_many(UTF7_FOLDER, tb.make_corpus(4, seed=3, size=(500, 4000), start=200))
                c.create_folder(UTF7_NESTED)
                c.append_many(UTF7_NESTED, tb.make_corpus(2, seed=4, size=(500, 4000), start=250))

    def offlineimap(self, extra_account=""):
        """Run offlineimap once (plain IMAP, its default `sep`) into self.maildir."""
        meta = self.work / "offlineimap-meta"
        meta.mkdir(exist_ok=True)
        self.maildir.mkdir(exist_ok=True)
        rc = self.work / "offlineimaprc"
        rc.write_text("""\
[general]
accounts = t
metadata = {meta}
ui = quiet

[Account t]
localrepository = local
remoterepository = remote
{extra}

[Repository local]
type = Maildir
localfolders = {root}

[Repository remote]
type = IMAP
remotehost = {host}
remoteport = {port}
ssl = no
starttls = no
remoteuser = {user}
remotepass = {password}
""".format(meta=meta, root=self.maildir, host=tb.HOST, port=self.bed.imap_port,
           user=self.user.name, password=self.user.password, extra=extra_account))
        os.chmod(rc, 0o600)
        r = subprocess.run([OFFLINEIMAP, "-c", str(rc), "-o", "-u", "quiet"],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, "offlineimap failed:\n%s\n%s" % (r.stdout, r.stderr))

    def sync_counted(self, *args):
        """`mailsync sync` through a recording proxy. Returns (Result, bodies
        downloaded, APPENDs sent)."""
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port, layout="dotted")
        r = self.run_ok("sync", *args)
        px.stop()
        down, up = bytes(px.downstream), bytes(px.upstream)
        return r, len(BODY_LITERAL.findall(down)), up.count(b" APPEND ")

    def assertAdopted(self, expect_dirs):
        """The first sync adopts everything: nothing transferred, files kept,
        counts equal on both sides, in sync, and the next sync a no-op."""
        before = self.server_state()
        local = tb.read_maildir(self.maildir, "dotted")
        self.assertEqual(sorted(d for d in os.listdir(self.maildir) if not d.startswith(".")),
                         sorted(expect_dirs))
        self.assertEqual(counts({f: m for f, m in local.items()}), counts(before))
        files = inodes(self.maildir)
        self.assertTrue(any(",FMD5=" in m.name for msgs in local.values() for m in msgs))

        # A dry run plans no transfer and changes nothing.
        tree = tb.snapshot_tree(self.maildir)
        r, bodies, appends = self.sync_counted("--dry-run")
        self.assertEqual((bodies, appends), (0, 0), r)
        self.assertEqual(tb.snapshot_tree(self.maildir), tree)
        self.assertEqual(counts(self.server_state()), counts(before))

        r, bodies, appends = self.sync_counted("-v")
        self.assertEqual((bodies, appends), (0, 0), "bodies moved by the adopting sync:\n%s" % r)
        self.assertNotIn("created folder", r.stderr)
        after = self.server_state()
        self.assertEqual(counts(after), counts(before))
        self.assertEqual(inodes(self.maildir), files, "local files were replaced")
        self.assertEqual(sorted(d for d in os.listdir(self.maildir) if not d.startswith(".")),
                         sorted(expect_dirs))
        self.assertSynced(layout="dotted", check_mtime=False)

        r, bodies, appends = self.sync_counted("-v")
        self.assertEqual((bodies, appends), (0, 0), "second sync moved bodies:\n%s" % r)
        self.assertEqual(counts(self.server_state()), counts(before))
        self.assertEqual(inodes(self.maildir), files)


@unittest.skipUnless(OFFLINEIMAP, "offlineimap (Debian offlineimap3) is not installed")
class AdoptOfflineImapTest(OfflineImapCase):
    bed_options = {"pool": 8}

    def test_adopt_default_names(self):
        """INBOX and Projects/2026 with flags: adopted, then new mail on each
        side, and folders made locally, sync into the right places."""
        self.seed()
        self.offlineimap()
        self.assertTrue(tb.is_maildir(self.maildir / "Projects.2026"))
        self.assertAdopted(["INBOX", "Projects.2026"])

        # New mail on each side after adoption.
        with self.imap() as c:
            c.append_many("Projects/2026", tb.make_corpus(2, seed=5, size=(500, 900), start=300))
        for k, m in enumerate(tb.make_corpus(3, seed=6, size=(500, 900), start=400, flags=False)):
            folder = "INBOX" if k < 2 else "Projects.2026"
            (self.maildir / folder / "new" / ("1700000000.new%d.host" % k)).write_bytes(
                m.data.replace(b"\r\n", b"\n"))
        # Folders made locally, OfflineIMAP style: "Local.Notes" is the
        # server folder Local/Notes, "v1%2E2" (an escaped dot) is "v1.2".
        local_only = {"Local.Notes": "Local/Notes", "v1%2E2": "v1.2"}
        for k, (d, _) in enumerate(sorted(local_only.items())):
            for sub in ("cur", "new", "tmp"):
                (self.maildir / d / sub).mkdir(parents=True)
            m = tb.make_corpus(1, seed=7 + k, size=(500, 900), start=500 + k, flags=False)[0]
            (self.maildir / d / "cur" / "1700000000.loc.host:2,S").write_bytes(m.data.replace(b"\r\n", b"\n"))
        r, bodies, appends = self.sync_counted("-v")
        self.assertEqual((bodies, appends), (2, 5), r)
        self.assertEqual(counts(self.server_state()), {"INBOX": 12, "Projects/2026": 8,
                                                       "Local/Notes": 1, "v1.2": 1})
        self.assertSynced(layout="dotted", check_mtime=False)
        self.assertEqual(sorted(d for d in os.listdir(self.maildir) if not d.startswith(".")),
                         sorted(["INBOX", "Projects.2026"] + list(local_only)))
        r, bodies, appends = self.sync_counted()
        self.assertEqual((bodies, appends), (0, 0), r)

    def test_adopt_utf8_folder_names(self):
        """With `utf8foldernames = yes` OfflineIMAP writes "Thư mục", which is
        mailsync's own name for the folder."""
        self.seed(utf7=True)
        self.offlineimap("utf8foldernames = yes")
        self.assertAdopted(["INBOX", "Projects.2026", UTF7_FOLDER, "Projects.Ảnh"])

    def test_adopt_raw_utf7_folder_names(self):
        """OfflineIMAP's default keeps the raw modified UTF-7 name
        ("Th&AbA- m&HuU-c"): that directory is the server folder "Thư mục",
        not a new folder to create on the server. It is renamed once to
        mailsync's name (names_raw_path, folders.c), its files keep their
        inodes."""
        self.seed(utf7=True)
        self.offlineimap()
        raw_dirs = {UTF7_FOLDER: tb.mutf7_encode(UTF7_FOLDER), "Projects.Ảnh": "Projects." + tb.mutf7_encode("Ảnh")}
        raw_inodes = {}
        for ours, raw in raw_dirs.items():
            self.assertTrue(tb.is_maildir(self.maildir / raw), raw)
            raw_inodes[ours] = {os.stat(f).st_ino for f in tb.message_files(self.maildir / raw)}
        self.assertEqual([len(v) for v in raw_inodes.values()], [4, 2])
        r, bodies, appends = self.sync_counted("-v")
        self.assertEqual((bodies, appends), (0, 0), "bodies moved by the adopting sync:\n%s" % r)
        self.assertNotIn("created folder", r.stderr)
        self.assertEqual(counts(self.server_state()),
                         {"INBOX": 10, "Projects/2026": 5, UTF7_FOLDER: 4, UTF7_NESTED: 2})
        self.assertEqual(sorted(d for d in os.listdir(self.maildir) if not d.startswith(".")),
                         sorted(["INBOX", "Projects.2026"] + list(raw_dirs)))
        for ours, ino in raw_inodes.items():
            self.assertEqual({os.stat(f).st_ino for f in tb.message_files(self.maildir / ours)}, ino)
        self.assertSynced(layout="dotted", check_mtime=False)
        r, bodies, appends = self.sync_counted("-v")
        self.assertEqual((bodies, appends), (0, 0), "second sync moved bodies:\n%s" % r)

    # offlineimap3 stores a message as Python's email library writes it
    # back, not byte for byte: "X-A:   v" becomes "X-A: v", and a line that
    # is no header gets a blank line put before it (ending the header
    # there). Size and content then differ from the server's; only the
    # identity tier "unique Message-ID on both sides, equal Date and From"
    # (rematch.c, helper adopt) pairs them.
    def test_adopt_messages_offlineimap_rewrote(self):
        rewritten = [b"Message-ID: <ws.1@example.org>\r\nDate: Mon, 6 Nov 2023 10:00:00 +0000\r\n"
                     b"From: a@example.org\r\nX-Spaced:   value   \r\n\r\nbody\r\n",
                     b"Message-ID: <nohdr.2@example.org>\r\nDate: Mon, 6 Nov 2023 11:00:00 +0000\r\n"
                     b"From: a@example.org\r\nThis line is no header\r\nSubject: x\r\n\r\nbody\r\n"]
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=9, size=(500, 900)))
            for m in rewritten:
                c.append_message("INBOX", m, ("\\Seen",), 1699264800)
        self.offlineimap()
        files = inodes(self.maildir)
        local = [m.data for m in tb.read_maildir(self.maildir, "dotted")["INBOX"]]
        self.assertEqual(len(local), 5)
        for m in rewritten:   # the premise: offlineimap did change them
            self.assertNotIn(m.replace(b"\r\n", b"\n"), local)
        r, bodies, appends = self.sync_counted("-v")
        self.assertEqual((bodies, appends), (0, 0), "bodies moved by the adopting sync:\n%s" % r)
        self.assertEqual(counts(self.server_state()), {"INBOX": 5})
        self.assertEqual(inodes(self.maildir), files)


@unittest.skipUnless(OFFLINEIMAP, "offlineimap (Debian offlineimap3) is not installed")
class AdoptOfflineImapNoUidplusTest(OfflineImapCase):
    """A server without UIDPLUS: OfflineIMAP finds the UID of a message it
    uploads by a header it adds, `X-OfflineIMAP: <hash>-<random>`, to the
    server's copy only; the local file stays without it."""
    bed_options = {"pool": 4, "hide_capabilities": ("UIDPLUS",)}

    # The server's copies of the messages OfflineIMAP uploaded are the local
    # file plus one X-OfflineIMAP line: the identity allows for that field
    # (sync/message.c, helper adopt), so they pair without a transfer.
    def test_adopt_messages_offlineimap_uploaded(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=11, size=(500, 900)))
        self.offlineimap()
        for k, m in enumerate(tb.make_corpus(2, seed=12, size=(500, 900), start=50, flags=False)):
            (self.maildir / "INBOX" / "new" / ("1700000000.up%d.host" % k)).write_bytes(
                m.data.replace(b"\r\n", b"\n"))
        self.offlineimap()
        files = inodes(self.maildir)
        with self.imap() as c:   # the premise: the header is on the server only
            self.assertEqual(sum(b"\r\nX-OfflineIMAP: " in m.data for m in c.messages("INBOX")), 2)
        self.assertFalse(any(b"X-OfflineIMAP" in Path(f).read_bytes() for f in tb.message_files(self.maildir)))
        r, bodies, appends = self.sync_counted("-v")
        self.assertEqual((bodies, appends), (0, 0), "bodies moved by the adopting sync:\n%s" % r)
        self.assertEqual(counts(self.server_state()), {"INBOX": 5})
        self.assertEqual(inodes(self.maildir), files)


if __name__ == "__main__":
    unittest.main()
