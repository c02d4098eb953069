//! The thread layer: [`Thread`] and [`ChildThread`], creating processes with `clone`,
//! `exec`, waiting for children, connections, and the syscall client.
//!
//! # Kinds of threads
//! - the local thread ([`local_thread`]) and clone children ([`Thread::clone`]), which
//!   share this program's address space;
//! - bootstrapped threads ([`Thread::from_bootstrap`]): processes running our helpers,
//!   with their own address space reached over their syscall socket: [`stdin_bootstrap`]
//!   (through launchers such as `sudo`), [`StubServer::accept`] (programs that ran our
//!   stub);
//! - persistent threads ([`Thread::clone_persistent`], [`PersistentThread`]), which outlive
//!   their connection and even this program;
//! - threads on other hosts ([`SshHost::connect`]), over the system's OpenSSH client. No fd
//!   can be passed between this program and them: [`Thread::open_channels`] and the
//!   syscall sockets of their children are connections through ssh's forward, accepted on
//!   the host's listening socket (which every thread of the host keeps); their children
//!   are watched on the parent's root epoller (polled from a persistent thread there, which
//!   has none); [`Thread::pass_fd`] to them is an error.
//!
//! # Dropping and cancellation
//!
//! `Drop` cannot wait for a syscall, and any future may be dropped at any `.await` (by a
//! timeout, a `select!`, an aborted task). This section gathers what dropping does, for each
//! type and for each kind of future, and then lists what is not covered yet.
//!
//! ## The rule
//!
//! Dropping a value or a future of this crate never frees memory that a kernel or a process
//! may still use, and never leaves behind a process that nobody will reap. Three mechanisms
//! keep it:
//!
//! - **Operations that must not stop half-way are finished.** [`Thread::clone`] (and
//!   [`Thread::clone_with`]), [`Thread::unshare`], [`Thread::unshare_files`],
//!   [`Thread::unshare_user`], [`Thread::mkdtemp`] and every move of fds over a
//!   [`Connection`] lend memory to a new process or leave state half-made between their
//!   awaits. Each runs that work as one *critical part*: dropped before its first poll (for
//!   a move, before its message was sent) it never starts; dropped later, it is handed to
//!   the reaper thread, which runs it to completion and then drops its result. A
//!   [`ChildThread`] dropped so is killed and reaped, moved fds are closed, a [`TempDir`]
//!   is removed as a dropped one is. If the reaper thread cannot be started, the part is
//!   leaked (and an error logged), never dropped half-way.
//! - **A syscall sent to another process runs to completion there**, whatever becomes of
//!   its future. What it was lent is kept until its answer has been read, and a new fd it
//!   returns is closed (see "Dropping futures").
//! - **Children are reaped in the background.** A child that nobody waits for any more is
//!   reaped once it exits: by the service thread if its parent is the local process,
//!   through its parent's connection on the reaper thread otherwise. Memory a child may
//!   still use is freed only once it cannot any more: a clone child's stack and futex word
//!   after its futex helper has exited (the child exec'd or exited), or, for a child that
//!   has no helper (see [`Thread::clone`]), once it is dead; the argv and envp of an exec
//!   whose outcome is unknown after the child is reaped.
//!
//! What cannot be known to be finished is leaked rather than reused.
//!
//! ## Dropping values
//!
//! - [`FileDescriptor`](rsyscall_handle::FileDescriptor): when the last handle to an fd it
//!   owns goes, an fd of the local table is closed at once; for another table the close is
//!   queued on the fd table and sent soon from the reaper thread (the handle layer's close
//!   flusher, installed by this crate), or before the next syscall of any task using that
//!   table, or by [`Task::flush_closes`](rsyscall_handle::Task::flush_closes) (which puts
//!   the closes it had not sent back in the queue if its own future is dropped), whichever
//!   comes first. So the reader of a pipe sees end of file once the last handle of its
//!   write end goes, even if nothing else runs on the writer's table.
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
//!   and are not handed out again until then. Memory lent to a syscall whose future is
//!   dropped is not the caller's to drop: see "Dropping futures".
//! - [`LinearPointer`](rsyscall_handle::LinearPointer): dropped unread, its memory is freed
//!   but what the kernel wrote into it (received fds) never gets an owner: those fds stay
//!   open, close-on-exec, in their table, and an error is logged. Read it.
//! - [`MemoryMapping`](rsyscall_handle::MemoryMapping): unmapped at once in the local
//!   address space (which every thread made here shares), otherwise before the next syscall
//!   in its address space. [`MemoryMapping::munmap`](rsyscall_handle::MemoryMapping::munmap)
//!   unmaps at once and reports errors.
//! - [`ChildThread`]: a child that has neither exec'd nor exited is killed with `SIGKILL`
//!   and reaped in the background (by the service thread when its parent is the local
//!   process, through its parent's connection on the reaper thread otherwise). Its stack
//!   and futex word are freed only after it is gone (its futex helper saw it go, or it was
//!   reaped); the argv and envp
//!   of an exec whose outcome was not known yet are freed once it is reaped (leaked if its
//!   remote parent is gone first). Syscalls through other handles to its [`Thread`] then
//!   fail with a hangup.
//! - [`Thread`]: a shared handle ([`Thread::duplicate`]); dropping one does nothing to the
//!   process, whose life is its [`ChildThread`]'s business. Every child is killed
//!   (`PR_SET_PDEATHSIG`) when its parent ([`ChildThread::parent`]) exits, unless the
//!   program it runs changes that: for the children of the local process, when this
//!   program exits.
//! - A bootstrapped [`Thread`] ([`stdin_bootstrap`], [`Thread::from_bootstrap`]): once
//!   every handle to it and to its task (its fds hold the task) is gone, its syscall socket is
//!   closed, so the helper's server sees EOF and the helper exits (memory lent to a
//!   cancelled syscall does not keep the socket open: the allocator holds the connection
//!   weakly). Its launcher's [`AsyncChildProcess`] is separate and behaves as below.
//! - [`AsyncChildProcess`]: does not kill the child. Once the child exits it is reaped in
//!   the background: by the service thread if its parent is the local process, else through
//!   its parent's connection on the reaper thread (if that parent is gone first, the child
//!   is its new parent's to reap). So no zombie of ours is left behind; call
//!   [`AsyncChildProcess::kill`] first to end the child.
//! - [`ChildProcess`](rsyscall_handle::ChildProcess) (the handle-level child inside an
//!   [`AsyncChildProcess`]): drops its pidfd handle only; it neither kills nor reaps.
//!   [`ThreadProcess`](rsyscall_handle::ThreadProcess) (a handle-level child with the
//!   memory it runs on, which this crate's threads do not use) likewise, and leaks that
//!   memory unless the child was seen to leave it.
//! - [`AsyncFileDescriptor`]: drops its handle (the close is queued as above) and, if it is
//!   the last one sharing its registration ([`AsyncFileDescriptor::with_handle`]),
//!   deregisters the fd. On the local reactor the local copy of the fd is deregistered and
//!   closed at once. On a root [`Epoller`] the `EPOLL_CTL_DEL` is queued and made before
//!   the epoller's next wait (or the next [`Thread::make_afd`] or
//!   [`AsyncFileDescriptor::close`] on it), and the fd is kept open until then, because
//!   epoll keys on the fd and its open file description; a delete whose future is dropped
//!   puts its fd back in the queue. Then the closes queued on its table and the deletes
//!   queued on its epoller are sent at once (on the reaper thread), so a pipe's reader sees
//!   end of file without waiting for another syscall there. [`AsyncFileDescriptor::close`] deregisters and closes at once, in that
//!   order.
//! - [`Epoller`]: lives as long as its thread or any [`AsyncFileDescriptor`] registered on
//!   it; the last drop queues the closes of the epoll fd and of the fds still waiting for
//!   their `EPOLL_CTL_DEL`.
//! - [`Connection`]: closes its local end (once no move finishing in the background holds
//!   it) and queues the close of the thread's end.
//! - [`SyscallConnection`]: closes the access end of the syscall socket; the server reads
//!   EOF at its next request boundary and its loop returns, which ends a clone child. No
//!   request future outlives it (they borrow it); the memory it kept for dropped requests
//!   still unanswered is leaked, as they may still be running.
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
//! - [`StubServer`]: closes its listening socket and removes, through its thread on the
//!   reaper thread, the socket file it bound ([`StubServer::listen_on`]) or the private
//!   directory holding it and the wrapper it wrote ([`StubServer::make`]);
//!   [`StubServer::close`] does the same at once and reports errors. Connections still
//!   queued are reset (their stubs exit with status 1); stub threads already accepted are
//!   bootstrapped threads as above, untouched.
//! - A [`Thread`] on another host ([`SshHost::connect`]): as a bootstrapped thread; once
//!   every thread of that ssh session is gone, ssh's forward socket and its local private
//!   directory are removed (if this program dies first, a small `sh` watching a pipe we
//!   hold removes them). The ssh process's [`AsyncChildProcess`] is separate; ssh exits
//!   once the remote thread has (the remote script removes its files then).
//! - [`Command`] and [`Environment`] are plain values.
//!
//! ## Dropping futures
//!
//! - **A syscall on a remote thread** (any method of a [`Task`](rsyscall_handle::Task) or
//!   an fd of another process): if none of its bytes were sent, it is taken out of the
//!   connection's write buffer and never runs. Once sent, it runs to completion in the
//!   server whatever becomes of the future; its response is read and thrown away. The
//!   memory lent to it is handed to its [`SyscallConnection`], which frees it once that
//!   response has been read (every earlier request is answered by then). The new fd it
//!   returns (`openat`, `socket`, `accept4`, `fcntl(F_DUPFD)`, `epoll_create1`,
//!   `pidfd_open`, `memfd_create`...) is closed by a `close` the connection sends when the
//!   result arrives, and the two fds that `pipe2` or `socketpair` write are queued for
//!   closing on their table if the syscall succeeded (the connection records the result
//!   before it frees the memory: a failed `socketpair` leaves there the numbers it
//!   reserved and freed again, which may name someone else's fds by then); in a process
//!   with its own address space, where that memory takes a request to read, the table's
//!   next flush of closes reads it first. When the connection is lost
//!   ([`SyscallError::Hangup`](rsyscall_near::SyscallError::Hangup)) the syscall may or may
//!   not have run: see "Not covered".
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
//! - **[`AsyncFileDescriptor`] as `AsyncRead`/`AsyncWrite`** (see [`AsyncFileDescriptor`]'s
//!   stream section): a `poll_read` left `Pending` keeps its read in the fd for the next one, so a
//!   dropped `read_exact`, `copy` or the like loses no byte; dropping the fd itself with a
//!   read in flight loses what that read got. A step in flight goes on without its caller
//!   (on the reaper thread once it has to wait), so a caller that stops polling stalls no
//!   other request. A write accepted by `poll_write` and still in flight when the fd is
//!   dropped is dropped with it: flush or close first.
//! - **[`AsyncChildProcess::wait`] and [`AsyncChildProcess::waitpid`]** can be dropped
//!   freely: the child is untouched, a later wait works, and no exit status is lost. For a
//!   child of a remote thread, whose `waitid` goes on running when its future is dropped,
//!   the state is first read without reaping (`W::NOWAIT`) and recorded, and only then is
//!   the child reaped.
//! - **[`AsyncChildProcess::check`]** dropped before the child died sends it `SIGTERM`; so
//!   do [`Thread::run`] and [`Thread::run_unchecked`] dropped while the command runs
//!   (dropped before, they drop their clone or exec as below).
//! - **[`Thread::clone`]** and **[`Thread::clone_with`]**, dropped at any point, either
//!   never started the clone, or complete it in the background and then kill and reap the
//!   child; its memory is freed once the child is gone. No process, zombie, fd or byte
//!   is leaked, and later clones are unaffected.
//! - **[`Thread::unshare`]**, **[`Thread::unshare_files`]** and
//!   **[`Thread::unshare_user`]**, once polled, are finished in the background, so the
//!   thread's bookkeeping (its namespaces, its fd table, its connection and root epoller)
//!   matches what the kernel did; they leak no fd or process and leave the thread usable.
//! - **[`Thread::mkdtemp`]**, once polled, is finished in the background: it learns
//!   whether its `mkdirat` made the directory, and the [`TempDir`] it made is then dropped,
//!   which removes it as above.
//! - **[`Thread::make_afd`]**, dropped at any point, leaves nothing registered and nothing
//!   open: the fd it was given is dropped (its close queued); only `O_NONBLOCK`, once set,
//!   stays set.
//! - **[`ChildThread::exec`], [`ChildThread::execv`], [`ChildThread::execve`] and
//!   [`ChildThread::exit`]** consume the child, so dropping their future drops it: the child
//!   is killed with `SIGKILL` and reaped in the background, whether or not the exec or exit
//!   happened. The argv and envp block stays with the child until the exec's outcome is
//!   known, so it is freed only once nothing can read it (at the latest, once the child is
//!   reaped). [`Thread::exit`] on another handle is a single remote syscall, as above.
//! - **[`Thread::exec_bootstrapped`]** takes the thread by reference, so dropping its future
//!   kills nothing: the first exec's setup (the `set_tid_address` word and the futex helper)
//!   is a critical part, finished once started; the requests already sent run on, and the
//!   argv and envp block is kept by the connection until they are answered (leaked if the
//!   connection was lost, since the process then exec'd or died). The thread may then have
//!   exec'd; if the exec failed, the request pipelined after it restored its name.
//! - **[`stdin_bootstrap`]**, dropped before its launcher was exec'd, kills the launcher
//!   (see [`ChildThread`]); dropped later, it closes our ends of the helper's sockets, so
//!   the helper fails its describe or sees EOF on its syscall socket and exits, and the
//!   launcher's monitor, dropped too, has it reaped once it ends (a launcher that never
//!   ends, such as one waiting for a password on a terminal, stays until it does).
//! - **[`Thread::clone_persistent`]**: as [`Thread::clone`]: once polled it completes in
//!   the background, and the [`PersistentThread`] it made is then dropped (killed and
//!   reaped, its socket file removed). **[`PersistentThread::reconnect`]** and
//!   **[`PersistentThread::attach`]**, dropped at any point, leak nothing: a half-done
//!   handshake is refused by the server or ends at once (the fd it got has no peer), and a
//!   dropped reconnect leaves the thread disconnected until the next one. **A syscall on a
//!   disconnected persistent thread** waits for the next reconnect; dropped while waiting,
//!   it was never sent.
//! - **[`SshHost::connect`]**, dropped at any point: the ssh process (if started) is
//!   reaped in the background once it ends, which it does when our ends of its sockets
//!   are closed (the remote bootstrap sees EOF and the remote script cleans up); the local
//!   private directory is removed.
//! - **[`StubServer::listen_on`]** and **[`StubServer::make`]**: once polled they complete
//!   in the background, and the [`StubServer`] they made is then dropped (its files
//!   removed). **[`StubServer::accept`]**, dropped at any point, leaks nothing: a
//!   connection it took but had not answered is closed, our ends of the stub's sockets
//!   with it, so the stub's handshake fails or its server reads EOF, and it exits (with
//!   status 1 or 0); a connection still queued stays for the next `accept`.
//! - **Moving fds** ([`Thread::pass_fd`], [`Thread::open_channels`],
//!   [`Thread::open_async_channels`], [`Connection::send_to_remote`],
//!   [`Connection::recv_from_remote`], and the moves inside [`Thread::clone`] and
//!   [`Thread::make_afd`]): each move is one `SCM_RIGHTS` message, sent on one side and
//!   received on the other, and moves over one connection take turns. A move dropped while
//!   waiting for its turn, or before its message was sent, moved nothing. From the moment
//!   its message is sent (for [`Connection::recv_from_remote`], from the moment it has its
//!   turn) it is a critical part: dropped then, it is finished in the background and the
//!   fds it received are closed, so the message never stays on the socket for the next move
//!   to receive in place of its own. A call that needs several messages (more than 253 fds)
//!   closes the fds of the messages already received.
//! - **[`Thread::do_cloexec_except`]** and **[`Thread::mark_cloexec_except`]** are not
//!   critical parts: dropped half-way, they have closed (or marked) some fds and not yet
//!   the others. Call them again to finish.
//! - **[`TempDir::cleanup`]** dropped half-way leaves what it had not removed yet, and the
//!   [`TempDir`] it consumed does not remove it on drop either.
//!
//! ## Not covered
//!
//! - Fds received by a dropped `recvmsg`
//!   ([`FileDescriptor::recvmsg`](rsyscall_handle::FileDescriptor::recvmsg),
//!   [`Task::recv_fds`](rsyscall_handle::Task::recv_fds) outside a [`Connection`]) get no
//!   handle: they stay open, close-on-exec (every fd made here is), until their process
//!   execs or exits.
//! - The data a dropped read or receive consumed is lost: the syscall ran, and its answer
//!   was thrown away.
//! - A stop or continue of a child of a remote thread, consumed by a
//!   [`AsyncChildProcess::waitpid`] whose future was dropped in flight, is not reported
//!   again (a death always is).
//! - When a connection is lost (or dropped) with requests unanswered, the memory lent to
//!   those whose futures were dropped is leaked, never reused, since they may still be
//!   running; a new fd such a request made stays open, close-on-exec, in its process.
//!
//! # Invariants
//! - Nothing here changes the signal mask or dispositions of the program's own threads;
//!   the two threads this crate starts (the service thread, which issues local clones so
//!   that `PR_SET_PDEATHSIG` ties children to the process's life, and the reaper, which
//!   reaps abandoned children of remote threads and finishes the critical parts of dropped
//!   futures) block all signals so process-directed signals never land on them.
//! - Dropping a child's monitor never leaves a zombie: the child is reaped in the
//!   background once it exits.
//! - Nothing runs reactor code inside a clone child: children run only the no_std server
//!   loop of `rsyscall-server`.
//! - Memory a clone child runs on is freed only after the child exec'd or exited, as its
//!   futex helper reports, or, for a child without one, once it is dead.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod afd;
mod background;
mod bootstrap;
mod clone;
mod command;
mod connection;
mod conveniences;
pub mod epoller;
mod host;
pub mod libexec;
mod monitor;
mod oneshot;
mod persistent;
mod read_buffer;
mod reaper;
mod remote;
mod service;
#[cfg(doctest)]
mod soundness;
mod ssh;
mod stub;
pub mod syscall_connection;
mod tempdir;
mod thread;
mod transport;
mod unshare;

pub use afd::AsyncFileDescriptor;
pub use bootstrap::{
    BootstrapParts, SSH_BOOTSTRAP, STDIN_BOOTSTRAP, stdin_bootstrap, stdin_bootstrap_with_helper,
};
pub use clone::CloneOptions;
pub use command::{Command, Environment};
pub use connection::Connection;
pub use epoller::Epoller;
pub use monitor::AsyncChildProcess;
pub use persistent::{HANDSHAKE_TIMEOUT, PersistentError, PersistentThread};
pub use read_buffer::AsyncReadBuffer;
pub use ssh::SshHost;
pub use stub::{STUB_HANDSHAKE_TIMEOUT, StubServer, UNIX_STUB, UNIX_STUB_SOCK_PATH_ENV};
pub use syscall_connection::{SyscallConnection, set_spin_wait, spin_wait};
pub use tempdir::TempDir;
pub use thread::{ChildThread, EnvironmentRef, ExecError, Thread, local_thread};
pub use unshare::{THREAD_UNSHARE_FLAGS, write_user_mappings};
