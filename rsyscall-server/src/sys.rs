//! The few syscalls the server makes for itself, over the raw routine.
//!
//! # Safety
//! Each wrapper passes the kernel only pointers derived from the references it is given,
//! with their lengths, so the kernel reads or writes only memory the caller lent; the
//! wrappers that pass no memory at all (`close`, `shutdown`, `kill`, ...) cannot break
//! memory safety. Closing an fd is the one I/O-safety hazard: callers pass only fds the
//! server itself owns (documented at each call).
#![allow(unsafe_code)]

use crate::arch::raw_syscall;
use crate::proto::Request;

pub(crate) const EINTR: i64 = 4;
pub(crate) const EIO: i64 = 5;
pub(crate) const EINVAL: i64 = 22;
pub(crate) const EAGAIN: i64 = 11;
pub(crate) const EPIPE: i64 = 32;
pub(crate) const ETIMEDOUT: i64 = 110;
pub(crate) const ENOTSOCK: i64 = 88;
pub(crate) const ECONNABORTED: i64 = 103;

const MSG_CTRUNC: i32 = 0x8;
const MSG_NOSIGNAL: i64 = 0x4000;
const MSG_CMSG_CLOEXEC: i64 = 0x4000_0000;
const SOCK_CLOEXEC: i64 = 0o2000000;
const SHUT_RDWR: i64 = 2;
const SIGSTOP: i64 = 19;
/// `FUTEX_WAIT` without `FUTEX_PRIVATE_FLAG`: the kernel's wake on `CLONE_CHILD_CLEARTID`
/// is a shared-futex wake, and the word may live in a `MAP_SHARED` mapping, where private
/// and shared futex keys differ.
const FUTEX_WAIT: i64 = 0;

const SYS_READ: i64 = 0;
const SYS_WRITE: i64 = 1;
const SYS_CLOSE: i64 = 3;
const SYS_GETPID: i64 = 39;
const SYS_SENDTO: i64 = 44;
const SYS_RECVMSG: i64 = 47;
const SYS_SHUTDOWN: i64 = 48;
const SYS_KILL: i64 = 62;
const SYS_FUTEX: i64 = 202;
const SYS_EXIT_GROUP: i64 = 231;
const SYS_ACCEPT4: i64 = 288;
const SYS_SOCKET: i64 = 41;
const SYS_CONNECT: i64 = 42;
const SYS_OPEN: i64 = 2;
const SYS_RT_SIGPROCMASK: i64 = 14;
const AF_UNIX: i64 = 1;
const SOCK_STREAM: i64 = 1;
const O_PATH: i64 = 0o10000000;
const O_DIRECTORY: i64 = 0o200000;
const O_CLOEXEC: i64 = 0o2000000;
const SIG_BLOCK: i64 = 0;
const SYS_SENDMSG: i64 = 46;
const SYS_BIND: i64 = 49;
const SYS_LISTEN: i64 = 50;
const SYS_UNLINK: i64 = 87;
const SYS_PRCTL: i64 = 157;
const SYS_POLL: i64 = 7;
const PR_SET_PDEATHSIG: i64 = 1;
const SIGKILL: i64 = 9;
const SIGPIPE: u64 = 13;

/// Runs a client's request verbatim.
pub(crate) fn request(req: &Request) -> i64 {
    let [a1, a2, a3, a4, a5, a6] = req.args;
    // SAFETY: running the client's syscalls is the server's purpose; the client, which
    // owns this process, is responsible for what they do (see SyscallInterface::syscall).
    unsafe { raw_syscall(a1, a2, a3, a4, a5, a6, req.number) }
}

/// `read(fd, buf, buf.len())`.
pub(crate) fn read(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    unsafe {
        raw_syscall(
            fd as i64,
            buf.as_mut_ptr() as i64,
            buf.len() as i64,
            0,
            0,
            0,
            SYS_READ,
        )
    }
}

