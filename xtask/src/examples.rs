//! The `examples` step of `cargo xtask test` (also `cargo xtask examples [NAME...]`): builds
//! the examples of `crates/rsyscall` once, then runs each binary and checks what it did.
//!
//! An example passes when it exits with status 0 within [`TIMEOUT`], its stdout holds every
//! substring [`EXAMPLES`] lists for it, and it left nothing behind: its `TMPDIR` (a fresh
//! directory of its own) is empty again, and no process of its process group (it runs as
//! the leader of a new one, which its descendants join unless they leave it) is still
//! alive. Its stdout is shown after it ends; its stderr goes straight to ours.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::cargo;

/// Each example, with substrings its stdout must contain: one line per example.
#[rustfmt::skip]
pub const EXAMPLES: &[(&str, &[&str])] = &[
    ("tour", &["3. getpid() run inside the child returns", "6. its output: hello from sh, pid", "7. it exited with status 7", "9. run_unchecked: it exited with status 1"]),
    ("sandbox", &["| pid 1\n", "| root: /bin /lib", "/proc /sbin /usr\n", "| interfaces: lo\n", "6. it exited cleanly;"]),
    ("mock_program", &["script: mail sent", "script: sendmail failed with 75", "5. wrapper, socket and directories removed"]),
    ("persistent", &["2. after reconnecting: \"written after a reconnect\"", "4. attached to pid", "5. it exited and removed"]),
    ("ssh_fanout", &["fanout-1: ", "fanout-2: ", "fanout-3: ", "fanout-4: ", ": pid "]),
    ("fd_passing", &["HTTP/1.0 200 OK", "served \"GET /hello HTTP/1.0\" on fd 3", "4. the server exited with status 0"]),
    ("tokio", &["echo said \"hello from task 0, pid", "echo said \"hello from task 3, pid", "timeout gave up waiting for sleep 30", "it killed by SIGKILL"]),
    ("parallel", &["\n   0 1 2 3 4 5 6 7 8 9 10 ", " 95 96 97 98 99\n", "2. all 100 outputs in order, every program exited 0"]),
];

/// How long one example may run.
const TIMEOUT: Duration = Duration::from_secs(120);

/// How long the processes an example started may take to die after it exited (children
/// that get `SIGKILL` from the kernel when their parent goes are gone within moments).
const STRAGGLERS: Duration = Duration::from_secs(5);

/// Builds the examples and runs those named in `only` (all when empty), with
/// `RSYSCALL_LIBEXEC_DIR` set to `libexec`. Fails naming every example that failed.
pub fn run(root: &Path, libexec: &Path, only: &[String]) -> Result<(), String> {
    for name in only {
        if !EXAMPLES.iter().any(|(known, _)| known == name) {
            return Err(format!("no example `{name}` is checked here"));
        }
    }
    let mut build = cargo(root);
    build.args(["build", "--examples", "-p", "rsyscall"]);
    crate::suite::run_command(build)?;
    check_all_listed(root)?;

    let dir = target_dir(root).join("debug").join("examples");
    let mut failed = Vec::new();
    for (name, expected) in EXAMPLES {
        if !only.is_empty() && !only.iter().any(|n| n == name) {
            continue;
        }
        let start = Instant::now();
        match run_one(&dir.join(name), name, libexec, expected) {
            Ok(()) => println!(
                "--- example {name}: ok ({:.1}s)",
                start.elapsed().as_secs_f64()
            ),
            Err(e) => {
                println!("--- example {name}: FAILED: {e}");
                failed.push(*name);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("examples failed: {}", failed.join(", ")))
    }
}

/// Fails if an example in `crates/rsyscall/examples` has no line in [`EXAMPLES`], or a
/// line names no example.
fn check_all_listed(root: &Path) -> Result<(), String> {
    let dir = root.join("crates").join("rsyscall").join("examples");
    for (name, _) in EXAMPLES {
        if !dir.join(format!("{name}.rs")).is_file() {
            return Err(format!(
                "EXAMPLES lists `{name}`, which is not in {}",
                dir.display()
            ));
        }
    }
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if let Some(name) = file.strip_suffix(".rs")
            && !EXAMPLES.iter().any(|(known, _)| *known == name)
        {
            return Err(format!(
                "example `{name}` is not checked: add a line for it to EXAMPLES in {}",
                file!()
            ));
        }
    }
    Ok(())
}

