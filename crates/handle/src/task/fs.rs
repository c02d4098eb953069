//! Filesystem syscalls: opening, the `*at` family on paths, metadata (stat, statx),
//! directory listing (getdents64), permissions and times, the working directory, umask.
//!
//! Paths are anything implementing [`PathArg`]; a path with a NUL byte is refused with
//! [`Error::InvalidArgument`] before anything is sent. A `dirfd` of `None` means
//! `AT_FDCWD`: paths relative to the task's working directory. Fds are checked against
//! the task's fd table before anything is sent.

use std::ffi::CStr;

use rsyscall_near::{self as near, AT, Errno, O, RENAME, STATX};

use super::{Task, read_out};
use crate::error::{Error, Result};
use crate::fd::FileDescriptor;
use crate::pointer::{Pointer, ReadablePointer, WrittenPointer};
use crate::structs::{Dirent, DirentList, PathArg, Stat, Statx, Timespec};

/// The buffer size of [`FileDescriptor::getdents`].
const GETDENTS_BUFFER: usize = 32 * 1024;

/// The first buffer size tried by [`Task::readlinkat`] and [`Task::getcwd`].
const FIRST_PATH_BUFFER: usize = 256;

/// The largest buffer [`Task::readlinkat`] and [`Task::getcwd`] grow to.
const MAX_PATH_BUFFER: usize = 1 << 20;

/// Refuses mode bits outside `0o7777`, which the kernel would silently drop.
fn check_mode(what: &'static str, mode: u32) -> Result<()> {
    if mode & !0o7777 != 0 {
        return Err(Error::invalid(
            what,
            format!("mode {mode:#o} has bits outside 0o7777"),
        ));
    }
    Ok(())
}

/// The id argument of `fchown`: `None` leaves the id unchanged (`-1`); `Some(u32::MAX)`
/// would be read the same way, so it is refused.
fn chown_id(what: &'static str, id: Option<u32>) -> Result<u32> {
    match id {
        None => Ok(u32::MAX),
        Some(u32::MAX) => Err(Error::invalid(
            what,
            "id 4294967295 means \"unchanged\" to the kernel; pass None",
        )),
        Some(id) => Ok(id),
    }
}

impl Task {
    /// The near fd of an optional `dirfd` (`None` for `AT_FDCWD`), if it belongs to this
    /// task's table.
    fn check_dirfd(&self, dirfd: Option<&FileDescriptor>) -> Result<Option<near::FileDescriptor>> {
        dirfd.map(|fd| self.check_fd(fd)).transpose()
    }

    /// Writes `path` as a NUL-terminated string in the task's memory; with its address.
    async fn path(
        &self,
        what: &'static str,
        path: impl PathArg,
    ) -> Result<(WrittenPointer<CStr>, near::Address)> {
        let path = self.ptr_cstr(what, path.path_bytes()).await?;
        let addr = self.check_ptr(path.pointer())?;
        Ok((path, addr))
    }

    /// Runs a syscall that only reads one path argument, lending the path until it
    /// completed.
    pub(super) async fn with_path<F, Fut, T>(
        &self,
        what: &'static str,
        path: impl PathArg,
        call: F,
    ) -> Result<T>
    where
        F: FnOnce(near::Address) -> Fut,
        Fut: Future<Output = std::result::Result<T, near::SyscallError>>,
    {
        let (path, addr) = self.path(what, path).await?;
        Ok(self.lent(what, path, call(addr)).await?.0)
    }

    /// Runs a syscall that only reads two path arguments, lending them until it completed.
    async fn with_two_paths<F, Fut, T>(
        &self,
        what: &'static str,
        first: impl PathArg,
        second: impl PathArg,
        call: F,
    ) -> Result<T>
    where
        F: FnOnce(near::Address, near::Address) -> Fut,
        Fut: Future<Output = std::result::Result<T, near::SyscallError>>,
    {
        let (first, a) = self.path(what, first).await?;
        let (second, b) = self.path(what, second).await?;
        Ok(self.lent(what, (first, second), call(a, b)).await?.0)
    }

