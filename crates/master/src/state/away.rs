//! The agents without a session, by the address they last registered
//! from: an index beside the books, so that an agent's fresh start (a new
//! id on an address whose old agent is away: its machine rebooted) looks
//! at the agents of that address, not at every agent of the cluster. A
//! pass over every agent per fresh registration made 10,000 agents
//! registering on a new master cost 5 * 10^7 visits on the actor.
//!
//! *Invariant:* an agent of the books is listed under the hostname and
//! port of its `info` exactly while its `conn` is `None` (`check_books`
//! asserts it after every input the state machine's tests drive).

use std::collections::{BTreeSet, HashMap};

use agora_core::AgentId;
use agora_proto::v1::AgentInfo;

#[derive(Debug, Default)]
pub(super) struct AwayAgents {
    by_address: HashMap<(String, Option<i32>), BTreeSet<AgentId>>,
}

/// Where `info` says its agent is: its hostname and port, compared as the
/// books compare them (no port is not port 0).
fn address_of(info: &AgentInfo) -> (String, Option<i32>) {
    (info.hostname.clone(), info.port)
}

impl AwayAgents {
    /// `agent_id`, registered as `info`, lost its session.
    pub(super) fn went_away(&mut self, info: &AgentInfo, agent_id: &AgentId) {
        self.by_address
            .entry(address_of(info))
            .or_default()
            .insert(agent_id.clone());
    }

    /// `agent_id`, registered as `info`, has a session again or left the
    /// books.
    pub(super) fn left(&mut self, info: &AgentInfo, agent_id: &AgentId) {
        let address = address_of(info);
        if let Some(ids) = self.by_address.get_mut(&address) {
            ids.remove(agent_id);
            if ids.is_empty() {
                self.by_address.remove(&address);
            }
        }
    }

    /// The agents away that registered from where `info` says it is.
    pub(super) fn at(&self, info: &AgentInfo) -> Vec<AgentId> {
        self.by_address
            .get(&address_of(info))
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every agent listed, for the invariant's check.
    #[cfg(test)]
    pub(super) fn all(&self) -> BTreeSet<(String, Option<i32>, AgentId)> {
        self.by_address
            .iter()
            .flat_map(|((host, port), ids)| ids.iter().map(|id| (host.clone(), *port, id.clone())))
            .collect()
    }
}
