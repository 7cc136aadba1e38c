//! Authentication flags: the master's `--credentials` and
//! `--authenticate-*`, the agent's `--credential` (what it sends the master)
//! and its own HTTP realms, and the client side (`--principal` with
//! `--secret-file`, `AGORA_SECRET` or `--secret`) for `agora run`, `kill`
//! and `teardown`.
//!
//! Secrets are read from files (or the environment) here and go no further
//! than the daemon's or client's configuration: flags show file paths
//! only, and a secret prints as `<redacted>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agora_auth::credentials::{Credential, Credentials, flag_path};
use anyhow::Context as _;

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct MasterAuthArgs {
    /// JSON file of the principals the master accepts and their secrets, as Mesos' `{"credentials":[{"principal":"..","secret":".."}]}` (a `file://` prefix is allowed). Required by every --authenticate-* flag [default: none: nobody can authenticate].
    #[arg(long, env = "AGORA_CREDENTIALS", value_name = "FILE")]
    credentials: Option<String>,
    /// Refuse gRPC frameworks (the SDK, agora run, libmesos) without valid credentials.
    #[arg(
        long,
        env = "AGORA_AUTHENTICATE_FRAMEWORKS",
        alias = "authenticate_frameworks",
        alias = "authenticate"
    )]
    authenticate_frameworks: bool,
    /// Refuse agents without valid credentials (their --credential).
    #[arg(
        long,
        env = "AGORA_AUTHENTICATE_AGENTS",
        alias = "authenticate_agents",
        alias = "authenticate_slaves"
    )]
    authenticate_agents: bool,
    /// Refuse read endpoints (/state, /metrics, the UI's JSON, ...) without HTTP Basic credentials (realm mesos-master-readonly).
    #[arg(
        long,
        env = "AGORA_AUTHENTICATE_HTTP_READONLY",
        alias = "authenticate_http_readonly"
    )]
    authenticate_http_readonly: bool,
    /// Refuse endpoints that change state (operator API, teardown, quota, weights, reservations) without HTTP Basic credentials (realm mesos-master-readwrite).
    #[arg(
        long,
        env = "AGORA_AUTHENTICATE_HTTP_READWRITE",
        alias = "authenticate_http_readwrite"
    )]
    authenticate_http_readwrite: bool,
    /// Refuse Mesos' HTTP scheduler API (POST /api/v1/scheduler) without HTTP Basic credentials (realm mesos-master-scheduler).
    #[arg(
        long,
        env = "AGORA_AUTHENTICATE_HTTP_FRAMEWORKS",
        alias = "authenticate_http_frameworks"
    )]
    authenticate_http_frameworks: bool,
}

impl MasterAuthArgs {
    /// The master's authentication settings; an `--authenticate-*` flag
    /// without `--credentials`, or a credentials file that cannot be read
    /// or parsed, is a start-up error.
    pub(crate) fn load(&self) -> anyhow::Result<agora_master::Authentication> {
        let requires = [
            ("--authenticate-frameworks", self.authenticate_frameworks),
            ("--authenticate-agents", self.authenticate_agents),
            (
                "--authenticate-http-readonly",
                self.authenticate_http_readonly,
            ),
            (
                "--authenticate-http-readwrite",
                self.authenticate_http_readwrite,
            ),
            (
                "--authenticate-http-frameworks",
                self.authenticate_http_frameworks,
            ),
        ];
        let credentials = match &self.credentials {
            Some(path) => Some(Arc::new(read_credentials(path)?)),
            None => {
                if let Some((flag, _)) = requires.iter().find(|(_, on)| *on) {
                    anyhow::bail!(
                        "{flag} needs --credentials FILE: the principals and secrets to check against"
                    );
                }
                None
            }
        };
        Ok(agora_master::Authentication {
            credentials,
            credentials_path: self
                .credentials
                .as_deref()
                .map(|p| flag_path(p).to_string()),
            frameworks: self.authenticate_frameworks,
            agents: self.authenticate_agents,
            http_readonly: self.authenticate_http_readonly,
            http_readwrite: self.authenticate_http_readwrite,
            http_frameworks: self.authenticate_http_frameworks,
        })
    }
}

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct AgentAuthArgs {
    /// This agent's credential for the master: JSON `{"principal":"..","secret":".."}` or one line `principal secret` (a `file://` prefix is allowed) [default: none: the agent registers without authenticating].
    #[arg(long, env = "AGORA_CREDENTIAL", value_name = "FILE")]
    credential: Option<String>,
    /// JSON credentials file (Mesos' format) for the agent's own HTTP endpoints. Required by --authenticate-http-readonly/-readwrite [default: none].
    #[arg(
        long,
        env = "AGORA_HTTP_CREDENTIALS",
        alias = "http_credentials",
        value_name = "FILE"
    )]
    http_credentials: Option<String>,
    /// Refuse the agent's read endpoints (/state, /files, /monitor/statistics, /metrics) without HTTP Basic credentials (realm mesos-agent-readonly).
    #[arg(
        long,
        env = "AGORA_AUTHENTICATE_HTTP_READONLY",
        alias = "authenticate_http_readonly"
    )]
    authenticate_http_readonly: bool,
    /// Refuse the agent's operator API (POST /api/v1) without HTTP Basic credentials (realm mesos-agent-readwrite).
    #[arg(
        long,
        env = "AGORA_AUTHENTICATE_HTTP_READWRITE",
        alias = "authenticate_http_readwrite"
    )]
    authenticate_http_readwrite: bool,
}

