//! The error type of the handle and thread layers.

use std::fmt;

use rsyscall_far as far;
use rsyscall_near as near;

use crate::child_state::ChildState;

/// Everything that can go wrong using a handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A syscall failed, or its connection was lost.
    #[error("{syscall} in pid {pid}: {source}")]
    Syscall {
        /// The syscall's name.
        syscall: &'static str,
        /// The pid of the task it ran in (in that task's own pid namespace).
        pid: i32,
        /// What happened.
        source: near::SyscallError,
    },
    /// An id was used through a task of another namespace; nothing was sent.
    #[error(transparent)]
    Mismatch(#[from] far::MismatchError),
    /// An argument the kernel would misread; nothing was sent.
    #[error("invalid argument to {what}: {detail}")]
    InvalidArgument {
        /// The function or syscall.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A child process did not exit with status 0.
    #[error("{command} exited uncleanly: {state}")]
    UncleanExit {
        /// The command it ran (or a description of the process).
        command: String,
        /// How it ended.
        state: ChildState,
    },
    /// A child process is already being waited on or signalled by another caller.
    #[error("child process {pid} is already being waited on or killed by another caller")]
    ChildBusy {
        /// Its pid.
        pid: i32,
    },
    /// A child process has already died and been reaped: it can no longer be signalled.
    #[error(
        "child process {pid} has already been reaped ({state}); it can no longer be signalled or waited on"
    )]
    ChildGone {
        /// Its pid.
        pid: i32,
        /// How it ended.
        state: ChildState,
    },
    /// A far pointer was used after its allocation was freed (or outside any allocation).
    #[error("use after free: {len} bytes at {addr:?} are not inside a live allocation")]
    UseAfterFree {
        /// The address.
        addr: near::Address,
        /// The length of the access.
        len: usize,
    },
    /// Memory could not be allocated.
    #[error("out of memory in {space}: {detail}")]
    OutOfMemory {
        /// The address space.
        space: far::AddressSpace,
        /// What failed.
        detail: String,
    },
    /// A helper binary (see `cargo xtask build-server`) could not be found or run.
    #[error("helper binary {name}: {detail}")]
    Helper {
        /// The binary's name.
        name: &'static str,
        /// What is wrong and what to do.
        detail: String,
    },
    /// A helper process (a stub or bootstrap, or anything speaking their handshake) broke
    /// the protocol: a truncated or malformed describe struct, the wrong number of fds, a
    /// string too long, or nothing at all (PROTOCOL.md sections 3 and 6).
    #[error("handshake with {helper} failed: {detail}")]
    Handshake {
        /// The helper (or the handshake) concerned.
        helper: &'static str,
        /// What it sent or failed to send, and what to check.
        detail: String,
    },
    /// The program launching a helper (for example `sudo`) ended before the helper
    /// described itself: it refused, failed, or never ran the helper.
    #[error("{command} ended before running the helper ({state}); it wrote on stderr: {stderr:?}")]
    LauncherFailed {
        /// The launching command line.
        command: String,
        /// How it ended.
        state: ChildState,
        /// What it wrote on its standard error (at most 64 KiB, lossily decoded).
        stderr: String,
    },
    /// A program was not found: no executable regular file of that name in any directory
    /// searched (for a name containing `/`, at that path).
    #[error("{name:?} is not an executable file in {}", join_paths(.searched))]
    NotFound {
        /// The name looked up.
        name: String,
        /// Where it was looked for, in order: the `PATH` directories, or the path itself
        /// for a name containing `/`.
        searched: Vec<std::path::PathBuf>,
    },
    /// A thread on another host could not be made: ssh failed, or the remote side could
    /// not run the bootstrap. `kind` says which; `stderr` is what ssh (and the remote
    /// command) wrote; `hint` says what to do.
    #[error("ssh to {destination}: {kind}: {hint}; ssh wrote on stderr: {stderr:?}")]
    Ssh {
        /// The destination as given to ssh.
        destination: String,
        /// What went wrong.
        kind: SshFailure,
        /// How the ssh process ended, if it did.
        state: Option<ChildState>,
        /// What ssh wrote on its standard error (at most 64 KiB, lossily decoded).
        stderr: String,
        /// What to do about it.
        hint: String,
    },
    /// An operation on the local process through std failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// What went wrong in making a thread on another host ([`Error::Ssh`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SshFailure {
    /// No ssh client program was found or could be run.
    NoClient,
    /// The server refused us (authentication or authorization).
    AuthenticationRefused,
    /// The host could not be reached: a name that does not resolve, a refused or
    /// timed-out connection (bounded by ssh's `ConnectTimeout`).
    Unreachable,
    /// ssh failed in another way (a bad option or config, a lost connection).
    SshFailed,
    /// The remote login shell could not run our command: it is not a POSIX-like shell
    /// (`exec /bin/sh -c '...'` is what it is given), or `/bin/sh` is missing.
    RemoteShell,
    /// The remote side could not make its private directory or write the bootstrap there.
    RemoteFiles,
    /// No remote directory we tried lets a program be executed (all mounted `noexec`).
    NoExecutableDirectory,
    /// The bootstrap ran but the handshake failed.
    Bootstrap,
    /// The connection did not become ready in time.
    TimedOut,
}

impl fmt::Display for SshFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SshFailure::NoClient => "no ssh client",
            SshFailure::AuthenticationRefused => "authentication refused",
            SshFailure::Unreachable => "host unreachable",
            SshFailure::SshFailed => "ssh failed",
            SshFailure::RemoteShell => "the remote shell could not run the bootstrap command",
            SshFailure::RemoteFiles => "the remote side could not write the bootstrap",
            SshFailure::NoExecutableDirectory => "no remote directory allows executing programs",
            SshFailure::Bootstrap => "the remote bootstrap failed",
            SshFailure::TimedOut => "timed out",
        })
    }
}

/// `paths` joined with `:`, as in `PATH`.
fn join_paths(paths: &[std::path::PathBuf]) -> String {
    let parts: Vec<_> = paths.iter().map(|p| p.to_string_lossy()).collect();
    format!("[{}]", parts.join(":"))
}

impl Error {
    /// The errno of a failed syscall.
    pub fn errno(&self) -> Option<near::Errno> {
        match self {
            Error::Syscall { source, .. } => source.errno(),
            _ => None,
        }
    }

    /// Whether a syscall was lost with its connection (the process died, exec'd or exited).
    pub fn is_hangup(&self) -> bool {
        matches!(
            self,
            Error::Syscall {
                source: near::SyscallError::Hangup,
                ..
            }
        )
    }

    /// An [`Error::InvalidArgument`].
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            detail: detail.into(),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Syscall {
                source: near::SyscallError::Errno(errno),
                ..
            } => std::io::Error::new(std::io::Error::from(errno).kind(), e),
            Error::Io { source, .. } => source,
            Error::InvalidArgument { .. } => {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
            }
            other => std::io::Error::other(other),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
