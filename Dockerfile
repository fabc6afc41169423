# syntax=docker/dockerfile:1
#
# tether container image: `make image` (docker build -t tether .).
#
# Stage 1 builds the release binary on Debian bookworm; stage 2 is distroless/cc
# (glibc + libgcc, no shell, no package manager) running as the image's non-root
# user 65532. The image has no shell, so every check below uses exec form.
#
# Keep the COPY sources in step with the crate: tests/deploy/check.sh fails when a
# source named here is missing or excluded by .dockerignore, or when the crate gains
# a build.rs / benches / examples that are not copied.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src/ src/
# Cargo.toml declares the bench target (`make bench`); it is not built here, and cargo 1.95
# builds the binary without its source, but tests/deploy/check.sh wants every declared
# target copied, which also keeps older cargo versions happy.
COPY benches/ benches/
# /out/run/tether is the socket directory: a fresh named volume mounted there
# inherits this owner and mode, so tether (65532) can bind and members of group
# 65532 (the app, via group_add / fsGroup) can reach the socket.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tether \
 && install -D -m 0755 target/release/tether /out/usr/local/bin/tether \
 && install -d -m 0750 -o 65532 -g 65532 /out/run/tether

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/usr/local/bin/tether /usr/local/bin/tether
COPY --from=build --chown=65532:65532 /out/run/tether /run/tether
# The documented example config (every key, with its default). Environment
# variables (TETHER_*, legacy PALIADIN_*) override it; mount your own file over it
# or point TETHER_CONFIG elsewhere.
COPY config/tether.toml /etc/tether/tether.toml

# Inside a container 127.0.0.1 is unreachable for Prometheus and for kubelet
# probes, so the image listens on all interfaces; keep the port off the host and
# on a monitoring network only (see compose.yaml).
ENV TETHER_SERVER__ADMIN_ADDR=0.0.0.0:9477
EXPOSE 9477
VOLUME ["/run/tether"]

USER 65532:65532
# "ready" means the sidecar answers on its socket and is not draining, whatever
# the remote's state: a sleeping laptop must not mark the container unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["tether", "check", "--ready"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tether"]
CMD ["serve"]
