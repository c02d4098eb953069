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
    /// A helper binary could not be found, written out or run. The helpers are built into
    /// the library and written to a private directory under the temp dir on first use;
    /// `$RSYSCALL_LIBEXEC_DIR`, if set, names a directory to take them from instead (see
    /// `rsyscall_thread::libexec`). `detail` says which of these failed and what to do.
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

impl Error {
    /// The [`std::io::ErrorKind`] that fits this error (what the conversion to
    /// [`std::io::Error`] gives): the errno's kind for a failed syscall, and for the others:
    ///
    /// | error | kind |
    /// |---|---|
    /// | a syscall lost with its connection ([`SyscallError::Hangup`](near::SyscallError::Hangup)) | `ConnectionAborted` |
    /// | a syscall not sent, or answered out of range | `NotConnected`, `InvalidData` |
    /// | [`Error::Mismatch`], [`Error::InvalidArgument`], [`Error::UseAfterFree`] | `InvalidInput` |
    /// | [`Error::NotFound`], [`Error::Helper`], [`Error::ChildGone`] | `NotFound` |
    /// | [`Error::ChildBusy`] | `ResourceBusy` |
    /// | [`Error::OutOfMemory`] | `OutOfMemory` |
    /// | [`Error::Handshake`] | `InvalidData` |
    /// | [`Error::Ssh`] | by [`SshFailure`]: `NotFound` (no client), `PermissionDenied` (refused, no executable directory), `HostUnreachable`, `TimedOut`, `InvalidData` (bootstrap), else `Other` |
    /// | [`Error::Io`] | its source's kind |
    /// | [`Error::UncleanExit`], [`Error::LauncherFailed`] | `Other` |
    pub fn io_kind(&self) -> std::io::ErrorKind {
        use std::io::ErrorKind as K;
        match self {
            Error::Syscall { source, .. } => match source {
                near::SyscallError::Errno(errno) => std::io::Error::from(*errno).kind(),
                near::SyscallError::Hangup => K::ConnectionAborted,
                near::SyscallError::NotSent(_) => K::NotConnected,
                near::SyscallError::OutOfRange(_) => K::InvalidData,
            },
            Error::Mismatch(_) | Error::InvalidArgument { .. } | Error::UseAfterFree { .. } => {
                K::InvalidInput
            }
            Error::NotFound { .. } | Error::Helper { .. } | Error::ChildGone { .. } => K::NotFound,
            Error::ChildBusy { .. } => K::ResourceBusy,
            Error::OutOfMemory { .. } => K::OutOfMemory,
            Error::Handshake { .. } => K::InvalidData,
            Error::Ssh { kind, .. } => match kind {
                SshFailure::NoClient => K::NotFound,
                SshFailure::AuthenticationRefused | SshFailure::NoExecutableDirectory => {
                    K::PermissionDenied
                }
                SshFailure::Unreachable => K::HostUnreachable,
                SshFailure::TimedOut => K::TimedOut,
                SshFailure::Bootstrap => K::InvalidData,
                SshFailure::SshFailed | SshFailure::RemoteShell | SshFailure::RemoteFiles => {
                    K::Other
                }
            },
            Error::Io { source, .. } => source.kind(),
            Error::UncleanExit { .. } | Error::LauncherFailed { .. } => K::Other,
        }
    }
}

