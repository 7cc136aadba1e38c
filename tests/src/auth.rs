//! Authentication in end-to-end tests: credentials files, a cluster whose
//! master and agents take extra flags (without waiting for agents, which
//! may be meant to be refused), and HTTP requests with Basic credentials
//! whose response headers are kept.

use std::path::{Path, PathBuf};

pub use crate::Answer;
use crate::{Cluster, send};

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

/// An HTTP/1.1 request with an optional `Authorization` value and JSON
/// body, on a fresh connection; the whole response with its headers.
pub fn http_with_auth(
    port: u16,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<Answer> {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    if let Some(authorization) = authorization {
        headers.push(("Authorization", authorization));
    }
    send(port, method, path, &headers, Some(body.unwrap_or("")))
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
