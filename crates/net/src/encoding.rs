//! gzip for the clients that take it, as Mesos answers: which content
//! codings a client takes (`Accept-Encoding`, RFC 9110 §12.5.3), and the
//! middleware [`crate::serve`] puts in front of every router, which
//! compresses a whole JSON or text answer of 1 KiB or more (Mesos'
//! threshold) for such a client. Streams (no length known up front), gRPC
//! and file downloads pass as they are, and so does an answer its handler
//! already encoded (`/state` keeps its compressed pieces from one body to
//! the next, cheaper than compressing it whole).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;

/// Answers shorter than this go as they are (Mesos' threshold).
pub const MIN_BYTES: u64 = 1024;

/// Answers longer than this go as they are: compressing one whole would
/// hold both copies in memory at once.
const MAX_BYTES: u64 = 256 << 20;

/// Whether the request's `Accept-Encoding` takes gzip: a `gzip` (or
/// `x-gzip`) entry with a non-zero quality, or else a `*` with one. No
/// header, or one that does not parse, takes identity only.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let Some(quality) = quality(parts) else {
                return false;
            };
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(quality > 0.0),
                "*" => any = Some(quality > 0.0),
                _ => {}
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// An entry's quality (`q=`, 0 to 1; 1 when absent); `None` when it does
/// not parse.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> Option<f32> {
    let mut quality = 1.0;
    for param in params {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            quality = value.trim().parse::<f32>().ok()?;
            if !(0.0..=1.0).contains(&quality) {
                return None;
            }
        }
    }
    Some(quality)
}

