//! `Transport`: how the bytes of an address space are read and written from here.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use rsyscall_near::{Address, SyscallError};

use super::copy;

/// A boxed, `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reads and writes the memory of one address space: directly for the local one, over a
/// connection (PROTOCOL.md section 5) for others.
pub trait Transport: Send + Sync + fmt::Debug {
    /// Copies `data` to `dest`.
    ///
    /// # Safety
    /// `dest..dest + data.len()` must be memory of this transport's address space that the
    /// caller owns (an allocation nobody else reads or writes meanwhile).
    unsafe fn write<'a>(
        &'a self,
        dest: Address,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<(), SyscallError>>;

    /// Copies `len` bytes from `src`.
    ///
    /// # Safety
    /// As for [`Transport::write`], for `src..src + len`.
    unsafe fn read(&self, src: Address, len: usize)
    -> BoxFuture<'_, Result<Vec<u8>, SyscallError>>;
}

/// The transport of the local address space: plain copies.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalTransport;

impl Transport for LocalTransport {
    unsafe fn write<'a>(
        &'a self,
        dest: Address,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<(), SyscallError>> {
        // SAFETY: the caller owns the destination range, which is local memory.
        unsafe { copy::write(dest, data) };
        Box::pin(std::future::ready(Ok(())))
    }

    unsafe fn read(
        &self,
        src: Address,
        len: usize,
    ) -> BoxFuture<'_, Result<Vec<u8>, SyscallError>> {
        let mut out = vec![0u8; len];
        // SAFETY: the caller owns the source range, which is local memory.
        unsafe { copy::read(src, &mut out) };
        Box::pin(std::future::ready(Ok(out)))
    }
}
