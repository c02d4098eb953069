//! The API under a multi-threaded tokio runtime: clone, syscalls, exec, wait, pipes and
//! nested clones from tasks spawned on tokio's worker threads, and children that outlive
//! the worker thread (and the runtime) that created them.
//!
//! Everything else in the suite runs under `async_io::block_on`; these tests show the
//! library does not depend on that executor. The last test (by name, which is the order
//! the test harness starts them in) waits for the others and checks that none left a
//! zombie or a live child behind.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rsyscall::{CLONE, ChildState, ChildThread, Command, Thread, local_thread};
use rsyscall_tests::procs::count_children;
use rsyscall_tests::programs::sh;
use rsyscall_tests::tasks::exit_cleanly;

/// A test body still running after this long has hung.
const HANG: Duration = Duration::from_secs(60);
/// Worker threads of each runtime: more than the tasks that must run at once in
/// [`concurrent_clones_from_tasks_on_different_workers`].
const WORKERS: usize = 4;

/// Tests (other than the zombie check) that have started, and that have finished.
static STARTED: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// Counts a test as finished when dropped, even when it panicked.
struct Finished;

impl Drop for Finished {
    fn drop(&mut self) {
        FINISHED.fetch_add(1, Ordering::SeqCst);
    }
}

/// A multi-threaded tokio runtime with its I/O and time drivers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// The outcome of a spawned test body: its value, or why it did not produce one.
enum Outcome<T> {
    Done(T),
    Panicked(Box<dyn std::any::Any + Send>),
    Failed(String),
}

/// Runs `body` as a task spawned on `rt` (so on a worker thread), failing instead of
/// hanging after [`HANG`]; a panic in the body is re-raised here.
fn spawn_on<F>(rt: &tokio::runtime::Runtime, body: F) -> Outcome<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async {
        match tokio::time::timeout(HANG, tokio::spawn(body)).await {
            Ok(Ok(value)) => Outcome::Done(value),
            Ok(Err(e)) if e.is_panic() => Outcome::Panicked(e.into_panic()),
            Ok(Err(e)) => Outcome::Failed(format!("test task failed: {e}")),
            Err(_) => Outcome::Failed(format!("test hung for {HANG:?}")),
        }
    })
}

/// Unwraps an [`Outcome`], re-raising a panic.
fn outcome<T>(o: Outcome<T>) -> T {
    match o {
        Outcome::Done(value) => value,
        Outcome::Panicked(payload) => std::panic::resume_unwind(payload),
        Outcome::Failed(why) => panic!("{why}"),
    }
}

/// Runs `body` on a worker thread of a fresh multi-threaded runtime, with a timeout; the
/// runtime is shut down without waiting for a stuck worker.
fn run_tokio<F>(body: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    STARTED.fetch_add(1, Ordering::SeqCst);
    let _finished = Finished;
    let rt = runtime();
    let result = spawn_on(&rt, body);
    rt.shutdown_timeout(Duration::from_secs(5));
    outcome(result)
}

