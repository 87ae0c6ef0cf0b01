//! Kafka client configuration shared by the source and the producer.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

use fleet_core::config::Problems;
use fleet_core::Secret;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize, Serializer};

use crate::security::{is_secret_property, KafkaSecurity};

/// Where a consumer group without committed offsets starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// The oldest retained event (default).
    #[default]
    Earliest,
    /// Only events produced from now on.
    Latest,
}

/// Where the source starts reading when the process starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The group's committed offsets (default); `auto_offset_reset` where there are none.
    #[default]
    Committed,
    /// The first offset at or after `start_timestamp_ms`, found with the
    /// broker's offsets-for-times: replays from a point in time. Windows
    /// already written (per the commit metadata) are still skipped.
    Timestamp,
}

/// `[kafka]`: the broker connection and the consumer group.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`. Empty (default): Kafka is
    /// not used and the embedded generator feeds the pipeline.
    pub brokers: String,
    /// The topic of raw events. Default `vehicle-events`.
    pub topic: String,
    /// The consumer group. Default `fleet-preprocessor`.
    pub group_id: String,
    /// Where to start when the group has no committed offset. Default `earliest`.
    pub auto_offset_reset: OffsetReset,
    /// How often accepted progress is committed, ms. Default 1000.
    pub commit_interval_ms: u64,
    /// Most messages decoded into one batch. Default 2048.
    pub max_batch_events: usize,
    /// Group session timeout, ms. Default 10000.
    pub session_timeout_ms: u64,
    /// Longest pause between polls before the group evicts this member, ms. Default 300000.
    pub max_poll_interval_ms: u64,
    /// On shutdown, how long to wait for the sink to drain before the final commit, ms. Default 10000.
    pub drain_timeout_ms: u64,
    /// `/readyz` turns false when messages wait on the broker and none is
    /// consumed, or no broker is reachable, for this long, ms. Default 60000.
    pub progress_timeout_ms: u64,
    /// Where to start when the process starts: `committed` (default) or `timestamp`.
    pub start_from: StartFrom,
    /// With `start_from = "timestamp"`: the event time to replay from, epoch ms.
    #[serde(default, deserialize_with = "fleet_core::config::exact_i64")]
    pub start_timestamp_ms: Option<i64>,
    /// `[kafka.security]`: TLS and SASL (SCRAM, or MSK IAM).
    pub security: KafkaSecurity,
    /// Extra librdkafka properties (for example `fetch.max.bytes`, or a TLS
    /// client certificate: `ssl.certificate.location`). Keys this service
    /// manages itself (offsets, group membership, and what
    /// `[kafka.security]` sets) are refused.
    pub client: ClientProperties,
}

/// `[kafka.client]`: librdkafka properties, a map of strings. librdkafka's
/// properties are untyped, so which values are secrets goes by their names
/// ([`crate::security::SECRET_CLIENT_KEYS`]): those are shown as [`Secret`]s
/// by `Debug` and `Serialize` (`print-config`), the others as they are.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ClientProperties(BTreeMap<String, String>);

impl ClientProperties {
    /// The properties as they are shown: secret values as [`Secret`]s.
    fn shown(&self) -> impl Iterator<Item = (&String, Shown<'_>)> {
        self.0.iter().map(|(key, value)| {
            let value = if is_secret_property(key) {
                Shown::Secret(Secret::from(value.as_str()))
            } else {
                Shown::Plain(value)
            };
            (key, value)
        })
    }
}

/// A property value as shown.
enum Shown<'a> {
    Plain(&'a str),
    Secret(Secret),
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Plain(value) => fmt::Debug::fmt(value, f),
            Shown::Secret(secret) => fmt::Debug::fmt(secret, f),
        }
    }
}

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Shown::Plain(value) => s.serialize_str(value),
            Shown::Secret(secret) => secret.serialize(s),
        }
    }
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.shown()).finish()
    }
}

impl Serialize for ClientProperties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.shown())
    }
}

