#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""demo.py: show mailsync pulling real mail from a real IMAP server.

Starts a throwaway Dovecot on 127.0.0.1 (tests/integration/testbed.py),
seeds it with the sample messages of contrib/demo/sample plus generated ones
in several folders (one nested, one named "Thư đã gửi"), writes a config,
runs `mailsync pull` over implicit TLS, runs it again (nothing to do), checks
the Maildir against the server byte for byte, prints a summary and stops
Dovecot. The Maildir stays in DEMO_DIR (default /tmp/mailsync-demo/Mail).

Usage: demo.py [--dir DIR] [--bin PATH] [--messages N]
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "integration"))
import testbed as tb  # noqa: E402

MARKER = ".mailsync-demo"
FOLDERS = ("INBOX", "Archive", "Archive/2024", "Thư đã gửi", "Work/Projects")


def prepare_dir(demo_dir):
    """Empty the demo dir from an earlier run; refuse to wipe anything that
    is not ours."""
    if demo_dir.exists():
        if not (demo_dir / MARKER).exists() and any(demo_dir.iterdir()):
            sys.exit("demo: %s exists and is not a demo directory; choose another --dir" % demo_dir)
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, mode=0o700)
    (demo_dir / MARKER).write_text("created by contrib/demo/demo.py\n")


def seed(bed, per_folder):
    """Put the sample mail on the server; returns the number of messages."""
    total = 0
    samples = tb.sample_eml()
    flags = [("\\Seen",), (), ("\\Seen", "\\Flagged"), ("\\Seen", "\\Answered")]
    with bed.imap("alice") as c:
        for folder in FOLDERS:
            if folder != "INBOX":
                c.create_folder(folder)
        for i, data in enumerate(samples):
            folder = "Thư đã gửi" if i == 1 else "INBOX"
            c.append_message(folder, data, flags[i % len(flags)], 1709540100 + i * 86400)
            total += 1
        for n, folder in enumerate(FOLDERS):
            msgs = tb.make_corpus(per_folder, seed=42, size=(800, 20000), start=n * per_folder)
            c.append_many(folder, msgs)
            total += len(msgs)
    return total


def run(label, binary, config, *args):
    """Run mailsync with the terminal attached so the user sees its output."""
    cmd = [binary, "-c", str(config)] + list(args)
    print("\n# %s\n$ %s" % (label, " ".join(cmd)), flush=True)
    t0 = time.monotonic()
    rc = subprocess.call(cmd, env=tb.mailsync_env())
    print("(exit code %d, %.2f s)" % (rc, time.monotonic() - t0), flush=True)
    return rc


def summary(maildir):
    print("\nLocal Maildir %s:" % maildir)
    print("  %-30s %6s %6s" % ("folder", "new/", "cur/"))
    for dirpath, dirnames, _ in sorted(os.walk(maildir)):
        dirnames.sort()
        if tb.is_maildir(dirpath):
            rel = os.path.relpath(dirpath, maildir)
            n_new = len(os.listdir(os.path.join(dirpath, "new")))
            n_cur = len(os.listdir(os.path.join(dirpath, "cur")))
            print("  %-30s %6d %6d" % (rel, n_new, n_cur))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=os.environ.get("DEMO_DIR", "/tmp/mailsync-demo"))
    ap.add_argument("--bin", default=tb.mailsync_bin())
    ap.add_argument("--messages", type=int, default=12, help="generated messages per folder")
    opts = ap.parse_args()

    binary = os.path.abspath(opts.bin)
    if not os.access(binary, os.X_OK):
        sys.exit("demo: no mailsync binary at %s (build it, or pass --bin / set MAILSYNC_BIN)" % binary)
    demo_dir = Path(opts.dir).resolve()
    prepare_dir(demo_dir)
    maildir = demo_dir / "Mail"

    with tb.Dovecot(pool=0) as bed:
        total = seed(bed, opts.messages)
        print("Dovecot is running on 127.0.0.1 (IMAP %d, IMAPS %d) with %d messages "
              "in %d folders for user alice." % (bed.imap_port, bed.imaps_port, total, len(FOLDERS)))
        shutil.copy(bed.ca_file, demo_dir / "test-ca.crt")
        config = tb.write_config(demo_dir / "config", {"demo": {
            "host": "127.0.0.1", "port": bed.imaps_port, "tls": "implicit",
            "user": "alice", "password": "secret",
            "ca_file": str(demo_dir / "test-ca.crt"),
            "maildir": str(maildir), "state": str(demo_dir / "state.sqlite"),
            "mode": "mirror"}})
        print("Config written to %s:\n%s" % (config, Path(config).read_text()))

        rc = run("first pull: download everything", binary, config, "pull")
        if rc == 0:
            run("second pull: nothing new, nothing changes", binary, config, "pull")
            run("status: read from the state DB, works offline", binary, config, "status")
        with bed.imap("alice") as c:
            state = c.server_state()
        problems = tb.compare_maildir(maildir, state)

    summary(maildir)
    if problems:
        print("\nMaildir does NOT match the server (%d problems):\n  %s" % (
            len(problems), "\n  ".join(problems[:20])))
    else:
        print("\nVerified: every server message is in the Maildir exactly once, byte for "
              "byte (CRLF stored as LF), with its flags and INTERNALDATE.")
    print("\nDovecot has been stopped. The Maildir stays in %s\n"
          "(config and state DB in %s)." % (maildir, demo_dir))
    print("\nNext, your own account (README.md, \"Getting started\"):\n"
          "  sudo cmake --install build         # or run build/mailsync from here\n"
          "  mailsync import --write            # switching from mbsync or OfflineIMAP, or:\n"
          "  $EDITOR ~/.config/mailsync/config  # see 'man mailsync', CONFIGURATION\n"
          "  mailsync check                     # TLS, login, folders: changes nothing\n"
          "  mailsync pull --dry-run            # what the first pull would fetch\n"
          "  mailsync pull\n"
          "  systemctl --user enable --now mailsync@ACCOUNT.timer   # every 5 minutes")
    return rc if rc != 0 else (1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main())
