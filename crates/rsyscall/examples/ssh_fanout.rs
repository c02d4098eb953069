//! Fan out over ssh: one program, one async task per host, a [`Thread`] on each.
//!
//! ```text
//! cargo run --example ssh_fanout -- host1 user@host2 alias3 ...
//! cargo run --example ssh_fanout
//! ```
//!
//! With hosts on the command line, each is an ssh destination read through your own ssh
//! setup (`~/.ssh/config`, agent, known hosts), as `ssh host` would; the remote side needs
//! only sshd, `/bin/sh`, `mkdir`, `head`, `chmod`, `cat` and `rm` (and `cp` if its `/tmp`
//! is `noexec`). With none, the example makes its own four "hosts": a
//! throwaway directory with an ed25519 host key and user key (by `ssh-keygen`) and an
//! `ssh_config` whose `ProxyCommand` is `sshd -i`, so every connection starts a private
//! sshd talking over ssh's pipes: no daemon, no port, nothing of your ssh setup used. That
//! needs OpenSSH's server installed (it says what to install if not) and, for sshd's
//! privilege separation, root.
//!
//! For every host, concurrently (one `async_io::block_on`, the futures polled together):
//! 1. `SshHost::connect` runs ssh in a child of the local thread and returns that ssh
//!    process and a `Thread` on the host;
//! 2. `open_async_channels(1)` makes a channel between this program and that thread (fds
//!    cannot cross hosts, so it goes through ssh's forward);
//! 3. a clone of the remote thread gets the channel's remote end as stdout and execs
//!    `sh -c 'echo "$(uname -n): pid $$"'`, whose output is read here;
//! 4. the shell is waited for (through the remote thread), the remote thread exits, and
//!    ssh is waited for.
//!
//! Nothing is left behind: the library removes its files on both sides, the throwaway
//! sshd directory goes when the example ends, and every process is waited for.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command as StdCommand, ExitCode, Stdio};
use std::task::Poll;

use rsyscall::structs::WaitId;
use rsyscall::thread::SshHost;
use rsyscall::{CLONE, Error, Pid, W, local_thread};

/// How many "hosts" the local sshd stands in for when none is given.
const LOCAL_HOSTS: usize = 4;

