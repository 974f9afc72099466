#!/usr/bin/env bash
# Runs a long, quiet command (pip's install) and says every SECONDS that it is still at it,
# so `make install` is never a silent minute; exits with the command's own status.
# Usage: tools/ticking.sh SECONDS WHAT COMMAND [ARG ...]   (tests/test_install_progress.py)
set -u
every=$1 what=$2
shift 2
"$@" &
command=$!
(
  waited=0
  while sleep "$every"; do
    waited=$((waited + every))
    echo "  still $what (${waited} s)"
  done
) &
ticker=$!
wait "$command"
status=$?
kill "$ticker" 2>/dev/null
wait "$ticker" 2>/dev/null
exit "$status"
