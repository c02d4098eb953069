//! The event loop: where a thread's file descriptors are watched for readiness.
//!
//! # Two ways to watch an fd
//! By default every thread's fds are watched by the local process's async-io reactor:
//! [`Thread::make_afd`] registers a copy of the fd in the local table, used purely for
//! readiness. Readiness belongs to the open file description, which the copy shares, so
//! this is exact; every I/O syscall still goes through the fd's own task. This is how a
//! clone child shares its parent's event loop.
//!
//! A thread may instead get its own *root epoller* ([`Thread::make_root_epoller`],
//! [`Thread::make_root_epoller_with`]): an epoll fd inside the thread's process, on which
//! the server's end of its syscall socket (the "activity fd") is registered, so that an
//! `epoll_wait` blocking the thread's syscall server returns as soon as another request
//! arrives. From then on [`Thread::make_afd`] on that thread registers fds there. This
//! serves threads whose fd table the local process cannot reach.
//!
//! A root epoller follows its thread into a new fd table: after `unshare(CLONE_FILES)`,
//! the thread's next [`Thread::make_afd`] (or [`Thread::root_epoller_now`]) makes a fresh
//! epoll fd in the new table, with the same activity fd (the syscall socket keeps its
//! number in the copy), and closes the copy of the old epoll fd. Async fds made before name
//! the old table, as every handle made before does, and stay with the old epoller.
//!
//! # How the root epoller waits
//! - Fds are registered lazily, with `EPOLLONESHOT` and level-triggered. A waiter first
//!   tries its syscall; only on `EAGAIN` does it add what it waits for to the fd's
//!   interest and (re-)arm the fd with `EPOLL_CTL_MOD`. Level triggering reports
//!   readiness that arose before the arm, however late the `EAGAIN` arrived: no edge is
//!   lost.
//! - One waiter at a time (the *driver*, holding the driver lock) runs `epoll_wait` in the
//!   thread. Events are handed to their registrations: each event bumps its
//!   registration's sequence number, clears its interest (the one-shot arm is spent) and
//!   wakes its waiters, who retry their syscalls. The driver gives the role up once its
//!   own event came; the next waiter takes it.
//! - If a driver is dropped after its `epoll_wait` was sent, that wait's events are lost:
//!   the next driver first re-arms every registration still wanted, which (level
//!   triggering again) reports anything still ready.
//! - Dropping the last [`AsyncFileDescriptor`](crate::AsyncFileDescriptor) of a
//!   registration queues its `EPOLL_CTL_DEL`, done by the next driver before its wait
//!   (or the next `make_afd` or `close` on the thread); the queue keeps the fd open until
//!   then, because epoll keys on the fd and its open file description; a delete whose
//!   future is dropped puts its fd back in the queue. Dropping the epoller (with its
//!   thread) closes what is still queued.
//!
//! # Safety
//! One unsafe call: a short-lived borrowed handle to the thread's syscall socket, to
//! register it (see `make_root_epoller`).
#![allow(unsafe_code)]

use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Poll, Waker};

use rsyscall_handle::structs::EpollEvent;
use rsyscall_handle::{Error, FileDescriptor, Result};
use rsyscall_near::{self as near, EPOLL, EPOLL_CTL, Errno};
use slab::Slab;

use crate::thread::Thread;

/// The epoll data of the activity fd.
const ACTIVITY: u64 = u64::MAX;
/// Events one `epoll_wait` can return.
const MAX_EVENTS: usize = 64;

/// A thread's own epoll instance inside its process, with the thread's syscall socket
/// registered so that new requests interrupt a wait. Made by
/// [`Thread::make_root_epoller`]; see the [module documentation](self).
pub struct Epoller {
    /// The epoll fd, in the thread's table, used through the thread's task.
    epfd: FileDescriptor,
    /// The number of the activity fd (the server's end of the thread's syscall socket) in
    /// the thread's table. Only the number: a handle would let callers replace the socket.
    activity: near::FileDescriptor,
    /// Registrations and housekeeping.
    state: Mutex<State>,
    /// Held by the one waiter running `epoll_wait`.
    driver: async_lock::Mutex<()>,
}

