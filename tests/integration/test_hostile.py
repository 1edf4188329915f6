# SPDX-License-Identifier: MIT
"""test_hostile.py: `mailsync pull` against a hostile IMAP server.

Each test starts its own fakeimap.FakeImap (a scripted stdlib server, plain
text on 127.0.0.1) and checks the outcomes shared/docs/reliability.md asks
for: no crash and no sanitizer report (the runner raises SanitizerError),
exit codes per the contract (0 / 1 for a finished run, 4 for a network or
protocol failure), nothing written outside the Maildir root and the state
file (the whole temp tree, a sentinel directory beside the work directory
and the file system root are snapshotted), mail stored byte for byte with
CRLF -> LF only, nothing deleted on a cut listing, the mass-deletion guard,
bounded memory against huge literals (peak RSS from wait4), and never a
changing command (STORE, EXPUNGE, ...) sent by a pull.

A known mailsync bug is a test marked @unittest.expectedFailure with a
"BUG:" comment saying exactly what goes wrong ("Was a bug" comments mark
the tests of bugs found here and fixed since).
"""

import collections
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import fakeimap as fi
import testbed as tb

RSS_LIMIT_KB = 128 * 1024          # peak RSS allowed against hostile literals
                                   # (an ASan build idles at ~35 MiB)
RUN_TIMEOUT = 60                   # seconds per mailsync run
MSGID_RE = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.I | re.M)


def lf(raw):
    """The contract's storage conversion: CRLF -> LF, nothing else."""
    return raw.replace(b"\r\n", b"\n")


def msg(uid, body_tag, flags=(), date=1600000000, extra=b""):
    """A small distinct message whose Message-ID is <body_tag@fake>."""
    raw = (b"From: a@example.org\r\nSubject: %s\r\nMessage-ID: <%s@fake>\r\n%s\r\n"
           b"Body %s\r\n" % (body_tag, body_tag, extra, body_tag))
    return fi.Message(uid, tuple(flags), date + uid, raw)


def messages(n, tag=b"m", start=1):
    """n messages, every third \\Seen (so both new/ and cur/ are used)."""
    return [msg(u, b"%s-%d" % (tag, u), (r"\Seen",) if u % 3 == 0 else ())
            for u in range(start, start + n)]


def local_files(root):
    """{maildir path: [(subdir, name, bytes)]} for every directory under root
    holding cur/, new/ or tmp/, plus a list of anomalies (non-regular
    entries in cur/ new/, symlinks anywhere)."""
    found = collections.defaultdict(list)
    anomalies = []
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                anomalies.append("symlink %s" % p)
        base = os.path.basename(dirpath)
        if base in ("cur", "new"):
            md = os.path.dirname(dirpath)
            for n in dirnames:
                anomalies.append("directory inside %s: %s" % (dirpath, n))
            for n in filenames:
                with open(os.path.join(dirpath, n), "rb") as f:
                    found[md].append((base, n, f.read()))
    return found, anomalies


def all_message_bytes(root):
    """Every message file's bytes under root (new/ and cur/), as a Counter."""
    found, _ = local_files(root)
    return collections.Counter(data for files in found.values() for _, _, data in files)


def tmp_files(root):
    out = []
    for dirpath, _, filenames in os.walk(str(root)):
        if os.path.basename(dirpath) == "tmp":
            out += [os.path.join(dirpath, n) for n in filenames]
    return out


def fast_tmp():
    """Where the tests' work trees go: /dev/shm when usable (tmpfs makes
    mailsync's many fsyncs free; none of these tests is about durability),
    else the default temp dir. $MAILSYNC_HOSTILE_TMP overrides."""
    d = os.environ.get("MAILSYNC_HOSTILE_TMP")
    if d:
        return d
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > (512 << 20):
            return "/dev/shm"
    return None


def is_sanitizer_build():
    """Whether the binary under test was built with ASan."""
    try:
        with open(tb.mailsync_bin(), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


class HostileTestCase(unittest.TestCase):
    """Per test: a temp dir `top` holding `work` (config, state/, the Maildir
    root three levels down so that '..' tricks still land inside the
    snapshot) and a `sentinel` directory beside it."""

    maxDiff = None

    def setUp(self):
        self.top = Path(tempfile.mkdtemp(prefix="mailsync-hostile-", dir=fast_tmp()))
        if not tb.keep_tmp():
            self.addCleanup(shutil.rmtree, self.top, True)
        self.new_workdir("work")
        # For every test: the file system root and a sentinel directory
        # beside the work directories stay untouched.
        sentinel = self.top / "sentinel"
        (sentinel / "sub").mkdir(parents=True)
        (sentinel / "keep.txt").write_bytes(b"sentinel\n")
        (sentinel / "sub" / "INBOX").write_bytes(b"sentinel\n")
        rootfs, snap = sorted(os.listdir("/")), tb.snapshot_tree(sentinel, dir_mtimes=True)
        self.addCleanup(lambda: (
            self.assertEqual(sorted(os.listdir("/")), rootfs, "something appeared in /"),
            self.assertEqual(tb.snapshot_tree(sentinel, dir_mtimes=True), snap, "sentinel touched")))

    def new_workdir(self, name):
        """(Re)point work/root/state at a fresh directory under top."""
        self.work = self.top / name
        self.root = self.work / "d1" / "d2" / "Mail"
        self.statedir = self.work / "state"
        self.state = self.statedir / "state.sqlite"
        self.config = self.work / "config"
        self.sentinel = self.top / ("sentinel-" + name)
        for d in (self.root, self.statedir, self.sentinel / "sub"):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        (self.sentinel / "keep.txt").write_bytes(b"sentinel\n")
        (self.sentinel / "sub" / "INBOX").write_bytes(b"sentinel\n")
        self.rootfs_before = sorted(os.listdir("/"))

    def server(self, folders, **kw):
        srv = fi.FakeImap(folders, **kw).start()
        self.addCleanup(srv.stop)
        self.addCleanup(self.assertServerHealthy, srv)
        return srv

    def assertServerHealthy(self, srv):
        self.assertEqual(srv.errors, [], "fakeimap raised inside a connection")

    def write_config(self, srv, **extra):
        keys = {"host": "127.0.0.1", "port": srv.port, "tls": "none", "user": "user",
                "password": "pw", "maildir": str(self.root), "state": str(self.state),
                "timeout": 10}
        keys.update(extra)
        tb.write_config(self.config, {"hostile": {k: v for k, v in keys.items() if v is not None}})

    def run_mailsync(self, *args, env=None):
        """Run mailsync; returns (Result, peak RSS in KiB). Raises
        SanitizerError on a sanitizer report, TimeoutError on a hang."""
        argv = [tb._check_binary(), "-c", str(self.config)] + [str(a) for a in args]
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             env=tb.mailsync_env(self.work, env))
        deadline = t0 + RUN_TIMEOUT
        while True:
            pid, status, rusage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                err.seek(0)
                raise TimeoutError("mailsync %s hung for %ss\n%s" % (
                    " ".join(args), RUN_TIMEOUT, err.read().decode(errors="replace")[-3000:]))
            time.sleep(0.01)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        res = tb.Result(argv[1:], p.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), time.monotonic() - t0)
        out.close()
        err.close()
        if any(m in res.stderr for m in tb.SANITIZER_MARKERS):
            raise tb.SanitizerError("sanitizer report:\n%s" % res)
        self.assertGreaterEqual(res.code, 0, "mailsync died by a signal\n%s" % res)
        return res, rusage.ru_maxrss

    def pull(self, *args, expect=None, env=None):
        res, _ = self.run_mailsync("pull", *args, env=env)
        if expect is not None:
            codes = expect if isinstance(expect, tuple) else (expect,)
            self.assertIn(res.code, codes, "unexpected exit code\n%s" % res)
        return res

    # -- the "nothing outside the root" check ----------------------------------

    def snapshot(self):
        return tb.snapshot_tree(self.top)

    def allowed(self, rel):
        """Paths (relative to top) a run may create or change."""
        work = os.path.relpath(self.work, self.top)
        root = os.path.relpath(self.root, self.top)
        state = os.path.relpath(self.state, self.top)
        return (rel.startswith(root + "/") or rel == state or rel.startswith(state + "-")
                or rel.startswith(state + ".") or rel == os.path.relpath(self.statedir, self.top) + "/"
                or rel == work + "/")

    def assertOnlyInRoot(self, before, after):
        changed = sorted(p for p in set(before) | set(after)
                         if before.get(p) != after.get(p) and not self.allowed(p))
        self.assertEqual(changed, [], "files written outside the Maildir root and state file")
        self.assertEqual(sorted(os.listdir("/")), self.rootfs_before, "something appeared in /")
        _, anomalies = local_files(self.root)
        self.assertEqual(anomalies, [])
        for dirpath, dirnames, filenames in os.walk(str(self.root)):
            for n in dirnames + filenames:
                real = os.path.realpath(os.path.join(dirpath, n))
                self.assertTrue(real.startswith(str(self.root) + "/"), real)

    def assertNoChanges(self, srv):
        self.assertEqual([c.line for c in srv.changing_commands()], [],
                         "a pull sent commands that change the server")


