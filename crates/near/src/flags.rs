//! Flag sets and constant enums for syscall arguments (`CLONE`, `O`, `SOCK`, `MAP`...).

/// Defines a flag-set newtype with one associated constant per flag.
#[macro_export]
#[doc(hidden)]
macro_rules! flag_set {
    ($(#[$m:meta])* $name:ident : $ty:ty { $($(#[$fm:meta])* $flag:ident = $val:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name($ty);

        #[allow(missing_docs)]
        impl $name {
            $($(#[$fm])* pub const $flag: $name = $name($val as $ty);)*
            const NAMES: &'static [(&'static str, $ty)] = &[$((stringify!($flag), $val as $ty)),*];

            /// No flags.
            pub const fn empty() -> Self { $name(0) }
            /// The raw bits.
            pub const fn bits(self) -> $ty { self.0 }
            /// From raw bits, unknown bits included.
            pub const fn from_bits_retain(bits: $ty) -> Self { $name(bits) }
            /// Whether every flag of `other` is set.
            pub const fn contains(self, other: Self) -> bool { self.0 & other.0 == other.0 }
            /// Whether any flag of `other` is set.
            pub const fn intersects(self, other: Self) -> bool { self.0 & other.0 != 0 }
            /// Whether no flag is set.
            pub const fn is_empty(self) -> bool { self.0 == 0 }
            /// The union.
            pub const fn union(self, other: Self) -> Self { $name(self.0 | other.0) }
            /// These flags without those of `other`.
            pub const fn difference(self, other: Self) -> Self { $name(self.0 & !other.0) }
            /// Sets or clears `other`.
            pub fn set(&mut self, other: Self, on: bool) {
                if on { self.0 |= other.0 } else { self.0 &= !other.0 }
            }
        }

        impl std::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, o: Self) -> Self { $name(self.0 | o.0) }
        }
        impl std::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, o: Self) { self.0 |= o.0 }
        }
        impl std::ops::BitAnd for $name {
            type Output = Self;
            fn bitand(self, o: Self) -> Self { $name(self.0 & o.0) }
        }
        impl std::ops::Sub for $name {
            type Output = Self;
            fn sub(self, o: Self) -> Self { $name(self.0 & !o.0) }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut rest = self.0;
                let mut first = true;
                write!(f, "{}(", stringify!($name))?;
                for (n, v) in Self::NAMES {
                    if *v != 0 && rest & *v == *v {
                        if !first { write!(f, "|")?; }
                        write!(f, "{n}")?;
                        first = false;
                        rest &= !*v;
                    }
                }
                if rest != 0 {
                    if !first { write!(f, "|")?; }
                    write!(f, "{rest:#x}")?;
                }
                write!(f, ")")
            }
        }
    };
}

flag_set! {
    /// Flags of `clone(2)` (the exit signal is added by the callers that need it).
    CLONE: u64 {
        VM = libc::CLONE_VM, FS = libc::CLONE_FS, FILES = libc::CLONE_FILES,
        SIGHAND = libc::CLONE_SIGHAND, PIDFD = libc::CLONE_PIDFD, PTRACE = libc::CLONE_PTRACE,
        VFORK = libc::CLONE_VFORK, PARENT = libc::CLONE_PARENT, THREAD = libc::CLONE_THREAD,
        NEWNS = libc::CLONE_NEWNS, SYSVSEM = libc::CLONE_SYSVSEM, SETTLS = libc::CLONE_SETTLS,
        PARENT_SETTID = libc::CLONE_PARENT_SETTID, CHILD_CLEARTID = libc::CLONE_CHILD_CLEARTID,
        UNTRACED = libc::CLONE_UNTRACED, CHILD_SETTID = libc::CLONE_CHILD_SETTID,
        NEWCGROUP = libc::CLONE_NEWCGROUP, NEWUTS = libc::CLONE_NEWUTS,
        NEWIPC = libc::CLONE_NEWIPC, NEWUSER = libc::CLONE_NEWUSER, NEWPID = libc::CLONE_NEWPID,
        NEWNET = libc::CLONE_NEWNET, IO = libc::CLONE_IO,
    }
}

