//! `agora kill` and `agora teardown`: operator control for people, through
//! the leading master's operator API (`POST /api/v1`, Mesos' JSON).
//!
//! `agora kill TASK_ID` sends Agora's KILL_TASK extension: the master kills
//! the task on its agent on the operator's authority, and the reason (by
//! default who ran the command) reaches the task's TASK_KILLED message.
//! `agora teardown FRAMEWORK` sends TEARDOWN: the master removes the
//! framework and kills its tasks. A framework may be named by its id or,
//! when exactly one registered framework has it, by its name (read from
//! the master's `/state`).
//!
//! `--master` takes what `agora run --master` takes, `zk://` included
//! (`agora_scheduler::master_detector`); a follower's 307 is followed to
//! the leader. Exit status: 0 once the master accepted the call; 1 when it
//! refused (its message on stderr) or the name matches no single framework;
//! 2 when no master could be reached (or the address is invalid) within
//! `--timeout`.

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agora_mesos_http::{Media, encode};
use agora_proto::v1 as pb;
use agora_proto::v1::master::{Call, call};
use agora_scheduler::{Backoff, MasterDetector};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;
use tokio::time::Instant;

/// How long one request may take once the master is found.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed at most (a follower sends one, to the leader).
const MAX_REDIRECTS: usize = 5;

/// Where the master is, and for how long to look for it.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct MasterOpt {
    /// Master: HOST:PORT, http://HOST:PORT, or zk://HOST:PORT[,...]/PATH (the elected leader).
    #[arg(long, env = "AGORA_MASTER", value_name = "ADDRESS")]
    pub(crate) master: String,

    /// Seconds to keep trying to reach the leading master before giving up
    /// with exit status 2.
    #[arg(
        long,
        env = "AGORA_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub(crate) timeout: u64,

    #[command(flatten)]
    pub(crate) tls: crate::tls_flags::ClientTlsArgs,
}

/// `agora kill`.
#[derive(clap::Args, Debug)]
pub(crate) struct KillArgs {
    /// The task to kill (`agora run` names its tasks NAME-0, NAME-1, ...).
    pub(crate) task_id: String,

    /// The task's framework; needed only when tasks of several frameworks
    /// have this id [default: the one framework with a task of this id].
    #[arg(long, env = "AGORA_FRAMEWORK", value_name = "FRAMEWORK_ID")]
    pub(crate) framework: Option<String>,

    /// Why; it reaches the task's TASK_KILLED message [default: killed with
    /// `agora kill` by $USER].
    #[arg(long, env = "AGORA_REASON", value_name = "TEXT")]
    pub(crate) reason: Option<String>,

    #[command(flatten)]
    pub(crate) master: MasterOpt,

    #[command(flatten)]
    pub(crate) auth: crate::auth_flags::ClientAuthArgs,
}

/// `agora teardown`.
#[derive(clap::Args, Debug)]
pub(crate) struct TeardownArgs {
    /// The framework: its id, or its name when exactly one registered
    /// framework has that name.
    pub(crate) framework: String,

    #[command(flatten)]
    pub(crate) master: MasterOpt,

    #[command(flatten)]
    pub(crate) auth: crate::auth_flags::ClientAuthArgs,
}

/// Whether a request failed in the TLS handshake (the server's certificate
/// is not trusted or not for this name): retrying cannot help.
fn tls_refused(error: &reqwest::Error) -> bool {
    agora_tls::tls_failure(error).is_some()
}

/// What to do when no master answers: said after every such error, here
/// and in `agora run`.
pub(crate) const UNREACHABLE_HINT: &str =
    "check that a master runs there and --master names it (--timeout waits longer)";

/// Why an operator command did not happen.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// No master answered within the timeout, or the address is invalid.
    Unreachable(String),
    /// The master answered, and said no (its status and message).
    Refused(String),
    /// The request is not one to send (e.g. a name that matches no single
    /// framework).
    Invalid(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(why) | Failure::Invalid(why) => f.write_str(why),
            Failure::Refused(why) => write!(f, "the master refused: {why}"),
        }
    }
}

