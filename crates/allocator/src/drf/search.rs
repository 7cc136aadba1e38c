//! The offer search: for one agent, the first eligible client in DRF order,
//! and what it may be offered under quota limits, the current stage's
//! guarantee cap and other roles' headroom.
//!
//! A depth-first walk with an explicit stack, so the role tree's depth never
//! touches the thread's stack.

use std::borrow::Cow;
use std::time::Duration;

use agora_core::Resources;

use super::DrfAllocator;
use super::books::AgentSlot;
use super::role_tree::{OWN_FRAMEWORKS, ROOT, SortKey};
use crate::roles::allocatable_to_role;
use crate::scalars::{self, MAX_SCALARS, Scalars, UNLIMITED, ZERO};

/// One role node on [`DrfAllocator::next_recipient`]'s stack: its candidate offer
/// (none for the root) and where it is in its children's DRF order.
pub(super) struct Visit<'s> {
    pub(super) node: u32,
    pub(super) candidate: Option<(Cow<'s, Resources>, Option<Resources>)>,
    pub(super) order: std::collections::btree_set::Iter<'s, SortKey>,
}

/// What the current stage of the cycle allows on top of quota limits.
pub(super) struct StageRules {
    pub(super) now: Duration,
    /// Stage 1: caps the unreserved scalars to the role's unmet guarantee.
    pub(super) stage_cap: Option<Scalars>,
    /// Stage 2: total unmet guarantees of roles with demand, held back from
    /// everyone else.
    pub(super) headroom: Option<Scalars>,
}

impl StageRules {
    /// Stage 1, for a role below its guarantee: at most `cap` (its unmet guarantee).
    pub(super) fn guarantee(now: Duration, cap: Scalars) -> Self {
        Self {
            now,
            stage_cap: Some(cap),
            headroom: None,
        }
    }

    /// Stage 2 over the whole tree: hold back `headroom` (none when zero).
    pub(super) fn fair_share(now: Duration, headroom: Option<Scalars>) -> Self {
        Self {
            now,
            stage_cap: None,
            headroom: headroom.filter(|h| !scalars::is_zero(h)),
        }
    }

    /// Stage 2 over one role's reservations: only quota limits apply.
    pub(super) fn reservations(now: Duration) -> Self {
        Self {
            now,
            stage_cap: None,
            headroom: None,
        }
    }
}

impl DrfAllocator {
    /// Whether client `c`'s DECLINE filter on agent `a` refuses `candidate`.
    pub(super) fn is_filtered(
        &self,
        a: &AgentSlot,
        c: u32,
        candidate: &Resources,
        now: Duration,
    ) -> bool {
        a.filters.refuses(c, candidate, now, || {
            (!a.reserved.is_empty()).then(|| self.client(c).role.as_str())
        })
    }

    /// Whether `sc` reaches every amount of some min-allocatable set (as
    /// [`Self::offerable`], on the interned scalar books).
    pub(super) fn offerable_scalars(&self, sc: &Scalars) -> bool {
        self.min_allocatable_scalars
            .iter()
            .any(|set| !set.is_empty() && set.iter().all(|&(i, v)| sc[i] >= v))
    }

    /// Whether `r` is worth an offer: it reaches every amount of at least one
    /// min-allocatable set (Mesos' `--min_allocatable_resources`).
    pub(super) fn offerable(&self, r: &Resources) -> bool {
        self.config.min_allocatable.iter().any(|set| {
            !set.is_empty()
                && set
                    .iter()
                    .all(|(name, v)| r.scalar_value(name) + 1e-9 >= *v)
        })
    }

    /// Caps on the unreserved scalars a client of `node` may get now.
    pub(super) fn offer_caps(&self, node: u32, rules: &StageRules) -> Scalars {
        let mut cap = [UNLIMITED; MAX_SCALARS];
        let mut own_unmet = ZERO;
        for n in self.role_and_ancestors(node) {
            let nd = &self.nodes[n as usize];
            if let Some(q) = &nd.quota {
                let room = q.room_left(&nd.consumption());
                for i in 0..MAX_SCALARS {
                    cap[i] = cap[i].min(room[i]);
                }
                if nd.active > 0 {
                    scalars::add(&mut own_unmet, &nd.unmet());
                }
            }
        }
        if let Some(stage) = &rules.stage_cap {
            for i in 0..MAX_SCALARS {
                cap[i] = cap[i].min(stage[i]);
            }
        }
        if let Some(required) = &rules.headroom {
            for i in 0..MAX_SCALARS {
                if required[i] > 0 {
                    let allowed = self.available_unreserved[i]
                        .saturating_sub(required[i].saturating_sub(own_unmet[i]));
                    cap[i] = cap[i].min(allowed);
                }
            }
        }
        for v in &mut cap {
            *v = (*v).max(0);
        }
        cap
    }

