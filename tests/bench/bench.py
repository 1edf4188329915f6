#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench.py: mailsync against mbsync and OfflineIMAP on one corpus (issue 4).

    python3 tests/bench/bench.py [--n 2000] [--runs 3]
        [--tools mailsync,mbsync,mbsync-nofsync,offlineimap,wire,session,mailsync-b]
        [--scenarios a,b,c,d,e,f,g] [--server default|tuned] [--small] [--json FILE]

Starts the test bed's private Dovecot (tests/integration/testbed.py), seeds
a deterministic corpus (corpus.py) straight into its Maildir, and times every
tool over IMAPS on loopback, each run starting from the identical server
state and (for b-e) the tool's own post-(a) local state:

  (a) initial pull into an empty Maildir
  (b) no-op resync
  (c) resync after 1% of the server messages changed flags
  (d) resync after 100 new server messages
  (e) resync after 1% of the local messages were marked seen (push)
  (f) resync after one message of about 50 MB arrived (peak RSS must not grow)

--server picks Dovecot's process mode: 'default' is the test bed's (a new
imap-login process per connection, a new imap process per login), 'tuned'
the documented high-performance mode of a busy server (login and imap
processes kept waiting and reused), which takes most of the server's fixed
per-connection cost out of every run.

Server states are snapshots of Dovecot's Maildir (message files hard-linked,
index files copied) restored while no IMAP session runs; local states are
snapshots of each tool's work dir restored the same way. After a server
restore every folder is touched once with STATUS, untimed, so that Dovecot
has re-read its restored index files as a live server would have them
(--cold-server: not). The page cache is flushed (sync) before every timed
run so no run pays for another's writes.

