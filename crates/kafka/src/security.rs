//! `[kafka.security]`: how the clients reach the brokers — TLS, SASL/PLAIN,
//! SASL/SCRAM, or Amazon MSK's IAM access control.
//!
//! The section is typed and validated ([`KafkaSecurity::validate`], each
//! problem named by its key), then translated into librdkafka's properties
//! ([`KafkaSecurity::apply`]):
//!
//! | `kafka.security` | librdkafka |
//! |---|---|
//! | `protocol` = `plaintext` \| `ssl` \| `sasl_plaintext` \| `sasl_ssl` | `security.protocol` = `PLAINTEXT` \| `SSL` \| `SASL_PLAINTEXT` \| `SASL_SSL` |
//! | `ca_file` (with TLS) | `ssl.ca.location` = the file; unset: `probe` (the system's CA store: `/etc/ssl/certs/ca-certificates.crt` on Debian) |
//! | `sasl_mechanism` = `plain` \| `scram_sha_256` \| `scram_sha_512` \| `aws_msk_iam` | `sasl.mechanisms` = `PLAIN` \| `SCRAM-SHA-256` \| `SCRAM-SHA-512` \| `OAUTHBEARER` |
//! | `username`, `password` or `password_env` | `sasl.username`, `sasl.password` |
//! | `aws_region` (MSK IAM) | the region the tokens are signed for |
//!
//! librdkafka's server-certificate host name check
//! (`ssl.endpoint.identification.algorithm = https`) stays on.
//!
//! With `aws_msk_iam`, librdkafka asks the client context for an OAUTHBEARER
//! token at start and again at 80 % of its lifetime; [`SecurityContext`]
//! answers with an MSK IAM token ([`crate::msk_iam`]) signed with the
//! credentials of the standard AWS chain, which [`TokenProvider`] keeps
//! fresh in the background (see [`tokens`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use fleet_aws::{Region, RegionError};
use fleet_core::config::Problems;
use fleet_core::Secret;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

pub mod tokens;

pub use tokens::{SecurityContext, SecurityError, TokenProvider};

/// `kafka.security.protocol`: the transport and whether SASL authenticates it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no authentication (default).
    #[default]
    Plaintext,
    /// TLS, no SASL (or TLS client certificates through `kafka.client`).
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS (MSK: SCRAM on port 9096, IAM on port 9098).
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's `security.protocol` value.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// The configuration word.
    pub fn key_name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether connections use TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// `kafka.security.sasl_mechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum SaslMechanism {
    /// SASL/PLAIN: user name and password, as they are (use it over TLS only).
    #[serde(rename = "plain")]
    Plain,
    /// SASL/SCRAM-SHA-256.
    #[serde(rename = "scram_sha_256")]
    ScramSha256,
    /// SASL/SCRAM-SHA-512 (MSK's SCRAM, with the secret in AWS Secrets Manager).
    #[serde(rename = "scram_sha_512")]
    ScramSha512,
    /// Amazon MSK IAM access control: SASL/OAUTHBEARER with a SigV4-signed
    /// token from the standard AWS credential chain.
    #[serde(rename = "aws_msk_iam")]
    AwsMskIam,
}

impl SaslMechanism {
    /// Every mechanism, in the order the documentation lists them.
    pub const ALL: [SaslMechanism; 4] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::AwsMskIam,
    ];

    /// librdkafka's `sasl.mechanisms` value.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::AwsMskIam => "OAUTHBEARER",
        }
    }

    /// The configuration word.
    pub fn key_name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "plain",
            SaslMechanism::ScramSha256 => "scram_sha_256",
            SaslMechanism::ScramSha512 => "scram_sha_512",
            SaslMechanism::AwsMskIam => "aws_msk_iam",
        }
    }

    /// Whether it authenticates with a user name and a password.
    pub fn uses_password(self) -> bool {
        !matches!(self, SaslMechanism::AwsMskIam)
    }
}

/// A text key where an empty or blank string counts as unset, so that
/// `config/default.toml` can list the key and an environment variable can
/// clear it: the value loaded from the defaults equals the `Default`.
fn unset_if_empty<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: From<String>,
{
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value.filter(|v| !v.trim().is_empty()).map(T::from))
}

