//! `do_cloexec_except` and `mark_cloexec_except` on a copied fd table, and a thread's root
//! epoller across `unshare(CLONE_FILES)`.
//!
//! fd tables are checked from outside, through `/proc/<pid>/fd` and `fdinfo` of the child,
//! so that what the library believes cannot colour what the kernel says.

use std::time::Duration;

use futures_lite::future::{self, zip};
use rsyscall::thread::AsyncFileDescriptor;
use rsyscall::{CLONE, EFD, Error, FileDescriptor, Thread, local_thread};
use rsyscall_tests::errors::{assert_invalid, serial};
use rsyscall_tests::tasks::{exit_cleanly, run};

/// The fd numbers open in process `pid`'s table, sorted.
fn fds_of(pid: i32) -> Vec<i32> {
    let mut out: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

/// Whether fd `n` of process `pid` is open.
fn is_open(pid: i32, n: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}/fd/{n}")).exists()
}

/// Whether fd `n` of process `pid` is close-on-exec (its `fdinfo` flags carry `O_CLOEXEC`).
fn is_cloexec(pid: i32, n: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("flags line");
    let flags = i32::from_str_radix(flags.trim(), 8).expect("octal flags");
    flags & libc::O_CLOEXEC != 0
}

fn pid_of(t: &Thread) -> i32 {
    t.task().pid().as_raw()
}

/// Fails (instead of hanging) if `f` takes more than ten seconds.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    future::or(f, async {
        async_io::Timer::after(Duration::from_secs(10)).await;
        panic!("{what} did not finish within ten seconds");
    })
    .await
}

/// A pipe in `thread`, both ends made async.
async fn afd_pipe(thread: &Thread) -> (AsyncFileDescriptor, AsyncFileDescriptor) {
    let p = thread.pipe().await.expect("pipe");
    let r = thread.make_afd(p.read, true).await.expect("make_afd(read)");
    let w = thread
        .make_afd(p.write, true)
        .await
        .expect("make_afd(write)");
    (r, w)
}

/// Async I/O on a fresh pipe of `thread` works both ways round.
async fn async_io_works(thread: &Thread, what: &str) {
    let (r, w) = afd_pipe(thread).await;
    let (got, ()) = within(
        what,
        zip(r.read_some_bytes(64), async {
            w.write_all_bytes(b"after unshare").await.expect("write")
        }),
    )
    .await;
    assert_eq!(got.expect("read"), b"after unshare", "{what}");
    r.close().await.expect("close");
    w.close().await.expect("close");
}

