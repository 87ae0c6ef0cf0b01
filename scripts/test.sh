#!/usr/bin/env bash
# The whole test suite, as the README's second command and CI run it.
#
# 1. Installs what the tests need when it is missing (Prometheus from
#    Debian's package, the nisshi and Tansu brokers from crates.io; see
#    install-test-deps.sh).
# 2. Runs every test of the workspace with the `integration` feature of
#    fleet-testkit on: tests that need a broker or Prometheus then fail, rather
#    than skip, when a service cannot be started.
# 3. Runs each fuzz target of fuzz/ for a few seconds.
# 4. Checks the container image built from the Dockerfile against real
#    services (scripts/test-image.sh), where containers can run.
#
# The fuzz targets and the image are built while the tests run, at the
# lowest CPU and I/O priority: most tests wait on real services and clocks,
# so the builds take cycles the tests leave, not the ones they use. Each
# stage's time is printed, so a slow run shows where it went.
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
# The brokers may just have been installed into cargo's bin directory, Compose
# into ~/.local/bin.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.local/bin:$PATH"

stage "deployment files" bash scripts/check-deploy-files.sh

cargo_test=(cargo test --workspace --features fleet-testkit/integration)
stage "build the tests" "${cargo_test[@]}" --no-run

background_log="$(mktemp "${TMPDIR:-/tmp}/fleet-test-builds.XXXXXX")"
background_builds() {
    local started=$SECONDS
    bash scripts/fuzz.sh --build-only
    echo "test: fuzz targets built in $((SECONDS - started)) s (in the background)"
    started=$SECONDS
    bash scripts/test-image.sh build
    echo "test: image built in $((SECONDS - started)) s (in the background)"
}
low_priority=(nice -n 19)
if command -v ionice >/dev/null 2>&1; then
    low_priority+=(ionice -c 3)
fi
# In a process group of its own, so that a failed stage, ending the run,
# ends every process of the builds with it.
setsid "${low_priority[@]}" bash -c "$(declare -f background_builds); background_builds" \
    >"$background_log" 2>&1 &
background=$!
trap 'kill -- -$background 2>/dev/null || true' EXIT

stage "run the tests" "${cargo_test[@]}" "$@"

waited=$SECONDS
status=0
wait "$background" || status=$?
trap - EXIT
echo "test: waited $((SECONDS - waited)) s for the background builds; their output:"
sed 's/^/  | /' "$background_log"
rm -f "$background_log"
if [ "$status" != 0 ]; then
    echo "test: FAILED: the background builds (exit $status)"
    exit 1
fi

# A short run of every fuzz target (cargo-fuzz, libFuzzer) on its seed
# corpus; FLEET_FUZZ_SECONDS sets how long each runs (see docs/RELIABILITY.md).
stage "fuzz targets" bash scripts/fuzz.sh --no-build "${FLEET_FUZZ_SECONDS:-10}"

stage "container image" bash scripts/test-image.sh check
