//! The near layer: raw syscalls on namespace-local ids, the async [`SyscallInterface`],
//! and [`Errno`].
//!
//! A near id ([`FileDescriptor`], [`Address`], [`Pid`]) is a bare number. It means nothing
//! without the task whose fd table, address space or pid namespace it indexes; the far
//! layer attaches that context. Functions here take a `&dyn SyscallInterface` and near ids,
//! build a [`Request`] and decode the result.
//!
//! The flag sets of syscall arguments ([`CLONE`], [`O`], [`SOCK`], [`EPOLL`], [`MS`]...)
//! are [`bitflags`] 2 types with the `libc` crate's values: `|`, `&`, `-`, `contains`,
//! iteration over the named flags (`iter_names`), `Debug` (`CLONE(FILES | NEWPID)`), and
//! bitflags' text form through `FromStr` and `Display`:
//!
//! ```
//! use rsyscall_near::CLONE;
//! let flags: CLONE = "NEWUSER | NEWPID".parse().unwrap();
//! assert_eq!(flags, CLONE::NEWUSER | CLONE::NEWPID);
//! assert_eq!(flags.to_string(), "NEWUSER | NEWPID");
//! assert_eq!(format!("{flags:?}"), "CLONE(NEWUSER | NEWPID)");
//! assert_eq!(flags.iter_names().map(|(name, _)| name).collect::<Vec<_>>(), ["NEWUSER", "NEWPID"]);
//! ```
//!
//! # Invariants
//! - No allocation in the raw paths ([`LocalSyscall::syscall_sync`] and the raw routine it
//!   calls; only the `trace` record, when that level is on, formats) and no thread-local
//!   `errno`: errors are decoded from the return register.
//! - Every function that lets the kernel write through an address, or close or replace a
//!   file descriptor, is `unsafe` and states what the caller must guarantee; the handle
//!   layer provides the safe API on top.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "rsyscall-near supports only x86-64 Linux: its syscall numbers, argument orders, \
     request layout and kernel constants are those of that ABI"
);

mod errno;
mod flags;
mod ids;
pub mod syscalls;
mod sysif;
mod sysnames;
pub mod trace;

pub use errno::Errno;
pub use flags::{CLONE, IdType, MAP, MSG, O, PROT, SHUT, SOCK, Signal, W};
pub use ids::{Address, FileDescriptor, MemoryMapping, Pid, ProcessGroup};
pub use syscalls::*;
pub use sysif::{
    LocalSyscall, NotSent, Request, ResultCell, SyscallError, SyscallFuture, SyscallInterface,
    SyscallResult,
};
pub use sysnames::{SYSCALL_NAMES, syscall_arg_count, syscall_name};
pub use trace::{ThreadKind, ThreadLabel};
