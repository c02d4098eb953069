//! `ChildProcess` beyond kill and wait: the null-signal existence check. Against real
//! child processes.

use rsyscall::near::Pid;
use rsyscall::structs::WaitId;
use rsyscall::{CLONE, ChildState, ChildThread, Error, Process, W, local_thread};
use rsyscall_tests::errors::serial;
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
        drop(process_handle);

        let child = local.clone(CLONE::empty()).await.expect("clone");
        let done = child.exit(0).await.expect("exit");
        done.wait().await.expect("wait");
        assert!(!done.process().exists().await.expect("exists"), "reaped");
        assert!(matches!(
            Process::new(local.task(), Pid::new(0)).exists().await,
            Err(Error::InvalidArgument { .. })
        ));
    })
}
