# SPDX-License-Identifier: MIT
"""test_parallel.py: `-j N`, several accounts at once.

Parallel accounts end as serial ones do (both sides, counts, no
duplicates, the same --json document in config order); while one account
is stuck, the others finish; each account's text comes out whole; the exit
code is the worst of the accounts'.
"""

import collections
import os
import signal
import threading
import time
from pathlib import Path

import testbed as tb


def without_seconds(doc):
    """The document with every "seconds" member dropped (timing differs)."""
    if isinstance(doc, dict):
        return {k: without_seconds(v) for k, v in doc.items() if k != "seconds"}
    if isinstance(doc, list):
        return [without_seconds(v) for v in doc]
    return doc


class ParallelTest(tb.BedTestCase):
    bed_options = {"pool": 18}

    def seeded_accounts(self, tag, names, seed):
        """One fresh server user per name, each with mail in INBOX and
        Lists, and a local Maildir holding two messages of its own (to
        upload). {name: (user, maildir)} and the config's account keys."""
        out, keys = {}, {}
        for k, name in enumerate(names):
            user = self.bed.fresh_user()
            with self.bed.imap(user) as c:
                c.create_folder("Lists")
                c.append_many("INBOX", tb.make_corpus(4, seed=seed + k))
                c.append_many("Lists", tb.make_corpus(2, seed=seed + k, start=100, flags=False))
            maildir = self.work / tag / name
            inbox_new = maildir / "INBOX" / "new"
            for d in ("cur", "new", "tmp"):
                (maildir / "INBOX" / d).mkdir(parents=True)
            for i, m in enumerate(tb.make_corpus(2, seed=seed + k, start=200, flags=False)):
                (inbox_new / ("1700000000.loc%d.host" % i)).write_bytes(m.data.replace(b"\r\n", b"\n"))
            out[name] = (user, maildir)
            keys[name] = tb.account_keys(self.bed, user, maildir, self.work / tag / (name + ".sqlite"))
        return out, keys

    def assert_end_state(self, user, maildir):
        """Local == server, 4 + 2 + 2 messages each side, no duplicate."""
        with self.bed.imap(user) as c:
            state = c.server_state()
        tb.assert_maildir_matches(maildir, state)
        server_ids = [tb.message_id(m.data) for msgs in state.values() for m in msgs]
        local_ids = [tb.message_id(m.data) for msgs in tb.read_maildir(maildir).values() for m in msgs]
        self.assertEqual(len(server_ids), 8, state.keys())
        self.assertEqual(len(local_ids), 8)
        for ids in (server_ids, local_ids):
            dups = [i for i, n in collections.Counter(ids).items() if n > 1]
            self.assertEqual(dups, [], "duplicates")
        return {f: len(msgs) for f, msgs in state.items()}

    def test_same_end_state_and_json_as_serial(self):
        names = ("a", "b", "c")
        serial, serial_keys = self.seeded_accounts("serial", names, seed=40)
        par, par_keys = self.seeded_accounts("par", names, seed=40)
        tb.write_config(self.work / "serial.conf", serial_keys)
        tb.write_config(self.work / "par.conf", par_keys)
        s = self.mailsync("--json", "sync", config=self.work / "serial.conf")
        p = self.mailsync("--json", "-j", "3", "sync", config=self.work / "par.conf")
        self.assertEqual((s.code, p.code), (0, 0), "%s\n%s" % (s, p))
        self.assertEqual(without_seconds(p.json()), without_seconds(s.json()))
        self.assertEqual([a["name"] for a in p.json()["accounts"]], list(names))
        for name in names:
            counts = self.assert_end_state(*par[name])
            self.assertEqual(counts, self.assert_end_state(*serial[name]))
            self.assertEqual(counts, {"INBOX": 6, "Lists": 2})
        self.assertNotIn("\033[", p.stderr)  # no progress line off a terminal
        # and a second parallel run finds nothing to do, in text; its
        # progress line counts accounts and is gone at the end
        again = self.mailsync("--progress=always", "--jobs", "2", "sync", config=self.work / "par.conf")
        self.assertEqual(again.code, 0, again)
        self.assertIn("\r\033[Kaccounts 3/3 done", again.stderr)
        self.assertTrue(again.stderr.endswith("\r\033[K"), repr(again.stderr[-40:]))
        summaries = [l for l in again.stdout.splitlines() if ": sync " in l]
        self.assertEqual(sorted(l.split(":")[0] for l in summaries), list(names), again.stdout)
        self.assertTrue(all(" 0 new " in l and " 0 uploaded" in l for l in summaries), again.stdout)
        # a --folder that matches in no account is a usage error, with -j as
        # without (the children's unmatched patterns reach the parent)
        for jobs in ("1", "3"):
            miss = self.mailsync("-j", jobs, "--folder", "Nowhere*", "pull", config=self.work / "par.conf")
            self.assertEqual(miss.code, 2, miss)
            self.assertIn('--folder "Nowhere*" matches no folder in any account', miss.stderr)
            hit = self.mailsync("-j", jobs, "--folder", "Lists", "pull", config=self.work / "par.conf")
            self.assertEqual(hit.code, 0, hit)

    def test_one_stuck_account_does_not_hold_the_others_and_worst_code_wins(self):
        """slow (first in the config) is held mid-run by its proxy; fast
        and bad (a wrong password) finish meanwhile. Each account's lines
        (-v, its hook's) form one block; exit 3 (authentication)."""
        release = threading.Event()
        held = []

        def hold_after_list(line):
            if line.startswith(b"* LIST") and not held:
                held.append(line)
                release.wait(60)
            return [line]
        self.addCleanup(release.set)
        proxy = tb.Proxy(self.bed.imap_port, rewrite_down=tb.line_rewriter(hold_after_list)).start()
        self.addCleanup(proxy.stop)
        users, keys = {}, {}
        hook = "echo hook done: $MAILSYNC_ACCOUNT >&2"
        for name in ("slow", "bad", "fast"):
            users[name] = self.bed.fresh_user()
            with self.bed.imap(users[name]) as c:
                c.append_many("INBOX", tb.make_corpus(3, seed=60))
            extra = {"tls": "none", "port": proxy.port} if name == "slow" else {}
            keys[name] = tb.account_keys(self.bed, users[name], self.work / ("Mail-" + name),
                                         self.work / (name + ".sqlite"), post_sync_command=hook, **extra)
        keys["bad"]["password"] = "wrong"
        tb.write_config(self.config_path, keys)
        p = tb.start_mailsync(["-v", "-j", "3", "pull"], config=self.config_path, workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        err = lambda: Path(p.err_path).read_text()
        # fast and bad are done (their text is out) while slow is held
        self.assertTrue(tb.wait_for(lambda: "hook done: fast" in err() and "hook done: bad" in err(), timeout=20),
                        err())
        self.assertTrue(held, "slow was not held")
        self.assertIsNone(p.poll(), "the run ended while slow was held")
        self.assertEqual(tb.count_messages(self.work / "Mail-fast"), 3)
        self.assertNotIn("hook done: slow", err())
        release.set()
        r = tb.finish_mailsync(p, timeout=60)
        self.assertEqual(r.code, 3, r)
        self.assertEqual(tb.count_messages(self.work / "Mail-slow"), 3)
        self.assertEqual(tb.count_messages(self.work / "Mail-bad"), 0)
        # each account's lines (its login, its error, its hook's) form one
        # block: no line of another account comes between its first and last
        marks = {name: ("authenticating as %s " % users[name].name, "%s: " % name, "hook done: %s" % name)
                 for name in users}
        owner = [next((n for n, ms in marks.items() if any(m in line for m in ms)), None)
                 for line in r.stderr.splitlines()]
        for name in users:
            at = [i for i, o in enumerate(owner) if o == name]
            self.assertGreaterEqual(len(at), 3, r.stderr)
            self.assertEqual({o for o in owner[at[0]:at[-1] + 1] if o}, {name}, r.stderr)
        self.assertIn("error: bad: ", r.stderr)
        # stdout: slow's summary last (it ended last)
        summaries = [l.split(":")[0] for l in r.stdout.splitlines() if ": pull " in l]
        self.assertEqual(summaries[-1], "slow", r.stdout)

    def test_sigterm_stops_every_account_and_the_next_run_finishes(self):
        """SIGTERM to the program (as systemd or kill(1) sends it, not to
        the accounts' processes): every running account stops at its next
        safe point and reports, the program ends by the signal, and the
        next run brings the rest, each message once."""
        proxy = tb.Proxy(self.bed.imap_port, delay=0.02).start()
        self.addCleanup(proxy.stop)
        keys = {}
        for name in ("a", "b"):
            user = self.bed.fresh_user()
            with self.bed.imap(user) as c:
                c.append_many("INBOX", tb.make_corpus(16, seed=70, size=50000))
            keys[name] = tb.account_keys(self.bed, user, self.work / ("Mail-" + name), self.work / (name + ".sqlite"),
                                         tls="none", port=proxy.port)
        tb.write_config(self.config_path, keys)
        p = tb.start_mailsync(["-j", "2", "pull"], config=self.config_path, workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        count = lambda name: tb.count_messages(self.work / ("Mail-" + name))
        self.assertTrue(tb.wait_for(lambda: count("a") > 0 and count("b") > 0, timeout=30),
                        Path(p.err_path).read_text())
        os.kill(p.pid, signal.SIGTERM)
        r = tb.finish_mailsync(p, timeout=30)
        self.assertEqual(r.code, -signal.SIGTERM, r)
        self.assertLess(count("a") + count("b"), 32, "the run went to its end")
        self.assertEqual(sum("stopped early by a signal" in l for l in r.stdout.splitlines()), 2, r)
        r = self.mailsync("-j", "2", "pull")
        self.assertEqual(r.code, 0, r)
        for name in ("a", "b"):
            local = [tb.message_id(m.data) for msgs in tb.read_maildir(self.work / ("Mail-" + name)).values()
                     for m in msgs]
            self.assertEqual(len(set(local)), 16)
            self.assertEqual(len(local), 16)

    def test_password_prompts_take_turns_on_the_terminal(self):
        """Two accounts whose password commands prompt (on stderr) and wait
        for an answer: under -j the prompt reaches the program's stderr
        while its account is still running (not held back with the
        account's text), and the second command starts only once the first
        has answered."""
        keys = {}
        for name in ("a", "b"):
            user = self.bed.fresh_user()
            with self.bed.imap(user) as c:
                c.append_many("INBOX", tb.make_corpus(1, seed=80))
            answer = self.work / ("answer-" + name)
            script = self.work / ("prompt-" + name)
            script.write_text("echo PROMPT-%s >&2\ni=0\nwhile [ ! -e %s ] && [ $i -lt 300 ]; do sleep 0.05; "
                              "i=$((i+1)); done\ncat %s\n" % (name, answer, answer))
            cmd = "sh %s" % script
            keys[name] = tb.account_keys(self.bed, user, self.work / ("Mail-" + name), self.work / (name + ".sqlite"),
                                         password=None, password_command=cmd)
            keys[name]["_answer"] = (answer, user.password)
        answers = {n: keys[n].pop("_answer") for n in keys}
        tb.write_config(self.config_path, keys)
        p = tb.start_mailsync(["-j", "2", "pull"], config=self.config_path, workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        err = lambda: Path(p.err_path).read_text()
        prompts = lambda: [n for n in ("a", "b") if "PROMPT-" + n in err()]
        self.assertTrue(tb.wait_for(lambda: prompts(), timeout=20), err())
        first = prompts()
        self.assertEqual(len(first), 1, err())
        time.sleep(0.5)  # the other account's command would have prompted by now
        self.assertEqual(prompts(), first, "two prompts at once")
        self.assertIsNone(p.poll())
        second = "b" if first == ["a"] else "a"
        for name in (first[0], second):
            path, password = answers[name]
            # whole or not at all: the script reads the file once it exists
            tmp = path.with_suffix(".tmp")
            tmp.write_text(password + "\n")
            tmp.rename(path)
            if name == first[0]:
                self.assertTrue(tb.wait_for(lambda: "PROMPT-" + second in err(), timeout=20), err())
        r = tb.finish_mailsync(p, timeout=60)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.stderr.count("PROMPT-a") + r.stderr.count("PROMPT-b"), 2, r.stderr)
        for name in ("a", "b"):
            self.assertEqual(tb.count_messages(self.work / ("Mail-" + name)), 1)

    def test_usage(self):
        for bad in ("0", "65", "x"):
            r = self.mailsync("-j", bad, "pull")
            self.assertEqual(r.code, 2, r)
            self.assertIn("--jobs", r.stderr)
