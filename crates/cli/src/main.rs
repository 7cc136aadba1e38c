//! `agora`: one binary for every role. Thin: parses flags, sets up logging,
//! and hands over to the crates that do the work.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

mod acl_flags;
mod auth_flags;
mod container_flags;
mod daemons;
mod executor_auth_flags;
mod operator;
mod report;
mod run;
mod tls_flags;

#[derive(Parser, Debug)]
#[command(
    name = "agora",
    version,
    about = "Agora: a cluster manager in the family of Apache Mesos"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "AGORA_LOG_FORMAT",
        alias = "log_format"
    )]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `agora_master=debug` [default: info; warn for `run`, `kill` and `teardown`].
    #[arg(long, global = true, env = "AGORA_LOG", alias = "logging_level")]
    log: Option<String>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Run a master: keeps the books of agents' resources and offers them to frameworks.
    Master(daemons::MasterArgs),
    /// Run an agent: registers with the master and runs tasks.
    Agent(daemons::AgentArgs),
    /// Run a master and agents on this machine in one command (web UI on :5050).
    Dev(daemons::DevArgs),
    /// Run a command as one or more tasks on the cluster, like mesos-execute.
    Run(run::RunArgs),
    /// Kill one task through the master, on the operator's authority.
    Kill(operator::KillArgs),
    /// Tear a framework down through the master: it is removed and its tasks are killed.
    Teardown(operator::TeardownArgs),
    /// The per-task supervisor the agent starts; not for direct use.
    #[command(hide = true)]
    Executor,
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    // Colour codes only for a person at a terminal: a redirected stderr is a
    // log file (systemd, `2>agent.log`), where escape codes are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `agora run` prints task states on stdout; its logs stay quiet unless asked for.
    let default_log = match cli.command {
        Commands::Run(_) | Commands::Kill(_) | Commands::Teardown(_) => "warn",
        _ => "info",
    };
    if let Err(e) = init_logging(cli.log_format, cli.log.as_deref().unwrap_or(default_log)) {
        eprintln!("agora: {}", report::report(&e));
        return ExitCode::from(2);
    }
    // Daemons hold a descriptor per connection: the default soft limit
    // (often 1024) would run out long before the hard limit does.
    if matches!(
        cli.command,
        Commands::Master(_) | Commands::Agent(_) | Commands::Dev(_)
    ) {
        match agora_net::raise_fd_limit() {
            Ok(limit) => tracing::debug!(
                fd_limit = limit,
                "descriptor limit raised to the hard limit"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit"),
        }
    }
    // An executor is started per task and supervises one process: a
    // single-threaded runtime spares it the worker threads' start-up on the
    // launch path. The daemons and `agora run` use all cores.
    let mut builder = match cli.command {
        Commands::Executor => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("agora: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Commands::Master(args) => daemons::master(args).await.map(|()| ExitCode::SUCCESS),
            Commands::Agent(args) => daemons::agent(args).await.map(|()| ExitCode::SUCCESS),
            Commands::Dev(args) => daemons::dev(args).await.map(|()| ExitCode::SUCCESS),
            Commands::Run(args) => run::run(args).await,
            Commands::Kill(args) => operator::kill(args).await,
            Commands::Teardown(args) => operator::teardown(args).await,
            Commands::Executor => {
                let env = agora_agent::executor::ExecutorEnv::from_env()?;
                agora_agent::executor::run_executor(env).await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agora: {}", report::report(&e));
            ExitCode::FAILURE
        }
    }
}
