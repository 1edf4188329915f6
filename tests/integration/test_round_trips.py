# SPDX-License-Identifier: MIT
"""test_round_trips.py: what a resync costs in round trips (issue 18).

Over the internet a resync's time is its round trips: each time mailsync
waits for an answer before it sends its next command costs one. Counted
here through a recording proxy on plain IMAP as turns: the times the
client sent something after the server had answered it since its last
send (the chunk order the proxy saw is deterministic: mailsync writes each
burst with one flush and then waits). The counts are today's; more
pipelining may lower them, never raise them. Every run also ends with the
Maildir equal to the server, no message twice on either side.

The turns of the session itself (plain IMAP, Dovecot): the greeting, then
AUTHENTICATE; its answer, then ID + ENABLE + LIST (with every folder's
STATUS); that answer, then whatever the folders need, and LOGOUT (whose
answer is not waited for).
"""

import collections
import re
import time
import unittest

import fakeimap as fi
import testbed as tb
from test_hostile import HostileTestCase, all_message_bytes, messages


def _turns_of(transcript):
    """Request/response turns in a list of (down, data) chunks."""
    n, answered = 0, False
    for down, _ in transcript:
        if down:
            answered = True
        elif answered:
            n += 1
            answered = False
    return n


def turns(px):
    """Request/response turns in a recording proxy's transcript."""
    return _turns_of(px.transcript)


def waits(px):
    """turns(), the server's greeting not counted as an answer: the round
    trips the client waited for after the TCP handshake. A client that
    sends its login before the greeting came waited for nothing, and
    whether the proxy passed the greeting on before or after that first
    burst is a race."""
    log, greeting = [], True
    for down, data in px.transcript:
        if down and greeting:
            greeting = False
            data = data.partition(b"\r\n")[2]
            if not data:
                continue
        log.append((down, data))
    return _turns_of(log)


def commands_by_turn(px):
    """[[command line, ...] per turn] of the client's commands (tags dropped)."""
    out, cur, answered = [], [], False
    for down, data in px.transcript:
        if down:
            answered = True
            continue
        if answered and cur:
            out.append(cur)
            cur = []
        answered = False
        cur += [line.split(b" ", 1)[1].decode(errors="replace") for line in data.split(b"\r\n")
                if b" " in line]
    if cur:
        out.append(cur)
    return out


