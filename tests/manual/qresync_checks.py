#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""qresync_checks.py: CONDSTORE/QRESYNC checks of sync/remote/imap_*.c against Dovecot.

Usage: qresync_checks.py QRESYNC_PROBE [--big N]
Starts the test bed's Dovecot (tests/integration/testbed.py), seeds mail,
changes it behind the probe's back and runs tests/manual/qresync_probe,
printing PASS/FAIL per check and "passed P, failed F" at the end (exit 1 on
any failure). Run by tests/manual/run_imap_checks.sh; needs root for
Dovecot like the integration tests.

Checks: STATUS (with and without CONDSTORE, a missing folder), ENABLE,
SELECT/EXAMINE (QRESYNC) after flag changes, two separate expunges and new
mail (every vanished UID back, every change with its flags and size), a
UIDVALIDITY mismatch and a modseq from the future (fallback), CHANGEDSINCE
without QRESYNC, imap_fetch_uids on a big sparse folder (count, sum, time,
peak RSS), CONDSTORE without QRESYNC, and imap_select's HIGHESTMODSEQ with
and without CONDSTORE.
"""
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import testbed  # noqa: E402

PROBE = sys.argv[1]
BIG = int(sys.argv[sys.argv.index("--big") + 1]) if "--big" in sys.argv else 45000
passed = failed = 0


def check(name, ok, out=""):
    global passed, failed
    if ok:
        passed += 1
        print("PASS %s" % name)
    else:
        failed += 1
        print("FAIL %s" % name)
        for line in out.strip().splitlines()[-12:]:
            print("    " + line)
    sys.stdout.flush()


def probe(bed, user, *ops, verbose=0):
    env = dict(os.environ, PROBE_PASSWORD=user.password)
    if verbose:
        env["PROBE_VERBOSE"] = str(verbose)
    p = subprocess.run([PROBE, bed.host, str(bed.imap_port), user.name, *ops], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    return p.returncode, p.stdout.decode(errors="replace")


def field(out, pattern):
    m = re.search(pattern, out, re.M)
    return m.group(1) if m else None


def main():
    bed = testbed.Dovecot(pool=2)
    bed.start()
    try:
        run(bed)
    finally:
        bed.stop()
    print("passed %d, failed %d" % (passed, failed))
    return 1 if failed else 0


def run(bed):
    alice = bed.user("alice")
    with bed.imap(alice) as c:
        caps = c.capability_list()
        msgs = [testbed.make_message(i, size=600) for i in range(1, 21)]
        for m in msgs:
            c.append_message("INBOX", m)
        st0 = c.status_of("INBOX")
    check("Dovecot offers ENABLE CONDSTORE QRESYNC",
          {"ENABLE", "CONDSTORE", "QRESYNC"} <= {x.upper() for x in caps}, " ".join(caps))
    uv, hms0 = st0["UIDVALIDITY"], st0["HIGHESTMODSEQ"]

    rc, out = probe(bed, alice, "status:INBOX")
    want = "status INBOX: messages 20 uidnext 21 uidvalidity %d highestmodseq %d" % (uv, hms0)
    check("STATUS with CONDSTORE (no SELECT needed)", rc == 0 and want in out, out)
    rc, out = probe(bed, alice, "select:INBOX")
    check("imap_select reports HIGHESTMODSEQ", rc == 0 and "highestmodseq %d" % hms0 in out, out)
    rc, out = probe(bed, alice, "status:Nope", "status:INBOX")
    check("STATUS of a missing folder is a NO, session still usable",
          rc == 1 and "server said NO" in out and want in out, out)
    rc, out = probe(bed, alice, "select:INBOX", "status:INBOX")
    check("STATUS while a folder is selected", rc == 0 and want in out, out)

    # Change 3 messages' flags, expunge 6 in two commands, add 2.
    with bed.imap(alice) as c:
        c.set_flags("INBOX", [3], ["\\Seen"])
        c.set_flags("INBOX", [7], ["\\Flagged"])
        c.set_flags("INBOX", [15], ["\\Answered", "custom1"])
        c.expunge_uids("INBOX", [2, 4, 6])
        c.expunge_uids("INBOX", [10, 11, 12])
        new = [testbed.make_message(100 + i, size=900 + i) for i in range(2)]
        for m in new:
            c.append_message("INBOX", m)
        st1 = c.status_of("INBOX")
    hms1 = st1["HIGHESTMODSEQ"]

    rc, out = probe(bed, alice, "enable", "qselect:INBOX:%d:%d" % (uv, hms0), verbose=2)
    nvan = len(re.findall(r"^\S*.*\* VANISHED \(EARLIER\)", out, re.M))
    ok = (rc == 0 and "enable: 1" in out and "full-fallback 0" in out
          and "changed (5): 3,7,15,21:22\n" in out and "vanished (6): 2,4,6,10:12\n" in out
          and "highestmodseq %d" % hms1 in out)
    check("EXAMINE (QRESYNC): 3 flag changes, 6 expunged in 2 commands, 2 new "
          "(Dovecot sent %d VANISHED (EARLIER) line(s))" % nvan, ok, out)
    ok = ("msg uid=3 flags=0x10 kw=- size=%d" % len(msgs[2]) in out
          and "msg uid=7 flags=0x2 kw=- size=%d" % len(msgs[6]) in out
          and "msg uid=15 flags=0x8 kw=custom1 size=%d" % len(msgs[14]) in out
          and "msg uid=21 flags=0x0 kw=- size=%d" % len(new[0]) in out
          and "msg uid=22 flags=0x0 kw=- size=%d" % len(new[1]) in out)
    check("changed messages carry flags, keywords and RFC822.SIZE", ok, out)
    check("EXAMINE (QRESYNC) sent as EXAMINE with the stored values",
          "EXAMINE INBOX (QRESYNC (%d %d))" % (uv, hms0) in out or
          'EXAMINE "INBOX" (QRESYNC (%d %d))' % (uv, hms0) in out, out)

    rc, out = probe(bed, alice, "enable", "qselect:INBOX:%d:%d:rw" % (uv, hms0))
    check("SELECT (QRESYNC) read-write gives the same answer",
          rc == 0 and "changed (5): 3,7,15,21:22\n" in out and "vanished (6): 2,4,6,10:12\n" in out, out)
    rc, out = probe(bed, alice, "enable", "qselect:INBOX:%d:%d" % (uv, hms1))
    check("nothing changed since the current modseq: empty lists",
          rc == 0 and "full-fallback 0" in out and "changed (0)" in out and "vanished (0)" in out, out)
    rc, out = probe(bed, alice, "enable", "qselect:INBOX:%d:%d" % (uv + 1, hms0))
    check("UIDVALIDITY mismatch: empty lists, caller falls back",
          rc == 0 and "uidvalidity %d" % uv in out and "full-fallback 1" in out
          and "changed (0)" in out and "vanished (0)" in out, out)
    rc, out = probe(bed, alice, "enable", "qselect:INBOX:%d:%d" % (uv, hms1 + 1000))
    check("modseq ahead of the server's: empty lists, caller falls back",
          rc == 0 and "full-fallback 1" in out and "changed (0)" in out, out)
    rc, out = probe(bed, alice, "enable", "select:INBOX", "qselect:INBOX:%d:%d" % (uv, hms0), "select:INBOX",
                    "qselect:INBOX:%d:%d:rw" % (uv, hms0), "uids", verbose=2)
    ok = (rc == 0 and out.count("changed (5): 3,7,15,21:22\n") == 2 and "[CLOSED]" in out
          and "uids (16): 1,3,5,7:9,13:22\n" in out)
    check("switching folders with QRESYNC enabled (OK [CLOSED]) keeps working", ok, out)
    rc, out = probe(bed, alice, "qselect:INBOX:%d:%d" % (uv, hms0))
    check("SELECT (QRESYNC) without ENABLE is refused (usage)",
          rc == 2 and "QRESYNC is not enabled" in out, out)
    rc, out = probe(bed, alice, "select:INBOX", "enable", "status:INBOX")
    check("ENABLE after a SELECT is not sent", rc == 0 and "enable: 0" in out, out)
    rc, out = probe(bed, alice, "enable", "qselect:Nope:%d:%d" % (uv, hms0), "status:INBOX")
    check("SELECT (QRESYNC) of a missing folder is a NO, session usable",
          rc == 1 and "server said NO" in out and "status INBOX: messages 16" in out, out)

    rc, out = probe(bed, alice, "select:INBOX", "changed:1:0:%d" % hms0, "changed:1:10:%d" % hms0,
                    "uids")
    check("CHANGEDSINCE without QRESYNC (1:* and 1:10)",
          rc == 0 and "changedsince (5): 3,7,15,21:22\n" in out and "changedsince (2): 3,7\n" in out, out)
    check("imap_fetch_uids on INBOX", rc == 0 and "uids (16): 1,3,5,7:9,13:22\n" in out, out)
    rc, out = probe(bed, alice, "changed:1:0:%d" % hms0)
    check("CHANGEDSINCE without a selected folder is a NO-like failure, not a crash",
          rc == 1 and "no folder selected" in out, out)

    # A big sparse folder: BIG messages, every 7th expunged.
    bigu = bed.fresh_user()
    seeds = [testbed.SeedMessage(b"Subject: m%d\r\nMessage-ID: <b%d@x>\r\n\r\nx\r\n" % (i, i))
             for i in range(BIG)]
    bed.seed_direct(bigu, "Big", seeds)
    with bed.imap(bigu) as c:
        c.select_folder("Big")
        gone = list(range(7, BIG + 1, 7))
        for i in range(0, len(gone), 2000):
            c.expunge_uids("Big", gone[i:i + 2000])
        typ, dat = c.uid("SEARCH", "ALL")
        server_uids = [int(x) for x in dat[0].split()]
    rc, out = probe(bed, bigu, "quiet", "select:Big", "uids", "status:Big")
    n = field(out, r"^uids: (\d+) ")
    s = field(out, r"^uids: \d+ sum (\d+)")
    ms = field(out, r" in ([\d.]+) ms")
    hwm = field(out, r"^VmHWM:\s+(\d+) kB")
    ok = (rc == 0 and n == str(len(server_uids)) and s == str(sum(server_uids))
          and float(ms or 1e9) < 2000 and int(hwm or 1e9) < 16384)
    check("imap_fetch_uids: %s UIDs of %d (every 7th expunged) in %s ms, peak RSS %s kB"
          % (n, BIG, ms, hwm), ok, out)
    rc, out = probe(bed, bigu, "quiet", "select:Big", "uids", verbose=2)
    cmds = re.findall(r"^C: \d+ (UID SEARCH UID \S+)", out, re.M)
    # Ranges sized for ~20000 answers each: more than one command above that.
    want = -(-len(server_uids) // 20000)
    check("imap_fetch_uids chunks: %s" % ", ".join(cmds),
          rc == 0 and len(cmds) in (want, want + 1) and cmds[-1].endswith(":*")
          and "uids: %d " % len(server_uids) in out, out)
    rc, out = probe(bed, bigu, "quiet", "select:Big", "flags")
    fms = field(out, r"^flags \((\d+)\)")
    hwm2 = field(out, r"^VmHWM:\s+(\d+) kB")
    print("     (for comparison: the full flag listing of the same folder: %s messages, peak RSS %s kB)"
          % (fms, hwm2))
    t0 = time.time()
    rc, out = probe(bed, bigu, "quiet", "status:Big")
    check("STATUS of the big folder", rc == 0 and "messages %d" % len(server_uids) in out, out)
    print("     (a whole STATUS session took %.0f ms)" % ((time.time() - t0) * 1000))

    # CONDSTORE without QRESYNC: the path for servers that lack QRESYNC.
    bed.restart(hide_capabilities=("QRESYNC",))
    rc, out = probe(bed, alice, "enable", "status:INBOX", "select:INBOX", "changed:1:0:%d" % hms0, "uids")
    caps = field(out, r"^caps: (.*)$") or ""
    ok = (rc == 0 and "QRESYNC" not in caps.upper() and "CONDSTORE" in caps.upper() and "enable: 0" in out
          and "highestmodseq %d" % hms1 in out and re.search(r"^select: .* highestmodseq %d$" % hms1, out, re.M)
          and "changedsince (5): 3,7,15,21:22\n" in out and "uids (16): 1,3,5,7:9,13:22\n" in out)
    check("CONDSTORE without QRESYNC: no ENABLE; STATUS, SELECT modseqs, CHANGEDSINCE, UID list", ok, out)

    # Without CONDSTORE/QRESYNC advertised.
    bed.restart(hide_capabilities=("CONDSTORE", "QRESYNC"))
    rc, out = probe(bed, alice, "enable", "status:INBOX", "select:INBOX")
    caps = field(out, r"^caps: (.*)$") or ""
    ok = (rc == 0 and "CONDSTORE" not in caps.upper() and "enable: 0" in out
          and re.search(r"^status INBOX: messages 16 uidnext 23 uidvalidity %d highestmodseq 0$" % uv, out, re.M)
          and re.search(r"^select: .* highestmodseq 0$", out, re.M))
    check("without CONDSTORE: no ENABLE, STATUS and SELECT report highestmodseq 0", ok, out)
    bed.restart(hide_capabilities=())
    rc, out = probe(bed, alice, "enable", "status:INBOX")
    check("capabilities back: ENABLE works again", rc == 0 and "enable: 1" in out, out)


if __name__ == "__main__":
    sys.exit(main())
