//! `agora`: one binary for every role. Thin: parses flags, sets up logging,
//! and hands over to the crates that do the work.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{FromArgMatches as _, Parser, Subcommand, ValueEnum};

mod acl_flags;
mod auth_flags;
mod container_flags;
mod daemons;
mod executor_auth_flags;
mod operator;
mod report;
mod run;
mod tls_flags;
mod usage;

#[derive(Parser, Debug)]
#[command(
    name = "agora",
    version,
    about = "Agora: a cluster manager in the family of Apache Mesos",
    after_help = "Every flag can also be set with its AGORA_* environment variable (shown \
                  under each flag), and Mesos' underscore spellings work for every flag: \
                  --work_dir for --work-dir, --switch_user=false for --switch-user=false.\n\
                  'agora <COMMAND> --help' lists a command's flags with their defaults."
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
    /// Log filter, e.g. `info` or `agora_master=debug` (where Mesos' --logging_level takes INFO or WARNING, use info or warn).
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
    /// Run a master and agents on this machine in one command (web UI on :5050, or --port).
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
    /// The per-agent process that hosts the agent's command executors; not for direct use.
    #[command(hide = true)]
    Supervisor(SupervisorArgs),
}

#[derive(Debug, clap::Args)]
struct SupervisorArgs {
    /// Host the executors (started by the keeper, which the agent starts).
    #[arg(long)]
    worker: bool,
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

/// The command line, or the exit status when there is nothing to run: help
/// or the version printed (0), or a command line clap refused, told on one
/// line (2, as clap's own).
fn parse() -> Result<Cli, ExitCode> {
    let command = usage::command::<Cli>();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let path = usage::command_path(&command, &args);
    let refused = |e: clap::Error| -> ExitCode {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
            }
            _ => eprintln!("{}{}", usage::PREFIX, usage::one_line(&e, &path)),
        }
        ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
    };
    let matches = command.try_get_matches_from(&args).map_err(refused)?;
    Cli::from_arg_matches(&matches).map_err(refused)
}

/// The name of the subcommand, as `usage::default_log` knows it.
fn subcommand_name(command: &Commands) -> &'static str {
    match command {
        Commands::Master(_) => "master",
        Commands::Agent(_) => "agent",
        Commands::Dev(_) => "dev",
        Commands::Run(_) => "run",
        Commands::Kill(_) => "kill",
        Commands::Teardown(_) => "teardown",
        Commands::Executor => "executor",
        Commands::Supervisor(_) => "supervisor",
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // `agora run` prints task states on stdout; its logs stay quiet unless asked for.
    let default_log = usage::default_log(subcommand_name(&cli.command));
    if let Err(e) = init_logging(cli.log_format, cli.log.as_deref().unwrap_or(default_log)) {
        eprintln!("{}{}", usage::PREFIX, report::report(&e));
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
    // The supervisor's keeper is single-threaded and starts processes:
    // it runs before any runtime (`agora_agent::host::keeper`).
    if let Commands::Supervisor(SupervisorArgs { worker: false }) = cli.command {
        let code = agora_agent::host::keeper::run_keeper();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
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
            eprintln!("{}cannot start the runtime: {e}", usage::PREFIX);
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
            Commands::Supervisor(_) => {
                let env = agora_agent::host::SupervisorEnv::from_env()?;
                agora_agent::host::run_supervisor(env).await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}{}", usage::PREFIX, report::report(&e));
            ExitCode::FAILURE
        }
    }
}
