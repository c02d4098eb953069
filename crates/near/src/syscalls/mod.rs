//! Raw syscall wrappers, one module per area, each a thin async function over
//! [`SyscallInterface`].

mod events;
mod fd;
mod fs;
mod identity;
mod mem;
mod ns;
mod process;
mod socket;

pub use events::*;
pub use fd::*;
pub use fs::*;
pub use identity::*;
pub use mem::*;
pub use ns::*;
pub use process::*;
pub use socket::*;

use crate::{Request, SyscallInterface, SyscallResult};

/// Sends `nr` with `args` (padded with zeros) through `sysif`.
///
/// # Safety
/// As for [`SyscallInterface::syscall`].
#[inline]
pub(crate) async unsafe fn call<const N: usize>(
    sysif: &dyn SyscallInterface,
    nr: i64,
    args: [i64; N],
) -> SyscallResult {
    let mut full = [0i64; 6];
    full[..N].copy_from_slice(&args);
    // SAFETY: forwarded from the caller.
    unsafe { sysif.syscall(Request::new(nr, full)) }.await
}