/// `sasl_mechanism`: one of the words, or empty (unset), so that
/// `config/default.toml` can list the key and an environment variable can clear it.
fn mechanism_or_empty<'de, D>(d: D) -> Result<Option<SaslMechanism>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let word: Option<String> = Option::deserialize(d)?;
    let Some(word) = word.as_deref().map(str::trim).filter(|w| !w.is_empty()) else {
        return Ok(None);
    };
    SaslMechanism::ALL
        .into_iter()
        .find(|m| m.key_name() == word)
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "unknown variant `{word}`, expected one of `plain`, `scram_sha_256`, `scram_sha_512`, `aws_msk_iam` (or empty)"
            ))
        })
}

/// `[kafka.security]`. Empty strings count as unset (so that an environment
/// variable can clear a key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    /// Transport and authentication. Default `plaintext`.
    pub protocol: SecurityProtocol,
    /// PEM file of the CA certificates that sign the brokers' certificates
    /// (with `ssl` and `sasl_ssl`). Unset: the system's CA store, which
    /// trusts MSK's certificates (Amazon Trust Services).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unset_if_empty"
    )]
    pub ca_file: Option<PathBuf>,
    /// The SASL mechanism (required with `sasl_plaintext` and `sasl_ssl`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "mechanism_or_empty"
    )]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name (`plain`, `scram_*`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unset_if_empty"
    )]
    pub username: Option<String>,
    /// SASL password (`plain`, `scram_*`). A secret: prefer `password_env`,
    /// or set it with `FLEET__KAFKA__SECURITY__PASSWORD`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unset_if_empty"
    )]
    pub password: Option<Secret>,
    /// The name of an environment variable holding the SASL password (for
    /// example one a Kubernetes or ECS secret fills), read at start.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unset_if_empty"
    )]
    pub password_env: Option<String>,
    /// With `aws_msk_iam`: the cluster's region, which the tokens are signed
    /// for. Unset: the region in the brokers' host names
    /// (`b-1.<cluster>.<id>.c2.kafka.<region>.amazonaws.com`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unset_if_empty"
    )]
    pub aws_region: Option<String>,
}

/// librdkafka properties that `[kafka.security]` sets, refused in
/// `kafka.client` (key, the `kafka.security` key to use instead).
const SECURITY_PROPERTIES: [(&str, &str); 7] = [
    ("security.protocol", "protocol"),
    ("sasl.mechanism", "sasl_mechanism"),
    ("sasl.mechanisms", "sasl_mechanism"),
    ("sasl.username", "username"),
    ("sasl.password", "password or password_env"),
    ("ssl.ca.location", "ca_file"),
    ("ssl.ca.pem", "ca_file"),
];

/// `kafka.client` keys whose values are secrets (case-insensitive
/// substrings): SASL and TLS key passwords, OAUTHBEARER settings, inline
/// private keys. [`crate::ClientProperties`] shows them as [`Secret`]s.
pub const SECRET_CLIENT_KEYS: [&str; 5] = [
    "password",
    "secret",
    "sasl.oauthbearer",
    "token",
    "ssl.key.pem",
];

/// Whether the `kafka.client` property `key` holds a secret.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_CLIENT_KEYS.iter().any(|s| key.contains(s))
}

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

fn set_secret(value: &Option<Secret>) -> Option<&Secret> {
    value.as_ref().filter(|v| !v.expose().trim().is_empty())
}

