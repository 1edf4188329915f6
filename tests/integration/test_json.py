"""test_json.py: `--json` prints exactly one JSON document on stdout for
every command, errors included, and `--json --dry-run` carries the plan
(what pull, push and sync would do) inside that document instead of
"would ..." lines before it.

The plan is a list per account: {"folder", "action", ...} with the
action one of fetch, skip, set_flags, delete_local, move_local,
delete_kept (pull), remove_on_server, store_flags, upload, create_folder,
move_on_server (push) and fetch_count (POP3).

check_run_document() is the schema of a pull/push/sync document (every
member, its type, per folder and the account's totals); other test files
use it on the documents they get.
"""

import json
import os
from pathlib import Path

import testbed as tb


def parse(test, r):
    """The whole stdout as one JSON object (fails the test otherwise)."""
    try:
        doc = json.loads(r.stdout)
    except ValueError as e:
        test.fail("stdout is not one JSON document (%s)\n%s" % (e, r))
    test.assertIsInstance(doc, dict, str(r))
    return doc


# The counters of a folder result and of an account's "totals".
COUNTS = ("fetched", "bytes", "flags_changed", "deleted", "skipped", "uploaded", "bytes_up", "flags_pushed",
          "deleted_on_server", "retired", "moved", "moved_on_server", "failed")
FOLDER_KEYS = {"name": str, "path": (str, type(None)), "stopped": bool, "status": int,
               "error": (str, type(None)), **{k: int for k in COUNTS}}
# action: the members a plan step has besides folder and action
PLAN_KEYS = {
    "fetch": {"uid": int, "size": int, "flags": str},
    "skip": {"uid": int, "size": int},
    "set_flags": {"uid": int, "flags": str},
    "delete_local": {"uid": int},
    "remove_on_server": {"uid": int},
    "store_flags": {"uid": int, "add": str, "remove": str},
    "upload": {"file": str, "flags": str},
    "delete_kept": {"file": str},
    "move_on_server": {"from": str, "uid": int, "size": int, "file": str, "flags": str},
    "create_folder": {},
    "fetch_count": {"count": int, "size": int},
    "move_local": {"uid": int, "size": int, "from": str, "from_uid": int, "flags": str},
}


def check_members(test, obj, keys, what):
    test.assertIsInstance(obj, dict, what)
    test.assertEqual(set(obj), set(keys), what)
    for k, t in keys.items():
        test.assertIsInstance(obj[k], t, "%s: %s" % (what, k))
        if t is int:
            test.assertNotIsInstance(obj[k], bool, "%s: %s" % (what, k))
            test.assertGreaterEqual(obj[k], 0, "%s: %s" % (what, k))


def check_run_document(test, doc, command=None):
    """doc (parsed) is a pull/push/sync document as the man page's JSON
    OUTPUT says: exactly these members with these types; an account's
    "totals" are the sums of its folders' counters; "plan" only in a
    dry run, each step with the members of its action."""
    check_members(test, doc, {"command": str, "dry_run": bool, "exit": int, "accounts": list}, "document")
    if command:
        test.assertEqual(doc["command"], command)
    for acc in doc["accounts"]:
        keys = {"name": str, "status": int, "error": (str, type(None)), "seconds": (int, float),
                "folders": list, "totals": dict}
        if doc["dry_run"]:
            keys["plan"] = list
        check_members(test, acc, keys, "account")
        for f in acc["folders"]:
            check_members(test, f, FOLDER_KEYS, "folder %s" % f.get("name"))
        check_members(test, acc["totals"], {"folders": int, **{k: int for k in COUNTS}}, "totals")
        test.assertEqual(acc["totals"]["folders"], len(acc["folders"]))
        for k in COUNTS:
            test.assertEqual(acc["totals"][k], sum(f[k] for f in acc["folders"]), "totals: " + k)
        for step in acc.get("plan", []):
            test.assertIn(step.get("action"), PLAN_KEYS, step)
            check_members(test, step, {"folder": str, "action": str, **PLAN_KEYS[step["action"]]}, str(step))


