//! Agora's domain model, free of I/O: no tokio, no sockets, no clocks.
//!
//! Everything here is deterministic so that the master's and agent's state
//! machines, which are built on it, can be tested by simulation.

pub mod backoff;
pub mod ids;
pub mod resources;
pub mod role;
pub mod task;
pub mod text;
pub mod time;

pub use backoff::Backoff;
pub use ids::{AgentId, ExecutorId, FrameworkId, IdError, OfferId, TaskId};
pub use resources::{Resources, ResourcesError};
pub use role::{RoleError, validate_role};
pub use task::{TaskState, TaskStateError};
pub use text::SmallText;
