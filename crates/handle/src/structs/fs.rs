//! Structs of the filesystem syscalls: stat, statx, dirent64 lists, and path arguments.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::path::{Path, PathBuf};

use super::{Struct, Timespec};
use crate::error::{Error, Result};

/// Anything usable as a path argument: bytes (`&[u8]`, `Vec<u8>`, `b"..."`), strings,
/// `Path`/`PathBuf`, `OsStr`/`OsString`, `CStr`/`CString`. The bytes are sent as they are,
/// NUL-terminated; a NUL byte inside them is refused with
/// [`Error::InvalidArgument`] before anything is sent.
pub trait PathArg {
    /// The path's bytes, without a terminating NUL.
    fn path_bytes(&self) -> &[u8];
}

impl PathArg for [u8] {
    fn path_bytes(&self) -> &[u8] {
        self
    }
}
impl<const N: usize> PathArg for [u8; N] {
    fn path_bytes(&self) -> &[u8] {
        self
    }
}
impl PathArg for Vec<u8> {
    fn path_bytes(&self) -> &[u8] {
        self
    }
}
impl PathArg for str {
    fn path_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl PathArg for String {
    fn path_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl PathArg for OsStr {
    fn path_bytes(&self) -> &[u8] {
        std::os::unix::ffi::OsStrExt::as_bytes(self)
    }
}
impl PathArg for OsString {
    fn path_bytes(&self) -> &[u8] {
        self.as_os_str().path_bytes()
    }
}
impl PathArg for Path {
    fn path_bytes(&self) -> &[u8] {
        self.as_os_str().path_bytes()
    }
}
impl PathArg for PathBuf {
    fn path_bytes(&self) -> &[u8] {
        self.as_os_str().path_bytes()
    }
}
impl PathArg for CStr {
    fn path_bytes(&self) -> &[u8] {
        self.to_bytes()
    }
}
impl PathArg for CString {
    fn path_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl<T: PathArg + ?Sized> PathArg for &T {
    fn path_bytes(&self) -> &[u8] {
        (**self).path_bytes()
    }
}

impl Timespec {
    /// For [`Task::utimensat`](crate::Task::utimensat): set this time to the current time.
    pub const UTIME_NOW: Timespec = Timespec {
        sec: 0,
        nsec: libc::UTIME_NOW,
    };
    /// For [`Task::utimensat`](crate::Task::utimensat): leave this time unchanged.
    pub const UTIME_OMIT: Timespec = Timespec {
        sec: 0,
        nsec: libc::UTIME_OMIT,
    };
}

/// The type of a file, from a mode's `S_IFMT` bits or a directory entry's `d_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// `DT_UNKNOWN`: the filesystem did not say (call stat).
    Unknown,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A directory.
    Directory,
    /// A block device.
    BlockDevice,
    /// A regular file.
    Regular,
    /// A symbolic link.
    Symlink,
    /// A unix socket.
    Socket,
    /// `DT_WHT`: a whiteout (overlay and union filesystems).
    Whiteout,
    /// A value this library does not know.
    Other(u8),
}

impl FileType {
    /// The type a `d_type` byte stands for.
    pub fn from_dirent_type(d_type: u8) -> FileType {
        match d_type {
            libc::DT_UNKNOWN => FileType::Unknown,
            libc::DT_FIFO => FileType::Fifo,
            libc::DT_CHR => FileType::CharDevice,
            libc::DT_DIR => FileType::Directory,
            libc::DT_BLK => FileType::BlockDevice,
            libc::DT_REG => FileType::Regular,
            libc::DT_LNK => FileType::Symlink,
            libc::DT_SOCK => FileType::Socket,
            14 => FileType::Whiteout,
            other => FileType::Other(other),
        }
    }

    /// The `d_type` byte of this type.
    pub fn to_dirent_type(self) -> u8 {
        match self {
            FileType::Unknown => libc::DT_UNKNOWN,
            FileType::Fifo => libc::DT_FIFO,
            FileType::CharDevice => libc::DT_CHR,
            FileType::Directory => libc::DT_DIR,
            FileType::BlockDevice => libc::DT_BLK,
            FileType::Regular => libc::DT_REG,
            FileType::Symlink => libc::DT_LNK,
            FileType::Socket => libc::DT_SOCK,
            FileType::Whiteout => 14,
            FileType::Other(t) => t,
        }
    }

    /// The type the `S_IFMT` bits of `mode` stand for (`d_type` is those bits shifted
    /// right by 12).
    pub fn from_mode(mode: u32) -> FileType {
        FileType::from_dirent_type(((mode & libc::S_IFMT) >> 12) as u8)
    }
}

/// `struct stat` as `fstat(2)`/`newfstatat(2)` write it on x86-64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// The device holding the file.
    pub dev: u64,
    /// The inode number.
    pub ino: u64,
    /// The number of hard links.
    pub nlink: u64,
    /// Type and permission bits (see [`Stat::file_type`]).
    pub mode: u32,
    /// The owner.
    pub uid: u32,
    /// The group.
    pub gid: u32,
    _pad0: i32,
    /// The device this file is, for device files.
    pub rdev: u64,
    /// The size in bytes.
    pub size: i64,
    /// The preferred I/O block size.
    pub blksize: i64,
    /// The number of 512-byte blocks allocated.
    pub blocks: i64,
    /// Last access.
    pub atime: Timespec,
    /// Last modification of the contents.
    pub mtime: Timespec,
    /// Last change of the metadata.
    pub ctime: Timespec,
    _unused: [i64; 3],
}

// repr(C): integers and Timespecs laid out without implicit padding (the explicit padding
// fields are integers), every bit pattern valid; checked against libc::stat below.
pod!(
    Stat {
        dev,
        ino,
        nlink,
        mode,
        uid,
        gid,
        _pad0,
        rdev,
        size,
        blksize,
        blocks,
        atime,
        mtime,
        ctime,
        _unused
    },
    144
);

const _: () = assert!(std::mem::size_of::<Stat>() == std::mem::size_of::<libc::stat>());

impl Stat {
    /// The file's type, from `mode`.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }

    /// The permission bits of `mode` (including set-uid, set-gid and sticky).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// `struct statx_timestamp`: a time in `struct statx`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatxTimestamp {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: u32,
    _reserved: i32,
}

// repr(C): integers, no implicit padding, every bit pattern valid.
pod!(
    StatxTimestamp {
        sec,
        nsec,
        _reserved
    },
    16
);

impl StatxTimestamp {
    /// As a [`Timespec`].
    pub fn to_timespec(self) -> Timespec {
        Timespec {
            sec: self.sec,
            nsec: i64::from(self.nsec),
        }
    }
}

/// `struct statx` as `statx(2)` writes it (256 bytes). Only the fields named in `mask`
/// were filled by the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statx {
    /// Which fields were filled (`STATX` bits; see [`Statx::has`]).
    pub mask: u32,
    /// The preferred I/O block size.
    pub blksize: u32,
    /// `STATX_ATTR_*` attribute bits.
    pub attributes: u64,
    /// The number of hard links.
    pub nlink: u32,
    /// The owner.
    pub uid: u32,
    /// The group.
    pub gid: u32,
    /// Type and permission bits.
    pub mode: u16,
    _spare0: u16,
    /// The inode number.
    pub ino: u64,
    /// The size in bytes.
    pub size: u64,
    /// The number of 512-byte blocks allocated.
    pub blocks: u64,
    /// Which bits of `attributes` the filesystem supports.
    pub attributes_mask: u64,
    /// Last access.
    pub atime: StatxTimestamp,
    /// Creation.
    pub btime: StatxTimestamp,
    /// Last change of the metadata.
    pub ctime: StatxTimestamp,
    /// Last modification of the contents.
    pub mtime: StatxTimestamp,
    /// Major number of the device this file is.
    pub rdev_major: u32,
    /// Minor number of the device this file is.
    pub rdev_minor: u32,
    /// Major number of the device holding the file.
    pub dev_major: u32,
    /// Minor number of the device holding the file.
    pub dev_minor: u32,
    /// The mount id.
    pub mnt_id: u64,
    /// Memory alignment for direct I/O.
    pub dio_mem_align: u32,
    /// File offset alignment for direct I/O.
    pub dio_offset_align: u32,
    /// The subvolume id.
    pub subvol: u64,
    /// Minimum size of an atomic write.
    pub atomic_write_unit_min: u32,
    /// Maximum size of an atomic write.
    pub atomic_write_unit_max: u32,
    /// Maximum number of segments of an atomic write.
    pub atomic_write_segments_max: u32,
    /// File offset alignment for direct I/O reads.
    pub dio_read_offset_align: u32,
    /// Optimised maximum size of an atomic write.
    pub atomic_write_unit_max_opt: u32,
    _spare2: u32,
    _spare3: [u64; 8],
}

