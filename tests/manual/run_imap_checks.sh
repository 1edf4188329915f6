#!/bin/bash
# SPDX-License-Identifier: MIT
# run_imap_checks.sh: reproduce the manual checks of sync/remote/imap_*.c.
#
# Starts a private Dovecot (127.0.0.1/.2/.4/.5, ports 21143 plain+STARTTLS
# and 21993 implicit TLS) with a test CA, an expired certificate and a
# self-signed one, seeds mail (including a 50 MB message), builds
# tests/manual/imap_probe against BUILD_DIR (default build-b), and runs the
# TLS, auth, listing, fetch, memory and hostile-server checks, printing PASS
# or FAIL per check. Then the CONDSTORE/QRESYNC checks: tests/manual/
# qresync_probe against scripted servers (several VANISHED responses,
# hostile ranges, NOMODSEQ) and, through tests/manual/qresync_checks.py, the
# test bed's Dovecot (STATUS, ENABLE, SELECT (QRESYNC), CHANGEDSINCE, UID
# listing of a big folder, capabilities hidden). Needs root (Dovecot),
# openssl, python3. Stops Dovecot and removes its directory at the end.
#
#   tests/manual/run_imap_checks.sh [BUILD_DIR]
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$REPO/build-b}
W=$(mktemp -d /tmp/imapchecks.XXXXXX)
chmod 755 "$W"
PASS=0
FAIL=0
DOVECOT_PID=

cleanup() {
    [ -n "$DOVECOT_PID" ] && kill "$DOVECOT_PID" 2>/dev/null && wait "$DOVECOT_PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

check() { # check NAME EXPECTED_EXIT GREP_PATTERN -- command...  ($NOTPAT must not appear)
    local name=$1 want=$2 pat=$3
    shift 4
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" = "$want" ] && grep -qE -- "$pat" <<<"$out" &&
        { [ -z "${NOTPAT:-}" ] || ! grep -qE -- "$NOTPAT" <<<"$out"; }; then
        PASS=$((PASS + 1))
        echo "PASS $name"
    else
        FAIL=$((FAIL + 1))
        echo "FAIL $name (exit $rc, wanted $want /$pat/)"
        sed 's/^/    /' <<<"$out" | tail -5
    fi
}

# ---- PKI ------------------------------------------------------------------
P=$W/pki
mkdir -p "$P/db"
touch "$P/db/index.txt"
echo "unique_subject = no" >"$P/db/index.txt.attr"
echo 1000 >"$P/db/serial"
q() { "$@" >/dev/null 2>&1 || { echo "setup failed: $*"; exit 1; }; }
q openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca.key" -out "$P/ca.crt" -days 30 -subj "/CN=check CA"
cat >"$P/ca.cnf" <<EOF
[ ca ]
default_ca = dev
[ dev ]
database = $P/db/index.txt
serial = $P/db/serial
new_certs_dir = $P/db
certificate = $P/ca.crt
private_key = $P/ca.key
default_md = sha256
policy = pol
x509_extensions = ext
default_days = 30
[ pol ]
commonName = supplied
[ ext ]
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:127.0.0.4
EOF
for c in server expired; do
    q openssl req -newkey rsa:2048 -nodes -keyout "$P/$c.key" -out "$P/$c.csr" -subj "/CN=localhost"
done
q openssl ca -batch -config "$P/ca.cnf" -in "$P/server.csr" -out "$P/server.crt" -notext
q openssl ca -batch -config "$P/ca.cnf" -in "$P/expired.csr" -out "$P/expired.crt" -notext \
    -startdate 20200101000000Z -enddate 20200201000000Z
q openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/other.key" -out "$P/other.crt" -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"

# ---- Dovecot --------------------------------------------------------------
mkdir -p "$W/run" "$W/state" "$W/mail"
chown nobody:nogroup "$W/mail"
printf 'alice:{PLAIN}secret pw"x\n' >"$W/passwd"
cat >"$W/dovecot.conf" <<EOF
protocols = imap
listen = 127.0.0.1, 127.0.0.2, 127.0.0.4, 127.0.0.5
base_dir = $W/run
state_dir = $W/state
log_path = $W/dovecot.log
ssl = yes
ssl_cert = <$P/server.crt
ssl_key = <$P/server.key
local 127.0.0.4 {
  ssl_cert = <$P/expired.crt
  ssl_key = <$P/expired.key
}
local 127.0.0.5 {
  ssl_cert = <$P/other.crt
  ssl_key = <$P/other.key
}
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $W/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$W/mail/%u
}
mail_location = maildir:$W/mail/%u/Maildir
service imap-login {
  inet_listener imap {
    port = 21143
  }
  inet_listener imaps {
    port = 21993
    ssl = yes
  }
}
EOF
dovecot -c "$W/dovecot.conf" -F >"$W/dovecot.out" 2>&1 &
DOVECOT_PID=$!
for _ in $(seq 50); do ss -ltn | grep -q "127.0.0.1:21993 " && break; sleep 0.1; done