# ----------------------------------------------------------------------------
# 1. Hostile folder names

HOSTILE_NAMES = [
    b"..", b"../escape", b"a/../../escape", b"/abs", b"/mailsync-hostile-abs", b"INBOX/../..",
    b".", b"a/./b", b"a//b", b"trail/", b"..a/b..", b"~", b"~/x",
    b"&AC8-etc",               # encoded '/' (printable ASCII may not be encoded)
    b"&AC4ALg-",               # encoded ".."
    b"&AC4ALg-/&AC4ALg-/escape2",
    b"&AAA-x",                 # encoded NUL
    b"&AAoA-nl",               # encoded LF
    b"bad&-amp&Zm9v",          # unterminated shift
    b"ctl\x01name", b"tab\tname", b"esc\x1bname", b"del\x7fname",
    b"x" * 5000,
    b"long/" + b"y" * 300,     # one component over NAME_MAX
    b"cur", b"new", b"tmp", b"INBOX/cur", b"INBOX/new", b"INBOX/tmp",
    b"%2E%2E", b"%2F", b"%", b"pct%41",
    b"back\\slash", b'quo"te',
    b"raw-utf8-caf\xc3\xa9",   # 8-bit on the wire (not modified UTF-7)
    b"raw-latin1-\xe9",
]
VALID_NAMES = {b"INBOX": "INBOX", b"Entw&APw-rfe": "Entwürfe", b"Sub": "Sub",
               b"Sub/Child": "Sub/Child",
               tb.mutf7_encode("Thư đã gửi").encode(): "Thư đã gửi"}


class HostileNames(HostileTestCase):

    def name_server(self, names, delimiter="/"):
        folders, by_id = {}, {}
        for k, name in enumerate(names):
            tag = b"folder-%d" % k
            folders[name] = fi.Folder(100 + k, [msg(1, tag)])
            by_id[b"<%s@fake>" % tag] = name
        return self.server(folders, delimiter=delimiter), by_id

    def where(self, by_id):
        """{server name: [local Maildir paths holding its message]}"""
        found, _ = local_files(self.root)
        placed = collections.defaultdict(list)
        for md, files in found.items():
            for _, _, data in files:
                m = MSGID_RE.search(data)
                self.assertIsNotNone(m, "unknown file in %s" % md)
                placed[by_id[m.group(1)]].append(md)
        return placed

    def check_names(self, names, valid, layout="verbatim", delimiter="/", second_run=True):
        srv, by_id = self.name_server(names, delimiter)
        self.write_config(srv, layout=layout)
        before = self.snapshot()
        res = self.pull()
        after = self.snapshot()
        self.assertOnlyInRoot(before, after)
        self.assertNoChanges(srv)
        placed = self.where(by_id)
        # One-to-one: every folder at most once, every Maildir one folder.
        for name, mds in placed.items():
            self.assertEqual(len(mds), 1, "%r stored in %s" % (name, mds))
        owners = collections.Counter(mds[0] for mds in placed.values())
        self.assertEqual([md for md, c in owners.items() if c > 1], [],
                         "two server folders share one local Maildir")
        for name, rel in valid.items():
            self.assertIn(name, placed, "valid folder %r was not synced\n%s" % (name, res))
            self.assertEqual(placed[name][0], str(self.root / rel) if rel else str(self.root))
        skipped = sorted(set(names) - set(placed))
        # 0 or 1 here; that a skipped folder must make it 1 is checked by
        # test_skipped_folder_exit_code.
        self.assertIn(res.code, (0, 1), res)
        for name in skipped:
            self.assertIn("skip", res.stderr.lower(), "%r skipped silently\n%s" % (name, res))
        if not second_run:
            return placed, skipped, res
        # A second run changes nothing and exits the same way.
        snap = tb.snapshot_tree(self.root)
        res2 = self.pull()
        self.assertEqual(res2.code, res.code, res2)
        self.assertEqual(tb.snapshot_tree(self.root), snap, "second run changed files")
        self.assertEqual(self.where(by_id), placed)
        return placed, skipped, res

    def test_hostile_names_verbatim(self):
        names = list(VALID_NAMES) + HOSTILE_NAMES
        placed, skipped, res = self.check_names(names, VALID_NAMES)
        # Names that are unsafe verbatim never map to themselves.
        for name, mds in placed.items():
            rel = os.path.relpath(mds[0], self.root)
            self.assertNotIn("..", rel.split("/"), name)
            if name in HOSTILE_NAMES and name not in (b"~", b"~/x", b"back\\slash", b'quo"te'):
                self.assertNotEqual(rel.encode("utf-8", "surrogateescape"), name,
                                    "%r used verbatim" % name)

    def test_hostile_names_maildirpp(self):
        valid = {b"INBOX": "", b"Entw&APw-rfe": ".Entwürfe", b"Sub/Child": ".Sub.Child"}
        names = list(valid) + [
            b"..", b"../escape", b".", b"a/./b", b"/abs", b"trail/", b"&AC4ALg-", b"&AC8-etc",
            b"&AAA-x", b"ctl\x01name", b"long/" + b"y" * 300, b"cur", b"INBOX/cur", b"%2E",
            b".hidden", b"a.b", b"..a", b"Sub.Child", b"Sub"]
        self.check_names(names, valid, layout="maildir++", second_run=False)

    def test_hostile_names_dotted(self):
        """layout = dotted (OfflineIMAP's default names): one top-level
        directory per folder, a '.' inside a name escaped, never a dot name."""
        valid = {b"INBOX": "INBOX", b"Entw&APw-rfe": "Entwürfe", b"Sub/Child": "Sub.Child",
                 b"Sub.Child": "Sub%2EChild", b"cur": "%63ur", b"INBOX/cur": "INBOX.cur"}
        names = list(valid) + [
            b"..", b"../escape", b".", b"a/./b", b"/abs", b"trail/", b"&AC4ALg-", b"&AC8-etc",
            b"&AAA-x", b"ctl\x01name", b"long/" + b"y" * 300, b"%2E", b".hidden", b"..a", b"Sub"]
        placed, _, _ = self.check_names(names, valid, layout="dotted", second_run=False)
        for name, mds in placed.items():
            rel = os.path.relpath(mds[0], self.root)
            self.assertNotIn("/", rel, name)
            self.assertFalse(rel.startswith("."), name)

    def test_hostile_names_dot_delimiter(self):
        """A Courier-style server: '.' is the delimiter, '/' is a plain
        character inside a component."""
        valid = {b"INBOX": "INBOX", b"INBOX.Sent": "INBOX/Sent", b"Entw&APw-rfe": "Entwürfe"}
        names = list(valid) + [b"a/b", b"../x", b"a..b", b".lead", b"trail.", b"/abs",
                               b"INBOX.cur", b"x.&AC8-.y"]
        self.check_names(names, valid, delimiter=".", second_run=False)

    def test_raw_list_lines(self):
        """LIST lines written by hand: NIL delimiter, a literal name holding
        NUL, CR and LF, odd attributes, a 2 KiB name as a literal, an empty
        name, INBOX listed twice."""
        srv, by_id = self.name_server([b"INBOX", b"nil/delim", b"lit"])
        srv.list_lines = [
            b'* LIST (\\HasNoChildren) "/" INBOX',
            b'* LIST () NIL "nil/delim"',
            b'* LIST (\\Noselect \\X-Weird) "/" {7}\r\nnul\x00\r\nx',
            b'* LIST () "/" {2048}\r\n' + b"z" * 2048,
            b'* LIST () "/" {9}\r\na/../../x',
            b'* LIST (\\Marked) "." ""',
            b'* LIST () "/" "lit"',
            b'* LIST () "/" "INBOX"',
        ]
        self.write_config(srv)
        before = self.snapshot()
        res = self.pull(expect=(0, 1))
        self.assertOnlyInRoot(before, self.snapshot())
        self.assertNoChanges(srv)
        placed = self.where(by_id)
        self.assertEqual(placed.get(b"INBOX"), [str(self.root / "INBOX")], res)
        self.assertEqual(placed.get(b"lit"), [str(self.root / "lit")], res)
        # One component: the '/' of a flat (NIL delimiter) name is escaped.
        self.assertEqual(os.path.dirname(placed[b"nil/delim"][0]), str(self.root), res)

    # Was a bug (fixed in feabf71): the skip only logged a warning, exit 0.
    def test_skipped_folder_exit_code(self):
        """Exit 0 means "every selected folder synced": a skipped folder
        makes it 1, and --json names it with its reason."""
        srv, by_id = self.name_server([b"INBOX", b".."])
        self.write_config(srv)
        res = self.pull("--json")
        self.assertEqual(set(self.where(by_id)), {b"INBOX"})
        self.assertIn("skip", res.stderr)
        self.assertEqual(res.code, 1, "a folder was skipped, the exit code must say so\n%s" % res)
        folders = {f["name"]: f for a in res.json()["accounts"] for f in a["folders"]}
        self.assertEqual(folders[".."]["status"], 1, res)
        self.assertTrue(folders[".."]["error"], res)


