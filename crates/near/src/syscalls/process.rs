//! Process syscalls: ids, clone, exec, exit, signals, waiting, pidfds, prctl.

use super::{call, call_new_fd, call_no_response, dirfd_arg};
use crate::{
    Address, CLONE, FileDescriptor, IdType, Pid, Signal, SyscallError, SyscallInterface, W,
};

bitflags::bitflags! {
    /// Flags of `rt_sigaction(2)` (`sa_flags` of the kernel's `struct sigaction`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct SA: u64 {
        // libc's SA_* are c_int: through u32, so that SA_RESETHAND (bit 31) is not
        // sign-extended into the upper half.
        /// `SA_NOCLDSTOP`.
        const NOCLDSTOP = libc::SA_NOCLDSTOP as u32 as u64;
        /// `SA_NOCLDWAIT`.
        const NOCLDWAIT = libc::SA_NOCLDWAIT as u32 as u64;
        /// `SA_SIGINFO`.
        const SIGINFO = libc::SA_SIGINFO as u32 as u64;
        /// `SA_ONSTACK`.
        const ONSTACK = libc::SA_ONSTACK as u32 as u64;
        /// `SA_RESTART`.
        const RESTART = libc::SA_RESTART as u32 as u64;
        /// `SA_NODEFER`.
        const NODEFER = libc::SA_NODEFER as u32 as u64;
        /// `SA_RESETHAND`.
        const RESETHAND = libc::SA_RESETHAND as u32 as u64;
        /// `SA_RESTORER`: the libc crate does not define it for Linux (glibc keeps it
        /// private), so the value is the kernel's (`include/uapi/asm-generic/signal-defs.h`).
        const RESTORER = 0x0400_0000;
    }
}

bitflags::bitflags! {
    /// Flags of `execveat(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct EXECVEAT: i32 {
        /// Execute the file `dirfd` refers to when the path is empty.
        const EMPTY_PATH = libc::AT_EMPTY_PATH;
        /// Fail with `ELOOP` if the path names a symbolic link.
        const SYMLINK_NOFOLLOW = libc::AT_SYMLINK_NOFOLLOW;
    }
}

/// The longest name `PR_SET_NAME` keeps (the kernel's `TASK_COMM_LEN` is 16 with the NUL).
pub const TASK_COMM_MAX: usize = 15;

/// The size in bytes of the kernel's signal set (`kernel_sigset_t`, 64 signals on x86-64):
/// the `sigsetsize` of `rt_sigprocmask(2)` and `rt_sigaction(2)`, and the `sigsetsize` /
/// `sizemask` of `epoll_pwait(2)` and `signalfd4(2)`. Not libc's 128-byte `sigset_t`.
pub const KERNEL_SIGSET_SIZE: usize = 8;

/// What `rt_sigprocmask(2)` does with the given set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum SigprocmaskHow {
    /// Adds the set to the mask (`SIG_BLOCK`).
    Block = libc::SIG_BLOCK,
    /// Removes the set from the mask (`SIG_UNBLOCK`).
    Unblock = libc::SIG_UNBLOCK,
    /// Replaces the mask with the set (`SIG_SETMASK`).
    SetMask = libc::SIG_SETMASK,
}

/// The `which`/`who` pair of `getpriority(2)`/`setpriority(2)`; a zero id means the
/// caller (its process, process group or real user).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PrioWho {
    /// One process (`PRIO_PROCESS`).
    Process(Pid),
    /// Every process of a process group (`PRIO_PGRP`).
    ProcessGroup(Pid),
    /// Every process of a real user id (`PRIO_USER`).
    User(u32),
}

impl PrioWho {
    fn args(self) -> [i64; 2] {
        match self {
            PrioWho::Process(p) => [libc::PRIO_PROCESS as i64, p.arg()],
            PrioWho::ProcessGroup(p) => [libc::PRIO_PGRP as i64, p.arg()],
            PrioWho::User(u) => [libc::PRIO_USER as i64, u as i64],
        }
    }
}

/// `getpid()` — the pid of the target process, in its own pid namespace.
///
/// # Errors
/// Only connection errors. See getpid(2).
pub async fn getpid(sysif: &dyn SyscallInterface) -> Result<Pid, SyscallError> {
    // SAFETY: getpid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_getpid, []) }.await
}

/// `getppid()` — the pid of the target's parent, or 0 if the parent is outside its pid
/// namespace.
///
/// # Errors
/// Only connection errors. See getppid(2).
pub async fn getppid(sysif: &dyn SyscallInterface) -> Result<Pid, SyscallError> {
    // SAFETY: getppid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_getppid, []) }.await
}

