//! Event syscalls, on the local task and a clone child.

use std::os::unix::process::ExitStatusExt;

use rsyscall::handle::structs::{
    EpollEvent, InotifyEvent, Itimerspec, SignalfdSiginfo, Sigset, Timespec,
};
use rsyscall::near::{self, CLOCK, EFD, EPOLL, Errno, IN, PIDFD, Request, SFD, TFD};
use rsyscall::{CLONE, Error, O, Signal, Task, local_thread};
use rsyscall_tests::errors::errno;
use rsyscall_tests::tasks::{exit_cleanly, on_local_and_child, run};
use rsyscall_tests::tmp::TempDir;

#[test]
fn eventfd_counts() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let fd = task.eventfd(0, EFD::NONBLOCK).await.expect("eventfd");
        assert_eq!(
            errno(fd.eventfd_read().await),
            Some(Errno::EAGAIN),
            "{label}"
        );
        fd.eventfd_write(3).await.expect("write 3");
        assert_eq!(fd.eventfd_read().await.expect("read"), 3, "{label}");
        // The same through plain byte reads and writes: 8-byte native-endian counters.
        task.write_all_bytes(&fd, &2u64.to_ne_bytes())
            .await
            .expect("write bytes");
        task.write_all_bytes(&fd, &5u64.to_ne_bytes())
            .await
            .expect("write bytes");
        let bytes = task.read_bytes(&fd, 8).await.expect("read bytes");
        assert_eq!(bytes, 7u64.to_ne_bytes(), "{label}");
        // u64::MAX is not a valid increment: the kernel's EINVAL.
        assert_eq!(errno(fd.eventfd_write(u64::MAX).await), Some(Errno::EINVAL));

        let sem = task
            .eventfd(2, EFD::SEMAPHORE | EFD::NONBLOCK)
            .await
            .expect("eventfd semaphore");
        assert_eq!(sem.eventfd_read().await.expect("read"), 1, "{label}");
        assert_eq!(sem.eventfd_read().await.expect("read"), 1, "{label}");
        assert_eq!(
            errno(sem.eventfd_read().await),
            Some(Errno::EAGAIN),
            "{label}"
        );
    });
}

#[test]
fn timerfd_arms_reports_and_fires() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let fd = task
            .timerfd_create(CLOCK::MONOTONIC, TFD::empty())
            .await
            .expect("timerfd_create");
        assert!(
            !fd.timerfd_gettime().await.expect("gettime").is_armed(),
            "{label}: a new timer is disarmed"
        );
        let minute = Timespec { sec: 60, nsec: 0 };
        let old = fd
            .timerfd_settime(TFD::empty(), Itimerspec::oneshot(minute))
            .await
            .expect("settime");
        assert!(!old.is_armed(), "{label}");
        let now = fd.timerfd_gettime().await.expect("gettime");
        assert!(now.is_armed(), "{label}: armed after settime");
        assert!(now.value <= minute, "{label}: {now:?}");
        assert_eq!(now.interval, Timespec::default(), "{label}: one-shot");
        // Rearm to 10ms: the previous setting comes back, and a blocking read waits for
        // the single expiration.
        let ten_ms = Timespec {
            sec: 0,
            nsec: 10_000_000,
        };
        let old = fd
            .timerfd_settime(TFD::empty(), Itimerspec::oneshot(ten_ms))
            .await
            .expect("settime");
        assert!(old.is_armed() && old.value <= minute, "{label}: {old:?}");
        assert_eq!(fd.timerfd_read().await.expect("read"), 1, "{label}");
        assert!(
            !fd.timerfd_gettime().await.expect("gettime").is_armed(),
            "{label}: a fired one-shot timer is disarmed"
        );
        // An absolute time in the past fires at once.
        fd.timerfd_settime(
            TFD::TIMER_ABSTIME,
            Itimerspec::oneshot(Timespec { sec: 0, nsec: 1 }),
        )
        .await
        .expect("settime ABSTIME");
        assert_eq!(fd.timerfd_read().await.expect("read"), 1, "{label}");
        // Flags of the wrong call are refused; bad times are the kernel's EINVAL.
        let r = task
            .timerfd_create(CLOCK::MONOTONIC, TFD::TIMER_ABSTIME)
            .await;
        assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
        let r = fd
            .timerfd_settime(TFD::NONBLOCK, Itimerspec::oneshot(ten_ms))
            .await;
        assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
        let bad = Timespec {
            sec: 0,
            nsec: 1_000_000_000,
        };
        let r = fd
            .timerfd_settime(TFD::empty(), Itimerspec::oneshot(bad))
            .await;
        assert_eq!(errno(r), Some(Errno::EINVAL), "{label}");
    });
}

