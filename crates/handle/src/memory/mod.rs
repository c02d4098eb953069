//! Memory in an address space: arenas over shared anonymous mappings, and allocations.
//!
//! An [`Allocation`] owns a range of one arena and gives it back when dropped (pure
//! bookkeeping). Arenas are `MAP_SHARED | MAP_ANONYMOUS`, so children cloned without
//! `CLONE_VM` still see them. The bytes are moved by the address space's [`Transport`].
//!
//! Page reclamation: when an allocation of at least [`RECLAIM_MIN`] bytes is freed, the
//! whole pages inside it are not put back on the free list but queued; the next `malloc`
//! (or [`Memory::reclaim`]) hands them to the kernel with `madvise(MADV_REMOVE)` and only then
//! frees them, so no allocation can land in pages while their contents are being discarded.
//!
//! # Safety
//! Unsafe code here issues mmap, madvise and munmap on arenas this module owns, and asks
//! the transport to copy into and out of allocations it handed out, whose ranges lie inside
//! arenas that are never unmapped while an allocation in them exists.
#![allow(unsafe_code)]

mod copy;
mod inflight;
mod transport;

pub use inflight::InFlight;
pub use transport::{BoxFuture, LocalTransport, Transport};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rsyscall_far as far;
use rsyscall_near::{self as near, Address, MADV, MAP, MemoryMapping, PROT};

use crate::error::{Error, Result};

/// Size of a fresh arena, unless an allocation needs more.
const ARENA_SIZE: usize = 1 << 20;
/// The page size.
pub const PAGE_SIZE: usize = 4096;
/// Allocations at least this large give their whole pages back to the kernel when freed.
pub const RECLAIM_MIN: usize = 64 * 1024;

struct Arena {
    id: u64,
    mapping: MemoryMapping,
    /// Free ranges: offset -> length, never adjacent (merged on free).
    free: BTreeMap<usize, usize>,
}

impl Arena {
    fn base(&self) -> u64 {
        self.mapping.addr.as_u64()
    }

    /// First fit: the lowest free range that can hold `size` bytes at `align`.
    fn take(&mut self, size: usize, align: usize) -> Option<usize> {
        let base = self.base() as usize;
        let (start, len, at) = self.free.iter().find_map(|(&start, &len)| {
            let addr = base + start;
            let aligned = addr.checked_add(align - 1)? & !(align - 1);
            let at = aligned - base;
            (at + size <= start + len).then_some((start, len, at))
        })?;
        self.free.remove(&start);
        if at > start {
            self.free.insert(start, at - start);
        }
        let end = at + size;
        if end < start + len {
            self.free.insert(end, start + len - end);
        }
        Some(at)
    }

    fn give_back(&mut self, mut offset: usize, mut len: usize) {
        if len == 0 {
            return;
        }
        if let Some((&prev, &prev_len)) = self.free.range(..offset).next_back()
            && prev + prev_len == offset
        {
            self.free.remove(&prev);
            offset = prev;
            len += prev_len;
        }
        if let Some(&next_len) = self.free.get(&(offset + len)) {
            self.free.remove(&(offset + len));
            len += next_len;
        }
        self.free.insert(offset, len);
    }
}

struct State {
    arenas: Vec<Arena>,
    /// Live allocations: start address -> length.
    live: BTreeMap<u64, usize>,
    /// Page ranges waiting for madvise before they may be reused: (arena id, offset, len).
    reclaim: Vec<(u64, usize, usize)>,
    /// Mappings whose owners were dropped, to unmap at the next chance (see
    /// [`Memory::queue_unmap`]).
    unmaps: Vec<MemoryMapping>,
    next_arena: u64,
}

