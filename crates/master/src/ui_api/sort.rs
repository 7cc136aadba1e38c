//! The order of a paged list: `sort=<column>` (ascending) or
//! `sort=-<column>` (descending), each list with its own columns and its
//! own default. The order is over every match, so page two follows page
//! one; ties go by id (ascending), then by the snapshot's order, so that a
//! list polled every few seconds does not shuffle rows that compare equal.
//! Only the requested page is sorted (the rest is partitioned around it),
//! and only the rows that can be on it or before it are kept while the
//! list is walked.

use std::cmp::Ordering;

use super::{ApiError, ListQuery, bad};
use crate::ui_api::shapes::Page;

/// Kept rows below which a list is not pruned (pruning a few rows often
/// costs more than it saves).
const PRUNE_AT_LEAST: usize = 1024;

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
        // Each item's key once, and its place among the matches: the last
        // tie-break, so that the order is total and a page is always the
        // same rows.
        let compare = |a: &(Key<'a>, &'a str, usize, T), b: &(Key<'a>, &'a str, usize, T)| {
            compare_keys(a, b, order)
        };
        // Only what can be on the page or before it is kept: whenever the
        // kept rows pass twice that, the best are partitioned off and the
        // rest dropped (linear on average), so that the first page of 100k
        // tasks neither sorts nor holds them all.
        let wanted = self.offset.saturating_add(self.limit);
        let prune_at = wanted.saturating_mul(2).max(PRUNE_AT_LEAST);
        let mut keyed: Vec<(Key<'a>, &'a str, usize, T)> = Vec::new();
        // After a prune: the best row dropped. A row that does not come
        // before it cannot be among the best `wanted`, and is not kept.
        let mut bound: Option<(Key<'a>, &'a str, usize)> = None;
        let mut total = 0;
        for item in items.filter(|i| keep(i)) {
            let (k, id) = key(&item);
            let n = total;
            total += 1;
            if let Some((bk, bid, bn)) = bound {
                let beyond = (bk, bid, bn, ());
                if compare_keys(&(k, id, n, ()), &beyond, order).is_ge() {
                    continue;
                }
            }
            keyed.push((k, id, n, item));
            if keyed.len() >= prune_at {
                keyed.select_nth_unstable_by(wanted, compare);
                let (bk, bid, bn, _) = &keyed[wanted];
                bound = Some((*bk, *bid, *bn));
                keyed.truncate(wanted);
            }
        }
        // What is kept holds the best `wanted` matches: the page is at
        // `offset` among them.
        let start = self.offset.min(keyed.len());
        if start > 0 && start < keyed.len() {
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

/// Rows in `order`: by the column, then by id, then by place.
pub(super) fn compare_keys<T, U>(
    a: &(Key<'_>, &str, usize, T),
    b: &(Key<'_>, &str, usize, U),
    order: Order<'_>,
) -> Ordering {
    let by_column = a.0.compare(&b.0);
    let by_column = if order.descending {
        by_column.reverse()
    } else {
        by_column
    };
    by_column.then_with(|| a.1.cmp(b.1)).then(a.2.cmp(&b.2))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Key, Order};
    use crate::ui_api::ListQuery;

    /// The page a full sort of every match gives.
    fn reference(
        rows: &[(u8, u8)],
        keep_odd: bool,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<usize>) {
        let mut matches: Vec<(usize, (u8, u8))> = rows
            .iter()
            .copied()
            .filter(|r| !keep_odd || r.1 % 2 == 1)
            .enumerate()
            .collect();
        let total = matches.len();
        matches.sort_by(|a, b| {
            let by_column = a.1.0.cmp(&b.1.0);
            let by_column = if descending {
                by_column.reverse()
            } else {
                by_column
            };
            let id = |r: &(usize, (u8, u8))| format!("{:03}", r.1.1);
            by_column
                .then_with(|| id(a).cmp(&id(b)))
                .then(a.0.cmp(&b.0))
        });
        let page = matches
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(_, (k, id))| usize::from(k) * 1000 + usize::from(id))
            .collect();
        (total, page)
    }

    proptest! {
        /// Pruning while walking gives the page and the total a full sort
        /// gives, whatever the offset, the limit and the ties.
        #[test]
        fn a_page_is_the_full_sorts_page(
            rows in proptest::collection::vec((0u8..8, 0u8..=255), 0..3000),
            keep_odd: bool,
            descending: bool,
            offset in 0usize..2600,
            limit in 0usize..700,
        ) {
            let ids: Vec<String> = (0..=255).map(|n| format!("{n:03}")).collect();
            let query = ListQuery { offset, limit, ..ListQuery::default() };
            let order = Order { column: "k", descending };
            let page = query.sorted_page(
                rows.iter(),
                |r| !keep_odd || r.1 % 2 == 1,
                order,
                |r| (Key::Num(f64::from(r.0)), ids[usize::from(r.1)].as_str()),
                |r| usize::from(r.0) * 1000 + usize::from(r.1),
            );
            let (total, expected) = reference(&rows, keep_odd, descending, offset, limit);
            prop_assert_eq!(page.total, total);
            prop_assert_eq!(page.items, expected);
        }
    }
}
