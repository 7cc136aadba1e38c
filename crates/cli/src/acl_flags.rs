//! `--acls` (Mesos' flag): who may do what, for the master and the agent.

use std::sync::Arc;

use agora_auth::acl::{AclSource, Acls};
use anyhow::Context as _;

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct AclArgs {
    /// Authorization rules in Mesos' ACL JSON: the JSON itself (a value starting with '{') or a file holding it (a path, file:// allowed); first matching rule wins, "permissive" (default true) decides the rest. Unset: everyone may do everything.
    #[arg(long, env = "AGORA_ACLS")]
    pub(crate) acls: Option<String>,
}

impl AclArgs {
    /// The parsed ACLs; a file that cannot be read or rules that do not
    /// parse stop the daemon before it serves anything.
    pub(crate) fn load(&self) -> anyhow::Result<Arc<Acls>> {
        let Some(value) = &self.acls else {
            return Ok(Arc::default());
        };
        let text = match AclSource::from_flag(value) {
            AclSource::Json(text) => text,
            AclSource::File(path) => std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read --acls file {}", path.display()))?,
        };
        let acls = Acls::parse(&text).context("--acls")?;
        Ok(Arc::new(acls))
    }
}
