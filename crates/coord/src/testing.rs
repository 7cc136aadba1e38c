//! Test support for this crate and the ones above it: a real standalone
//! ZooKeeper server, a TCP proxy that can be cut to partition a client from
//! it, a contract check for [`RegistryStore`](crate::RegistryStore)
//! implementations, and a registry store that fails on demand
//! ([`FaultyRegistryStore`]).
//!
//! Compiled only for this crate's tests and with the `testing` feature,
//! which the other crates enable in their dev-dependencies: nothing here is
//! part of a production build. Everything listens on 127.0.0.1 only, and
//! every wait is bounded.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::url::ZkUrl;

pub use crate::registry::contract::check_registry_store;
pub use crate::registry::faulty::{FaultyRegistryStore, RegistryFault};

/// The Debian package's server jar; its manifest class path names every
/// dependency.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// Optional logging binding that makes the server log to its output.
const SLF4J_SIMPLE_JAR: &str = "/usr/share/java/slf4j-simple.jar";
/// How long the server may take to answer `srvr` with `Mode: standalone`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with different ports when the chosen one was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// Why the test ZooKeeper or proxy could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    /// The Debian package (or java) is missing.
    #[error("zookeeper is not installed ({what}); install it with `apt-get install -y zookeeper`")]
    NotInstalled {
        /// What is missing.
        what: String,
    },
    /// A local i/o operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The server did not become ready.
    #[error("zookeeper did not start: {reason}; log at {log}")]
    NotReady {
        /// Why.
        reason: String,
        /// The server's log file.
        log: PathBuf,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> TestingError {
    let what = what.into();
    move |source| TestingError::Io { what, source }
}

/// A standalone ZooKeeper server from the Debian package, run with `java`
/// directly (no systemd, no `zkServer.sh`) in a temporary directory on a
/// free 127.0.0.1 port. Killed (SIGKILL, by pid) and its directory removed
/// on drop.
///
/// Configured for tests: `tickTime=200` so that sessions expire promptly,
/// and `minSessionTimeout=1000`, so session timeouts of 1 s and up are
/// granted as asked.
#[derive(Debug)]
pub struct ZooKeeper {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl ZooKeeper {
    /// Starts a server and waits (at most 30 s) until it answers `srvr`
    /// with `Mode: standalone`.
    pub async fn start() -> Result<Self, TestingError> {
        if !Path::new(ZOOKEEPER_JAR).exists() {
            return Err(TestingError::NotInstalled {
                what: format!("{ZOOKEEPER_JAR} is missing"),
            });
        }
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once().await {
                Ok(server) => return Ok(server),
                // Another process may have taken the port: try another.
                Err(error @ TestingError::NotReady { .. }) => last = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| TestingError::NotInstalled {
            what: "no start attempt".into(),
        }))
    }

    async fn start_once() -> Result<Self, TestingError> {
        let dir = tempfile::Builder::new()
            .prefix("agora-zk-")
            .tempdir()
            .map_err(io_error("creating the zookeeper directory"))?;
        let port = free_port()?;
        let conf = dir.path().join("conf");
        let data = dir.path().join("data");
        for d in [&conf, &data] {
            std::fs::create_dir_all(d).map_err(io_error(format!("creating {}", d.display())))?;
        }
        let config = format!(
            "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             minSessionTimeout=1000\nmaxSessionTimeout=60000\nadmin.enableServer=false\n\
             4lw.commands.whitelist=srvr,ruok,stat,mntr\n",
            data.display()
        );
        let cfg_path = conf.join("zoo.cfg");
        std::fs::write(&cfg_path, config).map_err(io_error("writing zoo.cfg"))?;
        let child = spawn_server(dir.path())?;
        let mut server = Self { child, port, dir };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Kills the server (SIGKILL, by pid) and starts it again on the same
    /// port with the same data directory, as a crash and a service restart
    /// would: znodes and unexpired sessions survive.
    pub async fn restart(&mut self) -> Result<(), TestingError> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_server(self.dir.path())?;
        self.wait_ready().await
    }

    /// Waits (at most 30 s) until the server answers `srvr` with
    /// `Mode: standalone`.
    async fn wait_ready(&mut self) -> Result<(), TestingError> {
        let log = self.log_path();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(TestingError::NotReady {
                    reason: format!("server exited with {status}"),
                    log,
                });
            }
            if self
                .four_letter_word("srvr")
                .await
                .is_some_and(|answer| answer.contains("Mode: standalone"))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestingError::NotReady {
                    reason: format!("no `Mode: standalone` answer within {START_TIMEOUT:?}"),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a four-letter command (`srvr`, `ruok`, `stat`, `mntr`) and
    /// returns the answer; `None` when the server does not answer within 1 s.
    pub async fn four_letter_word(&self, word: &str) -> Option<String> {
        let port = self.port;
        let word = word.to_owned();
        // Blocking socket with timeouts: a connection accepted mid-startup
        // can stay silent, and this must not hang.
        tokio::task::spawn_blocking(move || {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let timeout = Duration::from_secs(1);
            let mut stream = StdTcpStream::connect_timeout(&addr, timeout).ok()?;
            stream.set_read_timeout(Some(timeout)).ok()?;
            stream.set_write_timeout(Some(timeout)).ok()?;
            stream.write_all(word.as_bytes()).ok()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).ok()?;
            Some(answer)
        })
        .await
        .ok()
        .flatten()
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `127.0.0.1:<port>`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `zk://127.0.0.1:<port><path>`.
    ///
    /// # Panics
    /// If `path` is not a valid znode path (see [`ZkUrl::parse`]).
    pub fn url(&self, path: &str) -> ZkUrl {
        url_for(&self.connect_string(), path)
    }

    /// A URL with a path unique to this process and call, e.g.
    /// `/test-<prefix>-<pid>-<n>`, so tests never see each other's nodes.
    pub fn unique_url(&self, prefix: &str) -> ZkUrl {
        self.url(&unique_path(prefix))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        // SIGKILL: the data directory is thrown away anyway.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server of the directory `dir` (its `conf/zoo.cfg`), logging
/// to `dir/server.log` (appended, so a restart keeps the earlier log).
fn spawn_server(dir: &Path) -> Result<Child, TestingError> {
    let conf = dir.join("conf");
    let mut class_path = format!("{}:{ZOOKEEPER_JAR}", conf.display());
    if Path::new(SLF4J_SIMPLE_JAR).exists() {
        class_path.push(':');
        class_path.push_str(SLF4J_SIMPLE_JAR);
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .map_err(io_error("opening server.log"))?;
    let log_err = log_file
        .try_clone()
        .map_err(io_error("opening server.log"))?;
    Command::new("java")
        .args([
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
        ])
        .arg(format!("-Dzookeeper.log.dir={}", dir.display()))
        .arg("-cp")
        .arg(class_path)
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(conf.join("zoo.cfg"))
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => TestingError::NotInstalled {
                what: "java is not on PATH".into(),
            },
            _ => TestingError::Io {
                what: "starting java".into(),
                source,
            },
        })
}

/// A path unique to this process and call: `/test-<prefix>-<pid>-<n>`.
pub fn unique_path(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("/test-{prefix}-{}-{n}", std::process::id())
}

fn url_for(hosts: &str, path: &str) -> ZkUrl {
    match ZkUrl::parse(&format!("zk://{hosts}{path}")) {
        Ok(url) => url,
        Err(error) => panic!("invalid test zookeeper path {path:?}: {error}"),
    }
}

fn free_port() -> Result<u16, TestingError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io_error("finding a free port"))?;
    let addr = listener
        .local_addr()
        .map_err(io_error("finding a free port"))?;
    Ok(addr.port())
}

/// A TCP proxy on 127.0.0.1 in front of `target` that a test can cut:
/// [`cut`](Self::cut) closes every open connection and closes new ones
/// as soon as they are accepted (the peer sees the connection drop);
/// [`stall`](Self::stall) keeps connections open but stops passing bytes
/// (a silent partition: the peer notices only by its own timeouts);
/// [`restore`](Self::restore) lets traffic through again. Stops on drop.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Stalled,
    Cut,
}

