# SPDX-License-Identifier: MIT
"""test_gmail.py: Gmail labels (issue 18, point 5): one download and one
file per X-GM-MSGID across the folders a message shows in.

The server is fakeimap's FakeGmail: one store of messages, folders as views
of it (INBOX, labels, [Gmail]/All Mail, Sent Mail, Starred, Spam, Trash),
the same X-GM-MSGID in every folder, flags per message. The account syncs
everything but `\\Junk`, `\\Trash` (role patterns, SPECIAL-USE) and
[Gmail]/Important, so a message shows in INBOX, its labels, Starred and
All Mail at once.

What users care about, asserted each time: each folder holds locally what
the server's folder holds, once, with the server's flags; every file of one
message is one inode (hard links), so notmuch sees one message; the bytes
of BODY[] literals sent are one copy per message, never one per folder;
a push uploads nothing (a hard link in another folder is no new message).
The control server lacks X-GM-EXT-1: then every copy is downloaded.
"""

import collections
import hashlib
import os
import shutil
import subprocess
import unittest

import fakeimap as fi
import testbed as tb
from test_hostile import HostileTestCase

FOLDERS = r"* !\Junk !\Trash ![Gmail]/Important"
SYNCED = ("INBOX", fi.GMAIL_ALL, fi.GMAIL_DRAFTS, fi.GMAIL_SENT, fi.GMAIL_STARRED, "Work")
LETTERS = {r"\Seen": "S", r"\Flagged": "F", r"\Answered": "R", r"\Draft": "D"}


def digest(data):
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def raw_message(n, size=1):
    return (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: gmail %d\r\n"
            b"Message-ID: <gmail-%d@fake>\r\n\r\n" % (n, n) + (b"body of %d\r\n" % n) * (size * 20))


