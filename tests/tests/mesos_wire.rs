//! Our v1 `.proto` files (`proto/agora/v1`, as compiled into `agora-proto`)
//! against Mesos' own v1 schema, read from the descriptors in Mesos' Java
//! bindings (the jar Spark ships).
//!
//! Mesos' v1 HTTP APIs are a framing layer over our types: JSON names fields,
//! protobuf numbers them. So every message and enum of ours that Mesos also
//! has must agree with it field by field and value by value: same names,
//! numbers, cardinality and types (type names mapped across packages, e.g.
//! `agora.v1.master.Call` = `mesos.v1.master.Call`).
//!
//! What may differ, deliberately:
//! - fields and values numbered 100 and up are Agora's extensions;
//! - what Mesos added after the jar's release (1.4.3) and we already have:
//!   listed in [`ADDED_AFTER_JAR`] with the release that added it and the
//!   number Mesos gave it, and the list is itself checked (an entry the jar
//!   does have, or that we do not declare, fails);
//! - Mesos' proto2 `required` is our proto3 singular field, except where
//!   proto3's "zero is absent" would change what is on the wire or what a
//!   reader sees (see [`presence_problem`]): there we must declare the field
//!   `optional` (explicit presence).

use std::collections::{BTreeMap, BTreeSet};

use agora_e2e::mesos_schema::{self, JAR_VERSION, Schema};
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// Our package, Mesos' package, and the Java outer class of Mesos' file.
const PACKAGES: &[(&str, &str, &str)] = &[
    ("agora.v1", "mesos.v1", "org.apache.mesos.v1.Protos"),
    (
        "agora.v1.scheduler",
        "mesos.v1.scheduler",
        "org.apache.mesos.v1.scheduler.Protos",
    ),
    (
        "agora.v1.executor",
        "mesos.v1.executor",
        "org.apache.mesos.v1.executor.Protos",
    ),
    (
        "agora.v1.master",
        "mesos.v1.master",
        "org.apache.mesos.v1.master.Protos",
    ),
    (
        "agora.v1.agent_operator",
        "mesos.v1.agent",
        "org.apache.mesos.v1.agent.Protos",
    ),
    (
        "agora.v1.quota",
        "mesos.v1.quota",
        "org.apache.mesos.v1.quota.Protos",
    ),
];

/// (Mesos message or enum, Mesos release, [(field or value name, number)]).
type Added = (&'static str, &'static str, &'static [(&'static str, i32)]);