/// The target directory cargo builds into: `$CARGO_TARGET_DIR`, or `target` in `root`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Runs one example binary and checks it (see the module documentation).
fn run_one(binary: &Path, name: &str, libexec: &Path, expected: &[&str]) -> Result<(), String> {
    // A private, short TMPDIR (unix socket paths under it must stay short).
    let tmp = std::env::temp_dir().join(format!("rsx-{name}-{}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(|e| format!("mkdir {}: {e}", tmp.display()))?;
    let result = run_in(binary, libexec, &tmp, expected);
    let leftovers = std::fs::read_dir(&tmp)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    if leftovers.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "it left files in its TMPDIR: {}",
            leftovers.join(", ")
        ))
    }
}

fn run_in(binary: &Path, libexec: &Path, tmp: &Path, expected: &[&str]) -> Result<(), String> {
    println!("$ TMPDIR={} {}", tmp.display(), binary.display());
    crate::suite::flush_stdout();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(binary)
            .env("RSYSCALL_LIBEXEC_DIR", libexec)
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?
    };
    let group = child.id();
    // Read on another thread so that a full pipe never stops the example.
    let mut pipe = child.stdout.take().ok_or("no stdout pipe")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = sender.send(pipe.read_to_end(&mut out).map(|_| out));
    });
    let status = wait_timeout(&mut child, TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stragglers = kill_stragglers(group, STRAGGLERS);
    // EOF comes once every holder of the pipe is gone; one that left the group (a process
    // that called setsid) would keep it open.
    let stdout = receiver
        .recv_timeout(STRAGGLERS)
        .map_err(|_| "its stdout is still open: a process it started outlived it".to_string())?
        .map_err(|e| format!("reading its stdout: {e}"))?;
    let stdout = String::from_utf8_lossy(&stdout);
    for line in stdout.lines() {
        println!("    {line}");
    }
    let status = status.ok_or_else(|| format!("still running after {TIMEOUT:?}: killed"))??;
    if !status.success() {
        return Err(format!("it ended with {status}"));
    }
    let missing: Vec<&&str> = expected.iter().filter(|s| !stdout.contains(**s)).collect();
    if !missing.is_empty() {
        return Err(format!("its stdout lacks {missing:?}"));
    }
    if !stragglers.is_empty() {
        return Err(format!(
            "processes of its group outlived it (killed now): {}",
            stragglers.join(", ")
        ));
    }
    Ok(())
}

/// Waits for `child` for at most `limit`; `None` if it is still running.
fn wait_timeout(child: &mut Child, limit: Duration) -> Option<Result<ExitStatus, String>> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(Ok(status)),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(e) => return Some(Err(format!("waiting for it: {e}"))),
        }
    }
}

/// The live (not zombie) processes of process group `group`, waited for up to `patience`
/// to go; those still there are killed. Returns them as `pid (comm)`.
fn kill_stragglers(group: u32, patience: Duration) -> Vec<String> {
    let deadline = Instant::now() + patience;
    loop {
        let live = group_members(group);
        if live.is_empty() {
            return live.into_iter().map(|(_, d)| d).collect();
        }
        if Instant::now() > deadline {
            let pids: Vec<String> = live.iter().map(|(pid, _)| pid.to_string()).collect();
            let _ = Command::new("kill").arg("-KILL").args(&pids).status();
            return live.into_iter().map(|(_, d)| d).collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids and descriptions of the live processes whose process group is `group`.
fn group_members(group: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = tail.split(' ').collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string() {
            let comm = head.split_once(" (").map_or("?", |(_, c)| c);
            out.push((pid, format!("{pid} ({comm})")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    use super::*;

    #[test]
    fn every_example_is_listed_and_every_listed_example_exists() {
        check_all_listed(&crate::workspace_root()).expect("EXAMPLES matches the examples");
    }

    #[test]
    fn a_process_left_in_the_group_is_reported_and_killed() {
        let mut sleep = Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .expect("sleep");
        let group = sleep.id();
        let found = kill_stragglers(group, Duration::from_millis(100));
        assert_eq!(found, [format!("{group} (sleep)")]);
        let status = sleep.wait().expect("wait");
        assert_eq!(status.signal(), Some(9), "killed: {status}");
        assert!(group_members(group).is_empty(), "gone once reaped");
    }
}
