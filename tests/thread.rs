//! End-to-end tests of the first thread layer: clone, syscalls in the child, exec, wait,
//! nested clone, exit, hangup, and namespace mismatches, against the real kernel.

use std::time::{Duration, Instant};

use futures_lite::future;
use rsyscall::near::FileDescriptor;
use rsyscall::{CLONE, ChildState, Error, O, Signal, local_thread};
use rsyscall_tests::procs::open_fds_of;
use rsyscall_tests::programs::sh;
use rsyscall_tests::tasks::{child_with_stdout_pipe, exit_cleanly, run, sigkill};

const FLAG_CASES: [CLONE; 2] = [CLONE::empty(), CLONE::FILES];

#[test]
fn clone_getpid_differs_and_matches_the_kernel_pid() {
    run(async {
        let parent = local_thread();
        for flags in FLAG_CASES {
            let child = parent.clone(flags).await.expect("clone");
            let pid = child.task().getpid().await.expect("getpid");
            assert_ne!(pid.as_raw() as u32, std::process::id(), "{flags:?}");
            assert_eq!(
                Some(pid),
                child.pid(),
                "{flags:?}: getpid in the child is its clone pid"
            );
            let ppid = child.task().getppid().await.expect("getppid");
            assert_eq!(
                ppid.as_raw() as u32,
                std::process::id(),
                "{flags:?}: our child"
            );
            exit_cleanly(child, "child").await;
        }
    })
}

#[test]
fn child_writes_through_pipe_and_dup2() {
    run(async {
        let parent = local_thread();
        for flags in FLAG_CASES {
            let pipe = parent.pipe().await.expect("pipe");
            let child = parent.clone(flags).await.expect("clone");
            // A pipe made inside the child; dup2 the inherited write end over its write end,
            // so that writing to that number reaches our pipe.
            let inner = child.pipe().await.expect("pipe in child");
            let w = child.inherit_fd(&pipe.write).expect("inherit");
            child.task().dup2(&w, &inner.write).await.expect("dup2");
            let pid = child.task().getpid().await.expect("getpid");
            let msg = format!("hello from {pid}\n");
            child
                .task()
                .write_all_bytes(&inner.write, msg.as_bytes())
                .await
                .expect("write");
            inner.write.close().await.expect("close");
            inner.read.close().await.expect("close");
            w.close().await.expect("close");
            exit_cleanly(child, "child").await;
            drop(pipe.write);
            let got = parent.read_to_eof(&pipe.read).await.expect("read");
            assert_eq!(String::from_utf8_lossy(&got), msg, "{flags:?}");
        }
    })
}

#[test]
fn dup_at_places_fds_for_an_exec_and_never_replaces_an_open_one() {
    run(async {
        let parent = local_thread();
        let pipe = parent.pipe().await.expect("pipe");
        let (child, stdout) = child_with_stdout_pipe(&parent).await;
        let pid = child.pid().expect("pid");
        let theirs = child.inherit_fd(&pipe.write).expect("inherit");
        drop(pipe.write);
        // Free numbers far above any the child inherited.
        let (open_at, closed_at) = (FileDescriptor::new(40), FileDescriptor::new(41));
        let at_40 = theirs.dup_at(open_at, O::empty()).await.expect("dup_at 40");
        assert_eq!(at_40.near(), open_at);
        let at_41 = theirs
            .dup_at(closed_at, O::CLOEXEC)
            .await
            .expect("dup_at 41");
        assert_eq!(at_41.near(), closed_at);

        // Taken numbers and bad arguments are refused, and leave no fd behind.
        let before = open_fds_of(pid.as_raw());
        for (n, flags) in [
            (open_at, O::empty()),
            (closed_at, O::CLOEXEC),
            (FileDescriptor::new(-1), O::empty()),
            (FileDescriptor::new(42), O::NONBLOCK),
        ] {
            match theirs.dup_at(n, flags).await {
                Err(Error::InvalidArgument { what, .. }) => {
                    assert_eq!(what, "FileDescriptor::dup_at", "{n:?} {flags:?}")
                }
                other => panic!("dup_at({n:?}, {flags:?}) on a taken or bad number: {other:?}"),
            }
        }
        child.task().flush_closes().await.expect("flush");
        assert_eq!(
            open_fds_of(pid.as_raw()),
            before,
            "a refused dup_at left an fd"
        );
        drop(theirs);

        // The program finds fd 40 open; fd 41 was close-on-exec.
        // (dash redirects only fds 0 to 9; its builtin `test` sees its own /proc/self.)
        let script = sh("echo placed > /proc/self/fd/40; \
             if test -e /proc/self/fd/41; then echo 41 open; else echo 41 closed; fi")
        .await;
        let process = child.exec(script).await.expect("exec");
        drop((at_40, at_41));
        let said = parent.read_to_eof(&stdout).await.expect("read stdout");
        assert_eq!(String::from_utf8_lossy(&said), "41 closed\n");
        let got = parent.read_to_eof(&pipe.read).await.expect("read the pipe");
        assert_eq!(String::from_utf8_lossy(&got), "placed\n");
        process.check().await.expect("the program");
    })
}

