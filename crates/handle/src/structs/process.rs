//! Structs of the process syscalls: siginfo, sigaction, robust futex list nodes, argv/envp arrays.

use rsyscall_near::{self as near, Address, SA};

use super::Sigset;
use crate::child_state::ChildState;
use crate::fd::FileDescriptor;
use crate::pointer::WrittenPointer;

/// The kernel's `siginfo_t` (128 bytes), with the fields `waitid(2)` fills for `SIGCHLD`
/// named; the rest of the union is kept as opaque words.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Siginfo {
    /// `si_signo`: the signal (`SIGCHLD` for `waitid`).
    pub signo: i32,
    /// `si_errno`: unused by Linux, 0.
    pub errno: i32,
    /// `si_code`: `CLD_EXITED`, `CLD_KILLED`, `CLD_DUMPED`, `CLD_STOPPED`, `CLD_TRAPPED`,
    /// `CLD_CONTINUED` for `SIGCHLD`.
    pub code: i32,
    _pad0: i32,
    /// `si_pid`: the child (0 when `W::NOHANG` found nothing).
    pub pid: i32,
    /// `si_uid`: the child's real user id.
    pub uid: u32,
    /// `si_status`: the exit status, or the signal, depending on `code`.
    pub status: i32,
    _pad1: i32,
    /// `si_utime`: user time consumed, in clock ticks.
    pub utime: i64,
    /// `si_stime`: system time consumed, in clock ticks.
    pub stime: i64,
    _rest: [u64; 10],
}

// repr(C): integers only, laid out without padding (the explicit pad fields fill the gaps);
// every bit pattern is a valid value.
pod!(
    Siginfo {
        signo,
        errno,
        code,
        _pad0,
        pid,
        uid,
        status,
        _pad1,
        utime,
        stime,
        _rest
    },
    128
);

impl Siginfo {
    /// Size in bytes, the kernel's `sizeof(siginfo_t)`.
    pub const SIZE: usize = 128;

    /// The child state change this siginfo reports (from `waitid`), if any.
    pub fn child_state(&self) -> Option<ChildState> {
        ChildState::from_fields(self.pid, self.code, self.status)
    }
}

impl ChildState {
    /// Parses a `siginfo_t` filled by `waitid` (at least 128 bytes); `None` if it is too
    /// short or reports no event (`si_pid` 0, as after `WNOHANG` with nothing to report).
    pub fn from_siginfo(bytes: &[u8]) -> Option<ChildState> {
        super::pod_from_bytes::<Siginfo>(bytes).ok()?.child_state()
    }
}

/// A signal handler address for [`Sigaction`]: `SIG_DFL`.
pub const SIG_DFL: u64 = 0;
/// A signal handler address for [`Sigaction`]: `SIG_IGN`.
pub const SIG_IGN: u64 = 1;

/// The kernel's `struct sigaction` on x86-64 (32 bytes: handler, flags, restorer, an
/// 8-byte mask), as `rt_sigaction(2)` takes it. Not libc's `struct sigaction`, whose mask
/// is 128 bytes and comes before the flags.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Sigaction {
    /// `sa_handler`: [`SIG_DFL`], [`SIG_IGN`], or the address of a handler.
    pub handler: u64,
    /// `sa_flags`: the raw bits of an [`SA`] set (see [`Sigaction::flags`]).
    pub flags: u64,
    /// `sa_restorer`: the code the handler returns to, with `SA::RESTORER`.
    pub restorer: u64,
    /// `sa_mask`: signals blocked while the handler runs.
    pub mask: Sigset,
}

// repr(C): three u64s and a u64 newtype, no padding, every bit pattern valid (the handler is
// only an address here; jumping to it is the unsafe part, guarded by the syscall methods).
pod!(
    Sigaction {
        handler,
        flags,
        restorer,
        mask
    },
    32
);

impl Sigaction {
    /// Size in bytes.
    pub const SIZE: usize = 32;

    /// The default action for the signal (`SIG_DFL`, no flags, empty mask).
    pub const fn default_action() -> Self {
        Sigaction {
            handler: SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: Sigset::empty(),
        }
    }

    /// Ignore the signal (`SIG_IGN`, no flags, empty mask).
    pub const fn ignore() -> Self {
        Sigaction {
            handler: SIG_IGN,
            flags: 0,
            restorer: 0,
            mask: Sigset::empty(),
        }
    }

    /// With these flags.
    pub const fn with_flags(mut self, flags: SA) -> Self {
        self.flags = flags.bits();
        self
    }

    /// The flags.
    pub const fn flags(&self) -> SA {
        SA::from_bits_retain(self.flags)
    }

    /// Whether the handler is `SIG_DFL` or `SIG_IGN` (no code of ours runs).
    pub const fn is_default_or_ignore(&self) -> bool {
        self.handler == SIG_DFL || self.handler == SIG_IGN
    }
}

/// The kernel's `struct robust_list_head` (24 bytes): the head of a thread's list of held
/// robust futexes, registered with `set_robust_list(2)`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RobustListHead {
    /// `list.next`: the first entry; the address of this head itself when the list is
    /// empty.
    pub list_next: u64,
    /// `futex_offset`: from an entry's address to its futex word.
    pub futex_offset: i64,
    /// `list_op_pending`: an entry being added or removed, or 0.
    pub list_op_pending: u64,
}

// repr(C): three 64-bit integers, no padding, every bit pattern valid.
pod!(
    RobustListHead {
        list_next,
        futex_offset,
        list_op_pending
    },
    24
);

impl RobustListHead {
    /// Size in bytes, the `len` `set_robust_list` expects.
    pub const SIZE: usize = 24;

