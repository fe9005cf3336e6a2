# syntax=docker/dockerfile:1
#
# xmpp-edge container image: a release build on Debian bookworm, run from a
# distroless image (glibc, CA certificates, no shell, no package manager) as
# the unprivileged user 65532.
#
#   docker build -t registry.example.com/xmpp-edge:0.1.0 .
#   docker run --rm -p 5280:5280 -p 9280:9280 \
#     -v "$PWD/my-config.toml:/etc/xmpp-edge/xmpp-edge.toml:ro" \
#     registry.example.com/xmpp-edge:0.1.0
#
# The Helm chart (helm/xmpp-edge) mounts its own configuration and passes
# `run --config /etc/xmpp-edge/config/xmpp-edge.toml`.

# Rust 1.85 or newer (edition 2024). Pin a digest for reproducible builds.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the
# binary is copied out of the cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin xmpp-edge \
 && install -D -m 0755 target/release/xmpp-edge /out/xmpp-edge \
 && /out/xmpp-edge check-config config/xmpp-edge.toml >/dev/null

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/xmpp-edge /usr/local/bin/xmpp-edge
# The example configuration, so the image starts without one; mount yours
# over it (or elsewhere, with --config).
COPY config/xmpp-edge.toml /etc/xmpp-edge/xmpp-edge.toml
USER 65532:65532
# 5280 HTTP (BOSH, WebSocket, host-meta); 8443 HTTPS when certificates are
# configured (a non-root process cannot bind 443: set tls.listen to
# 0.0.0.0:8443 and map 443 to it, as the chart does); 9280 metrics and
# probes; 5290 the cluster listener (peers only).
EXPOSE 5280 8443 9280 5290
ENTRYPOINT ["/usr/local/bin/xmpp-edge"]
CMD ["run", "--config", "/etc/xmpp-edge/xmpp-edge.toml"]
