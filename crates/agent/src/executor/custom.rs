//! A framework's own executor (`TaskInfo.executor`, as Spark's). The agent
//! starts `agora executor` for it too, which joins the container, fetches
//! the executor's URIs, and then *becomes* the framework's program (exec):
//! the program runs in the container, as the task user, with the endpoint
//! and ids it needs to subscribe to the agent in its environment. Nothing
//! of Agora's keeps running beside it.

use std::os::unix::process::CommandExt;

use agora_proto::v1 as pb;

use super::{ENV_AGENT_ENDPOINT, ExecutorEnv, ExecutorError, prepare};
use crate::containers::launch_failure_path;
use crate::launch::{ENV_LAUNCH, LaunchConfig, LaunchFailure};

/// What Mesos tells an executor about its agent's recovery rules, for
/// executor libraries written for Mesos (`MesosExecutorDriver`s read them).
/// Agora's agents always checkpoint: an executor survives an agent restart
/// and must wait for the agent to come back rather than exit.
fn mesos_executor_environment() -> [(&'static str, String); 4] {
    let secs = |d: std::time::Duration| format!("{}secs", d.as_secs());
    [
        ("MESOS_CHECKPOINT", "1".into()),
        ("MESOS_RECOVERY_TIMEOUT", secs(super::RECOVERY_TIMEOUT)),
        ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs".into()),
        (
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
            secs(crate::state::EXECUTOR_SHUTDOWN_GRACE),
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
