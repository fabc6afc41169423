# Developer and CI entry points. CI runs .ci/run, which runs `make test`.
CARGO ?= cargo

.PHONY: test fmt lint demo test-deps

## test: install what the integration tests need, then fmt check, clippy, all tests
test: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

## test-deps: sshd, ssh, ssh-keygen, promtool (installs them with apt when root)
test-deps:
	scripts/install-test-deps.sh

## fmt: format the code
fmt:
	$(CARGO) fmt --all

## lint: format check and clippy, as CI runs them
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

## demo: the self-contained demo
demo:
	$(CARGO) run --release -- demo
