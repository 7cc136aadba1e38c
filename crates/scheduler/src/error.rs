//! The SDK's error type.

use std::time::Duration;

use crate::AddressError;

/// What can go wrong talking to the master.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The master address could not be parsed.
    #[error(transparent)]
    Address(#[from] AddressError),

    /// No subscription succeeded within the connect timeout (the master was
    /// unreachable or kept answering with transient errors).
    #[error("could not subscribe to master at {master} within {timeout:?}: {last_error}")]
    ConnectTimeout {
        /// The master (or detector) tried last.
        master: String,
        /// The connect timeout that ran out.
        timeout: Duration,
        /// The last attempt's failure.
        last_error: String,
    },

    /// The master refused the subscription for good (invalid framework
    /// info, unknown or removed framework, not authorized...).
    #[error("master refused the subscription ({code:?}): {message}")]
    SubscribeRejected {
        /// The gRPC status code, when the refusal came as a status.
        code: Option<tonic::Code>,
        /// The master's explanation.
        message: String,
    },

    /// The master answered a call with an error status.
    #[error("{call} call failed ({code:?}): {message}", code = status.code(), message = status.message())]
    Call {
        /// The call type, e.g. `ACCEPT`.
        call: &'static str,
        /// The master's status.
        #[source]
        status: tonic::Status,
    },

    /// The master did not answer a call in time.
    #[error("{call} call timed out after {timeout:?}")]
    CallTimeout {
        /// The call type, e.g. `ACCEPT`.
        call: &'static str,
        /// The call timeout.
        timeout: Duration,
    },

    /// The call was made while the framework is not subscribed (it is
    /// re-subscribing after a disconnect, or its event stream has ended).
    #[error("not subscribed to the master (disconnected or event stream ended)")]
    NotSubscribed,

    /// The master sent something that breaks the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// Leader detection failed.
    #[error("master detection failed: {0}")]
    Detection(String),

    /// TLS with the master failed: its certificate was not trusted (another
    /// CA, a name it is not for), or it refused ours; or an `https://`
    /// master was named without a CA to verify it.
    #[error("{0}")]
    Tls(String),
}

impl Error {
    /// The gRPC status code behind this error, if any.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Call { status, .. } => Some(status.code()),
            Self::SubscribeRejected { code, .. } => *code,
            _ => None,
        }
    }
}

/// Whether a status from a subscription attempt is worth retrying: the
/// master was unreachable, overloaded or not (yet) the leader. Everything
/// else (invalid argument, not found, permission denied, failed
/// precondition...) is the master's final word.
pub(crate) fn is_transient(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Cancelled
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lower_case_and_carry_the_status_message() {
        let err = Error::Call {
            call: "ACCEPT",
            status: tonic::Status::not_found("unknown offer o-1"),
        };
        assert_eq!(
            err.to_string(),
            "ACCEPT call failed (NotFound): unknown offer o-1"
        );
        assert_eq!(err.code(), Some(tonic::Code::NotFound));
        assert_eq!(Error::NotSubscribed.code(), None);
    }

    #[test]
    fn classifies_transient_codes() {
        assert!(is_transient(tonic::Code::Unavailable));
        assert!(!is_transient(tonic::Code::InvalidArgument));
        assert!(!is_transient(tonic::Code::PermissionDenied));
        assert!(!is_transient(tonic::Code::NotFound));
        assert!(!is_transient(tonic::Code::FailedPrecondition));
    }
}
