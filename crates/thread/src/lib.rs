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
//!
//! # Cancellation
//! Dropping a future of this crate at any await never frees memory that a process may still
//! use, and leaks no process. The operations that lend memory to a new process or leave
//! state half-made across their awaits ([`Thread::clone`], [`Thread::unshare`],
//! [`Thread::unshare_files`], [`Thread::unshare_user`], [`Thread::mkdtemp`], and every move
//! of fds over a [`Connection`], as in [`Thread::make_afd`], [`Thread::open_channels`] and
//! [`Thread::pass_fd`]) are either not started, when dropped before they began (before
//! their first poll; for an fd move, before its message was sent), or finished: dropped
//! later, they complete on a background thread, which then drops their result. A
//! [`ChildThread`] dropped so is killed and reaped, and the memory it ran on is freed after
//! its futex helper exited; moved fds are closed. A single syscall sent to a remote thread
//! still runs when its future is dropped: the memory lent to it is freed once its
//! [`SyscallConnection`] has read the answer (leaked if the connection is lost first), and
//! the new fd it returns, or that `pipe2` or `socketpair` write, is closed. Fds received
//! by a dropped `recvmsg` are not closed, and the data a dropped read or receive consumed
//! is lost.
#![deny(unsafe_op_in_unsafe_fn)]

mod afd;
mod background;
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
