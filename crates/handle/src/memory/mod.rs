//! Memory in an address space: arenas over shared anonymous mappings, and allocations.
//!
//! # Safety
//! Unsafe code here maps fresh arenas (a non-fixed anonymous mmap touches nothing) and
//! copies into and out of allocations this module hands out, whose ranges lie inside arenas
//! that are never unmapped while an allocation in them exists.
#![allow(unsafe_code)]
//!
//! An [`Allocation`] owns a range of one arena and gives it back when dropped (pure
//! bookkeeping: nothing is unmapped while any allocation of the arena lives). Arenas are
//! `MAP_SHARED | MAP_ANONYMOUS`, so a child cloned without `CLONE_VM` still shares them.

mod copy;
mod inflight;

pub use inflight::InFlight;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use rsyscall_far as far;
use rsyscall_near::{self as near, Address, MAP, MemoryMapping, PROT};

use crate::error::{Error, Result};

/// Size of a fresh arena, unless an allocation needs more.
const ARENA_SIZE: usize = 1 << 20;
const PAGE_SIZE: usize = 4096;

struct Arena {
    mapping: MemoryMapping,
    /// Free ranges: offset -> length, never adjacent (merged on free).
    free: BTreeMap<usize, usize>,
}

impl Arena {
    /// First fit: the lowest free range that can hold `size` bytes at `align`.
    fn take(&mut self, size: usize, align: usize) -> Option<usize> {
        let base = self.mapping.addr.as_u64() as usize;
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

    fn used(&self) -> usize {
        self.mapping.len - self.free.values().sum::<usize>()
    }
}

/// The allocator of one address space.
pub struct Memory {
    space: far::AddressSpace,
    arenas: Mutex<Vec<Arena>>,
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memory")
            .field("space", &self.space)
            .finish_non_exhaustive()
    }
}

impl Memory {
    /// The allocator of the local address space (shared by every clone child made with
    /// `CLONE_VM`, which is every thread `clone` makes).
    pub fn local() -> &'static Arc<Memory> {
        static LOCAL: OnceLock<Arc<Memory>> = OnceLock::new();
        LOCAL.get_or_init(|| Memory::new(crate::task::local_namespaces().address_space))
    }

    /// A fresh allocator for `space`, with no arenas yet.
    pub(crate) fn new(space: far::AddressSpace) -> Arc<Memory> {
        Arc::new(Memory {
            space,
            arenas: Mutex::new(Vec::new()),
        })
    }

    /// The address space this allocator serves.
    pub fn space(&self) -> far::AddressSpace {
        self.space
    }

    /// Whether the memory is in this process's own address space, so its bytes can be
    /// copied directly.
    pub fn is_local(&self) -> bool {
        self.space == crate::task::local_namespaces().address_space
    }

    /// Allocates `size` bytes (at least 1) aligned to `align` (a power of two, at most a
    /// page).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad alignment, [`Error::OutOfMemory`] if a new arena
    /// cannot be mapped.
    pub fn malloc(self: &Arc<Self>, size: usize, align: usize) -> Result<Allocation> {
        if !align.is_power_of_two() || align > PAGE_SIZE {
            return Err(Error::invalid(
                "malloc",
                format!("alignment {align} is not a power of two up to {PAGE_SIZE}"),
            ));
        }
        let size = size.max(1);
        let mut arenas = self.arenas.lock().unwrap_or_else(|e| e.into_inner());
        for (index, arena) in arenas.iter_mut().enumerate() {
            if let Some(offset) = arena.take(size, align) {
                return Ok(self.allocation(arena, index, offset, size));
            }
        }
        let len = size
            .checked_add(PAGE_SIZE - 1)
            .map(|s| (s & !(PAGE_SIZE - 1)).max(ARENA_SIZE))
            .ok_or_else(|| Error::invalid("malloc", format!("size {size} overflows")))?;
        let mapping = self.map_arena(len)?;
        let mut arena = Arena {
            mapping,
            free: BTreeMap::from([(0, len)]),
        };
        let offset = arena.take(size, align).ok_or_else(|| Error::OutOfMemory {
            space: self.space,
            detail: format!("fresh arena of {len} bytes cannot hold {size}"),
        })?;
        arenas.push(arena);
        let index = arenas.len() - 1;
        Ok(self.allocation(&arenas[index], index, offset, size))
    }

    fn allocation(
        self: &Arc<Self>,
        arena: &Arena,
        index: usize,
        offset: usize,
        len: usize,
    ) -> Allocation {
        Allocation {
            memory: self.clone(),
            arena: index,
            offset,
            len,
            addr: Address::new(arena.mapping.addr.as_u64() + offset as u64),
        }
    }

    fn map_arena(&self, len: usize) -> Result<MemoryMapping> {
        if !self.is_local() {
            return Err(Error::OutOfMemory {
                space: self.space,
                detail: "arenas in other address spaces are not supported yet".into(),
            });
        }
        let req = near::Request::new(
            libc::SYS_mmap,
            [
                0,
                len as i64,
                (PROT::READ | PROT::WRITE).bits() as i64,
                (MAP::SHARED | MAP::ANONYMOUS).bits() as i64,
                -1,
                0,
            ],
        );
        // SAFETY: a non-fixed anonymous mapping creates fresh memory and touches nothing.
        let ret =
            unsafe { near::LocalSyscall.syscall_sync(req) }.map_err(|e| Error::OutOfMemory {
                space: self.space,
                detail: format!("mmap of a {len}-byte arena failed: {e}"),
            })?;
        Ok(MemoryMapping {
            addr: Address::new(ret as u64),
            len,
        })
    }

    /// Bytes currently allocated, over all arenas.
    pub fn bytes_in_use(&self) -> usize {
        let arenas = self.arenas.lock().unwrap_or_else(|e| e.into_inner());
        arenas.iter().map(Arena::used).sum()
    }

    fn free(&self, arena: usize, offset: usize, len: usize) {
        let mut arenas = self.arenas.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(arena) = arenas.get_mut(arena) {
            arena.give_back(offset, len);
        }
    }
}

