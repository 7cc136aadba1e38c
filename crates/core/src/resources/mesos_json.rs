//! Resources in the JSON shapes of Mesos' v0 read endpoints (`/state`,
//! `/slaves`, the agent's `/state`), which dashboards and scripts written
//! for Mesos parse:
//!
//! - the flat map (`{"cpus":4.0,"gpus":0.0,"mem":1024.0,"disk":0.0,
//!   "ports":"[31000-32000, 33000-34000]"}`): scalars summed over roles,
//!   ranges and sets as Mesos prints them (items separated by `", "`), and
//!   `cpus`, `gpus`, `mem` and `disk` always present;
//! - the full form (`reserved_resources_full` and friends): one object per
//!   entry with its type, value, role (`*` when unreserved) and reservations.
//!
//! Only [`serde::Serialize`] shapes: callers pick the serializer (the JSON
//! they produce is tested where it is served, in the master and the agent).

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::{Reservation, Resources, SummaryValue, UNRESERVED, Value, format_value, parse_value};

/// The scalars Mesos always shows in a flat map, 0 when absent.
pub const ALWAYS_SHOWN: [&str; 4] = ["cpus", "gpus", "mem", "disk"];

/// A summary ([`Resources::summary`]) shown as Mesos' flat map.
#[derive(Debug, Clone, Copy)]
pub struct Flat<'a>(pub &'a BTreeMap<String, SummaryValue>);

impl Serialize for Flat<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_flat(self.0, serializer)
    }
}

/// [`Flat`] for `#[serde(serialize_with = "...")]` on an owned summary.
pub fn serialize_flat<S: Serializer>(
    summary: &BTreeMap<String, SummaryValue>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let others = summary
        .keys()
        .filter(|name| !ALWAYS_SHOWN.contains(&name.as_str()))
        .count();
    let mut map = serializer.serialize_map(Some(ALWAYS_SHOWN.len() + others))?;
    for name in ALWAYS_SHOWN {
        match summary.get(name) {
            Some(value) => map.serialize_entry(name, &MesosValue(value))?,
            None => map.serialize_entry(name, &0.0)?,
        }
    }
    for (name, value) in summary {
        if !ALWAYS_SHOWN.contains(&name.as_str()) {
            map.serialize_entry(name, &MesosValue(value))?;
        }
    }
    map.end()
}

/// One value as Mesos prints it: a number, or ranges and sets with their
/// items separated by `", "` (Agora's text form has no space).
struct MesosValue<'a>(&'a SummaryValue);

impl Serialize for MesosValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            SummaryValue::Number(n) => serializer.serialize_f64(*n),
            SummaryValue::Text(text) if text.contains(',') => {
                serializer.serialize_str(&text.replace(',', ", "))
            }
            SummaryValue::Text(text) => serializer.serialize_str(text),
        }
    }
}

/// Adds `other` into `into`, both summaries: numbers are summed, ranges
/// merged and sets joined. A name whose types disagree keeps `into`'s value
/// (summaries of one cluster's resources never disagree: a name has one type).
pub fn add_summary(
    into: &mut BTreeMap<String, SummaryValue>,
    other: &BTreeMap<String, SummaryValue>,
) {
    for (name, value) in other {
        let Some(have) = into.get_mut(name) else {
            into.insert(name.clone(), value.clone());
            continue;
        };
        match (&mut *have, value) {
            (SummaryValue::Number(a), SummaryValue::Number(b)) => *a += *b,
            (SummaryValue::Text(a), SummaryValue::Text(b)) => {
                let (Ok(left), Ok(right)) = (parse_value(name, a), parse_value(name, b)) else {
                    continue;
                };
                let mut sum = Resources::new();
                let key = |n: &str| (n.to_string(), UNRESERVED.to_string(), Reservation::Static);
                sum.merge(key(name), left);
                sum.merge(key(name), right);
                if let Some(merged) = sum.entries.values().next() {
                    *a = format_value(merged);
                }
            }
            _ => {}
        }
    }
}