class RoundTripsTest(tb.BedTestCase):
    bed_options = {"pool": 3}

    def via_proxy(self, command="pull"):
        """One run through a recording proxy (plain IMAP); -> the proxy."""
        px = tb.Proxy(self.bed.imap_port, record=True).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        self.run_ok(command)
        # mailsync writes its LOGOUT and exits without waiting for the
        # answer: let the proxy's pump read it before the proxy closes (on a
        # loaded machine it may not have yet, and the last turn went missing)
        tb.wait_for(lambda: b"LOGOUT" in bytes(px.upstream), timeout=5)
        px.stop()
        self.write_config()
        return px

    def assertNoDuplicates(self):
        for folder, msgs in self.server_state().items():
            bodies = collections.Counter(m.data_lf for m in msgs)
            self.assertEqual([b for b, k in bodies.items() if k > 1], [], folder)
        for folder in tb.SAMPLE_FOLDERS:
            local = tb.local_folder_path(self.maildir, folder, "verbatim")
            files = [p for d in ("cur", "new") for p in (tb.Path(local) / d).iterdir()]
            contents = collections.Counter(p.read_bytes() for p in files)
            self.assertEqual([b for b, k in contents.items() if k > 1], [], folder)

    def test_resyncs_take_few_round_trips(self):
        uids = None
        with self.imap() as c:
            uids = tb.seed_sample(c, per_folder=4, size=(500, 900))
        self.pull()
        self.assertSynced()

        # (b) no-op: greeting, login, listing; LOGOUT after the listing.
        px = self.via_proxy()
        self.assertEqual(turns(px), 3, commands_by_turn(px))
        self.assertNotIn(b"EXAMINE", bytes(px.upstream))

        # The same again: the run before found the server's capabilities
        # in its greeting and in the login's OK (this address, plain IMAP),
        # so the login goes out without waiting for the greeting and the
        # listing behind it: one burst, then LOGOUT.
        px = self.via_proxy()
        by_turn = commands_by_turn(px)
        self.assertEqual(waits(px), 1, by_turn)
        first = " ".join(by_turn[0])
        self.assertIn("AUTHENTICATE PLAIN", first)
        self.assertIn("LIST ", first)
        self.assertNotIn(b"EXAMINE", bytes(px.upstream))

        # (c) flags changed in three folders: their EXAMINEs (QRESYNC: the
        # changes come with them) go out together, one round trip for all.
        changed = ("INBOX", "Archive", "Thư đã gửi")
        with self.imap() as c:
            for folder in changed:
                c.set_flags(folder, uids[folder][:1], ["\\Flagged"])
        px = self.via_proxy()
        by_turn = commands_by_turn(px)
        examines = [i for i, t in enumerate(by_turn) for cmd in t if cmd.startswith("EXAMINE ")]
        self.assertEqual(len(examines), len(changed), by_turn)
        self.assertEqual(len(set(examines)), 1, "EXAMINEs not sent together: %s" % by_turn)
        self.assertLessEqual(turns(px), 4, by_turn)
        self.assertEqual(waits(px), 2, by_turn)  # the EXAMINEs, LOGOUT
        self.assertSynced()

        # (d) new mail in two folders: each folder's listing of the new
        # UIDs goes out with its EXAMINE, its bodies then take one more
        # round trip: two per folder with new mail (the next folder's
        # EXAMINE cannot go out before this one's bodies are asked for).
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=81, size=(500, 900), start=300))
            c.append_many("Archive", tb.make_corpus(2, seed=82, size=(500, 900), start=320))
        px = self.via_proxy()
        by_turn = commands_by_turn(px)
        examine_turns = {i for i, t in enumerate(by_turn) for cmd in t if cmd.startswith("EXAMINE ")}
        listing = [i for i, t in enumerate(by_turn) for cmd in t
                   if re.match(r"UID FETCH \d+:\* \(UID FLAGS RFC822\.SIZE\)", cmd)]
        self.assertEqual(len(listing), 2, by_turn)
        self.assertTrue(set(listing) <= examine_turns, "a listing waited for its EXAMINE: %s" % by_turn)
        self.assertLessEqual(turns(px), 7, by_turn)
        self.assertEqual(waits(px), 5, by_turn)  # 2 per folder, LOGOUT
        downloads = bytes(px.upstream).count(b"BODY.PEEK[]")
        self.assertEqual(downloads, 2, by_turn)
        self.assertSynced()

        # Flag changes in two folders and new mail in a third: the third's
        # EXAMINE and the listing of its new UIDs go out with the other
        # two EXAMINEs, one round trip for all three; its bodies follow.
        with self.imap() as c:
            c.set_flags("Archive/2024", uids["Archive/2024"][:1], ["\\Answered"])
            c.set_flags("Work/Projects/mailsync", uids["Work/Projects/mailsync"][1:2], ["\\Seen"], mode="-")
            c.append_many("Thư đã gửi", tb.make_corpus(1, seed=83, size=(500, 900), start=340))
        px = self.via_proxy()
        by_turn = commands_by_turn(px)
        examine_turns = [i for i, t in enumerate(by_turn) for cmd in t if cmd.startswith("EXAMINE ")]
        self.assertEqual(len(examine_turns), 3, by_turn)
        self.assertEqual(len(set(examine_turns)), 1, "EXAMINEs not sent together: %s" % by_turn)
        listing = [i for i, t in enumerate(by_turn) for cmd in t
                   if re.match(r"UID FETCH \d+:\* \(UID FLAGS RFC822\.SIZE\)", cmd)]
        self.assertEqual(listing, examine_turns[:1], by_turn)
        self.assertLessEqual(turns(px), 5, by_turn)
        self.assertEqual(waits(px), 3, by_turn)  # EXAMINEs, bodies, LOGOUT
        self.assertSynced()

        # (e) two local messages flagged, `sync`: SELECT, then one STORE
        # for both (which must know the SELECT succeeded on the same
        # UIDVALIDITY), nothing pulled again. (Each distinct change, such
        # as +\Flagged and -\Seen, is a STORE and a round trip of its own.)
        inbox = tb.Path(tb.local_folder_path(self.maildir, "INBOX", "verbatim"))
        unflagged = sorted(p for d in ("cur", "new") for p in (inbox / d).iterdir()
                           if "F" not in p.name.partition(":2,")[2])
        self.assertGreaterEqual(len(unflagged), 2)
        for p in unflagged[:2]:
            base, _, letters = p.name.partition(":2,")
            p.rename(inbox / "cur" / ("%s:2,%s" % (base, "".join(sorted(set(letters) | {"F"})))))
        px = self.via_proxy("sync")
        by_turn = commands_by_turn(px)
        self.assertEqual(sum(cmd.startswith("UID STORE ") for t in by_turn for cmd in t), 1, by_turn)
        self.assertLessEqual(turns(px), 5, by_turn)
        self.assertEqual(waits(px), 3, by_turn)  # SELECT, STORE, LOGOUT
        self.assertSynced()
        state = self.server_state()
        self.assertEqual({f: len(m) for f, m in state.items()},
                         {"INBOX": 7, "Archive": 6, "Archive/2024": 4, "Thư đã gửi": 5,
                          "Work/Projects/mailsync": 4})
        self.assertNoDuplicates()

        # A folder re-created on the server since the last run (a new
        # UIDVALIDITY, the same messages): the STATUS that came with the
        # listing behind the login says so, and the run re-matches the
        # files by identity as ever, downloading nothing.
        inodes = {p.name.partition(":2,")[0]: p.stat().st_ino
                  for p in tb.Path(self.maildir).rglob("*") if p.parent.name in ("cur", "new")}
        with self.imap() as c:
            before = c.status_of("Archive/2024")["UIDVALIDITY"]
            msgs = c.messages("Archive/2024")
            c.select_folder("INBOX")
            for attempt in range(5):
                c.delete_folder("Archive/2024")
                c.create_folder("Archive/2024")
                if c.status_of("Archive/2024")["UIDVALIDITY"] != before:
                    break
                time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
            for m in msgs:
                c.append_message("Archive/2024", m.data, sorted(set(m.flags) - {"\\Recent"}), m.internaldate)
        px = self.via_proxy()
        by_turn = commands_by_turn(px)
        self.assertIn("LIST ", " ".join(by_turn[0]))
        self.assertEqual(bytes(px.upstream).count(b"BODY.PEEK[]"), 0, by_turn)
        self.assertSynced()
        self.assertEqual({p.name.partition(":2,")[0]: p.stat().st_ino
                          for p in tb.Path(self.maildir).rglob("*") if p.parent.name in ("cur", "new")},
                         inodes, "files replaced after the UIDVALIDITY change")
        self.assertEqual({f: len(m) for f, m in self.server_state().items()},
                         {"INBOX": 7, "Archive": 6, "Archive/2024": 4, "Thư đã gửi": 5,
                          "Work/Projects/mailsync": 4})
        self.assertNoDuplicates()

    def test_first_pull_of_small_messages_in_few_commands(self):
        """A first pull's bodies come in few UID FETCH commands, each a round
        trip before its first byte: small messages in big commands (newest
        first: 16, 64, 256, 1,024, then up to 4,096 UIDs a command). 3,000
        messages took nine commands at 500 a command; five now."""
        n = 3000
        self.bed.seed_direct(self.user, "INBOX", tb.make_corpus(n, seed=1811, size=(300, 600), flags=False))
        px = self.via_proxy()
        by_turn = commands_by_turn(px)
        bodies = [cmd for t in by_turn for cmd in t if "BODY.PEEK[]" in cmd]
        self.assertEqual(len(bodies), 5, bodies)
        self.assertLessEqual(turns(px), 10, by_turn)
        state = self.server_state()
        self.assertEqual(len(state["INBOX"]), n)
        self.assertSynced()
        inbox = tb.Path(tb.local_folder_path(self.maildir, "INBOX", "verbatim"))
        files = [p for d in ("cur", "new") for p in (inbox / d).iterdir()]
        self.assertEqual(len(files), n)
        self.assertEqual(len({p.read_bytes() for p in files}), n)

    def test_login_ahead_when_the_server_changed(self):
        """The speculation's hostile cases against Dovecot: its
        capabilities changed since the last run (restarted with LIST-STATUS
        hidden), a wrong password. Each run ends as it would without the
        speculation."""
        with self.imap() as c:
            tb.seed_sample(c, per_folder=2, size=(500, 900))
        self.pull()
        self.assertIn("before the greeting", self.pull("-v").stderr)
        # Dovecot's imap_capability changes its greeting too: a new
        # connection, logged in the usual way, the listing without
        # LIST-STATUS (STATUS commands).
        self.bed.restart(hide_capabilities=("LIST-STATUS",))
        self.addCleanup(self.bed.restart, hide_capabilities=())
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(2, seed=91, size=(500, 900), start=400))
        r = self.pull("-v")
        self.assertIn("capabilities changed since the last run", r.stderr)
        self.assertNotIn("LIST-STATUS:", r.stderr)
        self.assertSynced()
        # the next run speculates on the new capabilities
        r = self.pull("-v")
        self.assertIn("the listing went out behind the login", r.stderr)
        self.assertNotIn("capabilities changed", r.stderr)
        # a wrong password: refused as without the speculation (exit 3),
        # nothing written, the password not echoed
        files = tb.count_messages(self.maildir)
        self.write_config(password="wrong-" + self.user.password)
        r = self.mailsync("pull", "-v")
        self.assertEqual(r.code, 3, str(r))
        self.assertIn("before the greeting", r.stderr)
        self.assertIn("authentication as", r.stderr)
        self.assertNotIn("wrong-" + self.user.password, r.stderr + r.stdout)
        self.assertEqual(tb.count_messages(self.maildir), files)
        self.write_config()
        self.pull()
        self.assertSynced()
        self.assertEqual({f: len(m) for f, m in self.server_state().items()},
                         {"INBOX": 4, "Archive": 2, "Archive/2024": 2, "Thư đã gửi": 2,
                          "Work/Projects/mailsync": 2})


