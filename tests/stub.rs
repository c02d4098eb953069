//! `StubServer`: programs we did not write run our stub, and we take over the process.
//! The reference's three scenarios (the stub's stdin read to EOF; the launcher sees the
//! exit status; async I/O on the stub thread), the whole list of operations every thread
//! kind goes through (`rsyscall_tests::exercise`), the environment, standard streams and
//! signal mask as the launcher left them, real programs driving the stub (`find -exec`,
//! `xargs`, `git commit` with `GIT_EDITOR`), the `SO_PEERCRED` check with a real second
//! uid, bad peers (silent, garbage, killed midway), `accept` dropped at every poll, a socket
//! path longer than `sun_path`, and that dropping the server removes its files and leaks
//! nothing.
//!
//! These run as root (as CI does): the second-uid test switches a child to uid 65534.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rsyscall::{ChildState, Command, O, StubServer, Thread, local_thread};
use rsyscall_tests::errors::serial;
use rsyscall_tests::exercise::exercise;
use rsyscall_tests::procs::{count_children, open_fds};
use rsyscall_tests::programs::which;
use rsyscall_tests::server::wait_with_deadline;
use rsyscall_tests::tasks::{poll_at_most, run};
use rsyscall_tests::tmp::TempDir;

/// Keeps the warnings the library logs, for tests that check what it reported.
struct Warnings(std::sync::Mutex<Vec<String>>);

impl log::Log for Warnings {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
            w.push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static WARNINGS: Warnings = Warnings(std::sync::Mutex::new(Vec::new()));

/// Installs the warning collector (once) and returns the warnings logged so far, taking
/// them.
fn take_warnings() -> Vec<String> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = log::set_logger(&WARNINGS);
        log::set_max_level(log::LevelFilter::Warn);
    });
    std::mem::take(&mut *WARNINGS.0.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `command` in a child of the local thread, to completion, while `mock` runs.
async fn run_with<T>(
    command: Command,
    mock: impl std::future::Future<Output = T>,
) -> (ChildState, T) {
    let (state, out) = futures_lite::future::zip(
        async {
            local_thread()
                .run_unchecked(command)
                .await
                .expect("run the launcher")
        },
        mock,
    )
    .await;
    (state, out)
}

/// `sh -c script`.
async fn sh(script: &str) -> Command {
    which("sh").await.args(["-c", script])
}

fn os(s: &str) -> OsString {
    OsString::from(s)
}

/// The open fds and (children, zombies) of this process once background work settled.
async fn usage() -> (usize, (usize, usize)) {
    rsyscall_tests::procs::settled(|| (open_fds(), count_children())).await
}

#[test]
fn the_stubs_stdin_is_read_to_eof() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-stdin");
        let server = StubServer::make(&local_thread(), dir.path(), "mocked")
            .await
            .expect("make");
        let wrapper = dir.join("mocked");
        let script = format!(
            "printf 'line one\\nline two\\n' | '{}' first 'second arg'",
            wrapper.display()
        );
        let (state, ()) = run_with(sh(&script).await, async {
            let (argv, stub) = server.accept().await.expect("accept");
            assert_eq!(
                argv,
                [
                    wrapper.clone().into_os_string(),
                    os("first"),
                    os("second arg")
                ],
                "argv as the program was run"
            );
            let input = stub.read_to_eof(&stub.stdin()).await.expect("read stdin");
            assert_eq!(input, b"line one\nline two\n");
            stub.exit(0).await.expect("exit");
        })
        .await;
        assert_eq!(state, ChildState::Exited(0));
        server.close().await.expect("close");
    });
}

