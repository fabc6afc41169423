#
# tether container image. Two ways to build the same image:
#
#   make image             docker build -t tether .
#                          stage `build` compiles the release binary on Debian bookworm
#                          (needs BuildKit for its cache mounts, and a registry for the images)
#   make image-prebuilt    docker build --target prebuilt -t tether CONTEXT
#                          from a binary built outside (release pipelines, tests/image/);
#                          CONTEXT is made by scripts/prebuilt-context.sh. Needs no network,
#                          no BuildKit: the classic builder stops at that stage.
#
# Both end in the stage `runtime`: distroless/cc (glibc + libgcc, no shell, no package
# manager) running as the image's non-root user 65532, with every line of the final image
# but the binary and the socket directory. The image has no shell, so every check below
# uses exec form.
#
# Keep the COPY sources in step with the crate: tests/deploy/check.sh fails when a
# source named here is missing or excluded by .dockerignore, or when the crate gains
# a build.rs / benches / examples that are not copied.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUNTIME_IMAGE} AS runtime
# The documented example config (every key, with its default). Environment
# variables (TETHER_*, legacy PALIADIN_*) override it; mount your own file over it
# or point TETHER_CONFIG elsewhere.
COPY config/tether.toml /etc/tether/tether.toml

# Inside a container 127.0.0.1 is unreachable for Prometheus and for kubelet
# probes, so the image listens on all interfaces; keep the port off the host and
# on a monitoring network only (see compose.yaml).
ENV TETHER_SERVER__ADMIN_ADDR=0.0.0.0:9477
EXPOSE 9477
# /run/tether is the socket directory (added by the stages below, owner 65532, mode
# 0750): a fresh named volume mounted there inherits this owner and mode, so tether
# can bind and members of group 65532 (the app, via group_add / fsGroup) can reach
# the socket.
VOLUME ["/run/tether"]

USER 65532:65532
# "ready" means the sidecar answers on its socket and is not draining, whatever
# the remote's state: a sleeping laptop must not mark the container unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["tether", "check", "--ready"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tether"]
CMD ["serve"]

# The image from a prebuilt binary. The context (scripts/prebuilt-context.sh) holds
# `tether`, `run/tether/` (mode 0750) and `config/tether.toml`. `run/` is copied, not
# `run/tether/`: COPY of a directory copies its contents into a destination made with
# the default mode 0755, while the entries inside keep their own mode.
FROM runtime AS prebuilt
COPY tether /usr/local/bin/tether
COPY --chown=65532:65532 run/ /run/

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src/ src/
# Cargo.toml declares the bench target (`make bench`); it is not built here, and cargo 1.95
# builds the binary without its source, but tests/deploy/check.sh wants every declared
# target copied, which also keeps older cargo versions happy.
COPY benches/ benches/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tether \
 && install -D -m 0755 target/release/tether /out/usr/local/bin/tether \
 && install -d -m 0750 /out/run/tether

# The default: the image from the binary built above (same layout as `prebuilt`).
FROM runtime AS release
COPY --from=build /out/usr/local/bin/tether /usr/local/bin/tether
COPY --from=build --chown=65532:65532 /out/run/ /run/