After every run the tool's Maildir is checked against the server (every
message exactly once in the right folder, content equal with CRLF -> LF,
flags mapped to Maildir letters; for mailsync also mtime == INTERNALDATE, a
contract point): a run that does not match is a FAIL and its time does not
count. Prints per tool and scenario the median, range and peak RSS (of the
tool's process, from wait4), and the ratios mailsync/peer.

mailsync-b (not in the default --tools) is a second mailsync binary, named by
MAILSYNC_BIN_B, run in turn with the first on the same states: an A/B of two
builds under the same load, its ratio printed as mailsync/mailsync-b.

Exit status: 0 when every run verified, 1 when some run failed, 2 on a
usage or set-up error (such as a requested tool that is not installed).
"""

import argparse
import collections
import hashlib
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))

import testbed as tb        # noqa: E402
import corpus as corpus_mod  # noqa: E402

ALL_TOOLS = ("mailsync", "mbsync", "mbsync-nofsync", "offlineimap", "wire", "session", "fetchnew", "examine",
             "store", "listdir")
ALL_SCENARIOS = ("a", "b", "c", "d", "e", "f", "g")
SCENARIO_NAMES = {"a": "(a) initial pull", "b": "(b) no-op resync", "c": "(c) 1% flags changed",
                  "d": "(d) 100 new messages", "e": "(e) 1% local seen (push)",
                  "f": "(f) one 50 MB message arrives", "g": "(g) all flags changed"}
# (g) is left out unless asked for: it is a peak-RSS probe for big folders
# (every message's flags changed), not a cost a default run compares.
DEFAULT_SCENARIOS = ("a", "b", "c", "d", "e", "f")
# Scenarios whose server state is its own snapshot (made from (a) in set-up);
# the others run against state (a). In all but (e) the server must not change.
SERVER_STATES = ("c", "d", "f", "g")
# Derived states made anew in every bench run, never kept in --server-cache
# (one STORE per folder: cheaper to make than to check).
UNCACHED_STATES = ("g",)
LABEL_W = 30                # width of the scenario column in the tables
SERVER_PROFILES = ("default", "tuned")
USER, PASSWORD = "bench", "bench-pw"
LETTERS = set("DFPRST")
# Every tool connects to this name (the test certificate names localhost and
# 127.0.0.1; mbsync and OfflineIMAP match DNS names only). It must resolve
# to 127.0.0.1 alone, where Dovecot listens.
HOSTNAME = "localhost"

# ----------------------------------------------------------------------------
# Small utilities


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def clone_tree(src, dst, uid=None, gid=None):
    """Copy the tree src to dst: message files (anything directly inside a
    cur/ or new/ directory) are hard-linked, everything else (index files,
    state DBs, sync state) is copied. Maildir message files are never
    written in place by Dovecot or by any of the tools (flags change by
    rename), so a link is as good as a copy and keeps the inode; a tool
    that wrote one in place would corrupt the snapshot and fail the next
    verification. Directory modes and mtimes are kept. uid/gid: chown
    everything (for the server's mail user).

    `cp -al` links the whole tree (in C: at N=200000 a Python loop over
    the files took minutes on a loaded machine); then every file outside
    cur/ and new/ is replaced by a copy of its own (the directories holding
    message files are not even listed), and `chown -R` sets the owner."""
    src, dst = str(src), str(dst)
    if os.path.lexists(dst):
        raise FileExistsError(dst)
    tb._run(["cp", "-al", "--", src, dst])
    for dirpath, dirnames, filenames in os.walk(dst):
        dirnames[:] = [d for d in dirnames if d not in ("cur", "new")]
        for name in filenames:
            d = os.path.join(dirpath, name)
            if os.path.islink(d):
                continue
            tmp = d + ".clone-tmp"
            shutil.copy2(d, tmp)
            os.replace(tmp, d)
        # the copies changed the directory's mtime: put the source's back
        st = os.lstat(os.path.join(src, os.path.relpath(dirpath, dst)))
        os.utime(dirpath, ns=(st.st_atime_ns, st.st_mtime_ns))
    if uid is not None:
        tb._run(["chown", "-R", "--no-dereference", "%d:%d" % (uid, gid), "--", dst])


def replace_tree(snapshot, live, uid=None, gid=None):
    if os.path.lexists(live):
        tb._run(["rm", "-rf", "--", str(live)])
    clone_tree(snapshot, live, uid, gid)


def fmt_s(x):
    if x is None:
        return "-"
    return "%.3f" % x if x < 10 else "%.2f" % x if x < 100 else "%.1f" % x


def mib(kb):
    return kb / 1024.0


def fmt_rss(kb):
    """Peak RSS as '%6.1f MiB', or '-' where there is none (a self-timed
    reference row)."""
    return "%6.1f MiB" % mib(kb) if kb is not None else "%10s" % "-"


# ----------------------------------------------------------------------------
# The server: Dovecot from the test bed, seeded and snapshotted


def server_conf(profile):
    """Dovecot settings added to the test bed's config for a --server profile.

    'default' adds nothing: Dovecot's own defaults, i.e. its high-security
    login mode: every connection forks and execs a new imap-login process
    (it does the TLS handshake), every login a new imap process; on this
    machine that is ~20-45 ms of connect+TLS and ~10-12 ms of LOGIN per
    connection.

    'tuned' is what a busy production server runs: the login processes in
    Dovecot's documented high-performance mode (service_count = 0: one
    process serves many connections; process_min_avail = the number of CPUs,
    kept waiting), and the imap processes prespawned and reused
    (process_min_avail, and service_count = 100 instead of 1: a process
    serves up to 100 logins one after the other, then is replaced; all
    users share one system uid here, which reuse needs). Measured on this
    machine: connect+TLS ~3 ms, LOGIN ~1.5-2 ms. Of the two imap settings
    it is the reuse that makes LOGIN fast (prespawning alone: ~5-10 ms).
    verbose_proctitle lets wait_idle() tell a reused imap process that still
    serves a session from one that is idle."""
    if profile == "default":
        return ""
    cpus = max(2, os.cpu_count() or 1)
    return "\n".join([
        "# --server tuned (tests/bench/bench.py)",
        "service imap-login {",
        "  service_count = 0",
        "  process_min_avail = %d" % cpus,
        "}",
        "service imap {",
        "  service_count = 100",
        "  process_min_avail = %d" % cpus,
        "}",
        "verbose_proctitle = yes",
    ])


class Server:
    """The test bed's Dovecot with one user 'bench' and named snapshots of
    that user's mail (home dir: Maildir with Dovecot's index files).
    profile: a SERVER_PROFILES name, see server_conf(). zlib: load Dovecot's
    imap_zlib plugin (COMPRESS=DEFLATE offered after login)."""

    def __init__(self, workdir, profile="default", warm=True, zlib=False, hide=()):
        (Path(workdir) / "dovecot").mkdir()
        self.profile = profile
        self.warm = warm
        self.bed = tb.Dovecot(users={USER: PASSWORD}, pool=0,
                              workdir=str(Path(workdir) / "dovecot"),
                              extra_conf=server_conf(profile), zlib=zlib,
                              hide_capabilities=tuple(hide),
                              reuse=False)     # the profiles set the processes' reuse
        self.user = self.bed.user(USER)
        self.snapdir = Path(workdir) / "server-snapshots"
        self.snapdir.mkdir()
        # content cache: (folder, uidvalidity, uid, size, internaldate) -> sha256
        # of the LF data. Size and date are in the key because the derived
        # states (d) and (f) both append to (a) and so give the same new
        # UIDs to different messages.
        self.content = {}

    @property
    def home(self):
        return self.bed.server_maildir(self.user).parent

    @property
    def maildir(self):
        return self.bed.server_maildir(self.user)

    def start(self):
        """Start Dovecot on four distinct free ports. The test bed asks the
        kernel for each port separately and may get the same one twice
        (Dovecot then refuses a 'duplicate listener'): pick them while all
        four are held, and retry on that error anyway (someone may take a
        port between the pick and Dovecot's bind)."""
        for attempt in range(3):
            socks = []
            try:
                for _ in range(4):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    socks.append(sock)
                    sock.bind((tb.HOST, 0))
                ports = [sock.getsockname()[1] for sock in socks]
            finally:
                for sock in socks:
                    sock.close()
            bed = self.bed
            bed.imap_port, bed.imaps_port, bed.pop3_port, bed.pop3s_port = ports
            try:
                bed.start()
                return
            except RuntimeError as e:
                if "duplicate listener" not in str(e) or attempt == 2:
                    raise
                log("server: dovecot refused its ports (%s); new ports" % str(e).splitlines()[-1])

    def stop(self):
        self.bed.stop()

    def imap(self):
        return self.bed.imap(self.user, timeout=600)

    def folder_path(self, folder):
        return self.maildir if folder == "INBOX" else self.maildir.joinpath(*folder.split("/"))

    # -- idle: no IMAP session may run while the mail is swapped -----------

    def wait_idle(self, timeout=30):
        """Wait until no 'imap' process of our Dovecot serves a session:
        after a client logs out its imap process may still be writing
        indexes. By default each imap process serves one login and exits,
        so any imap process is busy. With reused processes (--server tuned)
        an idle one stays; verbose_proctitle shows '[user ip ...]' from
        the login until the session's last index write is done (Dovecot
        sets '[idling]' after freeing the user), and no brackets in a
        process that has never served anyone."""
        sid = self.bed.proc.pid
        reused = self.profile != "default"
        deadline = time.monotonic() + timeout
        while True:
            busy = []
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/stat" % pid) as f:
                        stat = f.read()
                except OSError:
                    continue
                comm = stat[stat.find("(") + 1:stat.rfind(")")]
                fields = stat[stat.rfind(")") + 2:].split()
                if len(fields) > 3 and int(fields[3]) == sid and comm == "imap":
                    if reused:
                        try:
                            with open("/proc/%s/cmdline" % pid, "rb") as f:
                                title = f.read().replace(b"\0", b" ").strip()
                        except OSError:
                            continue
                        if b"[" not in title or title.endswith(b"[idling]"):
                            continue
                    busy.append(int(pid))
            if not busy:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("dovecot imap processes %s still running" % busy)
            time.sleep(0.02)

    def snapshot(self, name):
        self.wait_idle()
        dst = self.snapdir / name
        if dst.exists():
            shutil.rmtree(dst)
        clone_tree(self.home, dst)
        return dst

    def restore(self, name):
        self.wait_idle()
        replace_tree(self.snapdir / name, self.home, self.bed.mail_uid, self.bed.mail_gid)
        if self.warm:
            self.warm_up()

    def warm_up(self):
        """One untimed STATUS of every folder after a restore. The restored
        index files are byte for byte the snapshot's, but new inodes and
        ctimes: Dovecot's first look at each folder then re-reads what it
        would otherwise trust (4-16 ms per folder at N=20000), a cost that
        only restoring a snapshot creates. A live server's index is current
        when a timer's run comes, so every tool is timed against a warm one
        (--cold-server turns this off)."""
        with self.bed.imap(self.user) as c:
            for folder in c.list_folders():
                c.status_of(folder)
        self.wait_idle()

    # -- seeding -------------------------------------------------------------

    def seed(self, msgs):
        """Write the corpus into Dovecot's Maildir (files named the way a
        delivery agent would, mtime = INTERNALDATE, flags in the info),
        owned by the mail user; then let Dovecot index every folder and
        check over IMAP that it serves exactly the corpus."""
        uid, gid = self.bed.mail_uid, self.bed.mail_gid
        folders = sorted({m.folder for m in msgs}, key=lambda f: (f != "INBOX", f))
        for folder in folders:
            for sub in ("cur", "new", "tmp"):
                (self.folder_path(folder) / sub).mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(msgs):
            letters = tb.flags_to_letters(m.flags)
            base = "%d.M%dP%d.bench,S=%d" % (m.date, i, 4242, m.size)
            if letters or "\\Seen" in m.flags:
                path = self.folder_path(m.folder) / "cur" / (base + ":2," + letters)
            else:
                path = self.folder_path(m.folder) / "new" / base
            try:
                os.link(m.path, path)
            except OSError:
                shutil.copyfile(m.path, path)
            os.chmod(path, 0o600)
            os.utime(path, (m.date, m.date))
        if os.geteuid() == 0:
            for dirpath, dirnames, filenames in os.walk(self.home):
                os.chown(dirpath, uid, gid)
                for n in filenames:
                    os.chown(os.path.join(dirpath, n), uid, gid)
        # Dovecot lists a folder it has never seen once it exists on disk;
        # subscribe them all, as a real account would be.
        with self.imap() as c:
            listed = c.list_folders()
            for folder in folders:
                if folder not in listed:
                    raise RuntimeError("dovecot does not list seeded folder %r (lists %s)" % (
                        folder, listed))
                c.subscribe(c.mbox(folder))
        state = self.state(fetch_all=True)
        want = collections.Counter((m.folder, m.sha256, tb.flags_to_letters(m.flags), m.date)
                                   for m in msgs)
        got = collections.Counter()
        for folder, entries in state.items():
            for e in entries:
                got[(folder, e["sha"], e["letters"], e["date"])] += 1
        if want != got:
            diff = list((want - got).items())[:5] + list((got - want).items())[:5]
            raise RuntimeError("dovecot does not serve the corpus as written: %s" % diff)

    # -- reading the server state --------------------------------------------

    def state(self, fetch_all=False):
        """{folder: [{uid, sha, letters, date}]} of every selectable folder.
        Bodies are fetched only for UIDs not seen before (IMAP messages are
        immutable: folder+UIDVALIDITY+UID names the same bytes for good)."""
        out = {}
        with self.imap() as c:
            for folder in c.list_folders():
                out[folder] = self._folder_state(c, folder, fetch_all)
        return out

    def expect(self, want, name):
        """The live server lists what state `want` says (UIDs, flags,
        INTERNALDATEs, sizes; bodies by the hashes already known for those
        UIDs, so none is fetched when they all are): after restoring a
        cached state."""
        got = self.state()
        if got != want:
            diff = [f for f in sorted(set(got) | set(want)) if got.get(f) != want.get(f)]
            raise RuntimeError("server state (%s) restored from the cache is not the recorded one "
                               "(folders %s); remove the cache to rebuild" % (name, diff[:5]))

    _ITEM_RE = re.compile(rb"UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE \"([^\"]+)\"|"
                          rb"RFC822\.SIZE (\d+)", re.I)

    def _folder_state(self, c, folder, fetch_all):
        typ, dat = c.select(c.mbox(folder), readonly=True)
        if typ != "OK":
            raise RuntimeError("EXAMINE %s: %r" % (folder, dat))
        count = int(dat[0] or 0)
        uv = c.untagged_responses.get("UIDVALIDITY", [b"0"])[-1]
        uidvalidity = int(uv)
        if count == 0:
            return []
        typ, dat = c.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
        if typ != "OK":
            raise RuntimeError("FETCH in %s: %r" % (folder, dat))
        entries = []
        for item in dat:
            line = item[0] if isinstance(item, tuple) else item
            if not line:
                continue
            u = f = d = z = None
            for m in self._ITEM_RE.finditer(line):
                if m.group(1):
                    u = int(m.group(1))
                elif m.group(2) is not None:
                    f = m.group(2).decode().split()
                elif m.group(3):
                    d = tb.parse_imap_date(m.group(3))
                elif m.group(4):
                    z = int(m.group(4))
            if u is None or f is None or d is None or z is None:
                raise RuntimeError("unparsable FETCH response in %s: %r" % (folder, line))
            entries.append({"uid": u, "letters": tb.flags_to_letters(f), "date": d, "size": z})
        keys = {e["uid"]: (folder, uidvalidity, e["uid"], e["size"], e["date"]) for e in entries}
        need = [e["uid"] for e in entries if fetch_all or keys[e["uid"]] not in self.content]
        for i in range(0, len(need), 200):
            chunk = need[i:i + 200]
            typ, dat = c.uid("FETCH", tb.uid_set(chunk), "(UID BODY.PEEK[])")
            if typ != "OK":
                raise RuntimeError("FETCH BODY in %s: %r" % (folder, dat))
            for item in dat:
                if not isinstance(item, tuple):
                    continue
                m = re.search(rb"UID (\d+)", item[0])
                if not m:
                    raise RuntimeError("FETCH BODY without UID in %s: %r" % (folder, item[0]))
                data = item[1].replace(b"\r\n", b"\n")
                uid = int(m.group(1))
                if uid not in keys:
                    raise RuntimeError("FETCH BODY of unknown UID %d in %s" % (uid, folder))
                self.content[keys[uid]] = hashlib.sha256(data).hexdigest()
        for e in entries:
            e["sha"] = self.content[keys[e["uid"]]]
        return entries

    # -- changing the server (scenario set-up) ------------------------------

    def counters(self):
        """{folder: (UIDVALIDITY, HIGHESTMODSEQ)} of every selectable folder."""
        out = {}
        with self.imap() as c:
            for folder in c.list_folders():
                typ, dat = c.status(c.mbox(folder), "(UIDVALIDITY HIGHESTMODSEQ)")
                uv = re.search(rb"UIDVALIDITY (\d+)", dat[0] or b"") if typ == "OK" else None
                ms = re.search(rb"HIGHESTMODSEQ (\d+)", dat[0] or b"") if typ == "OK" else None
                if not uv or not ms:
                    raise RuntimeError("STATUS %s: %r" % (folder, dat))
                out[folder] = (int(uv.group(1)), int(ms.group(1)))
        return out

    def enable_modseqs(self):
        """Turn on Dovecot's modseq tracking in every folder (what the first
        CONDSTORE client does), before state (a) is snapshotted. Otherwise
        every state derived from (a) enables it anew, numbers every message
        afresh, and a QRESYNC client is told that all of them changed: an
        artifact of restoring snapshots that no real server shows."""
        with self.bed.imap(self.user) as c:
            c._simple_command("ENABLE", "CONDSTORE")
            for folder in c.list_folders():
                c._simple_command("SELECT", c.mbox(folder), "(CONDSTORE)")

    def change_flags(self, share, seed, count=0):
        """Change the flags of `share` of all messages (`count` of them if
        given; deterministic pick): unread ones get read, read ones get
        flagged, answered, or unread."""
        state = self.state()
        allmsgs = sorted((f, e["uid"], e["letters"]) for f, es in state.items() for e in es)
        rng = random.Random("bench-c/%s" % seed)
        k = change_count(len(allmsgs), share, count)
        picked = rng.sample(allmsgs, k)
        ops = collections.defaultdict(list)
        for folder, uid, letters in picked:
            if "S" not in letters:
                op = ("+", "\\Seen")
            else:
                op = rng.choice((("+", "\\Flagged"), ("+", "\\Answered"), ("-", "\\Seen")))
                if op[1] == "\\Flagged" and "F" in letters:
                    op = ("-", "\\Flagged")
                if op[1] == "\\Answered" and "R" in letters:
                    op = ("-", "\\Seen")
            ops[(folder,) + op].append(uid)
        with self.imap() as c:
            for (folder, mode, flag), uids in sorted(ops.items()):
                c.set_flags(folder, uids, [flag], mode)
        return k

    def mark_all_seen(self):
        """Another client marks every message read and flagged: STORE 1:*
        +FLAGS (\\Seen \\Flagged) in every folder (one command each, as a
        mail reader sends it; \\Flagged too, so that every message changes:
        most of the corpus is read already); -> how many changed."""
        state = self.state()
        changed = sum(1 for es in state.values() for e in es if not set("SF") <= set(e["letters"]))
        with self.imap() as c:
            for folder in sorted(state):
                if state[folder]:
                    c.select_folder(folder)
                    c._ok(*c.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Seen \\Flagged)"), "STORE on %s" % folder)
        return changed

    def expunge_share(self, share, seed):
        """Expunge `share` of every folder's messages (deterministic pick,
        spread over the UID range): UID gaps, as a real mailbox has them
        after deletions. -> how many."""
        state = self.state()
        rng = random.Random("bench-gaps/%s" % seed)
        total = 0
        with self.imap() as c:
            for folder in sorted(state):
                uids = sorted(e["uid"] for e in state[folder])
                k = round(len(uids) * share)
                gone = sorted(rng.sample(uids, k))
                for i in range(0, len(gone), 5000):
                    c.expunge_uids(folder, gone[i:i + 5000])
                total += k
        return total

    def append(self, msgs):
        with self.imap() as c:
            for m in msgs:
                c.append_message(m.folder, m.data_crlf(), m.flags, m.date)


# ----------------------------------------------------------------------------
# The seeded server, kept between bench runs (--server-cache)


def message_files(root):
    """{relative path: absolute path} of every Maildir message file under
    root (anything directly inside a cur/ or new/ directory)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        if os.path.basename(dirpath) in ("cur", "new"):
            for name in filenames:
                p = os.path.join(dirpath, name)
                out[os.path.relpath(p, str(root))] = p
    return out


def stat_key(st):
    """What says a file is unchanged without reading it (the quick check of
    rsync and of git's index): inode, size and mtime. Maildir message files
    are never written in place (flags change by rename), and a write would
    move the mtime."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


class ServerCache:
    """Server states made once and restored by later runs: DIR/KEY/NAME/ per
    state NAME (a, c, d, f), KEY naming everything the state depends on
    (corpus N, seed, --small and its FORMAT, server mode, Dovecot version).
    Each NAME/ holds home/ (the user's home as Server.snapshot() keeps it:
    message files hard-linked, index files copied) and state.json: the
    server state as read over IMAP when the state was made (Server.state():
    UID, flags, INTERNALDATE, size and the sha256 of every body), the body
    hashes by UID (Server.content), and every message file's stat_key and
    sha256.

    What a cached state skips, and the cheaper check that replaces it:
    - Seeding's fetch of every body over IMAP (Server.seed): it showed,
      when the state was made, that Dovecot serves exactly the corpus. A
      restored state is the same files and the same index files; load()
      checks that no message file changed since (stat_key, else its
      sha256 again), that the bodies the state names are the files' bodies
      (the multiset of file hashes per folder equals the state's), and,
      after restoring it into the live server, that Dovecot lists the same
      UIDs with the same flags, INTERNALDATEs and sizes (one FETCH of
      those per folder, no bodies). A Dovecot that served other bytes for
      a UID would still be caught: every tool's run is verified against
      the state's body hashes, so a tool that stored what Dovecot served
      would FAIL.
    - The IMAP work of making (c), (d) and (f) (STOREs, APPENDs)."""

    def __init__(self, root, key):
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)
        # (st_dev, st_ino) -> (stat_key, sha256) of files saved in this
        # process: the links in DIR keep those inodes from being reused
        self.hashes = {}

    def has(self, name):
        return (self.dir / name / "state.json").exists()

    def save(self, name, snapshot, state, content):
        """Keep the server snapshot `snapshot` (a Server.snapshot() dir) as
        state `name`, with its IMAP state and body hashes."""
        dst = self.dir / name
        tmp = self.dir / (name + ".tmp")
        for d in (tmp, dst):
            if os.path.lexists(d):
                shutil.rmtree(d)
        tmp.mkdir()
        clone_tree(snapshot, tmp / "home")
        files = {}
        for rel, p in message_files(tmp / "home").items():
            st = os.stat(p)
            # (c), (d), (f) share most files (links) with (a): hashed once
            rec = self.hashes.get((st.st_dev, st.st_ino))
            sha = rec[1] if rec and rec[0] == stat_key(st) else file_hash(p)
            self.hashes[(st.st_dev, st.st_ino)] = (stat_key(st), sha)
            files[rel] = stat_key(st) + [sha]
        check_files_match_state(files, state)
        folders = sorted({k[0] for k in content})
        data = {"state": state, "files": files,
                "content": [[f, uv, uid, size, date, sha] for (f, uv, uid, size, date), sha in content.items()],
                "folders": folders}
        with open(tmp / "state.json", "w") as f:
            json.dump(data, f)
        os.rename(tmp, dst)

    def load(self, name, server, as_name=None):
        """Put state `name` into server's snapshots as `as_name` (default:
        name; for restore()); -> its IMAP state. Raises RuntimeError when a
        cached file changed."""
        src = self.dir / name
        with open(src / "state.json") as f:
            data = json.load(f)
        files = data["files"]
        have = message_files(src / "home")
        if set(have) != set(files):
            raise RuntimeError("server cache %s: message files differ from its record (%d != %d); "
                               "remove it to rebuild" % (src, len(have), len(files)))
        rehashed = 0
        for rel, p in have.items():
            rec = files[rel]
            if stat_key(os.stat(p)) != rec[:4]:
                rehashed += 1
                if file_hash(p) != rec[4]:
                    raise RuntimeError("server cache %s: %s changed; remove the cache to rebuild" % (src, rel))
        state = data["state"]
        check_files_match_state(files, state)
        for f, uv, uid, size, date, sha in data["content"]:
            server.content[(f, uv, uid, size, date)] = sha
        dst = server.snapdir / (as_name or name)
        if dst.exists():
            shutil.rmtree(dst)
        clone_tree(src / "home", dst)
        if rehashed:
            log("server cache: %d files of %s re-hashed (moved or touched), all as recorded" % (rehashed, name))
        return state


def check_files_match_state(files, state):
    """The message files' bodies are the state's bodies, folder by folder
    (as multisets of sha256; file paths are below the home's Maildir/)."""
    by_folder = collections.defaultdict(collections.Counter)
    for rel, rec in files.items():
        parts = rel.split(os.sep)[1:-2]        # Maildir/<folder parts>/cur/<name>
        by_folder["/".join(parts) or "INBOX"][rec[4]] += 1
    want = collections.defaultdict(collections.Counter)
    for folder, entries in state.items():
        for e in entries:
            want[folder][e["sha"]] += 1
    got = {f: c for f, c in by_folder.items() if c}
    want = {f: c for f, c in want.items() if c}
    if got != want:
        bad = sorted(set(got) ^ set(want)) or [f for f in want if got.get(f) != want[f]]
        raise RuntimeError("server cache: message files and IMAP state differ in %s" % bad[:5])


def server_cache_key(a):
    return "n%d%s-s%s-f%d-%s-dovecot%s%s" % (a.n, "-small" if a.small else "", a.seed, corpus_mod.FORMAT,
                                              a.server, dovecot_version(), "-gaps%g" % a.gaps if a.gaps else "")


# ----------------------------------------------------------------------------
# The network between the tools and Dovecot (--rtt, --rate)


class NetProxy:
    """A model network between every tool and Dovecot, for --rtt and --rate:
    forwards 127.0.0.1:<port> to the server, each direction its own link.

    latency: seconds each chunk takes to arrive (a round trip costs twice
    that); chunks stay pipelined (one sent while another is in flight is
    not held up by it). rate: bytes per second of each direction's link (0:
    unlimited): a chunk occupies its link for len/rate seconds after the
    previous one left it (a token bucket with a bucket of one chunk, chunks
    of at most CHUNK bytes), then travels latency seconds. Data beyond
    about one bandwidth-delay product waits in the sender's socket buffers
    (a bounded queue), so a server that sends ahead is held back as by a
    real link rather than buffered without limit here. The TCP handshake's
    own round trip is not added.

    Counters, per connection and summed since reset(): bytes each way, and
    turns: the times the client sent something after it had been delivered
    something since its last send, i.e. the request/response turns it took
    (the TLS handshake's included). A client that waits for every answer
    takes one turn per command; one that pipelines takes one per burst.
    record=True keeps each connection's raw chunks in order, both
    directions (readable with --transport plain)."""

    CHUNK = 16384

    def __init__(self, target_port, latency=0.0, rate=0.0, record=False):
        self.target = (tb.HOST, target_port)
        self.latency, self.rate, self.record = latency, rate, record
        self.lock = threading.Lock()
        self.stopping = False
        self.socks = set()
        self.reset()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((tb.HOST, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]

    def reset(self):
        """Zero the counters (before a run)."""
        with self.lock:
            self.connections = 0
            self.turns = 0
            self.bytes_down = self.bytes_up = 0
            self.transcripts = []     # per connection: [(down, bytes)]

    def start(self):
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def stop(self):
        self.stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            for s in list(self.socks):
                try:
                    s.close()
                except OSError:
                    pass

    def _accept_loop(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = {"left": 2, "socks": (client, server), "delivered": False,
                    "log": [] if self.record else None}
            with self.lock:
                self.connections += 1
                self.socks.update((client, server))
                if self.record:
                    self.transcripts.append(conn["log"])
            # With a rate, the queue holds about two bandwidth-delay products
            # (enough not to slow the link; more would only add delay);
            # without one it is unbounded (a bound would cap the throughput
            # at bound / latency).
            bound = 0 if not self.rate else int(self.rate * max(self.latency, 0.005) * 2 / self.CHUNK) + 8
            for src, dst, down in ((server, client, True), (client, server, False)):
                q = queue.Queue(maxsize=bound)
                threading.Thread(target=self._link_in, args=(src, q, down, conn), daemon=True).start()
                threading.Thread(target=self._link_out, args=(dst, q, down, conn), daemon=True).start()

    def _link_in(self, src, q, down, conn):
        """Read chunks as they come; each is due when the link has carried
        it (rate) and it has travelled (latency)."""
        free_at = 0.0       # when this direction's link is free again
        try:
            while not self.stopping:
                data = src.recv(self.CHUNK)
                if not data:
                    break
                now = time.monotonic()
                with self.lock:
                    if down:
                        self.bytes_down += len(data)
                    else:
                        self.bytes_up += len(data)
                        if conn["delivered"]:
                            self.turns += 1
                            conn["delivered"] = False
                    if conn["log"] is not None:
                        conn["log"].append((down, data))
                start = max(now, free_at)
                free_at = start + (len(data) / self.rate if self.rate else 0.0)
                q.put((free_at + self.latency, data))
        except OSError:
            pass
        q.put((max(time.monotonic(), free_at) + self.latency, None))

    def _link_out(self, dst, q, down, conn):
        """Deliver each chunk when due, in order; at the end close dst's
        sending side, and both sockets once both directions ended."""
        try:
            while True:
                due, data = q.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is None:
                    dst.shutdown(socket.SHUT_WR)
                    break
                dst.sendall(data)
                if down:
                    with self.lock:
                        conn["delivered"] = True
        except OSError:
            pass
        with self.lock:
            conn["left"] -= 1
            last = conn["left"] == 0
        if last:
            for sock in conn["socks"]:
                try:
                    sock.close()
                except OSError:
                    pass
                with self.lock:
                    self.socks.discard(sock)


# ----------------------------------------------------------------------------
# The tools


class Tool:
    """One client under test: writes its config into `work`, says how to run
    a scenario, and where its Maildir lives and how folder names map."""

    name = "?"
    decode_mutf7 = False        # local folder names are modified UTF-7
    added_header = None         # a header line the tool adds (bytes prefix), ignored
    check_mtime = False         # contract: file mtime == INTERNALDATE
    reference = False           # a baseline, not a sync tool: not verified
    ref_scenarios = ()          # the scenarios a reference row runs in
    self_timed = False          # prints "session-seconds S": its own timing

    def __init__(self, work, server, tls=True):
        self.work = Path(work)       # everything of this tool lives here
        self.server = server
        self.tls = tls               # IMAPS (implicit TLS) or plain IMAP
        self.maildir = self.work / "Mail"

    port_override = None        # --rtt: the delaying proxy's port

    @property
    def port(self):
        if self.port_override:
            return self.port_override
        return self.server.bed.imaps_port if self.tls else self.server.bed.imap_port

    def binary(self):
        raise NotImplementedError

    def prepare(self):
        """Create the work dir with config and an empty Maildir root."""
        raise NotImplementedError

    def argv(self, scenario):
        raise NotImplementedError

    def env(self):
        env = dict(os.environ)
        env["HOME"] = str(self.work / "home")
        for var, sub in (("XDG_CONFIG_HOME", "xdg-config"), ("XDG_STATE_HOME", "xdg-state"),
                         ("XDG_CACHE_HOME", "xdg-cache"), ("XDG_DATA_HOME", "xdg-data")):
            env[var] = str(self.work / "home" / sub)
        env.pop("MAILSYNC_CONFIG", None)
        return env

    def missing(self, scenario, result):
        """A reason string when a run shows the tool lacks the scenario's
        feature (then it is reported, not failed)."""
        return None

    def _mkdirs(self):
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "home").mkdir(exist_ok=True)
        self.maildir.mkdir(exist_ok=True)


class Mailsync(Tool):
    name = "mailsync"
    check_mtime = True
    connections = 1             # its config's `connections =` (--connections)
    compress = None             # its config's `compress =` (None: not written, the default)

    def binary(self):
        return tb.mailsync_bin()

    def prepare(self):
        self._mkdirs()
        bed = self.server.bed
        self.config = self.work / "config"
        keys = tb.account_keys(bed, self.server.user, self.maildir, self.work / "state.sqlite",
                               tls="implicit" if self.tls else "none", host=HOSTNAME, port=self.port)
        if self.connections > 1:
            keys["connections"] = self.connections
        if self.compress is not None:
            keys["compress"] = self.compress
        tb.write_config(self.config, {"bench": keys})

    def argv(self, scenario):
        cmd = "sync" if scenario == "e" else "pull"
        return [self.binary(), "-q", "-c", str(self.config), cmd]

    def missing(self, scenario, result):
        if scenario == "e" and result["code"] != 0:
            err = result["stderr"].lower()
            if any(s in err for s in ("not implemented", "unknown command", "not yet",
                                      "unsupported", "usage")) or result["code"] == 2:
                return "missing: needs push"
        return None


def mailsync_b_bin():
    """The second build's executable (MAILSYNC_BIN_B, absolute), or ""."""
    b = os.environ.get("MAILSYNC_BIN_B", "")
    return os.path.abspath(b) if b else b


class MailsyncB(Mailsync):
    """Another build of mailsync (MAILSYNC_BIN_B), for an A/B comparison
    whose runs interleave with the first's."""
    name = "mailsync-b"

    def binary(self):
        return mailsync_b_bin()


class Mbsync(Tool):
    name = "mbsync"
    decode_mutf7 = True
    # mbsync writes a tracking header into every message it stores (its
    # "TUID", used to find a message again after an interrupted run).
    added_header = b"X-TUID: "
    fsync = True

    def binary(self):
        return shutil.which("mbsync") or "mbsync"

    def prepare(self):
        self._mkdirs()
        bed = self.server.bed
        for mode in ("Pull", "All"):
            rc = """\
# written by tests/bench/bench.py
FSync {fsync}

IMAPAccount bench
Host {host}
Port {port}
User {user}
Pass {password}
{tls}

IMAPStore remote
Account bench

MaildirStore local
Path {root}/
Inbox {root}/INBOX
SubFolders Verbatim

Channel bench
Far :remote:
Near :local:
Patterns *
Create Near
Sync {mode}
SyncState *
""".format(fsync="yes" if self.fsync else "no", host=HOSTNAME, port=self.port, user=USER,
           tls=("SSLType IMAPS\nCertificateFile %s" % bed.ca_file) if self.tls else "SSLType None",
           password=PASSWORD, ca=bed.ca_file, root=self.maildir, mode=mode)
            p = self.work / ("mbsyncrc-" + mode.lower())
            p.write_text(rc)
            os.chmod(p, 0o600)

    def argv(self, scenario):
        rc = self.work / ("mbsyncrc-all" if scenario == "e" else "mbsyncrc-pull")
        return [self.binary(), "-q", "-c", str(rc), "-a"]


class MbsyncNoFsync(Mbsync):
    name = "mbsync-nofsync"
    fsync = False


class OfflineImap(Tool):
    name = "offlineimap"
    decode_mutf7 = True

    def binary(self):
        return shutil.which("offlineimap") or "offlineimap"

    def prepare(self):
        self._mkdirs()
        bed = self.server.bed
        (self.work / "meta").mkdir(exist_ok=True)
        rc = """\
# written by tests/bench/bench.py
[general]
accounts = bench
metadata = {meta}
ui = quiet

[Account bench]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {root}
sep = /

[Repository remote]
type = IMAP
remotehost = {host}
remoteport = {port}
{tls}
remoteuser = {user}
remotepass = {password}
""".format(meta=self.work / "meta", root=self.maildir, host=HOSTNAME, port=self.port,
           tls=("ssl = yes\nsslcacertfile = %s" % bed.ca_file) if self.tls else "ssl = no\nstarttls = no",
           user=USER, password=PASSWORD)
        self.config = self.work / "offlineimaprc"
        self.config.write_text(rc)
        os.chmod(self.config, 0o600)

    def argv(self, scenario):
        return [self.binary(), "-c", str(self.config), "-o", "-u", "quiet"]


class Wire(Tool):
    """Reference row, not a sync tool: the whole corpus fetched over IMAPS
    in one pipelined burst (LOGIN, then per folder EXAMINE + UID FETCH 1:*
    BODY.PEEK[], then LOGOUT, all sent at once) by `openssl s_client` to
    /dev/null. The floor any pull pays for the wire and the server; only
    scenario (a), nothing stored, nothing verified."""

    name = "wire"
    reference = True
    ref_scenarios = ("a",)

    def binary(self):
        return shutil.which("openssl") or "openssl"

    def prepare(self):
        self.write_burst(lambda i, mbox: ["e%d EXAMINE %s" % (i, mbox), "f%d UID FETCH 1:* BODY.PEEK[]" % i])

    def write_burst(self, per_folder, head=()):
        """The commands file: LOGIN, head, per_folder(i, quoted name) for
        every folder of the corpus, LOGOUT (tag z), sent as one burst."""
        self._mkdirs()
        folders = sorted({m.folder for m in self.server.corpus})
        self.folder_of = {tb.ImapClient.mbox(f): f for f in folders}
        cmds = ["a LOGIN %s %s" % (USER, PASSWORD)] + list(head)
        for i, f in enumerate(folders):
            cmds += per_folder(i, tb.ImapClient.mbox(f))
        cmds.append("z LOGOUT")
        (self.work / "commands").write_bytes(("\r\n".join(cmds) + "\r\n").encode())

    def argv(self, scenario):
        if not self.tls:
            # bash's /dev/tcp: send everything, read until Dovecot closes.
            script = 'exec 3<>"/dev/tcp/127.0.0.1/$0" && cat "$1" >&3 && exec cat <&3 > /dev/null'
            return [shutil.which("bash") or "/bin/bash", "-c", script, str(self.port),
                    str(self.work / "commands")]
        script = 'exec "$0" s_client -quiet -verify_return_error -CAfile "$1" -servername "$2" ' \
                 '-connect "$2:$3" < "$4" > /dev/null'
        return ["/bin/sh", "-c", script, self.binary(), self.server.bed.ca_file, HOSTNAME,
                str(self.port), str(self.work / "commands")]


# Run by the Session row: one session's worth of server work, timed from the
# connect to the last STATUS answer (what a resync must know; the LOGOUT's
# answer and the close are read but not timed). Everything a client could
# prepare beforehand (the interpreter, the TLS context) is outside the
# timed part.
SESSION_SCRIPT = r"""
import re, socket, ssl, sys, time
host, port, ca, commands = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
fetched = int(sys.argv[5]) if len(sys.argv) > 5 else 0  # FETCH answers expected
burst = open(commands, "rb").read()
tags = [line.split(b" ", 1)[0] for line in burst.split(b"\r\n") if line]
wanted = [b"\r\n" + t + b" OK " for t in tags if t != b"z"]   # all but LOGOUT's
ctx = ssl.create_default_context(cafile=ca) if ca else None
t0 = time.monotonic()
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if ctx:
    s = ctx.wrap_socket(s, server_hostname=host)
s.sendall(burst)
got, t1 = b"", None
while True:
    try:
        chunk = s.recv(65536)
    except (ssl.SSLEOFError, ConnectionResetError):
        break
    if not chunk:
        break
    got += chunk
    if t1 is None and all(w in got for w in wanted):
        t1 = time.monotonic()
if t1 is None or b"\r\nz OK " not in got:
    sys.exit("session: incomplete answers:\n" + got.decode(errors="replace")[-2000:])
n = len(re.findall(rb"\r\n\* \d+ FETCH \(", got))
if n < fetched:
    sys.exit("session: %d FETCH answers, %d expected" % (n, fetched))
print("session-seconds %.6f" % (t1 - t0))
"""


class Session(Wire):
    """Reference row, not a sync tool: the least any resync asks of the
    server. LOGIN, a STATUS of every folder and LOGOUT, sent in one burst
    right after the TLS handshake, without waiting for any answer; timed in
    the process from the connect until the last STATUS answer, so
    the client's own start-up (process, TLS context) is not in it. What is
    left is the server's fixed cost of one session on this bed (with the
    default process mode: starting an imap-login and an imap process) plus
    the round trips: a ratio target for (b)-(d) below session/peer cannot
    be met by any client here. No state, no Maildir, nothing verified; no
    RSS (the process is Python)."""

    name = "session"
    reference = True
    ref_scenarios = ("b", "c", "d")
    self_timed = True

    def binary(self):
        return sys.executable

    def prepare(self):
        self.write_burst(lambda i, mbox: [self.status_cmd(i, mbox)])

    @staticmethod
    def status_cmd(i, mbox):
        """The STATUS a resync asks of folder i (quoted name mbox)."""
        return "s%d STATUS %s (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)" % (i, mbox)

    def argv(self, scenario):
        return [self.binary(), "-c", SESSION_SCRIPT, HOSTNAME, str(self.port),
                self.server.bed.ca_file if self.tls else "", str(self.work / "commands")]


class FetchNew(Session):
    """Reference row for (d), not a sync tool: what the server does for the
    100 new messages whatever the client, timed as `session`: LOGIN, a
    STATUS of every folder, EXAMINE INBOX and one UID FETCH of the UIDs
    above (a)'s (their flags, sizes and bodies), all in one burst. At large
    N this shows how much of a (d) resync is the server's own work on a
    big folder (reading its index and Maildir after mail arrived)."""

    name = "fetchnew"
    ref_scenarios = ("d",)
    states = None  # the bench's server states (set by the bench)

    def prepare(self):
        top = max((e["uid"] for e in self.states["a"].get("INBOX", ())), default=0)

        def cmds(i, mbox):
            out = [self.status_cmd(i, mbox)]
            if mbox == tb.ImapClient.mbox("INBOX"):
                out += ["x EXAMINE %s" % mbox, "y UID FETCH %d:* (UID FLAGS RFC822.SIZE BODY.PEEK[])" % (top + 1)]
            return out
        self.write_burst(cmds)
        self.new = len(self.states["d"].get("INBOX", ())) - len(self.states["a"].get("INBOX", ()))

    def argv(self, scenario):
        return super().argv(scenario) + [str(self.new)]


class Examine(Session):
    """Reference row for (c), not a sync tool: what the server does to tell
    a client which flags changed, whatever the client, timed as `session`:
    LOGIN, ENABLE QRESYNC, a STATUS of every folder, and an EXAMINE with
    the (a) state's UIDVALIDITY and HIGHESTMODSEQ (QRESYNC: the changes come
    with the open) of each folder whose HIGHESTMODSEQ moved, all in one
    burst. At large N this shows how much of a (c) resync is the server's
    own work on a big folder, as fetchnew does for (d)."""

    name = "examine"
    ref_scenarios = ("c",)
    counters = None  # {folder: (uidvalidity, highestmodseq)} of state (a) (set by the bench)

    def prepare(self):
        # untimed: which folders changed since (a) (the STATUS a client's
        # own run begins with tells it the same)
        now = self.server.counters()
        changed = {f for f, (uv, ms) in now.items() if self.counters.get(f) != (uv, ms)}

        def cmds(i, mbox):
            out = [self.status_cmd(i, mbox)]
            folder = self.folder_of[mbox]
            if folder in changed:
                uv, ms = self.counters[folder]
                out.append("e%d EXAMINE %s (QRESYNC (%d %d))" % (i, mbox, uv, ms))
            return out
        self.write_burst(cmds, head=["q ENABLE QRESYNC"])
        self.examined = len(changed)

    def missing(self, scenario, result):
        # a floor that opened no folder is no floor for (c)
        return None if self.examined else "no folder changed since (a): nothing to examine"


class Store(Session):
    """Reference row for (e), not a sync tool: what the server does to take
    a push of the same number of \\Seen flags, whatever the client, timed as
    `session`: LOGIN, a STATUS of every folder, then for each folder with
    picks a SELECT and one UID STORE +FLAGS.SILENT (\\Seen), all in one
    burst. The picks are unseen messages of state (a) drawn the way (e)
    draws the local ones (its count, spread over all folders), not the same
    messages (a tool's local names do not say their UIDs). Added to listdir
    it is (e)'s floor: no one-shot push does less on either side."""

    name = "store"
    ref_scenarios = ("e",)
    changes = 0  # (e)'s count, --changes (0: 1%) (set by the bench)
    seed = "1"

    def prepare(self):
        allmsgs = sorted((f, e["uid"]) for f, es in self.states["a"].items() for e in es
                         if "S" not in e["letters"])
        k = change_count(sum(len(es) for es in self.states["a"].values()), 0.01, self.changes)
        picks = collections.defaultdict(list)
        for folder, uid in random.Random("bench-e-store/%s" % self.seed).sample(allmsgs, min(k, len(allmsgs))):
            picks[folder].append(uid)
        self.picked = sum(len(v) for v in picks.values())

        def cmds(i, mbox):
            out = [self.status_cmd(i, mbox)]
            uids = sorted(picks.get(self.folder_of[mbox], ()))
            if uids:
                out += ["o%d SELECT %s" % (i, mbox), "w%d UID STORE %s +FLAGS.SILENT (\\Seen)" % (i, tb.uid_set(uids))]
            return out
        self.write_burst(cmds)

    def missing(self, scenario, result):
        return None if self.picked else "no unseen message in (a) to mark"


class ListDir(Tool):
    """Reference row for (e), not a sync tool: one bare listing of the
    Maildir a sync tool made in (a) (`ls -f` of every folder's cur/ and
    new/: the directories read, no sort, no stat), timed like a tool. No
    one-shot push can learn which files a reader renamed without reading
    those directories once (a running `watch` has inotify; a run from a
    timer has not): at large N this is that floor, as fetchnew is the
    server's for (d). Nothing verified."""

    name = "listdir"
    reference = True
    ref_scenarios = ("e",)
    snapshots = None  # the bench's local snapshots, by tool (set by the bench)

    def binary(self):
        return shutil.which("ls") or "/bin/ls"

    def prepare(self):
        self.dirs = []
        src = next((self.snapshots[n] for n in ("mailsync", "mailsync-b", "mbsync", "offlineimap")
                    if self.snapshots and n in self.snapshots), None)
        if src is None:
            return
        clone_tree(src, self.work)
        for dirpath, dirnames, _ in os.walk(str(self.work)):
            if "cur" in dirnames and "new" in dirnames and "tmp" in dirnames:
                self.dirs += [os.path.join(dirpath, "cur"), os.path.join(dirpath, "new")]
            dirnames[:] = [d for d in dirnames if d not in ("cur", "new", "tmp")]
        self.dirs.sort()

    def argv(self, scenario):
        if not self.dirs:
            return ["/bin/true"]
        return ["/bin/sh", "-c", 'exec "$0" -f -1 --color=never -- "$@" > /dev/null', self.binary()] + self.dirs

    def missing(self, scenario, result):
        return None if self.dirs else "no Maildir to list (run with mailsync)"


TOOL_CLASSES = {c.name: c for c in (Mailsync, Mbsync, MbsyncNoFsync, OfflineImap, Wire, Session, FetchNew,
                                    Examine, Store, ListDir, MailsyncB)}


# ----------------------------------------------------------------------------
# Local side: reading a tool's Maildir and comparing it with the server


def file_hash(path, added_header=None):
    """sha256 of a message file; added_header: drop the first header line
    starting with it (only within the header block)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if added_header:
            data = f.read()
            end = data.find(b"\n\n")
            head = data[:end + 1] if end >= 0 else data
            i = head.find(b"\n" + added_header) + 1 if not head.startswith(added_header) else 0
            if i > 0 or head.startswith(added_header):
                j = data.find(b"\n", i)
                data = data[:i] + (data[j + 1:] if j >= 0 else b"")
            h.update(data)
        else:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# Body hashes of message files that a local snapshot holds a link to,
# (st_dev, st_ino) -> (size, mtime_ns, added_header, sha256): a run restored
# from the snapshot has the same inodes, and verify() reads only the files
# a tool created or changed. A pinned inode cannot be freed and reused for
# another file while the snapshot links it; a write in place would change
# its size or mtime (and would also corrupt the snapshot: no tool does it,
# see clone_tree). Filled by pin_hashes() from the hashes local_state() read.
PINNED = {}
LAST_HASHED = {}


def cached_file_hash(path, added_header):
    """file_hash(), taken from PINNED when the file is a pinned inode with
    its size and mtime unchanged."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    rec = PINNED.get(key)
    if rec and rec[:3] == (st.st_size, st.st_mtime_ns, added_header):
        sha = rec[3]
    else:
        sha = file_hash(path, added_header)
    LAST_HASHED[key] = (st.st_size, st.st_mtime_ns, added_header, sha)
    return sha, st


def pin_hashes(root):
    """Pin the hashes read last (LAST_HASHED) of every message file under
    root (a snapshot whose files are links to what was just verified)."""
    for p in message_files(root).values():
        st = os.stat(p)
        rec = LAST_HASHED.get((st.st_dev, st.st_ino))
        if rec and rec[:2] == (st.st_size, st.st_mtime_ns):
            PINNED[(st.st_dev, st.st_ino)] = rec


def local_state(tool):
    """{folder: [(sha, letters, mtime, path)]} of every Maildir under the
    tool's root, folder names mapped back to the server's UTF-8 names."""
    root = str(tool.maildir)
    LAST_HASHED.clear()
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        ismd = all(os.path.isdir(os.path.join(dirpath, d)) for d in ("cur", "new", "tmp"))
        if ismd:
            dirnames[:] = [d for d in dirnames if d not in ("cur", "new", "tmp")]
        dirnames.sort()
        if not ismd or dirpath == root:
            continue
        rel = os.path.relpath(dirpath, root).split(os.sep)
        if tool.decode_mutf7:
            try:
                rel = [tb.mutf7_decode(p) for p in rel]
            except (ValueError, UnicodeDecodeError):
                pass
        folder = "/".join(rel)
        msgs = []
        for sub in ("new", "cur"):
            d = os.path.join(dirpath, sub)
            for name in sorted(os.listdir(d)):
                if name.startswith("."):
                    continue
                p = os.path.join(d, name)
                if not os.path.isfile(p):
                    continue
                letters = name.rsplit(":2,", 1)[1] if ":2," in name else ""
                letters = "".join(sorted(set(letters) & LETTERS))
                sha, st = cached_file_hash(p, tool.added_header)
                msgs.append((sha, letters, int(st.st_mtime), p))
        out[folder] = msgs
    return out


def verify(tool, server_state):
    """Problems (list of str) between the tool's Maildir and the server."""
    local = local_state(tool)
    problems = []
    for folder, entries in sorted(server_state.items()):
        if folder not in local:
            if entries:
                problems.append("%s: folder missing locally (%d messages)" % (folder, len(entries)))
            continue
        by_sha = collections.defaultdict(list)
        for lm in local[folder]:
            by_sha[lm[0]].append(lm)
        for e in entries:
            cands = by_sha.get(e["sha"])
            if not cands:
                problems.append("%s: UID %d missing locally" % (folder, e["uid"]))
                continue
            # Prefer a copy whose flags match (duplicates are reported below).
            cands.sort(key=lambda lm: lm[1] != e["letters"])
            lm = cands.pop(0)
            if lm[1] != e["letters"]:
                problems.append("%s: UID %d flags %r locally, %r on the server" % (
                    folder, e["uid"], lm[1], e["letters"]))
            if tool.check_mtime and lm[2] != e["date"]:
                problems.append("%s: UID %d mtime %d != INTERNALDATE %d" % (
                    folder, e["uid"], lm[2], e["date"]))
        for rest in by_sha.values():
            for lm in rest:
                problems.append("%s: extra local message %s" % (folder, lm[3]))
    for folder, msgs in local.items():
        if folder not in server_state and msgs:
            problems.append("extra local folder %r with %d messages" % (folder, len(msgs)))
    return problems


def settle(root):
    """Wait until every directory under root was last changed over a second
    ago. A resync normally runs minutes after the last change; right after
    one, mbsync sleeps a second when a cur/ changed within the current
    second, and would be timed for a situation that does not occur."""
    newest = 0
    for dirpath, dirnames, filenames in os.walk(str(root)):
        newest = max(newest, os.stat(dirpath).st_mtime_ns)
    wait = (newest / 1e9 + 1.05) - time.time()
    if wait > 0:
        time.sleep(wait)


def change_count(total, share, count=0):
    """How many of total messages a scenario changes: count if given (at
    most total), else share of them, at least one."""
    return min(count, total) if count else max(1, round(total * share))


def mark_local_seen(tool, share, seed, count=0):
    """Scenario (e): mark `share` of the local messages (`count` if given)
    seen the way a mail reader does (rename into cur/ with S added). Unread
    ones first."""
    local = local_state(tool)
    allmsgs = sorted((lm[3], lm[1]) for msgs in local.values() for lm in msgs)
    k = change_count(len(allmsgs), share, count)
    rng = random.Random("bench-e/%s" % seed)
    unseen = [m for m in allmsgs if "S" not in m[1]]
    seen = [m for m in allmsgs if "S" in m[1]]
    rng.shuffle(unseen)
    picked = unseen[:k]
    if len(picked) < k:
        # Not enough unread mail: flag read ones instead, still 1% changed.
        picked += [(p, l + "F") for p, l in rng.sample(seen, k - len(picked)) if "F" not in l]
    for path, letters in picked:
        d, name = os.path.split(path)
        base = name.rsplit(":2,", 1)[0]
        new_letters = "".join(sorted(set(letters) | ({"S"} if "S" not in letters else {"F"})))
        dst = os.path.join(os.path.dirname(d), "cur", base + ":2," + new_letters)
        os.rename(path, dst)
    return len(picked)


# ----------------------------------------------------------------------------
# Running and timing


def build_helper(workdir):
    """Compile spawn_rusage.c (see there why peak RSS needs it) into
    workdir; -> path of the executable."""
    exe = os.path.join(str(workdir), "spawn_rusage")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc): needed to build tests/bench/spawn_rusage.c")
    tb._run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe, str(HERE / "spawn_rusage.c")])
    return exe


