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
//! [`Connection`]: crate::Connection
//! [`ChildThread`]: crate::ChildThread

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

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
}
