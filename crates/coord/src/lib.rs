//! Coordination for Agora masters: leader election, leader detection and
//! registry storage, over ZooKeeper (the registry also in a file or in
//! memory). Test helpers (a real ZooKeeper server, a cuttable proxy, a
//! registry store that fails on demand) live in `testing`, behind the
//! `testing` feature that only dev-dependencies enable.
//!
//! - [`Contender`]: a master's candidacy. Its [`Leadership`] watch says
//!   whether it leads, with the term's epoch. Over ZooKeeper a leader stops
//!   leading the moment its session is disconnected, not only when it
//!   expires, and leads again only after reconnecting and re-checking that
//!   its node is still the lowest.
//! - [`LeaderDetector`]: who leads, as a [`MasterRecord`] watch, for agents,
//!   frameworks and non-leading masters.
//! - [`RegistryStore`]: a versioned key-value store with compare-and-set
//!   writes for the master's registry, in ZooKeeper, in a file, or in memory.
//!
//! The ZooKeeper layout under a `zk://hosts/path` URL follows Mesos, so
//! Mesos-aware tools find an Agora leader: masters contend with
//! EPHEMERAL_SEQUENTIAL `<path>/json.info_<seq>` nodes holding
//! [`MasterRecord`] JSON, the lowest `<seq>` leads; the registry lives in
//! `<path>/registry/<key>`.
//!
//! *Architecture invariant:* no `zookeeper-client` type appears in this
//! crate's public API; callers never depend on it.
//!
//! Timing, with a session timeout `T` (default 10 s, Mesos' default):
//! - graceful hand-over ([`Contender::close`], or drop): the node is deleted
//!   at once and the next contender leads within milliseconds;
//! - a leader whose connection drops stops leading at once; on a silent
//!   partition (no FIN/RST) it stops after the client's connection timeout
//!   (`0.4 T` plus a tick); the server expires its session, and a successor
//!   leads, no earlier than `T` after its last message. So a deposed leader
//!   has always stopped before its successor starts;
//! - a crashed leader is replaced about `T` after the crash.
//!
//! Choices: a [`LeaderDetector`] keeps reporting the last leader while its
//! session is merely disconnected (the leader's node may well be alive) and
//! reports `None` once the session expires; a contender's `Follower` state
//! says `leader: None` whenever it is disconnected. Epochs are ZooKeeper
//! sequence numbers of the election nodes, so they only grow as long as the
//! election znode itself is not deleted.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use agora_coord::{Contender, LeaderDetector, MasterRecord, ZkOptions, ZkUrl};
//!
//! let url = ZkUrl::parse("zk://127.0.0.1:2181/agora")?;
//! let me = MasterRecord::new("id-1", "m1", "10.0.0.1".parse()?, 5050, "0.1.0");
//! let contender = Contender::zookeeper(&url, me, ZkOptions::default());
//! let mut leadership = contender.leadership();
//! leadership.wait_for(|l| l.is_leading()).await?;
//! // ... act as the leader while `leadership` says so ...
//! contender.close().await;
//!
//! let detector = LeaderDetector::zookeeper(&url, ZkOptions::default());
//! let leader = detector.leader().borrow().clone();
//! # let _ = leader; Ok(()) }
//! ```

mod election;
mod leadership;
mod record;
mod registry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod url;
mod zk;

pub use election::{Contender, LeaderDetector};
pub use leadership::Leadership;
pub use record::{MasterAddressInfo, MasterCapability, MasterRecord, RecordError};
pub use registry::{
    FileRegistryStore, MAX_KEY_BYTES, MAX_VALUE_BYTES, MemoryRegistryStore, REGISTRY_DIR,
    REGISTRY_FILE, REGISTRY_LOG, RegistryEntry, RegistryError, RegistryStore, Version,
    ZkRegistryStore, validate_key,
};
pub use url::{DEFAULT_ZK_PORT, ZkUrl, ZkUrlError};
pub use zk::{DEFAULT_SESSION_TIMEOUT, ZkOptions};
