# SPDX-License-Identifier: MIT
"""test_message_id.py: odd Message-IDs and a server that sends no
APPENDUID (Dovecot without UIDPLUS and MOVE, the APPENDUID a proxy strips).

Without APPENDUID the push finds its upload on the server by size and
Message-ID, so the Message-ID it reads in the local file and the one it
reads in the server's answer must be the same string: one header parser
serves both sides. A Message-ID with a tab (inline or at a fold), and one
over 998 bytes, are each uploaded once and recorded in the same run: one
copy on each side, and a second `sync` changes nothing.
"""

import re
import sqlite3
from pathlib import Path

import testbed as tb


def strip_appenduid(stripped):
    def strip(line):
        if b"[APPENDUID " in line:
            stripped.append(line)
            line = re.sub(rb"\[APPENDUID [0-9]+ [0-9]+\] ", b"", line)
        return [line]
    return tb.line_rewriter(strip)


class OddMessageIdWithoutAppenduidTest(tb.BedTestCase):
    bed_options = {"pool": 6, "hide_capabilities": ("UIDPLUS", "MOVE")}

    def message(self, message_id_lines):
        """A local message (LF line ends) whose Message-ID header is
        message_id_lines (bytes, folded lines joined with LF)."""
        base = tb.make_message(500, size=1200, seed=11).replace(b"\r\n", b"\n")
        out = re.sub(rb"(?m)^Message-ID: [^\n]*$", lambda _: message_id_lines, base, count=1)
        self.assertNotEqual(out, base)
        return out

    def copies(self, data_lf):
        """(copies on the server, copies in the local INBOX) of data_lf."""
        with self.imap() as c:
            server = sum(1 for m in c.messages("INBOX") if m.data_lf == data_lf)
        local = sum(1 for m in tb.read_maildir(self.maildir).get("INBOX", []) if m.data == data_lf)
        return server, local

    def sync_once_each(self, message_id_lines):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=12))
        self.pull()
        data = self.message(message_id_lines)
        inbox = Path(tb.local_folder_path(self.maildir, "INBOX", "verbatim"))
        (inbox / "new" / "1700000000.oddid.host").write_bytes(data)
        stripped = []
        with tb.Proxy(self.bed.imap_port, rewrite_down=strip_appenduid(stripped)) as proxy:
            self.write_config(tls="none", port=proxy.port)
            r = self.run_ok("sync")
            self.assertTrue(stripped, "the server sent no APPENDUID to strip")
            self.assertIn("1 uploaded", r.stdout)
            self.assertEqual(self.copies(data), (1, 1))
            # a second sync changes nothing, on either side
            before_local = tb.snapshot_tree(self.maildir)
            before_server = self.server_state()
            r = self.run_ok("sync")
            self.assertIn("0 uploaded", r.stdout)
            self.assertEqual(self.copies(data), (1, 1))
            self.assertEqual(tb.snapshot_tree(self.maildir), before_local)
            self.assertEqual(self.server_state(), before_server)
        self.write_config()
        self.assertEqual(self.copies(data), (1, 1))
        self.assertSynced()
        # recorded under its file's name by the push that uploaded it
        with sqlite3.connect(self.state) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM appends").fetchone()[0], 0)
            self.assertEqual(db.execute("SELECT count(*) FROM messages WHERE uniq = ?",
                                        ("1700000000.oddid.host",)).fetchone()[0], 1)

    def test_tab_inside_the_message_id(self):
        self.sync_once_each(b"Message-ID: <tab\there@testbed.mailsync>")

    def test_tab_at_a_fold_of_the_message_id(self):
        # the blank before the line break and the tab after it: one space
        # once unfolded, whoever reads it
        self.sync_once_each(b"Message-ID: <folded.part \n\tsecond.part@testbed.mailsync>")

    def test_message_id_over_998_bytes(self):
        self.sync_once_each(b"Message-ID: <" + b"x" * 1100 + b"@testbed.mailsync>")
