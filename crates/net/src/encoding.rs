//! Which content codings a client takes (`Accept-Encoding`, RFC 9110
//! §12.5.3), for the endpoints that answer large bodies in gzip as Mesos
//! does.

use axum::http::{HeaderMap, header};

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
}