/// The `scheme://host:port` a redirect from `current` points at (Mesos'
/// `Location` is protocol-relative, `//leader:5050/path`); the request
/// keeps its own path.
fn redirect_base(current: &str, headers: &reqwest::header::HeaderMap) -> Option<String> {
    let location = headers.get(reqwest::header::LOCATION)?.to_str().ok()?;
    let next = reqwest::Url::parse(current).ok()?.join(location).ok()?;
    let host = next.host_str()?;
    Some(match next.port() {
        Some(port) => format!("{}://{host}:{port}", next.scheme()),
        None => format!("{}://{host}", next.scheme()),
    })
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Unreachable(_) => ExitCode::from(2),
            Failure::Refused(_) | Failure::Invalid(_) => ExitCode::FAILURE,
        }
    }
}

/// The leading master's HTTP API, found again before every attempt.
pub(crate) struct Master {
    http: reqwest::Client,
    detector: Arc<dyn MasterDetector>,
    deadline: Instant,
    timeout: Duration,
    /// The master is reached over https (`--tls-ca`), verified against the CA.
    https: bool,
    /// HTTP Basic credentials sent with every request (`--principal`).
    authorization: Option<reqwest::header::HeaderValue>,
}

impl Master {
    pub(crate) fn new(opt: &MasterOpt) -> Result<Self, Failure> {
        let detector = agora_scheduler::master_detector(&opt.master)
            .map_err(|e| Failure::Unreachable(format!("invalid --master: {e}")))?;
        // reqwest is built with TLS but no crypto provider (see the fetcher):
        // install the process-wide one first (a second install is harmless).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = opt
            .tls
            .client()
            .map_err(|e| Failure::Invalid(crate::report::report(&e)))?;
        let builder = match &tls {
            Some(tls) => tls.reqwest_builder(),
            None => reqwest::Client::builder(),
        };
        let http = builder
            .timeout(REQUEST_TIMEOUT)
            // Followed by `send_following`: reqwest drops the credential
            // on a redirect to another host or port, which a follower's
            // 307 to its leader always is.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Failure::Unreachable(format!("cannot build an http client: {e}")))?;
        let timeout = Duration::from_secs(opt.timeout);
        Ok(Master {
            https: tls.is_some(),
            authorization: None,
            http,
            detector,
            deadline: Instant::now() + timeout,
            timeout,
        })
    }

    /// Sends `auth`'s credential, if any, with every request (HTTP Basic).
    pub(crate) fn with_credential(
        mut self,
        auth: &crate::auth_flags::ClientAuthArgs,
    ) -> Result<Self, Failure> {
        let credential = auth
            .credential()
            .map_err(|e| Failure::Invalid(crate::report::report(&e)))?;
        if let Some(credential) = credential {
            let mut value = reqwest::header::HeaderValue::from_str(
                &agora_auth::basic::header_value(&credential),
            )
            .map_err(|_| Failure::Invalid("the credential cannot be sent in a header".into()))?;
            value.set_sensitive(true);
            self.authorization = Some(value);
        }
        Ok(self)
    }

    /// `request` to `base`, following a follower's redirects to its
    /// leader (at most [`MAX_REDIRECTS`]) with the same credential: every
    /// master of the cluster is owed it, and with `--tls-ca` each hop is
    /// https and verified. The last answer is returned as it is.
    async fn send_following(
        &self,
        request: &impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        base: &str,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut target = base.to_string();
        let mut hops = 0;
        loop {
            let mut builder = request(&self.http, &target);
            if let Some(value) = &self.authorization {
                builder = builder.header(reqwest::header::AUTHORIZATION, value.clone());
            }
            let response = builder.send().await?;
            if !response.status().is_redirection() || hops == MAX_REDIRECTS {
                return Ok(response);
            }
            let Some(next) = redirect_base(&target, response.headers()) else {
                return Ok(response);
            };
            tracing::debug!(from = %target, to = %next, "following the master's redirect");
            target = crate::tls_flags::with_scheme(&next, self.https);
            hops += 1;
        }
    }

