//! [`AsyncFileDescriptor`]: non-blocking I/O on an fd of any thread, waiting for readiness
//! on the thread's event loop (see [`crate::epoller`]); [`Thread::make_afd`], and the
//! channels between the local process and a thread ([`Thread::open_channels`],
//! [`Thread::open_async_channels`]).
//!
//! Every operation tries its syscall first and waits only on `EAGAIN`: using the wrong end
//! of a pipe fails at once with `EBADF`, and readiness that arose before the wait is never
//! missed (the wait arms level-triggered readiness after the `EAGAIN`).
//!
//! # Safety
//! `read(2)` into a [`Pointer`] of the fd's task, checked to be memory of that task's
//! address space and lent to the syscall until it completed, exactly as
//! [`FileDescriptor::read`] does; unlike that method, the buffer is kept on `EAGAIN` so the
//! read can be retried into it. And two short-lived borrowed handles to local fds owned
//! by locals of the same function (`wait_rdhup`), only registered and waited on.
#![allow(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use async_io::Async;
use futures_lite::{AsyncRead, AsyncWrite};
use rsyscall_handle::structs::{AnySockaddr, EpollEvent, Sockaddr, sockopt};
use rsyscall_handle::{
    Error, FileDescriptor, Pointer, ReadablePointer, Result, Task, WrittenPointer,
};
use rsyscall_near::{self as near, EPOLL, Errno, SHUT, SOCK, SyscallError};

use crate::background::Detached;
use crate::epoller::Registered;
use crate::thread::{Thread, local_thread};

/// Where readiness of an fd is watched.
enum Registration {
    /// A copy of the fd in the local table, registered with the async-io reactor.
    Local(Async<OwnedFd>),
    /// The fd itself, on its thread's root epoller.
    Root(Registered),
}

/// What a retried syscall waits for.
#[derive(Clone, Copy, Debug)]
enum Want {
    Read,
    Write,
}

fn reactor_error(source: std::io::Error) -> Error {
    Error::Io {
        what: "waiting for readiness on the async-io reactor",
        source,
    }
}

impl Registration {
    /// Waits until the fd may have become ready for `want` (possibly spuriously).
    async fn wait(&self, want: Want) -> Result<()> {
        match (self, want) {
            (Registration::Local(io), Want::Read) => io.readable().await.map_err(reactor_error),
            (Registration::Local(io), Want::Write) => io.writable().await.map_err(reactor_error),
            (Registration::Root(r), Want::Read) => r.wait(EPOLL::IN | EPOLL::RDHUP).await.map(drop),
            (Registration::Root(r), Want::Write) => r.wait(EPOLL::OUT).await.map(drop),
        }
    }

    /// Waits until the peer hung up (`EPOLLRDHUP`, `EPOLLHUP` or `EPOLLERR`).
    async fn wait_rdhup(&self) -> Result<()> {
        let hangup = EPOLL::RDHUP | EPOLL::HUP | EPOLL::ERR;
        match self {
            Registration::Root(r) => loop {
                if r.wait(EPOLL::RDHUP).await?.intersects(hangup) {
                    return Ok(());
                }
            },
            Registration::Local(io) => {
                // The reactor reports readability, not hangups: watch the hangup alone
                // with an epoll fd of our own, registered with the reactor and drained
                // (timeout 0) before every wait on it.
                let local = Task::local();
                let own = local.epoll_create().await?;
                // SAFETY: the fd is `io`'s, which `self` holds for longer than this
                // handle lives (to the end of this arm); the handle is only registered
                // with our own epoll fd, never closed or replaced.
                let target = unsafe {
                    FileDescriptor::borrowed(
                        &local,
                        near::FileDescriptor::new(io.get_ref().as_raw_fd()),
                    )
                };
                own.epoll_add(&target, EPOLL::RDHUP, 0).await?;
                let own = own.into_owned_fd().map_err(|_| {
                    Error::invalid("wait_for_rdhup", "a fresh epoll fd had another handle")
                })?;
                let near_own = near::FileDescriptor::new(own.as_raw_fd());
                let watcher = Async::new_nonblocking(own).map_err(reactor_error)?;
                // SAFETY: the fd is the epoll instance `watcher` owns, which lives as long
                // as this handle (both are locals of this arm); the handle is only waited
                // on, never closed or replaced.
                let epfd = unsafe { FileDescriptor::borrowed(&local, near_own) };
                loop {
                    let buf = local.malloc_array::<EpollEvent>(1).await?;
                    let (got, _) = epfd.epoll_wait(buf, 0).await?;
                    if got.size() > 0 {
                        return Ok(());
                    }
                    watcher.readable().await.map_err(reactor_error)?;
                }
            }
        }
    }
}

