//! What the agent (and `keel up`, which starts agents) reads off the host itself: the process
//! table in /proc, each process's command line, and which programs are on PATH.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt as _;

/// A process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// Its command line, without empty arguments.
    pub args: Vec<OsString>,
}

/// The pids in /proc (a process may be gone by the time one is read).
pub fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `pid`'s command line without empty arguments; `None` once it is gone. A zombie's, a kernel
/// thread's and that of a process in the middle of an exec are empty.
pub fn command_line(pid: u32) -> Option<Vec<OsString>> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        cmdline
            .split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| OsString::from_vec(arg.to_vec()))
            .collect(),
    )
}

/// `pid`'s parent, from /proc/<pid>/stat.
pub fn parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the parent pid is the second field
    // after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Every process visible in /proc with its parent and command line.
pub fn processes() -> Vec<Process> {
    pids()
        .into_iter()
        .filter_map(|pid| {
            let ppid = parent(pid)?;
            let args = command_line(pid)?;
            Some(Process { pid, ppid, args })
        })
        .collect()
}

/// Whether `program` is found in one of PATH's directories.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).exists()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_in_the_table_with_its_parent_and_command_line() {
        let me = std::process::id();
        let table = processes();
        let found = table.iter().find(|p| p.pid == me).expect("this process");
        assert_eq!(Some(found.ppid), parent(me));
        let own: Vec<OsString> = std::env::args_os().filter(|a| !a.is_empty()).collect();
        assert_eq!(found.args, own);
        assert!(pids().contains(&me));
        assert_eq!(command_line(u32::MAX), None);
    }

    #[test]
    fn programs_are_looked_up_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("keel-no-such-program"));
    }
}
