//! Identity and limit syscalls: uids, gids, groups, capabilities, rlimits, affinity.

use super::call;
use crate::{Address, Pid, SyscallError, SyscallInterface};

/// The kernel's `NGROUPS_MAX`: the most supplementary groups a process can have.
pub const NGROUPS_MAX: usize = 65536;

/// A resource of `prlimit64(2)`/`getrlimit(2)`/`setrlimit(2)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u32)]
#[allow(missing_docs)]
#[allow(clippy::unnecessary_cast)] // the constants are u32 on glibc, i32 elsewhere
pub enum RLIMIT {
    CPU = libc::RLIMIT_CPU as u32,
    FSIZE = libc::RLIMIT_FSIZE as u32,
    DATA = libc::RLIMIT_DATA as u32,
    STACK = libc::RLIMIT_STACK as u32,
    CORE = libc::RLIMIT_CORE as u32,
    RSS = libc::RLIMIT_RSS as u32,
    NPROC = libc::RLIMIT_NPROC as u32,
    NOFILE = libc::RLIMIT_NOFILE as u32,
    MEMLOCK = libc::RLIMIT_MEMLOCK as u32,
    AS = libc::RLIMIT_AS as u32,
    LOCKS = libc::RLIMIT_LOCKS as u32,
    SIGPENDING = libc::RLIMIT_SIGPENDING as u32,
    MSGQUEUE = libc::RLIMIT_MSGQUEUE as u32,
    NICE = libc::RLIMIT_NICE as u32,
    RTPRIO = libc::RLIMIT_RTPRIO as u32,
    RTTIME = libc::RLIMIT_RTTIME as u32,
}

/// A capability number (`CAP_*` of `<linux/capability.h>`), for `capget(2)`/`capset(2)`
/// bit masks and `prctl(PR_CAP_AMBIENT, ...)`.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability(u32);

macro_rules! capabilities {
    ($($name:ident = $n:expr),* $(,)?) => {
        #[allow(missing_docs)]
        impl Capability {
            $(pub const $name: Capability = Capability($n);)*
            const NAMES: &'static [(&'static str, u32)] = &[$((stringify!($name), $n)),*];
        }
    };
}
capabilities!(
    CHOWN = 0,
    DAC_OVERRIDE = 1,
    DAC_READ_SEARCH = 2,
    FOWNER = 3,
    FSETID = 4,
    KILL = 5,
    SETGID = 6,
    SETUID = 7,
    SETPCAP = 8,
    LINUX_IMMUTABLE = 9,
    NET_BIND_SERVICE = 10,
    NET_BROADCAST = 11,
    NET_ADMIN = 12,
    NET_RAW = 13,
    IPC_LOCK = 14,
    IPC_OWNER = 15,
    SYS_MODULE = 16,
    SYS_RAWIO = 17,
    SYS_CHROOT = 18,
    SYS_PTRACE = 19,
    SYS_PACCT = 20,
    SYS_ADMIN = 21,
    SYS_BOOT = 22,
    SYS_NICE = 23,
    SYS_RESOURCE = 24,
    SYS_TIME = 25,
    SYS_TTY_CONFIG = 26,
    MKNOD = 27,
    LEASE = 28,
    AUDIT_WRITE = 29,
    AUDIT_CONTROL = 30,
    SETFCAP = 31,
    MAC_OVERRIDE = 32,
    MAC_ADMIN = 33,
    SYSLOG = 34,
    WAKE_ALARM = 35,
    BLOCK_SUSPEND = 36,
    AUDIT_READ = 37,
    PERFMON = 38,
    BPF = 39,
    CHECKPOINT_RESTORE = 40,
);

impl Capability {
    /// The capability with number `n`, if it fits the 64-bit masks of `capget(2)`.
    pub const fn new(n: u32) -> Option<Capability> {
        if n < 64 { Some(Capability(n)) } else { None }
    }
    /// The number.
    pub const fn as_raw(self) -> u32 {
        self.0
    }
    /// The bit of this capability in a 64-bit mask.
    pub const fn bit(self) -> u64 {
        1 << self.0
    }
}

