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

use crate::process::{self, LocalService, ServiceProcess};
use crate::{unique_name, TestkitError};

const SERVICE: &str = "crabka-schema-registry";

/// How long the registry has to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

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
        let binary = Self::binary()?;
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        process::start_with_retries(SERVICE, || async {
            let port = process::free_port()?;
            let url = format!("http://127.0.0.1:{port}");
            let mut command = Command::new(&binary);
            command
                .args(["--bootstrap-servers", bootstrap_servers])
                .args(["--listen-addr", &format!("127.0.0.1:{port}")])
                .args(["--advertised-url", &url])
                .args(["--schemas-topic", &unique_name("_schemas")])
                .args(["--schemas-topic-rf", "1"])
                .args(["--group-id", &unique_name("schema-registry")])
                .env("CRABKA_ADMIN_LISTEN_ADDR", "127.0.0.1:0");
            for (key, _) in std::env::vars() {
                let ours = key.starts_with("SCHEMA_REGISTRY_") || key.starts_with("CRABKA_");
                if ours && key != "CRABKA_ADMIN_LISTEN_ADDR" {
                    command.env_remove(key);
                }
            }
            if let Some((user, password)) = &credentials {
                command
                    .arg("--require-auth")
                    .args(["--basic-user", &format!("{user}:{password}")]);
            }
            let client = RegistryClient::new(url, credentials.clone())?;
            let dir = ServiceProcess::temp_dir(SERVICE)?;
            let probe = || async { client.subjects().await.map(drop).map_err(|e| e.to_string()) };
            let process = ServiceProcess::spawn(SERVICE, command, dir)?
                .wait_ready(READY_TIMEOUT, Duration::from_millis(50), probe)
                .await?;
            Ok(SchemaRegistry::new(process, client))
        })
        .await
    }
}

impl RegistryClient {
    /// A client of the registry at `url`, authenticating with `credentials`.
    pub fn new(
        url: impl Into<String>,
        credentials: Option<(String, String)>,
    ) -> Result<Self, TestkitError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|source| TestkitError::Http {
                context: "building the HTTP client".to_string(),
                source,
            })?;
        Ok(RegistryClient {
            url: url.into(),
            credentials,
            http,
        })
    }

    /// The base URL, `http://HOST:PORT`.
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
