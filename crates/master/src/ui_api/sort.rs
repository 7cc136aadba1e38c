//! The order of a paged list: `sort=<column>` (ascending) or
//! `sort=-<column>` (descending), each list with its own columns and its
//! own default. The order is over every match, so page two follows page
//! one; ties go by id (ascending), then by the snapshot's order, so that a
//! list polled every few seconds does not shuffle rows that compare equal.
//! Only the requested page is sorted (the rest is partitioned around it).

use std::cmp::Ordering;

use super::{ApiError, ListQuery, bad};
use crate::ui_api::shapes::Page;

/// A column and a direction, checked against the list's columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Order<'q> {
    pub(super) column: &'q str,
    pub(super) descending: bool,
}

/// What one row sorts by in the chosen column.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key<'a> {
    Num(f64),
    /// Compared ignoring ASCII case, then exactly.
    Text(&'a str),
}

impl Key<'_> {
    fn compare(&self, other: &Key<'_>) -> Ordering {
        match (self, other) {
            (Key::Num(a), Key::Num(b)) => a.total_cmp(b),
            (Key::Text(a), Key::Text(b)) => a
                .bytes()
                .map(|c| c.to_ascii_lowercase())
                .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
                .then_with(|| a.cmp(b)),
            (Key::Num(_), Key::Text(_)) => Ordering::Less,
            (Key::Text(_), Key::Num(_)) => Ordering::Greater,
        }
    }
}

/// A time that may be unknown: unknown sorts as the oldest.
pub(super) fn time(t: Option<f64>) -> Key<'static> {
    Key::Num(t.unwrap_or(f64::NEG_INFINITY))
}

/// The list's order from `sort`, or `default` (itself `column` or `-column`).
pub(super) fn order<'q>(
    query: &'q ListQuery,
    columns: &[&str],
    default: &'q str,
) -> Result<Order<'q>, ApiError> {
    let given = query.sort.as_deref().unwrap_or(default);
    let (column, descending) = match given.strip_prefix('-') {
        Some(column) => (column, true),
        None => (given, false),
    };
    if !columns.contains(&column) {
        return Err(bad(format!(
            "sort must be one of {} (a leading '-' for descending), not '{given}'",
            columns.join(", ")
        )));
    }
    Ok(Order { column, descending })
}

impl ListQuery {
    /// Keeps the matches, sorts them by `key` (and then by the id it returns
    /// beside it) in `order`'s direction, counts them and makes rows of the
    /// requested page only.
    pub(super) fn sorted_page<'a, T, U>(
        &self,
        items: impl Iterator<Item = T>,
        keep: impl Fn(&T) -> bool,
        order: Order<'_>,
        key: impl Fn(&T) -> (Key<'a>, &'a str),
        row: impl Fn(T) -> U,
    ) -> Page<U> {
        // Each item's key once, and its place in the snapshot: the last
        // tie-break, so that the order is total and a page is always the
        // same rows.
        let mut keyed: Vec<(Key<'a>, &'a str, usize, T)> = items
            .filter(|i| keep(i))
            .enumerate()
            .map(|(n, item)| {
                let (k, id) = key(&item);
                (k, id, n, item)
            })
            .collect();
        let compare = |a: &(Key<'a>, &'a str, usize, T), b: &(Key<'a>, &'a str, usize, T)| {
            let by_column = a.0.compare(&b.0);
            let by_column = if order.descending {
                by_column.reverse()
            } else {
                by_column
            };
            by_column.then_with(|| a.1.cmp(b.1)).then(a.2.cmp(&b.2))
        };
        let total = keyed.len();
        // Only the page is sorted: what comes before it and what comes
        // after are partitioned off (linear on average), so that the first
        // page of 100k tasks does not pay for sorting them all.
        let start = self.offset.min(total);
        if start > 0 && start < total {
            keyed.select_nth_unstable_by(start, compare);
        }
        let rest = &mut keyed[start..];
        let end = self.limit.min(rest.len());
        if end > 0 && end < rest.len() {
            rest.select_nth_unstable_by(end, compare);
        }
        rest[..end].sort_unstable_by(compare);
        let items = keyed
            .into_iter()
            .skip(start)
            .take(end)
            .map(|(_, _, _, item)| row(item))
            .collect();
        Page {
            total,
            offset: self.offset,
            limit: self.limit,
            items,
        }
    }
}
