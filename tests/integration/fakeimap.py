# SPDX-License-Identifier: MIT
"""fakeimap.py: a small scriptable IMAP4rev1 server for hostile-server tests.

Python 3 stdlib only. Plaintext, 127.0.0.1, a random free port, one thread
per connection; use it as a context manager so every thread is joined and
every socket closed when the test ends.

It implements what `mailsync pull` uses: CAPABILITY, LOGIN, AUTHENTICATE
PLAIN (SASL-IR and continuation), LIST, STATUS, EXAMINE/SELECT, UID FETCH
(sets, ranges, '*'; items UID FLAGS RFC822.SIZE INTERNALDATE BODY[] and
BODY.PEEK[...] including HEADER.FIELDS), UID SEARCH (ALL, UID set), ENABLE,
NOOP, CHECK, UNSELECT, CLOSE, LOGOUT. Changing commands (STORE, EXPUNGE,
APPEND, COPY, MOVE, CREATE, DELETE, RENAME) are recorded and refused with NO:
the server is read-only, a pull must never send them.

Every command received is recorded in `server.commands` (Command objects:
connection number, tag, name such as "UID FETCH", parsed args, raw line) so
tests can assert what a client did or did not send.

Misbehaviour is scripted with plain attributes, which a test may change
between runs (each mailsync run is one connection):

  list_lines      None, or a list of raw LIST response lines (bytes, without
                  the final CRLF; may embed literals) sent instead of the
                  generated ones.
  extra_list_lines  raw lines sent after the generated LIST lines.
  tagged_text     {command name: text} replaces "OK <name> completed" of
                  that command's tagged reply (e.g. "OK [APPENDUID 1 2] hi");
                  the value may be a callable(cmd) -> text or None.
  before_tagged   {command name: bytes or callable(cmd) -> bytes} raw bytes
                  sent just before the tagged reply.
  after_tagged    the same, sent just after the tagged reply.
  mid_fetch       a list of MidFetch: during a FETCH matching `when`, after
                  `after` FETCH responses, send `data`, then `pad` filler
                  bytes, then either go on (close=False) or close the
                  connection (close=True).
  fetch_extra_items  bytes or callable(cmd, msg) -> bytes inserted into each
                  FETCH response's item list (unrequested data).
  fetch_rewrite   callable(cmd, msg, response) -> bytes: replaces each FETCH
                  response (e.g. to reorder items or lie about sizes).
  handlers        {command name: callable(conn, cmd) -> bool}: a test's own
                  handler; return True if it answered the command.

`server.body_bytes` counts the bytes of whole-message bodies (BODY[],
BODY.PEEK[]) sent, for tests asserting what was downloaded.

Folders: {raw name (str or bytes, as sent on the wire, i.e. modified
UTF-7): Folder(uidvalidity, [Message(uid, flags, internaldate, raw)])}.
Tests may mutate folders between runs (e.g. swap bodies, empty a folder).

Object ids: every Message has an `emailid` (a fresh one unless given;
keep it when "moving" a message to another folder, e.g. with
dataclasses.replace(msg, uid=new)). With "OBJECTID" in the capability the
FETCH item EMAILID (RFC 8474) answers `EMAILID (<emailid>)` and STATUS
knows MAILBOXID; with "X-GM-EXT-1" the item X-GM-MSGID answers a number
derived from the emailid (X-GM-THRID the same), and X-GM-LABELS a
Message's `labels`. Without the capability these items are BAD.

Gmail mode: FakeGmail (at the end of this file) is a writable server that
behaves as Gmail does: one store of messages, folders as views of it
(INBOX, labels, [Gmail]/All Mail, Trash, Spam, ...), one X-GM-MSGID per
message in every folder, flags per message, and STORE, EXPUNGE, COPY,
MOVE, APPEND, CREATE with Gmail's meaning (see its docstring).
"""

import base64
import dataclasses
import hashlib
import itertools
import re
import select
import socket
import threading
import time

HOST = "127.0.0.1"
DEFAULT_CAPABILITY = "IMAP4rev1 AUTH=PLAIN SASL-IR ENABLE LITERAL+"
SYSTEM_FLAGS = (r"\Answered", r"\Flagged", r"\Deleted", r"\Seen", r"\Draft")
CHANGING = ("STORE", "UID STORE", "EXPUNGE", "UID EXPUNGE", "APPEND", "COPY", "UID COPY",
            "MOVE", "UID MOVE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE")
MAX_CLIENT_LITERAL = 1 << 20
MAX_CLIENT_LINE = 1 << 20
_emailids = itertools.count(1)


@dataclasses.dataclass
class Message:
    uid: int
    flags: tuple = ()
    internaldate: int = 1600000000      # epoch seconds (sent as +0000)
    raw: bytes = b""
    emailid: str = None                 # RFC 8474 objectid; None: a fresh one
    labels: tuple = None                # Gmail mode: X-GM-LABELS, as sent (None: not a Gmail message)

    def __post_init__(self):
        if self.emailid is None:
            self.emailid = "M%08x" % next(_emailids)

    @property
    def x_gm_msgid(self):
        """Gmail's X-GM-MSGID: a 63-bit number, one per emailid."""
        return int(hashlib.sha256(self.emailid.encode()).hexdigest()[:15], 16)


@dataclasses.dataclass
class Folder:
    uidvalidity: int
    messages: list = dataclasses.field(default_factory=list)
    uidnext: int = None        # None: max UID + 1
    attrs: str = r"\HasNoChildren"

    def next_uid(self):
        if self.uidnext is not None:
            return self.uidnext
        return max((m.uid for m in self.messages), default=0) + 1

    def sorted_messages(self):
        return sorted(self.messages, key=lambda m: m.uid)


