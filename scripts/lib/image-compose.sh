# shellcheck shell=bash
# Part of scripts/test-image.sh, sourced by it after the image's own checks
# (step 6 there): it uses that script's engine, image, work directory and
# helpers (log, bounded, has_image, need_image, check).
#
# --- docker-compose.yml ------------------------------------------------------
# The demo's services that can have an image here, started by Docker Compose
# from docker-compose.yml with its own configuration files: the generator and
# the preprocessor from the image above, Prometheus (a stand-in from Debian's
# package when prom/prometheus cannot be pulled) with
# deploy/prometheus/prometheus.yml and alerts.yml, and Tansu standing in for
# Apache Kafka (scripts/lib/compose-stand-ins.yml). Grafana is not started.

compose=()
if [ "${engine[0]}" = docker ] && docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif docker-compose version 2>/dev/null | grep 'v2\.' >/dev/null; then
    compose=(docker-compose)
fi
compose_vehicles=1000
compose_project=fleet-image-test

prometheus_image="$(sed -n 's/^ *image: *\(prom\/prometheus:[^ ]*\)$/\1/p' docker-compose.yml | head -n 1)"
make_prometheus_standin() {
    local context="$work/prometheus"
    mkdir -p "$context"
    cat >"$context/Containerfile" <<CONTAINERFILE
FROM $slim_image
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o nobody -g nogroup /prometheus
USER nobody
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CONTAINERFILE
    log "Debian's prometheus package in an image named $prometheus_image"
    bounded 900 "${engine[@]}" build "${build_options[@]}" --network host -t "docker.io/$prometheus_image" \
        -f "$context/Containerfile" "$context" >"$work/prometheus-build.log" 2>&1 || {
        tail -n 20 "$work/prometheus-build.log"
        return 1
    }
}

tansu_image=localhost/fleet-test-tansu:latest
make_tansu_image() {
    local context="$work/tansu" tansu
    tansu="$(command -v tansu || printf '%s' "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")"
    [ -x "$tansu" ] || { log "no Tansu binary to stand in for Kafka"; return 1; }
    mkdir -p "$context"
    cp "$tansu" "$context/tansu"
    printf 'FROM %s\nCOPY tansu /usr/local/bin/tansu\nENTRYPOINT ["/usr/local/bin/tansu"]\n' \
        "$slim_image" >"$context/Containerfile"
    log "this machine's Tansu ($tansu) in $tansu_image"
    bounded 300 "${engine[@]}" build "${build_options[@]}" -t "$tansu_image" -f "$context/Containerfile" \
        "$context" >"$work/tansu-build.log" 2>&1 || {
        tail -n 20 "$work/tansu-build.log"
        return 1
    }
}

# One PromQL instant query against the stack's Prometheus: prints the first
# result's value, or nothing.
prom_value() {
    python3 - "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
url = "http://127.0.0.1:9090/api/v1/query?query=" + urllib.parse.quote(sys.argv[1])
try:
    result = json.load(urllib.request.urlopen(url, timeout=5))["data"]["result"]
    print(result[0]["value"][1] if result else "")
except Exception:
    print("")
PY
}

# The stack's Prometheus loaded every rule of deploy/prometheus/alerts.yml.
rules_loaded() {
    local want got
    want="$(grep -c '^ *- alert:' deploy/prometheus/alerts.yml)"
    got="$(python3 - <<'PY'
import json, urllib.request
try:
    groups = json.load(urllib.request.urlopen("http://127.0.0.1:9090/api/v1/rules", timeout=5))["data"]["groups"]
    print(sum(1 for g in groups for r in g["rules"] if r.get("health") in ("ok", "unknown")))
except Exception:
    print(0)
PY
)"
    log "alert rules loaded by the stack's Prometheus: $got of $want"
    [ "$got" = "$want" ]
}

# Waits up to $2 seconds for the PromQL expression $1 to have a value
# satisfying the python expression $3 (of v).
wait_for() {
    local expr="$1" seconds="$2" test="$3" value=""
    for _ in $(seq 1 "$seconds"); do
        value="$(prom_value "$expr")"
        if [ -n "$value" ] && python3 -c "import sys; v=float(sys.argv[1]); sys.exit(0 if ($test) else 1)" "$value"; then
            log "  $expr = $value"
            return 0
        fi
        sleep 1
    done
    log "  $expr = ${value:-no value} after $seconds s"
    return 1
}