impl AgentAuthArgs {
    pub(crate) fn load(&self) -> anyhow::Result<agora_agent::authn::AgentAuthentication> {
        let credential = match &self.credential {
            Some(path) => Some(read_credential(path)?),
            None => None,
        };
        let http_credentials = match &self.http_credentials {
            Some(path) => Some(Arc::new(read_credentials(path)?)),
            None => {
                if self.authenticate_http_readonly || self.authenticate_http_readwrite {
                    anyhow::bail!(
                        "--authenticate-http-readonly/--authenticate-http-readwrite need --http-credentials FILE"
                    );
                }
                None
            }
        };
        Ok(agora_agent::authn::AgentAuthentication {
            credential,
            http_credentials,
            http_readonly: self.authenticate_http_readonly,
            http_readwrite: self.authenticate_http_readwrite,
        })
    }
}

/// A client's credential: `--principal` with its secret from
/// `--secret-file`, `AGORA_SECRET`, or `--secret` (visible to other users
/// in the process list: prefer the file or the environment).
#[derive(clap::Args, Clone, Default)]
pub(crate) struct ClientAuthArgs {
    /// Authenticate to the master as this principal (also FrameworkInfo.principal for agora run) [default: none: no credential is sent].
    #[arg(long, env = "AGORA_PRINCIPAL")]
    pub(crate) principal: Option<String>,
    /// File holding the principal's secret (its first line) [default: none: AGORA_SECRET or --secret].
    #[arg(
        long,
        env = "AGORA_SECRET_FILE",
        value_name = "FILE",
        conflicts_with = "secret"
    )]
    secret_file: Option<PathBuf>,
    /// The principal's secret (also AGORA_SECRET). Other users may see a command line: prefer --secret-file or the environment [default: none].
    #[arg(long, env = "AGORA_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

/// Never prints the secret, should the arguments ever be logged.
impl std::fmt::Debug for ClientAuthArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthArgs")
            .field("principal", &self.principal)
            .field("secret_file", &self.secret_file)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientAuthArgs {
    /// A principal with its secret, as the flags would give them.
    #[cfg(test)]
    pub(crate) fn with_secret(principal: &str, secret: &str) -> Self {
        Self {
            principal: Some(principal.to_string()),
            secret_file: None,
            secret: Some(secret.to_string()),
        }
    }

    /// The credential to send, if a principal was given.
    pub(crate) fn credential(&self) -> anyhow::Result<Option<Credential>> {
        let Some(principal) = &self.principal else {
            if self.secret.is_some() || self.secret_file.is_some() {
                anyhow::bail!("a secret was given without --principal");
            }
            return Ok(None);
        };
        let secret = match (&self.secret_file, &self.secret) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the secret file {}", path.display()))?;
                text.lines().next().unwrap_or("").trim_end().to_string()
            }
            (None, Some(secret)) => secret.clone(),
            (None, None) => {
                anyhow::bail!("--principal needs its secret: --secret-file FILE or AGORA_SECRET")
            }
        };
        if secret.is_empty() {
            anyhow::bail!("the secret for principal '{principal}' is empty");
        }
        Ok(Some(Credential::new(principal.clone(), secret)))
    }
}

fn read_flag_file(value: &str, what: &str) -> anyhow::Result<String> {
    let path = Path::new(flag_path(value));
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn read_credentials(value: &str) -> anyhow::Result<Credentials> {
    let text = read_flag_file(value, "the credentials file")?;
    Credentials::parse(&text)
        .with_context(|| format!("invalid credentials file {}", flag_path(value)))
}

fn read_credential(value: &str) -> anyhow::Result<Credential> {
    let text = read_flag_file(value, "the credential file")?;
    Credential::parse(&text)
        .with_context(|| format!("invalid credential file {}", flag_path(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of this test's own, removed when dropped (a test must
    /// leave nothing behind in the temp dir).
    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temp dir")
    }

    #[test]
    fn authenticate_flags_need_credentials() {
        let args = MasterAuthArgs {
            authenticate_agents: true,
            ..MasterAuthArgs::default()
        };
        let err = args.load().expect_err("refused").to_string();
        assert!(
            err.contains("--authenticate-agents") && err.contains("--credentials"),
            "{err}"
        );
        assert!(MasterAuthArgs::default().load().is_ok());
        let agent = AgentAuthArgs {
            authenticate_http_readonly: true,
            ..AgentAuthArgs::default()
        };
        assert!(agent.load().is_err());
    }

    #[test]
    fn credentials_files_are_read_with_or_without_file_prefix() {
        let dir = scratch();
        let path = dir.path().join("creds.json");
        std::fs::write(&path, r#"{"credentials":[{"principal":"a","secret":"b"}]}"#)
            .expect("write");
        for value in [
            path.display().to_string(),
            format!("file://{}", path.display()),
        ] {
            let args = MasterAuthArgs {
                credentials: Some(value),
                authenticate_frameworks: true,
                ..MasterAuthArgs::default()
            };
            let auth = args.load().expect("loaded");
            let creds = auth.credentials.expect("credentials");
            assert!(creds.verify("a", b"b").is_some());
        }
    }

    #[test]
    fn client_secret_from_file_or_value() {
        let dir = scratch();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").expect("write");
        let from_file = ClientAuthArgs {
            principal: Some("p".into()),
            secret_file: Some(path),
            secret: None,
        };
        assert_eq!(
            from_file.credential().expect("ok"),
            Some(Credential::new("p", "s3cret"))
        );
        let missing = ClientAuthArgs {
            principal: Some("p".into()),
            ..ClientAuthArgs::default()
        };
        assert!(missing.credential().is_err());
        assert_eq!(ClientAuthArgs::default().credential().expect("ok"), None);
        let on_the_command_line = ClientAuthArgs {
            principal: Some("p".into()),
            secret_file: None,
            secret: Some("hunter2".into()),
        };
        assert!(!format!("{on_the_command_line:?}").contains("hunter2"));
    }
}
