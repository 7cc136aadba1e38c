//! PEM files: certificates, keys, CA bundles.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ClientTls, ServerTls, TlsError};

/// The TLS files of a daemon or client, as its flags name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// This side's certificate chain (leaf first), PEM.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`, PEM.
    pub key: Option<PathBuf>,
    /// The CA certificates peers are verified against, PEM.
    pub ca: Option<PathBuf>,
    /// A server refuses clients without a certificate signed by `ca`.
    pub require_client_cert: bool,
}

impl TlsFiles {
    /// Whether this side serves TLS (a certificate and key are given).
    pub fn serves_tls(&self) -> bool {
        self.cert.is_some() || self.key.is_some()
    }

    /// Checks that the flags go together, without reading any file.
    pub fn check(&self) -> Result<(), TlsError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(TlsError::CertWithoutKey),
            (None, Some(_)) => return Err(TlsError::KeyWithoutCert),
            _ => {}
        }
        if self.require_client_cert && self.ca.is_none() {
            return Err(TlsError::RequireClientCertWithoutCa);
        }
        Ok(())
    }

    /// A client's files from Mesos' libprocess variables, read with `get`
    /// (the process environment in production): `None` unless
    /// `LIBPROCESS_SSL_ENABLED` is true. `LIBPROCESS_SSL_CA_FILE` is the CA
    /// (required: the server is always verified, whatever
    /// `LIBPROCESS_SSL_VERIFY_SERVER_CERT` says), `LIBPROCESS_SSL_CERT_FILE`
    /// and `LIBPROCESS_SSL_KEY_FILE` a client certificate for servers that
    /// require one.
    pub fn from_libprocess_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TlsError> {
        let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let enabled = set("LIBPROCESS_SSL_ENABLED").is_some_and(|v| {
            matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
        });
        if !enabled {
            return Ok(None);
        }
        let files = Self {
            cert: set("LIBPROCESS_SSL_CERT_FILE").map(PathBuf::from),
            key: set("LIBPROCESS_SSL_KEY_FILE").map(PathBuf::from),
            ca: set("LIBPROCESS_SSL_CA_FILE").map(PathBuf::from),
            require_client_cert: false,
        };
        if files.ca.is_none() {
            return Err(TlsError::NoCa);
        }
        files.check()?;
        Ok(Some(files))
    }

    /// The server side: `None` when no certificate is configured.
    pub fn server(&self) -> Result<Option<ServerTls>, TlsError> {
        self.check()?;
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        let certified = load_certified_key(cert, key)?;
        let client_ca = match &self.ca {
            Some(ca) if self.require_client_cert => Some(load_roots(ca)?),
            _ => None,
        };
        ServerTls::new(certified, client_ca).map(Some)
    }

    /// The client side: `None` when no CA is configured (plaintext only).
    /// With a certificate and key, they are presented to servers that ask
    /// (mutual TLS).
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        self.check()?;
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let roots = load_roots(ca)?;
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                load_certified_key(cert, key)?;
                Some((load_certs(cert)?, load_key(key)?))
            }
            _ => None,
        };
        ClientTls::new(roots, identity).map(Some)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file; at least one.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })
}

/// A certificate chain with its key, checked to belong together.
pub(crate) fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certs(cert)?;
    let der = load_key(key)?;
    let signing = crate::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::BadKey {
            key: key.to_path_buf(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            });
        }
        // The provider cannot tell (an unusual key type): the handshake will.
        Err(_) => {}
    }
    Ok(Arc::new(certified))
}

/// The CA certificates of a PEM bundle as a root store.
pub(crate) fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Ca {
            path: path.to_path_buf(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}
