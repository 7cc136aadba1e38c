//! Role names: Mesos' rules, plus bounds on length and depth.
//!
//! A role is `*` (unreserved, the default) or a `/`-separated path such as
//! `eng/ml`. Mesos does not bound either length or depth; Agora does,
//! because a role's levels become nodes of the allocator's role tree and
//! the role itself appears in every offer, metric and registry key: one
//! framework subscribing with a 10,000-level role must not cost more than a
//! normal one, let alone the master's stack.

use std::fmt;

/// The role of unreserved resources, and frameworks' default role.
pub const UNRESERVED: &str = "*";

/// Longest role accepted, in bytes.
pub const MAX_ROLE_LEN: usize = 512;

/// Most levels a role may have (`a/b/c` has 3).
pub const MAX_ROLE_DEPTH: usize = 32;

/// Why a role name is refused. Messages quote at most the role's first
/// [`QUOTED`] characters, so that a huge role makes a short error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("a role must not be empty")]
    Empty,
    #[error("role '{0}' is longer than {MAX_ROLE_LEN} bytes")]
    TooLong(Quoted),
    #[error("role '{0}' has more than {MAX_ROLE_DEPTH} levels")]
    TooDeep(Quoted),
    #[error("role '{0}' has an empty, '.' or '..' level, or one starting with '-'")]
    BadLevel(Quoted),
    #[error("role '{0}' contains whitespace, a control character, '*', '\\', ':' or ';'")]
    BadCharacter(Quoted),
}

/// How many characters of a refused role an error quotes.
pub const QUOTED: usize = 64;

/// The start of a refused role, for messages (`…` marks a cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    fn of(role: &str) -> Self {
        match role.char_indices().nth(QUOTED) {
            Some((cut, _)) => Self(format!("{}…", &role[..cut])),
            None => Self(role.to_string()),
        }
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a role: `*`, or a `/`-separated path of at most
/// [`MAX_ROLE_DEPTH`] non-empty levels, [`MAX_ROLE_LEN`] bytes in all,
/// without whitespace, control characters, `*` or `\`, no level `.` or `..`
/// or starting with `-` (Mesos' rules), and without `:` or `;`, which
/// Mesos allows but the resources text form (`cpus(role):4;mem:8`) uses as
/// delimiters: a reservation for such a role would print to text that
/// parses to something else, and the registry stores agents' resources as
/// text. Length is checked first, so the work done on a hostile role is
/// bounded.
pub fn validate_role(role: &str) -> Result<(), RoleError> {
    if role == UNRESERVED {
        return Ok(());
    }
    if role.is_empty() {
        return Err(RoleError::Empty);
    }
    if role.len() > MAX_ROLE_LEN {
        return Err(RoleError::TooLong(Quoted::of(role)));
    }
    if role.split('/').count() > MAX_ROLE_DEPTH {
        return Err(RoleError::TooDeep(Quoted::of(role)));
    }
    for level in role.split('/') {
        if level.is_empty() || level == "." || level == ".." || level.starts_with('-') {
            return Err(RoleError::BadLevel(Quoted::of(role)));
        }
        if level
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '\\' | ':' | ';'))
        {
            return Err(RoleError::BadCharacter(Quoted::of(role)));
        }
    }
    Ok(())
}

/// Whether [`validate_role`] accepts `role`.
pub fn valid_role(role: &str) -> bool {
    validate_role(role).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesos_rules_hold() {
        for ok in ["*", "eng", "eng/ml", "a-b", "a.b", "a_b/c-d", "ö"] {
            assert_eq!(validate_role(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "/", "a/", "/a", "a//b", ".", "..", "a/./b", "a/../b", "-a", "a/-b", "a b", "a\tb",
            "a\nb", "a*", "a\\b", "o:ps", "a;b",
        ] {
            assert!(validate_role(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn long_and_deep_roles_are_refused_with_a_short_message() {
        let deep = vec!["a"; 10_000].join("/");
        let err = validate_role(&deep).expect_err("deep role refused");
        assert!(matches!(err, RoleError::TooLong(_)), "{err:?}");
        assert!(err.to_string().len() < 200, "{err}");
        let at_depth = vec!["a"; MAX_ROLE_DEPTH].join("/");
        assert_eq!(validate_role(&at_depth), Ok(()));
        let too_deep = vec!["a"; MAX_ROLE_DEPTH + 1].join("/");
        assert!(matches!(
            validate_role(&too_deep),
            Err(RoleError::TooDeep(_))
        ));
        assert_eq!(validate_role(&"r".repeat(MAX_ROLE_LEN)), Ok(()));
        let long = "r".repeat(MAX_ROLE_LEN + 1);
        let err = validate_role(&long).expect_err("long role refused");
        assert!(matches!(err, RoleError::TooLong(_)));
        assert!(err.to_string().contains('…'), "{err}");
        // Multi-byte characters are cut on a character boundary.
        let wide = "ö".repeat(MAX_ROLE_LEN);
        assert!(validate_role(&wide).is_err());
    }
}
