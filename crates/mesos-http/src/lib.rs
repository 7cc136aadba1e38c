//! The framing of Mesos' v1 HTTP APIs (`/api/v1/scheduler`, `/api/v1/executor`, `/api/v1`)
//! over the prost types of `agora-proto`, whose field names and numbers follow Mesos v1.
//!
//! Three pure, I/O-free pieces the HTTP handlers use:
//!
//! - [`Media`]: which of Mesos' two media types a request body is (`Content-Type`) and which
//!   one the response must be (`Accept`), with the HTTP status of each refusal ([`MediaError`]).
//! - [`decode`] and [`encode`]: a message from or to a body of either type. JSON follows
//!   Mesos' own mapping (stout's), not proto3's canonical JSON: proto field names, enums by
//!   name, 64-bit integers as JSON numbers, unknown keys ignored, `null` as unset.
//! - [`recordio`]: the `<length>\n<bytes>` records of Mesos' streaming responses and requests.
//!
//! Nothing here does I/O, spawns, or knows about masters or agents.

mod codec;
mod media;
pub mod recordio;
mod refusal;

pub use codec::{CodecError, decode, encode};
pub use media::{Media, MediaError};
pub use refusal::Refusal;
