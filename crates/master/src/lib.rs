//! The Agora master.
//!
//! [`state`] is the master's pure state machine: it owns agents, frameworks,
//! offers and tasks, takes inputs with the current time, and returns effects
//! (messages to send, connections to close). It never touches a socket, a
//! clock or a thread. The shell runs it: one tokio task (the actor) owns the
//! state and carries out its effects, the gRPC services and the HTTP API
//! turn requests into its commands (the protocol), and readers (`/state`,
//! `/metrics`, the UI) only see the snapshot it publishes. [`shell`] wires
//! them together and runs the leadership terms, each one supervised set of
//! tasks.

mod actor;
pub mod authn;
mod authz_views;
mod by_address;
mod error;
pub mod files_proxy;
pub mod http;
mod leadership;
pub mod mesos_v0;
pub mod metrics;
mod operator_api;
mod options;
mod protocol;
mod registry_writer;
mod scheduler_http;
mod services;
pub mod shell;
pub mod snapshot;
pub mod snapshot_body;
pub mod state;
mod supervisor;
pub mod ui_api;

pub use authn::Authentication;
pub use shell::{MasterOptions, run_master, run_master_with_store};
