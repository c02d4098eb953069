//! Process syscalls: ids, exit, signals.

use super::call;
use crate::{Pid, SyscallError, SyscallInterface};

/// `getpid()` — the pid of the target process, in its own pid namespace.
///
/// # Errors
/// Only connection errors. See getpid(2).
pub async fn getpid(sysif: &dyn SyscallInterface) -> Result<Pid, SyscallError> {
    // SAFETY: getpid touches no memory and no fds.
    let ret = unsafe { call(sysif, libc::SYS_getpid, []) }.await?;
    Ok(Pid::new(ret as i32))
}

#[cfg(test)]
mod tests {
    use crate::LocalSyscall;

    #[test]
    fn local_getpid_matches_std() {
        let pid = async_io::block_on(super::getpid(&LocalSyscall)).expect("getpid");
        assert_eq!(pid.as_raw() as u32, std::process::id());
    }
}
