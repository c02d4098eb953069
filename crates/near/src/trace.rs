//! Logging of syscalls and thread events through the `log` crate.
//!
//! Every syscall a [`SyscallInterface`](crate::SyscallInterface) of this library runs is
//! logged at `trace` level with the target [`SYSCALL_TARGET`], naming the thread it ran in
//! ([`ThreadLabel`]), the syscall, its arguments and its result or errno:
//!
//! ```text
//! [clone child 4242] openat(-100, 0x7f3a2c001000, 0x80000, 0, 0, 0) = -1 ENOENT
//! ```
//!
//! Thread creation, exec, exit and hangup are logged at `debug` level with the target
//! [`THREAD_TARGET`]. Both targets start with `rsyscall`, so `RUST_LOG=rsyscall=trace`
//! (with `env_logger`) shows everything. When the level is disabled nothing is formatted.

use std::fmt;

use crate::{Request, SyscallError, SyscallResult};

/// The `log` target of the per-syscall `trace` records.
pub const SYSCALL_TARGET: &str = "rsyscall::syscall";

/// The `log` target of the thread-lifecycle `debug` records (creation, exec, exit, hangup).
pub const THREAD_TARGET: &str = "rsyscall::thread";

/// What kind of thread a syscall ran in, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThreadKind {
    /// The local process itself.
    Local,
    /// A child cloned from another thread.
    CloneChild,
    /// A process that connected to a stub server.
    Stub,
    /// A process started by stdin bootstrap.
    StdinBootstrap,
    /// A persistent thread (one that survives its creator's connection).
    Persistent,
    /// The first thread on another host, reached through ssh.
    SshHost,
    /// A process bootstrapped by other means ([`Thread::from_bootstrap`] called directly).
    ///
    /// [`Thread::from_bootstrap`]: https://docs.rs/rsyscall-thread
    Bootstrapped,
    /// A connection nobody labelled (made directly, outside the thread constructors).
    Unlabelled,
}

impl ThreadKind {
    /// The kind as written in logs, such as `"clone child"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadKind::Local => "local",
            ThreadKind::CloneChild => "clone child",
            ThreadKind::Stub => "stub",
            ThreadKind::StdinBootstrap => "stdin bootstrap",
            ThreadKind::Persistent => "persistent",
            ThreadKind::SshHost => "ssh host",
            ThreadKind::Bootstrapped => "bootstrapped",
            ThreadKind::Unlabelled => "connection",
        }
    }
}

impl fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A thread as named in logs: its kind and its pid (as seen from where it was made: the
/// pid clone returned for a clone child, the process's own pid for the others; 0 if not
/// known yet). Displayed as `clone child 4242`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThreadLabel {
    /// The kind of thread.
    pub kind: ThreadKind,
    /// Its pid, or 0 if not known.
    pub pid: i32,
}

impl ThreadLabel {
    /// A label for a thread of `kind` and pid `pid`.
    pub const fn new(kind: ThreadKind, pid: i32) -> Self {
        ThreadLabel { kind, pid }
    }

    /// The label of a connection nobody labelled.
    pub const UNLABELLED: ThreadLabel = ThreadLabel::new(ThreadKind::Unlabelled, 0);
}

impl Default for ThreadLabel {
    fn default() -> Self {
        ThreadLabel::UNLABELLED
    }
}

impl fmt::Display for ThreadLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pid == 0 {
            write!(f, "{} pid ?", self.kind)
        } else {
            write!(f, "{} {}", self.kind, self.pid)
        }
    }
}

/// Whether syscall records are wanted now; check before computing a label.
#[inline]
pub fn syscall_trace_enabled() -> bool {
    log::log_enabled!(target: SYSCALL_TARGET, log::Level::Trace)
}

/// Whether thread-lifecycle records are wanted now.
#[inline]
pub fn thread_debug_enabled() -> bool {
    log::log_enabled!(target: THREAD_TARGET, log::Level::Debug)
}

/// Logs that `request` ran in the thread `label` with `result`, at `trace` level with the
/// target [`SYSCALL_TARGET`]. Cheap to call when that level is disabled; callers whose
/// label costs something to get should check [`syscall_trace_enabled`] first.
pub fn trace_syscall(label: ThreadLabel, request: &Request, result: &SyscallResult) {
    if !syscall_trace_enabled() {
        return;
    }
    log::trace!(
        target: SYSCALL_TARGET,
        "[{label}] {}({}) = {}",
        SyscallName(request.number),
        Args(&request.args),
        Outcome(result),
    );
}

/// Logs a thread-lifecycle event of the thread `label` at `debug` level with the target
/// [`THREAD_TARGET`], as `[label] what`.
pub fn debug_thread(label: ThreadLabel, what: fmt::Arguments<'_>) {
    log::debug!(target: THREAD_TARGET, "[{label}] {what}");
}

/// A syscall number, shown as its name (`syscall_N` if it has none).
struct SyscallName(i64);

impl fmt::Display for SyscallName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::syscall_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "syscall_{}", self.0),
        }
    }
}

/// One raw value: decimal when small (fds, flags, counts, `AT_FDCWD`), hex when it looks
/// like an address or a mask.
struct Value(i64);

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (-4096..=65535).contains(&self.0) {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// The six arguments of a request.
struct Args<'a>(&'a [i64; 6]);

impl fmt::Display for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", Value(*a))?;
        }
        Ok(())
    }
}

/// A result: the value, `-1 ENAME`, or why there is none.
struct Outcome<'a>(&'a SyscallResult);

impl fmt::Display for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(v) => write!(f, "{}", Value(*v)),
            Err(SyscallError::Errno(e)) => write!(f, "-1 {}", e.name()),
            Err(SyscallError::Hangup) => f.write_str("? (hangup)"),
            Err(SyscallError::NotSent(_)) => f.write_str("? (not sent)"),
            Err(SyscallError::OutOfRange(v)) => write!(f, "? (out of range: {v:#x})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Errno;

    #[test]
    fn formats_names_args_and_results() {
        let req = Request::new(libc::SYS_openat, [-100, 0x7f00_0000_1000, 0x80000, 0, 0, 0]);
        let s = format!(
            "{}({}) = {}",
            SyscallName(req.number),
            Args(&req.args),
            Outcome(&Err(SyscallError::Errno(Errno::ENOENT)))
        );
        assert_eq!(
            s,
            "openat(-100, 0x7f0000001000, 0x80000, 0, 0, 0) = -1 ENOENT"
        );
        assert_eq!(SyscallName(400).to_string(), "syscall_400");
        assert_eq!(
            ThreadLabel::new(ThreadKind::CloneChild, 42).to_string(),
            "clone child 42"
        );
        assert_eq!(ThreadLabel::UNLABELLED.to_string(), "connection pid ?");
    }
}
