//! Memory in an address space: arenas over shared anonymous mappings, and allocations.
//!
//! An [`Allocation`] owns a range of one arena and gives it back when dropped (pure
//! bookkeeping). Arenas are `MAP_SHARED | MAP_ANONYMOUS`, so children cloned without
//! `CLONE_VM` still see them. The bytes are moved by the address space's [`Transport`].
//!
//! Placement: best fit over the free ranges of all arenas, kept in two ordered indexes (by
//! arena and offset, to merge a freed range with its free neighbours; by length, to find the
//! smallest range that holds a request), so `malloc` and freeing cost O(log n) in the number
//! of free ranges, which is at most the number of live allocations, arenas and page ranges
//! waiting for reclamation, plus one. The
//! alignment (at most a page) is met by trying the few smallest ranges long enough, then
//! the smallest long enough for any alignment; the ranges in between are scanned only
//! before a new arena is mapped (or a fixed one reported full), so that a fixed arena fails
//! only when no free range can hold the request. Freed ranges merge at once, so free space
//! never stays cut into pieces its allocations no longer need. Size classes or slabs were
//! not chosen: the sizes asked for range from an 8-byte out-parameter to 64 KiB stacks and
//! multi-megabyte exec blocks, and slabs would need their own policy for handing empty
//! slabs back (for `MADV_REMOVE`) and could not share one exhausted fixed arena exactly;
//! best fit with merging serves every size with one structure and the same bounds.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rsyscall_far as far;
use rsyscall_near::{self as near, Address, MADV, MAP, MemoryMapping, PROT};

use crate::error::{Error, Result};

/// The arena id of 0-byte allocations, which take no memory (arena ids start at 1).
const EMPTY_ARENA: u64 = 0;
/// Size of a fresh arena, unless an allocation needs more.
const ARENA_SIZE: usize = 1 << 20;
/// The page size.
pub const PAGE_SIZE: usize = 4096;

/// Above every user-space address on x86-64, with 4- or 5-level page tables.
const USER_ADDRESS_LIMIT: u64 = 1 << 57;
/// Allocations at least this large give their whole pages back to the kernel when freed.
pub const RECLAIM_MIN: usize = 64 * 1024;

/// How many of the smallest free ranges at least as long as a request `take` tries before
/// it turns to the smallest range long enough whatever its alignment.
const PROBES: usize = 4;

/// The free ranges of every arena, indexed twice, so that finding, taking and giving back a
/// range costs O(log n) in the number of free ranges.
///
/// Offsets are from the start of an arena, whose base is page-aligned; since alignments are
/// at most a page, an offset is aligned exactly when its address is.
#[derive(Default)]
struct FreeRanges {
    /// (arena id, offset) -> length, never two adjacent ranges (merged when freed): to find
    /// the neighbours of a range given back.
    by_place: BTreeMap<(u64, usize), usize>,
    /// (length, arena id, offset) of every range of `by_place`: to find the best fit.
    by_size: BTreeSet<(usize, u64, usize)>,
}

impl FreeRanges {
    fn insert(&mut self, arena: u64, offset: usize, len: usize) {
        self.by_place.insert((arena, offset), len);
        self.by_size.insert((len, arena, offset));
    }

    fn remove(&mut self, arena: u64, offset: usize, len: usize) {
        self.by_place.remove(&(arena, offset));
        self.by_size.remove(&(len, arena, offset));
    }

    /// Where `size` bytes aligned to `align` fit in the free range (`len` bytes at `offset`).
    fn fit(offset: usize, len: usize, size: usize, align: usize) -> Option<usize> {
        let at = round_up(offset, align)?;
        (at.checked_add(size)? <= offset + len).then_some(at)
    }

