//! Event syscalls: epoll, eventfd, timerfd, signalfd, inotify, pidfds.
//!
//! Creating an event fd is a method on [`Task`] (the fd is always close-on-exec); using it
//! is a method on the [`FileDescriptor`]. Methods that read records (`eventfd_read`,
//! `timerfd_read`, `signalfd_read`, `inotify_read`, `epoll_wait`) lend their buffer to the
//! syscall like [`FileDescriptor::read`] does.

use rsyscall_near::{
    self as near, CLOCK, EFD, EPOLL_CTL, IN, O, PIDFD, SFD, Signal, TFD, WatchDescriptor,
};

use super::{Task, read_out};
use crate::error::{Error, Result};
use crate::fd::FileDescriptor;
use crate::pointer::{Pointer, ReadablePointer};
use crate::structs::{
    EpollEvent, InotifyEvent, InotifyEventHeader, Itimerspec, PathArg, SignalfdSiginfo, Sigset,
    Struct,
};

/// The `maxevents` of an `epoll_wait` into `size` bytes.
///
/// # Errors
/// [`Error::InvalidArgument`] if no event fits or the count exceeds `INT_MAX`.
fn epoll_maxevents(what: &'static str, size: usize) -> Result<i32> {
    let each = std::mem::size_of::<EpollEvent>();
    let n = size / each;
    if n == 0 {
        return Err(Error::invalid(
            what,
            format!("a {size}-byte buffer has no room for a {each}-byte epoll_event"),
        ));
    }
    i32::try_from(n).map_err(|_| {
        Error::invalid(
            what,
            format!("{n} events is more than maxevents can express (INT_MAX)"),
        )
    })
}

impl FileDescriptor {
    /// `read(fd, buf, len)` for fds that return whole records of at least `min` bytes.
    async fn read_records<T: ?Sized + Struct>(
        &self,
        what: &'static str,
        buf: Pointer<T>,
        min: usize,
    ) -> Result<(ReadablePointer<T>, Pointer<T>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let addr = task.check_ptr(&buf)?;
        let len = buf.size();
        if len < min {
            return Err(Error::invalid(
                what,
                format!("a {len}-byte buffer is smaller than one {min}-byte record"),
            ));
        }
        // SAFETY: `addr` is `len` bytes of the task's address space, lent until completion.
        let call = unsafe { near::read(task.sysif(), fd, addr, len) };
        let (n, buf) = task.lent("read", buf, call).await?;
        buf.filled(n.min(len))
    }

    /// Writes one `u64` (eventfd counters).
    async fn write_u64(&self, what: &'static str, value: u64) -> Result<()> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (buf, addr) = task.ptr_at(&value).await?;
        let call = near::write(task.sysif(), fd, addr, 8);
        let (n, _) = task.lent("write", buf, call).await?;
        if n != 8 {
            return Err(Error::invalid(
                what,
                format!("the kernel took {n} of 8 bytes"),
            ));
        }
        Ok(())
    }

    /// Reads one `u64` (eventfd counters, timerfd expirations).
    async fn read_u64(&self, what: &'static str) -> Result<u64> {
        let buf = self.task().malloc::<u64>().await?;
        let (filled, _) = self.read_records(what, buf, 8).await?;
        if filled.size() != 8 {
            return Err(Error::invalid(
                what,
                format!("read {} bytes instead of 8", filled.size()),
            ));
        }
        filled.read().await
    }

    /// `epoll_ctl(epfd, op, fd, event)` — registers (`ADD`), changes (`MOD`) or deregisters
    /// (`DEL`) `fd` on this epoll fd; `event` holds the events of interest and the data
    /// reported with them, and is ignored for `DEL`.
    ///
    /// epoll keys registrations on the fd number and its open file description: deregister
    /// before closing an fd that other fds still share the description with.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `ADD`/`MOD` without an event;
    /// [`Error::Mismatch`](crate::Error::Mismatch) if either fd belongs to another table;
    /// `EBADF`, `EEXIST`, `EINVAL`, `ELOOP`, `ENOENT`, `ENOMEM`, `ENOSPC`, `EPERM`. See
    /// epoll_ctl(2).
    pub async fn epoll_ctl(
        &self,
        op: EPOLL_CTL,
        fd: &FileDescriptor,
        event: Option<EpollEvent>,
    ) -> Result<()> {
        let task = self.task();
        let epfd = task.check_fd(self)?;
        let nfd = task.check_fd(fd)?;
        let event = match (op, event) {
            (EPOLL_CTL::DEL, _) => None,
            (_, Some(ev)) => Some(task.ptr(&ev).await?),
            (_, None) => {
                return Err(Error::invalid(
                    "epoll_ctl",
                    format!("{op:?} needs an event"),
                ));
            }
        };
        let addr = match &event {
            Some(p) => task.check_ptr(p.pointer())?,
            None => near::Address::NULL,
        };
        let call = near::epoll_ctl(task.sysif(), epfd, op, nfd, addr);
        task.lent("epoll_ctl", event, call).await?;
        Ok(())
    }

