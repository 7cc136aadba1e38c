//! A throw-away PKI for development and tests.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{TlsError, TlsFiles};

/// Where [`dev_pki`] put its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPki {
    /// The CA certificate: what clients pass as `--tls-ca`.
    pub ca: PathBuf,
    /// A certificate for this machine (`localhost`, `127.0.0.1`, `::1` and
    /// its host name), usable by servers and as a client certificate.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate (for mutual TLS), signed by the same CA.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl DevPki {
    /// What a master or agent serves with.
    pub fn server_files(&self, require_client_cert: bool) -> TlsFiles {
        TlsFiles {
            cert: Some(self.server_cert.clone()),
            key: Some(self.server_key.clone()),
            ca: Some(self.ca.clone()),
            require_client_cert,
        }
    }

    /// What a client (with a client certificate) connects with.
    pub fn client_files(&self) -> TlsFiles {
        TlsFiles {
            cert: Some(self.client_cert.clone()),
            key: Some(self.client_key.clone()),
            ca: Some(self.ca.clone()),
            require_client_cert: false,
        }
    }
}

/// The names the dev certificates are valid for.
fn local_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if !host.is_empty() && !names.contains(&host) {
        names.push(host);
    }
    names
}

/// Generates a CA, and a server and a client certificate signed by it, into
/// `dir` (created if missing): `ca.pem`, `server.pem`, `server-key.pem`,
/// `client.pem`, `client-key.pem`; keys are readable by their owner only.
/// Files already there from an earlier call are kept, so addresses and
/// `--tls-ca` paths stay valid across restarts. Never for production: the
/// CA's key is thrown away, so nothing else can ever be signed by it.
pub fn dev_pki(dir: &Path) -> Result<DevPki, TlsError> {
    let pki = DevPki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
    };
    let all = [
        &pki.ca,
        &pki.server_cert,
        &pki.server_key,
        &pki.client_cert,
        &pki.client_key,
    ];
    if all.iter().all(|path| path.is_file()) {
        return Ok(pki);
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Agora development CA (throw-away)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |common_name: &str, names: Vec<String>| -> Result<(String, String), TlsError> {
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf("agora", local_names())?;
    let (client_cert, client_key) = leaf("agora-client", vec!["agora-client".to_string()])?;

    write(&pki.ca, ca_cert.pem().as_bytes(), 0o644)?;
    write(&pki.server_cert, server_cert.as_bytes(), 0o644)?;
    write(&pki.server_key, server_key.as_bytes(), 0o600)?;
    write(&pki.client_cert, client_cert.as_bytes(), 0o644)?;
    write(&pki.client_key, client_key.as_bytes(), 0o600)?;
    Ok(pki)
}

/// Writes a file created with `mode` (a key is never readable by others,
/// not even for a moment).
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let fail = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    // A file left from an interrupted earlier call could have other modes.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}
