# SPDX-License-Identifier: MIT
"""test_objectid.py: the server's own message id (EMAILID, RFC 8474
OBJECTID; Gmail's X-GM-MSGID) pairs a message another client moved on the
server (issue 16, point 1).

Dovecot 2.3 has no OBJECTID, so the server is fakeimap (read-only: `pull`
only). INBOX holds messages without a Message-ID and a pair with the same
Message-ID and size but different bodies (and different flags); between
two pulls they "move" to Archive (new UIDs there, the same emailid, gone
from INBOX). With OBJECTID, and with X-GM-EXT-1, the second pull
downloads no body: every local file is renamed into Archive (same inode),
each carries the flags of its own server message (the Message-ID pair is
not crossed), and both sides count the same. The control server offers
neither: the messages without a Message-ID are downloaded again, which is
what the id changes.
"""

import collections
import dataclasses
import hashlib
import os
import unittest

import fakeimap as fi
import testbed as tb
from test_hostile import HostileTestCase

CAPS = fi.DEFAULT_CAPABILITY


def digest(data):
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def raw_message(subject, body, message_id=None):
    head = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n" % subject
    if message_id:
        head += b"Message-ID: %s\r\n" % message_id
    return head + b"\r\n" + body


def corpus():
    """INBOX: 3 messages without Message-ID, a pair sharing Message-ID and
    size (bodies differ), one that stays. Archive: one message."""
    inbox = [fi.Message(1, (r"\Seen",), 1600000001, raw_message(b"no id one", b"first body\r\n")),
             fi.Message(2, (), 1600000002, raw_message(b"no id two", b"second body, longer\r\n")),
             fi.Message(3, (r"\Flagged",), 1600000003, raw_message(b"no id three", b"third\r\n")),
             fi.Message(4, (r"\Seen",), 1600000004, raw_message(b"twin", b"AAAA\r\n", b"<twin@fake>")),
             fi.Message(5, (r"\Flagged",), 1600000005, raw_message(b"twin", b"BBBB\r\n", b"<twin@fake>")),
             fi.Message(6, (), 1600000006, raw_message(b"stays", b"stays here\r\n", b"<stay@fake>"))]
    archive = [fi.Message(1, (r"\Seen",), 1500000000, raw_message(b"old", b"archived\r\n", b"<old@fake>"))]
    return {"INBOX": fi.Folder(7, inbox), "Archive": fi.Folder(8, archive)}


