//! The in-band memory transport of PROTOCOL.md section 5, for address spaces this process
//! cannot touch directly: [`SyscallConnection`] as a [`Transport`].
//!
//! # Safety
//! Forwards the transport's unsafe methods to the connection's in-band memory methods,
//! whose duties are the same.
#![allow(unsafe_code)]

use rsyscall_handle::{BoxFuture, Transport};
use rsyscall_near::{Address, SyscallError};

use crate::syscall_connection::SyscallConnection;

impl Transport for SyscallConnection {
    unsafe fn write<'a>(
        &'a self,
        dest: Address,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<(), SyscallError>> {
        // SAFETY: the caller owns the destination range in the server's address space.
        Box::pin(unsafe { self.write_memory(dest, data) })
    }

    unsafe fn read(
        &self,
        src: Address,
        len: usize,
    ) -> BoxFuture<'_, Result<Vec<u8>, SyscallError>> {
        // SAFETY: the caller owns the source range in the server's address space.
        Box::pin(unsafe { self.read_memory(src, len) })
    }
}