@dataclasses.dataclass
class MidFetch:
    """During a FETCH command for which when(cmd) is true (default: every
    FETCH), after `after` FETCH responses: send data, then pad filler bytes
    (in 64 KiB chunks), then close the connection if close."""
    data: bytes = b""
    after: int = 0
    close: bool = True
    pad: int = 0
    when: object = None
    fired: int = 0               # how many times it triggered (for asserts)

    def applies(self, cmd):
        return self.when is None or self.when(cmd)


@dataclasses.dataclass
class Command:
    conn: int          # 1-based connection number
    tag: str
    name: str          # upper case; "UID FETCH" for UID commands
    args: list         # parsed: str atoms, bytes strings/literals, lists
    line: bytes        # the raw command (literals included)

    def has_item(self, text):
        """Whether the raw command line mentions text (case-insensitive)."""
        return text.upper().encode() in self.line.upper()

    @property
    def is_body_fetch(self):
        return self.name in ("UID FETCH", "FETCH") and (
            self.has_item("BODY.PEEK[]") or self.has_item("BODY[]"))

    @property
    def is_flag_listing(self):
        return self.name in ("UID FETCH", "FETCH") and not self.has_item("BODY")


class ConnectionClosed(Exception):
    pass


# ----------------------------------------------------------------------------
# Parsing client commands

class Atom(str):
    """An IMAP atom (strings and literals are bytes)."""


def tokenize(buf, i=0, closing=None):
    """Parse IMAP tokens from buf[i:] -> (list, next index). Atoms become
    Atom (str), quoted strings and literals bytes, parenthesised lists
    Python lists. Brackets inside an atom (BODY.PEEK[HEADER.FIELDS (X)])
    are part of the atom."""
    out = []
    n = len(buf)
    while i < n:
        c = buf[i:i + 1]
        if c == b" ":
            i += 1
        elif c in (b"\r", b"\n"):
            if closing:
                raise ValueError("unterminated list")
            return out, n
        elif c == b"(":
            sub, i = tokenize(buf, i + 1, b")")
            out.append(sub)
        elif c == b")":
            if closing != b")":
                raise ValueError("unbalanced ')'")
            return out, i + 1
        elif c == b'"':
            i += 1
            s = bytearray()
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted string")
                ch = buf[i:i + 1]
                if ch == b"\\" and i + 1 < n:
                    s += buf[i + 1:i + 2]
                    i += 2
                elif ch == b'"':
                    i += 1
                    break
                else:
                    s += ch
                    i += 1
            out.append(bytes(s))
        elif c == b"{":
            m = re.compile(rb"\{(\d+)\+?\}\r\n").match(buf, i)
            if not m:
                raise ValueError("bad literal")
            size = int(m.group(1))
            start = m.end()
            out.append(bytes(buf[start:start + size]))
            i = start + size
        else:
            start, depth = i, 0
            while i < n:
                ch = buf[i:i + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in (b" ", b"(", b")", b"\r", b"\n"):
                    break
                i += 1
            out.append(Atom(buf[start:i].decode("latin-1")))
    if closing:
        raise ValueError("unterminated list")
    return out, i


def astring(tok):
    """An astring token -> bytes."""
    if isinstance(tok, Atom):
        return tok.encode("latin-1")
    if isinstance(tok, bytes):
        return tok
    raise ValueError("expected a string, got a list")


def parse_set(text, maximum):
    """An IMAP sequence set ('1:3,7,9:*') -> predicate(n). '*' is maximum
    (the highest UID or message number; 0 when the folder is empty)."""
    ranges = []
    for part in text.split(","):
        if ":" in part:
            a, b = part.split(":", 1)
        else:
            a = b = part
        lo = maximum if a == "*" else int(a)
        hi = maximum if b == "*" else int(b)
        if lo > hi:
            lo, hi = hi, lo
        ranges.append((lo, hi))
    return lambda n: any(lo <= n <= hi for lo, hi in ranges)


# ----------------------------------------------------------------------------
# Formatting server data

def imap_string(data):
    """bytes -> an IMAP string: an atom-safe quoted string, else a literal."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if all(0x20 <= b < 0x7F for b in data) and len(data) < 8000:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n%s" % (len(data), data)


def imap_datetime(epoch):
    t = time.gmtime(int(epoch))
    mon = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()[t.tm_mon - 1]
    return ('"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday, mon, t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)).encode()


def header_block(raw):
    """The header of a message (up to and including the blank line)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        k = raw.find(sep)
        if k >= 0:
            return raw[:k + len(sep)]
    return raw


def header_fields(raw, names, negate=False):
    """BODY[HEADER.FIELDS (names)]: the matching header lines (with their
    continuations) followed by an empty line, CRLF-terminated."""
    want = {n.lower() for n in names}
    hdr = header_block(raw)
    lines = re.split(rb"\r?\n", hdr)
    out, keep = [], False
    for line in lines:
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().decode("latin-1").lower()
        keep = (name in want) != negate
        if keep:
            out.append(line)
    return b"".join(l + b"\r\n" for l in out) + b"\r\n"


# ----------------------------------------------------------------------------
# The server

class FakeImap:
    def __init__(self, folders=None, capability=DEFAULT_CAPABILITY, delimiter="/",
                 users=None, greeting=b"* OK fakeimap ready"):
        self.folders = dict(folders) if folders else {"INBOX": Folder(1)}
        self.capability = capability
        self.delimiter = delimiter        # None -> NIL
        self.users = dict(users) if users else {"user": "pw"}
        self.greeting = greeting
        # Misbehaviour (see the module comment).
        self.list_lines = None
        self.extra_list_lines = []
        self.tagged_text = {}
        self.before_tagged = {}
        self.after_tagged = {}
        self.mid_fetch = []
        self.fetch_extra_items = None
        self.fetch_rewrite = None
        self.handlers = {}
        # Records.
        self.commands = []
        self.body_bytes = 0               # bytes of whole-message BODY[] literals sent
        self.connections = 0
        self.errors = []                  # exceptions in connection threads
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._threads = []
        self._socks = set()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(8)
        self.host = HOST
        self.port = self.listener.getsockname()[1]
        self._accept_thread = None

    # -- life cycle -------------------------------------------------------------

    def start(self):
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fakeimap-accept",
                                               daemon=True)
        self._accept_thread.start()
        return self

    def stop(self):
        """Close the listener and every connection; join all threads."""
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(5)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError("fakeimap threads still running: %s" % alive)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.listener], [], [], 0.05)
            if not r:
                continue
            try:
                sock, _ = self.listener.accept()
            except OSError:
                continue
            # Many small writes per reply: without NODELAY, Nagle + the
            # client's delayed ACK cost ~40 ms per command.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += 1
                number = self.connections
                self._socks.add(sock)
            t = threading.Thread(target=self._serve, args=(sock, number),
                                 name="fakeimap-conn-%d" % number, daemon=True)
            self._threads.append(t)
            t.start()

    # -- records ----------------------------------------------------------------

    def names(self, conn=None):
        """Names of the commands received (optionally of one connection)."""
        with self.lock:
            return [c.name for c in self.commands if conn is None or c.conn == conn]

    def received(self, name, conn=None):
        with self.lock:
            return [c for c in self.commands if c.name == name and (conn is None or c.conn == conn)]

    def changing_commands(self):
        """Commands that would change the server (a pull must send none)."""
        with self.lock:
            return [c for c in self.commands if c.name in CHANGING]

    def auth_commands(self):
        with self.lock:
            return [c for c in self.commands if c.name in ("LOGIN", "AUTHENTICATE")]

    # -- one connection ---------------------------------------------------------

    def _serve(self, sock, number):
        conn = _Conn(self, sock, number)
        try:
            conn.run()
        except ConnectionClosed:
            pass
        except OSError:
            pass
        except Exception as e:       # a bug in the fake server: surface it
            with self.lock:
                self.errors.append(e)
        finally:
            # shutdown, not just close: the makefile() reader still holds
            # the descriptor, and the client must see the end of file.
            for f in (lambda: sock.shutdown(socket.SHUT_RDWR), conn.rfile.close, sock.close):
                try:
                    f()
                except OSError:
                    pass
            with self.lock:
                self._socks.discard(sock)


