//! Structs of the event syscalls: epoll_event lists, itimerspec, signalfd_siginfo, inotify_event lists.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use rsyscall_near::{EPOLL, IN, Signal, WatchDescriptor};

use super::{Struct, Timespec, pod_bytes, pod_from_bytes};
use crate::error::{Error, Result};

/// `struct epoll_event`: the events of interest (or that happened) and the user data
/// registered with the fd.
///
/// Packed on x86-64 (12 bytes), exactly as the kernel's and libc's; so its fields are
/// reached through accessors, which copy them.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EpollEvent {
    events: u32,
    data: u64,
}

// repr(C, packed), as on x86-64 (the only target built): a u32 and a u64, no padding.
pod!(EpollEvent { events, data }, 12);

impl EpollEvent {
    /// An event with mask `events` and user data `data`.
    pub const fn new(events: EPOLL, data: u64) -> Self {
        EpollEvent {
            events: events.bits(),
            data,
        }
    }

    /// The event mask.
    pub const fn events(&self) -> EPOLL {
        EPOLL::from_bits_retain(self.events)
    }

    /// The user data.
    pub const fn data(&self) -> u64 {
        self.data
    }
}

impl std::fmt::Debug for EpollEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollEvent")
            .field("events", &self.events())
            .field("data", &self.data())
            .finish()
    }
}

/// `struct itimerspec`: a timer's first expiration (`value`; zero means disarmed) and its
/// period (`interval`; zero means one-shot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Itimerspec {
    /// The period after the first expiration.
    pub interval: Timespec,
    /// The first expiration: relative, or absolute with `TFD::TIMER_ABSTIME`.
    pub value: Timespec,
}

// repr(C): two Timespecs (four i64s), no padding, every bit pattern valid.
pod!(Itimerspec { interval, value }, 32);

impl Itimerspec {
    /// A one-shot timer expiring after (or, with `TFD::TIMER_ABSTIME`, at) `value`.
    pub fn oneshot(value: Timespec) -> Self {
        Itimerspec {
            interval: Timespec::default(),
            value,
        }
    }

    /// Whether the timer is armed (only meaningful for a value read back from the kernel).
    pub fn is_armed(&self) -> bool {
        self.value != Timespec::default()
    }
}

/// `struct signalfd_siginfo`: one signal read from a signalfd (128 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SignalfdSiginfo {
    /// Signal number.
    pub ssi_signo: u32,
    /// Error number (unused).
    pub ssi_errno: i32,
    /// Signal code (`SI_USER`...).
    pub ssi_code: i32,
    /// Pid of the sender.
    pub ssi_pid: u32,
    /// Real uid of the sender.
    pub ssi_uid: u32,
    /// File descriptor (`SIGIO`).
    pub ssi_fd: i32,
    /// Kernel timer id (POSIX timers).
    pub ssi_tid: u32,
    /// Band event (`SIGIO`).
    pub ssi_band: u32,
    /// Overrun count (POSIX timers).
    pub ssi_overrun: u32,
    /// Trap number that caused the signal.
    pub ssi_trapno: u32,
    /// Exit status or signal (`SIGCHLD`).
    pub ssi_status: i32,
    /// Integer sent by `sigqueue`.
    pub ssi_int: i32,
    /// Pointer sent by `sigqueue`.
    pub ssi_ptr: u64,
    /// User CPU time consumed (`SIGCHLD`).
    pub ssi_utime: u64,
    /// System CPU time consumed (`SIGCHLD`).
    pub ssi_stime: u64,
    /// Address that generated the signal (hardware-generated signals).
    pub ssi_addr: u64,
    /// Least significant bit of the address (`SIGBUS`).
    pub ssi_addr_lsb: u16,
    _pad2: u16,
    /// System call number (`SIGSYS` from seccomp).
    pub ssi_syscall: i32,
    /// Address of the system call instruction (`SIGSYS`).
    pub ssi_call_addr: u64,
    /// Architecture of the system call (`SIGSYS`).
    pub ssi_arch: u32,
    _pad: [u8; 28],
}

// repr(C): integers and a byte array laid out without implicit padding (checked against
// libc in the tests); every bit pattern is valid.
pod!(
    SignalfdSiginfo {
        ssi_signo,
        ssi_errno,
        ssi_code,
        ssi_pid,
        ssi_uid,
        ssi_fd,
        ssi_tid,
        ssi_band,
        ssi_overrun,
        ssi_trapno,
        ssi_status,
        ssi_int,
        ssi_ptr,
        ssi_utime,
        ssi_stime,
        ssi_addr,
        ssi_addr_lsb,
        _pad2,
        ssi_syscall,
        ssi_call_addr,
        ssi_arch,
        _pad
    },
    128
);

impl SignalfdSiginfo {
    /// The signal, if `ssi_signo` is a valid signal number.
    pub fn signal(&self) -> Option<Signal> {
        i32::try_from(self.ssi_signo).ok().and_then(Signal::new)
    }
}

