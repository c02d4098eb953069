//! Owning file descriptor handles and the per-table queue of closes.
//!
//! # Safety
//! Unsafe code is allowed item by item: the constructors `from_raw` and `borrowed`, whose
//! callers promise what the fd number is, and `into_owned_fd` and `as_local_fd`, which hand
//! a local fd of an owned handle to std's types, as the drop of the last handle of a local
//! fd does to close it.
//!
//! # Std interop
//! A handle to a local fd converts to and from std's `OwnedFd` (`OwnedFd::try_from(fd)`,
//! `FileDescriptor::from(owned)`). [`FileDescriptor`] cannot implement `AsFd`: it may name
//! an fd of another process's table, whose number means nothing (or another file) here.
//! [`LocalFileDescriptor`] is a handle checked once to be of the local table, and implements
//! `AsFd` and `AsRawFd`.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rsyscall_far as far;
use rsyscall_near as near;

use crate::error::Result;
use crate::task::Task;

/// A table's queued closes, handed to the close flusher (see [`set_close_flusher`]) when
/// the first of them was queued. It holds the table weakly, and picks a task to send the
/// closes through only when it runs: a pending flush never keeps a task, or its
/// connection, alive. Until it is run or dropped, later closes of the table join it.
pub struct CloseFlush {
    table: std::sync::Weak<FdTableState>,
    /// Set by [`CloseFlush::run`]: then dropping it schedules nothing.
    ran: bool,
}

impl CloseFlush {
    /// Whether closes are still queued (the table's next syscall sends them itself, and
    /// may have done so already) and a task of the table can send them now: if not, drop
    /// this.
    pub fn needed(&self) -> bool {
        self.table
            .upgrade()
            .is_some_and(|t| t.has_pending.load(Ordering::Acquire) && t.sender().is_some())
    }

    /// Sends the queued closes through a task of the table that can send now (see
    /// [`Task::flush_closes`]).
    pub async fn run(mut self) {
        self.ran = true;
        let table = self.table.upgrade();
        // Closes queued from now on need a flush of their own.
        drop(self);
        let Some(table) = table else { return };
        table.flush_scheduled.store(false, Ordering::Release);
        let Some(task) = table.sender() else { return };
        drop(table);
        if let Err(e) = task.close_queued().await {
            log::debug!("closing dropped handles' fds: {e}");
        }
    }
}

impl Drop for CloseFlush {
    fn drop(&mut self) {
        if self.ran {
            return;
        }
        if let Some(table) = self.table.upgrade() {
            table.flush_scheduled.store(false, Ordering::Release);
            // A close queued while this was being given up found the flag still set and
            // scheduled nothing: it needs a flush of its own.
            if table.has_pending.load(Ordering::Acquire) {
                table.schedule_flush();
            }
        }
    }
}

/// What takes a table's [`CloseFlush`]: set once, by the layer that can run futures in the
/// background (see [`set_close_flusher`]).
static CLOSE_FLUSHER: std::sync::OnceLock<fn(CloseFlush)> = std::sync::OnceLock::new();

/// Installs `take`, which must run the flush it is given soon unless it is no longer
/// [`needed`](CloseFlush::needed) (it may wait a little first, to leave the closes to the
/// table's next syscall), without blocking its caller (it is called from `Drop`). From then
/// on, dropping the last handle of an fd of another process's table has its close sent
/// soon, not only at that table's next syscall: a reader waiting for end of file on a pipe
/// whose write end was that fd sees it even if nothing else runs on the table. Only the
/// first call has an effect; the thread crate installs its background runner.
pub fn set_close_flusher(take: fn(CloseFlush)) {
    let _ = CLOSE_FLUSHER.set(take);
}

