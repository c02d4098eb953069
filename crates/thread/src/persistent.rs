//! Persistent threads: [`Thread::clone_persistent`] and [`PersistentThread`], a clone child
//! running the persistent server of PROTOCOL.md section 6, which outlives its connection
//! (and, made persistent, the program that made it) and is reconnected to through a unix
//! socket.
//!
//! # How it fits together
//! - The child is an ordinary clone child ([`Thread::clone`], its own fd table) whose stack
//!   image calls `persistent_server(sock, sock, listen)` instead of `server(sock, sock)`;
//!   the listening socket is bound and listening in the creating thread's table before the
//!   clone, so the child inherits it, and the creator's copy is closed.
//! - Its task's [`SyscallInterface`] is a [`Reconnecting`]: a slot holding the current
//!   [`SyscallConnection`], swapped by [`PersistentThread::reconnect`]. The fd table and
//!   address space are untouched by a reconnect, so every handle stays valid.
//! - [`PersistentThread::attach`] is the same handshake from a program that knows only the
//!   path: the task is rebuilt from what the process says about itself
//!   (`remote::remote_task`, shared with bootstrapped threads), its memory reached in-band
//!   over the connection.
//!
//! # Safety
//! [`attach`](PersistentThread::attach) makes a [`Task`] and its [`Memory`] for a process
//! reached only through a socket; the claims (`Task::new`, `Memory::new`) rest on the
//! persistent server being the one of PROTOCOL.md (the handshake checks what it can) and on
//! identities chosen conservatively: a namespace is called local only when the process's
//! own `/proc/self/ns` link equals ours, the address space and fd table are always new
//! identities. Received fd numbers are owned by the handles made for them, and nothing else
//! in this program knows them. The [`SyscallInterface`] and [`Transport`] methods forward to
//! the current connection, whose duties are the same.
#![allow(unsafe_code)]

use std::any::Any;
use std::fmt;
use std::io::IoSlice;
use std::ops::Deref;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Poll, Waker};
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
#[cfg(doc)]
use rsyscall_handle::Memory;
use rsyscall_handle::{
    BoxFuture, Error, FileDescriptor, Result, Task, Transport, local_namespaces,
};
use rsyscall_near::{
    self as near, AF, AT, Address, Errno, NotSent, O, PIDFD, Request, SOCK, SockType, SyscallError,
    SyscallFuture, SyscallInterface,
};

use crate::background::Critical;
use crate::clone::CloneOptions;
use crate::command::{Environment, SharedEnvironment};
use crate::connection::Connection;
use crate::monitor::AsyncChildProcess;
use crate::remote::{RemoteTask, remote_task};
use crate::syscall_connection::SyscallConnection;
use crate::thread::{ChildThread, Thread};

