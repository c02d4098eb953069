//! The identities of the local process's namespaces: a leaf module, so the modules that
//! ask "is this the local table, the local address space?" (fds, memory, mappings) need
//! nothing else of the crate.

use std::sync::OnceLock;

use rsyscall_far as far;
use rsyscall_near as near;

/// The namespaces of the local process, created once.
pub fn local_namespaces() -> far::Namespaces {
    static NS: OnceLock<far::Namespaces> = OnceLock::new();
    *NS.get_or_init(|| {
        let pid = near::Pid::new(std::process::id() as i32);
        far::Namespaces {
            fd_table: far::FdTable::new(pid),
            address_space: far::AddressSpace::new(pid),
            pidns: far::PidNamespace::new(pid),
            mountns: far::MountNamespace::new(pid),
            netns: far::NetNamespace::new(pid),
        }
    })
}
