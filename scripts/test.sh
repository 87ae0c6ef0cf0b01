#!/usr/bin/env bash
# The whole test suite, as the README's second command and CI run it.
#
# 1. Installs what the tests need when it is missing (Prometheus from
#    Debian's package, Tansu from crates.io; see install-test-deps.sh).
# 2. Runs every test of the workspace with the `integration` feature of
#    fleet-testkit on: tests that need Tansu or Prometheus then fail, rather
#    than skip, when a service cannot be started.
# 3. Builds the fuzz targets of fuzz/ and runs each for a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
# Tansu may just have been installed into cargo's bin directory.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

bash scripts/check-deploy-files.sh

cargo test --workspace --features fleet-testkit/integration "$@"

# A short run of every fuzz target (cargo-fuzz, libFuzzer) on its seed
# corpus; FLEET_FUZZ_SECONDS sets how long each runs (see docs/RELIABILITY.md).
bash scripts/fuzz.sh "${FLEET_FUZZ_SECONDS:-10}"
