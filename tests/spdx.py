#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""spdx.py: every source file of the tree names its licence in an SPDX line
near its top (ctest unit.spdx). --fix adds the missing lines; --self-test
plants an unmarked file in a temporary tree and expects it to be caught.

Source files: C (.c .h), Python, shell (.sh, and scripts whose first line is
a sh/bash shebang), CMake (CMakeLists.txt, *.cmake, *.in), the shell
completions, the systemd units and the man pages. Test data (fuzz corpora,
.eml messages) is not source and carries no line."""
import argparse
import os
import shutil
import sys
import tempfile

TAG = "SPDX-License-Identifier: MIT"
SKIP_DIRS = {".git", "tests/fuzz/corpus", "tests/fuzz/crashes", "debian"}
HEAD_LINES = 3


def comment_style(path):
    """How a line comment is written in this file, or None if not source."""
    name = os.path.basename(path)
    ext = os.path.splitext(name)[1]
    if ext in (".c", ".h"):
        return ("/* ", " */")
    if ext in (".py", ".sh", ".cmake", ".zsh", ".fish", ".timer", ".service", ".in") \
            or name == "CMakeLists.txt":
        return ("# ", "")
    if ext in (".1", ".5"):
        return ('.\\" ', "")
    if "/completions/" in path.replace(os.sep, "/"):
        return ("# ", "")
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError:
        return None
    if first.startswith(b"#!") and (b"sh" in first or b"python" in first):
        return ("# ", "")
    return None


def sources(root):
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        dirnames[:] = sorted(d for d in dirnames
                             if (rel + "/" + d).lstrip("./") not in SKIP_DIRS
                             and d not in SKIP_DIRS
                             and not d.startswith("build")
                             and not (rel == "." and d in ("obj-x86_64-linux-gnu",)))
        for fn in sorted(filenames):
            p = os.path.join(dirpath, fn)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            style = comment_style(p)
            if style:
                yield p, style


def has_tag(path):
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        head = [f.readline() for _ in range(HEAD_LINES)]
    return any(TAG in line for line in head)


def fix(path, style):
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    line = style[0] + TAG + style[1] + "\n"
    if text.startswith("#!") or text.startswith("#compdef"):
        nl = text.index("\n") + 1
        text = text[:nl] + line + text[nl:]
    else:
        text = line + text
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)


def check(root, do_fix=False):
    missing = [(p, s) for p, s in sources(root) if not has_tag(p)]
    if do_fix:
        for p, s in missing:
            fix(p, s)
        return []
    return [os.path.relpath(p, root) for p, _ in missing]


def self_test(root):
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "sync"))
        os.makedirs(os.path.join(tmp, "tests/fuzz/corpus/x"))
        good = os.path.join(tmp, "sync/good.c")
        bad = os.path.join(tmp, "sync/bad.h")
        script = os.path.join(tmp, "run")
        data = os.path.join(tmp, "tests/fuzz/corpus/x/seed")
        with open(good, "w") as f:
            f.write("/* " + TAG + " */\nint x;\n")
        with open(bad, "w") as f:
            f.write("int y;\n")
        with open(script, "w") as f:
            f.write("#!/bin/bash\necho hi\n")
        with open(data, "w") as f:
            f.write("* OK\n")
        got = sorted(check(tmp))
        if got != ["run", "sync/bad.h"]:
            print("self-test: expected run and sync/bad.h unmarked, got %r" % got)
            return 1
        check(tmp, do_fix=True)
        if check(tmp):
            print("self-test: --fix left files unmarked")
            return 1
        with open(script) as f:
            if not f.readline().startswith("#!"):
                print("self-test: --fix moved the shebang")
                return 1
    print("self-test: ok")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--fix", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test(a.root)
    missing = check(a.root, a.fix)
    for p in missing:
        print("%s: no '%s' line in its first %d lines" % (p, TAG, HEAD_LINES))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
