//! `ChildThread::exec` tells the truth: an exec on a dead or dying child fails unless the
//! program really replaced the child's image, and a normal exec succeeds, even when the
//! futex helper reports the exec before the server socket closes.

use std::path::PathBuf;
use std::time::Duration;

use rsyscall::{CLONE, ChildState, Error, Signal, local_thread};
use rsyscall_tests::tasks::{child_with_stdout_pipe, exit_cleanly, run, sigkill};
use rsyscall_tests::tmp::TempDir;

const FLAG_CASES: [CLONE; 2] = [CLONE::empty(), CLONE::FILES];

/// The `comm` (set late in a successful exec to the basename of the program's path) and
/// whether the kernel's `PF_FORKNOEXEC` flag is still set (every clone child starts with
/// it; a completed exec clears it) of process `pid`, a pid of ours not yet reaped.
fn comm_and_forknoexec(pid: i32) -> (String, bool) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    let open = stat.find('(').expect("comm starts");
    let close = stat.rfind(')').expect("comm ends");
    let flags: u64 = stat[close + 1..]
        .split_whitespace()
        .nth(6)
        .and_then(|f| f.parse().ok())
        .expect("flags field");
    (stat[open + 1..close].to_string(), flags & 0x40 != 0)
}

#[test]
fn exec_on_a_killed_child_thread_fails() {
    run(async {
        let parent = local_thread();
        let sh = parent.environ().which("sh").await.expect("which sh");
        for flags in FLAG_CASES {
            // Killed, and known to be dead before exec is asked for.
            let child = parent.clone(flags).await.expect("clone");
            sigkill(&child).await;
            let err = child.task().getpid().await.expect_err("dead");
            assert!(err.is_hangup(), "{flags:?}: {err}");
            assert!(child.is_dead(), "{flags:?}");
            let cmd = sh.clone().args(["-c", "exit 0"]);
            let err = child.exec(cmd).await.expect_err("exec on a dead thread");
            assert!(err.error.is_hangup(), "{flags:?}: {}", err.error);
            assert!(err.thread.is_dead(), "{flags:?}");

            // Killed just before exec: the death is not known yet when exec is sent.
            let child = parent.clone(flags).await.expect("clone");
            sigkill(&child).await;
            let cmd = sh.clone().args(["-c", "exit 0"]);
            let err = child.exec(cmd).await.expect_err("exec on a killed thread");
            assert!(err.error.is_hangup(), "{flags:?}: {}", err.error);
        }
    })
}

/// The task-level `execve` (no pidfd to consult) on a task whose connection is known to be
/// lost: nothing is sent, so it cannot have succeeded, and it is an error, not `Ok`.
#[test]
fn task_execve_on_a_dead_task_is_an_error() {
    run(async {
        let parent = local_thread();
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        sigkill(&child).await;
        let err = child.task().getpid().await.expect_err("dead");
        assert!(err.is_hangup(), "{err}");
        let no_env: &[&str] = &[];
        let image = child
            .task()
            .argv_envp("/bin/true", &["true"], no_env)
            .await
            .expect("image");
        let err = child
            .task()
            .execve(image)
            .await
            .expect_err("execve on a dead task");
        assert!(err.is_hangup(), "{err}");
    })
}

#[test]
fn exec_racing_with_a_kill_reports_what_happened() {
    run(async {
        let parent = local_thread();
        let sh = parent.environ().which("sh").await.expect("which sh");
        let (mut ran, mut failed) = (0, 0);
        for i in 0..60u64 {
            let (child, stdout) = child_with_stdout_pipe(&parent).await;
            let pid = child.pid().expect("pid").as_raw();
            let (before, forknoexec) = comm_and_forknoexec(pid);
            assert!(
                before != "sh" && forknoexec,
                "the child must not look exec'd already"
            );
            // The child is ours and not reaped before the killer is joined, so the pid
            // names it.
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros((i % 30) * 8));
                // SAFETY: plain kill(2) of our unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            });
            let cmd = sh.clone().args(["-c", "echo ran"]);
            let result = child.exec(cmd).await;
            killer.join().expect("killer");
            match result {
                Ok(process) => {
                    // Before it is reaped: the kernel completed the exec (the flag is
                    // cleared once the new image is in; the comm is set a little later,
                    // so it may still be the old one if the kill came in between).
                    let (_, forknoexec) = comm_and_forknoexec(pid);
                    assert!(!forknoexec, "iteration {i}: exec reported, not done");
                    let state = process.wait().await.expect("wait");
                    let out = parent.read_to_eof(&stdout).await.expect("read");
                    match state {
                        ChildState::Exited(0) => assert_eq!(out, b"ran\n"),
                        ChildState::Killed(Signal::SIGKILL) => {}
                        other => panic!("iteration {i}: unexpected end {other:?}"),
                    }
                    ran += 1;
                }
                Err(e) => {
                    assert!(e.error.is_hangup(), "iteration {i}: {}", e.error);
                    // The program never ran: the image is still the server's, and
                    // nothing was written.
                    let (comm, forknoexec) = comm_and_forknoexec(pid);
                    assert!(
                        forknoexec && comm != "sh",
                        "iteration {i}: exec happened ({comm})"
                    );
                    let out = parent.read_to_eof(&stdout).await.expect("read");
                    assert!(out.is_empty(), "iteration {i}: the program ran");
                    failed += 1;
                }
            }
        }
        println!("exec won {ran} times, the kill {failed} times");
    })
}

