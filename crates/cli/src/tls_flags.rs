//! The TLS flags: `--tls-cert`, `--tls-key`, `--tls-ca`,
//! `--tls-require-client-cert` for the daemons, and `--tls-ca` (with an
//! optional client certificate) for the commands that talk to a master.

use std::path::PathBuf;

use anyhow::Context as _;

/// A master's or an agent's TLS: what it serves with and, for an agent,
/// what it verifies its master with.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ServerTlsArgs {
    /// Serve TLS with this certificate chain (PEM, leaf first); needs --tls-key. An agent also presents it to a master that requires client certificates [default: none: plain HTTP].
    #[arg(long, env = "AGORA_TLS_CERT", alias = "tls_cert", value_name = "PEM")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM) [default: none].
    #[arg(long, env = "AGORA_TLS_KEY", alias = "tls_key", value_name = "PEM")]
    pub(crate) tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that peers are verified against: the master an agent connects to, and clients' certificates under --tls-require-client-cert [default: none: an agent reaches its master over plain HTTP, and no client certificate is asked for].
    #[arg(long, env = "AGORA_TLS_CA", alias = "tls_ca", value_name = "PEM")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Mutual TLS: refuse clients without a certificate signed by --tls-ca.
    #[arg(
        long,
        env = "AGORA_TLS_REQUIRE_CLIENT_CERT",
        alias = "tls_require_client_cert"
    )]
    pub(crate) tls_require_client_cert: bool,
}

impl ServerTlsArgs {
    /// The files, checked to go together (no file is read yet).
    pub(crate) fn files(&self) -> anyhow::Result<agora_tls::TlsFiles> {
        let files = agora_tls::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
            require_client_cert: self.tls_require_client_cert,
        };
        files.check().context("invalid TLS flags")?;
        Ok(files)
    }

    /// The files, each read and checked, so that a bad one stops the daemon
    /// before it listens.
    pub(crate) fn load(&self) -> anyhow::Result<agora_tls::TlsFiles> {
        let files = self.files()?;
        files.server().context("cannot set up TLS")?;
        files.client().context("cannot set up TLS")?;
        Ok(files)
    }
}

/// How a command (`agora run`, `kill`, `teardown`) verifies the master.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ClientTlsArgs {
    /// Reach the master over TLS (https), verifying its certificate against these CA certificates (PEM) [default: none: plain HTTP].
    #[arg(long, env = "AGORA_TLS_CA", alias = "tls_ca", value_name = "PEM")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for a master that requires one (--tls-require-client-cert); needs --tls-key [default: none].
    #[arg(long, env = "AGORA_TLS_CERT", alias = "tls_cert", value_name = "PEM")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM) [default: none].
    #[arg(long, env = "AGORA_TLS_KEY", alias = "tls_key", value_name = "PEM")]
    pub(crate) tls_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The client configuration; `None` without --tls-ca (plaintext).
    pub(crate) fn client(&self) -> anyhow::Result<Option<agora_tls::ClientTls>> {
        let files = agora_tls::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
            require_client_cert: false,
        };
        if files.ca.is_none() && files.cert.is_some() {
            anyhow::bail!("--tls-cert needs --tls-ca, the CA that signed the master's certificate");
        }
        files.client().context("cannot set up TLS")
    }
}

/// `base` (`http://host:port` or `host:port`) with the scheme TLS calls for.
pub(crate) use agora_tls::with_scheme;

/// An error with its sources, outermost first: a TLS refusal (unknown CA,
/// a name the certificate is not for) is usually the innermost one.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_follows_tls() {
        assert_eq!(with_scheme("http://h:1", true), "https://h:1");
        assert_eq!(with_scheme("h:1", true), "https://h:1");
        assert_eq!(with_scheme("https://h:1", false), "http://h:1");
        assert_eq!(with_scheme("h:1", false), "http://h:1");
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let args = ServerTlsArgs {
            tls_cert: Some("cert.pem".into()),
            ..ServerTlsArgs::default()
        };
        let error = args.files().expect_err("refused");
        assert!(format!("{error:#}").contains("--tls-key"), "{error:#}");
        let args = ServerTlsArgs {
            tls_require_client_cert: true,
            ..ServerTlsArgs::default()
        };
        let error = args.files().expect_err("refused");
        assert!(format!("{error:#}").contains("--tls-ca"), "{error:#}");
    }
}
