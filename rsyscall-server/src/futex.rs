//! The futex helper of PROTOCOL.md section 4: a clone child that exits when another
//! child's `CLONE_CHILD_CLEARTID` futex word is cleared (on that child's exit or exec).
//!
//! Both variants run under the trampoline, which calls `exit(0)` when they return; they
//! never call `exit_group` (the address space is shared with the client).

use crate::sys;

/// Stops the calling process with `SIGSTOP`, then, once continued with `SIGCONT`, waits until
/// the 32-bit word at `futex_addr` no longer holds `value` and returns 0. The stop tells the
/// client the trampoline is done with the helper's stack image; a `SIGCONT` sent before
/// the stop is lost, so the client waits for the stop first.
///
/// This is the protocol's `futex_helper` (its address is in the symbol table). Returns
/// `-errno` if stopping fails or the futex wait fails with anything other than `EINTR` or
/// `EAGAIN` (for example `-EFAULT` for a bad address).
#[cfg_attr(
    rsyscall_standalone,
    allow(unsafe_code),
    unsafe(export_name = "rsyscall_futex_helper")
)]
pub extern "C" fn futex_helper(futex_addr: *const u32, value: u32) -> i64 {
    let ret = sys::stop_self();
    if ret < 0 {
        return ret;
    }
    futex_helper_nostop(futex_addr, value)
}

/// Like [`futex_helper`] without the `SIGSTOP`: waits until the 32-bit word at
/// `futex_addr` no longer holds `value`, then returns 0 (`-errno` on a failed wait other
/// than `EINTR`/`EAGAIN`). For clients that keep the helper's stack until the helper has
/// exited.
///
/// The word is only read, by the kernel (`FUTEX_WAIT`, shared, not private, so that the
/// kernel's wake on `CLONE_CHILD_CLEARTID` reaches it); wakeups are re-checked, so a
/// spurious `FUTEX_WAKE` does not end the wait.
pub extern "C" fn futex_helper_nostop(futex_addr: *const u32, value: u32) -> i64 {
    loop {
        let ret = sys::futex_wait(futex_addr, value);
        if ret == -sys::EAGAIN {
            // The word no longer holds `value`.
            return 0;
        } else if ret == 0 || ret == -sys::EINTR {
            // Woken (perhaps spuriously) or interrupted: check the word again.
            continue;
        } else {
            return ret;
        }
    }
}
