#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""adopt_bench.py: what adopting an mbsync-filled Maildir costs against a
fresh pull of the same mail (issue 16), in one run on one server.

  python3 tests/bench/adopt_bench.py [--n 20000] [--bin build/mailsync] [--before OTHER] [--keep]

Dovecot is seeded with the benchmark corpus (corpus.py, N messages in four
folders, one nested, one non-ASCII); mbsync (Debian's isync, FSync off: its
time is not measured) fills Maildir A; then, each with a fresh state DB:
  1. `mailsync sync` on Maildir A (adoption: pairs every file, moves no
     body), timed;
  2. `mailsync pull` into an empty Maildir B (a fresh pull), timed.
  3. with --before OTHER: OTHER's `mailsync sync` on a copy of the mbsync
     Maildir, fresh DB (last: an older build uploads, changing the server).
Prints the times and the bytes each run says it moved (--json summary),
and checks that the adoption moved no body and kept every file's inode.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))

import testbed as tb        # noqa: E402
import corpus as corpus_mod  # noqa: E402
import bench                 # noqa: E402


def inodes(root):
    out = set()
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) in ("cur", "new"):
            out.update(os.stat(os.path.join(dirpath, f)).st_ino for f in files)
    return out


def timed(binary, args, config):
    t0 = time.monotonic()
    r = subprocess.run([binary, "-c", str(config)] + args, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (args, r.returncode, r.stderr[-2000:]))
    return dt, json.loads(r.stdout)


def moved(summary):
    fs = [f for a in summary["accounts"] for f in a["folders"]]
    return (sum(f["fetched"] for f in fs), sum(f["bytes"] for f in fs),
            sum(f["uploaded"] for f in fs), sum(f["bytes_up"] for f in fs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--bin", default=str(HERE.parent.parent / "build" / "mailsync"))
    ap.add_argument("--before", default=None, help="another build whose adoption is measured last")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adopt-bench-"))
    os.chmod(work, 0o755)  # Dovecot's processes read below it
    server = bench.Server(work)
    server.start()
    try:
        msgs, _ = corpus_mod.load(a.n, log=bench.log)
        server.seed(msgs)
        bed, user = server.bed, server.user
        md_a, md_b = work / "MailA", work / "MailB"
        md_a.mkdir()
        rc = work / "mbsyncrc"
        rc.write_text("FSync no\n\nIMAPAccount a\nHost 127.0.0.1\nPort %d\nUser %s\nPass %s\nSSLType None\n\n"
                      "IMAPStore remote\nAccount a\n\nMaildirStore local\nPath %s/\nInbox %s/INBOX\n"
                      "SubFolders Verbatim\n\nChannel a\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\n"
                      "Sync All\nSyncState *\n" % (bed.imap_port, user.name, user.password, md_a, md_a))
        os.chmod(rc, 0o600)
        t0 = time.monotonic()
        subprocess.run(["mbsync", "-c", str(rc), "-a"], check=True, capture_output=True)
        bench.log("mbsync filled Maildir A in %.1f s (not part of the measure)" % (time.monotonic() - t0))
        before = inodes(md_a)
        cfg_a, cfg_b = work / "config-a", work / "config-b"
        tb.write_config(cfg_a, {"t": tb.account_keys(bed, user, md_a, work / "a.sqlite", tls="none")})
        tb.write_config(cfg_b, {"t": tb.account_keys(bed, user, md_b, work / "b.sqlite", tls="none")})
        server.wait_idle()
        if a.keep or a.before:  # the untouched Maildir, for --before (and by hand)
            subprocess.run(["cp", "-a", str(md_a), str(work / "MailA.orig")], check=True)
        t_adopt, s_adopt = timed(a.bin, ["--json", "sync"], cfg_a)
        server.wait_idle()
        t_pull, s_pull = timed(a.bin, ["--json", "pull"], cfg_b)
        after = inodes(md_a)
        ok = moved(s_adopt)[0] == 0 and moved(s_adopt)[2] == 0 and before == after
        print("messages: %d (%d files from mbsync)" % (len(msgs), len(before)))
        print("adoption  `mailsync sync` of the mbsync Maildir, fresh DB: %.2f s  "
              "(fetched %d / %d B, uploaded %d / %d B)" % ((t_adopt,) + moved(s_adopt)))
        print("fresh     `mailsync pull` into an empty Maildir, fresh DB: %.2f s  "
              "(fetched %d / %d B, uploaded %d / %d B)" % ((t_pull,) + moved(s_pull)))
        print("adoption moved no body and kept every inode: %s" % ("yes" if ok else "NO"))
        if a.before:
            cfg_c = work / "config-c"
            tb.write_config(cfg_c, {"t": tb.account_keys(bed, user, work / "MailA.orig", work / "c.sqlite",
                                                          tls="none")})
            server.wait_idle()
            t_before, s_before = timed(a.before, ["--json", "sync"], cfg_c)
            print("before    %s `sync` of the same mbsync Maildir, fresh DB: %.2f s  "
                  "(fetched %d / %d B, uploaded %d / %d B)" % ((a.before, t_before) + moved(s_before)))
        return 0 if ok else 1
    finally:
        server.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)


if __name__ == "__main__":
    sys.exit(main())
