//! `Thread::exec_bootstrapped`: a bootstrapped thread (through `stdin_bootstrap`, or a stub
//! accepted by `StubServer`) hands over to a real program. The launcher sees that
//! program's exit status; a failed exec leaves the thread usable (under its own name);
//! a killed thread gives a hangup, never `Ok`; an exec while a child cloned from the
//! thread holds a copy of its socket still completes (the futex helper ends the
//! connection).
//!
//! These run as root (as CI does). Every process a test starts is waited for by the test.

use std::io::Read;

use rsyscall::{CLONE, ChildState, Command, Error, Signal, StubServer, Thread, local_thread};
use rsyscall_tests::errors::serial;
use rsyscall_tests::programs::{env_thread, which};
use rsyscall_tests::tasks::run;
use rsyscall_tests::tmp::TempDir;

/// `sh -c script`.
async fn sh(script: &str) -> Command {
    which("sh").await.args(["-c", script])
}

/// The command name of local pid `pid`.
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("read comm")
}

/// Makes the thread's stdout the write end of a local pipe; returns the read end.
async fn capture_stdout(thread: &Thread) -> std::io::PipeReader {
    let (r, w) = std::io::pipe().expect("pipe");
    let w = rsyscall::FileDescriptor::from_owned_fd(
        &rsyscall::Task::local(),
        std::os::fd::OwnedFd::from(w),
    )
    .expect("wrap");
    let there = thread.pass_fd(&w).await.expect("pass_fd");
    thread
        .task()
        .dup2(&there, &thread.stdout())
        .await
        .expect("dup2");
    drop((there, w));
    r
}

/// Makes the thread's stdin the read end of a local pipe; returns the write end.
async fn give_stdin(thread: &Thread) -> std::io::PipeWriter {
    let (r, w) = std::io::pipe().expect("pipe");
    let r = rsyscall::FileDescriptor::from_owned_fd(
        &rsyscall::Task::local(),
        std::os::fd::OwnedFd::from(r),
    )
    .expect("wrap");
    let there = thread.pass_fd(&r).await.expect("pass_fd");
    thread
        .task()
        .dup2(&there, &thread.stdin())
        .await
        .expect("dup2");
    drop((there, r));
    w
}

/// Writes `word` and a newline, and closes the pipe.
fn say(mut w: std::io::PipeWriter, word: &str) {
    std::io::Write::write_all(&mut w, format!("{word}\n").as_bytes()).expect("write");
}

fn read_all(mut r: std::io::PipeReader) -> String {
    let mut out = String::new();
    r.read_to_string(&mut out).expect("read the pipe");
    out
}

#[test]
fn an_env_thread_execs_a_shell() {
    let _serial = serial();
    run(async {
        let (launcher, thread) = env_thread().await;
        let out = capture_stdout(&thread).await;
        thread
            .exec_bootstrapped(sh("echo hi; exit 7").await)
            .await
            .expect("exec");
        assert!(thread.is_dead(), "the thread is gone after its exec");
        assert_eq!(launcher.wait().await.expect("wait"), ChildState::Exited(7));
        assert_eq!(read_all(out), "hi\n");
    });
}

#[test]
fn exec_completes_while_a_clone_child_holds_the_socket() {
    let _serial = serial();
    run(async {
        let (launcher, thread) = env_thread().await;
        // A child without CLONE_FILES holds a copy of the thread's server socket: the
        // exec's close-on-exec alone would not end the connection.
        let child = thread.clone(CLONE::empty()).await.expect("clone");
        let out = capture_stdout(&thread).await;
        // The program waits for our word on its stdin, so it (and the child, which dies
        // with it) outlives the exec: only the futex helper can end the connection.
        let stdin_w = give_stdin(&thread).await;
        thread
            .exec_bootstrapped(sh("read word; echo \"handed $word\"; exit 3").await)
            .await
            .expect("exec");
        say(stdin_w, "over");
        assert_eq!(launcher.wait().await.expect("wait"), ChildState::Exited(3));
        assert_eq!(read_all(out), "handed over\n");
        // The child dies with its parent (its death signal); dropping it kills it
        // anyway, and the program that inherited it reaped it or left it to init.
        drop(child);
    });
}

#[test]
fn a_stub_hands_over_to_a_real_program() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-exec");
        let server = StubServer::make(&local_thread(), dir.path(), "mocked")
            .await
            .expect("make");
        let wrapper = dir.join("mocked");
        // The launching program runs the mocked program and looks at its status.
        let script = format!("'{}' one; exit $(($? + 1))", wrapper.display());
        let (out, w) = std::io::pipe().expect("pipe");
        let w = rsyscall::FileDescriptor::from_owned_fd(
            &rsyscall::Task::local(),
            std::os::fd::OwnedFd::from(w),
        )
        .expect("wrap");
        let launcher = local_thread().clone(CLONE::empty()).await.expect("clone");
        let theirs = launcher.inherit_fd(&w).expect("inherit");
        launcher
            .task()
            .dup2(&theirs, &launcher.stdout())
            .await
            .expect("dup2");
        drop((theirs, w));
        let process = launcher.exec(sh(&script).await).await.expect("exec sh");
        let (argv, stub) = server.accept().await.expect("accept");
        assert_eq!(argv.len(), 2);
        assert_eq!(argv[1], "one");
        // The callback: the mock passes its argument on to the real program, which waits
        // for a word on its stdin (so it is still running when the exec's end is read:
        // a program that ended and was reaped by its launching program before that would
        // make the outcome unknowable, see `Thread::exec_bootstrapped`).
        let stdin_w = give_stdin(&stub).await;
        let real = sh("read word; echo real got \"$1\" \"$word\"; exit 4")
            .await
            .args(["real", argv[1].to_str().expect("utf-8")]);
        stub.exec_bootstrapped(real)
            .await
            .expect("exec from the stub");
        say(stdin_w, "two");
        assert_eq!(
            process.wait().await.expect("wait"),
            ChildState::Exited(5),
            "the launching program saw the real program's 4"
        );
        assert_eq!(read_all(out), "real got one two\n");
        server.close().await.expect("close");
    });
}

