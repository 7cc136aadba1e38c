//! The accept loop.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::first_bytes::FirstBytes;

/// What a server allows its peers.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// A connection must send its first request's whole head (HTTP/1) or
    /// the HTTP/2 preface within this long. Once it has, it may idle
    /// between requests: Mesos' clients keep one connection for all their
    /// calls and do not retry a call whose connection was closed. Default 10 s.
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection is pinged this often... Default 30 s.
    pub http2_keep_alive_interval: Duration,
    /// ...and closed when a ping is not answered within this long. Default 20 s.
    pub http2_keep_alive_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once; more wait for
    /// one to end. Default 200 (hyper's). A peer that multiplexes one
    /// long-lived stream per task over one connection needs more.
    pub http2_max_concurrent_streams: u32,
    /// The HTTP/2 connection-level flow-control window. It bounds what one
    /// connection may have buffered unread, and h2 closes a connection
    /// (GOAWAY, ENHANCE_YOUR_CALM "too_many_data_frames") whose unread
    /// small DATA frames cost more than half of it: a peer with many
    /// streams, each with a small message waiting, needs it to grow with
    /// them. Default 1 MiB (hyper's).
    pub http2_connection_window: u32,
    /// Open connections at most; more are closed as soon as accepted, with
    /// a warning. `None`: derived from the descriptor limit
    /// ([`crate::connection_cap`]).
    pub max_connections: Option<usize>,
    /// On shutdown, how long open connections have to finish.
    pub graceful_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_max_concurrent_streams: 200,
            http2_connection_window: 1024 * 1024,
            max_connections: None,
            graceful_timeout: Duration::from_secs(10),
        }
    }
}

/// How often at most the "too many connections" warning is logged.
const CAP_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Serves `app` (HTTP/1 and HTTP/2, so gRPC too) on `listener` until
/// `shutdown` is cancelled, then gives open connections
/// [`ServeLimits::graceful_timeout`] to finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_tls(listener, app, limits, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given: each connection's handshake
/// runs on the connection's own task (a slow peer never holds up the accept
/// loop) within the same first-bytes deadline as a plaintext request's head
/// ([`ServeLimits::header_read_timeout`], counted from the accept), so a
/// silent peer, or one that speaks plaintext HTTP to a TLS port, is closed
/// without an HTTP answer. After the handshake the connection speaks HTTP/2
/// or HTTP/1.1 as ALPN agreed (a client that offered no ALPN gets whichever
/// its first bytes show).
pub async fn serve_tls(
    listener: TcpListener,
    app: axum::Router,
    limits: ServeLimits,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let app = edge(app);
    let cap = limits
        .max_connections
        .unwrap_or_else(|| crate::connection_cap(crate::limits::fd_limit()));
    let permits = Arc::new(Semaphore::new(cap));
    let builder = connection_builder(&limits);
    let graceful = GracefulShutdown::new();
    let mut refused = 0u64;
    let mut last_warning: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or memory: wait a little rather
                    // than spin; the listener itself is still fine.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if last_warning.is_none_or(|at| at.elapsed() >= CAP_WARN_INTERVAL) {
                tracing::warn!(
                    max_connections = cap,
                    refused,
                    peer = %peer,
                    "connection limit reached; closing new connections until some end"
                );
                last_warning = Some(Instant::now());
                refused = 0;
            }
            drop(tcp);
            continue;
        };
        // Replies go out in several writes; without TCP_NODELAY each would
        // wait for the peer's delayed ACK (40 ms on Linux).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let Some(acceptor) = tls.clone() else {
            let io = TokioIo::new(FirstBytes::new(tcp, limits.header_read_timeout));
            let service = TowerToHyperService::new(app.clone());
            let connection = builder
                .serve_connection_with_upgrades(io, service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
            continue;
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let app = app.clone();
        let first_bytes = limits.header_read_timeout;
        tokio::spawn(async move {
            let accepted = Instant::now();
            let stream = match tokio::time::timeout(first_bytes, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "no tls handshake within the header-read timeout");
                    return;
                }
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            // What is left of the deadline applies to the first request.
            let left = first_bytes.saturating_sub(accepted.elapsed());
            let io = TokioIo::new(FirstBytes::new(stream, left));
            let service = TowerToHyperService::new(app);
            let mut builder = builder;
            if h2 {
                builder = builder.http2_only();
            }
            let connection = builder.serve_connection_with_upgrades(io, service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.graceful_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the graceful shutdown timeout; closing them");
    }
    Ok(())
}

/// What every connection's requests pass first, whatever it came on:
/// every port refuses what a browser sends on another site's behalf, and
/// answers in gzip a client that takes it.
fn edge(app: axum::Router) -> axum::Router {
    app.layer(axum::middleware::from_fn(crate::encoding::gzip_answers))
        .layer(axum::middleware::from_fn(crate::cross_site::guard))
}

/// How a connection is spoken, the same for accepted and handed-in ones.
fn connection_builder(limits: &ServeLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Off: it would also close kept-alive connections that idle between
        // requests (see `first_bytes`), which Mesos' clients do not survive.
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_timeout)
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        // Streams a client may reset before this server took them up. h2's
        // 20 (against rapid-reset floods) closed a framework's connection,
        // and every call in flight on it, when a loaded master fell behind
        // and the framework's calls hit their deadlines: as many as it may
        // have open is the same bound on what a flood can make us hold.
        .max_pending_accept_reset_streams(limits.http2_max_concurrent_streams as usize)
        .initial_connection_window_size(limits.http2_connection_window);
    builder
}

