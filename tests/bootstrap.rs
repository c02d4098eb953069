//! Threads from bootstrapped processes: `stdin_bootstrap` through real launchers (`env`,
//! Debian's `sudo`), and everything a clone child can do, done on such a thread and on
//! threads cloned from it: syscalls, clone and nested clone, exec, `make_afd` and async
//! I/O (with and without a root epoller), `open_channels`, fd passing. And the bad input
//! of PROTOCOL.md section 6: launchers that fail or exit early, and peers that send a
//! malformed, truncated or empty describe.
//!
//! These run as root (as CI does; `sudo -u nobody` needs it). Every process a test starts
//! is waited for by the test.

use std::os::unix::fs::MetadataExt;

use rsyscall::{
    AsyncChildProcess, CLONE, ChildState, Command, Error, O, Thread, local_thread, stdin_bootstrap,
    stdin_bootstrap_with_helper,
};
use rsyscall_tests::errors::serial;
use rsyscall_tests::exercise::exercise;
use rsyscall_tests::procs::{count_children, open_fds};
use rsyscall_tests::programs::{env_thread, which};
use rsyscall_tests::tasks::{poll_at_most, run};

/// Ends a bootstrapped thread and checks its launcher exits cleanly.
async fn finish(launcher: AsyncChildProcess, thread: Thread) {
    thread.exit(0).await.expect("exit");
    assert_eq!(launcher.wait().await.expect("wait"), ChildState::Exited(0));
}

#[test]
fn env_launcher_gives_a_full_thread() {
    // Leak checks count this process\'s fds and children: no test may run beside them.
    let _serial = serial();
    run(async {
        let (launcher, thread) = env_thread().await;
        // For env, the launcher is the helper's process.
        assert_eq!(
            thread.task().getpid().await.expect("getpid"),
            launcher.pid(),
            "env execs the helper"
        );
        assert_eq!(
            thread.environ().get("PATH"),
            std::env::var_os("PATH"),
            "its environment came from the describe strings"
        );
        // Its standard streams: stdin at EOF (our end of the socket is closed), stdout
        // the launcher's (ours), stderr set to ours.
        let task = thread.task();
        assert_eq!(
            task.read_bytes(&thread.stdin(), 16)
                .await
                .expect("read stdin"),
            b""
        );
        let pid = launcher.pid().as_raw();
        for fd in [1, 2] {
            assert_eq!(
                std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("its fd"),
                std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("our fd"),
                "fd {fd}"
            );
        }
        exercise(&thread, "env").await;
        // And again with a root epoller in its process.
        thread.make_root_epoller().await.expect("root epoller");
        exercise(&thread, "env, root epoller").await;
        // Its children and their futex helpers (cloned in its address space) were all
        // reaped: none is left behind, not even as a zombie.
        let pid = launcher.pid().as_raw();
        let left = rsyscall_tests::procs::settled(|| children_of(pid)).await;
        assert_eq!(left, 0, "children of the bootstrapped process left behind");
        finish(launcher, thread).await;
    });
}

/// How many children the process `pid` (of our pid namespace) has, zombies included.
fn children_of(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("read children")
        .split_whitespace()
        .count()
}

#[test]
fn namespaces_are_read_from_the_process() {
    // Leak checks count this process\'s fds and children: no test may run beside them.
    let _serial = serial();
    run(async {
        let (launcher, thread) = env_thread().await;
        let ns = thread.task().namespaces();
        let local = rsyscall::handle::local_namespaces();
        assert_eq!(ns.pidns, local.pidns, "same pid namespace, recognised");
        assert_eq!(ns.mountns, local.mountns);
        assert_eq!(ns.netns, local.netns);
        assert_ne!(ns.address_space, local.address_space);
        assert_ne!(ns.fd_table, local.fd_table);
        // A thread bootstrapped inside a new network namespace gets another identity.
        let child = local_thread()
            .clone(CLONE::NEWNET)
            .await
            .expect("clone NEWNET");
        let (l2, t2) = stdin_bootstrap(&child, which("env").await)
            .await
            .expect("bootstrap from a NEWNET child");
        assert_ne!(t2.task().namespaces().netns, local.netns);
        assert_eq!(t2.task().namespaces().mountns, local.mountns);
        finish(l2, t2).await;
        child
            .exit(0)
            .await
            .expect("exit")
            .wait()
            .await
            .expect("wait");
        finish(launcher, thread).await;
    });
}

