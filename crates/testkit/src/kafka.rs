//! A Kafka client for tests, for any broker: a local [`crate::TestBroker`] or an
//! Apache Kafka in a container.
//!
//! The helpers avoid what Tansu 0.6 gets wrong (docs/ARCHITECTURE.md, "What runs where"): its high
//! watermark, offsets-for-times and commit metadata. Reading back therefore
//! assigns every partition from its beginning and counts messages, rather
//! than asking for watermarks or committed offsets.
//!
//! [`TestBroker::start_tls`] starts a broker that clients reach over TLS only.
//! Tansu 0.6 cannot serve TLS itself: `tansu broker` refuses `--cert` with
//! `--key` (both are in one clap argument group, so at most one may be
//! given), and its listener builds a `TlsAcceptor` from them that it never
//! uses (`let _acceptor = …` in `tansu-broker` 0.6.0's `Broker::listen`):
//! every connection is served as plain TCP. So the testkit puts a TLS front
//! (rustls) on its own loopback port before a plain Tansu, and Tansu
//! advertises the front's address, so that every connection a client makes —
//! bootstrap, then the broker from the metadata — goes through TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleet_core::RawEvent;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Headers;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::broker::BrokerKind;
use crate::process;
use crate::{unique_name, TestBroker, TestkitError};

/// How long a new topic has to show every partition with a leader.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(20);

/// Per-request timeout of the metadata probes.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// Creates topics, produces and reads back through one broker address.
#[derive(Clone, Debug)]
pub struct KafkaClient {
    bootstrap_servers: String,
    /// librdkafka properties of every client it makes (TLS, SASL).
    properties: Vec<(String, String)>,
    /// Configuration of every topic it creates (`retention.ms`…).
    topic_configs: Vec<(String, String)>,
    /// The TLS front of [`TestBroker::start_tls`], kept running while a client of it lives.
    _front: Option<Arc<TlsFront>>,
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
    /// Its headers, values as text (lossy).
    pub headers: Vec<(String, String)>,
}

