//! The probes: one check of a task, bounded by the check's timeout.

use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{Probe, ProbeContext, ProbeKind};

/// At most this much of a command check's stderr is kept for the message.
const STDERR_KEPT: usize = 512;
/// The HTTP checks' `User-Agent`.
const USER_AGENT: &str = "agora-health-check";

/// Runs one check, bounded by its timeout. `Ok` is healthy; `Err` says why
/// not.
pub async fn probe(probe: &Probe, ctx: &ProbeContext) -> Result<(), String> {
    let timed_out = || format!("timed out after {}s", probe.timeout.as_secs_f64());
    match &probe.kind {
        ProbeKind::Command {
            shell,
            value,
            arguments,
            env,
        } => command_probe(*shell, value, arguments, env, ctx, probe.timeout).await,
        ProbeKind::Http {
            port,
            path,
            statuses,
        } => tokio::time::timeout(probe.timeout, http_probe(*port, path, statuses))
            .await
            .unwrap_or_else(|_| Err(timed_out())),
        ProbeKind::Tcp { port } => {
            match tokio::time::timeout(probe.timeout, TcpStream::connect(("127.0.0.1", *port)))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("cannot connect to 127.0.0.1:{port}: {e}")),
                Err(_) => Err(timed_out()),
            }
        }
    }
}

/// The HTTP checks' client: built once per process (an executor runs one
/// task's checker) and shared by every probe. Plain HTTP/1.1 to 127.0.0.1:
/// no proxy from the environment, no redirect followed (a 3xx is an
/// answer), no pooled connection (each probe connects afresh and asks the
/// server to close, as a fresh client would).
fn http_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest's rustls backend is compiled in (the fetcher's HTTPS)
            // and wants a process-wide crypto provider even for plain HTTP:
            // the same ring provider everything else here uses. Installing
            // it twice, or after another one, is harmless.
            let _ = Arc::unwrap_or_clone(agora_tls::provider()).install_default();
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .http1_only()
                .http1_title_case_headers()
                .build()
                .map_err(|e| format!("cannot build the http client: {}", cause_of(&e)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

async fn http_probe(port: u16, path: &str, statuses: &[u16]) -> Result<(), String> {
    let client = http_client()?;
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}{path}"))
        .map_err(|e| format!("invalid http health check path {path:?}: {e}"))?;
    let response = client
        .get(url)
        .header(reqwest::header::CONNECTION, "close")
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                format!("cannot connect to 127.0.0.1:{port}: {}", cause_of(&e))
            } else {
                format!("no http response from 127.0.0.1:{port}: {}", cause_of(&e))
            }
        })?;
    let status = response.status().as_u16();
    let healthy = if statuses.is_empty() {
        (200..400).contains(&status)
    } else {
        statuses.contains(&status)
    };
    if healthy {
        Ok(())
    } else {
        Err(format!("GET {path} answered http status {status}"))
    }
}

/// The innermost error of `e`'s chain: where the useful words are
/// (`Connection refused`, a malformed status line).
fn cause_of(e: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    innermost.to_string()
}

async fn command_probe(
    shell: bool,
    value: &str,
    arguments: &[String],
    env: &[(String, String)],
    ctx: &ProbeContext,
    timeout: Duration,
) -> Result<(), String> {
    // The same rule as the task's own command: plain commands without a
    // shell, anything else through `sh -c`.
    let info = agora_proto::v1::CommandInfo {
        shell: Some(shell),
        value: Some(value.to_string()),
        arguments: arguments.to_vec(),
        ..Default::default()
    };
    // The value set last wins, as in the command's environment below.
    let path = ctx
        .env
        .iter()
        .chain(env.iter())
        .rev()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| std::ffi::OsString::from(value))
        .or_else(|| std::env::var_os("PATH"));
    let mut command = crate::program::program(&info, path.as_deref()).tokio_command();
    for name in ctx.private_env {
        command.env_remove(name);
    }
    command
        .current_dir(&ctx.sandbox)
        .envs(ctx.env.iter().cloned())
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = ctx.uid_gid {
        command.uid(uid).gid(gid);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the health check command: {e}"))?;
    let pgid = child.id();
    let mut stderr = child.stderr.take();
    let run = async {
        let mut kept = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            // Keep the head for the message; drain the rest so a chatty
            // check never blocks on a full pipe.
            let mut buf = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        (child.wait().await, kept)
    };
    let finished = tokio::time::timeout(timeout, run).await;
    match finished {
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), stderr)) => {
            let what = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => format!("health check command exited with status {code}"),
                (None, Some(signal)) => format!("health check command killed by signal {signal}"),
                (None, None) => "health check command ended in an unknown way".to_owned(),
            };
            let stderr = String::from_utf8_lossy(&stderr);
            let stderr = stderr.trim();
            if stderr.is_empty() {
                Err(what)
            } else {
                Err(format!("{what}: {stderr}"))
            }
        }
        Ok((Err(e), _)) => Err(format!("cannot wait for the health check command: {e}")),
        Err(_) => {
            // The group leader is not reaped yet, so its id still names
            // this group: kill everything the check started, then reap.
            kill_group(pgid);
            if let Err(e) = child.kill().await {
                tracing::debug!(error = %e, "reaping the timed-out health check failed");
            }
            Err(format!("timed out after {}s", timeout.as_secs_f64()))
        }
    }
}

fn kill_group(pgid: Option<u32>) {
    let Some(pid) = pgid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, Signal::KILL) {
        tracing::debug!(error = %e, "killing the health check's process group failed");
    }
}