#[test]
fn the_launcher_sees_the_exit_status() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-status");
        let server = StubServer::make(&local_thread(), dir.path(), "mocked")
            .await
            .expect("make");
        let wrapper = dir.join("mocked");
        // The wrapper run directly: the child is the stub, and its status is ours.
        let child = local_thread()
            .clone(rsyscall::CLONE::empty())
            .await
            .expect("clone");
        let process = child
            .exec(Command::new(&wrapper, "mocked"))
            .await
            .expect("exec the wrapper");
        let (argv, stub) = server.accept().await.expect("accept");
        assert_eq!(argv, [wrapper.clone().into_os_string()]);
        assert_eq!(
            stub.task().getpid().await.expect("getpid"),
            process.pid(),
            "the wrapper execs the stub in place"
        );
        stub.exit(42).await.expect("exit");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(42));
        // Through a shell that looks at the status.
        let script = format!("'{}'; exit $(($? + 1))", wrapper.display());
        let (state, ()) = run_with(sh(&script).await, async {
            let (_, stub) = server.accept().await.expect("accept");
            stub.exit(9).await.expect("exit");
        })
        .await;
        assert_eq!(state, ChildState::Exited(10), "the shell saw 9");
        server.close().await.expect("close");
    });
}

#[test]
fn async_io_on_the_stub_thread() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-aio");
        let server = StubServer::make(&local_thread(), dir.path(), "mocked")
            .await
            .expect("make");
        let wrapper = dir.join("mocked");
        let (state, ()) = run_with(Command::new(&wrapper, "mocked"), async {
            let (_, stub) = server.accept().await.expect("accept");
            // Channels between us and the stub, async on both ends.
            let mut chans = stub.open_async_channels(1).await.expect("channels");
            let (ours, theirs) = chans.pop().expect("one channel");
            let theirs = stub.make_afd(theirs, true).await.expect("make_afd");
            let reading = async { theirs.read_some_bytes(64).await.expect("read") };
            let writing = async {
                async_io::Timer::after(std::time::Duration::from_millis(20)).await;
                ours.write_all_bytes(b"ping").await.expect("write");
            };
            let (got, ()) = futures_lite::future::zip(reading, writing).await;
            assert_eq!(got, b"ping");
            theirs.write_all_bytes(b"pong").await.expect("write");
            assert_eq!(ours.read_some_bytes(64).await.expect("read"), b"pong");
            // A pipe inside the stub, read asynchronously there.
            let pipe = stub.pipe().await.expect("pipe");
            let r = stub.make_afd(pipe.read, true).await.expect("make_afd");
            stub.task()
                .write_all_bytes(&pipe.write, b"in the stub")
                .await
                .expect("write");
            assert_eq!(r.read_some_bytes(64).await.expect("read"), b"in the stub");
            drop((ours, theirs, r, pipe.write));
            // And a child of the stub.
            let child = stub.clone(rsyscall::CLONE::empty()).await.expect("clone");
            let p = child
                .exec(which("true").await)
                .await
                .expect("exec in a child of the stub");
            assert_eq!(p.wait().await.expect("wait"), ChildState::Exited(0));
            stub.exit(0).await.expect("exit");
        })
        .await;
        assert_eq!(state, ChildState::Exited(0));
        server.close().await.expect("close");
    });
}

/// A thread from `StubServer::accept` does what every thread kind does (issue 8 section
/// 1, `rsyscall_tests::exercise`): syscalls and memory, fd passing, channels and async
/// I/O, clone and nested clone, exec from its children with their output captured; and
/// all of it again with a root epoller in the stub's process. Its launcher then sees the
/// status it exits with.
#[test]
fn a_stub_thread_does_what_every_thread_does() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-exercise");
        let server = StubServer::make(&local_thread(), dir.path(), "mocked")
            .await
            .expect("make");
        let wrapper = dir.join("mocked");
        let (state, ()) = run_with(Command::new(&wrapper, "mocked"), async {
            let (_, stub) = server.accept().await.expect("accept");
            exercise(&stub, "stub").await;
            stub.make_root_epoller().await.expect("root epoller");
            exercise(&stub, "stub, root epoller").await;
            stub.exit(3).await.expect("exit");
        })
        .await;
        assert_eq!(state, ChildState::Exited(3));
        server.close().await.expect("close");
    });
}

