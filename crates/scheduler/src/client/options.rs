//! What a subscription is configured with, and the SDK's fixed numbers.

use std::time::Duration;

/// The gRPC request metadata key that carries the subscription's stream id.
pub const STREAM_ID_METADATA: &str = "agora-stream-id";

/// A framework is considered disconnected after this many heartbeat
/// intervals without any event.
pub const HEARTBEAT_MISSES: u32 = 5;

/// Options for [`SchedulerClient::connect`](crate::SchedulerClient::connect).
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// How long `connect` keeps trying to reach the master and subscribe
    /// before giving up; also the bound on each re-subscription attempt.
    /// Default 30 s.
    pub connect_timeout: Duration,
    /// Roles to subscribe suppressed (no offers until revived). Later
    /// [`SchedulerClient::suppress`](crate::SchedulerClient::suppress) and
    /// [`SchedulerClient::revive`](crate::SchedulerClient::revive) calls
    /// update the set that re-subscriptions send.
    pub suppressed_roles: Vec<String>,
    /// Acknowledge status updates that carry a `uuid` as soon as they are
    /// queued for the application (in batches when many are). Default on.
    /// Turn it off to acknowledge with
    /// [`SchedulerClient::acknowledge`](crate::SchedulerClient::acknowledge)
    /// after processing an update (e.g. after persisting it). The queue
    /// holds 1,024 events: an application that stops reading its
    /// [`EventStream`](crate::EventStream) (say, while it awaits its own
    /// calls) stops the acknowledgements too, and past the agents' retry
    /// interval (10 s) they send their updates again.
    pub auto_acknowledge: bool,
    /// Bound on every unary call. Default 10 s.
    pub call_timeout: Duration,
    /// The framework's credential, sent (HTTP Basic, in the `authorization`
    /// metadata) on every call, the SUBSCRIBE of each re-subscription
    /// included; its principal should be `FrameworkInfo.principal`, which
    /// a master that authenticates frameworks requires. Default none.
    pub credential: Option<agora_auth::credentials::Credential>,
    /// First re-subscription delay. Default 100 ms.
    pub backoff_initial: Duration,
    /// Longest re-subscription delay. Default 5 s.
    pub backoff_max: Duration,
    /// TLS to the master: with it every master (named, or detected in
    /// ZooKeeper) is reached at `https://`, its certificate verified against
    /// the configured CA with its host name or IP checked, and a client
    /// certificate presented where one is configured. Without it the master
    /// is reached in plaintext, and an `https://` address is refused rather
    /// than tried without verification. Default none.
    pub tls: Option<agora_tls::ClientTls>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            suppressed_roles: Vec::new(),
            auto_acknowledge: true,
            call_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            credential: None,
            tls: None,
        }
    }
}