#[test]
fn do_cloexec_except_closes_every_close_on_exec_fd_not_kept() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let a = local.pipe().await.expect("pipe a");
        let b = local.pipe().await.expect("pipe b");
        let c = local
            .task()
            .eventfd(0, EFD::CLOEXEC)
            .await
            .expect("eventfd c");
        // Open across exec: the original leaves such an fd as an exec would.
        let d = local.pipe().await.expect("pipe d");
        d.read.disable_cloexec().await.expect("clear cloexec");
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let pid = pid_of(&child);
        let a_child = a.read.inherit(child.task()).expect("inherit a");
        for fd in [&a.read, &b.read, &b.write, &c, &d.read] {
            assert!(is_open(pid, fd.near().as_raw()), "{fd:?} copied");
        }
        child
            .do_cloexec_except(&[&a_child])
            .await
            .expect("do_cloexec_except");
        for fd in [&b.read, &b.write, &c, &a.write] {
            assert!(!is_open(pid, fd.near().as_raw()), "{fd:?} closed");
        }
        assert!(is_open(pid, a_child.near().as_raw()), "kept");
        assert!(
            is_open(pid, d.read.near().as_raw()),
            "open across exec: left"
        );
        // What remains is what was kept, the thread's own, and fds open across exec.
        let reserved: Vec<i32> = child.reserved_fds().iter().map(|f| f.as_raw()).collect();
        for n in fds_of(pid) {
            assert!(
                n == a_child.near().as_raw() || reserved.contains(&n) || !is_cloexec(pid, n),
                "fd {n} left open"
            );
        }
        // The kept fd works, and so does the thread (a syscall, an fd made and used).
        local
            .task()
            .write_bytes(&a.write, b"x")
            .await
            .expect("write");
        assert_eq!(
            child.task().read_bytes(&a_child, 1).await.expect("read"),
            b"x"
        );
        let p = child.pipe().await.expect("pipe in the child");
        child
            .task()
            .write_bytes(&p.write, b"yz")
            .await
            .expect("write");
        assert_eq!(
            child.task().read_bytes(&p.read, 2).await.expect("read"),
            b"yz"
        );
        // Inheriting a closed copy is refused from now on: the copy may be gone.
        assert!(matches!(
            b.read.inherit(child.task()),
            Err(Error::InvalidArgument { .. })
        ));
        // An fd some handle of the child's table owns, not kept: refused, nothing closed.
        let before = fds_of(pid);
        let refused = child.do_cloexec_except(&[&a_child]).await;
        let detail = assert_invalid(refused, "an owned fd not kept");
        assert!(
            detail.contains(&p.read.near().as_raw().to_string()),
            "{detail}"
        );
        assert_eq!(fds_of(pid), before, "nothing closed");
        drop((a_child, p));
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn do_cloexec_except_refuses_the_local_table_and_foreign_kept_fds() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let refused = local.do_cloexec_except(&[]).await;
        assert_invalid(refused, "the local thread");
        // A child sharing our table would close our own fds: refused too.
        let shared = local.clone(CLONE::FILES).await.expect("clone(FILES)");
        let refused = shared.do_cloexec_except(&[]).await;
        assert_invalid(refused, "a thread on the local table");
        exit_cleanly(shared, "shared").await;
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let pipe = local.pipe().await.expect("pipe");
        let before = fds_of(pid_of(&child));
        assert!(matches!(
            child.do_cloexec_except(&[&pipe.read]).await,
            Err(Error::Mismatch(_))
        ));
        assert_eq!(fds_of(pid_of(&child)), before, "nothing closed");
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn mark_cloexec_except_marks_and_closes_nothing() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let pid = pid_of(&child);
        let pipe = local.pipe().await.expect("pipe");
        let p = child.pipe().await.expect("pipe in the child");
        p.read.disable_cloexec().await.expect("clear");
        p.write.disable_cloexec().await.expect("clear");
        let before = fds_of(pid);
        child
            .mark_cloexec_except(&[&p.write])
            .await
            .expect("mark_cloexec_except");
        assert_eq!(fds_of(pid), before, "nothing closed");
        assert!(is_cloexec(pid, p.read.near().as_raw()), "marked");
        assert!(!is_cloexec(pid, p.write.near().as_raw()), "kept");
        drop((p, pipe));
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn unshare_files_not_going_to_exec_closes_what_no_handle_names() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let child = local.clone(CLONE::FILES).await.expect("clone(FILES)");
        let pid = pid_of(&child);
        let known = local.pipe().await.expect("pipe");
        // An fd of ours no handle names (as another library's would be).
        let foreign = std::fs::File::open("/proc/self/stat").expect("open");
        let foreign_n = std::os::fd::AsRawFd::as_raw_fd(&foreign);
        child
            .unshare_files(false)
            .await
            .expect("unshare_files(false)");
        assert!(!is_open(pid, foreign_n), "another library's fd is closed");
        assert!(
            is_open(pid, known.read.near().as_raw()),
            "a known fd is kept"
        );
        let inherited = known.read.inherit(child.task()).expect("still inheritable");
        local
            .task()
            .write_bytes(&known.write, b"k")
            .await
            .expect("write");
        assert_eq!(
            child.task().read_bytes(&inherited, 1).await.expect("read"),
            b"k"
        );
        drop((inherited, foreign));
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn a_root_epoller_keeps_working_after_unshare_files() {
    let _g = serial();
    run(async {
        let local = local_thread();
        // A thread with its own table, then a root epoller, then a private copy of that
        // table: the epoller follows the thread to the new table.
        let child = local.clone(CLONE::empty()).await.expect("clone");
        child.make_root_epoller().await.expect("make_root_epoller");
        async_io_works(&child, "before the unshare").await;
        let old_epfd = child.root_epoller().expect("root epoller").epfd().near();
        child.unshare(CLONE::FILES).await.expect("unshare(FILES)");
        async_io_works(&child, "after the unshare").await;
        let epoller = child.root_epoller().expect("still a root epoller");
        child
            .task()
            .check_fd(epoller.epfd())
            .expect("its epoll fd is of the new table");
        assert!(
            !is_open(pid_of(&child), old_epfd.as_raw()) || old_epfd == epoller.epfd().near(),
            "the old epoll fd's copy is not left behind"
        );
        let again = child.make_root_epoller().await;
        assert_invalid(again, "a second root epoller");
        exit_cleanly(child, "child").await;

        // The same through the task alone (the thread learns of it at its next make_afd).
        let child = local.clone(CLONE::empty()).await.expect("clone");
        child.make_root_epoller().await.expect("make_root_epoller");
        child.task().unshare_files().await.expect("unshare_files");
        async_io_works(&child, "after Task::unshare_files").await;
        exit_cleanly(child, "child").await;

        // A thread without one gets one after the unshare.
        let child = local.clone(CLONE::empty()).await.expect("clone");
        child.unshare(CLONE::FILES).await.expect("unshare(FILES)");
        child.make_root_epoller().await.expect("make_root_epoller");
        async_io_works(&child, "a root epoller made after the unshare").await;
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn reserved_fds_survive_do_cloexec_except_with_a_root_epoller() {
    let _g = serial();
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        child.make_root_epoller().await.expect("make_root_epoller");
        child
            .do_cloexec_except(&[])
            .await
            .expect("do_cloexec_except");
        async_io_works(&child, "after do_cloexec_except").await;
        let keep: Vec<FileDescriptor> = Vec::new();
        drop(keep);
        exit_cleanly(child, "child").await;
    })
}
