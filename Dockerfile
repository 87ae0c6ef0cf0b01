# fleet-preprocessor container image: the service and fleet-generator.
#
#   docker build -t fleet-preprocessor .
#   docker run --rm -p 9464:9464 fleet-preprocessor            # embedded generator → JSON lines on stdout
#   docker run --rm --entrypoint fleet-generator fleet-preprocessor --help
#
# Configuration: FLEET__SECTION__KEY environment variables (for example
# FLEET__KAFKA__BROKERS=b-1.msk:9092) or a TOML file given with `--config`
# (see config/default.toml for every key).
#
# Build stage: rust on Debian bookworm. librdkafka is compiled from source by
# rdkafka-sys (./configure + make: gcc, make, perl, pkg-config), with zlib,
# and with OpenSSL built from source and linked in (rdkafka's `ssl-vendored`:
# TLS, SASL/SCRAM and MSK IAM towards MSK), so no libssl is needed.
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential perl pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# 1 (default): strip debug info (the release profile keeps line tables: about
# 60 MiB → 12 MiB per binary). Symbols stay, and panic messages keep their
# file:line. 0: keep it, for profiling inside the container.
ARG STRIP_DEBUG=1
# The registry and target/ are cache mounts: a rebuild after a source change
# recompiles only the workspace crates. The binaries are copied out of the
# cache mount within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fleet-preprocessor -p fleet-generator-cli \
    && mkdir -p /out \
    && cp target/release/fleet-preprocessor target/release/fleet-generator /out/ \
    && if [ "$STRIP_DEBUG" = 1 ]; then strip --strip-debug /out/*; fi

# Runtime stage: Debian slim (glibc, libz). ca-certificates holds the CA
# store librdkafka's TLS towards Kafka verifies brokers with (remote write uses
# rustls with its own root certificates). User fleet (10001) runs both
# programs; /shared is a directory it may write: docker-compose.yml mounts a
# volume there for the reference CSV its containers share (a new named volume
# takes the owner of the image's directory).
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fleet \
    && useradd --system --uid 10001 --gid fleet --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin fleet \
    && install -d -o 10001 -g 10001 /shared
COPY --from=builder /out/fleet-preprocessor /out/fleet-generator /usr/local/bin/

LABEL org.opencontainers.image.title="fleet-preprocessor" \
      org.opencontainers.image.description="Streaming telemetry preprocessor for vehicle fleets: Kafka → VIN/model join → 5 s event-time windows → Prometheus remote write" \
      org.opencontainers.image.licenses="Apache-2.0"

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# /metrics, /healthz (liveness) and /readyz (readiness), from telemetry.listen
# (default 0.0.0.0:9464).
EXPOSE 9464
# Liveness by the binary itself (no shell or curl needed): it asks /healthz on
# telemetry.listen. Orchestrators probe /readyz too: Kubernetes with its own
# probes (deploy/kubernetes), ECS with the task definition's health check,
# docker-compose with `fleet-preprocessor healthcheck --ready`. The generator's
# containers override it (it has no HTTP endpoint).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/fleet-preprocessor", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["fleet-preprocessor"]
