//! The plumbing both services share: finding a binary, picking a free
//! loopback port, running a child with its output in a log file inside its
//! own temporary directory, and killing it on drop.
//!
//! Output goes to a file rather than a pipe so a chatty child can never block
//! on a full pipe that nobody drains. When a test panics the directory is
//! kept and its path printed, so the service's log survives the failure.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::TestkitError;

/// How much of a log an error message quotes.
const TAIL_BYTES: u64 = 4096;

/// Finds an executable: the override variable first, then `PATH`, then the
/// usual places an installer puts it.
pub(crate) fn find_binary(
    name: &'static str,
    override_var: &str,
    fallbacks: &[PathBuf],
) -> Result<PathBuf, TestkitError> {
    let mut looked = Vec::new();
    if let Some(path) = std::env::var_os(override_var) {
        let path = PathBuf::from(path);
        if is_executable(&path) {
            return Ok(path);
        }
        looked.push(format!("${override_var}={}", path.display()));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
        looked.push("PATH".to_string());
    }
    for candidate in fallbacks {
        if is_executable(candidate) {
            return Ok(candidate.clone());
        }
        looked.push(candidate.display().to_string());
    }
    Err(TestkitError::BinaryMissing {
        binary: name,
        looked: looked.join(", "),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A loopback port that was free a moment ago. Another process may take it
/// before the child binds it; callers retry the start when the child exits early.
pub(crate) fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| TestkitError::Io {
        context: "binding 127.0.0.1:0 to find a free port".to_string(),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| TestkitError::Io {
            context: "reading the port of a loopback listener".to_string(),
            source,
        })?
        .port();
    Ok(port)
}

/// Whether something accepts TCP connections on the loopback port.
pub(crate) fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A running child process with its working directory and log file.
#[derive(Debug)]
pub(crate) struct ServiceProcess {
    service: &'static str,
    /// `None` once the child has been killed and reaped.
    child: Option<Child>,
    /// `None` once the directory has been kept (it then outlives the handle).
    dir: Option<TempDir>,
    dir_path: PathBuf,
    log_path: PathBuf,
}

impl ServiceProcess {
    /// A fresh temporary directory for one service instance.
    pub(crate) fn temp_dir(service: &'static str) -> Result<TempDir, TestkitError> {
        tempfile::Builder::new()
            .prefix(&format!("fleet-{service}-"))
            .tempdir()
            .map_err(|source| TestkitError::Io {
                context: format!("creating a temporary directory for {service}"),
                source,
            })
    }

    /// Starts `command` with its working directory `dir` and stdout and stderr
    /// appended to `dir/<service>.log`.
    pub(crate) fn spawn(
        service: &'static str,
        mut command: Command,
        dir: TempDir,
    ) -> Result<Self, TestkitError> {
        let dir_path = dir.path().to_path_buf();
        let log_path = dir_path.join(format!("{service}.log"));
        let io_error = |context: &str, source| TestkitError::Io {
            context: format!("{context} for {service} ({})", log_path.display()),
            source,
        };
        let log = File::create(&log_path).map_err(|e| io_error("creating the log file", e))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(|e| io_error("duplicating the log file handle", e))?;
        command
            .current_dir(&dir_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr));
        let child = command
            .spawn()
            .map_err(|e| io_error("spawning the process", e))?;
        tracing::debug!(service, pid = child.id(), log = %log_path.display(), "Started test service.");
        Ok(ServiceProcess {
            service,
            child: Some(child),
            dir: Some(dir),
            dir_path,
            log_path,
        })
    }

    /// The file holding the child's stdout and stderr.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The child's temporary directory (working directory, config, data).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The exit status if the child has already exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last few kilobytes of the log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        read_tail(&self.log_path).unwrap_or_else(|e| format!("(log unreadable: {e})"))
    }

    /// Turns a start failure into an error, keeping the directory so that the
    /// log path in the message still exists.
    pub(crate) fn start_failed(mut self, timeout: Duration, reason: String) -> TestkitError {
        let exited = self.exited();
        self.kill();
        let tail = self.log_tail();
        self.keep_dir();
        match exited {
            Some(status) => TestkitError::Exited {
                service: self.service,
                status: status.to_string(),
                log: self.log_path.clone(),
                tail,
            },
            None => TestkitError::NotReady {
                service: self.service,
                timeout,
                reason,
                log: self.log_path.clone(),
                tail,
            },
        }
    }

    /// Kills and reaps the child; idempotent.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: the services keep nothing a test needs after it ends,
            // and a graceful stop would only slow every test down.
            if let Err(error) = child.kill() {
                tracing::debug!(service = self.service, %error, "Kill failed; the child had probably exited.");
            }
            let _ = child.wait();
        }
    }

    fn keep_dir(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && self.dir.is_some() {
            self.keep_dir();
            eprintln!(
                "{} log kept for the failed test: {}",
                self.service,
                self.log_path.display()
            );
        }
    }
}

/// Removes the kept directory of a start attempt that will be retried: only
/// the last attempt's log is worth keeping.
pub(crate) fn discard_failed_start(error: &TestkitError) {
    if let TestkitError::Exited { log, .. } | TestkitError::NotReady { log, .. } = error {
        if let Some(dir) = log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn read_tail(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    // Start at a line boundary when the tail cut one.
    let text = match (start > 0, text.find('\n')) {
        (true, Some(newline)) => &text[newline + 1..],
        _ => &text[..],
    };
    Ok(text.trim_end().to_string())
}
