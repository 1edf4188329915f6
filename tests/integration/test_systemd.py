"""The shipped systemd user units pass `systemd-analyze verify`."""
import os
import shutil
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = os.path.join(HERE, "..", "..", "contrib", "systemd")
BIN = os.environ.get("MAILSYNC_BIN", os.path.join(HERE, "..", "..", "build", "mailsync"))


def unit_text(name):
    with open(os.path.join(UNITS, name)) as f:
        return f.read()


class SystemdUnits(unittest.TestCase):
    def test_units_verify(self):
        analyze = shutil.which("systemd-analyze")
        self.assertIsNotNone(analyze, "systemd-analyze is needed to check the units")
        with tempfile.TemporaryDirectory() as d:
            for name in ("mailsync@.service", "mailsync@.timer", "mailsync-watch@.service"):
                text = unit_text(name)
                # The unit names the installed path; verify needs an
                # executable that exists here, so point it at the build.
                if name.endswith(".service"):
                    self.assertIn("/usr/local/bin/mailsync", text)
                text = text.replace("/usr/local/bin/mailsync", os.path.abspath(BIN))
                base = name.replace("@.", "@personal.")
                with open(os.path.join(d, base), "w") as f:
                    f.write(text)
            r = subprocess.run([analyze, "verify",
                                os.path.join(d, "mailsync@personal.service"),
                                os.path.join(d, "mailsync@personal.timer"),
                                os.path.join(d, "mailsync-watch@personal.service")],
                               capture_output=True, text=True, cwd=d)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr.strip(), "", r.stderr)

    def test_service_pulls_the_instance_account(self):
        text = unit_text("mailsync@.service")
        self.assertRegex(text, r"(?m)^ExecStart=\S+ .*pull %i$")
        self.assertRegex(text, r"(?m)^Type=oneshot$")
        self.assertRegex(text, r"(?m)^SuccessExitStatus=75$")

    def test_watch_service_watches_the_instance_account(self):
        text = unit_text("mailsync-watch@.service")
        self.assertRegex(text, r"(?m)^ExecStart=\S+ .*watch %i$")
        self.assertRegex(text, r"(?m)^Type=simple$")
        self.assertRegex(text, r"(?m)^Restart=on-failure$")


if __name__ == "__main__":
    unittest.main()
