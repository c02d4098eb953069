//! The far layer: namespace identities, ids tagged with the namespace they live in, and
//! `far::Task`, which knows which namespaces a process uses.
//!
//! A near id is a number; a far id is that number plus the identity of the table or space
//! it indexes. A task converts a far id back to a near id only after checking that the
//! id's namespace is its own, so an fd of one table can never be used through a task of
//! another.
//!
//! # Invariants
//! - A far id is converted to a near id only after its namespace is checked against the
//!   task's ([`Task::near_fd`], [`Task::near_address`]); a mismatch is a typed
//!   [`MismatchError`], raised before any syscall is sent.
//! - Identities are unique within this process for its whole life: two distinct tables
//!   never compare equal, even after one is gone. A new identity never equals an existing
//!   one, so safe code can only claim "the local fd table" by copying the local identity
//!   into a [`Task`], which takes an `unsafe` promise ([`Task::new`]).
//! - A far id ([`FileDescriptor`], [`Pointer`], [`Process`]) is only a tagged number: it
//!   guarantees nothing about the fd being open or owned, or the memory being allocated.
#![deny(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rsyscall_near as near;

#[cfg(doctest)]
mod soundness;

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

macro_rules! identity {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name {
            id: u64,
            creator: near::Pid,
        }

        impl $name {
            /// A new identity, distinct from every other; `creator` is the pid (in the
            /// local view) of the process that created it, kept for messages.
            pub fn new(creator: near::Pid) -> Self {
                $name { id: next_id(), creator }
            }
            /// The pid of the process whose creation made this identity.
            pub fn creator(&self) -> near::Pid {
                self.creator
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($what, " #{} (of pid {})"), self.id, self.creator.as_raw())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

identity!(
    /// The identity of a file descriptor table.
    FdTable, "fd table"
);
identity!(
    /// The identity of an address space.
    AddressSpace, "address space"
);
identity!(
    /// The identity of a pid namespace.
    PidNamespace, "pid namespace"
);
identity!(
    /// The identity of a mount namespace.
    MountNamespace, "mount namespace"
);
identity!(
    /// The identity of a network namespace.
    NetNamespace, "network namespace"
);

/// A file descriptor number tagged with the table it indexes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FileDescriptor {
    /// The table.
    pub table: FdTable,
    /// The number in that table.
    pub near: near::FileDescriptor,
}

/// An address tagged with the address space it belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Pointer {
    /// The address space.
    pub space: AddressSpace,
    /// The address in it.
    pub near: near::Address,
}

/// A pid tagged with the pid namespace it is valid in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Process {
    /// The pid namespace.
    pub pidns: PidNamespace,
    /// The pid in it.
    pub near: near::Pid,
}

/// A far id was used through a task of another namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MismatchError {
    /// An fd of one table used through a task of another.
    #[error(
        "{fd:?} belongs to {fd_table}, but the task (pid {task_pid}) uses {task_table}; pass the fd to that task first (inherit it in a child, or send it over a connection)"
    )]
    FdTable {
        /// The fd.
        fd: near::FileDescriptor,
        /// Its table.
        fd_table: FdTable,
        /// The task's table.
        task_table: FdTable,
        /// The task's pid.
        task_pid: i32,
    },
    /// A pointer into one address space used through a task of another.
    #[error(
        "address {addr:?} belongs to {space}, but the task (pid {task_pid}) uses {task_space}; allocate the memory through a task of that address space"
    )]
    AddressSpace {
        /// The address.
        addr: near::Address,
        /// Its space.
        space: AddressSpace,
        /// The task's space.
        task_space: AddressSpace,
        /// The task's pid.
        task_pid: i32,
    },
    /// A pid of one namespace used through a task of another.
    #[error("{pid:?} belongs to {pidns}, but the task (pid {task_pid}) is in {task_pidns}")]
    PidNamespace {
        /// The pid.
        pid: near::Pid,
        /// Its namespace.
        pidns: PidNamespace,
        /// The task's namespace.
        task_pidns: PidNamespace,
        /// The task's pid.
        task_pid: i32,
    },
}

