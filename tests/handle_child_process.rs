//! `ChildProcess` beyond kill and wait: the null-signal existence check, process groups
//! (`killpg`, `getpgid`, `setpgid` with its pid namespace check), priorities; and the
//! `ioctl` escape hatch. Against real child processes and real fds.

use rsyscall::near::{Pid, PrioWho};
use rsyscall::structs::WaitId;
use rsyscall::{
    CLONE, ChildState, ChildThread, Errno, Error, FD, Process, Signal, W, local_thread,
};
use rsyscall_tests::errors::{assert_errno, serial};
use rsyscall_tests::programs::sleeper;
use rsyscall_tests::tasks::{exit_cleanly, run};

fn process(t: &ChildThread) -> &rsyscall::ChildProcess {
    t.process().expect("a running child has a process")
}

#[test]
fn exists_is_true_until_the_child_is_reaped() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let p = process(&child);
        assert!(p.exists().await.expect("exists"), "running");
        // The null signal is sent nothing: the child keeps running.
        p.kill(None).await.expect("kill(None)");
        local
            .task()
            .kill(p.pid(), None)
            .await
            .expect("kill(pid, 0)");
        assert_eq!(
            child.task().getpid().await.expect("still running"),
            child.task().pid()
        );
        let raw = Process::new(local.task(), p.pid());
        assert!(raw.exists().await.expect("exists by pid"));
        exit_cleanly(child, "child").await;

        // A zombie exists until reaped, through the pidfd and by pid; a reap the handle did
        // not see is noticed by the kernel's ESRCH.
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let pid = child.pid().expect("pid");
        let process_handle = child.exit(0).await.expect("exit");
        let p = process_handle.process();
        let state = local
            .task()
            .waitid(WaitId::PidFd(p.pidfd()), W::EXITED | W::NOWAIT)
            .await
            .expect("waitid(NOWAIT)")
            .and_then(|i| i.child_state());
        assert_eq!(state, Some(ChildState::Exited(0)), "dead, not reaped");
        assert!(p.exists().await.expect("exists"), "a zombie still exists");
        assert!(
            Process::new(local.task(), pid)
                .exists()
                .await
                .expect("by pid")
        );
        local
            .task()
            .waitid(WaitId::PidFd(p.pidfd()), W::EXITED)
            .await
            .expect("reap behind the handle's back");
        assert!(!p.exists().await.expect("exists"), "reaped: ESRCH");
        assert!(
            matches!(p.killpg(Signal::SIGTERM).await, Err(Error::Syscall { .. })),
            "the group id is checked by the kernel"
        );
        drop(process_handle);

        let child = local.clone(CLONE::empty()).await.expect("clone");
        let done = child.exit(0).await.expect("exit");
        done.wait().await.expect("wait");
        assert!(!done.process().exists().await.expect("exists"), "reaped");
        assert!(matches!(
            done.process().getpgid().await,
            Err(Error::ChildGone { .. })
        ));
        assert!(matches!(
            done.process().killpg(Signal::SIGTERM).await,
            Err(Error::ChildGone { .. })
        ));
        assert!(matches!(
            Process::new(local.task(), Pid::new(0)).exists().await,
            Err(Error::InvalidArgument { .. })
        ));
    })
}

#[test]
fn setpgid_getpgid_and_killpg_on_children() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let our_group = local.task().getpgid(Pid::new(0)).await.expect("our group");
        let a = local.clone(CLONE::empty()).await.expect("clone a");
        let b = local.clone(CLONE::empty()).await.expect("clone b");
        let (pa, pb) = (process(&a), process(&b));
        assert_eq!(
            pa.getpgid().await.expect("getpgid"),
            our_group,
            "born in ours"
        );
        assert_errno(
            pa.killpg(Signal::SIGTERM).await,
            Errno::ESRCH,
            "a child that leads no group",
        );
        pa.setpgid(None).await.expect("a leads a group");
        assert_eq!(pa.getpgid().await.expect("getpgid"), pa.pid());
        pb.setpgid(Some(pa)).await.expect("b joins a's group");
        assert_eq!(pb.getpgid().await.expect("getpgid"), pa.pid());
        assert_eq!(
            b.task().getpgid(Pid::new(0)).await.expect("b's own view"),
            pa.pid()
        );
        pa.setpgid(Some(pa)).await.expect("a into its own group");
        // The null signal checks the group; then one signal reaches both.
        pa.killpg(None).await.expect("killpg(None)");
        pa.killpg(Signal::SIGKILL).await.expect("killpg");
        for (p, what) in [(pa, "a"), (pb, "b")] {
            assert_eq!(
                p.waitid(W::EXITED).await.expect("wait"),
                Some(ChildState::Killed(Signal::SIGKILL)),
                "{what}"
            );
        }
        drop((a, b));
        assert_eq!(
            local.task().getpgid(Pid::new(0)).await.expect("ours"),
            our_group,
            "we were not in the group"
        );
    })
}

