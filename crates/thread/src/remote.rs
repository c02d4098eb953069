//! The task of a process in an address space and fd table of its own, reached only through
//! a syscall interface: its pid and namespace identities are read from the process itself.
//! Bootstrapped threads ([`Thread::from_bootstrap`](crate::Thread::from_bootstrap)) and
//! attached persistent threads
//! ([`PersistentThread::attach`](crate::PersistentThread::attach)) are both built on
//! [`remote_task`].
//!
//! # Safety
//! [`remote_task`] is an `unsafe fn` whose `# Safety` section is the claims [`Task::new`]
//! and [`Memory::new`] trust, passed on to its callers; the identities it picks on top of
//! them are conservative: the address space and fd table are always new identities, and a
//! pid, mount or network namespace is the local identity only when the process's own
//! `/proc/self/ns` link equals ours.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::os::unix::ffi::OsStringExt;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use rsyscall_far as far;
use rsyscall_handle::{Error, FdTableState, Memory, Result, Task, Transport, local_namespaces};
use rsyscall_near::{self as near, SyscallInterface};

/// A remote process's task and what was learnt making it.
pub(crate) struct RemoteTask {
    /// The task: its syscall interface, pid, namespaces, fd table and allocator.
    pub(crate) task: Task,
    /// Its pid as the local process sees it, if it is in our pid namespace.
    pub(crate) local_pid: Option<near::Pid>,
}

/// Makes the task of a process reached through `sysif` whose memory is reached through
/// `transport` and mapped through `mapper` (both in-band: its address space is not ours).
/// Its pid is `pid`, or asked for with `getpid` if `None`. Its pid, mount and network
/// namespaces are read through the process (`/proc/self/ns/{pid,mnt,net}`): a link equal
/// to the local process's is the local identity; any other link gets one identity per
/// link for the life of this program, shared by every task made here, so two threads in
/// the same foreign namespace can use each other's handles of it. A link that cannot be
/// read gives a fresh identity (using a handle across is then a `Mismatch`, never a wrong
/// syscall). Its fd table and address space are always new identities.
///
/// # Safety
/// - `sysif` runs syscalls in one process whose fd table is its own: not this process's,
///   nor that of any other task we made;
/// - `transport` and `mapper` reach its address space (the claims of [`Memory::new`]).
///   That space gets a new identity, so its allocator must be the only user of what it
///   maps there: the space may be shared with others (an attached persistent thread's is
///   its creator's, perhaps this very program), but nothing else may be told that memory
///   of this identity is theirs;
/// - `pid`, if given, is its pid in its own pid namespace.
///
/// # Errors
/// A failed `getpid`; a hangup while reading the links (other failures to read them give
/// fresh identities).
pub(crate) async unsafe fn remote_task(
    sysif: Arc<dyn SyscallInterface>,
    transport: Arc<dyn Transport>,
    mapper: Arc<dyn SyscallInterface>,
    pid: Option<near::Pid>,
) -> Result<RemoteTask> {
    let pid = match pid {
        Some(pid) => pid,
        None => near::getpid(&*sysif)
            .await
            .map_err(|source| Error::Syscall {
                syscall: "getpid",
                pid: 0,
                source,
            })?,
    };
    let space = far::AddressSpace::new(pid);
    // SAFETY: the caller's promise that `transport` and `mapper` serve that address space;
    // `space` is a fresh identity, named by nothing before.
    let memory = unsafe { Memory::new(space, transport, mapper) };
    let fd_table = FdTableState::new(far::FdTable::new(pid));
    // Every identity new, so nothing of ours is claimed; the namespaces found below
    // replace some of them.
    let fresh = far::Namespaces {
        fd_table: fd_table.id(),
        address_space: space,
        pidns: far::PidNamespace::new(pid),
        mountns: far::MountNamespace::new(pid),
        netns: far::NetNamespace::new(pid),
    };
    // SAFETY: `sysif` runs syscalls in that process (the caller's promise), of pid `pid`;
    // every identity is fresh: no handle of ours names them, so this task can only be
    // used with its own handles. It makes no fd and no mapping (only readlinks through
    // memory of `memory`, which serves `space`).
    let probe = unsafe {
        Task::new(
            sysif.clone(),
            pid,
            fresh,
            fd_table.clone(),
            memory.clone(),
            None,
        )
    };
    let ns = far::Namespaces {
        pidns: identity(
            &probe,
            "pid",
            &REGISTRY.pid,
            |l| l.pidns,
            far::PidNamespace::new,
        )
        .await?,
        mountns: identity(
            &probe,
            "mnt",
            &REGISTRY.mnt,
            |l| l.mountns,
            far::MountNamespace::new,
        )
        .await?,
        netns: identity(
            &probe,
            "net",
            &REGISTRY.net,
            |l| l.netns,
            far::NetNamespace::new,
        )
        .await?,
        ..fresh
    };
    drop(probe);
    let local_pid = (ns.pidns == local_namespaces().pidns).then_some(pid);
    // SAFETY: the caller's promises: `sysif` runs syscalls in one process, of pid `pid` in
    // its own namespace, whose address space (`space`, served by `memory`) and fd table
    // (fresh, its state `fd_table`, taken over from the probe, which is gone) are its own;
    // its pid, mount and network namespaces are the identities of the links it showed
    // (the local ones only when they are ours). Its table was copied from none we know.
    let task = unsafe { Task::new(sysif, pid, ns, fd_table, memory, None) };
    Ok(RemoteTask { task, local_pid })
}