# ----------------------------------------------------------------------------
# 2. Hostile messages

def chunky_message(seed, size):
    """A message made of random runs of CR, LF, CRLF and text, so CRLF pairs
    and lone CRs fall on every possible read-chunk boundary."""
    rnd = random.Random(seed)
    parts = [b"Subject: chunky %d\r\nMessage-ID: <chunky-%d@fake>\r\n\r\n" % (seed, seed)]
    n = len(parts[0])
    while n < size:
        p = rnd.choice((b"\r", b"\n", b"\r\n", b"\r\r\n", b"\n\r", b"x" * rnd.randint(1, 700)))
        parts.append(p)
        n += len(p)
    return b"".join(parts)


HOSTILE_BODIES = [
    b"\r\nHeaderless body.\r\n",
    b"\n\nheaderless with bare LF\n",
    b"\r\n",
    b"",
    b"Subject: nul\x00here\r\nMessage-ID: <nul\x00@fake>\r\n\r\nbody\x00\x00 with NUL\r\n\x00",
    b"Subject: bare lf\nMessage-ID: <lf@fake>\n\nline1\nline2\n",
    b"Subject: bare cr\rMessage-ID: <cr@fake>\r\rline1\rline2\r",
    b"Subject: mixed\r\n\r\na\r\r\nb\n\rc\r\n\r\rd\r",
    b"Subject: \xff\xfe caf\xc3\xa9\r\nMessage-ID: <8bit-\xe9@fake>\r\n\r\n\x80\x81\xff\r\n",
    b"X-Long: " + b"a" * (1 << 20) + b"\r\nMessage-ID: <long@fake>\r\n\r\nbody\r\n",
    b"Message-ID: <" + b"i" * 100000 + b"@fake>\r\n\r\nlong id\r\n",
    b"".join(b"X-H%d: v\r\n" % i for i in range(50000)) + b"Message-ID: <many@fake>\r\n\r\nx\r\n",
    b"Subject: no newline at end\r\n\r\nno newline at end",
    b"Subject: no body, no blank line\r\n",
    b"Message-ID: <dup@fake>\r\n\r\nfirst of two with one Message-ID\r\n",
    b"Message-ID: <dup@fake>\r\n\r\nsecond of two with one Message-ID\r\n",
    b"Message-ID: <dup@fake>\r\n\r\nfirst of two with one Message-ID\r\n",   # same bytes again
    b"Message-ID:\r\n\r\nempty id\r\n",
    b"Message-ID: <a@fake> <b@fake>\r\nMessage-ID: <c@fake>\r\n\r\ntwo ids\r\n",
    b"From nobody Mon Jan  1 00:00:00 2024\r\nSubject: mbox line\r\n\r\n>From x\r\n",
    b"Subject: big one line\r\n\r\n" + b"q" * (3 << 20),
    chunky_message(1, 300000),
    chunky_message(2, 70000),
]


def has_bare_lf(raw):
    return re.search(rb"(?<!\r)\n", raw) is not None


class HostileMessages(HostileTestCase):

    def folder(self, bodies=HOSTILE_BODIES):
        msgs = []
        for k, raw in enumerate(bodies):
            flags = ((r"\Seen",), (), (r"\Flagged", r"\Answered"))[k % 3]
            msgs.append(fi.Message(k + 1, flags, 1500000000 + 1000 * k, raw))
        return {"INBOX": fi.Folder(42, msgs)}

    def assertStoredExactly(self, folder):
        want = collections.Counter(lf(m.raw) for m in folder.messages)
        got = all_message_bytes(self.root)
        missing = want - got
        extra = got - want
        self.assertEqual((len(missing), len(extra)), (0, 0), "missing: %r\nextra: %r" % (
            [m[:80] for m in missing], [e[:80] for e in extra]))
        # mtime = INTERNALDATE, flags as letters.
        found, _ = local_files(self.root)
        by_data = collections.defaultdict(list)
        for m in folder.messages:
            by_data[lf(m.raw)].append(m)
        for md, files in found.items():
            for sub, name, data in files:
                cands = by_data[data]
                st = os.stat(os.path.join(md, sub, name))
                letters = tb.parse_maildir_name(name)[1]
                self.assertTrue(any(int(st.st_mtime) == m.internaldate and
                                    letters == tb.flags_to_letters(m.flags) for m in cands),
                                "%s/%s: mtime %d, letters %r" % (sub, name, st.st_mtime, letters))

    def test_hostile_bodies_stored_byte_exact(self):
        folders = self.folder()
        srv = self.server(folders)
        self.write_config(srv)
        before = self.snapshot()
        res = self.pull(expect=0)
        self.assertOnlyInRoot(before, self.snapshot())
        self.assertNoChanges(srv)
        self.assertStoredExactly(folders["INBOX"])
        self.assertEqual(tmp_files(self.root), [])
        # Idempotent: the second run neither changes nor adds files.
        snap = tb.snapshot_tree(self.root)
        self.pull(expect=0)
        self.assertEqual(tb.snapshot_tree(self.root), snap)

    def lose_state_and_pull(self, bodies):
        folders = self.folder(bodies)
        srv = self.server(folders)
        self.write_config(srv)
        self.pull(expect=0)
        for p in self.statedir.iterdir():
            p.unlink()
        self.pull(expect=0)
        self.assertStoredExactly(folders["INBOX"])
        self.assertNoChanges(srv)

    def test_hostile_bodies_lost_state_rematch(self):
        """State DB lost: identity re-matching must cope with NUL, missing,
        huge and duplicated Message-IDs: no duplicate, nothing lost. (Bodies
        with bare LF have their own test below.)"""
        self.lose_state_and_pull([b for b in HOSTILE_BODIES if not has_bare_lf(b)])

    # Was a bug (fixed in feabf71): after the state DB was lost, a message
    # with a bare LF was not re-matched and was downloaded a second time.
    def test_lost_state_bare_lf_not_duplicated(self):
        self.lose_state_and_pull([b"Subject: bare lf\nMessage-ID: <lf@fake>\n\nline1\nline2\n",
                                  b"Subject: bare lf, no id\n\nline1\n"])

    def test_hostile_bodies_uidvalidity_change(self):
        """UIDVALIDITY changes and the UIDs are renumbered: re-match, no
        duplicates, nothing lost."""
        folders = self.folder()
        srv = self.server(folders)
        self.write_config(srv)
        self.pull(expect=0)
        inbox = folders["INBOX"]
        inbox.uidvalidity = 4242
        for m in inbox.messages:
            m.uid += 1000
        self.pull(expect=(0, 1))
        self.assertStoredExactly(inbox)
        self.assertNoChanges(srv)


# ----------------------------------------------------------------------------
# 3. Huge literals, endless lines: exit 4, bounded memory, nothing half-stored

