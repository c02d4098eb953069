//! Fd syscalls: read and write (plain, positional, vectored), seeking and sizes, fcntl
//! (flags and record locks), ioctl, dup, pipes, memfds.
//!
//! Every method taking memory takes ownership of the pointer, lends it to the syscall
//! through an [`InFlight`](crate::InFlight) guard, and gives it back (split into the part
//! the kernel touched and the rest) once the syscall completed.
//!
//! Offsets and lengths are unsigned here; values the kernel would read as negative
//! (above `i64::MAX`, alone or added to the length of the transfer) are refused with
//! [`Error::InvalidArgument`] before anything is sent, since `-1` means "the current file
//! offset" to `preadv2`.

use std::path::PathBuf;

use rsyscall_near::{self as near, FALLOC, FD, LockCmd, MFD, O, RWF, SEEK};

use super::{Task, read_out};
use crate::error::{Error, Result};
use crate::fd::FdTableState;
use crate::fd::FileDescriptor;
use crate::pointer::{Pointer, ReadablePointer, WrittenPointer};
use crate::structs::{FileCloneRange, Flock, IOV_MAX, Iovec};

/// The two ends of a pipe.
#[derive(Debug)]
pub struct Pipe {
    /// The read end.
    pub read: FileDescriptor,
    /// The write end.
    pub write: FileDescriptor,
}

impl FileDescriptor {
    /// `read(fd, buf, count)` — reads into `buf`; returns the filled part and the rest. An
    /// empty filled part means EOF.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let pipe = task.pipe().await?;
    /// task.write_all_bytes(&pipe.write, b"abc").await?;
    /// let buf = task.malloc_bytes(8).await?;
    /// let (filled, rest) = pipe.read.read(buf).await?;
    /// assert_eq!(filled.size(), 3);
    /// assert_eq!(filled.read().await?, b"abc");
    /// assert_eq!(rest.size(), 5);
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// `EAGAIN`, `EBADF`, `EINTR`, `EINVAL`, `EISDIR`... See read(2). Mismatched fd table or
    /// address space is refused before sending.
    pub async fn read(&self, buf: Pointer<[u8]>) -> Result<(ReadablePointer<[u8]>, Pointer<[u8]>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let addr = task.check_ptr(&buf)?;
        let len = buf.size();
        // SAFETY: `addr` is `len` bytes of the task's address space, lent until completion.
        let call = unsafe { near::read(task.sysif(), fd, addr, len) };
        let (n, buf) = task.lent("read", buf, call).await?;
        buf.filled(n.min(len))
    }

    /// `write(fd, buf, count)` — writes some of `buf`; returns the written part and the rest.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let pipe = task.pipe().await?;
    /// let data = task.ptr(&b"hello"[..]).await?;
    /// let (written, rest) = pipe.write.write(data).await?;
    /// assert_eq!((written.size(), rest.size()), (5, 0));
    /// assert_eq!(task.read_bytes(&pipe.read, 5).await?, b"hello");
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// `EAGAIN`, `EBADF`, `EPIPE`, `ENOSPC`... See write(2).
    pub async fn write(
        &self,
        buf: WrittenPointer<[u8]>,
    ) -> Result<(WrittenPointer<[u8]>, WrittenPointer<[u8]>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let addr = task.check_ptr(buf.pointer())?;
        let len = buf.size();
        let call = near::write(task.sysif(), fd, addr, len);
        let (n, buf) = task.lent("write", buf, call).await?;
        buf.split(n.min(len))
    }
}