    /// `openat(AT_FDCWD, path, flags | O_CLOEXEC, mode)` — opens a file.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// use rsyscall_near::O;
    /// let task = Task::local();
    /// let path = std::env::temp_dir().join(format!("rsyscall-doc-open-{}", std::process::id()));
    /// let file = task.open(&path, O::WRONLY | O::CREAT | O::TRUNC, 0o600).await?;
    /// task.write_all_bytes(&file, b"contents").await?;
    /// file.close().await?;
    /// assert_eq!(std::fs::read(&path).unwrap(), b"contents");
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path with a NUL byte; `ENOENT`, `EACCES`, `EEXIST`,
    /// `EISDIR`, `EMFILE`... See open(2).
    pub async fn open(&self, path: impl PathArg, flags: O, mode: u32) -> Result<FileDescriptor> {
        self.openat(None, path, flags, mode).await
    }

    /// `openat(dirfd, path, flags | O_CLOEXEC, mode)` — opens a file relative to `dirfd`
    /// (the working directory for `None`); the new fd is close-on-exec.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte; `ENOENT`, `EACCES`, `EEXIST`, `EISDIR`, `EMFILE`,
    /// `ENOTDIR`, `EOPNOTSUPP` (`O_TMPFILE` unsupported)... See open(2).
    pub async fn openat(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
        flags: O,
        mode: u32,
    ) -> Result<FileDescriptor> {
        let dirfd = self.check_dirfd(dirfd)?;
        let fd = self
            .with_path("openat", path, |p| {
                near::openat(self.sysif(), dirfd, p, flags | O::CLOEXEC, mode)
            })
            .await?;
        Ok(self.own(fd))
    }

    /// `faccessat2(AT_FDCWD, path, mode, 0)` — checks access to a file (`libc::X_OK`...).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path with a NUL byte; `ENOENT`, `EACCES`... See
    /// access(2).
    pub async fn access(&self, path: impl PathArg, mode: i32) -> Result<()> {
        self.faccessat(None, path, mode, AT::empty()).await
    }

    /// `faccessat2(dirfd, path, mode, flags)` — checks the task's permissions for a file
    /// (`mode` is `libc::F_OK` or a combination of `R_OK`, `W_OK`, `X_OK`; flags
    /// `AT::EACCESS`, `AT::SYMLINK_NOFOLLOW`, `AT::EMPTY_PATH`).
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte; `EACCES`, `ENOENT`, `ENOTDIR`, `EINVAL` (bad flags)... See
    /// access(2).
    pub async fn faccessat(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
        mode: i32,
        flags: AT,
    ) -> Result<()> {
        let dirfd = self.check_dirfd(dirfd)?;
        self.with_path("faccessat2", path, |p| {
            near::faccessat(self.sysif(), dirfd, p, mode, flags)
        })
        .await
    }

    /// `newfstatat(dirfd, path, statbuf, flags)` — the metadata of a file
    /// (`AT::SYMLINK_NOFOLLOW` for the link itself, `AT::EMPTY_PATH` with `""` for `dirfd`).
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte; `ENOENT`, `EACCES`, `ELOOP`, `ENOTDIR`, `EINVAL`... See
    /// stat(2).
    pub async fn fstatat(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
        flags: AT,
    ) -> Result<Stat> {
        let dirfd = self.check_dirfd(dirfd)?;
        let (path, paddr) = self.path("newfstatat", path).await?;
        let (buf, baddr) = self.out::<Stat>().await?;
        // SAFETY: baddr is a Stat-sized allocation of the task's memory, lent until the
        // syscall completed.
        let call = unsafe { near::newfstatat(self.sysif(), dirfd, paddr, baddr, flags) };
        let ((), (_, buf)) = self.lent("newfstatat", (path, buf), call).await?;
        read_out(buf).await
    }

    /// `newfstatat(AT_FDCWD, path, statbuf, 0)` — the metadata of a file, following
    /// symlinks.
    ///
    /// # Errors
    /// As [`Task::fstatat`].
    pub async fn stat(&self, path: impl PathArg) -> Result<Stat> {
        self.fstatat(None, path, AT::empty()).await
    }

    /// `newfstatat(AT_FDCWD, path, statbuf, AT_SYMLINK_NOFOLLOW)` — the metadata of a file,
    /// or of a symlink itself.
    ///
    /// # Errors
    /// As [`Task::fstatat`].
    pub async fn lstat(&self, path: impl PathArg) -> Result<Stat> {
        self.fstatat(None, path, AT::SYMLINK_NOFOLLOW).await
    }