class HugeLiterals(HostileTestCase):

    VARIANTS = [
        # (name, when, after, data, pad)
        ("body 4294967306", "body", 1, b"* 2 FETCH (UID 2 BODY[] {4294967306}\r\n0123456789", 0),
        ("body 99999999999999", "body", 1, b"* 2 FETCH (UID 2 BODY[] {99999999999999}\r\n", 1000),
        ("body 2 GiB then close", "body", 1, b"* 2 FETCH (UID 2 BODY[] {2147483648}\r\n", 4 << 20),
        ("body 2^64+5 wraps", "body", 0, b"* 1 FETCH (UID 1 BODY[] {18446744073709551621}\r\nabcde)\r\n", 0),
        # Streamed, not buffered: more than RSS_LIMIT_KB arrives, then a cut.
        ("body under the cap, cut after 160 MiB", "body", 1,
         b"* 2 FETCH (UID 2 FLAGS () RFC822.SIZE 1000000000 BODY[] {1000000000}\r\n", 160 << 20),
        ("flag listing 4294967306", "flags", 1,
         b"* 2 FETCH (UID 2 FLAGS () BODY[HEADER] {4294967306}\r\n0123456789", 0),
        ("flag listing, 2 MiB BODY[HEADER] then close", "flags", 1,
         b"* 2 FETCH (UID 2 FLAGS () BODY[HEADER] {2097152}\r\n", 2 << 20),
        ("endless line (100 MB, no CRLF)", "flags", 1, b"* 2 FETCH (UID 2 FLAGS (", 100 << 20),
    ]

    def three_messages(self):
        return {"INBOX": fi.Folder(5, messages(3))}

    def check_refused(self, srv, folders, label, repull=True):
        before = self.snapshot()
        res, rss = self.run_mailsync("pull")
        self.assertEqual(res.code, 4, "%s: want exit 4\n%s" % (label, res))
        self.assertLess(rss, RSS_LIMIT_KB, "%s: peak RSS %d KiB" % (label, rss))
        self.assertOnlyInRoot(before, self.snapshot())
        self.assertNoChanges(srv)
        # Only whole messages in new/ and cur/ (a delivered first one is fine).
        whole = {lf(m.raw) for m in folders["INBOX"].messages}
        for data in all_message_bytes(self.root):
            self.assertIn(data, whole, "%s: partial or foreign file stored" % label)
        leftovers = tmp_files(self.root)
        self.assertEqual(leftovers, [], "%s: files left in tmp/" % label)
        if not repull:
            return res
        # Nothing wrongly recorded: a well-behaved server now gets everything.
        srv.mid_fetch, srv.list_lines = [], None
        res = self.pull(expect=0)
        self.assertEqual(all_message_bytes(self.root), collections.Counter(whole), label)
        return res

    def test_huge_literals_in_fetch(self):
        for k, (label, when, after, data, pad) in enumerate(self.VARIANTS):
            with self.subTest(label):
                self.new_workdir("w-%d" % k)
                folders = self.three_messages()
                srv = self.server(folders)
                pred = (lambda c: c.is_body_fetch) if when == "body" else (lambda c: c.is_flag_listing)
                srv.mid_fetch = [fi.MidFetch(data=data, after=after, pad=pad, close=True, when=pred)]
                self.write_config(srv)
                self.check_refused(srv, folders, label)

    def test_huge_literal_in_list(self):
        """Non-body literals (a folder name) are small by nature: 4 GiB,
        2 MiB (over the 1 MiB cap for non-body literals) and a 20 MiB quoted
        name are refused."""
        variants = [
            ("4294967306", b'* LIST () "/" {4294967306}\r\n0123456789'),
            ("2 MiB name", b'* LIST () "/" {2097152}\r\n' + b"n" * (2 << 20)),
        ]
        for k, (label, line) in enumerate(variants):
            with self.subTest(label):
                self.new_workdir("w-%d" % k)
                srv = self.server(self.three_messages())
                srv.list_lines = [b'* LIST () "/" INBOX', line]
                self.write_config(srv)
                before = self.snapshot()
                res, rss = self.run_mailsync("pull")
                self.assertEqual(res.code, 4, res)
                self.assertLess(rss, RSS_LIMIT_KB)
                self.assertOnlyInRoot(before, self.snapshot())
                self.assertEqual(all_message_bytes(self.root), collections.Counter())

    def test_body_literal_cut_leaves_nothing(self):
        """The connection drops in the middle of a body literal (50 KB of a
        200 KB message): exit 4, nothing partial anywhere, the next run
        completes."""
        big = msg(2, b"big", extra=b"X-Pad: " + b"p" * 200000 + b"\r\n")
        folders = {"INBOX": fi.Folder(5, [msg(1, b"one"), big, msg(3, b"three")])}
        srv = self.server(folders)
        head = b"* 2 FETCH (UID 2 FLAGS () RFC822.SIZE %d BODY[] {%d}\r\n" % (
            len(big.raw), len(big.raw))
        srv.mid_fetch = [fi.MidFetch(data=head + big.raw[:50000], after=1, close=True,
                                     when=lambda c: c.is_body_fetch)]
        self.write_config(srv)
        self.check_refused(srv, folders, "cut mid literal")


# ----------------------------------------------------------------------------
# 4./5. Cut listings and empty folders: nothing deleted

class CutListing(HostileTestCase):

    def first_pull(self, n=30, extra_folders=None):
        folders = {"INBOX": fi.Folder(7, messages(n))}
        folders.update(extra_folders or {})
        srv = self.server(folders)
        self.write_config(srv)
        self.pull(expect=0)
        self.assertEqual(sum(all_message_bytes(self.root).values()),
                         sum(len(f.messages) for f in folders.values()))
        return srv, folders

    def assertAllThere(self, folders):
        want = collections.Counter(lf(m.raw) for f in folders.values() for m in f.messages)
        self.assertEqual(all_message_bytes(self.root), want)

    def test_bye_or_close_mid_flag_listing(self):
        variants = [
            ("BYE then close", b"* BYE going down\r\n", True),
            ("close", b"", True),
            ("close mid line", b"* 11 FETCH (UID 11 FLA", True),
            ("BYE, then more lines and OK", b"* BYE going down\r\n", False),
        ]
        srv, folders = self.first_pull()
        snap = tb.snapshot_tree(self.root)
        for label, data, close in variants:       # one after the other, same state
            with self.subTest(label):
                hook = fi.MidFetch(data=data, after=10, close=close, when=lambda c: c.is_flag_listing)
                srv.mid_fetch = [hook]
                res = self.pull()
                self.assertEqual(hook.fired, 1)
                if close:
                    self.assertEqual(res.code, 4, res)
                else:
                    self.assertIn(res.code, (0, 4), res)
                self.assertAllThere(folders)
                self.assertEqual(tb.snapshot_tree(self.root), snap, "local files changed")
                self.assertNoChanges(srv)

    def test_cut_listing_in_second_folder(self):
        srv, folders = self.first_pull(extra_folders={"Archive": fi.Folder(9, messages(25, b"arch"))})
        del folders["INBOX"].messages[-5:]          # a real expunge on the server
        hook = fi.MidFetch(data=b"* BYE bye\r\n", after=3, close=True,
                           when=lambda c: c.is_flag_listing and c.conn == 2 and
                           srv.received("EXAMINE", 2)[-1].has_item("Archive"))
        srv.mid_fetch = [hook]
        res = self.pull(expect=4)
        self.assertEqual(hook.fired, 1)
        arch = [lf(m.raw) for m in folders["Archive"].messages]
        self.assertEqual(sum(1 for d in all_message_bytes(self.root) if d in arch), 25)
        self.assertNoChanges(srv)

    def test_cut_mid_body_fetch_then_resume(self):
        folders = {"INBOX": fi.Folder(7, messages(30))}
        srv = self.server(folders)
        srv.mid_fetch = [fi.MidFetch(data=b"* BYE nope\r\n", after=12, close=True,
                                     when=lambda c: c.is_body_fetch)]
        self.write_config(srv)
        self.pull(expect=4)
        got = all_message_bytes(self.root)
        whole = {lf(m.raw) for m in folders["INBOX"].messages}
        self.assertTrue(set(got) <= whole)
        self.assertTrue(all(c == 1 for c in got.values()))
        srv.mid_fetch = []
        self.pull(expect=0)
        self.assertAllThere(folders)
        self.assertNoChanges(srv)

    def test_empty_folder_mass_deletion_guard(self):
        srv, folders = self.first_pull()
        folders["INBOX"].messages = []              # EXISTS 0, UIDNEXT unchanged
        folders["INBOX"].uidnext = 31
        res = self.pull(expect=1)
        self.assertIn("--force", res.stdout + res.stderr)
        self.assertEqual(sum(all_message_bytes(self.root).values()), 30)
        res = self.pull("--force", expect=0)
        self.assertEqual(sum(all_message_bytes(self.root).values()), 0, res)
        self.assertNoChanges(srv)

    def test_folder_vanishes_from_list(self):
        """INBOX is no longer listed: no local mail may be deleted without
        --force (the guard or a 'folder gone' policy must keep it)."""
        srv, folders = self.first_pull(extra_folders={"Other": fi.Folder(3, messages(2, b"o"))})
        inbox = folders.pop("INBOX")
        srv.folders = folders
        res = self.pull(expect=(0, 1))
        self.assertEqual(sum(1 for d in all_message_bytes(self.root)
                             if d in {lf(m.raw) for m in inbox.messages}), 30, res)


# ----------------------------------------------------------------------------
# 6. Response codes and data out of context

