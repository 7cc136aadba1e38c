//! Executor authentication: only an executor can speak for itself.
//!
//! The agent mints a token ([`agora_auth::executor_token`], Mesos' HS256
//! JWT) for every executor run, with the framework id, the executor id and
//! the run's id (Mesos' container id) as claims, and hands it to the
//! executor in [`ENV_EXECUTOR_TOKEN`]. Every call on the executor APIs (the
//! gRPC stream's SUBSCRIBE, each POST of the HTTP API) must carry it as
//! `authorization: Bearer <token>`; the edge checks the signature and that
//! the claims name the call's framework and executor ([`authenticate`]),
//! and the agent's loop checks that the run is the executor's current one
//! ([`current_run`]). There is no flag that turns this off.
//!
//! The key is `--jwt-secret-key`'s file, or 32 random bytes generated once
//! in `<work_dir>/meta/` (mode 0600) and reused across agent restarts, so
//! that executors that re-subscribe to a restarted agent present the token
//! they were given.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use agora_auth::executor_token::{self, Claims, TokenKey};
use agora_core::{ExecutorId, FrameworkId};

/// The variable that carries an executor's token (Mesos' name).
pub const ENV_EXECUTOR_TOKEN: &str = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN";
/// The realm of the agent's executor APIs in a refusal's `WWW-Authenticate`.
pub const REALM: &str = "mesos-agent-executor";
/// The generated key's file, under `<work_dir>/meta/`.
pub const GENERATED_KEY_FILE: &str = "executor_token.key";
/// Bytes of a generated key.
const GENERATED_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the executor token key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the executor token key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the executor token key {path} is empty")]
    Empty { path: PathBuf },
}

/// The key that signs executor tokens: the file `configured` names, or the
/// one generated under `meta` (created now if missing, readable by its
/// owner only).
pub fn load_key(meta: &Path, configured: Option<&Path>) -> Result<TokenKey, KeyError> {
    let path = match configured {
        Some(path) => path.to_path_buf(),
        None => {
            let path = meta.join(GENERATED_KEY_FILE);
            if !path.exists() {
                generate_key(meta, &path)?;
            }
            path
        }
    };
    let secret = std::fs::read(&path).map_err(|source| KeyError::Read {
        path: path.clone(),
        source,
    })?;
    // Whoever reads the key can mint any executor's token.
    if let Ok(meta) = std::fs::metadata(&path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the executor token key is readable by other users than its owner: make it 0600"
        );
    }
    TokenKey::new(&secret).map_err(|_| KeyError::Empty { path })
}

/// Writes a fresh random key to `path` atomically (a temp file made 0600
/// from the start, then renamed), so that a crash leaves no partial key.
fn generate_key(meta: &Path, path: &Path) -> Result<(), KeyError> {
    let fail = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(meta).map_err(fail)?;
    std::fs::set_permissions(meta, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    let secret: [u8; GENERATED_KEY_BYTES] = rand::random();
    let temp = meta.join(format!(".{GENERATED_KEY_FILE}.tmp"));
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(fail)?;
    file.write_all(&secret).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(fail)
}

/// The token of one executor run.
pub fn mint(
    key: &TokenKey,
    framework_id: &FrameworkId,
    executor_id: &ExecutorId,
    run_id: &str,
) -> String {
    executor_token::mint(
        key,
        &Claims {
            fid: framework_id.as_str().to_string(),
            eid: executor_id.as_str().to_string(),
            cid: run_id.to_string(),
        },
    )
}

/// What a supervisor's token's run id starts with. A supervisor's claims
/// name no framework and no executor, which no executor's can: framework
/// and executor ids are never empty.
const SUPERVISOR_RUN_PREFIX: &str = "supervisor:";

/// The token of one `agora supervisor` process (`id` names it).
pub fn mint_supervisor(key: &TokenKey, id: &str) -> String {
    executor_token::mint(
        key,
        &Claims {
            fid: String::new(),
            eid: String::new(),
            cid: format!("{SUPERVISOR_RUN_PREFIX}{id}"),
        },
    )
}

/// Checks the `authorization` value of a supervisor's attachment: a Bearer
/// token minted by [`mint_supervisor`] with this agent's key. Returns the
/// supervisor's id, or the plain-text reason of the refusal.
pub fn authenticate_supervisor(
    key: &TokenKey,
    authorization: Option<&str>,
) -> Result<String, String> {
    let Some(token) = authorization.and_then(executor_token::bearer) else {
        return Err("the call carries no supervisor token (authorization: Bearer)".into());
    };
    let claims = executor_token::verify(key, token).map_err(|e| format!("invalid token: {e}"))?;
    match claims.cid.strip_prefix(SUPERVISOR_RUN_PREFIX) {
        Some(id) if claims.fid.is_empty() && claims.eid.is_empty() => Ok(id.to_string()),
        _ => Err("the token is not a supervisor's".into()),
    }
}

/// Checks the `authorization` value of a call naming `framework_id` and
/// `executor_id`: a Bearer token that verifies and whose claims name them.
/// Returns the run the token was minted for (still to be checked against
/// the executor's current run), or the plain-text reason of the refusal.
pub fn authenticate(
    key: &TokenKey,
    authorization: Option<&str>,
    framework_id: &FrameworkId,
    executor_id: &ExecutorId,
) -> Result<String, String> {
    let Some(value) = authorization else {
        return Err("the call carries no executor token (authorization: Bearer)".into());
    };
    let Some(token) = executor_token::bearer(value) else {
        return Err("the authorization header is not a Bearer token".into());
    };
    let claims = executor_token::verify(key, token).map_err(|e| format!("invalid token: {e}"))?;
    if claims.fid.is_empty() || claims.eid.is_empty() {
        return Err("the token is not an executor's".into());
    }
    if claims.fid != framework_id.as_str() || claims.eid != executor_id.as_str() {
        return Err(format!(
            "the token is not executor {executor_id} of framework {framework_id}'s"
        ));
    }
    Ok(claims.cid)
}

/// Why the loop refused an executor's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorRefusal {
    /// The token is for another run of the executor (one that ended), or
    /// the executor is not running here.
    Unauthenticated(String),
    /// The call is authenticated but cannot be served (not subscribed...).
    Refused(String),
}