/// Identities given to namespaces of remote tasks, by `/proc/self/ns` link.
struct Registry {
    pid: Mutex<HashMap<Vec<u8>, far::PidNamespace>>,
    mnt: Mutex<HashMap<Vec<u8>, far::MountNamespace>>,
    net: Mutex<HashMap<Vec<u8>, far::NetNamespace>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    pid: Mutex::new(HashMap::new()),
    mnt: Mutex::new(HashMap::new()),
    net: Mutex::new(HashMap::new()),
});

/// The local process's `/proc/self/ns/{kind}` link, read once.
fn local_link(kind: &'static str) -> Option<Vec<u8>> {
    type Links = Mutex<HashMap<&'static str, Option<Vec<u8>>>>;
    static LINKS: OnceLock<Links> = OnceLock::new();
    let links = LINKS.get_or_init(Default::default);
    let mut links = links.lock().unwrap_or_else(|e| e.into_inner());
    links
        .entry(kind)
        .or_insert_with(|| {
            std::fs::read_link(format!("/proc/self/ns/{kind}"))
                .ok()
                .map(|p| p.into_os_string().into_vec())
        })
        .clone()
}

/// The identity of `task`'s namespace of `kind`: the local one if its link is ours, else
/// the registry's for that link (made with `make` the first time); fresh if unreadable.
async fn identity<T: Copy>(
    task: &Task,
    kind: &'static str,
    registry: &Mutex<HashMap<Vec<u8>, T>>,
    local: impl Fn(&far::Namespaces) -> T,
    make: impl Fn(near::Pid) -> T,
) -> Result<T> {
    let link = match task.readlinkat(None, format!("/proc/self/ns/{kind}")).await {
        Ok(link) => link,
        Err(e) if e.is_hangup() => return Err(e),
        Err(e) => {
            log::debug!(
                "pid {}: reading its {kind} namespace: {e}",
                task.pid().as_raw()
            );
            return Ok(make(task.pid()));
        }
    };
    if local_link(kind).as_deref() == Some(&link[..]) {
        return Ok(local(&local_namespaces()));
    }
    let mut map = registry.lock().unwrap_or_else(|e| e.into_inner());
    Ok(*map.entry(link).or_insert_with(|| make(task.pid())))
}
