//! The agent's executor-authentication flag (Mesos' `--jwt_secret_key`).
//! Executor authentication itself is always on: this only chooses the key.

use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ExecutorAuthArgs {
    /// File holding the secret that signs executor tokens (HS256); default: 32 random bytes
    /// generated once in <work_dir>/meta/executor_token.key (mode 0600) and kept across restarts.
    #[arg(long, env = "AGORA_JWT_SECRET_KEY", aliases = ["jwt_secret_key", "executor_secret_key"])]
    pub(crate) jwt_secret_key: Option<PathBuf>,
}
