//! Resources arithmetic: scalars, ranges and sets, unreserved or reserved for a role.
//!
//! Invariants kept by every operation:
//! - scalars are fixed-point with three decimals (Mesos' precision), stored as
//!   integer thousandths, so that adding and subtracting never drifts, and
//!   sums saturate rather than overflow;
//! - no entry is empty (zero scalar, no ranges, empty set) — empty entries are removed;
//! - ranges are sorted, non-overlapping and non-adjacent;
//! - a resource name has one type across all roles, and the well-known
//!   names one type everywhere ([`Kind::required_for`]): `cpus`, `mem`,
//!   `disk` and `gpus` are scalars, `ports` are ranges. `parse` and
//!   `from_proto` refuse anything else, so only resources of different
//!   sources can disagree on a custom name's type, and `add` has one rule
//!   for that (see [`Resources::add`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use agora_proto::v1 as pb;

use crate::role::{RoleError, validate_role};
pub use crate::role::{UNRESERVED, valid_role};

/// Largest scalar accepted (in whole units): ten billion cpus, or 10 PB of
/// `mem`/`disk` (MB) on one agent, far above any real machine. One entry is
/// then at most 1e13 thousandths, so an `i64` sum holds ~920,000 entries at
/// the maximum: cluster-wide totals and the allocator's books stay exact
/// for any cluster a master can hold (and saturate beyond, never wrap).
pub const MAX_SCALAR: f64 = 1e10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcesError {
    #[error("resource '{0}' is not of the form name:value or name(role):value")]
    Syntax(String),
    #[error("resource '{name}' has an invalid value '{value}': {why}")]
    BadValue {
        name: String,
        value: String,
        why: &'static str,
    },
    #[error("resource name '{0}' is invalid")]
    BadName(String),
    #[error("unknown resource '{name}': did you mean '{meant}'?")]
    DidYouMean { name: String, meant: &'static str },
    #[error(transparent)]
    BadRole(#[from] RoleError),
    #[error("resource '{0}' is given with two different types")]
    TypeMismatch(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Thousandths of a unit.
    Scalar(i64),
    Ranges(Vec<(u64, u64)>),
    Set(BTreeSet<String>),
}

/// The type of a resource's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Scalar,
    Ranges,
    Set,
}

impl Kind {
    /// The one type a well-known resource name may have, if it is one.
    pub fn required_for(name: &str) -> Option<Kind> {
        match name {
            "cpus" | "mem" | "disk" | "gpus" => Some(Kind::Scalar),
            "ports" => Some(Kind::Ranges),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Scalar => "a scalar",
            Kind::Ranges => "ranges",
            Kind::Set => "a set",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Scalar(_) => Kind::Scalar,
            Value::Ranges(_) => Kind::Ranges,
            Value::Set(_) => Kind::Set,
        }
    }

    /// `other` added in: scalars summed (saturating), ranges joined, sets
    /// joined; a value of another type is left out (one name has one type).
    fn absorb(&mut self, other: Value) {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => *a = a.saturating_add(b),
            (Value::Ranges(a), Value::Ranges(b)) => {
                a.extend(b);
                *a = normalize_ranges(std::mem::take(a));
            }
            (Value::Set(a), Value::Set(b)) => a.extend(b),
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(v) => *v == 0,
            Value::Ranges(r) => r.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }
}

/// How resources came to be reserved for a role: by the agent's
/// `--resources` (static, only an agent restart changes them), or by an
/// operator's or framework's RESERVE (dynamic, UNRESERVE undoes them).
/// Unreserved resources are `Static`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Reservation {
    #[default]
    Static,
    Dynamic,
}

/// The text form's mark of a dynamic reservation: `cpus(ops, dynamic):2`
/// (a role cannot contain whitespace, so this is never part of a role).
const DYNAMIC_MARK: &str = ", dynamic";

/// (name, role, how it is reserved).
type Key = (String, String, Reservation);

/// A bag of resources keyed by (name, role, reservation kind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    entries: BTreeMap<Key, Value>,
}

/// The smallest positive scalar: one thousandth (Mesos' precision).
pub const MIN_SCALAR: f64 = 0.001;

/// Highest port number: `ports` ranges above it are refused.
pub const MAX_PORT: u64 = 65_535;

