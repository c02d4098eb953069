//! rsyscall: process-independent, type-safe, async access to Linux syscalls.
//!
//! Every syscall is a method on a handle to some process: the local one
//! ([`local_thread`]), or a child made with [`Thread::clone`], driven over a connection
//! to a tiny syscall server running inside it. Create and configure processes with the full
//! power of Linux, then [`ChildThread::exec`] a program in them and wait for it with
//! [`AsyncChildProcess`].
//!
//! # The first program
//!
//! ```
//! use rsyscall::{CLONE, local_thread};
//!
//! fn main() -> Result<(), rsyscall::Error> {
//!     async_io::block_on(async {
//!         let parent = local_thread();
//!         // A child process running a tiny syscall server, driven from here.
//!         let child = parent.clone(CLONE::empty()).await?;
//!         println!("the child is pid {}", child.task().getpid().await?);
//!         // Set-up in the child: any syscall, checked, no pre_exec.
//!         child.task().chdir("/").await?;
//!         // Then a program in it, waited for; check() fails unless it exited with 0.
//!         let sh = parent.environ().which("sh").await?.args(["-c", "test \"$(pwd -P)\" = /"]);
//!         child.exec(sh).await?.check().await?;
//!         Ok(())
//!     })
//! }
//! ```
//!
//! # The guide
//!
//! [The guide](guide) (`docs/GUIDE.md` in the repository) explains the library from there,
//! every example in it compiled and run as a test:
//! - [what rsyscall is for](guide#what-rsyscall-is-for), and when `std::process` is the
//!   better tool;
//! - [threads and tasks](guide#threads-and-tasks): [`local_thread`], [`Thread::clone`],
//!   [`Task`] and its syscall methods, fd tables, [`Thread::duplicate`];
//! - [memory and pointers](guide#memory-and-pointers): [`Pointer`], [`WrittenPointer`],
//!   [`ReadablePointer`], and why a pointer belongs to one address space;
//! - [async I/O](guide#async-io): [`Thread::make_afd`], [`thread::AsyncFileDescriptor`],
//!   `AsyncRead`/`AsyncWrite`, [`Thread::open_channels`];
//! - [children and waiting](guide#children-and-waiting): [`Command`],
//!   [`ChildThread::exec`], [`AsyncChildProcess`], [`Thread::run`];
//! - [namespaces](guide#namespaces): clone and unshare with user, pid, mount and network
//!   namespaces, [`write_user_mappings`];
//! - [stubs, bootstrapped, persistent and ssh threads](guide#stubs-bootstrapped-persistent-and-ssh-threads):
//!   [`StubServer`], [`stdin_bootstrap`], [`PersistentThread`], [`thread::SshHost`];
//! - [errors](guide#errors) ([`Error`]) and [dropping and cancellation](guide#dropping-and-cancellation);
//! - [performance](guide#performance): measured figures, and where fds are watched.
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

/// The guide: the library explained with examples, from the first program to ssh threads
/// and cancellation (the repository's `docs/GUIDE.md`; its code blocks are this crate's
/// doc tests).
#[doc = include_str!("guide.md")]
pub mod guide {}

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
