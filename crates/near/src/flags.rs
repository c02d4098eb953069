//! Flag sets and constant enums for syscall arguments (`CLONE`, `O`, `SOCK`, `MAP`...).
//!
//! The flag sets are [`bitflags`] 2 types: `|`, `&`, `-`, `contains`, iteration over the
//! named flags set (`iter_names`), `Debug` (`CLONE(FILES | NEWPID)`), and parsing from and
//! formatting to bitflags' text form (`"FILES | NEWPID"`, unknown bits as `0x...`) through
//! `FromStr` and `Display`. Their values are the `libc` crate's constants, except where a
//! comment says libc lacks one.

use crate::syscalls::{
    AT, EFD, EPOLL, EXECVEAT, FALLOC, FD, IFF, IN, MFD, MNT, MS, PIDFD, RENAME, RWF, SA, SFD,
    STATX, TFD, TUN,
};

/// Implements `FromStr` and `Display` for flag sets through [`bitflags::parser`]: the
/// text is the flag names separated by `|`, unknown bits in hexadecimal (`0x...`).
macro_rules! flags_text {
    ($($name:ident),* $(,)?) => {$(
        impl std::str::FromStr for $name {
            type Err = bitflags::parser::ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                bitflags::parser::from_str(s)
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                bitflags::parser::to_writer(self, f)
            }
        }
    )*};
}

flags_text!(
    CLONE, O, SOCK, MSG, PROT, MAP, W, EPOLL, EFD, TFD, SFD, IN, PIDFD, RWF, FALLOC, MFD, FD, AT,
    RENAME, STATX, MS, MNT, SA, EXECVEAT, IFF, TUN,
);
bitflags::bitflags! {
    /// Flags of `clone(2)` (the exit signal is added by the callers that need it).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct CLONE: u64 {
        // libc's CLONE_* are c_int: through u32, so that CLONE_IO (bit 31) is not
        // sign-extended into the upper half.
        /// `CLONE_VM`.
        const VM = libc::CLONE_VM as u32 as u64;
        /// `CLONE_FS`.
        const FS = libc::CLONE_FS as u32 as u64;
        /// `CLONE_FILES`.
        const FILES = libc::CLONE_FILES as u32 as u64;
        /// `CLONE_SIGHAND`.
        const SIGHAND = libc::CLONE_SIGHAND as u32 as u64;
        /// `CLONE_PIDFD`.
        const PIDFD = libc::CLONE_PIDFD as u32 as u64;
        /// `CLONE_PTRACE`.
        const PTRACE = libc::CLONE_PTRACE as u32 as u64;
        /// `CLONE_VFORK`.
        const VFORK = libc::CLONE_VFORK as u32 as u64;
        /// `CLONE_PARENT`.
        const PARENT = libc::CLONE_PARENT as u32 as u64;
        /// `CLONE_THREAD`.
        const THREAD = libc::CLONE_THREAD as u32 as u64;
        /// `CLONE_NEWNS`.
        const NEWNS = libc::CLONE_NEWNS as u32 as u64;
        /// `CLONE_SYSVSEM`.
        const SYSVSEM = libc::CLONE_SYSVSEM as u32 as u64;
        /// `CLONE_SETTLS`.
        const SETTLS = libc::CLONE_SETTLS as u32 as u64;
        /// `CLONE_PARENT_SETTID`.
        const PARENT_SETTID = libc::CLONE_PARENT_SETTID as u32 as u64;
        /// `CLONE_CHILD_CLEARTID`.
        const CHILD_CLEARTID = libc::CLONE_CHILD_CLEARTID as u32 as u64;
        /// `CLONE_UNTRACED`.
        const UNTRACED = libc::CLONE_UNTRACED as u32 as u64;
        /// `CLONE_CHILD_SETTID`.
        const CHILD_SETTID = libc::CLONE_CHILD_SETTID as u32 as u64;
        /// `CLONE_NEWCGROUP`.
        const NEWCGROUP = libc::CLONE_NEWCGROUP as u32 as u64;
        /// `CLONE_NEWUTS`.
        const NEWUTS = libc::CLONE_NEWUTS as u32 as u64;
        /// `CLONE_NEWIPC`.
        const NEWIPC = libc::CLONE_NEWIPC as u32 as u64;
        /// `CLONE_NEWUSER`.
        const NEWUSER = libc::CLONE_NEWUSER as u32 as u64;
        /// `CLONE_NEWPID`.
        const NEWPID = libc::CLONE_NEWPID as u32 as u64;
        /// `CLONE_NEWNET`.
        const NEWNET = libc::CLONE_NEWNET as u32 as u64;
        /// `CLONE_IO`.
        const IO = libc::CLONE_IO as u32 as u64;
    }
}