/// One `read(2)` into `buf`: the filled part and the rest, or `buf` back on `EAGAIN`.
async fn try_read(
    handle: &FileDescriptor,
    buf: Pointer<[u8]>,
) -> Result<std::result::Result<(ReadablePointer<[u8]>, Pointer<[u8]>), Pointer<[u8]>>> {
    let task = handle.task();
    let fd = task.check_fd(handle)?;
    let addr = task.check_ptr(&buf)?;
    task.prepare().await;
    let len = buf.size();
    let lent = task.lend(buf);
    // SAFETY: `addr` is `len` bytes of the task's own address space (checked above),
    // lent to the syscall until it completed (leaked if the connection is lost).
    let r = unsafe { near::read(task.sysif(), fd, addr, len) }.await;
    match r {
        Ok(n) => Ok(Ok(lent.done().filled(n.min(len))?)),
        Err(SyscallError::Errno(Errno::EAGAIN)) => Ok(Err(lent.done())),
        Err(e) => {
            drop(lent.settle::<()>(Err(e)));
            Err(task.error("read")(e))
        }
    }
}

/// One `write(2)` of `buf`: the written part and the rest, or `buf` back on `EAGAIN`.
async fn try_write(
    handle: &FileDescriptor,
    buf: WrittenPointer<[u8]>,
) -> Result<std::result::Result<(WrittenPointer<[u8]>, WrittenPointer<[u8]>), WrittenPointer<[u8]>>>
{
    let task = handle.task();
    let fd = task.check_fd(handle)?;
    let addr = task.check_ptr(buf.pointer())?;
    task.prepare().await;
    let len = buf.size();
    let lent = task.lend(buf);
    match near::write(task.sysif(), fd, addr, len).await {
        Ok(n) => Ok(Ok(lent.done().split(n.min(len))?)),
        Err(SyscallError::Errno(Errno::EAGAIN)) => Ok(Err(lent.done())),
        Err(e) => {
            drop(lent.settle::<()>(Err(e)));
            Err(task.error("write")(e))
        }
    }
}

/// `read(2)` into `buf`, waiting for data on `reg` while it would block.
async fn read_ready(
    handle: &FileDescriptor,
    reg: &Registration,
    mut buf: Pointer<[u8]>,
) -> Result<(ReadablePointer<[u8]>, Pointer<[u8]>)> {
    loop {
        match try_read(handle, buf).await? {
            Ok(done) => return Ok(done),
            Err(back) => {
                buf = back;
                reg.wait(Want::Read).await?;
            }
        }
    }
}

/// `write(2)` of `buf`, waiting for room on `reg` while it would block.
async fn write_ready(
    handle: &FileDescriptor,
    reg: &Registration,
    mut buf: WrittenPointer<[u8]>,
) -> Result<(WrittenPointer<[u8]>, WrittenPointer<[u8]>)> {
    loop {
        match try_write(handle, buf).await? {
            Ok(done) => return Ok(done),
            Err(back) => {
                buf = back;
                reg.wait(Want::Write).await?;
            }
        }
    }
}

