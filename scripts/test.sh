#!/usr/bin/env bash
# The whole test suite, as the README's second command and CI run it.
#
# 1. Installs what the tests need when it is missing (Prometheus from
#    Debian's package, Tansu from crates.io; see install-test-deps.sh).
# 2. Runs every test of the workspace with the `integration` feature of
#    fleet-testkit on: tests that need Tansu or Prometheus then fail, rather
#    than skip, when a service cannot be started.
# 3. Builds the fuzz targets of fuzz/ and runs each for a few seconds.
# 4. Builds the container image from the Dockerfile and checks it against
#    real services (scripts/test-image.sh), where containers can run.
# Each stage's time is printed, so a slow run shows where it went.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() {
    local name="$1" started=$SECONDS
    shift
    printf 'test: %s\n' "$name"
    "$@"
    printf 'test: %s took %d s (%d s so far)\n' "$name" $((SECONDS - started)) "$SECONDS"
}

stage "install what the tests need" bash scripts/install-test-deps.sh
# Tansu may just have been installed into cargo's bin directory, Compose
# into ~/.local/bin.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.local/bin:$PATH"

stage "deployment files" bash scripts/check-deploy-files.sh

stage "cargo test" cargo test --workspace --features fleet-testkit/integration "$@"

# A short run of every fuzz target (cargo-fuzz, libFuzzer) on its seed
# corpus; FLEET_FUZZ_SECONDS sets how long each runs (see docs/RELIABILITY.md).
stage "fuzz targets" bash scripts/fuzz.sh "${FLEET_FUZZ_SECONDS:-10}"

stage "container image" bash scripts/test-image.sh
