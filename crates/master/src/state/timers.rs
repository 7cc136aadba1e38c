//! The state machine's timers: what is due at a time (pings, agents silent
//! or unreachable too long, the re-registration window after a failover,
//! the registry gc, offer and framework failover timeouts), done by [`Master::tick`], and
//! when the next of them falls due, [`Master::next_deadline`], so that the
//! shell sleeps until then instead of polling.

use std::time::Duration;

use agora_core::{FrameworkId, OfferId};

use super::{Effect, Master, Now};

impl Master {
    /// Timers: pings agents, marks silent ones unreachable and removes those
    /// unreachable too long; removes frameworks whose failover timeout has passed.
    pub fn tick(&mut self, now: Now, out: &mut Vec<Effect>) {
        self.check_agents(now, out);
        self.check_removals(now, out);
        self.check_recovery(now, out);
        self.gc_registry(now, out);
        self.expire_offers(now, out);
        let expired: Vec<FrameworkId> = self
            .frameworks
            .values()
            .filter(|f| f.failover_deadline.is_some_and(|d| d <= now.monotonic))
            .map(|f| f.id.clone())
            .collect();
        for framework_id in expired {
            tracing::info!(framework_id = %framework_id, "framework failover timeout passed, removing it");
            self.remove_framework(&framework_id, now, out);
        }
    }

    /// Rescinds offers older than `offer_timeout`, so that resources a
    /// framework sits on go back to the pool.
    fn expire_offers(&mut self, now: Now, out: &mut Vec<Effect>) {
        let Some(timeout) = self.config.offer_timeout else {
            return;
        };
        let expired: Vec<OfferId> = self
            .offers
            .values()
            .filter(|o| now.monotonic.saturating_sub(o.made_at) >= timeout)
            .map(|o| o.id.clone())
            .collect();
        for offer_id in expired {
            tracing::debug!(offer_id = %offer_id, "offer timed out");
            self.remove_offer(&offer_id, None, true, now, out);
        }
    }

    /// The earliest monotonic time at which [`tick`](Self::tick) has
    /// something to do (`None`: nothing is pending, until an input changes
    /// that). A tick before it does nothing; a tick at or after it does all
    /// that is due. Inputs may bring it closer (an agent registers, a
    /// framework disconnects): ask again after them. It looks at every
    /// agent, offer and framework, like a tick, but changes nothing.
    pub fn next_deadline(&self) -> Option<Duration> {
        let interval = self.config.agent_ping_timeout;
        let max = self.config.max_agent_ping_timeouts.max(1);
        let agents = self.agents.values().flat_map(|agent| {
            // As `check_agents`: a reachable agent is pinged (or found
            // silent) an interval after its last ping; one whose session
            // is down is unreachable `max` intervals after it went.
            let health = &agent.health;
            let liveness = match (agent.unreachable_since, agent.conn) {
                (Some(_), _) => None,
                (None, Some(_)) => Some(
                    health
                        .last_ping
                        .map_or(Duration::ZERO, |sent| sent + interval),
                ),
                (None, None) => health.disconnected_at.map(|since| since + interval * max),
            };
            // As `check_removals`.
            [liveness, agent.removal_deadline]
        });
        // As `expire_offers`.
        let offers = self.config.offer_timeout.into_iter().flat_map(|timeout| {
            self.offers
                .values()
                .map(move |offer| Some(offer.made_at + timeout))
        });
        let frameworks = self.frameworks.values().map(|f| f.failover_deadline);
        // As `check_recovery`.
        let recovery = self.recovery.as_ref().map(|r| r.deadline);
        // As `gc_registry`, which has nothing to do without an unreachable
        // or gone agent.
        let registry_gc = (!self.unreachable_agents.is_empty()
            || !self.gone_agents.is_empty()
            || self.agents.values().any(|a| a.unreachable_since.is_some()))
        .then(|| self.last_registry_gc + self.config.registry_gc_interval);
        agents
            .chain(offers)
            .chain(frameworks)
            .chain([recovery, registry_gc])
            .flatten()
            .min()
    }
}
