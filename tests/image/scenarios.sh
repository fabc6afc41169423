# tests/image/scenarios.sh: what a user of the compose project would notice (sourced by
# run.sh). Each function is one check (run by `check` with set -e); each waits against a
# deadline, never a fixed sleep.

# curl_app ARGS...: curl on tether's socket from the app container.
curl_app() { in_app curl -sS --unix-socket "$SOCK" "$@"; }

health_status() { curl_app http://tether/v1/health | sed -n 's/^{"status":"\([a-z]*\)".*/\1/p'; }

# health_is STATUS: /v1/health's overall status is STATUS.
health_is() { [[ "$(health_status)" == "$1" ]]; }

b64() { printf '%s' "$1" | base64 -w0; }

new_uuid() { cat /proc/sys/kernel/random/uuid; }

# --- the container as compose runs it
container_hardening() {
  want_eq "tether's user" "$(inspect tether '{{.Config.User}}')" "65532:65532"
  want_eq "read-only root" "$(inspect tether '{{.HostConfig.ReadonlyRootfs}}')" true
  want_eq "capabilities dropped" "$(inspect tether '{{.HostConfig.CapDrop}}')" "[ALL]"
  want_eq "security options" "$(inspect tether '{{.HostConfig.SecurityOpt}}')" "[no-new-privileges:true]"
  want_eq "memory limit" "$(inspect tether '{{.HostConfig.Memory}}')" 134217728
  want_eq "published ports" "$(inspect tether '{{json .HostConfig.PortBindings}}')" "{}"
  local pid
  pid=$(inspect tether '{{.State.Pid}}')
  want_eq "tether's process uid/gid" "$(awk '/^Uid:|^Gid:/ { printf "%s ", $2 }' "/proc/$pid/status")" "65532 65532 "
  echo "tether runs as 65532:65532, read-only, cap_drop ALL, no-new-privileges, 128 MiB, no published port"
}

socket_permissions() {
  want_eq "socket directory (the volume, from the image)" "$(in_app stat -c '%a %u:%g' /run/tether)" "750 65532:65532"
  want_eq "socket" "$(in_app stat -c '%a %u:%g' "$SOCK")" "660 65532:65532"
  want_eq "the app's user and groups" "$(in_app id -u) $(in_app id -G)" "1000 1000 65532"
}

app_calls_health() {
  wait_until 20 "/v1/health says up" health_is up
  local out
  out=$(curl_app -w '\nHTTP %{http_code}' http://tether/v1/health)
  echo "$out"
  grep -q '^HTTP 200$' <<<"$out"
  out=$(in_app tether call health s1)
  want_eq "tether call health s1" "$out" ok
}

# A streamed turn of 4 lines 0.5 s apart, with each line's arrival time in the app: the
# first line must arrive well before the turn ends, as the laptop writes it.
app_streams_turn() {
  local uuid out first last
  uuid=$(new_uuid)
  out=$(in_app sh -c 'curl -sS -N --unix-socket "$1" http://tether/v1/call -d "$2" |
    while IFS= read -r line; do printf "%s %s\n" "$(date +%s.%N)" "$line"; done' sh "$SOCK" \
    "{\"verb\": \"run-turn\", \"stream\": true, \"args\": [\"s1\", \"$uuid\", \"$(b64 '4 0.5')\"]}")
  echo "$out"
  want_eq "stdout events" "$(grep -c '"event":"stdout"' <<<"$out")" 4
  grep -q '"event":"exit".*"exit_status":0' <<<"$out"
  first=$(grep -m1 '"event":"stdout"' <<<"$out" | cut -d' ' -f1)
  last=$(grep '"event":"exit"' <<<"$out" | cut -d' ' -f1)
  awk -v a="$first" -v b="$last" 'BEGIN { printf "first line %.2f s before the end\n", b - a; exit !(b - a > 1.0) }'
  out=$(in_app tether call run-turn s1 "$(new_uuid)" "$(b64 '2 0.1')")
  echo "$out"
  want_eq "tether call run-turn: lines" "$(grep -c "line ./2$" <<<"$out")" 2
}

# A container that mounts the same volume as a uid outside group 65532 (no group_add)
# cannot connect; the same with the group can.
outsider_refused() {
  local rc=0
  docker run --rm --pull never --user 1001:1001 -v "$VOLUME:/run/tether:nocopy" "$APP_IMAGE" \
    curl -sS --unix-socket "$SOCK" http://tether/v1/health || rc=$?
  want_eq "curl's exit status as uid 1001 (7: could not connect)" "$rc" 7
  docker run --rm --pull never --user 1001:1001 --group-add 65532 -v "$VOLUME:/run/tether:nocopy" \
    "$APP_IMAGE" curl -sS -o /dev/null -w 'with --group-add 65532: HTTP %{http_code}\n' \
    --unix-socket "$SOCK" http://tether/v1/health
}

# The key works only from tether's address (from=): another host on the tailnet is refused.
key_pinned_to_tether() {
  local rc=0 out
  out=$(docker run --rm --pull never --network "${PROJECT}_tailnet" -v "$KEYS:/keys:ro" "$BASE_DEBIAN" \
    ssh -i /keys/tether_ed25519 -o StrictHostKeyChecking=no -o BatchMode=yes -p 22022 \
    "m@$LAPTOP_ADDR" health 2>&1) || rc=$?
  echo "$out"
  want_eq "ssh's exit status from another address" "$rc" 255
  grep -q 'Permission denied' <<<"$out"
}

# --- the laptop goes away and comes back
laptop_down_and_up() {
  local started stopped_at t0 t1 out
  started=$(inspect tether '{{.State.StartedAt}}')
  compose stop laptop
  stopped_at=$(date +%s)
  t0=$EPOCHREALTIME
  wait_until 15 "/v1/health says down" health_is down
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "down %.1f s after the laptop stopped\n", b - a }'

  out=$(curl_app -w '\nHTTP %{http_code} %{time_total}' http://tether/v1/call -d '{"verb": "reset", "args": ["s1"]}')
  echo "$out"
  grep -q '"code":"upstream_unreachable"' <<<"$out"
  # nothing waits out the verb's timeout: at most one connection attempt (connect_timeout 2 s)
  awk '/^HTTP/ { printf "answered in %.0f ms\n", $3 * 1000; exit !($2 == 503 && $3 < 2.5) }' <<<"$out"

  prometheus_alerts_while_laptop_down

  # Docker's own healthcheck, run after the laptop stopped, still says healthy.
  wait_until 30 "a healthcheck run after the laptop stopped" healthchecks_since "$stopped_at"
  healthchecks_since "$stopped_at" | sed 's/^/healthcheck after the laptop stopped: /'
  if healthchecks_since "$stopped_at" | grep -v ' exit 0$'; then fail "a healthcheck failed"; fi
  want_eq "tether's health while the laptop is stopped" "$(inspect tether '{{.State.Health.Status}}')" healthy

  compose start laptop
  wait_until 30 "/v1/health says up again" health_is up
  want_eq "tether was not restarted" "$(inspect tether '{{.State.StartedAt}}')" "$started"
  want_eq "tether call health s1 after the laptop is back" "$(in_app tether call health s1)" ok
}

# healthchecks_since EPOCH: Docker's healthcheck runs of tether that started after EPOCH
# ("TIME exit STATUS"); fails when there is none.
healthchecks_since() {
  inspect tether '{{range .State.Health.Log}}{{.Start.Unix}} exit {{.ExitCode}}{{println}}{{end}}' |
    awk -v t="$1" '$1 > t' | grep .
}

# --- stopping the project
# compose.yaml's placeholder app stops on SIGTERM (exit 0) rather than being killed after
# Docker's 10 s, which every stop, restart and down of the project would wait for.
app_stops_on_sigterm() {
  local t0
  t0=$EPOCHREALTIME
  compose stop app
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "stopped in %.1f s\n", b - a; exit !(b - a < 5) }'
  want_eq "the app's exit status" "$(inspect app '{{.State.ExitCode}}')" 0
  compose start app
}

# --- tether restarts while a turn runs
# The app's Go client (Turn) runs in its own container on the same volume: compose restarts
# the app service with tether (depends_on restart: true), which would end a process in it.
restart_mid_turn() {
  local uuid out started audit
  uuid=$(new_uuid)
  started=$(inspect tether '{{.State.StartedAt}}')
  docker run --rm --pull never --user 1000:1000 --group-add 65532 -v "$VOLUME:/run/tether:nocopy" \
    "$APP_IMAGE" turn -session s2 -uuid "$uuid" -message "20 0.5" -timeout 90s \
    >"$IMG/turn.out" 2>"$IMG/turn.err" &
  local turn_pid=$!
  wait_until 20 "the turn runs on the laptop (tether shim --journal)" \
    bash -c "docker exec -u m $(container laptop) tether shim --journal | grep -q ' running .* $uuid\$'"
  compose restart tether
  [[ "$(inspect tether '{{.State.StartedAt}}')" != "$started" ]] || fail "tether was not restarted"
  wait "$turn_pid" || { cat "$IMG/turn.err"; fail "the turn got no answer"; }
  out=$(cat "$IMG/turn.out")
  echo "$out" | sed -n '1p;$p'
  want_eq "lines of the answer" "$(grep -c "^turn $uuid run " <<<"$out")" 20
  want_eq "runs in the answer" "$(cut -d' ' -f4 <<<"$out" | sort -u | wc -l)" 1
  audit=$(docker exec "$(container laptop)" cat /home/m/.local/state/tether/audit.jsonl | grep "\"key\":\"$uuid\"")
  echo "$audit" | sed 's/.*"outcome":"\([a-z]*\)".*/laptop audit: \1/'
  want_eq "audit lines with outcome ran" "$(grep -c '"outcome":"ran"' <<<"$audit")" 1
  grep -q '"outcome":"attached"\|"outcome":"replayed"' <<<"$audit"
}

# --- memory: 8 buffered and 8 streamed calls of 16 MiB at once, under the 128 MiB limit
memory_under_load() {
  local cg peak started
  started=$(inspect tether '{{.State.StartedAt}}')
  cg=$(memory_cgroup "$(inspect tether '{{.State.Pid}}')")
  echo 0 >"$cg/memory.max_usage_in_bytes" 2>/dev/null || true # cgroup v1: reset the peak
  in_app sh -c 'for i in 1 2 3 4 5 6 7 8; do
      curl -sS --unix-socket "$1" http://tether/v1/call -d "{\"verb\": \"dump\"}" \
        -o /tmp/dump$i -w "%{http_code}\n" >/tmp/code$i &
    done; wait
    for i in 1 2 3 4 5 6 7 8; do
      echo "call $i: HTTP $(cat /tmp/code$i), $(tr -cd x </tmp/dump$i | wc -c) bytes, $(grep -o "\"stdout_truncated\":[a-z]*" /tmp/dump$i)"
    done; rm -f /tmp/dump* /tmp/code*' sh "$SOCK" >"$IMG/dump.out"
  cat "$IMG/dump.out"
  want_eq "buffered calls answered 200" "$(grep -c ': HTTP 200,' "$IMG/dump.out")" 8
  # each is whole, or cut by max_buffered_bytes and flagged so
  want_eq "buffered calls whole or flagged" \
    "$(grep -c ' 16777216 bytes, "stdout_truncated":false$\|"stdout_truncated":true$' "$IMG/dump.out")" 8
  in_app sh -c 'for i in 1 2 3 4 5 6 7 8; do
      (echo "stream $i: $(tether call dump | wc -c) bytes") &
    done; wait' >"$IMG/stream.out"
  cat "$IMG/stream.out"
  want_eq "streamed calls with all 16 MiB" "$(grep -c ': 16777216 bytes$' "$IMG/stream.out")" 8
  peak=$(memory_peak "$cg")
  echo "tether's peak memory (cgroup): $((peak / 1048576)) MiB of 128 MiB"
  echo "peak_bytes=$peak" >"$IMG/memory-peak"
  want_eq "OOM killed" "$(inspect tether '{{.State.OOMKilled}}')" false
  want_eq "tether restarted" "$(inspect tether '{{.State.StartedAt}}')" "$started"
}

# memory_cgroup PID: the memory cgroup directory of PID (cgroup v1 or v2).
memory_cgroup() {
  local rel
  if rel=$(grep -m1 ':memory:' "/proc/$1/cgroup"); then
    echo "/sys/fs/cgroup/memory${rel#*:memory:}"
  else
    echo "/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$1/cgroup")"
  fi
}