impl Deref for ClientProperties {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for ClientProperties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<BTreeMap<String, String>> for ClientProperties {
    fn from(properties: BTreeMap<String, String>) -> Self {
        ClientProperties(properties)
    }
}

impl FromIterator<(String, String)> for ClientProperties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        ClientProperties(iter.into_iter().collect())
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topic: "vehicle-events".into(),
            group_id: "fleet-preprocessor".into(),
            auto_offset_reset: OffsetReset::Earliest,
            commit_interval_ms: 1000,
            max_batch_events: 2048,
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 300_000,
            drain_timeout_ms: 10_000,
            progress_timeout_ms: 60_000,
            start_from: StartFrom::Committed,
            start_timestamp_ms: None,
            security: KafkaSecurity::default(),
            client: ClientProperties::default(),
        }
    }
}

/// Consumer properties the service sets unless `[kafka.client]` does.
const CONSUMER_DEFAULTS: [(&str, &str); 4] = [
    // Consumer lag per partition, once a second: a partition with data
    // waiting is behind, not idle.
    ("statistics.interval.ms", "1000"),
    // Keep fetching ahead until this many messages wait per partition
    // (librdkafka's default: 100,000). Through Tansu it reads a backlog four
    // times as fast for less CPU per event (docs/BENCHMARKS.md, "Kafka path").
    ("queued.min.messages", "500000"),
    // The most one fetch answer may hold (librdkafka's default: 50 MiB).
    // librdkafka turns a whole answer into queued messages at once, about
    // 80 bytes each besides the answer's buffer; an answer of 50 MiB (Tansu
    // gives that much to a consumer catching up) held a three-minute backlog
    // of 2,000 vehicles at once: 70 MiB at the peak, 45–49 MiB with 2 MiB,
    // which still reads 300,000–400,000 events/s (docs/BENCHMARKS.md).
    ("fetch.max.bytes", "2097152"),
    // How long the broker may hold a fetch for more data (librdkafka's
    // default: 500 ms). Tansu holds it that long even with data waiting, which
    // put windows 3-5 s behind their end at the live rate instead of within
    // out-of-orderness + 1 s; a broker that answers at once is not affected.
    ("fetch.wait.max.ms", "100"),
];

/// librdkafka properties the source sets itself; overriding them would break
/// the delivery guarantee.
const MANAGED: [&str; 7] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "session.timeout.ms",
    "max.poll.interval.ms",
];

impl KafkaConfig {
    /// Whether Kafka is configured at all.
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    /// Checks the section, recording problems under `kafka.*`.
    pub fn validate(&self, problems: &mut Problems) {
        if !self.enabled() {
            return;
        }
        for broker in self.brokers.split(',') {
            let ok = broker
                .trim()
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            problems.check(ok, "kafka.brokers", format!("{broker:?} is not host:port"));
        }
        problems.check(!self.topic.is_empty(), "kafka.topic", "must not be empty");
        problems.check(
            !self.group_id.is_empty(),
            "kafka.group_id",
            "must not be empty",
        );
        problems.check(
            self.commit_interval_ms > 0,
            "kafka.commit_interval_ms",
            "must be positive",
        );
        problems.check(
            self.max_batch_events > 0,
            "kafka.max_batch_events",
            "must be positive",
        );
        problems.check(
            self.session_timeout_ms >= 1000,
            "kafka.session_timeout_ms",
            "must be at least 1000",
        );
        problems.check(
            self.max_poll_interval_ms >= self.session_timeout_ms,
            "kafka.max_poll_interval_ms",
            "must not be below kafka.session_timeout_ms",
        );
        problems.check(
            self.drain_timeout_ms < self.max_poll_interval_ms,
            "kafka.drain_timeout_ms",
            "must be below kafka.max_poll_interval_ms, or the group evicts the member while it drains",
        );
        problems.check(
            self.progress_timeout_ms >= 1000,
            "kafka.progress_timeout_ms",
            "must be at least 1000",
        );
        problems.check(
            self.start_from != StartFrom::Timestamp || self.start_timestamp_ms.is_some(),
            "kafka.start_timestamp_ms",
            "is required with kafka.start_from = \"timestamp\"",
        );
        for (key, value) in self.client.iter() {
            problems.check(
                !MANAGED.contains(&key.as_str()),
                &format!("kafka.client.{key}"),
                "is managed by the service; use the matching kafka.* key",
            );
            // What librdkafka refuses when the client is made, found now:
            // setting a property in a native configuration connects nothing.
            if let Err(e) = ClientConfig::new().set(key, value).create_native_config() {
                problems.add(&format!("kafka.client.{key}"), e.to_string());
            }
        }
        self.security
            .validate(&self.brokers, &self.client, problems);
    }