flag_set! {
    /// Flags of `open(2)`/`openat(2)` (the access mode is `RDONLY`/`WRONLY`/`RDWR`).
    O: i32 {
        RDONLY = libc::O_RDONLY, WRONLY = libc::O_WRONLY, RDWR = libc::O_RDWR,
        CREAT = libc::O_CREAT, EXCL = libc::O_EXCL, NOCTTY = libc::O_NOCTTY,
        TRUNC = libc::O_TRUNC, APPEND = libc::O_APPEND, NONBLOCK = libc::O_NONBLOCK,
        DSYNC = libc::O_DSYNC, DIRECT = libc::O_DIRECT, LARGEFILE = libc::O_LARGEFILE,
        DIRECTORY = libc::O_DIRECTORY, NOFOLLOW = libc::O_NOFOLLOW, NOATIME = libc::O_NOATIME,
        CLOEXEC = libc::O_CLOEXEC, SYNC = libc::O_SYNC, PATH = libc::O_PATH,
        TMPFILE = libc::O_TMPFILE,
    }
}

flag_set! {
    /// Type flags of `socket(2)`, `socketpair(2)` and `accept4(2)`.
    SOCK: i32 {
        NONBLOCK = libc::SOCK_NONBLOCK, CLOEXEC = libc::SOCK_CLOEXEC,
    }
}

flag_set! {
    /// Flags of `send`/`recv`-family syscalls.
    MSG: i32 {
        OOB = libc::MSG_OOB, PEEK = libc::MSG_PEEK, DONTROUTE = libc::MSG_DONTROUTE,
        TRUNC = libc::MSG_TRUNC, DONTWAIT = libc::MSG_DONTWAIT, EOR = libc::MSG_EOR,
        WAITALL = libc::MSG_WAITALL, NOSIGNAL = libc::MSG_NOSIGNAL,
        CMSG_CLOEXEC = libc::MSG_CMSG_CLOEXEC, CTRUNC = libc::MSG_CTRUNC,
    }
}

flag_set! {
    /// Protection flags of `mmap(2)`/`mprotect(2)`.
    PROT: i32 {
        NONE = libc::PROT_NONE, READ = libc::PROT_READ, WRITE = libc::PROT_WRITE,
        EXEC = libc::PROT_EXEC,
    }
}

flag_set! {
    /// Flags of `mmap(2)`.
    MAP: i32 {
        SHARED = libc::MAP_SHARED, PRIVATE = libc::MAP_PRIVATE, FIXED = libc::MAP_FIXED,
        ANONYMOUS = libc::MAP_ANONYMOUS, GROWSDOWN = libc::MAP_GROWSDOWN,
        NORESERVE = libc::MAP_NORESERVE, POPULATE = libc::MAP_POPULATE,
        STACK = libc::MAP_STACK, FIXED_NOREPLACE = libc::MAP_FIXED_NOREPLACE,
    }
}

flag_set! {
    /// Options of `waitid(2)`.
    W: i32 {
        EXITED = libc::WEXITED, STOPPED = libc::WSTOPPED, CONTINUED = libc::WCONTINUED,
        NOHANG = libc::WNOHANG, NOWAIT = libc::WNOWAIT, ALL = libc::__WALL,
        CLONE = libc::__WCLONE,
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
    fn flags_compose_and_print() {
        let f = CLONE::FILES | CLONE::NEWPID;
        assert!(f.contains(CLONE::FILES));
        assert!(!f.contains(CLONE::VM));
        assert_eq!(format!("{f:?}"), "CLONE(FILES|NEWPID)");
        assert_eq!(
            format!("{:?}", O::from_bits_retain(libc::O_CLOEXEC | 1 << 30)),
            "O(CLOEXEC|0x40000000)"
        );
        assert_eq!(Signal::SIGKILL.name(), "SIGKILL");
        assert_eq!(
            Signal::new(libc::SIGRTMIN() + 2).map(Signal::name),
            Some("SIGRTMIN+2".to_string())
        );
    }
}