    /// One request to the leader. Retried until the deadline while it
    /// cannot have been acted on: no leader found, the connection refused,
    /// or a 503 (no leader elected, or the leader still recovering).
    async fn send(
        &self,
        request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, String), Failure> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut last = String::from("no attempt was made");
        loop {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Failure::Unreachable(format!(
                    "cannot reach the leading master at {} within {} s: {last}; {UNREACHABLE_HINT}",
                    self.detector,
                    self.timeout.as_secs()
                )));
            }
            match tokio::time::timeout(remaining, self.detector.detect()).await {
                Ok(Ok(base)) => {
                    let base = base.trim_end_matches('/').to_string();
                    // With --tls-ca every master is reached at https; an
                    // https master without it is refused, never tried
                    // against the system's trust store.
                    if base.starts_with("https://") && !self.https {
                        return Err(Failure::Invalid(format!(
                            "the master at {base} serves TLS: give --tls-ca (or AGORA_TLS_CA), the CA that signed its certificate"
                        )));
                    }
                    let base = crate::tls_flags::with_scheme(&base, self.https);
                    match self.send_following(&request, &base).await {
                        Ok(response) => {
                            let status = response.status();
                            let body = response.text().await.map_err(|e| {
                                Failure::Unreachable(format!(
                                    "the master at {base} did not finish its answer: {e}"
                                ))
                            })?;
                            if status != StatusCode::SERVICE_UNAVAILABLE {
                                return Ok((status, body));
                            }
                            last = format!("{base}: {status} {}", body.trim());
                        }
                        // A TLS refusal (wrong CA, wrong name) is final.
                        Err(e) if e.is_connect() && !tls_refused(&e) => {
                            last = format!("{base}: {}", crate::tls_flags::error_chain(&e));
                        }
                        Err(e) => {
                            return Err(Failure::Unreachable(format!(
                                "the request to {base} failed: {}",
                                crate::tls_flags::error_chain(&e)
                            )));
                        }
                    }
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "no leading master found".to_string(),
            }
            tracing::debug!(master = %self.detector, error = %last, "master not reached; retrying");
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff.next_delay().min(remaining)).await;
        }
    }

    /// An operator call whose success has no body (TEARDOWN, KILL_TASK).
    pub(crate) async fn call(&self, call: &Call) -> Result<(), Failure> {
        let body = encode(Media::Json, call);
        let (status, text) = self
            .send(|http, base| {
                http.post(format!("{base}/api/v1"))
                    .header(CONTENT_TYPE, Media::JSON)
                    .header(ACCEPT, Media::JSON)
                    .body(body.clone())
            })
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Refused(refusal(status, &text)))
        }
    }

    /// The master's `/state`.
    pub(crate) async fn state(&self) -> Result<Value, Failure> {
        let (status, text) = self
            .send(|http, base| http.get(format!("{base}/state")))
            .await?;
        if !status.is_success() {
            return Err(Failure::Refused(refusal(status, &text)));
        }
        serde_json::from_str(&text)
            .map_err(|e| Failure::Refused(format!("the master's /state is not JSON: {e}")))
    }
}

/// A refusal as the user sees it: the status, and the master's message.
fn refusal(status: StatusCode, body: &str) -> String {
    let message = body.trim();
    if message.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {message}")
    }
}

/// The reason `agora kill` gives when none is.
pub(crate) fn default_reason() -> String {
    format!(
        "killed with `agora kill` by {}",
        agora_scheduler::current_user()
    )
}

/// Agora's KILL_TASK call.
pub(crate) fn kill_call(task_id: &str, framework: Option<&str>, reason: &str) -> Call {
    Call {
        r#type: call::Type::KillTask as i32,
        kill_task: Some(call::KillTask {
            task_id: Some(pb::TaskId {
                value: task_id.to_string(),
            }),
            framework_id: framework.map(|id| pb::FrameworkId {
                value: id.to_string(),
            }),
            reason: Some(reason.to_string()),
        }),
        ..Default::default()
    }
}