// repr(C): integers and StatxTimestamps laid out without implicit padding, every bit
// pattern valid; checked against libc::statx below.
pod!(
    Statx {
        mask,
        blksize,
        attributes,
        nlink,
        uid,
        gid,
        mode,
        _spare0,
        ino,
        size,
        blocks,
        attributes_mask,
        atime,
        btime,
        ctime,
        mtime,
        rdev_major,
        rdev_minor,
        dev_major,
        dev_minor,
        mnt_id,
        dio_mem_align,
        dio_offset_align,
        subvol,
        atomic_write_unit_min,
        atomic_write_unit_max,
        atomic_write_segments_max,
        dio_read_offset_align,
        atomic_write_unit_max_opt,
        _spare2,
        _spare3
    },
    256
);

const _: () = assert!(std::mem::size_of::<Statx>() == 256);

impl Statx {
    /// Whether the kernel filled every field of `fields`.
    pub fn has(&self, fields: rsyscall_near::STATX) -> bool {
        rsyscall_near::STATX::from_bits_retain(self.mask).contains(fields)
    }

    /// The file's type, from `mode`.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(u32::from(self.mode))
    }

    /// The permission bits of `mode` (including set-uid, set-gid and sticky).
    pub fn permissions(&self) -> u32 {
        u32::from(self.mode) & 0o7777
    }
}

/// One directory entry, parsed from a `struct linux_dirent64` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    /// The inode number.
    pub ino: u64,
    /// The directory position after this entry (for `lseek`).
    pub off: i64,
    /// The entry's type, if the filesystem says.
    pub kind: FileType,
    /// The name, without NUL.
    pub name: Vec<u8>,
}

impl Dirent {
    /// The name as an `OsStr`.
    pub fn name_os(&self) -> &OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(&self.name)
    }
}

/// The offset of `d_name` in `struct linux_dirent64`: `d_ino` (8), `d_off` (8),
/// `d_reclen` (2), `d_type` (1).
const DIRENT_NAME_OFFSET: usize = 19;

/// The buffer `getdents64(2)` fills: a sequence of `struct linux_dirent64` records. Reading
/// a pointer to it parses the records into [`Dirent`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirentList(pub Vec<Dirent>);

impl Struct for DirentList {
    type Owned = Vec<Dirent>;