    /// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})` — registers `fd`.
    ///
    /// # Errors
    /// As [`FileDescriptor::epoll_ctl`].
    pub async fn epoll_add(
        &self,
        fd: &FileDescriptor,
        events: near::EPOLL,
        data: u64,
    ) -> Result<()> {
        self.epoll_ctl(EPOLL_CTL::ADD, fd, Some(EpollEvent::new(events, data)))
            .await
    }

    /// `epoll_ctl(epfd, EPOLL_CTL_MOD, fd, {events, data})` — changes `fd`'s registration.
    ///
    /// # Errors
    /// As [`FileDescriptor::epoll_ctl`].
    pub async fn epoll_modify(
        &self,
        fd: &FileDescriptor,
        events: near::EPOLL,
        data: u64,
    ) -> Result<()> {
        self.epoll_ctl(EPOLL_CTL::MOD, fd, Some(EpollEvent::new(events, data)))
            .await
    }

    /// `epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL)` — deregisters `fd`.
    ///
    /// # Errors
    /// As [`FileDescriptor::epoll_ctl`].
    pub async fn epoll_delete(&self, fd: &FileDescriptor) -> Result<()> {
        self.epoll_ctl(EPOLL_CTL::DEL, fd, None).await
    }

    /// `epoll_wait(epfd, events, maxevents, timeout)` — waits up to `timeout_ms`
    /// milliseconds (forever if negative; not at all if zero) for events, as many as fit
    /// in `events`. Returns the filled events and the rest of the buffer.
    ///
    /// On a remote task the wait blocks that task's syscall server; on the local task it
    /// blocks the calling thread.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `events` has no room for an event or room for more
    /// than `INT_MAX`; [`Error::Mismatch`](crate::Error::Mismatch) for another table or
    /// address space; `EBADF`, `EINTR`, `EINVAL`. See epoll_wait(2).
    pub async fn epoll_wait(
        &self,
        events: Pointer<[EpollEvent]>,
        timeout_ms: i32,
    ) -> Result<(ReadablePointer<[EpollEvent]>, Pointer<[EpollEvent]>)> {
        self.epoll_pwait_inner("epoll_wait", events, timeout_ms, None)
            .await
    }

    /// `epoll_pwait(epfd, events, maxevents, timeout, sigmask, 8)` — like
    /// [`FileDescriptor::epoll_wait`], with the task's signal mask replaced by `sigmask`
    /// for the duration of the wait (unchanged if `None`).
    ///
    /// # Errors
    /// As [`FileDescriptor::epoll_wait`]. See epoll_pwait(2).
    pub async fn epoll_pwait(
        &self,
        events: Pointer<[EpollEvent]>,
        timeout_ms: i32,
        sigmask: Option<Sigset>,
    ) -> Result<(ReadablePointer<[EpollEvent]>, Pointer<[EpollEvent]>)> {
        self.epoll_pwait_inner("epoll_pwait", events, timeout_ms, Some(sigmask))
            .await
    }

    /// `epoll_wait` (`sigmask` = `None`) or `epoll_pwait`.
    async fn epoll_pwait_inner(
        &self,
        what: &'static str,
        events: Pointer<[EpollEvent]>,
        timeout_ms: i32,
        sigmask: Option<Option<Sigset>>,
    ) -> Result<(ReadablePointer<[EpollEvent]>, Pointer<[EpollEvent]>)> {
        let task = self.task();
        let epfd = task.check_fd(self)?;
        let addr = task.check_ptr(&events)?;
        let maxevents = epoll_maxevents(what, events.size())?;
        let mask = match sigmask.flatten() {
            Some(s) => Some(task.ptr(&s).await?),
            None => None,
        };
        let mask_addr = match &mask {
            Some(p) => task.check_ptr(p.pointer())?,
            None => near::Address::NULL,
        };
        let call = async {
            match sigmask {
                None => {
                    // SAFETY: `addr` holds `maxevents` epoll_events of the task's memory,
                    // lent until completion.
                    unsafe { near::epoll_wait(task.sysif(), epfd, addr, maxevents, timeout_ms) }
                        .await
                }
                Some(_) => {
                    // SAFETY: as above; the sigset, if any, is lent too.
                    unsafe {
                        near::epoll_pwait(
                            task.sysif(),
                            epfd,
                            addr,
                            maxevents,
                            timeout_ms,
                            mask_addr,
                        )
                    }
                    .await
                }
            }
        };
        let (n, (events, _mask)) = task.lent(what, (events, mask), call).await?;
        let n = n.min(maxevents as usize);
        events.filled(n * std::mem::size_of::<EpollEvent>())
    }

