# SPDX-License-Identifier: MIT
"""test_testbed.py: self-test of the integration test bed (testbed.py).

Does not need the mailsync binary: it checks that the private Dovecot starts
and stops cleanly, that seeding and reading back work, that the test PKI
behaves (trusted, untrusted, expired, wrong host, pinned fingerprint), that
POP3 works, and that compare_maildir() accepts a correct Maildir and
reports each kind of difference. If this fails, every other integration
test result is meaningless.
"""

import os
import shutil
import socket
import ssl
import tempfile
import time
import unittest
from pathlib import Path

import testbed as tb


def reference_pull(state, root):
    """A minimal correct 'pull' written in Python: the Maildir the contract
    asks for, used to validate compare_maildir() itself."""
    for folder, msgs in state.items():
        path = tb.local_folder_path(root, folder)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)
        for m in msgs:
            letters = m.letters
            name = "%d.M%dP1.test" % (m.internaldate, m.uid)
            fp = os.path.join(path, "cur" if letters else "new",
                              name + (":2," + letters if letters else ""))
            with open(fp, "wb") as f:
                f.write(m.data_lf)
            os.utime(fp, (m.internaldate, m.internaldate))


def tls_greeting(port, ctx, hostname="localhost"):
    with socket.create_connection((tb.HOST, port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=hostname) as ss:
            return ss.recv(512), ss.getpeercert(binary_form=True)


class CodecTest(unittest.TestCase):
    def test_mutf7(self):
        cases = {"INBOX": "INBOX", "Thư đã gửi": "Th&AbA- &AREA4w- g&Hu0-i",
                 "a&b": "a&-b", "日本語": "&ZeVnLIqe-", "~peter/mail/台北": "~peter/mail/&U,BTFw-"}
        for utf8, enc in cases.items():
            self.assertEqual(tb.mutf7_encode(utf8), enc)
            self.assertEqual(tb.mutf7_decode(enc), utf8)

    def test_dates_and_sets(self):
        self.assertEqual(tb.parse_imap_date(" 7-Jul-1996 02:44:25 -0700"), 836732665)
        self.assertEqual(tb.parse_imap_date(tb.imap_date(1700000000).strip('"')), 1700000000)
        self.assertEqual(tb.uid_set([5, 1, 2, 3, 9, 10]), "1:3,5,9:10")
        self.assertEqual(tb.flags_to_letters({"\\Seen", "\\Recent", "$Forwarded", "\\Flagged",
                                              "$Label1"}), "FPS")

    def test_generator_deterministic(self):
        a = tb.make_corpus(12, seed=3, size=(500, 5000))
        b = tb.make_corpus(12, seed=3, size=(500, 5000))
        self.assertEqual([m.data for m in a], [m.data for m in b])
        kinds = {k: tb.make_message(1, kind=k, size=3000) for k in tb.KINDS}
        self.assertFalse(kinds["nonl"].endswith(b"\n"))
        self.assertIn("Chào".encode(), kinds["8bit"])
        self.assertIn(b"multipart/mixed", kinds["multipart"])
        self.assertTrue(kinds["headeronly"].endswith(b"\r\n\r\n"))
        big = tb.make_message(2, size=50000)
        self.assertTrue(45000 < len(big) < 55000, len(big))


class DovecotTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bed = tb.Dovecot(pool=12)
        cls.addClassCleanup(cls.bed.stop)
        cls.bed.start()

    def test_seed_list_and_read_back(self):
        user = self.bed.fresh_user()
        with self.bed.imap(user) as c:
            uids = tb.seed_sample(c, per_folder=4)
            self.assertEqual(c.list_folders(), sorted(tb.SAMPLE_FOLDERS))
            state = c.server_state()
        self.assertEqual(set(state), set(tb.SAMPLE_FOLDERS))
        expected = tb.make_corpus(4, seed=1, size=(600, 6000), start=0)
        inbox = state["INBOX"]
        self.assertEqual([m.uid for m in inbox], uids["INBOX"])
        for sm, seedm in zip(inbox, expected):
            self.assertEqual(sm.data, seedm.data)
            self.assertEqual(sm.internaldate, seedm.date)
            self.assertEqual(sm.letters, tb.flags_to_letters(seedm.flags))
        # The non-ASCII folder is stored under its UTF-8 name on the server.
        self.assertTrue((self.bed.server_maildir(user) / "Thư đã gửi").is_dir())

    def test_changes_behind_the_back(self):
        user = self.bed.fresh_user()
        with self.bed.imap(user) as c:
            c.create_folder("Archive/2024")
            msgs = tb.make_corpus(5, flags=False)
            uids = c.append_many("Archive/2024", msgs)
            c.set_flags("Archive/2024", uids[:2], ["\\Seen", "$Forwarded"])
            c.set_flags("Archive/2024", uids[:1], ["\\Seen"], "-")
            c.expunge_uids("Archive/2024", [uids[4]])
            got = c.messages("Archive/2024")
            self.assertEqual([m.uid for m in got], uids[:4])
            self.assertEqual([m.letters for m in got], ["P", "PS", "", ""])
            c.append_message("INBOX", b"Subject: raw\r\n\r\nno newline", date=86400 * 365)
            raw = c.messages("INBOX")[0]
            self.assertEqual(raw.data, b"Subject: raw\r\n\r\nno newline")
            self.assertEqual(raw.internaldate, 86400 * 365)
            c.create_folder("Gone")
            c.delete_folder("Gone")
            self.assertNotIn("Gone", c.list_folders())
            st = c.status_of("Archive/2024")
            self.assertEqual(st["MESSAGES"], 4)
            self.assertEqual(st["UIDNEXT"], uids[4] + 1)
            self.assertGreater(st["HIGHESTMODSEQ"], 0)
            self.assertIn("CONDSTORE", c.capability_list())

    def test_users_are_isolated(self):
        a, b = self.bed.fresh_user(), self.bed.fresh_user()
        with self.bed.imap(a) as c:
            c.append_message("INBOX", tb.make_message(1))
        with self.bed.imap(b) as c:
            self.assertEqual(c.messages("INBOX"), [])

    def test_tls_trusted_ca_and_starttls(self):
        ctx = self.bed.ssl_context()
        greeting, der = tls_greeting(self.bed.imaps_port, ctx)
        self.assertTrue(greeting.startswith(b"* OK"), greeting)
        self.assertEqual(tb.cert_fingerprint(self.bed.cert_file),
                         "sha256:" + ":".join("%02X" % x for x in __import__("hashlib").sha256(der).digest()))
        self.assertEqual(self.bed.fingerprint, tb.cert_fingerprint(self.bed.cert_file))
        # By IP address too (the certificate has IP:127.0.0.1).
        tls_greeting(self.bed.imaps_port, ctx, hostname="127.0.0.1")
        c = tb.ImapClient(tb.HOST, self.bed.imap_port)
        try:
            self.assertIn("STARTTLS", c.capabilities)
            c.starttls(ssl_context=ctx)
            c.login("alice", "secret")
        finally:
            c.logout()
        greeting, _ = tls_greeting(self.bed.pop3s_port, ctx)
        self.assertTrue(greeting.startswith(b"+OK"), greeting)

    def test_tls_untrusted_ca_fails(self):
        ctx = ssl.create_default_context(cafile=self.bed.other_ca_file)
        with self.assertRaises(ssl.SSLCertVerificationError):
            tls_greeting(self.bed.imaps_port, ctx)
        ctx = ssl.create_default_context(cafile=self.bed.ca_file)
        with self.assertRaises(ssl.SSLCertVerificationError):
            tls_greeting(self.bed.imaps_port, ctx, hostname="other.example.org")

    def test_pop3(self):
        user = self.bed.fresh_user()
        with self.bed.imap(user) as c:
            c.append_many("INBOX", tb.make_corpus(3, flags=False))
        p = self.bed.pop3(user)
        try:
            count, size = p.stat()
            self.assertEqual(count, 3)
            self.assertEqual(len(p.uidl()[1]), 3)
        finally:
            p.quit()

    def test_compare_maildir(self):
        user = self.bed.fresh_user()
        with self.bed.imap(user) as c:
            tb.seed_sample(c, per_folder=5, seed=7)
            c.append_message("INBOX", tb.make_message(99, kind="nonl"), ["\\Seen"], 1600000000)
            state = c.server_state()
        root = Path(tempfile.mkdtemp(prefix="mailsync-tbtest-"))
        self.addCleanup(shutil.rmtree, root, True)
        reference_pull(state, root)
        self.assertEqual(tb.compare_maildir(root, state), [])
        self.assertTrue((root / "Thư đã gửi" / "cur").is_dir())
        self.assertTrue((root / "Archive" / "2024" / "new").is_dir())
        snap = tb.snapshot_tree(root)
        self.assertEqual(tb.count_messages(root), sum(len(v) for v in state.values()))

        local = tb.read_maildir(root)
        victim = local["Archive/2024"][0]
        # Wrong mtime.
        os.utime(victim.path, (1, 1))
        self.assertEqual(len(tb.compare_maildir(root, state)), 1)
        self.assertEqual(tb.compare_maildir(root, state, check_mtime=False), [])
        self.assertNotEqual(tb.snapshot_tree(root), snap)
        # Duplicate copy.
        dup = victim.path.replace(victim.uniq, victim.uniq + "dup")
        shutil.copy(victim.path, dup)
        probs = tb.compare_maildir(root, state, check_mtime=False)
        self.assertTrue(any("extra local message" in p for p in probs), probs)
        os.unlink(dup)
        # Missing message.
        data = Path(victim.path).read_bytes()
        os.unlink(victim.path)
        probs = tb.compare_maildir(root, state, check_mtime=False)
        self.assertTrue(any("missing locally" in p for p in probs), probs)
        # Modified content (CRLF kept instead of LF) counts as missing+extra.
        Path(victim.path).write_bytes(data.replace(b"\n", b"\r\n"))
        probs = tb.compare_maildir(root, state, check_mtime=False)
        self.assertEqual(len(probs), 2, probs)
        Path(victim.path).write_bytes(data)
        # Wrong flags.
        other = local["INBOX"][0]
        os.rename(other.path, os.path.join(root, "INBOX", "cur", other.uniq + ":2,FT"))
        probs = tb.compare_maildir(root, state, check_mtime=False)
        self.assertTrue(any("flags" in p for p in probs), probs)
        # Missing folder.
        shutil.rmtree(root / "Work")
        probs = tb.compare_maildir(root, state, check_mtime=False)
        self.assertTrue(any("folder 'Work/Projects/mailsync' missing" in p for p in probs), probs)

    def test_seed_direct(self):
        user = self.bed.fresh_user()
        with self.bed.imap(user) as c:            # creates the home directory
            c.create_folder("Bulk")
        msgs = tb.make_corpus(20, seed=5)
        stored = self.bed.seed_direct(user, "Bulk", msgs)
        self.assertEqual(len(stored), 20)
        self.assertTrue(any("$Forwarded" in m.flags for m in msgs))
        self.assertFalse(any("$Forwarded" in m.flags for m in stored))
        with self.bed.imap(user) as c:
            got = c.messages("Bulk")
        self.assertEqual(sorted(m.data for m in got), sorted(m.data for m in msgs))
        self.assertEqual(sorted((m.internaldate, m.letters) for m in got),
                         sorted((m.date, tb.flags_to_letters(m.flags)) for m in stored))

    def test_proxy(self):
        with tb.Proxy(self.bed.imap_port, delay=0.05, chunk=64) as px:
            c = tb.ImapClient(tb.HOST, px.port)
            t0 = time.monotonic()
            c.login("alice", "secret")
            c.logout()
            self.assertGreater(time.monotonic() - t0, 0.1)
            self.assertGreater(px.bytes_down, 100)
        with tb.Proxy(self.bed.imap_port, cut_after=10) as px:
            with self.assertRaises((OSError, EOFError, tb.imaplib.IMAP4.abort,
                                    tb.imaplib.IMAP4.error)):
                c = tb.ImapClient(tb.HOST, px.port, timeout=5)
                c.login("alice", "secret")

    def test_config_writer(self):
        d = Path(tempfile.mkdtemp(prefix="mailsync-tbtest-"))
        self.addCleanup(shutil.rmtree, d, True)
        user = self.bed.fresh_user()
        keys = tb.account_keys(self.bed, user, d / "Mail", d / "s.sqlite", tls="starttls",
                               mode="backup", ca_file=None)
        path = tb.write_config(d / "config", {"x": keys})
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        text = Path(path).read_text()
        self.assertIn("[account x]", text)
        self.assertIn("port = %d" % self.bed.imap_port, text)
        self.assertIn("mode = backup", text)
        self.assertNotIn("ca_file", text)


class CertVariantsTest(unittest.TestCase):
    """restart(cert=...) serves the odd certificates on the same ports."""

    def test_restart_with_bad_certs(self):
        with tb.Dovecot(pool=1) as bed:
            port = bed.imaps_port
            with bed.imap() as c:
                c.append_message("INBOX", tb.make_message(1))
            ctx = bed.ssl_context()
            for kind, needle in (("expired", "expired"), ("wronghost", "match"),
                                 ("otherca", "local issuer"), ("selfsigned", "self")):
                bed.restart(cert=kind)
                self.assertEqual(bed.imaps_port, port)
                with self.assertRaises(ssl.SSLCertVerificationError) as cm:
                    tls_greeting(bed.imaps_port, ctx)
                self.assertIn(needle, str(cm.exception).lower())
            # Pinning still identifies the served certificate.
            nctx = ssl._create_unverified_context()
            _, der = tls_greeting(bed.imaps_port, nctx)
            self.assertEqual(tb.cert_fingerprint(bed.cert_file),
                             "sha256:" + ":".join("%02X" % x for x in __import__("hashlib").sha256(der).digest()))
            bed.restart(cert="good")
            tls_greeting(bed.imaps_port, ctx)
            with bed.imap() as c:        # the mail survived the restarts
                self.assertEqual(len(c.messages("INBOX")), 1)
            pid = bed.proc.pid
        self.assertIsNone(bed.proc)
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        self.assertFalse(tb.port_open(port))
        self.assertFalse(bed.dir.exists())

    def test_hide_capabilities(self):
        with tb.Dovecot(pool=1, hide_capabilities=("CONDSTORE", "QRESYNC", "MOVE")) as bed:
            with bed.imap() as c:
                caps = [x.upper() for x in c.capability_list()]
        self.assertIn("UIDPLUS", caps)
        for hidden in ("CONDSTORE", "QRESYNC", "MOVE"):
            self.assertNotIn(hidden, caps)


if __name__ == "__main__":
    unittest.main()
