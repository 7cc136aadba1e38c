use std::os::unix::fs::PermissionsExt as _;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn fresh() -> (tempfile::TempDir, DevPki) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = dev_pki(dir.path()).expect("dev pki");
    (dir, pki)
}

/// Serves one TLS connection that echoes a line; the server's handshake result.
async fn echo_once(
    server: ServerTls,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let acceptor = server.acceptor();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.shutdown().await
    });
    (address, task)
}

async fn talk(
    client: &ClientTls,
    address: std::net::SocketAddr,
    name: &str,
) -> std::io::Result<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(client.http1_config());
    let tcp = TcpStream::connect(address).await?;
    let name = ServerName::try_from(name.to_string()).expect("name");
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"hello").await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    Ok(answer)
}

#[tokio::test]
async fn a_client_trusting_the_ca_completes_the_handshake_by_name_and_by_ip() {
    let (_dir, pki) = fresh();
    let server = pki
        .server_files(false)
        .server()
        .expect("server")
        .expect("tls");
    let client = pki.client_files().client().expect("client").expect("tls");
    for name in ["127.0.0.1", "localhost"] {
        let (address, task) = echo_once(server.clone()).await;
        let answer = talk(&client, address, name).await.expect("handshake");
        assert_eq!(answer, b"hello");
        task.await.expect("join").expect("server side");
    }
}

#[tokio::test]
async fn a_server_of_another_ca_or_another_name_is_refused() {
    let (_dir, pki) = fresh();
    let (_other_dir, other) = fresh();
    let server = pki
        .server_files(false)
        .server()
        .expect("server")
        .expect("tls");
    let stranger = ClientTls::from_ca(&other.ca).expect("client");
    let (address, _task) = echo_once(server.clone()).await;
    let error = talk(&stranger, address, "127.0.0.1")
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );
    let client = ClientTls::from_ca(&pki.ca).expect("client");
    let (address, _task) = echo_once(server).await;
    let error = talk(&client, address, "example.org")
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("not valid for name"), "{error}");
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_and_admits_one_with() {
    let (_dir, pki) = fresh();
    let server = pki
        .server_files(true)
        .server()
        .expect("server")
        .expect("tls");
    let anonymous = ClientTls::from_ca(&pki.ca).expect("client");
    let (address, task) = echo_once(server.clone()).await;
    // TLS 1.3: the client learns of the refusal when it reads.
    assert!(talk(&anonymous, address, "127.0.0.1").await.is_err());
    let refused = task.await.expect("join").expect_err("server refuses");
    assert!(refused.to_string().contains("certificate"), "{refused}");
    let client = pki.client_files().client().expect("client").expect("tls");
    let (address, task) = echo_once(server).await;
    assert_eq!(
        talk(&client, address, "127.0.0.1").await.expect("admitted"),
        b"hello"
    );
    task.await.expect("join").expect("server side");
}

#[test]
fn keys_are_private_and_a_second_call_keeps_the_files() {
    let (dir, pki) = fresh();
    for key in [&pki.server_key, &pki.client_key] {
        let mode = std::fs::metadata(key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
    let ca = std::fs::read(&pki.ca).expect("ca");
    let again = dev_pki(dir.path()).expect("again");
    assert_eq!(again, pki);
    assert_eq!(std::fs::read(&again.ca).expect("ca"), ca);
}

#[test]
fn bad_files_get_clear_errors() {
    let (dir, pki) = fresh();
    let (_other_dir, other) = fresh();
    let missing = TlsFiles {
        cert: Some(dir.path().join("nope.pem")),
        key: Some(pki.server_key.clone()),
        ..TlsFiles::default()
    };
    let error = missing.server().expect_err("missing");
    assert!(matches!(error, TlsError::Read { .. }), "{error}");
    assert!(error.to_string().contains("nope.pem"));

    let no_key = TlsFiles {
        cert: Some(pki.server_cert.clone()),
        key: Some(pki.server_cert.clone()),
        ..TlsFiles::default()
    };
    assert!(matches!(no_key.server(), Err(TlsError::NoKey { .. })));

    let no_cert = TlsFiles {
        cert: Some(pki.server_key.clone()),
        key: Some(pki.server_key.clone()),
        ..TlsFiles::default()
    };
    assert!(matches!(
        no_cert.server(),
        Err(TlsError::NoCertificate { .. })
    ));

    let mismatch = TlsFiles {
        cert: Some(pki.server_cert.clone()),
        key: Some(other.server_key.clone()),
        ..TlsFiles::default()
    };
    let error = mismatch.server().expect_err("mismatch");
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");

    let half = TlsFiles {
        cert: Some(pki.server_cert.clone()),
        ..TlsFiles::default()
    };
    assert!(matches!(half.server(), Err(TlsError::CertWithoutKey)));
    let half = TlsFiles {
        key: Some(pki.server_key.clone()),
        ..TlsFiles::default()
    };
    assert!(matches!(half.client(), Err(TlsError::KeyWithoutCert)));
    let mutual_without_ca = TlsFiles {
        require_client_cert: true,
        ..pki.server_files(false)
    };
    let mutual_without_ca = TlsFiles {
        ca: None,
        ..mutual_without_ca
    };
    assert!(matches!(
        mutual_without_ca.server(),
        Err(TlsError::RequireClientCertWithoutCa)
    ));
    assert!(TlsFiles::default().server().expect("plain").is_none());
    assert!(TlsFiles::default().client().expect("plain").is_none());
}

#[test]
fn libprocess_variables_name_the_client_files() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        }
    };
    assert_eq!(TlsFiles::from_libprocess_env(vars(&[])).expect("off"), None);
    assert_eq!(
        TlsFiles::from_libprocess_env(vars(&[("LIBPROCESS_SSL_ENABLED", "false")])).expect("off"),
        None
    );
    let files = TlsFiles::from_libprocess_env(vars(&[
        ("LIBPROCESS_SSL_ENABLED", "true"),
        ("LIBPROCESS_SSL_CA_FILE", "/ca.pem"),
        ("LIBPROCESS_SSL_CERT_FILE", "/c.pem"),
        ("LIBPROCESS_SSL_KEY_FILE", "/k.pem"),
    ]))
    .expect("valid")
    .expect("on");
    assert_eq!(files.ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
    assert_eq!(files.cert.as_deref(), Some(std::path::Path::new("/c.pem")));
    assert!(matches!(
        TlsFiles::from_libprocess_env(vars(&[("LIBPROCESS_SSL_ENABLED", "true")])),
        Err(TlsError::NoCa)
    ));
    assert!(matches!(
        TlsFiles::from_libprocess_env(vars(&[
            ("LIBPROCESS_SSL_ENABLED", "true"),
            ("LIBPROCESS_SSL_CA_FILE", "/ca.pem"),
            ("LIBPROCESS_SSL_CERT_FILE", "/c.pem"),
        ])),
        Err(TlsError::CertWithoutKey)
    ));
}
