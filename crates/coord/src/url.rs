//! `zk://host:port,host:port/path` URLs, as given to `--zk` and `--master`.

use std::fmt;
use std::str::FromStr;

/// Client port used when a ZooKeeper host names none.
pub const DEFAULT_ZK_PORT: u16 = 2181;

/// Why a ZooKeeper URL could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZkUrlError {
    /// Nothing but whitespace.
    #[error("empty zookeeper url")]
    Empty,
    /// `file://` URLs (Mesos reads the real URL from a file) are not implemented.
    #[error("file:// zookeeper urls are not supported yet; pass zk://host:port/path directly")]
    FileUnsupported,
    /// `zk://user:pass@...` (digest authentication) is not implemented.
    #[error("credentials in zookeeper urls (user:pass@) are not supported yet")]
    CredentialsUnsupported,
    /// Anything not starting with `zk://`.
    #[error("zookeeper url must start with zk:// (got {0:?})")]
    UnsupportedScheme(String),
    /// No host before the path.
    #[error("zookeeper url names no host")]
    NoHosts,
    /// A host in the comma-separated list is empty or malformed.
    #[error("invalid zookeeper host {0:?}")]
    InvalidHost(String),
    /// A port that is not a number in 1..=65535.
    #[error("invalid zookeeper port {0:?}")]
    InvalidPort(String),
    /// No path after the hosts, or only `/`: masters need a dedicated znode.
    #[error("zookeeper url needs a path after the hosts, e.g. zk://host:2181/agora")]
    MissingPath,
    /// A path with an empty, `.` or `..` segment, a query, or characters outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid zookeeper path {0:?} (segments of [A-Za-z0-9._-], no empty, . or .. segments)"
    )]
    InvalidPath(String),
}

/// A parsed `zk://` URL: one or more `host:port` servers and the znode path
/// under which masters elect a leader (`<path>/json.info_<seq>`) and keep the
/// registry (`<path>/registry/<key>`).
///
/// Invariants: at least one host, each `host:port` with a port (defaulting to
/// [`DEFAULT_ZK_PORT`]); `path` starts with `/`, has no trailing `/`, and is
/// not the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZkUrl {
    hosts: Vec<String>,
    path: String,
}

impl ZkUrl {
    /// Parses `zk://h1:2181,h2:2181/agora`. A trailing `/` is ignored; a host
    /// without a port gets [`DEFAULT_ZK_PORT`]; IPv6 hosts use brackets.
    pub fn parse(input: &str) -> Result<Self, ZkUrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ZkUrlError::Empty);
        }
        let rest = match input.split_once("://") {
            Some(("zk", rest)) => rest,
            Some(("file", _)) => return Err(ZkUrlError::FileUnsupported),
            Some((scheme, _)) => return Err(ZkUrlError::UnsupportedScheme(scheme.to_owned())),
            None => return Err(ZkUrlError::UnsupportedScheme(String::new())),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(ZkUrlError::CredentialsUnsupported);
        }
        if authority.is_empty() {
            return Err(ZkUrlError::NoHosts);
        }
        let hosts = authority
            .split(',')
            .map(parse_host)
            .collect::<Result<Vec<_>, _>>()?;
        let path = validate_path(path)?;
        Ok(Self { hosts, path })
    }

    /// The servers as `host:port`, in the order given.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The servers as a ZooKeeper connect string (`h1:2181,h2:2181`, no path).
    pub fn connect_string(&self) -> String {
        self.hosts.join(",")
    }

    /// The znode path, e.g. `/agora`: starts with `/`, never ends with one.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The same servers with another path (validated like [`parse`](Self::parse)).
    pub fn with_path(&self, path: &str) -> Result<Self, ZkUrlError> {
        Ok(Self {
            hosts: self.hosts.clone(),
            path: validate_path(path)?,
        })
    }
}

fn parse_host(host: &str) -> Result<String, ZkUrlError> {
    let invalid = || ZkUrlError::InvalidHost(host.to_owned());
    let (name, port) = if let Some(bracketed) = host.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']').ok_or_else(invalid)?;
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(invalid());
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
        };
        (format!("[{inside}]"), port)
    } else {
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !ok {
            return Err(invalid());
        }
        (name.to_owned(), port)
    };
    let port = match port {
        None => DEFAULT_ZK_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(ZkUrlError::InvalidPort(p.to_owned())),
        },
    };
    Ok(format!("{name}:{port}"))
}

fn validate_path(path: &str) -> Result<String, ZkUrlError> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(ZkUrlError::MissingPath);
    }
    let segments_ok = trimmed.starts_with('/')
        && trimmed[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        });
    if !segments_ok {
        return Err(ZkUrlError::InvalidPath(path.to_owned()));
    }
    Ok(trimmed.to_owned())
}

impl FromStr for ZkUrl {
    type Err = ZkUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ZkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zk://{}{}", self.connect_string(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_path() {
        let url = ZkUrl::parse("zk://h1:2181,h2:2182/agora").expect("valid url");
        assert_eq!(url.hosts(), ["h1:2181", "h2:2182"]);
        assert_eq!(url.connect_string(), "h1:2181,h2:2182");
        assert_eq!(url.path(), "/agora");
        assert_eq!(url.to_string(), "zk://h1:2181,h2:2182/agora");

        let url: ZkUrl = " zk://10.0.0.1,[::1]:3000/a/b-c_d.e/ "
            .parse()
            .expect("valid url");
        assert_eq!(url.hosts(), ["10.0.0.1:2181", "[::1]:3000"]);
        assert_eq!(url.path(), "/a/b-c_d.e");
        assert_eq!(url.with_path("/x").expect("valid path").path(), "/x");
    }

    #[test]
    fn rejects_malformed_urls() {
        let cases = [
            ("", ZkUrlError::Empty),
            ("file:///etc/zk", ZkUrlError::FileUnsupported),
            ("zk://u:p@h:2181/a", ZkUrlError::CredentialsUnsupported),
            ("http://h/a", ZkUrlError::UnsupportedScheme("http".into())),
            ("h:2181/a", ZkUrlError::UnsupportedScheme(String::new())),
            ("zk:///a", ZkUrlError::NoHosts),
            ("zk://h1,,h2/a", ZkUrlError::InvalidHost(String::new())),
            ("zk://h 1/a", ZkUrlError::InvalidHost("h 1".into())),
            ("zk://[::1/a", ZkUrlError::InvalidHost("[::1".into())),
            ("zk://h:0/a", ZkUrlError::InvalidPort("0".into())),
            ("zk://h:99999/a", ZkUrlError::InvalidPort("99999".into())),
            ("zk://h:/a", ZkUrlError::InvalidPort(String::new())),
            ("zk://h:2181", ZkUrlError::MissingPath),
            ("zk://h:2181/", ZkUrlError::MissingPath),
            ("zk://h/a//b", ZkUrlError::InvalidPath("/a//b".into())),
            ("zk://h/a/../b", ZkUrlError::InvalidPath("/a/../b".into())),
            ("zk://h/a?x=1", ZkUrlError::InvalidPath("/a?x=1".into())),
        ];
        for (input, want) in cases {
            assert_eq!(ZkUrl::parse(input), Err(want), "input {input:?}");
        }
        let message = ZkUrl::parse("file:///x").expect_err("refused").to_string();
        assert!(message.contains("not supported yet"), "{message}");
    }
}
