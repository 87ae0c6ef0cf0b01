#!/usr/bin/env bash
# Runs the whole pipeline on this machine, without Docker, and shows what
# reached Prometheus:
#
#   fleet-generator --brokers → Tansu (Kafka API) → fleet-preprocessor
#     → remote write → Prometheus (which also scrapes the preprocessor's /metrics)
#
# Every service is a local process on loopback; all state (broker memory
# aside) lives in one temporary directory, which is kept for its logs.
# Everything this script started is stopped when it exits, however it exits.
#
# Settings (environment, with defaults):
#   KAFKA_PORT=19092     Tansu's Kafka listener
#   PROM_PORT=19090      Prometheus's web/API and remote-write receiver
#   METRICS_PORT=19464   the preprocessor's /metrics, /healthz, /readyz
#   DURATION=40          seconds the generator and the preprocessor run
#   VEHICLES=2000        fleet size; the generator sends one event per vehicle
#                        per second, event time = wall clock
#   PARTITIONS=4         partitions of the raw topic
#   TOPIC=vehicle-events the raw topic
#   SEED=11              the fleet's seed (same seed, same fleet)
#   DRAIN_TIMEOUT=45     seconds the preprocessor gets, after the generator
#                        stops, to consume the rest and write the last windows
#   SKIP_INSTALL=0       1: do not run scripts/install-test-deps.sh
# Other FLEET__* variables in your environment reach the preprocessor too
# (e.g. FLEET__WINDOWS__LENGTH_MS=10000).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_PORT="${KAFKA_PORT:-19092}"
PROM_PORT="${PROM_PORT:-19090}"
METRICS_PORT="${METRICS_PORT:-19464}"
DURATION="${DURATION:-40}"
VEHICLES="${VEHICLES:-2000}"
PARTITIONS="${PARTITIONS:-4}"
TOPIC="${TOPIC:-vehicle-events}"
SEED="${SEED:-11}"
SKIP_INSTALL="${SKIP_INSTALL:-0}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-45}"

log() { printf '\n== %s\n' "$*"; }
fail() { printf 'local-stack: %s\n' "$*" >&2; exit 1; }

for var in KAFKA_PORT PROM_PORT METRICS_PORT DURATION VEHICLES PARTITIONS SEED DRAIN_TIMEOUT; do
    [[ "${!var}" =~ ^[0-9]+$ ]] || fail "$var must be a whole number, not '${!var}'"
done

STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fleet-local-stack.XXXXXX")"

# shellcheck source=scripts/lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"

for port in "$KAFKA_PORT" "$PROM_PORT" "$METRICS_PORT"; do
    if port_open "$port"; then
        fail "port $port is already in use; choose others with KAFKA_PORT, PROM_PORT, METRICS_PORT"
    fi
done

# --- dependencies and binaries -----------------------------------------------
if [ "$SKIP_INSTALL" != 1 ]; then
    log "Checking the services' binaries (scripts/install-test-deps.sh)"
    "$ROOT/scripts/install-test-deps.sh"
fi
TANSU="$(command -v tansu 2>/dev/null || true)"
[ -n "$TANSU" ] || TANSU="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
[ -x "$TANSU" ] || fail "tansu not found on PATH or in ${CARGO_HOME:-$HOME/.cargo}/bin; run scripts/install-test-deps.sh"
PROMETHEUS="$(command -v prometheus 2>/dev/null || echo /usr/bin/prometheus)"
[ -x "$PROMETHEUS" ] || fail "prometheus not found; run scripts/install-test-deps.sh"
for tool in curl python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is required"
done

log "Building fleet-generator and fleet-preprocessor (release)"
(cd "$ROOT" && cargo build --release -p fleet-generator-cli -p fleet-preprocessor)
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
GENERATOR="$TARGET_DIR/release/fleet-generator"
PREPROCESSOR="$TARGET_DIR/release/fleet-preprocessor"

# --- Kafka (Tansu) -----------------------------------------------------------
log "Starting Tansu on 127.0.0.1:$KAFKA_PORT"
KAFKA_URL="tcp://127.0.0.1:$KAFKA_PORT"
# Tansu reads these from the environment; a developer's shell must not
# redirect this broker.
start tansu env -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u CLUSTER_ID \
    "$TANSU" broker --listener-url "$KAFKA_URL" --advertised-listener-url "$KAFKA_URL" \
    --storage-engine memory://tansu/
