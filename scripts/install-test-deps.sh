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

who=install-test-deps
# shellcheck source=scripts/apt-need.sh
. "$(dirname "$0")/apt-need.sh"
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
install_missing "the integration tests"
