//! Thread conveniences, unshare and namespaces: pid, user, mount, network namespaces, chroot, process groups.
