//! Memory syscalls: mmap, munmap, mprotect, madvise (memfd_create lives with the fd syscalls).
//!
//! `mmap` returns a [`MemoryMapping`], an owning handle to the mapped range. Its contents
//! are not reachable through [`Pointer`](crate::Pointer)s (the allocator never hands out
//! memory inside it); in the local address space, [`MemoryMapping::local_ptr`] gives its
//! address for the caller's own unsafe code.

use std::fmt;
use std::ptr::NonNull;

use rsyscall_near::{self as near, MADV, MAP, PROT};

use super::Task;
use crate::error::{Error, Result};
use crate::fd::FileDescriptor;

/// An owning handle to a memory mapping made by [`Task::mmap`] in one address space.
///
/// Dropping it unmaps the range: at once if it is in the local address space (the local
/// task's, shared by every clone child), otherwise at the next syscall made through a task
/// of that address space (`Drop` cannot be async). [`MemoryMapping::munmap`] unmaps at
/// once anywhere and reports errors.
pub struct MemoryMapping {
    task: Task,
    mapping: near::MemoryMapping,
    /// Set once the mapping was unmapped (so drop stays quiet).
    unmapped: bool,
}

impl fmt::Debug for MemoryMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MemoryMapping({:?}, {} bytes, pid {})",
            self.mapping.addr,
            self.mapping.len,
            self.task.pid().as_raw()
        )
    }
}

impl Drop for MemoryMapping {
    fn drop(&mut self) {
        if self.unmapped {
            return;
        }
        if self.task.namespaces().address_space == crate::local::local_namespaces().address_space {
            let req = near::Request::new(
                libc::SYS_munmap,
                [self.mapping.addr.arg(), self.mapping.len as i64, 0, 0, 0, 0],
            );
            // SAFETY: this handle owned the mapping and is going away: nothing refers to
            // the range any more. munmap of a local range runs on the calling thread.
            if let Err(e) = unsafe { near::LocalSyscall.syscall_sync(req) } {
                log::debug!("munmap of dropped {self:?} failed: {e}");
            }
        } else {
            self.task.memory().queue_unmap(self.mapping);
        }
    }
}

/// The page size the kernel uses for mappings on the supported architectures.
const PAGE: usize = crate::memory::PAGE_SIZE;

impl MemoryMapping {
    /// The task whose address space holds the mapping.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The near mapping (start address and length as asked of `mmap`).
    pub fn near(&self) -> near::MemoryMapping {
        self.mapping
    }

    /// The start address (page aligned), meaningful in the task's address space only.
    pub fn addr(&self) -> near::Address {
        self.mapping.addr
    }

    /// The length in bytes, as passed to `mmap`.
    pub fn len(&self) -> usize {
        self.mapping.len
    }

    /// Whether the length is zero (never true for a mapping the kernel made).
    pub fn is_empty(&self) -> bool {
        self.mapping.len == 0
    }

    /// The start of the mapping as a local pointer, if the mapping lives in the local
    /// address space (the local task, or a clone child sharing it); `None` otherwise.
    ///
    /// Dereferencing it is up to the caller's unsafe code: the memory may be changed
    /// concurrently by other mappings of the same pages, and stops being valid once
    /// [`MemoryMapping::munmap`] ran or protection is removed.
    pub fn local_ptr(&self) -> Option<NonNull<u8>> {
        if self.task.namespaces().address_space != crate::local::local_namespaces().address_space {
            return None;
        }
        NonNull::new(self.mapping.addr.as_u64() as usize as *mut u8)
    }