    /// Best fit, in O(log n): the smallest free range that holds `size` bytes at `align`,
    /// among the [`PROBES`] smallest at least `size` long, or else the smallest at least
    /// `size + align - 1` long (which holds them whatever its alignment). Only when there is
    /// none, just before the caller maps a new arena or fails, are the remaining ranges whose
    /// length lies between the two tried one by one, so that a fixed arena is reported full
    /// only when no range can hold the request. Takes it and returns (arena id, offset).
    fn take(&mut self, size: usize, align: usize) -> Option<(u64, usize)> {
        let sure = size.checked_add(align - 1)?;
        let fitting = |&(len, arena, offset): &(usize, u64, usize)| {
            Self::fit(offset, len, size, align).map(|at| (len, arena, offset, at))
        };
        let found = self
            .by_size
            .range((size, 0, 0)..)
            .take(PROBES)
            .find_map(fitting)
            .or_else(|| self.by_size.range((sure, 0, 0)..).next().and_then(fitting))
            .or_else(|| {
                self.by_size
                    .range((size, 0, 0)..(sure, 0, 0))
                    .skip(PROBES)
                    .find_map(fitting)
            });
        let (len, arena, offset, at) = found?;
        self.take_at(arena, offset, len, at, size);
        Some((arena, at))
    }

    /// Takes `size` bytes at `at` out of the free range (`len` bytes at `offset` of
    /// `arena`), putting back what is left before and after.
    fn take_at(&mut self, arena: u64, offset: usize, len: usize, at: usize, size: usize) {
        self.remove(arena, offset, len);
        // The pieces left were part of one free range, so they have no free neighbours.
        if at > offset {
            self.insert(arena, offset, at - offset);
        }
        let end = at + size;
        if end < offset + len {
            self.insert(arena, end, offset + len - end);
        }
    }

    /// Gives back `len` bytes at `offset` of `arena`, merged with free neighbours.
    fn give_back(&mut self, arena: u64, mut offset: usize, mut len: usize) {
        if len == 0 {
            return;
        }
        if let Some((&(prev_arena, prev), &prev_len)) =
            self.by_place.range(..(arena, offset)).next_back()
            && prev_arena == arena
            && prev + prev_len == offset
        {
            self.remove(arena, prev, prev_len);
            offset = prev;
            len += prev_len;
        }
        if let Some(&next_len) = self.by_place.get(&(arena, offset + len)) {
            self.remove(arena, offset + len, next_len);
            len += next_len;
        }
        self.insert(arena, offset, len);
    }
}