/// The middleware: `next`'s answer, in gzip when the client takes it and
/// the answer is one a whole body of which is worth compressing; every
/// answer that could be so says it varies with `Accept-Encoding`.
pub async fn gzip_answers(request: Request, next: Next) -> Response {
    let takes_gzip = request.method() != Method::HEAD && accepts_gzip(request.headers());
    let mut response = next.run(request).await;
    let Some(length) = compressible(&response) else {
        return response;
    };
    let varies = response
        .headers()
        .get_all(header::VARY)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"accept-encoding"));
    if !varies {
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if !takes_gzip || !(MIN_BYTES..=MAX_BYTES).contains(&length) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let plain = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(plain) => plain,
        Err(e) => {
            tracing::error!(error = %e, "an answer's body failed while it was read to compress");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let compress = move || gzip(&plain);
    // Small answers are compressed in place; large ones off the workers.
    let gz = if length <= 64 * 1024 {
        compress()
    } else {
        match tokio::task::spawn_blocking(compress).await {
            Ok(gz) => gz,
            Err(e) => {
                tracing::error!(error = %e, "compressing an answer did not finish");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    Response::from_parts(parts, Body::from(gz))
}

/// The length of an answer worth compressing whole: a success or an error
/// with a body of known length, JSON (JSONP included), text or protobuf
/// (Mesos' v1 APIs answer in either) but not a stream, not encoded yet.
/// (Prometheus' scrapes take gzip too.)
fn compressible(response: &Response) -> Option<u64> {
    let status = response.status();
    if status.is_informational()
        || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
    {
        return None;
    }
    let headers = response.headers();
    if headers.contains_key(header::CONTENT_ENCODING) {
        return None;
    }
    let media = headers
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .split(';')
        .next()?
        .trim()
        .to_ascii_lowercase();
    let textual = media == "application/json"
        || media == "application/x-protobuf"
        || media == "application/openmetrics-text"
        || media == "application/javascript"
        || media == "text/javascript"
        || (media.starts_with("text/") && media != "text/event-stream");
    if !textual {
        return None;
    }
    response.body().size_hint().exact()
}

/// `plain` in one gzip member, compressed fast.
pub fn gzip(plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(plain.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(plain);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;
    use axum::http::{HeaderMap, HeaderValue, header};

    fn takes(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        accepts_gzip(&headers)
    }

    #[test]
    fn what_browsers_and_libraries_send_takes_gzip() {
        assert!(takes(&["gzip, deflate, br, zstd"]));
        assert!(takes(&["gzip, deflate"]));
        assert!(takes(&["GZIP"]));
        assert!(takes(&["x-gzip"]));
        assert!(takes(&["br;q=1.0, gzip;q=0.8, *;q=0.1"]));
        assert!(takes(&["deflate", "gzip"]));
        assert!(takes(&["*"]));
    }

    #[test]
    fn no_header_identity_or_a_refusal_does_not() {
        assert!(!takes(&[]));
        assert!(!takes(&["identity"]));
        assert!(!takes(&["deflate, br"]));
        assert!(!takes(&["gzip;q=0"]));
        assert!(!takes(&["gzip;q=0.000"]));
        assert!(!takes(&["*, gzip;q=0"]), "an explicit refusal wins over *");
        assert!(!takes(&["*;q=0"]));
    }

    #[test]
    fn a_header_that_does_not_parse_takes_identity_only() {
        assert!(!takes(&["gzip;q=high"]));
        assert!(!takes(&["gzip;q=2"]));
        assert!(!takes(&["gzip;q"]));
        assert!(!takes(&["gzip;q=-1"]));
        assert!(!takes(&["gzip;q=NaN"]));
    }

    mod middleware {
        use std::io::Read;

        use axum::Router;
        use axum::body::Body;
        use axum::http::{HeaderMap, Request, StatusCode, header};
        use axum::response::IntoResponse;
        use axum::routing::get;
        use tower::ServiceExt as _;

        fn json(n: usize) -> String {
            let row = r#"{"id":"t-1","state":"TASK_RUNNING"}"#;
            format!("[{}]", vec![row; n].join(","))
        }

        fn app() -> Router {
            Router::new()
                .route(
                    "/big",
                    get(|| async { ([(header::CONTENT_TYPE, "application/json")], json(500)) }),
                )
                .route(
                    "/small",
                    get(|| async { ([(header::CONTENT_TYPE, "application/json")], json(3)) }),
                )
                .route("/text", get(|| async { "x".repeat(5000) }))
                .route(
                    "/protobuf",
                    get(|| async {
                        (
                            [(header::CONTENT_TYPE, "application/x-protobuf")],
                            b"\x0a\x05t-001\x10\x01".repeat(500),
                        )
                    }),
                )
                .route(
                    "/bytes",
                    get(|| async {
                        (
                            [(header::CONTENT_TYPE, "application/octet-stream")],
                            vec![b'a'; 5000],
                        )
                    }),
                )
                .route(
                    "/events",
                    get(|| async {
                        (
                            [(header::CONTENT_TYPE, "text/event-stream")],
                            "data: x\n\n".repeat(500),
                        )
                    }),
                )
                .route(
                    "/stream",
                    get(|| async {
                        let chunks = futures::stream::iter(
                            (0..100).map(|_| Ok::<_, std::io::Error>(json(10))),
                        );
                        (
                            [(header::CONTENT_TYPE, "application/json")],
                            Body::from_stream(chunks),
                        )
                    }),
                )
                .route(
                    "/encoded",
                    get(|| async {
                        (
                            [
                                (header::CONTENT_TYPE, "application/json"),
                                (header::CONTENT_ENCODING, "br"),
                            ],
                            json(500),
                        )
                    }),
                )
                .route(
                    "/missing",
                    get(|| async {
                        (
                            StatusCode::NOT_FOUND,
                            [(header::CONTENT_TYPE, "application/json")],
                            json(100),
                        )
                            .into_response()
                    }),
                )
                .layer(axum::middleware::from_fn(super::super::gzip_answers))
        }

        async fn get_with(path: &str, accept: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
            let mut request = Request::get(path);
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT_ENCODING, accept);
            }
            let response = app()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, headers, body.to_vec())
        }

        fn gunzip(body: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("gzip");
            out
        }

        #[tokio::test]
        async fn json_text_and_protobuf_of_a_kib_or_more_are_gzip_to_a_client_that_takes_it() {
            for (path, status) in [
                ("/big", 200),
                ("/text", 200),
                ("/protobuf", 200),
                ("/missing", 404),
            ] {
                let (_, _, plain) = get_with(path, None).await;
                let (got, headers, body) = get_with(path, Some("gzip, deflate, br")).await;
                assert_eq!(got.as_u16(), status, "{path}");
                assert_eq!(headers[header::CONTENT_ENCODING], "gzip", "{path}");
                assert_eq!(headers[header::VARY], "accept-encoding", "{path}");
                assert_eq!(
                    headers[header::CONTENT_LENGTH],
                    body.len().to_string(),
                    "{path}"
                );
                assert!(body.len() < plain.len(), "{path}");
                assert_eq!(gunzip(&body), plain, "{path}");
            }
        }

        #[tokio::test]
        async fn the_rest_goes_as_it_is() {
            let cases = [
                ("/big", None),
                ("/big", Some("identity")),
                ("/big", Some("gzip;q=0")),
                ("/small", Some("gzip")),
                ("/bytes", Some("gzip")),
                ("/events", Some("gzip")),
                ("/stream", Some("gzip")),
                ("/encoded", Some("gzip")),
            ];
            for (path, accept) in cases {
                let (_, headers, body) = get_with(path, accept).await;
                let encoding = headers
                    .get(header::CONTENT_ENCODING)
                    .map(|v| v.to_str().unwrap());
                let expected = (path == "/encoded").then_some("br");
                assert_eq!(encoding, expected, "{path} {accept:?}");
                assert!(!body.starts_with(&[0x1f, 0x8b]), "{path} {accept:?}");
            }
            // What could be compressed says it varies, even when it was not.
            let (_, headers, _) = get_with("/big", None).await;
            assert_eq!(headers[header::VARY], "accept-encoding");
            let (_, headers, _) = get_with("/bytes", Some("gzip")).await;
            assert!(headers.get(header::VARY).is_none());
        }
    }
}
