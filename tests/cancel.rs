//! Cancellation (issue 7 section 1): every future that lends memory to a child or makes a
//! resource across an await may be dropped after any number of polls. Each test drops one
//! such operation after 1, 2, ... n polls (until it completes), and after each drop checks
//! that our fds, the watched thread's fds, our descendant processes, zombies and the
//! allocator's use come back to their baseline, and that the next operation of the same kind
//! works. A test binary of its own, its tests serialized: they count process-wide resources.

use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rsyscall::near::{AF, SockType};
use rsyscall::{CLONE, ChildThread, O, SOCK, Thread, local_thread};
use rsyscall_tests::procs::{self, open_fds_of};
use rsyscall_tests::tasks::{exit_cleanly, poll_at_most, run};

/// No operation here needs more polls than this; reaching it fails the test.
const MAX_POLLS: usize = 400;
/// Runs that must complete within n polls before n is taken as the number of polls needed.
const COMPLETIONS: usize = 3;

/// Serializes the tests of this binary: each counts the whole process's fds and children.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes every syscall of an operation a point where it can be dropped: pins this
/// process's threads and `watch`'s process to one CPU, where the test thread runs with the
/// real-time policy `SCHED_FIFO`. The service thread (which clones for the local thread)
/// and the threads under test then run only while the test thread waits, so a request
/// they answer always ends our poll with `Pending` first; they still get their fair share
/// against other processes. Without the privilege for `SCHED_FIFO`, the service thread
/// and `watch` get `SCHED_IDLE` instead (same effect, slower on a busy machine).
fn slow_down(watch: &Thread) {
    let cpu = {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity writes one into `set`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above, with the size of `set`.
        let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        assert_eq!(r, 0, "sched_getaffinity");
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU_ISSET reads the set.
            .find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .expect("some CPU")
    };
    // SAFETY: as above.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes the set.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    let pin = |tid: i32| {
        // SAFETY: passes a valid cpu_set_t of the size given.
        let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&one), &one) };
        assert_eq!(r, 0, "sched_setaffinity({tid})");
    };
    let policy = |tid: i32, policy: i32, priority: i32| {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        // SAFETY: passes a valid sched_param.
        unsafe { libc::sched_setscheduler(tid, policy, &param) == 0 }
    };
    // SAFETY: gettid takes no arguments.
    let me = unsafe { libc::gettid() };
    let fifo = policy(me, libc::SCHED_FIFO, 1);
    let mut service = None;
    for entry in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        pin(tid);
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with("rsyscall-servic") {
            service = Some(tid);
        }
    }
    let pid = watch.task().pid().as_raw();
    let remote = pid != std::process::id() as i32;
    if remote {
        pin(pid);
    }
    if !fifo {
        let idle = |tid: i32| assert!(policy(tid, libc::SCHED_IDLE, 0), "SCHED_IDLE for {tid}");
        if let Some(tid) = service {
            idle(tid);
        }
        if remote {
            idle(pid);
        }
    }
}

/// Our descendants, as /proc shows them: (live, zombies).
fn descendants() -> (usize, usize) {
    let all = procs::descendants();
    let zombies = all.iter().filter(|c| c.zombie).count();
    (all.len() - zombies, zombies)
}

/// What a cancelled operation must not leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    /// Open fds of this process.
    fds: usize,
    /// Open fds of the watched thread's table.
    thread_fds: usize,
    /// Live descendant processes.
    procs: usize,
    /// Zombie descendants.
    zombies: usize,
    /// Bytes in use in the local address space's allocator.
    bytes: usize,
}

impl Counts {
    fn within(&self, baseline: &Counts) -> bool {
        self.fds <= baseline.fds
            && self.thread_fds <= baseline.thread_fds
            && self.procs <= baseline.procs
            && self.zombies <= baseline.zombies
            && self.bytes <= baseline.bytes
    }
}

/// Counts, after flushing the closes queued on the local table and on `watch`'s.
async fn measure(watch: &Thread) -> Counts {
    let local = local_thread();
    local
        .task()
        .flush_closes()
        .await
        .expect("flush local closes");
    watch.task().flush_closes().await.expect("flush closes");
    // A request drives the thread's connection: the responses of dropped requests are
    // read, and the memory lent to them is freed.
    watch.task().getpid().await.expect("getpid");
    let (procs, zombies) = descendants();
    Counts {
        fds: open_fds_of(std::process::id() as i32),
        thread_fds: open_fds_of(watch.task().pid().as_raw()),
        procs,
        zombies,
        bytes: local.task().memory().bytes_in_use(),
    }
}

/// Waits (at most 10 s) until every count is back to `baseline`; background cleanup
/// (reaping, freeing after a futex helper exits) is asynchronous.
async fn back_to(baseline: &Counts, watch: &Thread, what: &str) {
    let mut now = measure(watch).await;
    for _ in 0..500 {
        if now.within(baseline) {
            return;
        }
        async_io::Timer::after(Duration::from_millis(20)).await;
        now = measure(watch).await;
    }
    panic!("{what}: leaked: baseline {baseline:?}, now {now:?}");
}

