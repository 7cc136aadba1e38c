//! The Agora agent and the executor it runs tasks under.
//!
//! [`state`] is the agent's pure state machine: tasks and executors it runs,
//! and the status-update manager that delivers every update to the master
//! in order, at least once, until acknowledged. [`shell`] runs it: the
//! session with the master, the executor endpoint on the agent's port, and
//! the executor processes. [`executor`] is `agora executor`, the small
//! per-task supervisor that starts the task's process in its sandbox and
//! reports its states. [`checkpoint`] is what the agent persists under
//! `<work_dir>/meta` so that a restarted agent re-attaches to its executors.

pub mod authn;
pub mod authz_views;
pub mod checkpoint;
pub mod containers;
pub mod executor;
pub mod executor_auth;
pub mod files;
pub mod files_authz;
pub mod gc;
pub mod health_check;
pub mod host;
pub mod launch;
pub mod mesos_v0;
pub mod metrics;
pub mod operator_api;
mod options;
pub mod orphans;
mod procfs;
mod program;
pub mod resources;
pub mod sandbox;
pub mod shell;
pub mod snapshot;
pub mod state;
pub mod status_bound;
pub mod test_faults;

pub use shell::{AgentOptions, run_agent};
