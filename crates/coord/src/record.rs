//! The master's advertisement in ZooKeeper, in the JSON shape Mesos-aware
//! tools read from `json.info_<seq>` znodes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Why a master record could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid master record: {0}")]
pub struct RecordError(#[from] serde_json::Error);

/// Where a master listens, as in Mesos' `MasterInfo.address`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MasterAddressInfo {
    /// Host name (may be empty when unknown).
    #[serde(default)]
    pub hostname: String,
    /// IP address as text, e.g. `10.0.0.1` or `::1`.
    pub ip: String,
    /// Port (gRPC and HTTP share it).
    pub port: u16,
    /// Agora's addition: `https` when the master serves TLS. Absent (as in
    /// Mesos' `Address`, which has no such field and whose readers skip
    /// unknown keys) means `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

/// A master capability, as in Mesos' `MasterInfo.capabilities[].type`
/// (e.g. `AGENT_UPDATE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MasterCapability {
    /// Capability name.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A master's identity and address, stored as JSON in its election znode.
///
/// Field names and meanings follow Mesos' `MasterInfo` JSON so that
/// Mesos-aware tools (pymesos, mesos-dns, ...) can find an Agora leader:
/// `address.ip`/`address.port` are authoritative; `ip` is Mesos' legacy
/// IPv4 as a `u32` in network byte order (0 for IPv6) and `port` repeats
/// `address.port`. Unknown fields are ignored when decoding, so records
/// written by newer masters still decode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MasterRecord {
    /// The master's unique id (a UUID per master process).
    pub id: String,
    /// Legacy IPv4 address, network byte order (Mesos MESOS-1201); 0 for IPv6.
    #[serde(default)]
    pub ip: u32,
    /// Legacy port, equal to `address.port`.
    #[serde(default)]
    pub port: u32,
    /// libprocess-style pid, `master@<ip>:<port>`.
    #[serde(default)]
    pub pid: String,
    /// Host name the master advertises.
    #[serde(default)]
    pub hostname: String,
    /// Agora version of the master, e.g. `0.1.0`.
    #[serde(default)]
    pub version: String,
    /// Where the master listens.
    pub address: MasterAddressInfo,
    /// Capabilities the master announces (empty today).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<MasterCapability>,
}

impl MasterRecord {
    /// A record for a master `id` listening on `ip:port`, advertising
    /// `hostname` and `version`; fills in `pid` and the legacy fields.
    pub fn new(
        id: impl Into<String>,
        hostname: impl Into<String>,
        ip: IpAddr,
        port: u16,
        version: impl Into<String>,
    ) -> Self {
        let hostname = hostname.into();
        let legacy_ip = match ip {
            // Network byte order: the address octets in memory order.
            IpAddr::V4(v4) => u32::from_ne_bytes(v4.octets()),
            IpAddr::V6(_) => 0,
        };
        Self {
            id: id.into(),
            ip: legacy_ip,
            port: u32::from(port),
            pid: format!("master@{}", socket_text(&ip.to_string(), port)),
            hostname: hostname.clone(),
            version: version.into(),
            address: MasterAddressInfo {
                hostname,
                ip: ip.to_string(),
                port,
                scheme: None,
            },
            capabilities: Vec::new(),
        }
    }

    /// The record of a master that serves TLS (`https`) or not.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.address.scheme = tls.then(|| "https".to_string());
        self
    }

    /// Whether the master serves TLS: reach it at `https://` only.
    pub fn is_https(&self) -> bool {
        self.address.scheme.as_deref() == Some("https")
    }

    /// `http://ip:port` or `https://ip:port`, as the master serves.
    pub fn url(&self) -> String {
        let scheme = if self.is_https() { "https" } else { "http" };
        format!("{scheme}://{}", self.endpoint())
    }

    /// `ip:port` of the master (`[v6]:port` for IPv6), for dialing it.
    pub fn endpoint(&self) -> String {
        socket_text(&self.address.ip, self.address.port)
    }

    /// The JSON stored in the election znode.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes the JSON of an election znode.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RecordError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

fn socket_text(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_mesos_shape() {
        let record = MasterRecord::new(
            "m-1",
            "master1",
            "10.0.0.1".parse().expect("ip"),
            5050,
            "0.1.0",
        );
        let json: serde_json::Value =
            serde_json::from_slice(&record.to_json()).expect("valid json");
        assert_eq!(
            json,
            serde_json::json!({
                "id": "m-1",
                "ip": 16_777_226u32,
                "port": 5050,
                "pid": "master@10.0.0.1:5050",
                "hostname": "master1",
                "version": "0.1.0",
                "address": {"hostname": "master1", "ip": "10.0.0.1", "port": 5050},
            })
        );
        assert_eq!(record.endpoint(), "10.0.0.1:5050");
        assert_eq!(
            MasterRecord::from_json(&record.to_json()).expect("round trip"),
            record
        );
    }

    #[test]
    fn ipv6_has_brackets_and_no_legacy_ip() {
        let record = MasterRecord::new("m", "h", "::1".parse().expect("ip"), 7, "v");
        assert_eq!(record.ip, 0);
        assert_eq!(record.pid, "master@[::1]:7");
        assert_eq!(record.endpoint(), "[::1]:7");
    }

    #[test]
    fn decodes_mesos_records_and_rejects_garbage() {
        // As written by a Mesos 1.x master (extra fields are ignored).
        let mesos = br#"{"address":{"hostname":"m","ip":"10.0.0.2","port":5050},
            "capabilities":[{"type":"AGENT_UPDATE"}],"domain":{},"hostname":"m",
            "id":"c0ffee","ip":33554442,"pid":"master@10.0.0.2:5050","port":5050,"version":"1.11.0"}"#;
        let record = MasterRecord::from_json(mesos).expect("mesos record");
        assert_eq!(record.endpoint(), "10.0.0.2:5050");
        assert_eq!(record.capabilities[0].kind, "AGENT_UPDATE");

        for bad in [&b""[..], b"{", b"{\"id\":\"x\"}", b"[1,2]"] {
            assert!(MasterRecord::from_json(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_scheme_is_carried_and_absent_means_http() {
        let plain = MasterRecord::new("m", "h", "10.0.0.1".parse().expect("ip"), 5050, "0");
        assert!(!String::from_utf8_lossy(&plain.to_json()).contains("scheme"));
        assert_eq!(plain.url(), "http://10.0.0.1:5050");
        let tls = plain.clone().with_tls(true);
        let decoded = MasterRecord::from_json(&tls.to_json()).expect("decodes");
        assert!(decoded.is_https());
        assert_eq!(decoded.url(), "https://10.0.0.1:5050");
        // A Mesos master's record (no scheme) is plain http.
        let mesos = br#"{"id":"x","address":{"ip":"10.0.0.2","port":5050}}"#;
        let decoded = MasterRecord::from_json(mesos).expect("decodes");
        assert_eq!(decoded.url(), "http://10.0.0.2:5050");
    }
}