/// Drops the future `start()` makes after 1, 2, ... polls until one run completes; after
/// each drop, waits for the counts to come back to those taken before the first run and
/// runs `check`. The completed run's output goes to `finish`. Returns the number of polls
/// the operation took.
async fn drop_after_each_poll<T, S, SF, F, FF, K, KF>(
    what: &str,
    watch: &Thread,
    mut start: S,
    mut finish: F,
    mut check: K,
) -> usize
where
    S: FnMut() -> SF,
    SF: Future<Output = T>,
    F: FnMut(T) -> FF,
    FF: Future<Output = ()>,
    K: FnMut() -> KF,
    KF: Future<Output = ()>,
{
    slow_down(watch);
    let baseline = measure(watch).await;
    for n in 1..=MAX_POLLS {
        // A run may complete within n polls only because the other side was quick (the
        // service thread answering before the poll ended): n is the last number tried only
        // once several runs all completed.
        let mut completed = 0;
        while completed < COMPLETIONS {
            let mut fut = Box::pin(start());
            let done = poll_at_most(&mut fut, n).await;
            drop(fut);
            let label = format!("{what}, dropped after {n} polls");
            match done {
                Some(out) => {
                    completed += 1;
                    finish(out).await;
                    check().await;
                    back_to(&baseline, watch, &label).await;
                }
                None => {
                    back_to(&baseline, watch, &label).await;
                    check().await;
                    break;
                }
            }
        }
        if completed == COMPLETIONS {
            eprintln!("{what}: completes in {n} polls");
            return n;
        }
    }
    panic!("{what}: not complete after {MAX_POLLS} polls");
}

/// A clone of `parent` works: it runs syscalls in the new process, whose pid is the one
/// its parent sees; it then exits cleanly.
async fn clone_works(parent: &Thread, flags: CLONE, what: &str) {
    let child = parent
        .clone(flags)
        .await
        .unwrap_or_else(|e| panic!("{what}: clone after a cancelled one: {e}"));
    let pid = child
        .task()
        .getpid()
        .await
        .unwrap_or_else(|e| panic!("{what}: getpid in the new child: {e}"));
    assert_eq!(
        Some(pid),
        child.pid(),
        "{what}: getpid ran in another process"
    );
    exit_cleanly(child, what).await;
}

/// The reproducer, in safe code: a clone dropped after its first poll.
#[test]
fn clone_dropped_after_one_poll_leaves_later_clones_intact() {
    let _serial = serial();
    run(async {
        let l = local_thread();
        // Warm up: the service thread, arenas and lazily made state exist before counting.
        clone_works(&l, CLONE::empty(), "warm-up").await;
        let baseline = measure(&l).await;
        // The service thread may answer before the first poll ends: try until a clone is
        // still pending after it (dropping one that completed is not the case in point).
        let mut pending = false;
        for _ in 0..200 {
            let mut f = Box::pin(l.clone(CLONE::empty()));
            match futures_lite::future::poll_once(&mut f).await {
                None => {
                    drop(f);
                    pending = true;
                    break;
                }
                Some(r) => exit_cleanly(r.expect("clone"), "clone done in one poll").await,
            }
        }
        assert!(pending, "200 clones all completed in their first poll");
        let b = l.clone(CLONE::empty()).await.expect("clone");
        let pid = b.task().getpid().await.expect("getpid");
        assert_eq!(
            Some(pid),
            b.pid(),
            "getpid ran in the orphan of the dropped clone"
        );
        exit_cleanly(b, "second clone").await;
        back_to(&baseline, &l, "a clone dropped after one poll").await;
    })
}

/// Clones of the local thread, dropped after each number of polls, with flags `flags`.
fn local_clone_dropped_at_every_poll(flags: CLONE) {
    let _serial = serial();
    run(async {
        let l = local_thread();
        clone_works(&l, flags, "warm-up").await;
        let what = format!("clone({flags:?}) of the local thread");
        drop_after_each_poll(
            &what,
            &l,
            || {
                let l = local_thread();
                async move { l.clone(flags).await }
            },
            |r| async { exit_cleanly(r.expect("clone"), "completed clone").await },
            || async { clone_works(&local_thread(), flags, "next clone").await },
        )
        .await;
    })
}

#[test]
fn clone_of_local_thread_dropped_at_every_poll() {
    local_clone_dropped_at_every_poll(CLONE::empty());
}

#[test]
fn clone_files_of_local_thread_dropped_at_every_poll() {
    local_clone_dropped_at_every_poll(CLONE::FILES);
}

/// A clone into a new user namespace writes the child's id mappings after making it: one
/// more step that a drop must not cut off from the child's teardown.
#[test]
fn clone_newuser_of_local_thread_dropped_at_every_poll() {
    local_clone_dropped_at_every_poll(CLONE::NEWUSER);
}

/// Clones of a child thread (the remote path: the clone is a request on its connection),
/// dropped after each number of polls.
fn child_clone_dropped_at_every_poll(flags: CLONE) {
    let _serial = serial();
    run(async {
        let parent = local_thread()
            .clone(CLONE::empty())
            .await
            .expect("clone the parent");
        clone_works(&parent, flags, "warm-up").await;
        let what = format!("clone({flags:?}) of a child thread");
        let polls = drop_after_each_poll(
            &what,
            &parent,
            || {
                let p = parent.duplicate();
                async move { p.clone(flags).await }
            },
            |r| async { exit_cleanly(r.expect("clone"), "completed clone").await },
            || async { clone_works(&parent, flags, "next clone").await },
        )
        .await;
        assert!(
            polls > 1,
            "{what}: a remote clone cannot finish in one poll"
        );
        exit_cleanly(parent, "parent thread").await;
    })
}

#[test]
fn clone_of_child_thread_dropped_at_every_poll() {
    child_clone_dropped_at_every_poll(CLONE::empty());
}

#[test]
fn clone_files_of_child_thread_dropped_at_every_poll() {
    child_clone_dropped_at_every_poll(CLONE::FILES);
}

/// With `CLONE::PARENT` the child is ours (the child thread's parent's): a dropped clone's
/// child must be reaped by us, not by the thread that cloned it.
#[test]
fn clone_parent_of_child_thread_dropped_at_every_poll() {
    child_clone_dropped_at_every_poll(CLONE::PARENT);
}

