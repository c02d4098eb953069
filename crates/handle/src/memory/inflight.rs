//! `InFlight`: memory lent to a syscall that may still be running.
//!
//! # Safety
//! The only unsafe code moves the value out of a `ManuallyDrop` exactly once, in `done`,
//! which consumes the guard and skips its destructor.
#![allow(unsafe_code)]

use std::mem::ManuallyDrop;

use rsyscall_near::SyscallError;

/// Memory (an [`Allocation`](super::Allocation) or a [`Pointer`](crate::Pointer)) lent to a
/// syscall that may still be running.
///
/// If the syscall's future is dropped before its response arrived, the memory is leaked
/// rather than reused while a remote kernel may still read or write it. Once the syscall
/// has completed, [`InFlight::settle`] (or [`InFlight::done`]) gives it back.
pub struct InFlight<P>(ManuallyDrop<P>);

impl<P> InFlight<P> {
    /// Lends `p` to a syscall.
    pub fn new(p: P) -> Self {
        InFlight(ManuallyDrop::new(p))
    }

    /// The lent memory.
    pub fn get(&self) -> &P {
        &self.0
    }

    /// The syscall is over: the memory is safe to use and free again.
    pub fn done(self) -> P {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its destructor never runs, so the value is
        // moved out exactly once.
        unsafe { ManuallyDrop::take(&mut this.0) }
    }

    /// The syscall returned `result`. If it completed (a value or an errno), the memory is
    /// returned with the value, or freed with the error. If the connection was lost, the
    /// syscall may still be running, so the memory is leaked.
    pub fn settle<T>(self, result: Result<T, SyscallError>) -> Result<(T, P), SyscallError> {
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

impl<P> Drop for InFlight<P> {
    fn drop(&mut self) {
        // Reached only when the syscall future was dropped (or the connection lost) before
        // the syscall was known to be over: leak the memory.
        log::debug!(
            "leaking a {}: its syscall may still be running",
            std::any::type_name::<P>()
        );
    }
}
