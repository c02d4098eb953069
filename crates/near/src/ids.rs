//! Near ids: plain numbers that mean something only in one namespace of one process.

use std::fmt;

/// A file descriptor number in some fd table.
///
/// Guarantees nothing: the number means nothing without the task whose table it indexes,
/// and the same number may name another file once closed.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileDescriptor(i32);

impl FileDescriptor {
    /// The fd with number `n`.
    pub const fn new(n: i32) -> Self {
        FileDescriptor(n)
    }
    /// The number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }
    /// The number as a syscall argument.
    pub const fn arg(self) -> i64 {
        self.0 as i64
    }
}

impl fmt::Debug for FileDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd {}", self.0)
    }
}

/// A virtual address in some address space.
///
/// Guarantees nothing: it is valid only in the address space it came from, and only while
/// the mapping containing it exists.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(u64);

impl Address {
    /// The null address.
    pub const NULL: Address = Address(0);
    /// The address `a`.
    pub const fn new(a: u64) -> Self {
        Address(a)
    }
    /// The address of a local pointer (meaningful only in the local address space).
    pub fn from_ptr<T: ?Sized>(p: *const T) -> Self {
        Address(p as *const u8 as usize as u64)
    }
    /// The numeric address.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// The address as a syscall argument.
    pub const fn arg(self) -> i64 {
        self.0 as i64
    }
    /// This address plus `n` bytes, or `None` on overflow.
    pub fn checked_add(self, n: u64) -> Option<Address> {
        self.0.checked_add(n).map(Address)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A process id in some pid namespace.
///
/// Guarantees nothing: a pid may be reused by an unrelated process once the process it
/// named has been reaped.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(i32);

impl Pid {
    /// The pid `n`.
    pub const fn new(n: i32) -> Self {
        Pid(n)
    }
    /// The number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }
    /// The pid as a syscall argument.
    pub const fn arg(self) -> i64 {
        self.0 as i64
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.0)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A process group id; the same caveats as [`Pid`].
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ProcessGroup(pub Pid);

/// A memory mapping: start address and length in bytes.
///
/// Guarantees nothing about the mapping still existing; owning handles do that.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MemoryMapping {
    /// Start of the mapping (page aligned).
    pub addr: Address,
    /// Length in bytes.
    pub len: usize,
}