    /// Records as the kernel lays them out: each padded with NULs to a multiple of 8.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for d in &self.0 {
            let reclen = (DIRENT_NAME_OFFSET + d.name.len() + 1).next_multiple_of(8);
            let start = out.len();
            out.extend_from_slice(&d.ino.to_ne_bytes());
            out.extend_from_slice(&d.off.to_ne_bytes());
            out.extend_from_slice(&u16::try_from(reclen).unwrap_or(u16::MAX).to_ne_bytes());
            out.push(d.kind.to_dirent_type());
            out.extend_from_slice(&d.name);
            out.resize(start + reclen, 0);
        }
        out
    }

    /// Parses the records, checking every `d_reclen` and name so that a corrupt buffer is
    /// an error, never a panic or a read past the end.
    fn from_bytes(bytes: &[u8]) -> Result<Vec<Dirent>> {
        let bad = |at: usize, detail: &str| {
            Error::invalid(
                "getdents64",
                format!("corrupt dirent record at byte {at}: {detail}"),
            )
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let header = rest
                .get(..DIRENT_NAME_OFFSET)
                .ok_or_else(|| bad(at, "truncated header"))?;
            let word = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&header[i..i + 8]);
                w
            };
            let ino = u64::from_ne_bytes(word(0));
            let off = i64::from_ne_bytes(word(8));
            let reclen = usize::from(u16::from_ne_bytes([header[16], header[17]]));
            let d_type = header[18];
            if reclen <= DIRENT_NAME_OFFSET {
                return Err(bad(at, &format!("d_reclen {reclen} is too small")));
            }
            let record = rest.get(..reclen).ok_or_else(|| {
                bad(
                    at,
                    &format!("d_reclen {reclen} overruns the {} bytes left", rest.len()),
                )
            })?;
            let name_area = &record[DIRENT_NAME_OFFSET..];
            let len = name_area
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| bad(at, "name is not NUL-terminated"))?;
            out.push(Dirent {
                ino,
                off,
                kind: FileType::from_dirent_type(d_type),
                name: name_area[..len].to_vec(),
            });
            at += reclen;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn stat_layout_matches_libc() {
        assert_eq!(size_of::<Stat>(), size_of::<libc::stat>());
        assert_eq!(align_of::<Stat>(), align_of::<libc::stat>());
        assert_eq!(offset_of!(Stat, dev), offset_of!(libc::stat, st_dev));
        assert_eq!(offset_of!(Stat, ino), offset_of!(libc::stat, st_ino));
        assert_eq!(offset_of!(Stat, nlink), offset_of!(libc::stat, st_nlink));
        assert_eq!(offset_of!(Stat, mode), offset_of!(libc::stat, st_mode));
        assert_eq!(offset_of!(Stat, uid), offset_of!(libc::stat, st_uid));
        assert_eq!(offset_of!(Stat, gid), offset_of!(libc::stat, st_gid));
        assert_eq!(offset_of!(Stat, rdev), offset_of!(libc::stat, st_rdev));
        assert_eq!(offset_of!(Stat, size), offset_of!(libc::stat, st_size));
        assert_eq!(
            offset_of!(Stat, blksize),
            offset_of!(libc::stat, st_blksize)
        );
        assert_eq!(offset_of!(Stat, blocks), offset_of!(libc::stat, st_blocks));
        assert_eq!(offset_of!(Stat, atime), offset_of!(libc::stat, st_atime));
        assert_eq!(
            offset_of!(Stat, atime) + offset_of!(Timespec, nsec),
            offset_of!(libc::stat, st_atime_nsec)
        );
        assert_eq!(offset_of!(Stat, mtime), offset_of!(libc::stat, st_mtime));
        assert_eq!(
            offset_of!(Stat, mtime) + offset_of!(Timespec, nsec),
            offset_of!(libc::stat, st_mtime_nsec)
        );
        assert_eq!(offset_of!(Stat, ctime), offset_of!(libc::stat, st_ctime));
        assert_eq!(
            offset_of!(Stat, ctime) + offset_of!(Timespec, nsec),
            offset_of!(libc::stat, st_ctime_nsec)
        );
    }

    #[test]
    fn statx_layout_matches_libc() {
        assert_eq!(size_of::<Statx>(), size_of::<libc::statx>());
        assert_eq!(align_of::<Statx>(), align_of::<libc::statx>());
        assert_eq!(
            size_of::<StatxTimestamp>(),
            size_of::<libc::statx_timestamp>()
        );
        assert_eq!(
            offset_of!(StatxTimestamp, nsec),
            offset_of!(libc::statx_timestamp, tv_nsec)
        );
        macro_rules! same {
            ($($ours:ident = $theirs:ident),* $(,)?) => {
                $(assert_eq!(
                    offset_of!(Statx, $ours),
                    offset_of!(libc::statx, $theirs),
                    stringify!($ours)
                );)*
            };
        }
        same!(
            mask = stx_mask,
            blksize = stx_blksize,
            attributes = stx_attributes,
            nlink = stx_nlink,
            uid = stx_uid,
            gid = stx_gid,
            mode = stx_mode,
            ino = stx_ino,
            size = stx_size,
            blocks = stx_blocks,
            attributes_mask = stx_attributes_mask,
            atime = stx_atime,
            btime = stx_btime,
            ctime = stx_ctime,
            mtime = stx_mtime,
            rdev_major = stx_rdev_major,
            rdev_minor = stx_rdev_minor,
            dev_major = stx_dev_major,
            dev_minor = stx_dev_minor,
            mnt_id = stx_mnt_id,
            dio_mem_align = stx_dio_mem_align,
            dio_offset_align = stx_dio_offset_align,
            subvol = stx_subvol,
            atomic_write_unit_min = stx_atomic_write_unit_min,
            atomic_write_unit_max = stx_atomic_write_unit_max,
            atomic_write_segments_max = stx_atomic_write_segments_max,
            dio_read_offset_align = stx_dio_read_offset_align,
            atomic_write_unit_max_opt = stx_atomic_write_unit_max_opt,
        );
    }

    #[test]
    fn dirent_name_offset_matches_libc() {
        assert_eq!(DIRENT_NAME_OFFSET, offset_of!(libc::dirent64, d_name));
        assert_eq!(offset_of!(libc::dirent64, d_reclen), 16);
        assert_eq!(offset_of!(libc::dirent64, d_type), 18);
    }

    fn sample() -> Vec<Dirent> {
        vec![
            Dirent {
                ino: 1,
                off: 10,
                kind: FileType::Directory,
                name: b".".to_vec(),
            },
            Dirent {
                ino: 0xdead_beef,
                off: -3,
                kind: FileType::Regular,
                name: b"a-longer-name.txt".to_vec(),
            },
            Dirent {
                ino: 7,
                off: i64::MAX,
                kind: FileType::Other(200),
                name: b"x".to_vec(),
            },
        ]
    }

    #[test]
    fn dirent_list_round_trips() {
        let list = DirentList(sample());
        let bytes = list.to_bytes();
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(DirentList::from_bytes(&bytes).expect("parse"), sample());
        assert_eq!(
            DirentList::from_bytes(&[]).expect("empty"),
            Vec::<Dirent>::new()
        );
    }

    #[test]
    fn corrupt_dirent_lists_are_errors() {
        let bytes = DirentList(sample()).to_bytes();
        // Cut anywhere inside a record: truncated header, overrun, or missing NUL.
        let first = usize::from(u16::from_ne_bytes([bytes[16], bytes[17]]));
        for cut in (1..bytes.len()).filter(|c| *c != first) {
            let r = DirentList::from_bytes(&bytes[..cut]);
            let second_end =
                first + usize::from(u16::from_ne_bytes([bytes[first + 16], bytes[first + 17]]));
            if cut == second_end {
                assert_eq!(r.expect("a whole number of records").len(), 2);
            } else {
                assert!(
                    matches!(r, Err(Error::InvalidArgument { .. })),
                    "cut at {cut}"
                );
            }
        }
        for reclen in [0u16, 1, 19, 20_000] {
            let mut b = bytes.clone();
            b[16..18].copy_from_slice(&reclen.to_ne_bytes());
            assert!(
                matches!(
                    DirentList::from_bytes(&b),
                    Err(Error::InvalidArgument { .. })
                ),
                "reclen {reclen}"
            );
        }
        // A name filling its record with no NUL.
        let mut b = bytes[..first].to_vec();
        for x in &mut b[DIRENT_NAME_OFFSET..] {
            *x = b'a';
        }
        assert!(DirentList::from_bytes(&b).is_err());
    }

    #[test]
    fn file_types_from_mode_and_dirent() {
        assert_eq!(FileType::from_mode(0o100644), FileType::Regular);
        assert_eq!(FileType::from_mode(0o040755), FileType::Directory);
        assert_eq!(FileType::from_mode(0o120777), FileType::Symlink);
        for t in 0..=255u8 {
            assert_eq!(FileType::from_dirent_type(t).to_dirent_type(), t);
        }
        assert_eq!(Timespec::UTIME_NOW.nsec, (1 << 30) - 1);
        assert_eq!(Timespec::UTIME_OMIT.nsec, (1 << 30) - 2);
    }
}