#[test]
fn sudo_nobody_gives_a_thread_of_another_user() {
    // Leak checks count this process\'s fds and children: no test may run beside them.
    let _serial = serial();
    run(async {
        let dir = tempfile_dir();
        // The libexec directory may be under a home directory nobody cannot enter: the
        // helper is copied where they can run it.
        let helper = dir.join(rsyscall::thread::STDIN_BOOTSTRAP);
        std::fs::copy(
            rsyscall::thread::libexec::helper_path(rsyscall::thread::STDIN_BOOTSTRAP)
                .expect("helper"),
            &helper,
        )
        .expect("copy the helper");
        let (launcher, thread) = stdin_bootstrap_with_helper(
            &local_thread(),
            which("sudo").await.args(["-u", "nobody", "--"]),
            &helper,
        )
        .await
        .expect("stdin_bootstrap through sudo -u nobody");
        assert_eq!(thread.task().getuid().await.expect("getuid"), 65534);
        let path = dir.join("made-by-nobody");
        let fd = thread
            .task()
            .open(path.as_path(), O::CREAT | O::WRONLY | O::CLOEXEC, 0o644)
            .await
            .expect("create a file as nobody");
        drop(fd);
        let _ = thread.task().flush_closes().await;
        assert_eq!(std::fs::metadata(&path).expect("stat").uid(), 65534);
        exercise(&thread, "sudo").await;
        // Nested: the nobody thread bootstraps another through env.
        let (l2, t2) = stdin_bootstrap_with_helper(&thread, which("env").await, &helper)
            .await
            .expect("nested stdin_bootstrap");
        assert_eq!(t2.task().getuid().await.expect("getuid"), 65534);
        assert_ne!(
            t2.task().getpid().await.expect("getpid"),
            thread.task().getpid().await.expect("getpid")
        );
        exercise(&t2, "nested").await;
        finish(l2, t2).await;
        finish(launcher, thread).await;
        std::fs::remove_dir_all(&dir).ok();
    });
}

/// A directory nobody can write into (mode 1777 under /tmp).
fn tempfile_dir() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!(
        "rsyscall-bootstrap-{}-{}",
        std::process::id(),
        rsyscall_tests::rng::seed()
    ));
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    dir
}

/// The open fds and (children, zombies) of this process once background work settled.
async fn usage() -> (usize, (usize, usize)) {
    rsyscall_tests::procs::settled(|| (open_fds(), count_children())).await
}

/// Checks that `body` (run twice, after one warm-up run that may create lazily made
/// fds of the library) leaves no fd, child or zombie behind.
async fn leaves_nothing<F, Fut>(body: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    body().await;
    let before = usage().await;
    body().await;
    body().await;
    let after = usage().await;
    assert!(
        after.0 <= before.0 && after.1 == before.1,
        "fds/children before {before:?}, after {after:?}"
    );
}

#[test]
fn launcher_failures_are_typed_errors_with_status_and_stderr() {
    // Leak checks count this process\'s fds and children: no test may run beside them.
    let _serial = serial();
    run(leaves_nothing(|| async {
        // A missing program: env fails with 127 and says why.
        let r = stdin_bootstrap(
            &local_thread(),
            which("env").await.arg("/nonexistent/launcher"),
        )
        .await;
        match r {
            Err(Error::LauncherFailed { state, stderr, .. }) => {
                assert_eq!(state, ChildState::Exited(127));
                assert!(stderr.contains("/nonexistent/launcher"), "stderr: {stderr}");
            }
            other => panic!("expected LauncherFailed, got {other:?}"),
        }
        // sudo refusing: an unknown user.
        let r = stdin_bootstrap(
            &local_thread(),
            which("sudo").await.args(["-u", "#-5-no-such-user", "--"]),
        )
        .await;
        match r {
            Err(Error::LauncherFailed { state, stderr, .. }) => {
                assert_ne!(state, ChildState::Exited(0));
                assert!(stderr.contains("sudo"), "stderr: {stderr}");
            }
            other => panic!("expected LauncherFailed, got {other:?}"),
        }
        // A launcher that exits at once without running anything.
        let r = stdin_bootstrap(&local_thread(), which("sh").await.args(["-c", "exit 3"])).await;
        match r {
            Err(Error::LauncherFailed { state, .. }) => assert_eq!(state, ChildState::Exited(3)),
            other => panic!("expected LauncherFailed, got {other:?}"),
        }
    }));
}