#[test]
fn exec_racing_with_an_exit_reports_what_happened() {
    run(async {
        let parent = local_thread();
        let sh = parent.environ().which("sh").await.expect("which sh");
        let (mut ran, mut exited) = (0, 0);
        for i in 0..40 {
            let child = parent.clone(CLONE::empty()).await.expect("clone");
            let handle = child.duplicate();
            let pid = child.pid().expect("pid").as_raw();
            // Whichever request reaches the server first wins: the other is never run.
            // Each side waits a few turns of the executor before sending, varied.
            let turns = |n: usize| async move {
                for _ in 0..n {
                    futures_lite::future::yield_now().await;
                }
            };
            let exit = async {
                turns(i % 3).await;
                handle.exit(9).await
            };
            let cmd = sh.clone().args(["-c", "exit 0"]);
            let exec = async {
                turns(i / 3 % 3).await;
                child.exec(cmd).await
            };
            let (exit, result) = futures_lite::future::zip(exit, exec).await;
            exit.expect("exit returns once the thread is gone");
            match result {
                Ok(process) => {
                    let (_, forknoexec) = comm_and_forknoexec(pid);
                    assert!(!forknoexec, "iteration {i}: exec reported, not done");
                    assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(0));
                    ran += 1;
                }
                Err(e) => {
                    assert!(e.error.is_hangup(), "iteration {i}: {}", e.error);
                    let (_, forknoexec) = comm_and_forknoexec(pid);
                    assert!(forknoexec, "iteration {i}: exec happened");
                    let process = e.thread.exit(0).await.expect("the monitor");
                    assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(9));
                    exited += 1;
                }
            }
        }
        println!("exec won {ran} times, the exit {exited} times");
    })
}

#[test]
fn exec_succeeds_when_a_grandchild_holds_the_server_socket() {
    run(async {
        let parent = local_thread();
        let sh = parent.environ().which("sh").await.expect("which sh");
        for _ in 0..20 {
            let child = parent.clone(CLONE::empty()).await.expect("clone");
            // Its own copy of the child's table, server socket included: the child's exec
            // does not close the socket, so only the futex helper reports it.
            let grandchild = child.clone(CLONE::PARENT).await.expect("clone");
            let cmd = sh.clone().args(["-c", "exit 0"]);
            let process = child.exec(cmd).await.expect("exec");
            process.check().await.expect("the program ran");
            exit_cleanly(grandchild, "grandchild").await;
        }
    })
}

#[test]
fn a_normal_exec_succeeds_and_runs_the_program() {
    run(async {
        let parent = local_thread();
        let sh = parent.environ().which("sh").await.expect("which sh");
        for flags in FLAG_CASES {
            let child = parent.clone(flags).await.expect("clone");
            let cmd = sh.clone().args(["-c", "exit 5"]);
            let process = child.exec(cmd).await.expect("exec");
            assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(5));
        }
    })
}

#[test]
fn which_checks_a_name_with_a_slash_and_not_found_is_typed() {
    use std::os::unix::fs::PermissionsExt;
    run(async {
        let parent = local_thread();
        let dir = TempDir::new("which");
        let prog = dir.join("prog");
        std::fs::write(&prog, "#!/bin/sh\nexit 0\n").expect("write");
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let plain = dir.join("plain");
        std::fs::write(&plain, "not a program\n").expect("write");
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        for thread in [parent.duplicate(), child.duplicate()] {
            let found = thread
                .environ()
                .which(prog.to_str().expect("utf-8"))
                .await
                .expect("an executable path is found");
            assert_eq!(found.path(), prog.as_os_str());
            let not_programs = [
                plain.clone(),
                dir.join("missing"),
                dir.path().to_path_buf(),
                dir.join("missing/prog"),
            ];
            for path in not_programs {
                let name = path.to_str().expect("utf-8");
                match thread.environ().which(name).await {
                    Err(Error::NotFound { name: n, searched }) => {
                        assert_eq!(n, name);
                        assert_eq!(searched, vec![path.clone()]);
                    }
                    other => panic!("{name}: expected NotFound, got {other:?}"),
                }
            }
            match thread.environ().which("rsyscall-no-such-program").await {
                Err(e @ Error::NotFound { .. }) => {
                    let Error::NotFound { name, searched } = &e else {
                        unreachable!()
                    };
                    assert_eq!(name, "rsyscall-no-such-program");
                    let path: Vec<PathBuf> =
                        std::env::split_paths(&std::env::var_os("PATH").expect("PATH is set"))
                            .filter(|d| !d.as_os_str().is_empty())
                            .collect();
                    assert_eq!(searched, &path);
                    assert!(e.to_string().contains("rsyscall-no-such-program"), "{e}");
                }
                other => panic!("expected NotFound, got {other:?}"),
            }
        }
        exit_cleanly(child, "child").await;
    })
}

