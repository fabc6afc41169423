# Developer and CI entry points. CI runs .ci/run, which runs `make test`.
CARGO ?= cargo

.PHONY: test fmt lint demo bench bench-shim test-deps deploy-check go-test image image-prebuilt image-test

## test: install what the integration tests need, then fmt check, clippy, all tests, deploy
## checks, the Go client's tests, the image test
test: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked
	$(MAKE) deploy-check
	$(MAKE) go-test
	$(MAKE) image-test

## deploy-check: alert rules, dashboard, compose, Dockerfile and Helm chart (tests/deploy/check.sh)
deploy-check:
	$(CARGO) build --locked
	TETHER_BIN=target/debug/tether bash tests/deploy/check.sh

## go-test: the Go client (clients/go): go vet, then go test against `tether demo` (TETHER_BIN)
## (Go's caches live under target/, so CI needs no $$HOME.)
go-test:
	$(CARGO) build --locked
	cd clients/go && export GOCACHE=$(CURDIR)/target/go/cache GOPATH=$(CURDIR)/target/go/path && \
	  go vet ./... && TETHER_BIN=$(CURDIR)/target/debug/tether go test -count=1 ./...

## bench: tether against ssh per call, an OpenSSH ControlMaster and a raw russh exec, against
## a real sshd with the test shim and with `tether shim` (release build; about 6 minutes);
## prints tables, writes target/bench/compare.json. Knobs: BENCH_CALLS, BENCH_SSH_CALLS,
## BENCH_PROXY_CALLS, BENCH_SECONDS, BENCH_STREAM_LINES, BENCH_SHIM_CALLS, BENCH_PROXY_SHIM_CALLS
## (benches/compare/main.rs)
bench: test-deps
	$(CARGO) bench --locked --bench compare

## bench-shim: tether shim's start-up cost against /bin/true through sshd, and a replay
## against a fresh run (release build; knob BENCH_SHIM_CALLS)
bench-shim: test-deps
	$(CARGO) bench --locked --bench shim

## image: the container image (needs a Docker engine with BuildKit, and a registry)
image:
	docker build -t tether .

## image-prebuilt: the same image from a binary built here (TETHER_BINARY, default the release
## build); no network, no BuildKit needed (Dockerfile target `prebuilt`)
TETHER_BINARY ?= target/release/tether
image-prebuilt:
	scripts/prebuilt-context.sh $(TETHER_BINARY) target/image-context
	docker build --target prebuilt -f Dockerfile -t tether target/image-context

## image-test: the image and the compose project on a real Docker engine (tests/image/run.sh,
## docs/deploy.md): starts and stops its own dockerd (as root) unless DOCKER_HOST is set;
## installs docker.io, debootstrap and the compose plugin when missing (saying so)
image-test:
	$(CARGO) build --locked
	scripts/install-image-test-deps.sh
	TETHER_BIN=target/debug/tether bash tests/image/run.sh

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
