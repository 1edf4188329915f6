# SPDX-License-Identifier: MIT
"""test_extensions.py: SPECIAL-USE (RFC 6154), LIST-STATUS (RFC 5819) and ID
(RFC 2971) against the test bed's Dovecot, offered (ExtensionsOn) and hidden
with imap_capability (ExtensionsOff), on the same mailbox (issue 18).

The bed marks "Deleted Items" \\Trash, "Junk" \\Junk, "Sent" \\Sent (see
testbed.SPECIAL_USE); a plain folder named "Trash" has no role, so a
deletion that lands in "Deleted Items" was routed by the role, not by the
name. What each class checks, from the user's side:
  - `folders` shows the roles (text and JSON) when offered, none when not;
  - `folders = * !\\Junk` leaves the junk folder out only when the server
    says which one it is;
  - `trash = auto` moves a local deletion into the \\Trash folder (one
    copy, nothing lost); without SPECIAL-USE it says it found none and
    leaves the message on the server (exit 1), never expunging it;
  - a resync's listing: with LIST-STATUS one LIST command carries every
    folder's counters (no STATUS command at all), without it the STATUS
    commands are pipelined with the LIST; ID goes out once per connection
    only when offered, inside that same first write (no round trip of its
    own); -vv says which extension was used;
  - the end state (both sides, by content) is the same either way.
"""

import collections
import hashlib
import json
import os
import re

import testbed as tb

FOLDERS = ("INBOX", "Deleted Items", "Trash", "Junk", "Sent")
HIDDEN = ("SPECIAL-USE", "LIST-STATUS", "ID")


def digest(data):
    return hashlib.sha256(data).hexdigest()


