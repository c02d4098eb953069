//! `Task`: a process we can run syscalls in, with its fd table state and memory. The
//! syscall methods live in one submodule per area.
//!
//! # Safety
//! The near wrappers called from this module and its children are unsafe where the kernel
//! writes memory or closes fds. Each call discharges that duty the same way: memory the
//! kernel touches is an allocation of the task's own address space (checked with
//! [`Task::check_ptr`]) held in an [`InFlight`] guard until the syscall completed, and fds
//! closed or replaced are held by owning handles whose last reference is being released
//! or that the caller passed in.
//!
//! Those arguments rely on what a task claims about itself (its interface runs real
//! syscalls in a process with these namespaces, its allocator serves that address space),
//! so [`Task::new`] is `unsafe` and states those claims as its caller's duty.
#![allow(unsafe_code)]

mod events;
mod fd;
mod fs;
mod identity;
mod mem;
mod ns;
mod process;
mod socket;

use std::ffi::CStr;
use std::fmt;
use std::sync::{Arc, OnceLock};

use rsyscall_far as far;
use rsyscall_near::{self as near, Address, SyscallError};

pub use fd::Pipe;
pub use mem::MemoryMapping;

use crate::error::{Error, Result};
use crate::fd::{FdTableState, FileDescriptor};
use crate::local::local_namespaces;
use crate::memory::{Allocation, InFlight, Memory};
use crate::pointer::{Pointer, WrittenPointer};
use crate::structs::{FixedSize, Pod, Struct};

/// A task's fd table, and the table it was copied from with that table's generation then.
type TableState = (Arc<FdTableState>, Option<(far::FdTable, u64)>);

/// A [`Task`] that is not kept alive by this reference (an fd table's record of its users).
pub(crate) struct WeakTask(std::sync::Weak<TaskInner>);

impl WeakTask {
    /// The task, if it still exists.
    pub(crate) fn upgrade(&self) -> Option<Task> {
        self.0.upgrade().map(|inner| Task { inner })
    }

    /// Whether the task still exists.
    pub(crate) fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

struct TaskInner {
    sysif: Arc<dyn near::SyscallInterface>,
    pid: near::Pid,
    /// Changed by `unshare`, `setns` and `unshare_files`.
    ns: std::sync::Mutex<far::Namespaces>,
    /// The pid namespace the task's next children are created in, once `unshare(NEWPID)`
    /// or `setns` into a pid namespace made it differ from the task's own.
    pidns_for_children: std::sync::Mutex<Option<far::PidNamespace>>,
    /// The fd table and where it was copied from; changed by `unshare_files`.
    table: std::sync::Mutex<TableState>,
    memory: Arc<Memory>,
}

/// A process we can run syscalls in: every supported syscall is a method here (or on
/// [`FileDescriptor`]), and works the same on the local process and on any remote one.
///
/// Cheap to clone (a reference-counted handle).
///
/// # Examples
///
/// Syscalls in the local process; the same calls work on the task of any other thread.
///
/// ```
/// # use rsyscall_handle::Task;
/// # async_io::block_on(async {
/// let task = Task::local();
/// assert_eq!(task.getpid().await?.as_raw() as u32, std::process::id());
///
/// let pipe = task.pipe().await?;
/// task.write_all_bytes(&pipe.write, b"hello").await?;
/// assert_eq!(task.read_bytes(&pipe.read, 5).await?, b"hello");
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Task {
    inner: Arc<TaskInner>,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task(pid {})", self.pid().as_raw())
    }
}

impl Task {
    /// The local process, running syscalls through [`near::LocalSyscall`].
    pub fn local() -> Task {
        static LOCAL: OnceLock<Task> = OnceLock::new();
        LOCAL
            .get_or_init(|| {
                let ns = local_namespaces();
                let pid = near::Pid::new(std::process::id() as i32);
                // SAFETY: `LocalSyscall` runs every syscall in this process, whose
                // namespaces `local_namespaces` are and whose address space
                // `Memory::local` serves; the table state is made for its fd table here,
                // once, and shared by every handle of the local task.
                unsafe {
                    Task::new(
                        Arc::new(near::LocalSyscall),
                        pid,
                        ns,
                        FdTableState::new(ns.fd_table),
                        Memory::local().clone(),
                        None,
                    )
                }
            })
            .clone()
    }

