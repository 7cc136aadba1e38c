//! The callback thread's queue discipline, kept apart from JNI so that it
//! can be tested without a JVM.
//!
//! Invariant: a callback queued before the driver ended is handed on, even
//! when the end is noticed between two waits. A driver queues the error
//! that aborts it *before* it marks itself aborted, so once `ended()` is
//! seen true that error is already in the queue; draining what is left
//! before leaving keeps it (a plain `break` on a timeout lost it whenever
//! the abort fell between the timeout and the check).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// Hands every callback from `rx` to `handle`, in order, until every sender
/// is gone or `ended()` is true and the queue is empty. `ended` is checked
/// each `poll` while nothing arrives.
pub(crate) fn run<C>(
    rx: &Receiver<C>,
    poll: Duration,
    ended: impl Fn() -> bool,
    mut handle: impl FnMut(C),
) {
    loop {
        match rx.recv_timeout(poll) {
            Ok(callback) => handle(callback),
            Err(RecvTimeoutError::Timeout) => {
                if ended() {
                    while let Ok(callback) = rx.try_recv() {
                        handle(callback);
                    }
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::mpsc;

    use super::*;

    const POLL: Duration = Duration::from_millis(1);

    #[test]
    fn a_callback_queued_just_before_the_end_is_still_handed_on() {
        let (tx, rx) = mpsc::channel();
        let aborted = Cell::new(false);
        let mut seen = Vec::new();
        // The driver's order: the error is queued, then the driver aborts,
        // both after the thread's wait timed out and before it checks.
        run(
            &rx,
            POLL,
            || {
                if !aborted.get() {
                    tx.send("error").expect("queue open");
                    aborted.set(true);
                }
                aborted.get()
            },
            |c| seen.push(c),
        );
        assert_eq!(seen, vec!["error"]);
    }

    #[test]
    fn callbacks_are_handed_on_in_order_until_the_senders_are_gone() {
        let (tx, rx) = mpsc::channel();
        for i in 0..5 {
            tx.send(i).expect("queue open");
        }
        drop(tx);
        let mut seen = Vec::new();
        run(&rx, POLL, || false, |c| seen.push(c));
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn an_ended_driver_with_nothing_queued_ends_the_loop() {
        let (_tx, rx) = mpsc::channel::<u8>();
        let mut handled = 0;
        run(&rx, POLL, || true, |_| handled += 1);
        assert_eq!(handled, 0);
    }
}