/// An fd on which I/O never blocks its thread: syscalls go through the fd's own task, and
/// when one would block (`EAGAIN`) the call waits for readiness on the thread's event
/// loop and retries. Made by [`Thread::make_afd`].
///
/// The fd should be non-blocking (`make_afd(fd, true)` makes it so): on a blocking fd a
/// syscall blocks the thread that runs it (for the local thread, the executor).
///
/// Dropping it deregisters the fd and drops the handle; the close that queues (if it was
/// the last handle) is sent soon, as for any dropped handle, so a pipe's reader sees end of
/// file without anything else running on the writer's table.
/// [`AsyncFileDescriptor::close`] closes at once and reports the errors.
///
/// # Examples
///
/// A read that has to wait for data, and the write that provides it, run together on one task:
///
/// ```
/// # use rsyscall_thread::local_thread;
/// # async_io::block_on(async {
/// let thread = local_thread();
/// let pipe = thread.pipe().await?;
/// let reader = thread.make_afd(pipe.read, true).await?;
/// let writer = thread.make_afd(pipe.write, true).await?;
/// let (got, wrote) = futures_lite::future::zip(
///     reader.read_some_bytes(100),
///     writer.write_all_bytes(b"ping"),
/// )
/// .await;
/// wrote?;
/// assert_eq!(got?, b"ping");
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
///
/// # Streams: `AsyncRead` and `AsyncWrite`
///
/// It implements the `AsyncRead` and `AsyncWrite` traits of
/// `futures-io` (re-exported by `futures-lite` and `futures`; tokio's `compat` layer adapts
/// them), so `futures_lite::io::copy`, `AsyncReadExt::read_to_end`,
/// `AsyncWriteExt::write_all` and the like work on an fd of any thread. Each direction keeps
/// one 64 KiB buffer in the fd's task's memory, allocated at first use and reused, and at
/// most one step in flight. A step goes on without its caller: it runs inline while it
/// completes at once, and on a background thread once it has to wait, so a caller that
/// stops polling never stalls the other syscalls of the fd's thread (see
/// `crate::background`).
/// - `poll_read` starts one `read` of at most the caller's buffer into it (waiting for
///   data as [`AsyncFileDescriptor::read`] does) and copies the bytes out. A `poll_read`
///   left `Pending` keeps its read in flight in the [`AsyncFileDescriptor`]: the next
///   `poll_read` (with any buffer) continues it and gets its bytes, so a caller that gives
///   up (a `select`, a timeout) loses nothing. Only dropping the [`AsyncFileDescriptor`]
///   (or [`AsyncFileDescriptor::close`]) with a read in flight drops that read, as dropping
///   an [`AsyncFileDescriptor::read`] future does: bytes the kernel already gave it are
///   lost, and the buffer, lent to the syscall, is leaked rather than reused.
/// - `poll_write` writes behind the caller: it copies up to 64 KiB into the buffer, starts
///   writing all of it (the write finishes whether or not anyone polls again) and reports
///   those bytes written; the next `poll_write`,
///   `poll_flush` or `poll_close` waits for that write to end first and reports its error.
///   A write still in flight when the [`AsyncFileDescriptor`] is dropped is dropped with
///   it (what part reached the fd is unknown), so flush or close before dropping, as with
///   a `BufWriter`; [`AsyncFileDescriptor::close`] finishes it.
/// - `poll_close` flushes, then shuts a socket's writing side down (`shutdown(SHUT_WR)`,
///   nothing for other fds). It cannot close the fd (the handle may have other clones);
///   a pipe's reader sees end of file once the [`AsyncFileDescriptor`] is dropped or
///   closed.
///
/// Mixing the streams with the methods that take pointers is allowed (they share no
/// state) but orders nothing between them: a write accepted by `poll_write` may still be in
/// flight.
///
/// The inherent methods [`read`](AsyncFileDescriptor::read),
/// [`write`](AsyncFileDescriptor::write), [`write_all`](AsyncFileDescriptor::write_all)
/// (which take pointers) and [`close`](AsyncFileDescriptor::close) (which consumes) win
/// over the extension traits' methods of the same names in a method call: name the trait
/// (`AsyncReadExt::read(&mut afd, &mut buf)`, `AsyncWriteExt::close(&mut afd)`), or pass
/// the fd to generic code.
///
/// ```
/// use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
/// # use rsyscall_thread::local_thread;
/// # use rsyscall_near::CLONE;
/// # async_io::block_on(async {
/// let child = local_thread().clone(CLONE::empty()).await?;
/// let pipe = child.pipe().await?;
/// let mut reader = child.make_afd(pipe.read, true).await?;
/// let mut writer = child.make_afd(pipe.write, true).await?;
/// AsyncWriteExt::write_all(&mut writer, b"through the child's pipe").await?;
/// writer.close().await?; // the inherent close: flushes, then closes the write end
/// let mut got = String::new();
/// reader.read_to_string(&mut got).await?;
/// assert_eq!(got, "through the child's pipe");
/// drop(reader);
/// child.exit(0).await?.check().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct AsyncFileDescriptor {
    handle: FileDescriptor,
    reg: Arc<Registration>,
    /// The state of `AsyncRead` (see [`AsyncFileDescriptor`]'s stream section). In a `Mutex` only
    /// so the type stays `Sync` with `Send`-only futures inside: it is reached through
    /// `&mut self` (`get_mut`), never locked.
    reading: Mutex<ReadSide>,
    /// The state of `AsyncWrite`, as `reading`.
    writing: Mutex<WriteSide>,
    /// Dropped last (fields drop in order), once the handle's close is queued.
    _closer: Closer,
}

/// Has the root epoller's queued deletes sent when a dropped [`AsyncFileDescriptor`]
/// leaves some: a queued delete keeps its fd open (its handle lives in the queue), so
/// without this the fd would stay open until the epoller's next use. Once the delete is
/// done, the handle goes and its close is sent soon, as every dropped handle's of another
/// table is (see [`rsyscall_handle::set_close_flusher`]).
struct Closer {
    epoller: Option<Arc<crate::epoller::Epoller>>,
}

