//! [`Critical`]: the part of an operation that must not stop half-way, finished in the
//! background if its caller's future is dropped.
//!
//! # The rule
//! Some operations cannot be abandoned between two awaits without breaking something: a
//! clone whose request reached the service thread (or a remote thread) makes a process
//! that runs on memory the operation owns; a move of fds over a [`Connection`] whose
//! `SCM_RIGHTS` message is sent must be received by the same move, or the next move gets
//! the wrong fds; an `unshare` that reached the thread must be recorded in its task. The
//! future of such an operation polls its critical part through a [`Critical`], which owns
//! it as a `Pin<Box<dyn Future + Send + 'static>>`. If the caller's future is dropped before
//! the critical part completed, [`Critical`]'s `Drop` hands it to the reaper thread
//! ([`crate::reaper`]), which polls it to completion and then drops its output: a
//! [`ChildThread`] is killed and reaped, fds are closed, memory is freed by the owners that
//! know when nothing uses it any more. An operation dropped before its first poll never
//! starts. On the normal path the guard costs one allocation and nothing else: no syscall,
//! no thread switch.
//!
//! If the reaper thread cannot be started, the critical part is leaked rather than dropped:
//! whatever it owns (a child's stack) stays allocated, because something may still use it.
//!
//! # Why the clone's memory does not travel with the service thread's request
//! The local process's clones are issued by the service thread ([`crate::service`]) from a
//! request that carries only addresses; the caller owns the stack image and the futex
//! helper's memory. Moving that memory into the request would protect it while the clone
//! runs, but not what must follow a clone to tear the child down again: its pidfd, read
//! from memory after the clone; its monitor; its futex helper, whose exit alone says when
//! the memory is free. The service thread would need a second copy of that logic. Instead
//! the whole clone is one critical part: however it ends, the code that made the child is
//! the code that disposes of it, and the service thread stays a plain executor of clones.
//!
//! # Steps that go on without their caller
//! [`Detached`] serves the opposite need: a step (a read or write of
//! [`AsyncRead`](futures_lite::AsyncRead)/[`AsyncWrite`](futures_lite::AsyncWrite) on an
//! [`AsyncFileDescriptor`](crate::AsyncFileDescriptor)) that is kept *across* calls, whose
//! callers may stop polling it at any time without dropping it. A request future that was
//! polled must keep being polled (the syscall connection and the root epoller hand roles
//! to the first waiter; see [`crate::syscall_connection`]), so a step nobody polls could
//! stall every other request of its thread. [`Detached`] polls its step inline at first
//! (no thread switch when it completes at once) and, if it did not complete, hands it to
//! the reaper thread, which polls it to completion and keeps the result for the next
//! caller. Dropping the [`Detached`] drops the step at once, as dropping the step itself
//! would.
//!
//! [`Connection`]: crate::Connection
//! [`ChildThread`]: crate::ChildThread

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::reaper;

/// A boxed critical part.
type Part<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Polls a critical part for its caller, and finishes it on the reaper thread if dropped
/// first (see the [module documentation](self)).
pub(crate) struct Critical<T: Send + 'static> {
    part: Option<Part<T>>,
    /// Polled at least once: from then on it is finished whatever happens.
    started: bool,
}

impl<T: Send + 'static> Critical<T> {
    /// Wraps `part`, which must own everything it uses. Nothing runs before the first poll.
    pub(crate) fn new(part: impl Future<Output = T> + Send + 'static) -> Self {
        Critical {
            part: Some(Box::pin(part)),
            started: false,
        }
    }
}

impl<T: Send + 'static> Future for Critical<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        // Polled again after completing (a broken caller): never completes again.
        let Some(part) = this.part.as_mut() else {
            return Poll::Pending;
        };
        this.started = true;
        let out = part.as_mut().poll(cx);
        if out.is_ready() {
            this.part = None;
        }
        out
    }
}

impl<T: Send + 'static> Drop for Critical<T> {
    fn drop(&mut self) {
        if let Some(part) = self.part.take()
            && self.started
        {
            reaper::spawn(async move {
                drop(part.await);
            });
        }
    }
}

/// A step polled inline until it first returns `Pending`, then on the reaper thread, so
/// that it progresses whether or not anyone polls this handle; polling the handle returns
/// its result once it has one. See the [module documentation](self).
pub(crate) struct Detached<T: Send + 'static> {
    state: DetachedState<T>,
}

enum DetachedState<T: Send + 'static> {
    /// Not handed over yet (never polled, or only completed inline).
    Here(Option<Part<T>>),
    /// On the reaper thread.
    Away(Arc<Mutex<Away<T>>>),
}

/// A step on the reaper thread and what it produced.
struct Away<T> {
    /// The step, until it completes or the [`Detached`] is dropped.
    part: Option<Part<T>>,
    /// Its result, until taken.
    value: Option<T>,
    /// The waker of the last poll of the [`Detached`].
    caller: Option<Waker>,
    /// The reaper's waker, to remove the job once the step was dropped.
    job: Option<Waker>,
}

fn lock_away<T>(m: &Mutex<Away<T>>) -> MutexGuard<'_, Away<T>> {
    // Nothing panics while holding it (a step that panics poisons nothing: the lock is
    // taken back, the step is gone).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Send + 'static> Detached<T> {
    /// Wraps `step`, which must own everything it uses. Nothing runs before the first poll.
    pub(crate) fn new(step: impl Future<Output = T> + Send + 'static) -> Self {
        Detached {
            state: DetachedState::Here(Some(Box::pin(step))),
        }
    }
}

