//! Media negotiation: `Content-Type` of a request body, `Accept` for the response.

/// The two media types Mesos' v1 APIs speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    /// `application/json`, in Mesos' JSON mapping (see [`crate::encode`]).
    Json,
    /// `application/x-protobuf`, the messages' protobuf encoding.
    Protobuf,
}

/// Why a request's media types cannot be served; [`MediaError::status`] is the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The request has a body but no `Content-Type` (400).
    #[error("Expecting 'Content-Type' to be present")]
    MissingContentType,
    /// The `Content-Type` is neither of the two (415). Holds the header's value.
    #[error("Expecting 'Content-Type' of {json} or {protobuf}, got '{0}'", json = Media::JSON, protobuf = Media::PROTOBUF)]
    Unsupported(String),
    /// The `Accept` header allows neither of the two (406). Holds the header's value.
    #[error("Expecting 'Accept' to allow {json} or {protobuf}, got '{0}'", json = Media::JSON, protobuf = Media::PROTOBUF)]
    NotAcceptable(String),
}

impl MediaError {
    /// The HTTP status Mesos answers with: 400, 415 or 406.
    pub fn status(&self) -> u16 {
        match self {
            MediaError::MissingContentType => 400,
            MediaError::Unsupported(_) => 415,
            MediaError::NotAcceptable(_) => 406,
        }
    }
}

impl Media {
    /// The JSON media type.
    pub const JSON: &'static str = "application/json";
    /// The protobuf media type.
    pub const PROTOBUF: &'static str = "application/x-protobuf";

    /// The type of a request body from its `Content-Type` header. The media type is compared
    /// case-insensitively and parameters (`; charset=utf-8`) are ignored.
    pub fn from_content_type(value: Option<&str>) -> Result<Media, MediaError> {
        let Some(value) = value else {
            return Err(MediaError::MissingContentType);
        };
        let essence = value.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case(Media::JSON) {
            Ok(Media::Json)
        } else if essence.eq_ignore_ascii_case(Media::PROTOBUF) {
            Ok(Media::Protobuf)
        } else {
            Err(MediaError::Unsupported(value.to_string()))
        }
    }

    /// The type of the response from the request's `Accept` header. A missing or empty header
    /// accepts anything, so JSON. JSON wins whenever it is acceptable, whatever the q-values,
    /// as in Mesos; a type is acceptable when the most specific media range matching it
    /// (`application/json` over `application/*` over `*/*`) has a q-value above zero.
    /// Malformed ranges are skipped.
    pub fn from_accept(value: Option<&str>) -> Result<Media, MediaError> {
        let Some(header) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Media::Json);
        };
        let ranges: Vec<MediaRange<'_>> = header.split(',').filter_map(MediaRange::parse).collect();
        [Media::Json, Media::Protobuf]
            .into_iter()
            .find(|media| acceptable(&ranges, *media))
            .ok_or_else(|| MediaError::NotAcceptable(header.to_string()))
    }

    /// The `Content-Type` value of a body of this type.
    pub fn content_type(self) -> &'static str {
        match self {
            Media::Json => Media::JSON,
            Media::Protobuf => Media::PROTOBUF,
        }
    }

    /// `(type, subtype)` of the media type.
    fn parts(self) -> (&'static str, &'static str) {
        match self {
            Media::Json => ("application", "json"),
            Media::Protobuf => ("application", "x-protobuf"),
        }
    }
}

/// One element of an `Accept` header: `type/subtype` (either may be `*`) with its q-value.
#[derive(Debug)]
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    /// In `[0, 1]`; 1 when absent.
    q: f64,
}