python3 - <<'EOF' || { echo "seeding failed"; exit 1; }
import imaplib
M = imaplib.IMAP4('127.0.0.1', 21143)
M.login('alice', 'secret pw"x')
for f in ['Big', 'Many', 'Empty']:
    M.create(f)
M.append('INBOX', r'(\Seen \Flagged $Forwarded custom1)', '"01-Jan-2021 10:00:00 +0130"',
         b"Subject: a\r\nMessage-ID:\r\n  <folded@x>\r\n\r\nbody\r\n")
M.append('INBOX', None, None, b"Subject: no id\r\n\r\nbody\r\n")
for i in range(1200):
    M.append('Many', None, None, b"Subject: m\r\nMessage-ID: <m%d@x>\r\n\r\nx\r\n" % i)
M.append('Big', None, None, b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 52000)
M.logout()
EOF

# ---- probe ----------------------------------------------------------------
PROBE=$W/imap_probe
(cd "$REPO" && gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. tests/manual/imap_probe.c \
    "$BUILD/libmailsync_core.a" -letpan -lssl -lcrypto -lsqlite3 -lz -lpthread -o "$PROBE") ||
    { echo "cannot build the probe"; exit 1; }
export PROBE_PASSWORD='secret pw"x'
CA="--ca $P/ca.crt"
FP=$(openssl x509 -in "$P/other.crt" -noout -fingerprint -sha256 | cut -d= -f2)

check "implicit TLS + CA, list, select, flags" 0 'flags uid=1 flags=0x16 kw=custom1' -- \
    "$PROBE" 127.0.0.1 21993 implicit alice $CA --folder INBOX
check "INTERNALDATE with zone" 0 'date=1609489800' -- "$PROBE" 127.0.0.1 21993 implicit alice $CA --folder INBOX
check "identity (folded Message-ID, none)" 0 'message-id=<folded@x>.*' -- \
    "$PROBE" 127.0.0.1 21993 implicit alice $CA --folder INBOX --identity
check "STARTTLS + LOGIN" 0 'tls: TLSv1' -- "$PROBE" 127.0.0.1 21143 starttls alice $CA --auth login
check "STARTTLS + PLAIN" 0 'tls: TLSv1' -- "$PROBE" 127.0.0.1 21143 starttls alice $CA --auth plain
check "plaintext on loopback" 0 'tls: none' -- "$PROBE" 127.0.0.1 21143 none alice
check "host name localhost" 0 'tls: TLSv1' -- "$PROBE" localhost 21993 implicit alice $CA
check "system store refuses test CA" 4 'unknown issuer' -- "$PROBE" 127.0.0.1 21993 implicit alice
check "wrong CA" 4 'unknown issuer' -- "$PROBE" 127.0.0.1 21993 implicit alice --ca "$P/other.crt"
check "wrong host" 4 'certificate is for another host \(wanted 127.0.0.2' -- \
    "$PROBE" 127.0.0.2 21993 implicit alice $CA
check "expired" 4 'certificate has expired' -- "$PROBE" 127.0.0.4 21993 implicit alice $CA
check "pin accepted" 0 'tls: TLSv1' -- "$PROBE" 127.0.0.5 21993 implicit alice --fp "sha256:$FP"
check "pin, no colons, lower case, STARTTLS" 0 'tls: TLSv1' -- \
    "$PROBE" 127.0.0.5 21143 starttls alice --fp "$(tr -d : <<<"$FP" | tr A-F a-f)"