#[test]
fn exec_program_from_path_and_capture_output() {
    run(async {
        let parent = local_thread();
        // Without CLONE_FILES the child has its own table, so its stdout can be replaced.
        let (child, stdout) = child_with_stdout_pipe(&parent).await;
        let pid = child.pid().expect("pid");
        let echo = sh("echo $$").await;
        let process = child.exec(echo).await.expect("exec");
        let out = parent.read_to_eof(&stdout).await.expect("read");
        assert_eq!(
            String::from_utf8_lossy(&out).trim(),
            pid.to_string(),
            "exec keeps the pid"
        );
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(0));

        // With CLONE_FILES the child shares our stdout; check the pid through the status.
        let child = parent.clone(CLONE::FILES).await.expect("clone");
        let pid = child.pid().expect("pid");
        let script = format!("test $$ -eq {pid} && exit 0; exit 1");
        child
            .exec(sh(&script).await)
            .await
            .expect("exec")
            .check()
            .await
            .expect("same pid after exec");
    })
}

#[test]
fn exec_unclean_exit_is_a_typed_error_with_the_status() {
    run(async {
        let parent = local_thread();
        for flags in FLAG_CASES {
            let child = parent.clone(flags).await.expect("clone");
            let process = child.exec(sh("exit 3").await).await.expect("exec");
            match process.check().await {
                Err(Error::UncleanExit { state, command }) => {
                    assert_eq!(state, ChildState::Exited(3));
                    assert!(command.contains("exit 3"), "{command}");
                }
                other => panic!("{flags:?}: expected UncleanExit, got {other:?}"),
            }
            // Waiting again gives the recorded state.
            assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(3));
        }
    })
}

#[test]
fn nested_clone_exec_and_wait() {
    run(async {
        let parent = local_thread();
        for outer in FLAG_CASES {
            for inner in FLAG_CASES {
                let pipe = parent.pipe().await.expect("pipe");
                let child = parent.clone(outer).await.expect("clone");
                let w = child.inherit_fd(&pipe.write).expect("inherit");
                let grandchild = child.clone(inner).await.expect("nested clone");
                let gpid = grandchild.task().getpid().await.expect("getpid");
                assert_eq!(Some(gpid), grandchild.pid());
                let cpid = child.task().getpid().await.expect("getpid");
                // Thread::clone gives the grandchild to the local process (CLONE_PARENT).
                assert_eq!(
                    grandchild.task().getppid().await.expect("getppid").as_raw() as u32,
                    std::process::id()
                );
                // The grandchild reaches our pipe through the chain of inherited copies.
                let gw = grandchild.inherit_fd(&w).expect("inherit in grandchild");
                grandchild
                    .task()
                    .write_all_bytes(&gw, b"nested")
                    .await
                    .expect("write");
                gw.close().await.expect("close");
                w.close().await.expect("close");
                drop(pipe.write);
                let script = format!("test $$ -eq {gpid} && exit 4; exit 1");
                let process = grandchild.exec(sh(&script).await).await.expect("exec");
                assert_eq!(
                    process.wait().await.expect("wait"),
                    ChildState::Exited(4),
                    "{outer:?}/{inner:?}"
                );
                // The child is still usable after its child exec'd and died.
                assert_eq!(child.task().getpid().await.expect("getpid"), cpid);
                exit_cleanly(child, "child").await;
                let out = parent.read_to_eof(&pipe.read).await.expect("read");
                assert_eq!(out, b"nested", "{outer:?}/{inner:?}");
            }
        }
    })
}