impl Closer {
    fn new(reg: &Registration) -> Closer {
        Closer {
            epoller: match reg {
                Registration::Local(_) => None,
                Registration::Root(r) => Some(r.epoller().clone()),
            },
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        let Some(epoller) = self.epoller.take().filter(|e| e.has_orphans()) else {
            return;
        };
        crate::reaper::spawn(async move {
            epoller.flush_orphans().await;
        });
    }
}

impl fmt::Debug for AsyncFileDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = match &*self.reg {
            Registration::Local(_) => "reactor",
            Registration::Root(_) => "root epoller",
        };
        write!(f, "AsyncFileDescriptor({:?}, {on})", self.handle)
    }
}

/// Whether a syscall failed with `errno`.
fn is_errno(e: &Error, errno: Errno) -> bool {
    e.errno() == Some(errno)
}

impl AsyncFileDescriptor {
    /// The handle syscalls go through.
    pub fn handle(&self) -> &FileDescriptor {
        &self.handle
    }

    /// The same registration with syscalls made through `fd`, another handle to the same
    /// fd (for instance through another task sharing the fd table: see
    /// [`FileDescriptor::for_task`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `fd` names another fd or table.
    pub fn with_handle(&self, fd: FileDescriptor) -> Result<AsyncFileDescriptor> {
        if fd.far() != self.handle.far() {
            return Err(Error::invalid(
                "AsyncFileDescriptor::with_handle",
                format!(
                    "{fd:?} is not a handle to the registered fd {:?}",
                    self.handle
                ),
            ));
        }
        Ok(AsyncFileDescriptor::new(fd, self.reg.clone()))
    }