/// Resource names people mistype, with what they meant. Refused in what a
/// person typed (a flag, an operator's request: [`Resources::parse_input`]),
/// where a typo would make a custom resource nobody asks for. The text form
/// itself ([`Resources::parse`]) takes them: it is also how resources are
/// stored (the registry), and resources that came as protobuf may carry
/// any valid name.
const NEAR_MISSES: [(&str, &str); 6] = [
    ("cpu", "cpus"),
    ("memory", "mem"),
    ("ram", "mem"),
    ("port", "ports"),
    ("gpu", "gpus"),
    ("disks", "disk"),
];

/// A scalar in thousandths, or why it is refused: not finite, negative,
/// above [`MAX_SCALAR`], or positive but below [`MIN_SCALAR`] (it would
/// silently become nothing).
fn to_millis(value: f64) -> Result<i64, &'static str> {
    if !value.is_finite() || !(0.0..=MAX_SCALAR).contains(&value) {
        return Err("must be a finite number between 0 and 1e10");
    }
    let millis = (value * 1000.0).round() as i64;
    if millis == 0 && value > 0.0 {
        return Err("is above 0 but below 0.001, the smallest amount");
    }
    Ok(millis)
}

/// Whether `value` is a scalar amount `Resources` accepts, and why not:
/// for front ends (flags) that build resources from numbers.
pub fn check_scalar(value: f64) -> Result<(), &'static str> {
    to_millis(value).map(|_| ())
}

/// Checks what a value's type alone does not: a well-known name has its
/// one type, and port numbers fit in 16 bits.
fn check_value(name: &str, value: &Value) -> Result<(), &'static str> {
    match Kind::required_for(name) {
        Some(Kind::Scalar) if value.kind() != Kind::Scalar => {
            return Err("cpus, mem, disk and gpus are scalars");
        }
        Some(Kind::Ranges) if value.kind() != Kind::Ranges => {
            return Err("ports are ranges, as in [31000-32000]");
        }
        _ => {}
    }
    match value {
        Value::Ranges(ranges) if name == "ports" && ranges.iter().any(|&(_, e)| e > MAX_PORT) => {
            Err("ports are at most 65535")
        }
        _ => Ok(()),
    }
}

fn from_millis(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn normalize_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (begin, end) in ranges {
        match out.last_mut() {
            Some(last) if begin <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => out.push((begin, end)),
        }
    }
    out
}

fn subtract_ranges(have: &[(u64, u64)], take: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(mut begin, end) in have {
        let mut alive = true;
        for &(tb, te) in take {
            if te < begin || tb > end || !alive {
                continue;
            }
            if tb > begin {
                out.push((begin, tb - 1));
            }
            if te >= end {
                alive = false;
            } else {
                begin = te + 1;
            }
        }
        if alive {
            out.push((begin, end));
        }
    }
    normalize_ranges(out)
}

fn ranges_contain(have: &[(u64, u64)], want: &[(u64, u64)]) -> bool {
    want.iter()
        .all(|&(b, e)| have.iter().any(|&(hb, he)| hb <= b && e <= he))
}

