#!/usr/bin/env bash
# Run a command (an `apt-get install`) with Debian's invoke-rc.d policy saying "do not start
# services" (exit 101), so that installing mariadb-server or nginx starts nothing: the test suite
# and the demo run their own instances. The policy file is removed again in every exit path
# (success, failure, Ctrl-C); one that was already there is the machine's own and is left alone.
#   usage: hold-services.sh COMMAND [ARG...]
# RESYNC_POLICY_RC_D names another path (tests).
set -euo pipefail
policy=${RESYNC_POLICY_RC_D:-/usr/sbin/policy-rc.d}
MARK="# written by resync's scripts/hold-services.sh for one apt-get run; removed after it"

if [ -e "$policy" ]; then
  exec "$@"
fi
remove() { rm -f -- "$policy"; }
child=""
stop() { [ -z "$child" ] || kill "-$1" "$child" 2>/dev/null || true; remove; exit "$2"; }
trap remove EXIT
trap 'stop INT 130' INT
trap 'stop TERM 143' TERM
printf '#!/bin/sh\n%s\nexit 101\n' "$MARK" >"$policy"
chmod 0755 "$policy"
# in the background and waited for: a signal interrupts `wait` at once (a foreground child would
# delay the trap until it ends)
"$@" &
child=$!
rc=0
wait "$child" || rc=$?
exit "$rc"
