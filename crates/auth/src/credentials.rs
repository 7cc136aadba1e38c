//! Credentials: Mesos' credentials file (the master's `--credentials`, the
//! agent's `--http-credentials`), an agent's or a client's own single
//! credential (`--credential`), and the constant-time check of a
//! principal's secret.
//!
//! Formats:
//! - the credentials file: `{"credentials": [{"principal": "p", "secret": "s"}, ...]}`;
//! - a single credential: `{"principal": "p", "secret": "s"}`, or Mesos'
//!   legacy plain text `p s` on one line.
//!
//! A secret is held as a [`Secret`], which never prints its value.

use std::collections::BTreeMap;
use std::fmt;

use crate::Principal;

/// A secret (a password): compared in constant time, printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for whoever must send it (a client building an
    /// `Authorization` header). Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, in time that depends on neither
    /// value's content nor on where they first differ: both are hashed
    /// first, so even their lengths leak nothing but through the hashing.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        let theirs = ring::digest::digest(&ring::digest::SHA256, candidate);
        constant_time_eq(ours.as_ref(), theirs.as_ref())
    }
}

/// Compares two byte strings of equal length without branching on their
/// content (lengths differ only for digests of different algorithms, which
/// never happens here).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= x ^ y;
    }
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One principal and its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub principal: Principal,
    pub secret: Secret,
}

impl Credential {
    pub fn new(principal: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            principal: Principal::new(principal),
            secret: Secret::new(secret),
        }
    }

    /// A single credential: Mesos' JSON `{"principal": .., "secret": ..}`,
    /// or its legacy plain text `principal secret` on one line.
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let trimmed = text.trim();
        if trimmed.starts_with('{') {
            let raw: RawCredential = serde_json::from_str(trimmed)
                .map_err(|e| CredentialsError::Json(redact_serde(&e)))?;
            return raw.into_credential(0);
        }
        let mut lines = trimmed.lines().filter(|l| !l.trim().is_empty());
        let Some(line) = lines.next() else {
            return Err(CredentialsError::Empty);
        };
        if lines.next().is_some() {
            return Err(CredentialsError::Format(
                "a credential is one line 'principal secret' (or JSON {\"principal\": .., \"secret\": ..})"
                    .into(),
            ));
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(principal), Some(secret), None) => Ok(Credential::new(principal, secret)),
            _ => Err(CredentialsError::Format(
                "a credential is one line 'principal secret' (or JSON {\"principal\": .., \"secret\": ..})"
                    .into(),
            )),
        }
    }
}

/// Why a credentials file was refused. Never carries a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("not valid JSON for credentials: {0}")]
    Json(String),
    #[error("the credentials are empty")]
    Empty,
    #[error("credential #{index} has an empty principal")]
    EmptyPrincipal { index: usize },
    #[error("credential '{principal}' has an empty secret")]
    EmptySecret { principal: String },
    #[error("principal '{0}' is listed more than once")]
    DuplicatePrincipal(String),
    #[error("{0}")]
    Format(String),
}

/// serde_json's messages may quote the input (an invalid string's
/// content): only the position is kept, so a secret never reaches a log.
fn redact_serde(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "cannot read",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected content",
        serde_json::error::Category::Eof => "unexpected end",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    credentials: Vec<RawCredential>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    principal: String,
    #[serde(default)]
    secret: String,
}

impl RawCredential {
    fn into_credential(self, index: usize) -> Result<Credential, CredentialsError> {
        if self.principal.trim().is_empty() {
            return Err(CredentialsError::EmptyPrincipal { index });
        }
        if self.secret.is_empty() {
            return Err(CredentialsError::EmptySecret {
                principal: self.principal,
            });
        }
        Ok(Credential::new(self.principal, self.secret))
    }
}

/// The principals a daemon accepts and their secrets (Mesos' credentials file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    secrets: BTreeMap<Principal, Secret>,
}