bitflags::bitflags! {
    /// Flags of `open(2)`/`openat(2)` (the access mode is `RDONLY`/`WRONLY`/`RDWR`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct O: i32 {
        /// `O_RDONLY`.
        const RDONLY = libc::O_RDONLY;
        /// `O_WRONLY`.
        const WRONLY = libc::O_WRONLY;
        /// `O_RDWR`.
        const RDWR = libc::O_RDWR;
        /// `O_CREAT`.
        const CREAT = libc::O_CREAT;
        /// `O_EXCL`.
        const EXCL = libc::O_EXCL;
        /// `O_NOCTTY`.
        const NOCTTY = libc::O_NOCTTY;
        /// `O_TRUNC`.
        const TRUNC = libc::O_TRUNC;
        /// `O_APPEND`.
        const APPEND = libc::O_APPEND;
        /// `O_NONBLOCK`.
        const NONBLOCK = libc::O_NONBLOCK;
        /// `O_DSYNC`.
        const DSYNC = libc::O_DSYNC;
        /// `O_DIRECT`.
        const DIRECT = libc::O_DIRECT;
        /// `O_LARGEFILE`.
        const LARGEFILE = libc::O_LARGEFILE;
        /// `O_DIRECTORY`.
        const DIRECTORY = libc::O_DIRECTORY;
        /// `O_NOFOLLOW`.
        const NOFOLLOW = libc::O_NOFOLLOW;
        /// `O_NOATIME`.
        const NOATIME = libc::O_NOATIME;
        /// `O_CLOEXEC`.
        const CLOEXEC = libc::O_CLOEXEC;
        /// `O_SYNC`.
        const SYNC = libc::O_SYNC;
        /// `O_PATH`.
        const PATH = libc::O_PATH;
        /// `O_TMPFILE`.
        const TMPFILE = libc::O_TMPFILE;
    }
}

bitflags::bitflags! {
    /// Type flags of `socket(2)`, `socketpair(2)` and `accept4(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct SOCK: i32 {
        /// `SOCK_NONBLOCK`.
        const NONBLOCK = libc::SOCK_NONBLOCK;
        /// `SOCK_CLOEXEC`.
        const CLOEXEC = libc::SOCK_CLOEXEC;
    }
}

bitflags::bitflags! {
    /// Flags of `send`/`recv`-family syscalls.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct MSG: i32 {
        /// `MSG_OOB`.
        const OOB = libc::MSG_OOB;
        /// `MSG_PEEK`.
        const PEEK = libc::MSG_PEEK;
        /// `MSG_DONTROUTE`.
        const DONTROUTE = libc::MSG_DONTROUTE;
        /// `MSG_TRUNC`.
        const TRUNC = libc::MSG_TRUNC;
        /// `MSG_DONTWAIT`.
        const DONTWAIT = libc::MSG_DONTWAIT;
        /// `MSG_EOR`.
        const EOR = libc::MSG_EOR;
        /// `MSG_WAITALL`.
        const WAITALL = libc::MSG_WAITALL;
        /// `MSG_NOSIGNAL`.
        const NOSIGNAL = libc::MSG_NOSIGNAL;
        /// `MSG_CMSG_CLOEXEC`.
        const CMSG_CLOEXEC = libc::MSG_CMSG_CLOEXEC;
        /// `MSG_CTRUNC`.
        const CTRUNC = libc::MSG_CTRUNC;
    }
}

bitflags::bitflags! {
    /// Protection flags of `mmap(2)`/`mprotect(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct PROT: i32 {
        /// `PROT_NONE`.
        const NONE = libc::PROT_NONE;
        /// `PROT_READ`.
        const READ = libc::PROT_READ;
        /// `PROT_WRITE`.
        const WRITE = libc::PROT_WRITE;
        /// `PROT_EXEC`.
        const EXEC = libc::PROT_EXEC;
    }
}

bitflags::bitflags! {
    /// Flags of `mmap(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct MAP: i32 {
        /// `MAP_SHARED`.
        const SHARED = libc::MAP_SHARED;
        /// `MAP_PRIVATE`.
        const PRIVATE = libc::MAP_PRIVATE;
        /// `MAP_FIXED`.
        const FIXED = libc::MAP_FIXED;
        /// `MAP_ANONYMOUS`.
        const ANONYMOUS = libc::MAP_ANONYMOUS;
        /// `MAP_GROWSDOWN`.
        const GROWSDOWN = libc::MAP_GROWSDOWN;
        /// `MAP_NORESERVE`.
        const NORESERVE = libc::MAP_NORESERVE;
        /// `MAP_POPULATE`.
        const POPULATE = libc::MAP_POPULATE;
        /// `MAP_STACK`.
        const STACK = libc::MAP_STACK;
        /// `MAP_FIXED_NOREPLACE`.
        const FIXED_NOREPLACE = libc::MAP_FIXED_NOREPLACE;
    }
}