/// State shared by every task using one fd table: its identity and the closes queued by
/// dropped handles, performed at the next syscall on the table, on demand, or soon by the
/// close flusher ([`set_close_flusher`]).
pub struct FdTableState {
    id: far::FdTable,
    /// Incremented for every handle made for an fd of this table: an fd whose handle has a
    /// generation below a child's snapshot existed when the child's table was copied.
    generation: AtomicU64,
    pending: Mutex<Vec<near::FileDescriptor>>,
    /// The rooms of `pipe2` and `socketpair` calls that succeeded after their futures were
    /// dropped, in memory that cannot be read without waiting (another address space):
    /// the next flush reads the two fds there and closes them.
    unread_pairs: Mutex<Vec<crate::Pointer<[i32; 2]>>>,
    /// Whether closes (or unread pairs) are queued.
    has_pending: AtomicBool,
    /// How many handles (owned or borrowed) refer to each fd number of this table.
    live: Mutex<std::collections::HashMap<i32, usize>>,
    /// The fd numbers of this table handed out by [`FileDescriptor::inherit`]: each copy is
    /// owned once, so a second `inherit` of the same number is refused.
    inherited: Mutex<std::collections::HashSet<i32>>,
    /// The tasks that used this table (weakly: the table never keeps a task, and so its
    /// connection, alive), through which the close flusher sends queued closes.
    users: Mutex<Vec<crate::task::WeakTask>>,
    /// Whether the close flusher was handed a flush of this table that has not started
    /// yet: one at a time is enough, since a flush takes every close queued by then.
    flush_scheduled: AtomicBool,
    /// The closes a flush took from the queue and has not finished, and the flushes
    /// waiting for them: a flush returns only once every close queued before it is done,
    /// whoever took it (a close must never be seen as done, by a clone copying the table
    /// say, while another flush still has it in flight).
    closing: Mutex<Closing>,
}

/// See [`FdTableState::closing`].
#[derive(Default)]
struct Closing {
    fds: Vec<near::FileDescriptor>,
    /// Unread pairs a flush took and has not turned into queued closes yet.
    pairs: usize,
    waiters: Vec<std::task::Waker>,
}

impl Closing {
    /// Whether nothing a flush took is in flight.
    fn idle(&self) -> bool {
        self.fds.is_empty() && self.pairs == 0
    }
}

impl fmt::Debug for FdTableState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.id)
    }
}

impl FdTableState {
    /// State for the table `id`.
    pub fn new(id: far::FdTable) -> Arc<Self> {
        Arc::new(FdTableState {
            id,
            generation: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
            unread_pairs: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
            live: Mutex::new(std::collections::HashMap::new()),
            inherited: Mutex::new(std::collections::HashSet::new()),
            users: Mutex::new(Vec::new()),
            flush_scheduled: AtomicBool::new(false),
            closing: Mutex::new(Closing::default()),
        })
    }

