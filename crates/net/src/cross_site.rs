//! Requests a browser makes on another site's behalf.
//!
//! Whoever can reach a master or an agent could, until now, make an
//! operator's browser act on it: a form on any web page could post to
//! `/master/teardown`, a `<script src=".../master/state?jsonp=f">` read the
//! cluster's state. Browsers say where a request comes from (`Origin` on
//! every cross-origin request that can change something, `Sec-Fetch-Site`
//! on every request of current browsers); clients that are not browsers
//! (the CLI, Mesos' libraries, curl) send neither. So every port refuses:
//!
//! - a request that can change something (any method but GET, HEAD,
//!   OPTIONS) whose `Origin` is not the host it was sent to, or that a
//!   browser marks `Sec-Fetch-Site: cross-site` or `same-site`;
//! - a JSONP read (`?jsonp=`) a browser marks `cross-site`: JSONP exists to
//!   read across origins, and only the cluster's own pages may.
//!
//! Nothing is answered with `Access-Control-Allow-Origin`, so a script on
//! another origin can send a request (refused above when it could change
//! something) but never read an answer.
//!
//! *Invariant:* applied by [`crate::serve`] to every router it serves, so no
//! endpoint can forget it.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Why a request was refused; `None` when it may go on.
pub fn refusal(method: &Method, headers: &HeaderMap, query: Option<&str>) -> Option<&'static str> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        if matches!(fetch_site.as_deref(), Some("cross-site" | "same-site")) {
            return Some("a request from another site's page may not change anything here");
        }
        if let Some(origin) = headers.get(header::ORIGIN)
            && !same_origin(origin.to_str().ok(), headers)
        {
            return Some("a request from another origin may not change anything here");
        }
        return None;
    }
    let jsonp = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "jsonp" || pair.starts_with("jsonp="))
    });
    if jsonp && fetch_site.as_deref() == Some("cross-site") {
        return Some("JSONP is not answered to another site's page");
    }
    None
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request was
/// sent to. `null` and unparsable origins are not the same.
fn same_origin(origin: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(origin) = origin else {
        return false;
    };
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    authority.eq_ignore_ascii_case(host)
}

/// The middleware [`crate::serve`] puts in front of every router.
pub async fn guard(request: Request, next: Next) -> Response {
    if let Some(reason) = refusal(request.method(), request.headers(), request.uri().query()) {
        tracing::debug!(
            method = %request.method(),
            path = request.uri().path(),
            reason,
            "cross-site request refused"
        );
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{reason}\n"),
        )
            .into_response();
    }
    next.run(request).await
}

/// For endpoints whose body is JSON: a body of any other declared type is
/// refused with 415 before the handler runs. A browser can post
/// `text/plain`, a form or multipart to any address without asking; a JSON
/// body from another origin needs a preflight this server never grants.
pub async fn json_only(request: Request, next: Next) -> Response {
    let has_body = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_none_or(|length| length.as_bytes() != b"0");
    if has_body && !is_json(request.headers()) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "this endpoint takes a JSON body: send Content-Type: application/json\n",
        )
            .into_response();
    }
    next.run(request).await
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn clients_that_are_not_browsers_pass() {
        let plain = headers(&[("host", "m:5050")]);
        assert_eq!(refusal(&Method::POST, &plain, None), None);
        assert_eq!(refusal(&Method::GET, &plain, Some("jsonp=cb")), None);
    }

    #[test]
    fn a_browser_on_the_same_origin_may_change_things() {
        let same = headers(&[
            ("host", "m:5050"),
            ("origin", "http://m:5050"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(refusal(&Method::POST, &same, None), None);
        assert_eq!(refusal(&Method::DELETE, &same, None), None);
    }

    #[test]
    fn another_origin_may_not_change_anything() {
        for h in [
            headers(&[("host", "m:5050"), ("origin", "http://evil.example")]),
            headers(&[("host", "m:5050"), ("origin", "http://m:5051")]),
            headers(&[("host", "m:5050"), ("origin", "null")]),
            headers(&[("host", "m:5050"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "m:5050"), ("sec-fetch-site", "same-site")]),
            headers(&[("origin", "http://m:5050")]),
        ] {
            for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
                assert!(refusal(&method, &h, None).is_some(), "{method} {h:?}");
            }
            // Reading is not refused (the browser keeps the answer from the page).
            assert_eq!(refusal(&Method::GET, &h, None), None);
        }
    }

    #[test]
    fn jsonp_is_refused_only_to_other_sites() {
        let cross = headers(&[("host", "m:5050"), ("sec-fetch-site", "cross-site")]);
        assert!(refusal(&Method::GET, &cross, Some("jsonp=cb")).is_some());
        assert!(refusal(&Method::GET, &cross, Some("a=1&jsonp=cb")).is_some());
        assert_eq!(refusal(&Method::GET, &cross, Some("jsonpx=1")), None);
        let same = headers(&[("host", "m:5050"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(refusal(&Method::GET, &same, Some("jsonp=cb")), None);
    }

    #[test]
    fn json_media_types() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&headers(&[(
            "content-type",
            "application/x-www-form-urlencoded"
        )])));
        assert!(!is_json(&HeaderMap::new()));
    }
}