/// The `io::Error` std code expects: a failed syscall becomes the OS error of its errno
/// (`raw_os_error()` is the errno, as for std's own calls; the syscall's name and pid,
/// which std's type has no room for, are lost: format the [`Error`] first to keep them);
/// [`Error::Io`] gives back its source; every other error is wrapped, with the kind
/// [`Error::io_kind`] gives, and comes back out with `into_inner` and `downcast`.
///
/// # Examples
///
/// ```
/// # use rsyscall_handle::{Error, Task};
/// # use rsyscall_near::O;
/// # async_io::block_on(async {
/// let err: Error = Task::local().open("/nonexistent", O::RDONLY, 0).await.unwrap_err();
/// let io = std::io::Error::from(err);
/// assert_eq!(io.raw_os_error(), Some(libc::ENOENT));
/// assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
///
/// let io = std::io::Error::from(Error::invalid("f", "bad"));
/// assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
/// assert!(matches!(
///     *io.into_inner().unwrap().downcast::<Error>().unwrap(),
///     Error::InvalidArgument { what: "f", .. }
/// ));
/// # });
/// ```
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Syscall {
                source: near::SyscallError::Errno(errno),
                ..
            } => std::io::Error::from(errno),
            Error::Io { source, .. } => source,
            other => std::io::Error::new(other.io_kind(), other),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use rsyscall_near::O;

    use super::*;
    use crate::Task;

    #[test]
    fn syscall_errors_become_os_errors_with_their_errno() {
        async_io::block_on(async {
            let task = Task::local();
            let enoent = task.open("/nonexistent/x", O::RDONLY, 0).await.unwrap_err();
            let io = std::io::Error::from(enoent);
            assert_eq!(io.raw_os_error(), Some(libc::ENOENT));
            assert_eq!(io.kind(), ErrorKind::NotFound);
            let dir = std::env::temp_dir();
            let eexist = task
                .open(&*dir, O::CREAT | O::EXCL | O::WRONLY, 0o600)
                .await
                .unwrap_err();
            assert_eq!(eexist.io_kind(), ErrorKind::AlreadyExists);
            let io = std::io::Error::from(eexist);
            assert_eq!(io.raw_os_error(), Some(libc::EEXIST));
            assert_eq!(io.kind(), ErrorKind::AlreadyExists);
        });
    }

    #[test]
    fn other_errors_keep_a_fitting_kind_and_come_back_out() {
        let syscall = |source| Error::Syscall {
            syscall: "read",
            pid: 1,
            source,
        };
        let cases = [
            (
                syscall(near::SyscallError::Hangup),
                ErrorKind::ConnectionAborted,
            ),
            (
                syscall(near::SyscallError::NotSent(near::NotSent::Closed)),
                ErrorKind::NotConnected,
            ),
            (
                syscall(near::SyscallError::OutOfRange(-1)),
                ErrorKind::InvalidData,
            ),
            (Error::invalid("f", "bad"), ErrorKind::InvalidInput),
            (Error::ChildBusy { pid: 5 }, ErrorKind::ResourceBusy),
            (
                Error::NotFound {
                    name: "nope".into(),
                    searched: vec![],
                },
                ErrorKind::NotFound,
            ),
            (
                Error::Handshake {
                    helper: "stub",
                    detail: "short".into(),
                },
                ErrorKind::InvalidData,
            ),
            (
                Error::UncleanExit {
                    command: "false".into(),
                    state: ChildState::Exited(1),
                },
                ErrorKind::Other,
            ),
        ];
        for (e, kind) in cases {
            let shown = e.to_string();
            let io = std::io::Error::from(e);
            assert_eq!(io.kind(), kind, "{shown}");
            assert_eq!(io.raw_os_error(), None);
            let back = io.into_inner().unwrap().downcast::<Error>().unwrap();
            assert_eq!(back.to_string(), shown);
        }
        let ssh = |kind| Error::Ssh {
            destination: "h".into(),
            kind,
            state: None,
            stderr: String::new(),
            hint: String::new(),
        };
        for (failure, kind) in [
            (SshFailure::NoClient, ErrorKind::NotFound),
            (
                SshFailure::AuthenticationRefused,
                ErrorKind::PermissionDenied,
            ),
            (SshFailure::Unreachable, ErrorKind::HostUnreachable),
            (SshFailure::TimedOut, ErrorKind::TimedOut),
            (SshFailure::Bootstrap, ErrorKind::InvalidData),
            (SshFailure::SshFailed, ErrorKind::Other),
        ] {
            assert_eq!(std::io::Error::from(ssh(failure)).kind(), kind);
        }
        // An Io error is its source, errno included.
        let io = std::io::Error::from(Error::Io {
            what: "x",
            source: std::io::Error::from_raw_os_error(libc::EPIPE),
        });
        assert_eq!(io.raw_os_error(), Some(libc::EPIPE));
        assert_eq!(io.kind(), ErrorKind::BrokenPipe);
    }
}