/// The events an epoll_wait (timeout 0) reports, through a buffer of room for `n`.
async fn poll(task: &Task, epfd: &rsyscall::FileDescriptor, n: usize) -> Vec<EpollEvent> {
    let buf = task.malloc_array::<EpollEvent>(n).await.expect("malloc");
    let (filled, _) = epfd.epoll_wait(buf, 0).await.expect("epoll_wait");
    filled.read().await.expect("read events")
}

#[test]
fn epoll_reports_readiness_until_deleted() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let epfd = task.epoll_create().await.expect("epoll_create");
        let pipe = task.pipe().await.expect("pipe");
        epfd.epoll_add(&pipe.read, EPOLL::IN, 42)
            .await
            .expect("epoll_add");
        assert_eq!(poll(task, &epfd, 4).await, vec![], "{label}: idle");
        task.write_all_bytes(&pipe.write, b"x")
            .await
            .expect("write");
        let events = poll(task, &epfd, 4).await;
        assert_eq!(events.len(), 1, "{label}: {events:?}");
        assert_eq!(events[0].data(), 42, "{label}");
        assert!(events[0].events().contains(EPOLL::IN), "{label}");
        // Adding twice is the kernel's EEXIST.
        let r = epfd.epoll_add(&pipe.read, EPOLL::IN, 1).await;
        assert_eq!(errno(r), Some(Errno::EEXIST), "{label}");
        // MOD changes the data and the interest: the read end never becomes writable.
        epfd.epoll_modify(&pipe.read, EPOLL::IN, 7)
            .await
            .expect("epoll_modify");
        let events = poll(task, &epfd, 1).await;
        assert_eq!(events.len(), 1, "{label}");
        assert_eq!(events[0].data(), 7, "{label}");
        epfd.epoll_modify(&pipe.read, EPOLL::OUT, 7)
            .await
            .expect("epoll_modify");
        assert_eq!(poll(task, &epfd, 4).await, vec![], "{label}");
        // Two registrations, both ready: both reported, with their own data.
        epfd.epoll_add(&pipe.write, EPOLL::OUT, 9)
            .await
            .expect("epoll_add write end");
        epfd.epoll_modify(&pipe.read, EPOLL::IN, 7)
            .await
            .expect("epoll_modify");
        let mut data: Vec<u64> = poll(task, &epfd, 4)
            .await
            .iter()
            .map(EpollEvent::data)
            .collect();
        data.sort_unstable();
        assert_eq!(data, vec![7, 9], "{label}");
        // DEL stops the reports although the pipe is still readable.
        epfd.epoll_delete(&pipe.read).await.expect("epoll_delete");
        epfd.epoll_delete(&pipe.write).await.expect("epoll_delete");
        assert_eq!(poll(task, &epfd, 4).await, vec![], "{label}: deleted");
        let r = epfd.epoll_delete(&pipe.read).await;
        assert_eq!(errno(r), Some(Errno::ENOENT), "{label}");
        // epoll_pwait; the sigmask variant only in the child, whose mask is ours to touch.
        epfd.epoll_add(&pipe.read, EPOLL::IN, 5)
            .await
            .expect("epoll_add");
        let mask = (label == "child").then(|| Sigset::from([Signal::SIGUSR2]));
        let buf = task.malloc_array::<EpollEvent>(2).await.expect("malloc");
        let (filled, rest) = epfd.epoll_pwait(buf, -1, mask).await.expect("pwait");
        let events = filled.read().await.expect("read");
        assert_eq!(events.len(), 1, "{label}");
        assert_eq!(events[0].data(), 5, "{label}");
        assert_eq!(rest.size(), std::mem::size_of::<EpollEvent>(), "{label}");
    });
}

