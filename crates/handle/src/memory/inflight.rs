//! `InFlight`: a buffer lent to a syscall that may still be running.
//!
//! # Safety
//! The only unsafe code moves the allocation out of a `ManuallyDrop` exactly once, in
//! `done`, which consumes the guard and skips its destructor.
#![allow(unsafe_code)]

use std::mem::ManuallyDrop;

use rsyscall_near::Address;

use super::Allocation;

/// Keeps a buffer the kernel may still write to alive if the syscall future is dropped
/// before its response arrived: the allocation is then leaked rather than reused under the
/// kernel's feet.
pub(crate) struct InFlight(ManuallyDrop<Allocation>);

impl InFlight {
    /// Lends `a` to a syscall.
    pub(crate) fn new(a: Allocation) -> Self {
        InFlight(ManuallyDrop::new(a))
    }

    /// The buffer's address.
    pub(crate) fn addr(&self) -> Address {
        self.0.addr()
    }

    /// The syscall is over: the allocation is safe to read and to free again.
    pub(crate) fn done(self) -> Allocation {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its destructor never runs, so the
        // allocation is moved out exactly once.
        unsafe { ManuallyDrop::take(&mut this.0) }
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
