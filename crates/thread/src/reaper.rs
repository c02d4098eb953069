//! The background reaper: reaps children of remote threads that nobody waits for any more.
//!
//! The service thread reaps the local process's abandoned children with a plain `waitid`.
//! A child of a remote thread can only be reaped by that thread, with a syscall sent over
//! its connection, which is async. So such waits run here instead: on one thread, under
//! `async_io::block_on`, every pending job polled whenever any of them is woken. There are
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
                // Like the service thread: process-directed signals must go to the
                // program's own threads, never here.
                if let Err(e) = nix::sys::signal::pthread_sigmask(
                    nix::sys::signal::SigmaskHow::SIG_SETMASK,
                    Some(&nix::sys::signal::SigSet::all()),
                    None,
                ) {
                    log::error!("rsyscall reaper: blocking signals failed: {e}");
                }
                async_io::block_on(run(jobs))
            })?;
        Ok(jobs)
    })
    .as_ref()
    .copied()
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

/// The handle layer's close flusher (see [`rsyscall_handle::set_close_flusher`]): sends the
/// closes queued on `task`'s fd table from the reaper thread, so that a dropped handle of
/// another process's table is closed soon even if nothing else runs there.
pub(crate) fn flush_closes(task: rsyscall_handle::Task) {
    spawn(async move {
        if let Err(e) = task.flush_closes().await {
            log::debug!("closing dropped handles' fds: {e}");
        }
    });
}