#[test]
fn streams_environment_and_signal_mask_are_the_launchers() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-env");
        let server = StubServer::make(&local_thread(), dir.path(), "mocked")
            .await
            .expect("make");
        let wrapper = dir.join("mocked");
        let mut cmd = std::process::Command::new(&wrapper);
        cmd.arg("x")
            .env("STUB_TEST_MARKER", "from the launcher")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: sigprocmask on a stack-local set is async-signal-safe and allocates
        // nothing.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR2);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut launched = cmd.spawn().expect("spawn the wrapper");
        let (argv, stub) = server.accept().await.expect("accept");
        assert_eq!(argv[1], "x");
        assert_eq!(
            stub.environ().get("STUB_TEST_MARKER"),
            Some(os("from the launcher"))
        );
        let pid = stub.task().getpid().await.expect("getpid").as_raw();
        assert_eq!(pid as u32, launched.id());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
            .expect("SigBlk");
        assert_eq!(blocked, 1 << (libc::SIGUSR2 - 1), "the launcher's mask");
        // Its working directory is the launcher's: a relative open lands in `dir`.
        let f = stub
            .task()
            .open("written-by-stub", O::WRONLY | O::CREAT | O::CLOEXEC, 0o644)
            .await
            .expect("open");
        drop(f);
        stub.task()
            .write_all_bytes(&stub.stdout(), b"to stdout")
            .await
            .expect("write stdout");
        stub.task()
            .write_all_bytes(&stub.stderr(), b"to stderr")
            .await
            .expect("write stderr");
        assert_eq!(
            stub.read_to_eof(&stub.stdin()).await.expect("stdin"),
            b"",
            "/dev/null"
        );
        stub.exit(5).await.expect("exit");
        let status = wait_with_deadline(&mut launched);
        assert_eq!(status.code(), Some(5));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut launched.stdout.take().unwrap(), &mut out)
            .expect("stdout");
        assert_eq!(out, "to stdout");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut launched.stderr.take().unwrap(), &mut err)
            .expect("stderr");
        assert_eq!(err, "to stderr");
        assert!(dir.join("written-by-stub").exists());
        server.close().await.expect("close");
    });
}

#[test]
fn find_exec_runs_the_stub_per_file() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-find");
        let files = dir.join("files");
        std::fs::create_dir(&files).expect("mkdir");
        for name in ["a", "b", "c"] {
            std::fs::write(files.join(name), name).expect("write");
        }
        let server = StubServer::make(&local_thread(), dir.path(), "check")
            .await
            .expect("make");
        let wrapper = dir.join("check");
        let out = dir.join("out");
        // -print only where the stub said yes: find itself reports our answers.
        let script = format!(
            "find '{}' -type f -exec '{}' {{}} \\; -print > '{}'",
            files.display(),
            wrapper.display(),
            out.display()
        );
        let (state, seen) = run_with(sh(&script).await, async {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (argv, stub) = server.accept().await.expect("accept");
                assert_eq!(argv.len(), 2, "{argv:?}");
                assert_eq!(argv[0], wrapper.as_os_str());
                let path = PathBuf::from(&argv[1]);
                // The stub reads the file itself, and says yes to all but b.
                let fd = stub
                    .task()
                    .open(path.as_path(), O::RDONLY | O::CLOEXEC, 0)
                    .await
                    .expect("open in the stub");
                let content = stub.read_to_eof(&fd).await.expect("read");
                drop(fd);
                let name = path.file_name().expect("name").to_owned();
                assert_eq!(content, name.as_encoded_bytes());
                stub.exit(if name == "b" { 1 } else { 0 })
                    .await
                    .expect("exit");
                seen.push(name);
            }
            seen
        })
        .await;
        assert_eq!(state, ChildState::Exited(0));
        let mut seen = seen;
        seen.sort();
        assert_eq!(seen, ["a", "b", "c"]);
        let mut printed: Vec<String> = std::fs::read_to_string(&out)
            .expect("out")
            .lines()
            .map(str::to_owned)
            .collect();
        printed.sort();
        assert_eq!(
            printed,
            [
                files.join("a").display().to_string(),
                files.join("c").display().to_string()
            ]
        );
        server.close().await.expect("close");
    });
}

