# SPDX-License-Identifier: MIT
"""test_errors.py: exit codes and failure behaviour of `mailsync pull`.

The contract's codes: 2 usage/config (with FILE:LINE), 3 authentication,
4 network/TLS (closed port, untrusted/expired/wrong-host certificate, wrong
pin, STARTTLS missing), 5 local storage (missing Maildir root after a sync),
75 account locked by a concurrent run. Also the TLS modes that must work:
implicit TLS, STARTTLS, plaintext on loopback, a pinned certificate.
"""

import os
import re
import shutil
import time
import subprocess
import unittest

import testbed as tb


class ErrorsTest(tb.BedTestCase):
    bed_options = {"pool": 30}

    def seed(self, n=5):
        with self.imap() as c:
            c.create_folder("Archive/2024")
            c.append_many("INBOX", tb.make_corpus(n, seed=11))
            c.append_many("Archive/2024", tb.make_corpus(n, seed=12, start=n))

    def assertNoMail(self):
        self.assertEqual(tb.count_messages(self.maildir), 0, "messages were written")

    # -- authentication -------------------------------------------------------

    def test_wrong_password_exits_3(self):
        self.seed(2)
        self.write_config(password="wrong-" + self.user.password)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 3, str(r))
        self.assertTrue(r.stderr.strip(), "no error message")
        self.assertNotIn("wrong-" + self.user.password, r.stderr + r.stdout, "password echoed")
        self.assertNoMail()

    def test_unknown_user_exits_3(self):
        self.write_config(user="nobody-here")
        r = self.mailsync("pull")
        self.assertEqual(r.code, 3, str(r))

    # -- network and TLS -------------------------------------------------------

    def test_untrusted_certificate_exits_4(self):
        self.seed(2)
        self.write_config(ca_file=self.bed.other_ca_file)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 4, str(r))
        self.assertIn("certificate", r.stderr.lower())
        self.assertNoMail()

    def test_system_store_does_not_trust_test_ca(self):
        self.write_config(ca_file=None)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 4, str(r))
        self.assertIn("certificate", r.stderr.lower())

    def _hashed_dir(self, name, ca):
        """A certificate directory holding ca under its subject-hash name,
        as /etc/ssl/certs holds the system's."""
        d = self.work / name
        d.mkdir()
        h = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca)],
                           stdout=subprocess.PIPE, check=True, text=True).stdout.strip()
        shutil.copy(str(ca), str(d / "test-ca.pem"))
        os.symlink("test-ca.pem", str(d / ("%s.0" % h)))
        return d

    def test_system_store_directory_and_file(self):
        """Without ca_file the system store is used the cheap way: the
        hashed directory, read only for the issuers a chain needs (not the
        whole bundle, 20-25 ms each run); SSL_CERT_FILE still wins."""
        self.seed(2)
        self.write_config(ca_file=None)
        good = self._hashed_dir("certs-good", self.bed.ca_file)
        other = self._hashed_dir("certs-other", self.bed.other_ca_file)
        def pull(extra):
            env = tb.mailsync_env(self.work, extra=extra)
            if "SSL_CERT_FILE" not in extra:
                env.pop("SSL_CERT_FILE", None)
            return tb.run_mailsync(["pull"], config=self.config_path, env=env)
        r = pull({"SSL_CERT_DIR": str(good)})
        self.assertEqual(r.code, 0, str(r))
        self.assertSynced()
        r = pull({"SSL_CERT_DIR": str(other)})
        self.assertEqual(r.code, 4, str(r))
        r = pull({"SSL_CERT_DIR": str(other), "SSL_CERT_FILE": str(self.bed.ca_file)})
        self.assertEqual(r.code, 0, str(r))

    def test_pinned_fingerprint_works_without_ca(self):
        self.seed(2)
        self.write_config(ca_file=None, fingerprint=self.bed.fingerprint)
        self.pull()
        self.assertSynced()

    def test_wrong_fingerprint_exits_4(self):
        wrong = tb.cert_fingerprint(self.bed.pki.server_cert("otherca")[0])
        self.write_config(fingerprint=wrong)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 4, str(r))
        self.assertNoMail()

    def test_closed_port_exits_4(self):
        self.write_config(port=tb.free_port())
        t0 = time.monotonic()
        r = self.mailsync("pull", timeout=60)
        self.assertEqual(r.code, 4, str(r))
        self.assertLess(time.monotonic() - t0, 30, "refused connection took too long")
        self.assertTrue(r.stderr.strip())

    def test_connection_cut_mid_message_exits_4(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(4, seed=14, size=30000, flags=False))
        with tb.Proxy(self.bed.imaps_port, cut_after=45000) as px:
            self.write_config(port=px.port)
            r = self.mailsync("pull", timeout=90)
        self.assertEqual(r.code, 4, str(r))
        # Whatever was delivered is complete: no truncated message.
        server = {m.data_lf for m in self.server_state()["INBOX"]}
        for msgs in tb.read_maildir(self.maildir).values():
            for m in msgs:
                self.assertIn(m.data, server, "truncated or altered file %s" % m.path)
        self.assertLess(tb.count_messages(self.maildir), 4)
        self.write_config()
        self.pull()
        self.assertSynced()

    def test_implicit_tls_with_hostname(self):
        self.seed(3)
        self.write_config(host="localhost", tls="implicit")
        self.pull()
        self.assertSynced()

    def test_starttls_works(self):
        self.seed(3)
        with tb.Proxy(self.bed.imap_port, record=True) as px:
            self.write_config(tls="starttls", port=px.port)
            self.pull()
        self.assertSynced()
        up = bytes(px.upstream)
        self.assertIn(b"STARTTLS", up.upper())
        self.assertNotIn(self.user.password.encode(), up, "password sent in clear")

    def test_plaintext_on_loopback_works(self):
        self.seed(2)
        self.write_config(tls="none", port=self.bed.imap_port)
        self.pull()
        self.assertSynced()

    def test_tls_none_refused_for_remote_host(self):
        self.write_config(tls="none", host="imap.example.org", port=143)
        r = self.mailsync("pull", timeout=60)
        self.assertEqual(r.code, 2, str(r))

    # -- configuration and usage ----------------------------------------------

    def config_error(self, text, line):
        """Write a raw config; expect exit 2 naming FILE:LINE on stderr."""
        with open(self.config_path, "w") as f:
            f.write(text)
        os.chmod(self.config_path, 0o600)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 2, str(r))
        path = str(self.config_path)
        pat = r"(%s|%s):%d\b" % (re.escape(path), re.escape(os.path.basename(path)), line)
        self.assertRegex(r.stderr, pat, "stderr does not name FILE:%d" % line)
        self.assertNoMail()

    def base_lines(self):
        k = self.account_keys()
        return ["[account test]"] + ["%s = %s" % (key, v) for key, v in k.items()]

    def test_bad_config_syntax(self):
        lines = self.base_lines()
        lines.insert(3, "this line has no equals sign")
        self.config_error("\n".join(lines) + "\n", 4)

    def test_bad_config_value(self):
        lines = self.base_lines()
        i = lines.index("tls = implicit")
        lines[i] = "tls = sometimes"
        self.config_error("\n".join(lines) + "\n", i + 1)

    def test_bad_config_unknown_key(self):
        lines = ["# comment", ""] + self.base_lines()
        lines.insert(5, "hots = typo.example.org")
        self.config_error("\n".join(lines) + "\n", 6)

    def test_bad_config_missing_required_key(self):
        lines = [l for l in self.base_lines() if not l.startswith("host")]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = self.mailsync("pull")
        self.assertEqual(r.code, 2, str(r))
        self.assertIn("host", r.stderr)

    def test_password_in_readable_config_refused(self):
        self.write_config(file_mode=0o644)
        r = self.mailsync("pull")
        self.assertEqual(r.code, 2, str(r))
        self.assertNoMail()

    def test_unknown_account_and_command(self):
        r = self.mailsync("pull", "no-such-account")
        self.assertEqual(r.code, 2, str(r))
        r = self.mailsync("frobnicate")
        self.assertEqual(r.code, 2, str(r))
        r = self.mailsync("pull", config=self.work / "does-not-exist")
        self.assertEqual(r.code, 2, str(r))

    # -- local storage ---------------------------------------------------------

    def test_missing_maildir_root_after_sync_exits_5(self):
        self.seed(5)
        self.pull()
        state_before = self.server_state()
        moved = self.work / "Mail.moved"
        os.rename(self.maildir, moved)            # "the disk is not mounted"
        snap = tb.snapshot_tree(moved)
        # `sync` joins this list once push exists (it exits 2 until then)
        for cmd in ("pull",):
            with self.subTest(command=cmd):
                r = self.mailsync(cmd)
                self.assertEqual(r.code, 5, str(r))
                self.assertTrue(r.stderr.strip())
                self.assertEqual(self.server_state(), state_before, "%s changed the server" % cmd)
                self.assertEqual(tb.snapshot_tree(moved), snap)
        self.assertFalse(self.maildir.exists() and tb.count_messages(self.maildir),
                         "messages re-downloaded into a recreated root")

    # -- locking ---------------------------------------------------------------

    def test_concurrent_run_exits_75(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(60, seed=13, size=20000, flags=False))
        with tb.Proxy(self.bed.imaps_port, delay=0.01, chunk=4096) as px:
            self.write_config(port=px.port)
            first = tb.start_mailsync(["pull"], config=self.config_path, workdir=self.work)
            try:
                deadline = time.monotonic() + 30
                while px.bytes_down < 20000 and time.monotonic() < deadline:
                    self.assertIsNone(first.poll(), "first run ended early")
                    time.sleep(0.02)
                self.assertIsNone(first.poll(), "first run finished before the second started")
                t0 = time.monotonic()
                second = self.mailsync("pull", timeout=60)
                self.assertEqual(second.code, 75, str(second))
                self.assertLess(time.monotonic() - t0, 10, "a locked run must exit at once")
                self.assertIsNone(first.poll(), "the second run disturbed the first")
                px.delay = 0
            finally:
                res = tb.finish_mailsync(first, timeout=120)
        self.assertEqual(res.code, 0, str(res))
        self.write_config()
        self.assertSynced()