class _Conn:
    """The state of one client connection."""

    def __init__(self, server, sock, number):
        self.server = server
        self.sock = sock
        self.number = number
        self.rfile = sock.makefile("rb")
        self.authenticated = False
        self.selected = None          # Folder
        self.selected_name = None

    # -- I/O ----------------------------------------------------------------------

    def send(self, data):
        if self.server._stop.is_set():
            raise ConnectionClosed()
        self.sock.sendall(data)

    def close(self):
        """Close the connection now (the client sees end of file)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise ConnectionClosed()

    def readline(self):
        line = self.rfile.readline(MAX_CLIENT_LINE)
        if not line:
            raise ConnectionClosed()
        return line

    def read_command(self):
        """One command with its literals (the '+' continuation is sent for
        synchronising literals)."""
        buf = bytearray(self.readline())
        while True:
            m = re.search(rb"\{(\d+)(\+?)\}\r?\n$", buf)
            if not m:
                return bytes(buf)
            size = int(m.group(1))
            if size > MAX_CLIENT_LITERAL:
                raise ConnectionClosed()
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            data = self.rfile.read(size)
            if len(data) != size:
                raise ConnectionClosed()
            buf += data
            buf += self.readline()

    # -- the command loop ---------------------------------------------------------

    def run(self):
        self.send(self.server.greeting + b"\r\n")
        while True:
            raw = self.read_command()
            try:
                toks, _ = tokenize(raw)
            except ValueError:
                toks = []
            if len(toks) < 2 or not isinstance(toks[0], Atom) or not isinstance(toks[1], Atom):
                self.record("*", "?", [], raw)
                self.send(b"* BAD unparsable command\r\n")
                continue
            tag, name, args = str(toks[0]), str(toks[1]).upper(), toks[2:]
            if name == "UID" and args and isinstance(args[0], Atom):
                name, args = "UID " + args[0].upper(), args[1:]
            cmd = self.record(tag, name, args, raw)
            self.dispatch(cmd)

    def record(self, tag, name, args, raw):
        cmd = Command(self.number, tag, name, args, raw)
        with self.server.lock:
            self.server.commands.append(cmd)
        return cmd

    def hook_bytes(self, table, cmd):
        v = table.get(cmd.name)
        if callable(v):
            v = v(cmd)
        return v or b""

    def done(self, cmd, status="OK", text=None):
        """The tagged reply, with the before/after hooks around it."""
        extra = self.hook_bytes(self.server.before_tagged, cmd)
        if extra:
            self.send(extra)
        override = self.server.tagged_text.get(cmd.name)
        if callable(override):
            override = override(cmd)
        line = override if override else "%s %s" % (status, text or cmd.name + " completed")
        self.send(("%s %s\r\n" % (cmd.tag, line)).encode("latin-1"))
        extra = self.hook_bytes(self.server.after_tagged, cmd)
        if extra:
            self.send(extra)

    def dispatch(self, cmd):
        h = self.server.handlers.get(cmd.name)
        if h and h(self, cmd):
            return
        method = {
            "CAPABILITY": self.do_capability, "NOOP": self.do_noop, "LOGOUT": self.do_logout,
            "LOGIN": self.do_login, "AUTHENTICATE": self.do_authenticate,
            "STARTTLS": self.do_starttls,
        }.get(cmd.name)
        if method is None:
            if not self.authenticated:
                self.done(cmd, "BAD", "not authenticated")
                return
            method = {
                "ENABLE": self.do_enable, "LIST": self.do_list, "LSUB": self.do_list,
                "STATUS": self.do_status, "SELECT": self.do_select, "EXAMINE": self.do_select,
                "UID FETCH": self.do_fetch, "FETCH": self.do_fetch,
                "UID SEARCH": self.do_search, "SEARCH": self.do_search,
                "CHECK": self.do_noop, "UNSELECT": self.do_unselect, "CLOSE": self.do_unselect,
                "ID": self.do_id,
            }.get(cmd.name)
        if method is None:
            if cmd.name in CHANGING:
                self.done(cmd, "NO", "fakeimap is read-only")
            else:
                self.done(cmd, "BAD", "unknown command")
            return
        try:
            method(cmd)
        except (ValueError, IndexError, KeyError, TypeError) as e:
            self.done(cmd, "BAD", "bad arguments (%s)" % type(e).__name__)

    # -- not authenticated ---------------------------------------------------------

    def has_capability(self, name):
        return name.upper() in self.server.capability.upper().split()

    def do_capability(self, cmd):
        self.send(b"* CAPABILITY " + self.server.capability.encode() + b"\r\n")
        self.done(cmd)

    def do_noop(self, cmd):
        self.done(cmd)

    def do_logout(self, cmd):
        self.send(b"* BYE fakeimap logging out\r\n")
        self.done(cmd)
        self.close()

    def do_starttls(self, cmd):
        self.done(cmd, "BAD", "no TLS in fakeimap")

    def check_user(self, user, password):
        ok = self.server.users.get(user.decode("utf-8", "replace")) == password.decode("utf-8", "replace")
        if ok:
            self.authenticated = True
        return ok

    def do_login(self, cmd):
        if "LOGINDISABLED" in self.server.capability.upper():
            self.done(cmd, "NO", "LOGIN disabled")
            return
        user, password = astring(cmd.args[0]), astring(cmd.args[1])
        if self.check_user(user, password):
            self.done(cmd, "OK", "logged in")
        else:
            self.done(cmd, "NO", "[AUTHENTICATIONFAILED] invalid credentials")

    def do_authenticate(self, cmd):
        mech = str(cmd.args[0]).upper()
        if mech != "PLAIN" or "AUTH=PLAIN" not in self.server.capability.upper():
            self.done(cmd, "NO", "unsupported mechanism")
            return
        if len(cmd.args) > 1:
            blob = astring(cmd.args[1])
        else:
            self.send(b"+ \r\n")
            blob = self.readline().strip()
        if blob == b"*":
            self.done(cmd, "BAD", "cancelled")
            return
        if blob == b"=":
            blob = b""
        try:
            parts = base64.b64decode(blob, validate=True).split(b"\0")
        except ValueError:
            self.done(cmd, "BAD", "bad base64")
            return
        if len(parts) == 3 and self.check_user(parts[1], parts[2]):
            self.done(cmd, "OK", "authenticated")
        else:
            self.done(cmd, "NO", "[AUTHENTICATIONFAILED] invalid credentials")

    # -- authenticated --------------------------------------------------------------

    def do_id(self, cmd):
        self.send(b'* ID ("name" "fakeimap")\r\n')
        self.done(cmd)

    def do_enable(self, cmd):
        caps = self.server.capability.upper().split()
        got = [str(a).upper() for a in cmd.args if str(a).upper() in caps]
        self.send(("* ENABLED %s\r\n" % " ".join(got)).rstrip(" \r\n").encode() + b"\r\n")
        self.done(cmd)

    def do_list(self, cmd):
        srv = self.server
        if srv.list_lines is not None:
            lines = list(srv.list_lines)
        else:
            delim = b"NIL" if srv.delimiter is None else imap_string(srv.delimiter)
            lines = []
            with srv.lock:
                names = list(srv.folders)
            for name in names:
                raw = name.encode("utf-8") if isinstance(name, str) else name
                attrs = srv.folders[name].attrs
                lines.append(b"* LIST (%s) %s %s" % (attrs.encode(), delim, imap_string(raw)))
        for line in lines + list(srv.extra_list_lines):
            self.send(line + b"\r\n")
        self.done(cmd)

    def find_folder(self, tok):
        raw = astring(tok)
        with self.server.lock:
            for name, folder in self.server.folders.items():
                key = name.encode("utf-8") if isinstance(name, str) else name
                if key == raw or (raw.upper() == b"INBOX" and key.upper() == b"INBOX"):
                    return raw, folder
        return raw, None

    def do_status(self, cmd):
        raw, folder = self.find_folder(cmd.args[0])
        if folder is None:
            self.done(cmd, "NO", "[NONEXISTENT] no such mailbox")
            return
        items = [str(a).upper() for a in cmd.args[1]]
        msgs = folder.sorted_messages()
        values = {"MESSAGES": len(msgs), "UIDNEXT": folder.next_uid(),
                  "UIDVALIDITY": folder.uidvalidity, "RECENT": 0,
                  "UNSEEN": sum(1 for m in msgs if r"\Seen" not in m.flags)}
        values = {k: "%d" % v for k, v in values.items()}
        if self.has_capability("OBJECTID"):
            values["MAILBOXID"] = "(F%s)" % hashlib.sha256(raw).hexdigest()[:16]
        parts = " ".join("%s %s" % (i, values[i]) for i in items if i in values)
        self.send(b"* STATUS %s (%s)\r\n" % (imap_string(raw), parts.encode()))
        self.done(cmd)

    def do_select(self, cmd):
        raw, folder = self.find_folder(cmd.args[0])
        self.selected = None
        if folder is None:
            self.done(cmd, "NO", "[NONEXISTENT] no such mailbox")
            return
        self.selected, self.selected_name = folder, raw
        msgs = folder.sorted_messages()
        ro = cmd.name == "EXAMINE"
        self.send(b"* FLAGS (" + " ".join(SYSTEM_FLAGS).encode() + b")\r\n")
        self.send(b"* OK [PERMANENTFLAGS (%s)] flags\r\n" % (
            b"" if ro else " ".join(SYSTEM_FLAGS + ("\\*",)).encode()))
        self.send(b"* %d EXISTS\r\n* 0 RECENT\r\n" % len(msgs))
        self.send(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % folder.uidvalidity)
        self.send(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % folder.next_uid())
        self.done(cmd, "OK", "[%s] %s completed" % ("READ-ONLY" if ro else "READ-WRITE", cmd.name))

    def do_unselect(self, cmd):
        self.selected = None
        self.done(cmd)

    def do_search(self, cmd):
        if self.selected is None:
            self.done(cmd, "BAD", "no mailbox selected")
            return
        msgs = self.selected.sorted_messages()
        use_uid = cmd.name.startswith("UID")
        keys = [str(a).upper() if isinstance(a, Atom) else a for a in cmd.args]
        hits = list(enumerate(msgs, 1))
        i = 0
        while i < len(keys):
            k = keys[i]
            if k == "ALL":
                i += 1
            elif k == "UID":
                pred = parse_set(keys[i + 1], msgs[-1].uid if msgs else 0)
                hits = [(n, m) for n, m in hits if pred(m.uid)]
                i += 2
            else:
                raise ValueError("unsupported search key %s" % k)
        nums = [m.uid if use_uid else n for n, m in hits]
        self.send(("* SEARCH" + "".join(" %d" % x for x in nums) + "\r\n").encode())
        self.done(cmd)

    # -- FETCH ---------------------------------------------------------------------

    def do_fetch(self, cmd):
        if self.selected is None:
            self.done(cmd, "BAD", "no mailbox selected")
            return
        if len(cmd.args) > 2:
            self.done(cmd, "BAD", "fetch modifiers are not supported")
            return
        use_uid = cmd.name == "UID FETCH"
        msgs = self.selected.sorted_messages()
        maximum = (msgs[-1].uid if use_uid else len(msgs)) if msgs else 0
        pred = parse_set(str(cmd.args[0]), maximum)
        items = cmd.args[1] if isinstance(cmd.args[1], list) else [cmd.args[1]]
        items = [str(i).upper() for i in items]
        for macro, expand in (("ALL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]),
                              ("FAST", ["FLAGS", "INTERNALDATE", "RFC822.SIZE"])):
            if macro in items:
                items.remove(macro)
                items += expand
        if use_uid and "UID" not in items:
            items.insert(0, "UID")
        midfetch = [h for h in self.server.mid_fetch if h.applies(cmd)]
        sent = 0
        self.fire(midfetch, cmd, sent)
        for seq, msg in enumerate(msgs, 1):
            if not pred(msg.uid if use_uid else seq):
                continue
            self.send(self.fetch_response(cmd, seq, msg, items))
            sent += 1
            self.fire(midfetch, cmd, sent)
        self.done(cmd)

    def fire(self, hooks, cmd, sent):
        for h in hooks:
            if h.after != sent:
                continue
            h.fired += 1
            if h.data:
                self.send(h.data)
            left = h.pad
            chunk = b"x" * 65536
            while left > 0:
                n = min(left, len(chunk))
                self.send(chunk[:n])
                left -= n
            if h.close:
                self.close()

    def fetch_response(self, cmd, seq, msg, items):
        parts = []
        for item in items:
            if item == "UID":
                parts.append(b"UID %d" % msg.uid)
            elif item == "FLAGS":
                parts.append(b"FLAGS (" + " ".join(msg.flags).encode() + b")")
            elif item == "RFC822.SIZE":
                parts.append(b"RFC822.SIZE %d" % len(msg.raw))
            elif item == "INTERNALDATE":
                parts.append(b"INTERNALDATE " + imap_datetime(msg.internaldate))
            elif item.startswith("BODY[") or item.startswith("BODY.PEEK["):
                section = item[item.index("[") + 1:item.rindex("]")]
                data = self.section(msg.raw, section)
                if section == "":
                    with self.server.lock:
                        self.server.body_bytes += len(data)
                parts.append(b"BODY[%s] {%d}\r\n%s" % (section.encode(), len(data), data))
            elif item == "RFC822":
                parts.append(b"RFC822 {%d}\r\n%s" % (len(msg.raw), msg.raw))
            elif item == "EMAILID" and self.has_capability("OBJECTID"):
                parts.append(b"EMAILID (%s)" % msg.emailid.encode())
            elif item in ("X-GM-MSGID", "X-GM-THRID") and self.has_capability("X-GM-EXT-1"):
                parts.append(b"%s %d" % (item.encode(), msg.x_gm_msgid))
            elif item == "X-GM-LABELS" and self.has_capability("X-GM-EXT-1"):
                parts.append(b"X-GM-LABELS (%s)" % b" ".join(
                    l.encode() if l.startswith("\\") else imap_string(l) for l in (msg.labels or ())))
            elif item == "RFC822.HEADER":
                data = header_block(msg.raw)
                parts.append(b"RFC822.HEADER {%d}\r\n%s" % (len(data), data))
            else:
                raise ValueError("unsupported fetch item %s" % item)
        extra = self.server.fetch_extra_items
        if callable(extra):
            extra = extra(cmd, msg)
        if extra:
            parts.append(extra)
        response = b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts))
        if self.server.fetch_rewrite:
            response = self.server.fetch_rewrite(cmd, msg, response)
        return response

    @staticmethod
    def section(raw, section):
        if section == "":
            return raw
        if section == "HEADER":
            return header_block(raw)
        if section == "TEXT":
            return raw[len(header_block(raw)):]
        m = re.match(r"HEADER\.FIELDS(\.NOT)?\s*\((.*)\)$", section)
        if m:
            return header_fields(raw, m.group(2).split(), negate=bool(m.group(1)))
        raise ValueError("unsupported section %s" % section)


# ----------------------------------------------------------------------------
# Helpers for tests

def make_messages(count, start_uid=1, seed="m", date=1600000000, flags=()):
    """count simple distinct messages with Message-IDs <seed-N@fake>."""
    out = []
    for k in range(count):
        uid = start_uid + k
        raw = (b"From: a@example.org\r\nTo: b@example.org\r\n"
               b"Subject: message %d\r\nMessage-ID: <%s-%d@fake>\r\n\r\n"
               b"Body of message %d.\r\nline two\r\n" % (uid, seed.encode(), uid, uid))
        out.append(Message(uid, tuple(flags), date + k, raw))
    return out


# ----------------------------------------------------------------------------
# Gmail mode

GMAIL_CAPABILITY = ("IMAP4rev1 UNSELECT ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS MOVE SPECIAL-USE "
                    "AUTH=PLAIN SASL-IR ENABLE LITERAL+")
GMAIL_ALL = "[Gmail]/All Mail"
GMAIL_TRASH = "[Gmail]/Trash"
GMAIL_SPAM = "[Gmail]/Spam"
GMAIL_SENT = "[Gmail]/Sent Mail"
GMAIL_STARRED = "[Gmail]/Starred"
GMAIL_DRAFTS = "[Gmail]/Drafts"
GMAIL_IMPORTANT = "[Gmail]/Important"
INBOX_LABEL = "\\Inbox"
SENT_LABEL = "\\Sent"
DRAFTS_LABEL = "\\Draft"
IMPORTANT_LABEL = "\\Important"
GMAIL_SYSTEM_LABELS = {"INBOX": INBOX_LABEL, GMAIL_SENT: SENT_LABEL, GMAIL_DRAFTS: DRAFTS_LABEL,
                       GMAIL_IMPORTANT: IMPORTANT_LABEL}


@dataclasses.dataclass
class GmailMessage:
    """One message of the account: whatever folders show it."""
    emailid: str
    raw: bytes
    internaldate: int
    flags: set
    labels: set                  # "\\Inbox", "\\Sent", user labels
    where: str = "mail"          # "mail", "trash" or "spam"


class FakeGmail(FakeImap):
    """A Gmail account as its IMAP side shows it (Google's "IMAP
    extensions" page and its IMAP behaviour as clients know it):

    - one store of messages, each with flags (per message, so a flag set
      in one folder shows in every folder of the message) and labels;
    - folders are views of it: `INBOX` (label \\Inbox), each user label,
      `[Gmail]/Sent Mail` (\\Sent), `[Gmail]/Drafts` (\\Draft),
      `[Gmail]/Important` (\\Important), `[Gmail]/Starred` (\\Flagged),
      `[Gmail]/All Mail` (\\All: every message not in Trash or Spam),
      `[Gmail]/Trash`, `[Gmail]/Spam`; `[Gmail]` itself is \\Noselect;
    - a message has its own UID in each folder, and the same X-GM-MSGID
      (and X-GM-THRID) in all; X-GM-LABELS lists its labels (the label of
      the selected folder left out, as Gmail does);
    - a message that leaves a folder and comes back gets a new UID there.

    The test plays the web interface with add(), label(), unlabel(),
    archive(), trash(), spam(), set_flags(); the client's commands do the
    same through IMAP: STORE (flags of the message), EXPUNGE / UID EXPUNGE
    of \\Deleted messages (in a label folder or INBOX: the label goes; in
    All Mail: to the Trash; in Trash or Spam: gone for good), UID COPY (a
    label added; into Trash: trashed), UID MOVE (COPY, then the source's
    label goes), APPEND (a new message: a new X-GM-MSGID, labelled by the
    folder; this fake never merges by Message-ID, so a wrong upload shows
    as a duplicate), CREATE (a new label). Every command is recorded as
    in FakeImap; `server.appends` counts APPENDs.
    """

    def __init__(self, labels=("Work",), capability=GMAIL_CAPABILITY, **kw):
        super().__init__({}, capability=capability, **kw)
        self.mail = {}               # emailid -> GmailMessage, in arrival order
        self.views = {}              # folder name -> {"uids": {emailid: uid}, ...}
        self.user_labels = list(labels)
        self.deleted = set()         # (folder, emailid) marked \Deleted there
        self.appends = 0
        self.folders = {}
        names = ["INBOX", "[Gmail]", GMAIL_ALL, GMAIL_DRAFTS, GMAIL_IMPORTANT, GMAIL_SENT, GMAIL_STARRED,
                 GMAIL_SPAM, GMAIL_TRASH]
        for name in names + self.user_labels:
            self._add_view(name)
        self.handlers.update({
            "UID STORE": self._store, "STORE": self._store,
            "UID EXPUNGE": self._expunge, "EXPUNGE": self._expunge, "CLOSE": self._close,
            "UID COPY": self._copy, "UID MOVE": self._move, "APPEND": self._append,
            "CREATE": self._create,
        })

    # -- the views ------------------------------------------------------------

    ATTRS = {"[Gmail]": r"\Noselect \HasChildren", GMAIL_ALL: r"\HasNoChildren \All",
             GMAIL_DRAFTS: r"\HasNoChildren \Drafts", GMAIL_IMPORTANT: r"\HasNoChildren \Important",
             GMAIL_SENT: r"\HasNoChildren \Sent", GMAIL_STARRED: r"\HasNoChildren \Flagged",
             GMAIL_SPAM: r"\HasNoChildren \Junk", GMAIL_TRASH: r"\HasNoChildren \Trash"}

    def _add_view(self, name):
        uidvalidity = 100 + len(self.views)
        self.views[name] = {"uids": {}, "uidnext": 1}
        self.folders[name] = Folder(uidvalidity, [], uidnext=1, attrs=self.ATTRS.get(name, r"\HasNoChildren"))

    @staticmethod
    def label_of(folder):
        """The label a folder shows (None: not a label folder)."""
        if folder in GMAIL_SYSTEM_LABELS:
            return GMAIL_SYSTEM_LABELS[folder]
        if folder.startswith("[Gmail]"):
            return None
        return folder

    def shows(self, folder, m):
        if folder == "[Gmail]":
            return False
        if folder == GMAIL_TRASH:
            return m.where == "trash"
        if folder == GMAIL_SPAM:
            return m.where == "spam"
        if m.where != "mail":
            return False
        if folder == GMAIL_ALL:
            return True
        if folder == GMAIL_STARRED:
            return r"\Flagged" in m.flags
        return self.label_of(folder) in m.labels

    def refresh(self):
        """Rebuild every folder from the store (call with the lock held
        after a change): new members get the folder's next UID, leavers
        lose theirs."""
        for name, v in self.views.items():
            members = [m for m in self.mail.values() if self.shows(name, m)]
            keep = {m.emailid for m in members}
            v["uids"] = {e: u for e, u in v["uids"].items() if e in keep}
            for m in members:
                if m.emailid not in v["uids"]:
                    v["uids"][m.emailid] = v["uidnext"]
                    v["uidnext"] += 1
            label = self.label_of(name)
            f = self.folders[name]
            f.messages = [Message(v["uids"][m.emailid], tuple(sorted(m.flags)), m.internaldate, m.raw,
                                  emailid=m.emailid,
                                  labels=tuple(sorted(l for l in m.labels if l != label)))
                          for m in members]
            f.uidnext = v["uidnext"]
            self.deleted = {(n, e) for n, e in self.deleted if n != name or e in keep}

    def uid(self, folder, emailid):
        """The message's UID in folder, or None."""
        with self.lock:
            return self.views[folder]["uids"].get(emailid)

    def in_folder(self, folder):
        """{emailid} the folder shows."""
        with self.lock:
            return set(self.views[folder]["uids"])

    # -- the web interface -------------------------------------------------------

    def add(self, raw, labels=(INBOX_LABEL,), flags=(), date=1600000000):
        """A message arrives (or is sent: labels=("\\Sent",)); its emailid."""
        with self.lock:
            eid = "G%08x" % next(_emailids)
            self.mail[eid] = GmailMessage(eid, raw, date, set(flags), set(labels))
            self.refresh()
            return eid

    def label(self, eid, label):
        with self.lock:
            self.mail[eid].labels.add(label)
            self.refresh()

    def unlabel(self, eid, label):
        with self.lock:
            self.mail[eid].labels.discard(label)
            self.refresh()

    def archive(self, eid):
        """The Archive button: INBOX's label goes; still in All Mail."""
        self.unlabel(eid, INBOX_LABEL)

    def trash(self, eid):
        with self.lock:
            self.mail[eid].where = "trash"
            self.refresh()

    def spam(self, eid):
        with self.lock:
            self.mail[eid].where = "spam"
            self.refresh()

    def set_flags(self, eid, flags):
        with self.lock:
            self.mail[eid].flags = set(flags)
            self.refresh()

    # -- IMAP commands that change the account -----------------------------------

    def _by_uid(self, conn, cmd, use_uid=True):
        """The selected folder's messages a set names: [(seq, Message)]."""
        msgs = conn.selected.sorted_messages()
        maximum = (msgs[-1].uid if use_uid else len(msgs)) if msgs else 0
        pred = parse_set(str(cmd.args[0]), maximum)
        return [(n, m) for n, m in enumerate(msgs, 1) if pred(m.uid if use_uid else n)]

    def _selected_name(self, conn):
        for name, f in self.folders.items():
            if f is conn.selected:
                return name
        return None

    def _store(self, conn, cmd):
        if conn.selected is None:
            conn.done(cmd, "BAD", "no mailbox selected")
            return True
        use_uid = cmd.name == "UID STORE"
        op = str(cmd.args[1]).upper()
        flags = cmd.args[2] if isinstance(cmd.args[2], list) else [cmd.args[2]]
        flags = {str(f) for f in flags}
        name = self._selected_name(conn)
        with self.lock:
            hits = self._by_uid(conn, cmd, use_uid)
            for _, msg in hits:
                m = self.mail[msg.emailid]
                deleted = (name, m.emailid) in self.deleted
                have = set(m.flags) | ({r"\Deleted"} if deleted else set())
                if op.startswith("+"):
                    have |= flags
                elif op.startswith("-"):
                    have -= flags
                else:
                    have = set(flags)
                if r"\Deleted" in have:
                    self.deleted.add((name, m.emailid))
                else:
                    self.deleted.discard((name, m.emailid))
                m.flags = have - {r"\Deleted"}
            self.refresh()
            if not op.endswith(".SILENT"):
                by_eid = {m.emailid: m for m in conn.selected.messages}
                for seq, msg in hits:
                    now = by_eid.get(msg.emailid)
                    if now is None:
                        continue
                    fl = list(now.flags) + ([r"\Deleted"] if (name, msg.emailid) in self.deleted else [])
                    conn.send(b"* %d FETCH (UID %d FLAGS (%s))\r\n" % (seq, now.uid, " ".join(fl).encode()))
        conn.done(cmd)
        return True

    def _remove_from(self, name, eid):
        """The message leaves folder name the Gmail way."""
        m = self.mail[eid]
        label = self.label_of(name)
        if name in (GMAIL_TRASH, GMAIL_SPAM):
            del self.mail[eid]
        elif name == GMAIL_ALL:
            m.where = "trash"
            m.labels.clear()
        elif name == GMAIL_STARRED:
            m.flags.discard(r"\Flagged")
        elif label is not None:
            m.labels.discard(label)

    def _expunge_uids(self, conn, name, pred):
        """Expunge the \\Deleted messages of the selected folder that pred
        accepts; untagged EXPUNGE for each (highest first)."""
        msgs = conn.selected.sorted_messages()
        gone = [(n, m) for n, m in enumerate(msgs, 1) if (name, m.emailid) in self.deleted and pred(m.uid)]
        for _, m in gone:
            self.deleted.discard((name, m.emailid))
            self._remove_from(name, m.emailid)
        self.refresh()
        return [n for n, _ in sorted(gone, key=lambda x: -x[0])]

    def _expunge(self, conn, cmd):
        if conn.selected is None:
            conn.done(cmd, "BAD", "no mailbox selected")
            return True
        name = self._selected_name(conn)
        with self.lock:
            if cmd.name == "UID EXPUNGE":
                msgs = conn.selected.sorted_messages()
                pred = parse_set(str(cmd.args[0]), msgs[-1].uid if msgs else 0)
            else:
                pred = lambda uid: True
            seqs = self._expunge_uids(conn, name, pred)
        for n in seqs:
            conn.send(b"* %d EXPUNGE\r\n" % n)
        conn.done(cmd)
        return True

    def _close(self, conn, cmd):
        if conn.selected is not None:
            name = self._selected_name(conn)
            with self.lock:
                self._expunge_uids(conn, name, lambda uid: True)
        conn.selected = None
        conn.done(cmd)
        return True

    def _add_to(self, name, eid):
        m = self.mail[eid]
        if name == GMAIL_TRASH:
            m.where, m.labels = "trash", set()
        elif name == GMAIL_SPAM:
            m.where = "spam"
        elif name == GMAIL_STARRED:
            m.flags.add(r"\Flagged")
        elif name != GMAIL_ALL:
            m.where = "mail" if m.where == "trash" else m.where
            m.labels.add(self.label_of(name))

    def _copy_common(self, conn, cmd):
        """COPY's effect; (source name, dest name, [(seq, Message)], copyuid text) or None."""
        dest = astring(cmd.args[1]).decode("utf-8")
        if dest.upper() == "INBOX":
            dest = "INBOX"
        if dest not in self.views or dest == "[Gmail]":
            conn.done(cmd, "NO", "[TRYCREATE] no such mailbox")
            return None
        name = self._selected_name(conn)
        with self.lock:
            hits = self._by_uid(conn, cmd)
            for _, msg in hits:
                self._add_to(dest, msg.emailid)
            self.refresh()
            new = [self.views[dest]["uids"].get(msg.emailid) for _, msg in hits]
        pairs = [(msg.uid, u) for (_, msg), u in zip(hits, new) if u]
        text = "[COPYUID %d %s %s]" % (self.folders[dest].uidvalidity, ",".join(str(a) for a, _ in pairs),
                                       ",".join(str(b) for _, b in pairs)) if pairs else ""
        return name, dest, hits, text

    def _copy(self, conn, cmd):
        if conn.selected is None:
            conn.done(cmd, "BAD", "no mailbox selected")
            return True
        r = self._copy_common(conn, cmd)
        if r:
            conn.done(cmd, "OK", (r[3] + " COPY completed").strip())
        return True

    def _move(self, conn, cmd):
        if conn.selected is None:
            conn.done(cmd, "BAD", "no mailbox selected")
            return True
        r = self._copy_common(conn, cmd)
        if not r:
            return True
        name, dest, hits, text = r
        if text:
            conn.send(("* OK %s\r\n" % text).encode())
        with self.lock:
            if dest != name:
                for _, msg in hits:
                    # out of All Mail, Trash or Spam the message goes by
                    # itself (labelled, or out of the bin), or stays
                    if msg.emailid in self.mail and (self.label_of(name) or name == GMAIL_STARRED):
                        self._remove_from(name, msg.emailid)
            before = {m.emailid: n for n, m in enumerate(conn.selected.sorted_messages(), 1)}
            self.refresh()
            after = {m.emailid for m in conn.selected.messages}
        for n in sorted((n for e, n in before.items() if e not in after), reverse=True):
            conn.send(b"* %d EXPUNGE\r\n" % n)
        conn.done(cmd, "OK", "MOVE completed")
        return True

    def _append(self, conn, cmd):
        name = astring(cmd.args[0]).decode("utf-8")
        if name.upper() == "INBOX":
            name = "INBOX"
        if name not in self.views or name == "[Gmail]":
            conn.done(cmd, "NO", "[TRYCREATE] no such mailbox")
            return True
        args = cmd.args[1:]
        flags = args[0] if args and isinstance(args[0], list) else []
        raw = args[-1]
        with self.lock:
            self.appends += 1
            eid = "G%08x" % next(_emailids)
            self.mail[eid] = GmailMessage(eid, raw, int(time.time()), {str(f) for f in flags} - {r"\Deleted"},
                                          set())
            self._add_to(name, eid)
            self.refresh()
            uid = self.views[name]["uids"].get(eid, 0)
        conn.done(cmd, "OK", "[APPENDUID %d %d] APPEND completed" % (self.folders[name].uidvalidity, uid))
        return True

    def _create(self, conn, cmd):
        name = astring(cmd.args[0]).decode("utf-8")
        with self.lock:
            if name in self.views:
                conn.done(cmd, "NO", "[ALREADYEXISTS] folder exists")
                return True
            self.user_labels.append(name)
            self._add_view(name)
            self.refresh()
        conn.done(cmd)
        return True
