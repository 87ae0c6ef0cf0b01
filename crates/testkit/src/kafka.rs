//! A Kafka client for tests, for any broker: a local [`crate::Tansu`] or an
//! Apache Kafka in a container.
//!
//! The helpers avoid what Tansu 0.6 gets wrong (DESIGN.md): its high
//! watermark, offsets-for-times and commit metadata. Reading back therefore
//! assigns every partition from its beginning and counts messages, rather
//! than asking for watermarks or committed offsets.

use std::time::Duration;

use fleet_core::RawEvent;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{unique_name, TestkitError};

/// How long a new topic has to show every partition with a leader.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(20);

/// Per-request timeout of the metadata probes.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// Creates topics, produces and reads back through one broker address.
#[derive(Clone, Debug)]
pub struct KafkaClient {
    bootstrap_servers: String,
}

/// One message read back by [`KafkaClient::consume_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// The message key, if any.
    pub key: Option<Vec<u8>>,
    /// The message value, if any (`None` is a tombstone).
    pub value: Option<Vec<u8>>,
}

impl KafkaClient {
    /// A client of the broker at `bootstrap_servers` (`host:port[,host:port…]`).
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaClient {
            bootstrap_servers: bootstrap_servers.into(),
        }
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap_servers.clone()
    }

    /// A client configuration pointing at this broker, for tests that build
    /// their own producers and consumers.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config
    }

    /// Whether the broker answers a metadata request that lists a broker.
    pub async fn is_ready(&self) -> Result<bool, TestkitError> {
        let metadata = self
            .fetch_metadata(None)
            .await
            .map_err(|source| TestkitError::Kafka {
                context: "fetching metadata".to_string(),
                source,
            })?;
        Ok(!metadata.brokers.is_empty())
    }

    /// Creates `topic` with `partitions` partitions and waits until the
    /// broker's metadata shows every one of them with a leader.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), TestkitError> {
        let kafka_error = |context: String| move |source| TestkitError::Kafka { context, source };
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .map_err(kafka_error("creating an admin client".to_string()))?;
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(kafka_error(format!("creating topic {topic}")))?;
        for result in results {
            if let Err((name, code)) = result {
                return Err(TestkitError::Kafka {
                    context: format!("creating topic {name}"),
                    source: KafkaError::AdminOp(code),
                });
            }
        }
        let expected = usize::try_from(partitions).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + TOPIC_TIMEOUT;
        loop {
            let seen = self.partitions_with_leader(topic).await?;
            if seen >= expected {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TestkitError::Timeout {
                    what: format!("topic {topic} to show {expected} partitions (saw {seen})"),
                    after: TOPIC_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The partitions of `topic` that have a leader (0 while the topic is unknown).
    pub async fn partitions_with_leader(&self, topic: &str) -> Result<usize, TestkitError> {
        let metadata = self
            .fetch_metadata(Some(topic.to_string()))
            .await
            .map_err(|source| TestkitError::Kafka {
                context: format!("fetching metadata of topic {topic}"),
                source,
            })?;
        Ok(metadata
            .topics
            .iter()
            .filter(|t| t.name == topic && t.error.is_none())
            .map(|t| t.partitions.iter().filter(|p| p.leader >= 0).count())
            .sum())
    }

    /// Produces every `(key, value)` and waits for every delivery. Returns
    /// where each message landed, `(partition, offset)`, in input order.
    pub async fn produce_json<K, V>(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Vec<(i32, i64)>, TestkitError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let producer: FutureProducer = self
            .client_config()
            .set("message.timeout.ms", "15000")
            .set("linger.ms", "5")
            .create()
            .map_err(|source| TestkitError::Kafka {
                context: "creating a producer".to_string(),
                source,
            })?;
        let mut pending: Vec<DeliveryFuture> = Vec::new();
        let mut delivered = Vec::new();
        for (key, value) in messages {
            let mut record = FutureRecord::to(topic)
                .key(key.as_ref())
                .payload(value.as_ref());
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: wait for what is in flight.
                        record = back;
                        for delivery in pending.drain(..) {
                            delivered.push(await_delivery(topic, delivery).await?);
                        }
                    }
                    Err((source, _)) => {
                        return Err(TestkitError::Kafka {
                            context: format!("producing to {topic}"),
                            source,
                        })
                    }
                }
            }
        }
        for delivery in pending {
            delivered.push(await_delivery(topic, delivery).await?);
        }
        Ok(delivered)
    }

    /// Produces raw events as the design's wire format: key = VIN, value = JSON.
    pub async fn produce_events(
        &self,
        topic: &str,
        events: &[RawEvent],
    ) -> Result<Vec<(i32, i64)>, TestkitError> {
        self.produce_json(
            topic,
            events.iter().map(|e| (e.vehicle_id.as_str(), e.to_json())),
        )
        .await
    }

    /// Reads `topic` from the beginning of every partition, with a fresh
    /// consumer group, until `expected` messages have arrived or `timeout`
    /// has passed. Returns what was read, sorted by (partition, offset): fewer
    /// than `expected` on timeout, so a test asserts on the count.
    pub async fn consume_all(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumedRecord>, TestkitError> {
        let kafka_error = |context: &str| {
            let context = format!("{context} ({topic})");
            move |source| TestkitError::Kafka { context, source }
        };
        let consumer: StreamConsumer = self
            .client_config()
            .set("group.id", unique_name("fleet-testkit"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(kafka_error("creating a consumer"))?;
        let metadata = self
            .fetch_metadata(Some(topic.to_string()))
            .await
            .map_err(kafka_error("fetching metadata"))?;
        let mut assignment = TopicPartitionList::new();
        for t in metadata.topics.iter().filter(|t| t.name == topic) {
            for partition in &t.partitions {
                assignment
                    .add_partition_offset(topic, partition.id, Offset::Beginning)
                    .map_err(kafka_error("building the assignment"))?;
            }
        }
        // Assign rather than subscribe: no group rebalance to wait for, and
        // no reliance on committed offsets.
        consumer
            .assign(&assignment)
            .map_err(kafka_error("assigning partitions"))?;
        let mut records = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while records.len() < expected {
            let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_elapsed) => break,
                Ok(message) => message.map_err(kafka_error("consuming"))?,
            };
            records.push(ConsumedRecord {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
            });
        }
        records.sort_by_key(|r| (r.partition, r.offset));
        Ok(records)
    }

    /// Fetches metadata on a blocking thread: librdkafka's call blocks.
    async fn fetch_metadata(&self, topic: Option<String>) -> Result<BrokerMetadata, KafkaError> {
        let config = self.client_config();
        let probe = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create()?;
            let metadata = consumer.fetch_metadata(topic.as_deref(), METADATA_TIMEOUT)?;
            Ok(BrokerMetadata {
                brokers: metadata.brokers().iter().map(|b| b.id()).collect(),
                topics: metadata
                    .topics()
                    .iter()
                    .map(|t| TopicMetadata {
                        name: t.name().to_string(),
                        error: t.error(),
                        partitions: t
                            .partitions()
                            .iter()
                            .map(|p| PartitionMetadata {
                                id: p.id(),
                                leader: p.leader(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
        });
        // A panicked probe thread is reported as a failed probe.
        probe.await.unwrap_or(Err(KafkaError::Canceled))
    }
}

/// The parts of librdkafka's metadata the helpers use, owned so they can
/// leave the blocking thread.
#[derive(Debug)]
struct BrokerMetadata {
    brokers: Vec<i32>,
    topics: Vec<TopicMetadata>,
}

#[derive(Debug)]
struct TopicMetadata {
    name: String,
    error: Option<rdkafka::types::RDKafkaRespErr>,
    partitions: Vec<PartitionMetadata>,
}

#[derive(Debug)]
struct PartitionMetadata {
    id: i32,
    /// The leader's broker id; negative while there is none.
    leader: i32,
}

async fn await_delivery(topic: &str, delivery: DeliveryFuture) -> Result<(i32, i64), TestkitError> {
    match delivery.await {
        Ok(Ok(delivered)) => Ok((delivered.partition, delivered.offset)),
        Ok(Err((source, _message))) => Err(TestkitError::Kafka {
            context: format!("delivering to {topic}"),
            source,
        }),
        Err(_canceled) => Err(TestkitError::Kafka {
            context: format!("delivering to {topic}: producer dropped"),
            source: KafkaError::Canceled,
        }),
    }
}