class CertificateErrorsTest(tb.BedTestCase):
    """Certificates that must be refused (server restarted with each)."""
    bed_options = {"pool": 10}

    def check_refused(self, kind, words=("certificate",)):
        with self.imap() as c:
            c.append_message("INBOX", tb.make_message(1))
        self.bed.restart(cert=kind)
        try:
            r = self.mailsync("pull")
        finally:
            self.bed.restart(cert="good")
        self.assertEqual(r.code, 4, str(r))
        self.assertTrue(any(w in r.stderr.lower() for w in words),
                        "stderr names none of %s:\n%s" % (words, r.stderr))
        self.assertEqual(tb.count_messages(self.maildir), 0)

    def test_expired_certificate(self):
        self.check_refused("expired")

    def test_wrong_host_certificate(self):
        self.check_refused("wronghost", ("certificate", "host", "mismatch"))

    def test_self_signed_certificate(self):
        self.check_refused("selfsigned")


class NoTlsServerTest(tb.BedTestCase):
    """A server without TLS: STARTTLS must fail with 4 and send no password."""
    bed_options = {"pool": 4, "ssl": False}

    def test_starttls_missing_exits_4(self):
        with tb.Proxy(self.bed.imap_port, record=True) as px:
            self.write_config(tls="starttls", port=px.port, ca_file=None)
            r = self.mailsync("pull")
        self.assertEqual(r.code, 4, str(r))
        up = bytes(px.upstream)
        self.assertNotIn(self.user.password.encode(), up, "password sent without TLS")
        self.assertNotIn(b" LOGIN ", up.upper())
        self.assertNotIn(b" AUTHENTICATE ", up.upper())


if __name__ == "__main__":
    unittest.main()
