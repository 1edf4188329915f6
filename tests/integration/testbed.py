# SPDX-License-Identifier: MIT
"""testbed.py: the integration test bed for mailsync (Python 3 stdlib only).

Used by every tests/integration/test_*.py, by contrib/demo and by the
benchmark. It provides:

  * Dovecot: a private Dovecot (IMAP, IMAPS, POP3, POP3S) on 127.0.0.1 at
    random free ports, with its own base_dir/state_dir/log in a temp dir, a
    test CA, and a pool of users whose mail lives in a temp Maildir owned by
    an unprivileged user.  It never touches a system Dovecot.
  * ImapClient: imaplib with helpers to change mail behind mailsync's back
    (create/delete folders, append with flags + INTERNALDATE, store flags,
    expunge) and to read back the server state for comparison.
  * Message generators (deterministic), a Maildir reader, and
    compare_maildir(): the contract's "same mail on both sides" check.
  * write_config(), run_mailsync(), start_mailsync(): drive the binary.
  * Proxy: a loopback TCP proxy that can slow down, pause or cut a
    connection (for lock, crash and network-fault tests).
  * BedTestCase: a unittest base class wiring all of the above together.

Nothing here is skipped silently: a missing dovecot or openssl raises.
"""

import atexit
import base64
import collections
import dataclasses
import datetime
import errno
import hashlib
import imaplib
import json
import os
import queue
import poplib
import pwd
import grp
import random
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from pathlib import Path

# ----------------------------------------------------------------------------
# Locations

DOVECOT_BIN = os.environ.get("DOVECOT_BIN", "/usr/sbin/dovecot")
REPO_ROOT = Path(__file__).resolve().parents[2]
MAIL_USER_NAME = "mailsync-test"   # system user owning the server mail (root)
HOST = "127.0.0.1"


def mailsync_bin():
    """Absolute path of the binary under test: $MAILSYNC_BIN, else
    $MAILSYNC_BUILD_DIR/mailsync, else <repo>/build/mailsync (relative
    paths are taken from the current directory: tests and the benchmark
    run it from other directories)."""
    if os.environ.get("MAILSYNC_BIN"):
        return os.path.abspath(os.environ["MAILSYNC_BIN"])
    if os.environ.get("MAILSYNC_BUILD_DIR"):
        return os.path.abspath(os.path.join(os.environ["MAILSYNC_BUILD_DIR"], "mailsync"))
    return str(REPO_ROOT / "build" / "mailsync")


def keep_tmp():
    """MAILSYNC_KEEP_TMP=1 keeps temp dirs of tests for post-mortems."""
    return os.environ.get("MAILSYNC_KEEP_TMP", "") not in ("", "0")


# ----------------------------------------------------------------------------
# Modified UTF-7 (RFC 3501 section 5.1.3), written here on purpose: the tests
# must not share a codec with the code under test.

def mutf7_encode(name):
    """UTF-8 str -> modified UTF-7 str (ASCII)."""
    out, pending = [], []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(name):
    """Modified UTF-7 str -> UTF-8 str. Raises ValueError on bad input."""
    out, i = [], 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i)
        if end < 0:
            raise ValueError("unterminated shift in %r" % name)
        chunk = name[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            out.append(base64.b64decode(b64, validate=True).decode("utf-16-be"))
        i = end + 1
    return "".join(out)


def imap_quote(s):
    """Quote an (ASCII) string for an IMAP command."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ----------------------------------------------------------------------------
# Small utilities

def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1: all sockets are held open
    while the next is picked (free_port() twice in a row may return the
    same port, and Dovecot refuses a duplicate listener)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port, host=HOST, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ports(ports, timeout=15.0, proc=None, what="server"):
    """Wait until every port accepts a connection; raise if proc dies."""
    deadline = time.monotonic() + timeout
    pending = [p for p in ports if p]
    while pending:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s before listening" % (what, proc.returncode))
        pending = [p for p in pending if not port_open(p)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("%s: ports %s not listening after %.0fs" % (what, pending, timeout))
        time.sleep(0.05)


def wait_greeting(port, timeout=30.0, proc=None, host=HOST):
    """Wait until a connection to port gets an IMAP greeting ('* OK' or
    '* PREAUTH'); raise RuntimeError('no greeting ...') if none comes."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s before greeting" % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                line = s.makefile("rb").readline(4096)
            if line.startswith((b"* OK", b"* PREAUTH")):
                return
            last = "got %r" % line[:80]
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise RuntimeError("no greeting on port %d after %.0fs (%s)" % (port, timeout, last))


def wait_for(pred, timeout=15.0, step=0.1):
    """Poll pred() until it is true or timeout seconds pass -> its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def wait_past_second(second):
    """Sleep until the wall clock is past `second` (epoch seconds, as
    mailsync's and Dovecot's second-resolution stamps): instead of a flat
    sleep(1.1), which waits 1.1 s where on average 0.5 s would do. The
    50 ms margin covers time(2)'s coarse clock, which may lag a tick."""
    delay = int(second) + 1.05 - time.time()
    if delay > 0:
        time.sleep(delay)


def _set_pdeathsig():
    """preexec_fn: the child gets SIGTERM if the test process dies, even by
    SIGKILL (ctest timeout), so no Dovecot outlives its test."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def imap_date(epoch):
    """Epoch seconds -> quoted IMAP date-time in UTC (locale independent)."""
    t = time.gmtime(int(epoch))
    mon = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()[t.tm_mon - 1]
    return '"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday, mon, t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


_MONTHS = {m: i + 1 for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split())}
_IDATE_RE = re.compile(
    r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")


def parse_imap_date(text):
    """'17-Jul-1996 02:44:25 -0700' -> epoch seconds (int)."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    m = _IDATE_RE.match(text)
    if not m:
        raise ValueError("bad INTERNALDATE %r" % text)
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    dt = datetime.datetime(int(year), _MONTHS[mon.lower()], int(day),
                           int(hh), int(mm), int(ss), tzinfo=datetime.timezone.utc)
    offset = (int(oh) * 60 + int(om)) * 60
    if sign == "-":
        offset = -offset
    return int(dt.timestamp()) - offset


def cert_fingerprint(cert_path):
    """'sha256:AB:CD:...' of a PEM certificate (the format of the config's
    fingerprint key)."""
    der = ssl.PEM_cert_to_DER_cert(Path(cert_path).read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _run(cmd, **kw):
    """Run a helper command; raise with its output on failure."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(map(str, cmd)), r.returncode,
                                                    r.stdout.decode(errors="replace")))
    return r.stdout


# ----------------------------------------------------------------------------
# Test PKI (openssl CLI)

class CertAuthority:
    """A throwaway CA in `directory`: .cert, .key; issue() signs leaf certs."""

    _CA_CNF = """\
[ca]
default_ca = testca
[testca]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/issued
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no
[anything]
commonName = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {sans}
"""

    def __init__(self, directory, name="mailsync test CA"):
        if shutil.which("openssl") is None:
            raise RuntimeError("openssl CLI not found: the test bed needs it")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "issued").mkdir(exist_ok=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("%016X\n" % random.getrandbits(63))
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.crt"
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "3650", "-sha256",
              "-subj", "/CN=%s" % name,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def issue(self, label, cn="localhost", sans=("DNS:localhost", "IP:127.0.0.1"),
              expired=False):
        """Sign a server cert; returns (cert_path, key_path). expired=True
        makes one whose validity ended in 2021."""
        key = self.dir / ("%s.key" % label)
        csr = self.dir / ("%s.csr" % label)
        cert = self.dir / ("%s.crt" % label)
        cnf = self.dir / ("%s.cnf" % label)
        cnf.write_text(self._CA_CNF.format(dir=self.dir, sans=",".join(sans)))
        _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=%s" % cn])
        dates = (["-startdate", "20200101000000Z", "-enddate", "20210101000000Z"] if expired
                 else ["-days", "825"])
        _run(["openssl", "ca", "-batch", "-notext", "-config", cnf, "-extensions", "leaf",
              "-cert", self.cert, "-keyfile", self.key, "-in", csr, "-out", cert] + dates)
        os.chmod(key, 0o600)
        return cert, key


class TestPKI:
    """The CA the bed trusts plus the odd certificates fault tests need.

    server_cert(kind) -> (cert, key) for kind in:
      good       CN=localhost, SAN DNS:localhost IP:127.0.0.1, signed by ca
      expired    same names, signed by ca, expired in 2021
      wronghost  CN/SAN wrong.example.org only, signed by ca
      otherca    good names, signed by an unrelated CA (untrusted)
      selfsigned a self-signed cert for localhost
    """

    KINDS = ("good", "expired", "wronghost", "otherca", "selfsigned")

    def __init__(self, directory):
        self.dir = Path(directory)
        self.ca = CertAuthority(self.dir / "ca", "mailsync test CA")
        self._other = None
        self._certs = {}

    @property
    def ca_file(self):
        return str(self.ca.cert)

    @property
    def other_ca(self):
        """An unrelated CA (lazily made): use its .cert as a wrong ca_file."""
        if self._other is None:
            self._other = CertAuthority(self.dir / "other-ca", "unrelated test CA")
        return self._other

    def server_cert(self, kind="good"):
        if kind in self._certs:
            return self._certs[kind]
        if kind == "good":
            pair = self.ca.issue("server")
        elif kind == "expired":
            pair = self.ca.issue("expired", expired=True)
        elif kind == "wronghost":
            pair = self.ca.issue("wronghost", cn="wrong.example.org", sans=("DNS:wrong.example.org",))
        elif kind == "otherca":
            pair = self.other_ca.issue("server")
        elif kind == "selfsigned":
            d = self.dir / "selfsigned"
            d.mkdir(exist_ok=True)
            cert, key = d / "self.crt", d / "self.key"
            _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                  "-days", "825", "-subj", "/CN=localhost",
                  "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            pair = (cert, key)
        else:
            raise ValueError("unknown cert kind %r (one of %s)" % (kind, ", ".join(self.KINDS)))
        self._certs[kind] = pair
        return pair


_SHARED_PKI = None


def shared_pki():
    """The TestPKI every Dovecot of this process uses, made on first use in
    a temp dir removed at exit. Making a CA and a server certificate runs
    openssl three times (~0.3 s idle, over 1 s on a loaded machine); a test
    file starts one Dovecot per test class, and each made its own. A cert
    kind is issued once, when a bed first asks for it."""
    global _SHARED_PKI
    if _SHARED_PKI is None:
        d = tempfile.mkdtemp(prefix="mailsync-pki-")
        os.chmod(d, 0o755)     # login processes may run as another user
        if not keep_tmp():
            atexit.register(shutil.rmtree, d, True)
        _SHARED_PKI = TestPKI(d)
    return _SHARED_PKI


# ----------------------------------------------------------------------------
# The mail user that owns the server's Maildirs

def mail_owner():
    """(uid, gid, name) the server's mail belongs to. As root: the system user
    'mailsync-test' (created if missing; Dovecot refuses uid 0 for mail).
    Otherwise the current user."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name
    for attempt in range(10):
        try:
            pw = pwd.getpwnam(MAIL_USER_NAME)
            break
        except KeyError:
            pass
        # Parallel test processes may race here: "already exists" and "cannot
        # lock /etc/passwd" both mean: look again shortly.
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        MAIL_USER_NAME], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.1 * attempt)
    else:
        pw = pwd.getpwnam("nobody")    # useradd unusable (e.g. read-only /etc)
    return pw.pw_uid, pw.pw_gid, pw.pw_name


