//! Building a `FrameworkInfo` with safe defaults.

use std::time::Duration;

use agora_proto::v1::{FrameworkId, FrameworkInfo, framework_info::Capability};

/// Default failover timeout: 7 days (Marathon's choice).
///
/// The failover timeout is how long the master keeps a disconnected
/// framework's tasks running while waiting for it to re-subscribe. Mesos
/// defaults it to 0, which kills every task the moment a scheduler restarts;
/// a week leaves ample time to bring a scheduler back. Frameworks whose tasks
/// should die with the scheduler set a short timeout explicitly.
pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The user tasks run as by default: `$USER`, else `root`.
pub fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_owned())
}

/// Builds a [`FrameworkInfo`].
///
/// Defaults: user [`current_user`], role `*`, failover timeout
/// [`DEFAULT_FAILOVER_TIMEOUT`], checkpointing on (tasks survive agent
/// restarts).
#[derive(Debug, Clone)]
pub struct FrameworkBuilder {
    info: FrameworkInfo,
}

impl FrameworkBuilder {
    /// A framework called `name` with the defaults above.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            info: FrameworkInfo {
                user: current_user(),
                name: name.into(),
                failover_timeout: Some(DEFAULT_FAILOVER_TIMEOUT.as_secs_f64()),
                checkpoint: Some(true),
                role: Some("*".to_owned()),
                ..Default::default()
            },
        }
    }

    /// The user tasks run as unless a task says otherwise.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.info.user = user.into();
        self
    }

    /// Subscribes in a single role (Mesos' `role` field).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.info.role = Some(role.into());
        self.info.roles.clear();
        self.info
            .capabilities
            .retain(|c| c.r#type != Some(MULTI_ROLE as i32));
        self
    }

    /// Subscribes in several roles: sets `roles` and the `MULTI_ROLE`
    /// capability, and clears `role`, as Mesos requires.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.info.role = None;
        self.info.roles = roles.into_iter().map(Into::into).collect();
        self.capability(MULTI_ROLE)
    }

    /// How long the master waits for a disconnected framework before it
    /// kills its tasks.
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.info.failover_timeout = Some(timeout.as_secs_f64());
        self
    }

    /// Whether agents checkpoint this framework's tasks (survive restarts).
    pub fn checkpoint(mut self, checkpoint: bool) -> Self {
        self.info.checkpoint = Some(checkpoint);
        self
    }

    /// Re-subscribes as an existing framework (scheduler failover).
    pub fn id(mut self, id: FrameworkId) -> Self {
        self.info.id = Some(id);
        self
    }

    /// The principal the framework authenticates as.
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.info.principal = Some(principal.into());
        self
    }

    /// The host the scheduler runs on, shown in the UI.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.info.hostname = Some(hostname.into());
        self
    }

    /// The scheduler's own web UI.
    pub fn webui_url(mut self, url: impl Into<String>) -> Self {
        self.info.webui_url = Some(url.into());
        self
    }

    /// Declares a capability (once).
    pub fn capability(
        mut self,
        capability: agora_proto::v1::framework_info::capability::Type,
    ) -> Self {
        let t = Some(capability as i32);
        if !self.info.capabilities.iter().any(|c| c.r#type == t) {
            self.info.capabilities.push(Capability { r#type: t });
        }
        self
    }

    /// The finished `FrameworkInfo`.
    pub fn build(self) -> FrameworkInfo {
        self.info
    }
}

const MULTI_ROLE: agora_proto::v1::framework_info::capability::Type =
    agora_proto::v1::framework_info::capability::Type::MultiRole;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let info = FrameworkBuilder::new("fw").user("alice").build();
        assert_eq!(info.name, "fw");
        assert_eq!(info.user, "alice");
        assert_eq!(info.failover_timeout, Some(604_800.0));
        assert_eq!(info.checkpoint, Some(true));
        assert_eq!(info.role.as_deref(), Some("*"));
        assert!(info.roles.is_empty());
        assert!(info.id.is_none());
    }

    #[test]
    fn roles_switch_to_multi_role_and_back() {
        let multi = FrameworkBuilder::new("fw").roles(["a", "b"]).build();
        assert_eq!(multi.role, None);
        assert_eq!(multi.roles, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(multi.capabilities.len(), 1);
        assert_eq!(multi.capabilities[0].r#type, Some(MULTI_ROLE as i32));

        let single = FrameworkBuilder::new("fw")
            .roles(["a"])
            .capability(MULTI_ROLE)
            .role("web")
            .build();
        assert_eq!(single.role.as_deref(), Some("web"));
        assert!(single.roles.is_empty());
        assert!(single.capabilities.is_empty());
    }

    #[test]
    fn explicit_failover_timeout_and_id() {
        let info = FrameworkBuilder::new("fw")
            .failover_timeout(Duration::from_secs(0))
            .id(FrameworkId { value: "f1".into() })
            .checkpoint(false)
            .build();
        assert_eq!(info.failover_timeout, Some(0.0));
        assert_eq!(info.id.map(|i| i.value).as_deref(), Some("f1"));
        assert_eq!(info.checkpoint, Some(false));
    }
}
