//! HTTP Basic authentication (RFC 7617): parsing an `Authorization` header
//! value, building one for clients, and the decision an HTTP (or gRPC)
//! edge makes from it ([`authenticate`]).
//!
//! The same header carries a framework's or an agent's credential in gRPC
//! metadata (`authorization: Basic ...`).

use base64::Engine as _;

use crate::credentials::{Credential, Credentials, Secret};
use crate::{Caller, Principal};

/// The header's scheme, compared case-insensitively.
const SCHEME: &str = "basic";

/// Why an `Authorization` value is not usable Basic credentials. Never
/// carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasicError {
    #[error("the Authorization header is not of the Basic scheme")]
    NotBasic,
    #[error("the Basic credentials are not valid base64")]
    Base64,
    #[error("the Basic credentials are not UTF-8")]
    NotUtf8,
    #[error("the Basic credentials have no ':' between principal and secret")]
    NoColon,
    #[error("the Basic credentials have an empty principal")]
    EmptyPrincipal,
}

/// Parses an `Authorization` header value `Basic <base64(principal:secret)>`.
/// The principal is everything before the first `:` (so a secret may hold
/// colons). Any bytes are accepted as input: garbage is an error, never a
/// panic.
pub fn parse(value: &[u8]) -> Result<Credential, BasicError> {
    let value = std::str::from_utf8(value).map_err(|_| BasicError::NotBasic)?;
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').ok_or(BasicError::NotBasic)?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(BasicError::NotBasic);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| BasicError::Base64)?;
    let decoded = String::from_utf8(decoded).map_err(|_| BasicError::NotUtf8)?;
    let (principal, secret) = decoded.split_once(':').ok_or(BasicError::NoColon)?;
    if principal.is_empty() {
        return Err(BasicError::EmptyPrincipal);
    }
    Ok(Credential {
        principal: Principal::new(principal),
        secret: Secret::new(secret),
    })
}

/// Whether the value names the Basic scheme at all (whatever follows).
pub fn is_basic(value: &[u8]) -> bool {
    value.len() > SCHEME.len()
        && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME.as_bytes())
        && value[SCHEME.len()] == b' '
}

