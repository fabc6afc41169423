#!/bin/sh
# Makes the build context for `docker build --target prebuilt` (Dockerfile): the image
# from a tether binary built outside Docker (a release pipeline, tests/image/).
#
#   scripts/prebuilt-context.sh BINARY DIR
#   docker build --target prebuilt -f Dockerfile -t tether DIR
#
# DIR gets exactly what that stage copies: the binary as `tether`, the socket directory
# `run/tether/` (mode 0750; its owner is set by the COPY) and `config/tether.toml`.
# The binary must be a Linux x86-64 glibc build (2.36 or older, as Debian bookworm has).
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 BINARY DIR" >&2
  exit 2
fi
binary=$1 dir=$2
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$binary" ]; then
  echo "prebuilt-context: $binary is not an executable (cargo build --release --locked makes target/release/tether)" >&2
  exit 1
fi

rm -rf "$dir"
mkdir -p "$dir/config"
install -m 0755 "$binary" "$dir/tether"
install -d -m 0750 "$dir/run/tether"
install -m 0644 "$root/config/tether.toml" "$dir/config/tether.toml"
