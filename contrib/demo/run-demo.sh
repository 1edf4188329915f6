#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run-demo.sh: start a throwaway Dovecot with sample mail, run `mailsync pull`
# against it, verify and summarise the Maildir, stop Dovecot.
# The Maildir stays in $DEMO_DIR (default /tmp/mailsync-demo/Mail).
# The binary: $MAILSYNC_BIN, else <repo>/build/mailsync. Extra arguments go
# to demo.py (--dir DIR, --bin PATH, --messages N).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export MAILSYNC_BIN=${MAILSYNC_BIN:-$repo/build/mailsync}
if [ ! -x /usr/sbin/dovecot ]; then
    echo "run-demo.sh: Dovecot is not installed; run contrib/demo/quickstart.sh" >&2
    exit 1
fi
exec python3 "$here/demo.py" "$@"