memory_peak() {
  cat "$1/memory.max_usage_in_bytes" 2>/dev/null || cat "$1/memory.peak"
}

# --- Prometheus on the monitoring network
prom() {
  curl -sS --get "http://$(prometheus_addr):9090/api/v1/$1" ${2:+--data-urlencode "$2"}
}

prometheus_addr() {
  inspect prometheus "{{(index .NetworkSettings.Networks \"$PROJECT-monitoring\").IPAddress}}"
}

prometheus_scrapes() {
  wait_until 30 "Prometheus scrapes tether (up == 1)" \
    bash -c "curl -sS --get 'http://$(prometheus_addr):9090/api/v1/query' --data-urlencode 'query=up{job=\"tether\"}' | grep -q '\"value\":\[[0-9.]*,\"1\"\]'"
  prom query 'query=tether_target_up{target="paliadin"}' | grep -q '"value":\[[0-9.]*,"1"\]'
  local want got
  want=$(sed -n 's/^ *- alert: *//p' "$ROOT/charts/tether/files/tether.rules.yml" | sort | tr '\n' ' ')
  got=$(prom rules | grep -o '"name":"Tether[A-Za-z]*"' | cut -d'"' -f4 | sort | tr '\n' ' ')
  want_eq "alert rules loaded from charts/tether/files/tether.rules.yml" "$got" "$want"
  echo "scraping tether; rules: $got"
}