    /// (candidate before caps, offer after caps) for a client of `node`.
    /// The candidate borrows the agent's free pool when it has no reservations.
    pub(super) fn candidate<'a>(
        &self,
        a: &'a AgentSlot,
        node: u32,
        rules: &StageRules,
    ) -> (Cow<'a, Resources>, Option<Resources>) {
        let base = if a.reserved.is_empty() {
            Cow::Borrowed(&a.free)
        } else {
            Cow::Owned(allocatable_to_role(
                &a.free,
                &self.nodes[node as usize].name,
            ))
        };
        let cap = self.offer_caps(node, rules);
        let mut capped: Option<Resources> = None;
        for (i, cap_i) in cap.iter().enumerate().take(self.names.len()) {
            let have = a.free_unreserved[i];
            if *cap_i < have {
                let excess = (have - cap_i) as f64 / 1000.0;
                if let Ok(cut) = Resources::scalar(self.names.name(i), excess) {
                    capped
                        .get_or_insert_with(|| base.as_ref().clone())
                        .subtract(&cut);
                }
            }
        }
        (base, capped)
    }

    /// Quick prune for agents without reservations: is anything worth
    /// offering under `node`'s caps?
    pub(super) fn unreserved_room_offerable(
        &self,
        a: &AgentSlot,
        node: u32,
        rules: &StageRules,
    ) -> bool {
        let cap = self.offer_caps(node, rules);
        let mut room = a.free_unreserved;
        for i in 0..MAX_SCALARS {
            room[i] = room[i].min(cap[i]);
        }
        self.offerable_scalars(&room)
    }

    pub(super) fn reserved_below(&self, reserved_roles: &[u32], node: u32) -> bool {
        reserved_roles.iter().any(|&r| self.in_subtree(r, node))
    }

    /// The first eligible client in DRF order under `n`, with its offer
    /// (`None`: the agent's whole free pool). A depth-first walk with an
    /// explicit stack, so that the role tree's depth never touches the
    /// thread's stack.
    pub(super) fn next_recipient(
        &self,
        a: &AgentSlot,
        n: u32,
        reserved_roles: &[u32],
        rules: &StageRules,
    ) -> Option<(u32, Option<Resources>)> {
        let mut stack: Vec<Visit<'_>> = Vec::new();
        stack.extend(self.start_visit(a, n, reserved_roles, rules));
        while let Some(visit) = stack.last_mut() {
            let Some(key) = visit.order.next() else {
                stack.pop();
                continue;
            };
            if key.3 != OWN_FRAMEWORKS {
                let child = self.start_visit(a, key.3, reserved_roles, rules);
                stack.extend(child);
                continue;
            }
            let Some((base, capped)) = &visit.candidate else {
                continue;
            };
            let offer = capped.as_ref().unwrap_or(base.as_ref());
            if !self.offerable(offer) {
                continue;
            }
            let node = &self.nodes[visit.node as usize];
            for ck in &node.own_clients {
                let c = ck.3;
                if a.offered_this_cycle.contains(&c) {
                    continue;
                }
                if self.is_filtered(a, c, base, rules.now) {
                    continue;
                }
                let offer = match (capped, base) {
                    (Some(capped), _) => Some(capped.clone()),
                    (None, Cow::Borrowed(_)) => None,
                    (None, Cow::Owned(base)) => Some(base.clone()),
                };
                return Some((c, offer));
            }
        }
        None
    }

    /// Starts visiting node `n` for [`Self::next_recipient`]: `None` when nothing
    /// under it can be offered anything of this agent.
    pub(super) fn start_visit<'s>(
        &'s self,
        a: &'s AgentSlot,
        n: u32,
        reserved_roles: &[u32],
        rules: &StageRules,
    ) -> Option<Visit<'s>> {
        let node = &self.nodes[n as usize];
        if node.active == 0 {
            return None;
        }
        let mut candidate = None;
        if n != ROOT {
            if reserved_roles.is_empty() && !self.unreserved_room_offerable(a, n, rules) {
                return None;
            }
            let (base, capped) = self.candidate(a, n, rules);
            let offerable = self.offerable(capped.as_ref().unwrap_or(base.as_ref()));
            if !offerable && !self.reserved_below(reserved_roles, n) {
                return None;
            }
            candidate = Some((base, capped));
        }
        Some(Visit {
            node: n,
            candidate,
            order: node.order.iter(),
        })
    }
}
