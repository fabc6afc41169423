#!/usr/bin/env bash
# tests/image/run.sh (`make image-test`): the image and the compose project on a real
# Docker engine. Builds the local base images, tether:test from the host's debug build, a
# laptop (OpenSSH sshd + `tether shim`), an app and Prometheus; runs the repository's
# compose.yaml through tests/image/compose.override.yaml; checks what a user would notice;
# prints each phase's time. docs/deploy.md describes it.
#
# Needs root (dockerd, debootstrap): scripts/install-image-test-deps.sh installs docker.io,
# debootstrap and the compose plugin. Environment: TETHER_BIN (default target/debug/tether),
# DOCKER_HOST (use that engine instead of starting one), IMAGE_TEST_KEEP=1 (leave the project
# and the engine running, for a look; stop the engine by its pid in target/image/engine/).
# Ends with "image-test: N passed, N failed"; exits 1 when a check failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
IMG=$ROOT/target/image
TETHER_BIN=${TETHER_BIN:-$ROOT/target/debug/tether}
mkdir -p "$IMG"

for part in lib engine base images project scenarios; do
  # shellcheck source=/dev/null
  source "$ROOT/tests/image/$part.sh"
done

[[ -x "$TETHER_BIN" ]] || { echo "image-test: no $TETHER_BIN (cargo build --locked makes it)" >&2; exit 1; }

finish() {
  local rc=$?
  if ((FAILED > 0 || rc != 0)); then
    echo "--- the last lines of tether's and the laptop's logs"; compose logs --no-color --tail 15 tether laptop 2>&1 | cut -c1-400 || true
  fi
  if [[ "${IMAGE_TEST_KEEP:-}" == 1 ]]; then
    echo "kept: compose -p $PROJECT (DOCKER_HOST=${DOCKER_HOST:-})"
    return
  fi
  project_down
  engine_stop
}
trap finish EXIT

phase "engine"
engine_start
phase "base images"
base_images
phase "images"
build_images
phase "compose up"
project_files
project_up
check "tether's container: user 65532, read-only, no capabilities, 128 MiB, no port" container_hardening

phase "the app calls through the socket"
check "socket directory 0750 and socket 0660, both 65532:65532; the app is 1000 in group 65532" socket_permissions
check "the app: /v1/health and tether call health" app_calls_health
check "the app: a streamed run-turn arrives as the laptop writes it (curl -N, tether call)" app_streams_turn
check "a uid outside group 65532 cannot connect" outsider_refused
check "the laptop's key works only from tether's address" key_pinned_to_tether

phase "Prometheus"
check "Prometheus scrapes /metrics and loads the alert rules" prometheus_scrapes
check "the admin port is not reachable from the host or the app network" admin_port_closed

phase "laptop stopped and started"
check "laptop stopped: healthy, down, fail fast, alert pending; started: up, no tether restart" laptop_down_and_up

phase "restart mid-turn"
check "the placeholder app stops on SIGTERM, not by SIGKILL after 10 s" app_stops_on_sigterm
check "docker compose restart tether mid-turn: Turn gets the one run's answer, audited ran once" restart_mid_turn

phase "16 MiB calls"
check "8 buffered and 8 streamed 16 MiB calls under 128 MiB: answered, no OOM kill" memory_under_load

summary
