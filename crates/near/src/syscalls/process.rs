//! Process syscalls: ids, clone, exec, exit, signals, waiting, pidfds, prctl.

use super::call;
use crate::{
    Address, CLONE, FileDescriptor, IdType, Pid, Signal, SyscallError, SyscallInterface, W,
};

/// `getpid()` — the pid of the target process, in its own pid namespace.
///
/// # Errors
/// Only connection errors. See getpid(2).
pub async fn getpid(sysif: &dyn SyscallInterface) -> Result<Pid, SyscallError> {
    // SAFETY: getpid touches no memory and no fds.
    let ret = unsafe { call(sysif, libc::SYS_getpid, []) }.await?;
    Ok(Pid::new(ret as i32))
}

/// `getppid()` — the pid of the target's parent, or 0 if the parent is outside its pid
/// namespace.
///
/// # Errors
/// Only connection errors. See getppid(2).
pub async fn getppid(sysif: &dyn SyscallInterface) -> Result<Pid, SyscallError> {
    // SAFETY: getppid touches no memory and no fds.
    let ret = unsafe { call(sysif, libc::SYS_getppid, []) }.await?;
    Ok(Pid::new(ret as i32))
}

/// `exit(status)` — ends the calling thread of the target (not `exit_group`).
///
/// Through a remote interface, success shows as the loss of the connection and is
/// returned as `Ok(())`.
///
/// # Safety
/// On the local interface this ends the calling thread without running destructors.
pub async unsafe fn exit(sysif: &dyn SyscallInterface, status: i32) -> Result<(), SyscallError> {
    let req = crate::Request::new(libc::SYS_exit, [status as i64, 0, 0, 0, 0, 0]);
    // SAFETY: forwarded from the caller.
    unsafe { sysif.syscall_no_response(req) }.await?;
    Ok(())
}

/// `kill(pid, sig)` — sends `sig` to a process (or process group for negative `pid`).
///
/// Racy for anything but an unreaped child: the pid may have been reused.
///
/// # Errors
/// `ESRCH`, `EPERM`, `EINVAL`. See kill(2).
pub async fn kill(sysif: &dyn SyscallInterface, pid: Pid, sig: Signal) -> Result<(), SyscallError> {
    // SAFETY: kill touches no memory of ours and no fds.
    unsafe { call(sysif, libc::SYS_kill, [pid.arg(), sig.as_raw() as i64]) }.await?;
    Ok(())
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
    unsafe { call(sysif, libc::SYS_waitid, args) }.await?;
    Ok(())
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
    let ret = unsafe { call(sysif, libc::SYS_pidfd_open, [pid.arg(), flags as i64]) }.await?;
    Ok(FileDescriptor::new(ret as i32))
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)` — signals the process a pidfd refers to, with
/// no risk of hitting a reused pid.
///
/// # Errors
/// `ESRCH` once the process has exited, `EBADF`, `EPERM`. See pidfd_send_signal(2).
pub async fn pidfd_send_signal(
    sysif: &dyn SyscallInterface,
    pidfd: FileDescriptor,
    sig: Signal,
) -> Result<(), SyscallError> {
    let args = [pidfd.arg(), sig.as_raw() as i64, 0, 0];
    // SAFETY: no siginfo pointer is passed; the fd is only used, not changed.
    unsafe { call(sysif, libc::SYS_pidfd_send_signal, args) }.await?;
    Ok(())
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
    let ret = unsafe { call(sysif, libc::SYS_clone, args) }.await?;
    Ok(Pid::new(ret as i32))
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
    let req = crate::Request::new(
        libc::SYS_execve,
        [path.arg(), argv.arg(), envp.arg(), 0, 0, 0],
    );
    // SAFETY: the caller guarantees the strings and arrays.
    unsafe { sysif.syscall_no_response(req) }.await?;
    Ok(())
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
