#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""fake_imap.py: a scripted, hostile IMAP server for poking sync/remote/imap_*.c by hand.

Usage: fake_imap.py PORT SCENARIO
Serves one connection on 127.0.0.1:PORT, then exits. Prints every line it
receives to stderr, and "CREDENTIALS-SEEN" if a LOGIN or AUTHENTICATE
arrived, so a test can check that no credential left on a refused session.
Drive it with tests/manual/imap_probe (tls = none on loopback, or starttls).

Scenarios: ok, nostarttls, refuse, preauth, inject, hugelit, listbig, biglit,
smalllit, cutlit, stall, fetchno, nocapdata, nosaslir, unrequested, bye,
longline; for tests/manual/qresync_probe: qresync (several VANISHED (EARLIER)
responses, a plain VANISHED and a FLAGS-less update during the CHANGEDSINCE
FETCH), vanishedclip (VANISHED (EARLIER) 1:4294967295 with UIDNEXT 40),
vanishedhuge (the same without UIDNEXT), nomodseq (NOMODSEQ, STATUS without
HIGHESTMODSEQ), statusother (a second STATUS about another folder).
"""
import base64
import socket
import sys
import time

PORT = int(sys.argv[1])
SCEN = sys.argv[2]
CAPS = "IMAP4rev1 AUTH=PLAIN SASL-IR STARTTLS"
if SCEN == "nostarttls":
    CAPS = "IMAP4rev1 AUTH=PLAIN SASL-IR"
if SCEN == "nosaslir":
    CAPS = "IMAP4rev1 AUTH=PLAIN"
if SCEN in ("qresync", "vanishedclip", "vanishedhuge", "nomodseq", "statusother"):
    CAPS = "IMAP4rev1 AUTH=PLAIN SASL-IR ENABLE CONDSTORE QRESYNC"
BODY = b"Subject: hi\r\nMessage-ID: <x@y>\r\n\r\nhello\r\n"


def main():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", PORT))
    ls.listen(1)
    c, _ = ls.accept()
    f = c.makefile("rb")
    send = c.sendall
    greeting = b"* PREAUTH hi\r\n" if SCEN == "preauth" else b"* OK fake ready\r\n"
    send(greeting)
    while True:
        line = f.readline()
        if not line:
            break
        sys.stderr.write("C: %r\n" % line)
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        tag, cmd = parts[0], (parts[1].upper() if len(parts) > 1 else "")
        if cmd == "UID" and len(parts) > 2:
            cmd = "UID " + parts[2].upper()
        if cmd in ("LOGIN", "AUTHENTICATE"):
            sys.stderr.write("CREDENTIALS-SEEN\n")
        if cmd == "CAPABILITY":
            if SCEN == "nocapdata":
                send(b"%s OK no data for you\r\n" % tag.encode())
            else:
                send(b"* CAPABILITY %s\r\n%s OK done\r\n" % (CAPS.encode(), tag.encode()))
        elif cmd == "STARTTLS":
            if SCEN == "refuse":
                send(b"%s NO not today\r\n" % tag.encode())
            elif SCEN == "inject":
                send(b"%s OK begin\r\n* 1 EXPUNGE\r\n" % tag.encode())
            else:
                send(b"%s BAD no tls here\r\n" % tag.encode())
        elif cmd == "LOGIN":
            send(b"%s OK logged in\r\n" % tag.encode())
        elif cmd == "AUTHENTICATE":
            if len(parts) > 3:
                blob = parts[3]
            else:
                send(b"+ \r\n")
                blob = f.readline().decode().strip()
                sys.stderr.write("C: (continuation) %r\n" % blob)
            raw = base64.b64decode(blob)
            mech = parts[2].upper()
            if mech == "PLAIN":
                ok = raw.split(b"\0")[1:] == [b"user", b"pw"]
            else:  # XOAUTH2 / OAUTHBEARER: the token is "pw"
                ok = b"auth=Bearer pw\x01" in raw and b"user" in raw
                sys.stderr.write("C: (decoded) %r\n" % raw)
                if not ok:
                    send(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n")
                    sys.stderr.write("C: (after error) %r\n" % f.readline())
            send(b"%s %s\r\n" % (tag.encode(), b"OK welcome" if ok else b"NO [AUTHENTICATIONFAILED] bad"))
        elif cmd == "LIST":
            if SCEN == "hugelit":
                send(b'* LIST () "/" {4294967306}\r\n0123456789\r\n')
            elif SCEN == "listbig":
                send(b'* LIST () "/" {2097152}\r\n')
            elif SCEN == "bye":
                send(b"* BYE going down for maintenance\r\n")
                c.close()
                return
            elif SCEN == "longline":
                send(b"* LIST () \"/\" " + b"a" * (17 << 20) + b"\r\n")
            send(b'* LIST () "/" INBOX\r\n%s OK done\r\n' % tag.encode())
        elif cmd == "ENABLE":
            send(b"* ENABLED QRESYNC CONDSTORE\r\n%s OK enabled\r\n" % tag.encode())
        elif cmd == "STATUS":
            t = tag.encode()
            hms = b"" if SCEN == "nomodseq" else b" HIGHESTMODSEQ 900"
            send(b"* STATUS INBOX (MESSAGES 30 UIDNEXT 40 UIDVALIDITY 42%s)\r\n" % hms)
            if SCEN == "statusother":
                send(b"* STATUS Other (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 7)\r\n")
            send(b"%s OK done\r\n" % t)
        elif cmd in ("SELECT", "EXAMINE") and SCEN in ("qresync", "vanishedclip", "vanishedhuge", "nomodseq"):
            t = tag.encode()
            send(b"* 30 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n")
            if SCEN != "vanishedhuge":
                send(b"* OK [UIDNEXT 40] n\r\n")
            if SCEN == "nomodseq":
                send(b"* OK [NOMODSEQ] no modseqs here\r\n%s OK done\r\n" % t)
                continue
            send(b"* OK [HIGHESTMODSEQ 900] m\r\n")
            if "QRESYNC" in line.decode().upper():
                if SCEN == "qresync":
                    send(b"* VANISHED (EARLIER) 2,4\r\n* VANISHED (EARLIER) 6\r\n")
                    send(b"* 1 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (850))\r\n")
                    send(b"* VANISHED (EARLIER) 10:12,20:18\r\n")
                else:
                    send(b"* VANISHED (EARLIER) 1:4294967295\r\n")
            send(b"%s OK [READ-ONLY] done\r\n" % t)
        elif cmd == "UID FETCH" and "CHANGEDSINCE" in line.decode().upper():
            t = tag.encode()
            send(b"* 1 FETCH (UID 3 FLAGS (\\Seen $Label1) RFC822.SIZE 10 MODSEQ (850))\r\n")
            send(b"* 2 FETCH (UID 7 FLAGS () RFC822.SIZE 11 MODSEQ (851))\r\n")
            send(b"* 3 FETCH (UID 25 FLAGS (\\Flagged) RFC822.SIZE 12 MODSEQ (853))\r\n")
            send(b"* VANISHED 7\r\n")
            send(b"* 1 FETCH (UID 3 MODSEQ (852))\r\n")  # no FLAGS: must not clear them
            send(b"%s OK done\r\n" % t)
        elif cmd in ("SELECT", "EXAMINE"):
            send(b"* 2 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 3] n\r\n%s OK done\r\n" % tag.encode())
        elif cmd == "UID FETCH":
            t = tag.encode()
            if "BODY.PEEK[]" in line.decode():
                if SCEN == "biglit":
                    send(b"* 1 FETCH (UID 1 BODY[] {2000000000}\r\nxx")
                    time.sleep(1)
                    break
                if SCEN == "smalllit":
                    # a 1.5 MiB body is fine (body literals may be big)
                    big = b"y" * (3 << 19)
                    send(b"* 1 FETCH (UID 1 RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n%s OK done\r\n" % (len(big), len(big), big, t))
                    continue
                if SCEN == "cutlit":
                    send(b"* 1 FETCH (UID 1 BODY[] {100000}\r\n0123456789")
                    time.sleep(0.5)
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                    return
                if SCEN == "stall":
                    send(b"* 1 FETCH (UID 1 BODY[] {100000}\r\n0123456789")
                    time.sleep(30)
                    return
                uid = 7 if SCEN == "unrequested" else 1
                send(b"* 1 FETCH (UID %d FLAGS (\\Seen) RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n" % (uid, len(BODY), len(BODY), BODY))
                send(b"* 2 FETCH (FLAGS (\\Seen))\r\n")  # unsolicited, no UID
                send(b"%s OK done\r\n" % t)
            else:
                send(b"* 1 FETCH (UID 1 FLAGS (\\Seen foo) RFC822.SIZE %d)\r\n" % len(BODY))
                if SCEN == "fetchno":
                    send(b"%s NO [SERVERBUG] could not fetch the rest\r\n" % t)
                else:
                    send(b"* 2 FETCH (UID 2 FLAGS () RFC822.SIZE 3)\r\n%s OK done\r\n" % t)
        elif cmd == "LOGOUT":
            send(b"* BYE bye\r\n%s OK done\r\n" % tag.encode())
            break
        else:
            send(b"%s BAD what\r\n" % tag.encode())
    c.close()


main()
