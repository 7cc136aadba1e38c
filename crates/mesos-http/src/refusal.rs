//! How Mesos' HTTP APIs refuse a request: a status and a plain-text reason
//! (Mesos answers `text/plain`, and its clients print the body as is).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::MediaError;

/// A refusal: the status and what is wrong, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub StatusCode, pub String);

impl Refusal {
    pub fn bad_request(why: impl Into<String>) -> Self {
        Refusal(StatusCode::BAD_REQUEST, why.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut message = self.1;
        message.push('\n');
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message,
        )
            .into_response()
    }
}

impl From<MediaError> for Refusal {
    fn from(e: MediaError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Refusal(status, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_refusals_keep_their_status_and_say_why_in_plain_text() {
        let response = Refusal::from(MediaError::MissingContentType).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let response = Refusal::from(MediaError::Unsupported("text/html".into())).into_response();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