/// How long a reconnect or attach waits for the server's answer to its handshake before
/// giving up with [`PersistentError::Busy`]. The persistent server accepts a new client
/// only once its current one is gone, so a server busy with another client never answers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why connecting to a persistent thread failed. Each variant says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PersistentError {
    /// Nothing accepts connections at the path: no such socket, or a socket file left
    /// behind by a thread that died without cleaning up (its creator was killed before it
    /// was made persistent). Connecting only reads: the file is left where it is, and the
    /// next [`Thread::clone_persistent`] at that path reclaims it.
    #[error(
        "no persistent thread listens at {path:?} ({source}): it exited or was killed, or the \
         path is wrong; make a new thread (Thread::clone_persistent at this path reclaims a \
         stale socket file left there)"
    )]
    NoServer {
        /// The socket path.
        path: PathBuf,
        /// The error of `connect`.
        source: Error,
    },
    /// The server took the connection but did not answer the handshake in time: it is
    /// serving another client (it accepts only one at a time), or it is not a persistent
    /// rsyscall server.
    #[error(
        "the server at {path:?} did not answer the handshake within {waited:?}: it is serving \
         another client, or is not a persistent rsyscall server; end that client's \
         connection (exit or drop its thread, or end its program) and try again"
    )]
    Busy {
        /// The socket path.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The peer answered something the protocol does not allow.
    #[error(
        "the peer at {path:?} broke the persistent handshake: {detail}; it is not a persistent \
         rsyscall server: check that the path is the socket of a thread made by \
         Thread::clone_persistent (in a program whose rsyscall speaks protocol version 0 of \
         PROTOCOL.md, as this one does) and that nothing else was bound there since"
    )]
    Handshake {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Any other error (making sockets, moving fds, syscalls through the thread).
    #[error(transparent)]
    Other(#[from] Error),
}

impl From<PersistentError> for Error {
    fn from(e: PersistentError) -> Error {
        match e {
            PersistentError::Other(e) => e,
            e => Error::Io {
                what: "persistent thread",
                source: std::io::Error::other(e),
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The current connection of a persistent thread, and who waits for the next one.
struct Slot {
    conn: Option<Arc<SyscallConnection>>,
    /// Bumped at every swap, so that a request refused by a connection we shut down for
    /// a reconnect is retried on the new one.
    generation: u64,
    /// The thread is known to be gone: every request fails with a hangup.
    dead: bool,
    waiters: Vec<Waker>,
}

/// The [`SyscallInterface`] of a persistent thread: forwards every request to the current
/// [`SyscallConnection`], and makes requests wait while there is none (during a
/// reconnect).
pub(crate) struct Reconnecting {
    slot: Mutex<Slot>,
    /// The listening socket's number in the thread's table (owned by its server), if
    /// known: set at creation, or found by an attach ([`scan_table`]).
    listen_fd: OnceLock<near::FileDescriptor>,
    /// Serializes reconnects.
    reconnecting: async_lock::Mutex<()>,
    /// The thread's label in logs, given to every connection installed.
    label: Mutex<near::ThreadLabel>,
}

impl fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot = lock(&self.slot);
        f.debug_struct("Reconnecting")
            .field("conn", &slot.conn)
            .field("generation", &slot.generation)
            .field("dead", &slot.dead)
            .finish_non_exhaustive()
    }
}

impl Reconnecting {
    pub(crate) fn new(conn: SyscallConnection, listen_fd: Option<near::FileDescriptor>) -> Self {
        Reconnecting {
            slot: Mutex::new(Slot {
                conn: Some(Arc::new(conn)),
                generation: 0,
                dead: false,
                waiters: Vec::new(),
            }),
            listen_fd: listen_fd.map(OnceLock::from).unwrap_or_default(),
            reconnecting: async_lock::Mutex::new(()),
            label: Mutex::new(near::ThreadLabel::UNLABELLED),
        }
    }

    /// The fds of the thread's table its server owns: the listening socket, and the socket
    /// it serves on now (if connected).
    pub(crate) fn server_fds(&self) -> Vec<near::FileDescriptor> {
        let mut fds: Vec<near::FileDescriptor> =
            self.listen_fd.get().copied().into_iter().collect();
        if let Some(conn) = &lock(&self.slot).conn {
            fds.push(conn.server_fd());
        }
        fds
    }

    /// The current connection, waiting for one while disconnected; a hangup once the
    /// thread is known to be gone.
    async fn current(&self) -> std::result::Result<(Arc<SyscallConnection>, u64), SyscallError> {
        future::poll_fn(|cx| {
            let mut slot = lock(&self.slot);
            if slot.dead {
                return Poll::Ready(Err(SyscallError::Hangup));
            }
            match &slot.conn {
                Some(c) => Poll::Ready(Ok((Arc::clone(c), slot.generation))),
                None => {
                    if !slot.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        slot.waiters.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Whether a request refused unsent by the connection of `generation` should go to a
    /// newer one.
    fn swapped_since(&self, generation: u64) -> bool {
        let slot = lock(&self.slot);
        slot.generation != generation && !slot.dead
    }

    /// Takes the current connection out (requests wait from now on) and shuts it down.
    fn disconnect(&self) {
        let old = {
            let mut slot = lock(&self.slot);
            slot.generation = slot.generation.wrapping_add(1);
            slot.conn.take()
        };
        if let Some(old) = old {
            old.shutdown();
        }
    }

    /// Installs `conn` and wakes the waiting requests.
    fn install(&self, conn: SyscallConnection) {
        conn.set_label(*lock(&self.label));
        let waiters = {
            let mut slot = lock(&self.slot);
            slot.generation = slot.generation.wrapping_add(1);
            slot.conn = Some(Arc::new(conn));
            std::mem::take(&mut slot.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    /// The thread is gone: fail every waiting and later request.
    fn mark_dead(&self) {
        let waiters = {
            let mut slot = lock(&self.slot);
            slot.dead = true;
            std::mem::take(&mut slot.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    /// Runs `call` on the current connection, retrying on the next one a request that a
    /// reconnect refused before sending it.
    async fn forward<F>(&self, call: F) -> near::SyscallResult
    where
        F: for<'a> Fn(&'a SyscallConnection) -> SyscallFuture<'a>,
    {
        loop {
            let (conn, generation) = self.current().await?;
            let result = call(&conn).await;
            if matches!(result, Err(SyscallError::NotSent(NotSent::Closed)))
                && self.swapped_since(generation)
            {
                continue;
            }
            return result;
        }
    }
}

impl SyscallInterface for Reconnecting {
    unsafe fn syscall(&self, request: Request) -> SyscallFuture<'_> {
        // SAFETY: forwarded from the caller; the connection reaches the same process.
        Box::pin(self.forward(move |c| unsafe { c.syscall(request) }))
    }

    unsafe fn syscall_no_response(&self, request: Request) -> SyscallFuture<'_> {
        // SAFETY: as above.
        Box::pin(self.forward(move |c| unsafe { c.syscall_no_response(request) }))
    }

    unsafe fn syscall_new_fd(&self, request: Request) -> SyscallFuture<'_> {
        // SAFETY: as above.
        Box::pin(self.forward(move |c| unsafe { c.syscall_new_fd(request) }))
    }

    unsafe fn syscall_recorded(
        &self,
        request: Request,
        cell: near::ResultCell,
    ) -> SyscallFuture<'_> {
        // SAFETY: as above. Only the attempt that is sent can record a result.
        Box::pin(self.forward(move |c| unsafe { c.syscall_recorded(request, cell.clone()) }))
    }

    fn is_hung_up(&self) -> bool {
        let slot = lock(&self.slot);
        slot.dead || slot.conn.as_ref().is_some_and(|c| c.is_hung_up())
    }

    fn can_send_now(&self) -> bool {
        let slot = lock(&self.slot);
        !slot.dead && slot.conn.as_ref().is_some_and(|c| c.can_send_now())
    }

    fn set_label(&self, label: near::ThreadLabel) {
        *lock(&self.label) = label;
        if let Some(c) = &lock(&self.slot).conn {
            c.set_label(label);
        }
    }

    fn label(&self) -> near::ThreadLabel {
        *lock(&self.label)
    }

    fn keep_until_answered(&self, keep: Box<dyn Any + Send>) {
        // A request of an older connection is over once the server accepted the current
        // one (it serves one connection at a time), so the current one's rule covers it.
        // Without a connection we cannot know: keep it for good. The slot is unlocked
        // first: the connection may drop `keep` at once, and its destructor may use this
        // interface again (a dropped pipe2's room reads its memory and schedules a flush).
        let conn = lock(&self.slot).conn.clone();
        match conn {
            Some(c) => c.keep_until_answered(keep),
            None => std::mem::forget(keep),
        }
    }
}

impl Transport for Reconnecting {
    unsafe fn write<'a>(
        &'a self,
        dest: Address,
        data: &'a [u8],
    ) -> BoxFuture<'a, std::result::Result<(), SyscallError>> {
        Box::pin(async move {
            let (conn, _) = self.current().await?;
            // SAFETY: the caller owns the destination range in the server's address space.
            unsafe { conn.write_memory(dest, data) }.await
        })
    }

    unsafe fn read(
        &self,
        src: Address,
        len: usize,
    ) -> BoxFuture<'_, std::result::Result<Vec<u8>, SyscallError>> {
        Box::pin(async move {
            let (conn, _) = self.current().await?;
            // SAFETY: the caller owns the source range in the server's address space.
            unsafe { conn.read_memory(src, len) }.await
        })
    }
}

/// A thread running the persistent server: usable as a [`Thread`] (it derefs to one), and
/// reconnectable through its listening socket ([`PersistentThread::reconnect`],
/// [`PersistentThread::attach`]).
///
/// # Life
/// Made by [`Thread::clone_persistent`], it is a child of the creating program like any
/// clone child and dies with it (`PR_SET_PDEATHSIG`). [`PersistentThread::make_persistent`]
/// clears its death signal and gives it its own session, so it survives the program: a
/// later program reaches it with [`PersistentThread::attach`]. It ends with
/// [`PersistentThread::exit`], which also removes the socket file.
///
/// It shares the creating program's address space (`CLONE_VM`, as every clone child):
/// when that program exits or is killed, only the program's own threads die, and the
/// address space lives on as long as the persistent thread uses it, so the stack its
/// server runs on stays valid. The memory of the dead program stays mapped (and counted)
/// until the thread exits.
///
/// # Dropping
/// Dropped by its creator before [`make_persistent`](PersistentThread::make_persistent)
/// (and without [`exit`](PersistentThread::exit)), the thread is killed and reaped as a
/// [`ChildThread`] is, and its socket file is removed in the background through the
/// creating thread. Otherwise dropping only closes our connection: the server waits for
/// the next one. A thread killed with its creator (the creator was itself killed) leaves
/// its socket file behind: connecting there gives [`PersistentError::NoServer`] (and
/// removes nothing), and the next [`Thread::clone_persistent`] at that path finds nothing
/// listening on it, removes it and binds there (see
/// "Stale sockets" in [`Thread::clone_persistent`]).
///
/// # While disconnected
/// During [`reconnect`](PersistentThread::reconnect), and after a reconnect that failed
/// in any other way than [`PersistentError::NoServer`] (or was dropped), the thread has
/// no connection: syscalls made then wait
/// until a reconnect succeeds, as in the original. Dropping such a syscall's future
/// cancels it (nothing was sent). Once a reconnect finds nothing listening, the thread is
/// taken for dead and waiting and later syscalls fail with
/// [`SyscallError::Hangup`](near::SyscallError::Hangup). Syscalls in flight on the old
/// connection when it is shut down fail with a hangup (they may or may not have run; the
/// server finishes the one it is running before it accepts the new connection), or with
/// [`NotSent::Closed`](near::NotSent::Closed) handled internally: those are sent again on
/// the new connection.
///
/// # Limits
/// A persistent thread has no root epoller ([`Thread::make_root_epoller`] refuses): its
/// syscall socket changes at each reconnect. It cannot exec (exec a child cloned from it).
/// An attached one finds the number of its listening socket in its table (see
/// [`attach`](PersistentThread::attach)); if it cannot (a socket bound through
/// `/proc/self/fd/N/...` because its path was longer than `sun_path`),
/// [`Thread::unshare_files`] without `going_to_exec` (or [`Thread::do_cloexec_except`])
/// closes it there: the thread then serves its current connection and exits when that
/// ends. An attached thread is in an address space of its own to us, so
/// [`Thread::clone`] from it is refused.
pub struct PersistentThread {
    thread: Thread,
    iface: Arc<Reconnecting>,
    /// The socket's path, as given (relative paths are relative to the creating thread's
    /// working directory at creation, which the thread copied).
    path: PathBuf,
    /// What the creator holds, changed by `make_persistent`.
    owned: Mutex<Owned>,
    /// The thread's pid as seen by the local process, if it is in our pid namespace.
    local_pid: Option<near::Pid>,
    /// A pidfd of the thread in the local table, opened by the thread itself (so it names
    /// that process and no other, whatever its pid namespace): each connection's hangup
    /// signal is a copy. `None` if the kernel could not make one.
    pidfd: Option<OwnedFd>,
}

/// What a [`PersistentThread`] made by this program holds for its creator.
struct Owned {
    /// The creator's handle, which kills the thread when dropped, until it is made
    /// persistent or exits.
    child: Option<ChildThread>,
    /// The creator's monitor once the thread is made persistent.
    monitor: Option<AsyncChildProcess>,
    /// The thread that bound the socket, which removes it if the thread is dropped.
    creator: Option<Thread>,
}

impl fmt::Debug for PersistentThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentThread")
            .field("thread", &self.thread)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Deref for PersistentThread {
    type Target = Thread;
    fn deref(&self) -> &Thread {
        &self.thread
    }
}

/// The path's bytes, for the kernel.
fn path_bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().to_owned().into_vec()
}

impl Thread {
    /// Makes a child thread running the persistent server (PROTOCOL.md section 6),
    /// listening on a new unix socket bound at `path` (any length: a path longer than
    /// `sun_path` is bound through `/proc/self/fd/N` of its directory).
    ///
    /// The socket is bound by this thread, in its mount namespace and relative to its
    /// working directory, before the clone; the child inherits it and this thread's copy
    /// is closed. The child has its own fd table, shares our address space, and dies with
    /// us unless [`PersistentThread::make_persistent`] is called.
    ///
    /// # Stale sockets
    /// A socket file already at `path` with nothing listening on it, as a thread killed
    /// with its creator leaves behind, is reclaimed: when `bind` fails with `EADDRINUSE`,
    /// this thread checks that `path` itself (a symlink is not followed) is a unix socket
    /// and that a non-blocking connect to it is refused with `ECONNREFUSED`, checks that
    /// the file is still the one probed (same device and inode), removes it and binds
    /// once more. A live server (even one whose queue is full: `EAGAIN`), any other kind
    /// of file, and a check that fails (for example `EACCES`) keep the `EADDRINUSE`.
    /// The probe is a connection the live server sees open and close without a byte.
    ///
    /// The race: a socket another program has bound but not yet listened on also refuses
    /// connections. This function listens right after its bind, so that window is one
    /// syscall long here, but two creators at the same path at the same time can still
    /// take the other's fresh socket for stale and remove it, leaving that thread
    /// unreachable. Do not make persistent threads at one path concurrently.
    ///
    /// # Errors
    /// `EADDRINUSE` if something other than a stale socket exists at `path`; the errors
    /// of `socket`, `bind`, `listen` and [`Thread::clone`].
    ///
    /// # Cancellation
    /// Once polled, it is finished even if this future is dropped: it completes on a
    /// background thread, and the thread it made is then dropped (killed and reaped, its
    /// socket file removed), as for [`Thread::clone`].
    pub async fn clone_persistent(&self, path: impl AsRef<Path>) -> Result<PersistentThread> {
        let path = path.as_ref().to_owned();
        let this = self.duplicate();
        Critical::new(async move { this.clone_persistent_now(path).await }).await
    }

    /// [`Thread::clone_persistent`]'s work, a critical part ([`crate::background`]): it
    /// makes a socket file and a process across its awaits.
    async fn clone_persistent_now(&self, path: PathBuf) -> Result<PersistentThread> {
        let task = self.task();
        let listen = task
            .socket(AF::UNIX, SockType::STREAM, SOCK::CLOEXEC, 0)
            .await?;
        let bytes = path_bytes(&path);
        match listen.bind_unix(bytes.as_slice()).await {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::EADDRINUSE) => {
                if !reclaim_stale_socket(task, &bytes).await? {
                    return Err(e);
                }
                // Once: if someone else made a file there meanwhile, it is theirs.
                listen.bind_unix(bytes.as_slice()).await?;
            }
            Err(e) => return Err(e),
        }
        // Listening right after the bind (no syscall between them): until then, the file
        // looks stale to another creator's check (see "Stale sockets" above).
        // Removes the file if anything below fails or is dropped.
        let guard = SocketFileGuard {
            thread: Some(self.duplicate()),
            path: path.clone(),
        };
        listen.listen(8).await?;
        let options = CloneOptions::new().persistent(listen.near());
        let (child, iface) = self.clone_persistent_child(options).await?;
        // Its copies of our own fds go: the access end of its syscall socket among them,
        // without which it would never see us go.
        child
            .close_unnamed_inherited(&self.task().fd_table())
            .await?;
        // The child has its copy; ours goes.
        drop(listen);
        let local_pid = if child.task().namespaces().pidns == local_namespaces().pidns
            && self.task().namespaces().pidns == local_namespaces().pidns
        {
            child.pid()
        } else {
            None
        };
        let thread = child.duplicate();
        let pidfd = own_pidfd(&thread).await;
        let creator = guard.disarm();
        Ok(PersistentThread {
            thread,
            iface,
            path,
            owned: Mutex::new(Owned {
                child: Some(child),
                monitor: None,
                creator,
            }),
            local_pid,
            pidfd,
        })
    }
}

/// Removes the file at `path` through `task` if it is a stale unix socket: a socket file
/// (not followed if a symlink) to which a connect is refused (`ECONNREFUSED`: nothing
/// listens on it; a live server with a full queue answers `EAGAIN` instead), still the
/// same file (device and inode) after that connect. Returns whether it was removed (or
/// was gone already); `false` for anything else, including errors of the check, which the
/// caller answers with its `EADDRINUSE`. A hangup of `task` is returned as an error.
///
/// The connect uses [`FileDescriptor::connect_unix`], so paths longer than `sun_path` are
/// reached as the bind reaches them. A socket bound by another creator that has not yet
/// called `listen` also refuses connections: see the race in [`Thread::clone_persistent`].
async fn reclaim_stale_socket(task: &Task, path: &[u8]) -> Result<bool> {
    let checked = async {
        let stale_file = || async {
            let st = task.lstat(path).await?;
            Ok::<_, Error>(
                (st.file_type() == rsyscall_handle::structs::FileType::Socket)
                    .then_some((st.dev, st.ino)),
            )
        };
        let Some(before) = stale_file().await? else {
            return Ok(false);
        };
        let probe = task
            .socket(
                AF::UNIX,
                SockType::STREAM,
                SOCK::NONBLOCK | SOCK::CLOEXEC,
                0,
            )
            .await?;
        let connected = probe.connect_unix(path).await;
        probe.close().await?;
        match connected {
            Err(e) if e.errno() == Some(Errno::ECONNREFUSED) => {}
            Err(e) if e.is_hangup() => return Err(e),
            // Connected or queued (a live server), EAGAIN (a live server with a full
            // queue), EACCES, ...: not ours to remove.
            _ => return Ok(false),
        }
        // The file we probed, not one a concurrent creator put there since.
        if stale_file().await? != Some(before) {
            return Ok(false);
        }
        match task.unlinkat(None, path, AT::empty()).await {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        log::info!(
            "removed the stale socket file {:?} (nothing listened on it)",
            String::from_utf8_lossy(path)
        );
        Ok(true)
    };
    match checked.await {
        Ok(removed) => Ok(removed),
        Err(e) if e.is_hangup() => Err(e),
        Err(e) => {
            log::debug!(
                "not reclaiming {:?}: checking it failed: {e}",
                String::from_utf8_lossy(path)
            );
            Ok(false)
        }
    }
}

/// Removes a socket file through a thread when dropped, unless disarmed.
struct SocketFileGuard {
    thread: Option<Thread>,
    path: PathBuf,
}

impl SocketFileGuard {
    fn disarm(mut self) -> Option<Thread> {
        self.thread.take()
    }
}

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            remove_in_background(thread, self.path.clone());
        }
    }
}

/// Removes the socket file at `path` through `thread`, on the reaper thread.
fn remove_in_background(thread: Thread, path: PathBuf) {
    crate::reaper::spawn(async move {
        let r = thread
            .task()
            .unlinkat(None, path_bytes(&path).as_slice(), AT::empty())
            .await;
        if let Err(e) = r {
            log::warn!("removing the persistent thread's socket {path:?}: {e}");
        }
    });
}

impl PersistentThread {
    /// The path of its listening socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The thread's pid as the local process sees it, if it is in our pid namespace.
    pub fn local_pid(&self) -> Option<near::Pid> {
        self.local_pid
    }

    /// Detaches the thread from its creator so that it survives the creating program:
    /// clears its parent-death signal (`PR_SET_PDEATHSIG` 0) and puts it in a session of
    /// its own (`setsid`), away from the creator's terminal and its signals. Dropping
    /// this value no longer kills it; end it with [`PersistentThread::exit`], from here
    /// or from a program that [`attach`](PersistentThread::attach)es.
    ///
    /// # Errors
    /// The errors of the two syscalls (`EPERM` from `setsid` if it already leads a
    /// session or process group, as after an earlier call).
    pub async fn make_persistent(&self) -> Result<()> {
        let task = self.thread.task();
        task.set_pdeathsig(None).await?;
        task.setsid().await?;
        let mut owned = lock(&self.owned);
        if let Some(child) = owned.child.take() {
            owned.monitor = child.release("rsyscall persistent thread".into());
        }
        // Nobody kills it on drop now, so nobody removes its socket then either.
        owned.creator = None;
        Ok(())
    }

    /// Connects to the thread again through `via`, any thread that can reach the socket
    /// path (for example from another mount namespace, or another thread of this program
    /// after the one used before is gone). The current connection is shut down first: the
    /// server accepts a new client only once the old one is gone.
    ///
    /// Every handle of the thread stays valid: its fd table, address space and
    /// namespaces are the same; only the socket its server reads changes. Syscalls made
    /// meanwhile wait (see [While disconnected](PersistentThread#while-disconnected)).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (as [`PersistentError::Other`]) if `via` is this thread,
    /// before anything is done; [`PersistentError::NoServer`] (the thread is then taken
    /// for dead), [`PersistentError::Busy`] after [`HANDSHAKE_TIMEOUT`],
    /// [`PersistentError::Handshake`], the errors of making and moving the sockets: after
    /// these the thread stays disconnected until a reconnect succeeds.
    ///
    /// # Cancellation
    /// Dropped at any point, nothing leaks: the thread stays disconnected (calls wait)
    /// until the next reconnect; a server that got half a handshake closes it, and one
    /// that got our socket sees it hang up and waits for the next client.
    pub async fn reconnect(&self, via: &Thread) -> std::result::Result<(), PersistentError> {
        let via_iface = Arc::as_ptr(via.task().sysif_arc()) as *const u8;
        if std::ptr::eq(via_iface, Arc::as_ptr(&self.iface) as *const u8) {
            // Its requests would wait for the very reconnect they are part of.
            return Err(Error::invalid(
                "PersistentThread::reconnect",
                "a persistent thread cannot reconnect through itself; use a thread that can \
                 reach its socket, such as local_thread()",
            )
            .into());
        }
        let _one_at_a_time = self.iface.reconnecting.lock().await;
        self.iface.disconnect();
        if via.host().is_some() {
            return self.reconnect_across_hosts(via).await;
        }
        let (access, numbers) = match handshake(via, &self.path, 1).await {
            Ok(parts) => parts,
            Err(e @ PersistentError::NoServer { .. }) => {
                self.iface.mark_dead();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let (access, mut fds) = (access, numbers.into_iter());
        let server_fd = near::FileDescriptor::new(fds.next().unwrap_or(-1));
        let conn = self.connection_to(access, server_fd).await?;
        self.iface.install(conn);
        Ok(())
    }

    /// [`PersistentThread::reconnect`] through `via`, a thread on another host (the
    /// persistent thread is on that host): the new syscall socket is a channel through
    /// `via`'s ssh forward, and the handshake, made by `via`, passes it with `via`'s copy of
    /// the host's listening socket, which the thread then makes its own channels through
    /// (the one it had before belonged to an earlier session, and is closed).
    async fn reconnect_across_hosts(
        &self,
        via: &Thread,
    ) -> std::result::Result<(), PersistentError> {
        let (access, server_fd, new) = match host_handshake(via, &self.path).await {
            Ok(parts) => parts,
            Err(e @ PersistentError::NoServer { .. }) => {
                self.iface.mark_dead();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let conn = self.connection_to(access, server_fd).await?;
        self.iface.install(conn);
        let listener = new.listener;
        if let Some(old) = self.thread.set_host(new)
            && old.listener != listener
        {
            // SAFETY: the old listening socket came from an earlier session's bootstrap,
            // inherited or passed to the thread; no handle names it (the host access held
            // only its number, now replaced) and nothing uses it any more.
            let old = unsafe { FileDescriptor::from_raw(self.thread.task(), old.listener) };
            if let Err(e) = old.close().await {
                log::debug!("closing a persistent thread's old listening socket: {e}");
            }
        }
        Ok(())
    }

    /// A connection on `access`, hung up when the thread's process exits (watched through
    /// the thread's own pidfd, or its pid if no pidfd could be made).
    async fn connection_to(
        &self,
        access: OwnedFd,
        server_fd: near::FileDescriptor,
    ) -> std::result::Result<SyscallConnection, PersistentError> {
        let conn = SyscallConnection::new(access, server_fd).map_err(|source| Error::Io {
            what: "registering a connection",
            source,
        })?;
        watch_thread(&conn, self.pidfd.as_ref(), self.local_pid).await?;
        Ok(conn)
    }

    /// Ends the thread with `exit(status)`, after removing its socket file (through the
    /// thread itself). Returns its monitor if this program made it (the thread is then
    /// reaped when the monitor is waited for or dropped); `None` for an attached thread,
    /// which is its creator's (or, once that is gone, its new parent's) to reap.
    ///
    /// # Errors
    /// The errors of `unlinkat` other than `ENOENT`; as [`Thread::exit`].
    pub async fn exit(mut self, status: i32) -> Result<Option<AsyncChildProcess>> {
        match self
            .thread
            .task()
            .unlinkat(None, path_bytes(&self.path).as_slice(), AT::empty())
            .await
        {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let (child, monitor) = {
            let owned = self.owned.get_mut().unwrap_or_else(|e| e.into_inner());
            owned.creator = None;
            (owned.child.take(), owned.monitor.take())
        };
        if let Some(child) = child {
            return child.exit(status).await.map(Some);
        }
        self.thread.exit(status).await?;
        Ok(monitor)
    }

    /// Attaches to the persistent thread listening at `path`, through `via` (a thread that
    /// can reach the socket), from a program that knows nothing else about it: its pid,
    /// namespaces and environment are read from the process itself. The thread's memory is
    /// reached in-band over its connection, so attaching works from any program; the
    /// returned value does not kill the thread when dropped.
    ///
    /// Through a thread on another host (an ssh thread, [`crate::SshHost`]), the thread is
    /// attached over that session: its syscall socket is a channel through the session's
    /// forward, and the session's listening socket is passed to it for its later channels
    /// (fds cannot be passed across hosts, so it has no fd-passing connection then).
    ///
    /// The new [`Thread`] has a fresh fd-passing [`Connection`] (passed in the handshake).
    /// Its fd table and address space get new identities, so handles of another
    /// [`PersistentThread`] value for the same process are not usable with it.
    ///
    /// What it finds in the thread's table: the fd-passing socket ends of earlier attaches
    /// (each bound to an abstract address marking it) whose other end is closed are
    /// closed, so attaching again and again leaves nothing behind; one whose peer lives
    /// (another value still holds it) is left alone. (The creator's own fd-passing
    /// socket is not marked, and stays.) The listening socket is found as the unix socket
    /// that accepts connections and is bound to the same file as `path` (same device and
    /// inode, whatever the spelling of the path), so that
    /// [`Thread::unshare_files`] and [`Thread::do_cloexec_except`] keep it.
    ///
    /// The thread's death is watched through a pidfd the thread opens on itself and passes
    /// to us, so the watch cannot name another process even if the pid was reused, and
    /// works in any pid namespace.
    ///
    /// # Errors
    /// As [`PersistentThread::reconnect`]; the errors of the syscalls that discover the
    /// process.
    ///
    /// # Cancellation
    /// Dropped at any point, nothing leaks: fds and memory made are closed or freed with
    /// the half-built thread, and the server sees our connection hang up.
    pub async fn attach(
        via: &Thread,
        path: impl AsRef<Path>,
    ) -> std::result::Result<PersistentThread, PersistentError> {
        let path = path.as_ref().to_owned();
        // How fds reach the thread: a fresh fd-passing connection, or on another host the
        // channels of `via`'s ssh session, through the host's listening socket passed now.
        enum Reach {
            Local(OwnedFd, i32),
            Host(crate::host::HostAccess),
        }
        let (access, server_fd, reach) = match via.host() {
            None => {
                let ((access, fdpass_local), [server_fd, fdpass_remote]) =
                    handshake_with_connection(via, &path).await?;
                (access, server_fd, Reach::Local(fdpass_local, fdpass_remote))
            }
            Some(_) => {
                let (access, server_fd, host) = host_handshake(via, &path).await?;
                (access, server_fd.as_raw(), Reach::Host(host))
            }
        };
        let conn = SyscallConnection::new(access, near::FileDescriptor::new(server_fd)).map_err(
            |source| Error::Io {
                what: "registering a connection",
                source,
            },
        )?;
        let iface = Arc::new(Reconnecting::new(conn, None));
        // SAFETY: see the module's Safety section: `iface` runs syscalls in the process, a
        // clone child with an fd table of its own, and reaches its memory in-band; its
        // address space (its creator's, perhaps ours) gets a new identity whose only user
        // is the allocator made for it.
        let RemoteTask { task, local_pid } =
            unsafe { remote_task(iface.clone(), iface.clone(), iface.clone(), None) }.await?;
        let (connection, host, second) = match reach {
            Reach::Local(fdpass_local, fdpass_remote) => {
                // SAFETY: the server received this fd in the handshake and gave us its
                // number; no other handle exists for it.
                let remote = unsafe {
                    FileDescriptor::from_raw(&task, near::FileDescriptor::new(fdpass_remote))
                };
                (
                    Some(Connection::new(fdpass_local, remote)),
                    None,
                    near::FileDescriptor::new(fdpass_remote),
                )
            }
            Reach::Host(host) => {
                let listener = host.listener;
                (None, Some(host), listener)
            }
        };
        let environ = match read_environ(&task).await {
            Ok(env) => env,
            Err(e) => return Err(e.into()),
        };
        let thread = Thread::from_parts(
            task,
            connection,
            SharedEnvironment::new(environ),
            None,
            None,
            // Its server code lies somewhere in the memory of the program that made it.
            None,
        );
        if let Some(host) = host {
            let _ = thread.set_host(host);
        }
        let pid = local_pid.unwrap_or(thread.task().pid()).as_raw();
        thread.created(
            near::ThreadKind::Persistent,
            pid,
            format_args!("attached at {}", path.display()),
        );
        let _ = thread.inner.persistent.set(Arc::clone(&iface));
        // Its death hangs the connection up even while other tables hold its socket.
        let pidfd = own_pidfd(&thread).await;
        let current = lock(&iface.slot).conn.clone();
        if let Some(conn) = current {
            watch_thread(&conn, pidfd.as_ref(), local_pid).await?;
        }
        let keep = [near::FileDescriptor::new(server_fd), second];
        let scanned = scan_table(&thread, &keep, via, &path).await?;
        if let Some(listen) = scanned.listen_fd {
            let _ = iface.listen_fd.set(listen);
        }
        Ok(PersistentThread {
            thread,
            iface,
            path,
            owned: Mutex::new(Owned {
                child: None,
                monitor: None,
                creator: None,
            }),
            local_pid,
            pidfd,
        })
    }
}

impl Drop for PersistentThread {
    fn drop(&mut self) {
        // The child (if still ours) is killed by its own drop; its socket goes with it.
        let owned = self.owned.get_mut().unwrap_or_else(|e| e.into_inner());
        if let (Some(_), Some(creator)) = (owned.child.take(), owned.creator.take()) {
            remove_in_background(creator, self.path.clone());
        }
    }
}

/// Registers the pidfd of `pid` (a pid of the local pid namespace) as `conn`'s hangup
/// signal, so that the thread's death fails its requests instead of leaving them waiting.
async fn watch_pid(conn: &SyscallConnection, pid: near::Pid) -> Result<()> {
    let pidfd = Task::local().pidfd_open(pid, PIDFD::empty()).await?;
    let pidfd = pidfd
        .into_owned_fd()
        .map_err(|_| Error::invalid("pidfd_open", "the pidfd is not local"))?;
    conn.hangup_when_readable(pidfd)
        .map_err(|source| Error::Io {
            what: "registering a pidfd",
            source,
        })
}

/// Makes the thread's death hang `conn` up: through a copy of its own `pidfd` if there
/// is one, else through its pid in ours, if any (else nothing watches it but EOF).
async fn watch_thread(
    conn: &SyscallConnection,
    pidfd: Option<&OwnedFd>,
    local_pid: Option<near::Pid>,
) -> Result<()> {
    match (pidfd, local_pid) {
        (Some(pidfd), _) => watch_pidfd(conn, pidfd),
        (None, Some(pid)) => watch_pid(conn, pid).await,
        (None, None) => Ok(()),
    }
}

/// Registers a copy of `pidfd` as `conn`'s hangup signal.
fn watch_pidfd(conn: &SyscallConnection, pidfd: &OwnedFd) -> Result<()> {
    let copy = pidfd.try_clone().map_err(|source| Error::Io {
        what: "duplicating a pidfd",
        source,
    })?;
    conn.hangup_when_readable(copy).map_err(|source| Error::Io {
        what: "registering a pidfd",
        source,
    })
}

/// A pidfd of `thread`'s process in the local table: `pidfd_open(getpid())` made by the
/// thread itself, so it cannot name another process (a pid read from outside may be
/// reused once the process is reaped by someone else), then moved here over its
/// [`Connection`]. `None`, logged, if that fails (a kernel without pidfds): the caller
/// falls back to the local pid, if any.
async fn own_pidfd(thread: &Thread) -> Option<OwnedFd> {
    if thread.host().is_some() {
        // No fd can come from another host; its connection's end says when it is gone.
        return None;
    }
    let made = async {
        let task = thread.task();
        let pidfd = task.pidfd_open(task.pid(), PIDFD::empty()).await?;
        let local = thread.thread_to_local(&pidfd).await;
        pidfd.close().await?;
        local
    };
    match made.await {
        Ok(fd) => Some(fd),
        Err(e) => {
            log::warn!(
                "pid {}: no pidfd of the persistent thread: {e}",
                thread.task().pid().as_raw()
            );
            None
        }
    }
}

/// The prefix of the abstract address an attach binds its fd-passing socket's remote end
/// to ([`mark_fdpass`]), so that a later attach knows it in the thread's table.
const FDPASS_PREFIX: &[u8] = b"rsyscall-persistent-fdpass-";

/// Binds `sock` (the end of an fd-passing socketpair that goes to the thread) to a unique
/// abstract address starting with [`FDPASS_PREFIX`]: a mark, read back with
/// `getsockname` by the next attach (binding changes nothing else on a connected
/// socketpair end).
fn mark_fdpass(sock: &UnixStream) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut name = FDPASS_PREFIX.to_vec();
    name.extend_from_slice(
        format!(
            "{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
        .as_bytes(),
    );
    let addr = nix::sys::socket::UnixAddr::new_abstract(&name)?;
    nix::sys::socket::bind(sock.as_raw_fd(), &addr)?;
    Ok(())
}

/// What [`scan_table`] found in an attached thread's table.
struct Scanned {
    /// The listening socket the thread serves at the attach's path.
    listen_fd: Option<near::FileDescriptor>,
}

/// Goes through the fds of an attached thread's table once, except `keep` (its new
/// syscall socket and fd-passing socket):
/// - closes the fd-passing socket ends of earlier attaches ([`mark_fdpass`]) whose
///   other end is closed: their program (or its value) is gone, and nothing else in any
///   program can name them; one whose peer lives is left to it;
/// - finds the listening socket: a unix socket that accepts connections
///   (`SO_ACCEPTCONN`), whose bound path, as the thread resolves it, is the file `path`
///   is as `via` resolves it (same device and inode). A socket bound through
///   `/proc/self/fd/N/...` of a directory fd (a path longer than `sun_path`) names a
///   path that no longer resolves: it is not found then.
async fn scan_table(
    thread: &Thread,
    keep: &[near::FileDescriptor],
    via: &Thread,
    path: &Path,
) -> Result<Scanned> {
    let task = thread.task();
    let wanted = via
        .task()
        .stat(path_bytes(path).as_slice())
        .await
        .ok()
        .map(|st| (st.dev, st.ino));
    let mut listen_fd = None;
    for n in crate::unshare::list_fds(task).await? {
        if keep.contains(&n) {
            continue;
        }
        // SAFETY: `n` is open in the thread's table (just listed) and no handle of ours
        // names it (the task is new and `keep` holds the fds its handles own); nothing
        // closes or replaces it while this handle lives (it is used for getsockname,
        // getsockopt and a peeking recv, and dropped before the close below).
        let fd = unsafe { FileDescriptor::borrowed(task, n) };
        let name = match fd.getsockname().await {
            Ok(rsyscall_handle::structs::AnySockaddr::Un(un)) => un,
            Ok(_) => continue,
            Err(e) if e.is_hangup() => return Err(e),
            Err(_) => continue, // not a socket
        };
        if let Some(abs) = name.abstract_name() {
            if !abs.starts_with(FDPASS_PREFIX) {
                continue;
            }
            let peeked = task
                .recvfrom_bytes(&fd, 1, near::MSG::PEEK | near::MSG::DONTWAIT)
                .await;
            drop(fd);
            match peeked {
                // End of stream: its peer is closed.
                Ok((data, _)) if data.is_empty() => {
                    // SAFETY: the fd is the thread's end of an earlier attach's
                    // fd-passing socket, whose other end is closed: the value that owned
                    // it is gone (with its program, or dropped), and no handle of this
                    // program names it; the borrowed handle is gone.
                    let owned = unsafe { FileDescriptor::from_raw(task, n) };
                    owned.close().await?;
                }
                Err(e) if e.is_hangup() => return Err(e),
                _ => {}
            }
            continue;
        }
        let (Some(bound), Some(wanted)) = (name.path(), wanted) else {
            continue;
        };
        if listen_fd.is_some()
            || fd
                .getsockopt_int(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)
                .await
                .ok()
                != Some(1)
        {
            continue;
        }
        let bound = bound.to_vec();
        drop(fd);
        if let Ok(st) = task.stat(bound.as_slice()).await
            && (st.dev, st.ino) == wanted
        {
            listen_fd = Some(n);
        }
    }
    Ok(Scanned { listen_fd })
}

/// The environment of the task's process, from `/proc/self/environ`.
async fn read_environ(task: &Task) -> Result<Environment> {
    let fd = task
        .open("/proc/self/environ", O::RDONLY | O::CLOEXEC, 0)
        .await?;
    let bytes = task.read_to_eof(&fd).await?;
    Ok(Environment::from_strings(
        bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(<[u8]>::to_vec),
    ))
}

/// A socket of `via` connected to `path`; nothing listening there is
/// [`PersistentError::NoServer`].
async fn connect_in(
    via: &Thread,
    path: &Path,
) -> std::result::Result<FileDescriptor, PersistentError> {
    let task = via.task();
    let sock = task
        .socket(AF::UNIX, SockType::STREAM, SOCK::CLOEXEC, 0)
        .await?;
    if let Err(source) = sock.connect_unix(path_bytes(path).as_slice()).await {
        return Err(match source.errno() {
            Some(Errno::ECONNREFUSED | Errno::ENOENT | Errno::ENOTSOCK) => {
                PersistentError::NoServer {
                    path: path.to_owned(),
                    source,
                }
            }
            _ => PersistentError::Other(source),
        });
    }
    Ok(sock)
}

/// Connects to `path` through `via` and moves the connected socket to the local table.
async fn connect_local(via: &Thread, path: &Path) -> std::result::Result<OwnedFd, PersistentError> {
    let sock = connect_in(via, path).await?;
    Ok(via.thread_to_local(&sock).await?)
}

/// The persistent handshake of PROTOCOL.md section 6 over the connected local socket
/// `sock`, passing `fds`; returns the server's numbers for them. Bounded by
/// [`HANDSHAKE_TIMEOUT`].
async fn run_handshake(
    sock: OwnedFd,
    fds: &[BorrowedFd<'_>],
    path: &Path,
) -> std::result::Result<Vec<i32>, PersistentError> {
    let io_err = |source: std::io::Error| {
        PersistentError::Other(Error::Io {
            what: "persistent handshake",
            source,
        })
    };
    let mut stream = Async::new(UnixStream::from(sock)).map_err(io_err)?;
    let exchange = async {
        let count = fds.len() as i32;
        stream.write_all(&count.to_le_bytes()).await?;
        let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        stream
            .write_with(|s| {
                let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
                nix::sys::socket::sendmsg::<()>(
                    s.as_raw_fd(),
                    &[IoSlice::new(&[0u8])],
                    &cmsg,
                    nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(std::io::Error::from)
            })
            .await?;
        let mut reply = vec![0u8; 4 * fds.len()];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let timeout = async {
        Timer::after(HANDSHAKE_TIMEOUT).await;
        Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
    };
    match future::or(exchange, timeout).await {
        Ok(reply) => Ok(reply
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(PersistentError::Busy {
            path: path.to_owned(),
            waited: HANDSHAKE_TIMEOUT,
        }),
        // The server died as we connected: its listening socket was closed with our
        // connection in its queue.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Err(PersistentError::NoServer {
                path: path.to_owned(),
                source: Error::Io {
                    what: "persistent handshake",
                    source: e,
                },
            })
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Err(PersistentError::Handshake {
                path: path.to_owned(),
                detail: "it closed the connection instead of answering".into(),
            })
        }
        Err(e) => Err(io_err(e)),
    }
}

/// Checks the server's answer: `n` fd numbers, each a valid fd number.
fn check_numbers(
    numbers: &[i32],
    n: usize,
    path: &Path,
) -> std::result::Result<(), PersistentError> {
    if numbers.len() != n || numbers.iter().any(|&fd| fd < 0) {
        return Err(PersistentError::Handshake {
            path: path.to_owned(),
            detail: format!("it answered fd numbers {numbers:?} for {n} fds"),
        });
    }
    Ok(())
}

/// A reconnect's handshake: a new syscall socketpair whose server end is passed (with
/// `n == 1`); returns our end and the server's numbers.
async fn handshake(
    via: &Thread,
    path: &Path,
    n: usize,
) -> std::result::Result<(OwnedFd, Vec<i32>), PersistentError> {
    let sock = connect_local(via, path).await?;
    let (access, server_end) = UnixStream::pair().map_err(|source| Error::Io {
        what: "socketpair",
        source,
    })?;
    let numbers = run_handshake(sock, &[std::os::fd::AsFd::as_fd(&server_end)], path).await?;
    check_numbers(&numbers, n, path)?;
    Ok((access.into(), numbers))
}

/// An attach's handshake: a syscall socketpair and an fd-passing socketpair, whose remote
/// ends are passed. Returns our two ends and the server's numbers `[server, fdpass]`.
async fn handshake_with_connection(
    via: &Thread,
    path: &Path,
) -> std::result::Result<((OwnedFd, OwnedFd), [i32; 2]), PersistentError> {
    let sock = connect_local(via, path).await?;
    let pair = || {
        UnixStream::pair().map_err(|source| Error::Io {
            what: "socketpair",
            source,
        })
    };
    let (access, server_end) = pair()?;
    let (fdpass_local, fdpass_remote) = pair()?;
    mark_fdpass(&fdpass_remote).map_err(|source| Error::Io {
        what: "binding an fd-passing socket to its mark",
        source,
    })?;
    let numbers = run_handshake(
        sock,
        &[
            std::os::fd::AsFd::as_fd(&server_end),
            std::os::fd::AsFd::as_fd(&fdpass_remote),
        ],
        path,
    )
    .await?;
    check_numbers(&numbers, 2, path)?;
    Ok((
        (access.into(), fdpass_local.into()),
        [numbers[0], numbers[1]],
    ))
}

/// The handshake through `via`, a thread on another host: a channel through its ssh
/// forward and its copy of the host's listening socket are passed to the server at `path`.
/// Returns our end of the channel, the server's number for its end (its new syscall
/// socket) and how the thread makes its channels from then on.
async fn host_handshake(
    via: &Thread,
    path: &Path,
) -> std::result::Result<(OwnedFd, near::FileDescriptor, crate::host::HostAccess), PersistentError>
{
    let Some(via_host) = via.host() else {
        return Err(Error::invalid("persistent handshake", "not a thread of another host").into());
    };
    let (access, theirs) = via
        .host_channels(1)
        .await?
        .pop()
        .ok_or_else(|| Error::invalid("persistent handshake", "no channel was made"))?;
    // SAFETY: `via_host.listener` is the host's listening socket in `via`'s table, kept
    // open for `via`'s life (a reserved fd); this handle only passes a copy of it and is
    // never closed or replaced.
    let listener = unsafe { FileDescriptor::borrowed(via.task(), via_host.listener) };
    let numbers = remote_handshake(via, path, &[&theirs, &listener]).await?;
    check_numbers(&numbers, 2, path)?;
    let host = crate::host::HostAccess {
        link: via_host.link,
        listener: near::FileDescriptor::new(numbers[1]),
    };
    Ok((access, near::FileDescriptor::new(numbers[0]), host))
}

/// The persistent handshake (PROTOCOL.md section 6) made by `via`, a thread on another
/// host, in its own table: connects to `path` there, sends the count and `fds` in one
/// message, reads the numbers back. Bounded by [`HANDSHAKE_TIMEOUT`] (the socket is
/// non-blocking and waited on through `via`'s root epoller, so a server that never
/// answers leaves `via` free).
async fn remote_handshake(
    via: &Thread,
    path: &Path,
    fds: &[&FileDescriptor],
) -> std::result::Result<Vec<i32>, PersistentError> {
    let task = via.task();
    let sock = connect_in(via, path).await?;
    let count = (fds.len() as i32).to_le_bytes();
    task.write_all_bytes(&sock, &count).await?;
    task.send_fds(&sock, fds).await?;
    let afd = via.make_afd(sock, true).await?;
    let want = 4 * fds.len();
    let exchange = async {
        let mut reply = Vec::with_capacity(want);
        while reply.len() < want {
            match afd.read_some_bytes(want - reply.len()).await {
                Ok(bytes) if bytes.is_empty() => {
                    return Err(PersistentError::Handshake {
                        path: path.to_owned(),
                        detail: "it closed the connection instead of answering".into(),
                    });
                }
                Ok(bytes) => reply.extend_from_slice(&bytes),
                Err(e) if e.errno() == Some(Errno::ECONNRESET) => {
                    return Err(PersistentError::NoServer {
                        path: path.to_owned(),
                        source: e,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(reply)
    };
    let timeout = async {
        Timer::after(HANDSHAKE_TIMEOUT).await;
        Err(PersistentError::Busy {
            path: path.to_owned(),
            waited: HANDSHAKE_TIMEOUT,
        })
    };
    let reply = future::or(exchange, timeout).await?;
    if let Err(e) = afd.close().await {
        log::debug!("closing a persistent handshake's socket: {e}");
    }
    Ok(reply
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}
