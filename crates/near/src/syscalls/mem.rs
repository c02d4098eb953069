//! Memory mapping syscalls.

use super::{call, opt_fd_arg};
use crate::{Address, FileDescriptor, MAP, MemoryMapping, PROT, SyscallError, SyscallInterface};

/// `mmap(addr, length, prot, flags, fd, offset)` — maps memory.
///
/// # Safety
/// With `MAP::FIXED` (or a non-null hint the kernel honours) the new mapping may replace
/// existing ones: the caller must own the range. Without it, mmap is safe.
///
/// # Errors
/// `EACCES`, `EBADF`, `EINVAL`, `ENOMEM` and others. See mmap(2).
pub async unsafe fn mmap(
    sysif: &dyn SyscallInterface,
    addr: Address,
    length: usize,
    prot: PROT,
    flags: MAP,
    fd: Option<FileDescriptor>,
    offset: u64,
) -> Result<MemoryMapping, SyscallError> {
    let args = [
        addr.arg(),
        length as i64,
        prot.bits() as i64,
        flags.bits() as i64,
        opt_fd_arg(fd),
        offset as i64,
    ];
    // SAFETY: the caller owns the range for fixed mappings.
    let addr: u64 = unsafe { call(sysif, libc::SYS_mmap, args) }.await?;
    Ok(MemoryMapping {
        addr: Address::new(addr),
        len: length,
    })
}

/// `munmap(addr, length)` — unmaps memory.
///
/// # Safety
/// Nothing may use the range afterwards: the caller must own it.
///
/// # Errors
/// `EINVAL`. See munmap(2).
pub async unsafe fn munmap(
    sysif: &dyn SyscallInterface,
    mapping: MemoryMapping,
) -> Result<(), SyscallError> {
    let args = [mapping.addr.arg(), mapping.len as i64];
    // SAFETY: the caller owns the mapping.
    unsafe { call(sysif, libc::SYS_munmap, args) }.await
}

/// `mprotect(addr, length, prot)` — changes the protection of pages.
///
/// # Safety
/// Removing access from memory that other code uses makes that code fault: the caller must
/// own the range.
///
/// # Errors
/// `EACCES`, `EINVAL`, `ENOMEM` (part of the range is not mapped). See mprotect(2).
pub async unsafe fn mprotect(
    sysif: &dyn SyscallInterface,
    addr: Address,
    length: usize,
    prot: PROT,
) -> Result<(), SyscallError> {
    let args = [addr.arg(), length as i64, prot.bits() as i64];
    // SAFETY: the caller owns the range.
    unsafe { call(sysif, libc::SYS_mprotect, args) }.await
}

/// Advice for `madvise(2)`: one value per call, so an enum rather than a flag set.
///
/// `HWPOISON` and `SOFT_OFFLINE` (testing features that damage pages) are left out.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(i32)]
pub enum MADV {
    /// No special treatment.
    NORMAL = libc::MADV_NORMAL,
    /// Expect random page references.
    RANDOM = libc::MADV_RANDOM,
    /// Expect sequential page references.
    SEQUENTIAL = libc::MADV_SEQUENTIAL,
    /// Expect access in the near future.
    WILLNEED = libc::MADV_WILLNEED,
    /// Do not expect access soon: private anonymous pages read back as zeros afterwards,
    /// shared and file pages are reloaded from their backing.
    DONTNEED = libc::MADV_DONTNEED,
    /// The pages may be freed lazily (private anonymous memory only).
    FREE = libc::MADV_FREE,
    /// Frees the pages and their backing store (shared memory, tmpfs, some filesystems):
    /// reads give zeros afterwards, in every mapping of that memory.
    REMOVE = libc::MADV_REMOVE,
    /// Do not make the pages available to the child after a fork.
    DONTFORK = libc::MADV_DONTFORK,
    /// Undo `DONTFORK`.
    DOFORK = libc::MADV_DOFORK,
    /// Candidate for kernel same-page merging.
    MERGEABLE = libc::MADV_MERGEABLE,
    /// Undo `MERGEABLE`.
    UNMERGEABLE = libc::MADV_UNMERGEABLE,
    /// Use transparent huge pages.
    HUGEPAGE = libc::MADV_HUGEPAGE,
    /// Do not use transparent huge pages.
    NOHUGEPAGE = libc::MADV_NOHUGEPAGE,
    /// Leave out of core dumps.
    DONTDUMP = libc::MADV_DONTDUMP,
    /// Undo `DONTDUMP`.
    DODUMP = libc::MADV_DODUMP,
    /// Zero-fill the range in the child after a fork.
    WIPEONFORK = libc::MADV_WIPEONFORK,
    /// Undo `WIPEONFORK`.
    KEEPONFORK = libc::MADV_KEEPONFORK,
    /// Deactivate the pages (reclaim them later).
    COLD = libc::MADV_COLD,
    /// Reclaim the pages now.
    PAGEOUT = libc::MADV_PAGEOUT,
    /// Populate (prefault) page tables readable.
    POPULATE_READ = libc::MADV_POPULATE_READ,
    /// Populate (prefault) page tables writable.
    POPULATE_WRITE = libc::MADV_POPULATE_WRITE,
}

/// `madvise(addr, length, advice)` — gives advice about the use of memory.
///
/// # Safety
/// Some advice changes what the memory holds (`DONTNEED`, `FREE`, `REMOVE` zero it,
/// `WIPEONFORK` zeroes it in children): the caller must own the range.
///
/// # Errors
/// `EACCES`, `EAGAIN`, `EBADF`, `EINVAL`, `EIO`, `ENOMEM`, `EPERM`. See madvise(2).
pub async unsafe fn madvise(
    sysif: &dyn SyscallInterface,
    addr: Address,
    length: usize,
    advice: MADV,
) -> Result<(), SyscallError> {
    let args = [addr.arg(), length as i64, advice as i64];
    // SAFETY: the caller owns the range.
    unsafe { call(sysif, libc::SYS_madvise, args) }.await
}
