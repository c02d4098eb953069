//! Event syscalls: epoll, eventfd, timerfd, signalfd, inotify, pidfds.
//!
//! The pidfd wrappers (`pidfd_open`, `pidfd_send_signal`) live with the process syscalls;
//! the flags of `pidfd_open` ([`PIDFD`]) are here.

use std::fmt;

use super::{KERNEL_SIGSET_SIZE, call, call_new_fd, opt_fd_arg};
use crate::{Address, FileDescriptor, O, SyscallError, SyscallInterface};

bitflags::bitflags! {
    /// Event bits of `epoll_ctl(2)` and `epoll_wait(2)`: what to wait for, what happened,
    /// and input flags (`ET`, `ONESHOT`, `EXCLUSIVE`, `WAKEUP`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct EPOLL: u32 {
        /// `EPOLLIN`.
        const IN = libc::EPOLLIN as u32;
        /// `EPOLLPRI`.
        const PRI = libc::EPOLLPRI as u32;
        /// `EPOLLOUT`.
        const OUT = libc::EPOLLOUT as u32;
        /// `EPOLLERR`.
        const ERR = libc::EPOLLERR as u32;
        /// `EPOLLHUP`.
        const HUP = libc::EPOLLHUP as u32;
        /// `EPOLLRDNORM`.
        const RDNORM = libc::EPOLLRDNORM as u32;
        /// `EPOLLRDBAND`.
        const RDBAND = libc::EPOLLRDBAND as u32;
        /// `EPOLLWRNORM`.
        const WRNORM = libc::EPOLLWRNORM as u32;
        /// `EPOLLWRBAND`.
        const WRBAND = libc::EPOLLWRBAND as u32;
        /// `EPOLLMSG`.
        const MSG = libc::EPOLLMSG as u32;
        /// `EPOLLRDHUP`.
        const RDHUP = libc::EPOLLRDHUP as u32;
        /// `EPOLLEXCLUSIVE`.
        const EXCLUSIVE = libc::EPOLLEXCLUSIVE as u32;
        /// `EPOLLWAKEUP`.
        const WAKEUP = libc::EPOLLWAKEUP as u32;
        /// `EPOLLONESHOT`.
        const ONESHOT = libc::EPOLLONESHOT as u32;
        /// `EPOLLET`.
        const ET = libc::EPOLLET as u32;
    }
}

bitflags::bitflags! {
    /// Flags of `eventfd2(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct EFD: i32 {
        /// `EFD_CLOEXEC`.
        const CLOEXEC = libc::EFD_CLOEXEC;
        /// `EFD_NONBLOCK`.
        const NONBLOCK = libc::EFD_NONBLOCK;
        /// `EFD_SEMAPHORE`.
        const SEMAPHORE = libc::EFD_SEMAPHORE;
    }
}

bitflags::bitflags! {
    /// Flags of `timerfd_create(2)` (`CLOEXEC`, `NONBLOCK`) and of `timerfd_settime(2)`
    /// (`TIMER_ABSTIME`, `TIMER_CANCEL_ON_SET`). The bits do not overlap; each call
    /// accepts only its own.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct TFD: i32 {
        /// `TFD_CLOEXEC`.
        const CLOEXEC = libc::TFD_CLOEXEC;
        /// `TFD_NONBLOCK`.
        const NONBLOCK = libc::TFD_NONBLOCK;
        /// `TFD_TIMER_ABSTIME`.
        const TIMER_ABSTIME = libc::TFD_TIMER_ABSTIME;
        /// `TFD_TIMER_CANCEL_ON_SET`.
        const TIMER_CANCEL_ON_SET = libc::TFD_TIMER_CANCEL_ON_SET;
    }
}

bitflags::bitflags! {
    /// Flags of `signalfd4(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct SFD: i32 {
        /// `SFD_CLOEXEC`.
        const CLOEXEC = libc::SFD_CLOEXEC;
        /// `SFD_NONBLOCK`.
        const NONBLOCK = libc::SFD_NONBLOCK;
    }
}

