use std::ffi::OsStr;

use proptest::prelude::*;

use super::*;

fn shell_command(value: &str) -> pb::CommandInfo {
    pb::CommandInfo {
        value: Some(value.into()),
        ..Default::default()
    }
}

/// A PATH with only the system's directories.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn run(value: &str) -> Program {
    program(&shell_command(value), Some(OsStr::new(PATH)))
}

fn is_shell(program: &Program, value: &str) -> bool {
    program.file == Path::new(SHELL) && program.args == ["-c", value]
}

#[test]
fn a_program_with_plain_words_is_executed_without_a_shell() {
    let program = run("sleep  3600\t--x=1");
    assert!(program.file.is_absolute(), "{program:?}");
    assert_eq!(program.file.file_name(), Some(OsStr::new("sleep")));
    assert_eq!(program.arg0, "sleep");
    assert_eq!(program.args, ["3600", "--x=1"]);

    let program = run("/bin/sleep 1");
    assert_eq!(program.file, Path::new("/bin/sleep"));
    assert_eq!(program.arg0, "/bin/sleep");
}

#[test]
fn anything_the_shell_would_interpret_goes_through_the_shell() {
    for value in [
        "",
        "   ",
        "echo hi",
        "true",
        "exit 3",
        "cd /tmp",
        "FOO=1 sleep 1",
        "sleep 1 > out",
        "sleep 1; sleep 2",
        "sleep $N",
        "sleep `echo 1`",
        "ls *",
        "ls ~/x",
        "sleep '1'",
        "sleep \"1\"",
        "sleep 1 &",
        "sleep 1 # comment",
        "sleep 1\nsleep 2",
        "sleep\\ 1",
        "[ -e x ]",
        "{ sleep 1; }",
        "no-such-program-anywhere 1",
        "./local-script",
    ] {
        assert!(is_shell(&run(value), value), "{value:?}: {:?}", run(value));
    }
}

#[test]
fn a_path_that_depends_on_the_working_directory_is_left_to_the_shell() {
    for path in [
        "",
        ":/usr/bin:/bin",
        "/usr/bin::/bin",
        "bin:/usr/bin",
        "/usr/bin:.",
    ] {
        let program = program(&shell_command("sleep 1"), Some(OsStr::new(path)));
        assert!(is_shell(&program, "sleep 1"), "PATH={path:?}: {program:?}");
    }
    let program = program(&shell_command("sleep 1"), None);
    assert!(is_shell(&program, "sleep 1"), "no PATH: {program:?}");
}

#[test]
fn shell_false_runs_value_with_the_arguments_as_argv() {
    let command = pb::CommandInfo {
        shell: Some(false),
        value: Some("/bin/echo".into()),
        arguments: vec!["echo-name".into(), "a b".into(), "$c".into()],
        ..Default::default()
    };
    let program = program(&command, Some(OsStr::new(PATH)));
    assert_eq!(program.file, Path::new("/bin/echo"));
    assert_eq!(program.arg0, "echo-name");
    assert_eq!(program.args, ["a b", "$c"]);
}

/// What `sh` makes of `value`'s words (field splitting, no globbing needed:
/// plain words have no pattern characters).
fn shell_words(value: &str) -> Vec<String> {
    let output = std::process::Command::new(SHELL)
        .arg("-c")
        .arg(format!("set -- {value}; printf '%s\\0' \"$@\""))
        .output()
        .expect("run sh");
    assert!(output.status.success(), "sh failed on {value:?}");
    output
        .stdout
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A command with any character the shell interprets is never plain.
    #[test]
    fn shell_syntax_is_never_plain(
        value in "[a-z =.]{0,8}['\"$*;&|<>(){}~#\\\n!?\\[\\]`][a-z0-9 \t=%@:,+./_'\"$*;&|<>(){}~#\\-]{0,16}",
    ) {
        prop_assert_eq!(plain_words(&value), None);
    }

    /// Whenever a command counts as plain, the shell splits it into the
    /// same words.
    #[test]
    fn plain_words_are_the_shells_words(
        value in "[ \t]{0,2}[a-z][a-z0-9 \t=%@:,+./_-]{0,24}",
    ) {
        if let Some(words) = plain_words(&value) {
            prop_assert!(!words[0].contains('='));
            prop_assert_eq!(words, shell_words(&value));
        }
    }
}
