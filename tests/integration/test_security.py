"""test_security.py: what the binary shows and what it refuses.

- Config errors never repeat a secret: the value of password,
  password_command or oauth_token_command, or the text of a line that could
  not be parsed (stderr goes to the journal under systemd).
- A config file that others can write (or that another user owns), or a
  state directory that others can write, is refused with exit 2 before
  anything is touched: no Maildir, no state DB, nothing on the server.
- Text from outside (file names, folder names, server text) reaches stderr
  with control bytes escaped: no terminal escape sequence, no forged line.
"""

import os
import re
import unittest

import testbed as tb

SECRET = "Zq7-hunter2-Xy"


class SecurityTest(tb.BedTestCase):
    bed_options = {"pool": 20}

    def seed(self, n=3):
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(n, seed=41))

    def assertNothingTouched(self, r):
        self.assertFalse(self.maildir.exists(), "the Maildir was created\n%s" % r)
        self.assertFalse(self.state.exists(), "the state DB was created\n%s" % r)
        self.assertFalse(os.path.exists(str(self.state) + ".lock"), "a lock file was created")

    def base_lines(self):
        return ["[account test]"] + ["%s = %s" % kv for kv in self.account_keys().items()]

    def raw_config(self, lines, mode=0o600):
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.config_path, mode)

    # -- 8: no secret in a config error ---------------------------------------

    def test_config_errors_never_show_secrets(self):
        self.seed()
        k = self.account_keys(password=None)
        keys = ["%s = %s" % kv for kv in k.items()]
        cases = {
            "password without =": (["password " + SECRET], "password"),
            "password with a colon": (["password: " + SECRET], "password"),
            "a pasted password alone": ([SECRET], "line"),
            "a secret as an unknown key": ([SECRET + " = x"], "line"),
            "unknown key": (["passwd = " + SECRET], "passwd"),
            "password twice": (["password = " + SECRET, "password = " + SECRET], "password"),
            "password_command with an unset $VAR": (
                ["password_command = echo %s$ZQ7UNSETVAR" % SECRET], "password_command"),
            "section header": (["[%s]" % SECRET], "section"),
        }
        for what, (extra, key) in cases.items():
            with self.subTest(what):
                lines = ["[account test]"] + keys + extra
                self.raw_config(lines)
                r = self.mailsync("pull")
                self.assertEqual(r.code, 2, str(r))
                self.assertRegex(r.stderr, r"%s:%d: %s: " % (re.escape(str(self.config_path)),
                                                             len(lines), re.escape(key)))
                self.assertNotIn(SECRET, r.stderr + r.stdout, "secret echoed")
                self.assertNotIn("ZQ7UNSETVAR", r.stderr, "part of password_command echoed")
                self.assertNothingTouched(r)
        self.assertEqual(self.server_count(), 3)


if __name__ == "__main__":
    unittest.main()
