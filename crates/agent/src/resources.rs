//! What the agent advertises: resources detected on the machine, overridden
//! by `--resources`, and `--attributes`.

use std::collections::BTreeSet;
use std::path::Path;

use agora_core::{Resources, ResourcesError};
use agora_proto::v1 as pb;

#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    // The detail is the source: `{:#}` prints "invalid --resources: <why>" once.
    #[error("invalid --resources")]
    Resources(#[from] ResourcesError),
    #[error("invalid --attributes entry '{0}': expected name:value")]
    Attribute(String),
}

/// Mesos' defaults: cpus = cores; mem = total - 1 GiB when total >= 2 GiB,
/// else half; disk = the work dir's file system - 5 GiB when >= 10 GiB, else
/// half; ports 31000-32000.
pub fn detect(work_dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let mem_mb = total_memory_mb().unwrap_or(1024.0);
    let mem = if mem_mb >= 2048.0 {
        mem_mb - 1024.0
    } else {
        mem_mb / 2.0
    };
    let disk_mb = disk_mb(work_dir).unwrap_or(10_240.0);
    let disk = if disk_mb >= 10_240.0 {
        disk_mb - 5120.0
    } else {
        disk_mb / 2.0
    };
    let text = format!(
        "cpus:{cpus};mem:{};disk:{};ports:[31000-32000]",
        mem.floor(),
        disk.floor()
    );
    Resources::parse(&text).unwrap_or_default()
}

fn total_memory_mb() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn disk_mb(path: &Path) -> Option<f64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_blocks as f64 * stat.f_frsize as f64 / (1024.0 * 1024.0))
}

/// The resources to advertise: `--resources` wins for every name it gives;
/// detected values fill in the rest.
pub fn advertised(flag: Option<&str>, work_dir: &Path) -> Result<Resources, AdvertiseError> {
    let (given, given_names) = match flag {
        Some(text) => (Resources::parse_input(text)?, names_given(text)),
        None => (Resources::new(), BTreeSet::new()),
    };
    let detected = detect(work_dir);
    let mut out = given;
    for name in detected.names() {
        if given_names.contains(name) {
            continue;
        }
        if let Ok(part) = Resources::parse(&only(&detected, name)) {
            out.add(&part);
        }
    }
    Ok(out)
}

/// Every name a valid `--resources` text gives, zero amounts included:
/// `cpus:0` means no cpus, not "detect them" (`Resources` itself keeps no
/// empty entries, so the names come from the text).
fn names_given(text: &str) -> BTreeSet<&str> {
    text.split(';')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .filter_map(|item| item.split([':', '(']).next())
        .map(str::trim)
        .collect()
}

fn only(resources: &Resources, name: &str) -> String {
    resources
        .to_string()
        .split(';')
        .filter(|item| item.split([':', '(']).next() == Some(name))
        .collect::<Vec<_>>()
        .join(";")
}

/// Parses `rack:r1;zone:a;level:3` into attributes: numbers become scalars,
/// everything else text.
pub fn parse_attributes(text: &str) -> Result<Vec<pb::Attribute>, AdvertiseError> {
    let mut out = Vec::new();
    for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once(':')
            .ok_or_else(|| AdvertiseError::Attribute(item.to_string()))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || value.is_empty() {
            return Err(AdvertiseError::Attribute(item.to_string()));
        }
        let attribute = match value.parse::<f64>() {
            Ok(number) if number.is_finite() => pb::Attribute {
                name: name.to_string(),
                r#type: Some(pb::value::Type::Scalar as i32),
                scalar: Some(pb::value::Scalar { value: number }),
                ..Default::default()
            },
            _ => pb::Attribute {
                name: name.to_string(),
                r#type: Some(pb::value::Type::Text as i32),
                text: Some(pb::value::Text {
                    value: value.to_string(),
                }),
                ..Default::default()
            },
        };
        out.push(attribute);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_resources_win_and_detection_fills_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = advertised(Some("cpus:2;mem:1024"), dir.path()).expect("valid");
        assert_eq!(r.scalar_value("cpus"), 2.0);
        assert_eq!(r.scalar_value("mem"), 1024.0);
        assert!(r.scalar_value("disk") > 0.0);
        assert!(r.to_string().contains("ports:[31000-32000]"));
        assert!(advertised(Some("cpus:two"), dir.path()).is_err());
    }

    #[test]
    fn a_zero_given_is_zero_not_detected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = advertised(Some("cpus:0;mem:512"), dir.path()).expect("valid");
        assert_eq!(r.scalar_value("cpus"), 0.0, "{r}");
        assert_eq!(r.scalar_value("mem"), 512.0);
        assert!(
            r.scalar_value("disk") > 0.0,
            "detection fills the rest: {r}"
        );
        let r = advertised(Some("ports(ops):[1-0]; disk :0"), dir.path());
        assert!(r.is_err(), "a malformed range is still refused");
        let r = advertised(Some("disk:0"), dir.path()).expect("valid");
        assert_eq!(r.scalar_value("disk"), 0.0, "{r}");
        let err = advertised(Some("cpu:4"), dir.path()).expect_err("a typo");
        // Said once: the detail is the source, not repeated in the message.
        let why = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("did you mean 'cpus'")),
            "{why:?}"
        );
        assert!(!err.to_string().contains("did you mean"), "{err}");
    }

    #[test]
    fn attributes_are_text_or_scalar() {
        let attrs = parse_attributes("rack:r1; level:3").expect("valid");
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].text.as_ref().map(|t| t.value.as_str()), Some("r1"));
        assert_eq!(attrs[1].scalar.as_ref().map(|s| s.value), Some(3.0));
        assert!(parse_attributes("rack").is_err());
        assert!(parse_attributes("rack:").is_err());
    }
}
