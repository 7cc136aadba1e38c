//! Which program a `CommandInfo` runs, and with which arguments: for
//! command tasks, custom executors and command health checks alike.
//!
//! `shell: false` runs `value` with `arguments[1..]`, as Mesos does. With
//! `shell: true` (the default) Mesos runs `sh -c value`. Most commands are a
//! program and plain words (`sleep 3600`, `python3 job.py --n 4`), for which
//! the shell would only split on blanks, find the program on `PATH` and exec
//! it: those are exec'd directly, which saves an exec of `/bin/sh` per task.
//! Anything else goes through the shell exactly as before.
//!
//! *Invariant:* a command is only exec'd directly when `sh -c` would run the
//! same program with the same argument vector (argv\[0\] included) in the
//! same environment: every character is one the shell gives no meaning to,
//! the first word is not a shell keyword, builtin or assignment, and the
//! program is found on an absolute `PATH` (a relative or empty `PATH` entry,
//! or a program that is not found, is left to the shell, whose error and
//! exit code 127 the framework then sees).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use agora_proto::v1 as pb;

/// The shell Mesos runs commands with.
pub(crate) const SHELL: &str = "/bin/sh";

/// What to execute: the file, argv\[0\], and the arguments after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Program {
    pub(crate) file: PathBuf,
    pub(crate) arg0: OsString,
    pub(crate) args: Vec<String>,
}

impl Program {
    /// A `std` command for this program (arguments only; the caller sets
    /// the rest).
    pub(crate) fn std_command(&self) -> std::process::Command {
        use std::os::unix::process::CommandExt as _;
        let mut command = std::process::Command::new(&self.file);
        command.arg0(&self.arg0).args(&self.args);
        command
    }

    /// The same for tokio.
    pub(crate) fn tokio_command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.file);
        command.arg0(&self.arg0).args(&self.args);
        command
    }
}

/// The program `command` runs; `path` is the `PATH` its process will see.
pub(crate) fn program(command: &pb::CommandInfo, path: Option<&OsStr>) -> Program {
    let value = command.value.clone().unwrap_or_default();
    if !command.shell.unwrap_or(true) {
        return Program {
            file: PathBuf::from(&value),
            arg0: command
                .arguments
                .first()
                .map_or_else(|| OsString::from(&value), OsString::from),
            args: command.arguments.iter().skip(1).cloned().collect(),
        };
    }
    if let Some(words) = plain_words(&value)
        && let Some(file) = resolve(words[0], path)
    {
        return Program {
            file,
            arg0: OsString::from(words[0]),
            args: words[1..].iter().map(|w| (*w).to_string()).collect(),
        };
    }
    Program {
        file: PathBuf::from(SHELL),
        arg0: OsString::from("sh"),
        args: vec!["-c".into(), value],
    }
}

/// The `PATH` a process started with `vars` on top of this one's
/// environment sees.
pub(crate) fn path_of(vars: &std::collections::BTreeMap<String, String>) -> Option<OsString> {
    vars.get("PATH")
        .map(OsString::from)
        .or_else(|| std::env::var_os("PATH"))
}

/// Characters the shell gives no meaning to (outside the first word, `=`
/// is plain too).
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | ',' | ':' | '+' | '@' | '%' | '-')
}

/// Words the shell would run differently from a program of that name.
const SHELL_WORDS: &[&str] = &[
    // keywords
    "case", "do", "done", "elif", "else", "esac", "fi", "for", "function", "if", "in", "select",
    "then", "time", "until", "while", // builtins (dash's and bash's)
    ".", "alias", "bg", "bind", "break", "builtin", "cd", "command", "continue", "declare", "echo",
    "enable", "eval", "exec", "exit", "export", "false", "fc", "fg", "getopts", "hash", "help",
    "history", "jobs", "kill", "let", "local", "logout", "printf", "pwd", "read", "readonly",
    "return", "set", "shift", "source", "test", "times", "trap", "true", "type", "typeset",
    "ulimit", "umask", "unalias", "unset", "wait",
];

/// The words of `value` when it is a program and plain words separated by
/// blanks; `None` when the shell would do anything more than split it.
fn plain_words(value: &str) -> Option<Vec<&str>> {
    let words: Vec<&str> = value.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let first = *words.first()?;
    let plain = words
        .iter()
        .enumerate()
        .all(|(i, w)| w.chars().all(|c| is_plain(c) || (i > 0 && c == '=')));
    if !plain || SHELL_WORDS.contains(&first) {
        return None;
    }
    Some(words)
}

/// Where the shell would find `word`: itself when it holds a `/`, else the
/// first executable file of that name on `PATH`. `None` when it is not
/// found or `PATH` has an entry that depends on the working directory.
fn resolve(word: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if word.contains('/') {
        let file = PathBuf::from(word);
        return is_executable(&file).then_some(file);
    }
    let path = path?;
    let dirs: Vec<&Path> = path
        .as_bytes()
        .split(|b| *b == b':')
        .map(|dir| Path::new(OsStr::from_bytes(dir)))
        .collect();
    if dirs.iter().any(|dir| !dir.is_absolute()) {
        return None;
    }
    dirs.iter()
        .map(|dir| dir.join(word))
        .find(|file| is_executable(file))
}

fn is_executable(file: &Path) -> bool {
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests;