/// The namespaces of a task.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Namespaces {
    /// Its fd table.
    pub fd_table: FdTable,
    /// Its address space.
    pub address_space: AddressSpace,
    /// Its pid namespace (the one its pid, and pids it sees, belong to).
    pub pidns: PidNamespace,
    /// Its mount namespace.
    pub mountns: MountNamespace,
    /// Its network namespace.
    pub netns: NetNamespace,
}

impl Namespaces {
    /// These namespaces with a fresh identity, made by `creator`, for each tracked kind in
    /// `kinds` (`CLONE::NEWNS`, `CLONE::NEWNET`, `CLONE::NEWPID`; the other flags are
    /// ignored): what a process has after creating namespaces of those kinds (clone,
    /// unshare), or after joining namespaces whose identities are not known here (setns).
    /// The fd table and the address space stay.
    pub fn renewed(&self, kinds: near::CLONE, creator: near::Pid) -> Namespaces {
        let mut ns = *self;
        if kinds.contains(near::CLONE::NEWPID) {
            ns.pidns = PidNamespace::new(creator);
        }
        if kinds.contains(near::CLONE::NEWNS) {
            ns.mountns = MountNamespace::new(creator);
        }
        if kinds.contains(near::CLONE::NEWNET) {
            ns.netns = NetNamespace::new(creator);
        }
        ns
    }

    /// The near fd, if `fd` belongs to this table; `pid` names the task in the error.
    pub fn near_fd(
        &self,
        pid: near::Pid,
        fd: &FileDescriptor,
    ) -> Result<near::FileDescriptor, MismatchError> {
        if fd.table == self.fd_table {
            Ok(fd.near)
        } else {
            Err(MismatchError::FdTable {
                fd: fd.near,
                fd_table: fd.table,
                task_table: self.fd_table,
                task_pid: pid.as_raw(),
            })
        }
    }

    /// The near address, if `ptr` belongs to this address space; `pid` names the task in
    /// the error.
    pub fn near_address(
        &self,
        pid: near::Pid,
        ptr: &Pointer,
    ) -> Result<near::Address, MismatchError> {
        if ptr.space == self.address_space {
            Ok(ptr.near)
        } else {
            Err(MismatchError::AddressSpace {
                addr: ptr.near,
                space: ptr.space,
                task_space: self.address_space,
                task_pid: pid.as_raw(),
            })
        }
    }

    /// The near pid, if `process` belongs to this pid namespace; `pid` names the task in
    /// the error.
    pub fn near_pid(&self, pid: near::Pid, process: &Process) -> Result<near::Pid, MismatchError> {
        if process.pidns == self.pidns {
            Ok(process.near)
        } else {
            Err(MismatchError::PidNamespace {
                pid: process.near,
                pidns: process.pidns,
                task_pidns: self.pidns,
                task_pid: pid.as_raw(),
            })
        }
    }
}

/// A process we can run syscalls in, with the namespaces it uses.
///
/// Code making raw syscalls may rely on its checks ([`Task::near_fd`],
/// [`Task::near_address`]) to know that an id belongs to the process the interface reaches,
/// so it can only be made with an `unsafe` promise ([`Task::new`]); its parts are read
/// through accessors.
#[derive(Clone)]
pub struct Task {
    sysif: Arc<dyn near::SyscallInterface>,
    pid: near::Pid,
    ns: Namespaces,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("pid", &self.pid.as_raw())
            .field("fd_table", &self.ns.fd_table)
            .field("address_space", &self.ns.address_space)
            .finish_non_exhaustive()
    }
}

impl Task {
    /// A task running syscalls through `sysif`, with pid `pid` and namespaces `ns`.
    ///
    /// # Safety
    /// `sysif` must run syscalls in one process whose pid (in its own pid namespace) is
    /// `pid` and whose namespaces are `ns`, and return what the kernel returned. Callers of
    /// the unsafe near functions discharge their duties through this task's checks: an
    /// `ns` naming the local fd table or address space for a process that does not share
    /// them would pass this process's fds and memory to another process (or another
    /// process's to this one) as if they were its own.
    #[allow(unsafe_code)]
    pub unsafe fn new(
        sysif: Arc<dyn near::SyscallInterface>,
        pid: near::Pid,
        ns: Namespaces,
    ) -> Self {
        Task { sysif, pid, ns }
    }

