//! The processes of a `keel up` cluster: started detached (a process group of their own,
//! output to a log file, optionally inside a node's network namespace) so that they outlive
//! `keel up`, and stopped by pid, each only while its command line still names the cluster's
//! directory (a pid may have been reused since).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_agent::host;
use rustix::process::{kill_process, Pid, Signal};

/// Starts `program` with `args`, its output appended to `log`; inside the network namespace
/// `/run/netns/<netns>` when one is given (nsenter executes the program in place, so the
/// child's pid is the program's).
pub fn spawn_detached(
    program: &Path,
    args: &[String],
    netns: Option<&str>,
    log: &Path,
) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net=/run/netns/{netns}"))
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    };
    command
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out.try_clone().context("duplicating the log file")?)
        .stderr(out);
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    await_program(child.id(), program);
    Ok(child)
}

/// Waits (briefly) until `pid` runs `program` with its arguments readable. The parent of an
/// exec resumes before the kernel has set up the new program's arguments, and until then
/// `/proc/<pid>/cmdline` reads empty: a check of ownership made at once would call the
/// process someone else's. Inside a namespace the child is nsenter first, which then executes
/// the program in place: that exec has the same window, so the wait lasts until the program
/// itself runs.
fn await_program(pid: u32, program: &Path) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        match host::command_line(pid) {
            Some(args) if args.first().map(Path::new) != Some(program) => {
                std::thread::sleep(Duration::from_millis(2));
            }
            // Running it, or gone (an exit is for the caller to find).
            _ => return,
        }
    }
}

/// Whether `pid` runs a command line naming a path under `dir` (not a zombie, not reused).
pub fn is_ours(pid: u32, dir: &Path) -> bool {
    host::command_line(pid).is_some_and(|args| args.iter().any(|arg| names_path_under(arg, dir)))
}

/// An argument is a path under `dir`, or a flag whose value is (`--data-dir=<dir>/…`).
fn names_path_under(arg: &OsStr, dir: &Path) -> bool {
    let bytes = arg.as_bytes();
    let value = bytes
        .iter()
        .position(|&b| b == b'=')
        .map_or(bytes, |at| &bytes[at + 1..]);
    Path::new(OsStr::from_bytes(value)).starts_with(dir)
}

/// Stops those of `pids` that are still ours: SIGTERM, then SIGKILL for any still running
/// after `grace`. Returns the pids that had to be killed.
pub fn stop(pids: &[u32], dir: &Path, grace: Duration) -> Vec<u32> {
    let running: Vec<u32> = pids.iter().copied().filter(|&p| is_ours(p, dir)).collect();
    for &pid in &running {
        signal(pid, Signal::TERM);
    }
    let asked = Instant::now();
    while running.iter().any(|&p| is_ours(p, dir)) && asked.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stubborn: Vec<u32> = running.into_iter().filter(|&p| is_ours(p, dir)).collect();
    for &pid in &stubborn {
        signal(pid, Signal::KILL);
    }
    let killed = Instant::now();
    while stubborn.iter().any(|&p| is_ours(p, dir)) && killed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stubborn
}

/// Every process whose command line names a path under `dir`: what `keel down` must not
/// leave behind.
pub fn all_ours(dir: &Path) -> Vec<u32> {
    host::pids()
        .into_iter()
        .filter(|&pid| pid != std::process::id() && is_ours(pid, dir))
        .collect()
}

fn signal(pid: u32, signal: Signal) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    // The process may have exited since it was looked at; there is nothing to do then.
    let _ = kill_process(pid, signal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_count_as_flag_values_and_as_arguments() {
        let dir = Path::new("/var/lib/keel-up/keel");
        assert!(names_path_under(
            OsStr::new("--data-dir=/var/lib/keel-up/keel/master-1"),
            dir
        ));
        assert!(names_path_under(
            OsStr::new("/var/lib/keel-up/keel/agent-1/containerd/containerd.toml"),
            dir
        ));
        assert!(!names_path_under(
            OsStr::new("--data-dir=/var/lib/keel-up/keel2/master-1"),
            dir
        ));
        assert!(!names_path_under(OsStr::new("server"), dir));
    }

    #[test]
    fn a_started_process_is_ours_until_it_is_stopped() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("sleep.log");
        let marker = dir.path().join("marker").display().to_string();
        // sh takes the extra argument (naming our directory, which marks the process ours) as
        // its $0; the loop's short sleeps end on their own once sh is gone.
        let child = spawn_detached(
            Path::new("/bin/sh"),
            &["-c".into(), "while :; do sleep 0.1; done".into(), marker],
            None,
            &log,
        )
        .expect("spawn");
        let pid = child.id();
        assert!(is_ours(pid, dir.path()));
        // (sh's children are briefly copies of sh, and ours too, until they exec sleep.)
        assert!(all_ours(dir.path()).contains(&pid));
        // The process is our child here: reap it in the background so that it does not stay
        // a zombie (which no longer counts as ours anyway).
        let reaper = std::thread::spawn(move || {
            let mut child = child;
            child.wait()
        });
        assert!(stop(&[pid], dir.path(), Duration::from_secs(5)).is_empty());
        assert!(!is_ours(pid, dir.path()));
        assert!(reaper.join().is_ok());
    }
}