check "pin mismatch" 4 'fingerprint mismatch: got sha256:' -- \
    "$PROBE" 127.0.0.1 21993 implicit alice --fp "sha256:$FP"
check "wrong password" 3 'authentication as alice' -- \
    env PROBE_PASSWORD=wrong "$PROBE" 127.0.0.1 21993 implicit alice $CA
check "closed port" 4 'Connection refused' -- "$PROBE" 127.0.0.1 21999 implicit alice $CA
check "implicit TLS on a plain port" 4 'does not speak TLS' -- "$PROBE" 127.0.0.1 21143 implicit alice $CA
check "tls=none refused for remote host" 2 'loopback' -- "$PROBE" 192.0.2.1 143 none alice
check "batched fetch of 1200 messages" 0 'bodies: rc 0 msgs 1200' -- \
    "$PROBE" 127.0.0.1 21993 implicit alice $CA --folder Many --identity --quiet
check "empty folder" 0 'bodies: rc 0 msgs 0' -- "$PROBE" 127.0.0.1 21993 implicit alice $CA --folder Empty
check "missing folder is a NO" 1 'server said NO' -- "$PROBE" 127.0.0.1 21993 implicit alice $CA --folder Nope
mkdir -p "$W/out"
check "50 MB message streamed" 0 'bodies: rc 0 msgs 1 bytes 5[0-9]{7}' -- \
    "$PROBE" 127.0.0.1 21993 implicit alice $CA --folder Big --out "$W/out"
hwm=$("$PROBE" 127.0.0.1 21993 implicit alice $CA --folder Big --quiet | awk '/VmHWM/ {print $2}')
if [ "${hwm:-999999}" -lt 30000 ]; then
    PASS=$((PASS + 1)); echo "PASS peak RSS ${hwm} kB for a 50 MB message"
else
    FAIL=$((FAIL + 1)); echo "FAIL peak RSS ${hwm:-?} kB for a 50 MB message"
fi
check "callback abort closes the session" 5 'after failure: list rc 4' -- \
    "$PROBE" 127.0.0.1 21993 implicit alice $CA --folder Big --fail-after 10 --quiet
trace=$("$PROBE" 127.0.0.1 21143 starttls alice $CA --auth login -v 2 2>&1;
        "$PROBE" 127.0.0.1 21993 implicit alice $CA --auth plain -v 2 2>&1)
if grep -q 'LOGIN \[credentials masked\]' <<<"$trace" && ! grep -qE 'secret|c2VjcmV0|AGFsaWNl' <<<"$trace"; then
    PASS=$((PASS + 1)); echo "PASS -vv trace masks LOGIN and AUTHENTICATE PLAIN"
else
    FAIL=$((FAIL + 1)); echo "FAIL -vv trace leaks a secret"
fi

# ---- hostile server -----------------------------------------------------------
fake() { # fake SCENARIO MODE [probe args]
    local scen=$1 mode=$2 port=$((23000 + RANDOM % 2000))
    shift 2
    python3 "$REPO/tests/manual/fake_imap.py" $port "$scen" 2>"$W/fake.$scen.log" &
    local fp=$!
    for _ in $(seq 50); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.1; done
    PROBE_PASSWORD=pw timeout 60 "$PROBE" 127.0.0.1 $port "$mode" user "$@"
    local rc=$?
    kill $fp 2>/dev/null
    wait $fp 2>/dev/null
    if grep -q CREDENTIALS-SEEN "$W/fake.$scen.log"; then echo "credentials were sent"; fi
    return $rc
}
NOTPAT='credentials were sent'
check "no STARTTLS: refuse, no credentials" 4 'does not offer STARTTLS' -- fake nostarttls starttls
check "STARTTLS refused, no credentials" 4 'refused STARTTLS' -- fake refuse starttls
check "PREAUTH before STARTTLS, no credentials" 4 'PREAUTH' -- fake preauth starttls
check "bytes after STARTTLS OK, no credentials" 4 'injection' -- fake inject starttls
NOTPAT=
check "literal size wrapping at 2^32" 4 'literal of 4294967306 bytes' -- fake hugelit none
check "2 MiB literal outside a body" 4 'limit 1048576' -- fake listbig none
check "2 GB body literal" 4 'literal of 2000000000 bytes' -- fake biglit none --folder INBOX
check "1.5 MiB body literal is fine" 0 'bodies: rc 0 msgs 1 bytes 1572864' -- fake smalllit none --folder INBOX
check "cut mid-literal (plain TCP)" 4 'connection closed by server' -- fake cutlit none --folder INBOX
check "stall" 4 'timed out after 2 s' -- fake stall none --folder INBOX --timeout 2
check "tagged NO after FETCH data" 1 'fetch flags failed: 1' -- fake fetchno none --folder INBOX
check "OK without CAPABILITY data" 0 'caps: $' -- fake nocapdata none
check "AUTHENTICATE PLAIN without SASL-IR" 0 'tls: none' -- fake nosaslir none --auth plain
check "XOAUTH2" 0 'tls: none' -- fake ok none --auth xoauth2
check "OAUTHBEARER without SASL-IR" 0 'tls: none' -- fake nosaslir none --auth oauthbearer
check "unrequested body" 4 'unrequested body for UID 7' -- fake unrequested none --folder INBOX
check "BYE text reported" 4 'BYE going down' -- fake bye none
check "over-long line" 4 'line longer' -- fake longline none

