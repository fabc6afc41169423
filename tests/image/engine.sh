# tests/image/engine.sh: the Docker engine the image test runs on (sourced by run.sh).
#
# With DOCKER_HOST set, that engine is used and left alone. Otherwise the test starts its
# own dockerd as root, with its data, state, pid file and socket under target/image/engine/
# and its own address pools, and stops it by its pid at the end. The data root is kept
# between runs: it caches the base images. No other engine is touched.

ENGINE_DIR=$IMG/engine
ENGINE_PID=""
# The engine's bridge networks: the default bridge and the pool compose's networks come
# from (172.29.16.0/20); 172.29.40.0/24 is the test's stand-in tailnet (compose override).
ENGINE_BIP=172.29.0.1/24
ENGINE_POOL=base=172.29.16.0/20,size=24

engine_start() {
  export DOCKER_CONFIG=$IMG/docker-config # the compose plugin (install-image-test-deps.sh)
  if [[ -n "${DOCKER_HOST:-}" ]]; then
    echo "using the engine at DOCKER_HOST=$DOCKER_HOST (not started, not stopped here)"
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "image-test: starting dockerd needs root; run as root, or set DOCKER_HOST to an engine of yours" >&2
    return 1
  fi
  mkdir -p "$ENGINE_DIR"
  engine_stop_stale
  dockerd --data-root "$ENGINE_DIR/data" --exec-root "$ENGINE_DIR/exec" \
    --pidfile "$ENGINE_DIR/dockerd.pid" -H "unix://$ENGINE_DIR/docker.sock" \
    --bip "$ENGINE_BIP" --default-address-pool "$ENGINE_POOL" \
    >"$ENGINE_DIR/dockerd.log" 2>&1 &
  ENGINE_PID=$!
  export DOCKER_HOST=unix://$ENGINE_DIR/docker.sock
  echo "started dockerd (pid $ENGINE_PID, log $ENGINE_DIR/dockerd.log)"
  if ! wait_until 60 "dockerd answers on $DOCKER_HOST" docker version; then
    tail -20 "$ENGINE_DIR/dockerd.log" >&2
    return 1
  fi
}

# engine_stop_stale: a dockerd left by an aborted run of this test (its pid file, its data
# root on the command line) is ours: stop it before starting a new one.
engine_stop_stale() {
  local pid
  pid=$(cat "$ENGINE_DIR/dockerd.pid" 2>/dev/null) || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--data-root $ENGINE_DIR/data"; then
    echo "stopping the dockerd an earlier run left (pid $pid)"
    kill "$pid"
    wait_until 60 "the old dockerd (pid $pid) exits" bash -c "! kill -0 $pid 2>/dev/null"
  fi
}

engine_stop() {
  [[ -n "$ENGINE_PID" ]] || return 0
  kill "$ENGINE_PID" 2>/dev/null || true
  wait "$ENGINE_PID" 2>/dev/null || true
  echo "stopped dockerd (pid $ENGINE_PID)"
  ENGINE_PID=""
}