#[test]
fn xargs_runs_the_stub_per_line() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-xargs");
        let server = StubServer::make(&local_thread(), dir.path(), "each")
            .await
            .expect("make");
        let wrapper = dir.join("each");
        let script = format!("printf 'one\\ntwo\\n' | xargs -n 1 '{}'", wrapper.display());
        let (state, seen) = run_with(sh(&script).await, async {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (argv, stub) = server.accept().await.expect("accept");
                seen.push(argv[1].clone());
                stub.exit(0).await.expect("exit");
            }
            seen
        })
        .await;
        assert_eq!(state, ChildState::Exited(0));
        assert_eq!(seen, [os("one"), os("two")], "in order, one per run");
        // xargs exits 123 if a run failed.
        let script = format!("echo bad | xargs -n 1 '{}'", wrapper.display());
        let (state, ()) = run_with(sh(&script).await, async {
            let (_, stub) = server.accept().await.expect("accept");
            stub.exit(1).await.expect("exit");
        })
        .await;
        assert_eq!(state, ChildState::Exited(123), "xargs saw the failure");
        server.close().await.expect("close");
    });
}

#[test]
fn git_commit_with_the_stub_as_editor() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-git");
        let repo = dir.join("repo");
        std::fs::create_dir(&repo).expect("mkdir");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", dir.path())
                .output()
                .expect("git is installed (.ci/run installs it)");
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        };
        git(&["init", "-q"]);
        git(&["config", "user.name", "Stub Test"]);
        git(&["config", "user.email", "stub@example.invalid"]);
        std::fs::write(repo.join("file"), "content\n").expect("write");
        git(&["add", "file"]);
        let server = StubServer::make(&local_thread(), dir.path(), "editor")
            .await
            .expect("make");
        let wrapper = dir.join("editor");
        let commit = which("git")
            .await
            .args(["-C"])
            .arg(&repo)
            .args(["commit", "-q"])
            .env("GIT_EDITOR", &wrapper)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir.path());
        let message = "Written by a mocked editor\n\nThrough the stub thread.\n";
        let (state, ()) = run_with(commit, async {
            let (argv, stub) = server.accept().await.expect("accept");
            assert_eq!(argv[0], wrapper.as_os_str());
            assert_eq!(argv.len(), 2, "{argv:?}");
            let path = Path::new(&argv[1]);
            assert_eq!(path.file_name().expect("name"), "COMMIT_EDITMSG");
            let task = stub.task();
            let fd = task
                .open(path, O::WRONLY | O::TRUNC | O::CLOEXEC, 0)
                .await
                .expect("open the message file in the stub");
            task.write_all_bytes(&fd, message.as_bytes())
                .await
                .expect("write the message");
            fd.close().await.expect("close");
            stub.exit(0).await.expect("exit");
        })
        .await;
        assert_eq!(state, ChildState::Exited(0));
        assert_eq!(
            git(&["log", "-1", "--format=%B"]).trim_end(),
            message.trim_end()
        );
        server.close().await.expect("close");
    });
}

/// Whether `check` holds within 10 seconds (checked every 10 ms).
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if check() {
            return true;
        }
        async_io::Timer::after(std::time::Duration::from_millis(10)).await;
    }
    check()
}

/// Whether process `pid` is blocked in `recvmsg` (the stub waiting for its fds).
fn in_recvmsg(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|s| s.split_whitespace().next() == Some(&libc::SYS_recvmsg.to_string()))
}

/// Starts a copy of the stub under uid/gid 65534 as `stub name`, at `socket`.
fn stub_as_nobody(stub: &Path, socket: &Path) -> std::process::Child {
    std::process::Command::new(stub)
        .arg("as-nobody")
        .env("RSYSCALL_UNIX_STUB_SOCK_PATH", socket)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the stub as nobody")
}

