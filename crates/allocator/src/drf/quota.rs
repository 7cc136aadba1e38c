//! Quota: each role's guarantee (held back for it while it has demand) and
//! limit (never exceeded by what its subtree consumes).

use std::collections::{BTreeMap, BTreeSet};

use agora_core::resources::{UNRESERVED, valid_role};

use super::DrfAllocator;
use crate::roles::only_scalars;
use crate::scalars::{self, MAX_SCALARS, Scalars, UNLIMITED, ZERO};
use crate::{AllocatorError, Quota};

#[derive(Debug)]
pub(super) struct QuotaBooks {
    pub(super) quota: Quota,
    pub(super) guarantee: Scalars,
    /// [`UNLIMITED`] where unlimited.
    pub(super) limit: Scalars,
}

impl QuotaBooks {
    /// Room left under the limit after `consumed`, per scalar: [`UNLIMITED`]
    /// where the limit does not name the resource, negative where the role
    /// is above its limit.
    pub(super) fn room_left(&self, consumed: &Scalars) -> Scalars {
        let mut room = [UNLIMITED; MAX_SCALARS];
        for i in 0..MAX_SCALARS {
            if self.limit[i] != UNLIMITED {
                room[i] = self.limit[i].saturating_sub(consumed[i]);
            }
        }
        room
    }

    /// Unmet guarantee after `consumed`, per scalar (zero where met).
    pub(super) fn unmet(&self, consumed: &Scalars) -> Scalars {
        let mut out = ZERO;
        for i in 0..MAX_SCALARS {
            out[i] = self.guarantee[i].saturating_sub(consumed[i]).max(0);
        }
        out
    }

    /// What the guarantee stage may give the role: its unmet guarantee of
    /// every resource the guarantee names (zero once met, so a role whose
    /// `mem` is met cannot take the `mem` another role's guarantee still
    /// needs), and no stage cap on resources it does not name.
    pub(super) fn guarantee_stage_cap(&self, consumed: &Scalars) -> Scalars {
        let unmet = self.unmet(consumed);
        let mut cap = [UNLIMITED; MAX_SCALARS];
        for i in 0..MAX_SCALARS {
            if self.guarantee[i] > 0 {
                cap[i] = unmet[i];
            }
        }
        cap
    }

    /// Whether `consumed` is above the limit of some resource.
    pub(super) fn exceeded_by(&self, consumed: &Scalars) -> bool {
        (0..MAX_SCALARS).any(|i| self.limit[i] != UNLIMITED && consumed[i] > self.limit[i])
    }
}

impl DrfAllocator {
    /// Room left under the limits of `node` and of every ancestor, per
    /// scalar ([`UNLIMITED`] where none limits it).
    pub(super) fn room_under_limits(&self, node: u32) -> Scalars {
        let mut room = [UNLIMITED; MAX_SCALARS];
        for n in self.role_and_ancestors(node) {
            let nd = &self.nodes[n as usize];
            if let Some(q) = &nd.quota {
                let left = q.room_left(&nd.consumption());
                for i in 0..MAX_SCALARS {
                    room[i] = room[i].min(left[i]);
                }
            }
        }
        room
    }

    /// Stage 2's headroom: the unmet guarantees of every quota role with
    /// demand, which no other role may be offered.
    pub(super) fn required_headroom(&self) -> Scalars {
        let mut req = ZERO;
        for &g in &self.quota_roles {
            let nd = &self.nodes[g as usize];
            if nd.active > 0 {
                scalars::add(&mut req, &nd.unmet());
            }
        }
        req
    }

    /// Roles whose consumption exceeds their limit.
    pub fn roles_over_limit(&self) -> Vec<String> {
        self.quota_roles
            .iter()
            .filter(|&&n| {
                let nd = &self.nodes[n as usize];
                let q = nd.quota.as_ref().expect("quota role");
                q.exceeded_by(&nd.consumption())
            })
            .map(|&n| self.nodes[n as usize].name.to_string())
            .collect()
    }