impl Proxy {
    /// Starts a proxy to `target` on a free 127.0.0.1 port.
    pub async fn start(target: SocketAddr) -> Result<Self, TestingError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io_error("binding the proxy"))?;
        let addr = listener
            .local_addr()
            .map_err(io_error("binding the proxy"))?;
        let (mode, mode_rx) = watch::channel(Mode::Open);
        let task = tokio::spawn(accept_loop(listener, target, mode_rx));
        Ok(Self { addr, mode, task })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    /// `zk://127.0.0.1:<proxy port><path>`.
    ///
    /// # Panics
    /// If `path` is not a valid znode path (see [`ZkUrl::parse`]).
    pub fn url(&self, path: &str) -> ZkUrl {
        url_for(&self.connect_string(), path)
    }

    /// Drops every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Stops passing bytes in either direction without closing anything,
    /// until [`restore`](Self::restore) (bytes held meanwhile are then
    /// delivered, like TCP retransmissions after a healed partition).
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    /// Lets traffic through again.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Open);
    }

    /// Whether the proxy is cut.
    pub fn is_cut(&self) -> bool {
        *self.mode.borrow() == Mode::Cut
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open connections end too: their mode receivers see the sender go.
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<Mode>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if *mode.borrow() == Mode::Cut {
            drop(inbound);
            continue;
        }
        tokio::spawn(forward(inbound, target, mode.clone()));
    }
}

async fn forward(inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let connect = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await;
    let Ok(Ok(outbound)) = connect else {
        return;
    };
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::select! {
        () = pump(in_read, out_write, mode.clone()) => {}
        () = pump(out_read, in_write, mode.clone()) => {}
        // Cut, or the proxy is gone (sender dropped): close both sides.
        _ = mode.wait_for(|m| *m == Mode::Cut) => {}
    }
}

/// Copies bytes from `from` to `to`, holding them while the proxy is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match mode.wait_for(|m| *m != Mode::Stalled).await {
            Ok(m) if *m == Mode::Open => {}
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