bitflags::bitflags! {
    /// The event mask of `inotify_add_watch(2)` and of the events read from an inotify
    /// fd. (The flags of `inotify_init1(2)` are [`O`]`::NONBLOCK` and `O::CLOEXEC`: their
    /// bits overlap with this mask's.)
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct IN: u32 {
        /// `IN_ACCESS`.
        const ACCESS = libc::IN_ACCESS;
        /// `IN_MODIFY`.
        const MODIFY = libc::IN_MODIFY;
        /// `IN_ATTRIB`.
        const ATTRIB = libc::IN_ATTRIB;
        /// `IN_CLOSE_WRITE`.
        const CLOSE_WRITE = libc::IN_CLOSE_WRITE;
        /// `IN_CLOSE_NOWRITE`.
        const CLOSE_NOWRITE = libc::IN_CLOSE_NOWRITE;
        /// `IN_OPEN`.
        const OPEN = libc::IN_OPEN;
        /// `IN_MOVED_FROM`.
        const MOVED_FROM = libc::IN_MOVED_FROM;
        /// `IN_MOVED_TO`.
        const MOVED_TO = libc::IN_MOVED_TO;
        /// `IN_CREATE`.
        const CREATE = libc::IN_CREATE;
        /// `IN_DELETE`.
        const DELETE = libc::IN_DELETE;
        /// `IN_DELETE_SELF`.
        const DELETE_SELF = libc::IN_DELETE_SELF;
        /// `IN_MOVE_SELF`.
        const MOVE_SELF = libc::IN_MOVE_SELF;
        /// `IN_UNMOUNT`.
        const UNMOUNT = libc::IN_UNMOUNT;
        /// `IN_Q_OVERFLOW`.
        const Q_OVERFLOW = libc::IN_Q_OVERFLOW;
        /// `IN_IGNORED`.
        const IGNORED = libc::IN_IGNORED;
        /// `IN_ONLYDIR`.
        const ONLYDIR = libc::IN_ONLYDIR;
        /// `IN_DONT_FOLLOW`.
        const DONT_FOLLOW = libc::IN_DONT_FOLLOW;
        /// `IN_EXCL_UNLINK`.
        const EXCL_UNLINK = libc::IN_EXCL_UNLINK;
        /// `IN_MASK_CREATE`.
        const MASK_CREATE = libc::IN_MASK_CREATE;
        /// `IN_MASK_ADD`.
        const MASK_ADD = libc::IN_MASK_ADD;
        /// `IN_ISDIR`.
        const ISDIR = libc::IN_ISDIR;
        /// `IN_ONESHOT`.
        const ONESHOT = libc::IN_ONESHOT;
        /// `IN_CLOSE`.
        const CLOSE = libc::IN_CLOSE;
        /// `IN_MOVE`.
        const MOVE = libc::IN_MOVE;
        /// `IN_ALL_EVENTS`.
        const ALL_EVENTS = libc::IN_ALL_EVENTS;
    }
}

bitflags::bitflags! {
    /// Flags of `pidfd_open(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct PIDFD: u32 {
        /// Makes `waitid(P_PIDFD)` on the fd non-blocking (`PIDFD_NONBLOCK`, which is
        /// `O_NONBLOCK`).
        const NONBLOCK = libc::O_NONBLOCK as u32;
    }
}

/// The operation of `epoll_ctl(2)`.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(i32)]
pub enum EPOLL_CTL {
    /// Registers an fd.
    ADD = libc::EPOLL_CTL_ADD,
    /// Changes the events and data of a registered fd.
    MOD = libc::EPOLL_CTL_MOD,
    /// Deregisters an fd.
    DEL = libc::EPOLL_CTL_DEL,
}

/// The clock of a timer (`timerfd_create(2)`).
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(i32)]
pub enum CLOCK {
    /// Wall-clock time; jumps when the time is set.
    REALTIME = libc::CLOCK_REALTIME,
    /// Monotonic time, not counting suspend.
    MONOTONIC = libc::CLOCK_MONOTONIC,
    /// Monotonic time, counting suspend.
    BOOTTIME = libc::CLOCK_BOOTTIME,
    /// Like `REALTIME`, waking the system from suspend (needs `CAP_WAKE_ALARM`).
    REALTIME_ALARM = libc::CLOCK_REALTIME_ALARM,
    /// Like `BOOTTIME`, waking the system from suspend (needs `CAP_WAKE_ALARM`).
    BOOTTIME_ALARM = libc::CLOCK_BOOTTIME_ALARM,
}

/// An inotify watch descriptor: names one watch of one inotify instance.
///
/// Guarantees nothing: it means something only for the inotify fd that returned it, and
/// only until the watch is removed.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchDescriptor(i32);

impl WatchDescriptor {
    /// The watch descriptor with number `n`.
    pub const fn new(n: i32) -> Self {
        WatchDescriptor(n)
    }
    /// The number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }
}

impl fmt::Debug for WatchDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wd {}", self.0)
    }
}

/// `epoll_create1(flags)` — a new epoll instance. The only flag is `O::CLOEXEC`
/// (`EPOLL_CLOEXEC`).
///
/// # Errors
/// `EINVAL`, `EMFILE`, `ENFILE`, `ENOMEM`. See epoll_create(2).
pub async fn epoll_create1(
    sysif: &dyn SyscallInterface,
    flags: O,
) -> Result<FileDescriptor, SyscallError> {
    // SAFETY: creates a new fd; touches no memory and no existing fd.
    unsafe { call_new_fd(sysif, libc::SYS_epoll_create1, [flags.bits() as i64]) }.await
}

