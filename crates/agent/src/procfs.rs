//! What the agent reads of `/proc`: the boot id (a reboot discards the
//! checkpoint), a process's start time (a pid with another start time is
//! not ours), and the members of an executor's session (killed with it).
//! Blocking reads: never on the actor's loop (workers, the exit watchers,
//! or start-up before the loop runs).

use std::path::PathBuf;

/// The id of the current boot. `AGORA_TEST_BOOT_ID_FILE` (for tests only:
/// it lets a test simulate a reboot) names a file to read it from instead
/// of `/proc/sys/kernel/random/boot_id`.
pub(crate) fn current_boot_id() -> std::io::Result<String> {
    let path = std::env::var_os("AGORA_TEST_BOOT_ID_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/sys/kernel/random/boot_id"));
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot),
/// or `None` when there is no such live process (zombies count as dead).
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state).
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(22 - 4)?.parse().ok()
}

/// The pids of the processes in session `sid` (field 6 of
/// `/proc/<pid>/stat`), found by one scan of `/proc`.
pub(crate) fn session_members(sid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| session_of(pid) == Some(sid))
        .collect()
}

/// The session id of `pid` as `/proc` shows it. Inside a pid namespace whose
/// session leader lives outside it, this is 0, as `getsid` would say.
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 3 (state), 4 (ppid), 5 (pgrp), 6 (session).
    rest.split_whitespace().nth(3)?.parse::<u32>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_of_this_process_is_readable() {
        let me = std::process::id();
        let first = process_start_time(me).expect("own stat readable");
        assert_eq!(process_start_time(me), Some(first), "stable");
        assert_eq!(process_start_time(u32::MAX), None);
    }

    #[test]
    fn session_members_are_found_through_proc() {
        // Read from /proc rather than getsid(2): in a container whose session
        // leader is outside the pid namespace the session id is 0.
        let me = std::process::id();
        let sid = session_of(me).expect("own /proc/<pid>/stat parses");
        assert!(session_members(sid).contains(&std::process::id()));
    }
}