/// `exit(status)` — ends the calling thread of the target (not `exit_group`).
///
/// Through a remote interface, success shows as the loss of the connection and is
/// returned as `Ok(())`.
///
/// # Safety
/// On the local interface this ends the calling thread without running destructors.
pub async unsafe fn exit(sysif: &dyn SyscallInterface, status: i32) -> Result<(), SyscallError> {
    // SAFETY: forwarded from the caller.
    unsafe { call_no_response(sysif, libc::SYS_exit, [status as i64]) }.await
}

/// The number a signal argument is passed as: 0 (the null signal) for `None`.
fn sig_arg(sig: Option<Signal>) -> i64 {
    sig.map_or(0, |s| s.as_raw() as i64)
}

/// `kill(pid, sig)` — sends `sig` to a process (or process group for negative `pid`).
/// `sig` is a [`Signal`] or an `Option<Signal>`; `None` is the null signal 0: nothing is
/// sent, the call only checks that the target exists and may be signalled.
///
/// Racy for anything but an unreaped child: the pid may have been reused.
///
/// # Errors
/// `ESRCH`, `EPERM`, `EINVAL`. See kill(2).
pub async fn kill(
    sysif: &dyn SyscallInterface,
    pid: Pid,
    sig: impl Into<Option<Signal>>,
) -> Result<(), SyscallError> {
    let sig = sig_arg(sig.into());
    // SAFETY: kill touches no memory of ours and no fds.
    unsafe { call(sysif, libc::SYS_kill, [pid.arg(), sig]) }.await
}

/// `waitid(idtype, id, infop, options, rusage)` — waits for a state change of a child.
///
/// # Safety
/// `infop` (if not null) must be valid for writing a `siginfo_t` in the target's address
/// space, and `rusage` (if not null) for a `struct rusage`.
///
/// # Errors
/// `ECHILD`, `EINTR`, `EINVAL`. See waitid(2).
pub async unsafe fn waitid(
    sysif: &dyn SyscallInterface,
    id: IdType,
    infop: Address,
    options: W,
    rusage: Address,
) -> Result<(), SyscallError> {
    let (idtype, idval) = id.args();
    let args = [
        idtype,
        idval,
        infop.arg(),
        options.bits() as i64,
        rusage.arg(),
    ];
    // SAFETY: the caller guarantees infop and rusage.
    unsafe { call(sysif, libc::SYS_waitid, args) }.await
}