/// `epoll_ctl(epfd, op, fd, event)` — adds, changes or removes an fd of an epoll instance.
///
/// The kernel only reads `event` (an `epoll_event`; may be null for `DEL`); an invalid
/// address gives `EFAULT`.
///
/// # Errors
/// `EBADF`, `EEXIST`, `EINVAL`, `ELOOP`, `ENOENT`, `ENOMEM`, `ENOSPC`, `EPERM`. See
/// epoll_ctl(2).
pub async fn epoll_ctl(
    sysif: &dyn SyscallInterface,
    epfd: FileDescriptor,
    op: EPOLL_CTL,
    fd: FileDescriptor,
    event: Address,
) -> Result<(), SyscallError> {
    let args = [epfd.arg(), op as i64, fd.arg(), event.arg()];
    // SAFETY: epoll_ctl only reads `event` and changes no fd table entry.
    unsafe { call(sysif, libc::SYS_epoll_ctl, args) }.await
}

/// `epoll_wait(epfd, events, maxevents, timeout)` — waits for events; returns how many
/// `epoll_event`s were written at `events`. A negative `timeout` (milliseconds) waits
/// forever.
///
/// # Safety
/// `events` must be valid for writing `maxevents` `epoll_event`s in the target's address
/// space.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINTR`, `EINVAL`. See epoll_wait(2).
pub async unsafe fn epoll_wait(
    sysif: &dyn SyscallInterface,
    epfd: FileDescriptor,
    events: Address,
    maxevents: i32,
    timeout: i32,
) -> Result<usize, SyscallError> {
    let args = [epfd.arg(), events.arg(), maxevents as i64, timeout as i64];
    // SAFETY: the caller guarantees `events`.
    unsafe { call(sysif, libc::SYS_epoll_wait, args) }.await
}

/// `epoll_pwait(epfd, events, maxevents, timeout, sigmask, 8)` — like [`epoll_wait`] with
/// the signal mask replaced by the kernel sigset at `sigmask` (if not null) during the wait.
///
/// # Safety
/// As for [`epoll_wait`]; `sigmask`, if not null, must point at an 8-byte kernel sigset.
///
/// # Errors
/// As for [`epoll_wait`]. See epoll_pwait(2).
pub async unsafe fn epoll_pwait(
    sysif: &dyn SyscallInterface,
    epfd: FileDescriptor,
    events: Address,
    maxevents: i32,
    timeout: i32,
    sigmask: Address,
) -> Result<usize, SyscallError> {
    let args = [
        epfd.arg(),
        events.arg(),
        maxevents as i64,
        timeout as i64,
        sigmask.arg(),
        KERNEL_SIGSET_SIZE as i64,
    ];
    // SAFETY: the caller guarantees `events` and `sigmask`.
    unsafe { call(sysif, libc::SYS_epoll_pwait, args) }.await
}

/// `eventfd2(initval, flags)` — a new eventfd with counter `initval`.
///
/// # Errors
/// `EINVAL`, `EMFILE`, `ENFILE`, `ENODEV`, `ENOMEM`. See eventfd(2).
pub async fn eventfd2(
    sysif: &dyn SyscallInterface,
    initval: u32,
    flags: EFD,
) -> Result<FileDescriptor, SyscallError> {
    let args = [initval as i64, flags.bits() as i64];
    // SAFETY: creates a new fd; touches no memory and no existing fd.
    unsafe { call_new_fd(sysif, libc::SYS_eventfd2, args) }.await
}

/// `timerfd_create(clockid, flags)` — a new, disarmed timer fd.
///
/// # Errors
/// `EINVAL`, `EMFILE`, `ENFILE`, `ENODEV`, `ENOMEM`, `EPERM`. See timerfd_create(2).
pub async fn timerfd_create(
    sysif: &dyn SyscallInterface,
    clock: CLOCK,
    flags: TFD,
) -> Result<FileDescriptor, SyscallError> {
    let args = [clock as i64, flags.bits() as i64];
    // SAFETY: creates a new fd; touches no memory and no existing fd.
    unsafe { call_new_fd(sysif, libc::SYS_timerfd_create, args) }.await
}