impl ConsumedRecord {
    /// The value of header `key`, if it has one.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl KafkaClient {
    /// A client of the broker at `bootstrap_servers` (`host:port[,host:port…]`).
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaClient {
            bootstrap_servers: bootstrap_servers.into(),
            properties: Vec::new(),
            topic_configs: Vec::new(),
            _front: None,
        }
    }

    /// The same client with one more librdkafka property (for example
    /// `security.protocol`) on every client it makes.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The same client with one more configuration entry for every topic it
    /// creates (for example `retention.ms`).
    pub fn with_topic_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.topic_configs.push((key.into(), value.into()));
        self
    }

    /// The extra librdkafka properties, as given to [`with_property`](Self::with_property).
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
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
        for (key, value) in &self.properties {
            config.set(key, value);
        }
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
        let new_topic = self.topic_configs.iter().fold(
            NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
            |t, (key, value)| t.set(key, value),
        );
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

    /// The offsets group `group` has committed for partitions
    /// `0..partitions` of `topic`, as the broker answers them: `None` where it
    /// holds none.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<Vec<Option<i64>>, TestkitError> {
        let kafka_error = |context: String| move |source| TestkitError::Kafka { context, source };
        let context = format!("reading the offsets group {group} committed for {topic}");
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_error(context.clone()))?;
        let mut wanted = TopicPartitionList::new();
        for partition in 0..partitions {
            wanted.add_partition(topic, partition);
        }
        tokio::task::spawn_blocking(move || {
            let committed = consumer
                .committed_offsets(wanted, Duration::from_secs(10))
                .map_err(kafka_error(context))?;
            Ok(committed
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .collect())
        })
        .await
        .map_err(|e| TestkitError::Io {
            context: "reading committed offsets on a blocking thread".to_string(),
            source: std::io::Error::other(e),
        })?
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
        self.produce(topic, messages.into_iter().map(|(k, v)| (Some(k), v)))
            .await
    }

    /// [`produce_json`](Self::produce_json), where a key may be absent (null).
    pub async fn produce<K, V>(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = (Option<K>, V)>,
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
            let mut record = FutureRecord::to(topic).payload(value.as_ref());
            if let Some(key) = &key {
                record = record.key(key.as_ref());
            }
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
                headers: message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                                (h.key.to_owned(), value.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
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

/// The PEM files of a TLS listener.
#[derive(Clone, Debug)]
struct TlsFiles {
    /// The server's certificate, then any intermediates.
    cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    key: PathBuf,
    /// The CA certificate that signed `cert`: the testkit's own client trusts it.
    ca: PathBuf,
}

impl TestBroker {
    /// Starts a broker with in-memory storage that clients reach over TLS
    /// only, presenting the certificate (chain) in the PEM file `cert` with
    /// the private key in `key`, and waits until the broker answers a Kafka
    /// metadata request (on its plain port: the certificate is the test's
    /// business, it may be one that clients refuse on purpose). See the
    /// module documentation for why a TLS front stands before the broker
    /// ([`BrokerKind::configured`]; Tansu or nisshi): the broker listens in
    /// plain TCP on one free loopback port, the front on another, and the
    /// broker advertises the front's
    /// `127.0.0.1:<port>` (so a certificate that clients accept names
    /// `IP:127.0.0.1`).
    /// [`KafkaClient::bootstrap_servers`] is the front; the returned client
    /// trusts the CA certificate in `ca` (`security.protocol = SSL`,
    /// `ssl.ca.location`). The front stops when the last client of it is
    /// dropped.
    pub async fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Result<TestBroker, TestkitError> {
        let kind = BrokerKind::configured();
        let binary = kind.binary()?;
        let tls = TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ca: ca.to_path_buf(),
        };
        process::start_with_retries(kind.name(), || start_tls_once(kind, &binary, &tls)).await
    }
}

async fn start_tls_once(
    kind: BrokerKind,
    binary: &Path,
    tls: &TlsFiles,
) -> Result<TestBroker, TestkitError> {
    let port = process::free_port()?;
    let front = TlsFront::start(tls, port)?;
    let advertised = format!("tcp://127.0.0.1:{}", front.port);
    let mut client = KafkaClient::new(format!("127.0.0.1:{}", front.port))
        .with_property("security.protocol", "SSL")
        .with_property("ssl.ca.location", tls.ca.to_string_lossy());
    client._front = Some(Arc::new(front));
    // Ready once the broker answers on its plain port: whether a client
    // trusts the front's certificate is for the test to find out.
    crate::broker::spawn_broker(binary, kind, port, &advertised, client).await
}

/// A TLS-terminating TCP proxy on a loopback port, forwarding each
/// connection to a plain loopback port. It runs on a thread (and runtime)
/// of its own, so that it serves whatever the test's runtime is doing
/// (librdkafka's threads connect to it while a test may block), and stops
/// when dropped.
#[derive(Debug)]
struct TlsFront {
    port: u16,
    /// Dropping it stops the front.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TlsFront {
    fn start(tls: &TlsFiles, upstream: u16) -> Result<TlsFront, TestkitError> {
        let io = |context: String| move |source| TestkitError::Io { context, source };
        let config = server_config(&tls.cert, &tls.key)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(io("binding the TLS front's port".into()))?;
        listener
            .set_nonblocking(true)
            .map_err(io("setting the TLS front's listener non-blocking".into()))?;
        let port = listener
            .local_addr()
            .map_err(io("reading the TLS front's port".into()))?
            .port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        std::thread::Builder::new()
            .name(format!("tls-front-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        runtime.block_on(serve_tls(listener, acceptor, upstream, stopped))
                    }
                    Err(error) => tracing::warn!(%error, "Cannot start the TLS front's runtime."),
                }
            })
            .map_err(io("starting the TLS front's thread".into()))?;
        Ok(TlsFront { port, _stop: stop })
    }
}

/// A rustls server configuration presenting the certificate chain in `cert`.
fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<tokio_rustls::rustls::ServerConfig, TestkitError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{crypto, ServerConfig};
    let invalid = |context: String| {
        move |e: &dyn std::fmt::Display| TestkitError::Io {
            context,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("reading certificates from {}", cert.display()))(&e))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(format!("reading a private key from {}", key.display()))(&e))?;
    ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| invalid("building the TLS front's configuration".into())(&e))
}

/// Accepts TLS connections until `stop` resolves (or its sender is dropped)
/// and pipes each one to `127.0.0.1:upstream`.
async fn serve_tls(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    upstream: u16,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, "Cannot serve the TLS front.");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        // A client that does not trust the certificate ends here.
                        Err(error) => {
                            tracing::debug!(%error, "TLS front: handshake failed.");
                            return;
                        }
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        }
    }
}
