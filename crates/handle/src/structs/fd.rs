//! Structs of the fd syscalls: flock, file_clone_range, and the limit of iovec lists.
//!
//! Each mirrors the kernel's layout on x86-64 with `#[repr(C)]`; padding the compiler would
//! insert is spelled out as private fields, so every byte of the memory image is defined.

use rsyscall_near::{LockType, SEEK};

// `struct iovec` is `Iovec`, defined with the socket structs (msghdr uses it too); the
// vectored fd methods build arrays of it from owned pointers, one allocation per call.

/// `IOV_MAX`: the most buffers a vectored read or write takes.
pub const IOV_MAX: usize = 1024;

/// `struct flock`: a byte-range record lock, for
/// [`FileDescriptor::lock`](crate::FileDescriptor::lock).
///
/// The range starts `start` bytes from where `whence` says; a `len` of 0 extends it to
/// the end of the file however far the file grows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flock {
    /// The lock type (`l_type`): `F_RDLCK`, `F_WRLCK` or `F_UNLCK`; see
    /// [`Flock::lock_type`].
    pub l_type: i16,
    /// Where `l_start` counts from (`l_whence`): `SEEK_SET`, `SEEK_CUR` or `SEEK_END`.
    pub l_whence: i16,
    _pad0: u32,
    /// Start of the range (`l_start`).
    pub l_start: i64,
    /// Length of the range, 0 for "to the end of the file" (`l_len`).
    pub l_len: i64,
    /// For `GETLK` results, the pid holding the conflicting lock (-1 for an
    /// open-file-description lock); must be 0 when setting `OFD` locks (`l_pid`).
    pub l_pid: i32,
    _pad1: u32,
}

// repr(C): integers only, with the padding made explicit; every bit pattern is valid.
pod!(
    Flock {
        l_type,
        l_whence,
        _pad0,
        l_start,
        l_len,
        l_pid,
        _pad1
    },
    32
);

impl Flock {
    /// A lock of type `kind` on `len` bytes (0: to the end of the file) starting `start`
    /// bytes from `whence` (`SEEK::SET`, `SEEK::CUR` or `SEEK::END`), with `l_pid` 0.
    pub fn new(kind: LockType, whence: SEEK, start: i64, len: i64) -> Self {
        Flock {
            l_type: kind as i16,
            l_whence: whence as i32 as i16,
            l_start: start,
            l_len: len,
            ..Flock::default()
        }
    }

    /// A lock of type `kind` on the whole file.
    pub fn whole_file(kind: LockType) -> Self {
        Flock::new(kind, SEEK::SET, 0, 0)
    }

    /// The lock type, if `l_type` holds a known one.
    pub fn lock_type(&self) -> Option<LockType> {
        LockType::from_raw(self.l_type)
    }
}

/// `struct file_clone_range`: the argument of the `FICLONERANGE` ioctl, which shares
/// `src_length` bytes of the file `src_fd` at `src_offset` into the target file at
/// `dest_offset` (see
/// [`FileDescriptor::clone_range_from`](crate::FileDescriptor::clone_range_from)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileCloneRange {
    /// The source fd, in the table of the task doing the ioctl.
    pub src_fd: i64,
    /// Offset in the source.
    pub src_offset: u64,
    /// Length to clone; 0 means to the end of the source.
    pub src_length: u64,
    /// Offset in the destination.
    pub dest_offset: u64,
}

// repr(C): integers only, no padding; every bit pattern is valid.
pod!(
    FileCloneRange {
        src_fd,
        src_offset,
        src_length,
        dest_offset
    },
    32
);

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;
    use crate::structs::{Iovec, Struct};

    #[test]
    fn iovec_layout_matches_libc() {
        assert_eq!(size_of::<Iovec>(), size_of::<libc::iovec>());
        assert_eq!(align_of::<Iovec>(), align_of::<libc::iovec>());
        assert_eq!(offset_of!(Iovec, base), offset_of!(libc::iovec, iov_base));
        assert_eq!(offset_of!(Iovec, len), offset_of!(libc::iovec, iov_len));
        assert_eq!(IOV_MAX, libc::UIO_MAXIOV as usize);
    }

    #[test]
    fn flock_layout_matches_libc() {
        assert_eq!(size_of::<Flock>(), size_of::<libc::flock>());
        assert_eq!(align_of::<Flock>(), align_of::<libc::flock>());
        assert_eq!(offset_of!(Flock, l_type), offset_of!(libc::flock, l_type));
        assert_eq!(
            offset_of!(Flock, l_whence),
            offset_of!(libc::flock, l_whence)
        );
        assert_eq!(offset_of!(Flock, l_start), offset_of!(libc::flock, l_start));
        assert_eq!(offset_of!(Flock, l_len), offset_of!(libc::flock, l_len));
        assert_eq!(offset_of!(Flock, l_pid), offset_of!(libc::flock, l_pid));
    }

    #[test]
    fn file_clone_range_layout_matches_libc() {
        type L = libc::file_clone_range;
        assert_eq!(size_of::<FileCloneRange>(), size_of::<L>());
        assert_eq!(align_of::<FileCloneRange>(), align_of::<L>());
        assert_eq!(offset_of!(FileCloneRange, src_fd), offset_of!(L, src_fd));
        assert_eq!(
            offset_of!(FileCloneRange, src_offset),
            offset_of!(L, src_offset)
        );
        assert_eq!(
            offset_of!(FileCloneRange, src_length),
            offset_of!(L, src_length)
        );
        assert_eq!(
            offset_of!(FileCloneRange, dest_offset),
            offset_of!(L, dest_offset)
        );
    }

    #[test]
    fn flock_round_trips_and_decodes() {
        let f = Flock::new(LockType::Write, SEEK::END, -10, 5);
        assert_eq!(f.l_type, libc::F_WRLCK as i16);
        assert_eq!(f.l_whence, libc::SEEK_END as i16);
        assert_eq!(f.lock_type(), Some(LockType::Write));
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), 32);
        assert_eq!(Flock::from_bytes(&bytes).expect("parse"), f);
        let odd = Flock {
            l_type: 77,
            ..Flock::default()
        };
        assert_eq!(odd.lock_type(), None);
        assert_eq!(
            Flock::whole_file(LockType::Unlock).lock_type(),
            Some(LockType::Unlock)
        );
    }
}