/// From a child thread, the id mappings of a new user namespace are written through the
/// thread's connection: every one of those syscalls is a drop point.
#[test]
fn clone_newuser_of_child_thread_dropped_at_every_poll() {
    child_clone_dropped_at_every_poll(CLONE::NEWUSER);
}

/// A thread with a table of its own, for the fd-moving operations.
async fn child_thread() -> ChildThread {
    local_thread()
        .clone(CLONE::empty())
        .await
        .expect("clone a child thread")
}

/// `make_afd` on a thread reads what is written into a pipe of that thread, waiting for
/// the data on the thread's event loop (so the registration must watch the right file).
async fn make_afd_works(thread: &Thread, what: &str) {
    let pipe = thread.pipe().await.expect("pipe");
    let afd = thread
        .make_afd(pipe.read, true)
        .await
        .unwrap_or_else(|e| panic!("{what}: make_afd: {e}"));
    let reader = afd.read_some_bytes(16);
    let writer = async {
        // Let the reader find the pipe empty and wait for readiness first.
        async_io::Timer::after(Duration::from_millis(5)).await;
        thread.task().write_bytes(&pipe.write, b"afd").await
    };
    let waited = futures_lite::future::or(
        async { Some(futures_lite::future::zip(reader, writer).await) },
        async {
            async_io::Timer::after(Duration::from_secs(10)).await;
            None
        },
    )
    .await;
    let (got, wrote) =
        waited.unwrap_or_else(|| panic!("{what}: no readiness for 10 s: wrong fd watched"));
    assert_eq!(wrote.expect("write"), 3);
    assert_eq!(got.expect("read"), b"afd", "{what}");
    afd.close().await.expect("close");
}

#[test]
fn make_afd_on_child_thread_dropped_at_every_poll() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        make_afd_works(&t, "warm-up").await;
        // The pipe is made outside the measured window: make_afd owns the fd it is given.
        let pipes: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..64 {
                v.push(Some(t.pipe().await.expect("pipe")));
            }
            v
        };
        let pipes = std::cell::RefCell::new(pipes);
        let next = std::cell::Cell::new(0);
        drop_after_each_poll(
            "make_afd on a child thread",
            &t,
            || {
                let i = next.get();
                next.set(i + 1);
                let pipe = pipes.borrow_mut()[i]
                    .take()
                    .expect("make_afd took more than 64 polls");
                let t = t.duplicate();
                async move {
                    let made = t.make_afd(pipe.read, true).await;
                    (made, pipe.write)
                }
            },
            |(made, _write)| async { made.expect("make_afd").close().await.expect("close") },
            || async { make_afd_works(&t, "next make_afd").await },
        )
        .await;
        drop(pipes);
        exit_cleanly(t, "child thread").await;
    })
}

/// A channel to `thread` carries bytes both ways between its two ends.
async fn channel_works(thread: &Thread, ours: OwnedFd, theirs: rsyscall::FileDescriptor) {
    let ours = std::os::unix::net::UnixStream::from(ours);
    thread
        .task()
        .write_bytes(&theirs, b"up")
        .await
        .expect("write their end");
    let mut buf = [0u8; 2];
    std::io::Read::read_exact(&mut &ours, &mut buf).expect("read our end");
    assert_eq!(&buf, b"up", "the ends belong to different channels");
    std::io::Write::write_all(&mut &ours, b"dn").expect("write our end");
    let got = thread
        .task()
        .read_bytes(&theirs, 2)
        .await
        .expect("read their end");
    assert_eq!(got, b"dn", "the ends belong to different channels");
}

#[test]
fn open_channels_on_child_thread_dropped_at_every_poll() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        let check = || async {
            let mut chans = t.open_channels(2).await.expect("open_channels");
            for (ours, theirs) in chans.drain(..) {
                channel_works(&t, ours, theirs).await;
            }
        };
        check().await;
        drop_after_each_poll(
            "open_channels on a child thread",
            &t,
            || {
                let t = t.duplicate();
                async move { t.open_channels(2).await }
            },
            |r| async { drop(r.expect("open_channels")) },
            check,
        )
        .await;
        exit_cleanly(t, "child thread").await;
    })
}

#[test]
fn pass_fd_to_child_thread_dropped_at_every_poll() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        let local = local_thread();
        // Passes our end of a fresh socketpair and checks the thread got that one.
        let check = || async {
            let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
            let a = rsyscall::FileDescriptor::from_owned_fd(local.task(), a.into())
                .expect("own a local fd");
            let theirs = t.pass_fd(&a).await.expect("pass_fd");
            drop(a);
            channel_works(&t, b.into(), theirs).await;
        };
        check().await;
        let pipe = local.pipe().await.expect("pipe");
        drop_after_each_poll(
            "pass_fd to a child thread",
            &t,
            || {
                let t = t.duplicate();
                let fd = pipe.read.clone();
                async move { t.pass_fd(&fd).await }
            },
            |r| async { drop(r.expect("pass_fd")) },
            check,
        )
        .await;
        exit_cleanly(t, "child thread").await;
    })
}