impl Credentials {
    /// Parses Mesos' credentials file: `{"credentials": [{"principal": ..,
    /// "secret": ..}]}`. Refused: bad JSON, an empty principal or secret, a
    /// principal listed twice, no credential at all.
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let raw: RawFile =
            serde_json::from_str(text).map_err(|e| CredentialsError::Json(redact_serde(&e)))?;
        if raw.credentials.is_empty() {
            return Err(CredentialsError::Empty);
        }
        let mut secrets = BTreeMap::new();
        for (index, raw) in raw.credentials.into_iter().enumerate() {
            let credential = raw.into_credential(index)?;
            if secrets.contains_key(&credential.principal) {
                return Err(CredentialsError::DuplicatePrincipal(
                    credential.principal.as_str().to_string(),
                ));
            }
            secrets.insert(credential.principal, credential.secret);
        }
        Ok(Self { secrets })
    }

    /// Credentials from a list (tests, embedders).
    pub fn from_list(list: impl IntoIterator<Item = Credential>) -> Self {
        Self {
            secrets: list.into_iter().map(|c| (c.principal, c.secret)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The principal, if `secret` is its secret. The secret comparison
    /// takes constant time; an unknown principal is compared against a
    /// placeholder so that it costs about as much as a known one.
    pub fn verify(&self, principal: &str, secret: &[u8]) -> Option<Principal> {
        let key = Principal::new(principal);
        match self.secrets.get_key_value(&key) {
            Some((principal, expected)) => expected.matches(secret).then(|| principal.clone()),
            None => {
                let _ = Secret::new("").matches(secret);
                None
            }
        }
    }
}

/// Strips the `file://` prefix Mesos allows on file flags.
pub fn flag_path(value: &str) -> &str {
    value.strip_prefix("file://").unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_mesos_credentials_file_and_verifies() {
        let creds = Credentials::parse(
            r#"{"credentials":[{"principal":"spark","secret":"s3cret"},{"principal":"ops","secret":"x"}]}"#,
        )
        .expect("valid");
        assert_eq!(creds.len(), 2);
        assert_eq!(
            creds.verify("spark", b"s3cret"),
            Some(Principal::new("spark"))
        );
        assert_eq!(creds.verify("spark", b"s3cret "), None);
        assert_eq!(creds.verify("spark", b""), None);
        assert_eq!(creds.verify("ops", b"s3cret"), None);
        assert_eq!(creds.verify("nobody", b"s3cret"), None);
    }

    #[test]
    fn refuses_bad_files_with_clear_errors() {
        assert!(matches!(
            Credentials::parse("{not json"),
            Err(CredentialsError::Json(_))
        ));
        assert_eq!(
            Credentials::parse(r#"{"credentials":[]}"#),
            Err(CredentialsError::Empty)
        );
        assert_eq!(
            Credentials::parse(r#"{"credentials":[{"principal":" ","secret":"a"}]}"#),
            Err(CredentialsError::EmptyPrincipal { index: 0 })
        );
        assert_eq!(
            Credentials::parse(r#"{"credentials":[{"principal":"a","secret":""}]}"#),
            Err(CredentialsError::EmptySecret {
                principal: "a".into()
            })
        );
        assert_eq!(
            Credentials::parse(
                r#"{"credentials":[{"principal":"a","secret":"1"},{"principal":"a","secret":"2"}]}"#
            ),
            Err(CredentialsError::DuplicatePrincipal("a".into()))
        );
    }

    #[test]
    fn a_json_error_never_quotes_the_secret() {
        // An invalid escape inside the secret's string.
        let err = Credentials::parse(r#"{"credentials":[{"principal":"a","secret":"hunter2\q"}]}"#)
            .expect_err("invalid");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = Credential::parse(r#"{"principal":"a","secret":"hunter2","x":1}"#)
            .expect_err("unknown field");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn single_credential_json_and_legacy_text() {
        let json = Credential::parse(r#"{"principal":"agent","secret":"pw"}"#).expect("json");
        assert_eq!(json, Credential::new("agent", "pw"));
        let text = Credential::parse("agent pw\n").expect("text");
        assert_eq!(text, Credential::new("agent", "pw"));
        assert!(Credential::parse("").is_err());
        assert!(Credential::parse("only-principal").is_err());
        assert!(Credential::parse("a b c").is_err());
        assert!(Credential::parse("a b\nc d").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let c = Credential::new("p", "topsecret");
        assert!(!format!("{c:?}").contains("topsecret"));
        assert_eq!(c.secret.to_string(), "<redacted>");
        let creds = Credentials::from_list([c]);
        assert!(!format!("{creds:?}").contains("topsecret"));
    }

    #[test]
    fn file_prefix_is_stripped() {
        assert_eq!(flag_path("file:///etc/creds"), "/etc/creds");
        assert_eq!(flag_path("/etc/creds"), "/etc/creds");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in ".{0,200}") {
            let _ = Credentials::parse(&text);
            let _ = Credential::parse(&text);
        }

        #[test]
        fn verify_accepts_exactly_the_secret(secret in "[ -~]{1,40}", other in "[ -~]{0,40}") {
            let creds = Credentials::from_list([Credential::new("p", secret.clone())]);
            prop_assert_eq!(creds.verify("p", secret.as_bytes()), Some(Principal::new("p")));
            prop_assert_eq!(creds.verify("p", other.as_bytes()).is_some(), other == secret);
        }
    }
}