class OutOfContext(HostileTestCase):

    def run_twice(self, srv, folders, expect_first=0):
        self.write_config(srv, **getattr(self, "config_extra", {}))
        res = self.pull(expect=expect_first)
        want = collections.Counter(lf(m.raw) for f in folders.values() for m in f.messages)
        self.assertEqual(all_message_bytes(self.root), want, res)
        snap = tb.snapshot_tree(self.root)
        res2 = self.pull(expect=0)
        self.assertEqual(tb.snapshot_tree(self.root), snap, "second run changed files\n%s" % res2)
        self.assertNoChanges(srv)
        return res

    def test_codes_on_tagged_ok(self):
        for auth in ("plain", "login"):
            with self.subTest(auth=auth):
                self.new_workdir("w-" + auth)
                folders = {"INBOX": fi.Folder(11, messages(6))}
                srv = self.server(folders)
                self.config_extra = {"auth": auth}
                srv.tagged_text = {
                    "AUTHENTICATE": "OK [APPENDUID 1 2] welcome",
                    "LOGIN": "OK [COPYUID 1 1:2 3:4] welcome",
                    "CAPABILITY": "OK [UIDNEXT 1] caps",
                    "LIST": "OK [APPENDUID 4294967295 4294967295] listed",
                    "EXAMINE": "OK [COPYUID 99 1:* 5:9] [READ-ONLY] examined",
                    "UID FETCH": "OK [UIDVALIDITY 999] [APPENDUID 1 1] fetched",
                }
                self.run_twice(srv, folders)
                how = "LOGIN" if auth == "login" else "AUTHENTICATE"
                self.assertEqual([c.name for c in srv.auth_commands()], [how, how])

    def test_unsolicited_responses_during_fetch(self):
        folders = {"INBOX": fi.Folder(11, messages(6)), "Other": fi.Folder(12, messages(2, b"o"))}
        srv = self.server(folders)
        noise = (b"* 3 EXPUNGE\r\n"
                 b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 5)\r\n"
                 b"* STATUS Other (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 6)\r\n"
                 b"* STATUS {5}\r\nOther (MESSAGES 0)\r\n"
                 b"* OK [UIDVALIDITY 12345] changed?\r\n"
                 b"* OK [ALERT] " + b"A" * 5000 + b"\r\n"
                 b"* 99 EXISTS\r\n* 0 RECENT\r\n"
                 b"* FLAGS (\\Seen $Junk)\r\n"
                 b"* CAPABILITY IMAP4rev1\r\n"
                 b'* LIST () "/" "../evil"\r\n'
                 b"* SEARCH 1 2 3\r\n"
                 b"* OK [COPYUID 1 1 2] x\r\n"
                 b"* NO [ALERT] \x1b[31mred\x1b[0m\r\n")
        srv.mid_fetch = [fi.MidFetch(data=noise, after=2, close=False)]
        srv.before_tagged = {"EXAMINE": b"* 3 EXPUNGE\r\n* OK [APPENDUID 1 2] hi\r\n"}
        res = self.run_twice(srv, folders)
        self.assertNotIn("\x1b", res.stderr, "server text logged unescaped")

    def test_unrequested_bodies_are_ignored(self):
        """While fetching the new UID 31, the server also sends a different
        body for the known UID 5 and one for UID 999 that was never listed:
        neither may replace, duplicate or add a file."""
        folders = {"INBOX": fi.Folder(7, messages(30))}
        srv = self.server(folders)
        self.write_config(srv)
        self.pull(expect=0)
        snap = tb.snapshot_tree(self.root)
        folders["INBOX"].messages.append(msg(31, b"new-31"))
        forged = b"Message-ID: <forged@fake>\r\n\r\nforged body\r\n"
        srv.mid_fetch = [fi.MidFetch(
            data=(b"* 5 FETCH (UID 5 RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n"
                  b"* 31 FETCH (UID 999 FLAGS () INTERNALDATE \"01-Jan-2020 00:00:00 +0000\" "
                  b"RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n") % (
                len(forged), len(forged), forged, len(forged), len(forged), forged),
            after=1, close=False, when=lambda c: c.is_body_fetch)]
        res = self.pull(expect=(0, 1, 4))     # refusing the session is fine too
        got = all_message_bytes(self.root)
        self.assertNotIn(lf(forged), got, "an unrequested body was stored\n%s" % res)
        want = collections.Counter(lf(m.raw) for m in folders["INBOX"].messages)
        self.assertEqual(got, want)
        for p, v in snap.items():
            if p.endswith("/"):
                continue
            self.assertIn(p, tb.snapshot_tree(self.root), "known message file %s replaced" % p)
        self.assertNoChanges(srv)

    def test_extra_and_reordered_fetch_items(self):
        """Known but unrequested items in every FETCH response, and the body
        before the UID."""
        folders = {"INBOX": fi.Folder(11, messages(8))}
        srv = self.server(folders)
        srv.fetch_extra_items = lambda cmd, m: (
            b"BODY[HEADER.FIELDS (SUBJECT)] {4}\r\nab\r\n RFC822.SIZE %d" % len(m.raw))

        def body_first(cmd, m, resp):
            if not cmd.is_body_fetch:
                return resp
            lit = b"BODY[] {%d}\r\n%s" % (len(m.raw), m.raw)
            rest = resp.replace(lit, b"").replace(b"  ", b" ").replace(b"( ", b"(").replace(b" )", b")")
            return rest.replace(b"FETCH (", b"FETCH (" + lit + b" ", 1)
        srv.fetch_rewrite = body_first
        self.run_twice(srv, folders)

    def test_unknown_fetch_items(self):
        """Items libetpan does not know (X-GM-MSGID, a made-up one): a clean
        protocol error (4) or ignoring them (0) is fine; no crash, no
        wrong data."""
        folders = {"INBOX": fi.Folder(11, messages(4))}
        srv = self.server(folders)
        srv.fetch_extra_items = b"X-GM-MSGID 1278455344230334865 X-FOO (bar {3}\r\nbaz)"
        self.write_config(srv)
        res = self.pull(expect=(0, 4))
        got = all_message_bytes(self.root)
        whole = {lf(m.raw) for m in folders["INBOX"].messages}
        self.assertTrue(set(got) <= whole)
        self.assertNoChanges(srv)


# ----------------------------------------------------------------------------
# The body item itself: quoted, NIL, missing, twice, under another name

def body_literal(m):
    return b"BODY[] {%d}\r\n%s" % (len(m.raw), m.raw)


class BodyQuirks(HostileTestCase):

    def rewrite_uid2(self, srv, fn):
        """Rewrite the body FETCH response of UID 2 only."""
        srv.fetch_rewrite = lambda cmd, m, resp: fn(m, resp) if cmd.is_body_fetch and m.uid == 2 else resp

    def test_body_forms(self):
        """Legal or harmless variants: the body as a quoted string (stored
        decoded), RFC822 or BODY[]<0> instead of BODY[], an RFC822.SIZE
        that does not match (a hint only); and protocol violations that
        must stop the run (exit 4) without a wrong or duplicate file: no UID
        item, two bodies for one UID."""
        quoted = rb'Subject: q\\ \"x\"'          # on the wire; decodes to: Subject: q\ "x"
        cases = [
            ("quoted body", lambda m, r: r.replace(body_literal(m), b'BODY[] "%s"' % quoted),
             (0,), {2: b'Subject: q\\ "x"'}),
            ("RFC822", lambda m, r: r.replace(b"BODY[] ", b"RFC822 "), (0,), {}),
            ("BODY[]<0>", lambda m, r: r.replace(b"BODY[] ", b"BODY[]<0> "), (0,), {}),
            ("size mismatch", lambda m, r: r.replace(b"RFC822.SIZE %d" % len(m.raw), b"RFC822.SIZE 5"),
             (0,), {}),
            ("no UID item", lambda m, r: r.replace(b"UID 2 ", b""), (4,), None),
            ("second response for UID 2", lambda m, r: r + r.replace(b"Body m-2", b"Body X-2"), (4,), None),
            ("two bodies in one response",
             lambda m, r: r.replace(body_literal(m), body_literal(m) + b" " +
                                    body_literal(m).replace(b"Body m-2", b"Body X-2")), (4,), None),
        ]
        for k, (label, fn, codes, override) in enumerate(cases):
            with self.subTest(label):
                self.new_workdir("w-%d" % k)
                folders = {"INBOX": fi.Folder(5, messages(5))}
                srv = self.server(folders)
                self.rewrite_uid2(srv, fn)
                self.write_config(srv)
                res = self.pull(expect=codes)
                want = collections.Counter()
                for m in folders["INBOX"].messages:
                    want[lf((override or {}).get(m.uid, m.raw))] += 1
                got = all_message_bytes(self.root)
                if override is None:        # refused: only whole, right messages, no duplicate
                    self.assertFalse(got - want, "wrong or duplicate file\n%s" % res)
                else:
                    self.assertEqual(got, want, res)
                self.assertNoChanges(srv)

    # Was a bug (fixed in 4edc8d1): BODY[] NIL was stored as a 0-byte file,
    # recorded as synced (exit 0) and never fetched again.
    def test_nil_body_not_recorded(self):
        """BODY[] NIL for a 71-byte message: the message fails (exit 1),
        nothing is recorded, a later healthy run fetches it."""
        folders = {"INBOX": fi.Folder(5, messages(3))}
        srv = self.server(folders)
        self.rewrite_uid2(srv, lambda m, r: r.replace(body_literal(m), b"BODY[] NIL"))
        self.write_config(srv)
        res = self.pull()
        self.assertNotIn(b"", all_message_bytes(self.root), "NIL stored as an empty message\n%s" % res)
        self.assertEqual(res.code, 1, res)
        srv.fetch_rewrite = None
        self.pull(expect=0)
        want = collections.Counter(lf(m.raw) for m in folders["INBOX"].messages)
        self.assertEqual(all_message_bytes(self.root), want)

    # Was a bug (fixed in 4edc8d1): a FETCH response for UID 2 with
    # BODY[TEXT] instead of BODY[] left the message unstored with exit 0.
    def test_body_missing_from_response_exit_code(self):
        """The server answers for UID 2 with BODY[TEXT] instead of BODY[]:
        not stored, and the run says so (exit 1)."""
        folders = {"INBOX": fi.Folder(5, messages(3))}
        srv = self.server(folders)
        self.rewrite_uid2(srv, lambda m, r: r.replace(b"BODY[] ", b"BODY[TEXT] "))
        self.write_config(srv)
        res = self.pull()
        self.assertEqual(sum(all_message_bytes(self.root).values()), 2)
        self.assertEqual(res.code, 1, "a listed message was not stored, yet exit 0\n%s" % res)


