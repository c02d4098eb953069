//! `SshHost`: threads on other hosts, over the system's OpenSSH client.
//!
//! # How a connection is made
//! One `ssh` process, one session (PROTOCOL.md section 6, "Ssh bootstrap"):
//! 1. Locally, a private directory (mode 0700) for the forward's socket, and a janitor
//!    (`sh`, reading a pipe only we hold) that removes it if this program dies first.
//! 2. `ssh [user's options] [ours] -L <dir>/fwd:<remote dir>/data <destination> exec
//!    /bin/sh -c '<script>'`, run in a child of the given thread, with socketpairs as its
//!    stdin, stdout and stderr. The remote directory's name is chosen here (random), so
//!    the forward can be given on the same command line.
//! 3. The script makes the remote directory (mode 0700), writes the bootstrap binary
//!    from its stdin (exactly its length: stdin stays open, and its end of file later
//!    means the session was lost, see `remote_script`), checks that it can be executed there (else
//!    copies it to another directory: `/tmp` may be `noexec`), runs `rsyscall-bootstrap
//!    socket` and, once that printed `done`, prints a ready line with the binary's path and
//!    runs `rsyscall-bootstrap rsyscall`. When that ends (the thread exited, or lost its
//!    connection), the script removes both directories. If the ssh session is lost first,
//!    a watcher in the script (`cat` on its stdin) reads end of file, removes them and
//!    SIGKILLs the session's process group, bootstrap included (see `remote_script`).
//! 4. We connect twice to the forward: the connection on which the describe struct
//!    arrives is the data socket, the other the syscall socket (the order in which ssh
//!    opens its channels does not matter). The thread is built from the describe
//!    ([`Thread::from_bootstrap`]'s path, with channels through the forward instead of fd
//!    passing), and removes the binary at once.
//!
//! # Safety
//! One unsafe call, `bootstrap_thread`: the process it builds a thread of was exec'd by
//! sshd on the remote side (an address space and fd table of its own), and we reached it
//! only through a socket in a directory of mode 0700 we made.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rsyscall_handle::{ChildState, Error, Result, SshFailure, Task};
use rsyscall_near::{AT, CLONE, Signal};
use rsyscall_server::proto::BootstrapDescribe;

use crate::bootstrap::{BootstrapParts, SSH_BOOTSTRAP, read_exact, read_strings};
use crate::command::Command;
use crate::host::{HostAccess, HostLink};
use crate::monitor::AsyncChildProcess;
use crate::thread::Thread;

/// How much of ssh's stderr is kept for errors.
const STDERR_KEPT: usize = 64 * 1024;
/// How long the bootstrap is given to describe itself once ready.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long ssh is given to exit once it closed its stdout before a failed connection.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// The default `ConnectTimeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Exit statuses of the remote script.
const EXIT_NO_DIR: i32 = 90;
const EXIT_NO_WRITE: i32 = 91;
const EXIT_NOEXEC: i32 = 92;

/// A host reached with the system's OpenSSH client (`ssh`), from which
/// [`SshHost::connect`] makes [`Thread`]s. Because it is the real client, the user's
/// `~/.ssh/config`, agent, known hosts and jump hosts work as for `ssh` itself.
///
/// The remote host needs only sshd (with unix-socket forwarding allowed, OpenSSH's
/// default), a login shell that runs `exec /bin/sh -c '...'`, and, run by the one-line
/// script of the session: `/bin/sh`, `mkdir`, `head`, `chmod`, `cat` and `rm`, plus `cp`
/// when the bootstrap must be copied out of a `noexec` directory (`cd`, `umask`, `test`,
/// `echo`, `read`, `trap` and `kill` are built into every common `/bin/sh`). The bootstrap
/// is copied there over the same connection: no Rust, none of our files and no
/// scp/sftp are needed.
///
/// What a connection leaves on the remote host, and for how long: a private directory
/// (mode 0700) in [`SshHost::remote_temp_dir`], holding the bootstrap binary until the
/// thread runs (it is unlinked then: the thread runs from memory) and the forward's
/// `data` socket, through which every later channel to the host's threads is made, so
/// the directory stays while the thread lives; and, if that directory is `noexec`, a
/// fallback directory holding only the binary, likewise emptied at once. Both are removed
/// when the thread ends, or when the ssh session is lost.
///
/// # Examples
///
/// ```no_run
/// # use rsyscall_thread::{SshHost, local_thread, Command};
/// # async_io::block_on(async {
/// let host = SshHost::new("build-box").port(2222);
/// let (ssh, remote) = host.connect(&local_thread()).await?;
/// remote.run(remote.environ().which("uname").await?.arg("-a")).await?;
/// remote.exit(0).await?;
/// ssh.wait().await?;
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SshHost {
    destination: String,
    program: Option<PathBuf>,
    port: Option<u16>,
    user: Option<String>,
    identity: Option<PathBuf>,
    config: Option<PathBuf>,
    options: Vec<String>,
    proxy_jump: Option<String>,
    proxy_command: Option<String>,
    connect_timeout: Duration,
    remote_dir: String,
    helper: Option<PathBuf>,
}

