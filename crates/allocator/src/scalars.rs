//! Dense scalar vectors: the allocator's fast books for shares and quota.
//!
//! Scalar resource names are interned into at most [`MAX_SCALARS`] slots
//! (cpus, mem, disk, gpus first); amounts are integer thousandths like
//! `Resources`, so sums never drift. ScalarNames beyond the slots are ignored for
//! fair share and quota (they are still offered).

use std::collections::BTreeMap;

use agora_core::Resources;
use agora_core::resources::UNRESERVED;

pub(crate) const MAX_SCALARS: usize = 8;

/// Thousandths of a unit. `agora_core` accepts at most
/// [`agora_core::resources::MAX_SCALAR`] units per entry, so an `i64` sums
/// ~920,000 agents at that maximum exactly (checked below); the arithmetic
/// saturates besides, so even a bypassed bound can never wrap. (An `i128`
/// was measured: it made the quota allocation cycle 60 % slower.)
pub(crate) type Amount = i64;

const _: () = assert!(
    (agora_core::resources::MAX_SCALAR as i64) * 1000 * 900_000 < i64::MAX,
    "the books must hold 900,000 agents at the per-entry maximum"
);

/// One amount per interned scalar name, by slot (see [`ScalarNames`]).
pub(crate) type Scalars = [Amount; MAX_SCALARS];

/// A quota limit's value where the resource is unlimited.
pub(crate) const UNLIMITED: Amount = Amount::MAX;

pub(crate) const ZERO: Scalars = [0; MAX_SCALARS];

/// Units as thousandths (`as` saturates on the way: never wraps).
pub(crate) fn millis(v: f64) -> Amount {
    (v * 1000.0).round() as Amount
}

/// The interned scalar names: slot `i` of every [`Scalars`] is `names[i]`.
#[derive(Debug, Clone)]
pub(crate) struct ScalarNames {
    names: Vec<String>,
}

impl ScalarNames {
    pub(crate) fn new() -> Self {
        Self {
            names: ["cpus", "mem", "disk", "gpus"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Interns the scalar names of `res` while slots are left.
    pub(crate) fn intern(&mut self, res: &Resources) {
        for name in res.names() {
            if self.names.len() >= MAX_SCALARS {
                return;
            }
            if self.index(name).is_none() && res.scalar_value(name) > 0.0 {
                self.names.push(name.to_string());
            }
        }
    }

    /// Scalars summed over all roles.
    pub(crate) fn of(&self, res: &Resources) -> Scalars {
        let mut out = ZERO;
        if res.is_empty() {
            return out;
        }
        for (i, n) in self.names.iter().enumerate() {
            out[i] = millis(res.scalar_value(n));
        }
        out
    }

    /// Unreserved scalars only.
    pub(crate) fn unreserved(&self, res: &Resources) -> Scalars {
        self.of(&res.allocatable_to(UNRESERVED))
    }

    pub(crate) fn to_map(&self, sc: &Scalars) -> BTreeMap<String, f64> {
        self.names
            .iter()
            .enumerate()
            .filter(|(i, _)| sc[*i] != 0)
            .map(|(i, n)| (n.clone(), sc[i] as f64 / 1000.0))
            .collect()
    }

    /// Like `to_map`, as text for error messages.
    pub(crate) fn text(&self, sc: &Scalars) -> String {
        self.to_map(sc)
            .iter()
            .map(|(n, v)| format!("{n}:{v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// `a += b`, overflow-checked: the bound on [`Amount`] makes overflow
/// unreachable, so debug builds (every test and simulation) stop at once if
/// it ever happens, and release builds saturate rather than wrap.
pub(crate) fn add(a: &mut Scalars, b: &Scalars) {
    for i in 0..MAX_SCALARS {
        debug_assert!(
            a[i].checked_add(b[i]).is_some(),
            "scalar books overflowed: {} + {}",
            a[i],
            b[i]
        );
        a[i] = a[i].saturating_add(b[i]);
    }
}

/// `a -= b`, overflow-checked as [`add`].
pub(crate) fn sub(a: &mut Scalars, b: &Scalars) {
    for i in 0..MAX_SCALARS {
        debug_assert!(
            a[i].checked_sub(b[i]).is_some(),
            "scalar books overflowed: {} - {}",
            a[i],
            b[i]
        );
        a[i] = a[i].saturating_sub(b[i]);
    }
}

pub(crate) fn is_zero(a: &Scalars) -> bool {
    a.iter().all(|v| *v == 0)
}

/// Dominant share of `alloc` against `total`, divided by `weight`, as
/// ordered bits (non-negative floats order like their bit patterns).
pub(crate) fn share_bits(alloc: &Scalars, total: &Scalars, weight: f64) -> u64 {
    let mut share = 0.0f64;
    for i in 0..MAX_SCALARS {
        if total[i] > 0 && alloc[i] > 0 {
            share = share.max(alloc[i] as f64 / total[i] as f64);
        }
    }
    (share / weight).max(0.0).to_bits()
}

/// Maps and sets keyed by the allocator's dense `u32` slot indexes, hashed
/// with FxHash (SipHash costs several times more on these keys; the keys
/// are our own indexes, never input an attacker chooses).
pub(crate) type SlotMap<V> = rustc_hash::FxHashMap<u32, V>;
pub(crate) type SlotSet = rustc_hash::FxHashSet<u32>;