    /// The syscall interface.
    pub fn sysif(&self) -> &dyn near::SyscallInterface {
        &*self.sysif
    }

    /// The shared syscall interface.
    pub fn sysif_arc(&self) -> &Arc<dyn near::SyscallInterface> {
        &self.sysif
    }

    /// Its pid, as seen from its own pid namespace.
    pub fn pid(&self) -> near::Pid {
        self.pid
    }

    /// Its namespaces.
    pub fn namespaces(&self) -> Namespaces {
        self.ns
    }

    /// Tags a near fd with this task's table.
    pub fn far_fd(&self, near: near::FileDescriptor) -> FileDescriptor {
        FileDescriptor {
            table: self.ns.fd_table,
            near,
        }
    }

    /// Tags a near address with this task's address space.
    pub fn far_pointer(&self, near: near::Address) -> Pointer {
        Pointer {
            space: self.ns.address_space,
            near,
        }
    }

    /// The near fd, if `fd` belongs to this task's table.
    pub fn near_fd(&self, fd: &FileDescriptor) -> Result<near::FileDescriptor, MismatchError> {
        self.ns.near_fd(self.pid, fd)
    }

    /// The near address, if `ptr` belongs to this task's address space.
    pub fn near_address(&self, ptr: &Pointer) -> Result<near::Address, MismatchError> {
        self.ns.near_address(self.pid, ptr)
    }

    /// The near pid, if `process` belongs to this task's pid namespace.
    pub fn near_pid(&self, process: &Process) -> Result<near::Pid, MismatchError> {
        self.ns.near_pid(self.pid, process)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(ns: Namespaces) -> Task {
        // Fresh namespaces of a made-up process: the tasks only check ids against them
        // and never run a syscall, so the promise is not relied on.
        #[allow(unsafe_code)]
        // SAFETY: see above.
        unsafe {
            Task::new(Arc::new(near::LocalSyscall), near::Pid::new(1), ns)
        }
    }

    fn fresh() -> Namespaces {
        let p = near::Pid::new(1);
        Namespaces {
            fd_table: FdTable::new(p),
            address_space: AddressSpace::new(p),
            pidns: PidNamespace::new(p),
            mountns: MountNamespace::new(p),
            netns: NetNamespace::new(p),
        }
    }

    #[test]
    fn identities_are_distinct() {
        let p = near::Pid::new(5);
        assert_ne!(FdTable::new(p), FdTable::new(p));
    }

    #[test]
    fn renewed_replaces_only_the_kinds_asked_for() {
        let ns = fresh();
        let p = near::Pid::new(7);
        assert_eq!(ns.renewed(near::CLONE::FILES | near::CLONE::FS, p), ns);
        let r = ns.renewed(near::CLONE::NEWNS | near::CLONE::NEWPID, p);
        assert_ne!(r.mountns, ns.mountns);
        assert_ne!(r.pidns, ns.pidns);
        assert_eq!(r.mountns.creator(), p);
        assert_eq!(
            (r.netns, r.fd_table, r.address_space),
            (ns.netns, ns.fd_table, ns.address_space)
        );
        let r = ns.renewed(near::CLONE::NEWNET, p);
        assert_ne!(r.netns, ns.netns);
        assert_eq!((r.pidns, r.mountns), (ns.pidns, ns.mountns));
    }

    #[test]
    fn mismatches_are_typed() {
        let a = task(fresh());
        let b = task(fresh());
        let fd = a.far_fd(near::FileDescriptor::new(3));
        assert_eq!(a.near_fd(&fd), Ok(near::FileDescriptor::new(3)));
        let err = b.near_fd(&fd).expect_err("other table");
        assert!(matches!(err, MismatchError::FdTable { .. }));
        assert!(err.to_string().contains("pass the fd to that task"));
        let ptr = a.far_pointer(near::Address::new(0x1000));
        assert!(matches!(
            b.near_address(&ptr),
            Err(MismatchError::AddressSpace { .. })
        ));
        let pr = Process {
            pidns: a.namespaces().pidns,
            near: near::Pid::new(9),
        };
        assert!(matches!(
            b.near_pid(&pr),
            Err(MismatchError::PidNamespace { .. })
        ));
    }
}