impl Task {
    /// Writes some of `data` to `fd` (copying it into the task's memory first unless the
    /// task is the local one); returns how many bytes were written.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let pipe = task.pipe().await?;
    /// let n = task.write_bytes(&pipe.write, b"some bytes").await?;
    /// assert_eq!(n, 10);
    /// assert_eq!(task.read_bytes(&pipe.read, 10).await?, b"some bytes");
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`FileDescriptor::write`].
    pub async fn write_bytes(&self, fd: &FileDescriptor, data: &[u8]) -> Result<usize> {
        let nfd = self.check_fd(fd)?;
        if self.sysif().is_local() {
            self.prepare().await;
            // The syscall runs to completion inside this call, reading `data` in place.
            return near::write(
                self.sysif(),
                nfd,
                near::Address::from_ptr(data.as_ptr()),
                data.len(),
            )
            .await
            .map_err(self.error("write"));
        }
        let buf = self.ptr(data).await?;
        let (written, _) = fd.for_task(self)?.write(buf).await?;
        Ok(written.size())
    }

    /// Writes all of `data`, looping over short writes.
    ///
    /// # Errors
    /// As [`Task::write_bytes`].
    pub async fn write_all_bytes(&self, fd: &FileDescriptor, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = self.write_bytes(fd, data).await?;
            data = &data[n.min(data.len())..];
        }
        Ok(())
    }

    /// Reads up to `len` bytes from `fd`; an empty result means EOF.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let pipe = task.pipe().await?;
    /// task.write_all_bytes(&pipe.write, b"hi").await?;
    /// pipe.write.close().await?;
    /// assert_eq!(task.read_bytes(&pipe.read, 100).await?, b"hi");
    /// assert!(task.read_bytes(&pipe.read, 100).await?.is_empty(), "end of file");
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`FileDescriptor::read`].
    pub async fn read_bytes(&self, fd: &FileDescriptor, len: usize) -> Result<Vec<u8>> {
        let buf = self.malloc_bytes(len).await?;
        let (data, _) = fd.for_task(self)?.read(buf).await?;
        data.read().await
    }

    /// Reads until EOF.
    ///
    /// # Errors
    /// As [`Task::read_bytes`].
    pub async fn read_to_eof(&self, fd: &FileDescriptor) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read_bytes(fd, 65536).await?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// Room for the two fds `pipe2` or `socketpair` writes, `[-1, -1]` until then, with
    /// the address to pass: lend the [`FdPairOut`] to the syscall, made to record its
    /// result in [`FdPairOut::cell`].
    pub(crate) async fn fd_pair_out(&self) -> Result<(FdPairOut, near::Address)> {
        let (ptr, addr) = self.ptr_at(&[-1i32, -1]).await?;
        let out = FdPairOut {
            ptr: Some(ptr.into_pointer()),
            table: self.fd_table(),
            cell: near::ResultCell::new(),
        };
        Ok((out, addr))
    }

    /// Owns the two fd numbers a syscall that succeeded wrote into `pair`. Until they
    /// are read, `pair` stays armed: dropped during the read (of another address space's
    /// memory), it has them closed.
    pub(crate) async fn own_pair(
        &self,
        pair: FdPairOut,
    ) -> Result<(FileDescriptor, FileDescriptor)> {
        let bytes = pair.read().await?;
        pair.disarm();
        let [a, b] = bytes;
        Ok((
            self.own(near::FileDescriptor::new(a)),
            self.own(near::FileDescriptor::new(b)),
        ))
    }

    /// `pipe2(fds, O_CLOEXEC)` — a pipe, both ends close-on-exec.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// use rsyscall_near::FD;
    /// let task = Task::local();
    /// let pipe = task.pipe().await?;
    /// assert!(pipe.read.fcntl_getfd().await?.contains(FD::CLOEXEC));
    /// task.write_all_bytes(&pipe.write, b"through the pipe").await?;
    /// assert_eq!(task.read_bytes(&pipe.read, 100).await?, b"through the pipe");
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// `EMFILE`, `ENFILE`. See pipe(2).
    pub async fn pipe(&self) -> Result<Pipe> {
        self.pipe2(O::empty()).await
    }

    /// `pipe2(fds, flags | O_CLOEXEC)` — a pipe with flags (`O::NONBLOCK`, `O::DIRECT`).
    ///
    /// # Errors
    /// `EINVAL`, `EMFILE`, `ENFILE`. See pipe(2).
    pub async fn pipe2(&self, flags: O) -> Result<Pipe> {
        let (out, addr) = self.fd_pair_out().await?;
        let cell = out.cell().clone();
        // SAFETY: addr is 8 bytes of the task's memory, lent until completion.
        let call = unsafe { near::pipe2(self.sysif(), addr, flags | O::CLOEXEC, &cell) };
        let ((), out) = self.lent("pipe2", out, call).await?;
        let (read, write) = self.own_pair(out).await?;
        Ok(Pipe { read, write })
    }

    /// `dup2(old, new)` — makes `new`'s number refer to what `old` refers to.
    ///
    /// # Errors
    /// `EBADF`, `EBUSY`, `EINTR`. See dup(2).
    pub async fn dup2(&self, old: &FileDescriptor, new: &FileDescriptor) -> Result<()> {
        let o = self.check_fd(old)?;
        let n = self.check_fd(new)?;
        self.prepare().await;
        // SAFETY: `new` is a handle held by the caller: either it owns the fd, or it was
        // made by `FileDescriptor::borrowed`, whose caller promised that replacing the fd
        // is sound. Either way replacing it affects only users of the handle.
        unsafe { near::dup2(self.sysif(), o, n) }
            .await
            .map_err(self.error("dup2"))?;
        Ok(())
    }

    /// `dup3(old, new, flags)` — like [`Task::dup2`], with `O::CLOEXEC` allowed in flags.
    ///
    /// # Errors
    /// `EINVAL` (also for `old == new`), `EBADF`, `EBUSY`. See dup(2).
    pub async fn dup3(&self, old: &FileDescriptor, new: &FileDescriptor, flags: O) -> Result<()> {
        let o = self.check_fd(old)?;
        let n = self.check_fd(new)?;
        if !flags.difference(O::CLOEXEC).is_empty() {
            return Err(Error::invalid(
                "dup3",
                format!("flags {flags:?}: only CLOEXEC is allowed"),
            ));
        }
        self.prepare().await;
        // SAFETY: as for dup2.
        unsafe { near::dup3(self.sysif(), o, n, flags) }
            .await
            .map_err(self.error("dup3"))?;
        Ok(())
    }
}

/// The buffers a vectored read filled (whole, then possibly part of one) and the rest.
pub(super) type Filled = (Vec<ReadablePointer<[u8]>>, Vec<Pointer<[u8]>>);
/// The buffers a vectored write wrote out (whole, then possibly part of one) and the rest.
type Written = (Vec<WrittenPointer<[u8]>>, Vec<WrittenPointer<[u8]>>);

/// The longest name `memfd_create` takes (`NAME_MAX` minus the `"memfd:"` prefix).
const MEMFD_NAME_MAX: usize = 249;

/// `offset` as the kernel's `loff_t`, if it and `offset + len` fit.
fn file_range(what: &'static str, offset: u64, len: usize) -> Result<i64> {
    let start = i64::try_from(offset)
        .map_err(|_| Error::invalid(what, format!("offset {offset} is above i64::MAX")))?;
    i64::try_from(len)
        .ok()
        .and_then(|l| start.checked_add(l))
        .ok_or_else(|| {
            Error::invalid(
                what,
                format!("offset {offset} plus length {len} overflows i64"),
            )
        })?;
    Ok(start)
}

/// The `loff_t` of a vectored transfer: `-1` (the current file offset) for `None`.
fn vector_offset(what: &'static str, offset: Option<u64>, total: usize) -> Result<i64> {
    match offset {
        None => Ok(-1),
        Some(o) => file_range(what, o, total),
    }
}