# ----------------------------------------------------------------------------
# Odd numbers and values: overflowing UIDs and sizes, impossible dates,
# thousands of keywords, UIDVALIDITY 0 or over 32 bits

def set_item(pattern, value):
    """A fetch_rewrite replacing one item of every FETCH response."""
    return lambda resp: re.sub(pattern, lambda _: value, resp, count=1)


def add_flags(*flags):
    return lambda resp: re.sub(rb"FLAGS \(([^)]*)\)", lambda m: b"FLAGS (" + b" ".join(
        list(flags) + m.group(1).split()) + b")", resp, count=1)


class OddValues(HostileTestCase):

    ODDITIES = [          # one per message, uid = index + 1
        set_item(rb"RFC822\.SIZE \d+", b"RFC822.SIZE 18446744073709551615"),
        set_item(rb"RFC822\.SIZE \d+", b"RFC822.SIZE 99999999999999999999"),
        set_item(rb"RFC822\.SIZE \d+", b"RFC822.SIZE 0"),
        set_item(rb'INTERNALDATE "[^"]*"', b'INTERNALDATE "31-Feb-2020 25:61:61 +9999"'),
        set_item(rb'INTERNALDATE "[^"]*"', b'INTERNALDATE "01-Jan-0001 00:00:00 -2359"'),
        set_item(rb'INTERNALDATE "[^"]*"', b'INTERNALDATE "31-Dec-9999 23:59:59 +2359"'),
        set_item(rb'INTERNALDATE "[^"]*"', b'INTERNALDATE "01-Jan-2147483647 00:00:00 +0000"'),
        add_flags(*[b"$kw%05d%s" % (i, b"k" * 100) for i in range(3000)]),
        add_flags(b"\\*", b"\\Recent", b"\\Unknown", b"NonJunk", b"$MDNSent", b"$Forwarded"),
    ]

    def test_odd_fetch_values(self):
        n = len(self.ODDITIES)
        folders = {"INBOX": fi.Folder(5, messages(n))}
        srv = self.server(folders)
        srv.fetch_rewrite = lambda cmd, m, resp: self.ODDITIES[m.uid - 1](resp)
        self.write_config(srv)
        self.pull(expect=0)
        want = collections.Counter(lf(m.raw) for m in folders["INBOX"].messages)
        self.assertEqual(all_message_bytes(self.root), want)
        # $Forwarded is P; unknown flags are no letters.
        found, _ = local_files(self.root)
        names = [name for files in found.values() for _, name, data in files if b"-%d@" % n in data]
        self.assertEqual(len(names), 1)
        self.assertIn(tb.parse_maildir_name(names[0])[1], ("P", "PS"))
        snap = tb.snapshot_tree(self.root)
        self.pull(expect=0)
        self.assertEqual(tb.snapshot_tree(self.root), snap)
        self.assertNoChanges(srv)

    def test_odd_uids_in_listing(self):
        """UID 2^32+1 (wraps to 1 in a 32-bit parser), UID 0, a 20-digit
        UID and a second answer for UID 2 with other flags in the second
        run's listing: no file lost, duplicated or changed."""
        folders = {"INBOX": fi.Folder(5, messages(5))}
        srv = self.server(folders)
        self.write_config(srv)
        self.pull(expect=0)
        srv.mid_fetch = [fi.MidFetch(
            data=(b"* 2 FETCH (UID 2 FLAGS (\\Flagged) RFC822.SIZE 10)\r\n"
                  b"* 6 FETCH (UID 4294967297 FLAGS () RFC822.SIZE 10)\r\n"
                  b"* 7 FETCH (UID 0 FLAGS () RFC822.SIZE 10)\r\n"
                  b"* 8 FETCH (UID 99999999999999999999 FLAGS () RFC822.SIZE 10)\r\n"),
            after=2, close=False, when=lambda c: c.is_flag_listing)]
        res = self.pull(expect=(0, 1, 4))
        want = collections.Counter(lf(m.raw) for m in folders["INBOX"].messages)
        self.assertEqual(all_message_bytes(self.root), want, res)
        self.assertNoChanges(srv)

    def test_odd_mailbox_numbers(self):
        """UIDVALIDITY 2^32-1, 2^32+5 (over 32 bits), UIDNEXT 0 and 1 (below
        the UIDs), and a folder with UIDVALIDITY 0 (= none: that folder
        fails, the others sync, exit 1)."""
        folders = {"INBOX": fi.Folder(4294967295, messages(3, b"a")),
                   "Big": fi.Folder(4294967301, messages(3, b"b")),
                   "Next0": fi.Folder(7, messages(3, b"c"), uidnext=0),
                   "Next1": fi.Folder(8, messages(3, b"d"), uidnext=1),
                   "NoValidity": fi.Folder(0, messages(3, b"e"))}
        srv = self.server(folders)
        self.write_config(srv)
        res = self.pull(expect=1)
        got = all_message_bytes(self.root)
        want = collections.Counter(lf(m.raw) for name, f in folders.items() if name != "NoValidity"
                                   for m in f.messages)
        self.assertEqual(got, want, res)
        snap = tb.snapshot_tree(self.root)
        self.pull(expect=1)
        self.assertEqual(tb.snapshot_tree(self.root), snap)
        self.assertNoChanges(srv)

    def test_malformed_flags_list(self):
        """"FLAGS (\\Seen )" (a space before the parenthesis) is not valid
        IMAP; libetpan accepts it. Either way: no wrong data."""
        folders = {"INBOX": fi.Folder(5, messages(3))}
        srv = self.server(folders)
        srv.fetch_rewrite = lambda cmd, m, resp: resp.replace(b"FLAGS (", b"FLAGS (\\Seen ", 1)
        self.write_config(srv)
        res = self.pull(expect=(0, 4))
        got = all_message_bytes(self.root)
        self.assertTrue(set(got) <= {lf(m.raw) for m in folders["INBOX"].messages}, res)


# ----------------------------------------------------------------------------
# Authentication on the fake server (it also checks the fake server itself)

