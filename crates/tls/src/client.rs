//! The client side: tonic channels and reqwest clients over TLS.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::TlsError;

/// A TLS client configuration: trusts only the configured CA, checks the
/// server's name against its certificate, and presents a client
/// certificate where one is configured.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// ALPN `h2`: gRPC.
    grpc: Arc<rustls::ClientConfig>,
    /// ALPN `http/1.1`: reqwest's HTTP/1 clients.
    http1: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    pub(crate) fn new(
        roots: Arc<RootCertStore>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((certs, key)) => builder.with_client_auth_cert(certs, key)?,
            None => builder.with_no_client_auth(),
        };
        let mut grpc = config.clone();
        grpc.alpn_protocols = vec![crate::ALPN_H2.to_vec()];
        config.alpn_protocols = vec![crate::ALPN_HTTP1.to_vec()];
        Ok(Self {
            grpc: Arc::new(grpc),
            http1: Arc::new(config),
        })
    }

    /// From a CA bundle alone (no client certificate).
    pub fn from_ca(ca: &std::path::Path) -> Result<Self, TlsError> {
        Self::new(crate::files::load_roots(ca)?, None)
    }

    /// The configuration gRPC connections use (ALPN `h2`).
    pub fn grpc_config(&self) -> Arc<rustls::ClientConfig> {
        self.grpc.clone()
    }

    /// The configuration HTTP/1.1 clients use (ALPN `http/1.1`).
    pub fn http1_config(&self) -> Arc<rustls::ClientConfig> {
        self.http1.clone()
    }

    /// A connector for `tonic::transport::Endpoint::connect_with_connector`.
    pub fn grpc_connector(&self) -> GrpcConnector {
        GrpcConnector {
            tls: tokio_rustls::TlsConnector::from(self.grpc.clone()),
        }
    }

    /// Connects `endpoint` (an `https://host:port` address) over TLS.
    pub async fn connect(
        &self,
        endpoint: tonic::transport::Endpoint,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        endpoint.connect_with_connector(self.grpc_connector()).await
    }

    /// A channel that connects over TLS on first use.
    pub fn connect_lazy(&self, endpoint: tonic::transport::Endpoint) -> tonic::transport::Channel {
        endpoint.connect_with_connector_lazy(self.grpc_connector())
    }

    /// TLS over an open TCP connection for HTTP/1.1, verifying that the
    /// server's certificate is for `host` (a DNS name or an IP address;
    /// brackets around an IPv6 address are ignored).
    pub async fn connect_http1(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = ServerName::try_from(host.clone()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{host}' is not a valid TLS server name: {e}"),
            )
        })?;
        tokio_rustls::TlsConnector::from(self.http1.clone())
            .connect(name, tcp)
            .await
    }

    /// A reqwest client builder whose HTTPS uses this configuration (and
    /// nothing else: no system roots).
    pub fn reqwest_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().use_preconfigured_tls((*self.http1).clone())
    }
}

/// Connects a tonic endpoint: over TLS with `tls` when the address is
/// `https://`, in plaintext when it is `http://`. An `https://` address
/// without a TLS configuration is refused rather than tried in plaintext.
pub async fn connect_channel(
    endpoint: tonic::transport::Endpoint,
    tls: Option<&ClientTls>,
) -> Result<tonic::transport::Channel, ConnectError> {
    let https = endpoint.uri().scheme_str() == Some("https");
    match (https, tls) {
        (true, Some(tls)) => Ok(tls.connect(endpoint).await?),
        (true, None) => Err(ConnectError::NoCa(endpoint.uri().to_string())),
        (false, _) => Ok(endpoint.connect().await?),
    }
}

/// The TLS error in `error`'s chain of sources, if any: the peer's
/// certificate was refused (an unknown CA, a name it is not for), or the
/// peer refused this side (no client certificate, a handshake alert).
/// Such a failure is final for that configuration; retrying cannot help.
pub fn tls_failure<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // io::Error hides its payload from `source()`.
        if let Some(tls) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

/// Why [`connect_channel`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0} is an https address but no CA is configured to verify it (--tls-ca)")]
    NoCa(String),
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Opens TCP, then TLS with the URI's host as the server name (a DNS name
/// or an IP address, each checked against the certificate).
#[derive(Clone)]
pub struct GrpcConnector {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for GrpcConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcConnector").finish_non_exhaustive()
    }
}

type Connecting = Pin<
    Box<
        dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
    >,
>;

impl tower::Service<http::Uri> for GrpcConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "address without a host")
            })?;
            // `[::1]` in a URI; `::1` as a name.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("'{host}' is not a valid TLS server name: {e}"),
                )
            })?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            // As the servers do: replies go out in several writes.
            let _ = tcp.set_nodelay(true);
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