/// One resource entry in Mesos' full JSON form (its `ENDPOINT` format:
/// `role` set, `*` when unreserved, and the reservations kept).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FullResource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scalar: Option<FullScalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges: Option<FullRanges>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<FullSet>,
    pub role: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<FullReservation>,
    /// Present (empty: Agora keeps no principal) on a dynamic reservation,
    /// as Mesos' pre-refinement `reservation` field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FullScalar {
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FullRanges {
    pub range: Vec<FullRange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FullRange {
    pub begin: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FullSet {
    pub item: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FullReservation {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: String,
}

/// Every entry of `resources` in Mesos' full form.
pub fn full(resources: &Resources) -> Vec<FullResource> {
    resources
        .entries
        .iter()
        .map(|((name, role, reservation), value)| {
            let mut entry = FullResource {
                name: name.clone(),
                kind: "SCALAR",
                scalar: None,
                ranges: None,
                set: None,
                role: role.clone(),
                reservations: Vec::new(),
                reservation: None,
            };
            match value {
                Value::Scalar(millis) => {
                    entry.scalar = Some(FullScalar {
                        value: super::from_millis(*millis),
                    });
                }
                Value::Ranges(ranges) => {
                    entry.kind = "RANGES";
                    entry.ranges = Some(FullRanges {
                        range: ranges
                            .iter()
                            .map(|&(begin, end)| FullRange { begin, end })
                            .collect(),
                    });
                }
                Value::Set(items) => {
                    entry.kind = "SET";
                    entry.set = Some(FullSet {
                        item: items.iter().cloned().collect(),
                    });
                }
            }
            if role != UNRESERVED {
                let kind = match reservation {
                    Reservation::Static => "STATIC",
                    Reservation::Dynamic => {
                        entry.reservation = Some(BTreeMap::new());
                        "DYNAMIC"
                    }
                };
                entry.reservations.push(FullReservation {
                    kind,
                    role: role.clone(),
                });
            }
            entry
        })
        .collect()
}

/// The reserved part of `resources` by role, and the unreserved part.
pub fn split_reserved(resources: &Resources) -> (BTreeMap<String, Resources>, Resources) {
    let mut by_role = resources.by_role();
    let unreserved = by_role.remove(UNRESERVED).unwrap_or_default();
    (by_role, unreserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_summary_sums_numbers_and_merges_ranges_and_sets() {
        let mut a = Resources::parse("cpus:1;ports:[1-2];zones:{a}")
            .expect("parses")
            .summary();
        let b = Resources::parse("cpus:2.5;mem:10;ports:[3-5,9-9];zones:{b}")
            .expect("parses")
            .summary();
        add_summary(&mut a, &b);
        assert_eq!(a["cpus"], SummaryValue::Number(3.5));
        assert_eq!(a["mem"], SummaryValue::Number(10.0));
        assert_eq!(a["ports"], SummaryValue::Text("[1-5,9-9]".into()));
        assert_eq!(a["zones"], SummaryValue::Text("{a,b}".into()));
    }

    #[test]
    fn full_form_names_roles_and_reservations() {
        let resources = Resources::parse("cpus:1;cpus(ops):2;mem(ops, dynamic):64;ports:[1-2]")
            .expect("parses");
        let full = full(&resources);
        let find = |name: &str, role: &str| {
            full.iter()
                .find(|r| r.name == name && r.role == role)
                .unwrap_or_else(|| panic!("{name}({role}) in {full:?}"))
        };
        let cpus = find("cpus", "*");
        assert_eq!(cpus.kind, "SCALAR");
        assert_eq!(cpus.scalar, Some(FullScalar { value: 1.0 }));
        assert!(cpus.reservations.is_empty());
        let ops = find("cpus", "ops");
        assert_eq!(ops.reservations[0].kind, "STATIC");
        assert_eq!(ops.reservation, None);
        let mem = find("mem", "ops");
        assert_eq!(mem.reservations[0].kind, "DYNAMIC");
        assert_eq!(mem.reservation, Some(BTreeMap::new()));
        let ports = find("ports", "*");
        assert_eq!(ports.kind, "RANGES");
        assert_eq!(
            ports.ranges,
            Some(FullRanges {
                range: vec![FullRange { begin: 1, end: 2 }]
            })
        );
        let (reserved, unreserved) = split_reserved(&resources);
        assert_eq!(reserved.keys().collect::<Vec<_>>(), vec!["ops"]);
        assert_eq!(unreserved.scalar_value("cpus"), 1.0);
        assert_eq!(unreserved.scalar_value("mem"), 0.0);
    }
}