#[test]
fn exit_status_is_reported() {
    run(async {
        let parent = local_thread();
        for flags in FLAG_CASES {
            let child = parent.clone(flags).await.expect("clone");
            let process = child.exit(5).await.expect("exit");
            assert_eq!(
                process.wait().await.expect("wait"),
                ChildState::Exited(5),
                "{flags:?}"
            );
        }
    })
}

#[test]
fn sigkill_fails_pending_and_later_requests_with_hangup_promptly() {
    run(async {
        let parent = local_thread();
        for flags in FLAG_CASES {
            let pipe = parent.pipe().await.expect("pipe");
            let child = parent.clone(flags).await.expect("clone");
            let r = child.inherit_fd(&pipe.read).expect("inherit");
            // A read on an empty pipe blocks inside the child until it dies.
            let pending = child.task().read_bytes(&r, 10);
            let killer = async {
                async_io::Timer::after(Duration::from_millis(100)).await;
                let start = Instant::now();
                sigkill(&child).await;
                start
            };
            let (result, start) = future::zip(pending, killer).await;
            let err = result.expect_err("the read cannot complete");
            assert!(err.is_hangup(), "{flags:?}: pending request: {err}");
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{flags:?}: hangup took {:?}",
                start.elapsed()
            );
            let later = child.task().getpid().await.expect_err("later request");
            assert!(later.is_hangup(), "{flags:?}: later request: {later}");
            drop(pipe.write);
        }
    })
}

#[test]
fn exec_of_missing_file_is_enoent_and_child_stays_usable() {
    run(async {
        let parent = local_thread();
        for flags in FLAG_CASES {
            let child = parent.clone(flags).await.expect("clone");
            let pid = child.task().getpid().await.expect("getpid");
            let missing = rsyscall::Command::new("/nonexistent/program", "program");
            let err = child
                .exec(missing)
                .await
                .expect_err("exec of a missing file");
            assert_eq!(
                err.error.errno(),
                Some(rsyscall::Errno::ENOENT),
                "{}",
                err.error
            );
            let child = err.thread;
            assert_eq!(child.task().getpid().await.expect("still usable"), pid);
            exit_cleanly(child, "child").await;
        }
    })
}

#[test]
fn fd_of_another_table_is_refused_before_sending() {
    run(async {
        let parent = local_thread();
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        // Made after the clone: it exists only in our table.
        let pipe = parent.pipe().await.expect("pipe");
        let err = child
            .task()
            .write_bytes(&pipe.write, b"x")
            .await
            .expect_err("wrong table");
        assert!(
            matches!(
                err,
                Error::Mismatch(rsyscall::far::MismatchError::FdTable { .. })
            ),
            "{err}"
        );
        let err = child
            .inherit_fd(&pipe.write)
            .expect_err("made after the clone");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        // Nothing was sent: the child still answers, and the pipe is untouched.
        child.task().getpid().await.expect("child still fine");
        parent
            .task()
            .write_bytes(&pipe.write, b"ok")
            .await
            .expect("write locally");
        assert_eq!(
            parent
                .task()
                .read_bytes(&pipe.read, 10)
                .await
                .expect("read"),
            b"ok"
        );

        // A child sharing our table may use it directly.
        let sharing = parent.clone(CLONE::FILES).await.expect("clone");
        let fd = pipe.write.for_task(sharing.task()).expect("same table");
        sharing
            .task()
            .write_bytes(&fd, b"yes")
            .await
            .expect("write in child");
        assert_eq!(
            parent
                .task()
                .read_bytes(&pipe.read, 10)
                .await
                .expect("read"),
            b"yes"
        );
    })
}

#[test]
fn unsupported_clone_flags_are_refused() {
    run(async {
        let err = local_thread()
            .clone(CLONE::THREAD | CLONE::SIGHAND)
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(err.to_string().contains("THREAD"), "{err}");
    })
}

