//! JSON bodies as Mesos' read endpoints answer them: `application/json`, or,
//! with `?jsonp=<callback>`, `text/javascript` holding `<callback>(<json>);`
//! (Mesos' web UI and older dashboards fetch everything that way).
//!
//! The callback is echoed into a script, so only a JavaScript name path is
//! accepted (letters, digits, `_`, `$`, `.`, and `[`/`]` around digits as in
//! `angular.callbacks._0` or `cb[0]`); anything else is refused with 400
//! rather than escaped, since a caller that sends it cannot be a real one.

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Longest callback accepted.
pub const MAX_CALLBACK_LEN: usize = 256;

/// Whether `callback` may be echoed into a `text/javascript` body.
pub fn valid_callback(callback: &str) -> bool {
    !callback.is_empty()
        && callback.len() <= MAX_CALLBACK_LEN
        && !callback.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '[')
        && callback
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.' | '[' | ']'))
}

/// `json` as the response body: plain JSON without a callback, wrapped for
/// JSONP with one; 400 for a callback [`valid_callback`] refuses.
pub fn respond(json: Bytes, callback: Option<&str>) -> Response {
    let Some(callback) = callback else {
        return ([(header::CONTENT_TYPE, "application/json")], json).into_response();
    };
    if !valid_callback(callback) {
        return (
            StatusCode::BAD_REQUEST,
            "the 'jsonp' parameter must be a JavaScript function name\n",
        )
            .into_response();
    }
    let mut body = Vec::with_capacity(callback.len() + json.len() + 3);
    body.extend_from_slice(callback.as_bytes());
    body.push(b'(');
    body.extend_from_slice(&json);
    body.extend_from_slice(b");");
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            // A browser must not take it for anything but a script.
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> (StatusCode, Option<String>, String) {
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, kind, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn plain_json_without_a_callback_and_wrapped_with_one() {
        let json = Bytes::from_static(b"{\"a\":1}");
        let (status, kind, text) = body(respond(json.clone(), None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(kind.as_deref(), Some("application/json"));
        assert_eq!(text, "{\"a\":1}");
        let (status, kind, text) = body(respond(json, Some("angular.callbacks._0"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(kind.as_deref(), Some("text/javascript"));
        assert_eq!(text, "angular.callbacks._0({\"a\":1});");
    }

    #[tokio::test]
    async fn a_callback_that_is_not_a_name_is_refused() {
        for bad in [
            "",
            "alert(1);cb",
            "cb</script>",
            "1cb",
            ".cb",
            "a b",
            "cb\n",
            &"x".repeat(MAX_CALLBACK_LEN + 1),
        ] {
            let (status, _, _) = body(respond(Bytes::from_static(b"{}"), Some(bad))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
        for good in ["JSON_CALLBACK", "cb", "$cb", "a.b_c", "cb[0]", "_"] {
            assert!(valid_callback(good), "{good}");
        }
    }
}