/// The `Authorization` header value for `credential`, as clients send it.
/// It holds the secret: never log it.
pub fn header_value(credential: &Credential) -> String {
    let pair = format!(
        "{}:{}",
        credential.principal.as_str(),
        credential.secret.expose()
    );
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Why a request was refused: its plain-text reason (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The authentication decision for one request.
///
/// - `credentials`: what the daemon accepts (None: none configured, then
///   every request is anonymous and its `Authorization` header ignored, as
///   a Mesos daemon without credentials does).
/// - `required`: the realm's `--authenticate-*` flag.
/// - `authorization`: the request's `Authorization` header, if any.
///
/// Valid Basic credentials make the caller that principal even where they
/// are not required (so that ACLs can tell callers apart). Credentials that
/// are present but wrong are refused even where none are required: a
/// client that means to be someone learns at once that it is not, instead
/// of being served as anonymous. A header of another scheme (a Bearer
/// token meant for another layer) is ignored unless authentication is
/// required.
pub fn authenticate(
    credentials: Option<&Credentials>,
    required: bool,
    authorization: Option<&[u8]>,
) -> Result<Caller, Refused> {
    let Some(credentials) = credentials else {
        return if required {
            Err(Refused(
                "authentication is required but no credentials are configured".into(),
            ))
        } else {
            Ok(Caller::ANONYMOUS)
        };
    };
    let Some(value) = authorization else {
        return if required {
            Err(Refused(
                "authentication required: send HTTP Basic credentials (principal and secret)"
                    .into(),
            ))
        } else {
            Ok(Caller::ANONYMOUS)
        };
    };
    if !is_basic(value) && !required {
        return Ok(Caller::ANONYMOUS);
    }
    let credential = parse(value).map_err(|e| Refused(format!("{e}")))?;
    match credentials.verify(
        credential.principal.as_str(),
        credential.secret.expose().as_bytes(),
    ) {
        Some(principal) => Ok(Caller(Some(principal))),
        None => Err(Refused(format!(
            "invalid credentials for principal '{}'",
            credential.principal
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn creds() -> Credentials {
        Credentials::from_list([Credential::new("ops", "pw:with:colons")])
    }

    #[test]
    fn round_trips_and_splits_at_the_first_colon() {
        let c = Credential::new("ops", "pw:with:colons");
        let header = header_value(&c);
        assert!(header.starts_with("Basic "));
        assert_eq!(parse(header.as_bytes()), Ok(c.clone()));
        let lower = header.replacen("Basic", "basic", 1);
        assert_eq!(parse(lower.as_bytes()), Ok(c));
    }

    #[test]
    fn refuses_malformed_values() {
        assert_eq!(parse(b"Bearer abc"), Err(BasicError::NotBasic));
        assert_eq!(parse(b"Basic"), Err(BasicError::NotBasic));
        assert_eq!(parse(b"Basic !!!"), Err(BasicError::Base64));
        // "nocolon"
        assert_eq!(parse(b"Basic bm9jb2xvbg=="), Err(BasicError::NoColon));
        // ":pw"
        assert_eq!(parse(b"Basic OnB3"), Err(BasicError::EmptyPrincipal));
        assert_eq!(parse(b"Basic /w=="), Err(BasicError::NotUtf8));
        assert_eq!(parse(&[0xff, 0xfe]), Err(BasicError::NotBasic));
    }

    #[test]
    fn decisions() {
        let creds = creds();
        let good = header_value(&Credential::new("ops", "pw:with:colons"));
        let bad = header_value(&Credential::new("ops", "wrong"));
        let who = |c: Result<Caller, Refused>| c.map(|c| c.0.map(|p| p.as_str().to_string()));
        // Required.
        assert!(authenticate(Some(&creds), true, None).is_err());
        assert!(authenticate(Some(&creds), true, Some(bad.as_bytes())).is_err());
        assert!(authenticate(Some(&creds), true, Some(b"Bearer x")).is_err());
        assert_eq!(
            who(authenticate(Some(&creds), true, Some(good.as_bytes()))),
            Ok(Some("ops".into()))
        );
        // Not required: anonymous without a header, the principal with good
        // credentials, refused with wrong ones, other schemes ignored.
        assert_eq!(who(authenticate(Some(&creds), false, None)), Ok(None));
        assert_eq!(
            who(authenticate(Some(&creds), false, Some(good.as_bytes()))),
            Ok(Some("ops".into()))
        );
        assert!(authenticate(Some(&creds), false, Some(bad.as_bytes())).is_err());
        assert_eq!(
            who(authenticate(Some(&creds), false, Some(b"Bearer x"))),
            Ok(None)
        );
        // No credentials configured: the header is ignored.
        assert_eq!(
            who(authenticate(None, false, Some(bad.as_bytes()))),
            Ok(None)
        );
        assert!(authenticate(None, true, Some(good.as_bytes())).is_err());
    }

    #[test]
    fn refusals_never_carry_the_secret() {
        let bad = header_value(&Credential::new("ops", "hunter2"));
        let err = authenticate(Some(&creds()), true, Some(bad.as_bytes())).expect_err("wrong");
        assert!(!err.0.contains("hunter2"), "{err}");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
            let _ = is_basic(&bytes);
            let _ = authenticate(Some(&creds()), true, Some(&bytes));
            let _ = authenticate(Some(&creds()), false, Some(&bytes));
        }

        #[test]
        fn basic_garbage_never_panics(tail in ".{0,100}") {
            let _ = parse(format!("Basic {tail}").as_bytes());
        }

        #[test]
        fn round_trip(principal in "[^:\\x00]{1,30}", secret in ".{0,40}") {
            let c = Credential::new(principal, secret);
            prop_assert_eq!(parse(header_value(&c).as_bytes()), Ok(c));
        }
    }
}
