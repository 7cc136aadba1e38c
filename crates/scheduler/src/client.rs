//! The subscription driver and the cloneable call handle.
//!
//! Split by job: `options.rs` (what a subscription is configured with),
//! `subscribe.rs` (one SUBSCRIBE attempt), `handle.rs` (the call handle and
//! the session it shares), `driver.rs` (connecting, then forwarding events,
//! acknowledging and re-subscribing). The modules depend on each other in
//! that order only.

mod driver;
mod handle;
mod options;
mod subscribe;

pub use handle::{EventStream, SchedulerClient};
pub use options::{HEARTBEAT_MISSES, STREAM_ID_METADATA, SubscribeOptions};

#[cfg(test)]
mod tests;