/// Mesos' TEARDOWN call.
pub(crate) fn teardown_call(framework_id: &str) -> Call {
    Call {
        r#type: call::Type::Teardown as i32,
        teardown: Some(call::Teardown {
            framework_id: Some(pb::FrameworkId {
                value: framework_id.to_string(),
            }),
        }),
        ..Default::default()
    }
}

/// A framework of a `/state` document: its id and name.
fn id_and_name(framework: &Value) -> Option<(String, String)> {
    let id = framework.get("id")?.as_str()?.to_string();
    let name = framework
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((id, name))
}

fn listed(frameworks: &[(String, String)]) -> String {
    frameworks
        .iter()
        .map(|(id, name)| format!("{id} ({name})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The framework `wanted` names in a master's `/state`: the registered
/// framework with that id, else the one registered framework with that
/// name. Zero or several matches are an error that lists the candidates.
pub(crate) fn resolve_framework(state: &Value, wanted: &str) -> Result<(String, String), Failure> {
    let list = |key: &str| -> Vec<(String, String)> {
        state
            .get(key)
            .and_then(Value::as_array)
            .map(|all| all.iter().filter_map(id_and_name).collect())
            .unwrap_or_default()
    };
    let registered = list("frameworks");
    if let Some(found) = registered.iter().find(|(id, _)| id == wanted) {
        return Ok(found.clone());
    }
    let named: Vec<(String, String)> = registered
        .iter()
        .filter(|(_, name)| name == wanted)
        .cloned()
        .collect();
    match named.as_slice() {
        [one] => return Ok(one.clone()),
        [] => {}
        several => {
            return Err(Failure::Invalid(format!(
                "{} registered frameworks are named {wanted:?}: {}; name one by its id",
                several.len(),
                listed(several)
            )));
        }
    }
    let completed: Vec<(String, String)> = list("completed_frameworks")
        .into_iter()
        .filter(|(id, name)| id == wanted || name == wanted)
        .collect();
    if !completed.is_empty() {
        return Err(Failure::Invalid(format!(
            "no registered framework has the id or name {wanted:?}; completed already: {}",
            listed(&completed)
        )));
    }
    Err(Failure::Invalid(if registered.is_empty() {
        format!("no registered framework has the id or name {wanted:?}: there are none")
    } else {
        format!(
            "no registered framework has the id or name {wanted:?}; registered: {}",
            listed(&registered)
        )
    }))
}

fn finish(outcome: Result<String, Failure>) -> ExitCode {
    match outcome {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{}{failure}", crate::usage::PREFIX);
            failure.exit_code()
        }
    }
}

/// Runs `agora kill`; the outcome is on stdout/stderr and in the exit status.
pub(crate) async fn kill(args: KillArgs) -> anyhow::Result<ExitCode> {
    let reason = args.reason.clone().unwrap_or_else(default_reason);
    let outcome = async {
        let master = Master::new(&args.master)?.with_credential(&args.auth)?;
        master
            .call(&kill_call(
                &args.task_id,
                args.framework.as_deref(),
                &reason,
            ))
            .await?;
        Ok(format!(
            "task {}: kill sent ({reason}); it ends TASK_KILLED",
            args.task_id
        ))
    }
    .await;
    Ok(finish(outcome))
}

/// Runs `agora teardown`; the outcome is on stdout/stderr and in the exit status.
pub(crate) async fn teardown(args: TeardownArgs) -> anyhow::Result<ExitCode> {
    let outcome = async {
        let master = Master::new(&args.master)?.with_credential(&args.auth)?;
        let state = master.state().await?;
        let (id, name) = resolve_framework(&state, &args.framework)?;
        master.call(&teardown_call(&id)).await?;
        Ok(format!("framework {id} ({name}) torn down"))
    }
    .await;
    Ok(finish(outcome))
}

#[cfg(test)]
#[path = "operator_tests.rs"]
mod tests;