impl<T: Send + 'static> Future for Detached<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        match &mut this.state {
            DetachedState::Here(slot) => {
                // Polled again after completing (a broken caller): never completes again.
                let Some(part) = slot.as_mut() else {
                    return Poll::Pending;
                };
                if let Poll::Ready(v) = part.as_mut().poll(cx) {
                    *slot = None;
                    return Poll::Ready(v);
                }
                let away = Arc::new(Mutex::new(Away {
                    part: slot.take(),
                    value: None,
                    caller: Some(cx.waker().clone()),
                    job: None,
                }));
                let job = Arc::clone(&away);
                this.state = DetachedState::Away(away);
                reaper::spawn(std::future::poll_fn(move |jcx| {
                    let mut a = lock_away(&job);
                    let Some(part) = a.part.as_mut() else {
                        // Dropped by the `Detached` (which dropped the step itself).
                        return Poll::Ready(());
                    };
                    match part.as_mut().poll(jcx) {
                        Poll::Ready(v) => {
                            a.part = None;
                            a.value = Some(v);
                            let caller = a.caller.take();
                            drop(a);
                            if let Some(w) = caller {
                                w.wake();
                            }
                            Poll::Ready(())
                        }
                        Poll::Pending => {
                            match &a.job {
                                Some(w) if w.will_wake(jcx.waker()) => {}
                                _ => a.job = Some(jcx.waker().clone()),
                            }
                            Poll::Pending
                        }
                    }
                }));
                Poll::Pending
            }
            DetachedState::Away(away) => {
                let mut a = lock_away(away);
                if let Some(v) = a.value.take() {
                    return Poll::Ready(v);
                }
                match &a.caller {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => a.caller = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let DetachedState::Away(away) = &self.state {
            // Waits for a poll in progress on the reaper thread, if any, to return.
            let (part, value, job) = {
                let mut a = lock_away(away);
                (a.part.take(), a.value.take(), a.job.take())
            };
            // Dropped here, outside the lock, as the caller would have dropped the step.
            drop((part, value));
            if let Some(w) = job {
                w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Waker;
    use std::time::Duration;

    use super::*;

    /// Polls `f` once from a context nobody wakes.
    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Waits (at most 10 s) until `flag` is set.
    fn wait_for(flag: &AtomicBool) -> bool {
        for _ in 0..1000 {
            if flag.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        flag.load(Ordering::SeqCst)
    }

    /// Sets its flag when dropped.
    struct SetOnDrop(Arc<AtomicBool>);

    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_part_dropped_after_its_first_poll_is_finished_and_its_output_dropped() {
        let finished = Arc::new(AtomicBool::new(false));
        let output_dropped = Arc::new(AtomicBool::new(false));
        let (f, o) = (finished.clone(), output_dropped.clone());
        let mut part = Critical::new(async move {
            async_io::Timer::after(Duration::from_millis(20)).await;
            f.store(true, Ordering::SeqCst);
            SetOnDrop(o)
        });
        assert!(poll_once(&mut part).is_pending());
        drop(part);
        assert!(wait_for(&finished), "the part was not finished");
        assert!(wait_for(&output_dropped), "its output was not dropped");
    }

    #[test]
    fn a_part_dropped_before_its_first_poll_never_runs() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let part = Critical::new(async move { r.store(true, Ordering::SeqCst) });
        drop(part);
        // Give a background thread time to run it, if one (wrongly) got it.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[test]
    fn a_part_that_panics_in_the_background_does_not_stop_the_others() {
        let mut bad = Critical::new(async move {
            async_io::Timer::after(Duration::from_millis(10)).await;
            panic!("a critical part panicking on the background thread (expected by this test)");
        });
        assert!(poll_once(&mut bad).is_pending());
        drop(bad);
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let mut good = Critical::new(async move {
            async_io::Timer::after(Duration::from_millis(50)).await;
            r.store(true, Ordering::SeqCst);
        });
        assert!(poll_once(&mut good).is_pending());
        drop(good);
        assert!(
            wait_for(&ran),
            "the background thread stopped after a panic"
        );
    }

    #[test]
    fn a_detached_step_progresses_while_nobody_polls_it() {
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        let mut step = Detached::new(async move {
            async_io::Timer::after(Duration::from_millis(20)).await;
            f.store(true, Ordering::SeqCst);
            7
        });
        assert!(poll_once(&mut step).is_pending());
        assert!(
            wait_for(&finished),
            "the step did not go on without its caller"
        );
        assert_eq!(poll_once(&mut step), Poll::Ready(7));
    }

    #[test]
    fn a_detached_step_that_completes_inline_never_leaves() {
        let mut step = Detached::new(async { 5 });
        assert_eq!(poll_once(&mut step), Poll::Ready(5));
        // Polled again after completing: never completes again.
        assert!(poll_once(&mut step).is_pending());
    }

    #[test]
    fn dropping_a_detached_step_drops_it_at_once() {
        let dropped = Arc::new(AtomicBool::new(false));
        let d = SetOnDrop(dropped.clone());
        let mut step = Detached::new(async move {
            let _d = d;
            std::future::pending::<()>().await;
        });
        assert!(poll_once(&mut step).is_pending());
        // Let the reaper poll it at least once.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!dropped.load(Ordering::SeqCst));
        drop(step);
        assert!(
            dropped.load(Ordering::SeqCst),
            "the step outlived its handle"
        );
    }
}