    /// A task running syscalls through `sysif`, with pid `pid` (in its own pid namespace),
    /// namespaces `ns`, the shared state of its fd table and the allocator of its address
    /// space. `inherited_from` names the table its own table was copied from, if any, with
    /// that table's [`FdTableState::generation`] taken just before the copy.
    ///
    /// The library makes tasks itself ([`Task::local`], and the thread layer's `clone`);
    /// this is for code that reaches a process some other way.
    ///
    /// # Safety
    /// Every claim made here is trusted by the unsafe code behind the safe methods:
    /// - `sysif` runs each request as that syscall in one process, and returns what the
    ///   kernel returned: an `mmap` answer names a fresh mapping, a returned fd number a
    ///   fresh fd, a byte count what was transferred. It says
    ///   [`is_local`](near::SyscallInterface::is_local) only if it runs syscalls
    ///   synchronously in the calling thread of this process.
    /// - `ns` are that process's namespaces, as they are now: in particular its
    ///   `fd_table` is the local process's ([`local_namespaces`]) only if it uses this
    ///   process's fd table, and `address_space` the local one only if it shares this
    ///   process's memory. `pid` is its pid in its own pid namespace.
    /// - `fd_table` is the state of `ns.fd_table` (its [`FdTableState::id`] is that
    ///   table), shared by every task using that table.
    /// - `memory` serves `ns.address_space` (see [`Memory::new`]).
    /// - `inherited_from`, if given, is true: the task's table was copied from that table
    ///   when its generation was at most the number given, so every fd of that table
    ///   whose handle is older has a copy under the same number that nothing else owns.
    pub unsafe fn new(
        sysif: Arc<dyn near::SyscallInterface>,
        pid: near::Pid,
        ns: far::Namespaces,
        fd_table: Arc<FdTableState>,
        memory: Arc<Memory>,
        inherited_from: Option<(far::FdTable, u64)>,
    ) -> Task {
        let task = Task {
            inner: Arc::new(TaskInner {
                sysif,
                pid,
                ns: std::sync::Mutex::new(ns),
                pidns_for_children: std::sync::Mutex::new(None),
                table: std::sync::Mutex::new((fd_table.clone(), inherited_from)),
                memory,
            }),
        };
        fd_table.add_user(&task);
        task
    }

    /// A reference to this task that does not keep it alive.
    pub(crate) fn downgrade(&self) -> WeakTask {
        WeakTask(Arc::downgrade(&self.inner))
    }

    /// The far task: this task's interface, pid and namespaces as they are now.
    pub fn far(&self) -> far::Task {
        // SAFETY: the interface, pid and namespaces are this task's, as promised to
        // `Task::new` (and kept up to date by `unshare` and `setns`).
        unsafe { far::Task::new(self.inner.sysif.clone(), self.inner.pid, self.namespaces()) }
    }

    /// The pid, in the task's own pid namespace.
    pub fn pid(&self) -> near::Pid {
        self.inner.pid
    }

