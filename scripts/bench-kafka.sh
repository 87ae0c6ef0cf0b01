#!/usr/bin/env bash
# Measures the Kafka path: a backlog of generated events in a real broker
# (Tansu, in memory), consumed by 1, then 2, … instances of fleet-preprocessor
# in one consumer group (output_mode = "partitioned", console sink, so the
# broker and the service are what is measured, not an endpoint). For each
# run it prints wall time, events/s, the instances' CPU seconds and CPU-µs
# per event, their peak RSS, and the broker's CPU seconds over the same time.
#
# The same events are replayed through `fleet-preprocessor replay` first, so
# the Kafka path's CPU per event can be compared with replay's in one run, and
# read by `fleet-bench consume` (the client alone, with the service's consumer
# properties), so the part of the difference that is the client's own shows.
# Logs stay in the state directory it prints; the generated events are
# removed on exit.
#
# Settings (environment, with defaults):
#   EVENTS=2000000   events in the backlog
#   VEHICLES=100000  fleet size
#   PARTITIONS=12    partitions of the topic
#   INSTANCES="1 2"  instance counts to measure, in order
#   KAFKA_PORT=19192 Tansu's listener
#   METRICS_PORT=19564  first instance's /metrics (the next ones count up)
#   SEED=11
#   CLIENT="" librdkafka consumer properties for the instances, as
#                    "key=value key=value" (e.g. "fetch.wait.max.ms=10")
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/settings.sh
. "$ROOT/scripts/lib/settings.sh"
number_settings EVENTS=2000000 VEHICLES=100000 PARTITIONS=12 KAFKA_PORT=19192 \
    METRICS_PORT=19564 SEED=11
settings "INSTANCES=1 2" CLIENT=

STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fleet-bench-kafka.XXXXXX")"
# shellcheck source=scripts/lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"
SCRATCH_FILES+=("$STATE_DIR/events.jsonl")

port_open "$KAFKA_PORT" && fail "port $KAFKA_PORT is in use; set KAFKA_PORT"
TANSU="$(command -v tansu 2>/dev/null || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")"
[ -x "$TANSU" ] || fail "tansu not found; run scripts/install-test-deps.sh"

log "Building (release)"
(cd "$ROOT" && cargo build --release -p fleet-generator-cli -p fleet-preprocessor -p fleet-bench)
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
GENERATOR="$TARGET_DIR/release/fleet-generator"
PREPROCESSOR="$TARGET_DIR/release/fleet-preprocessor"
BENCH="$TARGET_DIR/release/fleet-bench"
# One unlabelled counter's value from a /metrics page.
metric_value() {
    { curl --noproxy '*' -fsS --max-time 2 "$1" 2>/dev/null || true; } |
        awk -v name="$2" '$1 == name { printf "%d\n", $2; found = 1; exit } END { if (!found) print 0 }'
}

log "Generating $EVENTS events of $VEHICLES vehicles (seed $SEED)"
START_MS=$(( ($(date +%s) - 3600) * 1000 ))
"$GENERATOR" --vehicles "$VEHICLES" --events "$EVENTS" --seed "$SEED" --start-ms "$START_MS" \
    --output "$STATE_DIR/events.jsonl" --reference-out "$STATE_DIR/vehicles.csv"

log "Replay of the same events (the baseline)"
/usr/bin/time -f '%U %S %e %M' -o "$STATE_DIR/replay.time" \
    "$PREPROCESSOR" replay --input "$STATE_DIR/events.jsonl" \
    --reference "$STATE_DIR/vehicles.csv" >"$STATE_DIR/replay.jsonl"
read -r user sys wall rss_kib <"$STATE_DIR/replay.time"
REPLAY_CPU="$(python3 -c "print(f'{$user + $sys:.2f}')")"
REPLAY_US="$(python3 -c "print(f'{($user + $sys) * 1e6 / $EVENTS:.3f}')")"
printf '   replay: %s CPU-s, %s CPU-µs/event, %s s wall, peak RSS %s MiB\n' \
    "$REPLAY_CPU" "$REPLAY_US" "$wall" "$((rss_kib / 1024))"