impl SshHost {
    /// A host named as ssh's destination (`host`, `user@host`, an alias of the ssh
    /// config...).
    pub fn new(destination: impl Into<String>) -> Self {
        SshHost {
            destination: destination.into(),
            program: None,
            port: None,
            user: None,
            identity: None,
            config: None,
            options: Vec::new(),
            proxy_jump: None,
            proxy_command: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            remote_dir: "/tmp".into(),
            helper: None,
        }
    }

    /// The ssh client to run (default: `ssh` found on the `PATH` of the thread that
    /// connects).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// The port (`-p`).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The remote user (`-l`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// An identity file (`-i`).
    pub fn identity(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity = Some(path.into());
        self
    }

    /// A config file used instead of `~/.ssh/config` (`-F`).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(path.into());
        self
    }

    /// An option (`-o Key=Value`). Options given here come before ours, so they win
    /// (ssh uses the first value it gets): ours are `BatchMode=yes`,
    /// `ExitOnForwardFailure=yes`, `ControlMaster=no`, `ControlPath=none`,
    /// `ServerAliveInterval=15`, `ServerAliveCountMax=3` and the `ConnectTimeout` of
    /// [`SshHost::connect_timeout`].
    pub fn option(mut self, option: impl Into<String>) -> Self {
        self.options.push(option.into());
        self
    }

    /// Jump hosts (`-J`, `[user@]host[:port]`, comma-separated). ssh reaches them with an
    /// ssh of its own, to which it passes the [`SshHost::config_file`] but not the
    /// [`SshHost::option`]s, port, user or identity given here (those are the final
    /// host's): settings for the jump hosts belong in the config file.
    pub fn proxy_jump(mut self, jump: impl Into<String>) -> Self {
        self.proxy_jump = Some(jump.into());
        self
    }

    /// A proxy command (`-o ProxyCommand=...`).
    pub fn proxy_command(mut self, command: impl Into<String>) -> Self {
        self.proxy_command = Some(command.into());
        self
    }

    /// How long ssh tries to reach the host (`ConnectTimeout`, whole seconds, at least
    /// 1; default 30 s). The remote setup afterwards is bounded by this again.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// The remote directory in which our private directory is made (default `/tmp`):
    /// an absolute path without `'`, `\`, `!`, `"`, `$`, `` ` `` or whitespace. If
    /// programs cannot be executed there (`noexec`), the bootstrap binary alone goes to
    /// the first of `$XDG_RUNTIME_DIR`, `/dev/shm`, `$HOME` and `/var/tmp` that allows it.
    pub fn remote_temp_dir(mut self, dir: impl Into<String>) -> Self {
        self.remote_dir = dir.into();
        self
    }

    /// The bootstrap binary to copy to the host (default: `rsyscall-bootstrap`, see
    /// [`crate::libexec::helper_contents`]).
    pub fn bootstrap_helper(mut self, path: impl Into<PathBuf>) -> Self {
        self.helper = Some(path.into());
        self
    }

    /// The destination, as given.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The arguments given to ssh before the destination: the user's, then ours.
    fn option_args(&self, forward: &str) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &str| args.push(a.into());
        if let Some(config) = &self.config {
            push("-F");
            args.push(config.clone().into_os_string());
        }
        let mut push = |a: &str| args.push(a.into());
        for option in &self.options {
            push("-o");
            push(option);
        }
        if let Some(port) = self.port {
            push("-p");
            push(&port.to_string());
        }
        if let Some(user) = &self.user {
            push("-l");
            push(user);
        }
        if let Some(jump) = &self.proxy_jump {
            push("-J");
            push(jump);
        }
        if let Some(command) = &self.proxy_command {
            push("-o");
            push(&format!("ProxyCommand={command}"));
        }
        let timeout = self.connect_timeout.as_secs().max(1);
        for option in [
            "BatchMode=yes",
            "ExitOnForwardFailure=yes",
            "ControlMaster=no",
            "ControlPath=none",
            "ServerAliveInterval=15",
            "ServerAliveCountMax=3",
            &format!("ConnectTimeout={timeout}"),
        ] {
            push("-o");
            push(option);
        }
        if let Some(identity) = &self.identity {
            args.push("-i".into());
            args.push(identity.clone().into_os_string());
        }
        args.push("-T".into());
        args.push("-L".into());
        args.push(forward.into());
        args
    }

    /// Connects: runs ssh in a child of `thread` and returns its process and a [`Thread`]
    /// on the remote host, whose syscalls, clones, execs and async I/O work as on a local
    /// thread. fds cannot be passed between the local process and it: channels between
    /// them ([`Thread::open_channels`], children's syscall sockets) go through ssh.
    ///
    /// The thread's stdin is empty (`/dev/null`); what it (and the programs it runs)
    /// writes on its stdout and stderr is copied to this program's.
    ///
    /// Nothing is left behind: the remote binary is removed as soon as the thread runs,
    /// the remote directory (holding the forwarded `data` socket, needed for every channel
    /// to the host until then) when the thread ends, and the local directory when the last
    /// handle to a thread of this connection is gone, or, if this program dies first, by a
    /// small `sh` that watches it. ssh dies with the thread that ran it (its parent-death
    /// signal), and is killed if this future is dropped before it completes; when the ssh
    /// session ends that way, the remote side removes its directories and kills the
    /// bootstrap and its children, even one blocked in a syscall.
    ///
    /// ssh exits once the thread has exited (or every handle to the connection's threads
    /// was dropped) and every forwarded connection is closed: keep no local end of an
    /// [`Thread::open_channels`] channel open if you wait for it. The returned process may
    /// also be dropped without waiting: it is then reaped in the background.
    ///
    /// `thread` must be in this program's mount namespace (it may be any thread that can
    /// run a program: the local one, a clone child...).
    ///
    /// # Errors
    /// [`Error::Ssh`] with the [`SshFailure`], ssh's stderr and what to do: no ssh client,
    /// authentication refused, host unreachable or silent (within the connect timeout),
    /// a remote shell that cannot run `/bin/sh`, a remote side that cannot write or
    /// execute the bootstrap, a failed handshake; [`Error::Helper`] if the bootstrap
    /// binary is not found; [`Error::InvalidArgument`] for a bad remote directory or a
    /// thread in another mount namespace.
    pub async fn connect(&self, thread: &Thread) -> Result<(AsyncChildProcess, Thread)> {
        let binary = match &self.helper {
            Some(path) => crate::libexec::read_helper(SSH_BOOTSTRAP, path)?,
            None => crate::libexec::helper_contents(SSH_BOOTSTRAP)?.into_owned(),
        };
        self.check_remote_dir()?;
        if thread.task().namespaces().mountns != rsyscall_handle::local_namespaces().mountns {
            // The forward's socket is made, bound and connected to by path here.
            return Err(Error::invalid(
                "SshHost::connect",
                "the thread that runs ssh must be in this program's mount namespace (the \
                 forward's socket is reached by path from here)",
            ));
        }
        let ssh = self.ssh_command(thread).await?;
        let nonce = nonce();
        let remote_dir = format!("{}/rsyscall-{nonce}", self.remote_dir.trim_end_matches('/'));
        let local = LocalDir::new(&nonce).await?;
        let forward_spec = format!("{}:{remote_dir}/data", local.forward().display());
        let script = remote_script(&self.remote_dir, &nonce, binary.len());
        let command = ssh
            .args(self.option_args(&forward_spec))
            .arg(&self.destination)
            .arg(format!("exec /bin/sh -c '{script}'"));
        let description = format!("ssh {}", self.destination);
        let program = command.path().to_string_lossy().into_owned();

        let (stdin_ours, stdin_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
        let (stdout_ours, stdout_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
        let (stderr_ours, stderr_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
        let child = thread.clone(CLONE::empty()).await?;
        let moved = child
            .local_to_thread(vec![
                stdin_theirs.into(),
                stdout_theirs.into(),
                stderr_theirs.into(),
            ])
            .await?;
        for (fd, target) in moved
            .iter()
            .zip([child.stdin(), child.stdout(), child.stderr()])
        {
            child.task().dup2(fd, &target).await?;
        }
        drop(moved);
        // From here on, ssh is killed if this future is dropped or fails (a failure
        // reaps it first): nothing else would end it before the remote side gave up.
        let process = match child.exec(command).await {
            Ok(process) => process,
            Err(failed) => {
                // The child, given back, is killed and reaped in the background.
                drop(failed.thread);
                let e = failed.error;
                if e.errno().is_none() {
                    return Err(e);
                }
                return Err(Error::Ssh {
                    destination: self.destination.clone(),
                    kind: SshFailure::NoClient,
                    state: None,
                    stderr: String::new(),
                    hint: format!(
                        "executing {program} failed: {e}; name a working OpenSSH client with \
                         SshHost::program"
                    ),
                });
            }
        };
        let guard = KillOnDrop(Some(process));
        let process = guard.process();

        let stderr = StderrDrain::start(stderr_ours)?;
        let outcome = self
            .until_ready(process, stdin_ours, stdout_ours, binary, &nonce)
            .await;
        let (stdin, stdout, binary_path) = match outcome {
            Ok(ready) => ready,
            Err(failure) => return Err(self.fail(process, failure, &stderr).await),
        };
        let link_keep = (local,);
        match self
            .bootstrap(process, &description, link_keep, &remote_dir)
            .await
        {
            Ok(remote) => {
                // The binary is not needed any more: the thread runs from memory.
                if let Err(e) = remote
                    .task()
                    .unlinkat(None, binary_path.as_bytes(), AT::empty())
                    .await
                {
                    log::warn!("removing the remote bootstrap binary {binary_path}: {e}");
                }
                stderr.forward();
                forward_stdout(stdout);
                hold_until_closed(stdin);
                log::debug!(
                    "{description}: thread ready, pid {}",
                    remote.task().pid().as_raw()
                );
                Ok((guard.disarm(), remote))
            }
            Err(failure) => Err(self.fail(process, failure, &stderr).await),
        }
    }

    /// The ssh client to run, as a command.
    async fn ssh_command(&self, thread: &Thread) -> Result<Command> {
        let found = match &self.program {
            Some(path) => {
                let path = path.as_os_str().to_string_lossy().into_owned();
                let path = if path.contains('/') {
                    path
                } else {
                    format!("./{path}")
                };
                thread.environ().which(&path).await
            }
            None => thread.environ().which("ssh").await,
        };
        found.map_err(|e| Error::Ssh {
            destination: self.destination.clone(),
            kind: SshFailure::NoClient,
            state: None,
            stderr: String::new(),
            hint: format!(
                "{e}; install OpenSSH's client (Debian: openssh-client) or name it with \
                 SshHost::program"
            ),
        })
    }

    /// Refuses a remote directory the script could not quote.
    fn check_remote_dir(&self) -> Result<()> {
        let dir = &self.remote_dir;
        let bad = |c: char| c.is_whitespace() || "'\\!\"$`;&|<>(){}*?[]#~".contains(c);
        if !dir.starts_with('/') || dir.chars().any(bad) {
            return Err(Error::invalid(
                "SshHost::remote_temp_dir",
                format!(
                    "{dir:?} must be an absolute path without whitespace, quotes or shell \
                     characters"
                ),
            ));
        }
        Ok(())
    }

    /// Sends the binary and waits for the ready line; returns ssh's stdin (still open),
    /// its stdout (positioned after that line) and the remote binary's path.
    async fn until_ready(
        &self,
        process: &AsyncChildProcess,
        stdin: UnixStream,
        stdout: UnixStream,
        binary: Vec<u8>,
        nonce: &str,
    ) -> std::result::Result<(UnixStream, Async<UnixStream>, String), Failure> {
        let stdin = Async::new(stdin).map_err(|e| Failure::Io("registering a socket", e))?;
        let stdout = Async::new(stdout).map_err(|e| Failure::Io("registering a socket", e))?;
        let send = async {
            // ssh reads its stdin only once the session is open; a write error means ssh
            // went away, which the wait below reports. No end of file: the script reads
            // exactly the binary's length, and takes the end of its stdin as the end of
            // the session.
            if (&stdin).write_all(&binary).await.is_ok() {
                let _ = (&stdin).flush().await;
            }
            std::future::pending::<std::result::Result<String, Failure>>().await
        };
        let marker = format!("rsyscall-ready-{nonce} ");
        let read = async {
            loop {
                let line = read_line(&stdout)
                    .await
                    .map_err(|e| Failure::Io("reading ssh's stdout", e))?;
                let Some(line) = line else {
                    return Err(Failure::Ended(None));
                };
                // Lines before it (a login shell's greeting) are skipped.
                if let Some(path) = line.strip_prefix(&marker) {
                    return Ok(path.to_owned());
                }
            }
        };
        let ended = ssh_ended(process);
        let timeout = async {
            async_io::Timer::after(self.connect_timeout * 2 + Duration::from_secs(10)).await;
            Err(Failure::TimedOut)
        };
        let path = futures_lite::future::or(
            futures_lite::future::or(read, send),
            futures_lite::future::or(ended, timeout),
        )
        .await?;
        let stdin = stdin
            .into_inner()
            .map_err(|e| Failure::Io("deregistering a socket", e))?;
        Ok((stdin, stdout, path))
    }

    /// Connects to the forward twice, tells the data socket from the syscall socket, reads
    /// the describe and builds the thread.
    async fn bootstrap(
        &self,
        process: &AsyncChildProcess,
        description: &str,
        keep: (LocalDir,),
        remote_dir: &str,
    ) -> std::result::Result<Thread, Failure> {
        let forward = keep.0.forward().to_owned();
        let connect = || {
            UnixStream::connect(&forward)
                .and_then(Async::new)
                .map_err(|e| Failure::Io("connecting to ssh's forwarded socket", e))
        };
        let first = connect()?;
        let second = connect()?;
        let described = async {
            // The data socket is the one the describe arrives on.
            let first_is_data =
                futures_lite::future::or(async { first.readable().await.map(|()| true) }, async {
                    second.readable().await.map(|()| false)
                })
                .await
                .map_err(|e| Failure::Io("waiting for the bootstrap", e))?;
            let (syscall, data) = if first_is_data {
                (second, first)
            } else {
                (first, second)
            };
            let mut buf = [0u8; BootstrapDescribe::SIZE];
            read_exact(&data, &mut buf, SSH_BOOTSTRAP, "the describe struct")
                .await
                .map_err(Failure::Error)?;
            let d = BootstrapDescribe::from_bytes(&buf);
            let fds = [d.listening_sock, d.syscall_sock, d.data_sock];
            let distinct = fds[0] != fds[1] && fds[1] != fds[2] && fds[0] != fds[2];
            if d.pid <= 0 || fds.iter().any(|&fd| fd < 0) || !distinct {
                return Err(Failure::Error(Error::Handshake {
                    helper: SSH_BOOTSTRAP,
                    detail: format!(
                        "malformed describe struct: pid {}, listening {}, syscall {}, data {}",
                        d.pid, d.listening_sock, d.syscall_sock, d.data_sock
                    ),
                }));
            }
            let env = read_strings(&data, d.envp_count, SSH_BOOTSTRAP)
                .await
                .map_err(Failure::Error)?;
            Ok((d, env, syscall, data))
        };
        let ended = ssh_ended(process);
        let timeout = async {
            async_io::Timer::after(DESCRIBE_TIMEOUT).await;
            Err(Failure::TimedOut)
        };
        let (d, environment, syscall, data) =
            futures_lite::future::or(described, futures_lite::future::or(ended, timeout)).await?;
        let into_fd = |s: Async<UnixStream>| -> std::result::Result<OwnedFd, Failure> {
            s.into_inner()
                .map(OwnedFd::from)
                .map_err(|e| Failure::Io("deregistering a socket", e))
        };
        let parts = BootstrapParts {
            syscall_sock: into_fd(syscall)?,
            data_sock: into_fd(data)?,
            pid: d.pid,
            syscall_fd: d.syscall_sock,
            data_fd: d.data_sock,
            symbols: d.symbols,
            environment,
        };
        let link = HostLink::new(description.to_owned(), forward, Box::new(keep));
        log::debug!("{description}: bootstrap pid {} in {remote_dir}", d.pid);
        let access = HostAccess {
            link,
            listener: rsyscall_near::FileDescriptor::new(d.listening_sock),
        };
        // SAFETY: the process that described itself is the bootstrap sshd exec'd on the
        // remote host (so its address space and fd table are its own, never ours), reached
        // only through ssh's forward of a socket in a directory of mode 0700 we made there;
        // the fds it named are the ones it accepted, its own.
        unsafe {
            crate::bootstrap::bootstrap_thread(
                parts,
                Some(access),
                rsyscall_near::ThreadKind::SshHost,
            )
        }
        .await
        .map_err(Failure::Error)
    }

    /// The error for a connection that failed: ssh is killed and reaped (bounded), and
    /// what it said is classified.
    async fn fail(
        &self,
        process: &AsyncChildProcess,
        failure: Failure,
        stderr: &StderrDrain,
    ) -> Error {
        let state = match &failure {
            Failure::Ended(Some(state)) => Some(*state),
            // ssh closed its stdout: the remote command ended, and ssh exits with its status
            // as soon as that arrives. Killing it now would lose the status (and with it
            // what went wrong), so it is given a moment first.
            Failure::Ended(None) => {
                let exited = futures_lite::future::or(async { process.wait().await.ok() }, async {
                    async_io::Timer::after(EXIT_GRACE).await;
                    None
                })
                .await;
                match exited {
                    Some(state) => Some(state),
                    None => {
                        let _ = process.kill(Signal::SIGKILL).await;
                        process.wait().await.ok()
                    }
                }
            }
            _ => {
                let _ = process.kill(Signal::SIGKILL).await;
                process.wait().await.ok()
            }
        };
        // What ssh wrote reaches us a little after it exited.
        let stderr = stderr.finish().await;
        let (kind, hint) = match (&failure, state) {
            (Failure::TimedOut, _) => (
                SshFailure::TimedOut,
                "the remote side did not become ready in time".to_owned(),
            ),
            (Failure::Error(Error::Handshake { detail, .. }), _) => (
                SshFailure::Bootstrap,
                format!("the bootstrap's handshake failed: {detail}"),
            ),
            (_, Some(ChildState::Exited(255))) => classify_ssh(&stderr),
            (_, Some(ChildState::Exited(EXIT_NO_DIR))) => (
                SshFailure::RemoteFiles,
                format!(
                    "could not make a private directory in {} on the host; choose another \
                     with SshHost::remote_temp_dir",
                    self.remote_dir
                ),
            ),
            (_, Some(ChildState::Exited(EXIT_NO_WRITE))) => (
                SshFailure::RemoteFiles,
                "could not write the bootstrap binary on the host (disk full?)".to_owned(),
            ),
            (_, Some(ChildState::Exited(EXIT_NOEXEC))) => (
                SshFailure::NoExecutableDirectory,
                format!(
                    "{} and every fallback directory are mounted noexec; give a directory \
                     that allows executing programs with SshHost::remote_temp_dir",
                    self.remote_dir
                ),
            ),
            (Failure::Ended(_), Some(ChildState::Exited(_))) => (
                SshFailure::RemoteShell,
                "the remote command failed before the bootstrap ran: the login shell of the \
                 remote user must run `exec /bin/sh -c '...'` (a POSIX-like shell), and \
                 /bin/sh, mkdir, head, chmod, cat, rm and cp must exist there"
                    .to_owned(),
            ),
            (Failure::Error(e), _) => (SshFailure::Bootstrap, e.to_string()),
            (Failure::Io(what, e), _) => (SshFailure::Bootstrap, format!("{what}: {e}")),
            (Failure::Ended(_), _) => (
                SshFailure::SshFailed,
                "ssh ended before the remote side was ready".to_owned(),
            ),
        };
        Error::Ssh {
            destination: self.destination.clone(),
            kind,
            state,
            stderr,
            hint,
        }
    }
}

/// Completes, as a failure, when ssh ends: raced against each step of a connection.
async fn ssh_ended<T>(process: &AsyncChildProcess) -> std::result::Result<T, Failure> {
    match process.wait().await {
        Ok(state) => Err(Failure::Ended(Some(state))),
        Err(e) => Err(Failure::Error(e)),
    }
}

/// Why a connection failed, before it is turned into an [`Error`].
enum Failure {
    /// ssh (or the remote command) ended; its state if known.
    Ended(Option<ChildState>),
    /// The remote side did not become ready in time.
    TimedOut,
    /// A local operation failed.
    Io(&'static str, std::io::Error),
    /// Another error (a malformed describe, a lost connection).
    Error(Error),
}

/// What ssh's exit status 255 means, from what it wrote.
fn classify_ssh(stderr: &str) -> (SshFailure, String) {
    let has = |s: &str| stderr.contains(s);
    if has("Permission denied") || has("Too many authentication failures") {
        (
            SshFailure::AuthenticationRefused,
            "the host refused our credentials: check the user, the identity file or the \
             agent (ssh runs with BatchMode=yes: no password prompts)"
                .to_owned(),
        )
    } else if has("timed out") {
        (
            SshFailure::Unreachable,
            "the host did not answer within the connect timeout (ssh's ConnectTimeout, set \
             by SshHost::connect_timeout): check that it is up and reachable at that name \
             and port, or allow more time"
                .to_owned(),
        )
    } else if has("Could not resolve")
        || has("Connection refused")
        || has("No route to host")
        || has("Network is unreachable")
        || has("Connection closed by")
        || has("kex_exchange_identification")
    {
        (
            SshFailure::Unreachable,
            "the host could not be reached: check its name, address and port, and that sshd \
             runs there (the wait is bounded by SshHost::connect_timeout)"
                .to_owned(),
        )
    } else if has("forwarding") || has("forward") {
        (
            SshFailure::SshFailed,
            "the unix-socket forward was refused: the host's sshd must allow it \
             (AllowStreamLocalForwarding)"
                .to_owned(),
        )
    } else {
        (
            SshFailure::SshFailed,
            "ssh failed; its message follows".to_owned(),
        )
    }
}

/// The remote command's script: one line, without `'`, `\`, `!` or newlines, so that any
/// login shell that understands `exec /bin/sh -c '...'` passes it on unchanged.
///
/// It reads exactly `size` bytes of binary from its stdin (`head -c`), and from then on
/// takes the end of its stdin as the end of the session: we keep ssh's stdin open while
/// a thread of the connection lives, and sshd closes it when the connection ends, even
/// if ssh was SIGKILLed. A watcher (`cat` on the saved stdin, started before the
/// bootstrap runs) then removes the directories and SIGKILLs the session's process
/// group (sshd made it with `setsid`): the bootstrap may be blocked in a syscall that
/// nothing else would end (a `read` of a pipe, `accept` on a socket nobody will reach),
/// and its children with it. At the bootstrap's normal end the script stops the watcher,
/// removes the directories itself and exits 0, which ends the session.
fn remote_script(tmp: &str, nonce: &str, size: usize) -> String {
    let tmp = tmp.trim_end_matches('/');
    let tmp = if tmp.is_empty() { "/" } else { tmp };
    let clean = "cd /; rm -rf \"$d\"; if test -n \"$x\"; then rm -rf \"$x\"; fi";
    [
        "umask 077".to_owned(),
        format!("d={tmp}/rsyscall-{nonce}"),
        "x=\"\"".to_owned(),
        format!("mkdir \"$d\" || exit {EXIT_NO_DIR}"),
        format!("cd \"$d\" || {{ {clean}; exit {EXIT_NO_DIR}; }}"),
        format!("head -c {size} > b || {{ {clean}; exit {EXIT_NO_WRITE}; }}"),
        format!("chmod 700 b || {{ {clean}; exit {EXIT_NO_WRITE}; }}"),
        "B=\"$d/b\"".to_owned(),
        // Exit status 126: the kernel refused to execute it (noexec).
        "\"$B\" probe 2>/dev/null".to_owned(),
        format!(
            "if test $? -eq 126; then B=\"\"; for p in \"${{XDG_RUNTIME_DIR:-/nonexistent}}\" \
             /dev/shm \"${{HOME:-/nonexistent}}\" /var/tmp; do if test -z \"$B\" && mkdir \
             \"$p/.rsyscall-{nonce}\" 2>/dev/null; then x=\"$p/.rsyscall-{nonce}\"; cp b \
             \"$x/b\"; \"$x/b\" probe 2>/dev/null; if test $? -eq 126; then rm -rf \"$x\"; \
             x=\"\"; else B=\"$x/b\"; fi; fi; done; rm -f b; fi"
        ),
        format!(
            "if test -z \"$B\"; then {clean}; echo \"rsyscall: no directory lets \
             programs be executed\" >&2; exit {EXIT_NOEXEC}; fi"
        ),
        // An asynchronous list gets /dev/null as stdin, before its own redirections: the
        // watcher reads the session's stdin through fd 3.
        "exec 3<&0 0</dev/null".to_owned(),
        // The watcher first stops the rest of the group with SIGTERM (ignoring it itself),
        // so that it cleans alone (the script, racing it, would leave a half-removed
        // directory when killed), then SIGKILLs what ignored or blocked SIGTERM. It acts
        // only when the session is lost, when the script's exit status no longer matters.
        format!(
            "{{ cat > /dev/null; trap \"\" TERM; kill -TERM 0; {clean}; kill -KILL 0; }} <&3 \
             > /dev/null 2>&1 & w=$!; exec 3<&-"
        ),
        format!(
            "\"$B\" socket | {{ if read -r l && test \"$l\" = done; then echo \
             \"rsyscall-ready-{nonce} $B\"; \"$B\" rsyscall; fi; }}"
        ),
        "kill $w 2>/dev/null".to_owned(),
        clean.to_owned(),
    ]
    .join("; ")
}

/// 16 hex digits from the kernel's random source (the name of a directory that must not
/// exist yet; unpredictability only avoids collisions: a taken name fails `mkdir`).
fn nonce() -> String {
    let mut bytes = [0u8; 8];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !filled {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        bytes = (t ^ (u64::from(std::process::id()) << 32)).to_ne_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads one line (without its `\n`) a byte at a time, so that nothing after it is taken
/// from the socket; `None` at end of file.
async fn read_line(sock: &Async<UnixStream>) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let n = (&*sock).read(&mut byte).await?;
        if n == 0 {
            return Ok(if line.is_empty() {
                None
            } else {
                Some(String::from_utf8_lossy(&line).into_owned())
            });
        }
        if byte[0] == b'\n' {
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
        if line.len() < 64 * 1024 {
            line.push(byte[0]);
        }
    }
}

/// The ssh process while a connection is made: SIGKILLed (and reaped in the background)
/// if dropped before [`KillOnDrop::disarm`], so that a dropped or failed `connect` leaves
/// no ssh running (which would wait for us forever).
struct KillOnDrop(Option<AsyncChildProcess>);

impl KillOnDrop {
    fn process(&self) -> &AsyncChildProcess {
        // Some until `disarm`, which consumes the guard.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }

    fn disarm(mut self) -> AsyncChildProcess {
        self.0.take().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(process) = self.0.take() {
            // A process already reaped (a failed connection) is left alone.
            process.abandon(Signal::SIGKILL, Box::new(()));
        }
    }
}

/// The local private directory holding the forward's socket, and the janitor that
/// removes it if this program dies first. Dropping it removes the directory and lets the
/// janitor go.
struct LocalDir {
    dir: PathBuf,
    forward: PathBuf,
    /// The write end of the janitor's stdin: end of file there tells it to clean up.
    janitor: Option<std::process::ChildStdin>,
}

impl LocalDir {
    async fn new(nonce: &str) -> Result<LocalDir> {
        let base = std::env::temp_dir();
        // The forward's path must fit in a sockaddr_un.
        let base = if base.as_os_str().len() > 64 {
            PathBuf::from("/tmp")
        } else {
            base
        };
        let dir = base.join(format!("rsyscall-ssh-{nonce}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io("making a private directory for ssh's forward"))?;
        let forward = dir.join("fwd");
        // A local syscall (the janitor's pidfd) finishes within its first poll: nothing
        // between making the directory and owning it here can be cancelled.
        let janitor = spawn_janitor(&dir).await;
        Ok(LocalDir {
            dir,
            forward,
            janitor,
        })
    }

    fn forward(&self) -> &Path {
        &self.forward
    }
}

impl Drop for LocalDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log::debug!("removing {}: {e}", self.dir.display());
        }
        drop(self.janitor.take());
    }
}

/// Starts `sh`, reading a pipe whose write end only we hold: at end of file (our exit or
/// death, or the write end dropped) it removes `dir` and exits. It is reaped by the
/// service thread, or by init if we died. `None` (logged) if it cannot be started.
async fn spawn_janitor(dir: &Path) -> Option<std::process::ChildStdin> {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("read x; rm -rf -- \"$1\"")
        .arg("rsyscall-ssh-janitor")
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            log::warn!("cannot start the janitor of {}: {e}", dir.display());
            return None;
        }
    };
    let stdin = child.stdin.take();
    let pid = rsyscall_near::Pid::new(child.id() as i32);
    let pidfd = Task::local()
        .pidfd_open(pid, rsyscall_near::PIDFD::empty())
        .await
        .ok()
        .and_then(|fd| fd.into_owned_fd().ok());
    match pidfd {
        Some(pidfd) => crate::service::reap_later(pidfd, Box::new(())),
        None => {
            // Reaped by a thread of its own instead.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
    }
    stdin
}

/// ssh's stderr: kept (the first 64 KiB) while connecting, for errors; copied to this
/// program's stderr once the thread is ready.
struct StderrDrain {
    shared: Arc<Mutex<DrainState>>,
    done: Arc<async_lock::Mutex<()>>,
}

#[derive(Default)]
struct DrainState {
    kept: Vec<u8>,
    forwarding: bool,
}

impl StderrDrain {
    fn start(sock: UnixStream) -> Result<StderrDrain> {
        let sock = Async::new(sock).map_err(io("registering ssh's stderr"))?;
        let shared = Arc::new(Mutex::new(DrainState::default()));
        let done = Arc::new(async_lock::Mutex::new(()));
        let (state, finished) = (shared.clone(), done.clone());
        let guard = finished.try_lock_arc();
        crate::reaper::spawn(async move {
            let _guard = guard;
            let mut buf = [0u8; 4096];
            loop {
                let n = match (&sock).read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                if st.forwarding {
                    let _ = std::io::stderr().write_all(&buf[..n]);
                } else {
                    let room = STDERR_KEPT.saturating_sub(st.kept.len());
                    st.kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        });
        Ok(StderrDrain { shared, done })
    }

    /// From now on ssh's stderr goes to ours.
    fn forward(&self) {
        let mut st = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::io::stderr().write_all(&st.kept);
        st.kept.clear();
        st.forwarding = true;
    }

    /// What ssh wrote, once its stderr ended (bounded: ssh is dead or killed by then).
    async fn finish(&self) -> String {
        let _ = futures_lite::future::or(
            async {
                drop(self.done.lock().await);
            },
            async {
                async_io::Timer::after(Duration::from_secs(2)).await;
            },
        )
        .await;
        let st = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&st.kept).into_owned()
    }
}

/// Keeps our end of ssh's stdin open until ssh closes its own (it exits), in the
/// background: the remote script takes the end of its stdin as the loss of the session
/// (see `remote_script`), which must come only from ssh's (or sshd's) end, never from us
/// while the remote thread may still be ending on its own.
fn hold_until_closed(stdin: UnixStream) {
    // ssh never writes there: readable (end of file) means its end is closed.
    match Async::new(stdin) {
        Ok(stdin) => crate::reaper::spawn(async move {
            let _ = stdin.readable().await;
        }),
        Err(e) => log::warn!("watching ssh's stdin: {e}; the remote side may end early"),
    }
}

/// Copies what is left of ssh's stdout (the remote thread's stdout) to ours, in the
/// background, until it ends.
fn forward_stdout(stdout: Async<UnixStream>) {
    crate::reaper::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            match (&stdout).read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = std::io::stdout().write_all(&buf[..n]);
                }
            }
        }
    });
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}
