#!/usr/bin/env bash
# Installs the real services the integration tests start as child processes
# (docs/ARCHITECTURE.md, "What runs where"):
#   - Prometheus and promtool, from Debian's `prometheus` package;
#   - Tansu, the Kafka-compatible broker, from crates.io with `--features dynostore`
#     (without it the in-memory `memory://` storage refuses to start);
#   - the openssl command-line tool, from Debian's `openssl` package: the TLS
#     tests (crates/kafka/tests/tls.rs) make their CA and broker certificate
#     with it at run time.
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

# Prints the path of a Tansu that answers `--help`, or nothing.
working_tansu() {
    local candidate
    for candidate in "$(command -v tansu 2>/dev/null || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" "$HOME/.cargo/bin/tansu"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --help >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
}

install_tansu() {
    local found
    found="$(working_tansu)"
    if [ -n "$found" ]; then
        log "tansu present: $found ($("$found" --version 2>&1 | head -n 1))"
        return 0
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "tansu is missing and cargo is not available; install Rust (rustup) first"
        return 1
    fi
    log "installing tansu: cargo install --locked tansu --features dynostore (takes several minutes)"
    cargo install --locked tansu --features dynostore
    found="$(working_tansu)"
    if [ -z "$found" ]; then
        log "tansu was installed but does not run; check ${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
        return 1
    fi
    log "tansu installed: $found"
    case ":$PATH:" in
        *":$(dirname "$found"):"*) ;;
        *) log "note: $(dirname "$found") is not on PATH; the tests find it there anyway" ;;
    esac
}

install_prometheus
install_openssl
install_tansu
log "done"
