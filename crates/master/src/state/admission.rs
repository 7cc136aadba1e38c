//! Admission waits for the registry: an agent that a new leading master
//! would not know (a new agent, one this master has not met, or one that
//! comes back from unreachable) enters the books only once its `admitted`
//! registry entry is durable, as Mesos' master waits for its registrar.
//!
//! *Invariant:* every agent in the books that is reachable, has been sent
//! `Registered` or has been offered is in the registry as admitted, or is
//! expected by this master's recovery (its entry was there when it was
//! elected). Without it a failover lost what the old leader had not yet
//! written (a master killed during 10,000 registrations had 6,906 in the
//! registry): the new leader, told by the registry whom to wait for,
//! answered reconciliation for tasks on the others as lost while they ran.
//!
//! The first pass of a registration checks it and, when the registry must
//! learn of the agent, keeps it here and asks for the write
//! ([`Effect::RegistryAdmit`]) with an [`AdmissionTicket`]. The shell
//! answers [`Master::admission_durable`] with the ticket once the write is
//! durable, and the registration runs again from the start, its checks
//! included, against the books as they are then. A ticket that no longer
//! matches (the agent disconnected, or registered again with another
//! entry) is ignored.

use std::collections::{BTreeMap, HashMap};

use agora_core::AgentId;
use agora_proto::v1::agent::agent_message;

use super::{ConnId, Effect, Master, Now, RegistryAgent};

/// Names one admission's registry write; the shell hands it back to
/// [`Master::admission_durable`] once the write is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionTicket {
    pub agent_id: AgentId,
    pub seq: u64,
}

/// A registration waiting for its agent's entry to be durable.
#[derive(Debug, Clone)]
pub(super) struct PendingAdmission {
    seq: u64,
    conn: ConnId,
    /// The registration as the agent sent it, its id filled in.
    register: agent_message::Register,
    /// Whether the agent came without an id (a fresh start).
    fresh_start: bool,
    entry: RegistryAgent,
}

/// What the second pass of a registration knows: its entry is durable.
#[derive(Debug, Clone)]
pub(super) struct Durable {
    pub(super) entry: RegistryAgent,
    pub(super) fresh_start: bool,
}

/// The registrations waiting for the registry, by agent and by session.
#[derive(Debug, Default)]
pub(super) struct Admissions {
    next_seq: u64,
    pending: BTreeMap<AgentId, PendingAdmission>,
    conns: HashMap<ConnId, AgentId>,
}

impl Admissions {
    pub(super) fn contains(&self, agent_id: &AgentId) -> bool {
        self.pending.contains_key(agent_id)
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Forgets the registration waiting on `conn`, if any (its session ended).
    fn drop_conn(&mut self, conn: ConnId) -> Option<AgentId> {
        let agent_id = self.conns.remove(&conn)?;
        self.pending.remove(&agent_id);
        Some(agent_id)
    }

    /// Forgets `agent_id`'s waiting registration; returns its session.
    fn remove(&mut self, agent_id: &AgentId) -> Option<PendingAdmission> {
        let pending = self.pending.remove(agent_id)?;
        self.conns.remove(&pending.conn);
        Some(pending)
    }

    /// Pairs of (agent, session) waiting, for the books' check.
    #[cfg(test)]
    pub(super) fn sessions(&self) -> Vec<(AgentId, ConnId)> {
        self.pending
            .iter()
            .map(|(id, p)| (id.clone(), p.conn))
            .collect()
    }

    #[cfg(test)]
    pub(super) fn conns(&self) -> &HashMap<ConnId, AgentId> {
        &self.conns
    }
}

impl Master {
    /// Whether admitting `agent_id` changes what the registry says of it:
    /// it is new to the registry or comes back from unreachable (`changed`
    /// for an agent in the books), and this master's recovery did not find
    /// it admitted there.
    pub(super) fn admission_changes_registry(&self, agent_id: &AgentId, changed: bool) -> bool {
        (changed || self.unreachable_agents.contains_key(agent_id))
            && !self.is_recovering(Some(agent_id))
    }

    /// Keeps a checked registration until `entry` is durable, and asks for
    /// the write. A registration already waiting with the same entry keeps
    /// its write (the agent retried on a new session); its old session ends.
    pub(super) fn admit_when_durable(
        &mut self,
        conn: ConnId,
        register: agent_message::Register,
        fresh_start: bool,
        entry: RegistryAgent,
        out: &mut Vec<Effect>,
    ) {
        let agent_id = AgentId::new(entry.id.clone());
        let mut fresh_start = fresh_start;
        let kept = match self.admissions.remove(&agent_id) {
            Some(old) => {
                if old.conn != conn {
                    out.push(Effect::CloseAgent { conn: old.conn });
                }
                fresh_start |= old.fresh_start;
                (old.entry == entry).then_some(old.seq)
            }
            None => None,
        };
        let seq = match kept {
            Some(seq) => seq,
            None => {
                self.admissions.next_seq += 1;
                let seq = self.admissions.next_seq;
                out.push(Effect::RegistryAdmit {
                    entry: entry.clone(),
                    ticket: AdmissionTicket {
                        agent_id: agent_id.clone(),
                        seq,
                    },
                });
                seq
            }
        };
        tracing::debug!(agent_id = %agent_id, conn, "agent admission waits for the registry");
        self.admissions.conns.insert(conn, agent_id.clone());
        self.admissions.pending.insert(
            agent_id,
            PendingAdmission {
                seq,
                conn,
                register,
                fresh_start,
                entry,
            },
        );
    }

    /// The registry holds the entry `ticket` asked for: the registration
    /// waiting on it runs again, and is admitted unless the books changed
    /// meanwhile so that it must be refused.
    pub fn admission_durable(&mut self, now: Now, ticket: AdmissionTicket, out: &mut Vec<Effect>) {
        let matches = self
            .admissions
            .pending
            .get(&ticket.agent_id)
            .is_some_and(|p| p.seq == ticket.seq);
        if !matches {
            tracing::debug!(agent_id = %ticket.agent_id, "registry entry durable for an admission nobody waits for");
            return;
        }
        let Some(pending) = self.admissions.remove(&ticket.agent_id) else {
            return;
        };
        let durable = Durable {
            entry: pending.entry,
            fresh_start: pending.fresh_start,
        };
        self.register_agent(now, pending.conn, pending.register, Some(durable), out);
    }

    /// A session that ended while its registration waited: nothing of it
    /// entered the books. Returns whether `conn` was such a session.
    pub(super) fn admission_disconnected(&mut self, conn: ConnId) -> bool {
        match self.admissions.drop_conn(conn) {
            Some(agent_id) => {
                tracing::debug!(agent_id = %agent_id, conn, "agent left before its admission was durable");
                true
            }
            None => false,
        }
    }

    /// Registrations waiting for the registry.
    pub fn admissions_pending(&self) -> usize {
        self.admissions.len()
    }
}

/// The tickets the effects ask the registry for, in order (for tests that
/// play the registry writer).
#[cfg(test)]
pub(super) fn asked_tickets(effects: &[Effect]) -> Vec<AdmissionTicket> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::RegistryAdmit { ticket, .. } => Some(ticket.clone()),
            _ => None,
        })
        .collect()
}
