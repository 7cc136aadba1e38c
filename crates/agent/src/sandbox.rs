//! Where an executor run's sandbox lives under the agent's work dir:
//! Mesos' layout, so that tools that know Mesos' paths find it.

use std::path::{Path, PathBuf};

/// `<work_dir>/slaves/<agent>/frameworks/<framework>/executors/<executor>/runs/<run>`.
pub fn sandbox_path(
    work_dir: &Path,
    agent_id: &str,
    framework_id: &str,
    executor_id: &str,
    run_id: &str,
) -> PathBuf {
    work_dir
        .join("slaves")
        .join(agent_id)
        .join("frameworks")
        .join(framework_id)
        .join("executors")
        .join(executor_id)
        .join("runs")
        .join(run_id)
}
