//! Where the master is: address parsing and the leader-detection seam.
//!
//! A master is named directly (`host:port` or `http://host:port`) or found
//! through ZooKeeper (`zk://h1:2181,h2:2181/agora`, [`ZkMasterDetector`]):
//! the SDK asks its detector for the current leader before every
//! (re-)subscription, so following a leader change needs no other change.

use std::fmt;
use std::str::FromStr;

use futures::future::BoxFuture;

use crate::Error;

/// Port the master listens on when an address names none.
pub const DEFAULT_MASTER_PORT: u16 = 5050;

/// Why a master address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing but whitespace.
    #[error("empty master address")]
    Empty,
    /// `zk://` addresses name a ZooKeeper election, not a master: use
    /// [`ZkMasterDetector`] (which `SchedulerClient::connect` does by itself).
    #[error("zk:// addresses name a ZooKeeper election, not a master; use a ZooKeeper detector")]
    ZooKeeperUnsupported,
    /// A scheme other than `http://` or `https://`.
    #[error("unsupported scheme {0:?} (expected host:port, http://host:port or https://host:port)")]
    UnsupportedScheme(String),
    /// A path, query or fragment after `host:port`.
    #[error("unexpected path {0:?} after host:port")]
    UnexpectedPath(String),
    /// The host part is empty or malformed.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// The port is not a number in 1..=65535.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
}

/// A parsed master address.
///
/// Accepted forms: `host:port`, `http://host:port`, `[::1]:port`, and `host`
/// alone (port [`DEFAULT_MASTER_PORT`]). A trailing `/` is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MasterAddress {
    /// A single master reached directly.
    Direct {
        /// Host name or IP address; IPv6 addresses keep their brackets.
        host: String,
        /// TCP port.
        port: u16,
    },
}

impl MasterAddress {
    /// Parses an address; see the type documentation for the accepted forms.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        if input.starts_with("zk://") {
            return Err(AddressError::ZooKeeperUnsupported);
        }
        let rest = match input.split_once("://") {
            // The scheme only names the transport; TLS itself is chosen by
            // the client's options (and an https address without them is
            // refused by `SchedulerClient::connect`).
            Some(("http" | "https", rest)) => rest,
            Some((scheme, _)) => return Err(AddressError::UnsupportedScheme(scheme.to_owned())),
            None => input,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if let Some(at) = rest.find(['/', '?', '#']) {
            return Err(AddressError::UnexpectedPath(rest[at..].to_owned()));
        }

        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (inside, after) = bracketed
                .split_once(']')
                .ok_or_else(|| AddressError::InvalidHost(rest.to_owned()))?;
            if inside.is_empty() || !inside.contains(':') {
                return Err(AddressError::InvalidHost(rest.to_owned()));
            }
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| AddressError::InvalidHost(rest.to_owned()))?,
                ),
            };
            (format!("[{inside}]"), port)
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (rest.to_owned(), None),
            }
        };

        let host_ok = !host.is_empty()
            && (host.starts_with('[')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
        if !host_ok {
            return Err(AddressError::InvalidHost(host));
        }
        let port = match port {
            None => DEFAULT_MASTER_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(AddressError::InvalidPort(p.to_owned())),
            },
        };
        Ok(Self::Direct { host, port })
    }

    /// The gRPC endpoint URI, e.g. `http://127.0.0.1:5050`.
    pub fn uri(&self) -> String {
        match self {
            Self::Direct { host, port } => format!("http://{host}:{port}"),
        }
    }
}

impl FromStr for MasterAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for MasterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Direct { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Finds the current leading master. `Display` names it in errors and logs
/// (e.g. `host:port` or `zk://...`).
///
/// The SDK calls [`detect`](Self::detect) before the first subscription and
/// before every re-subscription, so an implementation that follows leader
/// election (ZooKeeper) makes the framework follow the leader.
pub trait MasterDetector: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Returns the gRPC endpoint URI of the leader, e.g. `http://10.0.0.1:5050`.
    ///
    /// An error is treated as transient: the SDK retries with backoff.
    fn detect(&self) -> BoxFuture<'_, Result<String, Error>>;

    /// Resolves, with its endpoint URI, once a leader other than the one at
    /// `from` (an endpoint URI as [`detect`](Self::detect) returned it,
    /// `http://` or `https://`) is known. The SDK's pause between re-subscription attempts ends early on
    /// it: its backoff grew against a master that is gone, and the new one
    /// should hear from the framework as soon as it leads. A detector that
    /// cannot tell (a fixed address) never resolves, the default.
    fn leader_moved<'a>(&'a self, from: &'a str) -> BoxFuture<'a, String> {
        let _ = from;
        Box::pin(std::future::pending())
    }
}

/// The detector for a master named as `agora run --master` takes it: a
/// `zk://` URL follows the election ([`ZkMasterDetector`], which needs a
/// tokio runtime), anything else is parsed as a [`MasterAddress`].
pub fn master_detector(master: &str) -> Result<std::sync::Arc<dyn MasterDetector>, Error> {
    let master = master.trim();
    if master.starts_with("zk://") {
        Ok(std::sync::Arc::new(ZkMasterDetector::new(master)?))
    } else {
        Ok(std::sync::Arc::new(MasterAddress::parse(master)?))
    }
}