/// Polls until `pid` no longer exists, not even as a zombie (`kill(pid, 0)` succeeds on
/// zombies), as seen from `parent`; panics after 5 seconds.
async fn assert_reaped(parent: &rsyscall::Thread, pid: rsyscall::near::Pid, what: &str) {
    let start = Instant::now();
    loop {
        match parent
            .task()
            .kill(pid, Signal::new(0).unwrap_or(Signal::SIGCONT))
            .await
        {
            Err(e) if e.errno() == Some(rsyscall::Errno::ESRCH) => return,
            _ if start.elapsed() > Duration::from_secs(5) => {
                panic!("{what}: child {pid} still exists (alive or a zombie)")
            }
            _ => async_io::Timer::after(Duration::from_millis(10)).await,
        };
    }
}

#[test]
fn dropping_a_child_thread_kills_it() {
    run(async {
        let parent = local_thread();
        for flags in FLAG_CASES {
            let child = parent.clone(flags).await.expect("clone");
            let pid = child.pid().expect("pid");
            drop(child);
            // The service thread reaps it.
            assert_reaped(&parent, pid, &format!("{flags:?}")).await;
        }
    })
}

#[test]
fn dropping_a_child_of_a_remote_thread_kills_and_reaps_it() {
    run(async {
        let parent = local_thread().clone(CLONE::empty()).await.expect("clone");
        for flags in FLAG_CASES {
            let child = parent.clone(flags).await.expect("clone a grandchild");
            let pid = child.pid().expect("pid");
            drop(child);
            // Only the remote parent can reap it: done through its connection.
            assert_reaped(&parent, pid, &format!("{flags:?}")).await;
        }
        // An exec'd grandchild whose process handle is dropped unwaited: reaped once it exits.
        let child = parent
            .clone(CLONE::empty())
            .await
            .expect("clone a grandchild");
        let truth = child
            .exec(rsyscall::Command::new("/bin/true", "true"))
            .await
            .expect("exec /bin/true");
        let pid = truth.pid();
        drop(truth);
        assert_reaped(&parent, pid, "dropped /bin/true").await;
        exit_cleanly(parent, "the parent").await;
    })
}

#[test]
fn read_to_eof_is_one_name_on_task_and_thread() {
    run(async {
        let parent = local_thread();
        for via_task in [true, false] {
            let pipe = parent.pipe().await.expect("pipe");
            parent
                .task()
                .write_all_bytes(&pipe.write, b"to the end")
                .await
                .expect("write");
            pipe.write.close().await.expect("close");
            let got = if via_task {
                parent.task().read_to_eof(&pipe.read).await
            } else {
                parent.read_to_eof(&pipe.read).await
            };
            assert_eq!(got.expect("read"), b"to the end", "via task: {via_task}");
        }
    })
}

#[test]
fn run_checks_and_run_unchecked_returns_any_end() {
    run(async {
        let parent = local_thread();
        let exit3 = sh("exit 3").await;
        match parent.run(exit3.clone()).await {
            Err(Error::UncleanExit { state, .. }) => assert_eq!(state, ChildState::Exited(3)),
            other => panic!("run: expected UncleanExit, got {other:?}"),
        }
        assert_eq!(
            parent.run_unchecked(exit3).await.expect("run_unchecked"),
            ChildState::Exited(3)
        );
        let killed = sh("kill -9 $$").await;
        assert_eq!(
            parent.run_unchecked(killed).await.expect("run_unchecked"),
            ChildState::Killed(Signal::SIGKILL)
        );
        let clean = sh("exit 0").await;
        assert_eq!(
            parent.run(clean.clone()).await.expect("run"),
            ChildState::Exited(0)
        );
        assert_eq!(
            parent.run_unchecked(clean).await.expect("run_unchecked"),
            ChildState::Exited(0)
        );
        let missing = rsyscall::Command::new("/nonexistent/program", "program");
        let err = parent.run_unchecked(missing).await.expect_err("ENOENT");
        assert_eq!(err.errno(), Some(rsyscall::Errno::ENOENT), "{err}");
    })
}