#[test]
fn bad_peers_are_typed_errors() {
    // Leak checks count this process\'s fds and children: no test may run beside them.
    let _serial = serial();
    // A helper that misbehaves as `$RSYSCALL_TEST_FAKE_HELPER` says (tests/bin).
    let exe = env!("CARGO_BIN_EXE_rsyscall-test-fake-helper");
    run(leaves_nothing(|| async {
        for (mode, expect) in [
            ("truncated", "is truncated"),
            ("malformed", "malformed describe"),
            ("same-fds", "malformed describe"),
            ("huge-env", "strings (more than"),
            ("truncated-env", "string 0 is truncated"),
            ("silent", "nothing was sent"),
        ] {
            let launcher = Command::new(exe, "fake-helper").env("RSYSCALL_TEST_FAKE_HELPER", mode);
            let r = stdin_bootstrap(&local_thread(), launcher).await;
            match r {
                Err(Error::Handshake { detail, .. }) => {
                    assert!(detail.contains(expect), "{mode}: {detail}");
                    // And what to do about it: a stale helper is the usual cause.
                    assert!(
                        detail.contains("check that") && detail.contains("RSYSCALL_LIBEXEC_DIR"),
                        "{mode}: no advice in {detail:?}"
                    );
                }
                other => panic!("{mode}: expected a Handshake error, got {other:?}"),
            }
        }
    }));
}

/// `Thread::from_bootstrap` is not tied to the stdin bootstrap: a process running the unix
/// stub (started here by a thread of ours, as any program could) becomes a full thread
/// from its describe struct, and the status it exits with is what its launcher sees.
#[test]
fn from_bootstrap_takes_a_unix_stub_process() {
    // Leak checks count this process\'s fds and children: no test may run beside them.
    let _serial = serial();
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::{UnixListener, UnixStream};
    run(async {
        let dir = tempfile_dir();
        let path = dir.join("stub.sock");
        let listener =
            async_io::Async::new(UnixListener::bind(&path).expect("bind")).expect("async");
        let stub = rsyscall::thread::libexec::helper_path("rsyscall-unix-stub").expect("stub");
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let process = child
            .exec(
                Command::new(&stub, "mocked")
                    .arg("an argument")
                    .env("RSYSCALL_UNIX_STUB_SOCK_PATH", &path),
            )
            .await
            .expect("exec the stub");
        let (conn, _) = listener.accept().await.expect("accept");
        let conn = conn.into_inner().expect("std socket");
        let (syscall, s2) = UnixStream::pair().expect("pair");
        let (mut data, d2) = UnixStream::pair().expect("pair");
        let (_f1, f2) = UnixStream::pair().expect("pair");
        let (_c1, c2) = UnixStream::pair().expect("pair");
        rsyscall_tests::server::send_fds(
            &conn,
            &[
                s2.as_raw_fd(),
                d2.as_raw_fd(),
                f2.as_raw_fd(),
                c2.as_raw_fd(),
            ],
        )
        .expect("send fds");
        drop((s2, d2, f2, c2, conn));
        data.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = [0u8; rsyscall_server::proto::UnixStubDescribe::SIZE];
        data.read_exact(&mut buf).expect("describe");
        let d = rsyscall_server::proto::UnixStubDescribe::from_bytes(&buf);
        let mut strings = Vec::new();
        for _ in 0..d.argc + d.envp_count {
            let mut len = [0u8; 8];
            data.read_exact(&mut len).expect("length");
            let mut s = vec![0u8; u64::from_le_bytes(len) as usize];
            data.read_exact(&mut s).expect("string");
            strings.push(std::ffi::OsString::from(
                String::from_utf8(s).expect("utf-8"),
            ));
        }
        let environment = strings.split_off(d.argc as usize);
        assert_eq!(strings, ["mocked", "an argument"]);
        let parts = rsyscall::BootstrapParts {
            syscall_sock: syscall.into(),
            data_sock: data.into(),
            pid: d.pid,
            syscall_fd: d.syscall_fd,
            data_fd: d.data_fd,
            symbols: d.symbols,
            environment,
        };
        // SAFETY: the stub was exec'd (its own address space and table), and the fds it
        // names are the ones it received from us.
        let thread = unsafe { Thread::from_bootstrap(parts) }
            .await
            .expect("from_bootstrap");
        assert_eq!(thread.task().getpid().await.expect("getpid"), process.pid());
        assert_eq!(
            thread.environ().get("RSYSCALL_UNIX_STUB_SOCK_PATH"),
            Some(path.clone().into_os_string())
        );
        exercise(&thread, "stub").await;
        thread.exit(7).await.expect("exit");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(7));
        std::fs::remove_dir_all(&dir).ok();
    });
}

/// A bootstrapped thread, used and ended, leaves no fd, child or zombie here.
#[test]
fn bootstrapped_threads_leave_nothing_behind() {
    // Leak checks count this process\'s fds and children: no test may run beside them.
    let _serial = serial();
    run(leaves_nothing(|| async {
        let (launcher, thread) = env_thread().await;
        let child = thread.clone(CLONE::empty()).await.expect("clone");
        child.task().getpid().await.expect("getpid");
        let p = child.exit(0).await.expect("exit");
        assert_eq!(p.wait().await.expect("wait"), ChildState::Exited(0));
        finish(launcher, thread).await;
    }));
}

