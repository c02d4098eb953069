//! Child monitoring: wait, stop/continue, killpg, concurrent execs, pid namespaces, zombies;
//! and the clone flags and exec forms the monitor depends on.

use std::time::{Duration, Instant};

use futures_lite::future;
use rsyscall::{CLONE, ChildState, Error, Signal, W, local_thread};
use rsyscall_tests::programs::sh;
use rsyscall_tests::tasks::{exit_cleanly, run, sigkill};

#[test]
fn stop_continue_and_kill_are_reported() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let process = child.exec(sh("exec sleep 100").await).await.expect("exec");
        process.kill(Signal::SIGSTOP).await.expect("stop");
        let state = process
            .waitpid(W::EXITED | W::STOPPED)
            .await
            .expect("waitpid");
        assert_eq!(state, ChildState::Stopped(Signal::SIGSTOP));
        process.kill(Signal::SIGCONT).await.expect("continue");
        let state = process
            .waitpid(W::EXITED | W::CONTINUED)
            .await
            .expect("waitpid");
        assert_eq!(state, ChildState::Continued);
        process.kill(Signal::SIGKILL).await.expect("kill");
        assert_eq!(
            process.wait().await.expect("wait"),
            ChildState::Killed(Signal::SIGKILL)
        );
        let err = process.kill(Signal::SIGKILL).await.expect_err("reaped");
        assert!(matches!(err, Error::ChildGone { .. }), "{err}");
        assert!(process.waitpid(W::NOHANG).await.is_err(), "no event kind");
    })
}

#[test]
fn killpg_signals_the_childs_group() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        child
            .task()
            .setpgid(rsyscall::near::Pid::new(0), rsyscall::near::Pid::new(0))
            .await
            .expect("become a group leader");
        let process = child.exec(sh("exec sleep 100").await).await.expect("exec");
        process.killpg(Signal::SIGTERM).await.expect("killpg");
        assert_eq!(
            process.wait().await.expect("wait"),
            ChildState::Killed(Signal::SIGTERM)
        );
    })
}

#[test]
fn two_children_execd_at_once_are_each_waited() {
    run(async {
        let parent = local_thread();
        let (a, b) = future::zip(parent.clone(CLONE::empty()), parent.clone(CLONE::FILES)).await;
        let (a, b) = (a.expect("clone a"), b.expect("clone b"));
        let (pa, pb) = future::zip(a.exec(sh("exit 11").await), b.exec(sh("exit 12").await)).await;
        let (pa, pb) = (pa.expect("exec a"), pb.expect("exec b"));
        let (sb, sa) = future::zip(pb.wait(), pa.wait()).await;
        assert_eq!(sa.expect("wait a"), ChildState::Exited(11));
        assert_eq!(sb.expect("wait b"), ChildState::Exited(12));
    })
}

#[test]
fn a_child_in_a_new_pid_namespace_is_monitored() {
    run(async {
        let child = local_thread()
            .clone(CLONE::NEWPID)
            .await
            .expect("clone(NEWPID) (needs CAP_SYS_ADMIN: run the suite as root)");
        assert_eq!(
            child.task().getpid().await.expect("getpid").as_raw(),
            1,
            "init of its namespace"
        );
        let process = child
            .exec(sh("test $$ -eq 1 && exit 5; exit 1").await)
            .await
            .expect("exec");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(5));
    })
}

#[test]
fn a_killed_thread_reports_itself_dead() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        assert!(!child.is_dead());
        child.task().getpid().await.expect("alive");
        sigkill(&child).await;
        let start = Instant::now();
        let err = child.task().getpid().await.expect_err("dead");
        assert!(err.is_hangup(), "{err}");
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(child.is_dead());
    })
}

#[test]
fn clone_parent_makes_a_sibling_we_wait_for() {
    run(async {
        let parent = local_thread();
        let err = parent
            .clone(CLONE::PARENT)
            .await
            .expect_err("local has no parent thread");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        let sibling = child.clone(CLONE::PARENT).await.expect("clone(PARENT)");
        let ppid = sibling.task().getppid().await.expect("getppid");
        assert_eq!(
            ppid.as_raw() as u32,
            std::process::id(),
            "the sibling is our child"
        );
        let process = sibling.exec(sh("exit 6").await).await.expect("exec");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(6));
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn clone_sighand_exec_leaves_our_dispositions_alone() {
    run(async {
        let child = local_thread()
            .clone(CLONE::SIGHAND)
            .await
            .expect("clone(SIGHAND)");
        child
            .exec(sh("exit 0").await)
            .await
            .expect("exec")
            .check()
            .await
            .expect("clean");
        // Rust ignores SIGPIPE in the test process; a reset in the child would have reset ours.
        // SAFETY: reading our own disposition into a zeroed struct.
        let old = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old);
            old
        };
        assert_eq!(
            old.sa_sigaction,
            libc::SIG_IGN,
            "our SIGPIPE disposition is unchanged"
        );
    })
}