def plan_of(test, r):
    doc = parse(test, r)
    test.assertTrue(doc["dry_run"], str(r))
    acc = doc["accounts"][0]
    test.assertIn("plan", acc, str(r))
    return acc["plan"]


def local_files(root, folder="INBOX"):
    return {m.uniq: m for m in tb.read_maildir(root).get(folder, [])}


class JsonTest(tb.BedTestCase):
    bed_options = {"pool": 20}

    def seed_inbox(self, n=3, seed=5, start=0):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(n, seed=seed, start=start))
            return sorted(m.uid for m in c.messages("INBOX"))

    # -- dry runs: the plan is in the document ----------------------------------

    def test_dry_run_pull_plan_in_json(self):
        uids = self.seed_inbox(3)
        r = self.run_ok("--json", "--dry-run", "pull")
        plan = plan_of(self, r)
        fetch = [a for a in plan if a["action"] == "fetch"]
        self.assertEqual(sorted(a["uid"] for a in fetch), uids, r.stdout)
        for a in fetch:
            self.assertEqual(a["folder"], "INBOX")
            self.assertGreater(a["size"], 0)
            self.assertIsInstance(a["flags"], str)
        self.assertEqual(tb.count_messages(self.maildir), 0, "--dry-run delivered messages")
        self.assertNotIn("would", r.stdout)

        # after a real pull: flag change, expunge, one over max_size
        self.pull()
        with self.imap() as c:
            c.set_flags("INBOX", uids[:1], ["\\Flagged"], "+")
            c.expunge_uids("INBOX", uids[1:2])
            big = c.append_message("INBOX", tb.make_message(9, size=300000), (), 1600000001)
        self.write_config(max_size="100K", placeholders="no")
        before = tb.snapshot_tree(self.maildir)
        r = self.run_ok("--json", "--dry-run", "pull")
        plan = plan_of(self, r)
        by = {(a["action"], a.get("uid")) for a in plan}
        self.assertIn(("set_flags", uids[0]), by, r.stdout)
        self.assertIn(("delete_local", uids[1]), by, r.stdout)
        self.assertIn(("skip", big), by, r.stdout)
        flags = [a for a in plan if a["action"] == "set_flags"][0]
        self.assertIn("F", flags["flags"])
        self.assertEqual(before, tb.snapshot_tree(self.maildir), "--dry-run changed the Maildir")

    def test_dry_run_push_plan_in_json(self):
        self.seed_inbox(3)
        self.pull()
        files = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)
        with self.imap() as c:
            uid_of = {m.data_lf: m.uid for m in c.messages("INBOX")}
        flagged, gone = files[0], files[1]
        os.rename(flagged.path, Path(flagged.path).parent.parent / "cur" /
                  ("%s:2,%s" % (flagged.uniq, "".join(sorted(set(flagged.letters) | {"F"})))))
        os.unlink(gone.path)
        inbox = Path(tb.local_folder_path(self.maildir, "INBOX"))
        (inbox / "new" / "1700000000.dry.host").write_bytes(b"Subject: x\n\nhi\n")
        proj = self.maildir / "Projects"
        for sub in ("cur", "new", "tmp"):
            (proj / sub).mkdir(parents=True)
        server = self.server_state()
        r = self.run_ok("--json", "--dry-run", "push")
        plan = plan_of(self, r)
        self.assertIn({"folder": "INBOX", "action": "upload", "file": "1700000000.dry.host", "flags": ""},
                      plan, r.stdout)
        self.assertIn(("remove_on_server", uid_of[gone.data]), {(a["action"], a.get("uid")) for a in plan})
        store = [a for a in plan if a["action"] == "store_flags"]
        self.assertEqual([(a["uid"], a["add"], a["remove"]) for a in store],
                         [(uid_of[flagged.data], "F", "")], r.stdout)
        self.assertIn({"folder": "Projects", "action": "create_folder"}, plan, r.stdout)
        self.assertEqual(self.server_state(), server, "--dry-run changed the server")
        self.assertNotIn("would", r.stdout)
        # the text form is as before
        r = self.run_ok("--dry-run", "push")
        self.assertIn("INBOX: would upload 1700000000.dry.host\n", r.stdout)
        self.assertIn("Projects: would create the folder on the server (it exists only locally)\n", r.stdout)

    def test_dry_run_sync_plan_in_json(self):
        self.seed_inbox(2)
        self.pull()
        new_uids = [u for u in self.seed_inbox(2, seed=8, start=50)]
        inbox = Path(tb.local_folder_path(self.maildir, "INBOX"))
        (inbox / "new" / "1700000000.both.host").write_bytes(b"Subject: y\n\nho\n")
        server, local = self.server_state(), tb.snapshot_tree(self.maildir)
        r = self.run_ok("--json", "--dry-run", "sync")
        plan = plan_of(self, r)
        self.assertIn("1700000000.both.host", [a.get("file") for a in plan if a["action"] == "upload"])
        fetched = sorted(a["uid"] for a in plan if a["action"] == "fetch")
        self.assertEqual(fetched, new_uids[2:], r.stdout)
        self.assertEqual(self.server_state(), server)
        self.assertEqual(tb.snapshot_tree(self.maildir), local)

    def test_dry_run_pop3_plan_in_json(self):
        self.seed_inbox(4)
        self.write_config(type="pop3", port=self.bed.pop3s_port, tls="implicit")
        r = self.run_ok("--json", "--dry-run", "pull")
        plan = plan_of(self, r)
        self.assertEqual(len(plan), 1, r.stdout)
        self.assertEqual((plan[0]["folder"], plan[0]["action"], plan[0]["count"]), ("INBOX", "fetch_count", 4))
        self.assertGreater(plan[0]["size"], 0)
        self.assertEqual(tb.count_messages(self.maildir), 0)
        r = self.run_ok("--dry-run", "pull")
        self.assertIn("INBOX: would fetch 4 POP3 messages (", r.stdout)

    def test_dry_run_plans_per_account(self):
        """Two accounts: each one's plan holds its own steps only."""
        mine = self.seed_inbox(2)
        other = self.bed.fresh_user()
        with self.bed.imap(other) as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=6))
            theirs = sorted(m.uid for m in c.messages("INBOX"))
        tb.write_config(self.config_path, {
            "a": self.account_keys(),
            "b": tb.account_keys(self.bed, other, self.work / "Mail-b", self.work / "state-b.sqlite")})
        doc = parse(self, self.run_ok("--json", "--dry-run", "pull"))
        plans = {a["name"]: sorted(s["uid"] for s in a["plan"]) for a in doc["accounts"]}
        self.assertEqual(plans, {"a": mine, "b": theirs})

    def test_real_run_has_no_plan(self):
        self.seed_inbox(1)
        doc = parse(self, self.run_ok("--json", "pull"))
        self.assertFalse(doc["dry_run"])
        self.assertNotIn("plan", doc["accounts"][0])

    def test_run_documents_follow_the_schema(self):
        """pull, push, sync and their dry runs: every member of the
        documents (check_run_document), with counts that add up."""
        self.seed_inbox(3)
        doc = parse(self, self.run_ok("--json", "--dry-run", "pull"))
        check_run_document(self, doc, "pull")
        self.assertEqual(doc["accounts"][0]["totals"]["fetched"], 3)
        doc = parse(self, self.run_ok("--json", "pull"))
        check_run_document(self, doc, "pull")
        self.assertEqual((doc["accounts"][0]["totals"]["fetched"], doc["accounts"][0]["totals"]["moved"]), (3, 0))
        self.assertGreater(doc["accounts"][0]["totals"]["bytes"], 0)
        inbox = Path(tb.local_folder_path(self.maildir, "INBOX"))
        (inbox / "new" / "1700000000.schema.host").write_bytes(b"Subject: s\n\nschema\n")
        for args, up in ((["--dry-run", "push"], 1), (["--dry-run", "sync"], 1), (["push"], 1), (["sync"], 0)):
            with self.subTest(args=args):
                doc = parse(self, self.run_ok("--json", *args))
                check_run_document(self, doc, args[-1])
                self.assertEqual(doc["accounts"][0]["totals"]["uploaded"], up)

    # -- every command, one document -----------------------------------------------

    def test_every_command_prints_one_document(self):
        self.seed_inbox(2)
        for args in (["check"], ["folders"], ["status"], ["pull"], ["push"], ["sync"],
                     ["--dry-run", "pull"], ["--dry-run", "push"], ["--dry-run", "sync"], ["status"]):
            with self.subTest(args=args):
                r = self.run_ok("--json", *args)
                doc = parse(self, r)
                self.assertEqual(doc["command"], args[-1])
                self.assertEqual(doc["exit"], 0)
                self.assertEqual(doc["accounts"][0]["name"], self.account)

    def test_check_json(self):
        self.seed_inbox(1)
        with self.imap() as c:
            nfolders = len(c.list_folders(selectable_only=False))
        acc = parse(self, self.run_ok("--json", "check"))["accounts"][0]
        self.assertEqual((acc["status"], acc["error"], acc["folders"]), (0, None, nfolders))
        self.assertIn("IMAP4rev1", acc["capabilities"])
        self.assertIn("TLSv1.", acc["tls"])
        self.assertEqual((acc["user"], acc["port"]), (self.user.name, self.bed.imaps_port))
        self.assertFalse(self.maildir.exists())

    def test_folders_json(self):
        with self.imap() as c:
            tb.seed_sample(c, per_folder=1)
        self.write_config(folders='* !Archive*')
        acc = parse(self, self.run_ok("--json", "folders"))["accounts"][0]
        by = {f["name"]: f for f in acc["folders"]}
        self.assertEqual(by["INBOX"]["local_path"], "%s/INBOX" % self.maildir)
        self.assertTrue(by["INBOX"]["selected"])
        self.assertFalse(by["Archive/2024"]["selected"])
        self.assertIn("Thư đã gửi", by)
        self.assertFalse(self.maildir.exists())

    # -- errors are documents too ----------------------------------------------------

    def test_refused_connection(self):
        self.write_config(port=tb.free_port())
        for cmd in ("check", "folders", "pull", "push", "sync"):
            with self.subTest(cmd=cmd):
                r = self.mailsync("--json", cmd)
                self.assertEqual(r.code, 4, str(r))
                doc = parse(self, r)
                self.assertEqual((doc["command"], doc["exit"]), (cmd, 4))
                self.assertTrue(doc["accounts"][0]["error"], r.stdout)

    def test_config_and_usage_errors(self):
        self.config_path.write_text("[account test]\nhost = x\nfrobnicate = 1\n")
        os.chmod(self.config_path, 0o600)
        for args in (["pull"], ["status"], ["check"], ["folders"], ["--dry-run", "sync"]):
            with self.subTest(args=args):
                r = self.mailsync("--json", *args)
                self.assertEqual(r.code, 2, str(r))
                doc = parse(self, r)
                self.assertEqual((doc["command"], doc["exit"], doc["accounts"]), (args[-1], 2, []))
                self.assertIn("frobnicate", doc["error"])
                self.assertIn("frobnicate", r.stderr)  # stderr keeps the message
        self.write_config()
        for args, word in ((["pull", "nosuchaccount"], "nosuchaccount"), (["frobnicate"], "frobnicate"),
                           (["watch", "--dry-run"], "dry-run")):
            with self.subTest(args=args):
                r = self.mailsync("--json", *args)
                self.assertEqual(r.code, 2, str(r))
                doc = parse(self, r)
                self.assertEqual(doc["exit"], 2)
                self.assertIn(word, doc["error"])