/// The iovec array for `bufs`, after checking their count (`min..=IOV_MAX`: vectored reads
/// and writes need a buffer, `sendmsg`/`recvmsg` do not), their address space, and that
/// their total length fits an `ssize_t`; with that total.
pub(super) fn iovecs<'a>(
    task: &Task,
    what: &'static str,
    bufs: impl ExactSizeIterator<Item = &'a Pointer<[u8]>>,
    min: usize,
) -> Result<(Vec<Iovec>, usize)> {
    let count = bufs.len();
    if count < min || count > IOV_MAX {
        return Err(Error::invalid(
            what,
            format!("{count} buffers: between {min} and {IOV_MAX} are allowed"),
        ));
    }
    let mut total = 0usize;
    let mut iovs = Vec::with_capacity(count);
    for buf in bufs {
        let addr = task.check_ptr(buf)?;
        total = total
            .checked_add(buf.size())
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or_else(|| Error::invalid(what, "the total length overflows ssize_t"))?;
        iovs.push(Iovec {
            base: addr.as_u64(),
            len: buf.size() as u64,
        });
    }
    Ok((iovs, total))
}

/// Splits `bufs` after the first `n` bytes: the buffers (or part of one) the kernel filled,
/// and the rest. Concatenated, the two lists cover exactly the memory of `bufs`.
pub(super) fn split_filled(bufs: Vec<Pointer<[u8]>>, n: usize) -> Result<Filled> {
    let mut left = n;
    let mut filled = Vec::new();
    let mut rest = Vec::new();
    for buf in bufs {
        let size = buf.size();
        if !rest.is_empty() || (left == 0 && size > 0) {
            rest.push(buf);
        } else if size <= left {
            left -= size;
            filled.push(buf.filled(size)?.0);
        } else {
            let (done, more) = buf.filled(left)?;
            left = 0;
            filled.push(done);
            rest.push(more);
        }
    }
    Ok((filled, rest))
}

/// Splits `bufs` after the first `n` bytes: the buffers (or part of one) the kernel wrote
/// out, and the rest.
fn split_written(bufs: Vec<WrittenPointer<[u8]>>, n: usize) -> Result<Written> {
    let mut left = n;
    let mut written = Vec::new();
    let mut rest = Vec::new();
    for buf in bufs {
        let size = buf.size();
        if !rest.is_empty() || (left == 0 && size > 0) {
            rest.push(buf);
        } else if size <= left {
            left -= size;
            written.push(buf);
        } else {
            let (done, more) = buf.split(left)?;
            left = 0;
            written.push(done);
            rest.push(more);
        }
    }
    Ok((written, rest))
}

impl FileDescriptor {
    /// `pread64(fd, buf, count, offset)` — reads into `buf` from file offset `offset`,
    /// leaving the fd's offset alone; returns the filled part and the rest. An empty filled
    /// part means `offset` is at or past the end of the file.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `offset` or `offset + buf.size()` is above `i64::MAX`;
    /// `ESPIPE` (pipes, sockets), `EBADF`, `EINVAL`, `EISDIR`... See pread(2).
    pub async fn pread(
        &self,
        buf: Pointer<[u8]>,
        offset: u64,
    ) -> Result<(ReadablePointer<[u8]>, Pointer<[u8]>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let addr = task.check_ptr(&buf)?;
        let len = buf.size();
        let off = file_range("pread64", offset, len)?;
        // SAFETY: `addr` is `len` bytes of the task's address space, lent until completion.
        let call = unsafe { near::pread64(task.sysif(), fd, addr, len, off) };
        let (n, buf) = task.lent("pread64", buf, call).await?;
        buf.filled(n.min(len))
    }

    /// `pwrite64(fd, buf, count, offset)` — writes some of `buf` at file offset `offset`,
    /// leaving the fd's offset alone; returns the written part and the rest.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `offset` or `offset + buf.size()` is above `i64::MAX`;
    /// `ESPIPE`, `EBADF`, `EFBIG`, `ENOSPC`, `EPERM` (sealed)... See pwrite(2).
    pub async fn pwrite(
        &self,
        buf: WrittenPointer<[u8]>,
        offset: u64,
    ) -> Result<(WrittenPointer<[u8]>, WrittenPointer<[u8]>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let addr = task.check_ptr(buf.pointer())?;
        let len = buf.size();
        let off = file_range("pwrite64", offset, len)?;
        let call = near::pwrite64(task.sysif(), fd, addr, len, off);
        let (n, buf) = task.lent("pwrite64", buf, call).await?;
        buf.split(n.min(len))
    }

    /// `readv(fd, iov, iovcnt)` — reads into `bufs` in order, describing them to the kernel
    /// with one iovec array (one allocation, one write); returns the filled prefix (whole
    /// buffers, then possibly the filled part of one) and the rest. Together the two lists
    /// cover exactly the memory of `bufs`, in order.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no buffers or more than [`IOV_MAX`]; `EAGAIN`,
    /// `EBADF`, `EINTR`, `EINVAL`... See readv(2).
    pub async fn readv(
        &self,
        bufs: Vec<Pointer<[u8]>>,
    ) -> Result<(Vec<ReadablePointer<[u8]>>, Vec<Pointer<[u8]>>)> {
        self.read_vectored("readv", bufs, None).await
    }

    /// `preadv2(fd, iov, iovcnt, offset, flags)` — as [`FileDescriptor::readv`], at file
    /// offset `offset` (leaving the fd's offset alone) or, for `None`, at the fd's offset
    /// (moving it), with per-call [`RWF`] flags.
    ///
    /// # Errors
    /// As [`FileDescriptor::readv`]; [`Error::InvalidArgument`] if `offset` plus the total
    /// length is above `i64::MAX`; `ESPIPE` for an offset on a pipe; `EOPNOTSUPP` for flags
    /// the file does not support; `EAGAIN` with `RWF::NOWAIT`. See preadv2(2).
    pub async fn preadv2(
        &self,
        bufs: Vec<Pointer<[u8]>>,
        offset: Option<u64>,
        flags: RWF,
    ) -> Result<(Vec<ReadablePointer<[u8]>>, Vec<Pointer<[u8]>>)> {
        self.read_vectored("preadv2", bufs, Some((offset, flags)))
            .await
    }

