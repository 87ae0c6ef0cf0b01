# Process bookkeeping shared by scripts/local-stack.sh and scripts/bench-kafka.sh.
# The caller defines STATE_DIR (logs go there) and sources settings.sh (log(),
# fail()) before sourcing this file; it installs an EXIT trap that stops, in
# reverse order, every process started with start().
# shellcheck shell=bash

# Whether something accepts TCP connections on a loopback port.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- process bookkeeping -----------------------------------------------------
# name → pid of every process this script started, in start order; stopped in
# reverse order on exit.
declare -a STARTED_NAMES=() STARTED_PIDS=()
# Bulky inputs the caller registers to be removed on exit: the logs stay in
# $STATE_DIR, the hundreds of MB of generated events do not.
declare -a SCRATCH_FILES=()
# name → 1 once its exit status has been collected (a pid is waited for once).
declare -A REAPED=()

# Starts a command in the background with its output in $STATE_DIR/<name>.log,
# in a session of its own where setsid exists: a terminal's Ctrl-C then reaches
# only this script, which stops the services in order (cleanup below), rather
# than every service at once.
start() {
    local name="$1"
    shift
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" >"$STATE_DIR/$name.log" 2>&1 </dev/null &
    else
        "$@" >"$STATE_DIR/$name.log" 2>&1 </dev/null &
    fi
    STARTED_NAMES+=("$name")
    STARTED_PIDS+=("$!")
}

pid_of() {
    local i
    for i in "${!STARTED_NAMES[@]}"; do
        if [ "${STARTED_NAMES[$i]}" = "$1" ]; then
            printf '%s\n' "${STARTED_PIDS[$i]}"
            return 0
        fi
    done
    return 1
}

running() { kill -0 "$1" 2>/dev/null; }

CLK_TCK="$(getconf CLK_TCK)"
# CPU seconds (user + system) a live process has used.
cpu_seconds() { awk -v hz="$CLK_TCK" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
# Peak resident set size of a live process, MiB.
peak_rss_mib() { awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"; }

# SIGTERM, then SIGKILL after a grace period (seconds). Prints how it ended.
stop() {
    local name="$1" grace="${2:-15}" pid status=0 waited=0
    pid="$(pid_of "$name")" || return 0
    [ -z "${REAPED[$name]:-}" ] || return 0
    if running "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        while running "$pid" && [ "$waited" -lt $((grace * 10)) ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        if running "$pid"; then
            printf '   %s did not stop within %ss; killing it\n' "$name" "$grace"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || status=$?
    REAPED[$name]=1
    printf '   %-12s stopped (exit status %s)\n' "$name" "$status"
}

# Fails with the end of the service's log when it is no longer running.
check_alive() {
    local name="$1" pid
    pid="$(pid_of "$name")"
    if ! running "$pid"; then
        local status=0
        wait "$pid" 2>/dev/null || status=$?
        REAPED[$name]=1
        printf '%s: %s exited (status %s); last lines of %s:\n' "$(basename "$0" .sh)" \
            "$name" "$status" "$STATE_DIR/$name.log" >&2
        tail -n 30 "$STATE_DIR/$name.log" >&2 || true
        exit 1
    fi
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ "${#STARTED_PIDS[@]}" -gt 0 ]; then
        log "Stopping"
        local i
        for ((i = ${#STARTED_NAMES[@]} - 1; i >= 0; i--)); do
            stop "${STARTED_NAMES[$i]}" 15
        done
    fi
    if [ "${#SCRATCH_FILES[@]}" -gt 0 ]; then
        rm -f -- "${SCRATCH_FILES[@]}"
    fi
    printf '\nState and logs: %s\n' "$STATE_DIR"
    ls -1 "$STATE_DIR"/*.log 2>/dev/null | sed 's/^/   /' || true
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Polls a check (a command) every 0.2 s for at most $2 seconds, failing if the
# service dies meanwhile.
wait_for() {
    local name="$1" timeout="$2" tries=0
    shift 2
    until "$@"; do
        check_alive "$name"
        tries=$((tries + 1))
        [ "$tries" -lt $((timeout * 5)) ] || fail "$name was not ready within ${timeout}s; see $STATE_DIR/$name.log"
        sleep 0.2
    done
}

# Starts Tansu ($TANSU), in memory, as "tansu" on 127.0.0.1:$1; sets KAFKA_URL
# and waits until it listens.
start_tansu() {
    KAFKA_URL="tcp://127.0.0.1:$1"
    # Tansu reads these from the environment; a developer's shell must not
    # redirect this broker.
    start tansu env -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u CLUSTER_ID \
        "$TANSU" broker --listener-url "$KAFKA_URL" --advertised-listener-url "$KAFKA_URL" \
        --storage-engine memory://tansu/
    wait_for tansu 20 port_open "$1"
}

http_ok() { curl --noproxy '*' -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