    /// The near address and length of `len` bytes at `offset`, if inside the mapping and
    /// `offset` is page aligned.
    fn range(&self, what: &'static str, offset: usize, len: usize) -> Result<near::Address> {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > self.mapping.len) {
            return Err(Error::invalid(
                what,
                format!(
                    "{len} bytes at offset {offset} are not inside the {}-byte mapping",
                    self.mapping.len
                ),
            ));
        }
        if !offset.is_multiple_of(PAGE) {
            return Err(Error::invalid(
                what,
                format!("offset {offset} is not a multiple of the page size {PAGE}"),
            ));
        }
        self.mapping
            .addr
            .checked_add(offset as u64)
            .ok_or_else(|| Error::invalid(what, "address overflow"))
    }

    /// `mprotect(addr, len, prot)` — changes the protection of the whole mapping.
    ///
    /// # Errors
    /// `EACCES` (for example `PROT::WRITE` on a shared mapping of a read-only fd),
    /// `EINVAL`, `ENOMEM`. See mprotect(2).
    pub async fn mprotect(&self, prot: PROT) -> Result<()> {
        self.mprotect_range(0, self.mapping.len, prot).await
    }

    /// `mprotect(addr + offset, len, prot)` — changes the protection of part of the
    /// mapping.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the range is not inside the mapping or `offset` is not
    /// page aligned; otherwise as [`MemoryMapping::mprotect`].
    pub async fn mprotect_range(&self, offset: usize, len: usize, prot: PROT) -> Result<()> {
        let addr = self.range("mprotect", offset, len)?;
        let task = &self.task;
        task.prepare().await;
        // SAFETY: the range is inside this mapping, which this handle owns: no Pointer or
        // other handle refers to it, so only the owner's own raw accesses are affected.
        unsafe { near::mprotect(task.sysif(), addr, len, prot) }
            .await
            .map_err(task.error("mprotect"))
    }

    /// `madvise(addr, len, advice)` — gives advice about the whole mapping (`MADV::REMOVE`
    /// or `MADV::DONTNEED` discard its contents).
    ///
    /// # Errors
    /// `EACCES`, `EAGAIN`, `EINVAL` (for example `REMOVE` on private memory), `EIO`,
    /// `ENOMEM`, `EPERM`. See madvise(2).
    pub async fn madvise(&self, advice: MADV) -> Result<()> {
        self.madvise_range(0, self.mapping.len, advice).await
    }

    /// `madvise(addr + offset, len, advice)` — gives advice about part of the mapping.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the range is not inside the mapping or `offset` is not
    /// page aligned; otherwise as [`MemoryMapping::madvise`].
    pub async fn madvise_range(&self, offset: usize, len: usize, advice: MADV) -> Result<()> {
        let addr = self.range("madvise", offset, len)?;
        let task = &self.task;
        task.prepare().await;
        // SAFETY: the range is inside this mapping, which this handle owns; advice that
        // discards contents affects only memory no Pointer refers to.
        unsafe { near::madvise(task.sysif(), addr, len, advice) }
            .await
            .map_err(task.error("madvise"))
    }

    /// `munmap(addr, len)` — unmaps the mapping.
    ///
    /// # Errors
    /// `EINVAL`. If the syscall failed or its connection was lost, the mapping may still
    /// exist and is leaked.
    pub async fn munmap(mut self) -> Result<()> {
        let task = self.task.clone();
        task.prepare().await;
        // Whatever happens now, this handle no longer owns a usable range.
        self.unmapped = true;
        // SAFETY: this handle owned the mapping and is consumed: nothing refers to the
        // range any more.
        unsafe { near::munmap(task.sysif(), self.mapping) }
            .await
            .map_err(task.error("munmap"))
    }
}

impl Task {
    /// `mmap(NULL, len, prot, flags, fd, offset)` — maps `len` bytes of `fd` from `offset`
    /// (with `fd = None` and `MAP::ANONYMOUS`, fresh zeroed memory) somewhere in the task's
    /// address space.
    ///
    /// `MAP::FIXED` is refused: it would replace whatever is mapped there, including
    /// memory this library uses. For a mapping at a chosen address, use
    /// [`mmap_at`](Self::mmap_at), which never replaces anything.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// use rsyscall_near::{MAP, PROT};
    /// let task = Task::local();
    /// let prot = PROT::READ | PROT::WRITE;
    /// let map = task.mmap(8192, prot, MAP::PRIVATE | MAP::ANONYMOUS, None, 0).await?;
    /// assert_eq!(map.len(), 8192);
    /// assert_eq!(map.addr().as_u64() % 4096, 0);
    /// assert!(map.local_ptr().is_some(), "the local task's mappings are in our address space");
    /// map.munmap().await?;
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `MAP::FIXED`/`MAP::FIXED_NOREPLACE`, an fd together
    /// with `MAP::ANONYMOUS`, no fd without it, or an offset above `i64::MAX`;
    /// [`Error::Mismatch`](crate::Error::Mismatch) for an fd of another table; `EACCES`,
    /// `EAGAIN`, `EBADF`, `EINVAL` (zero length, unaligned offset, neither or both of
    /// `SHARED` and `PRIVATE`), `ENODEV`, `ENOMEM`, `EPERM`... See mmap(2).
    pub async fn mmap(
        &self,
        len: usize,
        prot: PROT,
        flags: MAP,
        fd: Option<&FileDescriptor>,
        offset: u64,
    ) -> Result<MemoryMapping> {
        let nfd = self.check_mmap_args(flags, fd, offset)?;
        // SAFETY: without MAP_FIXED (refused above) and with no hint, the kernel picks an
        // unused range, so nothing existing is replaced.
        unsafe { self.map(near::Address::NULL, len, prot, flags, nfd, offset) }.await
    }