impl std::fmt::Debug for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Self::NAMES.iter().find(|(_, v)| *v == self.0) {
            Some((n, _)) => write!(f, "CAP_{n}"),
            None => write!(f, "capability {}", self.0),
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// `getuid()` — the real user id of the target. See getuid(2).
///
/// # Errors
/// Only connection errors.
pub async fn getuid(sysif: &dyn SyscallInterface) -> Result<u32, SyscallError> {
    // SAFETY: getuid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_getuid, []) }.await
}

/// `geteuid()` — the effective user id of the target. See getuid(2).
///
/// # Errors
/// Only connection errors.
pub async fn geteuid(sysif: &dyn SyscallInterface) -> Result<u32, SyscallError> {
    // SAFETY: geteuid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_geteuid, []) }.await
}

/// `getgid()` — the real group id of the target. See getgid(2).
///
/// # Errors
/// Only connection errors.
pub async fn getgid(sysif: &dyn SyscallInterface) -> Result<u32, SyscallError> {
    // SAFETY: getgid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_getgid, []) }.await
}

/// `getegid()` — the effective group id of the target. See getgid(2).
///
/// # Errors
/// Only connection errors.
pub async fn getegid(sysif: &dyn SyscallInterface) -> Result<u32, SyscallError> {
    // SAFETY: getegid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_getegid, []) }.await
}

fn opt_id(id: Option<u32>) -> i64 {
    id.map_or(-1i64 as u32 as i64, i64::from)
}

/// `setuid(uid)` — sets the user ids of the calling thread of the target (all of them
/// with `CAP_SETUID`, else only the effective one).
///
/// Affects only the thread that runs it: the kernel keeps credentials per thread (libc
/// wrappers broadcast to all threads; this does not).
///
/// # Errors
/// `EINVAL`, `EPERM`, `EAGAIN`. See setuid(2).
pub async fn setuid(sysif: &dyn SyscallInterface, uid: u32) -> Result<(), SyscallError> {
    // SAFETY: setuid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_setuid, [i64::from(uid)]) }.await
}

/// `setgid(gid)` — sets the group ids of the calling thread, like [`setuid`].
///
/// # Errors
/// `EINVAL`, `EPERM`. See setgid(2).
pub async fn setgid(sysif: &dyn SyscallInterface, gid: u32) -> Result<(), SyscallError> {
    // SAFETY: setgid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_setgid, [i64::from(gid)]) }.await
}

/// `setresuid(ruid, euid, suid)` — sets the real, effective and saved user ids; `None`
/// leaves one unchanged.
///
/// # Errors
/// `EAGAIN`, `EINVAL`, `EPERM`. See setresuid(2).
pub async fn setresuid(
    sysif: &dyn SyscallInterface,
    ruid: Option<u32>,
    euid: Option<u32>,
    suid: Option<u32>,
) -> Result<(), SyscallError> {
    let args = [opt_id(ruid), opt_id(euid), opt_id(suid)];
    // SAFETY: setresuid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_setresuid, args) }.await
}

/// `setresgid(rgid, egid, sgid)` — sets the real, effective and saved group ids; `None`
/// leaves one unchanged.
///
/// # Errors
/// `EINVAL`, `EPERM`. See setresgid(2).
pub async fn setresgid(
    sysif: &dyn SyscallInterface,
    rgid: Option<u32>,
    egid: Option<u32>,
    sgid: Option<u32>,
) -> Result<(), SyscallError> {
    let args = [opt_id(rgid), opt_id(egid), opt_id(sgid)];
    // SAFETY: setresgid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_setresgid, args) }.await
}

/// `getgroups(size, list)` — writes up to `size` supplementary group ids at `list`;
/// with `size` 0, only returns how many there are.
///
/// # Safety
/// `list` must be writable for `size` `u32`s in the target's address space.
///
/// # Errors
/// `EINVAL` if `size` is non-zero and too small, `EFAULT`. See getgroups(2).
pub async unsafe fn getgroups(
    sysif: &dyn SyscallInterface,
    size: usize,
    list: Address,
) -> Result<usize, SyscallError> {
    // SAFETY: the caller guarantees list.
    unsafe { call(sysif, libc::SYS_getgroups, [size as i64, list.arg()]) }.await
}

/// `setgroups(size, list)` — sets the supplementary group ids of the calling thread to the
/// `size` `u32`s at `list` (read only).
///
/// # Errors
/// `EFAULT`, `EINVAL`, `ENOMEM`, `EPERM`. See setgroups(2).
pub async fn setgroups(
    sysif: &dyn SyscallInterface,
    size: usize,
    list: Address,
) -> Result<(), SyscallError> {
    // SAFETY: setgroups only reads memory (a bad address is EFAULT).
    unsafe { call(sysif, libc::SYS_setgroups, [size as i64, list.arg()]) }.await
}

/// `capget(hdrp, datap)` — reads the capability sets of the thread `hdrp` names.
///
/// # Safety
/// `hdrp` must be a `struct __user_cap_header_struct` (8 bytes, which the kernel rewrites
/// with its preferred version on a version mismatch) and `datap` (if not null) writable for
/// as many `struct __user_cap_data_struct` (12 bytes each) as that version uses (two for
/// version 3), in the target's address space.
///
/// # Errors
/// `EFAULT`, `EINVAL` (unknown version), `ESRCH`. See capget(2).
pub async unsafe fn capget(
    sysif: &dyn SyscallInterface,
    hdrp: Address,
    datap: Address,
) -> Result<(), SyscallError> {
    // SAFETY: the caller guarantees hdrp and datap.
    unsafe { call(sysif, libc::SYS_capget, [hdrp.arg(), datap.arg()]) }.await
}

/// `capset(hdrp, datap)` — sets the capability sets of the calling thread.
///
/// # Safety
/// As for [`capget`] (the kernel may rewrite the header's version; it only reads `datap`).
///
/// # Errors
/// `EFAULT`, `EINVAL`, `EPERM`. See capset(2).
pub async unsafe fn capset(
    sysif: &dyn SyscallInterface,
    hdrp: Address,
    datap: Address,
) -> Result<(), SyscallError> {
    // SAFETY: the caller guarantees hdrp and datap.
    unsafe { call(sysif, libc::SYS_capset, [hdrp.arg(), datap.arg()]) }.await
}

/// `prlimit64(pid, resource, new_limit, old_limit)` — sets and/or reads a resource limit
/// of process `pid` (0: the caller).
///
/// # Safety
/// `new_limit` (if not null) must be readable and `old_limit` (if not null) writable for a
/// `struct rlimit64` (16 bytes) in the target's address space.
///
/// # Errors
/// `EFAULT`, `EINVAL`, `EPERM`, `ESRCH`. See prlimit(2).
pub async unsafe fn prlimit64(
    sysif: &dyn SyscallInterface,
    pid: Pid,
    resource: RLIMIT,
    new_limit: Address,
    old_limit: Address,
) -> Result<(), SyscallError> {
    let args = [
        pid.arg(),
        resource as u32 as i64,
        new_limit.arg(),
        old_limit.arg(),
    ];
    // SAFETY: the caller guarantees both limits.
    unsafe { call(sysif, libc::SYS_prlimit64, args) }.await
}

/// `sched_getaffinity(pid, len, mask)` — writes the CPU affinity mask of thread `pid`
/// (0: the caller) at `mask`; returns how many bytes the kernel wrote.
///
/// # Safety
/// `mask` must be writable for `len` bytes in the target's address space.
///
/// # Errors
/// `EFAULT`, `EINVAL` (`len` smaller than the kernel's mask or not a multiple of 8),
/// `ESRCH`. See sched_getaffinity(2).
pub async unsafe fn sched_getaffinity(
    sysif: &dyn SyscallInterface,
    pid: Pid,
    len: usize,
    mask: Address,
) -> Result<usize, SyscallError> {
    let args = [pid.arg(), len as i64, mask.arg()];
    // SAFETY: the caller guarantees mask.
    unsafe { call(sysif, libc::SYS_sched_getaffinity, args) }.await
}

/// `sched_setaffinity(pid, len, mask)` — sets the CPU affinity mask of thread `pid` (0: the
/// caller) from the `len` bytes at `mask` (read only).
///
/// # Errors
/// `EFAULT`, `EINVAL` (no allowed CPU in the mask), `EPERM`, `ESRCH`. See
/// sched_setaffinity(2).
pub async fn sched_setaffinity(
    sysif: &dyn SyscallInterface,
    pid: Pid,
    len: usize,
    mask: Address,
) -> Result<(), SyscallError> {
    let args = [pid.arg(), len as i64, mask.arg()];
    // SAFETY: sched_setaffinity only reads memory (a bad address is EFAULT).
    unsafe { call(sysif, libc::SYS_sched_setaffinity, args) }.await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalSyscall;

    #[test]
    fn ids_match_libc() {
        // SAFETY: getuid/geteuid have no preconditions.
        let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
        let got = async_io::block_on(async {
            (
                getuid(&LocalSyscall).await.expect("getuid"),
                geteuid(&LocalSyscall).await.expect("geteuid"),
            )
        });
        assert_eq!(got, (uid, euid));
        assert_eq!(format!("{:?}", Capability::SYS_ADMIN), "CAP_SYS_ADMIN");
        assert_eq!(Capability::new(64), None);
        assert_eq!(Capability::SYS_CHROOT.bit(), 1 << 18);
    }
}
