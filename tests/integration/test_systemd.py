# SPDX-License-Identifier: MIT
"""The shipped systemd user units, as `cmake --install` writes them: they
name the installed program (the install prefix, not a fixed path), pass
`systemd-analyze verify`, and behave as users of a laptop expect: the timer
is calendar-based, persistent across sleep and spread out; no unit waits
for network-online.target (meaningless in a user manager); an offline run
is not a failed unit; the watch service is Type=notify with a watchdog
(the protocol itself is tested in test_watch.WatchUnderSystemdTest)."""
import os
import shutil
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("MAILSYNC_BIN", os.path.join(HERE, "..", "..", "build", "mailsync"))
UNITS = ("mailsync@.service", "mailsync@.timer", "mailsync-watch@.service")


class SystemdUnits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        build = os.path.dirname(os.path.abspath(BIN))
        if not os.path.exists(os.path.join(build, "cmake_install.cmake")):
            raise AssertionError("%s is not a CMake build directory (MAILSYNC_BIN=%s)" % (build, BIN))
        cls.tmp = tempfile.mkdtemp(prefix="mailsync-install-")
        cls.prefix = os.path.join(cls.tmp, "some prefix")
        r = subprocess.run(["cmake", "--install", build, "--prefix", cls.prefix],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError("cmake --install failed:\n" + r.stdout + r.stderr)
        cls.unit_dir = os.path.join(cls.prefix, "lib", "systemd", "user")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def unit_text(self, name):
        with open(os.path.join(self.unit_dir, name)) as f:
            return f.read()

    def test_units_name_the_installed_program(self):
        installed = os.path.join(self.prefix, "bin", "mailsync")
        self.assertTrue(os.access(installed, os.X_OK))
        for name in ("mailsync@.service", "mailsync-watch@.service"):
            text = self.unit_text(name)
            line = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")][0]
            self.assertTrue(line.startswith("ExecStart=" + installed + " "), line)
            self.assertNotIn("@MAILSYNC_BINDIR@", text)

    def test_completions_are_installed(self):
        for rel in ("share/bash-completion/completions/mailsync", "share/zsh/vendor-completions/_mailsync",
                    "share/fish/vendor_completions.d/mailsync.fish"):
            self.assertTrue(os.path.isfile(os.path.join(self.prefix, rel)), rel)

    def test_man_pages_are_installed(self):
        for rel in ("share/man/man1/mailsync.1", "share/man/man5/mailsync.conf.5"):
            self.assertTrue(os.path.isfile(os.path.join(self.prefix, rel)), rel)

    def test_units_verify(self):
        analyze = shutil.which("systemd-analyze")
        self.assertIsNotNone(analyze, "systemd-analyze is needed to check the units")
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for name in UNITS:
                # systemd-analyze wants an ExecStart= path without a blank
                text = self.unit_text(name).replace(os.path.join(self.prefix, "bin", "mailsync"),
                                                    os.path.abspath(BIN))
                base = name.replace("@.", "@personal.")
                paths.append(os.path.join(d, base))
                with open(paths[-1], "w") as f:
                    f.write(text)
            # verify also runs `man` on Documentation=: the installed page
            env = dict(os.environ, MANPATH=os.path.join(self.prefix, "share", "man"))
            r = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, cwd=d, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr.strip(), "", r.stderr)

    def test_no_unit_waits_for_network_online(self):
        for name in UNITS:
            text = self.unit_text(name)
            self.assertNotIn("network-online.target", text.replace("# No network-online.target", ""), name)
            self.assertRegex(text, r"(?m)^Documentation=man:mailsync\(1\)$", name)

    def test_service_pulls_the_instance_account(self):
        text = self.unit_text("mailsync@.service")
        self.assertRegex(text, r"(?m)^ExecStart=\S+ .*pull %i$")
        self.assertRegex(text, r"(?m)^Type=oneshot$")
        # 75: locked by another run; 4: offline (no failed unit piles up)
        self.assertRegex(text, r"(?m)^SuccessExitStatus=4 75$")

    def test_timer_is_calendar_based_persistent_and_spread(self):
        text = self.unit_text("mailsync@.timer")
        self.assertRegex(text, r"(?m)^OnCalendar=\S+$")
        self.assertRegex(text, r"(?m)^Persistent=true$")
        self.assertRegex(text, r"(?m)^RandomizedDelaySec=\S+$")
        self.assertNotRegex(text, r"(?m)^OnUnitInactiveSec=")
        analyze = shutil.which("systemd-analyze")
        cal = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("OnCalendar=")][0]
        r = subprocess.run([analyze, "calendar", "--iterations=2", cal], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_watch_service_watches_the_instance_account(self):
        text = self.unit_text("mailsync-watch@.service")
        self.assertRegex(text, r"(?m)^ExecStart=\S+ .*watch %i$")
        self.assertRegex(text, r"(?m)^Type=notify$")
        self.assertRegex(text, r"(?m)^WatchdogSec=\S+$")
        self.assertRegex(text, r"(?m)^Restart=on-failure$")


if __name__ == "__main__":
    unittest.main()
