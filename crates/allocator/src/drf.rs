//! Weighted hierarchical DRF with quota, reservations and DECLINE filters.
//!
//! Books are incremental: every allocation change updates the client's,
//! its role's and every ancestor role's scalar sums at once, and re-keys
//! them in their parent's sorted set (a `BTreeSet` keyed by
//! (weighted dominant share, name)). An allocation walks the role tree in
//! that order from the root for each agent and stops at the first eligible
//! client, so a cycle costs about one tree walk per offer made, not a scan
//! of every framework per agent.
//!
//! Stages (Mesos' `HierarchicalAllocatorProcess::__allocate`):
//! 1. roles below their quota guarantee with demand, in share order, get up
//!    to their unmet guarantee on each agent;
//! 2. every agent, in a seeded random order, goes to the tree in DRF order;
//!    unreserved resources other roles' unmet guarantees need are held back
//!    (headroom), and no role's quota limit is exceeded.

use std::borrow::Cow;
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use agora_core::resources::{UNRESERVED, valid_role};
use agora_core::{AgentId, FrameworkId, Resources};

use crate::roles::{
    allocatable_to_role, intersection, only_scalars, split_by_role, unreserved_form,
};
use crate::scalars::{self, Amount, MAX_SCALARS, Names, Sc, SlotMap, SlotSet, UNLIMITED, ZERO};
use crate::{
    Allocation, Allocator, AllocatorError, NoOfferReason, OfferStatus, Quota, RoleSummary,
};

/// Construction parameters.
#[derive(Debug, Clone)]
pub struct DrfConfig {
    /// Seeds the per-cycle random order of agents.
    pub seed: u64,
    /// Mesos' `--min_allocatable_resources`: an offer must reach every
    /// amount of at least one of these sets (scalar name, amount in units).
    pub min_allocatable: Vec<Vec<(String, f64)>>,
}

impl Default for DrfConfig {
    fn default() -> Self {
        Self {
            seed: 0x5eed,
            min_allocatable: vec![
                vec![("cpus".to_string(), 0.01)],
                vec![("mem".to_string(), 32.0)],
            ],
        }
    }
}

/// (share bits, offers made, name, index): the order of siblings in the
/// role tree. As in Mesos' DRF sorter, equal shares go first to whoever was
/// offered fewer times, so that frameworks declining everything (their share
/// falls back to zero) cannot starve a newcomer.
type Key = (u64, u64, Arc<str>, u32);
/// The index a role's own frameworks take among its children.
const SELF: u32 = u32::MAX;
const ROOT: u32 = 0;
const NO_EPOCH: u64 = u64::MAX;

#[derive(Debug)]
struct Filter {
    refused: Resources,
    expires: Duration,
    /// The agent epoch at which the role's share of the agent's free-pool
    /// envelope (`high_water`) was seen to be a subset of `refused`: then
    /// every candidate of that epoch is, and the check is one comparison.
    verified: Cell<u64>,
}

#[derive(Debug)]
struct AgentSlot {
    id: AgentId,
    total: Resources,
    free: Resources,
    active: bool,
    total_sc: Sc,
    free_unres: Sc,
    /// Reservations in `total`, by role node.
    reserved: Vec<(u32, Sc)>,
    /// Clients with allocations here.
    clients: SlotSet,
    /// Used by frameworks the allocator does not know.
    orphan: Resources,
    filters: SlotMap<Filter>,
    /// Bumped whenever the free pool grows beyond `high_water`, which
    /// holds every free pool of the current epoch. (A declined offer comes
    /// back within the envelope, so other frameworks' filters on the agent
    /// stay verified.)
    epoch: u64,
    high_water: Resources,
    /// A filter found `high_water` too loose to verify: tighten it to the
    /// free pool when the agent is next visited.
    tighten: Cell<bool>,
    cycle: u64,
    cycle_clients: Vec<u32>,
}

impl AgentSlot {
    /// Starts a new filter epoch if the free pool left the envelope.
    fn free_grew(&mut self) {
        if !self.high_water.contains(&self.free) {
            self.epoch += 1;
            self.high_water = self.free.clone();
        }
    }
}

#[derive(Debug)]
struct ClientSlot {
    fw: u32,
    node: u32,
    fw_name: Arc<str>,
    role: String,
    alloc: Sc,
    allocs: SlotMap<Resources>,
    filtered: SlotSet,
    subscribed: bool,
    suppressed: bool,
    key: Option<Key>,
    last_offered: Option<Duration>,
    /// Allocations made to it, ever (a tie-break).
    offers: u64,
}

#[derive(Debug)]
struct FrameworkSlot {
    id: FrameworkId,
    name: Arc<str>,
    active: bool,
    clients: BTreeMap<String, u32>,
}

#[derive(Debug)]
struct QuotaBooks {
    quota: Quota,
    guarantee: Sc,
    /// [`UNLIMITED`] where unlimited.
    limit: Sc,
}

#[derive(Debug)]
struct RoleNode {
    name: Arc<str>,
    parent: Option<u32>,
    weight: f64,
    weight_set: bool,
    quota: Option<QuotaBooks>,
    /// Allocated in the subtree, all and unreserved only.
    alloc: Sc,
    alloc_unres: Sc,
    /// Allocated to this role's own frameworks.
    self_alloc: Sc,
    /// Reserved for roles in the subtree.
    reserved: Sc,
    /// Eligible clients in the subtree / of this role.
    active: u32,
    self_active: u32,
    clients: u32,
    /// Allocations made in the subtree / to this role's own frameworks.
    offers: u64,
    self_offers: u64,
    order: BTreeSet<Key>,
    self_clients: BTreeSet<Key>,
    key: Option<Key>,
    self_key: Option<Key>,
}

impl RoleNode {
    fn new(name: &str, parent: Option<u32>) -> Self {
        Self {
            name: Arc::from(name),
            parent,
            weight: 1.0,
            weight_set: false,
            quota: None,
            alloc: ZERO,
            alloc_unres: ZERO,
            self_alloc: ZERO,
            reserved: ZERO,
            active: 0,
            self_active: 0,
            clients: 0,
            offers: 0,
            self_offers: 0,
            order: BTreeSet::new(),
            self_clients: BTreeSet::new(),
            key: None,
            self_key: None,
        }
    }

    fn consumption(&self) -> Sc {
        let mut c = self.alloc_unres;
        scalars::add(&mut c, &self.reserved);
        c
    }

    /// Unmet guarantee, per scalar (zero if none or met).
    fn unmet(&self) -> Sc {
        let mut out = ZERO;
        if let Some(q) = &self.quota {
            let c = self.consumption();
            for i in 0..MAX_SCALARS {
                out[i] = q.guarantee[i].saturating_sub(c[i]).max(0);
            }
        }
        out
    }

    /// What the guarantee stage may give this role: its unmet guarantee of
    /// every resource the guarantee names (zero once met, so a role whose
    /// `mem` is met cannot take the `mem` another role's guarantee still
    /// needs), and no stage cap on resources it does not name.
    fn guarantee_stage_cap(&self) -> Sc {
        let unmet = self.unmet();
        let mut cap = [UNLIMITED; MAX_SCALARS];
        if let Some(q) = &self.quota {
            for i in 0..MAX_SCALARS {
                if q.guarantee[i] > 0 {
                    cap[i] = unmet[i];
                }
            }
        }
        cap
    }
}

/// One role node on [`DrfAllocator::find`]'s stack: its candidate offer
/// (none for the root) and where it is in its children's DRF order.
struct Visit<'s> {
    node: u32,
    cand: Option<(Cow<'s, Resources>, Option<Resources>)>,
    order: std::collections::btree_set::Iter<'s, Key>,
}

/// Per-find context.
struct Ctx {
    now: Duration,
    /// Stage 1: caps the unreserved scalars to the unmet guarantee.
    stage_cap: Option<Sc>,
    /// Stage 2: total unmet guarantees of roles with demand.
    headroom: Option<Sc>,
}

