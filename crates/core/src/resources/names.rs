//! Which well-known resource a name a person typed was probably meant to be.
//!
//! Any valid name is a resource (custom resources are a feature), so a typo
//! such as `cpu:4` or `mme:512` silently becomes a resource nobody asks for.
//! Front ends (flags) warn about names one edit away from a well-known one;
//! the commonest typos are refused outright by [`super::Resources::parse_input`].

/// The resource names with a meaning of their own ([`super::Kind::required_for`]).
pub const KNOWN: [&str; 5] = ["cpus", "mem", "disk", "ports", "gpus"];

/// The well-known name `name` is one edit away from (a letter added, removed,
/// changed, or two neighbours swapped), if it is not itself well known.
/// `None` for a well-known name and for a name further from all of them.
pub fn likely_meant(name: &str) -> Option<&'static str> {
    if KNOWN.contains(&name) {
        return None;
    }
    KNOWN
        .into_iter()
        .find(|known| within_one_edit(name.as_bytes(), known.as_bytes()))
}

/// Whether `a` becomes `b` with at most one insertion, deletion,
/// substitution or transposition of adjacent bytes.
fn within_one_edit(a: &[u8], b: &[u8]) -> bool {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    match (a.len(), b.len()) {
        (0, 0) | (1, 0) | (0, 1) => true,
        // A substitution leaves the rests equal, a transposition swaps the
        // first two bytes of each.
        (m, n) if m == n => {
            a[1..] == b[1..] || (m >= 2 && a[0] == b[1] && a[1] == b[0] && a[2..] == b[2..])
        }
        (m, n) if m == n + 1 => a[1..] == *b,
        (m, n) if m + 1 == n => *a == b[1..],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_one_edit_from_a_known_one_names_it() {
        for (typed, meant) in [
            ("cpu", "cpus"),   // deleted
            ("cpuss", "cpus"), // inserted
            ("cpis", "cpus"),  // changed
            ("cpsu", "cpus"),  // swapped
            ("mme", "mem"),
            ("mems", "mem"),
            ("dsk", "disk"),
            ("disks", "disk"),
            ("port", "ports"),
            ("gpu", "gpus"),
            ("xmem", "mem"),
        ] {
            assert_eq!(likely_meant(typed), Some(meant), "{typed}");
        }
    }

    #[test]
    fn known_names_and_distant_ones_name_nothing() {
        for name in KNOWN
            .into_iter()
            .chain(["memory", "ram", "cp", "gpxxs", "zones", "", "x"])
        {
            assert_eq!(likely_meant(name), None, "{name}");
        }
    }

    #[test]
    fn one_edit_is_exactly_levenshtein_one_or_a_swap() {
        assert!(within_one_edit(b"abc", b"abc"));
        assert!(within_one_edit(b"abc", b"abd"));
        assert!(within_one_edit(b"abc", b"bac"));
        assert!(within_one_edit(b"abc", b"ab"));
        assert!(within_one_edit(b"bc", b"abc"));
        assert!(!within_one_edit(b"abc", b"cba"));
        assert!(!within_one_edit(b"abc", b"a"));
        assert!(!within_one_edit(b"abcd", b"abdcx"));
        assert!(!within_one_edit(b"axc", b"abd"));
    }
}