    async fn read_vectored(
        &self,
        what: &'static str,
        bufs: Vec<Pointer<[u8]>>,
        pos: Option<(Option<u64>, RWF)>,
    ) -> Result<Filled> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (iovs, total) = iovecs(task, what, bufs.iter(), 1)?;
        let pos = match pos {
            Some((offset, flags)) => Some((vector_offset(what, offset, total)?, flags)),
            None => None,
        };
        let (iov, iov_addr) = task.ptr_at(&iovs[..]).await?;
        let count = iovs.len();
        let call = async {
            match pos {
                // SAFETY: the iovec array and every buffer it describes are memory of the
                // task's address space, lent until completion.
                None => unsafe { near::readv(task.sysif(), fd, iov_addr, count) }.await,
                Some((off, flags)) => {
                    // SAFETY: as for readv.
                    unsafe { near::preadv2(task.sysif(), fd, iov_addr, count, off, flags) }.await
                }
            }
        };
        let (n, (_iov, bufs)) = task.lent(what, (iov, bufs), call).await?;
        split_filled(bufs, n.min(total))
    }

    /// `writev(fd, iov, iovcnt)` — writes `bufs` in order, describing them to the kernel
    /// with one iovec array (one allocation, one write); returns the written prefix (whole
    /// buffers, then possibly the written part of one) and the rest.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no buffers or more than [`IOV_MAX`]; `EAGAIN`,
    /// `EBADF`, `EPIPE`, `ENOSPC`... See writev(2).
    pub async fn writev(
        &self,
        bufs: Vec<WrittenPointer<[u8]>>,
    ) -> Result<(Vec<WrittenPointer<[u8]>>, Vec<WrittenPointer<[u8]>>)> {
        self.write_vectored("writev", bufs, None).await
    }

    /// `pwritev2(fd, iov, iovcnt, offset, flags)` — as [`FileDescriptor::writev`], at file
    /// offset `offset` (leaving the fd's offset alone) or, for `None`, at the fd's offset
    /// (moving it), with per-call [`RWF`] flags.
    ///
    /// # Errors
    /// As [`FileDescriptor::writev`]; [`Error::InvalidArgument`] if `offset` plus the total
    /// length is above `i64::MAX`; `ESPIPE`, `EOPNOTSUPP`, `EAGAIN`. See pwritev2(2).
    pub async fn pwritev2(
        &self,
        bufs: Vec<WrittenPointer<[u8]>>,
        offset: Option<u64>,
        flags: RWF,
    ) -> Result<(Vec<WrittenPointer<[u8]>>, Vec<WrittenPointer<[u8]>>)> {
        self.write_vectored("pwritev2", bufs, Some((offset, flags)))
            .await
    }

    async fn write_vectored(
        &self,
        what: &'static str,
        bufs: Vec<WrittenPointer<[u8]>>,
        pos: Option<(Option<u64>, RWF)>,
    ) -> Result<Written> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (iovs, total) = iovecs(task, what, bufs.iter().map(WrittenPointer::pointer), 1)?;
        let pos = match pos {
            Some((offset, flags)) => Some((vector_offset(what, offset, total)?, flags)),
            None => None,
        };
        let (iov, iov_addr) = task.ptr_at(&iovs[..]).await?;
        let count = iovs.len();
        let call = async {
            match pos {
                None => near::writev(task.sysif(), fd, iov_addr, count).await,
                Some((off, flags)) => {
                    near::pwritev2(task.sysif(), fd, iov_addr, count, off, flags).await
                }
            }
        };
        let (n, (_iov, bufs)) = task.lent(what, (iov, bufs), call).await?;
        split_written(bufs, n.min(total))
    }

    /// `lseek(fd, offset, whence)` — moves the fd's file offset (shared by every fd of the
    /// open file description); returns the new offset from the start of the file.
    ///
    /// `SEEK::END` with offset 0 gives the file's size; `SEEK::DATA` and `SEEK::HOLE` find
    /// the next data or hole at or after `offset`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// use rsyscall_near::{O, SEEK};
    /// let task = Task::local();
    /// let path = std::env::temp_dir().join(format!("rsyscall-doc-lseek-{}", std::process::id()));
    /// let file = task.open(&path, O::RDWR | O::CREAT | O::TRUNC, 0o600).await?;
    /// task.write_all_bytes(&file, b"0123456789").await?;
    /// assert_eq!(file.lseek(0, SEEK::END).await?, 10);
    /// assert_eq!(file.lseek(4, SEEK::SET).await?, 4);
    /// assert_eq!(task.read_bytes(&file, 3).await?, b"456");
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// `ESPIPE` (pipes, sockets), `EINVAL` (a negative result), `ENXIO` (`DATA`/`HOLE` at or
    /// past the end), `EBADF`, `EOVERFLOW`. See lseek(2).
    pub async fn lseek(&self, offset: i64, whence: SEEK) -> Result<u64> {
        self.call("lseek", |s, fd| near::lseek(s, fd, offset, whence))
            .await
    }

    /// `ftruncate(fd, length)` — sets the file's size to `length`, cutting it or extending
    /// it with zeros (a hole).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `length` is above `i64::MAX`; `EINVAL` (not a regular
    /// file open for writing), `EFBIG`, `EPERM` (sealed), `EBADF`. See ftruncate(2).
    pub async fn ftruncate(&self, length: u64) -> Result<()> {
        let len = file_range("ftruncate", length, 0)?;
        self.call("ftruncate", |s, fd| near::ftruncate(s, fd, len))
            .await
    }

    /// `fsync(fd)` — flushes the file's data and metadata to its storage.
    ///
    /// # Errors
    /// `EINVAL`/`EROFS` (nothing to sync to, such as a pipe), `EIO`, `ENOSPC`, `EBADF`. See
    /// fsync(2).
    pub async fn fsync(&self) -> Result<()> {
        self.call("fsync", near::fsync).await
    }

    /// `fallocate(fd, mode, offset, len)` — allocates the bytes `offset..offset + len`
    /// (growing the file unless `FALLOC::KEEP_SIZE`), or by `mode` punches a hole, zeroes,
    /// collapses or inserts that range.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `offset`, `len` or their sum is above `i64::MAX`;
    /// `EINVAL` (`len` 0), `EOPNOTSUPP` (mode unsupported by the file system, or
    /// `PUNCH_HOLE` without `KEEP_SIZE`), `ENOSPC`, `ESPIPE`, `EBADF`. See fallocate(2).
    pub async fn fallocate(&self, mode: FALLOC, offset: u64, len: u64) -> Result<()> {
        let length = usize::try_from(len)
            .ok()
            .filter(|&l| i64::try_from(l).is_ok())
            .ok_or_else(|| Error::invalid("fallocate", format!("length {len} is too large")))?;
        let off = file_range("fallocate", offset, length)?;
        self.call("fallocate", |s, fd| {
            near::fallocate(s, fd, mode, off, length as i64)
        })
        .await
    }

    /// `fcntl(fd, F_GETFL)` — the access mode and status flags of the open file
    /// description (`O::RDWR`, `O::NONBLOCK`, `O::APPEND`...).
    ///
    /// # Errors
    /// `EBADF`. See fcntl(2).
    pub async fn fcntl_getfl(&self) -> Result<O> {
        let ret = self.fcntl_int("fcntl(F_GETFL)", libc::F_GETFL, 0).await?;
        Ok(O::from_bits_retain(ret as i32))
    }

    /// `fcntl(fd, F_SETFL, flags)` — sets the status flags of the open file description
    /// (shared by every fd referring to it, in any process); the kernel changes only
    /// `APPEND`, `NONBLOCK`, `DIRECT`, `NOATIME` and `O_ASYNC`, ignoring the rest.
    ///
    /// # Errors
    /// `EBADF`, `EPERM` (clearing `APPEND` of an append-only file), `EINVAL`. See fcntl(2).
    pub async fn fcntl_setfl(&self, flags: O) -> Result<()> {
        self.fcntl_int("fcntl(F_SETFL)", libc::F_SETFL, flags.bits() as i64)
            .await?;
        Ok(())
    }

    /// `fcntl(fd, F_GETFD)` — the flags of this fd itself ([`FD::CLOEXEC`]).
    ///
    /// # Errors
    /// `EBADF`. See fcntl(2).
    pub async fn fcntl_getfd(&self) -> Result<FD> {
        let ret = self.fcntl_int("fcntl(F_GETFD)", libc::F_GETFD, 0).await?;
        Ok(FD::from_bits_retain(ret as i32))
    }

    /// `fcntl(fd, F_SETFD, flags)` — sets the flags of this fd itself ([`FD::CLOEXEC`]).
    ///
    /// # Errors
    /// `EBADF`. See fcntl(2).
    pub async fn fcntl_setfd(&self, flags: FD) -> Result<()> {
        self.fcntl_int("fcntl(F_SETFD)", libc::F_SETFD, flags.bits() as i64)
            .await?;
        Ok(())
    }

    /// `fcntl(fd, F_SETFD, FD_CLOEXEC)` — closes this fd when its task execs.
    ///
    /// # Errors
    /// As [`FileDescriptor::fcntl_setfd`].
    pub async fn enable_cloexec(&self) -> Result<()> {
        self.fcntl_setfd(FD::CLOEXEC).await
    }

    /// `fcntl(fd, F_SETFD, 0)` — keeps this fd open across an exec of its task (so that a
    /// program we exec inherits it).
    ///
    /// # Errors
    /// As [`FileDescriptor::fcntl_setfd`].
    pub async fn disable_cloexec(&self) -> Result<()> {
        self.fcntl_setfd(FD::empty()).await
    }

    /// `fcntl(fd, F_GETFL)` then `fcntl(fd, F_SETFL, flags ± O_NONBLOCK)` — makes I/O on
    /// the open file description non-blocking (`on`) or blocking. This changes every fd
    /// referring to the same open file description, in every process.
    ///
    /// # Errors
    /// As [`FileDescriptor::fcntl_getfl`] and [`FileDescriptor::fcntl_setfl`].
    pub async fn set_nonblock(&self, on: bool) -> Result<()> {
        let mut flags = self.fcntl_getfl().await?;
        if flags.contains(O::NONBLOCK) == on {
            return Ok(());
        }
        flags.set(O::NONBLOCK, on);
        self.fcntl_setfl(flags).await
    }

    /// `fcntl(fd, F_DUPFD_CLOEXEC, 0)` — a new fd (the lowest free number), close-on-exec,
    /// referring to the same open file description; owned by the returned handle.
    ///
    /// # Examples
    ///
    /// The copy shares the open file description, and with it the file status flags:
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// use rsyscall_near::O;
    /// let task = Task::local();
    /// let pipe = task.pipe().await?;
    /// let copy = pipe.read.dup().await?;
    /// assert_ne!(copy.near(), pipe.read.near());
    /// copy.set_nonblock(true).await?;
    /// assert!(pipe.read.fcntl_getfl().await?.contains(O::NONBLOCK));
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// `EBADF`, `EMFILE`. See fcntl(2).
    pub async fn dup(&self) -> Result<FileDescriptor> {
        let ret = self
            .fcntl_int("fcntl(F_DUPFD_CLOEXEC)", libc::F_DUPFD_CLOEXEC, 0)
            .await?;
        Ok(self.task().own(near::FileDescriptor::new(ret as i32)))
    }

    /// A copy of this fd at exactly number `n` of its table, which must be free:
    /// `fcntl(fd, F_DUPFD, n)` (`F_DUPFD_CLOEXEC` with `O::CLOEXEC`), owned by the returned
    /// handle. Without `O::CLOEXEC` the copy stays open across exec: this is how a child
    /// gets an fd at the number a program expects (fd 3 of socket activation, say).
    ///
    /// Unlike [`Task::dup2`], it never replaces an open fd, so it needs no claim that the
    /// number is unused and is safe on any table, this program's own included. The kernel
    /// picks the lowest free number from `n` up in one step; if that is not `n`, the copy
    /// it made is closed and the call fails. To free `n` first, close the handle that owns
    /// it, or, for the copies of the parent's fds a clone child inherited (which have no
    /// handles), call `Thread::do_cloexec_except` on the child.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// use rsyscall_near::{FileDescriptor, O};
    /// let task = Task::local();
    /// let pipe = task.pipe().await?;
    /// // A number far above any this test program uses.
    /// let copy = pipe.write.dup_at(FileDescriptor::new(900), O::CLOEXEC).await?;
    /// assert_eq!(copy.near().as_raw(), 900);
    /// // Taken now: a second copy there is refused, and leaves nothing open.
    /// assert!(pipe.read.dup_at(FileDescriptor::new(900), O::CLOEXEC).await.is_err());
    /// task.write_all_bytes(&copy, b"at 900").await?;
    /// assert_eq!(task.read_bytes(&pipe.read, 100).await?, b"at 900");
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a negative `n`, flags
    /// other than `O::CLOEXEC`, or `n` already open (nothing stays open then); `EINVAL`
    /// (`n` is not below `RLIMIT_NOFILE`), `EMFILE` (no number from `n` up is free),
    /// `EBADF`. See fcntl(2).
    pub async fn dup_at(&self, n: near::FileDescriptor, flags: O) -> Result<FileDescriptor> {
        const WHAT: &str = "FileDescriptor::dup_at";
        if n.as_raw() < 0 {
            return Err(Error::invalid(
                WHAT,
                format!("fd number {} is negative", n.as_raw()),
            ));
        }
        if !(flags - O::CLOEXEC).is_empty() {
            return Err(Error::invalid(
                WHAT,
                format!("flags {flags:?}: only O::CLOEXEC is allowed"),
            ));
        }
        let (name, cmd) = if flags.contains(O::CLOEXEC) {
            ("fcntl(F_DUPFD_CLOEXEC)", libc::F_DUPFD_CLOEXEC)
        } else {
            ("fcntl(F_DUPFD)", libc::F_DUPFD)
        };
        let ret = self.fcntl_int(name, cmd, i64::from(n.as_raw())).await?;
        let copy = self.task().own(near::FileDescriptor::new(ret as i32));
        if copy.near() == n {
            return Ok(copy);
        }
        // The kernel skipped `n`: it is open. The copy it made at a higher number is ours
        // alone; close it. A failed close still frees the number (close(2)), and a future
        // dropped here leaves the close to the handle's drop.
        let higher = copy.near().as_raw();
        let _ = copy.close().await;
        Err(Error::invalid(
            WHAT,
            format!(
                "fd {} is already open in this table (the lowest free number from it is \
                 {higher}); close the handle that owns it first, or, in a clone child, \
                 the inherited copies with Thread::do_cloexec_except",
                n.as_raw()
            ),
        ))
    }

    /// An fcntl command with an integer argument that neither touches memory nor closes
    /// fds (`F_GETFL`, `F_SETFL`, `F_GETFD`, `F_SETFD`, `F_DUPFD`, `F_DUPFD_CLOEXEC`).
    async fn fcntl_int(&self, what: &'static str, cmd: i32, arg: i64) -> Result<i64> {
        // SAFETY: the commands passed here take an integer argument: no memory is touched,
        // no fd is closed or replaced (F_DUPFD and F_DUPFD_CLOEXEC make a new one, which
        // the caller owns).
        self.call(what, |s, fd| unsafe { near::fcntl(s, fd, cmd, arg) })
            .await
    }

    /// `fcntl(fd, cmd, &lock)` — a record-lock command: take or release `lock` (`SetLk`,
    /// `SetLkW`, and their open-file-description `Ofd` forms), or ask which lock would
    /// conflict with it (`GetLk`, `OfdGetLk`). Returns the kernel's answer for the `GetLk`
    /// commands (`l_type` `F_UNLCK` if nothing conflicts; `l_pid` -1 for an
    /// open-file-description lock) and `lock` itself otherwise.
    ///
    /// Process locks belong to the process and are released when it closes *any* fd of the
    /// file; open-file-description locks belong to the open file description and conflict
    /// even within one process.
    ///
    /// # Errors
    /// `EAGAIN`/`EACCES` (conflicting lock for `SetLk`/`OfdSetLk`), `EDEADLK`, `EINTR`,
    /// `EINVAL` (bad `l_type` or `l_whence`, or nonzero `l_pid` for the `Ofd` commands),
    /// `EBADF` (fd not open for the access the lock needs), `ENOLCK`. See fcntl(2).
    pub async fn lock(&self, cmd: LockCmd, lock: &Flock) -> Result<Flock> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (ptr, addr) = task.ptr_at(lock).await?;
        // SAFETY: `addr` is a struct flock of the task's memory, lent until completion.
        let call = unsafe { near::fcntl_lock(task.sysif(), fd, cmd, addr) };
        let ((), ptr) = task.lent("fcntl(lock)", ptr, call).await?;
        if cmd.is_get() {
            ptr.into_readable().read().await
        } else {
            Ok(*lock)
        }
    }

    /// `ioctl(fd, FIONREAD, &n)` — how many bytes can be read right now without blocking
    /// (pipes, sockets, terminals).
    ///
    /// # Errors
    /// `ENOTTY`/`EINVAL` for files without the request, `EBADF`. See ioctl(2) and
    /// pipe(7).
    pub async fn fionread(&self) -> Result<usize> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (buf, addr) = task.out::<i32>().await?;
        // SAFETY: FIONREAD writes one int at `addr`, 4 bytes of the task's memory lent until
        // completion.
        let call = unsafe { near::ioctl(task.sysif(), fd, libc::FIONREAD, addr.arg()) };
        let (_, buf) = task.lent("ioctl(FIONREAD)", buf, call).await?;
        let n = read_out(buf).await?;
        usize::try_from(n)
            .map_err(|_| Error::invalid("ioctl(FIONREAD)", format!("the kernel returned {n}")))
    }

    /// `ioctl(fd, request, arg)` — the escape hatch for requests that have no method of
    /// their own: `arg` goes to the kernel as it is, and the kernel's return value comes
    /// back. For a request taking a pointer to a struct, [`FileDescriptor::ioctl_ptr`]
    /// lends the memory safely.
    ///
    /// # Safety
    /// The kernel acts on `request` with nothing checked here. The caller must make sure
    /// that it does nothing that breaks memory or fd ownership of this program:
    /// - if `request` reads or writes memory at `arg`, then `arg` is an address of this
    ///   fd's task's address space valid for those accesses until the returned future
    ///   completes (in the local process that means memory Rust code does not use
    ///   meanwhile; dropping the future does not stop a remote call already sent);
    /// - if `request` closes, replaces or creates fds, or changes memory mappings, the
    ///   caller owns what is closed or replaced and takes ownership of what is made.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the fd is not of its task's table; `EBADF`, `EFAULT`,
    /// `EINVAL`, `ENOTTY` (a request the file does not know) and the request's own. See
    /// ioctl(2).
    pub async unsafe fn ioctl(&self, request: u64, arg: i64) -> Result<i64> {
        self.call("ioctl", |s, fd| {
            // SAFETY: the caller vouches for `request` and `arg` (see # Safety).
            unsafe { near::ioctl(s, fd, request, arg) }
        })
        .await
    }

    /// `ioctl(fd, request, ptr)` — the escape hatch for a request taking a pointer to one
    /// struct that the kernel reads and may write back: `ptr` (written with the input, or
    /// with zeroes for an output-only request) is lent to the kernel until the call is
    /// over, and comes back readable with what the kernel left there, with the kernel's
    /// return value. If this future is dropped while a remote call runs, the memory is
    /// kept rather than freed under the kernel.
    ///
    /// # Safety
    /// `request` must read and write memory only inside `ptr`'s `ptr.size()` bytes, and
    /// must not close, replace or create fds or change memory mappings (the second rule of
    /// [`FileDescriptor::ioctl`]).
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the fd or `ptr` is of another table or address space than
    /// the fd's task; the errors of [`FileDescriptor::ioctl`].
    pub async unsafe fn ioctl_ptr<T: ?Sized + crate::structs::Struct>(
        &self,
        request: u64,
        ptr: WrittenPointer<T>,
    ) -> Result<(i64, ReadablePointer<T>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let addr = task.check_ptr(ptr.pointer())?;
        // SAFETY: `addr` is memory of the fd's task, lent until completion; the caller
        // vouches that `request` stays inside it and touches no fds or mappings.
        let call = unsafe { near::ioctl(task.sysif(), fd, request, addr.arg()) };
        let (ret, ptr) = task.lent("ioctl", ptr, call).await?;
        Ok((ret, ptr.into_readable()))
    }

    /// `ioctl(fd, FICLONERANGE, &range)` — makes `src_length` bytes of this file at
    /// `dest_offset` share the storage of `src`'s bytes at `src_offset` (a reflink copy;
    /// `src_length` 0 means to the end of `src`). Both files must be on one file system
    /// that supports sharing extents (btrfs, XFS...).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if an offset, or an offset plus `src_length`, is above
    /// `i64::MAX`; [`Error::Mismatch`] if `src` is in another fd table; `EOPNOTSUPP` (file
    /// system without reflinks, such as tmpfs and so memfds), `EXDEV` (different mounts),
    /// `EINVAL` (unaligned range), `EBADF`, `EISDIR`, `EPERM`, `ETXTBSY`. See
    /// ioctl_ficlonerange(2).
    pub async fn clone_range_from(
        &self,
        src: &FileDescriptor,
        src_offset: u64,
        src_length: u64,
        dest_offset: u64,
    ) -> Result<()> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let src_fd = task.check_fd(src)?;
        let len = usize::try_from(src_length)
            .ok()
            .filter(|&l| i64::try_from(l).is_ok())
            .ok_or_else(|| {
                Error::invalid(
                    "ioctl(FICLONERANGE)",
                    format!("length {src_length} is too large"),
                )
            })?;
        file_range("ioctl(FICLONERANGE)", src_offset, len)?;
        file_range("ioctl(FICLONERANGE)", dest_offset, len)?;
        let range = FileCloneRange {
            src_fd: src_fd.arg(),
            src_offset,
            src_length,
            dest_offset,
        };
        let (ptr, addr) = task.ptr_at(&range).await?;
        let req = libc::FICLONERANGE;
        // SAFETY: FICLONERANGE only reads the struct at `addr` (memory of the task, lent
        // until completion) and uses, without changing, the fd it names, which is checked
        // to be in the task's table.
        let call = unsafe { near::ioctl(task.sysif(), fd, req, addr.arg()) };
        task.lent("ioctl(FICLONERANGE)", ptr, call).await?;
        Ok(())
    }

    /// `/proc/<pid>/fd/<n>`: a path naming this fd's file through procfs, with the pid of
    /// the task this handle is used through.
    ///
    /// Opening it opens the file afresh (a new open file description, so new offset and
    /// status flags), which is how an fd without a path (a memfd, a pipe end) is reopened.
    ///
    /// Caveat: the pid is in the task's *own* pid namespace, and procfs resolves it in the
    /// namespace of the `/proc` mount of whoever opens the path. It names this file when
    /// opened by the task itself or by a process whose `/proc` shows the task's pid
    /// namespace; after `CLONE_NEWPID` without a fresh `/proc` mount it may name another
    /// process or none. The fd must also stay open while the path is used.
    pub fn as_proc_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            self.task().pid().as_raw(),
            self.near().as_raw()
        ))
    }
}