#[test]
fn a_failed_exec_leaves_the_thread_usable() {
    let _serial = serial();
    run(async {
        let (launcher, thread) = env_thread().await;
        let pid = launcher.pid().as_raw();
        let name = comm(pid);
        let err = thread
            .exec_bootstrapped(Command::new("/nonexistent/program", "program"))
            .await
            .expect_err("no such program");
        assert_eq!(err.errno(), Some(rsyscall::Errno::ENOENT), "{err}");
        assert!(!thread.is_dead());
        assert_eq!(
            thread.task().getpid().await.expect("getpid").as_raw(),
            pid,
            "the thread still runs its server"
        );
        assert_eq!(comm(pid), name, "its name is restored");
        // Another failed exec reuses the watch and leaves no local fd behind.
        let fds = rsyscall_tests::procs::settled(rsyscall_tests::procs::open_fds).await;
        thread
            .exec_bootstrapped(Command::new("/nonexistent/program", "program"))
            .await
            .expect_err("no such program");
        assert_eq!(
            rsyscall_tests::procs::settled(rsyscall_tests::procs::open_fds).await,
            fds
        );
        // The watch installed by the first exec serves the next one.
        thread
            .exec_bootstrapped(sh("exit 0").await)
            .await
            .expect("exec");
        assert_eq!(launcher.wait().await.expect("wait"), ChildState::Exited(0));
    });
}

#[test]
fn a_failed_exec_dropped_at_any_poll_still_restores_the_name() {
    let _serial = serial();
    run(async {
        let (launcher, thread) = env_thread().await;
        let pid = launcher.pid().as_raw();
        let name = comm(pid);
        for polls in 1..=200 {
            let mut exec =
                Box::pin(thread.exec_bootstrapped(Command::new("/nonexistent/program", "program")));
            let mut finished = false;
            for _ in 0..polls {
                if futures_lite::future::poll_once(&mut exec).await.is_some() {
                    finished = true;
                    break;
                }
                // Time for answers to arrive, so that each poll moves the exec along.
                async_io::Timer::after(std::time::Duration::from_micros(300)).await;
            }
            drop(exec);
            // Requests are answered in order: once this one is, every request the dropped
            // exec sent has run.
            assert_eq!(thread.task().getpid().await.expect("getpid").as_raw(), pid);
            assert_eq!(
                comm(pid),
                name,
                "the name after an exec dropped at poll {polls}"
            );
            if finished {
                break;
            }
        }
        thread.exit(0).await.expect("exit");
        assert_eq!(launcher.wait().await.expect("wait"), ChildState::Exited(0));
    });
}

#[test]
fn exec_on_a_killed_thread_is_a_hangup() {
    let _serial = serial();
    run(async {
        // Killed before any exec, and killed after a failed exec installed the watch.
        for install_first in [false, true] {
            let (launcher, thread) = env_thread().await;
            if install_first {
                thread
                    .exec_bootstrapped(Command::new("/nonexistent/program", "program"))
                    .await
                    .expect_err("no such program");
            }
            launcher.kill(Signal::SIGKILL).await.expect("kill");
            assert_eq!(
                launcher.wait().await.expect("wait"),
                ChildState::Killed(Signal::SIGKILL)
            );
            let err = thread
                .exec_bootstrapped(sh("exit 0").await)
                .await
                .expect_err("a dead thread cannot exec");
            assert!(err.is_hangup(), "install_first {install_first}: {err}");
        }
    });
}

#[test]
fn only_bootstrapped_threads_exec_this_way() {
    let _serial = serial();
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let err = child
            .exec_bootstrapped(sh("exit 0").await)
            .await
            .expect_err("a clone child");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(!child.is_dead());
        let process = child.exit(0).await.expect("exit");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(0));
    });
}

#[test]
fn a_thread_with_the_watch_installed_still_exits() {
    let _serial = serial();
    run(async {
        let (launcher, thread) = env_thread().await;
        thread
            .exec_bootstrapped(Command::new("/nonexistent/program", "program"))
            .await
            .expect_err("no such program");
        // Its exit now also clears the watched word; the helper's exit ends the
        // connection as the socket's close does.
        thread.exit(6).await.expect("exit");
        assert!(thread.is_dead());
        assert_eq!(launcher.wait().await.expect("wait"), ChildState::Exited(6));
    });
}
