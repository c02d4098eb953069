//! Logging of syscalls and thread events through the `log` crate.
//!
//! Every syscall this library runs in a thread is logged at `trace` level with the target
//! [`SYSCALL_TARGET`], naming the thread it ran in ([`ThreadLabel`]), the syscall, its
//! arguments and its result or errno:
//!
//! ```text
//! [clone child 4242] openat(-100, 0x7f3a2c001000, 0x80000, 0) = -1 ENOENT
//! [local 4200] getpid() = 4200
//! [local 4200] clone(0x201111, 0x7f3a2c200fc0, 0x7f3a2c201004, 0x7f3a2c201000, 0) = 4243
//! ```
//!
//! That is every request sent through a [`SyscallInterface`](crate::SyscallInterface) of
//! this library ([`LocalSyscall`](crate::LocalSyscall), including its synchronous
//! [`syscall_sync`](crate::LocalSyscall::syscall_sync), and the thread crate's
//! connections), plus what the library runs locally on a thread's behalf through
//! `syscall_sync`: the clones of the local process (issued on the service thread, logged as
//! run in the local process, with the child's pid as result), the unmapping of a dropped
//! local mapping, and the signalling and reaping of local children. Not logged: the
//! transport's own plumbing, which runs in no thread of yours: the `sendto`/`recvfrom` of a
//! connection's socket, the socketpairs and pidfd copies that set connections up, the
//! service thread's eventfd and `epoll_wait`, and the `epoll_ctl` of the `async-io`
//! reactor.
//!
//! # Format
//! `[KIND PID] NAME(ARGS) = RESULT`:
//! - `KIND PID` is the [`ThreadLabel`] (`pid ?` when the pid is not known yet).
//! - `NAME` is the x86-64 name of the syscall ([`crate::syscall_name`]), or `syscall_N`
//!   for a number without one.
//! - `ARGS` are the arguments the syscall takes: as many as
//!   [`syscall_arg_count`](crate::syscall_arg_count) says (`getpid()`, `close(5)`,
//!   `fcntl(3, 1030, 0)`), more if a later register is not zero, so a nonzero value is
//!   never hidden; for a syscall missing from that table, the six registers with the
//!   trailing zeros left out. Each is the raw register: in decimal when it lies in
//!   `-4096..=65535` (fds, small counts, flags and modes, `AT_FDCWD` as `-100`, `-1`), in
//!   hex otherwise (addresses, large masks, negative values as their 64-bit two's
//!   complement). Pointed-to memory (paths, structs) is not read.
//! - `RESULT` is the return value, in decimal up to `0xffffffff` (counts, fds, pids) and
//!   in hex above (addresses from `mmap`), `-1 ENAME` for an errno (by name,
//!   [`Errno::name`](crate::Errno::name)), or `? (hangup)`, `? (not sent)`,
//!   `? (out of range: 0x...)` when there is no return value.
//!
//! Thread creation, exec, exit and hangup are logged at `debug` level with the target
//! [`THREAD_TARGET`], as `[KIND PID] what happened`. Both targets start with `rsyscall`, so
//! `RUST_LOG=rsyscall=trace` (with `env_logger`) shows everything. When the level is
//! disabled nothing is formatted.

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
        Args(request),
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

/// The arguments of a request: as many as the syscall takes, more if a later one is not
/// zero; for a syscall of unknown arity, up to the last nonzero one.
struct Args<'a>(&'a Request);

impl Args<'_> {
    /// How many of the six registers to print.
    fn count(&self) -> usize {
        let used = self
            .0
            .args
            .iter()
            .rposition(|a| *a != 0)
            .map_or(0, |i| i + 1);
        crate::syscall_arg_count(self.0.number).map_or(used, |n| n.max(used))
    }
}

impl fmt::Display for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.args[..self.count()].iter().enumerate() {
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
            // Counts and ids in decimal; addresses (from mmap) in hex.
            Ok(v) if *v <= 0xffff_ffff => write!(f, "{v}"),
            Ok(v) => write!(f, "{v:#x}"),
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

    /// The call as traced: `name(args)`.
    fn call(number: i64, args: [i64; 6]) -> String {
        let req = Request::new(number, args);
        format!("{}({})", SyscallName(req.number), Args(&req))
    }

    #[test]
    fn formats_names_args_and_results() {
        let s = format!(
            "{} = {}",
            call(libc::SYS_openat, [-100, 0x7f00_0000_1000, 0x80000, 0, 0, 0]),
            Outcome(&Err(SyscallError::Errno(Errno::ENOENT)))
        );
        assert_eq!(s, "openat(-100, 0x7f0000001000, 0x80000, 0) = -1 ENOENT");
        assert_eq!(SyscallName(400).to_string(), "syscall_400");
        assert_eq!(
            ThreadLabel::new(ThreadKind::CloneChild, 42).to_string(),
            "clone child 42"
        );
        assert_eq!(ThreadLabel::UNLABELLED.to_string(), "connection pid ?");
    }

    #[test]
    fn prints_the_arguments_the_syscall_takes() {
        assert_eq!(call(libc::SYS_getpid, [0; 6]), "getpid()");
        assert_eq!(call(libc::SYS_close, [5, 0, 0, 0, 0, 0]), "close(5)");
        assert_eq!(
            call(libc::SYS_fcntl, [3, 1030, 0, 0, 0, 0]),
            "fcntl(3, 1030, 0)"
        );
        assert_eq!(call(libc::SYS_exit, [0; 6]), "exit(0)");
        // A nonzero register beyond the syscall's arity is shown, not hidden.
        assert_eq!(
            call(libc::SYS_getpid, [0, 0, 7, 0, 0, 0]),
            "getpid(0, 0, 7)"
        );
        // Unknown arity: up to the last nonzero register.
        assert_eq!(call(400, [1, 2, 0, 0, 0, 0]), "syscall_400(1, 2)");
        assert_eq!(call(400, [0; 6]), "syscall_400()");
        // Negative and large values.
        assert_eq!(call(libc::SYS_kill, [-1, 9, 0, 0, 0, 0]), "kill(-1, 9)");
        assert_eq!(
            call(libc::SYS_lseek, [3, -5000, 2, 0, 0, 0]),
            "lseek(3, 0xffffffffffffec78, 2)"
        );
        assert_eq!(Outcome(&Ok(70000)).to_string(), "70000");
        assert_eq!(Outcome(&Ok(0x7f00_0000_1000)).to_string(), "0x7f0000001000");
    }
}
