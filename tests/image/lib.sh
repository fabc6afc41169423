# tests/image/lib.sh: the image test's helpers (sourced by run.sh): phases with their time,
# checks that count, and polling against a deadline.

PASSED=0 FAILED=0
FAILURES=()
PHASE_NAME="" PHASE_START=0
PHASE_TIMES=()

# phase NAME: ends the running phase (printing its time) and starts NAME.
phase() {
  phase_end
  PHASE_NAME=$1 PHASE_START=$EPOCHREALTIME
  echo; echo "=== $PHASE_NAME"
}

phase_end() {
  [[ -n "$PHASE_NAME" ]] || return 0
  local secs
  secs=$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $PHASE_START }")
  echo "=== $PHASE_NAME: $secs s"
  PHASE_TIMES+=("$(printf '%6s s  %s' "$secs" "$PHASE_NAME")")
  PHASE_NAME=""
}

# check DESCRIPTION COMMAND...: runs the command with `set -e` (a failing step fails it),
# shows its output indented, counts it. (It runs as a background job and is waited for:
# inside `cmd || ...` bash would ignore set -e.)
check() {
  local desc=$1; shift
  local rc=0
  (set -e; "$@") >"$IMG/check.out" 2>&1 &
  wait $! || rc=$?
  sed 's/^/    /' "$IMG/check.out"
  if [[ $rc -eq 0 ]]; then
    echo "ok   $desc"; PASSED=$((PASSED + 1))
  else
    echo "FAIL $desc (exit $rc)"; FAILED=$((FAILED + 1)); FAILURES+=("$desc")
  fi
}

# fail MESSAGE: prints MESSAGE on stderr and fails (for use inside a checked function).
fail() { echo "$*" >&2; return 1; }

# want_eq WHAT GOT WANT: fails with both values unless they are equal.
want_eq() {
  [[ "$2" == "$3" ]] || fail "$1: got '$2', want '$3'"
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until it succeeds, or
# fails with DESCRIPTION and COMMAND's last output once SECONDS have passed.
wait_until() {
  local limit=$1 desc=$2; shift 2
  local deadline out
  deadline=$(($(date +%s%N) + limit * 1000000000))
  while true; do
    if out=$("$@" 2>&1); then
      return 0
    fi
    if (($(date +%s%N) > deadline)); then
      fail "not within ${limit}s: $desc (last: $out)"
      return 1
    fi
    sleep 0.2
  done
}

# summary: prints every phase's time and the counts; exit status 1 when a check failed.
summary() {
  phase_end
  echo; echo "=== phase times"
  printf '%s\n' "${PHASE_TIMES[@]}"
  if ((FAILED > 0)); then
    echo; echo "failed:"; printf '  %s\n' "${FAILURES[@]}"
  fi
  echo "image-test: $PASSED passed, $FAILED failed"
  ((FAILED == 0))
}
