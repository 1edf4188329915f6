# SPDX-License-Identifier: MIT
"""test_oauth.py: OAuth2 logins (auth = xoauth2 / oauthbearer with
oauth_token_command) and POP3 AUTH (RFC 5034), against a real Dovecot that
checks every token with its oauth2 passdb through an introspection endpoint
this test serves (as Gmail's and Microsoft 365's token checks would).

IMAP and POP3 alike: the token from oauth_token_command logs in with the
mechanism asked for (Dovecot's log says which), mail arrives, the token
never reaches a log line even at -vv, and a token the provider calls
inactive is exit 3 naming the mechanism. A POP3 account with auth = plain
logs in with AUTH PLAIN, not USER/PASS (POP3 used to send the token as a
USER/PASS password)."""
import http.server
import json
import tempfile
import threading
import urllib.parse
from pathlib import Path

import testbed as tb


class _Introspection(http.server.BaseHTTPRequestHandler):
    """RFC 7662 token introspection: {"active": true, "username": U} for the
    token "tok-U" of a user the bed knows, else {"active": false}."""
    users = set()
    requests = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        token = urllib.parse.parse_qs(body).get("token", [""])[0]
        type(self).requests.append(token)
        user = token[4:] if token.startswith("tok-") else None
        ok = user in type(self).users
        data = json.dumps({"active": True, "username": user} if ok else {"active": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class _OAuthBed(tb.BedTestCase):
    """A Dovecot whose oauth2 passdb asks this test's introspection endpoint."""

    @classmethod
    def setUpClass(cls):
        cls.http = http.server.ThreadingHTTPServer((tb.HOST, 0), _Introspection)
        threading.Thread(target=cls.http.serve_forever, daemon=True).start()
        cls.addClassCleanup(cls.http.server_close)
        cls.addClassCleanup(cls.http.shutdown)
        cls.conf_dir = Path(tempfile.mkdtemp(prefix="mailsync-oauth-"))
        ext = cls.conf_dir / "oauth2.conf.ext"
        ext.write_text("introspection_mode = post\n"
                       "introspection_url = http://%s:%d/introspect\n"
                       "username_attribute = username\n"
                       "active_attribute = active\n"
                       "active_value = true\n" % (tb.HOST, cls.http.server_address[1]))
        ext.chmod(0o644)
        cls.conf_dir.chmod(0o755)
        cls.bed_options = {"pool": 8, "extra_conf": "auth_mechanisms = plain login xoauth2 oauthbearer\n"
                           "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                           "  args = %s\n}" % ext}
        super().setUpClass()
        _Introspection.users = set(cls.bed.users)

    def setUp(self):
        super().setUp()
        with self.imap() as c:
            c.append_many("INBOX", tb.make_corpus(3, seed=41))

    def login_lines(self):
        return [ln for ln in Path(self.bed.log_path).read_text(errors="replace").splitlines()
                if "Login: user=<%s>" % self.user.name in ln]

    def configure(self, kind, auth, token=None):
        token = token or "tok-" + self.user.name
        keys = dict(auth=auth, password=None)
        if auth in ("xoauth2", "oauthbearer"):
            keys["oauth_token_command"] = "echo %s" % token
        else:
            keys["password"] = self.user.password
        if kind == "pop3":
            keys.update(type="pop3", port=self.bed.pop3s_port)
        self.write_config(**keys)

    def check_login(self, kind, auth, method):
        self.configure(kind, auth)
        r = self.run_ok("-vv", "pull")
        self.assertEqual(tb.count_messages(self.maildir), 3)
        self.assertIn("authenticating as %s with %s" % (self.user.name, method), r.stderr)
        self.assertIn("method=%s" % method, self.login_lines()[-1])
        self.assertNotIn("tok-" + self.user.name, r.stderr + r.stdout)  # the secret is never logged
        self.assertNotIn(self.user.password, r.stderr + r.stdout)


class OAuthTest(_OAuthBed):
    def test_imap_xoauth2(self):
        self.check_login("imap", "xoauth2", "XOAUTH2")
        self.assertIn("tok-" + self.user.name, _Introspection.requests)

    def test_imap_oauthbearer(self):
        self.check_login("imap", "oauthbearer", "OAUTHBEARER")

    def test_pop3_xoauth2(self):
        self.check_login("pop3", "xoauth2", "XOAUTH2")

    def test_pop3_oauthbearer(self):
        self.check_login("pop3", "oauthbearer", "OAUTHBEARER")

    def test_pop3_plain_uses_auth_plain(self):
        self.check_login("pop3", "plain", "PLAIN")



class OAuthRefusedTest(_OAuthBed):
    """Failed logins on a server of their own: Dovecot delays every later
    login from the address after one (its auth penalty), which would slow
    the tests above."""

    def test_inactive_token_is_an_authentication_failure(self):
        # two failures only: each one makes Dovecot delay the next (2 s, 4 s, ...)
        for kind, auth, method in (("imap", "oauthbearer", "OAUTHBEARER"), ("pop3", "xoauth2", "XOAUTH2")):
            self.configure(kind, auth, token="tok-expired")
            r = self.mailsync("pull")
            self.assertEqual(r.code, 3, "%s %s\n%s" % (kind, auth, r))
            self.assertIn(method, r.stderr)
            self.assertNotIn("tok-expired", r.stderr)
            self.assertFalse(self.maildir.exists(), "a failed login created the Maildir")