/// What the epoller knows about its registrations.
#[derive(Default)]
struct State {
    /// Live registrations, by slab key: the low 32 bits of their epoll data (see
    /// [`token`]). A key is free again once its registration is dropped.
    regs: Slab<Weak<Shared>>,
    /// Bumped at each registration, the high 32 bits of the epoll data: an event still
    /// queued for a dropped registration whose key was reused does not match the new one.
    generation: u32,
    /// A wait's events were lost: re-arm every wanted registration before the next wait.
    rearm: bool,
    /// Dropped registrations still in the kernel's interest list, with a handle keeping
    /// their fd open until the `EPOLL_CTL_DEL`.
    orphans: Vec<FileDescriptor>,
}

/// One registered fd.
struct Shared {
    /// Its epoll data ([`token`]).
    token: u64,
    /// A handle to the fd (in the epoll fd's table), used for `epoll_ctl`.
    fd: FileDescriptor,
    /// Readiness bookkeeping.
    st: Mutex<RegState>,
    /// Serializes arming, so that the last mask sent is the latest interest.
    arm: async_lock::Mutex<()>,
    /// Whether the fd is in the kernel's interest list.
    added: AtomicBool,
}

/// Readiness bookkeeping of one registration.
#[derive(Default)]
struct RegState {
    /// Number of events delivered so far.
    seq: u64,
    /// What its waiters wait for (cleared when an event spends the one-shot arm).
    interest: EPOLL,
    /// The events of the last delivery.
    last: EPOLL,
    /// Waiters to wake at the next delivery.
    wakers: Vec<Waker>,
}

/// The epoll data of the registration with slab key `key` made at `generation`: the
/// generation in the high 32 bits, the key in the low ones. Never [`ACTIVITY`]. `None` for a
/// key beyond 32 bits.
fn token(key: usize, generation: u32) -> Option<u64> {
    let key = u32::try_from(key).ok().filter(|&k| k != u32::MAX)?;
    Some(u64::from(generation) << 32 | u64::from(key))
}

/// The slab key in the epoll data `token`.
fn key_of(token: u64) -> usize {
    (token & u64::from(u32::MAX)) as usize
}

/// Where a thread keeps its root epoller: the current one, and a lock serializing the
/// making of a new one (at [`Thread::make_root_epoller`], or when the thread's fd table
/// changed under the current one).
#[derive(Default)]
pub(crate) struct RootSlot {
    current: Mutex<Option<Arc<Epoller>>>,
    making: async_lock::Mutex<()>,
}

impl RootSlot {
    fn get(&self) -> Option<Arc<Epoller>> {
        lock(&self.current).clone()
    }
}

/// An fd registered on a root epoller (the registration of an
/// [`AsyncFileDescriptor`](crate::AsyncFileDescriptor) made on a thread with one).
pub(crate) struct Registered {
    epoller: Arc<Epoller>,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; the state stays consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for Epoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Epoller")
            .field("epfd", &self.epfd)
            .field("activity", &self.activity)
            .finish_non_exhaustive()
    }
}

impl Epoller {
    /// The epoll fd, in the thread's table.
    pub fn epfd(&self) -> &FileDescriptor {
        &self.epfd
    }

    /// The number of the activity fd (the server's end of the thread's syscall socket) in
    /// the thread's table. Only the number: no handle to the socket is given out, since
    /// replacing it (`dup2` onto it) would feed the server requests from elsewhere.
    pub fn activity_fd(&self) -> near::FileDescriptor {
        self.activity
    }

    /// Whether the epoll fd is of the fd table `thread` uses now.
    fn is_in_table_of(&self, thread: &Thread) -> bool {
        thread.task().check_fd(&self.epfd).is_ok()
    }

