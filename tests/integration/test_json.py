# SPDX-License-Identifier: MIT
"""test_json.py: `--json` prints exactly one JSON document on stdout for
every command, errors included, and `--json --dry-run` carries the plan
(what pull, push and sync would do) inside that document instead of
"would ..." lines before it.

Every document seen here (and by Result.json() in any test) is validated
against the schema, contrib/json/mailsync.schema.json (draft 2020-12,
python3-jsonschema); test_the_schema_bites proves the check fails on an
undocumented or missing member.

The plan is a list per account: {"folder", "action", ...} with the
action one of fetch, skip, set_flags, delete_local, move_local,
delete_kept (pull), remove_on_server, store_flags, upload, create_folder,
move_on_server (push) and fetch_count (POP3).

check_run_document() is the schema of a pull/push/sync document (every
member, its type, per folder and the account's totals); other test files
use it on the documents they get.
"""

import copy
import fcntl
import json
import os
import signal
from pathlib import Path

import testbed as tb


def parse(test, r):
    """The whole stdout as one JSON object that follows the schema
    (contrib/json/mailsync.schema.json); fails the test otherwise."""
    try:
        doc = json.loads(r.stdout)
    except ValueError as e:
        test.fail("stdout is not one JSON document (%s)\n%s" % (e, r))
    test.assertIsInstance(doc, dict, str(r))
    schema_check(test, doc, str(r))
    return doc


def schema_check(test, doc, what=""):
    errors = tb.json_schema_errors(doc)
    if errors:
        test.fail("the document breaks the schema:\n%s\n%s\n%s" % ("\n".join(errors), json.dumps(doc)[:3000], what))


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
    "retire": {"uid": int},
    "retire_count": {"count": int},
    "move_local": {"uid": int, "size": int, "from": str, "from_uid": int, "flags": str},
    "link": {"uid": int, "size": int, "from": str, "flags": str},
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
    check_members(test, doc, {"schema_version": str, "command": str, "dry_run": bool, "exit": int,
                              "accounts": list}, "document")
    schema_check(test, doc)
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
    if doc["dry_run"]:
        plan_counts_agree(test, doc)


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


def plan_counts_agree(test, doc):
    """In a dry run, per folder: the plan's steps of an action add up to
    the folder's counter (what the schema's "plan" description says)."""
    counter_of = {"fetch": "fetched", "link": "fetched", "skip": "skipped", "set_flags": "flags_changed",
                  "delete_local": "deleted", "delete_kept": "deleted", "move_local": "moved",
                  "upload": "uploaded", "store_flags": "flags_pushed", "remove_on_server": "deleted_on_server",
                  "move_on_server": "moved_on_server", "retire": "retired"}
    for acc in doc["accounts"]:
        want = {}
        for step in acc["plan"]:
            if step["action"] in ("fetch_count", "retire_count"):
                key = (step["folder"], "fetched" if step["action"] == "fetch_count" else "retired")
                want[key] = want.get(key, 0) + step["count"]
            elif step["action"] in counter_of:
                key = (step["folder"], counter_of[step["action"]])
                want[key] = want.get(key, 0) + 1
        got = {(f["name"], c): f[c] for f in acc["folders"] for c in set(counter_of.values()) if f[c]}
        test.assertEqual(got, want, json.dumps(acc))