def run_timed(helper, argv, env, cwd, timeout, logpath):
    """Run argv through the helper; -> dict(code, seconds, maxrss_kb,
    stderr). Wall time and peak RSS are the tool's own, from wait4() in a
    small parent (spawn_rusage), so Python's size never counts."""
    killed = []

    def kill(pid):
        killed.append(pid)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    resfile = str(logpath) + ".rusage"
    with open(logpath, "wb") as out:
        t0 = time.monotonic()
        p = subprocess.Popen([helper, resfile] + list(argv), stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        timer = threading.Timer(timeout, kill, (p.pid,))
        timer.start()
        try:
            p.wait()
        finally:
            timer.cancel()
        secs = time.monotonic() - t0
    text = Path(logpath).read_text(errors="replace")
    try:
        status, maxrss, wall_ns, cpu_ns = (int(x) for x in Path(resfile).read_text().split())
    except (OSError, ValueError):
        return {"code": "killed" if killed else "helper exit %s" % p.returncode, "seconds": secs,
                "maxrss_kb": 0, "stderr": ("killed after %.0f s\n" % timeout if killed else "") + text}
    return {"code": os.waitstatus_to_exitcode(status), "seconds": wall_ns / 1e9,
            "maxrss_kb": maxrss, "cpu_seconds": cpu_ns / 1e9, "stderr": text}


class Bench:
    def __init__(self, args):
        self.args = args
        self.results = collections.defaultdict(list)   # (tool, scen) -> [run dicts]
        self.notes = {}                                 # (tool, scen) -> str
        self.failures = []                              # text for the report

    def setup(self):
        a = self.args
        self.load_start = os.getloadavg()[0]
        self.source = source_revision()     # at the start: nearest to the build
        self.work = Path(tempfile.mkdtemp(prefix="mailsync-bench-", dir=a.workdir))
        os.chmod(self.work, 0o755)
        self.helper = build_helper(self.work)
        self.base, self.extra = corpus_mod.load(a.n, a.seed, a.small, log=log)
        self.corpus_bytes = sum(m.size for m in self.base)
        self.server = Server(self.work, a.server, warm=not a.cold_server, zlib=a.zlib,
                             hide=[c.strip().upper() for c in a.hide.split(",") if c.strip()])
        self.server.corpus = self.base
        self.server.start()
        cache = ServerCache(a.server_cache, server_cache_key(a)) if a.server_cache else None
        self.states = {}
        t0 = time.monotonic()
        if cache and cache.has("a"):
            self.states["a"] = cache.load("a", self.server)
            self.server.restore("a")
            self.server.expect(self.states["a"], "a")
            log("server: state (a) restored from %s and checked over IMAP in %.1f s" % (
                cache.dir, time.monotonic() - t0))
        else:
            self.server.seed(self.base)
            log("server: seeded %d messages (%.1f MiB) and verified over IMAP in %.1f s" % (
                len(self.base), self.corpus_bytes / 2**20, time.monotonic() - t0))
            if a.gaps:
                t0 = time.monotonic()
                k = self.server.expunge_share(a.gaps / 100.0, a.seed)
                log("server: %d messages (%g%% of each folder) expunged for UID gaps (%.1f s)" % (
                    k, a.gaps, time.monotonic() - t0))
            self.server.enable_modseqs()
            snap = self.server.snapshot("a")
            self.states["a"] = self.server.state()
            if cache:
                cache.save("a", snap, self.states["a"], self.server.content)
        # Each folder's UIDVALIDITY and HIGHESTMODSEQ in (a): the row examine
        # opens each folder with them.
        self.counters_a = self.server.counters()
        # The derived states, each made from (a) (or taken from the cache).
        makers = {"c": self._make_c, "d": self._make_d, "f": self._make_f, "g": self._make_g}
        for name in SERVER_STATES:
            if name not in a.scenarios:
                continue
            if name == "f":
                self.big = corpus_mod.load_big(a.seed, log=log)
            t0 = time.monotonic()
            # (c) with --changes is a state of its own in the cache
            cname = "c-k%d" % a.changes if name == "c" and a.changes else name
            keep = cache if name not in UNCACHED_STATES else None
            if keep and keep.has(cname):
                self.states[name] = keep.load(cname, self.server, as_name=name)
                log("server: state (%s) taken from the cache (%.1f s)" % (name, time.monotonic() - t0))
                continue
            what = makers[name]()
            snap = self.server.snapshot(name)
            self.states[name] = self.server.state()
            if keep:
                keep.save(cname, snap, self.states[name], self.server.content)
            self.server.restore("a")
            log("server: state (%s) = %s (%.1f s)" % (name, what, time.monotonic() - t0))
        self.proxy = None
        if a.rtt or a.rate or a.record:
            # Every tool's connection crosses a model network: half the
            # round trip each way, each direction's link a.rate Mbit/s.
            direct = self.server.bed.imaps_port if a.transport == "imaps" else self.server.bed.imap_port
            self.proxy = NetProxy(direct, latency=a.rtt / 2000.0, rate=a.rate * 1e6 / 8,
                                  record=a.record).start()
        self.tools = {}
        for name in a.tools:
            t = TOOL_CLASSES[name](self.work / "tools" / name, self.server,
                                   tls=a.transport == "imaps")
            if self.proxy:
                t.port_override = self.proxy.port
            if isinstance(t, Mailsync):
                t.connections = a.connections
                if isinstance(t, MailsyncB) and a.connections_b is not None:
                    t.connections = a.connections_b
                if isinstance(t, MailsyncB) and a.compress_b is not None:
                    t.compress = a.compress_b
            self.tools[name] = t
        self.local_snap = {}
        self.setup_tried = set()

    def _make_c(self):
        return "%d messages with changed flags" % self.server.change_flags(0.01, self.args.seed,
                                                                           self.args.changes)

    def _make_d(self):
        self.server.append(self.extra)
        return "%d messages appended to INBOX" % len(self.extra)

    def _make_f(self):
        # Built and appended like (d)'s arrivals, but one message alone.
        self.server.append([self.big])
        return "one %.1f MiB message appended to INBOX" % (self.big.size / 2**20)

    def _make_g(self):
        return "%d messages' flags changed by another client" % self.server.mark_all_seen()

    def timeout(self):
        return 300 + self.args.n * 0.1

    def one_run(self, tool, scen, run):
        """Restore both sides, run the tool once, verify; record the run."""
        server_snap = scen if scen in SERVER_STATES else "a"
        self.server.restore(server_snap)
        if os.path.lexists(tool.work):
            shutil.rmtree(tool.work)
        if scen == "a" or tool.reference:
            tool.states = self.states
            tool.snapshots = self.local_snap
            tool.counters = self.counters_a
            tool.changes, tool.seed = self.args.changes, self.args.seed
            tool.prepare()
        else:
            clone_tree(self.local_snap[tool.name], tool.work)
        changed = None
        if scen == "e" and not tool.reference:
            changed = mark_local_seen(tool, 0.01, self.args.seed, self.args.changes)
        if scen != "a":
            settle(tool.work)
        os.sync()
        logpath = self.work / ("log-%s-%s-%d.txt" % (tool.name, scen, run))
        if self.proxy:
            self.proxy.reset()
        res = run_timed(self.helper, tool.argv(scen), tool.env(), str(tool.work), self.timeout(),
                        logpath)
        res["run"] = run
        if self.proxy:
            res["turns"], res["connections"] = self.proxy.turns, self.proxy.connections
            res["bytes_down"], res["bytes_up"] = self.proxy.bytes_down, self.proxy.bytes_up
            if self.args.record:
                self.write_transcripts(self.work / ("wire-%s-%s-%d.txt" % (tool.name, scen, run)))
        if tool.self_timed:
            m = re.search(r"^session-seconds ([0-9.]+)$", res["stderr"], re.M)
            res["seconds"] = float(m.group(1)) if m else res["seconds"]
            res["maxrss_kb"] = None
            res["cpu_seconds"] = None
        why = tool.missing(scen, res)
        if why:
            self.notes[(tool.name, scen)] = why
            return res
        problems = []
        if tool.reference:
            if res["code"] != 0:
                problems.append("exit code %s; output (end):\n%s" % (res["code"], res["stderr"][-1200:]))
            return self._record(tool, scen, run, res, problems, changed)
        if res["code"] != 0:
            problems.append("exit code %s; output (end):\n%s" % (res["code"], res["stderr"][-1200:]))
        try:
            state = self.server.state()
        except Exception as e:       # the tool may have broken the server state
            problems.append("reading the server state failed: %s" % e)
            state = None
        if state is not None:
            if scen != "e" and state != self.states[server_snap]:
                problems.append("the server state changed during a pull")
            problems += verify(tool, state)
        return self._record(tool, scen, run, res, problems, changed)

    def write_transcripts(self, path):
        """The proxy's record of a run's connections (--record), one line
        per chunk: '>' client to server, '<' server to client; a line of
        '----' between turns (the client sent after it was answered)."""
        with open(path, "wb") as f:
            for i, log_ in enumerate(self.proxy.transcripts):
                f.write(b"==== connection %d\n" % (i + 1))
                last = None
                for down, data in log_:
                    if not down and last:
                        f.write(b"---- turn\n")
                    mark = b"< " if down else b"> "
                    text = data if len(data) <= 2000 else data[:1000] + b"\n[...%d bytes...]\n" % len(data) + data[-200:]
                    f.write(b"".join(mark + line + b"\n" for line in text.split(b"\r\n") if line))
                    last = down

    def _record(self, tool, scen, run, res, problems, changed):
        res["ok"] = not problems
        res["problems"] = problems
        if problems:
            self.failures.append("%s %s run %d: %d problems:\n  %s" % (
                tool.name, SCENARIO_NAMES[scen], run, len(problems),
                "\n  ".join(problems[:15]) + ("\n  ..." if len(problems) > 15 else "")))
            log("  FAIL %s %s run %d (%d problems; first: %s)" % (
                tool.name, scen, run, len(problems), problems[0].splitlines()[0]))
        else:
            log("  %-15s %s run %d: %s s, %s%s%s" % (
                tool.name, scen, run, fmt_s(res["seconds"]), fmt_rss(res["maxrss_kb"]).strip(),
                "" if changed is None else " (%d marked seen)" % changed,
                "" if "turns" not in res else ", %d turns, %d connection%s, %.1f MiB down" % (
                    res["turns"], res["connections"], "" if res["connections"] == 1 else "s",
                    res["bytes_down"] / 2**20)))
        self.results[(tool.name, scen)].append(res)
        if scen == "a" and res["ok"] and not tool.reference and tool.name not in self.local_snap:
            self.snapshot_local(tool)
        return res

    def snapshot_local(self, tool):
        dst = self.work / "local-snapshots" / tool.name
        dst.parent.mkdir(exist_ok=True)
        if dst.exists():
            shutil.rmtree(dst)
        clone_tree(tool.work, dst)
        pin_hashes(dst)
        LAST_HASHED.clear()
        self.local_snap[tool.name] = dst

    def run(self):
        a = self.args
        order = list(a.scenarios)
        for scen in order:
            if scen != "a":
                for name, tool in self.tools.items():
                    if tool.reference:
                        continue
                    if name not in self.local_snap and name not in self.setup_tried:
                        self.setup_tried.add(name)
                        # (a) not benchmarked or failed: one untimed set-up pull.
                        log("  %s: untimed initial pull to set up %s" % (name, SCENARIO_NAMES[scen]))
                        self.one_run(tool, "a", 0)
                        self.results[(name, "a")].pop()     # untimed: not a result
            log("scenario %s" % SCENARIO_NAMES[scen])
            for run in range(1, a.runs + 1):
                for name, tool in self.tools.items():
                    if tool.reference and scen not in tool.ref_scenarios:
                        self.notes[(name, scen)] = "(reference: %s only)" % ",".join(tool.ref_scenarios)
                        continue
                    if scen != "a" and not tool.reference and name not in self.local_snap:
                        self.notes[(name, scen)] = "no initial pull"
                        continue
                    if (name, scen) in self.notes:
                        continue
                    self.one_run(tool, scen, run)

    # -- output ----------------------------------------------------------------

    def summary(self):
        """{(tool, scen): {median, min, max, rss_kb, ok, total, note}}"""
        out = {}
        for tool in self.tools:
            for scen in self.args.scenarios:
                runs = self.results.get((tool, scen), [])
                ok = [r for r in runs if r.get("ok")]
                secs = [r["seconds"] for r in ok]
                out[(tool, scen)] = {
                    "median": statistics.median(secs) if secs else None,
                    "min": min(secs) if secs else None, "max": max(secs) if secs else None,
                    "rss_kb": max((r["maxrss_kb"] for r in ok if r["maxrss_kb"] is not None), default=None),
                    "ok": len(ok), "total": len(runs), "note": self.notes.get((tool, scen)),
                    "turns": statistics.median([r["turns"] for r in ok]) if ok and "turns" in ok[0] else None,
                    "mib_down": statistics.median([r["bytes_down"] for r in ok]) / 2**20
                    if ok and "bytes_down" in ok[0] else None,
                    "cpu": statistics.median([r["cpu_seconds"] for r in ok])
                    if ok and ok[0].get("cpu_seconds") is not None else None,
                }
        return out

    def table(self):
        s = self.summary()
        a = self.args
        lines = []
        lines.append("mailsync benchmark: N=%d (%.1f MiB, %d folders)%s, %d run%s each, %s on "
                     "127.0.0.1, Dovecot %s (process mode: %s%s), %d CPUs" % (
                         a.n, self.corpus_bytes / 2**20, len({m.folder for m in self.base}),
                         " small" if a.small else "", a.runs, "" if a.runs == 1 else "s",
                         ("IMAPS" if a.transport == "imaps" else "plain IMAP") +
                         (" with a %g ms round trip" % a.rtt if a.rtt else "") +
                         (" at %g Mbit/s each way" % a.rate if a.rate else ""),
                         dovecot_version(), a.server, ", cold index" if a.cold_server else "",
                         os.cpu_count()))
        if a.zlib:
            lines.append("server offers COMPRESS=DEFLATE (imap_zlib)")
        if a.hide:
            lines.append("server hides: %s" % a.hide)
        if a.gaps:
            lines.append("UID gaps: %g%% of each folder expunged before state (a)" % a.gaps)
        if "mailsync" in self.tools:
            lines.append("mailsync: %s (source %s)" % (tb.mailsync_bin(), self.source))
        if "mailsync-b" in self.tools:
            lines.append("mailsync-b: %s" % self.tools["mailsync-b"].binary())
        for name in ("mailsync", "mailsync-b"):
            if name in self.tools and self.tools[name].compress is not None:
                lines.append("%s: compress = %s" % (name, self.tools[name].compress))
        for name in ("mailsync", "mailsync-b"):
            if name in self.tools and self.tools[name].connections != 1:
                lines.append("%s: connections = %d" % (name, self.tools[name].connections))
        # Other work on the machine skews the numbers: say how busy it was.
        lines.append("load average (1 min) at start %.2f, at end %.2f" % (
            self.load_start, os.getloadavg()[0]))
        lines.append("")
        head = "%-*s %-15s %10s  %-19s %10s  %s" % (LABEL_W, "scenario", "tool", "median s",
                                                      "range s", "peak RSS", "runs ok")
        lines.append(head)
        lines.append("-" * len(head))
        for scen in a.scenarios:
            first = True
            for tool in self.tools:
                if self.tools[tool].reference and scen not in self.tools[tool].ref_scenarios:
                    continue
                c = s[(tool, scen)]
                label = SCENARIO_NAMES[scen] if first else ""
                first = False
                if c["note"] and not c["ok"]:
                    lines.append("%-*s %-15s %s" % (LABEL_W, label, tool, c["note"]))
                    continue
                if c["median"] is None:
                    lines.append("%-*s %-15s %10s  %-19s %10s  %d/%d FAIL" % (
                        LABEL_W, label, tool, "FAIL", "-", "-", c["ok"], c["total"]))
                    continue
                rng = "%s-%s" % (fmt_s(c["min"]), fmt_s(c["max"]))
                status = "%d/%d" % (c["ok"], c["total"]) + ("" if c["ok"] == c["total"] else " FAIL")
                net = ""
                if self.proxy and c["turns"] is not None:
                    # turns: request/response turns through the proxy (median)
                    net = "  %5g turns %8.2f MiB down" % (c["turns"], c["mib_down"])
                if a.cpu and c["cpu"] is not None:
                    # the tool's CPU time (user + system, median): load-proof
                    net += "  %8s s CPU" % fmt_s(c["cpu"])
                lines.append(("%-*s %-15s %10s  %-19s %s  %-7s%s" % (
                    LABEL_W, label, tool, fmt_s(c["median"]), rng, fmt_rss(c["rss_kb"]), status, net)).rstrip())
        peers = [t for t in self.tools if t != "mailsync" and not self.tools[t].reference]
        if "mailsync" in self.tools and peers:
            lines.append("")
            head = "%-*s %s" % (LABEL_W, "mailsync/peer (median)", "".join("%16s" % p for p in peers))
            lines.append(head)
            lines.append("-" * len(head))
            for scen in a.scenarios:
                m = s[("mailsync", scen)]
                if m["median"] is None:
                    lines.append("%-*s %s" % (LABEL_W, SCENARIO_NAMES[scen], m["note"] or "FAIL"))
                    continue
                lines.append(self.ratio_row(s, m, peers, scen))
            lines.append(self.rss_ratio_row(s, peers, a.scenarios, "peak RSS (max over scen.)"))
            if "f" in a.scenarios and len(a.scenarios) > 1:
                # (f) alone decides the max for a client that holds a whole
                # message in memory; the usual runs' memory shows without it.
                lines.append(self.rss_ratio_row(s, peers, [x for x in a.scenarios if x != "f"],
                                                "peak RSS (max, not (f))"))
        lines += self.floor_table(s, peers)
        lines += self.rss_big_table(s)
        return "\n".join(lines)

    def ratio_row(self, s, m, peers, scen):
        """A table row: m's median over each peer's in scen."""
        cells = []
        for p in peers:
            q = s[(p, scen)]
            if m["median"] is None or q["median"] is None or q["median"] <= 0:
                cells.append("%16s" % "-")
            else:
                cells.append("%16s" % ("%.2fx" % (m["median"] / q["median"])))
        return "%-*s %s" % (LABEL_W, SCENARIO_NAMES[scen], "".join(cells))

    def floor_table(self, s, peers):
        """session/peer: a ratio no client can beat on this bed (the fixed
        cost of one session, see Session)."""
        scens = [x for x in self.args.scenarios if x in Session.ref_scenarios]
        if "session" not in self.tools or not peers or not scens:
            return []
        head = "%-*s %s" % (LABEL_W, "session/peer (floor)", "".join("%16s" % p for p in peers))
        lines = ["", head, "-" * len(head)]
        lines += [self.ratio_row(s, s[("session", x)], peers, x) for x in scens]
        return lines

    def rss_ratio_row(self, s, peers, scens, label):
        """mailsync's peak RSS over scens / each peer's, as a table row."""
        m = [s[("mailsync", sc)]["rss_kb"] for sc in scens if s[("mailsync", sc)]["rss_kb"]]
        cells = []
        for p in peers:
            q = [s[(p, sc)]["rss_kb"] for sc in scens if s[(p, sc)]["rss_kb"]]
            cells.append("%16s" % ("%.2fx" % (max(m) / max(q)) if m and q else "-"))
        return "%-*s %s" % (LABEL_W, label, "".join(cells))

    def rss_big_table(self, s):
        """Peak RSS in (d) next to (f), per tool: what one 50 MB message
        does to a tool's memory ((d) is the same kind of run: a resync
        that fetches new INBOX mail)."""
        if not ("d" in self.args.scenarios and "f" in self.args.scenarios):
            return []
        lines = [""]
        head = "%-*s %14s %14s %14s" % (LABEL_W, "peak RSS, (d) vs (f)", "(d) 100 new",
                                        "(f) 50 MB msg", "(f) - (d)")
        lines += [head, "-" * len(head)]
        for tool in self.tools:
            if self.tools[tool].reference:
                continue
            d, f = s[(tool, "d")]["rss_kb"], s[(tool, "f")]["rss_kb"]
            cell = lambda kb: "%10.1f MiB" % mib(kb) if kb else "%14s" % "-"
            # (+ 0.0 avoids printing -0.0 for a change under 0.05 MiB)
            diff = "%+10.1f MiB" % (round(mib(f - d), 1) + 0.0) if d and f else "%14s" % "-"
            lines.append("%-*s %s %s %s" % (LABEL_W, tool, cell(d), cell(f), diff))
        return lines

    def json_data(self):
        s = self.summary()
        return {
            "n": self.args.n, "small": self.args.small, "transport": self.args.transport, "rtt_ms": self.args.rtt,
            "rate_mbit": self.args.rate, "gaps_pct": self.args.gaps,
            "changes": self.args.changes,
            "runs": self.args.runs, "seed": self.args.seed, "server": self.args.server, "cold_server": self.args.cold_server,
            "server_conf": server_conf(self.args.server),
            "corpus_bytes": self.corpus_bytes, "dovecot": dovecot_version(),
            "big_message_bytes": self.big.size if getattr(self, "big", None) else None,
            "source": self.source,
            "results": [{"tool": t, "scenario": sc, **v} for (t, sc), v in s.items()],
            "runs_raw": [{"tool": t, "scenario": sc, "seconds": r["seconds"], "maxrss_kb": r["maxrss_kb"],
                          "ok": r.get("ok"), "code": r["code"], "turns": r.get("turns"),
                          "connections": r.get("connections"), "bytes_down": r.get("bytes_down"),
                          "bytes_up": r.get("bytes_up"), "cpu_seconds": r.get("cpu_seconds")}
                         for (t, sc), rs in self.results.items() for r in rs],
            "failures": self.failures,
        }

    def cleanup(self):
        if getattr(self, "proxy", None):
            self.proxy.stop()
        try:
            self.server.stop()
        finally:
            if not self.args.keep:
                shutil.rmtree(self.work, ignore_errors=True)
            else:
                log("kept work dir %s" % self.work)


def source_revision():
    """git revision of the checkout the bench runs from (the mailsync binary
    is normally built from it); '+dirty' and the first few changed tracked
    files when there are any (in a shared checkout: whose work it is)."""
    try:
        rev = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "-uno"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split("\n")
        files = [line[3:] for line in dirty if line.strip()]
        if files:
            rev += "+dirty: %s%s" % (" ".join(files[:4]), " ..." if len(files) > 4 else "")
        return rev or "?"
    except OSError:
        return "?"


def dovecot_version():
    try:
        return subprocess.run([tb.DOVECOT_BIN, "--version"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True).stdout.split()[0]
    except (OSError, IndexError):
        return "?"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="messages in the corpus (default 2000)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool and scenario (default 3)")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS),
                    help="comma-separated, from %s" % ",".join(ALL_TOOLS))
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                    help="comma-separated, from %s (default %s): %s" % (
                        ",".join(ALL_SCENARIOS), ",".join(DEFAULT_SCENARIOS),
                        # argparse %-formats help texts: '1%' must be '1%%'
                        "; ".join(SCENARIO_NAMES[x] for x in ALL_SCENARIOS).replace("%", "%%")))
    ap.add_argument("--small", action="store_true", help="small attachments (smoke tests)")
    ap.add_argument("--changes", type=int, default=0, metavar="K",
                    help="(c) and (e) change K messages instead of 1%% of them: the same changes "
                         "at every --n, to see what a resync costs beyond its changes")
    ap.add_argument("--rtt", type=float, default=0.0, metavar="MS",
                    help="a network round trip of MS milliseconds between every tool and "
                         "Dovecot (a delaying proxy; default 0: direct). Meant for the resyncs: "
                         "the proxy is Python and bulk data through it is slow")
    ap.add_argument("--rate", type=float, default=0.0, metavar="MBIT",
                    help="cap each direction of every tool's connection at MBIT Mbit/s (the "
                         "same proxy as --rtt; combinable with it; default 0: no cap)")
    ap.add_argument("--record", action="store_true",
                    help="pass every connection through the proxy (as --rtt/--rate do) and "
                         "write each run's chunks both ways to wire-TOOL-SCEN-RUN.txt in the "
                         "work dir (with --keep; readable with --transport plain)")
    ap.add_argument("--compress-b", choices=("yes", "no"), default=None,
                    help="mailsync-b's `compress =` (e.g. MAILSYNC_BIN_B=$MAILSYNC_BIN "
                         "--zlib --compress-b no: the same build with and without COMPRESS)")
    ap.add_argument("--transport", choices=("imaps", "plain"), default="imaps",
                    help="how every tool connects: IMAPS (default) or plain IMAP on loopback")
    ap.add_argument("--cold-server", action="store_true",
                    help="do not touch every folder once (untimed) after restoring a server "
                         "snapshot: each timed run then also pays Dovecot re-reading its "
                         "restored index files")
    ap.add_argument("--server", choices=SERVER_PROFILES, default="default",
                    help="Dovecot's process mode: 'default' (the test bed's: a new login "
                         "process per connection, a new imap process per login) or 'tuned' "
                         "(high-performance mode: login and imap processes kept and reused, "
                         "as a busy server runs)")
    ap.add_argument("--zlib", action="store_true",
                    help="Dovecot offers COMPRESS=DEFLATE (its imap_zlib plugin); mailsync uses it "
                         "(its default `compress = yes`), and so does any tool that can")
    ap.add_argument("--hide", default="", metavar="CAPS",
                    help="comma-separated capabilities Dovecot does not offer (e.g. CONDSTORE,QRESYNC: "
                         "a server without them, as Microsoft 365; every tool sees the same server)")
    ap.add_argument("--connections", type=int, default=1, metavar="N",
                    help="mailsync's `connections = N` (default 1)")
    ap.add_argument("--connections-b", type=int, default=None, metavar="N",
                    help="mailsync-b's `connections = N` (default: as --connections)")
    ap.add_argument("--seed", default="1", help="corpus seed (default 1)")
    ap.add_argument("--server-cache", metavar="DIR", default=None,
                    help="keep the seeded server states (a, c, d, f) in DIR (keyed by corpus, N, "
                         "seed, server mode, Dovecot version) and restore them in later runs "
                         "instead of seeding: checked by file stats, body hashes and one "
                         "metadata FETCH per folder (see ServerCache); DIR must be on the "
                         "corpus cache's file system (hard links)")
    ap.add_argument("--gaps", type=float, default=0.0, metavar="PCT",
                    help="expunge PCT%% of every folder's messages (a deterministic pick) after "
                         "seeding, before state (a): UID gaps, as a mailbox has them after deletions "
                         "(default 0: none)")
    ap.add_argument("--cpu", action="store_true",
                    help="add each tool's CPU time (user + system of its process and threads, "
                         "median) to the table: its own work, which a loaded machine inflates "
                         "less than the wall time (the JSON always has it)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--workdir", default=None, help="parent of the temp work dir (default $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, Maildirs)")
    a = ap.parse_args(argv)
    a.tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    if a.rate < 0 or a.rtt < 0 or not 0 <= a.gaps < 100 or a.changes < 0:
        ap.error("--rate, --rtt and --changes must not be negative, --gaps from 0 to 99")
    if a.changes:
        SCENARIO_NAMES["c"] = "(c) %d flags changed" % a.changes
        SCENARIO_NAMES["e"] = "(e) %d local seen (push)" % a.changes
    a.scenarios = [s.strip().lower() for s in a.scenarios.split(",") if s.strip()]
    for t in a.tools:
        if t not in TOOL_CLASSES:
            ap.error("unknown tool %r (one of %s)" % (t, ", ".join(ALL_TOOLS + ("mailsync-b",))))
    for s in a.scenarios:
        if s not in ALL_SCENARIOS:
            ap.error("unknown scenario %r (one of %s)" % (s, ",".join(ALL_SCENARIOS)))
    a.scenarios = [s for s in ALL_SCENARIOS if s in a.scenarios]
    if a.n < 10 or a.runs < 1:
        ap.error("--n must be >= 10 and --runs >= 1")
    return a