    /// `read(fd, buf, len)` without blocking the thread — reads into `buf`, waiting for
    /// data if there is none yet; returns the filled part (empty at end of file) and the
    /// rest.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_thread::local_thread;
    /// # async_io::block_on(async {
    /// let thread = local_thread();
    /// let pipe = thread.pipe().await?;
    /// let reader = thread.make_afd(pipe.read, true).await?;
    /// thread.task().write_all_bytes(&pipe.write, b"abc").await?;
    /// let buf = thread.task().malloc_bytes(10).await?;
    /// let (filled, rest) = reader.read(buf).await?;
    /// assert_eq!(filled.read().await?, b"abc");
    /// assert_eq!(rest.size(), 7);
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`FileDescriptor::read`] except `EAGAIN` (`EBADF` at once for a write-only fd);
    /// the event loop's errors.
    pub async fn read(&self, buf: Pointer<[u8]>) -> Result<(ReadablePointer<[u8]>, Pointer<[u8]>)> {
        read_ready(&self.handle, &self.reg, buf).await
    }

    /// `write(fd, buf, len)` without blocking the thread — writes some of `buf`, waiting
    /// for room if there is none yet; returns the written part and the rest.
    ///
    /// # Errors
    /// As [`FileDescriptor::write`] except `EAGAIN` (`EBADF` at once for a read-only fd);
    /// the event loop's errors.
    pub async fn write(
        &self,
        buf: WrittenPointer<[u8]>,
    ) -> Result<(WrittenPointer<[u8]>, WrittenPointer<[u8]>)> {
        write_ready(&self.handle, &self.reg, buf).await
    }

    /// Writes all of `buf`, looping over partial writes.
    ///
    /// # Errors
    /// As [`AsyncFileDescriptor::write`] (what was written before the error stays
    /// written).
    pub async fn write_all(&self, buf: WrittenPointer<[u8]>) -> Result<()> {
        let mut rest = buf;
        while rest.size() > 0 {
            let (_, r) = self.write(rest).await?;
            rest = r;
        }
        Ok(())
    }

    /// Reads at most `max` bytes (one `read`, after waiting for data): fewer if fewer are
    /// available, none at end of file. Allocates a buffer of `max` bytes in the fd's task
    /// each call.
    ///
    /// `max` 0 makes a `read` of 0 bytes, as read(2) with a count of 0: on a pipe or a
    /// socket it returns nothing at once, data or not, so an empty result means end of file
    /// only for a `max` above 0.
    ///
    /// # Errors
    /// As [`AsyncFileDescriptor::read`].
    pub async fn read_some_bytes(&self, max: usize) -> Result<Vec<u8>> {
        let buf = self.handle.task().malloc_bytes(max).await?;
        let (data, _) = self.read(buf).await?;
        if data.size() == 0 {
            return Ok(Vec::new());
        }
        data.read().await
    }

    /// Writes all of `data` (copied into the fd's task's memory first).
    ///
    /// # Examples
    ///
    /// A megabyte through a pipe that holds far less, read as it is written:
    ///
    /// ```
    /// # use rsyscall_thread::local_thread;
    /// # async_io::block_on(async {
    /// let thread = local_thread();
    /// let pipe = thread.pipe().await?;
    /// let reader = thread.make_afd(pipe.read, true).await?;
    /// let writer = thread.make_afd(pipe.write, true).await?;
    /// let data = vec![7u8; 1 << 20];
    /// let read_all = async {
    ///     let mut got = Vec::new();
    ///     while got.len() < data.len() {
    ///         got.extend(reader.read_some_bytes(65536).await?);
    ///     }
    ///     Ok::<_, rsyscall_handle::Error>(got)
    /// };
    /// let (wrote, got) = futures_lite::future::zip(writer.write_all_bytes(&data), read_all).await;
    /// wrote?;
    /// assert!(got? == data);
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`AsyncFileDescriptor::write`].
    pub async fn write_all_bytes(&self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let buf = self.handle.task().ptr(data).await?;
        self.write_all(buf).await
    }

    /// `accept4(fd, NULL, NULL, flags | SOCK_CLOEXEC)` without blocking the thread —
    /// waits for a connection and takes it. `flags` may hold `SOCK::NONBLOCK` (for a new
    /// [`Thread::make_afd`] without `set_nonblock`).
    ///
    /// # Errors
    /// As [`FileDescriptor::accept4`] except `EAGAIN`; the event loop's errors.
    pub async fn accept(&self, flags: SOCK) -> Result<FileDescriptor> {
        loop {
            match self.handle.accept4(flags).await {
                Err(e) if is_errno(&e, Errno::EAGAIN) => self.reg.wait(Want::Read).await?,
                other => return other,
            }
        }
    }

    /// Like [`AsyncFileDescriptor::accept`], also returning the peer's address.
    ///
    /// # Errors
    /// As [`FileDescriptor::accept4_addr`] except `EAGAIN`; the event loop's errors.
    pub async fn accept_addr(&self, flags: SOCK) -> Result<(FileDescriptor, AnySockaddr)> {
        loop {
            match self.handle.accept4_addr(flags).await {
                Err(e) if is_errno(&e, Errno::EAGAIN) => self.reg.wait(Want::Read).await?,
                other => return other,
            }
        }
    }

    /// `connect(fd, addr, addrlen)` without blocking the thread: a connection in progress
    /// (`EINPROGRESS`) is waited for until the socket is writable, and its outcome read
    /// from `SO_ERROR`.
    ///
    /// # Errors
    /// As [`FileDescriptor::connect`]; a failed connection in progress is reported as a
    /// `connect` error with the errno `SO_ERROR` held (`ECONNREFUSED`...). The event loop's
    /// errors.
    pub async fn connect(&self, addr: &dyn Sockaddr) -> Result<()> {
        loop {
            match self.handle.connect(addr).await {
                Ok(()) => return Ok(()),
                // A unix socket whose listener's backlog is full: try again later.
                Err(e) if is_errno(&e, Errno::EAGAIN) => self.reg.wait(Want::Write).await?,
                Err(e) if is_errno(&e, Errno::EINPROGRESS) => break,
                Err(e) => return Err(e),
            }
        }
        loop {
            self.reg.wait(Want::Write).await?;
            if let Some(errno) = self.handle.getsockopt::<sockopt::Error>().await? {
                return Err(self.handle.task().error("connect")(SyscallError::Errno(
                    errno,
                )));
            }
            // No error yet: connected, unless the wake-up was early (still in progress).
            match self.handle.getpeername().await {
                Ok(_) => return Ok(()),
                Err(e) if is_errno(&e, Errno::ENOTCONN) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the peer has hung up: shut down its writing side (`EPOLLRDHUP`) or
    /// closed (`EPOLLHUP`), or an error is pending (`EPOLLERR`). Unread data does not end
    /// the wait.
    ///
    /// # Errors
    /// The event loop's errors.
    pub async fn wait_for_rdhup(&self) -> Result<()> {
        self.reg.wait_rdhup().await
    }

    /// Waits until the fd may be readable (possibly spuriously), reading nothing: for fds
    /// whose readability is the event itself, such as a pidfd.
    ///
    /// # Errors
    /// The event loop's errors.
    pub(crate) async fn wait_readable(&self) -> Result<()> {
        self.reg.wait(Want::Read).await
    }

    /// Finishes a write that [`AsyncWrite`] accepted and is still in flight, drops a read
    /// in flight (see [`AsyncFileDescriptor`]'s stream section), deregisters the fd (unless another
    /// [`AsyncFileDescriptor`] made by [`AsyncFileDescriptor::with_handle`] still uses the
    /// registration), then closes the handle (which closes the fd if it is its last handle).
    /// Deregistering first matters: epoll keys on the fd and its open file description.
    ///
    /// # Errors
    /// The error of the unfinished write, and those of `epoll_ctl(DEL)` and `close` (the
    /// fd is closed either way).
    pub async fn close(mut self) -> Result<()> {
        // A write accepted by `AsyncWrite` is finished first; a read in flight is dropped
        // (its clones of the handle and the registration with it).
        let flushed = futures_lite::future::poll_fn(|cx| self.poll_write_done(cx)).await;
        let AsyncFileDescriptor {
            handle,
            reg,
            reading,
            writing,
            _closer,
        } = self;
        drop((reading, writing));
        let deregistered = match Arc::try_unwrap(reg) {
            Ok(Registration::Root(r)) => r.deregister().await,
            // Dropping the reactor registration deregisters it and closes the copy.
            Ok(Registration::Local(io)) => {
                drop(io);
                Ok(())
            }
            Err(_shared) => Ok(()),
        };
        let closed = handle.close().await;
        flushed.and(deregistered).and(closed)
    }
}

/// The size of the buffer each [`AsyncFileDescriptor`] keeps in its task's memory for
/// each direction of [`AsyncRead`] and [`AsyncWrite`]: the most one `read`/`write` of
/// theirs moves.
const STREAM_CHUNK: usize = 64 * 1024;

/// One stream step, which goes on when its caller stops polling it (see
/// [`crate::background`]): the reusable buffer back (`None` if it was lost to an error and
/// must be allocated again) and the outcome.
type Step<T> = Detached<(Option<Pointer<[u8]>>, Result<T>)>;

/// The state of [`AsyncRead`] on an [`AsyncFileDescriptor`].
#[derive(Default)]
struct ReadSide {
    /// The buffer in the fd's task, when no read holds it.
    buf: Option<Pointer<[u8]>>,
    /// The read in flight, which holds the buffer.
    inflight: Option<Step<Vec<u8>>>,
    /// Bytes read and not yet given out (when a caller polled again with a smaller buffer
    /// than the one the read was started for), from `pos` on.
    pending: Vec<u8>,
    pos: usize,
}

/// The state of [`AsyncWrite`] on an [`AsyncFileDescriptor`].
#[derive(Default)]
struct WriteSide {
    /// The buffer in the fd's task, when no write holds it.
    buf: Option<Pointer<[u8]>>,
    /// The write (or, once `poll_close` started, the shutdown) in flight.
    inflight: Option<Step<()>>,
    /// Whether `inflight` is `poll_close`'s shutdown (so a `poll_close` polled again
    /// drives it rather than starting another).
    shutting: bool,
}

/// Reads at most `want` bytes into `buf` (allocated first if `None`) and copies them out.
async fn read_step(
    handle: FileDescriptor,
    reg: Arc<Registration>,
    buf: Option<Pointer<[u8]>>,
    want: usize,
) -> (Option<Pointer<[u8]>>, Result<Vec<u8>>) {
    let buf = match buf {
        Some(buf) => buf,
        None => match handle.task().malloc_bytes(STREAM_CHUNK).await {
            Ok(buf) => buf,
            Err(e) => return (None, Err(e)),
        },
    };
    let (head, tail) = match buf.split(want.min(STREAM_CHUNK)) {
        Ok(parts) => parts,
        Err(e) => return (None, Err(e)),
    };
    let (filled, rest) = match read_ready(&handle, &reg, head).await {
        Ok(parts) => parts,
        Err(e) => return (None, Err(e)),
    };
    let data = if filled.size() == 0 {
        Ok(Vec::new())
    } else {
        filled.read().await
    };
    // The pieces are adjacent parts of one allocation: they merge back for the next read.
    let whole = filled
        .into_pointer()
        .merge(rest)
        .ok()
        .and_then(|head| head.merge(tail).ok());
    (whole, data)
}

/// Copies `data` into `buf` (allocated first if `None`) and writes all of it.
async fn write_step(
    handle: FileDescriptor,
    reg: Arc<Registration>,
    buf: Option<Pointer<[u8]>>,
    data: Vec<u8>,
) -> (Option<Pointer<[u8]>>, Result<()>) {
    let buf = match buf {
        Some(buf) => buf,
        None => match handle.task().malloc_bytes(STREAM_CHUNK).await {
            Ok(buf) => buf,
            Err(e) => return (None, Err(e)),
        },
    };
    let (head, tail) = match buf.split(data.len()) {
        Ok(parts) => parts,
        Err(e) => return (None, Err(e)),
    };
    let mut rest = match head.write(&data[..]).await {
        Ok(written) => written,
        Err(e) => return (None, Err(e)),
    };
    let mut done: Option<Pointer<[u8]>> = None;
    while rest.size() > 0 {
        let (wrote, r) = match write_ready(&handle, &reg, rest).await {
            Ok(parts) => parts,
            Err(e) => return (None, Err(e)),
        };
        rest = r;
        let wrote = wrote.into_pointer();
        done = match done {
            None => Some(wrote),
            Some(d) => d.merge(wrote).ok(),
        };
    }
    let head = match done {
        Some(d) => d.merge(rest.into_pointer()).ok(),
        None => Some(rest.into_pointer()),
    };
    (head.and_then(|h| h.merge(tail).ok()), Ok(()))
}

/// `shutdown(fd, SHUT_WR)`, a success on an fd that is not a socket.
async fn shutdown_step(handle: FileDescriptor) -> (Option<Pointer<[u8]>>, Result<()>) {
    match handle.shutdown(SHUT::WR).await {
        Err(e) if is_errno(&e, Errno::ENOTSOCK) => (None, Ok(())),
        r => (None, r),
    }
}

impl AsyncFileDescriptor {
    fn new(handle: FileDescriptor, reg: Arc<Registration>) -> AsyncFileDescriptor {
        AsyncFileDescriptor {
            _closer: Closer::new(&reg),
            handle,
            reg,
            reading: Mutex::default(),
            writing: Mutex::default(),
        }
    }

    /// Drives the write (or shutdown) in flight, if any, to its end.
    fn poll_write_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let side = self
            .writing
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(step) = side.inflight.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (buf, r) = ready!(Pin::new(step).poll(cx));
        side.inflight = None;
        side.shutting = false;
        if buf.is_some() {
            side.buf = buf;
        }
        Poll::Ready(r)
    }
}

/// Reads through the fd's task as [`AsyncFileDescriptor::read`] does: one `read` of at most
/// the caller's buffer (and 64 KiB) into a buffer kept in the task's memory, then a copy out.
/// See [`AsyncFileDescriptor`]'s stream section for cancellation.
impl AsyncRead for AsyncFileDescriptor {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let side = this
            .reading
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if out.is_empty() {
                return Poll::Ready(Ok(0));
            }
            if side.pos < side.pending.len() {
                let n = out.len().min(side.pending.len() - side.pos);
                out[..n].copy_from_slice(&side.pending[side.pos..side.pos + n]);
                side.pos += n;
                if side.pos == side.pending.len() {
                    side.pending.clear();
                    side.pos = 0;
                }
                return Poll::Ready(Ok(n));
            }
            let step = match &mut side.inflight {
                Some(step) => step,
                None => side.inflight.insert(Detached::new(read_step(
                    this.handle.clone(),
                    this.reg.clone(),
                    side.buf.take(),
                    out.len(),
                ))),
            };
            let (buf, r) = ready!(Pin::new(step).poll(cx));
            side.inflight = None;
            side.buf = buf;
            let data = r?;
            if data.is_empty() {
                return Poll::Ready(Ok(0));
            }
            side.pending = data;
        }
    }
}