#[test]
fn connections_from_other_uids_are_refused() {
    let _serial = serial();
    run(async {
        // A directory nobody can enter, for the stub's copy and the socket.
        let dir = TempDir::new("stub-uid");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let stub = dir.join(rsyscall::thread::UNIX_STUB);
        std::fs::copy(
            rsyscall::thread::libexec::helper_path(rsyscall::thread::UNIX_STUB).expect("stub"),
            &stub,
        )
        .expect("copy the stub");
        let socket = dir.join("sock");
        let server = StubServer::listen_on(&local_thread(), &socket)
            .await
            .expect("listen_on");
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert_eq!(server.allowed_uids(), [0], "ours");
        // nobody connects first; then one of ours, through the wrapper.
        take_warnings();
        let mut nobody = stub_as_nobody(&stub, &socket);
        let wrapper = dir.join("ours");
        std::fs::write(&wrapper, StubServer::wrapper_script(&socket, &stub)).expect("write");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // nobody's connection is queued before ours: its stub then waits for fds.
        assert!(
            eventually(|| in_recvmsg(nobody.id())).await,
            "nobody's stub did not connect"
        );
        let (state, ()) = run_with(sh(&format!("'{}' mine", wrapper.display())).await, async {
            let (argv, stub) = server.accept().await.expect("accept");
            assert_eq!(argv, [wrapper.clone().into_os_string(), os("mine")]);
            assert_eq!(stub.task().getuid().await.expect("getuid"), 0);
            stub.exit(0).await.expect("exit");
        })
        .await;
        assert_eq!(state, ChildState::Exited(0));
        let status = wait_with_deadline(&mut nobody);
        assert_eq!(status.code(), Some(1), "refused: {status:?}");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut nobody.stderr.take().unwrap(), &mut err)
            .expect("stderr");
        assert!(err.contains("expected one message with 4 fds"), "{err}");
        let refused = format!("refused a connection from pid {} uid 65534", nobody.id());
        let warnings = take_warnings();
        assert!(
            warnings.iter().any(|w| w.contains(&refused)),
            "logged: {warnings:?}"
        );
        server.close().await.expect("close");
        assert!(!socket.exists(), "the socket file was removed");

        // Allowed: nobody's stub becomes a thread of uid 65534.
        let server = StubServer::listen_on(&local_thread(), &socket)
            .await
            .expect("listen_on")
            .allow_uids([65534]);
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let mut nobody = stub_as_nobody(&stub, &socket);
        let (argv, thread) = server.accept().await.expect("accept");
        assert_eq!(argv, [os("as-nobody")]);
        assert_eq!(thread.task().getuid().await.expect("getuid"), 65534);
        thread.exit(3).await.expect("exit");
        assert_eq!(wait_with_deadline(&mut nobody).code(), Some(3));
        server.close().await.expect("close");
    });
}