    /// The task's namespaces, as they are now.
    pub fn namespaces(&self) -> far::Namespaces {
        *self.inner.ns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pid namespace children the task creates from now on are in, if it is not the
    /// task's own: after `unshare(CLONE::NEWPID)` or a `setns` into a pid namespace, which
    /// move the task's future children, not the task. A fresh identity each time (see
    /// [`Task::setns`]).
    pub fn pidns_for_children(&self) -> Option<far::PidNamespace> {
        *self
            .inner
            .pidns_for_children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the task's future children go to a new pid namespace.
    pub(crate) fn set_pidns_for_children(&self, ns: far::PidNamespace) {
        *self
            .inner
            .pidns_for_children
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(ns);
    }

    /// Records that the task moved to other namespaces (after `unshare` or `setns`).
    pub(crate) fn update_namespaces(&self, f: impl FnOnce(&mut far::Namespaces)) {
        f(&mut self.inner.ns.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The syscall interface.
    pub fn sysif(&self) -> &dyn near::SyscallInterface {
        &*self.inner.sysif
    }

    /// The shared syscall interface.
    pub fn sysif_arc(&self) -> &Arc<dyn near::SyscallInterface> {
        &self.inner.sysif
    }

    /// The shared state of the fd table the task uses now.
    pub fn fd_table(&self) -> Arc<FdTableState> {
        self.inner
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The table this task's table was copied from (when it was created, or by
    /// `unshare_files`), and that table's generation at the time, if any.
    pub fn inherited_from(&self) -> Option<(far::FdTable, u64)> {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Stops [`FileDescriptor::inherit`] into this task: after fds of a copied table were
    /// closed by number (as the thread crate's `Thread::do_cloexec_except` does), a handle
    /// of the original table no longer proves that the copy still holds its fd.
    pub fn forget_inherited_from(&self) {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner()).1 = None;
    }

    /// Records that the task now uses a fresh copy of its fd table (after
    /// `unshare(CLONE_FILES)`); fds whose handles existed before are inherited into it.
    pub(crate) fn replace_fd_table(
        &self,
        new: Arc<FdTableState>,
        copied_from: (far::FdTable, u64),
    ) {
        let mut t = self.inner.table.lock().unwrap_or_else(|e| e.into_inner());
        *t = (new.clone(), Some(copied_from));
        drop(t);
        self.update_namespaces(|ns| ns.fd_table = new.id());
        new.add_user(self);
    }

    /// The allocator of the task's address space.
    pub fn memory(&self) -> &Arc<Memory> {
        &self.inner.memory
    }

    /// Maps a syscall error to [`Error::Syscall`] naming `syscall` and this task.
    pub fn error(&self, syscall: &'static str) -> impl Fn(SyscallError) -> Error + '_ {
        move |source| {
            log::trace!("pid {}: {syscall} failed: {source}", self.pid().as_raw());
            Error::Syscall {
                syscall,
                pid: self.pid().as_raw(),
                source,
            }
        }
    }

    /// The near fd of `fd`, if it belongs to this task's table.
    ///
    /// # Errors
    /// [`Error::Mismatch`] otherwise.
    pub fn check_fd(&self, fd: &FileDescriptor) -> Result<near::FileDescriptor> {
        self.check_fd_far(&fd.far())
    }

    /// The near fd of a far fd, if it belongs to this task's table.
    ///
    /// # Errors
    /// [`Error::Mismatch`] otherwise.
    pub fn check_fd_far(&self, fd: &far::FileDescriptor) -> Result<near::FileDescriptor> {
        Ok(self.namespaces().near_fd(self.pid(), fd)?)
    }

    /// The near address of `ptr`, if it is memory of this task's address space.
    ///
    /// # Errors
    /// [`Error::Mismatch`] otherwise.
    pub fn check_ptr<T: ?Sized + Struct>(&self, ptr: &Pointer<T>) -> Result<Address> {
        Ok(self.namespaces().near_address(self.pid(), &ptr.far())?)
    }

    /// Wraps a fresh fd number returned by a syscall in this task in an owning handle.
    pub(crate) fn own(&self, n: near::FileDescriptor) -> FileDescriptor {
        FileDescriptor::owned(self, n)
    }

    /// Performs the closes queued by dropped handles of this task's table, and waits for
    /// those another flush took (the close flusher's, or another task's) to be done: when
    /// it returns, every close queued before the call has run, or at least gone out on its
    /// connection. Before a syscall that copies the table or hands it to a program
    /// (`clone` without `CLONE_FILES`, `unshare(CLONE_FILES)`, `execve`), use
    /// [`Task::prepare_to_copy`], which does this.
    ///
    /// Another task sharing this table may have a close in flight behind a syscall of its
    /// own that blocks (a `read` of an empty pipe): this then waits for that syscall.
    ///
    /// # Errors
    /// The first close that failed (the others are still attempted). A lost connection is
    /// not an error: the table's fds went with the process.
    pub async fn flush_closes(&self) -> Result<()> {
        let table = self.fd_table();
        let mut first = Ok(());
        // A few rounds at most: a flush that was dropped, or could not send, puts its
        // closes back, and they are ours to send then; a task that cannot send leaves them
        // queued for one that can.
        for _ in 0..4 {
            let r = self.close_queued().await;
            if first.is_ok() {
                first = r;
            }
            table.closes_finished().await;
            if !table.has_pending() || !self.sysif().can_send_now() {
                break;
            }
        }
        first
    }

    /// Performs the closes queued on this table now, without waiting for those another
    /// flush has in flight (see [`Task::flush_closes`]).
    pub(crate) async fn close_queued(&self) -> Result<()> {
        let mut first = Ok(());
        let table = self.fd_table();
        let pairs = table.take_unread_pairs();
        if !pairs.is_empty() {
            read_unread_pairs(&table, pairs).await;
        }
        // If this future is dropped, the closes not sent yet go back to the queue (the one
        // in flight is never retried: once it ran, its number may name a new fd).
        let mut queue = Requeue {
            fds: table.take_pending(),
            sending: None,
            table: table.clone(),
        };
        while let Some(fd) = queue.fds.pop() {
            queue.sending = Some(fd);
            // SAFETY: the fd was owned by a handle of this table that has been dropped, so
            // nothing else owns it.
            let r = unsafe { near::close(self.sysif(), fd) }.await;
            queue.sending = None;
            if let Err(SyscallError::NotSent(_)) = r {
                // Never sent, so never run: the fd is still open, and another task of the
                // table (or this one, reconnected) closes it later.
                table.requeue(&[fd]);
                continue;
            }
            table.close_done(fd);
            match r {
                Ok(()) | Err(SyscallError::Hangup) => {}
                Err(e) => {
                    if first.is_ok() {
                        first = Err(self.error("close")(e));
                    }
                }
            }
        }
        first
    }

    /// Performs the closes queued on this task's fd table and the unmaps queued on its
    /// address space, as every syscall method here does first. For code that makes raw
    /// syscalls through [`Task::sysif`]. A failure there is logged, not reported to an
    /// unrelated caller. It does not wait for closes another flush has in flight: no
    /// ordinary syscall depends on them.
    pub async fn prepare(&self) {
        if let Err(e) = self.close_queued().await {
            log::debug!("queued close failed: {e}");
        }
        self.memory().reclaim().await;
    }

    /// [`Task::prepare`], waiting as [`Task::flush_closes`] does for every close queued
    /// before: for code that then copies the fd table or hands it to a program (`clone`
    /// without `CLONE_FILES`, `unshare(CLONE_FILES)`, `execve`), which must not pass on an
    /// fd whose handle is gone.
    pub async fn prepare_to_copy(&self) {
        if let Err(e) = self.flush_closes().await {
            log::debug!("queued close failed: {e}");
        }
        self.memory().reclaim().await;
    }

    pub(crate) async fn close_near(&self, fd: near::FileDescriptor) -> Result<()> {
        // SAFETY: called only by the last handle of an owned fd, which has marked itself
        // released.
        unsafe { near::close(self.sysif(), fd) }
            .await
            .map_err(self.error("close"))
    }

    /// Allocates `size` raw bytes aligned to `align` in the task's address space.
    ///
    /// # Examples
    ///
    /// Raw bytes, for code that does its own serialization:
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let mem = task.alloc(64, 16).await?;
    /// assert_eq!(mem.len(), 64);
    /// assert_eq!(mem.addr().as_u64() % 16, 0);
    /// mem.write(8, b"abc").await?;
    /// assert_eq!(mem.read(8, 3).await?, b"abc");
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// See [`Memory::malloc`].
    pub async fn alloc(&self, size: usize, align: usize) -> Result<Allocation> {
        self.inner.memory.malloc(size, align).await
    }

    /// Allocates room for one `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let ptr = task.malloc::<u64>().await?;
    /// assert_eq!(ptr.size(), 8);
    /// let written = ptr.write(&0x1234_5678).await?;
    /// assert_eq!(written.read().await?, 0x1234_5678);
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// See [`Memory::malloc`].
    pub async fn malloc<T: FixedSize>(&self) -> Result<Pointer<T>> {
        let a = self
            .alloc(T::SIZE, T::ALIGN.min(crate::memory::PAGE_SIZE))
            .await?;
        Ok(Pointer::from_allocation(a))
    }

    /// Allocates `n` bytes.
    ///
    /// # Examples
    ///
    /// A buffer for a syscall to fill:
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let pipe = task.pipe().await?;
    /// task.write_all_bytes(&pipe.write, b"abc").await?;
    /// let buf = task.malloc_bytes(16).await?;
    /// let (data, rest) = pipe.read.read(buf).await?;
    /// assert_eq!(data.read().await?, b"abc");
    /// assert_eq!(rest.size(), 13);
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// See [`Memory::malloc`].
    pub async fn malloc_bytes(&self, n: usize) -> Result<Pointer<[u8]>> {
        Ok(Pointer::from_allocation(self.alloc(n, 8).await?))
    }

    /// Allocates room for `n` values of `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let array = task.malloc_array::<u32>(4).await?;
    /// assert_eq!(array.size(), 16);
    /// let array = array.write(&[1, 2, 3, 4][..]).await?;
    /// assert_eq!(array.read().await?, vec![1, 2, 3, 4]);
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the size overflows; see [`Memory::malloc`].
    pub async fn malloc_array<T: Pod>(&self, n: usize) -> Result<Pointer<[T]>> {
        let size = n
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::invalid("malloc_array", format!("{n} elements overflow")))?;
        let align = std::mem::align_of::<T>().min(crate::memory::PAGE_SIZE);
        Ok(Pointer::from_allocation(self.alloc(size, align).await?))
    }

    /// Allocates memory for `value` and writes it there.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let ptr = task.ptr(&[7u8, 8, 9][..]).await?;
    /// assert_eq!(ptr.size(), 3);
    /// assert_eq!(ptr.read().await?, vec![7, 8, 9]);
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// See [`Memory::malloc`] and [`Pointer::write`].
    pub async fn ptr<T: ?Sized + Struct>(&self, value: &T) -> Result<WrittenPointer<T>> {
        let bytes = value.to_bytes();
        let a = self.alloc(bytes.len(), 16).await?;
        Pointer::<T>::from_allocation(a).write_bytes(&bytes).await
    }

    /// Writes `path` (any bytes without NUL) as a NUL-terminated string.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `what` if `path` contains a NUL byte.
    pub async fn ptr_cstr(&self, what: &'static str, path: &[u8]) -> Result<WrittenPointer<CStr>> {
        if path.contains(&0) {
            return Err(Error::invalid(
                what,
                format!("{:?} contains a NUL byte", String::from_utf8_lossy(path)),
            ));
        }
        let mut bytes = Vec::with_capacity(path.len() + 1);
        bytes.extend_from_slice(path);
        bytes.push(0);
        let a = self.alloc(bytes.len(), 16).await?;
        Pointer::<CStr>::from_allocation(a)
            .write_bytes(&bytes)
            .await
    }

    /// Reads `len` bytes at a far pointer, after checking that they lie inside one live
    /// allocation of this task's address space (for inspecting memory by address, when
    /// only the address was kept).
    ///
    /// # Errors
    /// [`Error::Mismatch`] for another address space, [`Error::UseAfterFree`] if the
    /// allocation was freed; the transport's errors.
    pub async fn read_memory(&self, ptr: far::Pointer, len: usize) -> Result<Vec<u8>> {
        let addr = self.namespaces().near_address(self.pid(), &ptr)?;
        self.inner.memory.validate(ptr, len)?;
        // SAFETY: the range lies inside a live allocation of this address space; reading it
        // disturbs nothing (a concurrent writer can only make the bytes stale).
        unsafe { self.inner.memory.transport().read(addr, len) }
            .await
            .map_err(self.error("memory read"))
    }

    /// Lends `p` to a syscall of this task: see [`InFlight`] (dropped before the syscall
    /// is over, it is freed only once the task's interface has answered every request
    /// sent so far).
    pub fn lend<P: Send + 'static>(&self, p: P) -> InFlight<P> {
        InFlight::lent_to(p, self.inner.sysif.clone())
    }

    /// Runs the syscall `call` after the queued closes and unmaps ([`Task::prepare`]),
    /// lending `held` (the memory whose addresses `call` was built with) until it
    /// completed; returns its value and `held`, or its error naming `what`.
    ///
    /// `call` is a future and does nothing until awaited here, after `held` is lent: the
    /// caller builds the near call inline, with the safety argument for its addresses.
    async fn lent<P: Send + 'static, T>(
        &self,
        what: &'static str,
        held: P,
        call: impl Future<Output = std::result::Result<T, SyscallError>>,
    ) -> Result<(T, P)> {
        self.lent_mapped(held, call, self.error(what)).await
    }

    /// [`Task::lent`] with the syscall's error mapped by `map`.
    async fn lent_mapped<P: Send + 'static, T>(
        &self,
        held: P,
        call: impl Future<Output = std::result::Result<T, SyscallError>>,
        map: impl Fn(SyscallError) -> Error,
    ) -> Result<(T, P)> {
        self.prepare().await;
        let held = self.lend(held);
        let r = call.await;
        held.settle(r).map_err(map)
    }

    /// Runs the syscall `call`, which touches no memory and makes a new fd, after the
    /// queued closes and unmaps; owns the fd.
    async fn new_fd(
        &self,
        what: &'static str,
        call: impl Future<Output = std::result::Result<near::FileDescriptor, SyscallError>>,
    ) -> Result<FileDescriptor> {
        self.prepare().await;
        let fd = call.await.map_err(self.error(what))?;
        Ok(self.own(fd))
    }

    /// [`Task::ptr`], with the address of the written value.
    async fn ptr_at<T: ?Sized + Struct>(&self, value: &T) -> Result<(WrittenPointer<T>, Address)> {
        let ptr = self.ptr(value).await?;
        let addr = self.check_ptr(ptr.pointer())?;
        Ok((ptr, addr))
    }

    /// [`Task::malloc`], with the address of the room for a `T`.
    async fn out<T: FixedSize>(&self) -> Result<(Pointer<T>, Address)> {
        let ptr = self.malloc::<T>().await?;
        let addr = self.check_ptr(&ptr)?;
        Ok((ptr, addr))
    }

    /// Runs a syscall taking a new value (`NULL` for `None`: no change) and room for the
    /// old one, both in one allocation; `call` gets their two addresses. Returns the old
    /// value.
    async fn new_old<T, Fut>(
        &self,
        what: &'static str,
        new: Option<T>,
        call: impl FnOnce(Address, Address) -> Fut,
    ) -> Result<T>
    where
        T: Pod + Default,
        Fut: Future<Output = std::result::Result<(), SyscallError>>,
    {
        let (buf, base) = self
            .ptr_at(&[new.unwrap_or_default(), T::default()])
            .await?;
        // The second value of a live allocation: the sum cannot wrap.
        let old = Address::new(base.as_u64() + std::mem::size_of::<T>() as u64);
        let new = if new.is_some() { base } else { Address::NULL };
        let ((), buf) = self.lent(what, buf, call(new, old)).await?;
        let [_, old] = buf.into_readable().read().await?;
        Ok(old)
    }
}

/// Closes taken from a table's queue and not yet sent, queued again when dropped.
struct Requeue {
    table: Arc<FdTableState>,
    /// Taken and not sent yet.
    fds: Vec<near::FileDescriptor>,
    /// The close whose request may have gone out.
    sending: Option<near::FileDescriptor>,
}

/// Reads the fds of the pairs made by dropped syscalls in memory only a read can reach
/// (see [`FdTableState::queue_unread_pair`]), and queues their closes on `table`.
async fn read_unread_pairs(table: &Arc<FdTableState>, pairs: Vec<Pointer<[i32; 2]>>) {
    // Dropped before reading them all, the rest go back to the table's queue.
    let mut pairs = UnreadPairs {
        pairs,
        table: table.clone(),
    };
    while let Some(pair) = pairs.pairs.last() {
        let read = fd::read_fd_pair(pair).await;
        pairs.pairs.pop();
        match read {
            Ok(pair) => table.queue_close_pair(pair),
            Err(e) => {
                log::debug!("cannot read the fds of a dropped pipe2/socketpair ({e}): left open")
            }
        }
        table.pair_read_done();
    }
}

/// The unread pairs a flush took: put back in the table's queue if it is dropped before
/// reading them.
struct UnreadPairs {
    table: Arc<FdTableState>,
    pairs: Vec<Pointer<[i32; 2]>>,
}

impl Drop for UnreadPairs {
    fn drop(&mut self) {
        if self.pairs.is_empty() {
            return;
        }
        for pair in self.pairs.drain(..) {
            self.table.queue_unread_pair(pair);
            self.table.pair_read_done();
        }
        self.table.schedule_flush();
    }
}

impl Drop for Requeue {
    fn drop(&mut self) {
        if let Some(fd) = self.sending.take() {
            self.table.close_done(fd);
        }
        if self.fds.is_empty() {
            return;
        }
        self.table.requeue(&self.fds);
        self.fds.clear();
        self.table.schedule_flush();
    }
}

/// Reads the whole `T` a syscall filled at `ptr`.
async fn read_out<T: FixedSize>(ptr: Pointer<T>) -> Result<T::Owned> {
    let size = ptr.size();
    ptr.filled(size)?.0.read().await
}

impl FileDescriptor {
    /// Runs the syscall `call` on this fd through its task, after the queued closes and
    /// unmaps; `call` gets the syscall interface and the near fd, and touches no memory.
    async fn call<'a, T, Fut>(
        &'a self,
        what: &'static str,
        call: impl FnOnce(&'a dyn near::SyscallInterface, near::FileDescriptor) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, SyscallError>>,
    {
        let task = self.task();
        let fd = task.check_fd(self)?;
        task.prepare().await;
        call(task.sysif(), fd).await.map_err(task.error(what))
    }
}