impl Task {
    /// `pread64(fd, buf, len, offset)` — reads up to `len` bytes of `fd`'s file at
    /// `offset`; an empty result means `offset` is at or past the end.
    ///
    /// # Errors
    /// As [`FileDescriptor::pread`].
    pub async fn pread_bytes(
        &self,
        fd: &FileDescriptor,
        len: usize,
        offset: u64,
    ) -> Result<Vec<u8>> {
        let fd = fd.for_task(self)?;
        file_range("pread64", offset, len)?;
        let buf = self.malloc_bytes(len).await?;
        let (data, _) = fd.pread(buf, offset).await?;
        data.read().await
    }

    /// `pwrite64(fd, data, len, offset)` — writes some of `data` to `fd`'s file at
    /// `offset`; returns how many bytes were written.
    ///
    /// # Errors
    /// As [`FileDescriptor::pwrite`].
    pub async fn pwrite_bytes(
        &self,
        fd: &FileDescriptor,
        data: &[u8],
        offset: u64,
    ) -> Result<usize> {
        let fd = fd.for_task(self)?;
        file_range("pwrite64", offset, data.len())?;
        let buf = self.ptr(data).await?;
        let (written, _) = fd.pwrite(buf, offset).await?;
        Ok(written.size())
    }

    /// `memfd_create(name, flags | MFD_CLOEXEC)` — an anonymous file in memory, of size 0,
    /// open for reading and writing; `name` (for debugging, shown in `/proc/<pid>/fd`) need
    /// not be unique.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `name` contains a NUL byte or is longer than 249
    /// bytes; `EINVAL` (unknown flags), `EMFILE`, `ENFILE`, `ENOMEM`, `EPERM`
    /// (`MFD::HUGETLB` without the privilege). See memfd_create(2).
    pub async fn memfd_create(&self, name: &[u8], flags: MFD) -> Result<FileDescriptor> {
        if name.len() > MEMFD_NAME_MAX {
            return Err(Error::invalid(
                "memfd_create",
                format!(
                    "a name of {} bytes is longer than {MEMFD_NAME_MAX}",
                    name.len()
                ),
            ));
        }
        let fd = self
            .with_path("memfd_create", name, |p| {
                near::memfd_create(self.sysif(), p, flags | MFD::CLOEXEC)
            })
            .await?;
        Ok(self.own(fd))
    }
}