/// A connection whose stub never described itself (it was killed, or is not a stub) is
/// skipped: `accept` returns the next good one.
#[test]
fn bad_peers_are_skipped() {
    let _serial = serial();
    let fake = env!("CARGO_BIN_EXE_rsyscall-test-fake-helper");
    run(async {
        let dir = TempDir::new("stub-bad");
        let server = StubServer::make(&local_thread(), dir.path(), "mocked")
            .await
            .expect("make");
        let socket = server.socket_path().expect("socket");
        let wrapper = dir.join("mocked");
        // Warm-up: lazily made fds of the library.
        let (state, ()) = run_with(Command::new(&wrapper, "mocked"), async {
            let (_, stub) = server.accept().await.expect("accept");
            stub.exit(0).await.expect("exit");
        })
        .await;
        assert_eq!(state, ChildState::Exited(0));
        let before = usage().await;
        take_warnings();
        // Connects and hangs up at once.
        drop(UnixStream::connect(&socket).expect("connect"));
        // Sends garbage on the connection and hangs up.
        {
            let mut s = UnixStream::connect(&socket).expect("connect");
            std::io::Write::write_all(&mut s, b"garbage").expect("write");
        }
        // Takes the fds and writes a malformed describe (a fake helper with the
        // connection as its stdin).
        let conn = UnixStream::connect(&socket).expect("connect");
        let mut fake_malformed = std::process::Command::new(fake)
            .env("RSYSCALL_TEST_FAKE_HELPER", "malformed")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(conn)))
            .spawn()
            .expect("spawn the fake");
        // Connects and stays silent: dropped after the handshake timeout.
        let silent = UnixStream::connect(&socket).expect("connect");
        // A stub killed before it is answered.
        let mut killed = std::process::Command::new(&wrapper)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // Its connection is queued once /proc shows it blocked in recvmsg; killing it
        // any time is fine, though.
        killed.kill().expect("kill");
        assert_eq!(wait_with_deadline(&mut killed).signal(), Some(9));
        let (state, ()) = run_with(Command::new(&wrapper, "mocked").arg("good"), async {
            let (argv, stub) = server.accept().await.expect("accept");
            assert_eq!(argv[1], "good");
            stub.exit(0).await.expect("exit");
        })
        .await;
        assert_eq!(state, ChildState::Exited(0));
        assert_eq!(wait_with_deadline(&mut fake_malformed).code(), Some(0));
        drop(silent);
        // Each bad peer was logged: the silent one after the timeout, the others at once
        // (the killed stub may have died before it connected).
        let warnings = take_warnings();
        let dropped = |what: &str| warnings.iter().filter(|w| w.contains(what)).count();
        assert_eq!(dropped("did not describe itself within"), 1, "{warnings:?}");
        assert!(dropped("dropped a connection") >= 4, "{warnings:?}");
        // Each says what to do: a broken handshake is mostly a stale or foreign stub.
        for w in warnings
            .iter()
            .filter(|w| w.contains("handshake with") || w.contains("did not describe itself"))
        {
            assert!(
                w.contains("check that") && w.contains("RSYSCALL_LIBEXEC_DIR"),
                "no advice in {w:?}"
            );
        }
        assert!(dropped("handshake with") >= 1, "{warnings:?}");
        let after = usage().await;
        assert!(
            after.0 <= before.0 && after.1 == before.1,
            "fds/children before {before:?}, after {after:?}"
        );
        server.close().await.expect("close");
    });
}

/// Ends a stub thread with `status` and checks its process's status.
async fn finish(stub: Thread, mut process: std::process::Child, status: i32) {
    stub.exit(status).await.expect("exit");
    assert_eq!(wait_with_deadline(&mut process).code(), Some(status));
}

/// `accept` dropped after each of its polls in turn (the stub killed then), until one run
/// completes; and `accept` whose stub is killed after each poll, then completing with the
/// next stub. Nothing is left open, no process left behind.
#[test]
fn accept_dropped_or_its_stub_killed_at_every_poll() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-cancel");
        let server = StubServer::make(&local_thread(), dir.path(), "mocked")
            .await
            .expect("make");
        let wrapper = dir.join("mocked");
        let spawn = |tag: &str| {
            std::process::Command::new(&wrapper)
                .arg(tag)
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn the wrapper")
        };
        // Warm-up: lazily made fds of the library.
        let p = spawn("warm");
        let (_, stub) = server.accept().await.expect("accept");
        finish(stub, p, 0).await;
        let before = usage().await;

        let mut completed = false;
        for n in 1..=500 {
            let mut p = spawn("dropped");
            let mut fut = Box::pin(server.accept());
            match poll_at_most(&mut fut, n).await {
                None => {
                    drop(fut);
                    let _ = p.kill();
                    wait_with_deadline(&mut p);
                }
                Some(r) => {
                    let (_, stub) = r.expect("accept");
                    finish(stub, p, 0).await;
                    completed = true;
                    break;
                }
            }
        }
        assert!(completed, "accept did not complete within 500 polls");

        completed = false;
        for n in 1..=500 {
            let mut p = spawn("killed");
            let mut fut = Box::pin(server.accept());
            match poll_at_most(&mut fut, n).await {
                None => {
                    let _ = p.kill();
                    wait_with_deadline(&mut p);
                    // The same accept goes on to the next stub.
                    let next = spawn("next");
                    let (argv, stub) = fut.await.expect("accept after a killed stub");
                    assert_eq!(argv[1], "next");
                    finish(stub, next, 0).await;
                }
                Some(r) => {
                    let (_, stub) = r.expect("accept");
                    finish(stub, p, 0).await;
                    completed = true;
                    break;
                }
            }
        }
        assert!(completed, "accept did not complete within 500 polls");
        let after = usage().await;
        assert!(
            after.0 <= before.0 && after.1 == before.1,
            "fds/children before {before:?}, after {after:?}"
        );
        server.close().await.expect("close");
    });
}

