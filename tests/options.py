#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""options.py: every command-line option the parser takes (cmd/main.c's
longopts) is told of everywhere a user looks for it: the help texts
(cmd/main.c's general --help or cmd/help.c), mailsync(1), and the bash,
zsh and fish completions (ctest unit.options). The options are written in
each of these by hand; this check makes a forgotten one fail CI rather
than go unseen. --self-test plants an option the parser takes and no text
mentions, in a copy of the tree, and expects it caught."""
import argparse
import os
import re
import shutil
import sys
import tempfile

FILES = {
    "help": ["cmd/main.c", "cmd/help.c"],
    "mailsync(1)": ["contrib/mailsync.1"],
    "bash completion": ["contrib/completions/mailsync.bash"],
    "zsh completion": ["contrib/completions/_mailsync"],
    "fish completion": ["contrib/completions/mailsync.fish"],
}


def read(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read()


def parser_options(root):
    """The long options of cmd/main.c's longopts table, in order."""
    src = read(root, "cmd/main.c")
    table = re.search(r"longopts\[\]\s*=\s*\{(.*?)\{NULL,", src, re.S)
    if not table:
        raise SystemExit("options.py: no longopts table in cmd/main.c")
    return re.findall(r'\{"([a-z][a-z-]*)",', table.group(1))


def mentioned(where, name, text):
    """Is --name in the text, in the way that kind of file writes it?"""
    if where == "mailsync(1)":
        return ("\\-\\-" + name.replace("-", "\\-")) in text
    if where == "fish completion":
        return re.search(r"-l %s\b" % re.escape(name), text) is not None
    if where == "help":
        # a help text: "--name" inside a C string
        return re.search(r'"[^"\n]*--%s\b' % re.escape(name), text) is not None
    return re.search(r"--%s\b" % re.escape(name), text) is not None


def missing(root):
    out = []
    names = parser_options(root)
    if len(names) < 5:
        raise SystemExit("options.py: only %d options found in longopts: the pattern is stale" % len(names))
    for where, rels in FILES.items():
        text = "\n".join(read(root, r) for r in rels)
        for name in names:
            if not mentioned(where, name, text):
                out.append("--%s is not in the %s (%s)" % (name, where, ", ".join(rels)))
    return out


def self_test():
    src_root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    with tempfile.TemporaryDirectory() as tmp:
        for rels in FILES.values():
            for rel in rels:
                os.makedirs(os.path.join(tmp, os.path.dirname(rel)), exist_ok=True)
                shutil.copy(os.path.join(src_root, rel), os.path.join(tmp, rel))
        if missing(tmp):
            print("self-test: the copy of the tree already misses options", file=sys.stderr)
            return 1
        path = os.path.join(tmp, "cmd/main.c")
        src = read(tmp, "cmd/main.c")
        planted = src.replace('{"help", no_argument', '{"zzz-planted", no_argument, NULL, 0},\n        {"help", no_argument', 1)
        if planted == src:
            print("self-test: cannot plant an option", file=sys.stderr)
            return 1
        with open(path, "w", encoding="utf-8") as f:
            f.write(planted)
        got = missing(tmp)
        if len(got) != len(FILES) or not all("--zzz-planted" in g for g in got):
            print("self-test: the planted option was not caught everywhere: %s" % got, file=sys.stderr)
            return 1
    print("self-test: ok (a planted option is caught in all %d places)" % len(FILES))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    bad = missing(a.root)
    for b in bad:
        print("options.py: " + b, file=sys.stderr)
    if not bad:
        print("options.py: %d options, each in the help, mailsync(1) and the three completions"
              % len(parser_options(a.root)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