    /// `statx(dirfd, path, flags, mask, statxbuf)` — the extended metadata of a file; the
    /// result's `mask` says which of the fields asked for in `mask` were filled.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte; `ENOENT`, `EACCES`, `ELOOP`, `ENOTDIR`, `EINVAL` (bad flags
    /// or mask)... See statx(2).
    pub async fn statx(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
        flags: AT,
        mask: STATX,
    ) -> Result<Statx> {
        let dirfd = self.check_dirfd(dirfd)?;
        let (path, paddr) = self.path("statx", path).await?;
        let (buf, baddr) = self.out::<Statx>().await?;
        // SAFETY: baddr is a Statx-sized (256 bytes) allocation of the task's memory, lent
        // until the syscall completed.
        let call = unsafe { near::statx(self.sysif(), dirfd, paddr, flags, mask, baddr) };
        let ((), (_, buf)) = self.lent("statx", (path, buf), call).await?;
        read_out(buf).await
    }

    /// `mkdirat(dirfd, path, mode)` — creates a directory (`mode` is masked by the umask).
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte or mode bits outside `0o7777`; `EEXIST`, `ENOENT`, `EACCES`,
    /// `ENOTDIR`, `ENOSPC`, `EROFS`... See mkdir(2).
    pub async fn mkdirat(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
        mode: u32,
    ) -> Result<()> {
        let dirfd = self.check_dirfd(dirfd)?;
        check_mode("mkdirat", mode)?;
        self.with_path("mkdirat", path, |p| {
            near::mkdirat(self.sysif(), dirfd, p, mode)
        })
        .await
    }

    /// `unlinkat(dirfd, path, flags)` — removes a name; with `AT::REMOVEDIR`, removes an
    /// empty directory.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte; `ENOENT`, `EISDIR` (a directory without `REMOVEDIR`),
    /// `ENOTDIR`, `ENOTEMPTY`, `EBUSY`, `EACCES`, `EROFS`... See unlink(2), rmdir(2).
    pub async fn unlinkat(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
        flags: AT,
    ) -> Result<()> {
        let dirfd = self.check_dirfd(dirfd)?;
        self.with_path("unlinkat", path, |p| {
            near::unlinkat(self.sysif(), dirfd, p, flags)
        })
        .await
    }

    /// `linkat(olddirfd, oldpath, newdirfd, newpath, flags)` — makes a new name for a file.
    /// `AT::SYMLINK_FOLLOW` follows a symlink at `oldpath`, which gives a name to an
    /// `O_TMPFILE` file through `/proc/self/fd/N`; `AT::EMPTY_PATH` with `""` links
    /// `olddirfd` itself (needs `CAP_DAC_READ_SEARCH`).
    ///
    /// # Errors
    /// [`Error::Mismatch`] if a dirfd is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte; `EEXIST`, `ENOENT`, `EXDEV`, `EPERM`, `EACCES`, `EMLINK`...
    /// See link(2).
    pub async fn linkat(
        &self,
        olddirfd: Option<&FileDescriptor>,
        oldpath: impl PathArg,
        newdirfd: Option<&FileDescriptor>,
        newpath: impl PathArg,
        flags: AT,
    ) -> Result<()> {
        let olddirfd = self.check_dirfd(olddirfd)?;
        let newdirfd = self.check_dirfd(newdirfd)?;
        self.with_two_paths("linkat", oldpath, newpath, |o, n| {
            near::linkat(self.sysif(), olddirfd, o, newdirfd, n, flags)
        })
        .await
    }

    /// `symlinkat(target, newdirfd, linkpath)` — creates a symbolic link at `linkpath`
    /// whose contents are `target`.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `newdirfd` is of another fd table; [`Error::InvalidArgument`]
    /// for a target or path with a NUL byte; `EEXIST`, `ENOENT`, `EACCES`, `ENOSPC`,
    /// `EROFS`... See symlink(2).
    pub async fn symlinkat(
        &self,
        target: impl PathArg,
        newdirfd: Option<&FileDescriptor>,
        linkpath: impl PathArg,
    ) -> Result<()> {
        let newdirfd = self.check_dirfd(newdirfd)?;
        self.with_two_paths("symlinkat", target, linkpath, |t, l| {
            near::symlinkat(self.sysif(), t, newdirfd, l)
        })
        .await
    }