/// Follows the leading master elected in ZooKeeper (`zk://h1:2181,h2:2181/agora`).
pub struct ZkMasterDetector {
    url: String,
    detector: agora_coord::LeaderDetector,
}

impl ZkMasterDetector {
    /// Starts watching the election under the URL's path. Needs a tokio runtime.
    pub fn new(url: &str) -> Result<Self, Error> {
        let parsed = agora_coord::ZkUrl::parse(url).map_err(|e| Error::Detection(e.to_string()))?;
        Ok(Self {
            url: url.to_owned(),
            detector: agora_coord::LeaderDetector::zookeeper(
                &parsed,
                agora_coord::ZkOptions::default(),
            ),
        })
    }
}

impl fmt::Display for ZkMasterDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl fmt::Debug for ZkMasterDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkMasterDetector")
            .field("url", &self.url)
            .finish()
    }
}

impl MasterDetector for ZkMasterDetector {
    fn detect(&self) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(async move {
            // Short: the SDK retries with backoff until its own deadline.
            match self
                .detector
                .wait_for_leader(std::time::Duration::from_secs(2))
                .await
            {
                // `https://` for a leader that serves TLS (its record says so).
                Some(leader) => Ok(leader.url()),
                None => Err(Error::Detection(format!(
                    "no leading master elected in {}",
                    self.url
                ))),
            }
        })
    }

    fn leader_moved<'a>(&'a self, from: &'a str) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let mut leader = self.detector.leader();
            let moved = leader
                .wait_for(|now| {
                    now.as_ref().is_some_and(|record| {
                        record.endpoint() != agora_tls::without_scheme(from).trim_end_matches('/')
                    })
                })
                .await
                .ok()
                .and_then(|now| now.as_ref().map(agora_coord::MasterRecord::url));
            match moved {
                Some(url) => url,
                // The detector is gone with the client: nothing will move.
                None => std::future::pending().await,
            }
        })
    }
}

impl MasterDetector for MasterAddress {
    fn detect(&self) -> BoxFuture<'_, Result<String, Error>> {
        let uri = self.uri();
        Box::pin(async move { Ok(uri) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(host: &str, port: u16) -> MasterAddress {
        MasterAddress::Direct {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn parses_accepted_forms() {
        let cases = [
            ("127.0.0.1:5050", direct("127.0.0.1", 5050)),
            ("http://127.0.0.1:5050", direct("127.0.0.1", 5050)),
            ("https://127.0.0.1:5050", direct("127.0.0.1", 5050)),
            (
                "http://master.example:6060/",
                direct("master.example", 6060),
            ),
            ("  localhost:1 ", direct("localhost", 1)),
            ("localhost", direct("localhost", DEFAULT_MASTER_PORT)),
            ("[::1]:5050", direct("[::1]", 5050)),
            ("http://[fe80::1]", direct("[fe80::1]", DEFAULT_MASTER_PORT)),
        ];
        for (input, want) in cases {
            assert_eq!(MasterAddress::parse(input), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn rejects_malformed_addresses() {
        let cases = [
            ("", AddressError::Empty),
            ("   ", AddressError::Empty),
            ("zk://h1:2181/agora", AddressError::ZooKeeperUnsupported),
            (
                "ftp://h:5050",
                AddressError::UnsupportedScheme("ftp".into()),
            ),
            ("h:5050/api", AddressError::UnexpectedPath("/api".into())),
            ("h:0", AddressError::InvalidPort("0".into())),
            ("h:65536", AddressError::InvalidPort("65536".into())),
            ("h:+80", AddressError::InvalidPort("+80".into())),
            ("h:", AddressError::InvalidPort("".into())),
            (":5050", AddressError::InvalidHost("".into())),
            ("::1:5050", AddressError::InvalidHost("".into())),
            ("a b:5050", AddressError::InvalidHost("a b".into())),
            ("[::1", AddressError::InvalidHost("[::1".into())),
            ("[::1]5050", AddressError::InvalidHost("[::1]5050".into())),
        ];
        for (input, want) in cases {
            assert_eq!(MasterAddress::parse(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn renders_uri_and_display() {
        let addr = direct("10.0.0.1", 5050);
        assert_eq!(addr.uri(), "http://10.0.0.1:5050");
        assert_eq!(addr.to_string(), "10.0.0.1:5050");
        let v6: MasterAddress = "[::1]:7".parse().expect("valid address");
        assert_eq!(v6.uri(), "http://[::1]:7");
    }

    #[tokio::test]
    async fn direct_address_detects_itself() {
        let addr = direct("h", 1);
        assert_eq!(addr.detect().await.expect("static detection"), "http://h:1");
    }

    #[tokio::test]
    async fn master_detector_picks_by_form() {
        let direct = master_detector(" http://h:1/ ").expect("a direct address");
        assert_eq!(direct.detect().await.expect("static"), "http://h:1");
        let zk = master_detector("zk://127.0.0.1:1/agora").expect("a zookeeper url");
        assert_eq!(zk.to_string(), "zk://127.0.0.1:1/agora");
        assert!(matches!(
            master_detector("ftp://h:1"),
            Err(Error::Address(AddressError::UnsupportedScheme(_)))
        ));
        assert!(master_detector("zk://").is_err());
    }
}