/// Fields and enum values below 100 that we declare and the 1.4.3 jar lacks,
/// because a later Mesos release added them: (Mesos message or enum, the
/// release that added them, [(name, the number Mesos gave it)]). Read off
/// Mesos' `include/mesos/v1` at each release tag.
#[rustfmt::skip]
const ADDED_AFTER_JAR: &[Added] = &[
    ("mesos.v1.AgentInfo.Capability.Type", "1.5.0", &[("RESOURCE_PROVIDER", 4)]),
    ("mesos.v1.AgentInfo.Capability.Type", "1.6.0", &[("RESIZE_VOLUME", 5)]),
    ("mesos.v1.AgentInfo.Capability.Type", "1.8.0", &[("AGENT_OPERATION_FEEDBACK", 6)]),
    ("mesos.v1.AgentInfo.Capability.Type", "1.9.0", &[("AGENT_DRAINING", 7)]),
    ("mesos.v1.AgentInfo.Capability.Type", "1.10.0", &[("TASK_RESOURCE_LIMITS", 8)]),
    ("mesos.v1.Offer.Operation.Reserve", "1.10.0", &[("source", 2)]),
    ("mesos.v1.TaskStatus.Reason", "1.5.0", &[("REASON_AGENT_REREGISTERED", 32)]),
    ("mesos.v1.executor.Event.Type", "1.8.0", &[("HEARTBEAT", 9)]),
    ("mesos.v1.master.Call", "1.5.0", &[("teardown", 16), ("mark_agent_gone", 17)]),
    ("mesos.v1.master.Call", "1.6.0", &[("grow_volume", 18), ("shrink_volume", 19)]),
    ("mesos.v1.master.Call", "1.8.0", &[("update_quota", 20)]),
    ("mesos.v1.master.Call", "1.9.0", &[("deactivate_agent", 22), ("reactivate_agent", 23)]),
    ("mesos.v1.master.Call.ReserveResources", "1.10.0", &[("source", 3)]),
    ("mesos.v1.master.Call.Type", "1.5.0", &[("TEARDOWN", 31), ("MARK_AGENT_GONE", 32)]),
    ("mesos.v1.master.Call.Type", "1.6.0", &[
        ("GET_OPERATIONS", 33), ("GROW_VOLUME", 34), ("SHRINK_VOLUME", 35),
    ]),
    ("mesos.v1.master.Call.Type", "1.8.0", &[("UPDATE_QUOTA", 36)]),
    ("mesos.v1.master.Call.Type", "1.9.0", &[
        ("DRAIN_AGENT", 37), ("DEACTIVATE_AGENT", 38), ("REACTIVATE_AGENT", 39),
    ]),
    ("mesos.v1.master.Event.Subscribed", "1.5.0", &[("heartbeat_interval_seconds", 2)]),
    ("mesos.v1.master.Event.Type", "1.5.0", &[("HEARTBEAT", 9)]),
    ("mesos.v1.master.Response.GetAgents.Agent", "1.9.0", &[
        ("deactivated", 12), ("estimated_drain_start_time", 14),
    ]),
    ("mesos.v1.master.Response.GetMaster", "1.5.0", &[("start_time", 2), ("elected_time", 3)]),
    ("mesos.v1.master.Response.Type", "1.6.0", &[("GET_OPERATIONS", 19)]),
    ("mesos.v1.agent.Call.Type", "1.5.0", &[
        ("LAUNCH_CONTAINER", 22), ("WAIT_CONTAINER", 23), ("KILL_CONTAINER", 24),
        ("REMOVE_CONTAINER", 25), ("GET_RESOURCE_PROVIDERS", 26),
        ("ADD_RESOURCE_PROVIDER_CONFIG", 27), ("UPDATE_RESOURCE_PROVIDER_CONFIG", 28),
        ("REMOVE_RESOURCE_PROVIDER_CONFIG", 29), ("PRUNE_IMAGES", 30),
    ]),
    ("mesos.v1.agent.Call.Type", "1.6.0", &[("GET_OPERATIONS", 31)]),
    ("mesos.v1.agent.Call.Type", "1.8.0", &[("MARK_RESOURCE_PROVIDER_GONE", 32)]),
    ("mesos.v1.agent.Response.Type", "1.5.0", &[
        ("WAIT_CONTAINER", 15), ("GET_RESOURCE_PROVIDERS", 16),
    ]),
    ("mesos.v1.agent.Response.Type", "1.6.0", &[("GET_OPERATIONS", 17)]),
    ("mesos.v1.agent.Response.GetAgent", "1.9.0", &[("estimated_drain_start_time", 3)]),
    ("mesos.v1.quota.QuotaStatus", "1.9.0", &[("configs", 2)]),
];

/// Numbers from here up are Agora's own extensions.
const FIRST_EXTENSION: i32 = 100;

/// One of our fields, with names mapped into Mesos' packages.
struct OurField {
    name: String,
    number: i32,
    repeated: bool,
    /// As `DumpDescriptors.java` spells it: `string`, `message`, `uint64`, ...
    kind: String,
    type_name: Option<String>,
    /// proto3 `optional`: the field has explicit presence.
    explicit: bool,
}

/// Our schema, in Mesos' names.
#[derive(Default)]
struct Ours {
    messages: BTreeMap<String, Vec<OurField>>,
    enums: BTreeMap<String, Vec<(String, i32)>>,
}

/// Our schema as compiled into `agora-proto` (every file of `proto/`).
fn ours() -> Ours {
    let fds = FileDescriptorSet::decode(agora_proto::FILE_DESCRIPTOR_SET)
        .expect("agora-proto's descriptor set decodes");
    for (package, _, _) in PACKAGES {
        assert!(
            fds.file.iter().any(|f| f.package() == *package),
            "agora-proto compiles no file of package {package}"
        );
    }
    let mut ours = Ours::default();
    for file in &fds.file {
        let Some(mesos) = mesos_package(file.package()) else {
            continue;
        };
        for m in &file.message_type {
            walk_message(mesos, m, &mut ours);
        }
        for e in &file.enum_type {
            walk_enum(mesos, e, &mut ours);
        }
    }
    ours
}