struct State {
    /// Arena id -> its mapping. Arenas are never unmapped while the allocator exists.
    arenas: BTreeMap<u64, MemoryMapping>,
    free: FreeRanges,
    /// Live allocations: start address -> length.
    live: BTreeMap<u64, usize>,
    /// Bytes in live allocations (the sum of `live`).
    in_use: usize,
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
                arenas: BTreeMap::new(),
                free: FreeRanges::default(),
                live: BTreeMap::new(),
                in_use: 0,
                reclaim: Vec::new(),
                unmaps: Vec::new(),
                next_arena: 1,
            }),
        })
    }

    /// An allocator with a single arena of `size` bytes (rounded up to pages) that never
    /// grows: once full, `malloc` fails with [`Error::OutOfMemory`]. With `size` 0 it has no
    /// arena at all, and only 0-byte allocations succeed.
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
        let len = round_up(size, PAGE_SIZE)
            .ok_or_else(|| Error::invalid("Memory::fixed", format!("size {size} overflows")))?;
        if len == 0 {
            return Ok(memory);
        }
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

    /// Allocates `size` bytes aligned to `align` (a power of two, at most a page).
    ///
    /// A request for 0 bytes gets an empty allocation that takes no memory, so that a
    /// zero-length buffer passed to a syscall stays zero-length (a `read` of 0 bytes
    /// returns at once instead of waiting for a byte). Its address is `align` itself:
    /// non-null and aligned but in no arena, the kernel never touches it for a length of 0,
    /// and no live allocation is recorded for it (as for the empty pieces of a split).
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
        if size == 0 {
            return Ok(Allocation {
                memory: self.clone(),
                arena: EMPTY_ARENA,
                offset: 0,
                len: 0,
                addr: Address::new(align as u64),
                reclaim: true,
            });
        }
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
        let id = add_arena(&mut st, mapping, len);
        // The fresh arena starts at a page boundary and is at least `size` long, so its
        // start holds the request at any alignment up to a page.
        st.free.take_at(id, 0, len, 0, size);
        Ok(self.allocation(&mut st, id, 0, size))
    }

    fn try_take(self: &Arc<Self>, size: usize, align: usize) -> Option<Allocation> {
        let mut st = lock(&self.state);
        let (id, offset) = st.free.take(size, align)?;
        Some(self.allocation(&mut st, id, offset, size))
    }

    /// Records `len` bytes at `offset` of arena `id` as a live allocation.
    fn allocation(
        self: &Arc<Self>,
        st: &mut State,
        id: u64,
        offset: usize,
        len: usize,
    ) -> Allocation {
        let addr = st.arenas[&id].addr.as_u64() + offset as u64;
        st.live.insert(addr, len);
        st.in_use += len;
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
        let mapping = r.map_err(|e| Error::OutOfMemory {
            space: self.space,
            detail: format!("mmap of a {len}-byte arena failed: {e}"),
        })?;
        // The allocator computes addresses inside the arena with plain arithmetic: an
        // answer no kernel gives (unaligned, null, or running past the highest user
        // address) is refused here, so a lying or broken server yields an error, never an
        // overflow. Such a "mapping" is left alone: unmapping a made-up range could hit
        // memory that is in use.
        let addr = mapping.addr.as_u64();
        let valid = addr != 0
            && addr % PAGE_SIZE as u64 == 0
            && addr
                .checked_add(mapping.len as u64)
                .is_some_and(|end| end <= USER_ADDRESS_LIMIT);
        if !valid {
            return Err(Error::OutOfMemory {
                space: self.space,
                detail: format!(
                    "mmap of a {len}-byte arena answered {addr:#x}, which no kernel returns"
                ),
            });
        }
        Ok(mapping)
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
                    let base = st.arenas.get(&arena_id)?.addr.as_u64();
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
            lock(&self.state).free.give_back(arena_id, offset, len);
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
        lock(&self.state).in_use
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
        st.in_use -= len;
        // The arena's base, from the allocation's own address (no lookup needed).
        let start = addr.as_u64() as usize;
        let base = start - offset;
        let (page_start, page_end) = (
            round_up(start, PAGE_SIZE).unwrap_or(usize::MAX),
            (start + len) & !(PAGE_SIZE - 1),
        );
        if reclaim
            && len >= RECLAIM_MIN
            && page_end > page_start
            && page_end - page_start >= PAGE_SIZE
        {
            st.free.give_back(arena_id, offset, page_start - start);
            st.free
                .give_back(arena_id, page_end - base, start + len - page_end);
            st.reclaim
                .push((arena_id, page_start - base, page_end - page_start));
            self.pending.store(true, Ordering::Release);
        } else {
            st.free.give_back(arena_id, offset, len);
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

/// Adds a fresh arena over `mapping` (`len` bytes, all free); returns its id.
fn add_arena(st: &mut State, mapping: MemoryMapping, len: usize) -> u64 {
    let id = st.next_arena;
    st.next_arena += 1;
    st.arenas.insert(id, mapping);
    st.free.insert(id, 0, len);
    id
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

    /// Whether it is zero-sized (a 0-byte `malloc`, or a piece split off at an end).
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

    /// A second allocator of the local address space, mapping arenas as it needs them.
    pub(super) fn fresh() -> Arc<Memory> {
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

    /// A second allocator of the local address space with one arena of `size` bytes.
    pub(super) async fn fixed(size: usize) -> Result<Arc<Memory>> {
        // SAFETY: as in `fresh`.
        unsafe {
            Memory::fixed(
                crate::local::local_namespaces().address_space,
                Arc::new(LocalTransport),
                Arc::new(near::LocalSyscall),
                size,
            )
        }
        .await
    }

    pub(super) fn run<T>(f: impl std::future::Future<Output = T>) -> T {
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
            let mem = fixed(8192).await.expect("fixed");
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

#[cfg(test)]
mod free_range_tests {
    //! The free-range structure and the allocator over it, against simple models.

    use super::tests::{fixed, fresh, run};
    use super::*;

    /// Checks that both indexes hold the same ranges, that no two ranges of an arena
    /// overlap or touch (touching ones must have been merged), and returns them sorted by
    /// (arena, offset).
    fn ranges(free: &FreeRanges) -> Vec<(u64, usize, usize)> {
        let by_place: Vec<_> = free
            .by_place
            .iter()
            .map(|(&(arena, offset), &len)| (arena, offset, len))
            .collect();
        let mut by_size: Vec<_> = free
            .by_size
            .iter()
            .map(|&(len, arena, offset)| (arena, offset, len))
            .collect();
        by_size.sort_unstable();
        assert_eq!(by_place, by_size, "the two indexes disagree");
        for pair in by_place.windows(2) {
            let ((a1, o1, l1), (a2, o2, _)) = (pair[0], pair[1]);
            assert!(l1 > 0, "an empty free range");
            if a1 == a2 {
                assert!(o1 + l1 < o2, "ranges {:?} overlap or touch", pair);
            }
        }
        by_place
    }

    #[test]
    fn freed_ranges_merge_with_their_neighbours_in_any_order() {
        // Every order of giving back three adjacent pieces leaves one range.
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            let mut free = FreeRanges::default();
            free.insert(1, 0, 300);
            free.insert(2, 0, 300);
            let pieces: Vec<_> = (0..3).map(|_| free.take(100, 1).expect("room")).collect();
            assert!(pieces.iter().all(|&(arena, _)| arena == 1), "{pieces:?}");
            assert_eq!(ranges(&free), [(2, 0, 300)]);
            for i in order {
                free.give_back(1, pieces[i].1, 100);
                ranges(&free);
            }
            assert_eq!(ranges(&free), [(1, 0, 300), (2, 0, 300)], "order {order:?}");
        }
        // Ranges of different arenas never merge, even at matching offsets.
        let mut free = FreeRanges::default();
        free.insert(1, 0, 100);
        free.give_back(2, 100, 50);
        assert_eq!(ranges(&free), [(1, 0, 100), (2, 100, 50)]);
    }

    #[test]
    fn take_is_best_fit_and_aligned() {
        let mut free = FreeRanges::default();
        free.insert(1, 0, 1000);
        free.insert(1, 2000, 40);
        free.insert(2, 8, 64);
        // The smallest range that holds 30 bytes is the 40-byte one.
        assert_eq!(free.take(30, 1), Some((1, 2000)));
        // 64 bytes at 64: the 64-byte range at offset 8 is misaligned, so the start of the
        // 1000-byte range is taken.
        assert_eq!(free.take(64, 64), Some((1, 0)));
        // 16 bytes at 16 fit in the misaligned range, from its first aligned offset; the
        // padding before stays free.
        assert_eq!(free.take(16, 16), Some((2, 16)));
        assert_eq!(
            ranges(&free),
            [(1, 64, 936), (1, 2030, 10), (2, 8, 8), (2, 32, 40)]
        );
    }

    #[test]
    fn take_finds_the_one_aligned_range_among_many_misaligned() {
        // More misaligned ranges than the probes, all long enough but for alignment, and
        // one aligned range deep in the same length band: it is found, not missed.
        let mut free = FreeRanges::default();
        for i in 0..(PROBES * 4) {
            free.insert(1, i * 1024 + 8, 64);
        }
        free.insert(1, 100 * 1024, 64);
        assert_eq!(free.take(64, 64), Some((1, 100 * 1024)));
        // None left that can hold it: exhausted, though many ranges are long enough.
        assert_eq!(free.take(64, 64), None);
        assert_eq!(free.take(65, 1), None);
        assert_eq!(free.take(64, 8), Some((1, 8)));
        ranges(&free);
    }

    #[test]
    fn zero_and_huge_requests_do_not_break_the_indexes() {
        let mut free = FreeRanges::default();
        free.insert(1, 0, 4096);
        assert_eq!(free.take(usize::MAX, 1), None);
        assert_eq!(free.take(usize::MAX - 10, 4096), None);
        assert_eq!(ranges(&free), [(1, 0, 4096)]);
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn interleaved_mallocs_and_frees_match_a_model() {
        run(async {
            const ARENA: usize = 256 * 1024;
            let mem = fixed(ARENA).await.expect("fixed");
            let (base, arena_len) = {
                let st = lock(&mem.state);
                let (_, mapping) = st.arenas.iter().next().expect("one arena");
                (mapping.addr.as_u64(), mapping.len)
            };
            // The model: the live allocations, start address -> (length, tag byte).
            let mut model: BTreeMap<u64, (usize, u8)> = BTreeMap::new();
            let mut live: Vec<Allocation> = Vec::new();
            let mut rng = Rng(0x1234_5678_9abc_def1);
            let (mut failures, mut successes) = (0, 0);
            for step in 0..4000u32 {
                if live.is_empty() || rng.below(100) < 55 {
                    // Sizes below RECLAIM_MIN, so frees go straight back to the free list.
                    let size = match rng.below(4) {
                        0 => 1 + rng.below(16) as usize,
                        1 => 1 + rng.below(256) as usize,
                        2 => 1 + rng.below(4096) as usize,
                        _ => 1 + rng.below(20_000) as usize,
                    };
                    let align = 1usize << rng.below(13);
                    match mem.malloc(size, align).await {
                        Ok(a) => {
                            successes += 1;
                            let addr = a.addr().as_u64();
                            assert_eq!(a.len(), size);
                            assert_eq!(addr % align as u64, 0, "step {step}: misaligned");
                            assert!(addr >= base && addr + size as u64 <= base + arena_len as u64);
                            if let Some((&s, &(l, _))) =
                                model.range(..addr + size as u64).next_back()
                            {
                                assert!(
                                    s + l as u64 <= addr,
                                    "step {step}: [{addr:#x}, +{size}) overlaps [{s:#x}, +{l})"
                                );
                            }
                            let tag = (step % 251) as u8;
                            a.write(0, &[tag]).await.expect("write");
                            a.write(size - 1, &[tag]).await.expect("write");
                            model.insert(addr, (size, tag));
                            live.push(a);
                        }
                        Err(Error::OutOfMemory { .. }) => {
                            failures += 1;
                            // Exhaustion is exact: no gap between live allocations holds it.
                            let mut gap_start = base;
                            let ends = model
                                .iter()
                                .map(|(&s, &(l, _))| (s, s + l as u64))
                                .chain([(base + arena_len as u64, 0)]);
                            for (start, end) in ends {
                                let aligned = gap_start.next_multiple_of(align as u64);
                                assert!(
                                    aligned + size as u64 > start,
                                    "step {step}: {size} bytes at {align} fit at {aligned:#x} \
                                     but malloc failed"
                                );
                                gap_start = end;
                            }
                        }
                        Err(e) => panic!("step {step}: {e}"),
                    }
                } else {
                    let a = live.swap_remove(rng.below(live.len() as u64) as usize);
                    let (len, tag) = model.remove(&a.addr().as_u64()).expect("in the model");
                    // Nobody else wrote into it meanwhile.
                    assert_eq!(a.read(0, 1).await.expect("read"), [tag]);
                    assert_eq!(a.read(len - 1, 1).await.expect("read"), [tag]);
                    drop(a);
                }
                let st = lock(&mem.state);
                assert_eq!(st.in_use, model.values().map(|v| v.0).sum::<usize>());
                assert_eq!(st.live.len(), model.len());
                // The free ranges are exactly the gaps between live allocations.
                let free = ranges(&st.free);
                let mut covered: usize = free.iter().map(|r| r.2).sum();
                covered += st.in_use;
                assert_eq!(covered, arena_len, "step {step}: bytes lost or doubled");
            }
            assert!(successes > 1000 && failures > 0, "{successes} / {failures}");
            drop(live);
            assert_eq!(mem.bytes_in_use(), 0);
            // Everything merged back into one range: the whole arena can be taken again.
            let whole = mem.malloc(arena_len, PAGE_SIZE).await.expect("whole arena");
            assert_eq!(whole.addr().as_u64(), base);
        })
    }

    #[test]
    fn growth_keeps_using_older_arenas_first_when_they_fit() {
        run(async {
            let mem = fresh();
            // Fill two arenas with 64 KiB blocks (kept pages: no reclamation queue).
            let mut blocks = Vec::new();
            for _ in 0..(2 * ARENA_SIZE / (64 * 1024)) {
                let mut b = mem.malloc(64 * 1024, 16).await.expect("malloc");
                b.keep_pages_when_freed();
                blocks.push(b);
            }
            assert_eq!(lock(&mem.state).arenas.len(), 2);
            // Free one block in the middle of the first arena: the next block of that size
            // goes exactly there, and no third arena is mapped.
            let hole = blocks.remove(3);
            let addr = hole.addr();
            drop(hole);
            let again = mem.malloc(64 * 1024, 16).await.expect("malloc");
            assert_eq!(again.addr(), addr);
            assert_eq!(lock(&mem.state).arenas.len(), 2);
            // A request larger than an arena gets an arena of its own.
            let big = mem.malloc(ARENA_SIZE + 1, 8).await.expect("big");
            assert_eq!(lock(&mem.state).arenas.len(), 3);
            drop((blocks, again, big));
            assert_eq!(mem.bytes_in_use(), 0);
            // The pages of `again` and `big` wait for reclamation; then they merge back too.
            mem.reclaim().await;
            let st = lock(&mem.state);
            let free = ranges(&st.free);
            assert_eq!(
                free.len(),
                3,
                "each arena merged back into one range: {free:?}"
            );
        })
    }
}

#[cfg(test)]
mod empty_allocation_tests {
    //! 0-byte allocations take no memory and stay 0 bytes.

    use super::tests::{fixed, fresh, run};
    use super::*;

    #[test]
    fn zero_bytes_take_nothing_and_stay_zero() {
        run(async {
            let mem = fresh();
            for align in [1, 8, 64, PAGE_SIZE] {
                let a = mem.malloc(0, align).await.expect("malloc(0)");
                assert_eq!(a.len(), 0);
                assert!(a.is_empty());
                assert_ne!(a.addr().as_u64(), 0, "not null");
                assert_eq!(a.addr().as_u64() % align as u64, 0, "aligned");
                assert_eq!(a.read(0, 0).await.expect("read"), Vec::<u8>::new());
                a.write(0, b"").await.expect("write");
                assert!(a.write(0, b"x").await.is_err(), "no room for a byte");
                let (x, y) = a.split(0).expect("split");
                let joined = x.merge(y).map_err(|u| u.error).expect("merge");
                assert_eq!(joined.len(), 0);
            }
            assert_eq!(mem.bytes_in_use(), 0);
            assert!(lock(&mem.state).arenas.is_empty(), "no arena was mapped");
            // A 0-byte allocation never merges with a real one.
            let real = mem.malloc(16, 16).await.expect("malloc");
            let empty = mem.malloc(0, 16).await.expect("malloc(0)");
            assert!(real.merge(empty).is_err());
            assert_eq!(mem.bytes_in_use(), 0);

            // A fixed allocator of 0 bytes has no arena: only 0-byte requests succeed.
            let fixed = fixed(0).await.expect("fixed(0)");
            assert_eq!(fixed.malloc(0, 8).await.expect("malloc(0)").len(), 0);
            let err = fixed.malloc(1, 1).await.expect_err("no room");
            assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
        })
    }
}
