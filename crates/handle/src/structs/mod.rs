//! Serialization of values to and from the memory of an address space: the [`Struct`]
//! trait, and [`Pod`] for plain kernel structs.
//!
//! # Safety
//! The unsafe code converts between `Pod` values and bytes, and implements `Pod`. `Pod`'s
//! contract (every byte initialised, so no padding; every bit pattern a valid value) makes
//! the conversions sound, and the `pod!` macro proves the no-padding half of it at
//! compile time for every struct it is implemented for here.
#![allow(unsafe_code)]

/// Implements `Pod` for a struct after proving at compile time that it has no padding
/// and the size the kernel expects: `pod!(Type { field, ... }, size)`.
///
/// The field list must name every field exactly once (a struct pattern without `..`
/// checks that), each field's type must be `Pod`, and the struct's size must equal both
/// the sum of its fields' sizes (so there is no padding between or after them) and
/// `size`. The struct must be `#[repr(C)]`, `#[repr(C, packed)]` or `#[repr(transparent)]`,
/// which the invocation site's comment states.
macro_rules! pod {
    ($t:ident { $($f:tt),* $(,)? }, $size:expr) => {
        // SAFETY: `$t` has a fixed C layout (see the comment at the invocation), its fields
        // are all `Pod` (so every byte of each is initialised and any bit pattern is a
        // valid value), and the assertions below prove it has no padding: every byte of
        // a `$t` is a byte of one of its fields.
        unsafe impl $crate::structs::Pod for $t {}
        const _: () = {
            #[allow(dead_code)]
            fn every_field_listed_once(v: $t) {
                let $t { $($f: _),* } = v;
            }
            assert!(
                ::std::mem::size_of::<$t>() == 0 $(+ $crate::structs::field_size(|v: $t| v.$f))*,
                concat!(stringify!($t), " has padding: make it explicit fields"),
            );
            assert!(
                ::std::mem::size_of::<$t>() == $size,
                concat!(stringify!($t), " is not the size the kernel uses"),
            );
        };
    };
}

/// The size of a `Pod` field, named by a function reading it (for `pod!`).
pub(crate) const fn field_size<T, F: Pod>(_read: fn(T) -> F) -> usize {
    std::mem::size_of::<F>()
}

use crate::error::{Error, Result};

mod events;
mod fd;
mod fs;
mod identity;
mod process;
mod socket;

pub use events::*;
pub use fd::*;
pub use fs::*;
pub use identity::*;
pub use process::*;
pub use socket::*;

/// `struct timespec`: seconds and nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsec: i64,
}

// repr(C): two i64s.
pod!(Timespec { sec, nsec }, 16);

impl Timespec {
    /// A duration as a timespec.
    pub fn from_duration(d: std::time::Duration) -> Self {
        Timespec {
            sec: d.as_secs() as i64,
            nsec: i64::from(d.subsec_nanos()),
        }
    }
}

/// The kernel's signal set (`kernel_sigset_t`, 8 bytes on x86-64): bit `n - 1` stands for
/// signal `n`. Not libc's 128-byte `sigset_t`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sigset(pub u64);

// repr(transparent) over a u64.
pod!(Sigset { 0 }, 8);

impl Sigset {
    /// The size the kernel expects as `sigsetsize` ([`rsyscall_near::KERNEL_SIGSET_SIZE`]).
    pub const KERNEL_SIZE: usize = rsyscall_near::KERNEL_SIGSET_SIZE;

    /// The empty set.
    pub const fn empty() -> Self {
        Sigset(0)
    }

    /// Every signal.
    pub const fn full() -> Self {
        Sigset(!0)
    }

    /// Whether `sig` is in the set.
    pub fn contains(&self, sig: rsyscall_near::Signal) -> bool {
        self.0 & (1 << (sig.as_raw() - 1)) != 0
    }

    /// Adds `sig`.
    pub fn insert(&mut self, sig: rsyscall_near::Signal) {
        self.0 |= 1 << (sig.as_raw() - 1);
    }