/// `unshare(FILES)` of a thread that shared our table: it gets a table and a connection
/// of its own, in the background if the future is dropped.
#[test]
fn unshare_files_dropped_at_every_poll() {
    let _serial = serial();
    run(async {
        let local = local_thread();
        // Warm up: the service thread and lazily made state exist before counting.
        let t = local.clone(CLONE::FILES).await.expect("clone(FILES)");
        t.unshare(CLONE::FILES).await.expect("unshare");
        exit_cleanly(t, "warm-up").await;
        slow_down(&local);
        let baseline = measure(&local).await;
        for n in 1..=MAX_POLLS {
            let t = local.clone(CLONE::FILES).await.expect("clone(FILES)");
            let mut fut = Box::pin(t.unshare(CLONE::FILES));
            let done = poll_at_most(&mut fut, n).await;
            drop(fut);
            let label = format!("unshare(FILES), dropped after {n} polls");
            if let Some(r) = &done {
                r.as_ref().expect("unshare");
            }
            // Dropped after it started, the unshare finishes in the background: wait for it.
            // Dropped before, it never ran: the thread still uses our table.
            let mut waited = 0;
            while t.connection().is_none() && waited < 100 {
                async_io::Timer::after(Duration::from_millis(20)).await;
                waited += 1;
            }
            if t.connection().is_some() {
                let (ours, theirs) = t
                    .open_channels(1)
                    .await
                    .unwrap_or_else(|e| panic!("{label}: open_channels: {e}"))
                    .pop()
                    .expect("one channel");
                let pid = t.task().pid().as_raw();
                // The thread's end is in its own table now, not in ours.
                assert_ne!(
                    std::fs::read_link(format!("/proc/{pid}/fd/{}", theirs.near().as_raw())).ok(),
                    None,
                    "{label}: the moved fd is not in the thread's table"
                );
                channel_works(&t, ours, theirs).await;
            } else {
                assert!(done.is_none(), "{label}: completed without a connection");
                let fds = t.open_channels(1).await.expect("open_channels");
                let (ours, theirs) = fds.into_iter().next().expect("one channel");
                assert_eq!(
                    theirs.near().as_raw(),
                    theirs.as_local_fd().map(|f| f.as_raw_fd()).unwrap_or(-1),
                    "{label}: a thread still sharing our table moves fds directly"
                );
                channel_works(&t, ours, theirs).await;
            }
            exit_cleanly(t, &label).await;
            back_to(&baseline, &local, &label).await;
            if done.is_some() {
                return;
            }
        }
        panic!("unshare(FILES) not complete after {MAX_POLLS} polls");
    })
}

/// Every syscall method first sends the closes queued by dropped handles of its table
/// ([`rsyscall::Task::prepare`]); dropped during those closes, it must leave the ones not
/// sent yet queued, not lost.
#[test]
fn queued_closes_survive_a_dropped_prepare() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        slow_down(&t);
        let baseline = measure(&t).await;
        for n in 1..=MAX_POLLS {
            let mut pipes = Vec::new();
            for _ in 0..8 {
                pipes.push(t.pipe().await.expect("pipe"));
            }
            // 16 closes queued on the thread's table.
            drop(pipes);
            let mut fut = Box::pin(t.task().prepare());
            let done = poll_at_most(&mut fut, n).await;
            drop(fut);
            let label = format!("prepare with 16 queued closes, dropped after {n} polls");
            back_to(&baseline, &t, &label).await;
            if done.is_some() {
                assert!(n > 16, "{label}: 16 closes in fewer polls");
                exit_cleanly(t, "child thread").await;
                return;
            }
        }
        panic!("prepare not complete after {MAX_POLLS} polls");
    })
}

/// How many entries of the temporary directory start with `prefix`.
fn temp_entries(prefix: &str) -> usize {
    let dir = std::env::var_os("TMPDIR").unwrap_or_else(|| "/tmp".into());
    std::fs::read_dir(dir)
        .expect("list the temporary directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .count()
}

#[test]
fn mkdtemp_on_child_thread_dropped_at_every_poll() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        let prefix = format!("rsyscall-cancel-{}-", std::process::id());
        t.mkdtemp(&prefix)
            .await
            .expect("mkdtemp")
            .cleanup()
            .await
            .expect("cleanup");
        let prefix = prefix.as_str();
        drop_after_each_poll(
            "mkdtemp on a child thread",
            &t,
            || {
                let t = t.duplicate();
                async move { t.mkdtemp(prefix).await }
            },
            |r| async { r.expect("mkdtemp").cleanup().await.expect("cleanup") },
            || async {
                // A directory made by a dropped mkdtemp is removed once it finished.
                let mut left = temp_entries(prefix);
                for _ in 0..500 {
                    if left == 0 {
                        break;
                    }
                    async_io::Timer::after(Duration::from_millis(20)).await;
                    left = temp_entries(prefix);
                }
                assert_eq!(left, 0, "a dropped mkdtemp left its directory behind");
                let dir = t.mkdtemp(prefix).await.expect("next mkdtemp");
                assert!(dir.path().is_dir(), "mkdtemp made no directory");
                dir.cleanup().await.expect("cleanup");
            },
        )
        .await;
        exit_cleanly(t, "child thread").await;
    })
}

/// Memory lent to a remote syscall whose future is dropped after the request was sent is
/// freed once the response came, never before, and never leaked.
#[test]
fn memory_lent_to_a_dropped_remote_syscall_is_freed_after_its_response() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        let root = t.task().stat("/").await.expect("stat");
        drop_after_each_poll(
            "stat on a child thread",
            &t,
            || {
                let t = t.duplicate();
                async move { t.task().stat("/").await }
            },
            |r| async {
                r.expect("stat");
            },
            || async {
                let st = t.task().stat("/").await.expect("next stat");
                assert_eq!((st.dev, st.ino), (root.dev, root.ino), "stat of / changed");
            },
        )
        .await;
        exit_cleanly(t, "child thread").await;
    })
}

