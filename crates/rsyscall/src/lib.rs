//! rsyscall: process-independent, type-safe, async access to Linux syscalls.
//!
//! Every syscall is a method on a handle to some process: the local one
//! ([`local_thread`]), or a child made with [`Thread::clone`], driven over a connection
//! to a tiny syscall server running inside it. Create and configure processes with the full
//! power of Linux, then [`ChildThread::exec`] a program in them and wait for it with
//! [`AsyncChildProcess`].
//!
//! ```no_run
//! use rsyscall::{local_thread, CLONE};
//!
//! # fn main() -> Result<(), rsyscall::Error> {
//! async_io::block_on(async {
//!     let parent = local_thread();
//!     let child = parent.clone(CLONE::empty()).await?;
//!     println!("child pid {}", child.task().getpid().await?);
//!     let sh = parent.environ().which("sh").await?.args(["-c", "exit 0"]);
//!     child.exec(sh).await?.check().await?;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! The layers are re-exported as modules ([`near`], [`far`], [`handle`], [`thread`]) for
//! users who need a lower level.
//!
//! # Std and async interop
//! - [`thread::AsyncFileDescriptor`] implements futures' `AsyncRead` and `AsyncWrite`
//!   (`futures_lite::io::copy`, `read_to_end`, tokio's compat layer) on an fd of any thread.
//! - A handle to a local fd converts to and from `OwnedFd`; [`LocalFileDescriptor`] (a
//!   handle checked to be of the local table) implements `AsFd`.
//! - [`ChildState`] converts to `std::process::ExitStatus`; [`Error`] to `std::io::Error`,
//!   with `raw_os_error()` set for a failed syscall.
//! - Flag sets ([`CLONE`], [`O`], ...) are `bitflags` types: iteration, `Debug`, parsing.
//!
//! # Invariants
//! - This crate only re-exports: every type here is the layer crate's own, so values move
//!   freely between code written against the facade and code written against a layer.
//! - The invariants of each layer hold here unchanged; see each crate's documentation.
#![deny(unsafe_code)]

pub use rsyscall_far as far;
pub use rsyscall_handle as handle;
pub use rsyscall_near as near;
pub use rsyscall_thread as thread;

pub use rsyscall_handle::structs;
pub use rsyscall_handle::{
    Allocation, ChildProcess, ChildState, Error, FileDescriptor, LinearPointer,
    LocalFileDescriptor, MemoryMapping, Pipe, Pointer, Process, ReadablePointer, Result, Task,
    ThreadProcess, WrittenPointer,
};
pub use rsyscall_near::{
    AF, AT, CLOCK, CLONE, Capability, EFD, EPOLL, EPOLL_CTL, EXECVEAT, Errno, FALLOC, FD, IFF, IN,
    LockCmd, LockType, MADV, MAP, MFD, MNT, MS, MSG, O, PIDFD, PROT, Pid, PrioWho, RENAME, RLIMIT,
    RWF, SA, SEEK, SFD, SHUT, SOCK, STATX, Signal, SigprocmaskHow, SockType, TFD, TUN, ThreadKind,
    ThreadLabel, W, WatchDescriptor,
};
pub use rsyscall_thread::{
    AsyncChildProcess, BootstrapParts, ChildThread, CloneOptions, Command, Environment, ExecError,
    HANDSHAKE_TIMEOUT, PersistentError, PersistentThread, StubServer, THREAD_UNSHARE_FLAGS,
    TempDir, Thread, local_thread, stdin_bootstrap, stdin_bootstrap_with_helper,
    write_user_mappings,
};