/// What each host runs.
const SCRIPT: &str = r#"echo "$(uname -n): pid $$""#;

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Kept until the end: its drop removes the throwaway keys and config.
    let mut local_sshd = None;
    let hosts: Vec<SshHost> = if args.is_empty() {
        match LocalSshd::new() {
            Ok(sshd) => {
                let hosts = (1..=LOCAL_HOSTS)
                    .map(|i| SshHost::new(format!("fanout-{i}")).config_file(sshd.config()))
                    .collect();
                println!(
                    "no hosts given: {LOCAL_HOSTS} per-connection sshds (ProxyCommand sshd -i, \
                     config in {})",
                    sshd.dir.display()
                );
                local_sshd = Some(sshd);
                hosts
            }
            Err(e) => {
                eprintln!("ssh_fanout: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        args.iter().map(SshHost::new).collect()
    };

    if local_sshd.is_some() {
        // OpenSSH's client does not wait for its ProxyCommand (it hangs it up and exits),
        // so each local sshd outlives its ssh by a moment and is reparented. Init usually
        // reaps such orphans; as a subreaper, this program gets them and reaps them itself
        // (see `reap_orphaned_sshds`), so nothing is left even where init does not.
        if let Err(e) = async_io::block_on(local_thread().task().set_child_subreaper(true)) {
            eprintln!("ssh_fanout: {e}");
            return ExitCode::FAILURE;
        }
    }
    let results = async_io::block_on(join_all(hosts.iter().map(run_on).collect()));
    let mut failed = false;
    for (host, result) in hosts.iter().zip(results) {
        match result {
            Ok(output) => print!("{}: {output}", host.destination()),
            Err(e) => {
                failed = true;
                eprintln!("{}: {e}", host.destination());
            }
        }
    }
    if local_sshd.is_some()
        && let Err(e) = async_io::block_on(reap_orphaned_sshds())
    {
        failed = true;
        eprintln!("ssh_fanout: {e}");
    }
    drop(local_sshd);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Connects to `host`, runs [`SCRIPT`] there with its output captured here, and ends the
/// thread and ssh; returns the output.
async fn run_on(host: &SshHost) -> Result<String, Error> {
    let (ssh, remote) = host.connect(&local_thread()).await?;

    // The channel's local end is an async fd of this program; its remote end a plain fd
    // of the remote thread, which the clone below inherits.
    let (output, theirs) = remote
        .open_async_channels(1)
        .await?
        .pop()
        .ok_or_else(|| Error::invalid("open_async_channels", "no channel made"))?;
    let child = remote.clone(CLONE::empty()).await?;
    let stdout = child.inherit_fd(&theirs)?;
    child.task().dup2(&stdout, &child.stdout()).await?;
    drop(stdout);
    // Only the shell may hold the remote end, so that its exit ends the channel.
    theirs.close().await?;
    let sh = remote.environ().which("sh").await?.args(["-c", SCRIPT]);
    let shell = child.exec(sh).await?;

    let mut text = Vec::new();
    loop {
        let chunk = output.read_some_bytes(4096).await?;
        if chunk.is_empty() {
            break;
        }
        text.extend_from_slice(&chunk);
    }
    output.close().await?;
    shell.check().await?;

    remote.exit(0).await?;
    drop(remote);
    // ssh ends with the remote command, the thread: status 0.
    ssh.check().await?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Reaps the local sshds reparented to this program (a subreaper) once their ssh ended:
/// until no child of ours named `sshd` is left, alive or not (bounded: 10 s). Only sshds
/// are waited for, by pid, so no child the library watches is taken from it.
async fn reap_orphaned_sshds() -> Result<(), String> {
    let ours = std::process::id().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut left = 0;
        for entry in std::fs::read_dir("/proc").map_err(|e| format!("reading /proc: {e}"))? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            // /proc/PID/stat: `pid (comm) state ppid ...`; comm may hold spaces.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((head, tail)) = stat.rsplit_once(") ") else {
                continue;
            };
            let mut fields = tail.split(' ');
            let (state, ppid) = (fields.next(), fields.next());
            if !head.ends_with("(sshd") || ppid != Some(ours.as_str()) {
                continue;
            }
            left += 1;
            if state == Some("Z") {
                local_thread()
                    .task()
                    .waitid(WaitId::Pid(Pid::new(pid)), W::EXITED)
                    .await
                    .map_err(|e| format!("reaping sshd {pid}: {e}"))?;
            }
        }
        if left == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{left} local sshd processes did not end"));
        }
        async_io::Timer::after(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls all `futures` together until every one is done; their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Throwaway keys and configs for per-connection sshds; removed on drop.
struct LocalSshd {
    dir: PathBuf,
}

impl LocalSshd {
    fn new() -> Result<LocalSshd, String> {
        let sshd = find("sshd", "/usr/sbin", "openssh-server")?;
        let keygen = find("ssh-keygen", "/usr/bin", "openssh-client")?;
        find("ssh", "/usr/bin", "openssh-client")?;
        std::fs::create_dir_all("/run/sshd").map_err(|e| {
            format!("sshd needs /run/sshd (its privilege separation directory; run as root): {e}")
        })?;
        let dir = std::env::temp_dir().join(format!("rsyscall-fanout-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let made = LocalSshd { dir };
        let d = made.dir.display().to_string();
        if d.contains(|c: char| c.is_whitespace() || c == '"' || c == '%') {
            return Err(format!(
                "{d:?} cannot be written in an ssh config; set TMPDIR"
            ));
        }
        std::fs::set_permissions(&made.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {d}: {e}"))?;
        let host_key = made.keygen(&keygen, "host_key")?;
        let user_key = made.keygen(&keygen, "user_key")?;
        made.write("authorized_keys", &user_key)?;
        made.write("known_hosts", &format!("fanout {host_key}"))?;
        made.write(
            "sshd_config",
            &format!(
                "HostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile none\n\
                 UsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowStreamLocalForwarding yes\nLogLevel ERROR"
            ),
        )?;
        made.write(
            "ssh_config",
            &format!(
                "Host fanout-*\n  IdentityFile {d}/user_key\n  IdentitiesOnly yes\n  \
                 IdentityAgent none\n  BatchMode yes\n  StrictHostKeyChecking yes\n  \
                 UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
                 HostKeyAlias fanout\n  CheckHostIP no\n  LogLevel ERROR\n  \
                 ProxyCommand {sshd} -i -f {d}/sshd_config",
                sshd = sshd.display()
            ),
        )?;
        Ok(made)
    }

    fn config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    /// An ed25519 key pair `name` and `name.pub`; the public key line.
    fn keygen(&self, keygen: &Path, name: &str) -> Result<String, String> {
        let path = self.dir.join(name);
        let out = StdCommand::new(keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ssh_fanout", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running ssh-keygen: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ssh-keygen: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::fs::read_to_string(path.with_extension("pub"))
            .map(|key| key.trim().to_owned())
            .map_err(|e| format!("reading {name}.pub: {e}"))
    }

    fn write(&self, name: &str, text: &str) -> Result<(), String> {
        std::fs::write(self.dir.join(name), format!("{text}\n"))
            .map_err(|e| format!("writing {name}: {e}"))
    }
}

impl Drop for LocalSshd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `name` in `dir` or on `PATH`, or what to install.
fn find(name: &str, dir: &str, package: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from(dir))
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_absolute() && p.is_file())
        .ok_or_else(|| {
            format!(
                "`{name}` not found (in {dir} or on PATH): install OpenSSH's {package} \
                 (Debian/Ubuntu: apt-get install {package})"
            )
        })
}