bitflags::bitflags! {
    /// Options of `waitid(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct W: i32 {
        /// `WEXITED`.
        const EXITED = libc::WEXITED;
        /// `WSTOPPED`.
        const STOPPED = libc::WSTOPPED;
        /// `WCONTINUED`.
        const CONTINUED = libc::WCONTINUED;
        /// `WNOHANG`.
        const NOHANG = libc::WNOHANG;
        /// `WNOWAIT`.
        const NOWAIT = libc::WNOWAIT;
        /// `__WALL`.
        const ALL = libc::__WALL;
        /// `__WCLONE`.
        const CLONE = libc::__WCLONE;
    }
}

/// A signal number.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

macro_rules! signals {
    ($($name:ident),* $(,)?) => {
        #[allow(missing_docs)]
        impl Signal {
            $(pub const $name: Signal = Signal(libc::$name);)*
            const NAMES: &'static [(&'static str, i32)] = &[$((stringify!($name), libc::$name)),*];
        }
    };
}
signals!(
    SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGUSR1, SIGSEGV,
    SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN,
    SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS,
);

impl Signal {
    /// The signal with number `n`, if `n` is in `1..=64`.
    pub const fn new(n: i32) -> Option<Signal> {
        if n >= 1 && n <= 64 {
            Some(Signal(n))
        } else {
            None
        }
    }
    /// The signal number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }
    /// The name (`"SIGKILL"`, or `"SIGRTMIN+3"` for real-time signals).
    pub fn name(self) -> String {
        if let Some((n, _)) = Self::NAMES.iter().find(|(_, v)| *v == self.0) {
            (*n).to_string()
        } else if self.0 >= libc::SIGRTMIN() {
            format!("SIGRTMIN+{}", self.0 - libc::SIGRTMIN())
        } else {
            format!("signal {}", self.0)
        }
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// How `shutdown(2)` shuts a socket down.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum SHUT {
    /// No more receptions.
    RD = libc::SHUT_RD,
    /// No more transmissions.
    WR = libc::SHUT_WR,
    /// Neither.
    RDWR = libc::SHUT_RDWR,
}

/// The `idtype` of `waitid(2)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IdType {
    /// Any child.
    All,
    /// The child with this pid.
    Pid(crate::Pid),
    /// Any child in this process group.
    Pgid(crate::Pid),
    /// The child this pidfd refers to.
    PidFd(crate::FileDescriptor),
}

impl IdType {
    pub(crate) fn args(self) -> (i64, i64) {
        match self {
            IdType::All => (libc::P_ALL as i64, 0),
            IdType::Pid(p) => (libc::P_PID as i64, p.arg()),
            IdType::Pgid(p) => (libc::P_PGID as i64, p.arg()),
            IdType::PidFd(fd) => (libc::P_PIDFD as i64, fd.arg()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_31_is_not_sign_extended() {
        // libc gives these as c_int with bit 31 set; the u64 sets must hold that bit alone.
        assert_eq!(CLONE::IO.bits(), 0x8000_0000);
        assert_eq!(SA::RESETHAND.bits(), 0x8000_0000);
        assert_eq!(EPOLL::ET.bits(), 0x8000_0000);
    }

    #[test]
    fn flags_iterate_parse_and_print() {
        let f = CLONE::VM | CLONE::NEWUSER | CLONE::from_bits_retain(1 << 40);
        let names: Vec<_> = f.iter_names().map(|(n, _)| n).collect();
        assert_eq!(names, ["VM", "NEWUSER"]);
        assert_eq!(
            f.iter().count(),
            3,
            "the unknown bit comes last, on its own"
        );
        assert_eq!(f.to_string(), "VM | NEWUSER | 0x10000000000");
        assert_eq!(
            "VM | NEWUSER | 0x10000000000".parse::<CLONE>().ok(),
            Some(f)
        );
        assert_eq!("".parse::<CLONE>().ok(), Some(CLONE::empty()));
        assert_eq!(format!("{:?}", CLONE::empty()), "CLONE(0x0)");
        assert!("VM | NOPE".parse::<CLONE>().is_err());
        assert_eq!(
            "NONBLOCK|CLOEXEC".parse::<SOCK>().ok(),
            Some(SOCK::NONBLOCK | SOCK::CLOEXEC)
        );
        // Zero-valued flags are never listed: an empty O is O_RDONLY.
        assert_eq!(O::RDONLY.iter_names().count(), 0);
        assert_eq!((O::WRONLY | O::CLOEXEC).to_string(), "WRONLY | CLOEXEC");
    }

    #[test]
    fn flags_compose_and_print() {
        let f = CLONE::FILES | CLONE::NEWPID;
        assert!(f.contains(CLONE::FILES));
        assert!(!f.contains(CLONE::VM));
        assert_eq!(format!("{f:?}"), "CLONE(FILES | NEWPID)");
        assert_eq!(
            format!("{:?}", O::from_bits_retain(libc::O_CLOEXEC | 1 << 30)),
            "O(CLOEXEC | 0x40000000)"
        );
        assert_eq!(Signal::SIGKILL.name(), "SIGKILL");
        assert_eq!(
            Signal::new(libc::SIGRTMIN() + 2).map(Signal::name),
            Some("SIGRTMIN+2".to_string())
        );
    }
}