fn mesos_package(ours: &str) -> Option<&'static str> {
    PACKAGES
        .iter()
        .find(|(agora, _, _)| *agora == ours)
        .map(|(_, mesos, _)| *mesos)
}

/// `.agora.v1.master.Call.Type` -> `mesos.v1.master.Call.Type`: the longest
/// of our packages that prefixes the name is replaced by Mesos'. A type from
/// a package Mesos has no counterpart of keeps its name (and so mismatches).
fn mesos_type_name(ours: &str) -> String {
    let name = ours.trim_start_matches('.');
    PACKAGES
        .iter()
        .filter_map(|(agora, mesos, _)| {
            let rest = name.strip_prefix(agora)?.strip_prefix('.')?;
            Some((agora.len(), format!("{mesos}.{rest}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| name.to_owned(), |(_, mapped)| mapped)
}

fn walk_message(prefix: &str, m: &DescriptorProto, ours: &mut Ours) {
    let full = format!("{prefix}.{}", m.name());
    let fields = m.field.iter().map(our_field).collect();
    ours.messages.insert(full.clone(), fields);
    for nested in &m.nested_type {
        walk_message(&full, nested, ours);
    }
    for e in &m.enum_type {
        walk_enum(&full, e, ours);
    }
}

fn walk_enum(prefix: &str, e: &EnumDescriptorProto, ours: &mut Ours) {
    let full = format!("{prefix}.{}", e.name());
    let values = e
        .value
        .iter()
        .map(|v| (v.name().to_owned(), v.number()))
        .collect();
    ours.enums.insert(full, values);
}

fn our_field(f: &FieldDescriptorProto) -> OurField {
    OurField {
        name: f.name().to_owned(),
        number: f.number(),
        repeated: f.label() == Label::Repeated,
        kind: format!("{:?}", f.r#type()).to_ascii_lowercase(),
        type_name: matches!(f.r#type(), Type::Message | Type::Enum)
            .then(|| mesos_type_name(f.type_name())),
        explicit: f.proto3_optional(),
    }
}

/// Whether one of our fields needs explicit presence to mean on the wire
/// what Mesos' field means, and why. Only singular scalar and enum fields
/// can lack it (message fields always have presence). Mesos' field needs it
/// where proto3 dropping a zero value would matter:
/// - an enum whose zero is a real value (`SCALAR`, `TASK_STARTING`): proto3
///   would leave it off the wire, and a proto2 reader would then reject the
///   message (`required`) or read "unset" (`optional`). An enum whose zero is
///   `UNKNOWN` is safe: unset and `UNKNOWN` mean the same;
/// - a `required` bool: `false` is an answer (`healthy`, `active`), and a
///   proto2 reader rejects a message without it;
/// - an `optional` field with a non-zero default (`shell` = true,
///   `refuse_seconds` = 5, `role` = "*"): absent means the default, not zero.
///
/// A number's zero is, in the messages we share, either not a valid value
/// (ports, weights, range bounds of offered ports) or the same as absent, so
/// `required` numbers and strings are left proto3 singular.
fn presence_problem(theirs: &Schema, field: &mesos_schema::Field) -> Option<String> {
    if field.label == "repeated" || field.kind == "message" {
        return None;
    }
    let enum_zero = || {
        let name = field.type_name.as_deref()?;
        let values = theirs.enums.get(name)?;
        values
            .iter()
            .find(|(_, number)| **number == 0)
            .map(|(value, _)| value.clone())
    };
    if field.kind == "enum" {
        match enum_zero() {
            Some(zero) if zero != "UNKNOWN" => {
                return Some(format!("its enum's zero value {zero} is a real value"));
            }
            None => return Some("its enum has no zero value in Mesos".into()),
            Some(_) => {}
        }
    }
    if field.label == "required" && field.kind == "bool" {
        return Some("it is a required bool (false is an answer)".into());
    }
    if field.label == "optional" {
        let default = field.default.as_deref()?;
        let zero = match field.kind.as_str() {
            "bool" => default == "false",
            "string" | "bytes" => default.is_empty(),
            "enum" => {
                field
                    .type_name
                    .as_deref()
                    .and_then(|e| theirs.value(e, default))
                    == Some(0)
            }
            _ => default.parse::<f64>().is_ok_and(|n| n == 0.0),
        };
        if !zero {
            return Some(format!("Mesos defaults it to {default}"));
        }
    }
    None
}

/// `uint64`, or `message mesos.v1.TaskID`.
fn type_text(kind: &str, type_name: Option<&str>) -> String {
    match type_name {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_owned(),
    }
}

/// Every difference between ours and theirs, one line each.
fn differences(theirs: &Schema, ours: &Ours) -> Vec<String> {
    let added: BTreeMap<(&str, &str), (&str, i32)> = ADDED_AFTER_JAR
        .iter()
        .flat_map(|(container, version, items)| {
            items
                .iter()
                .map(move |(name, number)| ((*container, *name), (*version, *number)))
        })
        .collect();
    let mut used_added = BTreeSet::new();
    let mut problems = Vec::new();
    // An item of ours that Mesos 1.4.3 does not have: fine if it is an
    // extension, or listed (with Mesos' number) as added later.
    let mut not_in_jar = |container: &str, name: &str, number: i32, what: &str| {
        if number >= FIRST_EXTENSION {
            return None;
        }
        let Some((version, mesos_number)) = added.get(&(container, name)) else {
            return Some(format!(
                "{what} {container}.{name} = {number} is not in Mesos {JAR_VERSION} (a \
                 typo, or list it in ADDED_AFTER_JAR with the Mesos release that added it)"
            ));
        };
        used_added.insert((container.to_owned(), name.to_owned()));
        (*mesos_number != number).then(|| {
            format!(
                "{what} {container}.{name} is {number} here but {mesos_number} in Mesos \
                 {version}"
            )
        })
    };

    for (message, fields) in &ours.messages {
        let Some(mesos_fields) = theirs.messages.get(message) else {
            continue;
        };
        for f in fields {
            let Some(m) = mesos_fields.get(&f.name) else {
                if let Some((other, _)) = mesos_fields.iter().find(|(_, m)| m.number == f.number) {
                    problems.push(format!(
                        "field {message}.{} = {}: Mesos numbers its field `{other}` {}",
                        f.name, f.number, f.number
                    ));
                } else {
                    problems.extend(not_in_jar(message, &f.name, f.number, "field"));
                }
                continue;
            };
            let at = format!("field {message}.{}", f.name);
            if m.number != f.number {
                problems.push(format!(
                    "{at} is numbered {} here but {} in Mesos",
                    f.number, m.number
                ));
            }
            if (m.label == "repeated") != f.repeated {
                problems.push(format!(
                    "{at} is {} here but {} in Mesos",
                    if f.repeated { "repeated" } else { "singular" },
                    m.label
                ));
            }
            if m.kind != f.kind || m.type_name != f.type_name {
                problems.push(format!(
                    "{at} is {} here but {} in Mesos",
                    type_text(&f.kind, f.type_name.as_deref()),
                    type_text(&m.kind, m.type_name.as_deref())
                ));
            }
            if !f.explicit
                && let Some(why) = presence_problem(theirs, m)
            {
                problems.push(format!(
                    "{at} must be declared `optional` (explicit presence): {why}"
                ));
            }
        }
    }

    for (enumeration, values) in &ours.enums {
        let Some(mesos_values) = theirs.enums.get(enumeration) else {
            continue;
        };
        for (name, number) in values {
            match mesos_values.get(name) {
                Some(mesos_number) if mesos_number == number => {}
                Some(mesos_number) => problems.push(format!(
                    "value {enumeration}.{name} is {number} here but {mesos_number} in Mesos"
                )),
                None => {
                    if let Some((other, _)) = mesos_values.iter().find(|(_, n)| *n == number) {
                        problems.push(format!(
                            "value {enumeration}.{name} = {number}: Mesos gives {number} to {other}"
                        ));
                    } else {
                        problems.extend(not_in_jar(enumeration, name, *number, "value"));
                    }
                }
            }
        }
    }

    // The table must stay honest: each entry something we declare and the
    // jar lacks.
    for (container, version, items) in ADDED_AFTER_JAR {
        for (name, _) in *items {
            if !used_added.contains(&(container.to_string(), name.to_string())) {
                problems.push(format!(
                    "ADDED_AFTER_JAR lists {container}.{name} (Mesos {version}), but either the \
                     jar has it or we do not declare it: remove the entry"
                ));
            }
        }
    }
    problems
}

#[test]
fn our_v1_protos_match_mesos_on_the_wire() {
    let classes: Vec<&str> = PACKAGES.iter().map(|(_, _, class)| *class).collect();
    let lines = mesos_schema::dump(&classes).unwrap_or_else(|e| panic!("{e:#}"));
    let theirs = Schema::parse(&lines).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        theirs.messages.len() > 200 && theirs.enums.len() > 30,
        "the jar's v1 schema looks truncated: {} messages, {} enums",
        theirs.messages.len(),
        theirs.enums.len()
    );
    let ours = ours();
    // The comparison must actually meet: most of our messages are Mesos'.
    let shared = ours
        .messages
        .keys()
        .filter(|m| theirs.messages.contains_key(*m))
        .count();
    assert!(
        shared > 80,
        "only {shared} of our messages found in Mesos' schema: is the package mapping right?"
    );
    let problems = differences(&theirs, &ours);
    assert!(
        problems.is_empty(),
        "{} differences between proto/agora/v1 and Mesos' v1 schema:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The comparison itself catches what it is for, on a schema made up here.
#[test]
fn the_comparison_catches_renumbering_retyping_and_missing_presence() {
    let theirs = Schema::parse(
        &[
            "field mesos.v1.M a 1 required string",
            "field mesos.v1.M b 2 optional enum mesos.v1.E",
            "field mesos.v1.M c 3 required bool",
            "field mesos.v1.M d 4 optional double",
            "default mesos.v1.M d 5.0",
            "field mesos.v1.M e 5 optional enum mesos.v1.U",
            "value mesos.v1.E REAL 0",
            "value mesos.v1.E OTHER 1",
            "value mesos.v1.U UNKNOWN 0",
        ]
        .map(String::from),
    )
    .expect("parses");
    let field = |name: &str, number, kind: &str, type_name: Option<&str>, explicit| OurField {
        name: name.into(),
        number,
        repeated: false,
        kind: kind.into(),
        type_name: type_name.map(String::from),
        explicit,
    };
    let mut ours = Ours::default();
    ours.messages.insert(
        "mesos.v1.M".into(),
        vec![
            field("a", 1, "string", None, false),
            field("b", 2, "enum", Some("mesos.v1.E"), false),
            field("c", 3, "bool", None, false),
            field("d", 4, "double", None, false),
            field("e", 5, "enum", Some("mesos.v1.U"), false),
            field("x", 7, "string", None, false),
            field("ext", 100, "string", None, false),
        ],
    );
    ours.enums.insert(
        "mesos.v1.E".into(),
        vec![("REAL".into(), 0), ("OTHER".into(), 2)],
    );
    let problems = differences(&theirs, &ours).join("\n");
    for expected in [
        "field mesos.v1.M.b must be declared `optional`",
        "field mesos.v1.M.c must be declared `optional`",
        "field mesos.v1.M.d must be declared `optional`",
        "field mesos.v1.M.x = 7 is not in Mesos",
        "value mesos.v1.E.OTHER is 2 here but 1 in Mesos",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in:\n{problems}"
        );
    }
    for fine in ["mesos.v1.M.a", "mesos.v1.M.e ", "mesos.v1.M.ext"] {
        assert!(!problems.contains(fine), "{fine:?} flagged:\n{problems}");
    }

    let mut renumbered = Ours::default();
    renumbered.messages.insert(
        "mesos.v1.M".into(),
        vec![
            field("a", 2, "string", None, false),
            field("c", 3, "uint32", None, true),
        ],
    );
    let problems = differences(&theirs, &renumbered).join("\n");
    assert!(
        problems.contains("field mesos.v1.M.a is numbered 2 here but 1 in Mesos"),
        "{problems}"
    );
    assert!(
        problems.contains("field mesos.v1.M.c is uint32 here but bool in Mesos"),
        "{problems}"
    );

    let mut clash = Ours::default();
    clash
        .messages
        .insert("mesos.v1.M".into(), vec![field("z", 3, "bool", None, true)]);
    let problems = differences(&theirs, &clash).join("\n");
    assert!(
        problems.contains("field mesos.v1.M.z = 3: Mesos numbers its field `c` 3"),
        "{problems}"
    );
}
