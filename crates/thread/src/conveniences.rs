//! Conveniences on [`Thread`]: memory, writing files, sockets, mounts, chroot, and running
//! a command to completion. Each is a thin layer over the [`Task`] methods.

#[cfg(doc)]
use rsyscall_handle::Task;
use rsyscall_handle::structs::{AnySockaddr, FixedSize, PathArg, Sockaddr, Struct};
use rsyscall_handle::{ChildState, Error, FileDescriptor, Pointer, Result, WrittenPointer};
use rsyscall_near::{AF, CLONE, MS, O, SOCK, SockType};

use crate::command::Command;
use crate::thread::Thread;

/// `None` for an empty string, which the mount helpers pass as NULL.
fn non_empty(s: &[u8]) -> Option<&[u8]> {
    (!s.is_empty()).then_some(s)
}

impl Thread {
    /// Allocates room for one `T` in this thread's address space (uninitialized).
    ///
    /// # Errors
    /// See [`Task::malloc`].
    pub async fn malloc<T: FixedSize>(&self) -> Result<Pointer<T>> {
        self.task().malloc::<T>().await
    }

    /// Allocates `n` bytes in this thread's address space (uninitialized).
    ///
    /// # Errors
    /// See [`Task::malloc_bytes`].
    pub async fn malloc_bytes(&self, n: usize) -> Result<Pointer<[u8]>> {
        self.task().malloc_bytes(n).await
    }

    /// Allocates memory for `value` in this thread's address space and writes it there.
    ///
    /// # Errors
    /// See [`Task::ptr`].
    pub async fn ptr<T: ?Sized + Struct>(&self, value: &T) -> Result<WrittenPointer<T>> {
        self.task().ptr(value).await
    }

    /// Creates (or truncates) the file at `path` with permission bits `mode` (for a new
    /// file, before the umask), writes all of `data` to it and closes it; returns `path`,
    /// so that it serves as a constructor of files.
    ///
    /// # Errors
    /// The errors of `openat` (`ENOENT`, `EACCES`, `EISDIR`...), `write` and `close`;
    /// [`Error::InvalidArgument`] for mode bits outside `0o7777` or a path with a NUL byte.
    pub async fn spit<P: PathArg>(&self, path: P, data: &[u8], mode: u32) -> Result<P> {
        if mode & !0o7777 != 0 {
            return Err(Error::invalid(
                "spit",
                format!("mode {mode:#o} has bits outside 0o7777"),
            ));
        }
        let task = self.task();
        let fd = task
            .open(&path, O::WRONLY | O::CREAT | O::TRUNC, mode)
            .await?;
        let written = task.write_all_bytes(&fd, data).await;
        let closed = fd.close().await;
        written?;
        closed?;
        Ok(path)
    }

    /// Writes all of `data` to `fd` (which stays open).
    ///
    /// # Errors
    /// See [`Task::write_all_bytes`]; [`Error::Mismatch`] for an fd of another table.
    pub async fn spit_fd(&self, fd: &FileDescriptor, data: &[u8]) -> Result<()> {
        self.task().write_all_bytes(fd, data).await
    }

    /// Binds `sock` to `addr` and returns the address it got, as `getsockname` reports it:
    /// the way to learn the port the kernel chose for port 0.
    ///
    /// # Errors
    /// See [`FileDescriptor::bind`] and [`FileDescriptor::getsockname`].
    pub async fn bind_getsockname<A: Sockaddr + ?Sized>(
        &self,
        sock: &FileDescriptor,
        addr: &A,
    ) -> Result<AnySockaddr> {
        self.task().check_fd(sock)?;
        sock.bind(addr).await?;
        sock.getsockname().await
    }

    /// Makes a directory at `path` with permission bits `mode` (before the umask); returns
    /// `path`.
    ///
    /// # Errors
    /// See [`Task::mkdirat`] (`EEXIST`, `ENOENT`, `EACCES`...).
    pub async fn mkdir<P: PathArg>(&self, path: P, mode: u32) -> Result<P> {
        self.task().mkdirat(None, &path, mode).await?;
        Ok(path)
    }

