//! What `--help` shows and how a command line clap refuses is told.
//!
//! Help: every flag also answers to its Mesos spelling (underscores:
//! `--work_dir` for `--work-dir`), shown beside it; `--log` shows the default
//! of the subcommand it is read under. Errors: clap's own (an unknown flag, a
//! bad value, a missing one) are told as every other error of `agora` is, on
//! one line with the `agora: ` prefix, ending with where to read more.

use clap::{Arg, Command, CommandFactory};

/// The prefix of every error `agora` prints.
pub(crate) const PREFIX: &str = "agora: ";

/// Subcommands that print results on stdout and keep their logs quiet.
const QUIET_LOGS: [&str; 3] = ["run", "kill", "teardown"];

/// The `--log` filter a subcommand uses when none is given.
pub(crate) fn default_log(subcommand: &str) -> &'static str {
    if QUIET_LOGS.contains(&subcommand) {
        "warn"
    } else {
        "info"
    }
}

/// `C`'s command line with the help this module adds.
pub(crate) fn command<C: CommandFactory>() -> Command {
    let top = C::command();
    // The global --log, re-declared in each subcommand with that one's
    // default in its help (clap does not propagate a global flag over one a
    // subcommand declares itself, and still reads it as the global).
    let global = |id: &str| {
        top.get_arguments()
            .find(|a| a.get_id() == id)
            .cloned()
            .unwrap_or_else(|| panic!("the top-level command declares {id}"))
    };
    // Listed last in each subcommand's help, after its own flags.
    let (log, log_format) = (
        global("log").display_order(1001),
        global("log_format").display_order(1000),
    );
    let log_help = log.get_help().map(ToString::to_string).unwrap_or_default();
    let quiet = QUIET_LOGS.join(", ");
    top.mut_arg("log", |arg| {
        arg.help(format!("{log_help} [default: info; warn for {quiet}]"))
    })
    .mut_subcommands(|sub| {
        let default = default_log(sub.get_name());
        sub.arg(log_format.clone())
            .arg(log.clone().help(format!("{log_help} [default: {default}]")))
    })
    .mut_args(mesos_spellings)
    .mut_subcommands(|sub| sub.mut_args(mesos_spellings))
}

/// `arg` with its underscore spelling (Mesos') as an alias, and every
/// alias shown in the help.
fn mesos_spellings(arg: Arg) -> Arg {
    let Some(long) = arg.get_long() else {
        return arg;
    };
    let mut aliases: Vec<String> = arg
        .get_all_aliases()
        .unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let underscored = long.replace('-', "_");
    if underscored != long && !aliases.contains(&underscored) {
        aliases.insert(0, underscored);
    }
    if aliases.is_empty() {
        return arg;
    }
    // clap takes only `&'static str` names (without its `string` feature):
    // a few dozen short names, made once per process.
    let aliases = aliases
        .into_iter()
        .map(|alias| &*Box::leak(alias.into_boxed_str()));
    arg.alias(None).visible_aliases(aliases)
}

/// One line for a command line clap refused: its message, the missing
/// arguments or tips it lists, and which `--help` to read (`path`: `agora`,
/// or `agora run` when the command line names that subcommand).
pub(crate) fn one_line(error: &clap::Error, path: &str) -> String {
    let text = error.render().to_string();
    let head = text.split("\nUsage:").next().unwrap_or_default();
    let mut lines = head
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("For more information"));
    let first = lines.next().unwrap_or("invalid command line");
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    let (tips, listed): (Vec<&str>, Vec<&str>) = lines.partition(|l| l.starts_with("tip: "));
    if !listed.is_empty() {
        line.push_str(if line.ends_with(':') { " " } else { ": " });
        line.push_str(&listed.join(", "));
    }
    for tip in tips {
        line.push_str(&format!(" ({})", tip.trim_start_matches("tip: ")));
    }
    format!("{line}; see '{path} --help'")
}

/// `agora SUBCOMMAND` for the first argument that names one of `command`'s
/// subcommands, else `agora`.
pub(crate) fn command_path(command: &Command, args: &[std::ffi::OsString]) -> String {
    let named = args
        .iter()
        .skip(1)
        .filter_map(|arg| arg.to_str())
        .find(|arg| command.get_subcommands().any(|sub| sub.get_name() == *arg));
    match named {
        Some(sub) => format!("agora {sub}"),
        None => "agora".to_owned(),
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
