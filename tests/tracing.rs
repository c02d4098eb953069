//! Tracing through `log`: every syscall gives a `trace` record naming the thread it ran in
//! (kind and pid), the syscall by name, its arguments and its result or errno name; thread
//! creation, exec and exit give `debug` records. Checked with a capturing logger.

use std::sync::{Mutex, OnceLock};

use rsyscall::{CLONE, O, local_thread};
use rsyscall_tests::tasks::run;

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
        let label = format!("[local {}]", pid.as_raw());
        let result = format!(") = {}", pid.as_raw());
        let r = expect(
            log::Level::Trace,
            "rsyscall::syscall",
            &[&label, " getpid(0, 0, 0, 0, 0, 0", &result],
        );
        assert!(r.message.ends_with(&result), "{r:?}");
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
        expect(
            log::Level::Trace,
            "rsyscall::syscall",
            &[&label, " openat(-100, ", "= -1 ENOENT"],
        );

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
