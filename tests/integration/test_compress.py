# SPDX-License-Identifier: MIT
"""COMPRESS=DEFLATE (RFC 4978, issue 18 point 1): against Dovecot with its
imap_zlib plugin, with COMPRESS on (the default), off by `compress = no`,
and hidden by imap_capability, pull, push and sync reach the same end
state; -vv shows COMPRESS used only when offered and allowed; the proxy's
raw byte count shows the compression; the extra connections of
`connections = 2` compress too. Against fakeimap: a server that agrees to
COMPRESS and then sends a corrupt, ended, oversized or no deflate stream is
a clear network error (exit 4), never a crash or a hang."""
import os
import select
import shutil
import tempfile
import unittest
import zlib
from pathlib import Path

import fakeimap as fi
import testbed as tb

N = 30            # messages on the server before the first pull
SIZE = 8000       # bytes each (text: compresses several-fold)
ACTIVE = "COMPRESS DEFLATE active"


def big_text_message(i, size=400000):
    """A ~400 KB plain-text message, cheap to make (make_corpus takes
    seconds for 20 MiB): log-like lines that vary with i and the line."""
    head = (b"From: sender%d@example.org\r\nTo: me@example.org\r\nSubject: report %d\r\n"
            b"Message-ID: <big-%d@compress.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n" % (i, i, i))
    lines, n = [], len(head)
    k = 0
    while n < size:
        line = b"%06d host%03d.example.org status=%d queued as %08X for <user%d@example.net>\r\n" % (
            k, (k * 7 + i) % 251, (k * 31 + i) % 5, k * 2654435761 % (1 << 32), (k + i) % 89)
        lines.append(line)
        n += len(line)
        k += 1
    return tb.SeedMessage(head + b"".join(lines), (), 1700000000 + i)


def unique_bodies(test, messages, what):
    """No duplicate by content on one side."""
    bodies = [m.replace(b"\r\n", b"\n") for m in messages]
    test.assertEqual(len(bodies), len(set(bodies)), "duplicate message on %s" % what)


class ScenarioMixin:
    """Pull, then push + flag change + sync, through a counting proxy; the
    end state is checked on both sides."""

    def seed_server(self):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(N, seed=181, size=SIZE, kinds=("plain", "html")))
            return sum(len(m.data) for m in c.messages("INBOX"))

    def run_scenario(self, tls="none", **keys):
        """-> (result of the first pull, its proxy, results of the push and
        sync runs). End state asserted: N + 4 messages on each side (3 pushed,
        1 pulled by the sync), the same on both, no duplicate, the flag
        change on the server."""
        port = self.bed.imaps_port if tls == "implicit" else self.bed.imap_port
        px = tb.Proxy(port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls=tls, port=px.port, **keys)
        pull = self.run_ok("-vv", "pull")
        self.assertSynced()
        down_pull = px.bytes_down

        self.add_local_new(3, seed=182, size=SIZE)
        cur = Path(tb.local_folder_path(self.maildir, "INBOX")) / "cur"
        seen = sorted(f for f in os.listdir(cur) if f.endswith(":2,S"))[0]
        os.rename(cur / seen, cur / (seen[:-1] + "FS"))
        flagged = sum(1 for m in tb.read_maildir(self.maildir)["INBOX"] if "F" in m.letters)
        push = self.run_ok("-vv", "push")
        with self.imap() as c:      # news on the server for the sync to pull
            c.append_many("INBOX", tb.make_corpus(1, seed=184, size=SIZE, flags=False))
        sync = self.run_ok("-vv", "sync")

        state = self.server_state()
        self.assertEqual(len(state["INBOX"]), N + 4, "server count")
        local = tb.read_maildir(self.maildir)
        self.assertEqual(len(local["INBOX"]), N + 4, "local count")
        unique_bodies(self, [m.data for m in state["INBOX"]], "the server")
        unique_bodies(self, [m.data for m in local["INBOX"]], "the Maildir")
        self.assertEqual(sum(1 for m in state["INBOX"] if "\\Flagged" in m.flags), flagged)
        self.assertSynced(state)
        px.bytes_down_pull = down_pull
        return pull, px, (push, sync)


