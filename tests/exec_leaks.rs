//! Failed and cancelled execs leave nothing behind: no argv/envp block, no process, no
//! zombie, no fd. A test binary of its own, so that no concurrent test changes the local
//! allocator's use, our children or our fd table; its tests take the `serial` lock.

use std::future::Future;
use std::time::Duration;

use rsyscall::{CLONE, Command, Errno, Signal, local_thread};
use rsyscall_tests::errors::serial;
use rsyscall_tests::procs::{count_children, open_fds, settled};
use rsyscall_tests::tasks::{exit_cleanly, run};

#[test]
fn failed_execs_free_their_argv_and_envp() {
    let _serial = serial();
    run(async {
        let parent = local_thread();
        let memory = parent.task().memory().clone();
        let mut child = parent.clone(CLONE::empty()).await.expect("clone");
        let missing = Command::new("/nonexistent/program", "program").args(["a", "b"]);
        // Warm up: arenas exist before we measure.
        child = child
            .exec(missing.clone())
            .await
            .expect_err("ENOENT")
            .thread;
        let before = settled(|| memory.bytes_in_use()).await;
        for _ in 0..2000 {
            let err = child.exec(missing.clone()).await.expect_err("ENOENT");
            assert_eq!(err.error.errno(), Some(Errno::ENOENT), "{}", err.error);
            child = err.thread;
        }
        let after = memory.bytes_in_use();
        assert!(
            after <= before,
            "2000 failed execs leaked {} bytes",
            after.saturating_sub(before)
        );

        // 10 MB of arguments: more than exec takes (E2BIG), after the block was written.
        let true_path = parent.environ().which("true").await.expect("which true");
        let big = vec!["x".repeat(100_000); 100];
        let err = child.exec(true_path.args(&big)).await.expect_err("E2BIG");
        assert_eq!(err.error.errno(), Some(Errno::E2BIG), "{}", err.error);
        child = err.thread;
        let after = memory.bytes_in_use();
        assert!(
            after <= before,
            "a failed 10 MB exec leaked {} bytes",
            after.saturating_sub(before)
        );
        exit_cleanly(child, "child").await;
    })
}

/// Polls `f` `n` times (or until it completes), letting the reactor and the child run a
/// little between polls; returns its output if it completed, else drops it.
async fn poll_n<F: Future>(f: F, n: usize) -> Option<F::Output> {
    let mut f = Box::pin(f);
    for _ in 0..n {
        if let Some(out) = futures_lite::future::poll_once(&mut f).await {
            return Some(out);
        }
        async_io::Timer::after(Duration::from_micros(200)).await;
    }
    None
}

/// Samples `measure` every 20 ms until no count is above `baseline` (at most 10 seconds),
/// and returns the last sample: background reaping only ever lowers the counts, so a count
/// still above its baseline then is a leak.
async fn back_to(
    baseline: ((usize, usize), usize, usize),
    mut measure: impl FnMut() -> ((usize, usize), usize, usize),
) -> ((usize, usize), usize, usize) {
    let mut now = measure();
    for _ in 0..500 {
        let ((c, z), f, b) = now;
        if c <= baseline.0.0 && z <= baseline.0.1 && f <= baseline.1 && b <= baseline.2 {
            break;
        }
        async_io::Timer::after(Duration::from_millis(20)).await;
        now = measure();
    }
    now
}

#[test]
fn dropping_an_exec_at_any_await_leaves_nothing_behind() {
    let _serial = serial();
    run(async {
        let parent = local_thread();
        let memory = parent.task().memory().clone();
        let sh = parent.environ().which("sh").await.expect("which sh");
        let commands = [
            (
                "a missing program",
                Command::new("/nonexistent/program", "p"),
            ),
            ("a program that exits", sh.clone().args(["-c", "exit 0"])),
            (
                "a program that sleeps",
                sh.clone().args(["-c", "sleep 100"]),
            ),
        ];
        // Warm up: arenas and the service thread exist before we measure.
        let warm = parent.clone(CLONE::empty()).await.expect("clone");
        exit_cleanly(warm, "warm-up child").await;
        for (what, command) in commands {
            for n in 1..10_000 {
                let baseline =
                    settled(|| (count_children(), open_fds(), memory.bytes_in_use())).await;
                let child = parent.clone(CLONE::empty()).await.expect("clone");
                let output = poll_n(child.exec(command.clone()), n).await;
                let completed = output.is_some();
                match output {
                    Some(Ok(process)) => {
                        // The exec completed: end the program (it may have exited).
                        let _ = process.kill(Signal::SIGKILL).await;
                        process.wait().await.expect("wait");
                    }
                    // A failed exec gives the child back: dropping it kills it.
                    Some(Err(e)) => drop(e),
                    None => {}
                }
                // Whatever the dropped future left (a child to kill, an exec'd program to
                // kill) is gone once the background reaping is done.
                let (children, fds, bytes) = back_to(baseline, || {
                    (count_children(), open_fds(), memory.bytes_in_use())
                })
                .await;
                assert!(
                    children.0 <= baseline.0.0 && children.1 <= baseline.0.1,
                    "{what}, dropped after {n} polls: (children, zombies) {children:?}, \
                     before {:?}",
                    baseline.0
                );
                assert!(
                    fds <= baseline.1,
                    "{what}, dropped after {n} polls: {} fds left",
                    fds - baseline.1
                );
                assert!(
                    bytes <= baseline.2,
                    "{what}, dropped after {n} polls: {} bytes left",
                    bytes - baseline.2
                );
                // A following operation works.
                let next = parent
                    .clone(CLONE::empty())
                    .await
                    .expect("clone after drop");
                next.task().getpid().await.expect("getpid after drop");
                exit_cleanly(next, "next child").await;
                if completed {
                    break;
                }
            }
        }
    })
}
