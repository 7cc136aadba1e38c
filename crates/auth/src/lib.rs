//! Who is calling, and what they may do.
//!
//! Pure: parsing of credentials and ACL files takes their text (the daemons
//! read the files), checks take values and return answers, and nothing here
//! opens a socket, reads a clock or logs a secret.
//!
//! - [`Principal`]: an authenticated identity (Mesos' principal), and
//!   [`Caller`]: who made a request, as the authentication edge found it
//!   (`None` when the request carried no credential, or authentication is
//!   off for it).
//!
//! *Invariant:* a secret never leaves this crate in a `Debug` or `Display`
//! form: types that hold one print `<redacted>` for it.

use std::fmt;

pub mod acl;
pub mod basic;
pub mod credentials;
pub mod executor_token;

/// An authenticated identity: the principal of a framework, an agent or an
/// operator, as in Mesos.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Principal(String);

impl Principal {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({:?})", self.0)
    }
}

/// Who made a request, as the authentication edge established it. Handlers
/// find it in the request's extensions; a request without one is anonymous.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller(pub Option<Principal>);

impl Caller {
    pub const ANONYMOUS: Caller = Caller(None);

    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_ref()
    }
}
