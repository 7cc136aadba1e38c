//! Authentication in end-to-end tests: credentials files, a cluster whose
//! master and agents take extra flags (without waiting for agents, which
//! may be meant to be refused), and HTTP requests with Basic credentials
//! whose response headers are kept.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::Cluster;

/// Writes Mesos' credentials file (`{"credentials":[...]}`) to `path`.
pub fn write_credentials(path: &Path, credentials: &[(&str, &str)]) -> PathBuf {
    let list: Vec<serde_json::Value> = credentials
        .iter()
        .map(|(principal, secret)| serde_json::json!({"principal": principal, "secret": secret}))
        .collect();
    std::fs::write(path, serde_json::json!({ "credentials": list }).to_string())
        .expect("credentials file can be written");
    path.to_path_buf()
}

/// Writes one credential (`{"principal":..,"secret":..}`, an agent's
/// `--credential`) to `path`.
pub fn write_credential(path: &Path, principal: &str, secret: &str) -> PathBuf {
    std::fs::write(
        path,
        serde_json::json!({"principal": principal, "secret": secret}).to_string(),
    )
    .expect("credential file can be written");
    path.to_path_buf()
}

/// Starts a master with `master_args` (which may name files `prepare`
/// writes into the cluster's directory first) and waits for its `/health`
/// only: no agent is started.
pub fn start_master_only(prepare: impl FnOnce(&Path) -> Vec<String>) -> anyhow::Result<Cluster> {
    Cluster::start_with_master(0, "", prepare)
}

/// The `Authorization` header value for HTTP Basic.
pub fn basic(principal: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64(format!("{principal}:{secret}").as_bytes())
    )
}

/// Standard base64 with padding (the tests' only use: Basic credentials).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A response: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 request with an optional `Authorization` value and JSON
/// body, on a fresh connection; the whole response with its headers.
pub fn http_with_auth(
    port: u16,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<Answer> {
    let body = body.unwrap_or("");
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("no http header end")?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no status line")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// A JSON GET with Basic credentials; an error unless it answers 200.
pub fn get_json_as(
    port: u16,
    path: &str,
    authorization: &str,
) -> anyhow::Result<serde_json::Value> {
    let answer = http_with_auth(port, "GET", path, Some(authorization), None)?;
    if answer.status != 200 {
        anyhow::bail!("GET {path} answered {}: {}", answer.status, answer.body);
    }
    Ok(serde_json::from_str(&answer.body)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_known_values() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"ops:pw"), "b3BzOnB3");
    }
}
