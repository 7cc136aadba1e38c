//! Agora's framework SDK.
//!
//! [`SchedulerClient::connect`] subscribes a framework to the master's gRPC
//! scheduler API and returns a cloneable call handle and an [`EventStream`]
//! of typed [`Event`]s. The SDK then keeps the subscription alive: when the
//! stream breaks, or no event (not even a heartbeat) arrives for
//! [`HEARTBEAT_MISSES`] heartbeat intervals, it reports
//! [`Event::Disconnected`], re-subscribes with the framework's id using
//! exponential backoff with jitter, and reports [`Event::Reconnected`]
//! followed by [`Event::Subscribed`]. Calls made through the handle always
//! carry the current stream id. Status updates that need an acknowledgement
//! are acknowledged automatically unless
//! [`SubscribeOptions::auto_acknowledge`] is off.
//!
//! ```no_run
//! # async fn demo() -> Result<(), agora_scheduler::Error> {
//! use agora_scheduler::{Event, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder};
//!
//! let framework = FrameworkBuilder::new("hello").build();
//! let (client, mut events) =
//!     SchedulerClient::connect("127.0.0.1:5050", framework, SubscribeOptions::default()).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Offers(offers) => {
//!             for offer in offers {
//!                 let task = TaskBuilder::command("hello-1", "hello", "echo hello")
//!                     .cpus(0.1)
//!                     .mem(16.0)
//!                     .build_for_offer(&offer);
//!                 client.launch(vec![offer.id.clone().unwrap_or_default()], vec![task], None).await?;
//!             }
//!         }
//!         Event::Update(status) => println!("{status:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod address;
mod backoff;
mod client;
mod error;
mod event;
mod framework;
mod task;

pub use address::{
    AddressError, DEFAULT_MASTER_PORT, MasterAddress, MasterDetector, ZkMasterDetector,
    master_detector,
};
/// A framework's principal and secret, for [`SubscribeOptions::credential`].
pub use agora_auth::credentials::Credential;
pub use backoff::Backoff;
pub use client::{
    EventStream, HEARTBEAT_MISSES, STREAM_ID_METADATA, SchedulerClient, SubscribeOptions,
};
pub use error::Error;
pub use event::{DEFAULT_HEARTBEAT_INTERVAL, Event};
pub use framework::{DEFAULT_FAILOVER_TIMEOUT, FrameworkBuilder, current_user};
pub use task::{TaskBuilder, offer_cpus_mem, scalar_resource, scalar_sum};

/// The wire types, re-exported so frameworks need no direct dependency on
/// `agora-proto`.
pub use agora_proto::v1 as proto;

/// Whether a task state is terminal (the task will not change state again):
/// FINISHED, FAILED, KILLED, ERROR, LOST, DROPPED, GONE, GONE_BY_OPERATOR.
pub fn is_terminal(state: proto::TaskState) -> bool {
    use proto::TaskState as S;
    matches!(
        state,
        S::TaskFinished
            | S::TaskFailed
            | S::TaskKilled
            | S::TaskError
            | S::TaskLost
            | S::TaskDropped
            | S::TaskGone
            | S::TaskGoneByOperator
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::TaskState as S;

    #[test]
    fn terminal_states_match_mesos() {
        for s in [
            S::TaskFinished,
            S::TaskFailed,
            S::TaskKilled,
            S::TaskError,
            S::TaskLost,
        ] {
            assert!(is_terminal(s), "{s:?}");
        }
        for s in [
            S::TaskStaging,
            S::TaskStarting,
            S::TaskRunning,
            S::TaskKilling,
            S::TaskUnreachable,
            S::TaskUnknown,
        ] {
            assert!(!is_terminal(s), "{s:?}");
        }
    }
}