/// Writes through the fd's task, behind the caller: `poll_write` copies up to 64 KiB into a
/// buffer kept in the task's memory, starts writing all of it and reports it written; the
/// next `poll_write`, `poll_flush` or `poll_close` first waits for that write to end and
/// reports its error, if any. So flush (or close) before dropping: see [`AsyncFileDescriptor`]'s
/// stream section.
impl AsyncWrite for AsyncFileDescriptor {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_write_done(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(STREAM_CHUNK);
        let side = this
            .writing
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let step = side.inflight.insert(Detached::new(write_step(
            this.handle.clone(),
            this.reg.clone(),
            side.buf.take(),
            data[..n].to_vec(),
        )));
        // Start it now; if it ends at once, its error is this call's.
        if let Poll::Ready((buf, r)) = Pin::new(step).poll(cx) {
            side.inflight = None;
            side.buf = buf;
            r?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_write_done(cx).map_err(Into::into)
    }

    /// Flushes, then shuts the writing side of a socket down (`shutdown(SHUT_WR)`: the peer
    /// reads end of file). The fd itself stays open until the [`AsyncFileDescriptor`] is
    /// dropped or [`closed`](AsyncFileDescriptor::close): the end of file of a pipe comes
    /// then, as the fd may have other handles (`with_handle`, clones) this cannot close.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this
            .writing
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .shutting
        {
            ready!(this.poll_write_done(cx))?;
            let side = this
                .writing
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            side.inflight = Some(Detached::new(shutdown_step(this.handle.clone())));
            side.shutting = true;
        }
        this.poll_write_done(cx).map_err(Into::into)
    }
}