    /// How many fds are registered.
    pub fn registered(&self) -> usize {
        lock(&self.state)
            .regs
            .iter()
            .map(|(_, w)| w)
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Registers `fd`, of the epoll fd's table; nothing is sent until a waiter arms it.
    pub(crate) fn register(self: &Arc<Self>, fd: &FileDescriptor) -> Result<Registered> {
        let task = self.epfd.task();
        if task.check_fd(&self.epfd).is_err() {
            return Err(Error::invalid(
                "make_afd",
                format!(
                    "the fd table of pid {} changed since its root epoller was made (after \
                     unshare_files?): its epoll fd is in the old table",
                    task.pid().as_raw()
                ),
            ));
        }
        task.check_fd(fd)?;
        let mut st = lock(&self.state);
        st.generation = st.generation.wrapping_add(1);
        let generation = st.generation;
        let entry = st.regs.vacant_entry();
        let Some(token) = token(entry.key(), generation) else {
            return Err(Error::invalid(
                "make_afd",
                "more than 2^32 fds registered with one root epoller",
            ));
        };
        let shared = Arc::new(Shared {
            token,
            fd: fd.clone(),
            st: Mutex::new(RegState::default()),
            arm: async_lock::Mutex::new(()),
            added: AtomicBool::new(false),
        });
        entry.insert(Arc::downgrade(&shared));
        Ok(Registered {
            epoller: self.clone(),
            shared,
        })
    }

    /// `epoll_ctl(ADD or MOD)` of `shared` with `mask`, one-shot.
    async fn ctl_arm(&self, shared: &Shared, mask: EPOLL) -> Result<()> {
        let ev = Some(EpollEvent::new(mask | EPOLL::ONESHOT, shared.token));
        let (first, second) = if shared.added.load(Ordering::Acquire) {
            (EPOLL_CTL::MOD, EPOLL_CTL::ADD)
        } else {
            (EPOLL_CTL::ADD, EPOLL_CTL::MOD)
        };
        // An earlier arm whose future was dropped may have left `added` stale: EEXIST on
        // ADD or ENOENT on MOD says so, and the other operation applies.
        match self.epfd.epoll_ctl(first, &shared.fd, ev).await {
            Ok(()) => {}
            Err(e) if matches!(e.errno(), Some(Errno::EEXIST) | Some(Errno::ENOENT)) => {
                self.epfd.epoll_ctl(second, &shared.fd, ev).await?;
            }
            Err(e) => return Err(e),
        }
        shared.added.store(true, Ordering::Release);
        Ok(())
    }

    /// Waits until `shared`'s sequence number moves past `snap`, driving `epoll_wait`
    /// whenever nobody else does; returns the events of the last delivery.
    async fn wait_until(&self, shared: &Shared, snap: u64) -> Result<EPOLL> {
        loop {
            let changed = poll_fn(|cx| {
                let mut st = lock(&shared.st);
                if st.seq != snap {
                    return Poll::Ready(st.last);
                }
                if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    st.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            });
            let drive = async {
                let _driver = self.driver.lock().await;
                if lock(&shared.st).seq != snap {
                    return Ok(());
                }
                self.cycle().await
            };
            let got = futures_lite::future::or(async { Ok(Some(changed.await)) }, async {
                drive.await.map(|()| None)
            })
            .await?;
            if let Some(events) = got {
                return Ok(events);
            }
        }
    }

    /// Whether deletes of dropped registrations are queued.
    pub(crate) fn has_orphans(&self) -> bool {
        !lock(&self.state).orphans.is_empty()
    }

    /// Deletes the registrations of dropped [`AsyncFileDescriptor`]s from the interest
    /// list, then lets their fds go.
    ///
    /// [`AsyncFileDescriptor`]: crate::AsyncFileDescriptor
    pub(crate) async fn flush_orphans(&self) {
        loop {
            let Some(fd) = lock(&self.state).orphans.pop() else {
                return;
            };
            // If this future is dropped during the delete, the fd goes back to the queue:
            // closing it now could leave its registration behind in the interest list
            // (epoll keys on the fd and its open file description). The next flush deletes
            // it again (ENOENT if the first delete ran).
            let mut pending = PutBack {
                epoller: self,
                fd: Some(fd),
            };
            if let Some(fd) = &pending.fd
                && let Err(e) = self.epfd.epoll_delete(fd).await
                && e.errno() != Some(Errno::ENOENT)
            {
                log::debug!("deregistering a dropped fd from a root epoller: {e}");
            }
            pending.fd = None;
        }
    }

    /// The driver's work: pending deletes, a re-arm after lost events, then one
    /// `epoll_wait` whose events are handed out.
    async fn cycle(&self) -> Result<()> {
        self.flush_orphans().await;
        if lock(&self.state).rearm {
            self.rearm_all().await?;
            lock(&self.state).rearm = false;
        }
        let task = self.epfd.task();
        let buf = task.malloc_array::<EpollEvent>(MAX_EVENTS).await?;
        let mut lost = LostGuard {
            epoller: self,
            armed: true,
        };
        let events = match self.epfd.epoll_wait(buf, -1).await {
            Ok((filled, _rest)) => filled.read().await?,
            Err(e) if e.errno() == Some(Errno::EINTR) => Vec::new(),
            Err(e) => return Err(e),
        };
        self.distribute(&events);
        lost.armed = false;
        Ok(())
    }

    /// Re-arms every registration some waiter still waits for.
    async fn rearm_all(&self) -> Result<()> {
        let regs: Vec<Arc<Shared>> = lock(&self.state)
            .regs
            .iter()
            .map(|(_, w)| w)
            .filter_map(Weak::upgrade)
            .collect();
        for shared in regs {
            if !shared.added.load(Ordering::Acquire) {
                continue;
            }
            let _arm = shared.arm.lock().await;
            let mask = lock(&shared.st).interest;
            if !mask.is_empty() {
                self.ctl_arm(&shared, mask).await?;
            }
        }
        Ok(())
    }

    /// Hands the events of one `epoll_wait` to their registrations.
    fn distribute(&self, events: &[EpollEvent]) {
        let mut wakers = Vec::new();
        {
            let st = lock(&self.state);
            for ev in events {
                let token = ev.data();
                if token == ACTIVITY {
                    continue;
                }
                let Some(shared) = st
                    .regs
                    .get(key_of(token))
                    .and_then(Weak::upgrade)
                    .filter(|s| s.token == token)
                else {
                    continue;
                };
                let mut rs = lock(&shared.st);
                rs.seq += 1;
                rs.last = ev.events();
                rs.interest = EPOLL::empty();
                wakers.append(&mut rs.wakers);
            }
        }
        for w in wakers {
            w.wake();
        }
    }
}

/// Puts an orphan back in the queue unless its delete completed.
struct PutBack<'a> {
    epoller: &'a Epoller,
    fd: Option<FileDescriptor>,
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            lock(&self.epoller.state).orphans.push(fd);
        }
    }
}

