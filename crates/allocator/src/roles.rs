//! Role and reservation helpers over `agora_core::Resources`.
//!
//! `Resources::allocatable_to` in core gives a role the unreserved resources
//! and those reserved for exactly that role; in a role tree a role may also
//! use the reservations of its ancestors (`eng/ml` uses `cpus(eng)`), which
//! [`allocatable_to_role`] adds.

use std::collections::BTreeMap;

use agora_core::Resources;
use agora_core::resources::UNRESERVED;

/// Whether `role` is `ancestor` or lies below it in the role tree.
pub fn is_role_or_descendant(role: &str, ancestor: &str) -> bool {
    role == ancestor
        || (ancestor != UNRESERVED
            && role.len() > ancestor.len()
            && role.starts_with(ancestor)
            && role.as_bytes()[ancestor.len()] == b'/')
}

/// The proper ancestors of a role path, nearest last: `a/b/c` -> `a`, `a/b`.
pub(crate) fn ancestors(role: &str) -> impl Iterator<Item = &str> {
    role.match_indices('/').map(move |(i, _)| &role[..i])
}

/// Resources reserved for exactly `role` (empty for `*`).
pub fn reserved_for(resources: &Resources, role: &str) -> Resources {
    if role == UNRESERVED {
        return Resources::new();
    }
    let mut out = resources.allocatable_to(role);
    out.subtract(&resources.allocatable_to(UNRESERVED));
    out
}

/// What a framework in `role` may be offered out of `resources`: the
/// unreserved ones and those reserved for `role` or any of its ancestors.
pub fn allocatable_to_role(resources: &Resources, role: &str) -> Resources {
    let mut out = resources.allocatable_to(role);
    if role.contains('/') {
        for ancestor in ancestors(role) {
            out.add(&reserved_for(resources, ancestor));
        }
    }
    out
}

/// The same quantities with every reservation removed.
pub fn unreserved_form(resources: &Resources) -> Resources {
    resources.unreserved()
}

/// Splits resources by reservation role (`*` for unreserved).
pub(crate) fn split_by_role(resources: &Resources) -> BTreeMap<String, Resources> {
    resources.by_role()
}

/// Whether every entry is a scalar.
pub(crate) fn only_scalars(resources: &Resources) -> bool {
    resources.only_scalars()
}

/// `a ∩ b`: what of `b` is in `a`.
pub(crate) fn intersection(a: &Resources, b: &Resources) -> Resources {
    let mut outside = a.clone();
    outside.subtract(b);
    let mut inside = a.clone();
    inside.subtract(&outside);
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(t: &str) -> Resources {
        Resources::parse(t).unwrap()
    }

    #[test]
    fn role_tree_helpers() {
        assert!(is_role_or_descendant("eng/ml", "eng"));
        assert!(is_role_or_descendant("eng", "eng"));
        assert!(!is_role_or_descendant("engineering", "eng"));
        assert!(!is_role_or_descendant("eng", "eng/ml"));
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b"]);
        let r = res("cpus:1;cpus(eng):2;cpus(eng/ml):3;cpus(ops):4;mem(eng):5");
        assert_eq!(
            allocatable_to_role(&r, "eng/ml"),
            res("cpus:1;cpus(eng):2;cpus(eng/ml):3;mem(eng):5")
        );
        assert_eq!(
            allocatable_to_role(&r, "eng"),
            res("cpus:1;cpus(eng):2;mem(eng):5")
        );
        assert_eq!(allocatable_to_role(&r, "*"), res("cpus:1"));
        assert_eq!(
            unreserved_form(&res("cpus(eng):2;cpus:1;ports(a):[1-3]")),
            res("cpus:3;ports:[1-3]")
        );
        let split = split_by_role(&r);
        assert_eq!(split["eng"], res("cpus(eng):2;mem(eng):5"));
        assert_eq!(split["*"], res("cpus:1"));
        assert!(only_scalars(&res("cpus:1;mem:2")));
        assert!(!only_scalars(&res("cpus:1;ports:[1-2]")));
        assert_eq!(
            intersection(&res("cpus:2;mem:5"), &res("cpus:3;disk:1")),
            res("cpus:2")
        );
    }
}