/// The allocator of one address space, with the transport that moves its bytes.
pub struct Memory {
    space: far::AddressSpace,
    transport: Arc<dyn Transport>,
    /// Runs mmap and madvise in the address space.
    mapper: Arc<dyn near::SyscallInterface>,
    /// Whether new arenas may be mapped when the existing ones are full.
    growable: bool,
    /// Set when `reclaim` has work (queued page ranges or unmaps), so that the common case
    /// takes no lock.
    pending: AtomicBool,
    state: Mutex<State>,
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memory")
            .field("space", &self.space)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Memory {
    /// The allocator of the local address space (shared by every clone child made with
    /// `CLONE_VM`, which is every thread `clone` makes).
    pub fn local() -> &'static Arc<Memory> {
        static LOCAL: OnceLock<Arc<Memory>> = OnceLock::new();
        LOCAL.get_or_init(|| {
            // SAFETY: `LocalSyscall` maps arenas in this process and `LocalTransport`
            // copies within it: both serve the local address space.
            unsafe {
                Memory::new(
                    crate::local::local_namespaces().address_space,
                    Arc::new(LocalTransport),
                    Arc::new(near::LocalSyscall),
                )
            }
        })
    }

    /// An allocator for `space`, moving bytes with `transport` and mapping arenas with
    /// `mapper` (an interface of a process using that address space).
    ///
    /// # Safety
    /// The allocator hands out the memory `mapper`'s `mmap` answers name, and every
    /// pointer it makes is trusted to be memory of `space` that nobody else uses:
    /// - `mapper` runs syscalls in a process whose address space is `space`, and returns
    ///   what the kernel returned (an `mmap` answer names a fresh mapping of the length
    ///   asked for);
    /// - `transport` reads and writes exactly the bytes asked for, at those addresses of
    ///   that same address space;
    /// - `space` is that address space's identity: the local one
    ///   ([`local_namespaces`](crate::local_namespaces)) only if it is this process's
    ///   memory, and the same identity every task of that address space uses.
    pub unsafe fn new(
        space: far::AddressSpace,
        transport: Arc<dyn Transport>,
        mapper: Arc<dyn near::SyscallInterface>,
    ) -> Arc<Memory> {
        Memory::build(space, transport, mapper, true)
    }

    fn build(
        space: far::AddressSpace,
        transport: Arc<dyn Transport>,
        mapper: Arc<dyn near::SyscallInterface>,
        growable: bool,
    ) -> Arc<Memory> {
        Arc::new(Memory {
            space,
            transport,
            mapper,
            growable,
            pending: AtomicBool::new(false),
            state: Mutex::new(State {
                arenas: Vec::new(),
                live: BTreeMap::new(),
                reclaim: Vec::new(),
                unmaps: Vec::new(),
                next_arena: 1,
            }),
        })
    }

    /// An allocator with a single arena of `size` bytes (rounded up to pages) that never
    /// grows: once full, `malloc` fails with [`Error::OutOfMemory`].
    ///
    /// # Errors
    /// If the arena cannot be mapped.
    ///
    /// # Safety
    /// As for [`Memory::new`].
    pub async unsafe fn fixed(
        space: far::AddressSpace,
        transport: Arc<dyn Transport>,
        mapper: Arc<dyn near::SyscallInterface>,
        size: usize,
    ) -> Result<Arc<Memory>> {
        let memory = Memory::build(space, transport, mapper, false);
        let len = round_up(size.max(1), PAGE_SIZE)
            .ok_or_else(|| Error::invalid("Memory::fixed", format!("size {size} overflows")))?;
        let mapping = memory.map_arena(len).await?;
        add_arena(&mut lock(&memory.state), mapping, len);
        Ok(memory)
    }

