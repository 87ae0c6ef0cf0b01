#!/usr/bin/env bash
# Builds the container image from the repository's Dockerfile and checks it
# as a user runs it (README, "The container image"):
#
#   bash scripts/test-image.sh [build | check]
#
# With no argument it does all of the below; `build` stops after step 3,
# `check` starts at step 4 with the image built before (the test command
# builds it in the background while its tests run).
#
# 1. Picks the engine: Docker when its engine answers, otherwise podman (as
#    root here: `--runtime runc` when runc is installed, and rlimits the
#    kernel lets a container have). Where neither can run a container, it
#    says so and exits 0: the image is then not checked.
# 2. The images the Dockerfile starts `FROM`, when they can be neither found
#    nor pulled, are made as stand-ins under the same names:
#    - `debian:<release>-slim`: `debootstrap --variant=minbase <release>`;
#    - `rust:<version>-<release>`: the same plus ca-certificates, the
#      certificate authorities this machine added locally
#      (/usr/local/share/ca-certificates: an egress proxy's, for cargo to
#      reach crates.io through it) and this machine's own Rust toolchain
#      (`rustc --print sysroot`), with the official image's CARGO_HOME,
#      RUSTUP_HOME and PATH.
# 3. Builds the Dockerfile unchanged (`--format docker` keeps its
#    HEALTHCHECK under podman).
# 4. Checks the image: user 10001, a read-only root filesystem, the health
#    check, the embedded default printing windows, then the service suite's
#    `image` tests (ignored in a plain `cargo test`): the image's generator
#    and service against real Tansu and Prometheus on loopback, configured by
#    FLEET__* variables only, compared with the batch oracle, and SIGTERM.
# 5. Prints the image's size and its binaries' sizes.
# 6. Starts docker-compose.yml's services (scripts/lib/image-compose.sh)
#    with Docker Compose v2 (under podman, through `podman system service`)
#    and the compose file's own configuration files, Tansu standing in for Apache Kafka
#    (scripts/lib/compose-stand-ins.yml) and Debian's Prometheus for
#    prom/prometheus when it cannot be pulled; Grafana is not started. Checks
#    that windows reach Prometheus, that it scrapes the preprocessor and loads
#    every alert rule, the compose health check, and a clean stop.
#
# FLEET_TEST_IMAGE names the image (default localhost/fleet-preprocessor:test).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test-image: %s\n' "$*"; }

# Every step that waits on the engine, the network or a build is bounded, so
# a stuck engine fails the run with its name instead of holding it.
bounded() {
    local seconds="$1" status=0
    shift
    timeout --kill-after=30 "$seconds" "$@" || status=$?
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        log "TIMED OUT after $seconds s: $*"
    fi
    return "$status"
}

# Where scripts/install-test-deps.sh puts Docker Compose v2.
export PATH="$PATH:$HOME/.local/bin"

phase="${1:-all}"
case "$phase" in
    all | build | check) ;;
    *)
        log "usage: bash scripts/test-image.sh [build | check]; got '$phase'"
        exit 2
        ;;
esac
image="${FLEET_TEST_IMAGE:-localhost/fleet-preprocessor:test}"
work="$(mktemp -d "${TMPDIR:-/var/tmp}/fleet-image.XXXXXX")"
cleanup() {
    if [ -n "${compose_service_pid:-}" ]; then
        kill "$compose_service_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- The engine ------------------------------------------------------------

engine=()
run_options=()
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    engine=(docker)
elif command -v podman >/dev/null 2>&1; then
    engine=(podman)
    # crun fails on some kernels' hybrid cgroups; runc works on them.
    if command -v runc >/dev/null 2>&1; then
        engine+=(--runtime runc)
    fi
    # Podman asks for the caller's rlimits, which a container here may not be
    # given; these are within what it may.
    run_options=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
else
    log "SKIPPED: neither a Docker engine nor podman is available, so the image was not built or checked"
    exit 0
fi
log "engine: ${engine[*]}"

# `rust:1-bookworm` and `debian:bookworm-slim` from the Dockerfile's ARG defaults.
dockerfile_arg() {
    sed -n "s/^ARG $1=//p" Dockerfile | head -n 1
}
rust_version="$(dockerfile_arg RUST_VERSION)"
release="$(dockerfile_arg DEBIAN_RELEASE)"
rust_image="docker.io/library/rust:${rust_version}-${release}"
slim_image="docker.io/library/debian:${release}-slim"

has_image() {
    bounded 60 "${engine[@]}" image inspect "$1" >/dev/null 2>&1
}

# A minimal Debian root filesystem in $1 (about 30 s).
debootstrap_rootfs() {
    local rootfs="$1"
    shift
    local mirror
    mirror="${FLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    log "debootstrap --variant=minbase $* $release from $mirror"
    bounded 900 debootstrap --variant=minbase "$@" "$release" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log"
        return 1
    }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
}

