//! The configuration commands as an operator runs them: `check-config` names
//! every problem with its key and exits 64, `print-config` shows the
//! effective configuration with every secret redacted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with `--config file` and `args`, with only the `FLEET__*`
/// variables given in `env` (none of the caller's).
fn run(file: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-preprocessor"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FLEET") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--config")
        .arg(file)
        .args(args)
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that `check-config` on `toml` exits 64 and names every key.
fn assert_problems(dir: &Path, name: &str, toml: &str, keys: &[&str]) {
    let file = dir.join(name);
    std::fs::write(&file, toml).unwrap();
    let out = run(&file, &["check-config"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{name}: {stderr}");
    assert!(
        !text(&out.stdout).contains("configuration is valid"),
        "{name}"
    );
    for key in keys {
        assert!(
            stderr.contains(&format!("{key}: ")) || stderr.contains(key),
            "{name}: {key} not named in:\n{stderr}"
        );
    }
}

#[test]
fn check_config_names_every_problem_of_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    // Problems found by validation are reported together.
    assert_problems(
        dir.path(),
        "several.toml",
        r#"
[kafka]
brokers = "broker-without-port,127.0.0.1:9092"
commit_interval_ms = 0

[windows]
length_ms = 0
idle_timeout_ms = 0

[remote_write]
url = "ftp://prometheus:9090/api/v1/write"

[reference]
csv_path = "/nonexistent/vehicles.csv"

[channels]
aggregator_to_sink = 0

[telemetry]
listen = "everywhere"
"#,
        &[
            "kafka.brokers",
            "\"broker-without-port\" is not host:port",
            "kafka.commit_interval_ms",
            "windows.length_ms",
            "windows.idle_timeout_ms",
            "remote_write.url",
            "reference.csv_path",
            "channels.aggregator_to_sink",
            "telemetry.listen",
        ],
    );
    let stderr = {
        let out = run(&dir.path().join("several.toml"), &["check-config"], &[]);
        text(&out.stderr)
    };
    // One line per problem, after the heading.
    assert!(
        stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("- "))
            .count()
            == 8,
        "{stderr}"
    );
}

#[test]
fn check_config_names_unknown_keys_and_wrong_types() {
    let dir = tempfile::tempdir().unwrap();
    // These fail while loading.
    assert_problems(
        dir.path(),
        "unknown-key.toml",
        "[windows]\nlenght_ms = 5000\n",
        &["lenght_ms"],
    );
    assert_problems(
        dir.path(),
        "unknown-section.toml",
        "[sink]\nkind = \"console\"\n",
        &["sink"],
    );
    assert_problems(
        dir.path(),
        "wrong-type.toml",
        "[windows]\nlength_ms = \"five seconds\"\n",
        &["windows.length_ms"],
    );
    assert_problems(
        dir.path(),
        "bad-enum.toml",
        "[reference]\nunknown_vehicle = \"ignore\"\n",
        &["reference.unknown_vehicle"],
    );
    assert_problems(
        dir.path(),
        "not-toml.toml",
        "[windows\nlength_ms = 5000\n",
        &["windows"],
    );
    // The environment layer is checked the same way.
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap();
    let out = run(
        &file,
        &["check-config"],
        &[("FLEET__WINDOWS__LENGTH_MS", "-5")],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("windows.length_ms"));
}

