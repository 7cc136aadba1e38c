//! Credentials as a daemon or a client reads them: Mesos' credentials file
//! (`--credentials`), a single credential (`--credential`), an HTTP Basic `Authorization`
//! value (HTTP and gRPC metadata), and an executor's `Bearer` token.
//!
//! The first byte picks the parser. Invariants: every parsed credential verifies against the
//! credentials it came from; a Basic value a client builds parses back to the same principal
//! and secret; a token verifies only if minting its claims again gives the very same token.
#![no_main]

use agora_auth::credentials::{Credential, Credentials};
use agora_auth::{basic, executor_token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(rest).ok();
    match which % 4 {
        0 => {
            if let Some(text) = text
                && let Ok(credentials) = Credentials::parse(text)
            {
                assert!(!credentials.is_empty());
            }
        }
        1 => {
            if let Some(text) = text
                && let Ok(credential) = Credential::parse(text)
            {
                let list = Credentials::from_list([credential.clone()]);
                assert_eq!(
                    list.verify(
                        credential.principal.as_str(),
                        credential.secret.expose().as_bytes()
                    ),
                    Some(credential.principal.clone())
                );
                // A secret is never printed: its Debug and Display forms do not
                // depend on it at all. (Searching the output for the secret is
                // not the invariant: a secret such as "acted> <redact" occurs
                // in the placeholders themselves.)
                let shown = format!("{:?} {}", credential.secret, credential.secret);
                assert_eq!(shown, "<redacted> <redacted>", "Debug or Display of a secret");
            }
        }
        2 => {
            if let Ok(credential) = basic::parse(rest) {
                let header = basic::header_value(&credential);
                let again = basic::parse(header.as_bytes()).expect("a built Basic value parses");
                assert_eq!(credential, again, "Basic round trip");
            }
        }
        _ => {
            let key = executor_token::TokenKey::new(b"fuzzing key: 32 bytes or more...")
                .expect("a valid key");
            if let Some(value) = text {
                let token = executor_token::bearer(value).unwrap_or(value);
                if let Ok(claims) = executor_token::verify(&key, token) {
                    // Only the agent's own minting can produce a verifying token.
                    assert_eq!(
                        executor_token::mint(&key, &claims),
                        token,
                        "forged token verified"
                    );
                }
            }
        }
    }
});