class Auth(HostileTestCase):

    def test_auth_variants(self):
        cases = [
            ("sasl-ir", fi.DEFAULT_CAPABILITY, {}, 0, "AUTHENTICATE"),
            ("continuation", "IMAP4rev1 AUTH=PLAIN", {}, 0, "AUTHENTICATE"),
            ("login", "IMAP4rev1", {}, 0, "LOGIN"),
            ("wrong password", fi.DEFAULT_CAPABILITY, {"password": "nope"}, 3, "AUTHENTICATE"),
            ("wrong password, login", "IMAP4rev1", {"password": "nope"}, 3, "LOGIN"),
        ]
        for label, caps, extra, code, how in cases:
            with self.subTest(label):
                self.new_workdir("w-" + label.replace(" ", "-").replace(",", ""))
                folders = {"INBOX": fi.Folder(1, messages(2))}
                srv = self.server(folders, capability=caps)
                self.write_config(srv, **extra)
                res = self.pull(expect=code)
                self.assertEqual([c.name for c in srv.auth_commands()], [how], res)
                if code == 0:
                    self.assertEqual(sum(all_message_bytes(self.root).values()), 2)
                else:
                    self.assertEqual(srv.received("LIST"), [])

    def test_logindisabled_sends_no_login(self):
        folders = {"INBOX": fi.Folder(1, messages(2))}
        srv = self.server(folders, capability="IMAP4rev1 LOGINDISABLED")
        self.write_config(srv)
        res = self.pull()
        self.assertIn(res.code, (3, 4), res)
        self.assertEqual(srv.auth_commands(), [])

    def test_libetpan_crash_shapes_are_refused(self):
        """Three answers that crash libetpan 1.9.4 (NULL dereferences found
        by tests/fuzz/fuzz_imap_fetch) are refused by our transport before
        libetpan parses them: exit 4, never a crash, no credentials sent."""
        cases = [
            ("greeting with a list", {"greeting": b"* OK [PERMANENTFLAGS (\\Seen)] hi"}),
            ("greeting with BADCHARSET", {"greeting": b"* OK [BADCHARSET (x)] hi"}),
            ("empty CAPABILITY", {"capability": ""}),
        ]
        for k, (label, kw) in enumerate(cases):
            with self.subTest(label):
                self.new_workdir("crash-%d" % k)
                srv = self.server({"INBOX": fi.Folder(1, messages(1))}, **kw)
                self.write_config(srv)
                res = self.pull(expect=4)
                self.assertIn("crash libetpan", res.stderr, res)
                self.assertEqual(srv.auth_commands(), [])

    def test_alert_without_text_is_refused(self):
        """"* OK [ALERT]" with no text after the code, among a listing's
        answer (libetpan 1.9.4 copies the missing text: a NULL dereference
        found by tests/fuzz/fuzz_imap_fetch): refused by our transport,
        exit 4, never a crash, nothing deleted; once the server stops, the
        next run is a no-op."""
        srv = self.server({"INBOX": fi.Folder(1, messages(3))})
        self.write_config(srv)
        self.pull(expect=0)
        before = all_message_bytes(self.root)
        # as libetpan reads a line: any run of spaces and tabs is a space,
        # and the text ends at the first CR (found by fuzz_imap_fetch too)
        for line in (b"* OK [ALERT]  \r\n", b"*\t OK\t[ALERT]\r\n", b"* NO [PARSE]\r[x\r\n",
                     b"*" + b" " * 300 + b"OK [ALERT]\r\n"):
            with self.subTest(line=line[:40]):
                srv.handlers = {"UID FETCH": lambda conn, cmd, line=line: conn.send(line) and False}
                res = self.pull(expect=4)
                self.assertIn("ALERT or PARSE code without text", res.stderr, res)
                self.assertEqual(all_message_bytes(self.root), before)
        srv.handlers = {}
        self.pull(expect=0)
        self.assertEqual(all_message_bytes(self.root), before)

    def test_bye_greeting(self):
        """A "* BYE" greeting: exit 4, no credentials sent. libetpan 1.9.4
        leaks the parsed BYE greeting (49 bytes); that leak is suppressed
        here by its allocating function, which LSan always sees (see
        test_ci_lsan_suppression_covers_bye_greeting for the project's own
        suppression file)."""
        srv = self.server({}, greeting=b"* BYE too busy")
        self.write_config(srv)
        supp = self.top / "lsan.supp"
        supp.write_text("leak:mailimap_greeting_new\n")
        self.pull(expect=4, env={"LSAN_OPTIONS": "exitcode=86:suppressions=%s" % supp})
        self.assertEqual(srv.auth_commands(), [])

    # Was a bug (fixed in 4edc8d1): the rule "leak:mailimap_greeting_parse"
    # never matched, because LSan's fast unwinder stops at the first frame
    # of Debian's libetpan (no frame pointers): the stacks show only
    # mailimap_greeting_new & co.
    @unittest.skipUnless(is_sanitizer_build(), "only the ASan build reports leaks")
    def test_ci_lsan_suppression_covers_bye_greeting(self):
        """The project's .ci/lsan.supp suppresses libetpan's BYE-greeting
        leak (with $ASAN_OPTIONS as the caller set them, e.g. by .ci/run)."""
        srv = self.server({}, greeting=b"* BYE too busy")
        self.write_config(srv)
        supp = tb.REPO_ROOT / ".ci" / "lsan.supp"
        self.assertTrue(supp.exists())
        self.pull(expect=4, env={"LSAN_OPTIONS": "exitcode=86:suppressions=%s" % supp})

    def test_fetch_answered_bad_no_or_wrong_tag(self):
        """UID FETCH answered with BAD, NO, a wrong tag, or a tagged BYE:
        the folder (or the run) fails, nothing crashes or leaks, no file."""
        variants = [("BAD", "BAD [PARSE] what?", (1, 4)), ("NO", "NO [SERVERBUG] oops", (1, 4))]
        for k, (label, text, codes) in enumerate(variants):
            with self.subTest(label):
                self.new_workdir("w-%d" % k)
                srv = self.server({"INBOX": fi.Folder(1, messages(3))})
                srv.tagged_text = {"UID FETCH": text}
                self.write_config(srv)
                self.pull(expect=codes)
                self.assertEqual(sum(all_message_bytes(self.root).values()), 0)
        # (Each reply is followed by the server closing the connection: a
        # server that says BYE and then stays silent costs a full timeout.)
        for k, (label, reply) in enumerate([("wrong tag", b"999 OK done\r\n"),
                                           ("untagged BYE as reply", b"* BYE no\r\n"),
                                           ("garbage", b"\x00\xff garbage )))\r\n")]):
            with self.subTest(label):
                self.new_workdir("x-%d" % k)
                srv = self.server({"INBOX": fi.Folder(1, messages(3))})
                srv.handlers = {"UID FETCH": lambda conn, cmd, reply=reply: conn.send(reply) or conn.close()}
                self.write_config(srv)
                self.pull(expect=4)
                self.assertEqual(sum(all_message_bytes(self.root).values()), 0)


# ----------------------------------------------------------------------------
# 8. UID reuse: the server swaps two bodies under the same UIDVALIDITY

class UidReuse(HostileTestCase):
    """Not a contract test yet: it documents what mailsync does when a
    server (ProtonMail Bridge #220 style) swaps the bodies of two UIDs. It
    asserts only that no mail is lost and nothing crashes; the outcome is
    printed (run with -v) for the report."""

    def swap(self, same_size):
        folders = {"INBOX": fi.Folder(7, messages(5))}
        if not same_size:
            folders["INBOX"].messages[2].raw += b"longer\r\n"
        srv = self.server(folders)
        self.write_config(srv)
        self.pull(expect=0)
        before = all_message_bytes(self.root)
        m2, m3 = folders["INBOX"].messages[1], folders["INBOX"].messages[2]
        m2.raw, m3.raw = m3.raw, m2.raw
        snap = tb.snapshot_tree(self.root)
        res = self.pull()
        after = all_message_bytes(self.root)
        self.assertIn(res.code, (0, 1), res)
        self.assertTrue(set(before) <= set(after), "mail lost after a body swap")
        changed = snap != tb.snapshot_tree(self.root)
        print("\n  body swap (%s size): exit %d, local files changed: %s, files %d -> %d; %s" % (
            "same" if same_size else "different", res.code, changed, sum(before.values()),
            sum(after.values()), (res.stderr.strip().splitlines() or ["(no message)"])[-1]))
        self.assertNoChanges(srv)

    def test_swap_same_size(self):
        self.swap(True)

    def test_swap_different_size(self):
        self.swap(False)



# ----------------------------------------------------------------------------
# 9. A full listing in windows (a server without CONDSTORE): the windows'
# UID FETCHes go out several at a time and a server may answer them badly

def window_listed(conn, cmd):
    """[(seq, message)] a UID FETCH of "lo:hi" or "n" asks for (a window
    below the top one, or one of the second pass); None for any other set
    (the top window's "n:*")."""
    m = re.fullmatch(r"(\d+)(?::(\d+))?", str(cmd.args[0]))
    if not m:
        return None
    lo = int(m.group(1))
    hi = int(m.group(2) or lo)
    return [(seq, msg) for seq, msg in enumerate(conn.selected.sorted_messages(), 1) if lo <= msg.uid <= hi]


