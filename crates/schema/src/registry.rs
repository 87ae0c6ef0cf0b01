//! Records framed for a schema registry (Confluent's wire format: a zero
//! byte, the schema id as 4 bytes big-endian, for Protobuf the message
//! indexes, then the payload), decoded with the schema each names.
//!
//! Used by Confluent Schema Registry, Karapace, Apicurio and Redpanda's
//! registry alike (`GET /schemas/ids/{id}`). Each schema is fetched once and
//! cached; its paths are resolved by field name, so records of every
//! version of the subject decode side by side. A schema that cannot be
//! fetched now (the registry down, an error answer) is asked again with
//! backoff until it can: the record waits, it is never dropped. Only a
//! definite answer (no such id, a schema of another format, one that does
//! not parse) refuses the records naming it, as `malformed`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use fleet_core::config::Problems;
use fleet_core::decode::{AvroSchema, Decoder, RecordSchema};
use fleet_core::{DecodeError, DecodeErrorKind, Secret};
use fleet_plan::{InputPlan, RecordFormat};
use serde::{Deserialize, Serialize};

/// `[schema_registry]`: where framed records' schemas are.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistryConfig {
    /// The registry's base URL (`https://registry:8081`); empty (default):
    /// records are not framed, `input.schema_file` is their schema.
    pub url: String,
    /// HTTP basic auth user; empty: none.
    pub username: String,
    /// HTTP basic auth password.
    pub password: Secret,
    /// PEM file of the CA that signed an `https` registry's certificate,
    /// besides the system's; empty: the system's only.
    pub ca_file: String,
    /// How long one request may take, ms. Default 10000.
    pub timeout_ms: u64,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        SchemaRegistryConfig {
            url: String::new(),
            username: String::new(),
            password: Secret::default(),
            ca_file: String::new(),
            timeout_ms: 10_000,
        }
    }
}

impl SchemaRegistryConfig {
    /// Whether records are framed for a registry.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// Checks the section against the records' format.
    pub fn validate(&self, input: &InputPlan, p: &mut Problems) {
        if !self.enabled() {
            return;
        }
        match url::Url::parse(self.url.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => p.add(
                "schema_registry.url",
                format!("{:?} is not an http(s) URL", self.url),
            ),
        }
        p.check(
            input.format != RecordFormat::Json,
            "schema_registry.url",
            "JSON records are not framed for a registry: set input.format to protobuf or avro",
        );
        p.check(
            input.schema_file.is_none(),
            "input.schema_file",
            "records framed for a registry name their schema there: leave it empty",
        );
        p.check(
            input.message.is_none(),
            "input.message",
            "records framed for a registry name their message type there: leave it empty",
        );
        p.check(
            self.timeout_ms > 0,
            "schema_registry.timeout_ms",
            "must be positive",
        );
        if !self.ca_file.is_empty() {
            if let Err(e) = std::fs::read(&self.ca_file)
                .map_err(|e| e.to_string())
                .and_then(|pem| reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string()))
            {
                p.add(
                    "schema_registry.ca_file",
                    format!("cannot read a PEM certificate from {}: {e}", self.ca_file),
                );
            }
        }
    }
}

/// What a framed record names: its schema and, for Protobuf, the message
/// type's indexes in that schema's file. Read for every record, so kept
/// inline: no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchemaRef {
    /// The registry's schema id.
    pub id: u32,
    /// How many of `indexes` are used.
    depth: u8,
    indexes: [i32; MAX_MESSAGE_DEPTH],
}

/// The deepest nesting of a Protobuf message type a frame may name.
const MAX_MESSAGE_DEPTH: usize = 8;

impl SchemaRef {
    /// Protobuf: the message type, by index among the file's messages
    /// (then the nested ones); empty for Avro.
    pub fn message(&self) -> &[i32] {
        &self.indexes[..usize::from(self.depth)]
    }
}

/// What a record needs before it can be decoded.
#[derive(Debug)]
pub enum Resolved<'a> {
    /// This decoder, on this payload (the frame taken off).
    Ready(&'a Decoder, &'a [u8]),
    /// Nothing: the record is refused.
    Refused(DecodeError),
    /// Its schema, from the registry first.
    Fetch(SchemaRef),
}