/// `timerfd_settime(fd, flags, new_value, old_value)` — arms or disarms a timer fd; the
/// kernel reads an `itimerspec` at `new_value` and writes the previous setting at
/// `old_value` unless it is null.
///
/// # Safety
/// `old_value`, if not null, must be valid for writing an `itimerspec` in the target's
/// address space.
///
/// # Errors
/// `EBADF`, `ECANCELED`, `EFAULT`, `EINVAL`. See timerfd_create(2).
pub async unsafe fn timerfd_settime(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    flags: TFD,
    new_value: Address,
    old_value: Address,
) -> Result<(), SyscallError> {
    let args = [
        fd.arg(),
        flags.bits() as i64,
        new_value.arg(),
        old_value.arg(),
    ];
    // SAFETY: the caller guarantees `old_value`.
    unsafe { call(sysif, libc::SYS_timerfd_settime, args) }.await
}

/// `timerfd_gettime(fd, curr_value)` — writes the timer's current setting (time left and
/// interval) as an `itimerspec` at `curr_value`.
///
/// # Safety
/// `curr_value` must be valid for writing an `itimerspec` in the target's address space.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINVAL`. See timerfd_create(2).
pub async unsafe fn timerfd_gettime(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    curr_value: Address,
) -> Result<(), SyscallError> {
    // SAFETY: the caller guarantees `curr_value`.
    unsafe {
        call(
            sysif,
            libc::SYS_timerfd_gettime,
            [fd.arg(), curr_value.arg()],
        )
    }
    .await
}

/// `signalfd4(fd, mask, 8, flags)` — a new signalfd for the signals in the kernel sigset
/// at `mask` (`fd` = `None`), or a new mask for the existing signalfd `fd`.
///
/// The kernel only reads `mask`; an invalid address gives `EFAULT`.
///
/// # Errors
/// `EBADF`, `EINVAL`, `EMFILE`, `ENFILE`, `ENODEV`, `ENOMEM`. See signalfd(2).
pub async fn signalfd4(
    sysif: &dyn SyscallInterface,
    fd: Option<FileDescriptor>,
    mask: Address,
    flags: SFD,
) -> Result<FileDescriptor, SyscallError> {
    let args = [
        opt_fd_arg(fd),
        mask.arg(),
        KERNEL_SIGSET_SIZE as i64,
        flags.bits() as i64,
    ];
    if fd.is_none() {
        // SAFETY: signalfd4 only reads `mask`; without `fd` it creates a new fd, owned by
        // nobody but the caller.
        unsafe { call_new_fd(sysif, libc::SYS_signalfd4, args) }.await
    } else {
        // SAFETY: signalfd4 only reads `mask`; with `fd` it changes an existing signalfd's
        // mask, never closing or replacing an fd.
        unsafe { call(sysif, libc::SYS_signalfd4, args) }.await
    }
}

/// `inotify_init1(flags)` — a new inotify instance; flags are `O::NONBLOCK` and
/// `O::CLOEXEC` (`IN_NONBLOCK`, `IN_CLOEXEC`).
///
/// # Errors
/// `EINVAL`, `EMFILE`, `ENFILE`, `ENOMEM`. See inotify_init(2).
pub async fn inotify_init1(
    sysif: &dyn SyscallInterface,
    flags: O,
) -> Result<FileDescriptor, SyscallError> {
    // SAFETY: creates a new fd; touches no memory and no existing fd.
    unsafe { call_new_fd(sysif, libc::SYS_inotify_init1, [flags.bits() as i64]) }.await
}

/// `inotify_add_watch(fd, pathname, mask)` — watches the file at the NUL-terminated path
/// at `pathname`, or changes the mask of its existing watch.
///
/// The kernel only reads `pathname`; an invalid address gives `EFAULT`.
///
/// # Errors
/// `EACCES`, `EBADF`, `EEXIST`, `EFAULT`, `EINVAL`, `ENAMETOOLONG`, `ENOENT`, `ENOMEM`,
/// `ENOSPC`, `ENOTDIR`. See inotify_add_watch(2).
pub async fn inotify_add_watch(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    pathname: Address,
    mask: IN,
) -> Result<WatchDescriptor, SyscallError> {
    let args = [fd.arg(), pathname.arg(), mask.bits() as i64];
    // SAFETY: inotify_add_watch only reads `pathname`.
    unsafe { call(sysif, libc::SYS_inotify_add_watch, args) }.await
}

/// `inotify_rm_watch(fd, wd)` — removes a watch (an `IN::IGNORED` event follows).
///
/// # Errors
/// `EBADF`, `EINVAL`. See inotify_rm_watch(2).
pub async fn inotify_rm_watch(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    wd: WatchDescriptor,
) -> Result<(), SyscallError> {
    let args = [fd.arg(), wd.as_raw() as i64];
    // SAFETY: touches no memory and no fd table entry.
    unsafe { call(sysif, libc::SYS_inotify_rm_watch, args) }.await
}
