//! A real Confluent-compatible schema registry for tests:
//! crabka-schema-registry, keeping its schemas in a topic of a test broker.
//!
//! Each [`SchemaRegistry`] has its own port and its own schemas topic, so
//! tests never share ids. It answers HTTP before it has read its topic back
//! after a restart (and may then hand out an id already taken); a fresh
//! topic per registry avoids that. Its admin server is kept on loopback.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::pki::Pki;
use crate::process::{self, LocalService, ServiceProcess};
use crate::prometheus::http_client_builder;
use crate::{unique_name, TestkitError};

const SERVICE: &str = "crabka-schema-registry";

/// How long the registry has to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The Confluent REST API's media type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A registry running as a child process; killed on drop. It dereferences
/// to a [`RegistryClient`].
pub type SchemaRegistry = LocalService<RegistryClient>;

/// The REST API of a schema registry.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    url: String,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
    /// Where a registry started by the testkit listens and keeps its
    /// schemas, to start it again there.
    place: Option<(u16, String)>,
}

impl SchemaRegistry {
    /// Finds the binary: `$FLEET_SCHEMA_REGISTRY_BIN`, then `PATH`, then `~/.cargo/bin`.
    pub fn binary() -> Result<PathBuf, TestkitError> {
        let mut fallbacks = Vec::new();
        if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
            fallbacks.push(PathBuf::from(cargo_home).join("bin").join(SERVICE));
        }
        if let Some(home) = std::env::var_os("HOME") {
            fallbacks.push(PathBuf::from(home).join(".cargo/bin").join(SERVICE));
        }
        process::find_binary(SERVICE, "FLEET_SCHEMA_REGISTRY_BIN", &fallbacks)
    }

    /// Starts a registry on a free loopback port over the broker at
    /// `bootstrap_servers`; with `credentials`, it requires HTTP basic auth
    /// with them. Ready once it lists its subjects.
    pub async fn start(
        bootstrap_servers: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<SchemaRegistry, TestkitError> {
        let topic = unique_name("_schemas");
        process::start_with_retries(SERVICE, || async {
            let port = process::free_port()?;
            Self::start_at(bootstrap_servers, credentials, port, &topic, None).await
        })
        .await
    }

    /// [`Self::start`] serving HTTPS with `pki`'s server certificate (its
    /// URL is `https://127.0.0.1:PORT`; the client trusts `pki`'s CA).
    pub async fn start_tls(
        bootstrap_servers: &str,
        credentials: Option<(&str, &str)>,
        pki: &Pki,
    ) -> Result<SchemaRegistry, TestkitError> {
        let topic = unique_name("_schemas");
        process::start_with_retries(SERVICE, || async {
            let port = process::free_port()?;
            Self::start_at(bootstrap_servers, credentials, port, &topic, Some(pki)).await
        })
        .await
    }

    /// Starts a registry again where `stopped` was (its port, its schemas
    /// topic): it reads the schemas back, and is ready once it answers for
    /// the id `known`.
    pub async fn restart(
        bootstrap_servers: &str,
        credentials: Option<(&str, &str)>,
        stopped: &RegistryClient,
        known: u32,
    ) -> Result<SchemaRegistry, TestkitError> {
        let Some((port, topic)) = stopped.place.clone() else {
            return Err(TestkitError::Registry {
                context: "restarting".into(),
                detail: "not a registry the testkit started".into(),
            });
        };
        let registry = Self::start_at(bootstrap_servers, credentials, port, &topic, None).await?;
        // It answers before it has read its topic back.
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while registry.schema(known).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                return Err(TestkitError::Timeout {
                    what: format!("schema {known} after a restart"),
                    after: READY_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(registry)
    }

    async fn start_at(
        bootstrap_servers: &str,
        credentials: Option<(&str, &str)>,
        port: u16,
        topic: &str,
        tls: Option<&Pki>,
    ) -> Result<SchemaRegistry, TestkitError> {
        let binary = Self::binary()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let mut command = Command::new(&binary);
        command
            .args(["--bootstrap-servers", bootstrap_servers])
            .args(["--listen-addr", &format!("127.0.0.1:{port}")])
            .args(["--advertised-url", &url])
            .args(["--schemas-topic", topic])
            .args(["--schemas-topic-rf", "1"])
            .args(["--group-id", &unique_name("schema-registry")])
            .env("CRABKA_ADMIN_LISTEN_ADDR", "127.0.0.1:0");
        for (key, _) in std::env::vars() {
            let ours = key.starts_with("SCHEMA_REGISTRY_") || key.starts_with("CRABKA_");
            if ours && key != "CRABKA_ADMIN_LISTEN_ADDR" {
                command.env_remove(key);
            }
        }
        if let Some(pki) = tls {
            command
                .arg("--tls-cert")
                .arg(&pki.cert)
                .arg("--tls-key")
                .arg(&pki.key);
        }
        if let Some((user, password)) = credentials {
            command
                .arg("--require-auth")
                .args(["--basic-user", &format!("{user}:{password}")]);
        }
        let mut client =
            RegistryClient::new(url, credentials.map(|(u, p)| (u.to_owned(), p.to_owned())))?;
        if let Some(pki) = tls {
            client = client.trusting(&pki.ca)?;
        }
        client.place = Some((port, topic.to_owned()));
        let dir = ServiceProcess::temp_dir(SERVICE)?;
        let probe = || async { client.subjects().await.map(drop).map_err(|e| e.to_string()) };
        let process = ServiceProcess::spawn(SERVICE, command, dir)?
            .wait_ready(READY_TIMEOUT, Duration::from_millis(50), probe)
            .await?;
        Ok(SchemaRegistry::new(process, client))
    }
}

impl RegistryClient {
    /// A client of the registry at `url`, authenticating with `credentials`.
    pub fn new(
        url: impl Into<String>,
        credentials: Option<(String, String)>,
    ) -> Result<Self, TestkitError> {
        let http = http_client_builder()
            .build()
            .map_err(|source| TestkitError::Http {
                context: "building the HTTP client".to_string(),
                source,
            })?;
        Ok(RegistryClient {
            url: url.into(),
            credentials,
            http,
            place: None,
        })
    }

    /// The client, trusting the CA certificate (PEM) in `ca` too.
    pub fn trusting(mut self, ca: &std::path::Path) -> Result<Self, TestkitError> {
        let io = |source| TestkitError::Io {
            context: format!("reading {}", ca.display()),
            source,
        };
        let http = |source| TestkitError::Http {
            context: "building the HTTPS client".to_string(),
            source,
        };
        let pem = std::fs::read(ca).map_err(io)?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(http)?;
        self.http = http_client_builder()
            .add_root_certificate(ca)
            .build()
            .map_err(http)?;
        Ok(self)
    }

    /// The base URL, `http(s)://HOST:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("Accept", CONTENT_TYPE);
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    async fn json(
        &self,
        request: reqwest::RequestBuilder,
        context: &str,
    ) -> Result<serde_json::Value, TestkitError> {
        let http = |source| TestkitError::Http {
            context: context.to_owned(),
            source,
        };
        let response = request.send().await.map_err(http)?;
        let status = response.status();
        let text = response.text().await.map_err(http)?;
        if !status.is_success() {
            return Err(TestkitError::Registry {
                context: context.to_owned(),
                detail: format!("{status}: {text}"),
            });
        }
        serde_json::from_str(&text).map_err(|e| TestkitError::Registry {
            context: context.to_owned(),
            detail: format!("not JSON ({e}): {text}"),
        })
    }

    /// The registered subjects.
    pub async fn subjects(&self) -> Result<Vec<String>, TestkitError> {
        let value = self
            .json(
                self.request(reqwest::Method::GET, "/subjects"),
                "GET /subjects",
            )
            .await?;
        Ok(serde_json::from_value(value).unwrap_or_default())
    }

    /// `GET /schemas/ids/{id}`: the schema's text.
    pub async fn schema(&self, id: u32) -> Result<String, TestkitError> {
        let path = format!("/schemas/ids/{id}");
        let value = self
            .json(
                self.request(reqwest::Method::GET, &path),
                &format!("GET {path}"),
            )
            .await?;
        Ok(value["schema"].as_str().unwrap_or_default().to_owned())
    }

    /// Registers `schema` (`schema_type` `AVRO` or `PROTOBUF`) under
    /// `subject`; its id.
    pub async fn register(
        &self,
        subject: &str,
        schema_type: &str,
        schema: &str,
    ) -> Result<u32, TestkitError> {
        let path = format!("/subjects/{subject}/versions");
        let body = serde_json::json!({"schemaType": schema_type, "schema": schema});
        let request = self
            .request(reqwest::Method::POST, &path)
            .header("Content-Type", CONTENT_TYPE)
            .body(body.to_string());
        let value = self.json(request, &format!("POST {path}")).await?;
        value["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| TestkitError::Registry {
                context: format!("POST {path}"),
                detail: format!("no id in {value}"),
            })
    }
}