/// An fd made by a remote syscall whose future is dropped after the request was sent is
/// closed once the result came: nobody else knows its number.
#[test]
fn fd_made_by_a_dropped_remote_syscall_is_closed() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        let check = || async {
            let fd = t
                .task()
                .open(b"/", O::RDONLY | O::DIRECTORY, 0)
                .await
                .expect("next open");
            let pid = t.task().pid().as_raw();
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{}", fd.near().as_raw()));
            assert_eq!(target.ok(), Some("/".into()), "open gave another file");
            fd.close().await.expect("close");
        };
        check().await;
        drop_after_each_poll(
            "open on a child thread",
            &t,
            || {
                let t = t.duplicate();
                async move { t.task().open(b"/", O::RDONLY | O::DIRECTORY, 0).await }
            },
            |r| async { r.expect("open").close().await.expect("close") },
            check,
        )
        .await;
        exit_cleanly(t, "child thread").await;
    })
}

/// The fds `pipe2` writes into memory, for a future dropped after the request was sent,
/// are closed once the syscall is over.
#[test]
fn pipe_made_by_a_dropped_remote_syscall_is_closed() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        let check = || async {
            let pipe = t.pipe().await.expect("next pipe");
            t.task()
                .write_bytes(&pipe.write, b"p")
                .await
                .expect("write");
            assert_eq!(
                t.task().read_bytes(&pipe.read, 1).await.expect("read"),
                b"p"
            );
        };
        check().await;
        drop_after_each_poll(
            "pipe on a child thread",
            &t,
            || {
                let t = t.duplicate();
                async move { t.pipe().await }
            },
            |r| async { drop(r.expect("pipe")) },
            check,
        )
        .await;
        exit_cleanly(t, "child thread").await;
    })
}

/// The sockets `socketpair` writes into memory, for a future dropped after the request was
/// sent, are closed once the syscall is over.
#[test]
fn socketpair_made_by_a_dropped_remote_syscall_is_closed() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        let pair = || {
            let t = t.duplicate();
            async move {
                t.task()
                    .socketpair(AF::UNIX, SockType::STREAM, SOCK::empty(), 0)
                    .await
            }
        };
        let check = || async {
            let (a, b) = pair().await.expect("next socketpair");
            t.task().write_bytes(&a, b"s").await.expect("write");
            assert_eq!(t.task().read_bytes(&b, 1).await.expect("read"), b"s");
        };
        check().await;
        drop_after_each_poll(
            "socketpair on a child thread",
            &t,
            pair,
            |r| async { drop(r.expect("socketpair")) },
            check,
        )
        .await;
        exit_cleanly(t, "child thread").await;
    })
}

/// A failing `socketpair` writes the numbers it reserved before it failed, and frees them
/// again. Its future dropped after sending, with a `pipe2` sent right behind it (which
/// then gets those numbers): the failure's answer closes nothing, and the pipe works.
#[test]
fn failed_socketpair_dropped_after_sending_closes_nothing() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        let task = t.task();
        task.flush_closes().await.expect("flush closes");
        // Keeps the child busy while the next requests queue up behind it.
        let ts = task
            .ptr(&[0i64, 200_000_000])
            .await
            .expect("timespec of 200 ms");
        let req =
            rsyscall::near::Request::new(libc::SYS_nanosleep, [ts.near().arg(), 0, 0, 0, 0, 0]);
        // SAFETY: the timespec is a live allocation of the child's address space, kept
        // until the sleep returned; nanosleep writes nothing with a null second argument.
        let mut sleep = unsafe { task.sysif().syscall(req) };
        assert!(
            poll_at_most(&mut sleep, 1).await.is_none(),
            "the sleep returned at once"
        );
        // The child shares our memory, so the room for the pair is written without a
        // request, and this first poll reaches the socketpair request and writes it (the
        // connection writes at once when nothing is waiting to be sent). The old code,
        // which closed the numbers a failed socketpair left, failed this test.
        let mut failing = Box::pin(task.socketpair(AF::UNIX, SockType::STREAM, SOCK::empty(), 2));
        assert!(
            poll_at_most(&mut failing, 1).await.is_none(),
            "socketpair returned before the sleep did"
        );
        drop(failing);
        let (slept, pipe) = futures_lite::future::zip(sleep, t.pipe()).await;
        slept.expect("nanosleep");
        let pipe = pipe.expect("pipe made behind the failed socketpair");
        task.flush_closes().await.expect("flush closes");
        let pid = task.pid().as_raw();
        for fd in [&pipe.read, &pipe.write] {
            let n = fd.near().as_raw();
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{n}"));
            assert!(
                target
                    .as_ref()
                    .is_ok_and(|p| p.to_string_lossy().starts_with("pipe:")),
                "fd {n} of the pipe is {target:?}"
            );
        }
        task.write_bytes(&pipe.write, b"p").await.expect("write");
        assert_eq!(task.read_bytes(&pipe.read, 1).await.expect("read"), b"p");
        drop(pipe);
        drop(ts);
        exit_cleanly(t, "child thread").await;
    })
}

/// `dup` (`fcntl(F_DUPFD_CLOEXEC)`) on a child thread dropped after each poll: the copy it
/// made is closed.
#[test]
fn dup_on_child_thread_dropped_at_every_poll() {
    let _serial = serial();
    run(async {
        let t = child_thread().await;
        let pipe = t.pipe().await.expect("pipe");
        let check = || async {
            let copy = pipe.write.dup().await.expect("next dup");
            t.task()
                .write_bytes(&copy, b"d")
                .await
                .expect("write the copy");
            assert_eq!(
                t.task().read_bytes(&pipe.read, 1).await.expect("read"),
                b"d"
            );
            copy.close().await.expect("close");
        };
        check().await;
        drop_after_each_poll(
            "dup on a child thread",
            &t,
            || {
                let fd = pipe.write.clone();
                async move { fd.dup().await }
            },
            |r| async { r.expect("dup").close().await.expect("close") },
            check,
        )
        .await;
        drop(pipe);
        exit_cleanly(t, "child thread").await;
    })
}

