//! `InFlight`: memory lent to a syscall that may still be running.
//!
//! # Safety
//! The only unsafe code moves the value out of a `ManuallyDrop` exactly once: in `done`,
//! which consumes the guard and skips its destructor, or in the destructor itself.
#![allow(unsafe_code)]

use std::mem::ManuallyDrop;
use std::sync::Arc;

use rsyscall_near::{SyscallError, SyscallInterface};

/// Memory (an [`Allocation`](super::Allocation) or a [`Pointer`](crate::Pointer)) lent to a
/// syscall that may still be running.
///
/// If the syscall's future is dropped before its response arrived, the memory is never
/// reused while a remote kernel may still read or write it: lent through
/// [`Task::lend`](crate::Task::lend), it goes to the task's syscall interface, which frees
/// it once every request sent so far was answered
/// ([`SyscallInterface::keep_until_answered`]: a connection that is lost first leaks it);
/// made with [`InFlight::new`], it is leaked. Once the syscall has completed,
/// [`InFlight::settle`] (or [`InFlight::done`]) gives it back.
pub struct InFlight<P> {
    value: ManuallyDrop<P>,
    /// Where the value goes if the guard is dropped.
    keeper: Option<Keeper<P>>,
}

/// The interface the syscall went through, and how to hand it a `P`.
struct Keeper<P> {
    sysif: Arc<dyn SyscallInterface>,
    hand_over: fn(P, &dyn SyscallInterface),
}

impl<P> InFlight<P> {
    /// Lends `p` to a syscall; dropped before the syscall is over, it leaks `p`.
    pub fn new(p: P) -> Self {
        InFlight {
            value: ManuallyDrop::new(p),
            keeper: None,
        }
    }

    /// Lends `p` to a syscall made through `sysif`; dropped before the syscall is over,
    /// it hands `p` to [`SyscallInterface::keep_until_answered`].
    pub fn lent_to(p: P, sysif: Arc<dyn SyscallInterface>) -> Self
    where
        P: Send + 'static,
    {
        fn hand_over<P: Send + 'static>(p: P, sysif: &dyn SyscallInterface) {
            sysif.keep_until_answered(Box::new(p));
        }
        InFlight {
            value: ManuallyDrop::new(p),
            keeper: Some(Keeper {
                sysif,
                hand_over: hand_over::<P>,
            }),
        }
    }

    /// The lent memory.
    pub fn get(&self) -> &P {
        &self.value
    }

    /// The syscall is over: the memory is safe to use and free again.
    pub fn done(self) -> P {
        let mut this = ManuallyDrop::new(self);
        drop(this.keeper.take());
        // SAFETY: `this` is never used again and its destructor never runs, so the value is
        // moved out exactly once.
        unsafe { ManuallyDrop::take(&mut this.value) }
    }

    /// The syscall returned `result`. If it completed (a value or an errno), the memory is
    /// returned with the value, or freed with the error. If the connection was lost, the
    /// syscall may still be running, so the memory is kept as when the guard is dropped.
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
        // the syscall was known to be over.
        match self.keeper.take() {
            Some(keeper) => {
                // SAFETY: the destructor runs once and `value` is not used after this.
                let p = unsafe { ManuallyDrop::take(&mut self.value) };
                (keeper.hand_over)(p, &*keeper.sysif);
            }
            None => log::debug!(
                "leaking a {}: its syscall may still be running",
                std::any::type_name::<P>()
            ),
        }
    }
}