#[test]
fn exit_works_on_any_thread_handle_and_is_refused_on_the_local_thread() {
    run(async {
        let local = local_thread();
        let err = local
            .exit(0)
            .await
            .expect_err("the local thread cannot exit");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert_eq!(
            local.task().getpid().await.expect("still here").as_raw() as u32,
            std::process::id()
        );

        // Through a plain Thread handle to a child thread, and to a grandchild.
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let grandchild = child.clone(CLONE::empty()).await.expect("clone");
        let handle = grandchild.duplicate();
        handle.exit(4).await.expect("exit through a handle");
        let err = handle.task().getpid().await.expect_err("gone");
        assert!(err.is_hangup(), "{err}");
        let process = grandchild
            .exit(0)
            .await
            .expect("the monitor is handed over");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(4));

        let handle = child.duplicate();
        handle.exit(5).await.expect("exit through a handle");
        let process = child.exit(0).await.expect("the monitor is handed over");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(5));
    })
}

/// A child's copy of an inherited fd has one owner: inheriting it again is refused, also
/// after the first handle closed it and the child reused the number for another fd, which
/// a second owner would otherwise close behind its owner's back.
#[test]
fn an_inherited_fd_has_one_owner() {
    run(async {
        let parent = local_thread();
        let pipe = parent.pipe().await.expect("pipe");
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        let first = child.inherit_fd(&pipe.write).expect("first inherit");
        let again = child.inherit_fd(&pipe.write);
        assert!(
            matches!(again, Err(Error::InvalidArgument { .. })),
            "second inherit: {again:?}"
        );
        // The first handle still owns the copy, and clones of it share that ownership.
        let shared = first.clone();
        child
            .task()
            .write_all_bytes(&shared, b"x")
            .await
            .expect("write through the copy");
        assert_eq!(
            parent.task().read_bytes(&pipe.read, 1).await.expect("read"),
            b"x"
        );
        let number = first.near();
        drop(shared);
        first.close().await.expect("close the copy");
        // The child reuses the lowest free number: the one just closed.
        let other = child.pipe().await.expect("pipe in the child");
        assert!(
            other.read.near() == number || other.write.near() == number,
            "the child's new pipe did not reuse fd {number:?}"
        );
        let stolen = child.inherit_fd(&pipe.write);
        assert!(
            matches!(stolen, Err(Error::InvalidArgument { .. })),
            "inherit after the number was reused: {stolen:?}"
        );
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn a_killed_child_hangs_up_while_a_process_it_made_holds_its_socket() {
    // A child with its own fd table gets its futex helper only when something first clones
    // from it: from then on the processes it makes hold its server socket (a copy of its
    // table, or the table itself), so end of file no longer tells its death.
    run(async {
        let parent = local_thread();
        for flags in [CLONE::empty(), CLONE::FILES] {
            let child = parent.clone(CLONE::empty()).await.expect("clone");
            let grandchild = child.clone(flags).await.expect("clone from the child");
            let start = Instant::now();
            sigkill(&child).await;
            let err = child
                .task()
                .getpid()
                .await
                .expect_err("a request to the killed child");
            assert!(err.is_hangup(), "{flags:?}: {err}");
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{flags:?}: hangup took {:?}",
                start.elapsed()
            );
            // The process it made is still served.
            grandchild
                .task()
                .getpid()
                .await
                .expect("getpid in the grandchild");
            exit_cleanly(grandchild, "grandchild").await;
        }
    })
}

/// CPU time this process has used so far (user and system, every thread).
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain data; getrusage writes one into `usage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writes.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[test]
fn a_request_waiting_for_a_long_time_burns_no_cpu() {
    // A request to a clone child first waits on its own core (the spin wait, 40 us by
    // default); then it sleeps, whatever the wait: a read blocked in the child for half a
    // second costs this process next to no CPU time.
    run(async {
        let parent = local_thread();
        let pipe = parent.pipe().await.expect("pipe");
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        let r = child.inherit_fd(&pipe.read).expect("inherit");
        assert!(rsyscall::thread::spin_wait() <= Duration::from_millis(1));
        let before = cpu_time();
        let read = child.task().read_bytes(&r, 10);
        let writer = async {
            async_io::Timer::after(Duration::from_millis(500)).await;
            parent
                .task()
                .write_all_bytes(&pipe.write, b"late")
                .await
                .expect("write");
        };
        let (got, ()) = future::zip(read, writer).await;
        assert_eq!(got.expect("read"), b"late");
        let used = cpu_time() - before;
        assert!(
            used < Duration::from_millis(100),
            "{used:?} of CPU time while waiting half a second"
        );
        exit_cleanly(child, "child").await;
    })
}