#[test]
fn dropping_the_server_removes_its_files_and_leaks_nothing() {
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-drop");
        // Warm-up, then measure.
        let server = StubServer::make(&local_thread(), dir.path(), "w")
            .await
            .expect("make");
        server.close().await.expect("close");
        let before = usage().await;
        for round in 0..3 {
            let name = format!("mocked{round}");
            let server = StubServer::make(&local_thread(), dir.path(), &name)
                .await
                .expect("make");
            let socket = server.socket_path().expect("socket");
            let sock_dir = socket.parent().expect("dir").to_owned();
            let mode = std::fs::metadata(&sock_dir)
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "only its owner can enter");
            let wrapper = dir.join(&name);
            let (state, ()) = run_with(Command::new(&wrapper, &name), async {
                let (_, stub) = server.accept().await.expect("accept");
                stub.exit(0).await.expect("exit");
            })
            .await;
            assert_eq!(state, ChildState::Exited(0));
            assert!(socket.exists() && wrapper.exists());
            drop(server);
            assert!(
                eventually(|| !socket.exists() && !sock_dir.exists() && !wrapper.exists()).await,
                "socket {}, its directory, wrapper {} removed",
                socket.display(),
                wrapper.display()
            );
        }
        // listen_on: the socket file goes too.
        let socket = dir.join("plain.sock");
        let server = StubServer::listen_on(&local_thread(), &socket)
            .await
            .expect("listen_on");
        assert!(socket.exists());
        drop(server);
        assert!(eventually(|| !socket.exists()).await, "socket removed");
        // make never overwrites a file.
        std::fs::write(dir.join("taken"), "mine").expect("write");
        let r = StubServer::make(&local_thread(), dir.path(), "taken").await;
        assert!(
            r.as_ref()
                .is_err_and(|e| e.errno() == Some(rsyscall::Errno::EEXIST)),
            "{r:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("taken")).expect("read"),
            "mine"
        );
        let r = StubServer::make(&local_thread(), dir.path(), "a/b").await;
        assert!(
            matches!(r, Err(rsyscall::Error::InvalidArgument { .. })),
            "{r:?}"
        );
        let after = usage().await;
        assert!(
            after.0 <= before.0 && after.1 == before.1,
            "fds/children before {before:?}, after {after:?}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, [os("taken")], "nothing else left in the directory");
    });
}