    /// Removes `sig`.
    pub fn remove(&mut self, sig: rsyscall_near::Signal) {
        self.0 &= !(1 << (sig.as_raw() - 1));
    }
}

impl<const N: usize> From<[rsyscall_near::Signal; N]> for Sigset {
    fn from(sigs: [rsyscall_near::Signal; N]) -> Self {
        let mut s = Sigset::empty();
        for sig in sigs {
            s.insert(sig);
        }
        s
    }
}

/// A type whose values can live in a [`Pointer`](crate::Pointer): it can be turned into the
/// bytes the kernel expects and parsed back from the bytes the kernel wrote.
pub trait Struct: 'static {
    /// What reading the memory gives back (`Self` for sized types, `Vec<T>` for `[T]`).
    type Owned: Send + 'static;

    /// The memory representation of `self`.
    fn to_bytes(&self) -> Vec<u8>;

    /// Parses the memory representation; `bytes` is exactly what the pointer covers (or
    /// the part of it a syscall filled).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the bytes do not form a value.
    fn from_bytes(bytes: &[u8]) -> Result<Self::Owned>;
}

/// A [`Struct`] with a fixed size, so [`Task::malloc`](crate::Task::malloc) can allocate one
/// without being told how much.
pub trait FixedSize: Struct + Sized {
    /// Size in bytes.
    const SIZE: usize;
    /// Alignment in bytes.
    const ALIGN: usize;
}

/// Plain old data: a `Copy` type whose memory image is exactly what the kernel reads and
/// writes: every byte of a value is initialised data, and every bit pattern of its size is
/// a valid value.
///
/// Values are turned into bytes by reading all `size_of::<T>()` bytes of them as `u8`
/// ([`pod_bytes`]), and made from bytes the kernel wrote ([`pod_from_bytes`]).
///
/// # Safety
/// Implement only for a type that:
/// - has no padding, nor any other byte that may be uninitialised (no `MaybeUninit`, no
///   union whose variants differ in size): reading an uninitialised byte as `u8` is
///   undefined behaviour, and in a `#[repr(C)]` struct the gaps the compiler leaves for
///   alignment (between fields and at the end) are exactly such bytes. Spell gaps out as
///   fields (zero in every constructor) instead;
/// - accepts every bit pattern of its size as a valid value: integers and arrays and
///   structs of them, never `bool`, `char`, enums, references or pointers (addresses are
///   plain integers here);
/// - has a fixed layout: a primitive integer, an array of `Pod`, or a `#[repr(C)]`
///   (possibly `packed`) or `#[repr(transparent)]` struct of `Pod` fields.
///
/// In this crate, structs implement it through the `pod!` macro, which checks at compile
/// time that the size is the sum of the fields' sizes (so there is no padding).
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod_primitive {
    ($($t:ty),* $(,)?) => {
        // SAFETY: a primitive integer: every byte is value bits, and every bit pattern is
        // a valid value.
        $(unsafe impl Pod for $t {})*
    };
}
pod_primitive!(u8, i8, u16, i16, u32, i32, u64, i64, usize, isize);
// SAFETY: an array's elements follow each other with no gap (an element's size is a
// multiple of its alignment) and nothing after the last, so an array of `Pod` values has
// no byte that is not a byte of a `Pod` element; any bit pattern is valid element-wise.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The memory image of a `Pod` value.
pub fn pod_bytes<T: Pod>(value: &T) -> Vec<u8> {
    let mut out = vec![0u8; std::mem::size_of::<T>()];
    // SAFETY: `value` is valid for reads of size_of::<T>() bytes and `out`, a fresh
    // buffer (so not overlapping it), for writes of as many. `T: Pod` guarantees that every
    // one of those bytes is initialised (no padding), so reading them as `u8` is defined.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (value as *const T).cast::<u8>(),
            out.as_mut_ptr(),
            out.len(),
        );
    }
    out
}

