//! The executor's first connection to its agent: one end of a socket pair
//! the agent made when it started the executor, inherited as standard
//! input.
//!
//! Why: the executor is the agent's own child on the same machine, so the
//! agent knows its peer by construction. A connection over the agent's
//! port would need a TCP connect and, on a TLS agent, a full handshake per
//! task (the measured cost of TLS on the launch path); a listening Unix
//! socket would be one more thing other processes could reach. The pair is
//! reachable by nobody else, and the executor's token is still checked on
//! it, as on every path.
//!
//! The connection serves the first session only. When the agent restarts
//! the pair is gone for good, and the executor re-subscribes over the
//! agent's advertised endpoint (TCP, TLS when the agent serves it).
//!
//! *Invariant:* the inherited descriptor never reaches a task: it is moved
//! to a close-on-exec descriptor at start-up and standard input becomes
//! `/dev/null`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Set by the agent when the executor's standard input is its connection.
pub const ENV_AGENT_CONNECTION: &str = "AGORA_AGENT_CONNECTION";
/// The only value [`ENV_AGENT_CONNECTION`] takes.
pub const FROM_STDIN: &str = "stdin";

/// The inherited connection, until the first session takes it.
#[derive(Debug, Clone, Default)]
pub struct LocalConnection(Arc<Mutex<Option<UnixStream>>>);

impl LocalConnection {
    /// Takes standard input as the connection when `setting` says the
    /// agent passed one there. Anything unexpected (not a socket, no
    /// descriptor left) leaves no connection, and the executor uses the
    /// agent's endpoint instead, as after an agent restart.
    pub fn inherit(setting: Option<&str>) -> Self {
        if setting != Some(FROM_STDIN) {
            return Self::default();
        }
        match take_stdin() {
            Ok(stream) => Self(Arc::new(Mutex::new(Some(stream)))),
            Err(e) => {
                tracing::warn!(error = %e, "no usable connection from the agent on standard input; using its endpoint");
                Self::default()
            }
        }
    }

    #[cfg(test)]
    pub fn from_stream(stream: UnixStream) -> Self {
        Self(Arc::new(Mutex::new(Some(stream))))
    }

    /// The connection, once.
    pub fn take(&self) -> Option<UnixStream> {
        self.0.lock().ok()?.take()
    }
}

/// Moves standard input to a close-on-exec descriptor and puts
/// `/dev/null` in its place.
pub fn take_stdin_fd() -> io::Result<OwnedFd> {
    let stdin = io::stdin();
    let moved: OwnedFd = stdin.as_fd().try_clone_to_owned()?;
    let null = File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(moved)
}

fn take_stdin() -> io::Result<UnixStream> {
    let stream = UnixStream::from(take_stdin_fd()?);
    // A socket has an address (an unnamed one for a pair); anything else
    // fails with ENOTSOCK.
    stream.local_addr()?;
    Ok(stream)
}

/// The connection window of a channel to the agent (the agent's own,
/// `crate::shell::CONNECTION_WINDOW`).
pub const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// A gRPC channel over `stream`. The channel cannot reconnect: once the
/// stream ends, calls fail and the caller falls back to the endpoint.
pub async fn channel(stream: UnixStream) -> io::Result<Channel> {
    stream.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(stream)?;
    let slot = Arc::new(Mutex::new(Some(stream)));
    // The authority only names the peer in requests; nothing resolves it.
    Endpoint::from_static("http://agent.local")
        // A supervisor's one connection carries a stream per hosted
        // executor: the window (and h2's budget for small frames, half of
        // it) grows with them, as the agent's does (`shell::CONNECTION_WINDOW`).
        .initial_connection_window_size(CONNECTION_WINDOW)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let taken = slot.lock().ok().and_then(|mut s| s.take());
            async move {
                taken.map(TokioIo::new).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotConnected,
                        "the connection the agent handed over has ended",
                    )
                })
            }
        }))
        .await
        .map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_setting_means_no_connection() {
        assert!(LocalConnection::inherit(None).take().is_none());
        assert!(LocalConnection::inherit(Some("fd:3")).take().is_none());
    }

    #[test]
    fn the_connection_is_taken_once_by_all_clones() {
        let (ours, _theirs) = UnixStream::pair().expect("pair");
        let connection = LocalConnection::from_stream(ours);
        let clone = connection.clone();
        assert!(clone.take().is_some());
        assert!(connection.take().is_none());
    }

    #[tokio::test]
    async fn a_channel_speaks_http2_over_the_pair() {
        use tokio::io::AsyncReadExt;
        let (ours, theirs) = UnixStream::pair().expect("pair");
        theirs.set_nonblocking(true).expect("nonblocking");
        let mut theirs = tokio::net::UnixStream::from_std(theirs).expect("tokio stream");
        let reader = tokio::spawn(async move {
            let mut preface = [0u8; 24];
            theirs.read_exact(&mut preface).await.map(|_| preface)
        });
        let _channel = channel(ours).await.expect("channel");
        let preface = tokio::time::timeout(std::time::Duration::from_secs(30), reader)
            .await
            .expect("the client speaks first")
            .expect("no panic")
            .expect("read");
        assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    }
}