/// `write(fd, buf, buf.len())`.
pub(crate) fn write(fd: i32, buf: &[u8]) -> i64 {
    // SAFETY: the kernel reads at most buf.len() bytes from buf.
    unsafe {
        raw_syscall(
            fd as i64,
            buf.as_ptr() as i64,
            buf.len() as i64,
            0,
            0,
            0,
            SYS_WRITE,
        )
    }
}

/// `sendto(fd, buf, buf.len(), MSG_NOSIGNAL, NULL, 0)`.
pub(crate) fn send_nosignal(fd: i32, buf: &[u8]) -> i64 {
    // SAFETY: the kernel reads at most buf.len() bytes from buf; no address is passed.
    unsafe {
        raw_syscall(
            fd as i64,
            buf.as_ptr() as i64,
            buf.len() as i64,
            MSG_NOSIGNAL,
            0,
            0,
            SYS_SENDTO,
        )
    }
}

/// `close(fd)`. Callers pass only fds the server owns.
pub(crate) fn close(fd: i32) -> i64 {
    // SAFETY: no memory is passed to the kernel.
    unsafe { raw_syscall(fd as i64, 0, 0, 0, 0, 0, SYS_CLOSE) }
}

/// `shutdown(fd, SHUT_RDWR)`.
pub(crate) fn shutdown_rdwr(fd: i32) -> i64 {
    // SAFETY: no memory is passed to the kernel.
    unsafe { raw_syscall(fd as i64, SHUT_RDWR, 0, 0, 0, 0, SYS_SHUTDOWN) }
}

/// `struct pollfd`.
#[repr(C)]
pub(crate) struct PollFd {
    pub(crate) fd: i32,
    pub(crate) events: i16,
    pub(crate) revents: i16,
}

/// `POLLIN`, `POLLERR`, `POLLHUP`.
pub(crate) const POLLIN: i16 = 0x1;
pub(crate) const POLLERR: i16 = 0x8;
pub(crate) const POLLHUP: i16 = 0x10;

/// `poll(fds, n, timeout_ms)`: the number of fds with events, 0 on timeout, or `-errno`.
pub(crate) fn poll(fds: &mut [PollFd], timeout_ms: i32) -> i64 {
    // SAFETY: `fds` is a live, writable array of `fds.len()` pollfds for the duration of
    // the call, which the kernel reads and writes only within.
    unsafe {
        raw_syscall(
            fds.as_mut_ptr() as i64,
            fds.len() as i64,
            timeout_ms as i64,
            0,
            0,
            0,
            SYS_POLL,
        )
    }
}

/// `accept4(fd, NULL, NULL, SOCK_CLOEXEC)`.
pub(crate) fn accept_cloexec(fd: i32) -> i64 {
    // SAFETY: no address buffer is passed, so the kernel writes no memory of ours.
    unsafe { raw_syscall(fd as i64, 0, 0, SOCK_CLOEXEC, 0, 0, SYS_ACCEPT4) }
}

/// `struct iovec`.
#[repr(C)]
struct IoVec {
    base: *mut u8,
    len: usize,
}

/// `struct msghdr` (56 bytes on x86-64; the padding after `namelen` is explicit).
#[repr(C)]
struct MsgHdr {
    name: *mut u8,
    namelen: u32,
    _pad: u32,
    iov: *mut IoVec,
    iovlen: usize,
    control: *mut u8,
    controllen: usize,
    flags: i32,
}

/// What [`recvmsg_cloexec`] got: the raw return value, how many control bytes the kernel
/// wrote, and whether it had to truncate the control data (`MSG_CTRUNC`).
pub(crate) struct RecvMsg {
    pub(crate) ret: i64,
    pub(crate) controllen: usize,
    pub(crate) ctrunc: bool,
}