    /// `write(fd, &value, 8)` — adds `value` to this eventfd's counter (blocking, or
    /// `EAGAIN` if nonblocking, while the sum would exceed `u64::MAX - 1`).
    ///
    /// # Errors
    /// `EAGAIN`, `EINVAL` (for `u64::MAX`), `EBADF`. See eventfd(2).
    pub async fn eventfd_write(&self, value: u64) -> Result<()> {
        self.write_u64("eventfd_write", value).await
    }

    /// `read(fd, &value, 8)` — takes this eventfd's counter (resetting it to zero), or 1
    /// with `EFD::SEMAPHORE` (decrementing it); blocks, or `EAGAIN` if nonblocking, while
    /// it is zero.
    ///
    /// # Errors
    /// `EAGAIN`, `EBADF`, `EINTR`. See eventfd(2).
    pub async fn eventfd_read(&self) -> Result<u64> {
        self.read_u64("eventfd_read").await
    }

    /// `timerfd_settime(fd, flags, new, old)` — arms (or, with a zero `new.value`, disarms)
    /// this timer fd; returns the previous setting. `flags` may hold `TFD::TIMER_ABSTIME`
    /// (`new.value` is an absolute time of the timer's clock) and `TFD::TIMER_CANCEL_ON_SET`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for flags other than the `TIMER_` ones; `EBADF`,
    /// `ECANCELED`, `EINVAL` (for example nanoseconds outside `0..1e9`). See
    /// timerfd_create(2).
    pub async fn timerfd_settime(&self, flags: TFD, new: Itimerspec) -> Result<Itimerspec> {
        let allowed = TFD::TIMER_ABSTIME | TFD::TIMER_CANCEL_ON_SET;
        if !flags.difference(allowed).is_empty() {
            return Err(Error::invalid(
                "timerfd_settime",
                format!("flags {flags:?}: only {allowed:?} are allowed"),
            ));
        }
        let task = self.task();
        let fd = task.check_fd(self)?;
        task.new_old("timerfd_settime", Some(new), |new, old| {
            // SAFETY: `old` is an itimerspec of the task's memory, lent until completion.
            unsafe { near::timerfd_settime(task.sysif(), fd, flags, new, old) }
        })
        .await
    }

