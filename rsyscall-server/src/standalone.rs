//! The panic handler of the standalone builds (the static helper binaries and
//! `librsyscall.so`), which have no `std` to provide one.
//!
//! The server is written to have no panic paths. The handler calls a symbol that is defined
//! nowhere, so if any panic path survives optimisation the link fails, instead of a helper
//! binary that could panic at run time.
//!
//! # Safety
//! The only unsafe operation is the call to the undefined function, which a successful link
//! proves is never emitted.
#![allow(unsafe_code)]

unsafe extern "C" {
    /// Deliberately undefined: referring to it makes the link fail.
    fn rsyscall_server_panic_is_unreachable() -> !;
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: never executed: a build in which this call survives does not link.
    unsafe { rsyscall_server_panic_is_unreachable() }
}