    /// Records that `task` uses this table (when it is made, or moves to this table).
    pub(crate) fn add_user(&self, task: &Task) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.retain(crate::task::WeakTask::is_alive);
        users.push(task.downgrade());
    }

    /// A live task that uses this table now and can send a request now, if any.
    fn sender(&self) -> Option<Task> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .iter()
            .filter_map(crate::task::WeakTask::upgrade)
            .find(|t| t.fd_table().id() == self.id && t.sysif().can_send_now())
    }

    /// Has the closes queued here sent soon by the close flusher, if one is installed,
    /// none is pending already, and a task of this table can still reach it.
    pub(crate) fn schedule_flush(self: &Arc<Self>) {
        let Some(take) = CLOSE_FLUSHER.get() else {
            return;
        };
        if self.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.sender().is_some() {
            take(CloseFlush {
                table: Arc::downgrade(self),
                ran: false,
            });
        } else {
            // Nothing can reach the table now: its next syscall (after a reconnect, say)
            // sends the closes, or they go with its process.
            self.flush_scheduled.store(false, Ordering::Release);
        }
    }

    /// Records that the copy of `fd` in this table now has an owner; `false` if it already
    /// had one.
    fn claim_inherited(&self, fd: near::FileDescriptor) -> bool {
        self.inherited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fd.as_raw())
    }

    /// The table's identity.
    pub fn id(&self) -> far::FdTable {
        self.id
    }

    /// A snapshot to take just before copying this table into a child: exactly the fds
    /// whose handles exist at this point can be inherited by the child.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn queue_close(&self, fd: near::FileDescriptor) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push(fd);
        self.has_pending.store(true, Ordering::Release);
    }

    /// Queues the closes of the fds in `pair`, the numbers a successful `pipe2` or
    /// `socketpair` wrote (a negative number is none).
    pub(crate) fn queue_close_pair(&self, pair: [i32; 2]) {
        for fd in pair.into_iter().filter(|&fd| fd >= 0) {
            self.queue_close(near::FileDescriptor::new(fd));
        }
    }

    /// Queues the closes of the two fds a successful `pipe2` or `socketpair` wrote at
    /// `pair`, for the next flush to read (see [`FdTableState::unread_pairs`]).
    pub(crate) fn queue_unread_pair(&self, pair: crate::Pointer<[i32; 2]>) {
        let mut pairs = self.unread_pairs.lock().unwrap_or_else(|e| e.into_inner());
        pairs.push(pair);
        self.has_pending.store(true, Ordering::Release);
    }

    /// Takes the rooms of pairs still to be read and closed.
    /// They count as in flight until [`FdTableState::pair_read_done`], each.
    pub(crate) fn take_unread_pairs(&self) -> Vec<crate::Pointer<[i32; 2]>> {
        if !self.has_pending.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut unread = self.unread_pairs.lock().unwrap_or_else(|e| e.into_inner());
        let pairs = std::mem::take(&mut *unread);
        // In flight before they leave the queue's lock: `has_unknown_fds` sees them in one
        // or the other.
        self.closing.lock().unwrap_or_else(|e| e.into_inner()).pairs += pairs.len();
        drop(unread);
        pairs
    }

    /// Records that one pair [`FdTableState::take_unread_pairs`] gave is dealt with: its
    /// closes are queued, it was put back, or it could not be read.
    pub(crate) fn pair_read_done(&self) {
        let waiters = {
            let mut closing = self.closing.lock().unwrap_or_else(|e| e.into_inner());
            closing.pairs = closing.pairs.saturating_sub(1);
            if closing.idle() {
                std::mem::take(&mut closing.waiters)
            } else {
                Vec::new()
            }
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Whether fds of this table made by dropped `pipe2` or `socketpair` calls wait to be
    /// read and closed (queued, or being read by a flush): their numbers are known to no
    /// one yet, so code that closes fds by number must not close any fd until a flush
    /// ([`Task::flush_closes`]) has dealt with them.
    pub fn has_unknown_fds(&self) -> bool {
        let unread = self.unread_pairs.lock().unwrap_or_else(|e| e.into_inner());
        !unread.is_empty() || self.closing.lock().unwrap_or_else(|e| e.into_inner()).pairs > 0
    }

    /// Takes the queued closes, if any, for a flush that will close them: they count as in
    /// flight until [`FdTableState::close_done`] (or [`FdTableState::requeue`]).
    pub(crate) fn take_pending(&self) -> Vec<near::FileDescriptor> {
        if !self.has_pending.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let fds = std::mem::take(&mut *pending);
        // In flight before the queue looks empty: a flush that finds nothing queued then
        // sees them in flight (both under the queue's lock).
        self.closing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fds
            .extend_from_slice(&fds);
        // Under the pairs' lock, so that a pair queued meanwhile keeps the flag set.
        let pairs = self.unread_pairs.lock().unwrap_or_else(|e| e.into_inner());
        self.has_pending.store(!pairs.is_empty(), Ordering::Release);
        drop(pairs);
        fds
    }

    /// Puts closes a flush took and did not send back in the queue.
    pub(crate) fn requeue(&self, fds: &[near::FileDescriptor]) {
        if fds.is_empty() {
            return;
        }
        let waiters = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.extend_from_slice(fds);
            self.has_pending.store(true, Ordering::Release);
            // Out of the closes in flight while the queue is still locked, so that
            // `has_handle` never sees them in neither.
            let mut waiters = Vec::new();
            for &fd in fds {
                waiters.extend(self.end_closing(fd));
            }
            waiters
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Records that the close of `fd` a flush took is over (sent, at least: a close whose
    /// request went out runs before any later request on its connection).
    pub(crate) fn close_done(&self, fd: near::FileDescriptor) {
        for w in self.end_closing(fd) {
            w.wake();
        }
    }

    /// Takes `fd` out of the closes in flight; returns the waiters to wake if none is left.
    fn end_closing(&self, fd: near::FileDescriptor) -> Vec<std::task::Waker> {
        let mut closing = self.closing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = closing.fds.iter().position(|&f| f == fd) {
            closing.fds.swap_remove(i);
        }
        if closing.idle() {
            std::mem::take(&mut closing.waiters)
        } else {
            Vec::new()
        }
    }

    /// Waits until no close (or unread pair) taken by a flush is in flight.
    pub(crate) async fn closes_finished(&self) {
        std::future::poll_fn(|cx| {
            let mut closing = self.closing.lock().unwrap_or_else(|e| e.into_inner());
            if closing.idle() {
                return std::task::Poll::Ready(());
            }
            if !closing.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                closing.waiters.push(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Whether closes are queued.
    pub(crate) fn has_pending(&self) -> bool {
        self.has_pending.load(Ordering::Acquire)
    }

    /// How many closes are queued.
    pub fn pending_closes(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether some live handle (owned or borrowed) refers to `fd` in this table, or a
    /// dropped handle's close of it is still queued or in flight: code that closes fds by
    /// number must leave such an fd alone.
    pub fn has_handle(&self, fd: near::FileDescriptor) -> bool {
        let live = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fd.as_raw())
            .is_some_and(|&n| n > 0);
        if live {
            return true;
        }
        // Both looks under the queue's lock: a close moves between the queue and the
        // closes in flight (either way) only under it.
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.contains(&fd)
            || self
                .closing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .fds
                .contains(&fd)
    }

    fn add_handle(&self, fd: near::FileDescriptor) {
        *self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(fd.as_raw())
            .or_insert(0) += 1;
    }

    fn remove_handle(&self, fd: near::FileDescriptor) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = live.get_mut(&fd.as_raw()) {
            *n -= 1;
            if *n == 0 {
                live.remove(&fd.as_raw());
            }
        }
    }
}

struct FdInner {
    table: Arc<FdTableState>,
    near: near::FileDescriptor,
    /// The table's generation when this handle was made.
    generation: u64,
    /// Whether dropping the last handle closes the fd (false for fds we merely borrow,
    /// such as the local process's stdin, stdout and stderr).
    owned: bool,
    /// Set once the fd has been closed or given away; then drop does nothing.
    released: AtomicBool,
}

impl Drop for FdInner {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // Closed (or queued) before the handle leaves the registry, so that `has_handle`
        // never misses the fd in between.
        if self.owned && !self.released.load(Ordering::Acquire) {
            if self.table.id() == crate::local_namespaces().fd_table {
                // The local table (no thread of this process unshares it: the library
                // refuses to): closed now, as std's `OwnedFd` would, so that nothing
                // waits for the next syscall here to see it closed (a pipe's reader
                // waiting for end of file).
                // SAFETY: this is the last handle of an owned fd of the local table, not
                // released: nothing else owns the number.
                drop(unsafe {
                    <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(self.near.as_raw())
                });
            } else {
                self.table.queue_close(self.near);
                self.table.schedule_flush();
            }
        }
        self.table.remove_handle(self.near);
    }
}

/// An owning handle to a file descriptor in one fd table, used through one task.
///
/// Several handles may refer to the same fd (through tasks sharing its table, see
/// [`FileDescriptor::for_task`]); the fd is closed when the last of them goes. Dropping
/// closes an fd of the local table at once; for another table it queues the close there,
/// sent soon by the close flusher (which the thread crate installs: see
/// [`set_close_flusher`]), or at the next syscall on that table, or by
/// [`Task::flush_closes`], whichever comes first.
/// [`FileDescriptor::close`] closes at once and reports errors.
///
/// # Examples
///
/// Handles come from the syscalls that make fds; each closes its fd when the last handle goes.
///
/// ```
/// # use rsyscall_handle::Task;
/// # async_io::block_on(async {
/// let task = Task::local();
/// let pipe = task.pipe().await?;
/// let copy = pipe.write.dup().await?;
/// // Dropping a handle queues the close; `close` closes at once and reports errors.
/// drop(pipe.write);
/// task.write_all_bytes(&copy, b"x").await?;
/// copy.close().await?;
/// assert_eq!(task.read_bytes(&pipe.read, 10).await?, b"x");
/// assert!(task.read_bytes(&pipe.read, 10).await?.is_empty(), "every write end is closed");
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct FileDescriptor {
    task: Task,
    inner: Arc<FdInner>,
}

impl fmt::Debug for FileDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FileDescriptor({}, pid {})",
            self.inner.near.as_raw(),
            self.task.pid().as_raw()
        )
    }
}

impl FileDescriptor {
    /// Takes ownership of `near` in `task`'s table: it is closed when the last handle goes.
    ///
    /// Crate-private: callers pass only fd numbers a syscall of this crate just returned in
    /// that table, which nothing else owns. (Every table matters, not just the local one:
    /// clone children run a syscall server in our address space, and closing or replacing
    /// the socket it reads would let requests from elsewhere run there.)
    pub(crate) fn owned(task: &Task, near: near::FileDescriptor) -> Self {
        Self::make(task, near, true)
    }

    /// Takes ownership of `near`, an fd number in `task`'s table that some raw syscall
    /// created (for example the pidfd written by `clone(CLONE_PIDFD)`).
    ///
    /// # Safety
    /// Nothing else may own `near`: it will be closed when the last handle goes.
    #[allow(unsafe_code)]
    pub unsafe fn from_raw(task: &Task, near: near::FileDescriptor) -> Self {
        Self::owned(task, near)
    }

    /// A handle to `near` in `task`'s table that never closes it (for fds the program
    /// does not own but may use and replace, such as stdin, stdout and stderr).
    ///
    /// To use a local fd that other code owns (a `File`, a socket) without this promise,
    /// duplicate it instead: `FileDescriptor::from_owned_fd(task,
    /// file.as_fd().try_clone_to_owned()?)` gives an owned handle to a copy, which no
    /// method here can use to close or replace the original.
    ///
    /// # Safety
    /// For as long as the returned handle or any handle made from it exists (clones,
    /// [`for_task`](Self::for_task), [`inherit`](Self::inherit)...), `near` must stay open
    /// in `task`'s table, and nothing else may rely on which file it refers to: every method
    /// of [`FileDescriptor`] and [`Task`] may use it except to close it, including replacing
    /// it (`dup2`/`dup3` onto it) and changing its flags. So it must not be owned by other
    /// code (in the local table: a `File`, an `OwnedFd`, a socket of the async runtime) nor
    /// be one of the fds this library relies on in a thread's table (its syscall socket:
    /// replaced, it would let the server, which runs in this address space, take requests
    /// from elsewhere). The local process's stdin, stdout and stderr qualify: std keeps
    /// them open for the life of the program and treats replacing them as sound.
    #[allow(unsafe_code)]
    pub unsafe fn borrowed(task: &Task, near: near::FileDescriptor) -> Self {
        Self::make(task, near, false)
    }

    fn make(task: &Task, near: near::FileDescriptor, owned: bool) -> Self {
        let table = task.fd_table();
        table.add_handle(near);
        FileDescriptor {
            task: task.clone(),
            inner: Arc::new(FdInner {
                generation: table.generation.fetch_add(1, Ordering::AcqRel),
                table,
                near,
                owned,
                released: AtomicBool::new(false),
            }),
        }
    }

    /// Takes ownership of a local fd; `task` must use the local fd table.
    ///
    /// # Errors
    /// [`Error::Mismatch`](crate::Error::Mismatch) if `task` uses another table (the fd is
    /// then closed, as dropping an `OwnedFd` does).
    pub fn from_owned_fd(task: &Task, fd: std::os::fd::OwnedFd) -> Result<Self> {
        use std::os::fd::IntoRawFd;
        let local = crate::local::local_namespaces().fd_table;
        let far_fd = far::FileDescriptor {
            table: local,
            near: near::FileDescriptor::new(std::os::fd::AsRawFd::as_raw_fd(&fd)),
        };
        task.check_fd_far(&far_fd)?;
        let n = fd.into_raw_fd();
        Ok(Self::owned(task, near::FileDescriptor::new(n)))
    }

    /// Gives up this last handle to a local fd as an `OwnedFd`.
    ///
    /// # Errors
    /// Gives the handle back if it is not in the local table, is borrowed, or other handles
    /// to the fd exist.
    #[allow(unsafe_code)]
    pub fn into_owned_fd(self) -> std::result::Result<std::os::fd::OwnedFd, Self> {
        use std::os::fd::FromRawFd;
        let local = crate::local::local_namespaces().fd_table;
        if self.inner.table.id() != local
            || !self.inner.owned
            || Arc::strong_count(&self.inner) != 1
        {
            return Err(self);
        }
        self.inner.released.store(true, Ordering::Release);
        // SAFETY: this was the only handle to an owned fd of the local table, and marking
        // it released means nothing else will close it: ownership moves to the OwnedFd.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(self.inner.near.as_raw()) })
    }

    /// The fd as a `BorrowedFd` of this process, if it is in the local table (for passing
    /// to std and other libraries); `None` for fds of other tables.
    #[allow(unsafe_code)]
    pub fn as_local_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        if self.inner.table.id() != crate::local::local_namespaces().fd_table {
            return None;
        }
        // SAFETY: the fd is in our table and stays open at least as long as this handle,
        // which the returned borrow cannot outlive.
        Some(unsafe { std::os::fd::BorrowedFd::borrow_raw(self.inner.near.as_raw()) })
    }

    /// The near fd number.
    pub fn near(&self) -> near::FileDescriptor {
        self.inner.near
    }

    /// The far fd (number and table).
    pub fn far(&self) -> far::FileDescriptor {
        far::FileDescriptor {
            table: self.inner.table.id(),
            near: self.inner.near,
        }
    }

    /// The task this handle is used through.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Another handle to the same fd, used through `task`, which must share the table.
    ///
    /// # Errors
    /// [`Error::Mismatch`](crate::Error::Mismatch) if `task` uses another table.
    pub fn for_task(&self, task: &Task) -> Result<Self> {
        task.check_fd(self)?;
        Ok(FileDescriptor {
            task: task.clone(),
            inner: self.inner.clone(),
        })
    }

    /// Moves this handle to `task`, which must share the fd's table: the same fd, used
    /// through the other task from now on (no syscall is made).
    ///
    /// # Errors
    /// [`Error::Mismatch`](crate::Error::Mismatch) if `task` uses another table; the handle
    /// is dropped then (its fd closed if it was the last).
    pub fn move_to(self, task: &Task) -> Result<Self> {
        task.check_fd(&self)?;
        Ok(FileDescriptor {
            task: task.clone(),
            inner: self.inner,
        })
    }

    /// Whether this is the only handle to its fd (so closing it closes the fd).
    pub fn is_last_handle(&self) -> bool {
        Arc::strong_count(&self.inner) == 1
    }

    /// The number of the copy of this fd in `child`'s table, which `child` inherited when
    /// it was created without sharing this table (checked as [`FileDescriptor::inherit`]
    /// does, but making no handle: a number alone owns nothing).
    ///
    /// # Errors
    /// As [`FileDescriptor::inherit`], except that an earlier `inherit` is no error.
    pub fn inherited_number(&self, child: &Task) -> Result<near::FileDescriptor> {
        if child.fd_table().id() == self.inner.table.id() {
            return Err(crate::Error::invalid(
                "FileDescriptor::inherit",
                "the task shares this fd's table; use for_task",
            ));
        }
        match child.inherited_from() {
            Some((table, generation)) if table == self.inner.table.id() => {
                if self.inner.generation >= generation {
                    return Err(crate::Error::invalid(
                        "FileDescriptor::inherit",
                        format!(
                            "fd {} was made after the child's fd table was copied, so the \
                             child has no copy of it; send it to the child over a connection",
                            self.inner.near.as_raw()
                        ),
                    ));
                }
            }
            _ => {
                return Err(crate::Error::invalid(
                    "FileDescriptor::inherit",
                    format!(
                        "the task's fd table was not copied from {:?}",
                        self.inner.table.id()
                    ),
                ));
            }
        }
        Ok(self.inner.near)
    }

    /// A handle to the copy of this fd in `child`'s table, which `child` inherited when it
    /// was created without sharing this table. The copy is owned separately.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if `child` shares this fd's table (use
    /// [`FileDescriptor::for_task`]), was not created from this fd's table, or the copy
    /// already has a handle from an earlier `inherit` (clone that handle instead).
    pub fn inherit(&self, child: &Task) -> Result<Self> {
        self.inherited_number(child)?;
        // The copy has one owner: a second handle made here would close it a second time,
        // perhaps after its number was reused for another fd of the child's.
        if self.inner.owned && !child.fd_table().claim_inherited(self.inner.near) {
            return Err(crate::Error::invalid(
                "FileDescriptor::inherit",
                format!(
                    "fd {} was already inherited into this table; clone the handle that \
                     inherit returned then",
                    self.inner.near.as_raw()
                ),
            ));
        }
        Ok(Self::make(child, self.inner.near, self.inner.owned))
    }

    /// Closes the fd now if this is its last handle; otherwise just drops this handle.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let pipe = task.pipe().await?;
    /// let other = pipe.read.clone();
    /// assert!(!pipe.read.is_last_handle());
    /// other.close().await?; // not the last handle: the fd stays open
    /// assert!(pipe.read.is_last_handle());
    /// task.write_all_bytes(&pipe.write, b"still open").await?;
    /// assert_eq!(task.read_bytes(&pipe.read, 100).await?, b"still open");
    /// pipe.read.close().await?; // the last handle: closed now
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The close syscall's errors (the fd is forgotten either way).
    pub async fn close(self) -> Result<()> {
        let FileDescriptor { task, inner } = self;
        match Arc::try_unwrap(inner) {
            Ok(inner) => {
                if !inner.owned {
                    return Ok(());
                }
                inner.released.store(true, Ordering::Release);
                task.close_near(inner.near).await
            }
            Err(_) => Ok(()),
        }
    }

    /// Forgets the fd without closing it (for fds consumed by the kernel or another owner,
    /// such as an fd that `exec` closed through close-on-exec).
    pub fn leak(self) {
        self.inner.released.store(true, Ordering::Release);
    }
}

/// Gives up the last handle to an owned local fd, as [`FileDescriptor::into_owned_fd`].
///
/// # Examples
///
/// ```
/// # use std::os::fd::OwnedFd;
/// # use rsyscall_handle::Task;
/// # async_io::block_on(async {
/// let pipe = Task::local().pipe().await?;
/// let write: OwnedFd = OwnedFd::try_from(pipe.write).expect("the only handle, local");
/// std::fs::File::from(write).sync_all().ok(); // std owns it now
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
impl TryFrom<FileDescriptor> for OwnedFd {
    /// The handle, given back: of another table, borrowed, or not the last handle.
    type Error = FileDescriptor;
    fn try_from(fd: FileDescriptor) -> std::result::Result<OwnedFd, FileDescriptor> {
        fd.into_owned_fd()
    }
}

/// Takes ownership of a local fd as a handle of the local task ([`Task::local`]), which
/// always uses the local table: the infallible form of [`FileDescriptor::from_owned_fd`].
impl From<OwnedFd> for FileDescriptor {
    fn from(fd: OwnedFd) -> FileDescriptor {
        FileDescriptor::owned(&Task::local(), near::FileDescriptor::new(fd.into_raw_fd()))
    }
}

/// A [`FileDescriptor`] checked to be of the local fd table (its task may be any task
/// using that table: the local task, a clone child sharing the table), so that the fd
/// number means the same file to this process: it implements [`AsFd`] and [`AsRawFd`] and
/// dereferences to the [`FileDescriptor`] for every other method.
///
/// # Examples
///
/// ```
/// # use std::io::{Read, Write};
/// # use std::os::fd::AsFd;
/// # use rsyscall_handle::{LocalFileDescriptor, Task};
/// # async_io::block_on(async {
/// let task = Task::local();
/// let pipe = task.pipe().await?;
/// let read = LocalFileDescriptor::new(pipe.read).expect("a local fd");
/// task.write_all_bytes(&pipe.write, b"hi").await?;
/// // A std type over a copy of the fd, through AsFd.
/// let mut file = std::fs::File::from(read.as_fd().try_clone_to_owned()?);
/// let mut got = [0; 2];
/// file.read_exact(&mut got)?;
/// assert_eq!(&got, b"hi");
/// // and the handle's own methods through Deref.
/// task.write_all_bytes(&pipe.write, b"yo").await?;
/// assert_eq!(task.read_bytes(&read, 10).await?, b"yo");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct LocalFileDescriptor(FileDescriptor);

impl LocalFileDescriptor {
    /// `fd` if it is of the local table.
    ///
    /// # Errors
    /// Gives `fd` back if it is of another table.
    pub fn new(fd: FileDescriptor) -> std::result::Result<Self, FileDescriptor> {
        if fd.inner.table.id() != crate::local::local_namespaces().fd_table {
            return Err(fd);
        }
        Ok(LocalFileDescriptor(fd))
    }

    /// The handle.
    pub fn handle(&self) -> &FileDescriptor {
        &self.0
    }

    /// The handle, given up.
    pub fn into_handle(self) -> FileDescriptor {
        self.0
    }
}

impl std::ops::Deref for LocalFileDescriptor {
    type Target = FileDescriptor;
    fn deref(&self) -> &FileDescriptor {
        &self.0
    }
}

impl TryFrom<FileDescriptor> for LocalFileDescriptor {
    /// The handle, given back: it is of another table.
    type Error = FileDescriptor;
    fn try_from(fd: FileDescriptor) -> std::result::Result<Self, FileDescriptor> {
        LocalFileDescriptor::new(fd)
    }
}

impl From<LocalFileDescriptor> for FileDescriptor {
    fn from(fd: LocalFileDescriptor) -> FileDescriptor {
        fd.0
    }
}

impl From<OwnedFd> for LocalFileDescriptor {
    fn from(fd: OwnedFd) -> LocalFileDescriptor {
        LocalFileDescriptor(FileDescriptor::from(fd))
    }
}

impl TryFrom<LocalFileDescriptor> for OwnedFd {
    /// The handle, given back: borrowed, or not the last handle.
    type Error = LocalFileDescriptor;
    fn try_from(fd: LocalFileDescriptor) -> std::result::Result<OwnedFd, LocalFileDescriptor> {
        fd.0.into_owned_fd().map_err(LocalFileDescriptor)
    }
}

impl AsFd for LocalFileDescriptor {
    #[allow(unsafe_code)]
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `new` checked that the fd is of our table (a handle's table never
        // changes), and it stays open at least as long as this handle (an owned handle
        // closes it only when the last handle goes; a borrowed one never does, and its
        // maker promised it stays open), which the returned borrow cannot outlive.
        unsafe { BorrowedFd::borrow_raw(self.0.inner.near.as_raw()) }
    }
}

impl AsRawFd for LocalFileDescriptor {
    fn as_raw_fd(&self) -> RawFd {
        self.0.inner.near.as_raw()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn owned_fds_round_trip_and_local_handles_lend_to_std() {
        async_io::block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            let raw = a.as_raw_fd();
            // OwnedFd -> FileDescriptor -> OwnedFd keeps the same open fd.
            let handle = FileDescriptor::from(OwnedFd::from(a));
            assert_eq!(handle.near().as_raw(), raw);
            let copy = handle.clone();
            // Not the last handle: given back.
            let handle = OwnedFd::try_from(handle).unwrap_err();
            drop(copy);
            let owned = OwnedFd::try_from(handle).unwrap();
            assert_eq!(owned.as_raw_fd(), raw);
            let mut a = UnixStream::from(owned);
            // The handle's release means nothing else closes it: it still works.
            Task::local().flush_closes().await.unwrap();
            a.write_all(b"one").unwrap();

            // A local handle lends its fd to std through AsFd.
            let local = LocalFileDescriptor::from(OwnedFd::from(b));
            assert_eq!(local.as_raw_fd(), local.near().as_raw());
            let mut got = [0; 3];
            UnixStream::from(local.as_fd().try_clone_to_owned().unwrap())
                .read_exact(&mut got)
                .unwrap();
            assert_eq!(&got, b"one");
            // and is still a FileDescriptor for the library's own calls.
            a.write_all(b"two").unwrap();
            assert_eq!(Task::local().read_bytes(&local, 3).await.unwrap(), b"two");
            let back = OwnedFd::try_from(local).unwrap();
            drop(back);
        });
    }
}