/// `listen_on` a path longer than `sun_path` works as documented: the socket is bound
/// there (through `/proc/self/fd/N` of its directory), a stub given that path reaches it
/// (connecting the same way), `accept` gives its thread, and `close` removes the file.
/// Twice, leaving no fd or child behind the second time.
#[test]
fn listen_on_a_path_longer_than_sun_path() {
    use std::os::unix::fs::FileTypeExt;
    let _serial = serial();
    run(async {
        let dir = TempDir::new("stub-long");
        let mut long = dir.path().to_owned();
        while long.as_os_str().len() < 200 {
            long.push("a-rather-long-directory-name");
        }
        std::fs::create_dir_all(&long).expect("mkdir");
        let socket = long.join("stub.sock");
        assert!(socket.as_os_str().len() > 108, "{}", socket.display());
        let stub_path =
            rsyscall::thread::libexec::helper_path(rsyscall::thread::UNIX_STUB).expect("the stub");
        let wrapper = dir.join("mocked");
        std::fs::write(&wrapper, StubServer::wrapper_script(&socket, &stub_path))
            .expect("write the wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut before = None;
        for round in 0..2 {
            let server = StubServer::listen_on(&local_thread(), &socket)
                .await
                .expect("listen_on a path longer than sun_path");
            assert_eq!(server.socket_path().as_deref(), Some(socket.as_path()));
            assert!(
                std::fs::symlink_metadata(&socket)
                    .expect("stat the socket")
                    .file_type()
                    .is_socket(),
                "bound at the long path itself"
            );
            let (state, ()) = run_with(Command::new(&wrapper, "mocked").arg("long"), async {
                let (argv, stub) = server.accept().await.expect("accept");
                assert_eq!(argv, [wrapper.clone().into_os_string(), os("long")]);
                assert_eq!(
                    stub.environ().get("RSYSCALL_UNIX_STUB_SOCK_PATH"),
                    Some(socket.clone().into_os_string())
                );
                let pipe = stub.pipe().await.expect("pipe");
                stub.task()
                    .write_all_bytes(&pipe.write, b"long")
                    .await
                    .expect("write");
                assert_eq!(
                    stub.task().read_bytes(&pipe.read, 4).await.expect("read"),
                    b"long"
                );
                drop(pipe);
                stub.exit(4).await.expect("exit");
            })
            .await;
            assert_eq!(state, ChildState::Exited(4), "round {round}");
            server.close().await.expect("close");
            assert!(!socket.exists(), "round {round}: the socket file was left");
            let now = usage().await;
            match before {
                None => before = Some(now),
                Some(b) => assert!(
                    now.0 <= b.0 && now.1 == b.1,
                    "fds/children after the first round {b:?}, after the second {now:?}"
                ),
            }
        }
    });
}

/// Set in the copy of this test binary that
/// `make_works_with_a_relative_libexec_dir` runs.
const RELATIVE_CHILD: &str = "RSYSCALL_STUB_TEST_RELATIVE_CHILD";

/// With `RSYSCALL_LIBEXEC_DIR` relative, the wrapper `make` writes still finds the stub
/// when run from another directory. The test binary runs itself (this test only) with
/// the variable relative to its working directory, as the library reads it at startup.
#[test]
fn make_works_with_a_relative_libexec_dir() {
    if std::env::var_os(RELATIVE_CHILD).is_some() {
        relative_child();
        return;
    }
    let libexec = std::fs::canonicalize(rsyscall_tests::server::libexec_dir()).expect("libexec");
    let parent = libexec.parent().expect("parent");
    let relative = libexec.file_name().expect("name");
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "make_works_with_a_relative_libexec_dir",
            "--nocapture",
        ])
        .current_dir(parent)
        .env("RSYSCALL_LIBEXEC_DIR", relative)
        .env(RELATIVE_CHILD, "1")
        .output()
        .expect("run this test binary");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the copy failed: {out:?}"
    );
}

/// The copy's body: the wrapper run from `/` must reach the stub.
fn relative_child() {
    run(async {
        let dir = TempDir::new("stub-relative");
        let server = StubServer::make(&local_thread(), dir.path(), "mocked")
            .await
            .expect("make");
        let script = format!("cd / && '{}' from-root", dir.join("mocked").display());
        let launcher = local_thread()
            .clone(rsyscall::CLONE::empty())
            .await
            .expect("clone")
            .exec(sh(&script).await)
            .await
            .expect("exec");
        // The launcher failing to run the stub must not leave accept waiting.
        let accepted = futures_lite::future::or(
            async { Some(server.accept().await.expect("accept")) },
            async {
                let state = launcher.wait().await.expect("wait");
                panic!("the launcher ended first: {state:?}");
            },
        )
        .await;
        let (argv, stub) = accepted.expect("accepted");
        assert_eq!(argv[1], "from-root");
        stub.exit(0).await.expect("exit");
        assert_eq!(launcher.wait().await.expect("wait"), ChildState::Exited(0));
        server.close().await.expect("close");
    });
}
