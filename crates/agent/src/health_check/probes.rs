//! The probes: one check of a task, bounded by the check's timeout.

use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use super::{Probe, ProbeContext, ProbeKind};

/// At most this much of a command check's stderr is kept for the message.
const STDERR_KEPT: usize = 512;
/// At most this much of an HTTP response is read looking for the status line.
const STATUS_LINE_MAX: usize = 4096;

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

async fn http_probe(port: u16, path: &str, statuses: &[u16]) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: agora-health-check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request to 127.0.0.1:{port}: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    let line_end = loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            break end;
        }
        if head.len() >= STATUS_LINE_MAX {
            return Err("no http status line in the response".to_owned());
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read the response from 127.0.0.1:{port}: {e}"))?;
        if n == 0 {
            return Err("connection closed before an http status line".to_owned());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let status = parse_status_line(&head[..line_end])?;
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

/// The status code of `HTTP/1.x NNN reason`.
pub(super) fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split(' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return Err(format!("malformed http status line {text:?}"));
    }
    code.parse()
        .map_err(|_| format!("malformed http status line {text:?}"))
}

async fn command_probe(
    shell: bool,
    value: &str,
    arguments: &[String],
    env: &[(String, String)],
    ctx: &ProbeContext,
    timeout: Duration,
) -> Result<(), String> {
    let mut command = if shell {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(value);
        c
    } else {
        let mut c = Command::new(value);
        c.args(arguments.iter().skip(1));
        c
    };
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