/// An owned range of memory in one address space, given back when dropped.
pub struct Allocation {
    memory: Arc<Memory>,
    arena: usize,
    offset: usize,
    len: usize,
    addr: Address,
}

impl fmt::Debug for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Allocation({:?}, {} bytes)", self.addr, self.len)
    }
}

impl Allocation {
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

    /// Whether it is zero-sized (never: allocations are at least one byte).
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

    /// Writes `data` at `offset`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the range is outside the allocation.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check("Allocation::write", offset, data.len())?;
        self.require_local("Allocation::write")?;
        // SAFETY: the range is inside this allocation, which this object owns, in a mapping
        // of the local address space that stays mapped while the allocation exists.
        unsafe { copy::write(Address::new(self.addr.as_u64() + offset as u64), data) };
        Ok(())
    }

    /// Reads `len` bytes at `offset`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the range is outside the allocation.
    pub fn read(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        self.check("Allocation::read", offset, len)?;
        self.require_local("Allocation::read")?;
        let mut out = vec![0u8; len];
        // SAFETY: as in `write`.
        unsafe { copy::read(Address::new(self.addr.as_u64() + offset as u64), &mut out) };
        Ok(out)
    }

    fn require_local(&self, what: &'static str) -> Result<()> {
        if self.memory.is_local() {
            Ok(())
        } else {
            Err(Error::invalid(
                what,
                "memory of another address space needs a transport",
            ))
        }
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.memory.free(self.arena, self.offset, self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_align_reuse_and_round_trip() {
        let mem = &Memory::new(crate::task::local_namespaces().address_space);
        let before = mem.bytes_in_use();
        let a = mem.malloc(10, 16).expect("malloc");
        assert_eq!(a.addr().as_u64() % 16, 0);
        let b = mem.malloc(100, 64).expect("malloc");
        assert_eq!(b.addr().as_u64() % 64, 0);
        b.write(3, b"hello").expect("write");
        assert_eq!(b.read(3, 5).expect("read"), b"hello");
        assert!(b.write(98, b"xyz").is_err());
        let addr = a.addr();
        drop(a);
        let c = mem.malloc(10, 16).expect("malloc");
        assert_eq!(c.addr(), addr, "freed space is reused");
        drop((b, c));
        assert_eq!(mem.bytes_in_use(), before);
        assert!(mem.malloc(8, 3).is_err());
        let big = mem.malloc(3 << 20, 8).expect("big");
        assert!(big.len() == 3 << 20);
    }
}