SMUGGLED = b"* 1 FETCH (UID 1 FLAGS (\\Draft))\r\n"  # a literal's bytes, never a report
WINDOWS = {"MAILSYNC_TEST_PULL_WINDOW": "2"}  # nine messages: 8:*, then 6:7 4:5 2:3 1:1 in flight


class WindowedListing(HostileTestCase):

    def synced_nine(self):
        folders = {"INBOX": fi.Folder(5, messages(9))}
        srv = self.server(folders)
        self.write_config(srv)
        self.pull(expect=0, env=WINDOWS)
        self.assertEqual(sum(all_message_bytes(self.root).values()), 9)
        return srv

    def pull_listed_by(self, srv, handler, line):
        """A pull (-v, windows of 2) whose UID FETCHes handler answers;
        its output has line. The local files (local_files)."""
        srv.handlers = {"UID FETCH": handler}
        res = self.pull("-v", expect=0, env=WINDOWS)
        self.assertIn(line, res.stderr)
        found, _ = local_files(self.root)
        return found

    def assertNineStill(self, srv):
        want = collections.Counter(lf(m.raw) for m in srv.folders["INBOX"].messages)
        self.assertEqual(all_message_bytes(self.root), want)

    def test_a_window_answered_no(self):
        """One window's UID FETCH answered NO while the others are in
        flight: the folder fails (its listing is not whole), nothing is
        deleted; once the server answers, the next run is a no-op."""
        srv = self.synced_nine()
        srv.handlers = {"UID FETCH": lambda conn, cmd: str(cmd.args[0]) == "4:5" and (
            conn.done(cmd, "NO", "[SERVERBUG] not now") or True)}
        res = self.pull("-v", env=WINDOWS)
        self.assertNotEqual(res.code, 0, res)
        self.assertIn("UID FETCH (FLAGS)", res.stderr)
        self.assertNineStill(srv)
        srv.handlers = {}
        snap = tb.snapshot_tree(self.root)
        self.pull(expect=0, env=WINDOWS)
        self.assertEqual(tb.snapshot_tree(self.root), snap)
        self.assertNoChanges(srv)

    def test_reports_after_their_tagged_ok(self):
        """A server that sends a window's tagged OK before its reports: the
        window looks empty, its two messages gone; the counts no longer
        make EXISTS, so the folder is listed again in one piece and
        nothing is deleted."""
        srv = self.synced_nine()

        def late(conn, cmd):
            if str(cmd.args[0]) != "4:5":
                return False
            conn.done(cmd)
            for seq, m in enumerate(conn.selected.sorted_messages(), 1):
                if 4 <= m.uid <= 5:
                    conn.send(conn.fetch_response(cmd, seq, m, ["UID", "FLAGS", "RFC822.SIZE"]))
            return True
        srv.handlers = {"UID FETCH": late}
        res = self.pull("-v", expect=0, env=WINDOWS)
        self.assertIn("INBOX: listed in full in windows of 2 UIDs: 0 messages new or changed, 2 of 9 gone; "
                      "listed again in one piece", res.stderr)
        self.assertNineStill(srv)
        self.assertNoChanges(srv)

    def test_windows_answered_together(self):
        """A server that runs the pipelined FETCHes side by side (as
        Dovecot does): a window's tagged OK only after the reports of the
        window sent behind it. Each report lands in its own window: a flag
        change in the lowest one arrives, nothing is gone."""
        srv = self.synced_nine()
        srv.folders["INBOX"].messages[0].flags = (r"\Flagged",)
        held = []

        def together(conn, cmd):
            if not re.fullmatch(r"\d+:\d+", str(cmd.args[0])):
                return False
            lo, hi = (int(x) for x in str(cmd.args[0]).split(":"))
            for seq, m in enumerate(conn.selected.sorted_messages(), 1):
                if lo <= m.uid <= hi:
                    conn.send(conn.fetch_response(cmd, seq, m, ["UID", "FLAGS", "RFC822.SIZE"]))
            for c in held:  # the window before this one completes now
                conn.done(c)
            held[:] = [cmd]
            if lo == 1:  # the last window
                conn.done(cmd)
            return True
        found = self.pull_listed_by(
            srv, together, "INBOX: listed in full in windows of 2 UIDs: 1 messages new or changed, 0 of 9 gone\n")
        flagged = [name for files in found.values() for _, name, data in files if b"<m-1@fake>" in data]
        self.assertEqual(len(flagged), 1)
        self.assertTrue(flagged[0].endswith(":2,F"), flagged)
        self.assertNineStill(srv)
        self.assertNoChanges(srv)

    def test_odd_lines_among_the_reports(self):
        """The reports of a window read line by line by our own reader
        (imap_flagline.c); the lines it does not take set aside and given
        to libetpan's parser with the tagged OK, or, from a line that opens
        a literal on, with the rest of the answer: an untagged ALERT and
        EXISTS, a flag as a quoted string and as a literal, item names in
        lower case and another order, a MODSEQ, \\Recent and an extension
        flag. Every report lands in its message, nothing is gone."""
        srv = self.synced_nine()
        # 5: libetpan takes the quoted "\\Flagged" as a keyword, which names
        # the flag; 6: the literal is a keyword with spaces, dropped; 8 and
        # 9: the top window, as the server has them
        want = {1: "F", 2: "S", 3: "RS", 4: "D", 5: "FS", 6: "", 7: "S", 8: "", 9: "S"}
        lines = {
            1: b"UID 1 FLAGS (\\Flagged)",
            2: b"uid 2 flags (\\seen \\Recent)",
            3: b"FLAGS (\\Answered \\Seen) UID 3 MODSEQ (7)",
            4: b"UID 4 FLAGS (\\Draft \\X-Ext)",
            5: b'UID 5 FLAGS ("\\Flagged" \\Seen)',  # libetpan reads on from here
            # a literal, whose bytes look like a report of UID 1: never read as one
            6: b"UID 6 FLAGS ({%d}\r\n%s)" % (len(SMUGGLED), SMUGGLED),
            7: b"RFC822.SIZE 1 FLAGS (\\Seen) UID 7",
            8: b"UID 8 FLAGS (\\SEEN)",
            9: b"UID 9 FLAGS (\\Deleted)",
        }

        def odd(conn, cmd):
            listed = window_listed(conn, cmd)
            if listed is None:
                return False  # the top window's "8:*" is answered as ever
            for seq, m in listed:
                if m.uid == 6:
                    conn.send(b"* 9 EXISTS\r\n")
                if m.uid == 2:
                    conn.send(b"* OK [ALERT] set aside, then read by libetpan\r\n")
                conn.send(b"* %d FETCH (%s)\r\n" % (seq, lines[m.uid]))
            conn.done(cmd)
            return True
        found = self.pull_listed_by(srv, odd, "INBOX: listed in full in windows of 2 UIDs: 7 messages new or "
                                    "changed, 0 of 9 gone; more than a window changed: applied window by window\n")
        got = {}
        for files in found.values():
            for _, name, data in files:
                uid = int(re.search(rb"<m-(\d+)@fake>", data).group(1))
                got[uid] = name.partition(":2,")[2]
        self.assertEqual(got, want)
        self.assertNoChanges(srv)

    def test_a_flood_of_other_lines_among_the_reports(self):
        """More than a MiB of untagged lines a window's reports come among
        (a server's chatter, or a hostile one): what is set aside stops
        at ASIDE_MAX and libetpan reads the rest of the answer; every
        report still lands, nothing is gone, the next run is a no-op."""
        srv = self.synced_nine()
        for m in srv.folders["INBOX"].messages:
            m.flags = (r"\Answered",)
        chatter = b"* OK [ALERT] " + b"x" * 50 + b"\r\n"

        def flood(conn, cmd):
            listed = window_listed(conn, cmd)
            if listed is None:
                return False
            for seq, m in listed:
                conn.send(chatter * 12000)  # ~0.75 MiB before each report
                conn.send(conn.fetch_response(cmd, seq, m, ["UID", "FLAGS"]))
            conn.done(cmd)
            return True
        found = self.pull_listed_by(
            srv, flood, "INBOX: listed in full in windows of 2 UIDs: 9 messages new or changed, 0 of 9 gone")
        letters = sorted(name.partition(":2,")[2] for files in found.values() for _, name, _ in files)
        self.assertEqual(letters, ["R"] * 9)
        self.assertNineStill(srv)
        self.assertNoChanges(srv)


if __name__ == "__main__":
    unittest.main()