/// Blocks the calling thread until `n` threads have called it (or 10 seconds have
/// passed), then returns how many had arrived. Blocking a tokio worker like this keeps the
/// tasks that call it on distinct worker threads.
fn rendezvous(state: &(Mutex<usize>, Condvar), n: usize) -> usize {
    let (count, cond) = state;
    let mut arrived = count.lock().unwrap_or_else(|e| e.into_inner());
    *arrived += 1;
    cond.notify_all();
    let deadline = Instant::now() + Duration::from_secs(10);
    while *arrived < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        arrived = cond
            .wait_timeout(arrived, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    *arrived
}

/// Clones a child of `parent`, checks its pid, execs `sh -c "exit CODE"` in it and returns
/// how it ended.
async fn clone_getpid_exec(parent: &Thread, code: i32) -> ChildState {
    let child = parent.clone(CLONE::empty()).await.expect("clone");
    let pid = child.task().getpid().await.expect("getpid in the child");
    assert_eq!(
        Some(pid),
        child.pid(),
        "getpid in the child is its clone pid"
    );
    assert_ne!(pid.as_raw() as u32, std::process::id(), "a new process");
    let sh = parent
        .environ()
        .which("sh")
        .await
        .expect("which sh")
        .args(["-c", &format!("exit {code}")]);
    let process = child.exec(sh).await.expect("exec sh");
    assert_eq!(process.pid(), pid, "exec keeps the pid");
    process.wait().await.expect("wait")
}

#[test]
fn clone_getpid_exec_check_in_a_spawned_task() {
    run_tokio(async {
        let parent = local_thread();
        assert_eq!(
            clone_getpid_exec(&parent, 0).await,
            ChildState::Exited(0),
            "clean exit"
        );
        // check() of a clean exit, and of an unclean one.
        let child = parent.clone(CLONE::FILES).await.expect("clone FILES");
        child
            .exec(Command::new("/bin/true", "true"))
            .await
            .expect("exec /bin/true")
            .check()
            .await
            .expect("/bin/true exits cleanly");
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        let err = child
            .exec(Command::new("/bin/false", "false"))
            .await
            .expect("exec /bin/false")
            .check()
            .await
            .expect_err("/bin/false exits with 1");
        assert!(
            matches!(
                err,
                rsyscall::Error::UncleanExit {
                    state: ChildState::Exited(1),
                    ..
                }
            ),
            "{err:?}"
        );
    })
}

#[test]
fn concurrent_clones_from_tasks_on_different_workers() {
    const TASKS: usize = 3;
    run_tokio(async {
        let meeting = Arc::new((Mutex::new(0usize), Condvar::new()));
        let mut handles = Vec::new();
        for i in 0..TASKS {
            let meeting = Arc::clone(&meeting);
            handles.push(tokio::spawn(async move {
                // Each task holds its worker until all have arrived, so they run on
                // distinct workers, then all clone at once.
                let arrived = rendezvous(&meeting, TASKS);
                let worker = std::thread::current().id();
                let state = clone_getpid_exec(&local_thread(), 10 + i as i32).await;
                (worker, arrived, state)
            }));
        }
        let mut workers = HashSet::new();
        for (i, handle) in handles.into_iter().enumerate() {
            let (worker, arrived, state) = handle.await.expect("task");
            assert_eq!(
                arrived, TASKS,
                "task {i}: all tasks met on their own workers"
            );
            assert_eq!(state, ChildState::Exited(10 + i as i32), "task {i}");
            workers.insert(worker);
        }
        assert_eq!(
            workers.len(),
            TASKS,
            "each task ran on its own worker thread"
        );
    })
}

#[test]
fn pipe_through_cat_in_a_child() {
    run_tokio(async {
        let parent = local_thread();
        let to_cat = parent.pipe().await.expect("pipe");
        let from_cat = parent.pipe().await.expect("pipe");
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        // The child's stdin and stdout become the pipes, then it runs cat.
        let stdin = child.inherit_fd(&to_cat.read).expect("inherit");
        let stdout = child.inherit_fd(&from_cat.write).expect("inherit");
        child
            .task()
            .dup2(&stdin, &child.stdin())
            .await
            .expect("dup2");
        child
            .task()
            .dup2(&stdout, &child.stdout())
            .await
            .expect("dup2");
        stdin.close().await.expect("close");
        stdout.close().await.expect("close");
        let cat = parent.environ().which("cat").await.expect("which cat");
        let process = child.exec(cat).await.expect("exec cat");
        drop(to_cat.read);
        drop(from_cat.write);

        // Less than a pipe's capacity, both ways: the write completes before cat reads,
        // and cat's output fits before we read. (Local pipe reads and writes are
        // blocking syscalls; a blocked worker would starve a task in its LIFO slot, so
        // the writer task is awaited before we read.)
        let message = b"through a child on a tokio worker\n".repeat(100);
        let writer = {
            let parent = parent.duplicate();
            let message = message.clone();
            tokio::spawn(async move {
                parent
                    .task()
                    .write_all_bytes(&to_cat.write, &message)
                    .await
                    .expect("write to cat");
                // Closing our only copy of the write end gives cat EOF.
                to_cat.write.close().await.expect("close");
            })
        };
        writer.await.expect("writer task");
        let got = parent.read_to_eof(&from_cat.read).await.expect("read");
        assert_eq!(got, message, "cat copies its input");
        process.check().await.expect("cat exits cleanly");
    })
}

#[test]
fn nested_clone_in_a_spawned_task() {
    run_tokio(async {
        let parent = local_thread();
        for (outer, inner) in [
            (CLONE::empty(), CLONE::empty()),
            (CLONE::FILES, CLONE::empty()),
            (CLONE::empty(), CLONE::FILES),
        ] {
            let child = parent.clone(outer).await.expect("clone");
            let cpid = child.task().getpid().await.expect("getpid");
            // The grandchild is made from another task, possibly on another worker.
            let grandchild = {
                let child = child.duplicate();
                tokio::spawn(async move { child.clone(inner).await.expect("nested clone") })
                    .await
                    .expect("task")
            };
            let gpid = grandchild.task().getpid().await.expect("getpid");
            assert_eq!(Some(gpid), grandchild.pid(), "{outer:?}/{inner:?}");
            assert_eq!(
                grandchild.task().getppid().await.expect("getppid").as_raw() as u32,
                std::process::id(),
                "{outer:?}/{inner:?}: the grandchild's parent is the local process (CLONE_PARENT)"
            );
            let sh = parent
                .environ()
                .which("sh")
                .await
                .expect("which sh")
                .args(["-c", "exit 4"]);
            let process = grandchild.exec(sh).await.expect("exec");
            assert_eq!(
                process.wait().await.expect("wait"),
                ChildState::Exited(4),
                "{outer:?}/{inner:?}"
            );
            assert_eq!(
                child.task().getpid().await.expect("getpid"),
                cpid,
                "the child is still usable"
            );
            exit_cleanly(child, "child").await;
        }
    })
}

/// Whether `/proc/PID/status` shows a live (not zombie) process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|state| !state.trim_start().starts_with('Z'))
    })
}

