//! Tracing through `log`: every syscall gives a `trace` record naming the thread it ran in
//! (kind and pid: local, clone child, stub, persistent, stdin bootstrap), the syscall by
//! name, the arguments it takes and its result or errno name, including the clone of a
//! local child (issued on the service thread); thread creation, exec, exit and hangup give
//! `debug` records. Checked with a capturing logger.

use std::sync::{Mutex, OnceLock};

use rsyscall::{CLONE, ChildState, O, StubServer, local_thread};
use rsyscall_tests::tasks::{run, sigkill};
use rsyscall_tests::tmp::TempDir;

/// One captured record.
#[derive(Debug, Clone)]
struct Record {
    level: log::Level,
    target: String,
    message: String,
}

/// A logger keeping every record in memory.
struct Capture(Mutex<Vec<Record>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let r = Record {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
        };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    fn flush(&self) {}
}

/// The capturing logger, installed once for this test binary (tests run in parallel and
/// share it: each looks only for records naming its own processes).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        c
    })
}

/// The records so far at `level` with target `target` whose message contains every one of
/// `parts`.
fn find(level: log::Level, target: &str, parts: &[&str]) -> Vec<Record> {
    let records = capture().0.lock().unwrap_or_else(|e| e.into_inner());
    records
        .iter()
        .filter(|r| r.level == level && r.target == target)
        .filter(|r| parts.iter().all(|p| r.message.contains(p)))
        .cloned()
        .collect()
}

/// Panics, showing the records of `target`, unless one is exactly `message`.
fn expect_exact(level: log::Level, target: &str, message: &str) {
    if !find(level, target, &[message])
        .iter()
        .any(|r| r.message == message)
    {
        let records = capture().0.lock().unwrap_or_else(|e| e.into_inner());
        let seen: Vec<&String> = records
            .iter()
            .filter(|r| r.target == target)
            .map(|r| &r.message)
            .collect();
        panic!("no {level} record of {target} reading {message:?}; seen: {seen:#?}");
    }
}

/// Panics, showing the records of `target`, unless one matches.
fn expect(level: log::Level, target: &str, parts: &[&str]) -> Record {
    match find(level, target, parts).into_iter().next() {
        Some(r) => r,
        None => {
            let records = capture().0.lock().unwrap_or_else(|e| e.into_inner());
            let seen: Vec<&String> = records
                .iter()
                .filter(|r| r.target == target)
                .map(|r| &r.message)
                .collect();
            panic!("no {level} record of {target} with {parts:?}; seen: {seen:#?}");
        }
    }
}

#[test]
fn getpid_on_the_local_thread_is_traced_by_name() {
    capture();
    run(async {
        let pid = local_thread().task().getpid().await.expect("getpid");
        assert_eq!(pid.as_raw() as u32, std::process::id());
        // getpid takes no arguments: none are printed.
        let p = pid.as_raw();
        expect_exact(
            log::Level::Trace,
            "rsyscall::syscall",
            &format!("[local {p}] getpid() = {p}"),
        );
    })
}

#[test]
fn a_clone_child_is_traced_with_its_kind_and_pid() {
    capture();
    run(async {
        let parent_label = format!("[local {}]", std::process::id());
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let pid = child.pid().expect("pid").as_raw();
        assert_eq!(child.label().to_string(), format!("clone child {pid}"));
        let label = format!("[clone child {pid}]");

        // Its creation, at debug, saying where it came from.
        let created = format!("clone from {parent_label}");
        expect(
            log::Level::Debug,
            "rsyscall::thread",
            &[&label, "created", &created],
        );

        // A syscall through its connection.
        let got = child.task().getpid().await.expect("getpid");
        assert_eq!(got.as_raw(), pid);
        let result = format!(" = {pid}");
        expect(
            log::Level::Trace,
            "rsyscall::syscall",
            &[&label, " getpid(", &result],
        );

        // A failing syscall: the errno by name.
        let missing = "/nonexistent-rsyscall-tracing-test/file";
        let err = child
            .task()
            .openat(None, missing, O::RDONLY, 0)
            .await
            .expect_err("missing file");
        assert_eq!(err.errno(), Some(rsyscall::Errno::ENOENT), "{err}");
        // openat takes four arguments: dirfd, path address, flags (O_CLOEXEC added), mode.
        let r = expect(
            log::Level::Trace,
            "rsyscall::syscall",
            &[&label, " openat(-100, 0x", "= -1 ENOENT"],
        );
        assert!(r.message.ends_with(", 0x80000, 0) = -1 ENOENT"), "{r:?}");
        assert_eq!(r.message.matches(", ").count(), 3, "four arguments: {r:?}");

        // Its exit, at debug.
        let process = child.exit(3).await.expect("exit");
        assert_eq!(
            process.wait().await.expect("wait"),
            rsyscall::ChildState::Exited(3)
        );
        expect(
            log::Level::Debug,
            "rsyscall::thread",
            &[&label, "exited: exit(3)"],
        );
    })
}