/// The fixed-size header of `struct inotify_event`; `len` bytes of NUL-padded name follow
/// it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InotifyEventHeader {
    /// The watch the event is for.
    pub wd: i32,
    /// What happened.
    pub mask: u32,
    /// Connects the `MOVED_FROM` and `MOVED_TO` events of one rename.
    pub cookie: u32,
    /// Length of the name field, padding included.
    pub len: u32,
}

// repr(C): four 32-bit integers, no padding, every bit pattern valid.
pod!(
    InotifyEventHeader {
        wd,
        mask,
        cookie,
        len
    },
    16
);

impl InotifyEventHeader {
    /// Size of the header in bytes.
    pub const SIZE: usize = std::mem::size_of::<InotifyEventHeader>();
}

/// One event read from an inotify fd. A buffer of them is a `[InotifyEvent]`: read from
/// the kernel's variable-size records, whose lengths are checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InotifyEvent {
    /// The watch the event is for (`-1` for `IN::Q_OVERFLOW`).
    pub wd: WatchDescriptor,
    /// What happened.
    pub mask: IN,
    /// Connects the `MOVED_FROM` and `MOVED_TO` events of one rename.
    pub cookie: u32,
    /// The name of the file inside a watched directory that the event is about; `None`
    /// for events about the watched file or directory itself.
    pub name: Option<OsString>,
}

impl InotifyEvent {
    /// The kernel's memory image of this event: header, then the name NUL-padded to a
    /// multiple of the header size (as the kernel pads it).
    fn image(&self, out: &mut Vec<u8>) {
        let name = self
            .name
            .clone()
            .map(OsString::into_vec)
            .unwrap_or_default();
        let len = if name.is_empty() {
            0
        } else {
            (name.len() + 1).next_multiple_of(InotifyEventHeader::SIZE)
        };
        let header = InotifyEventHeader {
            wd: self.wd.as_raw(),
            mask: self.mask.bits(),
            cookie: self.cookie,
            len: len as u32,
        };
        out.extend_from_slice(&pod_bytes(&header));
        let start = out.len();
        out.extend_from_slice(&name);
        out.resize(start + len, 0);
    }
}