class ObjectIdMoveTest(HostileTestCase):

    def letters_by_digest(self):
        """{digest: [(folder, inode, letters)]} of every local file."""
        out = collections.defaultdict(list)
        for folder, msgs in tb.read_maildir(self.root).items():
            for m in msgs:
                out[digest(m.data)].append((folder, os.stat(m.path).st_ino, m.letters))
        return out

    def move_on_server(self, srv, uids):
        """Another client moves INBOX's uids to Archive: new UIDs there in
        reverse order (so pairing in UID order would cross the twins), the
        same emailid; INBOX's UIDNEXT stays."""
        inbox, archive = srv.folders["INBOX"], srv.folders["Archive"]
        with srv.lock:
            inbox.uidnext = inbox.next_uid()
            moving = [m for m in inbox.messages if m.uid in uids]
            inbox.messages = [m for m in inbox.messages if m.uid not in uids]
            nxt = archive.next_uid()
            for k, m in enumerate(reversed(moving)):
                archive.messages.append(dataclasses.replace(m, uid=nxt + k))
        return moving

    def pull(self, srv):
        r, _ = self.run_mailsync("-v", "pull")
        self.assertEqual(r.code, 0, str(r))
        self.assertEqual(srv.changing_commands(), [])
        return r

    def assertSameAsServer(self, srv, flags=True):
        """Each folder holds locally what the server holds, once, and (flags)
        with the server's flags on the file of that content."""
        local = tb.read_maildir(self.root)
        for name, folder in srv.folders.items():
            want = collections.Counter(digest(m.raw) for m in folder.messages)
            got = collections.Counter(digest(m.data) for m in local.get(name, []))
            self.assertEqual(got, want, name)
            if not flags:
                continue
            letters = {digest(m.raw): "".join(sorted({r"\Seen": "S", r"\Flagged": "F"}[f] for f in m.flags))
                     for m in folder.messages}
            for m in local.get(name, []):
                self.assertEqual("".join(sorted(m.letters)), letters[digest(m.data)],
                                 "%s: a file carries another message's flags" % name)

    def check(self, capability, expect_download):
        srv = self.server(corpus(), capability=capability)
        self.write_config(srv)
        self.pull(srv)
        self.assertSameAsServer(srv)
        before = self.letters_by_digest()
        moved = self.move_on_server(srv, {1, 2, 3, 4, 5})
        srv.body_bytes = 0
        r = self.pull(srv)
        # Without ids the twins may be paired crosswise by Message-ID and
        # size (each file then has the other's flags): what the ids fix.
        self.assertSameAsServer(srv, flags=not expect_download)
        after = self.letters_by_digest()
        downloaded = srv.body_bytes
        for m in moved:
            d = digest(m.raw)
            self.assertEqual(len(after[d]), 1, "not once locally: %s\n%s" % (after[d], r))
            self.assertEqual(after[d][0][0], "Archive")
        if expect_download:
            no_id = sum(len(m.raw) for m in moved if b"Message-ID" not in m.raw)
            self.assertEqual(downloaded, no_id, str(r))
        else:
            self.assertEqual(downloaded, 0, "bodies downloaded for messages that only moved\n%s" % r)
            for m in moved:
                d = digest(m.raw)
                self.assertEqual(after[d][0][1], before[d][0][1], "not the same file (inode)\n%s" % r)
            self.assertIn("5 by the server's message id", r.stderr)
        # and the next pull has nothing to do
        srv.body_bytes = 0
        self.pull(srv)
        self.assertEqual(srv.body_bytes, 0)
        self.assertSameAsServer(srv, flags=not expect_download)
        return srv

    def test_emailid(self):
        srv = self.check(CAPS + " OBJECTID", expect_download=False)
        fetches = [c for c in srv.received("UID FETCH") if c.has_item("EMAILID")]
        self.assertTrue(fetches, "EMAILID was never asked for")
        # not in the flag listings: a no-op resync costs what it did
        self.assertFalse([c for c in fetches if c.is_flag_listing])

    def test_x_gm_msgid(self):
        srv = self.check(CAPS + " X-GM-EXT-1", expect_download=False)
        self.assertTrue([c for c in srv.received("UID FETCH") if c.has_item("X-GM-MSGID")])
        self.assertFalse([c for c in srv.received("UID FETCH") if c.has_item("EMAILID")])

    def test_different_ids_never_paired_by_message_id(self):
        """A message deleted in INBOX and a different one with the same
        Message-ID and size arriving in Archive: their EMAILIDs differ, so
        the new one is downloaded, not taken for the old file renamed."""
        srv = self.server(corpus(), capability=CAPS + " OBJECTID")
        self.write_config(srv)
        self.pull(srv)
        inbox, archive = srv.folders["INBOX"], srv.folders["Archive"]
        with srv.lock:
            inbox.uidnext = inbox.next_uid()
            gone = next(m for m in inbox.messages if m.uid == 4)
            inbox.messages.remove(gone)
            other = fi.Message(archive.next_uid(), (), 1600000009, gone.raw.replace(b"AAAA", b"CCCC"))
            archive.messages.append(other)
        self.assertEqual(len(other.raw), len(gone.raw))
        srv.body_bytes = 0
        r = self.pull(srv)
        self.assertEqual(srv.body_bytes, len(other.raw), str(r))
        self.assertSameAsServer(srv)
        self.assertNotIn(digest(gone.raw), self.letters_by_digest())

    def test_without_object_ids_downloads(self):
        srv = self.check(CAPS, expect_download=True)
        self.assertFalse([c for c in srv.received("UID FETCH")
                          if c.has_item("EMAILID") or c.has_item("X-GM-MSGID")])


if __name__ == "__main__":
    unittest.main()