    /// `mount(source, target, fstype, flags, data)` in this thread's mount namespace: for
    /// example `mount("tmpfs", "/tmp", "tmpfs", MS::empty(), "")`, or a bind mount
    /// `mount("/proc", "dir/proc", "", MS::BIND | MS::REC, "")`. An empty `source`,
    /// `fstype` or `data` is passed as NULL.
    ///
    /// # Errors
    /// See [`Task::mount`].
    pub async fn mount(
        &self,
        source: impl PathArg,
        target: impl PathArg,
        fstype: impl AsRef<[u8]>,
        flags: MS,
        data: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.task()
            .mount(
                non_empty(source.path_bytes()),
                target.path_bytes(),
                non_empty(fstype.as_ref()),
                flags,
                non_empty(data.as_ref()),
            )
            .await
    }

    /// A new socket in this thread (close-on-exec), with the default protocol of `domain`
    /// and `ty`; `flags` may add `SOCK::NONBLOCK`.
    ///
    /// # Errors
    /// See [`Task::socket`].
    pub async fn socket(&self, domain: AF, ty: SockType, flags: SOCK) -> Result<FileDescriptor> {
        self.task().socket(domain, ty, flags, 0).await
    }

    /// Two connected sockets in this thread (close-on-exec); `flags` may add
    /// `SOCK::NONBLOCK`.
    ///
    /// # Errors
    /// See [`Task::socketpair`] (`EOPNOTSUPP` for a family without socketpairs, such as
    /// `AF::INET`).
    pub async fn socketpair(
        &self,
        domain: AF,
        ty: SockType,
        flags: SOCK,
    ) -> Result<(FileDescriptor, FileDescriptor)> {
        self.task().socketpair(domain, ty, flags, 0).await
    }

    /// Changes this thread's root directory to `path` (shared with the threads it shares
    /// its fs context with: on the local thread, the whole program's).
    ///
    /// # Errors
    /// See [`Task::chroot`].
    pub async fn chroot(&self, path: impl PathArg) -> Result<()> {
        self.task().chroot(path).await
    }

    /// Runs `command` to completion in a fresh child of this thread (clone, exec, wait)
    /// and checks that it exited cleanly: the reference's `run` (with its default
    /// `check=True`). [`Thread::run_unchecked`] returns any end state instead. If this
    /// future is dropped before the command finished, the command gets `SIGTERM`.
    ///
    /// Returns the state the command ended in, which is always `Exited(0)`: any other
    /// state is an error.
    ///
    /// # Errors
    /// [`Error::UncleanExit`] with the command and how it ended; the errors of
    /// [`Thread::clone`] and [`ChildThread::exec`](crate::ChildThread::exec) (`ENOENT` for
    /// a missing program...).
    pub async fn run(&self, command: Command) -> Result<ChildState> {
        let child = self.clone(CLONE::empty()).await?;
        let process = child.exec(command).await?;
        process.check().await?;
        Ok(ChildState::Exited(0))
    }

    /// Runs `command` to completion in a fresh child of this thread (clone, exec, wait)
    /// and returns how it ended, clean or not: the reference's `run(command,
    /// check=False)`. If this future is dropped before the command finished, the command
    /// gets `SIGTERM`.
    ///
    /// # Errors
    /// The errors of [`Thread::clone`], [`ChildThread::exec`](crate::ChildThread::exec)
    /// (`ENOENT` for a missing program...) and of waiting; never
    /// [`Error::UncleanExit`].
    pub async fn run_unchecked(&self, command: Command) -> Result<ChildState> {
        let child = self.clone(CLONE::empty()).await?;
        let process = child.exec(command).await?;
        // `check` (rather than `wait`) for its SIGTERM when dropped.
        match process.check().await {
            Ok(()) => Ok(ChildState::Exited(0)),
            Err(Error::UncleanExit { state, .. }) => Ok(state),
            Err(e) => Err(e),
        }
    }
}