# ----------------------------------------------------------------------------
# Dovecot

@dataclasses.dataclass
class User:
    name: str
    password: str


_LIVE = set()          # Dovecot and Proxy instances to stop at exit


def _stop_all():
    for obj in list(_LIVE):
        try:
            obj.stop()
        except Exception:
            pass


atexit.register(_stop_all)
if threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    # Turn SIGTERM into SystemExit so atexit stops our servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


# The folders the test Dovecot marks with a SPECIAL-USE role (when they exist).
# \\Trash is on "Deleted Items" (Outlook's name), so that a test can tell a
# folder found by its role from one found by the name "Trash".
SPECIAL_USE = (("Drafts", "Drafts"), ("Sent", "Sent"), ("Junk", "Junk"), ("Deleted Items", "Trash"),
               ("Archive", "Archive"))


class Dovecot:
    """A private Dovecot on 127.0.0.1.

    Dovecot(users=None, pool=40, cert="good", imap_capability=None,
            hide_capabilities=(), ssl=True, extra_conf="", debug=False,
            workdir=None, zlib=False, reuse=True)

    users: {name: password}; default {"alice": "secret"}. Additionally
    `pool` users u001.. (password "pw-u001", ...) are handed out by
    fresh_user() so each test gets an empty mailbox on a shared server.
    zlib=True loads the zlib and imap_zlib plugins: the server offers
    COMPRESS=DEFLATE after login. reuse=True: login and mail processes
    serve one connection after another (cheap logins, see _write_config);
    reuse=False keeps Dovecot's defaults, a fresh process each (the
    benchmark's "default" server profile).

    After start(): host, imap_port (plain, STARTTLS offered), imaps_port,
    pop3_port (STLS offered), pop3s_port, ca_file, cert_file, fingerprint,
    pki (TestPKI: shared_pki(), one per process), log_path, dir.
    """

    def __init__(self, users=None, pool=40, cert="good", imap_capability=None,
                 hide_capabilities=(), ssl=True, extra_conf="", debug=False, workdir=None,
                 zlib=False, reuse=True):
        if not os.path.exists(DOVECOT_BIN):
            raise RuntimeError("dovecot not found at %s: install dovecot-imapd and "
                               "dovecot-pop3d (the integration tests need it)" % DOVECOT_BIN)
        self.users = dict(users) if users else {"alice": "secret"}
        self._pool = ["u%03d" % i for i in range(1, pool + 1)]
        for u in self._pool:
            self.users.setdefault(u, "pw-" + u)
        self._pool_next = 0
        self.cert_kind = cert
        self.imap_capability = imap_capability
        self.hide_capabilities = tuple(c.upper() for c in hide_capabilities)
        self.ssl = ssl
        self.extra_conf = extra_conf
        self.zlib = zlib
        self.reuse = reuse
        self.debug = debug
        self.host = HOST
        self.proc = None
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mailsync-dovecot-"))
        # Login and mail processes run as other users and must traverse it.
        os.chmod(self.dir, 0o755)
        self.mail_uid, self.mail_gid, self.mail_user = mail_owner()
        self.pki = shared_pki()
        self.ca_file = self.pki.ca_file
        self.imap_port = self.imaps_port = self.pop3_port = self.pop3s_port = None
        self.log_path = self.dir / "dovecot.log"
        self.conf_path = self.dir / "dovecot.conf"
        self.home_root = self.dir / "home"
        self.home_root.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.home_root, self.mail_uid, self.mail_gid)
        os.chmod(self.home_root, 0o755)

    # -- configuration -------------------------------------------------------

    @property
    def cert_file(self):
        return str(self.pki.server_cert(self.cert_kind)[0])

    @property
    def fingerprint(self):
        """sha256 fingerprint of the certificate currently served."""
        return cert_fingerprint(self.cert_file)

    @property
    def other_ca_file(self):
        """ca_file of an unrelated CA: verification against it must fail."""
        return str(self.pki.other_ca.cert)

    def _write_passwd(self):
        lines = ["%s:{PLAIN}%s::::::\n" % (u, p) for u, p in self.users.items()]
        tmp = self.dir / "passwd.tmp"
        tmp.write_text("".join(lines))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.dir / "passwd")

    def _write_config(self):
        cert, key = self.pki.server_cert(self.cert_kind)
        uid, gid = self.mail_uid, self.mail_gid
        root = os.geteuid() == 0
        me = pwd.getpwuid(os.getuid()).pw_name
        mygroup = grp.getgrgid(os.getgid()).gr_name
        lines = [
            "# generated by tests/integration/testbed.py",
            "instance_name = mailsync-test-%d-%s" % (os.getpid(), self.dir.name),
            "base_dir = %s/run" % self.dir,
            "state_dir = %s/state" % self.dir,
            "log_path = %s" % self.log_path,
            "info_log_path = %s" % self.log_path,
            "debug_log_path = %s" % self.log_path,
            "listen = 127.0.0.1",
            "protocols = imap pop3",
            "ssl = %s" % ("yes" if self.ssl else "no"),
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            "auth_failure_delay = 0",
            "mail_location = maildir:~/Maildir:LAYOUT=fs:UTF-8",
            "mail_fsync = never",
            "mail_max_userip_connections = 200",
            "first_valid_uid = %d" % uid,
            "last_valid_uid = 0",
            "first_valid_gid = %d" % gid,
            "shutdown_clients = yes",
            "namespace inbox {",
            "  inbox = yes",
            "  separator = /",
            "  prefix =",
            # SPECIAL-USE (RFC 6154) roles, as Debian's default config sets
            # them; the folders are not created (auto = no).
            *["  mailbox \"%s\" {\n    special_use = \\%s\n  }" % (box, role)
              for box, role in SPECIAL_USE],
            "}",
            "passdb {",
            "  driver = passwd-file",
            "  args = scheme=PLAIN %s/passwd" % self.dir,
            "}",
            "userdb {",
            "  driver = static",
            "  args = uid=%d gid=%d home=%s/%%u" % (uid, gid, self.home_root),
            "}",
            "pop3_uidl_format = %08Xu%08Xv",
        ]
        if self.ssl:
            lines += ["ssl_cert = <%s" % cert, "ssl_key = <%s" % key]
            if os.path.exists("/usr/share/dovecot/dh.pem"):
                lines.append("ssl_dh = </usr/share/dovecot/dh.pem")
        if not root:
            # Running unprivileged: every service runs as us, nothing chroots.
            lines += ["default_internal_user = %s" % me,
                      "default_internal_group = %s" % mygroup,
                      "default_login_user = %s" % me]
        imap_listeners = ["  inet_listener imap {", "    address = 127.0.0.1",
                          "    port = %d" % self.imap_port, "  }"]
        pop3_listeners = ["  inet_listener pop3 {", "    address = 127.0.0.1",
                          "    port = %d" % self.pop3_port, "  }"]
        if self.ssl:
            imap_listeners += ["  inet_listener imaps {", "    address = 127.0.0.1",
                               "    port = %d" % self.imaps_port, "    ssl = yes", "  }"]
            pop3_listeners += ["  inet_listener pop3s {", "    address = 127.0.0.1",
                               "    port = %d" % self.pop3s_port, "    ssl = yes", "  }"]
        else:
            imap_listeners += ["  inet_listener imaps {", "    port = 0", "  }"]
            pop3_listeners += ["  inet_listener pop3s {", "    port = 0", "  }"]
        # service_count = 0 (process reuse): by default every connection
        # starts a fresh imap-login and a fresh imap process, each reading
        # the config and setting up TLS anew: ~50 ms of CPU per login, and
        # the tests log in thousands of times (mostly to look at the
        # server between runs). Login processes serving many connections
        # and mail processes serving one client after another (every user
        # has the one mail uid) make it ~7 ms; a session still has its
        # imap or pop3 process to itself (client_limit 1).
        reuse = ["  service_count = 0"] if self.reuse else []
        lines += ["service imap-login {", "  chroot =", *reuse, *imap_listeners, "}",
                  "service pop3-login {", "  chroot =", *reuse, *pop3_listeners, "}",
                  "service pop3 {", *reuse, "}",
                  # No auth penalty: Dovecot delays each login after a
                  # failed one from the same IP (2, 4, 8, up to 15 s), so a
                  # test running wrong-password cases back to back waited
                  # ~4.5 s per run (auth_failure_delay = 0 does not cover
                  # it). Without this listener the auth process keeps no
                  # penalty; the failure and its reply are unchanged.
                  "service anvil {", "  chroot =",
                  "  unix_listener anvil-auth-penalty {", "    mode = 0", "  }", "}",
                  "service imap {", "  process_limit = 200", *reuse, "}"]
        cap = self.imap_capability
        if cap is None and self.hide_capabilities and getattr(self, "_default_caps", None):
            cap = " ".join(c for c in self._default_caps
                           if c.upper() not in self.hide_capabilities
                           and c.split("=")[0].upper() not in self.hide_capabilities)
        if cap:
            lines.append("imap_capability = %s" % cap)
        if self.zlib:
            lines += ["mail_plugins = $mail_plugins zlib",
                      "protocol imap {", "  mail_plugins = $mail_plugins imap_zlib", "}"]
        if self.debug:
            lines += ["auth_debug = yes", "auth_verbose = yes", "mail_debug = yes",
                      "verbose_ssl = yes"]
        if self.extra_conf:
            lines.append(self.extra_conf)
        self.conf_path.write_text("\n".join(lines) + "\n")

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        """Start Dovecot; returns self once all ports accept connections."""
        if self.proc is not None:
            return self
        if self.hide_capabilities and not getattr(self, "_default_caps", None) \
                and self.imap_capability is None:
            # Learn Dovecot's own capability list, then restart without the
            # hidden ones (keeps the list right for any Dovecot version).
            self._start_once()
            with self.imap(user=next(iter(self.users))) as c:  # any user (the bench has no alice)
                self._default_caps = c.capability_list()
            self.stop(cleanup=False)
        self._start_once()
        return self

    def _start_once(self):
        for attempt in range(3):
            if self.imap_port is None or attempt > 0:
                self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = free_ports(4)
            self._write_passwd()
            self._write_config()
            for sub in ("run", "state"):
                (self.dir / sub).mkdir(exist_ok=True)
            logf = open(self.dir / "dovecot.stderr", "ab")
            self.proc = subprocess.Popen([DOVECOT_BIN, "-F", "-c", str(self.conf_path)],
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True, preexec_fn=_set_pdeathsig)
            logf.close()
            _LIVE.add(self)
            ports = [self.imap_port, self.pop3_port]
            if self.ssl:
                ports += [self.imaps_port, self.pop3s_port]
            try:
                wait_ports(ports, proc=self.proc, what="dovecot")
                # A port that accepts is not yet a server that greets: a
                # login process waits for the auth process before it
                # greets, and once (CI at 4b2cfd9, TSan stage, loaded
                # machine) the first client got EOF instead of a
                # greeting. Wait for one; on none, start afresh.
                wait_greeting(self.imap_port, proc=self.proc)
                return
            except RuntimeError as e:
                err = e
                self.stop(cleanup=False)
                why = self.log_text() + self._stderr_text()
                if "in use" not in why and "uplicate listener" not in why \
                        and "no greeting" not in str(e):
                    break
        raise RuntimeError("dovecot did not start: %s\n--- stderr:\n%s\n--- log:\n%s" % (
            err, self._stderr_text()[-3000:], self.log_text()[-3000:]))

    def stop(self, cleanup=True):
        """Stop this Dovecot (SIGTERM to its process group, i.e. the master we
        started and its children, then SIGKILL to stragglers). cleanup=True also removes the temp dir."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                # The whole group at once: a master told alone waits ~1-6 s
                # for its children to notice.
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    # Usually ~10 ms; sometimes a child lingers and the
                    # master waits for it for seconds: don't.
                    proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # stragglers of our own group
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.wait(timeout=5)
        if cleanup:
            _LIVE.discard(self)
            if self._own_dir and not keep_tmp():
                shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self, cert=None, imap_capability=None, hide_capabilities=None):
        """Restart on the same ports and mail, optionally with another
        certificate kind (see TestPKI) or capability setting."""
        if cert is not None:
            self.cert_kind = cert
        if imap_capability is not None:
            self.imap_capability = imap_capability or None
        if hide_capabilities is not None:
            self.hide_capabilities = tuple(c.upper() for c in hide_capabilities)
        self.stop(cleanup=False)
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _stderr_text(self):
        try:
            return (self.dir / "dovecot.stderr").read_text(errors="replace")
        except OSError:
            return ""

    # -- users and clients ---------------------------------------------------

    def fresh_user(self):
        """A pool user nobody has used yet (empty mailbox)."""
        if self._pool_next >= len(self._pool):
            raise RuntimeError("user pool exhausted: create Dovecot(pool=N) with a larger N")
        name = self._pool[self._pool_next]
        self._pool_next += 1
        return User(name, self.users[name])

    def user(self, name="alice"):
        return User(name, self.users[name])

    def imap(self, user=None, timeout=60):
        """A logged-in ImapClient on the plain port (user: User or name)."""
        if user is None:
            user = self.user("alice")
        elif isinstance(user, str):
            user = self.user(user)
        c = ImapClient(self.host, self.imap_port, timeout=timeout)
        c.login(user.name, user.password)
        return c

    def pop3(self, user=None):
        """A logged-in poplib.POP3 on the plain POP3 port."""
        if user is None:
            user = self.user("alice")
        elif isinstance(user, str):
            user = self.user(user)
        p = poplib.POP3(self.host, self.pop3_port, timeout=30)
        p.user(user.name)
        p.pass_(user.password)
        return p

    def ssl_context(self):
        """A client SSLContext trusting only the test CA."""
        return ssl.create_default_context(cafile=self.ca_file)

    def server_maildir(self, user):
        """The server-side Maildir root of a user (INBOX is this dir)."""
        name = user.name if isinstance(user, User) else user
        return self.home_root / name / "Maildir"

    def seed_direct(self, user, folder, messages):
        """Bulk seeding for big corpora: write SeedMessages straight into the
        server's Maildir (Dovecot indexes them at the next SELECT). Much
        faster than APPEND; INTERNALDATE = file mtime. Folder parents are
        created as needed (they show up as \\NoSelect unless created via
        IMAP too). Only system flags survive (Dovecot keeps keywords such as
        $Forwarded elsewhere): returns the SeedMessages as stored, i.e. with
        keywords dropped, for comparisons."""
        base = self.server_maildir(user)
        path = base if folder == "INBOX" else base / folder
        uid, gid = self.mail_uid, self.mail_gid
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        # chown everything from the home dir down (root only).
        if os.geteuid() == 0:
            home = base.parent
            for dirpath, dirnames, filenames in os.walk(home):
                os.chown(dirpath, uid, gid)
        stamp = "%d.%d" % (os.getpid(), int(time.time() * 1000))
        stored = []
        for i, m in enumerate(messages):
            sysflags = tuple(f for f in m.flags if f.startswith("\\") and f.lower() != "\\recent")
            letters = flags_to_letters(sysflags)
            name = "%d.M%dP%s.testbed,S=%d:2,%s" % (m.date, i, stamp, len(m.data_lf), letters)
            sub = "cur" if letters else "new"
            if sub == "new":
                name = name.split(":2,")[0]
            fpath = path / sub / name
            with open(fpath, "wb") as f:
                f.write(m.data_lf)
            os.utime(fpath, (m.date, m.date))
            if os.geteuid() == 0:
                os.chown(fpath, uid, gid)
            stored.append(SeedMessage(m.data, sysflags, m.date))
        return stored


# ----------------------------------------------------------------------------
# IMAP client for seeding and inspection

@dataclasses.dataclass
class ServerMessage:
    uid: int
    flags: frozenset          # as the server spells them, e.g. {"\\Seen"}
    data: bytes = dataclasses.field(repr=False)   # BODY[] exactly as sent (CRLF)
    internaldate: int         # epoch seconds

    @property
    def data_lf(self):
        return self.data.replace(b"\r\n", b"\n")

    @property
    def letters(self):
        return flags_to_letters(self.flags)


_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.I)
_UID_RE = re.compile(rb"\bUID (\d+)", re.I)
_FLAGS_RE = re.compile(rb"\bFLAGS \(([^)]*)\)", re.I)
_IDATE_ITEM_RE = re.compile(rb'\bINTERNALDATE "([^"]+)"', re.I)
_LIST_RE = re.compile(rb'\((?P<flags>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$', re.I)


class ImapClient(imaplib.IMAP4):
    """imaplib.IMAP4 plus helpers. Folder names are UTF-8 str with '/'
    separators; the client encodes to modified UTF-7 and quotes them."""

    def __init__(self, host=HOST, port=143, timeout=60):
        super().__init__(host, port, timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.logout()
        except Exception:
            pass

    def capability_list(self):
        """Capabilities after login (a fresh CAPABILITY command)."""
        typ, dat = self.capability()
        self._ok(typ, dat, "CAPABILITY")
        return dat[-1].decode().split()

    @staticmethod
    def mbox(name):
        return imap_quote(mutf7_encode(name))

    def _ok(self, typ, dat, what):
        if typ != "OK":
            raise imaplib.IMAP4.error("%s failed: %s %r" % (what, typ, dat))
        return dat

    # -- folders -------------------------------------------------------------

    def list_folders(self, selectable_only=True):
        """UTF-8 names of folders (selectable ones unless told otherwise)."""
        typ, dat = self.list('""', '"*"')
        self._ok(typ, dat, "LIST")
        names = []
        i = 0
        while i < len(dat):
            item = dat[i]
            if item is None:
                i += 1
                continue
            if isinstance(item, tuple):          # name sent as a literal
                head, name = item[0], item[1]
                m = _LIST_RE.match(head)
                flags = m.group("flags") if m else b""
            else:
                m = _LIST_RE.match(item)
                if not m:
                    i += 1
                    continue
                flags = m.group("flags")
                name = m.group("name")
                if name.startswith(b'"'):
                    name = re.sub(rb'\\(.)', rb'\1', name[1:-1])
            i += 1
            if selectable_only and (b"\\noselect" in flags.lower() or b"\\nonexistent" in flags.lower()):
                continue
            names.append(mutf7_decode(name.decode("ascii")))
        return sorted(names)

    def create_folder(self, name):
        """Create a folder (and, with Dovecot, its parents)."""
        self._ok(*self.create(self.mbox(name)), "CREATE %s" % name)

    def delete_folder(self, name):
        self._ok(*self.delete(self.mbox(name)), "DELETE %s" % name)

    def rename_folder(self, old, new):
        self._ok(*self.rename(self.mbox(old), self.mbox(new)), "RENAME %s" % old)

    def status_of(self, name):
        """{'MESSAGES':n,'UIDNEXT':n,'UIDVALIDITY':n,'HIGHESTMODSEQ':n}"""
        typ, dat = self.status(self.mbox(name), "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")
        self._ok(typ, dat, "STATUS %s" % name)
        raw = dat[0] if not isinstance(dat[0], tuple) else dat[0][0] + dat[0][1]
        inner = raw[raw.rfind(b"(") + 1:raw.rfind(b")")].split()
        return {inner[i].decode().upper(): int(inner[i + 1]) for i in range(0, len(inner) - 1, 2)}

    def select_folder(self, name, readonly=False):
        typ, dat = self.select(self.mbox(name), readonly=readonly)
        self._ok(typ, dat, "SELECT %s" % name)
        return int(dat[0] or 0)

    # -- messages ------------------------------------------------------------

    def append_message(self, folder, data, flags=(), date=None):
        """APPEND raw bytes (sent unchanged: no CRLF mapping); returns the
        new UID (APPENDUID)."""
        flag_str = "(%s)" % " ".join(flags) if flags else None
        date_str = imap_date(date) if date is not None else None
        self.literal = bytes(data)
        typ, dat = self._simple_command("APPEND", self.mbox(folder), flag_str, date_str)
        self._ok(typ, dat, "APPEND to %s" % folder)
        for d in dat:
            m = _APPENDUID_RE.search(d if isinstance(d, bytes) else b"")
            if m:
                return int(m.group(2))
        raise imaplib.IMAP4.error("no APPENDUID in %r" % dat)

    def append_many(self, folder, messages):
        """Append SeedMessages; returns their UIDs."""
        return [self.append_message(folder, m.data, m.flags, m.date) for m in messages]

    def set_flags(self, folder, uids, flags, mode="+"):
        """mode '+' adds, '-' removes, '' replaces flags on the UIDs."""
        self.select_folder(folder)
        item = {"+": "+FLAGS.SILENT", "-": "-FLAGS.SILENT", "": "FLAGS.SILENT"}[mode]
        self._ok(*self.uid("STORE", uid_set(uids), item, "(%s)" % " ".join(flags)),
                 "STORE on %s" % folder)

    def expunge_uids(self, folder, uids):
        """Flag \\Deleted and UID EXPUNGE exactly these UIDs."""
        uids = list(uids)
        if not uids:
            return
        self.set_flags(folder, uids, ["\\Deleted"], "+")
        self._ok(*self.uid("EXPUNGE", uid_set(uids)), "UID EXPUNGE on %s" % folder)

    def move_uids(self, src, uids, dst):
        """Another client's move: UID MOVE exactly these UIDs of src to dst
        (RFC 6851; the server keeps INTERNALDATE, flags and keywords).
        Returns the new UIDs in dst, in the order of uids (COPYUID)."""
        uids = list(uids)
        if not uids:
            return []
        self.select_folder(src)
        self.untagged_responses.pop("OK", None)  # no COPYUID of an earlier move
        typ, dat = self._simple_command("UID", "MOVE", uid_set(uids), self.mbox(dst))
        self._ok(typ, dat, "UID MOVE %s -> %s" % (src, dst))
        for d in list(self.untagged_responses.get("OK", [])) + list(dat):
            m = re.search(rb"\[COPYUID \d+ (\S+) (\S+)\]", d if isinstance(d, bytes) else b"")
            if m:
                src_set, dst_set = _expand_uid_set(m.group(1)), _expand_uid_set(m.group(2))
                by_src = dict(zip(src_set, dst_set))
                return [by_src[u] for u in uids]
        raise imaplib.IMAP4.error("no COPYUID in the answer to UID MOVE: %r" % dat)

    def messages(self, folder):
        """[ServerMessage] of a folder, by UID, read without setting \\Seen."""
        count = self.select_folder(folder, readonly=True)
        if count == 0:
            return []
        typ, dat = self.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        self._ok(typ, dat, "FETCH in %s" % folder)
        out = []
        for i, item in enumerate(dat):
            if not isinstance(item, tuple):
                continue
            meta = item[0]
            if i + 1 < len(dat) and isinstance(dat[i + 1], bytes):
                meta += b" " + dat[i + 1]
            uid, flags, idate = _UID_RE.search(meta), _FLAGS_RE.search(meta), _IDATE_ITEM_RE.search(meta)
            if not (uid and flags and idate):
                raise imaplib.IMAP4.error("unparsable FETCH response %r" % meta)
            out.append(ServerMessage(int(uid.group(1)),
                                     frozenset(f.decode() for f in flags.group(1).split()),
                                     item[1], parse_imap_date(idate.group(1))))
        out.sort(key=lambda m: m.uid)
        return out

    def server_state(self, folders=None):
        """{folder: [ServerMessage]} for every selectable folder (or those
        given)."""
        return {f: self.messages(f) for f in (folders or self.list_folders())}


def _expand_uid_set(text):
    """b"3:5,9" -> [3, 4, 5, 9] (ranges in either direction, as sent)."""
    out = []
    for part in text.decode().split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out += list(range(a, b + 1)) if a <= b else list(range(a, b - 1, -1))
        else:
            out.append(int(part))
    return out


def uid_set(uids):
    """Compact IMAP sequence set from an iterable of ints."""
    uids = sorted(set(int(u) for u in uids))
    parts, start, prev = [], None, None
    for u in uids:
        if start is None:
            start = prev = u
        elif u == prev + 1:
            prev = u
        else:
            parts.append("%d:%d" % (start, prev) if start != prev else str(start))
            start = prev = u
    if start is not None:
        parts.append("%d:%d" % (start, prev) if start != prev else str(start))
    return ",".join(parts)


# ----------------------------------------------------------------------------
# Flags <-> Maildir letters (the contract's table)

FLAG_LETTERS = {"\\draft": "D", "\\flagged": "F", "$forwarded": "P",
                "\\answered": "R", "\\seen": "S", "\\deleted": "T"}
LETTER_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "P": "$Forwarded",
                "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}


def flags_to_letters(flags):
    """Server flags -> sorted Maildir letters; unmapped keywords and \\Recent
    are ignored."""
    return "".join(sorted({FLAG_LETTERS[f.lower()] for f in flags if f.lower() in FLAG_LETTERS}))


def letters_to_flags(letters):
    return tuple(LETTER_FLAGS[c] for c in letters if c in LETTER_FLAGS)


# ----------------------------------------------------------------------------
# Deterministic message generator

@dataclasses.dataclass
class SeedMessage:
    data: bytes = dataclasses.field(repr=False)   # CRLF (what the server will send)
    flags: tuple = ()
    date: int = 1700000000     # INTERNALDATE, epoch seconds

    @property
    def data_lf(self):
        return self.data.replace(b"\r\n", b"\n")


_WORDS = ("mail sync maildir imap server folder message flag state lock crash "
          "offline backup mirror quota header body reply forward draft seen answered "
          "pipeline literal token cache network socket durable rename fsync").split()
_NAMES = ["Alice Archer", "Bob Baker", "Carol Chen", "Dũng Nguyễn", "Eve Évrard", "Frank Fox"]

KINDS = ("plain", "multipart", "8bit", "nonl", "html", "headeronly")


def make_message(n, size=2000, kind="plain", subject=None, date=None, seed=0):
    """A deterministic RFC 5322 message (bytes, CRLF) numbered n.

    kind: plain | multipart (text + base64 attachment) | 8bit (UTF-8 body,
    Content-Transfer-Encoding: 8bit) | nonl (no trailing newline) | html |
    headeronly (headers, blank line, empty body). size is the approximate
    total size in bytes (at least the headers)."""
    rng = random.Random("%s/%s/%s" % (seed, n, kind))
    date = 1700000000 - n * 3600 if date is None else date
    sender = rng.choice(_NAMES)
    to = rng.choice(_NAMES)
    subj = subject or "Test message %d: %s %s" % (n, rng.choice(_WORDS), rng.choice(_WORDS))
    msgid = "<%d.%d.%s@testbed.mailsync>" % (seed, n, kind)

    def addr(name):
        local = name.split()[0].lower().encode("ascii", "ignore").decode() or "user"
        return "%s@example.org" % local

    def hdr_name(name):
        if all(ord(c) < 128 for c in name):
            return '"%s" <%s>' % (name, addr(name))
        enc = base64.b64encode(name.encode()).decode()
        return "=?UTF-8?B?%s?= <%s>" % (enc, addr(name))

    headers = [
        "Return-Path: <%s>" % addr(sender),
        "From: %s" % hdr_name(sender),
        "To: %s" % hdr_name(to),
        "Subject: %s" % subj,
        "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(date)),
        "Message-ID: %s" % msgid,
        "MIME-Version: 1.0",
    ]

    def text(nbytes, utf8=False):
        words = _WORDS + (["tiếng", "Việt", "grüße", "naïve", "日本語"] if utf8 else [])
        lines, cur, total = [], [], 0
        while total < nbytes:
            w = rng.choice(words)
            cur.append(w)
            total += len(w.encode()) + 1
            if len(cur) >= 12:
                lines.append(" ".join(cur))
                cur = []
        if cur:
            lines.append(" ".join(cur))
        return "\r\n".join(lines or ["(empty)"])

    head_len = sum(len(h) + 2 for h in headers) + 2
    room = max(size - head_len - 120, 16)
    if kind in ("plain", "nonl"):
        headers.append("Content-Type: text/plain; charset=us-ascii")
        body = "Hello %s,\r\n\r\n%s\r\n\r\n-- \r\n%s\r\n" % (to, text(room), sender)
        if kind == "nonl":
            body = body.rstrip("\r\n")
    elif kind == "8bit":
        headers += ["Content-Type: text/plain; charset=utf-8",
                    "Content-Transfer-Encoding: 8bit"]
        body = "Chào %s,\r\n\r\n%s\r\n" % (to, text(room, utf8=True))
    elif kind == "html":
        headers.append("Content-Type: text/html; charset=us-ascii")
        body = "<html><body><p>%s</p></body></html>\r\n" % text(room).replace("\r\n", "</p>\r\n<p>")
    elif kind == "headeronly":
        body = ""
    elif kind == "multipart":
        boundary = "=_testbed_%d_%d" % (seed, n)
        headers.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
        blob = bytes(rng.getrandbits(8) for _ in range(max(room * 3 // 4 - 300, 16)))
        b64 = base64.encodebytes(blob).decode().replace("\n", "\r\n")
        body = ("This is a multi-part message in MIME format.\r\n\r\n"
                "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                "See the attachment, %s.\r\n\r\n"
                "--%s\r\nContent-Type: application/octet-stream; name=\"data-%d.bin\"\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment; filename=\"data-%d.bin\"\r\n\r\n"
                "%s\r\n--%s--\r\n") % (boundary, to, boundary, n, n, b64, boundary)
    else:
        raise ValueError("unknown kind %r" % kind)
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8")


_FLAG_CHOICES = [(), ("\\Seen",), ("\\Seen",), ("\\Seen", "\\Answered"), ("\\Flagged",),
                 ("\\Seen", "\\Flagged"), ("\\Draft",), ("\\Seen", "$Forwarded"),
                 ("\\Seen", "\\Deleted"), ("\\Seen", "$Label1")]


def make_corpus(count, seed=0, size=2000, kinds=KINDS, flags=True, start=0,
                base_date=1700000000):
    """count SeedMessages numbered start.. with varied kinds, flags and
    INTERNALDATEs (one hour apart going back from base_date, with odd
    seconds). flags=False: all unflagged. size: int, or (min, max)."""
    rng = random.Random("corpus/%s" % seed)
    out = []
    for n in range(start, start + count):
        kind = kinds[n % len(kinds)]
        sz = size if isinstance(size, int) else rng.randint(size[0], size[1])
        date = base_date - n * 3600 - rng.randint(0, 59)
        data = make_message(n, size=sz, kind=kind, seed=seed, date=date)
        fl = _FLAG_CHOICES[rng.randrange(len(_FLAG_CHOICES))] if flags else ()
        out.append(SeedMessage(data, tuple(fl), date))
    return out


SAMPLE_FOLDERS = ("INBOX", "Archive", "Archive/2024", "Thư đã gửi", "Work/Projects/mailsync")


def seed_sample(client, per_folder=8, seed=1, size=(600, 6000)):
    """Seed the standard sample: folders of SAMPLE_FOLDERS (nested, non-ASCII)
    with per_folder messages each. Returns {folder: [uid]}."""
    uids = {}
    start = 0
    for folder in SAMPLE_FOLDERS:
        if folder != "INBOX":
            client.create_folder(folder)
        msgs = make_corpus(per_folder, seed=seed, size=size, start=start)
        start += per_folder
        uids[folder] = client.append_many(folder, msgs)
    return uids


SAMPLE_DIR = REPO_ROOT / "contrib" / "demo" / "sample"


def sample_eml():
    """The hand-written messages of contrib/demo/sample/*.eml as CRLF bytes
    (sorted by file name)."""
    out = []
    for p in sorted(SAMPLE_DIR.glob("*.eml")):
        data = p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out.append(data)
    return out


# ----------------------------------------------------------------------------
# Local Maildir reading and comparison

@dataclasses.dataclass
class LocalMessage:
    folder: str
    subdir: str        # "new" or "cur"
    name: str
    uniq: str
    letters: str       # info letters after ":2," ("" if none)
    data: bytes = dataclasses.field(repr=False)
    mtime: float
    path: str


def parse_maildir_name(name):
    """'<uniq>:2,<letters>' -> (uniq, letters); without info -> (name, '')."""
    if ":2," in name:
        uniq, info = name.rsplit(":2,", 1)
        return uniq, info
    return name, ""


def is_maildir(path):
    return all(os.path.isdir(os.path.join(path, d)) for d in ("cur", "new", "tmp"))


def local_folder_path(root, folder, layout="verbatim"):
    """Where the contract puts a server folder locally."""
    if layout == "verbatim":
        return os.path.join(root, *folder.split("/"))
    if layout == "dotted":   # OfflineIMAP's default: a '.' in a name is %2E
        return os.path.join(root, ".".join(c.replace("%", "%25").replace(".", "%2E")
                                           for c in folder.split("/")))
    if folder == "INBOX":
        return str(root)
    return os.path.join(root, "." + folder.replace("/", "."))


def message_files(root):
    """Paths of every message file (in a cur/ or new/) under root."""
    out = []
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) in ("cur", "new"):
            out += [os.path.join(dirpath, f) for f in files]
    return out


def read_maildir(root, layout="verbatim"):
    """{folder: [LocalMessage]} for every Maildir under root. verbatim:
    folder = path relative to root ('Archive/2024', 'INBOX'); maildir++: root
    is INBOX and '.A.B' is 'A/B'; dotted: 'A.B' at the top is 'A/B' (and
    'a%2Eb' is 'a.b')."""
    root = str(root)
    result = {}
    if not os.path.isdir(root):
        return result
    folders = []
    if layout == "verbatim":
        for dirpath, dirnames, _ in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not (
                d in ("cur", "new", "tmp") and is_maildir(dirpath)))
            if dirpath != root and is_maildir(dirpath):
                folders.append((os.path.relpath(dirpath, root), dirpath))
    elif layout == "dotted":
        for d in sorted(os.listdir(root)):
            if not d.startswith(".") and d not in ("cur", "new", "tmp") and is_maildir(os.path.join(root, d)):
                name = "/".join(urllib.parse.unquote(c) for c in d.split("."))
                folders.append((name, os.path.join(root, d)))
    else:
        if is_maildir(root):
            folders.append(("INBOX", root))
        for d in sorted(os.listdir(root)):
            if d.startswith(".") and d not in (".", "..") and is_maildir(os.path.join(root, d)):
                folders.append((d[1:].replace(".", "/"), os.path.join(root, d)))
    for folder, path in folders:
        msgs = []
        for sub in ("new", "cur"):
            for name in sorted(os.listdir(os.path.join(path, sub))):
                if name.startswith("."):
                    continue
                fp = os.path.join(path, sub, name)
                if not os.path.isfile(fp):
                    continue
                uniq, letters = parse_maildir_name(name)
                with open(fp, "rb") as f:
                    data = f.read()
                msgs.append(LocalMessage(folder, sub, name, uniq, letters, data,
                                         os.stat(fp).st_mtime, fp))
        result[folder] = msgs
    return result


def compare_maildir(root, server_state, layout="verbatim", check_mtime=True,
                    check_flags=True, allow_extra_messages=False, allow_extra_folders=False,
                    folders=None):
    """The contract's check: every server message present exactly once in
    the right folder, content == server bytes with CRLF->LF, flags mapped to
    letters, file mtime == INTERNALDATE; no extra messages or folders.
    Returns a list of problems (empty = in sync)."""
    local = read_maildir(root, layout)
    problems = []
    names = folders if folders is not None else list(server_state)
    for folder in names:
        smsgs = server_state.get(folder, [])
        if folder not in local:
            problems.append("folder %r missing locally (expected at %s)" % (
                folder, local_folder_path(root, folder, layout)))
            continue
        by_content = collections.defaultdict(list)
        for lm in local[folder]:
            by_content[lm.data].append(lm)
            if len(lm.uniq) == 0 or "/" in lm.uniq:
                problems.append("%s: bad file name %r" % (folder, lm.name))
            if lm.letters != "".join(sorted(set(lm.letters))):
                problems.append("%s/%s: info letters not sorted/unique" % (folder, lm.name))
        for sm in smsgs:
            want = sm.data_lf
            cands = by_content.get(want, [])
            if not cands:
                problems.append("%s: UID %d missing locally (%d bytes, Message-ID %s)" % (
                    folder, sm.uid, len(want), message_id(sm.data)))
                continue
            lm = cands.pop(0)
            if check_flags and lm.letters != sm.letters:
                problems.append("%s: UID %d flags %r locally, server has %s (%r)" % (
                    folder, sm.uid, lm.letters, sorted(sm.flags), sm.letters))
            if check_flags and lm.subdir == "new" and "S" in sm.letters:
                problems.append("%s: UID %d is \\Seen but in new/" % (folder, sm.uid))
            if check_mtime and int(lm.mtime) != sm.internaldate:
                problems.append("%s: UID %d mtime %d != INTERNALDATE %d" % (
                    folder, sm.uid, int(lm.mtime), sm.internaldate))
        if not allow_extra_messages:
            for rest in by_content.values():
                for lm in rest:
                    problems.append("%s: extra local message %s (Message-ID %s)" % (
                        folder, lm.path, message_id(lm.data)))
    if not allow_extra_folders and folders is None:
        for folder in local:
            if folder not in server_state and local[folder]:
                problems.append("extra local folder %r with %d messages" % (folder, len(local[folder])))
    return problems


def assert_maildir_matches(root, server_state, **kw):
    """compare_maildir(); raise AssertionError listing (up to 40) problems."""
    problems = compare_maildir(root, server_state, **kw)
    if problems:
        more = "" if len(problems) <= 40 else "\n... and %d more" % (len(problems) - 40)
        raise AssertionError("Maildir %s differs from the server (%d problems):\n  %s%s" % (
            root, len(problems), "\n  ".join(problems[:40]), more))


_MSGID_RE = re.compile(rb"^Message-ID:\s*(\S+)", re.I | re.M)


def message_id(data):
    m = _MSGID_RE.search(data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0])
    return m.group(1).decode(errors="replace") if m else "(none)"


def snapshot_tree(root, dir_mtimes=False):
    """{relative path: (inode, mtime_ns, size)} of every file and directory
    under root: two equal snapshots mean no file was written, renamed,
    replaced or removed. Directory mtimes are left out unless dir_mtimes
    (a lock or temp file created and removed again would change them)."""
    snap = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            snap[os.path.relpath(p, root) + "/"] = (st.st_ino, st.st_mtime_ns if dir_mtimes else 0, 0)
        for n in filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            snap[os.path.relpath(p, root)] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return snap


def count_messages(root):
    """Number of message files in new/ and cur/ of all Maildirs under root
    (cheap: no reading; for crash tests polling progress)."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(str(root)):
        base = os.path.basename(dirpath)
        if base in ("new", "cur"):
            n += sum(1 for f in filenames if not f.startswith("."))
    return n


# ----------------------------------------------------------------------------
# Config files and running the binary

def _ini_value(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def write_config(path, accounts, file_mode=0o600):
    """Write an INI config: accounts = {name: {key: value}} (values str, int
    or bool -> yes/no; a value None omits the key). File mode 0600 unless
    file_mode says otherwise. Returns the path (str)."""
    lines = ["# written by tests/integration/testbed.py"]
    for name, keys in accounts.items():
        lines.append("")
        lines.append("[account %s]" % name)
        for k, v in keys.items():
            if v is not None:
                lines.append("%s = %s" % (k, _ini_value(v)))
    path = str(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, file_mode)
    return path


def account_keys(bed, login, maildir, state, tls="implicit", host=HOST, **extra):
    """Config keys of an IMAP account on `bed` for `login` (a User). tls:
    implicit (port imaps), starttls (port imap), none (port imap). extra
    keys are added/override, e.g. user=..., password=... (None removes a
    key)."""
    port = bed.imaps_port if tls == "implicit" else bed.imap_port
    keys = {"host": host, "port": port, "tls": tls, "user": login.name,
            "password": login.password, "ca_file": bed.ca_file,
            "maildir": str(maildir), "state": str(state)}
    keys.update(extra)
    return {k: v for k, v in keys.items() if v is not None}


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "AddressSanitizer:DEADLYSIGNAL",
                     "WARNING: ThreadSanitizer")


class SanitizerError(AssertionError):
    pass


# --json: every document the program prints follows this schema (the
# documented contract, contrib/json/mailsync.schema.json); Result.json()
# and test_json check each one they see against it.
JSON_SCHEMA_PATH = REPO_ROOT / "contrib" / "json" / "mailsync.schema.json"
_json_validator = None


def json_schema_errors(doc):
    """The ways doc breaks the --json schema, as text lines ([] when it
    follows it). Needs python3-jsonschema (draft 2020-12)."""
    global _json_validator
    if _json_validator is None:
        import jsonschema
        schema = json.loads(JSON_SCHEMA_PATH.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        _json_validator = jsonschema.Draft202012Validator(schema)
    out = []
    for e in _json_validator.iter_errors(doc):
        # oneOf over the documents: say why each candidate failed
        causes = sorted(e.context, key=lambda c: len(c.absolute_path), reverse=True)[:6] if e.context else []
        out.append("%s: %s" % ("/".join(map(str, e.absolute_path)) or "(document)", e.message[:300]))
        out += ["  %s: %s" % ("/".join(map(str, c.absolute_path)) or "(document)", c.message[:300]) for c in causes]
    return out


def assert_json_schema(doc, what=""):
    """Raise AssertionError unless doc follows the --json schema."""
    errors = json_schema_errors(doc)
    if errors:
        raise AssertionError("JSON document breaks %s%s:\n%s\n%s" % (
            JSON_SCHEMA_PATH.name, " (%s)" % what if what else "", "\n".join(errors),
            json.dumps(doc)[:3000]))


@dataclasses.dataclass
class Result:
    args: list
    code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self):
        """stdout parsed as exactly one JSON object, which must follow
        the --json schema."""
        doc = json.loads(self.stdout)
        assert_json_schema(doc, "mailsync " + " ".join(self.args))
        return doc

    def __str__(self):
        return "mailsync %s -> exit %s in %.1fs\n--- stdout:\n%s\n--- stderr:\n%s" % (
            " ".join(self.args), self.code, self.seconds, self.stdout[-4000:], self.stderr[-4000:])


def mailsync_env(workdir=None, extra=None):
    """Environment for the binary: ours minus MAILSYNC_CONFIG, with XDG dirs
    pointed into workdir so nothing lands in the real home."""
    env = dict(os.environ)
    env.pop("MAILSYNC_CONFIG", None)
    if workdir is not None:
        for var, sub in (("XDG_CONFIG_HOME", "xdg-config"), ("XDG_STATE_HOME", "xdg-state"),
                         ("XDG_CACHE_HOME", "xdg-cache"), ("XDG_DATA_HOME", "xdg-data")):
            env[var] = os.path.join(str(workdir), sub)
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:exitcode=86")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=87")
    if extra:
        env.update(extra)
    return env


def _check_binary():
    b = mailsync_bin()
    if not os.access(b, os.X_OK):
        raise RuntimeError("mailsync binary not found at %s (set MAILSYNC_BIN)" % b)
    return b


def run_mailsync(args, config=None, timeout=120, env=None, workdir=None, input=None):
    """Run `mailsync [-c config] args...`; returns Result. Raises
    SanitizerError if ASan/UBSan reported anything, TimeoutError (after
    killing it) on timeout."""
    argv = [_check_binary()] + (["-c", str(config)] if config else []) + [str(a) for a in args]
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=env or mailsync_env(workdir),
                           input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise TimeoutError("mailsync %s did not finish in %ss\n--- stderr:\n%s" % (
            " ".join(argv[1:]), timeout, (e.stderr or b"").decode(errors="replace")[-4000:]))
    res = Result(argv[1:], r.returncode, r.stdout.decode(errors="replace"),
                 r.stderr.decode(errors="replace"), time.monotonic() - t0)
    if any(m in res.stderr for m in SANITIZER_MARKERS):
        raise SanitizerError("sanitizer report:\n%s" % res)
    return res


def start_mailsync(args, config=None, env=None, workdir=None):
    """Start mailsync in the background (stdout/stderr to temp files, read
    them with finish_mailsync). Returns the Popen; its .out_path/.err_path
    attributes name the files."""
    argv = [_check_binary()] + (["-c", str(config)] if config else []) + [str(a) for a in args]
    out = tempfile.NamedTemporaryFile(prefix="mailsync-out-", delete=False)
    err = tempfile.NamedTemporaryFile(prefix="mailsync-err-", delete=False)
    p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                         env=env or mailsync_env(workdir))
    out.close()
    err.close()
    p.out_path, p.err_path, p.argv, p.t0 = out.name, err.name, argv, time.monotonic()
    return p


def finish_mailsync(p, timeout=120):
    """Wait for a start_mailsync() process (kill it on timeout) -> Result."""
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    res = Result(p.argv[1:], p.returncode, Path(p.out_path).read_text(errors="replace"),
                 Path(p.err_path).read_text(errors="replace"), time.monotonic() - p.t0)
    for f in (p.out_path, p.err_path):
        try:
            os.unlink(f)
        except OSError:
            pass
    if any(m in res.stderr for m in SANITIZER_MARKERS):
        raise SanitizerError("sanitizer report:\n%s" % res)
    return res


# ----------------------------------------------------------------------------
# A loopback TCP proxy for slow, stalled and cut connections

class Proxy:
    """Forward 127.0.0.1:<port> -> (target_host, target_port).

    delay: seconds to sleep before forwarding each server->client chunk of
    at most `chunk` bytes (throttling). cut_after: close both sides once this
    many server->client bytes went through (per connection; with cut_only=k
    only in the k-th connection, counted from 1). pause()/resume()
    stall the server->client direction. Counters: connections, bytes_down,
    bytes_up, down_per_connection (server->client bytes of each connection,
    in the order they came); record=True also keeps the raw bytes (upstream: client->server,
    downstream: server->client) to check, e.g., that no password was sent,
    and their order across both directions (transcript).
    delay/cut_after may be changed while running. stall_on=(pattern, n): once
    the client has sent pattern n times, that chunk and everything after it
    is held back from the server (self.stalled is set), so the client
    waits for an answer that does not come, at a known point.
    rewrite_down: a factory called once per connection that returns a
    callable(bytes) -> bytes applied to each server->client chunk before it
    is forwarded (it may hold bytes back and send them with a later chunk).
    latency: seconds each chunk takes to arrive, in both directions (a
    network's one-way delay, so a round trip costs 2 * latency; chunks stay
    pipelined: one sent while another is in flight is not held up by it).
    The TCP handshake's own round trip is not added. With latency the
    other options but the counters do not apply.
    Use as a context manager or start()/stop()."""

    def __init__(self, target_port, target_host=HOST, delay=0.0, chunk=16384, cut_after=None,
                 record=False, stall_on=None, rewrite_down=None, latency=0.0, cut_only=None):
        self.cut_only = cut_only
        self.down_per_connection = []
        self.latency = latency
        self.stall_on = stall_on
        self.rewrite_down = rewrite_down
        self.stalled = threading.Event()
        self._sent_up = bytearray()
        self.target = (target_host, target_port)
        self.delay, self.chunk, self.cut_after = delay, chunk, cut_after
        self.record = record
        self.upstream = bytearray()    # client->server bytes when record=True
        self.downstream = bytearray()  # server->client bytes when record=True
        # record=True: (down, bytes) per chunk in the order the proxy passed
        # them on, both directions: what was sent before what was answered
        self.transcript = []
        self.connections = self.bytes_down = self.bytes_up = 0
        self._running = threading.Event()
        self._running.set()        # set = not paused
        self._stop = False
        self._socks = set()
        self._lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        _LIVE.add(self)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def pause(self):
        self._running.clear()

    def resume(self):
        self._running.set()

    def stop(self):
        self._stop = True
        self._running.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            for s in list(self._socks):
                try:
                    s.close()
                except OSError:
                    pass
        _LIVE.discard(self)

    def _accept_loop(self):
        while not self._stop:
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
            with self._lock:
                self.connections += 1
                self.down_per_connection.append(0)
                number = self.connections
                self._socks.update((client, server))
            if self.latency:
                ends = {"left": 2, "socks": (client, server)}
                for sock in (client, server):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for src, dst, down in ((server, client, True), (client, server, False)):
                    q = queue.Queue()
                    threading.Thread(target=self._delay_in, args=(src, q, down), daemon=True).start()
                    threading.Thread(target=self._delay_out, args=(dst, q, ends), daemon=True).start()
                continue
            state = {"down": 0, "rewrite": self.rewrite_down() if self.rewrite_down else None,
                     "number": number}
            threading.Thread(target=self._pump, args=(server, client, True, state), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, False, state), daemon=True).start()

    def _delay_in(self, src, q, down):
        """Read chunks as they come, each due latency seconds later."""
        try:
            while not self._stop:
                data = src.recv(65536)
                if not data:
                    break
                if down:
                    self.bytes_down += len(data)
                else:
                    self.bytes_up += len(data)
                q.put((time.monotonic() + self.latency, data))
        except OSError:
            pass
        q.put((time.monotonic() + self.latency, None))

    def _delay_out(self, dst, q, ends):
        """Deliver each chunk when due, in order; at the end close dst's
        sending side (the other direction may still run), and both sockets
        once both directions ended."""
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
        except OSError:
            pass
        with self._lock:
            ends["left"] -= 1
            last = ends["left"] == 0
        if last:
            for sock in ends["socks"]:
                try:
                    sock.close()
                except OSError:
                    pass
                self._socks.discard(sock)

    def _pump(self, src, dst, down, state):
        try:
            while not self._stop:
                data = src.recv(self.chunk if down else 65536)
                if not data:
                    break
                if down:
                    self._running.wait()
                    if self.delay:
                        time.sleep(self.delay)
                    if self.cut_after is not None and self.cut_only in (None, state["number"]) and \
                            state["down"] + len(data) >= self.cut_after:
                        keep = self.cut_after - state["down"]
                        if keep > 0:
                            dst.sendall(data[:keep])
                        state["down"] += max(keep, 0)
                        break
                    if state["rewrite"]:
                        data = state["rewrite"](data)
                        if not data:
                            continue
                    state["down"] += len(data)
                    self.bytes_down += len(data)
                    self.down_per_connection[state["number"] - 1] += len(data)
                    if self.record:
                        with self._lock:
                            self.downstream += data
                            self.transcript.append((True, bytes(data)))
                else:
                    self.bytes_up += len(data)
                    if self.record:
                        with self._lock:
                            self.upstream += data
                            self.transcript.append((False, bytes(data)))
                    if self.stall_on is not None:
                        self._sent_up += data
                        pattern, n = self.stall_on
                        if self.stalled.is_set() or self._sent_up.count(pattern) >= n:
                            self.stalled.set()
                            continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass


def line_rewriter(per_line):
    """A Proxy rewrite_down factory working on whole lines: per_line(line)
    returns the lines to send in its place (bytes without CRLF; [] holds a
    line back, more than one sends held ones along). A partial line waits
    for its end."""
    def factory():
        buf = bytearray()

        def rewrite(data):
            buf.extend(data)
            lines = buf.split(b"\r\n")
            buf[:] = lines.pop()
            out = []
            for line in lines:
                out += per_line(line)
            return b"".join(x + b"\r\n" for x in out)
        return rewrite
    return factory


# ----------------------------------------------------------------------------
# unittest base class

class BedTestCase(unittest.TestCase):
    """One Dovecot per test class (class attribute bed_options are passed to
    Dovecot()), a fresh server user and a fresh work dir per test.

    Per test: self.user (User), self.work (Path), self.maildir
    (work/Mail), self.state (work/state.sqlite), self.config_path
    (work/config). Helpers: write_config(**keys), mailsync(*args),
    pull(*args, expect=0), imap(), server_state(), assertSynced(...)."""

    bed_options = {}
    account = "test"
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bed = Dovecot(**cls.bed_options)
        cls.addClassCleanup(cls.bed.stop)
        cls.bed.start()

    def setUp(self):
        self.user = self.bed.fresh_user()
        self.work = Path(tempfile.mkdtemp(prefix="mailsync-test-"))
        if not keep_tmp():
            self.addCleanup(shutil.rmtree, self.work, True)
        self.maildir = self.work / "Mail"
        self.state = self.work / "state.sqlite"
        self.config_path = self.work / "config"
        self.write_config()

    def account_keys(self, **keys):
        return account_keys(self.bed, self.user, self.maildir, self.state, **keys)

    def write_config(self, file_mode=0o600, **keys):
        """(Re)write the config for account self.account; keys override the
        defaults of account_keys() (tls=..., mode=..., None drops a key)."""
        return write_config(self.config_path, {self.account: self.account_keys(**keys)},
                            file_mode=file_mode)

    def mailsync(self, *args, timeout=120, config=None):
        return run_mailsync(list(args), config=config or self.config_path,
                            timeout=timeout, workdir=self.work)

    def run_ok(self, *args, expect=0, timeout=120):
        """Run mailsync and assert its exit code (default 0)."""
        r = self.mailsync(*args, timeout=timeout)
        self.assertEqual(r.code, expect, "unexpected exit code\n%s" % r)
        return r

    def pull(self, *args, expect=0, timeout=120):
        return self.run_ok("pull", *args, expect=expect, timeout=timeout)

    def imap(self):
        return self.bed.imap(self.user)

    def server_state(self):
        with self.imap() as c:
            return c.server_state()

    def server_count(self, folder="INBOX"):
        """How many messages the server's folder holds."""
        with self.imap() as c:
            return len(c.messages(folder))

    def add_local_new(self, n, seed, size=3000):
        """n corpus messages written into the local INBOX's new/ (LF line
        ends, names 1700000000.upNNN.host), for a push to upload."""
        inbox = Path(local_folder_path(self.maildir, "INBOX", "verbatim"))
        for k, m in enumerate(make_corpus(n, seed=seed, size=size, flags=False)):
            (inbox / "new" / ("1700000000.up%03d.host" % k)).write_bytes(m.data.replace(b"\r\n", b"\n"))

    def run_killed_at(self, command, stall_on):
        """Run `mailsync COMMAND` through a proxy that holds back from the
        server what the client sends from stall_on=(pattern, n) on (the
        config rewritten for it: plain IMAP), and SIGKILL it there, while
        it waits for the answer. Returns its Result."""
        px = Proxy(self.bed.imap_port, stall_on=stall_on).start()
        self.addCleanup(px.stop)
        self.write_config(tls="none", port=px.port)
        p = start_mailsync([command], config=self.config_path, workdir=self.work)
        try:
            self.assertTrue(px.stalled.wait(30), "kill point never reached")
            time.sleep(0.3)
            self.assertIsNone(p.poll(), "%s ended before the kill point" % command)
            os.kill(p.pid, signal.SIGKILL)
        finally:
            res = finish_mailsync(p)
        self.assertEqual(res.code, -signal.SIGKILL, "not killed: %s" % res)
        return res

    def start_stopped_at_window(self, k, *args):
        """`mailsync ARGS` with MAILSYNC_TEST_STOP_AT_WINDOW=k: the Popen once
        the process has stopped itself (SIGSTOP) as it turned to the run's
        k-th window below a top window (pull.c), nothing of that window
        listed or applied yet. The test then changes the server or kills
        it there; SIGCONT lets it go on (finish_mailsync reads its end)."""
        env = mailsync_env(self.work, {"MAILSYNC_TEST_STOP_AT_WINDOW": str(k)})
        p = start_mailsync(list(args), config=self.config_path, env=env)

        def stopped():
            try:
                with open("/proc/%d/stat" % p.pid) as f:
                    return f.read().rpartition(")")[2].split()[0] == "T"
            except OSError:
                return False
        wait_for(lambda: p.poll() is not None or stopped(), timeout=60, step=0.01)
        if p.poll() is not None:
            self.fail("ended before its window %d: %s" % (k, finish_mailsync(p)))
        return p

    def assertSynced(self, state=None, **kw):
        """Assert the local Maildir equals the server (compare_maildir)."""
        assert_maildir_matches(self.maildir, state if state is not None else self.server_state(), **kw)


if __name__ == "__main__":
    # Manual use: python3 testbed.py -> start a bed with the sample seeded
    # and wait (prints connection details) until Ctrl-C.
    with Dovecot() as bed:
        with bed.imap() as c:
            seed_sample(c)
        print("dovecot up in %s\n imap %d imaps %d pop3 %d pop3s %d\n ca_file %s\n"
              " user alice / secret\n fingerprint %s" % (
                  bed.dir, bed.imap_port, bed.imaps_port, bed.pop3_port, bed.pop3s_port,
                  bed.ca_file, bed.fingerprint))
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
