//! The `SyscallInterface` trait, its error type, and `LocalSyscall`.
//!
//! # Safety
//! The trait's methods are unsafe to call (a syscall's duties are the caller's); the only
//! unsafe code here forwards those duties (`LocalSyscall` to the raw routine, the default
//! `syscall_no_response` to `syscall`). Implementing the trait is safe: nothing trusts an
//! implementation's answers until someone promises, with an `unsafe` constructor
//! (`rsyscall_handle::Task::new`, `rsyscall_handle::Memory::new`, `rsyscall_far::Task::new`),
//! that it runs real syscalls in the process it is said to reach.
#![allow(unsafe_code)]

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::Errno;
use crate::trace::{self, ThreadKind, ThreadLabel};
pub use rsyscall_server::proto::Request;

/// Why a syscall did not produce a return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyscallError {
    /// The kernel returned an error number. Displayed as the errno itself, which is not
    /// also given as a source, so that a report walking the chain prints it once.
    #[error(transparent)]
    Errno(#[from] Errno),
    /// The connection to the process running the syscall was lost (the process died, or
    /// exec'd or exited and its server socket was shut down). The request may or may not
    /// have run. Every pending and later request on that connection fails this way.
    #[error(
        "connection to the syscall server was lost (the process exited, exec'd or was killed); the request may or may not have run; this thread is gone, make a new one"
    )]
    Hangup,
    /// The request never left this process, so it certainly did not run.
    #[error("syscall request was not sent: {0}")]
    NotSent(NotSent),
    /// The server answered a value no kernel returns for this syscall (an fd or pid that
    /// is negative or beyond `int`, a size beyond the address space...): the server is
    /// broken or lying, and what the syscall did is unknown.
    #[error("the syscall server answered {0:#x}, which this syscall never returns")]
    OutOfRange(i64),
}

/// Why a request was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotSent {
    /// The connection had been closed or shut down by this side before the request.
    #[error("the connection was closed by this side; make a new thread to run more syscalls")]
    Closed,
    /// The request was cancelled before any of its bytes were written.
    #[error("the request was cancelled before it was written")]
    Cancelled,
}

impl SyscallError {
    /// The errno, if the kernel returned one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            SyscallError::Errno(e) => Some(*e),
            _ => None,
        }
    }

    /// Whether the syscall was lost with its connection ([`SyscallError::Hangup`]).
    pub fn is_hangup(&self) -> bool {
        matches!(self, SyscallError::Hangup)
    }
}

impl From<SyscallError> for std::io::Error {
    fn from(e: SyscallError) -> Self {
        match e {
            SyscallError::Errno(errno) => errno.into(),
            SyscallError::Hangup => std::io::Error::new(std::io::ErrorKind::BrokenPipe, e),
            SyscallError::NotSent(_) => std::io::Error::new(std::io::ErrorKind::NotConnected, e),
            SyscallError::OutOfRange(_) => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }
    }
}

/// The result of one syscall: the non-negative raw return value, or why there is none.
pub type SyscallResult = Result<i64, SyscallError>;

/// The future returned by [`SyscallInterface::syscall`].
pub type SyscallFuture<'a> = Pin<Box<dyn Future<Output = SyscallResult> + Send + 'a>>;

/// Something that runs syscalls in one particular process: the local process itself
/// ([`LocalSyscall`]) or a remote syscall server reached over a connection.
///
/// Object safe, `Send + Sync`; the futures it returns are `Send`, so it works under any
/// executor.
pub trait SyscallInterface: Send + Sync + fmt::Debug {
    /// Runs `request` in the target process and returns the decoded result.
    ///
    /// # Safety
    /// The syscall runs with full power in the target process. When the target shares its
    /// address space or fd table with this process (the local process, or a clone child),
    /// the caller must ensure the syscall upholds Rust's memory and I/O safety rules here:
    /// pointers are valid for what the kernel does with them, and fds closed or replaced
    /// are not owned by other code.
    unsafe fn syscall(&self, request: Request) -> SyscallFuture<'_>;