/// `pidfd_open(pid, flags)` — a pidfd for `pid`, created close-on-exec.
///
/// # Errors
/// `ESRCH`, `EINVAL`, `EMFILE`. See pidfd_open(2).
pub async fn pidfd_open(
    sysif: &dyn SyscallInterface,
    pid: Pid,
    flags: u32,
) -> Result<FileDescriptor, SyscallError> {
    // SAFETY: creates a new fd; touches no memory and no existing fd.
    unsafe { call_new_fd(sysif, libc::SYS_pidfd_open, [pid.arg(), flags as i64]) }.await
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)` — signals the process a pidfd refers to, with
/// no risk of hitting a reused pid. `sig` is a [`Signal`] or an `Option<Signal>`; `None`
/// is the null signal 0: nothing is sent, the call only checks that the process exists
/// (a zombie not yet reaped still does).
///
/// # Errors
/// `ESRCH` once the process has been reaped, `EBADF`, `EPERM`. See
/// pidfd_send_signal(2).
pub async fn pidfd_send_signal(
    sysif: &dyn SyscallInterface,
    pidfd: FileDescriptor,
    sig: impl Into<Option<Signal>>,
) -> Result<(), SyscallError> {
    let args = [pidfd.arg(), sig_arg(sig.into()), 0, 0];
    // SAFETY: no siginfo pointer is passed; the fd is only used, not changed.
    unsafe { call(sysif, libc::SYS_pidfd_send_signal, args) }.await
}

/// `prctl(option, arg2, arg3, arg4, arg5)` — process control operations.
///
/// # Safety
/// Some options take addresses the kernel reads or writes (`PR_GET_NAME`, `PR_SET_MM`...);
/// the caller must make them valid in the target's address space.
///
/// # Errors
/// `EINVAL`, `EPERM` and others. See prctl(2).
pub async unsafe fn prctl(
    sysif: &dyn SyscallInterface,
    option: i32,
    args: [i64; 4],
) -> Result<i64, SyscallError> {
    let full = [option as i64, args[0], args[1], args[2], args[3]];
    // SAFETY: the caller guarantees the option's pointer arguments.
    unsafe { call(sysif, libc::SYS_prctl, full) }.await
}

/// `clone(flags, stack, ptid, ctid, tls)` — the raw clone; in the child, execution resumes
/// after the `syscall` instruction of the raw routine with `stack` as stack pointer.
///
/// Returns the child's pid in the caller's pid namespace.
///
/// # Safety
/// `stack` must point at a stack image (PROTOCOL.md section 2)
/// whose memory stays valid and unused by anything else while the child runs on it; `ptid`
/// and `ctid` must be valid for the writes the flags ask the kernel to do (`CLONE::PIDFD`
/// writes an `i32` fd number at `ptid`; `CLONE::CHILD_CLEARTID` clears an `i32` at `ctid`
/// when the child exits or execs). Without `CLONE::VM` the child gets a copy of the address
/// space and resumes on the copied stack.
///
/// # Errors
/// `EAGAIN`, `EINVAL`, `ENOMEM`, `ENOSPC`, `EPERM`, `EUSERS`. See clone(2).
pub async unsafe fn clone(
    sysif: &dyn SyscallInterface,
    flags: CLONE,
    exit_signal: Option<Signal>,
    stack: Address,
    ptid: Address,
    ctid: Address,
    tls: u64,
) -> Result<Pid, SyscallError> {
    let sig = exit_signal.map(|s| s.as_raw() as i64).unwrap_or(0);
    let args = [
        flags.bits() as i64 | sig,
        stack.arg(),
        ptid.arg(),
        ctid.arg(),
        tls as i64,
    ];
    // SAFETY: the caller guarantees the stack image and the tid pointers.
    unsafe { call(sysif, libc::SYS_clone, args) }.await
}

/// `execve(path, argv, envp)` — replaces the target's program.
///
/// Through a remote interface, success shows as the loss of the connection and is
/// returned as `Ok(())`.
///
/// # Safety
/// `path` must be a NUL-terminated string and `argv`/`envp` NULL-terminated arrays of
/// pointers to NUL-terminated strings, all valid in the target's address space. On the
/// local interface, success replaces this program.
///
/// # Errors
/// `ENOENT`, `EACCES`, `ENOEXEC`, `E2BIG`, `EFAULT` and others. See execve(2).
pub async unsafe fn execve(
    sysif: &dyn SyscallInterface,
    path: Address,
    argv: Address,
    envp: Address,
) -> Result<(), SyscallError> {
    let args = [path.arg(), argv.arg(), envp.arg()];
    // SAFETY: the caller guarantees the strings and arrays.
    unsafe { call_no_response(sysif, libc::SYS_execve, args) }.await
}

/// `gettid()` — the id of the calling thread of the target, in its own pid namespace.
///
/// # Errors
/// Only connection errors. See gettid(2).
pub async fn gettid(sysif: &dyn SyscallInterface) -> Result<Pid, SyscallError> {
    // SAFETY: gettid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_gettid, []) }.await
}

/// `tgkill(tgid, tid, sig)` — sends `sig` (a [`Signal`], or, with `None`, the null signal:
/// only checks that the thread exists and may be signalled) to thread `tid` of thread
/// group `tgid`.
///
/// Racy like [`kill`]: the ids may have been reused.
///
/// # Errors
/// `ESRCH`, `EPERM`, `EINVAL`. See tgkill(2).
pub async fn tgkill(
    sysif: &dyn SyscallInterface,
    tgid: Pid,
    tid: Pid,
    sig: impl Into<Option<Signal>>,
) -> Result<(), SyscallError> {
    let sig = sig_arg(sig.into());
    // SAFETY: tgkill touches no memory of ours and no fds.
    unsafe { call(sysif, libc::SYS_tgkill, [tgid.arg(), tid.arg(), sig]) }.await
}

/// `rt_sigprocmask(how, set, oldset, KERNEL_SIGSET_SIZE)` — changes and/or reads the
/// calling thread's signal mask.
///
/// # Safety
/// `set` (if not null) must be readable and `oldset` (if not null) writable for
/// [`KERNEL_SIGSET_SIZE`] bytes in the target's address space. Blocking signals in the
/// local process changes how the program's own threads receive signals.
///
/// # Errors
/// `EFAULT`, `EINVAL`. See sigprocmask(2).
pub async unsafe fn rt_sigprocmask(
    sysif: &dyn SyscallInterface,
    how: SigprocmaskHow,
    set: Address,
    oldset: Address,
) -> Result<(), SyscallError> {
    let args = [
        how as i64,
        set.arg(),
        oldset.arg(),
        KERNEL_SIGSET_SIZE as i64,
    ];
    // SAFETY: the caller guarantees set and oldset.
    unsafe { call(sysif, libc::SYS_rt_sigprocmask, args) }.await
}

/// `rt_sigaction(sig, act, oldact, KERNEL_SIGSET_SIZE)` — changes and/or reads the
/// disposition of `sig` (kernel `struct sigaction`: handler, flags, restorer, mask).
///
/// # Safety
/// `act` (if not null) must be readable and `oldact` (if not null) writable for a kernel
/// `struct sigaction` in the target's address space. A handler other than `SIG_DFL` or
/// `SIG_IGN` is code the kernel will jump to (through the restorer on return): it must be
/// valid to run as a signal handler in the target.
///
/// # Errors
/// `EFAULT`, `EINVAL` (for `SIGKILL`/`SIGSTOP` or a bad size). See sigaction(2).
pub async unsafe fn rt_sigaction(
    sysif: &dyn SyscallInterface,
    sig: Signal,
    act: Address,
    oldact: Address,
) -> Result<(), SyscallError> {
    let args = [
        sig.as_raw() as i64,
        act.arg(),
        oldact.arg(),
        KERNEL_SIGSET_SIZE as i64,
    ];
    // SAFETY: the caller guarantees act, oldact and the handler.
    unsafe { call(sysif, libc::SYS_rt_sigaction, args) }.await
}

/// `setsid()` — makes the target the leader of a new session and process group; returns
/// the new session id.
///
/// # Errors
/// `EPERM` if the target already leads a process group. See setsid(2).
pub async fn setsid(sysif: &dyn SyscallInterface) -> Result<Pid, SyscallError> {
    // SAFETY: setsid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_setsid, []) }.await
}

/// `setpgid(pid, pgid)` — moves process `pid` (0: the caller) into process group `pgid`
/// (0: a group whose id is `pid`).
///
/// # Errors
/// `EACCES`, `EINVAL`, `EPERM`, `ESRCH`. See setpgid(2).
pub async fn setpgid(
    sysif: &dyn SyscallInterface,
    pid: Pid,
    pgid: Pid,
) -> Result<(), SyscallError> {
    // SAFETY: setpgid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_setpgid, [pid.arg(), pgid.arg()]) }.await
}

/// `getpgid(pid)` — the process group of process `pid` (0: the caller).
///
/// # Errors
/// `ESRCH`. See getpgid(2).
pub async fn getpgid(sysif: &dyn SyscallInterface, pid: Pid) -> Result<Pid, SyscallError> {
    // SAFETY: getpgid touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_getpgid, [pid.arg()]) }.await
}

/// `getpriority(which, who)` — the raw kernel value `20 - nice` (1..=40) of the highest
/// priority among the processes named; the handle layer converts it to a nice value.
///
/// # Errors
/// `EINVAL`, `ESRCH`. See getpriority(2).
pub async fn getpriority(sysif: &dyn SyscallInterface, who: PrioWho) -> Result<i32, SyscallError> {
    // SAFETY: getpriority touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_getpriority, who.args()) }.await
}

/// `setpriority(which, who, prio)` — sets the nice value (the kernel clamps it to
/// `-20..=19`) of the processes named.
///
/// # Errors
/// `EACCES` (lowering nice without `CAP_SYS_NICE`), `EINVAL`, `EPERM`, `ESRCH`. See
/// setpriority(2).
pub async fn setpriority(
    sysif: &dyn SyscallInterface,
    who: PrioWho,
    nice: i32,
) -> Result<(), SyscallError> {
    let [which, id] = who.args();
    // SAFETY: setpriority touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_setpriority, [which, id, nice as i64]) }.await
}

/// `execveat(dirfd, path, argv, envp, flags)` — replaces the target's program with the
/// file at `path` relative to `dirfd` (`None`: the working directory), or with `dirfd`
/// itself given `EXECVEAT::EMPTY_PATH` and an empty path.
///
/// Through a remote interface, success shows as the loss of the connection and is
/// returned as `Ok(())`.
///
/// # Safety
/// As for [`execve`].
///
/// # Errors
/// As for [`execve`], and `EBADF`, `ENOTDIR`, `ELOOP`. See execveat(2).
pub async unsafe fn execveat(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    argv: Address,
    envp: Address,
    flags: EXECVEAT,
) -> Result<(), SyscallError> {
    let args = [
        dirfd_arg(dirfd),
        path.arg(),
        argv.arg(),
        envp.arg(),
        flags.bits() as i64,
    ];
    // SAFETY: the caller guarantees the strings and arrays.
    unsafe { call_no_response(sysif, libc::SYS_execveat, args) }.await
}

/// `set_robust_list(head, len)` — registers the calling thread's robust futex list, which
/// the kernel walks (and whose futex words it updates) when the thread exits.
///
/// # Safety
/// `head` must point at a `struct robust_list_head` of `len` bytes in the target's address
/// space, and it and every list entry must stay valid and keep that meaning until the
/// thread exits or registers another list: the kernel writes to the futex words the list
/// names when the thread exits.
///
/// # Errors
/// `EINVAL` if `len` is not the kernel's size (24 on x86-64). See set_robust_list(2).
pub async unsafe fn set_robust_list(
    sysif: &dyn SyscallInterface,
    head: Address,
    len: usize,
) -> Result<(), SyscallError> {
    // SAFETY: the caller guarantees the list.
    unsafe { call(sysif, libc::SYS_set_robust_list, [head.arg(), len as i64]) }.await
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
