# tests/image/project.sh: the compose project under test (sourced by run.sh): the
# repository's compose.yaml with tests/image/compose.override.yaml, and an .env that points
# it at the local images and the laptop, as an operator's .env does.
#
# Keys and the .env (which holds tether's private key) live in target/image/keys/ (mode
# 0700), the test's credentials directory; the laptop's sshd gets its host key and the
# authorized_keys line from target/image/laptop-etc/, mounted read-only.

PROJECT=tether-image-test
KEYS=$IMG/keys
LAPTOP_ETC=$IMG/laptop-etc
TAILNET_SUBNET=172.29.40.0/24
TETHER_ADDR=172.29.40.2
LAPTOP_ADDR=172.29.40.10
VOLUME=${PROJECT}_tether-run
SOCK=/run/tether/tether.sock

compose() {
  docker compose -p "$PROJECT" --profile monitoring -f "$ROOT/compose.yaml" -f "$ROOT/tests/image/compose.override.yaml" \
    --env-file "$KEYS/.env" "$@"
}

# project_files: keys (made once), the laptop's sshd files, the .env, prometheus.yml.
project_files() {
  mkdir -p "$KEYS" "$LAPTOP_ETC" && chmod 0700 "$KEYS" && chmod 0755 "$LAPTOP_ETC"
  [[ -f "$KEYS/tether_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C tether -f "$KEYS/tether_ed25519"
  [[ -f "$LAPTOP_ETC/ssh_host_ed25519_key" ]] ||
    ssh-keygen -q -t ed25519 -N '' -C laptop -f "$LAPTOP_ETC/ssh_host_ed25519_key"
  # The production line (docs/shim.md): forced command, source address, no pty, no tunnels.
  echo "command=\"/usr/local/bin/tether shim\",from=\"$TETHER_ADDR\",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc $(cat "$KEYS/tether_ed25519.pub")" \
    >"$LAPTOP_ETC/authorized_keys"
  chmod 0644 "$LAPTOP_ETC/authorized_keys"
  (
    umask 077
    cat >"$KEYS/.env" <<ENV
APP_IMAGE=$APP_IMAGE
TETHER_IMAGE=$TETHER_IMAGE
TETHER_MONITORING_NETWORK=$PROJECT-monitoring
PALIADIN_REMOTE_HOST=$LAPTOP_ADDR
PALIADIN_REMOTE_PORT=22022
PALIADIN_REMOTE_USER=m
PALIADIN_SSH_PRIVATE_KEY=$(base64 -w0 "$KEYS/tether_ed25519")
PALIADIN_KNOWN_HOSTS=[$LAPTOP_ADDR]:22022 $(cut -d' ' -f1,2 "$LAPTOP_ETC/ssh_host_ed25519_key.pub")
TEST_TETHER_ADDR=$TETHER_ADDR
TEST_LAPTOP_ADDR=$LAPTOP_ADDR
TEST_TAILNET_SUBNET=$TAILNET_SUBNET
TEST_LAPTOP_IMAGE=$LAPTOP_IMAGE
TEST_LAPTOP_ETC=$LAPTOP_ETC
TEST_PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE
TEST_PROMETHEUS_YML=$IMG/prometheus.yml
ENV
  )
  sed -e 's/^\(  scrape_interval:\).*/\1 2s/' -e 's/^\(  evaluation_interval:\).*/\1 2s/' \
    "$ROOT/deploy/prometheus/prometheus.yml" >"$IMG/prometheus.yml"
  grep -q 'scrape_interval: 2s' "$IMG/prometheus.yml" && grep -q 'evaluation_interval: 2s' "$IMG/prometheus.yml"
}

project_up() {
  project_down
  compose up -d --pull never --wait --wait-timeout 90 app tether laptop prometheus
}

project_down() {
  compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
}

# in_app COMMAND...: runs COMMAND in the app container, as compose.yaml's app user.
in_app() { compose exec -T app "$@"; }

# container ID SERVICE: the container of SERVICE.
container() { compose ps --all -q "$1"; }

# inspect SERVICE FORMAT: docker inspect of SERVICE's container.
inspect() { docker inspect -f "$2" "$(container "$1")"; }
