//! Our v0 `.proto` (`proto/mesos/v0/mesos.proto`) against the real thing:
//! the descriptors compiled into Mesos' Java bindings, read from the jar
//! Spark ships. Every field and enum value we declare must exist there with
//! the same number, label and type, or Java's `parseFrom` would misread (or
//! refuse) what `libmesos.so` hands it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use agora_e2e::mesos_schema;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto};

/// Lines as `DumpDescriptors.java` prints them.
fn our_lines() -> BTreeSet<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let fds = protox::compile([root.join("mesos/v0/mesos.proto")], [&root])
        .expect("our v0 proto compiles");
    let mut out = BTreeSet::new();
    for file in fds.file.iter().filter(|f| f.package() == "mesos") {
        for m in &file.message_type {
            message_lines("mesos", m, &mut out);
        }
        for e in &file.enum_type {
            enum_lines("mesos", e, &mut out);
        }
    }
    out
}

fn message_lines(prefix: &str, m: &DescriptorProto, out: &mut BTreeSet<String>) {
    let full = format!("{prefix}.{}", m.name());
    for f in &m.field {
        let label = match f.label() {
            Label::Required => "required",
            Label::Repeated => "repeated",
            Label::Optional => "optional",
        };
        let ty = format!("{:?}", f.r#type()).to_ascii_lowercase();
        let type_name = match f.r#type() {
            Type::Message | Type::Enum => format!(" {}", f.type_name().trim_start_matches('.')),
            _ => String::new(),
        };
        out.insert(format!(
            "field {full} {} {} {label} {ty}{type_name}",
            f.name(),
            f.number()
        ));
    }
    for n in &m.nested_type {
        message_lines(&full, n, out);
    }
    for e in &m.enum_type {
        enum_lines(&full, e, out);
    }
}

fn enum_lines(prefix: &str, e: &EnumDescriptorProto, out: &mut BTreeSet<String>) {
    let full = format!("{prefix}.{}", e.name());
    for v in &e.value {
        out.insert(format!("value {full} {} {}", v.name(), v.number()));
    }
}

#[test]
fn our_v0_subset_matches_the_jar() {
    let theirs: BTreeSet<String> = mesos_schema::dump(&[])
        .unwrap_or_else(|e| panic!("{e:#}"))
        .into_iter()
        .collect();
    assert!(
        theirs.len() > 500,
        "the jar's schema looks truncated: {} lines",
        theirs.len()
    );
    let ours = our_lines();
    assert!(
        ours.len() > 150,
        "our schema looks truncated: {}",
        ours.len()
    );
    let wrong: Vec<_> = ours.difference(&theirs).collect();
    assert!(
        wrong.is_empty(),
        "declared in proto/mesos/v0/mesos.proto but not so in Mesos' jar:\n{}",
        wrong
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