#[test]
fn setpgid_refuses_a_group_from_another_pid_namespace() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let init = local
            .clone(CLONE::NEWPID)
            .await
            .expect("clone(CLONE_NEWPID) as root");
        let inner = init.clone(CLONE::empty()).await.expect("clone in init");
        let pi = process(&inner);
        pi.setpgid(None).await.expect("inner leads a group");
        assert_eq!(pi.getpgid().await.expect("getpgid"), pi.pid());
        let a = local.clone(CLONE::empty()).await.expect("clone a");
        let pa = process(&a);
        let before = pa.getpgid().await.expect("getpgid");
        // inner's pid is a pid of init's namespace: in ours it names another process.
        let refused = pa.setpgid(Some(pi)).await;
        assert!(
            matches!(
                refused,
                Err(Error::Mismatch(
                    rsyscall::far::MismatchError::PidNamespace { .. }
                ))
            ),
            "{refused:?}"
        );
        assert_eq!(pa.getpgid().await.expect("getpgid"), before, "unchanged");
        exit_cleanly(a, "a").await;
        exit_cleanly(inner, "inner").await;
        exit_cleanly(init, "init").await;
    })
}

#[test]
fn priorities_of_a_child() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let p = process(&child);
        let start = p.getpriority().await.expect("getpriority");
        let nice = (start + 3).min(19);
        p.setpriority(nice).await.expect("setpriority");
        assert_eq!(p.getpriority().await.expect("getpriority"), nice);
        assert_eq!(
            child
                .task()
                .getpriority(PrioWho::Process(Pid::new(0)))
                .await
                .expect("the child's own view"),
            nice
        );
        assert_eq!(
            local
                .task()
                .getpriority(PrioWho::Process(Pid::new(0)))
                .await
                .expect("ours"),
            start,
            "only the child changed"
        );
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn ioctl_escape_hatch_on_local_and_remote_fds() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let child = local.clone(CLONE::empty()).await.expect("clone");
        for t in [local.duplicate(), child.duplicate()] {
            let task = t.task();
            let pipe = t.pipe().await.expect("pipe");
            task.write_bytes(&pipe.write, b"abc").await.expect("write");
            let room = task.ptr(&0i32).await.expect("ptr");
            // SAFETY: FIONREAD writes one int, inside `room`, and touches no fds.
            let (ret, n) = unsafe { pipe.read.ioctl_ptr(libc::FIONREAD, room) }
                .await
                .expect("ioctl(FIONREAD)");
            assert_eq!(ret, 0);
            assert_eq!(n.read().await.expect("read"), 3);
            pipe.read.disable_cloexec().await.expect("clear");
            // SAFETY: FIOCLEX takes no argument and only sets the fd's close-on-exec flag.
            unsafe { pipe.read.ioctl(libc::FIOCLEX, 0) }
                .await
                .expect("ioctl(FIOCLEX)");
            assert!(
                pipe.read
                    .fcntl_getfd()
                    .await
                    .expect("F_GETFD")
                    .contains(FD::CLOEXEC)
            );
            let room = task.ptr(&[0u16; 4]).await.expect("ptr");
            // SAFETY: a pipe does not know TIOCGWINSZ and fails before touching memory;
            // `room` would hold a struct winsize (8 bytes) anyway.
            let not_a_tty = unsafe { pipe.read.ioctl_ptr(libc::TIOCGWINSZ, room) }.await;
            assert_errno(not_a_tty, Errno::ENOTTY, "a terminal request on a pipe");
        }
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn an_exec_child_is_checked_and_signalled_through_its_group() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let child = local.clone(CLONE::empty()).await.expect("clone");
        process(&child)
            .setpgid(None)
            .await
            .expect("lead a group before the exec");
        let sleeper = child.exec(sleeper().await).await.expect("exec sleep");
        assert!(sleeper.exists().await.expect("exists"), "sleeping");
        sleeper.kill(None).await.expect("the null signal");
        assert_errno(
            sleeper.process().setpgid(None).await,
            Errno::EACCES,
            "setpgid after the exec",
        );
        sleeper.killpg(Signal::SIGKILL).await.expect("killpg");
        assert_eq!(
            sleeper.wait().await.expect("wait"),
            ChildState::Killed(Signal::SIGKILL)
        );
        assert!(!sleeper.exists().await.expect("exists"), "reaped");
        assert!(matches!(
            sleeper.killpg(Signal::SIGKILL).await,
            Err(Error::ChildGone { .. })
        ));
    })
}
