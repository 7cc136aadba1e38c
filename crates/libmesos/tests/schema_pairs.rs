//! `convert` turns Agora's v1 messages into Mesos' v0 ones (and back) by
//! re-reading one's encoding as the other. That is sound only while every
//! field the two schemas share has the same number, wire type and
//! cardinality, recursively. This test compiles both `.proto` trees and
//! checks every declared pair, so renumbering a field in either breaks the
//! build's tests instead of Spark's job.

use std::collections::HashSet;
use std::path::PathBuf;

use mesos::convert::PAIRS;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

/// Fields of a v1 message that deliberately have no v0 counterpart: they
/// are dropped on the way to Java, and nothing Java sends can set them.
const V1_ONLY: &[(&str, &str)] = &[
    // Agora's leadership term; Mesos has none.
    ("agora.v1.MasterInfo", "epoch"),
];

/// Enums with values Mesos 1.4 lacks (Agora's additions, and Mesos' own
/// from later versions); `convert` maps them by hand (`status_to_v0` /
/// `status_from_v0`).
const MAPPED_ENUMS: &[&str] = &["agora.v1.TaskStatus.Reason"];

fn schemas() -> FileDescriptorSet {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    protox::compile(
        [
            root.join("agora/v1/mesos.proto"),
            root.join("mesos/v0/mesos.proto"),
        ],
        [&root],
    )
    .expect("the protos compile")
}

fn find<'a, T>(
    fds: &'a FileDescriptorSet,
    full: &str,
    pick: impl Fn(&'a DescriptorProto) -> &'a [T],
    top: impl Fn(&'a prost_types::FileDescriptorProto) -> &'a [T],
    name: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    let full = full.trim_start_matches('.');
    for file in &fds.file {
        let package = file.package();
        let Some(rest) = full.strip_prefix(package).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let mut parts: Vec<&str> = rest.split('.').collect();
        let last = parts.pop()?;
        if parts.is_empty() {
            if let Some(found) = top(file).iter().find(|t| name(t) == last) {
                return Some(found);
            }
            continue;
        }
        let mut message = file.message_type.iter().find(|m| m.name() == parts[0])?;
        for part in &parts[1..] {
            message = message.nested_type.iter().find(|m| m.name() == *part)?;
        }
        if let Some(found) = pick(message).iter().find(|t| name(t) == last) {
            return Some(found);
        }
    }
    None
}

fn message<'a>(fds: &'a FileDescriptorSet, full: &str) -> &'a DescriptorProto {
    find(
        fds,
        full,
        |m| &m.nested_type,
        |f| &f.message_type,
        |m: &DescriptorProto| m.name(),
    )
    .unwrap_or_else(|| panic!("message {full} not found"))
}

fn enumeration<'a>(fds: &'a FileDescriptorSet, full: &str) -> &'a EnumDescriptorProto {
    find(
        fds,
        full,
        |m| &m.enum_type,
        |f| &f.enum_type,
        |e: &EnumDescriptorProto| e.name(),
    )
    .unwrap_or_else(|| panic!("enum {full} not found"))
}

/// Mesos v1 renamed "slave" to "agent"; the meaning is the same.
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace("slave", "agent")
}

fn check_message(
    fds: &FileDescriptorSet,
    v1: &str,
    v0: &str,
    seen: &mut HashSet<(String, String)>,
    problems: &mut Vec<String>,
) {
    if !seen.insert((v1.to_owned(), v0.to_owned())) {
        return;
    }
    let m1 = message(fds, v1);
    let m0 = message(fds, v0);
    for f1 in &m1.field {
        let Some(f0) = m0.field.iter().find(|f| f.number() == f1.number()) else {
            if !V1_ONLY.contains(&(v1, f1.name())) {
                problems.push(format!(
                    "{v1}.{} ({}) has no field in {v0}: it would be lost crossing JNI",
                    f1.name(),
                    f1.number()
                ));
            }
            continue;
        };
        let here = format!(
            "{v1}.{} vs {v0}.{} (#{})",
            f1.name(),
            f0.name(),
            f1.number()
        );
        if normalize(f1.name()) != normalize(f0.name()) {
            problems.push(format!("{here}: same number, different field"));
        }
        if (f1.label() == Label::Repeated) != (f0.label() == Label::Repeated) {
            problems.push(format!("{here}: repeated in one only"));
        }
        if f1.r#type() != f0.r#type() {
            problems.push(format!("{here}: {:?} vs {:?}", f1.r#type(), f0.r#type()));
            continue;
        }
        match f1.r#type() {
            Type::Message => {
                check_message(fds, f1.type_name(), f0.type_name(), seen, problems);
            }
            Type::Enum => check_enum(fds, f1.type_name(), f0.type_name(), problems),
            _ => {}
        }
    }
    for f0 in &m0.field {
        if let Some(f1) = m1
            .field
            .iter()
            .find(|f| normalize(f.name()) == normalize(f0.name()))
            && f1.number() != f0.number()
        {
            problems.push(format!(
                "{v1}.{} is #{} but {v0}.{} is #{}",
                f1.name(),
                f1.number(),
                f0.name(),
                f0.number()
            ));
        }
    }
}

fn check_enum(fds: &FileDescriptorSet, v1: &str, v0: &str, problems: &mut Vec<String>) {
    let v1 = v1.trim_start_matches('.');
    if MAPPED_ENUMS.contains(&v1) {
        return;
    }
    let e1 = enumeration(fds, v1);
    let e0 = enumeration(fds, v0);
    for value in &e1.value {
        match e0.value.iter().find(|v| v.number() == value.number()) {
            Some(v) if normalize(v.name()) == normalize(value.name()) => {}
            Some(v) => problems.push(format!(
                "{v1}.{} and {v0}.{} share number {}",
                value.name(),
                v.name(),
                value.number()
            )),
            None => problems.push(format!(
                "{v1}.{} ({}) has no value in {v0}",
                value.name(),
                value.number()
            )),
        }
    }
}

#[test]
fn every_pair_agrees_field_by_field() {
    let fds = schemas();
    let mut seen = HashSet::new();
    let mut problems = Vec::new();
    for (v1, v0) in PAIRS {
        check_message(&fds, v1, v0, &mut seen, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "v1 and v0 schemas disagree:\n{}",
        problems.join("\n")
    );
    // The walk reached the nested types too (resources, commands, ...).
    assert!(
        seen.iter().any(|(v1, _)| v1.ends_with("CommandInfo.URI")),
        "nested messages were not checked: {seen:?}"
    );
}

#[test]
fn the_check_catches_a_renumbered_field() {
    // Guard against a check that passes vacuously: a schema with one field
    // moved must be reported.
    let mut fds = schemas();
    for file in &mut fds.file {
        if file.package() == "mesos" {
            let offer = file
                .message_type
                .iter_mut()
                .find(|m| m.name() == "Offer")
                .expect("mesos.Offer");
            let hostname = offer
                .field
                .iter_mut()
                .find(|f| f.name() == "hostname")
                .expect("hostname");
            hostname.number = Some(99);
        }
    }
    let mut problems = Vec::new();
    check_message(
        &fds,
        "agora.v1.Offer",
        "mesos.Offer",
        &mut HashSet::new(),
        &mut problems,
    );
    assert!(
        problems.iter().any(|p| p.contains("hostname")),
        "{problems:?}"
    );
}