PRE = "IMAP4rev1 AUTH=PLAIN SASL-IR ENABLE LITERAL+"


class LoginAheadHostileTest(HostileTestCase):
    """The login sent before the greeting and the listing behind it,
    against a scripted server (fakeimap) that shows its capabilities in
    its greeting and in the login's OK, as Dovecot does, and then changes:
    other capabilities after the login, a BYE greeting, a wrong password
    (also behind a greeting without capabilities), an OK without
    capabilities. Every run ends as it would without the speculation."""

    def setUp(self):
        super().setUp()
        self.post = "IMAP4rev1 ENABLE LITERAL+"
        self.ok_caps = True
        self.no_code = False  # a refusal without [AUTHENTICATIONFAILED]
        self.srv = self.server({"INBOX": fi.Folder(7, messages(3))}, capability=PRE,
                               greeting=b"* OK [CAPABILITY " + PRE.encode() + b"] fake ready")
        self.srv.handlers["AUTHENTICATE"] = self.authenticate
        self.write_config(self.srv)

    def authenticate(self, conn, cmd):
        """fakeimap's AUTHENTICATE, its OK with [CAPABILITY self.post]."""
        def done(c, status="OK", text=None):
            if status == "OK" and self.ok_caps:
                text = "[CAPABILITY %s] logged in" % self.post
            if status == "NO" and self.no_code:
                text = "invalid credentials"
            type(conn).done(conn, c, status, text)
        conn.done = done
        try:
            conn.do_authenticate(cmd)
        finally:
            del conn.done
        return True

    def commands(self, conn):
        return [c.name for c in self.srv.commands if c.conn == conn]

    def files(self):
        return sum(all_message_bytes(self.root).values())

    def learn(self):
        """Two runs: the first shows the server, the second speculates."""
        self.pull(expect=0)
        r = self.pull("-v", expect=0)
        self.assertIn("before the greeting", r.stderr)
        self.assertIn("the listing went out behind the login", r.stderr)
        self.assertEqual(self.commands(self.srv.connections).count("LIST"), 1)
        self.assertEqual(self.files(), 3)

    def test_other_capabilities_after_login(self):
        self.learn()
        self.post += " ID"
        self.srv.folders["INBOX"].messages.append(messages(1, b"n", start=4)[0])
        r = self.pull("-v", expect=0)
        self.assertIn("the listing sent behind the login is dropped", r.stderr)
        self.assertEqual(self.commands(self.srv.connections).count("LIST"), 2)  # dropped, asked again
        self.assertEqual(self.files(), 4)
        # the next run speculates on the new ones (ID goes along)
        r = self.pull("-v", expect=0)
        self.assertIn("the listing went out behind the login", r.stderr)
        self.assertEqual(self.commands(self.srv.connections)[:3], ["AUTHENTICATE", "ID", "LIST"])
        self.assertEqual(self.files(), 4)

    def test_ok_without_capabilities(self):
        self.learn()
        self.ok_caps = False
        r = self.pull("-v", expect=0)
        cmds = self.commands(self.srv.connections)
        self.assertIn("CAPABILITY", cmds)
        self.assertEqual(cmds.count("LIST"), 2, cmds)
        self.assertEqual(self.files(), 3)

    def test_early_login_off(self):
        """early_login = no: the memo is there, the login still waits
        for the greeting (asked after it, as on a first run)."""
        self.learn()
        self.write_config(self.srv, early_login="no")
        self.srv.folders["INBOX"].messages.append(messages(1, b"n", start=4)[0])
        n = self.srv.connections
        r = self.pull("-v", expect=0)
        self.assertNotIn("before the greeting", r.stderr)
        self.assertNotIn("behind the login", r.stderr)
        self.assertEqual(self.srv.connections, n + 1)
        self.assertEqual(self.files(), 4)
        self.write_config(self.srv)
        self.assertIn("before the greeting", self.pull("-v", expect=0).stderr)
        self.assertEqual(self.files(), 4)

    def test_bye_greeting(self):
        self.learn()
        self.srv.greeting = b"* BYE [UNAVAILABLE] too many connections"
        r = self.pull(expect=4)
        self.assertIn("too many connections", r.stderr + r.stdout)
        self.assertEqual(self.files(), 3)
        self.srv.greeting = b"* OK [CAPABILITY " + PRE.encode() + b"] fake ready"
        self.pull(expect=0)
        self.assertEqual(self.files(), 3)

    def test_wrong_password(self):
        self.learn()
        self.write_config(self.srv, password="wrong-pw")
        n = self.srv.connections
        r = self.pull("-v", expect=3)
        self.assertIn("before the greeting", r.stderr)
        self.assertNotIn("wrong-pw", r.stderr + r.stdout)
        self.assertEqual(self.srv.connections, n + 1)
        # behind a greeting without capabilities a refusal may be the
        # speculation's fault; one with [AUTHENTICATIONFAILED] (RFC 5530,
        # as Dovecot says it) is not: refused once, no second attempt
        # counted against the account
        self.srv.greeting = b"* OK fake waiting for its auth process"
        r = self.pull("-v", expect=3)
        self.assertNotIn("logging in again the usual way", r.stderr)
        self.assertEqual(self.srv.connections, n + 2)
        # without the code: asked again the usual way, then refused
        self.no_code = True
        r = self.pull("-v", expect=3)
        self.assertIn("logging in again the usual way", r.stderr)
        self.assertEqual(self.srv.connections, n + 4)
        self.assertEqual(self.files(), 3)
        self.assertEqual(self.srv.changing_commands(), [])


if __name__ == "__main__":
    unittest.main()
