//! Exits of orphaned tasks, from the keeper to its worker.
//!
//! When a worker dies its tasks are re-parented to the keeper (a child
//! subreaper), which reaps them. It writes each exit as one line,
//! `<pid> <raw wait status>\n`, on a pipe to the worker it started next,
//! every exit it has seen first, then each one as it comes. The worker
//! keeps them in an [`ExitBook`], where an adopted run's executor waits
//! for its task's exit.
//!
//! *Invariants:*
//! - a line that does not parse is skipped, never trusted;
//! - an exit counts for an adopted task only if it arrived after the task
//!   was last seen alive (a pid the kernel reused has an older exit);
//! - the book is bounded: the oldest exits are dropped past
//!   [`MAX_EXITS`].

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Exits kept for adoptions still to come.
pub const MAX_EXITS: usize = 65_536;

/// One orphan's exit: its pid and its raw wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanExit {
    pub pid: u32,
    pub raw_status: i32,
}

impl OrphanExit {
    /// The line the keeper writes.
    pub fn line(&self) -> String {
        format!("{} {}\n", self.pid, self.raw_status)
    }

    /// Reads one line (without its newline); `None` when it is not one.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split(' ');
        let pid = words.next()?.parse().ok()?;
        let raw_status = words.next()?.parse().ok()?;
        if words.next().is_some() || pid == 0 {
            return None;
        }
        Some(Self { pid, raw_status })
    }

    pub fn status(&self) -> std::process::ExitStatus {
        std::os::unix::process::ExitStatusExt::from_raw(self.raw_status)
    }
}

/// Where the worker keeps orphans' exits and adopted tasks wait for them.
#[derive(Debug, Default)]
pub struct ExitBook(Mutex<Book>);

#[derive(Debug, Default)]
struct Book {
    /// Bumped by every arrival; an adoption remembers it.
    seq: u64,
    /// The latest exit of each pid, with the sequence it arrived at.
    arrived: HashMap<u32, (u64, OrphanExit)>,
    /// Arrival order, for the bound.
    order: VecDeque<(u32, u64)>,
    waiting: HashMap<u32, Vec<(u64, oneshot::Sender<OrphanExit>)>>,
}

impl ExitBook {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sequence now: exits that arrive later are newer than anything
    /// seen alive after this call.
    pub fn mark(&self) -> u64 {
        self.book().seq
    }

    /// An exit arrived from the keeper.
    pub fn arrived(&self, exit: OrphanExit) {
        let mut book = self.book();
        book.seq += 1;
        let seq = book.seq;
        if let Some(waiters) = book.waiting.remove(&exit.pid) {
            let (ready, later): (Vec<_>, Vec<_>) =
                waiters.into_iter().partition(|(after, _)| seq > *after);
            for (_, tx) in ready {
                let _ = tx.send(exit);
            }
            if !later.is_empty() {
                book.waiting.insert(exit.pid, later);
            }
        }
        book.arrived.insert(exit.pid, (seq, exit));
        book.order.push_back((exit.pid, seq));
        while book.order.len() > MAX_EXITS {
            let Some((pid, seq)) = book.order.pop_front() else {
                break;
            };
            if book.arrived.get(&pid).is_some_and(|(s, _)| *s == seq) {
                book.arrived.remove(&pid);
            }
        }
    }

    /// The exit of `pid` that arrives (or arrived) after sequence `after`.
    pub fn wait_for(&self, pid: u32, after: u64) -> oneshot::Receiver<OrphanExit> {
        let (tx, rx) = oneshot::channel();
        let mut book = self.book();
        match book.arrived.get(&pid) {
            Some((seq, exit)) if *seq > after => {
                let _ = tx.send(*exit);
            }
            _ => book.waiting.entry(pid).or_default().push((after, tx)),
        }
        rx
    }

    /// Reads the keeper's lines into the book until the pipe ends (on a
    /// thread of its own: the pipe is blocking).
    pub fn read_from(self: std::sync::Arc<Self>, pipe: std::fs::File) {
        let reader = std::io::BufReader::new(pipe);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            match OrphanExit::parse(&line) {
                Some(exit) => self.arrived(exit),
                None => tracing::warn!(line = %line, "unreadable exit from the keeper"),
            }
        }
        tracing::debug!("the keeper's exit pipe closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn an_exit_line_reads_back(pid in 1u32.., raw_status in any::<i32>()) {
            let exit = OrphanExit { pid, raw_status };
            let line = exit.line();
            prop_assert_eq!(OrphanExit::parse(line.trim_end_matches('\n')), Some(exit));
        }

        #[test]
        fn garbage_is_never_an_exit_and_never_panics(line in ".{0,40}") {
            if let Some(exit) = OrphanExit::parse(&line) {
                prop_assert!(exit.pid != 0);
                prop_assert_eq!(line.split(' ').count(), 2);
            }
        }
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            "", "12", "12 ", "0 0", "-1 0", "12 0 3", "x 0", "12 y", " 12 0",
        ] {
            assert_eq!(OrphanExit::parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn an_exit_counts_only_if_it_arrived_after_the_task_was_seen_alive() {
        let book = ExitBook::default();
        let stale = OrphanExit {
            pid: 40,
            raw_status: 256,
        };
        book.arrived(stale);
        // Seen alive after the stale exit: only a newer one counts.
        let mark = book.mark();
        let mut rx = book.wait_for(40, mark);
        assert!(rx.try_recv().is_err());
        let fresh = OrphanExit {
            pid: 40,
            raw_status: 0,
        };
        book.arrived(fresh);
        assert_eq!(rx.try_recv().ok(), Some(fresh));
        // Not seen alive: whatever arrived counts, at once.
        let mut rx = book.wait_for(40, 0);
        assert_eq!(rx.try_recv().ok(), Some(fresh));
        // Another pid's exit wakes nobody else.
        let mut rx = book.wait_for(41, book.mark());
        book.arrived(OrphanExit {
            pid: 42,
            raw_status: 0,
        });
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn the_book_is_bounded() {
        let book = ExitBook::default();
        for pid in 1..=(MAX_EXITS as u32 + 10) {
            book.arrived(OrphanExit { pid, raw_status: 0 });
        }
        let kept = book.book().arrived.len();
        assert_eq!(kept, MAX_EXITS);
        // The oldest went first.
        assert!(book.wait_for(1, 0).try_recv().is_err());
        assert!(book.wait_for(MAX_EXITS as u32 + 10, 0).try_recv().is_ok());
    }
}
