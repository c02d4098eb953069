//! Running a test body on the local thread and on a clone child, with a timeout.

use std::future::Future;
use std::time::Duration;

use rsyscall::{CLONE, ChildThread, Thread, local_thread};

/// Runs `f` to completion under `async_io::block_on`, failing (instead of hanging) after
/// 60 seconds.
pub fn run<T>(f: impl Future<Output = T>) -> T {
    async_io::block_on(futures_lite::future::or(f, async {
        async_io::Timer::after(Duration::from_secs(60)).await;
        panic!("test hung for 60 seconds");
    }))
}

/// Runs `body` twice: on the local thread, and on a fresh clone child (its own fd table,
/// our address space). `body` gets the thread and a label ("local" or "child") to put in
/// assertion messages. The child is exited cleanly afterwards.
pub fn on_local_and_child<F, Fut>(body: F)
where
    F: Fn(Thread, &'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    run(async {
        body(local_thread(), "local").await;
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        body(child.duplicate(), "child").await;
        exit_cleanly(child, "child thread").await;
    })
}

/// Ends `child` with `exit(0)` and checks that it exited cleanly; `what` names it in the
/// panic message otherwise.
pub async fn exit_cleanly(child: ChildThread, what: &str) {
    child
        .exit(0)
        .await
        .unwrap_or_else(|e| panic!("{what}: exit: {e}"))
        .check()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}