impl KafkaSecurity {
    /// The CA file, unless unset or empty.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
    }

    /// The SASL password: `password`, else the variable `password_env` names.
    pub fn resolved_password(&self) -> Result<Option<Secret>, String> {
        self.resolved_password_from(|name| std::env::var_os(name))
    }

    /// [`resolved_password`](Self::resolved_password) with `env` for the environment.
    fn resolved_password_from(
        &self,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Option<Secret>, String> {
        if let Some(password) = set_secret(&self.password) {
            return Ok(Some(password.clone()));
        }
        let Some(name) = set(&self.password_env) else {
            return Ok(None);
        };
        match env(name).map(std::ffi::OsString::into_string) {
            Some(Ok(value)) if !value.is_empty() => Ok(Some(Secret::from(value))),
            Some(Ok(_)) => Err(format!("the environment variable {name} is empty")),
            Some(Err(_)) => Err(format!("the environment variable {name} is not UTF-8")),
            None => Err(format!("the environment variable {name} is not set")),
        }
    }

    /// The region MSK IAM tokens are signed for: `aws_region` (an error if
    /// it is not a region), else the one in the brokers' host names, if any.
    pub fn msk_region(&self, brokers: &str) -> Result<Option<Region>, RegionError> {
        match set(&self.aws_region) {
            Some(region) => Region::parse(region).map(Some),
            None => Ok(region_from_brokers(brokers)),
        }
    }

    /// Whether the clients authenticate with MSK IAM (and need a [`SecurityContext`] with tokens).
    pub fn uses_msk_iam(&self) -> bool {
        self.protocol.uses_sasl() && self.sasl_mechanism == Some(SaslMechanism::AwsMskIam)
    }

    /// Checks the section, recording problems under `kafka.security.*`, and
    /// the `kafka.client` properties it would conflict with.
    pub fn validate(
        &self,
        brokers: &str,
        client: &BTreeMap<String, String>,
        problems: &mut Problems,
    ) {
        const KEY: &str = "kafka.security";
        let key = |name: &str| format!("{KEY}.{name}");
        let protocol = self.protocol;
        let protocol_word = protocol.key_name();

        // TLS.
        if let Some(path) = self.ca_file() {
            if !protocol.uses_tls() {
                problems.add(
                    &key("ca_file"),
                    format!("is only used with protocol \"ssl\" or \"sasl_ssl\", not \"{protocol_word}\""),
                );
            } else if let Err(problem) = check_ca_file(path) {
                problems.add(&key("ca_file"), problem);
            }
        }

        // SASL.
        let mechanism = self.sasl_mechanism;
        match (protocol.uses_sasl(), mechanism) {
            (true, None) => problems.add(
                &key("sasl_mechanism"),
                format!(
                    "is required with protocol \"{protocol_word}\": \"plain\", \"scram_sha_256\", \"scram_sha_512\" or \"aws_msk_iam\""
                ),
            ),
            (false, Some(m)) => problems.add(
                &key("sasl_mechanism"),
                format!(
                    "\"{}\" needs protocol \"sasl_ssl\" (or \"sasl_plaintext\"), not \"{protocol_word}\"",
                    m.key_name()
                ),
            ),
            _ => {}
        }
        let sasl = mechanism.filter(|_| protocol.uses_sasl());
        let with_password = sasl.filter(|m| m.uses_password());
        let not_used = |problems: &mut Problems, name: &str, value: bool| {
            if value {
                let why = match sasl {
                    Some(SaslMechanism::AwsMskIam) => {
                        "is not used with sasl_mechanism \"aws_msk_iam\" (the identity comes from the AWS credentials)".to_string()
                    }
                    Some(m) => format!("is not used with sasl_mechanism \"{}\"", m.key_name()),
                    None => "is only used with a SASL protocol (\"sasl_ssl\" or \"sasl_plaintext\")".to_string(),
                };
                problems.add(&key(name), why);
            }
        };
        match with_password {
            Some(m) => {
                let word = m.key_name();
                problems.check(
                    set(&self.username).is_some(),
                    &key("username"),
                    format!("is required with sasl_mechanism \"{word}\""),
                );
                match (set_secret(&self.password), set(&self.password_env)) {
                    (Some(_), Some(_)) => problems.add(
                        &key("password"),
                        "set either password or password_env, not both",
                    ),
                    (None, None) => problems.add(
                        &key("password"),
                        format!("is required with sasl_mechanism \"{word}\": set password or password_env"),
                    ),
                    (None, Some(_)) => {
                        if let Err(problem) = self.resolved_password() {
                            problems.add(&key("password_env"), problem);
                        }
                    }
                    (Some(_), None) => {}
                }
            }
            None => {
                not_used(problems, "username", set(&self.username).is_some());
                not_used(problems, "password", set_secret(&self.password).is_some());
                not_used(problems, "password_env", set(&self.password_env).is_some());
            }
        }
        if sasl == Some(SaslMechanism::AwsMskIam) {
            problems.check(
                protocol == SecurityProtocol::SaslSsl,
                &key("protocol"),
                format!(
                    "must be \"sasl_ssl\" with sasl_mechanism \"aws_msk_iam\" (MSK takes IAM authentication over TLS only, port 9098), not \"{protocol_word}\""
                ),
            );
            match self.msk_region(brokers) {
                Ok(Some(_)) => {}
                Ok(None) => problems.add(
                    &key("aws_region"),
                    "is required with sasl_mechanism \"aws_msk_iam\": the brokers' host names do not name a region",
                ),
                Err(problem) => problems.add(&key("aws_region"), problem.to_string()),
            }
        } else {
            not_used(problems, "aws_region", set(&self.aws_region).is_some());
        }

        // Pass-through properties that the typed keys set.
        for name in client.keys() {
            if let Some((_, typed)) = SECURITY_PROPERTIES.iter().find(|(p, _)| *p == name) {
                problems.add(
                    &format!("kafka.client.{name}"),
                    format!("is set by [kafka.security]; use kafka.security.{typed}"),
                );
            } else if sasl == Some(SaslMechanism::AwsMskIam)
                && (name.starts_with("sasl.oauthbearer")
                    || name.starts_with("enable.sasl.oauthbearer"))
            {
                problems.add(
                    &format!("kafka.client.{name}"),
                    "conflicts with sasl_mechanism \"aws_msk_iam\", whose OAUTHBEARER tokens the service makes itself",
                );
            }
        }
    }

    /// Sets the librdkafka properties of the section on `c`.
    pub fn apply(&self, c: &mut ClientConfig) {
        let protocol = self.protocol;
        if protocol != SecurityProtocol::Plaintext {
            c.set("security.protocol", protocol.librdkafka_name());
        }
        if protocol.uses_tls() {
            match self.ca_file() {
                Some(path) => c.set("ssl.ca.location", path.to_string_lossy()),
                // librdkafka's `probe`: the first of the usual system CA
                // bundle paths that exists. OpenSSL is linked statically
                // (rdkafka's `ssl-vendored`), so its own compiled-in default
                // directory would not be the system's.
                None => c.set("ssl.ca.location", "probe"),
            };
        }
        if let Some(mechanism) = self.sasl_mechanism.filter(|_| protocol.uses_sasl()) {
            c.set("sasl.mechanisms", mechanism.librdkafka_name());
            if mechanism.uses_password() {
                if let Some(username) = set(&self.username) {
                    c.set("sasl.username", username);
                }
                if let Ok(Some(password)) = self.resolved_password() {
                    c.set("sasl.password", password.expose());
                }
            }
        }
    }
}