/// Runs `command` in a fresh child of `thread` and returns what it wrote to stdout.
async fn output_of(thread: &rsyscall::Thread, command: rsyscall::Command) -> String {
    let (child, stdout) = child_with_stdout_pipe(thread).await;
    let process = child.exec(command).await.expect("exec");
    let out = thread.read_to_eof(&stdout).await.expect("read");
    process.check().await.expect("the command succeeds");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn a_threads_environment_can_be_changed_and_which_and_exec_see_it() {
    use std::os::unix::fs::PermissionsExt;
    run(async {
        let parent = local_thread();
        let sh = parent.environ().which("sh").await.expect("which sh");
        let thread = parent.clone(CLONE::empty()).await.expect("clone");
        let env = thread.environ();
        env.set("RSYSCALL_TEST_SET", "set value").expect("set");
        env.set("RSYSCALL_TEST_GONE", "x").expect("set");
        env.remove("RSYSCALL_TEST_GONE");
        assert_eq!(
            env.get("RSYSCALL_TEST_SET").as_deref(),
            Some(std::ffi::OsStr::new("set value"))
        );
        assert_eq!(env.get("RSYSCALL_TEST_GONE"), None);
        // Every handle to the thread sees it; the thread it was cloned from does not.
        assert_eq!(
            thread.duplicate().environ().get("RSYSCALL_TEST_SET"),
            env.get("RSYSCALL_TEST_SET")
        );
        assert_eq!(parent.environ().get("RSYSCALL_TEST_SET"), None);
        // Bad names and values are refused.
        for (k, v) in [("", "v"), ("A=B", "v"), ("A\0", "v"), ("A", "v\0")] {
            assert!(
                matches!(env.set(k, v), Err(Error::InvalidArgument { .. })),
                "{k:?}={v:?}"
            );
        }

        // exec (the default environment of a Command) sees the change, in this thread
        // and in a thread cloned from it afterwards.
        let script = sh.clone().args([
            "-c",
            "printf '%s|%s' \"$RSYSCALL_TEST_SET\" \"${RSYSCALL_TEST_GONE-unset}\"",
        ]);
        assert_eq!(output_of(&thread, script.clone()).await, "set value|unset");
        let inner = thread.clone(CLONE::empty()).await.expect("clone");
        assert_eq!(output_of(&inner, script.clone()).await, "set value|unset");
        exit_cleanly(inner, "inner").await;
        // A Command's own changes still win.
        let overridden = script.env("RSYSCALL_TEST_SET", "command's");
        assert_eq!(output_of(&thread, overridden).await, "command's|unset");

        // which sees a changed PATH.
        let dir = TempDir::new("environ");
        let prog = dir.join("rsys-env-prog");
        std::fs::write(&prog, "#!/bin/sh\nexit 0\n").expect("write");
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(matches!(
            env.which("rsys-env-prog").await,
            Err(Error::NotFound { .. })
        ));
        env.set("PATH", dir.path()).expect("set PATH");
        let found = env
            .which("rsys-env-prog")
            .await
            .expect("found on the new PATH");
        assert_eq!(found.path(), prog.as_os_str());
        match env.which("sh").await {
            Err(Error::NotFound { searched, .. }) => assert_eq!(searched, [dir.path()]),
            other => panic!("sh is not in the new PATH: {other:?}"),
        }
        exit_cleanly(thread, "thread").await;
    })
}

#[test]
fn exec_error_prints_its_cause_once() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let missing = rsyscall::Command::new("/nonexistent/program", "program");
        let err = child.exec(missing).await.expect_err("ENOENT");
        assert_eq!(err.to_string(), err.error.to_string());
        // What a report walking the source chain prints: no message twice in a row.
        let mut chain = vec![err.to_string()];
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        for pair in chain.windows(2) {
            assert_ne!(pair[0], pair[1], "printed twice: {chain:?}");
        }
        exit_cleanly(err.thread, "child").await;
    })
}