make_slim_standin() {
    local rootfs="$work/slim"
    debootstrap_rootfs "$rootfs"
    tar -C "$rootfs" -c . | bounded 600 "${engine[@]}" import --change 'CMD ["bash"]' - "$slim_image" >/dev/null 2>&1
    rm -rf "$rootfs"
}

make_rust_standin() {
    local rootfs="$work/rust" sysroot have
    sysroot="$(rustc --print sysroot)"
    have="$(rustc --version | cut -d' ' -f2)"
    case "$have" in
        "$rust_version" | "$rust_version".*) ;;
        *)
            log "the Dockerfile asks for rust:$rust_version; this machine's toolchain is $have: cannot stand in for it"
            return 1
            ;;
    esac
    debootstrap_rootfs "$rootfs" --include=ca-certificates
    log "adding this machine's Rust toolchain $have ($sysroot, without its documentation)"
    mkdir -p "$rootfs/usr/local/rust" "$rootfs/usr/local/cargo/bin" "$rootfs/usr/local/rustup"
    for part in bin lib libexec etc; do
        if [ -d "$sysroot/$part" ]; then
            cp -a "$sysroot/$part" "$rootfs/usr/local/rust/"
        fi
    done
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        log "trusting this machine's local certificate authorities: $(ls /usr/local/share/ca-certificates | tr '\n' ' ')"
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null
    fi
    for tool in "$rootfs"/usr/local/rust/bin/*; do
        ln -s "/usr/local/rust/bin/$(basename "$tool")" "$rootfs/usr/local/cargo/bin/"
    done
    tar -C "$rootfs" -c . | bounded 600 "${engine[@]}" import \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        - "$rust_image" >/dev/null 2>&1
    rm -rf "$rootfs"
}

# Finds, pulls or makes (with the function $2) the image $1.
need_image() {
    local name="$1" make="$2"
    if has_image "$name"; then
        log "image $name: present"
        return 0
    fi
    if timeout 120 "${engine[@]}" pull "$name" >"$work/pull.log" 2>&1; then
        log "image $name: pulled"
        return 0
    fi
    log "image $name cannot be pulled ($(tail -n 1 "$work/pull.log")); making a stand-in"
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "debootstrap is missing: install Debian's debootstrap package (scripts/install-test-deps.sh does)"
        return 1
    fi
    "$make"
    log "image $name: stand-in made"
}

need_image "$slim_image" make_slim_standin

# Can this machine run a container at all?
if ! bounded 180 "${engine[@]}" run --rm "${run_options[@]}" --network none --entrypoint true "$slim_image" >"$work/probe.log" 2>&1; then
    log "SKIPPED: ${engine[*]} cannot run a container on this machine, so the image was not built or checked:"
    sed 's/^/test-image:   /' "$work/probe.log" | tail -n 5
    exit 0
fi

build_options=()
if [ "${engine[0]}" = podman ]; then
    build_options=(--format docker "${run_options[@]}")
fi

# --- Build -----------------------------------------------------------------

if [ "$phase" != check ]; then
    need_image "$rust_image" make_rust_standin
    log "building $image from Dockerfile"
    started=$(date +%s)
    bounded 2700 "${engine[@]}" build "${build_options[@]}" --network host -t "$image" . 2>&1 \
        | tee "$work/build.log" | grep -E 'STEP [0-9]|COMMIT|^Error' || true
    if ! has_image "$image" || grep -q '^Error' "$work/build.log"; then
        log "the build failed; its end:"
        tail -n 40 "$work/build.log"
        exit 1
    fi
    log "built in $(($(date +%s) - started)) s"
    # The build stage's image is left untagged; it holds the toolchain and
    # build output (more than 1 GB).
    bounded 300 "${engine[@]}" image prune --force >/dev/null 2>&1 || true
fi
if [ "$phase" = build ]; then
    exit 0
fi
if ! has_image "$image"; then
    log "FAILED: no image $image to check; build it with \`bash scripts/test-image.sh build\`"
    exit 1
fi

# --- Checks ----------------------------------------------------------------

run() {
    bounded 120 "${engine[@]}" run --rm "${run_options[@]}" "$@"
}

failures=0
check() {
    local what="$1"
    shift
    if "$@"; then
        log "ok: $what"
    else
        log "FAILED: $what"
        failures=$((failures + 1))
    fi
}

runs_as_fleet() {
    local configured id
    configured="$(bounded 60 "${engine[@]}" image inspect --format '{{.Config.User}}' "$image")"
    id="$(run --read-only --network none --entrypoint id "$image" -u)"
    log "image user: '$configured'; a container's uid: $id"
    [ "$configured" = "10001:10001" ] && [ "$id" = 10001 ]
}

# The embedded default on a read-only root filesystem: window lines on
# stdout, and the image's own health check passing while it runs.
default_run_prints_windows_and_is_healthy() {
    local name="fleet-image-check-$$" failed=0
    # Podman without systemd says it cannot schedule the HEALTHCHECK's timer;
    # `healthcheck run` below runs it.
    bounded 120 "${engine[@]}" run -d --name "$name" "${run_options[@]}" --read-only --network none \
        "$image" 2>&1 >/dev/null | grep -v 'systemd connection' >&2 || true
    # The logs go to a file first: a reader that stops at the first match
    # would end `logs` with SIGPIPE, which pipefail takes for a failure.
    for _ in $(seq 1 60); do
        bounded 30 "${engine[@]}" logs "$name" >"$work/default-run.log" 2>/dev/null || true
        grep -q '"window_start' "$work/default-run.log" && break
        sleep 1
    done
    if grep -q '"window_start' "$work/default-run.log"; then
        grep -m 2 '"window_start' "$work/default-run.log" | sed 's/^/test-image:   /'
    else
        log "no window printed in 60 s"
        failed=1
    fi
    if [ "${engine[0]}" = podman ]; then
        if bounded 60 "${engine[@]}" healthcheck run "$name"; then
            log "podman healthcheck run (the image's HEALTHCHECK): healthy"
        else
            log "podman healthcheck run (the image's HEALTHCHECK): unhealthy"
            failed=1
        fi
    fi
    if bounded 60 "${engine[@]}" exec "$name" fleet-preprocessor healthcheck; then
        log "fleet-preprocessor healthcheck in the container: exit 0"
    else
        failed=1
    fi
    bounded 120 "${engine[@]}" rm -f "$name" >/dev/null 2>&1 || true
    [ "$failed" = 0 ]
}

check "runs as uid 10001" runs_as_fleet
check "read-only root, no configuration: prints windows, health check passes" \
    default_run_prints_windows_and_is_healthy

log "the image against Tansu and Prometheus (the service suite's image tests)"
export FLEET_TEST_IMAGE="$image"
export FLEET_TEST_CONTAINER_ENGINE="${engine[*]}"
export FLEET_TEST_CONTAINER_RUN_OPTIONS="${run_options[*]}"
# cargo test passes when no test matches: the image tests must have run.
image_tests() {
    bounded 1800 cargo test --workspace --features fleet-testkit/integration --test suite \
        -- --ignored --nocapture image:: 2>&1 | tee "$work/image-tests.log"
    [ "${PIPESTATUS[0]}" = 0 ] && grep -q '^test result: ok\. [1-9]' "$work/image-tests.log"
}
check "the image against real services equals the batch computation" image_tests

log "image $image: $(bounded 60 "${engine[@]}" image inspect --format '{{.Size}}' "$image" | numfmt --to=iec-i --suffix=B)"
run --network none --entrypoint stat "$image" -c '%s %n' \
    /usr/local/bin/fleet-preprocessor /usr/local/bin/fleet-generator |
    while read -r size path; do
        log "  $path: $(numfmt --to=iec-i --suffix=B "$size")"
    done

# --- docker-compose.yml (scripts/lib/image-compose.sh) ---------------------
# shellcheck source=scripts/lib/image-compose.sh
. scripts/lib/image-compose.sh

if [ "$failures" -gt 0 ]; then
    log "FAILED: $failures check(s)"
    exit 1
fi
log "every check passed"