/// Parses a `Pod` value from the start of `bytes`.
///
/// # Errors
/// [`Error::InvalidArgument`] if `bytes` is shorter than the type.
pub fn pod_from_bytes<T: Pod>(bytes: &[u8]) -> Result<T> {
    let size = std::mem::size_of::<T>();
    if bytes.len() < size {
        return Err(Error::invalid(
            "read",
            format!(
                "{} bytes cannot hold a {} of {size} bytes",
                bytes.len(),
                std::any::type_name::<T>()
            ),
        ));
    }
    // SAFETY: at least size_of::<T>() bytes are readable; T is Pod, so any bit pattern is a
    // valid T; read_unaligned copes with the buffer's alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

impl<T: Pod> Struct for T {
    type Owned = T;
    fn to_bytes(&self) -> Vec<u8> {
        pod_bytes(self)
    }
    fn from_bytes(bytes: &[u8]) -> Result<T> {
        pod_from_bytes(bytes)
    }
}

impl<T: Pod> FixedSize for T {
    const SIZE: usize = std::mem::size_of::<T>();
    const ALIGN: usize = std::mem::align_of::<T>();
}

impl<T: Pod> Struct for [T] {
    type Owned = Vec<T>;
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(std::mem::size_of_val(self));
        for v in self {
            out.extend_from_slice(&pod_bytes(v));
        }
        out
    }
    fn from_bytes(bytes: &[u8]) -> Result<Vec<T>> {
        let size = std::mem::size_of::<T>().max(1);
        if !bytes.len().is_multiple_of(size) {
            return Err(Error::invalid(
                "read",
                format!(
                    "{} bytes is not a whole number of {size}-byte elements",
                    bytes.len()
                ),
            ));
        }
        bytes.chunks_exact(size).map(pod_from_bytes).collect()
    }
}

/// A NUL-terminated string (a path, a name): written with its terminating NUL, read back up
/// to the first NUL.
impl Struct for std::ffi::CStr {
    type Owned = std::ffi::CString;
    fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_with_nul().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Result<std::ffi::CString> {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::ffi::CString::new(&bytes[..end]).map_err(|_| Error::invalid("read", "interior NUL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_struct_layouts_match_libc() {
        assert_eq!(
            std::mem::size_of::<Timespec>(),
            std::mem::size_of::<libc::timespec>()
        );
        assert_eq!(
            std::mem::offset_of!(Timespec, nsec),
            std::mem::offset_of!(libc::timespec, tv_nsec)
        );
        let s = Sigset::from([
            rsyscall_near::Signal::SIGINT,
            rsyscall_near::Signal::SIGCHLD,
        ]);
        assert_eq!(s.0, (1 << 1) | (1 << 16));
        assert!(s.contains(rsyscall_near::Signal::SIGCHLD));
        assert_eq!(
            Timespec::from_duration(std::time::Duration::from_millis(1500)),
            Timespec {
                sec: 1,
                nsec: 500_000_000
            }
        );
    }

    #[test]
    fn pod_round_trips() {
        let v: u64 = 0x0102_0304_0506_0708;
        assert_eq!(v.to_bytes(), v.to_ne_bytes());
        assert_eq!(u64::from_bytes(&v.to_ne_bytes()).expect("parse"), v);
        assert!(u64::from_bytes(&[1, 2]).is_err());
        let arr: &[i32] = &[1, -2, 3];
        let bytes = arr.to_bytes();
        assert_eq!(bytes.len(), 12);
        assert_eq!(<[i32]>::from_bytes(&bytes).expect("parse"), vec![1, -2, 3]);
        assert!(<[i32]>::from_bytes(&bytes[..5]).is_err());
        let s = std::ffi::CString::new("abc").expect("cstring");
        assert_eq!(s.as_c_str().to_bytes(), b"abc");
        assert_eq!(Struct::to_bytes(s.as_c_str()), b"abc\0");
        assert_eq!(
            std::ffi::CStr::from_bytes(b"ab\0junk")
                .expect("parse")
                .as_bytes(),
            b"ab"
        );
    }
}