#[test]
fn epoll_refuses_bad_input_before_sending() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let epfd = task.epoll_create().await.expect("epoll_create");
        // No room for an event: a zero-length array, or fewer bytes than one event.
        let empty = task.malloc_array::<EpollEvent>(0).await.expect("malloc");
        let r = epfd.epoll_wait(empty, 0).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{label}: {r:?}"
        );
        let short = task
            .malloc_bytes(11)
            .await
            .expect("malloc")
            .cast::<[EpollEvent]>();
        let r = epfd.epoll_pwait(short, 0, None).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{label}: {r:?}"
        );
        // ADD and MOD need an event.
        let pipe = task.pipe().await.expect("pipe");
        let r = epfd.epoll_ctl(near::EPOLL_CTL::ADD, &pipe.read, None).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{label}: {r:?}"
        );
        // A non-epoll fd is the kernel's EINVAL.
        let buf = task.malloc_array::<EpollEvent>(1).await.expect("malloc");
        let r = pipe.read.epoll_wait(buf, 0).await;
        assert_eq!(errno(r), Some(Errno::EINVAL), "{label}");
        if label == "child" {
            // An fd of another table is a mismatch, found before sending.
            let local = local_thread().task().pipe().await.expect("local pipe");
            let r = epfd.epoll_add(&local.read, EPOLL::IN, 0).await;
            assert!(matches!(r, Err(Error::Mismatch(_))), "{r:?}");
        }
    });
}

/// Blocks `sigs` in `task` with a raw `rt_sigprocmask`.
async fn block_signals(task: &Task, sigs: Sigset) {
    let set = task.ptr(&sigs).await.expect("ptr");
    let req = Request::new(
        libc::SYS_rt_sigprocmask,
        [libc::SIG_BLOCK as i64, set.near().arg(), 0, 8, 0, 0],
    );
    // SAFETY: the task is a clone child of this test, whose signal mask nothing else
    // relies on; the kernel reads 8 bytes at `set`, a live allocation of its address space
    // kept until the call returns, and writes nothing (no old-set pointer).
    unsafe { task.sysif().syscall(req) }
        .await
        .expect("rt_sigprocmask");
}

/// Reads one record from a nonblocking signalfd.
async fn read_siginfo(
    task: &Task,
    fd: &rsyscall::FileDescriptor,
) -> Result<Vec<SignalfdSiginfo>, Error> {
    let buf = task.malloc_array::<SignalfdSiginfo>(2).await?;
    let (filled, _) = fd.signalfd_read(buf).await?;
    filled.read().await
}

#[test]
fn signalfd_reports_a_blocked_signal_in_a_child() {
    // Only in a child: blocking signals in the test process is not ours to do.
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let task = child.task();
        let pid = child.pid().expect("the child's pid");
        block_signals(task, Sigset::from([Signal::SIGUSR1, Signal::SIGUSR2])).await;
        let fd = task
            .signalfd(Sigset::from([Signal::SIGUSR1]), SFD::NONBLOCK)
            .await
            .expect("signalfd");
        assert_eq!(errno(read_siginfo(task, &fd).await), Some(Errno::EAGAIN));
        let local = local_thread();
        local.task().kill(pid, Signal::SIGUSR1).await.expect("kill");
        let infos = read_siginfo(task, &fd).await.expect("read");
        assert_eq!(infos.len(), 1, "{infos:?}");
        assert_eq!(infos[0].signal(), Some(Signal::SIGUSR1));
        assert_eq!(infos[0].ssi_signo, libc::SIGUSR1 as u32);
        assert_eq!(infos[0].ssi_pid, std::process::id());
        assert_eq!(infos[0].ssi_code, libc::SI_USER);
        // A new mask: SIGUSR2 is reported, SIGUSR1 (still blocked, pending) is not.
        fd.signalfd_set_mask(Sigset::from([Signal::SIGUSR2]))
            .await
            .expect("signalfd_set_mask");
        local.task().kill(pid, Signal::SIGUSR1).await.expect("kill");
        assert_eq!(errno(read_siginfo(task, &fd).await), Some(Errno::EAGAIN));
        local.task().kill(pid, Signal::SIGUSR2).await.expect("kill");
        let infos = read_siginfo(task, &fd).await.expect("read");
        assert_eq!(infos.len(), 1, "{infos:?}");
        assert_eq!(infos[0].signal(), Some(Signal::SIGUSR2));
        // Back to SIGUSR1: the pending one is there.
        fd.signalfd_set_mask(Sigset::from([Signal::SIGUSR1]))
            .await
            .expect("signalfd_set_mask");
        let infos = read_siginfo(task, &fd).await.expect("read");
        assert_eq!(infos[0].signal(), Some(Signal::SIGUSR1));
        // A buffer too small for one record is refused before sending.
        let small = task.malloc_bytes(64).await.expect("malloc").cast();
        let r = fd.signalfd_read(small).await;
        assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
        drop(fd);
        exit_cleanly(child, "child").await;
    });
}