class CompressTest(ScenarioMixin, tb.BedTestCase):
    bed_options = {"zlib": True, "pool": 6}

    def test_on_by_default_over_tls(self):
        plain = self.seed_server()
        pull, px, later = self.run_scenario(tls="implicit")
        for r in (pull,) + later:
            self.assertIn(ACTIVE, r.stderr)
            self.assertRegex(r.stderr, r"C: \S+ COMPRESS DEFLATE")
        # the -vv trace shows the IMAP text, not deflate bytes
        self.assertRegex(pull.stderr, r"S: \* \d+ FETCH \(UID \d+")
        # 30 text messages of 8 KB: the wire carries well under half
        self.assertLess(px.bytes_down_pull, plain / 2,
                        "pull moved %d bytes for %d of mail" % (px.bytes_down_pull, plain))

    def test_compress_behind_the_login(self):
        """The second run sends its login before the greeting, the listing
        behind it and COMPRESS DEFLATE last, in one burst: COMPRESS costs
        no round trip of its own (issue 18 point 6). The runs after it
        speak deflate from its OK on."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=185, size=SIZE, flags=False))
        runs = []
        for _ in range(2):
            px = tb.Proxy(self.bed.imap_port, record=True).start()
            self.addCleanup(px.stop)
            self.write_config(tls="none", port=px.port)
            runs.append((self.run_ok("-vv", "pull"), px))
            # (mailsync does not wait for its LOGOUT's answer: let the proxy read it)
            tb.wait_for(lambda: sum(1 for down, _ in px.transcript if not down) >= 2, timeout=5)
            px.stop()
        (first, _), (second, px) = runs
        self.assertIn(ACTIVE, first.stderr)
        self.assertNotIn("behind the login", first.stderr)
        self.assertIn(ACTIVE + " (it went out behind the login)", second.stderr)
        burst = px.transcript[0][1] if not px.transcript[0][0] else px.transcript[1][1]
        for cmd in (b"AUTHENTICATE PLAIN", b"LIST ", b"COMPRESS DEFLATE"):
            self.assertIn(cmd, burst)
        self.assertTrue(burst.endswith(b"COMPRESS DEFLATE\r\n"), burst)
        # after the burst the client sent once more (its LOGOUT, deflated)
        ups = [i for i, (down, _) in enumerate(px.transcript) if not down]
        self.assertEqual(len(ups), 2, px.transcript)
        self.assertNotIn(b"LOGOUT", px.transcript[ups[1]][1])
        self.assertSynced()

    def test_off_by_config(self):
        plain = self.seed_server()
        pull, px, later = self.run_scenario(compress="no")
        for r in (pull,) + later:
            self.assertNotIn(ACTIVE, r.stderr)
            self.assertIn("COMPRESS=DEFLATE offered, not used (compress = no)", r.stderr)
        self.assertNotIn(b"COMPRESS", bytes(px.upstream))
        self.assertGreater(px.bytes_down_pull, plain, "pull moved fewer bytes than the mail")

    def test_extra_connections_compress(self):
        # ~20 MiB of text, above the 16 MiB a folder needs to be shared
        msgs = [big_text_message(i) for i in range(52)]
        self.bed.seed_direct(self.user, "INBOX", msgs)
        plain = sum(len(m.data) for m in msgs)
        px = tb.Proxy(self.bed.imap_port).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port, connections=2)
        r = self.run_ok("-v", "pull")
        self.assertIn("downloading over 2 connections", r.stderr)
        self.assertEqual(px.connections, 2)
        self.assertEqual(r.stderr.count(ACTIVE), 2, r.stderr)
        # both connections carried bodies, and both compressed them
        self.assertLess(sum(px.down_per_connection), plain / 2)
        self.assertGreater(min(px.down_per_connection), plain / 50)
        self.assertSynced()


class HiddenCompressTest(ScenarioMixin, tb.BedTestCase):
    bed_options = {"zlib": True, "pool": 2, "hide_capabilities": ("COMPRESS",)}

    def test_hidden_by_imap_capability(self):
        plain = self.seed_server()
        pull, px, later = self.run_scenario()
        for r in (pull,) + later:
            self.assertNotIn("COMPRESS", r.stderr)
        self.assertNotIn(b"COMPRESS", bytes(px.upstream))
        self.assertGreater(px.bytes_down_pull, plain)


def deflated(text):
    """text as a raw deflate stream with a sync flush (what a server sends)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH)