# ---- CONDSTORE / QRESYNC ------------------------------------------------------
QPROBE=$W/qresync_probe
(cd "$REPO" && gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. tests/manual/qresync_probe.c \
    "$BUILD/libmailsync_core.a" -letpan -lssl -lcrypto -lsqlite3 -lz -lpthread -o "$QPROBE") ||
    { echo "cannot build the QRESYNC probe"; exit 1; }
fakeq() { # fakeq SCENARIO OP...
    local scen=$1 port=$((23000 + RANDOM % 2000))
    shift
    python3 "$REPO/tests/manual/fake_imap.py" $port "$scen" 2>"$W/fake.$scen.log" &
    local fp=$!
    for _ in $(seq 50); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.1; done
    PROBE_PASSWORD=pw timeout 60 "$QPROBE" 127.0.0.1 $port user "$@"
    local rc=$?
    kill $fp 2>/dev/null
    wait $fp 2>/dev/null
    return $rc
}
check "several VANISHED (EARLIER) + VANISHED mid-FETCH all collected" 0 \
    'vanished \(10\): 2,4,6:7,10:12,18:20$' -- fakeq qresync enable qselect:INBOX:42:800
check "FLAGS-less update keeps flags; vanished UID not in changed" 0 \
    'changed \(2\): 3,25$' -- fakeq qresync enable qselect:INBOX:42:800
check "keywords from CHANGEDSINCE" 0 'msg uid=3 flags=0x10 kw=\$Label1 size=10' -- \
    fakeq qresync enable qselect:INBOX:42:800
check "VANISHED 1:4294967295 clipped below UIDNEXT" 0 'vanished \(39\): 1:39$' -- \
    fakeq vanishedclip enable qselect:INBOX:42:800
check "VANISHED 1:4294967295 without UIDNEXT: listed in full" 0 'full-fallback 1' -- \
    fakeq vanishedhuge enable qselect:INBOX:42:800
check "NOMODSEQ: STATUS without HIGHESTMODSEQ reports 0" 0 'status INBOX: .* highestmodseq 0$' -- \
    fakeq nomodseq status:INBOX
check "NOMODSEQ: imap_select reports 0" 0 '^select: .* highestmodseq 0$' -- fakeq nomodseq select:INBOX
check "NOMODSEQ: SELECT (QRESYNC) tells the caller to fall back" 0 'full-fallback 1' -- \
    fakeq nomodseq enable qselect:INBOX:42:800
check "STATUS answer about another folder refused" 1 'about another folder' -- \
    fakeq statusother status:INBOX
qout=$(python3 "$REPO/tests/manual/qresync_checks.py" "$QPROBE" 2>&1)
echo "$qout" | grep -E '^(PASS|FAIL|    )'
PASS=$((PASS + $(grep -c '^PASS' <<<"$qout")))
FAIL=$((FAIL + $(grep -c '^FAIL' <<<"$qout")))
grep -q '^passed ' <<<"$qout" || { FAIL=$((FAIL + 1)); echo "FAIL qresync_checks.py did not finish"; tail -5 <<<"$qout"; }

echo "passed $PASS, failed $FAIL"
[ "$FAIL" = 0 ]