/// `stdin_bootstrap` dropped after each of its polls in turn, until one run completes:
/// every abandoned launcher and helper ends and is reaped, and no fd is left open.
#[test]
fn stdin_bootstrap_dropped_at_every_poll_leaves_nothing() {
    let _serial = serial();
    run(async {
        let (l, t) = env_thread().await;
        finish(l, t).await;
        let before = usage().await;
        let env = which("env").await;
        let local = local_thread();
        let mut completed = false;
        for n in 1..=500 {
            let mut fut = Box::pin(stdin_bootstrap(&local, env.clone()));
            match poll_at_most(&mut fut, n).await {
                None => drop(fut),
                Some(r) => {
                    let (launcher, thread) = r.expect("stdin_bootstrap");
                    finish(launcher, thread).await;
                    completed = true;
                    break;
                }
            }
        }
        assert!(
            completed,
            "stdin_bootstrap did not complete within 500 polls"
        );
        let after = usage().await;
        assert!(
            after.0 <= before.0 && after.1 == before.1,
            "fds/children before {before:?}, after {after:?}"
        );
    });
}

/// The open fds of `thread`'s process (its pid is valid here), once every close queued
/// on its table was sent and the connection read the answers of dropped requests.
async fn thread_fds(thread: &Thread) -> usize {
    thread.task().flush_closes().await.expect("flush closes");
    thread.task().getpid().await.expect("getpid");
    thread.task().flush_closes().await.expect("flush closes");
    rsyscall_tests::procs::open_fds_of(thread.task().pid().as_raw())
}

type Pair = (rsyscall::FileDescriptor, rsyscall::FileDescriptor);

/// Writes a byte into the second fd of `pair` and reads it from the first.
async fn pair_works(task: &rsyscall::Task, (a, b): Pair) {
    task.write_bytes(&b, b"x").await.expect("write");
    assert_eq!(task.read_bytes(&a, 1).await.expect("read"), b"x");
}

/// Drops the future `start()` makes after 1, 2, ... polls, until three runs in a row
/// complete within the same number of polls (a run may complete early only because the
/// thread answered quickly); after each run, waits (10 s at most) until `t`'s table is
/// back to the fds it had before.
async fn pair_dropped_at_every_poll<F, Fut>(t: &Thread, what: &str, start: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Pair, Error>>,
{
    let task = t.task();
    pair_works(task, start().await.expect(what)).await;
    let baseline = thread_fds(t).await;
    for n in 1..=200 {
        let mut completed = 0;
        while completed < 3 {
            let mut fut = Box::pin(start());
            let done = poll_at_most(&mut fut, n).await;
            drop(fut);
            let dropped = done.is_none();
            if let Some(r) = done {
                pair_works(task, r.unwrap_or_else(|e| panic!("{what}: {e}"))).await;
                completed += 1;
            }
            let mut now = thread_fds(t).await;
            for _ in 0..500 {
                if now <= baseline {
                    break;
                }
                async_io::Timer::after(std::time::Duration::from_millis(20)).await;
                now = thread_fds(t).await;
            }
            assert!(
                now <= baseline,
                "{what} dropped after {n} polls: {now} fds open, {baseline} before"
            );
            if dropped {
                break;
            }
        }
        if completed == 3 {
            eprintln!("{what}: completes in {n} polls");
            pair_works(task, start().await.expect("the next pair")).await;
            return;
        }
    }
    panic!("{what} did not complete within 200 polls");
}

/// `pipe2` and `socketpair` on a thread with its own address space, dropped after each
/// poll in turn: the two fds a call made after its future was gone, which only a read of
/// that process's memory can tell, are closed; the thread's table ends as it began, and
/// the next pair works.
#[test]
fn pairs_made_by_dropped_syscalls_in_another_address_space_are_closed() {
    let _serial = serial();
    run(async {
        let (launcher, t) = env_thread().await;
        pair_dropped_at_every_poll(&t, "pipe2", || async {
            t.pipe().await.map(|p| (p.read, p.write))
        })
        .await;
        pair_dropped_at_every_poll(&t, "socketpair", || {
            t.task().socketpair(
                rsyscall::near::AF::UNIX,
                rsyscall::near::SockType::STREAM,
                rsyscall::SOCK::empty(),
                0,
            )
        })
        .await;
        finish(launcher, t).await;
    })
}