/// Room for the two fds `pipe2` or `socketpair` writes, lent to the syscall: `[-1, -1]`
/// until the kernel writes them. Dropped while lent (its syscall's future was dropped; the
/// syscall interface drops it once the syscall is over, see
/// [`InFlight`](crate::InFlight)), it queues the closes of the fds written there if the
/// syscall succeeded: nobody else knows them. Only then: a failed `socketpair` leaves
/// there the numbers it reserved and freed again, which may name another owner's fds by
/// now. Memory it cannot read without waiting (another address space) is read by the
/// table's next flush of closes; a result that was never recorded leaves the fds alone.
pub(crate) struct FdPairOut {
    ptr: Option<Pointer<[i32; 2]>>,
    table: std::sync::Arc<FdTableState>,
    /// Where the syscall records its result ([`near::SyscallInterface::syscall_recorded`]).
    cell: near::ResultCell,
}

impl FdPairOut {
    /// The cell the syscall must record its result in.
    pub(crate) fn cell(&self) -> &near::ResultCell {
        &self.cell
    }

    /// The two numbers the syscall wrote.
    async fn read(&self) -> Result<[i32; 2]> {
        let ptr = self
            .ptr
            .as_ref()
            .ok_or_else(|| Error::invalid("fd pair", "the room was taken already"))?;
        read_fd_pair(ptr).await
    }