    /// `readlinkat(dirfd, path, buf, bufsiz)` — reads a symlink's target into `buf`;
    /// returns the filled part and the rest. A filled part as large as `buf` may mean the
    /// target was truncated.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` or `buf` is of another task; [`Error::InvalidArgument`]
    /// for a path with a NUL byte; `EINVAL` (not a symlink, or an empty buffer), `ENOENT`,
    /// `EACCES`, `ELOOP`... See readlink(2).
    pub async fn readlinkat_into(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
        buf: Pointer<[u8]>,
    ) -> Result<(ReadablePointer<[u8]>, Pointer<[u8]>)> {
        let dirfd = self.check_dirfd(dirfd)?;
        let baddr = self.check_ptr(&buf)?;
        let (path, paddr) = self.path("readlinkat", path).await?;
        let len = buf.size();
        // SAFETY: baddr is `len` bytes of the task's memory, lent until the syscall
        // completed.
        let call = unsafe { near::readlinkat(self.sysif(), dirfd, paddr, baddr, len) };
        let (n, (_, buf)) = self.lent("readlinkat", (path, buf), call).await?;
        buf.filled(n.min(len))
    }

    /// `readlinkat(dirfd, path, buf, bufsiz)` — the target of a symlink (for
    /// `/proc/<pid>/fd/N`, the path of the open file). Retries with a larger buffer while
    /// the result may have been truncated.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` is of another fd table; [`Error::InvalidArgument`]
    /// for a path with a NUL byte, or a target longer than 1 MiB; `EINVAL` (not a
    /// symlink), `ENOENT`, `EACCES`, `ELOOP`... See readlink(2).
    pub async fn readlinkat(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
    ) -> Result<Vec<u8>> {
        let dirfd = self.check_dirfd(dirfd)?;
        let (mut path, paddr) = self.path("readlinkat", path).await?;
        let mut size = FIRST_PATH_BUFFER;
        loop {
            let buf = self.malloc_bytes(size).await?;
            let baddr = self.check_ptr(&buf)?;
            // SAFETY: baddr is `size` bytes of the task's memory, lent until the syscall
            // completed.
            let call = unsafe { near::readlinkat(self.sysif(), dirfd, paddr, baddr, size) };
            let (n, (p, buf)) = self.lent("readlinkat", (path, buf), call).await?;
            if n < size {
                return buf.filled(n)?.0.read().await;
            }
            if size >= MAX_PATH_BUFFER {
                return Err(Error::invalid(
                    "readlinkat",
                    format!("the target is longer than {MAX_PATH_BUFFER} bytes"),
                ));
            }
            path = p;
            size *= 2;
        }
    }

    /// `renameat2(olddirfd, oldpath, newdirfd, newpath, flags)` — renames a file;
    /// `RENAME::NOREPLACE` fails instead of replacing an existing `newpath`,
    /// `RENAME::EXCHANGE` swaps the two.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if a dirfd is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte; `EEXIST` (with `NOREPLACE`), `ENOENT`, `EXDEV`, `EISDIR`,
    /// `ENOTEMPTY`, `EINVAL` (flags the filesystem does not support)... See rename(2).
    pub async fn renameat2(
        &self,
        olddirfd: Option<&FileDescriptor>,
        oldpath: impl PathArg,
        newdirfd: Option<&FileDescriptor>,
        newpath: impl PathArg,
        flags: RENAME,
    ) -> Result<()> {
        let olddirfd = self.check_dirfd(olddirfd)?;
        let newdirfd = self.check_dirfd(newdirfd)?;
        self.with_two_paths("renameat2", oldpath, newpath, |o, n| {
            near::renameat2(self.sysif(), olddirfd, o, newdirfd, n, flags)
        })
        .await
    }

    /// `fchmodat(dirfd, path, mode)` — changes the permission bits of a file by path; with
    /// flags (`AT::SYMLINK_NOFOLLOW`, `AT::EMPTY_PATH`) this is `fchmodat2` (Linux 6.6+).
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte or mode bits outside `0o7777`; `ENOENT`, `EPERM`, `EACCES`,
    /// `EROFS`, `EOPNOTSUPP` (a symlink's mode), `ENOSYS` (flags before Linux 6.6)... See
    /// chmod(2).
    pub async fn fchmodat(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
        mode: u32,
        flags: AT,
    ) -> Result<()> {
        let dirfd = self.check_dirfd(dirfd)?;
        check_mode("fchmodat", mode)?;
        if flags.is_empty() {
            self.with_path("fchmodat", path, |p| {
                near::fchmodat(self.sysif(), dirfd, p, mode)
            })
            .await
        } else {
            self.with_path("fchmodat2", path, |p| {
                near::fchmodat2(self.sysif(), dirfd, p, mode, flags)
            })
            .await
        }
    }