    /// The address space this allocator serves.
    pub fn space(&self) -> far::AddressSpace {
        self.space
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Allocates `size` bytes (at least 1) aligned to `align` (a power of two, at most a
    /// page).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad alignment or size, [`Error::OutOfMemory`] if a
    /// fixed arena is full or a new arena cannot be mapped.
    pub async fn malloc(self: &Arc<Self>, size: usize, align: usize) -> Result<Allocation> {
        if !align.is_power_of_two() || align > PAGE_SIZE {
            return Err(Error::invalid(
                "malloc",
                format!("alignment {align} is not a power of two up to {PAGE_SIZE}"),
            ));
        }
        if size > isize::MAX as usize {
            return Err(Error::invalid(
                "malloc",
                format!("size {size} is too large"),
            ));
        }
        let size = size.max(1);
        self.reclaim().await;
        if let Some(a) = self.try_take(size, align) {
            return Ok(a);
        }
        if !self.growable {
            return Err(Error::OutOfMemory {
                space: self.space,
                detail: format!(
                    "the fixed arena has no free range of {size} bytes aligned to {align}"
                ),
            });
        }
        let len = round_up(size, PAGE_SIZE)
            .map(|s| s.max(ARENA_SIZE))
            .ok_or_else(|| Error::invalid("malloc", format!("size {size} overflows")))?;
        let mapping = self.map_arena(len).await?;
        let mut st = lock(&self.state);
        let index = add_arena(&mut st, mapping, len);
        let offset = st.arenas[index]
            .take(size, align)
            .ok_or_else(|| Error::OutOfMemory {
                space: self.space,
                detail: format!("a fresh arena of {len} bytes cannot hold {size}"),
            })?;
        Ok(self.allocation(&mut st, index, offset, size))
    }

    fn try_take(self: &Arc<Self>, size: usize, align: usize) -> Option<Allocation> {
        let mut st = lock(&self.state);
        let (index, offset) = st
            .arenas
            .iter_mut()
            .enumerate()
            .find_map(|(i, arena)| arena.take(size, align).map(|o| (i, o)))?;
        Some(self.allocation(&mut st, index, offset, size))
    }

    /// Records `len` bytes at `offset` of arena `index` as a live allocation.
    fn allocation(
        self: &Arc<Self>,
        st: &mut State,
        index: usize,
        offset: usize,
        len: usize,
    ) -> Allocation {
        let arena = &st.arenas[index];
        let (id, addr) = (arena.id, arena.base() + offset as u64);
        st.live.insert(addr, len);
        Allocation {
            memory: self.clone(),
            arena: id,
            offset,
            len,
            addr: Address::new(addr),
            reclaim: true,
        }
    }

    async fn map_arena(&self, len: usize) -> Result<MemoryMapping> {
        // SAFETY: a non-fixed anonymous mapping creates fresh memory and touches nothing.
        let r = unsafe {
            near::mmap(
                &*self.mapper,
                Address::NULL,
                len,
                PROT::READ | PROT::WRITE,
                MAP::SHARED | MAP::ANONYMOUS,
                None,
                0,
            )
        }
        .await;
        r.map_err(|e| Error::OutOfMemory {
            space: self.space,
            detail: format!("mmap of a {len}-byte arena failed: {e}"),
        })
    }

    /// Hands queued page ranges of freed allocations to the kernel (`MADV_REMOVE`), then
    /// makes them available again. Ranges are out of the free list until this is done, so
    /// no allocation can be placed in pages being discarded.
    pub async fn reclaim(&self) {
        // Nothing queued, the case before nearly every syscall and malloc: no lock taken.
        if !self.pending.swap(false, Ordering::AcqRel) {
            return;
        }
        let (unmaps, ranges) = {
            let mut st = lock(&self.state);
            let ranges: Vec<_> = std::mem::take(&mut st.reclaim)
                .into_iter()
                .filter_map(|(arena_id, offset, len)| {
                    let base = st.arenas.iter().find(|a| a.id == arena_id)?.base();
                    Some((arena_id, offset, len, base))
                })
                .collect();
            (std::mem::take(&mut st.unmaps), ranges)
        };
        for mapping in unmaps {
            // SAFETY: queued by the owning handle's drop: nothing refers to the range.
            if let Err(e) = unsafe { near::munmap(self.mapper.as_ref(), mapping) }.await {
                log::debug!(
                    "munmap of a dropped mapping ({} bytes) failed: {e}",
                    mapping.len
                );
            }
        }
        for (arena_id, offset, len, base) in ranges {
            let addr = Address::new(base + offset as u64);
            // SAFETY: the range is whole pages of an arena this allocator owns, in no
            // allocation and not on the free list, so nothing uses its contents.
            let r = unsafe { near::madvise(self.mapper.as_ref(), addr, len, MADV::REMOVE) }.await;
            if let Err(e) = r {
                log::debug!("madvise(MADV_REMOVE) of {len} bytes failed: {e}");
            }
            let mut st = lock(&self.state);
            if let Some(arena) = st.arenas.iter_mut().find(|a| a.id == arena_id) {
                arena.give_back(offset, len);
            }
        }
    }

    /// Queues `mapping` (not one of this allocator's arenas, but a mapping in the same
    /// address space whose owning handle was dropped) to be unmapped by the next
    /// [`Memory::reclaim`], which every `malloc` and every syscall through a task of this
    /// address space runs first.
    ///
    /// Crate-private: the range is unmapped on trust, so only the owning handles of
    /// mappings this crate made may queue one.
    pub(crate) fn queue_unmap(&self, mapping: MemoryMapping) {
        lock(&self.state).unmaps.push(mapping);
        self.pending.store(true, Ordering::Release);
    }

    /// Mappings whose owning handles were dropped (outside the local address space) and
    /// that are not unmapped yet.
    pub fn mappings_pending_unmap(&self) -> usize {
        lock(&self.state).unmaps.len()
    }

    /// Bytes currently allocated, over all arenas.
    pub fn bytes_in_use(&self) -> usize {
        lock(&self.state).live.values().sum()
    }

    /// Bytes waiting for reclamation.
    pub fn bytes_pending_reclaim(&self) -> usize {
        lock(&self.state).reclaim.iter().map(|r| r.2).sum()
    }

    /// Checks that `len` bytes at `ptr` lie inside one live allocation of this allocator.
    ///
    /// # Errors
    /// [`Error::Mismatch`] for a pointer of another address space, [`Error::UseAfterFree`]
    /// if no live allocation holds the range.
    pub fn validate(&self, ptr: far::Pointer, len: usize) -> Result<()> {
        if ptr.space != self.space {
            return Err(Error::Mismatch(far::MismatchError::AddressSpace {
                addr: ptr.near,
                space: ptr.space,
                task_space: self.space,
                task_pid: 0,
            }));
        }
        let addr = ptr.near.as_u64();
        let st = lock(&self.state);
        let ok = st
            .live
            .range(..=addr)
            .next_back()
            .is_some_and(|(&start, &l)| {
                addr.checked_add(len as u64)
                    .is_some_and(|end| end <= start + l as u64)
            });
        if ok {
            Ok(())
        } else {
            Err(Error::UseAfterFree {
                addr: ptr.near,
                len,
            })
        }
    }

    fn free(&self, arena_id: u64, offset: usize, len: usize, addr: Address, reclaim: bool) {
        if len == 0 {
            // An empty piece owns nothing and has no live entry (another allocation may
            // start at its address).
            return;
        }
        let mut st = lock(&self.state);
        st.live.remove(&addr.as_u64());
        let Some(arena) = st.arenas.iter_mut().find(|a| a.id == arena_id) else {
            return;
        };
        let base = arena.base() as usize;
        let start = base + offset;
        let (page_start, page_end) = (
            round_up(start, PAGE_SIZE).unwrap_or(usize::MAX),
            (start + len) & !(PAGE_SIZE - 1),
        );
        if reclaim
            && len >= RECLAIM_MIN
            && page_end > page_start
            && page_end - page_start >= PAGE_SIZE
        {
            arena.give_back(offset, page_start - start);
            arena.give_back(page_end - base, start + len - page_end);
            st.reclaim
                .push((arena_id, page_start - base, page_end - page_start));
            self.pending.store(true, Ordering::Release);
        } else {
            arena.give_back(offset, len);
        }
    }

    /// Updates the live-allocation map for a split of `[addr, addr + len)` at `at`.
    /// Empty pieces get no entry: the address of an empty piece may be where another
    /// allocation starts.
    fn split_live(&self, addr: u64, len: usize, at: usize) {
        let mut st = lock(&self.state);
        if len > 0 {
            st.live.remove(&addr);
        }
        if at > 0 {
            st.live.insert(addr, at);
        }
        if len > at {
            st.live.insert(addr + at as u64, len - at);
        }
    }

    fn merge_live(&self, first: (u64, usize), second: (u64, usize)) {
        let mut st = lock(&self.state);
        if second.1 > 0 {
            st.live.remove(&second.0);
        }
        if first.1 > 0 {
            st.live.remove(&first.0);
        }
        let total = first.1 + second.1;
        if total > 0 {
            st.live.insert(first.0, total);
        }
    }
}

/// Adds a fresh arena over `mapping` (`len` bytes, all free); returns its index.
fn add_arena(st: &mut State, mapping: MemoryMapping, len: usize) -> usize {
    let id = st.next_arena;
    st.next_arena += 1;
    st.arenas.push(Arena {
        id,
        mapping,
        free: BTreeMap::from([(0, len)]),
    });
    st.arenas.len() - 1
}

fn round_up(n: usize, to: usize) -> Option<usize> {
    n.checked_add(to - 1).map(|v| v & !(to - 1))
}

/// A failed merge: why, and both pieces, given back.
#[derive(Debug)]
pub struct Unmerged<A> {
    /// Why they could not be merged.
    pub error: Error,
    /// The piece that was to come first.
    pub first: A,
    /// The piece that was to come second.
    pub second: A,
}

/// An owned range of memory in one address space, given back when dropped.
pub struct Allocation {
    memory: Arc<Memory>,
    arena: u64,
    offset: usize,
    len: usize,
    addr: Address,
    /// Whether freeing hands whole pages back to the kernel (see the module docs).
    reclaim: bool,
}

impl fmt::Debug for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Allocation({:?}, {} bytes)", self.addr, self.len)
    }
}