/// Tests of the connection itself, with this test as its syscall server: it reads the
/// requests and writes the responses, so exactly what is sent, and when, is seen.
mod fake_server {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Poll;

    use rsyscall::thread::SyscallConnection;
    use rsyscall_near::{self as near, Address, Request, SyscallInterface};

    use super::serial;
    use rsyscall_tests::tasks::poll_now;

    const GETPID: i64 = libc::SYS_getpid;

    /// A connection to this test, and the test's end of its socket.
    fn connection() -> (SyscallConnection, UnixStream) {
        let (access, server) = UnixStream::pair().expect("socketpair");
        let conn = SyscallConnection::new(access.into(), near::FileDescriptor::new(100))
            .expect("connection");
        (conn, server)
    }

    /// Reads one request (number and arguments) as the server.
    fn next_request(server: &mut UnixStream) -> (i64, [i64; 6]) {
        let mut b = [0u8; Request::SIZE];
        server.read_exact(&mut b).expect("read a request");
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[8 * i..8 * i + 8]);
            i64::from_le_bytes(w)
        };
        (word(0), [1, 2, 3, 4, 5, 6].map(word))
    }

    fn respond(server: &mut UnixStream, ret: i64) {
        server.write_all(&ret.to_le_bytes()).expect("respond");
    }

    /// Sets its flag when dropped.
    struct Flag(Arc<AtomicBool>);

    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<AtomicBool>, Box<Flag>) {
        let f = Arc::new(AtomicBool::new(false));
        (f.clone(), Box::new(Flag(f)))
    }

    /// A request for `nr` with no arguments.
    fn call(conn: &SyscallConnection, nr: i64) -> near::SyscallFuture<'_> {
        // SAFETY: the server is this test, which runs nothing.
        unsafe { conn.syscall(Request::new(nr, [0; 6])) }
    }

    #[test]
    fn memory_kept_for_a_dropped_request_is_freed_only_after_its_answer() {
        let _serial = serial();
        let (conn, mut server) = connection();
        let mut a = call(&conn, GETPID);
        assert!(poll_now(&mut a).is_pending());
        assert_eq!(next_request(&mut server).0, GETPID);
        drop(a);
        let (freed, keep) = flag();
        conn.keep_until_answered(keep);
        assert!(
            !freed.load(Ordering::SeqCst),
            "freed before the answer was sent"
        );
        respond(&mut server, 1);
        assert!(
            !freed.load(Ordering::SeqCst),
            "freed before the answer was read"
        );
        // The next request drives the connection and reads the first answer.
        let mut b = call(&conn, GETPID);
        assert!(poll_now(&mut b).is_pending());
        assert!(
            freed.load(Ordering::SeqCst),
            "not freed once the answer was read"
        );
        assert_eq!(next_request(&mut server).0, GETPID);
        respond(&mut server, 2);
        assert_eq!(poll_now(&mut b), Poll::Ready(Ok(2)));
    }

    #[test]
    fn memory_kept_for_a_cancelled_request_waits_for_the_one_before() {
        let _serial = serial();
        let (conn, mut server) = connection();
        // An in-band write larger than the socket takes: its request stays partly unsent,
        // so the next request is queued unsent behind it.
        let data = vec![7u8; 4 << 20];
        // SAFETY: the server is this test, which writes nothing anywhere.
        let mut write = Box::pin(unsafe { conn.write_memory(Address::new(0x1000), &data) });
        assert!(poll_now(&mut write).is_pending());
        let mut b = call(&conn, GETPID);
        assert!(poll_now(&mut b).is_pending());
        let (freed, keep) = flag();
        // Kept with the last request (b, unsent); b cancelled, it moves to the write.
        conn.keep_until_answered(keep);
        drop(b);
        assert!(
            !freed.load(Ordering::SeqCst),
            "freed with the cancelled request"
        );
        // Serve the write: read it whole while its future sends the rest.
        let (nr, args) = next_request(&mut server);
        assert_eq!(nr, libc::SYS_recvfrom);
        let mut left = args[2] as usize;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            assert!(poll_now(&mut write).is_pending());
            let n = server
                .read(&mut buf[..left.min(64 << 10)])
                .expect("read data");
            left -= n;
        }
        assert!(
            !freed.load(Ordering::SeqCst),
            "freed before the write was answered"
        );
        respond(&mut server, args[2]);
        assert_eq!(poll_now(&mut write), Poll::Ready(Ok(())));
        assert!(
            freed.load(Ordering::SeqCst),
            "not freed once the write was answered"
        );
        // The cancelled request was never sent: nothing more is on the socket.
        server.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        assert!(
            server.read(&mut byte).is_err(),
            "the cancelled request was sent"
        );
    }

    #[test]
    fn memory_kept_when_the_connection_is_lost_is_never_freed() {
        let _serial = serial();
        let (conn, mut server) = connection();
        let mut a = call(&conn, GETPID);
        assert!(poll_now(&mut a).is_pending());
        next_request(&mut server);
        drop(a);
        let (freed, keep) = flag();
        conn.keep_until_answered(keep);
        drop(server);
        let mut b = call(&conn, GETPID);
        // The EOF fails b; the dropped request may still be running: its memory stays.
        let r = loop {
            if let Poll::Ready(r) = poll_now(&mut b) {
                break r;
            }
        };
        assert!(r.is_err());
        drop(b);
        drop(conn);
        assert!(
            !freed.load(Ordering::SeqCst),
            "freed although the request may run"
        );
    }

    /// A request for `openat` whose result is a new fd.
    fn open(conn: &SyscallConnection) -> near::SyscallFuture<'_> {
        // SAFETY: the server is this test, which runs nothing.
        unsafe { conn.syscall_new_fd(Request::new(libc::SYS_openat, [0; 6])) }
    }

    #[test]
    fn new_fd_of_a_dropped_request_is_closed() {
        let _serial = serial();
        let (conn, mut server) = connection();
        // Dropped before its answer: the answer's fd is closed once it is read.
        let mut a = open(&conn);
        assert!(poll_now(&mut a).is_pending());
        assert_eq!(next_request(&mut server).0, libc::SYS_openat);
        drop(a);
        respond(&mut server, 7);
        let mut b = call(&conn, GETPID);
        assert!(poll_now(&mut b).is_pending());
        assert_eq!(next_request(&mut server).0, GETPID);
        assert_eq!(
            next_request(&mut server),
            (libc::SYS_close, [7, 0, 0, 0, 0, 0])
        );
        respond(&mut server, 0); // b
        respond(&mut server, 0); // the close
        assert_eq!(poll_now(&mut b), Poll::Ready(Ok(0)));
        // Answered (read by another request) but dropped before taking its result.
        let mut driver = call(&conn, GETPID);
        assert!(poll_now(&mut driver).is_pending());
        let mut c = open(&conn);
        assert!(poll_now(&mut c).is_pending());
        assert_eq!(next_request(&mut server).0, GETPID);
        assert_eq!(next_request(&mut server).0, libc::SYS_openat);
        respond(&mut server, 0);
        respond(&mut server, 9);
        assert_eq!(poll_now(&mut driver), Poll::Ready(Ok(0)));
        drop(c);
        assert_eq!(
            next_request(&mut server),
            (libc::SYS_close, [9, 0, 0, 0, 0, 0])
        );
        respond(&mut server, 0);
        // A result taken by its future, or an error, closes nothing.
        let mut d = open(&conn);
        assert!(poll_now(&mut d).is_pending());
        assert_eq!(next_request(&mut server).0, libc::SYS_openat);
        respond(&mut server, 11);
        assert_eq!(poll_now(&mut d), Poll::Ready(Ok(11)));
        drop(d);
        let mut e = open(&conn);
        assert!(poll_now(&mut e).is_pending());
        assert_eq!(next_request(&mut server).0, libc::SYS_openat);
        drop(e);
        respond(&mut server, -i64::from(libc::ENOENT));
        let mut f = call(&conn, GETPID);
        assert!(poll_now(&mut f).is_pending());
        assert_eq!(next_request(&mut server).0, GETPID);
        respond(&mut server, 0);
        assert_eq!(poll_now(&mut f), Poll::Ready(Ok(0)));
        server.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        assert!(
            server.read(&mut byte).is_err(),
            "a close was sent for nothing"
        );
    }

    /// Stands for memory kept for a dropped request: notes, when the connection drops it,
    /// whether `cell` held a result by then.
    struct SawResult {
        cell: near::ResultCell,
        /// `None` until dropped; then whether the result was recorded.
        saw: Arc<std::sync::Mutex<Option<bool>>>,
    }

    impl Drop for SawResult {
        fn drop(&mut self) {
            *self.saw.lock().unwrap() = Some(self.cell.get().is_some());
        }
    }

    /// Memory kept for a dropped request that records its result in `cell`, and what it
    /// saw when freed.
    fn saw_result(
        cell: &near::ResultCell,
    ) -> (Arc<std::sync::Mutex<Option<bool>>>, Box<SawResult>) {
        let saw = Arc::new(std::sync::Mutex::new(None));
        let keep = SawResult {
            cell: cell.clone(),
            saw: saw.clone(),
        };
        (saw, Box::new(keep))
    }

    #[test]
    fn result_of_a_dropped_recorded_request_is_recorded_before_its_memory_is_freed() {
        let _serial = serial();
        let (conn, mut server) = connection();
        let recorded = |cell: &near::ResultCell| {
            // SAFETY: the server is this test, which runs nothing.
            unsafe {
                conn.syscall_recorded(Request::new(libc::SYS_socketpair, [0; 6]), cell.clone())
            }
        };
        // Dropped after sending: recorded when the answer is read, before what was kept
        // for it is freed.
        let cell = near::ResultCell::new();
        let mut a = recorded(&cell);
        assert!(poll_now(&mut a).is_pending());
        assert_eq!(next_request(&mut server).0, libc::SYS_socketpair);
        drop(a);
        let (saw, keep) = saw_result(&cell);
        conn.keep_until_answered(keep);
        let errno = -i64::from(libc::EPROTONOSUPPORT);
        respond(&mut server, errno);
        assert_eq!(cell.get(), None, "recorded before the answer was read");
        let mut b = call(&conn, GETPID);
        assert!(poll_now(&mut b).is_pending());
        assert_eq!(
            cell.get(),
            Some(Err(near::SyscallError::Errno(near::Errno::EPROTONOSUPPORT)))
        );
        assert_eq!(
            *saw.lock().unwrap(),
            Some(true),
            "the kept memory was not freed after the result was recorded"
        );
        assert_eq!(next_request(&mut server).0, GETPID);
        respond(&mut server, 0);
        assert_eq!(poll_now(&mut b), Poll::Ready(Ok(0)));

        // Answered (read by another request), then dropped before taking its result.
        let cell = near::ResultCell::new();
        let mut driver = call(&conn, GETPID);
        assert!(poll_now(&mut driver).is_pending());
        let mut c = recorded(&cell);
        assert!(poll_now(&mut c).is_pending());
        assert_eq!(next_request(&mut server).0, GETPID);
        assert_eq!(next_request(&mut server).0, libc::SYS_socketpair);
        respond(&mut server, 0);
        respond(&mut server, 0);
        assert_eq!(poll_now(&mut driver), Poll::Ready(Ok(0)));
        drop(c);
        assert_eq!(cell.get(), Some(Ok(0)));

        // Taken by its future: recorded too.
        let cell = near::ResultCell::new();
        let mut d = recorded(&cell);
        assert!(poll_now(&mut d).is_pending());
        assert_eq!(next_request(&mut server).0, libc::SYS_socketpair);
        respond(&mut server, 0);
        assert_eq!(poll_now(&mut d), Poll::Ready(Ok(0)));
        assert_eq!(cell.get(), Some(Ok(0)));

        // Lost with the connection: never recorded, and the memory never freed.
        let cell = near::ResultCell::new();
        let mut e = recorded(&cell);
        assert!(poll_now(&mut e).is_pending());
        assert_eq!(next_request(&mut server).0, libc::SYS_socketpair);
        drop(e);
        let (saw, keep) = saw_result(&cell);
        conn.keep_until_answered(keep);
        drop(server);
        let mut f = call(&conn, GETPID);
        let r = loop {
            if let Poll::Ready(r) = poll_now(&mut f) {
                break r;
            }
        };
        assert!(r.is_err());
        drop(f);
        assert_eq!(cell.get(), None, "a result that never came was recorded");
        assert_eq!(
            *saw.lock().unwrap(),
            None,
            "freed although it may still run"
        );
    }

    #[test]
    fn cancelled_recorded_request_records_nothing() {
        let _serial = serial();
        let (conn, mut server) = connection();
        // An in-band write larger than the socket takes keeps the next request unsent.
        let data = vec![7u8; 4 << 20];
        // SAFETY: the server is this test, which writes nothing anywhere.
        let mut write = Box::pin(unsafe { conn.write_memory(Address::new(0x1000), &data) });
        assert!(poll_now(&mut write).is_pending());
        let cell = near::ResultCell::new();
        // SAFETY: as above.
        let mut b =
            unsafe { conn.syscall_recorded(Request::new(libc::SYS_pipe2, [0; 6]), cell.clone()) };
        assert!(poll_now(&mut b).is_pending());
        drop(b);
        let (nr, args) = next_request(&mut server);
        assert_eq!(nr, libc::SYS_recvfrom);
        let mut left = args[2] as usize;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            assert!(poll_now(&mut write).is_pending());
            let n = server
                .read(&mut buf[..left.min(64 << 10)])
                .expect("read data");
            left -= n;
        }
        respond(&mut server, args[2]);
        assert_eq!(poll_now(&mut write), Poll::Ready(Ok(())));
        // The next recorded request is the next one on the wire, and its answer goes to
        // its own cell only.
        let next = near::ResultCell::new();
        // SAFETY: as above.
        let mut c = unsafe { conn.syscall_recorded(Request::new(GETPID, [0; 6]), next.clone()) };
        assert!(poll_now(&mut c).is_pending());
        assert_eq!(
            next_request(&mut server).0,
            GETPID,
            "the cancelled request was sent"
        );
        respond(&mut server, 5);
        assert_eq!(poll_now(&mut c), Poll::Ready(Ok(5)));
        assert_eq!(next.get(), Some(Ok(5)));
        assert_eq!(cell.get(), None, "a request never sent was recorded");
    }

    /// Kept memory whose destructor uses the connection (as a dropped pipe2's room does,
    /// reading memory and asking whether the connection can send).
    struct UsesConnection {
        conn: Arc<SyscallConnection>,
        dropped: Arc<AtomicBool>,
    }

    impl Drop for UsesConnection {
        fn drop(&mut self) {
            let _ = self.conn.is_hung_up();
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn memory_kept_past_an_answer_out_of_sync_is_leaked_not_dropped_under_the_lock() {
        let _serial = serial();
        let (conn, mut server) = connection();
        let conn = Arc::new(conn);
        // An in-band read of 8 bytes, dropped after it was sent: the keep goes with it.
        // SAFETY: the server is this test, which reads nothing anywhere.
        let mut read = Box::pin(unsafe { conn.read_memory(Address::new(0x1000), 8) });
        assert!(poll_now(&mut read).is_pending());
        let (nr, _) = next_request(&mut server);
        assert_eq!(nr, libc::SYS_sendto);
        drop(read);
        let dropped = Arc::new(AtomicBool::new(false));
        conn.keep_until_answered(Box::new(UsesConnection {
            conn: conn.clone(),
            dropped: dropped.clone(),
        }));
        // The 8 bytes, then a response other than their length: out of sync.
        server.write_all(&[0u8; 8]).expect("data");
        respond(&mut server, 3);
        // The next request reads that; it must fail, not deadlock on the state lock.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let driver = conn.clone();
        std::thread::spawn(move || {
            let mut b = call(&driver, GETPID);
            let r = loop {
                if let Poll::Ready(r) = poll_now(&mut b) {
                    break r;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            };
            let _ = done_tx.send(r.is_err());
        });
        let failed = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the request after an out-of-sync answer hung (deadlock)");
        assert!(failed, "a request after an out-of-sync answer succeeded");
        assert!(
            !dropped.load(Ordering::SeqCst),
            "memory kept past an out-of-sync answer was freed, though it may be in use"
        );
    }
}
