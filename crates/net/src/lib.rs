//! The serving edge shared by the master and the agent: one accept loop
//! ([`serve`]) that caps connections, closes peers that do not send a request
//! in time, and pings idle HTTP/2 peers; the descriptor limit raised at start
//! ([`raise_fd_limit`]); and the one gRPC message size both sides use
//! ([`MAX_MESSAGE_BYTES`]); and the outbox every outgoing stream of either
//! takes from ([`outbox`]: unbounded, never drops a message, gives up only
//! a stuck peer); and JSON bodies with Mesos' JSONP ([`jsonp`]); and the
//! refusal of what a browser sends on another site's behalf ([`cross_site`]);
//! and whether a client takes gzip ([`encoding`]).
//!
//! *Invariant:* a connection holds a descriptor only while it does useful
//! work or is within a timeout: a silent or half-sent request is closed after
//! [`ServeLimits::header_read_timeout`], an HTTP/2 peer that stops answering
//! pings after `http2_keep_alive_interval + http2_keep_alive_timeout`, and
//! no more than [`ServeLimits::max_connections`] are open at once.

pub mod body_limit;
pub mod cross_site;
pub mod encoding;
mod first_bytes;
pub mod jsonp;
mod limits;
pub mod off_workers;
pub mod outbox;
mod serve;

pub use limits::{FdLimitError, connection_cap, raise_fd_limit};
pub use serve::{ServeLimits, serve, serve_local, serve_tls};
pub use tokio_rustls::TlsAcceptor;

/// The largest gRPC message (encoded, without its 5-byte frame header) any
/// Agora endpoint sends or accepts: tonic's default decoding limit, set
/// explicitly on both sides so that what one side may send the other can
/// always read. A master refuses an ACCEPT whose launch message would be
/// larger, rather than forward it and break the agent's session.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