def check_tools(names):
    """Every requested tool must be installed: a benchmark that quietly
    drops a peer would print misleading ratios."""
    missing = []
    for n in names:
        if n == "mailsync":
            b = tb.mailsync_bin()
            if not os.access(b, os.X_OK):
                missing.append("mailsync (no executable at %s; set MAILSYNC_BIN)" % b)
        elif n == "mailsync-b":
            b = mailsync_b_bin()
            if not b or not os.access(b, os.X_OK):
                missing.append("mailsync-b (set MAILSYNC_BIN_B to a mailsync executable)")
        elif n.startswith("mbsync"):
            if not shutil.which("mbsync"):
                missing.append("%s (mbsync not found: apt-get install isync)" % n)
        elif n == "offlineimap":
            if not shutil.which("offlineimap"):
                missing.append("offlineimap (not found: apt-get install offlineimap3)")
        elif n == "wire":
            if not shutil.which("openssl"):
                missing.append("wire (openssl CLI not found)")
    return missing


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    missing = check_tools(args.tools)
    if missing:
        log("bench: missing tools:\n  " + "\n  ".join(missing))
        return 2
    bench = Bench(args)
    try:
        bench.setup()
        bench.run()
    finally:
        if hasattr(bench, "server"):
            # cleanup() even when printing fails (e.g. stdout piped to head).
            try:
                table = bench.table() if hasattr(bench, "tools") else None
                if bench.failures:
                    log("\nFAILED RUNS (not counted):\n" + "\n".join(bench.failures))
                if args.json and hasattr(bench, "tools"):
                    with open(args.json, "w") as f:
                        json.dump(bench.json_data(), f, indent=1)
                if table:
                    print(table, flush=True)
            finally:
                bench.cleanup()
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