/// Inotify event lists: records of a header and `len` bytes of name. A record that does
/// not fit in the bytes, or a name without its terminating NUL, is
/// [`Error::InvalidArgument`].
impl Struct for [InotifyEvent] {
    type Owned = Vec<InotifyEvent>;

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in self {
            ev.image(&mut out);
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Vec<InotifyEvent>> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let at = bytes.len() - rest.len();
            let header: InotifyEventHeader = pod_from_bytes(rest).map_err(|_| {
                Error::invalid(
                    "inotify event list",
                    format!(
                        "{} bytes at offset {at} cannot hold a {}-byte event header",
                        rest.len(),
                        InotifyEventHeader::SIZE
                    ),
                )
            })?;
            let body = &rest[InotifyEventHeader::SIZE..];
            let len = usize::try_from(header.len)
                .ok()
                .filter(|&len| len <= body.len())
                .ok_or_else(|| {
                    Error::invalid(
                        "inotify event list",
                        format!(
                            "event at offset {at} claims a {}-byte name, but only {} bytes follow",
                            header.len,
                            body.len()
                        ),
                    )
                })?;
            let name = &body[..len];
            let name = if len == 0 {
                None
            } else {
                let end = name.iter().position(|&b| b == 0).ok_or_else(|| {
                    Error::invalid(
                        "inotify event list",
                        format!("the name of the event at offset {at} is not NUL-terminated"),
                    )
                })?;
                (end > 0).then(|| OsString::from_vec(name[..end].to_vec()))
            };
            out.push(InotifyEvent {
                wd: WatchDescriptor::new(header.wd),
                mask: IN::from_bits_retain(header.mask),
                cookie: header.cookie,
                name,
            });
            rest = &body[len..];
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn epoll_event_layout_matches_libc() {
        assert_eq!(size_of::<EpollEvent>(), size_of::<libc::epoll_event>());
        assert_eq!(align_of::<EpollEvent>(), align_of::<libc::epoll_event>());
        assert_eq!(
            offset_of!(EpollEvent, events),
            offset_of!(libc::epoll_event, events)
        );
        assert_eq!(
            offset_of!(EpollEvent, data),
            offset_of!(libc::epoll_event, u64)
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(size_of::<EpollEvent>(), 12);
        let ev = EpollEvent::new(EPOLL::IN | EPOLL::ET, 0x0102_0304_0506_0708);
        let bytes = ev.to_bytes();
        assert_eq!(bytes.len(), size_of::<EpollEvent>());
        assert_eq!(EpollEvent::from_bytes(&bytes).expect("parse"), ev);
        assert_eq!(ev.events(), EPOLL::IN | EPOLL::ET);
        assert_eq!(ev.data(), 0x0102_0304_0506_0708);
    }

    #[test]
    fn itimerspec_layout_matches_libc() {
        assert_eq!(size_of::<Itimerspec>(), size_of::<libc::itimerspec>());
        assert_eq!(align_of::<Itimerspec>(), align_of::<libc::itimerspec>());
        assert_eq!(
            offset_of!(Itimerspec, interval),
            offset_of!(libc::itimerspec, it_interval)
        );
        assert_eq!(
            offset_of!(Itimerspec, value),
            offset_of!(libc::itimerspec, it_value)
        );
        assert!(!Itimerspec::default().is_armed());
        assert!(Itimerspec::oneshot(Timespec { sec: 0, nsec: 1 }).is_armed());
    }

    #[test]
    fn signalfd_siginfo_layout_matches_libc() {
        assert_eq!(size_of::<SignalfdSiginfo>(), 128);
        assert_eq!(
            size_of::<SignalfdSiginfo>(),
            size_of::<libc::signalfd_siginfo>()
        );
        assert_eq!(
            align_of::<SignalfdSiginfo>(),
            align_of::<libc::signalfd_siginfo>()
        );
        macro_rules! same_offsets {
            ($($f:ident),*) => {
                $(assert_eq!(
                    offset_of!(SignalfdSiginfo, $f),
                    offset_of!(libc::signalfd_siginfo, $f),
                    stringify!($f)
                );)*
            };
        }
        same_offsets!(
            ssi_signo,
            ssi_errno,
            ssi_code,
            ssi_pid,
            ssi_uid,
            ssi_fd,
            ssi_tid,
            ssi_band,
            ssi_overrun,
            ssi_trapno,
            ssi_status,
            ssi_int,
            ssi_ptr,
            ssi_utime,
            ssi_stime,
            ssi_addr,
            ssi_addr_lsb,
            ssi_syscall,
            ssi_call_addr,
            ssi_arch
        );
        let info = SignalfdSiginfo {
            ssi_signo: libc::SIGUSR1 as u32,
            ..Default::default()
        };
        assert_eq!(info.signal(), Some(Signal::SIGUSR1));
        let bad = SignalfdSiginfo {
            ssi_signo: 1000,
            ..Default::default()
        };
        assert_eq!(bad.signal(), None);
    }

    #[test]
    fn inotify_header_layout_matches_libc() {
        assert_eq!(
            size_of::<InotifyEventHeader>(),
            size_of::<libc::inotify_event>()
        );
        assert_eq!(
            align_of::<InotifyEventHeader>(),
            align_of::<libc::inotify_event>()
        );
        assert_eq!(
            offset_of!(InotifyEventHeader, wd),
            offset_of!(libc::inotify_event, wd)
        );
        assert_eq!(
            offset_of!(InotifyEventHeader, mask),
            offset_of!(libc::inotify_event, mask)
        );
        assert_eq!(
            offset_of!(InotifyEventHeader, cookie),
            offset_of!(libc::inotify_event, cookie)
        );
        assert_eq!(
            offset_of!(InotifyEventHeader, len),
            offset_of!(libc::inotify_event, len)
        );
    }

    fn sample_events() -> Vec<InotifyEvent> {
        vec![
            InotifyEvent {
                wd: WatchDescriptor::new(1),
                mask: IN::CREATE,
                cookie: 0,
                name: Some(OsString::from("a-file-with-a-longer-name")),
            },
            InotifyEvent {
                wd: WatchDescriptor::new(2),
                mask: IN::DELETE_SELF,
                cookie: 7,
                name: None,
            },
            InotifyEvent {
                wd: WatchDescriptor::new(1),
                mask: IN::MOVED_TO | IN::ISDIR,
                cookie: 9,
                name: Some(OsString::from("x")),
            },
        ]
    }

    #[test]
    fn inotify_event_lists_round_trip() {
        let events = sample_events();
        let bytes = events.as_slice().to_bytes();
        // 16 + 32, 16 + 0, 16 + 16.
        assert_eq!(bytes.len(), 96);
        assert_eq!(<[InotifyEvent]>::from_bytes(&bytes).expect("parse"), events);
        assert_eq!(<[InotifyEvent]>::from_bytes(&[]).expect("parse"), vec![]);
    }

    #[test]
    fn corrupt_inotify_event_lists_are_invalid_argument() {
        let bytes = sample_events().as_slice().to_bytes();
        // Every truncation that cuts a record is refused, never a panic.
        for cut in 1..bytes.len() {
            let r = <[InotifyEvent]>::from_bytes(&bytes[..cut]);
            if [48, 64].contains(&cut) {
                assert!(r.is_ok(), "cut at a record boundary {cut}");
            } else {
                assert!(
                    matches!(r, Err(Error::InvalidArgument { .. })),
                    "cut at {cut}: {r:?}"
                );
            }
        }
        // A length running past the end, including one that would overflow.
        for len in [33u32, 1 << 31, u32::MAX] {
            let mut b = bytes.clone();
            b[12..16].copy_from_slice(&len.to_ne_bytes());
            assert!(matches!(
                <[InotifyEvent]>::from_bytes(&b[..48]),
                Err(Error::InvalidArgument { .. })
            ));
        }
        // A name without its NUL.
        let mut b = bytes[..48].to_vec();
        for byte in &mut b[16..] {
            *byte = b'z';
        }
        assert!(matches!(
            <[InotifyEvent]>::from_bytes(&b),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
