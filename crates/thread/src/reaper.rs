//! The background reaper: reaps children of remote threads that nobody waits for any more.
//!
//! The service thread reaps the local process's abandoned children with a plain `waitid`.
//! A child of a remote thread can only be reaped by that thread, with a syscall sent over
//! its connection, which is async. So such waits run here instead: on one thread, under
//! `futures_lite`'s `block_on` (not async-io's, which would take the reactor from the
//! program's threads), every pending job polled whenever any of them is woken. There are
//! few jobs at a time, and each ends once its child has been reaped or its parent is gone.
//!
//! The same thread finishes the critical parts of operations whose futures were dropped
//! half-way ([`crate::background`]). A job that cannot run (the thread cannot be started)
//! is leaked, never dropped: it may own memory a child still runs on. A job that panics
//! (a bug) is not polled again and what its unwinding left is leaked; the others go on.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Poll, Waker};

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Default)]
struct Jobs {
    pending: Vec<Job>,
    /// The reaper thread's waker, once it has polled for the first time.
    waker: Option<Waker>,
}

fn lock(jobs: &Mutex<Jobs>) -> MutexGuard<'_, Jobs> {
    jobs.lock().unwrap_or_else(|e| e.into_inner())
}

fn jobs() -> Result<&'static Mutex<Jobs>, &'static std::io::Error> {
    static JOBS: OnceLock<Result<&'static Mutex<Jobs>, std::io::Error>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let jobs: &'static Mutex<Jobs> = Box::leak(Box::default());
        std::thread::Builder::new()
            .name("rsyscall-reaper".into())
            .spawn(move || {
                block_all_signals("reaper");
                // Not async-io's `block_on`: that one takes the reactor whenever it can and
                // keeps it for up to 500 µs after each wakeup, and meanwhile every I/O event
                // of the program's own threads reaches them through this one, a wakeup more
                // each (a bootstrap ran a quarter slower). The jobs' I/O and timers are
                // served by whoever drives the reactor: the program's `block_on`, or
                // async-io's own thread.
                futures_lite::future::block_on(run(jobs))
            })?;
        Ok(jobs)
    })
    .as_ref()
    .copied()
}

/// Blocks every signal in the calling thread, one of the library's own (`who` names it in
/// the log): process-directed signals must go to the program's threads, never there, and
/// children cloned there inherit the full mask (exec resets it).
pub(crate) fn block_all_signals(who: &str) {
    if let Err(e) = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::all()),
        None,
    ) {
        log::error!("rsyscall {who} thread: blocking signals failed: {e}");
    }
}

/// Polls every job on each wakeup; never returns.
async fn run(jobs: &'static Mutex<Jobs>) {
    std::future::poll_fn(|cx| {
        // The waker is stored before the jobs are taken: a job added while these are polled
        // wakes it, and gets polled on the next round.
        let mut mine = {
            let mut j = lock(jobs);
            j.waker = Some(cx.waker().clone());
            std::mem::take(&mut j.pending)
        };
        mine.retain_mut(|job| {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.as_mut().poll(cx))) {
                Ok(Poll::Pending) => true,
                Ok(Poll::Ready(())) => false,
                Err(_) => {
                    log::error!("rsyscall reaper: a job panicked; leaking what is left of it");
                    let dead: Job = Box::pin(std::future::pending());
                    std::mem::forget(std::mem::replace(job, dead));
                    false
                }
            }
        });
        lock(jobs).pending.append(&mut mine);
        Poll::<()>::Pending
    })
    .await
}

/// Runs `job` on the reaper thread. If that thread cannot be started, `job` is leaked
/// unrun (and logged): what it owns may still be in use, and its child stays a zombie until
/// its parent exits.
pub(crate) fn spawn(job: impl Future<Output = ()> + Send + 'static) {
    match jobs() {
        Ok(jobs) => {
            let waker = {
                let mut j = lock(jobs);
                j.pending.push(Box::pin(job));
                j.waker.clone()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
        Err(e) => {
            log::error!("rsyscall reaper thread unavailable ({e}); leaking a job");
            std::mem::forget(job);
        }
    }
}

/// How long the close flusher leaves a table's queued closes to the table's next syscall,
/// which sends them in the same trip, before it sends them itself.
const CLOSE_FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// The flushes waiting for their [`CLOSE_FLUSH_DELAY`] to pass, oldest first (the delay is
/// the same for all), and the condition the thread that waits for them sleeps on.
struct Delayed {
    queue: Mutex<std::collections::VecDeque<(std::time::Instant, rsyscall_handle::CloseFlush)>>,
    added: std::sync::Condvar,
}

/// The handle layer's close flusher (see [`rsyscall_handle::set_close_flusher`]): after
/// [`CLOSE_FLUSH_DELAY`], if the table's closes are still queued, they are sent from the
/// reaper thread, so that a dropped handle of another process's table is closed soon even
/// if nothing else runs there.
///
/// The delay is waited on a thread of its own, with no reactor and no connection involved:
/// a table in use sends its queued closes itself before its next syscall, and a flush
/// started meanwhile from another thread would make that syscall wait for it (a flush
/// returns only once every close queued before it is done) through a wakeup of the reaper
/// and one back. A bootstrap, which drops a handle between most of its steps, lost a
/// third of its speed that way.
pub(crate) fn delay_close_flush(flush: rsyscall_handle::CloseFlush) {
    static DELAYED: OnceLock<Option<&'static Delayed>> = OnceLock::new();
    let delayed = DELAYED.get_or_init(|| {
        let delayed: &'static Delayed = Box::leak(Box::new(Delayed {
            queue: Mutex::new(std::collections::VecDeque::new()),
            added: std::sync::Condvar::new(),
        }));
        let started = std::thread::Builder::new()
            .name("rsyscall-closer".into())
            .spawn(move || {
                block_all_signals("closer");
                wait_out_delays(delayed)
            });
        match started {
            Ok(_) => Some(delayed),
            Err(e) => {
                log::warn!("rsyscall closer thread unavailable ({e}); flushing at once");
                None
            }
        }
    });
    match delayed {
        Some(delayed) => {
            let mut queue = delayed.queue.lock().unwrap_or_else(|e| e.into_inner());
            let was_empty = queue.is_empty();
            queue.push_back((std::time::Instant::now() + CLOSE_FLUSH_DELAY, flush));
            if was_empty {
                delayed.added.notify_one();
            }
        }
        None => spawn(flush.run()),
    }
}

/// The closer thread: hands each flush whose delay has passed to the reaper if its closes
/// are still queued, and drops it otherwise; never returns.
fn wait_out_delays(delayed: &'static Delayed) -> ! {
    let mut queue = delayed.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let Some(&(due, _)) = queue.front() else {
            queue = delayed.added.wait(queue).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let now = std::time::Instant::now();
        if due > now {
            queue = delayed
                .added
                .wait_timeout(queue, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        let Some((_, flush)) = queue.pop_front() else {
            continue;
        };
        drop(queue);
        if flush.needed() {
            spawn(flush.run());
        } else {
            drop(flush);
        }
        queue = delayed.queue.lock().unwrap_or_else(|e| e.into_inner());
    }
}