/// Splits a framed record into what it names and its payload.
pub fn unframe(format: RecordFormat, bytes: &[u8]) -> Result<(SchemaRef, &[u8]), DecodeError> {
    let malformed = |why: &str| {
        DecodeError::new(
            DecodeErrorKind::Malformed,
            format!("not in a schema registry's wire format ({why})"),
        )
    };
    let [0, a, b, c, d, rest @ ..] = bytes else {
        return Err(malformed("no zero byte and 4-byte schema id"));
    };
    let id = u32::from_be_bytes([*a, *b, *c, *d]);
    let mut schema = SchemaRef {
        id,
        depth: 0,
        indexes: [0; MAX_MESSAGE_DEPTH],
    };
    if format != RecordFormat::Protobuf {
        return Ok((schema, rest));
    }
    let mut at = 0;
    let count = zigzag(rest, &mut at).ok_or_else(|| malformed("message indexes cut short"))?;
    match usize::try_from(count) {
        // A lone 0 is the first message.
        Ok(0) => schema.depth = 1,
        Ok(n @ 1..=MAX_MESSAGE_DEPTH) => {
            for index in &mut schema.indexes[..n] {
                *index = zigzag(rest, &mut at)
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| malformed("message indexes cut short"))?;
            }
            schema.depth = n as u8;
        }
        _ => return Err(malformed("a message index count out of range")),
    }
    Ok((schema, &rest[at..]))
}

/// A zigzag varint.
fn zigzag(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// The registry's HTTP API.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    credentials: Option<(String, String)>,
}

/// Why a schema could not be fetched now.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Worth asking again: no answer, a server error, not authorized yet.
    #[error("{0}")]
    Transient(String),
    /// The registry answered for good: no such schema.
    #[error("{0}")]
    Definite(String),
}

/// A fetched schema: its text and type (`AVRO`, `PROTOBUF`, `JSON`).
#[derive(Clone, Debug, Deserialize)]
pub struct FetchedSchema {
    /// The schema's text.
    pub schema: String,
    /// Its type; absent means Avro.
    #[serde(rename = "schemaType", default = "avro")]
    pub schema_type: String,
}

fn avro() -> String {
    "AVRO".to_owned()
}

impl RegistryClient {
    /// A client of `config`'s registry.
    pub fn new(config: &SchemaRegistryConfig) -> Result<RegistryClient, String> {
        let mut builder =
            reqwest::Client::builder().timeout(Duration::from_millis(config.timeout_ms.max(1)));
        if !config.ca_file.is_empty() {
            let pem = std::fs::read(PathBuf::from(&config.ca_file))
                .map_err(|e| format!("schema_registry.ca_file: {e}"))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("schema_registry.ca_file: {e}"))?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(RegistryClient {
            base: config.url.trim().trim_end_matches('/').to_owned(),
            http,
            credentials: (!config.username.is_empty())
                .then(|| (config.username.clone(), config.password.expose().to_owned())),
        })
    }

    /// Sends `request` with the API's media type and the credentials: the
    /// status and the body.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, String), FetchError> {
        let mut request = request.header("Accept", MEDIA_TYPE);
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| FetchError::Transient(format!("no answer: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| FetchError::Transient(format!("answer cut short: {e}")))?;
        Ok((status, text))
    }

    /// `POST /subjects/{subject}/versions`: registers `schema` of
    /// `schema_type` (`AVRO`, `PROTOBUF`); its id (an existing one when the
    /// subject has that schema already).
    pub async fn register(
        &self,
        subject: &str,
        schema_type: &str,
        schema: &str,
    ) -> Result<u32, FetchError> {
        let body = serde_json::json!({"schemaType": schema_type, "schema": schema});
        let request = self
            .http
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .header("Content-Type", MEDIA_TYPE)
            .body(body.to_string());
        let (status, text) = self.send(request).await?;
        if !status.is_success() {
            return Err(FetchError::Definite(format!("{status}: {text}")));
        }
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["id"].as_u64())
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| FetchError::Definite(format!("no schema id in {text}")))
    }

    /// `GET /schemas/ids/{id}`.
    pub async fn schema(&self, id: u32) -> Result<FetchedSchema, FetchError> {
        let request = self.http.get(format!("{}/schemas/ids/{id}", self.base));
        let (status, text) = self.send(request).await?;
        match status.as_u16() {
            200..=299 => serde_json::from_str(&text)
                .map_err(|e| FetchError::Transient(format!("not a schema ({e}): {text}"))),
            404 => Err(FetchError::Definite(format!(
                "schema id {id} is not in the registry"
            ))),
            _ => Err(FetchError::Transient(format!("{status}: {text}"))),
        }
    }
}

/// The registry API's media type.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Backoff between attempts to fetch one schema.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Decodes framed records, fetching each schema they name once.
#[derive(Debug)]
pub struct FramedDecoders {
    input: InputPlan,
    client: RegistryClient,
    /// Per schema, its decoder, or why its records are refused.
    decoders: HashMap<SchemaRef, Result<Decoder, String>>,
}

impl FramedDecoders {
    /// Decoders of `input`'s records with their schemas from `client`.
    pub fn new(input: &InputPlan, client: RegistryClient) -> FramedDecoders {
        FramedDecoders {
            input: input.clone(),
            client,
            decoders: HashMap::new(),
        }
    }