/// Serves `app` on connections handed in already open, until `shutdown`:
/// the server's end of a socket pair whose other end a child process
/// inherited when it was started (the agent's own executors). Nothing
/// listens, so no other process can reach this path, and there is no
/// handshake to pay: the peer is known by construction. A connection gets
/// the same requests' edge as [`serve_tls`]'s; it is not counted against
/// the connection cap (its number is bounded by the children started) and
/// has no first-bytes deadline (the child may start slowly on a busy
/// machine; its end closes when it exits).
pub async fn serve_local(
    mut connections: tokio::sync::mpsc::UnboundedReceiver<std::os::unix::net::UnixStream>,
    app: axum::Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) {
    let app = edge(app);
    let builder = connection_builder(&limits);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = connections.recv() => match next {
                Some(stream) => stream,
                None => break,
            },
        };
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serve a handed-in connection");
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "local connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(limits.graceful_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "local connections still open after the graceful shutdown timeout; closing them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn app() -> axum::Router {
        axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }))
    }

    async fn start(limits: ServeLimits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, app(), limits, shutdown.clone()));
        (address, shutdown)
    }

    /// Reads until the server closes the connection; what it sent.
    async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        let deadline = Duration::from_secs(30);
        // An error (reset) counts as closed too.
        let _ = tokio::time::timeout(deadline, stream.read_to_end(&mut all))
            .await
            .expect("the server closes the connection");
        all
    }

    fn short() -> ServeLimits {
        ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        }
    }

    #[tokio::test]
    async fn a_half_sent_request_is_closed_after_the_header_timeout() {
        let (address, _shutdown) = start(short()).await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let answer = read_to_close(&mut stream).await;
        assert!(!String::from_utf8_lossy(&answer).contains("pong"));
    }

    #[tokio::test]
    async fn a_silent_connection_and_a_partial_preface_are_closed() {
        let (address, _shutdown) = start(short()).await;
        let mut silent = TcpStream::connect(address).await.expect("connect");
        let mut partial = TcpStream::connect(address).await.expect("connect");
        partial.write_all(b"PRI * HTTP/2").await.expect("write");
        assert!(read_to_close(&mut silent).await.is_empty());
        assert!(read_to_close(&mut partial).await.is_empty());
    }

    #[tokio::test]
    async fn a_kept_alive_connection_may_idle_between_requests() {
        let (address, _shutdown) = start(short()).await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let request = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut answer = vec![0; 4096];
        for round in 0..2 {
            stream.write_all(request).await.expect("write");
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer))
                .await
                .expect("answered")
                .expect("read");
            assert!(
                String::from_utf8_lossy(&answer[..n]).contains("pong"),
                "round {round}"
            );
            // Idle for several header timeouts; the connection stays.
            let idle = tokio::time::sleep(short().header_read_timeout * 4);
            idle.await;
        }
    }

    #[tokio::test]
    async fn a_whole_request_is_answered() {
        let (address, _shutdown) = start(short()).await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let answer = read_to_close(&mut stream).await;
        assert!(String::from_utf8_lossy(&answer).ends_with("pong"));
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_others_served_once_one_ends() {
        let limits = ServeLimits {
            max_connections: Some(2),
            header_read_timeout: Duration::from_secs(60),
            ..ServeLimits::default()
        };
        let (address, _shutdown) = start(limits).await;
        let held: Vec<TcpStream> = futures_connect(address, 2).await;
        // Both permits are taken once the server accepted them; the third is
        // closed at once (an empty read), however long it waits.
        let mut third = TcpStream::connect(address).await.expect("connect");
        assert!(read_to_close(&mut third).await.is_empty());
        drop(held);
        // Permits come back as the server notices the closes.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let _ = stream
                .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            if String::from_utf8_lossy(&read_to_close(&mut stream).await).ends_with("pong") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no connection served after the cap freed up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens `n` connections and makes sure the server accepted each (it
    /// answers a request on it, keeping the connection open).
    async fn futures_connect(address: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
        let mut streams = Vec::new();
        for _ in 0..n {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            stream
                .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            let mut buf = vec![0u8; 1024];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).ends_with("pong") {
                let n = stream.read(&mut buf).await.expect("read");
                assert!(n > 0, "held connection closed early");
                got.extend_from_slice(&buf[..n]);
            }
            streams.push(stream);
        }
        streams
    }

    mod tls {
        use super::*;
        use rustls_pki_types::ServerName;

        struct Fixture {
            _dir: tempfile::TempDir,
            pki: agora_tls::DevPki,
            address: std::net::SocketAddr,
            _shutdown: CancellationToken,
        }

        async fn start_tls(require_client_cert: bool) -> Fixture {
            let dir = tempfile::tempdir().expect("temp dir");
            let pki = agora_tls::dev_pki(dir.path()).expect("pki");
            let server = pki
                .server_files(require_client_cert)
                .server()
                .expect("server tls")
                .expect("configured");
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("address");
            let shutdown = CancellationToken::new();
            tokio::spawn(serve_tls(
                listener,
                app(),
                short(),
                Some(server.acceptor()),
                shutdown.clone(),
            ));
            Fixture {
                _dir: dir,
                pki,
                address,
                _shutdown: shutdown,
            }
        }

        /// GET /ping over TLS with `client`; what came back before the close.
        async fn get(
            client: &agora_tls::ClientTls,
            address: std::net::SocketAddr,
        ) -> io::Result<String> {
            let connector = tokio_rustls::TlsConnector::from(client.http1_config());
            let tcp = TcpStream::connect(address).await?;
            let name = ServerName::try_from("127.0.0.1").expect("name");
            let mut stream = connector.connect(name, tcp).await?;
            stream
                .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await?;
            let mut all = Vec::new();
            tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut all))
                .await
                .expect("the server answers or closes")?;
            Ok(String::from_utf8_lossy(&all).into_owned())
        }

        #[tokio::test]
        async fn a_client_trusting_the_ca_is_answered_over_tls() {
            let fixture = start_tls(false).await;
            let client = agora_tls::ClientTls::from_ca(&fixture.pki.ca).expect("client");
            let answer = get(&client, fixture.address).await.expect("answered");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("pong"), "{answer}");
        }

        #[tokio::test]
        async fn a_client_of_another_ca_is_refused() {
            let fixture = start_tls(false).await;
            let other_dir = tempfile::tempdir().expect("temp dir");
            let other = agora_tls::dev_pki(other_dir.path()).expect("pki");
            let client = agora_tls::ClientTls::from_ca(&other.ca).expect("client");
            let error = get(&client, fixture.address).await.expect_err("refused");
            assert!(
                error.to_string().contains("invalid peer certificate"),
                "{error}"
            );
        }

        #[tokio::test]
        async fn plaintext_http_and_silence_on_a_tls_port_get_no_http_answer() {
            let fixture = start_tls(false).await;
            let mut plain = TcpStream::connect(fixture.address).await.expect("connect");
            plain
                .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            let answer = read_to_close(&mut plain).await;
            assert!(
                !String::from_utf8_lossy(&answer).contains("HTTP/"),
                "{answer:?}"
            );
            let mut silent = TcpStream::connect(fixture.address).await.expect("connect");
            assert!(read_to_close(&mut silent).await.is_empty());
        }

        #[tokio::test]
        async fn mutual_tls_refuses_a_client_without_a_certificate() {
            let fixture = start_tls(true).await;
            let anonymous = agora_tls::ClientTls::from_ca(&fixture.pki.ca).expect("client");
            // TLS 1.3 finishes the client's side first: the refusal shows on read.
            match get(&anonymous, fixture.address).await {
                Ok(answer) => assert!(!answer.contains("pong"), "{answer}"),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            let client = fixture
                .pki
                .client_files()
                .client()
                .expect("client")
                .expect("configured");
            let answer = get(&client, fixture.address).await.expect("answered");
            assert!(answer.ends_with("pong"), "{answer}");
        }
    }

    #[tokio::test]
    async fn handed_in_connections_are_served_until_shutdown() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(serve_local(
            receiver,
            app(),
            ServeLimits::default(),
            shutdown.clone(),
        ));
        for _ in 0..2 {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
            sender.send(ours).expect("server running");
            theirs.set_nonblocking(true).expect("nonblocking");
            let mut theirs = tokio::net::UnixStream::from_std(theirs).expect("tokio stream");
            theirs
                .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(30), theirs.read_to_end(&mut answer))
                .await
                .expect("answered before the deadline")
                .expect("read");
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("pong"), "{answer}");
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), served)
            .await
            .expect("the server ends on shutdown")
            .expect("no panic");
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
        assert!(
            sender.send(ours).is_err(),
            "nothing is served after shutdown"
        );
    }
}
