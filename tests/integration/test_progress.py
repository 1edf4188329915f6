# SPDX-License-Identifier: MIT
"""The progress line on a terminal, as a user of rsync or git would judge it:
mailsync runs under a pseudo-terminal of 50 and of 200 columns, and what it
wrote there is played back on a small terminal model (carriage return, line
feed, erase to the end of the line, automatic wrap at the right edge):

- no line ever wraps, and after each redraw the line holds exactly the new
  text (nothing of a longer one before it is left over);
- the line says account, folder k/N, counts, and for push and sync which
  phase it is in (uploads k/N of that folder, then the pull's downloads);
- when the run is over, the screen holds only the summary (and log lines):
  no partial progress line, also after Ctrl-C, whose "stopping" notice is
  a line of its own;
- a run that failed says so in its summary line, with no counters that read
  like a success;
- --progress=never, -q, --json and a stderr that is no terminal write no
  escape sequence at all.

Set MAILSYNC_PROGRESS_SCREENS=DIR to keep the rendered screens there."""

import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
import unicodedata
from pathlib import Path

import testbed as tb

LONG = "Archives/2024/Projects/a folder with a very long name indeed"
STOP_NOTICE = "mailsync: stopping at the next safe point (send the signal again to quit at once)"
ERASE = "\x1b[K"


def char_width(ch):
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class Screen:
    """A terminal of `cols` columns fed text: "\r", "\n", ESC [ K (erase
    to the end of the line) and printable characters, wrapping at the
    right edge as a terminal does. Any other escape sequence is an error.

    Text that is drawn over in place (it ends in ESC [ K or a bare "\r",
    not a line feed) is a progress draw: .draws lists (its text, the row's
    content right after it), which differ if an earlier, longer text was
    left over; .wrapped is set if a draw wrapped. (A line of text, a
    summary or a log line ended by "\n", may wrap.)"""

    def __init__(self, cols):
        self.cols = cols
        self.rows = [[]]
        self.row = self.col = 0
        self.wrapped = False
        self.continued = set()  # rows that a wrap began
        self.draws = []

    def line(self, r):
        return "".join(c for c in self.rows[r] if c is not None).rstrip()

    def new_row(self):
        self.row += 1
        self.col = 0
        if self.row == len(self.rows):
            self.rows.append([])

    def feed(self, text):
        seg, wrapped = "", False

        def draw():  # seg was drawn in place: the row must hold it, whole
            if seg:
                self.draws.append((seg, self.line(self.row)))
                self.wrapped = self.wrapped or wrapped

        i = 0
        while i < len(text):
            ch = text[i]
            if ch in "\r\n":
                if ch == "\r" and not text.startswith("\n", i + 1):
                    draw()
                seg, wrapped = "", False
                if ch == "\r":
                    self.col = 0
                else:
                    self.new_row()
                i += 1
                continue
            if ch == "\x1b":
                m = re.match(r"\x1b\[([0-9;?]*)([A-Za-z])", text[i:])
                if not m or m.group(2) != "K" or m.group(1) not in ("", "0"):
                    raise AssertionError("unexpected escape sequence %r" % text[i:i + 10])
                del self.rows[self.row][self.col:]
                draw()
                seg, wrapped = "", False
                i += len(m.group(0))
                continue
            w = char_width(ch)
            if self.col + w > self.cols:
                wrapped = True
                self.new_row()
                self.continued.add(self.row)
            cells = self.rows[self.row]
            while len(cells) < self.col + w:
                cells.append(" ")
            cells[self.col] = ch
            if w == 2:
                cells[self.col + 1] = None
            self.col += w
            seg += ch
            i += 1
        draw()

    def text(self):
        """The screen's lines, a wrapped one joined again."""
        lines = []
        for r in range(len(self.rows)):
            if r in self.continued and lines:
                lines[-1] = lines[-1].ljust(self.cols) + self.line(r)
            else:
                lines.append(self.line(r))
        while lines and not lines[-1]:
            lines.pop()
        return lines