# While the laptop is stopped (called from laptop_down_and_up): TetherLaptopUnreachable is
# pending (it fires after its 15 m, as an info alert: a sleeping laptop never pages), and
# nothing says tether itself is down.
prometheus_alerts_while_laptop_down() {
  wait_until 30 "TetherLaptopUnreachable pending" \
    bash -c "curl -sS 'http://$(prometheus_addr):9090/api/v1/alerts' | grep -q '\"alertname\":\"TetherLaptopUnreachable\".*\"severity\":\"info\".*\"state\":\"pending\"'"
  local alerts
  alerts=$(prom alerts)
  if grep -q '"alertname":"TetherDown"' <<<"$alerts"; then fail "TetherDown is active: $alerts"; fi
  echo "TetherLaptopUnreachable is pending, TetherDown is not active"
}

# tether's admin port: published nowhere, unreachable from the app's network.
admin_port_closed() {
  local rc=0 addr
  curl -sS -m 2 http://127.0.0.1:9477/livez 2>&1 || rc=$?
  [[ $rc -ne 0 ]] || fail "tether's admin port answers on the host's 127.0.0.1:9477"
  rc=0
  in_app curl -sS -m 2 http://tether:9477/livez || rc=$?
  [[ $rc -ne 0 ]] || fail "tether:9477 answers from the app's network"
  addr=$(inspect tether "{{(index .NetworkSettings.Networks \"$PROJECT-monitoring\").IPAddress}}")
  rc=0
  in_app curl -sS -m 2 "http://$addr:9477/livez" || rc=$?
  [[ $rc -ne 0 ]] || fail "tether's monitoring address $addr:9477 answers from the app's network"
  echo "not reachable from the host's loopback nor from the app network (Prometheus, on the monitoring network, scrapes it)"
}