    /// The decoder of the framed record `bytes`, and its payload; or why
    /// it is refused; or the schema to fetch first.
    pub fn resolve<'a>(&'a self, bytes: &'a [u8]) -> Resolved<'a> {
        let (schema, payload) = match unframe(self.input.format, bytes) {
            Ok(framed) => framed,
            Err(e) => return Resolved::Refused(e),
        };
        match self.decoders.get(&schema) {
            Some(Ok(decoder)) => Resolved::Ready(decoder, payload),
            Some(Err(why)) => {
                Resolved::Refused(DecodeError::new(DecodeErrorKind::Malformed, why.clone()))
            }
            None => Resolved::Fetch(schema),
        }
    }

    /// Fetches `schema` and builds its decoder, asking again with backoff
    /// until the registry answers for good.
    pub async fn fetch(&mut self, schema: SchemaRef) {
        let mut backoff = RETRY_MIN;
        let fetched = loop {
            match self.client.schema(schema.id).await {
                Ok(fetched) => break Ok(fetched),
                Err(FetchError::Definite(why)) => break Err(why),
                Err(FetchError::Transient(why)) => {
                    tracing::warn!(id = schema.id, %why, "Cannot fetch a schema from the registry; asking again.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        };
        let decoder = fetched.and_then(|f| self.decoder(&schema, &f));
        match &decoder {
            Ok(_) => {
                tracing::info!(id = schema.id, message = ?schema.message(), "Schema fetched from the registry.")
            }
            Err(why) => tracing::warn!(id = schema.id, %why, "Records of this schema are refused."),
        }
        self.decoders.insert(schema, decoder);
    }

    /// The decoder of records of `fetched`, the schema `schema` names.
    fn decoder(&self, schema: &SchemaRef, fetched: &FetchedSchema) -> Result<Decoder, String> {
        let id = schema.id;
        let want = match self.input.format {
            RecordFormat::Protobuf => "PROTOBUF",
            RecordFormat::Avro => "AVRO",
            RecordFormat::Json => "JSON",
        };
        if !fetched.schema_type.eq_ignore_ascii_case(want) {
            return Err(format!(
                "schema id {id} is {}, and input.format is {}",
                fetched.schema_type,
                self.input.format.as_str()
            ));
        }
        let record = match self.input.format {
            RecordFormat::Protobuf => {
                let name = format!("schema-{id}.proto");
                let pool = crate::compile_proto_source(&name, &fetched.schema)
                    .map_err(|e| format!("schema id {id} does not compile: {e}"))?;
                let file = pool
                    .get_file_by_name(&name)
                    .ok_or_else(|| format!("schema id {id} has no file"))?;
                let mut indexes = schema.message().iter();
                let first = indexes
                    .next()
                    .and_then(|&i| file.messages().nth(usize::try_from(i).ok()?));
                let message = indexes.try_fold(first, |m, &i| {
                    Some(m.and_then(|m| m.child_messages().nth(usize::try_from(i).ok()?)))
                });
                let message = message.flatten().ok_or_else(|| {
                    format!("schema id {id} has no message at {:?}", schema.message())
                })?;
                RecordSchema::Protobuf(crate::proto_schema(&message))
            }
            _ => RecordSchema::Avro(
                AvroSchema::parse(&fetched.schema).map_err(|e| format!("schema id {id}: {e}"))?,
            ),
        };
        let (decoder, problems) = Decoder::for_schema(&self.input, &record);
        for problem in problems {
            tracing::warn!(id, %problem, "A field of [input] does not fit this schema: records that need it are refused.");
        }
        Ok(decoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_name_their_schema_and_protobuf_message() {
        let avro = [0, 0, 0, 1, 2, 9, 9];
        let (schema, payload) = unframe(RecordFormat::Avro, &avro).unwrap();
        assert_eq!((schema.id, payload), (258, &[9, 9][..]));
        // Protobuf: a lone 0 is the first message; else count, then indexes.
        let (schema, payload) = unframe(RecordFormat::Protobuf, &[0, 0, 0, 0, 7, 0, 5]).unwrap();
        assert_eq!(
            (schema.id, schema.message(), payload),
            (7, &[0][..], &[5][..])
        );
        let (schema, payload) =
            unframe(RecordFormat::Protobuf, &[0, 0, 0, 0, 7, 4, 2, 6, 8]).unwrap();
        assert_eq!((schema.message(), payload), (&[1, 3][..], &[8][..]));
        for bad in [&[1, 0, 0, 0, 7, 0][..], &[0, 0, 0], &[]] {
            let e = unframe(RecordFormat::Avro, bad).unwrap_err();
            assert_eq!(e.kind, DecodeErrorKind::Malformed);
        }
        assert!(unframe(RecordFormat::Protobuf, &[0, 0, 0, 0, 7, 4, 2]).is_err());
    }
}
