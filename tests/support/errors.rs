//! Checking the errors of failed calls, and a lock for tests that must not overlap.

use std::fmt::Debug;
use std::sync::{Mutex, MutexGuard};

use rsyscall::{Errno, Error};

/// The errno of a failed call (`None` for an error that is not a syscall's); panics if the
/// call succeeded.
pub fn errno<T: Debug>(r: Result<T, Error>) -> Option<Errno> {
    match r {
        Ok(v) => panic!("expected an errno, got Ok({v:?})"),
        Err(e) => e.errno(),
    }
}

/// Whether `r` is an [`Error::InvalidArgument`] (refused before anything was sent).
pub fn is_invalid<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::InvalidArgument { .. }))
}

/// Asserts that `r` failed with `errno`; `what` names the call in the panic message.
pub fn assert_errno<T: Debug>(r: Result<T, Error>, errno: Errno, what: &str) {
    match r {
        Err(e) => assert_eq!(e.errno(), Some(errno), "{what}: {e}"),
        Ok(v) => panic!("{what}: expected {errno:?}, got Ok({v:?})"),
    }
}

/// Asserts that `r` is an [`Error::InvalidArgument`], and returns its detail text.
pub fn assert_invalid<T: Debug>(r: Result<T, Error>, what: &str) -> String {
    match r {
        Err(Error::InvalidArgument { detail, .. }) => detail,
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Takes the lock that serializes the tests of one test binary which take it (each binary
/// links its own copy of this library, so the lock is per binary). A test that panicked
/// while holding it does not poison it for the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
