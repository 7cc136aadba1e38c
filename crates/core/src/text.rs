//! A text kept where its value is: short ones inline, long ones shared.
//!
//! The master keeps its books in ordered maps keyed by id (tasks by
//! `TaskId`, agents by `AgentId`) and compares ids on every status update,
//! acknowledgement and read-model change. With ids as `String`s each
//! comparison followed a pointer to the text, a cache miss per tree level
//! in a map of 100,000 tasks, and each copy of an id (the books, the read
//! model's views, the messages) was an allocation. Ids are short: task ids
//! are often a number (Spark's) or a name and a counter, so up to
//! [`INLINE`] bytes are held in the value itself and compared where the map
//! node already is; a longer id (a UUID with a suffix) is one shared
//! allocation, so copying it never allocates.
//!
//! *Invariant:* the text is the same however it is held: equality,
//! ordering and hashing are the text's (`str`'s), so two ids made from the
//! same text, one inline and one not, could not tell each other apart, and
//! a text of at most [`INLINE`] bytes is always held inline.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The longest text held inline.
pub const INLINE: usize = 22;

/// A text of any length, cheap to clone and compare (see the module docs):
/// ids, and the short texts beside them in the master's views (a task's
/// name and role).
#[derive(Clone)]
pub struct SmallText(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` bytes of `bytes`, valid UTF-8 (copied from a `str`).
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Shared(Arc<str>),
}

impl SmallText {
    pub fn new(text: &str) -> Self {
        let mut bytes = [0; INLINE];
        match (u8::try_from(text.len()), bytes.get_mut(..text.len())) {
            (Ok(len), Some(inline)) => {
                inline.copy_from_slice(text.as_bytes());
                Self(Repr::Inline { len, bytes })
            }
            _ => Self(Repr::Shared(Arc::from(text))),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied from a `str` whole (`new`), so always valid; an empty
            // text could only come of a broken invariant.
            Repr::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Repr::Shared(text) => text,
        }
    }

    /// Its bytes, with no check: what comparisons and hashing use (UTF-8
    /// orders as its bytes do, and `str` hashes its bytes).
    fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Repr::Shared(text) => text.as_bytes(),
        }
    }

    /// Whether the text is held inline (for tests).
    #[cfg(test)]
    fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

impl From<&str> for SmallText {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for SmallText {
    /// Copied either way: an `Arc<str>` cannot take over a `String`'s
    /// allocation.
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl std::ops::Deref for SmallText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SmallText {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Shared(a), Repr::Shared(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for SmallText {}

impl PartialOrd for SmallText {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SmallText {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for SmallText {
    /// As `str` hashes: its bytes, then 0xff.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl fmt::Debug for SmallText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SmallText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for SmallText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
