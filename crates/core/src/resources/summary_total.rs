//! Resource summaries added up exactly, in any grouping.
//!
//! A summary (`Resources::summary`) shows scalars as `f64` units. Adding
//! such numbers as floats gives a total that depends on the order and the
//! grouping of the additions (`0.1 + 0.2` is not `0.3`), so a sum made
//! from partial sums (one per chunk of a list, kept from one read to the
//! next) would differ in its last digits from the same sum made in one
//! pass. [`SummaryTotal`] adds scalars in thousandths, as `Resources`
//! keeps them, and merges ranges and sets, so every grouping gives the same
//! total.

use std::collections::BTreeMap;

use super::{SummaryValue, Value, format_value, from_millis, parse_value};

/// Summaries added up: see the module docs. A name shows the kind of the
/// first value added under it (a number, or a text: ranges or a set), as
/// `mesos_json::add_summary` keeps `into`'s value where kinds disagree;
/// values of the other kind are still counted, so that a total of partial
/// totals shows what one pass would. A text that does not parse (no
/// summary of Agora's `Resources` holds one) is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryTotal {
    /// By name, in name order (a handful: cpus, mem, disk, ports...).
    by_name: Vec<(String, Total)>,
}

/// One name's total.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Total {
    /// Whether the first value added was a number.
    number_first: bool,
    /// The numbers' sum, in thousandths (saturating).
    millis: i64,
    /// The texts' values merged (`None` while no text was added).
    merged: Option<Value>,
}

impl SummaryTotal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one summary's values.
    pub fn add_summary(&mut self, summary: &BTreeMap<String, SummaryValue>) {
        for (name, value) in summary {
            match value {
                SummaryValue::Number(n) => self.add_millis(name, summary_millis(*n)),
                SummaryValue::Text(text) => {
                    if let Ok(value) = parse_value(name, text) {
                        merge(&mut self.total(name, false).merged, value);
                    }
                }
            }
        }
    }

    /// Adds another total (a partial sum).
    pub fn add(&mut self, other: &SummaryTotal) {
        for (name, total) in &other.by_name {
            let have = self.total(name, total.number_first);
            have.millis = have.millis.saturating_add(total.millis);
            if let Some(value) = &total.merged {
                merge(&mut have.merged, value.clone());
            }
        }
    }

    /// The total as a summary.
    pub fn to_summary(&self) -> BTreeMap<String, SummaryValue> {
        self.by_name
            .iter()
            .filter_map(|(name, total)| {
                let value = if total.number_first {
                    SummaryValue::Number(from_millis(total.millis))
                } else {
                    SummaryValue::Text(format_value(total.merged.as_ref()?))
                };
                Some((name.clone(), value))
            })
            .collect()
    }

    fn add_millis(&mut self, name: &str, millis: i64) {
        let have = self.total(name, true);
        have.millis = have.millis.saturating_add(millis);
    }

    /// `name`'s total, made with `number_first` if it had none.
    fn total(&mut self, name: &str, number_first: bool) -> &mut Total {
        let at = match self.by_name.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(at) => at,
            Err(at) => {
                let total = Total {
                    number_first,
                    millis: 0,
                    merged: None,
                };
                self.by_name.insert(at, (name.to_owned(), total));
                at
            }
        };
        &mut self.by_name[at].1
    }
}

/// A summary's number in thousandths: summaries are made from thousandths,
/// so this gives back exactly what was summarized (saturating at `i64`'s
/// bounds; not a number counts as 0).
fn summary_millis(n: f64) -> i64 {
    (n * 1000.0).round() as i64
}

/// `value` merged into `into` as `Resources` merges one name's values.
fn merge(into: &mut Option<Value>, value: Value) {
    match into {
        Some(have) => have.absorb(value),
        None => *into = Some(value),
    }
}

#[cfg(test)]
mod tests;
