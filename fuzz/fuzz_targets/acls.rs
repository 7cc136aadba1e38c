//! Mesos' ACL JSON (`--acls`), then authorization decisions on it.
//!
//! Input: the ACL document, then (after a NUL byte) a subject and an object to check, separated
//! by another NUL. Invariants: no decision panics; an action the document does not name
//! answers `permissive`; an action that `Acls::restricts` says never refuses allows every
//! request; the default ACLs allow everything.
#![no_main]

use agora_auth::Principal;
use agora_auth::acl::{Acls, Action};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let document = parts.next().unwrap_or_default();
    let subject = parts.next().map(Principal::new);
    let object = parts.next().unwrap_or("");
    let Ok(acls) = Acls::parse(document) else {
        return;
    };
    let default = Acls::default();
    for action in Action::ALL {
        let one = acls.authorized(action, subject.as_ref(), object);
        let any = acls.authorized_any(action, subject.as_ref());
        let anonymous = acls.authorized(action, None, object);
        if !acls.restricts(action) {
            assert!(
                one && any && anonymous,
                "{action} refused although not restricted"
            );
        }
        if !document.contains(action.key()) {
            assert_eq!(one, acls.permissive(), "{action} without rules");
            assert_eq!(any, acls.permissive(), "{action} without rules");
        }
        assert!(default.authorized(action, subject.as_ref(), object));
    }
});
