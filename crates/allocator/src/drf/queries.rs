//! Read-only questions: free resources, "why no offer?", role summaries.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use agora_core::{AgentId, FrameworkId, Resources};

use super::DrfAllocator;
use crate::roles::allocatable_to_role;
use crate::scalars;
use crate::{NoOfferReason, OfferStatus, RoleSummary};

impl DrfAllocator {
    pub(super) fn free_by_agent(&self) -> BTreeMap<AgentId, Resources> {
        self.agents
            .iter()
            .flatten()
            .map(|a| (a.id.clone(), a.free.clone()))
            .collect()
    }

    pub(super) fn offer_status_of(
        &self,
        framework_id: &FrameworkId,
        role: &str,
        now: Duration,
    ) -> Option<OfferStatus> {
        let &f = self.framework_index.get(framework_id)?;
        let framework = self.framework(f);
        let &c = framework.clients.get(role)?;
        let cl = self.client(c);
        let filtered_agents = cl
            .filtered
            .iter()
            .filter(|&&a| {
                self.agent(a)
                    .filters
                    .by_client
                    .get(&c)
                    .is_some_and(|f| f.expires > now)
            })
            .count();
        let status = |reason| OfferStatus {
            last_offered: cl.last_offered,
            reason,
            filtered_agents,
        };
        if !framework.active || !cl.subscribed {
            return Some(status(Some(NoOfferReason::Inactive)));
        }
        if cl.suppressed {
            return Some(status(Some(NoOfferReason::Suppressed)));
        }
        // At the limit: some limited resource has no room left (offers, if
        // any, lack it), or no min-allocatable set fits in the room left.
        let room = self.room_under_limits(cl.node);
        if !self.offerable_scalars(&room) || room.iter().any(|r| *r <= 0) {
            return Some(status(Some(NoOfferReason::QuotaLimit)));
        }
        // One pass over the active agents; agents without reservations are
        // judged on their scalar books without copying resources.
        let mut any_free = false;
        let mut all_filtered = true;
        let mut any_total = false;
        for agent in self.agents.iter().flatten().filter(|a| a.active) {
            let free: Cow<'_, Resources> = if agent.reserved.is_empty() {
                if !self.offerable_scalars(&agent.free_unreserved) {
                    any_total = any_total || self.offerable_scalars(&agent.total_scalars);
                    continue;
                }
                Cow::Borrowed(&agent.free)
            } else {
                Cow::Owned(allocatable_to_role(&agent.free, role))
            };
            if self.offerable(&free) {
                any_free = true;
                if !self.is_filtered(agent, c, &free, now) {
                    all_filtered = false;
                    break;
                }
            } else if !any_total && self.offerable(&allocatable_to_role(&agent.total, role)) {
                any_total = true;
            }
        }
        let reason = if any_free {
            all_filtered.then_some(NoOfferReason::Filtered)
        } else if any_total {
            Some(NoOfferReason::Outranked)
        } else {
            Some(NoOfferReason::NoResources)
        };
        Some(status(reason))
    }

    pub(super) fn summarize_roles(&self) -> Vec<RoleSummary> {
        let mut by_role: BTreeMap<u32, Vec<FrameworkId>> = BTreeMap::new();
        for cl in self.clients.iter().flatten() {
            by_role
                .entry(cl.node)
                .or_default()
                .push(self.framework(cl.framework).id.clone());
        }
        let mut out: Vec<RoleSummary> = (1..self.nodes.len() as u32)
            .filter(|&n| {
                let nd = &self.nodes[n as usize];
                nd.clients > 0
                    || nd.weight_set
                    || nd.quota.is_some()
                    || !scalars::is_zero(&nd.reserved)
                    || !scalars::is_zero(&nd.allocated)
            })
            .map(|n| {
                let mut fws = by_role.remove(&n).unwrap_or_default();
                fws.sort();
                self.role_summary(n, fws)
            })
            .collect();
        out.sort_by(|a, b| a.role.cmp(&b.role));
        out
    }

    pub(super) fn role_summary(&self, n: u32, frameworks: Vec<FrameworkId>) -> RoleSummary {
        let nd = &self.nodes[n as usize];
        RoleSummary {
            role: nd.name.to_string(),
            weight: nd.weight,
            quota: nd.quota.as_ref().map(|q| q.quota.clone()),
            allocated: self.names.to_map(&nd.allocated),
            reserved: self.names.to_map(&nd.reserved),
            consumed: self.names.to_map(&nd.consumption()),
            frameworks,
        }
    }
}