log "Starting Tansu on 127.0.0.1:$KAFKA_PORT and loading the backlog"
start_tansu "$KAFKA_PORT"
"$TANSU" topic create bench --broker "$KAFKA_URL" --partitions "$PARTITIONS" \
    >>"$STATE_DIR/tansu-admin.log" 2>&1 || fail "cannot create the topic; see $STATE_DIR/tansu-admin.log"
produce_started=$SECONDS
"$GENERATOR" --vehicles "$VEHICLES" --events "$EVENTS" --seed "$SEED" --start-ms "$START_MS" \
    --brokers "127.0.0.1:$KAFKA_PORT" --topic bench --rate 0 >"$STATE_DIR/producer.log" 2>&1 ||
    fail "producing failed; see $STATE_DIR/producer.log"
printf '   %s events produced in %ss\n' "$EVENTS" "$((SECONDS - produce_started))"

log "The Kafka client alone on the same backlog (fleet-bench consume)"
client_args=()
for pair in $CLIENT; do
    client_args+=(--client "$pair")
done
"$BENCH" consume --brokers "127.0.0.1:$KAFKA_PORT" --topic bench --events "$EVENTS" \
    "${client_args[@]}" | sed 's/^/   /'

# The instances' configuration file: [kafka.client] from $CLIENT.
{
    echo "[kafka.client]"
    for pair in $CLIENT; do
        printf '"%s" = "%s"\n' "${pair%%=*}" "${pair#*=}"
    done
} >"$STATE_DIR/instance.toml"

printf '\n%-9s %8s %10s %8s %12s %12s %9s %9s\n' instances "wall s" "events/s" "CPU s" "CPU-µs/event" "vs replay" "RSS MiB" "broker s"
for n in $INSTANCES; do
    names=()
    tansu_cpu_before="$(cpu_seconds "$(pid_of tansu)")"
    started=$SECONDS
    started_ns="$(date +%s%N)"
    for ((i = 0; i < n; i++)); do
        name="run$n-instance$i"
        start "$name" env \
            FLEET__KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT" \
            FLEET__KAFKA__TOPIC=bench \
            FLEET__KAFKA__GROUP_ID="bench-$n-$RANDOM" \
            FLEET__PIPELINE__OUTPUT_MODE=partitioned \
            FLEET__REFERENCE__CSV_PATH="$STATE_DIR/vehicles.csv" \
            FLEET__TELEMETRY__LISTEN="127.0.0.1:$((METRICS_PORT + i))" \
            "$PREPROCESSOR" --config "$STATE_DIR/instance.toml" run
        names+=("$name")
    done
    # Wait until the group has consumed the whole backlog.
    while :; do
        consumed=0
        for ((i = 0; i < n; i++)); do
            check_alive "${names[$i]}"
            c="$(metric_value "http://127.0.0.1:$((METRICS_PORT + i))/metrics" fleet_source_messages_total)"
            consumed=$((consumed + c))
        done
        [ "$consumed" -ge "$EVENTS" ] && break
        [ $((SECONDS - started)) -lt 600 ] || fail "$n instance(s) did not consume the backlog in 600 s"
        sleep 0.2
    done
    wall="$(python3 -c "print(f'{($(date +%s%N) - $started_ns) / 1e9:.2f}')")"
    cpu=0
    rss=0
    for name in "${names[@]}"; do
        pid="$(pid_of "$name")"
        cpu="$(python3 -c "print(f'{$cpu + $(cpu_seconds "$pid"):.2f}')")"
        rss="$(python3 -c "print(max($rss, $(peak_rss_mib "$pid")))")"
    done
    broker="$(python3 -c "print(f'{$(cpu_seconds "$(pid_of tansu)") - $tansu_cpu_before:.2f}')")"
    python3 -c "
events, wall, cpu, replay = $EVENTS, $wall, $cpu, $REPLAY_CPU
print(f'{$n:<9} {wall:8.2f} {events / wall:10,.0f} {cpu:8.2f} {cpu * 1e6 / events:12.3f} {cpu / replay:11.2f}x {$rss:9.1f} {$broker:9.2f}')
"
    for name in "${names[@]}"; do
        stop "$name" 20 >/dev/null
    done
done
printf '\nCPU s and CPU-µs/event include start-up (reading the reference CSV) and the\ngroup join; "vs replay" is the instances'"'"' CPU over replay'"'"'s for the same events.\n'
