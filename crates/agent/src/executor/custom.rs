//! A framework's own executor (`TaskInfo.executor`, as Spark's). The agent
//! starts `agora executor` for it too, which joins the container, fetches
//! the executor's URIs, and then *becomes* the framework's program (exec):
//! the program runs in the container, as the task user, with the endpoint
//! and ids it needs to subscribe to the agent in its environment. Nothing
//! of Agora's keeps running beside it.
//!
//! *Invariant:* the program never runs before the agent has recorded this
//! process (its pid, in the checkpoint, on disk). An agent that stops in
//! between would not know of it after its restart: with no cgroup to find
//! it by (posix isolation) the program would live on, unknown, until its
//! own recovery timeout. So `agora executor` waits at a *start gate*
//! first: the agent's end of a socket pair on its standard input, where
//! the agent writes [`GATE_OPEN`] once the record is written. If the agent
//! stops first, or closes the gate because the record failed, the read
//! ends without it and the executor exits having run nothing of the
//! framework's, fetched nothing, joined nothing.

use std::os::unix::process::CommandExt;

use agora_proto::v1 as pb;

use super::{ENV_AGENT_ENDPOINT, ExecutorEnv, ExecutorError, prepare};
use crate::containers::launch_failure_path;
use crate::launch::{ENV_LAUNCH, LaunchConfig, LaunchFailure};

/// Set by the agent (to [`GATE_ON_STDIN`]) when the executor's standard
/// input is its start gate.
pub(crate) const ENV_START_GATE: &str = "AGORA_EXECUTOR_START_GATE";
/// The only value [`ENV_START_GATE`] takes.
pub(crate) const GATE_ON_STDIN: &str = "stdin";
/// What the agent writes to open the gate.
pub(crate) const GATE_OPEN: u8 = b'1';

/// Waits until the agent opens the start gate on standard input (see the
/// module docs). Blocking: nothing else runs in this process yet.
fn wait_at_start_gate() -> Result<(), String> {
    use std::io::Read;
    let mut byte = [0u8; 1];
    match std::io::stdin().lock().read_exact(&mut byte) {
        Ok(()) if byte[0] == GATE_OPEN => Ok(()),
        Ok(()) => Err(format!("unexpected byte {} at the start gate", byte[0])),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(
            "the agent stopped, or gave up this run, before it recorded the executor's start"
                .into(),
        ),
        Err(e) => Err(format!("cannot read the start gate: {e}")),
    }
}

/// What Mesos tells an executor about its agent's recovery rules, for
/// executor libraries written for Mesos (`MesosExecutorDriver`s read them).
/// Agora's agents always checkpoint: an executor survives an agent restart
/// and must wait for the agent to come back rather than exit.
fn mesos_executor_environment() -> [(&'static str, String); 4] {
    use agora_core::time::mesos_duration;
    [
        ("MESOS_CHECKPOINT", "1".into()),
        (
            "MESOS_RECOVERY_TIMEOUT",
            mesos_duration(super::RECOVERY_TIMEOUT),
        ),
        ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs".into()),
        (
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
            mesos_duration(crate::state::EXECUTOR_SHUTDOWN_GRACE),
        ),
    ]
}

/// Only returns when the program could not be started.
pub(crate) async fn become_custom_executor(
    env: &ExecutorEnv,
    config: &LaunchConfig,
    command: pb::CommandInfo,
) -> ExecutorError {
    let fail = |fetcher: bool, message: String| {
        tracing::error!(error = %message, "cannot start the custom executor");
        let failure = LaunchFailure {
            fetcher,
            message: message.clone(),
        };
        if let Ok(text) = serde_json::to_string(&failure) {
            let _ = std::fs::write(launch_failure_path(&env.sandbox), text);
        }
        ExecutorError::Launch(message)
    };
    if std::env::var(ENV_START_GATE).is_ok_and(|gate| gate == GATE_ON_STDIN)
        && let Err(message) = wait_at_start_gate()
    {
        // Nobody may be there to read a launch failure: just exit.
        tracing::warn!(error = %message, "not starting the custom executor");
        return ExecutorError::Launch(message);
    }
    match prepare::open_container(config.cgroups.as_ref(), &env.isolators) {
        Ok(Some(container)) => {
            if let Err(e) = container.add_process(std::process::id()) {
                return fail(false, format!("cannot join the container: {e}"));
            }
        }
        Ok(None) => {}
        Err(message) => return fail(false, message),
    }
    if let Err(message) = prepare::fetch(&env.sandbox, &command, config).await {
        return fail(true, message);
    }
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(env.sandbox.join(name))
    };
    let (stdout, stderr) = match (open("stdout"), open("stderr")) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => {
            return fail(
                false,
                format!("cannot open the sandbox's output files: {e}"),
            );
        }
    };
    let value = command.value.clone().unwrap_or_default();
    let vars = prepare::environment(env, config, &command, None);
    let mut program =
        crate::program::program(&command, crate::program::path_of(&vars).as_deref()).std_command();
    let endpoint = env
        .agent_endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string();
    program
        .current_dir(&env.sandbox)
        .env_remove(ENV_LAUNCH)
        .env_remove(super::local::ENV_AGENT_CONNECTION)
        .env_remove(ENV_START_GATE)
        .envs(vars)
        .env(ENV_AGENT_ENDPOINT, &env.agent_endpoint)
        .env("MESOS_AGENT_ENDPOINT", endpoint)
        .envs(mesos_executor_environment())
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(user) = &config.user {
        // std drops supplementary groups (setgroups) when it sets the uid.
        program.uid(user.uid).gid(user.gid);
    }
    let error = program.exec();
    fail(
        false,
        format!("cannot start the executor program '{value}': {error}"),
    )
}

#[cfg(test)]
mod tests {
    use agora_core::time::parse_mesos_duration;

    /// Mesos' executor libraries read these as Mesos writes durations:
    /// each reads back to the agent's own setting.
    #[test]
    fn the_executors_recovery_durations_read_back_as_mesos_reads_them() {
        let env: std::collections::HashMap<_, _> =
            super::mesos_executor_environment().into_iter().collect();
        assert_eq!(
            parse_mesos_duration(&env["MESOS_RECOVERY_TIMEOUT"]),
            Ok(super::super::RECOVERY_TIMEOUT)
        );
        assert_eq!(
            parse_mesos_duration(&env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"]),
            Ok(crate::state::EXECUTOR_SHUTDOWN_GRACE)
        );
        assert_eq!(env["MESOS_CHECKPOINT"], "1");
    }
}