async fn read_inotify(task: &Task, fd: &rsyscall::FileDescriptor) -> Vec<InotifyEvent> {
    let buf = task.malloc_bytes(4096).await.expect("malloc").cast();
    let (filled, _) = fd.inotify_read(buf).await.expect("inotify_read");
    filled.read().await.expect("parse events")
}

#[test]
fn inotify_reports_a_created_file_by_name() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let dir = TempDir::new("inotify");
        let fd = task.inotify_init(O::NONBLOCK).await.expect("inotify_init");
        let wd = fd
            .inotify_add_watch(dir.path(), IN::CREATE | IN::DELETE)
            .await
            .expect("inotify_add_watch");
        std::fs::write(dir.join("new-file"), b"x").expect("create");
        let events = read_inotify(task, &fd).await;
        assert_eq!(events.len(), 1, "{label}: {events:?}");
        assert_eq!(events[0].wd, wd, "{label}");
        assert!(events[0].mask.contains(IN::CREATE), "{label}");
        assert_eq!(
            events[0].name.as_deref(),
            Some(std::ffi::OsStr::new("new-file")),
            "{label}"
        );
        // Removing the watch queues IN_IGNORED (about the watch itself: no name).
        fd.inotify_rm_watch(wd).await.expect("inotify_rm_watch");
        let events = read_inotify(task, &fd).await;
        assert!(
            events
                .iter()
                .any(|e| e.wd == wd && e.mask.contains(IN::IGNORED) && e.name.is_none()),
            "{label}: {events:?}"
        );
        std::fs::remove_file(dir.join("new-file")).expect("rm");
        let r = read_inotify_raw(task, &fd).await;
        assert_eq!(errno(r), Some(Errno::EAGAIN), "{label}: no more events");
        assert_eq!(
            errno(fd.inotify_rm_watch(wd).await),
            Some(Errno::EINVAL),
            "{label}"
        );
        // Bad input: a NUL in the path is refused before sending; a missing file is the
        // kernel's ENOENT; a buffer smaller than a header is refused.
        let r = fd.inotify_add_watch(b"/tmp/a\0b", IN::CREATE).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{label}: {r:?}"
        );
        let r = fd
            .inotify_add_watch(b"/nonexistent/rsyscall-test", IN::CREATE)
            .await;
        assert_eq!(errno(r), Some(Errno::ENOENT), "{label}");
        let small = task.malloc_bytes(8).await.expect("malloc").cast();
        let r = fd.inotify_read(small).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{label}: {r:?}"
        );
        let r = task.inotify_init(O::RDWR).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{label}: {r:?}"
        );
        std::fs::remove_dir(dir.path()).expect("rmdir");
    });
}

async fn read_inotify_raw(
    task: &Task,
    fd: &rsyscall::FileDescriptor,
) -> Result<Vec<InotifyEvent>, Error> {
    let buf = task.malloc_bytes(4096).await?.cast();
    let (filled, _) = fd.inotify_read(buf).await?;
    filled.read().await
}

#[test]
fn pidfd_kills_a_sleeping_process() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        let pid = near::Pid::new(sleeper.id() as i32);
        let pidfd = task
            .pidfd_open(pid, PIDFD::NONBLOCK)
            .await
            .expect("pidfd_open");
        pidfd
            .pidfd_send_signal(Signal::SIGKILL)
            .await
            .expect("pidfd_send_signal");
        let status = sleeper.wait().expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{label}: {status:?}");
        // Once reaped, the pidfd still names that process, which is gone: ESRCH, never a
        // process that reused the pid.
        let r = pidfd.pidfd_send_signal(Signal::SIGKILL).await;
        assert_eq!(errno(r), Some(Errno::ESRCH), "{label}");
        // A non-pidfd is the kernel's EBADF.
        let pipe = task.pipe().await.expect("pipe");
        let r = pipe.read.pidfd_send_signal(Signal::SIGUSR1).await;
        assert_eq!(errno(r), Some(Errno::EBADF), "{label}");
    });
}