wait_for tansu 20 port_open "$KAFKA_PORT"

log "Creating topic $TOPIC with $PARTITIONS partitions"
"$TANSU" topic create "$TOPIC" --broker "$KAFKA_URL" --partitions "$PARTITIONS" \
    >>"$STATE_DIR/tansu-admin.log" 2>&1 ||
    fail "cannot create topic $TOPIC; see $STATE_DIR/tansu-admin.log"
# Verified from the broker's metadata, not assumed from the exit status.
"$TANSU" topic list --broker "$KAFKA_URL" 2>>"$STATE_DIR/tansu-admin.log" |
    python3 -c '
import json, sys
topic, want = sys.argv[1], int(sys.argv[2])
topics = {t["name"]: t for t in json.load(sys.stdin)}
if topic not in topics:
    sys.exit(f"topic {topic} is not listed by the broker")
partitions = [p for p in topics[topic]["partitions"] if p["error_code"] == 0 and p["leader_id"] >= 0]
if len(partitions) != want:
    sys.exit(f"topic {topic} has {len(partitions)} partitions with a leader, expected {want}")
print(f"   {topic}: {len(partitions)} partitions, each with a leader")
' "$TOPIC" "$PARTITIONS"

# --- Prometheus --------------------------------------------------------------
log "Starting Prometheus on 127.0.0.1:$PROM_PORT (remote-write receiver on)"
cat >"$STATE_DIR/prometheus.yml" <<EOF
# Generated by scripts/local-stack.sh: scrape the preprocessor's self-metrics.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: fleet-preprocessor
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
EOF
start prometheus "$PROMETHEUS" \
    --web.enable-remote-write-receiver \
    --storage.tsdb.path="$STATE_DIR/prometheus-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --config.file="$STATE_DIR/prometheus.yml"
PROM_URL="http://127.0.0.1:$PROM_PORT"
wait_for prometheus 30 http_ok "$PROM_URL/-/ready"

# --- reference data, preprocessor, generator ---------------------------------
log "Writing the reference CSV of $VEHICLES vehicles (seed $SEED)"
REFERENCE="$STATE_DIR/vehicles.csv"
"$GENERATOR" --vehicles "$VEHICLES" --seed "$SEED" --events 0 --output /dev/null \
    --reference-out "$REFERENCE"
printf '   %s: %s vehicles\n' "$REFERENCE" "$(($(wc -l <"$REFERENCE") - 1))"

log "Starting fleet-preprocessor (/metrics on 127.0.0.1:$METRICS_PORT)"
start preprocessor env \
    FLEET__KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT" \
    FLEET__KAFKA__TOPIC="$TOPIC" \
    FLEET__REMOTE_WRITE__URL="$PROM_URL/api/v1/write" \
    FLEET__REFERENCE__CSV_PATH="$REFERENCE" \
    FLEET__TELEMETRY__LISTEN="127.0.0.1:$METRICS_PORT" \
    "$PREPROCESSOR" run
wait_for preprocessor 30 http_ok "http://127.0.0.1:$METRICS_PORT/healthz"

log "Starting fleet-generator: $VEHICLES vehicles, one event per vehicle per second"
start generator "$GENERATOR" --brokers "127.0.0.1:$KAFKA_PORT" --topic "$TOPIC" \
    --vehicles "$VEHICLES" --seed "$SEED"

log "Running for ${DURATION}s (Ctrl-C stops early and cleans up)"
STARTED_AT="$(date +%s)"
for ((elapsed = 0; elapsed < DURATION; elapsed++)); do
    for name in tansu prometheus preprocessor generator; do
        check_alive "$name"
    done
    if [ -t 1 ]; then
        printf '\r   %3ss / %ss' "$elapsed" "$DURATION"
    elif [ $((elapsed % 10)) -eq 0 ]; then
        printf '   %ss / %ss\n' "$elapsed" "$DURATION"
    fi
    sleep 1
done
if [ -t 1 ]; then
    printf '\r   %3ss / %ss\n' "$DURATION" "$DURATION"
fi

# The generator stops first and says how many events it produced. The
# preprocessor keeps running until it has consumed them all and closed every
# window: with no more data its partitions go idle and the open windows close
# on the wall clock (windows.all_idle_close_after_ms, 7 s by default), so even
# the last, partial window reaches Prometheus. Then it stops gracefully.
PREPROCESSOR_PID="$(pid_of preprocessor)"
printf '   fleet-preprocessor while the fleet sent: %s CPU-s, peak RSS %s MiB\n' \
    "$(cpu_seconds "$PREPROCESSOR_PID")" "$(peak_rss_mib "$PREPROCESSOR_PID")"

