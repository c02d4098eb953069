//! Running a test body on the local thread and on a clone child, with a timeout; running
//! many futures at once; polling a future by hand.

use std::future::Future;
use std::time::Duration;

use rsyscall::{CLONE, ChildThread, FileDescriptor, Signal, Thread, local_thread};

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

/// Sends `SIGKILL` to the process of `child`, a child thread not yet waited for.
pub async fn sigkill(child: &ChildThread) {
    child
        .process()
        .expect("process")
        .kill(Signal::SIGKILL)
        .await
        .expect("kill");
}

/// A fresh clone child of `parent` whose stdout is the write end of a new pipe, and the
/// read end of that pipe. The child has its own fd table (no `CLONE_FILES`), so its stdout
/// can be replaced without touching ours; `parent` keeps no copy of the write end, so
/// reading the pipe ends at EOF once the child, or the program it execs, is gone.
pub async fn child_with_stdout_pipe(parent: &Thread) -> (ChildThread, FileDescriptor) {
    let pipe = parent.pipe().await.expect("pipe");
    let child = parent.clone(CLONE::empty()).await.expect("clone");
    let w = child.inherit_fd(&pipe.write).expect("inherit");
    child
        .task()
        .dup2(&w, &child.stdout())
        .await
        .expect("dup2 onto stdout");
    w.close().await.expect("close");
    drop(pipe.write);
    (child, pipe.read)
}

/// Runs all of `futs` concurrently in the calling task and returns their outputs, in order.
///
/// Each future has a waker of its own, so a wake-up polls only the futures that were woken:
/// hundreds of futures cost no more per event than a few.
pub async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Poll, Wake, Waker};

    /// A future's waker: marks it woken, then wakes the task running `join_all`.
    struct Slot {
        woken: AtomicBool,
        parent: Arc<Mutex<Option<Waker>>>,
    }
    impl Wake for Slot {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.store(true, Ordering::SeqCst);
            let parent = self
                .parent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(w) = parent {
                w.wake();
            }
        }
    }

    let parent: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let slots: Vec<Arc<Slot>> = futs
        .iter()
        .map(|_| {
            Arc::new(Slot {
                woken: AtomicBool::new(true),
                parent: Arc::clone(&parent),
            })
        })
        .collect();
    let wakers: Vec<Waker> = slots.iter().map(|s| Waker::from(Arc::clone(s))).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut left = futs.len();
    std::future::poll_fn(|cx| {
        *parent.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        for i in 0..futs.len() {
            if out[i].is_some() || !slots[i].woken.swap(false, Ordering::SeqCst) {
                continue;
            }
            let mut child_cx = std::task::Context::from_waker(&wakers[i]);
            if let Poll::Ready(v) = futs[i].as_mut().poll(&mut child_cx) {
                out[i] = Some(v);
                left -= 1;
            }
        }
        if left == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}

/// Polls `fut` at most `n` times, once per wakeup; `None` if it was still pending after
/// the `n`-th poll (returned at once, so the caller can drop it right after that poll).
pub async fn poll_at_most<F: Future + Unpin>(fut: &mut F, n: usize) -> Option<F::Output> {
    let mut left = n;
    std::future::poll_fn(|cx| {
        left -= 1;
        match std::pin::Pin::new(&mut *fut).poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending if left == 0 => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
    .await
}

/// Polls `fut` once, with a waker that does nothing (the caller polls again itself).
pub fn poll_now<F: Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    std::pin::Pin::new(fut).poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}