class JsonSchemaTest(tb.BedTestCase):
    """The schema file: every command's documents, success and failure,
    follow it, and it rejects what it does not document."""
    bed_options = {"pool": 12}

    def seed_inbox(self, n=3, seed=5):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(n, seed=seed))
            return sorted(m.uid for m in c.messages("INBOX"))

    def test_the_schema_bites(self):
        """Real documents validate; each one changed a little does not."""
        self.seed_inbox(2)
        with self.imap() as c:
            c.set_flags("INBOX", [1], ["\\Flagged", "\\Seen"], "+")
        dry = parse(self, self.run_ok("--json", "--dry-run", "pull"))
        real = parse(self, self.run_ok("--json", "pull"))
        status = parse(self, self.run_ok("--json", "status"))
        check = parse(self, self.run_ok("--json", "check"))
        folders = parse(self, self.run_ok("--json", "folders"))
        error = parse(self, self.mailsync("--json", "frobnicate"))
        bad_config = self.work / "bad-config"
        bad_config.write_text("[account x]\nhots = h\n")
        bad_config.chmod(0o600)
        config_error = parse(self, self.mailsync("--json", "-c", bad_config, "pull"))
        self.assertEqual(dry["schema_version"], "1.2")
        # (a first pull plans the newest first: UID 1's step is not the first)
        self.assertIn("FS", [s for s in dry["accounts"][0]["plan"] if s.get("uid") == 1][0]["flags"])

        def acc(d):
            return d["accounts"][0]

        mutations = [
            ("an undocumented member", dry, lambda d: d.update(extra=1)),
            ("an undocumented account member", real, lambda d: acc(d).update(extra=1)),
            ("an undocumented folder member", real, lambda d: acc(d)["folders"][0].update(extra=1)),
            ("an undocumented totals member", real, lambda d: acc(d)["totals"].update(extra=1)),
            ("no schema_version", real, lambda d: d.pop("schema_version")),
            ("another schema_version", real, lambda d: d.update(schema_version="2.0")),
            ("no totals", real, lambda d: acc(d).pop("totals")),
            ("no folder counter", real, lambda d: acc(d)["folders"][0].pop("fetched")),
            ("a count as text", real, lambda d: acc(d)["totals"].update(fetched="2")),
            ("a negative count", real, lambda d: acc(d)["folders"][0].update(bytes=-1)),
            ("an undocumented exit code", real, lambda d: d.update(exit=7)),
            ("no plan in a dry run", dry, lambda d: acc(d).pop("plan")),
            ("a plan in a real run", real, lambda d: acc(d).update(plan=[])),
            ("a step with another action's member", dry, lambda d: acc(d)["plan"][0].update(file="x")),
            ("a step without its uid", dry, lambda d: acc(d)["plan"][0].pop("uid")),
            ("an unknown action", dry, lambda d: acc(d)["plan"][0].update(action="teleport")),
            ("unsorted flag letters", dry, lambda d: acc(d)["plan"][0].update(flags="SF")),
            ("status: an undocumented folder member", status, lambda d: acc(d)["folders"][0].update(extra=1)),
            ("status: no last_sync", status, lambda d: acc(d).pop("last_sync")),
            ("check: no capabilities", check, lambda d: acc(d).pop("capabilities")),
            ("check: an undocumented member", check, lambda d: acc(d).update(extra=1)),
            ("folders: no roles", folders, lambda d: acc(d)["folders"][0].pop("roles")),
            ("folders: an undocumented member", folders, lambda d: acc(d)["folders"][0].update(extra=1)),
            ("error: an account in it", error, lambda d: d["accounts"].append(acc(real))),
            ("error: no error member", error, lambda d: d.pop("error")),
            ("error: no errors member", error, lambda d: d.pop("errors")),
            ("error: no errors_total", error, lambda d: d.pop("errors_total")),
            ("config error: no line", config_error, lambda d: d["errors"][0].pop("line")),
            ("config error: line 0", config_error, lambda d: d["errors"][0].update(line=0)),
            ("config error: no suggestion", config_error, lambda d: d["errors"][-1].pop("suggestion")),
            ("config error: an undocumented member", config_error, lambda d: d["errors"][0].update(extra=1)),
        ]
        for what, doc, change in mutations:
            with self.subTest(what):
                bad = copy.deepcopy(doc)
                change(bad)
                self.assertNotEqual(bad, doc)
                self.assertTrue(tb.json_schema_errors(bad), "the schema accepts %s: %s" % (what, json.dumps(bad)))

    def test_config_errors_are_documents(self):
        """Missing file, bad key, bad value, unknown account, usage errors:
        one error document each, exit 2, the message in "error"."""
        bad_key = self.work / "bad-key"
        bad_key.write_text("[account test]\nhost = x\nfrobnicate = 1\n")
        bad_value = self.work / "bad-value"
        bad_value.write_text("[account test]\nhost = x\nuser = u\npassword = p\nmaildir = ~/M\nport = banana\n")
        for f in (bad_key, bad_value):
            os.chmod(f, 0o600)
        cases = [
            (["-c", self.work / "missing", "pull"], "missing"),
            (["-c", bad_key, "check"], "frobnicate"),
            (["-c", bad_value, "sync"], "banana"),
            (["status", "nosuchaccount"], "nosuchaccount"),
            (["folders", "--progress=sometimes"], "sometimes"),
            (["import", "--json"], "--json"),
            (["watch", "--dry-run"], "dry-run"),
            ([], "no command"),
        ]
        for args, word in cases:
            with self.subTest(args=args):
                r = self.mailsync("--json", *args)
                self.assertEqual(r.code, 2, str(r))
                doc = parse(self, r)
                self.assertEqual((doc["exit"], doc["accounts"]), (2, []), r.stdout)
                self.assertIn(word, doc["error"], r.stdout)
        # help is text, with --json too (as --help is)
        for args in (["help"], ["--help"], ["help", "import"]):
            with self.subTest(args=args):
                r = self.run_ok("--json", *args)
                self.assertTrue(r.stdout.startswith("Usage: mailsync"), r.stdout)
                self.assertNotIn("{", r.stdout.splitlines()[-1], r.stdout)

    def test_every_config_error_in_the_document(self):
        """A config file with three errors (a misspelt key, a bad value, a
        bad section header): one document, "error" the first as before,
        "errors" all three in parts with their lines and the "did you
        mean" fix; stderr says the same three."""
        three = self.work / "three-errors"
        three.write_text("[account test]\n"           # 1
                         "host = h\nuser = u\npassword = p\nmaildir = /m\n"
                         "timout = 30\n"             # 6: did you mean timeout
                         "port = banana\n"           # 7: not a number
                         "[acount other]\n")         # 8: did you mean [account other]
        three.chmod(0o600)
        r = self.mailsync("--json", "-c", three, "pull")
        self.assertEqual(r.code, 2, str(r))
        doc = parse(self, r)
        self.assertEqual((doc["exit"], doc["accounts"], doc["errors_total"]), (2, [], 3), r.stdout)
        self.assertEqual(doc["error"], "%s:6: timout: unknown key; did you mean timeout?" % three)
        got = [(e["file"], e["line"], e["key"], e["suggestion"]) for e in doc["errors"]]
        self.assertEqual(got, [(str(three), 6, "timout", "timeout"), (str(three), 7, "port", None),
                               (str(three), 8, None, "[account other]")], r.stdout)
        self.assertIn("banana", doc["errors"][1]["message"])
        self.assertEqual(len([ln for ln in r.stderr.splitlines() if ln.startswith("mailsync: %s:" % three)]), 3,
                         r.stderr)
        # more than 20: the first 20 in parts, all counted
        many = self.work / "many-errors"
        many.write_text("[account a b]\n" * 25)
        many.chmod(0o600)
        doc = parse(self, self.mailsync("--json", "-c", many, "pull"))
        self.assertEqual((len(doc["errors"]), doc["errors_total"]), (20, 25), doc)
        self.assertEqual([e["line"] for e in doc["errors"]], list(range(1, 21)))
        # the whole file: one error without a line; not a config error: none
        doc = parse(self, self.mailsync("--json", "-c", self.work / "missing", "pull"))
        self.assertEqual([(e["line"], e["key"]) for e in doc["errors"]], [(None, None)], doc)
        self.assertIn("cannot read", doc["errors"][0]["message"])
        doc = parse(self, self.mailsync("--json", "frobnicate"))
        self.assertEqual((doc["errors"], doc["errors_total"]), ([], 0), doc)

    def test_failures_inside_documents(self):
        """Offline, bad password, lock held, POP3 folders: the command's own
        document, the account's status and error in it."""
        self.seed_inbox(1)
        self.run_ok("pull")
        lock = os.open(str(self.state) + ".lock", os.O_RDWR)
        self.addCleanup(os.close, lock)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for cmd in ("pull", "push", "sync"):
            with self.subTest(locked=cmd):
                doc = parse(self, self.run_ok("--json", cmd, expect=75))
                self.assertEqual((doc["exit"], doc["accounts"][0]["status"]), (75, 75), doc)
        fcntl.flock(lock, fcntl.LOCK_UN)
        self.write_config(password="wrong")
        for cmd in ("pull", "check", "folders"):
            with self.subTest(auth=cmd):
                doc = parse(self, self.run_ok("--json", cmd, expect=3))
                self.assertEqual(doc["accounts"][0]["status"], 3, doc)
                self.assertTrue(doc["accounts"][0]["error"], doc)
        self.write_config(port=tb.free_port())
        doc = parse(self, self.run_ok("--json", "status"))  # offline: still works
        self.assertEqual(doc["accounts"][0]["folders"][0]["synced"], 1)
        self.write_config(type="pop3", port=self.bed.pop3s_port, tls="implicit")
        doc = parse(self, self.run_ok("--json", "folders", expect=2))
        self.assertEqual((doc["command"], doc["accounts"][0]["status"]), ("folders", 2))
        # a status whose state DB cannot be read
        self.write_config()
        self.state.unlink()
        self.state.mkdir()
        r = self.mailsync("--json", "status")
        self.assertNotEqual(r.code, 0, str(r))
        doc = parse(self, r)
        self.assertEqual(doc["command"], "status", r.stdout)

    def test_watch_passes(self):
        """watch --json: one document per pass, each following the schema."""
        self.seed_inbox(2)
        p = tb.start_mailsync(["--json", "watch", "--interval", "3600"], config=self.config_path,
                              workdir=self.work)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.assertTrue(tb.wait_for(lambda: Path(p.out_path).read_text().endswith("\n")), "no pass came")
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(1, seed=9, start=40))
        self.assertTrue(tb.wait_for(lambda: Path(p.out_path).read_text().count("\n") >= 2, timeout=20),
                        "the second pass did not come")
        os.kill(p.pid, signal.SIGTERM)
        r = tb.finish_mailsync(p, timeout=20)
        self.assertEqual(r.code, 0, str(r))
        docs = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertGreaterEqual(len(docs), 2, r.stdout)
        for doc in docs:
            schema_check(self, doc, r.stdout)
            self.assertEqual((doc["command"], doc["dry_run"]), ("watch", False))
        self.assertEqual(sum(d["accounts"][0]["totals"]["fetched"] for d in docs), 3, r.stdout)

    def test_dry_run_plan_matches_the_counters(self):
        """A dry run's plan and its folders' counters say the same, per
        folder: pull (fetch, set_flags, delete_local), push (upload,
        store_flags, remove_on_server), sync, and POP3 (fetch_count)."""
        uids = self.seed_inbox(4)
        with self.imap() as c:
            c.create_folder("Work")
            c.append_many("Work", tb.make_corpus(2, seed=7, start=20))
        doc = parse(self, self.run_ok("--json", "--dry-run", "pull"))
        plan_counts_agree(self, doc)
        self.assertEqual(doc["accounts"][0]["totals"]["fetched"], 6)
        self.pull()
        with self.imap() as c:
            c.set_flags("INBOX", uids[:1], ["\\Answered"], "+")
            c.expunge_uids("INBOX", uids[1:2])
        files = sorted(local_files(self.maildir).values(), key=lambda m: m.uniq)
        os.unlink(files[-1].path)
        inbox = Path(tb.local_folder_path(self.maildir, "INBOX"))
        (inbox / "new" / "1700000000.plan.host").write_bytes(b"Subject: p\n\nplan\n")
        for cmd in ("pull", "push", "sync"):
            with self.subTest(cmd=cmd):
                doc = parse(self, self.run_ok("--json", "--dry-run", cmd))
                plan_counts_agree(self, doc)
                self.assertTrue(doc["accounts"][0]["plan"], doc)
        tb.write_config(self.config_path, {self.account: tb.account_keys(
            self.bed, self.user, self.work / "Pop", self.work / "pop.sqlite", type="pop3",
            port=self.bed.pop3s_port, tls="implicit")})
        doc = parse(self, self.run_ok("--json", "--dry-run", "pull"))
        plan_counts_agree(self, doc)
        self.assertEqual(doc["accounts"][0]["plan"][0]["action"], "fetch_count", doc)

    def test_dry_run_plan_shows_retention(self):
        """server_retention_days: the dry run lists the UIDs the run would
        remove from the server (stored here, older than the cutoff), and
        removes none; POP3 (leave_on_server = no) says how many."""
        import time
        now = int(time.time())
        with self.imap() as c:
            old = c.append_many("INBOX", tb.make_corpus(3, seed=31, flags=False, base_date=now - 90 * 86400))
            c.append_many("INBOX", tb.make_corpus(1, seed=32, flags=False, start=50, base_date=now - 3600))
        self.pull()
        self.write_config(server_retention_days="30")
        server = self.server_state()
        doc = parse(self, self.run_ok("--json", "--dry-run", "pull"))
        plan = doc["accounts"][0]["plan"]
        self.assertEqual(sorted(s["uid"] for s in plan if s["action"] == "retire"), sorted(old), doc)
        self.assertEqual(doc["accounts"][0]["totals"]["retired"], 3)
        self.assertEqual(self.server_state(), server, "--dry-run removed messages")
        r = self.run_ok("--dry-run", "pull")
        self.assertIn("INBOX: would remove UID %d from the server (server_retention_days" % old[0], r.stdout)
        # the real run removes those (the dry run did not count as the day's check)
        doc = parse(self, self.run_ok("--json", "pull"))
        self.assertEqual(doc["accounts"][0]["totals"]["retired"], 3)
        self.assertEqual(self.server_count(), 1)
        # POP3, leave_on_server = no: what it would fetch, and then delete
        tb.write_config(self.config_path, {self.account: tb.account_keys(
            self.bed, self.user, self.work / "Pop", self.work / "pop.sqlite", type="pop3",
            port=self.bed.pop3s_port, tls="implicit", leave_on_server="no")})
        doc = parse(self, self.run_ok("--json", "--dry-run", "pull"))
        self.assertEqual([(s["action"], s["count"]) for s in doc["accounts"][0]["plan"]],
                         [("fetch_count", 1), ("retire_count", 1)], doc)
        self.assertEqual(self.server_count(), 1)
        r = self.run_ok("--dry-run", "pull")
        self.assertIn("INBOX: would delete 1 POP3 messages from the server once stored", r.stdout)