class HostileCompressTest(unittest.TestCase):
    """fakeimap agrees to COMPRESS DEFLATE, then misbehaves."""

    def setUp(self):
        self.work = Path(tempfile.mkdtemp(prefix="mailsync-compress-"))
        if not tb.keep_tmp():
            self.addCleanup(shutil.rmtree, self.work, True)
        self.root = self.work / "Mail"
        self.config = self.work / "config"

    def pull_against(self, after_ok, same_packet=True, timeout=10):
        folders = {"INBOX": fi.Folder(7, [fi.Message(1, (), 1600000000, b"Subject: x\r\n\r\nhi\r\n")])}

        def compress(conn, cmd):
            ok = ("%s OK DEFLATE active\r\n" % cmd.tag).encode()
            if same_packet:
                conn.send(ok + after_ok)
            else:
                conn.send(ok)
                if after_ok:
                    conn.send(after_ok)
            # then silence: what the client sends (deflated) is read and
            # dropped until it hangs up
            while not conn.server._stop.is_set():
                ready, _, _ = select.select([conn.sock], [], [], 0.2)
                if ready and not conn.sock.recv(65536):
                    break
            raise fi.ConnectionClosed()

        srv = fi.FakeImap(folders, capability=fi.DEFAULT_CAPABILITY + " COMPRESS=DEFLATE")
        srv.handlers["COMPRESS"] = compress
        srv.start()
        self.addCleanup(srv.stop)
        tb.write_config(self.config, {"hostile": {
            "host": "127.0.0.1", "port": srv.port, "tls": "none", "user": "user", "password": "pw",
            "maildir": str(self.root), "state": str(self.work / "state.sqlite"), "timeout": timeout}})
        r = tb.run_mailsync(["pull"], config=self.config, workdir=self.work, timeout=60)
        self.assertEqual(srv.errors, [])
        self.assertIn("COMPRESS", srv.names())
        self.assertEqual(r.code, 4, str(r))
        self.assertEqual(tb.message_files(self.root) if self.root.exists() else [], [])
        return r

    def test_garbage_with_the_ok(self):
        r = self.pull_against(b"* OK this is not deflate\r\n")
        self.assertIn("corrupt COMPRESS=DEFLATE stream", r.stderr)

    def test_garbage_after_the_ok(self):
        r = self.pull_against(b"\xff\xfe\xfd\xfc" * 64, same_packet=False)
        self.assertIn("corrupt COMPRESS=DEFLATE stream", r.stderr)

    def test_stream_ended(self):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        r = self.pull_against(c.compress(b"* OK bye\r\n") + c.flush(zlib.Z_FINISH))
        self.assertIn("ended its COMPRESS=DEFLATE stream", r.stderr)

    def test_huge_literal_inside_the_stream(self):
        # the framer's caps apply to the inflated text
        r = self.pull_against(deflated(b"* LIST () \"/\" {99999999999}\r\n"))
        self.assertIn("literal", r.stderr)

    def test_silence_after_the_ok(self):
        r = self.pull_against(b"", timeout=1)
        self.assertIn("timed out", r.stderr)


if __name__ == "__main__":
    unittest.main()
