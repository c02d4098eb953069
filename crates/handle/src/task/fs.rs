//! Filesystem syscalls: open, access.

use rsyscall_near::{self as near, O};

use super::Task;
use crate::error::Result;
use crate::fd::FileDescriptor;

impl Task {
    /// `openat(AT_FDCWD, path, flags | O_CLOEXEC, mode)` — opens a file.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a path with a NUL byte;
    /// `ENOENT`, `EACCES`, `EEXIST`, `EISDIR`, `EMFILE`... See open(2).
    pub async fn open(&self, path: &[u8], flags: O, mode: u32) -> Result<FileDescriptor> {
        let path = self.ptr_cstr("open", path).await?;
        self.prepare().await;
        let addr = self.check_ptr(path.pointer())?;
        let path = self.lend(path);
        let r = near::openat(self.sysif(), None, addr, flags | O::CLOEXEC, mode).await;
        let (fd, _) = path.settle(r).map_err(self.error("openat"))?;
        Ok(self.own(fd))
    }

    /// `faccessat2(AT_FDCWD, path, mode, 0)` — checks access to a file (`libc::X_OK`...).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a path with a NUL byte;
    /// `ENOENT`, `EACCES`... See access(2).
    pub async fn access(&self, path: &[u8], mode: i32) -> Result<()> {
        let path = self.ptr_cstr("access", path).await?;
        let addr = self.check_ptr(path.pointer())?;
        let path = self.lend(path);
        let r = near::faccessat(self.sysif(), None, addr, mode, 0).await;
        path.settle(r).map_err(self.error("faccessat2"))?;
        Ok(())
    }
}