/// Whether `path` is a readable file with at least one PEM certificate.
fn check_ca_file(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let pem = String::from_utf8_lossy(&text);
    if pem.contains("-----BEGIN CERTIFICATE-----") {
        Ok(())
    } else {
        Err(format!(
            "{} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
            path.display()
        ))
    }
}

/// The region in MSK broker host names: `b-1.<cluster>.<id>.c2.kafka.<region>.amazonaws.com`
/// (provisioned) or `boot-<id>.c1.kafka-serverless.<region>.amazonaws.com`
/// (serverless), also `.amazonaws.com.cn`. `None` unless every broker names
/// the same region.
pub fn region_from_brokers(brokers: &str) -> Option<Region> {
    let mut found: Option<Region> = None;
    for broker in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let host = broker.rsplit_once(':').map_or(broker, |(host, _)| host);
        let region = fleet_aws::region_from_host(host, &["kafka", "kafka-serverless"])?;
        match &found {
            Some(other) if *other != region => return None,
            _ => found = Some(region),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;

    use super::*;
    use crate::KafkaConfig;

    const MSK: &str = "b-1.fleet.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.fleet.abc123.c2.kafka.eu-west-1.amazonaws.com:9098";

    fn problems_of(cfg: &KafkaConfig) -> Vec<(String, String)> {
        let mut p = Problems::default();
        cfg.validate(&mut p);
        match p.finish(()) {
            Ok(()) => vec![],
            Err(e) => e
                .problems
                .iter()
                .map(|p| (p.key.clone(), p.problem.clone()))
                .collect(),
        }
    }

    fn keys_of(cfg: &KafkaConfig) -> Vec<String> {
        problems_of(cfg).into_iter().map(|(k, _)| k).collect()
    }

    fn with(security: KafkaSecurity) -> KafkaConfig {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            security,
            ..KafkaConfig::default()
        }
    }

    fn props(cfg: &KafkaConfig) -> BTreeMap<String, String> {
        let c = cfg.consumer_config();
        [
            "security.protocol",
            "ssl.ca.location",
            "sasl.mechanisms",
            "sasl.username",
            "sasl.password",
        ]
        .into_iter()
        .filter_map(|k| c.get(k).map(|v| (k.to_string(), v.to_string())))
        .collect()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ca_file() -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
        )
        .unwrap();
        f
    }

    #[test]
    fn the_default_is_plaintext_and_sets_nothing() {
        let cfg = with(KafkaSecurity::default());
        assert!(problems_of(&cfg).is_empty());
        assert!(props(&cfg).is_empty());
    }

    #[test]
    fn tls_with_a_ca_file_or_the_system_store() {
        let ca = ca_file();
        let cfg = with(KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            ca_file: Some(ca.path().to_path_buf()),
            ..KafkaSecurity::default()
        });
        assert_eq!(problems_of(&cfg), vec![]);
        assert_eq!(
            props(&cfg),
            map(&[
                ("security.protocol", "SSL"),
                ("ssl.ca.location", ca.path().to_str().unwrap())
            ])
        );
        let system = with(KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            ca_file: Some(PathBuf::new()),
            ..KafkaSecurity::default()
        });
        assert_eq!(problems_of(&system), vec![]);
        assert_eq!(
            props(&system),
            map(&[("security.protocol", "SSL"), ("ssl.ca.location", "probe")])
        );
    }

    #[test]
    fn scram_over_tls() {
        for (mechanism, name) in [
            (SaslMechanism::ScramSha256, "SCRAM-SHA-256"),
            (SaslMechanism::ScramSha512, "SCRAM-SHA-512"),
            (SaslMechanism::Plain, "PLAIN"),
        ] {
            let cfg = with(KafkaSecurity {
                protocol: SecurityProtocol::SaslSsl,
                sasl_mechanism: Some(mechanism),
                username: Some("fleet".into()),
                password: Some("pw".into()),
                ..KafkaSecurity::default()
            });
            assert_eq!(problems_of(&cfg), vec![]);
            assert_eq!(
                props(&cfg),
                map(&[
                    ("security.protocol", "SASL_SSL"),
                    ("ssl.ca.location", "probe"),
                    ("sasl.mechanisms", name),
                    ("sasl.username", "fleet"),
                    ("sasl.password", "pw"),
                ])
            );
        }
    }

    #[test]
    fn the_password_can_come_from_an_environment_variable() {
        // PATH is set (and not empty) wherever tests run.
        let path = std::env::var("PATH").unwrap();
        let cfg = with(KafkaSecurity {
            protocol: SecurityProtocol::SaslPlaintext,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            username: Some("fleet".into()),
            password_env: Some("PATH".into()),
            ..KafkaSecurity::default()
        });
        assert_eq!(problems_of(&cfg), vec![]);
        assert_eq!(props(&cfg)["sasl.password"], path);
        assert_eq!(props(&cfg)["security.protocol"], "SASL_PLAINTEXT");
        assert!(!props(&cfg).contains_key("ssl.ca.location"));
        let missing = with(KafkaSecurity {
            password_env: Some("FLEET_KAFKA_SECURITY_TEST_UNSET_VARIABLE".into()),
            ..cfg.security.clone()
        });
        assert_eq!(
            problems_of(&missing),
            vec![(
                "kafka.security.password_env".to_string(),
                "the environment variable FLEET_KAFKA_SECURITY_TEST_UNSET_VARIABLE is not set"
                    .to_string()
            )]
        );
        let env = |value: &'static str| move |_: &str| Some(std::ffi::OsString::from(value));
        assert_eq!(
            cfg.security.resolved_password_from(env("s3cret")),
            Ok(Some(Secret::from("s3cret")))
        );
        assert_eq!(
            cfg.security.resolved_password_from(env("")),
            Err("the environment variable PATH is empty".to_string())
        );
        // `password` wins over the environment (validation refuses both).
        let given = KafkaSecurity {
            password: Some("given".into()),
            ..cfg.security.clone()
        };
        assert_eq!(
            given.resolved_password_from(env("s3cret")),
            Ok(Some(Secret::from("given")))
        );
    }

    #[test]
    fn msk_iam_uses_oauthbearer_and_finds_the_region() {
        let cfg = KafkaConfig {
            brokers: MSK.into(),
            security: KafkaSecurity {
                protocol: SecurityProtocol::SaslSsl,
                sasl_mechanism: Some(SaslMechanism::AwsMskIam),
                ..KafkaSecurity::default()
            },
            ..KafkaConfig::default()
        };
        assert_eq!(problems_of(&cfg), vec![]);
        assert_eq!(
            props(&cfg),
            map(&[
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.location", "probe"),
                ("sasl.mechanisms", "OAUTHBEARER"),
            ])
        );
        assert!(cfg.security.uses_msk_iam());
        assert_eq!(
            cfg.security.msk_region(MSK).unwrap().as_deref(),
            Some("eu-west-1")
        );
        // Elsewhere (a tunnel, a local name) the region must be given.
        let tunnel = KafkaConfig {
            brokers: "localhost:9098".into(),
            ..cfg.clone()
        };
        assert_eq!(keys_of(&tunnel), vec!["kafka.security.aws_region"]);
        let given = KafkaConfig {
            security: KafkaSecurity {
                aws_region: Some("us-east-1".into()),
                ..tunnel.security.clone()
            },
            ..tunnel
        };
        assert_eq!(problems_of(&given), vec![]);
        assert_eq!(
            given
                .security
                .msk_region(&given.brokers)
                .unwrap()
                .as_deref(),
            Some("us-east-1")
        );
        // An availability zone is not a region, and is named as what it is.
        let zone = KafkaConfig {
            security: KafkaSecurity {
                aws_region: Some("eu-west-1a".into()),
                ..given.security.clone()
            },
            ..given
        };
        let problems = problems_of(&zone);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (key, problem) = &problems[0];
        assert_eq!(key, "kafka.security.aws_region");
        assert!(problem.contains("availability zone"), "{problem}");
        assert!(zone.security.msk_region(&zone.brokers).is_err());
    }

    #[test]
    fn names_every_inconsistent_key() {
        let cases: Vec<(KafkaSecurity, BTreeMap<String, String>, Vec<&str>)> = vec![
            // SCRAM without a user or a password.
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::SaslSsl,
                    sasl_mechanism: Some(SaslMechanism::ScramSha512),
                    ..KafkaSecurity::default()
                },
                BTreeMap::new(),
                vec!["kafka.security.username", "kafka.security.password"],
            ),
            // Both password sources; a region that SCRAM does not use.
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::SaslSsl,
                    sasl_mechanism: Some(SaslMechanism::ScramSha256),
                    username: Some("u".into()),
                    password: Some("p".into()),
                    password_env: Some("P".into()),
                    aws_region: Some("eu-west-1".into()),
                    ..KafkaSecurity::default()
                },
                BTreeMap::new(),
                vec!["kafka.security.password", "kafka.security.aws_region"],
            ),
            // SASL protocol without a mechanism.
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::SaslPlaintext,
                    ..KafkaSecurity::default()
                },
                BTreeMap::new(),
                vec!["kafka.security.sasl_mechanism"],
            ),
            // A mechanism, a user and a CA without the protocol that uses them.
            (
                KafkaSecurity {
                    ca_file: Some("/etc/ssl/certs/ca-certificates.crt".into()),
                    sasl_mechanism: Some(SaslMechanism::ScramSha512),
                    username: Some("u".into()),
                    ..KafkaSecurity::default()
                },
                BTreeMap::new(),
                vec![
                    "kafka.security.ca_file",
                    "kafka.security.sasl_mechanism",
                    "kafka.security.username",
                ],
            ),
            // A CA file that does not exist.
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::Ssl,
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..KafkaSecurity::default()
                },
                BTreeMap::new(),
                vec!["kafka.security.ca_file"],
            ),
            // MSK IAM: not over plaintext, no user, a bad region, no
            // OAUTHBEARER pass-through.
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::SaslPlaintext,
                    sasl_mechanism: Some(SaslMechanism::AwsMskIam),
                    username: Some("u".into()),
                    aws_region: Some("Ireland".into()),
                    ..KafkaSecurity::default()
                },
                map(&[("sasl.oauthbearer.config", "x"), ("fetch.min.bytes", "1")]),
                vec![
                    "kafka.security.username",
                    "kafka.security.protocol",
                    "kafka.security.aws_region",
                    "kafka.client.sasl.oauthbearer.config",
                ],
            ),
            // Pass-through properties that the typed keys set.
            (
                KafkaSecurity::default(),
                map(&[
                    ("security.protocol", "SASL_SSL"),
                    ("sasl.mechanism", "PLAIN"),
                    ("sasl.password", "x"),
                    ("ssl.ca.location", "/x"),
                    ("ssl.certificate.location", "/client.pem"),
                ]),
                vec![
                    "kafka.client.sasl.mechanism",
                    "kafka.client.sasl.password",
                    "kafka.client.security.protocol",
                    "kafka.client.ssl.ca.location",
                ],
            ),
        ];
        for (security, client, expected) in cases {
            let cfg = KafkaConfig {
                client: client.into(),
                ..with(security.clone())
            };
            assert_eq!(keys_of(&cfg), expected, "{security:?}");
        }
    }

    #[test]
    fn problems_say_what_to_do() {
        let cfg = with(KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            username: Some("fleet".into()),
            ..KafkaSecurity::default()
        });
        assert_eq!(
            problems_of(&cfg),
            vec![(
                "kafka.security.password".to_string(),
                "is required with sasl_mechanism \"scram_sha_512\": set password or password_env"
                    .to_string()
            )]
        );
        let bad = with(KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..KafkaSecurity::default()
        });
        let (_, problem) = &problems_of(&bad)[0];
        assert!(
            problem.starts_with("cannot read /nonexistent/ca.pem: "),
            "{problem}"
        );
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        let bad = with(KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            ca_file: Some(not_pem.path().to_path_buf()),
            ..KafkaSecurity::default()
        });
        let (_, problem) = &problems_of(&bad)[0];
        assert!(problem.contains("holds no PEM certificate"), "{problem}");
    }

    #[test]
    fn reads_the_region_of_msk_broker_names() {
        let cases = [
            (MSK, Some("eu-west-1")),
            (
                "boot-abcd1234.c1.kafka-serverless.us-east-2.amazonaws.com:9098",
                Some("us-east-2"),
            ),
            (
                "b-1.c.x.c3.kafka.cn-north-1.amazonaws.com.cn:9096",
                Some("cn-north-1"),
            ),
            ("localhost:9092", None),
            ("b-1.x.kafka.eu-west-1.example.com:9098", None),
            // Brokers in two regions: no guess.
            (
                "b-1.a.b.c2.kafka.eu-west-1.amazonaws.com:9098,b-1.a.b.c2.kafka.us-east-1.amazonaws.com:9098",
                None,
            ),
            ("", None),
        ];
        for (brokers, region) in cases {
            assert_eq!(region_from_brokers(brokers).as_deref(), region, "{brokers}");
        }
    }

    #[test]
    fn deserializes_the_documented_words_and_hides_the_password() {
        let security: KafkaSecurity = toml::from_str(
            "protocol = \"sasl_ssl\"\nsasl_mechanism = \"scram_sha_512\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        assert_eq!(security.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(security.sasl_mechanism, Some(SaslMechanism::ScramSha512));
        assert!(!format!("{security:?}").contains("hunter2"));
        for word in ["plain", "scram_sha_256", "scram_sha_512", "aws_msk_iam"] {
            let s: KafkaSecurity = toml::from_str(&format!("sasl_mechanism = \"{word}\"")).unwrap();
            assert_eq!(s.sasl_mechanism.map(SaslMechanism::key_name), Some(word));
        }
        for word in ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"] {
            let s: KafkaSecurity = toml::from_str(&format!("protocol = \"{word}\"")).unwrap();
            assert_eq!(s.protocol.key_name(), word);
        }
        assert!(toml::from_str::<KafkaSecurity>("protocol = \"tls\"").is_err());
        assert!(toml::from_str::<KafkaSecurity>("passwd = \"x\"").is_err());
        let empty: KafkaSecurity = toml::from_str("sasl_mechanism = \"\"").unwrap();
        assert_eq!(empty.sasl_mechanism, None);
        let error = toml::from_str::<KafkaSecurity>("sasl_mechanism = \"scram\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected one of `plain`"), "{error}");
    }

    /// `config/default.toml` lists every key of the section, all unset.
    #[test]
    fn the_documented_defaults_are_plaintext_with_nothing_set() {
        let defaults: toml::Table =
            toml::from_str(include_str!("../../../config/default.toml")).unwrap();
        let kafka: KafkaConfig = defaults["kafka"].clone().try_into().unwrap();
        let section = kafka.security.clone();
        assert_eq!(section.protocol, SecurityProtocol::Plaintext);
        let listed = defaults["kafka"]["security"].as_table().unwrap();
        for key in [
            "protocol",
            "ca_file",
            "sasl_mechanism",
            "username",
            "password",
            "password_env",
            "aws_region",
        ] {
            assert!(
                listed.contains_key(key),
                "kafka.security.{key} is not listed"
            );
        }
        let cfg = KafkaConfig {
            brokers: "localhost:9092".into(),
            ..kafka
        };
        assert_eq!(problems_of(&cfg), vec![]);
        assert!(props(&cfg).is_empty());
        // An unset password stays unset when the configuration is printed.
        let printed: toml::Table = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        let password = printed["security"].get("password");
        assert!(
            password.is_none_or(|p| p.as_str() == Some("")),
            "{password:?}"
        );
    }

    #[test]
    fn printing_hides_the_password_and_secret_client_properties() {
        let cfg = KafkaConfig {
            security: KafkaSecurity {
                password: Some("hunter2".into()),
                ..KafkaSecurity::default()
            },
            client: map(&[
                ("ssl.key.password", "k3y"),
                ("SASL.OAUTHBEARER.CLIENT.SECRET", "0auth"),
                ("fetch.min.bytes", "1"),
            ])
            .into(),
            ..KafkaConfig::default()
        };
        for text in [toml::to_string(&cfg).unwrap(), format!("{cfg:?}")] {
            for secret in ["hunter2", "k3y", "0auth"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        let printed: toml::Table = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(printed["security"]["password"].as_str(), Some("<redacted>"));
        let client = printed["client"].as_table().unwrap();
        assert_eq!(client["ssl.key.password"].as_str(), Some("<redacted>"));
        assert_eq!(
            client["SASL.OAUTHBEARER.CLIENT.SECRET"].as_str(),
            Some("<redacted>")
        );
        assert_eq!(client["fetch.min.bytes"].as_str(), Some("1"));
        // What is sent is the secret itself.
        let sent = cfg.consumer_config();
        assert_eq!(sent.get("ssl.key.password"), Some("k3y"));
        assert_eq!(sent.get("SASL.OAUTHBEARER.CLIENT.SECRET"), Some("0auth"));
    }
}
