//! The help `usage` adds and clap's errors on one line.

use super::*;
use crate::Cli;

fn refused(argv: &[&str]) -> String {
    let command = command::<Cli>();
    let args: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
    let path = command_path(&command, &args);
    let error = command.try_get_matches_from(argv).expect_err("refused");
    one_line(&error, &path)
}

#[test]
fn clap_errors_are_one_line_with_where_to_read_more() {
    let line = refused(&[
        "agora",
        "run",
        "--mastr",
        "m",
        "--name",
        "n",
        "--command",
        "c",
    ]);
    assert_eq!(
        line,
        "unexpected argument '--mastr' found (a similar argument exists: '--master'); see 'agora run --help'"
    );
    let line = refused(&["agora", "master", "--port", "x"]);
    assert_eq!(
        line,
        "invalid value 'x' for '--port <PORT>': invalid digit found in string; see 'agora master --help'"
    );
    let line = refused(&["agora", "run", "--master", "m"]);
    assert_eq!(
        line,
        "the following required arguments were not provided: --name <NAME>, --command <CMD>; see 'agora run --help'"
    );
    let line = refused(&["agora", "rnu"]);
    assert_eq!(line, "unrecognized subcommand 'rnu'; see 'agora --help'");
}

#[test]
fn mesos_underscore_spellings_work_for_every_flag() {
    let command = command::<Cli>();
    for sub in command.get_subcommands() {
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long.contains('-') {
                let underscored = long.replace('-', "_");
                let aliases = arg.get_visible_aliases().unwrap_or_default();
                assert!(
                    aliases.contains(&underscored.as_str()),
                    "agora {} --{long}: no visible --{underscored}",
                    sub.get_name()
                );
            }
        }
    }
    let matches = command
        .try_get_matches_from([
            "agora",
            "agent",
            "--master",
            "m",
            "--work_dir",
            "w",
            "--switch_user=false",
            "--log_format",
            "json",
        ])
        .expect("underscore spellings parse");
    let (_, agent) = matches.subcommand().expect("agent");
    assert_eq!(
        agent
            .get_one::<std::path::PathBuf>("work_dir")
            .map(|p| p.as_path()),
        Some(std::path::Path::new("w"))
    );
}

#[test]
fn every_flag_says_what_it_does_its_variable_and_its_default() {
    let command = command::<Cli>();
    let mut missing = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        for arg in sub.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") || arg.is_positional() {
                continue;
            }
            let what = format!(
                "agora {} --{}",
                sub.get_name(),
                arg.get_long().unwrap_or(id)
            );
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            if help.trim().is_empty() {
                missing.push(format!("{what} has no help"));
            }
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            if !env.starts_with("AGORA_") {
                missing.push(format!("{what} has no AGORA_* variable"));
            }
            // A default value clap shows, a switch (off unless given), a
            // required flag, or the help saying what happens without it.
            let says_default = !arg.get_default_values().is_empty()
                || matches!(
                    arg.get_action(),
                    clap::ArgAction::SetTrue | clap::ArgAction::Append
                )
                || arg.is_required_set()
                || ["default", "Unset", "unset", "when omitted", "without it"]
                    .iter()
                    .any(|word| help.contains(word));
            if !says_default {
                missing.push(format!("{what} does not say its default: {help}"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn each_subcommand_shows_its_own_log_default() {
    let mut command = command::<Cli>();
    for (name, default) in [
        ("master", "info"),
        ("agent", "info"),
        ("dev", "info"),
        ("run", "warn"),
        ("kill", "warn"),
        ("teardown", "warn"),
    ] {
        let sub = command.find_subcommand_mut(name).expect(name);
        let help = sub.render_long_help().to_string();
        assert!(
            help.contains(&format!("[default: {default}]")),
            "agora {name}: {help}"
        );
        assert!(!help.contains("warn for"), "agora {name}: {help}");
    }
    // Given before or after the subcommand, it is the one --log.
    for argv in [
        ["agora", "--log", "debug", "master"],
        ["agora", "master", "--log", "debug"],
    ] {
        let matches = command.clone().try_get_matches_from(argv).expect("parses");
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).expect("cli");
        assert_eq!(cli.log.as_deref(), Some("debug"), "{argv:?}");
    }
}