def run_in_pty(argv, cols, env, until=None, then=None, timeout=60):
    """Run argv with stdin, stdout and stderr on a pseudo-terminal of cols
    columns; returns (exit code, everything written, as text). until(text
    so far) -> True calls then(process) once (e.g. to send a signal)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = bytearray()
    fired = False
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                p.kill()
                raise AssertionError("timed out; output so far:\n%s" % out.decode(errors="replace"))
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if until and not fired and until(out.decode(errors="replace")):
                fired = True
                then(p)
        code = p.wait(30)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
    text = out.decode(errors="replace")
    assert not any(m in text for m in tb.SANITIZER_MARKERS), text
    return code, text


class ProgressTest(tb.BedTestCase):

    def seed_folders(self, inbox=120, long=12, sent=6):
        with self.imap() as c:
            c.create_folder(LONG)
            c.create_folder("Sent")
            c.append_many("INBOX", tb.make_corpus(inbox, seed=171, size=(1500, 3000)))
            c.append_many(LONG, tb.make_corpus(long, seed=172, start=1000, size=(1500, 3000)))
            c.append_many("Sent", tb.make_corpus(sent, seed=173, start=2000, size=(1500, 3000)))

    def forget_local(self):
        shutil.rmtree(self.maildir, ignore_errors=True)
        for p in self.work.glob("state.sqlite*"):
            p.unlink()

    def run_pty(self, cols, *args, expect=0, until=None, then=None):
        argv = [tb.mailsync_bin(), "-c", str(self.config_path)] + list(args)
        env = tb.mailsync_env(self.work)
        env.pop("COLUMNS", None)
        code, text = run_in_pty(argv, cols, env, until=until, then=then)
        self.assertEqual(code, expect, text)
        screen = Screen(cols)
        screen.feed(text)
        self.check_screen(screen, text)
        self.keep(cols, args, screen)
        return screen, text

    def keep(self, cols, args, screen):
        where = os.environ.get("MAILSYNC_PROGRESS_SCREENS")
        if not where:
            return
        name = "%s-%d" % (self.id().rsplit(".", 1)[-1], cols)
        with open(os.path.join(where, name + ".txt"), "a") as f:
            f.write("$ mailsync %s   (%d columns)\n" % (" ".join(args), cols))
            last = [t for t, _ in screen.draws if t]
            f.write("-- the last progress line drawn:\n%s\n" % (last[-1] if last else "(none)"))
            f.write("-- the screen at the end:\n%s\n\n" % "\n".join(screen.text()))

    def check_screen(self, screen, text):
        """No wrap, no stale text, and the run's end leaves no progress line."""
        self.assertFalse(screen.wrapped, "a progress line wrapped at %d columns:\n%s" % (screen.cols, text))
        for drawn, row in screen.draws:
            self.assertLessEqual(sum(map(char_width, drawn)), screen.cols - 1, drawn)
            self.assertEqual(row, drawn.rstrip(), "stale text after a redraw")
        for line in screen.text():
            self.assertNotRegex(line, r"\[\d+/\d+\]|messages, |: connecting|% ETA| \d+/\d+ \d", screen.text())

    def bars(self, screen):
        return [t for t, _ in screen.draws if t]

    def test_pull_at_50_and_200_columns(self):
        self.seed_folders()
        for cols in (50, 200):
            with self.subTest(cols=cols):
                self.forget_local()
                screen, _ = self.run_pty(cols, "pull")
                bars = self.bars(screen)
                # folder k/N of the run's three folders, counts of each folder's own
                self.assertTrue(any(re.search(r"\[\d/3\] INBOX", b) for b in bars), bars)
                self.assertTrue(any(re.search(r"INBOX:? 120/120\b", b) for b in bars), bars)
                self.assertTrue(any(re.search(r" 12/12\b", b) for b in bars), bars)
                for b in bars:
                    for done, total in re.findall(r"(\d+)/(\d+) ", b):
                        self.assertLessEqual(int(done), int(total), b)
                if cols == 200:  # the whole name, words and the run's totals
                    self.assertTrue(any(LONG in b for b in bars), bars)
                    self.assertTrue(any(re.search(r"^test \[\d/3\] INBOX: \d+/120 messages, [\d.]+ KiB/[\d.]+ KiB, "
                                                  r"[\d.]+ \S+/s, \d+%", b) for b in bars), bars)
                    self.assertTrue(any(re.search(r"\| run: \d+ messages", b) for b in bars), bars)
                else:  # the long name shortened in its middle, its counts whole
                    self.assertFalse(any(LONG in b for b in bars), bars)
                    self.assertTrue(any(re.search(r"Arch[^.]*\.\.\..*deed:? 12/12", b) for b in bars), bars)
                self.assertEqual(screen.text(), [l for l in screen.text() if l.startswith("test: pull 3 folders")])
                self.assertEqual(len(screen.text()), 1, screen.text())
                self.assertEqual(tb.count_messages(self.maildir), 138)
        self.assertSynced()

    def test_push_and_sync_show_their_own_phase(self):
        self.seed_folders(inbox=10, long=0, sent=0)
        self.pull()
        self.add_local_new(30, seed=175)
        screen, _ = self.run_pty(50, "push")
        bars = self.bars(screen)
        self.assertTrue(any(re.search(r"INBOX up 30/30 [\d.]+K\b", b) for b in bars), bars)
        self.assertFalse(any(re.search(r"/0\b", b) for b in bars), bars)  # the old "300/0 messages"
        self.assertEqual(screen.text(), [l for l in screen.text() if l.startswith("test: push 3 folders")])
        self.assertEqual(self.server_count(), 40)
        # sync: uploads in INBOX, downloads in Sent; each on its own folder's line
        for k, m in enumerate(tb.make_corpus(5, seed=176, start=4000, flags=False)):
            (self.maildir / "INBOX" / "new" / ("1700000001.sync%d.host" % k)).write_bytes(m.data.replace(b"\r\n", b"\n"))
        with self.imap() as c:
            c.append_many("Sent", tb.make_corpus(7, seed=177, start=3000))
        screen, _ = self.run_pty(200, "sync")
        bars = self.bars(screen)
        self.assertTrue(any(re.search(r"\[\d/3\] INBOX: uploading 5/5 messages, [\d.]+ KiB", b) for b in bars), bars)
        self.assertTrue(any(re.search(r"\[\d/3\] Sent: 7/7 messages", b) for b in bars), bars)
        for b in bars:
            self.assertNotRegex(b, r"Sent: uploading|INBOX: \d+/\d+ messages|/0 ", bars)
        self.assertEqual(len(screen.text()), 1, screen.text())
        self.assertRegex(screen.text()[0], r"^test: sync 3 folders: 7 new .*; 5 uploaded")
        self.assertEqual(self.server_count(), 45)
        self.assertEqual(self.server_count("Sent"), 7)
        self.assertEqual(tb.count_messages(self.maildir), 52)

    def test_ctrl_c_notice_on_its_own_line_and_eta(self):
        """A slow pull (a throttled proxy): the ETA comes after three
        seconds and is sane; Ctrl-C's notice is a line of its own and the
        run's end leaves no partial line behind."""
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(40, seed=179, size=30000))
        with tb.Proxy(self.bed.imap_port, delay=0.03, chunk=8192) as proxy:
            self.write_config(tls="none", port=proxy.port)
            screen, text = self.run_pty(50, "pull", expect=-signal.SIGINT, until=lambda t: "ETA " in t,
                                        then=lambda p: os.kill(p.pid, signal.SIGINT))
        etas = [m for b in self.bars(screen) for m in re.findall(r"ETA (\d+):(\d\d)\b", b)]
        self.assertTrue(etas, text)
        for minutes, seconds in etas:
            self.assertLess(int(minutes) * 60 + int(seconds), 120, text)
        lines = screen.text()
        self.assertIn(STOP_NOTICE, lines)
        self.assertRegex(lines[-1], r"^test: pull 1 folders: \d+ new .*stopped early by a signal")
        self.assertLess(tb.count_messages(self.maildir), 40)

    def test_failed_run_says_so(self):
        """A refused connection: the summary says the run failed, with no
        counters that read like a success, on a terminal and off one."""
        with socketserver_closed_port() as port:
            self.write_config(tls="none", port=port)
            screen, text = self.run_pty(50, "pull", expect=4)
            r = self.mailsync("pull")
        self.assertEqual(r.code, 4, r)
        for out in ("\n".join(screen.text()), r.stdout):
            self.assertRegex(out, r"test: pull failed: .*(refused|connect)", out)
            self.assertNotRegex(out, r"\d+ folders|\d+ new", out)
        self.assertRegex(r.stdout, r"^test: pull failed: ")

    def test_dry_run_plan_lines_are_whole(self):
        """A dry run's plan (stdout, the same terminal) never lands on the
        progress line's row."""
        self.seed_folders(inbox=4, long=2, sent=2)
        screen, _ = self.run_pty(50, "--dry-run", "pull")
        lines = screen.text()
        self.assertEqual(len([l for l in lines if ": would fetch UID " in l]), 8, lines)
        for line in lines:
            self.assertRegex(line, r"^(INBOX|Sent|Archives/\S+ .*): would fetch UID |^\[dry run\] test: pull 3 folders",
                             lines)

    def test_no_escape_sequences_when_off(self):
        self.seed_folders(inbox=3, long=1, sent=1)
        for args in (["--progress=never", "pull"], ["-q", "pull"], ["--json", "pull"],
                     ["--progress=always", "-q", "pull"]):
            with self.subTest(args=args):
                _, text = self.run_pty(50, *args)
                self.assertNotIn("\x1b", text)
                self.assertNotIn("\r\r", text)
                self.assertFalse(re.search(r"\r(?!\n)", text), repr(text))
        r = self.mailsync("pull")  # auto, stderr a pipe
        self.assertEqual(r.code, 0, r)
        self.assertNotIn("\x1b", r.stderr + r.stdout)
        self.assertNotIn("\r", r.stderr + r.stdout)
        # and the same run on a terminal does draw (the checks above can fail)
        _, text = self.run_pty(50, "pull")
        self.assertIn(ERASE, text)


class socketserver_closed_port:
    """A loopback port nothing listens on (bound, then closed)."""

    def __enter__(self):
        import socket
        s = socket.socket()
        s.bind((tb.HOST, 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc):
        return False