/// The weighted hierarchical DRF allocator (see the module docs).
#[derive(Debug)]
pub struct DrfAllocator {
    config: DrfConfig,
    min_sets: Vec<Vec<(usize, Amount)>>,
    rng: u64,
    names: Names,
    agents: Vec<Option<AgentSlot>>,
    free_agent_slots: Vec<u32>,
    agent_index: HashMap<AgentId, u32>,
    clients: Vec<Option<ClientSlot>>,
    free_client_slots: Vec<u32>,
    frameworks: Vec<Option<FrameworkSlot>>,
    free_framework_slots: Vec<u32>,
    framework_index: HashMap<FrameworkId, u32>,
    nodes: Vec<RoleNode>,
    node_index: HashMap<String, u32>,
    total: Sc,
    /// Free unreserved scalars on active agents.
    avail_unres: Sc,
    keys_dirty: bool,
    quota_roles: BTreeSet<u32>,
    filter_expiry: BinaryHeap<Reverse<(Duration, u32, u32)>>,
    cycle: u64,
}

impl Default for DrfAllocator {
    fn default() -> Self {
        Self::new(DrfConfig::default())
    }
}

/// What RESERVE and UNRESERVE of free resources may name: reserved,
/// dynamic resources only. A static reservation (an agent's
/// `--resources`) changes only with the agent's configuration.
fn check_dynamic(reserved: &Resources) -> Result<(), AllocatorError> {
    if reserved.is_empty() || !reserved.allocatable_to(UNRESERVED).is_empty() {
        return Err(AllocatorError::InvalidReservation(
            "every resource must carry a role other than '*'".into(),
        ));
    }
    if !reserved.statically_reserved().is_empty() {
        return Err(AllocatorError::InvalidReservation(
            "static reservations (an agent's --resources) cannot be made or removed".into(),
        ));
    }
    Ok(())
}

