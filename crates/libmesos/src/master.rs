//! Master strings as libmesos accepts them, turned into a detector.
//!
//! - `host:port` (and libprocess' `master@host:port`): one master;
//! - `zk://h1:2181,h2:2181/path`: the leader elected under `path`, followed
//!   across failovers (Agora's masters publish Mesos' `json.info_` records);
//! - `file:///path`: a file holding one of the two above (Mesos' way of
//!   keeping credentials and hosts out of command lines).

use std::sync::Arc;

use agora_scheduler::{MasterAddress, MasterDetector, ZkMasterDetector};

/// Why a master string is unusable.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// Not a form libmesos accepts.
    #[error("invalid master {master:?}: {reason}")]
    Invalid {
        /// The string as given.
        master: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `file://` master whose file cannot be read.
    #[error("cannot read the master from {path}: {source}")]
    File {
        /// The file named.
        path: String,
        /// The read error.
        source: std::io::Error,
    },
}

/// What a master string names, before any I/O beyond reading a `file://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterSpec {
    /// One master, `host:port`.
    Direct(MasterAddress),
    /// A ZooKeeper election (`zk://...`).
    ZooKeeper(String),
}

/// Parses a master string; `file://` is read with `read_file` (one level:
/// the file must name a master, not another file).
pub fn parse(
    master: &str,
    read_file: impl Fn(&str) -> std::io::Result<String>,
) -> Result<MasterSpec, MasterError> {
    let trimmed = master.trim();
    if let Some(path) = trimmed.strip_prefix("file://") {
        let contents = read_file(path).map_err(|source| MasterError::File {
            path: path.to_owned(),
            source,
        })?;
        let inner = contents.trim();
        if inner.starts_with("file://") {
            return Err(MasterError::Invalid {
                master: master.to_owned(),
                reason: format!("{path} names another file"),
            });
        }
        return parse_direct_or_zk(inner);
    }
    parse_direct_or_zk(trimmed)
}

fn parse_direct_or_zk(master: &str) -> Result<MasterSpec, MasterError> {
    if master.starts_with("zk://") {
        zk_check(master)?;
        return Ok(MasterSpec::ZooKeeper(master.to_owned()));
    }
    // libprocess names a master `master@host:port`.
    let address = master.strip_prefix("master@").unwrap_or(master);
    MasterAddress::parse(address)
        .map(MasterSpec::Direct)
        .map_err(|e| MasterError::Invalid {
            master: master.to_owned(),
            reason: e.to_string(),
        })
}

/// A `zk://` URL needs hosts and a path.
fn zk_check(master: &str) -> Result<(), MasterError> {
    let rest = &master["zk://".len()..];
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    if hosts.is_empty() || path.is_empty() {
        return Err(MasterError::Invalid {
            master: master.to_owned(),
            reason: "expected zk://host:port[,host:port...]/path".into(),
        });
    }
    Ok(())
}

/// The detector the SDK asks before every (re-)subscription. Needs a tokio
/// runtime for ZooKeeper.
pub fn detector(spec: &MasterSpec) -> Result<Arc<dyn MasterDetector>, MasterError> {
    Ok(match spec {
        MasterSpec::Direct(address) => Arc::new(address.clone()),
        MasterSpec::ZooKeeper(url) => {
            Arc::new(
                ZkMasterDetector::new(url).map_err(|e| MasterError::Invalid {
                    master: url.clone(),
                    reason: e.to_string(),
                })?,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_file(path: &str) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{path} not found"),
        ))
    }

    fn direct(host: &str, port: u16) -> MasterSpec {
        MasterSpec::Direct(MasterAddress::Direct {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn accepts_libmesos_forms() {
        assert_eq!(
            parse("127.0.0.1:5050", no_file).unwrap(),
            direct("127.0.0.1", 5050)
        );
        assert_eq!(
            parse(" master@10.0.0.1:5051 ", no_file).unwrap(),
            direct("10.0.0.1", 5051)
        );
        assert_eq!(
            parse("zk://127.0.0.1:2181,127.0.0.2:2181/agora", no_file).unwrap(),
            MasterSpec::ZooKeeper("zk://127.0.0.1:2181,127.0.0.2:2181/agora".into())
        );
    }

    #[test]
    fn file_holds_either_form() {
        let read = |path: &str| -> std::io::Result<String> {
            match path {
                "/etc/mesos/zk" => Ok("zk://127.0.0.1:2181/agora\n".into()),
                "/etc/mesos/master" => Ok("127.0.0.1:5050".into()),
                "/etc/mesos/loop" => Ok("file:///etc/mesos/loop".into()),
                _ => no_file(path),
            }
        };
        assert_eq!(
            parse("file:///etc/mesos/zk", read).unwrap(),
            MasterSpec::ZooKeeper("zk://127.0.0.1:2181/agora".into())
        );
        assert_eq!(
            parse("file:///etc/mesos/master", read).unwrap(),
            direct("127.0.0.1", 5050)
        );
        let err = parse("file:///etc/mesos/loop", read).unwrap_err();
        assert!(err.to_string().contains("another file"), "{err}");
        let err = parse("file:///nope", read).unwrap_err();
        assert!(err.to_string().contains("/nope"), "{err}");
    }

    #[test]
    fn refuses_garbage_with_the_reason() {
        for bad in [
            "",
            "zk://",
            "zk://127.0.0.1:2181",
            "host:99999",
            "ftp://h:1",
        ] {
            let err = parse(bad, no_file).expect_err(bad);
            assert!(err.to_string().contains("invalid master"), "{bad}: {err}");
        }
    }
}