    /// Runs `request` knowing that, if it succeeds, no response comes back (`exit`,
    /// `execve`): the loss of the connection after sending counts as success and gives
    /// `Ok(0)`. Interfaces that run syscalls in the calling process never return from a
    /// successful exec, so they need no special handling. An interface that can tell a
    /// request refused unsent (the connection was already lost) from one lost after it was
    /// sent should override this and keep the former an error, as `SyscallConnection` does.
    ///
    /// # Safety
    /// As for [`SyscallInterface::syscall`].
    unsafe fn syscall_no_response(&self, request: Request) -> SyscallFuture<'_> {
        // SAFETY: forwarded from the caller.
        let fut = unsafe { self.syscall(request) };
        Box::pin(async move {
            match fut.await {
                Err(SyscallError::Hangup) => Ok(0),
                other => other,
            }
        })
    }

    /// Runs `request`, a syscall whose non-negative result is a new fd in the target's
    /// table (`openat`, `socket`...). If the future is dropped after the request was sent,
    /// nobody owns that fd: the interface closes it once the result arrives. The default
    /// is [`SyscallInterface::syscall`], right for interfaces whose syscalls are over
    /// before their future can be dropped.
    ///
    /// # Safety
    /// As for [`SyscallInterface::syscall`]; the result must be a new fd, owned by nobody
    /// but the caller.
    unsafe fn syscall_new_fd(&self, request: Request) -> SyscallFuture<'_> {
        // SAFETY: forwarded from the caller.
        unsafe { self.syscall(request) }
    }

    /// Runs `request` like [`SyscallInterface::syscall`], and records its result in `cell`
    /// as soon as it is known, whether or not the future is still there to return it. For
    /// a syscall that writes something to memory even when it fails (`socketpair` writes
    /// the fd numbers it reserved before it can fail, and frees them again): code that
    /// acts on that memory after the future was dropped checks the cell first.
    ///
    /// An interface that frees memory given to [`SyscallInterface::keep_until_answered`]
    /// must have recorded, by then, the result of every request sent this way before that
    /// call (the result of a request never sent, or lost with the connection, is never
    /// recorded). The default records the result when the future returns it: right for
    /// interfaces whose syscalls are over before their future can be dropped, and for
    /// those that never free kept memory.
    ///
    /// # Safety
    /// As for [`SyscallInterface::syscall`].
    unsafe fn syscall_recorded(&self, request: Request, cell: ResultCell) -> SyscallFuture<'_> {
        // SAFETY: forwarded from the caller.
        let fut = unsafe { self.syscall(request) };
        Box::pin(async move {
            let result = fut.await;
            cell.set(result);
            result
        })
    }

    /// Whether syscalls run in the calling process itself, in which case every address
    /// passed to them is an address in this process.
    fn is_local(&self) -> bool {
        false
    }

    /// Whether the interface is known to have lost its process (after which every request
    /// fails with [`SyscallError::Hangup`]). Interfaces that cannot lose their process say
    /// `false`.
    fn is_hung_up(&self) -> bool {
        false
    }

    /// Whether a request made now would go out now: not hung up, and (for an interface
    /// that can be disconnected and reconnected, such as a persistent thread's) connected.
    /// Background work that must not wait for a reconnect checks this first.
    fn can_send_now(&self) -> bool {
        !self.is_hung_up()
    }

    /// Takes `keep` (memory lent to a request whose future was dropped before its result
    /// came) and drops it once every request made so far through this interface is over;
    /// leaks it if that can never be known (the connection was lost). The default leaks
    /// it at once: an interface that cannot tell when its syscalls are over must never
    /// free what they may still use.
    fn keep_until_answered(&self, keep: Box<dyn Any + Send>) {
        std::mem::forget(keep);
    }

    /// Names the thread this interface runs syscalls in, for the `trace` record every
    /// syscall gets (see [`crate::trace`]). Set by the thread layer once it knows the
    /// thread's kind and pid. The default ignores it.
    fn set_label(&self, label: ThreadLabel) {
        let _ = label;
    }

    /// The label given with [`SyscallInterface::set_label`], or what the interface knows of
    /// itself.
    fn label(&self) -> ThreadLabel {
        ThreadLabel::UNLABELLED
    }
}

/// Where a syscall interface records the result of one request as soon as it is known,
/// even after the request's future was dropped (see
/// [`SyscallInterface::syscall_recorded`]). Clones share the record; the first result set
/// stays.
#[derive(Debug, Clone, Default)]
pub struct ResultCell(std::sync::Arc<std::sync::OnceLock<SyscallResult>>);

impl ResultCell {
    /// An empty cell.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `result`, unless a result was recorded already.
    pub fn set(&self, result: SyscallResult) {
        let _ = self.0.set(result);
    }

    /// The recorded result, if the request's result is known.
    pub fn get(&self) -> Option<SyscallResult> {
        self.0.get().copied()
    }
}

/// Runs syscalls in the calling thread of the local process through the raw syscall
/// routine: no allocation beyond the returned box, no locks, no libc.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalSyscall;

impl LocalSyscall {
    /// Runs `request` synchronously in the calling thread, and logs it at `trace` like every
    /// syscall of the library (see [`crate::trace`]), labelled as run in the local process.
    /// When that level is off this costs one check of the log level.
    ///
    /// # Safety
    /// As for [`SyscallInterface::syscall`], for the local process.
    #[inline]
    pub unsafe fn syscall_sync(&self, request: Request) -> SyscallResult {
        let [a1, a2, a3, a4, a5, a6] = request.args;
        // SAFETY: the caller upholds the syscall's safety requirements.
        let ret = unsafe { rsyscall_server::raw_syscall(a1, a2, a3, a4, a5, a6, request.number) };
        let result = Errno::from_ret(ret).map_err(SyscallError::Errno);
        if trace::syscall_trace_enabled() {
            trace::trace_syscall(self.label(), &request, &result);
        }
        result
    }
}

impl SyscallInterface for LocalSyscall {
    unsafe fn syscall(&self, request: Request) -> SyscallFuture<'_> {
        // SAFETY: forwarded from the caller.
        let result = unsafe { self.syscall_sync(request) };
        Box::pin(std::future::ready(result))
    }

    unsafe fn syscall_recorded(&self, request: Request, cell: ResultCell) -> SyscallFuture<'_> {
        // SAFETY: forwarded from the caller.
        let result = unsafe { self.syscall_sync(request) };
        cell.set(result);
        Box::pin(std::future::ready(result))
    }

    fn is_local(&self) -> bool {
        true
    }

    fn label(&self) -> ThreadLabel {
        ThreadLabel::new(ThreadKind::Local, std::process::id() as i32)
    }

    fn keep_until_answered(&self, keep: Box<dyn Any + Send>) {
        // Every syscall here ran to completion inside `syscall` itself.
        drop(keep);
    }
}