/// `recvmsg(fd, {iov = [data], control}, MSG_CMSG_CLOEXEC)`: receives into `data` and
/// `control`; any fds the kernel installs are close-on-exec.
pub(crate) fn recvmsg_cloexec(fd: i32, data: &mut [u8], control: &mut [u8]) -> RecvMsg {
    let mut iov = IoVec {
        base: data.as_mut_ptr(),
        len: data.len(),
    };
    let mut msg = MsgHdr {
        name: core::ptr::null_mut(),
        namelen: 0,
        _pad: 0,
        iov: &mut iov,
        iovlen: 1,
        control: control.as_mut_ptr(),
        controllen: control.len(),
        flags: 0,
    };
    let msg_ptr: *mut MsgHdr = &mut msg;
    // SAFETY: the kernel reads `msg` and `iov` (live locals), writes at most data.len()
    // bytes into data, at most control.len() bytes into control, and updates the
    // controllen and flags fields of `msg`; nothing else.
    let ret = unsafe {
        raw_syscall(
            fd as i64,
            msg_ptr as i64,
            MSG_CMSG_CLOEXEC,
            0,
            0,
            0,
            SYS_RECVMSG,
        )
    };
    RecvMsg {
        ret,
        controllen: msg.controllen,
        ctrunc: msg.flags & MSG_CTRUNC != 0,
    }
}

/// `sendmsg(fd, {iov = [data], control}, MSG_NOSIGNAL)`: sends `data` with the control
/// messages already laid out in `control`.
pub(crate) fn sendmsg_nosignal(fd: i32, data: &[u8], control: &[u8]) -> i64 {
    // The kernel only reads through these pointers (sendmsg never writes the payload or
    // the control buffer), so casting away const is harmless.
    let mut iov = IoVec {
        base: data.as_ptr() as *mut u8,
        len: data.len(),
    };
    let msg = MsgHdr {
        name: core::ptr::null_mut(),
        namelen: 0,
        _pad: 0,
        iov: &mut iov,
        iovlen: 1,
        control: control.as_ptr() as *mut u8,
        controllen: control.len(),
        flags: 0,
    };
    let msg_ptr: *const MsgHdr = &msg;
    // SAFETY: the kernel reads `msg` and `iov` (live locals), at most data.len() bytes of
    // data and at most control.len() bytes of control; it writes no memory of ours.
    unsafe {
        raw_syscall(
            fd as i64,
            msg_ptr as i64,
            MSG_NOSIGNAL,
            0,
            0,
            0,
            SYS_SENDMSG,
        )
    }
}

/// `futex(addr, FUTEX_WAIT, value, NULL)`: sleeps while `*addr == value`.
///
/// The kernel reads the word itself (returning `-EFAULT` for a bad address) and never
/// writes it, so any address is harmless.
pub(crate) fn futex_wait(addr: *const u32, value: u32) -> i64 {
    // SAFETY: FUTEX_WAIT only reads the 4-byte word at addr, through the kernel's checked
    // user-memory access; no memory is written.
    unsafe { raw_syscall(addr as i64, FUTEX_WAIT, value as i64, 0, 0, 0, SYS_FUTEX) }
}

/// `kill(getpid(), SIGSTOP)`: stops the calling process until it receives `SIGCONT`.
pub(crate) fn stop_self() -> i64 {
    // SAFETY: no memory is passed to the kernel.
    let pid = unsafe { raw_syscall(0, 0, 0, 0, 0, 0, SYS_GETPID) };
    // SAFETY: no memory is passed to the kernel.
    unsafe { raw_syscall(pid, SIGSTOP, 0, 0, 0, 0, SYS_KILL) }
}

/// `getpid()`.
pub(crate) fn getpid() -> i64 {
    // SAFETY: no memory is passed to the kernel.
    unsafe { raw_syscall(0, 0, 0, 0, 0, 0, SYS_GETPID) }
}

/// `socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)`.
pub(crate) fn unix_stream_socket() -> i64 {
    // SAFETY: no memory is passed to the kernel.
    unsafe { raw_syscall(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, 0, 0, 0, SYS_SOCKET) }
}