fn parse_value(name: &str, text: &str) -> Result<Value, ResourcesError> {
    let bad = |why| ResourcesError::BadValue {
        name: name.to_string(),
        value: text.to_string(),
        why,
    };
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let mut ranges = Vec::new();
        for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (b, e) = part
                .split_once('-')
                .ok_or_else(|| bad("a range is begin-end"))?;
            let b: u64 = b
                .trim()
                .parse()
                .map_err(|_| bad("range bounds are integers"))?;
            let e: u64 = e
                .trim()
                .parse()
                .map_err(|_| bad("range bounds are integers"))?;
            if b > e {
                return Err(bad("a range's begin is above its end"));
            }
            ranges.push((b, e));
        }
        return Ok(Value::Ranges(normalize_ranges(ranges)));
    }
    if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let items: BTreeSet<String> = inner
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .collect();
        return Ok(Value::Set(items));
    }
    let number: f64 = text.parse().map_err(|_| bad("not a number"))?;
    to_millis(number).map(Value::Scalar).map_err(bad)
}

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// What a person typed (`--resources`, an operator's request): the text
    /// form, with the names people mistype for the standard ones (`cpu`,
    /// `memory`, `port`, ...) refused with what they meant.
    pub fn parse_input(text: &str) -> Result<Self, ResourcesError> {
        let resources = Self::parse(text)?;
        for name in resources.names() {
            if let Some(&(_, meant)) = NEAR_MISSES.iter().find(|(typo, _)| *typo == name) {
                return Err(ResourcesError::DidYouMean {
                    name: name.to_string(),
                    meant,
                });
            }
        }
        Ok(resources)
    }

    /// Parses Mesos' text form: `cpus:4;mem:8192;ports:[31000-32000];cpus(ops):2;zones:{a,b}`.
    /// Total over what [`Display`](std::fmt::Display) prints: any resources
    /// print to text that parses back to them (the registry relies on it).
    pub fn parse(text: &str) -> Result<Self, ResourcesError> {
        let mut out = Resources::new();
        for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once(':')
                .ok_or_else(|| ResourcesError::Syntax(item.to_string()))?;
            let key = key.trim();
            let (name, role, kind) = match key.split_once('(') {
                Some((name, rest)) => {
                    let role = rest
                        .strip_suffix(')')
                        .ok_or_else(|| ResourcesError::Syntax(item.to_string()))?;
                    let (role, kind) = match role.strip_suffix(DYNAMIC_MARK) {
                        Some(role) if role.trim() != UNRESERVED => (role, Reservation::Dynamic),
                        Some(_) => return Err(ResourcesError::Syntax(item.to_string())),
                        None => (role, Reservation::Static),
                    };
                    (name.trim(), role.trim(), kind)
                }
                None => (key, UNRESERVED, Reservation::Static),
            };
            if !valid_name(name) {
                return Err(ResourcesError::BadName(name.to_string()));
            }
            validate_role(role)?;
            let text = value.trim();
            let value = parse_value(name, text)?;
            check_value(name, &value).map_err(|why| ResourcesError::BadValue {
                name: name.to_string(),
                value: text.to_string(),
                why,
            })?;
            out.add_entry_as(name, role, kind, value)?;
        }
        Ok(out)
    }

    pub fn scalar(name: &str, value: f64) -> Result<Self, ResourcesError> {
        Self::parse(&format!("{name}:{value}"))
    }

    fn type_of(&self, name: &str) -> Option<Kind> {
        self.entries
            .iter()
            .find(|((n, _, _), _)| n == name)
            .map(|(_, v)| v.kind())
    }

    fn add_entry_as(
        &mut self,
        name: &str,
        role: &str,
        kind: Reservation,
        value: Value,
    ) -> Result<(), ResourcesError> {
        if let Some(kind) = self.type_of(name)
            && kind != value.kind()
        {
            return Err(ResourcesError::TypeMismatch(name.to_string()));
        }
        self.merge((name.to_string(), role.to_string(), kind), value);
        Ok(())
    }

    /// Adds `value` under `key`. The caller has checked that the name has
    /// `value`'s type here (or none yet); were it not so, the entry would be
    /// left as it is.
    fn merge(&mut self, key: Key, value: Value) {
        if value.is_empty() {
            return;
        }
        let (name, role, kind) = key;
        // Unreserved resources have no reservation to tell apart.
        let kind = if role == UNRESERVED {
            Reservation::Static
        } else {
            kind
        };
        match self.entries.entry((name, role, kind)) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(value);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => slot.get_mut().absorb(value),
        }
    }

    /// The first resource name that has one type here and another in
    /// `other`, if any: adding `other` would leave its entries out.
    pub fn type_conflict<'a>(&self, other: &'a Resources) -> Option<&'a str> {
        other
            .entries
            .iter()
            .find(|((name, _, _), value)| self.type_of(name).is_some_and(|k| k != value.kind()))
            .map(|((name, _, _), _)| name.as_str())
    }

    /// Each resource name present with its type.
    pub fn kinds(&self) -> BTreeMap<&str, Kind> {
        self.entries
            .iter()
            .map(|((name, _, _), value)| (name.as_str(), value.kind()))
            .collect()
    }

    /// Adds `other` into `self`, or changes nothing and says which name has
    /// another type in `other` than here.
    pub fn try_add(&mut self, other: &Resources) -> Result<(), ResourcesError> {
        if let Some(name) = self.type_conflict(other) {
            return Err(ResourcesError::TypeMismatch(name.to_string()));
        }
        self.add(other);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `other` into `self`, entry by entry.
    ///
    /// The rule where a name has another type in `other` than here (see
    /// [`Resources::type_conflict`]): `self` keeps its type and those
    /// entries of `other` are left out, since one name cannot hold two
    /// types. The edges make that case unreachable where it matters: a
    /// well-known name has one type everywhere, and the master refuses an
    /// agent (or a task it reports) that gives a custom name another type
    /// than the cluster's, so everything the master and allocator add
    /// agrees. Use [`Resources::try_add`] where a conflict must be refused.
    /// An entry that gives a well-known name another type than its one
    /// type (`cpus` as a set, which only the unchecked constructors can
    /// build) is left out too, also when `self` has no entry of that name.
    pub fn add(&mut self, other: &Resources) {
        for (key, value) in &other.entries {
            let expected = self.type_of(&key.0).or(Kind::required_for(&key.0));
            if expected.is_some_and(|k| k != value.kind()) {
                continue;
            }
            self.merge(key.clone(), value.clone());
        }
    }

    /// Whether every entry of `other` is available in `self`, role by role.
    pub fn contains(&self, other: &Resources) -> bool {
        other
            .entries
            .iter()
            .all(|(key, want)| match (self.entries.get(key), want) {
                (Some(Value::Scalar(have)), Value::Scalar(want)) => have >= want,
                (Some(Value::Ranges(have)), Value::Ranges(want)) => ranges_contain(have, want),
                (Some(Value::Set(have)), Value::Set(want)) => want.is_subset(have),
                _ => false,
            })
    }

    /// Removes `other` from `self`, as far as it is there (saturating).
    pub fn subtract(&mut self, other: &Resources) {
        for (key, take) in &other.entries {
            let Some(have) = self.entries.get_mut(key) else {
                continue;
            };
            match (have, take) {
                (Value::Scalar(h), Value::Scalar(t)) => *h = (*h - t).max(0),
                (Value::Ranges(h), Value::Ranges(t)) => *h = subtract_ranges(h, t),
                (Value::Set(h), Value::Set(t)) => h.retain(|i| !t.contains(i)),
                _ => {}
            }
            if self.entries.get(key).is_some_and(Value::is_empty) {
                self.entries.remove(key);
            }
        }
    }

    /// The resources a framework in `role` may use: unreserved ones and those
    /// reserved for exactly that role.
    pub fn allocatable_to(&self, role: &str) -> Resources {
        Resources {
            entries: self
                .entries
                .iter()
                .filter(|((_, r, _), _)| r == UNRESERVED || r == role)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The sum of a scalar resource over all roles, in units.
    pub fn scalar_value(&self, name: &str) -> f64 {
        from_millis(
            self.entries
                .iter()
                .filter_map(|((n, _, _), v)| match v {
                    Value::Scalar(m) if n == name => Some(*m),
                    _ => None,
                })
                .fold(0, i64::saturating_add),
        )
    }

    /// The same quantities with every reservation removed.
    pub fn unreserved(&self) -> Resources {
        let mut out = Resources::new();
        for ((name, _, _), value) in &self.entries {
            // Same name means same type: merging cannot conflict.
            out.merge(
                (name.clone(), UNRESERVED.to_string(), Reservation::Static),
                value.clone(),
            );
        }
        out
    }

    /// The same resources with every reservation made dynamic: what an
    /// operator's or framework's RESERVE creates and UNRESERVE may remove.
    pub fn as_dynamic(&self) -> Resources {
        self.with_kind(Reservation::Dynamic)
    }

    /// The same resources with every reservation made static.
    pub fn as_static(&self) -> Resources {
        self.with_kind(Reservation::Static)
    }

    fn with_kind(&self, kind: Reservation) -> Resources {
        let mut out = Resources::new();
        for ((name, role, _), value) in &self.entries {
            out.merge((name.clone(), role.clone(), kind), value.clone());
        }
        out
    }

    /// Only the statically reserved entries (the agent's `--resources`).
    pub fn statically_reserved(&self) -> Resources {
        Resources {
            entries: self
                .entries
                .iter()
                .filter(|((_, r, k), _)| r != UNRESERVED && *k == Reservation::Static)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The entries by reservation role (`*` for unreserved).
    pub fn by_role(&self) -> BTreeMap<String, Resources> {
        let mut out: BTreeMap<String, Resources> = BTreeMap::new();
        for ((name, role, kind), value) in &self.entries {
            out.entry(role.clone())
                .or_default()
                .entries
                .insert((name.clone(), role.clone(), *kind), value.clone());
        }
        out
    }

    /// Whether every entry is a scalar.
    pub fn only_scalars(&self) -> bool {
        self.entries.values().all(|v| matches!(v, Value::Scalar(_)))
    }

    /// Names of the resources present, each once.
    pub fn names(&self) -> BTreeSet<&str> {
        self.entries.keys().map(|(n, _, _)| n.as_str()).collect()
    }

    /// A flat summary by name, as Mesos' `/state` shows resources: scalars as
    /// numbers summed over roles, ranges and sets in their text form.
    pub fn summary(&self) -> BTreeMap<String, SummaryValue> {
        let mut merged = Resources::new();
        for ((name, _, _), value) in &self.entries {
            // Same name means same type, so merging across roles cannot conflict.
            merged.merge(
                (name.clone(), UNRESERVED.to_string(), Reservation::Static),
                value.clone(),
            );
        }
        merged
            .entries
            .into_iter()
            .map(|((name, _, _), value)| {
                let summary = match value {
                    Value::Scalar(m) => SummaryValue::Number(from_millis(m)),
                    other => SummaryValue::Text(format_value(&other)),
                };
                (name, summary)
            })
            .collect()
    }

    /// Whether `summary` is what [`Resources::summary`] makes of these,
    /// without making it where every entry is a scalar (a task's resources,
    /// nearly always): the read model asks this of every task whose status
    /// changed, and making a summary is two maps of owned names. Other
    /// resources are summarized and compared.
    pub fn summary_is(&self, summary: &BTreeMap<String, SummaryValue>) -> bool {
        let mut expected = summary.iter();
        // The name being summed and its sum: a name's entries are adjacent,
        // as keys order by name first, and summaries are by name.
        let mut current: Option<(&str, i64)> = None;
        for ((name, _, _), value) in &self.entries {
            // Ranges or a set: made and compared whole, as before.
            let Value::Scalar(millis) = value else {
                return self.summary() == *summary;
            };
            // `summary` merges no empty value, as every merge.
            if *millis == 0 {
                continue;
            }
            match current.as_mut() {
                Some((summed, sum)) if *summed == name.as_str() => {
                    *sum = sum.saturating_add(*millis);
                }
                _ => {
                    if let Some(done) = current.take()
                        && !summed_as(expected.next(), done)
                    {
                        return false;
                    }
                    current = Some((name, *millis));
                }
            }
        }
        if let Some(done) = current
            && !summed_as(expected.next(), done)
        {
            return false;
        }
        expected.next().is_none()
    }

    pub fn to_proto(&self, allocation_role: Option<&str>) -> Vec<pb::Resource> {
        self.entries
            .iter()
            .flat_map(|(key, value)| written_pieces(value).map(move |v| (key, v)))
            .map(|((name, role, kind), value)| {
                let mut r = pb::Resource {
                    name: name.clone(),
                    ..Default::default()
                };
                match value.as_ref() {
                    Value::Scalar(m) => {
                        r.r#type = Some(pb::value::Type::Scalar as i32);
                        r.scalar = Some(pb::value::Scalar {
                            value: from_millis(*m),
                        });
                    }
                    Value::Ranges(ranges) => {
                        r.r#type = Some(pb::value::Type::Ranges as i32);
                        r.ranges = Some(pb::value::Ranges {
                            range: ranges
                                .iter()
                                .map(|&(begin, end)| pb::value::Range { begin, end })
                                .collect(),
                        });
                    }
                    Value::Set(items) => {
                        r.r#type = Some(pb::value::Type::Set as i32);
                        r.set = Some(pb::value::Set {
                            item: items.iter().cloned().collect(),
                        });
                    }
                }
                if role != UNRESERVED {
                    r.reservations = vec![pb::resource::ReservationInfo {
                        r#type: Some(match kind {
                            Reservation::Static => pb::resource::reservation_info::Type::Static,
                            Reservation::Dynamic => pb::resource::reservation_info::Type::Dynamic,
                        } as i32),
                        role: Some(role.clone()),
                        principal: None,
                    }];
                }
                if let Some(alloc) = allocation_role {
                    r.allocation_info = Some(pb::resource::AllocationInfo {
                        role: Some(alloc.to_string()),
                    });
                }
                r
            })
            .collect()
    }

    pub fn from_proto(resources: &[pb::Resource]) -> Result<Self, ResourcesError> {
        let mut out = Resources::new();
        for r in resources {
            if !valid_name(&r.name) {
                return Err(ResourcesError::BadName(r.name.clone()));
            }
            let last = r.reservations.last();
            let role = last
                .and_then(|res| res.role.clone())
                .or_else(|| r.role.clone())
                .unwrap_or_else(|| UNRESERVED.to_string());
            let dynamic = pb::resource::reservation_info::Type::Dynamic as i32;
            let kind = match last.and_then(|res| res.r#type) {
                Some(t) if t == dynamic => Reservation::Dynamic,
                _ => Reservation::Static,
            };
            validate_role(&role)?;
            let bad = |why| ResourcesError::BadValue {
                name: r.name.clone(),
                value: String::new(),
                why,
            };
            let value = match pb::value::Type::try_from(r.r#type.unwrap_or_default()) {
                Ok(pb::value::Type::Scalar) => {
                    let v = r
                        .scalar
                        .as_ref()
                        .ok_or_else(|| bad("scalar value missing"))?;
                    Value::Scalar(to_millis(v.value).map_err(bad)?)
                }
                Ok(pb::value::Type::Ranges) => {
                    let v = r
                        .ranges
                        .as_ref()
                        .ok_or_else(|| bad("ranges value missing"))?;
                    if v.range.iter().any(|x| x.begin > x.end) {
                        return Err(bad("a range's begin is above its end"));
                    }
                    Value::Ranges(normalize_ranges(
                        v.range.iter().map(|x| (x.begin, x.end)).collect(),
                    ))
                }
                Ok(pb::value::Type::Set) => {
                    let v = r.set.as_ref().ok_or_else(|| bad("set value missing"))?;
                    Value::Set(v.item.iter().cloned().collect())
                }
                _ => return Err(bad("unsupported resource type")),
            };
            check_value(&r.name, &value).map_err(bad)?;
            out.add_entry_as(&r.name, &role, kind, value)?;
        }
        Ok(out)
    }
}

/// One value of [`Resources::summary`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum SummaryValue {
    Number(f64),
    Text(String),
}

/// Whether a summary's entry is `name` summed to `millis`.
fn summed_as(entry: Option<(&String, &SummaryValue)>, (name, millis): (&str, i64)) -> bool {
    matches!(entry, Some((n, SummaryValue::Number(v))) if n == name && *v == from_millis(millis))
}

fn format_value(value: &Value) -> String {
    match value {
        Value::Scalar(m) => format!("{}", from_millis(*m)),
        Value::Ranges(ranges) => {
            let parts: Vec<String> = ranges.iter().map(|(b, e)| format!("{b}-{e}")).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Set(items) => {
            let parts: Vec<&str> = items.iter().map(String::as_str).collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

/// The values one entry is written as, in text and in protobuf: itself,
/// or, for a sum past what one written entry may hold (several entries of
/// one name merge, and parsing accepts at most [`MAX_SCALAR`] per entry),
/// pieces of at most that much, which reading merges back into the same
/// sum.
fn written_pieces(value: &Value) -> impl Iterator<Item = std::borrow::Cow<'_, Value>> {
    use std::borrow::Cow;
    const MAX_MILLIS: i64 = (MAX_SCALAR * 1000.0) as i64;
    // No allocation for the usual entry: it is written as itself.
    let (whole, rest) = match value {
        Value::Scalar(m) if *m > MAX_MILLIS => (*m / MAX_MILLIS, *m % MAX_MILLIS),
        _ => (0, 0),
    };
    let split = whole > 0;
    (!split)
        .then_some(Cow::Borrowed(value))
        .into_iter()
        .chain(std::iter::repeat_n(
            Cow::Owned(Value::Scalar(MAX_MILLIS)),
            whole as usize,
        ))
        .chain((split && rest != 0).then_some(Cow::Owned(Value::Scalar(rest))))
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for ((name, role, kind), value) in &self.entries {
            for piece in written_pieces(value) {
                let printed = format_value(&piece);
                if !first {
                    f.write_str(";")?;
                }
                first = false;
                match kind {
                    _ if role == UNRESERVED => write!(f, "{name}:{printed}")?,
                    Reservation::Static => write!(f, "{name}({role}):{printed}")?,
                    Reservation::Dynamic => write!(f, "{name}({role}{DYNAMIC_MARK}):{printed}")?,
                }
            }
        }
        Ok(())
    }
}

pub mod mesos_json;
pub mod names;
mod summary_total;

pub use summary_total::SummaryTotal;

#[cfg(test)]
mod tests;
