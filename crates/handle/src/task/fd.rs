//! Basic fd syscalls: read, write, dup, pipes.
//!
//! Every method taking memory takes ownership of the pointer, lends it to the syscall
//! through an [`InFlight`](crate::InFlight) guard, and gives it back (split into the part
//! the kernel touched and the rest) once the syscall completed.

use rsyscall_near::{self as near, O};

use super::Task;
use crate::error::{Error, Result};
use crate::fd::FileDescriptor;
use crate::pointer::{Pointer, ReadablePointer, WrittenPointer};

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
    /// # Errors
    /// `EAGAIN`, `EBADF`, `EINTR`, `EINVAL`, `EISDIR`... See read(2). Mismatched fd table or
    /// address space is refused before sending.
    pub async fn read(&self, buf: Pointer<[u8]>) -> Result<(ReadablePointer<[u8]>, Pointer<[u8]>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let addr = task.check_ptr(&buf)?;
        task.prepare().await;
        let len = buf.size();
        let buf = task.lend(buf);
        // SAFETY: `addr` is `len` bytes of the task's address space, lent until completion.
        let r = unsafe { near::read(task.sysif(), fd, addr, len) }.await;
        let (n, buf) = buf.settle(r).map_err(task.error("read"))?;
        buf.filled(n.min(len))
    }

    /// `write(fd, buf, count)` — writes some of `buf`; returns the written part and the rest.
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
        task.prepare().await;
        let len = buf.size();
        let buf = task.lend(buf);
        let r = near::write(task.sysif(), fd, addr, len).await;
        let (n, buf) = buf.settle(r).map_err(task.error("write"))?;
        buf.split(n.min(len))
    }
}

impl Task {
    /// Writes some of `data` to `fd` (copying it into the task's memory first unless the
    /// task is the local one); returns how many bytes were written.
    ///
    /// # Errors
    /// As [`FileDescriptor::write`].
    pub async fn write(&self, fd: &FileDescriptor, data: &[u8]) -> Result<usize> {
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
    /// As [`Task::write`].
    pub async fn write_all(&self, fd: &FileDescriptor, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = self.write(fd, data).await?;
            data = &data[n.min(data.len())..];
        }
        Ok(())
    }

    /// Reads up to `len` bytes from `fd`; an empty result means EOF.
    ///
    /// # Errors
    /// As [`FileDescriptor::read`].
    pub async fn read(&self, fd: &FileDescriptor, len: usize) -> Result<Vec<u8>> {
        let buf = self.malloc_bytes(len).await?;
        let (data, _) = fd.for_task(self)?.read(buf).await?;
        data.read().await
    }

    /// Reads until EOF.
    ///
    /// # Errors
    /// As [`Task::read`].
    pub async fn read_to_end(&self, fd: &FileDescriptor) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read(fd, 65536).await?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// Owns the two fd numbers a syscall wrote into `pair`.
    pub(crate) async fn own_pair(
        &self,
        pair: ReadablePointer<[i32; 2]>,
    ) -> Result<(FileDescriptor, FileDescriptor)> {
        let [a, b] = pair.read().await?;
        Ok((
            self.own(near::FileDescriptor::new(a)),
            self.own(near::FileDescriptor::new(b)),
        ))
    }

    /// `pipe2(fds, O_CLOEXEC)` — a pipe, both ends close-on-exec.
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
        self.prepare().await;
        let buf = self.malloc::<[i32; 2]>().await?;
        let addr = self.check_ptr(&buf)?;
        let buf = self.lend(buf);
        // SAFETY: addr is 8 bytes of the task's memory, lent until completion.
        let r = unsafe { near::pipe2(self.sysif(), addr, flags | O::CLOEXEC) }.await;
        let ((), buf) = buf.settle(r).map_err(self.error("pipe2"))?;
        let (read, write) = self.own_pair(buf.filled(8)?.0).await?;
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
        // SAFETY: `new` is a handle held by the caller, so replacing what it refers to
        // affects only users of that handle, who asked for it.
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
