#!/usr/bin/env bash
# Builds the coverage-guided fuzz targets of fuzz/ (cargo-fuzz, libFuzzer)
# and runs each for a while: `bash scripts/fuzz.sh [SECONDS [TARGET...]]`
# (default 20 seconds a target, every target). `--build-only` builds and
# stops; `--no-build` runs the targets built before (the test command builds
# them in the background while its tests run).
#   - Installs cargo-fuzz 0.13.2 with `cargo install --locked` when `cargo
#     fuzz` is missing (a few minutes, once).
#   - Builds every target with `cargo fuzz build`: release with debug
#     assertions and overflow checks, AddressSanitizer, into fuzz/target.
#     cargo-fuzz passes nightly flags to rustc; RUSTC_BOOTSTRAP=1 lets the
#     stable toolchain take them.
#   - Runs each target on a copy of its seed corpus (fuzz/corpus/<target>)
#     in a temporary directory, so a run never grows the committed corpus.
#     A crash, a failed check, a timeout or running out of memory is a
#     failure: the reproducer is kept in fuzz/artifacts/<target>/ and named,
#     with the command that replays it; the script then exits non-zero.
# fuzz/README.md says what each target checks.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'fuzz: %s\n' "$*"; }

CARGO_FUZZ_VERSION=0.13.2
build=yes
case "${1:-}" in
    --build-only) build=only; shift ;;
    --no-build) build=no; shift ;;
esac
duration="${1:-20}"
case "$duration" in
    '' | *[!0-9]*)
        log "usage: bash scripts/fuzz.sh [--build-only | --no-build] [SECONDS [TARGET...]]; got ${duration:-an empty value}"
        exit 2
        ;;
esac
shift $(($# > 0 ? 1 : 0))

# Each target, and the longest input it is given (bytes).
targets=(
    "decode 4096"
    "config 16384"
    "reference_csv 4096"
    "reference_record 1024"
    "remote_write_response 2048"
)
if [ "$#" -gt 0 ]; then
    chosen=()
    for name in "$@"; do
        entry="$(printf '%s\n' "${targets[@]}" | grep -E "^$name " || true)"
        if [ -z "$entry" ]; then
            log "unknown target '$name'; the targets: $(printf '%s\n' "${targets[@]}" | cut -d' ' -f1 | tr '\n' ' ')"
            exit 2
        fi
        chosen+=("$entry")
    done
    targets=("${chosen[@]}")
fi

install_cargo_fuzz() {
    if cargo fuzz --version >/dev/null 2>&1; then
        log "cargo-fuzz present: $(cargo fuzz --version 2>&1 | head -n 1)"
        return 0
    fi
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION: cargo install --locked (takes a few minutes)"
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
    if ! cargo fuzz --version >/dev/null 2>&1; then
        log "cargo-fuzz was installed but \`cargo fuzz\` does not run; check ${CARGO_HOME:-$HOME/.cargo}/bin"
        return 1
    fi
    log "cargo-fuzz installed: $(cargo fuzz --version 2>&1 | head -n 1)"
}

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="fuzz/target/$host/release"

if [ "$build" != no ]; then
    install_cargo_fuzz
    log "building the fuzz targets for $host (cargo fuzz build: release, debug assertions, AddressSanitizer)"
    started=$(date +%s)
    RUSTC_BOOTSTRAP=1 cargo fuzz build --target "$host"
    log "built in $(($(date +%s) - started)) s"
fi
if [ "$build" = only ]; then
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# As `cargo fuzz run` does: Rust's symbols trip ASan's ODR check for nothing.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

failed=()
for entry in "${targets[@]}"; do
    read -r target max_len <<<"$entry"
    if [ ! -x "$bin_dir/$target" ]; then
        log "$target is not built ($bin_dir/$target); run without --no-build"
        failed+=("$target")
        continue
    fi
    corpus="$work/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    cp -R "fuzz/corpus/$target/." "$corpus/"
    output="$work/$target.log"
    log "running $target for ${duration} s on a copy of fuzz/corpus/$target ($(find "$corpus" -type f | wc -l) seeds, -max_len=$max_len)"
    status=0
    "$bin_dir/$target" "$corpus" \
        -max_total_time="$duration" \
        -max_len="$max_len" \
        -timeout=20 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" \
        >"$output" 2>&1 || status=$?
    # libFuzzer's last progress line (cov, ft, corp, exec/s) and its totals.
    grep -E '^#[0-9]+' "$output" | tail -n 1 | sed "s/^/fuzz: $target: /" || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$output" \
        | sed "s/^/fuzz: $target: /" || true
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        log "$target FAILED (exit $status); the end of its output:"
        tail -n 40 "$output"
        # The failed check or panic, above the backtrace.
        grep -m 1 -A 4 'panicked at' "$output" | sed "s/^/fuzz: $target: /" || true
        cp "$output" "$artifacts/last-run.log"
        reproducer="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$output" | tail -n 1)"
        if [ -n "$reproducer" ]; then
            log "$target: reproducer $reproducer; replay it with:"
            log "  RUSTC_BOOTSTRAP=1 cargo fuzz run $target $reproducer"
        fi
        log "$target: whole output in $artifacts/last-run.log"
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "every target ran ${duration} s clean: ${#targets[@]} targets"
