# SPDX-License-Identifier: MIT
"""The shell completions in contrib/completions, driven by the real shells:
bash (with bash-completion, the words split as readline splits them), zsh
(an interactive zsh in a pseudo-terminal, TAB pressed) and fish
(`complete -C`). Each must complete commands, option values after
`--progress=` (bash used to insert a space and complete nothing there),
and account names read from the config file given with -c."""
import os
import shutil
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
CONTRIB = os.path.join(ROOT, "contrib", "completions")
HARNESS = os.path.join(ROOT, "tests", "completions")
COMMANDS = ["check", "fetch", "folders", "help", "import", "pull", "push", "status", "sync", "watch"]


class Completions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mailsync-compl-")
        cls.cfg = os.path.join(cls.tmp, "config")
        with open(cls.cfg, "w") as f:
            f.write("[account work]\nhost = a\n\n[account home]\nhost = b\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def shell(self, name):
        path = shutil.which(name)
        self.assertIsNotNone(path, "%s is needed to test its completion (.ci/install-deps installs it)" % name)
        return path

    def run_shell(self, argv):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, HOME=self.tmp, MAILSYNC_CONFIG="/nonexistent"))
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def bash(self, line):
        """(completions, compopt calls) for line."""
        bash = self.shell("bash")
        self.assertTrue(os.path.exists("/usr/share/bash-completion/bash_completion"), "bash-completion missing")
        r = subprocess.run([bash, "-c", 'exec 3>&1; bash "$0" "$1" "$2" 3>&2',
                            os.path.join(HARNESS, "bash_complete.sh"),
                            os.path.join(CONTRIB, "mailsync.bash"), line],
                           capture_output=True, text=True, timeout=60, env=dict(os.environ, HOME=self.tmp))
        self.assertEqual(r.returncode, 0, r.stderr)
        return sorted(r.stdout.split()), r.stderr

    def zsh(self, *lines):
        """{line: completions} (one interactive zsh serves all lines)."""
        out = self.run_shell([self.shell("zsh"), "-f", os.path.join(HARNESS, "zsh_complete.zsh"), CONTRIB, *lines])
        got, cur = {}, None
        for ln in out.splitlines():
            if ln.startswith("== "):
                cur = got.setdefault(ln[3:], [])
            elif cur is not None:
                cur.append(ln)
        return got

    def fish(self, line):
        out = self.run_shell([self.shell("fish"), "--no-config", "-c",
                              "source %s; complete -C%s" % (os.path.join(CONTRIB, "mailsync.fish"),
                                                             _fish_quote(line))])
        return sorted(ln.split("\t")[0] for ln in out.splitlines())

    def test_bash(self):
        self.assertEqual(self.bash("mailsync --progress="), (["always", "auto", "never"], ""))
        self.assertEqual(self.bash("mailsync --progress=al")[0], ["always"])
        words, calls = self.bash("mailsync --prog")
        self.assertEqual(words, ["--progress="])
        self.assertIn("compopt -o nospace", calls)  # the value follows the '=' directly
        self.assertEqual(self.bash("mailsync ")[0], COMMANDS)
        self.assertEqual(self.bash("mailsync -c %s pull " % self.cfg)[0], ["home", "work"])
        self.assertEqual(self.bash("mailsync --config=%s -v sync w" % self.cfg)[0], ["work"])
        self.assertEqual(self.bash("mailsync --from ")[0], ["mbsync", "offlineimap"])

    def test_zsh(self):
        lines = ["mailsync --progress=", "mailsync ", "mailsync -c %s pull " % self.cfg, "mailsync --from="]
        self.assertEqual(self.zsh(*lines), {
            lines[0]: ["always", "auto", "never"],
            lines[1]: COMMANDS,
            lines[2]: ["home", "work"],
            lines[3]: ["mbsync", "offlineimap"]})

    def test_fish(self):
        self.assertEqual(self.fish("mailsync --progress="),
                         ["--progress=always", "--progress=auto", "--progress=never"])
        self.assertEqual(self.fish("mailsync "), COMMANDS)
        self.assertEqual(self.fish("mailsync -c %s pull " % self.cfg), ["home", "work"])
        self.assertEqual(self.fish("mailsync --from "), ["mbsync", "offlineimap"])


def _fish_quote(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


if __name__ == "__main__":
    unittest.main()