    /// `timerfd_gettime(fd, curr)` — this timer's current setting: the time left until the
    /// next expiration (zero if disarmed) and the interval.
    ///
    /// # Errors
    /// `EBADF`, `EINVAL`. See timerfd_create(2).
    pub async fn timerfd_gettime(&self) -> Result<Itimerspec> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (curr, addr) = task.out::<Itimerspec>().await?;
        // SAFETY: `addr` is an itimerspec of the task's memory, lent until completion.
        let call = unsafe { near::timerfd_gettime(task.sysif(), fd, addr) };
        let ((), curr) = task.lent("timerfd_gettime", curr, call).await?;
        read_out(curr).await
    }

    /// `read(fd, &expirations, 8)` — the number of expirations of this timer since the
    /// last read (or settime); blocks, or `EAGAIN` if nonblocking, until there is one.
    ///
    /// # Errors
    /// `EAGAIN`, `ECANCELED` (with `TIMER_CANCEL_ON_SET`), `EBADF`, `EINTR`. See
    /// timerfd_create(2).
    pub async fn timerfd_read(&self) -> Result<u64> {
        self.read_u64("timerfd_read").await
    }

    /// `signalfd4(fd, mask, 8, 0)` — replaces the set of signals this signalfd reports.
    ///
    /// # Errors
    /// `EBADF`, `EINVAL` (not a signalfd). See signalfd(2).
    pub async fn signalfd_set_mask(&self, mask: Sigset) -> Result<()> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (mask, addr) = task.ptr_at(&mask).await?;
        let call = near::signalfd4(task.sysif(), Some(fd), addr, SFD::empty());
        task.lent("signalfd4", mask, call).await?;
        Ok(())
    }

    /// `read(fd, buf, len)` on a signalfd — takes pending signals of the mask (as many as
    /// fit in `buf`); blocks, or `EAGAIN` if nonblocking, while none is pending. Returns
    /// the filled records and the rest of the buffer.
    ///
    /// Only signals blocked in the reading task stay pending long enough to be read.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `buf` is smaller than one 128-byte
    /// [`SignalfdSiginfo`]; `EAGAIN`, `EBADF`, `EINTR`. See signalfd(2).
    pub async fn signalfd_read(
        &self,
        buf: Pointer<[SignalfdSiginfo]>,
    ) -> Result<(
        ReadablePointer<[SignalfdSiginfo]>,
        Pointer<[SignalfdSiginfo]>,
    )> {
        let min = std::mem::size_of::<SignalfdSiginfo>();
        self.read_records("signalfd_read", buf, min).await
    }

    /// `inotify_add_watch(fd, path, mask)` — watches `path` (any bytes without NUL) for
    /// the events in `mask`, or changes its existing watch; returns the watch descriptor.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path with a NUL byte; `EACCES`, `EBADF`, `EEXIST`
    /// (with `IN::MASK_CREATE`), `EINVAL`, `ENAMETOOLONG`, `ENOENT`, `ENOSPC`, `ENOTDIR`. See
    /// inotify_add_watch(2).
    pub async fn inotify_add_watch(&self, path: impl PathArg, mask: IN) -> Result<WatchDescriptor> {
        let task = self.task();
        let path = path.path_bytes();
        let fd = task.check_fd(self)?;
        task.with_path("inotify_add_watch", path, |p| {
            near::inotify_add_watch(task.sysif(), fd, p, mask)
        })
        .await
    }

    /// `inotify_rm_watch(fd, wd)` — removes a watch; an `IN::IGNORED` event follows.
    ///
    /// # Errors
    /// `EBADF`, `EINVAL` (no such watch). See inotify_rm_watch(2).
    pub async fn inotify_rm_watch(&self, wd: WatchDescriptor) -> Result<()> {
        self.call("inotify_rm_watch", |s, fd| {
            near::inotify_rm_watch(s, fd, wd)
        })
        .await
    }

    /// `read(fd, buf, len)` on an inotify fd — takes queued events (as many as fit in
    /// `buf`); blocks, or `EAGAIN` if nonblocking, while there is none. Returns the filled
    /// part, which parses as a list of [`InotifyEvent`]s, and the rest of the buffer.
    ///
    /// A buffer of `16 + NAME_MAX + 1` (272) bytes always has room for the next event.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `buf` is smaller than an event header (16 bytes);
    /// `EAGAIN`, `EBADF`, `EINTR`, `EINVAL` (the next event does not fit). See inotify(7).
    pub async fn inotify_read(
        &self,
        buf: Pointer<[InotifyEvent]>,
    ) -> Result<(ReadablePointer<[InotifyEvent]>, Pointer<[InotifyEvent]>)> {
        self.read_records("inotify_read", buf, InotifyEventHeader::SIZE)
            .await
    }

    /// `pidfd_send_signal(pidfd, sig, NULL, 0)` — signals the process this pidfd refers
    /// to; unlike `kill`, never a process that reused its pid. `sig` is a [`Signal`], or
    /// `None` for the null signal 0: nothing is sent, only whether the process still
    /// exists (a zombie does, until reaped) is checked.
    ///
    /// # Errors
    /// `ESRCH` (the process has been reaped), `EBADF`, `EINVAL` (not a pidfd), `EPERM`.
    /// See pidfd_send_signal(2).
    pub async fn pidfd_send_signal(&self, sig: impl Into<Option<Signal>>) -> Result<()> {
        let sig = sig.into();
        self.call("pidfd_send_signal", |s, fd| {
            near::pidfd_send_signal(s, fd, sig)
        })
        .await
    }
}

impl Task {
    /// `epoll_create1(EPOLL_CLOEXEC)` — a new epoll fd.
    ///
    /// # Errors
    /// `EMFILE`, `ENFILE`, `ENOMEM`. See epoll_create(2).
    pub async fn epoll_create(&self) -> Result<FileDescriptor> {
        let call = near::epoll_create1(self.sysif(), O::CLOEXEC);
        self.new_fd("epoll_create1", call).await
    }