class ExtensionsCase:
    """Mixin: the scenario; the subclasses say what the server offers."""

    offered = True

    def setUp(self):
        super().setUp()
        with self.imap() as c:
            for i, folder in enumerate(FOLDERS):
                if folder != "INBOX":
                    c.create_folder(folder)
                for m in tb.make_corpus(2, seed=70 + i, size=(400, 900), flags=False, start=10 * i):
                    c.append_message(folder, m.data)

    def version(self):
        return self.run_ok("--version").stdout.split()[1]   # "mailsync X.Y.Z" first

    def commands(self, px):
        """The commands the client sent through the proxy, without tags."""
        lines = bytes(px.upstream).decode("utf-8", "replace").split("\r\n")
        return [l.split(" ", 1)[1] for l in lines if " " in l]

    def server_hashes(self):
        with self.imap() as c:
            return {f: collections.Counter(digest(m.data_lf) for m in c.messages(f)) for f in FOLDERS}

    def local_hashes(self):
        local = tb.read_maildir(self.maildir)
        return {f: collections.Counter(digest(m.data) for m in local.get(f, [])) for f in FOLDERS}

    # One scenario per class (each step needs the one before; one setUp
    # keeps the CI time down).
    def test_roles_trash_auto_and_listing(self):
        self.write_config(folders="* !\\Junk", trash="auto")
        self.check_folders()
        self.pull()
        expect = set(FOLDERS) - ({"Junk"} if self.offered else set())
        self.assertEqual(set(tb.read_maildir(self.maildir)), expect)
        self.assertSynced(state={f: s for f, s in self.server_state().items() if f in expect})
        self.check_resync_listing(expect)
        self.check_trash_auto()

    def check_folders(self):
        """`folders`: the roles in text and JSON; `!\\Junk` excludes Junk."""
        text = self.run_ok("folders").stdout
        lines = {l[:32].strip(): l for l in text.splitlines()[1:] if l.strip()}
        doc = json.loads(self.run_ok("--json", "folders").stdout)
        roles = {f["name"]: f["roles"] for f in doc["accounts"][0]["folders"]}
        if self.offered:
            self.assertTrue(lines["Deleted Items"].endswith("  \\Trash"), text)
            self.assertIn("(excluded)", lines["Junk"])
            self.assertTrue(lines["Junk"].endswith("  \\Junk"), text)
            self.assertEqual(roles, {"INBOX": [], "Deleted Items": ["\\Trash"], "Trash": [], "Junk": ["\\Junk"],
                                     "Sent": ["\\Sent"]})
        else:
            self.assertNotIn("\\", text)
            self.assertIn("-> ", lines["Junk"])
            self.assertEqual(set(map(tuple, roles.values())), {()})

    def check_resync_listing(self, pulled):
        """A no-op pull through a recording proxy: what went on the wire."""
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        try:
            self.write_config(folders="* !\\Junk", trash="auto", tls="none", port=px.port)
            r = self.run_ok("-vv", "pull")
        finally:
            px.stop()
        self.write_config(folders="* !\\Junk", trash="auto")
        cmds = self.commands(px)
        lists = [c for c in cmds if c.upper().startswith("LIST ")]
        statuses = [c for c in cmds if c.upper().startswith("STATUS ")]
        ids = [c for c in cmds if c.upper().startswith("ID ")]
        self.assertEqual((len(lists), px.connections), (1, 1), cmds)
        if self.offered:
            self.assertEqual(lists[0], 'LIST "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES UIDNEXT UIDVALIDITY '
                                       'HIGHESTMODSEQ))')
            self.assertEqual(statuses, [])            # every folder's counters came with the LIST
            self.assertEqual(ids, ['ID ("name" "mailsync" "version" "%s")' % self.version()])
            self.assertIn("LIST-STATUS: the folders and their counters in one command", r.stderr)
            self.assertIn("SPECIAL-USE: reading the folders' roles", r.stderr)
            self.assertIn("ID: the server is Dovecot", r.stderr)
        else:
            self.assertEqual(lists[0], 'LIST "" "*"')
            self.assertEqual(len(statuses), len(pulled))  # pipelined with the LIST
            self.assertEqual(ids, [])
            for ext in HIDDEN:
                self.assertNotIn(ext + ":", r.stderr)
        # ID, ENABLE, the STATUSes and the LIST all go out before any of
        # them is answered: no round trip of their own
        self.assertEqual(self.answered_before(px, "LIST "), [], "a command after the login was waited for")
        # a no-op: nothing opened, nothing fetched
        self.assertFalse([c for c in cmds if c.upper().startswith(("EXAMINE", "SELECT", "UID FETCH"))], cmds)

    def check_trash_auto(self):
        """A local deletion with trash = auto."""
        before = self.server_hashes()
        victim = sorted(tb.read_maildir(self.maildir)["INBOX"], key=lambda m: m.uniq)[0]
        os.unlink(victim.path)
        gone = collections.Counter([digest(victim.data)])
        r = self.mailsync("-v", "sync")
        after = self.server_hashes()
        expect = dict(before)
        expect["INBOX"] = before["INBOX"] - gone
        expect["Deleted Items"] = before["Deleted Items"] + gone
        if self.offered:
            self.assertEqual(r.code, 0, str(r))
            self.assertIn('trash = auto: the server marks "Deleted Items" as \\Trash', r.stderr)
            self.assertEqual(after, expect)          # one copy, in the \Trash folder, not in "Trash"
            local = self.local_hashes()
            del local["Junk"], expect["Junk"]         # excluded by !\Junk
            self.assertEqual(local, expect)           # the sync brought it down too
        else:
            self.assertEqual(r.code, 1, str(r))
            self.assertIn("trash = auto: the server marks no folder as \\Trash", r.stderr)
            self.assertIn("not deleted on the server", r.stderr)
            self.assertEqual(after, before)           # nothing expunged, nothing moved
            # the deletion is still pending, not forgotten: a trash named later takes it
            self.write_config(trash="Deleted Items")
            self.run_ok("sync")
            self.assertEqual(self.server_hashes(), expect)
            self.assertEqual(self.local_hashes(), expect)

    def answered_before(self, px, what):
        """The tags the server had answered, beyond the login's, when the
        client sent `what` (the transcript keeps both directions in order)."""
        up, down = b"", b""
        for is_down, data in px.transcript:
            if is_down:
                down += data
                continue
            up += data
            if what.encode() in up:
                login = int(re.search(rb"(?m)^(\d+) (?:LOGIN|AUTHENTICATE)", up).group(1))
                return [t for t in map(int, re.findall(rb"(?m)^(\d+) (?:OK|NO|BAD)", down)) if t > login]
        self.fail("%s never sent" % what)


class ExtensionsOn(ExtensionsCase, tb.BedTestCase):
    offered = True


class ExtensionsOff(ExtensionsCase, tb.BedTestCase):
    bed_options = {"hide_capabilities": HIDDEN}
    offered = False