/// What an offer operation may do to an allocation: change dynamic
/// reservations within `role`'s reach, never quantities or static ones.
fn check_change(role: &str, from: &Resources, to: &Resources) -> Result<(), AllocatorError> {
    if unreserved_form(from) != unreserved_form(to) {
        return Err(AllocatorError::InvalidReservation(
            "an operation may change reservations, not quantities".into(),
        ));
    }
    if from.statically_reserved() != to.statically_reserved() {
        return Err(AllocatorError::InvalidReservation(
            "static reservations (an agent's --resources) cannot be made or removed".into(),
        ));
    }
    if allocatable_to_role(to, role) != *to {
        return Err(AllocatorError::InvalidReservation(format!(
            "role '{role}' may not hold {to}"
        )));
    }
    Ok(())
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl DrfAllocator {
    pub fn new(config: DrfConfig) -> Self {
        let mut this = Self {
            rng: config.seed,
            config,
            min_sets: Vec::new(),
            names: Names::new(),
            agents: Vec::new(),
            free_agent_slots: Vec::new(),
            agent_index: HashMap::new(),
            clients: Vec::new(),
            free_client_slots: Vec::new(),
            frameworks: Vec::new(),
            free_framework_slots: Vec::new(),
            framework_index: HashMap::new(),
            nodes: vec![RoleNode::new("", None)],
            node_index: HashMap::new(),
            total: ZERO,
            avail_unres: ZERO,
            keys_dirty: false,
            quota_roles: BTreeSet::new(),
            filter_expiry: BinaryHeap::new(),
            cycle: 0,
        };
        this.rebuild_min_sets();
        this
    }

    /// With the given seed and Mesos' defaults otherwise.
    pub fn with_seed(seed: u64) -> Self {
        Self::new(DrfConfig {
            seed,
            ..DrfConfig::default()
        })
    }

    fn rebuild_min_sets(&mut self) {
        let mut sets = Vec::new();
        for set in &self.config.min_allocatable {
            let mut out = Vec::new();
            for (name, amount) in set {
                if self.names.index(name).is_none() && self.names.len() < MAX_SCALARS {
                    let mut r = Resources::new();
                    if let Ok(x) = Resources::scalar(name, 1.0) {
                        r.add(&x);
                    }
                    self.names.intern(&r);
                }
                if let Some(i) = self.names.index(name) {
                    out.push((i, scalars::millis(*amount)));
                }
            }
            sets.push(out);
        }
        self.min_sets = sets;
    }

    // ---- lookups ------------------------------------------------------

    fn agent(&self, a: u32) -> &AgentSlot {
        self.agents[a as usize].as_ref().expect("live agent slot")
    }

    fn agent_mut(&mut self, a: u32) -> &mut AgentSlot {
        self.agents[a as usize].as_mut().expect("live agent slot")
    }

    fn client(&self, c: u32) -> &ClientSlot {
        self.clients[c as usize].as_ref().expect("live client slot")
    }

    fn client_mut(&mut self, c: u32) -> &mut ClientSlot {
        self.clients[c as usize].as_mut().expect("live client slot")
    }

    fn framework(&self, f: u32) -> &FrameworkSlot {
        self.frameworks[f as usize]
            .as_ref()
            .expect("live framework slot")
    }

    fn framework_mut(&mut self, f: u32) -> &mut FrameworkSlot {
        self.frameworks[f as usize]
            .as_mut()
            .expect("live framework slot")
    }

    /// The node of `role`, created with its missing ancestors. A loop over
    /// the role's levels, root first: no role, however deep, can exhaust
    /// the stack (roles are validated at the edge, but the allocator does
    /// not rely on it).
    fn node_for(&mut self, role: &str) -> u32 {
        if let Some(&n) = self.node_index.get(role) {
            return n;
        }
        let ends = role
            .match_indices('/')
            .map(|(i, _)| i)
            .chain(std::iter::once(role.len()));
        let mut parent = ROOT;
        for end in ends {
            let name = &role[..end];
            parent = match self.node_index.get(name) {
                Some(&n) => n,
                None => {
                    let n = self.nodes.len() as u32;
                    self.nodes.push(RoleNode::new(name, Some(parent)));
                    self.node_index.insert(name.to_string(), n);
                    n
                }
            };
        }
        parent
    }

    /// The node and its ancestors, excluding the root.
    fn chain(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(node), |&n| self.nodes[n as usize].parent).filter(|&n| n != ROOT)
    }

    fn in_subtree(&self, node: u32, ancestor: u32) -> bool {
        std::iter::successors(Some(node), |&n| self.nodes[n as usize].parent).any(|n| n == ancestor)
    }

    // ---- sorting ------------------------------------------------------

    fn client_eligible(&self, c: &ClientSlot) -> bool {
        c.subscribed && !c.suppressed && self.framework(c.fw).active
    }

    /// Re-keys a client in its role's set and fixes the active counts.
    fn refresh_client(&mut self, c: u32) {
        let cl = self.client(c);
        let node = cl.node;
        let new_key = self.client_eligible(cl).then(|| {
            (
                scalars::share_bits(&cl.alloc, &self.total, 1.0),
                cl.offers,
                cl.fw_name.clone(),
                c,
            )
        });
        if cl.key == new_key {
            return;
        }
        let old = self.client_mut(c).key.take();
        let n = &mut self.nodes[node as usize];
        if let Some(old) = &old {
            n.self_clients.remove(old);
        }
        if let Some(k) = &new_key {
            n.self_clients.insert(k.clone());
        }
        let delta = new_key.is_some() as i64 - old.is_some() as i64;
        self.client_mut(c).key = new_key;
        if delta != 0 {
            let n = &mut self.nodes[node as usize];
            n.self_active = (n.self_active as i64 + delta) as u32;
            let chain: Vec<u32> =
                std::iter::successors(Some(node), |&m| self.nodes[m as usize].parent).collect();
            for m in chain {
                let m = &mut self.nodes[m as usize];
                m.active = (m.active as i64 + delta) as u32;
            }
        }
    }

    /// Re-keys a node's own leaf and the node in its parent, up to the root.
    fn resort_up(&mut self, node: u32) {
        self.resort_up_levels(node, usize::MAX);
    }

    /// Recomputes every key (cluster totals changed).
    fn rekey_all(&mut self) {
        self.keys_dirty = false;
        for c in 0..self.clients.len() as u32 {
            if self.clients[c as usize].is_some() {
                self.refresh_client(c);
            }
        }
        // Deepest first, so that each node sees its children final.
        let mut order: Vec<u32> = (1..self.nodes.len() as u32).collect();
        order.sort_by_key(|&n| Reverse(self.chain(n).count()));
        for n in order {
            self.resort_up_levels(n, 1);
        }
        self.resort_up_levels(ROOT, 1);
    }

    /// Re-keys `levels` levels from `node` upwards.
    fn resort_up_levels(&mut self, node: u32, levels: usize) {
        let mut n = node;
        for _ in 0..levels {
            let nd = &self.nodes[n as usize];
            let new_self = (nd.self_active > 0).then(|| {
                (
                    scalars::share_bits(&nd.self_alloc, &self.total, nd.weight),
                    nd.self_offers,
                    nd.name.clone(),
                    SELF,
                )
            });
            if nd.self_key != new_self {
                let nd = &mut self.nodes[n as usize];
                if let Some(old) = nd.self_key.take() {
                    nd.order.remove(&old);
                }
                if let Some(k) = &new_self {
                    nd.order.insert(k.clone());
                }
                nd.self_key = new_self;
            }
            let hidden = self.hidden(n);
            let nd = &self.nodes[n as usize];
            let Some(p) = nd.parent else { break };
            let new_key = (nd.active > 0 && !hidden).then(|| {
                (
                    scalars::share_bits(&nd.alloc, &self.total, nd.weight),
                    nd.offers,
                    nd.name.clone(),
                    n,
                )
            });
            if nd.key != new_key {
                let old = self.nodes[n as usize].key.take();
                let parent = &mut self.nodes[p as usize];
                if let Some(old) = &old {
                    parent.order.remove(old);
                }
                if let Some(k) = &new_key {
                    parent.order.insert(k.clone());
                }
                self.nodes[n as usize].key = new_key;
            }
            n = p;
        }
    }

    /// A role at its quota limit (no min-allocatable set fits in what is
    /// left) with no reservation it could still be offered (none in its
    /// subtree or above it) leaves its parent's order: cycles skip it
    /// without visiting it on every agent.
    fn hidden(&self, n: u32) -> bool {
        let nd = &self.nodes[n as usize];
        let Some(q) = &nd.quota else {
            return false;
        };
        let c = nd.consumption();
        let mut room = [UNLIMITED; MAX_SCALARS];
        for i in 0..MAX_SCALARS {
            if q.limit[i] != UNLIMITED {
                room[i] = q.limit[i].saturating_sub(c[i]);
            }
        }
        if self.worth_sc(&room) {
            return false;
        }
        std::iter::successors(Some(n), |&m| self.nodes[m as usize].parent)
            .all(|m| scalars::is_zero(&self.nodes[m as usize].reserved))
    }

    /// Client eligibility changed (active, suppressed, subscribed).
    fn client_changed(&mut self, c: u32) {
        self.refresh_client(c);
        let node = self.client(c).node;
        self.resort_up(node);
    }

    // ---- books --------------------------------------------------------

    /// Adds (`sign` 1) or removes (-1) an allocation of a client.
    fn alloc_delta(&mut self, c: u32, sc: &Sc, unres: &Sc, sign: i64) {
        let mut sc = *sc;
        let mut unres = *unres;
        if sign < 0 {
            for i in 0..MAX_SCALARS {
                sc[i] = sc[i].saturating_neg();
                unres[i] = unres[i].saturating_neg();
            }
        }
        let node = {
            let cl = self.client_mut(c);
            scalars::add(&mut cl.alloc, &sc);
            cl.node
        };
        scalars::add(&mut self.nodes[node as usize].self_alloc, &sc);
        let mut n = Some(node);
        while let Some(m) = n {
            let nd = &mut self.nodes[m as usize];
            scalars::add(&mut nd.alloc, &sc);
            scalars::add(&mut nd.alloc_unres, &unres);
            n = nd.parent;
        }
        self.refresh_client(c);
        self.resort_up(node);
    }

    fn reserved_delta(&mut self, node: u32, sc: &Sc, sign: i64) {
        // Whether roles at their limit can be skipped depends on reservations.
        self.keys_dirty = true;
        let mut n = Some(node);
        while let Some(m) = n {
            let nd = &mut self.nodes[m as usize];
            if sign > 0 {
                scalars::add(&mut nd.reserved, sc);
            } else {
                scalars::sub(&mut nd.reserved, sc);
            }
            n = nd.parent;
        }
    }

    fn unres_of(&self, a: &AgentSlot, r: &Resources, sc: &Sc) -> Sc {
        if a.reserved.is_empty() {
            *sc
        } else {
            self.names.unreserved(r)
        }
    }

    /// Moves `r` (taken from the agent's free pool; `None`: all of it, for
    /// an agent without reservations) to client `c`.
    fn grant(
        &mut self,
        a: u32,
        c: u32,
        r: Option<Resources>,
        now: Duration,
        out: &mut Vec<Allocation>,
    ) {
        let agent = self.agents[a as usize].as_mut().expect("live agent");
        let (r, sc, unres) = match r {
            None => {
                let r = std::mem::take(&mut agent.free);
                let sc = std::mem::replace(&mut agent.free_unres, ZERO);
                (r, sc, sc)
            }
            Some(r) => {
                let sc = self.names.of(&r);
                let unres = if agent.reserved.is_empty() {
                    sc
                } else {
                    self.names.unreserved(&r)
                };
                agent.free.subtract(&r);
                scalars::sub(&mut agent.free_unres, &unres);
                (r, sc, unres)
            }
        };
        agent.clients.insert(c);
        agent.cycle_clients.push(c);
        let active = agent.active;
        let agent_id = agent.id.clone();
        if active {
            scalars::sub(&mut self.avail_unres, &unres);
        }
        let cl = self.clients[c as usize].as_mut().expect("live client");
        match cl.allocs.entry(a) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().add(&r),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(r.clone());
            }
        }
        cl.last_offered = Some(now);
        cl.offers += 1;
        let role = cl.role.clone();
        let fw = cl.fw;
        let node = cl.node;
        self.nodes[node as usize].self_offers += 1;
        let mut n = Some(node);
        while let Some(m) = n {
            self.nodes[m as usize].offers += 1;
            n = self.nodes[m as usize].parent;
        }
        self.alloc_delta(c, &sc, &unres, 1);
        out.push(Allocation {
            framework_id: self.framework(fw).id.clone(),
            role,
            agent_id,
            resources: r,
        });
    }

    /// Records `r` as used by client `c` without an offer (adopted tasks).
    fn charge(&mut self, a: u32, c: u32, r: &Resources) {
        let sc = self.names.of(r);
        let unres = self.unres_of(self.agent(a), r, &sc);
        let agent = self.agent_mut(a);
        agent.free.subtract(r);
        scalars::sub(&mut agent.free_unres, &unres);
        agent.clients.insert(c);
        if agent.active {
            scalars::sub(&mut self.avail_unres, &unres);
        }
        self.client_mut(c).allocs.entry(a).or_default().add(r);
        self.alloc_delta(c, &sc, &unres, 1);
    }

    /// Returns `take` (part of client `c`'s allocation on `a`) to the free pool.
    fn release(&mut self, a: u32, c: u32, take: &Resources) {
        if take.is_empty() {
            return;
        }
        let sc = self.names.of(take);
        let unres = self.unres_of(self.agent(a), take, &sc);
        let cl = self.client_mut(c);
        let mut emptied = false;
        if let Some(held) = cl.allocs.get_mut(&a) {
            held.subtract(take);
            if held.is_empty() {
                cl.allocs.remove(&a);
                emptied = true;
            }
        }
        let agent = self.agent_mut(a);
        if emptied {
            agent.clients.remove(&c);
        }
        agent.free.add(take);
        agent.free_grew();
        scalars::add(&mut agent.free_unres, &unres);
        if agent.active {
            scalars::add(&mut self.avail_unres, &unres);
        }
        self.alloc_delta(c, &sc, &unres, -1);
    }

    fn add_filter(&mut self, a: u32, c: u32, refused: Resources, expires: Duration) {
        self.agent_mut(a).filters.insert(
            c,
            Filter {
                refused,
                expires,
                verified: Cell::new(NO_EPOCH),
            },
        );
        self.client_mut(c).filtered.insert(a);
        self.filter_expiry.push(Reverse((expires, a, c)));
    }

    fn remove_filter(&mut self, a: u32, c: u32) {
        if let Some(Some(agent)) = self.agents.get_mut(a as usize) {
            agent.filters.remove(&c);
        }
        if let Some(Some(client)) = self.clients.get_mut(c as usize) {
            client.filtered.remove(&a);
        }
    }

    fn purge_filters(&mut self, now: Duration) {
        while let Some(Reverse((expires, a, c))) = self.filter_expiry.peek().cloned() {
            if expires > now {
                break;
            }
            self.filter_expiry.pop();
            let matches = self
                .agents
                .get(a as usize)
                .and_then(|s| s.as_ref())
                .and_then(|s| s.filters.get(&c))
                .is_some_and(|f| f.expires <= now);
            if matches {
                self.remove_filter(a, c);
            }
        }
    }

    fn is_filtered(&self, a: &AgentSlot, c: u32, candidate: &Resources, now: Duration) -> bool {
        let Some(f) = a.filters.get(&c) else {
            return false;
        };
        if f.expires <= now {
            return false;
        }
        if f.verified.get() == a.epoch {
            return true;
        }
        if !f.refused.contains(candidate) {
            return false;
        }
        let envelope_refused = if a.reserved.is_empty() {
            f.refused.contains(&a.high_water)
        } else {
            f.refused
                .contains(&allocatable_to_role(&a.high_water, &self.client(c).role))
        };
        if envelope_refused {
            f.verified.set(a.epoch);
        } else {
            a.tighten.set(true);
        }
        true
    }

    // ---- offers -------------------------------------------------------

    fn worth_sc(&self, sc: &Sc) -> bool {
        self.min_sets
            .iter()
            .any(|set| !set.is_empty() && set.iter().all(|&(i, v)| sc[i] >= v))
    }

    fn worth(&self, r: &Resources) -> bool {
        self.config.min_allocatable.iter().any(|set| {
            !set.is_empty()
                && set
                    .iter()
                    .all(|(name, v)| r.scalar_value(name) + 1e-9 >= *v)
        })
    }

    /// Caps on the unreserved scalars a client of `node` may get now.
    fn caps(&self, node: u32, ctx: &Ctx) -> Sc {
        let mut cap = [UNLIMITED; MAX_SCALARS];
        let mut own_unmet = ZERO;
        for n in self.chain(node) {
            let nd = &self.nodes[n as usize];
            if let Some(q) = &nd.quota {
                let c = nd.consumption();
                for i in 0..MAX_SCALARS {
                    if q.limit[i] != UNLIMITED {
                        cap[i] = cap[i].min(q.limit[i].saturating_sub(c[i]));
                    }
                }
                if nd.active > 0 {
                    scalars::add(&mut own_unmet, &nd.unmet());
                }
            }
        }
        if let Some(stage) = &ctx.stage_cap {
            for i in 0..MAX_SCALARS {
                cap[i] = cap[i].min(stage[i]);
            }
        }
        if let Some(required) = &ctx.headroom {
            for i in 0..MAX_SCALARS {
                if required[i] > 0 {
                    let allowed = self.avail_unres[i]
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
    fn candidate<'a>(
        &self,
        a: &'a AgentSlot,
        node: u32,
        ctx: &Ctx,
    ) -> (Cow<'a, Resources>, Option<Resources>) {
        let base = if a.reserved.is_empty() {
            Cow::Borrowed(&a.free)
        } else {
            Cow::Owned(allocatable_to_role(
                &a.free,
                &self.nodes[node as usize].name,
            ))
        };
        let cap = self.caps(node, ctx);
        let mut capped: Option<Resources> = None;
        for (i, cap_i) in cap.iter().enumerate().take(self.names.len()) {
            let have = a.free_unres[i];
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
    fn capped_unres_worth(&self, a: &AgentSlot, node: u32, ctx: &Ctx) -> bool {
        let cap = self.caps(node, ctx);
        let mut room = a.free_unres;
        for i in 0..MAX_SCALARS {
            room[i] = room[i].min(cap[i]);
        }
        self.worth_sc(&room)
    }

    fn reserved_below(&self, reserved_roles: &[u32], node: u32) -> bool {
        reserved_roles.iter().any(|&r| self.in_subtree(r, node))
    }

    /// The first eligible client in DRF order under `n`, with its offer
    /// (`None`: the agent's whole free pool). A depth-first walk with an
    /// explicit stack, so that the role tree's depth never touches the
    /// thread's stack.
    fn find(
        &self,
        a: &AgentSlot,
        n: u32,
        reserved_roles: &[u32],
        ctx: &Ctx,
    ) -> Option<(u32, Option<Resources>)> {
        let mut stack: Vec<Visit<'_>> = Vec::new();
        stack.extend(self.visit(a, n, reserved_roles, ctx));
        while let Some(visit) = stack.last_mut() {
            let Some(key) = visit.order.next() else {
                stack.pop();
                continue;
            };
            if key.3 != SELF {
                let child = self.visit(a, key.3, reserved_roles, ctx);
                stack.extend(child);
                continue;
            }
            let Some((base, capped)) = &visit.cand else {
                continue;
            };
            let offer = capped.as_ref().unwrap_or(base.as_ref());
            if !self.worth(offer) {
                continue;
            }
            let node = &self.nodes[visit.node as usize];
            for ck in &node.self_clients {
                let c = ck.3;
                if a.cycle_clients.contains(&c) {
                    continue;
                }
                if self.is_filtered(a, c, base, ctx.now) {
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

    /// Starts visiting node `n` for [`Self::find`]: `None` when nothing
    /// under it can be offered anything of this agent.
    fn visit<'s>(
        &'s self,
        a: &'s AgentSlot,
        n: u32,
        reserved_roles: &[u32],
        ctx: &Ctx,
    ) -> Option<Visit<'s>> {
        let node = &self.nodes[n as usize];
        if node.active == 0 {
            return None;
        }
        let mut cand = None;
        if n != ROOT {
            if reserved_roles.is_empty() && !self.capped_unres_worth(a, n, ctx) {
                return None;
            }
            let (base, capped) = self.candidate(a, n, ctx);
            let worth = self.worth(capped.as_ref().unwrap_or(base.as_ref()));
            if !worth && !self.reserved_below(reserved_roles, n) {
                return None;
            }
            cand = Some((base, capped));
        }
        Some(Visit {
            node: n,
            cand,
            order: node.order.iter(),
        })
    }

    fn begin_agent(&mut self, a: u32) {
        let cycle = self.cycle;
        let agent = self.agent_mut(a);
        if agent.cycle != cycle {
            agent.cycle = cycle;
            agent.cycle_clients.clear();
        }
        if agent.tighten.replace(false) && agent.high_water != agent.free {
            agent.high_water = agent.free.clone();
            agent.epoch += 1;
        }
    }

    fn required_headroom(&self) -> Sc {
        let mut req = ZERO;
        for &g in &self.quota_roles {
            let nd = &self.nodes[g as usize];
            if nd.active > 0 {
                scalars::add(&mut req, &nd.unmet());
            }
        }
        req
    }

    fn reserved_roles_of(&self, a: &AgentSlot) -> Vec<u32> {
        a.reserved.iter().map(|(n, _)| *n).collect()
    }

    /// Offers one agent's resources (stage 2).
    fn allocate_agent(&mut self, a: u32, now: Duration, out: &mut Vec<Allocation>) {
        self.begin_agent(a);
        if !self.agent(a).active {
            return;
        }
        let all_reserved = self.reserved_roles_of(self.agent(a));
        // Phase A: DRF over the whole tree while unreserved resources are worth offering.
        loop {
            let agent = self.agent(a);
            if !self.worth(&agent.free) {
                return;
            }
            if !all_reserved.is_empty() && !self.worth_sc(&agent.free_unres) {
                break;
            }
            let headroom = (!self.quota_roles.is_empty()).then(|| self.required_headroom());
            let ctx = Ctx {
                now,
                stage_cap: None,
                headroom: headroom.filter(|h| !scalars::is_zero(h)),
            };
            match self.find(agent, ROOT, &all_reserved, &ctx) {
                Some((c, r)) => self.grant(a, c, r, now, out),
                None => break,
            }
        }
        if all_reserved.is_empty() {
            return;
        }
        // Phase B: the reservations still free, role by role in share order.
        let mut roles: Vec<u32> = split_by_role(&self.agent(a).free)
            .keys()
            .filter(|r| r.as_str() != UNRESERVED)
            .filter_map(|r| self.node_index.get(r).copied())
            .collect();
        roles.sort_by(|x, y| {
            let kx = &self.nodes[*x as usize].key;
            let ky = &self.nodes[*y as usize].key;
            kx.cmp(ky)
        });
        for r in roles {
            loop {
                let agent = self.agent(a);
                if !self.worth(&agent.free) {
                    return;
                }
                let ctx = Ctx {
                    now,
                    stage_cap: None,
                    headroom: None,
                };
                match self.find(agent, r, &[r], &ctx) {
                    Some((c, res)) => self.grant(a, c, res, now, out),
                    None => break,
                }
            }
        }
    }

    /// Stage 1: roles below their guarantee, with demand.
    fn allocate_guarantees(&mut self, order: &[u32], now: Duration, out: &mut Vec<Allocation>) {
        let mut roles: Vec<u32> = self
            .quota_roles
            .iter()
            .copied()
            .filter(|&g| {
                let nd = &self.nodes[g as usize];
                nd.active > 0 && !scalars::is_zero(&nd.unmet())
            })
            .collect();
        if roles.is_empty() {
            return;
        }
        roles.sort_by(|x, y| {
            self.nodes[*x as usize]
                .key
                .cmp(&self.nodes[*y as usize].key)
        });
        for &a in order {
            if roles.is_empty() {
                return;
            }
            self.begin_agent(a);
            if !self.agent(a).active {
                continue;
            }
            let reserved = self.reserved_roles_of(self.agent(a));
            let mut i = 0;
            while i < roles.len() {
                let g = roles[i];
                let unmet = self.nodes[g as usize].unmet();
                if scalars::is_zero(&unmet) || self.nodes[g as usize].active == 0 {
                    roles.remove(i);
                    continue;
                }
                if !self.worth(&self.agent(a).free) {
                    break;
                }
                let ctx = Ctx {
                    now,
                    stage_cap: Some(self.nodes[g as usize].guarantee_stage_cap()),
                    headroom: None,
                };
                match self.find(self.agent(a), g, &reserved, &ctx) {
                    Some((c, r)) => self.grant(a, c, r, now, out),
                    None => i += 1,
                }
            }
        }
    }

    fn run_cycle(&mut self, order: &[u32], now: Duration) -> Vec<Allocation> {
        self.cycle += 1;
        self.purge_filters(now);
        if self.keys_dirty {
            self.rekey_all();
        }
        let mut out = Vec::new();
        if !self.quota_roles.is_empty() {
            self.allocate_guarantees(order, now, &mut out);
        }
        for &a in order {
            self.allocate_agent(a, now, &mut out);
        }
        out
    }

    // ---- framework and client lifecycle -------------------------------

    fn new_client(&mut self, f: u32, role: &str, suppressed: bool) -> u32 {
        let node = self.node_for(role);
        let fw = self.framework(f);
        let slot = ClientSlot {
            fw: f,
            node,
            fw_name: fw.name.clone(),
            role: role.to_string(),
            alloc: ZERO,
            allocs: SlotMap::default(),
            filtered: SlotSet::default(),
            subscribed: true,
            suppressed,
            key: None,
            last_offered: None,
            offers: 0,
        };
        let c = match self.free_client_slots.pop() {
            Some(c) => {
                self.clients[c as usize] = Some(slot);
                c
            }
            None => {
                self.clients.push(Some(slot));
                (self.clients.len() - 1) as u32
            }
        };
        self.nodes[node as usize].clients += 1;
        self.framework_mut(f).clients.insert(role.to_string(), c);
        self.client_changed(c);
        c
    }

    fn drop_client(&mut self, c: u32) {
        let allocs: Vec<(u32, Resources)> = self.client_mut(c).allocs.drain().collect();
        for (a, r) in allocs {
            // `release` expects the allocation in place.
            self.client_mut(c).allocs.insert(a, r.clone());
            self.release(a, c, &r);
        }
        let filtered: Vec<u32> = self.client(c).filtered.iter().copied().collect();
        for a in filtered {
            self.remove_filter(a, c);
        }
        let cl = self.client_mut(c);
        cl.subscribed = false;
        self.client_changed(c);
        let cl = self.clients[c as usize].take().expect("live client");
        self.nodes[cl.node as usize].clients -= 1;
        self.framework_mut(cl.fw).clients.remove(&cl.role);
        self.free_client_slots.push(c);
    }

    fn clients_for(&self, f: u32, roles: &[String]) -> Vec<u32> {
        let fw = self.framework(f);
        if roles.is_empty() {
            fw.clients.values().copied().collect()
        } else {
            roles
                .iter()
                .filter_map(|r| fw.clients.get(r).copied())
                .collect()
        }
    }

    /// The client that should carry resources of `f` that came without a role.
    fn default_client(&self, f: u32, r: &Resources) -> Option<u32> {
        let fw = self.framework(f);
        if fw.clients.len() <= 1 {
            return fw.clients.values().next().copied();
        }
        fw.clients
            .iter()
            .find(|(role, _)| &allocatable_to_role(r, role) == r && role.as_str() != UNRESERVED)
            .or_else(|| fw.clients.iter().next())
            .map(|(_, c)| *c)
    }

    fn recover_impl(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: Option<&str>,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        let mut remaining = resources.clone();
        let mut touched: Vec<(u32, Resources)> = Vec::new();
        if let Some(&f) = self.framework_index.get(framework_id) {
            let mut candidates: Vec<u32> = match role.and_then(|r| self.framework(f).clients.get(r))
            {
                Some(&c) => vec![c],
                None => self.framework(f).clients.values().copied().collect(),
            };
            candidates.retain(|c| self.client(*c).allocs.contains_key(&a));
            for c in candidates {
                if remaining.is_empty() {
                    break;
                }
                let held = &self.client(c).allocs[&a];
                let take = if held.contains(&remaining) {
                    std::mem::take(&mut remaining)
                } else {
                    let t = intersection(held, &remaining);
                    remaining.subtract(&t);
                    t
                };
                if take.is_empty() {
                    continue;
                }
                self.release(a, c, &take);
                touched.push((c, take));
            }
        }
        if !remaining.is_empty() {
            let agent = self.agent_mut(a);
            if !agent.orphan.is_empty() {
                let take = intersection(&agent.orphan, &remaining);
                agent.orphan.subtract(&take);
                agent.free.add(&take);
                agent.free_grew();
                let unres = self.names.unreserved(&take);
                let agent = self.agent_mut(a);
                scalars::add(&mut agent.free_unres, &unres);
                if agent.active {
                    scalars::add(&mut self.avail_unres, &unres);
                }
            }
        }
        if let Some(refuse) = refuse.filter(|r| !r.is_zero()) {
            for (c, take) in touched {
                self.add_filter(a, c, take, now + refuse);
            }
        }
    }

    // ---- agents -------------------------------------------------------

    fn set_reserved_books(&mut self, a: u32, sign: i64) {
        let reserved = self.agent(a).reserved.clone();
        for (node, sc) in reserved {
            self.reserved_delta(node, &sc, sign);
        }
    }

    /// Adds (`sign` 1) or removes (-1) the reservations in `r` to the agent's
    /// and the roles' books, without rescanning the agent's total.
    fn adjust_reserved(&mut self, a: u32, r: &Resources, sign: i64) {
        for (role, part) in split_by_role(r) {
            if role == UNRESERVED {
                continue;
            }
            let node = self.node_for(&role);
            let sc = self.names.of(&part);
            self.reserved_delta(node, &sc, sign);
            let agent = self.agent_mut(a);
            match agent.reserved.iter().position(|(n, _)| *n == node) {
                Some(i) => {
                    if sign > 0 {
                        scalars::add(&mut agent.reserved[i].1, &sc);
                    } else {
                        scalars::sub(&mut agent.reserved[i].1, &sc);
                    }
                    if scalars::is_zero(&agent.reserved[i].1) {
                        agent.reserved.swap_remove(i);
                    }
                }
                None if sign > 0 => agent.reserved.push((node, sc)),
                None => {}
            }
        }
    }

    /// Free resources `from` on the agent become `to` (same quantities,
    /// other reservations): RESERVE and UNRESERVE of free resources.
    fn exchange_free(&mut self, a: u32, from: &Resources, to: &Resources) {
        self.adjust_reserved(a, from, -1);
        self.adjust_reserved(a, to, 1);
        let agent = self.agent_mut(a);
        agent.total.subtract(from);
        agent.total.add(to);
        agent.free.subtract(from);
        agent.free.add(to);
        agent.free_grew();
        let old = agent.free_unres;
        let new = if agent.reserved.is_empty() {
            self.names.of(&self.agent(a).free)
        } else {
            self.names.unreserved(&self.agent(a).free)
        };
        let agent = self.agent_mut(a);
        agent.free_unres = new;
        if agent.active {
            scalars::sub(&mut self.avail_unres, &old);
            scalars::add(&mut self.avail_unres, &new);
        }
    }

    fn compute_reserved(&mut self, total: &Resources) -> Vec<(u32, Sc)> {
        let mut out = Vec::new();
        if total.allocatable_to(UNRESERVED) == *total {
            return out;
        }
        for (role, r) in split_by_role(total) {
            if role == UNRESERVED {
                continue;
            }
            let node = self.node_for(&role);
            out.push((node, self.names.of(&r)));
        }
        out
    }

    /// Applies a checked allocation change (see `update_allocations`).
    fn apply_change(&mut self, a: u32, c: u32, from: &Resources, to: &Resources) {
        if from.is_empty() {
            // Same quantities: `to` is empty too.
            return;
        }
        // Books: the allocation leaves as `from`, the total changes, and the
        // allocation comes back as `to`.
        let from_sc = self.names.of(from);
        let from_unres = self.names.unreserved(from);
        self.alloc_delta(c, &from_sc, &from_unres, -1);
        self.adjust_reserved(a, from, -1);
        self.adjust_reserved(a, to, 1);
        let agent = self.agent_mut(a);
        agent.total.subtract(from);
        agent.total.add(to);
        let held = self.client_mut(c).allocs.entry(a).or_default();
        held.subtract(from);
        held.add(to);
        let to_sc = self.names.of(to);
        let to_unres = self.names.unreserved(to);
        self.alloc_delta(c, &to_sc, &to_unres, 1);
    }

    // ---- queries ------------------------------------------------------

    fn role_summary(&self, n: u32, frameworks: Vec<FrameworkId>) -> RoleSummary {
        let nd = &self.nodes[n as usize];
        RoleSummary {
            role: nd.name.to_string(),
            weight: nd.weight,
            quota: nd.quota.as_ref().map(|q| q.quota.clone()),
            allocated: self.names.to_map(&nd.alloc),
            reserved: self.names.to_map(&nd.reserved),
            consumed: self.names.to_map(&nd.consumption()),
            frameworks,
        }
    }

    /// Checks the books against a recomputation from scratch. For tests and
    /// simulations; O(everything).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut total = ZERO;
        let mut node_alloc: HashMap<u32, Sc> = HashMap::new();
        let mut node_reserved: HashMap<u32, Sc> = HashMap::new();
        let mut avail = ZERO;
        for (a, slot) in self.agents.iter().enumerate() {
            let Some(agent) = slot else { continue };
            let a = a as u32;
            scalars::add(&mut total, &agent.total_sc);
            let mut sum = agent.free.clone();
            sum.add(&agent.orphan);
            for &c in &agent.clients {
                let held = self.client(c).allocs.get(&a).ok_or_else(|| {
                    format!("agent {} lists client {c} without allocation", agent.id)
                })?;
                if !agent.total.contains(held) {
                    return Err(format!("agent {} over-committed to client {c}", agent.id));
                }
                sum.add(held);
            }
            if sum != agent.total {
                return Err(format!(
                    "agent {}: free + allocated = {sum} != total {}",
                    agent.id, agent.total
                ));
            }
            if self.names.unreserved(&agent.free) != agent.free_unres {
                return Err(format!("agent {}: free unreserved books drifted", agent.id));
            }
            if agent.active {
                scalars::add(&mut avail, &agent.free_unres);
            }
            for (role, r) in split_by_role(&agent.total) {
                if role == UNRESERVED {
                    continue;
                }
                let node = self.node_index[&role];
                for m in std::iter::successors(Some(node), |&n| self.nodes[n as usize].parent) {
                    scalars::add(node_reserved.entry(m).or_insert(ZERO), &self.names.of(&r));
                }
            }
        }
        if total != self.total {
            return Err("cluster total drifted".into());
        }
        if avail != self.avail_unres {
            return Err("available unreserved drifted".into());
        }
        for (c, slot) in self.clients.iter().enumerate() {
            let Some(cl) = slot else { continue };
            let mut sum = ZERO;
            for (&a, held) in &cl.allocs {
                if !self.agent(a).clients.contains(&(c as u32)) {
                    return Err(format!("client {c} allocation on agent not listed"));
                }
                for (role, _) in split_by_role(held) {
                    if role != UNRESERVED && !crate::roles::is_role_or_descendant(&cl.role, &role) {
                        return Err(format!(
                            "reserved resources of role {role} allocated to role {}",
                            cl.role
                        ));
                    }
                }
                scalars::add(&mut sum, &self.names.of(held));
            }
            if sum != cl.alloc {
                return Err(format!("client {c} allocation sum drifted"));
            }
            for m in std::iter::successors(Some(cl.node), |&n| self.nodes[n as usize].parent) {
                scalars::add(node_alloc.entry(m).or_insert(ZERO), &sum);
            }
        }
        for (n, nd) in self.nodes.iter().enumerate() {
            let n = n as u32;
            if nd.alloc != node_alloc.get(&n).copied().unwrap_or(ZERO) {
                return Err(format!("role '{}' allocation sum drifted", nd.name));
            }
            if nd.reserved != node_reserved.get(&n).copied().unwrap_or(ZERO) {
                return Err(format!("role '{}' reserved sum drifted", nd.name));
            }
        }
        Ok(())
    }

    /// Roles whose consumption exceeds their limit.
    pub fn roles_over_limit(&self) -> Vec<String> {
        self.quota_roles
            .iter()
            .filter(|&&n| {
                let nd = &self.nodes[n as usize];
                let q = nd.quota.as_ref().expect("quota role");
                let c = nd.consumption();
                (0..MAX_SCALARS).any(|i| q.limit[i] != UNLIMITED && c[i] > q.limit[i])
            })
            .map(|&n| self.nodes[n as usize].name.to_string())
            .collect()
    }
}

impl Allocator for DrfAllocator {
    fn add_agent(
        &mut self,
        agent_id: AgentId,
        total: Resources,
        used: &[(FrameworkId, Resources)],
    ) {
        if self.agent_index.contains_key(&agent_id) {
            self.remove_agent(&agent_id);
        }
        self.names.intern(&total);
        let total_sc = self.names.of(&total);
        let reserved = self.compute_reserved(&total);
        let free_unres = self.names.unreserved(&total);
        let slot = AgentSlot {
            id: agent_id.clone(),
            free: total.clone(),
            high_water: total.clone(),
            tighten: Cell::new(false),
            total,
            active: true,
            total_sc,
            free_unres,
            reserved,
            clients: SlotSet::default(),
            orphan: Resources::new(),
            filters: SlotMap::default(),
            epoch: 0,
            cycle: 0,
            cycle_clients: Vec::new(),
        };
        let a = match self.free_agent_slots.pop() {
            Some(a) => {
                self.agents[a as usize] = Some(slot);
                a
            }
            None => {
                self.agents.push(Some(slot));
                (self.agents.len() - 1) as u32
            }
        };
        self.agent_index.insert(agent_id.clone(), a);
        self.set_reserved_books(a, 1);
        scalars::add(&mut self.total, &total_sc);
        scalars::add(&mut self.avail_unres, &free_unres);
        self.keys_dirty = true;
        for (framework_id, resources) in used {
            self.add_used(&agent_id, framework_id, resources);
        }
    }

    fn remove_agent(&mut self, agent_id: &AgentId) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        let clients: Vec<u32> = self.agent(a).clients.iter().copied().collect();
        for c in clients {
            if let Some(r) = self.client_mut(c).allocs.remove(&a) {
                let sc = self.names.of(&r);
                let unres = self.unres_of(self.agent(a), &r, &sc);
                self.alloc_delta(c, &sc, &unres, -1);
            }
        }
        let filtered: Vec<u32> = self.agent(a).filters.keys().copied().collect();
        for c in filtered {
            self.remove_filter(a, c);
        }
        self.set_reserved_books(a, -1);
        let agent = self.agents[a as usize].take().expect("live agent");
        scalars::sub(&mut self.total, &agent.total_sc);
        if agent.active {
            scalars::sub(&mut self.avail_unres, &agent.free_unres);
        }
        self.agent_index.remove(agent_id);
        self.free_agent_slots.push(a);
        self.keys_dirty = true;
    }

    fn set_agent_active(&mut self, agent_id: &AgentId, active: bool) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        let agent = self.agent_mut(a);
        if agent.active == active {
            return;
        }
        agent.active = active;
        let free_unres = agent.free_unres;
        if active {
            scalars::add(&mut self.avail_unres, &free_unres);
        } else {
            scalars::sub(&mut self.avail_unres, &free_unres);
        }
    }

    fn add_framework(
        &mut self,
        framework_id: FrameworkId,
        roles: BTreeSet<String>,
        suppressed_roles: BTreeSet<String>,
    ) {
        let f = match self.framework_index.get(&framework_id) {
            Some(&f) => f,
            None => {
                let slot = FrameworkSlot {
                    name: Arc::from(framework_id.as_str()),
                    id: framework_id.clone(),
                    active: true,
                    clients: BTreeMap::new(),
                };
                let f = match self.free_framework_slots.pop() {
                    Some(f) => {
                        self.frameworks[f as usize] = Some(slot);
                        f
                    }
                    None => {
                        self.frameworks.push(Some(slot));
                        (self.frameworks.len() - 1) as u32
                    }
                };
                self.framework_index.insert(framework_id, f);
                f
            }
        };
        self.framework_mut(f).active = true;
        let existing: Vec<(String, u32)> = self
            .framework(f)
            .clients
            .iter()
            .map(|(r, c)| (r.clone(), *c))
            .collect();
        for (role, c) in existing {
            let subscribed = roles.contains(&role);
            let suppressed = suppressed_roles.contains(&role);
            if !subscribed && self.client(c).allocs.is_empty() {
                self.drop_client(c);
                continue;
            }
            let cl = self.client_mut(c);
            cl.subscribed = subscribed;
            cl.suppressed = suppressed;
            self.client_changed(c);
        }
        for role in &roles {
            if !valid_role(role) || self.framework(f).clients.contains_key(role) {
                continue;
            }
            self.new_client(f, role, suppressed_roles.contains(role));
        }
    }

    fn remove_framework(&mut self, framework_id: &FrameworkId) {
        let Some(f) = self.framework_index.remove(framework_id) else {
            return;
        };
        let clients: Vec<u32> = self.framework(f).clients.values().copied().collect();
        for c in clients {
            self.drop_client(c);
        }
        self.frameworks[f as usize] = None;
        self.free_framework_slots.push(f);
    }

    fn set_framework_active(&mut self, framework_id: &FrameworkId, active: bool) {
        let Some(&f) = self.framework_index.get(framework_id) else {
            return;
        };
        self.framework_mut(f).active = active;
        for c in self.clients_for(f, &[]) {
            self.client_changed(c);
        }
    }

    fn add_used(&mut self, agent_id: &AgentId, framework_id: &FrameworkId, resources: &Resources) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        let take = intersection(&self.agent(a).free, resources);
        if take.is_empty() {
            return;
        }
        let client = self
            .framework_index
            .get(framework_id)
            .and_then(|&f| self.default_client(f, &take));
        match client {
            Some(c) => self.charge(a, c, &take),
            None => {
                let unres = self.names.unreserved(&take);
                let agent = self.agent_mut(a);
                agent.free.subtract(&take);
                agent.orphan.add(&take);
                scalars::sub(&mut agent.free_unres, &unres);
                if agent.active {
                    scalars::sub(&mut self.avail_unres, &unres);
                }
            }
        }
    }

    fn recover(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        self.recover_impl(agent_id, framework_id, None, resources, refuse, now);
    }

    fn recover_for_role(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        self.recover_impl(agent_id, framework_id, Some(role), resources, refuse, now);
    }

    fn suppress(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        let Some(&f) = self.framework_index.get(framework_id) else {
            return;
        };
        for c in self.clients_for(f, roles) {
            self.client_mut(c).suppressed = true;
            self.client_changed(c);
        }
    }

    fn revive(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        let Some(&f) = self.framework_index.get(framework_id) else {
            return;
        };
        for c in self.clients_for(f, roles) {
            self.client_mut(c).suppressed = false;
            let filtered: Vec<u32> = self.client(c).filtered.iter().copied().collect();
            for a in filtered {
                self.remove_filter(a, c);
            }
            self.client_changed(c);
        }
    }

    fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        let mut order: Vec<u32> = (0..self.agents.len() as u32)
            .filter(|&a| self.agents[a as usize].is_some())
            .collect();
        for i in (1..order.len()).rev() {
            let j = (splitmix(&mut self.rng) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        self.run_cycle(&order, now)
    }

    fn allocate_agents(&mut self, now: Duration, agent_ids: &[AgentId]) -> Vec<Allocation> {
        let mut order: Vec<u32> = Vec::with_capacity(agent_ids.len());
        for id in agent_ids {
            if let Some(&a) = self.agent_index.get(id)
                && !order.contains(&a)
            {
                order.push(a);
            }
        }
        self.run_cycle(&order, now)
    }

    fn free(&self) -> BTreeMap<AgentId, Resources> {
        self.agents
            .iter()
            .flatten()
            .map(|a| (a.id.clone(), a.free.clone()))
            .collect()
    }

    fn set_weights(&mut self, weights: &[(String, f64)]) -> Result<(), AllocatorError> {
        for (role, weight) in weights {
            if !valid_role(role) {
                return Err(AllocatorError::InvalidRole(role.clone()));
            }
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(AllocatorError::InvalidWeight {
                    role: role.clone(),
                    weight: *weight,
                });
            }
        }
        for (role, weight) in weights {
            let n = self.node_for(role);
            let nd = &mut self.nodes[n as usize];
            nd.weight = *weight;
            nd.weight_set = true;
            self.resort_up(n);
        }
        Ok(())
    }

    fn weights(&self) -> BTreeMap<String, f64> {
        self.nodes
            .iter()
            .filter(|n| n.weight_set)
            .map(|n| (n.name.to_string(), n.weight))
            .collect()
    }

    fn update_quotas(
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
                if (0..MAX_SCALARS).any(|i| b.limit[i] != UNLIMITED && consumed[i] > b.limit[i]) {
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

    fn remove_quota(&mut self, role: &str) -> bool {
        let Some(&n) = self.node_index.get(role) else {
            return false;
        };
        self.quota_roles.remove(&n);
        let had = self.nodes[n as usize].quota.take().is_some();
        self.resort_up(n);
        had
    }

    fn quotas(&self) -> BTreeMap<String, Quota> {
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

    fn update_agent(&mut self, agent_id: &AgentId, total: Resources) {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return;
        };
        self.names.intern(&total);
        self.set_reserved_books(a, -1);
        let reserved = self.compute_reserved(&total);
        let total_sc = self.names.of(&total);
        let agent = self.agent(a);
        let mut allocated = agent.orphan.clone();
        for &c in &agent.clients {
            allocated.add(&self.client(c).allocs[&a]);
        }
        let mut free = total.clone();
        free.subtract(&allocated);
        let free_unres = self.names.unreserved(&free);
        let agent = self.agent_mut(a);
        let old_total = agent.total_sc;
        let old_free_unres = agent.free_unres;
        agent.total = total;
        agent.free = free;
        agent.total_sc = total_sc;
        agent.free_unres = free_unres;
        agent.reserved = reserved;
        agent.free_grew();
        let active = agent.active;
        self.set_reserved_books(a, 1);
        scalars::sub(&mut self.total, &old_total);
        scalars::add(&mut self.total, &total_sc);
        if active {
            scalars::sub(&mut self.avail_unres, &old_free_unres);
            scalars::add(&mut self.avail_unres, &free_unres);
        }
        self.keys_dirty = true;
    }

    fn reserve(&mut self, agent_id: &AgentId, reserved: &Resources) -> Result<(), AllocatorError> {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return Err(AllocatorError::UnknownAgent(agent_id.to_string()));
        };
        check_dynamic(reserved)?;
        let unres = unreserved_form(reserved);
        if !self.agent(a).free.contains(&unres) {
            return Err(AllocatorError::NotAvailable {
                agent: agent_id.to_string(),
                resources: unres.to_string(),
            });
        }
        let by_role = split_by_role(reserved);
        // Reservations count towards quota consumption: refuse to exceed a limit.
        for (role, r) in &by_role {
            let sc = self.names.of(r);
            if let Some(&n) = self.node_index.get(role) {
                for m in self.chain(n) {
                    let nd = &self.nodes[m as usize];
                    if let Some(q) = &nd.quota {
                        let mut c = nd.consumption();
                        scalars::add(&mut c, &sc);
                        if (0..MAX_SCALARS).any(|i| q.limit[i] != UNLIMITED && c[i] > q.limit[i]) {
                            return Err(AllocatorError::InvalidReservation(format!(
                                "it would exceed the quota limit of role '{}'",
                                nd.name
                            )));
                        }
                    }
                }
            }
        }
        self.exchange_free(a, &unres, reserved);
        Ok(())
    }

    fn unreserve(
        &mut self,
        agent_id: &AgentId,
        reserved: &Resources,
    ) -> Result<(), AllocatorError> {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return Err(AllocatorError::UnknownAgent(agent_id.to_string()));
        };
        check_dynamic(reserved)?;
        if !self.agent(a).free.contains(reserved) {
            return Err(AllocatorError::NotAvailable {
                agent: agent_id.to_string(),
                resources: reserved.to_string(),
            });
        }
        self.exchange_free(a, reserved, &unreserved_form(reserved));
        Ok(())
    }

    fn update_allocation(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        self.update_allocations(agent_id, framework_id, role, &[(from.clone(), to.clone())])
    }

    fn update_allocations(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        role: &str,
        changes: &[(Resources, Resources)],
    ) -> Result<(), AllocatorError> {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return Err(AllocatorError::UnknownAgent(agent_id.to_string()));
        };
        let Some(&f) = self.framework_index.get(framework_id) else {
            return Err(AllocatorError::UnknownFramework(framework_id.to_string()));
        };
        let Some(&c) = self.framework(f).clients.get(role) else {
            return Err(AllocatorError::InvalidRole(role.to_string()));
        };
        // Every change is checked against what the client will hold by
        // then, before any is applied: nothing ever needs rolling back.
        let mut held = self.client(c).allocs.get(&a).cloned().unwrap_or_default();
        for (from, to) in changes {
            check_change(role, from, to)?;
            if !held.contains(from) {
                return Err(AllocatorError::NotAvailable {
                    agent: agent_id.to_string(),
                    resources: from.to_string(),
                });
            }
            held.subtract(from);
            held.add(to);
        }
        for (from, to) in changes {
            self.apply_change(a, c, from, to);
        }
        Ok(())
    }

    fn offer_status(
        &self,
        framework_id: &FrameworkId,
        role: &str,
        now: Duration,
    ) -> Option<OfferStatus> {
        let &f = self.framework_index.get(framework_id)?;
        let fw = self.framework(f);
        let &c = fw.clients.get(role)?;
        let cl = self.client(c);
        let filtered_agents = cl
            .filtered
            .iter()
            .filter(|&&a| {
                self.agent(a)
                    .filters
                    .get(&c)
                    .is_some_and(|f| f.expires > now)
            })
            .count();
        let status = |reason| OfferStatus {
            last_offered: cl.last_offered,
            reason,
            filtered_agents,
        };
        if !fw.active || !cl.subscribed {
            return Some(status(Some(NoOfferReason::Inactive)));
        }
        if cl.suppressed {
            return Some(status(Some(NoOfferReason::Suppressed)));
        }
        // At the limit: some limited resource has no room left (offers, if
        // any, lack it), or no min-allocatable set fits in the room left.
        let mut room = [UNLIMITED; MAX_SCALARS];
        for n in self.chain(cl.node) {
            let nd = &self.nodes[n as usize];
            if let Some(q) = &nd.quota {
                let used = nd.consumption();
                for i in 0..MAX_SCALARS {
                    if q.limit[i] != UNLIMITED {
                        room[i] = room[i].min(q.limit[i].saturating_sub(used[i]));
                    }
                }
            }
        }
        if !self.worth_sc(&room) || room.iter().any(|r| *r <= 0) {
            return Some(status(Some(NoOfferReason::QuotaLimit)));
        }
        // One pass over the active agents; agents without reservations are
        // judged on their scalar books without copying resources.
        let mut any_free = false;
        let mut all_filtered = true;
        let mut any_total = false;
        for agent in self.agents.iter().flatten().filter(|a| a.active) {
            let free: Cow<'_, Resources> = if agent.reserved.is_empty() {
                if !self.worth_sc(&agent.free_unres) {
                    any_total = any_total || self.worth_sc(&agent.total_sc);
                    continue;
                }
                Cow::Borrowed(&agent.free)
            } else {
                Cow::Owned(allocatable_to_role(&agent.free, role))
            };
            if self.worth(&free) {
                any_free = true;
                if !self.is_filtered(agent, c, &free, now) {
                    all_filtered = false;
                    break;
                }
            } else if !any_total && self.worth(&allocatable_to_role(&agent.total, role)) {
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

    fn role_summaries(&self) -> Vec<RoleSummary> {
        let mut by_role: BTreeMap<u32, Vec<FrameworkId>> = BTreeMap::new();
        for cl in self.clients.iter().flatten() {
            by_role
                .entry(cl.node)
                .or_default()
                .push(self.framework(cl.fw).id.clone());
        }
        let mut out: Vec<RoleSummary> = (1..self.nodes.len() as u32)
            .filter(|&n| {
                let nd = &self.nodes[n as usize];
                nd.clients > 0
                    || nd.weight_set
                    || nd.quota.is_some()
                    || !scalars::is_zero(&nd.reserved)
                    || !scalars::is_zero(&nd.alloc)
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
}

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