log "Stopping the generator"
stop generator 15
PRODUCED="$(sed -n 's/.* \([0-9][0-9]*\) events produced to topic.*/\1/p' "$STATE_DIR/generator.log" | tail -n 1)"
if [ -n "$PRODUCED" ]; then
    printf '   %s events produced\n' "$PRODUCED"
else
    printf '   the generator did not report how many events it produced; see %s\n' "$STATE_DIR/generator.log"
fi

# One unlabelled sample's value, as an integer, from a /metrics page on stdin.
metric_value() { awk -v name="$1" '$1 == name { printf "%d\n", $2; found = 1; exit } END { if (!found) print -1 }'; }

log "Waiting for the preprocessor to consume everything and write the last windows (at most ${DRAIN_TIMEOUT}s)"
METRICS_PAGE="$STATE_DIR/preprocessor-metrics.txt"
drain_deadline=$((SECONDS + DRAIN_TIMEOUT))
previous_sent=-1
while :; do
    check_alive preprocessor
    curl --noproxy '*' -fsS --max-time 2 "http://127.0.0.1:$METRICS_PORT/metrics" >"$METRICS_PAGE" 2>/dev/null || true
    consumed="$(metric_value fleet_source_messages_total <"$METRICS_PAGE")"
    open_windows="$(metric_value fleet_aggregator_open_windows <"$METRICS_PAGE")"
    sent="$(metric_value fleet_remote_write_samples_sent_total <"$METRICS_PAGE")"
    # Done: every event read, no window open, and nothing more sent for a poll.
    if [ "$consumed" -ge "${PRODUCED:-0}" ] && [ "$open_windows" -eq 0 ] && [ "$sent" -eq "$previous_sent" ]; then
        printf '   consumed %s events; every window closed and written (%s samples)\n' "$consumed" "$sent"
        break
    fi
    if [ "$SECONDS" -ge "$drain_deadline" ]; then
        printf '   not drained within %ss: consumed %s of %s events, %s windows open; showing what was written\n' \
            "$DRAIN_TIMEOUT" "$consumed" "${PRODUCED:-?}" "$open_windows"
        break
    fi
    previous_sent="$sent"
    sleep 1
done

log "Stopping the preprocessor"
stop preprocessor 30
printf '   its last /metrics page: %s\n' "$METRICS_PAGE"

# --- what reached Prometheus -------------------------------------------------
# Runs an instant query, at time $2 (epoch seconds) when given; prints the API's JSON.
prom_query() {
    local at=()
    [ -z "${2:-}" ] || at=(--data-urlencode "time=$2")
    curl --noproxy '*' -fsS --max-time 10 "$PROM_URL/api/v1/query" \
        --data-urlencode "query=$1" "${at[@]}" ||
        fail "query failed: $1"
}

# Reads an instant-query answer on stdin and prints one row per element:
# the listed labels, then the value. A title comes first.
show_vector() {
    python3 -c '
import json, sys
title, labels = sys.argv[1], sys.argv[2:]
answer = json.load(sys.stdin)
rows = answer["data"]["result"]
print(f"\n{title}")
if not rows:
    print("   (no data)")
    sys.exit(0)
def value(row):
    v = float(row["value"][1])
    return f"{v:,.0f}" if v.is_integer() else f"{v:,.2f}"
# Largest first; ties in label order.
rows.sort(key=lambda r: (-float(r["value"][1]), [r["metric"].get(l, "") for l in labels]))
widths = [max(len(l), *(len(r["metric"].get(l, "")) for r in rows)) for l in labels]
if labels:
    print("   " + "  ".join(l.ljust(w) for l, w in zip(labels, widths)) + "  value")
for row in rows:
    cells = [row["metric"].get(l, "").ljust(w) for l, w in zip(labels, widths)]
    print("   " + "  ".join(cells) + ("  " if cells else "") + value(row))
' "$@"
}