/// `connect(fd, addr, addr.len())`: `addr` is a whole `sockaddr_un` (family and path).
pub(crate) fn connect(fd: i32, addr: &[u8]) -> i64 {
    // SAFETY: the kernel reads at most addr.len() bytes from addr.
    unsafe {
        raw_syscall(
            fd as i64,
            addr.as_ptr() as i64,
            addr.len() as i64,
            0,
            0,
            0,
            SYS_CONNECT,
        )
    }
}

/// `bind(fd, addr, addr.len())`: `addr` is a whole `sockaddr_un` (family and path).
pub(crate) fn bind(fd: i32, addr: &[u8]) -> i64 {
    // SAFETY: the kernel reads at most addr.len() bytes from addr.
    unsafe {
        raw_syscall(
            fd as i64,
            addr.as_ptr() as i64,
            addr.len() as i64,
            0,
            0,
            0,
            SYS_BIND,
        )
    }
}

/// `listen(fd, backlog)`.
pub(crate) fn listen(fd: i32, backlog: i32) -> i64 {
    // SAFETY: no memory is passed to the kernel.
    unsafe { raw_syscall(fd as i64, backlog as i64, 0, 0, 0, 0, SYS_LISTEN) }
}

/// `unlink(path)`: `path` must end with a NUL byte (checked: a path without one is
/// `-EINVAL` without a syscall).
pub(crate) fn unlink(path: &[u8]) -> i64 {
    if path.last() != Some(&0) {
        return -EINVAL;
    }
    // SAFETY: the kernel reads the NUL-terminated string inside `path`, nothing else.
    unsafe { raw_syscall(path.as_ptr() as i64, 0, 0, 0, 0, 0, SYS_UNLINK) }
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the process is killed when its parent exits.
pub(crate) fn die_with_parent() -> i64 {
    // SAFETY: no memory is passed to the kernel.
    unsafe { raw_syscall(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0, SYS_PRCTL) }
}

/// Blocks `SIGPIPE` (`rt_sigprocmask(SIG_BLOCK, {SIGPIPE}, NULL, 8)`), so a write to a
/// closed pipe fails with `EPIPE` instead of killing the process.
pub(crate) fn block_sigpipe() -> i64 {
    let set = 1u64 << (SIGPIPE - 1);
    let set_ptr: *const u64 = &set;
    // SAFETY: the kernel reads the 8-byte set; no old set is asked for.
    unsafe { raw_syscall(SIG_BLOCK, set_ptr as i64, 0, 8, 0, 0, SYS_RT_SIGPROCMASK) }
}

/// `open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)`: `path` must end with a NUL byte
/// (checked: a path without one is `-EINVAL` without a syscall).
pub(crate) fn open_dir_path(path: &[u8]) -> i64 {
    if path.last() != Some(&0) {
        return -EINVAL;
    }
    // SAFETY: the kernel reads the NUL-terminated string inside `path`, nothing else.
    unsafe {
        raw_syscall(
            path.as_ptr() as i64,
            O_PATH | O_DIRECTORY | O_CLOEXEC,
            0,
            0,
            0,
            0,
            SYS_OPEN,
        )
    }
}

/// The calling thread's blocked signals (`rt_sigprocmask(SIG_BLOCK, NULL, &old, 8)`), or
/// `-errno`.
pub(crate) fn blocked_signals() -> Result<u64, i64> {
    let mut old = 0u64;
    let old_ptr: *mut u64 = &mut old;
    // SAFETY: with a NULL new set nothing changes; the kernel writes 8 bytes into `old`.
    let ret = unsafe { raw_syscall(SIG_BLOCK, 0, old_ptr as i64, 8, 0, 0, SYS_RT_SIGPROCMASK) };
    if ret < 0 { Err(ret) } else { Ok(old) }
}

/// `exit_group(status)`: ends the whole process.
pub(crate) fn exit_group(status: i32) -> ! {
    loop {
        // SAFETY: no memory is passed; the process ends here.
        unsafe { raw_syscall(status as i64, 0, 0, 0, 0, 0, SYS_EXIT_GROUP) };
    }
}
