# tests/image/images.sh: the images the test runs (sourced by run.sh), all built with the
# classic builder and --network none (no registry, no BuildKit frontend to pull):
#
#   tether:test              the repository's Dockerfile, target `prebuilt`, on $BASE_CC,
#                            from the host's debug build (what `make test` already has)
#   tether-test/laptop:test  OpenSSH sshd on 22022 with `tether shim` as the forced command
#   tether-test/app:test     the app: a shell, curl, `tether call` and the Go client (turn)
#   tether-test/prometheus:test  Debian's prometheus binary, as the host has it
#
# Each image is built from a context under target/image/ctx/; unchanged inputs reuse the
# engine's layer cache.

TETHER_IMAGE=tether:test
LAPTOP_IMAGE=tether-test/laptop:test
APP_IMAGE=tether-test/app:test
PROMETHEUS_IMAGE=tether-test/prometheus:test
CTX=$IMG/ctx

# build_image TAG CONTEXT [docker build options]: the classic builder, no network, no pull.
build_image() {
  local tag=$1 ctx=$2; shift 2
  # (its output only when it fails: the classic builder warns that it is deprecated)
  if ! DOCKER_BUILDKIT=0 docker build --network none --build-arg "BASE=$BASE_DEBIAN" \
    -t "$tag" "$@" "$ctx" >"$CTX/build.log" 2>&1; then
    cat "$CTX/build.log" >&2
    return 1
  fi
  echo "built $tag"
}

# stage_context NAME: a fresh context directory with the test's own files for NAME.
stage_context() {
  rm -rf "${CTX:?}/$1" && mkdir -p "$CTX" && cp -r "$ROOT/tests/image/$1" "$CTX/$1"
}

build_images() {
  # The debug binary without its debug sections: the same code, a tenth of the size.
  mkdir -p "$CTX"
  strip --strip-debug -o "$CTX/tether" "$TETHER_BIN"
  "$ROOT/scripts/prebuilt-context.sh" "$CTX/tether" "$CTX/tether-image"
  build_image "$TETHER_IMAGE" "$CTX/tether-image" --target prebuilt \
    -f "$ROOT/Dockerfile" --build-arg "RUNTIME_IMAGE=$BASE_CC"

  stage_context laptop
  cp "$CTX/tether" "$CTX/laptop/tether"
  build_image "$LAPTOP_IMAGE" "$CTX/laptop"

  stage_context app
  cp "$CTX/tether" "$CTX/app/tether"
  (cd "$ROOT/tests/image/turn" &&
    GOCACHE=$IMG/go/cache GOPATH=$IMG/go/path GOFLAGS=-mod=mod CGO_ENABLED=0 \
      go build -o "$CTX/app/turn" .)
  build_image "$APP_IMAGE" "$CTX/app"

  stage_context prometheus
  cp "$(command -v prometheus)" "$CTX/prometheus/prometheus"
  build_image "$PROMETHEUS_IMAGE" "$CTX/prometheus"
}