#[test]
fn execve_and_execv_and_pass_fd() {
    run(async {
        let parent = local_thread();
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        // Made after the clone: the child has no copy until we pass one.
        let pipe = parent.pipe().await.expect("pipe");
        let w = child.pass_fd(&pipe.write).await.expect("pass_fd");
        child.task().dup2(&w, &child.stdout()).await.expect("dup2");
        w.close().await.expect("close");
        drop(pipe.write);
        let shell = sh("").await;
        let process = child
            .execve(
                shell.path(),
                &[
                    "sh",
                    "-c",
                    "echo \"$FOO\"; env | grep -cv -e ^PWD= -e ^OLDPWD= -e ^SHLVL= -e ^_=",
                ],
                &["FOO=bar baz"],
            )
            .await
            .expect("execve");
        let out = parent.read_to_eof(&pipe.read).await.expect("read");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "bar baz\n1\n",
            "exactly the given environment"
        );
        process.check().await.expect("clean");

        let child = parent.clone(CLONE::empty()).await.expect("clone");
        let process = child
            .execv(shell.path(), &["sh", "-c", "exit 9"])
            .await
            .expect("execv");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(9));
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        let err = child
            .execve(shell.path(), &["sh"], &["NOEQUALS"])
            .await
            .expect_err("bad envp");
        assert!(matches!(err.error, Error::InvalidArgument { .. }));
        exit_cleanly(err.thread, "still usable").await;
    })
}

#[test]
fn dropping_a_check_terminates_the_child() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let process = child.exec(sh("exec sleep inf").await).await.expect("exec");
        let cancelled = future::or(async { Some(process.check().await) }, async {
            async_io::Timer::after(Duration::from_millis(100)).await;
            None
        })
        .await;
        assert!(cancelled.is_none(), "sleep inf does not finish");
        assert_eq!(
            process.wait().await.expect("wait"),
            ChildState::Killed(Signal::SIGTERM)
        );
    })
}

#[test]
fn zz_no_zombies_remain() {
    run(async {
        // Children abandoned by other tests are reaped by the service thread; give it time.
        for _ in 0..250 {
            if !rsyscall_tests::procs::children().iter().any(|c| c.zombie) {
                return;
            }
            async_io::Timer::after(Duration::from_millis(20)).await;
        }
        panic!(
            "zombie children remain: {:?}",
            rsyscall_tests::procs::children()
        );
    })
}

#[test]
fn a_signalfd_in_a_child_receives_sigint() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let task = child.task();
        let mask = rsyscall::structs::Sigset::from([Signal::SIGINT]);
        task.rt_sigprocmask(rsyscall::SigprocmaskHow::Block, Some(mask))
            .await
            .expect("block SIGINT in the child only");
        let sfd = task
            .signalfd(mask, rsyscall::SFD::empty())
            .await
            .expect("signalfd");
        let pid = child.pid().expect("pid");
        local_thread()
            .task()
            .kill(pid, Signal::SIGINT)
            .await
            .expect("kill(SIGINT)");
        let buf = task
            .malloc_array::<rsyscall::structs::SignalfdSiginfo>(1)
            .await
            .expect("malloc");
        let (info, _) = sfd.signalfd_read(buf).await.expect("read the signalfd");
        let info = info.read().await.expect("parse");
        assert_eq!(info[0].signal(), Some(Signal::SIGINT));
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn cat_through_pipes_with_blocking_io() {
    run(async {
        let parent = local_thread();
        let input = parent.pipe().await.expect("pipe");
        let output = parent.pipe().await.expect("pipe");
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        let (r, w) = (
            child.inherit_fd(&input.read).expect("inherit"),
            child.inherit_fd(&output.write).expect("inherit"),
        );
        child.task().dup2(&r, &child.stdin()).await.expect("dup2");
        child.task().dup2(&w, &child.stdout()).await.expect("dup2");
        drop((r, w, input.read, output.write));
        let cat = parent.environ().which("cat").await.expect("cat on PATH");
        let process = child.exec(cat).await.expect("exec");
        // Plain blocking syscalls on our ends; a small message fits in the pipe buffers.
        parent
            .task()
            .write_all_bytes(&input.write, b"meow\n")
            .await
            .expect("write");
        input.write.close().await.expect("close");
        let out = parent.read_to_eof(&output.read).await.expect("read");
        assert_eq!(out, b"meow\n");
        process.check().await.expect("cat exits cleanly");
    })
}

/// A wait on a child of a remote thread, dropped while its `waitid` is in flight: the
/// syscall still runs in the parent and may reap the child, so its answer must not be the
/// only record of the death. Later waits return the same state.
#[test]
fn a_dropped_remote_wait_loses_no_exit_status() {
    run(async {
        let init = local_thread()
            .clone(CLONE::NEWPID)
            .await
            .expect("clone(NEWPID) (needs CAP_SYS_ADMIN: run the suite as root)");
        for round in 0..20 {
            let child = init.clone(CLONE::empty()).await.expect("clone from init");
            assert!(
                !child.task().sysif().is_local() && !child.parent().task().sysif().is_local(),
                "the child's waiter must be a remote thread (init of the pid namespace)"
            );
            let process = child
                .exec(sh(&format!("exit {}", round + 1)).await)
                .await
                .expect("exec");
            // Let the child die first, so the waitid the dropped wait sends reaps it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while process
                .process()
                .waitid(W::EXITED | W::NOWAIT | W::NOHANG)
                .await
                .expect("peek")
                .is_none()
            {
                assert!(Instant::now() < deadline, "child did not exit");
                async_io::Timer::after(Duration::from_millis(1)).await;
            }
            // A syscall in init first sends the closes queued on its table, so the wait's
            // first poll puts its waitid on the wire; polled 1 to 3 times (each Pending
            // until the answer is read), then dropped.
            init.task().getpid().await.expect("getpid in init");
            {
                let mut wait = Box::pin(process.wait());
                for _ in 0..=round % 3 {
                    if future::poll_once(&mut wait).await.is_some() {
                        break;
                    }
                }
            }
            assert_eq!(
                process.wait().await.expect("wait after a dropped wait"),
                ChildState::Exited(round + 1),
                "round {round}"
            );
        }
        exit_cleanly(init, "init").await;
    });
}