/// Marks a wait's events as lost unless disarmed (its future was dropped, or it failed).
struct LostGuard<'a> {
    epoller: &'a Epoller,
    armed: bool,
}

impl Drop for LostGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.epoller.state).rearm = true;
        }
    }
}

impl Registered {
    /// The epoller it is registered on.
    pub(crate) fn epoller(&self) -> &Arc<Epoller> {
        &self.epoller
    }

    /// Waits until an event for any of `want` (or `EPOLLERR`/`EPOLLHUP`) may have happened
    /// since the call: arms the fd for `want` plus what other waiters want, then waits for
    /// the next delivery. Returns that delivery's events, which may be for another waiter's
    /// interest: callers retry their syscall and wait again on `EAGAIN`.
    pub(crate) async fn wait(&self, want: EPOLL) -> Result<EPOLL> {
        let snap = {
            let mut st = lock(&self.shared.st);
            st.interest |= want;
            st.seq
        };
        {
            let _arm = self.shared.arm.lock().await;
            let mask = {
                let st = lock(&self.shared.st);
                if st.seq != snap {
                    return Ok(st.last);
                }
                st.interest
            };
            self.epoller.ctl_arm(&self.shared, mask).await?;
        }
        self.epoller.wait_until(&self.shared, snap).await
    }

