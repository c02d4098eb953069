//! What an ssh connection leaves behind: its directories, its processes (ssh, the
//! ProxyCommand's, the remote script and bootstrap, the janitor), found by the nonce that
//! names its directories. For tests/ssh_faults.rs and tests/ssh_cleanup.rs.
//!
//! A connection's nonce is read from ssh's command line: its `-L` argument is
//! `<local dir>/fwd:<remote dir>/data`, with the local dir `.../rsyscall-ssh-<nonce>` and the
//! remote one `.../rsyscall-<nonce>`. Every remote process of the connection (the script,
//! `b socket`, `b rsyscall`) has the remote dir in its command line, and the janitor the
//! local one; so "no process mentions the nonce" is "none of them is left", on the same
//! machine (the tests' hosts are this machine).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directories of one connection, from ssh's `-L` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnDirs {
    /// The 16 hex digits naming both directories.
    pub nonce: String,
    /// The local private directory (`.../rsyscall-ssh-<nonce>`).
    pub local: PathBuf,
    /// The remote private directory (`.../rsyscall-<nonce>`).
    pub remote: PathBuf,
}

impl ConnDirs {
    /// Parses ssh's `-L` argument, `<local>/fwd:<remote>/data`.
    pub fn from_forward(spec: &str) -> Option<ConnDirs> {
        let (local, remote) = spec.split_once(':')?;
        let local = Path::new(local.strip_suffix("/fwd")?).to_owned();
        let remote = Path::new(remote.strip_suffix("/data")?).to_owned();
        let nonce = local
            .file_name()?
            .to_str()?
            .strip_prefix("rsyscall-ssh-")?
            .to_owned();
        let ok = nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit());
        let remote_name = remote.file_name()?.to_str()?;
        (ok && remote_name == format!("rsyscall-{nonce}")).then_some(ConnDirs {
            nonce,
            local,
            remote,
        })
    }

    /// The directories of the connection made by ssh process `pid` (from its command line).
    pub fn of_ssh(pid: i32) -> Option<ConnDirs> {
        let args = cmdline(pid)?;
        let at = args.iter().position(|a| a == "-L")?;
        ConnDirs::from_forward(args.get(at + 1)?)
    }

    /// Every directory the connection may have made: the two above and the fallback
    /// directories for a `noexec` remote dir (`.rsyscall-<nonce>` in `/dev/shm`, `$HOME`,
    /// `/var/tmp`, `$XDG_RUNTIME_DIR`).
    pub fn all_paths(&self) -> Vec<PathBuf> {
        let hidden = format!(".rsyscall-{}", self.nonce);
        let mut out = vec![self.local.clone(), self.remote.clone()];
        let mut bases = vec![PathBuf::from("/dev/shm"), PathBuf::from("/var/tmp")];
        for var in ["HOME", "XDG_RUNTIME_DIR"] {
            if let Some(v) = std::env::var_os(var) {
                bases.push(PathBuf::from(v));
            }
        }
        out.extend(bases.into_iter().map(|b| b.join(&hidden)));
        out
    }

    /// What of the connection is still there: paths that exist, and live (non-zombie)
    /// processes whose command line names the nonce. Empty when nothing is left.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .all_paths()
            .into_iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .map(|p| format!("path {}", p.display()))
            .collect();
        for (pid, args) in live_processes() {
            if args.iter().any(|a| a.contains(&self.nonce)) {
                out.push(format!("process {pid}: {args:?}"));
            }
        }
        out
    }

    /// Waits (at most `bound`) until nothing of the connection is left; panics naming what
    /// is left otherwise.
    pub fn assert_gone_within(&self, bound: Duration, what: &str) {
        let start = Instant::now();
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < bound,
                "{what}: left behind after {bound:?}: {left:#?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The command line of process `pid`, split at NULs; `None` if it is gone (or a zombie,
/// whose command line is empty).
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if bytes.is_empty() {
        return None;
    }
    Some(
        bytes
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold any
        // character: take the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Every live process of the machine (as our /proc shows it) with its command line.
pub fn live_processes() -> Vec<(i32, Vec<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(args) = cmdline(pid) {
            out.push((pid, args));
        }
    }
    out
}

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): what our descendants
/// leave orphaned comes to us, not to pid 1 (which does not reap here), so it can be seen
/// and reaped.
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) changes only this process's attribute.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Our live (non-zombie) descendants' pids.
pub fn live_descendants() -> Vec<i32> {
    crate::procs::descendants()
        .into_iter()
        .filter(|c| !c.zombie)
        .map(|c| c.pid)
        .collect()
}

/// Reaps the zombies among our children except `keep` (processes something else is to
/// reap): orphans reparented to us as subreaper. Returns how many were reaped.
pub fn reap_zombies_except(keep: &[i32]) -> usize {
    let mut n = 0;
    for child in crate::procs::children() {
        if child.zombie && !keep.contains(&child.pid) {
            let mut status = 0;
            // SAFETY: waitpid writes only `status`; `child.pid` is a zombie child of ours.
            let r = unsafe { libc::waitpid(child.pid, &mut status, libc::WNOHANG) };
            if r == child.pid {
                n += 1;
            }
        }
    }
    n
}

/// An ssh client that notes its pid and arguments (one per line) in a log, then execs the
/// real ssh: how the test learns the directories of a connection that failed.
pub struct LoggingSsh {
    dir: crate::tmp::TempDir,
}

impl LoggingSsh {
    /// A new wrapper of `env`'s ssh, in a scratch directory of its own.
    pub fn new(env: &crate::ssh::SshEnv) -> LoggingSsh {
        let dir = crate::tmp::TempDir::new("ssh-wrapper");
        let script = format!(
            "#!/bin/sh\nprintf 'PID %s\\n' \"$$\" >> {log}\nprintf '%s\\n' \"$@\" >> {log}\nexec {ssh} \"$@\"\n",
            log = dir.join("log").display(),
            ssh = env.ssh_program().display()
        );
        let path = dir.join("ssh");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        LoggingSsh { dir }
    }

    /// The wrapper's path, for `SshHost::program`.
    pub fn path(&self) -> PathBuf {
        self.dir.join("ssh")
    }

    /// The (pid, arguments) of each ssh run so far, in order (arguments after `argv[0]`;
    /// they hold no newline, so the log's lines tell them apart).
    pub fn argvs(&self) -> Vec<(i32, Vec<String>)> {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let mut out: Vec<(i32, Vec<String>)> = Vec::new();
        for line in log.lines() {
            match line.strip_prefix("PID ").and_then(|p| p.parse().ok()) {
                Some(pid) => out.push((pid, Vec::new())),
                None => {
                    if let Some((_, args)) = out.last_mut() {
                        args.push(line.to_owned());
                    }
                }
            }
        }
        out
    }

    /// The (pid, directories) of each ssh run so far.
    pub fn runs(&self) -> Vec<(i32, ConnDirs)> {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let mut out = Vec::new();
        let mut pid = None;
        for (i, line) in lines.iter().enumerate() {
            if let Some(p) = line.strip_prefix("PID ") {
                pid = p.parse().ok();
            }
            if *line == "-L"
                && let (Some(p), Some(spec)) = (pid, lines.get(i + 1))
            {
                out.push((p, ConnDirs::from_forward(spec).expect("a forward spec")));
            }
        }
        out
    }
}