#[test]
fn a_failing_local_openat_names_enoent() {
    capture();
    run(async {
        let missing = "/nonexistent-rsyscall-tracing-test/local";
        let err = local_thread()
            .task()
            .openat(None, missing, O::RDONLY, 0)
            .await
            .expect_err("missing file");
        assert_eq!(err.errno(), Some(rsyscall::Errno::ENOENT), "{err}");
        let label = format!("[local {}]", std::process::id());
        expect(
            log::Level::Trace,
            "rsyscall::syscall",
            &[&label, " openat(-100, ", "= -1 ENOENT"],
        );
    })
}

#[test]
fn an_exec_is_logged_at_debug() {
    capture();
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let pid = child.pid().expect("pid").as_raw();
        let label = format!("[clone child {pid}]");
        let cmd = child.environ().which("true").await.expect("which true");
        let process = child.exec(cmd).await.expect("exec");
        assert_eq!(
            process.wait().await.expect("wait"),
            rsyscall::ChildState::Exited(0)
        );
        expect(
            log::Level::Debug,
            "rsyscall::thread",
            &[&label, "exec'd \"", "true\""],
        );
        // The execve request went out through the child's connection, by name.
        expect(
            log::Level::Trace,
            "rsyscall::syscall",
            &[&label, " execve("],
        );
    })
}

#[test]
fn a_stdin_bootstrapped_thread_is_traced_with_its_kind() {
    capture();
    run(async {
        let env = rsyscall_tests::programs::which("env").await;
        let (launcher, thread) = rsyscall::stdin_bootstrap(&local_thread(), env)
            .await
            .expect("stdin bootstrap");
        let pid = thread.task().getpid().await.expect("getpid").as_raw();
        let label = format!("[stdin bootstrap {pid}]");
        expect(log::Level::Debug, "rsyscall::thread", &[&label, "created"]);
        let result = format!(" = {pid}");
        expect(
            log::Level::Trace,
            "rsyscall::syscall",
            &[&label, " getpid(", &result],
        );
        thread.exit(0).await.expect("exit");
        expect(
            log::Level::Debug,
            "rsyscall::thread",
            &[&label, "exited: exit(0)"],
        );
        assert_eq!(
            launcher.wait().await.expect("wait"),
            rsyscall::ChildState::Exited(0)
        );
    })
}

#[test]
fn the_clone_of_a_local_child_is_traced_as_run_in_the_local_thread() {
    capture();
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let pid = child.pid().expect("pid").as_raw();
        // The clone ran on the service thread, in the local process; its result is the
        // child's pid; clone takes five arguments (flags, stack, ptid, ctid, tls).
        let label = format!("[local {}] clone(", std::process::id());
        let result = format!(") = {pid}");
        let r = expect(log::Level::Trace, "rsyscall::syscall", &[&label, &result]);
        assert!(r.message.ends_with(&result), "{r:?}");
        assert_eq!(r.message.matches(", ").count(), 4, "five arguments: {r:?}");
        let process = child.exit(0).await.expect("exit");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(0));
    })
}