    /// Properties common to every client: brokers, the extra properties and
    /// the security section's (which win).
    pub fn base_client_config(&self) -> ClientConfig {
        self.client_config_over(&[])
    }

    /// [`Self::base_client_config`] over `defaults`: the service's own
    /// choices for one kind of client, which `[kafka.client]` overrides.
    pub(crate) fn client_config_over(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults
            .iter()
            .copied()
            .chain(self.client.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            c.set(k, v);
        }
        self.security.apply(&mut c);
        c
    }

    /// The consumer's properties: manual offset management, no auto commit.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = self.client_config_over(&CONSUMER_DEFAULTS);
        c.set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match self.auto_offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                },
            )
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval_ms.to_string(),
            );
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(cfg: &KafkaConfig) -> Vec<String> {
        let mut p = Problems::default();
        cfg.validate(&mut p);
        match p.finish(()) {
            Ok(()) => vec![],
            Err(e) => e.problems.iter().map(|p| p.key.clone()).collect(),
        }
    }

    #[test]
    fn consumer_defaults_give_way_to_the_client_section() {
        let defaults = KafkaConfig::default().consumer_config();
        assert_eq!(defaults.get("queued.min.messages"), Some("500000"));
        assert_eq!(defaults.get("statistics.interval.ms"), Some("1000"));
        assert_eq!(defaults.get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(defaults.get("fetch.max.bytes"), Some("2097152"));
        let cfg = KafkaConfig {
            client: BTreeMap::from([("queued.min.messages".to_string(), "1000".to_string())])
                .into(),
            ..KafkaConfig::default()
        };
        let c = cfg.consumer_config();
        assert_eq!(c.get("queued.min.messages"), Some("1000"));
        assert_eq!(c.get("statistics.interval.ms"), Some("1000"));
    }

    #[test]
    fn properties_librdkafka_refuses_are_named_without_connecting() {
        let cfg = KafkaConfig {
            brokers: "localhost:9092".into(),
            client: BTreeMap::from([
                ("no.such.property".to_string(), "1".to_string()),
                ("fetch.min.bytes".to_string(), "many".to_string()),
                ("fetch.wait.max.ms".to_string(), "50".to_string()),
            ])
            .into(),
            ..KafkaConfig::default()
        };
        assert_eq!(
            problems_of(&cfg),
            vec![
                "kafka.client.fetch.min.bytes",
                "kafka.client.no.such.property"
            ]
        );
    }

    #[test]
    fn disabled_kafka_is_not_validated() {
        assert!(problems_of(&KafkaConfig::default()).is_empty());
    }

    #[test]
    fn names_every_bad_key() {
        let cfg = KafkaConfig {
            brokers: "localhost:9092,nope".into(),
            topic: String::new(),
            commit_interval_ms: 0,
            client: BTreeMap::from([("enable.auto.commit".to_string(), "true".to_string())]).into(),
            ..KafkaConfig::default()
        };
        assert_eq!(
            problems_of(&cfg),
            vec![
                "kafka.brokers",
                "kafka.topic",
                "kafka.commit_interval_ms",
                "kafka.client.enable.auto.commit"
            ]
        );
    }
}
