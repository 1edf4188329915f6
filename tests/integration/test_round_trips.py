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
import unittest

import testbed as tb


def turns(px):
    """Request/response turns in a recording proxy's transcript."""
    n, answered = 0, False
    for down, _ in px.transcript:
        if down:
            answered = True
        elif answered:
            n += 1
            answered = False
    return n


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
    bed_options = {"pool": 2}

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
        self.assertSynced()
        state = self.server_state()
        self.assertEqual({f: len(m) for f, m in state.items()},
                         {"INBOX": 7, "Archive": 6, "Archive/2024": 4, "Thư đã gửi": 5,
                          "Work/Projects/mailsync": 4})
        self.assertNoDuplicates()


if __name__ == "__main__":
    unittest.main()