    /// An empty list whose head will live at `addr` (its `next` points at itself).
    pub const fn empty_at(addr: Address, futex_offset: i64) -> Self {
        RobustListHead {
            list_next: addr.as_u64(),
            futex_offset,
            list_op_pending: 0,
        }
    }
}

/// The path, argv and envp of an exec, written in one allocation with one write:
/// `[argv pointers, NULL, envp pointers, NULL, path\0, argv strings\0..., envp strings\0...]`.
/// Built by [`Task::argv_envp`](crate::Task::argv_envp).
#[derive(Debug)]
pub struct ArgvEnvp {
    pub(crate) mem: WrittenPointer<[u8]>,
    pub(crate) prefix: Address,
    pub(crate) path: Address,
    pub(crate) argv: Address,
    pub(crate) envp: Address,
}

impl ArgvEnvp {
    /// The whole block.
    pub fn pointer(&self) -> &WrittenPointer<[u8]> {
        &self.mem
    }
    /// The whole block, given back (to keep it alive while a remote exec may read it).
    pub fn into_pointer(self) -> WrittenPointer<[u8]> {
        self.mem
    }
    /// Address of the prefix given to [`Task::exec_image`](crate::Task::exec_image) (the
    /// start of the block).
    pub fn prefix(&self) -> Address {
        self.prefix
    }
    /// Address of the NUL-terminated path.
    pub fn path(&self) -> Address {
        self.path
    }
    /// Address of the NULL-terminated argv array.
    pub fn argv(&self) -> Address {
        self.argv
    }
    /// Address of the NULL-terminated envp array.
    pub fn envp(&self) -> Address {
        self.envp
    }
}

/// Which children `waitid` waits for.
#[derive(Clone, Copy, Debug)]
pub enum WaitId<'a> {
    /// Any child (`P_ALL`).
    All,
    /// The child with this pid, in the waiting task's pid namespace (`P_PID`).
    Pid(near::Pid),
    /// Any child in this process group (`P_PGID`; 0: the caller's group).
    Pgid(near::Pid),
    /// The child this pidfd, of the waiting task's fd table, refers to (`P_PIDFD`): the
    /// only form immune to pid reuse.
    PidFd(&'a FileDescriptor),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structs::pod_bytes;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn siginfo_matches_libc() {
        assert_eq!(size_of::<Siginfo>(), size_of::<libc::siginfo_t>());
        assert_eq!(size_of::<Siginfo>(), Siginfo::SIZE);
        assert_eq!(align_of::<Siginfo>(), align_of::<libc::siginfo_t>());
        assert_eq!(
            offset_of!(Siginfo, signo),
            offset_of!(libc::siginfo_t, si_signo)
        );
        assert_eq!(
            offset_of!(Siginfo, errno),
            offset_of!(libc::siginfo_t, si_errno)
        );
        assert_eq!(
            offset_of!(Siginfo, code),
            offset_of!(libc::siginfo_t, si_code)
        );
        // libc exposes the SIGCHLD fields only through accessors: check them on a value.
        let info = Siginfo {
            signo: libc::SIGCHLD,
            code: libc::CLD_EXITED,
            pid: 1234,
            uid: 567,
            status: 89,
            utime: 10,
            stime: 11,
            ..Siginfo::default()
        };
        let bytes = pod_bytes(&info);
        // SAFETY: siginfo_t is plain data of exactly these 128 bytes.
        let theirs: libc::siginfo_t = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        // SAFETY: the union members read are the SIGCHLD ones, which we set.
        unsafe {
            assert_eq!(theirs.si_pid(), 1234);
            assert_eq!(theirs.si_uid(), 567);
            assert_eq!(theirs.si_status(), 89);
            assert_eq!(theirs.si_utime() as i64, 10);
            assert_eq!(theirs.si_stime() as i64, 11);
        }
        assert_eq!(info.child_state(), Some(ChildState::Exited(89)));
    }

    #[test]
    fn sigaction_is_the_kernel_layout() {
        // The kernel's x86-64 struct sigaction (arch/x86/include/uapi/asm/signal.h and
        // include/linux/signal_types.h): handler, flags, restorer, mask, 8 bytes each.
        assert_eq!(size_of::<Sigaction>(), Sigaction::SIZE);
        assert_eq!(offset_of!(Sigaction, handler), 0);
        assert_eq!(offset_of!(Sigaction, flags), 8);
        assert_eq!(offset_of!(Sigaction, restorer), 16);
        assert_eq!(offset_of!(Sigaction, mask), 24);
        assert_eq!(size_of::<Sigset>(), Sigset::KERNEL_SIZE);
        // It differs from libc's, which puts the 128-byte mask second.
        assert_ne!(size_of::<Sigaction>(), size_of::<libc::sigaction>());
        assert_eq!(libc::SIG_IGN as u64, SIG_IGN);
        assert_eq!(libc::SIG_DFL as u64, SIG_DFL);
        let a = Sigaction::ignore().with_flags(SA::RESTART);
        assert_eq!(a.flags(), SA::RESTART);
        assert!(a.is_default_or_ignore());
    }

    #[test]
    fn robust_list_head_is_24_bytes() {
        // struct robust_list_head { struct robust_list list; long futex_offset;
        // struct robust_list *list_op_pending; } in include/uapi/linux/futex.h.
        assert_eq!(size_of::<RobustListHead>(), RobustListHead::SIZE);
        assert_eq!(offset_of!(RobustListHead, futex_offset), 8);
        assert_eq!(offset_of!(RobustListHead, list_op_pending), 16);
        let h = RobustListHead::empty_at(Address::new(0x1000), -8);
        assert_eq!(h.list_next, 0x1000);
    }
}
