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
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use async_io::Async;
use rsyscall_handle::structs::{AnySockaddr, EpollEvent, Sockaddr, sockopt};
use rsyscall_handle::{
    Error, FileDescriptor, Pointer, ReadablePointer, Result, Task, WrittenPointer,
};
use rsyscall_near::{self as near, EPOLL, Errno, SOCK, SyscallError};

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

/// An fd on which I/O never blocks its thread: syscalls go through the fd's own task, and
/// when one would block (`EAGAIN`) the call waits for readiness on the thread's event
/// loop and retries. Made by [`Thread::make_afd`].
///
/// The fd should be non-blocking (`make_afd(fd, true)` makes it so): on a blocking fd a
/// syscall blocks the thread that runs it (for the local thread, the executor).
///
/// Dropping it deregisters the fd and drops the handle (whose close is queued as usual);
/// [`AsyncFileDescriptor::close`] does both now, in that order.
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
pub struct AsyncFileDescriptor {
    handle: FileDescriptor,
    reg: Arc<Registration>,
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
        Ok(AsyncFileDescriptor {
            handle: fd,
            reg: self.reg.clone(),
        })
    }

    /// One `read(2)` into `buf`: the filled part and the rest, or `buf` back on `EAGAIN`.
    async fn try_read(
        &self,
        buf: Pointer<[u8]>,
    ) -> Result<std::result::Result<(ReadablePointer<[u8]>, Pointer<[u8]>), Pointer<[u8]>>> {
        let task = self.handle.task();
        let fd = task.check_fd(&self.handle)?;
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
        &self,
        buf: WrittenPointer<[u8]>,
    ) -> Result<
        std::result::Result<(WrittenPointer<[u8]>, WrittenPointer<[u8]>), WrittenPointer<[u8]>>,
    > {
        let task = self.handle.task();
        let fd = task.check_fd(&self.handle)?;
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
    pub async fn read(
        &self,
        mut buf: Pointer<[u8]>,
    ) -> Result<(ReadablePointer<[u8]>, Pointer<[u8]>)> {
        loop {
            match self.try_read(buf).await? {
                Ok(done) => return Ok(done),
                Err(back) => {
                    buf = back;
                    self.reg.wait(Want::Read).await?;
                }
            }
        }
    }

    /// `write(fd, buf, len)` without blocking the thread — writes some of `buf`, waiting
    /// for room if there is none yet; returns the written part and the rest.
    ///
    /// # Errors
    /// As [`FileDescriptor::write`] except `EAGAIN` (`EBADF` at once for a read-only fd);
    /// the event loop's errors.
    pub async fn write(
        &self,
        mut buf: WrittenPointer<[u8]>,
    ) -> Result<(WrittenPointer<[u8]>, WrittenPointer<[u8]>)> {
        loop {
            match self.try_write(buf).await? {
                Ok(done) => return Ok(done),
                Err(back) => {
                    buf = back;
                    self.reg.wait(Want::Write).await?;
                }
            }
        }
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

    /// Deregisters the fd (unless another [`AsyncFileDescriptor`] made by
    /// [`AsyncFileDescriptor::with_handle`] still uses the registration), then closes the
    /// handle (which closes the fd if it is its last handle). Deregistering first matters:
    /// epoll keys on the fd and its open file description.
    ///
    /// # Errors
    /// The errors of `epoll_ctl(DEL)` and `close` (the fd is closed either way).
    pub async fn close(self) -> Result<()> {
        let AsyncFileDescriptor { handle, reg } = self;
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
        deregistered.and(closed)
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
        Ok(AsyncFileDescriptor {
            handle: fd,
            reg: Arc::new(reg),
        })
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
