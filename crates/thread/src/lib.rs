//! The thread layer: [`Thread`] and [`ChildThread`], creating processes with `clone`,
//! `exec`, waiting for children, connections, and the syscall client.
//!
//! # Invariants
//! - Nothing here changes the signal mask or dispositions of the program's own threads;
//!   the two threads this crate starts (the service thread, which issues local clones so
//!   that `PR_SET_PDEATHSIG` ties children to the process's life, and the reaper, which
//!   reaps abandoned children of remote threads) block all signals so process-directed
//!   signals never land on them.
//! - Dropping a child's monitor never leaves a zombie: the child is reaped in the
//!   background once it exits.
//! - Nothing runs reactor code inside a clone child: children run only the no_std server
//!   loop of `rsyscall-server`.
//! - Memory a clone child runs on is freed only after the futex helper has reported that
//!   the child exec'd or exited.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod afd;
mod clone;
mod command;
mod connection;
mod conveniences;
pub mod epoller;
pub mod libexec;
mod monitor;
mod oneshot;
mod read_buffer;
mod reaper;
mod service;
#[cfg(doctest)]
mod soundness;
pub mod syscall_connection;
mod tempdir;
mod thread;
mod transport;
mod unshare;

pub use afd::AsyncFileDescriptor;
pub use command::{Command, Environment};
pub use connection::Connection;
pub use epoller::Epoller;
pub use monitor::AsyncChildProcess;
pub use read_buffer::AsyncReadBuffer;
pub use syscall_connection::SyscallConnection;
pub use tempdir::TempDir;
pub use thread::{ChildThread, EnvironmentRef, ExecError, Thread, local_thread};
pub use unshare::{THREAD_UNSHARE_FLAGS, write_user_mappings};