impl Thread {
    /// Makes `fd` (an fd of this thread's table) an [`AsyncFileDescriptor`], first making
    /// it non-blocking if `set_nonblock` (`O_NONBLOCK` belongs to the open file
    /// description: every fd sharing it becomes non-blocking). Pass `false` only for an fd
    /// that is already non-blocking (such as one made with `SOCK::NONBLOCK`).
    ///
    /// Readiness is watched by the local reactor through a copy of the fd in the local
    /// table, unless this thread has a root epoller ([`crate::epoller`]), which is used
    /// instead.
    ///
    /// # Examples
    ///
    /// An fd in a child's own fd table, waited on from here:
    ///
    /// ```
    /// # use rsyscall_thread::local_thread;
    /// # use rsyscall_near::CLONE;
    /// # async_io::block_on(async {
    /// let child = local_thread().clone(CLONE::empty()).await?;
    /// let pipe = child.pipe().await?;
    /// let reader = child.make_afd(pipe.read, true).await?;
    /// child.task().write_all_bytes(&pipe.write, b"from the child's table").await?;
    /// assert_eq!(reader.read_some_bytes(100).await?, b"from the child's table");
    /// drop((reader, pipe.write));
    /// child.exit(0).await?.check().await?;
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::Mismatch`] for an fd of another table; `fcntl`'s errors; the errors of
    /// copying the fd to the local table ([`Error::InvalidArgument`] when the local
    /// process cannot reach the thread's table, as after `unshare_files` of a thread
    /// that shared ours: give it a root epoller) or of registering it.
    pub async fn make_afd(
        &self,
        fd: FileDescriptor,
        set_nonblock: bool,
    ) -> Result<AsyncFileDescriptor> {
        self.task().check_fd(&fd)?;
        if set_nonblock {
            fd.set_nonblock(true).await?;
        }
        let epoller = match self.root_epoller_now().await? {
            None if self.host().is_some() => Some(self.root_epoller_or_make().await?),
            other => other,
        };
        let reg = match epoller {
            Some(epoller) => {
                epoller.flush_orphans().await;
                Registration::Root(epoller.register(&fd)?)
            }
            None => {
                let copy = self.thread_to_local(&fd).await?;
                Registration::Local(Async::new_nonblocking(copy).map_err(|source| Error::Io {
                    what: "registering an fd with the async-io reactor",
                    source,
                })?)
            }
        };
        Ok(AsyncFileDescriptor::new(fd, Arc::new(reg)))
    }

    /// Opens `n` channels between the local process and this thread: `AF_UNIX` stream
    /// socketpairs made locally, the local ends returned as `OwnedFd`s and the others
    /// moved into this thread's table (with one `SCM_RIGHTS` message per 253 fds, or none
    /// when the thread uses the local table). All ends are close-on-exec and blocking.
    ///
    /// # Errors
    /// `socketpair`'s errors; the errors of moving fds (see [`Thread::make_afd`] for a
    /// table the local process cannot reach).
    pub async fn open_channels(&self, n: usize) -> Result<Vec<(OwnedFd, FileDescriptor)>> {
        if self.host().is_some() {
            return self.host_channels(n).await;
        }
        let mut locals = Vec::with_capacity(n);
        let mut remotes = Vec::with_capacity(n);
        for _ in 0..n {
            let (a, b) = UnixStream::pair().map_err(|source| Error::Io {
                what: "socketpair",
                source,
            })?;
            locals.push(OwnedFd::from(a));
            remotes.push(OwnedFd::from(b));
        }
        let remotes = self.local_to_thread(remotes).await?;
        Ok(locals.into_iter().zip(remotes).collect())
    }

    /// Like [`Thread::open_channels`], with the local ends made non-blocking and
    /// registered as [`AsyncFileDescriptor`]s of the local thread (the thread's ends stay
    /// blocking: they are other open file descriptions).
    ///
    /// # Errors
    /// As [`Thread::open_channels`] and [`Thread::make_afd`].
    pub async fn open_async_channels(
        &self,
        n: usize,
    ) -> Result<Vec<(AsyncFileDescriptor, FileDescriptor)>> {
        let local = local_thread();
        let mut out = Vec::with_capacity(n);
        for (ours, theirs) in self.open_channels(n).await? {
            let ours = FileDescriptor::from_owned_fd(local.task(), ours)?;
            out.push((local.make_afd(ours, true).await?, theirs));
        }
        Ok(out)
    }
}