    /// `mmap(addr, len, prot, flags | MAP_FIXED_NOREPLACE, fd, offset)` — maps exactly at
    /// `addr`, or not at all: if anything already occupies part of the range, the call
    /// fails with `EEXIST` and nothing is replaced.
    ///
    /// On kernels older than 4.17, which ignore `MAP_FIXED_NOREPLACE` and treat `addr` as
    /// a hint, a mapping placed elsewhere is unmapped again and `EEXIST` is returned, so
    /// the result is the same everywhere.
    ///
    /// # Errors
    /// As [`mmap`](Self::mmap), plus [`Error::InvalidArgument`] for an `addr` that is not
    /// page-aligned, and `EEXIST` when the range is (partly) in use.
    pub async fn mmap_at(
        &self,
        addr: near::Address,
        len: usize,
        prot: PROT,
        flags: MAP,
        fd: Option<&FileDescriptor>,
        offset: u64,
    ) -> Result<MemoryMapping> {
        let nfd = self.check_mmap_args(flags, fd, offset)?;
        if !addr.as_u64().is_multiple_of(PAGE as u64) || addr == near::Address::NULL {
            return Err(Error::invalid(
                "mmap",
                format!("address {:#x} is null or not page-aligned", addr.as_u64()),
            ));
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; an old kernel
        // that ignores it treats `addr` as a hint, which also replaces nothing.
        let mapping =
            unsafe { self.map(addr, len, prot, flags | MAP::FIXED_NOREPLACE, nfd, offset) }.await?;
        if mapping.addr() != addr {
            // An old kernel placed it elsewhere: the range was in use.
            mapping.munmap().await?;
            return Err(self.error("mmap")(near::SyscallError::Errno(
                near::Errno::EEXIST,
            )));
        }
        Ok(mapping)
    }

    /// The checks `mmap` and `mmap_at` share; returns the near fd.
    fn check_mmap_args(
        &self,
        flags: MAP,
        fd: Option<&FileDescriptor>,
        offset: u64,
    ) -> Result<Option<near::FileDescriptor>> {
        if flags.intersects(MAP::FIXED | MAP::FIXED_NOREPLACE) {
            return Err(Error::invalid(
                "mmap",
                format!("flags {flags:?}: fixed mappings could replace memory in use"),
            ));
        }
        let nfd = fd.map(|fd| self.check_fd(fd)).transpose()?;
        match (nfd.is_some(), flags.contains(MAP::ANONYMOUS)) {
            (true, true) => Err(Error::invalid("mmap", "an anonymous mapping takes no fd")),
            (false, false) => Err(Error::invalid(
                "mmap",
                "a mapping without MAP::ANONYMOUS needs an fd",
            )),
            _ if i64::try_from(offset).is_err() => Err(Error::invalid(
                "mmap",
                format!("offset {offset} is negative as an off_t"),
            )),
            _ => Ok(nfd),
        }
    }

    /// The mmap syscall, after the queued closes, as an owned mapping.
    ///
    /// # Safety
    /// As [`near::mmap`]: the flags and hint must not replace memory in use.
    async unsafe fn map(
        &self,
        addr: near::Address,
        len: usize,
        prot: PROT,
        flags: MAP,
        fd: Option<near::FileDescriptor>,
        offset: u64,
    ) -> Result<MemoryMapping> {
        self.prepare().await;
        // SAFETY: forwarded from the caller.
        let mapping = unsafe { near::mmap(self.sysif(), addr, len, prot, flags, fd, offset) }
            .await
            .map_err(self.error("mmap"))?;
        Ok(MemoryMapping {
            task: self.clone(),
            mapping,
            unmapped: false,
        })
    }
}

impl FileDescriptor {
    /// `mmap(NULL, len, prot, flags, fd, offset)` — maps `len` bytes of this file from
    /// `offset`; see [`Task::mmap`].
    ///
    /// # Errors
    /// As [`Task::mmap`].
    pub async fn mmap(
        &self,
        len: usize,
        prot: PROT,
        flags: MAP,
        offset: u64,
    ) -> Result<MemoryMapping> {
        self.task().mmap(len, prot, flags, Some(self), offset).await
    }
}
