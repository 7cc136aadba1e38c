//! Executor tokens: the agent mints one per executor run and hands it to the
//! executor in its environment; the executor presents it on every call
//! (`authorization: Bearer <token>`), and the agent refuses any call whose
//! token does not verify or names another executor.
//!
//! The format is Mesos': a JSON Web Token signed with HMAC-SHA256
//! (header `{"alg":"HS256","typ":"JWT"}`, base64url without padding) whose
//! claims are `fid` (framework id), `eid` (executor id) and `cid` (container
//! id: the executor run's id on its agent).
//!
//! *Invariants:* only HS256 is accepted (a token naming `none` or any other
//! algorithm is refused before its payload is looked at); the signature is
//! compared in constant time; the key never appears in a `Debug` form;
//! arbitrary input never panics.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// The header of every token the agent mints.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Tokens longer than this are refused unread: a real one is a few hundred
/// bytes (ids are bounded), and a verifier should not be made to decode
/// megabytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The secret that signs and verifies executor tokens (Mesos'
/// `--jwt_secret_key`). Its `Debug` form never shows the bytes.
#[derive(Clone)]
pub struct TokenKey(hmac::Key);

impl TokenKey {
    /// A key from secret bytes; an empty secret is refused (it would let
    /// anyone who knows the format mint tokens).
    pub fn new(secret: &[u8]) -> Result<Self, TokenError> {
        if secret.is_empty() {
            return Err(TokenError::EmptyKey);
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Who a token speaks for: one run of one executor of one framework.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// The framework id.
    pub fid: String,
    /// The executor id.
    pub eid: String,
    /// The container id: the executor run's id on its agent.
    pub cid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token key is empty")]
    EmptyKey,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the token is not a JSON Web Token (header.payload.signature in base64url)")]
    Malformed,
    #[error("the token's algorithm is not HS256")]
    UnsupportedAlgorithm,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's claims are not fid, eid and cid strings")]
    BadClaims,
}

/// Signs `claims` with `key`.
pub fn mint(key: &TokenKey, claims: &Claims) -> String {
    // Serialising three strings cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let tag = hmac::sign(&key.0, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// Checks `token`'s algorithm and signature, then returns its claims.
pub fn verify(key: &TokenKey, token: &str) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" || header.typ.as_deref().is_some_and(|t| t != "JWT") {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    // The signed bytes are the token's text up to the last dot.
    let signing_input = &token[..token.rfind('.').unwrap_or(0)];
    hmac::verify(&key.0, signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| TokenError::BadClaims)
}

/// The token in an `authorization` header's value: `Bearer <token>` (the
/// scheme's case does not matter), or `None`.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn claims() -> Claims {
        Claims {
            fid: "framework-1".into(),
            eid: "executor-1".into(),
            cid: "7b0c7a3e-1111-4e1e-9d5c-000000000001".into(),
        }
    }

    #[test]
    fn round_trip() {
        let token = mint(&key(), &claims());
        assert_eq!(verify(&key(), &token), Ok(claims()));
    }

    #[test]
    fn header_is_mesos_header() {
        let token = mint(&key(), &claims());
        let header = token.split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"alg":"HS256","typ":"JWT"}"#
        );
        assert!(!token.contains('='), "no padding");
    }

    #[test]
    fn another_key_is_refused() {
        let token = mint(&key(), &claims());
        let other = TokenKey::new(b"another key").unwrap();
        assert_eq!(verify(&other, &token), Err(TokenError::BadSignature));
    }

    #[test]
    fn empty_key_is_refused() {
        assert_eq!(TokenKey::new(b"").unwrap_err(), TokenError::EmptyKey);
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", key());
        assert_eq!(shown, "TokenKey(<redacted>)");
    }

    #[test]
    fn alg_none_is_refused() {
        let token = mint(&key(), &claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        parts[0] = &none;
        let forged = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(
            verify(&key(), &forged),
            Err(TokenError::UnsupportedAlgorithm)
        );
        let with_sig = parts.join(".");
        assert_eq!(
            verify(&key(), &with_sig),
            Err(TokenError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn other_algorithms_are_refused() {
        for alg in ["HS512", "RS256", "hs256", ""] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
            let input = format!("{header}.{payload}");
            let tag = hmac::sign(&key().0, input.as_bytes());
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
            assert_eq!(
                verify(&key(), &token),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn signed_garbage_claims_are_refused() {
        let header = URL_SAFE_NO_PAD.encode(HEADER);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"fid":"f","eid":"e"}"#);
        let input = format!("{header}.{payload}");
        let tag = hmac::sign(&key().0, input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(verify(&key(), &token), Err(TokenError::BadClaims));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for token in ["", ".", "..", "a.b.c", "a.b", "a.b.c.d", "garbage"] {
            assert!(verify(&key(), token).is_err(), "{token:?}");
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verify(&key(), &long), Err(TokenError::TooLong));
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    proptest! {
        #[test]
        fn any_claims_round_trip(fid in ".{0,64}", eid in ".{0,64}", cid in ".{0,64}") {
            let claims = Claims { fid, eid, cid };
            let token = mint(&key(), &claims);
            prop_assert_eq!(verify(&key(), &token), Ok(claims));
        }

        #[test]
        fn any_changed_byte_is_refused(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let token = mint(&key(), &claims());
            let mut bytes = token.clone().into_bytes();
            let i = index.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            // A change that is no longer UTF-8 cannot even be presented.
            if let Ok(changed) = String::from_utf8(bytes) {
                prop_assert!(verify(&key(), &changed).is_err());
            }
        }

        #[test]
        fn arbitrary_input_never_panics(input in ".{0,300}") {
            let _ = verify(&key(), &input);
            let _ = bearer(&input);
        }

        #[test]
        fn arbitrary_three_parts_never_panic(a in "[A-Za-z0-9_=-]{0,60}", b in "[A-Za-z0-9_=-]{0,60}", c in "[A-Za-z0-9_=-]{0,60}") {
            let _ = verify(&key(), &format!("{a}.{b}.{c}"));
        }
    }
}
