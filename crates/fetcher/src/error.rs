//! The fetcher's error: every variant names the URI, so a caller can put `to_string()` straight
//! into a `TASK_FAILED` message.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why fetching one URI failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URI cannot be fetched as written (empty, bad syntax, no usable file name, a relative
    /// path without a frameworks home, an `output_file` escaping the sandbox).
    #[error("fetching {uri}: {reason}")]
    InvalidUri { uri: String, reason: String },

    /// The scheme is not one the fetcher speaks (`http`, `https`, `file`, plain paths).
    #[error("fetching {uri}: unsupported scheme {scheme:?}")]
    UnsupportedScheme { uri: String, scheme: String },

    /// The transfer failed: connection refused, TLS, DNS, a reset connection.
    #[error("fetching {uri}: {cause}")]
    Transfer { uri: String, cause: String },

    /// The server answered with a non-success status.
    #[error("fetching {uri}: http status {status}")]
    HttpStatus { uri: String, status: u16 },

    /// No byte arrived for the configured stall timeout.
    #[error("fetching {uri}: stalled, no data for {}ms", after.as_millis())]
    Stalled { uri: String, after: Duration },

    /// The download is larger than `max_download_bytes`.
    #[error("fetching {uri}: larger than the limit of {limit} bytes")]
    TooLarge { uri: String, limit: u64 },

    /// A local file operation failed (reading a source, writing into the sandbox).
    #[error("fetching {uri}: {what} {}: {source}", path.display())]
    Io {
        uri: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Extracting the archive failed, or an entry would land outside the sandbox.
    #[error("fetching {uri}: extracting {}: {reason}", path.display())]
    Extract {
        uri: String,
        path: PathBuf,
        reason: String,
    },
}

impl FetchError {
    /// The URI this error is about.
    pub fn uri(&self) -> &str {
        match self {
            Self::InvalidUri { uri, .. }
            | Self::UnsupportedScheme { uri, .. }
            | Self::Transfer { uri, .. }
            | Self::HttpStatus { uri, .. }
            | Self::Stalled { uri, .. }
            | Self::TooLarge { uri, .. }
            | Self::Io { uri, .. }
            | Self::Extract { uri, .. } => uri,
        }
    }

    pub(crate) fn invalid(uri: &str, reason: impl Into<String>) -> Self {
        Self::InvalidUri {
            uri: uri.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(
        uri: &str,
        what: &'static str,
        path: &std::path::Path,
        source: io::Error,
    ) -> Self {
        Self::Io {
            uri: uri.to_owned(),
            what,
            path: path.to_owned(),
            source,
        }
    }
}