class GmailLabelsTest(HostileTestCase):

    def gmail(self, capability=fi.GMAIL_CAPABILITY):
        srv = fi.FakeGmail(labels=("Work",), capability=capability).start()
        self.addCleanup(srv.stop)
        self.addCleanup(self.assertServerHealthy, srv)
        self.ids = {
            1: srv.add(raw_message(1), labels=(fi.INBOX_LABEL, "Work"), date=1600000001),
            2: srv.add(raw_message(2, 2), labels=(fi.INBOX_LABEL, fi.IMPORTANT_LABEL), flags=(r"\Flagged",),
                       date=1600000002),
            3: srv.add(raw_message(3), labels=("Work",), flags=(r"\Seen",), date=1600000003),
            4: srv.add(raw_message(4, 3), labels=(fi.SENT_LABEL,), flags=(r"\Seen",), date=1600000004),
        }
        self.write_config(srv, folders=FOLDERS)
        return srv

    def run_ok(self, *args):
        r, _ = self.run_mailsync("-v", *args)
        self.assertEqual(r.code, 0, str(r))
        return r

    def local_files(self):
        """{folder: [(digest, inode, letters, path)]}."""
        out = collections.defaultdict(list)
        for folder, msgs in tb.read_maildir(self.root).items():
            for m in msgs:
                out[folder].append((digest(m.data), os.stat(m.path).st_ino, "".join(sorted(m.letters)), m.path))
        return out

    def assertSameAsServer(self, srv):
        """Each synced folder holds locally what the server's holds, once,
        each file with its message's flags; Spam and Trash stay away."""
        local = self.local_files()
        for name in SYNCED:
            folder = srv.folders[name]
            want = collections.Counter(digest(m.raw) for m in folder.messages)
            got = collections.Counter(d for d, _, _, _ in local.get(name, []))
            self.assertEqual(got, want, name)
            letters = {digest(m.raw): "".join(sorted(LETTERS[f] for f in m.flags)) for m in folder.messages}
            for d, _, have, path in local.get(name, []):
                self.assertEqual(have, letters[d], "%s: %s has the wrong flags" % (name, path))
        self.assertFalse(set(local) - set(SYNCED), "folders synced that should not be")

    def inodes_by_digest(self):
        out = collections.defaultdict(set)
        for files in self.local_files().values():
            for d, ino, _, _ in files:
                out[d].add(ino)
        return out

    def assertOneFilePerMessage(self, srv):
        by = self.inodes_by_digest()
        self.assertEqual(len(by), len(srv.mail), "messages locally: %s" % sorted(by))
        for d, inodes in by.items():
            self.assertEqual(len(inodes), 1, "one message, %d files (not hard links)" % len(inodes))

    @staticmethod
    def id_fetches(srv):
        """The identity FETCHes asking for X-GM-MSGID (not the bodies')."""
        return [c for c in srv.received("UID FETCH") if c.has_item("X-GM-MSGID") and c.has_item("HEADER.FIELDS")]

    def copies_on_server(self, srv):
        return sum(len(srv.folders[n].messages) for n in SYNCED)

    # -- tests -------------------------------------------------------------------

    def test_first_pull_downloads_each_message_once(self):
        srv = self.gmail()
        self.run_ok("pull")
        self.assertEqual(srv.changing_commands(), [])
        self.assertSameAsServer(srv)
        self.assertOneFilePerMessage(srv)
        # 4 messages shown 10 times: the bytes of 4
        self.assertEqual(self.copies_on_server(srv), 10)
        self.assertEqual(srv.body_bytes, sum(len(m.raw) for m in srv.mail.values()))
        # the ids cost one FETCH per folder with new mail, none for the
        # first (nothing on disk yet to link to)
        with_mail = sum(1 for n in SYNCED if srv.folders[n].messages)
        self.assertEqual(len(self.id_fetches(srv)), with_mail - 1)
        srv.body_bytes = 0
        self.run_ok("pull")
        self.assertEqual(srv.body_bytes, 0)
        self.assertSameAsServer(srv)
        self.assertEqual(len(self.id_fetches(srv)), with_mail - 1)

    def test_one_folder_costs_no_id_fetch(self):
        srv = self.gmail()
        self.write_config(srv, folders="INBOX")
        self.run_ok("pull")
        srv.add(raw_message(5), labels=(fi.INBOX_LABEL, "Work"), date=1600000005)
        self.run_ok("pull")
        self.assertEqual(self.id_fetches(srv), [])
        self.assertEqual(len(self.local_files()["INBOX"]), 3)

    def test_labels_added_removed_and_archived(self):
        srv = self.gmail()
        self.run_ok("pull")
        before = {d: next(iter(i)) for d, i in self.inodes_by_digest().items()}
        srv.label(self.ids[2], "Work")           # a label added
        srv.unlabel(self.ids[3], "Work")         # the last label removed: All Mail only
        srv.archive(self.ids[1])                 # archived: still in Work and All Mail
        new = srv.add(raw_message(5), labels=(fi.INBOX_LABEL, "Work"), date=1600000005)
        self.assertEqual(srv.uid("INBOX", self.ids[1]), None)
        self.assertIsNotNone(srv.uid(fi.GMAIL_ALL, self.ids[1]))
        srv.body_bytes = 0
        self.run_ok("pull")
        self.assertEqual(srv.body_bytes, len(srv.mail[new].raw), "only the new message is downloaded")
        self.assertSameAsServer(srv)
        self.assertOneFilePerMessage(srv)
        after = {d: next(iter(i)) for d, i in self.inodes_by_digest().items()}
        for d, ino in before.items():
            self.assertEqual(after[d], ino, "a message's file was replaced")
        local = self.local_files()
        d1, d3 = digest(raw_message(1)), digest(raw_message(3))
        self.assertNotIn(d1, [d for d, _, _, _ in local["INBOX"]], "archived, still in INBOX locally")
        self.assertIn(d1, [d for d, _, _, _ in local[fi.GMAIL_ALL]])
        self.assertEqual([n for n in SYNCED if d3 in [d for d, _, _, _ in local.get(n, [])]], [fi.GMAIL_ALL])

    def test_dry_run_says_link(self):
        """A dry run plans what the run does: per folder the same new
        messages, each one downloaded once ("fetch") and linked to that file
        everywhere else ("link", from the folder whose file it takes), the
        bytes of one copy each; after a label is added, the link to the file
        on disk. Nothing is downloaded by the dry runs."""
        srv = self.gmail()
        dry = self.run_ok("--json", "--dry-run", "pull").json()
        self.assertEqual(srv.body_bytes, 0, "a dry run downloaded")
        plan = dry["accounts"][0]["plan"]
        fetches = [s for s in plan if s["action"] == "fetch"]
        links = [s for s in plan if s["action"] == "link"]
        self.assertEqual(len(fetches), len(srv.mail), plan)
        self.assertEqual(len(links), self.copies_on_server(srv) - len(srv.mail), plan)
        self.assertEqual(dry["accounts"][0]["totals"]["bytes"], sum(s["size"] for s in fetches))
        for s in links:
            self.assertIn(s["from"], [f["folder"] for f in fetches if f["size"] == s["size"]], s)
        real = self.run_ok("--json", "pull").json()

        def fetched(doc):
            return {f["name"]: f["fetched"] for f in doc["accounts"][0]["folders"]}
        self.assertEqual(fetched(dry), fetched(real))
        self.assertEqual(dry["accounts"][0]["totals"]["bytes"], srv.body_bytes)
        srv.label(self.ids[3], fi.INBOX_LABEL)
        srv.body_bytes = 0
        r = self.run_ok("--dry-run", "pull")
        self.assertIn("INBOX: would link UID", r.stdout)
        self.assertNotIn("would fetch", r.stdout)
        self.assertIn("1 linked to a file in another folder (not downloaded)", r.stdout)
        self.assertEqual(srv.body_bytes, 0)

    def test_flag_change_on_one_link_and_sync_uploads_nothing(self):
        srv = self.gmail()
        self.run_ok("pull")
        local = self.local_files()
        d1 = digest(raw_message(1))
        inbox = next(p for d, _, _, p in local["INBOX"] if d == d1)
        others = [p for n in ("Work", fi.GMAIL_ALL) for d, _, _, p in local[n] if d == d1]
        self.assertEqual(len(others), 2)
        # a MUA marks the INBOX copy seen: a rename of that link only
        os.rename(inbox, os.path.join(os.path.dirname(os.path.dirname(inbox)), "cur",
                                      os.path.basename(inbox).split(":2,")[0] + ":2,S"))
        for p in others:
            with open(p, "rb") as f:
                self.assertEqual(digest(f.read()), d1, "the other link broke")
        copies = self.copies_on_server(srv)
        srv.body_bytes = 0
        self.run_ok("sync")
        self.assertEqual(srv.received("APPEND"), [], "a hard link was uploaded as a new message")
        self.assertEqual(srv.appends, 0)
        self.assertEqual(len(srv.mail), 4)
        self.assertEqual(self.copies_on_server(srv), copies)
        self.assertIn(r"\Seen", srv.mail[self.ids[1]].flags)
        self.assertEqual(srv.body_bytes, 0)
        # Gmail's flags are the message's: the next pull renames the other links
        self.run_ok("pull")
        self.assertSameAsServer(srv)
        self.assertOneFilePerMessage(srv)
        # a label removed locally: the Work link goes, on the server the label only
        work = next(p for d, _, _, p in self.local_files()["Work"] if d == d1)
        os.unlink(work)
        self.run_ok("sync")
        self.assertEqual(srv.appends, 0)
        self.assertNotIn("Work", srv.mail[self.ids[1]].labels)
        self.assertIsNotNone(srv.uid(fi.GMAIL_ALL, self.ids[1]))
        self.run_ok("pull")
        self.assertSameAsServer(srv)
        self.assertOneFilePerMessage(srv)
        self.assertEqual(srv.body_bytes, 0)

    def test_trash_removes_every_link(self):
        srv = self.gmail()
        self.run_ok("pull")
        srv.trash(self.ids[1])
        self.run_ok("pull")
        self.assertSameAsServer(srv)
        self.assertNotIn(digest(raw_message(1)), self.inodes_by_digest())

    @unittest.skipUnless(shutil.which("notmuch"), "notmuch is not installed")
    def test_notmuch_sees_one_message(self):
        srv = self.gmail()
        self.run_ok("pull")
        home = self.work / "home"
        home.mkdir()
        cfg = self.work / "notmuch-config"
        cfg.write_text("[database]\npath=%s\n[user]\nname=t\nprimary_email=t@example.org\n"
                       "[new]\ntags=new\n[maildir]\nsynchronize_flags=false\n" % self.root)
        env = dict(os.environ, NOTMUCH_CONFIG=str(cfg), HOME=str(home))
        subprocess.run(["notmuch", "new", "--quiet"], env=env, check=True, stdout=subprocess.DEVNULL)
        count = lambda *a: int(subprocess.run(["notmuch", "count"] + list(a) + ["*"], env=env, check=True,
                                              stdout=subprocess.PIPE).stdout)
        self.assertEqual(count(), len(srv.mail))
        self.assertEqual(count("--output=files"), self.copies_on_server(srv))

    def test_without_x_gm_ext_every_copy_is_downloaded(self):
        srv = self.gmail(capability=fi.GMAIL_CAPABILITY.replace(" X-GM-EXT-1", ""))
        self.run_ok("pull")
        self.assertSameAsServer(srv)
        self.assertEqual(srv.body_bytes, sum(len(m.raw) for n in SYNCED for m in srv.folders[n].messages))
        self.assertEqual(sum(len(i) for i in self.inodes_by_digest().values()), self.copies_on_server(srv))


if __name__ == "__main__":
    unittest.main()
