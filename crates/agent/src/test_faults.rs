//! Faults an end-to-end test can ask of the agent, in debug builds only:
//! `AGORA_TEST_FAULTS` names points (comma-separated) where the agent
//! exits at once, as a SIGKILL would stop it, to check what a restart
//! recovers from there. A release build ignores the variable, so nobody
//! outside a test can stop an agent this way.

use std::sync::OnceLock;

/// The environment variable naming the faults (debug builds only).
pub const ENV: &str = "AGORA_TEST_FAULTS";

/// A point where a test may have the agent exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitPoint {
    /// An executor's run is recorded, nothing of it created yet.
    BeforeExecutorStart,
    /// An executor's container and process (or its supervisor's HOST) are
    /// created, the process not yet recorded.
    BeforeExecutorRecorded,
}

impl ExitPoint {
    /// Its name in [`ENV`].
    pub fn name(self) -> &'static str {
        match self {
            Self::BeforeExecutorStart => "agent-exit-before-executor-start",
            Self::BeforeExecutorRecorded => "agent-exit-before-executor-recorded",
        }
    }
}

/// Exits the process here when a test asked for it (debug builds).
pub fn exit_if_asked(point: ExitPoint) {
    if !cfg!(debug_assertions) {
        return;
    }
    static ASKED: OnceLock<Vec<String>> = OnceLock::new();
    let asked = ASKED.get_or_init(|| {
        std::env::var(ENV)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    });
    if asked.iter().any(|a| a == point.name()) {
        tracing::warn!(fault = point.name(), "test fault: the agent exits here");
        std::process::exit(86);
    }
}