# Per window (the raw samples, whose timestamps are window ends), the fleet-wide
# totals of the three counters: the table a dashboard's sum() would plot.
show_windows() {
    local range="$1" metric json
    for metric in vehicles_reporting vehicles_in_motion warnings ic_engine_rpm_count electric_motor_rpm_count; do
        json="$(prom_query "${metric}[${range}s]")"
        printf '%s\t%s\n' "$metric" "$json"
    done | python3 -c '
import json, sys, time
totals, series = {}, {}
for line in sys.stdin:
    metric, answer = line.rstrip("\n").split("\t", 1)
    result = json.loads(answer)["data"]["result"]
    series[metric] = len(result)
    for s in result:
        for ts, v in s["values"]:
            window = totals.setdefault(round(float(ts) * 1000), {})
            window[metric] = window.get(metric, 0.0) + float(v)
print("\nPer 5 s window, summed over every (model, region) series")
if not totals:
    print("   (no windows written)")
    sys.exit(0)
print("   window end (UTC)  vehicles_reporting  vehicles_in_motion  warnings  rpm events")
for end in sorted(totals):
    t = totals[end]
    reporting, in_motion, warnings = (
        t.get(m, 0.0) for m in ("vehicles_reporting", "vehicles_in_motion", "warnings"))
    rpm_events = t.get("ic_engine_rpm_count", 0.0) + t.get("electric_motor_rpm_count", 0.0)
    stamp = time.strftime("%H:%M:%S", time.gmtime(end / 1000)) + f".{end % 1000:03d}"
    print(f"   {stamp:<16}  {reporting:>18,.0f}  {in_motion:>18,.0f}  {warnings:>8,.0f}  {rpm_events:>10,.0f}")
print(f"   {len(totals)} windows, " + str(series.get("vehicles_reporting", 0)) + " (model, region) series")
'
}

log "What Prometheus holds (queried at $PROM_URL)"
RANGE=$(($(date +%s) - STARTED_AT + 30))
show_windows "$RANGE"
printf '   (vehicles_reporting counts distinct vehicles: about %s in any window with a second of\n    data; rpm events shows how much of its 5 s the first and the last window saw)\n' "$VEHICLES"

# The dashboards' instant queries, evaluated at the end of the newest window
# the generator covered completely (its last event time, floored to a window),
# so every series shows the same full window rather than the partial last one.
WINDOW_MS="${FLEET__WINDOWS__LENGTH_MS:-5000}"
LAST_EVENT_MS="$(sed -n 's/.*event time [0-9]*\.\.=\([0-9][0-9]*\).*/\1/p' "$STATE_DIR/generator.log" | tail -n 1)"
if [ -n "$LAST_EVENT_MS" ]; then
    AT_MS=$((LAST_EVENT_MS / WINDOW_MS * WINDOW_MS))
    AT="$((AT_MS / 1000)).$(printf '%03d' $((AT_MS % 1000)))"
    WHEN="window ending $(date -u -d "@$((AT_MS / 1000))" +%H:%M:%S) UTC"
else
    AT=""
    WHEN="newest sample of each series"
fi

prom_query 'sum(vehicles_in_motion)' "$AT" | show_vector "sum(vehicles_in_motion), $WHEN"
prom_query 'sum by (region) (warnings)' "$AT" | show_vector "sum by (region) (warnings), $WHEN" region
prom_query 'count(vehicles_reporting)' "$AT" |
    show_vector "count(vehicles_reporting): (model, region) series, $WHEN"
prom_query 'topk(10, vehicles_reporting)' "$AT" |
    show_vector "topk(10, vehicles_reporting): the 10 largest series, $WHEN" model region
prom_query 'sum by (model) (vehicles_reporting)' "$AT" |
    show_vector "sum by (model) (vehicles_reporting), $WHEN" model
prom_query 'sum by (model) (ic_engine_rpm_sum) / sum by (model) (ic_engine_rpm_count)' "$AT" |
    show_vector "Mean IC engine RPM by model (exact: sum of sums / sum of counts), $WHEN" model

# Its own counters as it stopped: the /metrics page saved above, exact, rather
# than Prometheus's last scrape, which may be up to one interval older.
python3 -c '
import sys
totals = {}
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    name, value = line.split("{")[0].split()[0], float(line.split()[-1])
    if name.endswith("_total"):
        totals[name] = totals.get(name, 0.0) + value
print("\nThe preprocessor'"'"'s own counters when it stopped (summed over labels)")
if not totals:
    print("   (no /metrics page was read)")
width = max((len(n) for n in totals), default=0)
for name in sorted(totals):
    print(f"   {name:<{width}}  {totals[name]:>12,.0f}")
' "$METRICS_PAGE"