#[test]
fn check_config_reports_load_and_validation_problems_together() {
    let dir = tempfile::tempdir().unwrap();
    // Keys that do not load (wrong type, unknown key, bad enum) and values
    // that load but are invalid all appear in one run.
    let file = dir.path().join("mixed.toml");
    std::fs::write(
        &file,
        r#"
[windows]
length_ms = "five seconds"
idle_timeout_ms = 0
lenght_ms = 3

[reference]
unknown_vehicle = "ignore"

[channels]
source_to_enricher = 0

[telemetry]
listen = "everywhere"
"#,
    )
    .unwrap();
    let out = run(&file, &["check-config"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in [
        "windows.length_ms",
        "lenght_ms",
        "reference.unknown_vehicle",
        "windows.idle_timeout_ms",
        "channels.source_to_enricher",
        "telemetry.listen",
    ] {
        assert!(stderr.contains(key), "{key} not named in:\n{stderr}");
    }
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("- "))
            .count(),
        6,
        "one line per problem:\n{stderr}"
    );
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("vehicles.csv");
    std::fs::write(&csv, "vehicle_id,model\n1HGCM82633A004352,Nebulara\n").unwrap();
    let file = dir.path().join("good.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[kafka]
brokers = "127.0.0.1:9092,127.0.0.1:9093"
topic = "vehicle-events"

[reference]
csv_path = "{}"

[remote_write]
url = "http://127.0.0.1:9090/api/v1/write"
"#,
            csv.display()
        ),
    )
    .unwrap();
    // Nothing is contacted: neither address needs to answer.
    let out = run(&file, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("configuration is valid"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn print_config_shows_every_layer_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.toml");
    std::fs::write(
        &file,
        r#"
[kafka]
brokers = "b-1.msk.example:9096"
topic = "fleet-raw-events"

[kafka.client]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "fleet"
"sasl.password" = "kafka-hunter2"
"ssl.key.password" = "key-hunter2"
"sasl.oauthbearer.client.secret" = "oauth-hunter2"

[windows]
length_ms = 10000

[remote_write]
url = "https://prometheus.example/api/v1/write"
basic_auth_username = "writer"
basic_auth_password = "rw-hunter2"
headers = { "X-Scope-OrgID" = "tenant-hunter2", Authorization = "Bearer token-hunter2" }
"#,
    )
    .unwrap();
    let out = run(
        &file,
        &["print-config"],
        &[("FLEET__KAFKA__GROUP_ID", "from-the-environment")],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!stdout.contains("hunter2"), "a secret is shown:\n{stdout}");

    let printed: toml::Table = stdout.parse().unwrap();
    let kafka = printed["kafka"].as_table().unwrap();
    let client = kafka["client"].as_table().unwrap();
    for key in [
        "sasl.password",
        "ssl.key.password",
        "sasl.oauthbearer.client.secret",
    ] {
        assert_eq!(client[key].as_str(), Some("<redacted>"), "{key}");
    }
    let remote = printed["remote_write"].as_table().unwrap();
    assert_eq!(remote["basic_auth_password"].as_str(), Some("<redacted>"));
    let headers = remote["headers"].as_table().unwrap();
    assert_eq!(headers.len(), 2);
    assert!(headers.values().all(|v| v.as_str() == Some("<redacted>")));

    // Non-secrets are shown as given, from every layer: the file, the
    // environment and the embedded defaults.
    assert_eq!(client["sasl.username"].as_str(), Some("fleet"));
    assert_eq!(client["security.protocol"].as_str(), Some("SASL_SSL"));
    assert_eq!(remote["basic_auth_username"].as_str(), Some("writer"));
    assert_eq!(kafka["topic"].as_str(), Some("fleet-raw-events"));
    assert_eq!(kafka["group_id"].as_str(), Some("from-the-environment"));
    assert_eq!(printed["windows"]["length_ms"].as_integer(), Some(10000));
    assert_eq!(
        printed["windows"]["out_of_orderness_ms"].as_integer(),
        Some(2000)
    );
    assert_eq!(printed["telemetry"]["log_format"].as_str(), Some("human"));
    assert_eq!(
        printed["reference"]["unknown_vehicle"].as_str(),
        Some("unknown")
    );

    // The output is itself a configuration the service loads.
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, &stdout).unwrap();
    let out = run(&again, &["print-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).parse::<toml::Table>().unwrap(), printed);
}

#[test]
fn print_config_refuses_an_unloadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[windows]\nlenght_ms = 1\n").unwrap();
    let out = run(&file, &["print-config"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("lenght_ms"));
    assert!(out.stdout.is_empty());
}

#[test]
fn check_config_refuses_numbers_that_are_not_exactly_integers_and_unknown_log_levels() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inexact.toml");
    std::fs::write(
        &file,
        "[remote_write]\nshards = 0.5\n[kafka]\ncommit_interval_ms = 1e4\n[telemetry]\nlog_level = \"verbose!!\"\n",
    )
    .unwrap();
    // Too large for an i64: the environment value is read as a float.
    let out = run(
        &file,
        &["check-config"],
        &[("FLEET__WINDOWS__LENGTH_MS", "100000000000000000000")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in [
        "remote_write.shards: ",
        "kafka.commit_interval_ms: ",
        "telemetry.log_level: ",
        "windows.length_ms: ",
    ] {
        assert!(stderr.contains(key), "{key} not named in:\n{stderr}");
    }
}

#[test]
fn check_config_runs_the_checks_the_service_runs_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let one_column = write("one-column.csv", "vehicle_id,model\nV1,A\nV2\n");
    let open_quote = write("open-quote.csv", "vehicle_id,model\nV1,\"A\nV2,B\n");
    for (csv, problem) in [
        (&one_column, "line 3: empty or missing model"),
        (&open_quote, "line 2: a field holds a line break"),
    ] {
        let file = write(
            "reference.toml",
            &format!("[reference]\ncsv_path = \"{}\"\n", csv.display()),
        );
        let out = run(&file, &["check-config"], &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains("reference.csv_path: "), "{stderr}");
        assert!(stderr.contains(problem), "{stderr}");
    }
    let file = write(
        "client.toml",
        "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[kafka.client]\n\"no.such.property\" = \"1\"\n\
         [remote_write]\nurl = \"http://127.0.0.1:9090/api/v1/write\"\n\
         bearer_token_file = \"/nonexistent/token\"\n",
    );
    let out = run(&file, &["check-config"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("kafka.client.no.such.property: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("remote_write.bearer_token_file: cannot read"),
        "{stderr}"
    );
}

#[test]
fn check_config_reads_the_schema_of_binary_records_and_names_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let proto = dir.path().join("record.proto");
    std::fs::write(
        &proto,
        "syntax = \"proto3\";\npackage fleet.v1;\n\
         message Record { string vehicleId = 1; string region = 2; int64 timestamp = 3;\n\
         string eventType = 4; sint64 measurement = 5; }\n",
    )
    .unwrap();
    let config = |format: &str, schema: &Path, message: &str| {
        format!(
            "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[input]\nformat = \"{format}\"\n\
             schema_file = \"{}\"\nmessage = \"{message}\"\n",
            schema.display()
        )
    };
    let good = dir.path().join("good.toml");
    std::fs::write(&good, config("protobuf", &proto, "fleet.v1.Record")).unwrap();
    let out = run(&good, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("narrow protobuf records"));

    assert_problems(
        dir.path(),
        "message.toml",
        &config("protobuf", &proto, "fleet.v1.Event"),
        &["input.message: ", "fleet.v1.Record"],
    );
    std::fs::write(
        &proto,
        std::fs::read_to_string(&proto)
            .unwrap()
            .replace("string region", "int32 region"),
    )
    .unwrap();
    assert_problems(
        dir.path(),
        "types.toml",
        &config("protobuf", &proto, "fleet.v1.Record"),
        &["input.labels: region is an int32, which cannot hold a text"],
    );
    let avsc = dir.path().join("record.avsc");
    std::fs::write(
        &avsc,
        "{\"type\": \"record\", \"name\": \"R\", \"fields\": []}",
    )
    .unwrap();
    assert_problems(
        dir.path(),
        "avro.toml",
        &config("avro", &avsc, ""),
        &[
            "input.vehicle_id: record R has no field \"vehicleId\"",
            "input.time: ",
        ],
    );
    assert_problems(
        dir.path(),
        "no-schema.toml",
        &config("avro", Path::new(""), ""),
        &["input.schema_file: avro records need their schema file"],
    );
    assert_problems(
        dir.path(),
        "no-message.toml",
        &config("protobuf", &proto, ""),
        &["input.message: name the record's Protobuf message type"],
    );
    // Framed records: the registry names their schema; JSON is never framed.
    assert_problems(
        dir.path(),
        "registry.toml",
        &format!(
            "{}[schema_registry]\nurl = \"http://127.0.0.1:8081\"\n",
            config("protobuf", &proto, "fleet.v1.Record")
        ),
        &[
            "input.schema_file: records framed for a registry",
            "input.message: ",
        ],
    );
    assert_problems(
        dir.path(),
        "registry-json.toml",
        "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[schema_registry]\nurl = \"ftp://x\"\n",
        &[
            "schema_registry.url: \"ftp://x\" is not an http(s) URL",
            "JSON records are not framed",
        ],
    );
    // The embedded generator writes JSON only.
    std::fs::write(
        &proto,
        std::fs::read_to_string(&proto)
            .unwrap()
            .replace("int32 region", "string region"),
    )
    .unwrap();
    assert_problems(
        dir.path(),
        "embedded.toml",
        &config("protobuf", &proto, "fleet.v1.Record").replace("brokers = \"127.0.0.1:9092\"", ""),
        &["input.format: the embedded generator"],
    );
}