impl<'a> MediaRange<'a> {
    /// `None` for an empty or malformed element, which is then ignored.
    fn parse(element: &'a str) -> Option<MediaRange<'a>> {
        let mut pieces = element.split(';');
        let (kind, subtype) = pieces.next()?.trim().split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        // `*/json` is not a media range.
        if !token(kind) || !token(subtype) || (kind == "*" && subtype != "*") {
            return None;
        }
        let mut q = 1.0;
        for parameter in pieces {
            let (name, value) = parameter.split_once('=')?;
            if name.trim().eq_ignore_ascii_case("q") {
                q = parse_qvalue(value.trim())?;
            }
        }
        Some(MediaRange { kind, subtype, q })
    }

    /// How specifically this range names `media`: 2 exact, 1 `type/*`, 0 `*/*`; `None` if
    /// it does not match.
    fn specificity(&self, media: Media) -> Option<u8> {
        let (kind, subtype) = media.parts();
        if self.kind == "*" {
            Some(0)
        } else if !self.kind.eq_ignore_ascii_case(kind) {
            None
        } else if self.subtype == "*" {
            Some(1)
        } else if self.subtype.eq_ignore_ascii_case(subtype) {
            Some(2)
        } else {
            None
        }
    }
}

/// RFC 9110 `qvalue`: `0`, `1`, or up to three decimals in between.
fn parse_qvalue(value: &str) -> Option<f64> {
    let well_formed = !value.is_empty()
        && value.len() <= 5
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let q: f64 = if well_formed {
        value.parse().ok()?
    } else {
        return None;
    };
    (0.0..=1.0).contains(&q).then_some(q)
}

/// Whether the most specific ranges naming `media` allow it (the highest q among equally
/// specific duplicates counts).
fn acceptable(ranges: &[MediaRange<'_>], media: Media) -> bool {
    ranges
        .iter()
        .filter_map(|range| Some((range.specificity(media)?, range.q)))
        .fold(None::<(u8, f64)>, |best, (specificity, q)| match best {
            Some((s, _)) if s > specificity => best,
            Some((s, best_q)) if s == specificity => Some((s, best_q.max(q))),
            _ => Some((specificity, q)),
        })
        .is_some_and(|(_, q)| q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_table() {
        let cases: &[(Option<&str>, Result<Media, MediaError>)] = &[
            (Some("application/json"), Ok(Media::Json)),
            (Some("application/x-protobuf"), Ok(Media::Protobuf)),
            (Some("Application/JSON"), Ok(Media::Json)),
            (Some("APPLICATION/X-PROTOBUF"), Ok(Media::Protobuf)),
            (Some("application/json; charset=utf-8"), Ok(Media::Json)),
            (Some("application/json;charset=UTF-8"), Ok(Media::Json)),
            (
                Some("  application/x-protobuf ; foo=bar"),
                Ok(Media::Protobuf),
            ),
            (None, Err(MediaError::MissingContentType)),
            (Some(""), Err(MediaError::Unsupported(String::new()))),
            (
                Some("text/plain"),
                Err(MediaError::Unsupported("text/plain".into())),
            ),
            (
                Some("application/*"),
                Err(MediaError::Unsupported("application/*".into())),
            ),
            (
                Some("application/jsonx"),
                Err(MediaError::Unsupported("application/jsonx".into())),
            ),
            (
                Some("application/protobuf"),
                Err(MediaError::Unsupported("application/protobuf".into())),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                &Media::from_content_type(*value),
                expected,
                "Content-Type {value:?}"
            );
        }
    }

    #[test]
    fn accept_table() {
        use Media::{Json, Protobuf};
        let cases: &[(Option<&str>, Option<Media>)] = &[
            (None, Some(Json)),
            (Some(""), Some(Json)),
            (Some("   "), Some(Json)),
            (Some("*/*"), Some(Json)),
            (Some("application/*"), Some(Json)),
            (Some("application/json"), Some(Json)),
            (Some("application/x-protobuf"), Some(Protobuf)),
            (Some("Application/X-Protobuf"), Some(Protobuf)),
            (Some("application/json; charset=utf-8"), Some(Json)),
            // JSON wins when both are acceptable, whatever the order or the q-values.
            (Some("application/x-protobuf, application/json"), Some(Json)),
            (
                Some("application/x-protobuf;q=1, application/json;q=0.1"),
                Some(Json),
            ),
            // q=0 excludes.
            (Some("application/json;q=0, */*"), Some(Protobuf)),
            (
                Some("application/json; q=0.0, application/*"),
                Some(Protobuf),
            ),
            (
                Some("application/json;Q=0, application/x-protobuf"),
                Some(Protobuf),
            ),
            (Some("*/*;q=0"), None),
            (Some("application/*;q=0"), None),
            // The most specific range decides.
            (Some("application/*;q=0, application/json"), Some(Json)),
            (
                Some("application/*;q=0, application/x-protobuf"),
                Some(Protobuf),
            ),
            (
                Some("*/*;q=0, application/x-protobuf;q=0.5"),
                Some(Protobuf),
            ),
            (
                Some("application/json;q=0, application/x-protobuf;q=0, */*"),
                None,
            ),
            (Some("application/json;q=0.001"), Some(Json)),
            // Neither named.
            (Some("text/html"), None),
            (Some("text/*, image/png"), None),
            (Some("application/xml"), None),
            // Malformed ranges are skipped; what is left decides.
            (Some("garbage"), None),
            (Some("application/json;q=2"), None),
            (
                Some("application/json;q=abc, application/x-protobuf"),
                Some(Protobuf),
            ),
            (Some("*/json, application/x-protobuf"), Some(Protobuf)),
            (Some(",, application/json ,"), Some(Json)),
            (Some("text/html, */*;q=0.8"), Some(Json)),
        ];
        for (value, expected) in cases {
            let got = Media::from_accept(*value);
            match expected {
                Some(media) => assert_eq!(got, Ok(*media), "Accept {value:?}"),
                None => assert_eq!(
                    got,
                    Err(MediaError::NotAcceptable(
                        value.unwrap_or_default().trim().to_string()
                    )),
                    "Accept {value:?}"
                ),
            }
        }
    }

    #[test]
    fn statuses_and_messages() {
        assert_eq!(MediaError::MissingContentType.status(), 400);
        assert_eq!(MediaError::Unsupported("text/plain".into()).status(), 415);
        assert_eq!(MediaError::NotAcceptable("text/html".into()).status(), 406);
        assert_eq!(
            MediaError::MissingContentType.to_string(),
            "Expecting 'Content-Type' to be present"
        );
        assert_eq!(
            MediaError::Unsupported("text/plain".into()).to_string(),
            "Expecting 'Content-Type' of application/json or application/x-protobuf, got 'text/plain'"
        );
        assert_eq!(
            MediaError::NotAcceptable("text/html".into()).to_string(),
            "Expecting 'Accept' to allow application/json or application/x-protobuf, got 'text/html'"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(Media::Json.content_type(), "application/json");
        assert_eq!(Media::Protobuf.content_type(), "application/x-protobuf");
        for media in [Media::Json, Media::Protobuf] {
            assert_eq!(
                Media::from_content_type(Some(media.content_type())),
                Ok(media)
            );
            assert_eq!(Media::from_accept(Some(media.content_type())), Ok(media));
        }
    }
}
