//! `fleet-preprocessor`: the streaming telemetry preprocessor for vehicle fleets.
//!
//! Reads raw vehicle events from Kafka, joins each VIN to its model, aggregates
//! 5-second event-time windows per (model, region) and writes the results to
//! Prometheus through remote write. With no Kafka and no remote write
//! configured it runs on an in-process generator and prints the aggregates.
//!
//! # Layout
//!
//! - `settings` (in the library, for the fuzz targets): the configuration
//!   (embedded `config/default.toml`, `--config` file, `FLEET__*`
//!   environment), validated once before anything connects.
//! - `service`: builds the bounded channels and spawns one task per stage:
//!   the source (`fleet-kafka`, the embedded `fleet_generator::live`, or the
//!   `replay` file source of `fleet-replay`), `fleet-enricher`,
//!   `fleet-aggregator`, and the sink (`fleet-remote-write` or `console`).
//! - `console`: the JSON-lines sink.

mod console;
mod service;

use fleet_preprocessor::settings;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fleet_core::config::{ConfigError, Problems, EXIT_CONFIG};
use settings::{Settings, ValidSettings};

#[derive(Parser, Debug)]
#[command(name = "fleet-preprocessor", version, about)]
struct Cli {
    /// A TOML configuration file layered over the embedded defaults.
    #[arg(long, global = true, env = "FLEET_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service (the default).
    Run,
    /// Run the pipeline over a file of raw events and print the aggregates as JSON lines.
    Replay {
        /// Raw events, one JSON object per line.
        #[arg(long)]
        input: PathBuf,
        /// Reference CSV `vehicle_id,model` (default: `reference.csv_path`).
        #[arg(long)]
        reference: Option<PathBuf>,
    },
    /// Validate the configuration, name every problem, and exit.
    CheckConfig,
    /// Print the effective configuration (every layer applied) as TOML, with
    /// secrets redacted, and exit. It is not validated: `check-config` does that.
    PrintConfig,
    /// Ask the running service's `/healthz` (or `/readyz` with `--ready`) on
    /// `telemetry.listen` and exit 0 when it answers 200, 1 otherwise: a
    /// container health check that needs no shell or curl in the image.
    Healthcheck {
        /// Ask `/readyz` instead of `/healthz`.
        #[arg(long)]
        ready: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::PrintConfig) = cli.command {
        return print_config(&cli);
    }
    let settings = match load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fleet-preprocessor: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let (log_format, log_level) = &settings.log;
    fleet_core::telemetry::init_tracing(*log_format, log_level);
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::PrintConfig => unreachable!("handled before the configuration is validated"),
        Command::CheckConfig => {
            if let Err(e) = settings.check_reference_data() {
                eprintln!("fleet-preprocessor: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
            // A reader that stops early (`| head`) is not an error.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "configuration is valid");
            let _ = write!(out, "{}", settings.plan);
            Ok(())
        }
        Command::Healthcheck { ready } => healthcheck(&settings, ready),
        Command::Run => {
            runtime().and_then(|rt| rt.block_on(service::run(settings, shutdown_signal())))
        }
        Command::Replay { input, .. } => runtime().and_then(|rt| {
            rt.block_on(service::run(
                settings.for_replay(input),
                std::future::pending(),
            ))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet-preprocessor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `healthcheck`: one HTTP/1.0 GET to the service's own endpoint.
fn healthcheck(settings: &ValidSettings, ready: bool) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let Some(mut addr) = settings.listen else {
        anyhow::bail!("telemetry.listen is empty: the service has no HTTP endpoint to ask");
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let path = if ready { "/readyz" } else { "/healthz" };
    let timeout = std::time::Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = String::new();
    stream.take(64 * 1024).read_to_string(&mut answer)?;
    let status = answer.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        return Ok(());
    }
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    anyhow::bail!("{path} answered {status:?}: {body}")
}

/// `print-config`: the layered configuration, before validation, so that a
/// configuration `check-config` refuses can still be inspected.
fn print_config(cli: &Cli) -> ExitCode {
    let printed = Settings::load(cli.config.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|s| s.to_redacted_toml().map_err(|e| e.to_string()));
    match printed {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fleet-preprocessor: {e}");
            ExitCode::from(EXIT_CONFIG as u8)
        }
    }
}

/// Loads and validates; a key that does not load is reported together with
/// every validation problem of the rest.
fn load(cli: &Cli) -> Result<ValidSettings, ConfigError> {
    let mut problems = Problems::default();
    let Some(mut settings) = Settings::load_collecting(cli.config.as_deref(), &mut problems) else {
        return Err(problems
            .finish(())
            .err()
            .unwrap_or_else(|| ConfigError::single("", "the configuration could not be loaded")));
    };
    if let Some(Command::Replay {
        reference: Some(path),
        ..
    }) = &cli.command
    {
        settings.reference.csv_path = path.display().to_string();
    }
    let settings = settings.validate_with(problems)?;
    if matches!(cli.command, Some(Command::Replay { .. })) {
        settings.check_replay_input()?;
    } else {
        settings.check_embedded_input()?;
    }
    Ok(settings)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; only SIGINT stops the service.");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("Shutdown requested.");
}
