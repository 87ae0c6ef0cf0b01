//! `fleet-bench consume`: what the Kafka client alone costs per message.
//!
//! The Kafka path's CPU per event is compared with `replay`'s. The
//! difference is the client's work (fetching, decompressing, one message
//! handed over at a time) plus the source's own. To tell them apart this
//! reads the same backlog with the service's consumer properties
//! ([`KafkaConfig::consumer_config`]) and does nothing with the messages but
//! count them (or, with `--decode`, decode them), in the two ways the client
//! offers without `unsafe`: the async message stream the source uses, and a
//! plain blocking `poll` loop. Whatever the service spends above the cheaper
//! of the two plus `replay` is the project's; the rest is the client's.

use std::time::Duration;

use anyhow::{bail, Context};
use fleet_core::decode::Decoder;
use fleet_core::RecordBatch;
use fleet_kafka::KafkaConfig;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::time::Instant;

use crate::usage::{measure, Timing};

/// Arguments of `fleet-bench consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Bootstrap servers, `host:port`.
    #[arg(long)]
    brokers: String,
    /// The topic holding the backlog.
    #[arg(long)]
    topic: String,
    /// Messages to read in each way (the backlog's size, or less).
    #[arg(long)]
    events: u64,
    /// A librdkafka consumer property, as the service's `[kafka.client]`
    /// would set it; repeatable.
    #[arg(long = "client", value_name = "KEY=VALUE", value_parser = parse_property)]
    client: Vec<(String, String)>,
    /// Also decode every payload with the service's decoder.
    #[arg(long)]
    decode: bool,
    /// Give up when the backlog has not been read after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// One way of reading the backlog, and what it cost.
struct Pass {
    way: &'static str,
    read: Read,
    cost: Timing,
}

/// Messages read, and of them malformed (only counted with `--decode`).
#[derive(Clone, Copy, Debug)]
struct Read {
    messages: u64,
    malformed: u64,
}

/// Reads the backlog once per way, each time in a new consumer group, and
/// prints CPU-µs per message.
pub fn run(args: &ConsumeArgs) -> anyhow::Result<()> {
    let deadline = Duration::from_secs(args.timeout_s);
    let pass = |way: &'static str, read: fn(_, _, _) -> anyhow::Result<Read>| {
        let (read, cost) = measure(|| read(consumer_config(args, way), args, deadline))?;
        anyhow::Ok(Pass { way, read, cost })
    };
    let passes = [pass("stream", stream_pass)?, pass("poll", poll_pass)?];
    println!(
        "fleet-bench consume: {} messages of topic {} per way{}",
        args.events,
        args.topic,
        if args.decode { ", each decoded" } else { "" }
    );
    println!(
        "{:<8} {:>10} {:>9} {:>8} {:>13} {:>12}",
        "way", "messages", "wall s", "CPU s", "CPU-µs/msg", "msgs/s"
    );
    for p in &passes {
        let per = p.read.messages.max(1) as f64;
        println!(
            "{:<8} {:>10} {:>9.2} {:>8.2} {:>13.3} {:>12.0}",
            p.way,
            p.read.messages,
            p.cost.wall_s,
            p.cost.cpu_s,
            p.cost.cpu_s * 1e6 / per,
            per / p.cost.wall_s.max(1e-9),
        );
        if p.read.malformed > 0 {
            println!("         ({} of them malformed)", p.read.malformed);
        }
    }
    Ok(())
}

/// The service's consumer properties for a group of its own.
fn consumer_config(args: &ConsumeArgs, way: &str) -> rdkafka::ClientConfig {
    let cfg = KafkaConfig {
        brokers: args.brokers.clone(),
        topic: args.topic.clone(),
        group_id: format!("fleet-bench-consume-{way}-{}", std::process::id()),
        client: args.client.iter().cloned().collect(),
        ..KafkaConfig::default()
    };
    cfg.consumer_config()
}

/// With `--decode`, the service's decoder on the reference demo's plan and
/// a batch it decodes into, emptied as the source's batcher would.
struct Decoding(Option<(Decoder, RecordBatch)>);

impl Decoding {
    fn new(decode: bool) -> Self {
        Decoding(decode.then(|| {
            let plan = fleet_plan::MetricPlan::reference_demo();
            (Decoder::new(&plan.input), RecordBatch::with_capacity(2048))
        }))
    }

    /// Counts a payload; returns whether it was malformed (only with `--decode`).
    fn take(&mut self, payload: Option<&[u8]>) -> bool {
        let Some((decoder, batch)) = &mut self.0 else {
            return false;
        };
        if batch.len() >= 2048 {
            batch.clear();
        }
        decoder
            .decode_into(payload.unwrap_or_default(), 0, 0, batch)
            .is_err()
    }
}

/// As the source reads: one `MessageStream` polled by a tokio task.
fn stream_pass(
    cfg: rdkafka::ClientConfig,
    args: &ConsumeArgs,
    deadline: Duration,
) -> anyhow::Result<Read> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async {
        let consumer: StreamConsumer = cfg.create().context("creating the consumer")?;
        consumer
            .subscribe(&[&args.topic])
            .context("subscribing to the topic")?;
        let mut stream = consumer.stream();
        let (mut messages, mut malformed) = (0u64, 0u64);
        let mut decoding = Decoding::new(args.decode);
        let read_all = async {
            while messages < args.events {
                match stream.next().await {
                    Some(Ok(m)) => {
                        messages += 1;
                        malformed += u64::from(decoding.take(m.payload()));
                    }
                    Some(Err(e)) => return Err(anyhow::Error::new(e).context("consuming")),
                    None => bail!("the message stream ended"),
                }
            }
            Ok(())
        };
        tokio::time::timeout(deadline, read_all)
            .await
            .map_err(|_| anyhow::anyhow!("read {messages} of {} messages", args.events))??;
        Ok(Read {
            messages,
            malformed,
        })
    })
}

/// The cheapest safe way: `BaseConsumer::poll` in a loop on this thread.
fn poll_pass(
    cfg: rdkafka::ClientConfig,
    args: &ConsumeArgs,
    deadline: Duration,
) -> anyhow::Result<Read> {
    let consumer: BaseConsumer = cfg.create().context("creating the consumer")?;
    consumer
        .subscribe(&[&args.topic])
        .context("subscribing to the topic")?;
    let started = Instant::now();
    let (mut messages, mut malformed) = (0u64, 0u64);
    let mut decoding = Decoding::new(args.decode);
    while messages < args.events {
        if started.elapsed() > deadline {
            bail!("read {messages} of {} messages", args.events);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                messages += 1;
                malformed += u64::from(decoding.take(m.payload()));
            }
            Some(Err(e)) => return Err(anyhow::Error::new(e).context("consuming")),
            None => {}
        }
    }
    Ok(Read {
        messages,
        malformed,
    })
}
