#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""identity_bytes.py: bytes of message bodies mailsync moves in the
situations of issue 16 (switching from mbsync / OfflineIMAP, moves on each
side, retention, backup then mirror), for one or two builds on the same
corpus, printed as a table.

    python3 tests/bench/identity_bytes.py [--bin BUILD] [--bin-b OTHER]
        [--n 60] [--oimap-layout VALUE] [--only NAME,...]

Each situation runs against a fresh user of one private Dovecot on
loopback, through the test bed's Proxy (plain IMAP) with recording on, and
counts the literal bytes of BODY[] data the server sent and of APPEND data
the client sent. Counts are taken for the one run the situation is about
(the step after the setup), and the message counts on both sides after it.
Nothing here is a test: the integration tests assert; this prints numbers.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
import testbed as tb  # noqa: E402

BODY_RE = re.compile(rb"BODY\[\] \{(\d+)\}")
APPEND_RE = re.compile(rb"APPEND .*?\{(\d+)\+?\}\r\n", re.I)


def body_bytes(px):
    down = sum(int(m.group(1)) for m in BODY_RE.finditer(bytes(px.downstream)))
    up = sum(int(m.group(1)) for m in APPEND_RE.finditer(bytes(px.upstream)))
    return down, up


class Situation:
    def __init__(self, bed, binary, n, oimap_layout):
        self.bed, self.binary, self.n, self.oimap_layout = bed, binary, n, oimap_layout
        self.user = bed.fresh_user()
        self.work = Path(tempfile.mkdtemp(prefix="idbytes-"))
        self.maildir = self.work / "Mail"
        self.state = self.work / "state.sqlite"
        self.config = self.work / "config"
        self.keys = {}

    def close(self):
        shutil.rmtree(self.work, True)

    def write_config(self, port, **keys):
        k = tb.account_keys(self.bed, self.user, self.maildir, self.state, tls="none", port=port)
        k.update(self.keys)
        k.update(keys)
        tb.write_config(self.config, {"t": {a: b for a, b in k.items() if b is not None}})

    def mailsync(self, *args, port=None, **keys):
        self.write_config(port or self.bed.imap_port, **keys)
        env = dict(os.environ, MAILSYNC_BIN=self.binary)
        r = subprocess.run([self.binary, "-c", str(self.config)] + list(args), capture_output=True,
                           env=env, timeout=600, cwd=self.work)
        if r.returncode not in (0, 1, 2, 3, 4, 5, 75):
            raise RuntimeError("mailsync %s: %d\n%s" % (args, r.returncode, r.stderr.decode()))
        return r

    def measured(self, *args, **keys):
        """Run mailsync through a recording proxy: (down, up, exit code)."""
        with tb.Proxy(self.bed.imap_port, record=True) as px:
            t = time.monotonic()
            r = self.mailsync(*args, port=px.port, **keys)
            self.elapsed = time.monotonic() - t
            down, up = body_bytes(px)
        return down, up, r.returncode

    def imap(self):
        return self.bed.imap(self.user)

    def counts(self):
        with self.imap() as c:
            server = sum(len(v) for v in c.server_state().values())
        return tb.count_messages(self.maildir), server

    def seed(self, folders=("INBOX", "Projects/2026", "Thư mục")):
        with self.imap() as c:
            for k, f in enumerate(folders):
                if f != "INBOX":
                    c.create_folder(f)
                c.append_many(f, tb.make_corpus(max(1, self.n // (k + 1)), seed=40 + k, size=(800, 6000)))


def mbsync_fill(s):
    s.maildir.mkdir(parents=True, exist_ok=True)
    rc = s.work / "mbsyncrc"
    rc.write_text("IMAPAccount a\nHost 127.0.0.1\nPort %d\nUser %s\nPass %s\nSSLType None\n\n"
                  "IMAPStore remote\nAccount a\n\nMaildirStore local\nPath %s/\nInbox %s/INBOX\n"
                  "SubFolders Verbatim\n\nChannel a\nFar :remote:\nNear :local:\nPatterns *\n"
                  "Create Near\nSync All\nSyncState *\n"
                  % (s.bed.imap_port, s.user.name, s.user.password, s.maildir, s.maildir))
    os.chmod(rc, 0o600)
    subprocess.run(["mbsync", "-q", "-c", str(rc), "-a"], check=True, timeout=600)


def offlineimap_fill(s):
    meta = s.work / "oimap-meta"
    meta.mkdir()
    rc = s.work / "offlineimaprc"
    rc.write_text("[general]\naccounts = a\nmetadata = %s\nui = quiet\n\n[Account a]\n"
                  "localrepository = l\nremoterepository = r\n\n[Repository l]\ntype = Maildir\n"
                  "localfolders = %s\n\n[Repository r]\ntype = IMAP\nremotehost = 127.0.0.1\n"
                  "remoteport = %d\nssl = no\nstarttls = no\nremoteuser = %s\nremotepass = %s\n"
                  % (meta, s.maildir, s.bed.imap_port, s.user.name, s.user.password))
    os.chmod(rc, 0o600)
    subprocess.run(["offlineimap", "-c", str(rc), "-o", "-u", "quiet"], check=True, timeout=600,
                   capture_output=True)


def first_file(root, folder):
    d = Path(tb.local_folder_path(root, folder))
    for sub in ("cur", "new"):
        for p in sorted((d / sub).iterdir()):
            return p
    raise RuntimeError("no file in %s" % d)


def sit_mbsync(s):
    s.seed()
    mbsync_fill(s)
    return s.measured("sync")


def sit_offlineimap(s):
    s.seed()
    offlineimap_fill(s)
    if s.oimap_layout:
        s.keys["layout"] = s.oimap_layout
    return s.measured("sync")


def move_setup(s):
    s.seed(folders=("INBOX", "Archive"))
    s.mailsync("sync")


def sit_local_move_rename(s):
    move_setup(s)
    src = first_file(s.maildir, "INBOX")
    dst = Path(tb.local_folder_path(s.maildir, "Archive")) / "cur" / src.name
    os.rename(src, dst)
    return s.measured("sync")


def sit_local_move_mutt(s):
    move_setup(s)
    src = first_file(s.maildir, "INBOX")
    name = "1800000000.mutt%d.host:2,S" % os.getpid()
    (Path(tb.local_folder_path(s.maildir, "Archive")) / "cur" / name).write_bytes(src.read_bytes())
    src.unlink()
    return s.measured("sync")


def sit_server_move(s):
    move_setup(s)
    with s.imap() as c:
        c.select_folder("INBOX")
        typ, dat = c.uid("MOVE", "1:3", "Archive")
        assert typ == "OK", dat
    return s.measured("sync")


def sit_retention_then_none(s):
    now = int(time.time())
    with s.imap() as c:
        c.append_many("INBOX", tb.make_corpus(s.n, seed=61, flags=False, base_date=now - 90 * 86400))
    s.keys["server_retention_days"] = "30"
    s.mailsync("sync")
    del s.keys["server_retention_days"]
    inbox = Path(tb.local_folder_path(s.maildir, "INBOX"))
    (inbox / "new" / "1800000001.added.host").write_bytes(b"Subject: added\nMessage-ID: <added@x>\n\nhi\n")
    return s.measured("sync")


def sit_backup_then_mirror(s):
    s.seed(folders=("INBOX",))
    s.keys["mode"] = "backup"
    s.mailsync("pull")
    with s.imap() as c:
        c.expunge_uids("INBOX", [1, 2, 3])
    s.mailsync("pull")
    s.keys["mode"] = "mirror"
    return s.measured("pull")


SITUATIONS = [
    ("switch from mbsync, fresh state, `sync`", "mbsync", sit_mbsync),
    ("switch from OfflineIMAP, fresh state, `sync`", "offlineimap", sit_offlineimap),
    ("local move keeping the name, `sync`", "local-rename", sit_local_move_rename),
    ("local move as a new file (mutt), `sync`", "local-mutt", sit_local_move_mutt),
    ("server move of 3 messages, `sync`", "server-move", sit_server_move),
    ("retention, then none and a new file, `sync`", "retention", sit_retention_then_none),
    ("backup, 3 deleted on the server, then mirror, `pull`", "backup-mirror", sit_backup_then_mirror),
]


def fmt(n):
    return "%d B" % n if n < 1024 else "%.1f KiB" % (n / 1024.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("MAILSYNC_BIN", str(HERE.parents[1] / "build" / "mailsync")))
    ap.add_argument("--bin-b", default=None, help="a second build, measured on the same situations")
    ap.add_argument("--n", type=int, default=60, help="messages in the largest folder")
    ap.add_argument("--oimap-layout", default=None, help="layout value for OfflineIMAP's names")
    ap.add_argument("--oimap-layout-b", default=None)
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    builds = [("A", a.bin, a.oimap_layout)] + ([("B", a.bin_b, a.oimap_layout_b)] if a.bin_b else [])
    only = set(a.only.split(",")) if a.only else None
    rows = []
    with tb.Dovecot(pool=2 * len(SITUATIONS) + 2) as bed:
        for title, key, fn in SITUATIONS:
            if only and key not in only:
                continue
            row = [title]
            for _, binary, layout in builds:
                s = Situation(bed, binary, a.n, layout)
                try:
                    down, up, code = fn(s)
                    local, server = s.counts()
                    row.append("%s down, %s up, exit %d, local %d / server %d"
                               % (fmt(down), fmt(up), code, local, server))
                except Exception as e:  # a build that cannot do it: say so
                    row.append("failed: %s" % str(e).splitlines()[0][:80])
                finally:
                    s.close()
            rows.append(row)
            print(" | ".join(row), flush=True)
    print()
    head = ["situation"] + ["%s (%s)" % (name, binary) for name, binary, _ in builds]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
