//! ID newtypes. Ids chosen by frameworks (task, executor) are validated with
//! the rules Mesos applies, because they end up as path components of sandboxes.

use std::fmt;

use agora_proto::v1 as pb;
use serde::Serialize;

use crate::text::SmallText;

/// Longest id accepted: NAME_MAX, since ids become directory names.
pub const MAX_ID_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("id must not be '.' or '..'")]
    Dots,
    #[error("id contains a '/', '\\' or control character")]
    BadCharacter,
}

/// Checks an id that will be used as a single path component.
pub fn validate_id(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if value == "." || value == ".." {
        return Err(IdError::Dots);
    }
    if value
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

macro_rules! id_type {
    ($name:ident, $proto:ident) => {
        /// Cheap to clone and compare: its text is held inline when short
        /// ([`SmallText`]).
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(SmallText);

        impl $name {
            /// Wraps a value that is already known to be valid (generated
            /// here, or read back from our own state).
            pub fn new(value: impl AsRef<str>) -> Self {
                Self(SmallText::new(value.as_ref()))
            }

            /// Wraps a value that came from outside, checking it first.
            pub fn parse(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref();
                validate_id(value)?;
                Ok(Self(SmallText::new(value)))
            }

            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// Its text, shared: another kind of id with the same text is
            /// made from it without a copy (`TaskId` to `ExecutorId`).
            pub fn text(&self) -> &SmallText {
                &self.0
            }

            pub fn to_proto(&self) -> pb::$proto {
                pb::$proto {
                    value: self.0.as_str().to_owned(),
                }
            }

            pub fn from_proto(id: &pb::$proto) -> Result<Self, IdError> {
                Self::parse(&id.value)
            }

            /// For a message field (optional in proto3): a missing id is empty.
            pub fn from_field(id: &Option<pb::$proto>) -> Result<Self, IdError> {
                id.as_ref().map_or(Err(IdError::Empty), Self::from_proto)
            }

            /// As a message field.
            pub fn to_field(&self) -> Option<pb::$proto> {
                Some(self.to_proto())
            }
        }

        impl From<SmallText> for $name {
            /// An id of another kind's text, known to be valid.
            fn from(text: SmallText) -> Self {
                Self(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }
    };
}

id_type!(FrameworkId, FrameworkId);
id_type!(AgentId, AgentId);
id_type!(OfferId, OfferId);
id_type!(TaskId, TaskId);
id_type!(ExecutorId, ExecutorId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_ids_that_are_not_single_path_components() {
        assert_eq!(TaskId::parse(""), Err(IdError::Empty));
        assert_eq!(TaskId::parse("."), Err(IdError::Dots));
        assert_eq!(TaskId::parse(".."), Err(IdError::Dots));
        assert_eq!(TaskId::parse("a/b"), Err(IdError::BadCharacter));
        assert_eq!(TaskId::parse("a\\b"), Err(IdError::BadCharacter));
        assert_eq!(TaskId::parse("a\nb"), Err(IdError::BadCharacter));
        assert_eq!(TaskId::parse("x".repeat(256)), Err(IdError::TooLong));
        assert_eq!(
            TaskId::parse("smoke-1").map(|t| t.to_string()),
            Ok("smoke-1".into())
        );
    }
}
