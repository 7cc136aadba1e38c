//! The task list in its default order, newest update first, without a
//! pass over every task.
//!
//! Each chunk of a task list carries its newest status time, never older
//! than any of its tasks' (`SharedList::dated_chunks`). The chunks are read
//! from the newest down, and reading stops once the rows that can be on the
//! page or before it are all newer than every chunk left: at 100,000 tasks
//! a first page reads the chunks where tasks changed last, not 100,000
//! scattered rows. The page and the total are those of the full walk
//! (`ListQuery::sorted_page`): the same order (time, then id, then place
//! among the matches), checked against it by a proptest.

use super::sort::{Key, Order, compare_keys, time};
use crate::snapshot::{FrameworkView, SharedList, TaskView};

/// A task row with its framework.
pub(super) type Row<'s> = (&'s TaskView, &'s FrameworkView);

/// A row as it sorts: its time, its id, its place among the matches.
type Placed<'s> = (Key<'s>, &'s str, usize, Row<'s>);

/// Rows kept beyond the wanted ones before the kept are cut back to them
/// (at least; a quarter of the wanted for deep pages).
const SLACK: usize = 64;

/// Every row of `lists` counted (in this order: a row's place is its index
/// in them), and the rows at `offset..offset + limit` newest first.
pub(super) fn newest_first<'s>(
    lists: impl Iterator<Item = (&'s SharedList<TaskView>, &'s FrameworkView)>,
    offset: usize,
    limit: usize,
) -> (usize, Vec<Row<'s>>) {
    let order = Order {
        column: "updated",
        descending: true,
    };
    let compare = |a: &Placed<'s>, b: &Placed<'s>| compare_keys(a, b, order);
    // Every chunk with its newest and the place of its first row.
    let mut chunks = Vec::new();
    let mut total = 0;
    for (list, framework) in lists {
        for (newest, rows) in list.dated_chunks() {
            chunks.push((newest, total, rows, framework));
            total += rows.len();
        }
    }
    let wanted = offset.saturating_add(limit);
    if wanted == 0 {
        return (total, Vec::new());
    }
    chunks.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let cut_at = wanted.saturating_add(SLACK.max(wanted / 4));
    let mut kept: Vec<Placed<'s>> = Vec::new();
    // Once the kept were cut back: the last of the best `wanted`. A row
    // that does not come before it cannot be on the page or before it.
    let mut bar: Option<Placed<'s>> = None;
    for (newest, first, rows, framework) in chunks {
        if let Some((Key::Num(bar_time), ..)) = bar
            && newest.total_cmp(&bar_time).is_lt()
        {
            // This chunk's rows and every later chunk's are older than
            // the bar: none comes before it.
            break;
        }
        for (i, task) in rows.iter().enumerate() {
            let row = (
                time(task.status_time),
                task.id.as_str(),
                first + i,
                (task.as_ref(), framework),
            );
            if bar.is_some_and(|b| compare(&row, &b).is_ge()) {
                continue;
            }
            kept.push(row);
        }
        if kept.len() >= cut_at {
            kept.select_nth_unstable_by(wanted - 1, compare);
            kept.truncate(wanted);
            bar = kept.last().copied();
        }
    }
    kept.sort_unstable_by(compare);
    let page = kept
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, _, _, row)| row)
        .collect();
    (total, page)
}
