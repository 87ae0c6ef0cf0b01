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
# rdkafka-sys (./configure + make: gcc, make, perl, pkg-config), with zlib.
# libssl-dev is installed too so that enabling rdkafka's `ssl` feature (TLS and
# SASL/SCRAM towards MSK; see deploy/README.md) needs no change here.
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential perl pkg-config zlib1g-dev libssl-dev \
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
    cargo build --release --locked -p fleet-preprocessor -p fleet-generator \
    && mkdir -p /out \
    && cp target/release/fleet-preprocessor target/release/fleet-generator /out/ \
    && if [ "$STRIP_DEBUG" = 1 ]; then strip --strip-debug /out/*; fi

# Runtime stage: Debian slim (glibc, libz, bash). ca-certificates (which pulls
# in libssl3) is there for TLS towards Kafka once it is enabled; remote write
# uses rustls with its own root certificates. User fleet (10001) runs both
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
# No HEALTHCHECK here, on purpose:
# - the image runs two programs (fleet-generator has no HTTP endpoint) and the
#   listen address is configurable, so one built-in check would be wrong for
#   some containers;
# - Kubernetes ignores HEALTHCHECK and ECS uses the task definition's own: both
#   probe /healthz and /readyz directly (deploy/kubernetes, deploy/ecs);
# - there is no curl; where a Docker-level check is wanted, bash's /dev/tcp
#   does it (docker-compose.yml and deploy/ecs/task-definition.json do so):
#   bash -c 'exec 3<>/dev/tcp/127.0.0.1/9464 && printf "GET /healthz HTTP/1.0\r\n\r\n" >&3 && read -r s <&3 && [[ $s == *" 200 "* ]]'
# SIGTERM (docker stop, Kubernetes, ECS) is a graceful stop: the service
# drains for up to kafka.drain_timeout_ms (10 s) and commits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["fleet-preprocessor"]
