# Settings from the environment, log() and fail() for scripts/local-stack.sh and
# scripts/bench-kafka.sh (scripts/lib/processes.sh uses log() and fail() too).
# shellcheck shell=bash

log() { printf '\n== %s\n' "$*"; }
fail() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

# settings NAME=DEFAULT...: each NAME keeps its value from the environment, or
# takes DEFAULT when unset or empty.
settings() {
    local pair name
    for pair in "$@"; do
        name="${pair%%=*}"
        printf -v "$name" '%s' "${!name:-${pair#*=}}"
    done
}

# number_settings NAME=DEFAULT...: as settings, and each must be a whole number.
number_settings() {
    settings "$@"
    local pair name
    for pair in "$@"; do
        name="${pair%%=*}"
        [[ "${!name}" =~ ^[0-9]+$ ]] || fail "$name must be a whole number, not '${!name}'"
    done
}