/// Uses a child made elsewhere: getpid, then exec `sh -c "exit 7"` and wait.
async fn use_child(child: ChildThread) {
    let pid = child.pid().expect("pid");
    assert_eq!(
        child
            .task()
            .getpid()
            .await
            .expect("getpid in the surviving child"),
        pid
    );
    let process = child.exec(sh("exit 7").await).await.expect("exec");
    assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(7));
}

#[test]
fn child_made_on_a_worker_survives_its_task_and_its_runtime() {
    STARTED.fetch_add(1, Ordering::SeqCst);
    let _finished = Finished;

    // Made by a task that then completes; used from another task of the same runtime.
    let rt = runtime();
    let result = spawn_on(&rt, async {
        let maker = tokio::spawn(async {
            let child = local_thread().clone(CLONE::empty()).await.expect("clone");
            (child, std::thread::current().id())
        });
        let (child, made_on) = maker.await.expect("maker task");
        let user = tokio::spawn(async move {
            use_child(child).await;
            std::thread::current().id()
        });
        let used_on = user.await.expect("user task");
        (made_on, used_on)
    });
    let (made_on, used_on) = outcome(result);
    assert_ne!(made_on, std::thread::current().id(), "made on a worker");
    assert_ne!(used_on, std::thread::current().id(), "used on a worker");

    // Made on a worker of a runtime that is then shut down: every thread that could
    // have issued the clone has exited, and the child lives on (PDEATHSIG is tied to the
    // service thread, not to the worker).
    let rt = runtime();
    let made = spawn_on(&rt, async {
        local_thread().clone(CLONE::empty()).await.expect("clone")
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    let child = outcome(made);
    let pid = child.pid().expect("pid").as_raw();
    assert!(
        alive(pid),
        "the child outlives the runtime's worker threads"
    );
    let rt = runtime();
    let result = spawn_on(&rt, use_child(child));
    rt.shutdown_timeout(Duration::from_secs(5));
    outcome(result);
}

/// Named to sort last: the harness starts tests in name order, so by the time this one
/// starts every other test of the binary has started, and it waits for them to finish.
#[test]
fn zz_no_zombie_or_child_remains_after_the_tokio_tests() {
    let rt = runtime();
    let result = spawn_on(&rt, async {
        // Wait for the other tests: the counts must agree for a while (a test thread
        // the harness just spawned may not have counted itself yet).
        let deadline = Instant::now() + HANG - Duration::from_secs(10);
        let mut quiet_since = Instant::now();
        loop {
            if STARTED.load(Ordering::SeqCst) != FINISHED.load(Ordering::SeqCst) {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= Duration::from_millis(300) {
                break;
            }
            assert!(Instant::now() < deadline, "the other tests did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Children nobody waits for are reaped by the service thread, asynchronously.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (children, zombies) = count_children();
            if children == 0 || Instant::now() >= deadline {
                return (children, zombies);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    let (children, zombies) = outcome(result);
    assert_eq!(zombies, 0, "zombies remain after the tokio tests");
    assert_eq!(children, 0, "live children remain after the tokio tests");
}
