//! `InFlight`: a buffer lent to a syscall that may still be running.
//!
//! # Safety
//! The only unsafe code moves the allocation out of a `ManuallyDrop` exactly once, in
//! `done`, which consumes the guard and skips its destructor.
#![allow(unsafe_code)]

use std::mem::ManuallyDrop;

use rsyscall_near::{Address, SyscallError};

use super::Allocation;

/// A buffer lent to a syscall that may still be running.
///
/// If the syscall's future is dropped before its response arrived, the allocation is
/// leaked rather than reused while a remote kernel may still read or write it. Once the
/// syscall has completed, [`InFlight::settle`] (or [`InFlight::done`]) gives the allocation
/// back.
pub struct InFlight(ManuallyDrop<Allocation>);

impl InFlight {
    /// Lends `a` to a syscall.
    pub fn new(a: Allocation) -> Self {
        InFlight(ManuallyDrop::new(a))
    }

    /// The buffer's address.
    pub fn addr(&self) -> Address {
        self.0.addr()
    }

    /// The syscall is over: the allocation is safe to read and to free again.
    pub fn done(self) -> Allocation {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its destructor never runs, so the
        // allocation is moved out exactly once.
        unsafe { ManuallyDrop::take(&mut this.0) }
    }
}

impl InFlight {
    /// The syscall returned `result`. If it completed (a value or an errno), the buffer is
    /// returned with the value, or freed with the error. If the connection was lost, the
    /// syscall may still be running, so the buffer is leaked.
    pub fn settle<T>(
        self,
        result: Result<T, SyscallError>,
    ) -> Result<(T, Allocation), SyscallError> {
        match result {
            Ok(v) => Ok((v, self.done())),
            Err(SyscallError::Hangup) => Err(SyscallError::Hangup),
            Err(e) => {
                drop(self.done());
                Err(e)
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Reached only when the syscall future was dropped before `done`: leak the buffer.
        log::debug!(
            "leaking {:?}: its syscall was cancelled before it completed",
            *self.0
        );
    }
}