    /// `utimensat(dirfd, path, times, flags)` — sets the access and modification times
    /// (`times[0]`, `times[1]`) of a file; [`Timespec::UTIME_NOW`] sets a time to now and
    /// [`Timespec::UTIME_OMIT`] leaves it alone. `AT::SYMLINK_NOFOLLOW` changes a symlink
    /// itself.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if `dirfd` is of another fd table; [`Error::InvalidArgument`] for
    /// a path with a NUL byte; `EINVAL` (nanoseconds out of range), `EACCES`, `EPERM`,
    /// `ENOENT`, `EROFS`... See utimensat(2).
    pub async fn utimensat(
        &self,
        dirfd: Option<&FileDescriptor>,
        path: impl PathArg,
        times: [Timespec; 2],
        flags: AT,
    ) -> Result<()> {
        let dirfd = self.check_dirfd(dirfd)?;
        let (path, paddr) = self.path("utimensat", path).await?;
        let (times, taddr) = self.ptr_at(&times).await?;
        let call = near::utimensat(self.sysif(), dirfd, paddr, taddr, flags);
        self.lent("utimensat", (path, times), call).await?;
        Ok(())
    }

    /// `chdir(path)` — changes the task's working directory. Processes sharing it through
    /// `CLONE_FS` (all threads of the local process, for the local task) see the change.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path with a NUL byte; `ENOENT`, `ENOTDIR`,
    /// `EACCES`, `ELOOP`... See chdir(2).
    pub async fn chdir(&self, path: impl PathArg) -> Result<()> {
        self.with_path("chdir", path, |p| near::chdir(self.sysif(), p))
            .await
    }

    /// `getcwd(buf, size)` — the task's working directory (without NUL). Retries with a
    /// larger buffer on `ERANGE`.
    ///
    /// # Errors
    /// `ENOENT` (the directory was removed); [`Error::InvalidArgument`] for a path longer
    /// than 1 MiB. See getcwd(2).
    pub async fn getcwd(&self) -> Result<Vec<u8>> {
        let mut size = FIRST_PATH_BUFFER;
        loop {
            let buf = self.malloc_bytes(size).await?;
            self.prepare().await;
            let addr = self.check_ptr(&buf)?;
            let buf = self.lend(buf);
            // SAFETY: addr is `size` bytes of the task's memory, lent until the syscall
            // completed.
            let r = unsafe { near::getcwd(self.sysif(), addr, size) }.await;
            match buf.settle(r) {
                Ok((n, buf)) => {
                    let mut cwd = buf.filled(n.min(size))?.0.read().await?;
                    // n counts the terminating NUL.
                    if cwd.last() == Some(&0) {
                        cwd.pop();
                    }
                    return Ok(cwd);
                }
                Err(e) if e.errno() == Some(Errno::ERANGE) && size < MAX_PATH_BUFFER => {
                    size *= 2;
                }
                Err(e) if e.errno() == Some(Errno::ERANGE) => {
                    return Err(Error::invalid(
                        "getcwd",
                        format!("the working directory is longer than {MAX_PATH_BUFFER} bytes"),
                    ));
                }
                Err(e) => return Err(self.error("getcwd")(e)),
            }
        }
    }

    /// `umask(mask)` — sets the task's file mode creation mask and returns the previous
    /// one. Processes sharing it through `CLONE_FS` (all threads of the local process, for
    /// the local task) see the change.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bits outside `0o777` (the kernel would drop them).
    /// See umask(2).
    pub async fn umask(&self, mask: u32) -> Result<u32> {
        if mask & !0o777 != 0 {
            return Err(Error::invalid(
                "umask",
                format!("mask {mask:#o} has bits outside 0o777"),
            ));
        }
        self.prepare().await;
        near::umask(self.sysif(), mask)
            .await
            .map_err(self.error("umask"))
    }
}

