//! The handle layer: typed owning handles over the far layer. Every syscall we support is
//! a method on a [`Task`] or on an owning handle, and works unchanged on the local task and
//! on any remote one.
//!
//! # Invariants
//! - An owning handle closes or frees its resource exactly once: a dropped
//!   [`FileDescriptor`] of the local table is closed at once, one of another table queues
//!   its close there (sent soon by the close flusher, [`set_close_flusher`], or at the
//!   next syscall on that table, or by [`Task::flush_closes`]); a dropped [`Allocation`]
//!   gives its range back
//!   at once (pure bookkeeping).
//! - Memory lent to a syscall stays allocated until the syscall has completed: if the
//!   syscall's future is dropped first, the buffer is leaked, never reused under the
//!   kernel's feet.
//! - Ids are checked against the task's namespaces before anything is sent; misuse is a
//!   typed [`Error`], never memory corruption.
//! - No safe function accepts a claim that unsafe code later trusts. What the checks and
//!   the allocator rest on (a task's interface and namespaces, an allocator's address
//!   space, a borrowed fd number, a socket option's layout) enters only through `unsafe`
//!   items whose `# Safety` sections state the duty: [`Task::new`], [`Memory::new`],
//!   [`FileDescriptor::borrowed`], [`structs::SockOpt`]. The library makes its own tasks
//!   and handles; safe code gets them from [`Task::local`], from syscalls, and from owned
//!   local fds ([`FileDescriptor::from_owned_fd`]).
//! - A [`ChildProcess`] is signalled and waited on through its pidfd, so a reused pid is
//!   never hit.
//!
//! # Std interop
//! - A handle to a local fd converts to and from std's `OwnedFd`
//!   (`FileDescriptor::from(owned)`, `OwnedFd::try_from(fd)`, which gives the handle back
//!   unless it is the last owning one of the local table); [`LocalFileDescriptor`] is a
//!   handle checked to be of the local table and implements `AsFd` and `AsRawFd`
//!   ([`FileDescriptor`] itself cannot: it may name an fd of another process's table).
//! - A [`ChildState`] converts to `std::process::ExitStatus` through the `wait(2)` status
//!   word ([`ChildState::wait_status`]).
//! - An [`Error`] converts to `std::io::Error`: a failed syscall to the OS error of its errno
//!   (`raw_os_error()`), the others with the kind [`Error::io_kind`] gives.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "rsyscall-handle supports only x86-64 Linux: the kernel structs it reads and writes \
     (`Stat`, `EpollEvent`, `Sigaction`, `Siginfo`...) have the x86-64 layouts"
);

mod child_state;
mod cmsg;
mod error;
mod fd;
mod local;
mod memory;
mod pointer;
mod process;
#[cfg(doctest)]
mod soundness;
pub mod structs;
mod task;

pub use child_state::ChildState;
pub use error::{Error, Result, SshFailure};
pub use fd::{CloseFlush, FdTableState, FileDescriptor, LocalFileDescriptor, set_close_flusher};
pub use local::local_namespaces;
pub use memory::{
    Allocation, BoxFuture, InFlight, LocalTransport, Memory, PAGE_SIZE, RECLAIM_MIN, Transport,
};
pub use pointer::{LinearPointer, Pointer, ReadablePointer, WrittenPointer};
pub use process::{ChildProcess, FutexWord, Process, ThreadProcess};
pub use structs::{FixedSize, Pod, Struct};
pub use task::{MemoryMapping, Pipe, Task};
