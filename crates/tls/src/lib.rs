//! TLS for every Agora port and every client, with rustls and its `ring`
//! provider only (no OpenSSL, no aws-lc).
//!
//! - [`TlsFiles`]: the PEM files an operator names with `--tls-cert`,
//!   `--tls-key`, `--tls-ca` and `--tls-require-client-cert`, loaded with
//!   errors that say which file is wrong and why.
//! - [`ServerTls`]: a rustls server configuration (ALPN `h2` and
//!   `http/1.1`; client certificates verified against the CA when
//!   required) for `agora_net::serve`.
//! - [`ClientTls`]: a rustls client configuration that trusts only the CA it
//!   is given and checks the server's name (DNS name or IP address) against
//!   its certificate, with an optional client identity for mutual TLS; it
//!   builds tonic channels ([`ClientTls::connect`]) and reqwest clients
//!   ([`ClientTls::reqwest_builder`]).
//! - [`dev_pki`]: a throw-away CA with a server and a client certificate for
//!   this machine, for `agora dev --tls` and tests.
//!
//! *Invariant:* a client built here never falls back to plaintext or to the
//! system's trust store: an `https` address is reached over TLS verified
//! against the configured CA, or not at all.

mod client;
mod dev;
mod files;
mod server;

pub use client::{ClientTls, ConnectError, GrpcConnector, connect_channel, tls_failure};
pub use dev::{DevPki, dev_pki};
pub use files::TlsFiles;
pub use server::ServerTls;

pub use tokio_rustls::TlsAcceptor;

use std::path::PathBuf;
use std::sync::Arc;

/// What can go wrong setting TLS up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path} holds no certificate (expected a PEM 'CERTIFICATE' block)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no private key (expected a PEM PKCS#8, RSA or EC 'PRIVATE KEY' block)")]
    NoKey { path: PathBuf },
    #[error("the private key in {key} is not usable: {message}")]
    BadKey { key: PathBuf, message: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("a TLS certificate needs its key: give --tls-cert and --tls-key together")]
    CertWithoutKey,
    #[error("a TLS key needs its certificate: give --tls-cert and --tls-key together")]
    KeyWithoutCert,
    #[error(
        "--tls-require-client-cert needs --tls-ca, the CA client certificates are checked against"
    )]
    RequireClientCertWithoutCa,
    #[error("a TLS client needs --tls-ca, the CA that signed the server's certificate")]
    NoCa,
    #[error("{path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// `uri` without its `http://` or `https://` scheme (`host:port`).
pub fn without_scheme(uri: &str) -> &str {
    uri.strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .unwrap_or(uri)
}

/// `base` (`http://host:port`, `https://host:port` or `host:port`) with the
/// scheme TLS calls for, whatever scheme it named.
pub fn with_scheme(base: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", without_scheme(base))
}

/// The one crypto provider every configuration here uses: rustls' `ring`.
/// Explicit per configuration, so no process-wide default is needed.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN protocol names.
pub(crate) const ALPN_H2: &[u8] = b"h2";
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";

#[cfg(test)]
mod tests;
