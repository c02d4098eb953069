//! The thread layer: [`Thread`] and [`ChildThread`], creating processes with `clone`,
//! `exec`, waiting for children, connections, and the syscall client.
//!
//! # Dropping and cancellation
//!
//! `Drop` cannot wait for a syscall, and any future may be dropped at any `.await` (by a
//! timeout, a `select!`, an aborted task). This section gathers what dropping does, for each
//! type and for each kind of future. One rule lies under all of it: dropping never frees
//! memory that a kernel or a child process may still use, and never leaves behind a process
//! that nobody will reap. What cannot be finished at once is finished in the background by
//! the service thread or the reaper thread; what cannot be known to be finished is leaked
//! rather than reused.
//!
//! ## Dropping values
//!
//! - [`FileDescriptor`](rsyscall_handle::FileDescriptor): when the last handle to an fd it
//!   owns goes, the close is queued on the fd table and made before the next syscall of any
//!   task using that table (or by [`Task::flush_closes`](rsyscall_handle::Task::flush_closes)).
//!   [`FileDescriptor::close`](rsyscall_handle::FileDescriptor::close) closes at once and
//!   reports errors. Handles that do not own their fd, such as [`Thread::stdin`],
//!   [`Thread::stdout`] and [`Thread::stderr`], never close it. The fds of a process that is
//!   gone went with it.
//! - [`Allocation`](rsyscall_handle::Allocation) and the pointers built on it
//!   ([`Pointer`](rsyscall_handle::Pointer), [`WrittenPointer`](rsyscall_handle::WrittenPointer),
//!   [`ReadablePointer`](rsyscall_handle::ReadablePointer)): the range goes back to its
//!   allocator at once, without a syscall. The whole pages of an allocation of
//!   [`RECLAIM_MIN`](rsyscall_handle::RECLAIM_MIN) bytes or more are first given back to the
//!   kernel (`MADV_REMOVE`) before the next allocation or syscall in that address space,
//!   and are not handed out again until then.
//! - [`LinearPointer`](rsyscall_handle::LinearPointer): dropped unread, its memory is freed
//!   but what the kernel wrote into it (received fds) never gets an owner: those fds stay
//!   open, close-on-exec, in their table, and an error is logged. Read it.
//! - [`MemoryMapping`](rsyscall_handle::MemoryMapping): unmapped at once in the local
//!   address space (which every thread made here shares), otherwise before the next syscall
//!   in its address space. [`MemoryMapping::munmap`](rsyscall_handle::MemoryMapping::munmap)
//!   unmaps at once and reports errors.
//! - [`ChildThread`]: a child that has neither exec'd nor exited is killed with `SIGKILL`
//!   and reaped in the background (by the service thread when its parent is the local
//!   thread, through its parent's connection on the reaper thread otherwise). Its stack and
//!   futex word are freed only after its futex helper has seen it go. Syscalls through other
//!   handles to its [`Thread`] then fail with a hangup.
//! - [`Thread`]: a shared handle ([`Thread::duplicate`]); dropping one does nothing to the
//!   process, whose life is its [`ChildThread`]'s business. Every child is killed
//!   (`PR_SET_PDEATHSIG`) when the process that created it exits, unless the program it
//!   runs changes that: for children of the local thread, when this program exits.
//! - [`AsyncChildProcess`]: does not kill the child. Once the child exits it is reaped in
//!   the background: by the service thread if its parent is the local process, else through
//!   its parent's connection on the reaper thread (if that parent is gone first, the child
//!   is its new parent's to reap). So no zombie of ours is left behind; call
//!   [`AsyncChildProcess::kill`] first to end the child.
//! - [`ChildProcess`](rsyscall_handle::ChildProcess) (the handle-level child inside an
//!   [`AsyncChildProcess`]): drops its pidfd handle only; it neither kills nor reaps.
//! - [`AsyncFileDescriptor`]: deregisters the fd, then drops its handle (the close is queued
//!   as above). On the local reactor the local copy of the fd is deregistered and closed at
//!   once. On a root [`Epoller`] the `EPOLL_CTL_DEL` is queued and made before the
//!   epoller's next wait (or the next [`Thread::make_afd`] or
//!   [`AsyncFileDescriptor::close`] on that thread), and the fd is kept open until then,
//!   because epoll keys on the fd and its open file description.
//!   [`AsyncFileDescriptor::close`] does both at once, in that order.
//! - [`Epoller`]: lives as long as its thread or any [`AsyncFileDescriptor`] registered on
//!   it; the last drop queues the closes of the epoll fd and of the fds still waiting for
//!   their `EPOLL_CTL_DEL`.
//! - [`Connection`]: closes its local end at once and queues the close of the thread's end.
//! - [`SyscallConnection`]: closes the access end of the syscall socket; the server reads
//!   EOF at its next request boundary and its loop returns, which ends a clone child. No
//!   request can be pending then: request futures borrow the connection.
//! - [`TempDir`]: removes the directory and everything in it with `std::fs`, from the local
//!   process, if the thread shares our mount namespace; otherwise leaves it and logs a
//!   warning. [`TempDir::cleanup`] removes it through its thread and reports errors;
//!   [`TempDir::keep`] keeps it.
//! - [`AsyncReadBuffer`]: the bytes read but not yet returned are lost;
//!   [`AsyncReadBuffer::into_parts`] gives them back with the fd.
//! - [`PersistentThread`]: made by [`Thread::clone_persistent`] and not yet
//!   [made persistent](PersistentThread::make_persistent), killed and reaped as a
//!   [`ChildThread`], and its socket file removed in the background through the thread that
//!   bound it. Made persistent, or [attached](PersistentThread::attach), dropping only
//!   closes our connection: the thread waits for the next one. A persistent thread killed
//!   with its creator (the creator itself killed) leaves its socket file behind.
//! - [`Command`] and [`Environment`] are plain values.
//!
//! ## Dropping futures
//!
//! - **A syscall on a remote thread** (any method of a [`Task`](rsyscall_handle::Task) or
//!   an fd of another process): if none of its bytes were sent, it is taken out of the
//!   connection's write buffer and never runs. Once sent, it runs to completion in the
//!   server whatever becomes of the future; its response is read and thrown away. Memory
//!   lent to it is then leaked, never reused, and an fd it creates gets no handle: it stays
//!   open, close-on-exec (every fd made here is), until its process execs or exits. The
//!   same holds when the connection is lost ([`SyscallError::Hangup`](rsyscall_near::SyscallError::Hangup)):
//!   the syscall may or may not have run.
//! - **A syscall on the local thread** runs to completion within its first poll, so its
//!   future is either not started or finished. (A syscall that blocks, such as `read` on an
//!   empty blocking pipe, blocks the executor thread that polls it: use an
//!   [`AsyncFileDescriptor`].)
//! - **[`AsyncFileDescriptor`] operations** (`read`, `write`, `accept`, `connect`,
//!   `wait_for_rdhup` and the byte conveniences) try the syscall and wait only after
//!   `EAGAIN`. Dropped while waiting, nothing was read or written; dropped while the syscall
//!   is in flight on a remote thread, it behaves as above (data read then is lost). A
//!   dropped waiter on a root epoller never loses another waiter's wakeup: the next waiter
//!   re-arms every registration still wanted. [`AsyncReadBuffer`] reads keep in the buffer
//!   what they had already read.
//! - **[`AsyncChildProcess::wait`] and [`AsyncChildProcess::waitpid`]** can be dropped
//!   freely: the child is untouched and a later wait works. One exception: for a child of a
//!   remote thread, a future dropped while its `waitid` is in flight may have reaped the
//!   child without recording how it ended; a later wait then fails with `ECHILD`.
//! - **[`AsyncChildProcess::check`]** dropped before the child died sends it `SIGTERM`.
//! - **[`Thread::clone`]**, dropped at any point, either never started the clone, or
//!   completes it in the background and then kills and reaps the child; its memory is freed
//!   after its futex helper exits. No process, zombie, fd or byte is leaked, and later
//!   clones are unaffected.
//! - **[`Thread::make_afd`]**, dropped at any point, leaves nothing registered and nothing
//!   open: the fd it was given is dropped (its close queued); only `O_NONBLOCK`, once set,
//!   stays set. **[`Thread::unshare`]** (and `unshare_files`, `unshare_user`),
//!   dropped at any point, leak no fd or process and leave the thread usable, its
//!   bookkeeping matching what the kernel did.
//! - **[`ChildThread::exec`], [`ChildThread::execv`], [`ChildThread::execve`] and
//!   [`ChildThread::exit`]** consume the child, so dropping their future drops it: the child
//!   is killed with `SIGKILL` and reaped in the background, whether or not the exec or exit
//!   happened. The argv and envp block of an `execve` already sent is leaked.
//! - **[`Thread::clone_persistent`]**: as [`Thread::clone`]: once polled it completes in
//!   the background, and the [`PersistentThread`] it made is then dropped (killed and
//!   reaped, its socket file removed). **[`PersistentThread::reconnect`]** and
//!   **[`PersistentThread::attach`]**, dropped at any point, leak nothing: a half-done
//!   handshake is refused by the server or ends at once (the fd it got has no peer), and a
//!   dropped reconnect leaves the thread disconnected until the next one. **A syscall on a
//!   disconnected persistent thread** waits for the next reconnect; dropped while waiting,
//!   it was never sent.
//! - **Moving fds** ([`Thread::pass_fd`], [`Thread::open_channels`],
//!   [`Thread::open_async_channels`], [`Connection::send_to_remote`],
//!   [`Connection::recv_from_remote`]): each move is one `SCM_RIGHTS` message, sent on one
//!   side and received on the other. Dropped between the two halves, the fds are either
//!   received by the other side with no handle (close-on-exec, as above) or left queued on
//!   the connection's socket, where the next move in the same direction would receive them
//!   instead of its own. Do not drop these futures while they run.
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
//! state half-made across their awaits ([`Thread::clone`], [`Thread::clone_persistent`],
//! [`Thread::unshare`],
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
#![deny(unsafe_code)]
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
mod persistent;
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
pub use clone::CloneOptions;
pub use command::{Command, Environment};
pub use connection::Connection;
pub use epoller::Epoller;
pub use monitor::AsyncChildProcess;
pub use persistent::{HANDSHAKE_TIMEOUT, PersistentError, PersistentThread};
pub use read_buffer::AsyncReadBuffer;
pub use syscall_connection::SyscallConnection;
pub use tempdir::TempDir;
pub use thread::{ChildThread, EnvironmentRef, ExecError, Thread, local_thread};
pub use unshare::{THREAD_UNSHARE_FLAGS, write_user_mappings};