impl Allocation {
    /// Keeps this allocation's pages when it is freed: the range goes straight back on the
    /// free list instead of being handed to the kernel first, even if it is at least
    /// [`RECLAIM_MIN`] bytes. For memory that is freed and allocated again at a steady
    /// rate, such as the stacks of clone children, where giving the pages back costs a
    /// `madvise` per free and a page fault per page on the next use, and saves nothing.
    pub fn keep_pages_when_freed(&mut self) {
        self.reclaim = false;
    }

    /// The start address (in the allocation's address space).
    pub fn addr(&self) -> Address {
        self.addr
    }

    /// The address `offset` bytes in.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `offset` is past the end.
    pub fn addr_at(&self, offset: usize) -> Result<Address> {
        if offset > self.len {
            return Err(Error::invalid(
                "addr_at",
                format!("offset {offset} past {} bytes", self.len),
            ));
        }
        Ok(Address::new(self.addr.as_u64() + offset as u64))
    }

    /// The far pointer to the start.
    pub fn far(&self) -> far::Pointer {
        far::Pointer {
            space: self.memory.space,
            near: self.addr,
        }
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is zero-sized (only a piece split off at an end can be).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The allocator it came from.
    pub fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }

    fn check(&self, what: &'static str, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::invalid(
                what,
                format!(
                    "range {offset}+{len} is outside an allocation of {} bytes",
                    self.len
                ),
            )),
        }
    }

    fn transport_error(&self, what: &'static str) -> impl Fn(near::SyscallError) -> Error + '_ {
        move |source| Error::Syscall {
            syscall: what,
            pid: 0,
            source,
        }
    }

    /// Writes `data` at `offset`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the range is outside the allocation; the transport's
    /// errors.
    pub async fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check("Allocation::write", offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let dest = Address::new(self.addr.as_u64() + offset as u64);
        // SAFETY: the range is inside this allocation, which this object owns.
        unsafe { self.memory.transport.write(dest, data) }
            .await
            .map_err(self.transport_error("memory write"))
    }

    /// Reads `len` bytes at `offset`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the range is outside the allocation; the transport's
    /// errors.
    pub async fn read(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        self.check("Allocation::read", offset, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let src = Address::new(self.addr.as_u64() + offset as u64);
        // SAFETY: the range is inside this allocation, which this object owns.
        unsafe { self.memory.transport.read(src, len) }
            .await
            .map_err(self.transport_error("memory read"))
    }

    /// Splits into `[0, at)` and `[at, len)`, each freed on its own.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `at` is past the end (the allocation is given back).
    pub fn split(self, at: usize) -> Result<(Allocation, Allocation)> {
        if at > self.len {
            return Err(Error::invalid(
                "split",
                format!("offset {at} past an allocation of {} bytes", self.len),
            ));
        }
        let mut first = self;
        first.memory.split_live(first.addr.as_u64(), first.len, at);
        let second = Allocation {
            memory: first.memory.clone(),
            arena: first.arena,
            offset: first.offset + at,
            len: first.len - at,
            addr: Address::new(first.addr.as_u64() + at as u64),
            reclaim: first.reclaim,
        };
        first.len = at;
        Ok((first, second))
    }

    /// Joins two adjacent allocations of one arena (`self` first).
    ///
    /// # Errors
    /// Gives both back if they are not adjacent pieces of one arena.
    pub fn merge(
        self,
        other: Allocation,
    ) -> std::result::Result<Allocation, Box<Unmerged<Allocation>>> {
        if !Arc::ptr_eq(&self.memory, &other.memory)
            || self.arena != other.arena
            || self.offset + self.len != other.offset
        {
            return Err(Box::new(Unmerged {
                error: Error::invalid("merge", format!("{self:?} and {other:?} are not adjacent")),
                first: self,
                second: other,
            }));
        }
        let (mut first, mut second) = (self, other);
        first.memory.merge_live(
            (first.addr.as_u64(), first.len),
            (second.addr.as_u64(), second.len),
        );
        first.len += second.len;
        first.reclaim &= second.reclaim;
        // An empty piece gives nothing back when dropped.
        second.len = 0;
        Ok(first)
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.memory
            .free(self.arena, self.offset, self.len, self.addr, self.reclaim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Arc<Memory> {
        // SAFETY: a second allocator of the local address space, mapping and copying
        // locally: its arenas are fresh mappings no other allocator hands out.
        unsafe {
            Memory::new(
                crate::local::local_namespaces().address_space,
                Arc::new(LocalTransport),
                Arc::new(near::LocalSyscall),
            )
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        async_io::block_on(f)
    }

    #[test]
    fn allocations_align_reuse_and_round_trip() {
        run(async {
            let mem = fresh();
            let a = mem.malloc(10, 16).await.expect("malloc");
            assert_eq!(a.addr().as_u64() % 16, 0);
            let b = mem.malloc(100, 64).await.expect("malloc");
            assert_eq!(b.addr().as_u64() % 64, 0);
            b.write(3, b"hello").await.expect("write");
            assert_eq!(b.read(3, 5).await.expect("read"), b"hello");
            assert!(b.write(98, b"xyz").await.is_err());
            let addr = a.addr();
            drop(a);
            let c = mem.malloc(10, 16).await.expect("malloc");
            assert_eq!(c.addr(), addr, "freed space is reused");
            drop((b, c));
            assert_eq!(mem.bytes_in_use(), 0);
            assert!(mem.malloc(8, 3).await.is_err());
            let big = mem.malloc(3 << 20, 8).await.expect("big");
            assert_eq!(big.len(), 3 << 20);
        })
    }

    #[test]
    fn split_merge_and_validate() {
        run(async {
            let mem = fresh();
            let a = mem.malloc(100, 8).await.expect("malloc");
            let far = a.far();
            let (x, y) = a.split(40).expect("split");
            assert_eq!((x.len(), y.len()), (40, 60));
            assert_eq!(y.addr().as_u64(), x.addr().as_u64() + 40);
            mem.validate(y.far(), 60).expect("live");
            assert!(mem.validate(y.far(), 61).is_err());
            let (x, y) = match y.merge(x) {
                Err(u) => (u.second, u.first),
                Ok(_) => panic!("merged in the wrong order"),
            };
            let whole = x.merge(y).map_err(|u| u.error).expect("merge");
            assert_eq!(whole.len(), 100);
            mem.validate(far, 100).expect("live again");
            drop(whole);
            assert!(matches!(
                mem.validate(far, 1),
                Err(Error::UseAfterFree { .. })
            ));
            assert_eq!(mem.bytes_in_use(), 0);
        })
    }

    #[test]
    fn empty_pieces_do_not_disturb_neighbours() {
        run(async {
            let mem = fresh();
            let a = mem.malloc(16, 8).await.expect("a");
            let b = mem.malloc(16, 8).await.expect("b");
            assert_eq!(b.addr().as_u64(), a.addr().as_u64() + 16, "adjacent");
            // Splitting at either end makes an empty piece at a neighbour's address.
            let (a, empty_end) = a.split(16).expect("split at end");
            let (empty_start, b) = b.split(0).expect("split at start");
            assert_eq!(empty_end.addr(), b.addr());
            mem.validate(b.far(), 16).expect("b is live");
            drop(empty_end);
            drop(empty_start);
            mem.validate(b.far(), 16).expect("b is still live");
            mem.validate(a.far(), 16).expect("a is still live");
            assert_eq!(mem.bytes_in_use(), 32);
            // Merging with an empty piece keeps the accounting exact too.
            let (a, tail) = a.split(16).expect("split");
            let a = a.merge(tail).map_err(|u| u.error).expect("merge");
            mem.validate(b.far(), 16).expect("b is still live");
            assert_eq!(mem.bytes_in_use(), 32);
            drop((a, b));
            assert_eq!(mem.bytes_in_use(), 0);
        })
    }

    #[test]
    fn fixed_arena_runs_out_and_reuses() {
        run(async {
            let space = crate::local::local_namespaces().address_space;
            // SAFETY: as in `fresh`.
            let mem = unsafe {
                Memory::fixed(
                    space,
                    Arc::new(LocalTransport),
                    Arc::new(near::LocalSyscall),
                    8192,
                )
            }
            .await
            .expect("fixed");
            let a = mem.malloc(4096, 8).await.expect("first");
            let b = mem.malloc(4096, 8).await.expect("second");
            let err = mem.malloc(1, 1).await.expect_err("full");
            assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
            drop(a);
            let c = mem.malloc(4000, 8).await.expect("reuses the freed range");
            drop((b, c));
        })
    }

    #[test]
    fn big_frees_are_reclaimed_before_reuse() {
        run(async {
            let mem = fresh();
            let a = mem.malloc(256 * 1024, 8).await.expect("malloc");
            a.write(0, &[7u8; 4096]).await.expect("write");
            let addr = a.addr();
            drop(a);
            assert!(mem.bytes_pending_reclaim() >= 248 * 1024);
            // The next malloc reclaims first; the pages come back zeroed.
            let b = mem.malloc(256 * 1024, 8).await.expect("malloc");
            assert_eq!(mem.bytes_pending_reclaim(), 0);
            assert_eq!(b.addr(), addr);
            assert_eq!(b.read(0, 4096).await.expect("read"), vec![0u8; 4096]);
        })
    }

    #[test]
    fn kept_pages_are_reused_at_once_with_their_contents() {
        run(async {
            let mem = fresh();
            let mut a = mem.malloc(256 * 1024, 8).await.expect("malloc");
            a.keep_pages_when_freed();
            a.write(0, &[7u8; 4096]).await.expect("write");
            let addr = a.addr();
            // Split pieces keep the choice.
            let (first, second) = a.split(128 * 1024).expect("split");
            drop((first, second));
            assert_eq!(
                mem.bytes_pending_reclaim(),
                0,
                "nothing queued for the kernel"
            );
            let b = mem.malloc(256 * 1024, 8).await.expect("malloc");
            assert_eq!(
                b.addr(),
                addr,
                "the same range, straight from the free list"
            );
            assert_eq!(
                b.read(0, 4).await.expect("read"),
                vec![7u8; 4],
                "not discarded"
            );
        })
    }

    #[test]
    fn queued_unmaps_run_at_the_next_reclaim() {
        run(async {
            let mem = fresh();
            // A page far from where the kernel places mappings itself, so that once
            // unmapped, nothing else lands there before the check below.
            let want = Address::new(0x1400_0000_0000);
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
            let mapping = unsafe {
                near::mmap(
                    &near::LocalSyscall,
                    want,
                    PAGE_SIZE,
                    PROT::READ | PROT::WRITE,
                    MAP::PRIVATE | MAP::ANONYMOUS | MAP::FIXED_NOREPLACE,
                    None,
                    0,
                )
            }
            .await
            .expect("mmap");
            assert_eq!(mapping.addr, want);
            mem.queue_unmap(mapping);
            assert_eq!(mem.mappings_pending_unmap(), 1);
            mem.reclaim().await;
            assert_eq!(mem.mappings_pending_unmap(), 0);
            // SAFETY: the range is unmapped and nothing else maps there.
            let r =
                unsafe { near::mprotect(&near::LocalSyscall, want, PAGE_SIZE, PROT::READ) }.await;
            assert_eq!(
                r.err(),
                Some(near::SyscallError::Errno(near::Errno::ENOMEM))
            );
        })
    }
}
