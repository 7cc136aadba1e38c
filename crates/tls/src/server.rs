//! The server side.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;

use crate::TlsError;

/// A TLS server configuration: what `agora_net::serve` accepts with.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

/// Serves one certified key whatever name the client asks for.
#[derive(Debug)]
struct One(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for One {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl ServerTls {
    pub(crate) fn new(
        key: Arc<CertifiedKey>,
        client_ca: Option<Arc<RootCertStore>>,
    ) -> Result<Self, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(roots) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots, crate::provider())
                        .build()
                        .map_err(|e| rustls::Error::General(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(One(key)));
        config.alpn_protocols = vec![crate::ALPN_H2.to_vec(), crate::ALPN_HTTP1.to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// An acceptor for `agora_net::serve`.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}
