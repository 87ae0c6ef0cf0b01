//! The plumbing both services share: finding a binary, picking a free
//! loopback port, running a child with its output in a log file inside its
//! own temporary directory, and killing it on drop.
//!
//! Output goes to a file rather than a pipe so a chatty child can never block
//! on a full pipe that nobody drains. When a test panics the directory is
//! kept and its path printed, so the service's log survives the failure.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::TestkitError;

/// How much of a log an error message quotes.
const TAIL_BYTES: u64 = 4096;

/// Start attempts: a retry covers another process taking the free port first.
const START_ATTEMPTS: usize = 3;

/// Runs `start_once` until it succeeds, fails other than by the child exiting
/// early, or has been tried [`START_ATTEMPTS`] times. Each attempt picks its
/// own free port; an early exit is most often another process having taken
/// that port first. Only the last attempt's log is kept.
pub(crate) async fn start_with_retries<T, F, Fut>(
    service: &'static str,
    mut start_once: F,
) -> Result<T, TestkitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TestkitError>>,
{
    let mut attempt = 1;
    loop {
        match start_once().await {
            Err(error @ TestkitError::Exited { .. }) if attempt < START_ATTEMPTS => {
                discard_failed_start(&error);
                tracing::debug!(
                    service,
                    attempt,
                    "Exited during start; retrying on another port."
                );
                attempt += 1;
            }
            result => return result,
        }
    }
}

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

/// A service running as a child process on loopback, with a client of it
/// (for Tansu a [`crate::KafkaClient`], for Prometheus a
/// [`crate::PrometheusClient`]), which it dereferences to. The process is
/// killed on drop; when a test panics its directory is kept and the log's
/// path printed.
#[derive(Debug)]
pub struct LocalService<C> {
    process: ServiceProcess,
    client: C,
}

impl<C> LocalService<C> {
    /// A ready service and its client.
    pub(crate) fn new(process: ServiceProcess, client: C) -> Self {
        LocalService { process, client }
    }

    /// The file holding the service's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    pub(crate) fn process_mut(&mut self) -> &mut ServiceProcess {
        &mut self.process
    }

    /// The service's temporary directory (working directory, configuration, data).
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// Stops the service now (dropping the handle does the same).
    pub fn stop(mut self) {
        self.process.kill();
    }

    /// Stops the process without ending it (SIGSTOP): its sockets stay open
    /// and nothing answers, as with a host that hangs or a network that
    /// drops every packet.
    pub fn freeze(&self) -> Result<(), TestkitError> {
        self.process.signal(nix::sys::signal::Signal::SIGSTOP)
    }

    /// Lets a frozen process go on (SIGCONT).
    pub fn thaw(&self) -> Result<(), TestkitError> {
        self.process.signal(nix::sys::signal::Signal::SIGCONT)
    }
}

impl<C> Deref for LocalService<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.client
    }
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
    /// The command line it was started with, to start it again.
    launch: Launch,
}

/// What a child was started with: its program, arguments and environment
/// changes (`None`: removed).
#[derive(Debug)]
struct Launch {
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>,
}

impl Launch {
    fn of(command: &Command) -> Launch {
        Launch {
            program: command.get_program().to_owned(),
            args: command.get_args().map(ToOwned::to_owned).collect(),
            envs: command
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
                .collect(),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (key, value) in &self.envs {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }
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
        command: Command,
        dir: TempDir,
    ) -> Result<Self, TestkitError> {
        let dir_path = dir.path().to_path_buf();
        let log_path = dir_path.join(format!("{service}.log"));
        let mut process = ServiceProcess {
            service,
            child: None,
            dir: Some(dir),
            dir_path,
            log_path,
            launch: Launch::of(&command),
        };
        process.start(command)?;
        Ok(process)
    }

    /// Starts `command` in the directory, its output appended to the log.
    fn start(&mut self, mut command: Command) -> Result<(), TestkitError> {
        let (service, log_path) = (self.service, &self.log_path);
        let io_error = |context: &str, source| TestkitError::Io {
            context: format!("{context} for {service} ({})", log_path.display()),
            source,
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| io_error("opening the log file", e))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(|e| io_error("duplicating the log file handle", e))?;
        command
            .current_dir(&self.dir_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr));
        let child = command
            .spawn()
            .map_err(|e| io_error("spawning the process", e))?;
        tracing::debug!(service, pid = child.id(), log = %log_path.display(), "Started test service.");
        self.child = Some(child);
        Ok(())
    }

    /// Starts the killed child again, as it was started, in the same
    /// directory (its data kept), appending to its log.
    pub(crate) fn respawn(&mut self) -> Result<(), TestkitError> {
        self.kill();
        self.start(self.launch.command())
    }

    /// Polls `probe` every `interval` until it answers `Ok`, and returns the
    /// running process. When the child exits first, or `timeout` passes, the
    /// process is killed and the error quotes the end of its log and the
    /// probe's last failure.
    pub(crate) async fn wait_ready<F, Fut>(
        mut self,
        timeout: Duration,
        interval: Duration,
        mut probe: F,
    ) -> Result<Self, TestkitError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_failure = "no attempt".to_string();
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.exited() {
                last_failure = format!("exited with {status}");
                break;
            }
            match probe().await {
                Ok(()) => return Ok(self),
                Err(failure) => last_failure = failure,
            }
            tokio::time::sleep(interval).await;
        }
        Err(self.start_failed(timeout, last_failure))
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
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last few kilobytes of the log, for error messages.
    fn log_tail(&self) -> String {
        read_tail(&self.log_path).unwrap_or_else(|e| format!("(log unreadable: {e})"))
    }

    /// Turns a start failure into an error, keeping the directory so that the
    /// log path in the message still exists.
    fn start_failed(mut self, timeout: Duration, reason: String) -> TestkitError {
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

    /// Sends `signal` to the child.
    fn signal(&self, signal: nix::sys::signal::Signal) -> Result<(), TestkitError> {
        let child = self.child.as_ref().ok_or_else(|| TestkitError::Io {
            context: format!("signalling {}", self.service),
            source: std::io::Error::other("the process has ended"),
        })?;
        let pid = i32::try_from(child.id()).map_err(|_| TestkitError::Io {
            context: format!("signalling {}", self.service),
            source: std::io::Error::other("process id out of range"),
        })?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(|errno| {
            TestkitError::Io {
                context: format!("sending {signal} to {}", self.service),
                source: std::io::Error::from(errno),
            }
        })
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
fn discard_failed_start(error: &TestkitError) {
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
