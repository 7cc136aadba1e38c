//! Helpers shared by the integration tests.

use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Waits for `child` to exit, failing the test if it outlives `deadline`.
pub(crate) fn wait_with_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let start = Instant::now();
    for _ in 0..100_000 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            start.elapsed() < deadline,
            "child still running after {deadline:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    panic!("child still running");
}