    /// Removes the fd from the epoll interest list now (before the caller closes it), and
    /// the fds of dropped registrations too.
    ///
    /// # Errors
    /// `epoll_ctl`'s, except `ENOENT` (never added, or already gone).
    pub(crate) async fn deregister(self) -> Result<()> {
        self.epoller.flush_orphans().await;
        let result = if self.shared.added.swap(false, Ordering::AcqRel) {
            match self.epoller.epfd.epoll_delete(&self.shared.fd).await {
                Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(()),
                other => other,
            }
        } else {
            Ok(())
        };
        drop(self);
        result
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut st = lock(&self.epoller.state);
        // The entry at the key is this registration's: keys are freed only here.
        st.regs.try_remove(key_of(self.shared.token));
        if self.shared.added.load(Ordering::Acquire) {
            st.orphans.push(self.shared.fd.clone());
        }
    }
}

impl Thread {
    /// The thread's root epoller, if it has one in the fd table the thread uses now (one
    /// made before an `unshare(CLONE_FILES)` is replaced by a fresh one at the thread's
    /// next [`Thread::make_afd`]; see [`Thread::root_epoller_now`]).
    pub fn root_epoller(&self) -> Option<Arc<Epoller>> {
        self.inner
            .root_epoller
            .get()
            .filter(|ep| ep.is_in_table_of(self))
    }

    /// The thread's root epoller for the fd table it uses now: the current one, or, if the
    /// thread had one in a table it has since left (`unshare(CLONE_FILES)`, through
    /// [`Thread::unshare`] or [`Task::unshare_files`](rsyscall_handle::Task::unshare_files)),
    /// a fresh one made in the new table with the same activity fd (the syscall socket
    /// keeps its number in the copy). `None` if the thread never had one.
    ///
    /// [`AsyncFileDescriptor`](crate::AsyncFileDescriptor)s made before the change name
    /// the old table, like every handle made before it, and stay on the old epoller.
    ///
    /// # Errors
    /// The errors of making the new epoller (see [`Thread::make_root_epoller_with`]).
    pub async fn root_epoller_now(&self) -> Result<Option<Arc<Epoller>>> {
        let slot = &self.inner.root_epoller;
        match slot.get() {
            None => return Ok(None),
            Some(ep) if ep.is_in_table_of(self) => return Ok(Some(ep)),
            Some(_) => {}
        }
        let _making = slot.making.lock().await;
        let Some(old) = slot.get() else {
            return Ok(None);
        };
        if old.is_in_table_of(self) {
            return Ok(Some(old)); // remade while we waited
        }
        let task = self.task();
        // SAFETY: the activity fd is the thread's syscall socket (or the fd the user gave
        // `make_root_epoller_with`), which keeps its number in the copied table; this
        // handle lives only to register it with the new epoll fd, and never closes or
        // replaces it.
        let activity = unsafe { FileDescriptor::borrowed(task, old.activity) };
        let new = self.new_root_epoller(&activity).await?;
        *lock(&slot.current) = Some(new.clone());
        // The old epoll fd's copy in the new table: no handle names it, and nothing will
        // use it. It can be named only while the table is still known to be a faithful copy.
        match old.epfd.inherit(task) {
            Ok(copy) => {
                if let Err(e) = copy.close().await {
                    log::debug!("closing the old root epoller's copy: {e}");
                }
            }
            Err(e) => log::debug!("the old root epoller's copy is left open: {e}"),
        }
        Ok(Some(new))
    }

    /// The thread's root epoller for its current table, made now (with its syscall socket
    /// as the activity fd) if it never had one: for threads whose fds the local reactor
    /// cannot watch (on another host).
    pub(crate) async fn root_epoller_or_make(&self) -> Result<Arc<Epoller>> {
        if let Some(ep) = self.root_epoller_now().await? {
            return Ok(ep);
        }
        {
            let slot = &self.inner.root_epoller;
            let _making = slot.making.lock().await;
            if slot.get().is_none() {
                let activity = self.syscall_socket("make_root_epoller")?;
                let epoller = self.new_root_epoller(&activity).await?;
                *lock(&slot.current) = Some(epoller);
            }
        }
        self.root_epoller_now()
            .await?
            .ok_or_else(|| Error::invalid("make_root_epoller", "the root epoller was lost"))
    }

