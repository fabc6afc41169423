#!/bin/sh
# Test shim for tether's integration tests: the forced command of the test sshd.
#
# Usage (from authorized_keys): command="/path/shim.sh LOGFILE"
# Reads the requested command from $SSH_ORIGINAL_COMMAND, appends one line per invocation to
# LOGFILE ("<unix time> <verb> <args...>") and the command exactly as received, NUL-terminated,
# to LOGFILE.raw, then runs the verb. Seed verbs mimic the real shim;
# the others exist for fault and size tests.
set -uf
log="${1:?usage: shim.sh LOGFILE}"
printf '%s\0' "${SSH_ORIGINAL_COMMAND:-}" >> "$log.raw"
# shellcheck disable=SC2086 # word splitting is the point: args never contain spaces.
set -- ${SSH_ORIGINAL_COMMAND:-}
printf '%s %s\n' "$(date +%s.%N)" "$*" >> "$log"
verb="${1:-}"
[ $# -gt 0 ] && shift

case "$verb" in
  health) echo ok ;;
  run-turn)
    msg=$(printf '%s' "${3:-}" | base64 -d) || { echo "bad base64" >&2; exit 3; }
    printf 'reply: %s\n' "$msg" ;;
  reset) printf 'reset %s\n' "${1:-}" ;;
  sleep) sleep "${1:-1}"; printf 'slept %s\n' "${1:-1}" ;;
  cat) cat ;;
  fail) echo "failing with status ${1:-1}" >&2; exit "${1:-1}" ;;
  big) head -c "${1:-0}" /dev/zero | tr '\0' 'x' ;;
  stderr) printf '%s\n' "$*" >&2 ;;
  drip) # drip COUNT SECONDS: COUNT lines "line I UNIXTIME", SECONDS apart
    i=1
    while [ "$i" -le "${1:-3}" ]; do
      printf 'line %s %s\n' "$i" "$(date +%s.%N)"
      i=$((i + 1))
      if [ "$i" -le "${1:-3}" ]; then sleep "${2:-0.3}"; fi
    done ;;
  seq) seq 1 "${1:-10}" ;;
  busy) # what tether shim prints when one of its limits is reached
    echo "tether shim: busy: 8 keyed runs already (max_running = 8); try again later" >&2
    exit 2 ;;
  linger) # a background child holds stdout open for SECONDS after the verb itself exits
    sleep "${1:-30}" &
    echo started ;;
  spew) # a background child writes to stdout without pause for up to SECONDS
    timeout "${1:-30}" yes spew &
    echo started ;;
  *) echo "unknown verb" >&2; exit 2 ;;
esac