#[test]
fn arguments_are_the_ones_the_syscall_takes() {
    capture();
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let pid = child.pid().expect("pid").as_raw();
        let label = format!("[clone child {pid}]");
        let trace = |message: String| {
            expect_exact(log::Level::Trace, "rsyscall::syscall", &message);
        };

        child.task().getpid().await.expect("getpid");
        trace(format!("{label} getpid() = {pid}"));

        let pipe = child.pipe().await.expect("pipe");
        let r = pipe.read.near().as_raw();
        // dup is fcntl(fd, F_DUPFD_CLOEXEC = 1030, 0).
        let copy = pipe.read.dup().await.expect("dup");
        let c = copy.near().as_raw();
        trace(format!("{label} fcntl({r}, 1030, 0) = {c}"));
        // F_GETFD = 1; the pipe is close-on-exec.
        pipe.read.fcntl_getfd().await.expect("getfd");
        trace(format!("{label} fcntl({r}, 1, 0) = 1"));
        copy.close().await.expect("close");
        trace(format!("{label} close({c}) = 0"));
        // A negative argument in decimal: lseek on a pipe is ESPIPE.
        let err = pipe
            .read
            .lseek(-1, rsyscall::SEEK::CUR)
            .await
            .expect_err("lseek on a pipe");
        assert_eq!(err.errno(), Some(rsyscall::Errno::ESPIPE), "{err}");
        trace(format!("{label} lseek({r}, -1, 1) = -1 ESPIPE"));

        drop(pipe);
        let process = child.exit(0).await.expect("exit");
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(0));
    })
}

#[test]
fn a_killed_child_s_hangup_is_logged_at_debug() {
    capture();
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let pid = child.pid().expect("pid").as_raw();
        let label = format!("[clone child {pid}]");
        sigkill(&child).await;
        let err = child.task().getpid().await.expect_err("the child is dead");
        assert!(err.is_hangup(), "{err}");
        expect(log::Level::Debug, "rsyscall::thread", &[&label, "hung up"]);
        // Dropping the child thread reaps the dead child.
        drop(child);
    })
}

#[test]
fn a_stub_thread_is_traced_with_its_kind() {
    capture();
    run(async {
        let dir = TempDir::new("tracing-stub");
        let server = StubServer::make(&local_thread(), dir.path(), "traced")
            .await
            .expect("make");
        let wrapper = dir.join("traced");
        let launcher = rsyscall_tests::programs::which("sh")
            .await
            .args(["-c", &format!("exec '{}'", wrapper.display())]);
        let (state, ()) = futures_lite::future::zip(
            async {
                local_thread()
                    .run_unchecked(launcher)
                    .await
                    .expect("run the launcher")
            },
            async {
                let (_argv, stub) = server.accept().await.expect("accept");
                let pid = stub.task().getpid().await.expect("getpid").as_raw();
                let label = format!("[stub {pid}]");
                expect(log::Level::Debug, "rsyscall::thread", &[&label, "created"]);
                expect_exact(
                    log::Level::Trace,
                    "rsyscall::syscall",
                    &format!("{label} getpid() = {pid}"),
                );
                stub.exit(0).await.expect("exit");
            },
        )
        .await;
        assert_eq!(state, ChildState::Exited(0));
        server.close().await.expect("close");
    })
}

#[test]
fn a_persistent_thread_is_traced_with_its_kind() {
    capture();
    let dir = TempDir::new("tracing-persistent");
    let path = dir.join("sock");
    run(async {
        let p = local_thread()
            .clone_persistent(&path)
            .await
            .expect("clone_persistent");
        let pid = p.task().getpid().await.expect("getpid").as_raw();
        let label = format!("[persistent {pid}]");
        expect(log::Level::Debug, "rsyscall::thread", &[&label, "created"]);
        expect_exact(
            log::Level::Trace,
            "rsyscall::syscall",
            &format!("{label} getpid() = {pid}"),
        );
        let monitor = p
            .exit(0)
            .await
            .expect("exit")
            .expect("the creator gets the monitor");
        assert_eq!(monitor.wait().await.expect("wait"), ChildState::Exited(0));
    })
}

/// The `libc::SYS_*` names in the Rust sources under `dir`, recursively.
fn syscalls_named_in(dir: &std::path::Path, out: &mut std::collections::BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            syscalls_named_in(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read");
            for (i, _) in text.match_indices("libc::SYS_") {
                let name: String = text[i + "libc::SYS_".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
    }
}

#[test]
fn every_syscall_the_library_issues_has_a_known_arity() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut names = std::collections::BTreeSet::new();
    syscalls_named_in(&crates, &mut names);
    assert!(names.len() > 100, "found only {names:?}");
    let unknown: Vec<&String> = names
        .iter()
        .filter(|name| {
            let number = rsyscall::near::SYSCALL_NAMES
                .iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("{name} is not in SYSCALL_NAMES"));
            rsyscall::near::syscall_arg_count(number as i64).is_none()
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "syscalls without an argument count in near::sysnames: {unknown:?}"
    );
}