    /// An epoll fd of this thread's current table with `activity` registered.
    async fn new_root_epoller(&self, activity: &FileDescriptor) -> Result<Arc<Epoller>> {
        let task = self.task();
        let activity_near = task.check_fd(activity)?;
        let epfd = task.epoll_create().await?;
        if let Err(e) = epfd.epoll_add(activity, EPOLL::IN, ACTIVITY).await {
            if let Err(c) = epfd.close().await {
                log::debug!("closing an unused epoll fd: {c}");
            }
            return Err(e);
        }
        Ok(Arc::new(Epoller {
            epfd,
            activity: activity_near,
            state: Mutex::new(State::default()),
            driver: async_lock::Mutex::new(()),
        }))
    }

    /// Gives this thread its root epoller: an epoll fd in its process with `activity`
    /// registered for `EPOLLIN`, where `activity` is the server's end of the thread's
    /// syscall socket in the thread's table (so that a new request makes a blocked
    /// `epoll_wait` return). From then on [`Thread::make_afd`] registers this thread's fds
    /// there. `activity` is never closed through the epoller.
    ///
    /// The epoller follows the thread into a new fd table after `unshare(CLONE_FILES)`
    /// (see [`Thread::root_epoller_now`]).
    ///
    /// [`Thread::make_root_epoller`] finds the socket itself.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on the local thread (its fds are watched by the
    /// reactor: a blocking `epoll_wait` would block the executor) or if the thread already
    /// has one (in any table: it follows the thread); [`Error::Mismatch`] if `activity` is
    /// of another table; the errors of `epoll_create1` and `epoll_ctl`.
    pub async fn make_root_epoller_with(&self, activity: &FileDescriptor) -> Result<()> {
        let task = self.task();
        if task.sysif().is_local() {
            return Err(Error::invalid(
                "make_root_epoller",
                "the local thread's fds are watched by the async-io reactor; a root epoller \
                 would block the executor in epoll_wait",
            ));
        }
        let slot = &self.inner.root_epoller;
        let _making = slot.making.lock().await;
        if slot.get().is_some() {
            return Err(Error::invalid(
                "make_root_epoller",
                format!("pid {} already has a root epoller", task.pid().as_raw()),
            ));
        }
        let epoller = self.new_root_epoller(activity).await?;
        *lock(&slot.current) = Some(epoller);
        Ok(())
    }

    /// Gives this thread its root epoller, with its syscall socket as the activity fd: see
    /// [`Thread::make_root_epoller_with`]. Works after `unshare_files` too (the socket
    /// keeps its number in the copied table).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a thread without a syscall socket (the local thread);
    /// as [`Thread::make_root_epoller_with`].
    pub async fn make_root_epoller(&self) -> Result<()> {
        let activity = self.syscall_socket("make_root_epoller")?;
        self.make_root_epoller_with(&activity).await
    }

    /// A short-lived handle to the thread's syscall socket, to register it as a root
    /// epoller's activity fd.
    fn syscall_socket(&self, what: &'static str) -> Result<FileDescriptor> {
        let server = self
            .inner
            .server_fd
            .ok_or_else(|| Error::invalid(what, "the thread has no syscall socket to watch"))?;
        // SAFETY: the syscall socket stays open in the thread's table for the thread's
        // life, and the handle is only used to register it with an epoll fd, which keeps
        // nothing but its number: it is never closed or replaced, and dropped right after.
        Ok(unsafe { FileDescriptor::borrowed(self.task(), server) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_the_key_and_the_generation_and_are_never_the_activity_fd() {
        let t = token(7, 3).expect("small key");
        assert_eq!(key_of(t), 7);
        assert_eq!(t >> 32, 3);
        // The same key at another generation is another token: a stale event for a
        // dropped registration does not reach the one that reused its key.
        assert_ne!(token(7, 4), Some(t));
        assert_ne!(token(u32::MAX as usize - 1, u32::MAX), Some(ACTIVITY));
        assert_eq!(token(u32::MAX as usize, u32::MAX), None);
        assert_eq!(token(1 << 40, 0), None);
    }
}