    /// `eventfd2(initval, flags | EFD_CLOEXEC)` — a new eventfd with counter `initval`;
    /// flags may hold `EFD::NONBLOCK` and `EFD::SEMAPHORE`.
    ///
    /// # Errors
    /// `EINVAL`, `EMFILE`, `ENFILE`, `ENOMEM`. See eventfd(2).
    pub async fn eventfd(&self, initval: u32, flags: EFD) -> Result<FileDescriptor> {
        let call = near::eventfd2(self.sysif(), initval, flags | EFD::CLOEXEC);
        self.new_fd("eventfd2", call).await
    }

    /// `timerfd_create(clock, flags | TFD_CLOEXEC)` — a new, disarmed timer fd; flags may
    /// hold `TFD::NONBLOCK`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for the `TIMER_` flags (they belong to
    /// [`FileDescriptor::timerfd_settime`]); `EINVAL`, `EMFILE`, `ENFILE`, `ENOMEM`,
    /// `EPERM` (alarm clocks without `CAP_WAKE_ALARM`). See timerfd_create(2).
    pub async fn timerfd_create(&self, clock: CLOCK, flags: TFD) -> Result<FileDescriptor> {
        let allowed = TFD::NONBLOCK | TFD::CLOEXEC;
        if !flags.difference(allowed).is_empty() {
            return Err(Error::invalid(
                "timerfd_create",
                format!("flags {flags:?}: only {allowed:?} are allowed"),
            ));
        }
        let call = near::timerfd_create(self.sysif(), clock, flags | TFD::CLOEXEC);
        self.new_fd("timerfd_create", call).await
    }

    /// `signalfd4(-1, mask, 8, flags | SFD_CLOEXEC)` — a new signalfd reporting the
    /// signals in `mask` that are pending for this task; flags may hold `SFD::NONBLOCK`.
    ///
    /// The signals must be blocked in the task (or they are delivered as usual instead of
    /// staying pending); this method does not block them.
    ///
    /// # Errors
    /// `EINVAL`, `EMFILE`, `ENFILE`, `ENOMEM`. See signalfd(2).
    pub async fn signalfd(&self, mask: Sigset, flags: SFD) -> Result<FileDescriptor> {
        let (mask, addr) = self.ptr_at(&mask).await?;
        let call = near::signalfd4(self.sysif(), None, addr, flags | SFD::CLOEXEC);
        let (fd, _) = self.lent("signalfd4", mask, call).await?;
        Ok(self.own(fd))
    }

    /// `inotify_init1(flags | IN_CLOEXEC)` — a new inotify fd; flags may hold
    /// `O::NONBLOCK` (`IN_NONBLOCK`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for other flags than `O::NONBLOCK` and `O::CLOEXEC`;
    /// `EMFILE` (also for the per-user instance limit), `ENFILE`, `ENOMEM`. See
    /// inotify_init(2).
    pub async fn inotify_init(&self, flags: O) -> Result<FileDescriptor> {
        let allowed = O::NONBLOCK | O::CLOEXEC;
        if !flags.difference(allowed).is_empty() {
            return Err(Error::invalid(
                "inotify_init1",
                format!("flags {flags:?}: only {allowed:?} are allowed"),
            ));
        }
        let call = near::inotify_init1(self.sysif(), flags | O::CLOEXEC);
        self.new_fd("inotify_init1", call).await
    }

    /// `pidfd_open(pid, flags)` — a pidfd (close-on-exec) for the process `pid` of this
    /// task's pid namespace, with flags (`PIDFD::NONBLOCK` makes `waitid` on it
    /// non-blocking; `PIDFD::empty()` for none).
    ///
    /// The pid must name the intended process when the call runs (it is safe for an
    /// unreaped child); from then on the pidfd keeps referring to that process.
    ///
    /// # Errors
    /// `EINVAL`, `EMFILE`, `ENFILE`, `ENODEV`, `ENOMEM`, `ESRCH`. See pidfd_open(2).
    pub async fn pidfd_open(&self, pid: near::Pid, flags: PIDFD) -> Result<FileDescriptor> {
        let call = near::pidfd_open(self.sysif(), pid, flags.bits());
        self.new_fd("pidfd_open", call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_maxevents_is_checked() {
        let each = std::mem::size_of::<EpollEvent>();
        assert!(matches!(
            epoll_maxevents("t", 0),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            epoll_maxevents("t", each - 1),
            Err(Error::InvalidArgument { .. })
        ));
        assert_eq!(epoll_maxevents("t", each).expect("one"), 1);
        assert_eq!(epoll_maxevents("t", 3 * each + 5).expect("three"), 3);
        let max = i32::MAX as usize * each;
        assert_eq!(epoll_maxevents("t", max).expect("INT_MAX"), i32::MAX);
        assert!(matches!(
            epoll_maxevents("t", max + each),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