impl FileDescriptor {
    /// `fstat(fd, statbuf)` — the metadata of the file this fd refers to.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the fd is not in its task's table; `EBADF`, `EOVERFLOW`. See
    /// stat(2).
    pub async fn fstat(&self) -> Result<Stat> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (buf, addr) = task.out::<Stat>().await?;
        // SAFETY: addr is a Stat-sized allocation of the task's memory, lent until the
        // syscall completed.
        let call = unsafe { near::fstat(task.sysif(), fd, addr) };
        let ((), buf) = task.lent("fstat", buf, call).await?;
        read_out(buf).await
    }

    /// `statx(fd, "", AT_EMPTY_PATH, mask, statxbuf)` — the extended metadata of the file
    /// this fd refers to.
    ///
    /// # Errors
    /// As [`Task::statx`].
    pub async fn statx(&self, mask: STATX) -> Result<Statx> {
        self.task()
            .statx(Some(self), b"", AT::EMPTY_PATH, mask)
            .await
    }

    /// `getdents64(fd, dirp, count)` — reads directory entries into `buf`; returns the
    /// filled part (read it to parse the [`Dirent`]s) and the rest. An empty filled part
    /// means the end of the directory.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the fd or `buf` is of another task; `EINVAL` (buffer too
    /// small for the next entry), `ENOENT` (the directory was removed), `ENOTDIR`,
    /// `EBADF`. See getdents(2).
    pub async fn getdents64(
        &self,
        buf: Pointer<[u8]>,
    ) -> Result<(ReadablePointer<DirentList>, Pointer<[u8]>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let addr = task.check_ptr(&buf)?;
        let len = buf.size();
        // SAFETY: addr is `len` bytes of the task's memory, lent until the syscall
        // completed.
        let call = unsafe { near::getdents64(task.sysif(), fd, addr, len) };
        let (n, buf) = task.lent("getdents64", buf, call).await?;
        let (filled, rest) = buf.cast::<DirentList>().filled(n.min(len))?;
        Ok((filled, rest.cast()))
    }

    /// `getdents64(fd, dirp, 32768)` — the next batch of directory entries; empty at the
    /// end of the directory.
    ///
    /// # Errors
    /// As [`FileDescriptor::getdents64`]; [`Error::InvalidArgument`] if the kernel's
    /// records do not parse.
    pub async fn getdents(&self) -> Result<Vec<Dirent>> {
        let buf = self.task().malloc_bytes(GETDENTS_BUFFER).await?;
        let (filled, _) = self.getdents64(buf).await?;
        filled.read().await
    }

    /// Every remaining entry of the directory, by [`FileDescriptor::getdents`] until it
    /// returns nothing.
    ///
    /// # Errors
    /// As [`FileDescriptor::getdents`].
    pub async fn getdents_all(&self) -> Result<Vec<Dirent>> {
        let mut out = Vec::new();
        loop {
            let batch = self.getdents().await?;
            if batch.is_empty() {
                return Ok(out);
            }
            out.extend(batch);
        }
    }

    /// `fchmod(fd, mode)` — changes the permission bits of the file this fd refers to.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the fd is not in its task's table; [`Error::InvalidArgument`]
    /// for mode bits outside `0o7777`; `EBADF`, `EPERM`, `EROFS`. See chmod(2).
    pub async fn fchmod(&self, mode: u32) -> Result<()> {
        check_mode("fchmod", mode)?;
        self.call("fchmod", |s, fd| near::fchmod(s, fd, mode)).await
    }

    /// `fchown(fd, owner, group)` — changes the owner and group of the file this fd refers
    /// to; `None` leaves that id unchanged.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the fd is not in its task's table; [`Error::InvalidArgument`]
    /// for `Some(u32::MAX)` (the kernel reads it as "unchanged"); `EBADF`, `EPERM`,
    /// `EROFS`. See chown(2).
    pub async fn fchown(&self, owner: Option<u32>, group: Option<u32>) -> Result<()> {
        let owner = chown_id("fchown", owner)?;
        let group = chown_id("fchown", group)?;
        self.call("fchown", |s, fd| near::fchown(s, fd, owner, group))
            .await
    }

    /// `utimensat(fd, NULL, times, 0)` (futimens) — sets the access and modification times
    /// of the file this fd refers to; see [`Task::utimensat`].
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the fd is not in its task's table; `EBADF`, `EINVAL`,
    /// `EACCES`, `EPERM`, `EROFS`. See utimensat(2).
    pub async fn futimens(&self, times: [Timespec; 2]) -> Result<()> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (times, taddr) = task.ptr_at(&times).await?;
        let null = near::Address::NULL;
        let call = near::utimensat(task.sysif(), Some(fd), null, taddr, AT::empty());
        task.lent("utimensat", times, call).await?;
        Ok(())
    }

    /// `fchdir(fd)` — makes the directory this fd refers to its task's working directory
    /// (see [`Task::chdir`] about sharing).
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the fd is not in its task's table; `EBADF`, `ENOTDIR`,
    /// `EACCES`. See chdir(2).
    pub async fn fchdir(&self) -> Result<()> {
        self.call("fchdir", near::fchdir).await
    }
}