compose_run() {
    bounded "${compose_timeout:-120}" "${compose[@]}" -p "$compose_project" -f docker-compose.yml -f scripts/lib/compose-stand-ins.yml "$@"
}

compose_stack() {
    local code
    need_image "$prometheus_image" make_prometheus_standin || return 1
    has_image "$tansu_image" || make_tansu_image || return 1
    # docker-compose.yml's image for the generator and the preprocessor.
    bounded 60 "${engine[@]}" tag "$image" docker.io/library/fleet-preprocessor:local
    if [ "${engine[0]}" = podman ]; then
        bounded 60 "${engine[@]}" tag "$image" localhost/fleet-preprocessor:local
    fi
    log "docker compose up: kafka (Tansu) kafka-init reference generator preprocessor prometheus, $compose_vehicles vehicles"
    FLEET_VEHICLES=$compose_vehicles compose_timeout=900 compose_run up -d --no-build \
        kafka kafka-init reference generator preprocessor prometheus >"$work/compose-up.log" 2>&1 || {
        tail -n 20 "$work/compose-up.log"
        return 1
    }
    local ok=0
    wait_for 'count(vehicles_reporting)' 120 'v > 0' || ok=1
    # One event per vehicle per second: a window sees each vehicle once.
    wait_for 'sum(vehicles_reporting)' 30 "0.9 * $compose_vehicles <= v <= $compose_vehicles" || ok=1
    wait_for 'up{job="fleet-preprocessor"}' 60 'v == 1' || ok=1
    wait_for 'sum(fleet_source_events_total)' 30 'v > 0' || ok=1
    wait_for 'sum(fleet_source_decode_errors_total) or vector(0)' 5 'v == 0' || ok=1
    rules_loaded || ok=1
    if compose_run exec -T preprocessor fleet-preprocessor healthcheck --ready; then
        log "  the compose file's health check (fleet-preprocessor healthcheck --ready): passes"
    else
        ok=1
    fi
    compose_run logs reference 2>/dev/null | grep 'reference: wrote' | sed 's/^/test-image:   /' || true
    compose_run stop -t 30 preprocessor >/dev/null 2>&1 || ok=1
    code="$(bounded 60 "${engine[@]}" inspect --format '{{.State.ExitCode}}' "$compose_project-preprocessor-1" 2>/dev/null || echo none)"
    log "  the preprocessor's exit code after docker compose stop: $code"
    [ "$code" = 0 ] || ok=1
    if [ "$ok" != 0 ]; then
        compose_run ps -a 2>&1 | sed 's/^/test-image:   /'
        compose_run logs --tail 20 preprocessor kafka-init 2>&1 | sed 's/^/test-image:   /'
    fi
    compose_timeout=300 compose_run down -v -t 5 >/dev/null 2>&1 || true
    return "$ok"
}

if [ "${#compose[@]}" -eq 0 ]; then
    log "SKIPPED docker-compose.yml: no Docker Compose v2 (scripts/install-test-deps.sh installs one)"
else
    if [ "${engine[0]}" = podman ]; then
        # Compose speaks Docker's API: podman serves it on a socket of its own,
        # with runc and the rlimits a container may have here.
        : >"$work/containers.conf"
        if command -v runc >/dev/null 2>&1; then
            printf '[engine]\nruntime = "runc"\n' >"$work/containers.conf"
        fi
        (
            ulimit -n 1024
            ulimit -u 4096
            CONTAINERS_CONF="$work/containers.conf" exec podman system service --time=0 \
                "unix://$work/podman.sock" >"$work/podman-service.log" 2>&1
        ) &
        compose_service_pid=$!
        export DOCKER_HOST="unix://$work/podman.sock"
        for _ in $(seq 1 20); do
            [ -S "$work/podman.sock" ] && break
            sleep 0.5
        done
    fi
    check "docker-compose.yml's services run with its own configuration files" compose_stack
fi