/// Checks that `token_run` is the executor's current run: `current` is the
/// run the agent knows of it (`None` when the executor is not here, or was
/// removed because it terminated).
pub fn current_run(
    current: Option<&str>,
    token_run: &str,
    framework_id: &FrameworkId,
    executor_id: &ExecutorId,
) -> Result<(), ExecutorRefusal> {
    match current {
        Some(run) if run == token_run => Ok(()),
        Some(_) => Err(ExecutorRefusal::Unauthenticated(format!(
            "the token is for an earlier run of executor {executor_id} of framework {framework_id}"
        ))),
        None => Err(ExecutorRefusal::Unauthenticated(format!(
            "executor {executor_id} of framework {framework_id} is not running on this agent"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn ids() -> (FrameworkId, ExecutorId) {
        (FrameworkId::new("f1"), ExecutorId::new("e1"))
    }

    #[test]
    fn a_supervisor_token_and_an_executor_token_never_stand_in_for_each_other() {
        let key = TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let other = TokenKey::new(b"another key, another agent......").unwrap();
        let supervisor = format!("Bearer {}", mint_supervisor(&key, "s1"));
        assert_eq!(
            authenticate_supervisor(&key, Some(&supervisor)),
            Ok("s1".into())
        );
        // Another agent's key, no token, or not a bearer: refused.
        assert!(authenticate_supervisor(&other, Some(&supervisor)).is_err());
        assert!(authenticate_supervisor(&key, None).is_err());
        assert!(authenticate_supervisor(&key, Some("Basic Zm9vOmJhcg==")).is_err());
        // An executor's token is not a supervisor's, even one whose run id
        // looks like a supervisor's.
        let (f, e) = ids();
        for run in ["run-1", "supervisor:s1"] {
            let executor = format!("Bearer {}", mint(&key, &f, &e, run));
            assert!(
                authenticate_supervisor(&key, Some(&executor)).is_err(),
                "{run}"
            );
        }
        // A supervisor's token speaks for no executor.
        assert!(authenticate(&key, Some(&supervisor), &f, &e).is_err());
        // Not even for the empty ids its claims hold.
        let empty = (FrameworkId::new(""), ExecutorId::new(""));
        assert!(authenticate(&key, Some(&supervisor), &empty.0, &empty.1).is_err());
    }

    #[test]
    fn generated_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        let key = load_key(&meta, None).unwrap();
        let file = meta.join(GENERATED_KEY_FILE);
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 32);
        assert_eq!(std::fs::metadata(&meta).unwrap().mode() & 0o777, 0o700);
        let (f, e) = ids();
        let token = mint(&key, &f, &e, "run-1");
        // A restarted agent loads the same key: the old token still verifies.
        let again = load_key(&meta, None).unwrap();
        let bearer = format!("Bearer {token}");
        assert_eq!(
            authenticate(&again, Some(&bearer), &f, &e),
            Ok("run-1".into())
        );
    }

    #[test]
    fn configured_key_is_used_and_empty_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, b"secret").unwrap();
        let key = load_key(&dir.path().join("meta"), Some(&path)).unwrap();
        assert!(!dir.path().join("meta").join(GENERATED_KEY_FILE).exists());
        let (f, e) = ids();
        let token = format!("Bearer {}", mint(&key, &f, &e, "r"));
        let same = TokenKey::new(b"secret").unwrap();
        assert!(authenticate(&same, Some(&token), &f, &e).is_ok());
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            load_key(&dir.path().join("meta"), Some(&path)),
            Err(KeyError::Empty { .. })
        ));
        assert!(matches!(
            load_key(&dir.path().join("meta"), Some(&dir.path().join("absent"))),
            Err(KeyError::Read { .. })
        ));
    }

    #[test]
    fn authenticate_refuses_missing_foreign_and_forged_tokens() {
        let key = TokenKey::new(b"k").unwrap();
        let (f, e) = ids();
        assert!(authenticate(&key, None, &f, &e).is_err());
        assert!(authenticate(&key, Some("Basic Zm9vOmJhcg=="), &f, &e).is_err());
        assert!(authenticate(&key, Some("Bearer garbage"), &f, &e).is_err());
        let other = format!("Bearer {}", mint(&key, &f, &ExecutorId::new("e2"), "run-2"));
        assert!(authenticate(&key, Some(&other), &f, &e).is_err());
        let other_framework = format!(
            "Bearer {}",
            mint(&key, &FrameworkId::new("f2"), &e, "run-2")
        );
        assert!(authenticate(&key, Some(&other_framework), &f, &e).is_err());
        let forged = format!(
            "Bearer {}",
            mint(&TokenKey::new(b"not the key").unwrap(), &f, &e, "run-1")
        );
        assert!(authenticate(&key, Some(&forged), &f, &e).is_err());
    }

    #[test]
    fn only_the_current_run_is_accepted() {
        let (f, e) = ids();
        assert_eq!(current_run(Some("r2"), "r2", &f, &e), Ok(()));
        assert!(matches!(
            current_run(Some("r2"), "r1", &f, &e),
            Err(ExecutorRefusal::Unauthenticated(_))
        ));
        assert!(matches!(
            current_run(None, "r1", &f, &e),
            Err(ExecutorRefusal::Unauthenticated(_))
        ));
    }
}
