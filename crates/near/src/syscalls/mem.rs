//! Memory mapping syscalls.

use super::call;
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
    let fd = fd.map(FileDescriptor::arg).unwrap_or(-1);
    let args = [
        addr.arg(),
        length as i64,
        prot.bits() as i64,
        flags.bits() as i64,
        fd,
        offset as i64,
    ];
    // SAFETY: the caller owns the range for fixed mappings.
    let ret = unsafe { call(sysif, libc::SYS_mmap, args) }.await?;
    Ok(MemoryMapping {
        addr: Address::new(ret as u64),
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
    unsafe { call(sysif, libc::SYS_munmap, args) }.await?;
    Ok(())
}