    /// The caller owns the fds now: dropping this closes nothing.
    fn disarm(mut self) {
        self.ptr = None;
    }
}

/// The two fd numbers `pipe2` or `socketpair` wrote at `ptr`.
pub(crate) async fn read_fd_pair(ptr: &Pointer<[i32; 2]>) -> Result<[i32; 2]> {
    let bytes = ptr.allocation().read(0, 8).await?;
    <[i32; 2] as crate::structs::Struct>::from_bytes(&bytes)
}

impl Drop for FdPairOut {
    fn drop(&mut self) {
        let Some(ptr) = self.ptr.take() else {
            return;
        };
        match self.cell.get() {
            Some(Ok(_)) => {}
            // Failed: no fd was made. Unknown: the memory cannot be trusted to name ours.
            Some(Err(_)) => return,
            None => {
                log::debug!("a dropped pipe2/socketpair has no recorded result: fds left");
                return;
            }
        }
        let polled = {
            let read = std::pin::pin!(read_fd_pair(&ptr));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            read.poll(&mut cx)
        };
        match polled {
            std::task::Poll::Ready(Ok(pair)) => self.table.queue_close_pair(pair),
            // Another address space: the table's next flush reads the fds and closes them.
            std::task::Poll::Pending => self.table.queue_unread_pair(ptr),
            std::task::Poll::Ready(Err(e)) => {
                log::debug!("cannot read the fds of a dropped pipe2/socketpair ({e}): left open");
                return;
            }
        }
        self.table.schedule_flush();
    }
}
