#!/bin/sh
# Checks for the tools tether's integration tests run, and installs the missing ones with apt
# (Debian/Ubuntu) when run as root:
#   /usr/sbin/sshd     openssh-server: the tests' stand-in for the laptop
#   ssh, ssh-keygen    openssh-client: test keys, and the fixture's own self-test
#   promtool           prometheus: checks that /metrics is valid Prometheus text
#   curl               curl: runs the README's examples as printed (tests/readme.rs)
#   python3            already part of the base image
#   go                 golang-go: the Go client's tests (clients/go, Go 1.19 or later)
set -eu

missing=""
need() { # need COMMAND-OR-PATH PACKAGE
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "install-test-deps: $1 not found (package $2)"
    case " $missing " in *" $2 "*) ;; *) missing="$missing $2" ;; esac
  fi
}
need /usr/sbin/sshd openssh-server
need ssh openssh-client
need ssh-keygen openssh-client
need promtool prometheus
need curl curl
need python3 python3
need go golang-go

if [ -z "$missing" ]; then
  echo "install-test-deps: all test tools present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: not root; please install:$missing" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi
echo "install-test-deps: installing$missing (needed by the integration tests)"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # $missing is a space-separated package list
apt-get install -y --no-install-recommends $missing