    pub(super) fn set_quotas(
        &mut self,
        quotas: &[(String, Quota)],
        force: bool,
    ) -> Result<Vec<String>, AllocatorError> {
        let invalid = |role: &str, why: &str| AllocatorError::InvalidQuota {
            role: role.to_string(),
            why: why.to_string(),
        };
        let mut names = self.names.clone();
        for (role, q) in quotas {
            if !valid_role(role) || role == UNRESERVED {
                return Err(AllocatorError::InvalidRole(role.clone()));
            }
            for r in [&q.guarantee, &q.limit] {
                if !only_scalars(r) {
                    return Err(invalid(role, "only scalar resources can have quota"));
                }
                if r.allocatable_to(UNRESERVED) != *r {
                    return Err(invalid(role, "quota resources must be unreserved"));
                }
                names.intern(r);
                if r.names().iter().any(|n| names.index(n).is_none()) {
                    return Err(invalid(role, "too many distinct scalar resource names"));
                }
            }
            for name in q.limit.names() {
                if q.guarantee.scalar_value(name) > q.limit.scalar_value(name) {
                    return Err(invalid(
                        role,
                        &format!("guarantee of '{name}' is above its limit"),
                    ));
                }
            }
        }
        self.names = names;
        let books: Vec<(String, QuotaBooks)> = quotas
            .iter()
            .map(|(role, q)| {
                let guarantee = self.names.of(&q.guarantee);
                let mut limit = [UNLIMITED; MAX_SCALARS];
                for name in q.limit.names() {
                    if let Some(i) = self.names.index(name) {
                        limit[i] = scalars::millis(q.limit.scalar_value(name));
                    }
                }
                (
                    role.clone(),
                    QuotaBooks {
                        quota: q.clone(),
                        guarantee,
                        limit,
                    },
                )
            })
            .collect();
        if !force {
            let mut guarantees = ZERO;
            let updated: BTreeSet<&str> = quotas.iter().map(|(r, _)| r.as_str()).collect();
            for &n in &self.quota_roles {
                let nd = &self.nodes[n as usize];
                if !updated.contains(&*nd.name) {
                    scalars::add(
                        &mut guarantees,
                        &nd.quota.as_ref().expect("quota").guarantee,
                    );
                }
            }
            for (role, b) in &books {
                scalars::add(&mut guarantees, &b.guarantee);
                let consumed = self
                    .node_index
                    .get(role)
                    .map(|&n| self.nodes[n as usize].consumption())
                    .unwrap_or(ZERO);
                if b.exceeded_by(&consumed) {
                    return Err(AllocatorError::ExceedsLimit {
                        role: role.clone(),
                        consumed: self.names.text(&consumed),
                    });
                }
            }
            if let Some(i) = (0..MAX_SCALARS).find(|&i| guarantees[i] > self.total[i]) {
                return Err(AllocatorError::GuaranteesExceedCapacity(
                    self.names.name(i).to_string(),
                ));
            }
        }
        for (role, b) in books {
            let n = self.node_for(&role);
            self.nodes[n as usize].quota = Some(b);
            self.quota_roles.insert(n);
            self.resort_up(n);
        }
        Ok(self.roles_over_limit())
    }

    pub(super) fn clear_quota(&mut self, role: &str) -> bool {
        let Some(&n) = self.node_index.get(role) else {
            return false;
        };
        self.quota_roles.remove(&n);
        let had = self.nodes[n as usize].quota.take().is_some();
        self.resort_up(n);
        self.prune_role(n);
        had
    }

    pub(super) fn quota_table(&self) -> BTreeMap<String, Quota> {
        self.quota_roles
            .iter()
            .map(|&n| {
                let nd = &self.nodes[n as usize];
                (
                    nd.name.to_string(),
                    nd.quota.as_ref().expect("quota").quota.clone(),
                )
            })
            .collect()
    }
}
